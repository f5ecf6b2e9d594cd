"""ICMPv6 (RFC 4443): sans-IO parse and build of the ICMPv6 message (the IPv6 upper-layer
payload with next header 58; see :mod:`erebus.wire.ipv6` for the IP header).

Every message::

    type(1) | code(1) | checksum(2) | rest_of_header(4) | data

The checksum covers the IPv6 pseudo-header (source, destination, the ICMPv6 length,
next header 58: RFC 8200 section 8.1) and the whole message; it is mandatory, so the
parser and the builders take the addresses of the carrying packet.

* Echo request (128) and echo reply (129): ``rest = identifier(2) | sequence(2)``,
  data echoed back verbatim.
* Errors are the types below 128 (section 2.1): destination unreachable (1), packet
  too big (2: ``rest`` is the MTU of the next hop), time exceeded (3), parameter
  problem (4: ``rest`` is the pointer, an offset into the invoking packet), and any
  unknown one, which section 2.4 (b) has passed to the upper layer like the others.
  The data quotes the invoking packet (section 2.4 (c): as much as fits in 1280
  bytes); :class:`Icmpv6Error` exposes its header chain, ports, echo identifier and
  TCP sequence number, so the connection concerned can be found.
* Neighbour discovery (133 to 137, RFC 4861) and multicast listener discovery (130 to
  132, 143: RFC 2710, 3810) parse as :class:`Icmpv6Ignored`: a point-to-point tunnel
  carries none and erebus answers none.
* Any other informational type parses as :class:`Icmpv6Message` (to be discarded,
  section 2.4 (b)).

Malformed input raises :class:`erebus.errors.ParseError` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import ParseError
from .checksum import internet_checksum, pseudo_header_sum6
from .ipv6 import (
    HEADER_LEN as IPV6_HEADER_LEN,
    MIN_MTU,
    NH_ICMPV6,
    NH_TCP,
    NH_UDP,
    PP_UNRECOGNIZED_OPTION,
    IPv6Header,
    Ipv6Error,
    ip6_to_str,
    parse_ipv6_prefix,
    to_ip6,
)

__all__ = [
    "DEST_UNREACH", "PACKET_TOO_BIG", "TIME_EXCEEDED", "PARAMETER_PROBLEM",
    "ECHO_REQUEST", "ECHO_REPLY",
    "MLD_QUERY", "MLD_REPORT", "MLD_DONE", "MLD2_REPORT",
    "ROUTER_SOLICITATION", "ROUTER_ADVERTISEMENT", "NEIGHBOR_SOLICITATION",
    "NEIGHBOR_ADVERTISEMENT", "REDIRECT", "IGNORED_TYPES",
    "UNREACH_NO_ROUTE", "UNREACH_ADMIN_PROHIBITED", "UNREACH_BEYOND_SCOPE",
    "UNREACH_ADDRESS", "UNREACH_PORT", "UNREACH_SOURCE_POLICY", "UNREACH_REJECT_ROUTE",
    "EXCEEDED_HOP_LIMIT", "EXCEEDED_REASSEMBLY",
    "HEADER_LEN", "MAX_QUOTE",
    "Icmpv6Echo", "Icmpv6Error", "Icmpv6Ignored", "Icmpv6Message", "OriginalDatagram",
    "parse_icmpv6", "link_chatter", "build_icmpv6", "build_echo_request", "build_echo_reply",
    "build_icmpv6_error", "build_dest_unreachable", "build_packet_too_big", "error_allowed",
]

DEST_UNREACH = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
ECHO_REQUEST = 128
ECHO_REPLY = 129
MLD_QUERY = 130
MLD_REPORT = 131
MLD_DONE = 132
ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
NEIGHBOR_SOLICITATION = 135
NEIGHBOR_ADVERTISEMENT = 136
REDIRECT = 137
MLD2_REPORT = 143

# Recognised and ignored: what each is, for a log line.
IGNORED_TYPES = {
    MLD_QUERY: "multicast listener query",
    MLD_REPORT: "multicast listener report",
    MLD_DONE: "multicast listener done",
    MLD2_REPORT: "multicast listener report (v2)",
    ROUTER_SOLICITATION: "router solicitation",
    ROUTER_ADVERTISEMENT: "router advertisement",
    NEIGHBOR_SOLICITATION: "neighbour solicitation",
    NEIGHBOR_ADVERTISEMENT: "neighbour advertisement",
    REDIRECT: "redirect",
}

# Destination unreachable codes (section 3.1).
UNREACH_NO_ROUTE = 0
UNREACH_ADMIN_PROHIBITED = 1
UNREACH_BEYOND_SCOPE = 2
UNREACH_ADDRESS = 3
UNREACH_PORT = 4
UNREACH_SOURCE_POLICY = 5
UNREACH_REJECT_ROUTE = 6

# Time exceeded codes (section 3.3).
EXCEEDED_HOP_LIMIT = 0
EXCEEDED_REASSEMBLY = 1

HEADER_LEN = 8
# The most of the invoking packet an error quotes: the error, in an IPv6 packet without
# extension headers, then fits the minimum MTU (section 2.4 (c)).
MAX_QUOTE = MIN_MTU - IPV6_HEADER_LEN - HEADER_LEN

_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, rest as two words
_HEADER32 = struct.Struct("!BBHI")  # type, code, checksum, rest as one word
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


@dataclass(slots=True)
class Icmpv6Echo:
    """Echo request (type 128) or echo reply (type 129)."""

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
    """The invoking packet quoted by an ICMPv6 error.

    ``header`` is its IPv6 header with the extension headers walked (``protocol`` the
    upper layer); ``payload`` the quoted start of the upper-layer packet.
    ``src_port``/``dst_port`` are set for TCP and UDP, ``echo_ident`` for an ICMPv6
    echo (request or reply), when the quote holds them and is not of a later fragment;
    ``tcp_seq`` the quoted TCP segment's sequence number (RFC 5927), when quoted.
    """

    header: IPv6Header
    payload: bytes = field(repr=False)
    src_port: int | None = None
    dst_port: int | None = None
    echo_ident: int | None = None
    tcp_seq: int | None = None

    @property
    def src(self) -> bytes:
        return self.header.src

    @property
    def dst(self) -> bytes:
        return self.header.dst

    @property
    def protocol(self) -> int:
        return self.header.protocol

    @property
    def src_str(self) -> str:
        return ip6_to_str(self.header.src)

    @property
    def dst_str(self) -> str:
        return ip6_to_str(self.header.dst)


@dataclass(slots=True)
class Icmpv6Error:
    """An error message (type below 128) quoting the invoking packet."""

    type: int
    code: int
    checksum: int
    rest: int  # the 32-bit rest-of-header word
    original: OriginalDatagram

    @property
    def mtu(self) -> int | None:
        """The next-hop MTU of a packet too big (type 2), as sent: RFC 8201 has a
        node never go below 1280 whatever it says."""
        return self.rest if self.type == PACKET_TOO_BIG else None

    @property
    def pointer(self) -> int | None:
        """The offending byte offset of a parameter problem (type 4)."""
        return self.rest if self.type == PARAMETER_PROBLEM else None


@dataclass(slots=True)
class Icmpv6Ignored:
    """Neighbour or multicast listener discovery: recognised, not acted on."""

    type: int
    code: int
    checksum: int

    @property
    def kind(self) -> str:
        return IGNORED_TYPES[self.type]


@dataclass(slots=True)
class Icmpv6Message:
    """Any other informational type: header fields and the raw data."""

    type: int
    code: int
    checksum: int
    rest: int
    data: bytes


def _addr(addr) -> bytes:
    return addr if type(addr) is bytes and len(addr) == 16 else to_ip6(addr)


def _parse_original(mv: memoryview) -> OriginalDatagram:
    try:
        header, payload = parse_ipv6_prefix(mv)
    except ParseError as exc:
        raise ParseError(f"ICMPv6 error: quoted packet: {exc}") from None
    original = OriginalDatagram(header, bytes(payload))
    if header.frag_offset == 0 and len(payload) >= 4:
        proto = header.protocol
        if proto == NH_TCP or proto == NH_UDP:
            original.src_port, original.dst_port = _PORTS.unpack_from(payload)
            if proto == NH_TCP and len(payload) >= 8:
                original.tcp_seq = _U32.unpack_from(payload, 4)[0]
        elif proto == NH_ICMPV6 and payload[0] in (ECHO_REQUEST, ECHO_REPLY) \
                and len(payload) >= 6:
            original.echo_ident = _U16.unpack_from(payload, 4)[0]
    return original


def parse_icmpv6(data: bytes | bytearray | memoryview, src: bytes | str, dst: bytes | str, *,
                 verify_checksum: bool = True
                 ) -> Icmpv6Echo | Icmpv6Error | Icmpv6Ignored | Icmpv6Message:
    """Parse one ICMPv6 message carried from ``src`` to ``dst`` (16 bytes, or text)."""
    mv = memoryview(data)
    n = len(mv)
    if n < HEADER_LEN:
        raise ParseError(f"ICMPv6: {n} bytes, shorter than a header")
    if verify_checksum and internet_checksum(
            mv, pseudo_header_sum6(_addr(src), _addr(dst), NH_ICMPV6, n)) != 0:
        raise ParseError(f"ICMPv6: bad checksum 0x{_HEADER.unpack_from(mv)[2]:04x}")
    typ, code, csum, ident, seq = _HEADER.unpack_from(mv)
    if typ == ECHO_REQUEST or typ == ECHO_REPLY:
        return Icmpv6Echo(typ, code, csum, ident, seq, bytes(mv[HEADER_LEN:]))
    rest = (ident << 16) | seq
    if typ < 128:
        return Icmpv6Error(typ, code, csum, rest, _parse_original(mv[HEADER_LEN:]))
    if typ in IGNORED_TYPES:
        return Icmpv6Ignored(typ, code, csum)
    return Icmpv6Message(typ, code, csum, rest, bytes(mv[HEADER_LEN:]))


def build_icmpv6(src: bytes | str, dst: bytes | str, typ: int, code: int, rest: int,
                 data: bytes | bytearray | memoryview = b"") -> bytes:
    """Any ICMPv6 message from ``src`` to ``dst``, with its checksum."""
    length = HEADER_LEN + len(data)
    if length > 0xFFFF:
        raise ValueError(f"ICMPv6 message of {length} bytes (at most 65535)")
    csum = internet_checksum(data, pseudo_header_sum6(_addr(src), _addr(dst), NH_ICMPV6, length)
                             + (typ << 8 | code) + rest)
    try:
        return _HEADER32.pack(typ, code, csum, rest) + bytes(data)
    except struct.error as exc:
        raise ValueError(f"ICMPv6 header field out of range: {exc}") from None


def build_echo_request(src: bytes | str, dst: bytes | str, ident: int, seq: int,
                       data: bytes | bytearray | memoryview = b"") -> bytes:
    """An echo request (type 128) message."""
    if not (0 <= ident <= 0xFFFF and 0 <= seq <= 0xFFFF):
        raise ValueError("ICMPv6 echo identifier and sequence are 16 bits")
    return build_icmpv6(src, dst, ECHO_REQUEST, 0, ident << 16 | seq, data)


def build_echo_reply(src: bytes | str, dst: bytes | str,
                     request: Icmpv6Echo | bytes | bytearray | memoryview) -> bytes:
    """The echo reply (type 129) from ``src`` to ``dst`` to an echo request that came
    from ``dst`` to ``src``, parsed or raw (then verified)."""
    if not isinstance(request, Icmpv6Echo):
        parsed = parse_icmpv6(request, dst, src)
        if not isinstance(parsed, Icmpv6Echo):
            raise ParseError(f"ICMPv6 type {parsed.type} is not an echo request")
        request = parsed
    if request.type != ECHO_REQUEST:
        raise ValueError(f"ICMPv6 type {request.type} is not an echo request")
    return build_icmpv6(src, dst, ECHO_REPLY, 0, request.ident << 16 | request.seq, request.data)


def build_icmpv6_error(src: bytes | str, dst: bytes | str, typ: int, code: int,
                       invoking: bytes | bytearray | memoryview, *, rest: int = 0) -> bytes:
    """An error message (type below 128) from ``src`` to ``dst`` quoting the invoking
    packet (a whole IPv6 packet) cut to :data:`MAX_QUOTE` bytes, so that the error in
    an IPv6 packet fits the 1280-byte minimum MTU (section 2.4 (c)).  Whether an error
    may be sent at all is :func:`error_allowed`'s question."""
    if not 0 <= typ < 128:
        raise ValueError(f"ICMPv6 type {typ} is not an error type")
    mv = memoryview(invoking)
    if len(mv) < IPV6_HEADER_LEN:
        raise ValueError("the invoking packet is shorter than an IPv6 header")
    return build_icmpv6(src, dst, typ, code, rest, mv[:MAX_QUOTE])


def build_dest_unreachable(src: bytes | str, dst: bytes | str,
                           invoking: bytes | bytearray | memoryview, *,
                           code: int = UNREACH_PORT) -> bytes:
    """A destination unreachable (type 1; port unreachable unless ``code`` says)."""
    return build_icmpv6_error(src, dst, DEST_UNREACH, code, invoking)


def build_packet_too_big(src: bytes | str, dst: bytes | str,
                         invoking: bytes | bytearray | memoryview, mtu: int) -> bytes:
    """A packet too big (type 2) naming the next hop's ``mtu`` (at least 1280)."""
    if not MIN_MTU <= mtu <= 0xFFFFFFFF:
        raise ValueError(f"MTU {mtu} below the IPv6 minimum of {MIN_MTU}")
    return build_icmpv6_error(src, dst, PACKET_TOO_BIG, 0, invoking, rest=mtu)


def link_chatter(packet: bytes | bytearray | memoryview) -> bool:
    """An IPv6 packet holding neighbour discovery, a router solicitation or MLD (the
    types of :data:`IGNORED_TYPES`), after whatever extension headers precede it (MLD
    reports carry a router alert).  A packet that does not parse is not chatter."""
    try:
        header, payload = parse_ipv6_prefix(packet)
    except Ipv6Error:
        return False
    return header.protocol == NH_ICMPV6 and len(payload) > 0 and payload[0] in IGNORED_TYPES


def error_allowed(invoking: bytes | bytearray | memoryview, typ: int, code: int) -> bool:
    """Whether RFC 4443 section 2.4 (e) lets an error of ``typ``/``code`` answer the
    ``invoking`` packet: not an ICMPv6 error or redirect, not a packet to a multicast
    address (save packet too big and a parameter problem about an option, code 2),
    not a packet from the unspecified or a multicast address.  A packet whose header
    chain cannot be read is answered (as Linux's icmpv6_send() does)."""
    mv = memoryview(invoking)
    if len(mv) < IPV6_HEADER_LEN:
        return False
    src_first = mv[8]
    if src_first == 0xFF or not any(mv[8:24]):
        return False
    if mv[24] == 0xFF and not (typ == PACKET_TOO_BIG or (typ == PARAMETER_PROBLEM and
                                                         code == PP_UNRECOGNIZED_OPTION)):
        return False
    try:
        header, payload = parse_ipv6_prefix(mv)
    except ParseError:
        return True
    if header.protocol == NH_ICMPV6 and header.frag_offset == 0:
        if not payload:
            return False  # an ICMPv6 message of unknown type: it may be an error
        return payload[0] >= 128 and payload[0] != REDIRECT
    return True
