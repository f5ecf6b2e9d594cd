"""Addresses of either family, as the stack holds them.

An IPv4 address is an ``int`` (as :mod:`erebus.wire.ipv4` has it), an IPv6 address 16
packed ``bytes`` (as :mod:`erebus.wire.ipv6` has it): the type is the family, so a
4-tuple of a TCP connection is a dict key for both, and an IPv6 address that happens to
be small (``::1``) is never read as IPv4.

    to_addr("2001:2::1")  -> b" \\x01\\x00\\x02..."     to_addr("198.18.0.1") -> 3323068417
    addr_str(a)           -> "2001:2::1" / "198.18.0.1"
    is_ipv6(a)            -> True for 16 bytes
"""

from __future__ import annotations

import ipaddress

from .ipv4 import ip_from_str, ip_to_str
from .ipv6 import ip6_from_str, ip6_to_str

Addr = int | bytes


class MappedAddressError(ValueError):
    """An IPv4-mapped IPv6 address (``::ffff:198.18.0.1``) where an address of the
    tunnel is meant."""


def to_addr(addr) -> Addr:
    """An address given as text of either family, an IPv4 int, 4 or 16 packed bytes or
    an :mod:`ipaddress` object, as the stack's form (int or 16 bytes).  ValueError
    otherwise; an IPv4-mapped IPv6 address (``::ffff:198.18.0.1``) is refused: inside
    a tunnel it names neither family's host."""
    if type(addr) is int:
        if not 0 <= addr <= 0xFFFFFFFF:
            raise ValueError(f"IPv4 address {addr} out of range")
        return addr
    if type(addr) is bytes and len(addr) == 16:
        packed = addr
    elif isinstance(addr, str):
        if ":" not in addr:
            return ip_from_str(addr)
        packed = ip6_from_str(addr)
    elif isinstance(addr, (bytes, bytearray, memoryview)):
        if len(addr) == 4:
            return int.from_bytes(addr, "big")
        if len(addr) != 16:
            raise ValueError(f"an address is 4 or 16 bytes, not {len(addr)}")
        packed = bytes(addr)
    elif isinstance(addr, ipaddress.IPv4Address):
        return int(addr)
    elif isinstance(addr, ipaddress.IPv6Address):
        packed = addr.packed
    else:
        raise ValueError(f"not an IPv4 or IPv6 address: {addr!r}")
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        raise MappedAddressError(f"{ip6_to_str(packed)} is an IPv4-mapped address: give "
                                 "the IPv4 address itself")
    return packed


def addr_str(addr: Addr) -> str:
    """The stack's form as text (RFC 5952 for IPv6)."""
    return ip_to_str(addr) if type(addr) is int else ip6_to_str(addr)


def is_ipv6(addr: Addr) -> bool:
    """True for the stack's IPv6 form (16 bytes)."""
    return type(addr) is not int


def family_name(addr: Addr) -> str:
    return "IPv6" if type(addr) is not int else "IPv4"
