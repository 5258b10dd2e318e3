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
    return vrrpd._csum16(data) == 0


def test_vrrp6_checksum_matches_golden_vector():
    src, dst = vrrpd.ipaddress.IPv6Address("fe80::c8"), vrrpd.VRRP_MCAST_GROUP6
    message = bytes.fromhex("310a640200640000") + vrrpd.ipaddress.IPv6Address("fe80::1").packed
    message += vrrpd.ipaddress.IPv6Address("2001:db8::1").packed
    assert vrrpd.vrrp6_checksum(src, dst, message) == 0x3F5D
    # a different source changes the sum: the pseudo-header is really included
    assert vrrpd.vrrp6_checksum(vrrpd.ipaddress.IPv6Address("fe80::c9"), dst, message) != 0x3F5D


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
    assert _csum_ok(vrrpd.ipv6_pseudo_header(target, vrrpd.ALL_NODES6, len(icmp), 58) + icmp)
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


def test_macvlan_rtnetlink_messages_create_a_private_vmac(lab):
    node = lab.host("n", "10.81.0.2/24")
    run_py_in(lab, node, (
        "import socket\n"
        "nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)\n"
        "def talk(msg):\n"
        "    nl.send(msg)\n"
        "    err = int.from_bytes(nl.recv(65536)[16:20], 'little', signed=True)\n"
        "    assert err == 0, err\n"
        "base = socket.if_nametoindex('eth0')\n"
        "talk(vrrpd.rtm_newlink_macvlan(1, 'vrrp.10', base, vrrpd.vmac_address(10)))\n"
        "idx = socket.if_nametoindex('vrrp.10')\n"
        "talk(vrrpd.rtm_setlink_addrgenmode(2, idx))\n"
        "talk(vrrpd.rtm_setlink_up(3, idx))\n"
    ))
    out = lab.ip("-d", "link", "show", "vrrp.10", ns=node).stdout
    assert "macvlan mode private" in out and "00:00:5e:00:01:0a" in out
    assert "addrgenmode random" in out and ",UP" in out
    run_py_in(lab, node, (
        "import socket\n"
        "nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)\n"
        "nl.send(vrrpd.rtm_dellink(4, socket.if_nametoindex('vrrp.10')))\n"
        "assert int.from_bytes(nl.recv(65536)[16:20], 'little', signed=True) == 0\n"
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


def start_keepalived(lab: Lab, ns: str, conf: Path, tmp_path: Path) -> Path:
    """keepalived in the foreground inside ns, logging to a file; returns the log path."""
    require(shutil.which("keepalived") is not None, "needs keepalived")
    logfile = tmp_path / f"keepalived-{ns}.log"
    out = open(logfile, "w")
    lab.exec(ns, ["keepalived", "-n", "-l", "-D", "--no-syslog", "-f", str(conf),
                  "-p", str(tmp_path / f"ka-{ns}.pid"), "-r", str(tmp_path / f"vrrp-{ns}.pid")],
             stdout=out, stderr=subprocess.STDOUT)
    return logfile


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
    logfile = start_keepalived(lab, ka, conf, tmp_path)
    # our side: listen 2 s (keepalived becomes MASTER and advertises), then advertise priority 200 for 2 s
    out = run_py_in(lab, us, (
        "import ipaddress, socket, struct, time, json\n"
        "s = vrrpd.VrrpSocket6('eth0', socket.if_nametoindex('eth0'))\n"
        "s.join(vrrpd.VRRP_MCAST_GROUP6)\n"
        "src = vrrpd.link_local_address('eth0')\n"
        "msg = struct.pack('!BBBBHH', 0x31, 60, 200, 1, 10, 0) + ipaddress.IPv6Address('2001:db8:60::100').packed\n"
        "seen, t0 = [], time.monotonic()\n"
        "while time.monotonic() - t0 < 4.5:\n"
        "    if time.monotonic() - t0 > 2:\n"
        "        s.send(src, vrrpd.VRRP_MCAST_GROUP6, msg)\n"
        "    time.sleep(0.1)\n"
        "    while True:\n"
        "        got = s.recv()\n"
        "        if got is None:\n"
        "            break\n"
        "        data, frm, dst, hl = got\n"
        "        seen.append([data.hex(), str(frm), str(dst), hl, round(time.monotonic() - t0, 2)])\n"
        "print(json.dumps(seen))\n"
    ), timeout=30).stdout
    import json
    seen = json.loads(out)
    assert seen, "no advert from keepalived"
    first = bytes.fromhex(seen[0][0])
    assert seen[0][1] == ka_ll and seen[0][2] == "ff02::12" and seen[0][3] == 255
    assert first[:4] == bytes([0x31, 60, 100, 1]) and struct_unpack_h(first, 4) & 0xFFF == 10
    assert first[8:] == vrrpd.ipaddress.IPv6Address("2001:db8:60::100").packed
    # kernel-verified checksum matches ours over the pseudo-header
    zeroed = first[:6] + b"\0\0" + first[8:]
    assert vrrpd.vrrp6_checksum(vrrpd.ipaddress.IPv6Address(ka_ll), vrrpd.VRRP_MCAST_GROUP6, zeroed) == \
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
    logfile = start_keepalived(lab, ka, conf, tmp_path)
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
        "body = body[:6] + struct.pack('!H', vrrpd._csum16(body)) + body[8:]\n"
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


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "bench":
    print("benchmark not implemented yet")
