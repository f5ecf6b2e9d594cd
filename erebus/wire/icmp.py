"""ICMP for IPv4 (RFC 792): sans-IO parse and build of the ICMP message
(the IPv4 payload; see :mod:`erebus.wire.ipv4` for the IP header).

Every message::

    type(1) | code(1) | checksum(2) | rest_of_header(4) | data

The checksum covers the whole message.

* Echo request (8) and echo reply (0): ``rest = identifier(2) | sequence(2)``,
  data is echoed back verbatim.
* Errors -- destination unreachable (3), source quench (4), redirect (5),
  time exceeded (11), parameter problem (12): ``rest`` is unused, or the
  next-hop MTU in its low 16 bits (3/4, "fragmentation needed", RFC 1191),
  the gateway address (5), or a pointer in its top byte (12).  The data
  quotes the original datagram: its IP header and at least its first 8
  payload bytes, enough for TCP/UDP ports or the ICMP echo identifier.
  :class:`IcmpError` exposes those so the connection concerned can be found.

Any other type parses as :class:`IcmpMessage`.  Malformed input raises
:class:`erebus.errors.ParseError` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import ParseError
from .checksum import internet_checksum
from .ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, IPv4Header, ip_to_str, parse_ipv4_prefix

__all__ = [
    "ECHO_REPLY", "DEST_UNREACH", "SOURCE_QUENCH", "REDIRECT", "ECHO_REQUEST",
    "TIME_EXCEEDED", "PARAMETER_PROBLEM", "ERROR_TYPES",
    "UNREACH_NET", "UNREACH_HOST", "UNREACH_PROTOCOL", "UNREACH_PORT",
    "UNREACH_FRAG_NEEDED", "UNREACH_ADMIN_PROHIBITED",
    "EXCEEDED_TTL", "EXCEEDED_REASSEMBLY",
    "IcmpEcho", "IcmpError", "IcmpMessage", "OriginalDatagram",
    "parse_icmp", "build_icmp", "build_echo_request", "build_echo_reply", "build_icmp_error",
]

ECHO_REPLY = 0
DEST_UNREACH = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12

ERROR_TYPES = frozenset({DEST_UNREACH, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED,
                         PARAMETER_PROBLEM})

# Destination unreachable codes (the common ones).
UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4
UNREACH_ADMIN_PROHIBITED = 13

# Time exceeded codes.
EXCEEDED_TTL = 0
EXCEEDED_REASSEMBLY = 1

HEADER_LEN = 8

_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, rest as two words
_HEADER32 = struct.Struct("!BBHI")  # type, code, checksum, rest as one word
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


@dataclass(slots=True)
class IcmpEcho:
    """Echo request (type 8) or echo reply (type 0)."""

    type: int
    code: int
    checksum: int
    ident: int
    seq: int
    data: bytes

    @property
    def is_request(self) -> bool:
        return self.type == ECHO_REQUEST


@dataclass(slots=True)
class OriginalDatagram:
    """The datagram quoted by an ICMP error.

    ``src_port``/``dst_port`` are set for TCP and UDP, ``echo_ident`` for an
    ICMP echo (request or reply), when the quote holds the first payload bytes
    of a first (offset 0) fragment; else they are None.  ``tcp_seq`` is the quoted
    TCP segment's sequence number (RFC 5927 checks it against what is in flight),
    set when the quote holds the first 8 bytes of the segment (RFC 792 quotes 8).
    ``payload`` is the quoted start of the original payload (at most
    ``header.payload_len``).
    """

    header: IPv4Header
    payload: bytes = field(repr=False)
    src_port: int | None = None
    dst_port: int | None = None
    echo_ident: int | None = None
    tcp_seq: int | None = None

    @property
    def src(self) -> int:
        return self.header.src

    @property
    def dst(self) -> int:
        return self.header.dst

    @property
    def protocol(self) -> int:
        return self.header.protocol

    @property
    def src_str(self) -> str:
        return ip_to_str(self.header.src)

    @property
    def dst_str(self) -> str:
        return ip_to_str(self.header.dst)


@dataclass(slots=True)
class IcmpError:
    """An error message quoting the original datagram (types in ERROR_TYPES)."""

    type: int
    code: int
    checksum: int
    rest: int  # the 32-bit rest-of-header word
    original: OriginalDatagram

    @property
    def next_hop_mtu(self) -> int | None:
        """The MTU of "fragmentation needed" (type 3 code 4; 0 from old routers)."""
        if self.type == DEST_UNREACH and self.code == UNREACH_FRAG_NEEDED:
            return self.rest & 0xFFFF
        return None

    @property
    def pointer(self) -> int | None:
        """The offending byte offset of a parameter problem (type 12)."""
        return self.rest >> 24 if self.type == PARAMETER_PROBLEM else None

    @property
    def gateway(self) -> int | None:
        """The gateway address of a redirect (type 5)."""
        return self.rest if self.type == REDIRECT else None


@dataclass(slots=True)
class IcmpMessage:
    """Any other ICMP type: header fields and the raw data."""

    type: int
    code: int
    checksum: int
    rest: int
    data: bytes


def _parse_original(mv: memoryview) -> OriginalDatagram:
    try:
        header, payload = parse_ipv4_prefix(mv, verify_checksum=False)
    except ParseError as exc:
        raise ParseError(f"ICMP error: quoted datagram: {exc}") from None
    original = OriginalDatagram(header, bytes(payload))
    if header.frag_offset == 0 and len(payload) >= 4:
        proto = header.protocol
        if proto == PROTO_TCP or proto == PROTO_UDP:
            original.src_port, original.dst_port = _PORTS.unpack_from(payload)
            if proto == PROTO_TCP and len(payload) >= 8:
                original.tcp_seq = _U32.unpack_from(payload, 4)[0]
        elif proto == PROTO_ICMP and payload[0] in (ECHO_REQUEST, ECHO_REPLY) \
                and len(payload) >= 6:
            original.echo_ident = _U16.unpack_from(payload, 4)[0]
    return original


def parse_icmp(data: bytes | bytearray | memoryview, *,
               verify_checksum: bool = True) -> IcmpEcho | IcmpError | IcmpMessage:
    """Parse one ICMP message (an IPv4 payload with protocol 1)."""
    mv = memoryview(data)
    n = len(mv)
    if n < HEADER_LEN:
        raise ParseError(f"ICMP: {n} bytes, shorter than a header")
    if verify_checksum and internet_checksum(mv) != 0:
        raise ParseError(f"ICMP: bad checksum 0x{_HEADER.unpack_from(mv)[2]:04x}")
    typ, code, csum, ident, seq = _HEADER.unpack_from(mv)
    if typ == ECHO_REQUEST or typ == ECHO_REPLY:
        return IcmpEcho(typ, code, csum, ident, seq, bytes(mv[HEADER_LEN:]))
    rest = (ident << 16) | seq
    if typ in ERROR_TYPES:
        return IcmpError(typ, code, csum, rest, _parse_original(mv[HEADER_LEN:]))
    return IcmpMessage(typ, code, csum, rest, bytes(mv[HEADER_LEN:]))


def build_icmp(typ: int, code: int, rest: int, data: bytes | bytearray | memoryview = b"") -> bytes:
    """Any ICMP message, with its checksum."""
    csum = internet_checksum(data, (typ << 8 | code) + rest)
    return _HEADER32.pack(typ, code, csum, rest) + bytes(data)


def build_echo_request(ident: int, seq: int, data: bytes | bytearray | memoryview = b"") -> bytes:
    """An echo request (type 8) message."""
    if not (0 <= ident <= 0xFFFF and 0 <= seq <= 0xFFFF):
        raise ValueError("ICMP echo identifier and sequence are 16 bits")
    return build_icmp(ECHO_REQUEST, 0, ident << 16 | seq, data)


def build_echo_reply(request: IcmpEcho | bytes | bytearray | memoryview) -> bytes:
    """The echo reply (type 0) to an echo request, parsed or raw (then verified)."""
    if not isinstance(request, IcmpEcho):
        parsed = parse_icmp(request)
        if not isinstance(parsed, IcmpEcho):
            raise ParseError(f"ICMP type {parsed.type} is not an echo request")
        request = parsed
    if request.type != ECHO_REQUEST:
        raise ValueError(f"ICMP type {request.type} is not an echo request")
    return build_icmp(ECHO_REPLY, 0, request.ident << 16 | request.seq, request.data)


def build_icmp_error(typ: int, code: int, original: bytes | bytearray | memoryview, *,
                     rest: int = 0, quote: int = 8) -> bytes:
    """An error message quoting ``original`` (a whole IPv4 packet): its header
    and the first ``quote`` payload bytes (RFC 792 asks for 8).  For
    "fragmentation needed" pass the next-hop MTU as ``rest``."""
    if typ not in ERROR_TYPES:
        raise ValueError(f"ICMP type {typ} is not an error type")
    mv = memoryview(original)
    if len(mv) < 20:
        raise ValueError("the original datagram is shorter than an IPv4 header")
    hlen = (mv[0] & 0x0F) * 4
    return build_icmp(typ, code, rest, mv[:hlen + quote])
