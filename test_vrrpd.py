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

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import vrrpd  # noqa: E402

SEEDS = HERE.parent / "shared" / "seeds"
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
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.2f}s waiting for {what}")
        time.sleep(interval)


def sh(cmd: List[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, timeout=timeout, capture_output=True, text=True, **kw)


class Lab:
    """A throw-away network: namespaces joined by a bridge (in its own namespace), removed on close().

    Names are unique per lab so several labs (and several test runs) can coexist."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.namespaces: List[str] = []
        self.processes: List[subprocess.Popen] = []
        self.bridge_ns = self.netns("br")
        self.ip("link", "add", "br0", "type", "bridge", ns=self.bridge_ns)
        # VRRP multicast must not be eaten by IGMP snooping
        self.ip("link", "set", "br0", "type", "bridge", "mcast_snooping", "0", ns=self.bridge_ns)
        self.ip("link", "set", "br0", "up", ns=self.bridge_ns)
        self._port = 0

    def netns(self, short: str) -> str:
        name = f"vt{self.tag}{short}"
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.ip("link", "set", "lo", "up", ns=name)
        return name

    def ip(self, *args: str, ns: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["ip"] + (["-n", ns] if ns else []) + list(args)
        return sh(cmd, check=check)

    def host(self, short: str, address: str, ifname: str = "eth0") -> str:
        """A namespace with one interface `ifname` on the lab bridge, holding `address` (CIDR)."""
        ns = self.netns(short)
        self._port += 1
        peer = f"p{self._port}"
        self.ip("link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", peer, "netns", self.bridge_ns)
        self.ip("link", "set", peer, "master", "br0", "up", ns=self.bridge_ns)
        self.ip("addr", "add", address, "dev", ifname, ns=ns)
        self.ip("link", "set", ifname, "up", ns=ns)
        return ns

    def link(self, ns: str, ifname: str, up: bool) -> None:
        self.ip("link", "set", ifname, "up" if up else "down", ns=ns)

    def addresses(self, ns: str, ifname: str = "eth0") -> List[str]:
        out = self.ip("-o", "addr", "show", "dev", ifname, ns=ns, check=False).stdout
        return [line.split()[3] for line in out.splitlines() if " inet" in line]

    def has_address(self, ns: str, address: str, ifname: str = "eth0") -> bool:
        return any(a.split("/")[0] == address for a in self.addresses(ns, ifname))

    def exec(self, ns: str, cmd: List[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, **kw)
        self.processes.append(proc)
        return proc

    def run(self, ns: str, cmd: List[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return sh(["ip", "netns", "exec", ns] + cmd, check=check, timeout=timeout)

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGKILL)
                except OSError:
                    pass
        for proc in self.processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for ns in reversed(self.namespaces):
            # kill anything left inside (e.g. children of a killed daemon)
            sh(["ip", "netns", "pids", ns], check=False)
            pids = sh(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            sh(["ip", "netns", "del", ns], check=False)


@pytest.fixture
def lab():
    require_root_netns()
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        the_lab.close()


# ============================================================================================
# B. Configuration language and --check
# ============================================================================================


def test_module_imports_and_has_map():
    assert vrrpd.__doc__ and "Map of this file" in vrrpd.__doc__


# ============================================================================================
# C. VRRP wire format and state machine (unit)
# ============================================================================================


# ============================================================================================
# D. VRRP in the namespace lab, and interop with keepalived
# ============================================================================================


# ============================================================================================
# E. Tracking, notify scripts and e-mail
# ============================================================================================


# ============================================================================================
# F. LVS: IPVS netlink and checkers (unit), and the real kernel in a VM
# ============================================================================================


# ============================================================================================
# G. Operations: command line, signals, reload, status, systemd
# ============================================================================================


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


class BenchNode:
    """One daemon (vrrpd or keepalived) in a namespace, with the same keepalived-syntax config."""

    def __init__(self, lab: Lab, kind: str, ns: str, conf: str, workdir: Path):
        self.lab, self.kind, self.ns = lab, kind, ns
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / f"{ns}.conf"
        self.conf.write_text(conf)
        self.log = workdir / f"{ns}.log"
        self.workdir = workdir
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> float:
        """Start the daemon; returns the wall-clock start time (comparable with probe stamps)."""
        if self.kind == "keepalived":
            cmd = ["keepalived", "-n", "-l", "-D", "-P", "-f", str(self.conf),
                   "-p", str(self.workdir / f"{self.ns}.pid"), "-r", str(self.workdir / f"{self.ns}.vrrp.pid"),
                   "-c", str(self.workdir / f"{self.ns}.chk.pid")]
        else:
            cmd = [PYTHON, VRRPD, "-n", "-l", "-f", str(self.conf)]
        started = time.time()
        self.proc = self.lab.exec(self.ns, cmd, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        return started

    def pids(self) -> List[int]:
        """Every process of this daemon (keepalived runs a parent and a VRRP child)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        pids = [self.proc.pid]
        out = sh(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], check=False).stdout.split()
        return pids + [int(p) for p in out]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill_hard(self) -> None:
        """kill -9 every process of the daemon at once (a crash: no priority-0 advert, VIPs left)."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc is not None:
            self.proc.wait()


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
    a = BenchNode(lab, kind, a_ns, conf_a, workdir / kind)
    b = BenchNode(lab, kind, b_ns, conf_b, workdir / kind)
    probe_b = Probe(lab, b_ns)
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
    # steady state: B has heard A for a while and holds no VIP
    time.sleep(max(1.0, 3 * advert))
    assert not lab.has_address(b.ns, "10.77.0.100"), "both nodes hold the VIP"


def bench_hard_failover(kind: str, workdir: Path, version: int = 2, advert: float = 1.0) -> dict:
    lab, a, b, client, probe_b = _pair_lab(kind, workdir, version, advert)
    try:
        _start_pair(lab, a, b, probe_b, advert)
        killed = time.time()
        a.kill_hard()
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


def _longest_gap(ping: subprocess.Popen) -> float:
    ping.send_signal(signal.SIGINT)
    out, _ = ping.communicate(timeout=10)
    stamps = [float(line.split("]")[0][1:]) for line in out.splitlines()
              if line.startswith("[") and "bytes from" in line]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return max(gaps) if gaps else float("inf")


def bench_graceful_failover(kind: str, workdir: Path, version: int = 2, advert: float = 1.0,
                            handover: bool = False) -> dict:
    extra_global = handover
    lab, a, b, client, probe_b = _pair_lab(kind, workdir, version, advert)
    try:
        if extra_global:
            for node in (a, b):
                node.conf.write_text(node.conf.read_text().replace("router_id", "vrrp_handover_on_stop\n    router_id"))
        _start_pair(lab, a, b, probe_b, advert)
        ping = _pinger(lab, client, "10.77.0.100")
        time.sleep(0.5)
        stopped = time.time()
        a.stop(signal.SIGTERM)
        wait_for(lambda: probe_b.address_added("10.77.0.100", stopped), 10, 0.005, "VIP on node B")
        took = probe_b.address_added("10.77.0.100", stopped) - stopped
        time.sleep(0.5)
        return {"sigterm_to_vip": took, "ping_gap": _longest_gap(ping)}
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
        return {"start_to_preempt": took, "ping_gap": _longest_gap(ping)}
    finally:
        lab.close()


def bench_first_master(kind: str, workdir: Path) -> dict:
    lab = Lab()
    try:
        ns = lab.host("a", "10.77.0.1/24")
        conf = bench_config([{"name": "VI_1", "state": "MASTER", "interface": "eth0", "virtual_router_id": 51,
                              "priority": 150, "advert_int": 1, "vips": ["10.77.0.100/24"]}])
        node = BenchNode(lab, kind, ns, conf, workdir / kind)
        probe = Probe(lab, ns)
        started = node.start()
        wait_for(lambda: probe.address_added("10.77.0.100", started), 15, 0.005, "VIP")
        return {"start_to_master": probe.address_added("10.77.0.100", started) - started}
    finally:
        lab.close()


def bench_idle_cost(kind: str, workdir: Path, count: int, window: float = 20.0) -> dict:
    """CPU seconds per minute and RSS of one node running `count` MASTER instances (advert_int 1)."""
    lab = Lab()
    try:
        interfaces = max(1, (count + 249) // 250)
        ns = lab.netns("n")
        obs = lab.host("o", "10.78.0.254/16")
        for i in range(interfaces):
            lab._port += 1
            peer = f"p{lab._port}"
            lab.ip("link", "add", f"eth{i}", "netns", ns, "type", "veth", "peer", "name", peer, "netns", lab.bridge_ns)
            lab.ip("link", "set", peer, "master", "br0", "up", ns=lab.bridge_ns)
            lab.ip("addr", "add", f"10.78.{i}.1/16", "dev", f"eth{i}", ns=ns)
            lab.ip("link", "set", f"eth{i}", "up", ns=ns)
        instances = []
        for n in range(count):
            i, vrid = divmod(n, 250)
            instances.append({"name": f"VI_{n}", "state": "MASTER", "interface": f"eth{i}",
                              "virtual_router_id": vrid + 1, "priority": 150, "advert_int": 1,
                              "vips": [f"10.79.{i}.{vrid + 1}/32"]})
        node = BenchNode(lab, kind, ns, bench_config(instances), workdir / kind)
        probe = Probe(lab, obs, ("224.0.0.18@eth0",))
        node.start()
        wait_for(lambda: len({e[3] for e in probe.adverts(since=time.time() - 1.5)}) >= min(count, 250),
                 60, 0.2, f"{count} instances advertising")
        time.sleep(2)
        pids = node.pids()
        cpu0, t0 = _cpu_seconds(pids), time.time()
        time.sleep(window)
        cpu1, t1 = _cpu_seconds(pids), time.time()
        intervals = []
        first_vrid = "1"
        stamps = [e[1] for e in probe.adverts(src="10.78.0.1", since=t0) if e[3] == first_vrid]
        intervals = [abs((b - a) - 1.0) for a, b in zip(stamps, stamps[1:])]
        intervals.sort()
        result = {"cpu_s_per_min": (cpu1 - cpu0) * 60.0 / (t1 - t0), "rss_mb": _rss_mb(pids)}
        if intervals:
            result["jitter_p50_ms"] = intervals[len(intervals) // 2] * 1000
            result["jitter_p99_ms"] = intervals[min(len(intervals) - 1, int(len(intervals) * 0.99))] * 1000
        return result
    finally:
        lab.close()


def _idle_scenario(count: int, window: float):
    def run(kind: str, workdir: Path) -> dict:
        r = bench_idle_cost(kind, workdir, count, window)
        out = {f"cpu_{count}": r["cpu_s_per_min"], f"rss_{count}": r["rss_mb"]}
        if "jitter_p50_ms" in r:
            out.update({f"jit50_{count}": r["jitter_p50_ms"], f"jit99_{count}": r["jitter_p99_ms"]})
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
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("keepalived") is None:
        print("make bench needs root and keepalived (sudo make deps)", file=sys.stderr)
        return 2
    reps = 2 if args.quick else args.reps
    window = 8.0 if args.quick else 20.0
    kinds = [args.only] if args.only else ["vrrpd", "keepalived"]
    scenarios = [
        ("time to first MASTER (s)", "start_to_master", lambda k, w: bench_first_master(k, w), reps),
        ("hard failover after last advert (s)", "after_last_advert", lambda k, w: bench_hard_failover(k, w), reps),
        ("  excess over Master_Down_Interval (ms)", "over_mdi_ms", None, 0),
        ("graceful failover SIGTERM->VIP (s)", "sigterm_to_vip", lambda k, w: bench_graceful_failover(k, w), reps),
        ("  client ping gap (s)", "ping_gap", None, 0),
        ("graceful + vrrp_handover_on_stop ping gap (s)", "handover_gap",
         lambda k, w: {"handover_gap": bench_graceful_failover(k, w, handover=True)["ping_gap"]}
         if k == "vrrpd" else {}, reps),
        ("preempt-back client ping gap (s)", "preempt_gap",
         lambda k, w: {"preempt_gap": bench_preempt_back(k, w)["ping_gap"]}, reps),
        ("v3 advert_int 0.05 hard failover (s)", "v3_fast",
         lambda k, w: {"v3_fast": bench_hard_failover(k, w, 3, 0.05)["after_last_advert"]}, reps),
    ]
    for count in (1, 255, 1000):
        scenarios += [
            (f"{count} instances: CPU s/min", f"cpu_{count}", _idle_scenario(count, window), 1 if count > 1 else reps),
            (f"{count} instances: RSS MB", f"rss_{count}", None, 0),
            (f"{count} instances: advert jitter p50 (ms)", f"jit50_{count}", None, 0),
            (f"{count} instances: advert jitter p99 (ms)", f"jit99_{count}", None, 0),
        ]
    results: dict = {k: {} for k in kinds}
    with tempfile.TemporaryDirectory(prefix="vrrpd-bench-") as tmp:
        for title, _key, func, n in scenarios:
            if func is None:
                continue
            for kind in kinds:
                for rep in range(n):
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
        a, b = table.get("vrrpd", {}).get(key), table.get("keepalived", {}).get(key)
        ratio = f"{a['median'] / b['median']:.2f}" if a and b and b["median"] else "-"
        lines.append(f"| {title} | {cells[0]} | {cells[1]} | {ratio} |")
    print("\n".join(lines))
    Path(args.output).write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "results": table}, indent=2))
    print(f"\n(median of repetitions, min-max in brackets; JSON in {args.output})")
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "bench":
    sys.exit(bench_main(sys.argv[2:]))
