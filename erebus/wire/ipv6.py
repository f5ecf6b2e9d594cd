"""IPv6 packets (RFC 8200): sans-IO parse and build, extension headers, fragment reassembly.

Fixed header (40 bytes)::

    version(4 bits) | traffic_class(8 bits) | flow_label(20 bits)
    | payload_length(2: everything after these 40 bytes) | next_header(1) | hop_limit(1)
    | src(16) | dst(16)

then zero or more extension headers, each naming the next one, and the upper-layer
packet.  Addresses are 16 packed bytes (as on the wire); :func:`ip6_to_str` and
:func:`ip6_from_str` convert for humans (RFC 5952 text, through :mod:`ipaddress`), and
:func:`to_ip6` takes any spelling.  For the TCP/UDP/ICMPv6 checksum see
:func:`erebus.wire.checksum.pseudo_header_sum6`.

:func:`parse_ipv6` validates the version and the payload length, trims link padding
past the payload length, and walks the extension headers it knows to the upper-layer
protocol (RFC 8200 section 4):

=====  =====================  ===============================================================
value  header                 what the walk does
=====  =====================  ===============================================================
0      hop-by-hop options     only right after the fixed header (4.3; elsewhere: dropped with
                              Parameter Problem code 1); options checked as below
43     routing                Segments Left 0: skipped; else dropped with Parameter Problem
                              code 0 at the Routing Type (4.4: erebus knows no routing type,
                              and a host forwards nothing)
44     fragment               offset 0 and M clear (an atomic fragment, RFC 6946): skipped,
                              the packet is processed in isolation; else the walk stops there
                              and the packet is for the :class:`Reassembler` (4.5)
60     destination options    options checked as below (4.6)
other  --                     the upper-layer protocol: the walk stops (ESP, AH, No Next
                              Header 59 and unknown values included; the stack decides)
=====  =====================  ===============================================================

Options (hop-by-hop and destination): Pad1 and PadN are padding (at most
:data:`MAX_PADDING` bytes in a row, PadN's bytes zero, as Linux checks following RFC
4942); erebus acts on no other option, so each is "unrecognised" and its type's two
high bits say what to do (4.2): ``00`` skip, ``01`` drop, ``10`` drop with Parameter
Problem code 2, ``11`` the same unless the destination is multicast.  At most
:data:`MAX_OPTIONS` options that are not padding per header (Linux's default).

Limits: at most :data:`MAX_EXTENSION_HEADERS` extension headers and
:data:`MAX_EXTENSION_BYTES` bytes of them per packet.

The first fragment of a datagram must hold the whole header chain, through the
upper-layer header (RFC 7112; 8200 section 4.5: else dropped with Parameter Problem code
3); a Fragment header in the fragmentable part (fragments of fragments) is refused.

Every malformed or refused packet raises :class:`Ipv6Error` (a
:class:`~erebus.errors.ParseError`), whose ``reason`` names the case and whose
``parameter_problem`` is the ICMPv6 Parameter Problem ``(code, pointer)`` the RFC asks
the receiver to send, or None.  Nothing else escapes.

:class:`Reassembler` puts fragmented packets back together with the limits and counters
of :class:`erebus.wire.ipv4.Reassembler` (RFC 5722: an overlap discards the whole
datagram).  erebus never fragments what it sends, so there is no fragment builder.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, field

from ..errors import ParseError
from . import ipv4 as _ipv4
from .ipv4 import ReassemblyStats

__all__ = [
    "HEADER_LEN", "MAX_PAYLOAD", "MIN_MTU",
    "NH_HOPOPTS", "NH_TCP", "NH_UDP", "NH_ROUTING", "NH_FRAGMENT", "NH_ESP", "NH_AH",
    "NH_ICMPV6", "NH_NONE", "NH_DSTOPTS", "EXTENSION_HEADERS",
    "MAX_EXTENSION_HEADERS", "MAX_EXTENSION_BYTES", "MAX_OPTIONS", "MAX_PADDING",
    "PP_ERRONEOUS_FIELD", "PP_UNRECOGNIZED_NEXT_HEADER", "PP_UNRECOGNIZED_OPTION",
    "PP_INCOMPLETE_CHAIN",
    "Reason", "Ipv6Error", "IPv6Header", "parse_ipv6", "parse_ipv6_prefix",
    "build_ipv6", "build_ipv6_header",
    "ip6_to_str", "ip6_from_str", "to_ip6", "address_int", "is_ipv6_address",
    "Reassembler", "ReassemblyStats",
]

HEADER_LEN = 40
MAX_PAYLOAD = 0xFFFF  # payload_length is 16 bits (jumbograms, RFC 2675, are not supported)
MIN_MTU = 1280  # RFC 8200 section 5: every link carries 1280-byte packets

# Next Header values (IANA "Assigned Internet Protocol Numbers").
NH_HOPOPTS = 0
NH_TCP = 6
NH_UDP = 17
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_ESP = 50
NH_AH = 51
NH_ICMPV6 = 58
NH_NONE = 59
NH_DSTOPTS = 60

# The extension headers the walk knows; anything else ends the walk (the upper layer).
EXTENSION_HEADERS = frozenset({NH_HOPOPTS, NH_ROUTING, NH_FRAGMENT, NH_DSTOPTS})

# A real packet carries two or three (RFC 8200 section 4.1 lists six kinds, destination
# options at most twice); more is someone probing the walk.
MAX_EXTENSION_HEADERS = 8
# Bytes of extension headers (a header may be 2048 bytes long); the chain has to fit in
# the first fragment, and a sane one fits in a few dozen bytes.
MAX_EXTENSION_BYTES = 1024
# Options that are not padding, per options header (Linux: net.ipv6.max_hbh_opts_number
# and max_dst_opts_number, both 8 by default).
MAX_OPTIONS = 8
# Padding bytes in a row: padding aligns to 8 bytes, so 7 is the most it needs (RFC 4942
# section 2.1.9.5; Linux drops more).
MAX_PADDING = 7

# ICMPv6 Parameter Problem codes (RFC 4443 section 3.4, RFC 7112).
PP_ERRONEOUS_FIELD = 0
PP_UNRECOGNIZED_NEXT_HEADER = 1
PP_UNRECOGNIZED_OPTION = 2
PP_INCOMPLETE_CHAIN = 3

_OPT_PAD1 = 0
_OPT_PADN = 1

# The upper-layer header a first fragment must hold whole (RFC 7112), by protocol; as
# Linux's ipv6_frag_thdr_truncated() (TCP's fixed header, UDP's, ICMPv6's 8 bytes, one
# byte of anything else), and nothing after No Next Header.
_UPPER_HEADER_MIN = {NH_TCP: 20, NH_UDP: 8, NH_ICMPV6: 8, NH_NONE: 0}

_HEADER = struct.Struct("!IHBB16s16s")
_FRAG = struct.Struct("!HI")  # offset (13 bits) | reserved (2) | M (1), identification


class Reason(enum.Enum):
    """Why a packet did not parse (the value is a counter's name)."""

    SHORT = "short"  # fewer bytes than the fixed header
    VERSION = "version"  # not version 6
    PAYLOAD_LENGTH = "payload_length"  # payload length beyond the bytes received
    TRUNCATED_HEADER = "truncated_header"  # an extension header runs past the packet
    TOO_MANY_HEADERS = "too_many_headers"  # more than MAX_EXTENSION_HEADERS
    HEADERS_TOO_LONG = "headers_too_long"  # more than MAX_EXTENSION_BYTES
    HOP_BY_HOP_NOT_FIRST = "hop_by_hop_not_first"  # RFC 8200 section 4.3
    SEGMENTS_LEFT = "segments_left"  # a routing header for a router (section 4.4)
    BAD_OPTION = "bad_option"  # an option past its header, too much padding, PadN not zero
    TOO_MANY_OPTIONS = "too_many_options"  # more than MAX_OPTIONS
    UNRECOGNIZED_OPTION = "unrecognized_option"  # an option whose type says drop
    INCOMPLETE_CHAIN = "incomplete_chain"  # a first fragment without the whole chain
    NESTED_FRAGMENT = "nested_fragment"  # a Fragment header inside a fragmented packet


class Ipv6Error(ParseError):
    """An IPv6 packet dropped for ``reason``; ``parameter_problem`` is the ``(code,
    pointer)`` of the ICMPv6 Parameter Problem RFC 8200 asks the receiver to send (the
    pointer an offset from the start of the packet), or None for a silent drop."""

    def __init__(self, reason: Reason, message: str,
                 parameter_problem: tuple[int, int] | None = None):
        self.reason = reason
        self.parameter_problem = parameter_problem
        super().__init__(f"IPv6: {message}")


# ---------------------------------------------------------------------------
# Addresses


def ip6_to_str(addr: bytes | bytearray | memoryview) -> str:
    """16 packed bytes -> RFC 5952 text (``"2001:2::1"``); ValueError for another length."""
    if len(addr) != 16:
        raise ValueError(f"an IPv6 address is 16 bytes, not {len(addr)}")
    return ipaddress.IPv6Address(bytes(addr)).compressed


def ip6_from_str(text: str) -> bytes:
    """``"2001:2::1"`` -> 16 packed bytes; ValueError if not an IPv6 address (a zone
    index such as ``%eth0`` means nothing inside a tunnel and is refused too)."""
    if not isinstance(text, str) or "%" in text:
        raise ValueError(f"not an IPv6 address: {text!r}")
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        raise ValueError(f"not an IPv6 address: {text!r}") from None


def to_ip6(addr: bytes | bytearray | memoryview | str | int | ipaddress.IPv6Address) -> bytes:
    """An IPv6 address given as 16 packed bytes, text, a 128-bit integer or an
    :class:`ipaddress.IPv6Address`, as 16 packed bytes."""
    if type(addr) is bytes and len(addr) == 16:
        return addr
    if isinstance(addr, (bytes, bytearray, memoryview)) and len(addr) == 16:
        return bytes(addr)
    if isinstance(addr, str):
        return ip6_from_str(addr)
    if isinstance(addr, ipaddress.IPv6Address):
        return addr.packed
    if type(addr) is int and 0 <= addr < 1 << 128:
        return addr.to_bytes(16, "big")
    raise ValueError(f"not an IPv6 address: {addr!r}")


def address_int(addr: int | str | bytes | bytearray | memoryview
                | ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """Either family's address as the integer the pseudo-header sum takes (see
    :func:`erebus.wire.checksum.pseudo_header_sum`): an int is taken as it is; 4 or 16
    packed bytes, either family's text and :mod:`ipaddress` objects are read.  What
    :mod:`erebus.wire.tcp` and :mod:`erebus.wire.udp` call for an address that is not
    already an int."""
    if type(addr) is int:
        if addr < 0 or addr >> 128:
            raise ValueError(f"address {addr} out of range")
        return addr
    if isinstance(addr, (bytes, bytearray, memoryview)):
        if len(addr) == 16 or len(addr) == 4:
            return int.from_bytes(addr, "big")
    elif isinstance(addr, str):
        if ":" in addr:
            return int.from_bytes(ip6_from_str(addr), "big")
        return _ipv4.ip_from_str(addr)
    elif isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return int(addr)
    raise ValueError(f"not an IPv4 or IPv6 address: {addr!r}")


def is_ipv6_address(addr: object) -> bool:
    """True for an address :func:`address_int` reads as IPv6 (16 bytes, IPv6 text or
    object, an int past 32 bits); an int below 2**32 counts as IPv4."""
    if isinstance(addr, (bytes, bytearray, memoryview)):
        return len(addr) == 16
    if isinstance(addr, str):
        return ":" in addr
    if type(addr) is int:
        return addr >> 32 != 0
    return isinstance(addr, ipaddress.IPv6Address)


# ---------------------------------------------------------------------------
# Header


@dataclass(slots=True)
class IPv6Header:
    """A parsed IPv6 header and the extension headers walked.

    ``next_header`` is the fixed header's field; ``protocol`` the upper-layer protocol
    the walk reached (for a fragment, the Fragment header's Next Header: meaningful in
    the first fragment only).  ``header_len`` is the payload's offset: 40 plus the
    extension headers walked, whose ``(type, offset)`` are in ``extensions``.
    ``ident`` is the Fragment header's identification, None without one;
    ``frag_offset`` (in bytes) and ``mf`` its other fields.  ``unfragmentable`` is, for
    a fragment, the extension headers before its Fragment header (what reassembly
    keeps of the first fragment).
    """

    traffic_class: int
    flow_label: int
    payload_length: int
    next_header: int
    hop_limit: int
    src: bytes
    dst: bytes
    protocol: int
    header_len: int = HEADER_LEN
    extensions: tuple[tuple[int, int], ...] = ()
    ident: int | None = None
    frag_offset: int = 0
    mf: bool = False
    unfragmentable: bytes = field(default=b"", repr=False)

    @property
    def version(self) -> int:
        return 6

    @property
    def payload_len(self) -> int:
        """The upper-layer length (of a fragment: its fragment data): what follows the
        extension headers, as the payload length says."""
        return HEADER_LEN + self.payload_length - self.header_len

    @property
    def is_fragment(self) -> bool:
        """True for a fragment of a larger packet (not for an atomic fragment)."""
        return self.mf or self.frag_offset != 0

    @property
    def is_atomic_fragment(self) -> bool:
        """A Fragment header with offset 0 and M clear (RFC 6946)."""
        return self.ident is not None and not self.mf and self.frag_offset == 0

    @property
    def src_str(self) -> str:
        return ip6_to_str(self.src)

    @property
    def dst_str(self) -> str:
        return ip6_to_str(self.dst)


# ---------------------------------------------------------------------------
# Parse


def _check_options(mv: memoryview, start: int, end: int, multicast: bool) -> None:
    """The options of a hop-by-hop or destination options header, ``mv[start:end]``."""
    i = start
    padding = 0
    options = 0
    while i < end:
        kind = mv[i]
        if kind == _OPT_PAD1:
            padding += 1
            if padding > MAX_PADDING:
                raise Ipv6Error(Reason.BAD_OPTION, f"more than {MAX_PADDING} bytes of padding "
                                f"at offset {i}")
            i += 1
            continue
        if i + 1 >= end:
            raise Ipv6Error(Reason.BAD_OPTION, f"option {kind} at offset {i} has no length byte")
        nxt = i + 2 + mv[i + 1]
        if nxt > end:
            raise Ipv6Error(Reason.BAD_OPTION, f"option {kind} at offset {i} (length "
                            f"{mv[i + 1]}) runs past its header")
        if kind == _OPT_PADN:
            padding += nxt - i
            if padding > MAX_PADDING:
                raise Ipv6Error(Reason.BAD_OPTION, f"more than {MAX_PADDING} bytes of padding "
                                f"at offset {i}")
            if any(mv[i + 2:nxt]):
                raise Ipv6Error(Reason.BAD_OPTION, f"PadN at offset {i} is not all zero")
            i = nxt
            continue
        padding = 0
        options += 1
        if options > MAX_OPTIONS:
            raise Ipv6Error(Reason.TOO_MANY_OPTIONS, f"more than {MAX_OPTIONS} options in one "
                            f"header")
        action = kind >> 6
        if action == 1:
            raise Ipv6Error(Reason.UNRECOGNIZED_OPTION, f"unrecognized option 0x{kind:02x} at "
                            f"offset {i} (drop)")
        if action == 2 or (action == 3 and not multicast):
            raise Ipv6Error(Reason.UNRECOGNIZED_OPTION, f"unrecognized option 0x{kind:02x} at "
                            f"offset {i}", (PP_UNRECOGNIZED_OPTION, i))
        if action == 3:
            raise Ipv6Error(Reason.UNRECOGNIZED_OPTION, f"unrecognized option 0x{kind:02x} at "
                            f"offset {i} (drop, multicast destination)")
        i = nxt


class _Walk:
    """Where a walk of the extension headers got to."""

    __slots__ = ("nh", "off", "named_at", "extensions", "ident", "frag_offset", "mf")

    def __init__(self, nh: int):
        self.nh = nh  # the header at ``off``
        self.off = HEADER_LEN
        self.named_at = 6  # the offset of the Next Header field that named it
        self.extensions: list[tuple[int, int]] = []
        self.ident: int | None = None
        self.frag_offset = 0
        self.mf = False


def _walk(mv: memoryview, walk: _Walk, end: int, strict: bool, multicast: bool) -> bool:
    """Walk from ``walk.off`` to the upper layer (False) or to a Fragment header of a
    fragment (True; ``walk.off`` is then past it).  ``strict``: apply the receiver's
    rules (options, routing, hop-by-hop position); else lengths and limits only."""
    extensions = walk.extensions
    nh = walk.nh
    off = walk.off
    while nh in EXTENSION_HEADERS:
        if len(extensions) >= MAX_EXTENSION_HEADERS:
            raise Ipv6Error(Reason.TOO_MANY_HEADERS, f"more than {MAX_EXTENSION_HEADERS} "
                            f"extension headers")
        if off + 8 > end:
            raise Ipv6Error(Reason.TRUNCATED_HEADER, f"extension header {nh} at offset {off} "
                            f"runs past the {end}-byte packet")
        hlen = 8 if nh == NH_FRAGMENT else (mv[off + 1] + 1) << 3
        if off + hlen > end:
            raise Ipv6Error(Reason.TRUNCATED_HEADER, f"extension header {nh} at offset {off} "
                            f"({hlen} bytes) runs past the {end}-byte packet")
        if off + hlen - HEADER_LEN > MAX_EXTENSION_BYTES:
            raise Ipv6Error(Reason.HEADERS_TOO_LONG, f"more than {MAX_EXTENSION_BYTES} bytes "
                            f"of extension headers")
        if nh == NH_HOPOPTS and off != HEADER_LEN and strict:
            raise Ipv6Error(Reason.HOP_BY_HOP_NOT_FIRST, f"hop-by-hop options at offset {off}, "
                            f"not right after the fixed header",
                            (PP_UNRECOGNIZED_NEXT_HEADER, walk.named_at))
        extensions.append((nh, off))
        if nh == NH_FRAGMENT:
            word, ident = _FRAG.unpack_from(mv, off + 2)
            walk.ident = ident
            walk.frag_offset = word & 0xFFF8
            walk.mf = bool(word & 1)
            if walk.frag_offset or walk.mf:
                walk.nh = mv[off]
                walk.named_at = off
                walk.off = off + 8
                return True
        elif strict:
            if nh == NH_ROUTING:
                if mv[off + 3]:
                    raise Ipv6Error(Reason.SEGMENTS_LEFT, f"routing header type {mv[off + 2]} "
                                    f"with {mv[off + 3]} segments left",
                                    (PP_ERRONEOUS_FIELD, off + 2))
            else:
                _check_options(mv, off + 2, off + hlen, multicast)
        walk.named_at = off
        nh = mv[off]
        off += hlen
    walk.nh = nh
    walk.off = off
    return False


def _parse(mv: memoryview, whole: bool) -> tuple[IPv6Header, memoryview]:
    n = len(mv)
    if n < HEADER_LEN:
        raise Ipv6Error(Reason.SHORT, f"{n} bytes, shorter than a header")
    word, plen, nh, hop_limit, src, dst = _HEADER.unpack_from(mv)
    if word >> 28 != 6:
        raise Ipv6Error(Reason.VERSION, f"version {word >> 28}")
    end = HEADER_LEN + plen
    if end > n:
        if whole:
            raise Ipv6Error(Reason.PAYLOAD_LENGTH, f"payload length {plen} beyond the "
                            f"{n - HEADER_LEN} bytes received",
                            (PP_ERRONEOUS_FIELD, 4))
        end = n
    tc = (word >> 20) & 0xFF
    flow = word & 0xFFFFF
    if nh not in EXTENSION_HEADERS:  # the common case: TCP, UDP or ICMPv6 right away
        return IPv6Header(tc, flow, plen, nh, hop_limit, src, dst, nh), mv[HEADER_LEN:end]
    walk = _Walk(nh)
    multicast = dst[0] == 0xFF
    fragment = _walk(mv, walk, end, whole, multicast)
    off = walk.off
    header = IPv6Header(tc, flow, plen, nh, hop_limit, src, dst, walk.nh, off,
                        tuple(walk.extensions), walk.ident, walk.frag_offset, walk.mf)
    if fragment:
        frag_at = walk.extensions[-1][1]
        header.unfragmentable = bytes(mv[HEADER_LEN:frag_at])
        if whole and walk.frag_offset == 0:
            _check_first_fragment(mv, walk, end, multicast)
    return header, mv[off:end]


def _check_first_fragment(mv: memoryview, walk: _Walk, end: int, multicast: bool) -> None:
    """RFC 7112: the first fragment holds the whole header chain, upper-layer header
    included (RFC 8200 section 4.5: Parameter Problem code 3, pointer 0)."""
    chain = _Walk(walk.nh)
    chain.off = walk.off
    chain.named_at = walk.named_at
    chain.extensions = list(walk.extensions)  # the limits count the whole packet
    try:
        nested = _walk(mv, chain, end, True, multicast)
    except Ipv6Error as exc:
        if exc.reason is not Reason.TRUNCATED_HEADER:
            raise
        nested = None
    if nested:
        raise Ipv6Error(Reason.NESTED_FRAGMENT, f"a Fragment header at offset "
                        f"{chain.extensions[-1][1]} inside a fragmented packet")
    if nested is None or chain.off + _UPPER_HEADER_MIN.get(chain.nh, 1) > end:
        raise Ipv6Error(Reason.INCOMPLETE_CHAIN, "the first fragment does not hold the whole "
                        "header chain", (PP_INCOMPLETE_CHAIN, 0))


def parse_ipv6(data: bytes | bytearray | memoryview) -> tuple[IPv6Header, memoryview]:
    """Parse one IPv6 packet: ``(header, payload)``, the payload a view of what follows
    the extension headers (of a fragment: the fragment data), up to the payload length
    (link padding past it is dropped).  Raises :class:`Ipv6Error` (see the module
    docstring for the cases)."""
    return _parse(memoryview(data), True)


def parse_ipv6_prefix(data: bytes | bytearray | memoryview) -> tuple[IPv6Header, memoryview]:
    """Parse the start of an IPv6 packet that may be cut short, such as the invoking
    packet quoted in an ICMPv6 error: the fixed header and the extension headers
    walked must be complete, the payload is whatever follows, up to the payload
    length.  Only lengths and limits are checked (the receiver's rules on options,
    routing headers and fragments are not: this packet was not received)."""
    return _parse(memoryview(data), False)


# ---------------------------------------------------------------------------
# Build


def build_ipv6_header(src: bytes | str | int, dst: bytes | str | int, next_header: int,
                      payload_len: int, *, hop_limit: int = 64, traffic_class: int = 0,
                      flow_label: int = 0) -> bytes:
    """A 40-byte IPv6 header.  ValueError for a field out of range or a payload
    longer than 65535 bytes."""
    if type(src) is not bytes or len(src) != 16:
        src = to_ip6(src)
    if type(dst) is not bytes or len(dst) != 16:
        dst = to_ip6(dst)
    if not 0 <= payload_len <= MAX_PAYLOAD:
        raise ValueError(f"IPv6 payload of {payload_len} bytes (at most {MAX_PAYLOAD})")
    if not (0 <= traffic_class <= 0xFF and 0 <= flow_label <= 0xFFFFF):
        raise ValueError("IPv6 traffic class is 8 bits, the flow label 20")
    try:
        return _HEADER.pack(0x60000000 | traffic_class << 20 | flow_label, payload_len,
                            next_header, hop_limit, src, dst)
    except struct.error as exc:
        raise ValueError(f"IPv6 header field out of range: {exc}") from None


def build_ipv6(src: bytes | str | int, dst: bytes | str | int, next_header: int,
               payload: bytes | bytearray | memoryview, *, hop_limit: int = 64,
               traffic_class: int = 0, flow_label: int = 0) -> bytes:
    """A whole IPv6 packet: :func:`build_ipv6_header` followed by ``payload`` (which
    starts with any extension headers ``next_header`` names)."""
    return build_ipv6_header(src, dst, next_header, len(payload), hop_limit=hop_limit,
                             traffic_class=traffic_class, flow_label=flow_label) + bytes(payload)


# ---------------------------------------------------------------------------
# Fragment reassembly (RFC 8200 section 4.5)


class Reassembler(_ipv4.Reassembler):
    """IPv6 fragment reassembly, keyed by ``(src, dst, ident)``, with the limits and
    :class:`~erebus.wire.ipv4.ReassemblyStats` of the IPv4 one
    (:class:`erebus.wire.ipv4.Reassembler`: overlaps and conflicting fragments discard
    the datagram, RFC 5722; exact duplicates are ignored; ``max_entries``,
    ``max_fragments``, ``expire``/``next_deadline``), except:

    * ``max_size`` bounds the reassembled packet's payload length (the first
      fragment's unfragmentable headers and the fragmentable part): 65535, as the
      field is 16 bits (RFC 8200: a larger one is discarded);
    * the timeout is 60 s from the first fragment received (RFC 8200);
    * :meth:`add` takes what :func:`parse_ipv6` returned and gives the reassembled
      packet the same way, ``(header, payload)``, parsed again: the first fragment's
      unfragmentable headers, its Fragment header gone, the headers of the
      fragmentable part walked.  A packet that is not a fragment (atomic fragments
      too, RFC 6946) is returned at once.

    Memory held is bounded by ``max_entries * max_size`` bytes (4 MiB by default) plus
    the objects of at most ``max_entries * max_fragments`` pieces.
    """

    def __init__(self, *, max_size: int = MAX_PAYLOAD, max_entries: int = 64,
                 timeout: float = 60.0, max_fragments: int = 256):
        super().__init__(max_size=max_size, max_entries=max_entries, timeout=timeout,
                         max_fragments=max_fragments)

    def add(self, header: IPv6Header,  # type: ignore[override]
            payload: bytes | bytearray | memoryview, now: float) -> tuple[IPv6Header, memoryview | bytes | bytearray] | None:
        """Add one fragment; the reassembled ``(header, payload)`` once complete."""
        if not header.mf and header.frag_offset == 0:
            return header, payload
        done = self._add((header.src, header.dst, header.ident), header.frag_offset,
                         header.mf, payload, now, len(header.unfragmentable), header)
        if done is None:
            return None
        data, first = done
        assert isinstance(first, IPv6Header)
        unfragmentable = first.unfragmentable
        length = len(unfragmentable) + len(data)
        if length > self.max_size:  # this first fragment's headers are longer than others'
            self.stats.completed -= 1
            self.stats.too_big += 1
            return None
        if unfragmentable:
            # The last unfragmentable header named the Fragment header; it now names
            # what the Fragment header named.
            named_at = first.extensions[-2][1] - HEADER_LEN
            unfragmentable = bytearray(unfragmentable)
            unfragmentable[named_at] = first.protocol
            next_header = first.next_header
        else:
            next_header = first.protocol
        packet = b"".join((build_ipv6_header(first.src, first.dst, next_header, length,
                                             hop_limit=first.hop_limit,
                                             traffic_class=first.traffic_class,
                                             flow_label=first.flow_label),
                           unfragmentable, data))
        try:
            whole, upper = parse_ipv6(packet)
        except Ipv6Error:  # the first fragment's checks make this unreachable; be safe
            self.stats.invalid += 1
            return None
        return whole, upper
