"""PUSH_REPLY and the other messages a server sends on the control channel (push.c)."""

from __future__ import annotations

import base64
import ipaddress
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
    auth: str | None = None
    ping: int | None = None
    ping_restart: int | None = None
    protocol_flags: set[str] = field(default_factory=set)
    key_derivation: str | None = None
    auth_token: str | None = None
    auth_token_user: str | None = None
    compression: str | None = None
    ignored: list[str] = field(default_factory=list)
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


def _ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ParseError(f"PUSH_REPLY: {what}: bad IPv4 address {value!r}") from None


def _netmask(value: str, what: str) -> str:
    """A contiguous IPv4 netmask.  Anything else would make ``Route.cidr`` raise
    (or, for a host-mask-looking value such as 0.0.0.255, silently mean another
    prefix) long after the PUSH_REPLY was accepted."""
    mask = _ip(value, what)
    inverted = ~int(ipaddress.IPv4Address(mask)) & 0xFFFFFFFF
    if inverted & (inverted + 1):
        raise ParseError(f"PUSH_REPLY: {what}: bad netmask {value!r}")
    return mask


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ParseError(f"PUSH_REPLY: {what}: not a number: {value!r}") from None


def apply_push_option(opts: PushedOptions, text: str) -> None:
    """Merge one pushed option (``route 198.18.100.0 255.255.255.0`` ...)."""
    opts.raw.append(text)
    try:
        words = shlex.split(text)
    except ValueError:
        raise ParseError(f"PUSH_REPLY: cannot split option {text!r}") from None
    if not words:
        return
    name, args = words[0], words[1:]
    if name == "ifconfig" and len(args) >= 2:
        opts.ifconfig = (_ip(args[0], name), _ip(args[1], name))
    elif name == "topology" and args:
        opts.topology = args[0]
    elif name == "route-gateway" and args:
        opts.route_gateway = None if args[0] == "dhcp" else _ip(args[0], name)
    elif name == "route" and args:
        mask = args[1] if len(args) > 1 and args[1] != "default" else "255.255.255.255"
        gw = args[2] if len(args) > 2 and args[2] not in ("default", "vpn_gateway") else None
        opts.routes.append(Route(_ip(args[0], name), _netmask(mask, name),
                                 _ip(gw, name) if gw else None))
    elif name == "dhcp-option" and len(args) >= 2:
        kind = args[0].upper()
        if kind == "DNS" and ":" in args[1]:
            # 2.6 options.c: a DNS value with a colon is an IPv6 server (as DNS6);
            # the IPv4-only stack cannot use it, but it is valid and must not fail the reply.
            try:
                ipaddress.IPv6Address(args[1])
            except ValueError:
                raise ParseError(f"PUSH_REPLY: dhcp-option DNS: bad address {args[1]!r}") from None
            opts.ignored.append(text)
        elif kind == "DNS":
            opts.dns.append(_ip(args[1], "dhcp-option DNS"))
        elif kind == "DOMAIN":
            opts.domain = args[1]
        else:
            opts.ignored.append(text)
    elif name == "tun-mtu" and args:
        opts.tun_mtu = _int(args[0], name)
    elif name == "peer-id" and args:
        opts.peer_id = _int(args[0], name)
        if not 0 <= opts.peer_id <= 0xFFFFFF:
            raise ParseError(f"PUSH_REPLY: peer-id {opts.peer_id} out of range")
    elif name == "cipher" and args:
        opts.cipher = args[0].upper()
    elif name == "auth" and args:
        opts.auth = args[0].upper()
    elif name == "ping" and args:
        opts.ping = _int(args[0], name)
    elif name == "ping-restart" and args:
        opts.ping_restart = _int(args[0], name)
    elif name == "protocol-flags":
        opts.protocol_flags.update(args)
    elif name == "key-derivation" and args:
        opts.key_derivation = args[0]
    elif name == "auth-token" and args:
        opts.auth_token = args[0]
    elif name == "auth-token-user" and args:
        try:
            opts.auth_token_user = base64.b64decode(args[0], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise ParseError("PUSH_REPLY: auth-token-user is not base64 text") from None
    elif name in ("compress", "comp-lzo"):
        opts.compression = text
    else:
        opts.ignored.append(text)


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
    return last
