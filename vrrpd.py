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
import ipaddress
import logging
import os
import selectors
import signal
import socket
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

# (LVS checker decision logic goes under "6b. LVS checkers", after 6a)

# --------------------------------------------------------------------------------------------
# 6a. VRRP trackers: vrrp_script, track_file, track_process
#     Pure decisions first (rise/fall counters, weight rules, process matching), then the
#     Tracking class that runs scripts with EventLoop.spawn() and polls files and /proc on timers.
# --------------------------------------------------------------------------------------------

TRACK_FILE_FAULT = -254  # a track_file contribution at or below this puts the instance in FAULT
TRACK_FILE_MAX = 253


class ScriptResult:
    """The rise/fall counter of one vrrp_script (keepalived's `result`), fed one exit at a time.

    `result` runs 0..rise+fall-1 and the script is good once it reaches `rise`. It starts at
    rise-1, so one success makes it good and, as in keepalived, the first failure at start-up
    marks it failed at once; `init_fail` starts it failed at 0. `good` is None until then."""

    def __init__(self, rise: int = 1, fall: int = 1, init_fail: bool = False):
        self.rise = max(1, rise)
        self.fall = max(1, fall)
        self.result = 0 if init_fail else self.rise - 1
        self.good: Optional[bool] = False if init_fail else None

    def record(self, success: bool) -> bool:
        """Count one run of the script; return True when it changed between good and failed."""
        if success:
            if self.result < self.rise - 1:
                self.result += 1
                return False
            self.result = self.rise + self.fall - 1
            changed = self.good is not True
            self.good = True
            return changed
        if self.result > self.rise:
            self.result -= 1
            return False
        self.result = 0
        changed = self.good is not False
        self.good = False
        return changed

    @property
    def state(self) -> str:
        return {None: "INIT", True: "GOOD", False: "BAD"}[self.good]


def tracker_effect(weight: int, reverse: bool, ok: Optional[bool]) -> Tuple[int, bool]:
    """(priority delta, fault) of a vrrp_script or track_process in state `ok` (None: not run yet).

    keepalived's rules: weight 0 means FAULT while failing (while OK with `reverse`); a positive
    weight is added while OK, a negative one while failing; `reverse` negates the delta."""
    if ok is None:
        return 0, False
    if weight == 0:
        return 0, ok == reverse
    if weight > 0:
        delta = weight if ok else 0
    else:
        delta = weight if not ok else 0
    return (-delta if reverse else delta), False


def track_file_effect(weight: int, reverse: bool, value: int) -> Tuple[int, bool]:
    """(priority delta, fault) of a track_file holding `value`.

    Weight 0: a non-zero value means FAULT (a zero value with `reverse`). Otherwise the delta
    is value x weight (negated by `reverse`), capped at 253; -254 or below means FAULT."""
    if weight == 0:
        return 0, (value != 0) != reverse
    delta = value * weight * (-1 if reverse else 1)
    if delta <= TRACK_FILE_FAULT:
        return 0, True
    return min(delta, TRACK_FILE_MAX), False


def parse_track_file_value(text: str) -> Optional[int]:
    """The number at the start of a track_file, read like C's strtol(text, NULL, 0).

    No number reads as 0; a number outside the 32-bit range gives None (keepalived ignores it)."""
    import re

    match = re.match(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not match:
        return 0
    digits = match.group(2)
    if digits[:2].lower() == "0x":
        value = int(digits[2:], 16)
    elif digits.startswith("0") and len(digits) > 1:
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    if match.group(1) == "-":
        value = -value
    if not -(2**31) <= value <= 2**31:
        return None
    return value


def tracker_weight(ref: TrackRef, weight: int, reverse: bool) -> Tuple[int, bool]:
    """The weight and reverse flag that apply: the instance's override if it gives a weight."""
    if ref.weight is not None:
        return ref.weight, ref.reverse
    return weight, reverse or ref.reverse


def process_matches(tp: TrackProcess, comm: str, cmdline: List[str]) -> bool:
    """Whether a process (its /proc comm and argv) is one that track_process `tp` counts.

    Without parameters the name is compared exactly with comm (15 characters, as the kernel
    keeps it) or, with `full_command`, with argv[0]; like `pgrep '^name$'`, not a regex. With
    parameters argv[0] (or its base name, or comm) must be the name, and the arguments match
    per `param_match`: exact (all of them), partial (the first n), initial (as partial, the
    last configured one may be a prefix)."""
    if not tp.process:
        return False
    name, params = tp.process[0], tp.process[1:]
    argv0 = cmdline[0] if cmdline else ""
    if tp.full_command:
        if argv0 != name:
            return False
    elif not params:
        return comm == name[:15]
    elif not (comm == name[:15] or argv0 == name or os.path.basename(argv0) == name):
        return False
    if not params:
        return True
    args = cmdline[1:]
    if tp.param_match == "partial":
        return args[: len(params)] == params
    if tp.param_match == "initial":
        n = len(params)
        return len(args) >= n and args[: n - 1] == params[: n - 1] and args[n - 1].startswith(params[-1])
    return args == params


class ProcessQuorum:
    """Up/down state of one track_process from successive process counts, with `delay`.

    The first count sets the state at once; later a change must persist for `delay` seconds
    (keepalived's fork_delay/terminate_delay) before it is reported."""

    def __init__(self, quorum: int = 1, quorum_max: Optional[int] = None, delay: float = 0.0):
        self.quorum = quorum
        self.quorum_max = quorum_max
        self.delay = delay
        self.up: Optional[bool] = None
        self.count = 0
        self.pending: Optional[Tuple[bool, float]] = None  # (wanted state, when it takes effect)

    def update(self, count: int, now: float) -> bool:
        """Feed a count taken at `now`; return True when the up/down state changed."""
        self.count = count
        want = count >= self.quorum and (self.quorum_max is None or count <= self.quorum_max)
        if self.up is None or (want != self.up and self.delay <= 0):
            changed = self.up != want
            self.up = want
            self.pending = None
            return changed
        if want == self.up:
            self.pending = None
            return False
        if self.pending is None or self.pending[0] != want:
            self.pending = (want, now + self.delay)
        if now >= self.pending[1]:
            self.up = want
            self.pending = None
            return True
        return False


def script_argv(cmd: Command) -> List[str]:
    """The argv that runs a script: its own words, or `/bin/sh -c RAW` for shell syntax.

    A script with bash's `[[ ... ]]` runs under /bin/bash when there is one: on CentOS, where
    such configurations come from, /bin/sh is bash; under dash `[[` is "not found" and
    `[[ -f down ]] && exit 1 || exit 0` would silently succeed."""
    if cmd.shell:
        if "[[" in cmd.raw and os.path.exists("/bin/bash"):
            return ["/bin/bash", "-c", cmd.raw]
        return ["/bin/sh", "-c", cmd.raw]
    return list(cmd.argv)


def find_script(argv0: str) -> Optional[str]:
    """The executable file argv0 names (searched in PATH if it has no slash), or None."""
    import shutil

    if "/" in argv0:
        return argv0 if os.path.isfile(argv0) and os.access(argv0, os.X_OK) else None
    return shutil.which(argv0)


def script_security_problem(path: str) -> Optional[str]:
    """The first part of `path` (/, each directory, the file) that a non-root user could
    change, or None if the path is safe to run as root (keepalived's check_security rule)."""
    import stat

    parts = os.path.abspath(path).split("/")
    for i in range(1, len(parts) + 1):
        part = "/".join(parts[:i]) or "/"
        try:
            st = os.lstat(part)
        except OSError:
            return part
        shared = stat.S_ISREG(st.st_mode) or (stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_ISVTX)
        writable = (st.st_gid != 0 and st.st_mode & stat.S_IWGRP) or st.st_mode & stat.S_IWOTH
        if st.st_uid != 0 or (shared and writable):
            return part
    return None


def default_script_user(global_defs: GlobalDefs) -> Tuple[Optional[str], Optional[str]]:
    """The user and group scripts run as when they name none: script_user, else keepalived's
    `keepalived_script` user if it exists, else the daemon's own user (root)."""
    if global_defs.script_user is not None:
        return global_defs.script_user, global_defs.script_group
    import pwd

    try:
        pwd.getpwnam("keepalived_script")
    except KeyError:
        return None, None
    return "keepalived_script", None


def _runs_as_root(user: Optional[str]) -> bool:
    if user is None:
        return os.geteuid() == 0
    return user in ("root", "0")


def script_environment() -> Dict[str, str]:
    """The environment for scripts: ours without IFS and LD_PRELOAD, as keepalived does."""
    return {k: v for k, v in os.environ.items() if k not in ("IFS", "LD_PRELOAD")}


def check_command_runnable(cmd: Command, user: Optional[str], secure: bool, what: str) -> Optional[str]:
    """Why `cmd` must not run (not found, unsafe under enable_script_security), or None.

    Unsafe permissions without enable_script_security are only logged, as keepalived does."""
    argv = script_argv(cmd)
    path = find_script(argv[0]) if argv else None
    if path is None:
        return f"script '{argv[0] if argv else cmd.raw}' not found or not executable"
    if _runs_as_root(user):
        real = os.path.realpath(path)
        weak = script_security_problem(path) or (script_security_problem(real) if real != path else None)
        if weak is not None:
            if secure:
                return f"unsafe permissions found for script '{path}' ({weak} is writable by non-root)"
            if path not in _unsafe_scripts_logged:
                _unsafe_scripts_logged.add(path)
                log.warning("SECURITY VIOLATION - %s: unsafe permissions found for script '%s' (%s is writable by "
                            "non-root) and enable_script_security is not set", what, path, weak)
    return None


_unsafe_scripts_logged: set = set()  # scripts already reported as unsafe (said once, not every run)


class _ScriptRunner:
    """One vrrp_script: runs it every `interval` on the loop and keeps its ScriptResult."""

    def __init__(self, tracking: Tracking, script: VrrpScript):
        self.tracking = tracking
        self.script = script
        self.result = ScriptResult(script.rise, script.fall, script.init_fail)
        self.child: Optional[Child] = None
        self.timer: Optional[Timer] = None
        self.last_status: Optional[int] = None
        self.problem: Optional[str] = None  # why it cannot run, logged once
        self.runs = 0
        gdefs = tracking.config.global_defs
        if script.user is not None:
            self.user, self.group = script.user, script.group
        elif script.script is not None and script.script.user is not None:
            self.user, self.group = script.script.user, script.script.group
        else:
            self.user, self.group = default_script_user(gdefs)

    @property
    def interval(self) -> float:
        return self.script.interval if self.script.interval > 0 else 1.0

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.child is not None and self.child.returncode is None:
            self.child.on_exit = None
            self.child.kill()
        self.child = None

    def run(self) -> None:
        loop = self.tracking.loop
        self.timer = loop.call_later(self.interval, self.run)
        name = self.script.name
        if self.child is not None:
            log.info("Track script %s is already running, expect idle - skipping run", name)
            return
        cmd = self.script.script
        problem = "no script set" if cmd is None else check_command_runnable(
            cmd, self.user, self.tracking.config.global_defs.enable_script_security, f"VRRP_Script({name})")
        child = None
        if problem is None:
            try:
                child = loop.spawn(script_argv(cmd), self._on_exit, timeout=self.script.timeout or self.interval,
                                   env=script_environment(), user=self.user, group=self.group)
            except (OSError, KeyError, ValueError) as exc:
                problem = f"cannot run script: {exc}"
        if problem is not None:
            if problem != self.problem:
                log.warning("VRRP_Script(%s) %s - counts as failure", name, problem)
            self.problem = problem
            self._record(False, "failed (script not run)")
            return
        if self.problem is not None:
            log.info("VRRP_Script(%s) can run again", name)
            self.problem = None
        self.child = child

    def _on_exit(self, child: Child) -> None:
        self.child = None
        self.runs += 1
        name = self.script.name
        code = child.returncode if child.returncode is not None else -1
        if child.timed_out:
            self._record(False, "timed_out")
            return
        if code >= 0 and code != self.last_status:
            log.info("Script `%s` now returning %d", name, code)
        self.last_status = code
        if code == 0:
            self._record(True, "succeeded")
        elif code > 0:
            self._record(False, f"failed (exited with status {code})")
        else:
            self._record(False, f"failed (due to signal {-code})")

    def _record(self, success: bool, how: str) -> None:
        if self.result.record(success):
            log.info("VRRP_Script(%s) %s", self.script.name, how)
            self.tracking._changed()


class _FileWatch:
    """One track_file: its last value, re-read every Tracking.file_poll_interval seconds."""

    def __init__(self, track_file: TrackFile):
        self.track_file = track_file
        self.value = 0

    def init_file(self) -> None:
        tf = self.track_file
        if tf.init_file is None or not tf.path:
            return
        if os.path.exists(tf.path) and not tf.init_file_overwrite:
            return
        try:
            with open(tf.path, "w") as handle:
                handle.write(f"{tf.init_file}\n")
        except OSError as exc:
            log.warning("Track_File(%s): cannot initialise %s: %s", tf.name, tf.path, exc)

    def read(self) -> bool:
        """Read the file; return True when its value changed. A missing file reads as 0."""
        try:
            with open(self.track_file.path, "rb") as handle:
                text = handle.read(127).decode("ascii", "replace")
        except OSError:
            text = ""
        value = parse_track_file_value(text)
        if value is None:
            log.info("Invalid number read from %s - ignoring", self.track_file.path)
            return False
        if value == self.value:
            return False
        self.value = value
        return True


def scan_processes(want_cmdline: bool) -> List[Tuple[str, List[str]]]:
    """(comm, argv) of every live process in /proc; zombies are left out; argv only if asked."""
    found: List[Tuple[str, List[str]]] = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat_line = handle.read(512).decode("utf-8", "replace")
            comm = stat_line[stat_line.index("(") + 1: stat_line.rindex(")")]
            state = stat_line[stat_line.rindex(")") + 2: stat_line.rindex(")") + 3]
            if state in ("Z", "X"):
                continue
            argv: List[str] = []
            if want_cmdline:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    raw = handle.read(65536)
                argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]] if raw else []
        except (OSError, ValueError):
            continue  # the process ended while we looked
        found.append((comm, argv))
    return found


class Tracking:
    """vrrp_script / track_file / track_process state for every instance and sync group.

    Contract used by the Daemon (section 10):
      Tracking(loop, config, on_change)   on_change() is called on the loop whenever any tracked
                                          object changes state, so the daemon re-reads adjustments.
      start() / stop()                    begin / end running scripts and watching files/processes.
      adjustment(inst) -> (delta, fault)  the sum of the weights of inst's trackers in their current
                                          state, and whether a weight-0 tracker says FAULT.
      status() -> dict                    per-tracker state for dumps and --json.
    Scripts run as child processes on the loop; files and /proc are polled on loop timers.
    Only trackers that some instance or sync group refers to are run."""

    file_poll_interval = 0.5
    process_scan_interval = 1.0

    def __init__(self, loop: EventLoop, config: Config, on_change: Callable[[], Any]):
        self.loop = loop
        self.config = config
        self.on_change = on_change
        self._started = False
        self._file_timer: Optional[Timer] = None
        self._process_timer: Optional[Timer] = None
        used: Dict[str, set] = {"script": set(), "file": set(), "process": set()}
        for owner in list(config.vrrp_instances) + list(config.sync_groups):
            used["script"].update(r.name for r in owner.track_script)
            used["file"].update(r.name for r in owner.track_file)
            used["process"].update(r.name for r in owner.track_process)
        self.scripts: Dict[str, _ScriptRunner] = {
            name: _ScriptRunner(self, s) for name, s in config.vrrp_scripts.items() if name in used["script"]}
        self.files: Dict[str, _FileWatch] = {
            name: _FileWatch(f) for name, f in config.track_files.items() if name in used["file"]}
        self.processes: Dict[str, ProcessQuorum] = {
            name: ProcessQuorum(p.quorum, p.quorum_max, p.delay)
            for name, p in config.track_processes.items() if name in used["process"]}

    # -- running --------------------------------------------------------------------------
    def start(self) -> None:
        """Read files and /proc now (so adjustment() is right at once) and start the scripts."""
        self._started = True
        for watch in self.files.values():
            watch.init_file()
            watch.read()
        if self.processes:
            self._scan(initial=True)
        if self.files:
            self._file_timer = self.loop.call_later(self.file_poll_interval, self._poll_files)
        for runner in self.scripts.values():
            runner.timer = self.loop.call_later(0, runner.run)

    def stop(self) -> None:
        self._started = False
        for runner in self.scripts.values():
            runner.stop()
        for timer in (self._file_timer, self._process_timer):
            if timer is not None:
                timer.cancel()
        self._file_timer = self._process_timer = None

    def _changed(self) -> None:
        if self._started:
            self.on_change()

    def _poll_files(self) -> None:
        self._file_timer = self.loop.call_later(self.file_poll_interval, self._poll_files)
        changed = False
        for name, watch in self.files.items():
            if watch.read():
                log.info("Track_File(%s) %s now reads %d", name, watch.track_file.path, watch.value)
                changed = True
        if changed:
            self._changed()

    def _scan(self, initial: bool = False) -> None:
        now = self.loop.time()
        tps = {name: self.config.track_processes[name] for name in self.processes}
        want_cmdline = any(tp.full_command or len(tp.process) > 1 for tp in tps.values())
        procs = scan_processes(want_cmdline)
        changed = False
        next_due = now + self.process_scan_interval
        for name, quorum in self.processes.items():
            count = sum(1 for comm, argv in procs if process_matches(tps[name], comm, argv))
            if quorum.update(count, now):
                changed = True
                log.info("Track_Process(%s) now %s (%d running, quorum %d)",
                         name, "UP" if quorum.up else "DOWN", count, quorum.quorum)
            if quorum.pending is not None:
                next_due = min(next_due, quorum.pending[1])
        if self._started:
            self._process_timer = self.loop.call_at(max(next_due, now + 0.01), self._scan)
        if changed and not initial:
            self._changed()

    # -- queries --------------------------------------------------------------------------
    def _refs(self, inst: VrrpInstance) -> Tuple[List[TrackRef], List[TrackRef], List[TrackRef]]:
        scripts, files, procs = list(inst.track_script), list(inst.track_file), list(inst.track_process)
        for group in self.config.sync_groups:
            if inst.name in group.group or inst.sync_group == group.name:
                scripts += group.track_script
                files += group.track_file
                procs += group.track_process
        return scripts, files, procs

    def adjustment(self, inst: VrrpInstance) -> Tuple[int, bool]:
        """(sum of inst's tracker weights in their current state, whether one of them says FAULT).

        The trackers of inst's sync group count for inst too. Unlike keepalived, which ignores
        weighted trackers of sync-group members, their weights apply. The daemon adds the sum to
        the base priority and clamps to 1..254 (255 never changes)."""
        scripts, files, procs = self._refs(inst)
        total, fault = 0, False
        for ref in scripts:
            runner = self.scripts.get(ref.name)
            if runner is None:
                continue
            weight, reverse = tracker_weight(ref, runner.script.weight, runner.script.weight_reverse)
            delta, down = tracker_effect(weight, reverse, runner.result.good)
            total += delta
            fault = fault or down
        for ref in files:
            watch = self.files.get(ref.name)
            if watch is None:
                continue
            weight, reverse = tracker_weight(ref, watch.track_file.weight, watch.track_file.weight_reverse)
            delta, down = track_file_effect(weight, reverse, watch.value)
            total += delta
            fault = fault or down
        for ref in procs:
            quorum = self.processes.get(ref.name)
            if quorum is None:
                continue
            tp = self.config.track_processes[ref.name]
            weight, reverse = tracker_weight(ref, tp.weight, tp.weight_reverse)
            delta, down = tracker_effect(weight, reverse, quorum.up)
            total += delta
            fault = fault or down
        return total, fault

    def initialising(self, inst: VrrpInstance) -> bool:
        """True while a weight-0 vrrp_script of inst has not reported yet (keepalived keeps
        such an instance from becoming MASTER until then)."""
        for ref in self._refs(inst)[0]:
            runner = self.scripts.get(ref.name)
            if runner is not None and runner.result.good is None:
                weight, _ = tracker_weight(ref, runner.script.weight, runner.script.weight_reverse)
                if weight == 0:
                    return True
        return False

    def status(self) -> Dict[str, Any]:
        return {
            "vrrp_script": {
                name: {"state": r.result.state, "result": r.result.result, "rise": r.result.rise,
                       "fall": r.result.fall, "weight": r.script.weight, "last_status": r.last_status,
                       "runs": r.runs, "problem": r.problem}
                for name, r in self.scripts.items()},
            "track_file": {
                name: {"path": w.track_file.path, "value": w.value, "weight": w.track_file.weight}
                for name, w in self.files.items()},
            "track_process": {
                name: {"state": {None: "INIT", True: "UP", False: "DOWN"}[q.up], "count": q.count,
                       "quorum": q.quorum, "quorum_max": q.quorum_max}
                for name, q in self.processes.items()},
        }


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

# Notify scripts run on the loop, one at a time per instance/group/real server, in the order of
# the transitions they report; the FIFO is written without blocking; mail goes through ONE worker
# thread (smtplib blocks), so a dead or silent SMTP server never delays the loop.

NOTIFY_SCRIPT_TIMEOUT = 120.0  # a notify script still running after this is killed, so its queue moves on

# (subject, body) of keepalived's VRRP mails, by state
_VRRP_MAIL = {
    State.MASTER: ("Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="),
    State.BACKUP: ("Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    State.FAULT: ("Entering FAULT state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    State.STOP: ("Stopping", "=> VRRP Instance stopping <="),
}
_GROUP_MAIL = {
    State.MASTER: ("Entering MASTER state", "=> All VRRP group instances are now in MASTER state <="),
    State.BACKUP: ("Entering BACKUP state", "=> All VRRP group instances are now in BACKUP state <="),
    State.FAULT: ("Entering FAULT state", "=> All VRRP group instances are now in FAULT state <="),
    State.STOP: ("Stopping", "=> All VRRP group instances are now stopping <="),
}


def notify_fifo_line(kind: str, name: str, state: str, priority: int) -> str:
    """A VRRP line of the notify FIFO, as keepalived writes it: `INSTANCE "VI_1" MASTER 150`."""
    return f'{kind} "{name}" {state} {priority}\n'


def format_service(address: Optional[IPAddress], protocol: str, port: Optional[int]) -> str:
    """keepalived's `[192.168.1.10]:tcp:80` form of an address, protocol and port."""
    return f"[{address}]:{protocol.lower()}:{port or 0}"


def format_virtual_server(vs: VirtualServer) -> str:
    """How keepalived names a virtual server in logs, the FIFO and mail."""
    if vs.group is not None:
        return f"[{vs.group}]:{vs.port or 0}"
    if vs.fwmark is not None:
        return f"FWM {vs.fwmark}"
    return format_service(vs.address, vs.protocol, vs.port)


def format_real_server(vs: VirtualServer, rs: RealServer) -> str:
    return format_service(rs.address, vs.protocol, rs.port if rs.port is not None else vs.port)


def smtp_alert_wanted(specific: Optional[bool], *fallbacks: Optional[bool], default: bool = False) -> bool:
    """keepalived's smtp_alert resolution: the object's own setting, else the first global one set."""
    for value in (specific,) + fallbacks:
        if value is not None:
            return value
    return default


def smtp_message(global_defs: GlobalDefs, subject: str, body: str, date: Optional[str] = None) -> str:
    """The DATA of an alert mail, header for header as keepalived sends it (smtplib adds the final dot)."""
    import email.utils

    date = date or email.utils.formatdate(localtime=True)
    to = ",\r\n".join(" " + addr for addr in global_defs.notification_email)
    return (f"Date: {date}\r\nFrom: {global_defs.notification_email_from}\r\nSubject: {subject}\r\n"
            f"X-Mailer: Keepalived\r\nTo:{to}\r\n\r\n{body}\r\n\r\n")


class SmtpAlerter:
    """Sends alert mails from one worker thread with a queue; retries; never touches the loop.

    HELO (not EHLO) with smtp_helo_name or "localhost", MAIL FROM, RCPT TO each recipient, DATA;
    every socket operation is bounded by smtp_connect_timeout (0 means 1 s, as keepalived)."""

    attempts = 3
    retry_delay = 5.0  # seconds before the 2nd attempt; doubled for each further one

    def __init__(self, global_defs: GlobalDefs):
        import queue

        self.global_defs = global_defs
        self._queue: Any = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._closing = threading.Event()
        self.sent = 0
        self.failed = 0

    @property
    def configured(self) -> bool:
        return bool(self.global_defs.notification_email and self.global_defs.smtp_server)

    def submit(self, subject: str, body: str) -> None:
        """Queue one mail; returns at once."""
        if not self.configured or self._closing.is_set():
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name="vrrpd-smtp", daemon=True)
            self._thread.start()
        self._queue.put((subject, smtp_message(self.global_defs, subject, body)))

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def close(self, timeout: float) -> None:
        """Let the worker send what is queued for up to `timeout` seconds, then give up on it."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._closing.set()
        self._thread.join(max(0.0, timeout))
        if self._thread.is_alive():
            log.warning("SMTP: %d alert(s) not sent at shutdown (server %s:%d did not answer in time)",
                        self.pending() - 1, self.global_defs.smtp_server, self.global_defs.smtp_port)

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(*item)
            finally:
                self._queue.task_done()

    def _deliver(self, subject: str, message: str) -> None:
        import smtplib

        gd = self.global_defs
        for attempt in range(1, self.attempts + 1):
            try:
                self._send(message)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("SMTP alert '%s' to %s:%d failed (attempt %d of %d): %s",
                            subject, gd.smtp_server, gd.smtp_port, attempt, self.attempts, exc or type(exc).__name__)
                if attempt == self.attempts or self._closing.wait(self.retry_delay * 2 ** (attempt - 1)):
                    break
            else:
                self.sent += 1
                log.info("SMTP alert successfully sent: %s", subject)
                return
        self.failed += 1
        log.error("SMTP alert '%s' could not be sent", subject)

    def _send(self, message: str) -> None:
        import smtplib

        gd = self.global_defs
        timeout = gd.smtp_connect_timeout or 1.0
        with smtplib.SMTP(timeout=timeout) as smtp:
            smtp.connect(gd.smtp_server or "", gd.smtp_port)
            smtp.helo(gd.smtp_helo_name or "localhost")
            smtp.sendmail(gd.notification_email_from, list(gd.notification_email), message.encode("utf-8"))


class NotifyFifo:
    """One notify FIFO, created if missing and opened read-write and non-blocking, as keepalived
    does: with no reader, lines wait in the pipe buffer; when it is full they are dropped."""

    def __init__(self, path: str):
        self.path = path
        self.fd: Optional[int] = None
        self.created = False
        self.dropped = 0
        self._failed = False

    def _open(self) -> bool:
        import stat

        if self.fd is not None:
            return True
        if self._failed:
            return False
        try:
            if not os.path.exists(self.path):
                os.mkfifo(self.path, 0o600)
                self.created = True
            if not stat.S_ISFIFO(os.stat(self.path).st_mode):
                raise OSError(f"{self.path} exists and is not a FIFO")
            self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            log.error("notify fifo %s cannot be used: %s", self.path, exc)
            self._failed = True
            return False
        return True

    def write(self, line: str) -> None:
        if not self._open():
            return
        try:
            os.write(self.fd, line.encode("utf-8"))  # type: ignore[arg-type]
        except BlockingIOError:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("notify fifo %s is full (no reader?): %d line(s) dropped", self.path, self.dropped)
        except OSError as exc:
            log.info("notify fifo %s write error: %s", self.path, exc)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.created:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.created = False


class Notifier:
    """Tells the operator: notify scripts, the notify FIFO and SMTP alerts. Never blocks the loop.

    Contract used by the Daemon and the LVS manager:
      Notifier(loop, config)
      vrrp_instance(inst, state, priority)   an instance entered `state` (MASTER/BACKUP/FAULT/STOP)
      vrrp_group(group, state)               a sync group entered `state`
      vrrp_master_rx_lower_pri(inst, priority)
      checker(vs, rs, up, reason)            a real server went up/down (LVS)
      close(timeout)                         flush what can be flushed within timeout seconds
    Also: vrrp_priority_change(inst, state, priority) for the FIFO's MASTER_PRIORITY/BACKUP_PRIORITY
    lines (vrrp_notify_priority_changes) and virtual_server_quorum(vs, up, body)."""

    def __init__(self, loop: EventLoop, config: Config):
        self.loop = loop
        self.config = config
        gd = config.global_defs
        self.mailer = SmtpAlerter(gd)
        self._queues: Dict[str, List[Tuple[Command, List[str], str]]] = {}
        self._running: Dict[str, Child] = {}
        self._last_mail: Dict[str, Any] = {}
        self.scripts_run = 0
        self.vrrp_fifos = [NotifyFifo(p) for p in dict.fromkeys(x for x in (gd.notify_fifo, gd.vrrp_notify_fifo) if x)]
        self.lvs_fifos = [f for f in self.vrrp_fifos if f.path == gd.notify_fifo]
        if gd.lvs_notify_fifo and gd.lvs_notify_fifo not in (gd.notify_fifo, gd.vrrp_notify_fifo):
            self.lvs_fifos.append(NotifyFifo(gd.lvs_notify_fifo))
        elif gd.lvs_notify_fifo:
            self.lvs_fifos += [f for f in self.vrrp_fifos if f.path == gd.lvs_notify_fifo and f not in self.lvs_fifos]

    # -- the contract ---------------------------------------------------------------------
    def vrrp_instance(self, inst: VrrpInstance, state: State, priority: int) -> None:
        """Instance `inst` entered `state`: notify_<state>, then notify ... INSTANCE, FIFO, mail."""
        specific = {State.MASTER: inst.notify_master, State.BACKUP: inst.notify_backup,
                    State.FAULT: inst.notify_fault, State.STOP: inst.notify_stop}.get(state)
        key = f"INSTANCE {inst.name}"
        if specific is not None:
            self._queue(key, specific, [])
        if inst.notify is not None:
            self._queue(key, inst.notify, ["INSTANCE", inst.name, state.value, str(priority)])
        self._fifo(self.vrrp_fifos, notify_fifo_line("INSTANCE", inst.name, state.value, priority))
        gd = self.config.global_defs
        if smtp_alert_wanted(inst.smtp_alert, gd.smtp_alert_vrrp, gd.smtp_alert) and state in _VRRP_MAIL:
            subject, body = _VRRP_MAIL[state]
            self._mail(key, state, f"[{gd.router_id}] VRRP Instance {inst.name} - {subject}", body)

    def vrrp_group(self, group: SyncGroup, state: State) -> None:
        """Sync group `group` entered `state` (groups report priority 0, as keepalived)."""
        specific = {State.MASTER: group.notify_master, State.BACKUP: group.notify_backup,
                    State.FAULT: group.notify_fault, State.STOP: group.notify_stop}.get(state)
        key = f"GROUP {group.name}"
        if specific is not None:
            self._queue(key, specific, [])
        if group.notify is not None:
            self._queue(key, group.notify, ["GROUP", group.name, state.value, "0"])
        self._fifo(self.vrrp_fifos, notify_fifo_line("GROUP", group.name, state.value, 0))
        gd = self.config.global_defs
        if smtp_alert_wanted(group.smtp_alert, gd.smtp_alert_vrrp, gd.smtp_alert) and state in _GROUP_MAIL:
            subject, body = _GROUP_MAIL[state]
            self._mail(key, state, f"[{gd.router_id}] VRRP Group {group.name} - {subject}", body)

    def vrrp_master_rx_lower_pri(self, inst: VrrpInstance, priority: int) -> None:
        """The MASTER received a lower-priority advert: notify_master_rx_lower_pri and the FIFO."""
        if inst.notify_master_rx_lower_pri is not None:
            self._queue(f"INSTANCE {inst.name}", inst.notify_master_rx_lower_pri, [])
        self._fifo(self.vrrp_fifos, notify_fifo_line("INSTANCE", inst.name, "MASTER_RX_LOWER_PRI", priority))

    def vrrp_priority_change(self, inst: VrrpInstance, state: State, priority: int) -> None:
        """The effective priority changed: a FIFO line if vrrp_notify_priority_changes is set."""
        if self.config.global_defs.vrrp_notify_priority_changes:
            kind = "MASTER_PRIORITY" if state == State.MASTER else "BACKUP_PRIORITY"
            self._fifo(self.vrrp_fifos, notify_fifo_line("INSTANCE", inst.name, kind, priority))

    def checker(self, vs: VirtualServer, rs: RealServer, up: bool, reason: str = "") -> None:
        """Real server `rs` of `vs` went up or down: notify_up/notify_down, FIFO `RS ...`, mail."""
        rs_name, vs_name = format_real_server(vs, rs), format_virtual_server(vs)
        key = f"RS {rs_name} {vs_name}"
        cmd = rs.notify_up if up else rs.notify_down
        if cmd is not None:
            self._queue(key, cmd, [])
        word = "UP" if up else "DOWN"
        self._fifo(self.lvs_fifos, f"RS {rs_name} {vs_name} {word}\n")
        gd = self.config.global_defs
        if smtp_alert_wanted(rs.smtp_alert, gd.smtp_alert_checker, gd.smtp_alert, default=True):
            if reason.startswith("=>"):
                body = reason
            elif up:
                body = "=> CHECK succeed on service <="
            else:
                body = f"=> CHECK failed on service : {reason} <=" if reason else "=> CHECK failed on service <="
            self._mail(key, up, f"[{gd.router_id}] Realserver {rs_name} of virtual server {vs_name} - {word}", body)

    def virtual_server_quorum(self, vs: VirtualServer, up: bool, body: str = "") -> None:
        """A virtual server gained (up) or lost its quorum: quorum_up/quorum_down, FIFO `VS ...`, mail."""
        vs_name = format_virtual_server(vs)
        key = f"VS {vs_name}"
        cmd = vs.quorum_up if up else vs.quorum_down
        if cmd is not None:
            self._queue(key, cmd, [])
        word = "UP" if up else "DOWN"
        self._fifo(self.lvs_fifos, f"VS {vs_name} {word}\n")
        gd = self.config.global_defs
        if smtp_alert_wanted(vs.smtp_alert, gd.smtp_alert_checker, gd.smtp_alert):
            self._mail(key, up, f"[{gd.router_id}] Virtualserver {vs_name} - {word}",
                       body or f"=> Virtual server quorum {'gained' if up else 'lost'} <=")

    def close(self, timeout: float = 1.0) -> None:
        """Run queued notify scripts (STOP ones included) and send queued mail, for at most
        `timeout` seconds in all; kill scripts still running then. Spins the loop meanwhile."""
        deadline = self.loop.time() + max(0.0, timeout)
        while (self._running or any(self._queues.values())) and self.loop.time() < deadline:
            self.loop.run_once(until=deadline)
        for key, child in list(self._running.items()):
            log.warning("notify script for %s still running at shutdown - killing it", key)
            child.on_exit = None
            child.kill()
        self._running.clear()
        self._queues.clear()
        self.mailer.close(max(0.0, deadline - self.loop.time()))
        for fifo in self.vrrp_fifos + self.lvs_fifos:
            fifo.close()

    def status(self) -> Dict[str, Any]:
        return {"scripts_run": self.scripts_run, "scripts_queued": sum(len(q) for q in self._queues.values()),
                "scripts_running": sorted(self._running), "mail_sent": self.mailer.sent,
                "mail_failed": self.mailer.failed, "mail_queued": self.mailer.pending(),
                "fifo_dropped": sum(f.dropped for f in self.vrrp_fifos + self.lvs_fifos)}

    # -- notify scripts -------------------------------------------------------------------
    def _queue(self, key: str, cmd: Command, extra: List[str]) -> None:
        self._queues.setdefault(key, []).append((cmd, extra, key))
        if key not in self._running:
            self._next(key)

    def _next(self, key: str) -> None:
        queue = self._queues.get(key)
        while queue:
            cmd, extra, _ = queue.pop(0)
            if self._start(key, cmd, extra):
                return

    def _start(self, key: str, cmd: Command, extra: List[str]) -> bool:
        gd = self.config.global_defs
        user, group = (cmd.user, cmd.group) if cmd.user is not None else default_script_user(gd)
        problem = check_command_runnable(cmd, user, gd.enable_script_security, f"notify {key}")
        if problem is not None:
            log.warning("notify %s: %s - not run", key, problem)
            return False
        argv = script_argv(cmd)
        if extra and cmd.shell:
            argv = argv[:2] + [cmd.raw + ' "$@"', "notify"] + extra
        else:
            argv = argv + extra
        try:
            child = self.loop.spawn(argv, lambda c: self._done(key, c), timeout=NOTIFY_SCRIPT_TIMEOUT,
                                    env=script_environment(), user=user, group=group)
        except (OSError, KeyError, ValueError) as exc:
            log.warning("notify %s: cannot run %s: %s", key, cmd.raw, exc)
            return False
        self.scripts_run += 1
        self._running[key] = child
        return True

    def _done(self, key: str, child: Child) -> None:
        self._running.pop(key, None)
        if child.timed_out:
            log.warning("notify %s: script killed after %.0f s", key, NOTIFY_SCRIPT_TIMEOUT)
        elif child.returncode:
            log.info("notify %s: script exited with status %s", key, child.returncode)
        self._next(key)

    # -- FIFO and mail --------------------------------------------------------------------
    @staticmethod
    def _fifo(fifos: List[NotifyFifo], line: str) -> None:
        for fifo in fifos:
            fifo.write(line)

    def _mail(self, key: str, state: Any, subject: str, body: str) -> None:
        """Queue a mail unless this object's last mail already told this state (keepalived's rule)."""
        if state == State.FAULT and self.config.global_defs.no_email_faults:
            return
        if self._last_mail.get(key, object()) == state:
            return
        self._last_mail[key] = state
        self.mailer.submit(subject, body)


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
