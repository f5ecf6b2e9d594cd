"""Hosts and ports as users and clients write them, for both address families.

- :func:`split_fields`: ssh's colon-separated forward specs, where an IPv6 address goes
  in brackets (``[::1]:8080:[2001:2:0:2::2]:80``), as ssh's ``hpdelim`` reads them.
- :func:`parse_authority`: RFC 3986 section 3.2.2's ``host [ ":" port ]`` (an HTTP
  CONNECT target, an absolute URI's authority): ``IP-literal`` in brackets, an IPv4
  address or a registered name.
- :func:`hostport`: the other way, ``[2001:2::1]:443`` / ``198.18.2.2:80`` (the
  shell's :func:`erebus.runtime.tunnel.host_port`).
- :func:`tunnel_families`: which families the tunnel carries (a
  :class:`erebus.runtime.stack.VpnStack`, or a stand-in a test gives).

Every refusal is a :class:`BadHostPort` (a ValueError) whose message says what is
wrong in one line; the callers put the argument or the request in front of it.
"""

from __future__ import annotations

import ipaddress
import re

from ..tunnel import host_port as hostport        # the shell's: one spelling of it

__all__ = ["BadHostPort", "hostport", "ip_family", "parse_authority", "split_fields",
           "tunnel_families", "unmapped"]

MAX_SPEC = 1024                  # characters of a spec or an authority looked at
# RFC 3986 reg-name: unreserved / pct-encoded / sub-delims; we take what DNS names use
_REG_NAME = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+\Z")


class BadHostPort(ValueError):
    """A host and port that cannot be read; the message says why."""


def ip_family(host: str) -> int | None:
    """4 or 6 for an address literal (without brackets), None for anything else."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _bracketed(inner: str, text: str) -> str:
    """The IPv6 address between brackets, compressed (RFC 5952); BadHostPort else."""
    if "%" in inner:
        raise BadHostPort(f"[{inner}]: a zone ({inner[inner.index('%'):]}) means nothing "
                          "inside the tunnel")
    try:
        return str(ipaddress.IPv6Address(inner))
    except ValueError:
        raise BadHostPort(f"[{inner}] is not an IPv6 address (brackets hold only IPv6 "
                          "addresses)") from None


def split_fields(spec: str) -> list[str]:
    """The colon-separated fields of ``spec``; a field may be an IPv6 address in
    brackets (returned without them, compressed).  A ``[`` opens a field only at its
    start, and its ``]`` must end the field.  BadHostPort for an unbalanced bracket, a
    bracketed field that is not an IPv6 address, or text after ``]``."""
    if len(spec) > MAX_SPEC:
        raise BadHostPort(f"longer than {MAX_SPEC} characters")
    fields: list[str] = []
    rest = spec
    while True:
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                raise BadHostPort("unbalanced '[': an IPv6 address is written [2001:2::1]")
            fields.append(_bracketed(rest[1:end], spec))
            rest = rest[end + 1:]
            if not rest:
                return fields
            if rest[0] != ":":
                raise BadHostPort(f"{rest[0]!r} after ']': expected ':'")
            rest = rest[1:]
            continue
        head, sep, rest = rest.partition(":")
        if "[" in head or "]" in head:
            raise BadHostPort(f"{head!r}: brackets go around a whole IPv6 address")
        fields.append(head)
        if not sep:
            return fields


def parse_authority(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``host[:port]`` (RFC 3986 3.2.2 and 3.2.3): (host without brackets, port).  An
    IPv6 address must be in brackets (``[2001:2::1]:443``), a bracketed host must be an
    IPv6 address (IPvFuture is refused), the port is 1..65535 and is required unless
    ``default_port`` is given.  BadHostPort, saying why, otherwise."""
    if len(text) > MAX_SPEC:
        raise BadHostPort(f"a host longer than {MAX_SPEC} characters")
    if not text:
        raise BadHostPort("no host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadHostPort(f"{text!r}: unbalanced '[' (an IPv6 host is "
                              "[2001:2::1]:PORT)")
        inner = text[1:end]
        if inner[:1] in ("v", "V"):
            raise BadHostPort(f"{text!r}: IPvFuture addresses are not supported")
        host = _bracketed(inner, text)
        rest = text[end + 1:]
        if rest and rest[0] != ":":
            raise BadHostPort(f"{text!r}: {rest[0]!r} after ']': expected ':PORT'")
        port_text = rest[1:] if rest else None
    else:
        if "[" in text or "]" in text:
            raise BadHostPort(f"{text!r}: brackets go around a whole IPv6 address")
        if text.count(":") > 1:
            raise BadHostPort(f"{text!r}: an IPv6 address goes in brackets "
                              "([2001:2::1]:PORT)")
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = None
        if not host:
            raise BadHostPort(f"{text!r}: no host")
        if not _REG_NAME.match(host):
            raise BadHostPort(f"{text!r}: {host!r} is not a host name or address")
    if port_text is None or port_text == "":
        # RFC 3986: an empty port is the scheme's default
        if default_port is None:
            raise BadHostPort(f"{text!r}: no port (HOST:PORT)")
        return host, default_port
    if not port_text.isdigit() or len(port_text) > 5:
        raise BadHostPort(f"{text!r}: {port_text!r} is not a port number")
    port = int(port_text)
    if not 0 < port < 65536:
        raise BadHostPort(f"{text!r}: port {port} is out of range 1..65535")
    return host, port


def unmapped(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address, an IPv4-mapped IPv6 one (a dual-stack socket's peer) as IPv4."""
    ip = ipaddress.ip_address(address)
    return (ip.ipv4_mapped or ip) if ip.version == 6 else ip


def tunnel_families(vpn) -> tuple[bool, bool]:
    """(has IPv4, has IPv6) for the tunnel behind ``vpn``: ``has_ipv4`` / ``has_ipv6``
    when it says, else what its stack has (an IPv4-only stack before dual stack)."""
    v6 = bool(getattr(vpn, "has_ipv6", False))
    v4 = getattr(vpn, "has_ipv4", None)
    if v4 is None:
        stack = getattr(vpn, "stack", None)
        v4 = stack is None or getattr(stack, "local_ip", 0) is not None
    return bool(v4), v6
