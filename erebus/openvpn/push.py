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

The IPv6 side (``ifconfig-ipv6``, ``route-ipv6``, ``route-ipv6-gateway``,
``dhcp-option DNS6`` / ``DNS`` with an IPv6 value, ``block-ipv6``) is optional: a
malformed one is dropped with 2.6's own "Options error: ..." line in
:attr:`PushedOptions.dropped` and the tunnel comes up without it, as the stock client
(options.c ``goto err`` in pull mode skips the option and goes on).  ``tun-ipv6`` is a
no-op, as in 2.6.

``pull-filter`` (the profile's ``accept|ignore|reject TEXT`` lines) is applied to every
pushed option before it is parsed, as options.c ``apply_pull_filter``: the first filter
whose text starts the option decides; ``reject`` raises :class:`PushRejected`.
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
class Route6:
    network: str                 # CIDR, host bits cleared (route.c clears them too)
    gateway: str | None = None
    metric: int | None = None

    @property
    def cidr(self) -> str:
        return self.network


class PushRejected(ParseError):
    """A pushed option matched a ``pull-filter reject``: 2.6 restarts the session."""


@dataclass(slots=True)
class PushedOptions:
    """What the server pushed, merged over every PUSH_REPLY continuation."""

    ifconfig: tuple[str, str] | None = None      # (local ip, netmask or remote ip)
    topology: str = "net30"
    route_gateway: str | None = None
    routes: list[Route] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    domain: str | None = None
    domain_search: list[str] = field(default_factory=list)   # DOMAIN-SEARCH, in order
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
    # IPv6 inside the tunnel: (address, prefix length, the peer's end)
    ifconfig_ipv6: tuple[str, int, str] | None = None
    routes_ipv6: list[Route6] = field(default_factory=list)
    route_ipv6_gateway: str | None = None
    block_ipv6: bool = False
    redirect_gateway: bool = False               # redirect-gateway (def1 ...): for erebus run
    dropped: list[str] = field(default_factory=list)    # 2.6's "Options error" lines
    filtered: list[str] = field(default_factory=list)   # removed by pull-filter ignore
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
    def virtual_ip6(self) -> str | None:
        return self.ifconfig_ipv6[0] if self.ifconfig_ipv6 else None

    @property
    def prefix6(self) -> int | None:
        return self.ifconfig_ipv6[1] if self.ifconfig_ipv6 else None

    @property
    def gateway6(self) -> str | None:
        """The IPv6 routes' default gateway (init.c: route-ipv6-gateway, else the
        remote end of ifconfig-ipv6)."""
        if self.route_ipv6_gateway:
            return self.route_ipv6_gateway
        return self.ifconfig_ipv6[2] if self.ifconfig_ipv6 else None

    @property
    def dns6(self) -> list[str]:
        return [d for d in self.dns if ":" in d]

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
DOMAIN_SEARCH_MAX = 10           # dhcp-option DOMAIN-SEARCH kept (tun.h N_SEARCH_LIST_LEN)
TOPOLOGIES = ("net30", "p2p", "subnet")
IFCONFIG_IPV6_BITS = (64, 124)   # options.c: "/netbits must be between 64 and 124"
DNS_SERVERS_MAX = 64             # dhcp-option DNS / DNS6 kept over a whole reply
PULL_FILTER_TYPES = ("accept", "ignore", "reject")
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


class _Dropped(ValueError):
    """An optional (IPv6) option 2.6 would skip with "Options error: ..." (a
    ValueError: the profile reader refuses the same line)."""


def _ip6(value: str) -> str | None:
    """An IPv6 address literal (options.c ipv6_addr_safe: inet_pton, no names), or
    None."""
    if not value or len(value) > 64 or "%" in value:
        return None
    try:
        return str(ipaddress.IPv6Address(value))
    except ValueError:
        return None


def ip6_prefix(value: str) -> tuple[str, int]:
    """ADDR[/BITS] as 2.6 get_ipv6_addr reads it (/64 without a suffix); _Dropped
    with 2.6's words when it is not one."""
    addr, sep, bits_text = value.partition("/")
    bits = 64
    if sep:
        if not re.fullmatch(r"[0-9]{1,3}", bits_text) or int(bits_text) > 128:
            raise _Dropped(f"IP prefix '{value[:64]}': invalid '/bits' spec "
                           f"({bits_text[:16]})")
        bits = int(bits_text)
    parsed = _ip6(addr)
    if parsed is None:
        raise _Dropped("")
    return parsed, bits


def _ifconfig_ipv6(args: list[str]) -> tuple[str, int, str]:
    words = f"ifconfig-ipv6 parms '{args[0][:64]}' and '{args[1][:64]}' must be valid " \
        "addresses"
    try:
        addr, bits = ip6_prefix(args[0])
    except _Dropped as exc:
        raise _Dropped(str(exc) or words) from None
    remote = _ip6(args[1])
    if remote is None:
        raise _Dropped(words)
    lo, hi = IFCONFIG_IPV6_BITS
    if not lo <= bits <= hi:
        raise _Dropped(f"ifconfig-ipv6: /netbits must be between {lo} and {hi}, "
                       f"not '/{bits}'")
    ip = ipaddress.IPv6Address(addr)
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_link_local:
        raise _Dropped(f"ifconfig-ipv6: {addr} cannot be this client's address")
    return addr, bits, remote


def _route_ipv6(args: list[str]) -> Route6:
    try:
        addr, bits = ip6_prefix(args[0])
    except _Dropped as exc:
        raise _Dropped(str(exc) or f"route-ipv6 parameter network/IP '{args[0][:64]}' "
                       "must be a valid address") from None
    gw = None
    if len(args) > 1:
        gw = _ip6(args[1])
        if gw is None:
            raise _Dropped(f"route-ipv6 parameter gateway '{args[1][:64]}' must be a "
                           "valid address")
    metric = None
    if len(args) > 2:
        if not re.fullmatch(r"[0-9]{1,10}", args[2]) or int(args[2]) > TIMER_MAX:
            raise _Dropped(f"route-ipv6 metric '{args[2][:16]}' must be a number >= 0")
        metric = int(args[2])
    net = ipaddress.IPv6Network(f"{addr}/{bits}", strict=False)
    return Route6(str(net), gw, metric)


def _add_dns(opts: PushedOptions, addr: str) -> None:
    if len(opts.dns) >= DNS_SERVERS_MAX:
        raise _Dropped(f"dhcp-option DNS: more than {DNS_SERVERS_MAX} servers")
    opts.dns.append(addr)


def _apply_ipv6(opts: PushedOptions, name: str, args: list[str], text: str) -> None:
    """The optional IPv6 options; _Dropped for a malformed one."""
    if name == "ifconfig-ipv6":
        if len(args) != 2:
            raise _Dropped(f"ifconfig-ipv6 takes 2 arguments, got {len(args)}")
        opts.ifconfig_ipv6 = _ifconfig_ipv6(args)
    elif name == "route-ipv6":
        if not 1 <= len(args) <= 3:
            raise _Dropped(f"route-ipv6 takes 1 to 3 arguments, got {len(args)}")
        opts.routes_ipv6.append(_route_ipv6(args))
    elif name == "route-ipv6-gateway":
        gw = _ip6(args[0]) if len(args) == 1 else None
        if gw is None:
            raise _Dropped(f"route-ipv6-gateway parm '{' '.join(args)[:64]}' must be a "
                           "valid address")
        opts.route_ipv6_gateway = gw
    elif name == "block-ipv6":
        if args:
            raise _Dropped(f"block-ipv6 takes no arguments, got {len(args)}")
        opts.block_ipv6 = True
    else:                                   # dhcp-option DNS6 / DNS with a colon
        addr = _ip6(args[1]) if len(args) == 2 else None
        if addr is None:
            shown = args[1][:64] if len(args) > 1 else ""
            raise _Dropped(f"dhcp-option parameter {args[0].upper()} '{shown}' must be "
                           "an IP address")
        _add_dns(opts, addr)


IPV6_OPTIONS = ("ifconfig-ipv6", "route-ipv6", "route-ipv6-gateway", "block-ipv6")


def ipv6_literal(value: str) -> str | None:
    """An IPv6 address literal, compressed; None if ``value`` is not one."""
    return _ip6(value)


def parse_ifconfig_ipv6(args: list[str]) -> tuple[str, int, str]:
    """``ifconfig-ipv6 ADDR/BITS REMOTE`` (a profile's or a push's): (address, bits,
    remote); ValueError in 2.6's words."""
    return _ifconfig_ipv6(args)


def parse_route_ipv6(args: list[str]) -> Route6:
    """``route-ipv6 NET/BITS [GATEWAY [METRIC]]``; ValueError in 2.6's words."""
    return _route_ipv6(args)


def pull_filter(filters, text: str) -> str | None:
    """options.c apply_pull_filter: the first ``(type, pattern)`` whose pattern starts
    ``text`` (after leading spaces) decides; None when it is ignored; PushRejected when
    rejected.  No match: kept."""
    line = text.lstrip()
    for kind, pattern in filters:
        if line.startswith(pattern):
            if kind == "accept":
                return text
            if kind == "ignore":
                return None
            raise PushRejected(f"Pushed option rejected by filter: {_shown(line, 60)}")
    return text


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
    kind = args[0].upper() if name == "dhcp-option" and args else ""
    if name in IPV6_OPTIONS or kind == "DNS6" or \
            (kind == "DNS" and len(args) > 1 and ":" in args[1]):
        try:
            _apply_ipv6(opts, name, args, text)
        except _Dropped as exc:           # options.c: msg(msglevel, ...); goto err
            opts.dropped.append(f"Options error: {exc}")
        return
    if name == "tun-ipv6":                # options.c: nothing in pull mode
        return
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
        if kind in ("DNS", "DOMAIN", "DOMAIN-SEARCH"):
            _args(f"dhcp-option {kind}", args[1:], 1, 1)
        if kind == "DNS":
            value = _ip(args[1], "dhcp-option DNS")
            try:
                _add_dns(opts, value)
            except _Dropped as exc:
                opts.dropped.append(f"Options error: {exc}")
        elif kind == "DOMAIN":
            if not 0 < len(args[1]) <= DOMAIN_MAX or not args[1].isprintable():
                raise _fail("dhcp-option DOMAIN", f"not a domain name: {_shown(args[1])}")
            opts.domain = args[1]
        elif kind == "DOMAIN-SEARCH":
            if not 0 < len(args[1]) <= DOMAIN_MAX or not args[1].isprintable():
                raise _fail("dhcp-option DOMAIN-SEARCH",
                            f"not a domain name: {_shown(args[1])}")
            if len(opts.domain_search) >= DOMAIN_SEARCH_MAX:
                opts.dropped.append(f"Options error: dhcp-option DOMAIN-SEARCH: more than "
                                    f"{DOMAIN_SEARCH_MAX} domains")
            elif args[1] not in opts.domain_search:
                opts.domain_search.append(args[1])
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
    elif name == "redirect-gateway":
        # the host's routes are never changed; `erebus run` routes everything in its
        # namespace through the tunnel, as the stock client would the host's
        opts.redirect_gateway = True
        opts.ignored.append(text)
    else:
        opts.ignored.append(text)


def check_pushed(opts: PushedOptions) -> None:
    """What only the whole reply can tell (topology may come after ifconfig)."""
    if opts.ifconfig is not None and opts.topology == "subnet":
        _netmask(opts.ifconfig[1], "ifconfig (topology subnet)")


def parse_push_reply(message: str, opts: PushedOptions,
                     filters: tuple[tuple[str, str], ...] | list = ()) -> bool:
    """Merge one PUSH_REPLY message; True when it is the last (no continuation 2).
    ``filters``: the profile's pull-filter lines, ``(type, text)`` in order."""
    if not message.startswith("PUSH_REPLY"):
        raise ParseError("not a PUSH_REPLY")
    body = message[len("PUSH_REPLY"):]
    last = True
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        if filters:
            kept = pull_filter(filters, item)
            if kept is None:
                if len(opts.filtered) < MAX_PUSHED_OPTIONS:
                    opts.filtered.append(item)
                continue
        if item.startswith("push-continuation"):
            last = item.split()[-1] != "2"
            continue
        apply_push_option(opts, item)
    if last:
        check_pushed(opts)
    return last
