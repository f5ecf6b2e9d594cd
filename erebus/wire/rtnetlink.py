"""rtnetlink requests, as ``erebus run`` configures the namespace it makes (RFC 3549;
the kernel's ``include/uapi/linux/{netlink,rtnetlink,if_link,if_addr}.h``).

Only what a TUN-only namespace needs: bring a link up with an MTU, add an address,
add a route through a device; and the kernel's answer to each (an ``NLMSG_ERROR``
carrying 0 or ``-errno``).  Sans-IO: messages are bytes built here and sent by
whoever holds the ``AF_NETLINK`` socket (:func:`erebus.runtime.nshelper.configure`).

    link_up(index, mtu=1400, seq=1)                 -> RTM_NEWLINK
    addr_add(index, "198.18.9.6", 24, seq=2)         -> RTM_NEWADDR (IFA_F_NODAD)
    route_add(index, "198.19.0.0", 16, seq=3)        -> RTM_NEWROUTE (scope link)
    parse_acks(data) -> [(seq, errno)]               (errno 0: done)
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["NLMSG_ERROR", "NLMSG_DONE", "RTM_NEWLINK", "RTM_NEWADDR", "RTM_NEWROUTE",
           "link_up", "addr_add", "route_add", "parse_acks", "NetlinkError"]

# netlink.h
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# rtnetlink.h
RTM_NEWLINK = 16
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
RTA_DST = 1
RTA_OIF = 4
RTA_PREFSRC = 7
RTA_METRICS = 8
RTAX_MTU = 2
RTAX_ADVMSS = 8
# if_link.h / if.h
IFLA_MTU = 4
IFF_UP = 0x1
# if_addr.h
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_NODAD = 0x02

_NLMSGHDR = struct.Struct("=IHHII")          # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")         # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")          # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")          # family, dst_len, src_len, tos, table,
                                              # protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")
_AF_UNSPEC, _AF_INET, _AF_INET6 = 0, 2, 10


class NetlinkError(ValueError):
    """The kernel's answer could not be read (truncated or malformed)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, value: bytes) -> bytes:
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind,
                          NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0) + body


def _family_and_bytes(address: str) -> tuple[int, bytes]:
    addr = ipaddress.ip_address(address)
    return (_AF_INET6 if addr.version == 6 else _AF_INET), addr.packed


def link_up(index: int, *, mtu: int | None = None, seq: int = 1) -> bytes:
    """RTM_NEWLINK: set IFF_UP on the link ``index`` (and its MTU)."""
    body = _IFINFOMSG.pack(_AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
    if mtu is not None:
        body += _attr(IFLA_MTU, struct.pack("=I", mtu))
    return _message(RTM_NEWLINK, 0, seq, body)


def addr_add(index: int, address: str, prefixlen: int, *, seq: int = 1) -> bytes:
    """RTM_NEWADDR: ``address/prefixlen`` on ``index``, without duplicate address
    detection (IPv6: no probe goes out; IPv4: the flag is ignored)."""
    family, packed = _family_and_bytes(address)
    if not 0 <= prefixlen <= len(packed) * 8:
        raise ValueError(f"prefix length {prefixlen} out of range for {address}")
    flags = IFA_F_NODAD if family == _AF_INET6 else 0
    body = (_IFADDRMSG.pack(family, prefixlen, flags, RT_SCOPE_UNIVERSE, index)
            + _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
            + _attr(IFA_FLAGS, struct.pack("=I", flags)))
    return _message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, seq, body)


def route_add(index: int, destination: str, prefixlen: int, *, source: str | None = None,
              mtu: int | None = None, advmss: int | None = None, seq: int = 1) -> bytes:
    """RTM_NEWROUTE: ``destination/prefixlen`` out of ``index`` in the main table (a
    TUN has no link layer: no gateway, scope link).  ``mtu`` and ``advmss`` go in
    RTA_METRICS (the path MTU the kernel's TCP sizes segments by, and the MSS it
    announces)."""
    family, packed = _family_and_bytes(destination)
    if not 0 <= prefixlen <= len(packed) * 8:
        raise ValueError(f"prefix length {prefixlen} out of range for {destination}")
    body = _RTMSG.pack(family, prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC,
                       RT_SCOPE_LINK, RTN_UNICAST, 0)
    if prefixlen:
        body += _attr(RTA_DST, packed)
    body += _attr(RTA_OIF, struct.pack("=i", index))
    if source is not None:
        src_family, src = _family_and_bytes(source)
        if src_family != family:
            raise ValueError(f"source {source} is not of the family of {destination}")
        body += _attr(RTA_PREFSRC, src)
    metrics = b""
    if mtu is not None:
        metrics += _attr(RTAX_MTU, struct.pack("=I", mtu))
    if advmss is not None:
        metrics += _attr(RTAX_ADVMSS, struct.pack("=I", advmss))
    if metrics:
        body += _attr(RTA_METRICS, metrics)
    return _message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, seq, body)


def parse_acks(data: bytes | bytearray | memoryview) -> list[tuple[int, int]]:
    """The ``(seq, errno)`` of every NLMSG_ERROR in one read (errno 0 is the ACK);
    other messages are skipped.  NetlinkError if a header or length is out of bounds."""
    mv = memoryview(data)
    out: list[tuple[int, int]] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(mv):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(mv, offset)
        if length < _NLMSGHDR.size or offset + length > len(mv):
            raise NetlinkError(f"netlink message of length {length} at {offset} runs past "
                               f"the {len(mv)} bytes read")
        if kind == NLMSG_ERROR:
            if length < _NLMSGHDR.size + _ERRNO.size:
                raise NetlinkError("NLMSG_ERROR without its error code")
            (error,) = _ERRNO.unpack_from(mv, offset + _NLMSGHDR.size)
            out.append((seq, -error))
        offset += _align(length)
    if offset < len(mv):
        raise NetlinkError(f"{len(mv) - offset} trailing bytes after the last netlink "
                           "message")
    return out
