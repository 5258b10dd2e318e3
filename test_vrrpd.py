"""Tests of vrrpd.py: unit tests of the pure parts, and labs with real processes in network namespaces.

Sections (each area adds its tests under its own heading, in this order):
  A. Shared helpers: the namespace lab, process handling, waiting
  B. Configuration language and --check
  C. VRRP wire format and state machine (unit)
  D. VRRP in the namespace lab, and interop with keepalived
  E. Tracking, notify scripts and e-mail
  F. LVS: IPVS netlink and checkers (unit), and the real kernel in a VM
  G. Operations: command line, signals, reload, status, systemd
  H. Fuzzing, soak and benchmark

Root-only tests skip with a reason on a laptop; under CI=true a missing prerequisite fails instead.
"""

from __future__ import annotations

import collections
import gc
import io
import ipaddress
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import vrrpd  # noqa: E402

SEEDS = HERE / "testdata" / "seeds"  # the seed tutorials' configurations, one file each
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
VRRPD = str(HERE / "vrrpd.py")
PYTHON = sys.executable


# ============================================================================================
# A. Shared helpers
# ============================================================================================


def require(condition: bool, reason: str) -> None:
    """Skip the test when a prerequisite is missing; under CI=true, fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing under CI: {reason}")
    pytest.skip(reason)


def require_root_netns() -> None:
    require(os.geteuid() == 0, "needs root for network namespaces")
    require(shutil.which("ip") is not None, "needs iproute2 (ip)")


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll predicate until it returns a true value; return it, or fail after timeout."""
    value = vrrpd.wait_until(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout:.2f}s waiting for {what}")
    return value


Lab = vrrpd.Lab  # the namespace lab, shared with `make demo`: namespaces on one bridge, removed by close()
sh = Lab.sh  # run a command, its output captured as text


class _Node:
    """A vrrpd or keepalived process in a lab namespace, with its configuration and log file: the one way the lab
    tests and the benchmarks start a daemon. `conf` is text (written to NAME.conf) or the Path of a file.
    keepalived runs VRRP only (-P) unless `children` names its other processes ("c" checkers, "b" BFD);
    `detail` adds -D; `control` gives vrrpd its own control socket and dump directory (status(), reload()).
    The daemon starts at once unless `autostart` is false; start() waits for "Startup complete" if `wait`."""

    def __init__(self, lab, ns, tmp_path, name, conf, keepalived=False, python=None, env=None, log_name=None,
                 detail=True, children="", wait=True, control=False, autostart=True):
        self.lab, self.ns, self.name = lab, ns, name
        self.python, self.program, self.exec_env = python or [PYTHON], VRRPD, env
        tmp_path.mkdir(parents=True, exist_ok=True)
        if isinstance(conf, Path):
            self.conf = conf
        else:
            self.conf = tmp_path / f"{name}.conf"
            self.conf.write_text(conf)
        self.log_path = tmp_path / (log_name or f"{name}.log")
        self.keepalived, self.detail, self.children, self.wait = keepalived, detail, children, wait
        self.tmp_path = tmp_path
        self.ctl = str(tmp_path / f"{name}.sock") if control else None
        self.dumps = tmp_path / f"{name}-dumps"
        if control:
            self.dumps.mkdir(exist_ok=True)
        self.proc = None
        self._marks = 0
        if autostart:
            self.start()

    def start(self):
        detail = ["-D"] if self.detail else []
        if self.keepalived:
            pid = self.tmp_path / f"{self.name}"
            pids = [("-p", f"{pid}.pid"), ("-r", f"{pid}.vrrp.pid")] + [(f"-{c}", f"{pid}.{c}.pid")
                                                                         for c in self.children]
            for _flag, path in pids:  # left by a SIGKILL: keepalived would say "daemon is already running"
                Path(path).unlink(missing_ok=True)
            cmd = ["/usr/sbin/keepalived", "-n", "-l", *detail] + ([] if self.children else ["-P"])
            cmd += ["-f", str(self.conf)] + [arg for pair in pids for arg in pair]
        else:
            cmd = [*self.python, self.program, "-n", "-l", *detail, "-f", str(self.conf)]
            if self.ctl:
                cmd += ["--control-socket", self.ctl, "--dump-dir", str(self.dumps)]
        self._marks = self.log().count("Startup complete") if self.log_path.exists() else 0
        logf = open(self.log_path, "a")
        self.proc = self.lab.exec(self.ns, cmd, stdout=logf, stderr=subprocess.STDOUT, env=self.exec_env)
        logf.close()
        if self.wait:
            self.wait_started()
        return self

    def wait_started(self, timeout=30.0):
        """Wait for the daemon's "Startup complete" line (or its exit), so that the protocol-timed waits of a
        test do not also have to cover the interpreter's start-up on a loaded machine."""
        vrrpd.wait_until(lambda: self.log().count("Startup complete") > self._marks or self.proc.poll() is not None,
                         timeout, 0.01)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def pids(self) -> List[int]:
        """Every live process of the daemon: keepalived's children (from their pid files) after the parent."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        pids = [self.proc.pid]
        if self.keepalived:
            for child in ["vrrp", *self.children]:
                try:
                    pids.append(int((self.tmp_path / f"{self.name}.{child}.pid").read_text().split()[0]))
                except (OSError, ValueError, IndexError):
                    pass
        return pids

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self, whole_namespace=False):
        """SIGKILL the daemon; with whole_namespace every process of the namespace at once (keepalived's
        children too: the peer is simply gone)."""
        if whole_namespace:
            for pid in sh(["ip", "netns", "pids", self.ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        else:
            self.proc.kill()
        self.proc.wait(timeout=5)

    def crash(self) -> None:
        """kill -9 every process of the daemon, children first (keepalived's VRRP child has a parent-death
        signal and would otherwise resign cleanly): no priority-0 advert, the VIPs left behind."""
        for pid in reversed(self.pids()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def status(self):
        return vrrpd.query_status(self.ctl)

    def instance(self, name="VI_1"):
        return next(i for i in self.status()["instances"] if i["name"] == name)

    def reload(self, conf_text):
        self.conf.write_text(conf_text)
        before = self.log().count("Reload: ") + self.log().count("Reload aborted")
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.log().count("Reload: ") + self.log().count("Reload aborted") > before, 5,
                 what=f"node {self.name} to finish its reload")


@pytest.fixture
def lab():
    require_root_netns()
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        the_lab.close()


# -- the Daemon offline: a fake kernel and a fake clock -----------------------------------------

IP4, IP6 = ipaddress.IPv4Address, ipaddress.IPv6Address
ETH0 = 2  # the fake kernel's eth0


class FakeClockLoop(vrrpd.EventLoop):
    """The real event loop with a clock that moves only when a test says so (advance)."""

    def __init__(self, now: float = 1000.0) -> None:
        super().__init__()
        self.now = now

    def time(self) -> float:  # type: ignore[override]
        return self.now

    def advance(self, seconds: float) -> None:
        """Run, in order, every timer that falls due within `seconds`, the clock at each one's time."""
        import heapq

        end = self.now + seconds
        while True:
            ready, self._ready = self._ready, []
            for callback, args in ready:
                self._call(callback, args)
            timer = self._next_timer()
            if timer is not None and timer.when <= end:
                heapq.heappop(self._timers)
                self.now = self.woke = max(self.now, timer.when)
                self._call(timer.callback, timer.args)
            elif not self._ready:
                break
        self.now = end


class FakeVrrpSocket:
    """Stands in for VrrpSocket: selectable, records what would have gone out, and hands over what a test
    puts in its inbox (raw IPv4 datagrams are decoded as the real socket decodes them)."""

    packet = vrrpd.VrrpSocket.packet

    def __init__(self, family, ifname, ifindex, protocol=vrrpd.IPPROTO_VRRP):
        import socket as _socket

        self.family, self.ifname, self.ifindex, self.protocol = family, ifname, ifindex, protocol
        self.kernel_checksum = family == 6
        self.groups, self.ident, self.sent, self.inbox, self.destinations = [], 0, [], [], {}
        self.sock, self._peer = _socket.socketpair()

    def join(self, group):
        if group not in self.groups:
            self.groups.append(group)

    def receive_nothing(self):
        self.send_only = True

    destination = vrrpd.VrrpSocket.destination

    def send(self, src, dst, packet):
        self.sent.append((src, dst, packet))

    def send_to(self, packet, dest):
        self.send(dest[0], dest[1], packet)

    def recv(self):
        if not self.inbox:
            return None
        item = self.inbox.pop(0)
        return vrrpd.decode_ipv4(item) if isinstance(item, bytes) else item

    def receive_time(self):
        return None

    def close(self):
        self.sock.close()
        self._peer.close()


class FakeRtnl:
    """Stands in for Rtnetlink: links and addresses in memory; address, route and rule requests recorded."""

    def __init__(self, kernel):
        self.kernel = kernel

    def links(self):
        return dict(self.kernel.links)

    def addresses(self):
        return list(self.kernel.addrs)

    def add_address(self, index, vip):
        key = (index, vip.address.ip)
        self.kernel.calls.append(("add", index, str(vip.address)))
        if key in self.kernel.held:
            return False
        self.kernel.held.add(key)
        return True

    def del_address(self, index, vip):
        self.kernel.calls.append(("del", index, str(vip.address)))
        key = (index, vip.address.ip)
        if key not in self.kernel.held:
            return False
        self.kernel.held.discard(key)
        return True

    def route(self, route, ifindex, add, replace=False):
        self.kernel.calls.append(("route", str(route), add))

    def rule(self, rule, add):
        self.kernel.calls.append(("rule", str(rule), add))

    def close(self):
        pass


class FakeMonitor:
    def __init__(self):
        import socket as _socket

        self.sock, self._peer = _socket.socketpair()
        self.events, self.overrun, self.routes = [], False, False

    def read(self):
        events, self.events = self.events, []
        return events

    def watch_routes(self):
        self.routes = True

    def close(self):
        self.sock.close()
        self._peer.close()


class FakeFirewall:
    def __init__(self, table):
        self.table, self.vips, self.active = table, None, False

    def start(self, vips):
        self.vips, self.active = list(vips), bool(vips)
        return True

    def replace(self, vips):
        return self.start(vips)

    def stop(self):
        self.active = False


class FakeVmacs:
    def __init__(self, kernel):
        self.kernel, self.created = kernel, {}

    def create(self, name, base, vrid, family=4):
        index = 100 + vrid
        self.kernel.links[index] = vrrpd.LinkInfo(index, name, vrrpd.IFF_UP | vrrpd.IFF_RUNNING,
                                                  vrrpd.vmac_address(vrid, family))
        self.created[name] = index
        return index

    def create_ipvlan(self, name, base, flags, family, address=None):
        index = 200 + len(self.created)
        self.kernel.links[index] = vrrpd.LinkInfo(index, name, vrrpd.IFF_UP | vrrpd.IFF_RUNNING,
                                                  self.kernel.links[ETH0].mac, kind="ipvlan")
        self.created[name] = index
        return index

    def remove(self, index):
        self.created = {n: i for n, i in self.created.items() if i != index}
        self.kernel.links.pop(index, None)

    def remove_all(self):
        for index in list(self.created.values()):
            self.remove(index)


class FakeAnnouncer:
    def __init__(self, kernel, ifname):
        self.kernel, self.ifname = kernel, ifname

    def send(self, mac, address):
        self.kernel.announced.append((self.ifname, str(address)))

    def close(self):
        pass


class FakeKernel(vrrpd.Kernel):
    """A kernel for Daemon tests: eth0 (index 2, up) holds 10.0.0.1/24 and the link-local fe80::1; sockets,
    announcers, VIPs, VMACs and the firewall exist only in memory."""

    def __init__(self):
        up = vrrpd.IFF_UP | vrrpd.IFF_RUNNING
        self.links = {ETH0: vrrpd.LinkInfo(ETH0, "eth0", up, bytes.fromhex("020000000001"))}
        self.addrs = [vrrpd.AddrInfo(ETH0, ipaddress.ip_interface("10.0.0.1/24")),
                      vrrpd.AddrInfo(ETH0, ipaddress.ip_interface("fe80::1/64"), scope=253)]
        self.held, self.calls, self.announced, self.sockets = set(), [], [], {}
        self.monitor_ = FakeMonitor()
        self.firewall_ = None
        self.igmp_reports = "1"

    def rtnetlink(self):
        return FakeRtnl(self)

    def monitor(self):
        return self.monitor_

    def vrrp_socket(self, family, ifname, ifindex, protocol=vrrpd.IPPROTO_VRRP):
        sock = self.sockets[(ifname, family, protocol)] = FakeVrrpSocket(family, ifname, ifindex, protocol)
        return sock

    def announcer(self, ifname):
        return FakeAnnouncer(self, ifname)

    def vmacs(self, rtnl):
        return FakeVmacs(self)

    def firewall(self, table, priority=-1, counters=False, ifindex=False):
        self.firewall_ = FakeFirewall(table)
        self.firewall_.style = (priority, counters)
        return self.firewall_

    def igmp_link_local_reports(self, value=None):
        old, self.igmp_reports = self.igmp_reports, value or self.igmp_reports
        return old

    def sent(self, family=4, ifname="eth0"):
        """Every packet sent on the interface's VRRP socket of that family: [(src, dst, packet)]."""
        sock = self.sockets.get((ifname, family, vrrpd.IPPROTO_VRRP))
        return sock.sent if sock is not None else []

    def deliver(self, daemon, item, family=4, ifname="eth0", protocol=vrrpd.IPPROTO_VRRP):
        """A datagram arrives: raw IPv4 bytes or a vrrpd.Received, read by the Daemon as from the real socket."""
        sock = self.sockets[(ifname, family, protocol)]
        sock.inbox.append(item)
        daemon._on_vrrp_readable(sock)


def offline_daemon(config, loop=None, start=True, kernel=None):
    """A Daemon on a FakeKernel and (unless `loop` is given) a FakeClockLoop; `config` is a vrrpd.Config or
    keepalived.conf text. Started unless start=False. Returns (daemon, kernel)."""
    if isinstance(config, str):
        config, diags = vrrpd.parse_config_text(config, "offline.conf")
        assert not [x for x in diags if x.severity is vrrpd.Severity.ERROR], diags
    kernel = kernel or FakeKernel()
    d = vrrpd.Daemon(config, loop or FakeClockLoop(), kernel=kernel)
    if start:
        d.start()
    return d, kernel


def _offline_daemon(config, monkeypatch=None, loop=None):
    """offline_daemon() not started, its instances added: eth0 is index 7 with 10.9.0.250/24."""
    kernel = FakeKernel()
    kernel.links = {7: vrrpd.LinkInfo(7, "eth0", vrrpd.IFF_UP | vrrpd.IFF_RUNNING)}
    kernel.addrs = [vrrpd.AddrInfo(7, ipaddress.IPv4Interface("10.9.0.250/24"))]
    d, _kernel = offline_daemon(config, loop=loop, start=False, kernel=kernel)
    d.rtnl, d.links, d.addrs = kernel.rtnetlink(), kernel.links, list(kernel.addrs)
    for inst in config.vrrp_instances:
        d._add_instance(inst)
    return d


@pytest.fixture
def offline():
    """offline_daemon(), with every Daemon it built closed afterwards."""
    built = []

    def build(config, **kw):
        d, kernel = offline_daemon(config, **kw)
        built.append((d, "loop" not in kw))
        return d, kernel

    yield build
    for d, own_loop in built:
        d.close()
        if own_loop:
            d.loop.close()


def instance_text(name="VI_1", vrid=51, priority=100, family=4, version=3, advert=1.0, state="BACKUP",
                  vips=None, extra="", global_extra=""):
    """keepalived.conf text of one instance on eth0, IPv4 or IPv6."""
    vips = vips or (["10.0.0.100/24"] if family == 4 else ["2001:db8::100/64"])
    vip_lines = "".join(f"        {v}\n" for v in vips)
    return (f"global_defs {{\n    router_id offline\n{global_extra}}}\n"
            f"vrrp_instance {name} {{\n    state {state}\n    interface eth0\n    virtual_router_id {vrid}\n"
            f"    priority {priority}\n    advert_int {advert}\n    version {version}\n"
            f"    virtual_ipaddress {{\n{vip_lines}    }}\n{extra}}}\n")


# ============================================================================================
# B. Configuration language and --check
# ============================================================================================


def test_module_imports_and_has_map():
    assert vrrpd.__doc__ and "Map of this file" in vrrpd.__doc__


def test_the_map_names_every_section_banner_in_order():
    """The map at the top of vrrpd.py lists every section banner, numbered and titled as the banner is."""
    doc = vrrpd.__doc__ or ""
    mapped = re.findall(r"^ {1,2}(\d+\.) (.+?)(?: {2,}.*)?$|^ {5}(\d+\.\d+) (.+?)(?: {2,}.*)?$", doc, re.M)
    mapped = [(a or c, b or d) for a, b, c, d in mapped]
    banners = re.findall(r"^# (\d+\.(?:\d+)?) (.+)$", Path(VRRPD).read_text(), re.M)
    assert [n for n, _ in mapped] == [n for n, _ in banners], (mapped, banners)
    for (number, title), (_, banner) in zip(mapped, banners):
        assert banner.startswith(title), f"section {number}: the map says {title!r}, the banner {banner!r}"
    numbers = [tuple(int(x) for x in n.rstrip(".").split(".")) for n, _ in banners]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


SEED_HEADER = re.compile(r"# seed tutorial (\d{3})_[0-9a-f]{16}\.txt, lines (\d+)-(\d+): \S")


def seed_conf(name: str, first: int = 1, last: Optional[int] = None) -> str:
    """testdata/seeds/NAME.conf, one configuration as a seed tutorial prints it, without its one-line header
    (which says where it came from): line N here is line N of the configuration. first..last (1-based,
    inclusive) cut a part of it."""
    header, *lines = (SEEDS / f"{name}.conf").read_text(encoding="utf-8").splitlines()
    assert SEED_HEADER.match(header), header
    return "\n".join(lines[first - 1:last]) + "\n"


def test_seed_testdata_files_have_their_source_header_and_only_that_many_lines():
    files = sorted(SEEDS.glob("*.conf"))
    assert len(files) >= 13
    for path in files:
        header, *lines = path.read_text(encoding="utf-8").splitlines()
        m = SEED_HEADER.match(header)
        assert m and path.name.startswith(f"seed{m.group(1)}-"), (path.name, header)
        assert len(lines) == int(m.group(3)) - int(m.group(2)) + 1, (path.name, header, len(lines))
        assert lines and lines[0].strip() and not any(line.startswith("[root@") for line in lines), path.name


def repository_files() -> List[Path]:
    """The project's files: git's tracked files in a checkout, else every file of the tree (a copied one)."""
    if (HERE / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "-C", str(HERE), "ls-files", "-z"], capture_output=True, check=True).stdout
        return [HERE / name for name in out.decode().split("\0") if name and (HERE / name).is_file()]
    ignored = {line.strip().strip("/") for line in (HERE / ".gitignore").read_text().splitlines() if line.strip()}
    files = []
    for root, dirs, names in os.walk(HERE):
        dirs[:] = [d for d in dirs if d not in ignored and d != ".git"]
        files += [Path(root) / n for n in names if n not in ignored and not n.endswith(".pyc")]
    return files


def test_no_file_of_the_repository_refers_to_anything_beside_it():
    """A clone is all a user needs: no file reads the directory beside the checkout that CI happens to have
    (the seed tutorials' configurations the tests need are in testdata/seeds)."""
    sibling = "sh" + "ared"  # the needles are built so that this file does not match itself
    needles = [".." + "/" + sibling, ".." + "\\" + sibling, f'parent / "{sibling}"', f"parent / '{sibling}'",
               "/work/" + sibling]
    files = repository_files()
    assert HERE / "vrrpd.py" in files and SEEDS / "seed000-master.conf" in files and HERE / ".ci" / "run" in files
    found = [f"{path.relative_to(HERE)}: {needle}" for path in files
             for needle in needles if needle in path.read_text(encoding="utf-8", errors="replace")]
    assert not found, found


def test_ci_run_runs_make_test_in_a_lone_copy_of_the_repository_and_exits_with_its_status(tmp_path):
    """.ci/run: the README's `make test` with CI=true in a copy of the repository's files that has nothing
    beside it; make's exit status is CI's. (`make` here is a stand-in that reports where it ran.)"""
    require(os.geteuid() == 0, "needs root (.ci/run refuses to run without it)")
    fake = tmp_path / "bin"
    fake.mkdir()
    report = tmp_path / "report"
    (fake / "make").write_text(f"#!/bin/sh\n{{ echo \"$*\"; pwd; ls -A ..; echo \"CI=$CI\"; ls -A; "
                               f"ls testdata/seeds | wc -l; }} > {report}\necho 'fake summary'\nexit 7\n")
    (fake / "make").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", CI="false")
    env.pop("VRRPD_CI_KEEP", None)
    done = sh(["bash", str(HERE / ".ci" / "run")], check=False, env=env, timeout=60)
    assert done.returncode == 7 and "fake summary" in done.stdout, (done.stdout, done.stderr)
    args, where, beside, ci, *rest = report.read_text().splitlines()
    *listing, seeds = rest
    assert args == "test" and ci == "CI=true" and beside == "vrrpd", report.read_text()
    assert Path(where).name == "vrrpd" and Path(where).resolve() != HERE and not Path(where).exists()
    assert {"vrrpd.py", "test_vrrpd.py", "Makefile", "README.md", "testdata", ".ci"} <= set(listing), listing
    assert not {".git", "__pycache__", ".pytest_cache"} & set(listing), listing
    assert int(seeds) == len(list(SEEDS.glob("*.conf")))


def parse_ok(text: str, **kw):
    """Parse text; return (config, diagnostics) after asserting there is no ERROR."""
    config, diags = vrrpd.parse_config_text(text, "test.conf", **kw)
    errors = [str(d) for d in diags if d.severity is vrrpd.Severity.ERROR]
    assert not errors, errors
    return config, diags


def model_without_positions(config) -> dict:
    """The model as plain data, without line/file fields (which differ between layouts of one text)."""
    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in ("line", "file", "files")}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    return strip(vrrpd.small_asdict(config))


def messages(diags, severity=None) -> List[str]:
    return [str(d) for d in diags if severity is None or d.severity is severity]


def test_seed000_master_config_field_by_field():
    text = seed_conf("seed000-master")
    config, diags = vrrpd.parse_config_text(text, "seed000.conf")
    assert not messages(diags, vrrpd.Severity.ERROR)
    g = config.global_defs
    assert g.notification_email == ["jason@yinzhengjie.org.cn"]
    assert g.notification_email_from == "root@yinzhengjie.org.cn"
    assert g.smtp_server == "127.0.0.1" and g.smtp_port == 25
    assert g.smtp_connect_timeout == 30.0
    assert g.router_id == "node102.yinzhengjie.org.cn"
    assert g.vrrp_skip_check_adv_addr and g.vrrp_iptables and g.vrrp_strict
    assert g.vrrp_garp_interval == 0.0 and g.vrrp_gna_interval == 0.0
    assert g.vrrp_mcast_group4 == vrrpd.ipaddress.IPv4Address("224.0.0.18")
    [inst] = config.vrrp_instances
    assert inst.name == "VIP01" and inst.state is vrrpd.State.MASTER
    assert inst.interface == "eth1" and inst.virtual_router_id == 27
    assert inst.priority == 150 and inst.advert_int == 3.0
    [vip] = inst.virtual_ipaddress
    assert vip.address == vrrpd.ipaddress.ip_interface("172.30.1.200/32")
    assert vip.dev == "eth1" and vip.label == "eth1:0" and vip.line == 53
    # vrrp_strict drops authentication as keepalived does, with a warning at the authentication line
    assert inst.auth_type is vrrpd.AuthType.NONE and inst.auth_pass == b""
    warnings = messages(diags, vrrpd.Severity.WARNING)
    assert any(w.startswith("seed000.conf:45: warning:") and "authentication" in w for w in warnings), warnings
    assert any(w.startswith("seed000.conf:49: warning: auth_pass 'yinzhengjie'") and "'yinzheng'" in w
               for w in warnings), warnings
    assert any(w.startswith("seed000.conf:26: warning: vrrp_garp_interval 0") for w in warnings), warnings


SEED_CONFIGS = [
    # (testdata/seeds file, [(name, state, vrid, priority, VIPs)], ["LINE: error text", ...])
    ("seed000-master", [("VIP01", "MASTER", 27, 150, ["172.30.1.200/32"])], []),
    ("seed000-backup", [("VIP01", "BACKUP", 27, 100, ["172.30.1.200/32"])], []),
    ("seed001-one-line-master", [("", "MASTER", 101, 100, ["172.16.1.11/32"])],
     ["1: missing '{' after 'vrrp_instance'", "1: vrrp_instance has no name"]),
    ("seed001-one-line-backup", [("", "BACKUP", 101, 90, ["172.16.1.11/32"])],
     ["1: missing '{' after 'vrrp_instance'", "1: vrrp_instance has no name"]),
    ("seed001-one-line-lvs", [("", "MASTER", 22, 100, ["172.16.1.44/32"])],
     ["1: missing '{' after 'vrrp_instance'", "1: vrrp_instance has no name", "1: 'brd' needs a value (172.16.1.44/32)",
      "1: missing '{' after 'virtual_server'", "1: virtual_server: needs 'IP PORT', 'fwmark N' or 'group NAME'",
      "1: 'virtual_server' block opened here is never closed"]),
    ("seed002-master", [("VI_1", "MASTER", 80, 100, ["10.10.100.110/32"])], []),
    ("seed002-backup", [("VI_1", "BACKUP", 80, 90, ["10.10.100.110/32"])], []),
    ("seed002-master-master-node1", [("VI_1", "BACKUP", 80, 100, ["10.10.100.110/32"]),
                                     ("VI_2", "BACKUP", 81, 80, ["10.10.100.111/32"])],
     ["21: 'vrrp_instance' block opened here is never closed"]),  # the tutorial cut node 1's VI_2 short
    ("seed002-master-master-node2", [("VI_1", "BACKUP", 80, 90, ["10.10.100.110/32"]),
                                     ("VI_2", "MASTER", 81, 100, ["10.10.100.111/32"])], []),
    ("seed002-notify", [("VI_1", "BACKUP", 80, 100, ["10.10.100.110/32"])], []),
    ("seed003-master", [("VI_1", "MASTER", 27, 100, ["172.20.27.100/32"])],
     ["3: 'notification_email' block opened here is not closed before 'notification_email_from' at line 4"]),
    ("seed003-backup", [("VI_1", "BACKUP", 27, 80, ["172.20.27.100/32"])], []),
]


@pytest.mark.parametrize("seed", SEED_CONFIGS, ids=[c[0] for c in SEED_CONFIGS])
def test_every_seed_configuration(seed):
    name, instances, errors = seed
    config, diags = vrrpd.parse_config_text(seed_conf(name), "seed.conf")
    got = [(i.name, i.state.value, i.virtual_router_id, i.priority, [str(v.address) for v in i.virtual_ipaddress])
           for i in config.vrrp_instances]
    assert got == instances
    found = [str(d)[len("seed.conf:"):] for d in diags if d.severity is vrrpd.Severity.ERROR]
    expected = [e.split(": ", 1)[0] + ": error: " + e.split(": ", 1)[1] for e in errors]
    assert len(found) == len(errors) and all(any(f.startswith(e) for f in found) for e in expected), found


def test_seed000_auth_pass_truncated_to_8_bytes_without_strict():
    text = seed_conf("seed000-master").replace("vrrp_strict\n", "\n")
    config, diags = parse_ok(text)
    inst = config.vrrp_instances[0]
    assert inst.auth_type is vrrpd.AuthType.PASS and inst.auth_pass == b"yinzheng"


def test_seed002_unicast_master_and_notify_scripts():
    g_text = seed_conf("seed002-unicast-global_defs")
    inst_text = seed_conf("seed002-notify")
    config, diags = parse_ok(g_text + inst_text)
    assert config.global_defs.router_id == "ha1.example.com" and not config.global_defs.vrrp_strict
    [inst] = config.vrrp_instances
    assert inst.state is vrrpd.State.BACKUP and inst.priority == 100
    assert inst.unicast_src_ip == vrrpd.ipaddress.ip_address("10.10.100.106")
    assert [p.address for p in inst.unicast_peer] == [vrrpd.ipaddress.ip_address("10.10.100.107")]
    assert inst.auth_type is vrrpd.AuthType.PASS and inst.auth_pass == b"1111"
    assert inst.notify_master.argv == ["/etc/keepalived/notify.sh", "master"]
    assert inst.notify_master.raw == "/etc/keepalived/notify.sh master" and not inst.notify_master.shell
    assert inst.notify_backup.argv[-1] == "backup" and inst.notify_fault.argv[-1] == "fault"


def test_seed002_preempt_delay_with_unit_is_read_with_a_warning():
    text = seed_conf("seed002-master-master-node1", 1, 19)  # node 1's VI_1
    config, diags = parse_ok(text)
    inst = config.vrrp_instances[0]
    assert inst.preempt_delay == 60.0
    assert any(m.startswith("test.conf:7: warning: preempt_delay '60s'") for m in messages(diags)), messages(diags)


def test_seed003_unclosed_notification_email_is_an_error_at_its_line(tmp_path):
    text = seed_conf("seed003-master")  # from "! Configuration File for keepalived" to the instance's "}"
    assert text.splitlines()[2].strip() == "notification_email {"
    config, diags = vrrpd.parse_config_text(text, "seed003.conf")
    errors = messages(diags, vrrpd.Severity.ERROR)
    assert errors == ["seed003.conf:3: error: 'notification_email' block opened here is not closed before "
                      "'notification_email_from' at line 4 (add the missing '}')"]
    # recovery: the instance keepalived silently swallowed is there, with its unicast settings
    [inst] = config.vrrp_instances
    assert inst.name == "VI_1" and inst.virtual_router_id == 27 and inst.advert_int == 2.0
    assert str(inst.unicast_peer[0].address) == "172.20.27.11"
    assert config.global_defs.notification_email == []
    assert config.global_defs.router_id == "s1.mylinuxops.com"
    path = tmp_path / "seed003.conf"
    path.write_text(text)
    with pytest.raises(vrrpd.ConfigError) as exc:
        vrrpd.load_config(str(path), check_interfaces=False)
    assert "not closed" in str(exc.value)


def test_seed001_one_line_config_equals_the_multi_line_form():
    one_line = seed_conf("seed001-one-line-master")
    multi = one_line.replace("{", "{\n").replace("}", "\n}\n")
    assert multi.count("\n") > 10
    a, da = vrrpd.parse_config_text(one_line, "one.conf")
    b, db = vrrpd.parse_config_text(multi, "multi.conf")
    assert model_without_positions(a) == model_without_positions(b)
    [inst] = a.vrrp_instances
    assert inst.state is vrrpd.State.MASTER and inst.interface == "eno16777736"
    assert inst.virtual_router_id == 101 and inst.priority == 100 and inst.advert_int == 1.0
    assert inst.auth_type is vrrpd.AuthType.PASS and inst.auth_pass == b"123.com"
    assert [str(v.address) for v in inst.virtual_ipaddress] == ["172.16.1.11/32"]
    g = a.global_defs
    assert g.smtp_server == "127.0.0.1" and g.smtp_connect_timeout == 30.0 and g.router_id == "one"
    # the tutorial lost the instance's name and '{': both forms say so
    for diags in (da, db):
        errors = messages(diags, vrrpd.Severity.ERROR)
        assert any("vrrp_instance has no name" in e for e in errors), errors
        assert any("missing '{' after 'vrrp_instance'" in e for e in errors), errors


def one_line(text: str) -> str:
    """The same configuration with comments removed and every line joined into one."""
    return " ".join(vrrpd._strip_comment(line).strip() for line in text.splitlines()) + "\n"


@pytest.mark.parametrize("name", ["seed000", "seed002-master", "seed002-unicast", "seed003-fixed", "example", "lvs"])
def test_every_multi_line_config_equals_its_one_line_form(name):
    texts = {
        "seed000": lambda: seed_conf("seed000-master"),
        "seed002-master": lambda: seed_conf("seed002-master"),
        "seed002-unicast": lambda: seed_conf("seed002-unicast-global_defs") + seed_conf("seed002-notify"),
        "seed003-fixed": lambda: seed_conf("seed003-master").replace("notification_email {", "notification_email {}"),
        "example": lambda: (HERE / "vrrpd.conf.example").read_text(),
        "lvs": lambda: seed_conf("seed002-unicast-global_defs") + (
            "virtual_server 10.0.0.1 80 {\n delay_loop 3\n lb_algo rr\n lb_kind DR\n persistence_timeout\n"
            " protocol TCP\n sorry_server 127.0.0.1 80\n real_server 10.0.0.2 80 {\n  weight 2\n"
            "  HTTP_GET {\n   url {\n    path /index.html\n    status_code 200\n   }\n   connect_timeout 3\n"
            "   retry 3\n  }\n }\n real_server 10.0.0.3 80 {\n  MISC_CHECK {\n   misc_path \"/bin/true x\"\n"
            "   misc_dynamic\n  }\n }\n}\n"),
    }
    text = texts[name]()
    a, da = vrrpd.parse_config_text(text, "multi.conf")
    b, db = vrrpd.parse_config_text(one_line(text), "one.conf")
    assert one_line(text).count("\n") == 1
    assert model_without_positions(a) == model_without_positions(b)
    assert sorted(d.severity.value for d in da) == sorted(d.severity.value for d in db), (messages(da), messages(db))
    assert a.vrrp_instances or a.virtual_servers


def test_one_line_config_with_names_parses_cleanly():
    text = ("global_defs { router_id x } vrrp_instance VI_1 { state BACKUP interface lo virtual_router_id 5 "
            "priority 90 advert_int 1 virtual_ipaddress { 10.0.0.5/24 10.0.0.6/24 dev lo } }")
    config, diags = parse_ok(text)
    inst = config.vrrp_instances[0]
    assert [str(v.address) for v in inst.virtual_ipaddress] == ["10.0.0.5/24", "10.0.0.6/24"]
    assert [v.dev for v in inst.virtual_ipaddress] == [None, "lo"]
    assert not diags, messages(diags)


# -- grammar edge cases --------------------------------------------------------------------------

MINIMAL = """vrrp_instance VI_1 {
    interface lo
    virtual_router_id 51
    virtual_ipaddress {
        10.9.9.9/24
    }
}
"""


def test_comments_bang_hash_trailing_and_non_ascii():
    text = ("! keepalived style comment\n# hash comment\nglobal_defs {   # 全局配置\n"
            "    router_id node-1 ! trailing 注释\n    notification_email_from a@b.c#tail\n}\n" + MINIMAL)
    config, diags = parse_ok(text)
    assert config.global_defs.router_id == "node-1"
    assert config.global_defs.notification_email_from == "a@b.c"
    assert not diags, messages(diags)


def test_crlf_and_unicode_separators_do_not_shift_line_numbers():
    # a non-breaking space (pasted from a web page) separates words; U+2028 and form feed do not end lines
    text = "global_defs {\r\n router_id\u00a0a\u2028\x0c\r\n}\r\n" + MINIMAL.replace("\n", "\r\n") + "bogus\r\n"
    config, diags = vrrpd.parse_config_text(text, "crlf.conf")
    assert config.global_defs.router_id == "a"
    assert config.vrrp_instances[0].virtual_router_id == 51
    assert [(d.line, d.message) for d in diags] == [(11, "unknown keyword 'bogus' in the top level (ignored)")]


def test_escaped_comment_characters_and_quoted_hash_are_literal():
    text = 'global_defs {\n    router_id a\\#b\n}\nvrrp_script chk {\n    script "/bin/echo #1 !x"\n}\n'
    config, diags = vrrpd.parse_config_text(text)
    assert config.global_defs.router_id == "a#b"
    assert config.vrrp_scripts["chk"].script.argv == ["/bin/echo", "#1", "!x"]


def test_braces_glued_to_words_and_blocks_on_one_line():
    text = "vrrp_instance VI_1{interface lo\nvirtual_router_id 7\nvirtual_ipaddress{10.0.0.7}}\n"
    config, diags = parse_ok(text)
    inst = config.vrrp_instances[0]
    assert inst.name == "VI_1" and inst.virtual_router_id == 7
    assert str(inst.virtual_ipaddress[0].address) == "10.0.0.7/32"


def test_block_brace_on_next_line():
    text = "vrrp_instance VI_1\n{\n interface lo\n virtual_router_id 8\n virtual_ipaddress\n {\n 10.0.0.8\n }\n}\n"
    config, diags = parse_ok(text)
    assert config.vrrp_instances[0].virtual_router_id == 8
    assert len(config.vrrp_instances[0].virtual_ipaddress) == 1


def test_line_continuation_joins_lines():
    text = MINIMAL + "vrrp_script chk {\n    script \"/bin/check \\\n --fast\"\n  interval 3\n}\n"
    config, diags = parse_ok(text)
    script = config.vrrp_scripts["chk"]
    assert script.script.argv == ["/bin/check", "--fast"] and script.interval == 3.0
    assert script.line == 8


def test_parameters_defined_and_substituted():
    text = ("$IF=lo\n$PRIO=120\n$VIP=10.1.2.3/24 dev ${IF}\n"
            "vrrp_instance VI_$PRIO {\n  interface $IF\n  virtual_router_id 9\n  priority ${PRIO}\n"
            "  virtual_ipaddress {\n    $VIP\n  }\n  notify_master \"/bin/echo $UNDEFINED\"\n}\n")
    config, diags = parse_ok(text)
    inst = config.vrrp_instances[0]
    assert inst.name == "VI_120" and inst.interface == "lo" and inst.priority == 120
    assert inst.virtual_ipaddress[0].dev == "lo" and str(inst.virtual_ipaddress[0].address) == "10.1.2.3/24"
    assert inst.notify_master.argv == ["/bin/echo", "$UNDEFINED"]
    assert inst.line == 4  # definition lines still count


def test_multi_line_parameter_definition_expands_to_a_block():
    text = ("$INST= \\\nvrrp_instance VI_${ID} { \\\n interface lo \\\n virtual_router_id ${ID} \\\n"
            " virtual_ipaddress { 10.0.${ID}.1 } \\\n}\n$ID=11\n$INST\n$ID=12\n$INST\n")
    config, diags = parse_ok(text)
    assert [(i.name, i.virtual_router_id) for i in config.vrrp_instances] == [("VI_11", 11), ("VI_12", 12)]
    assert str(config.vrrp_instances[1].virtual_ipaddress[0].address) == "10.0.12.1/32"


def test_self_referencing_parameter_is_an_error_not_a_hang():
    config, diags = vrrpd.parse_config_text("$A=x$A\nglobal_defs {\n router_id $A\n}\n")
    assert any(d.line == 3 and "does not terminate" in d.message for d in diags), messages(diags)


def test_conditional_config_id_lines():
    me = vrrpd.socket.gethostname().split(".")[0]
    text = (f"global_defs {{\n@{me} router_id mine\n@not-{me} router_id other\n@^{me} smtp_server 10.0.0.1\n}}\n"
            + MINIMAL)
    config, diags = parse_ok(text)
    assert config.global_defs.router_id == "mine" and config.global_defs.smtp_server is None


def test_config_id_selects_conditional_lines_and_env_parameters(monkeypatch):
    monkeypatch.setenv("VRRPD_TEST_PRIO", "123")
    text = ("global_defs {\n@lb1 router_id first\n@lb2 router_id second\n}\n"
            + inst(BASE + "\npriority ${_ENV VRRPD_TEST_PRIO}\nnotify \"/bin/echo ${_HASH}x\""))
    one, _ = vrrpd.parse_config_text(text, config_id="lb1")
    two, _ = vrrpd.parse_config_text(text, config_id="lb2")
    assert (one.global_defs.router_id, two.global_defs.router_id) == ("first", "second")
    assert one.vrrp_instances[0].priority == 123
    assert one.vrrp_instances[0].notify.argv == ["/bin/echo", "#x"]


def test_lexer_keeps_one_string_per_distinct_word(tmp_path):
    """A thousand instances repeat the same keywords: their tokens share one string each (the token list is
    most of what a start's memory peaks at), and what the model keeps of them too."""
    one = "vrrp_instance VI_{n} {{\n    state MASTER\n    interface eth0\n    virtual_router_id {n}\n" \
        "    advert_int 2\n}}\n"
    text = "".join(one.format(n=n) for n in (1, 2)) + "@x " + one.format(n=3)
    path = tmp_path / "k.conf"
    path.write_text(text)
    lexer = vrrpd._Lexer([], "x")
    lexer.read_file(str(path))
    words = [t.text for t in lexer.tokens]
    assert words.count("MASTER") == 3 and words.count("{") == 3
    for word in ("state", "MASTER", "eth0", "{"):
        assert len({id(t.text) for t in lexer.tokens if t.text == word}) == 1, word
    config, _diags = vrrpd.parse_config(str(path), config_id="x")
    assert [i.name for i in config.vrrp_instances] == ["VI_1", "VI_2", "VI_3"]
    assert config.vrrp_instances[0].interface is config.vrrp_instances[1].interface
    assert config.vrrp_instances[0].advert_int is config.vrrp_instances[1].advert_int == 2.0  # one float


def test_lexed_tokens_are_kept_compactly_and_the_parser_still_finds_an_unclosed_block():
    """The lexer makes no Token objects (the parser gets one per word it reads), about 17 bytes a token."""
    one = "vrrp_instance VI_{n} {{\n    interface eth0\n    virtual_router_id {n}\n    priority 100\n}}\n"
    text = "global_defs {\n    router_id r1\n}\n" + one.format(n=1) + "vrrp_instance VI_2 {\n    interface eth0\n" \
        + "".join(one.format(n=n) for n in range(3, 203))  # VI_2 is not closed
    gc.collect()
    before = sum(isinstance(o, vrrpd.Token) for o in gc.get_objects())
    lexer = vrrpd._Lexer([], "x")
    lexer.lex_text(text, "t.conf")
    gc.collect()
    assert sum(isinstance(o, vrrpd.Token) for o in gc.get_objects()) == before
    tokens = lexer.tokens
    kept = sum(sys.getsizeof(part) for part in (tokens.texts, tokens.lids, tokens.quoted, tokens.lines,
                                                   tokens.file_of))
    assert len(tokens) > 2000 and kept / len(tokens) < 24, kept / len(tokens)
    tok = tokens[len(tokens) - 2]
    assert (tok.text, tok.file, tok.line, tok.quoted) == ("100", "t.conf", len(text.splitlines()) - 1, False)
    config, diags = vrrpd._finish(lexer, [], False)
    assert [i.name for i in config.vrrp_instances][:3] == ["VI_1", "VI_2", "VI_3"]
    assert [(i.virtual_router_id, i.interface) for i in config.vrrp_instances][:3] == [(1, "eth0"), (0, "eth0"),
                                                                                      (3, "eth0")]
    assert any("'vrrp_instance' block opened here is not closed before 'vrrp_instance' at line 11" in d.message
               for d in diags), [d.message for d in diags]


def test_include_glob_relative_to_including_file_and_nested(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "main.conf").write_text(
        "global_defs {\n router_id r1\n}\ninclude conf.d/*.conf\ninclude sub/{x,y}.inc\n")
    (tmp_path / "conf.d" / "b.conf").write_text(MINIMAL.replace("VI_1", "VI_B").replace("51", "52"))
    (tmp_path / "conf.d" / "a.conf").write_text(MINIMAL.replace("VI_1", "VI_A"))
    (tmp_path / "sub" / "x.inc").write_text("include ../scripts.inc\n")
    (tmp_path / "scripts.inc").write_text("vrrp_script chk {\n script /bin/true\n}\n")
    config, diags = vrrpd.parse_config(str(tmp_path / "main.conf"))
    assert not [d for d in diags if d.severity is vrrpd.Severity.ERROR], messages(diags)
    assert [i.name for i in config.vrrp_instances] == ["VI_A", "VI_B"]  # glob matches sorted
    assert "chk" in config.vrrp_scripts
    assert config.vrrp_instances[1].file == str(tmp_path / "conf.d" / "b.conf")
    assert len(config.files) == 5


def test_include_loop_is_reported_once_and_terminates(tmp_path):
    (tmp_path / "a.conf").write_text("include b.conf\n" + MINIMAL)
    (tmp_path / "b.conf").write_text("global_defs {\n router_id x\n}\ninclude a.conf\n")
    config, diags = vrrpd.parse_config(str(tmp_path / "a.conf"))
    loops = [d for d in diags if "include loop" in d.message]
    assert len(loops) == 1 and loops[0].file.endswith("b.conf") and loops[0].line == 4
    assert len(config.vrrp_instances) == 1


def test_include_without_match_warns_and_includem_errors(tmp_path):
    (tmp_path / "m.conf").write_text(MINIMAL + "include nothing-*.conf\nincludem missing.conf\n")
    config, diags = vrrpd.parse_config(str(tmp_path / "m.conf"))
    got = {(d.line, d.severity, d.message) for d in diags if "onfig files" in d.message}
    assert got == {(8, vrrpd.Severity.WARNING, "No config files matched 'nothing-*.conf'."),
                   (9, vrrpd.Severity.ERROR, "Config files missing 'missing.conf'.")}


def test_include_check_makes_include_problems_errors_as_keepalived_does(tmp_path):
    (tmp_path / "ok.conf").write_text("")
    (tmp_path / "exec.conf").write_text("")
    (tmp_path / "exec.conf").chmod(0o755)
    includes = "include missing.conf\ninclude none-*.conf\ninclude {ok,gone}.conf\ninclude exec.conf\n"

    def problems(words=None):
        head = "" if words is None else f"global_defs {{\n    include_check {words}\n}}\n"
        (tmp_path / "m.conf").write_text(head + includes + MINIMAL)
        _config, diags = vrrpd.parse_config(str(tmp_path / "m.conf"))
        return {(d.line - head.count("\n"), d.severity.value) for d in diags}

    # plain include: every problem is said, none is an error (an executable file is skipped all the same)
    assert problems() == {(1, "warning"), (2, "warning"), (3, "warning"), (4, "warning")}
    assert problems("") == {(1, "error"), (2, "error"), (3, "error"), (4, "error")}  # every check
    assert problems("read") == {(1, "warning"), (2, "warning"), (3, "warning"), (4, "error")}
    assert problems("match") == {(1, "error"), (2, "warning"), (3, "warning"), (4, "error")}
    assert problems("+wildcard_match") == {(1, "warning"), (2, "error"), (3, "warning"), (4, "warning")}
    assert problems("brace_match -read") == {(1, "warning"), (2, "warning"), (3, "error"), (4, "warning")}
    # an included file cannot change the checks of the file that includes it
    (tmp_path / "sets.conf").write_text("global_defs {\n    include_check\n}\n")
    (tmp_path / "m.conf").write_text("include sets.conf\ninclude missing.conf\n" + MINIMAL)
    _config, diags = vrrpd.parse_config(str(tmp_path / "m.conf"))
    assert [(d.line, d.severity.value) for d in diags if "missing" in d.message] == [(2, "warning")]
    _config, diags = parse_ok("global_defs {\n include_check match bogus +nope\n}\n" + MINIMAL)
    assert [d.message for d in diags] == ["Duplicate include_check 'bogus' specified - ignoring",
                                          "Unknown include_check type 'nope' - ignoring"]


def test_unreadable_file_is_an_error_diagnostic(tmp_path):
    config, diags = vrrpd.parse_config(str(tmp_path / "absent.conf"))
    assert len(diags) == 1 and diags[0].severity is vrrpd.Severity.ERROR and "cannot read" in diags[0].message
    with pytest.raises(vrrpd.ConfigError):
        vrrpd.load_config(str(tmp_path / "absent.conf"))


def test_command_splitting_quotes_escapes_shell_and_user():
    text = ('vrrp_script a {\n script "/usr/bin/check \'two words\' x\\"y\\ty"\n user nobody nogroup\n}\n'
            'vrrp_script b {\n script "killall -0 nginx" \n}\n'
            'vrrp_script c {\n script "/bin/sh -c \'test -f /x || exit 1\'"\n}\n'
            'vrrp_script d {\n script "[[ -f /etc/keepalived/down ]] && exit 1 || exit 0"\n}\n'
            'vrrp_script e {\n script "/bin/ls /tmp/*.pid"\n}\n'
            'vrrp_instance V {\n interface lo\n virtual_router_id 1\n'
            ' notify_master "/etc/keepalived/notify.sh master" keepalived_script staff\n'
            ' notify_backup /etc/keepalived/notify.sh to-backup\n}\n')
    config, diags = vrrpd.parse_config_text(text)
    s = config.vrrp_scripts
    assert s["a"].script.argv == ["/usr/bin/check", "two words", 'x"y\ty'] and not s["a"].script.shell
    assert (s["a"].user, s["a"].group) == ("nobody", "nogroup")
    assert s["b"].script.argv == ["killall", "-0", "nginx"] and s["b"].script.raw == "killall -0 nginx"
    assert s["c"].script.argv == ["/bin/sh", "-c", "test -f /x || exit 1"]
    assert s["d"].script.shell and s["e"].script.shell
    inst = config.vrrp_instances[0]
    assert inst.notify_master.argv == ["/etc/keepalived/notify.sh", "master"]
    assert (inst.notify_master.user, inst.notify_master.group) == ("keepalived_script", "staff")
    assert inst.notify_backup.argv == ["/etc/keepalived/notify.sh", "to-backup"] and inst.notify_backup.user is None
    assert any(d.line == 21 and 'write notify_backup "/etc/keepalived/notify.sh to-backup"' in str(d) for d in diags)


def test_unquoted_notify_words_naming_a_user_are_user_and_group_as_in_keepalived():
    import grp
    import pwd

    user = pwd.getpwuid(0).pw_name
    group = grp.getgrgid(0).gr_name
    text = inst(BASE + f"\nnotify_master /bin/echo {user} {group}\nnotify_backup /bin/echo hello")
    config, diags = vrrpd.parse_config_text(text, "u.conf")
    i = config.vrrp_instances[0]
    assert (i.notify_master.argv, i.notify_master.user, i.notify_master.group) == (["/bin/echo"], user, group)
    assert (i.notify_backup.argv, i.notify_backup.user) == (["/bin/echo", "hello"], None)
    assert [d.line for d in diags if "enable_script_security" not in d.message] == [7, 8], messages(diags)


def test_flags_accept_optional_booleans():
    text = ("global_defs {\n vrrp_strict off\n smtp_alert\n vrrp_skip_check_adv_addr yes\n}\n"
            "vrrp_instance V {\n interface lo\n virtual_router_id 1\n strict_mode false\n"
            " virtual_ipaddress {\n 10.0.0.1\n }\n}\n")
    config, diags = parse_ok(text)
    g = config.global_defs
    assert g.vrrp_strict is False and g.smtp_alert is True and g.vrrp_skip_check_adv_addr is True
    assert config.vrrp_instances[0].strict_mode is False


def test_times_stay_floats_and_advert_int_rounding_is_a_warning():
    text = MINIMAL.replace("virtual_router_id 51", "virtual_router_id 51\n    advert_int 0.05")
    config, diags = vrrpd.parse_config_text(text, "t.conf")
    assert config.vrrp_instances[0].advert_int == 0.05
    assert messages(diags) == ["t.conf:4: warning: vrrp_instance VI_1: advert_int 0.05 must be whole seconds in "
                               "VRRPv2; using 1 (use 'version 3' for sub-second adverts)"]
    config, diags = parse_ok(text.replace("advert_int 0.05", "advert_int 0.05\n    version 3"))
    assert not diags and vrrpd.vrrp_timers(config.vrrp_instances[0], config.global_defs)[0] == 0.05


def test_virtual_server_forms_and_checkers():
    text = """virtual_server_group web {
    10.0.0.1 80
    10.0.0.10-20 80
    192.168.0.0/30 443
    fwmark 5
}
virtual_server group web {
    lb_algo wrr
    lb_kind TUN type gue port 6080
    protocol udp
    persistence_timeout
    real_server 10.1.0.1 80 {
        weight 3
        notify_down "/bin/echo down"
        HTTP_GET {
            url {
                path /health
                digest 0123456789ABCDEF0123456789abcdef
                status_code 200 301-302
            }
            nb_get_retry 4
            delay_before_retry 2
        }
        SMTP_CHECK {
            helo_name mx.example.com
        }
    }
}
virtual_server 2001:db8::1 53 {
    protocol UDP
    real_server 2001:db8::2 53 {
        DNS_CHECK {
            type AAAA
            name example.org
        }
    }
}
"""
    config, diags = vrrpd.parse_config_text(text, "vs.conf")
    assert [m for m in messages(diags) if "enable_script_security" not in m] == [
        "vs.conf:21: warning: nb_get_retry is deprecated (write 'retry')"]
    grp = config.virtual_server_groups["web"]
    assert [(str(e.first), str(e.last), e.port) for e in grp.entries[:3]] == [
        ("10.0.0.1", "10.0.0.1", 80), ("10.0.0.10", "10.0.0.20", 80), ("192.168.0.0", "192.168.0.3", 443)]
    assert grp.entries[3].fwmark == 5
    vs = config.virtual_servers[0]
    assert vs.group == "web" and vs.lb_algo == "wrr" and vs.lb_kind is vrrpd.LbKind.TUN
    assert (vs.tunnel_type, vs.tunnel_port) == ("gue", 6080) and vs.protocol == "UDP"
    assert vs.persistence_timeout == 360
    rs = vs.real_servers[0]
    assert rs.weight == 3 and rs.notify_down.argv == ["/bin/echo", "down"]
    http, smtp = rs.checkers
    assert http.kind == "HTTP_GET" and http.retry == 4 and http.delay_before_retry == 2.0
    assert http.urls[0].digest == "0123456789abcdef0123456789abcdef"
    assert http.urls[0].status_code == [(200, 200), (301, 302)]
    assert smtp.kind == "SMTP_CHECK" and smtp.helo_name == "mx.example.com"
    v6 = config.virtual_servers[1]
    assert v6.address == vrrpd.ipaddress.ip_address("2001:db8::1") and v6.family == 6
    assert v6.real_servers[0].checkers[0].dns_type == "AAAA"


def test_sync_group_track_file_and_track_process_blocks():
    text = MINIMAL + MINIMAL.replace("VI_1", "VI_2").replace("51", "52") + """
vrrp_sync_group G {
    group {
        VI_1 VI_2
    }
    track_file {
        tf weight 2
    }
    notify "/bin/notify.sh"
}
track_file tf {
    file "/run/prio"
    weight -3 reverse
    init_file 5 overwrite
}
vrrp_track_process nginx {
    process nginx -g daemon
    param_match initial
    quorum 2
    weight 10
}
"""
    config, diags = parse_ok(text)
    g = config.sync_groups[0]
    assert g.group == ["VI_1", "VI_2"] and g.track_file[0].weight == 2
    assert [i.sync_group for i in config.vrrp_instances] == ["G", "G"]
    tf = config.track_files["tf"]
    assert (tf.path, tf.weight, tf.weight_reverse, tf.init_file, tf.init_file_overwrite) == (
        "/run/prio", -3, True, 5, True)
    tp = config.track_processes["nginx"]
    assert tp.process == ["nginx", "-g", "daemon"] and tp.param_match == "initial" and tp.quorum == 2


def test_accepted_only_keywords_are_kept_in_global_other_without_diagnostics():
    text = "global_defs {\n vrrp_process_name vx\n random_seed 7\n}\n"
    config, diags = parse_ok(text + MINIMAL)
    assert config.global_defs.other["vrrp_process_name"] == ["vx"]
    assert config.global_defs.other["random_seed"] == ["7"]
    assert not diags, messages(diags)


def test_words_no_keepalived_knows_are_unknown_keywords_and_what_keepalived_ignores_is_said_so():
    """vrrp_garp_interval_random and the like are in no keepalived (2.2.7, 2.4.3 or later): keepalived says
    "Unknown keyword", and so does vrrpd. random_seed and vrrp_ipsets keepalived reads and does nothing with."""
    for word in ("vrrp_garp_interval_random", "vrrp_max_timer_adverts", "vrrp_startup_delay_log",
                 "vrrp_track_process_sleep", "vrrp_iptables_table", "vrrp_ipset_table"):
        _, diags = vrrpd.parse_config_text(f"global_defs {{\n {word}\n}}\n" + MINIMAL, "u.conf")
        assert f"unknown keyword '{word}' in global_defs" in " ".join(messages(diags)), word
    table = vrrpd.keyword_table_markdown()
    ignored = [r for r in table.splitlines() if r.endswith("| accepted; keepalived ignores it too |")]
    assert "| global_defs | `random_seed` `vrrp_ipsets` | accepted; keepalived ignores it too |" in ignored
    assert vrrpd.no_meaning_here("max_auto_priority")[0] == "one process"



def test_debug_level_is_written_to_the_data_dump_as_keepalived_does(offline):
    """keepalived's `debug N` (0-4) changes nothing but its data dump's "Debug level = N" line."""
    d, _ = offline(instance_text(extra="    debug 3\n"))
    assert "   Debug level = 3\n" in vrrpd.format_data_dump(d)
    plain, _ = offline(instance_text())
    assert "Debug level" not in vrrpd.format_data_dump(plain)
    _, diags = vrrpd.parse_config_text(instance_text(extra="    debug 5\n"), "d.conf")
    assert any(x.severity is vrrpd.Severity.ERROR and "debug" in x.message for x in diags), messages(diags)

def test_keywords_without_meaning_in_one_process_warn_once_when_keepalived_acts_on_them(tmp_path, caplog):
    text = ("global_defs {\n vrrp_rt_priority 50\n checker_rt_priority 50\n vrrp_process_name vrrpx\n"
            " enable_snmp_vrrp\n enable_dbus\n dbus_service_name x\n}\n")
    _, diags = vrrpd.parse_config_text(text + "vrrp_instance B {\n vrrp_rt_priority 5\n}\n" + MINIMAL, "p.conf")
    warned = [m for m in messages(diags) if "keepalived" in m and "ignores it" in m]
    assert warned == [
        "p.conf:2: warning: vrrp_rt_priority: keepalived runs that process with real-time scheduling; vrrpd is one "
        "process and ignores it",
        "p.conf:3: warning: checker_rt_priority: keepalived runs that process with real-time scheduling; vrrpd is "
        "one process and ignores it",
        "p.conf:5: warning: enable_snmp_vrrp: keepalived runs an SNMP subagent; vrrpd is without SNMP and ignores it",
        "p.conf:6: warning: enable_dbus: keepalived offers a DBus interface; vrrpd is without DBus and ignores it"]
    # the start-up log says it too, once
    path = tmp_path / "p.conf"
    path.write_text(text + MINIMAL)
    caplog.set_level("WARNING", logger="vrrpd")
    vrrpd.load_config(str(path), check_interfaces=False)
    assert caplog.text.count("vrrp_rt_priority: keepalived runs that process") == 1


def test_global_flags_with_optional_words():
    text = ("global_defs {\n lvs_flush_on_stop VS\n vrrp_iptables IN OUT\n smtp_server mail.example.com 2525\n"
            " lvs_timeouts tcp 7200 udp 300\n script_user nobody nogroup\n}\n"
            "track_file f {\n file /run/f\n init_file -3 overwrite\n}\n")
    config, diags = parse_ok(text)
    g = config.global_defs
    assert g.lvs_flush_on_stop and g.other["lvs_flush_on_stop"] == ["VS"]
    assert g.vrrp_iptables and g.other["vrrp_iptables"] == ["IN", "OUT"]
    assert (g.smtp_server, g.smtp_port) == ("mail.example.com", 2525)
    assert g.lvs_timeouts == {"tcp": 7200, "udp": 300}
    assert (g.script_user, g.script_group) == ("nobody", "nogroup")
    tf = config.track_files["f"]
    assert (tf.init_file, tf.init_file_overwrite) == (-3, True)


def test_keyword_table_markdown_comes_from_the_registry_and_is_in_the_readme():
    table = vrrpd.keyword_table_markdown()
    rows = [r for r in table.splitlines() if r.startswith("| ") and "`" in r]
    listed = [(r.split(" | ")[0][2:], name, r.rsplit(" | ", 1)[1].rstrip(" |"))
              for r in rows for name in re.findall(r"`([^`]+)`", r)]
    assert len(listed) == sum(len(spec) for spec in vrrpd.KEYWORDS.values())
    assert ("vrrp_instance", "virtual_router_id", "supported") in listed
    assert ("global_defs", "lvs_sync_daemon", "supported") in listed
    assert ("global_defs", "nftables_ipvs", "supported") in listed
    assert ("global_defs", "enable_snmp_vrrp",
            "accepted, not acted upon (no meaning in one process without SNMP and DBus)") in listed
    for name in ("virtual_routes", "static_rules", "dynamic_interfaces", "instance", "UDP_CHECK", "mcast_dst_ip"):
        assert any(n == name and what == "supported" for _, n, what in listed), name
    readme = (HERE / "README.md").read_text()
    assert table in readme, "README keyword table is stale: paste vrrpd.keyword_table_markdown() between its markers"


# -- validation: every rule, with its line ---------------------------------------------------------

def inst(body: str, name: str = "VI_1", head: str = "") -> str:
    """A vrrp_instance block (line 1 is its header) with body lines indented."""
    lines = [f"vrrp_instance {name} {{"] + ["    " + b for b in body.strip("\n").split("\n")] + ["}"]
    return head + "\n".join(lines) + "\n"


BASE = "interface lo\nvirtual_router_id 50\nvirtual_ipaddress {\n    10.0.0.1\n}"

VALIDATION_CASES = [
    # (id, text, expected line, severity, text the message must contain)
    ("no-name", "vrrp_instance {\n interface lo\n virtual_router_id 1\n}\n", 1, "error", "vrrp_instance has no name"),
    ("no-interface", inst("virtual_router_id 5"), 1, "error", "no 'interface'"),
    ("no-vrid", inst("interface lo"), 1, "error", "no 'virtual_router_id'"),
    ("vrid-range", inst("interface lo\nvirtual_router_id 256"), 3, "error", "number '256' outside range [1, 255]"),
    ("vrid-zero", inst("interface lo\nvirtual_router_id 0"), 3, "error", "outside range [1, 255]"),
    # keepalived runs these with the default priority 100 (and so does vrrpd), so they are warnings
    ("prio-range", inst(BASE + "\npriority 0"), 7, "warning", "priority: number '0' outside range [1, 255]; "
     "keepalived uses the default 100"),
    ("prio-256", inst(BASE + "\npriority 256"), 7, "warning", "number '256' outside range [1, 255]"),
    ("prio-nan", inst(BASE + "\npriority high"), 7, "warning", "'high' is not a number"),
    ("advert-range", inst(BASE + "\nadvert_int 300"), 7, "error",
     "advert_int: '300' outside range [0.01, 255] seconds"),
    ("advert-v2-int", inst(BASE + "\nadvert_int 1.5"), 7, "warning", "must be whole seconds in VRRPv2; using 2"),
    ("advert-v3-max", inst(BASE + "\nversion 3\nadvert_int 50"), 8, "error", "exceeds the VRRPv3 maximum"),
    ("auth-pass-long", inst(BASE + "\nauthentication {\n auth_type PASS\n auth_pass 123456789\n}"), 9, "warning",
     "longer than 8 characters; only '12345678' is used"),
    ("auth-v3", inst(BASE + "\nversion 3\nauthentication {\n auth_type PASS\n auth_pass x\n}"), 8, "warning",
     "VRRPv3 has no authentication: keepalived ignores the authentication"),
    ("auth-type", inst(BASE + "\nauthentication {\n auth_type MD5\n}"), 8, "warning",
     "unknown authentication type 'MD5': keepalived sends adverts without authentication"),
    ("strict-unicast", "global_defs {\n vrrp_strict\n}\n" + inst(BASE + "\nunicast_peer {\n 10.0.0.2\n}"), 10,
     "error", "unicast_peer is not allowed with vrrp_strict"),
    ("strict-no-vip", "global_defs {\n vrrp_strict\n}\n" + inst("interface lo\nvirtual_router_id 3"), 4, "error",
     "vrrp_strict needs at least one virtual_ipaddress"),
    ("strict-v2-ipv6", "global_defs {\n vrrp_strict\n}\n" + inst(
        "interface lo\nvirtual_router_id 3\nvirtual_ipaddress {\n 2001:db8::1\n}"), 8, "warning",
     "under vrrp_strict keepalived wants the first IPv6 address link-local and drops the instance; vrrpd runs it"),
    ("strict-mode-instance", inst("interface lo\nvirtual_router_id 3\nstrict_mode"), 1, "error",
     "strict_mode needs at least one virtual_ipaddress"),
    ("dup-vrid", inst(BASE) + inst(BASE.replace("10.0.0.1", "10.0.0.2"), "VI_2"), 10, "error",
     "virtual_router_id 50 on lo is already used by vrrp_instance VI_1 (line 1)"),
    ("dup-name", inst(BASE) + inst(BASE.replace("50", "51")), 8, "error",
     "duplicate vrrp_instance name 'VI_1' (first defined at line 1)"),
    ("track-script", "vrrp_script chk_nginx {\n script /bin/true\n}\n" + inst(BASE + "\ntrack_script {\n chk_ngnix\n}"),
     11, "warning", "track_script 'chk_ngnix' names no vrrp_script: keepalived ignores it, and so does vrrpd "
     "(did you mean 'chk_nginx'?)"),
    ("sync-member", inst(BASE) + "vrrp_sync_group G {\n group {\n  VI_1\n  VI_9\n }\n}\n", 11, "error",
     "vrrp_sync_group G: 'VI_9' names no vrrp_instance"),
    ("script-missing", "vrrp_script chk {\n interval 2\n}\n", 1, "warning",
     "vrrp_script chk has no 'script': keepalived removes it"),
    ("preempt-delay-unit", inst(BASE + "\npreempt_delay 60s"), 7, "warning",
     "preempt_delay '60s': keepalived rejects time units; read as 60 seconds"),
    ("garp-zero", "global_defs {\n vrrp_garp_interval 0\n}\n", 2, "warning", "vrrp_garp_interval 0: keepalived 2.2 "
     "rejects 0; read as no delay"),
    ("did-you-mean", inst(BASE + "\nnopreemt"), 7, "warning",
     "unknown keyword 'nopreemt' in vrrp_instance (ignored) (did you mean 'nopreempt'?)"),
    ("wrong-block-global", "global_defs {\n nopreempt\n}\n", 2, "warning",
     "'nopreempt' does not belong in global_defs (ignored) (it belongs in vrrp_instance)"),
    ("wrong-block-instance", inst(BASE + "\nvrrp_strict"), 7, "warning",
     "'vrrp_strict' does not belong in vrrp_instance (ignored) (it belongs in global_defs)"),
    ("extra-brace", inst(BASE) + "}\n", 8, "warning", "extra '}' at the top level: keepalived ignores it"),
    ("never-closed", "global_defs {\n router_id x\n" + inst(BASE)[:-2], 1, "error",
     "'global_defs' block opened here is not closed before 'vrrp_instance' at line 3"),
    ("eof-unclosed", inst(BASE)[:-2], 1, "error", "'vrrp_instance' block opened here is never closed"),
    ("vip-unclosed", inst("interface lo\nvirtual_router_id 5\nvirtual_ipaddress {\n 10.0.0.1\npriority 90"), 4,
     "error", "'virtual_ipaddress' block opened here is not closed before 'priority' at line 6"),
    ("bad-vip", inst("interface lo\nvirtual_router_id 5\nvirtual_ipaddress {\n 10.0.0.300/24\n}"), 5, "error",
     "'10.0.0.300/24' is not an IP address"),
    ("bad-state", inst(BASE + "\nstate PRIMARY"), 7, "warning",
     "unknown state 'PRIMARY': keepalived starts the instance as BACKUP"),
    ("missing-value", inst(BASE + "\npriority"), 7, "error", "'priority' needs a value"),
    ("keyword-as-value", inst(BASE + "\nnotify_master notify_backup /bin/true"), 7, "error",
     "'notify_master' needs a value"),
    ("too-many-values", inst(BASE + "\npriority 100 200"), 7, "warning",
     "unexpected '200' after 'priority' (ignored) (too many values, or a comment without '#')"),
    ("auth-lower-case", inst(BASE + "\nauthentication {\n auth_type pass\n auth_pass x\n}"), 8, "warning",
     "unknown authentication type 'pass': keepalived sends adverts without authentication, and so does vrrpd "
     "(write 'auth_type PASS')"),
    ("lb-kind-lower-case", "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_kind dr\n real_server 10.0.0.2 80 {\n"
     " }\n}\n", 3, "warning", "lb_kind 'dr': keepalived needs upper case"),
    ("ifname-too-long", inst("interface averyveryverylongname0\nvirtual_router_id 5"), 2, "error",
     "'averyveryverylongname0' cannot be a Linux interface name"),
    ("label-prefix", inst("interface lo\nvirtual_router_id 5\nvirtual_ipaddress {\n 10.0.0.1 label eth0:1\n}"), 5,
     "warning", "label 'eth0:1' of 10.0.0.1/32 does not start with its interface name 'lo'"),
    ("mail-no-server", "global_defs {\n notification_email {\n  ops@example.com\n }\n}\n", 2, "warning",
     "notification_email without smtp_server: no e-mail will be sent"),
    ("bad-mcast", "global_defs {\n vrrp_mcast_group4 10.0.0.1\n}\n", 2, "error", "not an IPv4 multicast address"),
    ("nat-mask", "virtual_server 10.0.0.1 80 {\n nat_mask 255.255.255.0\n real_server 10.0.0.2 80 {\n }\n}\n", 2,
     "warning", "unknown keyword 'nat_mask' in virtual_server"),
    ("vs-no-rs", "virtual_server 10.0.0.1 80 {\n lb_algo rr\n}\n", 1, "warning", "virtual_server has no real_server"),
    ("vs-group", "virtual_server group nope {\n real_server 10.0.0.2 80 {\n }\n}\n", 1, "error",
     "virtual_server group 'nope' names no virtual_server_group"),
    ("unknown-sched", "virtual_server 10.0.0.1 80 {\n lb_algo rrr\n real_server 10.0.0.2 80 {\n }\n}\n", 2,
     "warning", "unknown scheduler 'rrr' (did you mean 'rr'?)"),
    ("nopreempt-master", inst(BASE + "\nstate MASTER\nnopreempt"), 8, "warning",
     "nopreempt is ignored with state MASTER"),
    ("script-security", inst(BASE + '\nnotify "/bin/true"'), 7, "warning",
     "scripts are configured but enable_script_security is not set"),
    ("script-missing-file", inst(BASE + '\nnotify_master "/nonexistent/vrrpd-notify.sh master"'), 7, "warning",
     "notify_master: '/nonexistent/vrrpd-notify.sh' does not exist or is not executable on this host"),
    ("unicast-families", inst(BASE + "\nunicast_src_ip 10.0.0.5\nunicast_peer {\n 2001:db8::2\n}"), 8, "error",
     "unicast_src_ip and unicast_peer mix IPv4 and IPv6"),
    ("vip-families", inst("interface lo\nvirtual_router_id 5\nvirtual_ipaddress {\n 10.0.0.1\n 2001:db8::1\n}"),
     5, "error", "virtual_ipaddress mixes IPv4 and IPv6"),
    ("nopreempt-delay", inst(BASE + "\nnopreempt\npreempt_delay 10"), 8, "warning",
     "preempt_delay has no effect with nopreempt"),
    ("strict-preempt-delay", "global_defs {\n vrrp_strict\n}\n" + inst(BASE + "\npreempt_delay 10"), 10, "warning",
     "vrrp_strict does not allow preempt_delay; it is ignored"),
    ("own-peer", inst(BASE + "\nunicast_src_ip 10.0.0.5\nunicast_peer {\n 10.0.0.5\n 10.0.0.6\n}"), 8, "warning",
     "unicast_peer lists this node's own unicast_src_ip 10.0.0.5"),
    ("vs-no-protocol-tcp", "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  TCP_CHECK {\n  }\n }\n}\n",
     1, "warning", "no 'protocol'; keepalived would use UDP, vrrpd uses TCP as its TCP checkers show"),
    ("vs-no-protocol-udp", "virtual_server 10.0.0.1 53 {\n real_server 10.0.0.2 53 {\n }\n}\n", 1, "warning",
     "no 'protocol'; UDP is used, as keepalived does"),
    ("vs-ops-tcp", "virtual_server 10.0.0.1 80 {\n protocol TCP\n ops\n real_server 10.0.0.2 80 {\n }\n}\n", 3,
     "warning", "ops (one-packet scheduling) needs protocol UDP; ignored"),
    ("vip-dev-missing", inst("interface lo\nvirtual_router_id 5\nvirtual_ipaddress {\n 10.0.0.1 dev vrrpdnone1\n}"),
     5, "warning", "interface 'vrrpdnone1' of 10.0.0.1/32 does not exist on this host"),
    ("track-if-missing", inst(BASE + "\ntrack_interface {\n vrrpdnone2 weight 10\n}"), 8, "warning",
     "track_interface 'vrrpdnone2' does not exist on this host"),
    ("v3-advert-rounding", inst(BASE + "\nversion 3\nadvert_int 0.125"), 8, "warning", "rounded to 0.12"),
]


# -- keepalived's language, class by class (issue 12); each fact was measured with keepalived 2.2.7 -t ------

CONDITIONAL_PARAMS = """@high $PRI=110
@low $PRI=90
vrrp_instance VI_0 {
    interface eth0
    virtual_router_id 1
    priority $PRI
@high    state MASTER
    virtual_ipaddress {
        10.1.0.254/32
    }
}
"""


def test_parameter_definitions_behind_conditionals_follow_the_config_id():
    high, dh = parse_ok(CONDITIONAL_PARAMS, config_id="high")
    low, dl = parse_ok(CONDITIONAL_PARAMS, config_id="low")
    assert (high.vrrp_instances[0].priority, high.vrrp_instances[0].state) == (110, vrrpd.State.MASTER)
    assert (low.vrrp_instances[0].priority, low.vrrp_instances[0].state) == (90, vrrpd.State.BACKUP)
    assert high.config_id == "high" and low.config_id == "low"
    assert not dh and not dl, messages(dh) + messages(dl)


def test_config_id_option_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "k.conf"
    path.write_text(CONDITIONAL_PARAMS)
    assert vrrpd.main(["-t", "-i", "high", "-f", str(path)]) == 0
    assert "priority 110, start MASTER" in capsys.readouterr().out
    assert vrrpd.main(["--config-test", "--config-id", "low", "-f", str(path)]) == 0
    assert "priority 90, start BACKUP" in capsys.readouterr().out
    args = vrrpd.build_arg_parser().parse_args(["-i", "node7"])
    assert args.config_id == "node7"


def test_multi_line_definition_repeated_by_seq_and_lst():
    text = ("$VS= \\\nvirtual_server 10.0.0.${N} 80 { \\\n  protocol TCP \\\n  real_server 10.1.0.${N} 80 { \\\n"
            "    weight ${W} \\\n  } \\\n}\n$W=3\n~SEQ(N, 1, 3) $VS\n"
            "$VI= \\\nvrrp_instance VI_${A} { \\\n  interface eth0 \\\n  virtual_router_id ${B} \\\n"
            "  virtual_ipaddress { \\\n    10.2.0.${B} \\\n  } \\\n}\n~LST({A,B}, {1, 21}, {2, 22}) $VI\n"
            "~SEQx(X, 9, 11) $UNDEFINED_${X}\n")
    config, diags = vrrpd.parse_config_text(text, "seq.conf")
    assert [(str(v.address), v.port, [r.weight for r in v.real_servers]) for v in config.virtual_servers] == [
        ("10.0.0.1", 80, [3]), ("10.0.0.2", 80, [3]), ("10.0.0.3", 80, [3])]
    assert [(i.name, i.virtual_router_id, str(i.virtual_ipaddress[0].address)) for i in config.vrrp_instances] == [
        ("VI_1", 21, "10.2.0.21/32"), ("VI_2", 22, "10.2.0.22/32")]
    # keepalived 2.2.7 says "(Line 19) Unknown keyword '$UNDEFINED_a'" for each value: so do we, at the ~SEQ line
    assert [(d.line, d.severity.value) for d in diags] == [(19, "warning")] * 3, messages(diags)
    assert ["$UNDEFINED_9" in diags[0].message, "$UNDEFINED_a" in diags[1].message] == [True, True]


@pytest.mark.parametrize("spec, values", [
    ("~SEQ(i, 3)", ["1", "2", "3"]), ("~SEQ(i, 0)", ["1", "0"]), ("~SEQ(i, 5, 3)", ["5", "4", "3"]),
    ("~SEQ(i, 1, 2, 6)", ["1", "3", "5"]), ("~SEQ(i, 0x10, 0x11)", ["16", "17"]), ("~SEQx(i, 254, 256)",
                                                                                  ["fe", "ff", "100"]),
    ("~LST(i, a, b)", ["a", "b"]), ("$LO=7\n~SEQ(i, $LO, 8)", ["7", "8"]),
])
def test_seq_and_lst_values_as_keepalived_counts_them(spec, values):
    text = spec + " vrrp_script s_${i} { script /bin/true }\n"
    config, diags = vrrpd.parse_config_text(text, "s.conf")
    assert list(config.vrrp_scripts) == [f"s_{v}" for v in values], messages(diags)
    assert not messages(diags, vrrpd.Severity.ERROR)


@pytest.mark.parametrize("spec, message", [
    ("~SEQ(i, 1, 0, 3)", "invalid ~SEQ values"), ("~SEQ(i, 3, 1, 1)", "invalid ~SEQ values"),
    ("~SEQx(i, -1, 3)", "~SEQx is only valid for positive numbers"), ("~SEQ(, 1)", "invalid ~SEQ definition"),
    ("~SEQ(i, 1, 1, 1000000000)", "repeats more than"), ("~SEQ i", "invalid ~SEQ specification"),
])
def test_bad_seq_is_an_error_at_its_line(spec, message):
    config, diags = vrrpd.parse_config_text("global_defs {\n" + spec + " router_id x\n}\n", "s.conf")
    assert [(d.line, d.severity.value) for d in diags] == [(2, "error")] and message in diags[0].message, \
        messages(diags)


def test_builtin_parameters_random_instance_pwd_hash(tmp_path):
    path = tmp_path / "b.conf"
    path.write_text("global_defs {\n router_id ${_INSTANCE}-${_RANDOM 3 5}\n notification_email_from "
                    "${_PWD}/x${_HASH}y\n smtp_helo_name ${_RANDOM}\n}\n")
    for _ in range(20):
        config, diags = vrrpd.parse_config(str(path), config_id="lb9")
        name, _, number = config.global_defs.router_id.partition("-")
        assert name == "lb9" and 3 <= int(number) <= 5
        assert 0 <= int(config.global_defs.smtp_helo_name) <= 32767
        assert config.global_defs.notification_email_from == f"{tmp_path}/x#y"
        assert not diags, messages(diags)


def test_parameter_use_ends_at_a_blank_comma_or_parenthesis_as_in_keepalived():
    config, diags = parse_ok("$N=5\nglobal_defs {\n router_id $N.x\n smtp_helo_name ${N}.x\n}\n")
    assert config.global_defs.router_id == "$N.x" and config.global_defs.smtp_helo_name == "5.x"


def test_ipv6_ranges_in_virtual_server_group_as_in_the_keepalived_sample():
    text = ("virtual_server_group G6 {\n  ae00::2-9 80\n  ae00::10-1f 443\n  10.0.0.1-5 80\n}\n"
            "virtual_server group G6 {\n  protocol TCP\n  real_server ae01::1 80 {\n  }\n}\n")
    config, diags = parse_ok(text)
    e = config.virtual_server_groups["G6"].entries
    assert [(str(x.first), str(x.last), x.port) for x in e] == [
        ("ae00::2", "ae00::9", 80), ("ae00::10", "ae00::1f", 443), ("10.0.0.1", "10.0.0.5", 80)]


KEEPALIVED_RUNS_WITH_A_WARNING = [
    # (id, instance body or whole text, line, what the warning says, check of the model)
    ("persistence_timeout-0", "virtual_server 10.0.0.9 80 {\n protocol TCP\n persistence_timeout 0\n"
     " real_server 10.1.1.1 80 {\n }\n}\n", 3, "keepalived ignores it (no persistence)",
     lambda c: c.virtual_servers[0].persistence_timeout is None),
    ("unicast_ttl-0", inst(BASE + "\nunicast_ttl 0"), 7, "unicast_ttl 0: keepalived sends with the kernel's",
     lambda c: c.vrrp_instances[0].unicast_ttl == 255),
    ("mcast_src_ip-prefix", inst(BASE + "\nmcast_src_ip 10.0.2.254/24"), 7, "keepalived ignores the prefix",
     lambda c: str(c.vrrp_instances[0].mcast_src_ip) == "10.0.2.254"),
    ("priority-256", inst(BASE + "\npriority 256"), 7, "keepalived uses the default 100",
     lambda c: c.vrrp_instances[0].priority == 100),
    ("state-EQUAL", inst(BASE + "\nstate EQUAL"), 7, "unknown state 'EQUAL': keepalived starts the instance as "
     "BACKUP", lambda c: c.vrrp_instances[0].state is vrrpd.State.BACKUP),
    ("state-SLAVE", inst(BASE + "\nstate SLAVE"), 7, "unknown state 'SLAVE'",
     lambda c: c.vrrp_instances[0].state is vrrpd.State.BACKUP),
    ("state-lower-case", inst(BASE + "\nstate master\npriority 150"), 7, "unknown state 'master'",
     lambda c: c.vrrp_instances[0].state is vrrpd.State.BACKUP),
    ("vrrp_script-twice", "vrrp_script chk {\n script /bin/true\n}\nvrrp_script chk {\n script /bin/false\n}\n"
     + inst(BASE + "\ntrack_script {\n chk\n}"), 4, "keepalived tracks the first definition",
     lambda c: c.vrrp_scripts["chk"].script.argv == ["/bin/true"]),
    ("stray-brace", "}\n" + inst(BASE), 1, "extra '}' at the top level: keepalived ignores it",
     lambda c: c.vrrp_instances[0].virtual_router_id == 50),
    ("ah-master", inst(BASE + "\nstate MASTER\npriority 100\nauthentication {\n auth_type AH\n auth_pass x\n}"), 7,
     "state MASTER with auth_type AH: keepalived starts it as BACKUP",
     lambda c: c.vrrp_instances[0].state is vrrpd.State.BACKUP and c.vrrp_instances[0].auth_type is
     vrrpd.AuthType.AH),
    ("fwmark-protocol", "virtual_server fwmark 5 {\n protocol TCP\n real_server 10.1.1.1 80 {\n }\n}\n", 2,
     "protocol given for a fwmark virtual server: keepalived ignores it", lambda c: c.virtual_servers[0].fwmark == 5),
    ("master-no-priority", inst(BASE + "\nstate MASTER"), 1, "keepalived makes it the address owner (priority 255)",
     lambda c: c.vrrp_instances[0].priority == 255),
    ("pass-without-password", inst(BASE + "\nauthentication {\n auth_type PASS\n}"), 7,
     "auth_type PASS without auth_pass: keepalived ignores the authentication",
     lambda c: c.vrrp_instances[0].auth_type is vrrpd.AuthType.NONE),
]


@pytest.mark.parametrize("case", KEEPALIVED_RUNS_WITH_A_WARNING, ids=[c[0] for c in KEEPALIVED_RUNS_WITH_A_WARNING])
def test_values_keepalived_runs_are_warnings_that_say_what_both_do(case):
    _, text, line, fragment, check = case
    config, diags = vrrpd.parse_config_text(text, "w.conf")
    assert not messages(diags, vrrpd.Severity.ERROR)
    assert any(d.line == line and d.severity is vrrpd.Severity.WARNING and fragment in d.message for d in diags), \
        messages(diags)
    assert "keepalived" in next(d.message for d in diags if fragment in d.message)
    assert check(config)


def _two(body_a: str, body_b: str) -> str:
    return inst(body_a, "VI_A") + inst(body_b, "VI_B")


VRID_CASES = [
    # (id, text, conflict?) - keepalived's check_vrid_conflicts()
    ("same-if-multicast", _two("interface eth0\nvirtual_router_id 5", "interface eth0\nvirtual_router_id 5"), True),
    ("other-if", _two("interface eth0\nvirtual_router_id 5", "interface eth1\nvirtual_router_id 5"), False),
    ("other-family", _two("interface eth0\nvirtual_router_id 5\nvirtual_ipaddress {\n 10.0.0.1\n}",
                          "interface eth0\nvirtual_router_id 5\nvirtual_ipaddress {\n fd00::1\n}"), False),
    ("unicast-and-multicast", _two("interface eth0\nvirtual_router_id 5",
                                   "interface eth0\nvirtual_router_id 5\nunicast_peer {\n 10.0.0.2\n}"), False),
    ("unicast-other-peers", _two("interface eth0\nvirtual_router_id 5\nunicast_peer {\n 10.0.0.2\n}",
                                 "interface eth0\nvirtual_router_id 5\nunicast_peer {\n 10.0.0.3\n}"), False),
    ("unicast-shared-peer", _two("interface eth0\nvirtual_router_id 5\nunicast_peer {\n 10.0.0.2\n}",
                                 "interface eth0\nvirtual_router_id 5\nunicast_peer {\n 10.0.0.2\n}"), True),
    ("unicast-other-src", _two(
        "interface eth0\nvirtual_router_id 5\nunicast_src_ip 10.0.0.8\nunicast_peer {\n 10.0.0.2\n}",
        "interface eth0\nvirtual_router_id 5\nunicast_src_ip 10.0.0.9\nunicast_peer {\n 10.0.0.2\n}"), False),
    ("unicast-same-src", _two(
        "interface eth0\nvirtual_router_id 5\nunicast_src_ip 10.0.0.8\nunicast_peer {\n 10.0.0.2\n}",
        "interface eth0\nvirtual_router_id 5\nunicast_src_ip 10.0.0.8\nunicast_peer {\n 10.0.0.2\n}"), True),
    ("other-vrid", _two("interface eth0\nvirtual_router_id 5", "interface eth0\nvirtual_router_id 6"), False),
]


@pytest.mark.parametrize("case", VRID_CASES, ids=[c[0] for c in VRID_CASES])
def test_vrid_uniqueness_follows_keepalived(case):
    _, text, conflict = case
    config, diags = vrrpd.parse_config_text(text, "v.conf")
    clashes = [d for d in diags if "virtual_router_id 5" in d.message and d.severity is vrrpd.Severity.ERROR]
    assert bool(clashes) == conflict, messages(diags)
    if conflict:
        second = [n for n, ln in enumerate(text.split("\n"), 1) if "virtual_router_id 5" in ln][1]
        assert clashes[0].line == second and "vrrp_instance VI_A (line 1)" in clashes[0].message


def test_missing_brace_inside_a_block_closes_it_and_keeps_reading():
    text = inst("interface lo\nvirtual_router_id 5\nauthentication {\n auth_type PASS\n auth_pass abc\npriority 90\n"
                "virtual_ipaddress {\n 10.0.0.1\n}")
    config, diags = vrrpd.parse_config_text(text, "b.conf")
    assert messages(diags) == ["b.conf:4: error: 'authentication' block opened here is not closed before 'priority' "
                               "at line 7 (add the missing '}')"]
    i = config.vrrp_instances[0]
    assert i.priority == 90 and i.auth_pass == b"abc" and len(i.virtual_ipaddress) == 1


def test_missing_brace_of_a_real_server_before_the_next_one():
    text = ("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  weight 2\n"
            " real_server 10.0.0.3 80 {\n  weight 3\n }\n protocol TCP\n}\n")
    config, diags = vrrpd.parse_config_text(text, "r.conf")
    assert messages(diags) == ["r.conf:2: error: 'real_server' block opened here is not closed before 'real_server' "
                               "at line 4 (add the missing '}')"]
    assert [(str(r.address), r.weight) for r in config.virtual_servers[0].real_servers] == [
        ("10.0.0.2", 2), ("10.0.0.3", 3)]


def test_misplaced_keyword_with_balanced_braces_is_only_a_warning():
    text = ("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  TCP_CHECK {\n   weight 5\n"
            "   connect_timeout 4\n  }\n }\n protocol TCP\n}\n")
    config, diags = vrrpd.parse_config_text(text, "m.conf")
    assert messages(diags) == ["m.conf:4: warning: 'weight' does not belong in TCP_CHECK (ignored) (it belongs in "
                               "FILE_CHECK / bfd_instance / real_server / track_file / virtual_server / vrrp_script / "
                               "vrrp_track_process)"]
    rs = config.virtual_servers[0].real_servers[0]
    assert rs.weight == 1 and rs.checkers[0].connect_timeout == 4.0


def test_block_nested_in_another_is_an_error_but_still_read():
    text = "global_defs {\n router_id x\n" + inst(BASE) + "}\n"
    config, diags = vrrpd.parse_config_text(text, "n.conf")
    assert messages(diags) == ["n.conf:3: error: 'vrrp_instance' must be at the top level, not inside global_defs "
                               "(move the block out)"]
    assert config.vrrp_instances[0].virtual_router_id == 50 and config.global_defs.router_id == "x"


@pytest.mark.parametrize("case", VALIDATION_CASES, ids=[c[0] for c in VALIDATION_CASES])
def test_validation_rule_reports_line_and_message(case):
    _, text, line, severity, fragment = case
    config, diags = vrrpd.parse_config_text(text, "v.conf")
    wanted = f"v.conf:{line}: {severity}: "
    found = [m for m in messages(diags) if m.startswith(wanted) and fragment in m]
    assert found, f"expected '{wanted}...{fragment}' in {messages(diags)}"


def test_every_problem_is_reported_in_one_run_sorted_by_line():
    text = (inst("interface lo\nvirtual_router_id 300\npriority 0\nnopreemt", "A")
            + inst("virtual_router_id 5\ntrack_script {\n nope\n}", "B"))
    config, diags = vrrpd.parse_config_text(text, "m.conf")
    lines = [d.line for d in diags]
    assert lines == sorted(lines)
    assert {3, 4, 5, 7, 10}.issubset(set(lines)), messages(diags)
    with pytest.raises(vrrpd.ConfigError) as exc:
        raise vrrpd.ConfigError(diags)
    assert len(exc.value.diagnostics) == len(diags)


def test_diagnostics_from_includes_sort_by_file_then_line(tmp_path):
    (tmp_path / "main.conf").write_text("include inc.conf\nglobal_defs {\n bogus_a\n}\n")
    (tmp_path / "inc.conf").write_text("\n\nglobal_defs {\n bogus_b\n}\n")
    config, diags = vrrpd.parse_config(str(tmp_path / "main.conf"))
    assert [(os.path.basename(d.file), d.line) for d in diags] == [("main.conf", 3), ("inc.conf", 4)]


def test_missing_interface_is_a_warning_under_check_and_at_start_up(tmp_path):
    text = inst("interface vrrpdnone0\nvirtual_router_id 5\nvirtual_ipaddress {\n 10.0.0.1\n}")
    config, diags = vrrpd.parse_config_text(text, "i.conf")
    assert messages(diags) == [
        "i.conf:2: warning: vrrp_instance VI_1: interface 'vrrpdnone0' does not exist on this host"]
    path = tmp_path / "i.conf"
    path.write_text(text)
    # the daemon starts: the instance waits in FAULT for its interface (a VLAN or bond created later)
    config = vrrpd.load_config(str(path))
    assert config.vrrp_instances[0].interface == "vrrpdnone0"
    out = io.StringIO()
    assert vrrpd.check_command(str(path), out) == 0
    assert "warning: vrrp_instance VI_1: interface 'vrrpdnone0' does not exist" in out.getvalue()


def test_load_config_logs_warnings_and_returns_the_model(tmp_path, caplog):
    path = tmp_path / "w.conf"
    path.write_text(inst(BASE + "\nnopreemt"))
    with caplog.at_level("WARNING", logger="vrrpd"):
        config = vrrpd.load_config(str(path))
    assert config.vrrp_instances[0].virtual_router_id == 50
    assert any("did you mean 'nopreempt'" in r.getMessage() for r in caplog.records)


# -- --check -------------------------------------------------------------------------------------


def test_check_command_prints_summary_with_derived_timers(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text(inst(BASE + "\npriority 150\nstate MASTER") +
                    inst("interface lo\nvirtual_router_id 60\nversion 3\nadvert_int 0.5\npriority 150\n"
                         "virtual_ipaddress {\n 10.0.1.1/24\n}", "VI_3"))
    out = io.StringIO()
    assert vrrpd.check_command(str(path), out) == 0
    text = out.getvalue()
    assert "vrrp_instance VI_1: vrid 50 on lo, VRRPv2, priority 150, start MASTER" in text
    assert "advert interval 1 s, skew time 0.414 s, master down interval 3.414 s" in text
    # v3: skew = (256 - 150) * 0.5 / 256 = 0.207 s; master down = 3 * 0.5 + skew (RFC 5798 6.1)
    assert "advert interval 0.5 s, skew time 0.207 s, master down interval 1.707 s" in text
    assert "VIPs: 10.0.1.1/24" in text
    assert text.rstrip().endswith("0 error(s), 0 warning(s)")


def test_check_summary_lists_virtual_and_real_servers(tmp_path):
    path = tmp_path / "lvs.conf"
    path.write_text("virtual_server 10.0.0.1 80 {\n delay_loop 6\n lb_algo rr\n lb_kind DR\n protocol TCP\n"
                    " real_server 10.0.0.2 80 {\n  weight 3\n  TCP_CHECK {\n  }\n }\n"
                    " real_server 10.0.0.3 80 {\n }\n}\n")
    out = io.StringIO()
    assert vrrpd.check_command(str(path), out) == 0
    text = out.getvalue()
    assert "virtual_server 10.0.0.1:80 TCP rr/DR: 2 real server(s), checks every 6 s" in text
    assert "    real_server 10.0.0.2:80 weight 3: TCP_CHECK" in text
    assert "    real_server 10.0.0.3:80 weight 1: no checker (always up)" in text


def test_check_lists_keywords_accepted_but_not_acted_upon(tmp_path):
    path = tmp_path / "a.conf"
    path.write_text("global_defs {\n vrrp_process_name vx\n}\n" + inst(BASE + "\nuse_ipvlan\nvirtual_routes {\n"
                    " src 10.0.0.1 to 10.1.0.0/16 dev lo\n}"))
    out = io.StringIO()
    assert vrrpd.check_command(str(path), out) == 0
    text = out.getvalue()
    assert "accepted but not acted upon by vrrpd:" in text
    for where in (f"{path}:2: vrrp_process_name",):
        assert where in text, text
    assert "virtual_routes" not in text  # acted upon since routes go through rtnetlink


def test_check_of_an_empty_file_says_nothing_would_run(tmp_path):
    path = tmp_path / "empty.conf"
    path.write_text("! nothing here\n")
    out = io.StringIO()
    assert vrrpd.check_command(str(path), out) == 0
    assert "nothing would run: no vrrp_instance and no virtual_server" in out.getvalue()


def test_check_command_exit_status_and_cli_spellings(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text(inst("interface lo"))
    good = tmp_path / "good.conf"
    good.write_text(inst(BASE))
    for flag in ("--check", "-t", "--config-test"):
        res = sh([PYTHON, VRRPD, flag, "-f", str(bad)], check=False)
        assert res.returncode == 1 and f"{bad}:1: error: vrrp_instance VI_1: no 'virtual_router_id'" in res.stdout
        res = sh([PYTHON, VRRPD, flag, "-f", str(good)], check=False)
        assert res.returncode == 0, res.stdout + res.stderr


def test_default_config_path_prefers_vrrpd_then_keepalived(monkeypatch):
    existing = set()
    monkeypatch.setattr(vrrpd.os.path, "exists", lambda p: p in existing)
    assert vrrpd.default_config_path() == "/etc/vrrpd/vrrpd.conf"
    existing.add("/etc/keepalived/keepalived.conf")
    assert vrrpd.default_config_path() == "/etc/keepalived/keepalived.conf"
    existing.add("/etc/vrrpd/vrrpd.conf")
    assert vrrpd.default_config_path() == "/etc/vrrpd/vrrpd.conf"


def test_example_config_is_a_valid_two_node_setup():
    example = (HERE / "vrrpd.conf.example").read_text()
    node1, diags = vrrpd.parse_config_text(example, "vrrpd.conf.example")
    assert not [d for d in diags if "does not exist" not in d.message], messages(diags)
    # node 2 is documented in the comments: apply exactly the changes they list
    node2_text = "\n".join(
        line.replace("router_id lb1", "router_id lb2").replace("priority 150", "priority 100")
        .replace("unicast_src_ip 192.168.100.11", "unicast_src_ip 192.168.100.12")
        .replace("        192.168.100.12", "        192.168.100.11")
        if "node 2" in line else line for line in example.splitlines())
    node2, diags2 = vrrpd.parse_config_text(node2_text, "node2.conf")
    assert not [d for d in diags2 if "does not exist" not in d.message], messages(diags2)
    a, b = node1.vrrp_instances[0], node2.vrrp_instances[0]
    assert (a.virtual_router_id, a.advert_int, a.auth_pass, a.virtual_ipaddress) == (
        b.virtual_router_id, b.advert_int, b.auth_pass, b.virtual_ipaddress)
    assert (a.priority, b.priority) == (150, 100) and node2.global_defs.router_id == "lb2"
    assert a.unicast_src_ip == b.unicast_peer[0].address and b.unicast_src_ip == a.unicast_peer[0].address
    # the tracked script's weight really hands the VIP over: 150 - 60 < 100
    script = node1.vrrp_scripts[a.track_script[0].name]
    assert a.priority + script.weight < b.priority and script.script.argv[0].startswith("/")
    assert sum(1 for line in example.splitlines() if line.lstrip().startswith(("!", "#")) or " # " in line) >= 20


def test_example_config_is_accepted_by_keepalived_too(lab):
    require(shutil.which("keepalived") is not None, "needs keepalived for the compatibility check")
    ns = lab.host("a", "192.168.100.11/24")
    res = lab.run(ns, ["keepalived", "-t", "-f", str(HERE / "vrrpd.conf.example")], check=False)
    assert res.returncode == 0, res.stdout + res.stderr


# -- robustness: random input never raises anything but ConfigError, never hangs --------------------

def _fuzz_budget(default: float) -> float:
    return float(os.environ.get("VRRPD_FUZZ_SECONDS", default))


def _fuzz_vocabulary() -> List[str]:
    words = sorted({name for spec in vrrpd.KEYWORDS.values() for name in spec})
    words += ["{", "}", "{", "}", "\n", "\n", "\n", "0", "1", "255", "256", "-5", "0.05", "60s", "1e9", "10.0.0.1",
              "10.0.0.1/24", "fe80::1", "2001:db8::/64", "dev", "lo", "weight", "reverse", "MASTER", "BACKUP",
              "PASS", "AH", '"quoted string"', '"unterminated', "'single'", "# comment", "! bang", "\\", "\\#",
              "$X=1", "$X", "${X}", "${Y}", "$Y=${X}$Y", "include", "include *.conf", "include nothing", "@x", "@^x",
              "VI_1", "chk", "G", "brd", "label", "x" * 300, "\u00e9\u4e2d", "\t", "yes", "off", "-", "/"]
    return words


def _run_parser_on(text: str, tmp_path) -> None:
    """Parse text as a file in tmp_path; only Diagnostics (or ConfigError from load_config) may come out."""
    path = tmp_path / "fuzz.conf"
    start = time.monotonic()
    config, diags = vrrpd.parse_config_text(text, str(path))
    assert isinstance(config, vrrpd.Config)
    assert all(isinstance(d, vrrpd.Diagnostic) and d.line >= 0 for d in diags)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    vrrpd.log.disabled = True  # warnings are logged; thousands of them only slow the run
    try:
        vrrpd.load_config(str(path), check_interfaces=False)
    except vrrpd.ConfigError:
        pass
    finally:
        vrrpd.log.disabled = False
    vrrpd.config_summary(config)
    assert time.monotonic() - start < 5.0, "parser too slow on one input: " + repr(text[:200])


def test_fuzz_random_token_streams(tmp_path):
    import random

    vocab = _fuzz_vocabulary()
    deadline = time.monotonic() + _fuzz_budget(1.5)
    rng = random.Random(20261122)
    (tmp_path / "a.conf").write_text("include fuzz.conf\nglobal_defs {\n")  # includes back: loop guard
    runs = 0
    while time.monotonic() < deadline or runs < 50:
        n = rng.randint(1, 120)
        text = " ".join(rng.choice(vocab) for _ in range(n))
        _run_parser_on(text, tmp_path)
        runs += 1
    assert runs >= 50


def test_fuzz_mutated_seed_configs_and_random_bytes(tmp_path):
    import random

    rng = random.Random(5798)
    seeds = [seed_conf("seed000-master"), seed_conf("seed003-master"), seed_conf("seed001-one-line-master"),
             (HERE / "vrrpd.conf.example").read_text()]
    deadline = time.monotonic() + _fuzz_budget(1.5)
    runs = 0
    while time.monotonic() < deadline or runs < 50:
        base = bytearray(rng.choice(seeds).encode())
        for _ in range(rng.randint(1, 12)):
            op = rng.random()
            pos = rng.randrange(len(base) + 1)
            if op < 0.4 and base:
                del base[pos:pos + rng.randint(1, 20)]
            elif op < 0.8:
                base[pos:pos] = bytes(rng.choice(b"{}\"\\#!$ \n\t0123456789.:/abc\xff\x00") for _ in range(
                    rng.randint(1, 6)))
            else:
                base[pos:pos] = rng.randbytes(rng.randint(1, 30)) if hasattr(rng, "randbytes") else b"\x80\xfe"
        _run_parser_on(base.decode("utf-8", errors="replace"), tmp_path)
        runs += 1
    assert runs >= 50


# -- size: the generated 10,000-line configuration of the speed goal (measured, not timed here) ------

def generate_large_config(instances: int = 500, servers: int = 200) -> str:
    """A keepalived configuration of about 10,000 lines: `instances` VRRP instances, `servers` virtual servers.

    Used to measure `--check` speed:  python3 -c 'import test_vrrpd as t; print(t.generate_large_config())' > big.conf
    then  time python3 vrrpd.py --check -f big.conf"""
    out = ["global_defs {", "    router_id bench", "    enable_script_security", "}",
           "vrrp_script chk {", '    script "/bin/true"', "    interval 2", "    weight -10", "}"]
    for i in range(instances):
        out += [f"vrrp_instance VI_{i} {{", "    state BACKUP", f"    interface eth{i // 255}",
                f"    virtual_router_id {i % 255 + 1}", f"    priority {100 + i % 50}", "    advert_int 1",
                "    authentication {", "        auth_type PASS", "        auth_pass secret", "    }",
                "    virtual_ipaddress {", f"        10.{i // 250}.{i % 250}.1/24 dev eth{i // 255}", "    }",
                "    track_script {", "        chk", "    }", "}"]
    for v in range(servers):
        out += [f"virtual_server 192.168.{v // 250}.{v % 250 + 1} 80 {{", "    delay_loop 6", "    lb_algo rr",
                "    lb_kind NAT", "    protocol TCP", f"    real_server 172.16.{v // 250}.{v % 250 + 1} 80 {{",
                "        TCP_CHECK {", "            connect_timeout 3", "        }", "    }", "}"]
    return "\n".join(out) + "\n"


def test_large_generated_config_parses_completely():
    text = generate_large_config()
    assert 10000 <= text.count("\n") <= 11000
    config, diags = vrrpd.parse_config_text(text, "big.conf")
    assert not [d for d in diags if d.severity is vrrpd.Severity.ERROR], messages(diags)[:5]
    assert len(config.vrrp_instances) == 500 and len(config.virtual_servers) == 200
    assert config.vrrp_instances[499].priority == 149 and config.vrrp_instances[499].interface == "eth1"
    assert all(vs.real_servers[0].checkers[0].connect_timeout == 3.0 for vs in config.virtual_servers)


# ============================================================================================
# C. VRRP wire format and state machine (unit)
# ============================================================================================



IP4 = ipaddress.IPv4Address


def _adv(priority=100, vrid=51, version=3, advert_int=1.0, addresses=("10.0.0.100",), **kw):
    return vrrpd.VrrpAdvert(version, vrid, priority, [IP4(a) for a in addresses], advert_int, **kw)


def test_v2_pass_advert_matches_keepalived_golden_bytes():
    adv = _adv(100, 0x33, 2, 1, ("10.99.0.100",), auth_type=1, auth_data=b"secret12")
    wire = vrrpd.encode_advert(adv)
    assert wire.hex() == "21336401010101850a630064" + b"secret12".hex()
    back = vrrpd.decode_advert(wire)
    assert (back.vrid, back.priority, back.addresses, back.auth_data, back.advert_int) == (
        0x33, 100, [IP4("10.99.0.100")], b"secret12", 1.0)


def test_v3_checksum_uses_ipv4_pseudo_header_like_keepalived():
    adv = _adv(100, 0x34, 3, 0.5, ("10.99.0.101", "10.99.0.102"))
    src, dst = IP4("10.99.0.2"), IP4("10.99.0.1")
    wire = vrrpd.encode_advert(adv, src, dst)
    assert wire.hex() == "3134640200323fbd0a6300650a630066"
    assert vrrpd.decode_advert(wire, src, dst).advert_int == 0.5
    with pytest.raises(vrrpd.PacketError) as err:
        vrrpd.decode_advert(wire, src, IP4("224.0.0.18"))
    assert err.value.reason == "bad_checksum"
    assert vrrpd.decode_advert(vrrpd.encode_advert(adv, src, dst, checksum_as_v2=True), src, dst,
                               checksum_as_v2=True).priority == 100


def test_v3_advert_interval_in_centiseconds_allows_50ms():
    wire = vrrpd.encode_advert(_adv(advert_int=0.05), IP4("10.0.0.1"), IP4("224.0.0.18"))
    assert wire[4:6] == b"\x00\x05"
    assert vrrpd.decode_advert(wire, IP4("10.0.0.1"), IP4("224.0.0.18")).advert_int == 0.05


def test_pass_auth_is_first_8_bytes_zero_padded():
    assert vrrpd.encode_advert(_adv(version=2, auth_type=1, auth_data=b"abc"))[-8:] == b"abc\0\0\0\0\0"
    assert vrrpd.encode_advert(_adv(version=2, auth_type=1, auth_data=b"yinzhengjie"))[-8:] == b"yinzheng"


@pytest.mark.parametrize("mutate,reason", [
    (lambda b: b[:7], "truncated"),
    (lambda b: b[:-1], "bad_length"),
    (lambda b: bytes([0x41]) + b[1:], "bad_version"),
    (lambda b: bytes([0x22]) + b[1:], "bad_type"),
    (lambda b: b[:3] + b"\x02" + b[4:], "bad_length"),
    (lambda b: b[:8] + b"\x0b" + b[9:], "bad_checksum"),
])
def test_decoder_rejects_malformed_adverts_with_reason(mutate, reason):
    wire = vrrpd.encode_advert(_adv(version=2, auth_type=1, auth_data=b"pw"))
    with pytest.raises(vrrpd.PacketError) as err:
        vrrpd.decode_advert(mutate(wire))
    assert err.value.reason == reason


def test_ipv4_header_round_trip_and_ttl():
    payload = vrrpd.encode_advert(_adv(version=2))
    pkt = vrrpd.encode_ipv4(IP4("10.0.0.1"), IP4("224.0.0.18"), payload, ttl=64)
    assert vrrpd.inet_checksum(pkt[:20]) == 0
    ip = vrrpd.decode_ipv4(pkt)
    assert (ip.ttl, ip.protocol, ip.src, ip.dst, ip.payload) == (64, 112, IP4("10.0.0.1"), IP4("224.0.0.18"), payload)


def test_garp_frame_is_broadcast_arp_request_for_the_vip():
    mac = bytes.fromhex("020000000001")
    frame = vrrpd.garp_frame(mac, IP4("10.0.0.100"))
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
    assert frame[20:22] == b"\x00\x01"  # request
    assert frame[28:32] == frame[38:42] == IP4("10.0.0.100").packed


def test_netlink_message_and_attribute_packing_round_trip():
    attrs = vrrpd.nla_pack(1, b"\x01\x02\x03") + vrrpd.nla_pack_str(3, "eth1:0")
    msg = vrrpd.nlmsg_pack(20, vrrpd.NLM_F_REQUEST, 7, b"\0" * 8 + attrs, pid=9)
    assert len(msg) % 4 == 0
    ((mtype, flags, seq, pid, payload),) = vrrpd.nlmsg_parse(msg)
    assert (mtype, flags, seq, pid) == (20, vrrpd.NLM_F_REQUEST, 7, 9)
    parsed = vrrpd.nla_parse(payload[8:])
    assert parsed[1] == b"\x01\x02\x03" and vrrpd.nla_str(parsed[3]) == "eth1:0"
    with pytest.raises(vrrpd.PacketError):
        vrrpd.nla_parse(b"\xff\x00\x01\x00")


def test_addr_request_carries_label_and_scope():
    vip = ipaddress.IPv4Interface("172.30.1.200/32")
    payload = vrrpd.addr_request_payload(5, vip, scope="link", label="eth1:0")
    info = vrrpd.parse_addr(payload)
    assert info.index == 5 and info.address == vip and info.scope == 253 and info.label == "eth1:0"


def test_the_kernel_addresses_of_an_interface_share_one_label_string():
    """The Daemon keeps every address of the host, a thousand VIPs among them, as AddrInfo: one tuple each, and
    one label string for all the addresses that carry the interface's name."""
    infos = [vrrpd.parse_addr(vrrpd.addr_request_payload(5, ipaddress.IPv4Interface(f"10.1.0.{i}/32"),
                                                          label="eth" + "1")) for i in range(1, 4)]
    assert [str(a.address) for a in infos] == ["10.1.0.1/32", "10.1.0.2/32", "10.1.0.3/32"]
    assert all(a.label == "eth1" for a in infos) and infos[0].label is infos[1].label is infos[2].label
    unlabelled = vrrpd.parse_addr(vrrpd.addr_request_payload(5, ipaddress.IPv4Interface("10.1.0.9/24")))
    assert unlabelled == vrrpd.AddrInfo(5, ipaddress.IPv4Interface("10.1.0.9/24"))  # scope 0, no label, no flags
    assert unlabelled.usable and not vrrpd.AddrInfo(5, unlabelled.address, flags=vrrpd.IFA_F_TENTATIVE).usable
    assert not hasattr(unlabelled, "__dict__")


def test_fuzz_decoder_only_raises_packet_error():
    seconds = float(os.environ.get("VRRPD_FUZZ_SECONDS", "2"))
    rng = random.Random(1234)
    seeds = [vrrpd.encode_advert(_adv(version=2, auth_type=1, auth_data=b"pw")),
             vrrpd.encode_advert(_adv(version=3, addresses=("10.0.0.1", "10.0.0.2")),
                                 IP4("1.2.3.4"), IP4("224.0.0.18"))]
    deadline = time.monotonic() + seconds
    count = accepted = 0
    while time.monotonic() < deadline:
        if rng.random() < 0.3:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                op = rng.randint(0, 2)
                if op == 0 and data:
                    data[rng.randrange(len(data))] = rng.getrandbits(8)
                elif op == 1 and data:
                    del data[rng.randrange(len(data)):]
                else:
                    data += bytes([rng.getrandbits(8)])
            data = bytes(data)
        for fn in (lambda d: vrrpd.decode_advert(d, IP4("1.2.3.4"), IP4("224.0.0.18")),
                   lambda d: vrrpd.decode_ipv4(d), lambda d: vrrpd.nlmsg_parse(d)):
            try:
                fn(data)
                accepted += 1
            except vrrpd.PacketError:
                pass
        count += 1
    assert count > 1000


# -- the state machine, driven with a fake clock ------------------------------------------------------


def _machine(priority=100, advert_int=1.0, version=3, **kw):
    kw.setdefault("primary_ip", IP4("10.0.0.1"))
    kw.setdefault("addresses", [IP4("10.0.0.100")])
    return vrrpd.VrrpMachine("VI_1", 51, priority, advert_int, version, **kw)


def _kinds(actions):
    return [type(a).__name__ for a in actions]


def _logs(actions):
    return [a.message for a in actions if isinstance(a, vrrpd.Log)]


def test_starts_in_backup_init_and_arms_master_down_timer():
    m = _machine(priority=100, advert_int=1.0, version=2)
    acts = m.start(0.0)
    assert m.state == vrrpd.State.BACKUP and "(VI_1) Entering BACKUP STATE (init)" in _logs(acts)
    assert vrrpd.Notify(vrrpd.State.BACKUP, 100) in acts
    # RFC 5798 6.1: Master_Down_Interval = 3 * 1 + (256 - 100) / 256
    assert m.next_deadline() == pytest.approx(3 + 156 / 256)


def test_backup_takes_over_after_master_down_interval():
    m = _machine(priority=100, advert_int=1.0, version=3)
    m.start(0.0)
    m.on_advert(0.5, _adv(150), IP4("10.0.0.2"))
    mdi = 3 * 1.0 + 156 / 256
    assert m.next_deadline() == pytest.approx(0.5 + mdi)
    assert m.on_timer(0.5 + mdi - 0.01) == [] and m.state == vrrpd.State.BACKUP
    acts = m.on_timer(0.5 + mdi)
    assert m.state == vrrpd.State.MASTER
    assert vrrpd.SendAdvert(100) in acts and vrrpd.AddVips() in acts
    assert vrrpd.StartGarp() in acts and "(VI_1) Entering MASTER STATE" in _logs(acts)
    # RFC 5798 6.4.2: the advert, then the gratuitous ARPs; the VIPs are up before either goes out
    assert acts.index(vrrpd.AddVips()) < acts.index(vrrpd.SendAdvert(100)) < acts.index(vrrpd.StartGarp())


def test_master_sends_adverts_every_advert_interval():
    m = _machine(priority=255, advert_int=0.1)
    m.start(0.0)
    sent = []
    t = 0.0
    while t < 1.0:
        t = m.next_deadline()
        sent += [t for a in m.on_timer(t) if isinstance(a, vrrpd.SendAdvert)]
    assert sent[:3] == pytest.approx([0.1, 0.2, 0.3])


def test_address_owner_priority_255_becomes_master_at_once():
    m = _machine(priority=255)
    acts = m.start(0.0)
    assert m.state == vrrpd.State.MASTER and vrrpd.SendAdvert(255) in acts


def test_state_master_below_255_waits_one_advert_interval_plus_skew():
    m = _machine(priority=150, advert_int=1.0, start_master=True)
    m.start(0.0)
    assert m.state == vrrpd.State.BACKUP
    assert m.next_deadline() == pytest.approx(1.0 + 106 / 256)


def test_v3_backup_learns_master_advert_interval():
    m = _machine(priority=100, advert_int=1.0, version=3)
    m.start(0.0)
    m.on_advert(0.0, _adv(200, advert_int=0.1), IP4("10.0.0.2"))
    assert m.master_adver_int == 0.1
    assert m.next_deadline() == pytest.approx(0.3 + 156 * 0.1 / 256)


def test_backup_on_priority_zero_sets_timer_to_skew_time():
    m = _machine(priority=100, advert_int=1.0, version=2)
    m.start(0.0)
    m.on_advert(1.0, _adv(150, version=2), IP4("10.0.0.2"))
    m.on_advert(2.0, _adv(0, version=2), IP4("10.0.0.2"))
    assert m.next_deadline() == pytest.approx(2.0 + 156 / 256)


def test_backup_with_preempt_discards_lower_priority_and_takes_over():
    m = _machine(priority=150)
    m.start(0.0)
    first = m.next_deadline()
    acts = m.on_advert(1.0, _adv(100), IP4("10.0.0.2"))
    assert m.next_deadline() == first  # discarded: the timer keeps running
    assert any("received lower priority (100)" in line for line in _logs(acts))
    m.on_timer(first)
    assert m.state == vrrpd.State.MASTER


def test_nopreempt_backup_keeps_lower_priority_master():
    m = _machine(priority=150, preempt=False)
    m.start(0.0)
    for t in range(1, 20):
        m.on_advert(float(t), _adv(100), IP4("10.0.0.2"))
        m.on_timer(float(t))
    assert m.state == vrrpd.State.BACKUP


def test_preempt_delay_waits_before_preempting():
    m = _machine(priority=150, preempt_delay=5.0, advert_int=1.0)
    m.start(0.0)
    t = 0.0
    while m.state == vrrpd.State.BACKUP and t < 30:
        t += 1.0
        m.on_advert(t, _adv(100), IP4("10.0.0.2"))
        m.on_timer(t)
        if m.next_deadline() is not None and m.next_deadline() <= t + 1.0:
            m.on_timer(m.next_deadline())
            t = m.next_deadline() or t
    # first lower advert at t=1, delay 5 s, then the down interval (3 + 106/256) must still run out
    assert m.state == vrrpd.State.MASTER and t >= 1 + 5 + 3


def test_master_steps_down_on_higher_priority():
    m = _machine(priority=100)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    acts = m.on_advert(10.0, _adv(150), IP4("10.0.0.2"))
    assert m.state == vrrpd.State.BACKUP
    assert "(VI_1) Master received advert from 10.0.0.2 with higher priority 150, ours 100" in _logs(acts)
    assert vrrpd.RemoveVips() in acts and vrrpd.SendAdvert(0) not in acts
    assert vrrpd.Notify(vrrpd.State.BACKUP, 100) in acts


def test_master_equal_priority_higher_primary_ip_wins():
    m = _machine(priority=100, primary_ip=IP4("10.0.0.5"))
    m.start(0.0)
    m.on_timer(m.next_deadline())
    acts = m.on_advert(10.0, _adv(100), IP4("10.0.0.4"))
    assert m.state == vrrpd.State.MASTER
    assert "(VI_1) Received advert from 10.0.0.4 with lower priority 100, ours 100, forcing new election" in _logs(acts)
    m.on_advert(10.5, _adv(100), IP4("10.0.0.9"))
    assert m.state == vrrpd.State.BACKUP


def test_master_forces_new_election_on_lower_priority():
    m = _machine(priority=150, garp_lower_prio_repeat=2)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    acts = m.on_advert(10.0, _adv(90), IP4("10.0.0.2"))
    assert vrrpd.SendAdvert(150) in acts and vrrpd.NotifyRxLowerPri(90) in acts and vrrpd.SendGarp(2) in acts
    quiet = _machine(priority=150, lower_prio_no_advert=True)
    quiet.start(0.0)
    quiet.on_timer(quiet.next_deadline())
    assert vrrpd.SendAdvert(150) not in quiet.on_advert(10.0, _adv(90), IP4("10.0.0.2"))


def test_master_answers_priority_zero_with_an_advert():
    m = _machine(priority=150)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    acts = m.on_advert(10.0, _adv(0), IP4("10.0.0.2"))
    assert acts == [vrrpd.SendAdvert(150)] and m.next_deadline() == pytest.approx(11.0)


def test_shutdown_master_sends_priority_zero_and_removes_vips():
    m = _machine(priority=150)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    acts = m.shutdown(20.0)
    assert acts[0] == vrrpd.SendAdvert(0) and vrrpd.RemoveVips() in acts
    assert "(VI_1) sent 0 priority" in _logs(acts) and m.stopped
    assert vrrpd.Notify(vrrpd.State.STOP, 150) in acts


def test_handover_on_stop_keeps_vips_until_new_master_heard():
    m = _machine(priority=150, advert_int=1.0)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    acts = m.shutdown(20.0, handover=True)
    assert vrrpd.SendAdvert(0) in acts and vrrpd.RemoveVips() not in acts and not m.stopped
    assert m.next_deadline() == pytest.approx(22.0)  # longest skew (1 advert interval in v3) + 1 interval
    assert vrrpd.RemoveVips() in m.on_advert(20.6, _adv(100), IP4("10.0.0.2")) and m.stopped


def test_handover_on_stop_is_bounded_when_nobody_takes_over():
    m = _machine(priority=150, advert_int=1.0, version=2)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    m.shutdown(20.0, handover=True)
    assert m.on_timer(21.5) == []
    assert vrrpd.RemoveVips() in m.on_timer(22.0) and m.stopped


def test_fault_removes_vips_and_recovery_goes_back_to_backup():
    m = _machine(priority=150)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    acts = m.set_fault(10.0, True)
    assert m.state == vrrpd.State.FAULT and vrrpd.RemoveVips() in acts and vrrpd.SendAdvert(0) in acts
    assert "(VI_1) Entering FAULT STATE" in _logs(acts) and m.next_deadline() is None
    assert m.on_advert(11.0, _adv(100), IP4("10.0.0.2")) == []
    acts = m.set_fault(12.0, False)
    assert m.state == vrrpd.State.BACKUP and vrrpd.Notify(vrrpd.State.BACKUP, 150) in acts
    assert m.next_deadline() == pytest.approx(12.0 + m.master_down_interval)


def test_start_with_fault_enters_fault_init():
    m = _machine()
    acts = m.start(0.0, fault=True)
    assert m.state == vrrpd.State.FAULT and "(VI_1) Entering FAULT STATE (init)" in _logs(acts)


def test_effective_priority_is_clamped_and_owner_fixed():
    m = _machine(priority=100)
    acts = m.set_effective_priority(0.0, 300)
    assert m.effective_priority == 254 and "(VI_1) Changing effective priority from 100 to 254" in _logs(acts)
    m.set_effective_priority(0.0, -5)
    assert m.effective_priority == 1
    owner = _machine(priority=255)
    owner.set_effective_priority(0.0, 100)
    assert owner.effective_priority == 255


def test_lower_effective_priority_master_is_preempted_by_backup_timeout():
    backup = _machine(priority=100, primary_ip=IP4("10.0.0.2"))
    backup.start(0.0)
    backup.on_advert(0.5, _adv(150), IP4("10.0.0.1"))
    deadline = backup.next_deadline()
    backup.on_advert(1.5, _adv(90), IP4("10.0.0.1"))  # the master's trackers lowered it to 90
    assert backup.next_deadline() == deadline
    backup.on_timer(deadline)
    assert backup.state == vrrpd.State.MASTER


def test_backup_does_not_become_master_while_a_tracker_is_initialising():
    m = _machine(priority=150)
    m.start(0.0)
    m.set_hold_master(True)
    deadline = m.next_deadline()
    assert m.on_timer(deadline) == [] and m.state == vrrpd.State.BACKUP
    m.set_hold_master(False)
    m.on_timer(m.next_deadline())
    assert m.state == vrrpd.State.MASTER


def test_higher_prio_send_advert_tells_the_winner_before_stepping_down():
    m = _machine(priority=100, higher_prio_send_advert=True)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    acts = m.on_advert(10.0, _adv(150), IP4("10.0.0.2"))
    assert vrrpd.SendAdvert(100) in acts and m.state == vrrpd.State.BACKUP
    plain = _machine(priority=100)
    plain.start(0.0)
    plain.on_timer(plain.next_deadline())
    assert not any(isinstance(a, vrrpd.SendAdvert) for a in plain.on_advert(10.0, _adv(150), IP4("10.0.0.2")))


def test_receive_checks_for_v2_auth_interval_and_version():
    m = _machine(version=2, auth_type=vrrpd.AuthType.PASS, auth_pass=b"secret")
    good = _adv(version=2, auth_type=1, auth_data=b"secret\0\0")
    assert m.check_advert(good) is None
    assert m.check_advert(_adv(version=2, auth_type=1, auth_data=b"wrong\0\0\0"))[0] == "auth_failure"
    assert m.check_advert(_adv(version=2, auth_type=0))[0] == "auth_type_mismatch"
    assert m.check_advert(_adv(version=2, auth_type=7))[0] == "auth_invalid"
    bad_int = _adv(version=2, auth_type=1, auth_data=b"secret\0\0", advert_int=3)
    assert m.check_advert(bad_int) == ("bad_interval", "advertisement interval mismatch mine=1 rcv'd=3")
    assert m.check_advert(_adv(version=3))[0] == "bad_version"
    v3 = _machine(version=3, advert_int=1.0)
    assert v3.check_advert(_adv(version=3, advert_int=0.5)) is None  # v3: the backup learns it instead


def test_adverts_carry_the_password_of_auth_type_pass_only_also_after_a_reload(offline):
    """VRRPv2: a PASS instance's adverts carry its password NUL-padded to 8 bytes, the others' eight zeros; the
    machine keeps the padded password only for PASS, and a reload that sets one is sent from the next advert on."""
    def block(name, vrid, password=""):
        auth = f"    authentication {{\n        auth_type PASS\n        auth_pass {password}\n    }}\n"
        return instance_text(name=name, vrid=vrid, version=2, state="MASTER", priority=255 - vrid,
                             vips=[f"10.0.0.{vrid}/24"], extra=auth if password else "").split("}\n", 1)[1]
    head = "global_defs {\n    router_id offline\n}\n"
    d, kernel = offline(head + block("VI_P", 51, "secret") + block("VI_N", 52))

    def last_auth():
        sent = {}
        for src, dst, packet in kernel.sent(4):
            adv = vrrpd.decode_advert(vrrpd.decode_ipv4(packet).payload, src, dst)
            sent[adv.vrid] = (adv.auth_type, adv.auth_data)
        return sent
    d.loop.advance(4.0)
    assert [rt.machine.state for rt in d.runtimes] == [vrrpd.State.MASTER] * 2
    assert last_auth() == {51: (1, b"secret\0\0"), 52: (0, bytes(8))}
    assert [rt.machine.auth_pass for rt in d.runtimes] == [b"secret\0\0", b""]
    changed, _diags = vrrpd.parse_config_text(head + block("VI_P", 51) + block("VI_N", 52, "abc"))
    assert d.reload(changed)
    d.loop.advance(1.0)
    assert last_auth() == {51: (0, bytes(8)), 52: (1, b"abc" + bytes(5))}


def test_address_list_mismatch_is_reported_unless_skipped():
    m = _machine(addresses=[IP4("10.0.0.100")])
    assert m.address_mismatch(_adv(addresses=("10.0.0.101",)))
    assert not m.address_mismatch(_adv(addresses=("10.0.0.100",)))
    assert not _machine(skip_check_adv_addr=True).address_mismatch(_adv(addresses=("10.0.0.101",)))


# -- RFC 5798 section 7.1: the receive checks, each for both families -------------------------------

FAMILY = {4: dict(peer=IP4("10.0.0.2"), group=IP4("224.0.0.18"), me=IP4("10.0.0.1"), vip=IP4("10.0.0.100"),
                  other=IP4("10.0.0.101")),
          6: dict(peer=IP6("fe80::2"), group=IP6("ff02::12"), me=IP6("fe80::1"), vip=IP6("2001:db8::100"),
                  other=IP6("2001:db8::101"))}


def _rx(family, priority=200, dst=None, ttl=255, src=None, version=3, advert_int=1.0, addresses=None,
        mutate=None):
    """A Received advert of `family` as the socket hands it over (the IPv6 checksum left to the kernel)."""
    f = FAMILY[family]
    src, dst = src or f["peer"], dst or f["group"]
    adv = vrrpd.VrrpAdvert(version, 51, priority, addresses if addresses is not None else [f["vip"]], advert_int)
    msg = vrrpd.encode_advert(adv, src, dst) if family == 4 else vrrpd.encode_advert(adv)
    if mutate is not None:
        msg = mutate(bytearray(msg))
    return vrrpd.Received(src, dst, ttl, bytes(msg))


def _rx_machine(family, **kw):
    return vrrpd.VrrpMachine("VI_1", 51, 100, 1.0, 3, addresses=[FAMILY[family]["vip"]],
                             primary_ip=FAMILY[family]["me"], **kw)


def _check(pkt, machine, unicast=False, peers=(), check_src=False):
    return vrrpd.receive_checks(pkt, machine, unicast, list(peers), check_src)


@pytest.mark.parametrize("family", [4, 6])
def test_receive_check_accepts_a_good_advert(family):
    adv = _check(_rx(family), _rx_machine(family))
    assert isinstance(adv, vrrpd.VrrpAdvert) and adv.priority == 200 and adv.addresses == [FAMILY[family]["vip"]]


@pytest.mark.parametrize("family", [4, 6])
def test_receive_check_multicast_needs_ttl_255(family):
    verdict = _check(_rx(family, ttl=64), _rx_machine(family))
    assert verdict == vrrpd.Drop("bad_ttl", "(VI_1) invalid TTL/HL. Received 64 and expect 255")


@pytest.mark.parametrize("family", [4, 6])
def test_receive_check_unicast_ttl_must_be_in_the_peers_range(family):
    f = FAMILY[family]
    peers = [vrrpd.UnicastPeer(f["peer"], min_ttl=250, max_ttl=255)]
    assert isinstance(_check(_rx(family, dst=f["me"], ttl=254), _rx_machine(family), True, peers), vrrpd.VrrpAdvert)
    verdict = _check(_rx(family, dst=f["me"], ttl=64), _rx_machine(family), True, peers)
    assert verdict.reason == "bad_ttl" and "outside [250, 255]" in verdict.message


@pytest.mark.parametrize("family", [4, 6])
def test_receive_check_mode_unicast_versus_multicast(family):
    f = FAMILY[family]
    assert _check(_rx(family, dst=f["me"]), _rx_machine(family), unicast=False).reason == "mode_mismatch"
    assert _check(_rx(family), _rx_machine(family), unicast=True).reason == "mode_mismatch"


@pytest.mark.parametrize("family", [4, 6])
def test_receive_check_unicast_source_must_be_a_peer_when_checked(family):
    f = FAMILY[family]
    pkt = _rx(family, dst=f["me"])
    assert _check(pkt, _rx_machine(family), True, [], check_src=True).reason == "unknown_peer"
    assert isinstance(_check(pkt, _rx_machine(family), True, [], check_src=False), vrrpd.VrrpAdvert)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b[:3], "truncated"),
    (lambda b: bytes([0x41]) + b[1:], "bad_version"),
    (lambda b: bytes([0x32]) + b[1:], "bad_type"),
    (lambda b: b + b"\0\0\0\0", "bad_length"),
    (lambda b: b[:4] + b"\0\0" + b[6:], "bad_interval"),
], ids=["truncated", "version", "type", "length", "interval"])
def test_receive_check_rejects_malformed_messages(family, mutate, reason):
    def fix(b):
        out = bytearray(mutate(bytes(b)))
        if family == 4 and len(out) >= 8:  # keep the checksum right, so the field under test is what fails
            out[6:8] = b"\0\0"
            src, dst = FAMILY[4]["peer"], FAMILY[4]["group"]
            out[6:8] = vrrpd.inet_checksum(vrrpd.pseudo_header(src, dst, len(out)) + bytes(out)).to_bytes(2, "big")
        return out

    assert _check(_rx(family, mutate=fix), _rx_machine(family)).reason == reason


def test_receive_check_ipv4_checksum_covers_the_pseudo_header():
    # IPv6 checksums are the kernel's to check (IPV6_CHECKSUM): a bad one never reaches vrrpd
    good = _rx(4)
    spoofed = vrrpd.Received(IP4("10.0.0.3"), good.dst, good.ttl, good.payload)
    assert _check(spoofed, _rx_machine(4)).reason == "bad_checksum"
    bad = _rx(4, mutate=lambda b: b[:6] + bytes([b[6] ^ 1]) + b[7:])
    assert _check(bad, _rx_machine(4)).reason == "bad_checksum"


@pytest.mark.parametrize("family", [4, 6])
def test_receive_check_version_must_be_ours(family):
    m = vrrpd.VrrpMachine("VI_1", 51, 100, 1.0, 2) if family == 4 else _rx_machine(family)
    if family == 4:
        assert _check(_rx(4), m).reason == "bad_version"  # a v3 advert for a v2 instance
    else:
        v2 = _rx(6, mutate=lambda b: bytes([0x21]) + b[1:] + bytes(8))
        assert _check(v2, m).reason == "bad_version"  # IPv6 is VRRPv3 only


@pytest.mark.parametrize("family", [4, 6])
def test_receive_check_address_list_mismatch_is_counted_not_dropped(family):
    f = FAMILY[family]
    adv = _check(_rx(family, addresses=[f["other"]]), _rx_machine(family))
    assert isinstance(adv, vrrpd.VrrpAdvert) and _rx_machine(family).address_mismatch(adv)


@pytest.mark.parametrize("family", [4, 6])
def test_receive_check_unwrap_runs_after_the_ttl_and_before_the_message(family):
    seen = []

    def unwrap(msg):
        seen.append(msg)
        return msg[:-4]  # a trailer of 4 bytes taken off

    pkt = _rx(family)
    padded = vrrpd.Received(pkt.src, pkt.dst, pkt.ttl, pkt.payload + b"TRLR")
    assert isinstance(vrrpd.receive_checks(padded, _rx_machine(family), False, [], False, False, unwrap),
                      vrrpd.VrrpAdvert)
    low = vrrpd.Received(pkt.src, pkt.dst, 1, pkt.payload + b"TRLR")
    assert vrrpd.receive_checks(low, _rx_machine(family), False, [], False, False, unwrap).reason == "bad_ttl"
    assert len(seen) == 1
    assert vrrpd.receive_checks(padded, _rx_machine(family), False, [], False, False, lambda m: None) is None


# -- the receive and send paths of the Daemon, each for both families (fake kernel, fake clock) -------


def _master(d, kernel):
    """Nobody else advertises: the instance becomes MASTER after its Master_Down_Interval."""
    rt = d.runtimes[0]
    d.loop.advance(rt.machine.master_down_interval + 0.01)
    assert rt.machine.state == vrrpd.State.MASTER
    return rt


def _advert_pkt(family, priority=200, vrid=51, src=None, ttl=255, received_at=None):
    pkt = _rx(family, priority=priority, src=src, ttl=ttl)
    if vrid != 51:
        pkt.payload = pkt.payload[:1] + bytes([vrid]) + pkt.payload[2:]
        if family == 4:
            pkt = _rx(4, priority=priority, src=src, ttl=ttl, mutate=lambda b: b)  # re-encode below
            adv = vrrpd.VrrpAdvert(3, vrid, priority, [FAMILY[4]["vip"]], 1.0)
            pkt.payload = vrrpd.encode_advert(adv, pkt.src, pkt.dst)
    pkt.received_at = received_at
    return pkt


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_sources_targets_and_socket_follow_the_family(offline, family):
    d, kernel = offline(instance_text(family=family))
    rt = d.runtimes[0]
    assert rt.src == FAMILY[family]["me"] and rt.machine.primary_ip == rt.src
    assert rt.targets == [(FAMILY[family]["group"], 255)] and kernel.sockets[("eth0", family, 112)].groups
    rt = _master(d, kernel)
    src, dst, packet = kernel.sent(family)[-1]
    assert (src, dst) == (FAMILY[family]["me"], FAMILY[family]["group"])
    msg = vrrpd.decode_ipv4(packet).payload if family == 4 else packet
    adv = vrrpd.decode_advert(msg, src if family == 4 else None, dst if family == 4 else None, family=family)
    assert (adv.vrid, adv.priority, adv.addresses) == (51, 100, [FAMILY[family]["vip"]])
    assert (ETH0, FAMILY[family]["vip"]) in kernel.held
    assert (("eth0", str(FAMILY[family]["vip"])) in kernel.announced)  # a GARP or an unsolicited NA


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_backup_follows_a_master_of_either_family(offline, family):
    d, kernel = offline(instance_text(family=family))
    rt = d.runtimes[0]
    for _ in range(5):
        kernel.deliver(d, _advert_pkt(family, 200), family)
        d.loop.advance(1.0)
    assert rt.machine.state == vrrpd.State.BACKUP and rt.machine.master_ip == FAMILY[family]["peer"]
    assert rt.adverts_received == 5 and not rt.bad_packets


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_ignores_its_own_echoes(offline, family):
    d, kernel = offline(instance_text(family=family))
    kernel.deliver(d, _advert_pkt(family, 200, src=FAMILY[family]["me"]), family)
    assert d.runtimes[0].adverts_received == 0 and not d.runtimes[0].bad_packets


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_unknown_vrid_is_logged_once_per_interface(offline, family, caplog):
    d, kernel = offline(instance_text(family=family))
    caplog.set_level(logging.WARNING, logger="vrrpd")
    for vrid in (7, 8, 9):
        pkt = _rx(family)
        pkt.payload = pkt.payload[:1] + bytes([vrid]) + pkt.payload[2:]
        kernel.deliver(d, pkt, family)
    assert sum("Unknown VRID" in r.getMessage() for r in caplog.records) == 1
    assert d.runtimes[0].adverts_received == 0


def test_daemon_hands_each_advert_to_the_instance_of_its_interface_family_vrid_and_mode(offline, caplog):
    """Adverts find their instance by interface, family, VRID and mode (by_vrid), also after a reload took
    instances away: a multicast and a unicast IPv4 instance and an IPv6 one, all of VRID 51 on eth0."""
    def block(name, family, peer=""):
        vip = FAMILY[family]["vip"] if name != "VI_U" else FAMILY[family]["other"]
        extra = f"    unicast_peer {{\n        {peer}\n    }}\n" if peer else ""
        return instance_text(name=name, family=family, vips=[f"{vip}/{24 if family == 4 else 64}"],
                             extra=extra).split("}\n", 1)[1]
    head = "global_defs {\n    router_id offline\n}\n"
    d, kernel = offline(head + block("VI_M", 4) + block("VI_U", 4, "10.0.0.3") + block("VI_6", 6))
    rts = {rt.inst.name: rt for rt in d.runtimes}
    unicast = _rx(4, src=IP4("10.0.0.3"), dst=FAMILY[4]["me"], addresses=[FAMILY[4]["other"]])

    def heard():
        return {name: (rt.adverts_received, sum(rt.bad_packets.values())) for name, rt in rts.items()}
    kernel.deliver(d, _rx(4))
    kernel.deliver(d, unicast)
    kernel.deliver(d, _rx(6), family=6)
    assert heard() == {"VI_M": (1, 0), "VI_U": (1, 0), "VI_6": (1, 0)}
    changed, _diags = vrrpd.parse_config_text(head + block("VI_U", 4, "10.0.0.3") + block("VI_6", 6))
    assert d.reload(changed) and [rt.inst.name for rt in d.runtimes] == ["VI_U", "VI_6"]
    kernel.deliver(d, unicast)
    kernel.deliver(d, _rx(4))  # VI_M's advert now reaches the unicast instance of the VRID, which drops it
    kernel.deliver(d, _rx(6), family=6)
    assert heard() == {"VI_M": (1, 0), "VI_U": (2, 1), "VI_6": (2, 0)}
    caplog.set_level(logging.WARNING, logger="vrrpd")
    changed, _diags = vrrpd.parse_config_text(head + block("VI_6", 6))
    assert d.reload(changed)
    kernel.deliver(d, _rx(4))
    kernel.deliver(d, _rx(6), family=6)
    assert heard() == {"VI_M": (1, 0), "VI_U": (2, 1), "VI_6": (3, 0)}
    assert sum("Unknown VRID(51) received on interface(eth0)" in r.getMessage() for r in caplog.records) == 1


def test_the_instances_share_one_timer_callback_and_a_master_keeps_its_timer(offline):
    """Every instance's Timer calls the Daemon's one bound method; a MASTER's Timer is set again for each
    advert, not made anew, and each instance sends its adverts on time."""
    text = "global_defs {\n    router_id offline\n}\n" + "".join(
        instance_text(name=f"VI_{vrid}", vrid=vrid, vips=[f"10.0.0.{vrid}/24"]).split("}\n", 1)[1]
        for vrid in (51, 52, 53))
    d, kernel = offline(text)
    callbacks = {id(rt.timer.callback) for rt in d.runtimes}
    assert len(callbacks) == 1 and [rt.timer.args for rt in d.runtimes] == [(rt,) for rt in d.runtimes]
    d.loop.advance(max(rt.machine.master_down_interval for rt in d.runtimes) + 0.01)
    assert [rt.machine.state for rt in d.runtimes] == [vrrpd.State.MASTER] * 3
    timers = [rt.timer for rt in d.runtimes]
    sent = [rt.adverts_sent for rt in d.runtimes]
    for _ in range(5):
        d.loop.advance(1.0)
    assert [rt.timer for rt in d.runtimes] == timers and {id(t.callback) for t in timers} == callbacks
    assert [rt.adverts_sent - n for rt, n in zip(d.runtimes, sent)] == [5, 5, 5]


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_counts_priority_zero_both_ways(offline, family):
    d, kernel = offline(instance_text(family=family))
    rt = _master(d, kernel)
    d.stop()
    assert rt.priority_zero_sent == 1
    d2, kernel2 = offline(instance_text(family=family))
    kernel2.deliver(d2, _advert_pkt(family, 0), family)
    assert d2.runtimes[0].priority_zero_received == 1


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_dates_an_advert_by_its_kernel_receive_time(offline, family):
    d, kernel = offline(instance_text(family=family))
    m = d.runtimes[0].machine
    kernel.deliver(d, _advert_pkt(family, 200), family)
    fresh = m.master_down_timer
    kernel.deliver(d, _advert_pkt(family, 200, received_at=time.time() - 0.05), family)
    assert fresh - 0.1 < m.master_down_timer < fresh - 0.03  # started when it arrived, not when it was read


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_encodes_an_advert_once_and_sends_the_bytes_again(offline, family):
    d, kernel = offline(instance_text(family=family, advert=0.1))
    rt = _master(d, kernel)
    d.loop.advance(1.0)
    packets = {p for _s, _d, p in kernel.sent(family)}
    assert len(kernel.sent(family)) >= 10 and len(packets) == 1 and rt.packets[:2] == (rt.machine.priority, rt.src)
    assert len(rt.packets) == 5 and type(rt.packets[3]) is bytes  # one flat tuple: priority, src, sock, packet, dest


@pytest.mark.parametrize("family", [4, 6])
def test_a_master_keeps_only_its_pending_garp_timers(offline, family):
    """The GARP delay timer that has run, and each garp_master_refresh timer that re-armed, are forgotten."""
    d, kernel = offline(instance_text(family=family, advert=0.1, extra="    garp_master_delay 1\n"
                                                                      "    garp_master_refresh 2\n"))
    rt = _master(d, kernel)
    assert len(rt.garp_timers) == 2  # the delay one and the first refresh
    d.loop.advance(11.0)  # the delay timer ran, and five refreshes
    assert [t.callback for t in rt.garp_timers] == [d._garp_refresh] and not rt.garp_timers[0].cancelled


def test_parsed_vips_and_kernel_addresses_behave_as_ipaddress_interfaces():
    """ip_interface() keeps no network object per address, and is still the ipaddress interface it stands for."""
    for text in ("10.0.0.1/24", "10.0.0.1", "192.168.1.1/255.255.255.0", "fe80::1%eth0/64", "2001:db8::1/128"):
        ours, theirs = vrrpd.ip_interface(text), ipaddress.ip_interface(text)
        assert (ours == theirs, theirs == ours, hash(ours) == hash(theirs), {ours} == {theirs}) == (True,) * 4
        assert (repr(ours), str(ours), ours.with_netmask, ours.hostmask) == (
            repr(theirs), str(theirs), theirs.with_netmask, theirs.hostmask)
        assert ours.network == theirs.network and ours.ip == theirs.ip and ours.ip is ours.ip
        assert "network" not in getattr(ours, "__dict__", {})
    assert vrrpd.ip_interface("10.0.0.1/24") != ipaddress.ip_interface("10.0.0.1/25")
    assert vrrpd.ip_interface("10.0.0.1/32") != ipaddress.ip_address("10.0.0.1")
    for bad in ("10.0.0.1/33", "10.0.0.300", "fe80::1/129", "10.0.0.1/255.0.255.0"):
        with pytest.raises(ValueError) as ours_error:
            vrrpd.ip_interface(bad)
        with pytest.raises(ValueError) as their_error:
            ipaddress.ip_interface(bad)
        assert str(ours_error.value) == str(their_error.value)


def test_the_empty_list_fields_of_parsed_instances_are_one_read_only_list():
    config, _ = vrrpd.parse_config_text(instance_text() + instance_text(name="VI_2", vrid=52), "a.conf")
    a, b = config.vrrp_instances
    assert a.track_script is b.virtual_routes and a.track_script == [] and repr(a.unicast_peer) == "[]"
    assert not {"track_script", "virtual_routes", "unicast_peer"} & set(vars(a))  # the class default: nothing held
    fresh = vrrpd.VrrpInstance("VI_3")
    with pytest.raises(TypeError):
        fresh.track_script.append(vrrpd.TrackRef("chk"))
    vrrpd.own_list(fresh, "track_script").append(vrrpd.TrackRef("chk"))
    assert fresh.track_script == [vrrpd.TrackRef("chk")] and vrrpd.VrrpInstance("VI_4").track_script == []
    with pytest.raises(TypeError):
        a.track_script.append(vrrpd.TrackRef("chk"))
    assert b.track_script == [] and type(vrrpd.small_asdict(a)["track_script"]) is list
    assert a == vrrpd.dataclass_replace(a) and len(a.virtual_ipaddress) == 1


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_master_that_cannot_send_says_so(offline, family, caplog):
    d, kernel = offline(instance_text(family=family, advert=0.1))
    rt = _master(d, kernel)
    rt.src = None  # its source address went (the state a vanished interface address leaves)
    sent = len(kernel.sent(family))
    with caplog.at_level(logging.WARNING, logger="vrrpd"):
        d.loop.advance(1.0)
    assert len(kernel.sent(family)) == sent
    said = [r.getMessage() for r in caplog.records if "cannot send advert" in r.getMessage()]
    assert said and said[0] == "(VI_1) cannot send advert: no source address on eth0" and len(said) < 10, said


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_puts_back_a_vip_deleted_behind_its_back(offline, family):
    d, kernel = offline(instance_text(family=family))
    _master(d, kernel)
    vip = FAMILY[family]["vip"]
    kernel.held.discard((ETH0, vip))
    prefix = 24 if family == 4 else 64
    kernel.monitor_.events.append((vrrpd.RTM_DELADDR, vrrpd.AddrInfo(ETH0, ipaddress.ip_interface(f"{vip}/{prefix}"))))
    d._on_netlink()
    assert (ETH0, vip) in kernel.held and kernel.calls[-1] == ("add", ETH0, f"{vip}/{prefix}")


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_removes_vips_left_by_an_earlier_run(offline, family):
    kernel = FakeKernel()
    vip = FAMILY[family]["vip"]
    prefix = 24 if family == 4 else 64
    kernel.addrs.append(vrrpd.AddrInfo(ETH0, ipaddress.ip_interface(f"{vip}/{prefix}")))
    kernel.held.add((ETH0, vip))
    d, kernel = offline(instance_text(family=family), kernel=kernel)
    assert ("del", ETH0, f"{vip}/{prefix}") in kernel.calls and (ETH0, vip) not in kernel.held


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_reload_adds_and_removes_only_the_changed_vips_of_a_master(offline, family):
    f = FAMILY[family]
    prefix = 24 if family == 4 else 64
    d, kernel = offline(instance_text(family=family, vips=[f"{f['vip']}/{prefix}"]))
    rt = _master(d, kernel)
    kernel.calls.clear()
    changed, _diags = vrrpd.parse_config_text(instance_text(family=family, vips=[f"{f['other']}/{prefix}"]))
    assert d.reload(changed)
    assert rt.machine.state == vrrpd.State.MASTER
    assert kernel.calls == [("del", ETH0, f"{f['vip']}/{prefix}"), ("add", ETH0, f"{f['other']}/{prefix}")]
    assert (ETH0, f["other"]) in kernel.held and (ETH0, f["vip"]) not in kernel.held


@pytest.mark.parametrize("family", [4, 6])
def test_daemon_vmac_instance_puts_its_vips_on_the_vmac_and_sends_from_it(offline, family):
    d, kernel = offline(instance_text(family=family, extra="    use_vmac\n"))
    rt = _master(d, kernel)
    vmac = 100 + 51  # FakeVmacs: index 100 + VRID
    assert d.links[vmac].mac == vrrpd.vmac_address(51, family) and rt.vmac_index == vmac
    assert (vmac, FAMILY[family]["vip"]) in kernel.held and (ETH0, FAMILY[family]["vip"]) not in kernel.held
    xmit = kernel.sockets[("vrrp.51", family, vrrpd.IPPROTO_VRRP)]
    assert rt.xmit is xmit and xmit.sent and getattr(xmit, "send_only", False)  # it queues nothing
    d.stop()
    assert vmac not in kernel.links and not d.vmacs.created  # removed at stop


def test_a_read_of_many_address_events_leaves_the_address_table_as_the_kernel_has_it(offline):
    """One read of the monitor brings a takeover's thousand RTM_NEWADDR at once, and other changes between them:
    the table ends as the last event of each address says, in the order they came, an address seen again
    moving to the end; a tentative address is not in it, and an IPv6 instance finds its source in the batch."""
    kernel = FakeKernel()
    kernel.addrs = [a for a in kernel.addrs if a.address.version == 4]
    d, kernel = offline(instance_text() + instance_text(name="VI_6", family=6).split("}\n", 1)[1], kernel=kernel)
    v6 = d.runtimes[1]
    assert v6.src is None

    def event(rtype, address, **kw):
        return rtype, vrrpd.AddrInfo(ETH0, ipaddress.ip_interface(address), **kw)
    new, gone = vrrpd.RTM_NEWADDR, vrrpd.RTM_DELADDR
    kernel.monitor_.events.extend([event(new, f"10.1.{i // 250}.{i % 250}/32") for i in range(1000)] + [
        event(new, "10.0.0.7/24"), event(gone, "10.0.0.7/24"), event(new, "10.0.0.8/24"),
        event(new, "10.1.0.0/32"), event(new, "fe80::9/64", scope=253, flags=vrrpd.IFA_F_TENTATIVE),
        event(new, "fe80::1/64", scope=253), event(gone, "10.1.0.1/32")])
    d._on_netlink()
    table = [str(a.address) for a in d.addrs]
    assert table[:1] == ["10.0.0.1/24"] and len(table) == 1 + 998 + 3
    assert table[-3:] == ["10.0.0.8/24", "10.1.0.0/32", "fe80::1/64"] and "10.1.0.1/32" not in table
    assert "10.0.0.7/24" not in table and "fe80::9/64" not in table and table[1] == "10.1.0.2/32"
    assert v6.src == IP6("fe80::1") and v6.machine.state == vrrpd.State.BACKUP
    assert d.runtimes[0].src == IP4("10.0.0.1")


def test_daemon_ipv6_instance_waits_for_its_link_local_address(offline):
    kernel = FakeKernel()
    kernel.addrs = [a for a in kernel.addrs if a.address.version == 4]
    tentative = vrrpd.AddrInfo(ETH0, ipaddress.ip_interface("fe80::1/64"), scope=253, flags=vrrpd.IFA_F_TENTATIVE)
    kernel.addrs.append(tentative)
    d, kernel = offline(instance_text(family=6), kernel=kernel)
    rt = d.runtimes[0]
    assert rt.src is None and rt.machine.state == vrrpd.State.FAULT
    kernel.monitor_.events.append((vrrpd.RTM_NEWADDR, vrrpd.AddrInfo(ETH0, tentative.address, scope=253)))
    d._on_netlink()  # DAD is over: the kernel says so, nothing polls
    assert rt.src == IP6("fe80::1") and rt.machine.state == vrrpd.State.BACKUP


# -- C2. Why each state change happened: the reason carried by Notify (issue 16) ---------------


def _reason(actions):
    """(state, reason, detail) of the one transition among the actions."""
    notes = [a for a in actions if isinstance(a, vrrpd.Notify)]
    assert len(notes) == 1, actions
    return notes[0].state, notes[0].reason, notes[0].detail


def test_reason_start_is_not_master_and_owner_is_priority():
    assert _reason(_machine().start(0.0))[:2] == (vrrpd.State.BACKUP, "not-master")
    state, reason, detail = _reason(_machine(priority=255).start(0.0))
    assert (state, reason) == (vrrpd.State.MASTER, "priority") and "owner" in detail


def test_reason_takeover_when_the_master_goes_silent_is_no_response():
    m = _machine(priority=100)
    m.start(0.0)
    m.on_advert(0.5, _adv(150), IP4("10.0.0.2"))
    state, reason, detail = _reason(m.on_timer(m.next_deadline()))
    assert (state, reason) == (vrrpd.State.MASTER, "no-response")
    assert "10.0.0.2" in detail and f"{m.master_down_interval:.2f} s" in detail
    silent = _machine(priority=100)
    silent.start(0.0)
    assert _reason(silent.on_timer(silent.next_deadline()))[1:] == ("no-response", "no advert heard")


def test_reason_takeover_from_a_lower_priority_master_is_preempted():
    m = _machine(priority=150)
    m.start(0.0)
    m.on_advert(1.0, _adv(100), IP4("10.0.0.2"))
    state, reason, detail = _reason(m.on_timer(m.next_deadline()))
    assert (state, reason) == (vrrpd.State.MASTER, "preempted")
    assert detail == "master 10.0.0.2 advertises priority 100, ours 150"


def test_reason_takeover_after_priority_zero_is_released():
    m = _machine(priority=100)
    m.start(0.0)
    m.on_advert(1.0, _adv(150), IP4("10.0.0.2"))
    m.on_advert(2.0, _adv(0), IP4("10.0.0.2"))
    state, reason, detail = _reason(m.on_timer(m.next_deadline()))
    assert (state, reason) == (vrrpd.State.MASTER, "released") and "10.0.0.2 sent priority 0" in detail


def test_reason_master_stepping_down_is_priority_with_the_winner():
    m = _machine(priority=100)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    state, reason, detail = _reason(m.on_advert(10.0, _adv(150), IP4("10.0.0.2")))
    assert (state, reason) == (vrrpd.State.BACKUP, "priority")
    assert detail == "advert from 10.0.0.2 with priority 150, ours 100"
    assert (m.master_ip, m.master_priority, m.last_advert) == (IP4("10.0.0.2"), 150, 10.0)
    tie = _machine(priority=100, primary_ip=IP4("10.0.0.5"))
    tie.start(0.0)
    tie.on_timer(tie.next_deadline())
    assert "(equal, higher address)" in _reason(tie.on_advert(10.0, _adv(100), IP4("10.0.0.9")))[2]


def test_reason_fault_fault_cleared_shutdown_and_sync_group():
    m = _machine(priority=150)
    m.start(0.0)
    m.on_timer(m.next_deadline())
    assert _reason(m.set_fault(1.0, True))[:2] == (vrrpd.State.FAULT, "fault")
    assert _reason(m.set_fault(2.0, False))[:2] == (vrrpd.State.BACKUP, "fault-cleared")
    assert _reason(m.shutdown(3.0))[:2] == (vrrpd.State.STOP, "shutdown")
    assert _reason(_machine().start(0.0, fault=True))[:2] == (vrrpd.State.FAULT, "fault")
    member = _machine()
    member.start(0.0)
    assert _reason(member.force_state(1.0, vrrpd.State.MASTER))[:2] == (vrrpd.State.MASTER, "sync-group")
    lost = _machine(priority=150)
    lost.start(0.0)
    lost.on_timer(lost.next_deadline())
    assert _reason(lost.release_master(5.0, "virtual route deleted")) == (vrrpd.State.BACKUP, "fault",
                                                                          "virtual route deleted")


def test_transition_counts_by_reason_cover_every_transition_beyond_the_history(offline, tmp_path):
    """--status keeps the last TRANSITION_HISTORY transitions, and counts all of them by (state, reason), in
    the order first seen; an instance that changed state fewer times keeps no counts of its own. Clearing the
    stats (SIGUSR2 with clear) starts the transitions and states entered from zero, not the reasons."""
    d, kernel = offline(instance_text())
    events = []
    d.event_sinks.append(events.append)
    rt = d.runtimes[0]
    for _ in range(7):  # BACKUP -> MASTER (nobody heard), -> BACKUP (a higher priority master), 14 transitions
        d.loop.advance(rt.machine.master_down_interval + 0.01)
        kernel.deliver(d, _advert_pkt(4, 200))
        if len(events) == 4:
            assert rt.older_reasons == () and len(rt.history) == 5  # with the start's INIT -> BACKUP
    assert [e["to"] for e in events] == ["MASTER", "BACKUP"] * 7
    everything = [("BACKUP", "not-master")] + [(e["to"], e["reason"]) for e in events]
    counted = {}
    for key in everything:
        counted[key] = counted.get(key, 0) + 1
    stats = d.status()["instances"][0]["stats"]
    assert [(r["state"], r["reason"], r["count"]) for r in stats["by_reason"]] == [
        (state, reason, n) for (state, reason), n in counted.items()]
    assert stats["entered"] == {"BACKUP": 8, "MASTER": 7} and stats["transitions"] == 15
    assert [(e["to"], e["reason"]) for e in rt.history] == everything[-vrrpd.TRANSITION_HISTORY:]
    vrrpd.Operator(d, "offline.conf", control_socket=None, dump_dir=str(tmp_path)).dump("stats", clear=True)
    stats = d.status()["instances"][0]["stats"]
    assert (stats["transitions"], stats["entered"], len(stats["by_reason"])) == (0, {}, len(counted))
    d.loop.advance(rt.machine.master_down_interval + 0.01)
    stats = d.status()["instances"][0]["stats"]
    assert (stats["transitions"], stats["entered"]) == (1, {"MASTER": 1})
    assert sum(r["count"] for r in stats["by_reason"]) == len(everything) + 1


def test_reason_does_not_change_what_notify_compares():
    # notify scripts, FIFO and mail see the state and priority; the reason rides along
    assert vrrpd.Notify(vrrpd.State.MASTER, 100, "priority", "x") == vrrpd.Notify(vrrpd.State.MASTER, 100)


# -- auth_hmac (keepalived 2.4.3's HMAC-SHA256 trailer) ----------------------------------------------

HMAC_KEY = bytes(range(32))
HMAC_SEQ = 0x6800000080000000
HMAC_V4_WIRE = bytes.fromhex("3133c80100644402c0000264" "010100006800000080000000" "1b84bc4e8e43892dc6d98448f8ee2265")
HMAC_V6_WIRE = bytes.fromhex("3133c8010064a2e9fe800000000000000000000000000100"
                             "010100006800000080000000" "c8c56146ebfd66ee10ec4d8186461b78")
HMAC_NOW_NS = 0x68000000 * 10**9 + 500_000_000  # the vectors' own time: fresh in time mode too


def _hmac_engine(mode="enforce", anti_replay="monotonic", keys=None, window=5):
    return vrrpd.AuthHmac(keys or {1: HMAC_KEY}, 1, mode, anti_replay, window)


def test_auth_hmac_golden_vectors_ipv4_and_ipv6():
    src4, src6 = ipaddress.ip_address("198.51.100.10"), ipaddress.ip_address("fe80::10")
    pdu4, pdu6 = HMAC_V4_WIRE[:12], HMAC_V6_WIRE[:24]
    head4 = HMAC_V4_WIRE[12:24]
    assert vrrpd.auth_hmac_input(src4, 3, 51, pdu4, head4).hex() == (
        "04033300c633640a000000000000000000000000" "3133c80100640000c0000264"
        "010100006800000080000000" + "00" * 16)
    assert vrrpd.auth_hmac_input(src6, 3, 51, pdu6, HMAC_V6_WIRE[24:36])[:20].hex() == \
        "06033300fe800000000000000000000000000010"
    assert vrrpd.auth_hmac_trailer(HMAC_KEY, 1, HMAC_SEQ, pdu4, src4, 3, 51) == HMAC_V4_WIRE[12:]
    assert vrrpd.auth_hmac_trailer(HMAC_KEY, 1, HMAC_SEQ, pdu6, src6, 3, 51) == HMAC_V6_WIRE[24:]
    full = vrrpd._hmac_sha256(HMAC_KEY, vrrpd.auth_hmac_input(src4, 3, 51, pdu4, head4))
    assert full.hex() == "1b84bc4e8e43892dc6d98448f8ee2265f674824d1bfd1c6e62aa1b5f4312fe4a"
    # the trailer is found by length only, for both address sizes
    assert vrrpd.auth_hmac_split(HMAC_V4_WIRE, 4) == (pdu4, HMAC_V4_WIRE[12:])
    assert vrrpd.auth_hmac_split(HMAC_V6_WIRE, 16) == (pdu6, HMAC_V6_WIRE[24:])
    assert vrrpd.auth_hmac_split(HMAC_V4_WIRE[:-1], 4) == (HMAC_V4_WIRE[:-1], None)
    for engine in (_hmac_engine(), _hmac_engine(anti_replay="time")):
        assert engine.verify(pdu4, HMAC_V4_WIRE[12:], src4, 3, 51, HMAC_NOW_NS)[0] is None
        assert engine.verify(pdu6, HMAC_V6_WIRE[24:], src6, 3, 51, HMAC_NOW_NS)[0] is None


def test_auth_hmac_live_keepalived_capture_verifies():
    live4 = bytes.fromhex("3133c80100640f790afd0064" "010100006b0e9deb29da0000" "f2fb0065b40196e59055dc41c12c8d67")
    live6 = bytes.fromhex("3134c8010064f32efd000253000000000000000000000100"
                          "010100006b0e9deb2a790000" "b966a2b56fb1b93ffb82c4a74b1e98f5")
    engine = _hmac_engine()
    assert engine.verify(live4[:12], live4[12:], ipaddress.ip_address("10.253.0.1"), 3, 51, 0)[0] is None
    assert engine.verify(live6[:24], live6[24:], ipaddress.ip_address("fe80::b0de:c1ff:fecb:453e"), 3, 52,
                         0)[0] is None


@pytest.mark.parametrize("byte,expected", [
    (2, "auth_ext_invalid_hmac"), (5, "auth_ext_invalid_hmac"), (23, "auth_ext_invalid_hmac"),
    (28, "auth_ext_invalid_hmac"), (34, "auth_ext_invalid_hmac"), (36, "auth_ext_invalid_hmac"),
    (6, None), (24, "auth_ext_malformed"), (26, "auth_ext_malformed"), (25, "auth_ext_unknown_key")])
def test_auth_hmac_mutations_of_the_ipv6_vector(byte, expected):
    image = bytearray(HMAC_V6_WIRE)
    image[byte] ^= 0x01
    result = _hmac_engine().verify(bytes(image[:24]), bytes(image[24:]), ipaddress.ip_address("fe80::10"), 3, 51, 0)
    assert result[0] == expected


def test_auth_hmac_wrong_source_vrid_and_replays():
    pdu, trailer, src = HMAC_V6_WIRE[:24], HMAC_V6_WIRE[24:], ipaddress.ip_address("fe80::10")
    engine = _hmac_engine()
    assert engine.verify(pdu, trailer, ipaddress.ip_address("fe80::20"), 3, 51, 0)[0] == "auth_ext_invalid_hmac"
    assert engine.verify(pdu, trailer, src, 3, 52, 0)[0] == "auth_ext_invalid_hmac"
    assert engine.verify(pdu, trailer, src, 3, 51, 0)[0] is None
    assert engine.verify(pdu, trailer, src, 3, 51, 0)[0] == "auth_ext_replay"  # the same image twice
    assert _hmac_engine().verify(pdu, trailer, src, 3, 51, 0)[0] is None  # a second peer's fresh state


def test_auth_hmac_sequence_clock_counter_and_clock_step():
    engine = _hmac_engine(anti_replay="time")
    t = 1_700_000_000 * 10**9 + 250_000_000
    first = engine.next_seq(t)
    assert first == (1_700_000_000 << 32) | (0x4000 << 16)  # 0.25 s = 0x4000/65536, counter 0
    assert engine.next_seq(t) == first + 1  # same clock reading: the counter breaks the tie
    assert engine.next_seq(t + 10**9) == first + (1 << 32)
    # the clock stepped back by more than the window: start again from the clock (2.4.3)
    assert engine.next_seq(t - 60 * 10**9) == ((1_700_000_000 - 60) << 32) | (0x4000 << 16)
    mono = _hmac_engine(anti_replay="monotonic")
    mono.next_seq(t)
    assert mono.next_seq(t - 60 * 10**9) == ((1_700_000_000 << 32) | (0x4000 << 16)) + 1
    assert vrrpd._serial_after(0, 0xFFFFFFFFFFFFFFFF) and not vrrpd._serial_after(5, 5)


def test_auth_hmac_time_window_stale_skew_and_lru_of_multicast_senders():
    sender = _hmac_engine(anti_replay="time")
    receiver = _hmac_engine(anti_replay="time")
    src = ipaddress.ip_address("10.0.0.2")
    pdu = HMAC_V4_WIRE[:12]
    t = 1_700_000_000 * 10**9
    old = sender.sign(pdu, src, 3, 51, t - 6 * 10**9)
    reason, text = receiver.verify(pdu, old, src, 3, 51, t)
    assert reason == "auth_ext_stale" and "clock skew 6 sec exceeds window 5 sec" in text
    skewed = sender.sign(pdu, src, 3, 51, t - 3 * 10**9)
    reason, text = receiver.verify(pdu, skewed, src, 3, 51, t)
    assert reason is None and "approaching window 5 sec" in text
    # four multicast senders are remembered; a fifth evicts the oldest, whose replay is then accepted
    signed = {}
    for n in range(1, 6):
        peer = ipaddress.ip_address(f"10.0.0.{10 + n}")
        signed[peer] = _hmac_engine(anti_replay="time").sign(pdu, peer, 3, 51, t)
        assert receiver.verify(pdu, signed[peer], peer, 3, 51, t)[0] is None
    first, last = ipaddress.ip_address("10.0.0.11"), ipaddress.ip_address("10.0.0.15")
    assert receiver.verify(pdu, signed[last], last, 3, 51, t)[0] == "auth_ext_replay"
    assert receiver.verify(pdu, signed[first], first, 3, 51, t)[0] is None
    # a mark older than the window says nothing any more (2.4.3): a restarted sender is accepted
    restarted = _hmac_engine(anti_replay="time")
    assert receiver.verify(pdu, restarted.sign(pdu, last, 3, 51, t), last, 3, 51, t + 7 * 10**9)[0] == \
        "auth_ext_stale"


def test_auth_hmac_config_keys_modes_and_validation(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text("hex:" + "ab" * 40 + "\n")
    keyfile.chmod(0o600)
    text = inst(BASE + f"""
    auth_hmac {{
        key 1 hex:{HMAC_KEY.hex()}
        key 2 file:{keyfile}
        key 3 0123456789abcdef0123456789abcdef
        active_key 2
        anti_replay monotonic
        time_window 9
        mode permissive
    }}""")
    cfg, diags = vrrpd.parse_config_text(text)
    assert not [d for d in diags if d.severity == vrrpd.Severity.ERROR], diags
    ah = cfg.vrrp_instances[0].auth_hmac
    assert ah.keys == {1: HMAC_KEY, 2: b"\xab" * 40, 3: b"0123456789abcdef0123456789abcdef"}
    assert (ah.active_key, ah.anti_replay, ah.time_window, ah.mode) == (2, "monotonic", 9, "permissive")
    keyfile.chmod(0o644)
    bad = inst(BASE + f"""
    authentication {{
        auth_type PASS
        auth_pass secret
    }}
    auth_hmac {{
        key 1 short
        key 2 file:{keyfile}
        key 4 hex:{HMAC_KEY.hex()}
        key 4 hex:{HMAC_KEY.hex()}
        mode strict
        active_key 4
    }}""")
    cfg, diags = vrrpd.parse_config_text(bad)
    text = "\n".join(str(d) for d in diags)
    assert "auth_hmac key 1 length 5 not in range [32, 64]" in text
    assert "accessible by group or others" in text and "duplicate key id 4" in text
    assert "'strict' is not enforce or permissive or receive-only" in text
    assert "auth_hmac cannot be combined with authentication, dropping legacy auth" in text
    assert cfg.vrrp_instances[0].auth_type == vrrpd.AuthType.NONE
    cfg, diags = vrrpd.parse_config_text(inst(BASE + f"\nauth_hmac {{\n    key 1 hex:{HMAC_KEY.hex()}\n}}"))
    assert "active_key 0 is not defined, disabling extension" in "\n".join(str(d) for d in diags)
    assert cfg.vrrp_instances[0].auth_hmac is None
    cfg, diags = vrrpd.parse_config_text(inst(BASE + f"\nstrict_mode\nauth_hmac {{\n    key 1 hex:{HMAC_KEY.hex()}"
                                              "\n    active_key 1\n    mode receive-only\n}"))
    assert cfg.vrrp_instances[0].auth_hmac.mode == "enforce"


def _hmac_daemon(version=3, mode="enforce", unicast=False, state_master=True):
    """A started fuzz-style Daemon whose instance signs and checks auth_hmac trailers; sends are captured."""
    hmac = vrrpd.AuthHmacConfig(keys={1: HMAC_KEY, 2: bytes(range(1, 33))}, active_key=1, mode=mode)
    peers = [vrrpd.UnicastPeer(IP4("10.0.0.2"))] if unicast else []
    d, rt, kernel = _fuzz_daemon(version, auth="NONE", auth_hmac=hmac, unicast_peer=peers)
    if state_master:
        _become_master(d, rt)
    return d, rt, kernel, _SentPackets(kernel)


class _SentPackets:
    """The packets the fake kernel's eth0 VRRP socket sent, as a list of bytes."""

    def __init__(self, kernel):
        self.kernel = kernel

    def _all(self):
        return [packet for _src, _dst, packet in self.kernel.sent(4)]

    def __getitem__(self, item):
        return self._all()[item]

    def __len__(self):
        return len(self._all())

    def __iter__(self):
        return iter(self._all())


def _peer_advert(version, priority, engine, dst=IP4("224.0.0.18"), src=IP4("10.0.0.2"), now_ns=None):
    adv = vrrpd.VrrpAdvert(version, 51, priority, [IP4("10.0.0.100")], 1.0)
    pdu = vrrpd.encode_advert(adv, src, dst)
    trailer = engine.sign(pdu, src, version, 51, now_ns or time.time_ns()) if engine is not None else b""
    return vrrpd.encode_ipv4(src, dst, pdu + trailer)


@pytest.mark.parametrize("version", [2, 3])
def test_auth_hmac_master_signs_every_advert_with_a_fresh_sequence(version):
    d, rt, kernel, sent = _hmac_daemon(version)
    try:
        assert rt.machine.state == vrrpd.State.MASTER and sent
        d._send_advert(rt, 100)
        d._send_advert(rt, 100)
        checker = _hmac_engine(anti_replay="time")
        seqs = []
        for packet in sent[-2:]:
            ip = vrrpd.decode_ipv4(packet)
            pdu, trailer = vrrpd.auth_hmac_split(ip.payload, 4)
            assert trailer is not None and len(ip.payload) == len(pdu) + 28
            vrrpd.decode_advert(pdu, ip.src, ip.dst)  # the checksum covers the PDU only
            assert checker.verify(pdu, trailer, ip.src, version, 51, time.time_ns())[0] is None
            seqs.append(int.from_bytes(trailer[4:12], "big"))
        assert seqs[1] > seqs[0]
    finally:
        d.loop.close()
    d, rt, kernel, sent = _hmac_daemon(version, mode="receive-only")
    try:
        assert sent and all(len(vrrpd.decode_ipv4(p).payload) == (20 if version == 2 else 12) for p in sent)
    finally:
        d.loop.close()


@pytest.mark.parametrize("version,unicast", [(2, False), (3, False), (3, True)])
def test_auth_hmac_hostile_adverts_are_counted_and_dropped_without_any_state_change(version, unicast):
    d, rt, kernel, sent = _hmac_daemon(version, unicast=unicast)
    dst = IP4("10.0.0.1") if unicast else IP4("224.0.0.18")
    try:
        m = rt.machine
        peer = _hmac_engine(anti_replay="time")
        good = _peer_advert(version, 200, peer, dst)
        retired = vrrpd.AuthHmac({9: bytes(range(2, 34))}, 9, anti_replay="time", time_window=5)
        tampered = bytearray(_peer_advert(version, 200, peer, dst))
        tampered[22] ^= 1  # the priority, after signing
        stale = _peer_advert(version, 200, _hmac_engine(anti_replay="time"), dst, now_ns=time.time_ns() - 60 * 10**9)
        unsigned = _peer_advert(version, 200, None, dst)
        truncated = good[:-1]
        stranger = _peer_advert(version, 200, vrrpd.AuthHmac({1: bytes(32)}, 1), dst, src=IP4("10.0.0.9"))
        kernel.deliver(d, good)  # first accepted: we are MASTER at 100, it is 200 -> BACKUP
        assert m.state == vrrpd.State.BACKUP
        down_timer = m.master_down_timer
        for packet in (good, bytes(tampered), _peer_advert(version, 200, retired, dst), stale, unsigned, truncated,
                       stranger):
            kernel.deliver(d, packet)
        assert (m.state, m.master_down_timer, rt.adverts_received) == (vrrpd.State.BACKUP, down_timer, 1)
        bad = rt.bad_packets
        assert bad.get("auth_ext_replay") == 1, bad
        assert bad.get("auth_ext_unknown_key") == 1 and bad.get("auth_ext_stale") == 1, bad
        assert bad.get("auth_ext_missing") == 2, bad  # unsigned, and truncated (no trailer any more)
        if unicast:
            assert bad.get("unknown_peer") == 1 and bad.get("auth_ext_invalid_hmac") == 1, bad
        else:
            assert bad.get("auth_ext_invalid_hmac") == 2, bad
        # a MASTER attacked the same way keeps its advert timer to the tick
        d2, rt2, kernel2, sent2 = _hmac_daemon(version, unicast=unicast)
        m2 = rt2.machine
        attack = _hmac_engine(anti_replay="time")
        replay = _peer_advert(version, 200, attack, dst)
        before = (m2.state, m2.adver_timer, m2.effective_priority, len(sent2))
        kernel2.deliver(d2, _peer_advert(version, 50, attack, dst))  # genuine lower priority: re-asserts
        sent_after_genuine = len(sent2)
        timer_after_genuine = m2.adver_timer
        for packet in (replay[:-3], bytes(bytearray(replay[:-1]) + b"\0"), _peer_advert(version, 200, retired, dst)):
            kernel2.deliver(d2, packet)
        assert (m2.state, m2.adver_timer, len(sent2)) == (vrrpd.State.MASTER, timer_after_genuine,
                                                          sent_after_genuine), before
        d2.loop.close()
    finally:
        d.loop.close()


def test_auth_hmac_permissive_accepts_unsigned_but_checks_signed():
    d, rt, kernel, sent = _hmac_daemon(3, mode="permissive", state_master=False)
    try:
        kernel.deliver(d, _peer_advert(3, 200, None))
        assert rt.adverts_received == 1
        tampered = bytearray(_peer_advert(3, 200, _hmac_engine(anti_replay="time")))
        tampered[-1] ^= 1
        kernel.deliver(d, bytes(tampered))
        assert rt.adverts_received == 1 and rt.bad_packets.get("auth_ext_invalid_hmac") == 1
    finally:
        d.loop.close()



# -- BFD control packets and sessions (RFC 5880), sans-IO ----------------------------------------------


def test_bfd_codec_matches_keepalived_and_frr_captures():
    ka_down = bytes.fromhex("2040031832eb450600000000000f4240000493e000000000")
    pkt = vrrpd.decode_bfd(ka_down)
    assert (pkt.state, pkt.detect_mult, pkt.my_disc, pkt.your_disc) == (vrrpd.BfdState.Down, 3, 0x32EB4506, 0)
    assert (pkt.desired_min_tx, pkt.required_min_rx, pkt.required_min_echo_rx) == (1_000_000, 300_000, 0)
    assert vrrpd.encode_bfd(pkt) == ka_down
    ka_poll = bytes.fromhex("20e0031832eb450665523e39000493e0000493e000000000")
    assert vrrpd.decode_bfd(ka_poll).poll and vrrpd.encode_bfd(vrrpd.decode_bfd(ka_poll)) == ka_poll
    frr_final = vrrpd.decode_bfd(bytes.fromhex("20d0031865523e3932eb4506000493e0000493e00000c350"))
    assert frr_final.final and frr_final.state == vrrpd.BfdState.Up and frr_final.required_min_echo_rx == 50_000
    frr_admin = vrrpd.decode_bfd(bytes.fromhex("2000031865523e3932eb4506000493e0000493e00000c350"))
    assert frr_admin.state == vrrpd.BfdState.AdminDown and frr_admin.diag == 0


@pytest.mark.parametrize("mutate,reason", [
    (lambda b: b[:23], "bfd_short"),
    (lambda b: bytes([0x40]) + b[1:], "bfd_version"),
    (lambda b: b[:3] + bytes([30]) + b[4:], "bfd_length"),
    (lambda b: b + b"\0\0", "bfd_length"),
    (lambda b: b[:1] + bytes([b[1] | 0x04]) + b[2:], "bfd_auth"),
    (lambda b: b[:2] + b"\0" + b[3:], "bfd_detect_mult"),
    (lambda b: b[:1] + bytes([b[1] | 0x01]) + b[2:], "bfd_multipoint"),
    (lambda b: b[:4] + bytes(4) + b[8:], "bfd_discriminator"),
    (lambda b: b[:8] + bytes(4) + b[12:], "bfd_discriminator"),  # your 0 while Up
    (lambda b: b[:1] + bytes([b[1] | 0x30]) + b[2:], "bfd_flags"),
    (lambda b: bytes([0x20 | 9]) + b[1:], "bfd_diag"),
])
def test_bfd_decoder_discards_what_rfc5880_6_8_6_discards(mutate, reason):
    up = vrrpd.encode_bfd(vrrpd.BfdPacket(vrrpd.BfdState.Up, 7, 9, 3, 10_000, 10_000))
    with pytest.raises(vrrpd.PacketError) as err:
        vrrpd.decode_bfd(mutate(up))
    assert err.value.reason == reason


def _bfd_pair(a_kw=None, b_kw=None):
    a = vrrpd.BfdSession("A", 10_000, 10_000, multiplier=3, discriminator=1, jitter=lambda: 0.0, **(a_kw or {}))
    b = vrrpd.BfdSession("B", 10_000, 10_000, multiplier=3, discriminator=2, jitter=lambda: 0.0, **(b_kw or {}))
    return a, b


def _run_bfd(sessions, start, end, dead=(), step=0.0005):
    """Deliver every packet instantly between two sessions on a fake clock; returns the state changes."""
    changes = []
    pending = []
    for s in sessions:
        pending += [(s, act) for act in s.start(start)]
    now = start
    while now < end:
        while pending:
            s, act = pending.pop(0)
            if isinstance(act, vrrpd.BfdSend):
                other = sessions[1] if s is sessions[0] else sessions[0]
                if s.name not in dead and other.name not in dead:
                    wire = vrrpd.decode_bfd(vrrpd.encode_bfd(act.packet))
                    pending += [(other, a) for a in other.on_packet(now, wire)]
            else:
                changes.append((now, s.name, act))
        now += step
        for s in sessions:
            if s.name not in dead and s.next_deadline() is not None and s.next_deadline() <= now:
                pending += [(s, a) for a in s.on_timer(now)]
    return changes


def test_bfd_sessions_come_up_through_init_at_the_slow_rate_then_poll_to_the_fast_rate():
    a, b = _bfd_pair()
    first = a.start(0.0)
    assert [type(x) for x in first] == [vrrpd.BfdSend]
    p = first[0].packet
    # RFC 5880 section 6.8.3: while not Up, Desired Min TX is at least 1 s
    assert (p.state, p.desired_min_tx, p.required_min_rx, p.your_disc) == (vrrpd.BfdState.Down, 1_000_000, 10_000, 0)
    assert a.tx_timer == pytest.approx(1.0)
    a, b = _bfd_pair()
    changes = _run_bfd([a, b], 0.0, 3.0)
    assert a.state == b.state == vrrpd.BfdState.Up
    states = [(name, act.new) for _t, name, act in changes]
    assert ("A", vrrpd.BfdState.Up) in states and ("B", vrrpd.BfdState.Init) in states
    assert a.tx_interval == 10_000 and a.detection_time == pytest.approx(0.030)
    assert not a.polling and not b.polling  # the Poll Sequence was answered with Final


def test_bfd_timers_are_negotiated_as_rfc5880_6_8_says():
    a, b = _bfd_pair(a_kw={}, b_kw={})
    b.min_tx, b.required_min_rx, b.detect_mult = 50_000, 300_000, 5
    _run_bfd([a, b], 0.0, 3.0)
    assert a.state == vrrpd.BfdState.Up
    assert a.tx_interval == 300_000  # max(our 10 ms, its Required Min RX 300 ms)
    assert a.detection_time == pytest.approx(5 * 0.050)  # its mult x max(our min_rx 10 ms, its tx 50 ms)
    assert b.tx_interval == 50_000 and b.detection_time == pytest.approx(3 * 0.300)


def test_bfd_jitter_is_75_to_100_percent_and_75_to_90_with_multiplier_1():
    for mult, low, high in ((3, 0.75, 1.0), (1, 0.75, 0.90)):
        seen = []
        for j in (0.0, 0.5, 0.999):
            s = vrrpd.BfdSession("J", 10_000, 10_000, multiplier=mult, jitter=lambda j=j: j)
            s.start(0.0)
            assert low - 1e-9 <= s.tx_timer <= high + 1e-9, (mult, j, s.tx_timer)
            seen.append(s.tx_timer)
        assert max(seen) == pytest.approx(high) and min(seen) == pytest.approx(low, abs=0.001)


def test_bfd_detects_a_dead_peer_within_the_detection_time():
    a, b = _bfd_pair()
    _run_bfd([a, b], 0.0, 3.0)
    assert a.state == vrrpd.BfdState.Up
    changes = _run_bfd([a, b], 3.0, 3.2, dead=("B",))
    down = [(t, act) for t, name, act in changes if name == "A"]
    assert down and down[0][1].new == vrrpd.BfdState.Down and down[0][1].diag == vrrpd.BFD_DIAG_EXPIRED
    assert down[0][0] - 3.0 <= 0.031, down[0][0]
    assert a.remote_disc == 0 and a.tx_interval == 1_000_000  # back to the slow rate, discriminator forgotten


def test_bfd_peer_admin_down_is_down_but_flagged_and_a_peer_down_is_neighbor_signaled():
    a, b = _bfd_pair()
    _run_bfd([a, b], 0.0, 3.0)
    acts = a.on_packet(3.0, vrrpd.BfdPacket(vrrpd.BfdState.AdminDown, 2, 1, 3, 1_000_000, 10_000))
    change = next(x for x in acts if isinstance(x, vrrpd.BfdStateChange))
    assert change.new == vrrpd.BfdState.Down and change.diag == 3 and change.peer_admin_down
    a, b = _bfd_pair()
    _run_bfd([a, b], 0.0, 3.0)
    acts = a.on_packet(3.0, vrrpd.BfdPacket(vrrpd.BfdState.Down, 2, 1, 3, 1_000_000, 10_000))
    change = next(x for x in acts if isinstance(x, vrrpd.BfdStateChange))
    assert change.diag == 3 and not change.peer_admin_down
    # our own AdminDown: diag 7 on the wire, and packets are ignored afterwards
    acts = a.admin_down(3.1)
    assert acts[0].packet.state == vrrpd.BfdState.AdminDown and acts[0].packet.diag == 7
    assert a.on_packet(3.2, vrrpd.BfdPacket(vrrpd.BfdState.Up, 2, 1, 3, 10_000, 10_000)) == []


def test_bfd_passive_waits_for_the_peer_and_a_poll_gets_a_final_at_once():
    s = vrrpd.BfdSession("P", 10_000, 10_000, passive=True, discriminator=5, jitter=lambda: 0.0)
    assert s.start(0.0) == [] and s.next_deadline() is None
    acts = s.on_packet(0.5, vrrpd.BfdPacket(vrrpd.BfdState.Down, 9, 0, 3, 1_000_000, 10_000, flags=vrrpd.BFD_POLL))
    sends = [x.packet for x in acts if isinstance(x, vrrpd.BfdSend)]
    assert sends[0].final and not sends[0].poll and sends[0].your_disc == 9
    assert s.state == vrrpd.BfdState.Init and s.tx_timer is not None
    # the peer asks for nothing: no periodic transmission (section 6.8.7)
    s.on_packet(0.6, vrrpd.BfdPacket(vrrpd.BfdState.Init, 9, 5, 3, 1_000_000, 0))
    assert s.state == vrrpd.BfdState.Up and s.tx_timer is None


def _bfd_driver(instances):
    events = []
    loop = vrrpd.EventLoop()
    driver = vrrpd.BfdDriver(loop, lambda name, up: events.append((name, up)))
    for bfd in instances:
        run = vrrpd._BfdRun(bfd, vrrpd.BfdSession(bfd.name, 10_000, 10_000, multiplier=3, discriminator=77,
                                                  jitter=lambda: 0.0))
        driver.runs[bfd.name] = run
    return loop, driver, events


def test_bfd_flood_of_malformed_and_spoofed_packets_is_counted_and_never_flaps_the_session():
    nbr, me = ipaddress.ip_address("10.0.0.2"), ipaddress.ip_address("10.0.0.1")
    bfd = vrrpd.BfdInstance("B", neighbor_ip=nbr, source_ip=me)
    loop, driver, events = _bfd_driver([bfd])
    try:
        run = driver.runs["B"]
        s = run.session

        def peer(state, your, **kw):
            return vrrpd.encode_bfd(vrrpd.BfdPacket(state, 9, your, 3, 10_000, 10_000, **kw))

        driver.handle(3784, peer(vrrpd.BfdState.Down, 0), nbr, me, 255)
        driver.handle(3784, peer(vrrpd.BfdState.Up, 77), nbr, me, 255)
        assert s.state == vrrpd.BfdState.Up and events == [("B", True)]
        deadline, received = s.detect_timer, s.received
        rng = random.Random(5)
        good_down = peer(vrrpd.BfdState.Down, 77)
        flood = [
            (good_down, nbr, 64),  # wrong TTL (GTSM): a remote attacker
            (good_down, nbr, 254),
            (good_down, ipaddress.ip_address("10.0.0.66"), 255),  # spoofed source, right discriminator
            (peer(vrrpd.BfdState.Down, 12345), nbr, 255),  # wrong discriminator
            (peer(vrrpd.BfdState.Down, 0), ipaddress.ip_address("10.0.0.66"), 255),  # no session
            (good_down[:20], nbr, 255), (good_down + b"xx", nbr, 255),  # bad lengths
            (good_down[:3] + bytes([40]) + good_down[4:], nbr, 255),
        ]
        for _ in range(3000):
            data, src, ttl = rng.choice(flood)
            driver.handle(3784, data, src, me, ttl)
        for _ in range(500):
            driver.handle(3784, bytes(rng.randrange(256) for _ in range(rng.randrange(40))), nbr, me, 255)
        assert s.state == vrrpd.BfdState.Up and events == [("B", True)]
        assert (s.detect_timer, s.received) == (deadline, received)
        assert {"bfd_ttl", "bfd_spoofed", "bfd_no_session", "bfd_short", "bfd_length"} <= set(driver.bad), driver.bad
        assert sum(driver.bad.values()) >= 3000
        # multihop: a TTL down to 255 - max_hops is accepted
        hop = vrrpd.BfdInstance("M", neighbor_ip=nbr, multihop=True, max_hops=10)
        assert hop.out_ttl - hop.max_hops == 245
    finally:
        loop.close()


def test_bfd_config_keywords_defaults_and_validation():
    text = """
bfd_instance B4 {
    neighbour_ip 10.0.0.2
    source_ip 10.0.0.1
    min_rx 3.312
    idle_tx 2000
    multiplier 3
    passive
    max_hops -1
    weight -20 reverse
    checker
}
bfd_instance B6 {
    neighbor_ip fd00::2
    multihop
}
bfd_instance NOADDR {
    min_rx 5
}
bfd_instance BAD {
    neighbor_ip fd00::3
    source_ip 10.0.0.1
    idle_tx 5
}
vrrp_sync_group G {
    group {
        VI_1
    }
    track_bfd {
        B6
    }
    sync_group_tracking_weight
}
""" + inst(BASE + "\ntrack_bfd {\n    B4 weight 10\n    MISSING\n}")
    cfg, diags = vrrpd.parse_config_text(text)
    text = "\n".join(str(d) for d in diags)
    b4, b6 = cfg.bfd_instances["B4"], cfg.bfd_instances["B6"]
    assert (b4.neighbor_ip, b4.min_rx, b4.min_tx, b4.idle_tx, b4.multiplier, b4.passive) == \
        (ipaddress.ip_address("10.0.0.2"), 3.312, 10.0, 2000.0, 3, True)
    assert (b4.max_hops, b4.weight, b4.weight_reverse, b4.to_vrrp, b4.to_checker, b4.out_ttl) == \
        (255, -20, True, False, True, 255)
    assert (b6.multiplier, b6.out_ttl, b6.multihop, b6.to_vrrp, b6.min_rx) == (5, 64, True, True, 10.0)
    assert "bfd_instance NOADDR: no neighbor address set, disabling instance" in text and "NOADDR" not in \
        cfg.bfd_instances
    assert "are not of the same family" in text and "outside range [1000, 4294967] ms" in text
    assert "track_bfd 'MISSING' names no bfd_instance" in text
    assert [r.name for r in cfg.vrrp_instances[0].track_bfd] == ["B4"]
    assert cfg.vrrp_instances[0].track_bfd[0].weight == 10 and cfg.sync_groups[0].track_bfd[0].name == "B6"
    assert "comes before its bfd_instance" not in text
    cfg, diags = vrrpd.parse_config_text(inst(BASE + "\ntrack_bfd {\n    LATE\n}") +
                                         "bfd_instance LATE {\n    neighbor_ip 10.0.0.2\n}\n")
    assert "track_bfd 'LATE' comes before its bfd_instance (line 11); keepalived ignores it" in \
        "\n".join(str(d) for d in diags)
    assert [r.name for r in cfg.vrrp_instances[0].track_bfd] == ["LATE"]


def test_track_bfd_weight_reverse_fault_and_sync_group_through_tracking():
    b = vrrpd.BfdInstance("B", neighbor_ip=ipaddress.ip_address("10.0.0.2"), weight=-30)
    g = vrrpd.BfdInstance("G", neighbor_ip=ipaddress.ip_address("10.0.0.3"))
    vi = vrrpd.VrrpInstance("VI", track_bfd=[vrrpd.TrackRef("B")], sync_group="SG")
    vi2 = vrrpd.VrrpInstance("VI2", track_bfd=[vrrpd.TrackRef("B", weight=15, reverse=True)])
    sg = vrrpd.SyncGroup("SG", group=["VI"], track_bfd=[vrrpd.TrackRef("G")])
    cfg = vrrpd.Config(vrrp_instances=[vi, vi2], bfd_instances={"B": b, "G": g}, sync_groups=[sg])
    loop = vrrpd.EventLoop()
    changes = []
    try:
        tracking = vrrpd.TrackerRunner(loop, cfg, lambda: changes.append(1))
        for bfd in (b, g):
            tracking.bfd.runs[bfd.name] = vrrpd._BfdRun(bfd, vrrpd.BfdSession(bfd.name, 10_000, 10_000))
        tracking._started = True
        # every tracked BFD starts down: -30 from B, and the group's weight-0 G says FAULT
        assert tracking.adjustment(vi) == (-30, True)
        assert tracking.adjustment(vi2) == (0, False)
        for name in ("B", "G"):
            tracking.bfd.runs[name].up = True
            tracking._bfd_event(name, True)
        assert tracking.adjustment(vi) == (0, False) and tracking.adjustment(vi2) == (-15, False)
        assert changes == [1, 1]
        heard = []
        tracking.bfd_listeners.append(lambda name, up: heard.append((name, up)))
        tracking._bfd_event("B", False)
        assert heard == [("B", False)]
    finally:
        loop.close()



# -- keepalived 2.3-2.4 VRRP behaviours (RFC 9568) -----------------------------------------------------


def test_owner_ignore_adverts_only_at_255_default_from_strict_and_forced_as_keepalived_codes_it():
    head = "global_defs {\n    vrrp_owner_ignore_adverts\n}\n"
    cfg, diags = vrrpd.parse_config_text(head + inst(BASE + "\npriority 255") + inst(
        BASE.replace("50", "51") + "\npriority 100\nowner_ignore_adverts", name="VI_2") + inst(
        BASE.replace("50", "52") + "\npriority 255\nowner_ignore_adverts false", name="VI_3"))
    text = "\n".join(str(d) for d in diags)
    vi1, vi2, vi3 = cfg.vrrp_instances
    assert vi1.owner_ignore_adverts is True  # unset at 255: the global value
    assert vi2.owner_ignore_adverts is False and "(VI_2) owner_ignore_adverts requires priority 255" in text
    assert vi3.owner_ignore_adverts is True and "strict_mode with priority 255 requires owner_ignore_adverts" in text
    cfg, _ = vrrpd.parse_config_text(inst(BASE + "\npriority 255"))
    assert cfg.vrrp_instances[0].owner_ignore_adverts is False
    cfg, _ = vrrpd.parse_config_text(inst(BASE + "\npriority 255\nstrict_mode"))
    assert cfg.vrrp_instances[0].owner_ignore_adverts is True
    owner = vrrpd.VrrpMachine("VI", 51, 255, 1.0, 3, primary_ip=IP4("10.0.0.1"), owner_ignore_adverts=True)
    owner.start(0.0)
    adv = vrrpd.VrrpAdvert(3, 51, 255, [], 1.0)
    assert owner.check_advert(adv, IP4("10.0.0.2")) == (
        "owner_ignore", "Dropping packet(s) from 10.0.0.2 since we are address owner")
    assert vrrpd.VrrpMachine("VI", 51, 255, 1.0, 3).check_advert(adv) is None


def _owner(ip, ignore=False):
    m = vrrpd.VrrpMachine("VI", 51, 255, 1.0, 3, primary_ip=IP4(ip), owner_ignore_adverts=ignore)
    m.start(0.0)
    return m


def test_two_address_owners_the_lower_yields_and_a_deaf_one_makes_the_higher_step_to_254():
    low, high = _owner("10.0.0.1"), _owner("10.0.0.2")
    adv = vrrpd.VrrpAdvert(3, 51, 255, [], 1.0)
    acts = low.on_advert(0.1, adv, IP4("10.0.0.2"))
    assert low.state == vrrpd.State.BACKUP
    assert any("CONFIGURATION ERROR: 10.0.0.2 and we are both configured as address owner" in a.message
               for a in acts if isinstance(a, vrrpd.Log))
    high.on_advert(0.1, adv, IP4("10.0.0.1"))  # the first one forces an election; the lower one yields
    assert high.state == vrrpd.State.MASTER and high.effective_priority == 255
    # a lower owner that ignores adverts never yields: after two of its adverts we step down to 254
    high, deaf = _owner("10.0.0.2"), _owner("10.0.0.1", ignore=True)
    assert deaf.check_advert(adv, IP4("10.0.0.2"))[0] == "owner_ignore"
    high.on_advert(1.0, adv, IP4("10.0.0.1"))
    acts = high.on_advert(2.0, adv, IP4("10.0.0.1"))
    assert high.state == vrrpd.State.BACKUP and high.effective_priority == 254
    assert any("10.0.0.1 still advertising as address owner, please resolve - reducing our priority" in a.message
               for a in acts if isinstance(a, vrrpd.Log))
    assert high.set_effective_priority(2.1, 255) == [] and high.effective_priority == 254  # trackers keep 254
    # the rogue goes quiet: our master-down timer fires and we are the owner at 255 again
    high.on_timer(2.0 + high.master_down_interval + 0.01)
    assert high.state == vrrpd.State.MASTER and high.effective_priority == 255


def test_the_transition_table_makes_every_state_change_and_refuses_the_rest():
    import inspect

    S, E = vrrpd.State, vrrpd.Event
    for (state, event), (_target, actions) in vrrpd.TRANSITIONS.items():
        assert callable(getattr(vrrpd.VrrpMachine, actions)), (state, event, actions)
    # nothing but _fire() (and the constructor) assigns the state
    source = inspect.getsource(vrrpd.VrrpMachine)
    assigning = [name for name, fn in inspect.getmembers(vrrpd.VrrpMachine, inspect.isfunction)
                 if re.search(r"self\.state\s*=[^=]|, self\.state\s*=[^=]", inspect.getsource(fn))]
    assert sorted(assigning) == ["__init__", "_fire"], assigning
    assert "TRANSITIONS[" in source
    # a row moves the machine and runs its actions: BACKUP + FAULT -> FAULT, the FAULT entry actions
    m = vrrpd.VrrpMachine("VI", 51, 100, 1.0, 3, primary_ip=IP4("10.0.0.1"))
    m.start(0.0)
    assert vrrpd.TRANSITIONS[S.BACKUP, E.FAULT] == (S.FAULT, "_enter_fault")
    acts = m.set_fault(1.0, True)
    assert m.state == S.FAULT and vrrpd.Notify(S.FAULT, 100) in acts
    # an event with no row in the current state is a bug, not a silent move
    m.shutdown(2.0)
    assert m.state == S.STOP and not [k for k in vrrpd.TRANSITIONS if k[0] == S.STOP]
    with pytest.raises(AssertionError, match="no transition from STOP on SHUTDOWN"):
        m.shutdown(3.0)


def test_timer_expired_backup_leaves_master_quietly_when_the_loop_ran_late():
    m = vrrpd.VrrpMachine("VI", 51, 100, 1.0, 3, primary_ip=IP4("10.0.0.1"), preempt=False,
                          timer_expired_backup=200)
    m.start(-m.master_down_interval)
    m.on_timer(0.0)  # MASTER at 0.0: Adver_Timer due at 1.0
    assert [type(a) for a in m.on_timer(1.05) if isinstance(a, vrrpd.SendAdvert)] == [vrrpd.SendAdvert]
    # due at 2.05 (an interval after the advert sent late); the loop wakes at 5.5 > last advert (1.05) + 3 x 1 +
    # skew(200) = 4.27
    acts = m.on_timer(5.5)
    assert m.state == vrrpd.State.BACKUP
    assert not [a for a in acts if isinstance(a, vrrpd.SendAdvert)]  # no priority 0
    assert any("VRRP thread timer expired 1.2 seconds ago" in a.message for a in acts if isinstance(a, vrrpd.Log))
    cfg, diags = vrrpd.parse_config_text(inst(BASE + "\ntimer_expired_backup"))
    assert cfg.vrrp_instances[0].timer_expired_backup is None
    assert "expired_timer_backup requires nopreempt" in "\n".join(str(d) for d in diags)
    cfg, _ = vrrpd.parse_config_text(inst(BASE + "\nnopreempt\nthread_timer_expired 200"))
    assert cfg.vrrp_instances[0].timer_expired_backup == 200
    cfg, _ = vrrpd.parse_config_text(inst(BASE + "\nnopreempt\ntimer_expired_backup"))
    assert cfg.vrrp_instances[0].timer_expired_backup == 254


def test_vrrp_delay_after_boot_counts_from_boot_and_takes_the_longer_delay():
    g = vrrpd.GlobalDefs(vrrp_delay_after_boot=120.0)
    assert vrrpd.startup_delay(g, uptime=100.0) == pytest.approx(20.0)
    assert vrrpd.startup_delay(g, uptime=500.0) == 0.0
    g.vrrp_startup_delay = 30.0
    assert vrrpd.startup_delay(g, uptime=100.0) == 30.0
    assert vrrpd.startup_delay(vrrpd.GlobalDefs(vrrp_delay_after_boot=1e6)) > 1e5  # /proc/uptime is read
    cfg, diags = vrrpd.parse_config_text("global_defs {\n    vrrp_delay_after_boot 90.5\n}\n")
    assert cfg.global_defs.vrrp_delay_after_boot == 90.5 and not diags


def test_startup_delay_holds_machines_in_init_until_it_is_over(offline):
    d, _kernel = offline(instance_text(global_extra="    vrrp_startup_delay 5\n"))
    rt = d.runtimes[0]
    assert d.startup_pending and rt.machine.state == vrrpd.State.INIT
    d._reevaluate()  # trackers and links changing meanwhile do not start it
    d.loop.advance(4.9)
    assert rt.machine.state == vrrpd.State.INIT
    d.loop.advance(0.2)  # the delay is over
    assert rt.machine.state != vrrpd.State.INIT and not d.startup_pending


def test_repeated_advert_bytes_are_checked_again_after_a_reload_changes_the_password(offline):
    """A steady master's adverts are the same bytes each time, so the verdict on the last accepted one is kept;
    a reload that changes what the checks want (here the password) forgets it."""
    auth = "    authentication {\n        auth_type PASS\n        auth_pass %s\n    }\n"
    d, kernel = offline(instance_text(version=2, extra=auth % "secret1"))
    rt = d.runtimes[0]
    src, group = IP4("10.0.0.2"), IP4("224.0.0.18")
    advert = vrrpd.encode_ipv4(src, group, vrrpd.encode_advert(
        vrrpd.VrrpAdvert(2, 51, 200, [IP4("10.0.0.100")], 1.0, vrrpd.AuthType.PASS.value, b"secret1")))
    for _ in range(3):
        kernel.deliver(d, advert)
    assert rt.adverts_received == 3 and not rt.bad_packets
    changed, _diags = vrrpd.parse_config_text(instance_text(version=2, extra=auth % "secret2"))
    assert d.reload(changed)
    rt = d.runtimes[0]
    kernel.deliver(d, advert)
    assert rt.adverts_received == 3 and rt.bad_packets == {"auth_failure": 1}


def test_rfc9568_rate_limited_logging_once_per_class_until_master_changes(caplog):
    d, rt, kernel = _fuzz_daemon(3)
    try:
        src, group = IP4("10.0.0.2"), IP4("224.0.0.18")
        bad_ttl = vrrpd.encode_ipv4(src, group, vrrpd.encode_advert(
            vrrpd.VrrpAdvert(3, 51, 200, [IP4("10.0.0.100")], 1.0), src, group), ttl=64)
        with caplog.at_level(logging.WARNING, logger="vrrpd"):
            for _ in range(50):
                kernel.deliver(d, bad_ttl)
            assert rt.bad_packets["bad_ttl"] == 50
            assert caplog.text.count("invalid TTL/HL") == 1
            # a spoofed source does not re-open the log: only an accepted advert of a new master does
            good = vrrpd.encode_ipv4(src, group, vrrpd.encode_advert(
                vrrpd.VrrpAdvert(3, 51, 200, [IP4("10.0.0.100")], 1.0), src, group))
            kernel.deliver(d, good)
            kernel.deliver(d, bad_ttl)
            assert caplog.text.count("invalid TTL/HL") == 2
            kernel.deliver(d, good)  # the same master again: still suppressed
            kernel.deliver(d, bad_ttl)
            assert caplog.text.count("invalid TTL/HL") == 2
            d._apply(rt, rt.machine.force_state(d.loop.time(), vrrpd.State.MASTER))  # becoming MASTER
            kernel.deliver(d, bad_ttl)
            assert caplog.text.count("invalid TTL/HL") == 3
    finally:
        d.loop.close()


def test_duplicate_vips_evips_and_unicast_peers_are_dropped_with_a_warning():
    text = inst("interface lo\nvirtual_router_id 50\nvirtual_ipaddress {\n    10.0.0.1\n    10.0.0.1/24\n"
                "    10.0.0.2\n}\nvirtual_ipaddress_excluded {\n    10.0.0.2\n    10.0.0.3\n}\n"
                "unicast_peer {\n    10.0.0.8\n    10.0.0.9\n    10.0.0.8\n}")
    cfg, diags = vrrpd.parse_config_text(text)
    vi = cfg.vrrp_instances[0]
    text = "\n".join(str(d) for d in diags)
    assert [str(v.address.ip) for v in vi.virtual_ipaddress] == ["10.0.0.1", "10.0.0.2"]
    assert [str(v.address.ip) for v in vi.virtual_ipaddress_excluded] == ["10.0.0.3"]
    assert text.count("VIP duplicates a VIP") == 2 and "(VI_1): VIP duplicates a VIP 10.0.0.1 - ignoring" in text
    assert [str(p.address) for p in vi.unicast_peer] == ["10.0.0.8", "10.0.0.9"]
    assert "unicast_peer 10.0.0.8 given twice - ignoring" in text


def test_tentative_ipv6_addresses_are_not_there_until_dad_completes(offline):
    d, kernel = offline(vrrpd.Config())
    addr = ipaddress.ip_interface("2001:db8::5/64")
    before = list(d.addrs)

    def event(flags):
        kernel.monitor_.events.append((vrrpd.RTM_NEWADDR, vrrpd.AddrInfo(2, addr, 0, "", flags)))
        d._on_netlink()
        return [a for a in d.addrs if a not in before]

    assert event(vrrpd.IFA_F_TENTATIVE) == []
    assert [a.address for a in event(0)] == [addr]
    assert event(vrrpd.IFA_F_DADFAILED) == []



# ============================================================================================
# D. VRRP in the namespace lab, and interop with keepalived
# ============================================================================================


LAB_NET = "10.55.0"
VIP = f"{LAB_NET}.100"


def _conf(name="VI_1", vrid=51, priority=100, state="BACKUP", version=3, advert=0.1, vips=(f"{VIP}/24",),
          instance_extra="", global_extra="", auth=None, interface="eth0"):
    """A keepalived-style configuration, written the way the seeds write them."""
    auth_block = f"    authentication {{\n        auth_type PASS\n        auth_pass {auth}\n    }}\n" if auth else ""
    vip_lines = "".join(f"        {v}\n" for v in vips)
    return (f"global_defs {{\n    router_id {name}-{priority}\n    vrrp_version {version}\n{global_extra}}}\n"
            f"vrrp_instance {name} {{\n    state {state}\n    interface {interface}\n"
            f"    virtual_router_id {vrid}\n    priority {priority}\n    advert_int {advert}\n"
            f"{auth_block}    virtual_ipaddress {{\n{vip_lines}    }}\n{instance_extra}}}\n")


def _holders(lab, nodes, vip=VIP, ifname="eth0"):
    return [n.name for n in nodes if lab.has_address(n.ns, vip, ifname)]


def _wait_holders(lab, nodes, expected, timeout, vip=VIP):
    return wait_for(lambda: _holders(lab, nodes, vip) == expected, timeout, 0.01,
                    what=f"{vip} on exactly {expected} (now {_holders(lab, nodes, vip)})")


def _steady_single_master(lab, nodes, seconds, vip=VIP):
    """Sample the VIP holders for a while: exactly one holder every time."""
    seen = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        holders = _holders(lab, nodes, vip)
        assert len(holders) == 1, f"VIP holders {holders}"
        seen.add(holders[0])
        time.sleep(0.05)
    return seen


def _pair(lab, tmp_path, conf_a, conf_b, addr_a=f"{LAB_NET}.1/24", addr_b=f"{LAB_NET}.2/24"):
    ns_a = lab.host("a", addr_a)
    ns_b = lab.host("b", addr_b)
    return _Node(lab, ns_a, tmp_path, "A", conf_a), _Node(lab, ns_b, tmp_path, "B", conf_b)


def _ping_stats(output):
    import re

    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


def test_seed000_pair_vip_on_master_only_and_hard_failover_within_master_down_interval(lab, tmp_path):
    # seed 000: PASS auth, a VIP with `dev ... label ...:0`, VRRPv2 at 1 s (the seed's timing is the point)
    vip_line = (f"{VIP} dev eth0 label eth0:0",)
    a, b = _pair(lab, tmp_path,
                 _conf(priority=150, state="MASTER", version=2, advert=1, vips=vip_line, auth="yinzhengjie"),
                 _conf(priority=100, state="BACKUP", version=2, advert=1, vips=vip_line, auth="yinzhengjie"))
    client = lab.host("c", f"{LAB_NET}.10/24")
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    assert "eth0:0" in lab.ip("-o", "addr", "show", "dev", "eth0", ns=a.ns).stdout
    _steady_single_master(lab, [a, b], 1.0)
    ping = lab.exec(client, ["ping", "-n", "-q", "-i", "0.02", "-w", "7", VIP], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    a.kill()
    t_kill = time.monotonic()
    lab.link(a.ns, "eth0", up=False)
    mdi = 3 * 1 + (256 - 100) / 256
    wait_for(lambda: lab.has_address(b.ns, VIP), mdi + 1.0, 0.01, what="VIP on the backup")
    took = time.monotonic() - t_kill
    # the last advert was at most one interval before the kill
    assert mdi - 1.0 - 0.05 <= took <= mdi + 0.5, took  # + the polling `ip` on a loaded machine
    assert "(VI_1) Entering MASTER STATE" in b.log()
    sent, received = _ping_stats(ping.communicate(timeout=15)[0])
    assert (sent - received) * 0.02 <= mdi + 0.5, (sent, received)


def test_graceful_stop_backup_takes_over_in_skew_time(lab, tmp_path):
    a, b = _pair(lab, tmp_path, _conf(priority=150, state="MASTER", version=2, advert=1),
                 _conf(priority=100, version=2, advert=1))
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    time.sleep(0.5)
    t0 = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=1.0) == 0
    assert time.monotonic() - t0 < 1.0
    assert not lab.has_address(a.ns, VIP)
    _wait_holders(lab, [a, b], ["B"], timeout=2.0)
    took = time.monotonic() - t0
    skew = (256 - 100) / 256
    assert took <= skew + 0.3, took
    assert "(VI_1) sent 0 priority" in a.log() and "(VI_1) removing VIPs." in a.log()


def test_handover_on_stop_client_loses_at_most_one_ping(lab, tmp_path):
    glob = "    vrrp_handover_on_stop\n"
    a, b = _pair(lab, tmp_path, _conf(priority=150, state="MASTER", global_extra=glob),
                 _conf(priority=100, global_extra=glob))
    client = lab.host("c", f"{LAB_NET}.10/24")
    _wait_holders(lab, [a, b], ["A"], timeout=5)
    ping = lab.exec(client, ["ping", "-n", "-q", "-i", "0.01", "-w", "3", VIP], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    t0 = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    _wait_holders(lab, [a, b], ["B"], timeout=3)
    assert a.proc.wait(timeout=2) == 0
    assert time.monotonic() - t0 < 1.0
    sent, received = _ping_stats(ping.communicate(timeout=10)[0])
    assert sent > 100 and sent - received <= 1, (sent, received)


def test_preempt_back_when_higher_priority_node_returns(lab, tmp_path):
    a, b = _pair(lab, tmp_path, _conf(priority=150, state="MASTER"), _conf(priority=100))
    _wait_holders(lab, [a, b], ["A"], timeout=5)
    a.stop()
    _wait_holders(lab, [a, b], ["B"], timeout=2)
    a.start()
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    assert "(VI_1) Master received advert from 10.55.0.1 with higher priority 150, ours 100" in b.log()


def test_nopreempt_keeps_current_master(lab, tmp_path):
    ns_a, ns_b = lab.host("a", f"{LAB_NET}.1/24"), lab.host("b", f"{LAB_NET}.2/24")
    b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=100))
    a_conf = _conf(priority=150, instance_extra="    nopreempt\n")
    _wait_holders(lab, [b], ["B"], timeout=3)
    a = _Node(lab, ns_a, tmp_path, "A", a_conf)
    assert _steady_single_master(lab, [a, b], 2.0) == {"B"}
    # without nopreempt the same node takes over
    a.stop()
    a.conf.write_text(_conf(priority=150))
    a.start()
    _wait_holders(lab, [a, b], ["A"], timeout=6)


def test_lab_preempt_delay_waits_before_preempting(lab, tmp_path):
    ns_a, ns_b = lab.host("a", f"{LAB_NET}.1/24"), lab.host("b", f"{LAB_NET}.2/24")
    b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=100))
    _wait_holders(lab, [b], ["B"], timeout=3)
    a = _Node(lab, ns_a, tmp_path, "A", _conf(priority=150, instance_extra="    preempt_delay 1.5\n"))
    t0 = time.monotonic()
    assert _steady_single_master(lab, [a, b], 1.2) == {"B"}
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    assert time.monotonic() - t0 >= 1.5


def test_unicast_mode_seed003(lab, tmp_path):
    def conf(prio, me, peer):
        return _conf(priority=prio, version=2, advert=1,
                     instance_extra=f"    unicast_src_ip {me}\n    unicast_peer {{\n        {peer}\n    }}\n")
    a, b = _pair(lab, tmp_path, conf(150, f"{LAB_NET}.1", f"{LAB_NET}.2"), conf(100, f"{LAB_NET}.2", f"{LAB_NET}.1"))
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    # the adverts are unicast: nobody joined 224.0.0.18
    assert "224.0.0.18" not in lab.ip("maddr", "show", "dev", "eth0", ns=b.ns).stdout
    a.stop()
    _wait_holders(lab, [a, b], ["B"], timeout=2)
    a.start()
    _wait_holders(lab, [a, b], ["A"], timeout=6)


def test_custom_multicast_group_seed001(lab, tmp_path):
    glob = "    vrrp_mcast_group4 224.0.101.11\n"
    a, b = _pair(lab, tmp_path, _conf(priority=150, global_extra=glob), _conf(priority=100, global_extra=glob))
    _wait_holders(lab, [a, b], ["A"], timeout=5)
    wait_for(lambda: "224.0.101.11" in lab.ip("maddr", "show", "dev", "eth0", ns=b.ns).stdout, 5,
             what="node B joined 224.0.101.11")
    _steady_single_master(lab, [a, b], 0.5)
    a.kill()
    wait_for(lambda: lab.has_address(b.ns, VIP), 2, what="VIP on B")


def test_master_master_two_instances_seed002(lab, tmp_path):
    vip2 = f"{LAB_NET}.200"

    def conf(p1, p2):
        one = _conf("VI_1", 51, p1)
        two = _conf("VI_2", 52, p2, vips=(f"{vip2}/24",))
        return one + two[two.index("vrrp_instance"):]
    a, b = _pair(lab, tmp_path, conf(150, 100), conf(100, 150))
    _wait_holders(lab, [a, b], ["A"], timeout=5)
    _wait_holders(lab, [a, b], ["B"], timeout=5, vip=vip2)
    a.stop()
    _wait_holders(lab, [a, b], ["B"], timeout=2)
    assert _holders(lab, [a, b], vip2) == ["B"]


def test_three_nodes_highest_priority_wins(lab, tmp_path):
    nss = [lab.host(x, f"{LAB_NET}.{i}/24") for i, x in ((1, "a"), (2, "b"), (3, "c"))]
    nodes = [_Node(lab, ns, tmp_path, n, _conf(priority=p)) for ns, n, p in zip(nss, "ABC", (100, 200, 150))]
    _wait_holders(lab, nodes, ["B"], timeout=5)
    assert _steady_single_master(lab, nodes, 1.0) == {"B"}
    nodes[1].stop()
    _wait_holders(lab, nodes, ["C"], timeout=2)


def test_three_nodes_equal_priority_split_brain_heals_to_highest_ip(lab, tmp_path):
    nss = [lab.host(x, f"{LAB_NET}.{i}/24") for i, x in ((1, "a"), (2, "b"), (3, "c"))]
    ports = ["p1", "p2", "p3"]
    for port in ports:  # cut the segment but keep the carrier: every node elects itself
        lab.ip("link", "set", port, "nomaster", ns=lab.bridge_ns)
    nodes = [_Node(lab, ns, tmp_path, n, _conf(priority=100)) for ns, n in zip(nss, "ABC")]
    _wait_holders(lab, nodes, ["A", "B", "C"], timeout=5)
    for port in ports:
        lab.ip("link", "set", port, "master", "br0", ns=lab.bridge_ns)
    _wait_holders(lab, nodes, ["C"], timeout=3)
    assert _steady_single_master(lab, nodes, 1.0) == {"C"}
    assert "(VI_1) Master received advert from 10.55.0.3 with higher priority 100, ours 100" in nodes[1].log()


def _pair_tracking_eth1(lab, tmp_path, track_entry):
    """Node A (priority 150) with a second link eth1 named in its track_interface, and node B (100)."""
    ns_a = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", ns=ns_a)
    lab.ip("link", "set", "eth1p", "up", ns=ns_a)
    lab.ip("link", "set", "eth1", "up", ns=ns_a)
    ns_b = lab.host("b", f"{LAB_NET}.2/24")
    extra = f"    track_interface {{\n        {track_entry}\n    }}\n"
    a = _Node(lab, ns_a, tmp_path, "A", _conf(priority=150, instance_extra=extra))
    b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=100))
    return ns_a, a, b


def test_track_interface_and_own_interface_down_enter_fault(lab, tmp_path):
    ns_a, a, b = _pair_tracking_eth1(lab, tmp_path, "eth1")
    _wait_holders(lab, [a, b], ["A"], timeout=5)
    lab.link(ns_a, "eth1", up=False)
    _wait_holders(lab, [a, b], ["B"], timeout=2)
    wait_for(lambda: "(VI_1) Entering FAULT STATE" in a.log(), 2, what="FAULT logged")
    lab.link(ns_a, "eth1", up=True)
    _wait_holders(lab, [a, b], ["A"], timeout=3)
    lab.link(ns_a, "eth0", up=False)
    wait_for(lambda: a.log().count("(VI_1) Entering FAULT STATE") == 2, 2, what="second FAULT")
    assert not lab.has_address(ns_a, VIP)
    _wait_holders(lab, [a, b], ["B"], timeout=2)
    lab.link(ns_a, "eth0", up=True)
    _wait_holders(lab, [a, b], ["A"], timeout=3)
    # dont_track_primary: the same link loss is no FAULT
    a.stop()
    a.conf.write_text(_conf(priority=150, instance_extra="    dont_track_primary\n"))
    a.start()
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    lab.link(ns_a, "eth0", up=False)
    time.sleep(0.5)
    assert a.log().count("Entering FAULT STATE") == 2 and lab.has_address(ns_a, VIP)
    lab.link(ns_a, "eth0", up=True)


def test_garp_bursts_follow_garp_master_delay_repeat_and_refresh_and_excluded_vips_are_not_advertised(lab, tmp_path):
    ns_a = lab.host("a", f"{LAB_NET}.1/24")
    watcher = lab.host("w", f"{LAB_NET}.20/24")
    excluded = f"{LAB_NET}.150"
    extra = (f"    garp_master_delay 1\n    garp_master_repeat 3\n"
             f"    virtual_ipaddress_excluded {{\n        {excluded}/24\n    }}\n")
    cap_file = tmp_path / "cap.txt"
    cap = lab.exec(watcher, ["tcpdump", "-i", "eth0", "-n", "-l", "-tt", "-vv", "arp or vrrp"],
                   stdout=open(cap_file, "w"), stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    a = _Node(lab, ns_a, tmp_path, "A", _conf(priority=150, instance_extra=extra,
                                                   global_extra="    vrrp_garp_master_refresh 0.7\n"))
    _wait_holders(lab, [a], ["A"], timeout=3)
    assert lab.has_address(ns_a, excluded)
    time.sleep(2.2)
    cap.terminate()
    cap.wait(timeout=5)
    lines = cap_file.read_text().splitlines()
    garps = [float(line.split()[0]) for line in lines if f"who-has {VIP} tell {VIP}" in line]
    t0 = garps[0]
    first = [t for t in garps if t - t0 < 0.3]
    second = [t for t in garps if 0.9 <= t - t0 < 1.3]
    refresh = [t for t in garps if 0.5 <= t - t0 < 0.9]
    assert len(first) == 3 and len(second) >= 3 and len(refresh) == 1, [round(t - t0, 2) for t in garps]
    adverts = [line for line in lines if "VRRP" in line or "addrs" in line]
    assert adverts and any(VIP in line for line in adverts)
    assert not any(excluded in line for line in adverts)
    assert any(f"who-has {excluded} tell {excluded}" in line for line in lines)


def test_track_interface_weight_lowers_priority_and_backup_preempts(lab, tmp_path):
    ns_a, a, b = _pair_tracking_eth1(lab, tmp_path, "eth1 weight -60")
    _wait_holders(lab, [a, b], ["A"], timeout=5)
    lab.link(ns_a, "eth1", up=False)
    _wait_holders(lab, [a, b], ["B"], timeout=5)  # a loaded CI machine once took more than 3 s
    assert "(VI_1) Changing effective priority from 150 to 90" in a.log() and "FAULT" not in a.log()
    lab.link(ns_a, "eth1", up=True)
    _wait_holders(lab, [a, b], ["A"], timeout=3)


@pytest.mark.parametrize("family", [4, 6])
def test_vip_deleted_behind_our_back_is_put_back(lab, tmp_path, family):
    """Either family: rtnetlink tells the MASTER at once (no polling), and the VIP is back well within a second."""
    vip, prefix = (VIP, 24) if family == 4 else ("2001:db8:55::100", 64)
    ns_a = lab.host("a", f"{LAB_NET}.1/24")
    a = _Node(lab, ns_a, tmp_path, "A", _conf(priority=150, vips=(f"{vip}/{prefix}",)))
    wait_for(lambda: lab.has_address(ns_a, vip), 5, 0.01, what="VIP on the MASTER")
    t0 = time.monotonic()
    lab.ip("addr", "del", f"{vip}/{prefix}", "dev", "eth0", ns=ns_a)
    wait_for(lambda: lab.has_address(ns_a, vip), 1, 0.005, what="VIP re-added")
    assert time.monotonic() - t0 < 1.0
    assert f"VIP {vip}/{prefix} was deleted from eth0 behind our back" in a.log()


def test_reload_keeps_master_and_vips_and_applies_the_difference(lab, tmp_path):
    a, b = _pair(lab, tmp_path, _conf(priority=150), _conf(priority=100))
    client = lab.host("c", f"{LAB_NET}.10/24")
    _wait_holders(lab, [a, b], ["A"], timeout=5)
    vip2 = f"{LAB_NET}.200"
    second = _conf("VI_2", 52, 120, vips=(f"{vip2}/24",))
    ping = lab.exec(client, ["ping", "-n", "-q", "-i", "0.01", "-w", "3", VIP], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    a.conf.write_text(_conf(priority=140) + second[second.index("vrrp_instance"):])
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reload complete" in a.log(), 3, what="reload")
    wait_for(lambda: lab.has_address(a.ns, vip2), 3, what="the new instance's VIP")
    sent, received = _ping_stats(ping.communicate(timeout=10)[0])
    assert sent > 100 and sent == received, (sent, received)
    assert a.log().count("Entering MASTER STATE") == 2 and "Entering BACKUP STATE\n" not in a.log()
    assert _holders(lab, [a, b]) == ["A"]
    # a broken file is refused and the running configuration stays
    a.conf.write_text("vrrp_instance VI_1 {\n    priority 999\n}\n")
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reload aborted" in a.log(), 3, what="reload refused")
    assert a.proc.poll() is None and _holders(lab, [a, b]) == ["A"] and lab.has_address(a.ns, vip2)
    # dropping an instance removes its VIPs
    a.conf.write_text(_conf(priority=140))
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: not lab.has_address(a.ns, vip2), 3, what="VI_2 removed")
    assert _holders(lab, [a, b]) == ["A"]


def _demo_table(out: str) -> dict:
    """The demo's side-by-side table as {row label: [keepalived-style stop, vrrp_handover_on_stop]}."""
    head = next(i for i, line in enumerate(out.splitlines()) if "keepalived-style stop" in line
                and "vrrp_handover_on_stop" in line and not line.startswith("==>"))
    rows = {}
    for line in out.splitlines()[head + 1:head + 6]:
        label, a, b = re.match(r"  (\S.*?)\s{2,}(\S+(?: s)?)\s{2,}(\S+(?: s)?)$", line).groups()
        rows[label] = [float(v.split()[0]) if v != "never" else None for v in (a, b)]
    return rows


def test_demo_needs_only_python3_and_iproute2_and_shows_both_stops_loss(tmp_path):
    """`sudo make demo` with nothing but python3 and ip in PATH (no ping): the client's own probe shows the
    keepalived-style stop losing replies and vrrp_handover_on_stop losing (next to) none; no namespace stays."""
    require_root_netns()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ip").symlink_to(shutil.which("ip"))
    assert shutil.which("ping", path=str(bin_dir)) is None
    before = set(sh(["ip", "netns", "list"]).stdout.split())
    result = sh([PYTHON, VRRPD, "--demo"], timeout=90, env={**os.environ, "PATH": str(bin_dir)})
    out = result.stdout
    assert result.returncode == 0 and "ping" not in result.stderr, (out, result.stderr)
    rows = _demo_table(out)
    sent, received, lost = rows["echo requests sent"], rows["replies received"], rows["lost"]
    gap, moved = rows["longest gap without reply"], rows["VIP on B alone after"]
    for i in (0, 1):  # 10 ms probes for 0.5 s before the stop and 0.5 s after the VIP moved
        assert sent[i] > 80 and received[i] + lost[i] == sent[i] and moved[i] is not None and moved[i] < 5, rows
        assert 0.005 < gap[i] < 5 and gap[i] >= lost[i] * 0.01 * 0.5, rows
    keepalived_style, handover = lost
    # priority 0 and the VIP dropped at once: the client waits for B's takeover (skew time, ~61 ms)
    assert keepalived_style >= 2 and gap[0] > 0.03, rows
    assert handover <= 2 and handover < keepalived_style and gap[1] < gap[0], rows
    assert out.count("node A exited with status 0") == 2
    logs = out.split("logs are in ", 1)[1].split(";")[0]
    assert "vrrp_handover_on_stop" in Path(logs, "stop2-A.conf").read_text()
    assert "vrrp_handover_on_stop" not in Path(logs, "stop1-A.conf").read_text()
    shutil.rmtree(logs, ignore_errors=True)
    after = set(sh(["ip", "netns", "list"]).stdout.split())
    assert not {n for n in after - before if n.startswith("vd")}


def test_readme_shows_the_demos_table_as_the_demo_prints_it():
    rows = _demo_table("\n".join(line[4:] for line in (HERE / "README.md").read_text().splitlines()))
    assert list(rows) == ["echo requests sent", "replies received", "lost", "longest gap without reply",
                          "VIP on B alone after"]
    assert rows["replies received"][1] == rows["echo requests sent"][1] and rows["lost"][1] < rows["lost"][0]


def test_demo_says_what_is_missing_and_builds_nothing(tmp_path):
    before = set(sh(["ip", "netns", "list"], check=False).stdout.split()) if shutil.which("ip") else set()
    result = sh([PYTHON, VRRPD, "--demo"], check=False, env={**os.environ, "PATH": str(tmp_path)})
    assert result.returncode == 1 and not result.stdout, result
    assert "it needs:" in result.stderr and "iproute2's `ip` command" in result.stderr, result.stderr
    assert "apt-get install iproute2" in result.stderr
    if os.geteuid() != 0:
        assert "sudo make demo" in result.stderr
    elif shutil.which("setpriv") and os.path.exists("/usr/bin/python3") and shutil.which("ip"):
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:  # a copy nobody can read
            os.chmod(scratch, 0o755)
            script = shutil.copy(VRRPD, Path(scratch) / "vrrpd.py")
            os.chmod(script, 0o644)
            as_nobody = sh(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3",
                            str(script), "--demo"], check=False, env=dict(os.environ, VRRPD_NO_REEXEC="1"))
        assert as_nobody.returncode == 1 and "root, to create network namespaces" in as_nobody.stderr, as_nobody
        assert "sudo make demo" in as_nobody.stderr and "iproute2" not in as_nobody.stderr
    after = set(sh(["ip", "netns", "list"], check=False).stdout.split()) if shutil.which("ip") else set()
    assert not {n for n in after - before if n.startswith("vd")}  # the demo's names (other runs' may come and go)


def test_echo_probe_counts_replies_losses_and_the_longest_gap(lab):
    client = lab.host("c", f"{LAB_NET}.10/24")

    def probe(target: str, seconds: float, answered: bool) -> List[str]:
        proc = lab.exec(client, [PYTHON, VRRPD, "--demo-probe", target], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, text=True)
        first = [proc.stdout.readline()] if answered else []  # "ready": it runs (python's start-up is slow)
        time.sleep(seconds)
        out, _ = proc.communicate("stop\n", timeout=10)
        assert proc.returncode == 0, out
        return first + out.splitlines()

    import json

    lines = probe("127.0.0.1", 0.5, True)
    assert lines[0] == "ready\n"
    answered = json.loads(lines[-1])
    assert answered["sent"] > 20 and answered["received"] == answered["sent"] and answered["lost"] == 0, answered
    assert 0.005 < answered["longest_gap"] < 0.5, answered
    lines = probe(f"{LAB_NET}.99", 2.0, False)  # nobody has it: every request is lost
    assert "ready" not in lines
    silent = json.loads(lines[-1])
    assert silent["sent"] > 20 and silent["received"] == 0 and silent["lost"] == silent["sent"], silent
    assert silent["longest_gap"] >= (silent["sent"] - 1) * 0.01 * 0.9, silent  # all of the time it sent


def test_daemon_without_privileges_exits_with_a_clear_error(tmp_path):
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None and os.path.exists("/usr/bin/python3"),
            "needs root, setpriv and /usr/bin/python3 to drop to nobody")
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o755)
        script = Path(scratch) / "vrrpd.py"
        shutil.copy(VRRPD, script)
        conf = Path(scratch) / "v.conf"
        conf.write_text("vrrp_instance VI_1 {\n    interface lo\n    virtual_router_id 9\n"
                        "    virtual_ipaddress {\n        10.250.0.1/32\n    }\n}\n")
        os.chmod(script, 0o644)
        os.chmod(conf, 0o644)
        env = dict(os.environ, VRRPD_NO_REEXEC="1")
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                               str(script), "-n", "-l", "-f", str(conf)], capture_output=True, text=True,
                              timeout=20, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "no vrrp_instance could start (vrrpd needs root, or CAP_NET_ADMIN and CAP_NET_RAW)" in proc.stderr


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("unicast", [False, True], ids=["multicast", "unicast"])
@pytest.mark.parametrize("keepalived_master", [True, False], ids=["keepalived-master", "vrrpd-master"])
def test_interop_with_keepalived(lab, tmp_path, version, unicast, keepalived_master):
    require(os.path.exists("/usr/sbin/keepalived"), "needs keepalived")
    advert = 1 if version == 2 else 0.1
    auth = "secret12" if version == 2 else None

    def conf(prio, state, me, peer):
        extra = (f"    unicast_src_ip {me}\n    unicast_peer {{\n        {peer}\n    }}\n") if unicast else ""
        return _conf(priority=prio, state=state, version=version, advert=advert, auth=auth, instance_extra=extra)
    ns_k, ns_v = lab.host("k", f"{LAB_NET}.1/24"), lab.host("v", f"{LAB_NET}.2/24")
    kprio, vprio = (150, 100) if keepalived_master else (100, 150)
    k = _Node(lab, ns_k, tmp_path, "K", conf(kprio, "MASTER" if keepalived_master else "BACKUP",
                                             f"{LAB_NET}.1", f"{LAB_NET}.2"), keepalived=True)
    v = _Node(lab, ns_v, tmp_path, "V", conf(vprio, "BACKUP" if keepalived_master else "MASTER",
                                             f"{LAB_NET}.2", f"{LAB_NET}.1"))
    master, backup = (k, v) if keepalived_master else (v, k)
    down = 3 * advert + 1.5
    _wait_holders(lab, [k, v], [master.name], timeout=down + 4)
    _steady_single_master(lab, [k, v], 1.5 if version == 2 else 0.6)
    master.stop()
    _wait_holders(lab, [k, v], [backup.name], timeout=2)
    master.start()
    _wait_holders(lab, [k, v], [master.name], timeout=down + 2)
    _steady_single_master(lab, [k, v], 1.5 if version == 2 else 0.6)
    text = k.log().lower()
    for complaint in ("bad checksum", "invalid", "mismatch", "bogus"):
        assert complaint not in text, [line for line in text.splitlines() if complaint in line]
    assert "entering master state" in text and "entering backup state" in text



def test_lab_old_unicast_checksum_interoperates_with_keepalived_both_ways(lab, tmp_path):
    """keepalived's old_unicast_checksum (a unicast VRRPv3 sum with 224.0.0.18 as the destination, as keepalived
    1.3.6 and older sent): vrrpd configured with it is heard by keepalived 2.2.7, which switches to it; keepalived
    configured with it is heard by a default vrrpd, which switches too (keepalived's log line), and neither
    claims the VIP while the other is MASTER."""
    require(os.path.exists("/usr/sbin/keepalived"), "needs keepalived")

    def conf(prio, state, me, peer, old):
        return _conf(priority=prio, state=state, advert=0.1, instance_extra=(
            f"    unicast_src_ip {me}\n    unicast_peer {{\n        {peer}\n    }}\n"
            + ("    old_unicast_checksum\n" if old else "")))
    ns_k, ns_v = lab.host("k", f"{LAB_NET}.1/24"), lab.host("v", f"{LAB_NET}.2/24")
    switched = "(VI_1) Setting unicast VRRPv3 checksum to old version"
    # vrrpd MASTER with old_unicast_checksum, keepalived's default BACKUP hears it and switches
    v = _Node(lab, ns_v, tmp_path, "V", conf(150, "MASTER", f"{LAB_NET}.2", f"{LAB_NET}.1", True))
    _wait_holders(lab, [v], ["V"], timeout=3)
    k = _Node(lab, ns_k, tmp_path, "K", conf(100, "BACKUP", f"{LAB_NET}.1", f"{LAB_NET}.2", False), keepalived=True)
    wait_for(lambda: switched in k.log(), 3, what="keepalived switching to the old checksum")
    _steady_single_master(lab, [k, v], 1.0)
    assert _holders(lab, [k, v]) == ["V"] and "invalid vrrpv3 checksum" not in k.log().lower()
    k.stop()
    v.stop()
    # keepalived MASTER with old_unicast_checksum, a default vrrpd BACKUP hears it and switches
    k = _Node(lab, ns_k, tmp_path, "K2", conf(150, "MASTER", f"{LAB_NET}.1", f"{LAB_NET}.2", True), keepalived=True)
    _wait_holders(lab, [k], ["K2"], timeout=3)
    v = _Node(lab, ns_v, tmp_path, "V2", conf(100, "BACKUP", f"{LAB_NET}.2", f"{LAB_NET}.1", False))
    wait_for(lambda: switched in v.log(), 3, what="vrrpd switching to the old checksum")
    _steady_single_master(lab, [k, v], 1.0)
    assert _holders(lab, [k, v]) == ["K2"] and "checksum" not in v.log().replace(switched, "").lower()
    # a reload raises vrrpd's priority: it preempts with the old sum, which keepalived (expecting it) accepts
    v.conf.write_text(conf(200, "BACKUP", f"{LAB_NET}.2", f"{LAB_NET}.1", False))
    v.proc.send_signal(signal.SIGHUP)
    _wait_holders(lab, [k, v], ["V2"], timeout=3)
    _steady_single_master(lab, [k, v], 1.0)
    assert "invalid vrrpv3 checksum" not in k.log().lower()
    v.stop()
    k.stop()


def test_old_unicast_checksum_receive_checks_and_kernel_filter():
    """The old sum (group as the pseudo-header destination) passes only where keepalived takes it: always with
    old_unicast_checksum, as a switch by default, never with `never`; the kernel filter lets both sums through
    exactly when an instance on the socket could take the old one."""
    me, peer, group = IP4("10.0.0.1"), IP4("10.0.0.2"), IP4("224.0.0.18")
    adv = vrrpd.VrrpAdvert(3, 51, 200, [IP4("10.0.0.100")], 1.0)
    old = vrrpd.Received(peer, me, 255, vrrpd.encode_advert(adv, peer, group))
    new = vrrpd.Received(peer, me, 255, vrrpd.encode_advert(adv, peer, me))
    unicast = [vrrpd.UnicastPeer(peer)]

    def check(pkt, mode):
        return vrrpd.receive_checks(pkt, _rx_machine(4), True, unicast, old_checksum=mode)
    assert check(old, None).old_checksum is True and check(new, None).old_checksum is False
    assert check(old, True).old_checksum is False  # expected, not a switch
    assert check(old, False).reason == "bad_checksum" and check(new, True).reason == "bad_checksum"
    for style, old_passes in ((None, False), (group, True)):
        prog = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [2, 3], [51], True, "pseudo", style))
        raw = [vrrpd.encode_ipv4(peer, me, pkt.payload, ttl=255) for pkt in (new, old)]
        assert _run_bpf(prog, raw[0]) != 0 and (_run_bpf(prog, raw[1]) != 0) == old_passes
        bad = bytearray(raw[1])
        bad[-1] ^= 1
        assert _run_bpf(prog, bytes(bad)) == 0
        v2 = vrrpd.encode_ipv4(peer, me, vrrpd.encode_advert(vrrpd.VrrpAdvert(2, 51, 9, [IP4("10.0.0.100")], 1.0)),
                               ttl=255)
        assert _run_bpf(prog, v2) != 0

# The start of the lab's hostile senders: a raw VRRP sender (tx, IP header ours) and a receiver of the group (rx)
# on eth0, with vrrpd importable from argv[1].
RAW_VRRP_PEER = r"""
import ipaddress, random, socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
import vrrpd
IP4 = ipaddress.IPv4Address
group = IP4("224.0.0.18")
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
tx.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
rx.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("=4s4si", group.packed, b"\0" * 4,
                                                                socket.if_nametoindex("eth0")))
rx.setblocking(False)
"""

HOSTILE_SENDER = RAW_VRRP_PEER + r"""
src, seconds = IP4(sys.argv[2]), float(sys.argv[3])
rng = random.Random(7)
def adv(prio=250, vrid=51, pw=b"secret12", auth=1, intvl=1):
    return vrrpd.encode_advert(vrrpd.VrrpAdvert(2, vrid, prio, [IP4("10.55.0.100")], intvl, auth, pw))
kinds = {
    "random": lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 60))),
    "truncated": lambda: adv()[:rng.randint(0, 19)],
    "bad_ttl": None,
    "bad_checksum": lambda: adv()[:6] + b"\x12\x34" + adv()[8:],
    "bad_auth": lambda: adv(pw=b"wrongpw!"),
    "bad_vrid": lambda: adv(vrid=99),
    "bad_interval": lambda: adv(intvl=3),
}
sent, stamps, end = 0, [], time.monotonic() + seconds
while time.monotonic() < end:
    for kind, make in kinds.items():
        ttl = 255
        if make is None:
            payload, ttl = adv(), 64
        else:
            payload = make()
        tx.sendto(vrrpd.encode_ipv4(src, group, payload, ttl=ttl), (str(group), 0))
        sent += 1
    while True:
        try:
            data = rx.recv(2000)
        except BlockingIOError:
            break
        ip = vrrpd.decode_ipv4(data)
        if ip.src != src:
            stamps.append((time.monotonic(), ip.payload[2]))
    time.sleep(0.0005)
gaps = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])]
print(sent, len(stamps), max(gaps) if gaps else -1, min(p for _, p in stamps) if stamps else -1)
"""


def test_hostile_input_does_not_change_state_or_delay_adverts(lab, tmp_path):
    a, b = _pair(lab, tmp_path, _conf(priority=150, state="MASTER", version=2, advert=1, auth="secret12"),
                 _conf(priority=100, version=2, advert=1, auth="secret12"))
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    ns_x = lab.host("x", f"{LAB_NET}.66/24")
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE_SENDER)
    out = lab.run(ns_x, [PYTHON, str(script), str(HERE), f"{LAB_NET}.66", "4"], timeout=30).stdout.split()
    sent, adverts, max_gap, min_prio = int(out[0]), int(out[1]), float(out[2]), int(out[3])
    assert sent > 5000, sent
    assert adverts >= 3 and max_gap < 1.2 and min_prio == 150, out
    assert _holders(lab, [a, b], VIP) == ["A"]
    assert a.proc.poll() is None and b.proc.poll() is None
    assert a.log().count("Entering MASTER STATE") == 1
    assert b.log().count("Entering MASTER STATE") == 0
    text = a.log()
    for complaint in ("invalid passwd", "interval mismatch"):  # well-formed enough to pass the kernel's filter
        assert complaint in text
    for complaint in ("invalid TTL", "Unknown VRID(", "bad_checksum"):  # the socket filter drops them in the kernel
        assert complaint not in text
    assert len(text.splitlines()) < 200  # rate-limited, not one line per packet


# ============================================================================================
# D2. VRRP beyond IPv4: IPv6, VMAC, sync groups, strict mode firewall, AH
# ============================================================================================

# An AH-protected VRRPv2 advert captured from keepalived 2.2.7 (10.77.0.1, vrid 51, prio 150,
# VIP 10.77.0.100, auth_pass "secret12", IP id 1, AH sequence number 1).
KEEPALIVED_AH_ADVERT = bytes.fromhex(
    "45c0004000010000ff33d0690a4d0001e0000012"
    "700400000a4d0001000000013ec2483f6b8b48530167ea60"
    "2133960102013c190a4d00640000000000000000"
)


def run_py_in(lab: Lab, ns: str, code: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a Python snippet (with `vrrpd` importable) inside namespace ns."""
    prologue = f"import sys; sys.path.insert(0, {str(HERE)!r}); import vrrpd\n"
    result = lab.run(ns, [PYTHON, "-c", prologue + code], check=False, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


def _csum_ok(data: bytes) -> bool:
    return vrrpd.inet_checksum(data) == 0


def test_vrrp6_checksum_matches_golden_vector():
    src, dst = vrrpd.ipaddress.IPv6Address("fe80::c8"), vrrpd.VRRP_MCAST_GROUP6
    message = bytes.fromhex("310a640200640000") + vrrpd.ipaddress.IPv6Address("fe80::1").packed
    message += vrrpd.ipaddress.IPv6Address("2001:db8::1").packed
    assert vrrpd.inet_checksum(vrrpd.pseudo_header(src, dst, len(message)) + message) == 0x3F5D
    # a different source changes the sum: the pseudo-header is really included
    other = vrrpd.ipaddress.IPv6Address("fe80::c9")
    assert vrrpd.inet_checksum(vrrpd.pseudo_header(other, dst, len(message)) + message) != 0x3F5D


def test_unsolicited_na_frame_layout_flags_and_checksum():
    mac = bytes.fromhex("00005e00020a")
    target = vrrpd.ipaddress.IPv6Address("2001:db8::100")
    frame = vrrpd.build_unsolicited_na(mac, target, router=True)
    assert frame[:6] == bytes.fromhex("333300000001") and frame[6:12] == mac
    assert frame[12:14] == b"\x86\xdd"
    ip6, icmp = frame[14:54], frame[54:]
    assert ip6[0] >> 4 == 6 and ip6[6] == 58 and ip6[7] == 255
    assert ip6[8:24] == target.packed and ip6[24:40] == vrrpd.ipaddress.IPv6Address("ff02::1").packed
    assert len(icmp) == int.from_bytes(ip6[4:6], "big") == 32
    assert icmp[0] == 136 and icmp[1] == 0
    assert icmp[4] == 0xA0  # Router + Override, not Solicited
    assert icmp[8:24] == target.packed and icmp[24:26] == b"\x02\x01" and icmp[26:32] == mac
    assert _csum_ok(vrrpd.pseudo_header(target, vrrpd.ALL_NODES6, len(icmp), 58) + icmp)
    assert vrrpd.build_unsolicited_na(mac, target, router=False)[54 + 4] == 0x20


def test_ah_advert_of_keepalived_verifies_and_rebuilds_byte_for_byte():
    seq, message = vrrpd.parse_ipv4_ah(KEEPALIVED_AH_ADVERT, b"secret12")
    assert seq == 1 and message[:2] == b"\x21\x33" and message[4] == 2  # v2 advert, auth_type AH
    rebuilt = vrrpd.build_ipv4_ah(vrrpd.ipaddress.IPv4Address("10.77.0.1"), vrrpd.VRRP_MCAST_GROUP4, message,
                                  b"secret12", seq=1, ident=1)
    assert rebuilt == KEEPALIVED_AH_ADVERT


def test_ah_rejects_wrong_password_forged_spi_and_changed_payload():
    with pytest.raises(vrrpd.PacketError) as err:
        vrrpd.parse_ipv4_ah(KEEPALIVED_AH_ADVERT, b"secret13")
    assert err.value.reason == "ah_icv"
    tampered = bytearray(KEEPALIVED_AH_ADVERT)
    tampered[46] = 200  # the VRRP priority
    with pytest.raises(vrrpd.PacketError):
        vrrpd.parse_ipv4_ah(bytes(tampered), b"secret12")
    # mutable fields (TOS, TTL is not mutable for multicast) do not matter; TOS does not
    tos = bytearray(KEEPALIVED_AH_ADVERT)
    tos[1] = 0
    assert vrrpd.parse_ipv4_ah(bytes(tos), b"secret12")[0] == 1
    src, dst = vrrpd.ipaddress.IPv4Address("10.77.0.2"), vrrpd.VRRP_MCAST_GROUP4
    good = vrrpd.build_ipv4_ah(src, dst, b"\x21\x33\x96\x01\x02\x01\x00\x00" + bytes(12), b"pw", 5, ident=9)
    forged = bytearray(good)
    forged[24:28] = bytes([10, 77, 0, 9])  # SPI other than the source; ICV recomputed by the forger
    forged[32:44] = vrrpd.ah_icv(b"pw", bytes(forged[:20]), bytes(forged[20:44]), bytes(forged[44:]))
    with pytest.raises(vrrpd.PacketError) as err:
        vrrpd.parse_ipv4_ah(bytes(forged), b"pw")
    assert err.value.reason == "ah_spi"


def test_ah_sequence_numbers_count_up_reject_replays_and_continue_across_masters():
    a, b = vrrpd.AhSequence(), vrrpd.AhSequence()
    sent = [a.next() for _ in range(3)]
    assert sent == [1, 2, 3]
    assert all(b.accept(s) for s in sent)
    assert not b.accept(3) and not b.accept(2)  # replays
    # b becomes master: it continues above what it heard, so a accepts its adverts
    assert b.next() == 4 and a.accept(4)
    a.seq_number = vrrpd.AH_SEQ_MAX + 1
    a.next()
    assert a.cycle
    a.becoming_master()
    assert a.seq_number == 0 and a.next() == 1


def test_nft_ruleset_lists_vips_by_family():
    vips = [vrrpd.ipaddress.ip_address(a) for a in ("10.0.0.2", "10.0.0.1", "2001:db8::5", "10.0.0.1")]
    text = vrrpd.nft_ruleset(vips)
    assert text.startswith("table inet vrrpd {")
    assert "elements = { 10.0.0.1, 10.0.0.2 }" in text and "elements = { 2001:db8::5 }" in text
    assert "ip daddr @vips4 drop" in text and "ip6 daddr @vips6 drop" in text
    assert "elements" not in vrrpd.nft_ruleset([])


def test_vmac_address_and_name_follow_rfc_and_keepalived():
    assert vrrpd.vmac_address(10) == bytes.fromhex("00005e00010a")
    assert vrrpd.vmac_address(255, family=6) == bytes.fromhex("00005e0002ff")
    assert vrrpd.vmac_ifname(51) == "vrrp.51" and vrrpd.vmac_ifname(51, "vmac1") == "vmac1"


def test_sync_group_goes_master_only_when_every_member_wants_it():
    group = vrrpd.SyncGroupEngine("G1", ["VI_1", "VI_2"])
    assert group.request_master("VI_1") == []
    assert group.state == vrrpd.State.BACKUP
    group.withdraw("VI_1")
    assert group.request_master("VI_2") == []
    moves = group.request_master("VI_1")
    assert sorted(moves) == [("VI_1", vrrpd.State.MASTER), ("VI_2", vrrpd.State.MASTER)]
    assert group.state == vrrpd.State.MASTER


def test_sync_group_backup_or_fault_of_one_member_moves_all(caplog):
    group = vrrpd.SyncGroupEngine("G1", ["VI_1", "VI_2"])
    group.request_master("VI_1")
    group.request_master("VI_2")
    with caplog.at_level("INFO", logger="vrrpd"):
        moves = group.backup("VI_2")
    assert dict(moves) == {"VI_1": vrrpd.State.BACKUP, "VI_2": vrrpd.State.BACKUP}
    assert "VRRP_Group(G1) Syncing instances to BACKUP state" in caplog.text
    group.request_master("VI_1")
    group.request_master("VI_2")
    assert dict(group.set_fault("VI_1", True)) == {"VI_1": vrrpd.State.FAULT, "VI_2": vrrpd.State.FAULT}
    # while one member is faulty nobody may go MASTER, and the group stays FAULT
    assert group.request_master("VI_2") == []
    assert group.set_fault("VI_2", True) == [("VI_2", vrrpd.State.FAULT)]
    assert group.set_fault("VI_1", False) == [("VI_1", vrrpd.State.FAULT)]
    assert dict(group.set_fault("VI_2", False)) == {"VI_1": vrrpd.State.BACKUP, "VI_2": vrrpd.State.BACKUP}
    assert group.state == vrrpd.State.BACKUP


def _group_text(strict=False, track=""):
    """Two instances in sync group G on eth0; VI_1 (priority 100) times out before VI_2 (90, longer Skew_Time)."""
    insts = "".join(
        f"vrrp_instance {name} {{\n    interface eth0\n    virtual_router_id {vrid}\n    priority {prio}\n"
        f"    advert_int 0.1\n    version 3\n    garp_lower_prio_repeat 3\n"
        f"    virtual_ipaddress {{\n        10.0.0.{vrid}0/24\n    }}\n}}\n"
        for name, vrid, prio in (("VI_1", 1, 100), ("VI_2", 2, 90)))
    return (f"global_defs {{\n    router_id t\n{'    vrrp_strict' + chr(10) if strict else ''}}}\n"
            f"vrrp_sync_group G {{\n    group {{\n        VI_1\n        VI_2\n    }}\n{track}}}\n" + insts)


def _fire_down_timer(d, rt):
    """Let the clock run to rt's Master_Down_Timer (only reading the machine's timer)."""
    d.loop.advance(max(0.0, rt.machine.master_down_timer - d.loop.time()))


def test_daemon_sync_group_waits_for_every_member_then_moves_together(offline):
    d, _kernel = offline(_group_text())
    one, two = d.runtimes
    _fire_down_timer(d, one)
    assert one.machine.state == vrrpd.State.BACKUP and one.machine.parked
    _fire_down_timer(d, two)
    assert [rt.machine.state for rt in d.runtimes] == [vrrpd.State.MASTER] * 2
    assert d.status()["sync_groups"] == [{"name": "G", "state": "MASTER", "members": ["VI_1", "VI_2"]}]
    d._apply(two, two.machine.set_fault(d.loop.time(), True))
    assert [rt.machine.state for rt in d.runtimes] == [vrrpd.State.FAULT] * 2
    d._apply(two, two.machine.set_fault(d.loop.time(), False))
    assert [rt.machine.state for rt in d.runtimes] == [vrrpd.State.BACKUP] * 2
    assert not any(rt.machine.parked for rt in d.runtimes)


def test_daemon_parked_member_that_hears_a_master_no_longer_counts_as_wanting(offline):
    d, _kernel = offline(_group_text())
    one, two = d.runtimes
    _fire_down_timer(d, one)
    adv = vrrpd.VrrpAdvert(3, 1, 200, [], 0.1)
    d._apply(one, one.machine.on_advert(d.loop.time(), adv, vrrpd.ipaddress.ip_address("10.0.0.9")))
    _fire_down_timer(d, two)
    assert [rt.machine.state for rt in d.runtimes] == [vrrpd.State.BACKUP] * 2


def test_sync_group_track_interface_faults_every_member(offline):
    d, kernel = offline(_group_text(track="    track_interface {\n        eth9\n    }\n"))
    assert all(d._group_fault(rt) for rt in d.runtimes)
    assert [rt.machine.state for rt in d.runtimes] == [vrrpd.State.FAULT] * 2
    kernel.monitor_.events.append((vrrpd.RTM_NEWLINK, vrrpd.LinkInfo(9, "eth9", vrrpd.IFF_UP | vrrpd.IFF_RUNNING)))
    d._on_netlink()
    assert not any(d._group_fault(rt) for rt in d.runtimes)
    assert [rt.machine.state for rt in d.runtimes] == [vrrpd.State.BACKUP] * 2
    assert vrrpd.instance_family(vrrpd.VrrpInstance("x", native_ipv6=True)) == 6
    assert vrrpd.instance_family(vrrpd.VrrpInstance("x")) == 4


def test_reload_keeps_an_unchanged_sync_group_state(offline):
    d, _kernel = offline(_group_text())
    for rt in d.runtimes:
        _fire_down_timer(d, rt)
    engine = d.sync_groups["G"][1]
    assert engine.state == vrrpd.State.MASTER
    d.reload(d.config)
    assert d.sync_groups["G"][1] is engine
    changed = vrrpd.Config(global_defs=d.config.global_defs, vrrp_instances=d.config.vrrp_instances,
                           sync_groups=[vrrpd.SyncGroup("G", group=["VI_1"])])
    d.reload(changed)
    assert d.sync_groups["G"][1] is not engine and d.group_of == {"VI_1": "G"}


def test_nftables_keyword_names_the_table(offline):
    d, kernel = offline("global_defs {\n    nftables keepalived\n}\n")
    assert d.firewall.table == "keepalived"
    assert "table inet keepalived {" in vrrpd.nft_ruleset([vrrpd.ipaddress.ip_address("10.0.0.1")], "keepalived")
    d, kernel = offline("global_defs {\n    router_id x\n}\n")
    assert d.firewall.table == "vrrpd"


def test_ah_clears_an_initial_master_state_as_keepalived(offline, caplog):
    # the configuration check warns about it too; a Config built otherwise is cleared by the Daemon
    inst = vrrpd.VrrpInstance("VI_AH", interface="eth0", virtual_router_id=9, state=vrrpd.State.MASTER, version=2,
                              auth_type=vrrpd.AuthType.AH, auth_pass=b"pw",
                              virtual_ipaddress=[vrrpd.VirtualIP(ipaddress.ip_interface("10.0.0.100/24"))])
    with caplog.at_level("WARNING", logger="vrrpd"):
        d, kernel = offline(vrrpd.Config(vrrp_instances=[inst]))
    rt = d.runtimes[0]
    assert not rt.machine.start_master and rt.ah is not None and ("eth0", 4, vrrpd.IPPROTO_AH) in kernel.sockets
    assert "Initial state master is incompatible with AH authentication" in caplog.text


def test_strict_mode_silences_a_master_hearing_a_lower_priority(offline):
    d, _kernel = offline(_group_text(strict=True))
    assert all(rt.machine.lower_prio_no_advert and rt.machine.garp_lower_prio_repeat == 0 for rt in d.runtimes)
    relaxed, _kernel = offline(_group_text(strict=False))
    assert not relaxed.runtimes[0].machine.lower_prio_no_advert


def test_ipv6_advert_encode_decode_round_trip_and_checksum():
    """The one codec: the address width and the pseudo-header follow the addresses."""
    src = vrrpd.ipaddress.IPv6Address("fe80::c8")
    addrs = [vrrpd.ipaddress.IPv6Address("fe80::1"), vrrpd.ipaddress.IPv6Address("2001:db8::1")]
    msg = vrrpd.encode_advert(vrrpd.VrrpAdvert(3, 10, 100, addrs, 1.0), src, vrrpd.VRRP_MCAST_GROUP6)
    assert msg[:8].hex() == "310a640200643f5d"  # the golden vector, checksum included
    adv = vrrpd.decode_advert(msg, src, vrrpd.VRRP_MCAST_GROUP6)
    assert (adv.vrid, adv.priority, adv.addresses, adv.advert_int) == (10, 100, addrs, 1.0)
    with pytest.raises(vrrpd.PacketError) as err:
        vrrpd.decode_advert(msg, vrrpd.ipaddress.IPv6Address("fe80::c9"), vrrpd.VRRP_MCAST_GROUP6)
    assert err.value.reason == "bad_checksum"
    with pytest.raises(vrrpd.PacketError) as err:
        vrrpd.decode_advert(msg[:-1], family=6)
    assert err.value.reason == "bad_length"
    assert vrrpd.encode_advert(vrrpd.VrrpAdvert(3, 10, 100, addrs, 1.0))[6:8] == b"\0\0"  # left to the kernel
    with pytest.raises(ValueError):
        vrrpd.encode_advert(vrrpd.VrrpAdvert(2, 10, 100, addrs, 1.0))  # IPv6 is VRRPv3 only
    with pytest.raises(ValueError):
        vrrpd.encode_advert(vrrpd.VrrpAdvert(3, 10, 100, addrs + [vrrpd.ipaddress.IPv4Address("10.0.0.1")], 1.0))


def test_unsolicited_na_updates_a_neighbours_cache(lab):
    client = lab.host("c", "10.82.0.1/24")
    router = lab.host("r", "10.82.0.2/24")
    lab.ip("addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad", ns=client)
    lab.ip("addr", "add", "2001:db8::100/64", "dev", "eth0", "nodad", ns=router)
    wait_for(lambda: lab.run(client, ["ping", "-6", "-c1", "-W1", "2001:db8::100"], check=False).returncode == 0,
             10, 0.2, "client reaches the VIP")
    lab.ip("addr", "del", "2001:db8::100/64", "dev", "eth0", ns=router)
    run_py_in(lab, router, (
        "import socket, ipaddress\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        "s.bind(('eth0', 0))\n"
        "s.send(vrrpd.build_unsolicited_na(vrrpd.vmac_address(10, 6), ipaddress.IPv6Address('2001:db8::100'), True))\n"
    ))

    def entry():
        out = lab.ip("-6", "neigh", "show", "2001:db8::100", "dev", "eth0", ns=client).stdout
        return out if "00:00:5e:00:02:0a" in out else ""

    assert "router" in wait_for(entry, 5, 0.1, "neighbour entry with the VMAC")


def test_nft_ruleset_drops_traffic_to_vips_and_goes_away(lab):
    require(shutil.which("nft") is not None, "needs nft")
    client = lab.host("c", "10.80.0.1/24")
    node = lab.host("n", "10.80.0.2/24")
    lab.ip("addr", "add", "10.80.0.100/24", "dev", "eth0", ns=node)
    ping = ["ping", "-c1", "-W1", "10.80.0.100"]
    assert lab.run(client, ping, check=False).returncode == 0
    vip = vrrpd.ipaddress.ip_address("10.80.0.100")
    lab.run(node, ["sh", "-c", f"printf '%s' '{vrrpd.nft_ruleset([vip])}' | nft -f -"])
    assert lab.run(client, ping, check=False).returncode != 0
    assert lab.run(client, ["ping", "-c1", "-W1", "10.80.0.2"], check=False).returncode == 0
    lab.run(node, vrrpd.nft_delete_argv())
    assert "vrrpd" not in lab.run(node, ["nft", "list", "tables"]).stdout
    assert lab.run(client, ping, check=False).returncode == 0



def test_lab_nftables_name_priority_and_counters_shape_the_strict_mode_table(lab, tmp_path):
    """keepalived's nftables NAME, nftables_priority and nftables_counters: the no_accept table has that name, its
    chains hook at that priority, and each drop rule counts what it dropped (here a client's pings to the VIP)."""
    require(shutil.which("nft") is not None, "needs nft")
    ns = lab.host("a", f"{LAB_NET}.1/24")
    client = lab.host("c", f"{LAB_NET}.10/24")
    conf = _conf(priority=150, state="MASTER", version=2, advert=1, global_extra=(
        "    vrrp_strict\n    nftables ka_test\n    nftables_priority -7\n    nftables_counters\n"))
    node = _Node(lab, ns, tmp_path, "A", conf)
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    assert lab.run(client, ["ping", "-c2", "-i0.2", "-W1", VIP], check=False).returncode != 0  # dropped
    listing = lab.run(ns, ["nft", "list", "table", "inet", "ka_test"]).stdout
    assert "type filter hook input priority filter - 7; policy accept;" in listing, listing  # filter is 0
    assert "type filter hook output priority filter - 7; policy accept;" in listing, listing
    counted = [int(n) for n in re.findall(r"ip daddr @vips4 counter packets (\d+) bytes \d+ drop", listing)]
    assert counted and counted[0] >= 2, listing
    assert "vrrpd" not in lab.run(ns, ["nft", "list", "tables"]).stdout
    node.stop()
    assert "ka_test" not in lab.run(ns, ["nft", "list", "tables"]).stdout



@pytest.mark.parametrize("ifindex", [False, True], ids=["by-name", "nftables_ifindex"])
def test_lab_a_link_local_vip_is_dropped_on_its_own_interface_by_name_or_by_index(lab, tmp_path, ifindex):
    """keepalived's strict-mode table keeps a link-local IPv6 VIP with its interface (set vips_link_local_name of
    ipv6_addr . ifname, or with nftables_ifindex set vips_link_local of ipv6_addr . iface_index): the same
    address is another one on each link. A client's ping to it on eth0 is dropped; the global VIP is in vips6."""
    require(shutil.which("nft") is not None, "needs nft")
    ns = lab.host("a", f"{LAB_NET}.1/24")
    client = lab.host("c", f"{LAB_NET}.10/24")
    extra = "    vrrp_strict\n" + ("    nftables_ifindex\n" if ifindex else "")
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", vips=("fe80::5/64", "2001:db8:5::5/64"),
                                               global_extra=extra))
    wait_for(lambda: lab.has_address(ns, "fe80::5"), 8, what="MASTER")
    listing = lab.run(ns, ["nft", "list", "table", "inet", "vrrpd"]).stdout
    name, kind, iif = ("vips_link_local", "iface_index", "iif") if ifindex else ("vips_link_local_name", "ifname",
                                                                                   "iifname")
    assert f"set {name} {{" in listing and f"type ipv6_addr . {kind}" in listing, listing
    assert re.search(r'fe80::5 \. "?eth0"?', listing) and f"ip6 daddr . {iif} @{name} drop" in listing, listing
    assert "2001:db8:5::5" in listing.split("set vips6", 1)[1].split("}", 1)[0]
    ping = ["ping", "-6", "-c1", "-W1", "fe80::5%eth0"]
    assert lab.run(client, ping, check=False).returncode != 0
    lab.run(ns, ["nft", "delete", "table", "inet", "vrrpd"])  # without the table the VIP answers
    assert lab.run(client, ping, check=False).returncode == 0
    node.stop()

def test_nftables_without_a_name_is_keepalived_and_the_ruleset_has_no_counters_by_default():
    config, diags = parse_ok("global_defs {\n    nftables\n}\n" + MINIMAL)
    assert config.global_defs.nftables == "keepalived" and config.global_defs.nftables_priority == -1
    plain = vrrpd.nft_ruleset([vrrpd.ipaddress.ip_address("10.0.0.1")])
    assert "counter" not in plain and "priority -1;" in plain
    counted = vrrpd.nft_ruleset([vrrpd.ipaddress.ip_address("10.0.0.1")], "t", 5, True)
    assert counted.count("counter drop") == 4 and "priority 5;" in counted


def test_lab_disable_local_igmp_stops_link_local_igmp_reports_while_running(lab, tmp_path):
    """keepalived's disable_local_igmp: net.ipv4.igmp_link_local_mcast_reports is 0 while the daemon runs (no IGMP
    report for 224.0.0.18 leaves), and 1 again after it stops."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    sysctl = ["sysctl", "-n", "net.ipv4.igmp_link_local_mcast_reports"]
    assert lab.run(ns, sysctl).stdout.strip() == "1"
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", global_extra="    disable_local_igmp\n"))
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    assert lab.run(ns, sysctl).stdout.strip() == "0"
    node.stop()
    assert lab.run(ns, sysctl).stdout.strip() == "1"


def _daemon_sockets(pid):
    """The sockets of process `pid`, as the kernel has them: [(family, type, protocol, address, SO_RCVBUF,
    SO_BINDTODEVICE)], each read through a copy of the process's descriptor (pidfd_getfd, Linux 5.6) - nothing
    the daemon says itself."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    found = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(438, pidfd, int(name), 0)  # SYS_pidfd_getfd
            if fd < 0:
                continue
            sock = socket.socket(fileno=fd)
            try:
                address = sock.getsockname()
            except OSError:
                address = None
            device = sock.getsockopt(socket.SOL_SOCKET, 25, 16).split(b"\0", 1)[0].decode()  # SO_BINDTODEVICE
            found.append((sock.family, sock.type, sock.proto, address,
                          sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), device))
            sock.close()
    finally:
        os.close(pidfd)
    return found


def test_lab_ipv4_vrrp_socket_reads_with_recv_and_gives_each_datagram_its_kernel_receive_time(lab):
    """IPv4 adverts are read with recv() (a flood costs half as much as with recvmsg and its control message);
    receive_time() then says when the kernel received the datagram read last, for each one of a backlog."""
    a = lab.host("a", f"{LAB_NET}.1/24")
    b = lab.host("b", f"{LAB_NET}.2/24")
    reader = lab.exec(b, [PYTHON, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); import vrrpd\n" + (
        "import socket, time, json\n"
        "s = vrrpd.VrrpSocket(4, 'eth0', socket.if_nametoindex('eth0'))\n"
        "s.join(vrrpd.VRRP_MCAST_GROUP4)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"  # both adverts wait in the kernel until then
        "got = []\n"
        "while True:\n"
        "    pkt = s.recv()\n"
        "    if pkt is None:\n"
        "        break\n"
        "    got.append([str(pkt.src), pkt.payload[2], s.receive_time()])\n"
        "print(json.dumps(got), flush=True)\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "ready"
    sent = []
    for prio in (100, 101):
        sent.append(time.time())
        run_py_in(lab, a, (
            "import socket, ipaddress\n"
            "s = vrrpd.VrrpSocket(4, 'eth0', socket.if_nametoindex('eth0'))\n"
            f"src = ipaddress.IPv4Address('{LAB_NET}.1')\n"
            f"adv = vrrpd.VrrpAdvert(3, 51, {prio}, [ipaddress.IPv4Address('{VIP}')], 1.0)\n"
            "msg = vrrpd.encode_advert(adv, src, vrrpd.VRRP_MCAST_GROUP4)\n"
            "s.send(src, vrrpd.VRRP_MCAST_GROUP4, s.packet(src, vrrpd.VRRP_MCAST_GROUP4, msg))\n"))
        sent[-1] = (sent[-1] + time.time()) / 2
        time.sleep(0.5)
    import json

    reader.stdin.write("go\n")
    reader.stdin.flush()
    got = json.loads(reader.stdout.readline())
    reader.wait(timeout=10)
    assert [(g[0], g[1]) for g in got] == [(f"{LAB_NET}.1", 100), (f"{LAB_NET}.1", 101)]
    for (_src, _prio, stamp), when in zip(got, sent):  # within the time the sending snippet took to run
        assert stamp is not None and abs(stamp - when) < 0.5, (stamp, when)
    assert got[1][2] - got[0][2] > 0.4  # each datagram its own time, though both were read together, later


def test_lab_netlink_and_vrrp_receive_buffers_follow_the_rcv_bufs_keywords(lab, tmp_path):
    """vrrp_netlink_monitor_rcv_bufs(_force), vrrp_netlink_cmd_rcv_bufs and vrrp_rx_bufs_policy MTU with
    vrrp_rx_bufs_multiplier, as keepalived sets them: the kernel reports twice what was asked (it doubles
    SO_RCVBUF for its bookkeeping); without _force a size is capped by net.core.rmem_max."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("link", "set", "eth0", "mtu", "1400", ns=ns)
    conf = _conf(priority=150, state="MASTER", global_extra=(
        "    vrrp_netlink_monitor_rcv_bufs 3000000\n    vrrp_netlink_monitor_rcv_bufs_force\n"
        "    vrrp_netlink_cmd_rcv_bufs 100000\n    vrrp_rx_bufs_policy MTU\n    vrrp_rx_bufs_multiplier 5\n"))
    node = _Node(lab, ns, tmp_path, "A", conf)
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    socks = _daemon_sockets(node.proc.pid)
    route = [(addr[1], rcvbuf) for family, _t, proto, addr, rcvbuf, _d in socks
             if family == socket.AF_NETLINK and proto == 0]
    assert (vrrpd.RTMGRP_LINK | vrrpd.RTMGRP_IPV4_IFADDR | vrrpd.RTMGRP_IPV6_IFADDR, 6000000) in route, route
    assert any(groups == 0 and rcvbuf == 200000 for groups, rcvbuf in route), route
    vrrp = [rcvbuf for family, _t, proto, _a, rcvbuf, _d in socks if family == socket.AF_INET and proto == 112]
    assert vrrp == [2 * (vrrpd.VRRP_RCVBUF + 5 * 1400)], vrrp
    node.stop()


def test_rx_bufs_policy_advert_and_size_are_keepalived_s_shares(offline):
    """ADVERT: multiplier x the advert's length (IPv4 header 20 + VRRPv3 header 8 + 2 VIPs x 4 = 36 here); a size
    wins over a policy, and kernel_rx_buf_size over both (keepalived's vrrp_scheduler.c)."""
    vips = ["10.0.0.100/24", "10.0.0.101/24"]
    d, _ = offline(instance_text(vips=vips, global_extra="    vrrp_rx_bufs_policy ADVERT\n"))
    assert d._rx_buf_share(d.runtimes[0]) == 3 * 36
    d, _ = offline(instance_text(vips=vips, extra="    kernel_rx_buf_size 999\n",
                                 global_extra="    vrrp_rx_bufs_policy ADVERT\n"))
    assert d._rx_buf_share(d.runtimes[0]) == 999
    config, diags = vrrpd.parse_config_text("global_defs {\n vrrp_rx_bufs_policy MTU 4096\n}\n", "r.conf")
    assert config.global_defs.vrrp_rx_bufs_size == 4096 and config.global_defs.vrrp_rx_bufs_policy == ""
    assert "ignoring policy" in " ".join(messages(diags))

def test_rtnetlink_reads_a_dump_much_larger_than_one_receive_buffer_whole(lab):
    """A netlink request reads NETLINK_RECV_SIZE at a time: 4,000 addresses (some 400 KB of dump) still arrive
    whole, with their labels, and an address added or deleted is acknowledged."""
    node = lab.host("n", "10.82.0.2/16")
    batch = "".join(f"address add 10.82.{i // 250 + 1}.{i % 250 + 1}/32 dev eth0 label eth0:v\n" for i in range(4000))
    lab.sh(["ip", "-n", node, "-batch", "-"], input=batch)
    out = run_py_in(lab, node, (
        "import ipaddress, socket\n"
        "nl = vrrpd.Rtnetlink()\n"
        "found = [a for a in nl.addresses() if a.address.version == 4 and a.address.ip.packed[1] == 82]\n"
        "print(len(found), len({a.address for a in found}), sorted({a.label for a in found}))\n"
        "vip = vrrpd.VirtualIP(address=ipaddress.ip_interface('10.82.200.1/32'))\n"
        "eth0 = socket.if_nametoindex('eth0')\n"
        "print(nl.add_address(eth0, vip), len(nl.addresses()))\n"
        "nl.del_address(eth0, vip)\n"
        "print(len(nl.addresses()), len(nl.links()))\n"
    ), timeout=60).stdout.splitlines()
    assert out[0] == "4001 4001 ['eth0', 'eth0:v']", out  # and 10.82.0.2, labelled eth0
    assert out[1].split()[0] == "True" and int(out[2].split()[0]) == int(out[1].split()[1]) - 1, out
    assert int(out[2].split()[1]) >= 2, out  # lo and eth0


def test_macvlan_rtnetlink_messages_create_a_private_vmac(lab):
    node = lab.host("n", "10.81.0.2/24")
    run_py_in(lab, node, (
        "import socket\n"
        "nl = vrrpd.Rtnetlink()\n"
        "nl.new_macvlan('vrrp.10', socket.if_nametoindex('eth0'), vrrpd.vmac_address(10))\n"
        "idx = socket.if_nametoindex('vrrp.10')\n"
        "nl.set_addrgenmode(idx)\n"
        "nl.set_link_up(idx)\n"
    ))
    out = lab.ip("-d", "link", "show", "vrrp.10", ns=node).stdout
    assert "macvlan mode private" in out and "00:00:5e:00:01:0a" in out
    assert "addrgenmode random" in out and ",UP" in out
    run_py_in(lab, node, (
        "import socket\n"
        "vrrpd.Rtnetlink().del_link(socket.if_nametoindex('vrrp.10'))\n"
    ))
    assert lab.ip("link", "show", "vrrp.10", ns=node, check=False).returncode != 0


def test_accept_mode_follows_keepalived_defaults():
    gd = vrrpd.GlobalDefs(router_id="t")
    inst = vrrpd.VrrpInstance("VI_1", priority=100)
    assert vrrpd.instance_accepts(inst, gd)
    gd.vrrp_strict = True
    assert not vrrpd.instance_accepts(inst, gd)
    inst.accept = True
    assert vrrpd.instance_accepts(inst, gd)
    owner = vrrpd.VrrpInstance("VI_2", priority=255, accept=False)
    assert vrrpd.instance_accepts(owner, gd)
    vip = vrrpd.VirtualIP(vrrpd.ipaddress.ip_interface("10.0.0.9/24"))
    config = vrrpd.Config(global_defs=gd, vrrp_instances=[
        vrrpd.VrrpInstance("A", priority=100, virtual_ipaddress=[vip]),
        vrrpd.VrrpInstance("B", priority=100, accept=True, virtual_ipaddress=[vip])])
    assert vrrpd.no_accept_vips(config) == [vrrpd.ipaddress.ip_address("10.0.0.9")]


def test_strict_firewall_replaces_a_stale_table_and_removes_it_on_stop(lab):
    require(shutil.which("nft") is not None, "needs nft")
    node = lab.host("n", "10.83.0.2/24")
    lab.run(node, ["nft", "add", "table", "inet", "vrrpd"])
    lab.run(node, ["nft", "add", "chain", "inet", "vrrpd", "stale"])
    out = run_py_in(lab, node, (
        "import ipaddress, subprocess\n"
        "fw = vrrpd.StrictFirewall()\n"
        "assert fw.start([ipaddress.ip_address('10.83.0.100'), ipaddress.ip_address('2001:db8::64')])\n"
        "print(subprocess.run(['nft', 'list', 'table', 'inet', 'vrrpd'], capture_output=True, text=True).stdout)\n"
        "print('=====')\n"
        "fw.stop()\n"
        "print(subprocess.run(['nft', 'list', 'tables'], capture_output=True, text=True).stdout)\n"
    )).stdout
    listed, after = out.split("=====")
    assert "stale" not in listed and "10.83.0.100" in listed and "2001:db8::64" in listed
    assert "vrrpd" not in after


def test_strict_firewall_reload_swaps_the_vip_set_and_drops_the_table_when_unneeded(lab):
    require(shutil.which("nft") is not None, "needs nft")
    node = lab.host("n", "10.87.0.2/24")
    out = run_py_in(lab, node, (
        "import ipaddress, subprocess\n"
        "def listing():\n"
        "    return subprocess.run(['nft', 'list', 'ruleset'], capture_output=True, text=True).stdout\n"
        "fw = vrrpd.StrictFirewall()\n"
        "assert fw.start([ipaddress.ip_address('10.87.0.100')])\n"
        "assert fw.replace([ipaddress.ip_address('10.87.0.101')])\n"
        "print(listing())\n"
        "print('=====')\n"
        "assert fw.replace([]) and not fw.active\n"
        "print(listing())\n"
    )).stdout
    swapped, after = out.split("=====")
    assert "10.87.0.101" in swapped and "10.87.0.100" not in swapped
    assert "vrrpd" not in after


def test_vmac_manager_creates_the_macvlan_and_restores_everything(lab):
    node = lab.host("n", "10.84.0.2/24")
    before = lab.run(node, ["sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore"]).stdout.strip()
    out = run_py_in(lab, node, (
        "import subprocess\n"
        "m = vrrpd.VmacManager()\n"
        "m.create('vrrp.7', 'eth0', 7)\n"
        "print(subprocess.run(['ip', '-d', 'link', 'show', 'vrrp.7'], capture_output=True, text=True).stdout)\n"
        "print(open('/proc/sys/net/ipv4/conf/eth0/arp_ignore').read())\n"
        "print('=====')\n"
        "m.remove_all()\n"
    )).stdout
    shown, _ = out.split("=====")
    assert "00:00:5e:00:01:07" in shown and "macvlan mode private" in shown and "\n1\n" in shown
    assert lab.ip("link", "show", "vrrp.7", ns=node, check=False).returncode != 0
    assert lab.run(node, ["sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore"]).stdout.strip() == before


def keepalived_conf(tmp_path: Path, body: str, name: str = "keepalived.conf") -> Path:
    path = tmp_path / name
    path.write_text("global_defs {\n  router_id ka\n}\n" + body)
    return path


def wait_link_local(lab: Lab, ns: str, ifname: str = "eth0") -> str:
    def ready():
        out = lab.ip("-6", "-o", "addr", "show", "dev", ifname, "scope", "link", ns=ns).stdout
        return out.split()[3].split("/")[0] if out and "tentative" not in out else ""
    return wait_for(ready, 10, 0.1, f"link-local address on {ns}")


def test_ipv6_vrrpv3_adverts_interoperate_with_keepalived(lab, tmp_path):
    ka = lab.host("k", "10.85.0.1/24")
    us = lab.host("v", "10.85.0.2/24")
    ka_ll, us_ll = wait_link_local(lab, ka), wait_link_local(lab, us)
    conf = keepalived_conf(tmp_path, (
        "vrrp_instance VI6 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 60\n  priority 100\n"
        "  advert_int 0.1\n  virtual_ipaddress {\n    2001:db8:60::100/64\n  }\n}\n"))
    logfile = _Node(lab, ka, tmp_path, f"keepalived-{ka}", conf, keepalived=True).log_path
    # our side: listen 2 s (keepalived becomes MASTER and advertises), then advertise priority 200 for 2 s
    out = run_py_in(lab, us, (
        "import ipaddress, socket, struct, time, json\n"
        "s = vrrpd.VrrpSocket(6, 'eth0', socket.if_nametoindex('eth0'))\n"
        "s.join(vrrpd.VRRP_MCAST_GROUP6)\n"
        "src = next(a.address.ip for a in vrrpd.Rtnetlink().addresses()\n"
        "           if a.address.version == 6 and a.scope == 253 and a.usable)\n"
        "msg = struct.pack('!BBBBHH', 0x31, 60, 200, 1, 10, 0) + ipaddress.IPv6Address('2001:db8:60::100').packed\n"
        "seen, t0 = [], time.monotonic()\n"
        "while time.monotonic() - t0 < 4.5:\n"
        "    if time.monotonic() - t0 > 2:\n"
        "        s.send(src, vrrpd.VRRP_MCAST_GROUP6, s.packet(src, vrrpd.VRRP_MCAST_GROUP6, msg))\n"
        "    time.sleep(0.1)\n"
        "    while True:\n"
        "        got = s.recv()\n"
        "        if got is None:\n"
        "            break\n"
        "        seen.append([got.payload.hex(), str(got.src), str(got.dst), got.ttl,\n"
        "                     round(time.monotonic() - t0, 2), got.received_at is not None])\n"
        "print(json.dumps(seen))\n"
    ), timeout=30).stdout
    import json
    seen = json.loads(out)
    assert seen, "no advert from keepalived"
    first = bytes.fromhex(seen[0][0])
    assert seen[0][1] == ka_ll and seen[0][2] == "ff02::12" and seen[0][3] == 255 and seen[0][5]
    assert first[:4] == bytes([0x31, 60, 100, 1]) and struct_unpack_h(first, 4) & 0xFFF == 10
    assert first[8:] == vrrpd.ipaddress.IPv6Address("2001:db8:60::100").packed
    # kernel-verified checksum matches ours over the pseudo-header
    zeroed = first[:6] + b"\0\0" + first[8:]
    ka_src = vrrpd.ipaddress.IPv6Address(ka_ll)
    assert vrrpd.inet_checksum(vrrpd.pseudo_header(ka_src, vrrpd.VRRP_MCAST_GROUP6, len(zeroed)) + zeroed) == \
        struct_unpack_h(first, 6)
    # keepalived heard our priority-200 adverts (checksum filled by the kernel) and stepped down
    text = wait_for(lambda: (lambda t: t if "Entering BACKUP STATE" in t.split("Entering MASTER STATE", 1)[-1]
                             else "")(logfile.read_text()), 5, 0.1, "keepalived back to BACKUP")
    assert f"Master received advert from {us_ll} with higher priority 200" in text
    late = [s for s in seen if s[4] > 3.0]
    assert not late or all(bytes.fromhex(s[0])[2] != 100 for s in late), "keepalived kept advertising as MASTER"


def test_ah_adverts_interoperate_with_keepalived(lab, tmp_path):
    ka = lab.host("k", "10.86.0.1/24")
    us = lab.host("v", "10.86.0.2/24")
    conf = keepalived_conf(tmp_path, (
        "vrrp_instance VI_AH {\n  state MASTER\n  interface eth0\n  virtual_router_id 61\n  priority 100\n"
        "  advert_int 1\n  authentication {\n    auth_type AH\n    auth_pass s3cret\n  }\n"
        "  virtual_ipaddress {\n    10.86.0.100/24\n  }\n}\n"))
    logfile = _Node(lab, ka, tmp_path, f"keepalived-{ka}", conf, keepalived=True).log_path
    out = run_py_in(lab, us, (
        "import ipaddress, socket, struct, time, json\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, vrrpd.IPPROTO_AH)\n"
        "s.setsockopt(socket.SOL_SOCKET, 25, b'eth0')\n"
        "s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)\n"
        "mreq = socket.inet_aton('224.0.0.18') + struct.pack('=4si', b'\\0' * 4, socket.if_nametoindex('eth0'))\n"
        "s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)\n"
        "s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)\n"
        "s.settimeout(0.1)\n"
        "seq = vrrpd.AhSequence()\n"
        "src, vip = ipaddress.IPv4Address('10.86.0.2'), ipaddress.IPv4Address('10.86.0.100')\n"
        "body = struct.pack('!BBBBBBH', 0x21, 61, 200, 1, 2, 1, 0) + vip.packed + bytes(8)\n"
        "body = body[:6] + struct.pack('!H', vrrpd.inet_checksum(body)) + body[8:]\n"
        "heard, bad, t0, sending, ident, last = [], 0, time.monotonic(), None, 0, 0.0\n"
        "while time.monotonic() - t0 < 12 and (sending is None or time.monotonic() - sending < 3.5):\n"
        "    try:\n"
        "        pkt = s.recv(2000)\n"
        "        try:\n"
        "            n, vrrp = vrrpd.parse_ipv4_ah(pkt, b's3cret')\n"
        "            heard.append([n, vrrp[2], seq.accept(n)])\n"
        "        except vrrpd.PacketError:\n"
        "            bad += 1\n"
        "    except socket.timeout:\n"
        "        pass\n"
        "    if heard and sending is None:\n"
        "        sending = time.monotonic()\n"
        "    if sending is not None and time.monotonic() - last > 0.3:\n"
        "        ident, last = ident + 1, time.monotonic()\n"
        "        s.sendto(vrrpd.build_ipv4_ah(src, vrrpd.VRRP_MCAST_GROUP4, body, b's3cret', seq.next(), ident),\n"
        "                 ('224.0.0.18', 0))\n"
        "print(json.dumps({'heard': heard, 'bad': bad}))\n"
    ), timeout=30).stdout
    import json
    result = json.loads(out)
    assert result["heard"] and result["bad"] == 0
    assert all(prio == 100 and fresh for _n, prio, fresh in result["heard"][:1])
    text = logfile.read_text()
    assert "Master received advert from 10.86.0.2 with higher priority 200, ours 100" in text
    assert "Entering BACKUP STATE" in text.split("Entering MASTER STATE", 1)[-1]
    assert "IPSEC-AH" not in text, "keepalived rejected an AH advert"


def struct_unpack_h(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 2], "big")


V6_NET = "10.56.0"


def _v6_conf(name, vrid, priority, vips, state="BACKUP", advert=0.1, version=3, extra="", global_extra="",
             interface="eth0", auth=None):
    auth_block = f"    authentication {{\n        auth_type AH\n        auth_pass {auth}\n    }}\n" if auth else ""
    vip_lines = "".join(f"        {v}\n" for v in vips)
    return (f"vrrp_instance {name} {{\n    state {state}\n    interface {interface}\n"
            f"    virtual_router_id {vrid}\n    priority {priority}\n    advert_int {advert}\n    version {version}\n"
            f"{auth_block}    virtual_ipaddress {{\n{vip_lines}    }}\n{extra}}}\n")


def _global(router_id, extra=""):
    return f"global_defs {{\n    router_id {router_id}\n{extra}}}\n"


def _has_addr6(lab, ns, address, ifname="eth0"):
    out = lab.ip("-6", "-o", "addr", "show", "dev", ifname, ns=ns, check=False).stdout
    return [line for line in out.splitlines() if f" {address}/" in line]


def _neigh_mac(lab, ns, address, ifname="eth0"):
    out = lab.ip("neigh", "show", address, "dev", ifname, ns=ns, check=False).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else ""


def test_ipv6_instance_against_keepalived_failover_nodad_and_neighbour_advert(lab, tmp_path):
    vip6 = "2001:db8:56::100"
    client = lab.host("c", f"{V6_NET}.9/24")
    lab.ip("addr", "add", "2001:db8:56::9/64", "dev", "eth0", "nodad", ns=client)
    ns_k = lab.host("k", f"{V6_NET}.1/24")
    ns_v = lab.host("v", f"{V6_NET}.2/24")
    wait_link_local(lab, ns_k)
    wait_link_local(lab, ns_v)
    ka_conf = _global("ka") + _v6_conf("VI6", 66, 150, [f"{vip6}/64"])
    ka = _Node(lab, ns_k, tmp_path, "K", ka_conf, keepalived=True)
    ours = _Node(lab, ns_v, tmp_path, "V", _global("v") + _v6_conf("VI6", 66, 100, [f"{vip6}/64"]))
    wait_for(lambda: _has_addr6(lab, ns_k, vip6), 10, 0.05, "keepalived holds the IPv6 VIP")
    time.sleep(1.0)
    assert not _has_addr6(lab, ns_v, vip6), "vrrpd took the VIP from a higher-priority keepalived"
    assert "Entering MASTER STATE" not in ours.log()
    wait_for(lambda: lab.run(client, ["ping", "-6", "-c1", "-W1", vip6], check=False).returncode == 0, 5, 0.2,
             "client reaches the VIP on keepalived")
    ka_mac = _neigh_mac(lab, client, vip6)
    ka.kill()
    lines = wait_for(lambda: _has_addr6(lab, ns_v, vip6), 5, 0.02, "vrrpd takes over the IPv6 VIP")
    assert "tentative" not in lines[0] and "nodad" in lines[0]
    v_mac = lab.run(ns_v, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    # the unsolicited NA (Override flag) moves the client's entry without waiting for NUD
    wait_for(lambda: _neigh_mac(lab, client, vip6) == v_mac, 5, 0.05, "client neighbour entry follows the NA")
    assert ka_mac and ka_mac != v_mac
    assert lab.run(client, ["ping", "-6", "-c1", "-W1", vip6], check=False).returncode == 0
    # keepalived comes back with the higher priority and takes the VIP back from vrrpd
    wait_for(lambda: not sh(["ip", "netns", "pids", ns_k], check=False).stdout.strip(), 10, 0.1, "keepalived gone")
    ka.start()
    wait_for(lambda: not _has_addr6(lab, ns_v, vip6), 10, 0.05, "vrrpd gives the VIP back")
    # the log line follows the kernel work of the same transition
    wait_for(lambda: "Master received advert from fe80::" in ours.log(), 2, 0.02, "the step-down logged")
    ours.stop()


def test_ah_instance_against_keepalived_both_ways(lab, tmp_path):
    vip = f"{V6_NET}.100"
    ns_k = lab.host("k", f"{V6_NET}.1/24")
    ns_v = lab.host("v", f"{V6_NET}.2/24")
    conf = _v6_conf("VI_AH", 57, 100, [f"{vip}/24"], advert=1, version=2, auth="pw4ah")
    ka = _Node(lab, ns_k, tmp_path, "K", _global("ka") + conf, keepalived=True)
    wait_for(lambda: lab.has_address(ns_k, vip), 10, 0.05, "keepalived MASTER")
    ours = _Node(lab, ns_v, tmp_path, "V", _global("v") + conf.replace("priority 100", "priority 200"))
    # vrrpd (200) preempts keepalived (100): keepalived accepted our AH adverts and sequence numbers
    wait_for(lambda: lab.has_address(ns_v, vip) and not lab.has_address(ns_k, vip), 12, 0.05, "vrrpd preempts")
    time.sleep(2.5)
    assert lab.has_address(ns_v, vip) and not lab.has_address(ns_k, vip)
    assert "IPSEC-AH" not in ka.log() and "ah_" not in ours.log()
    # and vrrpd accepted keepalived's: stopping vrrpd (priority 0) hands the VIP back at once
    ours.stop()
    wait_for(lambda: lab.has_address(ns_k, vip), 3, 0.05, "keepalived takes over after vrrpd's priority 0")
    assert "Backup received priority 0 advertisement" in ka.log() or "Entering MASTER STATE" in ka.log()


def test_sync_group_moves_both_instances_when_one_interface_dies(lab, tmp_path):
    ns_a = lab.host("a", f"{V6_NET}.1/24")
    ns_b = lab.host("b", f"{V6_NET}.2/24")
    lab.port(ns_a, "eth1", "10.57.0.1/24")
    lab.port(ns_b, "eth1", "10.57.0.2/24")

    tmp_path.chmod(0o755)
    recorders = {node: _recorder_script(tmp_path, node) for node in ("a", "b")}

    def conf(router, prio):
        return (_global(router) + "vrrp_sync_group G1 {\n    group {\n        VI_1\n        VI_2\n    }\n"
                + f"    notify {recorders[router]}\n}}\n"
                + _v6_conf("VI_1", 71, prio, [f"{V6_NET}.100/24"])
                + _v6_conf("VI_2", 72, prio, ["10.57.0.100/24"], interface="eth1"))

    a = _Node(lab, ns_a, tmp_path, "A", conf("a", 150))
    b = _Node(lab, ns_b, tmp_path, "B", conf("b", 100))

    def holds(ns):
        return lab.has_address(ns, f"{V6_NET}.100"), lab.has_address(ns, "10.57.0.100", "eth1")

    wait_for(lambda: holds(ns_a) == (True, True) and holds(ns_b) == (False, False), 10, 0.05, "A master of both")
    assert "VRRP_Group(G1) Syncing instances to MASTER state" in a.log()
    lab.link(ns_a, "eth1", up=False)
    wait_for(lambda: holds(ns_b) == (True, True), 5, 0.02, "B takes over both instances")
    assert holds(ns_a) == (False, False)
    assert "VRRP_Group(G1) Syncing instances to FAULT state" in a.log()
    assert "VRRP_Group(G1) Syncing instances to MASTER state" in b.log()
    wait_for(lambda: (tmp_path / "notify-b.log").exists() and "GROUP G1 MASTER 0"
             in (tmp_path / "notify-b.log").read_text(), 5, 0.05, "B's group notify script")
    assert "GROUP G1 FAULT 0" in (tmp_path / "notify-a.log").read_text()
    lab.link(ns_a, "eth1", up=True)
    wait_for(lambda: holds(ns_a) == (True, True) and holds(ns_b) == (False, False), 10, 0.05, "A preempts both")
    a.stop()
    b.stop()


def test_ipv6_unicast_peers_between_two_vrrpd_nodes(lab, tmp_path):
    vip6 = "2001:db8:58::100"
    ns_a = lab.host("a", f"{V6_NET}.1/24")
    ns_b = lab.host("b", f"{V6_NET}.2/24")
    for ns, own in ((ns_a, "2001:db8:58::1"), (ns_b, "2001:db8:58::2")):
        lab.ip("addr", "add", f"{own}/64", "dev", "eth0", "nodad", ns=ns)

    def conf(router, prio, src, peer):
        extra = f"    unicast_src_ip {src}\n    unicast_peer {{\n        {peer}\n    }}\n"
        return _global(router) + _v6_conf("VI6", 68, prio, [f"{vip6}/64"], extra=extra)

    a = _Node(lab, ns_a, tmp_path, "A", conf("a", 150, "2001:db8:58::1", "2001:db8:58::2"))
    b = _Node(lab, ns_b, tmp_path, "B", conf("b", 100, "2001:db8:58::2", "2001:db8:58::1"))
    wait_for(lambda: _has_addr6(lab, ns_a, vip6), 10, 0.05, "A MASTER")
    time.sleep(1.0)
    assert not _has_addr6(lab, ns_b, vip6), "B must hear A's unicast adverts"
    a.stop()
    wait_for(lambda: _has_addr6(lab, ns_b, vip6), 5, 0.02, "B takes over after A's priority 0")
    assert "(VI6) Backup received priority 0 advertisement" in b.log() or "Entering MASTER STATE" in b.log()
    b.stop()


def _hmac_block(key_hex, active=1, extra=""):
    return (f"    auth_hmac {{\n        key {active} hex:{key_hex}\n        active_key {active}\n{extra}    }}\n")


@pytest.mark.parametrize("version,unicast,family", [(2, False, 4), (3, True, 4), (3, False, 4), (3, True, 6),
                                                    (3, False, 6)])
def test_auth_hmac_pair_of_vrrpd_nodes_and_a_node_with_the_wrong_key(lab, tmp_path, version, unicast, family):
    """Two vrrpd nodes sign and verify each other's adverts (v2/v3, multicast/unicast, IPv4/IPv6); a third
    node with another key is not believed: it counts invalid HMACs and claims the VIP for itself."""
    advert = 1 if version == 2 else 0.1
    net = "10.57.0"
    nodes_ns = [lab.host(n, f"{net}.{i + 1}/24") for i, n in enumerate("abc")]
    own6 = [f"2001:db8:57::{i + 1}" for i in range(3)]
    if family == 6:
        for ns, own in zip(nodes_ns, own6):
            lab.ip("addr", "add", f"{own}/64", "dev", "eth0", "nodad", ns=ns)
        for ns in nodes_ns:
            wait_link_local(lab, ns)
    vip = f"{net}.100/24" if family == 4 else "2001:db8:57::100/64"
    addrs = [f"{net}.{i + 1}" for i in range(3)] if family == 4 else own6

    def conf(i, prio, key):
        extra = _hmac_block(key)
        if unicast:
            peers = "".join(f"        {a}\n" for j, a in enumerate(addrs) if j != i)
            extra += f"    unicast_src_ip {addrs[i]}\n    unicast_peer {{\n{peers}    }}\n"
        return _global(f"h{i}") + _v6_conf("VIH", 57, prio, [vip], advert=advert, version=version, extra=extra)

    good, other = HMAC_KEY.hex(), bytes(range(100, 132)).hex()
    a = _Node(lab, nodes_ns[0], tmp_path, "A", conf(0, 150, good))
    b = _Node(lab, nodes_ns[1], tmp_path, "B", conf(1, 100, good))
    vip_ip = vip.split("/")[0]

    def holds(ns):
        return _has_addr6(lab, ns, vip_ip) if family == 6 else lab.has_address(ns, vip_ip)

    wait_for(lambda: holds(a.ns), 10, 0.02, "A MASTER")
    time.sleep(4 * advert + 0.5)
    assert not holds(b.ns), "B must believe A's signed adverts"
    assert "authentication" not in b.log() and "authentication" not in a.log(), (a.log(), b.log())
    c = _Node(lab, nodes_ns[2], tmp_path, "C", conf(2, 120, other))
    wait_for(lambda: holds(c.ns), 4 * advert + 5, 0.02, "C with the wrong key takes the VIP too")
    wait_for(lambda: "invalid authentication HMAC from" in c.log(), 5, 0.05, "C rejects A's adverts")
    assert holds(a.ns) and not holds(b.ns), "A and B ignore C's adverts"
    wait_for(lambda: "invalid authentication HMAC from" in a.log(), 5, 0.05, "A rejects C's adverts")
    c.stop()
    a.stop()
    wait_for(lambda: holds(b.ns), 4 * advert + 2, 0.02, "B takes over after A's signed priority 0")
    b.stop()


# -- BFD (RFC 5880/5881): vrrpd against vrrpd, FRR's bfdd and keepalived's BFD -----------------------

BFD_NET = "10.58.0"


def _bfd_block(name, neighbor, source, min_rx=50, min_tx=50, mult=3, extra=""):
    return (f"bfd_instance {name} {{\n    neighbor_ip {neighbor}\n    source_ip {source}\n    min_rx {min_rx}\n"
            f"    min_tx {min_tx}\n    multiplier {mult}\n{extra}}}\n")


def _bfd_tracking_instance(prio=100, weight=20, bfd="BFD4", vip=f"{BFD_NET}.100/24", advert=1):
    return _v6_conf("VIB", 58, prio, [vip], advert=advert, version=3,
                    extra=f"    track_bfd {{\n        {bfd} weight {weight}\n    }}\n")


class _Bfdd:
    """FRR's bfdd alone (no zebra, no watchfrr) in a lab namespace, driven with vtysh."""

    def __init__(self, lab, ns, conf_text):
        require(os.path.exists("/usr/lib/frr/bfdd") and shutil.which("vtysh") is not None, "needs FRR (frr)")
        import tempfile

        self.lab, self.ns = lab, ns
        # bfdd runs as user frr: its directory must be reachable, which pytest's tmp_path is not
        self.dir = Path(tempfile.mkdtemp(prefix="vrrpd-frr-"))
        os.chmod(self.dir, 0o755)
        (self.dir / "vty").mkdir()
        (self.dir / "bfdd.conf").write_text(conf_text)
        sh(["chown", "-R", "frr:frr", str(self.dir)])
        self.start()

    def close(self):
        try:
            self.kill()
        except (OSError, ValueError, AssertionError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        d = self.dir
        self.lab.run(self.ns, ["/usr/lib/frr/bfdd", "-d", "-f", str(d / "bfdd.conf"), "-i", str(d / "bfdd.pid"),
                               "--vty_socket", str(d / "vty"), "--bfdctl", str(d / "bfdd.sock"), "-u", "frr",
                               "-g", "frr", "-A", "127.0.0.1", "-z", str(d / "zserv.api")])
        wait_for(lambda: (d / "bfdd.pid").exists(), 10, 0.05, "bfdd started")

    def vtysh(self, *commands):
        argv = ["vtysh", "--vty_socket", str(self.dir / "vty"), "-d", "bfdd"]
        for c in commands:
            argv += ["-c", c]
        return self.lab.run(self.ns, argv, check=False).stdout

    def peers(self):
        """`show bfd peers json` by peer address (multihop sessions as 'ADDRESS multihop')."""
        import json

        try:
            return {p["peer"] + (" multihop" if p.get("multihop") else ""): p
                    for p in json.loads(self.vtysh("show bfd peers json") or "[]")}
        except ValueError:
            return {}

    def kill(self):
        if not (self.dir / "bfdd.pid").exists():
            return
        pid = int((self.dir / "bfdd.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5, 0.02, "bfdd gone")
        (self.dir / "bfdd.pid").unlink()


def _frr_conf(peers):
    body = "".join(f" peer {p} local-address {la}\n  receive-interval {rx}\n  transmit-interval {tx}\n"
                   f"  detect-multiplier 3\n  no shutdown\n !\n" for p, la, rx, tx in peers)
    return f"bfd\n{body}!\n"


def test_bfd_sessions_with_frr_bfdd_come_up_negotiate_and_see_each_other_go(lab, tmp_path):
    ns_v = lab.host("v", f"{BFD_NET}.1/24")
    ns_f = lab.host("f", f"{BFD_NET}.2/24")
    for ns, own in ((ns_v, "fd00:58::1"), (ns_f, "fd00:58::2")):
        lab.ip("addr", "add", f"{own}/64", "dev", "eth0", "nodad", ns=ns)
    frr = _Bfdd(lab, ns_f, _frr_conf([(f"{BFD_NET}.1", f"{BFD_NET}.2", 120, 80),
                                      ("fd00:58::1", "fd00:58::2", 300, 300),
                                      (f"{BFD_NET}.1 multihop", f"{BFD_NET}.2", 300, 300)]))
    try:
        _frr_session_checks(lab, tmp_path, ns_v, frr)
    finally:
        frr.close()


def _frr_session_checks(lab, tmp_path, ns_v, frr):
    conf = (_global("v") + _bfd_block("BFD4", f"{BFD_NET}.2", f"{BFD_NET}.1", min_rx=100, min_tx=100)
            + _bfd_block("BFD6", "fd00:58::2", "fd00:58::1", min_rx=300, min_tx=300, extra="    hoplimit 255\n")
            + _bfd_block("BFDM", f"{BFD_NET}.2", f"{BFD_NET}.1", min_rx=300, min_tx=300,
                         extra="    multihop\n    max_hops 10\n")
            + _bfd_tracking_instance(prio=100, weight=20))
    node = _Node(lab, ns_v, tmp_path, "V", conf, control=True, wait=False)
    node.wait_started()
    wait_for(lambda: len(frr.peers()) == 3 and all(p.get("status") == "up" for p in frr.peers().values()), 10,
             0.1, "the three FRR sessions up")
    assert "(BFDM) Entering Up state" in node.log()
    wait_for(lambda: "Changing effective priority from 100 to 120" in node.log(), 5, 0.05, "track_bfd weight")
    p4, p6 = frr.peers()[f"{BFD_NET}.1"], frr.peers()["fd00:58::1"]
    # RFC 5880 section 6.8: FRR learned our intervals and multiplier; we send at max(our 100, its 120) ms and
    # detect after 3 x max(our 100, its 80) ms
    remote4 = (p4["remote-receive-interval"], p4["remote-transmit-interval"], p4["remote-detect-multiplier"])
    assert remote4 == (100, 100, 3)
    assert (p6["remote-receive-interval"], p6["remote-transmit-interval"]) == (300, 300)
    status = node.status()
    s4 = status["trackers"]["bfd_instance"]["BFD4"]
    assert s4["state"] == "Up" and s4["tx_interval_ms"] == 120 and s4["detect_time_ms"] == 300, s4
    assert 49152 <= s4["source_port"] <= 65535
    # the peer dies: we detect it and the priority falls; it comes back: Up again
    frr.kill()
    wait_for(lambda: "(BFD4) Expired after" in node.log(), 3, 0.02, "BFD4 expiry")
    wait_for(lambda: "Changing effective priority from 120 to 100" in node.log(), 3, 0.02, "priority back")
    assert "Tracked BFD instance BFD4 is DOWN" in node.log()
    frr.start()
    wait_for(lambda: node.log().count("(BFD4) Entering Up state") >= 2, 10, 0.05, "BFD4 up again")
    wait_for(lambda: node.log().count("Changing effective priority from 100 to 120") >= 2, 5, 0.05, "weight again")
    # FRR shuts the session down administratively: we go Down, but that is not a failure (RFC 5882)
    frr.vtysh("configure terminal", "bfd", f"peer {BFD_NET}.1 local-address {BFD_NET}.2", "shutdown")
    wait_for(lambda: "Neighbor Signaled Session Down" in node.log(), 5, 0.05, "AdminDown seen")
    time.sleep(0.3)
    assert node.log().count("Changing effective priority from 120 to 100") == 1
    frr.vtysh("configure terminal", "bfd", f"peer {BFD_NET}.1 local-address {BFD_NET}.2", "no shutdown")
    wait_for(lambda: node.log().count("(BFD4) Entering Up state") >= 3, 10, 0.05, "BFD4 up after no shutdown")
    # we die: FRR sees its detection time expire
    node.kill()
    wait_for(lambda: frr.peers()[f"{BFD_NET}.1"]["status"] == "down", 3, 0.02, "FRR sees us go")
    assert frr.peers()[f"{BFD_NET}.1"]["diagnostic"] == "control detection time expired"
    node.start()
    node.wait_started()
    wait_for(lambda: frr.peers()[f"{BFD_NET}.1"]["status"] == "up", 10, 0.1, "FRR sees us back")
    node.stop()
    wait_for(lambda: frr.peers()[f"{BFD_NET}.1"]["status"] == "down", 3, 0.02, "FRR hears our AdminDown")
    assert frr.peers()[f"{BFD_NET}.1"]["remote-diagnostic"] == "administratively down"


def test_bfd_sessions_with_keepalived_come_up_and_see_each_other_go(lab, tmp_path):
    ns_k = lab.host("k", f"{BFD_NET}.1/24")
    ns_v = lab.host("v", f"{BFD_NET}.2/24")
    for ns, own in ((ns_k, "fd00:58::1"), (ns_v, "fd00:58::2")):
        lab.ip("addr", "add", f"{own}/64", "dev", "eth0", "nodad", ns=ns)
    ka_conf = (_global("ka") + _bfd_block("BFDV", f"{BFD_NET}.2", f"{BFD_NET}.1", min_rx=100, min_tx=150,
                                          extra="    idle_tx 1000\n")
               + _bfd_block("BFDV6", "fd00:58::2", "fd00:58::1", min_rx=300, min_tx=300)  # keepalived's hoplimit 64
               + _bfd_tracking_instance(prio=100, weight=20, bfd="BFDV", vip=f"{BFD_NET}.101/24").replace(
                   "virtual_router_id 58", "virtual_router_id 59"))
    ka = _Node(lab, ns_k, tmp_path, "ka-bfd", ka_conf, keepalived=True, children="cb", wait=False)
    conf = (_global("v") + _bfd_block("BFDK", f"{BFD_NET}.1", f"{BFD_NET}.2", min_rx=120, min_tx=80, mult=4)
            + _bfd_block("BFDK6", "fd00:58::1", "fd00:58::2", min_rx=300, min_tx=300)
            + _bfd_tracking_instance(prio=100, weight=20, bfd="BFDK"))
    node = _Node(lab, ns_v, tmp_path, "V", conf, control=True, wait=False)
    node.wait_started()
    wait_for(lambda: "(BFDK) Entering Up state" in node.log(), 10, 0.05, "our session up")
    wait_for(lambda: "(BFDK6) Entering Up state" in node.log() and "(BFDV6) Entering Up state" in ka.log(), 10,
             0.05, "the IPv6 sessions up (both at keepalived's default hop limit 64)")
    wait_for(lambda: "Tracked BFD instance BFDV is UP" in ka.log(), 5, 0.05, "keepalived's session up")
    wait_for(lambda: "Changing effective priority from 100 to 120" in node.log(), 5, 0.05, "our track_bfd weight")
    wait_for(lambda: "Changing effective priority from 100 to 120" in ka.log(), 5, 0.05, "keepalived's weight")
    # RFC 5880 section 6.8: we send at max(our 80, its min_rx 100) ms; we detect after its 3 x max(our 120, its 150)
    s = node.status()["trackers"]["bfd_instance"]["BFDK"]
    assert (s["state"], s["tx_interval_ms"], s["detect_time_ms"]) == ("Up", 100, 450), s
    assert s["remote_discriminator"] and 49152 <= s["source_port"] <= 65535
    # keepalived dies: we see it within our detection time, and it comes back
    ka.kill(whole_namespace=True)
    wait_for(lambda: "(BFDK) Expired after 450 ms" in node.log(), 3, 0.02, "our expiry")
    wait_for(lambda: "Changing effective priority from 120 to 100" in node.log(), 3, 0.02, "priority back")
    ka.start()
    wait_for(lambda: node.log().count("(BFDK) Entering Up state") >= 2, 15, 0.05, "up again with keepalived")
    wait_for(lambda: ka.log().count("Tracked BFD instance BFDV is UP") >= 2, 5, 0.05, "keepalived up again")
    # we die: keepalived sees it (its detection time: our mult 4 x max(its 100, our 80) = 400 ms)
    node.kill()
    wait_for(lambda: "Tracked BFD instance BFDV is DOWN" in ka.log(), 3, 0.02, "keepalived sees us go")
    expired = re.findall(r"\(BFDV\) Expired after (\d+) ms", ka.log())
    assert expired and 400 <= int(expired[-1]) < 600, ka.log()[-2000:]  # keepalived prints the time it took
    node.start()
    node.wait_started()
    wait_for(lambda: ka.log().count("Tracked BFD instance BFDV is UP") >= 3, 15, 0.05, "keepalived sees us back")
    node.stop()
    ka.kill(whole_namespace=True)


def test_bfd_10ms_session_detects_a_dead_peer_and_the_tracking_master_fails_over_at_once(tmp_path):
    """RFC 5880 with min_rx = min_tx = 10 ms and multiplier 3: the peer's death is seen in tens of ms, and the
    MASTER tracking it leaves at once, far inside VRRP's own 3.6 s master-down interval at advert_int 1.
    (`make bench` measures the same for keepalived; 40 ms is the target, the margin is for a loaded machine.)"""
    require_root_netns()
    for attempt in range(3):
        try:
            got = bench_bfd_failover("vrrpd", tmp_path / str(attempt))
            break
        except BfdFlapped:
            if attempt == 2:
                raise
    print(f"BFD detection {got['bfd_detect'] * 1000:.1f} ms, backup holds the VIP after {got['bfd_failover']:.3f} s")
    assert got["bfd_detect"] <= 0.25, got
    assert got["bfd_failover"] <= got["bfd_detect"] + (256 - 100) / 256 + 0.4, got


BFD_FLOOD = r"""
import random, socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
import vrrpd
me, target, peer, disc, seconds = (vrrpd.ipaddress.ip_address(sys.argv[2]), vrrpd.ipaddress.ip_address(sys.argv[3]),
                                   vrrpd.ipaddress.ip_address(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rng = random.Random(3)

def udp(src, payload, ttl):
    head = struct.pack("!HHHH", 49152, 3784, 8 + len(payload), 0)
    return vrrpd.encode_ipv4(src, target, head + payload, ttl=ttl, protocol=17)

def bfd(your, state=vrrpd.BfdState.Down):
    return vrrpd.encode_bfd(vrrpd.BfdPacket(state, 12345, your, 3, 1000000, 50000))

kinds = [
    lambda: udp(peer, bfd(disc), 64),  # the peer's address and our discriminator, but not from the link (GTSM)
    lambda: udp(peer, bfd(disc), 254),
    lambda: udp(peer, bfd(disc ^ 0x5A5A), 255),  # a discriminator we never gave out
    lambda: udp(me, bfd(disc), 255),  # our discriminator from someone else
    lambda: udp(peer, bfd(disc)[:20], 255),  # bad lengths
    lambda: udp(peer, bfd(disc)[:3] + bytes([48]) + bfd(disc)[4:], 255),
    lambda: udp(peer, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))), 255),
]
sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    for make in kinds:
        raw.sendto(make(), (str(target), 0))
        sent += 1
    time.sleep(0.0005)
print(sent)
"""


def test_bfd_flood_of_malformed_and_spoofed_packets_never_flaps_a_live_session(lab, tmp_path):
    ns_v = lab.host("v", f"{BFD_NET}.1/24")
    ns_w = lab.host("w", f"{BFD_NET}.2/24")
    ns_x = lab.host("x", f"{BFD_NET}.66/24")
    # 200 ms x 5: what is proved is that no bad packet moves the session, not how a loaded 2-core machine
    # schedules a flooded Python process (the 10 ms test measures that)
    v = _Node(lab, ns_v, tmp_path, "V", _global("v") + _bfd_block("BW", f"{BFD_NET}.2", f"{BFD_NET}.1", 200, 200, 5),
              control=True, wait=False)
    w = _Node(lab, ns_w, tmp_path, "W", _global("w") + _bfd_block("BV", f"{BFD_NET}.1", f"{BFD_NET}.2", 200, 200, 5),
              control=True, wait=False)
    v.wait_started()
    w.wait_started()
    wait_for(lambda: "(BW) Entering Up state" in v.log() and "(BV) Entering Up state" in w.log(), 10, 0.05,
             "the session up on both sides")
    time.sleep(0.3)
    session = v.status()["trackers"]["bfd_instance"]["BW"]
    script = tmp_path / "bfd_flood.py"
    script.write_text(BFD_FLOOD)
    out = lab.run(ns_x, [PYTHON, str(script), str(HERE), f"{BFD_NET}.66", f"{BFD_NET}.1", f"{BFD_NET}.2",
                         str(session["local_discriminator"]), "2.5"], timeout=30).stdout
    assert int(out) > 2000, out
    after = v.status()["trackers"]["bfd_instance"]
    assert after["BW"]["state"] == "Up" and after["BW"]["local_discriminator"] == session["local_discriminator"]
    assert "Entering Down" not in v.log() + w.log() and v.log().count("(BW) Entering Up") == 1, (v.log(), w.log())
    bad = after["bad_packets"]
    assert {"bfd_ttl", "bfd_no_session", "bfd_spoofed", "bfd_length"} <= set(bad), bad
    assert sum(bad.values()) > int(out) * 0.9, bad
    assert len(v.log().splitlines()) < 60  # rate-limited
    v.stop()
    w.stop()


def test_two_address_owners_in_the_lab_the_lower_yields_or_a_deaf_one_makes_the_higher_step_down(lab, tmp_path):
    """keepalived 2.3.3: two routers both at priority 255. The lower address yields with a CONFIGURATION ERROR;
    when the lower one ignores adverts (owner_ignore_adverts), the higher one steps to 254 after two of its
    adverts, so that one router holds the VIP either way."""
    a, b = _pair(lab, tmp_path, _conf(priority=255, state="MASTER"), _conf(priority=255, state="MASTER"))
    _wait_holders(lab, [a, b], ["B"], timeout=6)  # B has the higher address
    _steady_single_master(lab, [a, b], 0.5)
    assert "both configured as address owner" in a.log() and "CONFIGURATION ERROR" in a.log()
    a.stop()
    b.stop()
    a.conf.write_text(_conf(priority=255, state="MASTER", instance_extra="    owner_ignore_adverts\n"))
    a.start()
    b.start()
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    assert "still advertising as address owner, please resolve - reducing our priority" in b.log()
    _steady_single_master(lab, [a, b], 0.5)
    assert "Dropping packet(s) from" in a.log() and "since we are address owner" in a.log()
    a.stop()  # the deaf owner leaves: B is the owner again, at 255
    _wait_holders(lab, [a, b], ["B"], timeout=3)
    b.stop()


def test_bfd_reload_keeps_an_unchanged_session_and_restarts_a_changed_one(lab, tmp_path):
    ns_v = lab.host("v", f"{BFD_NET}.1/24")
    ns_w = lab.host("w", f"{BFD_NET}.2/24")
    conf_v = _global("v") + _bfd_block("BW", f"{BFD_NET}.2", f"{BFD_NET}.1", 100, 100)
    v = _Node(lab, ns_v, tmp_path, "V", conf_v, control=True, wait=False)
    w = _Node(lab, ns_w, tmp_path, "W", _global("w") + _bfd_block("BV", f"{BFD_NET}.1", f"{BFD_NET}.2", 100, 100),
              control=True, wait=False)
    wait_for(lambda: "(BW) Entering Up state" in v.log() and "(BV) Entering Up state" in w.log(), 15, 0.05,
             "the session up")
    disc = v.status()["trackers"]["bfd_instance"]["BW"]["local_discriminator"]
    v.reload(conf_v.replace("router_id v", "router_id v2"))  # the session is not touched
    time.sleep(0.5)
    s = v.status()["trackers"]["bfd_instance"]["BW"]
    assert s["state"] == "Up" and s["local_discriminator"] == disc
    assert "Entering Down" not in w.log()
    v.reload(conf_v.replace("min_tx 100", "min_tx 60"))  # a new session: the old one says AdminDown first
    wait_for(lambda: "(BV) Entering Down state (Local diagnostic - Neighbor Signaled Session Down)" in w.log(), 5,
             0.05, "the peer hears the old session go")
    wait_for(lambda: v.status()["trackers"]["bfd_instance"]["BW"]["state"] == "Up", 10, 0.1, "the new session up")
    s = v.status()["trackers"]["bfd_instance"]["BW"]
    assert s["local_discriminator"] != disc and s["tx_interval_ms"] == 100  # max(our 60, its min_rx 100)
    v.stop()
    w.stop()


HMAC_HOSTILE = RAW_VRRP_PEER + r"""
master, seconds = IP4(sys.argv[2]), float(sys.argv[3])
retired = vrrpd.AuthHmac({9: bytes(range(9, 41))}, 9)
captured, stamps, sent, end = [], [], 0, time.monotonic() + seconds
while time.monotonic() < end:
    while True:
        try:
            data = rx.recv(2000)
        except BlockingIOError:
            break
        ip = vrrpd.decode_ipv4(data)
        if ip.src == master:
            stamps.append(time.monotonic())
            captured.append(ip.payload)
    for pdu in captured[-3:]:  # the master's own signed adverts, replayed from its address
        hostile = [pdu, pdu[:2] + b"\xff" + pdu[3:], pdu[:-1], pdu[:-28]]  # replay, tamper, truncate, strip
        plain = vrrpd.auth_hmac_split(pdu, 4)[0]
        hostile.append(plain + retired.sign(plain, master, 3, 51, time.time_ns()))  # a key nobody has any more
        for payload in hostile:
            tx.sendto(vrrpd.encode_ipv4(master, group, payload), (str(group), 0))
            sent += 1
    time.sleep(0.001)
gaps = [b - a for a, b in zip(stamps, stamps[1:])]
print(sent, len(stamps), max(gaps) if gaps else -1)
"""


def test_auth_hmac_replayed_tampered_and_retired_key_adverts_in_the_lab_change_nothing(lab, tmp_path):
    """A node on the link replays the master's signed adverts from the master's own address, tampers with them,
    cuts them and signs with a retired key: the backup counts each kind and drops it, stays BACKUP, and the
    master's adverts keep their interval."""
    block = _hmac_block(HMAC_KEY.hex())
    a = _Node(lab, lab.host("a", f"{LAB_NET}.1/24"), tmp_path, "A",
                 _global("a") + _v6_conf("VI_1", 51, 150, [f"{VIP}/24"], advert=0.1, extra=block),
              control=True, wait=False)
    # B starts once A is MASTER: started together, whichever of the two starts faster could win the first election
    _wait_holders(lab, [a], ["A"], timeout=10)
    b = _Node(lab, lab.host("b", f"{LAB_NET}.2/24"), tmp_path, "B",
                 _global("b") + _v6_conf("VI_1", 51, 100, [f"{VIP}/24"], advert=0.1, extra=block),
              control=True, wait=False)
    _wait_holders(lab, [a, b], ["A"], timeout=10)
    time.sleep(0.5)
    ns_x = lab.host("x", f"{LAB_NET}.66/24")
    script = tmp_path / "hmac_hostile.py"
    script.write_text(HMAC_HOSTILE)
    out = lab.run(ns_x, [PYTHON, str(script), str(HERE), f"{LAB_NET}.1", "3"], timeout=30).stdout.split()
    sent, adverts, max_gap = int(out[0]), int(out[1]), float(out[2])
    assert sent > 1000 and adverts >= 20, out
    assert max_gap < 0.1 + 0.15, out  # the master's interval held (a margin for a loaded machine)
    assert _holders(lab, [a, b], VIP) == ["A"]
    assert b.log().count("Entering MASTER STATE") == 0 and a.log().count("Entering MASTER STATE") == 1
    bad = b.instance()["stats"]["bad_packets"]
    for counter in ("auth_ext_replay", "auth_ext_invalid_hmac", "auth_ext_missing", "auth_ext_unknown_key"):
        assert bad.get(counter, 0) > 0, bad
    assert len(b.log().splitlines()) < 80  # RFC 9568: each kind logged once
    a.stop()
    b.stop()


def _capture(lab, ns, bpf, count, timeout=15):
    """Start tcpdump in ns (link-level headers, µs timestamps); returns the Popen whose stdout has the lines."""
    require(shutil.which("tcpdump") is not None, "needs tcpdump")
    proc = lab.exec(ns, ["timeout", str(timeout), "tcpdump", "-i", "eth0", "-n", "-e", "-v", "-l", "-tt",
                         "-c", str(count), bpf], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)
    return proc


def test_neighbour_adverts_are_paced_by_gna_interval_and_carry_the_router_flag(lab, tmp_path):
    vip6 = "2001:db8:59::100"
    client = lab.host("c", f"{V6_NET}.9/24")
    ns = lab.host("n", f"{V6_NET}.1/24")
    wait_link_local(lab, ns)
    lab.run(ns, ["sysctl", "-qw", "net.ipv6.conf.eth0.forwarding=1"])
    cap = _capture(lab, client, "icmp6 and ip6[40] == 136", 3)
    text = (_global("n", "    vrrp_gna_interval 0.4\n    vrrp_garp_master_repeat 3\n    vrrp_garp_master_delay 0\n")
            + _v6_conf("VI6", 69, 100, [f"{vip6}/64"]))
    node = _Node(lab, ns, tmp_path, "N", text)
    out, _ = cap.communicate(timeout=20)
    lines = [line for line in out.splitlines() if "neighbor advertisement" in line and vip6 in line]
    assert len(lines) == 3, out
    stamps = [float(line.split()[0]) for line in lines]
    assert all(b - a >= 0.3 for a, b in zip(stamps, stamps[1:])), stamps
    assert all("Flags [router, override]" in line and "[icmp6 sum ok]" in line and "hlim 255" in line
               for line in lines), lines
    node.stop()


def test_ipv6_vmac_carries_the_vip_and_its_neighbour_adverts(lab, tmp_path):
    vip6 = "2001:db8:5a::100"
    client = lab.host("c", f"{V6_NET}.9/24")
    ns = lab.host("n", f"{V6_NET}.1/24")
    wait_link_local(lab, ns)
    cap = _capture(lab, client, "icmp6 and ip6[40] == 136", 1)
    node = _Node(lab, ns, tmp_path, "N", _global("n") + _v6_conf("VI6", 70, 100, [f"{vip6}/64"],
                                                                extra="    use_vmac vrrp6.70\n"))
    out, _ = cap.communicate(timeout=20)
    assert "00:00:5e:00:02:46 > 33:33:00:00:00:01" in out and f"tgt is {vip6}" in out, out
    assert _has_addr6(lab, ns, vip6, "vrrp6.70")
    link = lab.ip("-d", "link", "show", "vrrp6.70", ns=ns).stdout
    assert "addrgenmode random" in link and "00:00:5e:00:02:46" in link
    node.stop()
    assert lab.ip("link", "show", "vrrp6.70", ns=ns, check=False).returncode != 0


def test_vmac_keeps_the_clients_neighbour_entry_across_failover(lab, tmp_path):
    vip = f"{V6_NET}.100"
    client = lab.host("c", f"{V6_NET}.9/24")
    ns_a = lab.host("a", f"{V6_NET}.1/24")
    ns_b = lab.host("b", f"{V6_NET}.2/24")
    extra = "    use_vmac\n"
    a = _Node(lab, ns_a, tmp_path, "A", _global("a") + _v6_conf("VI_1", 51, 150, [f"{vip}/24"], extra=extra))
    b = _Node(lab, ns_b, tmp_path, "B", _global("b") + _v6_conf("VI_1", 51, 100, [f"{vip}/24"], extra=extra))
    wait_for(lambda: lab.has_address(ns_a, vip, "vrrp.51"), 10, 0.05, "A holds the VIP on vrrp.51")
    assert "macvlan mode private" in lab.ip("-d", "link", "show", "vrrp.51", ns=ns_b).stdout
    adverts, _ = _capture(lab, client, "ip proto 112", 2).communicate(timeout=20)
    assert adverts.count("00:00:5e:00:01:33 > 01:00:5e:00:00:12") == 2, adverts  # sent from the VMAC
    assert lab.run(client, ["ping", "-c3", "-i0.2", "-W1", vip], check=False).returncode == 0
    assert _neigh_mac(lab, client, vip) == "00:00:5e:00:01:33"
    a.stop()
    wait_for(lambda: lab.has_address(ns_b, vip, "vrrp.51"), 5, 0.02, "B takes over")
    assert lab.ip("link", "show", "vrrp.51", ns=ns_a, check=False).returncode != 0, "VMAC left behind on stop"
    assert lab.run(client, ["ping", "-c3", "-i0.2", "-W1", vip], check=False).returncode == 0, "VIP unreachable"
    assert _neigh_mac(lab, client, vip) == "00:00:5e:00:01:33"
    b.stop()


def test_reload_swaps_the_firewall_set_and_keeps_an_ipv6_master(lab, tmp_path):
    require(shutil.which("nft") is not None, "needs nft")
    vip6 = "2001:db8:5b::100"
    ns_a = lab.host("a", f"{V6_NET}.1/24")
    ns_b = lab.host("b", f"{V6_NET}.2/24")
    wait_link_local(lab, ns_a)
    wait_link_local(lab, ns_b)

    def conf(router, prio, vip4):
        return (_global(router, "    vrrp_strict\n") + _v6_conf("VI_4", 81, prio, [f"{vip4}/24"])
                + _v6_conf("VI_6", 82, prio, [f"{vip6}/64"]))

    a = _Node(lab, ns_a, tmp_path, "A", conf("a", 150, f"{V6_NET}.100"))
    b = _Node(lab, ns_b, tmp_path, "B", conf("b", 100, f"{V6_NET}.100"))
    wait_for(lambda: _has_addr6(lab, ns_a, vip6) and lab.has_address(ns_a, f"{V6_NET}.100"), 10, 0.05, "A MASTER")
    assert f"{V6_NET}.100" in lab.run(ns_a, ["nft", "list", "table", "inet", "vrrpd"]).stdout
    a.conf.write_text(conf("a", 150, f"{V6_NET}.101"))
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: lab.has_address(ns_a, f"{V6_NET}.101"), 5, 0.05, "the new VIP after the reload")
    table = wait_for(lambda: (lambda t: t if f"{V6_NET}.101" in t else "")(
        lab.run(ns_a, ["nft", "list", "table", "inet", "vrrpd"]).stdout), 5, 0.05, "the new set")
    assert f"{V6_NET}.100" not in table and vip6 in table
    end = time.monotonic() + 1.5
    while time.monotonic() < end:  # the IPv6 instance kept advertising through the reload
        assert _has_addr6(lab, ns_a, vip6) and not _has_addr6(lab, ns_b, vip6)
        time.sleep(0.05)
    a.stop()
    b.stop()


def test_strict_mode_master_drops_traffic_to_its_vip_and_the_table_goes_away(lab, tmp_path):
    require(shutil.which("nft") is not None, "needs nft")
    vip = f"{V6_NET}.100"
    client = lab.host("c", f"{V6_NET}.9/24")
    ns = lab.host("n", f"{V6_NET}.1/24")
    text = _global("n", "    vrrp_strict\n") + _v6_conf("VI_1", 51, 100, [f"{vip}/24"])
    node = _Node(lab, ns, tmp_path, "N", text)
    wait_for(lambda: lab.has_address(ns, vip), 10, 0.05, "the node becomes MASTER")
    assert lab.run(client, ["ping", "-c1", "-W1", vip], check=False).returncode != 0
    assert lab.run(client, ["ping", "-c1", "-W1", f"{V6_NET}.1"], check=False).returncode == 0
    assert vip in lab.run(ns, ["nft", "list", "table", "inet", "vrrpd"]).stdout
    # a crash leaves the table; the next start replaces it, and a clean stop removes it
    node.kill()
    assert lab.run(ns, ["nft", "list", "table", "inet", "vrrpd"], check=False).returncode == 0
    lab.ip("addr", "del", f"{vip}/24", "dev", "eth0", ns=ns)
    node.start()
    wait_for(lambda: lab.has_address(ns, vip), 10, 0.05, "MASTER again")
    assert "Deleting old inet vrrpd table" in node.log()
    node.stop()
    assert "vrrpd" not in lab.run(ns, ["nft", "list", "tables"]).stdout
    # with `accept` the VIP answers
    node.conf.write_text(text.replace("    version 3\n", "    version 3\n    accept\n"))
    node.start()
    wait_for(lambda: lab.has_address(ns, vip), 10, 0.05, "MASTER with accept")
    assert lab.run(client, ["ping", "-c1", "-W1", vip], check=False).returncode == 0
    node.stop()


# --------------------------------------------------------------------------------------------
# D2. Routes and rules: virtual_routes / virtual_rules follow MASTER, static_* live with the daemon
# --------------------------------------------------------------------------------------------

import socket  # noqa: E402
import struct  # noqa: E402


def test_route_lines_read_keepalived_grammar_into_the_model(tmp_path):
    etc = tmp_path / "iproute2"
    etc.mkdir()
    (etc / "rt_tables").write_text("# comment\n100 vrrp_test\n1000 big one ignored\n")
    (etc / "rt_protos").write_text("99 mine\n")
    config, diags = parse_ok(f"""
global_defs {{
    iproute_etc_dir {etc}
}}
static_routes {{
    10.9.0.0/16 via 10.55.0.254 dev eth0 table vrrp_test metric 5 protocol mine no_track
    blackhole 10.10.0.0/16 table 4096
    to unreachable 10.11.0.0/16
    2001:db8:9::/64 dev eth0 metric 1024 mtu lock 1400 rtt 10ms advmss 1300 pref high
    default table 101 nexthop via 10.55.0.1 dev eth0 weight 2 nexthop via 10.55.0.2 onlink
    src 10.55.0.100 10.12.0.0/24 dev eth0 scope link append
}}
static_rules {{
    from 10.55.0.100 table vrrp_test priority 100
    not to 10.1.1.1/32 fwmark 0x10/0xff lookup main preference 101 iif eth0 oif eth1
    from 2001:db8::/64 prohibit priority 102
    ipproto udp dport 50-60 sport 7-7 uidrange 10-20 goto 200 priority 103
    fwmark 7 table main
}}
""")
    r = config.static_routes
    assert [x.table for x in r] == [100, 4096, 254, 254, 101, 254]
    assert r[0].via == ipaddress.ip_address("10.55.0.254") and r[0].metric == 5 and r[0].dev == "eth0"
    assert r[0].protocol == 99 and r[0].no_track  # a tracked route is forced to protocol 18
    assert r[1].type == 6 and r[1].type_given and r[1].protocol == 18
    assert r[2].type == 7  # `to TYPE PREFIX`
    assert r[3].family == 6 and r[3].metrics == {2: 1400, 1: 1 << 2, 8: 1300, 4: 80} and r[3].pref == 1
    assert r[4].dst == ipaddress.ip_interface("0.0.0.0/0")
    assert [(n.via, n.dev, n.weight, n.onlink) for n in r[4].nexthops] == [
        (ipaddress.ip_address("10.55.0.1"), "eth0", 2, False), (ipaddress.ip_address("10.55.0.2"), None, 1, True)]
    assert r[5].prefsrc == ipaddress.ip_address("10.55.0.100") and r[5].scope == 253 and r[5].mode == "append"
    q = config.static_rules
    assert [x.priority for x in q] == [100, 101, 102, 103, 16384]
    assert q[0].table == 100 and q[0].action == vrrpd.FR_ACT_TO_TBL and q[0].protocol == 18
    assert q[1].invert and (q[1].fwmark, q[1].fwmask) == (16, 255) and (q[1].iif, q[1].oif) == ("eth0", "eth1")
    assert q[2].family == 6 and q[2].action == vrrpd.FR_ACT_PROHIBIT
    assert q[3].ipproto == 17 and q[3].dport == (50, 60) and q[3].sport == (7, 7) and q[3].goto == 200
    assert any("rule has no preference specified - setting to 16384" in m for m in messages(diags))


@pytest.mark.parametrize("line, message", [
    ("10.9.0.0/33 dev eth0", "invalid destination '10.9.0.0/33'"),
    ("10.9.0.0/16 via 10.55.0.300", "invalid via address '10.55.0.300'"),
    ("10.9.0.0/16 src fe80::1", "cannot mix IPv4 and IPv6"),
    ("10.9.0.0/16 table nosuchtable", "invalid table 'nosuchtable'"),
    ("10.9.0.0/16 dev eth0 bogus", "unknown route keyword 'bogus'"),
    ("via 10.55.0.1", "route must have a destination"),
    ("10.9.0.0/16 from 10.1.0.0/16", "route from address only supported with IPv6"),
    ("10.9.0.0/16 nexthop via 10.1.1.1 weight 0", "nexthop weight 0 outside [1, 256]"),
])
def test_invalid_route_lines_are_errors_at_their_line(line, message):
    text = inst(BASE + f"\nvirtual_routes {{\n    10.8.0.0/16 dev eth0\n    {line}\n}}")
    config, diags = vrrpd.parse_config_text(text, "test.conf")
    errors = messages(diags, vrrpd.Severity.ERROR)
    where = [n for n, t in enumerate(text.splitlines(), 1) if t.strip() == line][0]
    assert len(errors) == 1 and errors[0].startswith(f"test.conf:{where}: error: route ") and message in errors[0], \
        errors
    assert len(config.vrrp_instances[0].virtual_routes) == 1  # the good line is kept


@pytest.mark.parametrize("line, message", [
    ("from 10.1.1.300 table 100", "invalid from '10.1.1.300'"),
    ("from 10.1.1.1 priority 5", "rule needs an action"),
    ("from 10.1.1.1 table 0 priority 5", "table 0 is not allowed"),
    ("from 10.1.1.1 to fe80::/64 table 5", "cannot mix IPv4 and IPv6"),
    ("from 10.1.1.1 table 5 pref 7", "unknown rule option 'pref'"),
    ("goto 5 priority 10", "must be to a higher preference"),
    ("dport 9-8 table 5", "invalid dport range '9-8'"),
])
def test_invalid_rule_lines_are_errors_at_their_line(line, message):
    text = "static_rules {\n    from 10.2.0.0/16 table 7 priority 7\n" + f"    {line}\n" + "}\n"
    config, diags = vrrpd.parse_config_text(text, "test.conf")
    errors = messages(diags, vrrpd.Severity.ERROR)
    assert len(errors) == 1 and errors[0].startswith("test.conf:3: error: rule ") and message in errors[0], errors
    assert len(config.static_rules) == 1


def test_static_ipaddress_without_dev_uses_default_interface():
    config, _ = parse_ok("global_defs {\n    default_interface eth7\n}\n"
                         "static_ipaddress {\n    192.168.9.1/24\n    192.168.9.2/24 dev eth1 label eth1:9\n}\n")
    assert [(str(v.address), v.dev, v.label) for v in config.static_ipaddress] == [
        ("192.168.9.1/24", "eth7", None), ("192.168.9.2/24", "eth1", "eth1:9")]


def test_track_group_blocks_and_references():
    text = ("track_group TG {\n    group {\n        VI_1\n    }\n}\n"
            "static_routes {\n    10.0.0.0/8 dev eth1 track_group TG\n    10.1.0.0/16 dev eth1 track_group NOPE\n}\n")
    config, diags = vrrpd.parse_config_text(text + MINIMAL, "t.conf")
    assert config.track_groups["TG"].group == ["VI_1"]
    assert [r.track_group for r in config.static_routes] == ["TG", "NOPE"]
    assert messages(diags, vrrpd.Severity.ERROR) == [
        "t.conf:8: error: track_group NOPE not found (track_group NAME { group { VI_1 } })"]


def test_route_request_bytes_match_the_rtmsg_layout():
    route, _ = vrrpd.parse_route_line("10.9.0.0/16 via 10.55.0.254 dev eth0 table 1000 metric 5".split())
    msg_type, flags, payload = vrrpd.route_request(route, {"eth0": 7}.get)
    assert msg_type == vrrpd.RTM_NEWROUTE and flags == vrrpd.NLM_F_ACK | vrrpd.NLM_F_CREATE
    # family, dst_len, src_len, tos, table (>255: 0 and RTA_TABLE), protocol 18, scope universe, unicast, flags
    assert payload[:12] == struct.pack("=BBBBBBBBI", socket.AF_INET, 16, 0, 0, 0, 18, 0, 1, 0)
    attrs = dict(vrrpd.nla_parse_list(payload[12:]))
    assert attrs[vrrpd.RTA_TABLE] == struct.pack("=I", 1000) and attrs[vrrpd.RTA_DST] == bytes([10, 9, 0, 0])
    assert attrs[vrrpd.RTA_GATEWAY] == bytes([10, 55, 0, 254]) and attrs[vrrpd.RTA_OIF] == struct.pack("=I", 7)
    assert attrs[vrrpd.RTA_PRIORITY] == struct.pack("=I", 5)
    # a delete carries the same attributes, scope nowhere, and no type unless one was configured
    msg_type, flags, deleted = vrrpd.route_request(route, {"eth0": 7}.get, delete=True)
    assert msg_type == vrrpd.RTM_DELROUTE and flags == vrrpd.NLM_F_ACK
    assert deleted[:12] == struct.pack("=BBBBBBBBI", socket.AF_INET, 16, 0, 0, 0, 18, 255, 0, 0)
    assert deleted[12:] == payload[12:]
    info = vrrpd.parse_route_msg(payload)
    assert (info.family, info.table, info.protocol, str(info.dst), info.metric, info.oif) == (
        4, 1000, 18, "10.9.0.0/16", 5, 7)


def test_multipath_and_rule_requests():
    route, _ = vrrpd.parse_route_line("default nexthop via 10.0.0.1 dev eth0 weight 3 nexthop via 10.0.0.2".split())
    _t, _f, payload = vrrpd.route_request(route, {"eth0": 4}.get)
    hops = dict(vrrpd.nla_parse_list(payload[12:]))[vrrpd.RTA_MULTIPATH]
    length, flags, hop_count, ifindex = struct.unpack_from("=HBBi", hops)
    assert (length, flags, hop_count, ifindex) == (16, 0, 2, 4)  # rtnh_hops is weight - 1
    assert hops[8:16] == struct.pack("=HH", 8, vrrpd.RTA_GATEWAY) + bytes([10, 0, 0, 1])
    assert struct.unpack_from("=HBBi", hops, 16) == (16, 0, 0, 0)
    rule, _ = vrrpd.parse_rule_line("not from 10.1.0.0/16 iif eth0 fwmark 0x10/0xff table 300 priority 9".split())
    msg_type, flags, payload = vrrpd.rule_request(rule)
    assert msg_type == vrrpd.RTM_NEWRULE and flags == vrrpd.NLM_F_ACK | vrrpd.NLM_F_CREATE | vrrpd.NLM_F_EXCL
    assert payload[:12] == struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 16, 0, 0, 0, 0, 1, 2)  # INVERT
    attrs = dict(vrrpd.nla_parse_list(payload[12:]))
    assert attrs[vrrpd.FRA_TABLE] == struct.pack("=I", 300) and attrs[vrrpd.FRA_PRIORITY] == struct.pack("=I", 9)
    assert attrs[vrrpd.FRA_IIFNAME] == b"eth0\0" and attrs[vrrpd.FRA_PROTOCOL] == b"\x12"
    assert (attrs[vrrpd.FRA_FWMARK], attrs[vrrpd.FRA_FWMASK]) == (struct.pack("=I", 16), struct.pack("=I", 255))


def _route_lab_conf(name, priority, state, etc, extra_routes="", extra_rules=""):
    routes = ("    virtual_routes {\n"
              f"        src {VIP} 10.9.0.0/16 via {LAB_NET}.254 dev eth0 table vrrp_test metric 5\n"
              "        blackhole 10.10.0.0/16 table vrrp_test\n"
              f"        default table 101 nexthop via {LAB_NET}.21 dev eth0 weight 2"
              f" nexthop via {LAB_NET}.22 dev eth0\n"
              "        2001:db8:9::/64 dev eth0 table vrrp_test mtu lock 1400\n"
              f"{extra_routes}    }}\n"
              "    virtual_rules {\n"
              f"        from {VIP} table vrrp_test priority 100\n"
              "        from 2001:db8::/64 table vrrp_test priority 101\n"
              f"{extra_rules}    }}\n")
    static = ("static_routes {\n"
              f"    10.77.0.0/16 via {LAB_NET}.254 table 200\n}}\n"
              "static_rules {\n    to 10.77.0.0/16 table 200 priority 200\n}\n")
    text = _conf(name=name, priority=priority, state=state, instance_extra=routes,
                 global_extra=f"    iproute_etc_dir {etc}\n")
    return static + text.replace(f"router_id {name}-{priority}", f"router_id {name}-{priority}")


def _routes(lab, ns, table, family="-4"):
    out = lab.ip(family, "route", "show", "table", str(table), ns=ns, check=False).stdout
    return [" ".join(line.split()) for line in out.splitlines() if line.strip()]


def _rules(lab, ns, family="-4"):
    return [" ".join(line.split()) for line in lab.ip(family, "rule", ns=ns).stdout.splitlines()]


def _route_etc(tmp_path):
    etc = tmp_path / "iproute2"
    etc.mkdir(exist_ok=True)
    (etc / "rt_tables").write_text("100 vrrp_test\n")
    return etc


def test_lab_virtual_routes_and_rules_follow_the_master_static_ones_stay(lab, tmp_path):
    etc = _route_etc(tmp_path)
    a, b = _pair(lab, tmp_path, _route_lab_conf("VI_1", 150, "MASTER", etc),
                 _route_lab_conf("VI_1", 100, "BACKUP", etc))
    for ns in (a.ns, b.ns):
        lab.ip("-6", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad", ns=ns)
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    want = [f"10.9.0.0/16 via {LAB_NET}.254 dev eth0 proto keepalived src {VIP} metric 5",
            "blackhole 10.10.0.0/16 proto keepalived"]
    wait_for(lambda: _routes(lab, a.ns, 100) == want, 3, what=f"table 100 on A: {_routes(lab, a.ns, 100)}")
    assert _routes(lab, a.ns, 101) == ["default proto keepalived",
                                       f"nexthop via {LAB_NET}.21 dev eth0 weight 2",
                                       f"nexthop via {LAB_NET}.22 dev eth0 weight 1"]
    assert "2001:db8:9::/64 dev eth0 proto keepalived metric 1024 mtu lock 1400 pref medium" in \
        _routes(lab, a.ns, 100, "-6")
    assert f"100: from {VIP} lookup 100 proto keepalived" in _rules(lab, a.ns)
    assert "101: from 2001:db8::/64 lookup 100 proto keepalived" in _rules(lab, a.ns, "-6")
    assert _routes(lab, b.ns, 100) == [] and not any(r.startswith("100:") for r in _rules(lab, b.ns))
    for node in (a, b):  # static entries on both, whatever the state
        assert _routes(lab, node.ns, 200) == [f"10.77.0.0/16 via {LAB_NET}.254 dev eth0 proto keepalived"]
        assert "200: from all to 10.77.0.0/16 lookup 200 proto keepalived" in _rules(lab, node.ns)
    a.stop()
    _wait_holders(lab, [a, b], ["B"], timeout=3)
    wait_for(lambda: _routes(lab, b.ns, 100) == want, 3, what=f"table 100 on B: {_routes(lab, b.ns, 100)}")
    assert f"100: from {VIP} lookup 100 proto keepalived" in _rules(lab, b.ns)
    # A stopped: its virtual and static routes and rules are gone
    assert _routes(lab, a.ns, 100) == [] and _routes(lab, a.ns, 101) == [] and _routes(lab, a.ns, 200) == []
    assert _routes(lab, a.ns, 100, "-6") == []
    assert not any(r.startswith(("100:", "200:")) for r in _rules(lab, a.ns))


def test_lab_tracked_route_deleted_behind_our_back(lab, tmp_path):
    etc = _route_etc(tmp_path)
    ns = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("-6", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad", ns=ns)
    extra = f"        10.13.0.0/16 via {LAB_NET}.254 table vrrp_test no_track\n"
    node = _Node(lab, ns, tmp_path, "A", _route_lab_conf("VI_1", 150, "MASTER", etc, extra_routes=extra))
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    wait_for(lambda: len(_routes(lab, ns, 100)) == 3, 3, what="virtual routes")
    # a no_track route: ignored
    lab.ip("route", "del", "10.13.0.0/16", "table", "100", ns=ns)
    # a static route: put back at once
    lab.ip("route", "del", "10.77.0.0/16", "table", "200", ns=ns)
    wait_for(lambda: _routes(lab, ns, 200), 3, what="static route restored")
    wait_for(lambda: "Restoring deleted static route 10.77.0.0/16" in node.log(), 3, what="restore log")
    assert "Entering BACKUP STATE" not in node.log().split("Entering MASTER STATE", 1)[1]
    # a tracked virtual route: BACKUP (priority 0 sent), MASTER again after Skew_Time with everything back
    lab.ip("route", "del", "10.9.0.0/16", "table", "100", "metric", "5", ns=ns)
    wait_for(lambda: node.log().count("Entering MASTER STATE") == 2, 3, what="MASTER again")
    log_text = node.log()
    assert "(VI_1) tracked virtual route src" in log_text and log_text.count("(VI_1) Entering BACKUP STATE") == 2
    wait_for(lambda: any(r.startswith("10.9.0.0/16") for r in _routes(lab, ns, 100)), 3, what="route back")
    # an IPv6 route without a metric is tracked too (the kernel stores metric 1024)
    lab.ip("-6", "route", "del", "2001:db8:9::/64", "table", "100", ns=ns)
    wait_for(lambda: node.log().count("Entering MASTER STATE") == 3, 3, what="MASTER after the IPv6 route went")
    wait_for(lambda: _routes(lab, ns, 100, "-6"), 3, what="IPv6 route back")
    node.stop()


def test_lab_tracked_route_deleted_takes_the_whole_sync_group_to_backup_and_back(lab, tmp_path):
    """keepalived's set_vrrp_backup: a tracked virtual route deleted while MASTER sends its instance and every
    MASTER member of its sync group to BACKUP with priority 0, each with a Master_Down_Timer of only its Skew_Time,
    so the group is MASTER again well before a Master_Down_Interval (3.4 s here) and the route is back."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    vip2 = f"{LAB_NET}.201"
    text = ("vrrp_sync_group G {\n    group {\n        VI_1\n        VI_2\n    }\n}\n"
            + _conf(name="VI_1", priority=150, state="MASTER", advert=1, instance_extra=(
                f"    virtual_routes {{\n        10.9.0.0/16 via {LAB_NET}.254 dev eth0 table 100\n    }}\n"))
            + _conf(name="VI_2", vrid=52, priority=150, state="MASTER", advert=1, vips=(f"{vip2}/24",)
                    ).split("}\n", 1)[1])
    node = _Node(lab, ns, tmp_path, "A", text)
    wait_for(lambda: lab.has_address(ns, VIP) and lab.has_address(ns, vip2), 8, what="the group MASTER")
    wait_for(lambda: _routes(lab, ns, 100), 3, what="virtual route")
    lab.ip("route", "del", "10.9.0.0/16", "table", "100", ns=ns)
    deleted = time.monotonic()
    wait_for(lambda: node.log().count("(VI_2) Entering BACKUP STATE") >= 2, 2, what="VI_2 forced to BACKUP")
    wait_for(lambda: node.log().count("(VI_1) Entering MASTER STATE") == 2
             and node.log().count("(VI_2) Entering MASTER STATE") == 2, 4, what="the group MASTER again")
    took = time.monotonic() - deleted
    assert took < 2.5, f"MASTER again after {took:.2f} s: the forced members waited a Master_Down_Interval"
    after = node.log().split("tracked virtual route", 1)[1]
    assert after.count("sent 0 priority") >= 2  # both members released the VIPs with priority 0
    wait_for(lambda: _routes(lab, ns, 100) and lab.has_address(ns, vip2), 3, what="route and VIPs back")
    node.stop()



def test_lab_interface_up_down_delays_ride_out_a_short_flap_and_count_a_long_one(lab, tmp_path):
    """keepalived's interface_up_down_delays: eth0 down for less than its down delay changes nothing (the VIP
    stays, "Delay timer for eth0 cancelled"); down for longer is a FAULT, one delay after it went."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    text = "interface_up_down_delays {\n    eth0 1 0.2\n}\n" + _conf(priority=150, state="MASTER", advert=1)
    node = _Node(lab, ns, tmp_path, "A", text)
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    lab.ip("link", "set", "eth0", "down", ns=ns)
    time.sleep(0.4)
    assert lab.has_address(ns, VIP)
    lab.ip("link", "set", "eth0", "up", ns=ns)
    wait_for(lambda: "Delay timer for eth0 cancelled" in node.log(), 2, what="the delay cancelled")
    assert "eth0: Adding flags change from" in node.log() and "FAULT" not in node.log()
    lab.ip("link", "set", "eth0", "down", ns=ns)
    went = time.monotonic()
    wait_for(lambda: "(VI_1) Entering FAULT STATE" in node.log(), 3, what="FAULT after the delay")
    assert time.monotonic() - went >= 0.9
    lab.ip("link", "set", "eth0", "up", ns=ns)
    wait_for(lambda: node.log().count("(VI_1) Entering MASTER STATE") == 2, 6, what="MASTER again")
    node.stop()


def test_interface_up_down_delays_are_capped_below_the_master_down_interval(offline):
    """keepalived's check_debounce_timers: a delay at or beyond (down_timer_adverts - 1) advert intervals would
    let a peer take over first; it is cut to (down_timer_adverts - 1) x advert_int - advert_int / 256."""
    d, _ = offline("interface_up_down_delays {\n    eth0 5 3\n    eth1 0.5\n}\n" + instance_text(advert=1.0))
    assert d._if_delays("eth0") == (2 - 1 / 256, 2 - 1 / 256) and d._if_delays("eth1") == (0.5, 0.0)
    _, diags = vrrpd.parse_config_text("interface_up_down_delays {\n    eth0\n    eth1 300\n}\n", "d.conf")
    assert "No timeouts specified for eth0 up/down delays" in " ".join(messages(diags))
    assert any(x.severity is vrrpd.Severity.ERROR and "eth1" in x.message for x in diags)


ARP_CAPTURE = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0))
print("READY", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    s.settimeout(max(0.01, end - time.monotonic()))
    try:
        frame = s.recv(100)
    except socket.timeout:
        break
    if frame[20:22] in (b"\x00\x01", b"\x00\x02") and frame[28:32] == frame[38:42]:  # gratuitous
        print(f"{time.monotonic():.4f} {socket.inet_ntoa(frame[28:32])}", flush=True)
"""


def test_lab_garp_group_spaces_the_gratuitous_arps_of_every_instance_on_its_interfaces(lab, tmp_path):
    """keepalived's garp_group: the gratuitous ARPs on its interfaces are garp_interval apart, counting those of
    every instance together (two instances, two VIPs each, one GARP per VIP: four GARPs 0.25 s apart)."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    client = lab.host("c", f"{LAB_NET}.10/24")
    one = _conf(name="VI_1", priority=150, state="MASTER", vips=(f"{LAB_NET}.101/24", f"{LAB_NET}.102/24"),
                instance_extra="    garp_master_repeat 1\n    garp_master_delay 0\n")
    two = _conf(name="VI_2", vrid=52, priority=150, state="MASTER", vips=(f"{LAB_NET}.103/24", f"{LAB_NET}.104/24"),
                instance_extra="    garp_master_repeat 1\n    garp_master_delay 0\n").split("}\n", 1)[1]
    text = "garp_group {\n    garp_interval 0.25\n    interfaces {\n        eth0\n    }\n}\n" + one + two
    capture = lab.exec(client, [PYTHON, "-c", ARP_CAPTURE, "6"], stdout=subprocess.PIPE, text=True)
    assert capture.stdout.readline().strip() == "READY"
    node = _Node(lab, ns, tmp_path, "A", text)
    wait_for(lambda: lab.has_address(ns, f"{LAB_NET}.104"), 6, what="both MASTER")
    time.sleep(1.2)
    node.stop()
    capture.kill()
    lines = [line.split() for line in capture.stdout.read().splitlines() if line.strip()]
    garps = [(float(t), ip) for t, ip in lines if ip.startswith(f"{LAB_NET}.10")]
    first = {}
    for t, ip in garps:
        first.setdefault(ip, t)  # the first GARP of each VIP (a stop sends none; refreshes are off)
    times = sorted(first.values())
    assert len(times) == 4, garps
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= 0.2 for gap in gaps), gaps



def test_vrrp_garp_interval_paces_the_vmacs_of_an_interface_together(offline):
    """keepalived's garp_delay belongs to the base interface (IF_BASE_IFP): two use_vmac instances on eth0 send
    their gratuitous ARPs vrrp_garp_interval apart, although each goes out on its own VMAC."""
    extra = "    use_vmac\n    garp_master_repeat 1\n    garp_master_delay 0\n"
    text = instance_text(extra=extra, global_extra="    vrrp_garp_interval 0.5\n") + instance_text(
        name="VI_2", vrid=52, vips=["10.0.0.101/24"], extra=extra).split("}\n", 1)[1]
    d, kernel = offline(text)
    d.loop.advance(max(rt.machine.master_down_interval for rt in d.runtimes) + 0.01)
    assert all(rt.machine.state == vrrpd.State.MASTER for rt in d.runtimes)
    sent = [ifname for ifname, _a in kernel.announced]
    assert len(sent) == 1, sent  # the second waits its turn on eth0
    d.loop.advance(0.6)
    assert sorted(ifname for ifname, _a in kernel.announced) == ["vrrp.51", "vrrp.52"]

def test_garp_group_without_a_delay_is_removed_and_an_interface_keeps_its_first_group():
    text = ("garp_group {\n    interface eth0\n}\n"
            "garp_group {\n    gna_interval 0.1\n    interface eth1\n    interfaces {\n        eth2\n    }\n}\n"
            "garp_group {\n    garp_interval 0.2\n    interface eth1\n}\n")
    config, diags = vrrpd.parse_config_text(text, "g.conf")
    said = " ".join(messages(diags))
    assert "garp group 1 does not have any delay set - removing" in said
    assert "garp_group already specified for eth1 - ignoring" in said
    assert [(g.garp_interval, g.gna_interval, g.interfaces) for g in config.garp_groups] == [
        (None, 0.1, ["eth1", "eth2"]), (0.2, None, [])]


@pytest.mark.parametrize("how", ["linkbeat_interfaces", "global"])
def test_lab_linkbeat_polls_the_carrier_instead_of_netlink(lab, tmp_path, how):
    """keepalived's linkbeat (linkbeat_interfaces { eth0 }, or global_defs linkbeat_use_polling): the carrier is
    read by ioctl every second and netlink's link events are not followed, so the FAULT comes from the poll
    ("Linkbeat reports eth0 down" first), and MASTER again from the poll that sees it up."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    if how == "global":
        text = _conf(priority=150, state="MASTER", global_extra="    linkbeat_use_polling\n")
    else:
        text = "linkbeat_interfaces {\n    eth0\n}\n" + _conf(priority=150, state="MASTER")
    node = _Node(lab, ns, tmp_path, "A", text)
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    lab.ip("link", "set", "eth0", "down", ns=ns)
    wait_for(lambda: "(VI_1) Entering FAULT STATE" in node.log(), 3, what="FAULT")
    log_text = node.log()
    assert log_text.index("Linkbeat reports eth0 down") < log_text.index("(VI_1) Entering FAULT STATE")
    lab.ip("link", "set", "eth0", "up", ns=ns)
    wait_for(lambda: node.log().count("(VI_1) Entering MASTER STATE") == 2, 6, what="MASTER again")
    assert "Linkbeat reports eth0 up" in node.log()
    node.stop()

def test_lab_static_entries_come_back_and_a_route_interface_down_is_a_fault(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", ns=ns)
    lab.ip("link", "set", "eth1p", "up", ns=ns)
    lab.ip("link", "set", "eth1", "up", ns=ns)
    text = ("static_ipaddress {\n    192.168.77.1/24 dev eth1\n}\n"
            "static_routes {\n    10.88.0.0/16 via 192.168.77.254 dev eth1 table 300\n}\n")
    text += _conf(priority=150, state="MASTER", instance_extra=(
        "    virtual_routes {\n        10.89.0.0/16 via 192.168.77.254 dev eth1 table 301\n    }\n"))
    node = _Node(lab, ns, tmp_path, "A", text)
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    wait_for(lambda: _routes(lab, ns, 301), 3, what="virtual route")
    assert lab.has_address(ns, "192.168.77.1", "eth1") and _routes(lab, ns, 300)
    lab.ip("addr", "del", "192.168.77.1/24", "dev", "eth1", ns=ns)  # the kernel drops the static route with it
    wait_for(lambda: lab.has_address(ns, "192.168.77.1", "eth1") and _routes(lab, ns, 300), 3,
             what="static address and its route restored")
    assert "Restoring deleted static address 192.168.77.1/24" in node.log()
    # eth1 down: the virtual route's interface is tracked, so FAULT; up again: the static route is put back
    # and the instance is MASTER again with its route
    lab.link(ns, "eth1", up=False)
    wait_for(lambda: not lab.has_address(ns, VIP), 3, what="FAULT with the route's interface down")
    assert "(VI_1) Entering FAULT STATE" in node.log()
    lab.link(ns, "eth1", up=True)
    wait_for(lambda: lab.has_address(ns, VIP) and _routes(lab, ns, 301), 5, what="MASTER again with its route")
    wait_for(lambda: _routes(lab, ns, 300) == ["10.88.0.0/16 via 192.168.77.254 dev eth1 proto keepalived"], 3,
             what="static route back after eth1 up")
    node.stop()
    assert not lab.has_address(ns, "192.168.77.1", "eth1") and not _routes(lab, ns, 300)


def test_lab_track_group_instances_fault_with_a_static_address_interface(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", ns=ns)
    for dev in ("eth1p", "eth1"):
        lab.ip("link", "set", dev, "up", ns=ns)
    text = ("track_group TG {\n    group {\n        VI_1\n    }\n}\n"
            "static_ipaddress {\n    192.168.79.1/24 dev eth1 track_group TG\n}\n")
    node = _Node(lab, ns, tmp_path, "A", text + _conf(priority=150, state="MASTER"))
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    lab.link(ns, "eth1", up=False)
    wait_for(lambda: not lab.has_address(ns, VIP), 3, what="FAULT: a track_group interface is down")
    lab.link(ns, "eth1", up=True)
    wait_for(lambda: lab.has_address(ns, VIP), 5, what="MASTER again")
    node.stop()


def test_lab_reload_changes_only_the_routes_and_rules_that_changed(lab, tmp_path):
    etc = _route_etc(tmp_path)
    ns = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("-6", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad", ns=ns)
    node = _Node(lab, ns, tmp_path, "A", _route_lab_conf("VI_1", 150, "MASTER", etc))
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    wait_for(lambda: len(_routes(lab, ns, 100)) == 2, 3, what="virtual routes")
    monitor = lab.exec(ns, ["ip", "-o", "monitor", "route", "rule"], stdout=subprocess.PIPE, text=True)
    seen: List[str] = []
    reader = threading.Thread(target=lambda: seen.extend(monitor.stdout), daemon=True)
    reader.start()

    def canary_seen() -> bool:  # the monitor listens once it reports a route of ours (a sleep loses under load)
        for verb in ("add", "del"):  # a new event each try: replacing an identical route reports nothing
            lab.ip("route", verb, "10.254.254.0/24", "dev", "eth0", "table", "251", ns=ns)
        time.sleep(0.05)
        return any("10.254.254.0/24" in line for line in seen)

    wait_for(canary_seen, 10, what="ip monitor listening")
    text = node.conf.read_text()
    text = text.replace("blackhole 10.10.0.0/16", "blackhole 10.20.0.0/16")  # one virtual route changed
    text = text.replace("from 2001:db8::/64 table vrrp_test priority 101", "to 10.30.0.0/16 table 7 priority 107")
    text = text.replace(f"10.77.0.0/16 via {LAB_NET}.254 table 200", f"10.78.0.0/16 via {LAB_NET}.254 table 200")
    node.conf.write_text(text)
    node.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reload complete" in node.log(), 5, what="reload")
    time.sleep(0.5)
    monitor.terminate()
    monitor.wait(timeout=5)
    # "proto keepalived": ours, not the kernel's own (a late link-local address)
    reader.join(timeout=5)
    events = sorted(" ".join(line.split()) for line in seen if "proto keepalived" in line)
    assert events == sorted([
        "Deleted blackhole 10.10.0.0/16 table 100 proto keepalived",
        "blackhole 10.20.0.0/16 table 100 proto keepalived",
        "Deleted 101: from 2001:db8::/64 lookup 100 proto keepalived",
        "107: from all to 10.30.0.0/16 lookup 7 proto keepalived",
        f"Deleted 10.77.0.0/16 via {LAB_NET}.254 dev eth0 table 200 proto keepalived",
        f"10.78.0.0/16 via {LAB_NET}.254 dev eth0 table 200 proto keepalived",
    ]), events
    assert "Entering BACKUP STATE" not in node.log().split("Reload complete")[0].split("Entering MASTER STATE")[1]
    node.stop()


def test_lab_neutron_l3_ha_router_fails_over_with_its_routes(lab, tmp_path):
    """What Neutron's L3 agent writes for an HA router: both nodes BACKUP with nopreempt, the HA VIP on the ha-
    port, the router's addresses as excluded VIPs on qr-/qg- ports, its routes as virtual_routes, notify scripts
    that record the state."""
    nodes = []
    for short, me in (("a", 1), ("b", 2)):
        ns = lab.host(short, f"169.254.192.{me}/18", ifname="ha-0")
        for port in ("qr-0", "qg-0"):
            lab.ip("link", "add", port, "type", "veth", "peer", "name", port + "p", ns=ns)
            lab.ip("link", "set", port, "up", ns=ns)
            lab.ip("link", "set", port + "p", "up", ns=ns)
        state = tmp_path / f"state-{short}"
        script = tmp_path / f"notify-{short}.sh"
        script.write_text(f"#!/bin/sh\necho \"$3\" > {state}\n")
        script.chmod(0o755)
        conf = f"""global_defs {{
    notification_email_from neutron@openstack.local
    router_id neutron
    vrrp_version 3
}}
vrrp_instance VR_1 {{
    state BACKUP
    interface ha-0
    virtual_router_id 1
    priority 50
    garp_master_delay 60
    nopreempt
    advert_int 0.2
    track_interface {{
        ha-0
    }}
    virtual_ipaddress {{
        169.254.0.1/24 dev ha-0
    }}
    virtual_ipaddress_excluded {{
        10.0.0.1/24 dev qr-0
        172.24.4.5/24 dev qg-0
        fe80::f816:3eff:fe2a:1/64 dev qr-0 scope link
    }}
    virtual_routes {{
        0.0.0.0/0 via 172.24.4.1 dev qg-0
        10.99.0.0/24 via 10.0.0.254 dev qr-0
    }}
    virtual_rules {{
        from 10.0.0.0/24 table 16 priority 16
    }}
    notify {script}
}}
"""
        nodes.append((ns, state, _Node(lab, ns, tmp_path, short.upper(), conf)))

    def master():
        return [n for n in nodes if lab.has_address(n[0], "169.254.0.1", "ha-0")]
    wait_for(lambda: len(master()) == 1, 8, what="one master")
    ns_m, state_m, node_m = master()[0]
    ns_b, state_b, node_b = [n for n in nodes if n[0] != ns_m][0]

    def has_router(ns):
        main = _routes(lab, ns, "main")
        return ("default via 172.24.4.1 dev qg-0 proto keepalived" in main
                and "10.99.0.0/24 via 10.0.0.254 dev qr-0 proto keepalived" in main
                and lab.has_address(ns, "10.0.0.1", "qr-0") and lab.has_address(ns, "172.24.4.5", "qg-0")
                and any(r.startswith("16: from 10.0.0.0/24 lookup 16") for r in _rules(lab, ns)))
    wait_for(lambda: has_router(ns_m), 3, what="router on the master")
    wait_for(lambda: state_m.exists() and state_m.read_text().strip() == "MASTER", 3, what="notify MASTER")
    assert not has_router(ns_b) and "default" not in " ".join(_routes(lab, ns_b, "main"))
    node_m.kill()  # the master's node dies
    lab.link(ns_m, "ha-0", up=False)
    wait_for(lambda: has_router(ns_b), 4, what="router on the former backup")
    wait_for(lambda: state_b.read_text().strip() == "MASTER", 3, what="notify MASTER on the former backup")
    node_b.stop()
    assert not any(r.startswith("default") for r in _routes(lab, ns_b, "main"))


@pytest.mark.parametrize("dynamic", [False, True], ids=["plain", "dynamic_interfaces"])
def test_lab_instance_on_a_missing_interface_waits_in_fault_and_follows_it(lab, tmp_path, dynamic):
    """One instance's interface does not exist at start (a VLAN or bond created later): the daemon starts, the
    other instance runs, this one is in FAULT until the interface appears; deleted and re-created, it follows."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    late_vip = "10.66.0.100"
    text = _conf(priority=150, state="MASTER", global_extra="    dynamic_interfaces\n" if dynamic else "")
    text += (f"vrrp_instance VI_2 {{\n    state MASTER\n    interface eth9\n    virtual_router_id 52\n"
             f"    priority 150\n    advert_int 0.1\n    virtual_ipaddress {{\n        {late_vip}/24\n    }}\n}}\n")
    node = _Node(lab, ns, tmp_path, "A", text)
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="VI_1 MASTER although eth9 is missing")
    log_text = node.log()
    assert "(VI_2) interface eth9 doesn't exist - FAULT until it is created" in log_text
    assert "(VI_2) Entering FAULT STATE" in log_text

    def create():
        lab.ip("link", "add", "eth9", "type", "veth", "peer", "name", "eth9p", ns=ns)
        lab.ip("addr", "add", "10.66.0.1/24", "dev", "eth9", ns=ns)
        lab.ip("link", "set", "eth9p", "up", ns=ns)
        lab.ip("link", "set", "eth9", "up", ns=ns)
    create()
    wait_for(lambda: lab.has_address(ns, late_vip, "eth9"), 5, what="VI_2 MASTER on the new eth9")
    assert "(VI_2) interface eth9 appeared" in node.log()
    # adverts really go out on it
    cap = lab.exec(ns, ["timeout", "2", "tcpdump", "-c1", "-n", "-i", "eth9p", "ip proto 112"],
                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "vrid 52" in cap.communicate(timeout=10)[0]
    lab.ip("link", "del", "eth9", ns=ns)
    wait_for(lambda: "(VI_2) interface eth9 was deleted" in node.log(), 5, what="deletion noticed")
    wait_for(lambda: node.log().count("(VI_2) Entering FAULT STATE") == 2, 5, what="FAULT again")
    assert lab.has_address(ns, VIP)  # VI_1 untouched
    create()  # re-created: a new interface index
    wait_for(lambda: lab.has_address(ns, late_vip, "eth9"), 5, what="VI_2 MASTER on the re-created eth9")
    assert node.log().count("(VI_2) interface eth9 appeared") == 2
    node.stop()


def test_lab_excluded_vip_and_route_on_an_interface_created_later(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", instance_extra=(
        "    virtual_ipaddress_excluded {\n        10.0.9.1/24 dev qr-9\n    }\n"
        "    virtual_routes {\n        10.99.9.0/24 via 10.0.9.254 dev qr-9 no_track\n    }\n")))
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER without qr-9")
    lab.ip("link", "add", "qr-9", "type", "veth", "peer", "name", "qr-9p", ns=ns)
    for dev in ("qr-9p", "qr-9"):
        lab.ip("link", "set", dev, "up", ns=ns)
    wait_for(lambda: lab.has_address(ns, "10.0.9.1", "qr-9"), 5, what="the excluded VIP on the new port")
    wait_for(lambda: "10.99.9.0/24 via 10.0.9.254 dev qr-9 proto keepalived" in _routes(lab, ns, "main"), 5,
             what="the route through the new port")
    assert "(VI_1) interface qr-9 appeared: adding 10.0.9.1/24" in node.log()
    node.stop()


# --------------------------------------------------------------------------------------------
# D3. The rest of the vrrp_instance keywords keepalived acts upon
# --------------------------------------------------------------------------------------------


def test_instance_keywords_keepalived_acts_upon_are_read():
    config, diags = parse_ok(inst(BASE + "\nmcast_dst_ip 224.0.0.99\ndown_timer_adverts 5\ncheck_unicast_src\n"
                                         "promote_secondaries\nkernel_rx_buf_size 65536\ntrack_src_ip\n"
                                         "unicast_fault_no_peer\nno_virtual_ipaddress"))
    i = config.vrrp_instances[0]
    assert (str(i.mcast_dst_ip), i.down_timer_adverts, i.kernel_rx_buf_size) == ("224.0.0.99", 5, 65536)
    assert i.check_unicast_src and i.promote_secondaries and i.track_src_ip and i.unicast_fault_no_peer
    assert not [d for d in messages(diags) if "accepted" in d]
    _, diags = vrrpd.parse_config_text(inst(BASE + "\nmcast_dst_ip 10.0.0.1\nmcast_dst_ip ff05::12"), "m.conf")
    assert messages(diags, vrrpd.Severity.ERROR) == [
        "m.conf:7: error: mcast_dst_ip: '10.0.0.1' is not a multicast address",
        "m.conf:8: error: mcast_dst_ip: 'ff05::12' is not a multicast address of link-local scope (ffX2::)"]
    _, diags = vrrpd.parse_config_text(inst("interface lo\nvirtual_router_id 50"), "n.conf")
    assert any("No VIP specified" in m for m in messages(diags, vrrpd.Severity.WARNING))


def test_down_timer_adverts_sets_master_down_interval():
    m = _machine(priority=100, advert_int=1.0, version=3, down_timer_adverts=10)
    assert m.master_down_interval == 10 * 1.0 + (256 - 100) / 256
    acts = m.start(0.0)
    assert m.next_deadline() == pytest.approx(m.master_down_interval) and acts


def test_lab_mcast_dst_ip_and_down_timer_adverts(lab, tmp_path):
    extra = "    mcast_dst_ip 224.0.0.99\n"
    a, b = _pair(lab, tmp_path, _conf(priority=150, state="MASTER", instance_extra=extra),
                 _conf(priority=100, instance_extra=extra + "    down_timer_adverts 12\n"))
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    cap = lab.exec(b.ns, ["timeout", "3", "tcpdump", "-c2", "-n", "-i", "eth0", "ip proto 112"],
                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = cap.communicate(timeout=10)[0]
    assert f"{LAB_NET}.1 > 224.0.0.99: VRRPv3" in out, out
    assert "224.0.0.18" not in out
    _steady_single_master(lab, [a, b], 0.5)  # B hears A on that group: no split brain
    a.kill()
    t_kill = time.monotonic()
    wait_for(lambda: lab.has_address(b.ns, VIP), 4, 0.01, what="VIP on B")
    took = time.monotonic() - t_kill
    # Master_Down_Interval = 12 x 0.1 s + skew (0.06 s), not 3 x 0.1 s + skew: the last advert was <= 0.1 s before
    assert 1.0 <= took <= 2.5, took


def test_lab_check_unicast_src_drops_adverts_from_a_stranger(lab, tmp_path):
    me, friend, stranger = f"{LAB_NET}.2", f"{LAB_NET}.1", f"{LAB_NET}.3"

    def unicast(prio, src, peers, extra=""):
        peer_lines = "".join(f"        {p}\n" for p in peers)
        return _conf(priority=prio, state="MASTER", instance_extra=f"    unicast_src_ip {src}\n    unicast_peer {{\n"
                     f"{peer_lines}    }}\n{extra}")
    ns_b = lab.host("b", f"{me}/24")
    ns_c = lab.host("c", f"{stranger}/24")
    b = _Node(lab, ns_b, tmp_path, "B", unicast(100, me, [friend], "    check_unicast_src\n"))
    wait_for(lambda: lab.has_address(ns_b, VIP), 6, what="B MASTER")
    c = _Node(lab, ns_c, tmp_path, "C", unicast(200, stranger, [me]))
    wait_for(lambda: lab.has_address(ns_c, VIP), 6, what="C MASTER")
    wait_for(lambda: f"unicast advert from {stranger} not in unicast_peer" in b.log(), 3, what="B drops C's adverts")
    time.sleep(0.5)
    assert lab.has_address(ns_b, VIP) and "Entering BACKUP STATE" not in b.log().split("Entering MASTER STATE")[1]
    b.stop()
    # without check_unicast_src the higher priority stranger wins
    b.conf.write_text(unicast(100, me, [friend]))
    b.start()
    wait_for(lambda: "(VI_1) Entering BACKUP STATE" in b.log().rsplit("Starting", 1)[1], 4, what="B yields")
    assert not lab.has_address(ns_b, VIP)
    c.stop()


def test_lab_promote_secondaries_and_kernel_rx_buf_size(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    sysctl = ["sysctl", "-n", "net.ipv4.conf.eth0.promote_secondaries"]
    assert lab.run(ns, sysctl).stdout.strip() == "0"
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", instance_extra=(
        "    promote_secondaries\n    kernel_rx_buf_size 3000000\n")))
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    assert lab.run(ns, sysctl).stdout.strip() == "1"
    # the raw VRRP socket's receive buffer as the kernel reports it (SO_RCVBUF): 1 MiB + 3,000,000 bytes, doubled
    m = re.search(r"\(VI_1\) receive buffer on eth0 is now (\d+) bytes", node.log())
    assert m and int(m.group(1)) == 2 * ((1 << 20) + 3000000), node.log()
    node.stop()
    assert lab.run(ns, sysctl).stdout.strip() == "0"  # put back: we set it


def test_lab_track_src_ip_and_unicast_fault_no_peer(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("addr", "add", f"{LAB_NET}.5/24", "dev", "eth0", ns=ns)
    text = _conf(priority=150, state="MASTER", instance_extra=f"    mcast_src_ip {LAB_NET}.5\n    track_src_ip\n")
    text += ("vrrp_instance VI_2 {\n    state MASTER\n    interface eth0\n    virtual_router_id 52\n"
             "    priority 150\n    advert_int 0.1\n    unicast_fault_no_peer\n"
             f"    virtual_ipaddress {{\n        {LAB_NET}.101/24\n    }}\n}}\n")
    node = _Node(lab, ns, tmp_path, "A", text)
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="VI_1 MASTER")
    assert "(VI_2) Cannot use unicast without any peers - going to fault state" in node.log()
    assert "(VI_2) Entering FAULT STATE" in node.log() and not lab.has_address(ns, f"{LAB_NET}.101")
    lab.ip("addr", "del", f"{LAB_NET}.5/24", "dev", "eth0", ns=ns)  # the tracked source goes
    wait_for(lambda: not lab.has_address(ns, VIP), 3, what="VI_1 FAULT without its source address")
    assert "(VI_1) Entering FAULT STATE" in node.log()
    lab.ip("addr", "add", f"{LAB_NET}.5/24", "dev", "eth0", ns=ns)
    wait_for(lambda: lab.has_address(ns, VIP), 3, what="VI_1 MASTER again")
    assert not lab.has_address(ns, f"{LAB_NET}.101")
    node.stop()


def test_lab_vrrp_min_garp_and_garp_extra_if(lab, tmp_path):
    """vrrp_min_garp: one gratuitous ARP per VIP on becoming MASTER, no second burst. garp_extra_if all 1: then one
    GARP a second on each other interface carrying an (excluded) VIP, none on the instance's own."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", ns=ns)
    lab.ip("addr", "add", "192.168.78.1/24", "dev", "eth1", ns=ns)
    for dev in ("eth1p", "eth1"):
        lab.ip("link", "set", dev, "up", ns=ns)
    own_cap = lab.exec(ns, ["tcpdump", "-l", "-n", "-i", "eth0", "arp"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)
    node = _Node(lab, ns, tmp_path, "A", _conf(
        priority=150, state="MASTER", global_extra="    vrrp_min_garp\n",
        instance_extra=("    garp_extra_if all 1\n"
                        "    virtual_ipaddress_excluded {\n        192.168.78.100/24 dev eth1\n    }\n")))
    wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
    extra_cap = lab.exec(ns, ["timeout", "3.3", "tcpdump", "-l", "-n", "-i", "eth1p", "arp"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    extra = extra_cap.communicate(timeout=10)[0]
    node.stop()
    own_cap.terminate()
    own = own_cap.communicate(timeout=10)[0]
    # min_garp: one GARP, no garp_master_delay burst; garp_extra_if sends nothing on our own interface
    assert own.count(f"who-has {VIP} tell {VIP}") == 1, own
    assert extra.count("who-has 192.168.78.100 tell 192.168.78.100") >= 2, extra  # one a second


def test_sync_group_members_and_address_owners_do_not_float_their_priority():
    text = ("vrrp_script chk {\n script /bin/true\n weight -10\n}\n"
            "track_file tf {\n file /tmp/x\n}\n"
            "vrrp_sync_group G {\n group {\n  VI_1\n }\n}\n"
            "vrrp_sync_group H {\n group {\n  VI_2\n }\n sync_group_tracking_weight\n}\n")
    body = "\ntrack_interface {\n    eth1 weight -10\n}\ntrack_script {\n    chk\n}\ntrack_file {\n    tf\n}"
    text += inst(BASE + body) + inst(BASE.replace("50", "51") + body, name="VI_2")
    text += inst(BASE.replace("50", "52") + "\npriority 255" + body, name="VI_3")
    cfg, diags = vrrpd.parse_config_text(text, "s.conf")
    one, two, owner = cfg.vrrp_instances
    assert [(r.name, r.weight) for r in one.track_interface] == [("eth1", 0)]  # FAULT when down
    assert one.track_script == [] and [(r.name, r.weight) for r in one.track_file] == [("tf", 0)]
    assert [(r.name, r.weight) for r in two.track_interface] == [("eth1", -10)] and two.track_script
    assert owner.track_interface == [] and owner.track_script == []
    text = "\n".join(messages(diags))
    assert "(VI_1) ignoring eth1 tracked interface weight due to SYNC group" in text
    assert "(VI_1) ignoring tracked script chk with weights due to SYNC group" in text
    assert "(VI_1) ignoring weight from tracked file tf due to SYNC group. specify weight 0" in text
    assert "(VI_3) ignoring eth1 tracked interface due to address owner" in text


def test_lab_sync_group_member_faults_where_its_weighted_interface_would_only_lower_it(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", ns=ns)
    for dev in ("eth1p", "eth1"):
        lab.ip("link", "set", dev, "up", ns=ns)

    def run(extra):
        text = f"vrrp_sync_group G {{\n    group {{\n        VI_1\n    }}\n{extra}}}\n"
        text += _conf(priority=150, state="MASTER", instance_extra="    track_interface {\n        eth1 weight -10\n"
                                                                    "    }\n")
        node = _Node(lab, ns, tmp_path, "A", text)
        wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
        lab.link(ns, "eth1", up=False)
        return node
    node = run("")  # keepalived: the weight is ignored in a sync group, the interface is tracked: FAULT
    wait_for(lambda: not lab.has_address(ns, VIP), 3, what="FAULT")
    node.stop()
    lab.link(ns, "eth1", up=True)
    node = run("    sync_group_tracking_weight\n")  # the weight counts: 140, still MASTER
    wait_for(lambda: "Changing effective priority from 150 to 140" in node.log(), 3, what="priority 140")
    assert lab.has_address(ns, VIP)
    node.stop()


def test_lab_startup_and_shutdown_scripts_and_fifo_states_on_reload(lab, tmp_path):
    """startup_script runs before VRRP starts (here it adds a policy rule), shutdown_script after everything
    stopped (it removes it); fifo_write_vrrp_states_on_reload writes every state to the FIFO on SIGHUP."""
    tmp_path.chmod(0o755)
    ns = lab.host("a", f"{LAB_NET}.1/24")
    start, stop = tmp_path / "start.sh", tmp_path / "stop.sh"
    start.write_text(f"#!/bin/sh\nip rule add fwmark 5 table 55 priority 555\necho started > {tmp_path}/s\n")
    stop.write_text("#!/bin/sh\nip rule del priority 555\n")
    for script in (start, stop):
        script.chmod(0o755)
    fifo = tmp_path / "vrrp.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", global_extra=(
            f"    startup_script {start}\n    shutdown_script {stop}\n    shutdown_script_timeout 5\n"
            f"    notify_fifo {fifo}\n    fifo_write_vrrp_states_on_reload\n")))
        assert "555:\tfrom all fwmark 0x5 lookup 55" in lab.ip("rule", ns=ns).stdout
        wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
        seen = []

        def read(want):
            try:
                seen.append(os.read(reader, 65536).decode())
            except BlockingIOError:
                pass
            return "".join(seen).count(want)
        wait_for(lambda: read('INSTANCE "VI_1" MASTER 150') == 1, 3, what="the MASTER line")
        node.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: read('INSTANCE "VI_1" MASTER 150') == 2, 5, what="the state written again on reload")
        assert node.stop() == 0
        assert "555:" not in lab.ip("rule", ns=ns).stdout
    finally:
        os.close(reader)


def test_lab_notify_fifo_script_reads_the_fifo(lab, tmp_path):
    tmp_path.chmod(0o755)
    ns = lab.host("a", f"{LAB_NET}.1/24")
    out = tmp_path / "fifo.out"
    reader = tmp_path / "reader.sh"
    reader.write_text(f'#!/bin/sh\nwhile read -r line; do echo "$line" >> {out}; done < "$1"\n')
    reader.chmod(0o755)
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", global_extra=(
        f"    notify_fifo {tmp_path}/n.fifo\n    notify_fifo_script {reader}\n")))
    wait_for(lambda: out.exists() and 'INSTANCE "VI_1" MASTER 150' in out.read_text(), 6,
             what="the FIFO script got the MASTER line")
    node.stop()
    wait_for(lambda: not any(str(reader) in line for line in sh(["ps", "-eo", "args"]).stdout.splitlines()), 3,
             what="the FIFO script stopped with the daemon")


def test_lab_vmac_prefix_names_the_macvlan(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", global_extra="    vmac_prefix vx\n",
                                               instance_extra="    use_vmac\n"))
    wait_for(lambda: lab.has_address(ns, VIP, "vx.51"), 6, what="the VIP on vx.51")
    assert "00:00:5e:00:01:33" in lab.ip("link", "show", "vx.51", ns=ns).stdout
    node.stop()
    assert lab.ip("link", "show", "vx.51", ns=ns, check=False).returncode != 0



def test_lab_use_vmac_addr_puts_each_other_interface_s_vips_on_a_vmac_named_by_vmac_addr_prefix(lab, tmp_path):
    """keepalived's use_vmac_addr: a VIP on another interface (eth1) and an eVIP of the other family go on VMACs of
    their own (00:00:5e:00:01:VRID on eth1, :02: for IPv6), and so does a VIP with its own `use_vmac` (eth2), named
    from vmac_addr_prefix in keepalived's order (VIPs, then eVIPs): vx.51, vx1.51, vx6.51. All go at stop."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    for n in (1, 2):
        lab.ip("link", "add", f"eth{n}", "type", "veth", "peer", "name", f"eth{n}p", ns=ns)
        lab.ip("link", "set", f"eth{n}p", "up", ns=ns)
        lab.ip("link", "set", f"eth{n}", "up", ns=ns)
    extra = ("    use_vmac_addr\n    virtual_ipaddress_excluded {\n        10.91.0.5/24 dev eth1\n"
             "        2001:db8:91::5/64\n    }\n")
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", instance_extra=extra,
                                               global_extra="    vmac_addr_prefix vx\n")
                 .replace(f"        {VIP}/24\n", f"        {VIP}/24\n        10.92.0.5/24 dev eth2 use_vmac\n"))
    wait_for(lambda: lab.has_address(ns, "10.92.0.5", "vx.51"), 6, what="the use_vmac VIP on vx.51")
    assert lab.has_address(ns, VIP, "eth0")  # the instance's own interface, no VMAC: stays
    wait_for(lambda: lab.has_address(ns, "2001:db8:91::5", "vx6.51"), 3, what="the IPv6 eVIP on vx6.51")
    assert lab.has_address(ns, "10.91.0.5", "vx1.51")
    for name, link, mac in (("vx.51", "eth2", "00:00:5e:00:01:33"), ("vx6.51", "eth0", "00:00:5e:00:02:33"),
                            ("vx1.51", "eth1", "00:00:5e:00:01:33")):
        shown = lab.ip("-d", "link", "show", name, ns=ns).stdout
        assert f"{name}@{link}" in shown and mac in shown and "macvlan mode private" in shown, shown
    node.stop()
    for name in ("vx.51", "vx6.51", "vx1.51"):
        assert lab.ip("link", "show", name, ns=ns, check=False).returncode != 0



def test_use_ipvlan_is_read_as_keepalived_reads_it_and_asks_rtnetlink_for_an_l2_ipvlan(offline):
    """The kernel side is proven in the VM (test_in_vm_use_ipvlan_and_a_vmac_in_a_vrf); here the words and the
    RTM_NEWLINK bytes: kind ipvlan, IFLA_IPVLAN_MODE L2, IFLA_IPVLAN_FLAGS, the link and the VRF master."""
    config, diags = parse_ok(instance_text(extra="    use_ipvlan ipv9 10.0.0.50/24 private\n"))
    inst = config.vrrp_instances[0]
    assert (inst.use_ipvlan, inst.vmac_name, str(inst.ipvlan_addr), inst.ipvlan_flags) == (
        True, "ipv9", "10.0.0.50/24", 1)
    assert inst.mcast_src_ip == IP4("10.0.0.50")  # keepalived: the ipvlan's address is the source
    payload = vrrpd.ipvlan_link_payload("ipv9", 7, 2, master=9)
    attrs = dict(vrrpd.nla_parse_list(payload[vrrpd.IFINFOMSG.size:]))
    assert attrs[vrrpd.IFLA_IFNAME] == b"ipv9\0" and attrs[vrrpd.IFLA_LINK] == struct.pack("=I", 7)
    assert attrs[vrrpd.IFLA_MASTER] == struct.pack("=I", 9)
    info = dict(vrrpd.nla_parse_list(attrs[vrrpd.IFLA_LINKINFO]))
    assert info[vrrpd.IFLA_INFO_KIND] == b"ipvlan"
    data = dict(vrrpd.nla_parse_list(info[vrrpd.IFLA_INFO_DATA]))
    assert data == {vrrpd.IFLA_IPVLAN_MODE: struct.pack("=H", 0), vrrpd.IFLA_IPVLAN_FLAGS: struct.pack("=H", 2)}
    d, _ = offline(instance_text(extra="    use_ipvlan\n"))  # IPv4 without an address: keepalived's FAULT
    assert d.runtimes[0].machine.state == vrrpd.State.FAULT


def test_vrf_is_read_as_keepalived_reads_it():
    """vrf NAME binds an interface-less unicast instance to the VRF (its device stands in as the interface, the
    VIPs without dev go on default_interface); after `interface` it is ignored with keepalived's words."""
    text = ("vrrp_instance VI_1 {\n vrf blue\n virtual_router_id 5\n unicast_src_ip 10.0.0.1\n"
            " unicast_peer {\n  10.0.0.2\n }\n virtual_ipaddress {\n  10.0.0.100/24\n  10.1.0.1/24 dev eth1\n }\n}\n")
    config, diags = vrrpd.parse_config_text(text, "v.conf")
    inst = config.vrrp_instances[0]
    assert (inst.vrf, inst.interface) == ("blue", "blue") and [v.dev for v in inst.virtual_ipaddress] == [
        "eth0", "eth1"]
    assert not [x for x in diags if x.severity is vrrpd.Severity.ERROR], messages(diags)
    _, diags = vrrpd.parse_config_text(text.replace(" vrf blue\n", " interface eth0\n vrf blue\n"), "v.conf")
    assert "(VI_1) Cannot specify VRF interface and interface - ignoring" in " ".join(messages(diags))

def test_addr_vmac_names_follow_keepalived_s_create_vmac_name():
    taken = {"vrrp.5", "vrrp6.5", "vrrp1.5"}
    assert vrrpd.addr_vmac_name("vrrp", 5, 4, taken.__contains__) == "vrrp2.5"
    assert vrrpd.addr_vmac_name("vrrp", 5, 6, {"vrrp.5"}.__contains__) == "vrrp6.5"
    assert vrrpd.addr_vmac_name("vrrp", 5, 6, taken.__contains__) == "vrrp2.5"
    assert vrrpd.addr_vmac_name("averyveryverylongprefix", 200, 4, set().__contains__) == "averyveryve.200"
    inst = vrrpd.VrrpInstance("VI", interface="eth0", use_vmac_addr=True)
    vip = lambda text, **kw: vrrpd.VirtualIP(ipaddress.ip_interface(text), **kw)  # noqa: E731
    assert not vrrpd.addr_vmac_wanted(inst, vip("10.0.0.1/24"), 4)
    assert vrrpd.addr_vmac_wanted(inst, vip("10.0.0.1/24", dev="eth1"), 4)
    assert vrrpd.addr_vmac_wanted(inst, vip("2001:db8::1/64"), 4)
    plain = vrrpd.VrrpInstance("VI", interface="eth0")
    assert vrrpd.addr_vmac_wanted(plain, vip("10.0.0.1/24", use_vmac=True), 4)
    assert not vrrpd.addr_vmac_wanted(vrrpd.VrrpInstance("VI", interface="eth0", use_vmac=True),
                                      vip("10.0.0.1/24", use_vmac=True), 4)

def test_lab_notify_priority_changes_writes_the_fifo(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    lab.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", ns=ns)
    lab.ip("link", "set", "eth1p", "up", ns=ns)
    lab.ip("link", "set", "eth1", "up", ns=ns)
    fifo = tmp_path / "vrrp.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        node = _Node(lab, ns, tmp_path, "A", _conf(
            priority=150, state="MASTER", global_extra=f"    notify_fifo {fifo}\n",
            instance_extra="    notify_priority_changes\n    track_interface {\n        eth1 weight -10\n    }\n"))
        wait_for(lambda: lab.has_address(ns, VIP), 6, what="MASTER")
        lab.link(ns, "eth1", up=False)
        seen = []

        def read():
            try:
                seen.append(os.read(reader, 65536).decode())
            except BlockingIOError:
                pass
            return "MASTER_PRIORITY" in "".join(seen)
        wait_for(read, 3, what="priority line in the FIFO")
        assert 'INSTANCE "VI_1" MASTER_PRIORITY 140' in "".join(seen), seen
        node.stop()
    finally:
        os.close(reader)


# ============================================================================================
# E. Tracking, notify scripts and e-mail
# ============================================================================================


def _cmd(raw: str, shell: bool = False) -> vrrpd.Command:
    """A Command as the parser builds it (tests of section E build models directly)."""
    import shlex

    return vrrpd.Command(raw=raw, argv=shlex.split(raw), shell=shell)


def _spin(loop, predicate, timeout: float, what: str = "condition"):
    """Run `loop` one iteration at a time until predicate() is true; fail after `timeout` seconds."""
    return wait_for(lambda: predicate() or loop.run_once(until=time.monotonic() + 0.05) or predicate(), timeout, 0,
                    what)


def _tracking_config(scripts=(), files=(), processes=(), refs=None):
    cfg = vrrpd.Config()
    for s in scripts:
        cfg.vrrp_scripts[s.name] = s
    for f in files:
        cfg.track_files[f.name] = f
    for p in processes:
        cfg.track_processes[p.name] = p
    inst = vrrpd.VrrpInstance(name="VI_1", priority=100)
    refs = refs or {}
    inst.track_script = [vrrpd.TrackRef(s.name) for s in scripts] if "script" not in refs else refs["script"]
    inst.track_file = [vrrpd.TrackRef(f.name) for f in files] if "file" not in refs else refs["file"]
    inst.track_process = [vrrpd.TrackRef(p.name) for p in processes] if "process" not in refs else refs["process"]
    cfg.vrrp_instances.append(inst)
    return cfg, inst


class _LogLines(logging.Handler):
    """Collects the messages of the `vrrpd` logger (works even when propagation is turned off)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def vlog():
    logger = logging.getLogger("vrrpd")
    handler, old_level = _LogLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def loop():
    the_loop = vrrpd.EventLoop()
    yield the_loop
    the_loop.kill_children()
    the_loop.close()


# -- pure decisions ---------------------------------------------------------------------------


def test_script_result_one_success_makes_good_first_failure_fails_then_rise_fall_counts():
    res = vrrpd.ScriptResult(rise=2, fall=3)
    assert res.state == "INIT"
    assert res.record(True) is True and res.good is True  # result starts at rise-1
    assert [res.record(False) for _ in range(3)] == [False, False, True] and res.good is False
    assert [res.record(True) for _ in range(2)] == [False, True] and res.good is True
    res = vrrpd.ScriptResult(rise=2, fall=3)
    assert res.record(False) is True and res.good is False  # first failure at start-up counts at once
    assert res.record(False) is False


def test_script_result_init_fail_starts_failed_and_needs_rise_successes():
    res = vrrpd.ScriptResult(rise=3, fall=1, init_fail=True)
    assert res.good is False
    assert [res.record(True) for _ in range(3)] == [False, False, True]
    assert res.record(False) is True and res.good is False


@pytest.mark.parametrize("weight,reverse,ok,expected", [
    (-5, False, True, (0, False)), (-5, False, False, (-5, False)),
    (10, False, True, (10, False)), (10, False, False, (0, False)),
    (10, True, True, (-10, False)), (-5, True, False, (5, False)),
    (0, False, False, (0, True)), (0, False, True, (0, False)),
    (0, True, True, (0, True)), (0, True, False, (0, False)),
    (0, False, None, (0, False)), (-5, False, None, (0, False)),
])
def test_tracker_effect_follows_keepalived_weight_rules(weight, reverse, ok, expected):
    assert vrrpd.tracker_effect(weight, reverse, ok) == expected


@pytest.mark.parametrize("weight,reverse,value,expected", [
    (0, False, 0, (0, False)), (0, False, 3, (0, True)), (0, True, 0, (0, True)), (0, True, 1, (0, False)),
    (-10, False, 2, (-20, False)), (10, True, 2, (-20, False)), (1, False, 300, (253, False)),
    (1, False, -253, (-253, False)), (1, False, -254, (0, True)), (-100, False, 5, (0, True)),
])
def test_track_file_effect_multiplies_caps_and_faults(weight, reverse, value, expected):
    assert vrrpd.track_file_effect(weight, reverse, value) == expected


@pytest.mark.parametrize("text,value", [
    ("5\n", 5), ("  -12 apples", -12), ("0x1f", 31), ("010", 8), ("", 0), ("abc", 0), ("+7", 7),
    ("99999999999", None),
])
def test_parse_track_file_value_reads_like_strtol(text, value):
    assert vrrpd.parse_track_file_value(text) == value


def test_track_reference_weight_overrides_and_reverse_is_kept():
    assert vrrpd.tracker_weight(vrrpd.TrackRef("chk"), -5, False) == (-5, False)
    assert vrrpd.tracker_weight(vrrpd.TrackRef("chk", weight=-20), -5, False) == (-20, False)
    assert vrrpd.tracker_weight(vrrpd.TrackRef("chk", weight=-20), -5, True) == (-20, True)  # as keepalived
    assert vrrpd.tracker_weight(vrrpd.TrackRef("chk", weight=0, reverse=True), -5, False) == (0, True)


def test_process_matches_comm_exactly_and_params_by_param_match():
    tp = vrrpd.TrackProcess(name="p", process=["ssh"])
    assert vrrpd.process_matches(tp, "ssh", [])
    assert not vrrpd.process_matches(tp, "sshd", [])  # not a regex, unlike pgrep ssh
    long = vrrpd.TrackProcess(name="p", process=["a-very-long-process-name"])
    assert vrrpd.process_matches(long, "a-very-long-pro", [])
    full = vrrpd.TrackProcess(name="p", process=["/usr/bin/python3"], full_command=True)
    assert vrrpd.process_matches(full, "python3", ["/usr/bin/python3", "x.py"])
    assert not vrrpd.process_matches(full, "python3", ["python3", "x.py"])
    exact = vrrpd.TrackProcess(name="p", process=["haproxy", "-f", "/etc/haproxy.cfg"])
    assert vrrpd.process_matches(exact, "haproxy", ["/usr/sbin/haproxy", "-f", "/etc/haproxy.cfg"])
    assert not vrrpd.process_matches(exact, "haproxy", ["/usr/sbin/haproxy", "-f", "/etc/haproxy.cfg", "-D"])
    partial = vrrpd.TrackProcess(name="p", process=["haproxy", "-f"], param_match="partial")
    assert vrrpd.process_matches(partial, "haproxy", ["haproxy", "-f", "/x", "-D"])
    assert not vrrpd.process_matches(partial, "haproxy", ["haproxy", "-D"])
    initial = vrrpd.TrackProcess(name="p", process=["nginx", "-c", "/etc/ng"], param_match="initial")
    assert vrrpd.process_matches(initial, "nginx", ["nginx", "-c", "/etc/nginx/nginx.conf"])
    assert not vrrpd.process_matches(initial, "nginx", ["nginx", "-g", "/etc/nginx/nginx.conf"])


def test_process_quorum_applies_delay_on_a_fake_clock():
    q = vrrpd.ProcessQuorum(quorum=2, quorum_max=3, delay=1.0)
    assert q.update(2, now=0.0) is True and q.up is True  # first scan decides at once
    assert q.update(1, now=1.0) is False and q.up is True  # lost, but only for 0 s
    assert q.update(1, now=1.5) is False
    assert q.update(2, now=1.8) is False and q.pending is None  # came back within the delay
    assert q.update(4, now=2.0) is False  # above quorum_max
    assert q.update(4, now=3.0) is True and q.up is False
    nodelay = vrrpd.ProcessQuorum(quorum=1)
    assert nodelay.update(0, 0.0) is True and nodelay.up is False
    assert nodelay.update(1, 0.1) is True and nodelay.up is True


def test_process_quorum_fork_and_terminate_delays_differ():
    q = vrrpd.ProcessQuorum(quorum=1, fork_delay=2.0, terminate_delay=0.0)
    assert q.update(1, now=0.0) is True and q.up is True
    assert q.update(0, now=1.0) is True and q.up is False  # terminate_delay 0: lost at once
    assert q.update(1, now=2.0) is False  # fork_delay 2: gained only after 2 s
    assert q.update(1, now=4.0) is True and q.up is True
    config, _ = parse_ok("vrrp_track_process p {\n process sshd\n quorum 2\n quorum_max 3\n fork_delay 2\n"
                         " terminate_delay 0.5\n}\n")
    tp = config.track_processes["p"]
    assert (tp.quorum, tp.quorum_max, tp.fork_delay, tp.terminate_delay) == (2, 3, 2.0, 0.5)


def test_lab_track_process_quorum_max_faults_with_too_many_processes(lab, tmp_path):
    name = "vt" + uuid.uuid4().hex[:10]
    binary = tmp_path / name
    shutil.copy("/bin/sleep", binary)
    ns = lab.host("a", f"{LAB_NET}.1/24")
    text = (f"vrrp_track_process many {{\n    process {name}\n    quorum 1\n    quorum_max 1\n"
            "    terminate_delay 0\n    fork_delay 0\n}\n")
    text += _conf(priority=150, state="MASTER", instance_extra="    track_process {\n        many\n    }\n")
    first = subprocess.Popen([str(binary), "60"])
    second = None
    try:
        node = _Node(lab, ns, tmp_path, "A", text)
        wait_for(lambda: lab.has_address(ns, VIP), 8, what="MASTER with one process")
        second = subprocess.Popen([str(binary), "60"])  # two: above quorum_max
        wait_for(lambda: not lab.has_address(ns, VIP), 8, what="FAULT with two processes")
        second.kill()
        second.wait()
        wait_for(lambda: lab.has_address(ns, VIP), 8, what="MASTER again with one")
        node.stop()
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()



def test_proc_events_wake_on_a_new_process_in_the_initial_namespace_only(lab):
    """The proc connector track_process listens to (a socket only, no daemon): its SO_RCVBUFFORCE is
    process_monitor_rcv_bufs, a new process is an event; in a network namespace the kernel refuses it
    (ECONNREFUSED), so open() gives None there and the /proc scans alone count."""
    import select

    require(os.geteuid() == 0, "needs root for the proc connector")
    events = vrrpd.ProcEvents.open(300000, force=True)
    assert events is not None
    try:
        assert events.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 600000
        events.drain()
        subprocess.run(["true"], check=True)
        assert select.select([events.sock], [], [], 2.0)[0], "no process event"
    finally:
        events.close()
    ns = lab.netns("p")
    out = lab.run(ns, [PYTHON, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); import vrrpd; "
                                      "print(vrrpd.ProcEvents.open() is None)"]).stdout
    assert out.strip() == "True"

def test_script_argv_runs_double_brackets_under_bash(tmp_path):
    require(os.path.exists("/bin/bash"), "needs /bin/bash")
    down = tmp_path / "down"
    cmd = _cmd(f"[[ -f {down} ]] && exit 1 || exit 0", shell=True)
    argv = vrrpd.script_argv(cmd)
    assert argv[0] == "/bin/bash"
    assert subprocess.run(argv).returncode == 0
    down.touch()
    assert subprocess.run(argv).returncode == 1  # under dash `[[` is "not found" and this would be 0
    assert vrrpd.script_argv(_cmd("killall -0 httpd")) == ["killall", "-0", "httpd"]
    assert vrrpd.script_argv(_cmd("test -f /x || exit 1", shell=True))[:2] == ["/bin/sh", "-c"]


def test_script_security_finds_non_root_writable_parts(tmp_path):
    require(os.geteuid() == 0, "needs root: the rule is about scripts run as root")
    assert vrrpd.script_security_problem("/bin/sh") is None
    script = tmp_path / "chk.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    tmp_path.chmod(0o755)
    assert vrrpd.script_security_problem(str(script)) is None
    script.chmod(0o757)
    assert vrrpd.script_security_problem(str(script)) == str(script)
    script.chmod(0o755)
    tmp_path.chmod(0o777)  # a world-writable directory without the sticky bit
    assert vrrpd.script_security_problem(str(script)) == str(tmp_path)
    tmp_path.chmod(0o755)
    os.chown(script, 65534, 0)
    assert vrrpd.script_security_problem(str(script)) == str(script)


def test_adjustment_sums_instance_and_sync_group_trackers_with_weight_override(tmp_path):
    f1 = vrrpd.TrackFile(name="f1", path=str(tmp_path / "f1"), weight=-10)
    (tmp_path / "f1").write_text("2\n")
    f2 = vrrpd.TrackFile(name="f2", path=str(tmp_path / "f2"), weight=1)
    (tmp_path / "f2").write_text("7\n")
    cfg, inst = _tracking_config(files=[f1, f2], refs={"file": [vrrpd.TrackRef("f1", weight=3, reverse=True)]})
    cfg.sync_groups.append(vrrpd.SyncGroup(name="G", group=["VI_1"], track_file=[vrrpd.TrackRef("f2")]))
    tracking = vrrpd.TrackerRunner(vrrpd.EventLoop(), cfg, lambda: None)
    tracking.start()
    try:
        assert tracking.adjustment(inst) == (2 * 3 * -1 + 7, False)
        (tmp_path / "f2").write_text("0\n")
        cfg.track_files["f2"].weight = 0
        tracking.files["f2"].read()
        assert tracking.adjustment(inst) == (-6, False)
        (tmp_path / "f2").write_text("1\n")
        tracking.files["f2"].read()
        assert tracking.adjustment(inst) == (-6, True)
        assert tracking.status()["track_file"]["f2"]["value"] == 1
    finally:
        tracking.stop()
        tracking.loop.close()


def test_parsed_seed001_configuration_drives_tracking_and_notify(tmp_path, loop):
    """The parser's model (section 3) feeds TrackerRunner and Notifier: shell syntax, weight override, notify."""
    require(hasattr(vrrpd, "parse_config_text"), "needs the config parser")
    tmp_path.chmod(0o755)
    down = tmp_path / "down"
    rec = _recorder(tmp_path, "rec.sh")
    cfg, diags = vrrpd.parse_config_text(f"""
vrrp_script chk_down {{
    script "[[ -f {down} ]] && exit 1 || exit 0"
    interval 0.1
    weight -5
}}
vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 22
    priority 100
    virtual_ipaddress {{
        172.16.1.66
    }}
    track_script {{
        chk_down weight -20
    }}
    notify_master "{rec} master-A"
    notify "{rec}"
}}
""")
    assert not [d for d in diags if d.severity is vrrpd.Severity.ERROR], diags
    inst = cfg.vrrp_instances[0]
    assert cfg.vrrp_scripts["chk_down"].script.shell
    tracking = vrrpd.TrackerRunner(loop, cfg, lambda: None)
    tracking.start()
    down.touch()
    _spin(loop, lambda: tracking.adjustment(inst) == (-20, False), 5, "the instance's weight -20 to apply")
    tracking.stop()
    notifier = vrrpd.Notifier(loop, cfg)
    notifier.vrrp_instance(inst, vrrpd.State.MASTER, 80)
    notifier.close(timeout=5)
    assert (tmp_path / "log").read_text().splitlines() == ["master-A", "INSTANCE VI_1 MASTER 80"]


def test_notifying_many_transitions_leaves_no_strings_behind():
    """Each transition looks up the state's notify_<state> script by one shared field name: a name built per
    call stayed in CPython's type attribute cache, up to 4,096 strings of a long-running daemon."""
    import gc
    import tracemalloc

    cfg, _diags = vrrpd.parse_config_text(instance_text())
    inst = cfg.vrrp_instances[0]
    loop = vrrpd.EventLoop()
    notifier = vrrpd.Notifier(loop, cfg)
    try:
        sys._clear_type_cache()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        elsewhere = []  # what a daemon does between two transitions: each name built would be at a new address
        for i in range(200):
            for state in (vrrpd.State.MASTER, vrrpd.State.BACKUP):
                notifier.vrrp_instance(inst, state, 100)
                elsewhere.append(f"{i:013d}")
        del elsewhere
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        notifier.close(timeout=5)
        loop.close()
    assert grown < 4000, f"{grown} bytes kept by 400 notifications"


# -- trackers on a real event loop ------------------------------------------------------------


def test_down_file_script_lowers_priority_by_weight_and_recovers(tmp_path, loop, vlog):
    """Seed 001: `[[ -f /etc/keepalived/down ]] && exit 1 || exit 0`, weight -5."""
    down = tmp_path / "down"
    chk = vrrpd.VrrpScript(name="chk_down", script=_cmd(f"[[ -f {down} ]] && exit 1 || exit 0", shell=True),
                           interval=0.1, weight=-5)
    cfg, inst = _tracking_config(scripts=[chk])
    changes: list = []
    tracking = vrrpd.TrackerRunner(loop, cfg, lambda: changes.append(tracking.adjustment(inst)))
    tracking.start()
    assert tracking.adjustment(inst) == (0, False)
    _spin(loop, lambda: tracking.scripts["chk_down"].runs >= 2, 5, "two runs")
    assert tracking.adjustment(inst) == (0, False) and changes == [(0, False)]
    down.touch()
    _spin(loop, lambda: tracking.adjustment(inst) == (-5, False), 5, "priority drop")
    assert "VRRP_Script(chk_down) failed (exited with status 1)" in vlog.text
    down.unlink()
    _spin(loop, lambda: tracking.adjustment(inst) == (0, False), 5, "recovery")
    assert changes == [(0, False), (-5, False), (0, False)]
    assert vlog.text.count("VRRP_Script(chk_down) succeeded") == 2
    tracking.stop()


def test_reload_keeps_the_state_of_unchanged_trackers(tmp_path, loop):
    """SIGHUP must not reset a failing check to INIT (keepalived #349/#1009: priority drift, flaps)."""
    down = tmp_path / "down"
    down.touch()

    def config(interval: float, line: int, with_file: bool):
        chk = vrrpd.VrrpScript(name="chk", script=_cmd(f"test ! -f {down}"), interval=interval, weight=-5,
                               line=line)
        files = [vrrpd.TrackFile(name="tf", path=str(tmp_path / "tf"), weight=-1)] if with_file else []
        return _tracking_config(scripts=[chk], files=files)

    (tmp_path / "tf").write_text("3\n")
    cfg, inst = config(0.1, line=10, with_file=True)
    changes: list = []
    tracking = vrrpd.TrackerRunner(loop, cfg, lambda: changes.append(1))
    tracking.start()
    _spin(loop, lambda: tracking.adjustment(inst) == (-8, False), 5, "the check to fail")
    runner = tracking.scripts["chk"]
    cfg2, inst2 = config(0.1, line=12, with_file=False)  # the same check, moved down two lines
    tracking.reload(cfg2)
    assert tracking.scripts["chk"] is runner and tracking.adjustment(inst2) == (-5, False)
    assert "tf" not in tracking.files and changes
    cfg3, inst3 = config(0.2, line=12, with_file=False)  # a changed check starts afresh
    tracking.reload(cfg3)
    assert tracking.scripts["chk"] is not runner and tracking.adjustment(inst3) == (0, False)
    _spin(loop, lambda: tracking.adjustment(inst3) == (-5, False), 5, "the new check to run")
    assert runner.timer is None and runner.child is None  # the old one is stopped
    tracking.stop()


def test_hung_script_is_killed_with_its_group_at_timeout_and_counts_as_failure(tmp_path, loop, vlog):
    marker = f"{uuid.uuid4().int % 1000 + 3000}.{os.getpid() % 1000}"
    chk = vrrpd.VrrpScript(name="chk_hang", script=_cmd(f"sleep {marker} & sleep {marker}", shell=True),
                           interval=5, timeout=0.3, weight=0)
    cfg, inst = _tracking_config(scripts=[chk])
    tracking = vrrpd.TrackerRunner(loop, cfg, lambda: None)
    start = time.monotonic()
    tracking.start()
    _spin(loop, lambda: tracking.adjustment(inst)[1], 5, "FAULT from the hung script")
    assert time.monotonic() - start < 2.0
    assert "VRRP_Script(chk_hang) timed_out" in vlog.text

    def leftovers():
        return [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).endswith(f"sleep {marker}")]

    wait_for(lambda: not leftovers(), 3, what="the script's background child to be killed too")
    tracking.stop()


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def test_missing_script_logs_clearly_and_faults_only_with_weight_0(tmp_path, loop, vlog):
    missing = str(tmp_path / "no-such-check.sh")
    weighted = vrrpd.VrrpScript(name="chk_w", script=_cmd(missing), interval=0.1, weight=-10)
    unweighted = vrrpd.VrrpScript(name="chk_0", script=_cmd("no-such-command-xyz --x"), interval=0.1, weight=0)
    cfg, inst = _tracking_config(scripts=[weighted])
    inst0 = vrrpd.VrrpInstance(name="VI_0", track_script=[vrrpd.TrackRef("chk_0")])
    cfg.vrrp_scripts["chk_0"] = unweighted
    cfg.vrrp_instances.append(inst0)
    tracking = vrrpd.TrackerRunner(loop, cfg, lambda: None)
    tracking.start()
    _spin(loop, lambda: tracking.adjustment(inst) == (-10, False) and tracking.adjustment(inst0) == (0, True),
          5, "both scripts failed")
    loop.run(until=time.monotonic() + 0.35)
    assert f"VRRP_Script(chk_w) script '{missing}' not found or not executable - counts as failure" in vlog.text
    assert "VRRP_Script(chk_0) script 'no-such-command-xyz' not found" in vlog.text
    assert vlog.text.count("not found or not executable") == 2  # said once per script, not every run
    tracking.stop()


def test_track_file_changes_reach_the_daemon(tmp_path, loop):
    path = tmp_path / "prio"
    tf = vrrpd.TrackFile(name="tf", path=str(path), weight=-2, init_file=0)
    cfg, inst = _tracking_config(files=[tf])
    changes: list = []
    tracking = vrrpd.TrackerRunner(loop, cfg, lambda: changes.append(tracking.adjustment(inst)))
    tracking.file_poll_interval = 0.05
    tracking.start()
    assert path.read_text().strip() == "0"  # init_file created it
    assert tracking.adjustment(inst) == (0, False)
    path.write_text("15\n")
    _spin(loop, lambda: changes, 3, "file change")
    assert changes == [(-30, False)]
    path.unlink()  # a missing file reads as 0
    _spin(loop, lambda: len(changes) == 2, 3, "file removal")
    assert changes[-1] == (0, False)
    tracking.stop()


def test_track_file_change_is_seen_at_once_through_inotify(tmp_path, loop):
    path = tmp_path / "weight"
    path.write_text("0\n")
    cfg, inst = _tracking_config(files=[vrrpd.TrackFile(name="tf", path=str(path), weight=-1)])
    tracking = vrrpd.TrackerRunner(loop, cfg, lambda: None)
    tracking.file_poll_interval = 3600  # only inotify can see the change in time
    tracking.start()
    require(tracking._inotify is not None, "needs inotify")
    path.write_text("40\n")
    start = time.monotonic()
    _spin(loop, lambda: tracking.adjustment(inst) == (-40, False), 2, "the change through inotify")
    assert time.monotonic() - start < 0.5
    tracking.stop()


def test_track_process_counts_a_running_process_and_fails_over_when_it_stops(tmp_path, loop, vlog):
    name = "vt" + uuid.uuid4().hex[:10]
    binary = tmp_path / name
    shutil.copy("/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "60"])
    try:
        tp = vrrpd.TrackProcess(name="chk_proc", process=[name], weight=-20, quorum=1)
        cfg, inst = _tracking_config(processes=[tp])
        tracking = vrrpd.TrackerRunner(loop, cfg, lambda: None)
        tracking.process_scan_interval = 0.1
        wait_for(lambda: _comm(proc.pid) == name, 3, what="the process to start")
        tracking.start()
        assert tracking.adjustment(inst) == (0, False)
        assert tracking.status()["track_process"]["chk_proc"]["count"] == 1
        proc.kill()
        proc.wait()
        _spin(loop, lambda: tracking.adjustment(inst) == (-20, False), 3, "the process to be missed")
        assert "Track_Process(chk_proc) now DOWN (0 running, quorum 1)" in vlog.text
        tracking.stop()
    finally:
        proc.kill()
        proc.wait()


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def test_enable_script_security_refuses_a_world_writable_script(tmp_path, loop, vlog):
    require(os.geteuid() == 0, "needs root: the rule is about scripts run as root")
    tmp_path.chmod(0o755)
    script = tmp_path / "chk.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o777)
    chk = vrrpd.VrrpScript(name="chk", script=_cmd(str(script)), interval=0.1, weight=-7)
    cfg, inst = _tracking_config(scripts=[chk])
    cfg.global_defs.enable_script_security = True
    tracking = vrrpd.TrackerRunner(loop, cfg, lambda: None)
    tracking.start()
    _spin(loop, lambda: tracking.adjustment(inst) == (-7, False), 3, "the script to be refused")
    assert f"unsafe permissions found for script '{script}'" in vlog.text
    tracking.stop()
    # without enable_script_security it runs (and succeeds), with a warning
    cfg.global_defs.enable_script_security = False
    tracking = vrrpd.TrackerRunner(loop, cfg, lambda: None)
    tracking.start()
    _spin(loop, lambda: tracking.scripts["chk"].result.good is True, 3, "the script to run")
    tracking.stop()


def test_scripts_run_as_script_user(tmp_path, loop):
    require(os.geteuid() == 0, "needs root to change user")
    import pwd
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="vrrpd-test-"))  # pytest's tmp_path is closed to other users
    try:
        out.chmod(0o1777)
        chk = vrrpd.VrrpScript(name="chk_id", script=_cmd(f"id -u > {out}/script", shell=True), interval=5)
        cfg, inst = _tracking_config(scripts=[chk])
        cfg.global_defs.script_user = "nobody"
        inst.notify_master = _cmd(f"id -u > {out}/notify", shell=True)
        tracking = vrrpd.TrackerRunner(loop, cfg, lambda: None)
        tracking.start()
        _spin(loop, lambda: tracking.scripts["chk_id"].runs, 5, "the script to run")
        tracking.stop()
        notifier = vrrpd.Notifier(loop, cfg)
        notifier.vrrp_instance(inst, vrrpd.State.MASTER, 100)
        notifier.close(timeout=5)
        nobody = str(pwd.getpwnam("nobody").pw_uid)
        assert (out / "script").read_text().strip() == nobody
        assert (out / "notify").read_text().strip() == nobody
    finally:
        shutil.rmtree(out)


# -- notify scripts, FIFO and mail -------------------------------------------------------------


def _recorder(tmp_path, name: str, delay: float = 0.0) -> str:
    """A notify script appending its arguments (or its fixed tag) to tmp_path/log."""
    script = tmp_path / name
    script.write_text(f'#!/bin/sh\nsleep {delay}\necho "$*" >> {tmp_path / "log"}\n')
    script.chmod(0o755)
    return str(script)


def test_notify_scripts_run_specific_then_generic_in_transition_order(tmp_path, loop):
    tmp_path.chmod(0o755)
    inst = vrrpd.VrrpInstance(name="VI_1")
    slow = _recorder(tmp_path, "slow.sh", delay=0.2)  # without a per-instance queue it would finish last
    inst.notify_master = _cmd(f"{slow} master-A")
    inst.notify_backup = _cmd(f"{slow} backup-A")
    inst.notify_fault = _cmd(f"{slow} fault-A")
    inst.notify = _cmd(_recorder(tmp_path, "notify.sh"))
    cfg = vrrpd.Config(vrrp_instances=[inst])
    notifier = vrrpd.Notifier(loop, cfg)
    notifier.vrrp_instance(inst, vrrpd.State.BACKUP, 150)
    notifier.vrrp_instance(inst, vrrpd.State.MASTER, 150)
    notifier.vrrp_instance(inst, vrrpd.State.FAULT, 150)
    notifier.vrrp_instance(inst, vrrpd.State.STOP, 150)
    notifier.close(timeout=10)
    assert (tmp_path / "log").read_text().splitlines() == [
        "backup-A", "INSTANCE VI_1 BACKUP 150", "master-A", "INSTANCE VI_1 MASTER 150",
        "fault-A", "INSTANCE VI_1 FAULT 150", "INSTANCE VI_1 STOP 150"]
    assert notifier.scripts_run == 7


def test_notify_scripts_never_block_the_loop(tmp_path, loop):
    tmp_path.chmod(0o755)
    inst = vrrpd.VrrpInstance(name="VI_1", notify_master=_cmd(_recorder(tmp_path, "slow.sh", delay=1)))
    notifier = vrrpd.Notifier(loop, vrrpd.Config(vrrp_instances=[inst]))
    start = time.monotonic()
    notifier.vrrp_instance(inst, vrrpd.State.MASTER, 100)
    assert time.monotonic() - start < 0.2
    notifier.close(timeout=0.1)  # still running: killed, close() keeps to its timeout
    assert time.monotonic() - start < 1.0
    assert not (tmp_path / "log").exists()


def test_group_notify_and_fifo_lines_match_keepalived(tmp_path, loop):
    tmp_path.chmod(0o755)
    fifo = tmp_path / "notify.fifo"
    group = vrrpd.SyncGroup(name="G1", group=["VI_1"], notify=_cmd(_recorder(tmp_path, "g.sh")))
    inst = vrrpd.VrrpInstance(name="VI_1")
    cfg = vrrpd.Config(vrrp_instances=[inst], sync_groups=[group])
    cfg.global_defs.notify_fifo = str(fifo)
    cfg.global_defs.vrrp_notify_priority_changes = True
    notifier = vrrpd.Notifier(loop, cfg)
    notifier.vrrp_instance(inst, vrrpd.State.MASTER, 150)  # creates the FIFO
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        notifier.vrrp_group(group, vrrpd.State.MASTER)
        notifier.vrrp_master_rx_lower_pri(inst, 150)
        notifier.vrrp_priority_change(inst, vrrpd.State.MASTER, 145)
        vs = vrrpd.VirtualServer(address=ipaddress.ip_address("192.168.201.15"), port=80)
        rs = vrrpd.RealServer(address=ipaddress.ip_address("1.2.3.4"), port=80)
        notifier.checker(vs, rs, False, "connection refused")
        notifier.close(timeout=5)
        data = os.read(reader, 65536).decode()
    finally:
        os.close(reader)
    assert data.splitlines() == [
        'INSTANCE "VI_1" MASTER 150', 'GROUP "G1" MASTER 0', 'INSTANCE "VI_1" MASTER_RX_LOWER_PRI 150',
        'INSTANCE "VI_1" MASTER_PRIORITY 145', "RS [1.2.3.4]:tcp:80 [192.168.201.15]:tcp:80 DOWN"]
    assert (tmp_path / "log").read_text().splitlines() == ["GROUP G1 MASTER 0"]
    assert not fifo.exists()  # we created it, we remove it


def test_deleted_instance_notifies_deleted_or_fault_like_keepalived(tmp_path, loop):
    tmp_path.chmod(0o755)
    rec = _recorder(tmp_path, "rec.sh")
    with_deleted = vrrpd.VrrpInstance(name="VI_1", notify_deleted=_cmd(f"{rec} deleted-1"), notify=_cmd(rec))
    without = vrrpd.VrrpInstance(name="VI_2", notify_fault=_cmd(f"{rec} fault-2"))
    notifier = vrrpd.Notifier(loop, vrrpd.Config(vrrp_instances=[with_deleted, without]))
    notifier.vrrp_deleted(with_deleted, 100)
    notifier.close(timeout=5)
    notifier = vrrpd.Notifier(loop, vrrpd.Config(vrrp_instances=[with_deleted, without]))
    notifier.vrrp_deleted(without, 90)
    notifier.close(timeout=5)
    assert (tmp_path / "log").read_text().splitlines() == ["deleted-1", "INSTANCE VI_1 DELETED 100", "fault-2"]


def test_checker_events_write_the_lvs_fifo_and_run_notify_up_and_quorum_down(tmp_path, loop):
    tmp_path.chmod(0o755)
    fifo = tmp_path / "lvs.fifo"
    cfg = vrrpd.Config()
    cfg.global_defs.lvs_notify_fifo = str(fifo)
    notifier = vrrpd.Notifier(loop, cfg)
    vs = vrrpd.VirtualServer(address=ipaddress.ip_address("10.0.0.10"), port=443, protocol="TCP")
    rs = vrrpd.RealServer(address=ipaddress.ip_address("10.0.0.21"),
                          notify_up=_cmd(_recorder(tmp_path, "up.sh") + " rs-up"),
                          notify_down=_cmd(_recorder(tmp_path, "down.sh") + " rs-down"))
    fw = vrrpd.VirtualServer(fwmark=7, quorum_up=_cmd(_recorder(tmp_path, "qup.sh") + " quorum-up"),
                             quorum_down=_cmd(_recorder(tmp_path, "qdown.sh") + " quorum-down"))
    notifier.checker(vs, rs, True)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        notifier.virtual_server_quorum(fw, False)
        notifier.vrrp_instance(vrrpd.VrrpInstance(name="VI_1"), vrrpd.State.MASTER, 100)  # not an LVS line
        data = os.read(reader, 4096).decode()
    finally:
        os.close(reader)
        notifier.close(timeout=2)
    assert data.splitlines() == ["RS [10.0.0.21]:tcp:443 [10.0.0.10]:tcp:443 UP", "VS FWM 7 DOWN"]
    assert sorted((tmp_path / "log").read_text().splitlines()) == ["quorum-down", "rs-up"]  # each once


def test_notifier_reload_keeps_the_mail_memory_and_moves_the_fifo(tmp_path, loop):
    first, second = tmp_path / "first.fifo", tmp_path / "second.fifo"
    inst = vrrpd.VrrpInstance(name="VI_1")
    cfg = vrrpd.Config(vrrp_instances=[inst])
    cfg.global_defs.notify_fifo = str(first)
    notifier = vrrpd.Notifier(loop, cfg)
    sent: list = []
    notifier.mailer.submit = lambda subject, body: sent.append(subject)
    cfg.global_defs.smtp_alert = True
    notifier.vrrp_instance(inst, vrrpd.State.MASTER, 100)
    cfg2 = vrrpd.Config(vrrp_instances=[inst])
    cfg2.global_defs.smtp_alert = True
    cfg2.global_defs.notify_fifo = str(second)
    notifier.reload(cfg2)
    notifier.vrrp_instance(inst, vrrpd.State.MASTER, 100)  # still MASTER after the reload: no second mail
    reader = os.open(second, os.O_RDONLY | os.O_NONBLOCK)
    try:
        data = os.read(reader, 4096).decode()
    finally:
        os.close(reader)
        notifier.close(timeout=1)
    assert len(sent) == 1 and not first.exists()  # the first FIFO was ours: removed when left
    assert data == 'INSTANCE "VI_1" MASTER 100\n'


def test_notify_fifo_without_reader_neither_blocks_nor_fails(tmp_path, loop):
    fifo = tmp_path / "nobody.fifo"
    os.mkfifo(fifo)
    inst = vrrpd.VrrpInstance(name="VI_1")
    cfg = vrrpd.Config(vrrp_instances=[inst])
    cfg.global_defs.vrrp_notify_fifo = str(fifo)
    notifier = vrrpd.Notifier(loop, cfg)
    start = time.monotonic()
    for _ in range(5000):  # far more than a pipe buffer holds
        notifier.vrrp_instance(inst, vrrpd.State.BACKUP, 100)
    assert time.monotonic() - start < 2.0
    assert notifier.status()["fifo_dropped"] > 0
    notifier.close(timeout=0.1)
    assert fifo.exists()  # not ours: left in place


def _require_aiosmtpd() -> None:
    import importlib.util

    require(importlib.util.find_spec("aiosmtpd") is not None, "needs aiosmtpd (make deps)")


class _MailSink:
    """An aiosmtpd handler keeping (helo, mail_from, rcpt_tos, data) of each mail."""

    def __init__(self):
        self.mails: list = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append((session.host_name, envelope.mail_from, list(envelope.rcpt_tos),
                           envelope.original_content.decode()))
        return "250 OK"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mail_config(port: int):
    cfg = vrrpd.Config()
    gd = cfg.global_defs
    gd.router_id = "LVS_one"
    gd.notification_email = ["root@localhost", "Ops <ops@example.com>"]
    gd.notification_email_from = "keepalived@one.zou.com"
    gd.smtp_server, gd.smtp_port = "127.0.0.1", port
    gd.smtp_helo_name = "one.zou.com"
    gd.smtp_connect_timeout = 5
    gd.smtp_alert = True
    return cfg


def test_smtp_alerts_reach_a_real_server_as_keepalived_writes_them(loop):
    _require_aiosmtpd()
    from aiosmtpd.controller import Controller

    sink = _MailSink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cfg = _mail_config(port)
        cfg.global_defs.no_email_faults = True
        inst = vrrpd.VrrpInstance(name="VI_1")
        cfg.vrrp_instances.append(inst)
        notifier = vrrpd.Notifier(loop, cfg)
        notifier.vrrp_instance(inst, vrrpd.State.MASTER, 100)
        notifier.vrrp_instance(inst, vrrpd.State.MASTER, 100)  # no change since the last mail: no mail
        notifier.vrrp_instance(inst, vrrpd.State.FAULT, 100)  # no_email_faults
        notifier.vrrp_instance(inst, vrrpd.State.BACKUP, 100)
        vs = vrrpd.VirtualServer(address=ipaddress.ip_address("172.16.1.44"), port=80)
        rs = vrrpd.RealServer(address=ipaddress.ip_address("172.16.1.1"), port=80)
        notifier.checker(vs, rs, False, "HTTP/SSL request failed")
        notifier.close(timeout=10)
    finally:
        controller.stop()
    assert len(sink.mails) == 3, sink.mails
    helo, mail_from, rcpts, data = sink.mails[0]
    assert helo == "one.zou.com" and mail_from == "keepalived@one.zou.com"
    assert rcpts == ["root@localhost", "ops@example.com"]
    lines = data.split("\r\n")
    assert lines[0].startswith("Date: ") and lines[1:6] == [
        "From: keepalived@one.zou.com", "Subject: [LVS_one] VRRP Instance VI_1 - Entering MASTER state",
        "X-Mailer: Keepalived", "To: root@localhost, Ops <ops@example.com>", ""]
    assert lines[6] == "=> VRRP Instance is now owning VRRP VIPs <="
    assert "Subject: [LVS_one] VRRP Instance VI_1 - Entering BACKUP state" in sink.mails[1][3]
    assert "=> VRRP Instance is no longer owning VRRP VIPs <=" in sink.mails[1][3]
    assert ("Subject: [LVS_one] Realserver [172.16.1.1]:tcp:80 of virtual server [172.16.1.44]:tcp:80 - DOWN"
            in sink.mails[2][3])
    assert "=> CHECK failed on service : HTTP/SSL request failed <=" in sink.mails[2][3]


def test_smtp_alert_defaults_follow_keepalived():
    assert vrrpd.smtp_alert_wanted(None, None, None) is False  # VRRP: off unless asked
    assert vrrpd.smtp_alert_wanted(None, None, True) is True  # global smtp_alert
    assert vrrpd.smtp_alert_wanted(None, False, True) is False  # smtp_alert_vrrp wins over smtp_alert
    assert vrrpd.smtp_alert_wanted(True, False, False) is True  # the instance's own setting wins
    assert vrrpd.smtp_alert_wanted(None, None, None, default=True) is True  # real servers: on


def test_silent_smtp_server_never_delays_loop_timers(loop, vlog):
    """An SMTP server that accepts TCP and never answers: timers stay on time, close() keeps its limit."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        cfg = _mail_config(silent.getsockname()[1])
        cfg.global_defs.smtp_connect_timeout = 1
        inst = vrrpd.VrrpInstance(name="VI_1")
        cfg.vrrp_instances.append(inst)
        notifier = vrrpd.Notifier(loop, cfg)
        notifier.mailer.retry_delay = 0.2
        ticks: list = []

        def tick():
            ticks.append(time.monotonic())
            loop.call_later(0.02, tick)

        loop.call_soon(tick)
        states = [vrrpd.State.MASTER, vrrpd.State.BACKUP] * 5

        def transition():
            if states:
                notifier.vrrp_instance(inst, states.pop(), 100)
                loop.call_later(0.1, transition)

        loop.call_soon(transition)
        loop.run(until=time.monotonic() + 2.5)
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        assert len(ticks) > 50
        # a blocked loop would stall for smtp_connect_timeout (1 s); allow for a busy shared CPU
        assert max(gaps) < 0.5, f"max timer gap {max(gaps):.3f}s while mail was stuck"
        assert notifier.mailer.sent == 0 and "SMTP alert" in vlog.text and "failed (attempt 1 of 3)" in vlog.text
        start = time.monotonic()
        notifier.close(timeout=0.3)
        assert time.monotonic() - start < 1.0
    finally:
        silent.close()


# -- the seed 001 scenarios in the namespace lab ---------------------------------------------------


def _require_daemon() -> None:
    require(hasattr(vrrpd, "Daemon") and hasattr(vrrpd, "load_config"), "needs the Daemon and the config parser")


def _recorder_script(directory: Path, node: str) -> str:
    """A notify script appending its arguments to DIRECTORY/notify-NODE.log."""
    script = directory / f"record-{node}.sh"
    script.write_text(f'#!/bin/sh\necho "$*" >> {directory / f"notify-{node}.log"}\n')
    script.chmod(0o755)
    return str(script)


def _seed001_conf(directory: Path, node: str, state: str, priority: int, check: str, track: str,
                  extra_global: str = "") -> Path:
    """Seed 001's configuration (vrrp_script + weight -5 + notify scripts) at lab speed (VRRPv3, 0.1 s)."""
    rec = _recorder_script(directory, node)
    conf = directory / f"keepalived-{node}.conf"
    conf.write_text(f"""
global_defs {{
    router_id {node}
    vrrp_version 3
{extra_global}
}}
{check}
vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 22
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        10.77.0.66/32
    }}
    {track}
    notify_master "{rec} master-{node}"
    notify_backup "{rec} backup-{node}"
    notify_fault "{rec} fault-{node}"
    notify "{rec}"
}}
""")
    return conf


def _notify_lines(directory: Path, node: str) -> List[str]:
    path = directory / f"notify-{node}.log"
    return path.read_text().splitlines() if path.exists() else []


def _vip_on(lab, ns: str) -> bool:
    return lab.has_address(ns, "10.77.0.66")


def test_seed001_down_file_moves_the_vip_to_the_peer_and_back(lab, tmp_path):
    """touch down -> priority 100-5=95 < 98 -> the peer takes the VIP; rm down -> A preempts back."""
    _require_daemon()
    tmp_path.chmod(0o755)
    down = tmp_path / "down"
    check = f"""vrrp_script chk_down {{
    script "[[ -f {down} ]] && exit 1 || exit 0"
    interval 0.2
    weight -5
}}"""
    a = lab.host("a", "10.77.0.1/24")
    b = lab.host("b", "10.77.0.2/24")
    conf_a = _seed001_conf(tmp_path, "A", "MASTER", 100, check, "track_script {\n        chk_down\n    }")
    conf_b = _seed001_conf(tmp_path, "B", "BACKUP", 98, check.replace(str(down), str(tmp_path / "down-b")),
                           "track_script {\n        chk_down\n    }")
    node_a = _Node(lab, a, tmp_path, "A", conf_a, log_name="vrrpd-A.log", detail=False)
    node_b = _Node(lab, b, tmp_path, "B", conf_b, log_name="vrrpd-B.log", detail=False)
    wait_for(lambda: _vip_on(lab, a) and not _vip_on(lab, b), 15, what="A to be MASTER")
    wait_for(lambda: "master-A" in _notify_lines(tmp_path, "A"), 5, what="A's notify_master")
    down.touch()
    wait_for(lambda: _vip_on(lab, b) and not _vip_on(lab, a), 10, what="B to take the VIP")
    down.unlink()
    wait_for(lambda: _vip_on(lab, a) and not _vip_on(lab, b), 10, what="A to preempt back")
    wait_for(lambda: _notify_lines(tmp_path, "A")[-1:] == ["INSTANCE VI_1 MASTER 100"], 5, what="A's notify")
    node_b.stop(timeout=15)  # B first: a stopping master sends priority 0 and B would take over
    node_a.stop(timeout=15)
    log_a = (tmp_path / "vrrpd-A.log").read_text()
    assert "VRRP_Script(chk_down) failed (exited with status 1)" in log_a
    assert "(VI_1) Changing effective priority from 100 to 95" in log_a
    assert _notify_lines(tmp_path, "A") == [
        "backup-A", "INSTANCE VI_1 BACKUP 100", "master-A", "INSTANCE VI_1 MASTER 100",
        "backup-A", "INSTANCE VI_1 BACKUP 95", "master-A", "INSTANCE VI_1 MASTER 100",
        "INSTANCE VI_1 STOP 100"]
    assert _notify_lines(tmp_path, "B")[-5:] == [
        "master-B", "INSTANCE VI_1 MASTER 98", "backup-B", "INSTANCE VI_1 BACKUP 98", "INSTANCE VI_1 STOP 98"]


@pytest.mark.parametrize("impl", ["vrrpd", "keepalived"])
def test_vrrpd_and_keepalived_run_the_same_notify_sequence_for_a_failing_check(lab, tmp_path, impl):
    """Node A is vrrpd or keepalived 2.2.7 (the bar), node B vrrpd; a check script file with weight -5.

    The same A sequence from both proves the notify arguments and order are keepalived's."""
    _require_daemon()
    if impl == "keepalived":
        require(shutil.which("keepalived") is not None, "needs keepalived")
    tmp_path.chmod(0o755)
    down = tmp_path / "down"
    chk = tmp_path / "chk_down.sh"
    chk.write_text(f"#!/bin/sh\ntest -f {down} && exit 1\nexit 0\n")
    chk.chmod(0o755)
    check = f'vrrp_script chk_down {{\n    script "{chk}"\n    interval 1\n    weight -5\n}}'  # 2.2.7: whole seconds
    track = "track_script {\n        chk_down\n    }"
    a = lab.host("a", "10.77.0.1/24")
    b = lab.host("b", "10.77.0.2/24")
    conf_a = _seed001_conf(tmp_path, "A", "MASTER", 100, check, track)
    if impl == "keepalived":
        node_a = _Node(lab, a, tmp_path, "A", conf_a, keepalived=True, log_name="vrrpd-A.log", detail=False)
    else:
        node_a = _Node(lab, a, tmp_path, "A", conf_a, log_name="vrrpd-A.log", detail=False)
    node_b = _Node(lab, b, tmp_path, "B", _seed001_conf(tmp_path, "B", "BACKUP", 98, "", ""),
                   log_name="vrrpd-B.log", detail=False)
    wait_for(lambda: _vip_on(lab, a) and not _vip_on(lab, b), 15, what="A to be MASTER")
    wait_for(lambda: "INSTANCE VI_1 MASTER 100" in _notify_lines(tmp_path, "A"), 5, what="A's notify")
    down.touch()
    wait_for(lambda: _vip_on(lab, b) and not _vip_on(lab, a), 10, what="B to take the VIP")
    wait_for(lambda: "INSTANCE VI_1 BACKUP 95" in _notify_lines(tmp_path, "A"), 5, what="A's notify")
    down.unlink()
    wait_for(lambda: _vip_on(lab, a) and not _vip_on(lab, b), 10, what="A to preempt back")
    wait_for(lambda: _notify_lines(tmp_path, "A").count("INSTANCE VI_1 MASTER 100") == 2
             and _notify_lines(tmp_path, "A").count("master-A") == 2, 5, what="A's notify scripts")
    node_b.stop(timeout=15)
    node_a.stop(timeout=15)
    log_a = (tmp_path / "vrrpd-A.log").read_text()
    assert "VRRP_Script(chk_down) failed (exited with status 1)" in log_a
    assert "(VI_1) Changing effective priority from 100 to 95" in log_a
    expected = ["backup-A", "INSTANCE VI_1 BACKUP 100", "master-A", "INSTANCE VI_1 MASTER 100",
                "backup-A", "INSTANCE VI_1 BACKUP 95", "master-A", "INSTANCE VI_1 MASTER 100", "INSTANCE VI_1 STOP 100"]
    lines = _notify_lines(tmp_path, "A")
    if impl == "vrrpd":
        assert lines == expected  # specific then generic, one at a time
    else:
        # keepalived starts notify_backup and notify together, so they may finish in either order
        # (its issue #1213); each kind on its own is in transition order, as with vrrpd.
        assert [x for x in lines if x.startswith("INSTANCE")] == [x for x in expected if x.startswith("INSTANCE")]
        assert [x for x in lines if not x.startswith("INSTANCE")] == [
            x for x in expected if not x.startswith("INSTANCE")]


_SMTP_SINK = """
import json, sys, time
from aiosmtpd.controller import Controller
out = sys.argv[1]
class Sink:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write(json.dumps([session.host_name, envelope.mail_from, envelope.rcpt_tos,
                                envelope.original_content.decode()]) + "\\n")
        return "250 OK"
Controller(Sink(), hostname="127.0.0.1", port=2525).start()
open(out + ".ready", "w").close()
time.sleep(300)
"""


@pytest.mark.parametrize("impl", ["vrrpd", "keepalived"])
def test_vrrpd_and_keepalived_send_the_same_alert_mail(lab, tmp_path, impl):
    """An SMTP sink inside the node's namespace receives the same conversation and DATA from both."""
    _require_daemon()
    _require_aiosmtpd()
    if impl == "keepalived":
        require(shutil.which("keepalived") is not None, "needs keepalived")
    import json
    import re

    tmp_path.chmod(0o755)
    mail = """    notification_email {
        root@localhost
        ops@example.com
    }
    notification_email_from keepalived@one.zou.com
    smtp_server 127.0.0.1 2525
    smtp_helo_name one.zou.com
    smtp_connect_timeout 30
    smtp_alert"""
    a = lab.host("a", "10.77.0.1/24")
    sink = tmp_path / "mails.jsonl"
    lab.exec(a, [PYTHON, "-c", _SMTP_SINK, str(sink)])
    wait_for(lambda: Path(str(sink) + ".ready").exists(), 10, what="the SMTP sink")
    conf = _seed001_conf(tmp_path, "A", "MASTER", 100, "", "", mail)
    node = _Node(lab, a, tmp_path, "A", conf, keepalived=impl == "keepalived", log_name="vrrpd-A.log", detail=False)
    wait_for(lambda: _vip_on(lab, a), 15, what="A to be MASTER")
    wait_for(lambda: sink.exists() and len(sink.read_text().splitlines()) >= 2, 10, what="two mails")
    node.stop(timeout=15)
    if impl == "vrrpd":
        wait_for(lambda: len(sink.read_text().splitlines()) >= 3, 10, what="the stop mail")
    else:
        time.sleep(1)  # keepalived 2.2.7 exits before its "Stopping" mail goes out; vrrpd sends it
    mails = [json.loads(line) for line in sink.read_text().splitlines()]
    envelope = ["one.zou.com", "keepalived@one.zou.com", ["root@localhost", "ops@example.com"]]
    assert [m[:3] for m in mails] == [envelope] * (3 if impl == "vrrpd" else 2)
    bodies = [m[3].split("\r\n") for m in mails]
    for lines in bodies:  # strftime("%a, %d %b %Y %H:%M:%S %z") in both
        date = r"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}"
        assert re.fullmatch(date, lines[0]), lines[0]
    assert [lines[1:] for lines in bodies] == [
        ["From: keepalived@one.zou.com", f"Subject: [A] VRRP Instance VI_1 - {subject}", "X-Mailer: Keepalived",
         "To: root@localhost, ops@example.com", "", body, "", ""]
        for subject, body in [("Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
                              ("Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="),
                              ("Stopping", "=> VRRP Instance stopping <=")]][:len(bodies)]


@pytest.mark.parametrize("how", ["vrrp_script", "track_process"])
def test_seed001_check_on_a_stopped_process_fails_over(lab, tmp_path, how):
    """Seed 001's `killall -0 httpd` (and the same with track_process): stop the service, the VIP moves."""
    _require_daemon()
    tmp_path.chmod(0o755)
    require(shutil.which("killall") is not None, "needs killall (psmisc)")
    service = "vt" + uuid.uuid4().hex[:8] + "d"  # a unique process name: namespaces share the PID space
    binary = tmp_path / service
    shutil.copy("/bin/sleep", binary)
    httpd = subprocess.Popen([str(binary), "300"])
    try:
        if how == "vrrp_script":
            check = f'vrrp_script chk_httpd {{\n    script "killall -0 {service}"\n    interval 0.2\n    weight -5\n}}'
            track = "track_script {\n        chk_httpd\n    }"
        else:
            check = f"vrrp_track_process chk_httpd {{\n    process {service}\n    weight -5\n}}"
            track = "track_process {\n        chk_httpd\n    }"
        a = lab.host("a", "10.77.0.1/24")
        b = lab.host("b", "10.77.0.2/24")
        node_a = _Node(lab, a, tmp_path, "A", _seed001_conf(tmp_path, "A", "MASTER", 100, check, track),
                       log_name="vrrpd-A.log", detail=False)
        node_b = _Node(lab, b, tmp_path, "B", _seed001_conf(tmp_path, "B", "BACKUP", 98, "", ""),
                       log_name="vrrpd-B.log", detail=False)
        wait_for(lambda: _vip_on(lab, a) and not _vip_on(lab, b), 15, what="A to be MASTER")
        httpd.kill()
        httpd.wait()
        wait_for(lambda: _vip_on(lab, b) and not _vip_on(lab, a), 10, what="B to take the VIP")
        node_a.stop(timeout=15)
        node_b.stop(timeout=15)
        assert _notify_lines(tmp_path, "A")[-3:] == ["backup-A", "INSTANCE VI_1 BACKUP 95", "INSTANCE VI_1 STOP 95"]
    finally:
        httpd.kill()
        httpd.wait()


def test_adverts_stay_on_time_while_the_smtp_server_never_answers(lab, tmp_path):
    """Mail to an SMTP server that accepts TCP and never answers is stuck for 30 s; adverts are not."""
    _require_daemon()
    require(shutil.which("tcpdump") is not None, "needs tcpdump")
    tmp_path.chmod(0o755)
    mail = """    notification_email {
        root@localhost
    }
    notification_email_from keepalived@a
    smtp_server 127.0.0.1 2525
    smtp_connect_timeout 30
    smtp_alert"""
    a = lab.host("a", "10.77.0.1/24")
    b = lab.host("b", "10.77.0.2/24")
    lab.exec(a, [PYTHON, "-c", "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',2525))\n"
                 "s.listen(50)\ntime.sleep(300)"])
    time.sleep(0.3)
    node_a = _Node(lab, a, tmp_path, "A", _seed001_conf(tmp_path, "A", "MASTER", 110, "", "", mail),
                   log_name="vrrpd-A.log", detail=False)
    wait_for(lambda: _vip_on(lab, a), 15, what="A to be MASTER")  # two mails queued: BACKUP (init), MASTER
    capture = tmp_path / "adverts.txt"
    dump = lab.exec(b, ["tcpdump", "-i", "eth0", "-n", "-l", "-tt", "ip proto 112 and src 10.77.0.1"],
                    stdout=open(capture, "w"), stderr=subprocess.DEVNULL)
    time.sleep(3.5)
    dump.terminate()
    dump.wait(5)
    start = time.monotonic()
    node_a.stop(timeout=15)
    stop_time = time.monotonic() - start
    stamps = [float(line.split()[0]) for line in capture.read_text().splitlines() if "VRRP" in line]
    gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
    assert len(stamps) > 20, capture.read_text()[:500]
    assert max(gaps) < 0.35, f"max advert gap {max(gaps):.3f}s while mail was stuck (advert_int 0.1)"
    assert stop_time < 5, f"stopping took {stop_time:.1f}s with mail stuck"
    log_a = (tmp_path / "vrrpd-A.log").read_text()
    assert "SMTP alert successfully sent" not in log_a
    print(f"adverts: {len(stamps)}, max gap {max(gaps) * 1000:.0f} ms, stop {stop_time:.2f}s")


# ============================================================================================
# F. LVS: IPVS netlink and checkers (unit), and the real kernel in a VM
# ============================================================================================


# -- F helpers -------------------------------------------------------------------------------

IN_VM = os.environ.get("VRRPD_IN_VM") == "1"
IPVS_VM = HERE / ".ci" / "ipvs-vm.sh"


def _ip(text: str):
    import ipaddress

    return ipaddress.ip_address(text)


class FakeIpvs:
    """Stands in for IpvsNetlink: an in-memory kernel table that records every command."""

    def __init__(self) -> None:
        self.table: dict = {}
        self.calls: List[tuple] = []

    def services(self):
        return [svc for svc, _ in self.table.values()]

    def dests(self, key):
        return list(self.table[key][1].values())

    def new_service(self, svc):
        self.calls.append(("new_service", str(svc.key)))
        self.table[svc.key] = (svc, {})

    def set_service(self, svc):
        self.calls.append(("set_service", str(svc.key)))
        self.table[svc.key] = (svc, self.table[svc.key][1])

    def del_service(self, key):
        self.calls.append(("del_service", str(key)))
        del self.table[key]

    def new_dest(self, key, dest):
        self.calls.append(("new_dest", str(key), str(dest.addr), dest.weight))
        self.table[key][1][(dest.addr, dest.port)] = dest

    def set_dest(self, key, dest):
        self.calls.append(("set_dest", str(key), str(dest.addr), dest.weight))
        self.table[key][1][(dest.addr, dest.port)] = dest

    def del_dest(self, key, dest):
        self.calls.append(("del_dest", str(key), str(dest.addr)))
        del self.table[key][1][(dest.addr, dest.port)]

    def new_daemon(self, state, sd):
        self.calls.append(("new_daemon", state, sd.ifname, sd.syncid))

    def del_daemon(self, state):
        self.calls.append(("del_daemon", state))

    def close(self) -> None:
        pass

    def weights(self, key_text: str) -> dict:
        """{'addr:port': weight} of the service printed as key_text."""
        for key, (_, dests) in self.table.items():
            if str(key) == key_text:
                return {f"{d.addr}:{d.port}": d.weight for d in dests.values()}
        return {}


def _vs(address="10.0.0.100", port=80, rss=(), **kw):
    return vrrpd.VirtualServer(address=_ip(address), port=port, real_servers=list(rss), **kw)


def _rs(address="127.0.0.1", port=80, checkers=(), **kw):
    return vrrpd.RealServer(address=_ip(address), port=port, checkers=list(checkers), **kw)


def _manager(*vss, fake=None):
    loop = vrrpd.EventLoop()
    config = vrrpd.Config(virtual_servers=list(vss))
    notes: list = []

    class Recorder(vrrpd.Notifier):
        def checker(self, vs, rs, up, reason=""):
            notes.append((str(rs.address), rs.port, up))

        def virtual_server_quorum(self, vs, up, body=""):
            notes.append(("quorum", vrrpd.format_virtual_server(vs), up))

    manager = vrrpd.LvsManager(loop, config, Recorder(loop, config))
    manager.nl = fake or FakeIpvs()
    manager.notes = notes
    return loop, manager


def _run_until(loop, predicate, timeout: float, what: str = "condition"):
    """Run `loop` in slices of 50 ms until predicate() is true after one; fail after `timeout` seconds."""
    return wait_for(lambda: loop.run(until=time.monotonic() + 0.05) or predicate(), timeout, 0, what)


def _nl_hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# -- netlink encoding, byte for byte -----------------------------------------------------------

# IPVS_CMD_ATTR_SERVICE of TCP 10.0.0.100:80 (key only): AF=2, PROTOCOL=6, ADDR (16 bytes), PORT 80 (big endian)
SVC_KEY_TCP = """
30 00 01 80
  06 00 01 00 02 00 00 00
  06 00 02 00 06 00 00 00
  14 00 03 00 0a 00 00 64 00 00 00 00 00 00 00 00 00 00 00 00
  06 00 04 00 00 50 00 00
"""
# the same, with sched "rr", flags {0, mask ffffffff}, timeout 0 and netmask 255.255.255.255
SVC_FULL_TCP = """
54 00 01 80
  06 00 01 00 02 00 00 00
  06 00 02 00 06 00 00 00
  14 00 03 00 0a 00 00 64 00 00 00 00 00 00 00 00 00 00 00 00
  06 00 04 00 00 50 00 00
  07 00 06 00 72 72 00 00
  0c 00 07 00 00 00 00 00 ff ff ff ff
  08 00 08 00 00 00 00 00
  08 00 09 00 ff ff ff ff
"""
# IPVS_CMD_ATTR_DEST of 10.0.0.2:80, DR (3), weight 5, thresholds 0, address family 2
DEST_FULL = """
48 00 02 80
  14 00 01 00 0a 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00
  06 00 02 00 00 50 00 00
  08 00 03 00 03 00 00 00
  08 00 04 00 05 00 00 00
  08 00 05 00 00 00 00 00
  08 00 06 00 00 00 00 00
  06 00 0b 00 02 00 00 00
"""
DEST_KEY = """
20 00 02 80
  14 00 01 00 0a 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00
  06 00 02 00 00 50 00 00
"""


def _nlhdr(length: int, family: int, flags: int, seq: int, cmd: int) -> str:
    import struct

    return (struct.pack("<IHHII", length, family, flags, seq, 0) + bytes([cmd, 1, 0, 0])).hex()


@pytest.mark.parametrize("cmd,flags,body,call", [
    (1, 5, SVC_FULL_TCP, lambda s, d: vrrpd.ipvs_service_attr(s)),                      # NEW_SERVICE
    (2, 5, SVC_FULL_TCP, lambda s, d: vrrpd.ipvs_service_attr(s)),                      # SET_SERVICE
    (3, 5, SVC_KEY_TCP, lambda s, d: vrrpd.ipvs_service_attr(s.key)),                   # DEL_SERVICE
    (5, 5, SVC_KEY_TCP + DEST_FULL, lambda s, d: vrrpd.ipvs_service_attr(s.key) + vrrpd.ipvs_dest_attr(d)),
    (6, 5, SVC_KEY_TCP + DEST_FULL, lambda s, d: vrrpd.ipvs_service_attr(s.key) + vrrpd.ipvs_dest_attr(d)),
    (7, 5, SVC_KEY_TCP + DEST_KEY, lambda s, d: vrrpd.ipvs_service_attr(s.key) + vrrpd.ipvs_dest_attr(d, False)),
    (4, 0x301, "", lambda s, d: b""),                                                   # GET_SERVICE dump
    (8, 0x301, SVC_KEY_TCP, lambda s, d: vrrpd.ipvs_service_attr(s.key)),               # GET_DEST dump
])
def test_ipvs_netlink_commands_encode_byte_for_byte(cmd, flags, body, call):
    key = vrrpd.IpvsServiceKey(2, 6, _ip("10.0.0.100"), 80)
    svc = vrrpd.IpvsService(key, "rr", 0, 0, 0xFFFFFFFF)
    dest = vrrpd.IpvsDest(_ip("10.0.0.2"), 80, fwd_method=3, weight=5)
    attrs = call(svc, dest)
    msg = vrrpd.genl_message(0x22, cmd, attrs, 7, flags)
    expected = _nl_hex(body)
    assert msg == _nl_hex(_nlhdr(20 + len(expected), 0x22, flags, 7, cmd)) + expected


def test_ipvs_netlink_fwmark_ipv6_persistence_and_tunnel_encode():
    fw = vrrpd.ipvs_service_attr(vrrpd.IpvsService(vrrpd.IpvsServiceKey(2, fwmark=7), "wlc", 1, 50, 0xFFFFFF00))
    assert fw == _nl_hex("""
        38 00 01 80  06 00 01 00 02 00 00 00  08 00 05 00 07 00 00 00  08 00 06 00 77 6c 63 00
        0c 00 07 00 01 00 00 00 ff ff ff ff  08 00 08 00 32 00 00 00  08 00 09 00 ff ff ff 00""")
    v6_key = vrrpd.IpvsServiceKey(10, 17, _ip("fd00::1"), 53)
    v6 = vrrpd.ipvs_service_attr(vrrpd.IpvsService(v6_key, "sh", 0x10, 0, 128))
    assert v6[-8:] == _nl_hex("08 00 09 00 80 00 00 00")  # IPv6 netmask is a prefix length
    assert _nl_hex("14 00 03 00 fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01") in v6
    assert _nl_hex("06 00 02 00 11 00 00 00") in v6 and _nl_hex("0c 00 07 00 10 00 00 00 ff ff ff ff") in v6
    sip = vrrpd.ipvs_service_attr(vrrpd.IpvsService(vrrpd.IpvsServiceKey(2, fwmark=7), "rr", 1, 60, pe_name="sip"))
    assert sip.endswith(_nl_hex("08 00 0b 00 73 69 70 00")) and sip[:2] == bytes([0x40, 0])
    tun = vrrpd.ipvs_dest_attr(vrrpd.IpvsDest(_ip("10.0.0.3"), 0, 2, 1, tun_type=1, tun_port=6080, tun_flags=1))
    assert tun.endswith(_nl_hex("05 00 0d 00 01 00 00 00  06 00 0e 00 17 c0 00 00  06 00 0f 00 01 00 00 00"))


def test_ipvs_set_config_timeouts_encode():
    msg = vrrpd.genl_message(0x22, 12, vrrpd.ipvs_timeouts_attrs({"udp": 60, "tcp": 7200}), 3)
    assert msg == _nl_hex("24 00 00 00 22 00 05 00 03 00 00 00 00 00 00 00 0c 01 00 00"
                          "08 00 04 00 20 1c 00 00  08 00 06 00 3c 00 00 00")


def test_genl_getfamily_request_and_replies_decode():
    req = vrrpd.genl_message(16, 3, vrrpd.nla_pack(2, b"IPVS\0"), 9, 5, version=1)
    assert req == _nl_hex("20 00 00 00 10 00 05 00 09 00 00 00 00 00 00 00 03 01 00 00"
                          "09 00 02 00 49 50 56 53 00 00 00 00")
    # a GET_SERVICE dump answer (with a nested STATS attribute to skip and HASHED set), then DONE
    svc = _nl_hex("""
        06 00 01 00 02 00 00 00  06 00 02 00 06 00 00 00
        14 00 03 00 0a 00 00 64 00 00 00 00 00 00 00 00 00 00 00 00  06 00 04 00 01 bb 00 00
        07 00 06 00 72 72 00 00  0c 00 07 00 03 00 00 00 ff ff ff ff  08 00 08 00 2c 01 00 00
        08 00 09 00 ff ff ff ff  0c 00 0a 80 08 00 01 00 05 00 00 00""")
    nest = vrrpd.nla_pack(1 | 0x8000, svc)
    part = vrrpd.genl_message(0x22, 1, nest, 11, 2)
    done = _nl_hex("14 00 00 00 03 00 02 00 0b 00 00 00 00 00 00 00 00 00 00 00")
    replies, finished = vrrpd.nlmsg_replies(part + done, 11)
    assert finished and len(replies) == 1 and replies[0][0] == 0x22
    cmd, attrs = vrrpd.genl_parse(replies[0][2])
    assert cmd == 1
    parsed = vrrpd.ipvs_parse_service(attrs[1])
    assert str(parsed.key) == "[10.0.0.100]:tcp:443"
    assert (parsed.sched_name, parsed.flags, parsed.timeout, parsed.netmask) == ("rr", 3, 300, 0xFFFFFFFF)
    dest = vrrpd.ipvs_parse_dest(_nl_hex(DEST_FULL)[4:], 2)
    assert (str(dest.addr), dest.port, dest.fwd_method, dest.weight) == ("10.0.0.2", 80, 3, 5)
    # an error answer (EEXIST) to our sequence number raises; an ACK (error 0) finishes
    err = _nl_hex("24 00 00 00 02 00 00 00 0c 00 00 00 00 00 00 00 ef ff ff ff") + req[:16]
    with pytest.raises(vrrpd.NetlinkError) as info:
        vrrpd.nlmsg_replies(err, 12)
    assert info.value.errno == 17
    ack = _nl_hex("24 00 00 00 02 00 00 00 0d 00 00 00 00 00 00 00 00 00 00 00") + req[:16]
    assert vrrpd.nlmsg_replies(ack, 13) == ([], True)
    assert vrrpd.nlmsg_replies(ack, 14) == ([], False)  # someone else's sequence number


def test_lvs_service_settings_from_config():
    vs = _vs(lb_algo="sh", persistence_timeout=50, sched_flags=["sh-port", "sh-fallback"], protocol="UDP", ops=True,
             persistence_granularity=_ip("255.255.255.0"))
    (key,) = vrrpd.lvs_service_keys(vs, vrrpd.Config())
    assert str(key) == "[10.0.0.100]:udp:80"
    svc = vrrpd.lvs_service(vs, key)
    assert (svc.sched_name, svc.flags, svc.timeout, svc.netmask) == ("sh", 0x1 | 0x4 | 0x8 | 0x10, 50, 0xFFFFFF00)
    group = vrrpd.VirtualServerGroup("G", entries=[
        vrrpd.VirtualServerGroupEntry(first=_ip("10.1.0.1"), last=_ip("10.1.0.3"), port=8080),
        vrrpd.VirtualServerGroupEntry(fwmark=9)])
    config = vrrpd.Config(virtual_server_groups={"G": group})
    keys = vrrpd.lvs_service_keys(vrrpd.VirtualServer(group="G", port=80), config)
    assert [str(k) for k in keys] == ["[10.1.0.1]:tcp:8080", "[10.1.0.2]:tcp:8080", "[10.1.0.3]:tcp:8080", "FWM 9"]


# -- checker decisions with a fake clock -------------------------------------------------------


def test_check_decision_retries_then_goes_down_and_one_success_brings_it_up():
    params = vrrpd.CheckerParams(delay_loop=6, connect_timeout=3, retry=2, delay_before_retry=1.5, warmup=0,
                                 alpha=False)
    d = vrrpd.CheckDecision(params)
    assert d.up
    assert d.record(100.0, True) == (None, 106.0)
    assert d.record(106.0, False) == (None, 107.5)   # first retry after delay_before_retry
    assert d.record(107.5, False) == (None, 109.0)   # second retry
    assert d.record(109.0, False) == (False, 115.0)  # retries exhausted: down, back to delay_loop
    assert d.record(115.0, False) == (None, 121.0)   # while down no retries are spent
    assert d.record(121.0, True) == (True, 127.0)
    assert d.record(127.0, False) == (None, 128.5)   # a fresh cycle of retries
    assert d.record(128.5, True) == (None, 134.5)    # success mid-retry: stays up, counter reset
    assert d.record(134.5, False)[0] is None and d.retry_it == 1


def test_check_decision_alpha_starts_down_and_params_inherit():
    chk = vrrpd.Checker(kind="HTTP_GET", connect_timeout=2)
    rs = _rs(checkers=[chk], retry=4)
    vs = _vs(rss=[rs], delay_loop=7, alpha=True)
    p = vrrpd.checker_params(vs, rs, chk)
    assert (p.delay_loop, p.connect_timeout, p.retry, p.delay_before_retry, p.alpha) == (7, 2, 4, 3.0, True)
    assert vrrpd.checker_params(vs, rs, vrrpd.Checker(kind="MISC_CHECK")).retry == 4
    assert vrrpd.checker_params(_vs(), _rs(), vrrpd.Checker(kind="MISC_CHECK")).retry == 0
    d = vrrpd.CheckDecision(p)
    assert not d.up
    assert d.record(0.0, False) == (None, 7)
    assert d.record(7.0, True) == (True, 14.0)


def test_misc_check_exit_codes_and_dynamic_weight():
    assert vrrpd.misc_check_result(0, False, False) == (True, None)
    assert vrrpd.misc_check_result(1, False, True) == (False, None)
    assert vrrpd.misc_check_result(7, False, False) == (False, None)
    assert vrrpd.misc_check_result(7, False, True) == (True, 5)
    assert vrrpd.misc_check_result(0, True, True) == (False, None)


def test_http_response_status_and_digest_rules():
    body = b"hello\n"
    ok = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n" + body
    digest = "b1946ac92492d2347c6235b4d2611184"
    assert vrrpd.http_response_ok(ok, vrrpd.UrlCheck("/", digest=digest)) == (True, "")
    assert not vrrpd.http_response_ok(ok, vrrpd.UrlCheck("/", digest="0" * 32))[0]
    assert not vrrpd.http_response_ok(ok, vrrpd.UrlCheck("/", status_code=[(301, 302)]))[0]
    redirect = b"HTTP/1.1 302 Found\r\n\r\n"
    assert vrrpd.http_response_ok(redirect, vrrpd.UrlCheck("/", status_code=[(301, 302)]))[0]
    assert not vrrpd.http_response_ok(redirect, vrrpd.UrlCheck("/"))[0]
    assert not vrrpd.http_response_ok(b"garbage", vrrpd.UrlCheck("/"))[0]


def test_quorum_hysteresis_sorry_server_and_inhibit_plan():
    rs1 = _rs("10.0.0.1", weight=2)
    rs2 = _rs("10.0.0.2", weight=1, inhibit_on_failure=True)
    vs = _vs(rss=[rs1, rs2], quorum=2, hysteresis=1, sorry_server=(_ip("10.0.0.9"), None))
    k1, k2, ks = (_ip("10.0.0.1"), 80), (_ip("10.0.0.2"), 80), (_ip("10.0.0.9"), 80)
    assert vrrpd.lvs_quorum_transition(vs, 1, True) is None     # 1 >= 2-1: still up
    assert vrrpd.lvs_quorum_transition(vs, 0, True) is False    # lost below quorum-hysteresis
    assert vrrpd.lvs_quorum_transition(vs, 2, False) is None    # needs quorum+hysteresis = 3 to come back
    assert vrrpd.lvs_quorum_transition(vs, 3, False) is True
    states = {k1: (rs1, True, 2), k2: (rs2, False, 1)}
    plan = vrrpd.lvs_desired_dests(vs, states, True)
    assert plan[k1][0] == 2 and plan[k2][0] == 0 and ks not in plan  # inhibited rs2 stays at weight 0
    plan = vrrpd.lvs_desired_dests(vs, states, False)
    assert ks in plan and plan[ks][0] == 1 and k1 not in plan and plan[k2][0] == 0
    vs.sorry_server_inhibit = True
    assert vrrpd.lvs_desired_dests(vs, states, True)[ks][0] == 0
    plain = _vs(rss=[rs1])
    assert vrrpd.lvs_desired_dests(plain, {k1: (rs1, False, 2)}, True) == {}
    assert vrrpd.lvs_desired_dests(plain, {k1: (rs1, True, 2)}, True)[k1][1] == vrrpd.LbKind.NAT


# -- checkers against real servers on loopback -------------------------------------------------


@pytest.fixture
def web_server(tmp_path):
    """An HTTP server on 127.0.0.1 whose answers the test can change: {"status": 200, "body": b".."}."""
    import http.server
    import threading

    state = {"status": 200, "body": b"hello\n", "hits": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["hits"] += 1
            state[self.path] = self.headers.get("Host")
            self.send_response(state["status"])
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["port"] = server.server_address[1]
    state["server"] = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _self_signed(tmp_path: Path):
    require(shutil.which("openssl") is not None, "needs openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "2", "-subj", "/CN=rs.test",
        "-keyout", str(key), "-out", str(cert)])
    return cert, key


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_check_removes_and_readds_real_server_with_keepalived_lines(caplog):
    import socket

    caplog.set_level("INFO", logger="vrrpd")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    chk = vrrpd.Checker(kind="TCP_CHECK", connect_timeout=1, retry=1, delay_before_retry=0.1)
    vs = _vs(rss=[_rs(port=port, checkers=[chk])], delay_loop=0.2)
    loop, m = _manager(vs)
    m.start()
    fake = m.nl
    assert fake.weights("[10.0.0.100]:tcp:80") == {f"127.0.0.1:{port}": 1}
    listener.close()
    started = time.monotonic()
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80") == {}, 3, "removal")
    assert time.monotonic() - started < 0.2 + 0.1 + 1.0  # within delay_loop + retry * delay_before_retry
    assert f"TCP connection to [127.0.0.1]:tcp:{port} failed." in caplog.text
    assert f"Removing service [127.0.0.1]:tcp:{port} from VS [10.0.0.100]:tcp:80" in caplog.text
    assert m.notes == [("127.0.0.1", port, False), ("quorum", "[10.0.0.100]:tcp:80", False)]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80"), 3, "re-adding")
    assert f"Adding service [127.0.0.1]:tcp:{port} to VS [10.0.0.100]:tcp:80" in caplog.text
    m.stop()
    assert fake.table == {} and ("del_service", "[10.0.0.100]:tcp:80") in fake.calls
    listener.close()
    loop.close()


def test_udp_ping_and_file_checks_are_read_with_keepalived_keywords(tmp_path):
    config, diags = parse_ok(f"""
track_file tf {{
    file {tmp_path}/w
    weight 0
}}
virtual_server 10.0.0.1 53 {{
    protocol UDP
    real_server 10.0.0.2 53 {{
        UDP_CHECK {{
            connect_timeout 2
            payload Ab12f 3 456
            require_reply 4f 4B xx
            min_reply_length 2
            max_reply_length 9
            retry 2
        }}
        PING_CHECK {{
            delay_before_retry 0.5
            log_all_failures
        }}
        FILE_CHECK {{
            track_file tf
            weight -5 reverse
        }}
    }}
    real_server 10.0.0.3 53 {{
        ICMP_CHECK {{
        }}
        FILE_CHECK {{
        }}
    }}
}}
""")
    udp, ping, file_check = config.virtual_servers[0].real_servers[0].checkers
    assert udp.kind == "UDP_CHECK" and udp.payload == bytes.fromhex("ab120f034506") and udp.require_reply
    assert (udp.reply_data, udp.reply_mask) == (b"\x4f\x4b\x00", b"\xff\xff\x00")
    assert (udp.min_reply_length, udp.max_reply_length, udp.retry, udp.connect_timeout) == (2, 9, 2, 2.0)
    assert ping.kind == "PING_CHECK" and ping.delay_before_retry == 0.5 and ping.log_all_failures
    assert (file_check.track_file, file_check.file_weight, file_check.file_weight_reverse) == ("tf", -5, True)
    second = config.virtual_servers[0].real_servers[1].checkers
    assert [c.kind for c in second] == ["PING_CHECK"]  # the FILE_CHECK without track_file is dropped
    text = "\n".join(messages(diags))
    assert "keepalived has no ICMP_CHECK; read as PING_CHECK" in text
    assert "FILE_CHECK has no track_file specified - ignoring" in text


def test_udp_reply_and_file_check_verdicts():
    chk = vrrpd.Checker(kind="UDP_CHECK", require_reply=True, reply_data=b"OK\x00", reply_mask=b"\xff\xff\x00",
                        min_reply_length=2, max_reply_length=4)
    assert vrrpd.udp_reply_ok(chk, b"OK") and vrrpd.udp_reply_ok(chk, b"OK\x7f")
    assert not vrrpd.udp_reply_ok(chk, b"NO") and not vrrpd.udp_reply_ok(chk, b"O") and \
        not vrrpd.udp_reply_ok(chk, b"OK123")
    assert vrrpd.udp_reply_ok(vrrpd.Checker(kind="UDP_CHECK", require_reply=True), b"anything")
    assert vrrpd.file_check_result(0, 0, False, 1) == (True, None)
    assert vrrpd.file_check_result(3, 0, False, 1) == (False, None)
    assert vrrpd.file_check_result(0, 0, True, 1) == (False, None)
    assert vrrpd.file_check_result(2, 5, False, 1) == (True, 11)
    assert vrrpd.file_check_result(2, 5, True, 20) == (True, 10)
    assert vrrpd.file_check_result(-(2**31), 1, False, 0) == (False, None)


def test_udp_ping_and_file_checks_move_real_servers(tmp_path, caplog):
    import socket

    caplog.set_level("INFO", logger="vrrpd")
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    port = server.getsockname()[1]
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # listens, never answers
    mute.bind(("127.0.0.2", port))
    udp = vrrpd.Checker(kind="UDP_CHECK", connect_timeout=0.3, retry=0, require_reply=True, reply_data=b"OK",
                        reply_mask=b"\xff\xff", min_reply_length=2)
    silent = vrrpd.Checker(kind="UDP_CHECK", connect_timeout=0.2, retry=0)  # no require_reply: silence is fine
    ping = vrrpd.Checker(kind="PING_CHECK", connect_timeout=1, retry=0, alpha=True)
    track = tmp_path / "weight"
    track.write_text("0\n")
    filechk = vrrpd.Checker(kind="FILE_CHECK", track_file="tf", file_weight=0)
    vs = _vs("10.0.0.100", port, protocol="UDP", delay_loop=0.2,
             rss=[_rs("127.0.0.1", port, [udp]), _rs("127.0.0.2", port, [silent]), _rs("127.0.0.3", 7, [ping]),
                  _rs("127.0.0.4", 9, [filechk], weight=3)])
    loop, m = _manager(vs)
    m.config.track_files["tf"] = vrrpd.TrackFile(name="tf", path=str(track))
    got = []

    def answer():
        try:
            data, peer = server.recvfrom(100)
        except BlockingIOError:
            return
        got.append(data)
        server.sendto(b"OK", peer)
    loop.add_reader(server, answer)
    m.start()
    key = f"[10.0.0.100]:udp:{port}"
    fake = m.nl
    _run_until(loop, lambda: "127.0.0.3:7" in fake.weights(key), 5, "PING_CHECK up")
    assert "ICMP connection to [127.0.0.3]:udp:7 success." in caplog.text
    _run_until(loop, lambda: len(got) >= 2, 3, "UDP_CHECK probes")
    assert got[0] == vrrpd.UDP_CHECK_PAYLOAD and len(got[0]) == 32
    assert fake.weights(key) == {f"127.0.0.1:{port}": 1, f"127.0.0.2:{port}": 1, "127.0.0.3:7": 1, "127.0.0.4:9": 3}
    # the UDP server goes: its ICMP port unreachable brings the real server down (both UDP checks)
    loop.remove_reader(server)
    server.close()
    mute.close()
    _run_until(loop, lambda: f"127.0.0.1:{port}" not in fake.weights(key), 3, "UDP_CHECK down")
    assert f"UDP_CHECK on service [127.0.0.1]:udp:{port} failed after 0 retries." in caplog.text
    _run_until(loop, lambda: f"127.0.0.2:{port}" not in fake.weights(key), 3, "silent UDP_CHECK down on ICMP error")
    # FILE_CHECK: a non-zero value (weight 0) is DOWN; back to 0 is UP; a weight moves the real server's weight
    track.write_text("1\n")
    _run_until(loop, lambda: "127.0.0.4:9" not in fake.weights(key), 3, "FILE_CHECK down")
    track.write_text("0\n")
    _run_until(loop, lambda: fake.weights(key).get("127.0.0.4:9") == 3, 3, "FILE_CHECK up")
    filechk.file_weight = 4
    track.write_text("2\n")
    _run_until(loop, lambda: fake.weights(key).get("127.0.0.4:9") == 11, 3, "FILE_CHECK weight 3 + 2 x 4")
    m.stop()
    loop.close()


def test_ping_check_over_ipv6_loopback(caplog):
    caplog.set_level("INFO", logger="vrrpd")
    ping = vrrpd.Checker(kind="PING_CHECK", connect_timeout=1, retry=0, alpha=True)
    vs = _vs("fd00::100", 80, delay_loop=0.2, rss=[_rs("::1", 80, [ping])])
    loop, m = _manager(vs)
    m.start()
    _run_until(loop, lambda: "::1:80" in str(m.nl.weights("[fd00::100]:tcp:80")), 5, "PING_CHECK over ICMPv6 up")
    assert "ICMPv6 connection to [::1]:tcp:80 success." in caplog.text
    m.stop()
    loop.close()


def test_bfd_check_follows_the_session_at_once_with_keepalived_lines(caplog):
    caplog.set_level("INFO", logger="vrrpd")
    chk = vrrpd.Checker(kind="BFD_CHECK", bfd_name="BRS")
    vs = _vs(rss=[_rs(address="10.0.0.5", checkers=[chk])], delay_loop=60)
    loop, m = _manager(vs)
    state = {"up": False}
    m.bfd_up = lambda name: name == "BRS" and state["up"]
    m.start()
    fake = m.nl
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80") == {}, 2, "down until the first Up event")
    state["up"] = True
    m.bfd_event("BRS", True)  # no waiting for delay_loop 60
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80") == {"10.0.0.5:80": 1}, 1, "up at once")
    assert "BFD check of [BRS] RS([10.0.0.5]:tcp:80) is UP" in caplog.text
    state["up"] = False
    m.bfd_event("BRS", False)
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80") == {}, 1, "down at once (no retries)")
    assert "BFD check of [BRS] RS([10.0.0.5]:tcp:80) is DOWN" in caplog.text
    m.stop()
    loop.close()
    cfg, diags = vrrpd.parse_config_text(
        "bfd_instance BRS {\n    neighbor_ip 10.0.0.5\n}\nvirtual_server 10.0.0.100 80 {\n    protocol TCP\n"
        "    real_server 10.0.0.5 80 {\n        BFD_CHECK {\n            name BRS\n            alpha\n        }\n"
        "    }\n    real_server 10.0.0.6 80 {\n        BFD_CHECK {\n            name NOPE\n        }\n    }\n}\n")
    rs5, rs6 = cfg.virtual_servers[0].real_servers
    assert rs5.checkers[0].bfd_name == "BRS" and rs5.checkers[0].alpha and rs6.checkers == []
    assert "BFD_CHECK name 'NOPE' names no bfd_instance - ignoring" in "\n".join(str(d) for d in diags)


def test_http_get_digest_status_inhibit_and_sorry_server(web_server, caplog):
    caplog.set_level("INFO", logger="vrrpd")
    port = web_server["port"]
    url = vrrpd.UrlCheck("/index.html", digest="b1946ac92492d2347c6235b4d2611184")
    chk = vrrpd.Checker(kind="HTTP_GET", urls=[url], connect_timeout=1, retry=0, virtualhost="www.test")
    inhibited = _vs(port=80, rss=[_rs(port=port, checkers=[chk], inhibit_on_failure=True)], delay_loop=0.2)
    chk2 = vrrpd.Checker(kind="HTTP_GET", urls=[vrrpd.UrlCheck("/x", status_code=[(200, 200)])],
                         connect_timeout=1, retry=0)
    sorry = _vs(port=81, rss=[_rs(port=port, checkers=[chk2])], delay_loop=0.2,
                sorry_server=(_ip("127.0.0.9"), 8080))
    loop, m = _manager(inhibited, sorry)
    m.start()
    fake = m.nl
    _run_until(loop, lambda: web_server["hits"] >= 2, 3, "first checks")
    _run_until(loop, lambda: "/index.html" in web_server and "/x" in web_server, 3, "both urls")
    assert web_server["/index.html"] == "www.test" and web_server["/x"] == f"127.0.0.1:{port}"
    assert fake.weights("[10.0.0.100]:tcp:80") == {f"127.0.0.1:{port}": 1}
    web_server["body"] = b"changed\n"  # digest mismatch -> weight 0; status 200 still fine for the other VS
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80") == {f"127.0.0.1:{port}": 0}, 3, "inhibit")
    assert "MD5 digest error" in caplog.text
    assert f"Disabling service [127.0.0.1]:tcp:{port} of VS [10.0.0.100]:tcp:80" in caplog.text
    assert fake.weights("[10.0.0.100]:tcp:81") == {f"127.0.0.1:{port}": 1}
    web_server["status"] = 503  # the only real server fails: the sorry server comes in
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:81") == {"127.0.0.9:8080": 1}, 3, "sorry server")
    assert "HTTP status_code [503]" in caplog.text and "Lost quorum 1-0=1 > 0 for VS [10.0.0.100]:tcp:81" in caplog.text
    assert ("quorum", "[10.0.0.100]:tcp:81", False) in m.notes
    web_server["status"], web_server["body"] = 200, b"hello\n"
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:81") == {f"127.0.0.1:{port}": 1}, 3, "sorry out")
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80") == {f"127.0.0.1:{port}": 1}, 3, "enabled")
    assert "Remote Web server [127.0.0.1]:tcp:" in caplog.text and "Gained quorum" in caplog.text
    m.stop()
    loop.close()


def test_ssl_get_against_self_signed_https_server(tmp_path, caplog):
    import http.server
    import ssl
    import threading

    caplog.set_level("INFO", logger="vrrpd")
    cert, key = _self_signed(tmp_path)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"secure\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    import hashlib

    url = vrrpd.UrlCheck("/", digest=hashlib.md5(b"secure\n").hexdigest())
    chk = vrrpd.Checker(kind="SSL_GET", urls=[url], connect_timeout=2, retry=0)
    vs = _vs(port=443, rss=[_rs(port=port, checkers=[chk])], delay_loop=0.3, alpha=True)
    loop, m = _manager(vs)
    m.start()
    fake = m.nl
    assert fake.weights("[10.0.0.100]:tcp:443") == {}  # alpha: down until the first success
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:443"), 5, "SSL_GET success")
    assert f"Remote Web server [127.0.0.1]:tcp:{port} succeed on service." in caplog.text
    server.shutdown()
    server.server_close()
    _run_until(loop, lambda: not fake.weights("[10.0.0.100]:tcp:443"), 5, "SSL_GET failure")
    m.stop()
    loop.close()
    # --genhash uses the same code path
    server2 = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server2.socket = ctx.wrap_socket(server2.socket, server_side=True)
    threading.Thread(target=server2.serve_forever, daemon=True).start()
    out = subprocess.run([PYTHON, VRRPD, "--genhash", f"https://127.0.0.1:{server2.server_address[1]}/"],
               capture_output=True, text=True, timeout=30)
    server2.shutdown()
    server2.server_close()
    assert out.returncode == 0 and out.stdout.strip() == f"MD5SUM = {hashlib.md5(b'secure' + bytes([10])).hexdigest()}"


def test_http_get_over_ipv6_with_bindto_and_connect_port():
    import http.server
    import socket
    import threading

    seen: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.client_address[0], self.headers.get("Host")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    class Server6(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

    server = Server6(("::1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    chk = vrrpd.Checker(kind="HTTP_GET", urls=[vrrpd.UrlCheck("/")], connect_timeout=1, retry=0, alpha=True,
                        bindto=_ip("::1"), connect_port=server.server_address[1])
    vs = _vs("fd00::100", 80, rss=[_rs("::1", 8080, checkers=[chk])], delay_loop=0.2)
    loop, m = _manager(vs)
    m.start()
    _run_until(loop, lambda: m.nl.weights("[fd00::100]:tcp:80") == {"::1:8080": 1}, 3, "IPv6 HTTP_GET up")
    assert seen[0] == ("::1", f"[::1]:{server.server_address[1]}")
    m.stop()
    loop.close()
    server.shutdown()
    server.server_close()


def test_checker_timeout_on_silent_server_keeps_loop_responsive(caplog):
    import socket

    caplog.set_level("INFO", logger="vrrpd")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the kernel; nobody ever answers
    port = silent.getsockname()[1]
    chk = vrrpd.Checker(kind="HTTP_GET", urls=[vrrpd.UrlCheck("/")], connect_timeout=0.5, retry=0)
    vs = _vs(rss=[_rs(port=port, checkers=[chk])], delay_loop=5)
    loop, m = _manager(vs)
    ticks: list = []

    def tick():
        ticks.append(time.monotonic())
        loop.call_later(0.05, tick)

    tick()
    m.start()
    started = time.monotonic()
    _run_until(loop, lambda: not m.nl.weights("[10.0.0.100]:tcp:80"), 3, "timeout")
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 1.5
    assert f"Timeout reading data to [127.0.0.1]:tcp:{port}." in caplog.text
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= 8 and max(gaps) < 0.3  # the loop kept ticking while the check waited
    m.stop()
    silent.close()
    loop.close()


def test_misc_check_dynamic_weight_and_timeout(tmp_path):
    status = tmp_path / "status"
    status.write_text("0")
    script = vrrpd.Command(raw=f"exit $(cat {status})", argv=[], shell=True)
    chk = vrrpd.Checker(kind="MISC_CHECK", misc_path=script, misc_dynamic=True, misc_timeout=0.5)
    vs = _vs(rss=[_rs(checkers=[chk], weight=3)], delay_loop=0.1)
    loop, m = _manager(vs)
    m.start()
    fake = m.nl
    assert fake.weights("[10.0.0.100]:tcp:80") == {"127.0.0.1:80": 3}
    status.write_text("12")  # misc_dynamic: exit 12 means up with weight 10
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80") == {"127.0.0.1:80": 10}, 3, "dynamic weight")
    status.write_text("1")
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80") == {}, 3, "exit 1 down")
    status.write_text("0")
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:80") == {"127.0.0.1:80": 3}, 3, "back")
    slow = vrrpd.Command(raw="sleep 5", argv=["sleep", "5"])
    chk.misc_path = slow
    vs2 = _vs(port=81, rss=[_rs(checkers=[vrrpd.Checker(kind="MISC_CHECK", misc_path=slow, misc_timeout=0.3)])],
              delay_loop=0.1)
    m.reload(vrrpd.Config(virtual_servers=[vs, vs2]))
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:81") == {}, 3, "misc timeout")
    m.stop()
    loop.close()


def test_smtp_and_dns_checks_against_loopback_servers():
    import socket
    import threading

    smtp = socket.socket()
    smtp.bind(("127.0.0.1", 0))
    smtp.listen(8)

    def smtp_serve():
        while True:
            try:
                conn, _ = smtp.accept()
            except OSError:
                return
            conn.sendall(b"220-hello\r\n220 ready\r\n")
            conn.recv(100)
            conn.sendall(b"250 ok\r\n")
            conn.recv(100)
            conn.close()

    threading.Thread(target=smtp_serve, daemon=True).start()
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    rcode = {"value": 0}

    def dns_serve():
        while True:
            try:
                query, peer = dns.recvfrom(512)
            except OSError:
                return
            answers = 0 if rcode["value"] else 1
            header = bytes([0x81, 0x80 | rcode["value"], 0, 1, 0, answers, 0, 0, 0, 0])
            dns.sendto(query[:2] + header + query[12:], peer)

    threading.Thread(target=dns_serve, daemon=True).start()
    chk_smtp = vrrpd.Checker(kind="SMTP_CHECK", connect_timeout=1, retry=0, alpha=True)
    chk_dns = vrrpd.Checker(kind="DNS_CHECK", connect_timeout=1, retry=0, delay_before_retry=0.1, alpha=True)
    vs1 = _vs(port=25, rss=[_rs(port=smtp.getsockname()[1], checkers=[chk_smtp])], delay_loop=0.2)
    vs2 = _vs(port=53, protocol="UDP", rss=[_rs(port=dns.getsockname()[1], checkers=[chk_dns])], delay_loop=0.2)
    loop, m = _manager(vs1, vs2)
    m.start()
    fake = m.nl
    _run_until(loop, lambda: fake.weights("[10.0.0.100]:tcp:25") and fake.weights("[10.0.0.100]:udp:53"), 3, "up")
    rcode["value"] = 2  # SERVFAIL
    _run_until(loop, lambda: not fake.weights("[10.0.0.100]:udp:53"), 3, "DNS failure")
    m.stop()
    loop.close()
    smtp.close()
    dns.close()


# -- bind_if and fwmark: the checker's socket leaves by one interface, or with a mark policy routing sees ------

_BOUND_SERVERS = """
import selectors, socket
sel = selectors.DefaultSelector()
def listen(kind, port):
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("192.0.2.10", port))
    if kind == socket.SOCK_STREAM:
        s.listen(16)
    sel.register(s, selectors.EVENT_READ, (kind, port))
for kind, port in ((socket.SOCK_STREAM, 80), (socket.SOCK_STREAM, 25), (socket.SOCK_DGRAM, 5353),
                   (socket.SOCK_DGRAM, 53)):
    listen(kind, port)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        kind, port = key.data
        if kind == socket.SOCK_DGRAM:
            data, peer = key.fileobj.recvfrom(512)
            if port == 53:  # one answer, NOERROR
                data = data[:2] + bytes([0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]) + data[12:]
            else:
                data = b"OK"
            key.fileobj.sendto(data, peer)
            continue
        conn, _ = key.fileobj.accept()
        conn.settimeout(2)
        try:
            if port == 80:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n")
            else:
                conn.sendall(b"220 ready\\r\\n")
                conn.recv(100)
                conn.sendall(b"250 ok\\r\\n")
                conn.recv(100)
        except OSError:
            pass
        conn.close()
"""


class _InNetns:
    """The calling thread inside namespace `ns` until the with-block ends (every socket it makes is there)."""

    def __init__(self, ns: str):
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.ns = ns

    def __enter__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
        try:
            assert self.libc.setns(target, 0x40000000) == 0, f"setns {self.ns}"
        finally:
            os.close(target)
        return self

    def __exit__(self, *exc):
        try:
            assert self.libc.setns(self.home, 0x40000000) == 0, "setns back home"
        finally:
            os.close(self.home)


def test_lab_checker_bind_if_and_fwmark_reach_a_server_only_that_way(lab, caplog):
    """192.0.2.10 is on two hosts: the main route leads to s1, where nothing listens; s2, which serves TCP, HTTP,
    SMTP, DNS and UDP, is reached only by a socket bound to a2 (bind_if, SO_BINDTODEVICE) or marked 7 (fwmark,
    SO_MARK, `ip rule fwmark 7 lookup 100`). Checkers without either go to s1 and fail."""
    caplog.set_level("INFO", logger="vrrpd")
    lb = lab.netns("lb")
    hosts = {}
    for n in (1, 2):
        s = hosts[n] = lab.netns(f"s{n}")
        lab.ip("link", "add", f"a{n}", "netns", lb, "type", "veth", "peer", "name", "eth0", "netns", s)
        lab.ip("addr", "add", f"10.71.{n}.1/24", "dev", f"a{n}", ns=lb)
        lab.ip("link", "set", f"a{n}", "up", ns=lb)
        lab.ip("addr", "add", f"10.71.{n}.2/24", "dev", "eth0", ns=s)
        lab.ip("link", "set", "eth0", "up", ns=s)
        lab.ip("addr", "add", "192.0.2.10/32", "dev", "lo", ns=s)
    lab.ip("route", "add", "192.0.2.10/32", "via", "10.71.1.2", "dev", "a1", ns=lb)
    lab.ip("route", "add", "192.0.2.10/32", "via", "10.71.2.2", "dev", "a2", "metric", "50", ns=lb)
    lab.ip("route", "add", "192.0.2.10/32", "via", "10.71.2.2", "dev", "a2", "table", "100", ns=lb)
    lab.ip("rule", "add", "fwmark", "7", "lookup", "100", ns=lb)
    server = lab.exec(hosts[2], [PYTHON, "-c", _BOUND_SERVERS], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    common = "connect_timeout 1\n retry 0\n"
    checkers = {  # VS port -> (checker text, real server port, reaches s2)
        1: ("TCP_CHECK", "", 80, False),
        2: ("TCP_CHECK", "bind_if a2", 80, True),
        3: ("TCP_CHECK", "fwmark 7", 80, True),
        4: ("HTTP_GET", "bind_if a2\n url {\n path /\n }", 80, True),
        5: ("HTTP_GET", "fwmark 7\n url {\n path /\n }", 80, True),
        6: ("SMTP_CHECK", "bind_if a2", 25, True),
        7: ("DNS_CHECK", "fwmark 7", 53, True),
        8: ("UDP_CHECK", "fwmark 7\n require_reply 4f4b", 5353, True),
        9: ("UDP_CHECK", "require_reply 4f4b", 5353, False),
        10: ("TCP_CHECK", "bind_if nosuch0", 80, False),
    }
    text = "".join(
        f"virtual_server 10.0.0.1 {port} {{\n delay_loop 0.2\n alpha\n"
        f"{' protocol UDP' if kind in ('DNS_CHECK', 'UDP_CHECK') else ''}\n"
        f" real_server 192.0.2.10 {rs_port} {{\n  {kind} {{\n {common} {extra}\n  }}\n }}\n}}\n"
        for port, (kind, extra, rs_port, _) in checkers.items())
    config, _ = parse_ok(text)
    assert [vs.real_servers[0].checkers[0].fwmark for vs in config.virtual_servers][:3] == [0, 0, 7]
    loop, m = _manager()
    m.config = config
    with _InNetns(lb):
        m.start()

        def reached():
            return {port for port in checkers
                    if m.nl.weights(f"[10.0.0.1]:{'udp' if port in (7, 8, 9) else 'tcp'}:{port}")}

        want = {port for port, (*_, ok) in checkers.items() if ok}
        _run_until(loop, lambda: reached() == want, 10, f"the checkers that reach s2: {sorted(want)}")
        runners = {c.vs.port: c for vsr in m.vs.values() for r in vsr.rs.values() for c in r.checkers}
        _run_until(loop, lambda: all(runners[p].results[False] for p in checkers if p not in want), 5,
                   "the checkers that go to s1 fail")
        assert reached() == want
        m.stop()
    loop.close()
    assert "Checker can't bind to device nosuch0: No such device" in caplog.text


def test_real_server_lvs_method_tunnels_and_the_virtual_servers_weight_as_keepalived_reads_them():
    """keepalived 2.4.3 has no tun_type/tun_port keywords: a real server's tunnel is in its `lvs_method TUN type
    gue port N csum`; a bad tunnel line is refused with keepalived's words; `weight` of a virtual server is the
    weight of its real servers that do not say theirs."""
    config, diags = vrrpd.parse_config_text("""
virtual_server 10.0.0.1 80 {
    lvs_method TUN type gre csum
    weight 7
    real_server 10.1.0.1 80 {
        lvs_method TUN type gue port 6080 remcsum
    }
    real_server 10.1.0.2 80 {
        weight 2
    }
    real_server 10.1.0.3 80 {
        tun_type gue
        lvs_method TUN type gue
    }
    real_server 10.1.0.4 80 {
        lvs_method TUN type ipip csum
    }
}
""", "test.conf")
    vs = config.virtual_servers[0]
    assert (vs.tunnel_type, vs.tunnel_port, vs.tunnel_csum, vs.weight) == ("gre", None, "csum", 7)
    a, b, c, d = vs.real_servers
    assert (a.lb_kind, a.tunnel_type, a.tunnel_port, a.tunnel_csum, a.weight) == (
        vrrpd.LbKind.TUN, "gue", 6080, "remcsum", 7)
    assert (b.weight, b.lb_kind, c.lb_kind, d.lb_kind) == (2, None, None, None)
    text = " ".join(messages(diags))
    assert "unknown keyword 'tun_type' in real_server" in text
    assert "test.conf:13: error: lvs_method: gue tunnels require port, otherwise cannot have port." in text
    assert "test.conf:16: error: lvs_method: ipip tunnels do not support checksum option." in text
    for word in ("lvs_id", "nftables_no_lvs"):  # in no keepalived (1.x had lvs_id): unknown there and here
        _, diags = vrrpd.parse_config_text(f"global_defs {{\n {word} x\n}}\n" + MINIMAL, "u.conf")
        assert f"unknown keyword '{word}' in global_defs" in " ".join(messages(diags)), word
    # IPVS: the real server's own tunnel, else the virtual server's; the virtual server's weight
    loop, m = _manager()
    m.config = config
    m.start()
    (_, dests), = m.nl.table.values()
    got = {str(k[0]): (x.fwd_method, x.weight, x.tun_type, x.tun_port, x.tun_flags) for k, x in dests.items()}
    assert got == {"10.1.0.1": (2, 7, 1, 6080, 2), "10.1.0.2": (2, 2, 2, 0, 1), "10.1.0.3": (2, 7, 2, 0, 1),
                   "10.1.0.4": (2, 7, 2, 0, 1)}
    m.stop()
    loop.close()


def test_checker_log_all_failures_no_checker_emails_and_rs_init_notifies(tmp_path, caplog):
    """checker_log_all_failures logs every failure; without no_checker_emails each checker's change is mailed even
    when another checker keeps the real server down; rs_init_notifies runs notify_up of a server up at start."""
    tmp_path.chmod(0o755)
    caplog.set_level("INFO", logger="vrrpd")

    def run(**gd):
        mails, notifies = [], []

        class Recorder(vrrpd.Notifier):
            def checker_mail(self, vs, rs, up, reason="", checker=""):
                mails.append((str(rs.address), up, checker))

            def real_server_notifies(self, vs, rs, up):
                notifies.append((str(rs.address), up))

        dead = [vrrpd.Checker(kind="TCP_CHECK", connect_ip=_ip("127.0.0.1"), connect_port=_free_port(),
                              connect_timeout=1, retry=0) for _ in range(2)]
        up = _rs("10.1.0.9", 80)  # no checker: up at start
        vs = _vs(rss=[_rs("10.1.0.1", 80, dead), up], delay_loop=0.1)
        loop = vrrpd.EventLoop()
        config = vrrpd.Config(virtual_servers=[vs])
        for k, v in gd.items():
            setattr(config.global_defs, k, v)
        m = vrrpd.LvsManager(loop, config, Recorder(loop, config))
        m.nl = FakeIpvs()
        m.start()
        runners = [c for r in m.vs["[10.0.0.100]:tcp:80"].rs.values() for c in r.checkers]
        _run_until(loop, lambda: all(c.results[False] >= 3 for c in runners), 5, "both checkers failed thrice")
        m.stop()
        loop.close()
        return mails, notifies

    mails, notifies = run()
    assert sorted(m[:2] for m in mails) == [("10.1.0.1", False)] * 2
    assert sorted(m[2][:10] for m in mails) == ["", "TCP_CHECK#"]  # the real server's mail, the other checker's
    assert notifies == [("10.1.0.1", False)]  # the real server, once
    failed = [r.message for r in caplog.records if r.message.startswith("TCP connection to [127.0.0.1]")]
    assert len(failed) == 2, failed  # each checker's first failure; none once down
    caplog.clear()
    mails, notifies = run(no_checker_emails=True, rs_init_notifies=True, checker_log_all_failures=True)
    assert mails == [("10.1.0.1", False, "")]
    assert notifies == [("10.1.0.1", True), ("10.1.0.9", True), ("10.1.0.1", False)]
    failed = [r.message for r in caplog.records if r.message.startswith("TCP connection to [127.0.0.1]")]
    assert len(failed) >= 6, failed  # every failure of both checkers, while down too


def test_lvs_sync_daemon_is_read_as_keepalived_reads_it_and_follows_its_vrrp_instance():
    """`lvs_sync_daemon IF [inst] VI [id N] ...`: with an instance, the master daemon while it is MASTER and the
    backup daemon otherwise; the sync id defaults to its VRID; without an instance both run all the time."""
    config, diags = vrrpd.parse_config_text("""
global_defs {
    lvs_sync_daemon br0 VI_1 maxlen 1400 port 8848 ttl 2 group 224.0.0.81 bogus
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        10.0.0.1
    }
}
""", "s.conf")
    sd = config.global_defs.lvs_sync_daemon
    assert (sd.ifname, sd.instance, sd.syncid, sd.maxlen, sd.port, sd.ttl, str(sd.group)) == (
        "br0", "VI_1", 51, 1400, 8848, 2, "224.0.0.81")
    assert "s.conf:3: warning: Unknown option bogus specified for lvs_sync_daemon" in messages(diags)
    # the bytes of IPVS_CMD_ATTR_DAEMON: state, ifname, syncid, maxlen, port, ttl, group (libipvs's order)
    assert vrrpd.ipvs_daemon_attr(1, sd).hex() == _nl_hex(
        "3c 00 03 80  08 00 01 00 01 00 00 00  08 00 02 00 62 72 30 00  08 00 03 00 33 00 00 00"
        "  06 00 04 00 78 05 00 00  06 00 07 00 90 22 00 00  05 00 08 00 02 00 00 00"
        "  08 00 05 00 e0 00 00 51").hex()
    _, diags = vrrpd.parse_config_text("global_defs {\n lvs_sync_daemon br0 inst VI_9\n}\n" + MINIMAL, "n.conf")
    assert "n.conf:2: warning: Unable to find vrrp instance VI_9 for lvs_syncd - clearing lvs_syncd config" in \
        messages(diags)
    loop, m = _manager()
    m.config, fake = config, m.nl
    m.start()
    assert not [c for c in fake.calls if "daemon" in c[0]]  # nothing until the instance has a state
    m.vrrp_state("VI_1", vrrpd.State.BACKUP)
    m.vrrp_state("VI_1", vrrpd.State.FAULT)  # still the backup daemon
    m.vrrp_state("VI_2", vrrpd.State.MASTER)  # another instance: nothing
    m.vrrp_state("VI_1", vrrpd.State.MASTER)
    m.stop()
    assert [c for c in fake.calls if "daemon" in c[0]] == [
        ("new_daemon", 2, "br0", 51), ("del_daemon", 2), ("new_daemon", 1, "br0", 51), ("del_daemon", 1)]
    alone = vrrpd.Config()
    alone.global_defs.lvs_sync_daemon = vrrpd.LvsSyncDaemon("br0", syncid=0)
    loop2, m2 = _manager()
    m2.config, fake2 = alone, m2.nl
    m2.start()
    m2.stop()
    assert fake2.calls == [("new_daemon", 1, "br0", 0), ("new_daemon", 2, "br0", 0), ("del_daemon", 1),
                           ("del_daemon", 2)]
    loop.close()
    loop2.close()


def test_net_namespace_ipvs_and_namespace_with_ipsets_are_read_as_keepalived_reads_them():
    config, diags = vrrpd.parse_config_text("net_namespace_ipvs lvs\nnet_namespace_ipvs other\n"
                                            "namespace_with_ipsets\n" + MINIMAL, "n.conf")
    assert config.global_defs.net_namespace_ipvs == "lvs"
    text = messages(diags)
    assert "n.conf:2: warning: Duplicate net_namespace_ipvs definition other - ignoring" in text
    assert any("namespace_with_ipsets in the top level: only the ipsets of its iptables build" in t for t in text)
    config, _ = vrrpd.parse_config_text("net_namespace_ipvs\n" + MINIMAL, "n.conf")
    assert config.global_defs.net_namespace_ipvs == ""  # the init namespace


def test_url_regex_offsets_options_and_no_match_as_keepalived_checks_them():
    def url(regex, *options, lo=0, hi=None, no_match=False):
        return vrrpd.UrlCheck(regex=regex, regex_options=list(options), regex_min_offset=lo, regex_max_offset=hi,
                              regex_no_match=no_match)

    body = b"Status: OK\nload 42\nend"
    cases = [
        (url(rb"load \d+".decode()), True),
        (url("LOAD"), False), (url("LOAD", "caseless"), True),
        (url("^load", ), False), (url("^load", "multiline"), True),
        (url("OK.load", ), False), (url("OK.load", "dotall"), True),
        (url("l o a d  # spaced", "extended"), True),
        (url("load", "firstline"), False), (url("Status", "firstline"), True),  # must start on the first line
        (url("load", lo=12), False), (url("load", lo=11), True),  # starts at offset 11
        (url("load", hi=10), False), (url("load", hi=11), True),
        (url("load", no_match=True), False), (url("nothing", no_match=True), True),
    ]
    for u, want in cases:
        assert vrrpd.http_response_ok(b"HTTP/1.0 200 OK\r\n\r\n" + body, u)[0] is want, u
    assert vrrpd.http_response_ok(b"HTTP/1.0 200 OK\r\n\r\n" + body, url("nothing"))[1] == "Regex match failed"
    assert vrrpd.url_regex_matches(url("caf\u00e9", "utf"), "un caf\u00e9".encode())
    assert not vrrpd.url_regex_matches(url("caf\u00e9", "utf"), b"\xff caf")  # not UTF-8: no match, as PCRE2
    text = """virtual_server 10.0.0.1 80 {
 protocol TCP
 real_server 10.1.0.1 80 {
  HTTP_GET {
   url {
    path /a
    regex_no_match
    regex_min_offset 3
   }
   url {
    path /b
    regex ok
    regex_min_offset 9
    regex_max_offset 4
    regex_options ungreedy
   }
   url {
    path /c
    regex "(unclosed"
   }
  }
 }
}
"""
    config, diags = vrrpd.parse_config_text(text, "r.conf")
    a, b, c = config.virtual_servers[0].real_servers[0].checkers[0].urls
    assert (a.regex, a.regex_no_match, a.regex_min_offset) == (None, False, 0)
    assert (b.regex, b.regex_min_offset, b.regex_max_offset) == ("ok", 0, None) and c.regex is None
    text = "\n".join(messages(diags))
    assert "r.conf:4: warning: regex parameters specified without regex" in text
    assert "r.conf:4: warning: regex min offset 9 > regex_max_offset 4 - ignoring" in text
    assert "r.conf:15: warning: regex option ungreedy: Python's re has no equivalent" in text
    assert "r.conf:4: warning: Invalid regex: '(unclosed' at offset 0: missing ), unterminated subpattern" in text


def test_ssl_get_offers_the_ssl_blocks_certificate_and_tls_compliant_sends_close_notify(tmp_path):
    """A server that requires a client certificate: SSL_GET passes only with the SSL block's certificate and its
    password-protected key. tls_compliant ends the session with close_notify (the server's unwrap() completes);
    without it the TCP connection just closes, as keepalived's quiet shutdown. A url regex decides too."""
    import socket
    import ssl
    import threading

    server_cert, server_key = _self_signed(tmp_path)
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client.key"
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-days", "2",
        "-subj", "/CN=checker", "-passout", "pass:s3cret", "-keyout", str(client_key), "-out", str(client_cert)])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert, server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(client_cert)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    seen: list = []

    def serve():
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            raw.settimeout(3)
            try:
                conn = ctx.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                seen.append(("no client certificate", ""))
                raw.close()
                continue
            try:
                path = conn.recv(4096).split()[1].decode()
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nstatus ok 42")
                try:
                    conn.unwrap()  # close_notify, then wait for the checker's
                    seen.append((path, "close_notify"))
                except (OSError, ssl.SSLError):
                    seen.append((path, "closed without close_notify"))
            except (OSError, ssl.SSLError, IndexError):
                pass
            raw.close()

    threading.Thread(target=serve, daemon=True).start()

    def ssl_get(path, regex=None, no_match=False, **kw):
        return vrrpd.Checker(kind="SSL_GET", urls=[vrrpd.UrlCheck(path, regex=regex, regex_no_match=no_match)],
                             connect_timeout=2, retry=0, alpha=True, **kw)

    def run(ssl_block):
        checkers = {"/compliant": ssl_get("/compliant", tls_compliant=True), "/quiet": ssl_get("/quiet"),
                    "/regex": ssl_get("/regex", regex=r"ok \d+"), "/no-match": ssl_get("/no-match", "ok", True)}
        rss = [_rs("127.0.0.1", port, [chk]) for chk in checkers.values()]
        for n, rs in enumerate(rss):
            rs.address = _ip(f"127.0.0.{n + 1}")
            rs.checkers[0].connect_ip = _ip("127.0.0.1")
        loop, m = _manager(_vs(port=443, rss=rss, delay_loop=0.2))
        m.config.ssl = ssl_block
        fake = m.nl
        m.start()
        _run_until(loop, lambda: all(c.results[True] + c.results[False] >= 2 for vsr in m.vs.values()
                                     for r in vsr.rs.values() for c in r.checkers), 10, "two rounds of checks")
        up = sorted(path for path, chk in checkers.items()
                    if f"127.0.0.{list(checkers).index(path) + 1}:{port}" in fake.weights("[10.0.0.100]:tcp:443"))
        m.stop()
        loop.close()
        return up

    assert run(None) == [] and seen and {s[0] for s in seen} == {"no client certificate"}
    seen.clear()
    block = vrrpd.SslConfig(certificate=str(client_cert), key=str(client_key), password="s3cret")
    assert run(block) == ["/compliant", "/quiet", "/regex"]
    assert ("/compliant", "close_notify") in seen and ("/quiet", "closed without close_notify") in seen
    assert ("/compliant", "closed without close_notify") not in seen and ("/quiet", "close_notify") not in seen
    config, diags = parse_ok(f"SSL {{\n password s3cret\n certificate {client_cert}\n key {client_key}\n"
                             f" ca {client_cert}\n}}\n")
    assert config.ssl == vrrpd.SslConfig("s3cret", str(client_cert), str(client_cert), str(client_key))
    listener.close()


def test_smtp_check_host_blocks_become_checkers_as_in_keepalived():
    """The deprecated `host` block: one SMTP_CHECK per host with the host's connection settings and the rest of the
    SMTP_CHECK's (helo_name, retry); an SMTP_CHECK without connection settings takes the first host's."""
    text = """virtual_server 10.0.0.1 25 {
    protocol TCP
    real_server 10.1.0.1 25 {
        SMTP_CHECK {
            helo_name mx.test
            retry 4
            host {
                connect_ip 127.0.0.2
                connect_port 2525
                retry 9
            }
            host {
                connect_ip 127.0.0.3
                bind_if lo
                fwmark 3
            }
        }
        SMTP_CHECK {
            connect_port 26
            host {
                connect_ip 127.0.0.4
            }
        }
    }
}
"""
    config, diags = vrrpd.parse_config_text(text, "h.conf")
    got = [(str(c.connect_ip), c.connect_port, c.bind_if, c.fwmark, c.retry, c.helo_name)
           for c in config.virtual_servers[0].real_servers[0].checkers]
    assert got == [("127.0.0.2", 2525, None, 0, 4, "mx.test"), ("127.0.0.3", None, "lo", 3, 4, "mx.test"),
                   ("None", 26, None, 0, None, None), ("127.0.0.4", None, None, 0, None, None)]
    assert messages(diags) == [
        "h.conf:4: warning: The SMTP_CHECK host block is deprecated. Please define additional checkers.",
        "h.conf:10: warning: retry in host (SMTP_CHECK): keepalived gives the host's checker the SMTP_CHECK's own "
        "setting; keepalived ignores it, and so does vrrpd",
        "h.conf:18: warning: The SMTP_CHECK host block is deprecated. Please define additional checkers."]


NFT_IPVS_CONF = """global_defs {
    nftables_ipvs
    nftables_ipvs_start_fwmark 1000
}
virtual_server_group web {
    10.9.2.1-3 80
    fd00:9::1-fd00:9::2 80
}
virtual_server_group marked {
    fwmark 7
}
virtual_server group web {
    protocol TCP
    lvs_method DR
    real_server 10.9.1.12 80 {
    }
}
virtual_server group marked {
    protocol TCP
    real_server 10.9.1.13 80 {
    }
}
"""


def test_nftables_ipvs_gives_a_group_one_fwmark_service_and_a_map():
    config, _ = parse_ok(NFT_IPVS_CONF)
    web, marked = config.virtual_servers
    assert vrrpd.nft_ipvs_marks(config) == {("web", "TCP"): 1000}  # a group with a fwmark keeps it
    assert [str(k) for k in vrrpd.lvs_service_keys(web, config)] == ["FWM 1000", "FWM 1000"]
    assert [k.af for k in vrrpd.lvs_service_keys(web, config)] == [2, 10]
    assert [str(k) for k in vrrpd.lvs_service_keys(marked, config)] == ["FWM 7"]
    text = vrrpd.nft_ipvs_ruleset(config)
    assert "table ip keepalived_ipvs {" in text and "table ip6 keepalived_ipvs {" in text
    assert "elements = { 10.9.2.1-10.9.2.3 . 80 : 1000 }" in text
    assert "type filter hook input priority -1; policy accept;" in text
    assert "meta l4proto tcp meta mark set ip daddr . tcp dport map @tcp_map counter return" in text
    plain, _ = parse_ok(NFT_IPVS_CONF.replace("    nftables_ipvs\n", ""))
    assert vrrpd.nft_ipvs_ruleset(plain) == "" and len(vrrpd.lvs_service_keys(plain.virtual_servers[0], plain)) == 5
    _, diags = vrrpd.parse_config_text("global_defs {\n nftables_ipvs t1\n nftables_ipvs t2\n nftables_ipvs_priority"
                                       " -50\n}\n" + MINIMAL, "n.conf")
    assert "n.conf:3: warning: ipvs nftables already specified - ignoring" in messages(diags)


def test_lab_nftables_ipvs_marks_the_groups_traffic_in_the_kernel(lab):
    """In a namespace: the group's fwmark service is programmed, and nftables marks a packet to one of the group's
    addresses and ports with its fwmark (a probe chain after ours counts marked packets); others stay unmarked.
    Stopping removes the table."""
    import socket

    require(shutil.which("nft") is not None, "needs nft")
    ns = lab.netns("nft")
    for addr in ("10.9.2.2/32", "10.9.2.9/32"):
        lab.ip("addr", "add", addr, "dev", "lo", ns=ns)
    config, _ = parse_ok(NFT_IPVS_CONF.replace("    fd00:9::1-fd00:9::2 80\n", ""))
    loop, m = _manager()
    m.config, fake = config, m.nl

    def marked() -> int:
        out = lab.run(ns, ["nft", "list", "table", "ip", "probe"]).stdout
        return int(re.search(r"packets (\d+)", out).group(1))

    with _InNetns(ns):
        m.start()
        assert sorted(str(k) for k in fake.table) == ["FWM 1000", "FWM 7"]
        lab.run(ns, ["nft", "add table ip probe; add chain ip probe in { type filter hook input priority 10; }; "
                           "add rule ip probe in meta mark 1000 counter"])
        for host, port in (("10.9.2.9", 80), ("10.9.2.2", 81)):  # not in the group's map
            with pytest.raises(OSError):
                socket.create_connection((host, port), timeout=1)
        assert marked() == 0
        with pytest.raises(OSError):
            socket.create_connection(("10.9.2.2", 80), timeout=1)  # refused: nothing listens, but it was marked
        assert marked() >= 1
        m.stop()
    assert lab.run(ns, ["nft", "list", "table", "ip", "keepalived_ipvs"], check=False).returncode != 0
    loop.close()


def test_dr_and_tun_destinations_take_the_services_port_as_keepalived_gives_them():
    """keepalived's ipvs_cmd(): a DR or TUN destination has the service's port (0 for a fwmark service); NAT keeps
    the real server's."""
    dr = _vs("10.0.0.1", 80, lb_kind=vrrpd.LbKind.DR, rss=[_rs("10.1.0.1", 8080)])
    nat = _vs("10.0.0.2", 80, rss=[_rs("10.1.0.2", 8080)])
    fw = vrrpd.VirtualServer(fwmark=7, lb_kind=vrrpd.LbKind.TUN, real_servers=[_rs("10.1.0.3", 80)])
    loop, m = _manager(dr, nat, fw)
    m.start()
    got = {str(k): sorted((str(d.addr), d.port) for d in dests.values()) for k, (_, dests) in m.nl.table.items()}
    assert got == {"[10.0.0.1]:tcp:80": [("10.1.0.1", 80)], "[10.0.0.2]:tcp:80": [("10.1.0.2", 8080)],
                   "FWM 7": [("10.1.0.3", 0)]}
    m.stop()
    loop.close()


def test_daemon_runs_the_sync_daemon_of_its_instances_state(offline):
    """The Daemon tells the LVS side each state its instances enter: lvs_sync_daemon's backup daemon while VI_1 is
    BACKUP, the master one once it is MASTER, none once stopped (fake kernel, fake clock, fake IPVS)."""
    d, kernel = offline(instance_text(global_extra="    lvs_sync_daemon eth0 VI_1\n"), start=False)
    fake = d.lvs.nl = FakeIpvs()
    d.start()

    def daemons():
        return [c for c in fake.calls if "daemon" in c[0]]

    assert daemons() == [("new_daemon", 2, "eth0", 51)]  # BACKUP at start; the sync id is the VRID
    _master(d, kernel)
    assert daemons()[1:] == [("del_daemon", 2), ("new_daemon", 1, "eth0", 51)]
    d.lvs.stop()
    assert daemons()[3:] == [("del_daemon", 1)]


def test_seed_001_text_programs_dr_rr_service_with_sorry_server_ready():
    config, _ = vrrpd.parse_config_text(SEED_001_LVS)
    loop, m = _manager()
    m.config = config
    m.start()
    (svc, dests), = m.nl.table.values()
    assert (str(svc.key), svc.sched_name, svc.flags) == ("[172.16.1.44]:tcp:80", "rr", 0)
    assert sorted((str(d.addr), d.port, d.fwd_method, d.weight) for d in dests.values()) == [
        ("172.16.1.1", 80, 3, 1), ("172.16.1.2", 80, 3, 1)]
    runners = [c for r in m.vs["[172.16.1.44]:tcp:80"].rs.values() for c in r.checkers]
    assert [(c.chk.kind, c.params.retry, c.params.delay_before_retry, c.params.connect_timeout) for c in runners] == [
        ("HTTP_GET", 1, 0.5, 1.0)] * 2
    m.stop()
    loop.close()


def test_reload_changes_only_the_difference_and_leaves_unknown_services():
    fake = FakeIpvs()
    other = vrrpd.IpvsServiceKey(2, 6, _ip("192.0.2.1"), 80)
    fake.table[other] = (vrrpd.IpvsService(other, "rr"), {})
    a = _vs("10.0.0.1", rss=[_rs("10.1.0.1"), _rs("10.1.0.2")])
    b = _vs("10.0.0.2", rss=[_rs("10.1.0.3")])
    loop, m = _manager(a, b, fake=fake)
    m.start()
    assert sorted(str(k) for k in fake.table) == ["[10.0.0.1]:tcp:80", "[10.0.0.2]:tcp:80", "[192.0.2.1]:tcp:80"]
    fake.calls.clear()
    a2 = _vs("10.0.0.1", rss=[_rs("10.1.0.1", weight=4), _rs("10.1.0.2")], lb_algo="rr")
    c = _vs("10.0.0.3", rss=[_rs("10.1.0.5")])
    m.reload(vrrpd.Config(virtual_servers=[a2, c]))
    assert sorted(fake.calls) == sorted([
        ("del_service", "[10.0.0.2]:tcp:80"),
        ("set_service", "[10.0.0.1]:tcp:80"),
        ("set_dest", "[10.0.0.1]:tcp:80", "10.1.0.1", 4),
        ("new_service", "[10.0.0.3]:tcp:80"),
        ("new_dest", "[10.0.0.3]:tcp:80", "10.1.0.5", 1),
    ])
    m.stop()
    assert list(fake.table) == [other]
    loop.close()


def test_ha_suspend_checks_only_while_the_virtual_address_is_here(caplog):
    caplog.set_level("INFO", logger="vrrpd")
    chk = vrrpd.Checker(kind="TCP_CHECK", connect_timeout=1, retry=0)
    here = _vs("127.0.0.1", 80, rss=[_rs(port=_free_port(), checkers=[chk])], delay_loop=0.1, ha_suspend=True)
    chk2 = vrrpd.Checker(kind="TCP_CHECK", connect_timeout=1, retry=0)
    away = _vs("192.0.2.55", 80, rss=[_rs(port=_free_port(), checkers=[chk2])], delay_loop=0.1, ha_suspend=True)
    loop, m = _manager(here, away)
    m.start()
    loop.run(until=time.monotonic() + 0.6)
    (r_here,) = m.vs["[127.0.0.1]:tcp:80"].rs.values()
    (r_away,) = m.vs["[192.0.2.55]:tcp:80"].rs.values()
    assert r_here.checkers[0].attempt >= 3 and not r_here.alive  # checked, and the closed port failed
    assert r_away.checkers[0].attempt == 0 and r_away.alive  # never checked: still as configured
    assert "Suspending healthchecker for service" in caplog.text
    m.stop()
    loop.close()


def test_late_timers_and_stale_events_never_start_a_second_check_chain():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    chk = vrrpd.Checker(kind="TCP_CHECK", connect_timeout=1, retry=0)
    loop, m = _manager(_vs(rss=[_rs(port=port, checkers=[chk])], delay_loop=0.3))
    m.start()
    (runner,) = m.vs["[10.0.0.100]:tcp:80"].rs[(_ip("127.0.0.1"), port)].checkers
    _run_until(loop, lambda: runner.attempt >= 1 and not runner.busy, 2, "one check done")
    done = runner.attempt
    # what a cancelled-but-already-due timer would do: an old deadline and an old attempt firing late
    runner._timeout(done)
    runner._attempt(done - 1)
    assert runner.attempt == done and not runner.busy

    def pending():
        return [t for t in loop.pending_timers() if getattr(t.callback, "__self__", None) is runner]

    assert len(pending()) == 1
    loop.run(until=time.monotonic() + 1.0)
    assert 3 <= runner.attempt - done <= 4  # one chain: about one check per delay_loop, not two
    m.stop()
    assert not pending()
    listener.close()
    loop.close()


def test_reload_keeps_a_down_real_server_down():
    chk = vrrpd.Checker(kind="TCP_CHECK", connect_timeout=1, retry=0)
    port = _free_port()  # nobody listens: the check fails
    loop, m = _manager(_vs(rss=[_rs(port=port, checkers=[chk])], delay_loop=0.2))
    m.start()
    _run_until(loop, lambda: m.nl.weights("[10.0.0.100]:tcp:80") == {}, 3, "down")
    chk2 = vrrpd.Checker(kind="TCP_CHECK", connect_timeout=1, retry=0)
    m.reload(vrrpd.Config(virtual_servers=[_vs(rss=[_rs(port=port, checkers=[chk2], weight=5)], delay_loop=0.2)]))
    assert m.nl.weights("[10.0.0.100]:tcp:80") == {}  # still down: only its weight changed
    (rsr,) = m.vs["[10.0.0.100]:tcp:80"].rs.values()
    assert rsr.weight == 5 and not rsr.alive
    m.stop()
    loop.close()


def test_no_ipvs_in_kernel_gives_a_clear_error(monkeypatch, caplog):
    monkeypatch.setattr(vrrpd, "IPVS_GENL_NAME", "NO_SUCH_FAMILY")
    loop = vrrpd.EventLoop()
    config = vrrpd.Config(virtual_servers=[_vs(rss=[_rs()])])
    m = vrrpd.LvsManager(loop, config, vrrpd.Notifier(loop, config))
    m.start()
    assert "the kernel has no IPVS" in m.status()["error"]
    assert "VRRP keeps running" in caplog.text
    m.stop()
    loop.close()


# -- the real kernel, in a VM ------------------------------------------------------------------


def test_lvs_on_real_ipvs_kernel_via_qemu():
    """Boots Debian's kernel once under QEMU and runs every in_vm test inside it."""
    require(not IN_VM, "already inside the VM")
    require(os.geteuid() == 0, "needs root to run QEMU with the host's root filesystem")
    require(IPVS_VM.exists() and shutil.which("qemu-system-x86_64") is not None, "needs qemu (make deps)")
    have_kernel = any(Path(os.environ.get("IPVS_VM_CACHE", "/var/cache/vrrpd-ipvs-vm")).glob("kernel-*/boot/vmlinuz-*"))
    require(have_kernel, "needs the guest kernel: .ci/ipvs-vm.sh --setup")
    env = dict(os.environ, VRRPD_IN_VM="1", IPVS_VM_TIMEOUT="400", PYTHONDONTWRITEBYTECODE="1")
    env.pop("CI", None)  # inside the guest everything is there; report skips as skips
    cmd = ["bash", str(IPVS_VM), PYTHON, "-m", "pytest", "-q", "-s", "-rs", "-p", "no:cacheprovider", "-x",
           str(HERE / "test_vrrpd.py"), "-k", "in_vm"]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=480, env=env, cwd=str(HERE))
    print(out.stdout[-6000:], out.stderr[-3000:])
    print(f"VM run: {time.monotonic() - started:.1f}s")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout


SEED_001_LVS = """
! seed 001: a DR load balancer with a sorry server (timers shortened for the test)
global_defs {
    router_id one
}
virtual_server 172.16.1.44 80 {
    delay_loop 1
    lb_algo rr
    lb_kind DR
    protocol TCP
    sorry_server 127.0.0.1 80
    real_server 172.16.1.1 80 {
        weight 1
        HTTP_GET {
            url {
                path /index.html
                status_code 200
            }
            connect_timeout 1
            nb_get_retry 1
            delay_before_retry 0.5
        }
    }
    real_server 172.16.1.2 80 {
        weight 1
        HTTP_GET {
            url {
                path /index.html
                status_code 200
            }
            connect_timeout 1
            nb_get_retry 1
            delay_before_retry 0.5
        }
    }
}
"""


def _ipvsadm() -> str:
    return sh(["ipvsadm", "-Ln"]).stdout


def _ipvs_lines(service: str) -> List[str]:
    """The lines under `service` (e.g. 'TCP  172.16.1.44:80 rr') in ipvsadm -Ln, '->' lines only."""
    out, lines, inside = _ipvsadm(), [], False
    for line in out.splitlines():
        if not line.startswith("  ->"):
            inside = " ".join(line.split()[:2]) == service
            continue
        if inside and "RemoteAddress" not in line:
            lines.append(" ".join(line.split()[1:4]))
    return lines


def test_in_vm_seed_001_dr_failover_sorry_server_and_kinds(tmp_path):
    """Runs inside the IPVS VM only: test_lvs_on_real_ipvs_kernel_via_qemu boots the guest and selects it
    (on the host it is not even collected, see the end of this section)."""
    require_root_netns()
    t0 = time.monotonic()

    def stage(what: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {what}", flush=True)

    cert, key = _self_signed(tmp_path)
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("this is web\n")
    sh(["ip", "link", "add", "br0", "type", "bridge"])
    sh(["ip", "addr", "add", "172.16.1.254/16", "dev", "br0"])
    sh(["ip", "link", "set", "br0", "up"])
    servers = {}
    https_code = (
        "import http.server,ssl,sys,os; os.chdir(sys.argv[1]);"
        "s=http.server.HTTPServer(('0.0.0.0',443),http.server.SimpleHTTPRequestHandler);"
        "c=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[2],sys.argv[3]);"
        "s.socket=c.wrap_socket(s.socket,server_side=True); s.serve_forever()")
    for n in (1, 2):
        ns = f"rs{n}"
        sh(["ip", "netns", "add", ns])
        sh(["ip", "link", "add", f"v{n}", "type", "veth", "peer", "name", "eth0", "netns", ns])
        sh(["ip", "link", "set", f"v{n}", "master", "br0", "up"])
        sh(["ip", "-n", ns, "addr", "add", f"172.16.1.{n}/16", "dev", "eth0"])
        sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        servers[ns] = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, "-m", "http.server", "80", "-d", str(www)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    https = subprocess.Popen(["ip", "netns", "exec", "rs1", PYTHON, "-c", https_code, str(www), str(cert), str(key)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # a service vrrpd must leave alone
    sh(["ipvsadm", "-A", "-t", "192.0.2.1:8080", "-s", "lc"])
    sh(["ipvsadm", "-a", "-t", "192.0.2.1:8080", "-r", "192.0.2.2:8080", "-m", "-w", "7"])

    def http_get(**kw):
        url = vrrpd.UrlCheck("/index.html")
        return vrrpd.Checker(kind="HTTP_GET", urls=[url], connect_timeout=1, retry=1, delay_before_retry=0.5, **kw)

    # seed 001: DR, rr, sorry server 127.0.0.1 80, two web servers under HTTP_GET (timers shortened)
    seed = _vs("172.16.1.44", 80, delay_loop=1, lb_algo="rr", lb_kind=vrrpd.LbKind.DR, protocol="TCP",
               sorry_server=(_ip("127.0.0.1"), 80),
               rss=[_rs("172.16.1.1", 80, [http_get()]), _rs("172.16.1.2", 80, [http_get()])])
    inhibit = _vs("172.16.1.45", 80, delay_loop=1, lb_algo="wlc", lb_kind=vrrpd.LbKind.DR, inhibit_on_failure=True,
                  rss=[_rs("172.16.1.2", 80, [vrrpd.Checker(kind="TCP_CHECK", connect_timeout=1, retry=0)])])
    ssl_vs = _vs("172.16.1.46", 443, delay_loop=1, lb_kind=vrrpd.LbKind.DR, alpha=True,
                 rss=[_rs("172.16.1.1", 443, [vrrpd.Checker(kind="SSL_GET", urls=[vrrpd.UrlCheck("/index.html")],
                                                            connect_timeout=2, retry=0)])])
    kinds = [
        _vs("10.9.0.1", 80, lb_algo="wlc", lb_kind=vrrpd.LbKind.NAT, rss=[_rs("10.9.1.1", 8080)]),
        _vs("10.9.0.2", 80, lb_algo="lc", lb_kind=vrrpd.LbKind.TUN, rss=[_rs("10.9.1.2", 80)]),
        _vs("10.9.0.3", 80, lb_algo="wrr", lb_kind=vrrpd.LbKind.DR,
            rss=[_rs("10.9.1.3", 80, weight=3), _rs("10.9.1.4", 80, weight=1)]),
        _vs("10.9.0.4", 443, lb_algo="sh", lb_kind=vrrpd.LbKind.DR, persistence_timeout=50,
            sched_flags=["sh-port"], rss=[_rs("10.9.1.5", 443)]),
        vrrpd.VirtualServer(fwmark=7, lb_algo="rr", lb_kind=vrrpd.LbKind.DR, real_servers=[_rs("10.9.1.6", None)]),
        _vs("fd00::100", 80, lb_algo="rr", lb_kind=vrrpd.LbKind.NAT, rss=[_rs("fd00::1", 80, weight=2)]),
        _vs("10.9.0.5", 53, protocol="UDP", lb_algo="rr", ops=True, rss=[_rs("10.9.1.7", 53)]),
        _vs("10.9.0.6", 5060, protocol="UDP", lb_algo="rr", persistence_timeout=60, persistence_engine="sip",
            rss=[_rs("10.9.1.8", 5060)]),
    ]
    # UDP_CHECK (rs1 answers on 5353, rs2 has no listener: ICMP port unreachable), PING_CHECK (172.16.1.9 does
    # not exist: no echo reply), FILE_CHECK (the file's value x 2 is added to the weight)
    udp_server = subprocess.Popen(["ip", "netns", "exec", "rs1", PYTHON, "-c",
                                   "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                   "s.bind(('0.0.0.0', 5353));\n"
                                   "while True:\n d, a = s.recvfrom(99); s.sendto(b'OK', a)"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers["udp"] = udp_server
    udp_chk = dict(connect_timeout=1, retry=0)
    udp_vs = _vs("172.16.1.47", 5353, protocol="UDP", delay_loop=1, lb_kind=vrrpd.LbKind.DR, rss=[
        _rs("172.16.1.1", 5353, [vrrpd.Checker(kind="UDP_CHECK", require_reply=True, reply_data=b"OK",
                                               reply_mask=b"\xff\xff", **udp_chk)]),
        _rs("172.16.1.2", 5353, [vrrpd.Checker(kind="UDP_CHECK", **udp_chk)])])
    ping_vs = _vs("172.16.1.48", 80, delay_loop=1, lb_kind=vrrpd.LbKind.DR, rss=[
        _rs("172.16.1.1", 80, [vrrpd.Checker(kind="PING_CHECK", **udp_chk)]),
        _rs("172.16.1.9", 80, [vrrpd.Checker(kind="PING_CHECK", **udp_chk)])])
    track = tmp_path / "rs-weight"
    track.write_text("0\n")
    file_vs = _vs("172.16.1.49", 80, delay_loop=1, lb_kind=vrrpd.LbKind.DR, rss=[
        _rs("172.16.1.2", 80, [vrrpd.Checker(kind="FILE_CHECK", track_file="tf", file_weight=2)])])
    # a real server's own GUE tunnel and the virtual server's GRE one; the virtual server's weight for the first
    tun_conf, _ = parse_ok("""
virtual_server 10.9.0.7 80 {
    protocol TCP
    lvs_method TUN type gre csum
    weight 4
    real_server 10.9.1.9 80 {
        lvs_method TUN type gue port 6080 csum
    }
    real_server 10.9.1.10 80 {
        weight 2
    }
}
""")
    nft_conf, _ = parse_ok(NFT_IPVS_CONF.replace("    fd00:9::1-fd00:9::2 80\n", ""))  # nftables_ipvs
    loop, m = _manager(seed, inhibit, ssl_vs, udp_vs, ping_vs, file_vs, *kinds, *tun_conf.virtual_servers,
                       nft_conf.virtual_servers[0])
    m.config.virtual_server_groups = nft_conf.virtual_server_groups
    m.config.global_defs.nftables_ipvs = "keepalived_ipvs"
    m.config.track_files["tf"] = vrrpd.TrackFile(name="tf", path=str(track))
    m.config.global_defs.lvs_timeouts = {"tcp": 7200, "udp": 60}
    # lvs_sync_daemon br0 inst VI_1 id 9 ...: the daemon follows VI_1's state
    m.config.global_defs.lvs_sync_daemon = vrrpd.LvsSyncDaemon("br0", instance="VI_1", syncid=9, port=8848, ttl=2,
                                                               group=_ip("224.0.0.81"))
    m.nl = None  # the real kernel this time
    seed_svc = "TCP 172.16.1.44:80"
    try:
        stage("servers started")
        m.start()
        assert m.error is None
        # 1. seed 001's DR config: TCP VIP:80 rr with both real servers Route 1
        assert "TCP  172.16.1.44:80 rr" in _ipvsadm()
        assert sorted(_ipvs_lines(seed_svc)) == ["172.16.1.1:80 Route 1", "172.16.1.2:80 Route 1"]
        # 4. every kind as asked
        out = _ipvsadm()
        assert "TCP  10.9.0.1:80 wlc" in out and "10.9.1.1:8080 Masq 1" in " ".join(_ipvs_lines("TCP 10.9.0.1:80"))
        assert _ipvs_lines("TCP 10.9.0.2:80") == ["10.9.1.2:80 Tunnel 1"]
        assert sorted(_ipvs_lines("TCP 10.9.0.3:80")) == ["10.9.1.3:80 Route 3", "10.9.1.4:80 Route 1"]
        assert "TCP  10.9.0.4:443 sh (sh-port) persistent 50" in out
        assert _ipvs_lines("FWM 7") == ["10.9.1.6:0 Route 1"]
        assert _ipvs_lines("TCP [fd00::100]:80") == ["[fd00::1]:80 Masq 2"]
        assert "UDP  10.9.0.5:53 rr ops" in out
        assert "UDP  10.9.0.6:5060 rr persistent 60 pe sip" in out
        timeouts = sh(["ipvsadm", "-L", "--timeout"]).stdout.split(":")[-1].split()
        assert timeouts[0] == "7200" and timeouts[2] == "60"  # lvs_timeouts tcp and udp; tcpfin kept
        tun = sh(["ipvsadm", "-Ln", "--tun-info"]).stdout
        print(tun)
        assert sorted(_ipvs_lines("TCP 10.9.0.7:80")) == ["10.9.1.10:80 Tunnel 2", "10.9.1.9:80 Tunnel 4"]
        tun_lines = {line.split()[1]: line.split() for line in tun.splitlines() if "10.9.1.9:" in line
                     or "10.9.1.10:" in line}
        assert tun_lines["10.9.1.9:80"][2:5] == ["Tunnel", "gue:6080:+c", "4"], tun  # its own tunnel
        assert tun_lines["10.9.1.10:80"][2:5] == ["Tunnel", "gre:+c", "2"], tun  # the virtual server's
        stage("1 and 4 checked, tunnels and the virtual server's weight")
        # nftables_ipvs: the group is one fwmark service, its addresses in the nftables map
        assert _ipvs_lines("FWM 1000") == ["10.9.1.12:0 Route 1"], _ipvsadm()  # DR to a fwmark service: port 0
        nft = sh(["nft", "list", "table", "ip", "keepalived_ipvs"]).stdout
        assert "10.9.2.1-10.9.2.3 . 80 : 0x000003e8" in nft, nft
        stage("nftables_ipvs checked")
        # the sync daemon: none before VI_1 has a state, the backup one in BACKUP, the master one in MASTER
        assert sh(["ipvsadm", "-L", "--daemon"]).stdout.strip() == ""
        m.vrrp_state("VI_1", vrrpd.State.BACKUP)
        daemons = sh(["ipvsadm", "-L", "--daemon"]).stdout
        print(daemons)
        assert "backup sync daemon (mcast=br0, syncid=9" in daemons and "master" not in daemons, daemons
        m.vrrp_state("VI_1", vrrpd.State.MASTER)
        daemons = sh(["ipvsadm", "-L", "--daemon"]).stdout
        assert "master sync daemon (mcast=br0, syncid=9" in daemons and "backup" not in daemons, daemons
        assert "port=8848" in daemons and "ttl=2" in daemons and "group=224.0.0.81" in daemons, daemons
        stage("lvs_sync_daemon checked")
        # net_namespace_ipvs: a second manager programs the IPVS of namespace lvsns, not this one's
        sh(["ip", "netns", "add", "lvsns"])
        ns_conf = vrrpd.Config(virtual_servers=[_vs("10.9.0.8", 80, lb_algo="rr", rss=[_rs("10.9.1.11", 80)])])
        ns_conf.global_defs.net_namespace_ipvs = "lvsns"
        m2 = vrrpd.LvsManager(loop, ns_conf, vrrpd.Notifier(loop, ns_conf))
        m2.start()
        assert m2.error is None, m2.error
        assert "TCP  10.9.0.8:80 rr" in sh(["ip", "netns", "exec", "lvsns", "ipvsadm", "-Ln"]).stdout
        assert "10.9.0.8" not in _ipvsadm()
        m2.stop()
        assert "10.9.0.8" not in sh(["ip", "netns", "exec", "lvsns", "ipvsadm", "-Ln"]).stdout
        stage("net_namespace_ipvs checked")
        # SSL_GET with alpha comes up once the HTTPS server answers
        _run_until(loop, lambda: _ipvs_lines("TCP 172.16.1.46:443") == ["172.16.1.1:443 Route 1"], 30, "SSL_GET up")
        stage("SSL_GET up")
        _run_until(loop, lambda: _ipvs_lines("UDP 172.16.1.47:5353") == ["172.16.1.1:5353 Route 1"], 20,
                   "UDP_CHECK: the server without a listener removed")
        _run_until(loop, lambda: _ipvs_lines("TCP 172.16.1.48:80") == ["172.16.1.1:80 Route 1"], 20,
                   "PING_CHECK: the address nobody answers removed")
        assert _ipvs_lines("TCP 172.16.1.49:80") == ["172.16.1.2:80 Route 1"]
        track.write_text("3\n")
        _run_until(loop, lambda: _ipvs_lines("TCP 172.16.1.49:80") == ["172.16.1.2:80 Route 7"], 10,
                   "FILE_CHECK: weight 1 + 3 x 2")
        stage("UDP_CHECK, PING_CHECK, FILE_CHECK checked")
        # 2. one web server stops: removed (seed) / weight 0 (inhibit_on_failure) within delay_loop + retries
        servers["rs2"].kill()
        servers["rs2"].wait()
        stopped = time.monotonic()
        _run_until(loop, lambda: _ipvs_lines(seed_svc) == ["172.16.1.1:80 Route 1"], 20, "rs2 removed")
        took = time.monotonic() - stopped
        _run_until(loop, lambda: _ipvs_lines("TCP 172.16.1.45:80") == ["172.16.1.2:80 Route 0"], 10, "inhibit")
        print(f"removal took {took:.1f}s")
        assert took < 1 + 1 * 0.5 + 1 + 5  # delay_loop + retry * delay_before_retry + timeout, TCG margin
        servers["rs2"] = subprocess.Popen(["ip", "netns", "exec", "rs2", PYTHON, "-m", "http.server", "80",
                                           "-d", str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _run_until(loop, lambda: len(_ipvs_lines(seed_svc)) == 2, 30, "rs2 back")
        _run_until(loop, lambda: _ipvs_lines("TCP 172.16.1.45:80") == ["172.16.1.2:80 Route 1"], 10, "enabled")
        stage("2 checked")
        # 3. both stop: the sorry server comes in; one back: it goes out
        for ns in ("rs1", "rs2"):
            servers[ns].kill()
            servers[ns].wait()
        _run_until(loop, lambda: _ipvs_lines(seed_svc) == ["127.0.0.1:80 Route 1"], 20, "sorry server in")
        servers["rs1"] = subprocess.Popen(["ip", "netns", "exec", "rs1", PYTHON, "-m", "http.server", "80",
                                           "-d", str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _run_until(loop, lambda: _ipvs_lines(seed_svc) == ["172.16.1.1:80 Route 1"], 30, "sorry server out")
        stage("3 checked")
        # reload: one VS removed, one weight changed; nothing else touched
        m.reload(vrrpd.Config(virtual_servers=[seed, inhibit, ssl_vs] + kinds[:2] + [
            _vs("10.9.0.3", 80, lb_algo="wrr", lb_kind=vrrpd.LbKind.DR,
                rss=[_rs("10.9.1.3", 80, weight=5), _rs("10.9.1.4", 80, weight=1)])]))
        out = _ipvsadm()
        assert "10.9.0.4:443" not in out and "[fd00::100]:80" not in out and "FWM 1000" not in out
        assert sh(["nft", "list", "table", "ip", "keepalived_ipvs"], check=False).returncode != 0  # no group now
        assert sorted(_ipvs_lines("TCP 10.9.0.3:80")) == ["10.9.1.3:80 Route 5", "10.9.1.4:80 Route 1"]
        stage("reload checked")
        # 5. stop: vrrpd's services are gone, the unrelated one is untouched; the sync daemon stopped
        m.stop()
        assert sh(["ipvsadm", "-L", "--daemon"]).stdout.strip() == ""
        out = _ipvsadm()
        assert "172.16.1.44" not in out and "10.9.0" not in out and "FWM" not in out
        stage("5 checked")
        assert "TCP  192.0.2.1:8080 lc" in out and _ipvs_lines("TCP 192.0.2.1:8080") == ["192.0.2.2:8080 Masq 7"]
        # the daemon itself, from seed 001's configuration text
        servers["rs2"] = subprocess.Popen(["ip", "netns", "exec", "rs2", PYTHON, "-m", "http.server", "80",
                                           "-d", str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conf = tmp_path / "keepalived.conf"
        conf.write_text(SEED_001_LVS)
        log_path = tmp_path / "vrrpd.log"
        with open(log_path, "w") as log_file:
            # main() of the module the host already compiled: under TCG compiling vrrpd.py costs ~20 s
            daemon = subprocess.Popen([PYTHON, "-c", "import sys, vrrpd; sys.exit(vrrpd.main(sys.argv[1:]))",
                                       "-n", "-l", "-f", str(conf)], stdout=log_file, stderr=subprocess.STDOUT,
                                      cwd=str(HERE))
        servers["daemon"] = daemon
        wait_for(lambda: sorted(_ipvs_lines(seed_svc)) == ["172.16.1.1:80 Route 1", "172.16.1.2:80 Route 1"],
                 60, 0.2, "the daemon programs seed 001")
        stage("daemon: seed 001 programmed")
        servers["rs1"].kill()
        wait_for(lambda: _ipvs_lines(seed_svc) == ["172.16.1.2:80 Route 1"], 20, 0.2, "the daemon removes rs1")
        conf.write_text(SEED_001_LVS.replace("weight 1", "weight 3"))
        daemon.send_signal(signal.SIGHUP)  # reload: the weights change in place
        wait_for(lambda: _ipvs_lines(seed_svc) == ["172.16.1.2:80 Route 3"], 20, 0.2, "the daemon reloads")
        stage("daemon: removal and reload")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        text = log_path.read_text()
        assert "Removing service [172.16.1.1]:tcp:80 from VS [172.16.1.44]:tcp:80" in text, text
        out = _ipvsadm()
        assert "172.16.1.44" not in out and _ipvs_lines("TCP 192.0.2.1:8080") == ["192.0.2.2:8080 Masq 7"]
        stage("daemon: stopped, its services gone")
    finally:
        m.stop()
        loop.close()
        for proc in list(servers.values()) + [https]:
            proc.kill()


# -- benchmark: many checkers in one process ---------------------------------------------------

_BENCH_SERVER = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
ports = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0)); s.listen(128); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, None); ports.append(s.getsockname()[1])
print(" ".join(map(str, ports)), flush=True)
while True:
    for key, _ in sel.select():
        if key.data is None:
            try:
                conn, _ = key.fileobj.accept()
            except OSError:
                continue
            conn.setblocking(False); sel.register(conn, selectors.EVENT_READ, b"")
        else:
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if data:
                try:
                    key.fileobj.send(b"HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n")
                except OSError:
                    pass
            sel.unregister(key.fileobj); key.fileobj.close()
"""


def lvs_benchmark(kind: str = "TCP_CHECK", count: int = 1000, seconds: float = 10.0, delay_loop: float = 1.0) -> dict:
    """Run `count` checkers of `kind` against loopback listeners (served by a child process) and
    measure this process's CPU share, the checks done per second and the worst lateness."""
    server = subprocess.Popen([PYTHON, "-c", _BENCH_SERVER, str(min(count, 1000))], stdout=subprocess.PIPE, text=True)
    try:
        ports = [int(p) for p in server.stdout.readline().split()]
        rss = []
        for i in range(count):
            urls = [vrrpd.UrlCheck("/")] if kind != "TCP_CHECK" else []
            chk = vrrpd.Checker(kind=kind, urls=urls, connect_timeout=3, retry=1, delay_before_retry=1)
            # real servers beyond 1,000 share listeners: each keeps its own address, connect_ip points home
            rss.append(_rs(f"127.0.{i // 250}.{1 + i % 250}", 80, [chk]))
            chk.connect_ip, chk.connect_port = _ip("127.0.0.1"), ports[i % len(ports)]
        loop, m = _manager(_vs(rss=rss, delay_loop=delay_loop))
        m.start()
        loop.run(until=time.monotonic() + 2 * delay_loop)  # warm up: the first round starts together
        m.max_late = 0.0
        m.late_samples = []
        runners = [c for vsr in m.vs.values() for r in vsr.rs.values() for c in r.checkers]
        attempts0 = sum(c.attempt for c in runners)
        times0, wall0 = os.times(), time.monotonic()
        loop.run(until=wall0 + seconds)
        times1, wall = os.times(), time.monotonic() - wall0
        user, system = times1.user - times0.user, times1.system - times0.system
        cpu = user + system
        alive = sum(r.alive for vsr in m.vs.values() for r in vsr.rs.values())
        late = sorted(m.late_samples)
        result = {"kind": kind, "checkers": count, "delay_loop": delay_loop, "seconds": round(wall, 1),
                  "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
                  "user_percent": round(100 * user / wall, 1), "system_percent": round(100 * system / wall, 1),
                  "checks_per_second": round((sum(c.attempt for c in runners) - attempts0) / wall, 1),
                  "late_p50_ms": round(1000 * late[len(late) // 2], 1),
                  "late_p99_ms": round(1000 * late[int(len(late) * 0.99)], 1),
                  "max_late_ms": round(1000 * m.max_late, 1), "alive": alive}
        m.stop()
        # the same wait on an empty loop: how late this machine wakes a process anyway
        idle_late = [0.0]

        def tick(due: float) -> None:
            idle_late[0] = max(idle_late[0], loop.time() - due)
            loop.call_at(due + 0.01, tick, due + 0.01)

        loop.call_at(loop.time() + 0.01, tick, loop.time() + 0.01)
        loop.run(until=time.monotonic() + min(seconds, 5.0))
        result["idle_loop_max_late_ms"] = round(1000 * idle_late[0], 1)
        loop.close()
        return result
    finally:
        server.kill()
        server.wait()


def test_lvs_checker_benchmark_small():
    """A small run of the benchmark (the full one: lvs_benchmark() with 1,000 TCP_CHECKs)."""
    result = lvs_benchmark("TCP_CHECK", count=200, seconds=3.0, delay_loop=0.5)
    print(result)
    assert result["alive"] == 200
    assert result["checks_per_second"] > 200 / 0.5 * 0.8
    assert result["late_p99_ms"] < 250 and result["max_late_ms"] < 1000  # generous: a shared 2-core machine



def test_in_vm_use_ipvlan_and_a_vmac_in_a_vrf(lab, tmp_path):
    """Runs inside the IPVS VM only (the lab's kernel has no ipvlan and no vrf): keepalived's use_ipvlan makes an
    L2 ipvlan (rtnetlink, kind ipvlan) holding its address, which carries the VIP and is the adverts' source, so a
    peer stays BACKUP; a VMAC whose interface is enslaved to a VRF is enslaved to it too. Both go at stop."""
    ns_a, ns_b = lab.host("a", f"{LAB_NET}.1/24"), lab.host("b", f"{LAB_NET}.2/24")
    lab.ip("link", "add", "vrf-blue", "type", "vrf", "table", "10", ns=ns_a)
    lab.ip("link", "set", "vrf-blue", "up", ns=ns_a)
    lab.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", ns=ns_a)
    lab.ip("link", "set", "eth1", "master", "vrf-blue", ns=ns_a)
    for name in ("eth1", "eth1p"):
        lab.ip("link", "set", name, "up", ns=ns_a)
    a_conf = (_conf(priority=150, state="MASTER", instance_extra=f"    use_ipvlan ipv0 {LAB_NET}.50/24\n")
              + _conf(name="VI_2", vrid=52, interface="eth1", vips=("10.93.0.5/24",),
                      instance_extra="    use_vmac\n").split("}\n", 1)[1])
    a = _Node(lab, ns_a, tmp_path, "A", a_conf)
    b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=100))
    wait_for(lambda: lab.has_address(ns_a, VIP, "ipv0"), 8, what="the VIP on the ipvlan")
    shown = lab.ip("-d", "addr", "show", "ipv0", ns=ns_a).stdout
    assert "ipvlan  mode l2 bridge" in shown and f"{LAB_NET}.50/24" in shown, shown
    time.sleep(1.0)  # B's Master_Down_Interval is 0.3 s: it would have taken over if it heard nothing
    assert not lab.has_address(ns_b, VIP) and "Entering MASTER STATE" not in b.log()
    vmac = lab.ip("-d", "link", "show", "vrrp.52", ns=ns_a).stdout
    assert "master vrf-blue" in vmac and "macvlan mode private" in vmac, vmac
    a.stop()
    b.stop()
    for name in ("ipv0", "vrrp.52"):
        assert lab.ip("link", "show", name, ns=ns_a, check=False).returncode != 0



def test_in_vm_a_unicast_instance_in_a_vrf_binds_its_sockets_to_the_vrf(lab, tmp_path):
    """Runs inside the IPVS VM only: keepalived's `vrf NAME` for a unicast instance without `interface`. eth0 is
    enslaved to vrf-blue, so its subnet is routed in table 10 only; the VRRP socket is bound to vrf-blue
    (SO_BINDTODEVICE read from the kernel), the adverts reach the peer (which stays BACKUP) and the VIP, without
    `dev`, goes on default_interface (eth0)."""
    ns_a, ns_b = lab.host("a", f"{LAB_NET}.1/24"), lab.host("b", f"{LAB_NET}.2/24")
    lab.ip("link", "add", "vrf-blue", "type", "vrf", "table", "10", ns=ns_a)
    lab.ip("link", "set", "vrf-blue", "up", ns=ns_a)
    lab.ip("link", "set", "eth0", "master", "vrf-blue", ns=ns_a)
    assert lab.ip("route", "show", "table", "10", ns=ns_a).stdout.strip()
    a_conf = (f"global_defs {{\n    router_id a\n}}\nvrrp_instance VI_1 {{\n    state MASTER\n    vrf vrf-blue\n"
              f"    virtual_router_id 51\n    priority 150\n    advert_int 0.1\n    version 3\n"
              f"    unicast_src_ip {LAB_NET}.1\n    unicast_peer {{\n        {LAB_NET}.2\n    }}\n"
              f"    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n")
    b_conf = _conf(priority=100, instance_extra=f"    unicast_src_ip {LAB_NET}.2\n    unicast_peer {{\n"
                                                f"        {LAB_NET}.1\n    }}\n")
    a = _Node(lab, ns_a, tmp_path, "A", a_conf)
    b = _Node(lab, ns_b, tmp_path, "B", b_conf)
    wait_for(lambda: lab.has_address(ns_a, VIP, "eth0"), 8, what="A MASTER with the VIP on eth0")
    time.sleep(1.0)  # B's Master_Down_Interval is 0.3 s: it would have taken over if A's adverts did not reach it
    assert not lab.has_address(ns_b, VIP) and "Entering MASTER STATE" not in b.log(), b.log()
    bound = [d for family, _t, proto, _a, _r, d in _daemon_sockets(a.proc.pid)
             if family == socket.AF_INET and proto == 112]
    assert bound == ["vrf-blue"], bound
    a.stop()
    _wait_holders(lab, [b], ["B"], timeout=3)
    b.stop()


def test_in_vm_track_process_listens_to_process_events_with_process_monitor_rcv_bufs(tmp_path):
    """Runs inside the IPVS VM only: the proc connector exists only in the initial network namespace, where the
    host's lab never runs a daemon; the guest's is a throw-away one (VRRP on a dummy). process_monitor_rcv_bufs
    and _force size the daemon's proc-connector socket (read from the kernel through pidfd_getfd), and the
    tracked process's exit puts the instance in FAULT."""
    require_root_netns()
    name = "vt" + uuid.uuid4().hex[:10]
    binary = tmp_path / name
    shutil.copy("/bin/sleep", binary)
    sh(["ip", "link", "add", "vt-d0", "type", "dummy"])  # the guest's own, thrown away with it
    sh(["ip", "addr", "add", "10.250.0.254/24", "dev", "vt-d0"])
    sh(["ip", "link", "set", "vt-d0", "up"])
    conf = tmp_path / "p.conf"
    conf.write_text("global_defs {\n    process_monitor_rcv_bufs 300000\n    process_monitor_rcv_bufs_force\n}\n"
                    f"vrrp_track_process proc {{\n    process {name}\n    weight 0\n    delay 0\n}}\n"
                    "vrrp_instance VI_1 {\n    state MASTER\n    interface vt-d0\n    virtual_router_id 9\n"
                    "    priority 150\n    advert_int 1\n    track_process {\n        proc\n    }\n"
                    "    virtual_ipaddress {\n        10.250.0.1/32\n    }\n}\n")
    tracked = subprocess.Popen([str(binary), "300"])
    log_path = tmp_path / "p.log"
    with open(log_path, "w") as logf:
        daemon = subprocess.Popen([PYTHON, VRRPD, "-n", "-l", "-D", "-f", str(conf)], stdout=logf,
                                  stderr=subprocess.STDOUT)
    try:
        # (the guest is an emulated CPU: the interpreter's start-up alone can take many seconds)
        wait_for(lambda: "(VI_1) Entering MASTER STATE" in log_path.read_text(), 90, what="MASTER")
        connector = [rcvbuf for family, _t, proto, _a, rcvbuf, _d in _daemon_sockets(daemon.pid)
                     if family == socket.AF_NETLINK and proto == vrrpd.ProcEvents.NETLINK_CONNECTOR]
        assert connector == [600000], connector
        tracked.kill()
        tracked.wait()
        wait_for(lambda: "(VI_1) Entering FAULT STATE" in log_path.read_text(), 15, what="FAULT")
    finally:
        tracked.kill()
        daemon.terminate()
        daemon.wait(timeout=10)

if not IN_VM:
    # the in-guest scenarios are collected only inside the VM; on the host the VM test above runs them
    del test_in_vm_seed_001_dr_failover_sorry_server_and_kinds
    del test_in_vm_use_ipvlan_and_a_vmac_in_a_vrf
    del test_in_vm_a_unicast_instance_in_a_vrf_binds_its_sockets_to_the_vrf
    del test_in_vm_track_process_listens_to_process_events_with_process_monitor_rcv_bufs


# ============================================================================================
# G. Operations: command line, signals, reload, status, systemd
# ============================================================================================


def test_bytecode_cache_is_made_once_and_refused_in_a_directory_others_can_write(tmp_path):
    source = tmp_path / "vrrpd_copy.py"
    source.write_text("X = 1\n")
    private = tmp_path / "private"
    pyc = vrrpd.bytecode_cache(str(source), (str(private),))
    assert pyc and os.path.exists(pyc) and (os.stat(private).st_mode & 0o777) == 0o700
    assert vrrpd.bytecode_cache(str(source), (str(private),)) == pyc
    source.write_text("X = 2\n")
    newer = vrrpd.bytecode_cache(str(source), (str(private),))
    assert newer != pyc and os.path.exists(newer) and not os.path.exists(pyc)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    assert vrrpd.bytecode_cache(str(source), (str(shared),)) is None
    assert list(shared.iterdir()) == []


def test_bytecode_cache_from_the_compiled_script_equals_the_file_compiled_without_docstrings(tmp_path):
    import importlib.machinery
    import py_compile

    source = tmp_path / "vrrpd_copy.py"
    source.write_text((HERE / "vrrpd.py").read_text())
    code = compile(source.read_bytes(), str(source), "exec", dont_inherit=True)
    ours = vrrpd.bytecode_cache(str(source), (str(tmp_path / "ours"),), code=code)
    compiled = vrrpd.bytecode_cache(str(source), (str(tmp_path / "compiled"),))
    assert ours and compiled and Path(ours).name == Path(compiled).name
    assert Path(ours).read_bytes() == Path(compiled).read_bytes()
    reference = py_compile.compile(str(source), cfile=str(tmp_path / "reference.pyc"), doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert Path(ours).read_bytes()[:16] == Path(reference).read_bytes()[:16]  # the header py_compile writes
    loaded = importlib.machinery.SourcelessFileLoader("vrrpd_copy", ours).get_code("vrrpd_copy")
    namespace = {"__name__": "vrrpd_copy"}
    exec(loaded, namespace)
    assert namespace["bytecode_cache"].__doc__ is None and namespace["Logger"].log.__doc__ is None
    assert namespace["Logger"].__doc__ == vrrpd.Logger.__doc__  # class docstrings stay
    assert namespace["close_matches"]("advert_itn", ["advert_int", "priority"]) == ["advert_int"]


def test_without_docstrings_drops_the_docstrings_optimize_2_drops_from_functions():
    def codes(code):  # the code objects, depth first
        return [code] + [c for k in code.co_consts if isinstance(k, type(code)) for c in codes(k)]

    def constants(code):
        return tuple(c for c in code.co_consts if not isinstance(c, type(code)))

    text = ('"""module"""\nclass A:\n    """class"""\n    def f(self):\n        """doc"""\n        return "text"\n'
            'def g():\n    return ["<" + s for s in "ab"], lambda: "x", (s for s in "c")\n'
            'async def h():\n    """doc"""\n    yield "y"\n')
    plain, optimized = codes(compile(text, "t.py", "exec")), codes(compile(text, "t.py", "exec", optimize=2))
    ours = codes(vrrpd.without_docstrings(compile(text, "t.py", "exec")))
    functions = 0
    for before, after, expected in zip(plain, ours, optimized):
        function = before.co_flags & 0x2 and not before.co_name.startswith("<")
        functions += bool(function)
        if function:  # -OO's first constant is None too; ours keeps the others where they were
            assert constants(after) == (None,) + constants(before)[1:] and constants(expected)[0] is None
        else:
            assert constants(after) == constants(before), before.co_name
    assert functions == 3 and len(ours) == len(plain) == 8
    assert "doc" not in str([constants(c) for c in ours]) and "module" in str(constants(ours[0]))


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether `pid` is a child of `ancestor`, or a child's child...; True for one that has gone already."""
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return True
        if pid == ancestor:
            return True
    return False


def test_daemon_reexecs_from_bytecode_cache_keeping_its_pid(lab, tmp_path):
    """...with glibc's mmap threshold fixed for itself (the exec's environment), not for its scripts."""
    ns = lab.host("a", "10.66.0.1/24")
    script = tmp_path / "env.sh"
    script.write_text(f"#!/bin/sh\nenv > {tmp_path}/env.out\n")
    script.chmod(0o755)
    conf = tmp_path / "a.conf"
    conf.write_text("vrrp_instance VI_1 {\n state MASTER\n interface eth0\n virtual_router_id 9\n"
                    " priority 150\n advert_int 0.1\n version 3\n virtual_ipaddress {\n 10.66.0.100/24\n }\n"
                    f" notify_master {script}\n}}\n")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    proc = lab.exec(ns, [PYTHON, VRRPD, "-n", "-l", "-f", str(conf)], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, env=env)
    wait_for(lambda: lab.has_address(ns, "10.66.0.100"), 10, what="VIP on the node")
    # the daemon's own process, not a second one (its notify script, a child, may still be running)
    pids = [int(p) for p in sh(["ip", "netns", "pids", ns]).stdout.split()]
    pids = [p for p in pids if not _descends_from(p, proc.pid)]
    assert pids == [proc.pid]
    cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")
    assert b"-c" in cmdline and any(part.endswith(b".pyc") for part in cmdline), cmdline
    assert VRRPD.encode() in cmdline
    assert b"MALLOC_MMAP_THRESHOLD_=131072" in Path(f"/proc/{pids[0]}/environ").read_bytes().split(b"\0")
    wait_for(lambda: (tmp_path / "env.out").exists() and "PATH=" in (tmp_path / "env.out").read_text(), 10,
             what="the notify script's environment")
    assert "MALLOC_MMAP_THRESHOLD_" not in (tmp_path / "env.out").read_text()
    assert "VRRPD_UNSET" not in (tmp_path / "env.out").read_text()
    proc.terminate()
    assert proc.wait(5) == 0
    assert not lab.has_address(ns, "10.66.0.100")


def test_systemd_unit_verifies_and_keeps_the_capabilities_vrrpd_needs(tmp_path):
    require(shutil.which("systemd-analyze") is not None, "needs systemd-analyze")
    text = (HERE / "vrrpd.service").read_text()
    for needed in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                   "CAP_NET_ADMIN", "CAP_NET_RAW", "ProtectSystem=strict", "ProtectHome=true", "PrivateTmp=true"):
        assert needed in text, needed
    unit = tmp_path / "vrrpd.service"
    unit.write_text(text.replace("/usr/local/sbin/vrrpd", VRRPD))
    result = sh(["systemd-analyze", "verify", str(unit)], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_make_install_and_uninstall_into_a_destdir(tmp_path):
    require(shutil.which("make") is not None, "needs make")
    dest = tmp_path / "root"
    sh(["make", "-C", str(HERE), "install", f"DESTDIR={dest}"])
    binary = dest / "usr/local/sbin/vrrpd"
    assert binary.read_bytes() == (HERE / "vrrpd.py").read_bytes() and os.access(binary, os.X_OK)
    assert (dest / "etc/systemd/system/vrrpd.service").exists()
    assert (dest / "etc/vrrpd/vrrpd.conf").read_text() == (HERE / "vrrpd.conf.example").read_text()
    sh(["make", "-C", str(HERE), "uninstall", f"DESTDIR={dest}"])
    assert not binary.exists() and not (dest / "etc/systemd/system/vrrpd.service").exists()


def test_sd_notify_sends_datagram_to_notify_socket(tmp_path, monkeypatch):
    import socket as _socket

    path = str(tmp_path / "notify.sock")
    receiver = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert vrrpd.sd_notify("READY=1\nSTATUS=running")
    assert receiver.recv(100) == b"READY=1\nSTATUS=running"
    receiver.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert vrrpd.sd_notify("READY=1") is False


def test_control_socket_serves_status_json_without_blocking_the_loop(tmp_path):
    loop = vrrpd.EventLoop()
    path = str(tmp_path / "ctl" / "vrrpd.sock")
    status = {"version": "x", "pid": 1, "router_id": "r1", "uptime": 2,
              "instances": [{"name": "VI_1", "state": "MASTER", "interface": "eth0", "vrid": 51, "priority": 150,
                             "effective_priority": 140, "master_address": "10.0.0.1", "vips": ["10.0.0.100/32"]}]}
    server = vrrpd.ControlServer(loop, path, lambda: status)
    result = {}
    import threading

    def client():
        result["status"] = vrrpd.query_status(path)
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=client)
    thread.start()
    loop.run(until=time.monotonic() + 5)
    thread.join(5)
    server.close()
    loop.close()
    assert result["status"] == status
    table = vrrpd.format_status_table(result["status"])
    assert "VI_1" in table and "MASTER" in table and "10.0.0.100/32" in table and "140" in table


def test_event_loop_skips_a_timer_or_reader_removed_earlier_in_the_same_pass():
    import socket as _socket

    loop = vrrpd.EventLoop()
    ran: list = []
    a_r, a_w = _socket.socketpair()
    b_r, b_w = _socket.socketpair()
    a_w.send(b"x")
    b_w.send(b"x")
    second = loop.call_at(loop.time() - 1, ran.append, "cancelled timer")

    def first_timer():  # due timers run first in a pass: this one removes what was to run after it
        ran.append("first timer")
        second.cancel()
        for sock in (a_r, b_r):
            loop.remove_reader(sock)

    loop.call_at(loop.time() - 2, first_timer)
    loop.add_reader(a_r, ran.append, "reader")
    loop.add_reader(b_r, ran.append, "reader")
    loop.run_once(0)
    assert ran == ["first timer"]
    for sock in (a_r, a_w, b_r, b_w):
        sock.close()
    loop.close()



def test_event_loop_runs_timers_due_together_in_the_order_set_round_after_round():
    """Instances that fall due together keep their places in the batch (each re-arms at its deadline), so
    every instance's adverts stay evenly spaced; a timer set during a pass for `now` waits for the next pass."""
    loop = vrrpd.EventLoop()
    ran: list = []
    start = loop.time() - 10.0

    def advert(n: int, when: float) -> None:
        ran.append(n)
        if when + 1.0 <= start + 2.0:
            loop.call_at(when + 1.0, advert, n, when + 1.0)  # due at once: not run in this same pass
    for n in range(64):
        loop.call_at(start, advert, n, start)
    loop.run_once(0)
    assert ran == list(range(64))
    loop.run_once(0)
    loop.run_once(0)
    assert ran == list(range(64)) * 3
    loop.close()

def test_event_loop_call_again_moves_a_timer_which_then_runs_once_in_its_new_place():
    """A periodic timer set again from its own callback (a MASTER's Adver_Timer) is the same Timer; set again while
    pending or after cancel(), it runs once, at its new time, behind the timers set before it."""
    loop = vrrpd.EventLoop()
    ran: list = []
    start = loop.time() - 10.0
    moved = loop.call_at(start, ran.append, "moved")
    loop.call_at(start + 1.0, ran.append, "set before")
    assert loop.call_again(moved, start + 1.0) is moved and moved.when == start + 1.0
    cancelled = loop.call_at(start, ran.append, "cancelled, then set again")
    cancelled.cancel()
    loop.call_again(cancelled, start + 2.0)
    assert len(loop.pending_timers()) == 3  # the entries they left behind are not timers to run
    loop.run_once(0)
    assert ran == ["set before", "moved", "cancelled, then set again"]
    assert loop.pending_timers() == []

    def periodic(n: int) -> None:
        ran.append(n)
        if n < 3:
            loop.call_again(timer, timer.when + 1.0).args = (n + 1,)
    ran.clear()
    timer = loop.call_at(start, periodic, 0)
    for _ in range(4):
        loop.run_once(0)  # one a pass: set again during a pass, it waits for the next
    assert ran == [0, 1, 2, 3] and not loop._timers
    loop.close()


def test_event_loop_runs_timers_children_and_kills_on_timeout():
    loop = vrrpd.EventLoop()
    seen: list = []
    loop.call_later(0.02, seen.append, "timer")
    loop.spawn(["sh", "-c", "exit 3"], on_exit=lambda c: seen.append(("rc", c.returncode)))

    def done(child):
        seen.append(("timeout", child.timed_out, child.returncode))
        loop.stop()

    loop.spawn(["sh", "-c", "sleep 5 & sleep 5"], on_exit=done, timeout=0.2)
    start = time.monotonic()
    loop.run(until=time.monotonic() + 3)
    assert ("rc", 3) in seen and "timer" in seen
    assert ("timeout", True, -signal.SIGKILL) in seen
    assert time.monotonic() - start < 1.5
    loop.close()


def test_soak_finding_a_child_that_ended_while_the_loop_was_held_up_did_not_time_out():
    """A tracked script ended within its timeout, but the loop was held up: the next pass ran the due timeout
    timer before the readable pidfd, and the script "timed out" (a priority drop and a lost VIP in the soak)."""
    loop = vrrpd.EventLoop()
    seen: list = []
    child = loop.spawn(["true"], on_exit=lambda c: seen.append((c.timed_out, c.returncode)), timeout=0.2)
    stat = Path(f"/proc/{child.pid}/stat")
    wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", 10, 0.01, "the child ended")
    time.sleep(0.3)  # while the loop does not run, the child ended and its timeout passed
    loop.run(until=time.monotonic() + 0.5)
    assert seen == [(False, 0)]
    loop.close()


def test_soak_finding_an_exec_held_up_in_the_child_does_not_hold_the_loop(monkeypatch, tmp_path):
    """The soak's 4 s master stall: the loop sat in subprocess.Popen, which waits until the child has exec'd, while
    a slow file system held the exec up. spawn() forks and goes on: a timer due 0.1 s later fires on time while
    the child is still before its exec (held here for 1.5 s), and the child runs the program afterwards."""
    real_execvp = os.execvp

    def slow_execvp(file, args):  # runs in the forked child only
        time.sleep(1.5)
        real_execvp(file, args)

    monkeypatch.setattr(os, "execvp", slow_execvp)
    loop = vrrpd.EventLoop()
    marker = tmp_path / "ran"
    seen: list = []
    spawned = time.monotonic()
    loop.spawn(["sh", "-c", f"touch {marker}"], on_exit=lambda c: seen.append(("exit", c.returncode,
                                                                            time.monotonic() - spawned)))
    returned = time.monotonic() - spawned
    loop.call_later(0.1, lambda: seen.append(("timer", time.monotonic() - spawned)))
    loop.run(until=time.monotonic() + 4)
    loop.close()
    assert returned < 0.5, returned
    timer = next(t for kind, *t in seen if kind == "timer")
    exit_ = next(t for kind, *t in seen if kind == "exit")
    assert timer[0] < 0.6, seen  # on time, not after the child's exec
    assert exit_[0] == 0 and exit_[1] >= 1.4 and marker.exists(), seen


def test_a_program_that_cannot_be_run_is_logged_and_exits_127(caplog):
    loop = vrrpd.EventLoop()
    seen: list = []
    with caplog.at_level(logging.WARNING, logger="vrrpd"):
        child = loop.spawn(["/nonexistent/vrrpd-no-such-program"], on_exit=lambda c: seen.append(c.returncode))
        loop.run(until=time.monotonic() + 2)
    loop.close()
    assert seen == [127]
    assert "cannot run /nonexistent/vrrpd-no-such-program:" in caplog.text and "No such file" in caplog.text
    assert child.exec_error and "No such file" in child.exec_error


# -- G2. Command line, daemonising, signals, dumps, reload (issue 7) ---------------------------


def _second_instance(name="VI_2", vrid=52, priority=100, state="BACKUP", vip=f"{LAB_NET}.101/24"):
    """A vrrp_instance block to append to _conf()'s text."""
    return (f"vrrp_instance {name} {{\n    state {state}\n    interface eth0\n    virtual_router_id {vrid}\n"
            f"    priority {priority}\n    advert_int 0.1\n    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n")


def test_signum_names_match_keepalived(capsys):
    for name, number in (("STOP", 15), ("RELOAD", 1), ("DATA", 10), ("STATS", 12), ("JSON", signal.SIGRTMIN + 2),
                         ("STATS_CLEAR", 63)):
        assert vrrpd.main(["--signum", name]) == 0
        assert capsys.readouterr().out.strip() == str(int(number)), name
    assert vrrpd.main(["--signum", "NOPE"]) == 1


def test_cli_accepts_keepalived_spellings_and_C_is_lvs_only():
    parser = vrrpd.build_arg_parser()
    args = parser.parse_args(["--use-file", "x.conf", "--dont-fork", "--log-console", "--log-detail",
                              "--log-facility", "local3", "--vrrp", "--pid", "/tmp/p", "--dump-conf"])
    assert (args.config, args.dont_fork, args.log_console, args.log_detail, args.log_facility, args.vrrp_only,
            args.pid, args.dump_conf) == ("x.conf", True, True, True, "local3", True, "/tmp/p", True)
    short = parser.parse_args(["-f", "y", "-n", "-l", "-D", "-S", "2", "-C", "-p", "q"])
    assert (short.config, short.log_facility, short.lvs_only, short.vrrp_only, short.check) == ("y", "2", True, False,
                                                                                                 False)
    assert parser.parse_args(["--check"]).check and parser.parse_args(["-t"]).check
    with pytest.raises(SystemExit):
        parser.parse_args(["-P", "-C"])  # one or the other, as keepalived's child processes
    cfg = vrrpd.parse_config_text(inst("state BACKUP\ninterface eth0\nvirtual_router_id 1\npriority 100\n"
                                       "virtual_ipaddress { 10.0.0.1 }") +
                                  "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n }\n}\n")[0]
    assert cfg.vrrp_instances and cfg.virtual_servers
    lvs = vrrpd._select_subsystems(cfg, vrrp_only=False, lvs_only=True)
    assert not lvs.vrrp_instances and lvs.virtual_servers


def test_status_without_a_daemon_says_so_and_exits_3(tmp_path, capsys):
    assert vrrpd.main(["--status", "--control-socket", str(tmp_path / "none.sock")]) == vrrpd.EXIT_NOT_RUNNING
    assert "no running vrrpd" in capsys.readouterr().err


def test_pid_file_refuses_a_second_holder_and_is_removed_by_its_owner(tmp_path):
    path = str(tmp_path / "run" / "vrrpd.pid")
    first = vrrpd.PidFile(path)
    first.acquire()
    first.write(os.getpid())
    second = vrrpd.PidFile(path)
    with pytest.raises(vrrpd.VrrpdError, match=f"already running \\(pid {os.getpid()}, pid file {path}\\)"):
        second.acquire()
    first.release()
    assert not os.path.exists(path)
    second.acquire()  # free again
    second.release()


def test_data_and_stats_dumps_follow_keepalived_layout():
    status = {"instances": [{"name": "VI_1", "stats": {
        "adverts_sent": 7, "adverts_received": 3, "bad_packets": {"bad_ttl": 2, "bad_auth": 1}, "transitions": 2,
        "entered": {"BACKUP": 1, "MASTER": 1}, "released_master": 0, "priority_zero_sent": 0,
        "priority_zero_received": 1}}]}
    text = vrrpd.format_stats(status)
    for line in ("VRRP Instance: VI_1", "    Received: 3", "    Sent: 7", "  Became master: 1",
                 "  Packet errors: 3", "    bad_ttl: 2", "  Priority Zero:"):
        assert line in text.splitlines(), (line, text)


def test_daemon_forks_writes_pid_file_and_a_second_copy_refuses(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    conf = tmp_path / "a.conf"
    conf.write_text(_conf(priority=150, state="MASTER"))
    pid_path = tmp_path / "vrrpd.pid"
    argv = [PYTHON, VRRPD, "-f", str(conf), "-p", str(pid_path), "--control-socket", str(tmp_path / "a.sock"),
            "--dump-dir", str(tmp_path)]
    first = lab.run(ns, argv, check=False, timeout=30)
    assert first.returncode == 0, first.stderr
    pid = int(pid_path.read_text())
    try:
        assert os.path.exists(f"/proc/{pid}") and pid != os.getpid()
        assert os.getsid(pid) not in (os.getsid(0), pid)  # a new session it does not lead: no controlling tty
        wait_for(lambda: lab.has_address(ns, VIP), 5, what="the forked daemon to hold the VIP")
        second = lab.run(ns, argv, check=False, timeout=30)
        assert second.returncode == 1
        assert f"already running (pid {pid}, pid file {pid_path})" in second.stderr
        assert int(pid_path.read_text()) == pid
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5, what="the daemon to exit")
    assert not pid_path.exists() and not lab.has_address(ns, VIP)


def test_status_json_signal_dumps_and_sd_notify_of_a_running_daemon(lab, tmp_path):
    import json
    import socket as _socket

    notify_path = str(tmp_path / "notify.sock")
    notify = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(10)
    ns = lab.host("a", f"{LAB_NET}.1/24")
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER"),
                 env=dict(os.environ, NOTIFY_SOCKET=notify_path), control=True, wait=False)

    def next_notify():
        while True:
            message = notify.recv(4096).decode()
            if not message.startswith("STATUS="):
                return message

    try:
        assert next_notify() == "READY=1"
        wait_for(lambda: lab.has_address(ns, VIP), 5, what="VIP")
        wait_for(lambda: os.path.exists(node.ctl), 5, what="control socket")
        table = sh([PYTHON, VRRPD, "--status", "--control-socket", node.ctl]).stdout
        assert "VI_1" in table and "MASTER" in table and f"{VIP}/24" in table
        doc = json.loads(sh([PYTHON, VRRPD, "--json", "--control-socket", node.ctl]).stdout)
        assert doc["instances"][0]["state"] == "MASTER" and doc["instances"][0]["effective_priority"] == 150
        assert doc["config_file"] == str(node.conf) and doc["pid"] == int(sh(["ip", "netns", "pids", ns]).stdout
                                                                             .split()[0])
        for sig, name in ((signal.SIGUSR1, "data"), (signal.SIGUSR2, "stats"), (signal.SIGRTMIN + 2, "json")):
            node.proc.send_signal(sig)
            wait_for(lambda n=name: (node.dumps / f"vrrpd.{n}").exists(), 5, what=f"vrrpd.{name}")
        data = (node.dumps / "vrrpd.data").read_text()
        assert "------< VRRP Topology >------" in data and " VRRP Instance = VI_1" in data
        assert "   State = MASTER" in data and f"     {VIP}/24 dev eth0" in data
        stats = (node.dumps / "vrrpd.stats").read_text()
        sent = int(stats.split("    Sent: ")[1].split()[0])
        assert sent > 0 and "  Became master: 1" in stats
        dumped = json.loads((node.dumps / "vrrpd.json").read_text())
        assert dumped["instances"][0]["name"] == "VI_1" and dumped["instances"][0]["state"] == "MASTER"
        node.proc.send_signal(signal.SIGHUP)
        assert next_notify().startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert next_notify() == "READY=1"
        assert node.stop() == 0
        assert next_notify() == "STOPPING=1"
        assert not os.path.exists(node.ctl)
    finally:
        notify.close()


def test_lab_dump_file_names_reload_check_config_reload_file_and_config_save_dir(lab, tmp_path):
    """global_defs' runtime files in a running vrrpd: stats_dump_file and json_dump_file name the SIGUSR2 and
    SIGRTMIN+2 dumps; reload_check_config writes a refused file's problems to its log file and says keepalived's
    line; reload_file is gone once the files are read; config_save_dir keeps each configuration read and the
    state before and after each reload."""
    import json

    check_log, reload_file, saved = tmp_path / "check.log", tmp_path / "ka.reload", tmp_path / "saved"
    extra = (f"    stats_dump_file {tmp_path}/out/my.stats\n    json_dump_file {tmp_path}/out/\n"
             f"    reload_check_config {check_log}\n    reload_file {reload_file}\n    config_save_dir {saved}/\n")
    (tmp_path / "out").mkdir()
    ns = lab.host("a", f"{LAB_NET}.1/24")
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", global_extra=extra),
                 control=True, wait=False)
    wait_for(lambda: lab.has_address(ns, VIP), 5, what="VIP")
    wait_for(lambda: os.path.exists(node.ctl), 5, what="control socket")
    pid = node.status()["pid"]
    node.proc.send_signal(signal.SIGUSR2)
    wait_for(lambda: (tmp_path / "out" / "my.stats").exists(), 5, what="the stats dump at stats_dump_file")
    assert "VRRP Instance: VI_1" in (tmp_path / "out" / "my.stats").read_text()
    node.proc.send_signal(signal.SIGRTMIN + 2)
    wait_for(lambda: (tmp_path / "out" / "vrrpd.json").exists(), 5, what="the JSON dump in json_dump_file's dir")
    assert json.loads((tmp_path / "out" / "vrrpd.json").read_text())["instances"][0]["state"] == "MASTER"
    assert not (node.dumps / "vrrpd.stats").exists() and not (node.dumps / "vrrpd.json").exists()
    # config_save_dir was created, and holds the configuration read at start
    assert saved.is_dir() and (saved.stat().st_mode & 0o777) == 0o700
    assert (saved / f"vrrpd.conf.{pid}.0").read_text() == f"# {node.conf}\n" + node.conf.read_text()
    # a refused reload: its problems in the check log, keepalived's line in the log, the master kept
    good = node.conf.read_text()
    reload_file.write_text("updating")  # an updater's mark: vrrpd removes it once it has read the files
    node.reload(good.replace("virtual_router_id 51", "virtual_router_id 300"))
    assert f"New config failed validation, see {check_log} for details" in node.log()
    problems = check_log.read_text().splitlines()
    assert any(f"{node.conf}:" in line and "error" in line and "300" in line for line in problems), problems
    assert not any("virtual_router_id" in line for line in node.log().splitlines()), node.log()
    assert not reload_file.exists()
    assert node.instance()["state"] == "MASTER" and lab.has_address(ns, VIP)
    assert not (saved / f"vrrpd.{pid}.1.pre").exists()  # nothing was applied
    # a good reload: the check log is emptied, the state before and after it saved
    reload_file.write_text("updating")
    node.reload(good.replace("priority 150", "priority 120"))
    wait_for(lambda: node.instance()["effective_priority"] == 120, 3, what="the reloaded priority")
    assert check_log.read_text() == "" and not reload_file.exists()
    assert "   Priority = 150" in (saved / f"vrrpd.{pid}.1.pre").read_text()
    assert f" Test config before reload, log to {check_log}\n Reload_file = {reload_file}\n" in (
        saved / f"vrrpd.{pid}.1.pre").read_text()
    assert "   Priority = 120" in (saved / f"vrrpd.{pid}.1.post").read_text()
    assert "priority 120" in (saved / f"vrrpd.conf.{pid}.2").read_text()
    assert "virtual_router_id 300" in (saved / f"vrrpd.conf.{pid}.1").read_text()


def test_lab_json_version_writes_keepalived_s_json_layout(lab, tmp_path):
    """json_version 1|2: the JSON dump (SIGRTMIN+2) in keepalived's layout, for the tools that read keepalived.json.
    The real keepalived writes its dump of the same configuration first; vrrpd's has every key of it (2.2.7's are
    a subset of 2.4.3's), with the same values where they describe the configuration and the state."""
    import json

    ns = lab.host("a", f"{LAB_NET}.1/24")
    body = _conf(priority=150, state="MASTER",
                 instance_extra=(f"    virtual_ipaddress_excluded {{\n        {LAB_NET}.101/24\n    }}\n"
                                 "    track_script {\n        chk\n    }\n    notify_master \"/bin/true master\"\n"))
    body = "vrrp_script chk {\n    script /bin/true\n    interval 1\n}\n" + body
    require(os.path.exists(KEEPALIVED), "needs keepalived (apt-get install keepalived)")
    (tmp_path / "ka").mkdir()
    ka = _Node(lab, ns, tmp_path, "K", body, keepalived=True, env=dict(os.environ, TMPDIR=str(tmp_path / "ka")))
    wait_for(lambda: lab.has_address(ns, VIP), 20, what="keepalived's VIP")
    time.sleep(0.5)
    os.kill(int((tmp_path / "K.vrrp.pid").read_text()), signal.SIGRTMIN + 2)
    theirs_path = tmp_path / "ka" / "keepalived.json"
    wait_for(lambda: theirs_path.exists() and theirs_path.read_text().rstrip().endswith("]"), 15,
             what="keepalived.json")
    theirs = json.loads(theirs_path.read_text())
    ka.stop(timeout=20)
    wait_for(lambda: not lab.has_address(ns, VIP), 10, what="keepalived gone")

    out = tmp_path / "ours" / "keepalived.json"
    out.parent.mkdir()
    extra = f"    json_version 1\n    json_dump_file {out}\n"
    node = _Node(lab, ns, tmp_path, "A", body.replace("vrrp_version 3\n", "vrrp_version 3\n" + extra),
                 control=True, wait=False)
    wait_for(lambda: lab.has_address(ns, VIP), 15, what="vrrpd's VIP")
    wait_for(lambda: os.path.exists(node.ctl), 15, what="control socket")
    time.sleep(0.5)
    node.proc.send_signal(signal.SIGRTMIN + 2)
    wait_for(lambda: out.exists(), 15, what="vrrpd's keepalived.json")
    ours = json.loads(out.read_text())
    assert isinstance(ours, list) and len(ours) == len(theirs) == 1, (ours, theirs)
    (t_data, t_stats), (o_data, o_stats) = (theirs[0]["data"], theirs[0]["stats"]), (ours[0]["data"], ours[0]["stats"])
    assert set(t_data) <= set(o_data), set(t_data) - set(o_data)
    assert set(t_stats) <= set(o_stats), set(t_stats) - set(o_stats)
    differ = {k: (t_data[k], o_data[k]) for k in t_data if k != "last_transition" and t_data[k] != o_data[k]}
    assert not differ, differ
    assert o_stats["become_master"] == t_stats["become_master"] == 1 and o_stats["advert_sent"] > 0
    assert abs(o_data["last_transition"] - time.time()) < 30
    # json_version 2: the same array under "vrrp", and the tracked processes beside it
    node.reload(node.conf.read_text().replace("json_version 1", "json_version 2")
                + "vrrp_track_process tp {\n    process no-such-program-here\n    weight 10\n}\n")
    out.unlink()
    node.proc.send_signal(signal.SIGRTMIN + 2)
    wait_for(lambda: out.exists(), 15, what="the version 2 dump")
    doc = json.loads(out.read_text())
    assert set(doc) == {"vrrp", "track_process"} and doc["vrrp"][0]["data"]["iname"] == "VI_1"
    assert doc["track_process"] == [{"process": "no-such-program-here", "param_match": "none", "min_processes": 1,
                                     "current_processes": 0, "have_quorum": False, "weight": 10,
                                     "terminate_delay": 0.0, "fork_delay": 0.0, "full_command": False}]


def test_lab_log_file_option_writes_every_line_in_keepalived_s_file_format(lab, tmp_path):
    """-g FILE (keepalived's --log-file; there is no vrrp_log_file keyword in any keepalived): a relative name is
    in $TMPDIR; vrrpd is one process, so the lines keepalived splits into FILE_vrrp, FILE_healthcheckers... are all
    in FILE, each stamped as keepalived stamps its log file."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    conf = tmp_path / "A.conf"
    conf.write_text(_conf(priority=150, state="MASTER"))
    proc = lab.exec(ns, [PYTHON, VRRPD, "-n", "-G", "-g", "ka.log", "--flush-log-file", "-f", str(conf),
                         "--control-socket", str(tmp_path / "A.sock")],
                    env=dict(os.environ, TMPDIR=str(tmp_path)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log_path = tmp_path / "ka.log"
    wait_for(lambda: log_path.exists() and "(VI_1) Entering MASTER STATE" in log_path.read_text(), 10,
             what="the MASTER line in the log file")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    lines = log_path.read_text().splitlines()
    stamp = r"^[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2}\.\d{9} \d{4}: "
    assert all(re.match(stamp, line) for line in lines), lines
    assert any(line.endswith(": Startup complete") for line in lines)
    assert any("Stopped" in line for line in lines[-3:]), lines[-3:]


def test_reload_time_formats_are_keepalived_s():
    now = time.mktime((2026, 12, 1, 12, 0, 0, 0, 0, -1))
    local = lambda *t: time.mktime(t + (0, 0, -1))  # noqa: E731
    assert vrrpd.parse_reload_time("13:30:00", now) == (local(2026, 12, 1, 13, 30, 0), False, "")
    assert vrrpd.parse_reload_time("11:00:00", now) == (local(2026, 12, 2, 11, 0, 0), False, "")  # tomorrow
    assert vrrpd.parse_reload_time("2026-12-24 18:00:00", now) == (local(2026, 12, 24, 18, 0, 0), True, "")
    assert vrrpd.parse_reload_time("26-12-24 18:00:00", now)[0] == local(2026, 12, 24, 18, 0, 0)
    utc_now = 1796126400.0  # date -u -d '2026-12-01 12:00:00' +%s
    assert vrrpd.parse_reload_time("2026-12-01 12:00:05Z", utc_now)[0] == utc_now + 5
    assert vrrpd.parse_reload_time("12:00:05Z", utc_now)[0] == utc_now + 5
    for text, problem in (("2026-11-30 10:00:00", "is in the past"), ("1:2:3", "format is incorrect"),
                          ("25:00:00", "invalid"), ("13:30:0x", "invalid"), (" 13:30:00", "format is incorrect"),
                          ("2026-02-30 10:00:00", "invalid")):
        when, _dated, said = vrrpd.parse_reload_time(text, now)
        assert when is None and problem in said, (text, said)


def test_lab_reload_time_file_reloads_at_the_time_it_holds(lab, tmp_path):
    """reload_time_file: the reload happens at the time written in the file, which is then deleted; with
    reload_repeat a time alone is kept and comes again the next day; a past date is refused."""
    when_file = tmp_path / "reload-at"
    ns = lab.host("a", f"{LAB_NET}.1/24")
    extra = f"    reload_time_file {when_file}\n"
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER", global_extra=extra),
                 control=True, wait=False)
    wait_for(lambda: lab.has_address(ns, VIP), 5, what="VIP")
    wait_for(lambda: os.path.exists(node.ctl), 5, what="control socket")
    assert f"add watch for {when_file}" in node.log()
    when_file.write_text("2020-01-01 00:00:00\n")
    wait_for(lambda: "Reload time 2020-01-01 00:00:00 is in the past - ignoring" in node.log(), 5,
             what="a past date refused")
    # the new configuration is in place long before the time comes: only the time file starts the reload
    node.conf.write_text(_conf(priority=120, state="MASTER", global_extra=extra + "    reload_repeat\n"))
    at = time.time() + 3
    stamp = time.strftime("%H:%M:%S", time.localtime(at))
    when_file.write_text(stamp + "\n")
    wait_for(lambda: "Scheduling reload for " + time.strftime("%Y-%m-%d ", time.localtime(at)) + stamp
             in node.log(), 5, what="the reload scheduled")
    assert node.instance()["effective_priority"] == 150
    wait_for(lambda: node.instance()["effective_priority"] == 120, 8, 0.05, what="the scheduled reload")
    assert time.time() >= int(at) - 0.05, "reloaded before its time"
    assert not when_file.exists()  # deleted: the configuration that ran the reload had no reload_repeat
    # now reload_repeat is on: a time alone is kept and scheduled again for the next day after the reload
    at = time.time() + 3
    stamp = time.strftime("%H:%M:%S", time.localtime(at))
    node.conf.write_text(_conf(priority=110, state="MASTER", global_extra=extra + "    reload_repeat\n"))
    when_file.write_text(stamp + "\n")
    wait_for(lambda: node.instance()["effective_priority"] == 110, 9, 0.05, what="the second scheduled reload")
    assert when_file.exists()
    tomorrow = time.strftime("%Y-%m-%d ", time.localtime(at + 86400)) + stamp
    wait_for(lambda: "Scheduling reload for " + tomorrow in node.log(), 5, what="the same time tomorrow")
    when_file.unlink()
    wait_for(lambda: "Cancelling reload scheduled for " + tomorrow in node.log(), 5, what="the reload cancelled")
    assert node.status()["reloads"]["done"] == 2


def test_lab_include_check_refuses_to_start_on_a_missing_include(lab, tmp_path):
    """include_check makes a missing include an error: the daemon does not start (keepalived exits too); without
    it the same file runs, with keepalived's words as a warning."""
    ns = lab.host("a", f"{LAB_NET}.1/24")
    body = _conf(priority=150, state="MASTER") + "include conf.d/missing.conf\n"
    conf = tmp_path / "checked.conf"
    conf.write_text(body.replace("global_defs {\n", "global_defs {\n    include_check match\n"))
    refused = lab.run(ns, [PYTHON, VRRPD, "-n", "-l", "-f", str(conf), "--control-socket", str(tmp_path / "x.sock")],
                      check=False, timeout=30)
    assert refused.returncode == 1, refused
    line = conf.read_text().count("\n")  # the include is the last line
    assert f"{conf}:{line}: error: Config files missing 'conf.d/missing.conf'." in refused.stderr, refused.stderr
    assert not lab.has_address(ns, VIP)
    node = _Node(lab, ns, tmp_path, "A", body, control=True, wait=False)
    wait_for(lambda: lab.has_address(ns, VIP), 5, what="VIP without include_check")
    assert "warning: Config files missing 'conf.d/missing.conf'." in node.log()


def test_reload_changing_priority_and_adding_an_instance_loses_no_ping(lab, tmp_path):
    a = _Node(lab, lab.host("a", f"{LAB_NET}.1/24"), tmp_path, "A", _conf(priority=150, state="MASTER"),
              control=True, wait=False)
    b = _Node(lab, lab.host("b", f"{LAB_NET}.2/24"), tmp_path, "B", _conf(priority=100), control=True, wait=False)
    client = lab.host("c", f"{LAB_NET}.10/24")
    _wait_holders(lab, [a, b], ["A"], timeout=5)
    wait_for(lambda: os.path.exists(a.ctl), 5, what="control socket")
    sent_before = a.instance()["stats"]["adverts_sent"]
    adverts = Probe(lab, client, ("224.0.0.18@eth0",))  # VI_1's adverts as the LAN sees them
    addresses = Probe(lab, a.ns)  # address events on A: a VIP removal would show as "-"
    t_start = time.time()
    ping = lab.exec(client, ["ping", "-n", "-q", "-i", "0.01", "-w", "4", VIP], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    t0 = time.monotonic()
    a.reload(_conf(priority=200, state="MASTER") + _second_instance(priority=200, state="MASTER"))
    b.reload(_conf(priority=100) + _second_instance(priority=100))
    reload_took = time.monotonic() - t0
    second_vip = f"{LAB_NET}.101"
    wait_for(lambda: lab.has_address(a.ns, second_vip), 3, what="the added instance's VIP on A")
    sent, received = _ping_stats(ping.communicate(timeout=15)[0])
    assert sent > 100 and received == sent, (sent, received)  # 4 s at 10 ms: ~400, fewer on a loaded machine
    vi1 = [e for e in adverts.adverts(src=f"{LAB_NET}.1", since=t_start) if e[3] == "51"]
    gaps = [later[1] - earlier[1] for earlier, later in zip(vi1, vi1[1:])]
    assert len(vi1) > 20 and max(gaps) < 0.3, max(gaps)  # advert_int 0.1: no advert gap through the reload
    assert {e[4] for e in vi1} == {"150", "200"} and vi1[-1][4] == "200"
    assert not [e for e in addresses.events if e[0] == "ADDR" and e[2] == "-"], addresses.events
    st = a.instance()
    assert st["state"] == "MASTER" and st["priority"] == 200 and st["effective_priority"] == 200
    assert st["stats"]["adverts_sent"] > sent_before
    assert a.instance("VI_2")["state"] == "MASTER" and b.instance("VI_2")["state"] == "BACKUP"
    assert b.instance()["state"] == "BACKUP"
    log_a = a.log().split("Reloading ...", 1)[1]
    # VI_1 kept its state and VIPs: no transition, no VIP removal
    assert "(VI_1) Entering" not in log_a and "(VI_1) removing VIPs" not in log_a
    assert "(VI_1) Changing effective priority from 150 to 200" in log_a
    assert "1 instance(s) kept (1 changed in place), 1 added, 0 removed" in log_a
    reloads = a.status()["reloads"]
    assert reloads["done"] == 1 and reloads["last"]["added"] == ["VI_2"]
    assert reload_took < 5


def test_invalid_reload_logs_every_problem_and_keeps_running(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, state="MASTER"), control=True, wait=False)
    wait_for(lambda: lab.has_address(ns, VIP), 5, what="VIP")
    wait_for(lambda: os.path.exists(node.ctl), 5, what="control socket")
    good = node.conf.read_text()
    # (priority 999 is only a warning: keepalived runs it with priority 100)
    bad = good.replace("advert_int 0.1", "advert_int 300").replace("virtual_router_id 51", "virtual_router_id 300")
    node.reload(bad)
    log_text = node.log().split("Reload requested", 1)[1]
    errors = [line for line in log_text.splitlines() if str(node.conf) in line]
    assert len(errors) >= 2, log_text
    assert "Reload aborted: " in log_text and "the running configuration is kept" in log_text
    st = node.status()
    assert st["reloads"]["failed"] == 1 and len(st["reloads"]["last"]["errors"]) >= 2
    assert st["instances"][0]["state"] == "MASTER" and st["instances"][0]["priority"] == 150
    assert lab.has_address(ns, VIP) and node.proc.poll() is None
    addresses = Probe(lab, ns)
    extra = f"{LAB_NET}.102"
    node.reload(good.replace("priority 150", "priority 120").replace(f"{VIP}/24\n", f"{VIP}/24\n{extra}/24\n"))
    assert node.instance()["effective_priority"] == 120 and node.instance()["state"] == "MASTER"
    wait_for(lambda: lab.has_address(ns, extra), 2, what="the VIP added by the reload")
    node.reload(good)
    wait_for(lambda: not lab.has_address(ns, extra), 2, what="the VIP removed by the reload")
    assert lab.has_address(ns, VIP) and node.instance()["state"] == "MASTER"
    removed = [e[3] for e in addresses.events if e[0] == "ADDR" and e[2] == "-"]
    assert removed == [extra], removed  # the VIP that stayed in the list was never taken down


def test_reload_that_removes_the_master_instance_hands_over_at_once(lab, tmp_path):
    ns_a = lab.host("a", f"{LAB_NET}.1/24")
    ns_b = lab.host("b", f"{LAB_NET}.2/24")
    other = _second_instance(name="VI_9", vrid=59, vip=f"{LAB_NET}.109/24")
    a = _Node(lab, ns_a, tmp_path, "A", _conf(priority=150, state="MASTER", version=2, advert=1) + other,
              control=True, wait=False)
    b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=100, version=2, advert=1), control=True, wait=False)
    _wait_holders(lab, [a, b], ["A"], timeout=6)
    time.sleep(0.3)
    t0 = time.monotonic()
    a.reload(_conf(priority=150, state="MASTER", version=2, advert=1).split("vrrp_instance")[0] + other)
    _wait_holders(lab, [a, b], ["B"], timeout=3)
    took = time.monotonic() - t0
    # priority 0 from the removed master: B takes over after its skew time, not the master-down interval
    assert took < 3 * 1 + (256 - 100) / 256 - 1, took
    assert "(VI_1) removed by the reload" in a.log() and "(VI_1) sent 0 priority" in a.log()
    assert [i["name"] for i in a.status()["instances"]] == ["VI_9"]
    assert a.proc.poll() is None


def test_readme_keyword_table_is_the_parsers_registry():
    text = (HERE / "README.md").read_text()
    begin, end = "<!-- keywords:begin -->\n", "<!-- keywords:end -->"
    table = text[text.index(begin) + len(begin):text.index(end)]
    assert table == vrrpd.keyword_table_markdown(), "README keyword table is stale: run `make readme`"


def test_readme_starts_with_the_two_setup_commands_and_its_recipes_are_valid():
    text = (HERE / "README.md").read_text()
    first_code = next(line.strip() for line in text.splitlines() if line.startswith("    "))
    assert first_code.startswith("sudo make demo")
    assert text.index("sudo make test") < text.index("## Migrating from keepalived") < text.index("## Benchmark")
    assert "scp vrrpd.py host:" in text
    blocks, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("    ") or (current and not line.strip()):
            current.append(line[4:])
        elif current:
            blocks.append("\n".join(current).strip())
            current = []
    recipes = [b for b in blocks if b.startswith(("global_defs", "virtual_server"))]
    assert len(recipes) >= 3
    for recipe in recipes:
        config, diags = vrrpd.parse_config_text(recipe, "README.md")
        errors = [str(d) for d in diags if d.severity is vrrpd.Severity.ERROR]
        assert not errors, (recipe[:60], errors)
        assert config.vrrp_instances or config.virtual_servers


def test_systemd_unit_command_lines_are_valid_vrrpd_options():
    import shlex

    text = (HERE / "vrrpd.service").read_text().replace("\\\n", " ")
    for key in ("ExecStartPre=", "ExecStart="):
        line = next(x for x in text.splitlines() if x.startswith(key))
        argv = [a for a in shlex.split(line[len(key):])[1:] if a != "$VRRPD_OPTIONS"]
        args = vrrpd.build_arg_parser().parse_args(argv)
        assert args.config == "/etc/vrrpd/vrrpd.conf"
    assert args.dont_fork and args.pid == "/run/vrrpd.pid" and args.dump_dir == "/run/vrrpd"


def test_rate_limit_summarises_a_flood_of_bad_packets(caplog):
    limit = vrrpd._RateLimit(period=5.0)
    with caplog.at_level(logging.WARNING, logger="vrrpd"):
        for n in range(1000):
            limit(("bad_ttl", "VI_1"), 100.0 + n * 0.001, "(VI_1) invalid TTL/HL. Received 64 and expect 255")
        limit(("bad_ttl", "VI_1"), 106.0, "(VI_1) invalid TTL/HL. Received 64 and expect 255")
    lines = [r.getMessage() for r in caplog.records if "invalid TTL" in r.getMessage()]
    assert lines == ["(VI_1) invalid TTL/HL. Received 64 and expect 255",
                     "(VI_1) invalid TTL/HL. Received 64 and expect 255 (999 more suppressed)"]



def test_rate_limit_summary_comes_when_the_storm_window_closes(caplog):
    timers = []
    limit = vrrpd._RateLimit(period=5.0, schedule=lambda delay, fn, *args: timers.append((delay, fn, args)))
    text = "Unknown VRID(99) received on interface(eth0). ignoring..."
    with caplog.at_level(logging.WARNING, logger="vrrpd"):
        for n in range(500):
            limit(("vrid", "eth0", 99), 10.0 + n * 0.002, text)
        assert len(timers) == 1 and timers[0][0] == pytest.approx(5.0 - 0.002)
        delay, fn, args = timers.pop()
        fn(*args)  # the window closes with no further packet
        limit(("vrid", "eth0", 99), 15.5, text)  # the storm goes on: a new window, a new summary
        assert len(timers) == 1
    lines = [r.getMessage() for r in caplog.records if "VRID(99)" in r.getMessage()]
    assert lines == [text, f"{text} (499 more like this in 5 s)"]



def test_status_table_shows_counters_trackers_lvs_and_the_last_reload():
    status = {
        "version": "0.1.0", "pid": 42, "router_id": "lb1", "uptime": 61, "config_file": "/etc/vrrpd/vrrpd.conf",
        "reloads": {"done": 1, "failed": 1, "last": {"ok": False, "at": time.time() - 5, "errors": ["x", "y"]}},
        "instances": [{"name": "VI_1", "state": "BACKUP", "interface": "eth0", "vrid": 51, "priority": 150,
                       "effective_priority": 90, "master_address": "10.0.0.2", "vips": ["10.0.0.100/24"],
                       "stats": {"adverts_sent": 3, "adverts_received": 812, "bad_packets": {"bad_ttl": 4}}}],
        "trackers": {"vrrp_script": {"chk_nginx": {"state": "BAD", "weight": -60, "last_status": 1, "runs": 9,
                                                   "problem": None}},
                     "track_file": {"tf": {"path": "/run/prio", "value": 5, "weight": 2}},
                     "track_process": {"nginx": {"state": "DOWN", "count": 0, "quorum": 1}}},
        "lvs": {"error": None, "virtual_servers": [{"name": "[10.0.0.100]:tcp:80", "quorum_up": False,
                "real_servers": [{"address": "10.0.0.11", "port": 80, "alive": False, "weight": 1,
                                  "checkers": [{"kind": "HTTP_GET", "up": False}]}]}]},
    }
    lines = vrrpd.format_status_table(status).splitlines()
    assert "config /etc/vrrpd/vrrpd.conf" in lines[0]
    assert "FAILED (2 error(s), old config kept)" in lines[1]
    row = next(line.split() for line in lines if line.startswith("VI_1"))
    assert row == ["VI_1", "BACKUP", "eth0", "51", "150", "90", "10.0.0.2", "10.0.0.100/24", "3", "812", "4"]
    assert any(line.split()[:4] == ["chk_nginx", "script", "BAD", "-60"] for line in lines)
    assert any(line.split()[:3] == ["nginx", "process", "DOWN"] for line in lines)
    assert any(line.split() == ["[10.0.0.100]:tcp:80", "LOST", "10.0.0.11:80", "no", "1", "HTTP_GET:down"]
               for line in lines)


RELOAD_BASE = """\
vrrp_script chk_same {
    script "/bin/true"
    interval 0.2
}
vrrp_script chk_changed {
    script "/bin/true"
    interval 0.2
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    priority 100
    advert_int 0.1
    version 3
    virtual_ipaddress {
        10.9.0.1
    }
    track_script {
        chk_same
        chk_changed
    }
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 2
    advert_int 0.1
    version 3
    virtual_ipaddress {
        10.9.0.2
    }
}
"""


def test_reload_keeps_machines_and_unchanged_scripts_and_swaps_the_rest(loop, offline):
    config, diags = vrrpd.parse_config_text(RELOAD_BASE, "a.conf")
    assert not [d for d in diags if d.severity is vrrpd.Severity.ERROR]
    d, _kernel = offline(config, loop=loop)  # the real clock: the scripts run
    _spin(loop, lambda: all(r.result.good for r in d.tracking.scripts.values()), 5, "both scripts GOOD")
    vi1 = d.runtimes[0]
    machine, same_runner = vi1.machine, d.tracking.scripts["chk_same"]
    old_changed = d.tracking.scripts["chk_changed"]
    new_text = ("! a comment moves every line\n" + RELOAD_BASE.replace("priority 100", "priority 120")
                .replace("interval 0.2\n}\nvrrp_instance VI_1", "interval 0.3\n}\nvrrp_instance VI_1")
                .split("vrrp_instance VI_2")[0]
                + "vrrp_instance VI_3 {\n interface eth0\n virtual_router_id 3\n advert_int 0.1\n version 3\n"
                  " virtual_ipaddress {\n 10.9.0.3\n }\n}\n")
    new_config, diags = vrrpd.parse_config_text(new_text, "a.conf")
    assert not [x for x in diags if x.severity is vrrpd.Severity.ERROR]
    runs_before = same_runner.runs
    assert d.reload(new_config) is True
    assert [rt.inst.name for rt in d.runtimes] == ["VI_1", "VI_3"]
    assert d.runtimes[0] is vi1 and vi1.machine is machine and vi1.inst is new_config.vrrp_instances[0]
    assert machine.priority == 120 and machine.state == vrrpd.State.BACKUP
    # the unchanged script kept its object, its GOOD state and its schedule; the changed one starts afresh
    assert d.tracking.scripts["chk_same"] is same_runner and same_runner.result.good is True
    assert same_runner.tracking is d.tracking and same_runner.runs == runs_before
    fresh = d.tracking.scripts["chk_changed"]
    assert fresh is not old_changed and fresh.script.interval == 0.3 and old_changed.timer is None
    assert d.runtimes[1].machine.state == vrrpd.State.BACKUP
    _spin(loop, lambda: fresh.result.good, 5, "the changed script to run again")
    assert machine.effective_priority == 120
    d.tracking.stop()


def test_operator_dumps_are_written_atomically_and_stats_clear_zeroes_counters(tmp_path, offline):
    import json

    config, _ = vrrpd.parse_config_text(RELOAD_BASE, "a.conf")
    d, _kernel = offline(config)
    op = vrrpd.Operator(d, "a.conf", control_socket=None, dump_dir=str(tmp_path))
    rt = d.runtimes[0]
    rt.adverts_sent, rt.bad_packets = 12, {"bad_ttl": 3}
    (tmp_path / "elsewhere").write_text("precious")
    os.symlink(tmp_path / "elsewhere", tmp_path / "vrrpd.stats")  # a planted link is replaced, not followed
    assert op.dump("stats", clear=True) == str(tmp_path / "vrrpd.stats")
    text = (tmp_path / "vrrpd.stats").read_text()
    assert "    Sent: 12" in text and "    bad_ttl: 3" in text
    assert (tmp_path / "elsewhere").read_text() == "precious" and not (tmp_path / "vrrpd.stats").is_symlink()
    assert rt.adverts_sent == 0 and rt.bad_packets == {}
    op.dump("json")
    doc = json.loads((tmp_path / "vrrpd.json").read_text())
    assert [i["name"] for i in doc["instances"]] == ["VI_1", "VI_2"] and doc["config_file"] == "a.conf"
    op.dump("data")
    assert " VRRP Instance = VI_2" in (tmp_path / "vrrpd.data").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "vrrpd.data", "vrrpd.json", "vrrpd.stats"]


def test_a_bad_config_or_log_facility_fails_before_forking(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("vrrp_instance VI_1 {\n    priority 999\n}\n")
    result = sh([PYTHON, VRRPD, "-f", str(conf), "-p", str(tmp_path / "p.pid")], check=False)
    assert result.returncode == 1 and "bad.conf:2" in result.stderr and not (tmp_path / "p.pid").exists()
    result = sh([PYTHON, VRRPD, "-f", str(conf), "-S", "local9"], check=False)
    assert result.returncode == 1 and "unknown log facility 'local9'" in result.stderr


SYSLOG_PROBE = r"""
import os, socket, stat, subprocess, sys, time
# a private /dev (this process runs in its own mount namespace) with a syslog socket we read
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/dev"], check=True)
os.mknod("/dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
os.chmod("/dev/null", 0o666)
sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sink.bind("/dev/log")
sink.settimeout(1.0)
subprocess.run(sys.argv[1:], check=True, timeout=60)  # starts the daemon; returns once it has started
deadline, seen = time.monotonic() + 15, []
while time.monotonic() < deadline and not any(b"Entering MASTER STATE" in m for m in seen):
    try:
        seen.append(sink.recv(65536))
    except socket.timeout:
        pass
for message in seen:
    print(message.decode(errors="replace").rstrip("\0"))
"""


def test_daemon_logs_to_syslog_with_the_facility_of_S_and_keepalived_texts(lab, tmp_path):
    require(shutil.which("unshare") is not None, "needs unshare")
    ns = lab.host("a", f"{LAB_NET}.1/24")
    conf = tmp_path / "a.conf"
    conf.write_text(_conf(priority=150, state="MASTER"))
    pid_path = tmp_path / "vrrpd.pid"
    probe = tmp_path / "probe.py"
    probe.write_text(SYSLOG_PROBE)
    daemon = ["ip", "netns", "exec", ns, PYTHON, VRRPD, "-f", str(conf), "-S", "local3", "-p", str(pid_path),
              "--control-socket", str(tmp_path / "a.sock")]
    out = sh(["unshare", "--mount", "--propagation", "private", PYTHON, str(probe)] + daemon, timeout=90)
    try:
        messages = out.stdout.splitlines()
        local3_info = f"<{19 * 8 + 6}>"  # LOG_LOCAL3 | LOG_INFO
        pid = int(pid_path.read_text())
        assert f"{local3_info}vrrpd[{pid}]: Starting vrrpd v{vrrpd.__version__}" in messages, messages
        assert f"{local3_info}vrrpd[{pid}]: (VI_1) Entering MASTER STATE" in messages, messages
    finally:
        if pid_path.exists():
            os.kill(int(pid_path.read_text()), signal.SIGTERM)


# -- G3. Transition reasons, --events, --status in words, metrics (issue 16) --------------------

EVENTS_CONF = """\
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    priority 100
    advert_int 0.1
    version 3
    track_interface {
        eth1 weight -30
    }
    virtual_ipaddress {
        10.9.0.1
    }
}
"""


class _EventReader:
    """An --events subscriber on a daemon's control socket, read without blocking while the loop runs."""

    def __init__(self, path, request=b"events\n"):
        import socket as _socket

        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.sendall(request)
        self.sock.setblocking(False)
        self.buf = b""
        self.events: list = []

    def poll(self):
        import json

        try:
            self.buf += self.sock.recv(1 << 20)
        except BlockingIOError:
            pass
        *lines, self.buf = self.buf.split(b"\n")
        self.events += [json.loads(line) for line in lines if line.strip()]
        return self.events


class _NullRtnl:
    """VIPs go nowhere."""

    def add_address(self, index, vip):
        pass

    def del_address(self, index, vip):
        pass


def _events_daemon(tmp_path, monkeypatch, loop):
    config, diags = vrrpd.parse_config_text(EVENTS_CONF, "a.conf")
    assert not [x for x in diags if x.severity is vrrpd.Severity.ERROR]
    d = _offline_daemon(config, monkeypatch, loop)
    d.links[8] = vrrpd.LinkInfo(8, "eth1", vrrpd.IFF_UP | vrrpd.IFF_RUNNING)
    d.rtnl = _NullRtnl()
    for rt in d.runtimes:
        rt.vsock = None  # adverts go nowhere
    op = vrrpd.Operator(d, "a.conf", control_socket=str(tmp_path / "ctl.sock"), dump_dir=str(tmp_path))
    op._open_control()
    return d, op


def test_every_transition_is_recorded_with_its_reason_and_streamed_to_events_followers(tmp_path, loop, monkeypatch):
    d, op = _events_daemon(tmp_path, monkeypatch, loop)
    rt = d.runtimes[0]
    d._start_machines()
    follower = _EventReader(op.control.path)
    # a new follower first gets the recent transitions, then the live ones
    _spin(loop, lambda: len(follower.poll()) >= 1, 5, "the start-up transition")
    assert follower.events[0]["reason"] == "not-master" and follower.events[0]["to"] == "BACKUP"
    _spin(loop, lambda: len(follower.poll()) >= 2, 5, "the takeover")
    took = follower.events[1]
    assert (took["from"], took["to"], took["reason"]) == ("BACKUP", "MASTER", "no-response")
    # a tracked interface goes down: the priority drops, and the next higher advert wins, naming the cause
    d.links[8] = vrrpd.LinkInfo(8, "eth1", 0)
    d._reevaluate()
    _spin(loop, lambda: len(follower.poll()) >= 3, 5, "the priority change")
    assert follower.events[2]["type"] == "priority" and (follower.events[2]["from"], follower.events[2]["to"]) == (
        100, 70) and follower.events[2]["detail"] == "track_interface eth1 -30"
    d._apply(rt, rt.machine.on_advert(loop.time(), _adv(90, vrid=1, advert_int=0.1, addresses=("10.9.0.1",)),
                                      IP4("10.9.0.2")))
    _spin(loop, lambda: len(follower.poll()) >= 4, 5, "the step-down")
    down = follower.events[3]
    assert (down["from"], down["to"], down["reason"]) == ("MASTER", "BACKUP", "priority")
    assert "advert from 10.9.0.2 with priority 90, ours 70" in down["detail"]
    assert "track_interface eth1 -30" in down["detail"]
    line = vrrpd.format_event(down)
    assert "VI_1 MASTER -> BACKUP (priority: advert from 10.9.0.2" in line and line.endswith("priority 70")
    # --status and --json: the last transitions, whom the BACKUP follows, what each tracker adds
    status = op.status()
    inst = status["instances"][0]
    assert [t["reason"] for t in inst["recent_transitions"]] == ["not-master", "no-response", "priority"]
    assert inst["master"]["address"] == "10.9.0.2" and inst["master"]["priority"] == 90
    assert 0 <= inst["master"]["last_advert_ago"] < 5 and 0 < inst["master"]["takeover_in"] <= (
        inst["master"]["master_down_interval"])
    assert {"kind": "track_interface", "name": "eth1", "adds": -30, "fault": False} in inst["trackers"]
    table = vrrpd.format_status_table(status)
    assert "VI_1: master 10.9.0.2 at priority 90, last advert" in table and "takes over in" in table
    assert "VI_1: priority 70 = 100 base; track_interface eth1 -30" in table
    assert "BACKUP -> MASTER (no-response: no advert heard)" in table
    # the history is bounded
    for n in range(vrrpd.TRANSITION_HISTORY + 5):
        d._apply(rt, rt.machine.set_fault(loop.time(), n % 2 == 0))
    assert len(rt.history) == vrrpd.TRANSITION_HISTORY and rt.history[-1]["reason"] == "fault"
    assert "interface" not in rt.history[-1]["detail"] or "eth" in rt.history[-1]["detail"]
    op.close()


def test_a_fault_transition_names_the_interface_or_tracker(tmp_path, loop, monkeypatch):
    conf = EVENTS_CONF.replace("eth1 weight -30", "eth1")
    config, _ = vrrpd.parse_config_text(conf, "a.conf")
    d = _offline_daemon(config, monkeypatch, loop)
    d.links[8] = vrrpd.LinkInfo(8, "eth1", vrrpd.IFF_UP | vrrpd.IFF_RUNNING)
    d.rtnl = _NullRtnl()
    for rt in d.runtimes:
        rt.vsock = None  # adverts go nowhere
    d._start_machines()
    d.links[8] = vrrpd.LinkInfo(8, "eth1", 0)
    d._reevaluate()
    last = d.runtimes[0].history[-1]
    assert (last["to"], last["reason"], last["detail"]) == ("FAULT", "fault", "track_interface eth1 FAULT")
    d.links[7] = vrrpd.LinkInfo(7, "eth0", 0)
    d.links[8] = vrrpd.LinkInfo(8, "eth1", vrrpd.IFF_UP | vrrpd.IFF_RUNNING)
    d._reevaluate()
    assert d.runtimes[0].machine.state == vrrpd.State.FAULT  # still: now its own interface
    assert d._causes(d.runtimes[0], lambda delta, fault: fault) == "interface eth0 down"
    assert "VI_1: FAULT because of interface eth0 down" in vrrpd.format_status_table(d.status())


def test_control_socket_drops_a_follower_that_does_not_read_and_still_answers_old_clients(tmp_path, loop,
                                                                                           monkeypatch):
    import json
    import socket as _socket

    d, op = _events_daemon(tmp_path, monkeypatch, loop)
    slow = _EventReader(op.control.path)
    _spin(loop, lambda: any(c["kind"] == "events" for c in op.control.clients.values()), 5, "the subscription")
    for _ in range(200):
        d._publish({"type": "noise", "time": time.time(), "instance": "VI_1", "detail": "x" * 10000})
    assert not op.control.clients, "a follower that reads nothing is dropped, not buffered without bound"
    slow.sock.close()
    # a client from before requests existed sends nothing and still gets the status
    old = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    old.connect(op.control.path)
    got = _read_until_closed(loop, old, 5, "the status for a silent client")
    assert json.loads(got)["instances"][0]["name"] == "VI_1"
    old.close()
    # at most max_clients at once: the oldest makes room
    crowd = []
    for _ in range(op.control.max_clients + 5):
        crowd.append(_EventReader(op.control.path))
        loop.run_once(loop.time() + 0.01)  # the listen backlog is short: the loop accepts as they come
    _spin(loop, lambda: len(op.control.clients) == op.control.max_clients and all(
        c["kind"] == "events" for c in op.control.clients.values()), 5, "the crowd to settle")
    for c in crowd:
        c.sock.close()
    op.close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_exposition(text):
    """Prometheus text format -> ({name: type}, [(name, {label: value}, float)]), strict about what it reads."""
    types, samples = {}, []
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name not in types and kind in ("counter", "gauge"), line
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, body, value = m.groups()
        labels, pos = {}, 0
        for lm in _LABEL.finditer(body or ""):
            assert lm.start() == pos, line
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), lm.group(2))
            pos = lm.end()
        assert pos == len(body or ""), line
        assert name in types, f"{name} has no TYPE line before it"
        samples.append((name, labels, float(value)))
    return types, samples


def _metrics_status():
    return {
        "version": "9.9", "instances": [
            {"name": "VI_1", "state": "MASTER", "interface": "eth0", "vrid": 51, "priority": 100,
             "effective_priority": 80, "master": None, "garp_delay": 5.0,
             "vip_details": [{"address": "10.0.0.100/24", "dev": "eth0", "excluded": False},
                             {"address": "10.0.0.101/32", "dev": "eth1", "excluded": False},
                             {"address": "10.0.0.200/32", "dev": "eth0", "excluded": True}],
             "trackers": [{"kind": "vrrp_script", "name": 'chk "web"', "adds": -20, "fault": False}],
             "recent_transitions": [
                 {"type": "transition", "time": 1000.5, "instance": "VI_1", "from": "INIT", "to": "BACKUP",
                  "reason": "not-master", "detail": "", "priority": 100},
                 {"type": "transition", "time": 1001.5, "instance": "VI_1", "from": "BACKUP", "to": "MASTER",
                  "reason": "no-response", "detail": "x", "priority": 100}],
             "stats": {"adverts_sent": 7, "adverts_received": 3, "released_master": 1,
                       "entered": {"MASTER": 2, "BACKUP": 2}, "priority_zero_sent": 1, "priority_zero_received": 4,
                       "bad_packets": {"bad_ttl": 5, "truncated": 1, "bad_length": 2, "auth_failure": 6,
                                       "auth_type_mismatch": 8},
                       "by_reason": [{"state": "MASTER", "reason": "no-response", "count": 2}]}},
            {"name": "VI_2", "state": "BACKUP", "interface": "eth0", "vrid": 52, "priority": 90,
             "effective_priority": 90, "vip_details": [], "stats": {},
             "master": {"address": "10.0.0.1", "priority": 150, "last_advert_ago": 0.1, "takeover_in": 0.25}}],
        "trackers": {"vrrp_script": {'chk "web"': {"state": "BAD", "running": True, "runs": 12,
                                                   "last_duration": 0.02},
                                     "chk_init": {"state": "INIT", "running": False, "runs": 0}}},
        "lvs": {"virtual_servers": [{"name": "10.0.0.100:80", "quorum_up": True, "real_servers": [
            {"address": "10.0.1.1", "port": 80, "alive": True, "weight": 3, "checkers": [
                {"kind": "TCP_CHECK", "up": True, "latency": 0.004, "ok_total": 9, "failed_total": 1}]}]}]},
    }


def test_metrics_exposition_has_keepalived_exporter_names_and_labels_and_parses_back():
    types, samples = parse_exposition(vrrpd.format_metrics(_metrics_status()))

    def value(metric, **labels):
        found = [v for n, ls, v in samples if n == metric and all(ls.get(k) == str(x) for k, x in labels.items())]
        assert len(found) == 1, (metric, labels, found)
        return found[0]

    common = {"iname": "VI_1", "intf": "eth0", "vrid": "51"}
    assert value("keepalived_up") == 1 and types["keepalived_up"] == "gauge"
    # keepalived-exporter: one keepalived_vrrp_state per VIP, intf the VIP's device; MASTER is 2, BACKUP 1
    assert value("keepalived_vrrp_state", iname="VI_1", intf="eth0", vrid=51, ip_address="10.0.0.100/24") == 2
    assert value("keepalived_vrrp_state", iname="VI_1", intf="eth1", vrid=51, ip_address="10.0.0.101/32") == 2
    assert value("keepalived_vrrp_excluded_state", ip_address="10.0.0.200/32") == 2
    assert value("keepalived_vrrp_state", iname="VI_2", ip_address="") == 1  # no VIP: one sample, as the exporter
    for name, expected in (("keepalived_advertisements_received_total", 3), ("keepalived_advertisements_sent_total", 7),
                           ("keepalived_become_master_total", 2), ("keepalived_release_master_total", 1),
                           ("keepalived_ip_ttl_errors_total", 5), ("keepalived_packet_length_errors_total", 3),
                           ("keepalived_authentication_failure_total", 6),
                           ("keepalived_advertisements_interval_errors_total", 0),
                           ("keepalived_invalid_type_received_total", 0), ("keepalived_address_list_errors_total", 0),
                           ("keepalived_authentication_invalid_total", 0),
                           ("keepalived_authentication_mismatch_total", 8),
                           ("keepalived_priority_zero_received_total", 4), ("keepalived_priority_zero_sent_total", 1),
                           ("keepalived_gratuitous_arp_delay_total", 5)):
        assert value(name, **common) == expected, name
        assert types[name] == "counter" and set(next(ls for n, ls, _ in samples if n == name)) == {
            "iname", "intf", "vrid"}, name
    assert value("keepalived_script_status", name='chk "web"') == 0  # BAD 0, GOOD 1; INIT is not exported
    assert not [1 for n, ls, _ in samples if n == "keepalived_script_status" and ls["name"] == "chk_init"]
    assert value("keepalived_script_state", name='chk "web"') == 1  # running
    # vrrpd's own
    assert value("vrrpd_transitions_total", state="MASTER", reason="no-response", **common) == 2
    assert value("vrrpd_recent_transition_timestamp_seconds", index=0, reason="no-response", to="MASTER") == 1001.5
    assert value("vrrpd_bad_packets_total", reason="bad_ttl", **common) == 5
    assert value("vrrpd_effective_priority", **common) == 80
    assert value("vrrpd_tracker_priority_delta", iname="VI_1", kind="vrrp_script", name='chk "web"') == -20
    assert value("vrrpd_backup_takeover_seconds", iname="VI_2") == 0.25
    assert value("vrrpd_script_last_run_seconds", name='chk "web"') == 0.02
    assert value("vrrpd_real_server_weight", real_server="10.0.1.1:80") == 3
    assert value("vrrpd_checker_latency_seconds", checker="TCP_CHECK") == 0.004
    assert value("vrrpd_checker_results_total", result="failed") == 1


def test_metrics_exposition_passes_promtool(tmp_path):
    require(shutil.which("promtool") is not None, "needs promtool (Debian's prometheus package)")
    text = vrrpd.format_metrics(_metrics_status())
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "error" not in out.stdout + out.stderr, (out.stdout, out.stderr)


def _read_until_closed(loop, sock, timeout: float, what: str) -> bytes:
    """Everything `sock` receives until its peer closes it, while `loop` runs."""
    sock.setblocking(False)
    got = bytearray()

    def closed():
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return False
        got.extend(chunk)
        return not chunk

    _spin(loop, closed, timeout, what)
    return bytes(got)


def _http(address, request=b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", loop=None, timeout=5):
    """Send `request` to the metrics server while `loop` runs; the whole reply as bytes."""
    import socket as _socket

    client = _socket.create_connection(address, timeout=timeout)
    client.sendall(request)
    reply = _read_until_closed(loop, client, timeout, "the reply")
    client.close()
    return bytes(reply)


def test_metrics_server_answers_get_metrics_and_refuses_the_rest(loop):
    server = vrrpd.MetricsServer(loop, "127.0.0.1:0", lambda: vrrpd.format_metrics(_metrics_status()))
    try:
        reply = _http(server.address, loop=loop)
        head, body = reply.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 OK") and b"text/plain; version=0.0.4" in head
        assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) == len(body)
        parse_exposition(body.decode())
        assert _http(server.address, b"GET /nope HTTP/1.1\r\n\r\n", loop).startswith(b"HTTP/1.1 404")
        assert _http(server.address, b"POST /metrics HTTP/1.1\r\n\r\n", loop).startswith(b"HTTP/1.1 405")
        assert _http(server.address, b"garbage\r\n\r\n", loop).startswith(b"HTTP/1.1 400")
        big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (server.max_request + 10)
        assert _http(server.address, big, loop).startswith(b"HTTP/1.1 431")
        assert server.scrapes == 1 and not server.clients
    finally:
        server.close()


def test_metrics_server_bounds_idle_slow_and_many_connections(loop):
    import socket as _socket

    server = vrrpd.MetricsServer(loop, "127.0.0.1:0", lambda: "x 1\n")
    server.idle_timeout = 0.3
    try:
        silent = _socket.create_connection(server.address)
        dribble = _socket.create_connection(server.address)
        _spin(loop, lambda: len(server.clients) == 2, 5, "both accepted")
        start = time.monotonic()
        while time.monotonic() - start < 0.6:  # 1 byte every 0.1 s does not keep it open past idle_timeout
            try:
                dribble.send(b"G")
            except OSError:
                break
            loop.run_once(loop.time() + 0.1)
        _spin(loop, lambda: not server.clients, 5, "the idle and the slow connection to be closed")
        crowd = []
        for _ in range(server.max_clients * 4):
            crowd.append(_socket.create_connection(server.address))
            loop.run_once(loop.time())
        _spin(loop, lambda: server.evicted >= server.max_clients * 3 - 2, 5, "the oldest to make room")
        assert len(server.clients) <= server.max_clients
        # a scraper still gets its answer among them
        assert _http(server.address, loop=loop).endswith(b"\r\n\r\nx 1\n")
        for sock in crowd + [silent, dribble]:
            sock.close()
    finally:
        server.close()


def test_event_lines_are_one_line_json_also_without_the_json_module(monkeypatch):
    import json

    event = {"type": "transition", "time": 1.5, "instance": 'VI "1"', "detail": "a\nb", "priority": 100,
             "from": None, "ok": True}
    assert json.loads(vrrpd.json_line(event)) == event
    monkeypatch.setitem(sys.modules, "json", None)  # python3-minimal has no json module
    line = vrrpd.json_line(event)
    monkeypatch.undo()
    assert "\n" not in line and json.loads(line) == event


def test_events_without_a_daemon_says_so_and_exits_3(tmp_path, capsys):
    assert vrrpd.main(["--events", "--control-socket", str(tmp_path / "none.sock")]) == vrrpd.EXIT_NOT_RUNNING
    assert "no running vrrpd" in capsys.readouterr().err


def test_metrics_listen_keyword_and_metrics_option():
    config, diags = parse_ok("global_defs {\n    metrics_listen 127.0.0.1:9650\n}\n")
    assert config.global_defs.metrics_listen == "127.0.0.1:9650"
    assert vrrpd.parse_listen("[::1]:9650") == ("::1", 9650)
    _, diags = vrrpd.parse_config_text("global_defs {\n    metrics_listen 127.0.0.1\n}\n", "m.conf")
    assert messages(diags) == ["m.conf:2: error: metrics_listen: '127.0.0.1' is not ADDRESS:PORT"]
    assert vrrpd.build_arg_parser().parse_args(["--metrics", "127.0.0.1:1"]).metrics == "127.0.0.1:1"


_LINE_QUEUES: dict = {}


def _read_line_until(proc, predicate, timeout=10.0):
    """Lines of proc's stdout until one satisfies predicate (returned); fail after timeout. (A thread reads the
    pipe: select() on a buffered text file misses the lines already in its buffer.)"""
    import queue
    import threading

    lines = _LINE_QUEUES.get(proc.pid)
    if lines is None:
        lines = _LINE_QUEUES[proc.pid] = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    deadline, seen = time.monotonic() + timeout, []
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None or time.monotonic() > deadline:
            raise AssertionError(f"no such line within {timeout} s; got {seen}")
        seen.append(line)
        if predicate(line):
            return line


def test_lab_events_follow_a_failover_and_say_why(lab, tmp_path):
    import json

    ns_a, ns_b = lab.host("a", f"{LAB_NET}.1/24"), lab.host("b", f"{LAB_NET}.2/24")
    a = _Node(lab, ns_a, tmp_path, "A", _conf(priority=150, state="MASTER"), control=True, wait=False)
    b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=100), control=True, wait=False)
    _wait_holders(lab, [a, b], ["A"], timeout=10)
    wait_for(lambda: os.path.exists(b.ctl), 5, what="B's control socket")
    wait_for(lambda: (b.instance().get("master") or {}).get("priority") == 150, 5, what="B to follow A")
    human = subprocess.Popen([PYTHON, VRRPD, "--events", "--control-socket", b.ctl], stdout=subprocess.PIPE,
                             text=True)
    as_json = subprocess.Popen([PYTHON, VRRPD, "--events", "--json", "--control-socket", b.ctl],
                               stdout=subprocess.PIPE, text=True)
    lab.processes += [human, as_json]
    # the recent history comes first: B started as BACKUP
    _read_line_until(human, lambda line: "VI_1 INIT -> BACKUP (not-master" in line)
    assert json.loads(_read_line_until(as_json, lambda line: True))["reason"] == "not-master"
    status = sh([PYTHON, VRRPD, "--status", "--control-socket", b.ctl]).stdout
    assert f"VI_1: master {LAB_NET}.1 at priority 150, last advert" in status, status
    history = len(b.instance()["recent_transitions"])
    a.kill()
    line = _read_line_until(human, lambda line: "no advert from master" in line)
    assert f"VI_1 BACKUP -> MASTER (no-response: no advert from master {LAB_NET}.1 for" in line, line
    event = json.loads(_read_line_until(as_json, lambda line: "no advert from master" in line))
    assert (event["from"], event["to"], event["reason"]) == ("BACKUP", "MASTER", "no-response")
    # the silence that made B take over is about one master-down interval (3 x 0.1 + skew)
    silence = float(re.search(r"for ([0-9.]+) s", event["detail"]).group(1))
    assert 0.3 <= silence < 1.5, event
    assert [t["reason"] for t in b.instance()["recent_transitions"]][history:] == ["no-response"]
    b.stop()
    _read_line_until(human, lambda line: "MASTER -> STOP (shutdown)" in line)
    assert human.wait(timeout=5) == vrrpd.EXIT_NOT_RUNNING  # the stream ends with the daemon


def test_runtime_files_are_named_per_instance_and_namespace_as_keepalived_names_them():
    g = vrrpd.GlobalDefs()
    assert vrrpd.runtime_paths(g) == {"pid": "/run/vrrpd.pid", "control": "/run/vrrpd/vrrpd.sock", "dump_suffix": ""}
    g.use_pid_dir = True
    assert vrrpd.runtime_paths(g)["pid"] == "/run/vrrpd/vrrpd.pid"
    config, _ = parse_ok("instance blue\n")
    assert vrrpd.runtime_paths(config.global_defs) == {
        "pid": "/run/vrrpd/vrrpd_blue.pid", "control": "/run/vrrpd/vrrpd_blue.sock", "dump_suffix": ".blue"}
    config, _ = parse_ok("net_namespace red\nglobal_defs {\n    instance blue\n}\n")
    assert vrrpd.runtime_paths(config.global_defs) == {
        "pid": "/run/vrrpd/red/vrrpd_blue.pid", "control": "/run/vrrpd/red/vrrpd_blue.sock", "dump_suffix": ".red_blue"}
    _, diags = vrrpd.parse_config_text("instance ../x\n", "n.conf")
    assert messages(diags) == ["n.conf:1: error: instance: '../x' cannot name a file (letters, digits, '_', '-', '.')"]


def test_dump_files_follow_state_dump_file_and_the_instance_name(tmp_path):
    config, _ = parse_ok(f"instance blue\nglobal_defs {{\n    state_dump_file {tmp_path}/sub/ka.dump\n}}\n" + MINIMAL)
    op = vrrpd.Operator(vrrpd.Daemon(config), "x.conf", control_socket=None, dump_dir=str(tmp_path))
    assert op.dump_path("data") == f"{tmp_path}/sub/ka.blue.dump"
    assert op.dump_path("stats") == f"{tmp_path}/vrrpd.blue.stats"
    config.global_defs.state_dump_file = f"{tmp_path}/d/"
    assert op.dump_path("data") == f"{tmp_path}/d/vrrpd.blue.data"
    config.global_defs.state_dump_file, config.global_defs.instance_name = "mine.txt", None
    assert op.dump_path("data") == f"{tmp_path}/mine.txt" and op.dump_path("json") == f"{tmp_path}/vrrpd.json"
    config.global_defs.stats_dump_file, config.global_defs.json_dump_file = "/var/x/s.txt", "/var/y/"
    assert op.dump_path("stats") == "/var/x/s.txt" and op.dump_path("json") == "/var/y/vrrpd.json"


def test_syslog_ident_names_the_namespace_and_instance(tmp_path):
    import socket

    path = str(tmp_path / "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    saved = vrrpd.log.outputs, vrrpd.log.level
    vrrpd.log.set_outputs([vrrpd.SyslogOutput(path, facility=3)])
    try:
        vrrpd.set_syslog_ident(vrrpd.GlobalDefs(instance_name="blue", net_namespace="red"))
        vrrpd.log.warning("hello")
        assert server.recv(4096) == f"<28>vrrpd_red_blue[{os.getpid()}]: hello\0".encode()
    finally:
        vrrpd.log.set_outputs(*saved)
        server.close()


def test_lab_two_daemons_on_one_host_and_one_in_a_named_namespace(lab, tmp_path):
    """`instance NAME` gives each daemon its own pid file, control socket and dump files; --status/--json reach
    the one they are pointed at (by -f or -p); `net_namespace NAME` runs a daemon started outside inside it."""
    import json

    ns = lab.host("a", f"{LAB_NET}.1/24")
    names = [f"x{lab.tag}", f"y{lab.tag}"]
    nodes = []
    for n, (name, vrid, vip) in enumerate(zip(names, (51, 52), (VIP, f"{LAB_NET}.101"))):
        text = f"instance {name}\n" + _conf(name=f"VI_{n}", vrid=vrid, priority=150, state="MASTER",
                                            vips=(f"{vip}/24",))
        nodes.append(_Node(lab, ns, tmp_path, name, text))
    for vip in (VIP, f"{LAB_NET}.101"):
        wait_for(lambda vip=vip: lab.has_address(ns, vip), 6, what=f"{vip} on its daemon")
    for n, (node, name) in enumerate(zip(nodes, names)):
        pid_file = Path(f"/run/vrrpd/vrrpd_{name}.pid")
        assert wait_for(pid_file.exists, 2) and pid_file.read_text().strip().isdigit()
        assert Path(f"/run/vrrpd/vrrpd_{name}.sock").exists()
        doc = json.loads(sh([PYTHON, VRRPD, "--json", "-f", str(node.conf)]).stdout)
        assert [i["name"] for i in doc["instances"]] == [f"VI_{n}"] and doc["instances"][0]["state"] == "MASTER"
        doc = json.loads(sh([PYTHON, VRRPD, "--json", "-p", str(pid_file)]).stdout)
        assert [i["name"] for i in doc["instances"]] == [f"VI_{n}"]
        assert f"VI_{n}" in sh([PYTHON, VRRPD, "--status", "-f", str(node.conf)]).stdout
    # the third: started in the host's namespace, runs in the lab's, its files under /run/vrrpd/NAMESPACE/
    other = lab.host("b", f"{LAB_NET}.2/24")
    name = f"z{lab.tag}"
    conf = tmp_path / "z.conf"
    conf.write_text(f"net_namespace {other}\ninstance {name}\n" + _conf(name="VI_Z", vrid=53, priority=150,
                                                                       state="MASTER", vips=(f"{LAB_NET}.102/24",)))
    log_path = tmp_path / "z.log"
    with open(log_path, "w") as logf:
        proc = subprocess.Popen([PYTHON, VRRPD, "-n", "-l", "-D", "-f", str(conf), "--dump-dir", str(tmp_path)],
                                stdout=logf, stderr=subprocess.STDOUT)
    lab.processes.append(proc)
    wait_for(lambda: lab.has_address(other, f"{LAB_NET}.102"), 8, what="VIP inside the named namespace")
    assert "Running in network namespace" in log_path.read_text()
    assert Path(f"/run/vrrpd/{other}/vrrpd_{name}.pid").read_text().strip() == str(proc.pid)
    doc = json.loads(sh([PYTHON, VRRPD, "--json", "-f", str(conf)]).stdout)
    assert [i["name"] for i in doc["instances"]] == ["VI_Z"]
    proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: (tmp_path / f"vrrpd.{other}_{name}.data").exists(), 3, what="dump file named per instance")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert not Path(f"/run/vrrpd/{other}/vrrpd_{name}.pid").exists()
    for node, name in zip(nodes, names):
        node.stop()
        assert not Path(f"/run/vrrpd/vrrpd_{name}.pid").exists()


def test_lab_umask_applies_to_the_pid_file(lab, tmp_path):
    import stat

    ns = lab.host("a", f"{LAB_NET}.1/24")
    name = f"u{lab.tag}"
    node = _Node(lab, ns, tmp_path, name, f"instance {name}\n" + _conf(
        priority=150, state="MASTER", global_extra="    umask IRWXG|IRWXO\n"))
    pid_file = Path(f"/run/vrrpd/vrrpd_{name}.pid")
    wait_for(pid_file.exists, 5, what="the pid file")
    assert stat.S_IMODE(pid_file.stat().st_mode) == 0o600  # 0644 & ~077
    node.stop()


def test_net_namespace_that_does_not_exist_is_fatal_and_nothing_runs_outside(tmp_path):
    require(os.geteuid() == 0, "needs root for setns")
    conf = tmp_path / "n.conf"
    conf.write_text("net_namespace vrrpd-no-such-ns\n" + _conf(vips=("10.255.255.1/32",)))
    result = sh([PYTHON, VRRPD, "-n", "-l", "-f", str(conf)], check=False, timeout=30)
    assert result.returncode == 1 and "Unable to set network namespace vrrpd-no-such-ns - exiting" in result.stderr


# --------------------------------------------------------------------------------------------
# G2. A minimal host's Python: Debian's python3-minimal (the files of libpython3.11-minimal)
# --------------------------------------------------------------------------------------------

MINIMAL_PYTHON = "/usr/bin/python3.11"
MINIMAL_PACKAGE = "libpython3.11-minimal"


def build_minimal_python_home(home: Path) -> Path:
    """A PYTHONHOME holding only the standard library files of libpython3.11-minimal (linked, same layout),
    so /usr/bin/python3.11 run with it sees what a host with only python3-minimal has."""
    listing = sh(["dpkg", "-L", MINIMAL_PACKAGE]).stdout.split()
    base = "/usr/lib/python3.11/"
    for path in listing:
        if not path.startswith(base) or not os.path.isfile(path):
            continue
        target = home / "lib" / "python3.11" / path[len(base):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
        cached = Path(path).parent / "__pycache__" / (Path(path).stem + ".cpython-311.pyc")
        if path.endswith(".py") and cached.exists():  # the installed byte code: a faster test, same modules
            (target.parent / "__pycache__").mkdir(exist_ok=True)
            (target.parent / "__pycache__" / cached.name).symlink_to(cached)
    return home


@pytest.fixture(scope="session")
def minimal_python(tmp_path_factory):
    """(argv prefix, environment) that run vrrpd on a python3-minimal standard library."""
    require(os.path.exists(MINIMAL_PYTHON) and shutil.which("dpkg") is not None
            and sh(["dpkg", "-s", MINIMAL_PACKAGE], check=False).returncode == 0,
            f"needs Debian's {MINIMAL_PYTHON} and {MINIMAL_PACKAGE}")
    home = build_minimal_python_home(tmp_path_factory.mktemp("python3-minimal"))
    env = dict(os.environ, PYTHONHOME=str(home), PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    return [MINIMAL_PYTHON], env


def test_minimal_python_tree_hides_the_rest_of_the_standard_library(minimal_python):
    python, env = minimal_python
    probe = "import importlib.util as u; print(' '.join(m for m in %r if u.find_spec(m) is None))"
    wanted = ("dataclasses", "difflib", "hmac", "json", "shutil", "queue", "smtplib", "ctypes", "socket", "enum")
    missing = sh([*python, "-c", probe % (wanted,)], env=env).stdout.split()
    assert missing == ["dataclasses", "difflib", "hmac", "json", "shutil", "queue", "smtplib", "ctypes"], missing


# shutil is missing there too, but upstream argparse imports it (Debian's does not): the real-subset tests cover it
NOT_IN_PYTHON3_MINIMAL = ("dataclasses", "difflib", "hmac", "json", "queue", "smtplib", "ctypes", "logging.handlers",
                          "_json", "_queue")


def test_check_with_the_modules_python3_minimal_lacks_blocked():
    # runs anywhere: the same modules made unimportable in this interpreter (the lab test uses the real subset)
    code = (f"import sys\nfor m in {NOT_IN_PYTHON3_MINIMAL!r}:\n    sys.modules[m] = None\n"
            f"sys.path.insert(0, {str(HERE)!r})\nimport vrrpd\n"
            "assert vrrpd.dataclass is vrrpd.small_dataclass\n"
            f"sys.exit(vrrpd.main(['--check', '-f', {str(HERE / 'vrrpd.conf.example')!r}]))\n")
    result = sh([PYTHON, "-c", code], check=False, env=dict(os.environ, VRRPD_NO_REEXEC="1"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smtp_server needs the Python module(s) queue, hmac, smtplib" in result.stdout + result.stderr


LOADED_WHEN_USED = ("typing", "subprocess", "random", "argparse", "logging", "threading", "glob", "traceback")


def test_the_daemon_module_loads_without_the_modules_it_does_not_need():
    """What costs memory and is not needed to run VRRP stays out: typing (the annotations are never evaluated),
    subprocess and random (loaded for scripts, checkers and BFD), argparse (unloaded once the options are read),
    logging (vrrpd's Logger writes the lines itself), threading (the SMTP worker), glob (include files)."""
    code = (f"import sys\nsys.path.insert(0, {str(HERE)!r})\nimport vrrpd\n"
            "args = vrrpd._forget_argparse(vrrpd.build_arg_parser().parse_args(['-n', '-f', 'x.conf']))\n"
            "assert args.dont_fork and args.config == 'x.conf', vars(args)\n"
            "vrrpd.setup_logging(console=True)\n"
            "vrrpd.log.info('one line')\n"
            f"print(' '.join(m for m in {LOADED_WHEN_USED!r} if m in sys.modules))\n"
            "vrrpd.subprocess.DEVNULL, vrrpd.random.random, vrrpd.threading.Event, vrrpd.glob.glob\n"
            "print(' '.join(m for m in ('subprocess', 'random', 'threading', 'glob') if m in sys.modules))\n")
    result = sh([PYTHON, "-S", "-c", code], env=dict(os.environ, VRRPD_NO_REEXEC="1"))
    assert result.stdout.splitlines() == ["", "subprocess random threading glob"], result.stdout
    assert result.stderr.endswith(": one line\n"), result.stderr


def test_logger_writes_keepalived_s_formats_and_tracebacks_without_logging(monkeypatch):
    import io

    console, plain, in_file = io.StringIO(), io.StringIO(), io.StringIO()
    outputs = [vrrpd.LogStream(console, vrrpd.console_stamp), vrrpd.LogStream(plain),
               vrrpd.LogStream(in_file, vrrpd.log_file_stamp)]
    logger = vrrpd.Logger("vrrpd-test")
    logger.set_outputs(outputs)
    monkeypatch.setattr(time, "time", lambda: time.mktime((2026, 12, 1, 13, 58, 52, 0, 0, -1)) + 0.123456789)
    logger.info("(%s) Entering %s STATE", "VI_1", "MASTER")
    logger.debug("a detail line")  # -D only
    logger.warning("100% sure")  # no arguments: no formatting
    logger.error("%d of %s", "x")  # a bad format loses nothing and raises nothing
    try:
        {}["missing"]
    except KeyError:
        logger.exception("internal error in %s", "f")
    lines = plain.getvalue().splitlines()
    assert lines[:4] == ["(VI_1) Entering MASTER STATE", "100% sure", "%d of %s ('x',)", "internal error in f"]
    assert lines[4] == "Traceback (most recent call last):" and lines[-1] == "KeyError: 'missing'", lines
    assert console.getvalue().startswith("Tue Dec 01 13:58:52 2026: (VI_1) Entering MASTER STATE\n")
    assert in_file.getvalue().startswith("Tue Dec 01 13:58:52.123456") and " 2026: 100% sure\n" in in_file.getvalue()
    assert console.getvalue().count("\nTue Dec 01") == 3  # the traceback's lines are not stamped
    logger.set_outputs(outputs, vrrpd.DEBUG)  # -D
    logger.debug("a detail line")
    logger.disabled = True
    logger.error("not written")
    assert plain.getvalue().splitlines()[-1] == "a detail line"


def test_logger_hands_records_to_logging_until_the_daemon_sets_its_outputs(caplog):
    logger = vrrpd.Logger("vrrpd")
    with caplog.at_level(logging.DEBUG, logger="vrrpd"):
        logger.debug("(%s) detail", "VI_1")
        try:
            raise OSError("boom")
        except OSError:
            logger.exception("failed")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(10, "(VI_1) detail"), (40, "failed")]
    assert caplog.records[1].exc_info[0] is OSError
    assert caplog.records[0].funcName == "test_logger_hands_records_to_logging_until_the_daemon_sets_its_outputs"


def test_check_runs_on_minimal_python_and_names_what_smtp_needs(minimal_python, tmp_path):
    python, env = minimal_python
    result = sh([*python, VRRPD, "--check", "-f", str(HERE / "vrrpd.conf.example")], check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout + result.stderr
    assert "smtp_server needs the Python module(s) queue, hmac, smtplib" in out, out
    assert "apt install libpython3-stdlib" in out, out
    # errors are still reported (without difflib's "did you mean"), and the full Python does not warn
    bad = tmp_path / "bad.conf"
    bad.write_text("vrrp_instance VI_1 {\n    interfase eth0\n    virtual_router_id 300\n}\n")
    result = sh([*python, VRRPD, "--check", "-f", str(bad)], check=False, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "interfase" in result.stdout + result.stderr
    full = sh([PYTHON, VRRPD, "--check", "-f", str(HERE / "vrrpd.conf.example")], check=False)
    assert "smtp_server needs" not in full.stdout + full.stderr


def test_small_dataclass_behaves_like_dataclasses_for_what_vrrpd_uses():
    import dataclasses

    def make(decorate, fld):
        @decorate
        class Base:
            a: int
            b: str = "x"
            c: list = fld(default_factory=list)

        @decorate
        class Child(Base):
            d: int = 4
            note: str = fld(default="", compare=False, repr=False)

        @decorate(frozen=True)
        class Frozen:
            p: int
            q: tuple = ()

        return Base, Child, Frozen

    real = make(dataclasses.dataclass, dataclasses.field)
    small = make(vrrpd.small_dataclass, vrrpd.small_field)
    for (rb, rc, rf), replace in ((real, dataclasses.replace), (small, vrrpd.small_replace)):
        one, two = rb(1), rb(1)
        assert one == two and one.c is not two.c and one != rb(2) and one != rc(1)
        assert repr(rc(1, "y", [2], 5)).split("<locals>.")[-1] == "Child(a=1, b='y', c=[2], d=5)"
        assert replace(rc(1, d=9), b="z") == rc(1, "z", [], 9, "ignored") and rc(1).note == ""
        with pytest.raises(TypeError):
            hash(one)
        with pytest.raises(TypeError):
            rb()
        frozen = rf(1)
        assert hash(frozen) == hash(rf(1)) and {frozen: 1}[rf(1)] == 1
        assert repr(frozen).split("<locals>.")[-1] == "Frozen(p=1, q=())"
        with pytest.raises(AttributeError):
            frozen.p = 2


def test_json_text_without_json_module_writes_what_json_dumps_writes(monkeypatch):
    import json

    doc = {"a": [1, 2.5, -0.0, None, True, False, (3, "t")], "s": "quo\"te\\ tab\t nl\n \x01 é \U0001f600",
           "nested": {"empty": {}, "list": [], "addr": ipaddress.ip_address("10.0.0.1")}, 7: "int key",
           None: "none key", "big": 10 ** 20, "inf": float("inf"), "state": vrrpd.State.MASTER}
    expected = json.dumps(doc, indent=2, default=str)
    assert vrrpd.json_text(doc) == expected
    monkeypatch.setitem(sys.modules, "json", None)
    assert vrrpd.json_text(doc) == expected


def test_hmac_md5_and_which_without_hmac_and_shutil(tmp_path, monkeypatch):
    import hmac

    for key in (b"", b"secret\0\0", b"k" * 64, b"long" * 40):
        for digest in ("md5", "sha256"):
            assert vrrpd.hmac_digest(key, b"data" * 50, digest) == hmac.new(key, b"data" * 50, digest).digest()
    tool = tmp_path / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "plain").write_text("")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"/nonexistent:{tool.parent}")
    assert vrrpd.which("tool") == shutil.which("tool") == str(tool)
    assert vrrpd.which("plain") is None and vrrpd.which(str(tool)) == str(tool) and vrrpd.which("nope") is None


def test_missing_smtplib_is_a_check_warning_and_one_clear_log_line(monkeypatch, caplog):
    text = ("global_defs {\n    notification_email {\n        ops@example.com\n    }\n"
            "    smtp_server 127.0.0.1\n}\n")
    _, diags = parse_ok(text)
    assert not any("smtp_server needs" in m for m in messages(diags))
    monkeypatch.setitem(sys.modules, "smtplib", None)
    config, diags = parse_ok(text)
    assert any("smtp_server needs the Python module(s) smtplib" in m and "libpython3-stdlib" in m
               for m in messages(diags, vrrpd.Severity.WARNING)), messages(diags)
    mailer = vrrpd.SmtpAlerter(config.global_defs)
    with caplog.at_level(logging.ERROR, logger="vrrpd"):
        mailer.submit("subject", "body")
        mailer.submit("subject", "body")
    lines = [r.getMessage() for r in caplog.records if "SMTP" in r.getMessage()]
    assert lines == ["SMTP: smtp_server needs the Python module smtplib, which this Python lacks "
                     "(Debian/Ubuntu: apt install libpython3-stdlib); no e-mail alert will be sent"], lines
    assert mailer._thread is None and mailer.pending() == 0
    mailer.close(1.0)


def test_syslog_output_sends_what_sysloghandler_sends(tmp_path):
    import logging.handlers
    import socket

    path = str(tmp_path / "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    ours = vrrpd.SyslogOutput(path, facility=16)
    theirs = logging.handlers.SysLogHandler(path, facility=16)
    try:
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
            record = logging.LogRecord("vrrpd", level, __file__, 1, "(VI_1) héllo %s", ("x",), None)
            theirs.setFormatter(logging.Formatter(f"vrrpd[{os.getpid()}]: %(message)s"))
            theirs.emit(record)
            ours.emit(level, time.time(), record.getMessage())
            expected = f"<{16 * 8 + {10: 7, 20: 6, 30: 4, 40: 3, 50: 2}[level]}>vrrpd[{os.getpid()}]: (VI_1) héllo x\0"
            assert server.recv(4096) == server.recv(4096) == expected.encode(), level
        server.close()  # syslogd restarts: the next record reconnects
        os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        server.settimeout(2)
        ours.emit(logging.WARNING, time.time(), "again")
        assert server.recv(4096).startswith(b"<132>")
    finally:
        ours.close()
        theirs.close()
        server.close()


def test_vrrp_failover_scripts_notify_and_fifo_on_minimal_python(lab, tmp_path, minimal_python):
    python, env = minimal_python
    notify = tmp_path / "notify.sh"
    notified = tmp_path / "notified"
    notify.write_text(f"#!/bin/sh\necho \"$@\" >> {notified}\n")
    notify.chmod(0o755)
    fifo = tmp_path / "vrrp.fifo"
    extra = (f"    notify {notify}\n    track_script {{\n        chk\n    }}\n")
    glob_extra = f"    notify_fifo {fifo}\n    enable_script_security\n    script_user root\n"
    script = 'vrrp_script chk {\n    script "/bin/true"\n    interval 1\n}\n'
    ns_a, ns_b = lab.host("a", f"{LAB_NET}.1/24"), lab.host("b", f"{LAB_NET}.2/24")
    b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=150, state="MASTER"))
    _wait_holders(lab, [b], ["B"], timeout=5)
    a = _Node(lab, ns_a, tmp_path, "A", script + _conf(priority=100, instance_extra=extra, global_extra=glob_extra),
              python=python, env=env)
    wait_for(lambda: "Entering BACKUP STATE" in a.log(), 5, what="the minimal-Python node in BACKUP")
    # it re-executed itself from the byte-code cache (-S) under the same interpreter and tree
    cmdline = Path(f"/proc/{a.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0] == MINIMAL_PYTHON.encode() and b"-S" in cmdline, cmdline
    assert Path(f"/proc/{a.proc.pid}/environ").read_bytes().count(b"PYTHONHOME=" + env["PYTHONHOME"].encode())
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        b.kill()
        lab.link(b.ns, "eth0", up=False)  # a crash leaves B's VIP behind: B is off the wire
        _wait_holders(lab, [a], ["A"], timeout=3)
        wait_for(lambda: notified.exists() and "MASTER" in notified.read_text(), 3, what="notify script")
        assert notified.read_text().split("\n")[-2].split() == ["INSTANCE", "VI_1", "MASTER", "100"]
        fifo_text = wait_for(lambda: os.read(reader, 65536).decode(), 3, what="notify FIFO line")
        assert 'INSTANCE "VI_1" MASTER 100' in fifo_text, fifo_text
    finally:
        os.close(reader)
    wait_for(lambda: "VRRP_Script(chk) succeeded" in a.log(), 3, what="vrrp_script on minimal Python")
    assert a.stop() == 0
    assert not lab.has_address(a.ns, VIP)
    assert "Traceback" not in a.log() and "Error" not in a.log(), a.log()


ADVERT_RECORDER = r"""
import json, socket, struct, sys, time
# the master's adverts as they leave its eth0 (AF_PACKET, outgoing), dated by the kernel (SO_TIMESTAMPNS)
rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))  # ETH_P_ALL: outgoing ones too
rx.bind(("eth0", 3))
rx.setsockopt(socket.SOL_SOCKET, 35, 1)
rx.settimeout(0.05)
print("ready", flush=True)
start, wall, stamps = time.monotonic(), time.time(), []
while time.monotonic() - start < float(sys.argv[1]):
    try:
        data, anc, _, addr = rx.recvmsg(2000, 64)
    except socket.timeout:
        continue
    ihl = (data[0] & 15) * 4
    if addr[2] == socket.PACKET_OUTGOING and addr[1] == 0x0800 and len(data) > ihl + 3 and data[9] == 112 \
            and data[ihl + 2] > 0:
        sec, nsec = next((struct.unpack("=qq", v[:16]) for lvl, kind, v in anc if kind == 35), (0, 0))
        stamps.append(sec + nsec / 1e9 - wall)
print(json.dumps(stamps), flush=True)
"""

HOSTILE_SCRAPERS = r"""
import json, resource, socket, sys, time
host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 200, max(count + 200, hard)))
def fresh():
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    return s
socks = [fresh() for _ in range(count)]
end, reconnects, dribbled, peak = time.monotonic() + seconds, 0, 0, count
while time.monotonic() < end:
    for i, s in enumerate(socks):
        try:
            if i % 3 == 0:
                s.send(b"G")  # one byte a second, never a whole request
                dribbled += 1
            elif i % 3 == 1:
                if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    raise ConnectionResetError  # closed by the server: come back
            else:
                s.send(b"GET /metrics HTTP/1.1\r\n\r\n")  # ask, and never read the answer
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            s.close()
            socks[i] = fresh()
            reconnects += 1
    time.sleep(1.0)
print(json.dumps({"connections": count, "reconnects": reconnects, "dribbled": dribbled}), flush=True)
"""

SCRAPE = r"""
import sys, time, urllib.request
for attempt in range(20):  # as Prometheus would, the next interval: among 1,000 others a scrape may be evicted
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())
        break
    except OSError as exc:
        print(f"attempt {attempt}: {exc}", file=sys.stderr)
        time.sleep(0.2)
else:
    sys.exit(1)
"""


def _intervals(stamps, lo, hi):
    window = [t for t in stamps if lo <= t <= hi]
    return [b - a for a, b in zip(window, window[1:])]


def test_lab_hostile_scrapers_do_not_delay_the_masters_adverts(lab, tmp_path):
    import json
    import statistics

    ns_a, scraper = lab.host("a", f"{LAB_NET}.1/24"), lab.host("c", f"{LAB_NET}.10/24")
    a = _Node(lab, ns_a, tmp_path, "A", _conf(priority=150, state="MASTER",
                                                 global_extra=f"    metrics_listen {LAB_NET}.1:9650\n"),
              control=True, wait=False)
    _wait_holders(lab, [a], ["A"], timeout=10)
    wait_for(lambda: os.path.exists(a.ctl), 10, what="A's control socket")
    url = f"http://{LAB_NET}.1:9650/metrics"
    wait_for(lambda: lab.run(scraper, [PYTHON, "-c", SCRAPE, url], check=False).returncode == 0, 10,
             what="the metrics endpoint")
    rss_before = _rss_kb(a.proc.pid)
    # measured where they leave the master: on this shared kernel the lab's bridge itself delays packets under
    # the scrapers' flood of connections (a backup's capture shows gaps the master's egress never has)
    recorder = lab.exec(ns_a, [PYTHON, "-c", ADVERT_RECORDER, "7"], stdout=subprocess.PIPE, text=True)
    assert recorder.stdout.readline().strip() == "ready"
    time.sleep(2.0)  # the baseline
    sent_before = a.instance()["stats"]["adverts_sent"]
    # the scrapers would be other machines: niced, they do not take the daemon's CPU on this shared one
    hostile = lab.exec(scraper, ["nice", "-n", "19", PYTHON, "-c", HOSTILE_SCRAPERS, f"{LAB_NET}.1", "9650",
                                 "1000", "4"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    # a well-behaved scraper still gets its metrics in the middle of it
    during = lab.run(scraper, [PYTHON, "-c", SCRAPE, url], check=False, timeout=20)
    attack = json.loads(hostile.communicate(timeout=30)[0])
    sent_during = a.instance()["stats"]["adverts_sent"] - sent_before
    stamps = json.loads(recorder.communicate(timeout=30)[0])
    rss_after = _rss_kb(a.proc.pid)
    baseline, under = _intervals(stamps, 0.2, 2.0), _intervals(stamps, 2.3, 5.8)
    assert len(baseline) > 10 and len(under) > 25, (len(baseline), len(under))
    print(f"advert intervals: baseline mean {statistics.mean(baseline):.4f} max {max(baseline):.4f}; "
          f"under attack mean {statistics.mean(under):.4f} max {max(under):.4f} "
          f"({len(under)} intervals); {attack}; rss {rss_before} -> {rss_after} kB; "
          f"A sent {sent_during} adverts during the attack")
    # unchanged: the same median and mean as the baseline (0.1 s), and no gap anywhere near a backup's
    # master-down interval (0.3 + skew). (A loaded 2-core machine delays any process now and then, in the
    # baseline too: the bound on the longest gap allows that, never a gap that would make a backup take over.)
    assert abs(statistics.median(under) - statistics.median(baseline)) < 0.005, (baseline, under)
    assert abs(statistics.mean(under) - 0.1) < 0.02, under
    assert max(under) < 0.25, under
    assert a.instance()["state"] == "MASTER" and len(a.instance()["recent_transitions"]) == 2  # INIT->BACKUP->MASTER
    assert during.returncode == 0 and "keepalived_vrrp_state" in during.stdout, during.stderr
    assert attack["dribbled"] > 300 and attack["connections"] == 1000
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)  # bounded: at most 16 connections held
    evicted = re.search(r"^vrrpd_metrics_connections_evicted_total (\S+)$",
                        lab.run(scraper, [PYTHON, "-c", SCRAPE, url]).stdout, re.M)
    assert evicted and float(evicted.group(1)) > 100  # the crowd did reach the daemon, which made room
    assert "Traceback" not in a.log()


PROMETHEUS_QUERY = r"""
import json, sys, urllib.parse, urllib.request
url = sys.argv[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[2]})
try:
    print(json.dumps(json.loads(urllib.request.urlopen(url, timeout=3).read())["data"]["result"]))
except OSError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def test_lab_real_prometheus_sees_keepalived_vrrp_state_change_on_failover(lab, tmp_path):
    import json

    require(shutil.which("prometheus") is not None, "needs Debian's prometheus package")
    ns_a, ns_b = lab.host("a", f"{LAB_NET}.1/24"), lab.host("b", f"{LAB_NET}.2/24")
    a = _Node(lab, ns_a, tmp_path, "A", _conf(priority=150, state="MASTER"), control=True, wait=False)
    # B serves its metrics on loopback inside its namespace; Prometheus runs there too
    b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=100, global_extra="    metrics_listen 127.0.0.1:9650\n"),
              control=True, wait=False)
    _wait_holders(lab, [a, b], ["A"], timeout=10)
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: vrrpd\n    static_configs:\n      - targets: ['127.0.0.1:9650']\n")
    prom_log = open(tmp_path / "prometheus.log", "w")
    lab.exec(ns_b, ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}", "--web.listen-address=127.0.0.1:9090",
                    "--log.level=warn"], stdout=prom_log, stderr=subprocess.STDOUT)
    prom_log.close()

    def state():
        out = lab.run(ns_b, [PYTHON, "-c", PROMETHEUS_QUERY, "http://127.0.0.1:9090",
                             f'keepalived_vrrp_state{{iname="VI_1",ip_address="{VIP}/24"}}'], check=False).stdout
        result = json.loads(out or "{}")
        return result[0]["value"][1] if isinstance(result, list) and result else None

    def takeovers():
        out = lab.run(ns_b, [PYTHON, "-c", PROMETHEUS_QUERY, "http://127.0.0.1:9090",
                             'vrrpd_transitions_total{iname="VI_1",state="MASTER",reason="no-response"}']).stdout
        result = json.loads(out)
        return int(result[0]["value"][1]) if result else 0

    wait_for(lambda: state() == "1", 20, 0.2, what="Prometheus to scrape B as BACKUP (1)")
    before = takeovers()  # B may have been MASTER for a moment at start-up, before it heard A
    a.kill()
    t_kill = time.monotonic()
    wait_for(lambda: state() == "2", 10, 0.2, what="Prometheus to see B as MASTER (2)")
    print(f"Prometheus saw the failover {time.monotonic() - t_kill:.2f} s after the kill")
    assert takeovers() == before + 1


# ============================================================================================
# H. Fuzzing, soak and benchmark
# ============================================================================================


# --------------------------------------------------------------------------------------------
# H1. Benchmark: `make bench` runs vrrpd and keepalived on the same scenarios in the same run
# --------------------------------------------------------------------------------------------

# A probe runs inside a lab namespace and prints events stamped with the kernel's receive time
# (CLOCK_REALTIME, compared with time.time() here): "ADV t src vrid prio" for each VRRP packet seen,
# "ADDR t +|- ip" for address changes.
PROBE_SOURCE = r"""
import select, socket, struct, sys, time
SO_TIMESTAMPNS = 35
vr = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
vr.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
for spec in sys.argv[1:]:
    group, ifname = spec.split("@")
    mreqn = socket.inet_aton(group) + socket.inet_aton("0.0.0.0") + struct.pack("=i", socket.if_nametoindex(ifname))
    vr.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
nl.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
nl.bind((0, 0x10))
print("READY", flush=True)

def stamp(ancdata):
    # kernel receive time (CLOCK_REALTIME), so a busy probe does not skew the measurement
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("=qq", data[:16])
            return sec + nsec / 1e9
    return time.time()

while True:
    ready, _, _ = select.select([vr, nl], [], [])
    if vr in ready:
        data, anc, _, addr = vr.recvmsg(4096, 256)
        ihl = (data[0] & 15) * 4
        if len(data) >= ihl + 3:
            print("ADV %.6f %s %d %d" % (stamp(anc), addr[0], data[ihl + 1], data[ihl + 2]), flush=True)
    if nl in ready:
        data, anc, _, _ = nl.recvmsg(65536, 256)
        now = stamp(anc)
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            if kind in (20, 21):
                pos = off + 16 + 8
                while pos + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, pos)
                    if alen < 4:
                        break
                    if atype == 2 and alen == 8:
                        ip = socket.inet_ntoa(data[pos + 4:pos + 8])
                        print("ADDR %.6f %s %s" % (now, "+" if kind == 20 else "-", ip), flush=True)
                    pos += (alen + 3) & ~3
            off += (length + 3) & ~3
"""


class Probe:
    """Reads a PROBE_SOURCE process's events in a thread; events are (kind, t, *fields)."""

    def __init__(self, lab: Lab, ns: str, groups: tuple = ()):
        import threading

        self.events: list = []
        self.proc = lab.exec(ns, [PYTHON, "-c", PROBE_SOURCE, *groups], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "READY"
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            parts = line.split()
            if parts:
                self.events.append((parts[0], float(parts[1]), *parts[2:]))

    def adverts(self, src: Optional[str] = None, since: float = 0.0) -> list:
        return [e for e in list(self.events) if e[0] == "ADV" and e[1] >= since and (src is None or e[2] == src)]

    def address_added(self, ip: str, since: float = 0.0) -> Optional[float]:
        for event in list(self.events):
            if event[0] == "ADDR" and event[1] >= since and event[2] == "+" and event[3] == ip:
                return event[1]
        return None


def bench_config(instances: list, router_id: str = "bench") -> str:
    """keepalived syntax understood by both daemons; instances are dicts of keyword -> value."""
    out = [f"global_defs {{\n    router_id {router_id}\n    vrrp_garp_master_delay 0\n}}"]
    for inst in instances:
        vips = inst.pop("vips")
        body = "\n".join(f"    {k} {v}" for k, v in inst.items() if k != "name")
        out.append(f"vrrp_instance {inst['name']} {{\n{body}\n    virtual_ipaddress {{\n"
                   + "".join(f"        {v}\n" for v in vips) + "    }\n}")
    return "\n".join(out) + "\n"


def bench_node(lab: Lab, kind: str, ns: str, conf: str, workdir: Path, children: str = "") -> _Node:
    """A benchmark's daemon (vrrpd, or keepalived with -D) in `ns`, named after it, not started yet: the
    benchmark times start() and waits for wait_started() itself."""
    keepalived = kind == "keepalived"
    return _Node(lab, ns, workdir, ns, conf, keepalived=keepalived, detail=keepalived,
                 children=children if keepalived else "", wait=False, autostart=False)


def _cpu_seconds(pids: List[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _rss_mb(pids: List[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024.0


def _pair_lab(kind: str, workdir: Path, version: int, advert: float, prio_a: int = 150, prio_b: int = 100,
              extra: Optional[dict] = None):
    """Two nodes A (higher priority) and B and a client on one bridge; returns (lab, a, b, client, probe_b)."""
    lab = Lab()
    a_ns = lab.host("a", "10.77.0.1/24")
    b_ns = lab.host("b", "10.77.0.2/24")
    client = lab.host("c", "10.77.0.9/24")
    common = {"interface": "eth0", "virtual_router_id": 51, "advert_int": advert, "version": version,
              "vips": ["10.77.0.100/24"]}
    common.update(extra or {})
    conf_a = bench_config([dict(common, name="VI_1", state="MASTER", priority=prio_a)], "nodeA")
    conf_b = bench_config([dict(common, name="VI_1", state="BACKUP", priority=prio_b)], "nodeB")
    a = bench_node(lab, kind, a_ns, conf_a, workdir / kind)
    b = bench_node(lab, kind, b_ns, conf_b, workdir / kind)
    probe_b = Probe(lab, b_ns, ("224.0.0.18@eth0",))
    return lab, a, b, client, probe_b


def _master_down_interval(version: int, advert: float, prio: int) -> float:
    if version == 2:
        return 3 * advert + (256 - prio) / 256.0
    centis = round(advert * 100)
    return 3 * advert + ((256 - prio) * centis // 256) / 100.0


def _start_pair(lab, a, b, probe_b, advert: float) -> None:
    a.start()
    wait_for(lambda: lab.has_address(a.ns, "10.77.0.100"), 15, what="VIP on node A")
    b.start()
    b.wait_started()
    # steady state: B has heard A for a while and holds no VIP
    time.sleep(max(1.0, 3 * advert))
    assert not lab.has_address(b.ns, "10.77.0.100"), "both nodes hold the VIP"


def bench_hard_failover(kind: str, workdir: Path, version: int = 2, advert: float = 1.0) -> dict:
    lab, a, b, client, probe_b = _pair_lab(kind, workdir, version, advert)
    try:
        _start_pair(lab, a, b, probe_b, advert)
        killed = time.time()
        a.crash()
        lab.link(a.ns, "eth0", False)
        wait_for(lambda: probe_b.address_added("10.77.0.100", killed), 10 + 4 * advert, 0.005, "VIP on node B")
        took = probe_b.address_added("10.77.0.100", killed)
        last = max(e[1] for e in probe_b.adverts("10.77.0.1"))
        mdi = _master_down_interval(version, advert, 100)
        return {"after_last_advert": took - last, "over_mdi": took - last - mdi}
    finally:
        lab.close()


def _pinger(lab: Lab, client: str, target: str):
    return lab.exec(client, ["ping", "-n", "-D", "-i", "0.01", "-W", "1", target],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _ping_outcome(ping: subprocess.Popen) -> dict:
    """Stop a `ping -D` and return its longest gap between replies (s) and how many echo requests were lost."""
    ping.send_signal(signal.SIGINT)
    out, _ = ping.communicate(timeout=10)
    replies = [line for line in out.splitlines() if line.startswith("[") and "bytes from" in line]
    stamps = [float(line.split("]")[0][1:]) for line in replies]
    seqs = sorted({int(line.split("icmp_seq=")[1].split()[0]) for line in replies if "icmp_seq=" in line})
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    lost = (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0
    return {"gap": max(gaps) if gaps else float("inf"), "lost": lost}


def bench_graceful_failover(kind: str, workdir: Path, version: int = 2, advert: float = 1.0,
                            handover: bool = False) -> dict:
    extra_global = handover
    lab, a, b, client, probe_b = _pair_lab(kind, workdir, version, advert)
    try:
        if extra_global:
            for node in (a, b):
                text = node.conf.read_text().replace("router_id", "vrrp_handover_on_stop\n    router_id", 1)
                node.conf.write_text(text)
        _start_pair(lab, a, b, probe_b, advert)
        ping = _pinger(lab, client, "10.77.0.100")
        time.sleep(0.5)
        stopped = time.time()
        a.stop(signal.SIGTERM)
        wait_for(lambda: probe_b.address_added("10.77.0.100", stopped), 10, 0.005, "VIP on node B")
        took = probe_b.address_added("10.77.0.100", stopped) - stopped
        time.sleep(0.5)
        outcome = _ping_outcome(ping)
        return {"sigterm_to_vip": took, "ping_gap": outcome["gap"], "pings_lost": outcome["lost"]}
    finally:
        lab.close()


def bench_preempt_back(kind: str, workdir: Path, version: int = 2, advert: float = 1.0) -> dict:
    lab, a, b, client, probe_b = _pair_lab(kind, workdir, version, advert)
    try:
        b.start()
        wait_for(lambda: lab.has_address(b.ns, "10.77.0.100"), 15, what="VIP on node B")
        ping = _pinger(lab, client, "10.77.0.100")
        time.sleep(0.5)
        started = time.time()
        a.start()
        wait_for(lambda: lab.has_address(a.ns, "10.77.0.100") and not lab.has_address(b.ns, "10.77.0.100"),
                 15, what="VIP back on node A")
        took = time.time() - started
        time.sleep(0.5)
        outcome = _ping_outcome(ping)
        return {"start_to_preempt": took, "ping_gap": outcome["gap"], "pings_lost": outcome["lost"]}
    finally:
        lab.close()


def bfd_node(lab: Lab, kind: str, ns: str, conf: str, workdir: Path) -> _Node:
    """A bench_node whose keepalived also runs its checker and BFD child processes (bench_node's runs VRRP only)."""
    return bench_node(lab, kind, ns, conf, workdir, children="cb")


class BfdFlapped(AssertionError):
    """The set-up of a BFD measurement did not hold (the machine was too loaded): measure again."""


def bench_bfd_failover(kind: str, workdir: Path, interval_ms: float = 10, multiplier: int = 3) -> dict:
    """A MASTER (advert_int 1) tracks a BFD session (min_rx = min_tx = interval_ms, multiplier 3) to a router R;
    R dies (kill -9). How long until the MASTER drops the VIP (BFD detection + FAULT), and until the
    BACKUP holds it (priority 0 from the leaving master + its skew time)? Both nodes of one kind."""
    lab = Lab()
    try:
        m_ns, b_ns, r_ns = (lab.host(n, f"10.77.0.{i}/24") for n, i in (("m", 1), ("b", 2), ("r", 3)))

        def bfd(name, nbr, src):
            return (f"bfd_instance {name} {{\n    neighbor_ip {nbr}\n    source_ip {src}\n    min_rx {interval_ms}\n"
                    f"    min_tx {interval_ms}\n    multiplier {multiplier}\n}}\n")

        common = {"interface": "eth0", "virtual_router_id": 51, "advert_int": 1, "version": 3,
                  "vips": ["10.77.0.100/24"]}
        # keepalived needs the bfd_instance before the track_bfd naming it ("track bfd X not found")
        conf_m = bfd("BFDR", "10.77.0.3", "10.77.0.1") + bench_config(
            [dict(common, name="VI_1", state="MASTER", priority=150)], "nodeM").replace(
            "    virtual_ipaddress", "    track_bfd {\n        BFDR\n    }\n    virtual_ipaddress")
        conf_b = bench_config([dict(common, name="VI_1", state="BACKUP", priority=100)], "nodeB")
        conf_r = "global_defs {\n    router_id nodeR\n}\n" + bfd("BFDM", "10.77.0.1", "10.77.0.3")
        wd = workdir / f"bfd-{kind}"
        r = bfd_node(lab, kind, r_ns, conf_r, wd)
        m = bfd_node(lab, kind, m_ns, conf_m, wd)
        b = bench_node(lab, kind, b_ns, conf_b, wd)
        probe_m, probe_b = Probe(lab, m_ns), Probe(lab, b_ns)
        r.start()
        m.start()
        try:
            wait_for(lambda: lab.has_address(m_ns, "10.77.0.100"), 20, what="VIP on the BFD-tracking master")
        except AssertionError as exc:
            raise BfdFlapped(str(exc)) from None
        b.start()
        b.wait_started()
        time.sleep(1.5)
        if not (lab.has_address(m_ns, "10.77.0.100") and not lab.has_address(b_ns, "10.77.0.100")):
            # a 10 ms session on a loaded 2-core machine can miss three packets before the measurement starts
            raise BfdFlapped("the session flapped before R was killed: not one master")
        killed = time.time()
        r.crash()
        wait_for(lambda: lab.has_address(b_ns, "10.77.0.100"), 6, 0.005, "VIP on the backup")
        time.sleep(0.1)
        left = next((e[1] for e in list(probe_m.events) if e[0] == "ADDR" and e[2] == "-"
                     and e[3] == "10.77.0.100" and e[1] >= killed), None)
        took = probe_b.address_added("10.77.0.100", killed)
        assert left is not None and took is not None, (probe_m.events[-5:], probe_b.events[-5:])
        return {"bfd_detect": left - killed, "bfd_failover": took - killed}
    finally:
        lab.close()


def bench_first_master(kind: str, workdir: Path) -> dict:
    lab = Lab()
    try:
        ns = lab.host("a", "10.77.0.1/24")
        conf = bench_config([{"name": "VI_1", "state": "MASTER", "interface": "eth0", "virtual_router_id": 51,
                              "priority": 150, "advert_int": 1, "vips": ["10.77.0.100/24"]}])
        node = bench_node(lab, kind, ns, conf, workdir / kind)
        probe = Probe(lab, ns)
        started = time.time()
        node.start()
        wait_for(lambda: probe.address_added("10.77.0.100", started), 15, 0.005, "VIP")
        return {"start_to_master": probe.address_added("10.77.0.100", started) - started}
    finally:
        lab.close()


# The floor of the per-advert cost, run in the daemon's namespace during the same scenario: a loop that only
# sends the cached bytes of one advert ("send"), or only receives adverts ("recv"); CPU µs per packet.
BENCH_FLOOR = r"""
import socket, struct, sys, time
mode, count = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
if mode == "send":
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    src = socket.inet_aton(sys.argv[3])
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, src)
    vrrp = bytes([0x31, 250, 100, 1, 0, 100, 0, 0]) + socket.inet_aton("10.79.9.9")
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(vrrp), 0, 0, 255, 112, 0, src,
                         socket.inet_aton("224.0.0.18"))
    packet = header + vrrp
    t0 = time.process_time()
    for _ in range(count):
        sock.sendto(packet, ("224.0.0.18", 0))
else:
    for name in sys.argv[3:]:
        mreqn = socket.inet_aton("224.0.0.18") + bytes(4) + struct.pack("=i", socket.if_nametoindex(name))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    sock.recvmsg(4096, 256)
    t0 = time.process_time()
    for _ in range(count):
        sock.recvmsg(4096, 256)
print("%.3f" % ((time.process_time() - t0) / count * 1e6))
"""


def _bench_floor(lab: Lab, ns: str, mode: str, count: int, *args: str) -> float:
    out = lab.run(ns, [PYTHON, "-c", BENCH_FLOOR, mode, str(count), *args], timeout=120).stdout
    return float(out.split()[-1])


def _multi_interface_node(lab: Lab, short: str, count: int, host_octet: int) -> str:
    """A namespace with one veth per 250 instances (eth0..), address 10.78.<i>.<host_octet>/16; eth<i> is on
    bridge br<i> of the lab (br0 is the lab's own), so VRIDs repeated on each interface never meet."""
    ns = lab.netns(short)
    for i in range(max(1, (count + 249) // 250)):
        lab._port += 1
        peer, bridge = f"p{lab._port}", f"br{i}"
        if lab.ip("link", "show", bridge, ns=lab.bridge_ns, check=False).returncode != 0:
            lab.ip("link", "add", bridge, "type", "bridge", ns=lab.bridge_ns)
            lab.ip("link", "set", bridge, "type", "bridge", "mcast_snooping", "0", ns=lab.bridge_ns)
            lab.ip("link", "set", bridge, "up", ns=lab.bridge_ns)
        lab.ip("link", "add", f"eth{i}", "netns", ns, "type", "veth", "peer", "name", peer, "netns", lab.bridge_ns)
        lab.ip("link", "set", peer, "master", bridge, "up", ns=lab.bridge_ns)
        lab.ip("addr", "add", f"10.78.{i}.{host_octet}/16", "dev", f"eth{i}", ns=ns)
        lab.ip("link", "set", f"eth{i}", "up", ns=ns)
    return ns


def _bench_instances(count: int, state: str, priority: int, advert: float, version: Optional[int]) -> list:
    instances = []
    for n in range(count):
        i, vrid = divmod(n, 250)
        inst = {"name": f"VI_{n}", "state": state, "interface": f"eth{i}", "virtual_router_id": vrid + 1,
                "priority": priority, "advert_int": advert, "vips": [f"10.79.{i}.{vrid + 1}/32"]}
        if version is not None:
            inst["version"] = version
        instances.append(inst)
    return instances


def bench_idle_cost(kind: str, workdir: Path, count: int, window: float = 20.0, advert: float = 1.0,
                    version: Optional[int] = None, floor: bool = False) -> dict:
    """CPU seconds per minute and RSS of one node running `count` MASTER instances (advert_int `advert`), the
    jitter of the adverts of every instance seen on eth0 (up to 250), and the CPU cost of one advert sent (µs)
    beside the floor (`floor`)."""
    lab = Lab()
    try:
        ns = _multi_interface_node(lab, "n", count, 1)
        obs = lab.host("o", "10.78.0.254/16")
        node = bench_node(lab, kind, ns, bench_config(_bench_instances(count, "MASTER", 150, advert, version)),
                         workdir / kind)
        probe = Probe(lab, obs, ("224.0.0.18@eth0",))
        node.start()
        wait_for(lambda: len({e[3] for e in probe.adverts(since=time.time() - 1.5)}) >= min(count, 250),
                 60, 0.2, f"{count} instances advertising")
        time.sleep(2)
        pids = node.pids()
        cpu0, t0 = _cpu_seconds(pids), time.time()
        time.sleep(window)
        cpu1, t1 = _cpu_seconds(pids), time.time()
        # every instance's intervals, not only the first one's: the first of a batch due together is sent on
        # time, the last one after all the others, and a p99 needs more than the window's twenty intervals
        stamps: Dict[str, List[float]] = {}
        for event in probe.adverts(src="10.78.0.1", since=t0):
            stamps.setdefault(event[3], []).append(event[1])
        intervals = sorted(abs((b - a) - advert) for times in stamps.values() for a, b in zip(times, times[1:]))
        cpu = (cpu1 - cpu0) / (t1 - t0)
        result = {"cpu_s_per_min": cpu * 60.0, "rss_mb": _rss_mb(pids), "sent_us": cpu / (count / advert) * 1e6}
        if intervals:
            result["jitter_p50_ms"] = intervals[len(intervals) // 2] * 1000
            result["jitter_p99_ms"] = intervals[min(len(intervals) - 1, int(len(intervals) * 0.99))] * 1000
            result["jitter_intervals"] = len(intervals)
        if floor:
            result["send_floor_us"] = _bench_floor(lab, ns, "send", 20000, "10.78.0.1")
        return result
    finally:
        lab.close()


def bench_receive_cost(kind: str, workdir: Path, count: int = 1000, window: float = 20.0) -> dict:
    """CPU cost (µs) of one advert received: a node of `kind` with `count` BACKUP instances hears a keepalived
    with the same instances as MASTER (advert_int 1); beside it the floor, a loop of only recvmsg there."""
    lab = Lab()
    try:
        master_ns = _multi_interface_node(lab, "m", count, 1)
        backup_ns = _multi_interface_node(lab, "b", count, 2)
        master = bench_node(lab, "keepalived", master_ns,
                           bench_config(_bench_instances(count, "MASTER", 150, 1.0, None)), workdir / "sender")
        backup = bench_node(lab, kind, backup_ns, bench_config(_bench_instances(count, "BACKUP", 100, 1.0, None)),
                           workdir / kind)
        master.start()
        wait_for(lambda: lab.has_address(master_ns, f"10.79.{(count - 1) // 250}.{(count - 1) % 250 + 1}",
                                         f"eth{(count - 1) // 250}"), 60, 0.2, "the sender's last VIP")
        backup.start()
        backup.wait_started(60)
        time.sleep(5)
        pids = backup.pids()
        cpu0, t0 = _cpu_seconds(pids), time.time()
        time.sleep(window)
        cpu1, t1 = _cpu_seconds(pids), time.time()
        held = [n for n in range(0, count, 50) if lab.has_address(backup_ns, f"10.79.{n // 250}.{n % 250 + 1}",
                                                                  f"eth{n // 250}")]
        assert not held, f"the backup took over instances {held}"
        interfaces = [f"eth{i}" for i in range(max(1, (count + 249) // 250))]
        return {"received_us": (cpu1 - cpu0) / (t1 - t0) / count * 1e6,
                "recv_floor_us": _bench_floor(lab, backup_ns, "recv", 3 * count, *interfaces)}
    finally:
        lab.close()


def bench_fast_failover(kind: str, workdir: Path, count: int = 10, advert: float = 0.01) -> dict:
    """`count` VRRPv3 instances at advert_int `advert` on two nodes; kill -9 of the master; seconds from the
    kill until the backup holds the last of their VIPs."""
    lab = Lab()
    try:
        a_ns, b_ns = lab.host("a", "10.77.0.1/24"), lab.host("b", "10.77.0.2/24")
        vips = [f"10.77.0.{100 + n}" for n in range(count)]

        def conf(state: str, prio: int, router: str) -> str:
            return bench_config([{"name": f"VI_{n}", "state": state, "interface": "eth0", "virtual_router_id": 51 + n,
                                  "priority": prio, "advert_int": advert, "version": 3, "vips": [f"{vips[n]}/24"]}
                                 for n in range(count)], router)

        a = bench_node(lab, kind, a_ns, conf("MASTER", 150, "nodeA"), workdir / kind)
        b = bench_node(lab, kind, b_ns, conf("BACKUP", 100, "nodeB"), workdir / kind)
        probe_b = Probe(lab, b_ns)
        a.start()
        wait_for(lambda: all(lab.has_address(a_ns, v) for v in vips), 15, what="the VIPs on node A")
        b.start()
        b.wait_started()
        time.sleep(1.0)
        assert not any(lab.has_address(b_ns, v) for v in vips), "both nodes hold VIPs"
        killed = time.time()
        a.crash()
        lab.link(a_ns, "eth0", False)
        wait_for(lambda: all(probe_b.address_added(v, killed) for v in vips), 10, 0.005, "every VIP on node B")
        return {"fast_failover": max(probe_b.address_added(v, killed) for v in vips) - killed}
    finally:
        lab.close()


def bench_start_to_ready(kind: str, workdir: Path) -> dict:
    """Seconds from exec to "Startup complete" with one instance: a first start (vrrpd: a source it has never
    seen, so no byte-code cache) and the next start of the same file."""
    lab = Lab()
    try:
        ns = lab.host("a", "10.77.0.1/24")
        conf = bench_config([{"name": "VI_1", "state": "BACKUP", "interface": "eth0", "virtual_router_id": 51,
                              "priority": 100, "advert_int": 1, "vips": ["10.77.0.100/24"]}])
        node = bench_node(lab, kind, ns, conf, workdir / kind)
        if kind == "vrrpd":
            copy = workdir / f"vrrpd-{uuid.uuid4().hex[:8]}.py"
            copy.write_text(Path(VRRPD).read_text() + f"# bench {copy.name}\n")
            node.program = str(copy)
        out = {}
        for key in ("first_start", "next_start"):
            started = time.time()
            node.start().wait_started()
            out[key] = time.time() - started
            node.stop()
        if kind == "vrrpd":
            Path(node.program).unlink()
        return out
    finally:
        lab.close()


BENCH_FLOOD = r"""
import ipaddress, os, random, socket, sys, time
sys.path.insert(0, sys.argv[1])
import vrrpd
IP4 = ipaddress.IPv4Address
src, group, kind = IP4(sys.argv[2]), IP4("224.0.0.18"), sys.argv[3]
rate, seconds, procs = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
def advert(ttl, password=b"secret12", prio=200, bad_checksum=False):
    a = vrrpd.VrrpAdvert(2, 51, prio, [IP4("10.77.0.100")], 1.0, 1, password)
    m = vrrpd.encode_advert(a, src, group)
    if bad_checksum:
        m = m[:6] + bytes([m[6] ^ 0x5A]) + m[7:]
    return vrrpd.encode_ipv4(src, group, m, ttl=ttl)
rng = random.Random(7)
pool = []
for i in range(300):
    if kind == "password":   # well formed, right VRID and TTL, higher priority: only the password is wrong
        pool.append(advert(255, password=b"wrong%03d" % i))
    elif i % 3 == 0:         # the cluster's VRID, but TTL 64
        pool.append(advert(64))
    elif i % 3 == 1:         # the cluster's VRID and TTL 255, a bad checksum
        pool.append(advert(255, bad_checksum=True))
    else:                    # random bytes
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
        pool.append(vrrpd.encode_ipv4(src, group, junk, ttl=255))
r, w = os.pipe()
for n in range(procs - 1):
    if os.fork() == 0:
        os.close(r)
        break
else:
    n = procs - 1
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
tx.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
send, addr, share = tx.sendto, (str(group), 0), rate / procs
sent, start = 0, time.monotonic()
end = start + seconds
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = min(int((now - start) * share) - sent, 5000)
    for i in range(due):
        try:
            send(pool[(sent + i) % 300], addr)
        except OSError:
            pass
    sent += max(0, due)
    if due < 50:
        time.sleep(0.0005)
os.write(w, b"%d\n" % sent)
if n != procs - 1:
    os._exit(0)
os.close(w)
total = sum(int(x) for x in os.fdopen(r).read().split())
print(total, round(time.monotonic() - start, 3), flush=True)
"""


def _advert_times(pcap: Path) -> List[float]:
    out = sh(["tcpdump", "-nn", "-tt", "-r", str(pcap)], check=False).stdout
    return [float(line.split()[0]) for line in out.splitlines() if line[:1].isdigit()]


def bench_flood(kind: str, workdir: Path, seconds: float = 8.0) -> dict:
    """A client floods the segment of a MASTER/BACKUP pair (VRRPv2, auth PASS, advert_int 1): first garbage at
    100,000 packets/s (the cluster's VRID with TTL 64, bad checksums, random bytes), then 10,000/s well-formed
    adverts of a higher priority with the right VRID and TTL but a wrong password. Per flood: the rate the
    Python generator reached, false takeovers (the BACKUP entering MASTER), the master's longest advert gap on
    the wire (captured on its bridge port) and the CPU of master and backup in cores."""
    auth = "{\n        auth_type PASS\n        auth_pass secret12\n    }"
    lab, a, b, client, probe_b = _pair_lab(kind, workdir, 2, 1.0, extra={"authentication": auth})
    try:
        probe_b.proc.kill()
        _start_pair(lab, a, b, probe_b, 1.0)
        (workdir / "flood.py").write_text(BENCH_FLOOD)
        result = {}
        for name, rate, procs in (("garbage", 100000, 2), ("password", 10000, 1)):
            pcap, own = workdir / f"{kind}-{name}.pcap", workdir / f"{kind}-{name}-sent.pcap"
            cap = lab.exec(lab.bridge_ns, ["tcpdump", "-i", "p1", "-Q", "in", "-nn", "-w", str(pcap),
                                           "ip proto 112 and src 10.77.0.1"], stderr=subprocess.DEVNULL)
            # and where they leave the master (its own eth0, outgoing): the bridge itself queues behind a flood
            cap_own = lab.exec(a.ns, ["tcpdump", "-i", "eth0", "-Q", "out", "-nn", "-w", str(own),
                                      "ip proto 112 and src 10.77.0.1"], stderr=subprocess.DEVNULL)
            time.sleep(1.5)
            takeovers0 = b.log().count("Entering MASTER STATE")
            pa, pb = a.pids(), b.pids()
            cpu_a, cpu_b, t0 = _cpu_seconds(pa), _cpu_seconds(pb), time.time()
            flood = lab.exec(client, [PYTHON, str(workdir / "flood.py"), str(HERE), "10.77.0.9", name, str(rate),
                                      str(seconds), str(procs)], stdout=subprocess.PIPE, text=True)
            out = flood.communicate(timeout=seconds + 60)[0].split()
            elapsed = time.time() - t0
            cpu_a, cpu_b = (_cpu_seconds(pa) - cpu_a) / elapsed, (_cpu_seconds(pb) - cpu_b) / elapsed
            time.sleep(1.5)  # a master down interval's worth of after-effects
            for c in (cap, cap_own):
                c.send_signal(signal.SIGINT)
                c.wait(timeout=10)
            stamps = [t for t in _advert_times(pcap) if t0 <= t <= t0 + elapsed + 1.5]
            gaps = [y - x for x, y in zip(stamps, stamps[1:])]
            sent = [t for t in _advert_times(own) if t0 <= t <= t0 + elapsed + 1.5]
            sent_gaps = [y - x for x, y in zip(sent, sent[1:])]
            result.update({
                f"flood_{name}_rate": int(out[0]) / float(out[1]) if len(out) == 2 else 0.0,
                f"flood_{name}_takeovers": b.log().count("Entering MASTER STATE") - takeovers0,
                f"flood_{name}_gap": max(gaps) if gaps else float("nan"),
                f"flood_{name}_sent_gap": max(sent_gaps) if sent_gaps else float("nan"),
                f"flood_{name}_cpu_master": cpu_a, f"flood_{name}_cpu_backup": cpu_b})
            if not lab.has_address(a.ns, "10.77.0.100") or lab.has_address(b.ns, "10.77.0.100"):
                result[f"flood_{name}_takeovers"] += 1000  # the VIP did not stay where it was: counted loudly
        return result
    finally:
        lab.close()


def _handover_scenario(kind: str, workdir: Path) -> dict:
    """vrrpd's vrrp_handover_on_stop; keepalived has no such option, so only vrrpd runs it."""
    if kind != "vrrpd":
        return {}
    r = bench_graceful_failover(kind, workdir, handover=True)
    return {"handover_gap": r["ping_gap"], "handover_lost": r["pings_lost"]}


def _preempt_scenario(kind: str, workdir: Path) -> dict:
    r = bench_preempt_back(kind, workdir)
    return {"preempt_gap": r["ping_gap"], "preempt_lost": r["pings_lost"]}


def _idle_scenario(count: int, window: float, advert: float = 1.0, version: Optional[int] = None, tag: str = ""):
    tag = tag or str(count)

    def run(kind: str, workdir: Path) -> dict:
        r = bench_idle_cost(kind, workdir, count, window, advert, version, floor=count == 1000)
        out = {f"cpu_{tag}": r["cpu_s_per_min"], f"rss_{tag}": r["rss_mb"]}
        if "jitter_p50_ms" in r:
            out.update({f"jit50_{tag}": r["jitter_p50_ms"], f"jit99_{tag}": r["jitter_p99_ms"]})
        if count == 1000:
            out.update({"sent_us": r["sent_us"], "send_floor_us": r["send_floor_us"]})
        return out

    return run


def _summary(values: List[float]) -> dict:
    values = sorted(values)
    return {"median": values[len(values) // 2], "min": values[0], "max": values[-1], "n": len(values)}


def bench_main(argv: List[str]) -> int:
    """Run every scenario for both daemons, print one table with ratios, write bench-results.json."""
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", choices=["vrrpd", "keepalived"])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter windows")
    parser.add_argument("--output", default=str(HERE / "bench-results.json"))
    parser.add_argument("--scenario", help="only the scenarios whose key contains this (e.g. flood)")
    parser.add_argument("--window", type=float, help="seconds each CPU measurement lasts (20; --quick: 8)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("keepalived") is None:
        print("make bench needs root and keepalived (sudo make deps)", file=sys.stderr)
        return 2
    reps = 2 if args.quick else args.reps
    window = args.window or (8.0 if args.quick else 20.0)
    kinds = [args.only] if args.only else ["vrrpd", "keepalived"]
    scenarios = [
        ("time to first MASTER (s)", "start_to_master", lambda k, w: bench_first_master(k, w), reps),
        ("hard failover after last advert (s)", "after_last_advert", lambda k, w: bench_hard_failover(k, w), reps),
        ("  excess over Master_Down_Interval (ms)", "over_mdi_ms", None, 0),
        ("graceful failover SIGTERM->VIP (s)", "sigterm_to_vip", lambda k, w: bench_graceful_failover(k, w), reps),
        ("  client ping gap (s)", "ping_gap", None, 0),
        ("  client pings lost (10 ms pings)", "pings_lost", None, 0),
        ("graceful + vrrp_handover_on_stop ping gap (s)", "handover_gap", _handover_scenario, reps),
        ("  client pings lost (10 ms pings)", "handover_lost", None, 0),
        ("preempt-back client ping gap (s)", "preempt_gap", _preempt_scenario, reps),
        ("  client pings lost (10 ms pings)", "preempt_lost", None, 0),
        ("v3 advert_int 0.05 hard failover (s)", "v3_fast",
         lambda k, w: {"v3_fast": bench_hard_failover(k, w, 3, 0.05)["after_last_advert"]}, reps),
        ("BFD 10 ms x3 peer dies -> tracking master drops VIP (s)", "bfd_detect", bench_bfd_failover, reps),
        ("  -> backup holds the VIP (advert_int 1) (s)", "bfd_failover", None, 0),
    ]
    # bench_flood runs both floods at once and fills both blocks of rows
    for kind, title, run in (("garbage", "flood 100k/s garbage: rate the generator reached (pkt/s)", bench_flood),
                             ("password", "flood 10k/s wrong password: rate reached (pkt/s)", None)):
        scenarios += [
            (title, f"flood_{kind}_rate", run, 1 if run else 0),
            ("  false takeovers", f"flood_{kind}_takeovers", None, 0),
            ("  master's longest advert gap, advert_int 1 (s)", f"flood_{kind}_gap", None, 0),
            ("    the same where they leave its eth0 (s)", f"flood_{kind}_sent_gap", None, 0),
            ("  CPU master (cores)", f"flood_{kind}_cpu_master", None, 0),
            ("  CPU backup (cores)", f"flood_{kind}_cpu_backup", None, 0),
        ]
    for count in (1, 255, 1000):
        scenarios += [
            (f"{count} instances: CPU s/min", f"cpu_{count}", _idle_scenario(count, window), reps),
            (f"{count} instances: RSS MB", f"rss_{count}", None, 0),
            (f"{count} instances: advert jitter p50 (ms)", f"jit50_{count}", None, 0),
            (f"{count} instances: advert jitter p99 (ms)", f"jit99_{count}", None, 0),
        ]
    scenarios += [
        ("  one advert sent: CPU (us)", "sent_us", None, 0),
        ("  floor: a loop of only sendto of cached bytes (us)", "send_floor_us", None, 0),
        ("1000 BACKUP instances: one advert received: CPU (us)", "received_us",
         lambda k, w: bench_receive_cost(k, w, 1000, window), reps),
        ("  floor: a loop of only recvmsg (us)", "recv_floor_us", None, 0),
        ("10 instances v3 advert_int 0.01: MASTER CPU s/min", "cpu_fast",
         _idle_scenario(10, window, 0.01, 3, "fast"), reps),
        ("  RSS MB", "rss_fast", None, 0),
        ("  advert jitter p99 (ms)", "jit99_fast", None, 0),
        ("10 instances v3 advert_int 0.01: hard failover, kill -> last VIP (s)", "fast_failover",
         bench_fast_failover, reps),
        ("start to ready, first start (s)", "first_start", bench_start_to_ready, reps),
        ("start to ready, next start (s)", "next_start", None, 0),
    ]
    if args.scenario:
        keep, chosen = False, []
        for row in scenarios:  # a scenario's follow-up rows (func None) go with it
            keep = args.scenario in row[1] if row[2] is not None else keep
            if keep:
                chosen.append(row)
        scenarios = chosen
    results: dict = {k: {} for k in kinds}
    with tempfile.TemporaryDirectory(prefix="vrrpd-bench-") as tmp:
        for title, _key, func, n in scenarios:
            if func is None:
                continue
            # the daemons take turns, repetition by repetition: a load that comes and goes on a shared machine
            # then falls on both alike, and their ratio stays fair
            for rep in range(n):
                for kind in kinds:
                    try:
                        values = func(kind, Path(tmp))
                    except Exception as exc:  # one failed scenario must not lose the others
                        print(f"  {kind} {title}: failed: {exc}", file=sys.stderr)
                        continue
                    if "over_mdi" in values:
                        values["over_mdi_ms"] = values.pop("over_mdi") * 1000
                    for k, v in values.items():
                        results[kind].setdefault(k, []).append(v)
                    print(f"  {kind:10} {title:45} rep {rep + 1}: "
                          + ", ".join(f"{k}={v:.4f}" for k, v in values.items()), file=sys.stderr, flush=True)
    table = {kind: {k: _summary(v) for k, v in vals.items() if v} for kind, vals in results.items()}
    lines = ["| scenario | vrrpd | keepalived | ratio vrrpd/keepalived |", "|---|---|---|---|"]
    for title, key, _func, _n in scenarios:
        cells = []
        for kind in ("vrrpd", "keepalived"):
            s = table.get(kind, {}).get(key)
            cells.append(f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})" if s else "-")
        # keepalived has no handover option: its plain graceful stop is what vrrpd's handover is compared with
        other = {"handover_gap": "ping_gap", "handover_lost": "pings_lost"}.get(key, key)
        a, b = table.get("vrrpd", {}).get(key), table.get("keepalived", {}).get(other)
        ratio = f"{a['median'] / b['median']:.2f}" if a and b and b["median"] else "-"
        lines.append(f"| {title} | {cells[0]} | {cells[1]} | {ratio} |")
    print("\n".join(lines))
    Path(args.output).write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "results": table}, indent=2))
    print(f"\n(median of repetitions, min-max in brackets; JSON in {args.output})")
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "bench":
    sys.exit(bench_main(sys.argv[2:]))


# --------------------------------------------------------------------------------------------
# H2. Fuzzing: decoders and the config parser raise only their own errors and never hang
# --------------------------------------------------------------------------------------------
# Deterministic seeds; about 4 s in the suite, longer with VRRPD_FUZZ_SECONDS (make fuzz).

FUZZ_SECONDS = float(os.environ.get("VRRPD_FUZZ_SECONDS", "0"))
OWN_ERRORS = (vrrpd.PacketError, vrrpd.NetlinkError, vrrpd.ConfigError)


def _fuzz_budget(default: float) -> float:
    return FUZZ_SECONDS if FUZZ_SECONDS > 0 else default


class _HangGuard:
    """Fail, instead of hanging the suite, when one call runs longer than `seconds` (SIGALRM)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def _fire(self, signum, frame):
        raise TimeoutError(f"a single call ran longer than {self.seconds} s: a hang")

    def __enter__(self):
        self.previous = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)
        return False


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Flip, cut, grow or splice a valid input a few times."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randint(0, 4)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] = rng.getrandbits(8)
        elif op == 1 and buf:
            del buf[rng.randrange(len(buf)):]
        elif op == 2:
            buf += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            i = rng.randrange(len(buf))
            del buf[i:i + rng.randint(1, 4)]
        elif buf:
            i = rng.randrange(len(buf))
            buf[i:i + 2] = rng.choice((b"\x00\x00", b"\xff\xff", b"\x04\x00", b"\x00\x01"))
    return bytes(buf)


def _fuzz_targets():
    """(name, decoder, valid inputs) for every decoder of bytes that come from the network or the kernel."""
    IP6 = ipaddress.IPv6Address
    src, group = IP4("10.0.0.2"), IP4("224.0.0.18")
    adv2 = vrrpd.encode_advert(vrrpd.VrrpAdvert(2, 51, 100, [IP4("10.0.0.100")], 1.0, 1, b"secret12"))
    adv3 = vrrpd.encode_advert(vrrpd.VrrpAdvert(3, 51, 100, [IP4("10.0.0.100"), IP4("10.0.0.101")], 0.1, 0, b""),
                               src, group)
    src6, group6 = IP6("fe80::2"), IP6("ff02::12")
    adv6 = vrrpd.encode_advert(vrrpd.VrrpAdvert(3, 51, 100, [IP6("fe80::1"), IP6("2001:db8::1")], 1.0, 0, b""),
                               src6, group6)
    key = vrrpd.ah_key(b"secret12")
    ah = vrrpd.build_ipv4_ah(src, group, adv2, key, 7, 1)
    link = vrrpd.nlmsg_pack(vrrpd.RTM_NEWLINK, 0, 1, vrrpd.ifinfomsg(3, vrrpd.IFF_UP)
                            + vrrpd.nla_pack_str(vrrpd.IFLA_IFNAME, "eth0")
                            + vrrpd.nla_pack(vrrpd.IFLA_ADDRESS, b"\x02\x00\x00\x00\x00\x01"))
    addr = vrrpd.nlmsg_pack(vrrpd.RTM_NEWADDR, 0, 2, vrrpd.addr_request_payload(
        3, ipaddress.IPv4Interface("10.0.0.100/24"), label="eth0"))
    err = vrrpd.nlmsg_pack(vrrpd.NLMSG_ERROR, 0, 3, b"\xfe\xff\xff\xff" + b"\0" * 16)
    svc = vrrpd.ipvs_service_attr(vrrpd.IpvsService(vrrpd.IpvsServiceKey(2, 6, IP4("10.0.0.100"), 80),
                                                    sched_name="wrr", timeout=300))[4:]
    svc6 = vrrpd.ipvs_service_attr(vrrpd.IpvsService(vrrpd.IpvsServiceKey(10, fwmark=5), sched_name="rr"))[4:]
    dest = vrrpd.ipvs_dest_attr(vrrpd.IpvsDest(IP4("10.0.0.2"), 80, weight=3))[4:]
    genl = vrrpd.genl_message(30, vrrpd.IPVS_CMD_NEW_SERVICE, vrrpd.nla_pack(vrrpd.IPVS_CMD_ATTR_SERVICE, svc), 9)

    def rtnl(data):
        for rtype, _flags, _seq, _pid, body in vrrpd.nlmsg_parse(data):
            if rtype == vrrpd.RTM_NEWLINK:
                vrrpd.parse_link(body)
            elif rtype == vrrpd.RTM_NEWADDR:
                vrrpd.parse_addr(body)
            elif rtype == vrrpd.NLMSG_ERROR:
                vrrpd.nlmsg_error_code(body)

    return [
        ("VRRP advert v2/v3", lambda d: vrrpd.decode_advert(d, src, group), [adv2, adv3]),
        ("VRRP advert v3 as v2 checksum", lambda d: vrrpd.decode_advert(d, src, group, True),
         [vrrpd.encode_advert(vrrpd.decode_advert(adv3, src, group), src, group, True)]),
        ("VRRP advert IPv6", lambda d: vrrpd.decode_advert(d, src6, group6), [adv6]),
        ("IPv4 header", vrrpd.decode_ipv4, [vrrpd.encode_ipv4(src, group, adv2)]),
        ("IPv4 AH", lambda d: vrrpd.parse_ipv4_ah(d, key), [ah]),
        ("rtnetlink link/address/error", rtnl, [link, addr, err, link + addr]),
        ("netlink attributes", vrrpd.nla_parse, [svc, dest]),
        ("IPVS service", vrrpd.ipvs_parse_service, [svc, svc6]),
        ("IPVS destination", lambda d: vrrpd.ipvs_parse_dest(d, 2), [dest]),
        ("generic netlink replies", lambda d: [vrrpd.genl_parse(body) for _t, _f, body in vrrpd.nlmsg_replies(d, 9)[0]],
         [genl]),
    ]


def _fuzz_once(rng: random.Random, decoder, seeds, stats: dict, name: str) -> None:
    data = (bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 80))) if rng.random() < 0.25
            else _mutate_bytes(rng, rng.choice(seeds)))
    try:
        decoder(data)
        stats[name][0] += 1
    except OWN_ERRORS:
        stats[name][1] += 1
    except Exception as exc:  # the finding: show the input that did it
        raise AssertionError(f"{name}: {exc!r} on input {data.hex()}") from exc


def test_fuzz_wire_and_netlink_decoders_raise_only_their_own_errors():
    rng = random.Random(8)
    targets = _fuzz_targets()
    stats = {name: [0, 0] for name, _d, _s in targets}
    for _name, decoder, seeds in targets:
        for seed in seeds:  # the valid inputs decode
            decoder(seed)
    deadline = time.monotonic() + _fuzz_budget(1.5)
    while time.monotonic() < deadline:
        with _HangGuard(5.0):
            for _ in range(50):
                for name, decoder, seeds in targets:
                    _fuzz_once(rng, decoder, seeds, stats, name)
    for name, (accepted, rejected) in stats.items():
        assert accepted + rejected > 1000 and rejected > 0, (name, accepted, rejected)  # really exercised


FUZZ_FINDINGS = [
    ("short NLMSG_ERROR", vrrpd.nlmsg_error_code, b"\0\0\0"),
    ("IPv4 prefix length 224", vrrpd.parse_addr,
     bytes.fromhex("02e0000003000000080002000a000001080001000a000001")),
    ("IPVS service without address", vrrpd.ipvs_parse_service, bytes.fromhex("0600010002000000")),
    ("IPVS service with a bad scheduler name", vrrpd.ipvs_parse_service, bytes.fromhex(
        "06000100020000000600020006000000140003000a000001000000000000000000000000060004000050000008000600f4727200")),
    ("IPVS destination with a short port", lambda d: vrrpd.ipvs_parse_dest(d, 2),
     bytes.fromhex("140001000a0000020000000000000000000000000600020000")),
    ("generic netlink reply without a header",
     lambda d: [vrrpd.genl_parse(body) for _t, _f, body in vrrpd.nlmsg_replies(d, 7)[0]],
     bytes.fromhex("100000001e00050007000000000000000000")),
    ("AH packet with IHL 0", lambda d: vrrpd.parse_ipv4_ah(d, b"secret12"),
     bytes.fromhex("70c0004000050000ff33d6ad01020304e0000012700400000102030400000001") + b"\0" * 40),
]


@pytest.mark.parametrize("name, decoder, data", FUZZ_FINDINGS, ids=[f[0] for f in FUZZ_FINDINGS])
def test_fuzz_findings_are_rejected_with_own_errors(name, decoder, data):
    """Inputs the fuzzer found that used to raise KeyError/struct.error/IndexError/NetmaskValueError."""
    with pytest.raises(OWN_ERRORS):
        decoder(data)


def test_fuzz_checker_replies_and_track_files_give_verdicts_not_exceptions():
    """http_response_ok (bytes from real servers) and parse_track_file_value (user-written files)."""
    rng = random.Random(4)
    url = vrrpd.UrlCheck(path="/", digest="9d3d9048db16a7eee539e93e3618cbe7", status_code=[(200, 299)])
    replies = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"HTTP/1.0 404 Not Found\n\nno"]
    files = ["0", "-60\n", "0x1f", "017", "  +5 trailing", "99999999999"]
    deadline = time.monotonic() + _fuzz_budget(0.5)
    verdicts = set()
    while time.monotonic() < deadline:
        with _HangGuard(5.0):
            for _ in range(50):
                reply = _mutate_bytes(rng, rng.choice(replies))
                if rng.random() < 0.05:
                    reply = b"HTTP/1.1 " + b"7" * rng.randint(1, 6000) + b" OK\r\n\r\n"
                ok, why = vrrpd.http_response_ok(reply, url)
                verdicts.add(ok)
                text = _mutate_bytes(rng, rng.choice(files).encode()).decode("latin-1")
                if rng.random() < 0.05:
                    text = rng.choice(["", "-", "0x"]) + "1" * rng.randint(1, 6000)
                value = vrrpd.parse_track_file_value(text)
                assert value is None or -(2**31) <= value <= 2**31
    assert verdicts == {True, False} or verdicts == {False}


@pytest.mark.parametrize("text", ["1" * 5000, "-" + "9" * 4400, "0x" + "f" * 5000, "0" + "7" * 5000],
                         ids=["decimal", "negative", "hex", "octal"])
def test_fuzz_finding_a_track_file_with_thousands_of_digits_is_out_of_range(text):
    assert vrrpd.parse_track_file_value(text) is None


def test_fuzz_finding_an_http_status_of_thousands_of_digits_is_a_bad_response():
    url = vrrpd.UrlCheck(path="/")
    assert vrrpd.http_response_ok(b"HTTP/1.1 " + b"2" * 5000 + b" OK\r\n\r\n", url) == (False, "bad HTTP response")


def _fuzz_daemon(version: int, auth: str = "", family: int = 4, vrid: int = 51, **kw):
    """A started Daemon (fake kernel, fake clock) with one instance, as the receive path sees it: (d, rt, kernel).
    v2 uses auth_pass secret12 (PASS unless `auth` says AH)."""
    vip = "10.0.0.100/24" if family == 4 else "2001:db8::100/64"
    inst = vrrpd.VrrpInstance("VI_1", interface="eth0", virtual_router_id=vrid, priority=100, advert_int=1.0,
                              version=version, auth_type=vrrpd.AuthType[auth or "PASS"] if version == 2 else None,
                              auth_pass=b"secret12" if version == 2 else b"",
                              virtual_ipaddress=[vrrpd.VirtualIP(ipaddress.ip_interface(vip))], **kw)
    config = vrrpd.Config(global_defs=vrrpd.GlobalDefs(router_id="fuzz"), vrrp_instances=[inst])
    d, kernel = offline_daemon(config)
    return d, d.runtimes[0], kernel


def test_instances_due_together_stay_together_when_the_loop_serves_them_late():
    """Ten `state MASTER` instances start together, so their Master_Down_Timers fall due at one moment; the loop
    serves them one after another. Each machine acts at the deadline, or after a stall (a wake-up STALL late or
    more) at the wake-up, so their adverts are due at one moment from then on (one wake-up for all, not one
    each)."""
    text = "".join(f"vrrp_instance VI_{n} {{\n state MASTER\n interface eth0\n virtual_router_id {n + 1}\n"
                   f" priority 150\n advert_int 1\n virtual_ipaddress {{\n 10.0.0.{100 + n}/24\n }}\n}}\n"
                   for n in range(10))
    d, kernel = offline_daemon(text)
    deadline = d.runtimes[0].machine.master_down_timer
    assert all(rt.machine.state is vrrpd.State.BACKUP and rt.timer.when == deadline for rt in d.runtimes)
    d.loop.woke = deadline  # woken on time, and served 300 ms late, the clock moving on with each instance
    d.loop.now = deadline + 0.3
    for rt in d.runtimes:
        d._on_timer(rt)
        d.loop.now += 0.01
    assert all(rt.machine.state is vrrpd.State.MASTER for rt in d.runtimes)
    assert {rt.machine.adver_timer for rt in d.runtimes} == {deadline + 1.0}
    assert {rt.timer.when for rt in d.runtimes} == {deadline + 1.0}
    # woken 0.1 ms late: the deadlines hold
    d.loop.woke = d.loop.now = deadline + 1.0 + vrrpd.STALL / 5
    for rt in d.runtimes:
        d._on_timer(rt)
        d.loop.now += 0.01
    assert {rt.timer.when for rt in d.runtimes} == {deadline + 2.0}
    # a stall, woken 300 ms late: the next advert an interval after this late one, shared by all
    woke = d.loop.woke = d.loop.now = deadline + 2.0 + 0.3
    for rt in d.runtimes:
        d._on_timer(rt)
        d.loop.now += 0.01
    assert {rt.timer.when for rt in d.runtimes} == {rt.machine.adver_timer for rt in d.runtimes} == {woke + 1.0}
    # served later than an advert interval: the machine acts at the real time
    rt = d.runtimes[0]
    d.loop.now = rt.timer.when + 1.5
    d._on_timer(rt)
    assert rt.machine.adver_timer == d.loop.now + 1.0


def test_instances_due_together_leave_in_groups_a_gap_apart_once():
    """200 instances MASTER together send their adverts in groups of ADVERT_BURST (the first of twice that: a
    batch that small stays one): from the second group on an instance's next advert comes sooner by a gap per
    group, once, and then keeps its interval; none later."""
    count = 200
    text = "".join(f"vrrp_instance VI_{n} {{\n state MASTER\n interface eth0\n virtual_router_id {n + 1}\n"
                   f" priority 150\n advert_int 1\n virtual_ipaddress {{\n 10.9.{n // 200}.{n % 200 + 1}/32\n }}\n}}\n"
                   for n in range(count))
    d, kernel = offline_daemon(text)
    _become_master(d, d.runtimes[0])
    assert all(rt.machine.state is vrrpd.State.MASTER for rt in d.runtimes)
    first = {rt.timer.when for rt in d.runtimes}
    assert len(first) == 1  # due together, as the test above shows
    due = first.pop()
    d.loop.now = due
    for rt in sorted(d.runtimes, key=lambda rt: rt.timer.seq):
        d._on_timer(rt)
        d.loop.now += 0.00001
    burst, gap = vrrpd.ADVERT_BURST, vrrpd.ADVERT_GAP
    groups = collections.Counter(round((due + 1.0 - rt.timer.when) / gap, 6) for rt in d.runtimes)
    assert groups == {float(k): 2 * burst if k == 0 else min(burst, count - (k + 1) * burst)
                      for k in range((count - 1) // burst)}
    assert all(rt.machine.adver_timer == rt.timer.when <= due + 1.0 for rt in d.runtimes)
    # the next round: each group at its own moment, every interval exactly advert_int
    before = {rt.inst.name: rt.timer.when for rt in d.runtimes}
    for rt in sorted(d.runtimes, key=lambda rt: (rt.timer.when, rt.timer.seq)):
        d.loop.now = max(d.loop.now, rt.timer.when)
        d._on_timer(rt)
    assert all(rt.timer.when == before[rt.inst.name] + 1.0 for rt in d.runtimes)


def test_instances_beyond_half_an_interval_of_groups_start_over_two_groups_to_a_moment():
    """More instances due together than half an interval has moments for (here 300 at advert_int 0.1: 32
    moments, 16 at the first and 8 at each of the others): the groups after the last moment start over from the
    first one, rather than all of them piling up at the last moment, and none comes sooner than half an
    interval."""
    count = 300
    vips = [f"10.9.0.{n + 1}/32" for n in range(200)] + [f"fd00::{n + 1:x}/128" for n in range(count - 200)]
    text = "".join(f"vrrp_instance VI_{n} {{\n state MASTER\n interface eth0\n virtual_router_id {n % 200 + 1}\n"
                   f" priority 150\n advert_int 0.1\n version 3\n virtual_ipaddress {{\n {vip}\n }}\n}}\n"
                   for n, vip in enumerate(vips))
    d, kernel = offline_daemon(text)
    _become_master(d, d.runtimes[0])
    assert all(rt.machine.state is vrrpd.State.MASTER for rt in d.runtimes)
    due = {rt.timer.when for rt in d.runtimes}.pop()
    d.loop.now = due
    for rt in sorted(d.runtimes, key=lambda rt: rt.timer.seq):
        d._on_timer(rt)
        d.loop.now += 0.000001
    burst, gap = vrrpd.ADVERT_BURST, min(vrrpd.ADVERT_GAP, 0.1 / 64)
    moments = collections.Counter(round((due + 0.1 - rt.timer.when) / gap, 6) for rt in d.runtimes)
    span = int(0.05 / gap + 1e-9)
    rest = count - (span + 1) * burst  # the instances of the second round: 36, from the first moment on
    assert moments == {float(k): (2 * burst if k == 0 else burst) + min(burst, max(0, rest - k * burst))
                       for k in range(span)}
    assert all(due + 0.05 <= rt.timer.when <= due + 0.1 for rt in d.runtimes)


def test_advance_advert_acts_once_per_mastership_and_never_below_half_an_interval():
    m = vrrpd.VrrpMachine("VI_1", vrid=1, priority=255, advert_int=1.0, version=3, primary_ip=IP4("10.0.0.1"),
                          addresses=[IP4("10.0.0.100")])
    m.advance_advert(0.5)
    assert m.adver_timer is None  # not MASTER: nothing to advance
    m.start(100.0)
    assert m.state is vrrpd.State.MASTER and m.adver_timer == 101.0
    m.advance_advert(0.9)
    assert m.adver_timer == 100.5
    m.advance_advert(0.1)
    assert m.adver_timer == 100.5


def _become_master(d, rt):
    d.loop.advance(max(0.0, rt.machine.master_down_timer - d.loop.time()) + 0.001)


@pytest.mark.parametrize("version", [2, 3])
def test_fuzz_daemon_receive_path_survives_mutated_adverts(version):
    """Whole packets through the Daemon's receive path: receive checks, demultiplexing and the state machine."""
    d, rt, kernel = _fuzz_daemon(version)
    rng = random.Random(version)
    src, group = IP4("10.0.0.2"), IP4("224.0.0.18")
    seeds = [vrrpd.encode_ipv4(src, dst, vrrpd.encode_advert(
        vrrpd.VrrpAdvert(version, 51, prio, [IP4("10.0.0.100")], 1.0, 1 if version == 2 else 0,
                         b"secret12" if version == 2 else b""), src, dst))
             for prio in (0, 50, 100, 200, 255) for dst in (group, group, IP4("10.0.0.1"))]
    deadline = time.monotonic() + _fuzz_budget(0.5)
    count = 0
    while time.monotonic() < deadline:
        data = rng.choice(seeds) if rng.random() < 0.2 else _mutate_bytes(rng, rng.choice(seeds))
        try:
            kernel.deliver(d, data)
        except Exception as exc:
            raise AssertionError(f"{exc!r} on packet {data.hex()}") from exc
        count += 1
    assert count > 500
    assert rt.adverts_received > 0 and sum(rt.bad_packets.values()) > 0, (rt.adverts_received, rt.bad_packets)


def test_fuzz_daemon_ipv6_receive_path_survives_mutated_adverts():
    IP6 = ipaddress.IPv6Address
    d, rt, kernel = _fuzz_daemon(3, family=6, vrid=52)
    rng = random.Random(6)
    seeds = [vrrpd.encode_advert(vrrpd.VrrpAdvert(3, 52, prio, [IP6("2001:db8::100")], 1.0, 0, b""))
             for prio in (0, 50, 100, 200, 255)]
    deadline = time.monotonic() + _fuzz_budget(0.5)
    count = 0
    while time.monotonic() < deadline:
        msg = _mutate_bytes(rng, rng.choice(seeds)) if rng.random() < 0.8 else rng.choice(seeds)
        if count % 20 == 0 and rt.machine.state != vrrpd.State.MASTER:  # as MASTER too
            _become_master(d, rt)
        dst = IP6(rng.choice(["ff02::12", "fe80::1"]))
        try:
            kernel.deliver(d, vrrpd.Received(IP6("fe80::2"), dst, rng.choice([255, 255, 64]), msg), family=6)
        except Exception as exc:
            raise AssertionError(f"{exc!r} on IPv6 advert {msg.hex()} to {dst}") from exc
        count += 1
    assert count > 500 and rt.adverts_received > 0 and sum(rt.bad_packets.values()) > 0, rt.bad_packets


def test_fuzz_finding_ipv6_adverts_of_ever_new_vrids_log_once_per_period(caplog):
    """Found by the IPv6 receive fuzz: the complaint was rate-limited per VRID, so garbage with ever new VRIDs
    logged up to 255 lines per period (IPv4 already limits per interface)."""
    IP6 = ipaddress.IPv6Address
    d, _rt, kernel = _fuzz_daemon(3, family=6, vrid=52)
    caplog.set_level(logging.WARNING, logger="vrrpd")
    for vrid in range(1, 200):
        if vrid != 52:
            msg = vrrpd.encode_advert(vrrpd.VrrpAdvert(3, vrid, 100, [IP6("2001:db8::1")], 1.0, 0, b""))
            kernel.deliver(d, vrrpd.Received(IP6("fe80::2"), IP6("ff02::12"), 255, msg), family=6)
    assert sum("Unknown VRID" in r.getMessage() for r in caplog.records) == 1


def test_fuzz_daemon_ah_receive_path_survives_authenticated_garbage():
    """A peer holding the AH key sends mutated VRRP inside a correct AH header (ICV over the garbage)."""
    d, rt, kernel = _fuzz_daemon(2, auth="AH")
    assert rt.ah is not None
    rng = random.Random(5)
    src, group = IP4("10.0.0.2"), IP4("224.0.0.18")
    good = vrrpd.encode_advert(vrrpd.VrrpAdvert(2, 51, 100, [IP4("10.0.0.100")], 1.0, 2, b""))
    deadline = time.monotonic() + _fuzz_budget(0.5)
    seq = count = 0
    while time.monotonic() < deadline:
        vrrp = _mutate_bytes(rng, good) if rng.random() < 0.8 else good[:rng.randint(0, 4)]
        vrrp = vrrp[:1] + b"\x33" + vrrp[2:] if len(vrrp) > 1 else vrrp  # keep VRID 51 for demultiplexing
        seq += 1
        if seq % 20 == 0 and rt.machine.state != vrrpd.State.MASTER:  # as MASTER too, not only as BACKUP
            _become_master(d, rt)
        packet = vrrpd.build_ipv4_ah(src, group, vrrp, b"secret12", seq, seq & 0xFFFF or 1)
        try:
            kernel.deliver(d, packet, protocol=vrrpd.IPPROTO_AH)
        except Exception as exc:
            raise AssertionError(f"{exc!r} on AH packet {packet.hex()}") from exc
        count += 1
    assert count > 200 and sum(rt.bad_packets.values()) > 0, rt.bad_packets


def test_fuzz_finding_master_hearing_a_two_byte_vrrp_message_inside_valid_ah():
    """Found by the fuzzer: a MASTER read the priority byte of an AH-carried message without checking its length."""
    d, rt, kernel = _fuzz_daemon(2, auth="AH")
    _become_master(d, rt)
    assert rt.machine.state == vrrpd.State.MASTER
    # a sequence number above the ones our own adverts used (the counter is shared)
    kernel.deliver(d, vrrpd.build_ipv4_ah(IP4("10.0.0.2"), IP4("224.0.0.18"), b"\x21\x33", b"secret12", 1000, 1),
                   protocol=vrrpd.IPPROTO_AH)
    assert rt.bad_packets.get("truncated") == 1 and rt.machine.state == vrrpd.State.MASTER


CONFIG_TOKENS = ["{", "}", "{", "}", '"', "!", "#", "\\", "\n", "\t", "include /nonexistent/*.conf", "$X", "$X=1",
                 "@a", "@^b", "vrrp_instance", "virtual_server", "real_server", "vrrp_script", "track_script",
                 "10.0.0.1", "::1", "10.0.0.1/40", "255", "-1", "99999999999", "0.0001", "nan", "inf", "1e400",
                 "on", "off", "~SEQ(x,1,3)", "x{a,b}", "virtual_ipaddress", "unicast_peer", "authentication",
                 "9" * 5000, "0x" + "f" * 5000]


def _mutate_config(rng: random.Random, text: str) -> str:
    import re

    words = re.split(r"(\s+)", text)
    for _ in range(rng.randint(1, 6)):
        op, i = rng.randint(0, 5), rng.randrange(len(words) + 1)
        if op == 0 and i < len(words):
            del words[i]
        elif op == 1:
            words.insert(i, rng.choice(CONFIG_TOKENS))
        elif op == 2 and words:
            words.insert(i, words[rng.randrange(len(words))])
        elif op == 3 and i < len(words):
            words[i] = rng.choice(CONFIG_TOKENS)
        elif op == 4:
            words.insert(i, "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(1, 5))))
        elif words:
            j = rng.randrange(len(words))
            del words[min(i, j):max(i, j)]
    return "".join(words)


def test_fuzz_config_parser_reports_diagnostics_and_never_hangs(tmp_path):
    texts = [p.read_text(errors="replace") for p in sorted(SEEDS.glob("*.conf"))]
    texts.append((HERE / "vrrpd.conf.example").read_text())
    rng = random.Random(3)
    deadline = time.monotonic() + _fuzz_budget(1.5)
    count = with_errors = 0
    slowest = 0.0
    while time.monotonic() < deadline:
        text = (_mutate_config(rng, rng.choice(texts)) if rng.random() < 0.9
                else "".join(chr(rng.randint(0, 127)) for _ in range(rng.randint(0, 300))))
        started = time.monotonic()
        try:
            with _HangGuard(5.0):
                _config, diags = vrrpd.parse_config_text(text, str(tmp_path / "fuzz.conf"))
        except vrrpd.ConfigError:
            diags = [None]
        except Exception as exc:
            (tmp_path / "finding.conf").write_text(text)
            raise AssertionError(f"{exc!r}; input saved in {tmp_path / 'finding.conf'}") from exc
        slowest = max(slowest, time.monotonic() - started)
        with_errors += bool(diags)
        count += 1
    assert count > 20 and with_errors > count // 4, (count, with_errors)
    assert slowest < 2.0, slowest


# --------------------------------------------------------------------------------------------
# H3. Fault soak: two vrrpd nodes and one keepalived node on one VRID while faults rain down
# --------------------------------------------------------------------------------------------
# `make soak` runs VRRPD_SOAK_SECONDS (600 by default there) with a 10,000 packets/s garbage flood;
# the suite runs a short version. Invariants are sampled every 100 ms through rtnetlink sockets
# opened inside each namespace.

SOAK_SECONDS = float(os.environ.get("VRRPD_SOAK_SECONDS", "0"))
SOAK_ADVERT = 0.5
SOAK_PRIORITY = {"A": 100, "B": 150, "K": 120}
SOAK_WEIGHT = -60
SOAK_SCRIPT_INTERVAL, SOAK_SCRIPT_TIMEOUT = 1, 1
SOAK_X = f"{LAB_NET}.66"  # garbage sender and the SMTP server that never answers


def _pcap_last_time(path: Path) -> Optional[float]:
    """Time stamp of the last whole packet of a pcap file being written (tcpdump -U), None without one."""
    import struct

    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < 24:
        return None
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    scale = 1e-9 if data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    offset, last = 24, None
    while offset + 16 <= len(data):
        sec, frac, caplen, _wire = struct.unpack_from(order + "IIII", data, offset)
        if offset + 16 + caplen > len(data):
            break
        last, offset = sec + frac * scale, offset + 16 + caplen
    return last


def _master_down(priority: int, advert: float = SOAK_ADVERT) -> float:
    """Master_Down_Interval of RFC 5798 (VRRPv3): 3 * advert + skew."""
    return 3 * advert + (256 - priority) * advert / 256


# a tick of observation lag and the daemons' own reaction time on a loaded 2-core machine
SOAK_SETTLE = _master_down(min(SOAK_PRIORITY.values()) + SOAK_WEIGHT) + 0.6
SOAK_STARTUP = 3.0  # a restarted daemon is up and listening within this
SOAK_STALL = 2.0  # a master holding the VIP this long without an advert on the wire is stuck (4 adverts missed)


def _read_or(path, default: str = "?\n") -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return default


def _socket_in_netns(ns: str, family: int, kind: int, proto: int):
    """A socket created inside namespace `ns` (it stays there); the calling thread comes back home."""
    import ctypes
    import socket

    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet = 0x40000000
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, clone_newnet) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        try:
            return socket.socket(family, kind, proto)
        finally:
            if libc.setns(home, clone_newnet) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")
    finally:
        os.close(home)
        os.close(target)


class _AddrWatch:
    """Dumps the IPv4 addresses of one namespace over rtnetlink: cheap enough for every 100 ms."""

    def __init__(self, ns: str):
        import socket

        self.sock = _socket_in_netns(ns, socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.bind((0, 0))
        self.sock.settimeout(1.0)
        self.seq = 0

    def addresses(self) -> List[str]:
        import socket

        self.seq += 1
        self.sock.send(vrrpd.nlmsg_pack(vrrpd.RTM_GETADDR, vrrpd.NLM_F_REQUEST | vrrpd.NLM_F_DUMP, self.seq,
                                        vrrpd.IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)))
        out = []
        while True:
            for rtype, _f, seq, _p, body in vrrpd.nlmsg_parse(self.sock.recv(1 << 16)):
                if seq != self.seq:
                    continue
                if rtype in (vrrpd.NLMSG_DONE, vrrpd.NLMSG_ERROR):
                    return out
                info = vrrpd.parse_addr(body)
                if info is not None:
                    out.append(str(info.address.ip))

    def close(self) -> None:
        self.sock.close()


SOAK_FLOOD = r"""
import ipaddress, random, socket, sys, time
sys.path.insert(0, sys.argv[1])
import vrrpd
IP4 = ipaddress.IPv4Address
src, group = IP4(sys.argv[2]), IP4("224.0.0.18")
rate, seconds = float(sys.argv[3]), float(sys.argv[4])
rng = random.Random(int(sys.argv[5]))
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
tx.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
def adv(prio=255, vrid=51, version=3, interval=0.5):
    a = vrrpd.VrrpAdvert(version, vrid, prio, [IP4("10.55.0.100")], interval, 0, b"")
    return vrrpd.encode_advert(a, src, group)
def flip_checksum(m):
    return m[:6] + bytes([m[6] ^ 0x5A]) + m[7:]
def random_bytes():
    data = bytearray(rng.getrandbits(8) for _ in range(rng.randint(0, 60)))
    if data:
        data[0] = rng.choice([0x00, 0x11, 0x21, 0x32, 0x41, 0xFF])  # never a VRRPv3 advert
    return bytes(data)
pool = []
for _ in range(400):
    kind = rng.randrange(7)
    ttl = 255
    if kind == 0:
        payload = random_bytes()
    elif kind == 1:
        payload = flip_checksum(adv())                      # bad checksum, priority 255
    elif kind == 2:
        payload, ttl = adv(), rng.choice([1, 64, 254])     # valid but not from this link
    elif kind == 3:
        payload = adv(vrid=rng.choice([1, 50, 52, 255]))   # someone else's VRID
    elif kind == 4:
        payload = adv()[:rng.randint(0, 11)]                # truncated (a whole advert is 12 bytes)
    elif kind == 5:
        payload = flip_checksum(adv(prio=0))                # a forged resignation with a bad checksum
    else:
        payload = adv(version=2)[:8] + bytes(rng.getrandbits(8) for _ in range(12))  # v2 garbage
    pool.append(vrrpd.encode_ipv4(src, group, payload, ttl=ttl))
sent, start = 0, time.monotonic()
end = start + seconds
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = int((now - start) * rate) - sent
    for _ in range(max(0, min(due, 2000))):
        tx.sendto(pool[sent % len(pool)], (str(group), 0))
        sent += 1
    time.sleep(0.002)
print(sent, flush=True)
"""

SOAK_SMTP_STALL = r"""
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 25))
s.listen(1)   # accepts nothing: the first connections hang, later ones time out in SYN_SENT
time.sleep(1e6)
"""


def _soak_conf(node: str, directory: Path, priority: int, keepalived: bool) -> str:
    mail = (f"    smtp_server {SOAK_X} 25\n    smtp_connect_timeout 2\n"
            "    notification_email {\n        ops@example.com\n    }\n"
            "    notification_email_from vrrpd@example.com\n")
    script = ("" if keepalived else
              f"vrrp_script chk_soak {{\n    script \"/bin/sh {directory}/chk.sh {node}\"\n"
              f"    interval {SOAK_SCRIPT_INTERVAL}\n    timeout {SOAK_SCRIPT_TIMEOUT}\n"
              f"    fall 1\n    rise 1\n    weight {SOAK_WEIGHT}\n}}\n")
    track = "" if keepalived else "    track_script {\n        chk_soak\n    }\n"
    if node == "B":  # the preferred node does not take the VIP back: restarts meet a running master
        track += "    nopreempt\n"
    return (f"global_defs {{\n    router_id soak-{node}\n    vrrp_version 3\n    script_user root\n{mail}}}\n"
            f"{script}"
            f"vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n"
            f"    priority {priority}\n    advert_int {SOAK_ADVERT}\n    smtp_alert\n"
            f"    virtual_ipaddress {{\n        {VIP}/24\n    }}\n{track}}}\n")


SOAK_INVALID_CONF = "vrrp_instance VI_1 {\n    state BOGUS\n    interface eth0\n    virtual_router_id 999\n"


class _SoakNode:
    """One daemon of the soak, with the bridge port that carries its cable."""

    def __init__(self, lab: Lab, directory: Path, name: str, address: str, keepalived: bool):
        self.name, self.keepalived, self.directory = name, keepalived, directory
        self.ns = lab.host(name.lower(), address)
        self.port = f"p{lab._port}"
        self.priority = SOAK_PRIORITY[name]
        # its adverts as they reach the bridge (kernel time stamps): the longest gap while it holds the VIP
        self.capture = directory / f"{name}-adverts.pcap"
        self.tcpdump = None
        if shutil.which("tcpdump"):
            # --immediate-mode: each advert reaches the file when it is captured, not up to a second later with the
            # buffer it came in (the watchdog reads the file while the soak runs)
            self.tcpdump = lab.exec(lab.bridge_ns, ["tcpdump", "-i", self.port, "-Q", "in", "-nn", "-U",
                                                    "--immediate-mode", "-w",
                                                    str(self.capture), f"ip proto 112 and src {address.split('/')[0]}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.watch = _AddrWatch(self.ns)
        # a master that goes silent gets its Python stacks dumped (SIGABRT with faulthandler on): see stalled()
        env = None if keepalived else dict(os.environ, PYTHONFAULTHANDLER="1")
        self.node = _Node(lab, self.ns, directory, name, self.conf_text(), keepalived=keepalived, env=env)
        self.alive = True
        self.link_up = True
        self.link_since = time.monotonic()
        self.dumped: set = set()  # pids whose stacks the soak's watchdog took (once per process)
        self.started = time.monotonic()
        self.lifetimes: List[tuple] = []  # (pid, first RSS kB, last RSS kB, samples) of processes that ended

    def conf_text(self, delta: int = 0) -> str:
        return _soak_conf(self.name, self.directory, self.priority + delta, self.keepalived)

    @property
    def pid(self) -> int:
        return self.node.proc.pid

    def pids(self) -> List[int]:
        return self.node.pids()

    def kill9(self) -> None:
        self.node.crash()
        self.alive = False

    def restart(self) -> None:
        self.node.conf.write_text(self.conf_text())
        self.node.start()
        self.alive = True
        self.started = time.monotonic()

    def holds(self) -> bool:
        return VIP in self.watch.addresses()


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _sleepers(lab: Lab, ns: str) -> int:
    """Hung tracked scripts (`sleep 30`) still alive in a namespace."""
    count = 0
    for pid in sh(["ip", "netns", "pids", ns], check=False).stdout.split():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"30"]:
                count += 1
        except OSError:
            pass
    return count


class Soak:
    """The fault soak: random faults, invariants every 100 ms, counts at the end."""

    def __init__(self, lab: Lab, directory: Path, seconds: float, flood_rate: float, seed: int):
        self.lab, self.directory, self.seconds, self.flood_rate = lab, directory, seconds, flood_rate
        self.rng = random.Random(seed)
        (directory / "chk.sh").write_text(f'[ -e "{directory}/hang-$1" ] && exec sleep 30\nexit 0\n')
        self.x = lab.host("x", f"{SOAK_X}/24")
        smtp = directory / "smtp_stall.py"
        smtp.write_text(SOAK_SMTP_STALL)
        lab.exec(self.x, [PYTHON, str(smtp)])
        (directory / "flood.py").write_text(SOAK_FLOOD)
        self.nodes = {
            "A": _SoakNode(lab, directory, "A", f"{LAB_NET}.1/24", keepalived=False),
            "B": _SoakNode(lab, directory, "B", f"{LAB_NET}.2/24", keepalived=False),
            "K": _SoakNode(lab, directory, "K", f"{LAB_NET}.3/24", keepalived=True),
        }
        self.pending: List[tuple] = []  # (when, description, callable)
        self.disturbed_until = time.monotonic() + SOAK_STARTUP + SOAK_SETTLE
        self.counts = {k: 0 for k in (
            "samples", "checked", "violation_two_holders", "violation_no_holder", "two_holders_keepalived_flooded",
            "vrrpd_crash", "keepalived_exit", "stalled_master_dumped",
            "link_flap", "kill9_restart", "sighup_valid", "sighup_invalid", "flood", "flood_seconds", "flood_packets",
            "script_hang", "vip_deleted", "settled_seconds")}
        self.violations: List[str] = []
        self.events: List[str] = []
        self.floods: List[subprocess.Popen] = []
        self.rss: dict = {}  # pid -> [first kB, last kB, samples]
        # node -> [CPU s, wall s, peak cores over 1 s, CPU s while flooded, wall s while flooded]; last reading
        self.cpu = {name: [0.0, 0.0, 0.0, 0.0, 0.0] for name in self.nodes}
        self.cpu_last: dict = {}  # node -> (pids, monotonic time, CPU s)
        self.holder_log: List[tuple] = []  # (wall time, holders among live nodes) every sample
        self.conf_delta = {name: 0 for name in self.nodes}
        self.first_round: List[str] = []
        self.two_holders: List[tuple] = []  # (wall time, holder names) of each two-holder sample
        self.flood_until = 0.0  # a flood is on (or its Master_Down_Interval after) until then
        self.stopping = threading.Event()  # the run is over: the watchdog ends
        self.harness_stalls, self.harness_stalled = 0, 0.0  # snapshots of the machine taken while the harness hung
        self.clock_offset: Optional[float] = None  # wall clock minus monotonic clock, and when it last jumped
        self.clock_jumped = -1e9

    # -- faults ---------------------------------------------------------------------------------
    def later(self, delay: float, what: str, action: Callable[[], None]) -> None:
        self.pending.append((time.monotonic() + delay, what, action))

    def disturb(self, seconds: float) -> None:
        self.disturbed_until = max(self.disturbed_until, time.monotonic() + seconds + SOAK_SETTLE)

    def log(self, text: str) -> None:
        wall = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        self.events.append(f"{time.monotonic() - self.t0:7.2f} {wall} {text}")

    def fault(self) -> None:
        """One random fault, undone later where it has an end."""
        rng, nodes = self.rng, self.nodes
        if not self.first_round:  # every kind once, in random order, then at random
            self.first_round = ["flap", "kill", "hup", "hup_bad", "flood", "hang", "vipdel"]
            rng.shuffle(self.first_round)
            self.first_round.append("")
        kind = self.first_round.pop(0) if self.first_round[0] else rng.choice(
            ["flap", "flap", "kill", "kill", "hup", "hup_bad", "flood", "hang", "hang", "vipdel"])
        if kind == "flap":
            if not any(n.link_up for n in nodes.values()):
                return self.retry(kind)
            n = rng.choice([n for n in nodes.values() if n.link_up])
            bridge_side = rng.random() < 0.5
            down = rng.uniform(0.3, 3.0)

            def set_link(up: bool, n=n, bridge_side=bridge_side) -> None:
                if bridge_side:
                    self.lab.ip("link", "set", n.port, "up" if up else "down", ns=self.lab.bridge_ns)
                else:
                    self.lab.ip("link", "set", "eth0", "up" if up else "down", ns=n.ns)
                n.link_up, n.link_since = up, time.monotonic()
                self.disturb(0)
            set_link(False)
            self.later(down, f"link up {n.name}", lambda: set_link(True))
            self.counts["link_flap"] += 1
            self.log(f"link down {n.name} ({'bridge port' if bridge_side else 'eth0'}) for {down:.1f}s")
        elif kind == "kill":
            # A never dies so that one vrrpd lives through the whole run for the RSS invariant
            candidates = [n for n in (nodes["B"], nodes["K"]) if n.alive]
            if not candidates:
                return self.retry(kind)
            n = rng.choice(candidates)
            self.end_rss(n)
            n.kill9()
            dead = rng.uniform(0.5, 3.0)

            def restart(n=n) -> None:
                n.restart()
                self.disturb(SOAK_STARTUP)
            self.disturb(0)
            self.later(dead, f"restart {n.name}", restart)
            self.counts["kill9_restart"] += 1
            self.log(f"kill -9 {n.name}, restart in {dead:.1f}s")
        elif kind == "hup":
            n = rng.choice([n for n in nodes.values() if n.alive])
            self.conf_delta[n.name] = -5 if self.conf_delta[n.name] == 0 else 0
            n.node.conf.write_text(n.conf_text(self.conf_delta[n.name]))
            self.signal(n, signal.SIGHUP)
            self.disturb(1.0)
            self.counts["sighup_valid"] += 1
            self.log(f"SIGHUP {n.name} with priority {n.priority + self.conf_delta[n.name]}")
        elif kind == "hup_bad":
            n = rng.choice([n for n in (nodes["A"], nodes["B"]) if n.alive])
            n.node.conf.write_text(SOAK_INVALID_CONF)
            self.signal(n, signal.SIGHUP)
            self.later(1.0, f"restore config {n.name}",
                       lambda n=n: n.node.conf.write_text(n.conf_text(self.conf_delta[n.name])))
            self.disturb(1.0)
            self.counts["sighup_invalid"] += 1
            self.log(f"SIGHUP {n.name} with an invalid configuration")
        elif kind == "flood":
            seconds = rng.uniform(1.0, 4.0) if self.seconds < 120 else rng.uniform(3.0, 20.0)
            self.floods.append(self.lab.exec(self.x, [
                PYTHON, str(self.directory / "flood.py"), str(HERE), SOAK_X, str(self.flood_rate), str(seconds),
                str(rng.randrange(1 << 30))], stdout=subprocess.PIPE, text=True))
            self.counts["flood"] += 1
            self.counts["flood_seconds"] += round(seconds, 1)
            self.flood_until = max(self.flood_until, time.monotonic() + seconds + SOAK_SETTLE)
            self.log(f"garbage flood {self.flood_rate:.0f}/s for {seconds:.1f}s")
        elif kind == "hang":
            n = rng.choice([nodes["A"], nodes["B"]])
            flag = self.directory / f"hang-{n.name}"
            if flag.exists():
                return self.retry(kind)
            flag.touch()
            lasting = rng.uniform(2.0, 6.0)
            effect = SOAK_SCRIPT_INTERVAL + SOAK_SCRIPT_TIMEOUT + 1.0

            def unhang(flag=flag) -> None:
                flag.unlink(missing_ok=True)
                self.disturb(effect)
            self.disturb(effect)
            self.later(lasting, f"script {n.name} answers again", unhang)
            self.counts["script_hang"] += 1
            self.log(f"tracked script of {n.name} hangs for {lasting:.1f}s")
        elif kind == "vipdel":
            holders = [n for n in nodes.values() if n.alive and n.link_up and n.holds()]
            if not holders:
                return self.retry(kind)
            n = rng.choice(holders)
            self.lab.ip("addr", "del", f"{VIP}/24", "dev", "eth0", ns=n.ns, check=False)
            self.disturb(1.0)
            self.counts["vip_deleted"] += 1
            self.log(f"VIP deleted behind {n.name}'s back")

    def retry(self, kind: str) -> None:
        """A fault that could not happen now (nobody holds the VIP to delete...) comes again next time."""
        if self.first_round:
            self.first_round.insert(0, kind)

    def signal(self, n: _SoakNode, sig: int) -> None:
        try:
            os.kill(n.pid, sig)
        except OSError:
            pass

    # -- invariants -----------------------------------------------------------------------------
    def sample_cpu(self) -> None:
        now, flooded = time.monotonic(), any(p.poll() is None for p in self.floods)
        for n in self.nodes.values():
            pids = tuple(n.pids()) if n.alive else ()
            cpu = _cpu_seconds(list(pids))
            last = self.cpu_last.get(n.name)
            if last is not None and last[0] == pids and pids and now > last[1]:
                acc, dt, used = self.cpu[n.name], now - last[1], max(0.0, cpu - last[2])
                acc[0], acc[1], acc[2] = acc[0] + used, acc[1] + dt, max(acc[2], used / dt)
                if flooded:
                    acc[3], acc[4] = acc[3] + used, acc[4] + dt
            self.cpu_last[n.name] = (pids, now, cpu)

    def longest_master_gap(self, n: _SoakNode) -> Optional[tuple]:
        """(seconds, adverts, wall time it began) of the longest gap between two of n's adverts on the wire
        while n held the VIP (every holder sample between them has it, its link up), or None without a capture."""
        import bisect

        if n.tcpdump is None or not n.capture.exists():
            return None
        stamps = _advert_times(n.capture)
        times = [t for t, _h in self.holder_log]
        longest, when = 0.0, 0.0
        for t1, t2 in zip(stamps, stamps[1:]):
            i, j = bisect.bisect_left(times, t1), bisect.bisect_right(times, t2)
            if j > i and t2 - t1 > longest and all(n.name in self.holder_log[k][1] for k in range(i, j)):
                longest, when = t2 - t1, t1
        return longest, len(stamps), when

    def watchdog(self) -> None:
        """A thread: a vrrpd node that holds the VIP (at a sample less than 0.5 s old), link up, and has put no
        advert on the wire for SOAK_STALL seconds is stuck. Once per process, while it is stuck: the kernel stacks
        and wait channels of its threads, of its children and of this harness, and this harness's Python stacks;
        nothing that stops the node (a stall is often the machine's: a file system held up by slow discards blocks
        writers and execs for seconds). A jump of the wall clock (the capture's time) is said, not taken for one."""
        while not self.stopping.wait(0.25):
            try:
                self._watch_once()
            except Exception as exc:  # the watchdog must not end the soak
                self.log(f"watchdog error: {exc!r}")

    def _watch_once(self) -> None:
        import faulthandler

        now, wall = time.monotonic(), time.time()
        offset, self.clock_offset = self.clock_offset, wall - now
        if offset is not None and abs(self.clock_offset - offset) > 0.2:
            self.log(f"the wall clock jumped by {self.clock_offset - offset:+.1f}s")  # not a silence on the wire
            self.clock_jumped = now
        if now - self.clock_jumped < 2 * SOAK_STALL:
            return
        sampled, holders = self.holder_log[-1] if self.holder_log else (wall, set())
        if wall - sampled > SOAK_STALL and self.harness_stalls < 3 and wall - self.harness_stalled > 10:
            # the harness's own loop (a sample every 100 ms) is held up: what holds the machine
            self.harness_stalls += 1
            self.harness_stalled = wall
            dump = self.directory / f"harness-stall-{self.harness_stalls}.txt"
            self.log(f"the harness took no sample for {wall - sampled:.1f}s: the machine's state in {dump.name}")
            with open(dump, "w") as out:
                out.write(f"no sample for {wall - sampled:.3f} s; load {_read_or('/proc/loadavg')}")
                for what in ("cpu", "io", "memory"):
                    out.write(f"pressure {what}: {_read_or(f'/proc/pressure/{what}')}")
                for task in sorted(Path(f"/proc/{os.getpid()}/task").glob("*")):
                    out.write(f"--- harness task {task.name} wchan {_read_or(task / 'wchan')}\n"
                              f"{_read_or(task / 'stack')}\n")
                out.flush()
                faulthandler.dump_traceback(out, all_threads=True)
                out.flush()
                subprocess.run(["ps", "-eo", "pid,cls,rtprio,ni,stat,pcpu,etime,wchan:24,args", "--sort=-pcpu"],
                               stdout=out, stderr=subprocess.STDOUT, check=False, timeout=30)
        for n in list(self.nodes.values()):
            if (n.keepalived or not n.alive or not n.link_up or n.name not in holders or n.pid in n.dumped
                    or wall - sampled > 0.5 or now - n.link_since < SOAK_STALL
                    or now - n.started < SOAK_STARTUP + SOAK_STALL):
                continue
            last = _pcap_last_time(n.capture)
            since = sampled  # it has held the VIP since the first of the latest samples that all have it
            for t, h in reversed(self.holder_log):
                if n.name not in h:
                    break
                since = t
            if last is None or wall - max(last, since) < SOAK_STALL:
                continue
            pid = n.pid
            n.dumped.add(pid)
            self.counts["stalled_master_dumped"] += 1
            dump = self.directory / f"{n.name}-stall-{pid}.txt"
            self.log(f"{n.name} (pid {pid}) holds the VIP and sent no advert for {wall - last:.1f}s (holding for "
                     f"{wall - since:.1f}s): stacks in {dump.name} and its log")
            with open(dump, "w") as out:
                out.write(f"{n.name} pid {pid}: no advert for {wall - last:.3f} s; the harness's last sample "
                          f"{wall - sampled:.3f} s ago; load {Path('/proc/loadavg').read_text()}")
                for what in ("cpu", "io", "memory"):
                    out.write(f"pressure {what}: {_read_or(f'/proc/pressure/{what}')}")
                children = [int(c) for t in Path(f"/proc/{pid}/task").glob("*")
                            for c in _read_or(t / "children", "").split()]  # a script it is starting, say
                for label, proc in ([(f"{n.name} {pid}", pid)] + [(f"{n.name}'s child {c}", c) for c in children]
                                    + [(f"harness {os.getpid()}", os.getpid())]):
                    for task in sorted(Path(f"/proc/{proc}/task").glob("*")):
                        out.write(f"--- {label} task {task.name} {_read_or(task / 'comm').strip()} "
                                  f"state {_read_or(task / 'stat').rsplit(')', 1)[-1].split()[:1]} "
                                  f"wchan {_read_or(task / 'wchan')}\nsyscall {_read_or(task / 'syscall')}"
                                  f"{_read_or(task / 'stack')}\n")
                out.write("--- harness Python stacks\n")
                out.flush()
                faulthandler.dump_traceback(out, all_threads=True)

    def sample_rss(self) -> None:
        self.sample_cpu()
        for n in self.nodes.values():
            # the series of a process starts once it has finished starting (imports, first timers)
            if n.alive and not n.keepalived and time.monotonic() - n.started > SOAK_STARTUP + 2:
                kb = _rss_kb(n.pid)
                fds = _open_fds(n.pid)
                if kb:
                    now = time.monotonic()
                    entry = self.rss.setdefault(n.pid, [kb, kb, 0, n.name, fds, fds, now, now])
                    entry[1], entry[2], entry[5], entry[7] = kb, entry[2] + 1, fds, now

    def end_rss(self, n: _SoakNode) -> None:
        pass  # the per-pid series stays in self.rss; a new pid starts a new one

    def check(self) -> None:
        now = time.monotonic()
        self.counts["samples"] += 1
        for n in self.nodes.values():
            if n.alive and n.node.proc.poll() is not None:
                n.alive = False
                key = "keepalived_exit" if n.keepalived else "vrrpd_crash"
                self.counts[key] += 1
                self.log(f"{n.name} EXITED by itself with status {n.node.proc.returncode}; its log ends:\n"
                         + "\n".join(n.node.log().splitlines()[-15:]))
                n.restart()
                self.disturb(SOAK_STARTUP)
        live = [n for n in self.nodes.values() if n.alive and n.link_up]
        holders = [n.name for n in live if n.holds()]
        self.holder_log.append((time.time(), set(holders)))
        if now < self.disturbed_until:
            return
        self.counts["checked"] += 1
        if len(holders) > 1 and "K" in holders and now < self.flood_until:
            # keepalived logs every bad packet and falls ~5x behind a 10,000/s flood: its adverts leave late
            # and it misses ours, so it or a vrrpd node takes the VIP too. Counted apart, not blamed on vrrpd.
            self.counts["two_holders_keepalived_flooded"] += 1
            self.log(f"two holders {holders} while keepalived is flooded")
        elif len(holders) > 1:
            self.counts["violation_two_holders"] += 1
            self.log(f"VIOLATION two holders {holders}")
            self.violations.append(self.events[-1])
            self.two_holders.append((time.time(), holders))
        if live and not holders:
            self.counts["violation_no_holder"] += 1
            self.log(f"VIOLATION no holder, healthy {[n.name for n in live]}")
            self.violations.append(self.events[-1])

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> dict:
        self.t0 = time.monotonic()
        watchdog = threading.Thread(target=self.watchdog, name="soak-watchdog", daemon=True)
        watchdog.start()
        try:
            return self._run()
        finally:
            self.stopping.set()
            watchdog.join(timeout=60)

    def _run(self) -> dict:
        end = self.t0 + self.seconds
        next_fault, gap, overlap = self.t0, 0.0, False
        next_rss = self.t0
        tick = self.t0
        while True:
            now = time.monotonic()
            for item in [p for p in self.pending if p[0] <= now]:
                self.pending.remove(item)
                self.log(item[1])
                item[2]()
            if now >= end and not self.pending:
                break
            quiet = not self.pending and now >= self.disturbed_until + gap
            if now < end - SOAK_SETTLE - 4 and (quiet or (overlap and now >= next_fault)):
                self.fault()
                # mostly a settled, checked stretch comes next; sometimes faults pile up on one another
                overlap = self.rng.random() < 0.25
                next_fault, gap = now + self.rng.uniform(0.3, 1.5), self.rng.uniform(1.0, 4.0)
            if now >= next_rss:
                self.sample_rss()
                next_rss = now + 1.0
            self.check()
            for proc in [p for p in self.floods if p.poll() is not None]:
                self.floods.remove(proc)
                out = proc.stdout.read().split() if proc.stdout else []
                self.counts["flood_packets"] += int(out[0]) if out else 0
            tick = max(tick + 0.1, time.monotonic() + 0.05)  # when late, no burst of catch-up samples
            time.sleep(max(0.0, tick - time.monotonic()))
        # a last settled stretch: faults have ended, everything must be quiet and whole
        for p in self.floods:
            p.wait(timeout=30)
            self.counts["flood_packets"] += int((p.stdout.read().split() or ["0"])[0]) if p.stdout else 0
        quiet_end = time.monotonic() + SOAK_SETTLE + 2.0
        while time.monotonic() < quiet_end:
            self.check()
            time.sleep(0.1)
        self.sample_rss()
        self.counts["settled_seconds"] = round(self.counts["checked"] / 10.0, 1)
        return self.counts

    def close(self) -> None:
        for n in self.nodes.values():
            n.watch.close()
            if n.tcpdump is not None and n.tcpdump.poll() is None:
                n.tcpdump.send_signal(signal.SIGINT)
                try:
                    n.tcpdump.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    n.tcpdump.kill()

    def usurpers(self) -> dict:
        """Who broke each two-holder sample: the holder that entered MASTER last, while the other was
        still master (from the daemons' logs, to the second); '?' when the logs cannot tell."""
        entries = {}
        for n in self.nodes.values():
            stamps = []
            for line in n.node.log().splitlines():
                if "Entering MASTER STATE" in line:
                    try:
                        stamps.append(time.mktime(time.strptime(line[:24], "%a %b %d %H:%M:%S %Y")))
                    except ValueError:
                        pass
            entries[n.name] = stamps
        blame: dict = {}
        for when, holders in self.two_holders:
            last = {h: max((t for t in entries[h] if t <= when + 0.5), default=None) for h in holders}
            known = {h: t for h, t in last.items() if t is not None}
            latest = max(known.values()) if known else None
            culprits = [h for h, t in known.items() if t == latest]
            who = culprits[0] if len(culprits) == 1 and len(known) == len(holders) else "?"
            blame[who] = blame.get(who, 0) + 1
        return blame


def _rss_growth(rss: dict, minimum_seconds: float) -> List[tuple]:
    """(name, pid, first kB, last kB, first fds, last fds) of each vrrpd process whose RSS was sampled over at
    least `minimum_seconds` (first to last sample: on a loaded machine the 1 s sampler falls behind, and a count
    of samples would call a process that lived through the whole run short-lived)."""
    return [(v[3], pid, v[0], v[1], v[4], v[5]) for pid, v in rss.items() if v[7] - v[6] >= minimum_seconds]


def run_soak(lab: Lab, directory: Path, seconds: float, flood_rate: float, seed: int = 8) -> Soak:
    soak = Soak(lab, directory, seconds, flood_rate, seed)
    try:
        soak.run()
    finally:
        soak.close()
    return soak


def _report_soak(soak: Soak) -> str:
    lines = ["soak invariants and faults:"] + [f"  {k:24} {v}" for k, v in soak.counts.items()]
    lines.append(f"  {'two holders, taken by':24} {soak.usurpers() or '-'}")
    if soak.counts["flood_seconds"]:
        rate = soak.counts["flood_packets"] / soak.counts["flood_seconds"]
        lines.append(f"  {'flood rate (packets/s)':24} {rate:.0f}")
    for name, pid, first, last, fds0, fds1 in _rss_growth(soak.rss, 10):
        lines.append(f"  RSS {name} pid {pid}: {first} kB -> {last} kB, open files {fds0} -> {fds1}")
    for n in soak.nodes.values():
        cpu, wall, peak, fcpu, fwall = soak.cpu[n.name]
        flooded = f", {fcpu / fwall:.3f} while flooded" if fwall else ""
        lines.append(f"  CPU {n.name} ({'keepalived' if n.keepalived else 'vrrpd'}): {cpu / wall if wall else 0:.3f} "
                     f"cores on average{flooded}, peak {peak:.3f} over 1 s")
        gap = soak.longest_master_gap(n)
        if gap is not None:
            began = time.strftime("%H:%M:%S", time.localtime(gap[2])) + f".{int(gap[2] * 1000) % 1000:03d}"
            lines.append(f"  master {n.name}: longest advert gap while holding the VIP {gap[0]:.3f} s "
                         f"(advert_int {SOAK_ADVERT}) from {began}, {gap[1]} adverts captured")
    lines += ["violations:"] + soak.violations[:30] + ["events:"] + soak.events
    if soak.violations:  # the daemons' own account of the moments that broke an invariant
        import re

        wanted = re.compile(r"STATE|priority|timeout|Receive|EXITED|Traceback|Error|error|reload|Reload")
        for n in soak.nodes.values():
            lines.append(f"{n.name} log:")
            lines += [line for line in n.node.log().splitlines() if wanted.search(line)][-40:]
    return "\n".join(lines)


def test_soak_finding_byte_code_removed_by_another_version_falls_back_to_the_source(tmp_path):
    """Several vrrpd versions share the byte-code cache: one's start removed another's file between its
    compile and its exec, and that daemon exited with status 1 (found by the soak)."""
    gone = tmp_path / "vrrpd-removed-meanwhile.pyc"
    out = subprocess.run([PYTHON, "-c", vrrpd._BYTECODE_LOADER, str(gone), VRRPD, "--check", "-f",
                          str(HERE / "vrrpd.conf.example")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "0 error(s)" in out.stdout + out.stderr


def test_soak_finding_alerts_for_a_stalled_smtp_server_queue_up_to_a_bound():
    """A flapping instance with a mail server that never answers queued every alert for ever (each takes
    three timed-out attempts): memory grew and alerts arrived hours late. The queue is now bounded."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # never accepts, never answers
    try:
        gd = vrrpd.GlobalDefs(notification_email=["ops@example.com"], smtp_server="127.0.0.1",
                              smtp_port=server.getsockname()[1], smtp_connect_timeout=5.0)
        mailer = vrrpd.SmtpAlerter(gd)
        mailer.max_pending = 5
        for i in range(40):
            mailer.submit(f"transition {i}", "body")
        assert mailer.pending() <= mailer.max_pending + 1
        assert mailer.dropped >= 40 - mailer.max_pending - 1
        mailer.close(0)
    finally:
        server.close()


def test_soak_finding_a_restart_after_kill_9_removes_the_vip_its_predecessor_left(lab, tmp_path):
    """A vrrpd killed with -9 leaves its VIP on the interface; its successor started as BACKUP under a
    running master and kept it: two holders answering ARP. keepalived removes it at start; so do we now."""
    a = _Node(lab, lab.host("a", f"{LAB_NET}.1/24"), tmp_path, "A", _conf(priority=150, advert=0.5))
    _wait_holders(lab, [a], ["A"], timeout=6)
    ns_b = lab.host("b", f"{LAB_NET}.2/24")
    lab.ip("addr", "add", f"{VIP}/24", "dev", "eth0", ns=ns_b)  # what the killed predecessor left
    b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=100, advert=0.5, instance_extra="    nopreempt\n"))
    wait_for(lambda: "Entering BACKUP STATE" in b.log(), 10, what="B started")
    _wait_holders(lab, [a, b], ["A"], timeout=3)
    _steady_single_master(lab, [a, b], 2.5)  # longer than B's Master_Down_Interval
    assert "left on the interface by an earlier run" in b.log()


def test_soak_two_vrrpd_and_keepalived_under_random_faults(lab, tmp_path):
    require(os.path.exists("/usr/sbin/keepalived"), "needs keepalived")
    seconds = SOAK_SECONDS or 55.0
    rate = 10000.0 if SOAK_SECONDS else 2000.0
    soak = run_soak(lab, tmp_path, seconds, rate, int(os.environ.get("VRRPD_SOAK_SEED", "8")))
    report = _report_soak(soak)
    print(report)
    keep = os.environ.get("VRRPD_SOAK_LOGS")
    if keep:  # make soak keeps the daemons' logs and the report
        Path(keep).mkdir(parents=True, exist_ok=True)
        for n in soak.nodes.values():
            shutil.copy(n.node.log_path, Path(keep) / n.node.log_path.name)
            if n.capture.exists():
                shutil.copy(n.capture, Path(keep) / n.capture.name)
        for dump in tmp_path.glob("*-stall-*.txt"):  # the watchdog's snapshots (a silent master, a hung harness)
            shutil.copy(dump, Path(keep) / dump.name)
        (Path(keep) / "soak-report.txt").write_text(report + "\n")
    c = soak.counts
    logs = {n.name: n.node.log() for n in soak.nodes.values() if not n.keepalived}
    tracebacks = {name: text.count("Traceback") for name, text in logs.items()}
    assert c["vrrpd_crash"] == 0, report
    assert all(v == 0 for v in tracebacks.values()), (tracebacks, report)
    assert c["violation_two_holders"] == 0 and c["violation_no_holder"] == 0, report
    assert c["checked"] > max(60, c["samples"] // 10), report  # really checked, not always settling
    assert c["link_flap"] + c["kill9_restart"] + c["script_hang"] + c["flood"] >= 4, report
    assert c["flood_packets"] > 0 or c["flood"] == 0, report
    # RSS: the vrrpd that lived through the whole run did not grow beyond start-up noise
    lived = [g for g in _rss_growth(soak.rss, seconds * 0.8) if g[0] == "A"]
    assert lived, report
    for _name, _pid, first, last, fds0, fds1 in lived:
        assert last < first * 1.25 + 2048, report
        assert fds1 <= fds0 + 8, report  # no sockets or pipes leak (mail attempts, scripts, reloads)
    # hung scripts were killed with their process group, not left behind
    assert _sleepers(lab, soak.nodes["A"].ns) <= 1, report


# ================================================================================================
# compat: the differential test against the real keepalived (make compat)
#
# Every configuration of testdata/compat (the seeds, Debian's keepalived samples, our own files covering
# every keyword and lexical form) and thousands the grammar-based generator makes from fixed seeds go
# through `keepalived -t` (2.2.7, in a network namespace that has every interface the files name) and
# through vrrpd's --check code path. Rules: keepalived exits 0 => vrrpd has no error; keepalived reports
# a problem at a line => vrrpd reports one there (or at the header of the block keepalived closes on that
# line: keepalived checks a block when it reads its '}'). A difference is fixed, or it is listed in
# COMPAT_DIFFERENCES with the reason. `keepalived -d` dumps the VRRP model, compared field by field.
# ================================================================================================

COMPAT_DIR = HERE / "testdata" / "compat"
KEEPALIVED = "/usr/sbin/keepalived"
COMPAT_GENERATED = int(os.environ.get("VRRPD_COMPAT_GENERATED", "2000"))
COMPAT_WORKERS = int(os.environ.get("VRRPD_COMPAT_WORKERS", "4"))
_KA_LINE_RE = re.compile(r"^\((?:(?P<file>[^()]+): )?Line (?P<line>\d+)\) (?P<msg>.*)$")
_COMPAT_ID_RE = re.compile(r"^[!#] compat: -i (\S+)", re.M)
_IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")

# (kind, regular expression on keepalived's message (kind "silent") or vrrpd's error (kind "rejects"),
#  regular expression one of vrrpd's messages for the same file must match (or ""), reason)
COMPAT_DIFFERENCES: List[Tuple[str, str, str, str]] = [
    ("silent", r"cannot use a loopback interface \(lo\) for vrrp", "",
     "vrrpd runs VRRP on lo (its own unit tests do); keepalived refuses it and ignores the instance"),
    ("rejects", r"configuration nested too deeply|parameter substitution does not terminate", "",
     "vrrpd stops a runaway recursion with an error; keepalived truncates the line silently"),
    ("silent", r"Unknown keyword|Unexpected '\{'", r"block opened here is (not|never) closed",
     "after a block left open, keepalived reads the following blocks inside it and reports each of their "
     "keywords; vrrpd reports the open block once, at its line, and reads the rest where it belongs"),
    ("silent", r"cannot track route .* with no interface specified", "",
     "pending-13: routes and rules are helper 13's (static_routes, virtual_routes)"),
    ("silent", r"Unknown keyword '(tls_compliant|bind_if|fwmark|"
     r"enable_dbus_instance|json_dump_file|json_version|linkbeat_use_polling|lvs_id|nftables_no_lvs|"
     r"state_dump_file|stats_dump_file|v3_checksum_as_v2|vrrp_delay_after_boot|"
     r"vrrp_ipsets|vrrp_nftables|"
     r"vrrp_owner_ignore_adverts|owner_ignore_adverts|tun_port|"
     r"tun_type|no_virtual_ipaddress|timer_expired_backup|ICMP_CHECK)'", "",
     "a keyword of keepalived 2.3/2.4 (vrrpd reads the language of 2.4.3) that 2.2.7 predates, or that this "
     "nftables build of 2.2.7 lacks"),
    ("silent", r"Unknown keyword 'vrrp_handover_on_stop'", "", "vrrpd's own extension (a graceful MASTER stop)"),
    ("silent", r"Unknown keyword '\}'|Unexpected '\{'|Unknown keyword '10\.0\.0\.9'|Unknown keyword 'ICMP_CHECK'",
     r"^keepalived: Unknown keyword 'ICMP_CHECK'",
     "ICMP_CHECK is keepalived 2.4's other name of PING_CHECK; 2.2.7 does not know it and reads its block as "
     "unknown keywords"),
    ("silent", r"Unknown keyword 'from'|No name has been specified for BFD_CHECKER|FILE_CHECK has no track_file",
     "", "pending-13: vrrpd accepts the UDP/PING/FILE/BFD checker blocks without reading them (helper 13's)"),
]

# (regular expression on a model difference, reason)
COMPAT_MODEL_DIFFERENCES: List[Tuple[str, str]] = [
    (r": VI_\d+ vips \(a duplicate VIP\):", "keepalived 2.4 ignores a VIP listed twice in an instance, and so does "
     "vrrpd; 2.2.7 keeps both"),
    (r"^builtins\.conf: .* vrid:", "${_RANDOM} draws its own number in each program"),
    (r"^top-net_namespace\.conf: vrrp_instance VI_1 only in vrrpd",
     "keepalived moves into the named network namespace (absent here) before it reads the instances; vrrpd "
     "accepts net_namespace without acting on it"),
    (r": VI_\d+ version: keepalived 2, vrrpd 3",
     "keepalived 2.2.7 keeps 'version 2' written before an instance's IPv6 addresses (there is no VRRPv2 for "
     "IPv6, RFC 3768); vrrpd runs such an instance with VRRPv3 and warns"),
]


def compat_corpus() -> List[Path]:
    """The hand-kept corpus: seeds, keepalived's samples and our own files (testdata/compat/*/*.conf)."""
    return sorted((HERE / "testdata" / "seeds").glob("*.conf")) + sorted(COMPAT_DIR.glob("*/*.conf"))


def compat_config_id(text: str) -> Optional[str]:
    """`! compat: -i ID` in a corpus file: run both programs with that config id."""
    m = _COMPAT_ID_RE.search(text[:2000])
    return m.group(1) if m else None


def compat_interfaces(paths: List[Path]) -> List[str]:
    """Every interface name the files name (instances, VIPs, trackers, checkers), so none is missing."""
    names = {"eth0"}
    word = re.compile(r"\b(?:interface|dev|lvs_sync_daemon_interface|bind_if|oif|iif|use_vmac|track_interface)"
                      r"[ \t]+([A-Za-z][A-Za-z0-9_.-]*)")
    for path in paths:
        text = path.read_text(errors="replace")
        names.update(word.findall(text))
        config, _ = vrrpd.parse_config(str(path), config_id=compat_config_id(text))
        for inst in config.vrrp_instances:
            names.update(n for n in [inst.interface] + [v.dev for v in inst.virtual_ipaddress] if n)
            names.update(r.name for r in inst.track_interface)
        for sg in config.sync_groups:
            names.update(r.name for r in sg.track_interface)
        for block in re.findall(r"track_interface\s*\{([^}]*)\}", text):
            names.update(line.split()[0] for line in block.splitlines() if line.split())
    return sorted(n for n in names if _IFNAME_RE.match(n) and n not in ("lo", "weight"))


class CompatNet:
    """Network namespaces (one per worker) holding veth pairs named after every interface of the corpus."""

    def __init__(self, interfaces: List[str], count: int):
        self.names = [f"vrrpd-compat-{os.getpid()}-{i}" for i in range(count)]
        names = list(interfaces) + (["compat-peer"] if len(interfaces) % 2 else [])
        for ns in self.names:
            sh(["ip", "netns", "add", ns])
            script = ["link set lo up"]
            for a, b in zip(names[::2], names[1::2]):
                script += [f"link add {a} type veth peer name {b}", f"link set {a} up", f"link set {b} up"]
            sh(["ip", "-n", ns, "-batch", "-"], input="\n".join(script) + "\n")

    def close(self) -> None:
        for ns in self.names:
            sh(["ip", "netns", "del", ns], check=False)


_KA_BATCH = r"""
import json, os, select, signal, subprocess, sys, time
for line in sys.stdin:
    path, cid, mode = json.loads(line)
    cmd = ["/usr/sbin/keepalived", "-f", path]
    if cid:
        cmd += ["-i", cid]
    if mode == "check":
        cmd += ["-t"]
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        out = {"rc": r.returncode, "err": r.stderr.decode(errors="replace")}
    else:  # the VRRP model: start the VRRP child with -d for a moment, until it has dumped its topology
        for attempt in range(3):  # a loaded machine can be slow to start it: try again
            tag = "%s-%d" % (abs(hash(path)), attempt)
            run = cmd + ["-n", "-l", "-d", "-P", "-p", "/tmp/ka-c-%s.pid" % tag, "-r", "/tmp/ka-c-%s.vpid" % tag]
            p = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            data, deadline = b"", time.monotonic() + 10
            try:
                while time.monotonic() < deadline and b"------< Interfaces >------" not in data:
                    ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
                    if not ready:
                        break
                    chunk = os.read(p.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    data += chunk
            finally:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()
            if b"------< Interfaces >------" in data:
                break
        out = {"rc": 0, "err": data.decode(errors="replace")}
    print(json.dumps(out), flush=True)
"""


def run_keepalived_batches(net: CompatNet, jobs: List[Tuple[str, Optional[str], str]]) -> List[dict]:
    """keepalived for every (path, config id, "check"|"dump") job, spread over the namespaces' workers."""
    import concurrent.futures
    import json

    results: List[Optional[dict]] = [None] * len(jobs)
    chunks = [list(range(i, len(jobs), len(net.names))) for i in range(len(net.names))]

    def work(ns: str, idx: List[int]) -> None:
        # keepalived -d creates the FIFOs a file names (`notify_fifo 1`) relative to its working directory: give it
        # its own, so nothing is left in the checkout for a later case (`config_save_dir 1`) to trip over
        with tempfile.TemporaryDirectory(prefix="vrrpd-compat-") as cwd:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, "-c", _KA_BATCH], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, cwd=cwd)
            for i in idx:
                proc.stdin.write(json.dumps(jobs[i]) + "\n")
                proc.stdin.flush()
                results[i] = json.loads(proc.stdout.readline())
            proc.stdin.close()
            proc.wait()

    with concurrent.futures.ThreadPoolExecutor(len(net.names)) as pool:
        for f in [pool.submit(work, ns, idx) for ns, idx in zip(net.names, chunks)]:
            f.result()
    return results  # type: ignore[return-value]


def keepalived_reports(err: str, path: str) -> Set[Tuple[str, int, str]]:
    """(file basename, line, message) of every line-numbered problem keepalived -t printed."""
    out = set()
    for line in err.splitlines():
        m = _KA_LINE_RE.match(line.strip())
        if m:
            out.add((os.path.basename(m.group("file") or path), int(m.group("line")), m.group("msg").strip()))
    return out


def block_headers(path: str, config_id: Optional[str]) -> Dict[Tuple[str, int], Set[int]]:
    """(file, line of a '}') -> lines of the keywords whose blocks close there."""
    lexer = vrrpd._Lexer([], config_id)
    lexer.read_file(path)
    toks = lexer.tokens
    stack: List[int] = []
    out: Dict[Tuple[str, int], Set[int]] = {}
    for i, t in enumerate(toks):
        if t.quoted:
            continue
        if t.text == "{":
            stack.append(toks[i - 1].line if i else t.line)
        elif t.text == "}" and stack:
            out.setdefault((os.path.basename(t.file), t.line), set()).add(stack.pop())
    return out


@dataclass
class CompatResult:
    path: str
    ka_rc: int
    ka_reports: Set[Tuple[str, int, str]]
    vd_errors: List[str]
    problems: List[Tuple[str, str]]  # (kind, text): "rejects" / "silent"
    explained: List[Tuple[str, str, str]]  # (kind, text, reason)
    ka_err: str = ""


def compare_one(path: str, ka: dict, config_id: Optional[str]) -> CompatResult:
    config, diags = vrrpd.parse_config(path, check_interfaces=False, config_id=config_id)
    errors = [str(d) for d in diags if d.severity is vrrpd.Severity.ERROR]
    reports = keepalived_reports(ka["err"], path)
    at: Dict[str, Set[int]] = {}
    for d in diags:
        at.setdefault(os.path.basename(d.file), set()).add(d.line)
    headers = block_headers(path, config_id) if reports else {}
    problems: List[Tuple[str, str]] = []
    if ka["rc"] == 0 and errors:
        problems += [("rejects", e) for e in errors]
    for file, line, msg in sorted(reports):
        lines = at.get(file, set())
        # keepalived checks a block when it reads its '}': a report anywhere in that block is at the same place
        if line in lines or any(h <= n <= line for h in headers.get((file, line), ()) for n in lines):
            continue
        problems.append(("silent", f"{file}:{line}: keepalived: {msg}"))
    explained, left = [], []
    said = [d.message for d in diags] + [f"keepalived: {msg}" for _f, _l, msg in reports]
    for kind, text in problems:
        reason = next((r for k, rx, ours, r in COMPAT_DIFFERENCES if k == kind and re.search(rx, text)
                       and (not ours or any(re.search(ours, m) for m in said))), None)
        if reason is None:
            left.append((kind, text))
        else:
            explained.append((kind, text, reason))
    return CompatResult(path, ka["rc"], reports, errors, left, explained, ka["err"])


# -- the VRRP model keepalived -d prints, against vrrpd's -----------------------------------------------

def keepalived_vrrp_model(dump: str) -> Dict[str, dict]:
    """name -> {vrid, priority, state, interface, version, advert, auth, vips} from `keepalived -d -P`."""
    out: Dict[str, dict] = {}
    cur: Optional[dict] = None
    in_vips = in_peers = False
    for raw in dump.splitlines():
        text = raw.split(": ", 1)[1] if re.match(r"^\w{3} \w{3} +\d+ [\d:]+ \d{4}: ", raw) else raw
        stripped = text.strip()
        if text.startswith(" VRRP Instance = "):
            cur = out.setdefault(stripped.split(" = ", 1)[1], {"vips": [], "peers": []})
            in_vips = in_peers = False
            continue
        if cur is None or not stripped:
            continue
        if not text.startswith("   ") and not text.startswith(" VRRP"):
            if text.startswith(" ") and not text.startswith("  "):
                cur, in_vips = None, False
            continue
        if in_peers:
            if text.startswith("     "):
                cur["peers"].append(stripped.split()[0])
                continue
            in_peers = False
        if in_vips:
            if text.startswith("     "):
                dev = stripped.split(" dev ")[1].split()[0]
                cur["vips"].append(stripped.split()[0] + " dev " + dev.split("@")[-1])  # vrrp.51@eth0: on eth0
                continue
            in_vips = False
        key, _, value = stripped.partition(" = ")
        if key == "Virtual Router ID":
            cur["vrid"] = int(value)
        elif key == "Priority":
            cur["priority"] = int(value)
        elif key == "Wantstate":
            cur["state"] = value
        elif key == "Interface":  # "vrrp.51, vmac on eth0": the base interface
            cur["interface"] = value.split(" on ", 1)[1] if ", vmac on " in value or ", ipvlan on " in value \
                else value
        elif key == "VRRP Version":
            cur["version"] = int(value)
        elif key == "Advert interval":
            number, unit = value.split()
            cur["advert"] = round(float(number) / (1000.0 if unit.startswith("milli") else 1.0), 3)
        elif key == "Authentication type":
            cur["auth"] = value.split()[0]
        elif key == "Preempt":
            cur["preempt"] = value
        elif key == "Using src_ip" and ("from configuration" in value or value == "(none)"):
            cur["src_ip"] = value.split()[0]  # (an interface's address is the host's, not the configuration's)
        elif key == "Gratuitous ARP delay":
            cur["garp_delay"] = float(value)
        elif key == "Gratuitous ARP repeat":
            cur["garp_repeat"] = int(value)
        elif stripped.startswith("Unicast Peer"):
            in_peers = True
        elif stripped.startswith("Virtual IP ("):
            in_vips = True
    return out


def vrrpd_vrrp_model(config) -> Dict[str, dict]:
    g = config.global_defs
    out = {}
    for inst in config.vrrp_instances:
        vips = []
        for v in inst.virtual_ipaddress:
            full = v.address.network.prefixlen == v.address.max_prefixlen
            vips.append((str(v.address.ip) if full else str(v.address)) + " dev " + (v.dev or inst.interface or "?"))
        auth = {"NONE": "none", "PASS": "SIMPLE_PASSWORD", "AH": "IPSEC_AH"}[inst.auth_type.name]
        src = inst.unicast_src_ip or inst.mcast_src_ip
        delay = inst.garp_master_delay if inst.garp_master_delay is not None else g.vrrp_garp_master_delay
        repeat = inst.garp_master_repeat if inst.garp_master_repeat is not None else g.vrrp_garp_master_repeat
        out[inst.name] = {"vrid": inst.virtual_router_id, "priority": inst.priority, "state": inst.state.value,
                          "interface": inst.interface, "version": vrrpd.effective_version(inst, g),
                          "advert": round(vrrpd.advert_interval(inst, g), 3), "auth": auth, "vips": vips,
                          "preempt": "disabled" if inst.nopreempt else "enabled",
                          "src_ip": str(src) if src is not None else "(none)",
                          "peers": [str(p.address) for p in inst.unicast_peer],
                          "garp_delay": float(delay), "garp_repeat": repeat}
    return out


def compare_models(path: str, dump: str, config_id: Optional[str]) -> List[str]:
    config, _ = vrrpd.parse_config(path, check_interfaces=False, config_id=config_id)
    theirs, ours = keepalived_vrrp_model(dump), vrrpd_vrrp_model(config)
    out = []
    for name in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(name), ours.get(name)
        if a is None or b is None:
            only = "vrrpd" if a is None else "keepalived"
            out.append(f"{os.path.basename(path)}: vrrp_instance {name} only in {only}")
            continue
        for key in sorted(set(a) | set(b)):
            if key in ("auth", "src_ip") and key not in a:
                continue  # keepalived prints no authentication line for VRRPv3, a source taken from the host
            if a.get(key) != b.get(key):
                dup = " (a duplicate VIP)" if key == "vips" and list(dict.fromkeys(a[key])) == b[key] else ""
                out.append(f"{os.path.basename(path)}: {name} {key}{dup}: keepalived {a.get(key)!r}, "
                           f"vrrpd {b.get(key)!r}")
    return out


# -- the grammar-based generator ---------------------------------------------------------------------------

class CompatGenerator:
    """Random but deterministic keepalived configurations: every block, many keywords, awkward layouts
    (brace on the next line, glued braces, comments, tabs, CRLF, parameters, @conditions, ~SEQ) and a few
    deliberate mistakes, so that both verdicts and line numbers are exercised."""

    IFACES = ["eth0", "eth1", "eth2", "ens3", "bond0", "eth0.10", "enp0s8"]

    def __init__(self, seed: int):
        self.r = random.Random(seed)
        self.vrids: Set[Tuple[str, int]] = set()
        self.params: Dict[str, str] = {}
        self.scripts: List[str] = []
        self.instances: List[str] = []

    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def ip(self, prefix: str = "10") -> str:
        octets = prefix.split(".") + [str(self.r.randint(0, 255)) for _ in range(3 - prefix.count("."))]
        return ".".join(octets[:3] + [str(self.r.randint(1, 254))])

    def value(self, text: str) -> str:
        """Sometimes a value goes through a $PARAMETER (or ${PARAMETER})."""
        if self.chance(0.06) and " " not in text:
            name = f"P{len(self.params)}"
            self.params[name] = text
            return f"${{{name}}}" if self.chance(0.5) else f"${name}"
        return text

    # a node is (keyword words, children or None, is value block)
    def global_defs(self) -> tuple:
        body = []
        opts = [
            lambda: (["router_id", self.pick(["lb1", "node-2", "r1.example.com"])], None),
            lambda: (["notification_email"], [[w] for w in self.r.sample(["a@b.c", "ops@x.org", "root"],
                                                                        self.r.randint(1, 3))]),
            lambda: (["notification_email_from", "keepalived@x.org"], None),
            lambda: (["smtp_server", "127.0.0.1"] + (["25"] if self.chance(0.5) else []), None),
            lambda: (["smtp_connect_timeout", str(self.r.randint(1, 60))], None),
            lambda: (["vrrp_skip_check_adv_addr"], None),
            lambda: (["vrrp_garp_master_delay", str(self.r.randint(1, 10))], None),
            lambda: (["vrrp_garp_master_repeat", str(self.r.randint(1, 10))], None),
            lambda: (["vrrp_garp_master_refresh", str(self.r.randint(0, 60))], None),
            lambda: (["vrrp_mcast_group4", f"224.0.0.{self.r.randint(18, 250)}"], None),
            lambda: (["vrrp_version", self.pick(["2", "3"])], None),
            lambda: (["vrrp_garp_interval", self.pick(["0.001", "0.01", "1"])], None),
            lambda: (["vrrp_gna_interval", self.pick(["0.001", "0.5"])], None),
            lambda: (["vrrp_lower_prio_no_advert"], None),
            lambda: (["vrrp_higher_prio_send_advert"], None),
            lambda: (["lvs_flush"], None),
            lambda: (["vrrp_check_unicast_src"], None),
            lambda: (["smtp_alert"], None),
            lambda: (["no_email_faults"], None),
            lambda: (["vrrp_startup_delay", str(self.r.randint(1, 5))], None),
        ]
        for f in self.r.sample(opts, self.r.randint(1, 7)):
            body.append(f())
        body.append((["enable_script_security"], None))
        body.append((["script_user", "root"], None))
        return (["global_defs"], body)

    def vrrp_script(self) -> tuple:
        name = f"chk_{len(self.scripts)}"
        self.scripts.append(name)
        body = [(["script", self.pick(['"/bin/true"', "/bin/true", '"/bin/sh -c true"', '"/bin/false x"'])],
                 None)]
        for kw, gen in (("interval", lambda: str(self.r.randint(1, 10))),
                        ("timeout", lambda: str(self.r.randint(1, 5))),
                        ("weight", lambda: str(self.r.randint(-50, 50))),
                        ("rise", lambda: str(self.r.randint(1, 5))),
                        ("fall", lambda: str(self.r.randint(1, 5))), ("user", lambda: "root")):
            if self.chance(0.5):
                body.append(([kw, self.value(gen())], None))
        if self.chance(0.2):
            body.append((["init_fail"], None))
        return (["vrrp_script", name], body)

    def vrrp_instance(self, version: int) -> tuple:
        name = f"VI_{len(self.instances) + 1}"
        self.instances.append(name)
        iface = self.pick(self.IFACES)
        vrid = self.r.randint(1, 255)
        while (iface, vrid) in self.vrids:
            vrid = self.r.randint(1, 255)
        self.vrids.add((iface, vrid))
        six = self.chance(0.15)
        body = [(["state", self.pick(["MASTER", "BACKUP"])], None), (["interface", self.value(iface)], None),
                (["virtual_router_id", self.value(str(vrid))], None),
                (["priority", self.value(str(self.r.randint(1, 254)))], None)]
        if self.chance(0.3):
            version = 3 if version == 2 else 2
            body.append((["version", str(version)], None))
        body.append((["advert_int", self.pick(["1", "2", "3"]) if version == 2 else self.pick(["1", "0.5", "0.1"])],
                     None))
        if version == 2 and not six and self.chance(0.3):
            body.append((["authentication"], [(["auth_type", "PASS"], None),
                                              (["auth_pass", self.pick(["secret", "1111", "abcdefgh"])], None)]))
        vips = []
        for _ in range(self.r.randint(1, 3)):
            addr = f"fd00::{self.r.randint(1, 0xffff):x}" if six else self.ip()
            words = [addr + self.pick(["", "/24", "/32"] if not six else ["", "/64"])]
            if self.chance(0.3):
                words += ["dev", self.pick(self.IFACES)]
            if not six and self.chance(0.2):
                words += ["label", f"{iface}:{self.r.randint(0, 9)}"]
            if self.chance(0.1):
                words += ["scope", self.pick(["global", "link", "host"])]
            vips.append(words)
        body.append((["virtual_ipaddress"], vips))
        if not six and self.chance(0.15):
            body.append((["virtual_ipaddress_excluded"], [[self.ip()]]))
        if self.chance(0.3):
            body.append((["track_interface"], [[self.pick(self.IFACES)] + (["weight", str(self.r.randint(-50, 50))]
                                                                         if self.chance(0.5) else [])]))
        if self.scripts and self.chance(0.5):
            body.append((["track_script"], [[self.pick(self.scripts)] + (["weight", str(self.r.randint(-20, 20))]
                                                                         if self.chance(0.3) else [])]))
        if not six and self.chance(0.2):
            body.append((["unicast_src_ip", self.ip()], None))
            body.append((["unicast_peer"], [[self.ip()] for _ in range(self.r.randint(1, 2))]))
        for kw, gen in (("nopreempt", None), ("preempt_delay", lambda: str(self.r.randint(1, 60))),
                        ("garp_master_delay", lambda: str(self.r.randint(1, 10))),
                        ("garp_master_refresh", lambda: str(self.r.randint(1, 60))),
                        ("notify_master", lambda: '"/bin/true master"'), ("notify_backup", lambda: "/bin/true"),
                        ("notify_fault", lambda: '"/bin/true fault"'), ("notify", lambda: "/bin/true"),
                        ("smtp_alert", None), ("dont_track_primary", None), ("accept", None),
                        ("skip_check_adv_addr", None), ("garp_master_repeat", lambda: str(self.r.randint(1, 5)))):
            if self.chance(0.12):
                body.append(([kw] + ([gen()] if gen else []), None))
        self.r.shuffle(body)
        return (["vrrp_instance", name], body)

    def sync_group(self) -> tuple:
        members = self.r.sample(self.instances, min(len(self.instances), self.r.randint(2, 3)))
        body = [(["group"], [[m] for m in members])]
        if self.chance(0.3):
            body.append((["notify_master", '"/bin/true group"'], None))
        return (["vrrp_sync_group", f"VG_{self.r.randint(1, 99)}"], body)

    def checker(self) -> tuple:
        kind = self.pick(["TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK"])
        body = []
        if kind in ("HTTP_GET", "SSL_GET"):
            url = [(["path", self.pick(["/", "/index.html", "/health"])], None)]
            url.append((["status_code", self.pick(["200", "200-299"])] if self.chance(0.7)
                        else ["digest", "9b3a0c85a887a256d6939da88aabd8cd"], None))
            body.append((["url"], url))
        if kind == "MISC_CHECK":
            body.append((["misc_path", self.pick(['"/bin/true"', '"/bin/sh -c true"'])], None))
            if self.chance(0.3):
                body.append((["misc_timeout", str(self.r.randint(1, 10))], None))
        else:
            for kw, gen in (("connect_timeout", lambda: str(self.r.randint(1, 10))),
                            ("connect_port", lambda: str(self.r.randint(1, 65535))),
                            ("retry", lambda: str(self.r.randint(1, 5))),
                            ("delay_before_retry", lambda: str(self.r.randint(1, 5)))):
                if self.chance(0.4):
                    body.append(([kw, gen()], None))
        return ([kind], body)

    def virtual_server(self) -> tuple:
        fwmark = self.chance(0.15)
        where = ["fwmark", str(self.r.randint(1, 999))] if fwmark else [self.ip("192.168"),
                                                                        str(self.r.randint(1, 65535))]
        head = ["virtual_server"] + where
        body = [(["delay_loop", str(self.r.randint(1, 30))], None),
                ([self.pick(["lb_algo", "lvs_sched"]), self.pick(["rr", "wrr", "lc", "wlc", "sh", "dh"])], None),
                ([self.pick(["lb_kind", "lvs_method"]), self.pick(["NAT", "DR", "TUN"])], None)]
        if not fwmark:
            body.append((["protocol", self.pick(["TCP", "UDP"]) if self.chance(0.5) else "TCP"], None))
        if self.chance(0.3):
            body.append((["persistence_timeout", str(self.r.randint(1, 600))], None))
        if self.chance(0.2):
            body.append((["sorry_server", self.ip("192.168")] + ([where[-1]] if self.chance(0.7) else []), None))
        for kw in ("alpha", "omega", "quorum", "hysteresis", "ha_suspend"):
            if self.chance(0.1):
                body.append(([kw] + ([str(self.r.randint(1, 5))] if kw in ("quorum", "hysteresis") else []), None))
        for _ in range(self.r.randint(1, 3)):
            rs_body = [(["weight", str(self.r.randint(0, 100))], None)]
            if self.chance(0.8):
                rs_body.append(self.checker())
            if self.chance(0.1):
                rs_body.append((["inhibit_on_failure"], None))
            port = [] if self.chance(0.2) else [where[-1] if not fwmark and self.chance(0.8)
                                                 else str(self.r.randint(1, 65535))]
            body.append((["real_server", self.ip("172.16")] + port, rs_body))
        return (head, body)

    def mistake(self, tree: list) -> None:
        """One deliberate mistake somewhere: an unknown keyword, a bad number or a missing value."""
        target = self.pick(tree)
        if target[1] is None:
            return
        kind = self.r.randint(0, 2)
        if kind == 0:
            target[1].insert(self.r.randint(0, len(target[1])), ([self.pick(["bogus_keyword", "prioritty",
                                                                              "nat_mask"]), "1"], None))
        elif kind == 1 and target[0][0] == "vrrp_instance":
            target[1].append((["virtual_router_id", self.pick(["0", "256", "abc"])], None))
        elif kind == 2 and target[0][0] == "vrrp_instance":
            target[1].append((["advert_int", self.pick(["300", "-1", "x"])], None))

    def tree(self) -> list:
        tree = []
        version = 2
        if self.chance(0.95):
            tree.append(self.global_defs())
            version = next((int(n[0][1]) for n in tree[0][1] if n[0][0] == "vrrp_version"), 2)
        for _ in range(self.r.randint(0, 2)):
            tree.append(self.vrrp_script())
        for _ in range(self.r.randint(1, 4)):
            tree.append(self.vrrp_instance(version))
        if len(self.instances) >= 2 and self.chance(0.2):
            tree.append(self.sync_group())
        for _ in range(self.r.randint(0, 2) if self.chance(0.5) else 0):
            tree.append(self.virtual_server())
        for _ in range(2 if self.chance(0.1) else 1 if self.chance(0.15) else 0):
            self.mistake(tree)
        return tree

    def render(self, tree: list) -> Tuple[str, Optional[str]]:
        indent_unit = self.pick(["    ", "  ", "\t", ""])
        brace = self.pick(["same", "same", "same", "next", "glued"])
        comment = self.chance(0.4)
        lines: List[str] = []

        self.cond_id = self.pick(["lb1", "alpha", "node7"])
        conditional = self.chance(0.1)

        def emit(depth: int, text: str) -> None:
            if conditional and depth and "{" not in text and "}" not in text and self.chance(0.15):
                # the line for this node and a decoy for another node (dropped by the config id)
                lines.append(f"@{self.cond_id} " + indent_unit * depth + text)
                lines.append(f"@^{self.cond_id} " + indent_unit * depth + self.pick(["bogus_for_others 1", text]))
                return
            if comment and self.chance(0.05):
                lines.append(indent_unit * depth + self.pick(["! a comment", "# another one", "#"]))
            if comment and self.chance(0.05):
                text += self.pick(["   # trailing", " ! trailing"])
            lines.append(indent_unit * depth + text)
            if self.chance(0.03):
                lines.append("")

        def node(depth: int, words: List[str], body: Any, value_block: bool) -> None:
            head = " ".join(words)
            if body is None:
                emit(depth, head)
                return
            if brace == "next":
                emit(depth, head)
                emit(depth, "{")
            else:
                emit(depth, head + ("{" if brace == "glued" else " {"))
            for child in body:
                if value_block or isinstance(child, list):
                    emit(depth + 1, " ".join(child))
                else:
                    node(depth + 1, child[0], child[1], child[0][0] in (
                        "virtual_ipaddress", "virtual_ipaddress_excluded", "track_interface", "track_script",
                        "unicast_peer", "notification_email", "group"))
            emit(depth, "}")

        for words, body in tree:
            node(0, words, body, False)
        config_id = self.cond_id if conditional else None
        head: List[str] = []
        for name, value in self.params.items():
            if self.chance(0.3):
                config_id = config_id or self.pick(["lb1", "alpha", "node7"])
                head += [f"@{config_id} ${name}={value}", f"@^{config_id} ${name}=wrong"]
            else:
                head.append(f"${name}={value}")
        if self.chance(0.1):
            head += ["$SEQ_VS= \\", "virtual_server 10.99.0.${I} 80 { \\", "  protocol TCP \\",
                     "  real_server 10.98.0.${I} 80 { \\", "  } \\", "}", "~SEQ(I, 1, 2, 5) $SEQ_VS"]
        if self.chance(0.05):
            head += ["$LST_VI= \\", "vrrp_instance L_${N} { \\", "  interface eth3 \\",
                     "  virtual_router_id ${V} \\", "  virtual_ipaddress { \\", "    10.97.0.${V} \\", "  } \\",
                     "}", "~LST({N, V}, {a, 201}, {b, 202}, {c, 203}) $LST_VI"]
        text = "\n".join(head + lines) + "\n"
        if self.chance(0.05):
            text = text.replace("\n", "\r\n")
        return text, config_id

    def config(self) -> Tuple[str, Optional[str]]:
        return self.render(self.tree())


def generated_compat_configs(directory: Path, count: int) -> List[Tuple[Path, Optional[str]]]:
    out = []
    for seed in range(count):
        text, config_id = CompatGenerator(seed).config()
        path = directory / f"gen{seed:05d}.conf"
        path.write_text(text)
        out.append((path, config_id))
    return out


@dataclass
class CompatRun:
    results: List[CompatResult]
    model_diffs: List[str]
    model_checked: int
    seconds: float
    model_explained: List[Tuple[str, str]]

    def accepted(self) -> List[CompatResult]:
        return [r for r in self.results if r.ka_rc == 0]

    def agreement(self, among: Optional[List[CompatResult]] = None) -> float:
        acc = self.accepted() if among is None else among
        return 100.0 * sum(1 for r in acc if not r.problems and not r.explained) / max(1, len(acc))

    def report(self) -> str:
        acc = self.accepted()
        lines = [f"compat: {len(self.results)} configurations ({len(acc)} accepted by keepalived -t) in "
                 f"{self.seconds:.1f} s",
                 f"agreement on configurations keepalived accepts: {self.agreement():.2f} %",
                 f"agreement on all: {self.agreement(self.results):.2f} %",
                 f"VRRP model (keepalived -d) compared on {self.model_checked} files: {len(self.model_diffs)} "
                 "difference(s)"]
        explained: Dict[str, List[str]] = {}
        for r in self.results:
            for kind, text, reason in r.explained:
                explained.setdefault(f"{kind}: {reason}", []).append(f"{os.path.basename(r.path)}: {text}")
        lines.append("")
        lines.append("kinds: silent = keepalived reports a line where vrrpd reports nothing; rejects = keepalived "
                     "exits 0, vrrpd has an error; model = keepalived -d and vrrpd's model differ")
        lines.append("")
        lines.append("| kind | how many (first) | reason |")
        lines.append("|---|---|---|")
        for d, reason in self.model_explained:
            explained.setdefault(f"model: {reason}", []).append(d)
        for key, where in sorted(explained.items()):
            kind, reason = key.split(": ", 1)
            lines.append(f"| {kind} | {len(where)} (e.g. {where[0][:90]}) | {reason} |")
        unexplained = [(r.path, k, t) for r in self.results for k, t in r.problems]
        if unexplained:
            lines.append("")
            lines.append(f"UNEXPLAINED ({len(unexplained)}):")
            lines += [f"  {os.path.basename(p)}: {k}: {t}" for p, k, t in unexplained[:200]]
        if self.model_diffs:
            lines.append("")
            lines.append(f"MODEL DIFFERENCES ({len(self.model_diffs)}):")
            lines += ["  " + d for d in self.model_diffs[:200]]
        return "\n".join(lines)


def run_compat(tmp: Path, generated: int, model_sample: int = 400) -> CompatRun:
    started = time.monotonic()
    files: List[Tuple[Path, Optional[str]]] = [(p, compat_config_id(p.read_text(errors="replace")))
                                               for p in compat_corpus()]
    files += generated_compat_configs(tmp, generated)
    net = CompatNet(compat_interfaces([p for p, _ in files]), COMPAT_WORKERS)
    try:
        kas = run_keepalived_batches(net, [(str(p), cid, "check") for p, cid in files])
        results = [compare_one(str(p), ka, cid) for (p, cid), ka in zip(files, kas)]
        # the model: every accepted corpus file and a sample of the accepted generated ones
        accepted = [(p, cid) for (p, cid), r in zip(files, results) if r.ka_rc == 0 and not r.vd_errors
                    and "vrrp_instance" in p.read_text(errors="replace")]
        corpus_set = {str(p) for p in compat_corpus()}
        sample = [f for f in accepted if str(f[0]) in corpus_set]
        sample += [f for f in accepted if str(f[0]) not in corpus_set][:max(0, model_sample - len(sample))]
        dumps = run_keepalived_batches(net, [(str(p), cid, "dump") for p, cid in sample])
    finally:
        net.close()
    diffs, explained = [], []
    for (p, cid), dump in zip(sample, dumps):
        for d in compare_models(str(p), dump["err"], cid):
            reason = next((r for rx, r in COMPAT_MODEL_DIFFERENCES if re.search(rx, d)), None)
            (diffs.append(d) if reason is None else explained.append((d, reason)))
    return CompatRun(results, diffs, len(sample), time.monotonic() - started, explained)


def test_log_file_and_local_name_are_unknown_keywords_as_in_keepalived():
    # no keepalived has them (its log file is -g/--log-file; local_name is its host name, not a keyword): keepalived
    # says "Unknown keyword", and so does vrrpd, instead of pretending to act on them
    for name in ("vrrp_log_file", "checker_log_file", "bfd_log_file", "local_name"):
        assert name not in vrrpd.KEYWORDS["global_defs"]
        _, diags = parse_ok(f"global_defs {{\n    {name} /tmp/x.log\n}}\n" + MINIMAL)
        assert [(d.line, d.severity) for d in diags if "unknown keyword" in d.message] == [
            (2, vrrpd.Severity.WARNING)], [str(d) for d in diags]


def test_compat_corpus_is_large_and_covers_the_samples():
    corpus = compat_corpus()
    assert len(corpus) >= 300, len(corpus)
    samples = Path("/usr/share/doc/keepalived/samples")
    if samples.is_dir():
        ours = {p.name for p in (COMPAT_DIR / "samples").glob("*.conf")}
        assert {p.name + ".conf" for p in samples.glob("keepalived.conf.*")} <= ours


def test_compat_generator_is_deterministic_and_varied():
    a = [CompatGenerator(s).config() for s in range(50)]
    assert a == [CompatGenerator(s).config() for s in range(50)]
    texts = "".join(t for t, _ in a)
    for feature in ("vrrp_instance", "virtual_server", "\n{", "${", "@", "real_server", "track_script"):
        assert feature in texts, feature
    assert len({t for t, _ in a}) == 50


def test_compat_differential_against_keepalived(tmp_path):
    """make compat: keepalived -t and vrrpd --check agree on every file, or the difference has a reason."""
    require_root_netns()
    require(os.path.exists(KEEPALIVED), "needs keepalived (apt-get install keepalived)")
    run = run_compat(tmp_path, COMPAT_GENERATED, model_sample=200)
    report = run.report()
    print(report)
    keep = os.environ.get("VRRPD_COMPAT_REPORT")
    if keep:
        Path(keep).write_text(report + "\n")
    assert len(run.results) >= 300 + min(COMPAT_GENERATED, 1000), report
    assert len(run.accepted()) >= 0.35 * len(run.results), report  # much of the corpus is clean configuration
    assert not [p for r in run.results for p in r.problems], report
    assert run.agreement() >= 99.0, report
    assert run.model_checked >= 100 and not run.model_diffs, report

# --------------------------------------------------------------------------------------------
# H4. Floods: the kernel receive filter, the backlog rule of the master-down timeout, sending first
# --------------------------------------------------------------------------------------------


def _run_bpf(program, packet: bytes, net_header: bytes = b"") -> int:
    """A tiny classic-BPF interpreter (the subset vrrp_filter_program uses), so that the program is proven on
    crafted packets. `net_header` is what SKF_NET_OFF loads reach (the IPv6 header of an IPv6 raw socket)."""
    def load(offset: int, size: int) -> Optional[int]:
        data = packet
        if offset >= 0x80000000:
            offset -= 1 << 32
        if offset < 0:
            data, offset = net_header, offset - vrrpd.SKF_NET_OFF
        if offset < 0 or offset + size > len(data):
            return None
        return int.from_bytes(data[offset:offset + size], "big")

    a = x = 0
    mem = [0] * 16
    pc = 0
    for _ in range(4096):
        code, jt, jf, k = program[pc]
        pc += 1
        cls, size = code & 0x07, {vrrpd.BPF_W: 4, vrrpd.BPF_H: 2, vrrpd.BPF_B: 1}.get(code & 0x18, 0)
        mode = code & 0xE0
        if cls == vrrpd.BPF_RET:
            return k
        if cls in (vrrpd.BPF_LD, vrrpd.BPF_LDX):
            if mode == vrrpd.BPF_IMM:
                value = k
            elif mode == vrrpd.BPF_MEM:
                value = mem[k]
            elif mode == vrrpd.BPF_LEN:
                value = len(packet)
            elif mode == vrrpd.BPF_MSH:
                value = load(k, 1)
                value = None if value is None else (value & 0x0F) * 4
            else:
                value = load(k + (x if mode == vrrpd.BPF_IND else 0), size)
            if value is None:
                return 0  # the kernel drops a packet whose load is out of bounds
            if cls == vrrpd.BPF_LD:
                a = value
            else:
                x = value
        elif cls == vrrpd.BPF_ST:
            mem[k] = a
        elif cls == vrrpd.BPF_MISC:
            if code & 0xF8 == vrrpd.BPF_TXA:
                a = x
            else:
                x = a
        elif cls == vrrpd.BPF_ALU:
            operand = x if code & vrrpd.BPF_X else k
            a = {vrrpd.BPF_ADD: a + operand, vrrpd.BPF_SUB: a - operand, vrrpd.BPF_AND: a & operand,
                 vrrpd.BPF_RSH: a >> operand}[code & 0xF0] & 0xFFFFFFFF
        elif cls == vrrpd.BPF_JMP:
            op = code & 0xF0
            if op == vrrpd.BPF_JA:
                pc += k
                continue
            taken = {vrrpd.BPF_JEQ: a == k, vrrpd.BPF_JGT: a > k, vrrpd.BPF_JGE: a >= k,
                     vrrpd.BPF_JSET: bool(a & k)}[op]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"instruction {code:#x} not interpreted")
    raise AssertionError("BPF program does not end")


def _adv4(version=3, vrid=51, prio=100, ttl=255, dst="224.0.0.18", src="10.0.0.2", truncate=None):
    src_ip, dst_ip = IP4(src), IP4(dst)
    adv = vrrpd.VrrpAdvert(version, vrid, prio, [IP4("10.0.0.100")], 1.0, 1 if version == 2 else 0,
                           b"secret12" if version == 2 else b"")
    payload = vrrpd.encode_advert(adv, src_ip, dst_ip)
    if truncate is not None:
        payload = payload[:truncate]
    return vrrpd.encode_ipv4(src_ip, dst_ip, payload, ttl=ttl)


def test_rx_filter_ipv4_keeps_only_what_an_instance_on_the_socket_could_accept():
    f = vrrpd.rx_filter_for(4, [3], [51, 52])
    prog = vrrpd.vrrp_filter_program(f)
    assert len(vrrpd.bpf_bytes(prog)) == 8 * len(prog)
    keep = lambda packet: _run_bpf(prog, packet) != 0  # noqa: E731
    assert keep(_adv4()) and keep(_adv4(vrid=52)) and keep(_adv4(prio=0))
    assert not keep(_adv4(ttl=64)) and not keep(_adv4(ttl=254))            # multicast TTL must be 255
    assert keep(_adv4(ttl=64, dst="10.0.0.1"))                             # unicast: unicast_peer's TTL range
    assert not keep(_adv4(vrid=53)) and not keep(_adv4(vrid=1))            # no instance has these VRIDs
    assert not keep(_adv4(version=2))                                      # nobody on this socket speaks v2
    assert not keep(_adv4(truncate=7)) and keep(_adv4(truncate=8))         # shorter than any advert
    assert not keep(_adv4()[:20]) and not keep(_adv4()[:10])               # no VRRP at all, a cut IP header
    typ2 = bytearray(_adv4())
    typ2[20] = 0x32                                                        # version 3, type 2 (not an advert)
    assert not keep(bytes(typ2))
    # an IP header with options moves the VRRP message: the filter follows the header length
    opt = bytearray(_adv4())
    opt = bytes([0x46]) + bytes(opt[1:20]) + b"\x01\x01\x01\x00" + bytes(opt[20:])
    assert keep(opt)
    # v2 and v3 on one socket; log_unknown_vrids keeps every VRID
    both = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [2, 3], None))
    assert _run_bpf(both, _adv4(version=2, vrid=200)) and _run_bpf(both, _adv4(vrid=7))
    assert not _run_bpf(both, _adv4(vrid=7, ttl=1))
    v2 = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [2], [51]))
    assert _run_bpf(v2, _adv4(version=2)) and not _run_bpf(v2, _adv4(version=2, truncate=15))
    # all 255 VRIDs fit the 8-bit jumps
    every = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [3], list(range(1, 256))))
    assert all(_run_bpf(every, _adv4(vrid=v)) for v in (1, 128, 255))


def test_rx_filter_verifies_ipv4_checksums_in_the_kernel():
    """The garbage no header test can refuse: adverts with the right VRID and TTL but a bad checksum. The filter
    sums the message (v3: with the pseudo-header) as decode_advert does; what it cannot sum goes to user space."""
    def flip(packet: bytes, at: int = 26) -> bytes:  # a byte of the VRRP checksum
        return packet[:at] + bytes([packet[at] ^ 0x5A]) + packet[at + 1:]

    v3 = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [3], [51], checksum=True))
    assert _run_bpf(v3, _adv4()) and _run_bpf(v3, _adv4(prio=0)) and _run_bpf(v3, _adv4(dst="10.0.0.1", ttl=64))
    assert not _run_bpf(v3, flip(_adv4())) and not _run_bpf(v3, flip(_adv4(), 30))
    moved = vrrpd.encode_ipv4(IP4("10.0.0.3"), IP4("224.0.0.18"), _adv4()[20:])  # same message, other source
    assert not _run_bpf(v3, moved)  # the pseudo-header counts
    long = vrrpd.VrrpAdvert(3, 51, 100, [IP4(f"10.0.1.{i}") for i in range(30)], 1.0, 0, b"")
    src, group = IP4("10.0.0.2"), IP4("224.0.0.18")
    msg = vrrpd.encode_advert(long, src, group)
    assert len(msg) > vrrpd.BPF_CHECKSUM_MAX
    assert _run_bpf(v3, vrrpd.encode_ipv4(src, group, msg[:6] + b"\0\0" + msg[8:]))  # too long: user space checks
    assert _run_bpf(v3, vrrpd.encode_ipv4(src, group, msg[:6] + b"\0\0" + msg[8:-1]))  # odd: user space says why
    for count in (0, 1, 19):  # every length up to the unrolled limit
        adv = vrrpd.VrrpAdvert(3, 51, 100, [IP4(f"10.0.1.{i}") for i in range(count)], 1.0, 0, b"")
        packet = vrrpd.encode_ipv4(src, group, vrrpd.encode_advert(adv, src, group))
        assert _run_bpf(v3, packet) and not _run_bpf(v3, flip(packet))
    as_v2 = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [3], [51], checksum=True, v3_checksum="message"))
    plain = vrrpd.encode_advert(vrrpd.VrrpAdvert(3, 51, 100, [IP4("10.0.0.100")], 1.0, 0, b""), src, group, True)
    assert _run_bpf(as_v2, vrrpd.encode_ipv4(src, group, plain)) and not _run_bpf(as_v2, _adv4())
    unsure = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [3], [51], checksum=True, v3_checksum=None))
    assert _run_bpf(unsure, flip(_adv4()))  # mixed v3 checksum styles on one socket: user space decides
    v2 = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [2], [51], checksum=True))
    assert _run_bpf(v2, _adv4(version=2)) and not _run_bpf(v2, flip(_adv4(version=2)))
    options = bytes([0x46]) + flip(_adv4())[1:20] + b"\x01\x01\x01\x00" + flip(_adv4())[20:]
    assert _run_bpf(v3, options)  # an IP header with options: no fixed offsets, user space checks
    assert not _run_bpf(vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [3], [51])), _adv4(vrid=9))
    assert _run_bpf(vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(4, [3], [51])), flip(_adv4()))  # off: kept


def test_rx_filter_ipv6_checks_the_hop_limit_through_the_network_header():
    import struct

    IP6 = ipaddress.IPv6Address
    prog = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(6, [3], [52]))

    def ipv6_header(hop_limit: int, dst: str) -> bytes:
        return struct.pack("!IHBB16s16s", 0x60000000, 20, 112, hop_limit, IP6("fe80::2").packed, IP6(dst).packed)

    adv = vrrpd.encode_advert(vrrpd.VrrpAdvert(3, 52, 100, [IP6("2001:db8::100")], 1.0, 0, b""))
    assert _run_bpf(prog, adv, ipv6_header(255, "ff02::12"))
    assert not _run_bpf(prog, adv, ipv6_header(64, "ff02::12"))
    assert _run_bpf(prog, adv, ipv6_header(64, "fe80::1"))  # unicast
    other = vrrpd.encode_advert(vrrpd.VrrpAdvert(3, 53, 100, [IP6("2001:db8::100")], 1.0, 0, b""))
    assert not _run_bpf(prog, other, ipv6_header(255, "ff02::12"))
    assert not _run_bpf(prog, adv[:7], ipv6_header(255, "ff02::12"))


def test_rx_filter_attaches_to_a_real_socket_and_drops_in_the_kernel():
    """The program is one the kernel accepts (SO_ATTACH_FILTER validates it); on a UDP socket over loopback
    (no root needed) a filter is proven to drop in the kernel: only the datagrams it accepts are queued."""
    import socket

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        # for UDP the filter sees the UDP header first: accept datagrams whose payload's first byte is 0x31
        prog = [(vrrpd.BPF_LD | vrrpd.BPF_B | vrrpd.BPF_ABS, 0, 0, 8),
                (vrrpd.BPF_JMP | vrrpd.BPF_JEQ | vrrpd.BPF_K, 0, 1, 0x31),
                (vrrpd.BPF_RET | vrrpd.BPF_K, 0, 0, vrrpd.BPF_ACCEPT),
                (vrrpd.BPF_RET | vrrpd.BPF_K, 0, 0, 0)]
        vrrpd.attach_filter(rx, vrrpd.bpf_bytes(prog))
        for first in (0x31, 0x21, 0x31, 0xFF):
            tx.sendto(bytes([first, 1, 2, 3]), rx.getsockname())
        time.sleep(0.05)
        got = []
        while vrrpd.kernel_holds_packets(rx):
            got.append(rx.recv(100)[0])
        assert got == [0x31, 0x31]
        for family in (4, 6):  # the VRRP programs pass the kernel's checker too
            for checksum in (False, True):
                prog = vrrpd.vrrp_filter_program(vrrpd.rx_filter_for(family, [2, 3], [1, 2], checksum))
                vrrpd.attach_filter(rx, vrrpd.bpf_bytes(prog))
        with pytest.raises(OSError):
            vrrpd.attach_filter(rx, vrrpd.bpf_bytes([(vrrpd.BPF_LD | vrrpd.BPF_W | vrrpd.BPF_ABS, 0, 0, 0)]))
    finally:
        rx.close()
        tx.close()


_FakeClockLoop = FakeClockLoop  # the real loop on a fake clock: the test moves time


class _BacklogSocket:
    """A VrrpSocket stand-in whose kernel queue is a real datagram socket pair: what the test queues stays in
    the kernel until the daemon reads it."""

    def __init__(self, ifname="eth0"):
        import socket

        self.ifname, self.ifindex, self.groups, self.sent, self.destinations = ifname, 7, [], [], {}
        self.family, self.protocol, self.kernel_checksum, self.ident = 4, vrrpd.IPPROTO_VRRP, False, 0
        self.rx, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.rx.setblocking(False)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        self.peer.setblocking(False)  # a full queue fails the test instead of hanging it
        self.sock = self  # what the Daemon selects on, peeks at and sends with
        self.received_at = None
        self.rx_filter = None

    def fileno(self):
        return self.rx.fileno()

    packet = vrrpd.VrrpSocket.packet
    destination = vrrpd.VrrpSocket.destination

    def send(self, src, dst, packet):
        self.sent.append(packet)

    def send_to(self, packet, dest):
        self.send(dest[0], dest[1], packet)

    def receive_nothing(self):
        pass

    def queue(self, packet: bytes) -> None:
        self.peer.send(packet)

    def recv(self, size=None, flags=0):
        if size is not None:  # a peek
            return self.rx.recv(size, flags)
        try:
            return vrrpd.decode_ipv4(self.rx.recv(65535))
        except BlockingIOError:
            return None

    def receive_time(self):
        return self.received_at

    def join(self, group):
        self.groups.append(group)

    def close(self):
        self.rx.close()
        self.peer.close()


def _backlog_daemon(monkeypatch):
    """A BACKUP (priority 95, VRRPv3, advert_int 0.5) whose master is 10.0.0.2, on a fake clock."""
    loop = _FakeClockLoop()
    inst = vrrpd.VrrpInstance("VI_1", interface="eth0", virtual_router_id=51, priority=95, advert_int=0.5,
                              version=3, virtual_ipaddress=[vrrpd.VirtualIP(ipaddress.IPv4Interface("10.0.0.100/24"))])
    sock = _BacklogSocket()

    class Kernel(FakeKernel):
        def vrrp_socket(self, family, ifname, ifindex, protocol=vrrpd.IPPROTO_VRRP):
            return sock

    kernel = Kernel()
    config = vrrpd.Config(global_defs=vrrpd.GlobalDefs(router_id="backlog"), vrrp_instances=[inst])
    d, kernel = offline_daemon(config, loop=loop, kernel=kernel)
    vips = _HeldVips(kernel)
    return d, loop, d.runtimes[0], sock, vips


class _HeldVips:
    """The VIPs the fake kernel was asked to add, as a list of their addresses (truthy once any was added)."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __len__(self):
        return sum(1 for call in self.kernel.calls if call[0] == "add")

    def __bool__(self):
        return len(self) > 0


def _master_advert(prio=150):
    src, group = IP4("10.0.0.2"), IP4("224.0.0.18")
    adv = vrrpd.VrrpAdvert(3, 51, prio, [IP4("10.0.0.100")], 0.5, 0, b"")
    return vrrpd.encode_ipv4(src, group, vrrpd.encode_advert(adv, src, group))


def test_soak_finding_a_master_down_timeout_waits_for_adverts_queued_behind_a_flood(monkeypatch):
    """The soak's two holders: under a flood a starved BACKUP read its socket too slowly; the master-down timer
    fell due while the master's newer adverts were still queued in the kernel behind thousands of garbage
    packets, and the timeout acted on them unread. Now the timeout acts only once the queue is empty."""
    d, loop, rt, sock, vips = _backlog_daemon(monkeypatch)
    try:
        m = rt.machine
        sock.queue(_master_advert())
        loop.run_once()
        assert m.state == vrrpd.State.BACKUP and m.master_ip == IP4("10.0.0.2")
        # the master goes on advertising, but each advert sits behind 100 packets of garbage
        garbage = _adv4(vrid=51, ttl=64, src="10.0.0.66")
        for _ in range(4):
            for _ in range(100):
                sock.queue(garbage)
            sock.queue(_master_advert())
        loop.now = m.master_down_timer + 0.001  # the loop was starved: the timer is due, the queue is full
        passes = 0
        while vrrpd.kernel_holds_packets(sock.sock) or rt.timer is None or rt.timer.when <= loop.now:
            loop.run_once()
            passes += 1
            assert m.state == vrrpd.State.BACKUP, f"took over after {passes} passes with adverts still queued"
            assert passes < 1000
        assert not vips and passes >= 400 // vrrpd.RX_BATCH // 2  # read in bounded batches, not all at once
        assert m.master_down_timer > loop.now and rt.bad_packets.get("bad_ttl", 0) == 400
        # silence for real: the timeout acts once the queue is empty
        loop.now = m.master_down_timer + 0.001
        loop.run_once()
        assert m.state == vrrpd.State.MASTER and vips
    finally:
        d.close()
        loop.close()


def test_a_queue_that_never_empties_postpones_the_timeout_by_one_master_down_interval_only(monkeypatch):
    d, loop, rt, sock, vips = _backlog_daemon(monkeypatch)
    try:
        m = rt.machine
        sock.queue(_master_advert())
        loop.run_once()
        garbage = _adv4(vrid=51, ttl=64, src="10.0.0.66")
        loop.now = due = m.master_down_timer + 0.001
        while m.state == vrrpd.State.BACKUP:
            for _ in range(vrrpd.RX_BATCH * 2 + 1):  # a little faster than the daemon reads: never drains
                sock.queue(garbage)
            loop.run_once()
            loop.now += 0.05
            assert loop.now < due + 2 * m.master_down_interval
        assert loop.now >= due + m.master_down_interval and vips
    finally:
        d.close()
        loop.close()


def test_a_flooded_socket_is_read_every_rx_pause_rather_than_once_per_packet(monkeypatch):
    """Each wake-up of the loop costs more than rejecting a packet: a socket readable again right after a pass
    emptied it is taken off the loop for RX_PAUSE and read then, all at once; a quiet socket is read at once."""
    d, loop, rt, sock, _vips = _backlog_daemon(monkeypatch)
    try:
        garbage = _adv4(vrid=51, ttl=64, src="10.0.0.66")
        counted = lambda: rt.bad_packets.get("bad_ttl", 0)  # noqa: E731
        sock.queue(garbage)
        loop.run_once()
        loop.now += 0.5  # a quiet socket: every packet is read on the wake-up it causes
        sock.queue(garbage)
        loop.run_once()
        assert counted() == 2
        loop.now += vrrpd.RX_PAUSE / 4  # readable again at once: flooded
        sock.queue(garbage)
        loop.run_once()
        assert counted() == 3
        for _ in range(20):  # what arrives now waits in the kernel for the end of the pause
            sock.queue(garbage)
        loop.run_once(until=loop.now)
        assert counted() == 3 and vrrpd.kernel_holds_packets(sock.sock)
        loop.now += vrrpd.RX_PAUSE
        loop.run_once(until=loop.now)  # the pause ends: the socket is watched again
        loop.run_once(until=loop.now)
        assert counted() == 23 and not vrrpd.kernel_holds_packets(sock.sock)
        # during a pause, a due Master_Down_Timer still reads the queue before it acts
        loop.now += 0.5
        sock.queue(_master_advert())
        loop.run_once(until=loop.now)
        loop.run_once(until=loop.now)
        assert rt.machine.state == vrrpd.State.BACKUP and rt.machine.master_ip == IP4("10.0.0.2")
        due = rt.machine.master_down_timer
        for now in (due - vrrpd.RX_PAUSE / 2, due - vrrpd.RX_PAUSE / 4):  # emptied twice at once: paused
            loop.now = now
            sock.queue(garbage)
            loop.run_once(until=loop.now)
        assert d._rx_paused
        sock.queue(_master_advert())
        loop.now = due + 0.0001
        loop.run_once(until=loop.now)
        assert d._rx_paused, "the pause lasts past the timeout: the timeout itself read the queue"
        assert rt.machine.state == vrrpd.State.BACKUP and rt.machine.master_down_timer > loop.now
    finally:
        d.close()
        loop.close()


def test_a_due_advert_is_sent_before_the_next_batch_of_a_flooded_socket_is_read():
    import socket

    loop = vrrpd.EventLoop()
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    order = []
    try:
        rx.setblocking(False)
        tx.setblocking(False)
        for _ in range(vrrpd.RX_BATCH + 10):
            tx.send(b"x")

        def readable():
            for _ in range(vrrpd.RX_BATCH):
                try:
                    rx.recv(10)
                except BlockingIOError:
                    return
                order.append("packet")

        loop.add_reader(rx, readable)
        loop.call_at(loop.time(), lambda: order.append("advert"))
        loop.run_once()
        assert order[0] == "advert" and order.count("packet") == vrrpd.RX_BATCH
    finally:
        loop.close()
        rx.close()
        tx.close()


class _CpuLimit:
    """A cgroup (v2 `cpu.max`, or v1 `cpu.cfs_quota_us`) that holds a process to `percent` of one core: the
    CPU-starved node of a loaded 2-core machine, made on purpose. `available` is False where there is none."""

    def __init__(self, percent: float):
        self.percent, self.path, self.v2 = percent, None, False
        tag = f"vrrpd-test-{uuid.uuid4().hex[:6]}"
        try:
            if "cpu" in Path("/sys/fs/cgroup/cgroup.controllers").read_text().split():
                self.v2, self.path = True, Path("/sys/fs/cgroup") / tag
        except OSError:
            if Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists():
                self.path = Path("/sys/fs/cgroup/cpu") / tag
        if self.path is not None:
            try:
                self.path.mkdir()
                quota = int(self.percent * 1000)
                if self.v2:
                    (self.path / "cpu.max").write_text(f"{quota} 100000")
                else:
                    (self.path / "cpu.cfs_period_us").write_text("100000")
                    (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            except OSError:
                self.path = None

    @property
    def available(self) -> bool:
        return self.path is not None

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        if self.path is None:
            return
        home = self.path.parent / "cgroup.procs"
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                home.write_text(pid)
            except OSError:
                pass
        try:
            self.path.rmdir()
        except OSError:
            pass
        self.path = None


def test_soak_finding_a_cpu_starved_backup_under_a_garbage_flood_never_takes_the_vip(lab, tmp_path):
    """The soak's two holders, in the lab: a BACKUP held to a few percent of a core while the segment carries a
    10,000 packets/s garbage flood. It used to read its socket more slowly than garbage arrived; the full receive
    queue made the kernel drop the master's adverts among the garbage, and the master-down timeout acted on a
    queue still full. Now the kernel filter drops most of the garbage before vrrpd wakes up, and the timeout
    waits for what is queued: no takeover, and the TTL-64 or bad-checksum garbage never reached vrrpd."""
    limit = _CpuLimit(4)
    try:
        require(limit.available, "needs a cgroup cpu controller to starve the backup")
        ns_b = lab.host("b", f"{LAB_NET}.2/24")
        ns_a = lab.host("a", f"{LAB_NET}.1/24")
        # the soak's timers (advert_int 0.5, Master_Down_Interval 1.81 s): a starved node still runs them
        b = _Node(lab, ns_b, tmp_path, "B", _conf(priority=150, advert=0.5))
        _wait_holders(lab, [b], ["B"], timeout=8)
        a = _Node(lab, ns_a, tmp_path, "A", _conf(priority=95, advert=0.5), control=True, wait=False)
        wait_for(lambda: os.path.exists(a.ctl) and "Entering BACKUP STATE" in a.log(), 10, what="A in BACKUP")
        x = lab.host("x", f"{SOAK_X}/24")
        (tmp_path / "flood.py").write_text(SOAK_FLOOD)
        limit.add(a.proc.pid)
        flood = lab.exec(x, [PYTHON, str(tmp_path / "flood.py"), str(HERE), SOAK_X, "10000", "12", "5"],
                         stdout=subprocess.PIPE, text=True)
        seen = _steady_single_master(lab, [a, b], 14.0)  # the flood and a master-down interval after it
        sent = int(flood.communicate(timeout=30)[0].split()[0])
        limit.close()
        assert seen == {"B"} and "Receive advertisement timeout" not in a.log()
        assert sent > 50000, sent
        inst = a.instance()
        sockets = a.status()["sockets"]
        assert sockets and "VRID 51, checksum" in sockets[0]["kernel_filter"]
        # a seventh of the flood had TTL 1, 64 or 254, as much another VRID, two sevenths bad checksums:
        # filtered in the kernel, while the master's adverts came through
        bad = inst["stats"]["bad_packets"]
        assert bad.get("bad_ttl", 0) == 0 and bad.get("bad_checksum", 0) == 0, inst["stats"]
        assert "Unknown VRID" not in a.log() and inst["stats"]["adverts_received"] > 20
    finally:
        limit.close()


def test_stats_say_what_the_kernel_dropped_before_vrrpd_counted(monkeypatch):
    d, loop, rt, sock, _vips = _backlog_daemon(monkeypatch)
    try:
        import socket

        real = vrrpd._RxSocket()  # the receive-side bookkeeping of a real socket (VrrpSocket is faked here)
        rx, tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        real.ifname, real.sock, real.family = "eth0", rx, 4
        real.rx_filter, real.rx_filter_error, real.rcvbuf = None, None, vrrpd.VRRP_RCVBUF
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)  # the smallest queue: a burst overflows it
        for key in list(d.vsocks):
            d.vsocks.pop(key)
        d.vsocks[("eth0", 4, vrrpd.IPPROTO_VRRP)] = real
        real.set_filter(vrrpd.rx_filter_for(4, [3], [51]))  # the kernel accepts it on any socket
        # these datagrams are no adverts: let them in, to fill the queue
        vrrpd.attach_filter(rx, vrrpd.bpf_bytes([(vrrpd.BPF_RET | vrrpd.BPF_K, 0, 0, vrrpd.BPF_ACCEPT)]))
        for _ in range(200):
            tx.sendto(b"x" * 100, rx.getsockname())
        time.sleep(0.05)
        drops = real.queue_drops
        assert drops and drops > 100, drops  # the kernel's own count of what the full queue cost
        status = d.status()
        assert status["sockets"] == [{"interface": "eth0", "family": 4, "kernel_filter": real.rx_filter.describe(),
                                      "kernel_filter_error": None, "rcvbuf": vrrpd.VRRP_RCVBUF,
                                      "kernel_queue_full_drops": drops}]
        text = vrrpd.format_stats(status)
        assert "VRRP socket: eth0 (IPv4)" in text and f"Dropped by the kernel, receive queue full: {drops}" in text
        assert "VRID 51 (what it drops is not counted)" in text
    finally:
        d.vsocks.clear()
        sock.close()
        for each in (rx, tx):
            each.close()
        d.close()
        loop.close()


def test_rx_filter_on_real_sockets_keeps_filtered_packets_out_of_user_space(lab):
    """Both families, on the kernel's raw VRRP sockets: a packet the filter refuses never reaches recv(), the
    IPv6 hop limit is read through SKF_NET_OFF, and what an instance could accept still arrives."""
    import json

    rx_ns, tx_ns = lab.host("r", "10.86.0.1/24"), lab.host("t", "10.86.0.2/24")
    wait_link_local(lab, rx_ns)
    tx_ll = wait_link_local(lab, tx_ns)
    receiver = lab.exec(rx_ns, [PYTHON, "-c", (
        f"import sys, json, socket, time; sys.path.insert(0, {str(HERE)!r}); import vrrpd\n"
        "i = socket.if_nametoindex('eth0')\n"
        "s4, s6 = vrrpd.VrrpSocket(4, 'eth0', i), vrrpd.VrrpSocket(6, 'eth0', i)\n"
        "s4.join(vrrpd.VRRP_MCAST_GROUP4)\n"
        "s6.join(vrrpd.VRRP_MCAST_GROUP6)\n"
        "s4.set_filter(vrrpd.rx_filter_for(4, [3], [51]))\n"
        "s6.set_filter(vrrpd.rx_filter_for(6, [3], [52]))\n"
        "print('READY', s4.rx_filter is not None and s6.rx_filter is not None, flush=True)\n"
        "got, end = [], time.monotonic() + 4\n"
        "while time.monotonic() < end:\n"
        "    for family, s in ((4, s4), (6, s6)):\n"
        "        p = s.recv()\n"
        "        if p is not None:\n"
        "            got.append([family, p.payload[1], p.ttl])\n"
        "    time.sleep(0.001)\n"
        "print(json.dumps(got), flush=True)\n")], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout.readline().split() == ["READY", "True"]
    run_py_in(lab, tx_ns, (
        "import ipaddress, socket, struct\n"
        "IP4, IP6 = ipaddress.IPv4Address, ipaddress.IPv6Address\n"
        "i = socket.if_nametoindex('eth0')\n"
        "s4, s6 = vrrpd.VrrpSocket(4, 'eth0', i), vrrpd.VrrpSocket(6, 'eth0', i)\n"
        "src, g4 = IP4('10.86.0.2'), vrrpd.VRRP_MCAST_GROUP4\n"
        "for vrid, ttl in ((51, 255), (51, 64), (50, 255), (51, 1), (51, 255)):\n"
        "    adv = vrrpd.VrrpAdvert(3, vrid, 100, [IP4('10.86.0.100')], 1.0, 0, b'')\n"
        "    s4.send(src, g4, s4.packet(src, g4, vrrpd.encode_advert(adv, src, g4), ttl))\n"
        f"ll = IP6({tx_ll!r})\n"
        "for vrid, hops in ((52, 255), (52, 64), (53, 255), (52, 255)):\n"
        "    s6.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)\n"
        "    msg = struct.pack('!BBBBHH', 0x31, vrid, 100, 1, 100, 0) + IP6('2001:db8::100').packed\n"
        "    s6.send(ll, vrrpd.VRRP_MCAST_GROUP6, msg)\n"), timeout=30)
    got = json.loads(receiver.communicate(timeout=30)[0])
    assert sorted(map(tuple, got)) == [(4, 51, 255), (4, 51, 255), (6, 52, 255), (6, 52, 255)], got


def test_compat_comparison_rules_on_known_keepalived_output(tmp_path):
    """The rules of the differential, without keepalived: a line keepalived reports needs a vrrpd report at that
    line or inside the block keepalived closes there; exit 0 needs no vrrpd error; the table explains the rest."""
    path = tmp_path / "c.conf"
    path.write_text("vrrp_script chk {\n    interval 2\n}\nvrrp_instance VI_1 {\n    interface eth0\n"
                    "    virtual_router_id 51\n    bogus 1\n    virtual_ipaddress {\n        10.0.0.1/24\n    }\n}\n")
    ka = {"rc": 5, "err": "(c.conf: Line 3) No script set for vrrp_script chk - removing\n"
                          "(c.conf: Line 7) Unknown keyword 'bogus'\n(Line 9) Unknown keyword 'nothing_here'\n"
                          "Non-existent interface specified in configuration\n"}
    r = compare_one(str(path), ka, None)
    # line 3 closes vrrp_script (vrrpd warns at its line 1); line 7 is the same line; line 9 vrrpd says nothing
    assert r.problems == [("silent", "c.conf:9: keepalived: Unknown keyword 'nothing_here'")], r.problems
    ok = compare_one(str(path), {"rc": 0, "err": ""}, None)
    assert ok.problems == [] and ok.vd_errors == []
    bad = tmp_path / "b.conf"
    bad.write_text("vrrp_instance VI_1 {\n    interface eth0\n}\n")
    r = compare_one(str(bad), {"rc": 0, "err": ""}, None)
    assert [k for k, _ in r.problems] == ["rejects"] and "virtual_router_id" in r.problems[0][1]


KEEPALIVED_DUMP_EXCERPT = """\
Tue Dec  1 11:26:57 2026: ------< VRRP Topology >------
Tue Dec  1 11:26:57 2026:  VRRP Instance = VI_1
Tue Dec  1 11:26:57 2026:    VRRP Version = 2
Tue Dec  1 11:26:57 2026:    Wantstate = MASTER
Tue Dec  1 11:26:57 2026:    Interface = eth0
Tue Dec  1 11:26:57 2026:    Using src_ip = (none)
Tue Dec  1 11:26:57 2026:    Gratuitous ARP delay = 5
Tue Dec  1 11:26:57 2026:    Gratuitous ARP repeat = 5
Tue Dec  1 11:26:57 2026:    Virtual Router ID = 5
Tue Dec  1 11:26:57 2026:    Priority = 255
Tue Dec  1 11:26:57 2026:    Advert interval = 2 sec
Tue Dec  1 11:26:57 2026:    Preempt = enabled
Tue Dec  1 11:26:57 2026:    Authentication type = none
Tue Dec  1 11:26:57 2026:    Virtual IP (2):
Tue Dec  1 11:26:57 2026:      10.0.0.5/24 dev eth0 scope global
Tue Dec  1 11:26:57 2026:      10.0.0.6 dev eth1 scope global
Tue Dec  1 11:26:57 2026:    No sockets allocated
Tue Dec  1 11:26:57 2026: ------< Interfaces >------
"""


def test_keepalived_dump_model_equals_vrrpd_model_of_the_same_file():
    text = ("vrrp_instance VI_1 {\n    interface eth0\n    state MASTER\n    virtual_router_id 5\n    advert_int 2\n"
            "    virtual_ipaddress {\n        10.0.0.5/24\n        10.0.0.6 dev eth1\n    }\n}\n")
    config, _ = vrrpd.parse_config_text(text, "d.conf")
    theirs = keepalived_vrrp_model(KEEPALIVED_DUMP_EXCERPT)
    assert theirs == {"VI_1": {"vrid": 5, "priority": 255, "state": "MASTER", "interface": "eth0", "version": 2,
                               "advert": 2.0, "auth": "none", "vips": ["10.0.0.5/24 dev eth0", "10.0.0.6 dev eth1"],
                               "peers": [], "preempt": "enabled", "src_ip": "(none)", "garp_delay": 5.0,
                               "garp_repeat": 5}}
    assert vrrpd_vrrp_model(config) == theirs
    config.vrrp_instances[0].priority = 100
    assert vrrpd_vrrp_model(config) != theirs


def test_reload_rebuilds_the_kernel_filter_when_the_vrids_change(lab, tmp_path):
    ns = lab.host("a", f"{LAB_NET}.1/24")
    node = _Node(lab, ns, tmp_path, "A", _conf(priority=150, advert=0.1), control=True, wait=False)
    wait_for(lambda: os.path.exists(node.ctl), 10, what="control socket")

    def filters():
        return [s["kernel_filter"] for s in node.status()["sockets"] if s["family"] == 4]

    assert len(filters()) == 1 and "VRID 51," in filters()[0]
    node.reload(_conf(priority=150, advert=0.1) + _second_instance(vrid=52))
    wait_for(lambda: "VRID 51,52," in filters()[0], 5, what="the filter with VRID 52")
    node.reload(_conf(priority=150, advert=0.1, global_extra="    log_unknown_vrids\n"))
    wait_for(lambda: "VRID any," in filters()[0], 5, what="the filter keeping unknown VRIDs")


def test_unicast_instances_sharing_a_vrid_and_interface_each_hear_their_own_peer(lab, tmp_path):
    """keepalived lets two unicast instances share VRID and interface when their peers differ (class 7 of
    issue 12); each must hear only its own peer: A wins U1 against B (150 > 100) and loses U2 to C (50 < 100)."""
    ns_a, ns_b, ns_c = (lab.host(n, f"{LAB_NET}.{i}/24") for i, n in ((1, "a"), (2, "b"), (3, "c")))
    vip1, vip2 = f"{LAB_NET}.101", f"{LAB_NET}.102"

    def unicast(name, prio, src, peer, vip):
        return _conf(name=name, vrid=9, priority=prio, vips=(f"{vip}/24",), instance_extra=(
            f"    unicast_src_ip {LAB_NET}.{src}\n    unicast_peer {{\n        {LAB_NET}.{peer}\n    }}\n"))

    two = unicast("U1", 150, 1, 2, vip1) + unicast("U2", 50, 1, 3, vip2).split("}\n", 1)[1]
    config, diags = vrrpd.parse_config_text(two, "a.conf")
    assert not messages(diags, vrrpd.Severity.ERROR) and len(config.vrrp_instances) == 2
    a = _Node(lab, ns_a, tmp_path, "A", two)
    b = _Node(lab, ns_b, tmp_path, "B", unicast("U1", 100, 2, 1, vip1))
    c = _Node(lab, ns_c, tmp_path, "C", unicast("U2", 100, 3, 1, vip2))
    nodes = [a, b, c]
    _wait_holders(lab, nodes, ["A"], 10, vip=vip1)
    _wait_holders(lab, nodes, ["C"], 10, vip=vip2)
    end = time.monotonic() + 1.5
    while time.monotonic() < end:  # and it stays so: neither instance takes the other's adverts as its own
        assert _holders(lab, nodes, vip1) == ["A"] and _holders(lab, nodes, vip2) == ["C"]
        time.sleep(0.05)
    for n in nodes:
        n.stop()
