#!/usr/bin/env python3
"""vrrpd - a keepalived-compatible VRRP and LVS daemon in one standard-library Python file.

Map of this file: sections in the order data flows, from text and bytes at the edges to the pure protocol core
and back out to the kernel. test_the_map_names_every_section_banner_in_order keeps it true.

  1. Constants and small types       VRRP/netlink numbers, State, AuthType, LbKind, Diagnostic, errors
  2. Configuration model             dataclasses, one per keepalived block, values already typed
  3. Configuration parser            text -> model; every problem reported with file:line, in one pass
     3.1 Lexer                       comments, quotes, braces, continuation, $VARS, @id lines, include
     3.2 Typed values and commands
     3.3 The keyword registry        drives the parser; the README keyword table is rendered from it
     3.4 Parser
     3.5 Keywords by block           keepalived.conf(5); defaults live in the dataclasses of section 2
     3.6 Validation                  the whole configuration at once
     3.7 Public entry points         load_config(), parse_config_text(), --check
  4. Wire formats                    pure functions on bytes, no sockets
     4.1 VRRP, IPv4, ARP and netlink   encode_advert()/decode_advert() for both families, BPF filter,
                                     netlink packing, addresses, routes, rules
     4.2 More formats                Neighbour Advertisements, IPsec AH, the auth_hmac trailer, BFD packets,
                                     the nftables ruleset, VMAC messages
  5. VRRP core (sans-IO)             given `now` and events, returns actions
     5.1 State machine and receive checks   VrrpMachine, TRANSITIONS, receive_checks() (RFC 5798 6, 7.1)
     5.2 Sync groups                 members move together (keepalived's vrrp_sync.c)
  6. Trackers and health checks      decisions, and the TrackerRunner that runs the VRRP trackers
     6.1 VRRP trackers               vrrp_script, track_file, track_process, track_bfd
     6.2 LVS checker decisions       sans-IO; their I/O is in 7.2
     6.3 BFD sessions                RFC 5880, sans-IO; their sockets are in 7.4
  7. Kernel edge                     the only code that knows the OS
     7.1 rtnetlink and VRRP sockets  NetlinkSocket, events, VrrpSocket (both families, AH), Announcer, Kernel
     7.2 IPVS and checkers           generic netlink IPVS, checker I/O, the LvsManager
     7.3 Firewall and VMAC           strict mode's nftables table, the VMAC macvlans
     7.4 BFD sockets                 and the sessions of 6.3 on the loop
  8. Event loop                      one epoll loop with a timer heap, child processes, signals
  9. Notification                    notify scripts, notify FIFO, SMTP alerts (one worker thread)
 10. Daemon                          config -> machines -> kernel for both families: sync groups, VMAC,
                                     firewall, AH, reload, status
 11. Command line
     11.1 Logging, systemd notification, and the status socket
     11.2 Running the daemon, and the namespace demo   its Lab of namespaces is the lab of test_vrrpd.py too
     11.3 Operating it               keepalived's options, forking, signals, reload, dumps

Only the standard library is used, and Python 3.9 is the minimum version.
"""

from __future__ import annotations

import array
import collections
import enum
import errno
import gc
import heapq
import ipaddress
import os
import re
import select
import selectors
import signal
import socket
import stat
import struct
import sys
import time

from _operator import _compare_digest  # hmac.compare_digest is this; python3-minimal has no hmac
from _thread import allocate_lock  # threading.Lock is this; threading loads only for the SMTP worker

# Memory: the annotations are never evaluated (`from __future__ import annotations`), so at run time the typing
# names need only be subscriptable for the few aliases below; importing typing would cost 0.9 MB of the daemon's
# resident memory. Type checkers take the `if TYPE_CHECKING` branch.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import glob
    import random
    import subprocess
    import threading
    from typing import Any, Callable, Dict, List, Optional, Tuple, Union
else:
    class _Hint:
        """A typing name at run time: `Union[...]`, `Callable[..., Any]` give the name itself back."""

        def __init__(self, name: str):
            self._name = name

        def __getitem__(self, _item: object) -> object:
            return self

        def __repr__(self) -> str:
            return f"typing.{self._name}"

    Any, Callable, Dict, List, Optional, Tuple, Union = (_Hint(n) for n in (
        "Any", "Callable", "Dict", "List", "Optional", "Tuple", "Union"))

    class _LazyModule:
        """A standard module imported when first used, then bound in its place (subprocess and random are
        only needed when scripts, checkers or BFD are configured: 0.6 MB less for a daemon without them; glob
        for include files, threading for the SMTP worker)."""

        def __init__(self, name: str):
            self._name = name

        def __getattr__(self, attr: str) -> object:
            import importlib

            module = importlib.import_module(self._name)
            globals()[self._name] = module
            return getattr(module, attr)

    subprocess = _LazyModule("subprocess")
    random = _LazyModule("random")
    glob = _LazyModule("glob")
    threading = _LazyModule("threading")

__version__ = "0.1.0"
PROG = "vrrpd"
# `log`, the daemon's logger, is made in section 11.1 (its own, not logging's: see Logger)

# -- Start-up from the byte-code cache ------------------------------------------------------------
# `python3 vrrpd.py` compiles the whole file on every start. The first thing the module does to run the daemon is
# to re-execute itself from a cached compilation (below), so that the rest of the module runs only in the new process.

BYTECODE_CACHE_DIRS = ("/var/cache/vrrpd", "/run/vrrpd/cache")
_BYTECODE_LOADER = (  # what `python3 -S -c` runs: only builtin modules, no importlib.util (contextlib, warnings)
    "import marshal, os, sys, _frozen_importlib_external as b\n"
    "for name in os.environ.pop('VRRPD_UNSET', '').split():  # set for this interpreter only\n"
    "    os.environ.pop(name, None)\n"
    "try:\n"
    "    with open(sys.argv[1], 'rb') as fh:\n"
    "        data = fh.read()\n"
    "    if data[:4] != b.MAGIC_NUMBER:\n"
    "        raise ValueError(sys.argv[1])\n"
    "    code = marshal.loads(memoryview(data)[16:])\n"
    # another vrrpd version sharing the cache may have removed the file since: run the source instead
    "except (OSError, EOFError, ValueError, TypeError):\n"
    "    os.environ['VRRPD_NO_REEXEC'] = '1'\n"
    "    os.execv(sys.executable, [sys.executable] + sys.argv[2:])\n"
    "module = type(sys)('vrrpd')\n"
    "module.__file__ = sys.argv[2]\n"
    "sys.modules['vrrpd'] = module\n"
    "exec(code, module.__dict__)\n"
    "del data, code  # the module's own code and its class bodies have run: their memory serves the daemon\n"
    "sys.argv = sys.argv[2:]\n"
    "sys.exit(module.main())\n"
)


# The compiled script, when run as one: the first start writes it to the byte-code cache as it is instead of
# compiling the file a second time (compiling is most of a first start on a small CPU)
_SCRIPT_CODE: Any = sys._getframe().f_code if __name__ == "__main__" else None


def without_docstrings(code: Any) -> Any:
    """`code` with its functions' docstrings dropped, as `python3 -OO` compiles them (their first constant is
    the docstring or None; Python 3.14 flags the ones that have one). Nothing in vrrpd reads a __doc__, and
    they are 0.1 MB of the daemon's memory; class docstrings stay."""
    consts = tuple(without_docstrings(c) if isinstance(c, type(code)) else c for c in code.co_consts)
    is_function = code.co_flags & 0x2 and not code.co_name.startswith("<")  # CO_NEWLOCALS; no comprehension
    has_doc = code.co_flags & 0x4000000 if sys.version_info >= (3, 14) else consts and isinstance(consts[0], str)
    if is_function and has_doc:
        consts = (None,) + consts[1:]
    return code.replace(co_consts=consts)


def bytecode_cache(source: str, dirs: Tuple[str, ...] = BYTECODE_CACHE_DIRS, code: Any = None) -> Optional[str]:
    """The path of an up-to-date byte-code file of `source` in the first usable cache directory, or None.

    A directory is usable only if it is ours, a real directory, and writable by nobody else: what is in it
    runs as root. The file name carries the source's hash; older files are removed when a new one is made.
    `code`, the code object already compiled from `source`, saves compiling it a second time. The file is
    PEP 552's unchecked hash-based pyc, as py_compile writes it, of the code without_docstrings()."""
    try:
        import glob as _glob
        import hashlib
        import importlib.util
        import marshal
    except ImportError:  # a Python without them: run from the source
        return None
    try:
        with open(source, "rb") as fh:
            text = fh.read()
        digest = hashlib.sha256(text).hexdigest()[:24]
    except OSError:
        return None
    for base in dirs:
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
            st = os.lstat(base)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                continue
            pyc = os.path.join(base, f"vrrpd-{digest}-{importlib.util.MAGIC_NUMBER.hex()}.pyc")
            if not os.path.exists(pyc):
                if code is None:
                    code = compile(text, source, "exec", dont_inherit=True)
                partial = f"{pyc}.{os.getpid()}"
                with open(partial, "wb") as fh:  # magic, flags 0b01 (unchecked hash), the source's hash, code
                    fh.write(importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
                             + importlib.util.source_hash(text) + marshal.dumps(without_docstrings(code)))
                os.replace(partial, pyc)
                for old in _glob.glob(os.path.join(base, "vrrpd-*.pyc")):
                    if old != pyc:
                        os.unlink(old)
            return pyc
        except (OSError, SyntaxError, ValueError):
            continue
    return None


def reexec_from_bytecode_cache() -> None:
    """Re-execute this process (same pid) from a byte-code cache of this file, when run as a script: at the
    start of the module, before the rest of it runs here for nothing (and before `log` exists).

    Python compiles a script on every start and the compiler's freed memory stays in the heap: about 20 MB
    of the daemon's resident memory. The new interpreter also skips `site` (-S): vrrpd needs nothing from
    site-packages, and what `.pth` files pull in costs a few more MB. Set VRRPD_NO_REEXEC=1 to turn this off.

    glibc's malloc raises its mmap threshold to the size of the largest block freed, here the byte code it loads
    (1.2 MB); the arrays of a large configuration's parse then come from the heap and stay in it. The new
    interpreter starts with the threshold fixed at glibc's default (MALLOC_MMAP_THRESHOLD_, unless already set):
    0.2 MB less with 1,000 instances. The loader removes the variable again, so scripts do not inherit it."""
    if __name__ != "__main__" or os.environ.get("VRRPD_NO_REEXEC"):
        return
    global _SCRIPT_CODE
    source = os.path.abspath(__file__)
    pyc = bytecode_cache(source, code=_SCRIPT_CODE)
    _SCRIPT_CODE = None
    if pyc is None:
        return
    env = os.environ
    if "MALLOC_MMAP_THRESHOLD_" not in env:
        env = dict(env, MALLOC_MMAP_THRESHOLD_=str(128 << 10), VRRPD_UNSET="MALLOC_MMAP_THRESHOLD_")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-S", "-c", _BYTECODE_LOADER, pyc, source] + sys.argv[1:], env)
    except OSError:
        pass  # run from the source, as without a cache


# Commands that answer and exit (--check, --status...) run on from the source: a second interpreter would cost them
# more than it saves. Their options as spelt in full; an abbreviation only misses the shortcut.
_ANSWERING_OPTIONS = frozenset(("-t", "--config-test", "--check", "--status", "--json", "--events", "--signum", "-v",
                                "--version", "--genhash", "--demo", "--demo-probe", "-h", "--help"))
if __name__ == "__main__" and not _ANSWERING_OPTIONS.intersection(arg.split("=", 1)[0] for arg in sys.argv[1:]):
    reexec_from_bytecode_cache()

# ============================================================================================
# 1. Constants and small types
# ============================================================================================

IPPROTO_VRRP = 112
IPPROTO_AH = 51
VRRP_MCAST_GROUP4 = ipaddress.IPv4Address("224.0.0.18")
VRRP_MCAST_GROUP6 = ipaddress.IPv6Address("ff02::12")
VRRP_TTL = 255

DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50  # log levels, with logging's numbers

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]


# -- Python's standard library on a minimal host ------------------------------------------------
# The daemon and --check run on Debian's python3-minimal (the files of libpython3.11-minimal): no
# dataclasses, difflib, hmac, json, shutil, queue, smtplib there. What needs more is imported only
# when configured, through need_module(), which names the package that has it.

STDLIB_PACKAGE_HINT = "Debian/Ubuntu: apt install libpython3-stdlib"
SMTP_MODULES = ("queue", "hmac", "smtplib")  # what e-mail alerts need beyond python3-minimal (smtplib needs hmac)


class MissingModuleError(ImportError):
    """A configured feature needs a standard-library module this Python does not have."""


def need_module(name: str, feature: str) -> Any:
    """Import `name` for `feature`, or raise MissingModuleError saying what is missing and where it is."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or name
        raise MissingModuleError(f"{feature} needs the Python module {missing}, which this Python lacks "
                                 f"({STDLIB_PACKAGE_HINT})") from None


def module_available(name: str) -> bool:
    """True if `name` (and the modules it imports at once) can be imported; nothing is kept loaded."""
    if sys.modules.get(name) is not None:
        return True
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def close_matches(word: str, choices: Any, n: int = 1, cutoff: float = 0.6) -> List[str]:
    """difflib.get_close_matches (for "did you mean"), or nothing where difflib is missing."""
    try:
        import difflib
    except ImportError:
        return []
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)


def which(program: str) -> Optional[str]:
    """shutil.which(program) without shutil: the first executable file named `program` in $PATH."""
    if "/" in program:
        return program if os.path.isfile(program) and os.access(program, os.X_OK) else None
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


_NO_DEFAULT = object()


class _SmallField:
    __slots__ = ("default", "default_factory", "compare", "repr")

    def __init__(self, default: Any, default_factory: Any, compare: bool, repr: bool):  # noqa: A002
        self.default, self.default_factory, self.compare, self.repr = default, default_factory, compare, repr


def small_field(*, default: Any = _NO_DEFAULT, default_factory: Any = _NO_DEFAULT, compare: bool = True,
                repr: bool = True) -> Any:  # noqa: A002
    """dataclasses.field(default=..., default_factory=..., compare=..., repr=...) for small_dataclass."""
    return _SmallField(default, default_factory, compare, repr)


def small_dataclass(cls: Any = None, *, frozen: bool = False) -> Any:
    """The part of @dataclasses.dataclass vrrpd uses, for a Python without dataclasses: __init__ from the
    annotations (defaults, field(...)), __repr__, __eq__, and __hash__ = None, or with frozen=True no
    assignment and a hash of the fields."""
    if cls is None:
        return lambda klass: small_dataclass(klass, frozen=frozen)
    fields: Dict[str, _SmallField] = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update(getattr(base, "_small_fields", {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, _NO_DEFAULT)
        if isinstance(value, _SmallField):
            if value.default is _NO_DEFAULT:
                delattr(cls, name)
            else:
                setattr(cls, name, value.default)
        else:
            value = _SmallField(value, _NO_DEFAULT, True, True)
        fields[name] = value
    params, body = [], []
    scope: Dict[str, Any] = {"_NO_DEFAULT": _NO_DEFAULT, "_set": object.__setattr__}
    for name, f in fields.items():
        value = name
        if f.default_factory is not _NO_DEFAULT:
            scope[f"_f_{name}"] = f.default_factory
            params.append(f"{name}=_NO_DEFAULT")
            value = f"_f_{name}() if {name} is _NO_DEFAULT else {name}"
        elif f.default is not _NO_DEFAULT:
            # the default stays a class attribute: an instance holds only what differs (VrrpInstance has ~80
            # fields, most at their default: a thousand instances save a megabyte)
            scope[f"_d_{name}"] = f.default
            params.append(f"{name}=_d_{name}")
            body.append(f"    if {name} is not _d_{name}:")
        else:
            params.append(name)
        body.append(("        " if body and body[-1].endswith(":") else "    ")
                    + (f"_set(self, {name!r}, {value})" if frozen else f"self.{name} = {value}"))
    exec(f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass"), scope)
    cls.__init__ = scope["__init__"]
    cls.__init__.__qualname__ = f"{cls.__qualname__}.__init__"
    shown = [n for n, f in fields.items() if f.repr]
    compared = [n for n, f in fields.items() if f.compare]

    def __repr__(self: Any) -> str:
        return f"{type(self).__qualname__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in shown) + ")"

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return tuple(getattr(self, n) for n in compared) == tuple(getattr(other, n) for n in compared)

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in compared))

    cls._small_fields = fields
    cls.__repr__ = __repr__
    cls.__eq__ = __eq__
    if frozen:
        cls.__setattr__ = __setattr__
        cls.__delattr__ = __setattr__
        cls.__hash__ = __hash__
    elif "__hash__" not in cls.__dict__:
        cls.__hash__ = None
    return cls


def small_replace(obj: Any, **changes: Any) -> Any:
    """dataclasses.replace for small_dataclass."""
    values = {name: getattr(obj, name) for name in type(obj)._small_fields}
    values.update(changes)
    return type(obj)(**values)


def small_asdict(obj: Any) -> Any:
    """dataclasses.asdict for small_dataclass: the model as plain dicts, lists and values."""
    fields = getattr(type(obj), "_small_fields", None)
    if fields is not None:
        return {name: small_asdict(getattr(obj, name)) for name in fields}
    if isinstance(obj, list):  # a plain list also for a shared empty one (_SharedEmptyList)
        return [small_asdict(v) for v in obj]
    if isinstance(obj, tuple):
        return type(obj)(small_asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {small_asdict(k): small_asdict(v) for k, v in obj.items()}
    return obj


# Our own also where the full standard library is there: dataclasses imports inspect (ast, dis, tokenize),
# a megabyte of the daemon's memory, and python3-minimal does not have it.
dataclass, field, dataclass_replace = small_dataclass, small_field, small_replace


class _SharedEmptyList(list):
    """The one empty list that the empty list fields of a parsed model share (a vrrp_instance has ten such
    fields, mostly empty: 0.7 KB an instance). Read-only: a change is an error, not a change of every model."""

    __slots__ = ()

    def _read_only(self, *_args: Any) -> Any:
        raise TypeError("a shared empty list is read-only: give the field a list of its own")

    append = extend = insert = remove = pop = clear = sort = reverse = _read_only
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only


_EMPTY_LIST = _SharedEmptyList()


class _LeanInterface:
    """An ipaddress interface without the network object ipaddress builds for each one (with a dict and, for a
    /32 or /128, a `hosts` lambda: 0.5 KB an interface, and a VRRP instance has two for each VIP, the config's
    and the kernel address cache's). Its network, netmask and hostmask are made when asked for; it compares and
    hashes as the ipaddress interface it stands for, and shows as one."""

    __slots__ = ()
    _standard: Any  # the ipaddress class: IPv4Interface, IPv6Interface
    _network_class: Any

    def __init__(self, address: Any):
        addr, mask = self._split_addr_prefix(address)  # type: ignore[attr-defined]
        self._standard.__mro__[1].__init__(self, addr)  # IPv4Address / IPv6Address
        self._prefixlen = self._make_netmask(mask)[1]  # type: ignore[attr-defined]
        self._address: Any = None

    @property
    def ip(self) -> Any:
        """The address alone, made once: the instances on an interface all hold its address as their source."""
        if self._address is None:
            self._address = self._standard.__mro__[1](self._ip)  # type: ignore[attr-defined]
        return self._address

    @property
    def network(self) -> Any:
        scope = getattr(self, "_scope_id", None)
        addr = self._ip if scope is None else f"{self._string_from_ip_int(self._ip)}%{scope}"  # type: ignore
        return self._network_class((addr, self._prefixlen), strict=False)  # type: ignore[attr-defined]

    @property
    def netmask(self) -> Any:
        return self._make_netmask(self._prefixlen)[0]  # type: ignore[attr-defined]

    @property
    def hostmask(self) -> Any:
        return self.network.hostmask

    def __eq__(self, other: Any) -> Any:
        equal = self._standard.__mro__[1].__eq__(self, other)  # the address and, for IPv6, its scope
        if equal is NotImplemented or not equal:
            return equal
        # equal addresses have equal networks when the prefixes are: no network needs to be made
        return isinstance(other, _INTERFACE_TYPES) and self._prefixlen == other._prefixlen  # type: ignore

    def __hash__(self) -> int:
        return hash((self._ip, self._prefixlen, self._ip & int(self.netmask)))  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{self._standard.__name__}({str(self)!r})"


class _LeanIPv4Interface(_LeanInterface, ipaddress.IPv4Interface):
    __slots__ = ("_prefixlen", "_address")
    _standard, _network_class = ipaddress.IPv4Interface, ipaddress.IPv4Network


class _LeanIPv6Interface(_LeanInterface, ipaddress.IPv6Interface):
    __slots__ = ("_prefixlen", "_address")
    _standard, _network_class = ipaddress.IPv6Interface, ipaddress.IPv6Network


_INTERFACE_TYPES = (ipaddress.IPv4Interface, ipaddress.IPv6Interface)


def ip_interface(address: Any) -> IPInterface:
    """ipaddress.ip_interface for what is kept per VIP and per kernel address (_LeanInterface); same errors."""
    for kind in (_LeanIPv4Interface, _LeanIPv6Interface):
        try:
            return kind(address)  # type: ignore[return-value]
        except (ipaddress.AddressValueError, ipaddress.NetmaskValueError):
            pass
    raise ValueError(f"{address!r} does not appear to be an IPv4 or IPv6 interface")


def own_list(obj: Any, name: str) -> List[Any]:
    """The list field `name` of `obj`, made a list of its own first if it is the shared empty one."""
    value = getattr(obj, name)
    if value is _EMPTY_LIST:
        value = []
        setattr(obj, name, value)
    return value


def share_empty_lists(obj: Any) -> None:
    """Point each empty list field of a small_dataclass at _EMPTY_LIST: where that is the field's default, the
    object then holds nothing for it."""
    for name, f in type(obj)._small_fields.items():
        if f.default_factory is list or f.default is _EMPTY_LIST:
            value = getattr(obj, name)
            if value.__class__ is list and not value:
                if f.default is _EMPTY_LIST:
                    delattr(obj, name)
                else:
                    setattr(obj, name, _EMPTY_LIST)


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


_AUTH_TYPES = {a.value: a for a in AuthType}


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
class LvsSyncDaemon:
    """`lvs_sync_daemon IFNAME [inst VRRP_INSTANCE] [id SYNCID] [maxlen N] [port N] [ttl N] [group IP]`: the
    kernel's IPVS connection sync daemon. With an instance it is the master daemon while that instance is MASTER
    and the backup daemon otherwise; without one, both run all the time."""

    ifname: str
    instance: Optional[str] = None
    syncid: Optional[int] = None  # None: the instance's VRID (0 without an instance)
    maxlen: int = 0  # 0: the kernel's defaults
    port: int = 0
    ttl: int = 0
    group: Optional[IPAddress] = None
    file: str = ""
    line: int = 0


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
    nftables: Optional[str] = None  # the no_accept table's name (keepalived's `nftables NAME`); None: vrrpd
    nftables_priority: int = -1  # its chains' hook priority, keepalived's default -1
    nftables_counters: bool = False  # a counter on each drop rule
    nftables_ifindex: bool = False  # link-local VIPs matched with their interface's index, not its name
    disable_local_igmp: bool = False  # igmp_link_local_mcast_reports 0 while running (keepalived's)
    linkbeat_use_polling: bool = False  # every instance's interface: poll its carrier, ignore netlink's
    process_monitor_rcv_bufs: int = 0  # SO_RCVBUF of track_process's proc-connector socket; 0: the default
    process_monitor_rcv_bufs_force: bool = False  # SO_RCVBUFFORCE instead
    vrrp_netlink_cmd_rcv_bufs: int = 0  # SO_RCVBUF of the rtnetlink request socket; 0: vrrpd's default
    vrrp_netlink_cmd_rcv_bufs_force: bool = False  # SO_RCVBUFFORCE instead (past net.core.rmem_max)
    vrrp_netlink_monitor_rcv_bufs: int = 0  # the same for the socket of link/address/route events
    vrrp_netlink_monitor_rcv_bufs_force: bool = False
    vrrp_rx_bufs_policy: str = ""  # what a VRRP socket's receive buffer grows by per instance: MTU, ADVERT
    vrrp_rx_bufs_size: int = 0  # ... or this many bytes (vrrp_rx_bufs_policy SIZE)
    vrrp_rx_bufs_multiplier: int = 3  # MTU or ADVERT times this
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
    log_unknown_vrids: bool = False  # also: the kernel filter keeps adverts of VRIDs no instance has
    vrrp_down_timer_adverts: int = 3
    vrrp_garp_extra_if: float = 0.0
    vrrp_garp_extra_if_all: bool = False
    vrrp_startup_delay: float = 0.0
    vrrp_delay_after_boot: float = 0.0  # keepalived 2.4: start no earlier than this long after boot
    vrrp_owner_ignore_adverts: bool = False
    v3_checksum_as_v2: bool = False
    script_user: Optional[str] = None
    script_group: Optional[str] = None
    enable_script_security: bool = False
    default_interface: str = "eth0"  # static_ipaddress without `dev`
    # vrrpd always follows interfaces created, deleted and re-created after it started (keepalived only with this)
    dynamic_interfaces: bool = False
    # several daemons on one host: `instance NAME` and `net_namespace NAME` name the runtime files
    instance_name: Optional[str] = None
    net_namespace: Optional[str] = None
    net_namespace_ipvs: Optional[str] = None  # IPVS (and only IPVS) in this named namespace; "": the init one
    use_pid_dir: bool = False
    data_use_instance: bool = False
    state_dump_file: Optional[str] = None  # where SIGUSR1 writes the .data dump (keepalived's rules)
    # where SIGUSR2 and SIGRTMIN+2 write .stats and .json, by state_dump_file's rules (keepalived 2.4.3 parses
    # these two and still writes $TMPDIR/keepalived.stats and .json: vrrpd does what they say)
    stats_dump_file: Optional[str] = None
    json_dump_file: Optional[str] = None
    json_version: Optional[int] = None  # 1|2: the JSON dump in keepalived's layout of that version; None: vrrpd's
    # reload: reload_check_config LOG_FILE (the new file's problems are written there; "/dev/null" when bare),
    # reload_file (there while the files are read; "" means the default next to the pid file),
    # reload_time_file (a reload at the time it holds) and reload_repeat (keep the file: every day at that time),
    # config_save_dir (the configuration read, and the state before and after each reload)
    reload_check_config: Optional[str] = None
    reload_file: Optional[str] = None
    reload_time_file: Optional[str] = None
    reload_repeat: bool = False
    config_save_dir: Optional[str] = None
    startup_script: Optional[Command] = None  # run (and waited for) before VRRP and the checkers start
    startup_script_timeout: float = 10.0
    shutdown_script: Optional[Command] = None  # run after everything stopped
    shutdown_script_timeout: float = 10.0
    fifo_write_vrrp_states_on_reload: bool = False
    umask: Optional[int] = None  # the daemon's umask (pid file, FIFOs); None: 022 when forking, inherited with -n
    vmac_prefix: str = "vrrp"  # use_vmac without a name: PREFIX.VRID
    vmac_addr_prefix: Optional[str] = None  # the VMACs of use_vmac_addr / a VIP's use_vmac; None: vmac_prefix
    iproute_etc_dir: str = "/etc/iproute2"  # where rt_tables, rt_protos... names are read
    iproute_usr_dir: str = "/usr/share/iproute2"
    notify_fifo: Optional[str] = None
    vrrp_notify_fifo: Optional[str] = None
    lvs_notify_fifo: Optional[str] = None
    # a program keepalived starts to read each FIFO: its words, then the FIFO's path
    notify_fifo_script: Optional[Command] = None
    vrrp_notify_fifo_script: Optional[Command] = None
    lvs_notify_fifo_script: Optional[Command] = None
    vrrp_notify_priority_changes: bool = False
    lvs_flush: bool = False
    lvs_flush_on_stop: bool = False
    checker_log_all_failures: bool = False  # every checker logs every failure (its log_all_failures)
    no_checker_emails: bool = False  # mail only when a real server goes up or down, not for each checker
    rs_init_notifies: bool = False  # real servers up at start run notify_up and write the FIFO
    lvs_timeouts: Dict[str, int] = field(default_factory=dict)
    lvs_sync_daemon: Optional[LvsSyncDaemon] = None
    # nftables_ipvs [TABLE]: a virtual_server group without fwmark entries becomes one fwmark service per protocol,
    # its addresses and ports marked by an nftables map in TABLE (keepalived's check_nftables.c)
    nftables_ipvs: Optional[str] = None
    nftables_ipvs_priority: int = -1
    nftables_ipvs_start_fwmark: int = 1000
    # vrrpd extension: a stopping MASTER keeps its VIPs until the new master is heard.
    vrrp_handover_on_stop: bool = False
    # vrrpd extension: serve Prometheus metrics over HTTP on this ADDRESS:PORT (also --metrics)
    metrics_listen: Optional[str] = None
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
    use_vmac: bool = False  # on a VMAC of its own interface (keepalived's per-address use_vmac)
    track_group: Optional[str] = None  # static_ipaddress: the track_group whose instances track its interface
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
class Nexthop:
    """One `nexthop` of a multipath route (keepalived's nexthop_t)."""

    via: Optional[IPAddress] = None
    dev: Optional[str] = None
    weight: int = 1
    onlink: bool = False
    realms: Optional[int] = None


@dataclass
class Route:
    """One line of `virtual_routes` / `static_routes`, typed (keepalived's ip_route_t).

    Equality ignores where the line was written: a reload compares routes by what reaches the kernel."""

    family: int = 4
    dst: Optional[IPInterface] = None  # host bits kept, as keepalived keeps them
    type: int = 1  # RTN_UNICAST
    type_given: bool = False
    table: int = 254  # RT_TABLE_MAIN
    protocol: int = 18  # RTPROT_KEEPALIVED
    scope: int = 0
    scope_given: bool = False
    src: Optional[IPInterface] = None  # `from PREFIX` (IPv6 source-specific route)
    prefsrc: Optional[IPAddress] = None  # `src ADDR`
    via: Optional[IPAddress] = None
    dev: Optional[str] = None
    metric: Optional[int] = None
    tos: Optional[int] = None
    onlink: bool = False
    metrics: Dict[int, int] = field(default_factory=dict)  # RTAX_* -> value (RTAX_LOCK is a bit mask)
    congctl: Optional[str] = None
    realms: Optional[int] = None
    expires: Optional[int] = None
    pref: Optional[int] = None
    ttl_propagate: Optional[int] = None
    nexthops: List[Nexthop] = field(default_factory=list)
    mode: str = "prepend"  # add / prepend / append: NLM_F_EXCL / - / NLM_F_APPEND
    no_track: bool = False
    track_group: Optional[str] = None
    text: str = field(default="", compare=False)
    file: str = field(default="", compare=False, repr=False)
    line: int = field(default=0, compare=False, repr=False)

    def __str__(self) -> str:
        return self.text


@dataclass
class Rule:
    """One line of `virtual_rules` / `static_rules`, typed (keepalived's ip_rule_t)."""

    family: int = 4
    src: Optional[IPInterface] = None  # from
    dst: Optional[IPInterface] = None  # to
    invert: bool = False
    priority: Optional[int] = None
    action: int = 0  # FR_ACT_*
    table: int = 0
    goto: Optional[int] = None
    l3mdev: bool = False
    tos: int = 0
    fwmark: Optional[int] = None
    fwmask: Optional[int] = None
    realms: Optional[int] = None
    suppress_prefixlen: Optional[int] = None
    suppress_ifgroup: Optional[int] = None
    iif: Optional[str] = None
    oif: Optional[str] = None
    tun_id: Optional[int] = None
    uidrange: Optional[Tuple[int, int]] = None
    protocol: Optional[int] = None
    ipproto: Optional[int] = None
    sport: Optional[Tuple[int, int]] = None
    dport: Optional[Tuple[int, int]] = None
    no_track: bool = False
    track_group: Optional[str] = None
    text: str = field(default="", compare=False)
    file: str = field(default="", compare=False, repr=False)
    line: int = field(default=0, compare=False, repr=False)

    def __str__(self) -> str:
        return self.text


@dataclass
class AuthHmacConfig:
    """keepalived 2.4's `auth_hmac { ... }` of a vrrp_instance: HMAC-SHA256 trailers on adverts."""

    keys: Dict[int, bytes] = field(default_factory=dict)  # key id 1..255 -> 32..64 key bytes
    active_key: int = 0  # 0: unset, which disables the extension
    anti_replay: str = "time"  # time | monotonic
    time_window: Optional[int] = None  # None: max(3 x advert_int in whole seconds, 5), at most 300
    mode: str = "enforce"  # enforce | permissive | receive-only
    line: int = 0


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
    # the list fields start as the one read-only empty list, a class attribute like the other defaults: the
    # parser gives a field a list of its own when it has something to put in it (own_list)
    virtual_ipaddress: List[VirtualIP] = _EMPTY_LIST
    virtual_ipaddress_excluded: List[VirtualIP] = _EMPTY_LIST
    virtual_routes: List[Route] = _EMPTY_LIST  # installed while MASTER
    virtual_rules: List[Rule] = _EMPTY_LIST
    track_interface: List[TrackRef] = _EMPTY_LIST
    track_script: List[TrackRef] = _EMPTY_LIST
    track_file: List[TrackRef] = _EMPTY_LIST
    track_process: List[TrackRef] = _EMPTY_LIST
    track_bfd: List[TrackRef] = _EMPTY_LIST
    unicast_src_ip: Optional[IPAddress] = None
    unicast_peer: List[UnicastPeer] = _EMPTY_LIST
    unicast_ttl: int = 255
    mcast_src_ip: Optional[IPAddress] = None
    mcast_dst_ip: Optional[IPAddress] = None  # None: the global vrrp_mcast_group4/6
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
    use_vmac_addr: bool = False  # a VMAC for each VIP on another interface, or of the other family
    vrf: Optional[str] = None  # a unicast instance without `interface`: its sockets are bound to this VRF
    use_ipvlan: bool = False  # an L2 ipvlan (the interface's MAC) instead of the VMAC macvlan; named by vmac_name
    ipvlan_addr: Optional[IPInterface] = None  # its own address, the adverts' source (IPv4 needs one)
    ipvlan_flags: int = 0  # IFLA_IPVLAN_FLAGS: 0 bridge, 1 private, 2 vepa
    vmac_name: Optional[str] = None
    vmac_xmit_base: bool = False
    native_ipv6: bool = False
    accept: Optional[bool] = None  # None: keepalived's default (accept unless strict)
    skip_check_adv_addr: Optional[bool] = None
    strict_mode: Optional[bool] = None
    lower_prio_no_advert: Optional[bool] = None
    higher_prio_send_advert: Optional[bool] = None
    dont_track_primary: bool = False
    down_timer_adverts: Optional[int] = None  # None: global vrrp_down_timer_adverts (3)
    check_unicast_src: bool = False
    promote_secondaries: bool = False
    kernel_rx_buf_size: int = 0
    linkbeat_use_polling: bool = False  # deprecated here (keepalived says so) but acted upon
    old_unicast_checksum: Optional[str] = None  # "config" (always), "never"; None: switch if the peer does
    debug: int = 0  # keepalived only writes it to the data dump ("Debug level = N"), and so does vrrpd
    track_src_ip: bool = False
    unicast_fault_no_peer: bool = False
    no_virtual_ipaddress: bool = False
    notify_priority_changes: Optional[bool] = None  # None: the sync group's, else vrrp_notify_priority_changes
    garp_extra_if: Optional[float] = None  # None: global vrrp_garp_extra_if; 0: off
    garp_extra_if_all: bool = False
    v3_checksum_as_v2: Optional[bool] = None
    owner_ignore_adverts: Optional[bool] = None  # None: strict_mode ? True : vrrp_owner_ignore_adverts (at 255)
    timer_expired_backup: Optional[int] = None  # P: the highest priority of the other routers (needs nopreempt)
    auth_hmac: Optional[AuthHmacConfig] = None
    sync_group: Optional[str] = None  # filled from vrrp_sync_group

    @property
    def family(self) -> int:
        """4 or 6, from the first VIP (IPv4 when there is none)."""
        if self.virtual_ipaddress:
            return self.virtual_ipaddress[0].address.version
        return 4


@dataclass
class BfdInstance:
    """A `bfd_instance NAME { ... }`: one BFD session (RFC 5880) with a neighbour; times in milliseconds."""

    name: str
    file: str = ""
    line: int = 0
    neighbor_ip: Optional[IPAddress] = None
    source_ip: Optional[IPAddress] = None
    min_rx: float = 10.0  # Required Min RX Interval
    min_tx: float = 10.0  # Desired Min TX Interval while Up
    idle_tx: float = 1000.0  # Desired Min TX Interval while not Up (RFC 5880's slow rate)
    multiplier: int = 5
    passive: bool = False
    ttl: Optional[int] = None  # outgoing TTL/hop limit; None: 255 for IPv4, 64 for IPv6 (keepalived)
    max_hops: int = 0  # accept rx_ttl + max_hops >= ttl; 255 disables the check
    multihop: bool = False  # UDP 4784 (RFC 5883) instead of 3784
    weight: int = 0  # the default weight of track_bfd
    weight_reverse: bool = False
    to_vrrp: bool = True  # keepalived's `vrrp` / `checker`: who hears its events (both unless one is named)
    to_checker: bool = True

    @property
    def out_ttl(self) -> int:
        if self.ttl is not None:
            return self.ttl
        return 64 if self.neighbor_ip is not None and self.neighbor_ip.version == 6 else 255


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
    fork_delay: Optional[float] = None  # None: `delay`; how long a gained quorum must last to count
    terminate_delay: Optional[float] = None  # None: `delay`; how long a lost quorum must last to count
    full_command: bool = False


@dataclass
class GarpGroup:
    """`garp_group { garp_interval S gna_interval S interface IF | interfaces { IF ... } }`: the gratuitous ARPs
    (IPv4) and unsolicited NAs (IPv6) sent on these interfaces, by every instance together, are at least this far
    apart; the interfaces of one group share the spacing (keepalived's garp_delay). None: the global value."""

    garp_interval: Optional[float] = None
    gna_interval: Optional[float] = None
    interfaces: List[str] = field(default_factory=list)
    file: str = ""
    line: int = 0


@dataclass
class TrackGroup:
    """`track_group NAME { group { VI_1 ... } }`: instances that track the interfaces of the static addresses,
    routes and rules naming this group (FAULT while one is down)."""

    name: str
    group: List[str] = field(default_factory=list)
    file: str = ""
    line: int = 0


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
    track_bfd: List[TrackRef] = field(default_factory=list)
    notify_master: Optional[Command] = None
    notify_backup: Optional[Command] = None
    notify_fault: Optional[Command] = None
    notify_stop: Optional[Command] = None
    notify: Optional[Command] = None
    smtp_alert: Optional[bool] = None
    notify_priority_changes: Optional[bool] = None
    sync_group_tracking_weight: bool = False  # members keep their tracking weights (global_tracking, deprecated)


@dataclass
class UrlCheck:
    path: str = "/"
    digest: Optional[str] = None  # lower-case hex MD5 of the body
    status_code: List[Tuple[int, int]] = field(default_factory=list)  # ranges; empty: 200-299
    virtualhost: Optional[str] = None
    # keepalived's regex check (PCRE2 there, Python's re here): the body must match (or, with regex_no_match, must
    # not), the match starting at offset regex_min_offset .. regex_max_offset
    regex: Optional[str] = None
    regex_options: List[str] = field(default_factory=list)
    regex_no_match: bool = False
    regex_min_offset: int = 0
    regex_max_offset: Optional[int] = None
    regex_stack: Optional[Tuple[int, int]] = None  # PCRE2's JIT stack (start, max): Python's re needs none
    tls_compliant: bool = False  # SSL_GET: end the TLS session with close_notify


@dataclass
class Checker:
    """One health checker of a real server: TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, SMTP_CHECK, DNS_CHECK,
    UDP_CHECK, PING_CHECK, FILE_CHECK, BFD_CHECK."""

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
    bind_if: Optional[str] = None  # SO_BINDTODEVICE: the connection leaves by this interface only
    fwmark: int = 0  # SO_MARK: policy routing (ip rule fwmark) and nftables see the checker's packets marked
    # HTTP_GET / SSL_GET
    urls: List[UrlCheck] = field(default_factory=list)
    virtualhost: Optional[str] = None
    http_protocol: str = "1.0"
    enable_sni: bool = True
    sni_name: Optional[str] = None
    tls_compliant: bool = False  # SSL_GET: end each TLS session with close_notify (keepalived: quiet shutdown)
    fast_recovery: bool = False  # vrrpd checks every url in one attempt: what fast_recovery makes keepalived do
    # MISC_CHECK
    misc_path: Optional[Command] = None
    misc_timeout: Optional[float] = None
    misc_dynamic: bool = False
    user: Optional[str] = None
    # SMTP_CHECK
    helo_name: Optional[str] = None
    hosts: List[Checker] = field(default_factory=list)  # deprecated `host { }` blocks: one more checker each
    # DNS_CHECK
    dns_type: str = "SOA"
    dns_name: str = "."
    # BFD_CHECK: the bfd_instance whose session decides
    bfd_name: Optional[str] = None
    # UDP_CHECK: None payload: keepalived's 32-byte pattern; reply: required data, with a nibble mask
    payload: Optional[bytes] = None
    require_reply: bool = False
    reply_data: Optional[bytes] = None
    reply_mask: Optional[bytes] = None
    min_reply_length: int = 0
    max_reply_length: int = 255
    # FILE_CHECK: a top-level track_file whose value decides (weight 0) or moves the real server's weight
    track_file: Optional[str] = None
    file_weight: Optional[int] = None  # None: the track_file's own weight
    file_weight_reverse: bool = False


@dataclass
class RealServer:
    address: IPAddress
    port: Optional[int] = None
    line: int = 0
    weight: int = 1  # without its own `weight`, the virtual server's `weight` (keepalived's default weight)
    weight_set: bool = False  # the real server said `weight`
    lb_kind: Optional[LbKind] = None  # None: the virtual server's (and its tunnel settings)
    tunnel_type: Optional[str] = None  # `lvs_method TUN type ipip|gue|gre [port N] [nocsum|csum|remcsum]`
    tunnel_port: Optional[int] = None
    tunnel_csum: Optional[str] = None
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
    weight: int = 1  # the weight of its real servers that do not say theirs
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
class SslConfig:
    """The top-level `SSL` block: the client side of every SSL_GET (keepalived's one SSL context)."""

    password: Optional[str] = None  # of the key
    ca: Optional[str] = None  # loaded, not verified against (keepalived sets no verify mode)
    certificate: Optional[str] = None  # the client certificate chain, offered when the server asks
    key: Optional[str] = None


@dataclass
class Config:
    """Everything one configuration file (with its includes) says."""

    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    vrrp_instances: List[VrrpInstance] = field(default_factory=list)
    vrrp_scripts: Dict[str, VrrpScript] = field(default_factory=dict)
    track_files: Dict[str, TrackFile] = field(default_factory=dict)
    track_processes: Dict[str, TrackProcess] = field(default_factory=dict)
    bfd_instances: Dict[str, BfdInstance] = field(default_factory=dict)
    sync_groups: List[SyncGroup] = field(default_factory=list)
    virtual_server_groups: Dict[str, VirtualServerGroup] = field(default_factory=dict)
    virtual_servers: List[VirtualServer] = field(default_factory=list)
    # installed at start whatever the VRRP states, removed at stop
    static_ipaddress: List[VirtualIP] = field(default_factory=list)
    static_routes: List[Route] = field(default_factory=list)
    static_rules: List[Rule] = field(default_factory=list)
    track_groups: Dict[str, TrackGroup] = field(default_factory=dict)
    ssl: Optional[SslConfig] = None  # the top-level SSL block (SSL_GET's client certificate)
    # interface_up_down_delays: interface -> (down delay, up delay) in seconds, before a carrier change counts
    if_up_down_delays: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    garp_groups: List[GarpGroup] = field(default_factory=list)
    linkbeat_interfaces: Dict[str, str] = field(default_factory=dict)  # polled interface -> MII/ETHTOOL/IOCTL or ""
    files: List[str] = field(default_factory=list)  # every file read, includes too
    config_id: str = ""  # the id `@ID` lines were selected with (keepalived's -i; default: short host name)
    # keywords read but not acted upon by vrrpd, as "FILE:LINE: keyword" (for --check)
    accepted_only: List[str] = field(default_factory=list)


# ============================================================================================
# 3. Configuration parser
# ============================================================================================

# --------------------------------------------------------------------------------------------
# 3.1 Lexer: physical lines -> logical lines -> tokens. Handles comments, quotes, braces,
#     line continuation, `$NAME=value` parameters, `@id` conditional lines and `include`.
# --------------------------------------------------------------------------------------------


class Token:
    """One word of the configuration, with where it came from, as the parser reads it from the _Tokens.

    `lid` numbers logical lines across all files, so "same line" is one integer comparison. A quoted word
    is a QuotedToken."""

    __slots__ = ("text", "file", "line", "lid")
    quoted = False

    def __init__(self, text: str, file: str, line: int, lid: int):
        self.text = text
        self.file = file
        self.line = line
        self.lid = lid

    def is_brace(self, brace: str) -> bool:
        return self.text == brace and not self.quoted

    def __repr__(self) -> str:
        return f"Token({self.text!r}, {self.file}:{self.line})"


class QuotedToken(Token):
    """A word written in double quotes: never a keyword or a brace."""

    __slots__ = ()
    quoted = True


class _Tokens:
    """Every token of a configuration in a compact form, a Token made only when the parser reads one.

    Per token, its word (one shared string per distinct word), its logical line and whether it was quoted; per
    logical line, its file and line number: about 17 bytes a token, where a Token object, its place in a list and
    its two numbers were about 100.
    A thousand instances are some 20,000 tokens, and the memory they took as objects stayed in the daemon's
    resident memory after the parse: the small-object allocator keeps every page it has used once a few live
    objects share it."""

    __slots__ = ("texts", "lids", "quoted", "lines", "file_of", "files", "file_index")

    def __init__(self) -> None:
        self.texts: List[str] = []
        self.lids = array.array("I")
        self.quoted = bytearray()
        self.lines = array.array("I", [0])  # by lid; lid 0 is before the first line
        self.file_of = array.array("I", [0])
        self.files: List[str] = [""]
        self.file_index: Dict[str, int] = {}

    def new_line(self, file: str, line: int) -> int:
        """The lid of a new logical line, at `line` of `file`."""
        index = self.file_index.get(file)
        if index is None:
            index = self.file_index[file] = len(self.files)
            self.files.append(file)
        self.lines.append(line)
        self.file_of.append(index)
        return len(self.lines) - 1

    def add(self, text: str, lid: int, quoted: bool = False) -> None:
        self.texts.append(text)
        self.lids.append(lid)
        self.quoted.append(quoted)

    def add_words(self, words: List[str], lid: int) -> None:
        """The unquoted words of one logical line."""
        self.texts.extend(words)
        self.lids.extend([lid] * len(words))
        self.quoted.extend(bytes(len(words)))

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> Token:
        lid = self.lids[i]
        return (QuotedToken if self.quoted[i] else Token)(self.texts[i], self.files[self.file_of[lid]],
                                                          self.lines[lid], lid)

    def keyword_at(self, text: str, lid: int) -> Token:
        """The keyword `text` as it was read on logical line `lid` (see _Parser.where)."""
        return Token(text, self.files[self.file_of[lid]], self.lines[lid], lid)

    def is_brace(self, i: int, brace: str) -> bool:
        return self.texts[i] == brace and not self.quoted[i]


_WORD_RE = re.compile(r"""[ \t\r\f\v]+|([!#].*)|([{}])|((?:\\.|\\$|[^\s{}"!#\\]|"(?:[^"\\]|\\.)*(?:"|\\?$))+)""")
_QUOTE_RE = re.compile(r'\\.|"')
_PARAM_DEF_RE = re.compile(r"\s*\$([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# `${NAME}`, `${NAME ARGS}` (builtins such as `${_RANDOM 1 9}`), or `$NAME` ending at a blank, ',', ')' or
# the end of the line (keepalived leaves `$NAME.x` alone)
_PARAM_USE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?:[ \t]+[^}]*)?)\}|\$([A-Za-z_][A-Za-z0-9_]*)(?=[ \t,)]|$)")
_REPEAT_RE = re.compile(r"~(SEQx|SEQ|LST)[ \t]*\(([^)]*)\)(.*)$")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_MAX_REPEAT = 100000
_SLOW_CHARS_RE = re.compile(r'["\\!#]')
_INCLUDE_WORDS = frozenset(("include", "includer", "includem", "includew", "includeb", "includea"))
_MAX_INCLUDE_DEPTH = 32
_MAX_FILE_SIZE = 64 << 20
_MAX_SUBSTITUTIONS = 32
_BUILTIN_PARAMS = {"_HASH": "\\#", "_BANG": "\\!"}


# include checks (keepalived's include_check and the include variants): what makes a problem of an include an error
INCLUDE_READ, INCLUDE_MATCH, INCLUDE_WILDCARD, INCLUDE_BRACE = 1, 2, 4, 8
INCLUDE_ALL = INCLUDE_READ | INCLUDE_MATCH | INCLUDE_WILDCARD | INCLUDE_BRACE
_INCLUDE_CHECK_WORDS = {"read": INCLUDE_READ, "readable": INCLUDE_READ, "match": INCLUDE_MATCH,
                        "wildcard_match": INCLUDE_WILDCARD, "brace_match": INCLUDE_BRACE}
_INCLUDE_KINDS = {"include": 0, "includer": INCLUDE_READ, "includem": INCLUDE_READ | INCLUDE_MATCH,
                  "includew": INCLUDE_READ | INCLUDE_MATCH | INCLUDE_WILDCARD,
                  "includeb": INCLUDE_READ | INCLUDE_BRACE, "includea": INCLUDE_ALL}


def include_check_flags(words: List[str], current: int) -> Tuple[int, List[str]]:
    """`include_check [[+|-]read|match|wildcard_match|brace_match]...` -> (checks, problems), as keepalived's
    include_check_set: no word means every check, a plain word sets (with read), +/- add and remove. The man page's
    `readable` is taken for keepalived's `read`."""
    if not words:
        return INCLUDE_ALL, []
    flags, problems = current, []
    for i, word in enumerate(words):
        sign, name = (word[0], word[1:]) if word[:1] in "+-" else ("", word)
        if not sign:
            if i:
                problems.append(f"Duplicate include_check '{word}' specified - ignoring")
                continue
            flags = 0
        bit = _INCLUDE_CHECK_WORDS.get(name)
        if bit is None:
            problems.append(f"Unknown include_check type '{name}' - ignoring")
            continue
        flags = (INCLUDE_READ | bit) if not sign else (flags | bit) if sign == "+" else (flags & ~bit)
    return flags, problems


def _expand_braces(pattern: str) -> List[str]:
    """csh-style `{a,b}` expansion as keepalived's include does (no nesting across commas)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", pattern)
    if not m:
        return [pattern]
    out: List[str] = []
    for alt in m.group(1).split(","):
        out.extend(_expand_braces(pattern[: m.start()] + alt + pattern[m.end():]))
    return out


class _Lexer:
    """Turns files into one token list; problems become Diagnostics, never exceptions."""

    def __init__(self, diags: List[Diagnostic], config_id: Optional[str] = None):
        self.diags = diags
        self.tokens = _Tokens()
        # one string per distinct word: a thousand instances repeat `state`, `MASTER`, `{`...
        self.words: Dict[str, str] = {}
        self.params: Dict[str, str] = {}
        self.files: List[str] = []
        self.stack: List[str] = []
        self.config_id = config_id if config_id is not None else socket.gethostname().split(".")[0]
        self.include_check = 0  # global_defs' include_check, as far as read; each file restores it at its end

    def error(self, file: str, line: int, message: str, hint: str = "") -> None:
        self.diags.append(Diagnostic(file, line, Severity.ERROR, message, hint))

    def warning(self, file: str, line: int, message: str, hint: str = "") -> None:
        self.diags.append(Diagnostic(file, line, Severity.WARNING, message, hint))

    def read_file(self, path: str, file: str = "", line: int = 0) -> None:
        """Lex the file at `path`; an unreadable file is an error at the including line."""
        real = os.path.realpath(path)
        if real in self.stack:
            self.error(file or path, line, f"include loop: '{path}' is already being read", "remove the include")
            return
        if len(self.stack) >= _MAX_INCLUDE_DEPTH:
            self.error(file or path, line, f"includes nested deeper than {_MAX_INCLUDE_DEPTH} levels at '{path}'")
            return
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    self.error(file or path, line, f"'{path}' is not a regular file")
                    return
                data = fh.read(_MAX_FILE_SIZE + 1)
            if len(data) > _MAX_FILE_SIZE:
                self.error(file or path, line, f"'{path}' is larger than {_MAX_FILE_SIZE >> 20} MiB")
                return
        except OSError as exc:
            self.error(file or path, line, f"cannot read configuration file '{path}': {exc.strerror or exc}")
            return
        text = data.decode("utf-8", errors="replace")
        self.stack.append(real)
        saved_check = self.include_check  # keepalived: an included file cannot change its includer's checks
        try:
            self.lex_text(text, path)
        finally:
            self.stack.pop()
            self.include_check = saved_check

    def lex_text(self, text: str, file: str) -> None:
        """Append the tokens of `text` (the contents of `file`) to self.tokens."""
        if file not in self.files:
            self.files.append(file)
        if "\0" in text:
            text = text.replace("\0", " ")
        # features absent from the whole text cost nothing per line
        has_backslash = "\\" in text
        special = "$" in text or "@" in text or "include" in text or "~" in text
        slow_chars = _SLOW_CHARS_RE.search
        tokens = self.tokens
        words_of = self.words.setdefault
        src = _SourceLines(text)
        while src.more():
            line = src.next()
            line_no = src.i
            # vrrpd extension: a trailing backslash joins the next line (not in comments, and not in a
            # parameter definition, where keepalived's own multi-line form applies)
            if has_backslash and line.endswith("\\") and not _is_comment_line(line) \
                    and not _PARAM_DEF_RE.match(_strip_condition(line)):
                while line.endswith("\\") and not line.endswith("\\\\") and src.more():
                    line = line[:-1] + " " + src.next()
            if special:
                self.logical(line, file, line_no, src, 0)
            elif slow_chars(line) is None:
                if "{" in line or "}" in line:
                    line = line.replace("{", " { ").replace("}", " } ")
                words = line.split()
                if words:
                    tokens.add_words([words_of(w, w) for w in words], tokens.new_line(file, line_no))
            else:
                self.split_line(line, file, line_no)

    def logical(self, line: str, file: str, line_no: int, src: Optional[_SourceLines], depth: int) -> None:
        """One line as keepalived's read_line sees it: `@ID` condition first, then a `$NAME=` definition,
        then `~SEQ`/`~LST` repetition, then `$NAME` substitution (whose result is read again), then include."""
        stripped = line.lstrip()
        if not stripped or stripped[0] in "!#":
            return
        if depth > _MAX_SUBSTITUTIONS or len(stripped) > 1_000_000:
            self.error(file, line_no, "parameter substitution does not terminate (a $NAME refers to itself?)")
            return
        if stripped[0] == "@":
            cond, rest = (stripped[1:].split(None, 1) + [""])[:2]
            keep = (cond[1:] != self.config_id) if cond.startswith("^") else (cond == self.config_id)
            if not keep:
                return
            stripped = rest.lstrip()
            if not stripped or stripped[0] in "!#":
                return
        if stripped[0] == "$":
            m = _PARAM_DEF_RE.match(stripped)
            if m:
                self.define(m.group(1), _strip_comment(m.group(2)).strip(), src)
                return
        if stripped[0] == "~" and stripped[1:4] in ("SEQ", "LST"):
            self.repeat(stripped, file, line_no, src, depth)
            return
        if "$" in stripped and (self.params or "$_" in stripped or "${_" in stripped):
            new, more = self.substitute(stripped, file, line_no)
            if new != stripped or more:
                self.logical(new, file, line_no, src, depth + 1)
                for extra in more:
                    self.logical(extra, file, line_no, src, depth + 1)
                return
        first = stripped.split(None, 1)[0]
        if first in _INCLUDE_WORDS:
            self.tokens.new_line(file, line_no)  # what follows the include is not on its line
            self.include(first, _strip_comment(stripped[len(first):]).split(), file, line_no)
            return
        if first == "include_check":  # it applies to the includes read after it (the parser checks its words)
            self.include_check = include_check_flags(_strip_comment(stripped).split()[1:], self.include_check)[0]
        self.emit(stripped, file, line_no)

    def emit(self, line: str, file: str, line_no: int) -> None:
        """The tokens of one logical line (plain lines take the fast path)."""
        if _SLOW_CHARS_RE.search(line) is None:
            if "{" in line or "}" in line:
                line = line.replace("{", " { ").replace("}", " } ")
            words = line.split()
            if words:
                words_of = self.words.setdefault
                self.tokens.add_words([words_of(w, w) for w in words], self.tokens.new_line(file, line_no))
        else:
            self.split_line(line, file, line_no)

    def define(self, name: str, value: str, src: Optional[_SourceLines]) -> None:
        """`$NAME=VALUE`; a value ending in `\\` continues on the next lines (each ending in `\\` but
        the last, or up to a blank line), and its use then expands to those lines."""
        if not value.endswith("\\") or src is None:
            self.params[name] = value
            return
        parts = [value[:-1].rstrip()] if value[:-1].strip() else []
        while src.more():
            text = _strip_comment(src.next()).strip()
            if not text:
                break
            if text.endswith("\\"):
                body = text[:-1].rstrip()
                if body:
                    parts.append(body)
                continue
            parts.append(text)
            break
        self.params[name] = parts if parts else ""

    def substitute(self, line: str, file: str, line_no: int) -> Tuple[str, List[str]]:
        """One pass of `$NAME` / `${NAME}` replacement; unknown names stay as written. A multi-line
        parameter at the end of the line gives its first line here and the others as extra lines."""
        params = self.params
        more: List[str] = []

        def repl(m: re.Match) -> str:
            name, args = m.group(1) or m.group(3), m.group(2)
            value = params.get(name)
            if value is None:
                return self.builtin(name, args, file, line_no, m.group(0))
            if args:
                return m.group(0)  # a user parameter takes no arguments
            if isinstance(value, list):
                if m.end() != len(line.rstrip()) or more:
                    return m.group(0)  # keepalived expands a multi-line parameter only at the line's end
                more.extend(value[1:])
                return value[0] if value else ""
            return value

        return _PARAM_USE_RE.sub(repl, line), more

    def builtin(self, name: str, arg: Optional[str], file: str, line_no: int, text: str) -> str:
        """keepalived's standard parameters: _PWD, _INSTANCE, _RANDOM [MIN [MAX]], _ENV NAME, _HASH, _BANG."""
        if name in _BUILTIN_PARAMS and not arg:
            return _BUILTIN_PARAMS[name]
        if name == "_PWD" and not arg:
            return os.path.dirname(os.path.abspath(file))
        if name == "_INSTANCE" and not arg:
            return self.config_id
        if name == "_ENV" and arg:
            return os.environ.get(arg.strip(), "")
        if name == "_RANDOM":
            words = (arg or "").split()
            if not all(w.isdigit() for w in words) or len(words) > 2:
                self.warning(file, line_no, f"'{text}': _RANDOM takes at most two numbers, MIN and MAX")
                words = [w for w in words if w.isdigit()][:2]
            lo = int(words[0]) if words else 0
            hi = int(words[1]) if len(words) > 1 else 32767
            if hi < lo:
                self.warning(file, line_no, f"'{text}': MAX is below MIN; using {lo}")
                hi = lo
            return str(random.randint(lo, hi))
        return text

    def repeat(self, line: str, file: str, line_no: int, src: Optional[_SourceLines], depth: int) -> None:
        """`~SEQ(VAR, [START, [STEP,]] END) TEXT`, `~SEQx(...)` (hex) and `~LST(VAR, V1, V2...)` /
        `~LST({A,B}, {1,2}, {3,4}) TEXT`: TEXT is read once per value, with $VAR set to it."""
        close = line.find(")")
        m = _REPEAT_RE.match(line)
        if m is None or close < 0:
            self.error(file, line_no, f"invalid {line[:4]} specification '{_short(line)}'",
                       "~SEQ(VAR, START, STEP, END) TEXT or ~LST(VAR, V1, V2, ...) TEXT")
            return
        kind, inner, text = m.group(1), m.group(2), m.group(3).strip()
        if "$" in inner:
            inner = self.substitute(inner, file, line_no)[0]
        try:
            sets = _seq_values(kind, inner) if kind != "LST" else _lst_values(inner)
        except _Invalid as exc:
            self.error(file, line_no, f"{exc} in '{_short(line)}'",
                       "~SEQ(VAR, START, STEP, END) TEXT or ~LST(VAR, V1, V2, ...) TEXT")
            return
        for values in sets:  # as in keepalived, VAR keeps its last value afterwards
            self.params.update(values)
            self.logical(text, file, line_no, src, depth + 1)

    def split_line(self, line: str, file: str, line_no: int) -> None:
        """The words of a line with quotes, escapes or comments (the simple lines never get here)."""
        tokens = self.tokens
        lid = tokens.new_line(file, line_no)
        words_of = self.words.setdefault
        for m in _WORD_RE.finditer(line):
            if m.group(1) is not None:
                break
            brace = m.group(2)
            if brace is not None:
                tokens.add(brace, lid)
                continue
            word = m.group(3)
            if word is None:
                continue
            quoted = '"' in word
            if quoted:
                if _QUOTE_RE.findall(word).count('"') % 2:
                    self.warning(file, line_no, "unterminated quoted string", "add the closing '\"'")
                word = _QUOTE_RE.sub(lambda q: q.group(0) if len(q.group(0)) == 2 else "", word)
            if "\\" in word:
                word = word.replace("\\#", "#").replace("\\!", "!")
            tokens.add(words_of(word, word), lid, quoted)

    def include(self, kind: str, patterns: List[str], file: str, line_no: int) -> None:
        """`include GLOB...`: relative to the including file's directory, sorted, loop-guarded."""
        if not patterns:
            self.error(file, line_no, f"{kind} needs a file name or pattern")
            return
        base = os.path.dirname(os.path.abspath(file)) if file and not file.startswith("<") else os.getcwd()
        checks = self.include_check | _INCLUDE_KINDS[kind]

        def problem(check: int, message: str) -> None:  # an error where that check is on, else a warning
            (self.error if checks & check else self.warning)(file, line_no, message)

        for pattern in patterns:
            pattern = pattern.strip('"')
            matched: List[str] = []
            missing = wildcard = False
            alternatives = _expand_braces(pattern)
            for pat in alternatives:
                full = pat if os.path.isabs(pat) else os.path.join(base, pat)
                if any(c in full for c in "*?["):
                    wildcard = True
                    found = sorted(glob.glob(full))
                    missing = missing or (not found and not os.path.isdir(os.path.dirname(full)))
                    matched.extend(found)
                elif os.path.lexists(full):
                    matched.append(full)
                else:
                    missing = True
            brace = len(alternatives) > 1
            if not matched:  # keepalived's words (lib/parser.c open_and_check_glob)
                if missing:
                    problem(INCLUDE_BRACE if brace else INCLUDE_MATCH, f"Config files missing '{pattern}'.")
                elif wildcard:
                    problem(INCLUDE_WILDCARD, f"No config files matched '{pattern}'.")
                continue
            if missing and brace:
                problem(INCLUDE_BRACE, f'Some config files missing: "{pattern}".')
                if checks & INCLUDE_BRACE:
                    continue
            for path in matched:
                if os.path.isdir(path):
                    problem(INCLUDE_READ, f"Configuration file '{path}' is a directory - skipping")
                elif not os.path.isfile(path) or os.stat(path).st_mode & 0o111:
                    problem(INCLUDE_READ, f"Configuration file '{path}' is not a regular non-executable file - "
                                          "skipping")
                elif not os.access(path, os.R_OK):
                    problem(INCLUDE_READ, f"Configuration file '{path}' open problem (Permission denied) - skipping")
                else:
                    self.read_file(path, file, line_no)


class _SourceLines:
    """The lines of one file, read one at a time (a multi-line definition reads ahead), and the number of the
    last one read. Lines end at "\n" only, as editors and keepalived count them, with a "\r" before it dropped.
    A list of all the lines of a large file was a megabyte of small strings at the peak of a start."""

    __slots__ = ("text", "pos", "i")

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.i = 0

    def more(self) -> bool:
        return self.pos < len(self.text)

    def next(self) -> str:
        end = self.text.find("\n", self.pos)
        if end < 0:
            end = len(self.text)
        line = self.text[self.pos:end]
        self.pos = end + 1
        self.i += 1
        return line[:-1] if line.endswith("\r") else line


def _strip_condition(line: str) -> str:
    """A line without its leading blanks and `@ID ` prefix."""
    s = line.lstrip()
    if s.startswith("@"):
        s = (s.split(None, 1) + [""])[1]
    return s


def _strtol(text: str) -> int:
    """A number as C's strtol(.., 0) reads it: 0x hex, leading 0 octal, else decimal."""
    t = text.strip()
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    try:
        if t[:2].lower() == "0x":
            return sign * int(t[2:], 16)
        if len(t) > 1 and t[0] == "0":
            return sign * int(t[1:], 8)
        return sign * int(t, 10)
    except ValueError:
        raise _Invalid(f"'{text.strip()}' is not a number") from None


def _seq_values(kind: str, inner: str) -> List[Dict[str, str]]:
    """The values of `~SEQ(VAR, [START, [STEP,]] END)` as keepalived counts them."""
    parts = [p.strip() for p in inner.split(",")]
    var = parts[0]
    if not _NAME_RE.match(var) or not 2 <= len(parts) <= 4:
        raise _Invalid(f"invalid ~{kind} definition")
    nums = [_strtol(p) for p in parts[1:]]
    if len(nums) == 1:
        end = nums[0]
        step, start = (-1 if end < 1 else 1), (-1 if end < 0 else 1)
    elif len(nums) == 2:
        start, end = nums
        step = 1 if start <= end else -1
    else:
        start, step, end = nums
        if not step or (start < end and step < 0) or (start > end and step > 0):
            raise _Invalid(f"invalid ~{kind} values")
    if kind == "SEQx" and (start < 0 or end < 0):
        raise _Invalid("~SEQx is only valid for positive numbers")
    if (end - start) // step + 1 > _MAX_REPEAT:
        raise _Invalid(f"~{kind} repeats more than {_MAX_REPEAT} times")
    fmt = "x" if kind == "SEQx" else "d"
    return [{var: format(v, fmt)} for v in range(start, end + (1 if step > 0 else -1), step)]


def _lst_values(inner: str) -> List[Dict[str, str]]:
    """The value sets of `~LST(VAR, V1, V2...)` or `~LST({A,B}, {1,2}, {3,4})`."""
    s = inner.strip()
    if s.startswith("{"):
        close = s.find("}")
        if close < 0:
            raise _Invalid("invalid ~LST definition")
        names, rest = [n.strip() for n in s[1:close].split(",")], s[close + 1:].lstrip()
    else:
        name, sep, rest = s.partition(",")
        names, rest = [name.strip()], sep + rest
    if not rest.startswith(",") or not all(_NAME_RE.match(n) for n in names):
        raise _Invalid("invalid ~LST definition")
    sets: List[Dict[str, str]] = []
    for item in re.findall(r"\{[^}]*\}|[^,{}]+", rest[1:]):
        item = item.strip()
        if not item:
            continue
        values = [v.strip() for v in item[1:-1].split(",")] if item.startswith("{") else [item]
        if len(values) > len(names):
            raise _Invalid("~LST specification has too many values")
        sets.append(dict(zip(names, values + [""] * (len(names) - len(values)))))
    if not sets:
        raise _Invalid("invalid ~LST definition")
    if len(sets) > _MAX_REPEAT:
        raise _Invalid(f"~LST repeats more than {_MAX_REPEAT} times")
    return sets


def _is_comment_line(line: str) -> bool:
    s = line.lstrip()
    return bool(s) and s[0] in "!#"


def _strip_comment(text: str) -> str:
    """Text up to the first `!`/`#` outside double quotes."""
    quoted = False
    prev = ""
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        elif c in "!#" and not quoted and prev != "\\":
            return text[:i]
        prev = c
    return text


# --------------------------------------------------------------------------------------------
# 3.2 Typed values and commands
# --------------------------------------------------------------------------------------------

_BOOL_WORDS = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
_TIME_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_TIME_RE = re.compile(r"^([0-9]*\.?[0-9]+)([a-z]*)$")
_SHELL_SYNTAX_RE = re.compile(r"&&|\|\||[;|`*<>]|\[\[|\$\(")
_ESCAPES = {"a": "\a", "b": "\b", "E": "\x1b", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class _Invalid(Exception):
    """A value could not be converted; the message says why (internal to the parser)."""


def _parse_bool(text: str) -> bool:
    try:
        return _BOOL_WORDS[text.lower()]
    except KeyError:
        raise _Invalid(f"'{text}' is not a boolean (on|off|true|false|yes|no)") from None


def _parse_int(text: str, lo: int, hi: int) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise _Invalid(f"'{text}' is not a number") from None
    if not lo <= value <= hi:
        raise _Invalid(f"number '{text}' outside range [{lo}, {hi}]")
    return value


def _split_command(text: str) -> List[str]:
    """Split a command as keepalived's quoted keywords do: quotes join, backslash escapes."""
    argv: List[str] = []
    cur: List[str] = []
    have = False
    quote = ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < n:
                i += 1
                cur.append(_ESCAPES.get(text[i], text[i]))
            else:
                cur.append(c)
        elif c in "'\"":
            quote = c
            have = True
        elif c == "\\" and i + 1 < n:
            i += 1
            e = text[i]
            if e == "x" and re.match(r"[0-9a-fA-F]{1,2}", text[i + 1:i + 3]):
                h = re.match(r"[0-9a-fA-F]{1,2}", text[i + 1:i + 3]).group(0)  # type: ignore[union-attr]
                cur.append(chr(int(h, 16)))
                i += len(h)
            elif e.isdigit():
                o = re.match(r"[0-7]{1,3}", text[i:i + 3])
                if o:
                    cur.append(chr(int(o.group(0), 8)))
                    i += len(o.group(0)) - 1
                else:
                    cur.append(e)
            else:
                cur.append(_ESCAPES.get(e, e))
            have = True
        elif c.isspace():
            if cur or have:
                argv.append("".join(cur))
                cur, have = [], False
        else:
            cur.append(c)
        i += 1
    if cur or have:
        argv.append("".join(cur))
    return argv


_COMMANDS_WITH_USER = frozenset(("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify_deleted",
                                 "notify", "notify_master_rx_lower_pri", "quorum_up", "quorum_down", "notify_up",
                                 "notify_down", "startup_script", "shutdown_script", "notify_fifo_script",
                                 "vrrp_notify_fifo_script", "lvs_notify_fifo_script"))


def _is_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except (KeyError, ValueError):
        return False


def _is_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except (KeyError, ValueError):
        return False


def make_command(raw: str, user: Optional[str] = None, group: Optional[str] = None) -> Command:
    """Build a Command from the text as written; `shell` is set when it uses shell syntax."""
    shell = bool(_SHELL_SYNTAX_RE.search(raw))
    return Command(raw=raw, argv=_split_command(raw), shell=shell, user=user, group=group)


# --------------------------------------------------------------------------------------------
# 3.3 The keyword registry: the parser is driven by it, and the README table is rendered from it
# --------------------------------------------------------------------------------------------

Handler = Callable[..., Any]


class Keyword:
    """How one keyword of one block is read.

    nargs: (min, max) argument words (max None: the rest of the statement); accept(token)
    decides whether an optional word belongs to this keyword; block: None, the name of a
    statement block, a `ValueBlock`, or "skip" (accepted, contents ignored)."""

    __slots__ = ("name", "handler", "nargs", "block", "supported", "accept", "doc")

    def __init__(self, name: str, handler: Optional[Handler], nargs: Tuple[int, Optional[int]] = (1, 1),
                 block: Any = None, supported: bool = True, accept: Optional[Callable[[str], bool]] = None,
                 doc: str = ""):
        self.name = name
        self.handler = handler
        self.nargs = nargs
        self.block = block
        self.supported = supported
        self.accept = accept
        self.doc = doc


class ValueBlock:
    """A `{ ... }` block of entries (addresses, names) rather than of keywords.

    `options` maps an option word to the number of words it takes; any other word starts a new
    entry. Entries never span lines."""

    def __init__(self, options: Optional[Dict[str, int]] = None, starts_entry: Optional[Callable[[str], bool]] = None):
        self.options = options or {}
        self.starts_entry = starts_entry


KEYWORDS: Dict[str, Dict[str, Keyword]] = {}
BLOCK_TITLES: Dict[str, str] = {}


def _kw(block: str, name: str, handler: Optional[Handler], nargs: Tuple[int, Optional[int]] = (1, 1),
        sub: Any = None, supported: bool = True, accept: Optional[Callable[[str], bool]] = None) -> None:
    KEYWORDS.setdefault(block, {})[name] = Keyword(name, handler, nargs, sub, supported, accept)


def _is_bool_word(text: str) -> bool:
    return text.lower() in _BOOL_WORDS


def _is_number(text: str) -> bool:
    return text.isdigit()


def _not_keyword_of(block: str) -> Callable[[str], bool]:
    return lambda text: text not in KEYWORDS.get(block, ())


# handler factories: each returns handler(p, obj, kw_token, args)

def _h_str(attr: str) -> Handler:
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        if not args:  # a keyword keepalived takes without its value (and then ignores)
            p.warning(kw, f"{kw.text} without a value: keepalived ignores it, and so does vrrpd")
            return
        setattr(obj, attr, args[0].text)
    return handler


def _h_words(attr: str) -> Handler:
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        setattr(obj, attr, [a.text for a in args])
    return handler


def _h_int(attr: str, lo: int, hi: int) -> Handler:
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        setattr(obj, attr, _parse_int(args[0].text, lo, hi))
    return handler


def _h_time(attr: str, lo: float = 0.0, hi: float = 4294.0, zero_to: Optional[float] = None) -> Handler:
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        value = p.time_value(kw, args[0], lo, hi)
        if value == 0 and zero_to is not None:
            value = zero_to
        setattr(obj, attr, value)
    return handler


def _h_flag(attr: str, value: bool = True) -> Handler:
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        setattr(obj, attr, _parse_bool(args[0].text) == value if args else value)
    return handler


def _h_ip(attr: str) -> Handler:
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        setattr(obj, attr, p.ip_value(args[0]))
    return handler


def _h_cmd(attr: str) -> Handler:
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        if not args:
            if kw.text == "notify_deleted":  # a flag too: notify scripts say DELETED instead of FAULT
                _h_other(p, obj, kw, args)
                return
            p.warning(kw, f"{kw.text} without a command: keepalived ignores it, and so does vrrpd")
            return
        setattr(obj, attr, p.command_value(kw, args))
    return handler


def no_meaning_here(name: str) -> Optional[Tuple[str, str]]:
    """(why, what keepalived does) for a keyword that has no meaning for vrrpd, which is one process without SNMP
    or DBus: keepalived's per-process names, scheduling and limits, the copy of the configuration its child
    processes read (tmp_config_directory), SNMP and DBus. `what` is "" for keywords
    that change nothing keepalived does (names); None for every other keyword."""
    if name in ("process_names", "process_name", "child_wait_time", "tmp_config_directory") \
            or name.endswith("_process_name"):
        return "one process", ""  # tmp_config_directory: where keepalived keeps the copy its children read
    if name.startswith("lvs_netlink_"):  # keepalived_netlink.c: the checker process's own rtnetlink sockets
        return "one process", ("sizes the checker process's own netlink socket (vrrpd's one set is sized by "
                               "vrrp_netlink_*)" if not name.endswith("_force") else "")
    if name in ("max_auto_priority", "min_auto_priority_delay"):  # keepalived's set_process_priorities()
        return "one process", "raises its processes to real-time scheduling when their timers run late"
    for suffix, what in (("_rt_priority", "runs that process with real-time scheduling"),
                         ("_cpu_affinity", "pins that process to CPUs"),
                         ("_rlimit_rttime", "limits that process's real-time CPU time"),
                         ("_no_swap", "locks that process's memory"),
                         ("_priority", "sets that process's nice value")):
        if name.endswith(suffix) and name.split("_")[0] in ("vrrp", "checker", "bfd"):
            return "one process", what
    if "snmp" in name or name == "enable_traps":
        return "SNMP", ("runs an SNMP subagent" if name.startswith("enable_") else "")
    if "dbus" in name:
        return "DBus", ("offers a DBus interface" if name.startswith("enable_") else "")
    return None


def keepalived_ignores(name: str) -> Optional[str]:
    """Why keepalived 2.4.3 itself does nothing with keyword `name` (read in its source), or None. vrrpd accepts
    these and does nothing either: pretending otherwise would not be compatible."""
    return {
        # lib/parser.c init_data() clears the seed before set_std_definitions() seeds random() for ${_RANDOM},
        # and the keyword is only read later in the same pass: no ${_RANDOM} ever sees it (since 2019, d58dc785)
        "random_seed": "it clears the seed before each read of the configuration, so ${_RANDOM} never uses it",
        # core/global_parser.c installs vrrp_ipsets only in the iptables build (_HAVE_LIBIPSET_); the nftables
        # build (Debian's, and vrrpd's firewall is nftables) has no ipsets
        "vrrp_ipsets": "only its iptables build reads it; its nftables firewall (Debian's build, and vrrpd's) "
                       "has no ipsets",
    }.get(name)


def _h_other(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
    """Accepted but not acted upon; global_defs keeps the words for dumps. What changes keepalived's behaviour
    but has no meaning for vrrpd is said once (a warning, so in --check and in the start-up log)."""
    p.config.accepted_only.append(f"{kw.file}:{kw.line}: {kw.text}")
    why = no_meaning_here(kw.text)
    if why is not None and why[1] and kw.text not in p.said_once:
        p.said_once.add(kw.text)
        vrrpd_is = "one process" if why[0] == "one process" else "without " + why[0]
        p.warning(kw, f"{kw.text}: keepalived {why[1]}; vrrpd is {vrrpd_is} and ignores it")
    other = getattr(obj, "other", None)
    if isinstance(other, dict):
        other[kw.text] = [a.text for a in args]


def _accept_only(block: str, names: str, nargs: Tuple[int, Optional[int]] = (0, None), sub: Any = None) -> None:
    for name in names.split():
        _kw(block, name, _h_other, nargs, sub, supported=False)


KEEPALIVED_IGNORES = "accepted; keepalived ignores it too"


def _ignored_by_keepalived(name: str, kw: Keyword) -> bool:
    return keepalived_ignores(name) is not None or kw.doc == KEEPALIVED_IGNORES


def _keepalived_ignores(block: str, names: str, why: str, nargs: Tuple[int, Optional[int]] = (0, None),
                        sub: Any = None) -> None:
    """Keywords keepalived 2.4.3 reads (or rejects as unknown) and then does nothing with: vrrpd does nothing
    either, and says so once with keepalived's reason (`why`). The README table has a row of their own."""
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        if (block, kw.text) not in p.said_once:
            p.said_once.add((block, kw.text))
            p.warning(kw, f"{kw.text} in {BLOCK_TITLES.get(block, block)}: {why}; keepalived ignores it, and so "
                      "does vrrpd")
    for name in names.split():
        _kw(block, name, handler, nargs, sub, supported=False)
        KEYWORDS[block][name].doc = KEEPALIVED_IGNORES


def _parse_ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise _Invalid(f"'{text}' is not an IP address") from None


def _parse_port(text: str) -> int:
    return _parse_int(text, 0, 65535)


# --------------------------------------------------------------------------------------------
# 3.4 Parser
# --------------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the tokens, driven by KEYWORDS; fills a Config."""

    def __init__(self, tokens: _Tokens, diags: List[Diagnostic]):
        self.toks = tokens
        self.n = len(tokens)
        self.i = 0
        self.diags = diags
        self.config = Config()
        self.stack: List[str] = []  # names of the blocks being read, top level first
        self.unwind_to: Optional[int] = None  # after a missing '}': return up to this stack depth
        self._suffix_closes: Optional[List[int]] = None
        # where each keyword was set (see where()): records of (keyword, lid, the object's record before) in
        # flat arrays, and id(object) -> its last record. A dict of keywords per block was a third of what a
        # start's parse of a thousand instances took, and that memory stayed in the daemon's.
        self.set_words: List[str] = []
        self.set_lids = array.array("I")
        self.set_before = array.array("i")
        self.last_set: Dict[int, int] = {}
        self.member_lines: Dict[Tuple[int, str], Token] = {}  # (id(sync group), member) -> token
        self.commands: List[Tuple[Command, Token]] = []  # every script/notify command, for validation
        self.rule_priorities = {4: RULE_START_PRIORITY, 6: RULE_START_PRIORITY}  # rules without a preference
        self.said_once: set = set()  # accepted-only keywords already warned about
        self.times: Dict[float, float] = {}

    # -- diagnostics ----------------------------------------------------------------------
    def error(self, tok: Token, message: str, hint: str = "") -> None:
        self.diags.append(Diagnostic(tok.file, tok.line, Severity.ERROR, message, hint))

    def warning(self, tok: Token, message: str, hint: str = "") -> None:
        self.diags.append(Diagnostic(tok.file, tok.line, Severity.WARNING, message, hint))

    def note_set(self, obj: Any, kw: Token) -> None:
        """`kw` was read (with its values) in the block of `obj`."""
        self.set_before.append(self.last_set.get(id(obj), -1))
        self.last_set[id(obj)] = len(self.set_words)
        self.set_words.append(kw.text)
        self.set_lids.append(kw.lid)

    def where(self, obj: Any, keyword: str) -> Optional[Token]:
        """The keyword as last set in `obj`'s block, or None if it was not set there."""
        i = self.last_set.get(id(obj), -1)
        while i >= 0:
            if self.set_words[i] == keyword:
                return self.toks.keyword_at(keyword, self.set_lids[i])
            i = self.set_before[i]
        return None

    # -- typed values ---------------------------------------------------------------------
    def time_value(self, kw: Token, tok: Token, lo: float, hi: float) -> float:
        m = _TIME_RE.match(tok.text.lower())
        if not m or m.group(2) not in _TIME_UNITS and m.group(2):
            raise _Invalid(f"'{tok.text}' is not a time in seconds")
        value = float(m.group(1)) * _TIME_UNITS.get(m.group(2), 1.0)
        if m.group(2):
            self.warning(tok, f"{kw.text} '{tok.text}': keepalived rejects time units; read as {value:g} seconds",
                         f"write '{kw.text} {value:g}'")
        if not lo <= value <= hi:
            raise _Invalid(f"'{tok.text}' outside range [{lo:g}, {hi:g}] seconds")
        return self.times.setdefault(value, value)  # a thousand instances' `advert_int 1` are one float

    def ip_value(self, tok: Token) -> IPAddress:
        return _parse_ip(tok.text)

    def command_value(self, kw: Token, args: List[Token]) -> Command:
        cmd = self._command(kw, args)
        self.commands.append((cmd, kw))
        return cmd

    def _command(self, kw: Token, args: List[Token]) -> Command:
        takes_user = kw.text in _COMMANDS_WITH_USER
        if args[0].quoted or len(args) == 1:
            if len(args) > 1 and not takes_user:
                self.warning(args[1], f"{kw.text}: words after the quoted command are ignored",
                             "put the whole command inside the quotes")
                args = args[:1]
            if len(args) > 3:
                self.warning(args[3], f"{kw.text}: extra words after the user and group are ignored",
                             "put the whole command inside the quotes")
            user = args[1].text if len(args) > 1 else None
            group = args[2].text if len(args) > 2 else None
            return make_command(args[0].text, user, group)
        # Unquoted words: keepalived takes only the first as the command and, for notify scripts, the
        # next ones as user and group. Follow it when they name a real user (and group); otherwise
        # run all the words as the command the user evidently meant.
        words = [a.text for a in args]
        quoted = '"' + " ".join(words) + '"'
        if takes_user and len(words) <= 3 and _is_user(words[1]) and (len(words) < 3 or _is_group(words[2])):
            self.warning(args[1], f"{kw.text}: runs '{words[0]}' as user '{words[1]}', as keepalived does",
                         f"if '{words[1]}' is an argument, write {kw.text} {quoted}")
            return make_command(words[0], words[1], words[2] if len(words) > 2 else None)
        as_user = f" with '{words[1]}' as its user" if takes_user else ""
        self.warning(args[1], f"{kw.text}: unquoted command with arguments; keepalived would run only "
                     f"'{words[0]}'{as_user}; vrrpd runs it all", f"write {kw.text} {quoted}")
        return make_command(" ".join(words))

    # -- token stream ---------------------------------------------------------------------
    def peek(self) -> Optional[Token]:
        return self.toks[self.i] if self.i < self.n else None

    def skip_block(self, opener: Token) -> None:
        """Skip to the `}` matching an already consumed `{` (nested blocks included)."""
        depth = 1
        toks = self.toks
        while self.i < self.n:
            tok = toks[self.i]
            self.i += 1
            if not tok.quoted:
                if tok.text == "{":
                    depth += 1
                elif tok.text == "}":
                    depth -= 1
                    if depth == 0:
                        return
        self.error(opener, f"'{opener.text}' block opened here is never closed", "add the missing '}'")

    def skip_statement(self, kw: Token, spec: Dict[str, Keyword]) -> None:
        """Skip the words after an unknown keyword on its line, and a block that follows it."""
        toks = self.toks
        while self.i < self.n:
            tok = toks[self.i]
            if tok.lid != kw.lid or (not tok.quoted and (tok.text in "{}" or tok.text in spec)):
                break
            self.i += 1
        nxt = self.peek()
        if nxt is not None and nxt.is_brace("{"):
            self.i += 1
            self.skip_block(kw)

    def take_args(self, kw: Keyword, tok: Token, spec: Dict[str, Keyword]) -> List[Token]:
        lo, hi = kw.nargs
        toks = self.toks
        args: List[Token] = []
        j = self.i
        while j < self.n and (hi is None or len(args) < hi):
            t = toks[j]
            if t.lid != tok.lid or (not t.quoted and t.text in ("{", "}")):
                break
            if not t.quoted:
                # a keyword of this block is the next statement, even where a value was due
                # (`notify_master notify_backup ...`): better "needs a value" than a wrong value
                if t.text in spec and (len(args) >= lo or kw.block is None):
                    break
                if len(args) >= lo and kw.accept is not None and not kw.accept(t.text):
                    break
            args.append(t)
            j += 1
        self.i = j
        return args

    # -- blocks ---------------------------------------------------------------------------
    def parse(self) -> Config:
        self.statements("top", self.config, None)
        return self.config

    def statements(self, block: str, obj: Any, opener: Optional[Token]) -> None:
        """Read keyword statements until the `}` closing `opener` (or the end, at top level)."""
        spec = KEYWORDS[block]
        toks = self.toks
        depth = len(self.stack)
        self.stack.append(block)
        previous: Optional[Token] = None  # the last keyword read in this block
        try:
            while self.i < self.n:
                tok = toks[self.i]
                if not tok.quoted and tok.text in ("{", "}"):
                    self.i += 1
                    if tok.text == "}":
                        if opener is not None:
                            return
                        self.warning(tok, "extra '}' at the top level: keepalived ignores it, and so does vrrpd",
                                     "remove it, or look for a block closed twice")
                    else:
                        self.error(tok, "unexpected '{'", "a block must follow its keyword")
                        self.skip_block(tok)
                    continue
                kw = spec.get(tok.text) if not tok.quoted else None
                if kw is None and opener is not None and not tok.quoted:
                    home = self.ancestor_home(tok.text)
                    if home is not None:
                        if self.closes_after(self.i) < depth:
                            self.error(opener, f"'{opener.text}' block opened here is not closed before "
                                       f"'{tok.text}' at line {tok.line}", "add the missing '}'")
                            self.unwind_to = home
                            return
                        top_kw = KEYWORDS["top"].get(tok.text) if home == 0 else None
                        if top_kw is not None and top_kw.block is not None:
                            # braces balance: a whole block was put inside another; read it where it belongs
                            self.error(tok, f"'{tok.text}' must be at the top level, not inside "
                                       f"{BLOCK_TITLES.get(block, block)}", "move the block out")
                            self.i += 1
                            self.statement("top", KEYWORDS["top"], top_kw, tok, self.config)
                            self.unwind_to = None
                            continue
                if kw is None:
                    self.unknown(block, tok, previous)
                    continue
                self.i += 1
                previous = tok
                self.statement(block, spec, kw, tok, obj)
                if self.unwind_to is not None:
                    if self.unwind_to < depth:
                        return
                    self.unwind_to = None
            if opener is not None:
                self.error(opener, f"'{opener.text}' block opened here is never closed", "add the missing '}'")
                self.unwind_to = 0
        finally:
            self.stack.pop()

    def ancestor_home(self, word: str) -> Optional[int]:
        """Depth of the innermost enclosing block (not the current one) that knows `word` as a keyword."""
        for d in range(len(self.stack) - 2, -1, -1):
            if word in KEYWORDS[self.stack[d]]:
                return d
        return None

    def closes_after(self, i: int) -> int:
        """How many more `}` than `{` the tokens from index i on hold (blocks they can still close)."""
        if self._suffix_closes is None:
            suffix = [0] * (self.n + 1)
            acc = 0
            texts, quoted = self.toks.texts, self.toks.quoted
            for j in range(self.n - 1, -1, -1):
                if not quoted[j]:
                    if texts[j] == "}":
                        acc += 1
                    elif texts[j] == "{":
                        acc -= 1
                suffix[j] = acc
            self._suffix_closes = suffix
        return self._suffix_closes[i]

    def unknown(self, block: str, tok: Token, previous: Optional[Token]) -> None:
        """Warn about a word that is not a keyword here, with the most useful hint, and skip it."""
        spec = KEYWORDS[block]
        title = BLOCK_TITLES.get(block, block)
        homes = [BLOCK_TITLES.get(b, b) for b in _KEYWORD_HOMES.get(tok.text, ()) if b != block]
        if previous is not None and previous.lid == tok.lid and not homes and tok.text not in spec:
            self.warning(tok, f"unexpected '{_short(tok.text)}' after '{previous.text}' (ignored)",
                         "too many values, or a comment without '#'")
        elif homes:
            self.warning(tok, f"'{tok.text}' does not belong in {title} (ignored)",
                         f"it belongs in {' / '.join(sorted(set(homes)))}")
        else:
            close = close_matches(tok.text, list(spec), n=1, cutoff=0.75)
            hint = f"did you mean '{close[0]}'?" if close else ""
            self.warning(tok, f"unknown keyword '{_short(tok.text)}' in {title} (ignored)", hint)
        self.i += 1
        self.skip_statement(tok, spec)

    def statement(self, block: str, spec: Dict[str, Keyword], kw: Keyword, tok: Token, obj: Any) -> None:
        args = self.take_args(kw, tok, spec)
        sub = kw.block
        if sub is not None and args and not isinstance(sub, ValueBlock) and sub != "skip" \
                and args[0].text in KEYWORDS.get(sub, ()) and not args[0].quoted and not self._brace_next():
            # `vrrp_instance state MASTER ...`: the name is missing, the first word is a keyword
            self.i -= len(args)
            args = []
        lo = kw.nargs[0]
        if len(args) < lo:
            if sub is not None and not isinstance(sub, ValueBlock):
                what = "an address" if tok.text == "real_server" else "a name"
                self.error(tok, f"'{tok.text}' needs {what}", f"{tok.text} {what.split()[-1].upper()} {{ ... }}")
            else:
                self.error(tok, f"'{tok.text}' needs {'a value' if lo == 1 else f'{lo} values'}")
                return
        self.note_set(obj, tok)
        if sub is None:
            self.call(kw, tok, obj, args)
            return
        opened = self._brace_next()
        if opened:
            self.i += 1
        elif sub != "skip":
            self.error(tok, f"missing '{{' after '{tok.text}'", "a block is written KEYWORD ... { ... }")
        if sub == "skip" or isinstance(sub, ValueBlock):
            if sub == "skip":
                self.call(kw, tok, obj, args)
                if opened:
                    self.skip_block(tok)
                return
            entries = self.value_entries(sub, tok)
            if len(args) < lo:
                return
            self.call(kw, tok, obj, args, entries)
            return
        child = self.call(kw, tok, obj, args) if len(args) >= lo else None
        if child is None:
            child = _Discard()
        self.statements(sub, child, tok)

    def _brace_next(self) -> bool:
        return self.i < self.n and self.toks.is_brace(self.i, "{")

    def call(self, kw: Keyword, tok: Token, obj: Any, args: List[Token], *extra: Any) -> Any:
        if kw.handler is None:
            return None
        try:
            return kw.handler(self, obj, tok, args, *extra)
        except _Invalid as exc:
            self.error(tok, f"{tok.text}: {exc}")
        except AttributeError:
            if not isinstance(obj, _Discard):
                raise
        return None

    def value_entries(self, vb: ValueBlock, opener: Token) -> List[List[Token]]:
        """Read a value block's entries up to its `}`; a keyword of the enclosing block inside
        it means the `}` was forgotten (the entries end there, with an error)."""
        entries: List[List[Token]] = []
        toks = self.toks
        options = vb.options
        need = 0
        while self.i < self.n:
            tok = toks[self.i]
            if not tok.quoted:
                text = tok.text
                if text == "}":
                    self.i += 1
                    return entries
                if text == "{":
                    self.i += 1
                    self.error(tok, f"unexpected '{{' inside '{opener.text}'")
                    self.skip_block(tok)
                    continue
                if need == 0 and text not in options:
                    home = next((d for d in range(len(self.stack) - 1, -1, -1) if text in KEYWORDS[self.stack[d]]),
                                None)
                    if home is not None and self.closes_after(self.i) < len(self.stack):
                        self.error(opener, f"'{opener.text}' block opened here is not closed before "
                                   f"'{text}' at line {tok.line}", "add the missing '}'")
                        if home < len(self.stack) - 1:
                            self.unwind_to = home
                        return entries
            self.i += 1
            if entries and entries[-1][0].lid == tok.lid and (need > 0 or (tok.text in options and not tok.quoted)
                                                              or (vb.starts_entry is not None
                                                                  and not vb.starts_entry(tok.text))):
                entries[-1].append(tok)
                if need > 0:
                    need -= 1
                else:
                    need = options.get(tok.text, 0)
            else:
                entries.append([tok])
                need = 0
        self.error(opener, f"'{opener.text}' block opened here is never closed", "add the missing '}'")
        self.unwind_to = 0
        return entries


class _Discard:
    """Receives the keywords of a block whose header was wrong, so they are still checked."""

    def __init__(self) -> None:
        self.other: Dict[str, List[str]] = {}


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# 3.5 Keywords by block (keepalived.conf(5)); defaults live in the dataclasses of section 2
# --------------------------------------------------------------------------------------------

_VIP_OPTIONS = {"brd": 1, "broadcast": 1, "dev": 1, "scope": 1, "label": 1, "peer": 1, "home": 0, "-nodad": 0,
                "nodad": 0, "mngtmpaddr": 0, "noprefixroute": 0, "autojoin": 0, "no_track": 0,
                "preferred_lft": 1, "use_vmac": 0, "track_group": 1}
_TRACK_OPTIONS = {"weight": 1, "reverse": 0, "noreverse": 0}
_SCOPES = {"global", "site", "link", "host", "nowhere"}


def _looks_like_address(text: str) -> bool:
    """True for words that start a new address entry (IPv4/IPv6, with an optional /prefix)."""
    return _ADDRESS_RE.match(text) is not None


_ADDRESS_RE = re.compile(r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-fA-F]*:[0-9a-fA-F:.]*)(?:/[0-9.]+)?$")


def _vip_entries(p: _Parser, entries: List[List[Token]]) -> List[VirtualIP]:
    vips: List[VirtualIP] = []
    for entry in entries:
        head = entry[0]
        try:
            address: IPInterface = ip_interface(head.text)
        except ValueError:
            p.error(head, f"'{_short(head.text)}' is not an IP address", "virtual_ipaddress { IP[/MASK] [dev IF] ... }")
            continue
        vip = VirtualIP(address=address, line=head.line)
        k = 1
        while k < len(entry):
            opt_tok = entry[k]
            opt = opt_tok.text
            k += 1
            if opt not in _VIP_OPTIONS:
                close = close_matches(opt, list(_VIP_OPTIONS), n=1, cutoff=0.7)
                p.warning(opt_tok, f"unknown option '{_short(opt)}' for virtual address {head.text} (ignored)",
                          f"did you mean '{close[0]}'?" if close else "")
                if k < len(entry) and entry[k].text not in _VIP_OPTIONS:
                    k += 1
                continue
            val: Optional[Token] = None
            if _VIP_OPTIONS[opt]:
                if k >= len(entry):
                    p.error(opt_tok, f"'{opt}' needs a value ({head.text})")
                    continue
                val = entry[k]
                k += 1
            try:
                if opt in ("brd", "broadcast") and val is not None:
                    if val.text not in ("+", "-"):
                        vip.brd = _parse_ip(val.text)
                elif opt == "dev" and val is not None:
                    vip.dev = val.text
                elif opt == "scope" and val is not None:
                    if val.text not in _SCOPES and not val.text.isdigit():
                        raise _Invalid(f"unknown scope '{val.text}'")
                    if address.version == 6:
                        p.warning(opt_tok, f"scope given for the IPv6 address {head.text}: keepalived ignores it, "
                                  "and so does vrrpd", "remove 'scope ...'")
                    else:
                        vip.scope = val.text
                elif opt == "label" and val is not None:
                    if len(val.text) > 15:
                        p.warning(val, f"label '{val.text}' longer than 15 characters is truncated")
                    vip.label = val.text[:15]
                elif opt == "peer" and val is not None:
                    vip.peer = _parse_ip(val.text)
                elif opt in ("-nodad", "nodad"):
                    vip.nodad = True
                elif opt == "no_track":
                    vip.no_track = True
                elif opt == "use_vmac":
                    vip.use_vmac = True
                elif opt == "track_group" and val is not None:
                    vip.track_group = val.text
            except _Invalid as exc:
                p.error(opt_tok, f"virtual address {head.text}: {exc}")
        vips.append(vip)
    return vips


def _track_refs(p: _Parser, entries: List[List[Token]], lo: int = -253, hi: int = 253) -> List[TrackRef]:
    refs: List[TrackRef] = []
    for entry in entries:
        ref = TrackRef(name=entry[0].text, line=entry[0].line)
        k = 1
        while k < len(entry):
            word = entry[k].text
            if word == "weight" and k + 1 < len(entry):
                try:
                    ref.weight = _parse_int(entry[k + 1].text, lo, hi)
                except _Invalid as exc:
                    p.error(entry[k + 1], f"{ref.name} weight: {exc}")
                k += 2
            elif word in ("reverse", "noreverse"):
                ref.reverse = word == "reverse"
                k += 1
            else:
                p.warning(entry[k], f"unexpected '{_short(word)}' after '{ref.name}' (ignored)",
                          "NAME [weight N] [reverse]")
                k += 1
        refs.append(ref)
    return refs


def _weight_reverse(lo: int, hi: int) -> Handler:
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        obj.weight = _parse_int(args[0].text, lo, hi)
        if len(args) > 1:
            if args[1].text not in ("reverse", "noreverse"):
                raise _Invalid(f"'{args[1].text}' after the weight: only 'reverse' is allowed")
            obj.weight_reverse = args[1].text == "reverse"
    return handler


# -- routes, rules and static addresses (keepalived's vrrp_iproute.c / vrrp_iprule.c grammar) -------

IPROUTE_ETC_DIR = "/etc/iproute2"
IPROUTE_USR_DIR = "/usr/share/iproute2"
RTN_TYPES = {"unicast": 1, "local": 2, "broadcast": 3, "brd": 3, "anycast": 4, "multicast": 5, "blackhole": 6,
             "unreachable": 7, "prohibit": 8, "throw": 9, "nat": 10, "xresolve": 11}
_RT_BUILTINS: Dict[str, Dict[str, int]] = {
    "rt_tables": {"default": 253, "main": 254, "local": 255},
    "rt_scopes": {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255},
    "rt_protos": {"none": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4, "gated": 8, "ra": 9, "mrt": 10,
                  "zebra": 11, "bird": 12, "dnrouted": 13, "xorp": 14, "ntk": 15, "dhcp": 16, "babel": 42},
}
_RT_MAX = {"rt_tables": 0xFFFFFFFF, "rt_realms": 0xFFFF, "group": 0xFFFFFFFF}
# RTAX_* metrics that take `[lock] N` (u32), and the time-valued ones with their units per second
_RTAX_PLAIN = {"mtu": 2, "window": 3, "ssthresh": 6, "cwnd": 7, "advmss": 8, "reordering": 9, "hoplimit": 10,
               "initcwnd": 11, "initrwnd": 14}
_RTAX_TIME = {"rtt": (4, 8000.0), "rttvar": (5, 4000.0), "rto_min": (13, 1000.0)}
_RTAX_LOCKABLE = {"mtu", "advmss", "cwnd", "ssthresh", "reordering", "window", "rtt", "rttvar", "rto_min", "congctl"}
RTAX_LOCK, RTAX_FEATURES, RTAX_QUICKACK, RTAX_CC_ALGO, RTAX_FASTOPEN_NO_COOKIE = 1, 12, 15, 16, 17
FR_ACT_TO_TBL, FR_ACT_GOTO, FR_ACT_NOP, FR_ACT_BLACKHOLE, FR_ACT_UNREACHABLE, FR_ACT_PROHIBIT = 1, 2, 3, 6, 7, 8
_RULE_ACTIONS = {"blackhole": FR_ACT_BLACKHOLE, "unreachable": FR_ACT_UNREACHABLE, "prohibit": FR_ACT_PROHIBIT,
                 "nop": FR_ACT_NOP}
RULE_START_PRIORITY = 16384
_rt_names_cache: Dict[Tuple[str, str, str], Dict[str, int]] = {}


def rt_names(kind: str, etc_dir: str = IPROUTE_ETC_DIR, usr_dir: str = IPROUTE_USR_DIR) -> Dict[str, int]:
    """Names of an iproute2 table (`rt_tables`, `rt_protos`...) as keepalived reads them: <etc>/<kind>,
    else <usr>/<kind>; then <usr>/<kind>.d/*.conf not overridden in <etc>/<kind>.d, then those; built-ins last."""
    key = (kind, etc_dir, usr_dir)
    if key in _rt_names_cache:
        return _rt_names_cache[key]
    names: Dict[str, int] = {}
    files = [os.path.join(etc_dir, kind)]
    if not os.path.exists(files[0]):
        files = [os.path.join(usr_dir, kind)]
    etc_d = sorted(glob.glob(os.path.join(etc_dir, kind + ".d", "*.conf")))
    etc_base = {os.path.basename(f) for f in etc_d}
    files += [f for f in sorted(glob.glob(os.path.join(usr_dir, kind + ".d", "*.conf")))
              if os.path.basename(f) not in etc_base] + etc_d
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for text in fh:
                    words = text.split("#", 1)[0].split()
                    if len(words) == 2:
                        try:
                            names.setdefault(words[1], int(words[0], 0))
                        except ValueError:
                            continue
        except OSError:
            continue
    for name, number in _RT_BUILTINS.get(kind, {}).items():
        names.setdefault(name, number)
    _rt_names_cache[key] = names
    return names


class _RouteWords:
    """The words of one route or rule line, read left to right (each keyword takes its argument)."""

    def __init__(self, words: List[str], etc_dir: str, usr_dir: str):
        self.words = words
        self.i = 0
        self.etc_dir, self.usr_dir = etc_dir, usr_dir
        self.family = 0  # 0 until an address or inet/inet6 says
        self.warnings: List[str] = []

    def more(self) -> bool:
        return self.i < len(self.words)

    def next(self) -> str:
        word = self.words[self.i]
        self.i += 1
        return word

    def arg(self, what: str) -> str:
        if self.i >= len(self.words):
            raise _Invalid(f"'{what}' needs a value")
        return self.next()

    def number(self, what: str, hi: int = 0xFFFFFFFF, lo: int = 0) -> int:
        text = self.arg(what)
        try:
            value = int(text, 0)
        except ValueError:
            raise _Invalid(f"invalid {what} '{text}'") from None
        if not lo <= value <= hi:
            raise _Invalid(f"{what} {value} outside [{lo}, {hi}]")
        return value

    def named(self, what: str, kind: str, numeric_only: bool = False) -> int:
        text = self.arg(what)
        try:
            value = int(text, 0)
        except ValueError:
            value = None if numeric_only else rt_names(kind, self.etc_dir, self.usr_dir).get(text)
            if value is None:
                where = "" if numeric_only else f" (not a number, nor a name in {self.etc_dir}/{kind})"
                raise _Invalid(f"invalid {what} '{text}'{where}") from None
        hi = _RT_MAX.get(kind, 255)
        if not 0 <= value <= hi:
            raise _Invalid(f"{what} {value} outside [0, {hi}]")
        return value

    def set_family(self, family: int, what: str) -> None:
        if self.family and self.family != family:
            raise _Invalid(f"cannot mix IPv4 and IPv6 addresses ({what})")
        self.family = family

    def address(self, what: str, text: Optional[str] = None) -> IPAddress:
        text = self.arg(what) if text is None else text
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise _Invalid(f"invalid {what} address '{text}'") from None
        self.set_family(addr.version, f"{what} {text}")
        return addr

    def prefix(self, what: str, text: Optional[str] = None) -> Optional[IPInterface]:
        """PREFIX[/LEN], or default/any/all (None: /0 of the line's family, decided at the end)."""
        text = self.arg(what) if text is None else text
        if text in ("default", "any", "all"):
            return None
        if text == "default6":
            self.warnings.append("'default6' is deprecated; write 'default' with an IPv6 gateway")
            self.set_family(6, what)
            return None
        try:
            net = ipaddress.ip_interface(text)
        except ValueError:
            raise _Invalid(f"invalid {what} '{text}'") from None
        self.set_family(net.version, f"{what} {text}")
        return net

    def time_ms(self, what: str) -> float:
        text = self.arg(what)
        m = re.match(r"^([0-9]*\.?[0-9]+)(s|sec|secs|ms|msec|msecs)?$", text)
        if not m:
            raise _Invalid(f"invalid {what} '{text}'")
        value = float(m.group(1))
        return value * 1000.0 if m.group(2) in ("s", "sec", "secs") else value

    def port_range(self, what: str) -> Tuple[int, int]:
        text = self.arg(what)
        m = re.match(r"^(\d+)(?:-(\d+))?$", text)
        if not m:
            raise _Invalid(f"invalid {what} range '{text}'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 <= lo <= hi <= 65535:
            raise _Invalid(f"invalid {what} range '{text}'")
        return lo, hi


def _default_prefix(family: int) -> IPInterface:
    return ipaddress.ip_interface("::/0" if family == 6 else "0.0.0.0/0")


def _realms(w: _RouteWords, what: str = "realms") -> int:
    text = w.arg(what)
    names = rt_names("rt_realms", w.etc_dir, w.usr_dir)

    def one(t: str) -> int:
        try:
            value = int(t, 0)
        except ValueError:
            if t not in names:
                raise _Invalid(f"invalid realm '{t}'") from None
            value = names[t]
        if not 0 <= value <= 0xFFFF:
            raise _Invalid(f"invalid realm '{t}'")
        return value
    src, _, dst = text.rpartition("/")
    return (one(src) << 16 if src else 0) | one(dst)


def parse_route_line(words: List[str], etc_dir: str = IPROUTE_ETC_DIR, usr_dir: str = IPROUTE_USR_DIR,
                     static: bool = False) -> Tuple[Route, List[str]]:
    """One `virtual_routes`/`static_routes` line (keepalived 2.4.3's alloc_route); raises _Invalid.

    Returns the route and the warnings keepalived would give for it."""
    w = _RouteWords(words, etc_dir, usr_dir)
    r = Route(text=" ".join(words))
    dst_seen = False
    protocol_given = False
    while w.more():
        word = w.next()
        if word in ("inet", "inet6"):
            w.set_family(4 if word == "inet" else 6, word)
        elif word == "src":
            r.prefsrc = w.address("src")
        elif word in ("via", "gw"):
            if word == "gw":
                w.warnings.append("'gw' is deprecated; write 'via'")
            text = w.arg(word)
            if text in ("inet", "inet6"):
                text = w.arg(word)
            r.via = ipaddress.ip_address(text) if _is_ip(text) else w.address(word, text)
            if w.family == 0:
                w.family = r.via.version
        elif word == "from":
            r.src = w.prefix("from") or _default_prefix(w.family or 6)
            if w.family == 4:
                raise _Invalid("route from address only supported with IPv6")
        elif word in ("tos", "dsfield"):
            r.tos = w.named(word, "rt_dsfield")
        elif word in ("table", "vrf"):
            r.table = w.named(word, "rt_tables")
        elif word == "protocol":
            r.protocol = w.named("protocol", "rt_protos")
            protocol_given = True
        elif word == "scope":
            r.scope = w.named("scope", "rt_scopes")
            r.scope_given = True
        elif word in ("metric", "priority", "preference"):
            r.metric = w.number(word)
        elif word in ("dev", "oif"):
            r.dev = w.arg(word)
        elif word == "onlink":
            r.onlink = True
        elif word in _RTAX_PLAIN or word in _RTAX_TIME or word == "congctl":
            lock = False
            if w.more() and w.words[w.i] == "lock" and word in _RTAX_LOCKABLE:
                w.i += 1
                lock = True
            if word in _RTAX_PLAIN:
                rtax = _RTAX_PLAIN[word]
                r.metrics[rtax] = w.number(word, 255 if word == "hoplimit" else 0xFFFFFFFF)
            elif word in _RTAX_TIME:
                rtax, per_second = _RTAX_TIME[word]
                r.metrics[rtax] = int(w.time_ms(word) * per_second / 1000.0)
            else:
                rtax = RTAX_CC_ALGO
                r.congctl = w.arg(word)
            if lock:
                r.metrics[RTAX_LOCK] = r.metrics.get(RTAX_LOCK, 0) | (1 << rtax)
        elif word == "features":
            if w.arg(word) != "ecn":
                raise _Invalid(f"unknown route feature '{w.words[w.i - 1]}' (only 'ecn')")
            r.metrics[RTAX_FEATURES] = 1
        elif word in ("quickack", "fastopen_no_cookie"):
            r.metrics[RTAX_QUICKACK if word == "quickack" else RTAX_FASTOPEN_NO_COOKIE] = w.number(word, 1)
        elif word == "realms":
            r.realms = _realms(w)
            w.set_family(4, "realms are only supported for IPv4")
        elif word == "expires":
            r.expires = w.number(word)
            w.set_family(6, "expires is only supported for IPv6")
        elif word == "pref":
            text = w.arg(word)
            prefs = {"low": 3, "medium": 0, "high": 1}
            if text in prefs:
                r.pref = prefs[text]
            else:
                w.i -= 1
                r.pref = w.number(word, 255)
            w.set_family(6, "pref is only supported for IPv6")
        elif word == "ttl-propagate":
            text = w.arg(word)
            if text not in ("enabled", "disabled"):
                raise _Invalid(f"ttl-propagate '{text}': enabled or disabled")
            r.ttl_propagate = int(text == "enabled")
        elif word in ("add", "prepend", "append"):
            r.mode = word
        elif word == "or":
            raise _Invalid("'or' for routes is deprecated and not supported; write 'nexthop via A nexthop via B'")
        elif word == "nexthop":
            w.i -= 1
            r.nexthops = _parse_nexthops(w)
            break
        elif word == "no_track":
            r.no_track = True
        elif word == "track_group":
            if not static:
                raise _Invalid("track_group is only allowed in static_routes")
            r.track_group = w.arg(word)
        elif word == "encap":
            raise _Invalid("'encap' (lightweight tunnels) is not supported by vrrpd")
        elif word == "as":
            raise _Invalid("'as [to]' is for MPLS only")
        else:
            if word == "to":
                word = w.arg("to")
            if word in RTN_TYPES or word.isdigit() and not _is_ip(word):
                r.type = RTN_TYPES[word] if word in RTN_TYPES else _parse_int(word, 0, 255)
                r.type_given = True
                word = w.arg(word)
            if not (_is_ip_prefix(word) or word in ("default", "any", "all", "default6")):
                if _looks_like_address(word):
                    raise _Invalid(f"invalid destination '{word}'")
                raise _Invalid(f"unknown route keyword '{word}'")
            r.dst = w.prefix("destination", word)
            dst_seen = True
    if w.more():
        raise _Invalid(f"route has trailing nonsense - {w.words[w.i]}")
    if not dst_seen:
        raise _Invalid("route must have a destination")
    r.family = w.family or 4
    if r.dst is None:
        r.dst = _default_prefix(r.family)
    if not r.no_track:
        if protocol_given and r.protocol != 18:
            w.warnings.append("route cannot be tracked if protocol is not RTPROT_KEEPALIVED(18), resetting protocol")
        r.protocol = 18
    if r.track_group and not r.dev:
        w.warnings.append("static route cannot have track_group if no dev specified (ignored)")
        r.track_group = None
    return r, w.warnings


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _is_ip_prefix(text: str) -> bool:
    try:
        ipaddress.ip_interface(text)
        return True
    except ValueError:
        return False


def _parse_nexthops(w: _RouteWords) -> List[Nexthop]:
    hops: List[Nexthop] = []
    while w.more() and w.words[w.i] == "nexthop":
        w.i += 1
        nh = Nexthop()
        while w.more() and w.words[w.i] != "nexthop":
            word = w.next()
            if word == "via":
                text = w.arg(word)
                if text in ("inet", "inet6"):
                    text = w.arg(word)
                nh.via = w.address("nexthop", text)
            elif word == "dev":
                nh.dev = w.arg(word)
            elif word == "weight":
                nh.weight = w.number("nexthop weight", 256, 1)
            elif word == "onlink":
                nh.onlink = True
            elif word == "realms":
                nh.realms = _realms(w)
                w.set_family(4, "realms are only supported for IPv4")
            else:
                raise _Invalid(f"unknown nexthop option '{word}'")
        if nh.via is None and nh.dev is None:
            raise _Invalid("nexthop needs 'via' or 'dev'")
        hops.append(nh)
    return hops


def parse_rule_line(words: List[str], etc_dir: str = IPROUTE_ETC_DIR, usr_dir: str = IPROUTE_USR_DIR,
                    static: bool = False) -> Tuple[Rule, List[str]]:
    """One `virtual_rules`/`static_rules` line (keepalived 2.4.3's alloc_rule); raises _Invalid.

    A rule without a preference gets one later (assign_rule_priorities), as keepalived does."""
    w = _RouteWords(words, etc_dir, usr_dir)
    r = Rule(text=" ".join(words))
    actions = 0
    protocol_given = False
    while w.more():
        word = w.next()
        if word in ("inet", "inet6"):
            w.set_family(4 if word == "inet" else 6, word)
        elif word == "from":
            r.src = w.prefix("from")
            r.src = r.src if r.src is not None else ipaddress.ip_interface("0.0.0.0/0")
        elif word == "to":
            r.dst = w.prefix("to")
            r.dst = r.dst if r.dst is not None else ipaddress.ip_interface("0.0.0.0/0")
        elif word == "not":
            r.invert = True
        elif word in ("preference", "order", "priority"):
            r.priority = w.number(word)
        elif word in ("table", "lookup"):
            r.table = w.named(word, "rt_tables")
            if r.table == 0:
                raise _Invalid("table 0 is not allowed in a rule")
            r.action = FR_ACT_TO_TBL
            actions += 1
        elif word in ("goto", "type") and (word == "goto" or w.more() and w.words[w.i] == "goto"):
            if word == "type":
                w.i += 1
            r.goto = w.number("goto")
            r.action = FR_ACT_GOTO
            actions += 1
        elif word == "type" and w.more() and w.words[w.i] in _RULE_ACTIONS:
            r.action = _RULE_ACTIONS[w.next()]
            actions += 1
        elif word in _RULE_ACTIONS:
            r.action = _RULE_ACTIONS[word]
            actions += 1
        elif word == "l3mdev":
            r.l3mdev = True
            r.action = FR_ACT_TO_TBL
            actions += 1
        elif word in ("tos", "dsfield"):
            r.tos = w.named(word, "rt_dsfield")
        elif word == "fwmark":
            text = w.arg(word)
            mark, _, mask = text.partition("/")
            try:
                r.fwmark = int(mark, 0)
                r.fwmask = int(mask, 0) if mask else None
            except ValueError:
                raise _Invalid(f"invalid fwmark '{text}'") from None
            if not 0 <= r.fwmark <= 0xFFFFFFFF or r.fwmask is not None and not 0 <= r.fwmask <= 0xFFFFFFFF:
                raise _Invalid(f"invalid fwmark '{text}'")
        elif word == "realms":
            r.realms = _realms(w)
            w.set_family(4, "realms are only supported for IPv4")
        elif word in ("suppress_prefixlength", "sup_pl"):
            r.suppress_prefixlen = w.number(word, 128)
        elif word in ("suppress_ifgroup", "sup_group"):
            r.suppress_ifgroup = w.named(word, "group")
        elif word in ("dev", "iif"):
            r.iif = w.arg(word)
        elif word == "oif":
            r.oif = w.arg(word)
        elif word == "tunnel-id":
            r.tun_id = w.number(word, (1 << 64) - 1)
        elif word == "uidrange":
            text = w.arg(word)
            m = re.match(r"^(\d+)-(\d+)$", text)
            if not m or int(m.group(1)) > int(m.group(2)) or int(m.group(2)) > 0xFFFFFFFF:
                raise _Invalid(f"invalid uidrange '{text}'")
            r.uidrange = (int(m.group(1)), int(m.group(2)))
        elif word == "protocol":
            r.protocol = w.named("protocol", "rt_protos", numeric_only=True)
            protocol_given = True
        elif word == "ipproto":
            text = w.arg(word)
            try:
                r.ipproto = int(text, 0) if text[:1].isdigit() else socket.getprotobyname(text)
            except (OSError, ValueError):
                raise _Invalid(f"invalid ipproto '{text}'") from None
        elif word in ("sport", "dport"):
            setattr(r, word, w.port_range(word))
        elif word == "no_track":
            r.no_track = True
        elif word == "track_group":
            if not static:
                raise _Invalid("track_group is only allowed in static_rules")
            r.track_group = w.arg(word)
        else:
            raise _Invalid(f"unknown rule option '{word}'")
    if actions == 0:
        raise _Invalid("rule needs an action (table, goto, nop, blackhole, unreachable or prohibit)")
    if actions > 1:
        raise _Invalid("rule has more than one action")
    if r.goto is not None and r.priority is not None and r.priority >= r.goto:
        raise _Invalid(f"rule goto {r.goto} must be to a higher preference than {r.priority}")
    r.family = w.family or 4
    zero = _default_prefix(r.family)
    r.src = zero if r.src is not None and r.src.network.prefixlen == 0 and r.src.ip.packed.strip(b"\0") == b"" \
        else r.src
    r.dst = zero if r.dst is not None and r.dst.network.prefixlen == 0 and r.dst.ip.packed.strip(b"\0") == b"" \
        else r.dst
    if not r.no_track:
        if protocol_given and r.protocol != 18:
            w.warnings.append("rule cannot be tracked if protocol is not RTPROT_KEEPALIVED(18), resetting protocol")
        r.protocol = 18
    if r.track_group and not r.iif:
        w.warnings.append("static rule cannot have track_group if dev/iif not specified (ignored)")
        r.track_group = None
    return r, w.warnings


def _route_entries(p: _Parser, entries: List[List[Token]], static: bool) -> List[Route]:
    g = p.config.global_defs
    routes: List[Route] = []
    for entry in entries:
        head = entry[0]
        try:
            route, warnings = parse_route_line([t.text for t in entry], g.iproute_etc_dir, g.iproute_usr_dir, static)
        except _Invalid as exc:
            p.error(head, f"route '{_short(' '.join(t.text for t in entry), 60)}': {exc}")
            continue
        for text in warnings:
            p.warning(head, f"route '{_short(route.text, 60)}': {text}")
        route.file, route.line = head.file, head.line
        routes.append(route)
    return routes


def _rule_entries(p: _Parser, entries: List[List[Token]], static: bool) -> List[Rule]:
    g = p.config.global_defs
    rules: List[Rule] = []
    for entry in entries:
        head = entry[0]
        try:
            rule, warnings = parse_rule_line([t.text for t in entry], g.iproute_etc_dir, g.iproute_usr_dir, static)
        except _Invalid as exc:
            p.error(head, f"rule '{_short(' '.join(t.text for t in entry), 60)}': {exc}")
            continue
        for text in warnings:
            p.warning(head, f"rule '{_short(rule.text, 60)}': {text}")
        if rule.priority is None:
            counters = p.rule_priorities
            rule.priority = counters[rule.family]
            counters[rule.family] -= 1
            p.warning(head, f"rule has no preference specified - setting to {rule.priority}. "
                      "This is probably not what you want.")
        rule.file, rule.line = head.file, head.line
        rules.append(rule)
    return rules


def _i_routes(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    own_list(inst, "virtual_routes").extend(_route_entries(p, entries, static=False))


def _i_rules(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    own_list(inst, "virtual_rules").extend(_rule_entries(p, entries, static=False))


def _top_static_routes(p: _Parser, cfg: Config, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    cfg.static_routes.extend(_route_entries(p, entries, static=True))


def _top_static_rules(p: _Parser, cfg: Config, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    cfg.static_rules.extend(_rule_entries(p, entries, static=True))


def _top_static_ipaddress(p: _Parser, cfg: Config, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    for vip in _vip_entries(p, entries):
        if vip.dev is None:
            vip.dev = cfg.global_defs.default_interface
        cfg.static_ipaddress.append(vip)


def _top_if_up_down_delays(p: _Parser, cfg: Config, kw: Token, args: List[Token],
                           entries: List[List[Token]]) -> None:
    """interface_up_down_delays { IF DOWN_DELAY [UP_DELAY] }: seconds (0-255) a carrier change of IF must last
    before it counts (keepalived's debounce timers; no UP_DELAY: 0)."""
    for entry in entries:
        name, words = entry[0], entry[1:]
        if not words:
            p.warning(name, f"No timeouts specified for {name.text} up/down delays")
            continue
        if len(words) > 2:
            p.warning(name, f"Too many parameters for {name.text} up/down delays")
        try:
            down = p.time_value(kw, words[0], 0, 255)
            up = p.time_value(kw, words[1], 0, 255) if len(words) > 1 else 0.0
        except _Invalid as exc:
            p.error(name, f"interface_up_down_delays {name.text}: {exc}")
            continue
        cfg.if_up_down_delays[name.text] = (down, up)


def _top_linkbeat_interfaces(p: _Parser, cfg: Config, kw: Token, args: List[Token],
                             entries: List[List[Token]]) -> None:
    """linkbeat_interfaces { IF [MII|ETHTOOL|IOCTL] }: poll these interfaces' carrier every second instead of
    following netlink's link events (keepalived's linkbeat, for drivers that do not report carrier changes)."""
    for entry in entries:
        kind = entry[1].text if len(entry) > 1 else ""
        if kind not in ("", "MII", "ETHTOOL", "IOCTL") or len(entry) > 2:
            p.error(entry[1], f"extra characters {entry[1].text} in linkbeat interface")
            continue
        cfg.linkbeat_interfaces[entry[0].text] = kind


# a route or rule is one line: every word after the first belongs to it
_LINE_BLOCK = ValueBlock({}, starts_entry=lambda text: False)


# -- top level ---------------------------------------------------------------------------------

def _top_global(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> GlobalDefs:
    return cfg.global_defs


def _top_instance(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> VrrpInstance:
    inst = VrrpInstance(name=args[0].text if args else "", file=kw.file, line=kw.line)
    cfg.vrrp_instances.append(inst)
    return inst


def _top_script(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> Optional[VrrpScript]:
    if not args:
        return None
    script = VrrpScript(name=args[0].text, file=kw.file, line=kw.line)
    if script.name in cfg.vrrp_scripts:
        p.warning(kw, f"vrrp_script '{script.name}' defined twice: keepalived tracks the first definition "
                  f"(line {cfg.vrrp_scripts[script.name].line}), and so does vrrpd", "remove or rename one")
        return script  # read and checked, but not used
    cfg.vrrp_scripts[script.name] = script
    return script


def _top_track_file(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> Optional[TrackFile]:
    if not args:
        return None
    tf = TrackFile(name=args[0].text, file=kw.file, line=kw.line)
    cfg.track_files[tf.name] = tf
    return tf


def _top_track_process(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> Optional[TrackProcess]:
    if not args:
        return None
    tp = TrackProcess(name=args[0].text, file=kw.file, line=kw.line)
    cfg.track_processes[tp.name] = tp
    return tp


def _top_bfd_instance(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> Optional[BfdInstance]:
    if not args:
        return None
    bfd = BfdInstance(name=args[0].text, file=kw.file, line=kw.line)
    if len(bfd.name) > 31:
        p.error(args[0], f"bfd_instance name '{_short(bfd.name)}' is longer than 31 characters")
    if bfd.name in cfg.bfd_instances:
        p.error(args[0], f"duplicate bfd_instance name '{bfd.name}'")
    cfg.bfd_instances[bfd.name] = bfd
    return bfd


def _top_sync_group(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> SyncGroup:
    group = SyncGroup(name=args[0].text if args else "", file=kw.file, line=kw.line)
    cfg.sync_groups.append(group)
    return group


def _top_vs_group(p: _Parser, cfg: Config, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    vsg = VirtualServerGroup(name=args[0].text, file=kw.file, line=kw.line)
    for entry in entries:
        try:
            vsg.entries.append(_vsg_entry(entry))
        except _Invalid as exc:
            p.error(entry[0], f"virtual_server_group {vsg.name}: {exc}")
    cfg.virtual_server_groups[vsg.name] = vsg


def _vsg_entry(entry: List[Token]) -> VirtualServerGroupEntry:
    words = [t.text for t in entry]
    if words[0] == "fwmark":
        if len(words) < 2:
            raise _Invalid("fwmark needs a number")
        family = 6 if len(words) > 2 and words[2] == "inet6" else 4
        return VirtualServerGroupEntry(fwmark=_parse_int(words[1], 1, 0xFFFFFFFF), family=family)
    port = _parse_port(words[1]) if len(words) > 1 else None
    text = words[0]
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise _Invalid(f"'{text}' is not an address range") from None
        return VirtualServerGroupEntry(first=net[0], last=net[-1], port=port, family=net.version)
    if "-" in text:
        left, _, right = text.partition("-")
        first = _parse_ip(left)
        if right.isdigit() and first.version == 4:
            last: IPAddress = ipaddress.IPv4Address((int(first) & ~0xFF) | _parse_int(right, 0, 255))
        elif first.version == 6 and re.fullmatch(r"[0-9a-fA-F]{1,4}", right):
            last = ipaddress.IPv6Address((int(first) & ~0xFFFF) | int(right, 16))
        else:
            last = _parse_ip(right)
        if last.version != first.version or last < first:  # type: ignore[operator]
            raise _Invalid(f"bad range '{text}'")
        return VirtualServerGroupEntry(first=first, last=last, port=port, family=first.version)
    first = _parse_ip(text)
    return VirtualServerGroupEntry(first=first, last=first, port=port, family=first.version)


def _top_virtual_server(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> VirtualServer:
    vs = VirtualServer(file=kw.file, line=kw.line)
    cfg.virtual_servers.append(vs)
    words = [a.text for a in args]
    try:
        if not words:
            raise _Invalid("needs 'IP PORT', 'fwmark N' or 'group NAME'")
        if words[0] == "fwmark":
            if len(words) < 2:
                raise _Invalid("fwmark needs a number")
            vs.fwmark = _parse_int(words[1], 1, 0xFFFFFFFF)
        elif words[0] == "group":
            if len(words) < 2:
                raise _Invalid("group needs a name")
            vs.group = words[1]
        else:
            vs.address = _parse_ip(words[0])
            if len(words) > 1:
                vs.port = _parse_port(words[1])
            else:
                vs.port = 0
    except _Invalid as exc:
        p.error(kw, f"virtual_server: {exc}")
    return vs


for _name, _handler, _sub in (
    ("global_defs", _top_global, "global_defs"),
    ("vrrp_instance", _top_instance, "vrrp_instance"),
    ("vrrp_script", _top_script, "vrrp_script"),
    ("vrrp_sync_group", _top_sync_group, "vrrp_sync_group"),
    ("track_file", _top_track_file, "track_file"),
    ("vrrp_track_file", _top_track_file, "track_file"),
    ("vrrp_track_process", _top_track_process, "vrrp_track_process"),
    ("bfd_instance", _top_bfd_instance, "bfd_instance"),
    ("virtual_server", _top_virtual_server, "virtual_server"),
):
    _kw("top", _name, _handler, (0, 1) if _name != "global_defs" else (0, 0), _sub)
KEYWORDS["top"]["virtual_server"].nargs = (0, 2)
_kw("top", "virtual_server_group", _top_vs_group, (1, 1),
    ValueBlock({"fwmark": 2}, starts_entry=lambda t: not t.isdigit() and t not in ("inet", "inet6")))
_kw("top", "static_ipaddress", _top_static_ipaddress, (0, 0), ValueBlock(_VIP_OPTIONS, _looks_like_address))
_kw("top", "static_routes", _top_static_routes, (0, 0), _LINE_BLOCK)
_kw("top", "static_rules", _top_static_rules, (0, 0), _LINE_BLOCK)
_kw("top", "interface_up_down_delays", _top_if_up_down_delays, (0, 0), _LINE_BLOCK)
_kw("top", "linkbeat_interfaces", _top_linkbeat_interfaces, (0, 0), _LINE_BLOCK)



def _top_ssl(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> SslConfig:
    if cfg.ssl is not None:
        p.warning(kw, "SSL context already specified - replacing")
    cfg.ssl = SslConfig()
    return cfg.ssl


_kw("top", "SSL", _top_ssl, (0, 0), "SSL")
for _name in ("password", "ca", "certificate", "key"):
    _kw("SSL", _name, _h_str(_name))


def _top_track_group(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> TrackGroup:
    group = TrackGroup(name=args[0].text, file=kw.file, line=kw.line)
    cfg.track_groups[group.name] = group
    return group


def _tg_group(p: _Parser, tg: TrackGroup, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    tg.group.extend(t.text for entry in entries for t in entry)


def _top_garp_group(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> GarpGroup:
    group = GarpGroup(file=kw.file, line=kw.line)
    cfg.garp_groups.append(group)
    return group


def _gg_interval(attr: str) -> Handler:
    def handler(p: _Parser, gg: GarpGroup, kw: Token, args: List[Token]) -> None:
        value = p.time_value(kw, args[0], 0, 4294)
        if value >= 1:
            p.warning(kw, f"The {kw.text} is very large - {args[0].text} seconds")
        setattr(gg, attr, value)
    return handler


def _gg_interface(p: _Parser, gg: GarpGroup, kw: Token, args: List[Token]) -> None:
    gg.interfaces.append(args[0].text)


def _gg_interfaces(p: _Parser, gg: GarpGroup, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    names = [t.text for entry in entries for t in entry]
    if not names:
        p.warning(kw, "Warning - empty garp_group interfaces block")
    gg.interfaces.extend(names)


_kw("top", "garp_group", _top_garp_group, (0, 0), "garp_group")
_kw("garp_group", "garp_interval", _gg_interval("garp_interval"))
_kw("garp_group", "gna_interval", _gg_interval("gna_interval"))
_kw("garp_group", "interface", _gg_interface)
_kw("garp_group", "interfaces", _gg_interfaces, (0, 0), ValueBlock())
_kw("top", "track_group", _top_track_group, (1, 1), "track_group")
_kw("track_group", "group", _tg_group, (0, 0), ValueBlock())
_accept_only("top", "child_wait_time")


def _top_net_namespace_ipvs(p: _Parser, cfg: Config, kw: Token, args: List[Token]) -> None:
    g = cfg.global_defs
    if g.net_namespace_ipvs is not None:
        p.warning(kw, f"Duplicate net_namespace_ipvs definition {args[0].text if args else ''} - ignoring")
        return
    name = args[0].text if args else ""  # keepalived: no name is the default namespace (that of pid 1)
    if name and (not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name) or name in (".", "..")):
        raise _Invalid(f"'{name}' cannot name a network namespace (letters, digits, '_', '-', '.')")
    g.net_namespace_ipvs = name


_kw("top", "net_namespace_ipvs", _top_net_namespace_ipvs, (0, 1))
_keepalived_ignores("top", "namespace_with_ipsets", "only the ipsets of its iptables build use it (an override for "
                    "namespaces on Linux < 3.13); its nftables firewall (Debian's build, and vrrpd's) has no ipsets")


def _top_global_attr(attr: str, flag: bool = False) -> Handler:
    """A top-level keyword that sets a global_defs value (keepalived reads these at either level)."""
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        g = getattr(obj, "global_defs", obj)
        if flag:
            setattr(g, attr, True)
            return
        name = args[0].text
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name) or name in (".", ".."):
            raise _Invalid(f"'{name}' cannot name a file (letters, digits, '_', '-', '.')")
        setattr(g, attr, name)
    return handler


_kw("top", "instance", _top_global_attr("instance_name"))
_kw("top", "net_namespace", _top_global_attr("net_namespace"))
_kw("top", "use_pid_dir", _top_global_attr("use_pid_dir", flag=True), (0, 0))

# -- global_defs ---------------------------------------------------------------------------------


def _g_email(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    g.notification_email.extend(t.text for e in entries for t in e)


def _g_smtp_server(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    g.smtp_server = args[0].text
    if len(args) > 1:
        g.smtp_port = _parse_port(args[1].text)


def _g_smtp_connect_timeout(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    g.smtp_connect_timeout = float(_parse_int(args[0].text, 0, 4294) or 1)


def _g_garp_interval(attr: str) -> Handler:
    def handler(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
        value = p.time_value(kw, args[0], 0.0, 4294.967295)
        if value == 0:
            p.warning(kw, f"{kw.text} 0: keepalived 2.2 rejects 0; read as no delay", f"remove the '{kw.text}' line")
        setattr(g, attr, value)
    return handler


def _g_mcast(attr: str, version: int) -> Handler:
    def handler(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
        addr = _parse_ip(args[0].text)
        if addr.version != version or not addr.is_multicast:
            raise _Invalid(f"'{args[0].text}' is not an IPv{version} multicast address")
        setattr(g, attr, addr)
    return handler


def _g_iptables(attr: str, warning: str = "") -> Handler:
    """A flag with optional words kept in `other` (vrrp_iptables IN OUT, lvs_flush_on_stop VS)."""
    def handler(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
        if warning:
            p.warning(kw, f"{kw.text}: {warning}", "write 'nftables' instead")
        setattr(g, attr, True)
        if args:
            g.other[kw.text] = [a.text for a in args]
    return handler


def _g_nftables(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    """nftables [NAME]: the no_accept table (keepalived: NAME defaults to `keepalived`; its first one wins)."""
    if g.nftables is not None:
        p.warning(kw, "nftables already specified - ignoring")
        return
    name = args[0].text if args else "keepalived"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,255}", name):
        raise _Invalid(f"'{name}' is not a valid nftables table name")
    g.nftables = name


def _g_rx_bufs_policy(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    """vrrp_rx_bufs_policy MTU|ADVERT|SIZE (keepalived: a size wins over a policy, MTU over ADVERT)."""
    words = [a.text.upper() for a in args]
    for a in args:
        if a.text.upper() not in ("MTU", "ADVERT"):
            g.vrrp_rx_bufs_size = _parse_int(a.text, 0, 0xFFFFFFFF)
    policies = [w for w in ("MTU", "ADVERT") if w in words]
    if g.vrrp_rx_bufs_size and policies:
        p.warning(kw, "Cannot set vrrp_rx_bufs_policy size and policy, ignoring policy")
        policies = []
    elif len(policies) == 2:
        p.warning(kw, "Cannot set both vrrp_rx_bufs_policy MTU and ADVERT, ignoring ADVERT")
    g.vrrp_rx_bufs_policy = policies[0] if policies else ""


def _g_script_user(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    g.script_user = args[0].text
    g.script_group = args[1].text if len(args) > 1 else None


def _g_lvs_timeouts(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    words = [a.text for a in args]
    if len(words) % 2:
        raise _Invalid("expects pairs: tcp|tcpfin|udp SECONDS")
    for name, value in zip(words[::2], words[1::2]):
        if name not in ("tcp", "tcpfin", "udp"):
            raise _Invalid(f"unknown protocol '{name}' (tcp, tcpfin or udp)")
        g.lvs_timeouts[name] = _parse_int(value, 0, 86400 * 31)


def _g_lvs_sync_daemon(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    """keepalived's lvs_syncd_handler: bad options are reported and skipped, the rest is kept."""
    if g.lvs_sync_daemon is not None:
        p.warning(kw, f"lvs_sync_daemon has already been specified as {g.lvs_sync_daemon.ifname} - ignoring")
        return
    if len(args[0].text) >= 16:
        p.warning(args[0], f"lvs_sync_daemon interface name '{args[0].text}' too long - ignoring")
        return
    sd = g.lvs_sync_daemon = LvsSyncDaemon(args[0].text, file=kw.file, line=kw.line)
    words = [a.text for a in args]
    limits = {"id": (0, 255), "maxlen": (1, 65535 - 20 - 8), "port": (1, 65535), "ttl": (1, 255)}
    i = 1
    while i < len(words):
        word, value = words[i], words[i + 1] if i + 1 < len(words) else None
        if word in limits or word in ("inst", "group"):
            i += 2
            if value is None:
                p.warning(args[i - 2], f"No value specified for lvs_sync_daemon {word} - ignoring")
            elif word == "inst":
                sd.instance = value
            elif word == "group":
                try:
                    group = ipaddress.ip_address(value)
                except ValueError:
                    group = None
                if group is None or not group.is_multicast:
                    p.warning(args[i - 1], f"lvs_sync_daemon group address {value} is not multicast - ignoring")
                else:
                    sd.group = group
            else:
                try:
                    number = _parse_int(value, *limits[word])
                except _Invalid:
                    p.warning(args[i - 1], f"Invalid lvs_sync_daemon {word} ({value}) - ignoring")
                    continue
                setattr(sd, "syncid" if word == "id" else word, number)
            continue
        if i == 1 and sd.instance is None:  # the old form: lvs_sync_daemon IF VRRP_INSTANCE [SYNCID]
            sd.instance = word
        elif i == 2 and word.isdigit():
            p.warning(args[i], 'Please use keyword "id" before lvs_sync_daemon SYNCID')
            sd.syncid = _parse_int(word, 0, 255)
        else:
            p.warning(args[i], f"Unknown option {word} specified for lvs_sync_daemon")
        i += 1


def parse_listen(text: str) -> Tuple[str, int]:
    """ADDRESS:PORT or [IPv6]:PORT -> (address, port); ValueError says what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"'{text}' is not ADDRESS:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"'{host}' is not an IP address (ADDRESS:PORT, [IPv6]:PORT)") from None
    if not port.isdigit() or not 0 <= int(port) <= 65535:  # 0: the kernel picks a free port
        raise ValueError(f"port '{port}' is not 0-65535")
    return str(address), int(port)


def _g_metrics_listen(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    try:
        parse_listen(args[0].text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    g.metrics_listen = args[0].text


def _g_version(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
    value = _parse_int(args[0].text, 2, 3)
    if isinstance(obj, GlobalDefs):
        obj.vrrp_version = value
    else:
        obj.version = value


_G = "global_defs"
_kw(_G, "notification_email", _g_email, (0, 0), ValueBlock())
_kw(_G, "notification_email_from", _h_str("notification_email_from"))
_kw(_G, "smtp_server", _g_smtp_server, (1, 2), accept=_is_number)
_kw(_G, "smtp_helo_name", _h_str("smtp_helo_name"), (0, 1))
_kw(_G, "smtp_connect_timeout", _g_smtp_connect_timeout)
_kw(_G, "router_id", _h_str("router_id"))
for _name in ("smtp_alert", "smtp_alert_vrrp", "smtp_alert_checker"):
    _kw(_G, _name, _h_flag(_name), (0, 1), accept=_is_bool_word)
for _name in ("no_email_faults", "vrrp_skip_check_adv_addr", "vrrp_strict", "vrrp_lower_prio_no_advert",
              "vrrp_higher_prio_send_advert", "vrrp_check_unicast_src", "v3_checksum_as_v2",
              "enable_script_security", "vrrp_notify_priority_changes", "lvs_flush", "vrrp_handover_on_stop",
              "log_unknown_vrids"):
    _kw(_G, _name, _h_flag(_name), (0, 1), accept=_is_bool_word)
_kw(_G, "lvs_flush_on_stop", _g_iptables("lvs_flush_on_stop"), (0, 1), accept=lambda t: t == "VS")
_kw(_G, "vrrp_iptables", _g_iptables("vrrp_iptables", "keepalived's nftables build (Debian's) says iptables is "
                                     "not supported and uses nftables; vrrpd uses nftables too"),
    (0, 2), accept=_not_keyword_of(_G))
_kw(_G, "vrrp_nftables", _g_iptables("vrrp_nftables"), (0, 1), accept=_not_keyword_of(_G))
_kw(_G, "nftables", _g_nftables, (0, 1), accept=_not_keyword_of(_G))
_kw(_G, "nftables_priority", _h_int("nftables_priority", -2 ** 31, 2 ** 31 - 1))
_kw(_G, "nftables_counters", _h_flag("nftables_counters"), (0, 0))
_kw(_G, "nftables_ifindex", _h_flag("nftables_ifindex"), (0, 0))
_kw(_G, "disable_local_igmp", _h_flag("disable_local_igmp"), (0, 0))
_kw(_G, "linkbeat_use_polling", _h_flag("linkbeat_use_polling"), (0, 0))
for _name in ("vrrp_netlink_cmd_rcv_bufs", "vrrp_netlink_monitor_rcv_bufs", "process_monitor_rcv_bufs"):
    _kw(_G, _name, _h_int(_name, 0, 0xFFFFFFFF))
    _kw(_G, _name + "_force", _h_flag(_name + "_force"), (0, 1), accept=_is_bool_word)
_kw(_G, "vrrp_rx_bufs_policy", _g_rx_bufs_policy, (1, None))
_kw(_G, "vrrp_rx_bufs_multiplier", _h_int("vrrp_rx_bufs_multiplier", 1, 0xFFFFFFFF))
_kw(_G, "vrrp_garp_interval", _g_garp_interval("vrrp_garp_interval"))
_kw(_G, "vrrp_gna_interval", _g_garp_interval("vrrp_gna_interval"))
_kw(_G, "vrrp_mcast_group4", _g_mcast("vrrp_mcast_group4", 4))
_kw(_G, "vrrp_mcast_group6", _g_mcast("vrrp_mcast_group6", 6))
_kw(_G, "vrrp_version", _g_version)
_kw(_G, "vrrp_garp_master_delay", _h_time("vrrp_garp_master_delay", 0, 255))
_kw(_G, "vrrp_garp_master_repeat", _h_int("vrrp_garp_master_repeat", 0, 255))
_kw(_G, "vrrp_garp_master_refresh", _h_time("vrrp_garp_master_refresh", 0, 4294))
_kw(_G, "vrrp_garp_master_refresh_repeat", _h_int("vrrp_garp_master_refresh_repeat", 0, 255))
_kw(_G, "vrrp_garp_lower_prio_delay", _h_time("vrrp_garp_lower_prio_delay", 0, 255))
_kw(_G, "vrrp_garp_lower_prio_repeat", _h_int("vrrp_garp_lower_prio_repeat", 0, 255))
_kw(_G, "vrrp_startup_delay", _h_time("vrrp_startup_delay", 0, 3600))
_kw(_G, "script_user", _g_script_user, (1, 2), accept=_not_keyword_of(_G))
_kw(_G, "notify_fifo", _h_str("notify_fifo"), (1, 3))
_kw(_G, "vrrp_notify_fifo", _h_str("vrrp_notify_fifo"), (1, 3))
_kw(_G, "lvs_notify_fifo", _h_str("lvs_notify_fifo"), (1, 3))
for _name in ("notify_fifo_script", "vrrp_notify_fifo_script", "lvs_notify_fifo_script"):
    _kw(_G, _name, _h_cmd(_name), (1, None))
_kw(_G, "lvs_timeouts", _g_lvs_timeouts, (2, 6))
_kw(_G, "lvs_sync_daemon", _g_lvs_sync_daemon, (1, None))


def _g_nftables_ipvs(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    if g.nftables_ipvs is not None:
        p.warning(kw, "ipvs nftables already specified - ignoring")
        return
    name = args[0].text if args else "keepalived_ipvs"
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", name):
        raise _Invalid(f"'{name}' cannot name an nftables table")
    g.nftables_ipvs = name


def _g_nftables_ipvs_start_fwmark(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    try:
        g.nftables_ipvs_start_fwmark = _parse_int(args[0].text, 1, 0xFFFFFFFF)
    except _Invalid:
        p.warning(args[0], f"invalid ipvs nftables start_fwmark priority '{args[0].text}'")


_kw(_G, "nftables_ipvs", _g_nftables_ipvs, (0, 1))
_kw(_G, "nftables_ipvs_priority", _h_int("nftables_ipvs_priority", -2147483648, 2147483647))
_kw(_G, "nftables_ipvs_start_fwmark", _g_nftables_ipvs_start_fwmark)
_kw(_G, "default_interface", _h_str("default_interface"))
_kw(_G, "instance", _top_global_attr("instance_name"))
_kw(_G, "net_namespace", _top_global_attr("net_namespace"))
_kw(_G, "data_use_instance", _h_flag("data_use_instance"), (0, 1), accept=_is_bool_word)
_kw(_G, "state_dump_file", _h_str("state_dump_file"))


def _g_dump_file(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    if not args or not args[0].text:  # keepalived says so and runs on
        p.warning(kw, f"{kw.text} requires a non-empty path - ignoring")
        return
    setattr(g, kw.text, args[0].text)


def _g_json_version(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    if not args:
        p.warning(kw, "json_version requires version - ignoring")
        return
    if args[0].text not in ("1", "2"):
        p.warning(args[0], f"Invalid JSON version '{args[0].text}' (1 or 2) - ignoring")
        return
    g.json_version = int(args[0].text)


_kw(_G, "stats_dump_file", _g_dump_file, (0, 1))
_kw(_G, "json_dump_file", _g_dump_file, (0, 1))


def _g_reload_check_config(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    g.reload_check_config = args[0].text if args else "/dev/null"


def _g_reload_file(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    g.reload_file = args[0].text if args else ""


def _g_reload_repeat(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    g.reload_repeat = True  # keepalived sets it whatever follows


def _g_config_save_dir(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    path = args[0].text
    if os.path.exists(path) and not os.path.isdir(path):  # keepalived says so and runs on without it
        p.warning(args[0], f"config_save_dir {path} exists and is not a directory - ignoring")
        return
    g.config_save_dir = path[:-1] if len(path) > 1 and path.endswith("/") else path


def _g_include_check(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    """The lexer applies include_check to the includes after it (include_check_flags); here its words are checked."""
    _flags, problems = include_check_flags([a.text for a in args], 0)
    for problem in problems:
        p.warning(kw, problem)


_kw(_G, "json_version", _g_json_version, (0, 1))
_kw(_G, "reload_check_config", _g_reload_check_config, (0, 1))
_kw(_G, "reload_file", _g_reload_file, (0, 1))
_kw(_G, "reload_time_file", _h_str("reload_time_file"))
_kw(_G, "reload_repeat", _g_reload_repeat, (0, None))
_kw(_G, "config_save_dir", _g_config_save_dir)
_kw(_G, "include_check", _g_include_check, (0, None))
_kw(_G, "dynamic_interfaces", _h_flag("dynamic_interfaces"), (0, 1), accept=lambda t: t == "allow_if_changes")
_kw(_G, "iproute_etc_dir", _h_str("iproute_etc_dir"))
_kw(_G, "iproute_usr_dir", _h_str("iproute_usr_dir"))
_kw(_G, "vrrp_down_timer_adverts", _h_int("vrrp_down_timer_adverts", 1, 100))
_kw(_G, "metrics_listen", _g_metrics_listen)
_kw(_G, "vrrp_delay_after_boot", _h_time("vrrp_delay_after_boot", 0.001, 4294.967))
_kw(_G, "vrrp_owner_ignore_adverts", _h_flag("vrrp_owner_ignore_adverts"), (0, 1), accept=_is_bool_word)


def _garp_extra_if(attr: str, lo: int) -> Handler:
    """garp_extra_if [all] SECS (vrrp_garp_extra_if in global_defs; the old name vmac_garp_intvl is deprecated)."""
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        words = [a.text for a in args]
        if kw.text.endswith("vmac_garp_intvl"):
            p.warning(kw, f"'{kw.text}' is deprecated", f"write '{attr}'")
        every = words[0] == "all"
        if every:
            words = words[1:]
        if len(words) != 1:
            raise _Invalid("needs SECS (garp_extra_if [all] SECS)")
        setattr(obj, attr, float(_parse_int(words[0], lo, 86400)))
        setattr(obj, attr + "_all", every)
    return handler


def _g_min_garp(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    """vrrp_min_garp: one gratuitous ARP/NA on becoming MASTER, no repeat, no refresh (where not already set)."""
    if args and not _parse_bool(args[0].text):
        return
    defaults = GlobalDefs()
    for attr, value in (("vrrp_garp_master_repeat", 1), ("vrrp_garp_master_refresh", 0.0),
                        ("vrrp_garp_master_refresh_repeat", 0), ("vrrp_garp_master_delay", 0.0)):
        if getattr(g, attr) == getattr(defaults, attr):
            setattr(g, attr, value)


_kw(_G, "vrrp_min_garp", _g_min_garp, (0, 1), accept=_is_bool_word)
_kw(_G, "vrrp_garp_extra_if", _garp_extra_if("vrrp_garp_extra_if", 1), (1, 2))
_kw(_G, "vrrp_vmac_garp_intvl", _garp_extra_if("vrrp_garp_extra_if", 1), (1, 2))
_kw(_G, "startup_script", _h_cmd("startup_script"), (1, None))
_kw(_G, "shutdown_script", _h_cmd("shutdown_script"), (1, None))
_kw(_G, "startup_script_timeout", _h_time("startup_script_timeout", 1, 1000))
_kw(_G, "shutdown_script_timeout", _h_time("shutdown_script_timeout", 1, 1000))
_UMASK_BITS = {"IRUSR": 0o400, "IWUSR": 0o200, "IXUSR": 0o100, "IRGRP": 0o40, "IWGRP": 0o20, "IXGRP": 0o10,
               "IROTH": 0o4, "IWOTH": 0o2, "IXOTH": 0o1, "IRWXU": 0o700, "IRWXG": 0o70, "IRWXO": 0o7}


def _g_umask(p: _Parser, g: GlobalDefs, kw: Token, args: List[Token]) -> None:
    """umask NUMBER (C's strtol base 0: 077 is octal) or umask IWGRP|IWOTH (keepalived's names)."""
    text = " ".join(a.text for a in args)
    if text[:1].isdigit():
        try:
            value = int(text, 8) if re.fullmatch(r"0[0-7]*", text) else int(text, 0)
        except ValueError:
            raise _Invalid(f"invalid umask value {text}") from None
    else:
        value = 0
        for word in filter(None, re.split(r"[|\s]+", text)):
            if word not in _UMASK_BITS:
                raise _Invalid(f"unknown umask bit '{word}' ({' '.join(_UMASK_BITS)})")
            value |= _UMASK_BITS[word]
    if not 0 <= value <= 0o777:
        raise _Invalid(f"invalid umask value {text}")
    g.umask = value


_kw(_G, "umask", _g_umask, (1, None))
_kw(_G, "vmac_prefix", _h_str("vmac_prefix"))
_kw(_G, "vmac_addr_prefix", _h_str("vmac_addr_prefix"))
_kw(_G, "fifo_write_vrrp_states_on_reload", _h_flag("fifo_write_vrrp_states_on_reload"), (0, 1),
    accept=_is_bool_word)
for _name in ("checker_log_all_failures", "no_checker_emails", "rs_init_notifies"):
    _kw(_G, _name, _h_flag(_name), (0, 1), accept=_is_bool_word)
_accept_only(_G, "vrrp_ipsets max_auto_priority min_auto_priority_delay "
             "vrrp_priority checker_priority bfd_priority vrrp_rt_priority checker_rt_priority bfd_rt_priority "
             "vrrp_rlimit_rttime checker_rlimit_rttime bfd_rlimit_rttime vrrp_cpu_affinity checker_cpu_affinity "
             "bfd_cpu_affinity vrrp_no_swap checker_no_swap bfd_no_swap enable_snmp_vrrp enable_snmp_keepalived "
             "enable_snmp_checker enable_snmp_rfc enable_snmp_rfcv2 enable_snmp_rfcv3 snmp_socket enable_traps "
             "enable_dbus enable_dbus_instance dbus_service_name random_seed "
             "lvs_netlink_cmd_rcv_bufs lvs_netlink_cmd_rcv_bufs_force lvs_netlink_monitor_rcv_bufs "
             "lvs_netlink_monitor_rcv_bufs_force "
             "process_names process_name "
             "vrrp_process_name checker_process_name bfd_process_name "
             "tmp_config_directory")

# -- vrrp_instance ---------------------------------------------------------------------------------


def _i_old_unicast_checksum(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    """keepalived 1.3.6 and older summed a unicast VRRPv3 advert's pseudo-header with the multicast group as its
    destination. `old_unicast_checksum`: send and expect that sum; `never`: do not switch to it on hearing a peer
    that uses it (keepalived's default switches)."""
    inst.old_unicast_checksum = "never" if args else "config"


def _i_state(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    text = args[0].text
    if text == "MASTER":
        inst.state = State.MASTER
    elif text == "BACKUP":
        if inst.state is State.MASTER:
            p.warning(kw, "state BACKUP after state MASTER: keepalived keeps MASTER and so does vrrpd")
        else:
            inst.state = State.BACKUP
    else:
        hint = f"write 'state {text.upper()}'" if text.upper() in ("MASTER", "BACKUP") else "MASTER or BACKUP"
        p.warning(args[0], f"unknown state '{text}': keepalived starts the instance as BACKUP, and so does vrrpd",
                  hint)
        inst.state = State.BACKUP


def _i_priority(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    try:
        inst.priority = _parse_int(args[0].text, 1, 255)
    except _Invalid as exc:
        p.warning(args[0], f"priority: {exc}; keepalived uses the default 100, and so does vrrpd", "priority 1..255")
        inst.priority = 100


def _i_unicast_ttl(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    value = _parse_int(args[0].text, 0, 255)
    if value == 0:
        p.warning(args[0], "unicast_ttl 0: keepalived sends with the kernel's default TTL; vrrpd sends 255",
                  "unicast_ttl 1..255")
        value = 255
    inst.unicast_ttl = value


def _i_src_ip(attr: str) -> Handler:
    def handler(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
        text = args[0].text
        if "/" in text:
            try:
                addr = ipaddress.ip_interface(text).ip
            except ValueError:
                raise _Invalid(f"'{text}' is not an IP address") from None
            p.warning(args[0], f"{kw.text} '{text}': keepalived ignores the prefix and uses {addr}, "
                      "and so does vrrpd", f"write '{kw.text} {addr}'")
            setattr(inst, attr, addr)
            return
        setattr(inst, attr, _parse_ip(text))
    return handler


def _i_advert_int(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    inst.advert_int = p.time_value(kw, args[0], 0.01, 255.0)


def _i_auth(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> VrrpInstance:
    return inst


def _upper_case_word(p: _Parser, kw: Token, tok: Token, allowed: Tuple[str, ...]) -> str:
    """A word keepalived only knows in upper case: accept any case, warn when it is not upper case."""
    text = tok.text.upper()
    if text not in allowed:
        raise _Invalid(f"'{tok.text}' is not {' or '.join(allowed)}")
    if tok.text != text:
        p.warning(tok, f"{kw.text} '{tok.text}': keepalived needs upper case", f"write '{kw.text} {text}'")
    return text


def _a_type(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    text = args[0].text
    if text in ("PASS", "AH"):
        inst.auth_type = AuthType[text]
        return
    hint = f"write 'auth_type {text.upper()}'" if text.upper() in ("PASS", "AH") else "PASS or AH"
    p.warning(args[0], f"unknown authentication type '{text}': keepalived sends adverts without authentication, "
              "and so does vrrpd", hint)


def _a_pass(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    raw = args[0].text.encode("utf-8")
    if len(raw) > 8:
        used = raw[:8].decode("utf-8", "replace")
        p.warning(args[0], f"auth_pass '{args[0].text}' is longer than 8 characters; only '{used}' is used",
                  "keepalived truncates it too; write the 8 characters")
    inst.auth_pass = raw[:8]


def _i_auth_hmac(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> AuthHmacConfig:
    inst.auth_hmac = AuthHmacConfig(line=kw.line)
    return inst.auth_hmac


AUTH_HMAC_KEY_FILE_MAX = 138  # keepalived: a key file of 139 bytes or more is "too large"


def _auth_hmac_key_bytes(text: str, from_file: bool = False) -> bytes:
    """A key as keepalived reads it: `hex:HEX`, `file:PATH` (holding one of the other forms) or raw text."""
    if text.startswith("hex:"):
        try:
            return bytes.fromhex(text[4:])
        except ValueError:
            raise _Invalid(f"'{_short(text)}' is not hex") from None
    if text.startswith("file:") and not from_file:
        path = text[5:]
        try:
            st = os.stat(path)
            if st.st_mode & 0o077:
                raise _Invalid(f"key file {path} is accessible by group or others (security)")
            if st.st_size > AUTH_HMAC_KEY_FILE_MAX:
                raise _Invalid(f"key file {path} is too large")
            with open(path, "rb") as fh:
                raw = fh.read().rstrip(b"\r\n")
        except OSError as exc:
            raise _Invalid(f"cannot read key file {path}: {exc.strerror}") from None
        return _auth_hmac_key_bytes(raw.decode("latin-1"), from_file=True)
    return text.encode("latin-1", "replace")


def _ah_key(p: _Parser, ah: AuthHmacConfig, kw: Token, args: List[Token]) -> None:
    key_id = _parse_int(args[0].text, 1, 255)
    if key_id in ah.keys:
        raise _Invalid(f"duplicate key id {key_id}")
    key = _auth_hmac_key_bytes(args[1].text)
    if not 32 <= len(key) <= 64:
        raise _Invalid(f"auth_hmac key {key_id} length {len(key)} not in range [32, 64]")
    ah.keys[key_id] = key


def _ah_choice(attr: str, choices: Tuple[str, ...]) -> Handler:
    def handler(p: _Parser, ah: AuthHmacConfig, kw: Token, args: List[Token]) -> None:
        if args[0].text not in choices:
            raise _Invalid(f"'{args[0].text}' is not {' or '.join(choices)}")
        setattr(ah, attr, args[0].text)
    return handler


def _i_vips(attr: str) -> Handler:
    def handler(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
        own_list(inst, attr).extend(_vip_entries(p, entries))
    return handler


def _i_track(attr: str, lo: int = -253, hi: int = 253) -> Handler:
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
        own_list(obj, attr).extend(_track_refs(p, entries, lo, hi))
    return handler


def _i_unicast_peer(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    for entry in entries:
        try:
            peer = UnicastPeer(address=_parse_ip(entry[0].text))
            words = [t.text for t in entry[1:]]
            for name, value in zip(words[::2], words[1::2]):
                setattr(peer, name, _parse_int(value, 0, 255))
            own_list(inst, "unicast_peer").append(peer)
        except _Invalid as exc:
            p.error(entry[0], f"unicast_peer: {exc}")


def _i_use_vmac(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    inst.use_vmac = True
    if args and ":" not in args[0].text:
        inst.vmac_name = args[0].text


def _i_use_ipvlan(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    """use_ipvlan [NAME] [ADDRESS[/PREFIX]] [bridge|private|vepa] (keepalived's vrrp_ipvlan_handler)."""
    if inst.use_ipvlan:
        p.warning(kw, f"({inst.name}) use_ipvlan already specified")
        return
    inst.use_ipvlan = True
    had_flags = False
    for tok in args:
        word = tok.text
        if word in ("bridge", "private", "vepa"):
            if had_flags:
                p.warning(tok, f"({inst.name}) ipvlan type already specified - ignoring '{word}'")
            inst.ipvlan_flags = inst.ipvlan_flags if had_flags else {"bridge": 0, "private": 1, "vepa": 2}[word]
            had_flags = True
            continue
        try:
            addr = ipaddress.ip_interface(word)
        except ValueError:
            if inst.vmac_name:
                p.warning(tok, f"({inst.name}) IPVLAN interface already specified - ignoring '{word}'")
            elif len(word) > 15:
                p.warning(tok, f"({inst.name}) IPVLAN interface name '{word}' too long - ignoring")
            else:
                inst.vmac_name = word
            continue
        if inst.ipvlan_addr is not None:
            p.warning(tok, f"({inst.name}) ipvlan address already specified - ignoring '{word}'")
            continue
        inst.ipvlan_addr = addr
        if inst.mcast_src_ip is None and inst.unicast_src_ip is None:
            inst.mcast_src_ip = addr.ip  # keepalived: "We also want to use this address as the source address"


def _i_vrf(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    """vrf NAME (keepalived's vrrp_vrf_handler): for a unicast instance without `interface`, whose VRRP sockets are
    then bound to the VRF device, so that its adverts are routed in the VRF's table."""
    name = args[0].text
    if len(name) > 15:
        p.warning(kw, f"({inst.name}) VRF interface name '{name}' too long - ignoring")
    elif inst.interface is not None:
        p.warning(kw, f"({inst.name}) Cannot specify VRF interface and interface - ignoring")
    elif inst.vrf is not None:
        p.warning(kw, f"({inst.name}) VRF interface already specified as '{inst.vrf}' - ignoring")
    else:
        inst.vrf = name


def _i_accept(value: bool) -> Handler:
    def handler(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
        inst.accept = value
    return handler


_I = "vrrp_instance"
_kw(_I, "state", _i_state)
_kw(_I, "interface", _h_str("interface"))
_kw(_I, "virtual_router_id", _h_int("virtual_router_id", 1, 255))
_kw(_I, "priority", _i_priority)
_kw(_I, "advert_int", _i_advert_int)
_kw(_I, "version", _g_version)
_kw(_I, "authentication", _i_auth, (0, 0), "authentication")
_kw("authentication", "auth_type", _a_type)
_kw("authentication", "auth_pass", _a_pass)
_kw(_I, "auth_hmac", _i_auth_hmac, (0, 0), "auth_hmac")
_kw("auth_hmac", "key", _ah_key, (2, 2))
_kw("auth_hmac", "active_key", _h_int("active_key", 1, 255))
_kw("auth_hmac", "anti_replay", _ah_choice("anti_replay", ("time", "monotonic")))
_kw("auth_hmac", "time_window", _h_int("time_window", 1, 300))
_kw("auth_hmac", "mode", _ah_choice("mode", ("enforce", "permissive", "receive-only")))
_kw(_I, "virtual_ipaddress", _i_vips("virtual_ipaddress"), (0, 0), ValueBlock(_VIP_OPTIONS, _looks_like_address))
_kw(_I, "virtual_ipaddress_excluded", _i_vips("virtual_ipaddress_excluded"), (0, 0),
    ValueBlock(_VIP_OPTIONS, _looks_like_address))
_kw(_I, "track_interface", _i_track("track_interface"), (0, 0), ValueBlock(_TRACK_OPTIONS))
_kw(_I, "track_script", _i_track("track_script"), (0, 0), ValueBlock(_TRACK_OPTIONS))
_kw(_I, "track_file", _i_track("track_file", -2147483647, 2147483647), (0, 0), ValueBlock(_TRACK_OPTIONS))
_kw(_I, "track_process", _i_track("track_process", -254, 254), (0, 0), ValueBlock(_TRACK_OPTIONS))
_kw(_I, "unicast_src_ip", _i_src_ip("unicast_src_ip"))
_kw(_I, "unicast_peer", _i_unicast_peer, (0, 0), ValueBlock({"min_ttl": 1, "max_ttl": 1}, _looks_like_address))
_kw(_I, "unicast_ttl", _i_unicast_ttl)
_kw(_I, "mcast_src_ip", _i_src_ip("mcast_src_ip"))


def _i_lvs_sync_interface(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    """The deprecated form of `lvs_sync_daemon IF INSTANCE` (keepalived's vrrp_lvs_syncd_handler)."""
    p.warning(kw, f"({inst.name}) Specifying lvs_sync_daemon_interface against a vrrp is deprecated.",
              "use global_defs { lvs_sync_daemon IF inst INSTANCE }")
    g = p.config.global_defs
    if g.lvs_sync_daemon is not None:
        p.warning(kw, f"({inst.name}) lvs_sync_daemon_interface has already been specified as "
                  f"{g.lvs_sync_daemon.ifname} - ignoring")
    elif args:
        g.lvs_sync_daemon = LvsSyncDaemon(args[0].text, instance=inst.name, file=kw.file, line=kw.line)
_kw(_I, "nopreempt", _h_flag("nopreempt"), (0, 0))
_kw(_I, "preempt", _h_flag("nopreempt", False), (0, 0))
_kw(_I, "preempt_delay", _h_time("preempt_delay", 0, 1000))
for _name in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify_deleted", "notify",
              "notify_master_rx_lower_pri"):
    _kw(_I, _name, _h_cmd(_name), (0 if _name == "notify_deleted" else 1, None))
_kw(_I, "smtp_alert", _h_flag("smtp_alert"), (0, 1), accept=_is_bool_word)
_kw(_I, "garp_master_delay", _h_time("garp_master_delay", 0, 255))
_kw(_I, "garp_master_repeat", _h_int("garp_master_repeat", 0, 255))
_kw(_I, "garp_master_refresh", _h_time("garp_master_refresh", 0, 4294))
_kw(_I, "garp_master_refresh_repeat", _h_int("garp_master_refresh_repeat", 0, 255))
_kw(_I, "garp_lower_prio_delay", _h_time("garp_lower_prio_delay", 0, 255))
_kw(_I, "garp_lower_prio_repeat", _h_int("garp_lower_prio_repeat", 0, 255))
_kw(_I, "use_vmac", _i_use_vmac, (0, 3), accept=_not_keyword_of(_I))
_kw(_I, "use_ipvlan", _i_use_ipvlan, (0, 4), accept=_not_keyword_of(_I))
_kw(_I, "vmac_xmit_base", _h_flag("vmac_xmit_base"), (0, 0))
_kw(_I, "native_ipv6", _h_flag("native_ipv6"), (0, 0))
_kw(_I, "accept", _i_accept(True), (0, 0))
_kw(_I, "no_accept", _i_accept(False), (0, 0))
for _name in ("skip_check_adv_addr", "strict_mode", "lower_prio_no_advert", "higher_prio_send_advert",
              "v3_checksum_as_v2"):
    _kw(_I, _name, _h_flag(_name), (0, 1), accept=_is_bool_word)
_kw(_I, "dont_track_primary", _h_flag("dont_track_primary"), (0, 0))
_kw(_I, "virtual_routes", _i_routes, (0, 0), _LINE_BLOCK)
_kw(_I, "virtual_rules", _i_rules, (0, 0), _LINE_BLOCK)
_kw(_I, "debug", _h_int("debug", 0, 4))
_kw(_I, "old_unicast_checksum", _i_old_unicast_checksum, (0, 1), accept=lambda t: t == "never")
_kw(_I, "use_vmac_addr", _h_flag("use_vmac_addr"), (0, 0))
_kw(_I, "vrf", _i_vrf)
KEYWORDS[_I]["lvs_sync_daemon_interface"] = Keyword("lvs_sync_daemon_interface", _i_lvs_sync_interface, (1, 1))


def _i_mcast_dst_ip(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    addr = _parse_ip(args[0].text)
    if not addr.is_multicast or addr.version == 6 and (addr.packed[1] & 0x0F) != 2:
        raise _Invalid(f"'{addr}' is not a multicast address" + (" of link-local scope (ffX2::)"
                                                                 if addr.version == 6 and addr.is_multicast else ""))
    inst.mcast_dst_ip = addr


_kw(_I, "mcast_dst_ip", _i_mcast_dst_ip)
_kw(_I, "garp_extra_if", _garp_extra_if("garp_extra_if", 0), (1, 2))
_kw(_I, "vmac_garp_intvl", _garp_extra_if("garp_extra_if", 0), (1, 2))
_kw(_I, "notify_priority_changes", _h_flag("notify_priority_changes"), (0, 1), accept=_is_bool_word)
_kw(_I, "down_timer_adverts", _h_int("down_timer_adverts", 1, 100))
_kw(_I, "kernel_rx_buf_size", _h_int("kernel_rx_buf_size", 0, 0xFFFFFFFF))
for _name in ("check_unicast_src", "promote_secondaries", "track_src_ip", "unicast_fault_no_peer",
              "no_virtual_ipaddress"):
    _kw(_I, _name, _h_flag(_name), (0, 0))
_kw(_I, "track_bfd", _i_track("track_bfd"), (0, 0), ValueBlock(_TRACK_OPTIONS))
_kw(_I, "owner_ignore_adverts", _h_flag("owner_ignore_adverts"), (0, 1), accept=_is_bool_word)


def _i_timer_expired_backup(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    inst.timer_expired_backup = _parse_int(args[0].text, 1, 254) if args else 254


for _name in ("timer_expired_backup", "thread_timer_expired"):
    _kw(_I, _name, _i_timer_expired_backup, (0, 1), accept=_is_number)

# -- vrrp_script, track_file, vrrp_track_process ----------------------------------------------------


def _s_user(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
    obj.user = args[0].text
    if len(args) > 1 and hasattr(obj, "group"):
        obj.group = args[1].text


_S = "vrrp_script"
_kw(_S, "script", _h_cmd("script"), (0, None))
_kw(_S, "interval", _h_time("interval", 0, 4294, zero_to=1.0))
_kw(_S, "timeout", _h_time("timeout", 0, 4294))
_kw(_S, "weight", _weight_reverse(-253, 253), (1, 2), accept=lambda t: t in ("reverse", "noreverse"))
_kw(_S, "rise", _h_int("rise", 1, 2147483647))
_kw(_S, "fall", _h_int("fall", 1, 2147483647))
_kw(_S, "user", _s_user, (1, 2))
_kw(_S, "init_fail", _h_flag("init_fail"), (0, 0))


def _tf_init(p: _Parser, tf: TrackFile, kw: Token, args: List[Token]) -> None:
    tf.init_file = 0
    for a in args:
        if a.text == "overwrite":
            tf.init_file_overwrite = True
        else:
            tf.init_file = _parse_int(a.text, -2147483647, 2147483647)


_kw("track_file", "file", _h_str("path"))
_kw("track_file", "weight", _weight_reverse(-2147483647, 2147483647), (1, 2), accept=lambda t: t == "reverse")
_kw("track_file", "init_file", _tf_init, (0, 2))

_P = "vrrp_track_process"
_kw(_P, "process", _h_words("process"), (1, None))
_kw(_P, "param_match", _h_str("param_match"), (0, 1))
_kw(_P, "weight", _weight_reverse(-254, 254), (1, 2), accept=lambda t: t == "reverse")
_kw(_P, "quorum", _h_int("quorum", 1, 65535))
_kw(_P, "delay", _h_time("delay", 0, 3600))
_kw(_P, "full_command", _h_flag("full_command"), (0, 0))
_kw(_P, "quorum_max", _h_int("quorum_max", 0, 65535))
_kw(_P, "fork_delay", _h_time("fork_delay", 0, 3600))
_kw(_P, "terminate_delay", _h_time("terminate_delay", 0, 3600))

# -- vrrp_sync_group ---------------------------------------------------------------------------------


def _sg_group(p: _Parser, sg: SyncGroup, kw: Token, args: List[Token], entries: List[List[Token]]) -> None:
    if sg.group:
        p.warning(kw, f"vrrp_sync_group {sg.name}: a second group list: keepalived ignores it, and so does vrrpd",
                  "list every member in one group { ... }")
        return
    for entry in entries:
        for t in entry:
            sg.group.append(t.text)
            p.member_lines[(id(sg), t.text)] = t


_SG = "vrrp_sync_group"
_kw(_SG, "group", _sg_group, (0, 0), ValueBlock())
_kw(_SG, "track_interface", _i_track("track_interface"), (0, 0), ValueBlock(_TRACK_OPTIONS))
_kw(_SG, "track_script", _i_track("track_script"), (0, 0), ValueBlock(_TRACK_OPTIONS))
_kw(_SG, "track_file", _i_track("track_file", -2147483647, 2147483647), (0, 0), ValueBlock(_TRACK_OPTIONS))
_kw(_SG, "track_process", _i_track("track_process", -254, 254), (0, 0), ValueBlock(_TRACK_OPTIONS))
for _name in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
    _kw(_SG, _name, _h_cmd(_name), (1, None))
_kw(_SG, "smtp_alert", _h_flag("smtp_alert"), (0, 1), accept=_is_bool_word)


def _sg_tracking_weight(p: _Parser, sg: SyncGroup, kw: Token, args: List[Token]) -> None:
    if kw.text == "global_tracking":
        p.warning(kw, f"({sg.name}) global_tracking is deprecated. Use track_interface/script/file on the sync group")
    sg.sync_group_tracking_weight = True


_kw(_SG, "global_tracking", _sg_tracking_weight, (0, 0))
_kw(_SG, "sync_group_tracking_weight", _sg_tracking_weight, (0, 0))
_kw(_SG, "notify_priority_changes", _h_flag("notify_priority_changes"), (0, 1), accept=_is_bool_word)


def _deprecated(message: str, hint: str = "") -> Handler:
    """Accepted, not acted upon, with keepalived's deprecation said as a warning."""
    def handler(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
        _h_other(p, obj, kw, args)
        p.warning(kw, f"{kw.text} is deprecated ({message}); vrrpd ignores it", hint)
    return handler


def _i_linkbeat(p: _Parser, inst: VrrpInstance, kw: Token, args: List[Token]) -> None:
    inst.linkbeat_use_polling = True
    p.warning(kw, f"({inst.name}) 'linkbeat_use_polling' in vrrp instance deprecated - use linkbeat_interfaces "
              "block", "keepalived still polls the interface, and so does vrrpd")


_kw(_I, "linkbeat_use_polling", _i_linkbeat, (0, 0))
_kw(_SG, "track_bfd", _i_track("track_bfd"), (0, 0), ValueBlock(_TRACK_OPTIONS))

# -- bfd_instance (keepalived's bfd_parser.c) --------------------------------------------------------


def _bfd_ms(attr: str, lo: float) -> Handler:
    """A time in milliseconds with microsecond resolution (keepalived: `min_rx 3.312`)."""
    def handler(p: _Parser, bfd: BfdInstance, kw: Token, args: List[Token]) -> None:
        try:
            value = round(float(args[0].text), 3)
        except ValueError:
            raise _Invalid(f"'{args[0].text}' is not a number of milliseconds") from None
        if not lo <= value <= 4294967:
            raise _Invalid(f"'{args[0].text}' outside range [{lo:g}, 4294967] ms")
        if attr == "min_rx" and value > 10000:
            p.warning(args[0], f"min_rx {value:g} ms is larger than max sensible (10000 ms)")
        setattr(bfd, attr, value)
    return handler


def _bfd_max_hops(p: _Parser, bfd: BfdInstance, kw: Token, args: List[Token]) -> None:
    value = _parse_int(args[0].text, -1, 255)
    bfd.max_hops = 255 if value == -1 else value


def _bfd_events(to: str) -> Handler:
    def handler(p: _Parser, bfd: BfdInstance, kw: Token, args: List[Token]) -> None:
        seen = p.where(bfd, "vrrp" if to == "checker" else "checker")
        # the first of `vrrp` / `checker` names the only listener, a second adds the other one
        bfd.to_vrrp, bfd.to_checker = (to == "vrrp" or (seen is not None and bfd.to_vrrp),
                                       to == "checker" or (seen is not None and bfd.to_checker))
    return handler


_B = "bfd_instance"
_kw(_B, "neighbor_ip", _h_ip("neighbor_ip"))
_kw(_B, "neighbour_ip", _h_ip("neighbor_ip"))
_kw(_B, "source_ip", _h_ip("source_ip"))
_kw(_B, "min_rx", _bfd_ms("min_rx", 1))
_kw(_B, "min_tx", _bfd_ms("min_tx", 1))
_kw(_B, "idle_tx", _bfd_ms("idle_tx", 1000))
_kw(_B, "multiplier", _h_int("multiplier", 1, 255))
_kw(_B, "passive", _h_flag("passive"), (0, 0))
_kw(_B, "ttl", _h_int("ttl", 1, 255))
_kw(_B, "hoplimit", _h_int("ttl", 1, 255))
_kw(_B, "max_hops", _bfd_max_hops)
_kw(_B, "multihop", _h_flag("multihop"), (0, 1), accept=_is_bool_word)
_kw(_B, "weight", _weight_reverse(-253, 253), (1, 2), accept=lambda t: t in ("reverse", "noreverse"))
_kw(_B, "vrrp", _bfd_events("vrrp"), (0, 0))
_kw(_B, "checker", _bfd_events("checker"), (0, 0))

# -- virtual_server, real_server and checkers --------------------------------------------------------


def _lb_kind(text: str) -> LbKind:
    try:
        return LbKind[text.upper()]
    except KeyError:
        raise _Invalid(f"'{text}' is not NAT, DR or TUN") from None


def _v_lb_kind(p: _Parser, obj: Any, kw: Token, args: List[Token]) -> None:
    """`lvs_method NAT|DR|TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]`, for a virtual server or one
    real server (keepalived's svr_forwarding_handler, its checks and messages; a bad line changes nothing)."""
    kind = LbKind[_upper_case_word(p, kw, args[0], ("NAT", "DR", "TUN"))]
    what = "virtual" if isinstance(obj, VirtualServer) else "real"
    tun_type, port, csum = "ipip", 0, "nocsum"
    words = [a.text for a in args[1:]]
    k = 0
    while k < len(words):
        if words[k] == "type" and k + 1 < len(words):
            if words[k + 1] not in ("ipip", "gue", "gre"):
                raise _Invalid(f"Unknown tunnel type {words[k + 1]} for {what} server.")
            tun_type = words[k + 1]
            k += 2
        elif words[k] == "port" and k + 1 < len(words):
            try:
                port = _parse_int(words[k + 1], 1, 65535)
            except _Invalid:
                raise _Invalid(f"Invalid gue tunnel port {words[k + 1]} for {what} server.") from None
            k += 2
        elif words[k] in ("nocsum", "csum", "remcsum"):
            csum = words[k]
            k += 1
        else:
            raise _Invalid(f"Invalid tunnel option {words[k]} for {what} server.")
    if (tun_type == "gue") != (port != 0):
        raise _Invalid("gue tunnels require port, otherwise cannot have port.")
    if tun_type == "ipip" and csum != "nocsum":
        raise _Invalid("ipip tunnels do not support checksum option.")
    if tun_type == "gre" and csum == "remcsum":
        raise _Invalid("gre tunnels do not support remote checksum option.")
    obj.lb_kind = kind
    if words:
        obj.tunnel_type, obj.tunnel_port, obj.tunnel_csum = tun_type, port or None, csum


def _v_weight(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    try:
        vs.weight = _parse_int(args[0].text, 1, 2147483647)
    except _Invalid:
        p.warning(args[0], f"Virtual server weight {args[0].text} is outside range 1-2147483647", "keepalived "
                  "ignores it, and so does vrrpd")


def _r_weight(p: _Parser, rs: RealServer, kw: Token, args: List[Token]) -> None:
    rs.weight = _parse_int(args[0].text, 0, 2147483647)
    rs.weight_set = True


_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos")


def _v_sched(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    if args[0].text not in _SCHEDULERS:
        close = close_matches(args[0].text, _SCHEDULERS, n=1)
        p.warning(args[0], f"unknown scheduler '{args[0].text}'", f"did you mean '{close[0]}'?" if close else
                  "one of " + " ".join(_SCHEDULERS))
    vs.lb_algo = args[0].text


def _v_persistence(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    if not args:
        vs.persistence_timeout = 360
        return
    try:
        vs.persistence_timeout = _parse_int(args[0].text, 1, 2678400)
    except _Invalid as exc:
        p.warning(args[0], f"persistence_timeout: {exc}; keepalived ignores it (no persistence), and so does vrrpd",
                  "persistence_timeout 1..2678400")


def _v_protocol(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    text = args[0].text.upper()
    if text not in ("TCP", "UDP", "SCTP"):
        raise _Invalid(f"'{args[0].text}' is not TCP, UDP or SCTP")
    vs.protocol = text


def _v_sorry(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    vs.sorry_server = (_parse_ip(args[0].text), _parse_port(args[1].text) if len(args) > 1 else None)


def _v_sched_flag(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    needs = "mh" if kw.text.startswith("mh-") else "sh" if kw.text.startswith("sh-") else ""
    if needs and vs.lb_algo != needs:  # keepalived checks the scheduler set so far, at this line
        p.warning(kw, f"{kw.text} only applies to the {needs} scheduler (lb_algo {needs} before it): keepalived "
                  "ignores it, and so does vrrpd", f"write 'lb_algo {needs}' first")
        return
    if kw.text not in vs.sched_flags:
        vs.sched_flags.append(kw.text)


def _v_ip_family(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    if args[0].text not in ("inet", "inet6"):
        raise _Invalid(f"'{args[0].text}' is not inet or inet6")
    vs.ip_family = 6 if args[0].text == "inet6" else 4


def _v_real_server(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> Optional[RealServer]:
    try:
        rs = RealServer(address=_parse_ip(args[0].text), line=kw.line)
    except _Invalid as exc:
        p.error(kw, f"real_server: {exc}")
        return None
    if len(args) > 1:
        rs.port = _parse_port(args[1].text)
    vs.real_servers.append(rs)
    return rs


def _v_sorry_method(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    vs.sorry_server_lvs_method = _lb_kind(args[0].text)


_V = "virtual_server"
_kw(_V, "delay_loop", _h_time("delay_loop", 0.001, 86400))
for _name in ("lb_algo", "lvs_sched"):
    _kw(_V, _name, _v_sched)
_TUN_WORDS = ("type", "port", "nocsum", "csum", "remcsum", "ipip", "gue", "gre")
for _name in ("lb_kind", "lvs_method"):
    _kw(_V, _name, _v_lb_kind, (1, 6), accept=lambda t: t in _TUN_WORDS or t.isdigit())
_kw(_V, "persistence_timeout", _v_persistence, (0, 1), accept=_is_number)
_kw(_V, "persistence_granularity", _h_ip("persistence_granularity"))
_kw(_V, "persistence_engine", _h_str("persistence_engine"))
_kw(_V, "protocol", _v_protocol)
_kw(_V, "sorry_server", _v_sorry, (1, 2), accept=_is_number)
def _v_sorry_inhibit(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    if vs.sorry_server is None:
        p.warning(kw, "sorry_server_inhibit before (or without) sorry_server: keepalived ignores it, and so does "
                  "vrrpd", "write it after sorry_server")
        return
    _h_flag("sorry_server_inhibit")(p, vs, kw, args)


_kw(_V, "sorry_server_inhibit", _v_sorry_inhibit, (0, 1), accept=_is_bool_word)
_kw(_V, "sorry_server_lvs_method", _v_sorry_method)
_kw(_V, "quorum", _h_int("quorum", 0, 2147483647))
_kw(_V, "hysteresis", _h_int("hysteresis", 0, 2147483647))
_kw(_V, "quorum_up", _h_cmd("quorum_up"), (1, None))
_kw(_V, "quorum_down", _h_cmd("quorum_down"), (1, None))
for _name in ("alpha", "omega", "inhibit_on_failure", "ha_suspend", "ops", "smtp_alert"):
    _kw(_V, _name, _h_flag(_name), (0, 1), accept=_is_bool_word)
for _name in ("flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback"):
    _kw(_V, _name, _v_sched_flag, (0, 0))
_kw(_V, "ip_family", _v_ip_family)


def _v_hashed(p: _Parser, vs: VirtualServer, kw: Token, args: List[Token]) -> None:
    if vs.lb_algo != "sh":
        p.warning(kw, "hashed only applies to the sh scheduler (lb_algo sh before it): keepalived ignores it, and "
                  "so does vrrpd", "write 'lb_algo sh' first")
        return
    _h_flag("hashed")(p, vs, kw, args)


_kw(_V, "hashed", _v_hashed, (0, 1), accept=_is_bool_word)
_kw(_V, "virtualhost", _h_str("virtualhost"))
_kw(_V, "connect_timeout", _h_time("connect_timeout", 0.001, 86400))
_kw(_V, "retry", _h_int("retry", 0, 2147483647))
_kw(_V, "delay_before_retry", _h_time("delay_before_retry", 0, 86400))
_kw(_V, "warmup", _h_time("warmup", 0, 86400))
_kw(_V, "real_server", _v_real_server, (1, 2), "real_server")
_kw(_V, "weight", _v_weight)
_accept_only(_V, "snmp_name")

_R = "real_server"
_kw(_R, "weight", _r_weight)
for _name in ("lb_kind", "lvs_method"):
    _kw(_R, _name, _v_lb_kind, (1, 6), accept=lambda t: t in _TUN_WORDS or t.isdigit())
_kw(_R, "notify_up", _h_cmd("notify_up"), (1, None))
_kw(_R, "notify_down", _h_cmd("notify_down"), (1, None))
_kw(_R, "uthreshold", _h_int("uthreshold", 0, 2147483647))
_kw(_R, "lthreshold", _h_int("lthreshold", 0, 2147483647))
for _name in ("inhibit_on_failure", "alpha", "smtp_alert"):
    _kw(_R, _name, _h_flag(_name), (0, 1), accept=_is_bool_word)
_kw(_R, "virtualhost", _h_str("virtualhost"))
_kw(_R, "retry", _h_int("retry", 0, 2147483647))
_kw(_R, "delay_before_retry", _h_time("delay_before_retry", 0, 86400))
_kw(_R, "warmup", _h_time("warmup", 0, 86400))
_kw(_R, "connect_timeout", _h_time("connect_timeout", 0.001, 86400))
_kw(_R, "delay_loop", _h_time("delay_loop", 0.001, 86400))


def _checker(kind: str) -> Handler:
    def handler(p: _Parser, rs: RealServer, kw: Token, args: List[Token]) -> Checker:
        chk = Checker(kind=kind, line=kw.line)
        rs.checkers.append(chk)
        return chk
    return handler


def _c_bind_if(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> None:
    if len(args[0].text) > 15:  # IFNAMSIZ - 1
        p.warning(args[0], f"Interface name {args[0].text} is too long - ignoring", "at most 15 characters")
        return
    chk.bind_if = args[0].text


def _c_fwmark(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> None:
    try:
        chk.fwmark = _parse_int(args[0].text, 0, 0xFFFFFFFF)
    except _Invalid:
        p.warning(args[0], f"Invalid fwmark connection value '{args[0].text}'", "0..4294967295")


def _c_nb_get_retry(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> None:
    p.warning(kw, "nb_get_retry is deprecated", "write 'retry'")
    chk.retry = _parse_int(args[0].text, 0, 2147483647)


def _c_url(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> UrlCheck:
    url = UrlCheck()
    chk.urls.append(url)
    return url


def _u_status(p: _Parser, url: UrlCheck, kw: Token, args: List[Token]) -> None:
    for a in args:
        for part in a.text.split(","):
            lo_text, _, hi_text = part.partition("-")
            lo = _parse_int(lo_text, 100, 599)
            url.status_code.append((lo, _parse_int(hi_text, lo, 599) if hi_text else lo))


def _c_tls_compliant(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> None:
    if chk.kind != "SSL_GET":
        p.warning(kw, "tls_compliant is a keyword of SSL_GET only (keepalived's HTTP_GET does not know it) - "
                  "ignored")
        return
    _h_flag("tls_compliant")(p, chk, kw, args)


def _u_regex(p: _Parser, url: UrlCheck, kw: Token, args: List[Token]) -> None:
    if url.regex is not None:
        p.warning(kw, f"Duplicate regex specified - replacing {url.regex} with {args[0].text}")
    url.regex = args[0].text


# PCRE2 options (keepalived's names) and Python's re: a flag, a rule vrrpd applies itself, "" for options that
# change nothing about whether a body matches, or None where re has no equivalent
REGEX_OPTIONS: Dict[str, Any] = {
    "caseless": re.IGNORECASE, "dotall": re.DOTALL, "multiline": re.MULTILINE, "extended": re.VERBOSE,
    "utf": "utf", "ucp": "utf", "never_utf": "", "never_ucp": "", "firstline": "firstline",
    "no_auto_capture": "", "no_auto_possess": "", "no_dotstar_anchor": "", "no_start_optimize": "",
    "auto_callout": "", "use_offset_limit": "",
    "ungreedy": None, "dollar_endonly": None, "dupnames": None, "allow_empty_class": None, "alt_bsux": None,
    "match_unset_backref": None, "never_backslash_c": None, "alt_circumflex": None, "alt_verbnames": None,
}


def _u_regex_options(p: _Parser, url: UrlCheck, kw: Token, args: List[Token]) -> None:
    for a in args:
        if a.text not in REGEX_OPTIONS:  # keepalived skips it without a word
            p.warning(a, f"unknown regex option '{a.text}' (ignored)", " ".join(REGEX_OPTIONS))
        elif REGEX_OPTIONS[a.text] is None:
            p.warning(a, f"regex option {a.text}: Python's re has no equivalent; vrrpd matches without it")
            url.regex_options.append(a.text)
        else:
            url.regex_options.append(a.text)


def _u_regex_offset(attr: str) -> Handler:
    def handler(p: _Parser, url: UrlCheck, kw: Token, args: List[Token]) -> None:
        if not args[0].text.isdigit():
            p.warning(args[0], f"Invalid {attr} {args[0].text} specified")
            value = 0
        else:
            value = int(args[0].text)
        setattr(url, attr, value if attr == "regex_min_offset" or value else None)
    return handler


def _u_regex_stack(p: _Parser, url: UrlCheck, kw: Token, args: List[Token]) -> None:
    """PCRE2's JIT stack for big matches: checked as keepalived checks it; Python's re needs no stack."""
    start, top = args[0].text, args[1].text
    if not start.isdigit():
        p.warning(args[0], "regex_stack invalid start value")
    elif not top.isdigit():
        p.warning(args[1], "regex_stack invalid max value")
    elif int(start) > int(top):
        p.warning(kw, "regex stack start cannot exceed max value")
    else:
        url.regex_stack = (int(start), int(top))


def _u_digest(p: _Parser, url: UrlCheck, kw: Token, args: List[Token]) -> None:
    text = args[0].text.lower()
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise _Invalid(f"'{args[0].text}' is not an MD5 digest (32 hex digits)")
    url.digest = text


def read_hex_str(text: str, wildcard: bool = False) -> Tuple[bytes, bytes]:
    """keepalived's read_hex_str: octets separated by spaces; within a word digits pair up and an odd last
    digit is an octet of its own ("Ab12f 3" is AB 12 0F 03). With `wildcard`, X/x is a masked nibble.
    Returns (data, mask): mask bits 1 where the data must match."""
    data, mask = bytearray(), bytearray()
    for word in text.split():
        if not re.fullmatch(r"[0-9A-Fa-f" + ("Xx" if wildcard else "") + r"]+", word):
            raise _Invalid(f"'{word}' is not hex")
        for k in range(0, len(word), 2):
            pair = word[k:k + 2]
            value = m = 0
            for ch in pair:
                value, m = value << 4, m << 4
                if ch not in "Xx":
                    value |= int(ch, 16)
                    m |= 0xF
            data.append(value)
            mask.append(m)
    return bytes(data), bytes(mask)


def _c_payload(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> None:
    chk.payload = read_hex_str(" ".join(a.text for a in args))[0]


def _c_require_reply(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> None:
    chk.require_reply = True
    if args:
        chk.reply_data, chk.reply_mask = read_hex_str(" ".join(a.text for a in args), wildcard=True)


def _c_ping_check(p: _Parser, rs: RealServer, kw: Token, args: List[Token]) -> Checker:
    if kw.text == "ICMP_CHECK":
        p.warning(kw, "keepalived has no ICMP_CHECK; read as PING_CHECK", "write PING_CHECK")
    chk = Checker(kind="PING_CHECK", line=kw.line)
    rs.checkers.append(chk)
    return chk


def _c_file_track(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> None:
    chk.track_file = args[0].text


def _c_file_weight(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> None:
    chk.file_weight = _parse_int(args[0].text, -2147483647, 2147483647)
    if len(args) > 1:
        if args[1].text not in ("reverse", "noreverse"):
            raise _Invalid(f"'{args[1].text}' after the weight: only 'reverse' is allowed")
        chk.file_weight_reverse = args[1].text == "reverse"


def _c_dns_type(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> None:
    text = args[0].text.upper()
    if text not in ("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"):
        raise _Invalid(f"unknown DNS type '{args[0].text}'")
    chk.dns_type = text


_kw(_R, "HTTP_GET", _checker("HTTP_GET"), (0, 0), "HTTP_GET")
_kw(_R, "SSL_GET", _checker("SSL_GET"), (0, 0), "HTTP_GET")
_kw(_R, "TCP_CHECK", _checker("TCP_CHECK"), (0, 0), "TCP_CHECK")
_kw(_R, "MISC_CHECK", _checker("MISC_CHECK"), (0, 0), "MISC_CHECK")
_kw(_R, "SMTP_CHECK", _checker("SMTP_CHECK"), (0, 0), "SMTP_CHECK")
_kw(_R, "DNS_CHECK", _checker("DNS_CHECK"), (0, 0), "DNS_CHECK")
_kw(_R, "BFD_CHECK", _checker("BFD_CHECK"), (0, 0), "BFD_CHECK")
_kw(_R, "UDP_CHECK", _checker("UDP_CHECK"), (0, 0), "UDP_CHECK")
_kw(_R, "PING_CHECK", _c_ping_check, (0, 0), "PING_CHECK")
_kw(_R, "ICMP_CHECK", _c_ping_check, (0, 0), "PING_CHECK")
_kw(_R, "FILE_CHECK", _checker("FILE_CHECK"), (0, 0), "FILE_CHECK")
_kw("FILE_CHECK", "track_file", _c_file_track)
_kw("FILE_CHECK", "weight", _c_file_weight, (1, 2))
_kw("UDP_CHECK", "payload", _c_payload, (1, None))
_kw("UDP_CHECK", "require_reply", _c_require_reply, (0, None))
_kw("UDP_CHECK", "min_reply_length", _h_int("min_reply_length", 0, 65535))
_kw("UDP_CHECK", "max_reply_length", _h_int("max_reply_length", 0, 65535))
_kw("BFD_CHECK", "name", _h_str("bfd_name"))
_kw("BFD_CHECK", "alpha", _h_flag("alpha"), (0, 1), accept=_is_bool_word)
for _blk in ("HTTP_GET", "TCP_CHECK", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK", "PING_CHECK"):
    _kw(_blk, "connect_ip", _h_ip("connect_ip"))
    _kw(_blk, "connect_port", _h_int("connect_port", 0, 65535))
    _kw(_blk, "bindto", _h_ip("bindto"))
    _kw(_blk, "bind_port", _h_int("bind_port", 0, 65535))
    _kw(_blk, "connect_timeout", _h_time("connect_timeout", 0.001, 86400))
    _kw(_blk, "retry", _h_int("retry", 0, 2147483647))
    _kw(_blk, "delay_before_retry", _h_time("delay_before_retry", 0, 86400))
    _kw(_blk, "delay_loop", _h_time("delay_loop", 0.001, 86400))
    _kw(_blk, "warmup", _h_time("warmup", 0, 86400))
    _kw(_blk, "alpha", _h_flag("alpha"), (0, 1), accept=_is_bool_word)
    _kw(_blk, "log_all_failures", _h_flag("log_all_failures"), (0, 1), accept=_is_bool_word)
# keepalived sets SO_MARK and SO_BINDTODEVICE in socket_bind_connect() (TCP, HTTP/SSL, SMTP, DNS); UDP_CHECK's
# udp_bind_connect() sets SO_MARK only; PING_CHECK's socket takes neither; MISC_CHECK has no connection keywords
for _blk in ("HTTP_GET", "TCP_CHECK", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK"):
    _kw(_blk, "fwmark", _c_fwmark)
for _blk in ("HTTP_GET", "TCP_CHECK", "SMTP_CHECK", "DNS_CHECK"):
    _kw(_blk, "bind_if", _c_bind_if)
_keepalived_ignores("UDP_CHECK", "bind_if", "keepalived's UDP_CHECK socket is never bound to the interface "
                    "(udp_bind_connect sets SO_MARK only)")
_keepalived_ignores("PING_CHECK", "bind_if fwmark", "keepalived's PING_CHECK socket takes neither SO_BINDTODEVICE "
                    "nor SO_MARK")
_keepalived_ignores("MISC_CHECK", "bind_if fwmark", "not a MISC_CHECK keyword in keepalived (it logs \"Unknown "
                    "keyword\"): the script makes its own connections")
_kw("HTTP_GET", "nb_get_retry", _c_nb_get_retry)
_kw("HTTP_GET", "url", _c_url, (0, 0), "url")
_kw("HTTP_GET", "http_protocol", _h_str("http_protocol"))
_kw("HTTP_GET", "virtualhost", _h_str("virtualhost"))
_kw("HTTP_GET", "enable_sni", _h_flag("enable_sni"), (0, 1), accept=_is_bool_word)
_kw("HTTP_GET", "sni_name", _h_str("sni_name"))
_kw("HTTP_GET", "fast_recovery", _h_flag("fast_recovery"), (0, 1), accept=_is_bool_word)
_kw("HTTP_GET", "tls_compliant", _c_tls_compliant, (0, 1), accept=_is_bool_word)
_kw("url", "path", _h_str("path"))
_kw("url", "digest", _u_digest)
_kw("url", "status_code", _u_status, (1, None), accept=lambda t: t[:1].isdigit())
_kw("url", "virtualhost", _h_str("virtualhost"))
_kw("url", "regex", _u_regex)
_kw("url", "regex_no_match", _h_flag("regex_no_match"), (0, 0))
_kw("url", "regex_options", _u_regex_options, (1, None))
_kw("url", "regex_min_offset", _u_regex_offset("regex_min_offset"))
_kw("url", "regex_max_offset", _u_regex_offset("regex_max_offset"))
_kw("url", "regex_stack", _u_regex_stack, (2, 2))
_kw("url", "tls_compliant", _h_flag("tls_compliant"), (0, 1), accept=_is_bool_word)
_kw("MISC_CHECK", "misc_path", _h_cmd("misc_path"), (1, None))
_kw("MISC_CHECK", "misc_timeout", _h_time("misc_timeout", 0.001, 86400))
_kw("MISC_CHECK", "misc_dynamic", _h_flag("misc_dynamic"), (0, 1), accept=_is_bool_word)
_kw("MISC_CHECK", "user", _s_user, (1, 2))
_kw("SMTP_CHECK", "helo_name", _h_str("helo_name"))


def _c_smtp_host(p: _Parser, chk: Checker, kw: Token, args: List[Token]) -> Checker:
    host = Checker(kind="SMTP_CHECK", line=kw.line)
    chk.hosts.append(host)
    return host


_kw("SMTP_CHECK", "host", _c_smtp_host, (0, 0), "SMTP_CHECK host")
_SH = "SMTP_CHECK host"
BLOCK_TITLES[_SH] = "host (SMTP_CHECK)"
for _name, _handler in (("connect_ip", _h_ip("connect_ip")), ("connect_port", _h_int("connect_port", 0, 65535)),
                        ("bindto", _h_ip("bindto")), ("bind_port", _h_int("bind_port", 0, 65535)),
                        ("bind_if", _c_bind_if), ("fwmark", _c_fwmark),
                        ("connect_timeout", _h_time("connect_timeout", 0.001, 86400))):
    _kw(_SH, _name, _handler)
# keepalived's host block installs all the common checker keywords, but copies the SMTP_CHECK's own settings
# over the checker it makes of the host: only the connection keywords above count
_keepalived_ignores(_SH, "retry delay_before_retry warmup delay_loop alpha log_all_failures", "keepalived gives "
                    "the host's checker the SMTP_CHECK's own setting", (0, 1))
_kw("DNS_CHECK", "type", _c_dns_type)
_kw("DNS_CHECK", "name", _h_str("dns_name"))

BLOCK_TITLES.update({"top": "the top level", "HTTP_GET": "HTTP_GET/SSL_GET", "url": "url (HTTP_GET/SSL_GET)"})
_KEYWORD_HOMES: Dict[str, List[str]] = {}
for _blk, _spec in KEYWORDS.items():
    for _name in _spec:
        _KEYWORD_HOMES.setdefault(_name, []).append(_blk)


# --------------------------------------------------------------------------------------------
# 3.6 Validation: the whole configuration at once, every problem reported
# --------------------------------------------------------------------------------------------


def effective_version(inst: VrrpInstance, g: GlobalDefs) -> int:
    """The VRRP version an instance runs: its own `version`, else global `vrrp_version`; IPv6 is always 3."""
    if inst.virtual_ipaddress and inst.virtual_ipaddress[0].address.version == 6:
        return 3
    return inst.version if inst.version is not None else g.vrrp_version


def advert_interval(inst: VrrpInstance, g: GlobalDefs) -> float:
    """advert_int as it goes on the wire: whole seconds (1..255) in v2, centiseconds in v3."""
    if effective_version(inst, g) == 2:
        return float(min(255, max(1, int(inst.advert_int + 0.5))))
    return min(40.95, max(0.01, round(inst.advert_int * 100) / 100))


def vrrp_timers(inst: VrrpInstance, g: GlobalDefs) -> Tuple[float, float, float]:
    """(advert interval, skew time, master-down interval) in seconds, as RFC 3768/5798 define them."""
    adv = advert_interval(inst, g)
    prio = inst.priority
    if effective_version(inst, g) == 2:
        skew = (256 - prio) / 256.0
    else:
        skew = (256 - prio) * adv / 256.0
    return adv, skew, 3 * adv + skew


def _instance_family(inst: VrrpInstance) -> int:
    """4 or 6 as keepalived decides it: the VIPs, else the source address, else the peers; IPv4 by default."""
    for addr in ([v.address for v in inst.virtual_ipaddress] + [inst.unicast_src_ip, inst.mcast_src_ip]
                 + [p.address for p in inst.unicast_peer]):
        if addr is not None:
            return addr.version
    return 4


def _host_interfaces() -> Optional[set]:
    try:
        return {name for _, name in socket.if_nameindex()}
    except OSError:
        return None


def _which(program: str) -> Optional[str]:
    try:
        return which(program)
    except (ValueError, OSError):
        return None


_CONNECTION_CHECKERS = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK", "PING_CHECK")


class _Validator:
    """Cross-checks that need the whole configuration (names, duplicates, strict mode, the host).

    Where keepalived silently changes a value (strict mode drops authentication...), the model is
    changed the same way and a warning says so."""

    def __init__(self, p: _Parser, check_interfaces: bool):
        self.p = p
        self.cfg = p.config
        self.g = p.config.global_defs
        self.check_interfaces = check_interfaces
        self.interfaces = _host_interfaces()
        self.names: Dict[str, VrrpInstance] = {}

    def err(self, file: str, line: int, message: str, hint: str = "") -> None:
        self.p.diags.append(Diagnostic(file, line, Severity.ERROR, message, hint))

    def warn(self, file: str, line: int, message: str, hint: str = "") -> None:
        self.p.diags.append(Diagnostic(file, line, Severity.WARNING, message, hint))

    def line_of(self, obj: Any, keyword: str, default: int) -> int:
        tok = self.p.where(obj, keyword)
        return tok.line if tok is not None else default

    def missing_interface(self, file: str, line: int, message: str) -> None:
        """An interface this host lacks: a warning. The daemon starts, the instance waits in FAULT and starts
        when the interface appears (a VLAN or bond created after us): one missing interface never takes the
        other instances down."""
        self.warn(file, line, message, "the instance stays in FAULT until it appears" if self.check_interfaces
                  else "")

    def garp_groups(self) -> None:
        """keepalived's garp_group end handler: a group without a delay is removed; an interface in two groups
        keeps the first."""
        taken: Dict[str, GarpGroup] = {}
        for n, gg in enumerate(list(self.cfg.garp_groups), 1):
            if gg.garp_interval is None and gg.gna_interval is None:
                self.warn(gg.file, gg.line, f"garp group {n} does not have any delay set - removing")
                self.cfg.garp_groups.remove(gg)
                continue
            for name in list(gg.interfaces):
                if name in taken:
                    self.warn(gg.file, gg.line, f"garp_group already specified for {name} - ignoring")
                    gg.interfaces.remove(name)
                taken.setdefault(name, gg)

    def run(self) -> None:
        vrids: Dict[Tuple[int, int], List[VrrpInstance]] = {}
        self.garp_groups()
        self.bfd_instances()
        for script in list(self.cfg.vrrp_scripts.values()):
            if script.script is None:  # keepalived: "No script set for vrrp_script X - removing"
                self.warn(script.file, script.line, f"vrrp_script {script.name} has no 'script': keepalived removes "
                          "it (and the instances ignore it), and so does vrrpd", 'script "/path/to/check args"')
                del self.cfg.vrrp_scripts[script.name]
        for inst in self.cfg.vrrp_instances:
            self.instance(inst)
            self.instance_strict(inst)
            self.instance_auth_hmac(inst)
            self.instance_owner(inst)
            self.instance_duplicates(inst)
            self.instance_vips(inst)
            self.instance_references(inst, vrids)
        self.commands()
        self.sync_groups()
        self.unweighted_tracking()
        for vs in self.cfg.virtual_servers:
            self.virtual_server(vs)
        self.track_groups()
        self.mail()
        self.lvs_sync_daemon()

    def lvs_sync_daemon(self) -> None:
        """keepalived: the instance must exist (else the sync daemon is dropped); the sync id defaults to its VRID."""
        sd = self.cfg.global_defs.lvs_sync_daemon
        if sd is None:
            return
        if sd.instance is not None:
            inst = next((i for i in self.cfg.vrrp_instances if i.name == sd.instance), None)
            if inst is None:
                self.warn(sd.file, sd.line, f"Unable to find vrrp instance {sd.instance} for lvs_syncd - clearing "
                          "lvs_syncd config")
                self.cfg.global_defs.lvs_sync_daemon = None
                return
            if sd.syncid is None:
                sd.syncid = inst.virtual_router_id
        elif sd.syncid is None:
            sd.syncid = 0

    def bfd_instances(self) -> None:
        """keepalived's bfd_end_handler: a session needs a neighbour; (source, neighbour, multihop) is unique."""
        seen: Dict[Tuple[Any, Any, bool], BfdInstance] = {}
        for name, bfd in list(self.cfg.bfd_instances.items()):
            f, ln = bfd.file, bfd.line
            if bfd.neighbor_ip is None:
                self.warn(f, ln, f"bfd_instance {name}: no neighbor address set, disabling instance",
                          "neighbor_ip ADDRESS")
                del self.cfg.bfd_instances[name]
                continue
            if bfd.source_ip is not None and bfd.source_ip.version != bfd.neighbor_ip.version:
                self.err(f, self.line_of(bfd, "source_ip", ln), f"bfd_instance {name}: source_ip {bfd.source_ip} "
                         f"and neighbor_ip {bfd.neighbor_ip} are not of the same family")
            key = (bfd.source_ip, bfd.neighbor_ip, bfd.multihop)
            if key in seen:
                self.err(f, ln, f"bfd_instance {name}: the same neighbor, source and multihop as bfd_instance "
                         f"{seen[key].name}")
            seen[key] = bfd
            if bfd.max_hops != 255 and bfd.max_hops > bfd.out_ttl:
                bfd.max_hops = bfd.out_ttl

    def track_bfd_refs(self, f: str, label: str, refs: List[TrackRef]) -> None:
        order = {name: i for i, name in enumerate(self.cfg.files)}
        for ref in list(refs):
            bfd = self.cfg.bfd_instances.get(ref.name)
            if bfd is None:
                self.warn(f, ref.line, f"{label}: track_bfd '{ref.name}' names no bfd_instance (ignored)")
                refs.remove(ref)
            elif (order.get(bfd.file, 0), bfd.line) > (order.get(f, 0), ref.line):
                self.warn(f, ref.line, f"{label}: track_bfd '{ref.name}' comes before its bfd_instance (line "
                          f"{bfd.line}); keepalived ignores it (\"track bfd {ref.name} not found\"), vrrpd does not",
                          "define the bfd_instance first")

    def instance_owner(self, inst: VrrpInstance) -> None:
        """keepalived 2.3's owner_ignore_adverts (only at priority 255) and timer_expired_backup (needs nopreempt)."""
        f, ln = inst.file, inst.line
        if inst.priority != 255:
            if inst.owner_ignore_adverts:
                self.warn(f, self.line_of(inst, "owner_ignore_adverts", ln), f"({inst.name}) owner_ignore_adverts "
                          "requires priority 255 - clearing")
            inst.owner_ignore_adverts = False
        elif inst.owner_ignore_adverts is None:
            strict = inst.strict_mode if inst.strict_mode is not None else self.g.vrrp_strict
            inst.owner_ignore_adverts = bool(strict or self.g.vrrp_owner_ignore_adverts)
        elif not inst.owner_ignore_adverts:
            # as keepalived 2.4.3 codes it, even without strict mode
            self.warn(f, self.line_of(inst, "owner_ignore_adverts", ln), f"({inst.name}) strict_mode with priority "
                      "255 requires owner_ignore_adverts")
            inst.owner_ignore_adverts = True
        if inst.timer_expired_backup is not None and not inst.nopreempt:
            self.warn(f, self.line_of(inst, "timer_expired_backup", ln), f"({inst.name}) expired_timer_backup "
                      "requires nopreempt")
            inst.timer_expired_backup = None

    def instance_duplicates(self, inst: VrrpInstance) -> None:
        """keepalived 2.3.3: a VIP (or eVIP) already given on the same interface, and a unicast_peer given twice,
        are dropped with a warning. A list is replaced only when something is dropped from it: an instance that
        is given a new attribute after the others were made has its own dict (232 bytes) made for it."""
        seen: Dict[Tuple[Any, Optional[str]], VirtualIP] = {}
        for attr in ("virtual_ipaddress", "virtual_ipaddress_excluded"):
            vips = getattr(inst, attr)
            kept = []
            for vip in vips:
                key = (vip.address.ip, vip.dev or inst.interface)
                if key in seen:
                    self.warn(inst.file, vip.line, f"({inst.name}): VIP duplicates a VIP {vip.address.ip} - ignoring")
                    continue
                seen[key] = vip
                kept.append(vip)
            if len(kept) < len(vips):
                setattr(inst, attr, kept)
        peers: List[UnicastPeer] = []
        for peer in inst.unicast_peer:
            if any(p.address == peer.address for p in peers):
                self.warn(inst.file, self.line_of(inst, "unicast_peer", inst.line),
                          f"({inst.name}) unicast_peer {peer.address} given twice - ignoring")
                continue
            peers.append(peer)
        if len(peers) < len(inst.unicast_peer):
            inst.unicast_peer = peers

    def instance_vips(self, inst: VrrpInstance) -> None:
        """keepalived 2.2.8+: an instance without VIPs needs no_virtual_ipaddress (VRRPv3 refuses it)."""
        if inst.virtual_ipaddress or inst.no_virtual_ipaddress or not inst.name:
            return
        strict = inst.strict_mode if inst.strict_mode is not None else self.g.vrrp_strict
        if not strict:
            self.warn(inst.file, inst.line, f"({inst.name}) No VIP specified", "keepalived refuses a VRRPv3 "
                      "instance without one; write no_virtual_ipaddress if that is meant")

    def instance_auth_hmac(self, inst: VrrpInstance) -> None:
        """keepalived 2.4's auth_hmac: no active key disables it; it replaces `authentication`."""
        ah = inst.auth_hmac
        if ah is None:
            return
        f, ln = inst.file, ah.line or inst.line
        if ah.active_key not in ah.keys:
            self.warn(f, ln, f"({inst.name}) auth_hmac active_key {ah.active_key} is not defined, disabling "
                      "extension", "active_key must name one of the keys")
            inst.auth_hmac = None
            return
        if inst.auth_type != AuthType.NONE:
            self.warn(f, ln, f"({inst.name}) auth_hmac cannot be combined with authentication, dropping legacy auth")
            inst.auth_type, inst.auth_pass = AuthType.NONE, b""
        if (inst.strict_mode if inst.strict_mode is not None else self.g.vrrp_strict) and ah.mode != "enforce":
            self.warn(f, ln, f"({inst.name}) strict_mode requires auth_hmac mode enforce - setting")
            ah.mode = "enforce"

    def mail(self) -> None:
        """E-mail alerts need both recipients and a server; say so when only one half is there."""
        g = self.g
        where = self.p.where(g, "notification_email") or self.p.where(g, "smtp_server")
        if where is None:
            return
        if g.notification_email and not g.smtp_server:
            self.warn(where.file, where.line, "notification_email without smtp_server: no e-mail will be sent")
        elif g.smtp_server and not g.notification_email:
            self.warn(where.file, where.line, "smtp_server without notification_email: no e-mail will be sent")
        else:
            missing = [name for name in SMTP_MODULES if not module_available(name)]
            if missing:
                self.warn(where.file, where.line, f"smtp_server needs the Python module(s) {', '.join(missing)}, "
                          f"which this Python lacks: no e-mail will be sent", STDLIB_PACKAGE_HINT)

    def instance(self, inst: VrrpInstance) -> None:
        f, ln, g = inst.file, inst.line, self.g
        label = f"vrrp_instance {inst.name}" if inst.name else "vrrp_instance"
        if not inst.name:
            self.err(f, ln, "vrrp_instance has no name", "vrrp_instance NAME { ... }")
        elif inst.name in self.names:
            self.err(f, ln, f"duplicate vrrp_instance name '{inst.name}'",
                     f"first defined at line {self.names[inst.name].line}")
        else:
            self.names[inst.name] = inst
        interfaces = self.interfaces
        if inst.vrf is not None and inst.interface is None:
            # keepalived binds the sockets of an interface-less instance to the VRF device; its VIPs without
            # `dev` go on default_interface. The VRF device stands in as the instance's interface
            for vip in inst.virtual_ipaddress + inst.virtual_ipaddress_excluded:
                vip.dev = vip.dev or g.default_interface
            inst.interface = inst.vrf
        if inst.interface is None and inst.unicast_src_ip is None:
            self.err(f, ln, f"{label}: no 'interface'", "interface IFNAME")
        elif inst.interface is not None and interfaces is not None and inst.interface not in interfaces:
            self.missing_interface(f, self.line_of(inst, "interface", ln),
                                   f"{label}: interface '{inst.interface}' does not exist on this host")
        if interfaces is not None:
            for vip in inst.virtual_ipaddress + inst.virtual_ipaddress_excluded:
                if vip.dev is not None and vip.dev not in interfaces:
                    self.missing_interface(f, vip.line, f"{label}: interface '{vip.dev}' of {vip.address} "
                                           "does not exist on this host")
            for ref in inst.track_interface:
                if ref.name not in interfaces:
                    self.warn(f, ref.line, f"{label}: track_interface '{ref.name}' does not exist on this host")
        if inst.interface is not None and (len(inst.interface) > 15 or "/" in inst.interface):
            self.err(f, self.line_of(inst, "interface", ln), f"{label}: '{inst.interface}' cannot be a Linux "
                     "interface name (at most 15 characters, no '/')")
        for vip in inst.virtual_ipaddress + inst.virtual_ipaddress_excluded:
            dev = vip.dev or inst.interface
            if vip.label is not None and dev is not None and not vip.label.startswith(dev):
                self.warn(f, vip.line, f"{label}: label '{vip.label}' of {vip.address} does not start with its "
                          f"interface name '{dev}' (ip(8) refuses such labels)", f"write 'label {dev}:N'")
        if inst.virtual_router_id == 0 and self.p.where(inst, "virtual_router_id") is None:
            self.err(f, ln, f"{label}: no 'virtual_router_id'", "virtual_router_id 1..255, the same on every node")
        version = effective_version(inst, g)
        ln_adv = self.line_of(inst, "advert_int", ln)
        if version == 2 and inst.advert_int != int(inst.advert_int):
            self.warn(f, ln_adv, f"{label}: advert_int {inst.advert_int:g} must be whole seconds in VRRPv2; "
                      f"using {advert_interval(inst, g):g}", "use 'version 3' for sub-second adverts")
        elif version == 3 and inst.advert_int > 40.95:
            self.err(f, ln_adv, f"{label}: advert_int {inst.advert_int:g} exceeds the VRRPv3 maximum of 40.95 s")
        elif version == 3 and round(inst.advert_int * 100) != inst.advert_int * 100:
            self.warn(f, ln_adv, f"{label}: advert_int {inst.advert_int:g} rounded to {advert_interval(inst, g):g} "
                      "(VRRPv3 counts centiseconds)")
        ln_auth = self.line_of(inst, "authentication", ln)
        families = {v.address.version for v in inst.virtual_ipaddress}
        if inst.version == 2 and inst.virtual_ipaddress and inst.virtual_ipaddress[0].address.version == 6:
            self.warn(f, self.line_of(inst, "version", ln), f"{label}: version 2 with IPv6 addresses: keepalived "
                      "ignores it and runs VRRPv3 (there is no VRRPv2 for IPv6), and so does vrrpd", "remove it")
            inst.version = 3
        if len(families) > 1:
            self.err(f, inst.virtual_ipaddress[0].line, f"{label}: virtual_ipaddress mixes IPv4 and IPv6",
                     "use one instance per address family")
        if self.p.where(inst, "priority") is None and inst.state is State.MASTER:
            # keepalived derives an unset priority from the initial state: MASTER means address owner
            self.warn(f, ln, f"{label}: state MASTER without a priority: keepalived makes it the address owner "
                      "(priority 255), and so does vrrpd", "write 'priority N' to choose")
            inst.priority = 255
        if self.p.where(inst, "state") is None and inst.priority == 255:
            inst.state = State.MASTER
        strict = inst.strict_mode if inst.strict_mode is not None else g.vrrp_strict
        if inst.auth_type is not AuthType.NONE and not (strict and version == 2):
            drop = ""
            if version == 3:
                drop = "VRRPv3 has no authentication"
            elif not inst.auth_pass:
                drop = f"auth_type {inst.auth_type.name} without auth_pass"
            elif inst.auth_type is AuthType.AH and 6 in families:
                drop = "auth_type AH cannot be used with IPv6"
            if drop:
                self.warn(f, ln_auth, f"{label}: {drop}: keepalived ignores the authentication, and so does vrrpd",
                          "remove the authentication block")
                inst.auth_type, inst.auth_pass = AuthType.NONE, b""
            elif inst.auth_type is AuthType.AH and inst.state is State.MASTER and inst.priority != 255:
                self.warn(f, self.line_of(inst, "state", ln), f"{label}: state MASTER with auth_type AH: keepalived "
                          "starts it as BACKUP (it must hear an advert for the AH sequence number first), and so "
                          "does vrrpd", "write 'state BACKUP'")
                inst.state = State.BACKUP
        peer_families = {u.address.version for u in inst.unicast_peer}
        if inst.unicast_src_ip is not None:
            peer_families.add(inst.unicast_src_ip.version)
        ln_peer = self.line_of(inst, "unicast_peer", ln)
        if len(peer_families) > 1:
            self.err(f, ln_peer, f"{label}: unicast_src_ip and unicast_peer mix IPv4 and IPv6")
        if inst.unicast_src_ip is not None and any(u.address == inst.unicast_src_ip for u in inst.unicast_peer):
            self.warn(f, ln_peer, f"{label}: unicast_peer lists this node's own unicast_src_ip "
                      f"{inst.unicast_src_ip}", "list the other nodes only")
        if inst.nopreempt and inst.preempt_delay:
            self.warn(f, self.line_of(inst, "preempt_delay", ln),
                      f"{label}: preempt_delay has no effect with nopreempt")
        if self.p.where(inst, "unicast_ttl") is not None and not inst.unicast_peer:
            self.warn(f, self.line_of(inst, "unicast_ttl", ln), f"{label}: unicast_ttl without unicast_peer: "
                      "keepalived ignores it, and so does vrrpd")
            inst.unicast_ttl = 255
        if inst.native_ipv6 and any(v.address.version == 4 for v in inst.virtual_ipaddress):
            v4 = [v for v in inst.virtual_ipaddress if v.address.version == 4]
            listed = ", ".join(str(v.address) for v in v4)
            self.warn(f, v4[0].line, f"{label}: native_ipv6 with IPv4 addresses ({listed}): keepalived ignores "
                      "them, and so does vrrpd", "use a separate IPv4 instance")
            inst.virtual_ipaddress = [v for v in inst.virtual_ipaddress if v.address.version == 6]
        if inst.preempt_delay and inst.state is State.MASTER:
            self.warn(f, self.line_of(inst, "preempt_delay", ln), f"{label}: preempt_delay does not work with state "
                      "MASTER: keepalived clears it, and so does vrrpd", "set 'state BACKUP' on every node")
            inst.preempt_delay = 0.0
        if inst.nopreempt and (inst.state == State.MASTER or inst.priority == 255):
            self.warn(f, self.line_of(inst, "nopreempt", ln),
                      f"{label}: nopreempt is ignored with state MASTER or priority 255 (keepalived clears it "
                      "with state MASTER, and so does vrrpd)", "set 'state BACKUP' on every node")
            if inst.state is State.MASTER:
                inst.nopreempt = False

    def has_auth(self, inst: VrrpInstance) -> bool:
        return self.p.where(inst, "auth_type") is not None or self.p.where(inst, "auth_pass") is not None

    def instance_strict(self, inst: VrrpInstance) -> None:
        """vrrp_strict / strict_mode: RFC-only behaviour, as keepalived enforces it."""
        if not (inst.strict_mode if inst.strict_mode is not None else self.g.vrrp_strict):
            return
        f, ln = inst.file, inst.line
        label = f"vrrp_instance {inst.name}" if inst.name else "vrrp_instance"
        why = "vrrp_strict" if inst.strict_mode is None else "strict_mode"
        version = effective_version(inst, self.g)
        if inst.unicast_peer:
            self.err(f, self.line_of(inst, "unicast_peer", ln), f"{label}: unicast_peer is not allowed with {why}",
                     "remove vrrp_strict for unicast")
        if not inst.virtual_ipaddress:
            self.err(f, ln, f"{label}: {why} needs at least one virtual_ipaddress")
        elif inst.virtual_ipaddress[0].address.version == 6 and not inst.virtual_ipaddress[0].address.is_link_local:
            self.warn(f, inst.virtual_ipaddress[0].line, f"{label}: under {why} keepalived wants the first IPv6 "
                      "address link-local and drops the instance; vrrpd runs it", "list an fe80:: address first")
        if inst.preempt_delay:
            self.warn(f, self.line_of(inst, "preempt_delay", ln), f"{label}: {why} does not allow preempt_delay; "
                      "it is ignored (as keepalived does)")
            inst.preempt_delay = 0.0
        if self.has_auth(inst) and version == 2:
            self.warn(f, self.line_of(inst, "authentication", ln), f"{label}: {why} does not support "
                      "authentication; it is ignored (as keepalived does)", "remove the authentication block")
            inst.auth_type, inst.auth_pass = AuthType.NONE, b""

    def instance_references(self, inst: VrrpInstance, vrids: Dict[Tuple[int, int], List[VrrpInstance]]) -> None:
        """Names that must refer to something, and VRIDs that must be unique per interface and family."""
        f, cfg = inst.file, self.cfg
        label = f"vrrp_instance {inst.name}" if inst.name else "vrrp_instance"
        for ref in list(inst.track_script):
            if ref.name not in cfg.vrrp_scripts:  # keepalived: "track script X not found, ignoring..."
                close = close_matches(ref.name, list(cfg.vrrp_scripts), n=1)
                self.warn(f, ref.line, f"{label}: track_script '{ref.name}' names no vrrp_script: keepalived "
                          "ignores it, and so does vrrpd",
                          f"did you mean '{close[0]}'?" if close else "define vrrp_script NAME { script ... }")
                inst.track_script.remove(ref)
        self.unknown_tracks(f, label, inst)
        self.track_bfd_refs(f, label, inst.track_bfd)
        if inst.virtual_router_id:
            for other in vrids.setdefault((inst.virtual_router_id, _instance_family(inst)), []):
                why = self.vrid_conflict(inst, other)
                if why:
                    self.err(f, self.line_of(inst, "virtual_router_id", inst.line),
                             f"{label}: virtual_router_id {inst.virtual_router_id} {why} vrrp_instance {other.name} "
                             f"(line {other.line})", "change one VRID")
                    break
            else:
                vrids[(inst.virtual_router_id, _instance_family(inst))].append(inst)

    def unknown_tracks(self, f: str, label: str, obj: Any) -> None:
        """track_file / track_process naming no block: keepalived ("track file X not found, ignoring...")
        ignores the entry; so does vrrpd, with a warning."""
        for attr, known, what in (("track_file", self.cfg.track_files, "track_file"),
                                  ("track_process", self.cfg.track_processes, "vrrp_track_process")):
            for ref in list(getattr(obj, attr)):
                if ref.name not in known:
                    close = close_matches(ref.name, list(known), n=1)
                    self.warn(f, ref.line, f"{label}: {attr} '{ref.name}' names no {what} block: keepalived "
                              "ignores it, and so does vrrpd", f"did you mean '{close[0]}'?" if close else "")
                    getattr(obj, attr).remove(ref)

    def vrid_conflict(self, inst: VrrpInstance, other: VrrpInstance) -> str:
        """keepalived's rule (vrrp.c check_vrid_conflicts) for two instances of one VRID and address family:
        unicast and multicast are separate VRID spaces; multicast instances clash on the same interface and
        group; unicast ones clash when they share the interface, the local address and a peer."""
        if bool(inst.unicast_peer) != bool(other.unicast_peer):
            return ""
        if inst.unicast_peer:
            if inst.interface and other.interface and inst.interface != other.interface:
                return ""
            if inst.unicast_src_ip is None and other.unicast_src_ip is None:
                if inst.interface != other.interface:
                    return ""  # both take their interface's address: the same only on the same interface
            elif inst.unicast_src_ip != other.unicast_src_ip:
                return ""  # differ, or one is the interface's address, unknown before start-up (keepalived too)
            shared = {p.address for p in inst.unicast_peer} & {p.address for p in other.unicast_peer}
            return f"with the same local address and peer {min(shared, key=str)} is already used by" if shared else ""
        if inst.interface != other.interface:
            return ""
        if inst.mcast_dst_ip != other.mcast_dst_ip:
            return (f"on {inst.interface} is already used (vrrpd tells instances apart by VRID per interface, "
                    "even with different mcast_dst_ip groups) by")
        return f"on {inst.interface} is already used by"

    def commands(self) -> None:
        if self.p.commands and not self.g.enable_script_security and self.g.script_user in (None, "root", "0"):
            cmd, tok = self.p.commands[0]
            self.warn(tok.file, tok.line, "scripts are configured but enable_script_security is not set: a script "
                      "writable by other users would run as root (keepalived -t calls this a SECURITY VIOLATION)",
                      "add 'enable_script_security' and 'script_user USER' to global_defs")
        for cmd, tok in self.p.commands:
            program = "sh" if cmd.shell else (cmd.argv[0] if cmd.argv else "")
            if not program:
                self.err(tok.file, tok.line, f"{tok.text}: empty command")
            elif _which(program) is None:
                self.warn(tok.file, tok.line,
                          f"{tok.text}: '{program}' does not exist or is not executable on this host")

    def unweighted_tracking(self) -> None:
        """keepalived: a sync group member (without sync_group_tracking_weight) and an address owner do not float
        their priority. A weighted track_interface becomes weight 0 (FAULT when down; an owner stops tracking it),
        weighted scripts, bfds and files are dropped, a track_file with the default weight 1 becomes weight 0."""
        cfg = self.cfg
        groups = {sg.name: sg for sg in cfg.sync_groups}
        for inst in cfg.vrrp_instances:
            sg = groups.get(inst.sync_group or "")
            sync = sg is not None and not sg.sync_group_tracking_weight
            if not sync and inst.priority != 255:
                continue
            why = "SYNC group" if sync else "address owner"
            f = inst.file
            for ref in list(inst.track_interface):
                if ref.weight:
                    self.warn(f, ref.line, f"({inst.name}) ignoring {ref.name} tracked interface "
                              f"{'weight ' if sync else ''}due to {why}")
                    if sync:
                        ref.weight = 0
                    else:
                        inst.track_interface.remove(ref)
            for ref in list(inst.track_script):
                script = cfg.vrrp_scripts.get(ref.name)
                weight = ref.weight if ref.weight is not None else (script.weight if script is not None else 0)
                if weight:
                    self.warn(f, ref.line, f"({inst.name}) ignoring tracked script {ref.name} with weights due to "
                              f"{why}")
                    inst.track_script.remove(ref)
            for ref in list(inst.track_file):
                tfile = cfg.track_files.get(ref.name)
                weight = ref.weight if ref.weight is not None else (tfile.weight if tfile is not None else 1)
                if weight == 1:
                    self.warn(f, ref.line, f"({inst.name}) ignoring weight from tracked file {ref.name} due to "
                              f"{why}. specify weight 0")
                    ref.weight = 0
                elif weight:
                    self.warn(f, ref.line, f"({inst.name}) ignoring tracked file {ref.name} with weight {weight} due "
                              f"to {why}")
                    inst.track_file.remove(ref)
            for ref in list(inst.track_bfd):
                if ref.weight:
                    self.warn(f, ref.line, f"({inst.name}) ignoring tracked bfd {ref.name} with weight {ref.weight} "
                              f"due to {why}")
                    inst.track_bfd.remove(ref)

    def sync_groups(self) -> None:
        seen: Dict[str, SyncGroup] = {}
        member_of: Dict[str, str] = {}
        for sg in self.cfg.sync_groups:
            if not sg.name:
                self.err(sg.file, sg.line, "vrrp_sync_group has no name")
            elif sg.name in seen:
                self.err(sg.file, sg.line, f"duplicate vrrp_sync_group name '{sg.name}'")
            seen[sg.name] = sg
            if not sg.group:
                self.err(sg.file, sg.line, f"vrrp_sync_group {sg.name}: no 'group {{ ... }}' of instances")
            elif len(sg.group) == 1:
                self.warn(sg.file, sg.line, f"vrrp_sync_group {sg.name} has only one member")
            for member in sg.group:
                tok = self.p.member_lines.get((id(sg), member))
                ln = tok.line if tok is not None else sg.line
                inst = self.names.get(member)
                if inst is None:
                    close = close_matches(member, list(self.names), n=1)
                    self.err(sg.file, ln, f"vrrp_sync_group {sg.name}: '{member}' names no vrrp_instance",
                             f"did you mean '{close[0]}'?" if close else "")
                elif member in member_of:
                    self.err(sg.file, ln, f"vrrp_instance {member} is already in vrrp_sync_group {member_of[member]}")
                else:
                    member_of[member] = sg.name
                    inst.sync_group = sg.name
            self.track_bfd_refs(sg.file, f"vrrp_sync_group {sg.name}", sg.track_bfd)
            for ref in list(sg.track_script):
                if ref.name not in self.cfg.vrrp_scripts:
                    self.warn(sg.file, ref.line, f"vrrp_sync_group {sg.name}: track_script '{ref.name}' "
                              "names no vrrp_script: keepalived ignores it, and so does vrrpd")
                    sg.track_script.remove(ref)
            self.unknown_tracks(sg.file, f"vrrp_sync_group {sg.name}", sg)
            self.sync_group_start_state(sg)

    def sync_group_start_state(self, sg: SyncGroup) -> None:
        """keepalived (vrrp_complete_init): members start as MASTER only if all can; one member that is BACKUP
        or not the address owner (priority 255) makes every state MASTER member start as BACKUP."""
        members = [self.names[m] for m in sg.group if m in self.names and self.names[m].sync_group == sg.name]
        masters = [i for i in members if i.state is State.MASTER]
        if masters and any(i.state is State.BACKUP or i.priority != 255 for i in members):
            self.warn(sg.file, sg.line, f"vrrp_sync_group {sg.name}: state MASTER members ("
                      f"{', '.join(i.name for i in masters)}) start as BACKUP, because not every member is MASTER "
                      "with priority 255: keepalived does so, and so does vrrpd")
            for inst in masters:
                inst.state = State.BACKUP

    def fwmark_only(self, vs: VirtualServer) -> bool:
        """A fwmark virtual server, or one whose group holds fwmarks only."""
        if vs.fwmark is not None:
            return True
        vsg = self.cfg.virtual_server_groups.get(vs.group or "")
        return vsg is not None and bool(vsg.entries) and all(e.fwmark is not None for e in vsg.entries)

    def track_groups(self) -> None:
        """A static entry's track_group must name a track_group block (keepalived: "track_group X not found")."""
        cfg = self.cfg
        for entry in cfg.static_ipaddress + cfg.static_routes + cfg.static_rules:  # type: ignore[operator]
            name = entry.track_group
            if name is not None and name not in cfg.track_groups:
                self.err(getattr(entry, "file", "") or (cfg.files[0] if cfg.files else ""), entry.line,
                         f"track_group {name} not found", "track_group NAME { group { VI_1 } }")
        names = {inst.name for inst in cfg.vrrp_instances}
        for tg in cfg.track_groups.values():
            for member in tg.group:
                if member not in names:
                    self.warn(tg.file, tg.line, f"track_group {tg.name}: {member} is not a vrrp_instance")

    def checkers(self, vs: VirtualServer) -> None:
        """FILE_CHECK needs a track_file (keepalived drops it otherwise); UDP_CHECK's reply lengths; a link-local
        IPv6 target needs bind_if (keepalived's check_conn_opts drops the checker). A real server without its own
        weight takes the virtual server's."""
        for rs in vs.real_servers:
            if not rs.weight_set:
                rs.weight = vs.weight
            self.smtp_hosts(vs, rs)
            for chk in list(rs.checkers):
                for url in chk.urls:
                    self.url_regex(vs, chk, url)
                target = chk.connect_ip or rs.address
                if (chk.kind in _CONNECTION_CHECKERS and target.version == 6 and target.is_link_local
                        and not chk.bind_if):
                    self.err(vs.file, chk.line, f"Checker link local address {target} requires a bind_if",
                             "keepalived drops the checker; write bind_if IFNAME")
                    rs.checkers.remove(chk)
                elif chk.kind == "FILE_CHECK":
                    if chk.track_file is None:
                        self.warn(vs.file, chk.line, "FILE_CHECK has no track_file specified - ignoring")
                        rs.checkers.remove(chk)
                    elif chk.track_file not in self.cfg.track_files:
                        self.err(vs.file, chk.line, f"FILE_CHECK track_file '{chk.track_file}' names no track_file "
                                 "block", "track_file NAME { file PATH }")
                elif chk.kind == "UDP_CHECK" and chk.min_reply_length > chk.max_reply_length:
                    self.warn(vs.file, chk.line, f"UDP_CHECK min_reply_length {chk.min_reply_length} > "
                              f"max_reply_length {chk.max_reply_length} - will always fail")

    _CONNECTION = ("connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "fwmark", "connect_timeout")

    def smtp_hosts(self, vs: VirtualServer, rs: RealServer) -> None:
        """keepalived's smtp_check_end_handler: each deprecated `host` block of an SMTP_CHECK is one more SMTP_CHECK
        with the host's connection settings and the rest of the SMTP_CHECK's; an SMTP_CHECK without connection
        settings of its own takes the first host's instead."""
        for chk in list(rs.checkers):
            if not chk.hosts:
                continue
            self.warn(vs.file, chk.line, "The SMTP_CHECK host block is deprecated. Please define additional checkers.")
            hosts, chk.hosts = chk.hosts, []
            if all(getattr(chk, k) in (None, 0) for k in self._CONNECTION):
                first = hosts.pop(0)
                for k in self._CONNECTION:
                    setattr(chk, k, getattr(first, k))
            at = rs.checkers.index(chk)
            for n, host in enumerate(hosts, 1):
                rs.checkers.insert(at + n, dataclass_replace(chk, line=host.line, hosts=[],
                                                             **{k: getattr(host, k) for k in self._CONNECTION}))

    def url_regex(self, vs: VirtualServer, chk: Checker, url: UrlCheck) -> None:
        """keepalived's url_check(): regex parameters without a regex are dropped, as are offsets that cannot both
        hold; a regex that does not compile is dropped ("Invalid regex")."""
        if url.regex is None:
            if url.regex_options or url.regex_no_match or url.regex_min_offset or url.regex_max_offset is not None \
                    or url.regex_stack:
                self.warn(vs.file, chk.line, "regex parameters specified without regex")
                url.regex_options, url.regex_no_match, url.regex_min_offset = [], False, 0
                url.regex_max_offset = url.regex_stack = None
            return
        if url.regex_max_offset is not None and url.regex_min_offset > url.regex_max_offset:
            self.warn(vs.file, chk.line, f"regex min offset {url.regex_min_offset} > regex_max_offset "
                      f"{url.regex_max_offset} - ignoring")
            url.regex_min_offset, url.regex_max_offset = 0, None
        try:
            url_pattern(url)
        except re.error as exc:
            self.warn(vs.file, chk.line, f"Invalid regex: '{url.regex}' at offset {exc.pos}: {exc.msg}",
                      "Python's re reads it (most PCRE syntax is the same)")
            url.regex = None

    def virtual_server(self, vs: VirtualServer) -> None:
        f, ln = vs.file, vs.line
        self.checkers(vs)
        if vs.group is not None and vs.group not in self.cfg.virtual_server_groups:
            self.err(f, ln, f"virtual_server group '{vs.group}' names no virtual_server_group")
        if not vs.real_servers:
            self.warn(f, ln, "virtual_server has no real_server", "keepalived ignores it too")
        ptok = self.p.where(vs, "protocol")
        if ptok is not None and self.fwmark_only(vs):
            self.warn(f, ptok.line, "protocol given for a fwmark virtual server: keepalived ignores it, and so "
                      "does vrrpd", "remove the protocol line")
        if vs.fwmark is None and self.p.where(vs, "protocol") is None:
            kinds = {c.kind for rs in vs.real_servers for c in rs.checkers}
            if kinds & {"HTTP_GET", "SSL_GET", "TCP_CHECK", "SMTP_CHECK"}:
                self.warn(f, ln, "virtual_server has no 'protocol'; keepalived would use UDP, vrrpd uses TCP "
                          "as its TCP checkers show", "write 'protocol TCP'")
                vs.protocol = "TCP"
            else:
                self.warn(f, ln, "virtual_server has no 'protocol'; UDP is used, as keepalived does",
                          "write 'protocol TCP' or 'protocol UDP'")
                vs.protocol = "UDP"
        if vs.ops and vs.protocol != "UDP" and vs.fwmark is None:
            self.warn(f, self.line_of(vs, "ops", ln), "ops (one-packet scheduling) needs protocol UDP; ignored")
            vs.ops = False
        if vs.hysteresis and vs.hysteresis >= vs.quorum:
            self.warn(f, self.line_of(vs, "hysteresis", ln), f"hysteresis {vs.hysteresis} >= quorum {vs.quorum}; "
                      f"using {max(0, vs.quorum - 1)}, as keepalived does")
            vs.hysteresis = max(0, vs.quorum - 1)
        self.real_server_ports(vs)
        for rs in vs.real_servers:
            for chk in list(rs.checkers):
                if chk.kind != "BFD_CHECK":
                    continue
                if not chk.bfd_name or len(chk.bfd_name) > 31 or chk.bfd_name not in self.cfg.bfd_instances:
                    why = ("has no name" if not chk.bfd_name else f"name '{_short(chk.bfd_name)}' names no "
                           "bfd_instance")
                    self.warn(f, chk.line, f"BFD_CHECK {why} - ignoring", "BFD_CHECK { name BFD_INSTANCE }")
                    rs.checkers.remove(chk)

    def real_server_ports(self, vs: VirtualServer) -> None:
        """keepalived (check_data.c): DR and TUN cannot change the port, so a real server's port follows the
        virtual server's (a fwmark service has none); NAT keeps it, or takes the service's when it has none."""
        if vs.group is not None:
            return
        f = vs.file
        for rs in vs.real_servers:
            method = rs.lb_kind or vs.lb_kind
            if method is LbKind.NAT:
                if rs.port is None and vs.port and vs.fwmark is None:
                    rs.port = vs.port
            elif vs.fwmark is not None:
                if rs.port:
                    self.warn(f, rs.line, f"real_server {rs.address} port {rs.port} with {method.name} on a fwmark "
                              "virtual server: keepalived clears it, and so does vrrpd", "remove the port")
                rs.port = None
            elif rs.port is None:
                rs.port = vs.port
            elif rs.port != vs.port:
                self.warn(f, rs.line, f"real_server {rs.address} port {rs.port} differs from the virtual server's "
                          f"{vs.port}, which {method.name} cannot change: keepalived uses {vs.port}, and so does "
                          "vrrpd", f"write real_server {rs.address} {vs.port}")
                rs.port = vs.port
        sorry = vs.sorry_server
        if sorry is not None and (vs.sorry_server_lvs_method or vs.lb_kind) is not LbKind.NAT:
            addr, port = sorry
            if vs.fwmark is not None:
                port = None
            elif port is None:
                port = vs.port
            elif port != vs.port:
                self.warn(f, self.line_of(vs, "sorry_server", vs.line), f"sorry_server port {port} differs from "
                          f"the virtual server's {vs.port}: keepalived uses {vs.port}, and so does vrrpd")
                port = vs.port
            vs.sorry_server = (addr, port)


def _sort_diagnostics(diags: List[Diagnostic], files: List[str]) -> List[Diagnostic]:
    order = {f: i for i, f in enumerate(files)}
    return sorted(diags, key=lambda d: (order.get(d.file, len(order)), d.file, d.line))


# --------------------------------------------------------------------------------------------
# 3.7 Public entry points
# --------------------------------------------------------------------------------------------


def _finish(lexer: _Lexer, diags: List[Diagnostic], check_interfaces: bool) -> Tuple[Config, List[Diagnostic]]:
    parser = _Parser(lexer.tokens, diags)
    try:
        config = parser.parse()
        _Validator(parser, check_interfaces).run()
    except RecursionError:
        config = parser.config
        diags.append(Diagnostic(lexer.files[0] if lexer.files else "<string>", 0, Severity.ERROR,
                                "configuration nested too deeply"))
    config.files = list(lexer.files)
    config.config_id = lexer.config_id
    for inst in config.vrrp_instances:  # parsed and validated: what is empty stays empty
        share_empty_lists(inst)
    return config, _sort_diagnostics(diags, lexer.files)


def parse_config_text(text: str, filename: str = "<string>", *, check_interfaces: bool = False,
                      config_id: Optional[str] = None) -> Tuple[Config, List[Diagnostic]]:
    """Parse configuration text; returns the model and every problem found (never raises for bad input).

    `config_id` selects `@ID` lines (keepalived's -i); default: the host name up to its first dot."""
    diags: List[Diagnostic] = []
    lexer = _Lexer(diags, config_id)
    lexer.stack.append(os.path.realpath(filename) if not filename.startswith("<") else filename)
    lexer.lex_text(text, filename)
    return _finish(lexer, diags, check_interfaces)


def parse_config(path: str, *, check_interfaces: bool = False,
                 config_id: Optional[str] = None) -> Tuple[Config, List[Diagnostic]]:
    """Parse the file at `path` with its includes; an unreadable file is an ERROR diagnostic."""
    diags: List[Diagnostic] = []
    lexer = _Lexer(diags, config_id)
    lexer.read_file(path)
    if not lexer.files:
        lexer.files.append(path)
    return _finish(lexer, diags, check_interfaces)


def load_config(path: str, *, check_interfaces: bool = True, config_id: Optional[str] = None) -> Config:
    """Parse and validate for the daemon: raises ConfigError if any ERROR; logs the warnings."""
    config, diags = parse_config(path, check_interfaces=check_interfaces, config_id=config_id)
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if errors:
        raise ConfigError(diags)
    for d in diags:
        log.warning(str(d))
    return config


def default_config_path() -> str:
    """/etc/vrrpd/vrrpd.conf, or /etc/keepalived/keepalived.conf when only that one exists."""
    ours, theirs = "/etc/vrrpd/vrrpd.conf", "/etc/keepalived/keepalived.conf"
    if not os.path.exists(ours) and os.path.exists(theirs):
        return theirs
    return ours


def keyword_table_markdown() -> str:
    """The keyword registry as a Markdown table (block, keywords, what vrrpd does) for the README.

    One row per block and kind of support, so the README cannot drift from the parser."""
    rows = ["| block | keywords | vrrpd |", "|---|---|---|"]
    for block, spec in KEYWORDS.items():
        title = "(top level)" if block == "top" else BLOCK_TITLES.get(block, block)
        kinds = (("supported", lambda n, kw: kw.supported),
                 ("accepted, not acted upon (no meaning in one process without SNMP and DBus)",
                  lambda n, kw: not kw.supported and no_meaning_here(n) is not None),
                 (KEEPALIVED_IGNORES, lambda n, kw: not kw.supported and _ignored_by_keepalived(n, kw)),
                 ("accepted, not yet acted upon", lambda n, kw: not kw.supported and no_meaning_here(n) is None
                  and not _ignored_by_keepalived(n, kw)))
        for what, wanted in kinds:
            names = sorted((n for n, kw in spec.items() if wanted(n, kw)), key=str.lower)
            if names:
                rows.append(f"| {title} | {' '.join(f'`{n}`' for n in names)} | {what} |")
    return "\n".join(rows) + "\n"


def config_summary(config: Config) -> List[str]:
    """Lines describing what would run: instances with VIPs and derived timers, scripts, services."""
    g = config.global_defs
    out: List[str] = []
    for inst in config.vrrp_instances:
        adv, skew, down = vrrp_timers(inst, g)
        peers = ", ".join(str(u.address) for u in inst.unicast_peer)
        mode = f"unicast to {peers}" if peers else "multicast"
        out.append(f"vrrp_instance {inst.name or '?'}: vrid {inst.virtual_router_id} on {inst.interface or '?'}, "
                   f"VRRPv{effective_version(inst, g)}, priority {inst.priority}, start {inst.state.value}, {mode}")
        vips = " ".join(str(v.address) + (f" dev {v.dev}" if v.dev else "") for v in inst.virtual_ipaddress)
        out.append(f"    VIPs: {vips or '(none)'}")
        out.append(f"    advert interval {adv:g} s, skew time {skew:.3f} s, master down interval {down:.3f} s")
        if inst.track_script:
            out.append("    track_script: " + ", ".join(
                r.name + (f" weight {r.weight}" if r.weight is not None else "") for r in inst.track_script))
        if inst.track_bfd:
            out.append("    track_bfd: " + ", ".join(
                r.name + (f" weight {r.weight}" if r.weight is not None else "") for r in inst.track_bfd))
        if inst.auth_hmac is not None:
            ah = inst.auth_hmac
            out.append(f"    auth_hmac: HMAC-SHA256-128, keys {sorted(ah.keys)}, active key {ah.active_key}, "
                       f"mode {ah.mode}, anti_replay {ah.anti_replay}")
    for bfd in config.bfd_instances.values():
        port = BFD_MULTIHOP_PORT if bfd.multihop else BFD_PORT
        out.append(f"bfd_instance {bfd.name}: neighbor {bfd.neighbor_ip} (UDP {port}), min_rx {bfd.min_rx:g} ms, "
                   f"min_tx {bfd.min_tx:g} ms, idle_tx {bfd.idle_tx:g} ms, multiplier {bfd.multiplier}, "
                   f"ttl {bfd.out_ttl}{', passive' if bfd.passive else ''}")
    for sg in config.sync_groups:
        out.append(f"vrrp_sync_group {sg.name}: {' '.join(sg.group)}")
    for script in config.vrrp_scripts.values():
        cmd = script.script.raw if script.script else "?"
        out.append(f"vrrp_script {script.name}: '{cmd}' every {script.interval:g} s, weight {script.weight}, "
                   f"rise {script.rise}, fall {script.fall}")
    for vs in config.virtual_servers:
        if vs.fwmark is not None:
            name = f"fwmark {vs.fwmark}"
        elif vs.group is not None:
            name = f"group {vs.group}"
        else:
            name = f"{vs.address}:{vs.port}"
        out.append(f"virtual_server {name} {vs.protocol} {vs.lb_algo}/{vs.lb_kind.name}: "
                   f"{len(vs.real_servers)} real server(s), checks every {vs.delay_loop:g} s")
        for rs in vs.real_servers:
            where = f"[{rs.address}]:{rs.port}" if rs.address.version == 6 else f"{rs.address}:{rs.port}"
            checks = ", ".join(c.kind for c in rs.checkers) or "no checker (always up)"
            out.append(f"    real_server {where} weight {rs.weight}: {checks}")
    if not config.vrrp_instances and not config.virtual_servers and not config.bfd_instances:
        out.append("nothing would run: no vrrp_instance and no virtual_server")
    if config.accepted_only:
        out.append("accepted but not acted upon by vrrpd:")
        out.extend("    " + where for where in config.accepted_only)
    return out


# ============================================================================================
# 4. Wire formats: pure functions on bytes, no sockets
# ============================================================================================

# --------------------------------------------------------------------------------------------
# 4.1 VRRP, IPv4, ARP and netlink: adverts of both families (RFC 3768, RFC 5798), the IPv4 header,
#     gratuitous ARP, the kernel's BPF receive filter, netlink messages and attributes, addresses, routes
#     and rules
# --------------------------------------------------------------------------------------------

VRRP_TYPE_ADVERTISEMENT = 1
VRRP_AUTH_DATA_LEN = 8
VRRP_HEADER_LEN = 8
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
VRRP_V2_HEADER = struct.Struct("!BBBBBBH")  # vers_type, vrid, priority, naddr, auth_type, adver_int, csum
VRRP_V3_HEADER = struct.Struct("!BBBBHH")  # vers_type, vrid, priority, naddr, rsvd|max_adver_int, csum


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of data: one's complement of the one's complement sum.

    That sum of 16-bit words is the data as one big number modulo 0xFFFF (2**16 is 1 modulo 0xFFFF), with
    0xFFFF standing for a zero remainder unless every byte is zero: one big-number operation per packet."""
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    if not total and any(data):
        total = 0xFFFF
    return ~total & 0xFFFF


def pseudo_header(src: IPAddress, dst: IPAddress, length: int, protocol: int = IPPROTO_VRRP) -> bytes:
    """The pseudo-header of the upper-layer checksum: IPv4 {src, dst, 0, protocol, length} (RFC 5798
    section 5.2.8) or IPv6 {src, dst, 32-bit length, 3 zero bytes, next header} (RFC 8200 section 8.1)."""
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, protocol, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, protocol)


@dataclass
class VrrpAdvert:
    """One decoded VRRP ADVERTISEMENT (RFC 3768 section 5 for v2, RFC 5798 section 5.2 for v3), either family.

    `advert_int` is in seconds (v2 whole seconds, v3 centisecond resolution)."""

    version: int
    vrid: int
    priority: int
    addresses: List[IPAddress]
    advert_int: float
    auth_type: int = 0
    auth_data: bytes = b""
    checksum: int = 0
    old_checksum: bool = False  # a unicast v3 advert summed with the multicast group (old_unicast_checksum)


def encode_advert(adv: VrrpAdvert, src: Optional[IPAddress] = None, dst: Optional[IPAddress] = None,
                  checksum_as_v2: bool = False) -> bytes:
    """The VRRP message bytes of adv, for IPv4 or IPv6 addresses alike, checksum filled in.

    v3 sums the pseudo-header of src and dst (RFC 5798 section 5.2.8) unless checksum_as_v2 (keepalived's
    v3_checksum_as_v2); v2 sums the message only. Without src and dst an IPv6 checksum stays zero, for a
    socket whose kernel computes it (IPV6_CHECKSUM)."""
    family = (src or dst or (adv.addresses[0] if adv.addresses else None) or ipaddress.IPv4Address(0)).version
    if any(a.version != family for a in adv.addresses):
        raise ValueError("an advert carries addresses of one family")
    addrs = b"".join(a.packed for a in adv.addresses)
    if adv.version == 2 and family == 4:
        auth = adv.auth_data[:VRRP_AUTH_DATA_LEN].ljust(VRRP_AUTH_DATA_LEN, b"\0")
        intvl = max(1, min(255, int(round(adv.advert_int))))
        head = VRRP_V2_HEADER.pack(0x21, adv.vrid, adv.priority, len(adv.addresses), adv.auth_type, intvl, 0)
        msg = head + addrs + auth
        csum = inet_checksum(msg)
    elif adv.version == 3:
        centis = max(1, min(0xFFF, int(round(adv.advert_int * 100))))
        msg = VRRP_V3_HEADER.pack(0x31, adv.vrid, adv.priority, len(adv.addresses), centis, 0) + addrs
        if src is not None and dst is not None and not (checksum_as_v2 and family == 4):
            csum = inet_checksum(pseudo_header(src, dst, len(msg)) + msg)
        elif family == 6:
            return msg
        else:
            csum = inet_checksum(msg)
    else:
        raise ValueError(f"VRRP version {adv.version} not supported" + (" over IPv6" if family == 6 else ""))
    return msg[:6] + struct.pack("!H", csum) + msg[8:]


def decode_advert(msg: bytes, src: Optional[IPAddress] = None, dst: Optional[IPAddress] = None,
                  checksum_as_v2: bool = False, family: int = 4, addresses: bool = True) -> VrrpAdvert:
    """Decode and verify a VRRP v2/v3 message; raises PacketError (with a counter key) on anything wrong.

    The family (the address width) is src's, else `family`. Checks (RFC 5798 section 7.1): version (IPv6 is
    VRRPv3 only), type, complete packet for the address count, and the checksum when src and dst are given.
    addresses=False leaves the address list empty (advert_addresses() decodes it): the receive path builds
    those objects only for an advert that passed its instance's checks, not for each one of a flood."""
    if src is not None:
        family = src.version
    if len(msg) < VRRP_HEADER_LEN:
        raise PacketError("truncated", f"{len(msg)} bytes")
    vers_type, vrid, priority, naddr = msg[0], msg[1], msg[2], msg[3]
    version, ptype = vers_type >> 4, vers_type & 0x0F
    if version not in (2, 3) or (version == 2 and family == 6):
        raise PacketError("bad_version", str(version) + (" (IPv6 needs VRRPv3)" if family == 6 else ""))
    if ptype != VRRP_TYPE_ADVERTISEMENT:
        raise PacketError("bad_type", str(ptype))
    width = 4 if family == 4 else 16
    expected = VRRP_HEADER_LEN + width * naddr + (VRRP_AUTH_DATA_LEN if version == 2 else 0)
    if len(msg) != expected:
        raise PacketError("bad_length", f"{len(msg)} bytes for {naddr} addresses (expected {expected})")
    if naddr == 0 and version == 2:
        raise PacketError("bad_length", "no address")
    checksum = struct.unpack_from("!H", msg, 6)[0]
    if version == 2 or (checksum_as_v2 and family == 4):
        ok = inet_checksum(msg) == 0
    elif src is None or dst is None:
        ok = True if family == 6 else inet_checksum(msg) == 0  # IPv6: the kernel checked (IPV6_CHECKSUM)
    else:
        ok = inet_checksum(pseudo_header(src, dst, len(msg)) + msg) == 0
    if not ok:
        raise PacketError("bad_checksum", f"0x{checksum:04x}")
    addrs = advert_addresses(msg, family) if addresses else []
    if version == 2:
        auth_type, intvl = msg[4], msg[5]
        if intvl == 0:
            raise PacketError("bad_interval", "0")
        auth_data = msg[expected - VRRP_AUTH_DATA_LEN: expected]
        return VrrpAdvert(2, vrid, priority, addrs, float(intvl), auth_type, auth_data, checksum)
    centis = struct.unpack_from("!H", msg, 4)[0] & 0x0FFF
    if centis == 0:
        raise PacketError("bad_interval", "0")
    return VrrpAdvert(3, vrid, priority, addrs, centis / 100.0, 0, b"", checksum)


def advert_addresses(msg: bytes, family: int = 4) -> List[IPAddress]:
    """The address list of a VRRP message that decode_advert() has verified."""
    width, make = (4, ipaddress.IPv4Address) if family == 4 else (16, ipaddress.IPv6Address)
    return [make(msg[8 + width * i: 8 + width * (i + 1)]) for i in range(msg[3])]


def is_multicast(address: IPAddress) -> bool:
    """address.is_multicast without ipaddress's network lookup: the receive path asks it of every packet."""
    # (the integer itself: int() of an address is a Python __int__)
    return address._ip >> 28 == 0xE if isinstance(address, ipaddress.IPv4Address) else address._ip >> 120 == 0xFF


@dataclass
class Received:
    """One datagram as a VRRP socket hands it over, either family: the header fields the receive checks
    need, the payload after the IP header, and the kernel receive time (CLOCK_REALTIME) when known."""

    src: IPAddress
    dst: IPAddress
    ttl: int  # IPv4 TTL or IPv6 hop limit
    payload: bytes
    protocol: int = IPPROTO_VRRP
    received_at: Optional[float] = None
    header: bytes = b""  # IPv4: the IP header itself (AH authenticates it)


_IPV4_SEEN: Dict[bytes, ipaddress.IPv4Address] = {}  # packed -> address: the same few peers, advert after advert


def _ipv4_address(packed: bytes) -> ipaddress.IPv4Address:
    """ipaddress.IPv4Address(packed), made once per address (they are immutable); bounded against forged sources."""
    addr = _IPV4_SEEN.get(packed)
    if addr is None:
        if len(_IPV4_SEEN) >= 1024:
            _IPV4_SEEN.clear()
        addr = _IPV4_SEEN[packed] = ipaddress.IPv4Address(packed)
    return addr


def decode_ipv4(packet: bytes) -> Received:
    """Split a raw IPv4 datagram (as a raw socket returns it) into header fields and payload."""
    if len(packet) < IPV4_HEADER.size:
        raise PacketError("truncated", "short IP header")
    ver_ihl, _tos, tot_len, _ident, _frag, ttl, proto, _csum, src, dst = IPV4_HEADER.unpack_from(packet)
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < IPV4_HEADER.size or len(packet) < ihl:
        raise PacketError("bad_ip_header")
    end = min(len(packet), tot_len) if tot_len >= ihl else len(packet)
    seen = _IPV4_SEEN  # (the addresses seen before without a call: this is every advert received)
    return Received(seen.get(src) or _ipv4_address(src), seen.get(dst) or _ipv4_address(dst), ttl, packet[ihl:end],
                    proto, None, packet[:ihl])


def encode_ipv4(
    src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, payload: bytes,
    ttl: int = VRRP_TTL, tos: int = 0xC0, ident: int = 0, protocol: int = IPPROTO_VRRP,
) -> bytes:
    """An IPv4 header (no options, header checksum filled in) followed by payload, for IP_HDRINCL sockets."""
    head = IPV4_HEADER.pack(0x45, tos, IPV4_HEADER.size + len(payload), ident, 0, ttl, protocol, 0,
                            src.packed, dst.packed)
    return head[:10] + struct.pack("!H", inet_checksum(head)) + head[12:] + payload


ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_BROADCAST = b"\xff" * 6


def garp_frame(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    """A gratuitous ARP: an Ethernet broadcast ARP request with sender = target = address (RFC 5227 section 3)."""
    eth = ETH_BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + mac + address.packed + b"\0" * 6 + address.packed
    return eth + arp


# -- classic BPF receive filter (linux/filter.h): what the kernel drops before vrrpd wakes up ---------

BPF_LD, BPF_LDX, BPF_ST, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_LEN, BPF_MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
BPF_ADD, BPF_SUB, BPF_AND, BPF_RSH = 0x00, 0x10, 0x50, 0x70
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_K, BPF_X = 0x00, 0x08
BPF_TAX, BPF_TXA = 0x00, 0x80
BPF_CHECKSUM_MAX = 88  # the longest VRRP message whose checksum the filter verifies (longer ones go to user space)
SKF_NET_OFF = -0x100000  # loads relative to the network header (an IPv6 raw socket sees the VRRP message at 0)
BPF_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
BPF_ACCEPT = 0xFFFFFFFF


@dataclass(frozen=True)
class RxFilter:
    """What one VRRP socket's kernel filter lets through: adverts of these (version << 4 | type) bytes, of these
    VRIDs (None: any, for log_unknown_vrids), at least `min_length` bytes of VRRP, and multicast ones with
    TTL/hop limit 255 (RFC 5798 section 7.1; unicast TTLs are unicast_peer's min_ttl/max_ttl, checked in user
    space)."""

    family: int
    kinds: Tuple[int, ...]
    vrids: Optional[Tuple[int, ...]]
    min_length: int = VRRP_HEADER_LEN
    # IPv4 only (IPv6's the kernel verifies itself): verify the VRRP checksum of v2 adverts, and of v3 ones over
    # the pseudo-header ("pseudo") or the message alone ("message", v3_checksum_as_v2); None: leave v3 to user space
    checksum: bool = False
    v3_checksum: Optional[str] = "pseudo"
    # also accept a v3 pseudo-header sum with this address (an int) as the destination: keepalived's
    # old_unicast_checksum, the multicast group in the sum of a unicast advert; 0: no
    old_group: int = 0

    def describe(self) -> str:
        versions = ",".join(str(k >> 4) for k in self.kinds)
        vrids = "any" if self.vrids is None else ",".join(map(str, self.vrids))
        text = f"multicast TTL 255, VRRP length >= {self.min_length}, version {versions}, VRID {vrids}"
        return text + (", checksum" if self.checksum and self.family == 4 else "")


def rx_filter_for(family: int, versions: List[int], vrids: Optional[List[int]], checksum: bool = False,
                  v3_checksum: Optional[str] = "pseudo", old_group: Optional[IPAddress] = None) -> RxFilter:
    """The filter of a socket whose instances use `versions` and `vrids` (None: keep unknown VRIDs)."""
    kinds = tuple(sorted({(v << 4) | VRRP_TYPE_ADVERTISEMENT for v in versions}))
    # the shortest advert: a v3 header with no address; v2 always carries 8 bytes of authentication data
    min_length = VRRP_HEADER_LEN if 3 in versions else VRRP_HEADER_LEN + VRRP_AUTH_DATA_LEN
    return RxFilter(family, kinds, None if vrids is None else tuple(sorted(set(vrids))), min_length,
                    checksum and family == 4, v3_checksum,
                    int(old_group) if old_group is not None and v3_checksum == "pseudo" else 0)


def _checksum_program(f: RxFilter, op: Any) -> None:
    """The IPv4 checksum test: the one's complement sum of the VRRP message (v3: with the pseudo-header) must
    be 0xFFFF. Unrolled (classic BPF has no loops) up to BPF_CHECKSUM_MAX bytes; an IP header with options, an
    odd or a longer message goes to user space unverified. The sum is kept in X, the VRRP length in M[0].
    With `old_group` the v3 sum is taken without the destination (M[2], M[3]=1 on that path) and passes with the
    packet's destination or with old_group."""
    old = f.old_group
    op(BPF_LD | BPF_B | BPF_ABS, 0)
    op(BPF_JMP | BPF_JEQ | BPF_K, 0x45, jt=1)  # IP options: no fixed offsets, user space checks
    op(BPF_JMP | BPF_JA, "accept")
    op(BPF_LD | BPF_W | BPF_LEN)
    op(BPF_ALU | BPF_SUB | BPF_K, IPV4_HEADER.size)
    op(BPF_ST, 0)
    op(BPF_JMP | BPF_JSET | BPF_K, 1, jt=1)  # odd length: not an advert; user space says why
    op(BPF_JMP | BPF_JGT | BPF_K, BPF_CHECKSUM_MAX, jf=1)
    op(BPF_JMP | BPF_JA, "accept")
    op(BPF_LDX | BPF_W | BPF_IMM, 0)
    if old:
        op(BPF_LD | BPF_W | BPF_IMM, 0)
        op(BPF_ST, 3)
    op(BPF_LD | BPF_B | BPF_ABS, IPV4_HEADER.size)  # version
    op(BPF_ALU | BPF_AND | BPF_K, 0xF0)
    op(BPF_JMP | BPF_JEQ | BPF_K, 0x30, jf=1)  # v2: the message alone
    if f.v3_checksum is None:
        op(BPF_JMP | BPF_JA, "accept")
    else:
        op(BPF_JMP | BPF_JA, "pseudo" if f.v3_checksum == "pseudo" else "message")
    op(BPF_JMP | BPF_JA, "message")
    op.label("pseudo")
    if old:
        op(BPF_LD | BPF_W | BPF_IMM, 1)
        op(BPF_ST, 3)
    for offset in (12, 14) if old else (12, 14, 16, 18):  # source and destination addresses
        op(BPF_LD | BPF_H | BPF_ABS, offset)
        op(BPF_ALU | BPF_ADD | BPF_X)
        op(BPF_MISC | BPF_TAX)
    op(BPF_LD | BPF_W | BPF_IMM, IPPROTO_VRRP)  # zero and protocol
    op(BPF_ALU | BPF_ADD | BPF_X)
    op(BPF_MISC | BPF_TAX)
    op(BPF_LD | BPF_W | BPF_MEM, 0)  # the pseudo-header's length
    op(BPF_ALU | BPF_ADD | BPF_X)
    op(BPF_MISC | BPF_TAX)
    op.label("message")
    for offset in range(0, BPF_CHECKSUM_MAX, 2):
        op(BPF_LD | BPF_W | BPF_MEM, 0)
        op(BPF_JMP | BPF_JGT | BPF_K, offset, jf="fold")
        op(BPF_LD | BPF_H | BPF_ABS, IPV4_HEADER.size + offset)
        op(BPF_ALU | BPF_ADD | BPF_X)
        op(BPF_MISC | BPF_TAX)
    def fold() -> None:
        for _ in range(2):  # A = (X & 0xFFFF) + (X >> 16), twice
            op(BPF_MISC | BPF_TXA)
            op(BPF_ALU | BPF_RSH | BPF_K, 16)
            op(BPF_ST, 1)
            op(BPF_MISC | BPF_TXA)
            op(BPF_ALU | BPF_AND | BPF_K, 0xFFFF)
            op(BPF_LDX | BPF_W | BPF_MEM, 1)
            op(BPF_ALU | BPF_ADD | BPF_X)
            op(BPF_MISC | BPF_TAX)

    op.label("fold")
    if old:
        op(BPF_LD | BPF_W | BPF_MEM, 3)
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, jt="fold_message")
        op(BPF_MISC | BPF_TXA)
        op(BPF_ST, 2)  # the sum without a destination
        for offset in (16, 18):  # the packet's destination
            op(BPF_LD | BPF_H | BPF_ABS, offset)
            op(BPF_ALU | BPF_ADD | BPF_X)
            op(BPF_MISC | BPF_TAX)
        fold()
        op(BPF_JMP | BPF_JEQ | BPF_K, 0xFFFF, jt="accept")
        op(BPF_LDX | BPF_W | BPF_MEM, 2)  # else the old one: the multicast group as the destination
        op(BPF_LD | BPF_W | BPF_IMM, (old >> 16) + (old & 0xFFFF))
        op(BPF_ALU | BPF_ADD | BPF_X)
        op(BPF_MISC | BPF_TAX)
    op.label("fold_message")
    fold()
    op(BPF_JMP | BPF_JEQ | BPF_K, 0xFFFF, jt="accept", jf="drop_checksum")


class _BpfAssembler:
    """Instructions with symbolic jumps: jt/jf None (the next instruction), a count to skip, or a label; an
    unconditional BPF_JA takes its label in k (32 bits: the long jumps)."""

    def __init__(self) -> None:
        self.prog: List[list] = []
        self.labels: Dict[str, int] = {}

    def __call__(self, code: int, k: Any = 0, jt: Any = None, jf: Any = None) -> None:
        self.prog.append([code, jt, jf, k])

    def label(self, name: str) -> None:
        self.labels[name] = len(self.prog)

    def resolve(self) -> List[Tuple[int, int, int, int]]:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.prog):
            offsets = [j if isinstance(j, int) else 0 if j is None else self.labels[j] - i - 1 for j in (jt, jf)]
            if isinstance(k, str):
                k = self.labels[k] - i - 1
            if not all(0 <= o <= 255 for o in offsets) or k < -0x80000000:
                raise ValueError(f"BPF jump out of range at {i}")
            out.append((code, offsets[0], offsets[1], k & 0xFFFFFFFF))
        return out


def vrrp_filter_program(f: RxFilter) -> List[Tuple[int, int, int, int]]:
    """The classic BPF program of `f` as (code, jt, jf, k) instructions; it returns 0 (drop) or BPF_ACCEPT.

    An IPv4 raw socket's filter sees the packet from its IP header; an IPv6 one sees the VRRP message, and
    reaches the IPv6 header (destination, hop limit) through SKF_NET_OFF."""
    op = _BpfAssembler()
    if f.family == 4:
        op(BPF_LDX | BPF_B | BPF_MSH, 0)  # X = IP header length
        op(BPF_LD | BPF_W | BPF_LEN)
        op(BPF_ALU | BPF_SUB | BPF_X)  # A = VRRP length
        op(BPF_JMP | BPF_JGE | BPF_K, f.min_length, jf="drop")
        op(BPF_LD | BPF_B | BPF_ABS, 16)  # first byte of the destination
        op(BPF_ALU | BPF_AND | BPF_K, 0xF0)
        op(BPF_JMP | BPF_JEQ | BPF_K, 0xE0, jf="vrrp")
        op(BPF_LD | BPF_B | BPF_ABS, 8)  # TTL
        op(BPF_JMP | BPF_JEQ | BPF_K, VRRP_TTL, jf="drop")
        byte0, byte1 = (BPF_LD | BPF_B | BPF_IND, 0), (BPF_LD | BPF_B | BPF_IND, 1)
    else:
        op(BPF_LD | BPF_W | BPF_LEN)
        op(BPF_JMP | BPF_JGE | BPF_K, f.min_length, jf="drop")
        op(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF + 24)  # first byte of the destination
        op(BPF_JMP | BPF_JEQ | BPF_K, 0xFF, jf="vrrp")
        op(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF + 7)  # hop limit
        op(BPF_JMP | BPF_JEQ | BPF_K, VRRP_TTL, jf="drop")
        byte0, byte1 = (BPF_LD | BPF_B | BPF_ABS, 0), (BPF_LD | BPF_B | BPF_ABS, 1)
    op.label("vrrp")
    op(*byte0)  # version and type
    for kind in f.kinds:
        op(BPF_JMP | BPF_JEQ | BPF_K, kind, jt="vrid")
    op.label("drop")
    op(BPF_RET | BPF_K, 0)
    op.label("vrid")
    if f.vrids is not None:
        op(*byte1)
        for vrid in f.vrids:
            op(BPF_JMP | BPF_JEQ | BPF_K, vrid, jt="checked")
        op(BPF_RET | BPF_K, 0)
    op.label("checked")
    if f.checksum and f.family == 4:
        _checksum_program(f, op)
    op.label("accept")
    op(BPF_RET | BPF_K, BPF_ACCEPT)
    op.label("drop_checksum")
    op(BPF_RET | BPF_K, 0)
    return op.resolve()


def bpf_bytes(program: List[Tuple[int, int, int, int]]) -> bytes:
    """The array of struct sock_filter that SO_ATTACH_FILTER points to."""
    return b"".join(BPF_INSN.pack(*insn) for insn in program)


# -- netlink message and attribute packing (generic; rtnetlink and generic netlink both use it) -------

NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLA_HEADER = struct.Struct("=HH")  # len, type
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_OPERSTATE = 1, 3, 4, 10, 16
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 3, 4, 8
IFA_F_NODAD, IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x02, 0x08, 0x40
IFF_UP, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x40, 0x10000
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RT_SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}


def nla_align(length: int) -> int:
    return (length + 3) & ~3


def nlmsg_pack(msg_type: int, flags: int, seq: int, payload: bytes, pid: int = 0) -> bytes:
    """One netlink message: header + payload, padded to 4 bytes."""
    length = NLMSG_HEADER.size + len(payload)
    return NLMSG_HEADER.pack(length, msg_type, flags, seq, pid) + payload + b"\0" * (nla_align(length) - length)


def nlmsg_parse(data: bytes) -> List[Tuple[int, int, int, int, bytes]]:
    """Split a netlink datagram into (type, flags, seq, pid, payload) tuples; raises PacketError if malformed."""
    out = []
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, msg_type, flags, seq, pid = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size or offset + length > len(data):
            raise PacketError("bad_netlink", f"message length {length}")
        out.append((msg_type, flags, seq, pid, data[offset + NLMSG_HEADER.size: offset + length]))
        offset += nla_align(length)
    return out


def nlmsg_error_code(payload: bytes) -> int:
    """The positive errno of an NLMSG_ERROR payload (0 is an ACK)."""
    if len(payload) < 4:
        raise PacketError("bad_netlink", "short error message")
    return -struct.unpack_from("=i", payload)[0]


def nlmsg_replies(data: bytes, seq: int) -> Tuple[List[Tuple[int, int, bytes]], bool]:
    """The answers to request `seq` in one datagram as (type, flags, payload), and whether the request is
    finished (an ACK or NLMSG_DONE came). Raises NetlinkError for an error answer, PacketError if malformed."""
    replies: List[Tuple[int, int, bytes]] = []
    for rtype, rflags, rseq, _pid, body in nlmsg_parse(data):
        if rseq != seq:
            continue
        if rtype == NLMSG_ERROR:
            code = nlmsg_error_code(body)
            if code:
                raise NetlinkError(code)
            return replies, True
        if rtype == NLMSG_DONE:
            return replies, True
        replies.append((rtype, rflags, body))
    return replies, False


def nla_pack(attr_type: int, value: bytes) -> bytes:
    """One netlink attribute (TLV), padded to 4 bytes."""
    length = NLA_HEADER.size + len(value)
    return NLA_HEADER.pack(length, attr_type) + value + b"\0" * (nla_align(length) - length)


def nla_pack_str(attr_type: int, value: str) -> bytes:
    return nla_pack(attr_type, value.encode() + b"\0")


def nla_parse(data: bytes) -> Dict[int, bytes]:
    """Attributes as {type: value} (flag bits masked off; the last of a repeated type wins)."""
    return dict(nla_parse_list(data))


def nla_parse_list(data: bytes) -> List[Tuple[int, bytes]]:
    """Attributes in order as (type, value), for repeated or nested attributes."""
    out = []
    offset = 0
    while offset + NLA_HEADER.size <= len(data):
        length, attr_type = NLA_HEADER.unpack_from(data, offset)
        if length < NLA_HEADER.size or offset + length > len(data):
            raise PacketError("bad_netlink", f"attribute length {length}")
        out.append((attr_type & NLA_TYPE_MASK, data[offset + NLA_HEADER.size: offset + length]))
        offset += nla_align(length)
    return out


def nla_str(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


@dataclass
class LinkInfo:
    """What rtnetlink says about one interface."""

    index: int
    name: str
    flags: int
    mac: bytes = b""
    mtu: int = 0
    master: int = 0  # IFLA_MASTER: the bridge, bond or VRF it is enslaved to
    kind: str = ""  # IFLA_INFO_KIND: "vrf", "macvlan", "ipvlan", "veth"...

    @property
    def up(self) -> bool:
        """Administratively up with the carrier on (IFF_UP and IFF_RUNNING)."""
        return bool(self.flags & IFF_UP) and bool(self.flags & IFF_RUNNING)


class AddrInfo(collections.namedtuple("AddrInfo", "index address scope label flags", defaults=(0, "", 0))):
    """One interface address as rtnetlink reports it (either family): ifindex, IPInterface, scope, label, and the
    IFA_F_* flags (an IPv6 address is usable once neither TENTATIVE nor DADFAILED). A tuple: the Daemon keeps one
    for every address, a thousand VIPs' among them, and a dataclass costs half as much again."""

    __slots__ = ()

    @property
    def usable(self) -> bool:
        return not self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)


def parse_link(payload: bytes) -> LinkInfo:
    """An RTM_NEWLINK/RTM_DELLINK payload."""
    if len(payload) < IFINFOMSG.size:
        raise PacketError("bad_netlink", "short ifinfomsg")
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    attrs = nla_parse(payload[IFINFOMSG.size:])
    mtu = struct.unpack("=I", attrs[IFLA_MTU])[0] if len(attrs.get(IFLA_MTU, b"")) == 4 else 0
    master = struct.unpack("=I", attrs[IFLA_MASTER])[0] if len(attrs.get(IFLA_MASTER, b"")) == 4 else 0
    kind = nla_str(nla_parse(attrs[IFLA_LINKINFO]).get(IFLA_INFO_KIND, b"")) if IFLA_LINKINFO in attrs else ""
    return LinkInfo(index, nla_str(attrs.get(IFLA_IFNAME, b"")), flags, attrs.get(IFLA_ADDRESS, b""), mtu, master,
                    kind)


def parse_addr(payload: bytes) -> Optional[AddrInfo]:
    """An RTM_NEWADDR/RTM_DELADDR payload of either family (None for other families)."""
    if len(payload) < IFADDRMSG.size:
        raise PacketError("bad_netlink", "short ifaddrmsg")
    family, prefixlen, flags, scope, index = IFADDRMSG.unpack_from(payload)
    width = {socket.AF_INET: 4, socket.AF_INET6: 16}.get(family)
    if width is None:
        return None
    attrs = nla_parse(payload[IFADDRMSG.size:])
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None or len(raw) != width:
        return None
    if prefixlen > 8 * width:
        raise PacketError("bad_netlink", f"prefix length {prefixlen}")
    if len(attrs.get(IFA_FLAGS, b"")) == 4:
        flags = struct.unpack("=I", attrs[IFA_FLAGS])[0]  # the 32-bit flags; the header has the low 8
    address = (_LeanIPv4Interface if width == 4 else _LeanIPv6Interface)((raw, prefixlen))
    # the label is the interface's name (or empty) on nearly every address: one string for them all
    return AddrInfo(index, address, scope, sys.intern(nla_str(attrs.get(IFA_LABEL, b""))), flags)


def addr_request_payload(
    index: int, address: IPInterface, scope: str = "global", label: Optional[str] = None,
    brd: Optional[IPAddress] = None, peer: Optional[IPAddress] = None, flags: int = 0,
) -> bytes:
    """The ifaddrmsg + attributes of an RTM_NEWADDR/RTM_DELADDR request for one address."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    payload = IFADDRMSG.pack(family, address.network.prefixlen, flags, RT_SCOPES.get(scope, 0), index)
    payload += nla_pack(IFA_LOCAL, address.ip.packed)
    payload += nla_pack(IFA_ADDRESS, (peer or address.ip).packed)
    if brd is not None:
        payload += nla_pack(IFA_BROADCAST, brd.packed)
    if label:
        payload += nla_pack_str(IFA_LABEL, label)
    return payload


# -- routes and rules (RTM_NEWROUTE/DELROUTE, RTM_NEWRULE/DELRULE) -----------------------------------

RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
NLM_F_APPEND = 0x800
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
FIB_RULE_HDR = RTMSG  # family, dst_len, src_len, tos, table, res1, res2, action, flags: the same layout
RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
(RTA_DST, RTA_SRC, RTA_IIF, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_METRICS, RTA_MULTIPATH) = range(1, 10)
RTA_FLOW, RTA_TABLE, RTA_VIA, RTA_PREF, RTA_EXPIRES, RTA_TTL_PROPAGATE = 11, 15, 18, 20, 23, 26
(FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_GOTO, FRA_PRIORITY) = (1, 2, 3, 4, 6)
FRA_FWMARK, FRA_FLOW, FRA_TUN_ID, FRA_SUPPRESS_IFGROUP, FRA_SUPPRESS_PREFIXLEN, FRA_TABLE = 10, 11, 12, 13, 14, 15
FRA_FWMASK, FRA_OIFNAME, FRA_L3MDEV, FRA_UID_RANGE, FRA_PROTOCOL, FRA_IP_PROTO = 16, 17, 19, 20, 21, 22
FRA_SPORT_RANGE, FRA_DPORT_RANGE = 23, 24
RTNH_F_ONLINK = 4
FIB_RULE_INVERT = 0x2
RT_SCOPE_NOWHERE = 255
RTPROT_KEEPALIVED = 18
RTNLGRP_IPV6_RULE = 19


def _af(family: int) -> int:
    return socket.AF_INET6 if family == 6 else socket.AF_INET


def route_request(route: Route, ifindex: Callable[[str], int], delete: bool = False,
                  replace: bool = False) -> Tuple[int, int, bytes]:
    """(nlmsg type, flags, payload) adding or deleting one route, as keepalived's netlink_route builds it.

    `ifindex(name)` resolves `dev` names (0: unknown); a delete carries the same attributes with scope nowhere."""
    if delete:
        msg_type, flags = RTM_DELROUTE, NLM_F_ACK
        scope, rtype = RT_SCOPE_NOWHERE, route.type if route.type_given else 0
    else:
        msg_type, flags = RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE
        if replace:
            flags |= NLM_F_REPLACE
        elif route.mode == "add":
            flags |= NLM_F_EXCL
        elif route.mode == "append":
            flags |= NLM_F_APPEND
        scope, rtype = 0, route.type
    if route.scope_given:
        scope = route.scope
    dst = route.dst
    attrs = b""
    table = route.table
    if table >= 256:
        attrs += nla_pack(RTA_TABLE, struct.pack("=I", table))
        table = 0
    if dst is not None:
        attrs += nla_pack(RTA_DST, dst.ip.packed)
    if route.src is not None:
        attrs += nla_pack(RTA_SRC, route.src.ip.packed)
    if route.prefsrc is not None:
        attrs += nla_pack(RTA_PREFSRC, route.prefsrc.packed)
    if route.via is not None:
        attrs += _gateway_attr(route.via, route.family)
    if route.dev:
        attrs += nla_pack(RTA_OIF, struct.pack("=I", ifindex(route.dev)))
    if route.metric is not None:
        attrs += nla_pack(RTA_PRIORITY, struct.pack("=I", route.metric))
    if route.realms:
        attrs += nla_pack(RTA_FLOW, struct.pack("=I", route.realms))
    if route.expires is not None:
        attrs += nla_pack(RTA_EXPIRES, struct.pack("=I", route.expires))
    metrics = b"".join(nla_pack(k, struct.pack("=I", v)) for k, v in sorted(route.metrics.items()))
    if route.congctl:
        metrics += nla_pack(RTAX_CC_ALGO, route.congctl.encode())
    if metrics:
        attrs += nla_pack(RTA_METRICS, metrics)
    if route.pref is not None:
        attrs += nla_pack(RTA_PREF, struct.pack("=B", route.pref))
    if route.ttl_propagate is not None:
        attrs += nla_pack(RTA_TTL_PROPAGATE, struct.pack("=B", route.ttl_propagate))
    if route.nexthops:
        hops = b""
        for nh in route.nexthops:
            inner = _gateway_attr(nh.via, route.family) if nh.via is not None else b""
            if nh.realms:
                inner += nla_pack(RTA_FLOW, struct.pack("=I", nh.realms))
            hops += RTNEXTHOP.pack(RTNEXTHOP.size + len(inner), RTNH_F_ONLINK if nh.onlink else 0, nh.weight - 1,
                                   ifindex(nh.dev) if nh.dev else 0) + inner
        attrs += nla_pack(RTA_MULTIPATH, hops)
    header = RTMSG.pack(_af(route.family), dst.network.prefixlen if dst is not None else 0,
                        route.src.network.prefixlen if route.src is not None else 0, route.tos or 0, table,
                        route.protocol, scope, rtype, RTNH_F_ONLINK if route.onlink else 0)
    return msg_type, flags, header + attrs


def _gateway_attr(via: IPAddress, family: int) -> bytes:
    if via.version == family:
        return nla_pack(RTA_GATEWAY, via.packed)
    return nla_pack(RTA_VIA, struct.pack("=H", _af(via.version)) + via.packed)  # struct rtvia


def rule_request(rule: Rule, delete: bool = False) -> Tuple[int, int, bytes]:
    """(nlmsg type, flags, payload) adding or deleting one policy-routing rule (keepalived's netlink_rule)."""
    msg_type, flags = (RTM_DELRULE, NLM_F_ACK) if delete else (RTM_NEWRULE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
    attrs = b""
    table = 0
    if rule.action == FR_ACT_TO_TBL and not rule.l3mdev:
        if rule.table < 256:
            table = rule.table or 254
        else:
            attrs += nla_pack(FRA_TABLE, struct.pack("=I", rule.table))
    if rule.src is not None:
        attrs += nla_pack(FRA_SRC, rule.src.ip.packed)
    if rule.dst is not None:
        attrs += nla_pack(FRA_DST, rule.dst.ip.packed)
    for attr, value in ((FRA_PRIORITY, rule.priority), (FRA_FWMARK, rule.fwmark), (FRA_FWMASK, rule.fwmask),
                        (FRA_FLOW, rule.realms or None), (FRA_SUPPRESS_PREFIXLEN, rule.suppress_prefixlen),
                        (FRA_SUPPRESS_IFGROUP, rule.suppress_ifgroup)):
        if value is not None:
            attrs += nla_pack(attr, struct.pack("=I", value))
    if rule.iif:
        attrs += nla_pack_str(FRA_IIFNAME, rule.iif)
    if rule.oif:
        attrs += nla_pack_str(FRA_OIFNAME, rule.oif)
    if rule.tun_id:
        attrs += nla_pack(FRA_TUN_ID, struct.pack(">Q", rule.tun_id))
    if rule.uidrange is not None:
        attrs += nla_pack(FRA_UID_RANGE, struct.pack("=II", *rule.uidrange))
    if rule.l3mdev:
        attrs += nla_pack(FRA_L3MDEV, b"\x01")
    if rule.protocol is not None:
        attrs += nla_pack(FRA_PROTOCOL, struct.pack("=B", rule.protocol))
    if rule.ipproto is not None:
        attrs += nla_pack(FRA_IP_PROTO, struct.pack("=B", rule.ipproto))
    if rule.sport is not None:
        attrs += nla_pack(FRA_SPORT_RANGE, struct.pack("=HH", *rule.sport))
    if rule.dport is not None:
        attrs += nla_pack(FRA_DPORT_RANGE, struct.pack("=HH", *rule.dport))
    if rule.goto is not None:
        attrs += nla_pack(FRA_GOTO, struct.pack("=I", rule.goto))
    header = FIB_RULE_HDR.pack(_af(rule.family), rule.dst.network.prefixlen if rule.dst is not None else 0,
                               rule.src.network.prefixlen if rule.src is not None else 0, rule.tos, table, 0, 0,
                               rule.action, FIB_RULE_INVERT if rule.invert else 0)
    return msg_type, flags, header + attrs


@dataclass
class RouteInfo:
    """What a route (or rule) notification says, enough to match it to a configured one."""

    family: int
    table: int
    protocol: int
    dst: Optional[IPInterface]
    tos: int = 0
    metric: int = 0
    oif: int = 0
    priority: int = 0  # rules: FRA_PRIORITY
    rule: bool = False


def parse_route_msg(payload: bytes, rule: bool = False) -> RouteInfo:
    """An RTM_NEWROUTE/DELROUTE (or, with `rule`, RTM_NEWRULE/DELRULE) payload."""
    if len(payload) < RTMSG.size:
        raise PacketError("bad_netlink", "short rtmsg")
    family, dst_len, _src_len, tos, table, protocol, _scope, _type, _flags = RTMSG.unpack_from(payload)
    attrs = nla_parse(payload[RTMSG.size:])
    fam = 6 if family == socket.AF_INET6 else 4
    if rule:
        protocol = attrs[FRA_PROTOCOL][0] if FRA_PROTOCOL in attrs else 0
    if FRA_TABLE in attrs and len(attrs[FRA_TABLE]) == 4:  # FRA_TABLE == RTA_TABLE
        table = struct.unpack("=I", attrs[FRA_TABLE])[0]
    raw = attrs.get(RTA_DST)  # FRA_DST == RTA_DST
    dst: Optional[IPInterface] = None
    if raw is not None and len(raw) in (4, 16):
        dst = ipaddress.ip_interface((ipaddress.ip_address(raw), dst_len))
    elif raw is None:
        dst = ipaddress.ip_interface(("::" if fam == 6 else "0.0.0.0", dst_len))
    metric = struct.unpack("=I", attrs[RTA_PRIORITY])[0] if len(attrs.get(RTA_PRIORITY, b"")) == 4 else 0
    oif = struct.unpack("=I", attrs[RTA_OIF])[0] if len(attrs.get(RTA_OIF, b"")) == 4 and not rule else 0
    return RouteInfo(fam, table, protocol, dst, tos, metric, oif, metric, rule)


# --------------------------------------------------------------------------------------------
# 4.2 More formats: Neighbour Advertisements, IPsec AH, auth_hmac, BFD, nftables, VMAC
#     Unsolicited NAs (RFC 4861), the AH header keepalived puts in front of VRRPv2 (`auth_type AH`),
#     keepalived 2.4's HMAC-SHA256 trailer, BFD control packets (RFC 5880), the nftables ruleset of
#     strict mode, and the VMAC address and macvlan payloads. Pure functions on bytes and text.
# --------------------------------------------------------------------------------------------

ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
ND_OPT_TARGET_LINKADDR = 2
ND_NA_FLAG_ROUTER = 0x80
ND_NA_FLAG_OVERRIDE = 0x20
ALL_NODES6 = ipaddress.IPv6Address("ff02::1")
NDISC_HOPLIMIT = 255

AH_HEADER_LEN = 24  # next header, payload len, reserved, SPI, sequence number, 96-bit ICV
AH_PAYLOAD_LEN = 4  # RFC 2402 section 2.2: (3 + 3 ICV words) - 2
AH_ICV_LEN = 12  # HMAC-MD5-96, RFC 2403
AH_SEQ_MAX = 0xFFFFFFFD  # keepalived stops counting here and waits for a new master

NFT_TABLE = "vrrpd"  # our own table, `inet vrrpd`; keepalived's is `keepalived`

# rtnetlink numbers for the VMAC macvlan (linux/if_link.h); the generic ones are in section 4
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_AF_SPEC = 26
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_MACVLAN_MODE = 1
IFLA_INET6_ADDR_GEN_MODE = 8
MACVLAN_MODE_PRIVATE = 1
IN6_ADDR_GEN_MODE_RANDOM = 3


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
    checksum = inet_checksum(pseudo_header(target, ALL_NODES6, len(icmp), IPPROTO_ICMPV6) + icmp)
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
    return hmac_digest(ah_key(key), bytes(ip) + ah + vrrp, "md5")[:AH_ICV_LEN]


def hmac_digest(key: bytes, data: bytes, digest: str) -> bytes:
    """HMAC (RFC 2104) with hashlib's md5 or sha256 alone: python3-minimal has hashlib but not hmac."""
    import hashlib

    if len(key) > 64:  # both hashes have 64-byte blocks
        key = hashlib.new(digest, key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.new(digest, bytes(b ^ 0x36 for b in key) + data).digest()
    return hashlib.new(digest, bytes(b ^ 0x5C for b in key) + inner).digest()


def build_ipv4_ah(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, vrrp: bytes, key: bytes, seq: int,
                  ident: int, ttl: int = VRRP_TTL, unicast: bool = False) -> bytes:
    """A whole IPv4 packet (for an IP_HDRINCL socket): IP header, AH header, then the VRRPv2 message.

    SPI = the source address, as keepalived chooses it; `ident` must be non-zero, otherwise the
    kernel would fill in an IP id after the ICV was computed."""
    ah = struct.pack("!BBH4sI", IPPROTO_VRRP, AH_PAYLOAD_LEN, 0, src.packed, seq) + bytes(AH_ICV_LEN)
    header = encode_ipv4(src, dst, ah + vrrp, ttl=ttl, ident=ident, protocol=IPPROTO_AH)[:IPV4_HEADER.size]
    return header + ah[:12] + ah_icv(key, header, ah, vrrp, unicast) + vrrp  # the ICV zeroes the header checksum


def parse_ipv4_ah(packet: bytes, key: bytes, unicast: bool = False) -> Tuple[int, bytes]:
    """Check the AH header of a received IPv4 packet; return (sequence number, VRRP message).

    Raises PacketError with reason `ah_short`, `ah_next_header`, `ah_icv` or `ah_spi`. The
    sequence number is for AhSequence.accept() to judge."""
    if len(packet) < 20:
        raise PacketError("ah_short", "no IPv4 header")
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + AH_HEADER_LEN or packet[9] != IPPROTO_AH:
        raise PacketError("ah_short", "no AH header")
    ah = packet[ihl:ihl + AH_HEADER_LEN]
    next_header, _plen, _rsvd, spi, seq = struct.unpack("!BBH4sI", ah[:12])
    if next_header != IPPROTO_VRRP:
        raise PacketError("ah_next_header", f"AH carries protocol {next_header}")
    vrrp = packet[ihl + AH_HEADER_LEN:]
    if not _compare_digest(ah_icv(key, packet[:ihl], ah, vrrp, unicast), ah[12:]):
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


# -- keepalived 2.4's auth_hmac: the HMAC-SHA256 advert trailer (draft-cassen-vrrp-auth-hmac) --------
#    28 bytes after the VRRP PDU: ext_type, key_id, reserved, a 64-bit sequence (seconds, 1/65536 s,
#    counter) and the first 16 bytes of HMAC-SHA256 over a pseudo-header, the PDU with its checksum
#    read as zero and the trailer with its HMAC read as zero. Byte for byte as keepalived 2.4.2/2.4.3.

AUTH_HMAC_TRAILER = struct.Struct("!BBHIHH16s")  # ext_type, key_id, reserved, sec, subsec, ctr, hmac
AUTH_HMAC_TRAILER_LEN = AUTH_HMAC_TRAILER.size  # 28
AUTH_HMAC_SHA256 = 1  # VRRP_AUTH_HMAC_TYPE_SHA256: HMAC-SHA256 truncated to 128 bits
AUTH_HMAC_LEN = 16
AUTH_HMAC_LRU = 4  # keepalived's replay table of multicast senders
# receive results, as keepalived names its counters (auth_ext_*)
HMAC_MISSING = "auth_ext_missing"
HMAC_MALFORMED = "auth_ext_malformed"
HMAC_UNKNOWN_KEY = "auth_ext_unknown_key"
HMAC_INVALID = "auth_ext_invalid_hmac"
HMAC_STALE = "auth_ext_stale"
HMAC_REPLAY = "auth_ext_replay"


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac_digest(key, data, "sha256")


def auth_hmac_input(src: IPAddress, version: int, vrid: int, pdu: bytes, trailer: bytes) -> bytes:
    """What the HMAC covers: {family, version, VRID, 0, source padded to 16 bytes}, the PDU with a zero
    checksum, the trailer's first 12 bytes and 16 zero bytes in place of the HMAC."""
    pseudo = bytes((src.version, version, vrid, 0)) + src.packed.ljust(16, b"\0")
    return pseudo + pdu[:6] + b"\0\0" + pdu[8:] + trailer[:12] + bytes(AUTH_HMAC_LEN)


def auth_hmac_trailer(key: bytes, key_id: int, seq: int, pdu: bytes, src: IPAddress, version: int,
                      vrid: int) -> bytes:
    """The 28-byte trailer signing `pdu` (the VRRP message as sent) from `src` with sequence `seq`."""
    head = AUTH_HMAC_TRAILER.pack(AUTH_HMAC_SHA256, key_id, 0, seq >> 32, (seq >> 16) & 0xFFFF, seq & 0xFFFF,
                                  b"")[:12]
    return head + _hmac_sha256(key, auth_hmac_input(src, version, vrid, pdu, head))[:AUTH_HMAC_LEN]


def auth_hmac_split(msg: bytes, addr_len: int) -> Tuple[bytes, Optional[bytes]]:
    """(PDU, trailer or None): a trailer is there only when the message is exactly 28 bytes longer than
    its address count says (keepalived's presence rule); anything else is left to the decoder."""
    if len(msg) < VRRP_HEADER_LEN:
        return msg, None
    expected = VRRP_HEADER_LEN + addr_len * msg[3] + (VRRP_AUTH_DATA_LEN if msg[0] >> 4 == 2 else 0)
    if len(msg) == expected + AUTH_HMAC_TRAILER_LEN:
        return msg[:expected], msg[expected:]
    return msg, None


def _int32(value: int) -> int:
    """value as C's (int32_t) cast reads it."""
    return ((value + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _serial_after(a: int, b: int) -> bool:
    """RFC 1982 serial arithmetic on 64 bits: a comes after b."""
    diff = (a - b) & 0xFFFFFFFFFFFFFFFF
    return diff != 0 and diff < 1 << 63


class AuthHmac:
    """One instance's auth_hmac: keys, the sender's sequence and the receiver's anti-replay marks.

    Sans-IO: every call is given the wall clock as integer nanoseconds since 1970 (the trailer
    carries UTC seconds). keepalived's vrrp_auth_hmac.c, in the order of its checks."""

    def __init__(self, keys: Dict[int, bytes], active_key: int, mode: str = "enforce", anti_replay: str = "time",
                 time_window: int = 5):
        self.keys = dict(keys)
        self.active_key = active_key
        self.mode = mode
        self.anti_replay = anti_replay
        self.time_window = time_window
        self.last_seq: Optional[int] = None
        self.marks: Dict[Any, int] = {}  # unicast peer or multicast source -> last accepted seq

    @property
    def sends(self) -> bool:
        """receive-only accepts trailers but sends none (the first step of a roll-out)."""
        return self.mode != "receive-only"

    @property
    def requires(self) -> bool:
        """enforce drops adverts without a trailer; permissive and receive-only accept them."""
        return self.mode == "enforce"

    def next_seq(self, now_ns: int) -> int:
        """The sender's next sequence: the clock, or one past the last when the clock has not moved on."""
        sec = now_ns // 1_000_000_000
        clk = ((sec & 0xFFFFFFFF) << 32) | ((now_ns % 1_000_000_000) * 65536 // 1_000_000_000) << 16
        last = self.last_seq
        if last is None or _serial_after(clk, last):
            seq = clk
        elif self.anti_replay == "time" and _int32((last >> 32) - sec) > self.time_window:
            seq = clk  # the clock was stepped back: start again from it (keepalived 2.4.3)
        else:
            seq = (last + 1) & 0xFFFFFFFFFFFFFFFF
        self.last_seq = seq
        return seq

    def sign(self, pdu: bytes, src: IPAddress, version: int, vrid: int, now_ns: int) -> bytes:
        """The trailer to append to `pdu` (signed once per advert: every unicast copy carries the same)."""
        return auth_hmac_trailer(self.keys[self.active_key], self.active_key, self.next_seq(now_ns), pdu, src,
                                 version, vrid)

    def verify(self, pdu: bytes, trailer: bytes, src: IPAddress, version: int, vrid: int, now_ns: int,
               slot: Any = None, lru: bool = True) -> Tuple[Optional[str], str]:
        """(None, note) when the trailer is good (and its sequence remembered), else (counter, log text).

        `slot` keys the replay mark (the unicast peer; the source by default); `lru` keeps at most 4
        multicast senders. The note is a clock-skew warning for an accepted trailer, or ''."""
        ext_type, key_id, reserved, sec, subsec, ctr, mac = AUTH_HMAC_TRAILER.unpack(trailer)
        if ext_type != AUTH_HMAC_SHA256 or reserved != 0:
            return HMAC_MALFORMED, f"malformed authentication trailer from {src}"
        now_sec = now_ns // 1_000_000_000
        skew = _int32(now_sec - sec)
        window = self.time_window
        if self.anti_replay == "time" and abs(skew) > window:
            return HMAC_STALE, (f"stale authentication trailer from {src}, clock skew {skew} sec exceeds window "
                                f"{window} sec")
        key = self.keys.get(key_id)
        if key is None:
            return HMAC_UNKNOWN_KEY, f"unknown authentication key id {key_id} from {src}"
        good = _hmac_sha256(key, auth_hmac_input(src, version, vrid, pdu, trailer))[:AUTH_HMAC_LEN]
        if not _compare_digest(good, mac):
            return HMAC_INVALID, f"invalid authentication HMAC from {src}"
        seq = (sec << 32) | (subsec << 16) | ctr
        slot = src if slot is None else slot
        mark = self.marks.get(slot)
        if mark is not None and self.anti_replay == "time":
            if abs(_int32(now_sec - (mark >> 32))) > window:
                mark = None  # too old to say anything (keepalived 2.4.3)
        if mark is not None and not _serial_after(seq, mark):
            return HMAC_REPLAY, f"replayed authentication trailer from {src}"
        self.marks.pop(slot, None)
        self.marks[slot] = seq
        if lru and len(self.marks) > AUTH_HMAC_LRU:
            del self.marks[next(iter(self.marks))]
        note = ""
        if self.anti_replay == "time" and abs(skew) * 2 > window:
            note = f"authentication clock skew {skew} sec from {src} approaching window {window} sec"
        return None, note


# -- BFD control packets (RFC 5880 section 4.1) over UDP (RFC 5881 single hop, RFC 5883 multihop) ---

BFD_PORT = 3784  # RFC 5881 section 4
BFD_MULTIHOP_PORT = 4784  # RFC 5883 section 5
BFD_SOURCE_PORTS = (49152, 65535)  # RFC 5881 section 4: the source port range
BFD_HEADER = struct.Struct("!BBBBIIIII")  # vers|diag, sta|flags, detect mult, length, my, your, tx, rx, echo
BFD_VERSION = 1
BFD_POLL, BFD_FINAL, BFD_CPI, BFD_AUTH, BFD_DEMAND, BFD_MULTIPOINT = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01


class BfdState(enum.IntEnum):
    """bfd.SessionState (RFC 5880 section 4.1 Sta); the names are keepalived's log words."""

    AdminDown = 0
    Down = 1
    Init = 2
    Up = 3


# RFC 5880 section 4.1 Diag
BFD_DIAG_NONE, BFD_DIAG_EXPIRED, BFD_DIAG_ECHO_FAILED, BFD_DIAG_NEIGHBOR_DOWN, BFD_DIAG_ADMIN_DOWN = 0, 1, 2, 3, 7
BFD_DIAGNOSTICS = ("No Diagnostic", "Control Detection Time Expired", "Echo Function Failed",
                   "Neighbor Signaled Session Down", "Forwarding Plane Reset", "Path Down", "Concatenated Path Down",
                   "Administratively Down", "Reverse Concatenated Path Down")


@dataclass
class BfdPacket:
    """One BFD Control packet; intervals in microseconds, as on the wire."""

    state: BfdState
    my_disc: int
    your_disc: int = 0
    detect_mult: int = 3
    desired_min_tx: int = 1_000_000
    required_min_rx: int = 1_000_000
    required_min_echo_rx: int = 0
    diag: int = BFD_DIAG_NONE
    flags: int = 0  # BFD_POLL | BFD_FINAL | ...

    @property
    def poll(self) -> bool:
        return bool(self.flags & BFD_POLL)

    @property
    def final(self) -> bool:
        return bool(self.flags & BFD_FINAL)


def encode_bfd(pkt: BfdPacket) -> bytes:
    """The 24-byte control packet (no authentication section)."""
    return BFD_HEADER.pack((BFD_VERSION << 5) | (pkt.diag & 0x1F), (int(pkt.state) << 6) | (pkt.flags & 0x3F),
                           pkt.detect_mult, BFD_HEADER.size, pkt.my_disc, pkt.your_disc, pkt.desired_min_tx,
                           pkt.required_min_rx, pkt.required_min_echo_rx)


def decode_bfd(data: bytes) -> BfdPacket:
    """Decode a control packet, discarding what RFC 5880 section 6.8.6 (and keepalived's bfd_check_packet)
    discards without a session: raises PacketError with a counter key."""
    if len(data) < BFD_HEADER.size:
        raise PacketError("bfd_short", f"{len(data)} bytes")
    vd, sf, mult, length, my, your, tx, rx, echo = BFD_HEADER.unpack_from(data)
    if vd >> 5 != BFD_VERSION:
        raise PacketError("bfd_version", str(vd >> 5))
    if length < BFD_HEADER.size or length != len(data):
        raise PacketError("bfd_length", f"length field {length}, datagram {len(data)} bytes")
    if sf & BFD_AUTH:
        raise PacketError("bfd_auth", "authentication is not configured")
    state, diag = BfdState(sf >> 6), vd & 0x1F
    if mult == 0:
        raise PacketError("bfd_detect_mult", "detect multiplier 0")
    if sf & BFD_MULTIPOINT:
        raise PacketError("bfd_multipoint", "multipoint bit set")
    if my == 0:
        raise PacketError("bfd_discriminator", "my discriminator 0")
    if your == 0 and state not in (BfdState.Down, BfdState.AdminDown):
        raise PacketError("bfd_discriminator", f"your discriminator 0 in state {state.name}")
    if sf & BFD_POLL and sf & BFD_FINAL:
        raise PacketError("bfd_flags", "both poll and final")
    if diag >= len(BFD_DIAGNOSTICS):
        raise PacketError("bfd_diag", str(diag))
    return BfdPacket(state, my, your, mult, tx, rx, echo, diag, sf & 0x3F)


# -- strict mode firewall: the nftables ruleset -------------------------------------------------


def nft_ruleset(vips: List[Any], table: str = NFT_TABLE, priority: int = -1, counters: bool = False,
                ifindex: bool = False) -> str:
    """The `nft -f -` input creating our table that drops traffic to no-accept VIPs.

    The sets hold every VIP of instances without `accept` that are not address owners. Packets
    only reach the input hook for an address the host holds, i.e. while the instance is MASTER,
    so one static set gives keepalived's behaviour without touching the firewall on transitions.
    Neighbour discovery stays allowed so IPv6 VIPs still resolve. `priority` is the chains' hook priority and
    `counters` puts a counter on each drop rule (keepalived's nftables_priority and nftables_counters).

    A link-local IPv6 VIP comes as (address, interface): the same address is another one on each link, so it is
    matched with its interface, by name (keepalived's set vips_link_local_name) or, with `ifindex` (its
    nftables_ifindex), by index (set vips_link_local)."""
    v4 = sorted({a for a in vips if not isinstance(a, tuple) and a.version == 4})
    v6 = sorted({a for a in vips if not isinstance(a, tuple) and a.version == 6})
    local = sorted({a for a in vips if isinstance(a, tuple)}, key=lambda t: (t[1], t[0]))

    def elements(addrs: List[Any]) -> str:
        return f" elements = {{ {', '.join(str(a) for a in addrs)} }};" if addrs else ""

    nd = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"
    drop = "counter drop" if counters else "drop"
    set_name, if_type, iif, oif = (("vips_link_local", "iface_index", "iif", "oif") if ifindex else
                                   ("vips_link_local_name", "ifname", "iifname", "oifname"))
    lines_in = lines_out = local_set = ""
    if local:
        entries = ", ".join(f'{a} . "{ifname}"' for a, ifname in local)
        local_set = f"  set {set_name} {{ type ipv6_addr . {if_type}; elements = {{ {entries} }}; }}\n"
        lines_in = f"    ip6 daddr . {iif} @{set_name} {drop}\n"
        lines_out = f"    ip6 saddr . {oif} @{set_name} {drop}\n"
    return (
        f"table inet {table} {{\n"
        f"  set vips4 {{ type ipv4_addr;{elements(v4)} }}\n"
        f"  set vips6 {{ type ipv6_addr;{elements(v6)} }}\n{local_set}"
        f"  chain in {{\n    type filter hook input priority {priority}; policy accept;\n"
        f"    {nd}\n    ip daddr @vips4 {drop}\n    ip6 daddr @vips6 {drop}\n{lines_in}  }}\n"
        f"  chain out {{\n    type filter hook output priority {priority}; policy accept;\n"
        f"    {nd}\n    ip saddr @vips4 {drop}\n    ip6 saddr @vips6 {drop}\n{lines_out}  }}\n"
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


def addr_vmac_wanted(inst: VrrpInstance, vip: VirtualIP, family: int) -> bool:
    """Whether keepalived puts this VIP/eVIP on a VMAC of its own (vrrp_complete_instance): with the VIP's
    `use_vmac`, unless the instance's own VMAC already carries it; with the instance's use_vmac_addr, when the
    VIP is on another interface or of the other family."""
    elsewhere = vip.dev is not None and vip.dev != inst.interface
    other_family = vip.address.version != family
    if vip.use_vmac:
        return elsewhere or other_family or not inst.use_vmac
    return inst.use_vmac_addr and (elsewhere or other_family)


def addr_vmac_name(prefix: str, vrid: int, family: int, taken: Callable[[str], bool]) -> str:
    """keepalived's create_vmac_name: PREFIX.VRID, else (IPv6) PREFIX6.VRID, else PREFIX1.VRID, PREFIX2.VRID...
    (IPv6 skips 6), the first that `taken` says is free; the prefix is cut to fit IFNAMSIZ."""
    def fit(num: str) -> str:
        tail = f"{num}.{vrid}"
        return prefix[:15 - len(tail)] + tail

    order = ([6] if family == 6 else []) + [n for n in range(1, 100) if not (family == 6 and n == 6)]
    for candidate in [fit("")] + [fit(str(n)) for n in order]:
        if not taken(candidate):
            return candidate
    raise VrrpdError(f"no free VMAC name for VRID {vrid}")


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def macvlan_link_payload(name: str, base_ifindex: int, mac: bytes, master: int = 0) -> bytes:
    """RTM_NEWLINK payload creating macvlan `name` (mode private, address `mac`) on base_ifindex, down; enslaved
    to VRF `master` when the base is (keepalived: "this interface should be as well")."""
    info = nla_pack(IFLA_INFO_KIND, b"macvlan") + nla_pack(IFLA_INFO_DATA | NLA_F_NESTED,
                                                  nla_pack(IFLA_MACVLAN_MODE, struct.pack("=I", MACVLAN_MODE_PRIVATE)))
    attrs = (nla_pack_str(IFLA_IFNAME, name) + nla_pack(IFLA_LINK, struct.pack("=I", base_ifindex))
             + nla_pack(IFLA_ADDRESS, mac) + nla_pack(IFLA_LINKINFO | NLA_F_NESTED, info))
    if master:
        attrs += nla_pack(IFLA_MASTER, struct.pack("=I", master))
    return ifinfomsg() + attrs


IFLA_IPVLAN_MODE, IFLA_IPVLAN_FLAGS, IPVLAN_MODE_L2 = 1, 2, 0


def ipvlan_link_payload(name: str, base_ifindex: int, flags: int = 0, master: int = 0) -> bytes:
    """RTM_NEWLINK payload creating L2 ipvlan `name` on base_ifindex (keepalived's netlink_link_add_ipvlan):
    the base's MAC, IFLA_IPVLAN_FLAGS bridge (0) / private (1) / vepa (2), enslaved to VRF `master` if given."""
    data = nla_pack(IFLA_IPVLAN_MODE, struct.pack("=H", IPVLAN_MODE_L2)) + nla_pack(IFLA_IPVLAN_FLAGS,
                                                                                      struct.pack("=H", flags))
    info = nla_pack(IFLA_INFO_KIND, b"ipvlan") + nla_pack(IFLA_INFO_DATA | NLA_F_NESTED, data)
    attrs = (nla_pack_str(IFLA_IFNAME, name) + nla_pack(IFLA_LINK, struct.pack("=I", base_ifindex))
             + nla_pack(IFLA_LINKINFO | NLA_F_NESTED, info))
    if master:
        attrs += nla_pack(IFLA_MASTER, struct.pack("=I", master))
    return ifinfomsg() + attrs


def addrgenmode_payload(ifindex: int, mode: int = IN6_ADDR_GEN_MODE_RANDOM) -> bytes:
    """RTM_NEWLINK payload setting the IPv6 link-local generation mode; must come before the link goes up.

    `random` (FRR's advice, RFC 5798 section 7.4) keeps two routers' link-locals apart although
    their VMACs are equal."""
    spec = nla_pack(IFLA_AF_SPEC | NLA_F_NESTED,
                    nla_pack(socket.AF_INET6 | NLA_F_NESTED, nla_pack(IFLA_INET6_ADDR_GEN_MODE, bytes([mode]))))
    return ifinfomsg(ifindex) + spec


# ============================================================================================
# 5. VRRP core (sans-IO): the state machine, its receive checks, sync groups
# ============================================================================================

# --------------------------------------------------------------------------------------------
# 5.1 State machine and receive checks (RFC 5798 sections 6 and 7.1)
#     VrrpMachine is given `now` and events and returns actions; TRANSITIONS makes every state change;
#     receive_checks() is RFC 5798 section 7.1 for both families. Nothing here reads a clock or a socket.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SendAdvert:
    """Send one ADVERTISEMENT carrying `priority`."""

    priority: int


@dataclass(frozen=True)
class AddVips:
    """Put the virtual addresses on their interfaces."""


@dataclass(frozen=True)
class RemoveVips:
    """Take the virtual addresses off."""


@dataclass(frozen=True)
class StartGarp:
    """Became MASTER: send the gratuitous ARP bursts (garp_master_repeat now, again after garp_master_delay)."""


@dataclass(frozen=True)
class StopGarp:
    """Left MASTER: cancel pending GARP bursts and refreshes."""


@dataclass(frozen=True)
class SendGarp:
    """Send `repeat` gratuitous ARPs per VIP now (keepalived's garp_lower_prio_repeat)."""

    repeat: int


@dataclass(frozen=True)
class Notify:
    """The instance entered `state` with `priority`: run notify scripts, FIFO, mail.

    `reason` says why, in RFC 8347's new-master-reason words where they fit (not-master, priority,
    preempted, no-response) and vrrpd's own for the rest (released, fault, fault-cleared, sync-group,
    shutdown); `detail` says it for a person."""

    state: State
    priority: int
    reason: str = field(default="", compare=False)
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class NotifyRxLowerPri:
    """A MASTER heard an advert of lower priority (keepalived's notify_master_rx_lower_pri)."""

    priority: int


@dataclass(frozen=True)
class Log:
    """A log line in keepalived's words; `detail` lines show only with -D."""

    message: str
    level: int = INFO
    detail: bool = False


Action = Union[SendAdvert, AddVips, RemoveVips, StartGarp, StopGarp, SendGarp, Notify, NotifyRxLowerPri, Log]

_SEND_ADVERTS: Dict[int, SendAdvert] = {}


def _send_advert_action(priority: int) -> SendAdvert:
    """SendAdvert(priority), one (immutable) object per priority: a MASTER asks for one every advert_int, and a
    frozen dataclass is slow to build."""
    action = _SEND_ADVERTS.get(priority)
    if action is None:
        action = _SEND_ADVERTS[priority] = SendAdvert(priority)
    return action


class Event(enum.Enum):
    """What moves a VrrpMachine from one state to another: the event methods (start, on_timer, on_advert,
    set_fault, force_state, release_master, shutdown) say which of these happened, TRANSITIONS does the rest."""

    STARTUP = "Startup (RFC 5798 6.4.1), below priority 255"
    OWNER_STARTUP = "Startup (6.4.1) of the address owner"
    FAULTY_STARTUP = "Startup with an interface or tracker fault"
    MASTER_DOWN_TIMER = "Master_Down_Timer fired (6.4.2)"
    HIGHER_PRIORITY_ADVERT = "an advert of higher priority, or of equal priority from a higher address (6.4.3)"
    LATE_ADVER_TIMER = "Adver_Timer fired so late that a backup has taken over (timer_expired_backup)"
    RELEASE = "something MASTER must hold vanished (keepalived's set_vrrp_backup)"
    FAULT = "an interface or tracker fault"
    FAULT_CLEARED = "the fault cleared"
    OWNER_FAULT_CLEARED = "the fault of the address owner cleared"
    SYNC_MASTER = "the sync group went MASTER"
    SYNC_BACKUP = "the sync group went BACKUP"
    SYNC_FAULT = "the sync group went FAULT"
    SHUTDOWN = "Shutdown (6.4.2, 6.4.3)"


# The machine's transitions (RFC 5798 section 6.4, with keepalived's FAULT and vrrpd's STOP): (state, event) ->
# (new state, the VrrpMachine method that returns the transition's actions). VrrpMachine._fire() is the only
# code that changes the state; an event with no row here in the current state is a bug, and raises.
TRANSITIONS: Dict[Tuple[State, Event], Tuple[State, str]] = {
    (State.INIT, Event.STARTUP): (State.BACKUP, "_enter_backup"),
    (State.INIT, Event.OWNER_STARTUP): (State.MASTER, "_enter_master"),
    (State.INIT, Event.FAULTY_STARTUP): (State.FAULT, "_enter_fault"),
    (State.INIT, Event.SHUTDOWN): (State.STOP, "_enter_stop"),
    (State.BACKUP, Event.MASTER_DOWN_TIMER): (State.MASTER, "_take_over"),
    (State.BACKUP, Event.SYNC_MASTER): (State.MASTER, "_enter_master"),
    (State.BACKUP, Event.OWNER_FAULT_CLEARED): (State.MASTER, "_enter_master"),
    (State.BACKUP, Event.FAULT_CLEARED): (State.BACKUP, "_enter_backup"),
    (State.BACKUP, Event.FAULT): (State.FAULT, "_enter_fault"),
    (State.BACKUP, Event.SYNC_FAULT): (State.FAULT, "_enter_fault"),
    (State.BACKUP, Event.SHUTDOWN): (State.STOP, "_enter_stop"),
    (State.MASTER, Event.HIGHER_PRIORITY_ADVERT): (State.BACKUP, "_yield_to_higher_priority"),
    (State.MASTER, Event.LATE_ADVER_TIMER): (State.BACKUP, "_enter_backup"),
    (State.MASTER, Event.RELEASE): (State.BACKUP, "_release"),
    (State.MASTER, Event.SYNC_BACKUP): (State.BACKUP, "_enter_backup"),
    (State.MASTER, Event.FAULT_CLEARED): (State.BACKUP, "_enter_backup"),
    (State.MASTER, Event.OWNER_FAULT_CLEARED): (State.MASTER, "_enter_master"),
    (State.MASTER, Event.FAULT): (State.FAULT, "_enter_fault"),
    (State.MASTER, Event.SYNC_FAULT): (State.FAULT, "_enter_fault"),
    (State.MASTER, Event.SHUTDOWN): (State.STOP, "_enter_stop"),
    (State.FAULT, Event.FAULT): (State.FAULT, "_enter_fault"),
    (State.FAULT, Event.FAULT_CLEARED): (State.BACKUP, "_enter_backup"),
    (State.FAULT, Event.SYNC_BACKUP): (State.BACKUP, "_enter_backup"),
    (State.FAULT, Event.OWNER_FAULT_CLEARED): (State.MASTER, "_enter_master"),
    (State.FAULT, Event.SYNC_MASTER): (State.MASTER, "_enter_master"),
    (State.FAULT, Event.SHUTDOWN): (State.STOP, "_enter_stop"),
}


class VrrpMachine:
    """One VRRP instance's protocol state (RFC 5798 section 6, with keepalived's variations), sans-IO.

    Every event method takes `now` (seconds, any monotonic clock) and returns a list of actions;
    `next_deadline()` says when `on_timer(now)` must be called next. Nothing here reads a clock,
    touches a socket or logs by itself, and nothing outside assigns its state or timers: sync groups,
    handover and reload use the public operations (force_state, park, end_handover, reconfigure...)."""

    # one per instance: no __dict__ (a thousand instances, a megabyte and a half less)
    __slots__ = ("name", "down_timer_adverts", "vrid", "priority", "effective_priority", "version", "advert_int",
                 "master_adver_int", "primary_ip", "addresses", "auth_type", "auth_pass", "start_master", "preempt",
                 "preempt_delay", "lower_prio_no_advert", "garp_lower_prio_repeat", "skip_check_adv_addr",
                 "higher_prio_send_advert", "owner_ignore_adverts", "timer_expired_backup", "owner_conflicts",
                 "hold_master", "state", "fault", "adver_timer", "master_down_timer",
                 "preempt_delay_timer", "handover_timer", "master_ip", "master_priority", "last_advert", "vips_set",
                 "advanced")

    # the settings a reload may change without disturbing the state (reconfigure)
    SETTINGS = ("priority", "advert_int", "addresses", "auth_type", "auth_pass", "start_master", "preempt",
                "preempt_delay", "lower_prio_no_advert", "garp_lower_prio_repeat", "skip_check_adv_addr",
                "higher_prio_send_advert", "down_timer_adverts", "owner_ignore_adverts", "timer_expired_backup")

    def __init__(self, name: str, vrid: int, priority: int, advert_int: float, version: int = 2,
                 primary_ip: Optional[IPAddress] = None, addresses: Optional[List[IPAddress]] = None,
                 auth_type: AuthType = AuthType.NONE, auth_pass: bytes = b"", start_master: bool = False,
                 preempt: bool = True, preempt_delay: float = 0.0, lower_prio_no_advert: bool = False,
                 garp_lower_prio_repeat: int = 0, skip_check_adv_addr: bool = False,
                 higher_prio_send_advert: bool = False, owner_ignore_adverts: bool = False,
                 timer_expired_backup: Optional[int] = None, down_timer_adverts: int = 3):
        given = locals()
        for attr in self.SETTINGS:  # `priority` is the configured base priority
            setattr(self, attr, given[attr])
        self.name, self.vrid, self.version, self.primary_ip = name, vrid, version, primary_ip
        self.effective_priority = priority
        # RFC 5798 section 6.1: v3 carries centiseconds; v2 whole seconds (keepalived rounds, minimum 1)
        self.advert_int = max(1.0, float(round(advert_int))) if version == 2 else max(0.01, round(advert_int, 2))
        self.master_adver_int = self.advert_int
        self.addresses = tuple(addresses or ())  # the VIPs it advertises
        # the password as adverts carry it, NUL-padded; only auth_type PASS has one (AH keys its HMAC itself)
        self.auth_pass = auth_pass[:VRRP_AUTH_DATA_LEN].ljust(VRRP_AUTH_DATA_LEN, b"\0") \
            if auth_type is AuthType.PASS else b""
        # keepalived 2.3.3: another router also claims address ownership; after two of its adverts we step to 254
        self.owner_conflicts = 0
        # set while a weight-0 tracker has not reported yet: keepalived does not become MASTER then
        self.hold_master = False
        self.state = State.INIT
        self.fault = False
        self.adver_timer: Optional[float] = None
        self.master_down_timer: Optional[float] = None
        self.preempt_delay_timer: Optional[float] = None
        self.handover_timer: Optional[float] = None
        self.master_ip: Optional[IPAddress] = None
        self.master_priority: Optional[int] = None  # priority in the last advert heard from the master
        self.last_advert: Optional[float] = None  # when it came (`now` of on_advert)
        self.vips_set = False
        self.advanced = False  # advance_advert() used since entering MASTER

    # -- public operations for the Daemon: sync groups, trackers, handover, reload ---------------
    def set_primary_ip(self, address: Optional[IPAddress]) -> None:
        """Our primary address (the advert source), which breaks priority ties (RFC 5798 section 6.4.3)."""
        self.primary_ip = address

    def set_hold_master(self, hold: bool) -> None:
        """While a weight-0 tracker has not reported, keepalived does not let a BACKUP become MASTER."""
        self.hold_master = hold

    def reconfigure(self, fresh: VrrpMachine) -> None:
        """Reload: take fresh's settings (SETTINGS) and keep the state, timers and VIPs."""
        for attr in self.SETTINGS:
            setattr(self, attr, getattr(fresh, attr))
        if self.state != State.BACKUP or self.version == 2:
            self.master_adver_int = self.advert_int

    @property
    def owner_reduced(self) -> bool:
        """Another router kept advertising as the address owner: we advertise 254 until it goes quiet."""
        return self.owner_conflicts >= 2

    @property
    def parked(self) -> bool:
        """A BACKUP waiting for its sync group without a Master_Down_Timer (see park())."""
        return self.state == State.BACKUP and self.master_down_timer is None

    def park(self) -> None:
        """Sync groups: a member that wants MASTER waits, timer-less, for the other members to want it too;
        an advert re-arms its timer, force_state() moves it."""
        if self.state == State.BACKUP:
            self.master_down_timer = None

    def force_state(self, now: float, state: State) -> List[Action]:
        """Move to `state` because the sync group does (keepalived's vrrp_sync_master/backup/fault).

        A MASTER forced to FAULT sends priority 0, so that the peer's members take over at once."""
        if self.state == state or self.state in (State.STOP, State.INIT):
            return []
        if state == State.BACKUP:
            self.master_adver_int = self.advert_int
        event = {State.MASTER: Event.SYNC_MASTER, State.BACKUP: Event.SYNC_BACKUP, State.FAULT: Event.SYNC_FAULT}[state]
        return self._fire(now, event, reason="sync-group")

    def end_handover(self, now: float) -> List[Action]:
        """A second stop signal: do not wait for the new master any longer."""
        if self.handover_timer is None:
            return []
        self.handover_timer = now
        return self.on_timer(now)

    # -- timers (RFC 5798 section 6.1, keepalived vrrp.h) ---------------------------------------
    @property
    def skew_time(self) -> float:
        """Skew_Time: v2 (256 - Priority) / 256 s; v3 ((256 - Priority) * Master_Adver_Interval) / 256."""
        if self.version == 2:
            return (256 - self.effective_priority) / 256.0
        return (256 - self.effective_priority) * self.master_adver_int / 256.0

    @property
    def master_down_interval(self) -> float:
        """Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time (keepalived's down_timer_adverts
        replaces the 3: an RFC deviation that every router of the VRID must share)."""
        return self.down_timer_adverts * self.master_adver_int + self.skew_time

    def master_down_due(self, now: float) -> bool:
        """True when on_timer(now) would act on an expired Master_Down_Timer (a BACKUP declaring the master gone)."""
        return self.state == State.BACKUP and self.master_down_timer is not None and now >= self.master_down_timer

    def next_deadline(self) -> Optional[float]:
        """The earliest of the timers that run (None when none does); no list built: it is asked per advert."""
        first = self.adver_timer
        for deadline in (self.master_down_timer, self.handover_timer):
            if deadline is not None and (first is None or deadline < first):
                first = deadline
        return first

    def advance_advert(self, seconds: float) -> None:
        """Send the next advert `seconds` sooner (never later, nor less than half an interval after the last
        one), once as MASTER: the caller spreads instances that fell due together over the interval."""
        if self.state == State.MASTER and self.adver_timer is not None and not self.advanced:
            self.adver_timer -= max(0.0, min(seconds, self.advert_int / 2))
            self.advanced = True

    @property
    def stopped(self) -> bool:
        """Shut down and nothing left to do (no handover pending)."""
        return self.state == State.STOP and self.handover_timer is None

    # -- events -------------------------------------------------------------------------------
    def start(self, now: float, fault: bool = False) -> List[Action]:
        """RFC 5798 section 6.4.1 Initialize; keepalived always passes through BACKUP (init) unless owner or faulty."""
        self.fault = fault
        if fault:
            return self._fire(now, Event.FAULTY_STARTUP, init=True)
        if self.priority == 255:
            # the address owner goes straight to MASTER
            return self._fire(now, Event.OWNER_STARTUP, reason="priority", detail="address owner (priority 255)")
        self.master_adver_int = self.advert_int
        acts = self._fire(now, Event.STARTUP, init=True, reason="not-master", detail="starting up")
        if self.start_master:
            # keepalived: `state MASTER` below 255 waits one advert interval + skew, not the full down interval
            self.master_down_timer = now + self.advert_int + self.skew_time
        return acts

    def on_timer(self, now: float) -> List[Action]:
        """Fire whatever timers are due at `now`."""
        acts: List[Action] = []
        if self.handover_timer is not None and now >= self.handover_timer:
            acts += self._finish_handover("timeout")
        if self.state == State.BACKUP and self.master_down_timer is not None and now >= self.master_down_timer:
            if self.hold_master:
                self.master_down_timer = now + self.master_down_interval
                return acts
            acts += self._fire(now, Event.MASTER_DOWN_TIMER)
        elif self.state == State.MASTER and self.adver_timer is not None and now >= self.adver_timer:
            if self.timer_expired_backup is not None:
                # keepalived's timer_expired_backup: the loop ran so late that a backup (of priority at most P)
                # has taken over by now; step back quietly, without priority 0
                other = self.timer_expired_backup
                skew = (256 - other) / 256.0 if self.version == 2 else (256 - other) * self.advert_int / 256.0
                late = now - (self.adver_timer - self.advert_int + 3 * self.advert_int + skew)
                if late > 0:
                    return acts + [Log(f"({self.name}) VRRP thread timer expired {late:.1f} seconds ago",
                                       WARNING)] + self._fire(now, Event.LATE_ADVER_TIMER)
            # RFC 5798 section 6.4.3: Adver_Timer fires -> send an advert, reset the timer to the interval. (A
            # driver that serves the timer on time passes its deadline as `now`, and the schedule keeps to it.)
            acts.append(_SEND_ADVERTS.get(self.effective_priority) or _send_advert_action(self.effective_priority))
            self.adver_timer = now + self.advert_int
        return acts

    def _takeover_reason(self, now: float) -> Tuple[str, str]:
        """Why the Master_Down_Timer fired: (reason, detail) from the last advert heard."""
        if self.master_priority is None or self.last_advert is None:
            return "no-response", "no advert heard"
        master, ago = self.master_ip, now - self.last_advert
        if self.master_priority == 0:
            return "released", f"master {master} sent priority 0 {ago:.2f} s ago"
        if self.master_priority < self.effective_priority and self.preempt:
            return "preempted", (f"master {master} advertises priority {self.master_priority}, "
                                 f"ours {self.effective_priority}")
        return "no-response", f"no advert from master {master} for {ago:.2f} s"

    def check_advert(self, adv: VrrpAdvert, src: Any = None) -> Optional[Tuple[str, str]]:
        """The per-instance receive checks of RFC 5798 section 7.1 and keepalived; (counter, log text) to drop.

        Address-list mismatches are reported with counter "addr_mismatch" but do not drop (keepalived >= 2.3.3)."""
        if self.owner_ignore_adverts and self.priority == 255 and self.effective_priority == 255:
            # RFC 5798 section 6.4.3 read literally (keepalived's owner_ignore_adverts): the owner hears nobody
            return "owner_ignore", f"Dropping packet(s) from {src} since we are address owner"
        if adv.version != self.version:
            return "bad_version", f"received version {adv.version} advert, ours is {self.version}"
        if adv.version == 2:
            # keepalived's three counters: invalid_authtype, authtype_mismatch, auth_failure
            auth_type = _AUTH_TYPES.get(adv.auth_type)  # (by value: Enum's .value is slow, and a flood asks)
            if auth_type is None:
                return "auth_invalid", f"received an invalid auth type {adv.auth_type}"
            if auth_type is not self.auth_type:
                return "auth_type_mismatch", f"received an invalid auth type {adv.auth_type}"
            if auth_type is AuthType.PASS and adv.auth_data != self.auth_pass:
                return "auth_failure", "received an invalid passwd"
            if adv.advert_int != self.advert_int:
                return "bad_interval", (f"advertisement interval mismatch mine={int(self.advert_int)} "
                                        f"rcv'd={int(adv.advert_int)}")
        return None

    def address_mismatch(self, adv: VrrpAdvert) -> bool:
        """True when the advert's address list differs from ours (logged unless skip_check_adv_addr)."""
        return not self.skip_check_adv_addr and sorted(adv.addresses) != sorted(self.addresses)

    def on_advert(self, now: float, adv: VrrpAdvert, src: IPAddress) -> List[Action]:
        """An advert that passed the receive checks arrived from `src`."""
        if self.state == State.STOP:
            if self.handover_timer is not None and adv.priority > 0:
                # vrrpd extension: the new master is heard, now the VIPs can go
                return self._finish_handover(f"new master {src}")
            return []
        if self.state == State.BACKUP:
            return self._backup_rx(now, adv, src)
        if self.state == State.MASTER:
            return self._master_rx(now, adv, src)
        return []  # INIT and FAULT ignore adverts

    def _backup_rx(self, now: float, adv: VrrpAdvert, src: IPAddress) -> List[Action]:
        # RFC 5798 section 6.4.2, "If an ADVERTISEMENT is received"
        self.master_ip, self.master_priority, self.last_advert = src, adv.priority, now
        if adv.priority == 0:
            # "If the Priority in the ADVERTISEMENT is zero, then: Set the Master_Down_Timer to Skew_Time"
            self.master_down_timer = now + self.skew_time
            return [Log(f"({self.name}) Backup received priority 0 advertisement", detail=True)]
        lower = adv.priority < self.effective_priority
        if lower and self.preempt and self.preempt_delay > 0:
            # keepalived: preempt_delay counts from the first lower-priority advert and postpones the preemption
            if self.preempt_delay_timer is None:
                self.preempt_delay_timer = now + self.preempt_delay
            if now < self.preempt_delay_timer:
                lower = False
        if not self.preempt or not lower:
            # "If Preempt_Mode is False, or if the Priority in the ADVERTISEMENT is greater than or equal to the
            #  local Priority: Set Master_Adver_Interval to Adver Interval contained in the ADVERTISEMENT,
            #  Recompute the Skew_Time, Recompute the Master_Down_Interval, Reset the Master_Down_Timer"
            if adv.priority >= self.effective_priority:
                self.preempt_delay_timer = None
            if self.version == 3:
                self.master_adver_int = adv.advert_int
            self.master_ip = src
            self.master_down_timer = now + self.master_down_interval
            return []
        # "Discard the ADVERTISEMENT": the Master_Down_Timer runs out and this router preempts
        return [Log(f"({self.name}) received lower priority ({adv.priority}) advert from {src} - discarding",
                    detail=True)]

    def _master_rx(self, now: float, adv: VrrpAdvert, src: IPAddress) -> List[Action]:
        # RFC 5798 section 6.4.3, "If an ADVERTISEMENT is received"
        if adv.priority == 0:
            # "If the Priority in the ADVERTISEMENT is zero, then: Send an ADVERTISEMENT, Reset the Adver_Timer"
            self.adver_timer = now + self.advert_int
            return [SendAdvert(self.effective_priority)]
        higher = adv.priority > self.effective_priority or (
            adv.priority == self.effective_priority and self.primary_ip is not None and int(src) > int(self.primary_ip))
        pre: List[Action] = []
        if adv.priority == 255 and self.effective_priority == 255:
            # keepalived 2.3.3: two routers both configured as the address owner
            if higher:
                pre.append(Log(f"({self.name}) CONFIGURATION ERROR: {src} and we are both configured as address "
                               "owner", ERROR))
            else:
                self.owner_conflicts += 1
                if self.owner_conflicts >= 2:
                    self.effective_priority, higher = 254, True
                    pre.append(Log(f"({self.name}) {src} still advertising as address owner, please resolve - "
                                   "reducing our priority", ERROR))
        if higher:
            return pre + self._fire(now, Event.HIGHER_PRIORITY_ADVERT, adv=adv, src=src)
        # RFC: discard. keepalived: re-assert with an advert (unless lower_prio_no_advert) and GARPs
        acts = [Log(f"({self.name}) Received advert from {src} with lower priority {adv.priority}, "
                    f"ours {self.effective_priority}, forcing new election"),
                NotifyRxLowerPri(adv.priority)]
        if not self.lower_prio_no_advert:
            acts.append(SendAdvert(self.effective_priority))
            self.adver_timer = now + self.advert_int
            if self.garp_lower_prio_repeat > 0:
                acts.append(SendGarp(self.garp_lower_prio_repeat))
        return acts

    def set_effective_priority(self, now: float, priority: int) -> List[Action]:
        """Trackers changed the priority; the base priority 255 (address owner) never changes (except to 254
        while another router also claims ownership)."""
        if self.priority == 255:
            priority = 254 if self.owner_reduced else 255
        else:
            priority = max(1, min(254, priority))
        if priority == self.effective_priority:
            return []
        old, self.effective_priority = self.effective_priority, priority
        return [Log(f"({self.name}) Changing effective priority from {old} to {priority}")]

    def set_fault(self, now: float, fault: bool) -> List[Action]:
        """An interface or tracker fault appeared (True) or cleared (False)."""
        if fault == self.fault:
            return []
        self.fault = fault
        if self.state in (State.STOP, State.INIT):
            return []
        if fault:
            return self._fire(now, Event.FAULT, reason="fault")
        # keepalived: leaving FAULT goes to BACKUP and a fresh election (the owner goes straight to MASTER)
        if self.priority == 255:
            return self._fire(now, Event.OWNER_FAULT_CLEARED, reason="fault-cleared", detail="address owner")
        self.master_adver_int = self.advert_int
        return self._fire(now, Event.FAULT_CLEARED, reason="fault-cleared")

    def shutdown(self, now: float, handover: bool = False) -> List[Action]:
        """RFC 5798 section 6.4.3 Shutdown: a Master sends priority 0 and leaves.

        With `handover` (vrrpd's vrrp_handover_on_stop) the VIPs stay until the new master is heard, bounded
        by the longest Skew_Time plus one advert interval."""
        return self._fire(now, Event.SHUTDOWN, handover=handover)

    def release_master(self, now: float, why: str) -> List[Action]:
        """keepalived's set_vrrp_backup: something MASTER must hold vanished (a tracked virtual route or rule
        deleted behind our back). Priority 0, BACKUP, and a master-down timer of only Skew_Time, so a lone
        router is MASTER again at once and reinstalls everything."""
        if self.state != State.MASTER:
            return []
        return self._fire(now, Event.RELEASE, why=why)

    # -- transitions: TRANSITIONS names these; each gets the state the machine left ------------
    def _fire(self, now: float, event: Event, **details: Any) -> List[Action]:
        """Move as TRANSITIONS says for (state, event), and return the transition's actions."""
        try:
            target, actions = TRANSITIONS[self.state, event]
        except KeyError:
            raise AssertionError(f"({self.name}) no transition from {self.state.value} on {event.name}") from None
        previous, self.state = self.state, target
        return getattr(self, actions)(now, previous, **details)

    def _enter_master(self, now: float, previous: State, reason: str, detail: str = "") -> List[Action]:
        # RFC 5798 section 6.4.1/6.4.2: send an ADVERTISEMENT, broadcast gratuitous ARPs, Adver_Timer, -> Master
        self.master_down_timer = None
        self.preempt_delay_timer = None
        self.adver_timer = now + self.advert_int
        self.advanced = False
        self.master_ip = self.primary_ip
        if self.owner_reduced:
            # the other claimed owner has gone quiet: we are the owner again (keepalived 2.3.3)
            self.effective_priority = 255
        self.owner_conflicts = 0
        # the VIPs go up just before the advert (the RFC does not order them), so the old master, which drops
        # them on hearing us, and the client, which follows our GARPs, never find the address missing
        acts: List[Action] = [Log(f"({self.name}) Entering MASTER STATE")]
        if not self.vips_set:
            self.vips_set = True
            acts += [Log(f"({self.name}) setting VIPs.", detail=True), AddVips()]
        acts += [SendAdvert(self.effective_priority), StartGarp(),
                 Notify(State.MASTER, self.effective_priority, reason, detail)]
        return acts

    def _take_over(self, now: float, previous: State) -> List[Action]:
        # RFC 5798 section 6.4.2: Master_Down_Timer fires -> send advert, GARP, become Master
        reason, detail = self._takeover_reason(now)
        return ([Log(f"({self.name}) Receive advertisement timeout", detail=True)] +
                self._enter_master(now, previous, reason, detail))

    def _enter_backup(self, now: float, previous: State, init: bool = False, reason: str = "",
                      detail: str = "") -> List[Action]:
        self.adver_timer = None
        self.master_down_timer = now + self.master_down_interval
        acts: List[Action] = [Log(f"({self.name}) Entering BACKUP STATE" + (" (init)" if init else ""))]
        if previous == State.MASTER:
            acts.append(StopGarp())
        acts += self._remove_vips()
        self.master_priority = self.last_advert = None
        acts.append(Notify(State.BACKUP, self.effective_priority, reason, detail))
        return acts

    def _yield_to_higher_priority(self, now: float, previous: State, adv: VrrpAdvert, src: IPAddress) -> List[Action]:
        # RFC 5798 section 6.4.3: "... greater than the local Priority, or ... equal ... and the primary IPvX
        # Address of the sender is greater than the local primary IPvX Address: Cancel Adver_Timer, Set
        # Master_Adver_Interval, Recompute Skew_Time and Master_Down_Interval, Set Master_Down_Timer, Transition
        # to Backup"
        why = (f"advert from {src} with priority {adv.priority}, ours {self.effective_priority}" +
               (" (equal, higher address)" if adv.priority == self.effective_priority else ""))
        acts: List[Action] = [Log(f"({self.name}) Master received advert from {src} with higher priority "
                                  f"{adv.priority}, ours {self.effective_priority}")]
        if self.higher_prio_send_advert:
            # keepalived's higher_prio_send_advert: tell the winner once more that we were master
            acts.append(SendAdvert(self.effective_priority))
        if self.version == 3:
            self.master_adver_int = adv.advert_int
        acts += self._enter_backup(now, previous, reason="priority", detail=why)
        self.master_ip, self.master_priority, self.last_advert = src, adv.priority, now
        return acts

    def _release(self, now: float, previous: State, why: str) -> List[Action]:
        acts: List[Action] = [Log(f"({self.name}) {why}"), SendAdvert(0),
                              Log(f"({self.name}) sent 0 priority", detail=True)]
        acts += self._enter_backup(now, previous, reason="fault", detail=why)
        self.master_down_timer = now + self.skew_time
        return acts

    def _enter_fault(self, now: float, previous: State, init: bool = False, reason: str = "fault") -> List[Action]:
        acts: List[Action] = []
        if previous == State.MASTER:
            # keepalived sends priority 0 when a MASTER goes to FAULT
            acts += [SendAdvert(0), StopGarp()]
        self.adver_timer = self.master_down_timer = self.preempt_delay_timer = None
        acts.append(Log(f"({self.name}) Entering FAULT STATE" + (" (init)" if init else "")))
        acts += self._remove_vips()
        acts.append(Notify(State.FAULT, self.effective_priority, reason))
        return acts

    def _enter_stop(self, now: float, previous: State, handover: bool = False) -> List[Action]:
        acts: List[Action] = []
        self.adver_timer = self.master_down_timer = self.preempt_delay_timer = None
        if previous == State.MASTER:
            acts += [SendAdvert(0), Log(f"({self.name}) sent 0 priority", detail=True), StopGarp()]
            if handover:
                longest_skew = 1.0 if self.version == 2 else self.advert_int
                self.handover_timer = now + longest_skew + self.advert_int
            else:
                acts += self._remove_vips()
        acts.append(Notify(State.STOP, self.effective_priority, "shutdown"))
        return acts

    def _remove_vips(self) -> List[Action]:
        if not self.vips_set:
            return []
        self.vips_set = False
        return [Log(f"({self.name}) removing VIPs.", detail=True), RemoveVips()]

    def _finish_handover(self, why: str) -> List[Action]:
        self.handover_timer = None
        return [Log(f"({self.name}) handover complete ({why})", detail=True)] + self._remove_vips()


class Drop(collections.namedtuple("Drop", "reason message")):
    """A received advert fails a receive check: the counter it goes to (`reason`), and the log line (`message`).
    (A tuple: a flood makes one per packet, and a frozen dataclass costs three times as much to build.)"""

    __slots__ = ()


def receive_checks(pkt: Received, machine: VrrpMachine, unicast_mode: bool, peers: List[UnicastPeer],
                   check_unicast_src: bool = False, checksum_as_v2: bool = False,
                   unwrap: Optional[Callable[[bytes], Optional[bytes]]] = None,
                   old_checksum: Optional[bool] = False,
                   group4: IPAddress = VRRP_MCAST_GROUP4) -> Union[VrrpAdvert, Drop, None]:
    """RFC 5798 section 7.1 for one instance, either family, unicast or multicast: the advert, or why not.

    In keepalived's order: the mode (unicast vs multicast), the TTL/hop limit (255 for multicast, the
    peer's min_ttl..max_ttl for unicast), the unicast source, `unwrap` (auth_hmac: the message without its
    trailer, None when it dropped and counted the advert itself), the message (version, type, length,
    checksum, interval), then the instance's own rules (version, v2 authentication and interval). AH is
    unwrapped before this. Pure: the caller counts, logs and hands the advert to the machine.

    A unicast IPv4 VRRPv3 checksum is summed with `group4` as the destination when `old_checksum` is True
    (keepalived's old_unicast_checksum); when it is None, that sum is tried after the right one fails, and an
    advert that passes it says so (old_checksum=True: keepalived then switches to it)."""
    name, src = machine.name, pkt.src
    unicast = not is_multicast(pkt.dst)
    if unicast != unicast_mode:
        return Drop("mode_mismatch", f"({name}) received {'unicast' if unicast else 'multicast'} advert from "
                    f"{src}, but we are {'unicast' if unicast_mode else 'multicast'}")
    if not unicast and pkt.ttl != VRRP_TTL:
        return Drop("bad_ttl", f"({name}) invalid TTL/HL. Received {pkt.ttl} and expect {VRRP_TTL}")
    if unicast:
        peer = next((p for p in peers if p.address == src), None)
        if peer is None and check_unicast_src:
            return Drop("unknown_peer", f"({name}) unicast advert from {src} not in unicast_peer")
        if peer is not None and not (peer.min_ttl <= pkt.ttl <= peer.max_ttl):
            return Drop("bad_ttl", f"({name}) unicast advert from {src} with TTL {pkt.ttl} outside "
                        f"[{peer.min_ttl}, {peer.max_ttl}]")
    payload = pkt.payload
    if unwrap is not None:
        unwrapped = unwrap(pkt.payload)
        if unwrapped is None:
            return None
        payload = unwrapped
    family = src.version
    try:
        if family == 4:
            old = unicast and old_checksum is True and not checksum_as_v2
            try:
                adv = decode_advert(payload, src, group4 if old else pkt.dst, checksum_as_v2, addresses=False)
            except PacketError as exc:
                if exc.reason != "bad_checksum" or not unicast or old_checksum is not None or checksum_as_v2:
                    raise
                # raises the same bad_checksum when that fails too
                adv = decode_advert(payload, src, group4, addresses=False)
                if adv.version != 3:
                    raise exc from None
                adv.old_checksum = True
        else:  # the IPv6 socket's kernel has verified the checksum (IPV6_CHECKSUM)
            adv = decode_advert(payload, family=6, addresses=False)
    except PacketError as exc:
        return Drop(exc.reason, f"({name}) bad VRRP packet from {src}: {exc}")
    problem = machine.check_advert(adv, src)
    if problem is not None:
        return Drop(problem[0], f"({name}) {problem[1]}")
    adv.addresses = advert_addresses(payload, family)
    return adv


# --------------------------------------------------------------------------------------------
# 5.2 Sync groups (keepalived's vrrp_sync.c)
#     Members move together: the group goes MASTER only when every member wants MASTER (its own
#     master-down timer fired); one member going BACKUP or FAULT takes all the others with it.
#     Methods return the moves [(instance name, state)]; the Daemon applies them with force_state().
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
# 6. Trackers and health checks: decisions, and the runner of the VRRP trackers
# ============================================================================================

# --------------------------------------------------------------------------------------------
# 6.1 VRRP trackers: vrrp_script, track_file, track_process, track_bfd
#     Pure decisions first (rise/fall counters, weight rules, process matching), then the
#     TrackerRunner that runs scripts with EventLoop.spawn() and watches files and /proc on timers.
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
    if len(digits.lstrip("0xX")) > 12:  # far outside the 32-bit range (and int() refuses very long decimals)
        return None
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
    """The weight and reverse flag that apply: the reference's weight overrides the tracker's;
    `reverse` holds if either says so (as keepalived, which keeps the tracker's unless told)."""
    return (weight if ref.weight is None else ref.weight), reverse or ref.reverse


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

    def __init__(self, quorum: int = 1, quorum_max: Optional[int] = None, delay: float = 0.0,
                 fork_delay: Optional[float] = None, terminate_delay: Optional[float] = None):
        self.quorum = quorum
        self.quorum_max = quorum_max
        self.delay = delay
        # keepalived's fork_delay (quorum gained) and terminate_delay (quorum lost); `delay` sets both
        self.delays = {True: delay if fork_delay is None else fork_delay,
                       False: delay if terminate_delay is None else terminate_delay}
        self.up: Optional[bool] = None
        self.count = 0
        self.pending: Optional[Tuple[bool, float]] = None  # (wanted state, when it takes effect)

    def update(self, count: int, now: float) -> bool:
        """Feed a count taken at `now`; return True when the up/down state changed."""
        self.count = count
        want = count >= self.quorum and (self.quorum_max is None or count <= self.quorum_max)
        if self.up is None or (want != self.up and self.delays[want] <= 0):
            changed = self.up != want
            self.up = want
            self.pending = None
            return changed
        if want == self.up:
            self.pending = None
            return False
        if self.pending is None or self.pending[0] != want:
            self.pending = (want, now + self.delays[want])
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
    return which(argv0)


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

    def __init__(self, tracking: TrackerRunner, script: VrrpScript):
        self.tracking = tracking
        self.script = script
        self.result = ScriptResult(script.rise, script.fall, script.init_fail)
        self.started = 0.0  # when the running child started (loop time)
        self.last_duration: Optional[float] = None  # seconds the last run took (metrics)
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
        self.started = loop.time()

    def _on_exit(self, child: Child) -> None:
        self.child = None
        self.runs += 1
        self.last_duration = self.tracking.loop.time() - self.started
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
    """One track_file: its last value, re-read every TrackerRunner.file_poll_interval seconds."""

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


class ProcEvents:
    """The kernel's process events (the netlink proc connector, keepalived's track_process source): a fork, exec,
    exit or comm change makes the TrackerRunner count the processes again at once instead of at its next /proc
    scan. The kernel offers it only in the initial network namespace (ECONNREFUSED elsewhere), so open() gives
    None there and the scans alone count. `rcvbuf` is process_monitor_rcv_bufs (with _force: SO_RCVBUFFORCE)."""

    NETLINK_CONNECTOR, CN_IDX_PROC, CN_VAL_PROC, PROC_CN_MCAST_LISTEN = 11, 1, 1, 1

    def __init__(self, sock: socket.socket):
        self.sock = sock

    @classmethod
    def open(cls, rcvbuf: int = 0, force: bool = False) -> Optional[ProcEvents]:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, cls.NETLINK_CONNECTOR)
        except OSError:
            return None
        try:
            set_netlink_rcvbuf(sock, rcvbuf, force, "process monitor")
            sock.bind((0, cls.CN_IDX_PROC))
            op = struct.pack("=I", cls.PROC_CN_MCAST_LISTEN)
            cn_msg = struct.pack("=IIIIHH", cls.CN_IDX_PROC, cls.CN_VAL_PROC, 0, 0, len(op), 0) + op
            sock.send(nlmsg_pack(NLMSG_DONE, 0, 0, cn_msg))
            sock.setblocking(False)
        except OSError:
            sock.close()
            return None
        return cls(sock)

    def drain(self) -> None:
        """Read and discard what is queued (the runner counts from /proc; ENOBUFS only means events were lost)."""
        for _ in range(1024):
            try:
                if not self.sock.recv(65536):
                    return
            except BlockingIOError:
                return
            except OSError:
                continue

    def close(self) -> None:
        self.sock.close()


class Inotify:
    """Watches directories with inotify(7) (through ctypes and the C library already loaded), so a
    track_file change is seen at once, as keepalived sees it; open() gives None where unavailable."""

    MASK = 0x2 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200  # MODIFY CLOSE_WRITE MOVED_FROM MOVED_TO CREATE DELETE

    def __init__(self, libc: Any, fd: int):
        self.libc = libc
        self.fd = fd

    @classmethod
    def open(cls) -> Optional[Inotify]:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError, ImportError):  # python3-minimal has no ctypes: polling only
            return None
        return cls(libc, fd) if fd >= 0 else None

    def watch(self, directory: str) -> bool:
        return self.libc.inotify_add_watch(self.fd, os.fsencode(directory), self.MASK) >= 0

    def drain(self) -> None:
        """Read and discard the pending events (the caller re-reads what it watches)."""
        try:
            while os.read(self.fd, 65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        os.close(self.fd)


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


class TrackerRunner:
    """Runs the trackers on the loop: vrrp_script / track_file / track_process (and track_bfd) state for every
    instance and sync group.

    Contract used by the Daemon (section 10):
      TrackerRunner(loop, config, on_change)
                                          on_change() is called on the loop whenever any tracked
                                          object changes state, so the daemon re-reads adjustments.
      start() / stop()                    begin / end running scripts and watching files/processes.
      adjustment(inst) -> (delta, fault)  the sum of the weights of inst's trackers in their current
                                          state, and whether a weight-0 tracker says FAULT.
      status() -> dict                    per-tracker state for dumps and --json.
    Scripts run as child processes on the loop; files are watched with inotify (and polled on a
    loop timer as a fallback); /proc is scanned on a loop timer. Only trackers that some instance
    or sync group refers to are run."""

    file_poll_interval = 0.5
    process_scan_interval = 1.0

    def __init__(self, loop: EventLoop, config: Config, on_change: Callable[[], Any]):
        self.loop = loop
        self.config = config
        self.on_change = on_change
        self._started = False
        self._file_timer: Optional[Timer] = None
        self._process_timer: Optional[Timer] = None
        self._inotify: Optional[Inotify] = None
        self._proc_events: Optional[ProcEvents] = None
        self._proc_rescan: Optional[Timer] = None
        self.scripts: Dict[str, _ScriptRunner] = {}
        self.files: Dict[str, _FileWatch] = {}
        self.processes: Dict[str, ProcessQuorum] = {}
        self.bfd = BfdDriver(loop, self._bfd_event)  # bfd_instance sessions (sections 6.3, 7.4)
        self.bfd_listeners: List[Callable[[str, bool], Any]] = []  # BFD_CHECK checkers hear the events too
        self._take(config)

    def _take(self, config: Config) -> Tuple[List[_ScriptRunner], List[_FileWatch]]:
        """Use `config`'s trackers, keeping the objects (and so the state) of those whose definition
        is unchanged; returns the script runners and file watches that are new."""
        def same(a: Any, b: Any) -> bool:
            return dataclass_replace(a, file="", line=0) == dataclass_replace(b, file="", line=0)

        used: Dict[str, set] = {"script": set(), "file": set(), "process": set()}
        for owner in list(config.vrrp_instances) + list(config.sync_groups):
            used["script"].update(r.name for r in owner.track_script)
            used["file"].update(r.name for r in owner.track_file)
            used["process"].update(r.name for r in owner.track_process)
        scripts: Dict[str, _ScriptRunner] = {}
        new_runners: List[_ScriptRunner] = []
        gd, old_gd = config.global_defs, self.config.global_defs
        same_user = (gd.script_user, gd.script_group) == (old_gd.script_user, old_gd.script_group)
        for name, script in config.vrrp_scripts.items():
            if name not in used["script"]:
                continue
            old = self.scripts.pop(name, None)
            if old is not None and same_user and same(old.script, script):
                old.script = script
                scripts[name] = old
            else:
                if old is not None:
                    old.stop()
                scripts[name] = _ScriptRunner(self, script)
                new_runners.append(scripts[name])
        for runner in self.scripts.values():
            runner.stop()
        files: Dict[str, _FileWatch] = {}
        new_files: List[_FileWatch] = []
        for name, track_file in config.track_files.items():
            if name not in used["file"]:
                continue
            old_watch = self.files.get(name)
            if old_watch is not None and same(old_watch.track_file, track_file):
                old_watch.track_file = track_file
                files[name] = old_watch
            else:
                files[name] = _FileWatch(track_file)
                new_files.append(files[name])
        processes: Dict[str, ProcessQuorum] = {}
        for name, tp in config.track_processes.items():
            if name not in used["process"]:
                continue
            old_tp = self.config.track_processes.get(name)
            if name in self.processes and old_tp is not None and same(old_tp, tp):
                processes[name] = self.processes[name]
            else:
                processes[name] = ProcessQuorum(tp.quorum, tp.quorum_max, tp.delay, tp.fork_delay, tp.terminate_delay)
        self.config, self.scripts, self.files, self.processes = config, scripts, files, processes
        return new_runners, new_files

    # -- running --------------------------------------------------------------------------
    def start(self) -> None:
        """Read files and /proc now (so adjustment() is right at once) and start the scripts."""
        self._started = True
        self.bfd.configure(self.config.bfd_instances)
        self._watch(list(self.files.values()))
        for runner in self.scripts.values():
            runner.timer = self.loop.call_later(0, runner.run)

    def _watch(self, new_files: List[_FileWatch]) -> None:
        for watch in new_files:
            watch.init_file()
            watch.read()
        if self.processes:
            self._scan(initial=True)
            if self._proc_events is None:
                g = self.config.global_defs
                self._proc_events = ProcEvents.open(g.process_monitor_rcv_bufs, g.process_monitor_rcv_bufs_force)
                if self._proc_events is not None:
                    self.loop.add_reader(self._proc_events.sock, self._on_proc_events)
        if self.files:
            self._file_timer = self.loop.call_later(self.file_poll_interval, self._poll_files)
            self._inotify = Inotify.open()
            if self._inotify is not None:
                for watch in self.files.values():
                    self._inotify.watch(os.path.dirname(os.path.abspath(watch.track_file.path)))
                self.loop.add_reader(self._inotify.fd, self._on_inotify)

    def _unwatch(self) -> None:
        for timer in (self._file_timer, self._process_timer):
            if timer is not None:
                timer.cancel()
        self._file_timer = self._process_timer = None
        if self._inotify is not None:
            self.loop.remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
        if self._proc_events is not None:
            self.loop.remove_reader(self._proc_events.sock)
            self._proc_events.close()
            self._proc_events = None
        if self._proc_rescan is not None:
            self._proc_rescan.cancel()
            self._proc_rescan = None

    def stop(self) -> None:
        self._started = False
        for runner in self.scripts.values():
            runner.stop()
        self._unwatch()
        self.bfd.stop()

    def reload(self, config: Config) -> None:
        """Take a new configuration (SIGHUP). Trackers whose definition did not change keep their
        state and schedule, so a reload neither resets weights nor makes instances flap (keepalived
        issues #349, #1009); new ones start, removed ones stop. on_change() follows."""
        if not self._started:
            self._take(config)
            return
        self._unwatch()
        new_runners, new_files = self._take(config)
        self.bfd.configure(config.bfd_instances)
        self._watch(new_files)
        for runner in new_runners:
            runner.timer = self.loop.call_later(0, runner.run)
        self._changed()

    def _changed(self) -> None:
        if self._started:
            self.on_change()

    def _bfd_event(self, name: str, up: bool) -> None:
        """A BFD session went Up or Down: keepalived's `Tracked BFD instance NAME is UP|DOWN`, then the
        instances re-read their adjustment at once (this is what makes BFD fail over in milliseconds)."""
        bfd = self.config.bfd_instances.get(name)
        if bfd is None:
            return
        if bfd.to_vrrp:
            for inst in self.config.vrrp_instances:
                if any(ref.name == name for ref in self._refs(inst)[3]):
                    log.info("VRRP_Instance(%s) Tracked BFD instance %s is %s", inst.name, name,
                             "UP" if up else "DOWN")
            self._changed()
        if bfd.to_checker:
            for listener in self.bfd_listeners:
                listener(name, up)

    def _on_inotify(self) -> None:
        if self._inotify is not None:
            self._inotify.drain()
            self._read_files()

    def _poll_files(self) -> None:
        self._file_timer = self.loop.call_later(self.file_poll_interval, self._poll_files)
        self._read_files()

    def _read_files(self) -> None:
        changed = False
        for name, watch in self.files.items():
            if watch.read():
                log.info("Track_File(%s) %s now reads %d", name, watch.track_file.path, watch.value)
                changed = True
        if changed:
            self._changed()

    def _on_proc_events(self) -> None:
        """Processes started or ended: count again soon (a burst of fork, exec and exit events is one count)."""
        if self._proc_events is not None:
            self._proc_events.drain()
        if self._proc_rescan is None and self._started and self.processes:
            self._proc_rescan = self.loop.call_later(0.02, self._rescan_now)

    def _rescan_now(self) -> None:
        self._proc_rescan = None
        if self._process_timer is not None:
            self._process_timer.cancel()  # _scan() arms the next one: one chain of scans
        self._scan()

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
    def _refs(self, inst: VrrpInstance) -> Tuple[List[TrackRef], List[TrackRef], List[TrackRef], List[TrackRef]]:
        scripts, files, procs = list(inst.track_script), list(inst.track_file), list(inst.track_process)
        bfds = list(inst.track_bfd)
        for group in self.config.sync_groups:
            if inst.name in group.group or inst.sync_group == group.name:
                scripts += group.track_script
                files += group.track_file
                procs += group.track_process
                bfds += group.track_bfd
        return scripts, files, procs, bfds

    def adjustment(self, inst: VrrpInstance) -> Tuple[int, bool]:
        """(sum of inst's tracker weights in their current state, whether one of them says FAULT).

        The trackers of inst's sync group count for inst too. Unlike keepalived, which ignores
        weighted trackers of sync-group members, their weights apply. The daemon adds the sum to
        the base priority and clamps to 1..254 (255 never changes)."""
        parts = self.contributions(inst)
        return sum(delta for _, _, delta, _ in parts), any(down for _, _, _, down in parts)

    def contributions(self, inst: VrrpInstance) -> List[Tuple[str, str, int, bool]]:
        """(kind, name, priority delta now, FAULT now) of each of inst's trackers, for adjustment() and --status."""
        scripts, files, procs, bfds = self._refs(inst)
        parts: List[Tuple[str, str, int, bool]] = []
        for ref in scripts:
            runner = self.scripts.get(ref.name)
            if runner is None:
                continue
            weight, reverse = tracker_weight(ref, runner.script.weight, runner.script.weight_reverse)
            parts.append(("vrrp_script", ref.name, *tracker_effect(weight, reverse, runner.result.good)))
        for ref in files:
            watch = self.files.get(ref.name)
            if watch is None:
                continue
            weight, reverse = tracker_weight(ref, watch.track_file.weight, watch.track_file.weight_reverse)
            parts.append(("track_file", ref.name, *track_file_effect(weight, reverse, watch.value)))
        for ref in procs:
            quorum = self.processes.get(ref.name)
            if quorum is None:
                continue
            tp = self.config.track_processes[ref.name]
            weight, reverse = tracker_weight(ref, tp.weight, tp.weight_reverse)
            parts.append(("track_process", ref.name, *tracker_effect(weight, reverse, quorum.up)))
        for ref in bfds:
            bfd = self.config.bfd_instances.get(ref.name)
            if bfd is None:
                continue
            # keepalived: a tracked BFD is down until its first Up event; AdminDown from the peer is no event
            weight, reverse = tracker_weight(ref, bfd.weight, bfd.weight_reverse)
            parts.append(("track_bfd", ref.name,
                          *tracker_effect(weight, reverse, bfd.to_vrrp and self.bfd.is_up(ref.name))))
        return parts

    def bfd_up_for_checker(self, name: str) -> bool:
        """BFD_CHECK's view: the session is Up and its bfd_instance sends events to checkers."""
        bfd = self.config.bfd_instances.get(name)
        return bfd is not None and bfd.to_checker and self.bfd.is_up(name)

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
                       "runs": r.runs, "problem": r.problem, "running": r.child is not None,
                       "last_duration": r.last_duration}
                for name, r in self.scripts.items()},
            "track_file": {
                name: {"path": w.track_file.path, "value": w.value, "weight": w.track_file.weight}
                for name, w in self.files.items()},
            "track_process": {
                name: {"state": {None: "INIT", True: "UP", False: "DOWN"}[q.up], "count": q.count,
                       "quorum": q.quorum, "quorum_max": q.quorum_max}
                for name, q in self.processes.items()},
            **({"bfd_instance": self.bfd.status()} if self.bfd.runs else {}),
        }


# --------------------------------------------------------------------------------------------
# 6.2 LVS checker decisions: from results and time (sans-IO); their I/O is in section 7.2
# --------------------------------------------------------------------------------------------


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
    if chk.kind == "BFD_CHECK":  # the session's state is the result: no retries, no warm-up
        return CheckerParams(delay_loop=delay_loop, connect_timeout=5.0, retry=0, delay_before_retry=1.0,
                             warmup=0.0, alpha=pick(chk.alpha, rs.alpha, vs.alpha))
    if chk.kind == "FILE_CHECK":  # the file's value is the result at once (keepalived watches it with inotify;
        # vrrpd reads it at least every second); none of the common checker options apply
        return CheckerParams(delay_loop=min(delay_loop, 1.0), connect_timeout=5.0, retry=0, delay_before_retry=1.0,
                             warmup=0.0, alpha=False)
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


def udp_reply_ok(chk: Checker, data: bytes) -> bool:
    """UDP_CHECK's judgement of a reply. As keepalived codes it, the length bounds apply only with reply data;
    the data must match over min(len(reply), len(data)) octets, masked nibbles (X) ignored."""
    if not chk.require_reply or chk.reply_data is None:
        return True
    if not chk.min_reply_length <= len(data) <= chk.max_reply_length:
        return False
    mask = chk.reply_mask or b"\xff" * len(chk.reply_data)
    return all((a ^ b) & m == 0 for a, b, m in zip(data, chk.reply_data, mask))


def file_check_result(value: Optional[int], weight: int, reverse: bool, base_weight: int) -> Tuple[bool, Optional[int]]:
    """FILE_CHECK from the track_file's value: (up, real server weight or None for the configured one).

    weight 0: a non-zero value is DOWN (with reverse, zero is); else value x weight (negated with reverse) is
    added to the real server's weight, and a result at or below INT32_MIN is DOWN (keepalived's rules)."""
    value = value or 0
    if weight == 0:
        down = value != 0
        return (down if reverse else not down), None
    total = base_weight + value * weight * (-1 if reverse else 1)
    if total <= -(2**31):
        return False, None
    return True, max(0, min(total, 2**31 - 1))


def misc_check_result(returncode: Optional[int], timed_out: bool, dynamic: bool) -> Tuple[bool, Optional[int]]:
    """MISC_CHECK exit status -> (up, weight): 0 up; misc_dynamic 2..255 up with weight status-2."""
    if timed_out or returncode is None or returncode < 0:
        return False, None
    if returncode == 0:
        return True, None
    if dynamic and 2 <= returncode <= 255:
        return True, returncode - 2
    return False, None


_URL_PATTERNS: Dict[Tuple[str, Tuple[str, ...]], Any] = {}


def url_pattern(url: UrlCheck) -> Any:
    """The url's regex compiled with its options (cached); re.error if it does not compile."""
    key = (url.regex or "", tuple(url.regex_options))
    pattern = _URL_PATTERNS.get(key)
    if pattern is None:
        flags = 0
        for name in url.regex_options:
            if isinstance(REGEX_OPTIONS.get(name), int):
                flags |= REGEX_OPTIONS[name]
        text = key[0] if "utf" in [REGEX_OPTIONS.get(n) for n in url.regex_options] else key[0].encode()
        if isinstance(text, str) and ("never_ucp" in url.regex_options or "ucp" not in url.regex_options):
            flags |= re.ASCII  # PCRE2's utf without ucp: \w, \d and caseless stay ASCII
        pattern = _URL_PATTERNS[key] = re.compile(text, flags)
    return pattern


def url_regex_matches(url: UrlCheck, body: bytes) -> bool:
    """Whether the body matches the url's regex with a match starting within [regex_min_offset, regex_max_offset]
    (firstline: at or before the first newline), as keepalived's check_regex() decides."""
    pattern = url_pattern(url)
    subject: Any = body
    if isinstance(pattern.pattern, str):
        try:
            subject = body.decode("utf-8")
        except UnicodeDecodeError:  # PCRE2 with utf reports a UTF error: no match
            return False
    last = url.regex_max_offset
    if "firstline" in url.regex_options:
        newline = subject.find("\n" if isinstance(subject, str) else b"\n")
        if newline >= 0:
            last = newline if last is None else min(last, newline)
    found = pattern.search(subject, url.regex_min_offset)
    return found is not None and (last is None or found.start() <= last)


def http_response_ok(response: bytes, url: UrlCheck) -> Tuple[bool, str]:
    """Judge an HTTP response against a `url` block: status in range (200-299 by default) and digest."""
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = response.partition(b"\n\n")
    words = head.split(b"\r\n", 1)[0].split()
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit() or len(words[1]) > 9:
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
    if url.regex is not None and url_regex_matches(url, body) == url.regex_no_match:
        return False, "Regex match failed"
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


# --------------------------------------------------------------------------------------------
# 6.3 BFD sessions (RFC 5880 asynchronous mode), sans-IO: given `now` and received packets, a session
#     returns the packets to send and its state changes. Its UDP sockets are in section 7.4.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BfdSend:
    """Send this control packet to the neighbour now."""

    packet: BfdPacket


@dataclass(frozen=True)
class BfdStateChange:
    """bfd.SessionState changed; `peer_admin_down` when the neighbour said AdminDown (no failure, RFC 5882)."""

    old: BfdState
    new: BfdState
    diag: int
    peer_admin_down: bool = False


BfdAction = Union[BfdSend, BfdStateChange]


class BfdSession:
    """One BFD session's state variables and timers (RFC 5880 sections 6.2, 6.8), sans-IO.

    Intervals are in microseconds as on the wire, `now` in seconds. Echo, Demand and authentication are
    not used (as keepalived). `jitter()` returns a number in [0, 1) (random.random)."""

    def __init__(self, name: str, min_tx: int, min_rx: int, idle_tx: int = 1_000_000, multiplier: int = 3,
                 passive: bool = False, discriminator: int = 0, jitter: Optional[Callable[[], float]] = None):
        self.name = name
        self.min_tx = min_tx  # DesiredMinTxInterval while Up
        self.idle_tx = max(idle_tx, 1_000_000)  # section 6.8.3: at least one second while not Up
        self.required_min_rx = min_rx
        self.detect_mult = multiplier
        self.passive = passive
        self.jitter = jitter or random.random
        self.state = BfdState.Down
        self.remote_state = BfdState.Down
        self.local_disc = discriminator or random.randint(1, 0xFFFFFFFF)
        self.remote_disc = 0
        self.local_diag = BFD_DIAG_NONE
        self.remote_min_rx = 1  # section 6.8.1: bfd.RemoteMinRxInterval starts at 1
        self.remote_min_tx = 0
        self.remote_mult = 0
        self.polling = False  # a Poll Sequence of ours is running (section 6.5)
        self.tx_timer: Optional[float] = None
        self.detect_timer: Optional[float] = None
        self.received = 0

    # -- the numbers of section 6.8 -----------------------------------------------------------
    @property
    def desired_min_tx(self) -> int:
        """bfd.DesiredMinTxInterval: the configured rate when Up, the slow rate (>= 1 s) otherwise."""
        return self.min_tx if self.state == BfdState.Up else self.idle_tx

    @property
    def tx_interval(self) -> int:
        """Section 6.8.2: the larger of our DesiredMinTxInterval and the remote RequiredMinRxInterval."""
        return max(self.desired_min_tx, self.remote_min_rx)

    @property
    def detection_time(self) -> float:
        """Section 6.8.4 (asynchronous mode): remote Detect Mult x max(our RequiredMinRx, its DesiredMinTx), s."""
        return self.remote_mult * max(self.required_min_rx, self.remote_min_tx) / 1e6

    def next_deadline(self) -> Optional[float]:
        deadlines = [t for t in (self.tx_timer, self.detect_timer) if t is not None]
        return min(deadlines) if deadlines else None

    # -- events -------------------------------------------------------------------------------
    def start(self, now: float) -> List[BfdAction]:
        """Begin in Down; an active session transmits at once, a passive one waits to hear the peer."""
        if not self.passive:
            return self._transmit(now)
        return []

    def admin_down(self, now: float) -> List[BfdAction]:
        """Local administration (stopping): AdminDown with diag 7, said once to the peer."""
        old, self.state, self.local_diag = self.state, BfdState.AdminDown, BFD_DIAG_ADMIN_DOWN
        self.detect_timer = None
        acts: List[BfdAction] = [BfdSend(self._packet())]
        if old != BfdState.AdminDown:
            acts.append(BfdStateChange(old, BfdState.AdminDown, BFD_DIAG_ADMIN_DOWN))
        self.tx_timer = None
        return acts

    def on_timer(self, now: float) -> List[BfdAction]:
        acts: List[BfdAction] = []
        if self.detect_timer is not None and now >= self.detect_timer:
            # section 6.8.4: "If ... the Detection Time passes without receipt of a valid ... packet ... the
            # session has gone down": Down with diag 1; the remote discriminator is forgotten (keepalived)
            self.detect_timer = None
            self.remote_disc, self.remote_state, self.remote_min_rx = 0, BfdState.Down, 1
            if self.state in (BfdState.Init, BfdState.Up):
                acts += self._set_state(now, BfdState.Down, BFD_DIAG_EXPIRED)
        if self.tx_timer is not None and now >= self.tx_timer:
            acts += self._transmit(now)
        return acts

    def on_packet(self, now: float, pkt: BfdPacket) -> List[BfdAction]:
        """A control packet that decode_bfd() accepted and that the caller matched to this session."""
        if self.state == BfdState.AdminDown:
            return []  # section 6.8.6: "If bfd.SessionState is AdminDown: Discard the packet"
        self.received += 1
        self.remote_disc = pkt.my_disc
        self.remote_state = pkt.state
        self.remote_min_tx = pkt.desired_min_tx
        self.remote_min_rx = pkt.required_min_rx
        self.remote_mult = pkt.detect_mult
        acts: List[BfdAction] = []
        if pkt.final and self.polling:
            self.polling = False  # "If the Final (F) bit is set, terminate any Poll Sequence in progress"
        # section 6.8.6 state machine (section 6.2 diagram)
        if pkt.state == BfdState.AdminDown:
            if self.state != BfdState.Down:
                acts += self._set_state(now, BfdState.Down, BFD_DIAG_NEIGHBOR_DOWN, peer_admin_down=True)
        elif self.state == BfdState.Down:
            if pkt.state == BfdState.Down:
                acts += self._set_state(now, BfdState.Init, BFD_DIAG_NONE)
            elif pkt.state == BfdState.Init:
                acts += self._set_state(now, BfdState.Up, BFD_DIAG_NONE)
        elif self.state == BfdState.Init:
            if pkt.state in (BfdState.Init, BfdState.Up):
                acts += self._set_state(now, BfdState.Up, BFD_DIAG_NONE)
        elif pkt.state == BfdState.Down:  # Up
            acts += self._set_state(now, BfdState.Down, BFD_DIAG_NEIGHBOR_DOWN)
        # section 6.8.4: the detection timer restarts with every valid packet
        self.detect_timer = now + self.detection_time if self.detection_time > 0 else None
        if pkt.poll:
            # "If the Poll (P) bit is set, send a BFD Control packet ... with the Poll (P) bit clear, and the
            #  Final (F) bit set" - at once, outside the periodic schedule (section 6.8.7)
            acts.append(BfdSend(self._packet(final=True)))
        if self.tx_timer is None and not acts and self.remote_min_rx:
            self._schedule(now)  # a passive session starts transmitting once it has heard the peer
        elif self.tx_timer is not None and self.tx_timer > now + self.tx_interval / 1e6:
            self._schedule(now)  # the peer asked for a faster rate: do not wait out the slow one
        if any(isinstance(a, BfdStateChange) for a in acts):
            acts += self._transmit(now)  # tell the peer our new state now
        return acts

    # -- internals ----------------------------------------------------------------------------
    def _set_state(self, now: float, new: BfdState, diag: int, peer_admin_down: bool = False) -> List[BfdAction]:
        old = self.state
        self.state, self.local_diag = new, diag
        # Up: our DesiredMinTxInterval changes from the slow rate, a Poll Sequence announces it (section 6.8.3)
        self.polling = new == BfdState.Up and self.min_tx != self.idle_tx
        return [BfdStateChange(old, new, diag, peer_admin_down)]

    def _packet(self, final: bool = False) -> BfdPacket:
        flags = BFD_FINAL if final else (BFD_POLL if self.polling else 0)
        return BfdPacket(self.state, self.local_disc, self.remote_disc, self.detect_mult, self.desired_min_tx,
                         self.required_min_rx, 0, self.local_diag, flags)

    def _schedule(self, now: float) -> None:
        """Section 6.8.7: the next periodic packet after 75-100 % of the interval (75-90 % with Detect Mult 1)."""
        if self.remote_min_rx == 0 or self.state == BfdState.AdminDown:
            self.tx_timer = None  # "MUST NOT periodically transmit" when the peer asks for nothing
            return
        cut = 0.10 + 0.15 * self.jitter() if self.detect_mult == 1 else 0.25 * self.jitter()
        self.tx_timer = now + self.tx_interval / 1e6 * (1.0 - cut)

    def _transmit(self, now: float) -> List[BfdAction]:
        if self.passive and self.remote_disc == 0:
            self.tx_timer = None
            return []
        self._schedule(now)
        return [BfdSend(self._packet())]


# ============================================================================================
# 7. Kernel edge: sockets and netlink
# ============================================================================================

# (raw VRRP sockets, AF_PACKET, rtnetlink, generic netlink IPVS go here)

# --------------------------------------------------------------------------------------------
# 7.1 rtnetlink and VRRP sockets: one netlink request loop, link and address events of both families,
#     VrrpSocket (both families, AH), Announcer (ARP and NA), and Kernel: what the Daemon opens
# --------------------------------------------------------------------------------------------

NETLINK_ROUTE = 0
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_TIMESTAMPNS = 35  # SOL_SOCKET option: the kernel receive time of each datagram
SIOCGSTAMPNS = 0x8907  # ioctl: the kernel receive time of the datagram read last
SO_ATTACH_FILTER, SO_RCVBUFFORCE = 26, 33
SO_MEMINFO, SK_MEMINFO_VARS, SK_MEMINFO_DROPS = 55, 9, 8  # the socket's memory counters, drops among them
IP_MULTICAST_ALL, IPV6_MULTICAST_ALL = 49, 29
IPTOS_PREC_INTERNETCONTROL = 0xC0  # keepalived's IP_TOS / IPV6_TCLASS for adverts (CS6, network control)
IP_MREQN = struct.Struct("=4s4si")  # imr_multiaddr, imr_address, imr_ifindex
VRRP_RCVBUF = 1 << 20  # the receive buffer of a VRRP socket unless kernel_rx_buf_size asks for more


def attach_filter(sock: socket.socket, code: bytes) -> None:
    """SO_ATTACH_FILTER: the kernel runs `code` (bpf_bytes()) on each packet and queues only what it accepts.

    The sock_fprog points into our memory: an array's buffer, whose address array gives (no ctypes, which
    costs memory and which python3-minimal lacks). The kernel copies the program during the call."""
    import array

    buf = array.array("B", code)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("@HP", len(code) // BPF_INSN.size, buf.buffer_info()[0]))


def set_rcvbuf(sock: socket.socket, size: int) -> None:
    """SO_RCVBUF of `size` bytes, past net.core.rmem_max with SO_RCVBUFFORCE when we may (keepalived's
    kernel_rx_buf_size is honoured whole)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < 2 * size:  # the kernel doubles what it grants
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError:
            pass


def set_netlink_rcvbuf(sock: Optional[socket.socket], size: int, force: bool, what: str) -> None:
    """keepalived's vrrp_netlink_{cmd,monitor}_rcv_bufs[_force]: SO_RCVBUF (capped by net.core.rmem_max), or
    SO_RCVBUFFORCE, of a netlink socket; nothing when `size` is 0 (vrrpd's own default stays)."""
    if not size or sock is None:
        return
    option, name = (SO_RCVBUFFORCE, "SO_RCVBUFFORCE") if force else (socket.SO_RCVBUF, "SO_RCVBUF")
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, size)
    except OSError as exc:
        log.info("Cannot set %s on the netlink %s socket: %s", name, what, exc)


SIOCGIFFLAGS, SIOCETHTOOL, ETHTOOL_GLINK = 0x8913, 0x8946, 0x0000000A
LINKBEAT_INTERVAL = 1.0  # keepalived's POLLING_DELAY


def linkbeat_probe(ifname: str, kind: str = "") -> Tuple[bool, str]:
    """keepalived's linkbeat: (carrier up, how it was read), read now. ETHTOOL_GLINK (SIOCETHTOOL) where the
    driver answers it, with the interface's IFF_UP|IFF_RUNNING (SIOCGIFFLAGS, "Some buggy drivers need this");
    SIOCGIFFLAGS alone for IOCTL or a driver without ethtool. MII registers are not read: MII falls back to
    ETHTOOL, as keepalived does where the NIC has no MII. fcntl is imported only when polling is configured."""
    import array
    import fcntl

    name = ifname.encode()[:15]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        how = "IOCTL"
        if kind != "IOCTL":
            value = array.array("I", [ETHTOOL_GLINK, 0])
            try:
                request = struct.pack("16sP", name, value.buffer_info()[0]).ljust(40, b"\0")  # ifr_data -> value
                fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
                how = "ETHTOOL"
                if not value[1]:
                    return False, how
            except OSError:
                pass
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, struct.pack("16s", name).ljust(40, b"\0"))
        except OSError:
            return False, how
        flags = struct.unpack_from("=H", answer, 16)[0]
        return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING), how


def _optional_sockopt(sock: socket.socket, level: int, option: int, value: int) -> None:
    try:
        sock.setsockopt(level, option, value)
    except OSError:
        pass  # an older kernel: only an optimisation is lost


def kernel_holds_packets(sock: Optional[socket.socket]) -> bool:
    """True while the kernel holds an unread datagram for `sock` (a peek that takes nothing)."""
    if sock is None:
        return False
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    return True


class _RxSocket:
    """What the receive path needs of every VRRP socket, both families: the kernel filter, the receive buffer,
    and how many datagrams the kernel dropped for a full queue."""

    sock: socket.socket
    ifname: str

    def _rx_init(self) -> None:
        self.rx_filter: Optional[RxFilter] = None
        self.rx_filter_error: Optional[str] = None
        self.rcvbuf = VRRP_RCVBUF
        set_rcvbuf(self.sock, self.rcvbuf)

    def set_filter(self, rx_filter: Optional[RxFilter]) -> None:
        """Attach (or replace) the kernel filter; None leaves the socket as it is. A failure is remembered
        and logged once: vrrpd then checks every packet in user space, as without a filter."""
        if rx_filter is None or rx_filter == self.rx_filter:
            return
        try:
            attach_filter(self.sock, bpf_bytes(vrrp_filter_program(rx_filter)))
        except (OSError, ValueError) as exc:
            if self.rx_filter_error is None:
                log.warning("cannot attach the VRRP receive filter on %s: %s", self.ifname, exc)
            self.rx_filter_error = str(exc)
            return
        self.rx_filter, self.rx_filter_error = rx_filter, None

    def receive_nothing(self) -> None:
        """A socket only for sending (a VMAC's): the kernel queues nothing for it (keepalived does the same)."""
        try:
            attach_filter(self.sock, bpf_bytes([(BPF_RET | BPF_K, 0, 0, 0)]))
            self.set_rcvbuf(0)
        except OSError:
            pass

    def set_rcvbuf(self, size: int) -> None:
        if size != self.rcvbuf:
            self.rcvbuf = size
            set_rcvbuf(self.sock, size)

    @property
    def queue_drops(self) -> Optional[int]:
        """Datagrams the kernel dropped because the receive queue was full (SO_MEMINFO: read when asked, nothing
        per packet); None where the kernel does not say."""
        try:
            info = self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * SK_MEMINFO_VARS)
        except OSError:
            return None
        return struct.unpack_from(f"={len(info) // 4}I", info)[SK_MEMINFO_DROPS] if len(info) >= 36 else None


# What one recv() of a netlink socket takes: the kernel fills each batch of a dump to the longest read of the
# socket, but to a page at least and 32 KB at most (netlink_recvmsg, netlink_dump), and an event is smaller. More
# would only be allocated for each answer (a takeover asks once per VIP) and never filled.
NETLINK_RECV_SIZE = 1 << 16


class NetlinkSocket:
    """A netlink socket with the one request loop of this file: rtnetlink (addresses, links, VMACs) and
    generic netlink (IPVS) both send through request().

    The kernel answers while handling send(), so the answer is already queued when recv() runs; the
    socket timeout only guards against a kernel that never answers."""

    def __init__(self, protocol: int, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        try:
            self.sock.bind((0, 0))
            self.sock.settimeout(timeout)
        except OSError:
            self.sock.close()
            raise
        self.seq = int(time.time()) & 0xFFFFFF

    def request(self, msg_type: int, flags: int, payload: bytes) -> List[Tuple[int, bytes]]:
        """Send one request; its answers as (type, payload) up to the ACK or NLMSG_DONE. Raises NetlinkError."""
        self.seq += 1
        self.sock.send(nlmsg_pack(msg_type, flags | NLM_F_REQUEST, self.seq, payload))
        out: List[Tuple[int, bytes]] = []
        while True:
            try:
                replies, finished = nlmsg_replies(self.sock.recv(NETLINK_RECV_SIZE), self.seq)
            except PacketError as exc:
                raise NetlinkError(errno.EPROTO, f"malformed netlink answer ({exc})") from None
            out += [(rtype, body) for rtype, _rflags, body in replies]
            if finished or (replies and not flags & (NLM_F_ACK | NLM_F_DUMP) and not replies[-1][1] & NLM_F_MULTI):
                return out

    def close(self) -> None:
        self.sock.close()


class Rtnetlink(NetlinkSocket):
    """rtnetlink requests: dump links and addresses (both families), add and delete addresses, routes, rules
    and VMAC links."""

    def __init__(self) -> None:
        super().__init__(NETLINK_ROUTE, timeout=2.0)

    def links(self) -> Dict[int, LinkInfo]:
        replies = self.request(RTM_GETLINK, NLM_F_DUMP, ifinfomsg())
        links = [parse_link(body) for rtype, body in replies if rtype == RTM_NEWLINK]
        return {link.index: link for link in links}

    def addresses(self) -> List[AddrInfo]:
        replies = self.request(RTM_GETADDR, NLM_F_DUMP, IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
        found = [parse_addr(body) for rtype, body in replies if rtype == RTM_NEWADDR]
        return [a for a in found if a is not None]

    def add_address(self, index: int, vip: VirtualIP) -> bool:
        """Add a VIP; False when it was there already.

        An IPv6 VIP goes in with nodad, as keepalived adds it: VRRP is its duplicate detection."""
        if vip.address.version == 6:
            payload = addr_request_payload(index, vip.address, vip.scope, None, None, vip.peer, IFA_F_NODAD)
            flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        else:
            payload = addr_request_payload(index, vip.address, vip.scope, vip.label, vip.brd, vip.peer)
            flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        return self._change(RTM_NEWADDR, flags, payload, (errno.EEXIST,))

    def del_address(self, index: int, vip: VirtualIP) -> bool:
        """Delete a VIP; False when it was not there."""
        payload = addr_request_payload(index, vip.address, vip.scope, None, None, vip.peer)
        return self._change(RTM_DELADDR, NLM_F_ACK, payload, (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV))

    def route(self, route: Route, ifindex: Callable[[str], int], add: bool, replace: bool = False) -> bool:
        """Add (or delete) one route; False when it was already there (or already gone)."""
        return self._change(*route_request(route, ifindex, delete=not add, replace=replace),
                            (errno.EEXIST,) if add else (errno.ESRCH, errno.ENOENT))

    def rule(self, rule: Rule, add: bool) -> bool:
        """Add (or delete) one policy-routing rule; False when it was already there (or already gone)."""
        return self._change(*rule_request(rule, delete=not add),
                            (errno.EEXIST,) if add else (errno.ESRCH, errno.ENOENT))

    def _change(self, msg_type: int, flags: int, payload: bytes, done_already: Tuple[int, ...]) -> bool:
        """One change request; False when the kernel answers that it is done already (an errno in done_already)."""
        try:
            self.request(msg_type, flags, payload)
        except NetlinkError as exc:
            if exc.errno in done_already:
                return False
            raise
        return True

    def new_macvlan(self, name: str, base_ifindex: int, mac: bytes, master: int = 0) -> None:
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     macvlan_link_payload(name, base_ifindex, mac, master))

    def new_ipvlan(self, name: str, base_ifindex: int, flags: int = 0, master: int = 0) -> None:
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     ipvlan_link_payload(name, base_ifindex, flags, master))

    def set_addrgenmode(self, ifindex: int, mode: int = IN6_ADDR_GEN_MODE_RANDOM) -> None:
        self.request(RTM_NEWLINK, NLM_F_ACK, addrgenmode_payload(ifindex, mode))

    def set_link_up(self, ifindex: int, up: bool = True) -> None:
        self.request(RTM_NEWLINK, NLM_F_ACK, ifinfomsg(ifindex, IFF_UP if up else 0, IFF_UP))

    def del_link(self, ifindex: int) -> None:
        self.request(RTM_DELLINK, NLM_F_ACK, ifinfomsg(ifindex))


class RtnetlinkMonitor:
    """Link and address events of both families (RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR) on a
    non-blocking socket: no polling of /proc."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        self.sock.setblocking(False)
        self.overrun = False
        self.routes = False

    def watch_routes(self) -> None:
        """Also receive IPv4/IPv6 route and rule events (only wanted when routes or rules are tracked)."""
        if self.routes:
            return
        for group in (7, 8, 11, RTNLGRP_IPV6_RULE):  # RTNLGRP_IPV4_ROUTE, IPV4_RULE, IPV6_ROUTE, IPV6_RULE
            self.sock.setsockopt(270, 1, group)  # SOL_NETLINK, NETLINK_ADD_MEMBERSHIP
        self.routes = True

    def read(self) -> List[Tuple[int, Union[LinkInfo, AddrInfo, RouteInfo]]]:
        """Pending events as (RTM_* type, LinkInfo | AddrInfo | RouteInfo); sets .overrun if the kernel dropped some."""
        events: List[Tuple[int, Union[LinkInfo, AddrInfo, RouteInfo]]] = []
        while True:
            try:
                data = self.sock.recv(NETLINK_RECV_SIZE)
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overrun = True
                    continue
                raise
            try:
                for rtype, _flags, _seq, _pid, body in nlmsg_parse(data):
                    if rtype in (RTM_NEWLINK, RTM_DELLINK):
                        events.append((rtype, parse_link(body)))
                    elif rtype in (RTM_NEWADDR, RTM_DELADDR):
                        addr = parse_addr(body)
                        if addr is not None:
                            events.append((rtype, addr))
                    elif rtype in (RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWRULE, RTM_DELRULE):
                        events.append((rtype, parse_route_msg(body, rule=rtype >= RTM_NEWRULE)))
            except PacketError:
                continue

    def close(self) -> None:
        self.sock.close()


def _receive_time(sock: socket.socket) -> Optional[float]:
    """SIOCGSTAMPNS: when the kernel received the datagram read last from sock (the first call on a socket
    turns the stamps on and finds none)."""
    import fcntl

    try:
        sec, nsec = struct.unpack("=qq", fcntl.ioctl(sock.fileno(), SIOCGSTAMPNS, bytes(16)))
    except OSError:
        return None
    return sec + nsec * 1e-9


class VrrpSocket(_RxSocket):
    """The raw VRRP socket of one interface and one family (RFC 5798 section 5.1).

    IPv4 adverts go out with our own header (IP_HDRINCL: source, TTL and TOS are ours to set); IPv6 ones
    from the source given per packet with hop limit 255, the kernel filling in and verifying the checksum
    over the pseudo-header (IPV6_CHECKSUM), as keepalived has it do. With `protocol` IPPROTO_AH it receives
    the AH-wrapped adverts of `auth_type AH` (IPv4)."""

    def __init__(self, family: int, ifname: str, ifindex: int, protocol: int = IPPROTO_VRRP):
        self.family = family
        self.ifname = ifname
        self.ifindex = ifindex
        self.protocol = protocol
        self.kernel_checksum = family == 6
        self.groups: List[IPAddress] = []
        self.ident = 0
        self.destinations: Dict[Tuple[IPAddress, IPAddress], tuple] = {}  # see destination()
        sock = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_RAW, protocol)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
            if family == 4:
                # the receive time is asked for (SIOCGSTAMPNS) only for an advert that passed the checks: a
                # flood is read with recv(), which costs half a recvmsg() with its control message
                _receive_time(sock)  # the first call makes the kernel stamp this socket's datagrams
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, IP_MREQN.pack(bytes(4), bytes(4), ifindex))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                _optional_sockopt(sock, socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)  # only the groups joined here
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, IPTOS_PREC_INTERNETCONTROL)
            else:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 6)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, VRRP_TTL)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
                _optional_sockopt(sock, socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)  # Linux >= 4.20
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, IPTOS_PREC_INTERNETCONTROL)
            sock.setblocking(False)
            self.sock = sock
            self._rx_init()
        except OSError:
            sock.close()
            raise

    def join(self, group: IPAddress) -> None:
        """Join `group` on this interface (by interface index)."""
        if group in self.groups:
            return
        if self.family == 4:
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                 IP_MREQN.pack(group.packed, bytes(4), self.ifindex))
        else:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                                 group.packed + struct.pack("=I", self.ifindex))
        self.groups.append(group)

    def packet(self, src: IPAddress, dst: IPAddress, msg: bytes, ttl: int = VRRP_TTL) -> bytes:
        """What send() takes for the VRRP message msg: IPv4 puts our header in front (IP id left to the
        kernel), IPv6 sends the message as it is."""
        return encode_ipv4(src, dst, msg, ttl=ttl) if self.family == 4 else msg  # type: ignore[arg-type]

    def destination(self, src: IPAddress, dst: IPAddress) -> Tuple[IPAddress, IPAddress, tuple, Optional[list]]:
        """(src, dst, socket address, ancillary data or None): what send_to() takes, made once for the packets
        of an advert that are kept and sent again (str() of an address costs more than the sendto), and shared
        by the instances that send from the same source to the same group on this socket."""
        dest = self.destinations.get((src, dst))
        if dest is None:
            if len(self.destinations) >= 256:
                self.destinations.clear()
            if self.family == 4:
                dest = src, dst, (str(dst), 0), None
            else:
                pktinfo = src.packed + struct.pack("=I", self.ifindex)
                dest = src, dst, (str(dst), 0, 0, self.ifindex), [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)]
            self.destinations[(src, dst)] = dest
        return dest

    def send(self, src: IPAddress, dst: IPAddress, packet: bytes) -> None:
        self.send_to(packet, self.destination(src, dst))

    def send_to(self, packet: bytes, dest: Tuple[IPAddress, IPAddress, tuple, Optional[list]]) -> None:
        """Send packet to the destination() made for it."""
        if dest[3] is None:
            self.sock.sendto(packet, dest[2])
        else:
            self.sock.sendmsg([packet], dest[3], 0, dest[2])

    def recv(self) -> Optional[Received]:
        """One pending datagram, or None when there is none. PacketError for a bad IPv4 header. Its kernel
        receive time is in received_at (IPv6) or comes from receive_time() (IPv4), so that timers start when
        the advert arrived, not when it was read."""
        if self.family == 4:
            try:
                return decode_ipv4(self.sock.recv(65535))
            except (BlockingIOError, InterruptedError):
                return None
        try:
            data, ancillary, _flags, addr = self.sock.recvmsg(65535, 256)
        except (BlockingIOError, InterruptedError):
            return None
        received_at: Optional[float] = None
        hoplimit, dst = -1, None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack_from("=qq", value)
                received_at = sec + nsec * 1e-9
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
                hoplimit = struct.unpack_from("=i", value)[0]
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
                dst = ipaddress.IPv6Address(value[:16])
        src = ipaddress.IPv6Address(addr[0].split("%")[0])
        return Received(src, dst or ipaddress.IPv6Address(0), hoplimit, data, self.protocol, received_at)

    def receive_time(self) -> Optional[float]:
        """The kernel receive time (CLOCK_REALTIME) of the IPv4 datagram recv() returned last; None if unknown."""
        return _receive_time(self.sock) if self.family == 4 else None

    def close(self) -> None:
        self.sock.close()


class Announcer:
    """An AF_PACKET socket announcing VIPs on one interface (it receives nothing): gratuitous ARPs for IPv4
    (RFC 5227 section 3), unsolicited Neighbour Advertisements for IPv6 (RFC 4861 section 4.4)."""

    def __init__(self, ifname: str):
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.setblocking(False)

    def send(self, mac: bytes, address: IPAddress) -> None:
        if address.version == 4:
            self.sock.sendto(garp_frame(mac, address), (self.ifname, ETH_P_ARP))  # type: ignore[arg-type]
        else:
            frame = build_unsolicited_na(mac, address, ipv6_forwarding(self.ifname))  # type: ignore[arg-type]
            self.sock.sendto(frame, (self.ifname, ETH_P_IPV6))

    def close(self) -> None:
        self.sock.close()


class Kernel:
    """What the Daemon opens on the kernel, in one place: tests hand the Daemon a fake one."""

    def rtnetlink(self) -> Rtnetlink:
        return Rtnetlink()

    def monitor(self) -> RtnetlinkMonitor:
        return RtnetlinkMonitor()

    def vrrp_socket(self, family: int, ifname: str, ifindex: int, protocol: int = IPPROTO_VRRP) -> VrrpSocket:
        return VrrpSocket(family, ifname, ifindex, protocol)

    def announcer(self, ifname: str) -> Announcer:
        return Announcer(ifname)

    def vmacs(self, rtnl: Rtnetlink) -> VmacManager:
        return VmacManager(rtnl)

    def firewall(self, table: str, priority: int = -1, counters: bool = False, ifindex: bool = False) -> StrictFirewall:
        return StrictFirewall(table, priority, counters, ifindex)

    IGMP_LINK_LOCAL_REPORTS = "/proc/sys/net/ipv4/igmp_link_local_mcast_reports"

    def linkbeat(self, ifname: str, kind: str = "") -> Tuple[bool, str]:
        return linkbeat_probe(ifname, kind)

    def igmp_link_local_reports(self, value: Optional[str] = None) -> Optional[str]:
        """Read (and, given `value`, then write) the network namespace's igmp_link_local_mcast_reports: whether
        the kernel sends IGMP reports for 224.0.0.X groups such as VRRP's. None when it cannot."""
        old = _read_sysctl(self.IGMP_LINK_LOCAL_REPORTS)
        if old is not None and value is not None and value != old and \
                not _write_sysctl(self.IGMP_LINK_LOCAL_REPORTS, value):
            return None
        return old


# --------------------------------------------------------------------------------------------
# 7.2 IPVS and checkers: generic netlink IPVS, checker I/O and the LVS manager
# --------------------------------------------------------------------------------------------

NETLINK_GENERIC = 16
GENL_ID_CTRL = 16
GENL_HEADER = struct.Struct("=BBH")  # cmd, version, reserved
CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 3, 1, 2
IPVS_GENL_NAME, IPVS_GENL_VERSION = "IPVS", 1
(IPVS_CMD_NEW_SERVICE, IPVS_CMD_SET_SERVICE, IPVS_CMD_DEL_SERVICE, IPVS_CMD_GET_SERVICE,
 IPVS_CMD_NEW_DEST, IPVS_CMD_SET_DEST, IPVS_CMD_DEL_DEST, IPVS_CMD_GET_DEST) = range(1, 9)
IPVS_CMD_NEW_DAEMON, IPVS_CMD_DEL_DAEMON, IPVS_CMD_GET_DAEMON, IPVS_CMD_SET_CONFIG, IPVS_CMD_FLUSH = 9, 10, 11, 12, 17
IPVS_CMD_ATTR_DAEMON = 3
(IPVS_DAEMON_ATTR_STATE, IPVS_DAEMON_ATTR_MCAST_IFN, IPVS_DAEMON_ATTR_SYNC_ID, IPVS_DAEMON_ATTR_SYNC_MAXLEN,
 IPVS_DAEMON_ATTR_MCAST_GROUP, IPVS_DAEMON_ATTR_MCAST_GROUP6, IPVS_DAEMON_ATTR_MCAST_PORT,
 IPVS_DAEMON_ATTR_MCAST_TTL) = range(1, 9)
IP_VS_STATE_MASTER, IP_VS_STATE_BACKUP = 1, 2
IPVS_CMD_ATTR_TIMEOUT = {"tcp": 4, "tcpfin": 5, "udp": 6}
IPVS_CMD_ATTR_SERVICE, IPVS_CMD_ATTR_DEST = 1, 2
(IPVS_SVC_ATTR_AF, IPVS_SVC_ATTR_PROTOCOL, IPVS_SVC_ATTR_ADDR, IPVS_SVC_ATTR_PORT, IPVS_SVC_ATTR_FWMARK,
 IPVS_SVC_ATTR_SCHED_NAME, IPVS_SVC_ATTR_FLAGS, IPVS_SVC_ATTR_TIMEOUT, IPVS_SVC_ATTR_NETMASK) = range(1, 10)
IPVS_SVC_ATTR_PE_NAME = 11
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
    pe_name: Optional[str] = None  # persistence engine, e.g. "sip"


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


def _inet_addr(addr: IPAddress) -> bytes:
    return addr.packed.ljust(16, b"\0")


def genl_message(family: int, cmd: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST | NLM_F_ACK,
                 version: int = IPVS_GENL_VERSION) -> bytes:
    """nlmsghdr + genlmsghdr + attributes (the port id is left 0: the kernel fills it)."""
    return nlmsg_pack(family, flags, seq, genl_payload(cmd, attrs, version))


def genl_payload(cmd: int, attrs: bytes, version: int = IPVS_GENL_VERSION) -> bytes:
    """genlmsghdr + attributes: what a generic netlink request carries after its nlmsghdr."""
    return GENL_HEADER.pack(cmd, version, 0) + attrs


def genl_parse(payload: bytes) -> Tuple[int, Dict[int, bytes]]:
    """A generic netlink answer's (command, attributes); PacketError if malformed."""
    if len(payload) < GENL_HEADER.size:
        raise PacketError("bad_netlink", "short generic netlink message")
    return payload[0], nla_parse(payload[GENL_HEADER.size:])


def ipvs_service_attr(svc: Union[IpvsService, IpvsServiceKey]) -> bytes:
    """IPVS_CMD_ATTR_SERVICE: the key alone (GET/DEL and dest commands) or the full service."""
    key = svc.key if isinstance(svc, IpvsService) else svc
    body = nla_pack(IPVS_SVC_ATTR_AF, struct.pack("=H", key.af))
    if key.fwmark:
        body += nla_pack(IPVS_SVC_ATTR_FWMARK, struct.pack("=I", key.fwmark))
    else:
        assert key.addr is not None
        body += nla_pack(IPVS_SVC_ATTR_PROTOCOL, struct.pack("=H", key.protocol))
        body += nla_pack(IPVS_SVC_ATTR_ADDR, _inet_addr(key.addr))
        body += nla_pack(IPVS_SVC_ATTR_PORT, struct.pack("!H", key.port))
    if isinstance(svc, IpvsService):
        body += nla_pack(IPVS_SVC_ATTR_SCHED_NAME, svc.sched_name.encode() + b"\0")
        body += nla_pack(IPVS_SVC_ATTR_FLAGS, struct.pack("=II", svc.flags, 0xFFFFFFFF))
        body += nla_pack(IPVS_SVC_ATTR_TIMEOUT, struct.pack("=I", svc.timeout))
        netmask = struct.pack("=I", svc.netmask) if key.af == socket.AF_INET6 else struct.pack("!I", svc.netmask)
        body += nla_pack(IPVS_SVC_ATTR_NETMASK, netmask)
        if svc.pe_name:
            body += nla_pack(IPVS_SVC_ATTR_PE_NAME, svc.pe_name.encode() + b"\0")
    return nla_pack(IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, body)


def ipvs_dest_attr(dest: IpvsDest, full: bool = True) -> bytes:
    """IPVS_CMD_ATTR_DEST: address and port, plus method, weight and thresholds when `full`."""
    body = nla_pack(IPVS_DEST_ATTR_ADDR, _inet_addr(dest.addr))
    body += nla_pack(IPVS_DEST_ATTR_PORT, struct.pack("!H", dest.port))
    if full:
        body += nla_pack(IPVS_DEST_ATTR_FWD_METHOD, struct.pack("=I", dest.fwd_method))
        body += nla_pack(IPVS_DEST_ATTR_WEIGHT, struct.pack("=I", dest.weight))
        body += nla_pack(IPVS_DEST_ATTR_U_THRESH, struct.pack("=I", dest.u_thresh))
        body += nla_pack(IPVS_DEST_ATTR_L_THRESH, struct.pack("=I", dest.l_thresh))
        af = socket.AF_INET6 if dest.addr.version == 6 else socket.AF_INET
        body += nla_pack(IPVS_DEST_ATTR_ADDR_FAMILY, struct.pack("=H", af))
        if dest.tun_type is not None:
            body += nla_pack(IPVS_DEST_ATTR_TUN_TYPE, struct.pack("=B", dest.tun_type))
            body += nla_pack(IPVS_DEST_ATTR_TUN_PORT, struct.pack("!H", dest.tun_port))
            body += nla_pack(IPVS_DEST_ATTR_TUN_FLAGS, struct.pack("=H", dest.tun_flags))
    return nla_pack(IPVS_CMD_ATTR_DEST | NLA_F_NESTED, body)


def ipvs_daemon_attr(state: int, sd: Optional[LvsSyncDaemon] = None) -> bytes:
    """IPVS_CMD_ATTR_DAEMON: the state alone (DEL_DAEMON), or everything NEW_DAEMON takes (libipvs's order)."""
    body = nla_pack(IPVS_DAEMON_ATTR_STATE, struct.pack("=I", state))
    if sd is not None:
        body += nla_pack_str(IPVS_DAEMON_ATTR_MCAST_IFN, sd.ifname)
        body += nla_pack(IPVS_DAEMON_ATTR_SYNC_ID, struct.pack("=I", sd.syncid or 0))
        if sd.maxlen:
            body += nla_pack(IPVS_DAEMON_ATTR_SYNC_MAXLEN, struct.pack("=H", sd.maxlen))
        if sd.port:
            body += nla_pack(IPVS_DAEMON_ATTR_MCAST_PORT, struct.pack("=H", sd.port))
        if sd.ttl:
            body += nla_pack(IPVS_DAEMON_ATTR_MCAST_TTL, struct.pack("=B", sd.ttl))
        if sd.group is not None:
            kind = IPVS_DAEMON_ATTR_MCAST_GROUP6 if sd.group.version == 6 else IPVS_DAEMON_ATTR_MCAST_GROUP
            body += nla_pack(kind, sd.group.packed)
    return nla_pack(IPVS_CMD_ATTR_DAEMON | NLA_F_NESTED, body)


def ipvs_timeouts_attrs(timeouts: Dict[str, int]) -> bytes:
    """IPVS_CMD_SET_CONFIG attributes for `lvs_timeouts` (tcp, tcpfin, udp seconds; the others are kept)."""
    return b"".join(nla_pack(IPVS_CMD_ATTR_TIMEOUT[name], struct.pack("=I", value))
                    for name, value in sorted(timeouts.items(), key=lambda kv: IPVS_CMD_ATTR_TIMEOUT[kv[0]]))


def _ip_from(af: int, raw: bytes) -> IPAddress:
    return ipaddress.ip_address(raw[:16] if af == socket.AF_INET6 else raw[:4])


def ipvs_parse_service(nested: bytes) -> IpvsService:
    """The kernel's IPVS_CMD_ATTR_SERVICE (from a GET_SERVICE dump) as an IpvsService; NetlinkError if malformed."""
    try:
        return _ipvs_parse_service(nested)
    except (KeyError, IndexError, ValueError, struct.error, PacketError) as exc:
        raise NetlinkError(errno.EPROTO, f"malformed IPVS service ({exc!r})") from None


def _ipvs_parse_service(nested: bytes) -> IpvsService:
    a = nla_parse(nested)
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
    """The kernel's IPVS_CMD_ATTR_DEST (from a GET_DEST dump) as an IpvsDest; NetlinkError if malformed."""
    try:
        return _ipvs_parse_dest(nested, af)
    except (KeyError, IndexError, ValueError, struct.error, PacketError) as exc:
        raise NetlinkError(errno.EPROTO, f"malformed IPVS destination ({exc!r})") from None


def _ipvs_parse_dest(nested: bytes, af: int) -> IpvsDest:
    a = nla_parse(nested)
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


class IpvsNetlink(NetlinkSocket):
    """Generic netlink requests to the kernel's IPVS family; with `netns`, the IPVS of that named network namespace
    ("" the init namespace's): the socket is made there (setns and back, this thread only) and stays there."""

    def __init__(self, netns: Optional[str] = None) -> None:
        if netns is None:
            super().__init__(NETLINK_GENERIC, timeout=5.0)
        else:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(f"/run/netns/{netns}" if netns else "/proc/1/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if libc.setns(target, 0x40000000) != 0:  # CLONE_NEWNET
                        err = ctypes.get_errno()
                        raise OSError(err, f"net_namespace_ipvs {netns}: {os.strerror(err)}")
                finally:
                    os.close(target)
                try:
                    super().__init__(NETLINK_GENERIC, timeout=5.0)
                finally:
                    if libc.setns(home, 0x40000000) != 0:  # never go on in the wrong namespace
                        raise SystemExit(f"cannot return from the IPVS network namespace {netns}")
            finally:
                os.close(home)
        try:
            replies = self._genl(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                                 nla_pack_str(CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME), version=1)
            self.family = struct.unpack("=H", replies[0][1][CTRL_ATTR_FAMILY_ID][:2])[0]
        except Exception:
            self.sock.close()
            raise

    def _genl(self, family: int, cmd: int, attrs: bytes, dump: bool = False,
              version: int = IPVS_GENL_VERSION) -> List[Tuple[int, Dict[int, bytes]]]:
        try:
            replies = self.request(family, NLM_F_DUMP if dump else NLM_F_ACK, genl_payload(cmd, attrs, version))
            return [genl_parse(body) for _type, body in replies]
        except PacketError as exc:
            raise NetlinkError(errno.EPROTO, f"malformed generic netlink answer ({exc})") from None

    def genl_request(self, cmd: int, attrs: bytes, dump: bool = False) -> List[Tuple[int, Dict[int, bytes]]]:
        return self._genl(self.family, cmd, attrs, dump)

    def services(self) -> List[IpvsService]:
        return [ipvs_parse_service(a[IPVS_CMD_ATTR_SERVICE])
                for _, a in self.genl_request(IPVS_CMD_GET_SERVICE, b"", dump=True) if IPVS_CMD_ATTR_SERVICE in a]

    def dests(self, key: IpvsServiceKey) -> List[IpvsDest]:
        replies = self.genl_request(IPVS_CMD_GET_DEST, ipvs_service_attr(key), dump=True)
        return [ipvs_parse_dest(a[IPVS_CMD_ATTR_DEST], key.af) for _, a in replies if IPVS_CMD_ATTR_DEST in a]

    def new_service(self, svc: IpvsService) -> None:
        self.genl_request(IPVS_CMD_NEW_SERVICE, ipvs_service_attr(svc))

    def set_service(self, svc: IpvsService) -> None:
        self.genl_request(IPVS_CMD_SET_SERVICE, ipvs_service_attr(svc))

    def del_service(self, key: IpvsServiceKey) -> None:
        self.genl_request(IPVS_CMD_DEL_SERVICE, ipvs_service_attr(key))

    def new_dest(self, key: IpvsServiceKey, dest: IpvsDest) -> None:
        self.genl_request(IPVS_CMD_NEW_DEST, ipvs_service_attr(key) + ipvs_dest_attr(dest))

    def set_dest(self, key: IpvsServiceKey, dest: IpvsDest) -> None:
        self.genl_request(IPVS_CMD_SET_DEST, ipvs_service_attr(key) + ipvs_dest_attr(dest))

    def del_dest(self, key: IpvsServiceKey, dest: IpvsDest) -> None:
        self.genl_request(IPVS_CMD_DEL_DEST, ipvs_service_attr(key) + ipvs_dest_attr(dest, full=False))

    def new_daemon(self, state: int, sd: LvsSyncDaemon) -> None:
        self.genl_request(IPVS_CMD_NEW_DAEMON, ipvs_daemon_attr(state, sd))

    def del_daemon(self, state: int) -> None:
        self.genl_request(IPVS_CMD_DEL_DAEMON, ipvs_daemon_attr(state))


def _vs_name(vs: VirtualServer) -> str:
    return format_virtual_server(vs)


def _address_is_local(address: IPAddress) -> bool:
    """Whether this host holds `address` now (binding to it succeeds only then)."""
    with socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(address), 0))
            return True
        except OSError:
            return False


def _rs_name(vs: VirtualServer, key: Tuple[IPAddress, int]) -> str:
    return f"[{key[0]}]:{vs.protocol.lower()}:{key[1]}"


def nft_ipvs_marks(config: Config) -> Dict[Tuple[str, str], int]:
    """nftables_ipvs: the fwmark of each (group, protocol) whose virtual servers use one, numbered from
    nftables_ipvs_start_fwmark in the order of the configuration (keepalived's get_next_fwmark); a group with a
    fwmark entry of its own keeps its addresses as services."""
    g = config.global_defs
    marks: Dict[Tuple[str, str], int] = {}
    if g.nftables_ipvs is None:
        return marks
    for vs in config.virtual_servers:
        group = config.virtual_server_groups.get(vs.group or "")
        if group is None or any(e.fwmark for e in group.entries) or not group.entries:
            continue
        key = (group.name, vs.protocol.upper())
        if key not in marks:
            marks[key] = g.nftables_ipvs_start_fwmark + len(marks)
    return marks


def nft_ipvs_ruleset(config: Config) -> str:
    """The `nft -f -` input of nftables_ipvs: per family a table with a map per protocol from (address range .
    port) to the fwmark, and an input chain (before IPVS) that sets the mark from it, as keepalived's
    setup_rule_set_mark(). "" when no group uses it."""
    g = config.global_defs
    marks = nft_ipvs_marks(config)
    elements: Dict[Tuple[int, str], List[str]] = {}
    for (name, proto), mark in marks.items():
        vs = next(v for v in config.virtual_servers if v.group == name and v.protocol.upper() == proto)
        for e in config.virtual_server_groups[name].entries:
            if e.first is None:
                continue
            port = e.port if e.port is not None else (vs.port or 0)
            span = str(e.first) if e.last in (None, e.first) else f"{e.first}-{e.last}"
            elements.setdefault((e.family, proto.lower()), []).append(f"{span} . {port} : {mark}")
    out = []
    for family, ip, addr_type in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
        protos = sorted(p for f, p in elements if f == family)
        if not protos:
            continue
        out.append(f"table {ip} {g.nftables_ipvs} {{")
        for proto in protos:
            out.append(f"  map {proto}_map {{\n    type {addr_type} . inet_service : mark\n    flags interval\n"
                       f"    elements = {{ {', '.join(elements[(family, proto)])} }}\n  }}")
        out.append(f"  chain in {{\n    type filter hook input priority {g.nftables_ipvs_priority}; policy accept;")
        for proto in protos:
            out.append(f"    meta l4proto {proto} meta mark set {ip} daddr . {proto} dport map @{proto}_map counter "
                       "return")
        out.append("  }\n}")
    return "\n".join(out) + "\n" if out else ""


def lvs_service_keys(vs: VirtualServer, config: Config) -> List[IpvsServiceKey]:
    """The kernel services one virtual_server stands for (a group gives one per address or fwmark; with
    nftables_ipvs, one fwmark for all its addresses)."""
    proto = IPVS_PROTOCOLS.get(vs.protocol.upper(), socket.IPPROTO_TCP)

    def af_of(version: int) -> int:
        return socket.AF_INET6 if version == 6 else socket.AF_INET

    mark = nft_ipvs_marks(config).get((vs.group or "", vs.protocol.upper())) if vs.group else None
    if mark is not None:
        group = config.virtual_server_groups[vs.group or ""]
        return [IpvsServiceKey(af_of(v), fwmark=mark) for v in sorted({e.family for e in group.entries})]
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
    return IpvsService(key, vs.lb_algo, flags, timeout, netmask, vs.persistence_engine)


def _service_differs(want: IpvsService, have: IpvsService) -> bool:
    mask = ~IP_VS_SVC_F_HASHED
    return (want.sched_name, want.flags & mask, want.timeout, want.netmask) != (
        have.sched_name, have.flags & mask, have.timeout, have.netmask)


# -- checker I/O on the event loop -------------------------------------------------------------

SO_MARK, SO_BINDTODEVICE = getattr(socket, "SO_MARK", 36), getattr(socket, "SO_BINDTODEVICE", 25)


class _SocketSetupError(OSError):
    """A checker socket refused fwmark or bind_if; the attempt fails and the reason is logged already."""


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
        self.began = self.due
        self.latency: Optional[float] = None
        self.results = {True: 0, False: 0}  # checks that succeeded / failed
        self.attempt = 0
        self.stopped = False
        self.watching = 0  # bit 1: the socket is registered for reading, bit 2: for writing
        self.suspended = False
        ip = chk.connect_ip or rsr.key[0]
        self.target = (ip, chk.connect_port if chk.connect_port is not None else rsr.key[1])
        self.sockaddr = (str(ip), self.target[1])
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
            self._unwatch(False)
            self._unwatch(True)
            self.sock.close()
            self.sock = None

    def _attempt(self, token: int = -1) -> None:
        # a timer cancelled late can still fire: every callback checks it is for the current attempt
        if token not in (-1, self.attempt) or self.busy or self.stopped:
            return
        suspend = self.vs.ha_suspend and self.vs.address is not None and not _address_is_local(self.vs.address)
        if suspend != self.suspended:
            self.suspended = suspend
            log.info("%s healthchecker for service %s of VS %s", "Suspending" if suspend else "Activating",
                     self.name, _vs_name(self.vs))
        if suspend:  # ha_suspend: no checks while this node does not hold the virtual address
            self.due = self.loop.time() + self.params.delay_loop
            self.timer = self.loop.call_at(self.due, self._attempt, self.attempt)
            return
        self.attempt += 1
        self.timer = None
        self.busy = True
        self.began = self.loop.time()
        late = self.began - self.due
        self.manager.max_late = max(self.manager.max_late, late)
        if self.manager.late_samples is not None:
            self.manager.late_samples.append(late)
        try:
            self.begin()
        except _SocketSetupError:  # logged already, at every attempt (as keepalived does)
            self._done(False, "")
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
        self.latency = self.loop.time() - self.began  # seconds the check took (metrics)
        self.results[ok] += 1
        was_up = self.decision.up
        if not ok and reason and (was_up or self.chk.log_all_failures
                                  or self.manager.config.global_defs.checker_log_all_failures):
            log.info("%s", reason)
        change, when = self.decision.record(self.loop.time(), ok, weight)
        if change is False:
            log.info("%s on service %s failed after %d retries.", self._label(), self.name, self.params.retry)
        elif change is True:
            log.info("%s", self._success_line())
        if change is not None or (ok and weight != self.rsr.weight_seen.get(id(self))):
            self.rsr.weight_seen[id(self)] = weight
            self.manager._checker_changed(self.vsr, self.rsr, reason if change is False else "", self, change)
        self.due = when
        self.timer = self.loop.call_at(when, self._attempt, self.attempt)

    def _label(self) -> str:
        return {"HTTP_GET": "HTTP_CHECK", "SSL_GET": "SSL_CHECK"}.get(self.chk.kind, self.chk.kind)

    def _success_line(self) -> str:
        return f"{self._label()} on service {self.name} succeeded."

    def _watch(self, write: bool, fn: Callable[..., Any], *args: Any) -> None:
        """Call fn(*args) when the current socket is readable (or writable); stale events are dropped."""
        (self.loop.add_writer if write else self.loop.add_reader)(self.sock, self._io, self.sock, fn, args)
        self.watching |= 2 if write else 1

    def _unwatch(self, write: bool) -> None:
        bit = 2 if write else 1
        if self.watching & bit:  # (asking the loop to drop what it does not hold is not free)
            (self.loop.remove_writer if write else self.loop.remove_reader)(self.sock)
            self.watching &= ~bit

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

    def _mark_and_bind_device(self, sock: socket.socket) -> None:
        """fwmark (SO_MARK) and bind_if (SO_BINDTODEVICE) on a new checker socket, before bind() and connect(),
        as keepalived's socket_bind_connect(); a failure fails the attempt with keepalived's words."""
        if self.chk.fwmark:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.chk.fwmark)
            except OSError as exc:
                log.error("Error setting fwmark %d to socket: %s", self.chk.fwmark, exc.strerror)
                raise _SocketSetupError(exc.errno, exc.strerror) from None
        if self.chk.bind_if:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.chk.bind_if.encode() + b"\0")
            except OSError as exc:
                log.info("Checker can't bind to device %s: %s", self.chk.bind_if, exc.strerror)
                raise _SocketSetupError(exc.errno, exc.strerror) from None

    def _socket(self, kind: int) -> socket.socket:
        """The attempt's non-blocking socket (SOCK_STREAM or SOCK_DGRAM) of the target's family: marked, on
        bind_if, and bound to bindto/bind_port when they are given."""
        v6 = self.target[0].version == 6
        sock = self.sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind)
        self.watching = 0
        sock.setblocking(False)
        self._mark_and_bind_device(sock)
        if self.chk.bindto is not None or self.chk.bind_port:
            sock.bind((str(self.chk.bindto or ("::" if v6 else "0.0.0.0")), self.chk.bind_port or 0))
        return sock

    def _recv(self, size: int, failed: Callable[[OSError], str]) -> Optional[bytes]:
        """What the socket holds (b"" at its end); None while nothing came yet, and when the read failed:
        the attempt is then done, failed(exc) saying why."""
        assert self.sock is not None
        try:
            return self.sock.recv(size)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._done(False, failed(exc))
            return None

    # -- a non-blocking TCP connection shared by the stream checkers -----------------------
    def _connect(self, on_connected: Callable[[], Any]) -> None:
        sock = self._socket(socket.SOCK_STREAM)
        if self.chk.kind == "TCP_CHECK":
            # close with a reset: no FIN exchange and no TIME_WAIT left behind by every check
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        err = sock.connect_ex(self.sockaddr)
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
        ctx = self.manager.ssl_context()
        if ctx is None:
            self._done(False, f"SSL_CHECK on {self.name}: Error Initialize SSL, ctx Instance")
            return
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
        if self.chk.kind == "SSL_GET" and (self.chk.tls_compliant or self.url.tls_compliant):
            try:  # close_notify, as keepalived's SSL_shutdown() without quiet shutdown; not waiting for the peer's
                self.sock.unwrap()  # type: ignore[attr-defined]
            except (OSError, ValueError):
                pass
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
        data = self._recv(4096, lambda exc: f"SMTP connection to {self.name} failed ({exc}).")
        if data is None:
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
        self._socket(socket.SOCK_DGRAM)
        self.qid = int.from_bytes(os.urandom(2), "big")
        qname = b"".join(bytes([len(p)]) + p.encode() for p in self.chk.dns_name.strip(".").split(".") if p) + b"\0"
        query = struct.pack("!HHHHHH", self.qid, 0x0100, 1, 0, 0, 0) + qname
        query += struct.pack("!HH", self.TYPES.get(self.chk.dns_type.upper(), 6), 1)
        assert self.sock is not None
        self.sock.sendto(query, (str(ip), port or 53))
        self._deadline(self.params.connect_timeout)
        self._watch(False, self._read)

    def _read(self) -> None:
        data = self._recv(4096, lambda exc: f"DNS query to {self.name} failed ({exc}).")
        if data is None or len(data) < 12:
            return
        qid, flags, _qd, ancount = struct.unpack_from("!HHHH", data)
        if qid != self.qid or not flags & 0x8000:
            return
        if flags & 0xF or not ancount:
            self._done(False, f"DNS query to {self.name} failed (rcode {flags & 0xF}, {ancount} answers).")
        else:
            self._done(True)


class _BfdCheck(_CheckRunner):
    """BFD_CHECK: the real server is up while its bfd_instance's session is Up; the manager calls
    bfd_event() on every BFD event, so the real server follows the session at once."""

    def begin(self) -> None:
        up = self.manager.bfd_up(self.chk.bfd_name or "")
        if up != self.decision.up:
            log.info("BFD check of [%s] RS(%s) is %s", self.chk.bfd_name, self.name, "UP" if up else "DOWN")
        self._done(up, "")

    def bfd_event(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.due = self.loop.time()
        self._attempt(self.attempt)

    def _success_line(self) -> str:
        return f"=> BFD CHECK {self.chk.bfd_name} succeeded on service {self.name} <="

    def _label(self) -> str:
        return f"=> BFD CHECK {self.chk.bfd_name} failed"


UDP_CHECK_PAYLOAD = b"keepalived check - keepalived ch"  # keepalived's default: 32 bytes of this pattern
PING_CHECK_PAYLOAD = (b"keepalived check - " * 7)[:128]
IP_RECVERR, IPV6_RECVERR = 11, 25


class _UdpCheck(_CheckRunner):
    """UDP_CHECK: send the payload on a connected UDP socket. Without require_reply silence is success and an
    ICMP unreachable (IP_RECVERR) failure; with it a matching reply is needed."""

    def begin(self) -> None:
        v6 = self.target[0].version == 6
        sock = self._socket(socket.SOCK_DGRAM)  # (keepalived's UDP_CHECK has no bind_if: it is never set here)
        sock.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, IPV6_RECVERR if v6 else IP_RECVERR, 1)
        try:
            sock.connect(self.sockaddr)
            sock.send(self.chk.payload if self.chk.payload is not None else UDP_CHECK_PAYLOAD)
        except OSError:
            self._done(False, f"UDP connection to {self.name} failed.")
            return
        self._deadline(self.params.connect_timeout)
        self._watch(False, self._read)

    def _read(self) -> None:
        # a failed read is the ICMP destination unreachable the kernel reports on a connected socket
        data = self._recv(65535, lambda exc: f"UDP connection to {self.name} failed.")
        if data is None:
            return
        if udp_reply_ok(self.chk, data):
            self._done(True)
        else:
            self._done(False, f"UDP check to {self.name} reply data mismatch.")

    def _timeout(self, token: int) -> None:
        if token != self.attempt or not self.busy:
            return
        self.deadline = None
        if self.chk.require_reply:
            self._done(False, f"UDP connection to {self.name} failed.")
        else:
            self._done(True)  # keepalived: no answer and no ICMP error is a success

    def _success_line(self) -> str:
        return f"UDP connection to {self.name} success."


class _PingCheck(_CheckRunner):
    """PING_CHECK: an ICMP (or ICMPv6) echo request without a subprocess, on a ping socket (SOCK_DGRAM), or a
    raw socket where net.ipv4.ping_group_range does not allow that. Success: the echo reply with our sequence."""

    seq = 0

    def begin(self) -> None:
        ip = self.target[0]
        v6 = ip.version == 6
        family, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM, proto)
            self.raw = False
        except OSError:
            sock = socket.socket(family, socket.SOCK_RAW, proto)
            self.raw = True
        self.sock = sock
        self.watching = 0
        sock.setblocking(False)
        self.seq = self.seq % 0xFFFF + 1
        self.ident = int.from_bytes(os.urandom(2), "big")
        header = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, self.ident, self.seq)
        if self.raw and not v6:  # the kernel sums ping sockets and ICMPv6; raw ICMP is ours
            header = header[:2] + struct.pack("!H", inet_checksum(header + PING_CHECK_PAYLOAD)) + header[4:]
        if self.chk.bindto is not None:
            sock.bind((str(self.chk.bindto), 0))
        try:
            sock.connect((str(ip), 0))
            sock.send(header + PING_CHECK_PAYLOAD)
        except OSError:
            self._done(False, f"send {'ICMPv6' if v6 else 'ICMP'} packet fail")
            return
        self._deadline(self.params.connect_timeout)
        self._watch(False, self._read)

    def _read(self) -> None:
        v6 = self.target[0].version == 6
        what = "ICMPv6" if v6 else "ICMP"
        data = self._recv(65535, lambda exc: f"recv {what} packet error")
        if data is None:
            return
        if self.raw and not v6 and data:
            data = data[(data[0] & 0x0F) * 4:]  # raw IPv4 delivers the IP header
        if len(data) < 8:
            self._done(False, f"Error, got short {what} packet, {len(data)} bytes")
            return
        kind, _code, _sum, ident, seq = struct.unpack_from("!BBHHH", data)
        if self.raw and (kind in (8, 128) or ident != self.ident):
            return  # a raw socket sees every ICMP message from the address: not ours
        if kind != (129 if v6 else 0):
            self._done(False, f"Got {what} packet with type 0x{kind:x}")
        elif seq != self.seq:
            self._done(False, f"Ping reply expected seq no {self.seq}, received {seq}")
        else:
            self._done(True)

    def _timeout(self, token: int) -> None:
        if token != self.attempt or not self.busy:
            return
        self.deadline = None
        what = "ICMPv6" if self.target[0].version == 6 else "ICMP"
        self._done(False, f"{what} connection to address {self.name} timeout.")

    def _label(self) -> str:
        return "ICMP CHECK"

    def _success_line(self) -> str:
        return f"{'ICMPv6' if self.target[0].version == 6 else 'ICMP'} connection to {self.name} success."


class _FileCheck(_CheckRunner):
    """FILE_CHECK: the value of a track_file decides (weight 0) or moves the real server's weight."""

    def begin(self) -> None:
        tf = self.manager.config.track_files.get(self.chk.track_file or "")
        if tf is None:
            self._done(False, f"FILE_CHECK track_file {self.chk.track_file} is not defined")
            return
        try:
            with open(tf.path, "rb") as fh:
                text = fh.read(127).decode(errors="replace")
        except OSError:
            text = ""  # an absent file reads as 0
        value = parse_track_file_value(text)
        if value is None:
            log.info("Invalid number %s read from %s - ignoring", text.strip(), tf.path)
            self._done(self.decision.up, "", self.decision.weight)
            return
        weight = self.chk.file_weight if self.chk.file_weight is not None else tf.weight
        reverse = self.chk.file_weight_reverse if self.chk.file_weight is not None else tf.weight_reverse
        up, rs_weight = file_check_result(value, weight, reverse, self.rs.weight)
        if up != self.decision.up:
            log.debug("(%s): tracked file %s %s FAULT state", self.name, tf.name, "leaving" if up else "now")
        self._done(up, f"tracked file {tf.name} of {self.name} is {value}", rs_weight)

    def _success_line(self) -> str:
        return f"FILE_CHECK on service {self.name} succeeded."


_CHECK_RUNNERS = {"TCP_CHECK": _TcpCheck, "HTTP_GET": _HttpCheck, "SSL_GET": _HttpCheck,
                  "MISC_CHECK": _MiscCheck, "SMTP_CHECK": _SmtpCheck, "DNS_CHECK": _DnsCheck,
                  "BFD_CHECK": _BfdCheck, "UDP_CHECK": _UdpCheck, "PING_CHECK": _PingCheck,
                  "FILE_CHECK": _FileCheck}


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
        self.late_samples: Optional[List[float]] = None  # every check's lateness, when measuring
        self.spread = 0.0  # golden-ratio sequence of first-check offsets
        # BFD_CHECK: is a bfd_instance's session Up (for checkers); the Daemon connects it to TrackerRunner
        self.bfd_up: Callable[[str], bool] = lambda name: False
        # lvs_sync_daemon: the kernel's sync daemon states running (IP_VS_STATE_*), the VRRP states heard
        self.syncd: Optional[LvsSyncDaemon] = None
        self.syncd_states: set = set()
        self.syncd_nl: Optional[IpvsNetlink] = None
        self.vrrp_states: Dict[str, State] = {}
        self._ssl_ctx: Any = None  # SSL_GET's context once made (False: it could not be)
        self.nft_ipvs_tables: List[str] = []  # "ip NAME" / "ip6 NAME": the nftables_ipvs tables we made

    def ssl_context(self) -> Any:
        """The one client SSL context of SSL_GET (keepalived's build_ssl_ctx): the `SSL` block's certificate and key
        (with its password) and CA; no verification, as keepalived sets no verify mode. None if it cannot be made
        (logged once, as keepalived's "SSL error" lines)."""
        if self._ssl_ctx is not None:
            return self._ssl_ctx or None
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conf = self.config.ssl
        step = ""
        try:
            if conf is not None and conf.certificate:
                step = "certificate"
                ctx.load_cert_chain(conf.certificate, conf.key or None, conf.password)
            elif conf is not None and conf.key:
                log.warning("SSL: key without certificate - not used")
            if conf is not None and conf.ca:
                step = "CA"
                ctx.load_verify_locations(conf.ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("SSL error : Cant load %s file... (%s)", step, exc)
            log.error("Error Initialize SSL, ctx Instance")
            self._ssl_ctx = False
            return None
        self._ssl_ctx = ctx
        return ctx

    def bfd_event(self, name: str, up: bool) -> None:
        """A BFD session changed: its BFD_CHECK checkers decide again now."""
        for vsr in self.vs.values():
            for rsr in vsr.rs.values():
                for check in rsr.checkers:
                    if isinstance(check, _BfdCheck) and check.chk.bfd_name == name and not check.stopped:
                        check.bfd_event()

    def start(self) -> None:
        self._syncd_configure(self.config.global_defs.lvs_sync_daemon)
        if not self.config.virtual_servers:
            return
        try:
            if self.nl is None:
                self.nl = IpvsNetlink(self.config.global_defs.net_namespace_ipvs)
            self.kernel = {svc.key: svc for svc in self.nl.services()}
        except (OSError, VrrpdError) as exc:
            self.error = f"the kernel has no IPVS (is the ip_vs module available?): {exc}"
            log.error("LVS: %s; virtual servers are not programmed, VRRP keeps running", self.error)
            if self.nl is not None:
                self.nl.close()
                self.nl = None
            return
        if self.config.global_defs.lvs_flush:
            self._call(self.nl.genl_request, IPVS_CMD_FLUSH, b"")
            self.kernel = {}
        if self.config.global_defs.lvs_timeouts:
            self._call(self.nl.genl_request, IPVS_CMD_SET_CONFIG,
                       ipvs_timeouts_attrs(self.config.global_defs.lvs_timeouts))
        self._nft_ipvs(self.config)
        self._apply(self.config)

    def stop(self) -> None:
        for vsr in list(self.vs.values()):
            self._remove_vs(vsr, shutdown=True)
        self.vs = {}
        self._nft_ipvs(None)
        self._syncd_configure(None)
        if self.syncd_nl is not None:
            self.syncd_nl.close()
            self.syncd_nl = None
        if self.nl is not None:
            if self.config.global_defs.lvs_flush_on_stop:
                self._call(self.nl.genl_request, IPVS_CMD_FLUSH, b"")
            self.nl.close()
            self.nl = None

    def reload(self, config: Config) -> None:
        before = self.config.global_defs.net_namespace_ipvs
        if config.global_defs.net_namespace_ipvs != before:
            log.info("Cannot change IPVS network namespace at a reload - please restart %s", PROG)
            config.global_defs.net_namespace_ipvs = before
        self.config = config
        self._ssl_ctx = None  # the SSL block may have changed: made again at the next SSL_GET
        self._syncd_configure(config.global_defs.lvs_sync_daemon)
        if self.nl is None:
            self.error = None
            self.start()
            return
        try:
            self.kernel = {svc.key: svc for svc in self.nl.services()}
        except (OSError, VrrpdError) as exc:
            log.error("LVS: reading the kernel's IPVS table failed: %s", exc)
        self._nft_ipvs(config)
        self._apply(config)

    def status(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"error": self.error, "virtual_servers": []}
        for vsr in self.vs.values():
            out["virtual_servers"].append({
                "name": _vs_name(vsr.vs), "quorum_up": vsr.quorum_up,
                "real_servers": [{"address": str(k[0]), "port": k[1], "alive": r.alive, "weight": r.weight,
                                  "checkers": [{"kind": c.chk.kind, "up": c.decision.up, "last": c.last_result,
                                                "latency": c.latency, "ok_total": c.results[True],
                                                "failed_total": c.results[False]}
                                               for c in r.checkers]} for k, r in vsr.rs.items()],
            })
        return out

    # -- nftables_ipvs: the table that marks a group's traffic for its fwmark service ---------------
    def _nft_ipvs(self, config: Optional[Config]) -> None:
        """Replace our nftables_ipvs tables by what `config` asks (None: remove them), in one nft transaction."""
        ruleset = nft_ipvs_ruleset(config) if config is not None else ""
        old = self.nft_ipvs_tables
        new = sorted({line.split()[1] + " " + line.split()[2] for line in ruleset.splitlines()
                      if line.startswith("table ")})
        if not ruleset and not old:
            return
        script = "".join(f"add table {t}\ndelete table {t}\n" for t in sorted(set(old) | set(new))) + ruleset
        try:
            result = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=10,
                                    check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("nftables_ipvs: cannot run nft (%s); the groups' fwmark services get no traffic", exc)
            return
        if result.returncode != 0:
            log.error("nftables_ipvs: nft refused the ruleset: %s", result.stderr.strip())
            return
        self.nft_ipvs_tables = new

    # -- the IPVS connection sync daemon (keepalived's ipvs_syncd_cmd) ---------------------------
    def vrrp_state(self, name: str, state: State) -> None:
        """A VRRP instance entered `state`. The sync daemon of `lvs_sync_daemon IF inst NAME` follows it: the
        master daemon while NAME is MASTER, the backup daemon otherwise (keepalived's vrrp_state_become_master and
        vrrp_state_leave_master); at STOP it stops."""
        self.vrrp_states[name] = state
        if self.syncd is not None and self.syncd.instance == name:
            self._syncd_run(self._syncd_wanted())

    def _syncd_wanted(self) -> set:
        sd = self.syncd
        if sd is None:
            return set()
        if sd.instance is None:  # no instance: the checker process runs both, all the time
            return {IP_VS_STATE_MASTER, IP_VS_STATE_BACKUP}
        state = self.vrrp_states.get(sd.instance)
        if state is None or state == State.STOP:
            return set()
        return {IP_VS_STATE_MASTER if state == State.MASTER else IP_VS_STATE_BACKUP}

    def _syncd_configure(self, sd: Optional[LvsSyncDaemon]) -> None:
        """Start, change or stop the sync daemon as the configuration says (a reload that changes it restarts it)."""
        def where_from_left_out(x: Optional[LvsSyncDaemon]) -> Any:
            return None if x is None else dataclass_replace(x, file="", line=0)
        if where_from_left_out(sd) != where_from_left_out(self.syncd):
            self._syncd_run(set())
        self.syncd = sd
        self._syncd_run(self._syncd_wanted())

    def _syncd_run(self, wanted: set) -> None:
        if wanted == self.syncd_states:
            return
        nl = self.nl or self.syncd_nl
        if nl is None:
            try:
                nl = self.syncd_nl = IpvsNetlink(self.config.global_defs.net_namespace_ipvs)
            except (OSError, VrrpdError) as exc:
                log.error("LVS: the sync daemon cannot be started: the kernel has no IPVS (%s)", exc)
                self.syncd_states = set(wanted)  # said once
                return
        names = {IP_VS_STATE_MASTER: "master", IP_VS_STATE_BACKUP: "backup"}
        for state in sorted(self.syncd_states - wanted):
            try:
                nl.del_daemon(state)
                log.info("LVS: stopped the %s sync daemon", names[state])
            except (OSError, VrrpdError) as exc:
                log.info("IPVS cmd stop daemon (%s) error: %s", names[state], exc)
        for state in sorted(wanted - self.syncd_states):
            sd = self.syncd
            assert sd is not None
            try:
                nl.new_daemon(state, sd)
                log.info("LVS: started the %s sync daemon on %s, syncid %d", names[state], sd.ifname, sd.syncid or 0)
            except NetlinkError as exc:
                if exc.errno != errno.EEXIST:
                    log.error("IPVS cmd start daemon (%s) error: %s", names[state], exc)
                    continue
                log.info("LVS: the %s sync daemon was already running", names[state])
            except (OSError, VrrpdError) as exc:
                log.error("IPVS cmd start daemon (%s) error: %s", names[state], exc)
                continue
        self.syncd_states = set(wanted)

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
        for rs in vs.real_servers:
            key = (rs.address, rs.port if rs.port is not None else (vs.port or 0))
            previous = old.rs.pop(key, None) if old is not None else None
            # a real server whose checkers did not change keeps them, and their state (a reload must not
            # bring back a server that is down); weights, thresholds and notifies are read afresh
            if (previous is not None and previous.rs.checkers == rs.checkers
                    and all(checker_params(vs, rs, c.chk) == c.params for c in previous.checkers)):
                previous.rs = rs
                for c in previous.checkers:
                    c.vs, c.vsr, c.rs = vs, vsr, rs
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
                # spread the first checks evenly over (at most) a second, so that many real servers
                # do not fire together and then stay bunched up round after round
                self.spread = (self.spread + 0.6180339887) % 1.0
                first = self.spread * min(check.params.delay_loop, 1.0)
                check.start(check.params.warmup * random.random() if check.params.warmup else first)
            rsr.was_alive = rsr.alive
            if rsr.alive and self.config.global_defs.rs_init_notifies:
                self.notifier.real_server_notifies(vs, rs, True)  # keepalived: an RS up at start tells so
        for rsr in old.rs.values() if old is not None else []:
            for c in rsr.checkers:
                c.stop()

    def _checker_changed(self, vsr: _VsRuntime, rsr: _RsRuntime, reason: str, check: Optional[_CheckRunner] = None,
                         change: Optional[bool] = None) -> None:
        if self.vs.get(_vs_name(vsr.vs)) is not vsr:
            return
        alive = rsr.alive
        if alive == rsr.was_alive and change is not None and check is not None \
                and not self.config.global_defs.no_checker_emails:
            # a checker changed but its real server did not (another checker holds it down): keepalived mails it
            self.notifier.checker_mail(vsr.vs, rsr.rs, change, reason,
                                       f"{check._label()}#{rsr.checkers.index(check)}")
        if alive != rsr.was_alive:
            rsr.was_alive = alive
            inhibit = rsr.rs.inhibit_on_failure if rsr.rs.inhibit_on_failure is not None else vsr.vs.inhibit_on_failure
            verb = ("Enabling" if alive else "Disabling") if inhibit else ("Adding" if alive else "Removing")
            log.info("%s service %s %s VS %s", verb, _rs_name(vsr.vs, rsr.key), "to" if verb == "Adding" else
                     ("of" if inhibit else "from"), _vs_name(vsr.vs))
            self.notifier.checker(vsr.vs, rsr.rs, alive, reason)  # notify_up/notify_down, FIFO, mail
        self._sync(vsr)

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
            self.notifier.virtual_server_quorum(vs, change)  # quorum_up/quorum_down, FIFO, mail
        plan = lvs_desired_dests(vs, states, vsr.quorum_up)
        want: Dict[Tuple[IPAddress, int], IpvsDest] = {}
        for key, (weight, method, uthr, lthr) in plan.items():
            dest = IpvsDest(key[0], key[1], method.value, weight, uthr, lthr)
            rsr = vsr.rs.get(key)
            # a real server with its own lvs_method has its own tunnel; else the virtual server's (keepalived)
            tunnel: Any = rsr.rs if rsr is not None and rsr.rs.lb_kind is not None else vs
            if method == LbKind.TUN and tunnel.tunnel_type:
                dest.tun_type = IPVS_TUN_TYPES.get(tunnel.tunnel_type, 0)
                dest.tun_port = tunnel.tunnel_port or 0
                dest.tun_flags = IPVS_TUN_CSUM.get(tunnel.tunnel_csum or "nocsum", 0)
            want[key] = dest
        assert self.nl is not None
        for skey in vsr.keys:
            have = vsr.programmed.get(skey)
            if have is None:
                continue
            # keepalived's ipvs_cmd: a DR or TUN destination takes the service's port (0 for a fwmark service)
            here: Dict[Tuple[IPAddress, int], IpvsDest] = {}
            for dest in want.values():
                if dest.fwd_method != LbKind.NAT.value:
                    dest = dataclass_replace(dest, port=0 if skey.fwmark else skey.port)
                here[(dest.addr, dest.port)] = dest
            for dkey in [k for k in have if k not in here]:
                if self._call(self.nl.del_dest, skey, have[dkey]):
                    del have[dkey]
            for dkey, dest in here.items():
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
        if shutdown and vsr.vs.omega and vsr.quorum_up:
            self.notifier.virtual_server_quorum(vsr.vs, False)
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


# --------------------------------------------------------------------------------------------
# 7.3 Firewall and VMAC: strict mode's nftables table and the VMAC links
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


def no_accept_vips(config: Config) -> List[Any]:
    """Every VIP (and excluded VIP) of the instances that must not accept traffic to them; a link-local IPv6 one
    as (address, its interface)."""
    vips: List[Any] = []
    for inst in config.vrrp_instances:
        if not instance_accepts(inst, config.global_defs):
            for v in inst.virtual_ipaddress + inst.virtual_ipaddress_excluded:
                ip = v.address.ip
                vips.append((ip, v.dev or inst.interface or "") if ip.version == 6 and ip.is_link_local else ip)
    return vips


NETLINK_NETFILTER = 12
NFT_MSG_GETTABLE = (10 << 8) | 1  # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE
NFTA_TABLE_NAME = 1
NFPROTO_INET = 1


def nft_table_exists(table: str) -> Optional[bool]:
    """Whether nftables holds the table `inet <table>`, asked over netlink (no nft process, no fork at every
    start); None when the kernel cannot say."""
    try:
        nl = NetlinkSocket(NETLINK_NETFILTER, timeout=2.0)
    except OSError:
        return None
    try:
        nl.request(NFT_MSG_GETTABLE, NLM_F_ACK, struct.pack("!BBH", NFPROTO_INET, 0, 0)
                   + nla_pack_str(NFTA_TABLE_NAME, table))
        return True
    except NetlinkError as exc:
        return False if exc.errno == errno.ENOENT else None
    except OSError:
        return None
    finally:
        nl.close()


class StrictFirewall:
    """Our nftables table (`inet vrrpd`) for no_accept instances; keepalived 2.2 maps vrrp_iptables here too."""

    def __init__(self, table: str = NFT_TABLE, priority: int = -1, counters: bool = False, ifindex: bool = False):
        self.table, self.priority, self.counters, self.ifindex = table, priority, counters, ifindex
        self.active = False

    def _ruleset(self, vips: List[Any]) -> str:
        return nft_ruleset(vips, self.table, self.priority, self.counters, self.ifindex)

    def _nft(self, argv: List[str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10, check=False)

    def start(self, vips: List[IPAddress]) -> bool:
        """Remove a table left by a crashed run, then add ours if some VIP needs it; False on failure."""
        if not vips and nft_table_exists(self.table) is False:
            return True  # the common case: nothing to remove, nothing to add, and nft not run at all
        try:
            if self._nft(["nft", "list", "table", "inet", self.table]).returncode == 0:
                log.info("Deleting old inet %s table", self.table)
                self._nft(nft_delete_argv(self.table))
            if not vips:
                return True
            result = self._nft(["nft", "-f", "-"], self._ruleset(vips))
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

    def replace(self, vips: List[IPAddress]) -> bool:
        """Reload: swap the table for one with the new VIP set in one nft transaction (no gap)."""
        if not vips and not self.active:
            return True
        script = f"add table inet {self.table}\ndelete table inet {self.table}\n"
        script += self._ruleset(vips) if vips else ""
        try:
            result = self._nft(["nft", "-f", "-"], script)
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("no_accept: cannot run nft (%s)", exc)
            return False
        if result.returncode != 0:
            log.error("no_accept: nft refused the ruleset: %s", result.stderr.strip())
            return False
        self.active = bool(vips)
        return True

    def stop(self) -> None:
        if not self.active:
            return
        try:
            self._nft(nft_delete_argv(self.table))
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("cannot remove nftables table inet %s: %s", self.table, exc)
        self.active = False


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

    def __init__(self, rtnl: Optional[Rtnetlink] = None) -> None:
        self.created: Dict[str, int] = {}  # name -> ifindex
        self._saved_sysctls: Dict[str, str] = {}
        self._rtnl = rtnl

    @property
    def rtnl(self) -> Rtnetlink:
        if self._rtnl is None:
            self._rtnl = Rtnetlink()
        return self._rtnl

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
            self.rtnl.del_link(socket.if_nametoindex(name))
        self.rtnl.new_macvlan(name, socket.if_nametoindex(base), mac, self._vrf_of(base))
        index = socket.if_nametoindex(name)
        self.created[name] = index
        self.rtnl.set_addrgenmode(index)
        conf4 = "/proc/sys/net/ipv4/conf"
        # keepalived's settings: the VMAC must hear its peers and answer ARP only for its own VIPs;
        # the base interface must not answer ARP for the VIPs with its own MAC (arp_announce is ours).
        self._set_sysctl(f"{conf4}/{name}/arp_ignore", "1")
        self._set_sysctl(f"{conf4}/{name}/accept_local", "1")
        self._set_sysctl(f"{conf4}/{name}/rp_filter", "0")
        if family == 4:
            self._set_sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
            self._set_sysctl(f"{conf4}/{base}/arp_ignore", "1", restore=True)
            self._set_sysctl(f"{conf4}/{base}/arp_filter", "1", restore=True)
            # replies from a VIP leave through the base interface; its ARP requests must not carry the VIP
            # as sender, or neighbours would learn the base MAC for it
            self._set_sysctl(f"{conf4}/{base}/arp_announce", "2", restore=True)
        self.rtnl.set_link_up(index)
        log.info("use_vmac: created %s on %s with MAC %s", name, base, ":".join(f"{b:02x}" for b in mac))
        return index

    def _vrf_of(self, base: str) -> int:
        """The ifindex of the VRF `base` is enslaved to (its IFLA_MASTER, when that is a vrf), else 0."""
        links = self.rtnl.links()
        found = next((link for link in links.values() if link.name == base), None)
        master = links.get(found.master) if found is not None and found.master else None
        return master.index if master is not None and master.kind == "vrf" else 0

    def create_ipvlan(self, name: str, base: str, flags: int, family: int,
                      address: Optional[IPInterface] = None) -> int:
        """keepalived's use_ipvlan: L2 ipvlan `name` on `base` (in the base's VRF), up, IPv6 off for an IPv4
        instance, holding `address`; returns its ifindex. An existing interface of that name must be an ipvlan."""
        if os.path.exists(f"/sys/class/net/{name}"):
            raise VrrpdError(f"use_ipvlan: interface {name} already exists")
        self.rtnl.new_ipvlan(name, socket.if_nametoindex(base), flags, self._vrf_of(base))
        index = socket.if_nametoindex(name)
        self.created[name] = index
        if family == 4:
            self._set_sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
        self.rtnl.set_link_up(index)
        if address is not None:
            self.rtnl.add_address(index, VirtualIP(address))
        log.info("use_ipvlan: created %s on %s%s", name, base, f" with {address}" if address else "")
        return index

    def remove(self, index: int) -> None:
        """Delete one macvlan this manager created."""
        name = next((n for n, i in self.created.items() if i == index), None)
        if name is None:
            return
        try:
            self.rtnl.del_link(index)
            log.info("use_vmac: removed %s", name)
        except (OSError, NetlinkError) as exc:
            log.warning("use_vmac: cannot remove %s: %s", name, exc)
        del self.created[name]

    def remove_all(self) -> None:
        for index in list(self.created.values()):
            self.remove(index)
        for path, value in self._saved_sysctls.items():
            _write_sysctl(path, value)
        self._saved_sysctls.clear()


# --------------------------------------------------------------------------------------------
# 7.4 BFD sockets, and the sessions of section 6.3 run on the loop
#     One receive socket per family and port (3784, 4784 for multihop) reporting TTL and destination;
#     one sending socket per session, bound to a source port in 49152-65535 and sending TTL 255.
# --------------------------------------------------------------------------------------------

IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL_CMSG = 2  # IP_TTL, the control message IP_RECVTTL delivers
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


class BfdSocket:
    """The UDP socket receiving BFD control packets of one family on one port, with TTL and destination."""

    def __init__(self, family: int, port: int):
        self.family, self.port = family, port
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        sock = socket.socket(af, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == 4:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
            sock.bind(("0.0.0.0" if family == 4 else "::", port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def recv(self) -> Optional[Tuple[bytes, IPAddress, Optional[IPAddress], int]]:
        """One datagram as (payload, source, destination, TTL or hop limit; -1 unknown), or None."""
        try:
            data, ancillary, _flags, addr = self.sock.recvmsg(512, 128)
        except (BlockingIOError, InterruptedError):
            return None
        ttl, dst = -1, None
        for level, kind, value in ancillary:
            if level == socket.IPPROTO_IP and kind == IP_TTL_CMSG and len(value) >= 1:
                ttl = value[0] if len(value) < 4 else struct.unpack("=i", value[:4])[0]
            elif level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
                dst = ipaddress.IPv4Address(value[8:12])  # in_pktinfo: ifindex, spec_dst, addr
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
                ttl = struct.unpack("=i", value[:4])[0]
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
                dst = ipaddress.IPv6Address(value[:16])
        return data, ipaddress.ip_address(addr[0].split("%")[0]), dst, ttl

    def close(self) -> None:
        self.sock.close()


class BfdTxSocket:
    """A session's sending socket: source port 49152-65535, the same for the whole session (RFC 5881
    section 4), bound to source_ip when there is one; TTL/hop limit as configured (255: RFC 5881 section 5)."""

    def __init__(self, family: int, source: Optional[IPAddress], ttl: int):
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        sock = socket.socket(af, socket.SOCK_DGRAM)
        try:
            if family == 4:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xC0)  # network control, as FRR
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
            if source is not None:
                sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_FREEBIND", 15), 1)
            lo, hi = BFD_SOURCE_PORTS
            first = random.randint(lo, hi)
            host = str(source) if source is not None else ("0.0.0.0" if family == 4 else "::")
            for n in range(hi - lo + 1):
                port = lo + (first - lo + n) % (hi - lo + 1)
                try:
                    sock.bind((host, port))
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE or n > 512:
                        raise
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.port = sock.getsockname()[1]

    def send(self, packet: bytes, neighbor: IPAddress, port: int) -> None:
        self.sock.sendto(packet, (str(neighbor), port))

    def close(self) -> None:
        self.sock.close()


class _BfdRun:
    """One bfd_instance at run time: its session, sending socket and loop timer."""

    def __init__(self, bfd: BfdInstance, session: BfdSession):
        self.bfd = bfd
        self.session = session
        self.tx: Optional[BfdTxSocket] = None
        self.timer: Optional[Timer] = None
        self.up = False  # what trackers see: keepalived's events (AdminDown from the peer is no event)
        self.sent = 0
        self.retry: Optional[Timer] = None


class BfdDriver:
    """Runs every bfd_instance's BfdSession on the loop: sockets, timers, demultiplexing, TTL checks.

    `on_event(name, up)` is called when a session goes Up, or leaves Up for a reason other than the
    peer's AdminDown (keepalived's BFD events, RFC 5882). Bad packets are counted in `bad` and dropped."""

    def __init__(self, loop: EventLoop, on_event: Callable[[str, bool], Any]):
        self.loop = loop
        self.on_event = on_event
        self.runs: Dict[str, _BfdRun] = {}
        self.socks: Dict[Tuple[int, int], BfdSocket] = {}
        self.bad: Dict[str, int] = {}
        self.ratelimit = _RateLimit(schedule=loop.call_later)

    # -- configuration --------------------------------------------------------------------
    def configure(self, instances: Dict[str, BfdInstance]) -> None:
        """Start the sessions of `instances`; those whose definition did not change keep running."""
        def same(a: BfdInstance, b: BfdInstance) -> bool:
            return dataclass_replace(a, file="", line=0, weight=0, weight_reverse=False) == \
                dataclass_replace(b, file="", line=0, weight=0, weight_reverse=False)

        for name in list(self.runs):
            if name not in instances or not same(self.runs[name].bfd, instances[name]):
                self._remove(name)
        for name, bfd in instances.items():
            if name in self.runs:
                self.runs[name].bfd = bfd
                continue
            self._add(bfd)
        wanted = {(b.neighbor_ip.version, BFD_MULTIHOP_PORT if b.multihop else BFD_PORT)
                  for b in instances.values() if b.neighbor_ip is not None}
        for key in list(self.socks):
            if key not in wanted:
                self.loop.remove_reader(self.socks[key].sock)
                self.socks.pop(key).close()
        for key in wanted - set(self.socks):
            try:
                sock = self.socks[key] = BfdSocket(*key)
                self.loop.add_reader(sock.sock, self._on_readable, sock)
            except OSError as exc:
                log.error("BFD: cannot listen on %s port %d: %s", "IPv4" if key[0] == 4 else "IPv6", key[1], exc)

    def _add(self, bfd: BfdInstance) -> None:
        assert bfd.neighbor_ip is not None
        session = BfdSession(bfd.name, int(bfd.min_tx * 1000), int(bfd.min_rx * 1000), int(bfd.idle_tx * 1000),
                             bfd.multiplier, bfd.passive)
        run = self.runs[bfd.name] = _BfdRun(bfd, session)
        self._open(run)
        self._apply(run, session.start(self.loop.time()))

    def _open(self, run: _BfdRun) -> None:
        bfd = run.bfd
        run.retry = None
        try:
            run.tx = BfdTxSocket(bfd.neighbor_ip.version, bfd.source_ip, bfd.out_ttl)  # type: ignore[union-attr]
        except OSError as exc:
            # keepalived: AdminDown and a retry every 60 s
            log.error("(%s) BFD: cannot open the sending socket: %s; retrying in 60 s", bfd.name, exc)
            run.retry = self.loop.call_later(60.0, self._open, run)

    def _remove(self, name: str) -> None:
        run = self.runs.pop(name)
        self._apply(run, run.session.admin_down(self.loop.time()), quiet=True)
        for timer in (run.timer, run.retry):
            if timer is not None:
                timer.cancel()
        if run.tx is not None:
            run.tx.close()

    def stop(self) -> None:
        """Say AdminDown to every peer (so none counts it as a failure) and close the sockets."""
        for name in list(self.runs):
            self._remove(name)
        for sock in self.socks.values():
            self.loop.remove_reader(sock.sock)
            sock.close()
        self.socks.clear()

    # -- running --------------------------------------------------------------------------
    def _apply(self, run: _BfdRun, actions: List[BfdAction], quiet: bool = False) -> None:
        bfd = run.bfd
        for act in actions:
            if isinstance(act, BfdSend):
                if run.tx is None:
                    continue
                try:
                    run.tx.send(encode_bfd(act.packet), bfd.neighbor_ip,  # type: ignore[arg-type]
                                BFD_MULTIHOP_PORT if bfd.multihop else BFD_PORT)
                    run.sent += 1
                except OSError as exc:
                    self.ratelimit(("bfd_send", bfd.name), self.loop.time(),
                                   f"({bfd.name}) BFD: cannot send to {bfd.neighbor_ip}: {exc.strerror}")
            elif isinstance(act, BfdStateChange) and not quiet:
                self._state_changed(run, act)
        if run.bfd.name not in self.runs:
            return
        deadline = run.session.next_deadline()
        if run.timer is not None:
            if deadline is not None and run.timer.when == deadline and not run.timer.cancelled:
                return
            run.timer.cancel()
            run.timer = None
        if deadline is not None:
            run.timer = self.loop.call_at(deadline, self._on_timer, run)

    def _state_changed(self, run: _BfdRun, act: BfdStateChange) -> None:
        name, s = run.bfd.name, run.session
        if act.new == BfdState.Up:
            log.info("(%s) Entering Up state (tx %g ms, detect time %g ms)", name, s.tx_interval / 1000,
                     s.detection_time * 1000)
        else:
            if act.diag == BFD_DIAG_EXPIRED:
                log.info("(%s) Expired after %g ms", name, s.remote_mult * max(s.required_min_rx, s.remote_min_tx)
                         / 1000)
            log.info("(%s) Entering %s state (Local diagnostic - %s)", name, act.new.name,
                     BFD_DIAGNOSTICS[act.diag])
        up = act.new == BfdState.Up
        if up != run.up and (up or not act.peer_admin_down):
            run.up = up
            try:
                self.on_event(name, up)
            except Exception as exc:  # a listener's bug must not stop BFD
                log.exception("BFD event failed: %s", exc)

    def _on_timer(self, run: _BfdRun) -> None:
        run.timer = None
        self._apply(run, run.session.on_timer(self.loop.time()))

    def _drop(self, reason: str, message: str) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + 1
        self.ratelimit(("bfd", reason), self.loop.time(), f"BFD: {message}")

    def _on_readable(self, sock: BfdSocket) -> None:
        for _ in range(256):
            got = sock.recv()
            if got is None:
                return
            self.handle(sock.port, *got)

    def handle(self, port: int, data: bytes, src: IPAddress, dst: Optional[IPAddress], ttl: int) -> None:
        """One received datagram: decode, find its session, check the TTL (GTSM), hand it over."""
        try:
            pkt = decode_bfd(data)
        except PacketError as exc:
            self._drop(exc.reason, f"bad packet from {src}: {exc}")
            return
        multihop = port == BFD_MULTIHOP_PORT
        if pkt.your_disc:
            run = next((r for r in self.runs.values() if r.session.local_disc == pkt.your_disc), None)
        else:
            run = next((r for r in self.runs.values() if r.bfd.neighbor_ip == src and r.bfd.multihop == multihop
                        and (r.bfd.source_ip is None or dst is None or r.bfd.source_ip == dst)), None)
        if run is None:
            self._drop("bfd_no_session", f"no session for discriminator {pkt.your_disc} from {src}")
            return
        bfd = run.bfd
        if bfd.neighbor_ip != src or bfd.multihop != multihop:
            self._drop("bfd_spoofed", f"({bfd.name}) packet for our discriminator from {src}, not {bfd.neighbor_ip}")
            return
        if bfd.max_hops != 255 and ttl + bfd.max_hops < bfd.out_ttl:
            self._drop("bfd_ttl", f"({bfd.name}) invalid TTL {ttl} from {src}, expected {bfd.out_ttl - bfd.max_hops}"
                       f"{'' if bfd.max_hops == 0 else ' or more'}")
            return
        self._apply(run, run.session.on_packet(self.loop.time(), pkt))

    # -- queries --------------------------------------------------------------------------
    def is_up(self, name: str) -> bool:
        run = self.runs.get(name)
        return run is not None and run.up

    def status(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for name, run in self.runs.items():
            s = run.session
            out[name] = {"state": s.state.name, "neighbor": str(run.bfd.neighbor_ip),
                         "local_discriminator": s.local_disc, "remote_discriminator": s.remote_disc,
                         "remote_state": s.remote_state.name,
                         "tx_interval_ms": s.tx_interval / 1000, "detect_time_ms": s.detection_time * 1000,
                         "source_port": run.tx.port if run.tx is not None else None,
                         "received": s.received, "sent": run.sent}
        if self.bad:
            out["bad_packets"] = dict(self.bad)
        return out


# ============================================================================================
# 8. Event loop
# ============================================================================================


class Timer:
    """A callback scheduled on the EventLoop; cancel() is cheap (lazy removal from the heap).

    Timers due at the same moment run in the order they were set (`seq`): instances that fall due together
    (a MASTER re-arms at its deadline) keep their places in the batch, so each one's adverts stay evenly spaced.
    The heap holds (when, seq, timer): tuples compare in C, where a __lt__ of ours cost a Python call per step of
    every push and pop (eleven per advert with a thousand instances). An entry whose seq is no longer its timer's
    was left behind by EventLoop.call_again() and is skipped like a cancelled one."""

    __slots__ = ("when", "seq", "callback", "args", "cancelled")

    def __init__(self, when: float, seq: int, callback: Callable[..., Any], args: tuple):
        self.when = when
        self.seq = seq
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Child:
    """A child process started by EventLoop.spawn(); its exit is reported on the loop."""

    def __init__(self, pid: int, argv: List[str], on_exit: Optional[Callable[[Child], Any]]):
        self.pid = pid
        self.argv = argv
        self.on_exit = on_exit
        self.returncode: Optional[int] = None  # exit status, or -signal
        self.timed_out = False
        self.timer: Optional[Timer] = None
        self.pidfd: Optional[int] = None
        self.exec_error: Optional[str] = None  # why the exec failed (the child then exits with 127)

    def kill(self) -> None:
        """Kill the child's whole process group (scripts run in their own session)."""
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
                return
            except OSError:
                pass


_NOT_EPOLLIN, _NOT_EPOLLOUT = ~select.EPOLLIN, ~select.EPOLLOUT  # see EventLoop.run_once


class EventLoop:
    """One epoll loop with a timer heap, child processes and signals; nothing here blocks.

    Time is `time.monotonic()`. Thread-safe entry: call_soon_threadsafe()."""

    def __init__(self) -> None:
        self._epoll = select.epoll()  # the daemon is Linux's: epoll itself, without the selectors layer above it
        self._timers: List[Tuple[float, int, Timer]] = []  # a heap of (when, seq, timer), see Timer
        self._seq = 0  # the seq of the last timer set
        self._ready: List[Tuple[Callable[..., Any], tuple]] = []
        self._handlers: Dict[int, Tuple[Optional[tuple], Optional[tuple]]] = {}  # fd -> (reader, writer)
        self._lock = allocate_lock()
        self._running = False
        self._children: Dict[int, Child] = {}
        self._signal_handlers: Dict[int, Callable[[int], Any]] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.add_reader(self._wake_r, self._on_wakeup)
        self._old_wakeup_fd: Optional[int] = None
        self._poll_children_timer: Optional[Timer] = None
        self.woke = 0.0  # the clock when the loop last woke up: the timers served in one pass share it

    # -- time and timers ------------------------------------------------------------------
    time = staticmethod(time.monotonic)  # loop.time(): the clock itself, no Python frame around it (4 per advert)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        self._seq = seq = self._seq + 1
        timer = Timer(when, seq, callback, args)
        heapq.heappush(self._timers, (when, seq, timer))
        return timer

    def call_again(self, timer: Timer, when: float) -> Timer:
        """Set `timer` (one that has run, or is pending, or was cancelled) again for `when`, with its callback:
        a periodic timer re-armed from its own callback costs no new Timer. It takes its place behind the
        timers set before it, as a new one would; any earlier entry of it in the heap is left to be skipped."""
        self._seq = seq = self._seq + 1
        timer.when, timer.seq, timer.cancelled = when, seq, False
        heapq.heappush(self._timers, (when, seq, timer))
        return timer

    def _next_timer(self) -> Optional[Timer]:
        """The pending timer due first (cancelled and left-behind entries at the top are dropped), or None."""
        timers = self._timers
        while timers:
            _when, seq, timer = timers[0]
            if timer.seq == seq and not timer.cancelled:
                return timer
            heapq.heappop(timers)
        return None

    def pending_timers(self) -> List[Timer]:
        """Every timer still to run, in no particular order (for status and tests)."""
        return [timer for _when, seq, timer in self._timers if timer.seq == seq and not timer.cancelled]

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
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        known = self._handlers.get(fd)
        reader, writer = known if known is not None else (None, None)
        if event == selectors.EVENT_READ:
            reader = handler
        else:
            writer = handler
        mask = (select.EPOLLIN if reader else 0) | (select.EPOLLOUT if writer else 0)
        if known is None:
            if mask:
                self._epoll.register(fd, mask)
        elif mask:
            if mask != (select.EPOLLIN if known[0] else 0) | (select.EPOLLOUT if known[1] else 0):
                self._epoll.modify(fd, mask)  # (a new callback for the same events is no system call)
        else:
            try:
                self._epoll.unregister(fd)
            except OSError:  # closed already: the kernel dropped it from the epoll set by itself
                pass
        if mask:
            self._handlers[fd] = (reader, writer)
        else:
            self._handlers.pop(fd, None)

    # -- child processes ------------------------------------------------------------------
    def spawn(
        self,
        argv: List[str],
        on_exit: Optional[Callable[[Child], Any]] = None,
        timeout: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
        user: Optional[str] = None,
        group: Optional[str] = None,
        stdout: Any = None,
    ) -> Child:
        """Start argv in its own session; on_exit(child) runs on the loop when it ends. Its output goes to
        `stdout` (a file), by default nowhere.

        The loop does not wait for the exec: it forks and goes on (subprocess.Popen would read a pipe until the
        child has exec'd, and an exec held up by a slow file system held the whole loop, adverts and all, in the
        soak). A failed exec is logged when the loop hears of it and the child exits with 127.
        A child still running after `timeout` seconds is killed with its process group and
        reported with child.timed_out = True. Raises OSError if it cannot be started (no fork), KeyError for
        an unknown user or group."""
        ids = _user_group_ids(user, group)
        out = stdout.fileno() if stdout is not None else None
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = _fork_exec(argv, env, ids, out, err_w)
        finally:
            os.close(err_w)
        child = Child(pid, argv, on_exit)
        self.add_reader(err_r, self._exec_done, child, err_r)
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

    def _exec_done(self, child: Child, err_r: int) -> None:
        """The exec pipe of a child: closed by its exec, or the reason the exec failed."""
        try:
            why = os.read(err_r, 512)
        except OSError:
            why = b""
        self.remove_reader(err_r)
        os.close(err_r)
        if why:
            child.exec_error = why.decode(errors="replace")
            log.warning("cannot run %s: %s", child.argv[0], child.exec_error)

    def _child_timeout(self, child: Child) -> None:
        if child.returncode is None:
            # a loop held up (a stall, a long pass) runs this timer before it reads the exit the child already
            # made: that child finished, it did not time out (the soak saw a tracked script "time out" so)
            self._reap(child)
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
        head = self._timers[0] if self._timers else None  # (_next_timer() when the head is pending: no call)
        first = head[2] if head is not None and head[2].seq == head[1] and not head[2].cancelled \
            else self._next_timer()
        if self._ready:
            timeout = 0.0
        else:
            if first is not None:
                timeout = max(0.0, first.when - now)
            if until is not None:
                timeout = max(0.0, until - now) if timeout is None else min(timeout, max(0.0, until - now))
        fine = timeout is not None and timeout > 0.0
        if fine:
            # epoll counts whole milliseconds, rounded up, and the kernel lets any poll wake up to 0.1 % of its
            # timeout late (1 ms in a second): wake early by that much, then wait out the rest in microseconds
            timeout = max(0.0, int((timeout - timeout / 1000.0 - 0.001) * 1000) / 1000.0)
        if fine and timeout == 0.0 and first is not None:
            # due in less than 2 ms: no poll that could only time out; the fine wait says whether a descriptor
            # is ready (and then the poll of them takes no time), or runs out when the timer is due
            events = self._poll(0.0) if self._wait_fine(first.when if until is None else min(until, first.when)) \
                else []
        else:
            try:  # _poll(), inline: a wake-up per advert received
                events = self._epoll.poll(-1 if timeout is None else timeout, len(self._handlers) or 1)
            except InterruptedError:
                events = []
            if fine and not events and not self._ready and first is not None:
                if self._wait_fine(first.when if until is None else min(until, first.when)):
                    events = self._poll(0.0)
        self.woke = now = self.time()
        if self._ready:  # (call_soon_threadsafe appends under the lock, and then wakes the loop up)
            with self._lock:
                ready, self._ready = self._ready, []
        else:
            ready = []
        # Due timers first: an advert due now leaves before the next batch of a flooded socket is read (each
        # reader takes a bounded batch per pass). The timers due are those set before this pass that fall due by
        # `now`; each runs as soon as it leaves the heap (the first of a thousand due together does not wait for
        # the others to be sorted out), and one set during the pass waits for the next. Each handler is looked
        # up again just before it runs: an earlier callback of this same pass may have removed a reader (and
        # closed its socket) or cancelled a timer that had already fallen due.
        timers, last, later, heappop = self._timers, self._seq, [], heapq.heappop
        while timers and timers[0][0] <= now:
            entry = heappop(timers)
            timer = entry[2]
            if timer.seq != entry[1] or timer.cancelled:
                continue
            if entry[1] > last:
                later.append(entry)
                continue
            try:  # _call(), inline: a thousand timers due together make a thousand calls less
                timer.callback(*timer.args)
            except Exception as exc:  # one faulty callback must not stop the daemon
                self._failed(timer.callback, exc)
        for entry in later:
            heapq.heappush(timers, entry)
        handlers_of = self._handlers
        for fd, mask in events:
            # what selectors makes of epoll's bits: an error or hang-up wakes the reader and the writer
            if mask & _NOT_EPOLLOUT:
                handlers = handlers_of.get(fd)
                if handlers is not None and handlers[0] is not None:
                    callback, args = handlers[0]
                    try:
                        callback(*args)
                    except Exception as exc:  # one faulty callback must not stop the daemon
                        self._failed(callback, exc)
            if mask & _NOT_EPOLLIN:
                handlers = handlers_of.get(fd)
                if handlers is not None and handlers[1] is not None:
                    self._call(*handlers[1])
        for callback, args in ready:
            self._call(callback, args)

    def _poll(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        """(fd, epoll events) of the descriptors ready within `timeout` seconds (None: until one is)."""
        try:
            return self._epoll.poll(-1 if timeout is None else timeout, len(self._handlers) or 1)
        except InterruptedError:
            return []

    def _wait_fine(self, when: float) -> bool:
        """Wait, still woken by the loop's file descriptors, until `when`, at most a few ms away: select() on the
        epoll descriptor takes microseconds, and so short a timeout has only the timer slack (50 µs). True when a
        descriptor became ready (or may have: then a poll of them is worth its system call)."""
        remaining = when - self.time()
        if remaining <= 0.0:
            return True
        try:
            return bool(select.select([self._epoll.fileno()], [], [], remaining)[0])
        except (InterruptedError, ValueError, OSError):
            return True

    @staticmethod
    def _call(callback: Callable[..., Any], args: tuple) -> None:
        try:
            callback(*args)
        except Exception as exc:  # one faulty callback must not stop the daemon
            EventLoop._failed(callback, exc)

    @staticmethod
    def _failed(callback: Callable[..., Any], exc: Exception) -> None:
        log.exception("internal error in %s: %s", getattr(callback, "__qualname__", callback), exc)

    def close(self) -> None:
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        self._epoll.close()
        self._wake_r.close()
        self._wake_w.close()


def _user_group_ids(user: Optional[str], group: Optional[str]) -> Optional[Tuple[Optional[int], Optional[int]]]:
    """(uid, gid) a child drops to (names or numbers; the user's own group unless `group`), or None for no change."""
    if user is None and group is None:
        return None
    kwargs = _user_group_kwargs(user, group)
    return kwargs.get("user"), kwargs.get("group")


def _fork_exec(argv: List[str], env: Optional[Dict[str, str]], ids: Optional[Tuple[Optional[int], Optional[int]]],
               out: Optional[int], err_w: int) -> int:
    """Fork a child that execs argv in a session of its own, stdin and stderr on /dev/null and stdout on `out`
    (or /dev/null), with signals as a new program expects; return its pid at once. The child writes why its
    exec failed to `err_w` (close-on-exec, so an exec that works closes it) and exits with 127."""
    import warnings

    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        with warnings.catch_warnings():  # Python 3.12 warns of fork() in a process with threads: the child execs
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid:
            return pid
        try:  # the child: only system calls from here to the exec, no logging, no locks
            try:
                signal.set_wakeup_fd(-1)  # a signal before the exec must not reach the daemon's loop
            except ValueError:
                pass  # not the main thread: it has none
            for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                           signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.setsid()
            os.dup2(null, 0, inheritable=True)
            os.dup2(null if out is None else out, 1, inheritable=True)
            os.dup2(null, 2, inheritable=True)
            os.closerange(3, err_w)
            os.closerange(err_w + 1, 1 << 20)
            if ids is not None:
                uid, gid = ids
                if uid is not None:
                    os.setgroups([])
                if gid is not None:
                    os.setregid(gid, gid)
                if uid is not None:
                    os.setreuid(uid, uid)
            if env is None:
                os.execvp(argv[0], argv)
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:  # noqa: BLE001 - whatever it is, the child must not return into the daemon
            try:
                os.write(err_w, str(exc).encode(errors="replace")[:500] or b"exec failed")
            finally:
                os._exit(127)
        os._exit(127)
    finally:
        os.close(null)


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

# the notify_<state> field of an instance or sync group, by state: one string each, as CPython's type attribute
# cache keeps the name it was asked with (a name built per transition left up to 4,096 strings there)
_NOTIFY_FIELD = {state: f"notify_{state.value.lower()}" for state in State}
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
    to = ", ".join(global_defs.notification_email)  # keepalived 2.2.7's form (later ones fold the line)
    return (f"Date: {date}\r\nFrom: {global_defs.notification_email_from}\r\nSubject: {subject}\r\n"
            f"X-Mailer: Keepalived\r\nTo: {to}\r\n\r\n{body}\r\n\r\n")


class SmtpAlerter:
    """Sends alert mails from one worker thread with a queue; retries; never touches the loop.

    HELO (not EHLO) with smtp_helo_name or "localhost", MAIL FROM, RCPT TO each recipient, DATA;
    every socket operation is bounded by smtp_connect_timeout (0 means 1 s, as keepalived)."""

    attempts = 3
    retry_delay = 5.0  # seconds before the 2nd attempt; doubled for each further one
    max_pending = 100  # a server that never answers must not make alerts pile up without end

    def __init__(self, global_defs: GlobalDefs):
        self.global_defs = global_defs
        self._queue: Any = None  # a queue.Queue once the first alert is submitted
        self._thread: Optional[threading.Thread] = None
        self._closing: Any = None  # a threading.Event once the first alert is submitted
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def configured(self) -> bool:
        return bool(self.global_defs.notification_email and self.global_defs.smtp_server)

    def submit(self, subject: str, body: str) -> None:
        """Queue one mail; returns at once."""
        if not self.configured:
            return
        if self._closing is None:
            self._closing = threading.Event()
        if self._closing.is_set():
            return
        if self._queue is None:
            try:
                for name in SMTP_MODULES:
                    need_module(name, "smtp_server")
            except MissingModuleError as exc:
                self._closing.set()
                log.error("SMTP: %s; no e-mail alert will be sent", exc)
                return
            self._queue = sys.modules["queue"].Queue()
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name="vrrpd-smtp", daemon=True)
            self._thread.start()
        if self._queue.qsize() >= self.max_pending:
            self.dropped += 1
            if self.dropped % 100 == 1:
                log.error("SMTP: %d alerts wait for %s:%d already; dropping '%s' (%d dropped so far)",
                          self._queue.qsize(), self.global_defs.smtp_server, self.global_defs.smtp_port,
                          subject, self.dropped)
            return
        self._queue.put((subject, smtp_message(self.global_defs, subject, body)))

    def pending(self) -> int:
        return self._queue.unfinished_tasks if self._queue is not None else 0

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
      checker(vs, rs, up, reason)            a real server went up/down (LVS): FIFO line and mail
      close(timeout)                         flush what can be flushed within timeout seconds
    Also: vrrp_priority_change(inst, state, priority) for the FIFO's MASTER_PRIORITY/BACKUP_PRIORITY
    lines (vrrp_notify_priority_changes), vrrp_deleted(inst, priority) for an instance a reload
    removed, and virtual_server_quorum(vs, up, body) for LVS quorum changes."""

    def __init__(self, loop: EventLoop, config: Config):
        self.loop = loop
        self.config = config
        gd = config.global_defs
        self.mailer = SmtpAlerter(gd)
        self._queues: Dict[str, List[Tuple[Command, List[str], str]]] = {}
        self._running: Dict[str, Child] = {}
        self._last_mail: Dict[str, Any] = {}
        self.scripts_run = 0
        self.vrrp_fifos: List[NotifyFifo] = []
        self.lvs_fifos: List[NotifyFifo] = []
        self._fifo_readers: List[Child] = []
        self._open_fifos(gd)

    def _open_fifos(self, gd: GlobalDefs) -> None:
        """notify_fifo gets every line, vrrp_notify_fifo the VRRP ones, lvs_notify_fifo the LVS ones."""
        fifos = {p: NotifyFifo(p) for p in (gd.notify_fifo, gd.vrrp_notify_fifo, gd.lvs_notify_fifo) if p}
        self.vrrp_fifos = [fifos[p] for p in dict.fromkeys((gd.notify_fifo, gd.vrrp_notify_fifo)) if p]
        self.lvs_fifos = [fifos[p] for p in dict.fromkeys((gd.notify_fifo, gd.lvs_notify_fifo)) if p]
        # notify_fifo_script & co: a reader of each FIFO, started with the FIFO's path as its last word
        for path, cmd in ((gd.notify_fifo, gd.notify_fifo_script), (gd.vrrp_notify_fifo, gd.vrrp_notify_fifo_script),
                          (gd.lvs_notify_fifo, gd.lvs_notify_fifo_script)):
            if path and cmd is not None and fifos[path]._open():
                user, group = (cmd.user, cmd.group) if cmd.user is not None else default_script_user(gd)
                try:
                    self._fifo_readers.append(self.loop.spawn(script_argv(cmd) + [path], env=script_environment(),
                                                              user=user, group=group))
                except (OSError, KeyError, ValueError) as exc:
                    log.warning("cannot run the FIFO script %s: %s", cmd.raw, exc)

    def _stop_fifo_readers(self) -> None:
        for child in self._fifo_readers:
            child.on_exit = None
            child.kill()
        self._fifo_readers = []

    def reload(self, config: Config) -> None:
        """Take a new configuration (SIGHUP): queued scripts still run, mail settings apply to the
        next mail, the last mailed states are kept (no repeated mails), and the FIFOs are reopened
        only if their paths changed."""
        old, gd = self.config.global_defs, config.global_defs
        self.config = config
        self.mailer.global_defs = gd
        paths = ("notify_fifo", "vrrp_notify_fifo", "lvs_notify_fifo", "notify_fifo_script", "vrrp_notify_fifo_script",
                 "lvs_notify_fifo_script")
        if any(getattr(old, p) != getattr(gd, p) for p in paths):
            self._stop_fifo_readers()
            for fifo in set(self.vrrp_fifos + self.lvs_fifos):
                fifo.close()
            self._open_fifos(gd)

    # -- the contract ---------------------------------------------------------------------
    def vrrp_instance(self, inst: VrrpInstance, state: State, priority: int) -> None:
        """Instance `inst` entered `state`: notify_<state>, then notify ... INSTANCE, FIFO, mail."""
        self._vrrp_news("INSTANCE", inst.name, state, priority, getattr(inst, _NOTIFY_FIELD[state], None),
                        inst.notify, inst.smtp_alert, _VRRP_MAIL.get(state))

    def vrrp_states_on_reload(self, states: List[Tuple[VrrpInstance, State, int]],
                              groups: List[Dict[str, Any]]) -> None:
        """fifo_write_vrrp_states_on_reload: every sync group's and instance's current state, to the FIFO only."""
        for group in groups:
            self._fifo(self.vrrp_fifos, notify_fifo_line("GROUP", group["name"], group["state"], 0))
        for inst, state, priority in states:
            self._fifo(self.vrrp_fifos, notify_fifo_line("INSTANCE", inst.name, state.value, priority))

    def vrrp_deleted(self, inst: VrrpInstance, priority: int) -> None:
        """A reload removed `inst`: notify_deleted and `notify ... DELETED` if notify_deleted is set,
        otherwise a FAULT notification, as keepalived does for compatibility."""
        if inst.notify_deleted is None:
            self.vrrp_instance(inst, State.FAULT, priority)
            return
        self._vrrp_news("INSTANCE", inst.name, "DELETED", priority, inst.notify_deleted, inst.notify, inst.smtp_alert,
                        ("Deleted", "=> VRRP Deleted at reload <="))

    def vrrp_group(self, group: SyncGroup, state: State) -> None:
        """Sync group `group` entered `state` (groups report priority 0, as keepalived)."""
        self._vrrp_news("GROUP", group.name, state, 0, getattr(group, _NOTIFY_FIELD[state], None),
                        group.notify, group.smtp_alert, _GROUP_MAIL.get(state))

    def _vrrp_news(self, kind: str, name: str, state: Union[State, str], priority: int, specific: Optional[Command],
                   notify: Optional[Command], smtp_alert: Optional[bool], mail: Optional[Tuple[str, str]]) -> None:
        """What an instance's or group's news sets going: the state's own script, `notify KIND NAME STATE
        PRIORITY`, the FIFO line and, with smtp_alert, the mail (subject, body)."""
        key, what = f"{kind} {name}", state.value if isinstance(state, State) else state
        if specific is not None:
            self._queue(key, specific, [])
        if notify is not None:
            self._queue(key, notify, [kind, name, what, str(priority)])
        self._fifo(self.vrrp_fifos, notify_fifo_line(kind, name, what, priority))
        gd = self.config.global_defs
        if mail is not None and smtp_alert_wanted(smtp_alert, gd.smtp_alert_vrrp, gd.smtp_alert):
            self._mail(key, state, f"[{gd.router_id}] VRRP {kind.title()} {name} - {mail[0]}", mail[1])

    def vrrp_master_rx_lower_pri(self, inst: VrrpInstance, priority: int) -> None:
        """The MASTER received a lower-priority advert: notify_master_rx_lower_pri and the FIFO."""
        if inst.notify_master_rx_lower_pri is not None:
            self._queue(f"INSTANCE {inst.name}", inst.notify_master_rx_lower_pri, [])
        self._fifo(self.vrrp_fifos, notify_fifo_line("INSTANCE", inst.name, "MASTER_RX_LOWER_PRI", priority))

    def vrrp_priority_change(self, inst: VrrpInstance, state: State, priority: int) -> None:
        """The effective priority changed: a FIFO line if notify_priority_changes is set for the instance, else for
        its sync group, else globally (vrrp_notify_priority_changes)."""
        wanted = inst.notify_priority_changes
        if wanted is None:
            group = next((g for g in self.config.sync_groups if inst.name in g.group), None)
            wanted = group.notify_priority_changes if group is not None else None
        if wanted if wanted is not None else self.config.global_defs.vrrp_notify_priority_changes:
            kind = "MASTER_PRIORITY" if state == State.MASTER else "BACKUP_PRIORITY"
            self._fifo(self.vrrp_fifos, notify_fifo_line("INSTANCE", inst.name, kind, priority))

    def checker(self, vs: VirtualServer, rs: RealServer, up: bool, reason: str = "") -> None:
        """Real server `rs` of `vs` went up or down: its notify_up/notify_down, the FIFO `RS ...` line and the mail."""
        self.real_server_notifies(vs, rs, up)
        self.checker_mail(vs, rs, up, reason)

    def real_server_notifies(self, vs: VirtualServer, rs: RealServer, up: bool) -> None:
        """keepalived's do_rs_notifies(): notify_up or notify_down, and the FIFO `RS ...` line (no mail)."""
        rs_name, vs_name = format_real_server(vs, rs), format_virtual_server(vs)
        cmd = rs.notify_up if up else rs.notify_down
        if cmd is not None:
            self._queue(f"RS {rs_name} {vs_name}", cmd, [])
        self._fifo(self.lvs_fifos, f"RS {rs_name} {vs_name} {'UP' if up else 'DOWN'}\n")

    def checker_mail(self, vs: VirtualServer, rs: RealServer, up: bool, reason: str = "", checker: str = "") -> None:
        """The mail of a checker of `rs` that went up or down (`checker` names it when the real server itself did
        not change: keepalived mails each checker's change unless no_checker_emails)."""
        rs_name, vs_name = format_real_server(vs, rs), format_virtual_server(vs)
        key = f"RS {rs_name} {vs_name}" + (f" {checker}" if checker else "")
        word = "UP" if up else "DOWN"
        gd = self.config.global_defs
        if smtp_alert_wanted(rs.smtp_alert, gd.smtp_alert_checker, gd.smtp_alert, default=True):
            if reason.startswith("=>"):
                body = reason
            elif reason == "shutdown":  # omega: real servers reported down as the daemon stops
                body = "=> Shutting down <="
            elif up:
                body = "=> CHECK succeed on service <="
            else:
                body = f"=> CHECK failed on service : {reason} <=" if reason else "=> CHECK failed on service <="
            self._mail(key, up, f"[{gd.router_id}] Realserver {rs_name} of virtual server {vs_name} - {word}", body)

    def virtual_server_quorum(self, vs: VirtualServer, up: bool, body: str = "") -> None:
        """A virtual server gained (up) or lost its quorum: quorum_up/quorum_down, the FIFO `VS ...` line and
        the mail."""
        vs_name = format_virtual_server(vs)
        key = f"VS {vs_name}"
        word = "UP" if up else "DOWN"
        cmd = vs.quorum_up if up else vs.quorum_down
        if cmd is not None:
            self._queue(key, cmd, [])
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
        self._stop_fifo_readers()
        for fifo in set(self.vrrp_fifos + self.lvs_fifos):
            fifo.close()

    def status(self) -> Dict[str, Any]:
        return {"scripts_run": self.scripts_run, "scripts_queued": sum(len(q) for q in self._queues.values()),
                "scripts_running": sorted(self._running), "mail_sent": self.mailer.sent,
                "mail_failed": self.mailer.failed, "mail_queued": self.mailer.pending(),
                "fifo_dropped": sum(f.dropped for f in set(self.vrrp_fifos + self.lvs_fifos))}

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

class _RateLimit:
    """Log a repeated complaint at most once per `period` seconds per key, with the count suppressed.

    With `schedule` (the loop's call_later) a storm is summarised when its window closes, even if no
    further packet comes: one line at the start, then one `(N more like this in 5 s)` line per window."""

    def __init__(self, period: float = 5.0, schedule: Optional[Callable[..., Any]] = None):
        self.period = period
        self.schedule = schedule
        self.last: Dict[Any, Tuple[float, int]] = {}
        self.pending: Dict[Any, Tuple[str, int]] = {}  # key -> (latest message, level) awaiting a summary

    def __call__(self, key: Any, now: float, message: str, level: int = WARNING) -> None:
        last, suppressed = self.last.get(key, (-1e18, 0))
        if now - last >= self.period:
            if suppressed:
                message += f" ({suppressed} more suppressed)"
            log.log(level, message)
            self.last[key] = (now, 0)
        else:
            self.last[key] = (last, suppressed + 1)
            if self.schedule is not None:
                if key not in self.pending:
                    self.schedule(max(0.0, last + self.period - now), self._summarise, key)
                self.pending[key] = (message, level)

    def _summarise(self, key: Any) -> None:
        message, level = self.pending.pop(key)
        last, suppressed = self.last.get(key, (0.0, 0))
        if suppressed:
            log.log(level, f"{message} ({suppressed} more like this in {self.period:g} s)")
            # the summary opens a new window: a storm that goes on gets one line per period
            self.last[key] = (last + self.period, 0)


RX_BATCH = 64  # packets read from one socket per wake-up of the loop, before due timers run again
# A socket readable again within RX_PAUSE of the pass that emptied it is flooded: it is then read every RX_PAUSE
# (its reader off the loop in between) rather than once per packet, each wake-up of the loop costing more than
# rejecting a packet. Adverts keep their kernel receive time, and a due Master_Down_Timer reads the socket anyway.
RX_PAUSE = 0.002
# Adverts sent back to back at most, and the time between such groups. A group of 8 leaves in about 60 µs;
# one of 32 took 0.2-0.5 ms, and a preemption inside it made the rest of the group late in that round only
# (two uneven intervals each). Each group costs a wake-up of the loop, the most of what a group of 8 costs.
ADVERT_BURST, ADVERT_GAP = 8, 0.002
# A wake-up of the loop this much after a deadline is a stall (the machine did not run the daemon): the
# instances it serves count their next advert from it, one long interval rather than a long and a short one.
# Below it (a wake-up here is typically 0.05-0.2 ms late) they keep to their deadlines.
STALL = 0.0005
TRANSITION_HISTORY = 10  # transitions kept per instance for --status, --json, --events and the metrics
# What a thousand instances would each hold a copy of, held once (a few hundred bytes an instance):
_NO_COUNTS: Dict[str, int] = type(type.__dict__)({})  # types.MappingProxyType: an empty read-only dict
_REASON_KEYS: Dict[Tuple[str, str], Tuple[str, str]] = {}  # the (state, reason) keys of InstanceRuntime.reasons
_TRANSITION_FIELDS = 6  # InstanceRuntime.recent: time, from, to, reason, detail, priority
_GROUP_TARGETS: Dict[IPAddress, List[Tuple[IPAddress, int]]] = {}  # a multicast group's InstanceRuntime.targets


def instance_family(inst: VrrpInstance) -> int:
    """4 or 6: `native_ipv6` makes an instance IPv6 even without IPv6 VIPs (keepalived), else its first VIP."""
    return 6 if inst.native_ipv6 else inst.family


def startup_delay(g: GlobalDefs, uptime: Optional[float] = None) -> float:
    """vrrp_startup_delay, or what is left of vrrp_delay_after_boot since boot (/proc/uptime), whichever is longer."""
    after_boot = 0.0
    if g.vrrp_delay_after_boot > 0:
        if uptime is None:
            try:
                with open("/proc/uptime") as f:
                    uptime = float(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                uptime = 0.0
        after_boot = g.vrrp_delay_after_boot - uptime
    return max(g.vrrp_startup_delay, after_boot, 0.0)


class InstanceRuntime:
    """One configured vrrp_instance at run time, either family: its machine, interface, sockets, timers
    and counters."""

    __slots__ = ("inst", "machine", "family", "ifindex", "vmac_index", "vsock", "xmit", "ah", "src",
                 "targets", "timer", "garp_timers", "checksum_as_v2", "packets", "adverts_sent",
                 "adverts_received", "bad_packets", "entered_since_clear", "released_master",
                 "last_notified", "priority_zero_sent", "priority_zero_received", "backlog_wait", "routes_set",
                 "rules_set", "hmac", "logged", "recent", "older_reasons", "rx_memo", "old_checksum")

    def __init__(self, inst: VrrpInstance, machine: VrrpMachine):
        self.inst = inst
        self.machine = machine
        self.family = instance_family(inst)
        self.ifindex = 0
        self.vmac_index = 0  # use_vmac: the macvlan the VIPs go on
        self.vsock: Optional[VrrpSocket] = None  # receives; sends too unless `xmit`
        self.xmit: Optional[VrrpSocket] = None  # use_vmac without vmac_xmit_base: sends from the VMAC
        self.ah: Optional[AhSequence] = None  # auth_type AH: the sequence counter, shared by both directions
        self.src: Optional[IPAddress] = None
        # (address, ttl) of each advert; the list of a multicast group is one list shared by its instances
        self.targets: List[Tuple[IPAddress, int]] = ()  # type: ignore[assignment]
        self.timer: Optional[Timer] = None
        self.garp_timers: Tuple[Timer, ...] = ()  # pending GARP delay/refresh/extra_if timers
        self.checksum_as_v2 = False
        # old_unicast_checksum: a unicast IPv4 VRRPv3 instance sums with the multicast group (True), or switches
        # to that when a peer does (None: keepalived's default), or never does (False)
        self.old_checksum: Optional[bool] = False
        # (priority, source, socket, [(packet, destination)]): the adverts last encoded, sent again while none
        # of the three changes
        self.packets: Optional[Tuple[Any, ...]] = None  # (priority, source, socket, packet, destination, ...)
        self.adverts_sent = 0
        self.adverts_received = 0
        self.bad_packets: Dict[str, int] = _NO_COUNTS  # reason -> dropped adverts (a dict from the first)
        # state name -> times entered since the stats were last cleared (None: never cleared, see `entered`)
        self.entered_since_clear: Optional[Dict[str, int]] = None
        self.released_master = 0
        self.last_notified: Optional[State] = None
        self.priority_zero_sent = 0
        self.priority_zero_received = 0
        # (Master_Down_Timer, since): a due master-down timeout waiting for the adverts still queued in the kernel
        self.backlog_wait: Optional[Tuple[float, float]] = None
        self.routes_set: Tuple[Route, ...] = ()  # virtual_routes / virtual_rules this instance installed
        self.rules_set: Tuple[Rule, ...] = ()
        self.hmac: Optional[AuthHmac] = None  # auth_hmac: keys, send sequence, anti-replay marks
        self.logged: Tuple[str, ...] = ()  # bad-advert classes logged since the last MASTER change (RFC 9568)
        # the last TRANSITION_HISTORY transitions, oldest first, one flat tuple (no tuple per transition):
        # time, from, to, reason, detail, priority, time, from...
        self.recent: Tuple[Any, ...] = ()
        # the transitions `recent` no longer holds, counted: (state entered, reason), times, (state, reason)...
        self.older_reasons: Tuple[Any, ...] = ()
        # (payload, src, dst, ttl, advert, address mismatch, old_checksum) of the last advert accepted (Daemon._receive)
        self.rx_memo: Optional[Tuple[bytes, Any, Any, int, VrrpAdvert, bool, Optional[bool]]] = None

    @property
    def version(self) -> int:
        """The VRRP version its machine speaks."""
        return self.machine.version

    @property
    def unicast(self) -> bool:
        """Adverts go to unicast_peer, not to the multicast group."""
        return bool(self.inst.unicast_peer)

    @property
    def vips(self) -> List[VirtualIP]:
        return self.inst.virtual_ipaddress + self.inst.virtual_ipaddress_excluded

    @property
    def history(self) -> List[Dict[str, Any]]:
        """The recent transitions as the event stream told them (kept as tuples: a dict each would cost 1 KB
        an instance)."""
        name = self.inst.name
        return [{"type": "transition", "time": when, "instance": name, "from": old, "to": new, "reason": reason,
                 "detail": detail, "priority": priority} for when, old, new, reason, detail, priority in
                zip(*[iter(self.recent)] * _TRANSITION_FIELDS)]

    @property
    def reasons(self) -> Dict[Tuple[str, str], int]:
        """(state entered, reason) -> times, in the order first seen: the older transitions', then the recent."""
        older, recent = self.older_reasons, self.recent
        counts = dict(zip(older[::2], older[1::2]))
        for i in range(2, len(recent), _TRANSITION_FIELDS):
            key = recent[i:i + 2]
            counts[key] = counts.get(key, 0) + 1
        return counts

    def record_transition(self, entry: Tuple[Any, ...]) -> None:
        """Keep `entry` (time, from, to, reason, detail, priority); the one it pushes out of the history is
        counted in older_reasons (an instance that changed state less often than that keeps no counts)."""
        recent = self.recent + entry
        if len(recent) > TRANSITION_HISTORY * _TRANSITION_FIELDS:
            self._count_older(recent[2:4])
            recent = recent[_TRANSITION_FIELDS:]
        self.recent = recent

    def _count_older(self, reason: Tuple[str, str]) -> None:
        key = _REASON_KEYS.setdefault(reason, reason)  # one tuple per (state, reason) for all instances
        counts = self.older_reasons
        for i in range(0, len(counts), 2):
            if counts[i] == key:
                self.older_reasons = counts[:i + 1] + (counts[i + 1] + 1,) + counts[i + 2:]
                return
        self.older_reasons = counts + (key, 1)

    @property
    def transitions(self) -> int:
        """State changes since the start, or since the stats were last cleared: `entered` summed."""
        return sum(self.entered.values())

    @property
    def entered(self) -> Dict[str, int]:
        """State name -> times entered (SIGUSR2 stats): `reasons` summed by state, until the stats are cleared."""
        if self.entered_since_clear is not None:
            return self.entered_since_clear
        counts: Dict[str, int] = {}
        for (state, _reason), n in self.reasons.items():
            counts[state] = counts.get(state, 0) + n
        return counts


class Daemon:
    """Wires the configuration to the VRRP machines, the kernel edge, tracking, notification and LVS.

    run() returns the exit status once stop() (SIGTERM/SIGINT) has finished."""

    def __init__(self, config: Config, loop: Optional[EventLoop] = None, config_path: Optional[str] = None,
                 kernel: Optional[Kernel] = None):
        self.config = config
        self.config_path = config_path or (config.files[0] if config.files else None)
        self.loop = loop or EventLoop()
        self.kernel = kernel or Kernel()
        self.g = config.global_defs
        self.runtimes: List[InstanceRuntime] = []
        self._on_instance_timer = self._on_timer  # the callback of every instance's Timer (see _arm)
        # (ifname, family) -> VRID -> the instances that receive for it: a key per interface and family, not one
        # per instance, and a tuple of the few members (mostly one)
        self.by_vrid: Dict[Tuple[str, int], Dict[int, Tuple[InstanceRuntime, ...]]] = {}
        self.own_sources: set = set()
        self._vip_addresses: set = set()  # every VIP of every instance: never an advert source
        self.vsocks: Dict[Tuple[str, int, int], VrrpSocket] = {}  # (ifname, family, protocol)
        self._burst = (0.0, 0)  # (deadline, adverts sent at it): see _spread()
        self._rx_drained: Dict[int, float] = {}  # id(vsock) -> when a pass last emptied it (RX_PAUSE)
        self._rx_paused: Dict[int, Timer] = {}  # id(vsock) -> the timer that watches it again
        self.announcers: Dict[str, Announcer] = {}
        self.links: Dict[int, LinkInfo] = {}
        self.addrs: List[AddrInfo] = []
        self.rtnl: Optional[Rtnetlink] = None
        self.monitor: Optional[RtnetlinkMonitor] = None
        self.static_set: Tuple[List[VirtualIP], List[Route], List[Rule]] = ([], [], [])  # what we installed
        self._promoted: set = set()  # interfaces whose promote_secondaries we turned on
        self.ratelimit = _RateLimit(schedule=self.loop.call_later)
        self._pending_logs: List[str] = []
        self.stopping = False
        self.startup_pending = False  # within vrrp_startup_delay / vrrp_delay_after_boot: machines wait in INIT
        self._shutting_down_all = False
        self.finished = False
        self.exit_code = 0
        self.started = time.time()
        self.notifier = Notifier(self.loop, config)
        self.tracking = TrackerRunner(self.loop, config, self._on_tracking_change)
        self.lvs = LvsManager(self.loop, config, self.notifier)
        self.lvs.bfd_up = self.tracking.bfd_up_for_checker
        self.tracking.bfd_listeners.append(self.lvs.bfd_event)
        # keepalived's `nftables NAME` names the no_accept table (ours is `vrrpd` by default); nftables_priority
        # and nftables_counters shape its chains and rules as they do keepalived's
        self.firewall = self.kernel.firewall(self.g.nftables or NFT_TABLE, self.g.nftables_priority,
                                             self.g.nftables_counters, self.g.nftables_ifindex)
        self.vmacs: Optional[VmacManager] = None
        self._igmp_restore: Optional[str] = None  # disable_local_igmp: the value to put back at stop
        # interface_up_down_delays: a carrier change waiting out its delay, by ifindex: (timer, the new LinkInfo)
        self._link_pending: Dict[int, Tuple[Timer, LinkInfo]] = {}
        self._seen_up: set = set()  # interfaces seen up once: only their changes are delayed (keepalived)
        # keepalived's garp_delay: the earliest time of the next GARP (4) / NA (6) on each interface's group
        self._garp_next: Dict[Tuple[Any, int], float] = {}
        self._vmac_base: Dict[str, str] = {}  # a VMAC or ipvlan we made -> its interface
        # linkbeat: polled interface -> (kind asked, carrier up as last polled); their netlink carrier is ignored
        self._linkbeat: Dict[str, Tuple[str, Optional[bool]]] = {}
        self._linkbeat_timer: Optional[Timer] = None
        self._garp_queue: Dict[Tuple[Any, int], List[Tuple[InstanceRuntime, Tuple[str, bytes, IPAddress]]]] = {}
        self.vmac_index: Dict[str, int] = {}  # instance -> its VMAC's ifindex
        # use_vmac_addr / a VIP's use_vmac: (base interface, family, VRID) -> (the VMAC's name, ifindex)
        self.addr_vmacs: Dict[Tuple[str, int, int], Tuple[str, int]] = {}
        self.sync_groups: Dict[str, Tuple[SyncGroup, SyncGroupEngine]] = {}
        self.group_of: Dict[str, str] = {}  # instance -> its sync group
        self._syncing = False
        # who follows the event stream (transitions with their reason, priority changes): the control socket
        self.event_sinks: List[Callable[[Dict[str, Any]], None]] = []

    # -- start and stop ------------------------------------------------------------------------
    def start(self) -> None:
        log.info("Starting %s v%s", PROG, __version__)
        self.monitor = self.kernel.monitor()
        self.loop.add_reader(self.monitor.sock, self._on_netlink)
        self.rtnl = self.kernel.rtnetlink()
        g = self.g
        set_netlink_rcvbuf(getattr(self.monitor, "sock", None), g.vrrp_netlink_monitor_rcv_bufs,
                           g.vrrp_netlink_monitor_rcv_bufs_force, "monitor")
        set_netlink_rcvbuf(getattr(self.rtnl, "sock", None), g.vrrp_netlink_cmd_rcv_bufs,
                           g.vrrp_netlink_cmd_rcv_bufs_force, "command")
        self.links = self.rtnl.links()
        self._seen_up.update(link.name for link in self.links.values() if link.up)
        self.addrs = [a for a in self.rtnl.addresses() if a.usable]
        self.vmacs = self.kernel.vmacs(self.rtnl)
        self.firewall.start(no_accept_vips(self.config))
        if self.g.disable_local_igmp:
            # keepalived's set_disable_local_igmp: no IGMP reports for 224.0.0.X (VRRP's group) while we run;
            # set at start only (not on reload), put back at stop if we changed it
            old = self.kernel.igmp_link_local_reports("0")
            if old is None:
                log.info("Unable to set %s", Kernel.IGMP_LINK_LOCAL_REPORTS)
            self._igmp_restore = old if old == "1" else None
        self._set_sync_groups(self.config)
        self._set_vmacs(self.config)
        for inst in self.config.vrrp_instances:
            try:
                self._add_instance(inst)
            except (OSError, ValueError) as exc:
                log.error("(%s) cannot start: %s", inst.name, exc)
        if self.config.vrrp_instances and not self.runtimes and not self.config.virtual_servers:
            raise OSError(errno.EPERM,
                          "no vrrp_instance could start (vrrpd needs root, or CAP_NET_ADMIN and CAP_NET_RAW)")
        self._update_rx_filters()
        self._remove_stale_vips()
        self._start_static()
        self._set_linkbeat()
        self.tracking.start()
        self.lvs.start()
        delay = startup_delay(self.g)
        if delay > 0:
            # keepalived 2.4: no MASTER and no GARP before the delay is over, whatever the trackers say
            log.info("Delaying startup for %g seconds", delay)
            self.startup_pending = True
            self.loop.call_later(delay, self._start_machines)
        else:
            self._start_machines()
        log.info("Startup complete")
        sd_notify("READY=1")
        # what start-up built lives as long as the daemon: keep the cyclic GC from rescanning it (pauses)
        gc.collect()
        gc.freeze()

    def _remove_stale_vips(self) -> None:
        """VIPs already on our interfaces at start were left by a predecessor killed without clean-up
        (kill -9): remove them, as keepalived does, or a BACKUP would answer ARP for the master's VIP."""
        assert self.rtnl is not None
        present = {(a.index, a.address.ip) for a in self.addrs}
        for rt in self.runtimes:
            if rt.inst.priority == 255:
                continue  # the address owner's VIPs are its own addresses
            for vip in rt.vips:
                index = self._vip_index(rt, vip)
                if vip.address.ip == rt.src or (index, vip.address.ip) not in present:
                    continue
                log.warning("(%s) removing VIP %s left on the interface by an earlier run", rt.inst.name, vip.address)
                try:
                    self.rtnl.del_address(index, vip)
                except (NetlinkError, OSError) as exc:
                    log.error("(%s) cannot remove VIP %s: %s", rt.inst.name, vip.address, exc)

    def _start_machines(self) -> None:
        self.startup_pending = False
        if self.stopping:
            return
        now = self.loop.time()
        for rt in self.runtimes:
            if rt.machine.state != State.INIT:
                continue
            delta, fault = self._adjustment(rt)
            self._apply(rt, rt.machine.set_effective_priority(now, rt.inst.priority + delta))
            self._apply(rt, rt.machine.start(now, fault=fault))

    def _make_machine(self, inst: VrrpInstance, version: int) -> VrrpMachine:
        g = self.g
        pick = (lambda own, glob: glob if own is None else own)  # noqa: E731
        # vrrp_strict's run-time rules (keepalived): a MASTER hearing a lower priority stays silent, no GARPs
        strict = bool(pick(inst.strict_mode, g.vrrp_strict))
        ah = version == 2 and inst.auth_type == AuthType.AH
        start_master = inst.state == State.MASTER
        if ah and start_master and inst.priority != 255:
            # keepalived: a new master must first hear the current AH sequence number
            log.warning("(%s) Initial state master is incompatible with AH authentication - clearing", inst.name)
            start_master = False
        return VrrpMachine(
            inst.name, inst.virtual_router_id, inst.priority, inst.advert_int, version,
            addresses=[v.address.ip for v in inst.virtual_ipaddress],  # excluded VIPs are not advertised
            auth_type=inst.auth_type if version == 2 else AuthType.NONE,
            auth_pass=inst.auth_pass,
            start_master=start_master,
            preempt=not inst.nopreempt,
            preempt_delay=inst.preempt_delay,
            lower_prio_no_advert=strict or bool(pick(inst.lower_prio_no_advert, g.vrrp_lower_prio_no_advert)),
            garp_lower_prio_repeat=0 if strict else int(pick(inst.garp_lower_prio_repeat,
                                                             pick(g.vrrp_garp_lower_prio_repeat,
                                                                  g.vrrp_garp_master_repeat))),
            skip_check_adv_addr=bool(pick(inst.skip_check_adv_addr, g.vrrp_skip_check_adv_addr)),
            higher_prio_send_advert=bool(pick(inst.higher_prio_send_advert, g.vrrp_higher_prio_send_advert)),
            owner_ignore_adverts=bool(inst.owner_ignore_adverts) and inst.priority == 255,
            timer_expired_backup=inst.timer_expired_backup if inst.nopreempt else None,
            down_timer_adverts=int(pick(inst.down_timer_adverts, g.vrrp_down_timer_adverts)),
        )

    def _version(self, inst: VrrpInstance) -> int:
        if instance_family(inst) == 6:
            return 3  # keepalived: IPv6 is VRRPv3
        return inst.version or self.g.vrrp_version

    def _add_instance(self, inst: VrrpInstance) -> InstanceRuntime:
        g = self.g
        version = self._version(inst)
        machine = self._make_machine(inst, version)
        rt = InstanceRuntime(inst, machine)
        rt.checksum_as_v2 = bool(g.v3_checksum_as_v2 if inst.v3_checksum_as_v2 is None else inst.v3_checksum_as_v2)
        if rt.unicast and version == 3 and rt.family == 4:
            rt.old_checksum = {"config": True, "never": False}.get(inst.old_unicast_checksum or "")
        self._attach_hmac(rt)
        if inst.interface is None:
            raise ValueError("no interface")
        if self._link_by_name(inst.interface) is None:
            log.error("(%s) interface %s doesn't exist - FAULT until it is created", inst.name, inst.interface)
        if inst.unicast_fault_no_peer and not inst.unicast_peer:
            log.error("(%s) Cannot use unicast without any peers - going to fault state", inst.name)
        if self._ipvlan_unaddressed(inst):
            log.error("(%s) IPv4 ipvlan requires a source ip address to be configured. setting instance to fault "
                      "state", inst.name)
        self._attach_interface(rt)
        self._vip_addresses.update(v.address.ip for v in rt.vips)
        self._attach(rt)
        self.runtimes.append(rt)
        if rt.src is not None:
            self.own_sources.add(rt.src)
        return rt

    def _vrrp_socket(self, link: LinkInfo, family: int, protocol: int) -> VrrpSocket:
        """The interface's VRRP (or AH) socket of that family, opened on first use and shared."""
        key = (link.name, family, protocol)
        vsock = self.vsocks.get(key)
        if vsock is None:
            vsock = self.vsocks[key] = self.kernel.vrrp_socket(family, link.name, link.index, protocol)
            self.loop.add_reader(vsock.sock, self._on_vrrp_readable, vsock)
        return vsock

    def _attach(self, rt: InstanceRuntime) -> None:
        """Targets, source address, the VMAC and its sending socket, the AH socket: at start and after a reload
        (what is still wanted is kept, the AH sequence number too)."""
        inst = rt.inst
        rt.rx_memo = None  # the receive checks' settings may have changed
        self._set_targets(rt)
        rt.vmac_index = self.vmac_index.get(inst.name, 0)
        if rt.xmit is not None and (not rt.vmac_index or inst.vmac_xmit_base or rt.xmit.ifindex != rt.vmac_index):
            rt.xmit.close()
            rt.xmit = None
        if rt.vmac_index and not inst.vmac_xmit_base and rt.xmit is None:
            try:
                rt.xmit = self.kernel.vrrp_socket(rt.family, vmac_ifname(inst.virtual_router_id, inst.vmac_name,
                                                                         self.g.vmac_prefix), rt.vmac_index)
                rt.xmit.receive_nothing()  # nobody reads it: its queue would only fill
            except OSError as exc:
                log.error("(%s) cannot send from the VMAC: %s", inst.name, exc)
        if not (rt.version == 2 and inst.auth_type == AuthType.AH):
            rt.ah = None
        elif rt.vsock is not None:
            link = self.links.get(rt.ifindex)
            if link is not None:
                ahsock = self._vrrp_socket(link, 4, IPPROTO_AH)
                for group in rt.vsock.groups:
                    ahsock.join(group)
            rt.ah = rt.ah or AhSequence()
    def _attach_interface(self, rt: InstanceRuntime) -> bool:
        """Open (or share) the VRRP socket of the instance's family on its interface, if the interface exists
        now; True if it does."""
        link = self._link_by_name(rt.inst.interface or "")
        if link is None:
            return False
        rt.ifindex = link.index
        rt.vsock = self._vrrp_socket(link, rt.family, IPPROTO_VRRP)
        vrids = self.by_vrid.setdefault((link.name, rt.family), {})
        members = vrids.get(rt.inst.virtual_router_id, ())
        if rt not in members:
            vrids[rt.inst.virtual_router_id] = members + (rt,)
        self._interface_settings(rt, rt.vsock.sock)
        return True

    def _interface_settings(self, rt: InstanceRuntime, sock: socket.socket) -> None:
        """kernel_rx_buf_size (added to the receive buffer of the socket the instances share) and
        promote_secondaries (net.ipv4.conf.IF.promote_secondaries=1, put back at exit if we set it)."""
        inst = rt.inst
        if self._rx_buf_share(rt):
            sharing = [r for r in self.runtimes if r is not rt] + [rt]
            extra = sum(self._rx_buf_share(r) for r in sharing if r.inst.interface == inst.interface
                        and instance_family(r.inst) == instance_family(inst))
            try:
                sock.setsockopt(socket.SOL_SOCKET, 33, (1 << 20) + extra)  # SO_RCVBUFFORCE
                log.info("(%s) receive buffer on %s is now %d bytes (kernel_rx_buf_size)", inst.name, inst.interface,
                         sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
            except OSError as exc:
                log.warning("(%s) kernel_rx_buf_size: %s", inst.name, exc)
        if inst.promote_secondaries and instance_family(inst) == 4 and inst.interface:
            path = f"/proc/sys/net/ipv4/conf/{inst.interface}/promote_secondaries"
            if _read_sysctl(path) == "0" and _write_sysctl(path, "1"):
                self._promoted.add(inst.interface)

    def _detach_interface(self, rt: InstanceRuntime) -> None:
        """The instance's interface was deleted: close its sockets (bound to the old interface index)."""
        rt.ifindex = 0
        rt.vsock = None
        self._leave_vrid(rt)
        self._close_unused_sockets()
        if rt.inst.unicast_src_ip is None and rt.inst.mcast_src_ip is None:
            rt.src = None
            rt.machine.set_primary_ip(None)

    def _leave_vrid(self, rt: InstanceRuntime) -> None:
        """The instance no longer receives the adverts of its VRID (by_vrid)."""
        for vrids in self.by_vrid.values():
            for vrid, members in vrids.items():
                if rt in members:
                    vrids[vrid] = tuple(r for r in members if r is not rt)

    def _close_unused_sockets(self) -> None:
        for key, vsock in list(self.vsocks.items()):
            users = [r for r in self.runtimes if r.vsock is not None and r.vsock.ifname == key[0]
                     and r.family == key[1] and (key[2] == IPPROTO_VRRP or r.ah is not None)]
            if not users:
                self.loop.remove_reader(vsock.sock)
                paused = self._rx_paused.pop(id(vsock), None)
                if paused is not None:
                    paused.cancel()
                self._rx_drained.pop(id(vsock), None)
                vsock.close()
                del self.vsocks[key]

    def _follow_interfaces(self) -> bool:
        """After link events: attach instances whose interface appeared (or was re-created with a new index),
        detach those whose interface went. True when something changed."""
        changed = False
        for rt in self.runtimes:
            link = self._link_by_name(rt.inst.interface) if rt.inst.interface else None
            index = link.index if link is not None else 0
            if index == rt.ifindex:
                continue
            changed = True
            if rt.ifindex:
                log.warning("(%s) interface %s was deleted - FAULT until it is created again", rt.inst.name,
                            rt.inst.interface)
                self._detach_interface(rt)
            if index:
                try:
                    if self._attach_interface(rt):
                        log.info("(%s) interface %s appeared (index %d)", rt.inst.name, rt.inst.interface, index)
                        self._attach(rt)
                except OSError as exc:
                    log.error("(%s) cannot open a socket on %s: %s", rt.inst.name, rt.inst.interface, exc)
        if changed:
            self._update_own_sources()
            self._update_rx_filters()  # a socket opened on an interface that appeared
        return changed


    @staticmethod
    def _attach_hmac(rt: InstanceRuntime) -> None:
        """auth_hmac's engine for the instance; a reload keeps its sequence and anti-replay marks."""
        ah = rt.inst.auth_hmac
        if ah is None:
            rt.hmac = None
            return
        window = ah.time_window or min(300, max(5, int(3 * rt.machine.advert_int)))
        old = rt.hmac
        rt.hmac = AuthHmac(ah.keys, ah.active_key, ah.mode, ah.anti_replay, window)
        if old is not None:
            rt.hmac.last_seq, rt.hmac.marks = old.last_seq, old.marks

    def hmac_trailer(self, rt: InstanceRuntime, pdu: bytes) -> bytes:
        """The auth_hmac trailer for an advert about to be sent (b'' when the instance sends none)."""
        if rt.hmac is None or not rt.hmac.sends or rt.src is None:
            return b""
        return rt.hmac.sign(pdu, rt.src, rt.version, rt.machine.vrid, time.time_ns())

    def hmac_receive(self, rt: InstanceRuntime, msg: bytes, src: IPAddress, unicast: bool) -> Optional[bytes]:
        """keepalived's auth_hmac receive check: the advert without its trailer, or None to drop it
        (counted, logged rate-limited; nothing else changes). Runs after the TTL and before the PDU checks."""
        ah, name = rt.hmac, rt.inst.name
        if ah is None or len(msg) < VRRP_HEADER_LEN or msg[0] >> 4 != rt.version:
            return msg  # a version mismatch is the decoder's to report
        if unicast and not any(p.address == src for p in rt.inst.unicast_peer):
            self._bad(rt, "unknown_peer", f"({name}) unicast source address {src} not a unicast peer")
            return None
        pdu, trailer = auth_hmac_split(msg, 4 if src.version == 4 else 16)
        if trailer is None:
            if ah.requires:
                self._bad(rt, HMAC_MISSING, f"({name}) missing authentication trailer from {src}")
                return None
            return pdu
        reason, text = ah.verify(pdu, trailer, src, rt.version, rt.machine.vrid, time.time_ns(), lru=not unicast)
        if reason is not None:
            self._bad(rt, reason, f"({name}) {text}")
            return None
        if text:
            self.ratelimit(("hmac_skew", name), self.loop.time(), f"({name}) {text}")
        return pdu

    def _set_targets(self, rt: InstanceRuntime) -> None:
        """Where adverts go (the family's multicast group, or each unicast_peer of the family) and from which
        source address."""
        inst, g = rt.inst, self.g
        if rt.unicast:
            ttl = inst.unicast_ttl if rt.family == 4 else VRRP_TTL
            rt.targets = [(p.address, ttl) for p in inst.unicast_peer if p.address.version == rt.family]
        else:
            group: IPAddress = g.vrrp_mcast_group4 if rt.family == 4 else g.vrrp_mcast_group6
            if inst.mcast_dst_ip is not None and inst.mcast_dst_ip.version == rt.family:
                group = inst.mcast_dst_ip
            rt.targets = _GROUP_TARGETS.setdefault(group, [(group, VRRP_TTL)])  # never changed in place
            if rt.vsock is not None:
                rt.vsock.join(group)
        rt.src = self._source_address(rt)
        rt.machine.set_primary_ip(rt.src)

    # -- sync groups, VMACs (keepalived's vrrp_sync.c and vrrp_vmac.c) -----------------------------
    def _set_sync_groups(self, config: Config) -> None:
        """The sync groups of `config`; one that keeps its members keeps its engine (and state) on reload."""
        names = {inst.name for inst in config.vrrp_instances}
        old, self.sync_groups, self.group_of = self.sync_groups, {}, {}
        for sg in config.sync_groups:
            members = [m for m in sg.group if m in names and m not in self.group_of]
            if not members:
                continue
            kept = old.get(sg.name)
            engine = kept[1] if kept is not None and kept[1].members == members else SyncGroupEngine(sg.name, members)
            self.sync_groups[sg.name] = (sg, engine)
            self.group_of.update({m: sg.name for m in members})

    def _set_vmacs(self, config: Config) -> None:
        """Create the VMACs `config` wants and remove those it no longer wants, before instances attach."""
        assert self.vmacs is not None
        wanted = {inst.name: inst for inst in config.vrrp_instances
                  if (inst.use_vmac or inst.use_ipvlan) and inst.interface}
        before = dict(self.vmac_index)
        for name, index in before.items():
            if name not in wanted:
                self.vmacs.remove(index)
                del self.vmac_index[name]
        for name, inst in wanted.items():
            if name in self.vmac_index:
                continue
            ifname = vmac_ifname(inst.virtual_router_id, inst.vmac_name, self.g.vmac_prefix)
            try:
                if inst.use_ipvlan:
                    self.vmac_index[name] = self.vmacs.create_ipvlan(ifname, inst.interface or "", inst.ipvlan_flags,
                                                                     instance_family(inst), inst.ipvlan_addr)
                    continue
                self.vmac_index[name] = self.vmacs.create(ifname, inst.interface or "", inst.virtual_router_id,
                                                          instance_family(inst))
            except (OSError, VrrpdError) as exc:
                log.error("(%s) use_vmac: cannot create %s: %s", name, ifname, exc)
        addr_before = dict(self.addr_vmacs)
        self._set_addr_vmacs(config)
        # keepalived's IF_BASE_IFP: a VMAC's gratuitous ARPs are paced with its interface's
        self._vmac_base = {vmac_ifname(inst.virtual_router_id, inst.vmac_name, self.g.vmac_prefix): inst.interface or ""
                           for inst in wanted.values()}
        self._vmac_base.update({vname: key[0] for key, (vname, _index) in self.addr_vmacs.items()})
        if (self.vmac_index != before or self.addr_vmacs != addr_before) and self.rtnl is not None:
            self.links = self.rtnl.links()

    def _set_addr_vmacs(self, config: Config) -> None:
        """The VMACs of addresses (keepalived's use_vmac_addr and per-VIP use_vmac): one per base interface,
        family and VRID, shared by the VIPs that want it, named from vmac_addr_prefix (else vmac_prefix)."""
        assert self.vmacs is not None
        wanted: Dict[Tuple[str, int, int], str] = {}
        for inst in config.vrrp_instances:
            family = instance_family(inst)
            for vip in inst.virtual_ipaddress + inst.virtual_ipaddress_excluded:
                base = vip.dev or inst.interface
                if base and addr_vmac_wanted(inst, vip, family):
                    wanted.setdefault((base, vip.address.version, inst.virtual_router_id), inst.name)
        for key, (_name, index) in list(self.addr_vmacs.items()):
            if key not in wanted:
                self.vmacs.remove(index)
                del self.addr_vmacs[key]
        prefix = config.global_defs.vmac_addr_prefix or config.global_defs.vmac_prefix or "vrrp"
        own = {vmac_ifname(i.virtual_router_id, i.vmac_name, config.global_defs.vmac_prefix)
               for i in config.vrrp_instances if i.use_vmac}
        for key, owner in wanted.items():
            if key in self.addr_vmacs:
                continue
            base, family, vrid = key
            names = {link.name for link in self.links.values()} | own | {n for n, _ in self.addr_vmacs.values()}
            try:
                ifname = addr_vmac_name(prefix, vrid, family, lambda n, names=names: n in names)  # type: ignore
                self.addr_vmacs[key] = (ifname, self.vmacs.create(ifname, base, vrid, family))
            except (OSError, VrrpdError) as exc:
                log.error("(%s) use_vmac_addr: cannot create a VMAC on %s: %s", owner, base, exc)

    def _group_fault(self, rt: InstanceRuntime) -> bool:
        """A sync group's own track_interface: any listed interface down puts every member in FAULT."""
        gname = self.group_of.get(rt.inst.name)
        if gname is None:
            return False
        sg = self.sync_groups[gname][0]
        return any(self._link_up(ref.name) == ref.reverse for ref in sg.track_interface)

    def _group_holds_master(self, rt: InstanceRuntime) -> bool:
        """The member's Master_Down_Timer is due: True when its sync group makes it wait.

        A waiting member parks (no timer) until every member wants MASTER or an advert re-arms it;
        members whose timer was re-armed by an advert no longer want MASTER."""
        m, name = rt.machine, rt.inst.name
        gname = self.group_of.get(name)
        if gname is None or self._syncing or not m.master_down_due(self.loop.time()):
            return False
        engine = self.sync_groups[gname][1]
        before = engine.state
        for member in engine.members:
            other = self._runtime(member)
            if other is not None and other is not rt and other.machine.state == State.BACKUP \
                    and not other.machine.parked:
                engine.withdraw(member)
        moves = engine.request_master(name)
        if not moves:
            m.park()
            self._reschedule(rt)
            return True
        self._move_group([mv for mv in moves if mv[0] != name], gname, before)
        return False

    def _follow_group(self, rt: InstanceRuntime, actions: List[Action], notified: Optional[State]) -> None:
        """The member changed state (from `notified`, the state it had notified before `actions`): the rest of its
        sync group follows (and AH restarts its counter)."""
        for act in actions:
            if not isinstance(act, Notify):
                continue
            name, state, prev = rt.inst.name, act.state, notified
            notified = state
            if state == State.MASTER and rt.ah is not None:
                rt.ah.becoming_master()
            gname = self.group_of.get(name)
            if gname is None or self._syncing or state == State.STOP:
                continue
            engine = self.sync_groups[gname][1]
            before = engine.state
            moves: List[Tuple[str, State]] = []
            if state == State.FAULT:
                moves = engine.set_fault(name, True)
            elif prev == State.FAULT:
                moves = engine.set_fault(name, False)
            elif engine.state == State.FAULT:
                moves = [(name, State.FAULT)]
            elif state == State.BACKUP:
                moves = engine.backup(name)
            elif state == State.MASTER:
                moves = engine.request_master(name) or [(name, State.BACKUP)]
            self._move_group(moves, gname, before)

    def _move_group(self, moves: List[Tuple[str, State]], gname: str, before: State) -> None:
        sg, engine = self.sync_groups[gname]
        now = self.loop.time()
        self._syncing = True
        try:
            for member, state in moves:
                other = self._runtime(member)
                if other is not None:
                    acts = other.machine.force_state(now, state)
                    if acts:
                        self._apply(other, acts)
        finally:
            self._syncing = False
        if engine.state != before:
            self._safe(self.notifier.vrrp_group, sg, engine.state)

    def _runtime(self, name: str) -> Optional[InstanceRuntime]:
        return next((rt for rt in self.runtimes if rt.inst.name == name), None)

    def _update_own_sources(self) -> None:
        """Our own advert sources and interface addresses: packets from them are our own echoes."""
        self.own_sources = {rt.src for rt in self.runtimes if rt.src is not None}

    def _source_address(self, rt: InstanceRuntime) -> Optional[IPAddress]:
        """unicast_src_ip, mcast_src_ip, else the interface's own address of the instance's family that is not
        one of our VIPs: the first global IPv4 address, or the usable IPv6 link-local (RFC 5798 section 5.1.2)."""
        family = instance_family(rt.inst)
        for chosen in (rt.inst.unicast_src_ip, rt.inst.mcast_src_ip):
            if chosen is not None and chosen.version == family:
                return chosen
        vips = self._vip_addresses | {v.address.ip for v in rt.vips}
        scope = 0 if family == 4 else RT_SCOPES["link"]
        for a in self.addrs:
            if (a.index == rt.ifindex and a.address.version == family and a.scope == scope and a.usable
                    and a.address.ip not in vips):
                return a.address.ip
        return None

    def stop(self, signum: int = 0) -> None:
        """SIGTERM/SIGINT: priority 0 from every MASTER, VIPs removed (or handed over), then exit."""
        now = self.loop.time()
        if self.stopping:
            # a second signal cuts a pending handover short
            for rt in self.runtimes:
                acts = rt.machine.end_handover(now)
                if acts:
                    self._apply(rt, acts)
            self._maybe_finish()
            return
        self.stopping = True
        log.info("Stopping")
        sd_notify("STOPPING=1")
        self._shutting_down_all = True  # one _maybe_finish() at the end, not one per instance
        try:
            for rt in self.runtimes:
                self._apply(rt, rt.machine.shutdown(now, handover=self.g.vrrp_handover_on_stop))
        finally:
            self._shutting_down_all = False
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.finished or not self.stopping or not all(rt.machine.stopped for rt in self.runtimes):
            return
        self.finished = True
        for rt in self.runtimes:
            self._cancel_garp(rt)
            if rt.timer is not None:
                rt.timer.cancel()
        try:
            self._set_static(self.config, add=False)
            self.tracking.stop()
            self.lvs.stop()
            # after the VIPs are gone: the VMACs and our nftables table
            if self.vmacs is not None:
                self.vmacs.remove_all()
            self.firewall.stop()
            if self._igmp_restore is not None:
                self.kernel.igmp_link_local_reports(self._igmp_restore)
                self._igmp_restore = None
        finally:
            self.notifier.close(0.5)
            log.info("Stopped %s v%s", PROG, __version__)
            self.loop.stop()

    def run(self) -> int:
        self.loop.add_signal_handler(signal.SIGTERM, self.stop)
        self.loop.add_signal_handler(signal.SIGINT, self.stop)
        self.loop.add_signal_handler(signal.SIGHUP, lambda signum: self.reload())
        try:
            self.start()
        except OSError as exc:
            log.error("cannot start: %s", exc)
            self.close()
            return 1
        self.loop.run()
        self.close()
        return self.exit_code

    def close(self) -> None:
        for ifname in self._promoted:
            _write_sysctl(f"/proc/sys/net/ipv4/conf/{ifname}/promote_secondaries", "0")
        self._promoted.clear()
        for paused in self._rx_paused.values():
            paused.cancel()
        self._rx_paused.clear()
        socks: List[Any] = list(self.vsocks.values()) + list(self.announcers.values())
        for sock in socks + [rt.xmit for rt in self.runtimes if rt.xmit is not None]:
            sock.close()
        if self.monitor is not None:
            self.monitor.close()
        if self.rtnl is not None:
            self.rtnl.close()

    # -- reload (SIGHUP) ------------------------------------------------------------------------
    @staticmethod
    def _identity(inst: VrrpInstance, version: int) -> Tuple[str, Optional[str], int, int, int]:
        """What must stay equal for an instance to survive a reload with its state and VIPs."""
        return inst.name, inst.interface, inst.virtual_router_id, inst.family, version

    def reload(self, config: Optional[Config] = None) -> bool:
        """SIGHUP: validate the file first; on errors keep running untouched. Otherwise apply the difference:
        an instance with the same identity keeps its state and VIPs (no advert gap, no VIP removal)."""
        if self.stopping:
            return False
        if config is None:
            if not self.config_path:
                log.error("Reload impossible: no configuration file")
                return False
            try:
                config = load_config(self.config_path, config_id=self.config.config_id or None)
            except ConfigError as exc:
                for diag in exc.diagnostics:
                    log.error(str(diag))
                log.error("Reload aborted: %s has errors; the running configuration is kept", self.config_path)
                return False
            except OSError as exc:
                log.error("Reload aborted: cannot read %s: %s", self.config_path, exc)
                return False
        log.info("Reloading ...")
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={int(time.monotonic() * 1e6)}")
        now = self.loop.time()
        self.config, self.g = config, config.global_defs
        wanted = {self._identity(inst, self._version(inst)): inst for inst in config.vrrp_instances}
        kept: Dict[Tuple[str, Optional[str], int, int, int], InstanceRuntime] = {}
        for rt in list(self.runtimes):
            ident = self._identity(rt.inst, rt.version)
            if ident in wanted:
                kept[ident] = rt
                continue
            acts = [a for a in rt.machine.shutdown(now) if not isinstance(a, Notify)]
            self._apply(rt, acts)
            self._forget(rt)
            log.info("(%s) removed by the reload", rt.inst.name)
            self._safe(self.notifier.vrrp_deleted, rt.inst, rt.machine.effective_priority)
        # each engine keeps what did not change: unchanged trackers keep their state and schedule,
        # unchanged sync groups their state; VMACs and the no_accept firewall follow the new config
        self._safe(self.tracking.reload, config)
        self._safe(self.notifier.reload, config)
        self._safe(self.lvs.reload, config)
        if isinstance(self.firewall, StrictFirewall):  # the same table, with the new chain priority and counters
            self.firewall.priority = config.global_defs.nftables_priority
            self.firewall.counters = config.global_defs.nftables_counters
            self.firewall.ifindex = config.global_defs.nftables_ifindex
        self.firewall.replace(no_accept_vips(config))
        self._set_sync_groups(config)
        self._set_vmacs(config)
        self._unset_static_not_in(config)
        self._set_static(config, add=True)
        for ident, inst in wanted.items():
            rt = kept.get(ident)
            if rt is not None:
                self._reconfigure(rt, inst)
                continue
            try:
                rt = self._add_instance(inst)
            except (OSError, ValueError) as exc:
                log.error("(%s) cannot start: %s", inst.name, exc)
                continue
            if self.startup_pending:
                continue  # the start-up delay survives a reload (keepalived 2.3.3): it starts with the others
            delta, fault = self._adjustment(rt)
            self._apply(rt, rt.machine.set_effective_priority(now, inst.priority + delta))
            self._apply(rt, rt.machine.start(now, fault=fault))
        self._update_rx_filters()
        self._set_linkbeat()
        self._reevaluate()
        if self.g.fifo_write_vrrp_states_on_reload:
            self._safe(self.notifier.vrrp_states_on_reload, [(rt.inst, rt.machine.state, rt.machine.effective_priority)
                                                            for rt in self.runtimes], self._sync_group_status())
        log.info("Reload complete")
        sd_notify("READY=1")
        return True

    def _reconfigure(self, rt: InstanceRuntime, inst: VrrpInstance) -> None:
        """Take the new settings of a surviving instance without touching its state; VIPs are diffed."""
        old_vips = {self._vip_key(rt, v): v for v in rt.vips}
        rt.inst = inst
        m = rt.machine
        m.reconfigure(self._make_machine(inst, rt.version))
        self._attach_hmac(rt)
        self._attach(rt)
        rt.packets = None
        self._update_own_sources()
        new_vips = {self._vip_key(rt, v): v for v in rt.vips}
        if m.vips_set and self.rtnl is not None:
            for key in old_vips.keys() - new_vips.keys():
                self._vip_op(rt, old_vips[key], add=False)
            for key in new_vips.keys() - old_vips.keys():
                self._vip_op(rt, new_vips[key], add=True)
            if new_vips.keys() - old_vips.keys():
                self._send_garps(rt, 1)
            # routes and rules: only what changed
            for rule in [r for r in rt.rules_set if r not in inst.virtual_rules]:
                self._rule_op(inst.name, rule, add=False)
            rt.rules_set = tuple(r for r in rt.rules_set if r in inst.virtual_rules)
            for route in [r for r in rt.routes_set if r not in inst.virtual_routes]:
                self._route_op(inst.name, route, add=False)
            rt.routes_set = tuple(r for r in rt.routes_set if r in inst.virtual_routes)
            self._set_routes(rt, add=True)

    def _vip_key(self, rt: InstanceRuntime, vip: VirtualIP) -> Tuple[Any, ...]:
        return vip.address, self._vip_index(rt, vip), vip.label, vip.scope, vip.brd, vip.peer

    def _forget(self, rt: InstanceRuntime) -> None:
        self._cancel_garp(rt)
        if rt.timer is not None:
            rt.timer.cancel()
            rt.timer = None
        self.runtimes.remove(rt)
        self._leave_vrid(rt)
        if rt.xmit is not None:
            rt.xmit.close()
            rt.xmit = None
        self._update_own_sources()

    # -- actions -------------------------------------------------------------------------------
    def _apply(self, rt: InstanceRuntime, actions: List[Action]) -> None:
        """Carry out what the machine asked for, then re-arm its timer."""
        if not actions and not self._pending_logs:  # a steady BACKUP's every advert
            self._reschedule(rt)
            if self.stopping and not self._shutting_down_all:
                self._maybe_finish()
            return
        inst, notified = rt.inst, rt.last_notified
        # kernel actions first, in order; log lines and notifications after them (they may be slow)
        for act in actions:
            if isinstance(act, (Log, Notify, NotifyRxLowerPri)):
                continue
            elif isinstance(act, SendAdvert):
                self._send_advert(rt, act.priority)
            elif isinstance(act, AddVips):
                self._set_vips(rt, add=True)
            elif isinstance(act, RemoveVips):
                self._set_vips(rt, add=False)
            elif isinstance(act, StartGarp):
                self._start_garp(rt)
            elif isinstance(act, StopGarp):
                self._cancel_garp(rt)
            elif isinstance(act, SendGarp):
                self._send_garps(rt, act.repeat)
        for act in actions:
            if isinstance(act, Log):
                log.log(DEBUG if act.detail else act.level, act.message)
        for message in self._pending_logs:
            log.debug(message)
        self._pending_logs = []
        for act in actions:
            if isinstance(act, Notify):
                self._record_transition(rt, act)
                if State.MASTER in (rt.last_notified, act.state) and rt.last_notified != act.state:
                    rt.logged = ()  # becoming or leaving MASTER re-opens the rate-limited log (RFC 9568)
                if rt.last_notified == State.MASTER and act.state != State.MASTER:
                    rt.released_master += 1
                rt.last_notified = act.state
                if rt.entered_since_clear is not None:
                    rt.entered_since_clear[act.state.value] = rt.entered_since_clear.get(act.state.value, 0) + 1
                self._safe(self.notifier.vrrp_instance, inst, act.state, act.priority)
                self._safe(self.lvs.vrrp_state, inst.name, act.state)  # lvs_sync_daemon follows its instance
            elif isinstance(act, NotifyRxLowerPri):
                self._safe(self.notifier.vrrp_master_rx_lower_pri, inst, act.priority)
        self._reschedule(rt)
        self._follow_group(rt, actions, notified)
        if self.stopping and not self._shutting_down_all:
            self._maybe_finish()

    @staticmethod
    def _safe(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a notifier bug must not stop VRRP
            log.exception("notify failed: %s", exc)

    def _reschedule(self, rt: InstanceRuntime) -> None:
        deadline = rt.machine.next_deadline()
        if rt.timer is not None:
            if not rt.timer.cancelled and deadline is not None and rt.timer.when <= deadline:
                # a BACKUP's Master_Down_Timer moves on with every advert: the earlier timer stays, finds nothing
                # due when it fires and is set again then (not a new timer in the heap per advert received)
                return
            rt.timer.cancel()
            rt.timer = None
        if deadline is not None:
            self._arm(rt, deadline)

    def _arm(self, rt: InstanceRuntime, deadline: float, timer: Optional[Timer] = None) -> None:
        """Set the instance's timer for `deadline`: `timer`, the one that has just run, again if given, else a
        new Timer. Each calls back the one bound method of the Daemon, _on_instance_timer (a bound method made
        per Timer is 64 bytes an instance)."""
        rt.timer = self.loop.call_again(timer, deadline) if timer is not None \
            else self.loop.call_at(deadline, self._on_instance_timer, rt)

    def _on_timer(self, rt: InstanceRuntime) -> None:
        timer, rt.timer = rt.timer, None
        m = rt.machine
        # (a MASTER has no Master_Down_Timer: the backlog check is skipped without a call)
        if m.master_down_timer is not None and self._timeout_waits_for_backlog(rt):
            return
        if self.group_of and self._group_holds_master(rt):
            return
        now = self.loop.time()
        if timer is not None and 0.0 <= now - timer.when < m.advert_int:
            # served late, behind other instances due at the same moment: the machine acts at the deadline,
            # so instances that fell due together stay due together and share one wake-up (_spread() then
            # splits a large such batch into groups once); after a stall, at the wake-up, which all the
            # instances it serves share, as keepalived's would
            woke = self.loop.woke
            now = timer.when if woke - timer.when < STALL else woke
        actions = m.on_timer(now)
        if not actions and not self.stopping and not self._pending_logs:
            # nothing due: a BACKUP's Master_Down_Timer moved on with the adverts heard since it was set (see
            # _reschedule); the same Timer waits for the new deadline, as _apply() would set a new one
            deadline = m.next_deadline()
            if deadline is not None:
                self._arm(rt, deadline, timer)
            return
        if len(actions) == 1 and type(actions[0]) is SendAdvert and not self.stopping:
            # the steady MASTER case, a thousand times a second with a thousand instances: the advert, and the
            # same Timer set again for the next one
            self._send_advert(rt, actions[0].priority)
            if timer is not None:
                self._spread(rt, timer.when)
            deadline = m.next_deadline()
            if deadline is not None:
                self._arm(rt, deadline, timer)
            return
        self._apply(rt, actions)

    def _spread(self, rt: InstanceRuntime, due: float) -> None:
        """Instances that fall due at one moment (they became MASTER together) are sent back to back: a
        thousand take 10 ms, long enough for the scheduler to preempt the daemon in the middle, and every
        instance after that point is late. So they leave in groups of ADVERT_BURST, ADVERT_GAP apart: from
        the second group on, an instance's next advert comes that many gaps sooner, once; then its group has a
        moment of its own. The first group is twice as large, so a batch of up to that many (the ten instances
        of a fast timer) still costs one wake-up of the loop, not two. keepalived's instances are spread by
        their start; sooner adverts are harmless.
        The groups fill half an interval (2,000 instances at advert_int 1), then start over from the first
        moment, two groups to a moment (then three), rather than all the rest at the last one."""
        m = rt.machine
        gap = min(ADVERT_GAP, m.advert_int / 64)
        when, count = self._burst
        count = count + 1 if abs(due - when) < gap / 2 else 1
        self._burst = (when if count > 1 else due, count)
        if count > 2 * ADVERT_BURST:
            groups = max(1, int(m.advert_int / (2 * gap) + 1e-9))  # the moments half an interval holds
            m.advance_advert(((count - 1) // ADVERT_BURST - 1) % groups * gap)

    def _send_advert(self, rt: InstanceRuntime, priority: int) -> None:
        sock = rt.xmit or rt.vsock
        src = rt.src
        if sock is None or src is None:  # said once in a while: a MASTER that sends nothing must not be silent
            self.ratelimit(("send", rt.inst.name, "unready"), self.loop.time(),
                           f"({rt.inst.name}) cannot send advert: no {'socket' if sock is None else 'source address'}"
                           f" on {rt.inst.interface}")
            return
        packets = rt.packets
        if packets is None or packets[0] != priority or packets[2] is not sock or \
                (packets[1] is not src and packets[1] != src):
            packets = self._encode_adverts(rt, sock, src, priority)
        for i in range(3, len(packets), 2):
            packet, dest = packets[i], packets[i + 1]
            try:
                sock.send_to(packet, dest)
                rt.adverts_sent += 1
                rt.priority_zero_sent += priority == 0
            except OSError as exc:
                self.ratelimit(("send", rt.inst.name, exc.errno), self.loop.time(),
                               f"({rt.inst.name}) cannot send advert to {dest[1]}: {exc.strerror}")

    def _encode_adverts(self, rt: InstanceRuntime, sock: VrrpSocket, src: IPAddress, priority: int) -> Tuple[Any, ...]:
        """One advert as (priority, src, sock, packet, destination, ...): a packet per target, either family, each
        followed by its destination() on `sock`, in one flat tuple (a thousand instances keep theirs). The packets
        only change with the priority, the source and the socket, so they are kept and sent again, unless each
        carries a new sequence number (AH, auth_hmac)."""
        m = rt.machine
        adv = VrrpAdvert(rt.version, m.vrid, priority, m.addresses, m.advert_int,
                         m.auth_type.value if rt.version == 2 else 0,
                         m.auth_pass)
        kernel_sum = sock.kernel_checksum  # IPv6: the kernel fills in the checksum
        old = self.g.vrrp_mcast_group4 if rt.old_checksum else None  # old_unicast_checksum: the group's sum
        msgs = [(dst, ttl, encode_advert(adv) if kernel_sum else encode_advert(adv, src, old or dst, rt.checksum_as_v2))
                for dst, ttl in rt.targets]
        packets: List[Any] = [priority, src, sock]
        if rt.ah is not None:
            for dst, ttl, msg in msgs:
                sock.ident = sock.ident % 0xFFFF + 1  # non-zero: the ICV covers it
                packets += (build_ipv4_ah(src, dst, msg, rt.inst.auth_pass, rt.ah.next(),  # type: ignore
                                          sock.ident, ttl, unicast=rt.unicast), sock.destination(src, dst))
            return tuple(packets)
        if rt.hmac is not None and rt.hmac.sends:
            # a fresh sequence in every advert: sign it once, the same trailer goes to every peer
            trailer = self.hmac_trailer(rt, msgs[0][2]) if msgs else b""
            for dst, ttl, msg in msgs:
                packets += (sock.packet(src, dst, msg + trailer, ttl), sock.destination(src, dst))
            return tuple(packets)
        for dst, ttl, msg in msgs:
            packets += (sock.packet(src, dst, msg, ttl), sock.destination(src, dst))
        rt.packets = tuple(packets)
        return rt.packets

    @staticmethod
    def _ipvlan_unaddressed(inst: VrrpInstance) -> bool:
        """keepalived's config fault: an IPv4 ipvlan shares its interface's MAC and needs an address of its own."""
        return inst.use_ipvlan and inst.ipvlan_addr is None and instance_family(inst) == 4

    def _vip_index(self, rt: InstanceRuntime, vip: VirtualIP) -> int:
        if self.addr_vmacs and addr_vmac_wanted(rt.inst, vip, rt.family):
            key = (vip.dev or rt.inst.interface or "", vip.address.version, rt.inst.virtual_router_id)
            return self.addr_vmacs[key][1] if key in self.addr_vmacs else 0
        if vip.dev is None or vip.dev == rt.inst.interface:
            if vip.address.version != rt.family:  # keepalived: the other family's eVIP stays on the interface
                return rt.ifindex
            return rt.vmac_index or rt.ifindex
        link = self._link_by_name(vip.dev)
        return link.index if link is not None else 0

    def _set_vips(self, rt: InstanceRuntime, add: bool) -> None:
        """VIPs, then virtual routes, then virtual rules; removed in the reverse order (keepalived's order)."""
        if not add:
            self._set_routes(rt, add=False)
        for vip in rt.vips:
            self._vip_op(rt, vip, add)
        if add:
            self._set_routes(rt, add=True)

    # -- routes and rules: virtual ones follow the VIPs, static ones live as long as the daemon -------
    def _ifindex(self, name: str) -> int:
        link = self._link_by_name(name)
        return link.index if link is not None else 0

    def _route_op(self, who: str, route: Route, add: bool, replace: bool = False, quiet: bool = False) -> bool:
        """Add or delete one route; True when the kernel now holds it (add) or no longer does (delete)."""
        if self.rtnl is None:
            return False
        missing = [d for d in [route.dev] + [nh.dev for nh in route.nexthops] if d and not self._ifindex(d)]
        if missing:
            if add:
                log.error("(%s) cannot add route %s: interface %s does not exist", who, route, missing[0])
            return not add
        try:
            self.rtnl.route(route, self._ifindex, add, replace)
            return True
        except (NetlinkError, OSError) as exc:
            if not quiet:
                log.error("(%s) cannot %s route %s: %s", who, "add" if add else "remove", route, exc)
            return False

    def _rule_op(self, who: str, rule: Rule, add: bool, quiet: bool = False) -> bool:
        if self.rtnl is None:
            return False
        try:
            self.rtnl.rule(rule, add)
            return True
        except (NetlinkError, OSError) as exc:
            if not quiet:
                log.error("(%s) cannot %s rule %s: %s", who, "add" if add else "remove", rule, exc)
            return False

    def _set_routes(self, rt: InstanceRuntime, add: bool) -> None:
        """virtual_routes then virtual_rules on becoming MASTER; rules then routes on leaving it. What we
        installed is remembered, so leaving MASTER always removes it (as keepalived 2.2.7 does)."""
        name, inst = rt.inst.name, rt.inst
        if add:
            for route in inst.virtual_routes:
                if route not in rt.routes_set and self._route_op(name, route, add=True):
                    rt.routes_set += (route,)
            for rule in inst.virtual_rules:
                if rule not in rt.rules_set and self._rule_op(name, rule, add=True):
                    rt.rules_set += (rule,)
            if rt.routes_set or rt.rules_set:
                self._watch_routes()
            return
        for rule in rt.rules_set:
            self._rule_op(name, rule, add=False)
        for route in rt.routes_set:
            self._route_op(name, route, add=False)
        rt.routes_set, rt.rules_set = (), ()

    def _watch_routes(self) -> None:
        """Route and rule events are only read when something tracked is installed (keepalived subscribes per
        family the same way): a router with a full BGP table is not flooded otherwise."""
        if self.monitor is None or self.monitor.routes:
            return
        tracked = any(not r.no_track for r in self.static_set[1] + self.static_set[2])  # type: ignore[operator]
        tracked = tracked or any(not r.no_track for rt in self.runtimes for r in rt.routes_set + rt.rules_set)
        if tracked:
            try:
                self.monitor.watch_routes()
            except OSError as exc:
                log.error("cannot watch route and rule events: %s", exc)

    def _start_static(self) -> None:
        """At start, keepalived deletes what an earlier run may have left (static entries, and the virtual routes
        and rules of instances that do not start as MASTER), then installs static_ipaddress/routes/rules."""
        for route in self.config.static_routes:
            self._route_op("static", route, add=False, quiet=True)
        for rule in self.config.static_rules:
            self._rule_op("static", rule, add=False, quiet=True)
        for rt in self.runtimes:
            for rule in rt.inst.virtual_rules:
                self._rule_op(rt.inst.name, rule, add=False, quiet=True)
            for route in rt.inst.virtual_routes:
                self._route_op(rt.inst.name, route, add=False, quiet=True)
        self._set_static(self.config, add=True)

    def _set_static(self, config: Config, add: bool) -> None:
        """Install the static entries of `config` not installed yet (add), or remove every installed one; the
        difference of a reload is _set_static(new) after _unset_static_not_in(new)."""
        addrs, routes, rules = self.static_set
        if add:
            for vip in config.static_ipaddress:
                if vip not in addrs and self._static_addr_op(vip, add=True):
                    addrs.append(vip)
            for route in config.static_routes:
                if route not in routes and self._route_op("static", route, add=True):
                    routes.append(route)
            for rule in config.static_rules:
                if rule not in rules and self._rule_op("static", rule, add=True):
                    rules.append(rule)
            self._watch_routes()
            return
        for rule in list(rules):
            self._rule_op("static", rule, add=False)
            rules.remove(rule)
        for route in list(routes):
            self._route_op("static", route, add=False)
            routes.remove(route)
        for vip in list(addrs):
            self._static_addr_op(vip, add=False)
            addrs.remove(vip)

    def _unset_static_not_in(self, config: Config) -> None:
        addrs, routes, rules = self.static_set
        for rule in [r for r in rules if r not in config.static_rules]:
            self._rule_op("static", rule, add=False)
            rules.remove(rule)
        for route in [r for r in routes if r not in config.static_routes]:
            self._route_op("static", route, add=False)
            routes.remove(route)
        for vip in [v for v in addrs if v not in config.static_ipaddress]:
            self._static_addr_op(vip, add=False)
            addrs.remove(vip)

    def _static_addr_op(self, vip: VirtualIP, add: bool) -> bool:
        index = self._ifindex(vip.dev or self.g.default_interface)
        if not index or self.rtnl is None:
            if add:
                log.error("(static) cannot add address %s: interface %s does not exist", vip.address, vip.dev)
            return False
        try:
            if add:
                self.rtnl.add_address(index, vip)
            else:
                self.rtnl.del_address(index, vip)
            return True
        except (NetlinkError, OSError) as exc:
            log.error("(static) cannot %s address %s: %s", "add" if add else "remove", vip.address, exc)
            return False

    def _route_event(self, rtype: int, info: RouteInfo) -> None:
        """A route or rule was deleted. A tracked virtual one of a MASTER sends it to BACKUP (it comes back as
        MASTER after Skew_Time and reinstalls everything); a tracked static one is put back (keepalived)."""
        if rtype not in (RTM_DELROUTE, RTM_DELRULE) or info.protocol != RTPROT_KEEPALIVED:
            return
        match = self._rule_matches if info.rule else self._route_matches
        for rt in self.runtimes:
            if rt.machine.state != State.MASTER:
                continue
            for entry in (rt.rules_set if info.rule else rt.routes_set):
                if not entry.no_track and match(entry, info):
                    what = "rule" if info.rule else "route"
                    self._release_master(rt, f"tracked virtual {what} {entry} was deleted; going BACKUP")
                    return
        for entry in (self.static_set[2] if info.rule else self.static_set[1]):
            if not entry.no_track and match(entry, info):
                kind = "rule" if info.rule else "route"
                log.info("Restoring deleted static %s %s", kind, entry)
                if info.rule:
                    self._rule_op("static", entry, add=True)  # type: ignore[arg-type]
                else:
                    self._route_op("static", entry, add=True)  # type: ignore[arg-type]
                return

    def _release_master(self, rt: InstanceRuntime, why: str) -> None:
        """keepalived's set_vrrp_backup: the instance and every MASTER member of its sync group release MASTER
        (priority 0, BACKUP, a Master_Down_Timer of only their Skew_Time), and the group is BACKUP."""
        now, gname = self.loop.time(), self.group_of.get(rt.inst.name)
        members = [rt]
        if gname is not None:
            others = (self._runtime(name) for name in self.sync_groups[gname][1].members)
            members += [o for o in others if o is not None and o is not rt and o.machine.state == State.MASTER]
        self._syncing = True  # the group is moved here, not by each member's BACKUP
        try:
            for member in members:
                reason = why if member is rt else f"sync group member {rt.inst.name}: {why}"
                self._apply(member, member.machine.release_master(now, reason))
        finally:
            self._syncing = False
        if gname is not None:
            engine = self.sync_groups[gname][1]
            before = engine.state
            self._move_group(engine.backup(rt.inst.name), gname, before)

    def _route_matches(self, route: Route, info: RouteInfo) -> bool:
        """keepalived's compare_route: table, family, destination, tos, metric (and dev when configured). The
        kernel gives an IPv6 route without a metric 1024: compare with that (keepalived compares 0 and misses)."""
        metric = route.metric if route.metric is not None else (1024 if route.family == 6 else 0)
        return (info.family == route.family and info.table == route.table and info.dst == route.dst
                and info.tos == (route.tos or 0) and info.metric == metric
                and (not route.dev or info.oif == self._ifindex(route.dev)))

    @staticmethod
    def _rule_matches(rule: Rule, info: RouteInfo) -> bool:
        return info.family == rule.family and info.priority == (rule.priority or 0) and (
            rule.table == info.table if rule.action == FR_ACT_TO_TBL and not rule.l3mdev else True)

    def _vip_op(self, rt: InstanceRuntime, vip: VirtualIP, add: bool) -> None:
        index = self._vip_index(rt, vip)
        if not index or self.rtnl is None:
            return
        try:
            if add:
                self.rtnl.add_address(index, vip)
            else:
                self.rtnl.del_address(index, vip)
        except (NetlinkError, OSError) as exc:
            log.error("(%s) cannot %s VIP %s: %s", rt.inst.name, "add" if add else "remove", vip.address, exc)

    def _garp_params(self, rt: InstanceRuntime) -> Tuple[float, int, float, int]:
        inst, g = rt.inst, self.g
        delay = g.vrrp_garp_master_delay if inst.garp_master_delay is None else inst.garp_master_delay
        repeat = g.vrrp_garp_master_repeat if inst.garp_master_repeat is None else inst.garp_master_repeat
        refresh = g.vrrp_garp_master_refresh if inst.garp_master_refresh is None else inst.garp_master_refresh
        rrepeat = (g.vrrp_garp_master_refresh_repeat if inst.garp_master_refresh_repeat is None
                   else inst.garp_master_refresh_repeat)
        return delay, repeat, refresh, rrepeat

    def _start_garp(self, rt: InstanceRuntime) -> None:
        """garp_master_repeat GARPs now, the same again after garp_master_delay, then every garp_master_refresh."""
        self._cancel_garp(rt)
        delay, repeat, refresh, rrepeat = self._garp_params(rt)
        self._send_garps(rt, repeat, announce=True)
        if delay > 0:
            self._garp_timer(rt, delay, self._garp_delayed, repeat)
        if refresh > 0:
            self._garp_timer(rt, refresh, self._garp_refresh, refresh, rrepeat)
        extra, every = rt.inst.garp_extra_if, rt.inst.garp_extra_if_all
        if extra is None:
            extra, every = self.g.vrrp_garp_extra_if, self.g.vrrp_garp_extra_if_all
        if extra and self._extra_garp_frames(rt, every):
            self._garp_timer(rt, delay + extra, self._garp_extra_if, extra, every)

    def _extra_garp_frames(self, rt: InstanceRuntime, every: bool) -> List[Tuple[str, bytes, ipaddress.IPv4Address]]:
        """garp_extra_if: one GARP per interface carrying a VIP or excluded VIP, other than the instance's own
        (keepalived: its own VMACs by default, every such interface with `all`; vrrpd makes no per-address VMACs,
        so only `all` finds any)."""
        own = self._vip_index(rt, VirtualIP(address=ipaddress.ip_interface("0.0.0.0/32")))
        frames, seen = [], {own}
        for vip in rt.vips:
            index = self._vip_index(rt, vip)
            link = self.links.get(index)
            if not every or index in seen or link is None or len(link.mac) != 6 or vip.address.version != 4:
                continue
            seen.add(index)
            frames.append((link.name, link.mac, vip.address.ip))
        return frames  # type: ignore[return-value]

    def _garp_extra_if(self, rt: InstanceRuntime, interval: float, every: bool) -> None:
        if rt.machine.state != State.MASTER or not rt.machine.vips_set:
            return
        for frame in self._extra_garp_frames(rt, every):
            self._announce(*frame)
        self._garp_timer(rt, interval, self._garp_extra_if, interval, every)

    def _garp_refresh(self, rt: InstanceRuntime, refresh: float, repeat: int) -> None:
        if rt.machine.state != State.MASTER:
            return
        self._send_garps(rt, repeat)
        self._garp_timer(rt, refresh, self._garp_refresh, refresh, repeat)

    def _garp_delayed(self, rt: InstanceRuntime, repeat: int) -> None:
        """garp_master_delay after becoming MASTER: the GARPs again."""
        rt.garp_timers = tuple(t for t in rt.garp_timers if t.callback != self._garp_delayed)  # it has run
        self._send_garps(rt, repeat)

    def _garp_timer(self, rt: InstanceRuntime, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        """Arm one of the instance's GARP timers (one each of delay, refresh, extra_if); the one that just ran
        to re-arm itself is forgotten, so a MASTER keeps only what is pending."""
        kept = tuple(t for t in rt.garp_timers if t.callback != callback)
        rt.garp_timers = kept + (self.loop.call_later(delay, callback, rt, *args),)

    def _cancel_garp(self, rt: InstanceRuntime) -> None:
        for timer in rt.garp_timers:
            timer.cancel()
        rt.garp_timers = ()

    def _send_garps(self, rt: InstanceRuntime, repeat: int, announce: bool = False) -> None:
        """`repeat` gratuitous ARPs per IPv4 VIP and unsolicited Neighbour Advertisements per IPv6 VIP, paced
        by vrrp_garp_interval and vrrp_gna_interval when they are set."""
        if rt.machine.state != State.MASTER and not (rt.machine.state == State.STOP and rt.machine.vips_set):
            return
        frames: Dict[int, List[Tuple[str, bytes, IPAddress]]] = {4: [], 6: []}
        for vip in rt.vips:
            link = self.links.get(self._vip_index(rt, vip))
            if link is None or len(link.mac) != 6:
                continue
            if announce and vip.address.version == 4:
                self._pending_logs.append(
                    f"({rt.inst.name}) Sending/queueing gratuitous ARPs on {link.name} for {vip.address.ip}")
            frames[vip.address.version] += [(link.name, link.mac, vip.address.ip)] * max(0, repeat)
        for family in (4, 6):
            for frame in frames[family]:
                key = self._garp_spacing(frame[0], family)[0]
                queue = self._garp_queue.setdefault((key, family), [])
                if queue or self.loop.time() < self._garp_next.get((key, family), 0.0):
                    queue.append((rt, frame))  # keepalived's queue_garp: sent when the spacing allows
                    if len(queue) == 1:
                        self.loop.call_at(self._garp_next[(key, family)], self._garp_dequeue, key, family)
                else:
                    self._garp_sent(key, family, frame)

    def _garp_sent(self, key: Any, family: int, frame: Tuple[str, bytes, IPAddress]) -> None:
        """Send one, and note when the next may go on its interface (group): the spacing counts from the send."""
        self._announce(*frame)
        interval = self._garp_spacing(frame[0], family)[1]
        if interval > 0:
            self._garp_next[(key, family)] = self.loop.time() + interval

    def _garp_dequeue(self, key: Any, family: int) -> None:
        queue = self._garp_queue.get((key, family)) or []
        while queue:
            rt, frame = queue.pop(0)
            m = rt.machine
            if m.state == State.MASTER or (m.state == State.STOP and m.vips_set):  # still ours to announce
                self._garp_sent(key, family, frame)
                break
        if queue:
            self.loop.call_at(self._garp_next.get((key, family), self.loop.time()), self._garp_dequeue, key, family)

    def _garp_spacing(self, ifname: str, family: int) -> Tuple[Any, float]:
        """(what shares the spacing, the spacing) of GARPs (4) or NAs (6) on `ifname`: its garp_group (all the
        group's interfaces together), else the interface alone with vrrp_garp_interval / vrrp_gna_interval. The
        spacing holds across instances, as keepalived's per-interface garp_delay does; a VMAC counts as its
        interface."""
        ifname = self._vmac_base.get(ifname, ifname)
        for n, gg in enumerate(self.config.garp_groups):
            if ifname in gg.interfaces:
                value = gg.garp_interval if family == 4 else gg.gna_interval
                return ("group", n), value or 0.0  # a member without this family's interval: no spacing
        return ifname, self.g.vrrp_garp_interval if family == 4 else self.g.vrrp_gna_interval

    def _announce(self, ifname: str, mac: bytes, address: IPAddress) -> None:
        """One gratuitous ARP (IPv4) or unsolicited Neighbour Advertisement (IPv6) for address."""
        try:
            sock = self.announcers.get(ifname)
            if sock is None:
                sock = self.announcers[ifname] = self.kernel.announcer(ifname)
            if address.version == 6:
                log.debug("Sending unsolicited Neighbour Advert on %s for %s", ifname, address)
            sock.send(mac, address)
        except OSError as exc:
            what = "gratuitous ARP" if address.version == 4 else "neighbour advert"
            self.ratelimit(("garp", ifname, address.version), self.loop.time(),
                           f"cannot send {what} on {ifname}: {exc}")

    # -- receive path --------------------------------------------------------------------------
    def _on_vrrp_readable(self, vsock: VrrpSocket) -> None:
        for _ in range(RX_BATCH):  # one batch per wake-up: the loop's due timers (adverts) run before the next
            try:
                pkt = vsock.recv()
            except PacketError as exc:
                self._bad(None, exc.reason, f"bad IP packet on {vsock.ifname}: {exc}")
                continue
            if pkt is None:
                self._rx_emptied(vsock)
                return
            self._receive(vsock, pkt)

    def _rx_emptied(self, vsock: VrrpSocket) -> None:
        """A pass read the socket empty: if the previous one did so less than RX_PAUSE ago, packets arrive
        faster than the loop should wake up for them; the socket is read again in RX_PAUSE (see RX_PAUSE)."""
        now, key = self.loop.time(), id(vsock)
        last = self._rx_drained.get(key)
        self._rx_drained[key] = now
        if last is None or now - last >= RX_PAUSE or key in self._rx_paused:
            return
        if self.vsocks.get((vsock.ifname, vsock.family, vsock.protocol)) is not vsock:
            return  # read by a master-down check after a reload took it off the loop
        self.loop.remove_reader(vsock.sock)
        self._rx_paused[key] = self.loop.call_later(RX_PAUSE, self._rx_resume, vsock)

    def _rx_resume(self, vsock: VrrpSocket) -> None:
        self._rx_paused.pop(id(vsock), None)
        if self.vsocks.get((vsock.ifname, vsock.family, vsock.protocol)) is vsock:
            self.loop.add_reader(vsock.sock, self._on_vrrp_readable, vsock)

    def _rx_sockets(self, rt: InstanceRuntime) -> List[Tuple[socket.socket, Callable[[], None]]]:
        """The sockets that carry the instance's adverts, each with the reader of one batch."""
        out: List[Tuple[socket.socket, Callable[[], None]]] = []
        socks = [rt.vsock] if rt.vsock is not None else []
        if rt.vsock is not None and rt.ah is not None:
            socks += [s for k, s in self.vsocks.items() if k == (rt.vsock.ifname, 4, IPPROTO_AH)]
        for vsock in socks:
            out.append((vsock.sock, lambda vsock=vsock: self._on_vrrp_readable(vsock)))  # type: ignore[misc]
        return out

    def _timeout_waits_for_backlog(self, rt: InstanceRuntime) -> bool:
        """A due Master_Down_Timer says the master fell silent; adverts still queued in the kernel (read late
        behind a flood) are not silence. So the timeout acts only once the instance's sockets are empty: until
        then each pass of the loop reads a batch (which re-arms the timer when it holds an advert of the
        master), and sends and other timers go on in between. A flood that keeps a queue full for one more
        Master_Down_Interval can postpone the timeout no longer: then it acts, and says why."""
        m, now = rt.machine, self.loop.time()
        if not m.master_down_due(now):
            return False
        busy = [read for sock, read in self._rx_sockets(rt) if kernel_holds_packets(sock)]
        if not busy:
            rt.backlog_wait = None
            return False
        deadline = m.master_down_timer
        assert deadline is not None
        if rt.backlog_wait is None or rt.backlog_wait[0] != deadline:
            rt.backlog_wait = (deadline, now)
        elif now - rt.backlog_wait[1] >= m.master_down_interval:
            log.warning("(%s) receive queue still not empty a master down interval after the timeout: "
                        "acting on it", rt.inst.name)
            rt.backlog_wait = None
            return False
        for read in busy:
            read()
        if rt.timer is None:  # no advert of the master in that batch: look again on the next pass
            self._arm(rt, now)
        return True

    def _update_rx_filters(self) -> None:
        """Each VRRP socket's kernel filter and receive buffer follow the instances on it (start, reload)."""
        for (_ifname, family, protocol), vsock in self.vsocks.items():
            if protocol == IPPROTO_VRRP:  # the filter reads VRRP headers; an AH socket keeps none
                rts = [rt for rt in self.runtimes if rt.vsock is vsock]
                self._tune_rx_socket(vsock, family, rts)

    def _tune_rx_socket(self, vsock: Any, family: int, rts: List[InstanceRuntime]) -> None:
        if not rts or not isinstance(vsock, _RxSocket):
            return
        vrids = None if self.g.log_unknown_vrids else [rt.machine.vrid for rt in rts]
        # checksums in the kernel too, unless auth_hmac changes what the message carries; v3's as its instances
        # compute it (with the pseudo-header, or the message alone for v3_checksum_as_v2), if they agree
        styles = {rt.checksum_as_v2 for rt in rts if rt.version == 3}
        v3_checksum = None if len(styles) > 1 else "message" if styles == {True} else "pseudo"
        checksum = all(getattr(rt, "hmac", None) is None for rt in rts)
        # old_unicast_checksum (or a default instance that may switch to it): the group's sum passes too
        old = self.g.vrrp_mcast_group4 if any(rt.old_checksum is not False for rt in rts) else None
        self._safe(vsock.set_filter, rx_filter_for(family, [rt.version for rt in rts], vrids, checksum, v3_checksum,
                                                   old))
        # kernel_rx_buf_size (or vrrp_rx_bufs_policy): each instance adds its share to the socket's buffer
        self._safe(vsock.set_rcvbuf, VRRP_RCVBUF + sum(self._rx_buf_share(rt) for rt in rts))

    def _rx_buf_share(self, rt: InstanceRuntime) -> int:
        """What the instance adds to the receive buffer of its VRRP socket (keepalived's vrrp_scheduler.c):
        kernel_rx_buf_size, else vrrp_rx_bufs_policy's size, or vrrp_rx_bufs_multiplier times its advert's
        length (ADVERT: IPv4 header, AH and the auth_hmac trailer included) or its interface's MTU (MTU)."""
        g, inst = self.g, rt.inst
        if inst.kernel_rx_buf_size or g.vrrp_rx_bufs_size:
            return inst.kernel_rx_buf_size or g.vrrp_rx_bufs_size
        if g.vrrp_rx_bufs_policy == "ADVERT":
            width = 4 if rt.family == 4 else 16
            length = VRRP_HEADER_LEN + width * len(inst.virtual_ipaddress) + (8 if rt.version == 2 else 0)
            if rt.family == 4:
                length += 20 + (24 if inst.auth_type == AuthType.AH else 0)
            return g.vrrp_rx_bufs_multiplier * (length + (28 if getattr(rt, "hmac", None) is not None else 0))
        if g.vrrp_rx_bufs_policy == "MTU":
            link = self.links.get(rt.ifindex or 0)
            return g.vrrp_rx_bufs_multiplier * (link.mtu if link is not None else 0)
        return 0

    def rx_sockets_status(self) -> List[Dict[str, Any]]:
        """What the kernel does before vrrpd counts anything: per socket, the filter that drops packets no
        instance could accept (not counted: the kernel keeps no count of them) and the datagrams dropped because
        the receive queue was full (counted by the kernel)."""
        socks = [(s.family, s) for s in self.vsocks.values()]
        return [{"interface": s.ifname, "family": family,
                 "kernel_filter": s.rx_filter.describe() if s.rx_filter is not None else None,
                 "kernel_filter_error": s.rx_filter_error, "rcvbuf": s.rcvbuf,
                 "kernel_queue_full_drops": s.queue_drops} for family, s in socks if isinstance(s, _RxSocket)]

    def _bad(self, rt: Optional[InstanceRuntime], reason: str, message: str) -> None:
        """Count a dropped (or doubtful) advert. RFC 9568 rate-limited logging as keepalived 2.3.3 does it: each
        class is logged once per instance, then suppressed until the instance becomes or leaves MASTER or
        accepts an advert from a new master (accepted only: a spoofed source cannot re-open the log)."""
        if rt is None:
            self.ratelimit((reason, None), self.loop.time(), message)
            return
        if rt.bad_packets is _NO_COUNTS:
            rt.bad_packets = {}
        rt.bad_packets[reason] = rt.bad_packets.get(reason, 0) + 1
        if reason not in rt.logged:
            rt.logged += (reason,)
            log.warning("%s", message)

    def _accepted_from(self, rt: InstanceRuntime, src: Any, adv: VrrpAdvert) -> None:
        """An advert passed every check: one from a new master re-opens the instance's rate-limited log classes."""
        m = rt.machine
        if m.state == State.BACKUP and adv.priority and src is not m.master_ip and src != m.master_ip:
            rt.logged = ()

    def _receive(self, vsock: VrrpSocket, pkt: Received) -> None:
        """One datagram from a VRRP or AH socket, either family: our own echoes dropped, the instance found by
        interface, family, VRID and mode, AH unwrapped, the receive checks (receive_checks), then the machine."""
        if pkt.src in self.own_sources or pkt.protocol not in (IPPROTO_VRRP, IPPROTO_AH):
            return
        ah = pkt.protocol == IPPROTO_AH
        vrrp = pkt.payload[AH_HEADER_LEN:] if ah else pkt.payload
        if len(vrrp) < 2:
            if not ah:
                self._bad(None, "truncated", f"truncated VRRP packet from {pkt.src} on {vsock.ifname}")
            return
        vrid = vrrp[1]
        vrids = self.by_vrid.get((vsock.ifname, vsock.family))
        candidates = vrids.get(vrid, ()) if vrids is not None else ()
        if ah:
            candidates = tuple(r for r in candidates if r.ah is not None)
            if not candidates:
                return
        unicast = not is_multicast(pkt.dst)
        if len(candidates) == 1 and not unicast:  # the common case, and a flood's: one instance for the VRID
            rt: Optional[InstanceRuntime] = candidates[0]
        else:  # the instance of that mode (a unicast one that lists the sender first), else the first
            rt = next((r for r in candidates if r.unicast == unicast
                       and (not unicast or any(p.address == pkt.src for p in r.inst.unicast_peer))), None) \
                or next((r for r in candidates if r.unicast == unicast), candidates[0] if candidates else None)
        if rt is None:
            self.ratelimit(("vrid", vsock.ifname), self.loop.time(),
                           f"Unknown VRID({vrid}) received on interface({vsock.ifname}). ignoring...")
            return
        if ah:
            unwrapped = self._unwrap_ah(rt, pkt)
            if unwrapped is None:
                return
            pkt = unwrapped
        unwrap = None
        if rt.hmac is not None:
            src = pkt.src

            def unwrap(msg: bytes) -> Optional[bytes]:
                return self.hmac_receive(rt, msg, src, unicast)  # type: ignore[arg-type]

        memo = rt.rx_memo
        # (the addresses of the same peer are the same objects, see _ipv4_address: `is` before a Python __eq__)
        if memo is not None and memo[0] == pkt.payload and (memo[1] is pkt.src or memo[1] == pkt.src) \
                and (memo[2] is pkt.dst or memo[2] == pkt.dst) and memo[3] == pkt.ttl and memo[6] == rt.old_checksum:
            # the same bytes as the last advert accepted, from the same source: a steady master's adverts are
            # identical, and receive_checks() is a pure function of them and of settings that only a reload
            # changes (_attach forgets the memo then)
            adv, mismatch = memo[4], memo[5]
        else:
            check_src = self.g.vrrp_check_unicast_src or rt.inst.check_unicast_src
            verdict = receive_checks(pkt, rt.machine, rt.unicast, rt.inst.unicast_peer, check_src,
                                     rt.checksum_as_v2, unwrap, rt.old_checksum, self.g.vrrp_mcast_group4)
            if verdict is None:
                return
            if isinstance(verdict, Drop):
                self._bad(rt, verdict.reason, verdict.message)
                return
            adv = verdict
            if adv.old_checksum and rt.old_checksum is None:
                rt.old_checksum = True  # keepalived's CHKSUM_COMPATIBILITY_AUTO: the peer is keepalived <= 1.3.6
                rt.packets = None
                log.info("(%s) Setting unicast VRRPv3 checksum to old version", rt.inst.name)
            mismatch = bool(adv.priority) and rt.machine.address_mismatch(adv)
            # not with auth_hmac (a replay is the same bytes) or AH, nor for an owner that ignores adverts
            if unwrap is None and not ah and not rt.machine.owner_ignore_adverts:
                rt.rx_memo = (pkt.payload, pkt.src, pkt.dst, pkt.ttl, adv, mismatch, rt.old_checksum)
        if pkt.src is not rt.machine.master_ip:  # (from the master it knows, _accepted_from() has nothing to do)
            self._accepted_from(rt, pkt.src, adv)
        if mismatch:
            self._bad(rt, "addr_mismatch", f"({rt.inst.name}) ip address associated with VRID {vrid} not present "
                      f"in MASTER advert : {', '.join(str(a) for a in rt.machine.addresses)}")
        rt.adverts_received += 1
        rt.priority_zero_received += adv.priority == 0
        now = self.loop.time()
        received_at = pkt.received_at if pkt.received_at is not None else vsock.receive_time()
        if received_at is not None:
            # the advert arrived before we read it: date it back (bounded, in case the wall clock jumped)
            now -= min(max(0.0, time.time() - received_at), 0.1)
        self._apply(rt, rt.machine.on_advert(now, adv, pkt.src))

    def _unwrap_ah(self, rt: InstanceRuntime, pkt: Received) -> Optional[Received]:
        """auth_type AH: check the AH header and the sequence number; the advert inside, as if received bare."""
        name, counter = rt.inst.name, rt.ah
        assert counter is not None
        try:
            seq, vrrp = parse_ipv4_ah(pkt.header + pkt.payload, rt.inst.auth_pass, unicast=rt.unicast)
        except PacketError as exc:
            self._bad(rt, exc.reason, f"({name}) IPSEC-AH : {exc}")
            return None
        if not counter.accept(seq):
            self._bad(rt, "ah_replay", f"({name}) IPSEC-AH : sequence number {seq} already processed. "
                      f"Packet dropped. Local({counter.seq_number})")
            return None
        if rt.machine.state == State.MASTER and len(vrrp) > 2 and 0 < vrrp[2] < rt.machine.effective_priority:
            counter.sync_from_lower(seq)  # keepalived: "IPSEC-AH : Syncing seq_num - Increment seq"
        if len(vrrp) < 2:
            self._bad(rt, "truncated", f"truncated VRRP packet from {pkt.src} on {rt.inst.interface}")
            return None
        return Received(pkt.src, pkt.dst, pkt.ttl, vrrp, IPPROTO_VRRP, pkt.received_at)

    # -- links, addresses, tracking ------------------------------------------------------------
    def _link_by_name(self, name: str) -> Optional[LinkInfo]:
        return next((link for link in self.links.values() if link.name == name), None)

    def _link_up(self, name: Optional[str]) -> bool:
        link = self._link_by_name(name) if name else None
        return link is not None and link.up

    def _adjustment(self, rt: InstanceRuntime) -> Tuple[int, bool]:
        """(priority delta, fault) from the instance's own link, track_interface and the TrackerRunner."""
        parts = self._contributions(rt)
        try:
            initialising = getattr(self.tracking, "initialising", None)
            rt.machine.set_hold_master(bool(initialising(rt.inst)) if initialising is not None else False)
        except Exception as exc:
            log.exception("tracking failed: %s", exc)
        return sum(delta for _, _, delta, _ in parts), any(down for _, _, _, down in parts)

    def _contributions(self, rt: InstanceRuntime) -> List[Tuple[str, str, int, bool]]:
        """(kind, name, priority delta, fault) of everything that moves the instance's priority or makes it FAULT:
        its own interface, no source address, its sync group, each track_interface and each tracker."""
        inst = rt.inst
        parts: List[Tuple[str, str, int, bool]] = []
        # keepalived's dont_track_primary: the instance's own interface going down is not a FAULT
        if not inst.dont_track_primary and not self._link_up(inst.interface):
            parts.append(("interface", f"{inst.interface} down", 0, True))
        if rt.src is None and not rt.unicast:
            parts.append(("interface", f"{inst.interface} has no IPv{rt.family} address", 0, True))
        if inst.unicast_fault_no_peer and not inst.unicast_peer:
            # keepalived: "Cannot use unicast without any peers - going to fault state"
            parts.append(("unicast_fault_no_peer", "no unicast_peer", 0, True))
        if self._ipvlan_unaddressed(inst):
            parts.append(("use_ipvlan", "an IPv4 ipvlan without an address", 0, True))
        configured = inst.unicast_src_ip or inst.mcast_src_ip
        if inst.track_src_ip and configured is not None and rt.ifindex and not any(
                a.index == rt.ifindex and a.address.ip == configured for a in self.addrs):
            # track_src_ip: the configured source address is not on the interface
            parts.append(("track_src_ip", f"{configured} not on {inst.interface}", 0, True))
        # track_group: the interfaces of the static entries naming a group this instance is in
        for name in sorted(self._track_group_interfaces(inst.name)):
            if not self._link_up(name):
                parts.append(("track_group", f"{name} down", 0, True))
        # tracked virtual routes and rules track the interfaces they name (dev, iif, oif), as in keepalived
        for name in sorted({r.dev for r in inst.virtual_routes if not r.no_track and r.dev} | {
                n for r in inst.virtual_rules if not r.no_track for n in (r.iif, r.oif) if n}):
            if not self._link_up(name):
                parts.append(("virtual_routes", f"{name} down", 0, True))
        if self._group_fault(rt):
            parts.append(("sync_group", str(inst.sync_group or "group"), 0, True))
        for ref in inst.track_interface:
            up = self._link_up(ref.name)
            if ref.reverse:
                up = not up
            weight = ref.weight or 0
            delta = weight if (weight > 0 and up) or (weight < 0 and not up) else 0
            parts.append(("track_interface", ref.name, delta, not weight and not up))
        try:
            parts += self.tracking.contributions(inst)
        except Exception as exc:
            log.exception("tracking failed: %s", exc)
        return parts

    def _track_group_interfaces(self, name: str) -> set:
        cfg = self.config
        groups = {g.name for g in cfg.track_groups.values() if name in g.group}
        if not groups:
            return set()
        found = {v.dev or self.g.default_interface for v in cfg.static_ipaddress if v.track_group in groups}
        found |= {r.dev for r in cfg.static_routes if r.track_group in groups and r.dev}
        found |= {r.iif for r in cfg.static_rules if r.track_group in groups and r.iif}
        return found  # type: ignore[return-value]

    def _reevaluate(self) -> None:
        now = self.loop.time()
        for rt in self.runtimes:
            if rt.machine.state in (State.STOP, State.INIT):
                continue
            delta, fault = self._adjustment(rt)
            before = rt.machine.effective_priority
            self._apply(rt, rt.machine.set_effective_priority(now, rt.inst.priority + delta))
            if rt.machine.effective_priority != before:
                self._safe(self.notifier.vrrp_priority_change, rt.inst, rt.machine.state, rt.machine.effective_priority)
                self._publish({"type": "priority", "time": time.time(), "instance": rt.inst.name,
                               "from": before, "to": rt.machine.effective_priority,
                               "detail": self._causes(rt, lambda d, f: d != 0)})
            self._apply(rt, rt.machine.set_fault(now, fault))

    def _causes(self, rt: InstanceRuntime, wanted: Callable[[int, bool], bool]) -> str:
        """The trackers and interfaces behind a change, for a person: `vrrp_script chk -20, interface eth0 down`."""
        words = []
        for kind, name, delta, down in self._contributions(rt):
            if wanted(delta, down):
                words.append(f"{kind} {name}" + (f" {delta:+d}" if delta else "") +
                             (" FAULT" if down and kind != "interface" else ""))
        return ", ".join(words)

    def _record_transition(self, rt: InstanceRuntime, act: Notify) -> None:
        """Keep the last transitions of the instance with their reason, and tell the event stream."""
        detail = act.detail
        cause = ""
        if act.reason == "fault":
            cause = self._causes(rt, lambda d, f: f)
        elif act.reason in ("priority", "preempted", "not-master") or (act.reason == "no-response" and
                                                                       act.state == State.MASTER):
            cause = self._causes(rt, lambda d, f: d != 0)
            cause = f"our priority {act.priority} = {rt.inst.priority} base, {cause}" if cause else ""
        detail = "; ".join(x for x in (detail, cause) if x)
        entry = (time.time(), (rt.last_notified or State.INIT).value, act.state.value, act.reason or "unknown",
                 detail, act.priority)
        rt.record_transition(entry)
        self._publish({"type": "transition", "time": entry[0], "instance": rt.inst.name, "from": entry[1],
                       "to": entry[2], "reason": entry[3], "detail": detail, "priority": act.priority})

    def _publish(self, event: Dict[str, Any]) -> None:
        for sink in list(self.event_sinks):
            self._safe(sink, event)

    def recent_events(self) -> List[Dict[str, Any]]:
        """Every instance's recent transitions, oldest first (what a new --events follower sees first)."""
        return sorted((e for rt in self.runtimes for e in rt.history), key=lambda e: e["time"])

    def _on_tracking_change(self) -> None:
        if not self.stopping:
            self._reevaluate()

    def _on_netlink(self) -> None:
        assert self.monitor is not None
        try:
            events = self.monitor.read()
        except OSError as exc:
            log.error("netlink monitor: %s", exc)
            return
        self._netlink_events(events)

    def _set_linkbeat(self) -> None:
        """keepalived's init_interface_linkbeat: the interfaces of linkbeat_interfaces, and every instance's own
        with linkbeat_use_polling (global or the instance's), have their carrier polled every second; one no
        instance uses is not polled, nor one of our VMACs (netlink works for them)."""
        wanted = dict(self.config.linkbeat_interfaces)
        for inst in self.config.vrrp_instances:
            if inst.interface and (self.g.linkbeat_use_polling or inst.linkbeat_use_polling):
                wanted.setdefault(inst.interface, "")
        used = {rt.inst.interface for rt in self.runtimes} | {
            ref.name for rt in self.runtimes for ref in rt.inst.track_interface}
        polled: Dict[str, Tuple[str, Optional[bool]]] = {}
        for name, kind in wanted.items():
            if name not in used:
                log.info("Turning off linkbeat for %s since not used for tracking", name)
            elif self.vmacs is not None and name in getattr(self.vmacs, "created", {}):
                log.info("Turning off linkbeat for %s since netlink works for vmacs/ipvlans", name)
            else:
                polled[name] = self._linkbeat.get(name, (kind, None))
        self._linkbeat = polled
        if polled and self._linkbeat_timer is None:
            self._linkbeat_poll()
        elif not polled and self._linkbeat_timer is not None:
            self._linkbeat_timer.cancel()
            self._linkbeat_timer = None

    def _linkbeat_poll(self) -> None:
        """Read each polled carrier; a change is a link event, as keepalived's "Linkbeat reports" is."""
        self._linkbeat_timer = self.loop.call_later(LINKBEAT_INTERVAL, self._linkbeat_poll)
        events = []
        for name, (kind, _was) in list(self._linkbeat.items()):
            link = self._link_by_name(name)
            try:
                up = self.kernel.linkbeat(name, kind)[0] if link is not None else False
            except OSError:
                up = False
            self._linkbeat[name] = (kind, up)
            if link is not None and up != link.up:
                log.info("Linkbeat reports %s %s", name, "up" if up else "down")
                events.append((RTM_NEWLINK, self._polled_flags(link, up)))
        if events and not self.stopping:
            self._netlink_events(events, delayed=True)

    @staticmethod
    def _polled_flags(link: LinkInfo, up: bool) -> LinkInfo:
        carrier = IFF_UP | IFF_RUNNING
        return LinkInfo(link.index, link.name, (link.flags & ~carrier) | (carrier if up else 0), link.mac, link.mtu)

    def _if_delays(self, name: str) -> Tuple[float, float]:
        """interface_up_down_delays of `name`, each capped below (down_timer_adverts - 1) advert intervals of
        every instance on it (keepalived's check_debounce_timers), so a peer never sees a gap from it."""
        down, up = self.config.if_up_down_delays.get(name, (0.0, 0.0))
        for rt in self.runtimes:
            if rt.inst.interface == name and (down or up):
                adverts = rt.machine.down_timer_adverts
                cap = 0.0 if adverts == 1 else (adverts - 1) * rt.machine.advert_int - rt.machine.advert_int / 256
                down, up = min(down, cap), min(up, cap)
        return down, up

    def _debounced(self, obj: LinkInfo) -> bool:
        """interface_up_down_delays: True when this link event waits (or a wait is re-aimed) instead of counting.
        A change back to the state that counts before the delay ends cancels it (keepalived's log lines)."""
        old, pending = self.links.get(obj.index), self._link_pending.get(obj.index)
        if pending is not None:
            if pending[1].up == obj.up:
                self._link_pending[obj.index] = (pending[0], obj)  # the same change, newer flags
                return True
            pending[0].cancel()
            del self._link_pending[obj.index]
            log.info("Delay timer for %s cancelled", obj.name)
        if old is None or old.name != obj.name or old.up == obj.up or obj.name not in self._seen_up:
            return False
        delay = self._if_delays(obj.name)[1 if obj.up else 0]
        if not delay:
            return False
        log.info("%s: Adding flags change from 0x%x to 0x%x delay by %d", obj.name, old.flags, obj.flags,
                 int(delay * 1e6))

        def fire(index: int = obj.index) -> None:
            waited = self._link_pending.pop(index, None)
            if waited is not None and not self.stopping:
                self._netlink_events([(RTM_NEWLINK, waited[1])], delayed=True)
        self._link_pending[obj.index] = (self.loop.call_later(delay, fire), obj)
        return True

    def _netlink_events(self, events: List[Tuple[int, Any]], delayed: bool = False) -> None:
        changed = False
        if self.monitor.overrun and self.rtnl is not None:
            self.monitor.overrun = False
            self.links = self.rtnl.links()
            self.addrs = [a for a in self.rtnl.addresses() if a.usable]
            changed = True
        links_changed = changed
        appeared: set = set()
        # the address events of this read, by (index, address), in the order of their last event: the address
        # as it is now, or None (gone, or not usable yet). A takeover of many instances brings one event per
        # VIP: the table is brought up to date once, and the sources looked for once, after them.
        addressed: Dict[Tuple[int, Any], Optional[AddrInfo]] = {}
        for rtype, obj in events:
            if isinstance(obj, AddrInfo) and rtype in (RTM_NEWADDR, RTM_DELADDR):
                key = (obj.index, obj.address)
                addressed.pop(key, None)
                # keepalived 2.3.3: a tentative IPv6 address (DAD running) is not there yet - not a source, not
                # present; the RTM_NEWADDR that ends DAD brings it in
                addressed[key] = obj if rtype == RTM_NEWADDR and obj.usable else None
                if rtype == RTM_DELADDR:
                    self._vip_deleted(obj)
            elif isinstance(obj, LinkInfo):
                if rtype == RTM_DELLINK:
                    pending = self._link_pending.pop(obj.index, None)
                    if pending is not None:
                        pending[0].cancel()
                    changed = self.links.pop(obj.index, None) is not None or changed
                else:
                    if not delayed and obj.name in self._linkbeat and self._linkbeat[obj.name][1] is not None:
                        obj = self._polled_flags(obj, bool(self._linkbeat[obj.name][1]))  # the poll says, not netlink
                    if self.config.if_up_down_delays and not delayed and self._debounced(obj):
                        continue
                    if obj.up:
                        self._seen_up.add(obj.name)
                    old = self.links.get(obj.index)
                    if old is None or old.up != obj.up or old.name != obj.name:
                        changed = True
                    self.links[obj.index] = obj
                    if obj.up and (old is None or not old.up) and not self.stopping:
                        self._interface_up(obj.name)
                    if old is None or old.name != obj.name:
                        appeared.add(obj.name)
                links_changed = True
            elif isinstance(obj, RouteInfo):
                self._route_event(rtype, obj)
        if addressed:
            self.addrs = [a for a in self.addrs if (a.index, a.address) not in addressed] + [
                a for a in addressed.values() if a is not None]
            changed = self._refresh_sources() or any(rt.inst.track_src_ip for rt in self.runtimes) or changed
        if links_changed and not self.stopping:
            changed = self._follow_interfaces() or changed
            if appeared:
                self._vips_on_new_links(appeared)
        if changed and not self.stopping:
            self._reevaluate()

    def _refresh_sources(self) -> bool:
        """An address appeared or went: instances still without a source address may have one now."""
        changed = False
        for rt in self.runtimes:
            if rt.src is None and rt.ifindex:
                rt.src = self._source_address(rt)
                rt.machine.set_primary_ip(rt.src)
                changed = changed or rt.src is not None
        if changed:
            self._update_own_sources()
        return changed

    def _vip_deleted(self, addr: AddrInfo) -> None:
        """A VIP vanished while we hold it (someone ran `ip addr del`): put it back."""
        for rt in self.runtimes:
            if not rt.machine.vips_set:
                continue
            for vip in rt.vips:
                if vip.address.ip == addr.address.ip and self._vip_index(rt, vip) == addr.index:
                    log.warning("(%s) VIP %s was deleted from %s behind our back; re-adding", rt.inst.name,
                                vip.address, self.links[addr.index].name if addr.index in self.links else addr.index)
                    try:
                        assert self.rtnl is not None
                        self.rtnl.add_address(addr.index, vip)
                    except (NetlinkError, OSError) as exc:
                        log.error("(%s) cannot re-add VIP %s: %s", rt.inst.name, vip.address, exc)
                    # the kernel silently drops the routes that used the address (src VIP): send them again
                    for route in rt.routes_set:
                        self._route_op(rt.inst.name, route, add=True)
        for vip in self.static_set[0]:
            if not vip.no_track and vip.address.ip == addr.address.ip and \
                    self._ifindex(vip.dev or self.g.default_interface) == addr.index:
                log.info("Restoring deleted static address %s", vip.address)
                self._static_addr_op(vip, add=True)
                for route in self.static_set[1]:
                    self._route_op("static", route, add=True)

    def _vips_on_new_links(self, names: set) -> None:
        """Interfaces created after we became MASTER (a Neutron qr-/qg- port, a VLAN): put the VIPs, excluded VIPs
        and virtual routes that name them there now, and announce them."""
        for rt in self.runtimes:
            if not rt.machine.vips_set or rt.machine.state != State.MASTER:
                continue
            late = [v for v in rt.vips if v.dev in names and v.dev != rt.inst.interface]
            for vip in late:
                log.info("(%s) interface %s appeared: adding %s", rt.inst.name, vip.dev, vip.address)
                self._vip_op(rt, vip, add=True)
            self._set_routes(rt, add=True)  # those whose interface was missing
            if late:
                self._send_garps(rt, 1)

    def _interface_up(self, name: str) -> None:
        """An interface came (back) up: the kernel dropped the IPv4 routes through it while it was down; put back
        the static addresses and routes on it (keepalived's interface_up), and the virtual routes a MASTER could
        not install while it was down. Rules survive, as in the kernel."""
        for rt in self.runtimes:
            if rt.machine.vips_set and rt.machine.state == State.MASTER:
                self._set_routes(rt, add=True)
        for vip in self.static_set[0]:
            if (vip.dev or self.g.default_interface) == name and not vip.no_track:
                self._static_addr_op(vip, add=True)
        for route in self.static_set[1]:
            if not route.no_track and name in [route.dev] + [nh.dev for nh in route.nexthops]:
                self._route_op("static", route, add=True)

    # -- status ----------------------------------------------------------------------------------
    def _sync_group_status(self) -> List[Dict[str, Any]]:
        return [{"name": name, "state": engine.state.value, "members": list(engine.members)}
                for name, (_sg, engine) in self.sync_groups.items()]

    def status(self) -> Dict[str, Any]:
        """The status document described at format_status_table()."""
        instances = []
        now = self.loop.time()
        for rt in self.runtimes:
            m = rt.machine
            master = None
            if m.state == State.BACKUP:
                # who this BACKUP follows, and when it would take over if that master went silent now
                master = {"address": str(m.master_ip) if m.master_ip else None, "priority": m.master_priority,
                          "last_advert_ago": None if m.last_advert is None else round(now - m.last_advert, 3),
                          "takeover_in": (None if m.master_down_timer is None else
                                          round(max(0.0, m.master_down_timer - now), 3)),
                          "master_down_interval": round(m.master_down_interval, 3)}
            try:
                parts = self._contributions(rt)
            except Exception as exc:  # status must answer even if a tracker is broken
                parts = [("error", str(exc), 0, False)]
            instances.append({
                "name": rt.inst.name, "state": m.state.value, "interface": rt.inst.interface,
                "vrid": m.vrid, "version": rt.version, "priority": m.priority,
                "effective_priority": m.effective_priority,
                "master_address": str(m.master_ip) if m.master_ip else None,
                "vips": [str(v.address) for v in rt.vips],
                "master": master,
                "vip_details": [{"address": str(v.address), "dev": v.dev or rt.inst.interface,
                                 "excluded": v in rt.inst.virtual_ipaddress_excluded} for v in rt.vips],
                "garp_delay": self._garp_params(rt)[0],
                "trackers": [{"kind": k, "name": n, "adds": d, "fault": f} for k, n, d, f in parts],
                "recent_transitions": list(rt.history),
                "stats": {"adverts_sent": rt.adverts_sent, "adverts_received": rt.adverts_received,
                          "bad_packets": dict(rt.bad_packets), "transitions": rt.transitions,
                          "entered": dict(rt.entered), "released_master": rt.released_master,
                          "priority_zero_sent": rt.priority_zero_sent,
                          "by_reason": [{"state": st, "reason": why, "count": n}
                                        for (st, why), n in rt.reasons.items()],
                          "priority_zero_received": rt.priority_zero_received},
            })
        return {"version": __version__, "pid": os.getpid(), "router_id": self.g.router_id,
                "uptime": time.time() - self.started, "instances": instances, "sync_groups": self._sync_group_status(),
                "sockets": self.rx_sockets_status(),
                "trackers": self.tracking.status(), "lvs": self.lvs.status()}


# ============================================================================================
# 11. Command line
# ============================================================================================

# --------------------------------------------------------------------------------------------
# 11.1 Logging, systemd notification, and the status socket
# --------------------------------------------------------------------------------------------

SYSLOG_FACILITIES = {
    "daemon": 3 << 3, "user": 1 << 3,
    **{f"local{n}": (16 + n) << 3 for n in range(8)},
    **{str(n): (16 + n) << 3 for n in range(8)},
}
DEFAULT_CONTROL_SOCKET = "/run/vrrpd/vrrpd.sock"


LEVEL_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR", CRITICAL: "CRITICAL"}


def console_stamp(created: float) -> str:
    """keepalived's console format: `Sun Nov 22 01:02:03 2026: (VI_1) Entering MASTER STATE`."""
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(created))


def log_file_stamp(created: float) -> str:
    """keepalived's log file format (-g): `Tue Dec 01 13:58:52.123456789 2026: (VI_1) Entering MASTER STATE`."""
    lt = time.localtime(created)
    nanoseconds = int(created % 1 * 1e9)
    return f"{time.strftime('%a %b %d %H:%M:%S', lt)}.{nanoseconds:09d} {time.strftime('%Y', lt)}"


class LogStream:
    """Log lines to a text stream (stderr for -l, the -g file), each `STAMP: text` when given a stamp."""

    def __init__(self, stream: Any, stamp: Optional[Callable[[float], str]] = None):
        self.stream = stream
        self.stamp = stamp

    def emit(self, level: int, created: float, text: str) -> None:
        self.stream.write(f"{self.stamp(created)}: {text}\n" if self.stamp else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream not in (sys.stderr, sys.__stderr__):
            self.stream.close()


class SyslogOutput:
    """Log lines to syslog through /dev/log, as logging.handlers.SysLogHandler sends them
    (`<PRI>ident[pid]: text\\0`), without the megabyte logging.handlers costs (python3-minimal lacks its queue)."""

    SEVERITIES = {DEBUG: 7, INFO: 6, WARNING: 4, ERROR: 3, CRITICAL: 2}

    def __init__(self, address: str = "/dev/log", facility: int = 3, ident: str = PROG):
        self.address = address
        self.facility = facility
        self.ident = ident
        self.sock = self._connect()

    def _connect(self) -> socket.socket:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, kind)
            try:
                sock.connect(self.address)
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EPROTOTYPE:
                    raise
        raise OSError(errno.EPROTOTYPE, f"cannot connect to {self.address}")

    def emit(self, level: int, created: float, text: str) -> None:
        prio = self.facility << 3 | self.SEVERITIES.get(level, 4)
        data = f"<{prio}>{self.ident}[{os.getpid()}]: {text}\0".encode("utf-8", "replace")
        try:
            self.sock.sendall(data)
        except OSError:  # syslogd restarted: connect again once
            self.sock.close()
            self.sock = self._connect()
            self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


class Logger:
    """The daemon's logger: logging.Logger's calls (debug/info/warning/error/exception/log, %-style arguments)
    writing to the outputs setup_logging() chose. Not logging itself: logging and what it imports (threading,
    traceback, string, weakref...) cost 1.2 MB of the daemon's resident memory.

    Until the daemon sets its outputs, each call goes to logging.getLogger(name) instead, so that a program or
    test using vrrpd as a library (pytest's caplog) gets logging's records as from any logger."""

    def __init__(self, name: str):
        self.name = name
        self.level = INFO
        self.disabled = False
        self.outputs: Optional[List[Any]] = None  # None: logging's logger of that name has them
        self._lock = allocate_lock()  # the SMTP worker logs from its thread

    def set_outputs(self, outputs: Optional[List[Any]], level: int = INFO) -> None:
        """Write to `outputs` (closing the ones before) from `level` up; None goes back to logging."""
        for old in self.outputs or ():
            if old not in (outputs or ()):
                old.close()
        self.outputs, self.level = outputs, level

    def log(self, level: int, msg: Any, *args: Any, exc_info: bool = False, stacklevel: int = 1) -> None:
        if self.disabled:
            return
        if self.outputs is None:
            import logging

            logging.getLogger(self.name).log(level, msg, *args, exc_info=exc_info, stacklevel=stacklevel + 1)
            return
        if level < self.level:
            return
        created = time.time()
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError, KeyError):  # a bad format: say what there is rather than lose the line
            text = f"{msg} {args!r}"
        if exc_info:
            import traceback

            trace = "".join(traceback.format_exception(*sys.exc_info()))
            text += "\n" + (trace[:-1] if trace.endswith("\n") else trace)
        with self._lock:
            for output in self.outputs:
                try:
                    output.emit(level, created, text)
                except (OSError, ValueError):  # a closed stderr or syslog gone: the others still get it
                    pass

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(DEBUG, msg, *args, stacklevel=2, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(INFO, msg, *args, stacklevel=2, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(WARNING, msg, *args, stacklevel=2, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(ERROR, msg, *args, stacklevel=2, **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(ERROR, msg, *args, exc_info=True, stacklevel=2, **kwargs)


log = Logger(PROG)


def setup_logging(console: bool, detail: bool = False, facility: str = "daemon") -> None:
    """Log to stderr (`-l`) and/or syslog through /dev/log with the `-S` facility; `-D` adds detail lines."""
    outputs: List[Any] = []
    if console:
        outputs.append(LogStream(sys.stderr, console_stamp))
    if os.path.exists("/dev/log"):
        try:
            code = SYSLOG_FACILITIES.get(facility, SYSLOG_FACILITIES["daemon"]) >> 3
            outputs.append(SyslogOutput("/dev/log", facility=code))
        except OSError:
            pass
    if not outputs:
        outputs.append(LogStream(sys.stderr))
    log.set_outputs(outputs, DEBUG if detail else INFO)


def set_syslog_ident(g: GlobalDefs) -> None:
    """keepalived's syslog ident for several daemons on one host: Keepalived_NAMESPACE_INSTANCE; ours is
    vrrpd_NAMESPACE_INSTANCE (either part only when given)."""
    parts = [x for x in (g.net_namespace, g.instance_name) if x]
    if not parts:
        return
    ident = "_".join([PROG] + parts)
    for output in log.outputs or ():
        if isinstance(output, SyslogOutput):
            output.ident = ident


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


def json_text(doc: Any) -> str:
    """json.dumps(doc, indent=2, default=str), also on python3-minimal, which has no json module."""
    try:
        import json
    except ImportError:
        return _small_json(doc, "")
    return json.dumps(doc, indent=2, default=str)


def json_line(doc: Any) -> str:
    """`doc` as JSON on one line (an event of the --events stream), also on python3-minimal."""
    try:
        import json
    except ImportError:
        return re.sub(r"\n *", " ", _small_json(doc, ""))  # strings never hold a raw newline
    return json.dumps(doc, default=str)


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _json_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            code = ord(ch)
            if code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
            else:
                out.append(f"\\u{code:04x}")
    return '"' + "".join(out) + '"'


def _small_json(doc: Any, indent: str) -> str:
    if doc is None or doc is True or doc is False:
        return {None: "null", True: "true", False: "false"}[doc]
    if isinstance(doc, int):
        return int.__repr__(doc)
    if isinstance(doc, float):
        if doc != doc:
            return "NaN"
        if doc in (float("inf"), float("-inf")):
            return "Infinity" if doc > 0 else "-Infinity"
        return float.__repr__(doc)
    if isinstance(doc, str):
        return _json_string(doc)
    inner = indent + "  "
    if isinstance(doc, dict):
        if not doc:
            return "{}"
        items = []
        for key, value in doc.items():
            if not isinstance(key, str):
                key = _small_json(key, "") if key is None or isinstance(key, (bool, int, float)) else str(key)
            items.append(f"{inner}{_json_string(key)}: {_small_json(value, inner)}")
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(doc, (list, tuple)):
        if not doc:
            return "[]"
        return "[\n" + ",\n".join(inner + _small_json(v, inner) for v in doc) + "\n" + indent + "]"
    return _json_string(str(doc))


class _StreamServer:
    """The connections of one listening stream socket on the loop, each a dict with at least "out" (bytes still
    to send) and "timer"; what the servers below share: receiving, flushing, dropping, closing."""

    def __init__(self, loop: EventLoop, sock: socket.socket):
        self.loop = loop
        self.sock = sock
        self.clients: Dict[socket.socket, Dict[str, Any]] = {}  # in the order they came
        loop.add_reader(sock, self._accept)

    def _accept(self) -> None:
        raise NotImplementedError

    def _receive(self, conn: socket.socket, size: int) -> Optional[Tuple[Dict[str, Any], bytes]]:
        """(client, data) for a readable connection; None when there is nothing to do (it is dropped if closed)."""
        client = self.clients.get(conn)
        if client is None:
            return None
        try:
            data = conn.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return None
        return client, data

    def _flush(self, conn: socket.socket) -> Optional[Dict[str, Any]]:
        """Send what the socket takes; the client once all of it is sent, else None (more to send, or dropped)."""
        client = self.clients.get(conn)
        if client is None:
            return None
        try:
            sent = conn.send(client["out"])
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            self._drop(conn)
            return None
        del client["out"][:sent]
        return None if client["out"] else client

    def _drop(self, conn: socket.socket) -> None:
        client = self.clients.pop(conn, None)
        if client is not None:
            client["timer"].cancel()
        for remove in (self.loop.remove_reader, self.loop.remove_writer):
            try:
                remove(conn)
            except (KeyError, ValueError):
                pass
        conn.close()

    def close(self) -> None:
        for conn in list(self.clients):
            self._drop(conn)
        self.loop.remove_reader(self.sock)
        self.sock.close()


class ControlServer(_StreamServer):
    """The daemon's unix stream socket. A client sends one request line: `status` gets the status document
    (the dict documented at format_status_table()) as JSON; `events` subscribes to the event stream, one JSON
    object a line: the recent transitions first, then each event as it happens (see Daemon._publish). A client
    that sends nothing within request_timeout gets the status (as before requests existed).

    Everything is non-blocking on the loop: a status reader that does not read is dropped after a second, an
    event subscriber whose unread backlog passes max_backlog is dropped (it never holds up the daemon), and at
    most max_clients connections are open at once (the oldest is closed to make room)."""

    request_timeout = 0.2
    max_backlog = 256 * 1024
    max_clients = 32

    def __init__(self, loop: EventLoop, path: str, status: Callable[[], Dict[str, Any]],
                 history: Optional[Callable[[], List[Dict[str, Any]]]] = None):
        self.path = path
        self.status = status
        self.history = history or (lambda: [])
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o660)
        sock.listen(8)
        sock.setblocking(False)
        super().__init__(loop, sock)

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.setblocking(False)
        while len(self.clients) >= self.max_clients:
            self._drop(next(iter(self.clients)))
        client = {"kind": "request", "request": b"", "out": bytearray(),
                  "timer": self.loop.call_later(self.request_timeout, self._answer, conn, "status")}
        self.clients[conn] = client
        self.loop.add_reader(conn, self._readable, conn)

    def _readable(self, conn: socket.socket) -> None:
        received = self._receive(conn, 512)
        if received is None:
            return
        client, data = received
        if client["kind"] == "request":
            client["request"] += data
            if b"\n" in client["request"] or len(client["request"]) > 256:
                self._answer(conn, client["request"].split(b"\n")[0].strip().decode(errors="replace"))
        # a subscriber has nothing to say: what it sends is read and ignored

    def _answer(self, conn: socket.socket, request: str) -> None:
        client = self.clients.get(conn)
        if client is None or client["kind"] != "request":
            return
        client["timer"].cancel()
        if request == "events":
            client["kind"] = "events"
            for event in self.history():
                self._queue(conn, client, (json_line(event) + "\n").encode())
            return
        client["kind"] = "reply"
        self.loop.remove_reader(conn)
        doc = self.status() if request in ("status", "") else {"error": f"unknown request {request[:40]!r}"}
        client["timer"] = self.loop.call_later(1.0, self._drop, conn)
        self._queue(conn, client, (json_text(doc) + "\n").encode())

    def publish(self, event: Dict[str, Any]) -> None:
        """Send one event to every subscriber (never waits for one)."""
        line = None
        for conn, client in list(self.clients.items()):
            if client["kind"] == "events":
                line = line or (json_line(event) + "\n").encode()
                self._queue(conn, client, line)

    def _queue(self, conn: socket.socket, client: Dict[str, Any], data: bytes) -> None:
        was_empty = not client["out"]
        client["out"] += data
        if len(client["out"]) > self.max_backlog:
            log.warning("control socket: an --events reader is %d bytes behind; dropped", len(client["out"]))
            self._drop(conn)
            return
        self._write(conn)
        if was_empty and client["out"] and conn in self.clients:
            self.loop.add_writer(conn, self._write, conn)

    def _write(self, conn: socket.socket) -> None:
        client = self._flush(conn)
        if client is None:
            return
        try:
            self.loop.remove_writer(conn)
        except (KeyError, ValueError):
            pass
        if client["kind"] == "reply":
            self._drop(conn)

    def close(self) -> None:
        super().close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


# keepalived's numbers for the states (vrrp.h VRRP_STATE_*), as keepalived-exporter exports them
KEEPALIVED_STATE_NUMBERS = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3, "STOP": 98}
# keepalived-exporter's per-instance error counters <- the vrrpd bad-packet reasons each one counts
KEEPALIVED_ERROR_COUNTERS = (
    ("keepalived_packet_length_errors_total", "Packet length errors", ("truncated", "bad_length", "ah_short")),
    ("keepalived_advertisements_interval_errors_total", "Advertisement interval errors", ("bad_interval",)),
    ("keepalived_ip_ttl_errors_total", "TTL errors", ("bad_ttl",)),
    ("keepalived_invalid_type_received_total", "Invalid type errors", ("bad_type",)),
    ("keepalived_address_list_errors_total", "Address list errors", ("addr_mismatch",)),
    ("keepalived_authentication_invalid_total", "Authentication invalid", ("auth_invalid",)),
    ("keepalived_authentication_mismatch_total", "Authentication mismatch", ("auth_type_mismatch",)),
    ("keepalived_authentication_failure_total", "Authentication failure", ("auth_failure", "ah_icv", "ah_spi")),
)


class _Exposition:
    """Samples grouped by metric family, written in the Prometheus text exposition format (version 0.0.4)."""

    def __init__(self) -> None:
        self.families: Dict[str, Tuple[str, str, List[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, labels: Dict[str, Any], value: Any) -> None:
        family = self.families.setdefault(name, (kind, help_text, []))
        text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        family[2].append(f"{name}{{{text}}} {_sample_value(value)}" if text else f"{name} {_sample_value(value)}")

    def declare(self, name: str, kind: str, help_text: str) -> None:
        self.families.setdefault(name, (kind, help_text, []))

    def text(self) -> str:
        out = []
        for name, (kind, help_text, samples) in self.families.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"] + samples
        return "\n".join(out) + "\n"


def _label_value(value: Any) -> str:
    return str("" if value is None else value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample_value(value: Any) -> str:
    if value is None:
        return "NaN"
    if value is True or value is False:
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def format_metrics(status: Dict[str, Any]) -> str:
    """The status document (format_status_table()) as Prometheus metrics: keepalived-exporter's names and labels
    (so its dashboards and alerts work unchanged), then vrrpd's own (`vrrpd_*`)."""
    m = _Exposition()
    m.add("keepalived_up", "gauge", "Status", {}, 1)
    m.add("vrrpd_build_info", "gauge", "vrrpd version", {"version": status.get("version", "")}, 1)
    counters = (("keepalived_advertisements_received_total", "Advertisements received", "adverts_received"),
                ("keepalived_advertisements_sent_total", "Advertisements sent", "adverts_sent"),
                ("keepalived_become_master_total", "Became master", None),
                ("keepalived_release_master_total", "Released master", "released_master"))
    for inst in status.get("instances", []):
        st = inst.get("stats") or {}
        bad = st.get("bad_packets") or {}
        common = {"iname": inst.get("name"), "intf": inst.get("interface"), "vrid": inst.get("vrid")}
        state = KEEPALIVED_STATE_NUMBERS.get(inst.get("state", ""), 0)
        vips = inst.get("vip_details") or []
        for vip in vips:
            labels = {"iname": inst.get("name"), "intf": vip.get("dev"), "vrid": inst.get("vrid"),
                      "ip_address": vip.get("address")}
            if vip.get("excluded"):
                m.add("keepalived_vrrp_excluded_state", "gauge", "State of vrrp with excluded VIP", labels, state)
            else:
                m.add("keepalived_vrrp_state", "gauge", "State of vrrp", labels, state)
        if not [v for v in vips if not v.get("excluded")]:
            m.add("keepalived_vrrp_state", "gauge", "State of vrrp", {**common, "ip_address": ""}, state)
        m.add("keepalived_gratuitous_arp_delay_total", "counter", "Gratuitous ARP delay", common,
              int(inst.get("garp_delay") or 0))
        for name, help_text, key in counters:
            value = (st.get("entered") or {}).get("MASTER", 0) if key is None else st.get(key, 0)
            m.add(name, "counter", help_text, common, value)
        for name, help_text, reasons in KEEPALIVED_ERROR_COUNTERS:
            m.add(name, "counter", help_text, common, sum(bad.get(r, 0) for r in reasons))
        m.add("keepalived_priority_zero_received_total", "counter", "Priority zero received", common,
              st.get("priority_zero_received", 0))
        m.add("keepalived_priority_zero_sent_total", "counter", "Priority zero sent", common,
              st.get("priority_zero_sent", 0))
    trackers = status.get("trackers") or {}
    for name, info in sorted((trackers.get("vrrp_script") or {}).items()):
        if info.get("state") in ("GOOD", "BAD"):  # keepalived-exporter: BAD 0, GOOD 1
            m.add("keepalived_script_status", "gauge", "Tracker Script Status", {"name": name},
                  int(info["state"] == "GOOD"))
        m.add("keepalived_script_state", "gauge", "Tracker Script State", {"name": name},
              int(bool(info.get("running"))))  # idle 0, running 1
    # -- vrrpd's own ---------------------------------------------------------------------------
    for inst in status.get("instances", []):
        st = inst.get("stats") or {}
        common = {"iname": inst.get("name"), "intf": inst.get("interface"), "vrid": inst.get("vrid")}
        m.add("vrrpd_priority", "gauge", "Configured priority", common, inst.get("priority"))
        m.add("vrrpd_effective_priority", "gauge", "Priority now, with the trackers' weights", common,
              inst.get("effective_priority"))
        m.declare("vrrpd_transitions_total", "counter", "State changes by the state entered and the reason")
        for row in st.get("by_reason") or []:
            m.add("vrrpd_transitions_total", "counter", "", {**common, "state": row.get("state"),
                                                              "reason": row.get("reason")}, row.get("count", 0))
        m.declare("vrrpd_recent_transition_timestamp_seconds", "gauge",
                  "When each of the last transitions happened (index 0 is the latest), with its reason")
        for index, event in enumerate(reversed(inst.get("recent_transitions") or [])):
            m.add("vrrpd_recent_transition_timestamp_seconds", "gauge", "",
                  {**common, "index": index, "from": event.get("from"), "to": event.get("to"),
                   "reason": event.get("reason")}, event.get("time"))
        m.declare("vrrpd_bad_packets_total", "counter", "Adverts dropped or flagged, by reason")
        for reason, count in sorted((st.get("bad_packets") or {}).items()):
            m.add("vrrpd_bad_packets_total", "counter", "", {**common, "reason": reason}, count)
        master = inst.get("master") or {}
        if master.get("takeover_in") is not None:
            m.add("vrrpd_backup_takeover_seconds", "gauge", "A BACKUP takes over in this many seconds without "
                  "an advert", common, master["takeover_in"])
        m.declare("vrrpd_tracker_priority_delta", "gauge", "What each tracker adds to the priority now")
        for t in inst.get("trackers") or []:
            labels = {"iname": inst.get("name"), "kind": t.get("kind"), "name": t.get("name")}
            m.add("vrrpd_tracker_priority_delta", "gauge", "", labels, t.get("adds", 0))
            m.add("vrrpd_tracker_fault", "gauge", "1 while the tracker puts the instance in FAULT", labels,
                  bool(t.get("fault")))
    for name, info in sorted((trackers.get("vrrp_script") or {}).items()):
        m.add("vrrpd_script_runs_total", "counter", "Runs of the vrrp_script", {"name": name}, info.get("runs", 0))
        if info.get("last_duration") is not None:
            m.add("vrrpd_script_last_run_seconds", "gauge", "How long the last run took", {"name": name},
                  info["last_duration"])
    server = status.get("metrics_server") or {}
    if server:
        m.add("vrrpd_metrics_scrapes_total", "counter", "Scrapes of /metrics served", {}, server.get("scrapes", 0))
        m.add("vrrpd_metrics_connections_evicted_total", "counter", "Metrics connections closed to make room for "
              "newer ones (max_clients)", {}, server.get("evicted", 0))
        m.add("vrrpd_metrics_connections", "gauge", "Metrics connections open now", {}, server.get("open", 0))
    lvs = status.get("lvs") if isinstance(status.get("lvs"), dict) else {}
    for vs in lvs.get("virtual_servers") or []:
        m.add("vrrpd_virtual_server_quorum_up", "gauge", "1 while the virtual server has its quorum",
              {"virtual_server": vs.get("name")}, bool(vs.get("quorum_up", True)))
        for rs in vs.get("real_servers") or []:
            labels = {"virtual_server": vs.get("name"), "real_server": f"{rs.get('address')}:{rs.get('port')}"}
            m.add("vrrpd_real_server_weight", "gauge", "Weight of the real server in IPVS", labels, rs.get("weight"))
            m.add("vrrpd_real_server_alive", "gauge", "1 while the real server's checkers pass", labels,
                  bool(rs.get("alive")))
            for n, chk in enumerate(rs.get("checkers") or []):
                clabels = {**labels, "checker": chk.get("kind"), "index": n}
                m.add("vrrpd_checker_up", "gauge", "1 while the checker says up", clabels, bool(chk.get("up")))
                m.add("vrrpd_checker_results_total", "counter", "Checks done, by result", {**clabels, "result": "ok"},
                      chk.get("ok_total", 0))
                m.add("vrrpd_checker_results_total", "counter", "", {**clabels, "result": "failed"},
                      chk.get("failed_total", 0))
                if chk.get("latency") is not None:
                    m.add("vrrpd_checker_latency_seconds", "gauge", "How long the last check took", clabels,
                          chk["latency"])
    return m.text()


class MetricsServer(_StreamServer):
    """HTTP GET /metrics (Prometheus text format) on the event loop, safe against slow or hostile scrapers.

    Nothing blocks: at most max_clients connections are open (the oldest is closed to make room for a new one),
    a request may be max_request bytes, and a connection gets idle_timeout seconds, from accept to the last
    byte of the reply, whatever it sends meanwhile (1 byte a second does not keep it open). The reply is
    rendered once the request is complete (at most once per render_interval, however many ask) and written as
    the socket takes it. So a scraper costs at most max_clients x (max_request + one reply) of memory and at
    most one render per render_interval of loop time."""

    max_clients = 16
    max_request = 8192
    idle_timeout = 5.0
    accepts_per_wakeup = 8  # half of max_clients: a new connection outlives the next pass, so its request is read
    render_interval = 0.25

    def __init__(self, loop: EventLoop, address: str, render: Callable[[], str]):
        host, port = parse_listen(address)
        self.render = render
        self.scrapes = 0
        self.evicted = 0
        self._body: Optional[str] = None
        self._rendered_at = 0.0
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.address = sock.getsockname()[:2]
        self.listen = address
        super().__init__(loop, sock)

    def _accept(self) -> None:
        for _ in range(self.accepts_per_wakeup):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: say so, keep serving the others
                log.warning("metrics: accept failed: %s", exc)
                return
            conn.setblocking(False)
            if len(self.clients) >= self.max_clients:
                # make room: the oldest that has not finished its request yet, else the oldest
                self.evicted += 1
                self._drop(next((c for c, v in self.clients.items() if v["out"] is None), next(iter(self.clients))))
            self.clients[conn] = {"in": bytearray(), "out": None,
                                  "timer": self.loop.call_later(self.idle_timeout, self._drop, conn)}
            self.loop.add_reader(conn, self._readable, conn)

    def _readable(self, conn: socket.socket) -> None:
        received = self._receive(conn, 4096)
        if received is None:
            return
        client, data = received
        if client["out"] is not None:
            return  # answering already: what else comes is ignored
        client["in"] += data
        head_end = client["in"].find(b"\r\n\r\n")
        if head_end < 0:
            head_end = client["in"].find(b"\n\n")
        if head_end < 0:
            if len(client["in"]) > self.max_request:
                self._reply(conn, client, 431, "Request Header Fields Too Large", "request too large\n")
            return
        self._answer(conn, client, bytes(client["in"][:head_end]))

    def _answer(self, conn: socket.socket, client: Dict[str, Any], head: bytes) -> None:
        words = head.split(b"\n", 1)[0].decode("latin-1").split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self._reply(conn, client, 400, "Bad Request", "bad request\n")
            return
        method, target = words[0], words[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            self._reply(conn, client, 405, "Method Not Allowed", "only GET\n")
        elif target == "/metrics":
            self.scrapes += 1
            try:
                now = self.loop.time()
                if self._body is None or now - self._rendered_at >= self.render_interval:
                    self._body, self._rendered_at = self.render(), now
                body = self._body
            except Exception as exc:  # a bug in a metric must not take the daemon down
                log.exception("metrics: rendering failed: %s", exc)
                self._reply(conn, client, 500, "Internal Server Error", "rendering failed\n")
                return
            self._reply(conn, client, 200, "OK", body, "text/plain; version=0.0.4; charset=utf-8", method == "HEAD")
        elif target == "/":
            self._reply(conn, client, 200, "OK", '<html><body><a href="/metrics">metrics</a></body></html>\n',
                        "text/html")
        else:
            self._reply(conn, client, 404, "Not Found", "not found (try /metrics)\n")

    def _reply(self, conn: socket.socket, client: Dict[str, Any], code: int, reason: str, body: str,
               content_type: str = "text/plain; charset=utf-8", head_only: bool = False) -> None:
        data = body.encode()
        client["in"] = bytearray()
        client["out"] = bytearray(f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
                                  f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode())
        if not head_only:
            client["out"] += data
        self._write(conn)
        if conn in self.clients and client["out"]:
            self.loop.add_writer(conn, self._write, conn)

    def _write(self, conn: socket.socket) -> None:
        if self._flush(conn) is not None:
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._drop(conn)


def query_status(path: str = DEFAULT_CONTROL_SOCKET, timeout: float = 3.0) -> Dict[str, Any]:
    """Ask a running daemon for its status (the client side of ControlServer)."""
    json = need_module("json", "--status and --json")

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"status\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return json.loads(b"".join(chunks).decode())


def follow_events(path: str = DEFAULT_CONTROL_SOCKET, timeout: float = 3.0) -> Any:
    """Subscribe to a running daemon's event stream: yields one event dict at a time, until the daemon goes."""
    json = need_module("json", "--events")

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"events\n")
        sock.settimeout(None)
        pending = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line.decode())


def _clock(stamp: Any) -> str:
    """A wall-clock time for a person: `2026-12-01 11:20:03.125`."""
    t = float(stamp or 0)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def format_event(event: Dict[str, Any]) -> str:
    """One line of `vrrpd --events` for a person."""
    head = f"{_clock(event.get('time'))} {event.get('instance', '-')}"
    detail = f": {event['detail']}" if event.get("detail") else ""
    if event.get("type") == "transition":
        return (f"{head} {event.get('from')} -> {event.get('to')} ({event.get('reason')}{detail}) "
                f"priority {event.get('priority')}")
    if event.get("type") == "priority":
        return f"{head} priority {event.get('from')} -> {event.get('to')}" + (f" ({event['detail']})" if detail else "")
    return f"{head} {event.get('type')}{detail}"


def _table(rows: List[Tuple[str, ...]]) -> List[str]:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _explain_instance(inst: Dict[str, Any]) -> List[str]:
    """--status in words for one instance: whom a BACKUP follows, what makes up the priority, the last transitions."""
    name, lines = inst.get("name", "?"), []
    master = inst.get("master")
    if inst.get("state") == "BACKUP" and master:
        if master.get("address") and master.get("last_advert_ago") is not None:
            text = (f"{name}: master {master['address']} at priority {master.get('priority')}, "
                    f"last advert {float(master['last_advert_ago']):.2f} s ago")
        else:
            text = f"{name}: no master heard yet"
        if master.get("takeover_in") is not None:
            text += f"; takes over in {float(master['takeover_in']):.2f} s unless an advert comes"
            if master.get("priority") is not None and 0 < master["priority"] < inst.get("effective_priority", 0):
                text += " (preempting a lower priority)"
        lines.append(text)
    trackers = inst.get("trackers") or []
    faults = [f"{t.get('kind')} {t.get('name')}" for t in trackers if t.get("fault")]
    if inst.get("state") == "FAULT" and faults:
        lines.append(f"{name}: FAULT because of " + ", ".join(faults))
    if trackers:
        words = [f"{t.get('kind')} {t.get('name')} {int(t.get('adds', 0)):+d}" + (" FAULT" if t.get("fault") else "")
                 for t in trackers]
        lines.append(f"{name}: priority {inst.get('effective_priority')} = {inst.get('priority')} base; "
                     + ", ".join(words))
    history = inst.get("recent_transitions") or []
    if history:
        lines.append(f"{name}: last {len(history)} transition(s):")
        lines += [f"  {format_event(e)}" for e in history]
    return lines


def format_status_table(status: Dict[str, Any]) -> str:
    """Render the daemon's status for a human (`vrrpd --status`).

    The status dict: {"version", "pid", "router_id", "uptime", ["config_file", "reloads": {"done", "failed", "last"}],
      "instances": [{"name", "state", "interface", "vrid", "version", "priority", "effective_priority",
                     "master_address", "vips": [str], "master": None or (BACKUP) {"address", "priority",
                     "last_advert_ago", "takeover_in", "master_down_interval"}, "trackers": [{"kind", "name",
                     "adds", "fault"}], "recent_transitions": [event (see format_event)],
                     "stats": {"adverts_sent", "adverts_received",
                     "bad_packets": {reason: n}, "transitions", "entered": {state: n}, "released_master",
                     "priority_zero_sent", "priority_zero_received"}}],
      "sync_groups": [{"name", "state", "members": [str]}],
      "trackers": {"vrrp_script": {name: {"state", "weight", "last_status", ...}}, "track_file": {name: {"path",
                   "value", "weight"}}, "track_process": {name: {"state", "count", "quorum", ...}}},
      "lvs": {"error", "virtual_servers": [{"name", "quorum_up", "real_servers": [{"address", "port", "alive",
              "weight", "checkers": [{"kind", "up", "last"}]}]}]}}"""
    head = (f"vrrpd {status.get('version', '?')} pid {status.get('pid', '?')} "
            f"router_id {status.get('router_id', '?')} up {float(status.get('uptime', 0)):.0f}s")
    if status.get("config_file"):
        head += f" config {status['config_file']}"
    lines = [head]
    reloads = status.get("reloads") or {}
    last = reloads.get("last")
    if last:
        ago = time.time() - float(last.get("at", time.time()))
        what = "ok" if last.get("ok") else f"FAILED ({len(last.get('errors', []))} error(s), old config kept)"
        lines.append(f"reloads {reloads.get('done', 0)} done, {reloads.get('failed', 0)} failed; "
                     f"last {ago:.0f}s ago: {what}")
    rows: List[Tuple[str, ...]] = [("INSTANCE", "STATE", "IF", "VRID", "PRIO", "EFF", "MASTER", "VIPS",
                                    "SENT", "RCVD", "BAD")]
    for inst in status.get("instances", []):
        st = inst.get("stats") or {}
        rows.append((
            str(inst.get("name", "")), str(inst.get("state", "")), str(inst.get("interface", "")),
            str(inst.get("vrid", "")), str(inst.get("priority", "")), str(inst.get("effective_priority", "")),
            str(inst.get("master_address") or "-"), ",".join(inst.get("vips", [])) or "-",
            str(st.get("adverts_sent", "-")), str(st.get("adverts_received", "-")),
            str(sum((st.get("bad_packets") or {}).values())) if st else "-",
        ))
    lines += _table(rows)
    for inst in status.get("instances", []):
        lines += _explain_instance(inst)
    for group in status.get("sync_groups", []):
        lines.append(f"sync group {group.get('name')}: {group.get('state')} ({', '.join(group.get('members', []))})")
    trackers = status.get("trackers") or {}
    rows = [("TRACKER", "KIND", "STATE", "WEIGHT", "DETAIL")]
    for name, info in sorted((trackers.get("vrrp_script") or {}).items()):
        detail = info.get("problem") or f"last exit {info.get('last_status')}, {info.get('runs', 0)} runs"
        rows.append((name, "script", str(info.get("state", "")), str(info.get("weight", "")), str(detail)))
    for name, info in sorted((trackers.get("track_file") or {}).items()):
        rows.append((name, "file", f"value {info.get('value')}", str(info.get("weight", "")), str(info.get("path"))))
    for name, info in sorted((trackers.get("track_process") or {}).items()):
        rows.append((name, "process", str(info.get("state", "")), "",
                     f"{info.get('count')} running, quorum {info.get('quorum')}"))
    if len(rows) > 1:
        lines += _table(rows)
    lvs = status.get("lvs") or {}
    if isinstance(lvs, dict) and lvs.get("error"):
        lines.append(f"LVS: {lvs['error']}")
    rows = [("VIRTUAL SERVER", "QUORUM", "REAL SERVER", "ALIVE", "WEIGHT", "CHECKERS")]
    for vs in lvs.get("virtual_servers", []) if isinstance(lvs, dict) else []:
        quorum = "up" if vs.get("quorum_up", True) else "LOST"
        for rs in vs.get("real_servers", []) or [{}]:
            checks = " ".join(f"{c.get('kind')}:{'up' if c.get('up') else 'down'}" for c in rs.get("checkers", []))
            rows.append((str(vs.get("name", "")), quorum, f"{rs.get('address', '-')}:{rs.get('port', '-')}",
                         "yes" if rs.get("alive") else "no", str(rs.get("weight", "")), checks or "-"))
    if len(rows) > 1:
        lines += _table(rows)
    return "\n".join(lines) + "\n"


def check_command(path: Optional[str], out: Any = None, config_id: Optional[str] = None) -> int:
    """`--check`: print every problem, then what would run; 0 without errors, 1 with."""
    out = out if out is not None else sys.stdout
    path = path or default_config_path()
    config, diags = parse_config(path, check_interfaces=False, config_id=config_id)
    errors = sum(1 for d in diags if d.severity is Severity.ERROR)
    lines = [str(d) for d in diags] + (config_summary(config) if errors == 0 else [])
    lines.append(f"{path}: {errors} error(s), {len(diags) - errors} warning(s)")
    try:
        out.write("\n".join(lines) + "\n")
        out.flush()
    except BrokenPipeError:  # `vrrpd --check | head`: the reader left; the verdict still stands
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return 1 if errors else 0


# --------------------------------------------------------------------------------------------
# 11.2 Running the daemon, and the namespace demo; its Lab (namespaces on one bridge, iproute2 only) is
#      also the lab of test_vrrpd.py's integration tests
# --------------------------------------------------------------------------------------------

DEMO_VIP = "192.0.2.100"
DEMO_CONFIG = """\
! vrrpd demo node {node}: the two-node pair of the keepalived tutorials, VRRPv3 at 100 ms
global_defs {{
    router_id demo-{node}
    vrrp_version 3
{handover}}}
vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        {vip}/24 dev eth0 label eth0:vip
    }}
}}
"""
# The demo's two planned stops of the master: (column title, vrrp_handover_on_stop)
DEMO_STOPS = (("keepalived-style stop", False), ("vrrp_handover_on_stop", True))


class EchoProbe:
    """vrrpd's own ping, the demo client's probe: an ICMP echo request to `target` every `interval` seconds
    from a raw socket, replies matched by identifier and sequence number. It counts what ping counts (sent,
    received, lost) and the longest time between two replies, which is what a client of the VIP notices."""

    def __init__(self, target: str, interval: float = 0.01, wait: float = 1.0) -> None:
        self.target = ipaddress.IPv4Address(target)
        self.interval, self.wait = interval, wait
        self.ident = os.getpid() & 0xFFFF
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        self.sent = 0
        self.last_sent = 0.0
        self.replies: Dict[int, float] = {}  # sequence number -> when its reply came

    def send(self, now: float) -> None:
        seq = self.sent & 0xFFFF
        payload = struct.pack("!d", now) + bytes(48)  # 64 bytes of ICMP, as ping sends
        csum = inet_checksum(struct.pack("!BBHHH", 8, 0, 0, self.ident, seq) + payload)
        try:
            self.sock.sendto(struct.pack("!BBHHH", 8, 0, csum, self.ident, seq) + payload, (str(self.target), 0))
        except OSError:
            pass  # no route for a moment: sent and lost, as ping counts it
        self.sent += 1
        self.last_sent = now

    def receive(self, now: float) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            ihl = (data[0] & 0x0F) * 4
            if len(data) < ihl + 8 or data[12:16] != self.target.packed:
                continue
            kind, _code, _csum, ident, seq = struct.unpack_from("!BBHHH", data, ihl)
            if kind == 0 and ident == self.ident and seq < self.sent and seq not in self.replies:
                self.replies[seq] = now

    def run(self, stop_fd: Optional[int] = None, duration: float = 60.0,
            on_first_reply: Optional[Callable[[], Any]] = None) -> Dict[str, Any]:
        """Send until `duration` has passed or `stop_fd` is readable (a line, or closed), then wait up to
        `wait` for the last replies; return the figures."""
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        if stop_fd is not None:
            sel.register(stop_fd, selectors.EVENT_READ)
        start = next_send = time.monotonic()
        stop_at = start + duration
        try:
            while True:
                now = time.monotonic()
                if now < stop_at and now >= next_send:
                    self.send(now)
                    next_send = max(next_send + self.interval, now)
                if now >= stop_at and (now >= stop_at + self.wait or len(self.replies) == self.sent):
                    break
                timeout = (next_send if now < stop_at else stop_at + self.wait) - now
                for key, _events in sel.select(max(0.0, timeout)):
                    if key.fileobj is self.sock:
                        first = not self.replies
                        self.receive(time.monotonic())
                        if first and self.replies and on_first_reply is not None:
                            on_first_reply()
                    else:  # the controller says stop
                        sel.unregister(key.fileobj)
                        stop_at = min(stop_at, time.monotonic())
        finally:
            sel.close()
        return self.result(start)

    def result(self, start: float) -> Dict[str, Any]:
        """sent, received, lost, and longest_gap: the longest time without a reply, from the first reply to
        the last (or to the last request, when the requests after the last reply were lost)."""
        stamps = sorted(self.replies.values())
        if stamps and max(self.replies) < (self.sent - 1) & 0xFFFF:
            stamps.append(self.last_sent)
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        longest = max(gaps) if gaps else (self.last_sent - start if not stamps else 0.0)
        return {"sent": self.sent, "received": len(self.replies), "lost": self.sent - len(self.replies),
                "longest_gap": round(longest, 4), "interval": self.interval}


def demo_probe_command(target: str) -> int:
    """--demo-probe ADDRESS, which the demo runs in the client's namespace: echo requests to ADDRESS until
    stdin has a line or closes; "ready" on the first reply, then one JSON line with EchoProbe's figures."""
    import json

    try:
        probe = EchoProbe(target)
    except (OSError, ValueError) as exc:
        print(f"{PROG}: probe: {exc}", file=sys.stderr)
        return 1
    result = probe.run(stop_fd=sys.stdin.fileno(), on_first_reply=lambda: print("ready", flush=True))
    print(json.dumps(result), flush=True)
    return 0


def demo_prerequisites() -> List[str]:
    """What the demo lacks on this machine, each said as what is missing and how to get it (empty: none).
    Only python3 and iproute2 are needed, with root and a kernel with network namespaces, veth and bridges."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root, to create network namespaces: run `sudo make demo` (or `sudo python3 vrrpd.py --demo`)")
    if which("ip") is None:
        missing.append("iproute2's `ip` command, which is not in PATH: install iproute2 "
                       "(Debian/Ubuntu: `sudo apt-get install iproute2`; Fedora/RHEL: `sudo dnf install iproute`)")
    if missing:
        return missing
    lab = None
    try:  # a lab of one host, built and removed again
        lab = Lab("vdchk")
        lab.host("h", "192.0.2.1/24")
    except (OSError, subprocess.SubprocessError) as exc:
        said = getattr(exc, "stderr", None) or str(exc)
        argv = getattr(exc, "cmd", None) or ["ip"]
        return [f"network namespaces, veth and bridge devices (`{' '.join(argv)}` says: {said.strip()}): the kernel "
                "needs CONFIG_NET_NS, CONFIG_VETH and CONFIG_BRIDGE (`sudo modprobe veth bridge` loads the modules); "
                "in a container, run it privileged (docker run --privileged)"]
    finally:
        if lab is not None:
            lab.close()
    return []


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll predicate() until it returns a true value and return that value; None once `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


class Lab:
    """A throw-away network: namespaces joined by a bridge (in its own namespace), removed again by close().

    The demo's network, and the one the lab tests of test_vrrpd.py build on. Names are unique per lab
    (`prefix` and a random tag), so several labs, and several runs, can coexist. Needs only iproute2."""

    def __init__(self, prefix: str = "vt") -> None:
        self.tag = prefix + os.urandom(3).hex()
        self.namespaces: List[str] = []
        self.processes: List[subprocess.Popen] = []
        self._port = 0
        try:
            self.bridge_ns = self.netns("br")
            self.ip("link", "add", "br0", "type", "bridge", ns=self.bridge_ns)
            # VRRP multicast must not be eaten by IGMP snooping
            self.ip("link", "set", "br0", "type", "bridge", "mcast_snooping", "0", ns=self.bridge_ns)
            self.ip("link", "set", "br0", "up", ns=self.bridge_ns)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def sh(cmd: List[str], check: bool = True, timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, check=check, timeout=timeout, capture_output=True, text=True, **kw)

    def netns(self, short: str) -> str:
        name = f"{self.tag}{short}"
        self.sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.ip("link", "set", "lo", "up", ns=name)
        return name

    def ip(self, *args: str, ns: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        return self.sh(["ip"] + (["-n", ns] if ns else []) + list(args), check=check)

    def host(self, short: str, address: str, ifname: str = "eth0") -> str:
        """A namespace with one interface `ifname` on the lab bridge, holding `address` (CIDR)."""
        ns = self.netns(short)
        self.port(ns, ifname, address)
        return ns

    def port(self, ns: str, ifname: str, address: str) -> None:
        """One more interface `ifname` of namespace `ns` on the lab bridge, holding `address` (CIDR)."""
        self._port += 1
        peer = f"p{self._port}"
        self.ip("link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", peer, "netns", self.bridge_ns)
        self.ip("link", "set", peer, "master", "br0", "up", ns=self.bridge_ns)
        self.ip("addr", "add", address, "dev", ifname, ns=ns)
        self.ip("link", "set", ifname, "up", ns=ns)

    def link(self, ns: str, ifname: str, up: bool) -> None:
        self.ip("link", "set", ifname, "up" if up else "down", ns=ns)

    def addresses(self, ns: str, ifname: str = "eth0") -> List[str]:
        out = self.ip("-o", "addr", "show", "dev", ifname, ns=ns, check=False).stdout
        return [line.split()[3] for line in out.splitlines() if " inet" in line]

    def has_address(self, ns: str, address: str, ifname: str = "eth0") -> bool:
        return any(a.split("/")[0] == address for a in self.addresses(ns, ifname))

    def exec(self, ns: str, cmd: List[str], **kw: Any) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, **kw)
        self.processes.append(proc)
        return proc

    def run(self, ns: str, cmd: List[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.sh(["ip", "netns", "exec", ns] + cmd, check=check, timeout=timeout)

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
            for pid in self.sh(["ip", "netns", "pids", ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            self.sh(["ip", "netns", "del", ns], check=False)


def demo_planned_stop(lab: Lab, names: Dict[str, str], tmp: str, handover: bool, tag: str) -> Dict[str, Any]:
    """Start node A (MASTER, 150) and node B (BACKUP, 100), have the client probe the VIP, stop A with
    SIGTERM (with or without vrrp_handover_on_stop), stop the probe once B alone has held the VIP for
    0.5 s. Returns the probe's figures, `moved` (seconds from the stop until B alone had the VIP, or None)
    and `a_status` (A's exit status). The daemons' configurations and logs stay in tmp."""
    import json
    import select

    def holders() -> List[str]:
        return [short for short, ns in names.items() if lab.has_address(ns, DEMO_VIP)]

    me = os.path.abspath(__file__)
    nodes: Dict[str, subprocess.Popen] = {}
    probe: Optional[subprocess.Popen] = None
    try:
        for node, state, prio in (("A", "MASTER", 150), ("B", "BACKUP", 100)):
            conf = os.path.join(tmp, f"{tag}-{node}.conf")
            with open(conf, "w") as fh:
                fh.write(DEMO_CONFIG.format(node=node, state=state, priority=prio, vip=DEMO_VIP,
                                            handover="    vrrp_handover_on_stop\n" if handover else ""))
            with open(os.path.join(tmp, f"{tag}-{node}.log"), "w") as logf:
                nodes[node] = lab.exec(names[node], [sys.executable, me, "-n", "-l", "-f", conf],
                                       stdout=logf, stderr=subprocess.STDOUT)
        if not wait_until(lambda: holders() == ["A"], 10, 0.005):
            raise VrrpdError(f"the VIP is not on node A alone after 10 s (it is on {holders() or 'nobody'}; "
                             f"logs in {tmp})")
        probe = lab.exec(names["client"], [sys.executable, me, "--demo-probe", DEMO_VIP],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert probe.stdout is not None
        if not select.select([probe.stdout], [], [], 10)[0] or probe.stdout.readline() != b"ready\n":
            raise VrrpdError(f"the client gets no echo reply from the VIP {DEMO_VIP} on node A")
        time.sleep(0.5)
        nodes["A"].terminate()
        stopped = time.monotonic()
        moved = time.monotonic() - stopped if wait_until(lambda: holders() == ["B"], 10, 0.005) else None
        time.sleep(0.5)
        out, _ = probe.communicate(input=b"stop\n", timeout=10)
        result: Dict[str, Any] = json.loads(out.decode().splitlines()[-1])
        result["moved"] = None if moved is None else round(moved, 4)
        try:
            result["a_status"] = nodes["A"].wait(timeout=5)
        except subprocess.TimeoutExpired:
            result["a_status"] = None
        return result
    finally:
        for proc in list(nodes.values()) + ([probe] if probe else []):
            if proc.poll() is None:
                proc.terminate()
        for proc in list(nodes.values()) + ([probe] if probe else []):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


def format_demo_table(runs: List[Tuple[str, Dict[str, Any]]]) -> str:
    """The demo's punch line: the client's figures for each planned stop, side by side."""
    def seconds(value: Optional[float]) -> str:
        return "never" if value is None else f"{value:.3f} s"

    rows = [("echo requests sent", lambda r: str(r["sent"])), ("replies received", lambda r: str(r["received"])),
            ("lost", lambda r: str(r["lost"])), ("longest gap without reply", lambda r: seconds(r["longest_gap"])),
            ("VIP on B alone after", lambda r: seconds(r["moved"]))]
    lines = ["  " + " " * 28 + "".join(f"{title:>26}" for title, _ in runs)]
    lines += ["  " + f"{label:<28}" + "".join(f"{cell(r):>26}" for _, r in runs) for label, cell in rows]
    return "\n".join(lines)


def run_demo() -> int:
    """`sudo make demo`: two vrrpd nodes and a client in namespaces. The master is stopped twice, as keepalived
    stops (priority 0, the VIP dropped at once) and with vrrp_handover_on_stop; the client's probe shows the
    loss and the longest gap of each, side by side. Needs only python3 and iproute2."""
    import tempfile

    missing = demo_prerequisites()
    if missing:
        print(f"{PROG} --demo cannot run on this machine; it needs:", file=sys.stderr)
        for item in missing:
            print(f"  - {item}", file=sys.stderr)
        return 1
    lab = Lab("vd")
    tmp = tempfile.mkdtemp(prefix="vrrpd-demo-")
    say = (lambda text: print(f"==> {text}", flush=True))  # noqa: E731
    old_int = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        names = {short: lab.host(short, address)
                 for short, address in (("A", "192.0.2.1/24"), ("B", "192.0.2.2/24"), ("client", "192.0.2.10/24"))}
        say(f"two vrrpd nodes, A (MASTER, priority 150) and B (BACKUP, 100), VRRPv3 every 100 ms, and a client, "
            f"in namespaces {', '.join(names.values())} on one bridge; VIP {DEMO_VIP}")
        say("the client sends an ICMP echo request to the VIP every 10 ms while A is stopped (SIGTERM), twice:")
        runs = []
        for n, (title, handover) in enumerate(DEMO_STOPS, 1):
            say(f"stop {n}: {title}" + (": A keeps the VIP until B is master" if handover
                                       else ": A sends priority 0 and drops the VIP at once"))
            runs.append((title, demo_planned_stop(lab, names, tmp, handover, f"stop{n}")))
        print("\n" + format_demo_table(runs) + "\n", flush=True)
        for title, r in runs:
            say(f"{title}: node A exited with status {r['a_status']}")
        say(f"the nodes' configurations and logs are in {tmp}; done, cleaning up")
        return 0
    except VrrpdError as exc:
        say(f"the demo failed: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        return 130
    finally:
        lab.close()
        signal.signal(signal.SIGINT, old_int)


# --------------------------------------------------------------------------------------------
# 11.3 Operating it: keepalived's command line, daemonising with a pid file, signals, reload,
#     dumps (SIGUSR1 data, SIGUSR2 stats, SIGRTMIN+2 JSON) and systemd notification
# --------------------------------------------------------------------------------------------

DEFAULT_PID_FILE = "/run/vrrpd.pid"
DEFAULT_DUMP_DIR = "/tmp"
EXIT_NOT_RUNNING = 3  # --status/--json when no daemon answers


def _signal_numbers() -> Dict[str, int]:
    """keepalived's signal names (`keepalived --signum=NAME`) and vrrpd's numbers for them."""
    return {"STOP": int(signal.SIGTERM), "RELOAD": int(signal.SIGHUP), "DATA": int(signal.SIGUSR1),
            "STATS": int(signal.SIGUSR2), "STATS_CLEAR": int(signal.SIGRTMAX) - 1, "JSON": int(signal.SIGRTMIN) + 2}


def runtime_paths(g: GlobalDefs) -> Dict[str, str]:
    """Where this daemon's pid file and control socket live, and the suffix of its dump files, named as
    keepalived names its runtime files, so that two daemons on one host never share one:

      (nothing)               /run/vrrpd.pid            /run/vrrpd/vrrpd.sock         /tmp/vrrpd.data
      use_pid_dir             /run/vrrpd/vrrpd.pid      /run/vrrpd/vrrpd.sock         /tmp/vrrpd.data
      instance I              /run/vrrpd/vrrpd_I.pid    /run/vrrpd/vrrpd_I.sock       /tmp/vrrpd.I.data
      net_namespace N (+ I)   /run/vrrpd/N/vrrpd[_I].pid  /run/vrrpd/N/vrrpd[_I].sock /tmp/vrrpd.N[_I].data

    The dump suffix goes before the extension, where keepalived puts it; keepalived adds it only with
    data_use_instance and only to .data (its .stats and .json are shared), vrrpd to all three whenever a name is
    given, so that two daemons never write one file."""
    inst, ns = g.instance_name, g.net_namespace
    if not (inst or ns or g.use_pid_dir):
        return {"pid": DEFAULT_PID_FILE, "control": DEFAULT_CONTROL_SOCKET, "dump_suffix": ""}
    base = os.path.join("/run", PROG, ns) if ns else os.path.join("/run", PROG)
    name = f"{PROG}_{inst}" if inst else PROG
    suffix = "." + "_".join(x for x in (ns, inst) if x) if (inst or ns) else ""
    return {"pid": os.path.join(base, name + ".pid"), "control": os.path.join(base, name + ".sock"),
            "dump_suffix": suffix}


def enter_net_namespace(name: str) -> None:
    """keepalived's net_namespace: run inside the named network namespace (/run/netns/NAME), via setns(2)
    through ctypes (imported only when configured). Raises OSError; the daemon must not go on outside it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join("/run/netns", name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


class PidFile:
    """The pid file, held with an exclusive flock for the daemon's life: a second copy cannot take it."""

    def __init__(self, path: str):
        self.path = path
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        """Lock the file or raise VrrpdError saying which process holds it."""
        import fcntl

        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise VrrpdError(f"{PROG} is already running (pid {holder}, pid file {self.path}); "
                             f"stop it first, or give this copy its own -p PIDFILE") from None
        self.fd = fd

    def write(self, pid: int) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.lseek(self.fd, 0, os.SEEK_SET)
            if os.read(self.fd, 32).decode(errors="replace").strip() == str(os.getpid()):
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def daemonize(wait: float = 60.0) -> int:
    """Double fork and setsid. The launching process waits until the daemon reports its start-up on a
    pipe and exits 0 (started) or 1 (failed, with the reason on stderr). Returns the pipe in the daemon."""
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        message = b""
        deadline = time.monotonic() + wait
        import select

        while time.monotonic() < deadline and not message.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            message += chunk
        text = message.decode(errors="replace").strip()
        if text == "ok":
            os._exit(0)
        print(f"{PROG}: {text or 'the daemon exited during start-up (see the system log)'}", file=sys.stderr)
        os._exit(1)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o022)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return write_fd


def _same_definition(a: Any, b: Any) -> bool:
    """Two config objects are equal apart from where they were written (file, line)."""
    strip = {k: "" if k == "file" else 0 for k in ("file", "line") if hasattr(a, k)}
    return type(a) is type(b) and dataclass_replace(a, **strip) == dataclass_replace(b, **strip)


def _select_subsystems(config: Config, vrrp_only: bool, lvs_only: bool) -> Config:
    """-P keeps only VRRP, -C only the LVS checkers (keepalived's split into two child processes)."""
    if vrrp_only:
        config.virtual_servers = []
    if lvs_only:
        config.vrrp_instances = []
        config.sync_groups = []
    return config


def _atomic_write(path: str, text: str) -> None:
    """Write a dump as a new file renamed into place, so a symlink planted in /tmp is never followed."""
    import tempfile

    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _kv_lines(data: Any, indent: int) -> List[str]:
    """Nested status data as keepalived-style `key = value` lines."""
    pad = " " * indent
    out: List[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                out.append(f"{pad}{key}:")
                out += _kv_lines(value, indent + 2)
            else:
                out.append(f"{pad}{key} = {value if value not in (None, [], {}) else '-'}")
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, (dict, list)):
                out += _kv_lines(item, indent)
                out.append("")
            else:
                out.append(f"{pad}{item}")
    return out


def format_data_dump(daemon: Daemon, extra: Optional[Dict[str, Any]] = None) -> str:
    """SIGUSR1: the running configuration and state, in keepalived's /tmp/keepalived.data layout."""
    g, st = daemon.g, daemon.status()
    lines = ["------< Global definitions >------",
             f" {PROG} version = {__version__}", f" Process id = {os.getpid()}",
             f" Uptime = {st['uptime']:.0f} sec", f" Router ID = {g.router_id}"]
    for key, value in (extra or {}).items():
        lines.append(f" {key.replace('_', ' ').capitalize()} = {value}")
    lines += [f" Default VRRP version = {g.vrrp_version}", f" Multicast group = {g.vrrp_mcast_group4}, "
              f"{g.vrrp_mcast_group6}", f" Strict mode = {'yes' if g.vrrp_strict else 'no'}",
              f" Gratuitous ARP delay = {g.vrrp_garp_master_delay:g} sec, repeat = {g.vrrp_garp_master_repeat}",
              f" Handover on stop = {'yes' if g.vrrp_handover_on_stop else 'no'}",
              f" SMTP server = {g.smtp_server or '-'}",
              f" Notification email = {', '.join(g.notification_email) or '-'}"]
    # the runtime files, as keepalived's dump_global_data words them (only what is configured)
    reload_file = Operator.reload_file_path(g)
    for shown, line in ((g.config_save_dir, f" Config save dir = {g.config_save_dir}"),
                        (g.reload_check_config, f" Test config before reload, log to {g.reload_check_config}"),
                        (g.reload_time_file, f" Reload time file = {g.reload_time_file}"
                                             + (" (repeat)" if g.reload_repeat else "")),
                        (reload_file, f" Reload_file = {reload_file}"),
                        (g.json_version, f" json_version {g.json_version}"),
                        (g.state_dump_file, f" state dump file {g.state_dump_file}"),
                        (g.stats_dump_file, f" stats dump file {g.stats_dump_file}"),
                        (g.json_dump_file, f" json dump file {g.json_dump_file}")):
        if shown:
            lines.append(line)
    lines.append("------< VRRP Topology >------")
    for rt in daemon.runtimes:
        inst, m = rt.inst, rt.machine
        mode = ("unicast to " + ", ".join(str(p.address) for p in inst.unicast_peer)) if rt.unicast \
            else f"multicast to {', '.join(str(t[0]) for t in rt.targets) or '-'}"
        lines += [f" VRRP Instance = {inst.name}", f"   State = {m.state.value}",
                  f"   Interface = {inst.interface}", f"   Virtual Router ID = {m.vrid}",
                  f"   VRRP version = {rt.version}", f"   Priority = {m.priority}",
                  f"   Effective priority = {m.effective_priority}",
                  f"   Advert interval = {m.advert_int:g} sec (master's {m.master_adver_int:g} sec)",
                  f"   Master router = {m.master_ip or '-'}", f"   Source address = {rt.src or '-'}",
                  f"   Mode = {mode}", f"   Preempt = {'enabled' if m.preempt else 'disabled'}, "
                  f"delay {m.preempt_delay:g} sec", f"   Authentication = {m.auth_type.name}",
                  f"   VIPs set = {'yes' if m.vips_set else 'no'}"]
        if inst.debug:
            lines.append(f"   Debug level = {inst.debug}")
        lines += [
                  f"   Virtual IP ({len(inst.virtual_ipaddress)}):"]
        lines += [f"     {v.address} dev {v.dev or inst.interface}" + (f" label {v.label}" if v.label else "")
                  for v in inst.virtual_ipaddress]
        if inst.virtual_ipaddress_excluded:
            lines.append(f"   Virtual IP excluded ({len(inst.virtual_ipaddress_excluded)}):")
            lines += [f"     {v.address} dev {v.dev or inst.interface}" for v in inst.virtual_ipaddress_excluded]
        for title, refs in (("Tracked interfaces", inst.track_interface), ("Tracked scripts", inst.track_script),
                            ("Tracked files", inst.track_file), ("Tracked processes", inst.track_process)):
            if refs:
                lines.append(f"   {title} ({len(refs)}):")
                lines += [f"     {r.name}" + (f" weight {r.weight}" if r.weight is not None else "")
                          + (" reverse" if r.reverse else "") for r in refs]
        for word in ("master", "backup", "fault", "stop", "deleted"):
            cmd = getattr(inst, f"notify_{word}")
            if cmd is not None:
                lines.append(f"   Notify {word} = {cmd.raw}")
        if inst.notify is not None:
            lines.append(f"   Notify = {inst.notify.raw}")
    if st.get("sync_groups"):
        lines.append("------< VRRP Sync groups >------")
        for group in st["sync_groups"]:
            lines.append(f" VRRP Sync Group = {group['name']}, {group['state']}: {' '.join(group['members'])}")
    lines.append("------< VRRP Trackers >------")
    lines += _kv_lines(st.get("trackers") or {}, 1)
    lines.append("------< LVS Topology >------")
    lines += _kv_lines(st.get("lvs") or {}, 1)
    return "\n".join(lines) + "\n"


_KEEPALIVED_STATE_NUMBER = {State.INIT: 0, State.BACKUP: 1, State.MASTER: 2, State.FAULT: 3}
# vrrpd's reasons for a dropped advert -> keepalived's counter (vrrp_json.c, vrrp_stats), by the words they hold
_KEEPALIVED_BAD_COUNTERS = (("hmac", "auth_ext_invalid_hmac"), ("replay", "auth_ext_replay"),
                            ("length", "packet_len_err"), ("short", "packet_len_err"), ("truncated", "packet_len_err"),
                            ("interval", "advert_interval_err"), ("ttl", "ip_ttl_err"), ("type", "invalid_type_rcvd"),
                            ("version", "invalid_type_rcvd"), ("addr", "addr_list_err"), ("vip", "addr_list_err"),
                            ("auth_mismatch", "authtype_mismatch"), ("auth", "auth_failure"), ("ah_", "auth_failure"))
_KEEPALIVED_STATS = ("advert_rcvd", "advert_sent", "become_master", "release_master", "packet_len_err",
                     "advert_interval_err", "ip_ttl_err", "invalid_type_rcvd", "addr_list_err", "invalid_authtype",
                     "authtype_mismatch", "auth_failure", "auth_ext_missing", "auth_ext_malformed",
                     "auth_ext_unknown_key", "auth_ext_invalid_hmac", "auth_ext_stale", "auth_ext_replay",
                     "pri_zero_rcvd", "pri_zero_sent")


def _keepalived_ip(v: VirtualIP, ifname: Optional[str], is_set: bool) -> str:
    """A VIP as keepalived's format_ipaddress writes it in its JSON dump."""
    text = str(v.address) + (f" brd {v.brd}" if v.brd is not None else "") + f" dev {v.dev or ifname}"
    text += f" scope {v.scope}" + (f" label {v.label}" if v.label else "")
    text += (f" peer {v.peer}/{v.address.network.prefixlen}" if v.peer is not None else "")
    text += (" -nodad" if v.nodad else "") + (" no_track" if v.no_track else "")
    return text + (" set" if is_set else "")


def _keepalived_cmd(cmd: Command) -> str:
    """A script as keepalived's cmd_str writes it: each word in single quotes, the program's full path."""
    argv = list(cmd.argv)
    if argv and not argv[0].startswith(("<", ">")):
        found = find_script(argv[0])
        argv[0] = os.path.realpath(found) if found else argv[0]  # keepalived resolves it (check_script_secure)
    return " ".join(a if not i and a[:1] in "<>" else "'" + a.replace("'", "'\\''") + "'"
                    for i, a in enumerate(argv))


def keepalived_json(daemon: Daemon, version: int) -> Any:
    """The JSON dump in keepalived's layout (vrrp_json.c) for json_version 1 or 2, for the tools that read
    keepalived.json: version 1 is an array with one {"data", "stats"} object per instance; version 2 puts that
    array in an object under "vrrp", with "track_process" beside it (when there are any)."""
    g, instances = daemon.g, []

    def some(value: Any, default: Any) -> Any:
        return default if value is None else value

    for rt in daemon.runtimes:
        inst, m = rt.inst, rt.machine
        delay, repeat, refresh, rrepeat = daemon._garp_params(rt)
        strict = some(inst.strict_mode, g.vrrp_strict)
        data: Dict[str, Any] = {
            "iname": inst.name, "dont_track_primary": int(inst.dont_track_primary),
            "skip_check_adv_addr": int(some(inst.skip_check_adv_addr, g.vrrp_skip_check_adv_addr)),
            "strict_mode": int(strict), "vmac_ifname": inst.vmac_name or "", "ifp_ifname": inst.interface or "",
            "master_priority": m.master_priority or 0,
            "last_transition": rt.recent[-_TRANSITION_FIELDS] if rt.recent else 0.0,
            "garp_delay": delay, "garp_refresh": int(refresh), "garp_rep": repeat, "garp_refresh_rep": rrepeat,
            "garp_lower_prio_delay": int(some(inst.garp_lower_prio_delay, some(g.vrrp_garp_lower_prio_delay, delay))),
            "garp_lower_prio_rep": some(inst.garp_lower_prio_repeat, some(g.vrrp_garp_lower_prio_repeat, repeat)),
            "lower_prio_no_advert": int(some(inst.lower_prio_no_advert, g.vrrp_lower_prio_no_advert)),
            "higher_prio_send_advert": int(some(inst.higher_prio_send_advert, g.vrrp_higher_prio_send_advert)),
            "vrid": m.vrid, "base_priority": m.priority, "effective_priority": m.effective_priority,
            "vipset": bool(m.vips_set), "promote_secondaries": inst.promote_secondaries,
            "adver_int": m.advert_int, "master_adver_int": m.master_adver_int,
            "accept": int(some(inst.accept, not strict)), "nopreempt": inst.nopreempt,
            "preempt_delay": int(inst.preempt_delay), "state": _KEEPALIVED_STATE_NUMBER.get(m.state, 0),
            "wantstate": _KEEPALIVED_STATE_NUMBER.get(m.state, 0), "version": rt.version,
            "smtp_alert": bool(some(inst.smtp_alert, some(g.smtp_alert_vrrp, some(g.smtp_alert, False)))),
            "notify_deleted": inst.notify_deleted is not None,
        }
        for key, cmd in (("script_backup", inst.notify_backup), ("script_master", inst.notify_master),
                         ("script_fault", inst.notify_fault), ("script_stop", inst.notify_stop),
                         ("script_deleted", inst.notify_deleted), ("script", inst.notify),
                         ("script_master_rx_lower_pri", inst.notify_master_rx_lower_pri)):
            if cmd is not None:
                data[key] = _keepalived_cmd(cmd)
        lists = (("vips", [_keepalived_ip(v, inst.interface, m.vips_set) for v in inst.virtual_ipaddress]),
                 ("evips", [_keepalived_ip(v, inst.interface, m.vips_set) for v in inst.virtual_ipaddress_excluded]),
                 ("vroutes", [str(r) for r in inst.virtual_routes]), ("vrules", [str(r) for r in inst.virtual_rules]),
                 ("track_ifp", [r.name for r in inst.track_interface]),
                 ("track_script", [_keepalived_cmd(daemon.config.vrrp_scripts[r.name].script) for r in inst.track_script
                                   if r.name in daemon.config.vrrp_scripts
                                   and daemon.config.vrrp_scripts[r.name].script is not None]),
                 ("track_process", [" ".join(daemon.config.track_processes[r.name].process) for r in
                                    inst.track_process if r.name in daemon.config.track_processes]))
        data.update((key, values) for key, values in lists if values)
        data["auth_type"] = {AuthType.NONE: 0, AuthType.PASS: 1}.get(inst.auth_type, 2)
        if inst.auth_type is not AuthType.NONE:
            data["auth_data"] = "********"
        stats = dict.fromkeys(_KEEPALIVED_STATS, 0)
        stats.update(advert_rcvd=rt.adverts_received, advert_sent=rt.adverts_sent,
                     become_master=rt.entered.get("MASTER", 0), release_master=rt.released_master,
                     pri_zero_rcvd=rt.priority_zero_received, pri_zero_sent=rt.priority_zero_sent)
        for reason, count in rt.bad_packets.items():
            counter = next((c for word, c in _KEEPALIVED_BAD_COUNTERS if word in reason), None)
            if counter is not None:
                stats[counter] += count
        instances.append({"data": data, "stats": stats})
    if version == 1:
        return instances
    doc: Dict[str, Any] = {"vrrp": instances}
    tracked = daemon.tracking.status().get("track_process", {})
    processes = []
    for name, tp in daemon.config.track_processes.items():
        now = tracked.get(name, {})
        entry: Dict[str, Any] = {"process": tp.process[0] if tp.process else ""}
        if len(tp.process) > 1:
            entry["parameters"] = " ".join(tp.process[1:])
        entry.update(param_match=tp.param_match if len(tp.process) > 1 else "none", min_processes=tp.quorum)
        if tp.quorum_max is not None:
            entry["max_processes"] = tp.quorum_max
        entry.update(current_processes=now.get("count", 0), have_quorum=now.get("state") == "UP",
                     weight=-tp.weight if tp.weight_reverse else tp.weight,
                     terminate_delay=some(tp.terminate_delay, tp.delay), fork_delay=some(tp.fork_delay, tp.delay),
                     full_command=tp.full_command)
        processes.append(entry)
    if processes:
        doc["track_process"] = processes
    return doc


def format_stats(status: Dict[str, Any]) -> str:
    """SIGUSR2: per-instance counters, in keepalived's /tmp/keepalived.stats layout."""
    lines: List[str] = []
    for inst in status.get("instances", []):
        s = inst.get("stats", {})
        entered = s.get("entered", {})
        lines += [f"VRRP Instance: {inst['name']}", "  Advertisements:",
                  f"    Received: {s.get('adverts_received', 0)}", f"    Sent: {s.get('adverts_sent', 0)}",
                  f"  Became master: {entered.get('MASTER', 0)}", f"  Released master: {s.get('released_master', 0)}",
                  f"  State transitions: {s.get('transitions', 0)}"]
        lines += [f"    {state}: {count}" for state, count in sorted(entered.items())]
        bad = s.get("bad_packets", {})
        lines.append(f"  Packet errors: {sum(bad.values())}")
        lines += [f"    {reason}: {count}" for reason, count in sorted(bad.items())]
        lines += ["  Priority Zero:", f"    Received: {s.get('priority_zero_received', 0)}",
                  f"    Sent: {s.get('priority_zero_sent', 0)}"]
    # before any of the counts above: what the kernel dropped on each VRRP socket
    for sock in status.get("sockets", []):
        lines += [f"VRRP socket: {sock['interface']} (IPv{sock['family']})",
                  f"  Kernel filter: {sock.get('kernel_filter') or 'none'}"
                  + (" (what it drops is not counted)" if sock.get("kernel_filter") else ""),
                  f"  Dropped by the kernel, receive queue full: {sock.get('kernel_queue_full_drops', 0)}"]
    return "\n".join(lines) + "\n"


def parse_reload_time(text: str, now: float) -> Tuple[Optional[float], bool, str]:
    """The first line of a reload_time_file -> (when, a date was given, problem): exactly HH:MM:SS,
    YY-MM-DD HH:MM:SS or YYYY-MM-DD HH:MM:SS, each with an optional Z for UTC (else local time). A time alone
    is the next one to come (tomorrow if already past today); a date and time in the past is ignored."""
    import calendar  # python3-minimal has it (and time.strptime imports it anyway)

    utc = text.endswith("Z")
    body = text[:-1] if utc else text
    formats = {8: "%H:%M:%S", 17: "%y-%m-%d %H:%M:%S", 19: "%Y-%m-%d %H:%M:%S"}
    if len(body) not in formats:
        return None, False, f"Reload time {text} format is incorrect - ignoring"
    today = time.gmtime(now) if utc else time.localtime(now)
    try:
        parsed = time.strptime(body, formats[len(body)])
    except ValueError:
        return None, False, f"Reload date/time {text} invalid - ignoring"
    dated = len(body) > 8
    fields = (parsed[0], parsed[1], parsed[2]) if dated else (today[0], today[1], today[2])
    wanted = fields + (parsed[3], parsed[4], parsed[5])

    def epoch(day_offset: int = 0) -> Optional[float]:
        y, mo, d, h, mi, se = wanted
        if utc:
            return float(calendar.timegm((y, mo, d, h, mi, se, 0, 0, 0)) + 86400 * day_offset)
        t = time.mktime((y, mo, d + day_offset, h, mi, se, 0, 0, -1))
        back = time.localtime(t)
        if not day_offset and tuple(back[:6]) != wanted:  # a local time that does not exist (DST)
            return None
        return t

    when = epoch()
    if when is None:
        return None, False, f"Reload time {text} is not valid - ignoring"
    if when <= now:
        if dated:
            return None, True, f"Reload time {text} is in the past - ignoring"
        when = epoch(1)
    return when, dated, ""


class ReloadSchedule:
    """keepalived's reload_time_file: a reload at the time the file's first line holds. The file is read when
    it appears or changes (looked at every second: no inotify in the standard library), a new time moves the
    reload, a deleted or unreadable file cancels it. When the reload is done the file is deleted, unless
    reload_repeat is set and it holds a time alone: then the same time comes again every day."""

    POLL = 1.0

    def __init__(self, loop: EventLoop, path: str, repeat: bool, reload: Callable[[float], Any],
                 not_before: float = 0.0):
        self.loop, self.path, self.repeat, self.reload = loop, path, repeat, reload
        self.not_before = not_before  # the reload just done is in the past even if the wall clock lags the loop's
        self.seen: Optional[Tuple[int, int, int]] = None  # (inode, mtime, size) of the file last read
        self.when = 0.0  # wall-clock time of the scheduled reload, 0 if none
        self.dated = False
        self.timer: Optional[Timer] = None
        self.poll_timer: Optional[Timer] = None
        log.info("add watch for %s", path)
        self.poll()

    def stop(self) -> None:
        for timer in (self.timer, self.poll_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.poll_timer = None

    @staticmethod
    def _stamp(when: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            if self.when:
                log.info("Cancelling reload scheduled for %s", self._stamp(self.when))
        self.when = 0.0

    def poll(self) -> None:
        self.poll_timer = self.loop.call_later(self.POLL, self.poll)
        try:
            st = os.stat(self.path)
            seen: Optional[Tuple[int, int, int]] = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            seen = None
        if seen == self.seen:
            return
        self.seen = seen
        self.read()

    def read(self) -> None:
        try:
            with open(self.path, errors="replace") as fh:
                line = fh.readline(21)
        except OSError:
            line = ""
        line = line[:-1] if line.endswith("\n") else line
        if not line:
            self._cancel()
            return
        now = max(time.time(), self.not_before)
        when, dated, problem = parse_reload_time(line, now)
        if when is None:
            log.info("%s", problem)
            self._cancel()
            return
        self.dated = dated
        if when == self.when and self.timer is not None:
            return
        if self.timer is not None:
            log.info("Reload time updated from %s to %s", self._stamp(self.when), self._stamp(when))
            self.timer.cancel()
        else:
            log.info("Scheduling reload for %s", self._stamp(when))
        self.when = when
        self.timer = self.loop.call_later(when - now, self.fire)

    def fire(self) -> None:
        self.timer = None
        self.stop()
        if not self.repeat or self.dated:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.reload(self.when)  # which watches the file again, as the new configuration says


class Operator:
    """What an operator drives in a running daemon: signals, reload, dumps, the control socket, systemd."""

    def __init__(self, daemon: Daemon, config_file: str, vrrp_only: bool = False, lvs_only: bool = False,
                 control_socket: Optional[str] = DEFAULT_CONTROL_SOCKET, dump_dir: str = DEFAULT_DUMP_DIR,
                 metrics: Optional[str] = None):
        self.d = daemon
        self.metrics_option = metrics  # --metrics ADDRESS:PORT, over global_defs' metrics_listen
        self.metrics: Optional[MetricsServer] = None
        self.config_file = config_file
        self.vrrp_only, self.lvs_only = vrrp_only, lvs_only
        self.control_path = control_socket
        self.dump_dir = dump_dir
        self.control: Optional[ControlServer] = None
        self.reloads = 0
        self.reload_failures = 0
        self.last_reload: Optional[Dict[str, Any]] = None
        self.reload_schedule: Optional[ReloadSchedule] = None
        self.scheduled_reload_at = 0.0  # wall-clock time of the last reload reload_time_file asked for
        self.config_reads = 0  # config_save_dir: vrrpd.conf.PID.N is the Nth configuration read
        self.saved_reloads = 0  # config_save_dir: vrrpd.PID.N.pre/.post around the Nth reload

    def install(self) -> None:
        """Signal handlers and the control socket (never taken from another live daemon)."""
        loop, nums = self.d.loop, _signal_numbers()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda signum: self.reload())
        loop.add_signal_handler(signal.SIGUSR1, lambda signum: self.dump("data"))
        loop.add_signal_handler(signal.SIGUSR2, lambda signum: self.dump("stats"))
        loop.add_signal_handler(nums["JSON"], lambda signum: self.dump("json"))
        loop.add_signal_handler(nums["STATS_CLEAR"], lambda signum: self.dump("stats", clear=True))
        if self.control_path:
            self._open_control()
        self._open_metrics()
        self.save_config_copy(self.d.config)
        self._schedule_reloads()

    def _open_metrics(self) -> None:
        """Serve /metrics on --metrics or metrics_listen; a reload that changes the address moves it."""
        wanted = self.metrics_option or self.d.g.metrics_listen
        current = self.metrics.listen if self.metrics is not None else None
        if wanted == current:
            return
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if not wanted:
            return
        try:
            self.metrics = MetricsServer(self.d.loop, wanted, lambda: format_metrics(self.status()))
            self.metrics.listen = wanted
            log.info("Serving Prometheus metrics on http://%s/metrics", wanted)
        except (OSError, ValueError) as exc:
            log.error("cannot serve metrics on %s: %s", wanted, exc)

    def _open_control(self) -> None:
        path = self.control_path
        assert path is not None
        if os.path.exists(path):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.settimeout(0.5)
                    probe.connect(path)
                log.warning("control socket %s belongs to another running %s; this one has none "
                            "(give it --control-socket PATH)", path, PROG)
                return
            except OSError:
                pass  # stale: ControlServer replaces it
        try:
            self.control = ControlServer(self.d.loop, path, self.status, self.d.recent_events)
            self.d.event_sinks.append(self.control.publish)
        except OSError as exc:
            log.warning("cannot open the control socket %s: %s (--status will not work)", path, exc)

    def close(self) -> None:
        if self.reload_schedule is not None:
            self.reload_schedule.stop()
            self.reload_schedule = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.control is not None:
            if self.control.publish in self.d.event_sinks:
                self.d.event_sinks.remove(self.control.publish)
            self.control.close()
            self.control = None

    def status(self) -> Dict[str, Any]:
        """The daemon's status document plus the operator's view (config file, reloads)."""
        st = self.d.status()
        st["config_file"] = self.config_file
        st["reloads"] = {"done": self.reloads, "failed": self.reload_failures, "last": self.last_reload}
        if self.metrics is not None:
            st["metrics_server"] = {"listen": self.metrics.listen, "scrapes": self.metrics.scrapes,
                                    "evicted": self.metrics.evicted, "open": len(self.metrics.clients)}
        return st

    def stop(self, signum: int = 0) -> None:
        self.d.stop(signum)  # sends STOPPING=1

    # -- reload ----------------------------------------------------------------------------
    def reload(self) -> bool:
        """SIGHUP: validate the file first (every problem logged, nothing changed on error), then
        Daemon.reload() applies only the difference; what it kept, changed, added and removed is recorded."""
        if self.d.stopping:
            return False
        log.info("Reload requested: reading %s", self.config_file)
        started = time.monotonic()
        g = self.d.g  # the running configuration says how to reload
        if self.reload_schedule is not None:
            self.reload_schedule.stop()
            self.reload_schedule = None
        reload_file = self.reload_file_path(g)
        if reload_file:  # there while the files are read: an updater waits for it to go before writing again
            try:
                os.close(os.open(reload_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644))
            except OSError as exc:
                log.info("Failed to create reload file (%s) %d - %s", reload_file, exc.errno, exc.strerror)
        try:
            config, diags = parse_config(self.config_file, check_interfaces=True,
                                         config_id=self.d.config.config_id or None)
        except Exception as exc:  # the parser reports problems as diagnostics; anything else is a bug
            config, diags = None, [Diagnostic(self.config_file, 0, Severity.ERROR, f"internal error: {exc}")]
        finally:
            if reload_file:
                try:
                    os.unlink(reload_file)
                except OSError:
                    pass
        if config is not None:
            self.save_config_copy(config)
        errors = [x for x in diags if x.severity is Severity.ERROR]
        if g.reload_check_config:
            log.debug("validate conf before Reload")
            self._write_config_check_log(g.reload_check_config, diags)
        if errors or config is None:
            if g.reload_check_config:
                log.info("New config failed validation, see %s for details", g.reload_check_config)
            else:
                for x in diags:
                    log.error("%s", x)
            log.error("Reload aborted: %s has %d error(s); the running configuration is kept",
                      self.config_file, len(errors))
            self.reload_failures += 1
            self.last_reload = {"ok": False, "at": time.time(), "errors": [str(x) for x in errors]}
            self._schedule_reloads()
            return False
        for x in diags:
            log.warning("%s", x)
        before = {rt.inst.name: (rt, rt.inst) for rt in self.d.runtimes}
        self.saved_reloads += 1
        self.save_state("pre")
        ok = self.d.reload(_select_subsystems(config, self.vrrp_only, self.lvs_only))
        self.save_state("post")
        self._schedule_reloads()
        after = {rt.inst.name: rt for rt in self.d.runtimes}
        kept = [n for n, rt in after.items() if n in before and before[n][0] is rt]
        changed = [n for n in kept if not _same_definition(before[n][1], after[n].inst)]
        added = [n for n in after if n not in kept]
        removed = [n for n in before if after.get(n) is not before[n][0]]
        took = time.monotonic() - started
        self.reloads += ok
        self.last_reload = {"ok": ok, "at": time.time(), "seconds": round(took, 4), "kept": kept,
                            "changed": changed, "added": added, "removed": removed}
        log.info("Reload: %d instance(s) kept (%d changed in place), %d added, %d removed (%.1f ms)",
                 len(kept), len(changed), len(added), len(removed), took * 1000)
        if ok:
            self._open_metrics()
            sd_notify(f"STATUS={self._status_line()}")
        return ok

    @staticmethod
    def reload_file_path(g: GlobalDefs) -> Optional[str]:
        """reload_file's path; bare, keepalived's default: the pid file's name with .reload."""
        if g.reload_file is None:
            return None
        return g.reload_file or os.path.splitext(runtime_paths(g)["pid"])[0] + ".reload"

    @staticmethod
    def _write_config_check_log(path: str, diags: List[Diagnostic]) -> None:
        """reload_check_config LOG_FILE: the new file's problems, as `vrrpd --check` prints them (keepalived runs
        `keepalived --config-test=LOG_FILE`); the file is emptied first (a character device such as /dev/null
        is written as it is)."""
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NONBLOCK
            if not (os.path.exists(path) and stat.S_ISCHR(os.stat(path).st_mode)):
                flags |= os.O_TRUNC
            fd = os.open(path, flags, 0o644)
            try:
                os.write(fd, "".join(f"{x}\n" for x in diags).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            log.info("truncate of config check log %s failed (%d) - %s", path, exc.errno or 0, exc.strerror)

    def _config_save_dir(self) -> Optional[str]:
        """config_save_dir, created (0700) if missing; None when not configured or not usable."""
        path = self.d.g.config_save_dir
        if not path:
            return None
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not os.path.isdir(path):
                log.error("config_save_dir %s exists and is not a directory", path)
                return None
        except OSError as exc:
            log.error("Unable to create config_save_dir %s (error %d - %s)", path, exc.errno, exc.strerror)
            return None
        return path

    def save_config_copy(self, config: Config) -> None:
        """config_save_dir: every configuration read (at start and at each reload) as DIR/vrrpd.conf.PID.N, its
        files one after the other, each after a `# PATH` line (keepalived's keepalived.conf.PID.N)."""
        directory = self._config_save_dir()
        if directory is None:
            return
        parts = []
        for path in config.files:
            try:
                with open(path, errors="replace") as fh:
                    parts.append(f"# {path}\n{fh.read()}")
            except OSError as exc:
                parts.append(f"# {path}: {exc}\n")
        target = os.path.join(directory, f"{PROG}.conf.{os.getpid()}.{self.config_reads}")
        self.config_reads += 1
        try:
            _atomic_write(target, "".join(parts))
        except OSError as exc:
            log.info("Failed to open config_save file %s (%s)", target, exc)

    def save_state(self, when: str) -> None:
        """config_save_dir: the data dump before ("pre") and after ("post") each reload, as DIR/vrrpd.PID.N.pre
        and .post (keepalived's keepalived_vrrp.PID.N.pre/.post)."""
        directory = self._config_save_dir()
        if directory is None:
            return
        target = os.path.join(directory, f"{PROG}.{os.getpid()}.{self.saved_reloads}.{when}")
        try:
            _atomic_write(target, format_data_dump(self.d, {"config_file": self.config_file,
                                                            "reloads": self.reloads}))
        except OSError as exc:
            log.info("Failed to open config_save file %s (%s)", target, exc)

    def _schedule_reloads(self) -> None:
        """reload_time_file: watch the file the running configuration names (none: no watch)."""
        if self.reload_schedule is not None:
            self.reload_schedule.stop()
            self.reload_schedule = None
        g = self.d.g
        if g.reload_time_file and not self.d.stopping:
            self.reload_schedule = ReloadSchedule(self.d.loop, g.reload_time_file, g.reload_repeat,
                                                  self._scheduled_reload, self.scheduled_reload_at + 1.0)

    def _scheduled_reload(self, when: float) -> None:
        self.scheduled_reload_at = when
        log.info("Scheduled reload (reload_time_file %s)", self.d.g.reload_time_file)
        self.reload()

    def _status_line(self) -> str:
        states = [f"{rt.inst.name} {rt.machine.state.value}" for rt in self.d.runtimes]
        return ", ".join(states) or "no VRRP instances"

    # -- dumps -----------------------------------------------------------------------------
    def dump_path(self, kind: str) -> str:
        """/tmp/vrrpd.data (.stats, .json), named per instance (runtime_paths); state_dump_file names the .data
        file as keepalived reads it: an absolute path gives the directory, a trailing '/' keeps vrrpd.data.
        stats_dump_file and json_dump_file name the .stats and .json files by the same rules."""
        suffix = runtime_paths(self.d.g)["dump_suffix"]
        directory, name = self.dump_dir, f"{PROG}.{kind}"
        g = self.d.g
        path = {"data": g.state_dump_file, "stats": g.stats_dump_file, "json": g.json_dump_file}.get(kind)
        if path:
            if path.startswith("/"):
                directory = path if path.endswith("/") else os.path.dirname(path)
            if not path.endswith("/"):
                name = os.path.basename(path)
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        return os.path.join(directory, stem + suffix + (dot + ext if dot else ""))

    def dump(self, kind: str, clear: bool = False) -> Optional[str]:
        """Write /tmp/vrrpd.data, /tmp/vrrpd.stats or /tmp/vrrpd.json; STATS_CLEAR zeroes the counters after."""
        path = self.dump_path(kind)
        try:
            if kind == "data":
                text = format_data_dump(self.d, {"config_file": self.config_file, "reloads": self.reloads})
            elif kind == "stats":
                text = format_stats(self.d.status())
            elif self.d.g.json_version:  # keepalived's layout, for the tools that read keepalived.json
                text = json_text(keepalived_json(self.d, self.d.g.json_version)) + "\n"
            else:
                text = json_text(self.status()) + "\n"
            _atomic_write(path, text)
        except OSError as exc:
            log.error("cannot write %s: %s", path, exc)
            return None
        if clear:
            for rt in self.d.runtimes:
                rt.adverts_sent = rt.adverts_received = rt.released_master = 0
                rt.priority_zero_sent = rt.priority_zero_received = 0
                rt.bad_packets, rt.entered_since_clear = _NO_COUNTS, {}
        log.info("Wrote %s", path)
        return path


def build_arg_parser() -> Any:
    """keepalived's command line (the options vrrpd honours) plus --check, --status and --json."""
    import argparse

    def formatter(prog: str) -> Any:
        # the width argparse would take from shutil.get_terminal_size(), without shutil: that import pulls in
        # bz2, lzma and zlib, a megabyte of the daemon's memory (and python3-minimal has no shutil)
        try:
            width = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            try:
                width = os.get_terminal_size(sys.__stdout__.fileno()).columns
            except (AttributeError, ValueError, OSError):
                width = 80
        return argparse.HelpFormatter(prog, width=max(width - 2, 11))

    p = argparse.ArgumentParser(
        prog=PROG, description="keepalived-compatible VRRP and LVS daemon", formatter_class=formatter,
        epilog="-C means keepalived's LVS-only mode; the long --check is the configuration check (same as -t). "
               "Signals: HUP reload, TERM/INT stop, USR1 data dump, USR2 stats, RTMIN+2 JSON "
               f"(files in {DEFAULT_DUMP_DIR}).")
    p.add_argument("-f", "--use-file", dest="config", metavar="FILE",
                   help="configuration file (default /etc/vrrpd/vrrpd.conf, else /etc/keepalived/keepalived.conf)")
    p.add_argument("-i", "--config-id", metavar="ID",
                   help="keep the configuration lines '@ID ...' (and drop '@^ID ...'); default: the host name "
                        "up to its first dot")
    p.add_argument("-t", "--config-test", "--check", dest="check", action="store_true",
                   help="check the configuration, print every problem and what would run, and exit")
    p.add_argument("-n", "--dont-fork", action="store_true", help="stay in the foreground (systemd runs it so)")
    p.add_argument("-l", "--log-console", action="store_true", help="log to the console (with -n)")
    p.add_argument("-D", "--log-detail", action="store_true", help="detailed log messages")
    p.add_argument("-S", "--log-facility", default="daemon", metavar="FACILITY",
                   help="syslog facility: 0-7 (local0-7), local0-7, user or daemon (default)")
    p.add_argument("-G", "--no-syslog", action="store_true", help="do not log to syslog")
    p.add_argument("-g", "--log-file", nargs="?", const=f"{PROG}.log", metavar="FILE",
                   help=f"also log to FILE (default {PROG}.log; a relative name is in $TMPDIR or /tmp). keepalived "
                        "writes one file per process (FILE_vrrp...); vrrpd is one process and writes FILE")
    p.add_argument("--flush-log-file", action="store_true",
                   help="flush the log file after each line (vrrpd always does)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("-P", "--vrrp", dest="vrrp_only", action="store_true", help="run only VRRP (no LVS)")
    only.add_argument("-C", "--lvs-only", dest="lvs_only", action="store_true",
                      help="run only the LVS checkers (keepalived's -C; --check is the config check)")
    p.add_argument("-p", "--pid", metavar="FILE",
                   help=f"pid file (default {DEFAULT_PID_FILE} when forking; with -n only if given)")
    p.add_argument("-d", "--dump-conf", action="store_true", help="log what the configuration will run")
    p.add_argument("--control-socket", metavar="PATH",
                   help=f"status socket of the daemon (default {DEFAULT_CONTROL_SOCKET}; next to -p FILE when given; "
                   "/run/vrrpd/[NAMESPACE/]vrrpd_INSTANCE.sock with `instance` or `net_namespace`)")
    p.add_argument("-s", "--namespace", metavar="NAME", help="run in network namespace NAME (overrides "
                   "net_namespace)")
    p.add_argument("--dump-dir", default=DEFAULT_DUMP_DIR, metavar="DIR",
                   help="where SIGUSR1/SIGUSR2/SIGRTMIN+2 write vrrpd.data/.stats/.json (default /tmp)")
    p.add_argument("--status", action="store_true", help="show the running daemon's state as a table")
    p.add_argument("--json", action="store_true", help="print the running daemon's state as JSON "
                   "(with --events: one JSON object per event)")
    p.add_argument("--metrics", metavar="ADDRESS:PORT", help="serve Prometheus metrics on http://ADDRESS:PORT/metrics "
                   "(as metrics_listen in global_defs)")
    p.add_argument("--events", action="store_true", help="follow the running daemon's state changes and their "
                   "reasons, one line per event (the recent ones first), until interrupted")
    p.add_argument("--signum", metavar="NAME", help="print the signal number of STOP, RELOAD, DATA, STATS, "
                   "STATS_CLEAR or JSON (as keepalived --signum)")
    p.add_argument("-v", "--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--genhash", metavar="URL", help="print the MD5 of URL's body for HTTP_GET/SSL_GET digest")
    p.add_argument("--demo", action="store_true", help="run the two-node failover demo in network namespaces")
    p.add_argument("--demo-probe", metavar="ADDRESS", help=argparse.SUPPRESS)  # the demo client's EchoProbe
    return p


def control_socket_of(args: Any, config: Optional[Config] = None) -> str:
    """The control socket a command line points at: --control-socket, else next to -p FILE, else the one the
    configuration names (instance, net_namespace), read from -f FILE (or the default file) when not given."""
    if getattr(args, "control_socket", None):
        return args.control_socket
    if getattr(args, "pid", None):
        return os.path.splitext(args.pid)[0] + ".sock"
    if config is None:
        try:
            config, _diags = parse_config(args.config or default_config_path(),
                                          config_id=getattr(args, "config_id", None))
        except (OSError, ConfigError):
            return DEFAULT_CONTROL_SOCKET
    g = config.global_defs
    if getattr(args, "namespace", None):
        g = GlobalDefs(**{**g.__dict__, "net_namespace": args.namespace})
    return runtime_paths(g)["control"]


def status_command(path: str, as_json: bool, out: Any = None) -> int:
    """--status / --json: ask the daemon on its control socket."""
    out = out if out is not None else sys.stdout
    try:
        status = query_status(path)
    except MissingModuleError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"{PROG}: no running {PROG} answers on {path} ({exc}); is it running? "
              f"(see --control-socket)", file=sys.stderr)
        return EXIT_NOT_RUNNING
    out.write(json_text(status) + "\n" if as_json else format_status_table(status))
    return 0


def events_command(path: str, as_json: bool, out: Any = None) -> int:
    """--events: print each event of the daemon on its control socket as it comes (JSON lines with --json)."""
    out = out if out is not None else sys.stdout
    try:
        for event in follow_events(path):
            out.write((json_line(event) if as_json else format_event(event)) + "\n")
            out.flush()
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as exc:
        print(f"{PROG}: no running {PROG} answers on {path} ({exc}); is it running? "
              f"(see --control-socket)", file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(f"{PROG}: the daemon closed the event stream", file=sys.stderr)
    return EXIT_NOT_RUNNING


def log_file_path(name: str) -> str:
    """-g FILE: a relative name is in $TMPDIR (an absolute one), else /tmp, as keepalived's make_file_name."""
    if name.startswith("/"):
        return name
    tmp = os.environ.get("TMPDIR", "")
    return os.path.join(tmp if tmp.startswith("/") else "/tmp", name)


def _setup_run_logging(console: bool, detail: bool, facility: str, use_syslog: bool,
                       log_file: Optional[str] = None) -> None:
    setup_logging(console=console, detail=detail, facility=facility)
    outputs = list(log.outputs or ())
    if log_file:  # keepalived -g: each of its processes writes FILE_vrrp, FILE_healthcheckers...; vrrpd is one
        path = log_file_path(log_file)
        try:
            outputs.append(LogStream(open(path, "a", encoding="utf-8", errors="backslashreplace"), log_file_stamp))
        except OSError as exc:
            print(f"{PROG}: cannot open the log file {path}: {exc}", file=sys.stderr)
    if not use_syslog:
        outputs = [output for output in outputs if not isinstance(output, SyslogOutput)]
    log.set_outputs(outputs, log.level)


def run_start_stop_script(g: GlobalDefs, startup: bool) -> None:
    """keepalived's startup_script (before VRRP and the checkers start) and shutdown_script (after everything
    stopped), waited for up to their timeout and killed after it. The event loop is not running either time."""
    cmd = g.startup_script if startup else g.shutdown_script
    if cmd is None:
        return
    kind = "startup script" if startup else "shutdown script"
    timeout = g.startup_script_timeout if startup else g.shutdown_script_timeout
    user, group = (cmd.user, cmd.group) if cmd.user is not None else default_script_user(g)
    log.debug("Running %s %s", kind, cmd.argv[0] if cmd.argv else cmd.raw)
    try:
        proc = subprocess.Popen(script_argv(cmd), env=script_environment(), start_new_session=True,
                                stdin=subprocess.DEVNULL, **_user_group_kwargs(user, group))
    except (OSError, KeyError, ValueError) as exc:
        log.info("Call of %s %s failed (%s)", kind, cmd.raw, exc)
        return
    try:
        status = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.info("%s timed out after %g seconds - killing it", kind, timeout)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        return
    if status:
        log.info("%s script failed, status %d", kind, status)  # sic: keepalived's words
    else:
        log.debug("%s script succeeded", kind)


class _Options:
    """The parsed command line as a plain object (see _forget_argparse)."""

    def __init__(self, **values: Any):
        self.__dict__.update(values)


def _forget_argparse(args: Any) -> Any:
    """The daemon's options without argparse: argparse and what it imports (gettext, textwrap, locale) are unloaded,
    and the 0.4 MB they took serves the configuration and the instances instead."""
    options = _Options(**vars(args))
    for name in ("argparse", "gettext", "textwrap", "locale"):
        sys.modules.pop(name, None)
    gc.collect()  # the parser's reference cycles
    return options


def run_daemon(args: Any) -> int:
    """Validate, take the pid file, fork unless -n, then run until SIGTERM/SIGINT."""
    args = _forget_argparse(args)
    if args.log_facility not in SYSLOG_FACILITIES:
        print(f"{PROG}: unknown log facility {args.log_facility!r} (0-7, local0-7, user, daemon)", file=sys.stderr)
        return 1
    foreground = args.dont_fork
    _setup_run_logging(args.log_console and foreground, args.log_detail, args.log_facility, not args.no_syslog,
                       args.log_file)
    path = os.path.abspath(args.config or default_config_path())
    try:
        config = _select_subsystems(load_config(path, config_id=args.config_id), args.vrrp_only, args.lvs_only)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    if args.dump_conf:
        for line in config_summary(config):
            log.info("%s", line)
    g = config.global_defs
    if args.namespace:
        g.net_namespace = args.namespace
    if g.net_namespace:
        try:
            enter_net_namespace(g.net_namespace)
        except (OSError, AttributeError) as exc:
            print(f"{PROG}: Unable to set network namespace {g.net_namespace} - exiting ({exc})", file=sys.stderr)
            log.error("Unable to set network namespace %s - exiting (%s)", g.net_namespace, exc)
            return 1
        log.info("Running in network namespace %s", g.net_namespace)
        try:  # read again inside it: its interfaces are the ones the configuration names
            config = _select_subsystems(load_config(path), args.vrrp_only, args.lvs_only)
        except (ConfigError, OSError) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        namespace, g = g.net_namespace, config.global_defs
        g.net_namespace = namespace
    paths = runtime_paths(g)
    set_syslog_ident(g)
    if g.umask is not None:
        os.umask(g.umask)
    named = bool(g.instance_name or g.net_namespace or g.use_pid_dir)
    pidfile = PidFile(args.pid or paths["pid"]) if (args.pid or named or not foreground) else None
    control_socket = control_socket_of(args, config)
    try:
        if pidfile is not None:
            pidfile.acquire()
    except (VrrpdError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        log.error("%s", exc)
        return 1
    ready_fd = None if foreground else daemonize()
    if g.umask is not None:
        os.umask(g.umask)  # daemonize() set 022

    def report(text: str) -> None:
        if ready_fd is not None:
            try:
                os.write(ready_fd, (text + "\n").encode())
                os.close(ready_fd)
            except OSError:
                pass

    if pidfile is not None:
        pidfile.write(os.getpid())
    daemon: Optional[Daemon] = None
    operator: Optional[Operator] = None
    try:
        daemon = Daemon(config, config_path=path)
        operator = Operator(daemon, path, args.vrrp_only, args.lvs_only, control_socket, args.dump_dir,
                            args.metrics)
        operator.install()
        run_start_stop_script(config.global_defs, startup=True)
        daemon.start()
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.EPERM, errno.EACCES):
            hint = "" if "CAP_NET_ADMIN" in str(exc) else " (vrrpd needs root, or CAP_NET_ADMIN and CAP_NET_RAW)"
            log.error("cannot start: %s%s", exc, hint)
        else:
            log.exception("start-up failed: %s", exc)
        report(f"start-up failed: {exc}")
        if operator is not None:
            operator.close()
        if pidfile is not None:
            pidfile.release()
        return 1
    report("ok")
    sd_notify(f"STATUS={operator._status_line()}")  # Daemon.start() has sent READY=1
    try:
        daemon.loop.run()
    finally:
        daemon.close()
        operator.close()
        run_start_stop_script(daemon.g, startup=False)
        if pidfile is not None:
            pidfile.release()
    return daemon.exit_code


def main(argv: Optional[List[str]] = None) -> int:
    args = build_arg_parser().parse_args(argv)
    if args.signum is not None:
        number = _signal_numbers().get(args.signum.upper())
        if number is None:
            print(f"{PROG}: unknown signal name {args.signum} ({', '.join(_signal_numbers())})", file=sys.stderr)
            return 1
        print(number)
        return 0
    if args.check:
        return check_command(args.config, config_id=args.config_id)
    if args.events:
        return events_command(control_socket_of(args), args.json)
    if args.status or args.json:
        return status_command(control_socket_of(args), args.json)
    if args.genhash:
        return genhash(args.genhash)
    if args.demo:
        return run_demo()
    if args.demo_probe:
        return demo_probe_command(args.demo_probe)
    return run_daemon(args)


if __name__ == "__main__":
    sys.exit(main())
