"""PUSH_REPLY and the other messages a server sends on the control channel (push.c).

Every option erebus acts on is checked here, the way options.c checks it in pull
mode and then some: exact argument counts, IPv4 addresses and contiguous netmasks,
ASCII decimal numbers inside the range the rest of erebus can use, names from the
values 2.6 knows.  A bad one raises :class:`ParseError` naming the option, and the
session refuses the whole PUSH_REPLY (stage "push").  The options are bounded:
at most :data:`MAX_PUSHED_OPTIONS` over all continuation messages.

Options 2.6 does not take from a push (``auth``: "option 'auth' cannot be used in
this context ([PUSH-OPTIONS])") are listed in :attr:`PushedOptions.not_pullable`
and not applied, as by the stock client.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import shlex
from dataclasses import dataclass, field

from ..errors import ParseError


@dataclass(slots=True)
class Route:
    network: str
    netmask: str
    gateway: str | None = None

    @property
    def cidr(self) -> str:
        return str(ipaddress.IPv4Network(f"{self.network}/{self.netmask}", strict=False))


@dataclass(slots=True)
class PushedOptions:
    """What the server pushed, merged over every PUSH_REPLY continuation."""

    ifconfig: tuple[str, str] | None = None      # (local ip, netmask or remote ip)
    topology: str = "net30"
    route_gateway: str | None = None
    routes: list[Route] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    domain: str | None = None
    tun_mtu: int | None = None
    peer_id: int | None = None
    cipher: str | None = None
    ping: int | None = None
    ping_restart: int | None = None
    protocol_flags: set[str] = field(default_factory=set)
    key_derivation: str | None = None
    auth_token: str | None = None
    auth_token_user: str | None = None
    compression: str | None = None
    ignored: list[str] = field(default_factory=list)
    not_pullable: list[str] = field(default_factory=list)   # refused in pull mode by 2.6
    raw: list[str] = field(default_factory=list)

    @property
    def virtual_ip(self) -> str | None:
        return self.ifconfig[0] if self.ifconfig else None

    @property
    def netmask(self) -> str | None:
        if not self.ifconfig:
            return None
        if self.topology == "subnet":
            return self.ifconfig[1]
        return "255.255.255.255"   # net30/p2p: the second address is the peer

    @property
    def gateway(self) -> str | None:
        if self.route_gateway:
            return self.route_gateway
        if self.ifconfig and self.topology != "subnet":
            return self.ifconfig[1]
        return None


MAX_PUSHED_OPTIONS = 4096        # over every continuation of one PUSH_REPLY
TUN_MTU_MIN, TUN_MTU_MAX = 576, 65535
TIMER_MAX = 0x7FFFFFFF           # an int in options.c
PEER_ID_MAX = 0xFFFFFF           # 24 bits in the P_DATA_V2 header
AUTH_TOKEN_MAX = 4096            # bytes; it is sent back as the password
DOMAIN_MAX = 253
TOPOLOGIES = ("net30", "p2p", "subnet")
PROTOCOL_FLAGS = ("cc-exit", "tls-ekm", "dyn-tls-crypt")    # options.c knows these
SPECIAL_ADDRS = ("vpn_gateway", "net_gateway", "remote_host")  # route.c get_special_addr
_CIPHER_NAME = re.compile(r"[A-Za-z0-9\[\]-]{1,64}")
_DIGITS = re.compile(r"-?[0-9]{1,12}")


def _shown(value: str, limit: int = 40) -> str:
    """A peer's value, quoted and cut short, for a one-line message."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _fail(what: str, reason: str) -> ParseError:
    return ParseError(f"PUSH_REPLY: {what}: {reason}")


def _ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise _fail(what, f"bad IPv4 address {_shown(value)}") from None


def _netmask(value: str, what: str) -> str:
    """A contiguous IPv4 netmask.  Anything else would make ``Route.cidr`` raise
    (or, for a host-mask-looking value such as 0.0.0.255, silently mean another
    prefix) long after the PUSH_REPLY was accepted."""
    mask = _ip(value, what)
    inverted = ~int(ipaddress.IPv4Address(mask)) & 0xFFFFFFFF
    if inverted & (inverted + 1):
        raise _fail(what, f"bad netmask {_shown(value)}")
    return mask


def _int(value: str, what: str, lo: int = 0, hi: int = TIMER_MAX) -> int:
    """A decimal number in ASCII (``int()`` alone would also take ``'1_0'``, ``' 7'``
    or other scripts' digits) inside ``lo..hi``."""
    if not _DIGITS.fullmatch(value):
        raise _fail(what, f"not a number: {_shown(value)}")
    n = int(value)
    if not lo <= n <= hi:
        raise _fail(what, f"{n} is out of range ({lo}..{hi})")
    return n


def _args(name: str, args: list[str], lo: int, hi: int | None) -> None:
    if len(args) < lo or (hi is not None and len(args) > hi):
        want = (f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None
                else f"at least {lo}")
        raise _fail(name, f"takes {want} argument{'s' if want != '1' else ''}, "
                    f"got {len(args)}")


def _usable_local(value: str, what: str) -> str:
    ip = ipaddress.IPv4Address(_ip(value, what))
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or \
            ip == ipaddress.IPv4Address("255.255.255.255"):
        raise _fail(what, f"{ip} cannot be this client's address")
    return str(ip)


def apply_push_option(opts: PushedOptions, text: str) -> None:
    """Merge one pushed option (``route 198.18.100.0 255.255.255.0`` ...)."""
    if len(opts.raw) >= MAX_PUSHED_OPTIONS:
        raise ParseError(f"PUSH_REPLY: more than {MAX_PUSHED_OPTIONS} options")
    opts.raw.append(text)
    try:
        words = shlex.split(text)
    except ValueError:
        raise ParseError(f"PUSH_REPLY: cannot split option {_shown(text)}") from None
    if not words:
        return
    name, args = words[0], words[1:]
    if name == "ifconfig":
        _args(name, args, 2, 2)
        opts.ifconfig = (_usable_local(args[0], name), _ip(args[1], name))
    elif name == "topology":
        _args(name, args, 1, 1)
        if args[0] not in TOPOLOGIES:
            raise _fail(name, f"must be net30, p2p, or subnet, not {_shown(args[0])}")
        opts.topology = args[0]
    elif name == "route-gateway":
        _args(name, args, 1, 1)
        # dhcp, or a special address: no gateway erebus can use
        opts.route_gateway = None if args[0] == "dhcp" or args[0] in SPECIAL_ADDRS \
            else _ip(args[0], name)
    elif name == "route":
        _args(name, args, 1, 4)
        mask = args[1] if len(args) > 1 and args[1] != "default" else "255.255.255.255"
        gw = args[2] if len(args) > 2 and args[2] not in ("default", "vpn_gateway") else None
        if len(args) > 3 and args[3] != "default":
            _int(args[3], "route metric")
        if args[0] in SPECIAL_ADDRS or gw in SPECIAL_ADDRS:
            # remote_host / net_gateway: a route around the tunnel, for the host's table
            _netmask(mask, name)
            opts.ignored.append(text)
            return
        opts.routes.append(Route(_ip(args[0], name), _netmask(mask, name),
                                 _ip(gw, name) if gw else None))
    elif name == "dhcp-option":
        _args(name, args, 1, None)
        kind = args[0].upper()
        if kind in ("DNS", "DOMAIN"):
            _args(f"dhcp-option {kind}", args[1:], 1, 1)
        if kind == "DNS" and ":" in args[1]:
            # 2.6 options.c: a DNS value with a colon is an IPv6 server (as DNS6);
            # the IPv4-only stack cannot use it, but it is valid and must not fail the reply.
            try:
                ipaddress.IPv6Address(args[1])
            except ValueError:
                raise _fail("dhcp-option DNS", f"bad address {_shown(args[1])}") from None
            opts.ignored.append(text)
        elif kind == "DNS":
            opts.dns.append(_ip(args[1], "dhcp-option DNS"))
        elif kind == "DOMAIN":
            if not 0 < len(args[1]) <= DOMAIN_MAX or not args[1].isprintable():
                raise _fail("dhcp-option DOMAIN", f"not a domain name: {_shown(args[1])}")
            opts.domain = args[1]
        else:
            opts.ignored.append(text)
    elif name == "tun-mtu":
        _args(name, args, 1, 2)               # the second is the OCC MTU, unused
        opts.tun_mtu = _int(args[0], name, TUN_MTU_MIN, TUN_MTU_MAX)
    elif name == "peer-id":
        _args(name, args, 1, 1)
        opts.peer_id = _int(args[0], name, 0, PEER_ID_MAX)
    elif name == "cipher":
        _args(name, args, 1, 1)
        if not _CIPHER_NAME.fullmatch(args[0]):
            raise _fail(name, f"not a cipher name: {_shown(args[0])}")
        opts.cipher = args[0].upper()
    elif name == "auth":
        # options.c: OPT_P_GENERAL, not in the pull permission mask
        opts.not_pullable.append(text)
    elif name in ("ping", "ping-restart"):
        _args(name, args, 1, 1)
        value = _int(args[0], name)
        if name == "ping":
            opts.ping = value
        else:
            opts.ping_restart = value
    elif name == "protocol-flags":
        _args(name, args, 1, None)
        for flag in args:
            if flag in PROTOCOL_FLAGS:
                opts.protocol_flags.add(flag)
            else:                             # 2.6: "Unknown protocol-flags flag"
                opts.ignored.append(f"protocol-flags {flag}")
    elif name == "key-derivation":
        _args(name, args, 1, None)
        if args[0] == "tls-ekm":
            opts.key_derivation = args[0]
        else:                                 # 2.6: "Unknown key-derivation method"
            opts.ignored.append(text)
    elif name == "auth-token":
        _args(name, args, 1, 1)
        if len(args[0].encode()) > AUTH_TOKEN_MAX:
            raise _fail(name, f"longer than {AUTH_TOKEN_MAX} bytes")
        opts.auth_token = args[0]
    elif name == "auth-token-user":
        _args(name, args, 1, 1)
        try:
            user = base64.b64decode(args[0], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise _fail(name, "not base64 text") from None
        if "\x00" in user or len(user.encode()) > AUTH_TOKEN_MAX:
            raise _fail(name, "not a usable user name")
        opts.auth_token_user = user
    elif name in ("compress", "comp-lzo"):
        opts.compression = text
    else:
        opts.ignored.append(text)


def check_pushed(opts: PushedOptions) -> None:
    """What only the whole reply can tell (topology may come after ifconfig)."""
    if opts.ifconfig is not None and opts.topology == "subnet":
        _netmask(opts.ifconfig[1], "ifconfig (topology subnet)")


def parse_push_reply(message: str, opts: PushedOptions) -> bool:
    """Merge one PUSH_REPLY message; True when it is the last (no continuation 2)."""
    if not message.startswith("PUSH_REPLY"):
        raise ParseError("not a PUSH_REPLY")
    body = message[len("PUSH_REPLY"):]
    last = True
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("push-continuation"):
            last = item.split()[-1] != "2"
            continue
        apply_push_option(opts, item)
    if last:
        check_pushed(opts)
    return last
