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
import errno
import heapq
import ipaddress
import logging
import os
import random
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


# ============================================================================================
# 5. VRRP state machine (sans-IO)
# ============================================================================================

# (the per-instance state machine goes here)


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


# --------------------------------------------------------------------------------------------
# 6b. LVS checkers: decisions from results and time (sans-IO); the I/O is in section 7b
# --------------------------------------------------------------------------------------------

LVS_CHECKER_KINDS = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK")


@dataclass
class CheckerParams:
    """A checker's effective timing, resolved checker -> real server -> virtual server -> default."""

    delay_loop: float
    connect_timeout: float
    retry: int
    delay_before_retry: float
    warmup: float
    alpha: bool


def checker_params(vs: VirtualServer, rs: RealServer, chk: Checker) -> CheckerParams:
    """keepalived's inheritance of checker settings, with its per-checker defaults."""

    def pick(*values: Any) -> Any:
        return next(v for v in values if v is not None)

    delay_loop = pick(chk.delay_loop, rs.delay_loop, vs.delay_loop)
    default_retry = {"MISC_CHECK": 0, "DNS_CHECK": 3}.get(chk.kind, 1)
    default_dbr = {"HTTP_GET": 3.0, "SSL_GET": 3.0, "DNS_CHECK": delay_loop}.get(chk.kind, 1.0)
    return CheckerParams(
        delay_loop=delay_loop,
        connect_timeout=pick(chk.connect_timeout, rs.connect_timeout, vs.connect_timeout, 5.0),
        retry=pick(chk.retry, rs.retry, vs.retry, default_retry),
        delay_before_retry=pick(chk.delay_before_retry, rs.delay_before_retry, vs.delay_before_retry, default_dbr),
        warmup=pick(chk.warmup, rs.warmup, vs.warmup, 0.0),
        alpha=pick(chk.alpha, rs.alpha, vs.alpha),
    )


class CheckDecision:
    """One checker's up/down state: retries while up, then down; one success brings it up.

    `alpha` starts it down until the first success. record() says what changed and when to
    check next; it never reads the clock."""

    def __init__(self, params: CheckerParams):
        self.params = params
        self.up = not params.alpha
        self.retry_it = 0
        self.weight: Optional[int] = None  # MISC_CHECK misc_dynamic weight, None: configured

    def record(self, now: float, ok: bool, weight: Optional[int] = None) -> Tuple[Optional[bool], float]:
        """Take one attempt's result; return (new up state if it changed else None, next attempt time)."""
        p = self.params
        if ok:
            self.retry_it = 0
            self.weight = weight
            if not self.up:
                self.up = True
                return True, now + p.delay_loop
            return None, now + p.delay_loop
        if self.up and self.retry_it < p.retry:
            self.retry_it += 1
            return None, now + p.delay_before_retry
        self.retry_it = 0
        if self.up:
            self.up = False
            return False, now + p.delay_loop
        return None, now + p.delay_loop


def misc_check_result(returncode: Optional[int], timed_out: bool, dynamic: bool) -> Tuple[bool, Optional[int]]:
    """MISC_CHECK exit status -> (up, weight): 0 up; misc_dynamic 2..255 up with weight status-2."""
    if timed_out or returncode is None or returncode < 0:
        return False, None
    if returncode == 0:
        return True, None
    if dynamic and 2 <= returncode <= 255:
        return True, returncode - 2
    return False, None


def http_response_ok(response: bytes, url: UrlCheck) -> Tuple[bool, str]:
    """Judge an HTTP response against a `url` block: status in range (200-299 by default) and digest."""
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = response.partition(b"\n\n")
    words = head.split(b"\r\n", 1)[0].split()
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        return False, "bad HTTP response"
    status = int(words[1])
    ranges = url.status_code or [(200, 299)]
    if not any(lo <= status <= hi for lo, hi in ranges):
        return False, f"status_code [{status}]"
    if url.digest:
        import hashlib

        got = hashlib.md5(body).hexdigest()
        if got != url.digest.lower():
            return False, f"MD5 digest error, expected {url.digest.lower()}, got {got}"
    return True, ""


def lvs_quorum_transition(vs: VirtualServer, weight_sum: int, quorum_up: bool) -> Optional[bool]:
    """New quorum state if it changes: lost below quorum-hysteresis, regained at quorum+hysteresis."""
    if quorum_up and weight_sum < vs.quorum - vs.hysteresis:
        return False
    if not quorum_up and weight_sum >= vs.quorum + vs.hysteresis:
        return True
    return None


def lvs_desired_dests(
    vs: VirtualServer, alive: Dict[Tuple[IPAddress, int], Tuple[RealServer, bool, int]], quorum_up: bool
) -> Dict[Tuple[IPAddress, int], Tuple[int, LbKind, int, int]]:
    """The destinations the kernel should hold for vs: (address, port) -> (weight, method, uthr, lthr).

    `alive` maps each real server to (config, alive, current weight). A dead server is left out,
    or kept at weight 0 with inhibit_on_failure; without quorum a sorry server replaces them all."""
    plan: Dict[Tuple[IPAddress, int], Tuple[int, LbKind, int, int]] = {}
    sorry = vs.sorry_server is not None and not quorum_up
    for key, (rs, up, weight) in alive.items():
        inhibit = rs.inhibit_on_failure if rs.inhibit_on_failure is not None else vs.inhibit_on_failure
        method = rs.lb_kind or vs.lb_kind
        if up and not sorry:
            plan[key] = (weight, method, rs.uthreshold, rs.lthreshold)
        elif inhibit:
            plan[key] = (0, method, rs.uthreshold, rs.lthreshold)
    if vs.sorry_server is not None:
        address, port = vs.sorry_server
        key = (address, port if port is not None else (vs.port or 0))
        method = vs.sorry_server_lvs_method or vs.lb_kind
        if sorry:
            plan[key] = (1, method, 0, 0)
        elif vs.sorry_server_inhibit and key not in plan:
            plan[key] = (0, method, 0, 0)
    return plan


# ============================================================================================
# 7. Kernel edge: sockets and netlink
# ============================================================================================

# (raw VRRP sockets, AF_PACKET, rtnetlink, generic netlink IPVS go here)


# --------------------------------------------------------------------------------------------
# 7b. Generic netlink IPVS, checker I/O and the LVS manager
#     (small private netlink packing helpers live here until section 4 has shared ones)
# --------------------------------------------------------------------------------------------

NETLINK_GENERIC = 16
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE, GENL_ID_CTRL = 2, 3, 16
CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 3, 1, 2
NLA_F_NESTED = 0x8000
IPVS_GENL_NAME, IPVS_GENL_VERSION = "IPVS", 1
(IPVS_CMD_NEW_SERVICE, IPVS_CMD_SET_SERVICE, IPVS_CMD_DEL_SERVICE, IPVS_CMD_GET_SERVICE,
 IPVS_CMD_NEW_DEST, IPVS_CMD_SET_DEST, IPVS_CMD_DEL_DEST, IPVS_CMD_GET_DEST) = range(1, 9)
IPVS_CMD_FLUSH = 17
IPVS_CMD_ATTR_SERVICE, IPVS_CMD_ATTR_DEST = 1, 2
(IPVS_SVC_ATTR_AF, IPVS_SVC_ATTR_PROTOCOL, IPVS_SVC_ATTR_ADDR, IPVS_SVC_ATTR_PORT, IPVS_SVC_ATTR_FWMARK,
 IPVS_SVC_ATTR_SCHED_NAME, IPVS_SVC_ATTR_FLAGS, IPVS_SVC_ATTR_TIMEOUT, IPVS_SVC_ATTR_NETMASK) = range(1, 10)
(IPVS_DEST_ATTR_ADDR, IPVS_DEST_ATTR_PORT, IPVS_DEST_ATTR_FWD_METHOD, IPVS_DEST_ATTR_WEIGHT,
 IPVS_DEST_ATTR_U_THRESH, IPVS_DEST_ATTR_L_THRESH) = range(1, 7)
IPVS_DEST_ATTR_ADDR_FAMILY, IPVS_DEST_ATTR_TUN_TYPE, IPVS_DEST_ATTR_TUN_PORT, IPVS_DEST_ATTR_TUN_FLAGS = 11, 13, 14, 15
IP_VS_SVC_F_PERSISTENT, IP_VS_SVC_F_HASHED, IP_VS_SVC_F_ONEPACKET = 0x1, 0x2, 0x4
IPVS_SCHED_FLAGS = {"flag-1": 0x8, "flag-2": 0x10, "flag-3": 0x20, "sh-fallback": 0x8, "sh-port": 0x10,
                    "mh-fallback": 0x8, "mh-port": 0x10}
IPVS_PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
IPVS_TUN_TYPES = {"ipip": 0, "gue": 1, "gre": 2}
IPVS_TUN_CSUM = {"nocsum": 0, "csum": 1, "remcsum": 2}


@dataclass(frozen=True)
class IpvsServiceKey:
    """What identifies a kernel service: (family, protocol, address, port) or (family, fwmark)."""

    af: int
    protocol: int = 0
    addr: Optional[IPAddress] = None
    port: int = 0
    fwmark: int = 0

    def __str__(self) -> str:
        if self.fwmark:
            return f"FWM {self.fwmark}"
        proto = {v: k.lower() for k, v in IPVS_PROTOCOLS.items()}.get(self.protocol, str(self.protocol))
        return f"[{self.addr}]:{proto}:{self.port}"


@dataclass
class IpvsService:
    key: IpvsServiceKey
    sched_name: str = "wlc"
    flags: int = 0
    timeout: int = 0
    netmask: int = 0xFFFFFFFF  # IPv4: the mask's 32 bits; IPv6: a prefix length


@dataclass
class IpvsDest:
    addr: IPAddress
    port: int
    fwd_method: int = LbKind.NAT.value
    weight: int = 1
    u_thresh: int = 0
    l_thresh: int = 0
    tun_type: Optional[int] = None
    tun_port: int = 0
    tun_flags: int = 0


def _nla(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _nla_parse(data: bytes) -> Dict[int, bytes]:
    attrs: Dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        attrs[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return attrs


def _inet_addr(addr: IPAddress) -> bytes:
    return addr.packed.ljust(16, b"\0")


def genl_message(family: int, cmd: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST | NLM_F_ACK,
                 version: int = IPVS_GENL_VERSION) -> bytes:
    """nlmsghdr + genlmsghdr + attributes (the port id is left 0: the kernel fills it)."""
    return struct.pack("=IHHII", 20 + len(attrs), family, flags, seq, 0) + struct.pack("=BBH", cmd, version, 0) + attrs


def ipvs_service_attr(svc: Union[IpvsService, IpvsServiceKey]) -> bytes:
    """IPVS_CMD_ATTR_SERVICE: the key alone (GET/DEL and dest commands) or the full service."""
    key = svc.key if isinstance(svc, IpvsService) else svc
    body = _nla(IPVS_SVC_ATTR_AF, struct.pack("=H", key.af))
    if key.fwmark:
        body += _nla(IPVS_SVC_ATTR_FWMARK, struct.pack("=I", key.fwmark))
    else:
        assert key.addr is not None
        body += _nla(IPVS_SVC_ATTR_PROTOCOL, struct.pack("=H", key.protocol))
        body += _nla(IPVS_SVC_ATTR_ADDR, _inet_addr(key.addr))
        body += _nla(IPVS_SVC_ATTR_PORT, struct.pack("!H", key.port))
    if isinstance(svc, IpvsService):
        body += _nla(IPVS_SVC_ATTR_SCHED_NAME, svc.sched_name.encode() + b"\0")
        body += _nla(IPVS_SVC_ATTR_FLAGS, struct.pack("=II", svc.flags, 0xFFFFFFFF))
        body += _nla(IPVS_SVC_ATTR_TIMEOUT, struct.pack("=I", svc.timeout))
        netmask = struct.pack("=I", svc.netmask) if key.af == socket.AF_INET6 else struct.pack("!I", svc.netmask)
        body += _nla(IPVS_SVC_ATTR_NETMASK, netmask)
    return _nla(IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, body)


def ipvs_dest_attr(dest: IpvsDest, full: bool = True) -> bytes:
    """IPVS_CMD_ATTR_DEST: address and port, plus method, weight and thresholds when `full`."""
    body = _nla(IPVS_DEST_ATTR_ADDR, _inet_addr(dest.addr)) + _nla(IPVS_DEST_ATTR_PORT, struct.pack("!H", dest.port))
    if full:
        body += _nla(IPVS_DEST_ATTR_FWD_METHOD, struct.pack("=I", dest.fwd_method))
        body += _nla(IPVS_DEST_ATTR_WEIGHT, struct.pack("=I", dest.weight))
        body += _nla(IPVS_DEST_ATTR_U_THRESH, struct.pack("=I", dest.u_thresh))
        body += _nla(IPVS_DEST_ATTR_L_THRESH, struct.pack("=I", dest.l_thresh))
        af = socket.AF_INET6 if dest.addr.version == 6 else socket.AF_INET
        body += _nla(IPVS_DEST_ATTR_ADDR_FAMILY, struct.pack("=H", af))
        if dest.tun_type is not None:
            body += _nla(IPVS_DEST_ATTR_TUN_TYPE, struct.pack("=B", dest.tun_type))
            body += _nla(IPVS_DEST_ATTR_TUN_PORT, struct.pack("!H", dest.tun_port))
            body += _nla(IPVS_DEST_ATTR_TUN_FLAGS, struct.pack("=H", dest.tun_flags))
    return _nla(IPVS_CMD_ATTR_DEST | NLA_F_NESTED, body)


def _ip_from(af: int, raw: bytes) -> IPAddress:
    return ipaddress.ip_address(raw[:16] if af == socket.AF_INET6 else raw[:4])


def ipvs_parse_service(nested: bytes) -> IpvsService:
    """The kernel's IPVS_CMD_ATTR_SERVICE (from a GET_SERVICE dump) as an IpvsService."""
    a = _nla_parse(nested)
    af = struct.unpack("=H", a[IPVS_SVC_ATTR_AF])[0]
    fwmark = struct.unpack("=I", a[IPVS_SVC_ATTR_FWMARK])[0] if IPVS_SVC_ATTR_FWMARK in a else 0
    if fwmark:
        key = IpvsServiceKey(af, fwmark=fwmark)
    else:
        key = IpvsServiceKey(af, struct.unpack("=H", a[IPVS_SVC_ATTR_PROTOCOL])[0],
                             _ip_from(af, a[IPVS_SVC_ATTR_ADDR]), struct.unpack("!H", a[IPVS_SVC_ATTR_PORT])[0])
    raw_mask = a.get(IPVS_SVC_ATTR_NETMASK, b"\xff\xff\xff\xff")
    netmask = struct.unpack("=I" if af == socket.AF_INET6 else "!I", raw_mask[:4])[0]
    return IpvsService(
        key,
        sched_name=a.get(IPVS_SVC_ATTR_SCHED_NAME, b"").split(b"\0")[0].decode(),
        flags=struct.unpack_from("=I", a.get(IPVS_SVC_ATTR_FLAGS, b"\0" * 8))[0],
        timeout=struct.unpack("=I", a.get(IPVS_SVC_ATTR_TIMEOUT, b"\0" * 4))[0],
        netmask=netmask,
    )


def ipvs_parse_dest(nested: bytes, af: int) -> IpvsDest:
    """The kernel's IPVS_CMD_ATTR_DEST (from a GET_DEST dump) as an IpvsDest."""
    a = _nla_parse(nested)
    if IPVS_DEST_ATTR_ADDR_FAMILY in a:
        af = struct.unpack("=H", a[IPVS_DEST_ATTR_ADDR_FAMILY])[0]

    def u32(kind: int) -> int:
        return struct.unpack("=I", a[kind])[0] if kind in a else 0

    return IpvsDest(
        _ip_from(af, a[IPVS_DEST_ATTR_ADDR]), struct.unpack("!H", a[IPVS_DEST_ATTR_PORT])[0],
        fwd_method=u32(IPVS_DEST_ATTR_FWD_METHOD) & 0x7, weight=u32(IPVS_DEST_ATTR_WEIGHT),
        u_thresh=u32(IPVS_DEST_ATTR_U_THRESH), l_thresh=u32(IPVS_DEST_ATTR_L_THRESH),
        tun_type=a[IPVS_DEST_ATTR_TUN_TYPE][0] if IPVS_DEST_ATTR_TUN_TYPE in a else None,
        tun_port=struct.unpack("!H", a[IPVS_DEST_ATTR_TUN_PORT])[0] if IPVS_DEST_ATTR_TUN_PORT in a else 0,
        tun_flags=struct.unpack("=H", a[IPVS_DEST_ATTR_TUN_FLAGS])[0] if IPVS_DEST_ATTR_TUN_FLAGS in a else 0,
    )


def genl_parse_replies(data: bytes, seq: int) -> Tuple[List[Tuple[int, Dict[int, bytes]]], bool]:
    """Split a netlink datagram into (genl cmd, attributes) replies; True once DONE or ACK is seen.

    Raises NetlinkError for an error reply to `seq`."""
    replies: List[Tuple[int, Dict[int, bytes]]] = []
    offset, finished = 0, False
    while offset + 16 <= len(data):
        length, kind, _flags, rseq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            break
        payload = data[offset + 16:offset + length]
        offset += (length + 3) & ~3
        if rseq != seq:
            continue
        if kind == NLMSG_ERROR:
            err = -struct.unpack_from("=i", payload)[0]
            if err:
                raise NetlinkError(err)
            finished = True
        elif kind == NLMSG_DONE:
            finished = True
        else:
            replies.append((payload[0], _nla_parse(payload[4:])))
    return replies, finished


class IpvsNetlink:
    """A generic netlink socket to the kernel's IPVS family; each request waits for the kernel's
    answer, which is immediate (no network is involved), so the loop is not held up."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.settimeout(5.0)
        self.sock.bind((0, 0))
        self.seq = int(time.time()) & 0xFFFFFF
        try:
            replies = self._request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                                    _nla(CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME.encode() + b"\0"), version=1)
            self.family = struct.unpack("=H", replies[0][1][CTRL_ATTR_FAMILY_ID][:2])[0]
        except Exception:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def _request(self, family: int, cmd: int, attrs: bytes, dump: bool = False,
                 version: int = IPVS_GENL_VERSION) -> List[Tuple[int, Dict[int, bytes]]]:
        self.seq += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        self.sock.send(genl_message(family, cmd, attrs, self.seq, flags, version))
        out: List[Tuple[int, Dict[int, bytes]]] = []
        while True:
            replies, finished = genl_parse_replies(self.sock.recv(1 << 20), self.seq)
            out.extend(replies)
            if finished or (out and not dump and family == GENL_ID_CTRL):
                return out

    def request(self, cmd: int, attrs: bytes, dump: bool = False) -> List[Tuple[int, Dict[int, bytes]]]:
        return self._request(self.family, cmd, attrs, dump)

    def services(self) -> List[IpvsService]:
        return [ipvs_parse_service(a[IPVS_CMD_ATTR_SERVICE])
                for _, a in self.request(IPVS_CMD_GET_SERVICE, b"", dump=True) if IPVS_CMD_ATTR_SERVICE in a]

    def dests(self, key: IpvsServiceKey) -> List[IpvsDest]:
        replies = self.request(IPVS_CMD_GET_DEST, ipvs_service_attr(key), dump=True)
        return [ipvs_parse_dest(a[IPVS_CMD_ATTR_DEST], key.af) for _, a in replies if IPVS_CMD_ATTR_DEST in a]

    def new_service(self, svc: IpvsService) -> None:
        self.request(IPVS_CMD_NEW_SERVICE, ipvs_service_attr(svc))

    def set_service(self, svc: IpvsService) -> None:
        self.request(IPVS_CMD_SET_SERVICE, ipvs_service_attr(svc))

    def del_service(self, key: IpvsServiceKey) -> None:
        self.request(IPVS_CMD_DEL_SERVICE, ipvs_service_attr(key))

    def new_dest(self, key: IpvsServiceKey, dest: IpvsDest) -> None:
        self.request(IPVS_CMD_NEW_DEST, ipvs_service_attr(key) + ipvs_dest_attr(dest))

    def set_dest(self, key: IpvsServiceKey, dest: IpvsDest) -> None:
        self.request(IPVS_CMD_SET_DEST, ipvs_service_attr(key) + ipvs_dest_attr(dest))

    def del_dest(self, key: IpvsServiceKey, dest: IpvsDest) -> None:
        self.request(IPVS_CMD_DEL_DEST, ipvs_service_attr(key) + ipvs_dest_attr(dest, full=False))


def _vs_name(vs: VirtualServer) -> str:
    if vs.group:
        return f"[{vs.group}]:{vs.protocol.lower()}:{vs.port or 0}"
    if vs.fwmark:
        return f"FWM {vs.fwmark}"
    return f"[{vs.address}]:{vs.protocol.lower()}:{vs.port}"


def _rs_name(vs: VirtualServer, key: Tuple[IPAddress, int]) -> str:
    return f"[{key[0]}]:{vs.protocol.lower()}:{key[1]}"


def lvs_service_keys(vs: VirtualServer, config: Config) -> List[IpvsServiceKey]:
    """The kernel services one virtual_server stands for (a group gives one per address or fwmark)."""
    proto = IPVS_PROTOCOLS.get(vs.protocol.upper(), socket.IPPROTO_TCP)

    def af_of(version: int) -> int:
        return socket.AF_INET6 if version == 6 else socket.AF_INET

    if vs.fwmark:
        return [IpvsServiceKey(af_of(vs.family), fwmark=vs.fwmark)]
    if vs.address is not None:
        return [IpvsServiceKey(af_of(vs.address.version), proto, vs.address, vs.port or 0)]
    keys: List[IpvsServiceKey] = []
    group = config.virtual_server_groups.get(vs.group or "")
    for entry in group.entries if group else []:
        if entry.fwmark:
            keys.append(IpvsServiceKey(af_of(entry.family), fwmark=entry.fwmark))
            continue
        if entry.first is None:
            continue
        last = entry.last or entry.first
        port = entry.port if entry.port is not None else (vs.port or 0)
        for n in range(int(entry.first), int(last) + 1):
            addr = ipaddress.ip_address(n) if entry.first.version == 4 else ipaddress.IPv6Address(n)
            keys.append(IpvsServiceKey(af_of(addr.version), proto, addr, port))
    return keys


def lvs_service(vs: VirtualServer, key: IpvsServiceKey) -> IpvsService:
    """The kernel service settings a virtual_server asks for."""
    flags = 0
    timeout = 0
    if vs.persistence_timeout:
        flags |= IP_VS_SVC_F_PERSISTENT
        timeout = vs.persistence_timeout
    if vs.ops:
        flags |= IP_VS_SVC_F_ONEPACKET
    if vs.hashed:
        flags |= IP_VS_SVC_F_HASHED
    for name in vs.sched_flags:
        flags |= IPVS_SCHED_FLAGS.get(name, 0)
    if key.af == socket.AF_INET6:
        netmask = 128
        if isinstance(vs.persistence_granularity, int):
            netmask = vs.persistence_granularity
    else:
        netmask = 0xFFFFFFFF
        if vs.persistence_granularity is not None:
            netmask = int(vs.persistence_granularity)
    return IpvsService(key, vs.lb_algo, flags, timeout, netmask)


def _service_differs(want: IpvsService, have: IpvsService) -> bool:
    mask = ~IP_VS_SVC_F_HASHED
    return (want.sched_name, want.flags & mask, want.timeout, want.netmask) != (
        have.sched_name, have.flags & mask, have.timeout, have.netmask)


# -- checker I/O on the event loop -------------------------------------------------------------


class _CheckRunner:
    """Runs one checker on the loop; subclasses start an attempt and end it with _done()."""

    def __init__(self, manager: LvsManager, vsr: _VsRuntime, rsr: _RsRuntime, chk: Checker):
        self.manager = manager
        self.loop = manager.loop
        self.vs, self.rs, self.chk = vsr.vs, rsr.rs, chk
        self.vsr, self.rsr = vsr, rsr
        self.params = checker_params(self.vs, self.rs, chk)
        self.decision = CheckDecision(self.params)
        self.timer: Optional[Timer] = None
        self.deadline: Optional[Timer] = None
        self.sock: Optional[socket.socket] = None
        self.child: Optional[Child] = None
        self.busy = False
        self.last_result = ""
        self.due = self.loop.time()
        self.attempt = 0
        self.stopped = False
        ip = chk.connect_ip or rsr.key[0]
        self.target = (ip, chk.connect_port if chk.connect_port is not None else rsr.key[1])
        self.name = f"[{ip}]:{self.vs.protocol.lower()}:{self.target[1]}"

    def start(self, delay: float) -> None:
        self.due = self.loop.time() + delay
        self.timer = self.loop.call_at(self.due, self._attempt, self.attempt)

    def stop(self) -> None:
        for t in (self.timer, self.deadline):
            if t is not None:
                t.cancel()
        self.timer = self.deadline = None
        self._close()
        self.stopped = True
        self.attempt += 1
        if self.child is not None:
            self.child.on_exit = None
            self.child.kill()
            self.child = None

    def _close(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.sock is not None:
            self.loop.remove_reader(self.sock)
            self.loop.remove_writer(self.sock)
            self.sock.close()
            self.sock = None

    def _attempt(self, token: int = -1) -> None:
        # a timer cancelled late can still fire: every callback checks it is for the current attempt
        if token not in (-1, self.attempt) or self.busy or self.stopped:
            return
        self.attempt += 1
        self.timer = None
        self.busy = True
        self.manager.max_late = max(self.manager.max_late, self.loop.time() - self.due)
        try:
            self.begin()
        except OSError as exc:
            self._done(False, str(exc))

    def begin(self) -> None:
        raise NotImplementedError

    def _done(self, ok: bool, reason: str = "", weight: Optional[int] = None) -> None:
        self._close()
        if not self.busy or self.stopped:
            return
        self.busy = False
        self.last_result = "ok" if ok else reason
        was_up = self.decision.up
        if not ok and (was_up or self.chk.log_all_failures):
            log.info("%s", reason)
        change, when = self.decision.record(self.loop.time(), ok, weight)
        if change is False:
            log.info("%s on service %s failed after %d retries.", self._label(), self.name, self.params.retry)
        elif change is True:
            log.info("%s", self._success_line())
        if change is not None or (ok and weight != self.rsr.weight_seen.get(id(self))):
            self.rsr.weight_seen[id(self)] = weight
            self.manager._checker_changed(self.vsr, self.rsr, reason if change is False else "")
        self.due = when
        self.timer = self.loop.call_at(when, self._attempt, self.attempt)

    def _label(self) -> str:
        return {"HTTP_GET": "HTTP_CHECK", "SSL_GET": "SSL_CHECK"}.get(self.chk.kind, self.chk.kind)

    def _success_line(self) -> str:
        return f"{self._label()} on service {self.name} succeeded."

    def _watch(self, write: bool, fn: Callable[..., Any], *args: Any) -> None:
        """Call fn(*args) when the current socket is readable (or writable); stale events are dropped."""
        (self.loop.add_writer if write else self.loop.add_reader)(self.sock, self._io, self.sock, fn, args)

    def _unwatch(self, write: bool) -> None:
        (self.loop.remove_writer if write else self.loop.remove_reader)(self.sock)

    def _io(self, sock: socket.socket, fn: Callable[..., Any], args: tuple) -> None:
        if sock is not self.sock:
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
            return
        try:
            fn(*args)
        except Exception as exc:  # a checker must never stop checking
            log.exception("%s on %s: internal error", self.chk.kind, self.name)
            self._done(False, f"{self._label()} on {self.name} failed: {exc!r}")

    def _deadline(self, seconds: float) -> None:
        self.deadline = self.loop.call_later(seconds, self._timeout, self.attempt)

    # -- a non-blocking TCP connection shared by the stream checkers -----------------------
    def _connect(self, on_connected: Callable[[], Any]) -> None:
        ip, port = self.target
        sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        self.sock = sock
        sock.setblocking(False)
        if self.chk.bindto is not None or self.chk.bind_port:
            sock.bind((str(self.chk.bindto or ("::" if ip.version == 6 else "0.0.0.0")), self.chk.bind_port or 0))
        err = sock.connect_ex((str(ip), port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        self._deadline(self.params.connect_timeout)
        self._watch(True, self._connected, on_connected)

    def _connected(self, on_connected: Callable[[], Any]) -> None:
        assert self.sock is not None
        self._unwatch(True)
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._done(False, self._connect_failed(os.strerror(err)))
            return
        on_connected()

    def _connect_failed(self, why: str) -> str:
        return f"TCP connection to {self.name} failed ({why})."

    def _timeout(self, token: int) -> None:
        if token != self.attempt or not self.busy:
            return
        self.deadline = None
        self._done(False, f"Timeout connecting to {self.name}." if self.chk.kind == "TCP_CHECK"
                   else f"Timeout reading data to {self.name}.")


class _TcpCheck(_CheckRunner):
    def begin(self) -> None:
        self._connect(lambda: self._done(True))

    def _connect_failed(self, why: str) -> str:
        return f"TCP connection to {self.name} failed."

    def _success_line(self) -> str:
        return f"TCP connection to {self.name} success."


class _HttpCheck(_CheckRunner):
    """HTTP_GET and SSL_GET: each url in turn over a new connection; every url must pass."""

    def begin(self) -> None:
        self.urls = list(self.chk.urls) or [UrlCheck()]
        self._next_url()

    def _next_url(self) -> None:
        self.url = self.urls.pop(0)
        self.response = bytearray()
        self._connect(self._tls_start if self.chk.kind == "SSL_GET" else self._send)

    def _tls_start(self) -> None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sni = (self.chk.sni_name or self.url.virtualhost or self.chk.virtualhost or self.rs.virtualhost
               or self.vs.virtualhost) if self.chk.enable_sni else None
        assert self.sock is not None
        self.sock = ctx.wrap_socket(self.sock, server_hostname=sni, do_handshake_on_connect=False)
        self._handshake()

    def _handshake(self) -> None:
        import ssl

        assert self.sock is not None
        try:
            self.sock.do_handshake()  # type: ignore[attr-defined]
        except ssl.SSLWantReadError:
            self._unwatch(True)
            self._watch(False, self._handshake)
            return
        except ssl.SSLWantWriteError:
            self._unwatch(False)
            self._watch(True, self._handshake)
            return
        except (OSError, ValueError) as exc:
            self._done(False, f"SSL handshake with {self.name} failed ({exc}).")
            return
        self._unwatch(False)
        self._unwatch(True)
        self._send()

    def _send(self) -> None:
        assert self.sock is not None
        ip, port = self.target
        vhost = self.url.virtualhost or self.chk.virtualhost or self.rs.virtualhost or self.vs.virtualhost
        host = vhost or (f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}")
        version = "1.1" if self.chk.http_protocol == "1.1" else "1.0"
        close = "Connection: close\r\n" if self.chk.http_protocol in ("1.0C", "1.1") else ""
        self.outgoing = (f"GET {self.url.path} HTTP/{version}\r\nUser-Agent: KeepAliveClient\r\n{close}"
                         f"Host: {host}\r\n\r\n").encode()
        self._write()

    def _write(self) -> None:
        import ssl

        assert self.sock is not None
        try:
            sent = self.sock.send(self.outgoing)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            self._done(False, f"Error sending request to {self.name} ({exc}).")
            return
        self.outgoing = self.outgoing[sent:]
        if self.outgoing:
            self._watch(True, self._write)
        else:
            self._unwatch(True)
            self._watch(False, self._read)

    def _read(self) -> None:
        import ssl

        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
                data = b""
            except OSError as exc:
                self._done(False, f"Error reading data from {self.name} ({exc}).")
                return
            if not data:
                break
            self.response += data
            if len(self.response) > 16 << 20:
                break
        ok, why = http_response_ok(bytes(self.response), self.url)
        if not ok:
            self._done(False, f"HTTP {why} to {self.name} url({self.url.path}).")
            return
        self._close()
        if self.urls:
            try:
                self._next_url()
            except OSError as exc:
                self._done(False, self._connect_failed(str(exc)))
        else:
            self._done(True)

    def _success_line(self) -> str:
        return f"Remote Web server {self.name} succeed on service."


class _MiscCheck(_CheckRunner):
    def begin(self) -> None:
        cmd = self.chk.misc_path
        if cmd is None:
            self._done(False, "MISC_CHECK has no misc_path")
            return
        argv = ["/bin/sh", "-c", cmd.raw] if cmd.shell or not cmd.argv else cmd.argv
        timeout = self.chk.misc_timeout or self.params.delay_loop
        self.child = self.loop.spawn(argv, on_exit=self._exited, timeout=timeout, user=self.chk.user)

    def _exited(self, child: Child) -> None:
        if child is not self.child:
            return
        self.child = None
        up, weight = misc_check_result(child.returncode, child.timed_out, self.chk.misc_dynamic)
        path = self.chk.misc_path.raw if self.chk.misc_path else ""
        what = "succeeded" if up else f"failed (exited with status {child.returncode})"
        if child.timed_out:
            what = "timed out"
        self._done(up, f"Misc check for [{self.name} VS {_vs_name(self.vs)}] by [{path}] {what}.", weight)

    def _success_line(self) -> str:
        path = self.chk.misc_path.raw if self.chk.misc_path else ""
        return f"Misc check for [{self.name} VS {_vs_name(self.vs)}] by [{path}] succeeded."


class _SmtpCheck(_CheckRunner):
    """SMTP_CHECK: a 2xx greeting, HELO answered with 250, then QUIT."""

    def begin(self) -> None:
        self.buf = b""
        self.stage = 0
        self._connect(lambda: self._watch(False, self._read))

    def _read(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._done(False, f"SMTP connection to {self.name} failed ({exc}).")
            return
        if not data:
            self._done(False, f"SMTP server {self.name} closed the connection.")
            return
        self.buf += data
        lines = self.buf.split(b"\r\n")
        last = [x for x in lines if x[:3].isdigit() and x[3:4] != b"-"]
        if not last:
            return
        code, self.buf = last[-1][:3], b""
        if self.stage == 0 and code.startswith(b"2"):
            helo = self.chk.helo_name or socket.gethostname()
            self.sock.send(f"HELO {helo}\r\n".encode())
            self.stage = 1
        elif self.stage == 1 and code == b"250":
            try:
                self.sock.send(b"QUIT\r\n")
            except OSError:
                pass
            self._done(True)
        else:
            self._done(False, f"SMTP server {self.name} answered {code.decode(errors='replace')}.")


class _DnsCheck(_CheckRunner):
    """DNS_CHECK: one UDP query of `type` for `name`; success is a NOERROR answer with records."""

    TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}

    def begin(self) -> None:
        ip, port = self.target
        self.sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.qid = int.from_bytes(os.urandom(2), "big")
        qname = b"".join(bytes([len(p)]) + p.encode() for p in self.chk.dns_name.strip(".").split(".") if p) + b"\0"
        query = struct.pack("!HHHHHH", self.qid, 0x0100, 1, 0, 0, 0) + qname
        query += struct.pack("!HH", self.TYPES.get(self.chk.dns_type.upper(), 6), 1)
        self.sock.sendto(query, (str(ip), port or 53))
        self._deadline(self.params.connect_timeout)
        self._watch(False, self._read)

    def _read(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._done(False, f"DNS query to {self.name} failed ({exc}).")
            return
        if len(data) < 12:
            return
        qid, flags, _qd, ancount = struct.unpack_from("!HHHH", data)
        if qid != self.qid or not flags & 0x8000:
            return
        if flags & 0xF or not ancount:
            self._done(False, f"DNS query to {self.name} failed (rcode {flags & 0xF}, {ancount} answers).")
        else:
            self._done(True)


_CHECK_RUNNERS = {"TCP_CHECK": _TcpCheck, "HTTP_GET": _HttpCheck, "SSL_GET": _HttpCheck,
                  "MISC_CHECK": _MiscCheck, "SMTP_CHECK": _SmtpCheck, "DNS_CHECK": _DnsCheck}


# -- the manager -------------------------------------------------------------------------------


class _RsRuntime:
    def __init__(self, rs: RealServer, key: Tuple[IPAddress, int]):
        self.rs = rs
        self.key = key
        self.checkers: List[_CheckRunner] = []
        self.weight_seen: Dict[int, Optional[int]] = {}
        self.was_alive: Optional[bool] = None

    @property
    def alive(self) -> bool:
        return all(c.decision.up for c in self.checkers)

    @property
    def weight(self) -> int:
        for c in self.checkers:
            if c.decision.weight is not None:
                return c.decision.weight
        return self.rs.weight


class _VsRuntime:
    def __init__(self, vs: VirtualServer, keys: List[IpvsServiceKey]):
        self.vs = vs
        self.keys = keys
        self.rs: Dict[Tuple[IPAddress, int], _RsRuntime] = {}
        self.quorum_up = True
        self.programmed: Dict[IpvsServiceKey, Dict[Tuple[IPAddress, int], IpvsDest]] = {}


class LvsManager:
    """The LVS half: programs IPVS over generic netlink and runs the checkers on the loop.

    Contract used by the Daemon:
      LvsManager(loop, config, notifier)
      start()            read the kernel table, create what is missing, start checkers; if the
                         kernel has no IPVS, log why and keep VRRP running.
      stop()             stop checkers, remove what vrrpd created.
      reload(config)     apply only the difference.
      status() -> dict   services, real servers, checker states.
    Services the configuration does not name are never touched."""

    def __init__(self, loop: EventLoop, config: Config, notifier: Notifier):
        self.loop = loop
        self.config = config
        self.notifier = notifier
        self.nl: Optional[IpvsNetlink] = None
        self.error: Optional[str] = None
        self.vs: Dict[str, _VsRuntime] = {}
        self.kernel: Dict[IpvsServiceKey, IpvsService] = {}
        self.max_late = 0.0  # the latest a check started after its due time, in seconds

    def start(self) -> None:
        if not self.config.virtual_servers:
            return
        try:
            if self.nl is None:
                self.nl = IpvsNetlink()
            self.kernel = {svc.key: svc for svc in self.nl.services()}
        except (OSError, VrrpdError) as exc:
            self.error = f"the kernel has no IPVS (is the ip_vs module available?): {exc}"
            log.error("LVS: %s; virtual servers are not programmed, VRRP keeps running", self.error)
            if self.nl is not None:
                self.nl.close()
                self.nl = None
            return
        if self.config.global_defs.lvs_flush:
            self._call(self.nl.request, IPVS_CMD_FLUSH, b"")
            self.kernel = {}
        self._apply(self.config)

    def stop(self) -> None:
        for vsr in list(self.vs.values()):
            self._remove_vs(vsr, shutdown=True)
        self.vs = {}
        if self.nl is not None:
            self.nl.close()
            self.nl = None

    def reload(self, config: Config) -> None:
        self.config = config
        if self.nl is None:
            self.error = None
            self.start()
            return
        try:
            self.kernel = {svc.key: svc for svc in self.nl.services()}
        except (OSError, VrrpdError) as exc:
            log.error("LVS: reading the kernel's IPVS table failed: %s", exc)
        self._apply(config)

    def status(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"error": self.error, "virtual_servers": []}
        for vsr in self.vs.values():
            out["virtual_servers"].append({
                "name": _vs_name(vsr.vs), "quorum_up": vsr.quorum_up,
                "real_servers": [{"address": str(k[0]), "port": k[1], "alive": r.alive, "weight": r.weight,
                                  "checkers": [{"kind": c.chk.kind, "up": c.decision.up, "last": c.last_result}
                                               for c in r.checkers]} for k, r in vsr.rs.items()],
            })
        return out

    # -- reconciliation ----------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> bool:
        try:
            fn(*args)
            return True
        except (OSError, VrrpdError) as exc:
            log.error("LVS: %s %s failed: %s", fn.__name__, " ".join(str(a) for a in args[:2]), exc)
            return False

    def _apply(self, config: Config) -> None:
        wanted: Dict[str, VirtualServer] = {}
        for vs in config.virtual_servers:
            if vs.real_servers or vs.sorry_server:
                wanted[_vs_name(vs)] = vs
        for name in [n for n in self.vs if n not in wanted]:
            self._remove_vs(self.vs.pop(name))
        for name, vs in wanted.items():
            old = self.vs.get(name)
            keys = lvs_service_keys(vs, config)
            vsr = _VsRuntime(vs, keys)
            if old is not None:
                vsr.quorum_up, vsr.programmed = old.quorum_up, old.programmed
                for key in [k for k in old.programmed if k not in keys]:
                    self._call(self.nl.del_service, key)  # type: ignore[union-attr]
                    del vsr.programmed[key]
            self.vs[name] = vsr
            for key in keys:
                want = lvs_service(vs, key)
                have = self.kernel.get(key)
                if have is None:
                    if self._call(self.nl.new_service, want):  # type: ignore[union-attr]
                        vsr.programmed[key] = {}
                        self.kernel[key] = want
                else:
                    if _service_differs(want, have):
                        self._call(self.nl.set_service, want)  # type: ignore[union-attr]
                    if key not in vsr.programmed:
                        try:
                            dests = self.nl.dests(key)  # type: ignore[union-attr]
                        except (OSError, VrrpdError) as exc:
                            log.error("LVS: reading the destinations of %s failed: %s", key, exc)
                            dests = []
                        vsr.programmed[key] = {(d.addr, d.port): d for d in dests}
            self._start_real_servers(vsr, old)
            self._sync(vsr)

    def _start_real_servers(self, vsr: _VsRuntime, old: Optional[_VsRuntime]) -> None:
        vs = vsr.vs
        for index, rs in enumerate(vs.real_servers):
            key = (rs.address, rs.port if rs.port is not None else (vs.port or 0))
            previous = old.rs.pop(key, None) if old is not None else None
            if previous is not None and previous.rs == rs and old is not None and old.vs.delay_loop == vs.delay_loop:
                previous.rs = rs
                for c in previous.checkers:
                    c.vs, c.vsr = vs, vsr
                vsr.rs[key] = previous
                continue
            if previous is not None:
                for c in previous.checkers:
                    c.stop()
            rsr = _RsRuntime(rs, key)
            vsr.rs[key] = rsr
            for chk in rs.checkers:
                runner = _CHECK_RUNNERS.get(chk.kind)
                if runner is None:
                    log.warning("LVS: %s is not supported; real server %s is treated as up", chk.kind, key[0])
                    continue
                check = runner(self, vsr, rsr, chk)
                rsr.checkers.append(check)
                # spread the first checks a little so many real servers do not fire at once
                first = check.params.warmup * random.random() if check.params.warmup else (index % 100) * 0.001
                check.start(first)
            rsr.was_alive = rsr.alive
        for rsr in old.rs.values() if old is not None else []:
            for c in rsr.checkers:
                c.stop()

    def _checker_changed(self, vsr: _VsRuntime, rsr: _RsRuntime, reason: str) -> None:
        if self.vs.get(_vs_name(vsr.vs)) is not vsr:
            return
        alive = rsr.alive
        if alive != rsr.was_alive:
            rsr.was_alive = alive
            inhibit = rsr.rs.inhibit_on_failure if rsr.rs.inhibit_on_failure is not None else vsr.vs.inhibit_on_failure
            verb = ("Enabling" if alive else "Disabling") if inhibit else ("Adding" if alive else "Removing")
            log.info("%s service %s %s VS %s", verb, _rs_name(vsr.vs, rsr.key), "to" if verb == "Adding" else
                     ("of" if inhibit else "from"), _vs_name(vsr.vs))
            self.notifier.checker(vsr.vs, rsr.rs, alive, reason)
            cmd = rsr.rs.notify_up if alive else rsr.rs.notify_down
            if cmd is not None:
                self._run(cmd)
        self._sync(vsr)

    def _run(self, cmd: Command) -> None:
        try:
            self.loop.spawn(["/bin/sh", "-c", cmd.raw] if cmd.shell or not cmd.argv else cmd.argv,
                            timeout=60, user=cmd.user, group=cmd.group)
        except OSError as exc:
            log.error("LVS: cannot run %s: %s", cmd.raw, exc)

    def _sync(self, vsr: _VsRuntime) -> None:
        """Bring the kernel's destinations of vsr's services to what the checkers say."""
        vs = vsr.vs
        states = {k: (r.rs, r.alive, r.weight) for k, r in vsr.rs.items()}
        weight_sum = sum(w for _, up, w in states.values() if up)
        change = lvs_quorum_transition(vs, weight_sum, vsr.quorum_up)
        if change is not None:
            vsr.quorum_up = change
            if change:
                log.info("Gained quorum %d+%d=%d <= %d for VS %s", vs.quorum, vs.hysteresis,
                         vs.quorum + vs.hysteresis, weight_sum, _vs_name(vs))
            else:
                log.info("Lost quorum %d-%d=%d > %d for VS %s", vs.quorum, vs.hysteresis,
                         vs.quorum - vs.hysteresis, weight_sum, _vs_name(vs))
            if vs.sorry_server is not None:
                log.info("%s sorry server [%s]:%s:%s %s VS %s", "Removing" if change else "Adding",
                         vs.sorry_server[0], vs.protocol.lower(), vs.sorry_server[1] or vs.port or 0,
                         "from" if change else "to", _vs_name(vs))
            cmd = vs.quorum_up if change else vs.quorum_down
            if cmd is not None:
                self._run(cmd)
        plan = lvs_desired_dests(vs, states, vsr.quorum_up)
        want: Dict[Tuple[IPAddress, int], IpvsDest] = {}
        for key, (weight, method, uthr, lthr) in plan.items():
            dest = IpvsDest(key[0], key[1], method.value, weight, uthr, lthr)
            if method == LbKind.TUN and vs.tunnel_type:
                dest.tun_type = IPVS_TUN_TYPES.get(vs.tunnel_type, 0)
                dest.tun_port = vs.tunnel_port or 0
                dest.tun_flags = IPVS_TUN_CSUM.get(vs.tunnel_csum or "nocsum", 0)
            want[key] = dest
        assert self.nl is not None
        for skey in vsr.keys:
            have = vsr.programmed.get(skey)
            if have is None:
                continue
            for dkey in [k for k in have if k not in want]:
                if self._call(self.nl.del_dest, skey, have[dkey]):
                    del have[dkey]
            for dkey, dest in want.items():
                if dkey not in have:
                    if self._call(self.nl.new_dest, skey, dest):
                        have[dkey] = dest
                elif have[dkey] != dest:
                    if self._call(self.nl.set_dest, skey, dest):
                        have[dkey] = dest

    def _remove_vs(self, vsr: _VsRuntime, shutdown: bool = False) -> None:
        for rsr in vsr.rs.values():
            for c in rsr.checkers:
                c.stop()
            if shutdown and vsr.vs.omega and rsr.alive:
                self.notifier.checker(vsr.vs, rsr.rs, False, "shutdown")
                if rsr.rs.notify_down is not None:
                    self._run(rsr.rs.notify_down)
        if shutdown and vsr.vs.omega and vsr.quorum_up and vsr.vs.quorum_down is not None:
            self._run(vsr.vs.quorum_down)
        if self.nl is not None:
            for key in vsr.programmed:
                self._call(self.nl.del_service, key)
                self.kernel.pop(key, None)
        vsr.programmed = {}


def genhash(url: str, timeout: float = 5.0) -> int:
    """`--genhash URL`: fetch URL once with the HTTP_GET/SSL_GET checker and print the body's MD5."""
    import hashlib
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    try:
        ip = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        ip = ipaddress.ip_address(socket.getaddrinfo(parts.hostname, None, proto=socket.IPPROTO_TCP)[0][4][0])
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = EventLoop()
    url_check = UrlCheck(path=path, status_code=[(0, 999)], virtualhost=parts.hostname)
    chk = Checker(kind="SSL_GET" if https else "HTTP_GET", urls=[url_check], connect_timeout=timeout, retry=0)
    rs = RealServer(ip, port, checkers=[chk])
    vs = VirtualServer(address=ip, port=port, real_servers=[rs])
    manager = LvsManager(loop, Config(virtual_servers=[vs]), Notifier(loop, Config()))
    vsr = _VsRuntime(vs, [])
    check = _HttpCheck(manager, vsr, _RsRuntime(rs, (ip, port)), chk)
    result: List[Any] = []

    def done(ok: bool, reason: str = "", weight: Optional[int] = None) -> None:
        result.append((ok, reason, bytes(getattr(check, "response", b""))))
        check._close()
        loop.stop()

    check._done = done  # type: ignore[assignment]
    check._attempt()
    loop.run(until=loop.time() + timeout + 1)
    loop.close()
    if not result or not result[0][0]:
        print(f"{PROG}: {url}: {result[0][1] if result else 'timed out'}", file=sys.stderr)
        return 1
    head, _, body = result[0][2].partition(b"\r\n\r\n")
    print(head.split(b"\r\n", 1)[0].decode(errors="replace"), file=sys.stderr)
    print(f"MD5SUM = {hashlib.md5(body).hexdigest()}")
    return 0


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


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=PROG, description="keepalived-compatible VRRP and LVS daemon")
    parser.add_argument("-f", "--use-file", dest="config", help="configuration file")
    parser.add_argument("--check", "-t", "--config-test", dest="check", action="store_true",
                        help="check the configuration and exit")
    parser.add_argument("-v", "--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--genhash", metavar="URL", help="print the MD5 of URL's body for HTTP_GET/SSL_GET digest")
    args = parser.parse_args(argv)
    if args.genhash:
        return genhash(args.genhash)
    print(f"{PROG}: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
