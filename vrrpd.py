#!/usr/bin/env python3
"""vrrpd - a keepalived-compatible VRRP and LVS daemon in one standard-library Python file.

Map of this file (sections in the order data flows, from the edges to the core and back out):

  1. Constants and small types   VRRP/netlink numbers, State, AuthType, LbKind, Diagnostic, errors
  2. Configuration model         dataclasses, one per keepalived block, values already typed
  3. Configuration parser        lexer (comments, braces, quotes, include, $VARS), parser, validation
  4. Wire formats                VRRP v2/v3 encode/decode, checksums, ARP/NA frames, netlink packing
  5. VRRP state machine          sans-IO: given `now` and events, returns actions (RFC 5798 section 6)
  6. Tracking and health checks  vrrp_script/track_file/track_process and LVS checkers, decisions only
  7. Kernel edge                 raw VRRP sockets, AF_PACKET, rtnetlink, generic netlink IPVS
  8. Event loop                  one selectors loop with a timer heap, child processes, signals
  9. Notification                notify scripts, notify FIFO, SMTP alerts (off the loop)
 10. Daemon                      wires config -> engines -> kernel, reload, status
 11. Command line                main(), --check, signals

Only the standard library is used, and Python 3.9 is the minimum version.
"""

from __future__ import annotations

import enum
import heapq
import hmac
import ipaddress
import logging
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

__version__ = "0.1.0"
PROG = "vrrpd"
log = logging.getLogger(PROG)

# ============================================================================================
# 1. Constants and small types
# ============================================================================================

IPPROTO_VRRP = 112
IPPROTO_AH = 51
VRRP_MCAST_GROUP4 = ipaddress.IPv4Address("224.0.0.18")
VRRP_MCAST_GROUP6 = ipaddress.IPv6Address("ff02::12")
VRRP_TTL = 255

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]


class State(enum.Enum):
    """VRRP instance states, named as keepalived logs them."""

    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOP = "STOP"


class AuthType(enum.Enum):
    NONE = 0
    PASS = 1
    AH = 2


class LbKind(enum.Enum):
    """IPVS forwarding methods; the values are IP_VS_CONN_F_* numbers."""

    NAT = 0
    TUN = 2
    DR = 3


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass
class Diagnostic:
    """One configuration problem: FILE:LINE: error|warning: message (hint)."""

    file: str
    line: int
    severity: Severity
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.severity.value}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class VrrpdError(Exception):
    """Base class of every error this module raises on purpose."""


class ConfigError(VrrpdError):
    """A configuration could not be read; carries every Diagnostic found."""

    def __init__(self, diagnostics: List[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


class PacketError(VrrpdError):
    """A received packet is malformed; `reason` is a short counter key."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class NetlinkError(VrrpdError):
    """The kernel answered a netlink request with an error (errno in .errno)."""

    def __init__(self, err: int, what: str = ""):
        self.errno = err
        super().__init__(f"{what}: {os.strerror(err)}" if what else os.strerror(err))


# ============================================================================================
# 2. Configuration model: plain dataclasses, one per block, typed values.
#    Defaults equal keepalived's. `line`/`file` say where a block was defined.
# ============================================================================================


@dataclass
class Command:
    """A script or notify command as written (`raw`) and split into argv as keepalived does.

    `shell` is True when the text uses shell syntax and must run through a shell."""

    raw: str
    argv: List[str]
    shell: bool = False
    user: Optional[str] = None
    group: Optional[str] = None


@dataclass
class GlobalDefs:
    router_id: str = field(default_factory=lambda: socket.gethostname())
    notification_email: List[str] = field(default_factory=list)
    notification_email_from: str = field(default_factory=lambda: f"keepalived@{socket.gethostname()}")
    smtp_server: Optional[str] = None
    smtp_port: int = 25
    smtp_helo_name: Optional[str] = None
    smtp_connect_timeout: float = 30.0
    smtp_alert: Optional[bool] = None
    smtp_alert_vrrp: Optional[bool] = None
    smtp_alert_checker: Optional[bool] = None
    no_email_faults: bool = False
    vrrp_skip_check_adv_addr: bool = False
    vrrp_strict: bool = False
    vrrp_iptables: bool = False
    vrrp_nftables: bool = False
    vrrp_garp_interval: float = 0.0
    vrrp_gna_interval: float = 0.0
    vrrp_mcast_group4: ipaddress.IPv4Address = VRRP_MCAST_GROUP4
    vrrp_mcast_group6: ipaddress.IPv6Address = VRRP_MCAST_GROUP6
    vrrp_version: int = 2
    vrrp_garp_master_delay: float = 5.0
    vrrp_garp_master_repeat: int = 5
    vrrp_garp_master_refresh: float = 0.0
    vrrp_garp_master_refresh_repeat: int = 1
    vrrp_garp_lower_prio_delay: Optional[float] = None
    vrrp_garp_lower_prio_repeat: Optional[int] = None
    vrrp_lower_prio_no_advert: bool = False
    vrrp_higher_prio_send_advert: bool = False
    vrrp_check_unicast_src: bool = False
    vrrp_startup_delay: float = 0.0
    v3_checksum_as_v2: bool = False
    script_user: Optional[str] = None
    script_group: Optional[str] = None
    enable_script_security: bool = False
    notify_fifo: Optional[str] = None
    vrrp_notify_fifo: Optional[str] = None
    lvs_notify_fifo: Optional[str] = None
    vrrp_notify_priority_changes: bool = False
    lvs_flush: bool = False
    lvs_flush_on_stop: bool = False
    lvs_timeouts: Dict[str, int] = field(default_factory=dict)
    # vrrpd extension: a stopping MASTER keeps its VIPs until the new master is heard.
    vrrp_handover_on_stop: bool = False
    # keywords vrrpd accepts but does not act on, kept for dumps: name -> list of words
    other: Dict[str, List[str]] = field(default_factory=dict)


@dataclass
class VirtualIP:
    """One `virtual_ipaddress` entry."""

    address: IPInterface  # address with its prefix (default /32 or /128)
    brd: Optional[IPAddress] = None
    dev: Optional[str] = None  # None: the instance's interface
    scope: str = "global"
    label: Optional[str] = None
    peer: Optional[IPAddress] = None
    nodad: bool = False
    no_track: bool = False
    line: int = 0


@dataclass
class TrackRef:
    """An entry of track_script / track_file / track_process / track_interface."""

    name: str
    weight: Optional[int] = None  # None: use the tracked object's own weight
    reverse: bool = False
    line: int = 0


@dataclass
class UnicastPeer:
    address: IPAddress
    min_ttl: int = 0
    max_ttl: int = 255


@dataclass
class VrrpInstance:
    name: str
    file: str = ""
    line: int = 0
    state: State = State.BACKUP  # configured start-up preference: MASTER or BACKUP
    interface: Optional[str] = None
    virtual_router_id: int = 0
    priority: int = 100
    advert_int: float = 1.0
    version: Optional[int] = None  # None: global vrrp_version
    auth_type: AuthType = AuthType.NONE
    auth_pass: bytes = b""  # already truncated to 8 bytes
    virtual_ipaddress: List[VirtualIP] = field(default_factory=list)
    virtual_ipaddress_excluded: List[VirtualIP] = field(default_factory=list)
    track_interface: List[TrackRef] = field(default_factory=list)
    track_script: List[TrackRef] = field(default_factory=list)
    track_file: List[TrackRef] = field(default_factory=list)
    track_process: List[TrackRef] = field(default_factory=list)
    unicast_src_ip: Optional[IPAddress] = None
    unicast_peer: List[UnicastPeer] = field(default_factory=list)
    unicast_ttl: int = 255
    mcast_src_ip: Optional[IPAddress] = None
    nopreempt: bool = False
    preempt_delay: float = 0.0
    notify_master: Optional[Command] = None
    notify_backup: Optional[Command] = None
    notify_fault: Optional[Command] = None
    notify_stop: Optional[Command] = None
    notify_deleted: Optional[Command] = None
    notify: Optional[Command] = None
    notify_master_rx_lower_pri: Optional[Command] = None
    smtp_alert: Optional[bool] = None
    garp_master_delay: Optional[float] = None  # None: global value
    garp_master_repeat: Optional[int] = None
    garp_master_refresh: Optional[float] = None
    garp_master_refresh_repeat: Optional[int] = None
    garp_lower_prio_delay: Optional[float] = None
    garp_lower_prio_repeat: Optional[int] = None
    use_vmac: bool = False
    vmac_name: Optional[str] = None
    vmac_xmit_base: bool = False
    native_ipv6: bool = False
    accept: Optional[bool] = None  # None: keepalived's default (accept unless strict)
    skip_check_adv_addr: Optional[bool] = None
    strict_mode: Optional[bool] = None
    lower_prio_no_advert: Optional[bool] = None
    higher_prio_send_advert: Optional[bool] = None
    dont_track_primary: bool = False
    v3_checksum_as_v2: Optional[bool] = None
    sync_group: Optional[str] = None  # filled from vrrp_sync_group

    @property
    def family(self) -> int:
        """4 or 6, from the first VIP (IPv4 when there is none)."""
        if self.virtual_ipaddress:
            return self.virtual_ipaddress[0].address.version
        return 4


@dataclass
class VrrpScript:
    name: str
    file: str = ""
    line: int = 0
    script: Optional[Command] = None
    interval: float = 1.0
    timeout: Optional[float] = None  # None: equal to interval
    weight: int = 0
    weight_reverse: bool = False
    rise: int = 1
    fall: int = 1
    user: Optional[str] = None
    group: Optional[str] = None
    init_fail: bool = False


@dataclass
class TrackFile:
    name: str
    file: str = ""
    line: int = 0
    path: str = ""
    weight: int = 1
    weight_reverse: bool = False
    init_file: Optional[int] = None
    init_file_overwrite: bool = False


@dataclass
class TrackProcess:
    name: str
    file: str = ""
    line: int = 0
    process: List[str] = field(default_factory=list)  # name then optional arguments
    param_match: str = "exact"  # exact | initial | partial
    weight: int = 0
    weight_reverse: bool = False
    quorum: int = 1
    quorum_max: Optional[int] = None
    delay: float = 0.0
    full_command: bool = False


@dataclass
class SyncGroup:
    name: str
    file: str = ""
    line: int = 0
    group: List[str] = field(default_factory=list)
    track_interface: List[TrackRef] = field(default_factory=list)
    track_script: List[TrackRef] = field(default_factory=list)
    track_file: List[TrackRef] = field(default_factory=list)
    track_process: List[TrackRef] = field(default_factory=list)
    notify_master: Optional[Command] = None
    notify_backup: Optional[Command] = None
    notify_fault: Optional[Command] = None
    notify_stop: Optional[Command] = None
    notify: Optional[Command] = None
    smtp_alert: Optional[bool] = None


@dataclass
class UrlCheck:
    path: str = "/"
    digest: Optional[str] = None  # lower-case hex MD5 of the body
    status_code: List[Tuple[int, int]] = field(default_factory=list)  # ranges; empty: 200-299
    virtualhost: Optional[str] = None


@dataclass
class Checker:
    """One health checker of a real server: TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, SMTP_CHECK, DNS_CHECK."""

    kind: str
    line: int = 0
    connect_ip: Optional[IPAddress] = None  # None: the real server's address
    connect_port: Optional[int] = None  # None: the real server's port
    bindto: Optional[IPAddress] = None
    bind_port: Optional[int] = None
    connect_timeout: Optional[float] = None  # None: inherit (real server, virtual server, 5 s)
    retry: Optional[int] = None  # None: checker default (1; MISC 0; DNS 3)
    delay_before_retry: Optional[float] = None  # None: checker default (1 s; HTTP/SSL 3 s)
    delay_loop: Optional[float] = None  # None: inherit from the virtual server
    warmup: Optional[float] = None
    alpha: Optional[bool] = None
    log_all_failures: bool = False
    # HTTP_GET / SSL_GET
    urls: List[UrlCheck] = field(default_factory=list)
    virtualhost: Optional[str] = None
    http_protocol: str = "1.0"
    enable_sni: bool = True
    sni_name: Optional[str] = None
    # MISC_CHECK
    misc_path: Optional[Command] = None
    misc_timeout: Optional[float] = None
    misc_dynamic: bool = False
    user: Optional[str] = None
    # SMTP_CHECK
    helo_name: Optional[str] = None
    # DNS_CHECK
    dns_type: str = "SOA"
    dns_name: str = "."


@dataclass
class RealServer:
    address: IPAddress
    port: Optional[int] = None
    line: int = 0
    weight: int = 1
    lb_kind: Optional[LbKind] = None  # None: the virtual server's
    notify_up: Optional[Command] = None
    notify_down: Optional[Command] = None
    uthreshold: int = 0
    lthreshold: int = 0
    inhibit_on_failure: Optional[bool] = None
    alpha: Optional[bool] = None
    smtp_alert: Optional[bool] = None
    virtualhost: Optional[str] = None
    connect_timeout: Optional[float] = None
    retry: Optional[int] = None
    delay_before_retry: Optional[float] = None
    delay_loop: Optional[float] = None
    warmup: Optional[float] = None
    checkers: List[Checker] = field(default_factory=list)


@dataclass
class VirtualServerGroupEntry:
    """`IP [PORT]`, a range `IP1-IP2 [PORT]` / `IP-LASTOCTET`, a CIDR, or `fwmark N`."""

    first: Optional[IPAddress] = None
    last: Optional[IPAddress] = None
    port: Optional[int] = None
    fwmark: Optional[int] = None
    family: int = 4


@dataclass
class VirtualServerGroup:
    name: str
    file: str = ""
    line: int = 0
    entries: List[VirtualServerGroupEntry] = field(default_factory=list)


@dataclass
class VirtualServer:
    file: str = ""
    line: int = 0
    address: Optional[IPAddress] = None  # `virtual_server IP PORT`
    port: Optional[int] = None
    fwmark: Optional[int] = None  # `virtual_server fwmark N`
    group: Optional[str] = None  # `virtual_server group NAME`
    ip_family: Optional[int] = None
    delay_loop: float = 60.0
    lb_algo: str = "wlc"
    lb_kind: LbKind = LbKind.NAT
    tunnel_type: Optional[str] = None  # ipip | gue | gre
    tunnel_port: Optional[int] = None
    tunnel_csum: Optional[str] = None
    persistence_timeout: Optional[int] = None
    persistence_granularity: Optional[IPAddress] = None
    persistence_engine: Optional[str] = None
    protocol: str = "TCP"
    ops: bool = False
    sched_flags: List[str] = field(default_factory=list)  # flag-1.., sh-port, sh-fallback, mh-port, mh-fallback
    hashed: bool = False
    sorry_server: Optional[Tuple[IPAddress, Optional[int]]] = None
    sorry_server_inhibit: bool = False
    sorry_server_lvs_method: Optional[LbKind] = None
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: Optional[Command] = None
    quorum_down: Optional[Command] = None
    alpha: bool = False
    omega: bool = False
    inhibit_on_failure: bool = False
    ha_suspend: bool = False
    virtualhost: Optional[str] = None
    smtp_alert: Optional[bool] = None
    connect_timeout: Optional[float] = None
    retry: Optional[int] = None
    delay_before_retry: Optional[float] = None
    warmup: Optional[float] = None
    real_servers: List[RealServer] = field(default_factory=list)

    @property
    def family(self) -> int:
        if self.address is not None:
            return self.address.version
        return self.ip_family or 4


@dataclass
class Config:
    """Everything one configuration file (with its includes) says."""

    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    vrrp_instances: List[VrrpInstance] = field(default_factory=list)
    vrrp_scripts: Dict[str, VrrpScript] = field(default_factory=dict)
    track_files: Dict[str, TrackFile] = field(default_factory=dict)
    track_processes: Dict[str, TrackProcess] = field(default_factory=dict)
    sync_groups: List[SyncGroup] = field(default_factory=list)
    virtual_server_groups: Dict[str, VirtualServerGroup] = field(default_factory=dict)
    virtual_servers: List[VirtualServer] = field(default_factory=list)
    files: List[str] = field(default_factory=list)  # every file read, includes too


# ============================================================================================
# 3. Configuration parser
# ============================================================================================

# (parser, validation and check_config() go here)


# ============================================================================================
# 4. Wire formats: pure functions on bytes
# ============================================================================================

# (VRRP encode/decode, checksums, ARP/NA frames, netlink packing go here)


# --------------------------------------------------------------------------------------------
# 4b. IPv6, AH and firewall formats
#     IPv6 pseudo-header checksum, unsolicited Neighbour Advertisements, the IPsec AH header
#     keepalived puts in front of VRRPv2 (`auth_type AH`), the nftables ruleset of strict mode,
#     and the VMAC address and macvlan rtnetlink messages. Pure functions on bytes and text.
# --------------------------------------------------------------------------------------------

ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
ND_OPT_TARGET_LINKADDR = 2
ND_NA_FLAG_ROUTER = 0x80
ND_NA_FLAG_SOLICITED = 0x40
ND_NA_FLAG_OVERRIDE = 0x20
ALL_NODES6 = ipaddress.IPv6Address("ff02::1")
NDISC_HOPLIMIT = 255

AH_HEADER_LEN = 24  # next header, payload len, reserved, SPI, sequence number, 96-bit ICV
AH_PAYLOAD_LEN = 4  # RFC 2402 section 2.2: (3 + 3 ICV words) - 2
AH_ICV_LEN = 12  # HMAC-MD5-96, RFC 2403
AH_SEQ_MAX = 0xFFFFFFFD  # keepalived stops counting here and waits for a new master

NFT_TABLE = "vrrpd"  # our own table, `inet vrrpd`; keepalived's is `keepalived`

# rtnetlink numbers for the VMAC macvlan (linux/rtnetlink.h, linux/if_link.h)
RTM_NEWLINK = 16
RTM_DELLINK = 17
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
IFF_UP = 0x1
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_AF_SPEC = 26
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_MACVLAN_MODE = 1
IFLA_INET6_ADDR_GEN_MODE = 8
MACVLAN_MODE_PRIVATE = 1
IN6_ADDR_GEN_MODE_NONE = 1
IN6_ADDR_GEN_MODE_RANDOM = 3
NLA_F_NESTED = 0x8000


def _csum16(data: bytes) -> int:
    """RFC 1071 Internet checksum of data (odd lengths padded with a zero byte)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv6_pseudo_header(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, length: int, next_header: int) -> bytes:
    """RFC 8200 section 8.1 pseudo-header: source, destination, 32-bit length, 3 zero bytes, next header."""
    return src.packed + dst.packed + struct.pack("!I3xB", length, next_header)


def vrrp6_checksum(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, message: bytes) -> int:
    """VRRPv3 checksum over an IPv6 message (RFC 5798 section 5.2.8); the checksum field must be zero."""
    return _csum16(ipv6_pseudo_header(src, dst, len(message), IPPROTO_VRRP) + message)


def multicast_mac6(group: ipaddress.IPv6Address) -> bytes:
    """Ethernet address of an IPv6 multicast group (RFC 2464 section 7): 33:33 + low 32 bits."""
    return b"\x33\x33" + group.packed[12:]


def build_unsolicited_na(src_mac: bytes, target: ipaddress.IPv6Address, router: bool) -> bytes:
    """An Ethernet frame carrying an unsolicited Neighbour Advertisement for `target` (RFC 4861 section 4.4).

    As keepalived sends it: from the VIP itself to ff02::1, hop limit 255, Override set, Router set
    when the interface forwards IPv6, Solicited clear, and a target link-layer address option."""
    flags = ND_NA_FLAG_OVERRIDE | (ND_NA_FLAG_ROUTER if router else 0)
    option = struct.pack("!BB", ND_OPT_TARGET_LINKADDR, 1) + src_mac
    icmp = struct.pack("!BBHB3x", ND_NEIGHBOR_ADVERT, 0, 0, flags) + target.packed + option
    checksum = _csum16(ipv6_pseudo_header(target, ALL_NODES6, len(icmp), IPPROTO_ICMPV6) + icmp)
    icmp = icmp[:2] + struct.pack("!H", checksum) + icmp[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(icmp), IPPROTO_ICMPV6, NDISC_HOPLIMIT) + target.packed + ALL_NODES6.packed
    return multicast_mac6(ALL_NODES6) + src_mac + struct.pack("!H", ETH_P_IPV6) + ip6 + icmp


def ipv6_forwarding(ifname: str) -> bool:
    """Whether the kernel forwards IPv6 on ifname: keepalived then sets the NA Router flag."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/forwarding") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


# -- IPsec AH for VRRPv2 (RFC 2402 header, HMAC-MD5-96 as RFC 2403; keepalived's choices) ------


def ah_key(auth_pass: bytes) -> bytes:
    """The HMAC key: auth_pass NUL-padded (or cut) to 8 bytes, as keepalived stores it."""
    return auth_pass[:8].ljust(8, b"\0")


def _ipv4_header(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, payload_len: int, ident: int, ttl: int,
                 proto: int, tos: int = 0xC0, frag_off: int = 0, checksum: int = 0) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + payload_len, ident, frag_off, ttl, proto, checksum,
                       src.packed, dst.packed)


def ah_icv(key: bytes, ip_header: bytes, ah_header: bytes, vrrp: bytes, unicast: bool = False) -> bytes:
    """The 96-bit ICV keepalived computes: HMAC-MD5 over IP header + AH header + VRRP message.

    The IP header's mutable fields TOS, fragment offset and header checksum are zeroed (TTL too for
    unicast, whose TTL may differ), and so is the ICV field of the AH header."""
    ip = bytearray(ip_header)
    ip[1] = 0
    ip[6:8] = b"\0\0"
    ip[10:12] = b"\0\0"
    if unicast:
        ip[8] = 0
    ah = ah_header[:12] + bytes(AH_ICV_LEN)
    return hmac.new(ah_key(key), bytes(ip) + ah + vrrp, "md5").digest()[:AH_ICV_LEN]


def build_ipv4_ah(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, vrrp: bytes, key: bytes, seq: int,
                  ident: int, ttl: int = VRRP_TTL, unicast: bool = False) -> bytes:
    """A whole IPv4 packet (for an IP_HDRINCL socket): IP header, AH header, then the VRRPv2 message.

    SPI = the source address, as keepalived chooses it; `ident` must be non-zero, otherwise the
    kernel would fill in an IP id after the ICV was computed."""
    header = _ipv4_header(src, dst, AH_HEADER_LEN + len(vrrp), ident, ttl, IPPROTO_AH)
    ah = struct.pack("!BBH4sI", IPPROTO_VRRP, AH_PAYLOAD_LEN, 0, src.packed, seq) + bytes(AH_ICV_LEN)
    icv = ah_icv(key, header, ah, vrrp, unicast)
    header = header[:10] + struct.pack("!H", _csum16(header)) + header[12:]
    return header + ah[:12] + icv + vrrp


def parse_ipv4_ah(packet: bytes, key: bytes, unicast: bool = False) -> Tuple[int, bytes]:
    """Check the AH header of a received IPv4 packet; return (sequence number, VRRP message).

    Raises PacketError with reason `ah_short`, `ah_next_header`, `ah_icv` or `ah_spi`. The
    sequence number is for AhSequence.accept() to judge."""
    if len(packet) < 20:
        raise PacketError("ah_short", "no IPv4 header")
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + AH_HEADER_LEN or packet[9] != IPPROTO_AH:
        raise PacketError("ah_short", "no AH header")
    ah = packet[ihl:ihl + AH_HEADER_LEN]
    next_header, _plen, _rsvd, spi, seq = struct.unpack("!BBH4sI", ah[:12])
    if next_header != IPPROTO_VRRP:
        raise PacketError("ah_next_header", f"AH carries protocol {next_header}")
    vrrp = packet[ihl + AH_HEADER_LEN:]
    if not hmac.compare_digest(ah_icv(key, packet[:ihl], ah, vrrp, unicast), ah[12:]):
        raise PacketError("ah_icv", "invalid IPSEC HMAC-MD5 value, due to fields mutation or bad password")
    if spi != packet[12:16]:
        raise PacketError("ah_spi", f"SPI {ipaddress.IPv4Address(spi)} is not the source address")
    return seq, vrrp


class AhSequence:
    """keepalived's one AH sequence counter per instance, shared by sending and receiving.

    A sender counts up from its counter; a receiver accepts only numbers above it and raises it,
    so a new master continues above the numbers its peers have already seen."""

    def __init__(self) -> None:
        self.seq_number = 0
        self.cycle = False  # the counter ran out; reset when becoming MASTER

    def next(self) -> int:
        """The sequence number of the next advert to send."""
        if self.seq_number > AH_SEQ_MAX:
            self.cycle = True
        else:
            self.seq_number += 1
        return self.seq_number

    def accept(self, seq: int) -> bool:
        """Anti-replay check of a received number; True (and remembered) if it is new."""
        if seq > self.seq_number:
            self.seq_number = seq
            return True
        return False

    def sync_from_lower(self, seq: int) -> None:
        """A MASTER hearing a lower-priority AH advert continues above its number (keepalived)."""
        self.seq_number = seq + 1
        self.cycle = False

    def becoming_master(self) -> None:
        if self.cycle:
            self.cycle = False
            self.seq_number = 0


# -- strict mode firewall: the nftables ruleset -------------------------------------------------


def nft_ruleset(vips: List[IPAddress], table: str = NFT_TABLE) -> str:
    """The `nft -f -` input creating our table that drops traffic to no-accept VIPs.

    The sets hold every VIP of instances without `accept` that are not address owners. Packets
    only reach the input hook for an address the host holds, i.e. while the instance is MASTER,
    so one static set gives keepalived's behaviour without touching the firewall on transitions.
    Neighbour discovery stays allowed so IPv6 VIPs still resolve."""
    v4 = sorted({a for a in vips if a.version == 4})
    v6 = sorted({a for a in vips if a.version == 6})

    def elements(addrs: List[Any]) -> str:
        return f" elements = {{ {', '.join(str(a) for a in addrs)} }};" if addrs else ""

    nd = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"
    return (
        f"table inet {table} {{\n"
        f"  set vips4 {{ type ipv4_addr;{elements(v4)} }}\n"
        f"  set vips6 {{ type ipv6_addr;{elements(v6)} }}\n"
        f"  chain in {{\n    type filter hook input priority -1; policy accept;\n"
        f"    {nd}\n    ip daddr @vips4 drop\n    ip6 daddr @vips6 drop\n  }}\n"
        f"  chain out {{\n    type filter hook output priority -1; policy accept;\n"
        f"    {nd}\n    ip saddr @vips4 drop\n    ip6 saddr @vips6 drop\n  }}\n"
        f"}}\n"
    )


def nft_delete_argv(table: str = NFT_TABLE) -> List[str]:
    return ["nft", "delete", "table", "inet", table]


# -- VMAC: the macvlan and its rtnetlink messages ------------------------------------------------


def vmac_address(vrid: int, family: int = 4) -> bytes:
    """RFC 5798 section 7.3 virtual MAC: 00-00-5E-00-01-{VRID} (IPv4) or 00-00-5E-00-02-{VRID} (IPv6)."""
    return bytes([0, 0, 0x5E, 0, 1 if family == 4 else 2, vrid])


def vmac_ifname(vrid: int, name: Optional[str] = None, prefix: str = "vrrp") -> str:
    """The macvlan's name: the one given to `use_vmac`, else keepalived's `vrrp.<VRID>`."""
    return name or f"{prefix}.{vrid}"


def _nla(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes(-length % 4)


def _nlmsg(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), msg_type, flags, seq, 0) + body


def _ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def rtm_newlink_macvlan(seq: int, name: str, base_ifindex: int, mac: bytes) -> bytes:
    """RTM_NEWLINK creating macvlan `name` (mode private, address `mac`) on base_ifindex, down."""
    info = _nla(IFLA_INFO_KIND, b"macvlan") + _nla(IFLA_INFO_DATA | NLA_F_NESTED,
                                                  _nla(IFLA_MACVLAN_MODE, struct.pack("=I", MACVLAN_MODE_PRIVATE)))
    attrs = (_nla(IFLA_IFNAME, name.encode() + b"\0") + _nla(IFLA_LINK, struct.pack("=I", base_ifindex))
             + _nla(IFLA_ADDRESS, mac) + _nla(IFLA_LINKINFO | NLA_F_NESTED, info))
    return _nlmsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, _ifinfomsg() + attrs)


def rtm_setlink_addrgenmode(seq: int, ifindex: int, mode: int = IN6_ADDR_GEN_MODE_RANDOM) -> bytes:
    """RTM_NEWLINK setting the IPv6 link-local generation mode; must come before the link goes up.

    `random` (FRR's advice, RFC 5798 section 7.4) keeps two routers' link-locals apart although
    their VMACs are equal."""
    spec = _nla(IFLA_AF_SPEC | NLA_F_NESTED,
                _nla(socket.AF_INET6 | NLA_F_NESTED, _nla(IFLA_INET6_ADDR_GEN_MODE, bytes([mode]))))
    return _nlmsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, _ifinfomsg(ifindex) + spec)


def rtm_setlink_up(seq: int, ifindex: int, up: bool = True) -> bytes:
    return _nlmsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, _ifinfomsg(ifindex, IFF_UP if up else 0, IFF_UP))


def rtm_dellink(seq: int, ifindex: int) -> bytes:
    return _nlmsg(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq, _ifinfomsg(ifindex))


# ============================================================================================
# 5. VRRP state machine (sans-IO)
# ============================================================================================

# (the per-instance state machine goes here)


# --------------------------------------------------------------------------------------------
# 5b. Sync groups (keepalived's vrrp_sync.c, sans-IO)
#     Members move together: the group goes MASTER only when every member wants MASTER (its own
#     master-down timer fired); one member going BACKUP or FAULT takes all the others with it.
#     Methods return the moves [(instance name, state)] for the daemon to apply to each member.
# --------------------------------------------------------------------------------------------


class SyncGroupEngine:
    """The state of one vrrp_sync_group and the rules that keep its members together."""

    def __init__(self, name: str, members: List[str]):
        self.name = name
        self.members = list(members)
        self.state = State.BACKUP
        self.wants_master: set = set()
        self.faulty: set = set()

    def _move_all(self, state: State) -> List[Tuple[str, State]]:
        log.info("VRRP_Group(%s) Syncing instances to %s state", self.name, state.value)
        self.state = state
        return [(member, state) for member in self.members]

    def request_master(self, member: str) -> List[Tuple[str, State]]:
        """`member` wants MASTER (its master-down timer fired or it preempts).

        Returns every member's move when all now want it (or the group already is MASTER), and
        nothing while some member does not: the caller then stays BACKUP and re-arms its timer."""
        if self.state == State.FAULT or self.faulty:
            return []
        if self.state == State.MASTER:
            return [(member, State.MASTER)]
        self.wants_master.add(member)
        if self.wants_master.issuperset(self.members):
            return self._move_all(State.MASTER)
        log.debug("VRRP_Group(%s) %s waits for the other members to want MASTER", self.name, member)
        return []

    def withdraw(self, member: str) -> None:
        """`member` heard a master again: it no longer wants MASTER."""
        self.wants_master.discard(member)

    def backup(self, member: str) -> List[Tuple[str, State]]:
        """`member` went BACKUP on its own (a higher-priority master): every member follows."""
        self.wants_master.discard(member)
        if self.state == State.MASTER:
            self.wants_master.clear()
            return self._move_all(State.BACKUP)
        return []

    def set_fault(self, member: str, fault: bool) -> List[Tuple[str, State]]:
        """`member`'s fault condition (interface down, weight-0 tracker) became `fault`.

        The group is in FAULT while any member is; it returns to BACKUP when none is."""
        if fault:
            self.faulty.add(member)
            self.wants_master.discard(member)
            if self.state != State.FAULT:
                self.wants_master.clear()
                return self._move_all(State.FAULT)
            return [(member, State.FAULT)]
        self.faulty.discard(member)
        if self.state == State.FAULT:
            if not self.faulty:
                return self._move_all(State.BACKUP)
            return [(member, State.FAULT)]
        return []


# ============================================================================================
# 6. Tracking and health-check decisions (sans-IO)
# ============================================================================================

# (script/file/process trackers and LVS checker decision logic go here)


class Tracking:
    """vrrp_script / track_file / track_process state for every instance and sync group.

    Contract used by the Daemon (section 10):
      Tracking(loop, config, on_change)   on_change() is called on the loop whenever any tracked
                                          object changes state, so the daemon re-reads adjustments.
      start() / stop()                    begin / end running scripts and watching files/processes.
      adjustment(inst) -> (delta, fault)  the sum of the weights of inst's trackers in their current
                                          state, and whether a weight-0 tracker says FAULT.
      status() -> dict                    per-tracker state for dumps and --json.
    Placeholder until the tracking work lands: nothing is tracked."""

    def __init__(self, loop: EventLoop, config: Config, on_change: Callable[[], Any]):
        self.loop = loop
        self.config = config
        self.on_change = on_change

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def adjustment(self, inst: VrrpInstance) -> Tuple[int, bool]:
        return 0, False

    def status(self) -> Dict[str, Any]:
        return {}


# ============================================================================================
# 7. Kernel edge: sockets and netlink
# ============================================================================================

# (raw VRRP sockets, AF_PACKET, rtnetlink, generic netlink IPVS go here)


class LvsManager:
    """The LVS half: programs IPVS over generic netlink and runs the checkers on the loop.

    Contract used by the Daemon:
      LvsManager(loop, config, notifier)
      start()            read the kernel table, create what is missing, start checkers; if the
                         kernel has no IPVS, log why and keep VRRP running.
      stop()             stop checkers, remove what vrrpd created.
      reload(config)     apply only the difference.
      status() -> dict   services, real servers, checker states.
    Placeholder until the LVS work lands."""

    def __init__(self, loop: EventLoop, config: Config, notifier: Notifier):
        self.loop = loop
        self.config = config
        self.notifier = notifier

    def start(self) -> None:
        if self.config.virtual_servers:
            log.warning("LVS: virtual_server blocks are not supported yet; ignoring them")

    def stop(self) -> None:
        pass

    def reload(self, config: Config) -> None:
        self.config = config

    def status(self) -> Dict[str, Any]:
        return {}


# --------------------------------------------------------------------------------------------
# 7c. Strict-mode firewall and VMAC links
#     Both are set up at start and undone at stop with short blocking calls (the `nft` command,
#     one rtnetlink request each); nothing here runs on the advert path.
# --------------------------------------------------------------------------------------------


def instance_accepts(inst: VrrpInstance, global_defs: GlobalDefs) -> bool:
    """Accept_Mode as keepalived decides it: `accept`/`no_accept` if given, else off in strict mode.

    An address owner (priority 255) always accepts (RFC 5798 section 6.1)."""
    if inst.priority == 255:
        return True
    if inst.accept is not None:
        return inst.accept
    strict = inst.strict_mode if inst.strict_mode is not None else global_defs.vrrp_strict
    return not strict


def no_accept_vips(config: Config) -> List[IPAddress]:
    """Every VIP (and excluded VIP) of the instances that must not accept traffic to them."""
    vips: List[IPAddress] = []
    for inst in config.vrrp_instances:
        if not instance_accepts(inst, config.global_defs):
            vips += [v.address.ip for v in inst.virtual_ipaddress + inst.virtual_ipaddress_excluded]
    return vips


class StrictFirewall:
    """Our nftables table (`inet vrrpd`) for no_accept instances; keepalived 2.2 maps vrrp_iptables here too."""

    def __init__(self, table: str = NFT_TABLE):
        self.table = table
        self.active = False

    def _nft(self, argv: List[str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10, check=False)

    def start(self, vips: List[IPAddress]) -> bool:
        """Remove a table left by a crashed run, then add ours if some VIP needs it; False on failure."""
        try:
            if self._nft(["nft", "list", "table", "inet", self.table]).returncode == 0:
                log.info("Deleting old inet %s table", self.table)
                self._nft(nft_delete_argv(self.table))
            if not vips:
                return True
            result = self._nft(["nft", "-f", "-"], nft_ruleset(vips, self.table))
        except (OSError, subprocess.SubprocessError) as exc:
            if vips:
                log.error("no_accept: cannot run nft (%s); VIPs stay reachable on the MASTER", exc)
            return not vips
        if result.returncode != 0:
            log.error("no_accept: nft refused the ruleset: %s", result.stderr.strip())
            return False
        self.active = True
        log.info("no_accept: nftables table inet %s drops traffic to %d VIP(s)", self.table, len(set(vips)))
        return True

    def stop(self) -> None:
        if not self.active:
            return
        try:
            self._nft(nft_delete_argv(self.table))
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("cannot remove nftables table inet %s: %s", self.table, exc)
        self.active = False


def rtnl_talk(message: bytes) -> None:
    """Send one rtnetlink request and wait for its acknowledgement (a short blocking call).

    Raises NetlinkError with the kernel's errno."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.settimeout(2.0)
        nl.send(message)
        seq = struct.unpack_from("=I", message, 8)[0]
        while True:
            data = nl.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type, _flags, msg_seq, _pid = struct.unpack_from("=IHHII", data, offset)
                if msg_type == 2 and msg_seq == seq:  # NLMSG_ERROR; 0 is the acknowledgement
                    err = -struct.unpack_from("=i", data, offset + 16)[0]
                    if err:
                        raise NetlinkError(err, "rtnetlink")
                    return
                offset += max(16, (length + 3) & ~3)


def _read_sysctl(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _write_sysctl(path: str, value: str) -> bool:
    try:
        with open(path, "w") as f:
            f.write(value)
        return True
    except OSError:
        return False


class VmacManager:
    """Creates the VMAC macvlans of `use_vmac` instances and removes them (and restores sysctls) on stop."""

    def __init__(self) -> None:
        self.created: Dict[str, int] = {}  # name -> ifindex
        self._saved_sysctls: Dict[str, str] = {}
        self._seq = 0

    def _set_sysctl(self, path: str, value: str, restore: bool = False) -> None:
        old = _read_sysctl(path)
        if old is None or old == value:
            return
        if restore and path not in self._saved_sysctls:
            self._saved_sysctls[path] = old
        _write_sysctl(path, value)

    def create(self, name: str, base: str, vrid: int, family: int = 4) -> int:
        """Create (or re-create after a crash) macvlan `name` on `base` with the VMAC; returns its ifindex.

        An existing interface of that name is only replaced if it carries this VMAC."""
        mac = vmac_address(vrid, family)
        if os.path.exists(f"/sys/class/net/{name}"):
            found = _read_sysctl(f"/sys/class/net/{name}/address") or ""
            if found != ":".join(f"{b:02x}" for b in mac):
                raise VrrpdError(f"use_vmac: interface {name} exists with MAC {found}, not the VMAC")
            log.info("use_vmac: removing stale %s", name)
            self._seq += 1
            rtnl_talk(rtm_dellink(self._seq, socket.if_nametoindex(name)))
        base_index = socket.if_nametoindex(base)
        self._seq += 1
        rtnl_talk(rtm_newlink_macvlan(self._seq, name, base_index, mac))
        index = socket.if_nametoindex(name)
        self.created[name] = index
        self._seq += 1
        rtnl_talk(rtm_setlink_addrgenmode(self._seq, index))
        conf4 = "/proc/sys/net/ipv4/conf"
        # keepalived's settings: the VMAC must hear its peers and answer ARP only for its own VIPs;
        # the base interface must not answer ARP for the VIPs with its own MAC.
        self._set_sysctl(f"{conf4}/{name}/arp_ignore", "1")
        self._set_sysctl(f"{conf4}/{name}/accept_local", "1")
        self._set_sysctl(f"{conf4}/{name}/rp_filter", "0")
        if family == 4:
            self._set_sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
            self._set_sysctl(f"{conf4}/{base}/arp_ignore", "1", restore=True)
            self._set_sysctl(f"{conf4}/{base}/arp_filter", "1", restore=True)
        self._seq += 1
        rtnl_talk(rtm_setlink_up(self._seq, index))
        log.info("use_vmac: created %s on %s with MAC %s", name, base, ":".join(f"{b:02x}" for b in mac))
        return index

    def remove_all(self) -> None:
        for name, index in list(self.created.items()):
            self._seq += 1
            try:
                rtnl_talk(rtm_dellink(self._seq, index))
                log.info("use_vmac: removed %s", name)
            except (OSError, NetlinkError) as exc:
                log.warning("use_vmac: cannot remove %s: %s", name, exc)
            del self.created[name]
        for path, value in self._saved_sysctls.items():
            _write_sysctl(path, value)
        self._saved_sysctls.clear()


class VrrpSocket6:
    """The raw IPv6 VRRP socket of one interface (RFC 5798 section 5.1.2).

    Adverts go from the interface's link-local address with hop limit 255; the kernel fills in and
    verifies the checksum over the IPv6 pseudo-header (IPV6_CHECKSUM), as keepalived has it do."""

    def __init__(self, ifname: str, ifindex: int):
        self.ifname = ifname
        self.ifindex = ifindex
        self.groups: List[ipaddress.IPv6Address] = []
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_VRRP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_BINDTODEVICE", 25), ifname.encode())
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 6)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, VRRP_TTL)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def join(self, group: ipaddress.IPv6Address) -> None:
        if group in self.groups:
            return
        mreq = group.packed + struct.pack("=I", self.ifindex)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        self.groups.append(group)

    def send(self, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, payload: bytes) -> None:
        """Send payload (checksum left zero for the kernel) from src, which is set per packet."""
        pktinfo = src.packed + struct.pack("=I", self.ifindex)
        self.sock.sendmsg([payload], [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)], 0,
                          (str(dst), 0, 0, self.ifindex))

    def recv(self) -> Optional[Tuple[bytes, ipaddress.IPv6Address, ipaddress.IPv6Address, int]]:
        """One pending advert as (VRRP message, source, destination, hop limit), or None."""
        try:
            data, ancillary, _flags, addr = self.sock.recvmsg(65535, 256)
        except (BlockingIOError, InterruptedError):
            return None
        hoplimit, dst = -1, ipaddress.IPv6Address(0)
        for level, kind, value in ancillary:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
                hoplimit = struct.unpack("=i", value[:4])[0]
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
                dst = ipaddress.IPv6Address(value[:16])
        return data, ipaddress.IPv6Address(addr[0].split("%")[0]), dst, hoplimit

    def close(self) -> None:
        self.sock.close()


class NdiscSocket:
    """An AF_PACKET socket that sends unsolicited Neighbour Advertisements on one interface."""

    def __init__(self, ifname: str):
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.setblocking(False)

    def send(self, mac: bytes, address: ipaddress.IPv6Address) -> None:
        frame = build_unsolicited_na(mac, address, ipv6_forwarding(self.ifname))
        self.sock.sendto(frame, (self.ifname, ETH_P_IPV6))

    def close(self) -> None:
        self.sock.close()


def link_local_address(ifname: str) -> Optional[ipaddress.IPv6Address]:
    """The interface's usable (not tentative) IPv6 link-local address, from /proc/net/if_inet6."""
    try:
        with open("/proc/net/if_inet6") as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    for row in rows:
        if len(row) >= 6 and row[5] == ifname and row[3] == "20" and not int(row[4], 16) & 0x40:  # 0x40 tentative
            return ipaddress.IPv6Address(bytes.fromhex(row[0]))
    return None


# ============================================================================================
# 8. Event loop
# ============================================================================================


class Timer:
    """A callback scheduled on the EventLoop; cancel() is cheap (lazy removal from the heap)."""

    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple):
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when


class Child:
    """A child process started by EventLoop.spawn(); its exit is reported on the loop."""

    def __init__(self, proc: subprocess.Popen, on_exit: Optional[Callable[[Child], Any]]):
        self.proc = proc
        self.pid = proc.pid
        self.on_exit = on_exit
        self.returncode: Optional[int] = None  # exit status, or -signal
        self.timed_out = False
        self.timer: Optional[Timer] = None
        self.pidfd: Optional[int] = None

    def kill(self) -> None:
        """Kill the child's whole process group (scripts run in their own session)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            try:
                self.proc.kill()
            except OSError:
                pass


class EventLoop:
    """One selectors loop with a timer heap, child processes and signals; nothing here blocks.

    Time is `time.monotonic()`. Thread-safe entry: call_soon_threadsafe()."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._timers: List[Timer] = []
        self._ready: List[Tuple[Callable[..., Any], tuple]] = []
        self._lock = threading.Lock()
        self._running = False
        self._children: Dict[int, Child] = {}
        self._signal_handlers: Dict[int, Callable[[int], Any]] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.add_reader(self._wake_r, self._on_wakeup)
        self._old_wakeup_fd: Optional[int] = None
        self._poll_children_timer: Optional[Timer] = None

    # -- time and timers ------------------------------------------------------------------
    @staticmethod
    def time() -> float:
        return time.monotonic()

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(when, callback, args)
        heapq.heappush(self._timers, timer)
        return timer

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self.call_at(self.time() + max(0.0, delay), callback, *args)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            self._ready.append((callback, args))
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    # -- file descriptors -----------------------------------------------------------------
    def add_reader(self, fileobj: Any, callback: Callable[..., Any], *args: Any) -> None:
        self._modify(fileobj, selectors.EVENT_READ, (callback, args))

    def remove_reader(self, fileobj: Any) -> None:
        self._modify(fileobj, selectors.EVENT_READ, None)

    def add_writer(self, fileobj: Any, callback: Callable[..., Any], *args: Any) -> None:
        self._modify(fileobj, selectors.EVENT_WRITE, (callback, args))

    def remove_writer(self, fileobj: Any) -> None:
        self._modify(fileobj, selectors.EVENT_WRITE, None)

    def _modify(self, fileobj: Any, event: int, handler: Optional[tuple]) -> None:
        try:
            key: Optional[selectors.SelectorKey] = self.selector.get_key(fileobj)
        except (KeyError, ValueError):
            key = None
        reader, writer = key.data if key is not None else (None, None)
        if event == selectors.EVENT_READ:
            reader = handler
        else:
            writer = handler
        mask = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        if key is None:
            if mask:
                self.selector.register(fileobj, mask, (reader, writer))
        elif mask:
            self.selector.modify(fileobj, mask, (reader, writer))
        else:
            self.selector.unregister(fileobj)

    # -- child processes ------------------------------------------------------------------
    def spawn(
        self,
        argv: List[str],
        on_exit: Optional[Callable[[Child], Any]] = None,
        timeout: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
        user: Optional[str] = None,
        group: Optional[str] = None,
        stdout: Any = subprocess.DEVNULL,
    ) -> Child:
        """Start argv in its own session; on_exit(child) runs on the loop when it ends.

        A child still running after `timeout` seconds is killed with its process group and
        reported with child.timed_out = True. Raises OSError if it cannot be started."""
        kwargs: Dict[str, Any] = {}
        if user is not None or group is not None:
            kwargs.update(_user_group_kwargs(user, group))
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env=env,
            **kwargs,
        )
        child = Child(proc, on_exit)
        self._children[child.pid] = child
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                child.pidfd = pidfd_open(child.pid)
                self.add_reader(child.pidfd, self._reap, child)
            except OSError:
                child.pidfd = None
        if child.pidfd is None and self._poll_children_timer is None:
            self._poll_children_timer = self.call_later(0.05, self._poll_children)
        if timeout is not None:
            child.timer = self.call_later(timeout, self._child_timeout, child)
        return child

    def _child_timeout(self, child: Child) -> None:
        if child.returncode is None:
            child.timed_out = True
            child.kill()

    def _poll_children(self) -> None:
        self._poll_children_timer = None
        for child in list(self._children.values()):
            if child.pidfd is None:
                self._reap(child)
        if any(c.pidfd is None for c in self._children.values()):
            self._poll_children_timer = self.call_later(0.05, self._poll_children)

    def _reap(self, child: Child) -> None:
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = child.pid, 0
        if pid == 0:
            return
        child.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        child.proc.returncode = child.returncode
        self._children.pop(child.pid, None)
        if child.pidfd is not None:
            self.remove_reader(child.pidfd)
            os.close(child.pidfd)
            child.pidfd = None
        if child.timer is not None:
            child.timer.cancel()
        if child.on_exit is not None:
            child.on_exit(child)

    def kill_children(self) -> None:
        for child in list(self._children.values()):
            child.kill()

    # -- signals --------------------------------------------------------------------------
    def add_signal_handler(self, signum: int, callback: Callable[[int], Any]) -> None:
        """Run callback(signum) on the loop when the signal arrives (main thread only)."""
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w.fileno())
        self._signal_handlers[signum] = callback
        signal.signal(signum, lambda s, f: None)

    def _on_wakeup(self) -> None:
        try:
            data = self._wake_r.recv(4096)
        except OSError:
            data = b""
        for byte in data:
            handler = self._signal_handlers.get(byte)
            if handler is not None:
                self._ready.append((handler, (byte,)))

    # -- running --------------------------------------------------------------------------
    def stop(self) -> None:
        self._running = False

    def run(self, until: Optional[float] = None) -> None:
        """Run until stop() is called, or until monotonic time `until` if given."""
        self._running = True
        while self._running:
            if until is not None and self.time() >= until:
                break
            self.run_once(until)

    def run_once(self, until: Optional[float] = None) -> None:
        now = self.time()
        timeout: Optional[float] = None
        if self._ready:
            timeout = 0.0
        else:
            while self._timers and self._timers[0].cancelled:
                heapq.heappop(self._timers)
            if self._timers:
                timeout = max(0.0, self._timers[0].when - now)
            if until is not None:
                timeout = max(0.0, until - now) if timeout is None else min(timeout, max(0.0, until - now))
        try:
            events = self.selector.select(timeout)
        except InterruptedError:
            events = []
        for key, mask in events:
            reader, writer = key.data
            if mask & selectors.EVENT_READ and reader:
                self._ready.append(reader)
            if mask & selectors.EVENT_WRITE and writer:
                self._ready.append(writer)
        now = self.time()
        while self._timers and (self._timers[0].when <= now or self._timers[0].cancelled):
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._ready.append((timer.callback, timer.args))
        with self._lock:
            ready, self._ready = self._ready, []
        for callback, args in ready:
            try:
                callback(*args)
            except Exception as exc:  # one faulty callback must not stop the daemon
                log.exception("internal error in %s: %s", getattr(callback, "__qualname__", callback), exc)

    def close(self) -> None:
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()


def _user_group_kwargs(user: Optional[str], group: Optional[str]) -> Dict[str, Any]:
    """Popen keyword arguments that drop privileges to user/group (names or numbers)."""
    import grp
    import pwd

    kwargs: Dict[str, Any] = {}
    if user is not None:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        kwargs["user"] = pw.pw_uid
        kwargs["group"] = pw.pw_gid
        kwargs["extra_groups"] = []
    if group is not None:
        kwargs["group"] = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    return kwargs


# ============================================================================================
# 9. Notification
# ============================================================================================

# (notify scripts, notify FIFO, SMTP alerts go here)


class Notifier:
    """Tells the operator: notify scripts, the notify FIFO and SMTP alerts. Never blocks the loop.

    Contract used by the Daemon and the LVS manager:
      Notifier(loop, config)
      vrrp_instance(inst, state, priority)   an instance entered `state` (MASTER/BACKUP/FAULT/STOP)
      vrrp_group(group, state)               a sync group entered `state`
      vrrp_master_rx_lower_pri(inst, priority)
      checker(vs, rs, up, reason)            a real server went up/down (LVS)
      close(timeout)                         flush what can be flushed within timeout seconds
    Placeholder until the notify work lands: transitions are only logged by the caller."""

    def __init__(self, loop: EventLoop, config: Config):
        self.loop = loop
        self.config = config

    def vrrp_instance(self, inst: VrrpInstance, state: State, priority: int) -> None:
        pass

    def vrrp_group(self, group: SyncGroup, state: State) -> None:
        pass

    def vrrp_master_rx_lower_pri(self, inst: VrrpInstance, priority: int) -> None:
        pass

    def checker(self, vs: VirtualServer, rs: RealServer, up: bool, reason: str = "") -> None:
        pass

    def close(self, timeout: float = 1.0) -> None:
        pass


# ============================================================================================
# 10. Daemon
# ============================================================================================

# (the Daemon class that wires everything together goes here)


# ============================================================================================
# 11. Command line
# ============================================================================================

# --------------------------------------------------------------------------------------------
# 11a. Logging, systemd notification, and the status socket
# --------------------------------------------------------------------------------------------

SYSLOG_FACILITIES = {
    "daemon": 3 << 3, "user": 1 << 3,
    **{f"local{n}": (16 + n) << 3 for n in range(8)},
    **{str(n): (16 + n) << 3 for n in range(8)},
}
DEFAULT_CONTROL_SOCKET = "/run/vrrpd/vrrpd.sock"


class ConsoleFormatter(logging.Formatter):
    """keepalived's console format: `Sun Nov 22 01:02:03 2026: (VI_1) Entering MASTER STATE`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(record.created))
        text = f"{stamp}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(console: bool, detail: bool = False, facility: str = "daemon") -> None:
    """Log to stderr (`-l`) and/or syslog through /dev/log with the `-S` facility; `-D` adds detail lines."""
    import logging.handlers

    root = logging.getLogger(PROG)
    root.handlers.clear()
    root.setLevel(logging.DEBUG if detail else logging.INFO)
    root.propagate = False
    if console:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ConsoleFormatter())
        root.addHandler(handler)
    if os.path.exists("/dev/log"):
        try:
            code = SYSLOG_FACILITIES.get(facility, SYSLOG_FACILITIES["daemon"]) >> 3
            syslog = logging.handlers.SysLogHandler("/dev/log", facility=code)
            syslog.setFormatter(logging.Formatter(f"{PROG}[%(process)d]: %(message)s"))
            root.addHandler(syslog)
        except OSError:
            pass
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))


def sd_notify(message: str) -> bool:
    """Send a systemd notification (READY=1, RELOADING=1, STOPPING=1, STATUS=...) to $NOTIFY_SOCKET."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode(), path)
        return True
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", path.replace("\0", "@"), exc)
        return False


class ControlServer:
    """A unix stream socket that answers every connection with the daemon's status as one JSON document.

    `status()` returns the dict documented at format_status_table(). Writes are non-blocking; a client that
    does not read is dropped after a second."""

    def __init__(self, loop: EventLoop, path: str, status: Callable[[], Dict[str, Any]]):
        self.loop = loop
        self.path = path
        self.status = status
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o660)
        self.sock.listen(8)
        self.sock.setblocking(False)
        loop.add_reader(self.sock, self._accept)

    def _accept(self) -> None:
        import json

        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.setblocking(False)
        data = (json.dumps(self.status(), indent=2, default=str) + "\n").encode()
        state = {"data": data}
        deadline = self.loop.call_later(1.0, self._drop, conn)

        def write() -> None:
            try:
                sent = conn.send(state["data"])
            except BlockingIOError:
                return
            except OSError:
                sent = len(state["data"])
            state["data"] = state["data"][sent:]
            if not state["data"]:
                deadline.cancel()
                self._drop(conn)

        self.loop.add_writer(conn, write)

    def _drop(self, conn: socket.socket) -> None:
        try:
            self.loop.remove_writer(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def close(self) -> None:
        self.loop.remove_reader(self.sock)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def query_status(path: str = DEFAULT_CONTROL_SOCKET, timeout: float = 3.0) -> Dict[str, Any]:
    """Ask a running daemon for its status (the client side of ControlServer)."""
    import json

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return json.loads(b"".join(chunks).decode())


def format_status_table(status: Dict[str, Any]) -> str:
    """Render the daemon's status for a human.

    The status dict: {"version", "pid", "router_id", "uptime",
      "instances": [{"name", "state", "interface", "vrid", "version", "priority", "effective_priority",
                     "master_address", "vips": [str], "stats": {"adverts_sent", "adverts_received",
                     "bad_packets": {reason: n}, "transitions"}}],
      "sync_groups": [{"name", "state", "members": [str]}],
      "trackers": {name: {"kind", "state", ...}}, "lvs": {...}}"""
    lines = [f"vrrpd {status.get('version', '?')} pid {status.get('pid', '?')} "
             f"router_id {status.get('router_id', '?')} up {float(status.get('uptime', 0)):.0f}s"]
    rows = [("INSTANCE", "STATE", "IF", "VRID", "PRIO", "EFF", "MASTER", "VIPS")]
    for inst in status.get("instances", []):
        rows.append((
            str(inst.get("name", "")), str(inst.get("state", "")), str(inst.get("interface", "")),
            str(inst.get("vrid", "")), str(inst.get("priority", "")), str(inst.get("effective_priority", "")),
            str(inst.get("master_address") or "-"), ",".join(inst.get("vips", [])) or "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for group in status.get("sync_groups", []):
        lines.append(f"sync group {group.get('name')}: {group.get('state')} ({', '.join(group.get('members', []))})")
    trackers = status.get("trackers") or {}
    if trackers:
        lines.append("TRACKER  STATE")
        for name, info in sorted(trackers.items()):
            lines.append(f"{name}  {info.get('state', info) if isinstance(info, dict) else info}")
    lvs = status.get("lvs") or {}
    for vs in lvs.get("virtual_servers", []) if isinstance(lvs, dict) else []:
        lines.append(f"VS {vs.get('name', '')}: {vs.get('state', '')}")
        for rs in vs.get("real_servers", []):
            lines.append(f"  RS {rs.get('name', '')}: {'UP' if rs.get('up') else 'DOWN'} weight {rs.get('weight', '')}")
    return "\n".join(lines) + "\n"



def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=PROG, description="keepalived-compatible VRRP and LVS daemon")
    parser.add_argument("-f", "--use-file", dest="config", help="configuration file")
    parser.add_argument("--check", "-t", "--config-test", dest="check", action="store_true",
                        help="check the configuration and exit")
    parser.add_argument("-v", "--version", action="version", version=f"{PROG} {__version__}")
    parser.parse_args(argv)
    print(f"{PROG}: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
