"""UDP datagrams (RFC 768): sans-IO parse and build.

Header (8 bytes)::

    src_port(2) | dst_port(2) | length(2: header plus payload) | checksum(2)

The checksum covers the IPv4 pseudo-header (src, dst, zero, protocol 17, UDP
length) and the whole datagram; over IPv6 the IPv6 one (RFC 8200 section 8.1),
which sums the same way: the builder and the parser take either family's
addresses (IPv4 ones as the 32-bit integers of the hot path, IPv6 ones as 16
packed bytes, or either as text; see :func:`erebus.wire.ipv6.address_int`).
A transmitted checksum of 0 means "none"; a computed checksum of 0 is therefore
sent as 0xFFFF (its ones' complement twin), which :func:`build_udp` does.

:func:`parse_udp` trims bytes past the length field (link or IP padding) and
verifies the checksum unless it is 0, which IPv6 does not allow (RFC 8200
section 8.1: such a datagram is discarded, as Linux does).  Malformed input raises
:class:`erebus.errors.ParseError` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import ParseError
from .checksum import internet_checksum, pseudo_header_sum
from .ipv4 import PROTO_UDP
from .ipv6 import address_int, is_ipv6_address

__all__ = ["HEADER_LEN", "MAX_LENGTH", "UdpDatagram", "parse_udp", "build_udp"]

HEADER_LEN = 8
MAX_LENGTH = 0xFFFF  # the length field is 16 bits

_HDR = struct.Struct("!HHHH")


@dataclass(slots=True)
class UdpDatagram:
    """A parsed UDP datagram.  ``payload`` is a view into the parsed buffer
    (keep the buffer unchanged while the view is in use, or copy it with
    ``bytes()``).  ``checksum`` is the field as received, 0 if the sender
    sent none (not compared by ``==``)."""

    src_port: int
    dst_port: int
    payload: memoryview | bytes = field(default=b"", repr=False)
    checksum: int = field(default=0, compare=False)

    @property
    def length(self) -> int:
        """The UDP length: header plus payload."""
        return HEADER_LEN + len(self.payload)


def parse_udp(data: bytes | bytearray | memoryview, src_ip: int, dst_ip: int, *,
              verify_checksum: bool = True) -> UdpDatagram:
    """Parse one UDP datagram (an IPv4 or IPv6 payload with protocol 17).

    ``src_ip``/``dst_ip`` are the addresses of the carrying packet (for the
    pseudo-header checksum; IPv6 ones as 16 bytes).  Raises ParseError for fewer
    than 8 bytes, a length field below 8 or beyond ``data``, or (unless
    ``verify_checksum`` is false) a wrong checksum, or a checksum field of 0
    between IPv6 addresses.  Bytes past the
    length field are dropped.
    """
    mv = memoryview(data)
    n = len(mv)
    if n < HEADER_LEN:
        raise ParseError(f"UDP: {n} bytes, shorter than a header")
    sport, dport, length, csum = _HDR.unpack_from(mv)
    if length < HEADER_LEN:
        raise ParseError(f"UDP: length {length} shorter than the header")
    if length > n:
        raise ParseError(f"UDP: length {length} beyond the {n} bytes received")
    if length < n:
        mv = mv[:length]
    if verify_checksum and csum:
        if type(src_ip) is not int:
            src_ip = address_int(src_ip)
        if type(dst_ip) is not int:
            dst_ip = address_int(dst_ip)
        if internet_checksum(mv, pseudo_header_sum(src_ip, dst_ip, PROTO_UDP, length)) != 0:
            raise ParseError(f"UDP: bad checksum 0x{csum:04x}")
    elif verify_checksum and is_ipv6_address(src_ip):
        raise ParseError("UDP: no checksum (0) over IPv6")
    return UdpDatagram(sport, dport, mv[HEADER_LEN:], csum)


def build_udp(src_ip: int | str | bytes, dst_ip: int | str | bytes, src_port: int,
              dst_port: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """A whole UDP datagram with a correct checksum (a computed 0 is sent as
    0xFFFF).  Raises ValueError for ports out of range or a datagram longer
    than 65535 bytes."""
    if type(src_ip) is not int:
        src_ip = address_int(src_ip)
    if type(dst_ip) is not int:
        dst_ip = address_int(dst_ip)
    length = HEADER_LEN + len(payload)
    if length > MAX_LENGTH:
        raise ValueError(f"UDP datagram of {length} bytes (at most {MAX_LENGTH})")
    # The header's words (length appears twice: pseudo-header and header).
    csum = internet_checksum(payload, pseudo_header_sum(src_ip, dst_ip, PROTO_UDP, length)
                             + src_port + dst_port + length) or 0xFFFF
    try:
        header = _HDR.pack(src_port, dst_port, length, csum)
    except struct.error as exc:
        raise ValueError(f"UDP header field out of range: {exc}") from None
    return header + payload if payload else header
