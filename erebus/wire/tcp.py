"""TCP segments (RFC 9293): sans-IO parse and build, and sequence-number arithmetic.

This module is on the data path of every byte through the tunnel, so both
directions are a handful of C calls: one precompiled ``struct`` call for the
header, one :func:`~erebus.wire.checksum.internet_checksum` over the segment,
the payload a ``memoryview`` (parse) or copied exactly once (build).

Header layout (20 bytes, then ``(data_offset - 5) * 4`` bytes of options)::

    src_port(2) | dst_port(2) | seq(4) | ack(4)
    | data_offset(4 bits) | reserved(4 bits) | flags(1: CWR ECE URG ACK PSH RST SYN FIN)
    | window(2) | checksum(2) | urgent_pointer(2) | [options] | payload

The checksum covers the IPv4 pseudo-header (src, dst, zero, protocol 6, TCP
length) and the whole segment; over IPv6 the IPv6 one (RFC 8200 section 8.1),
which sums the same way: the builder and the parser take either family's
addresses (IPv4 ones as the 32-bit integers of the hot path, IPv6 ones as 16
packed bytes, or either as text; see :func:`erebus.wire.ipv6.address_int`).

Options understood (others are skipped by their length byte):

=====  ======  ==========================================  ===================
kind   length  meaning                                     field
=====  ======  ==========================================  ===================
0      --      end of option list                          (stops parsing)
1      --      no-operation (padding)
2      4       maximum segment size                        ``mss``
3      3       window scale (RFC 7323; shifts above 14     ``wscale``
               are read as 14)
4      2       SACK permitted (RFC 2018)                   ``sack_permitted``
5      2+8n    SACK blocks, n = 1..4                       ``sack_blocks``
8      10      timestamps (RFC 7323)                       ``ts_val``, ``ts_ecr``
=====  ======  ==========================================  ===================

A known option with the wrong length is ignored (as Linux does); an option
whose length byte is missing, below 2 or runs past the header is a
:class:`~erebus.errors.ParseError`.  Malformed input raises ParseError and
nothing else.

:func:`build_tcp` lays options out as Linux does, every option 4-byte aligned
with NOPs: ``MSS``, then ``SACKOK TS`` (or ``NOP NOP TS``, or
``NOP NOP SACKOK``), then ``NOP WS``, then ``NOP NOP SACK``.  A Linux SYN is
``MSS SACKOK TS NOP WS``; an established segment ``NOP NOP TS``.

Sequence numbers live modulo 2**32; :func:`seq_lt` and friends compare them
the way Linux's ``before()``/``after()`` do (the signed 32-bit difference), and
:func:`seq_diff` gives that signed distance.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import ParseError
from .checksum import internet_checksum, pseudo_header_sum
from .ipv4 import PROTO_TCP
from .ipv6 import address_int

__all__ = [
    "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR",
    "HEADER_LEN", "MAX_OPTIONS_LEN", "MAX_WSCALE", "MAX_SACK_BLOCKS",
    "OPT_EOL", "OPT_NOP", "OPT_MSS", "OPT_WSCALE", "OPT_SACK_PERMITTED", "OPT_SACK",
    "OPT_TIMESTAMP",
    "TcpSegment", "parse_tcp", "build_tcp", "flags_to_str",
    "seq_lt", "seq_le", "seq_gt", "seq_ge", "seq_add", "seq_diff",
]

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

_FLAG_NAMES = (("FIN", FIN), ("SYN", SYN), ("RST", RST), ("PSH", PSH), ("ACK", ACK),
               ("URG", URG), ("ECE", ECE), ("CWR", CWR))

HEADER_LEN = 20  # without options
MAX_OPTIONS_LEN = 40  # data offset is at most 15 words
MAX_WSCALE = 14  # RFC 7323 section 2.3
MAX_SACK_BLOCKS = 4  # 2 + 8 * 4 = 34 bytes; a fifth does not fit in 40

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

_MASK = 0xFFFFFFFF
_HALF = 0x80000000

_HDR = struct.Struct("!HHIIBBHHH")
# The header of an established Linux segment: 20 bytes + NOP NOP TS(8, 10) val ecr.
_HDR_TS = struct.Struct("!HHIIBBHHHIII")
_TS_WORD = 0x0101080A  # NOP NOP kind 8 length 10
_SACKOK_TS_WORD = 0x0402080A  # SACKOK(4, 2) kind 8 length 10 (a Linux SYN)
_TS_OFF = (32 >> 2) << 4  # data offset byte of a 32-byte header
_TS_OFFWORD = 32 << 10  # (data offset << 12), the word's share of the checksum

_U32 = struct.Struct("!I")
_U32X2 = struct.Struct("!II")
_U32X3 = struct.Struct("!III")
_U16 = struct.Struct("!H")
_SACK = (None,) + tuple(struct.Struct("!" + "II" * n) for n in range(1, MAX_SACK_BLOCKS + 1))
_SACKOK_WORD = b"\x01\x01\x04\x02"  # NOP NOP SACKOK


@dataclass(slots=True)
class TcpSegment:
    """A parsed TCP segment.

    ``flags`` is the 8-bit flags byte (``SYN | ACK`` ...), ``window`` the raw
    16-bit field (not scaled), ``ack`` the acknowledgment *number* (see
    :attr:`ack_flag`).  Option fields are None/False/empty when the option is
    absent.  ``payload`` is a view into the parsed buffer (keep the buffer
    unchanged while the view is in use, or copy it with ``bytes()``).
    ``checksum`` is the field as received (not compared by ``==``).
    """

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int = 0
    payload: memoryview | bytes = field(default=b"", repr=False)
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    ts_val: int | None = None
    ts_ecr: int | None = None
    checksum: int = field(default=0, compare=False)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def psh(self) -> bool:
        return bool(self.flags & PSH)

    @property
    def ack_flag(self) -> bool:
        return bool(self.flags & ACK)

    @property
    def urg(self) -> bool:
        return bool(self.flags & URG)

    @property
    def ece(self) -> bool:
        return bool(self.flags & ECE)

    @property
    def cwr(self) -> bool:
        return bool(self.flags & CWR)

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies: payload bytes, plus one each for SYN and FIN."""
        flags = self.flags
        return len(self.payload) + ((flags >> 1) & 1) + (flags & 1)

    @property
    def seq_end(self) -> int:
        """The sequence number just past the segment (``seq + seg_len`` mod 2**32)."""
        return (self.seq + self.seg_len) & _MASK

    @property
    def ts(self) -> tuple[int, int] | None:
        """``(ts_val, ts_ecr)``, or None without a timestamps option."""
        if self.ts_val is None:
            return None
        return (self.ts_val, self.ts_ecr)  # type: ignore[return-value]

    @property
    def flags_str(self) -> str:
        """``"SYN|ACK"`` and the like (for logs)."""
        return flags_to_str(self.flags)


def flags_to_str(flags: int) -> str:
    """``SYN | ACK`` -> ``"SYN|ACK"``; ``0`` -> ``"-"``."""
    return "|".join([name for name, bit in _FLAG_NAMES if flags & bit]) or "-"


# ---------------------------------------------------------------------------
# Parse


def _parse_options(opts: bytes) -> tuple:
    """``(mss, wscale, sack_permitted, sack_blocks, ts_val, ts_ecr)`` of an option area."""
    mss = wscale = ts_val = ts_ecr = None
    sack_permitted = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    end = len(opts)
    i = 0
    while i < end:
        kind = opts[i]
        if kind == OPT_NOP:
            i += 1
            continue
        if kind == OPT_EOL:
            break
        if i + 1 >= end:
            raise ParseError(f"TCP: option {kind} at offset {i} has no length byte")
        olen = opts[i + 1]
        if olen < 2:
            raise ParseError(f"TCP: option {kind} at offset {i} has length {olen}")
        nxt = i + olen
        if nxt > end:
            raise ParseError(f"TCP: option {kind} at offset {i} (length {olen}) runs past "
                             f"the {end}-byte option area")
        if kind == OPT_TIMESTAMP:
            if olen == 10:
                ts_val, ts_ecr = _U32X2.unpack_from(opts, i + 2)
        elif kind == OPT_SACK:
            n, rest = divmod(olen - 2, 8)
            if n and not rest:  # n <= 4: the area is at most 40 bytes
                edges = _SACK[n].unpack_from(opts, i + 2)
                sack_blocks = tuple(zip(edges[::2], edges[1::2]))
        elif kind == OPT_MSS:
            if olen == 4:
                mss = _U16.unpack_from(opts, i + 2)[0]
        elif kind == OPT_WSCALE:
            if olen == 3:
                wscale = min(opts[i + 2], MAX_WSCALE)
        elif kind == OPT_SACK_PERMITTED:
            if olen == 2:
                sack_permitted = True
        i = nxt
    return mss, wscale, sack_permitted, sack_blocks, ts_val, ts_ecr


def parse_tcp(data: bytes | bytearray | memoryview, src_ip: int, dst_ip: int, *,
              verify_checksum: bool = True) -> TcpSegment:
    """Parse one TCP segment (an IPv4 or IPv6 payload with protocol 6).

    ``src_ip``/``dst_ip`` are the addresses of the carrying packet (for the
    pseudo-header checksum; IPv6 ones as 16 bytes).  Raises ParseError for
    fewer than 20 bytes, a data offset below 5 words or past the end of ``data``, malformed
    options, or (unless ``verify_checksum`` is false) a wrong checksum.
    """
    mv = memoryview(data)
    n = len(mv)
    if n < HEADER_LEN:
        raise ParseError(f"TCP: {n} bytes, shorter than a header")
    hlen = (mv[12] >> 4) << 2
    if hlen < HEADER_LEN:
        raise ParseError(f"TCP: data offset {hlen >> 2} below 5")
    if hlen > n:
        raise ParseError(f"TCP: {hlen}-byte header in {n} bytes")
    if verify_checksum:
        if type(src_ip) is not int:
            src_ip = address_int(src_ip)
        if type(dst_ip) is not int:
            dst_ip = address_int(dst_ip)
        # internet_checksum(mv, pseudo_header_sum(...)) == 0, inlined (one pass in C over
        # the segment): correct iff the sum is a non-zero multiple of 0xFFFF (never 0:
        # the protocol number is in it)
        total = int.from_bytes(mv, "big")
        if n & 1:
            total <<= 8
        total += src_ip + dst_ip + PROTO_TCP + n
        if total % 0xFFFF:
            raise ParseError(f"TCP: bad checksum 0x{mv[16] << 8 | mv[17]:04x}")
    if hlen == 32:
        (sport, dport, seq, ack, _, flags, window, csum, urgent,
         word, ts_val, ts_ecr) = _HDR_TS.unpack_from(mv)
        if word == _TS_WORD:  # the common case: NOP NOP TS
            return TcpSegment(sport, dport, seq, ack, flags, window, urgent, mv[32:],
                              None, None, False, (), ts_val, ts_ecr, csum)
    sport, dport, seq, ack, _, flags, window, csum, urgent = _HDR.unpack_from(mv)
    if hlen == HEADER_LEN:
        return TcpSegment(sport, dport, seq, ack, flags, window, urgent, mv[HEADER_LEN:],
                          None, None, False, (), None, None, csum)
    mss, wscale, sack_permitted, sack_blocks, ts_val, ts_ecr = \
        _parse_options(bytes(mv[HEADER_LEN:hlen]))
    return TcpSegment(sport, dport, seq, ack, flags, window, urgent, mv[hlen:],
                      mss, wscale, sack_permitted, sack_blocks, ts_val, ts_ecr, csum)


# ---------------------------------------------------------------------------
# Build


def _build_options(mss: int | None, wscale: int | None, sack_permitted: bool,
                   sack_blocks, ts) -> bytes:
    parts = []
    if mss is not None:
        if not 0 <= mss <= 0xFFFF:
            raise ValueError(f"TCP MSS {mss} out of range")
        parts.append(_U32.pack(0x02040000 | mss))
    if ts is not None:
        ts_val, ts_ecr = ts
        parts.append(_U32X3.pack(_SACKOK_TS_WORD if sack_permitted else _TS_WORD,
                                 ts_val & _MASK, ts_ecr & _MASK))
    elif sack_permitted:
        parts.append(_SACKOK_WORD)
    if wscale is not None:
        if not 0 <= wscale <= MAX_WSCALE:
            raise ValueError(f"TCP window scale {wscale} out of range 0..{MAX_WSCALE}")
        parts.append(_U32.pack(0x01030300 | wscale))
    if sack_blocks:
        nblocks = len(sack_blocks)
        if nblocks > MAX_SACK_BLOCKS:
            raise ValueError(f"{nblocks} SACK blocks (at most {MAX_SACK_BLOCKS})")
        parts.append(_U32.pack(0x01010500 | (2 + 8 * nblocks)))
        parts.append(_SACK[nblocks].pack(*[edge & _MASK for block in sack_blocks
                                           for edge in block]))
    opts = b"".join(parts)
    if len(opts) > MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options of {len(opts)} bytes (at most {MAX_OPTIONS_LEN})")
    return opts


def build_tcp(src_ip: int | str | bytes, dst_ip: int | str | bytes, src_port: int,
              dst_port: int, seq: int, ack: int, flags: int, window: int,
              payload: bytes | bytearray | memoryview = b"", *,
              mss: int | None = None, wscale: int | None = None,
              sack_permitted: bool = False,
              sack_blocks: tuple[tuple[int, int], ...] | list = (),
              ts: tuple[int, int] | None = None, urgent: int = 0) -> bytes:
    """A whole TCP segment (header, options, payload) with a correct checksum.

    ``seq``, ``ack``, timestamp values and SACK edges are taken modulo 2**32;
    ``window`` is the raw 16-bit field; ``ts`` is ``(ts_val, ts_ecr)``.
    Options are laid out as Linux does (see the module docstring).  Raises
    ValueError for fields out of range, more than 40 bytes of options or a
    segment longer than 65535 bytes.
    """
    if type(src_ip) is not int:
        src_ip = address_int(src_ip)
    if type(dst_ip) is not int:
        dst_ip = address_int(dst_ip)
    seq &= _MASK
    ack &= _MASK
    if mss is None and wscale is None and not sack_permitted and not sack_blocks:
        if ts is not None:  # the established-connection fast path: NOP NOP TS
            ts_val = ts[0] & _MASK
            ts_ecr = ts[1] & _MASK
            length = 32 + len(payload)
            if length > 0xFFFF:
                raise ValueError(f"TCP segment of {length} bytes (at most 65535)")
            # The header's share of the checksum straight from the fields (as in
            # build_ipv4_header): a 32-bit value counts as its two 16-bit words.
            csum = internet_checksum(payload, pseudo_header_sum(src_ip, dst_ip, PROTO_TCP, length)
                                     + src_port + dst_port + seq + ack + (_TS_OFFWORD | flags)
                                     + window + urgent + _TS_WORD + ts_val + ts_ecr)
            try:
                header = _HDR_TS.pack(src_port, dst_port, seq, ack, _TS_OFF, flags, window, csum,
                                      urgent, _TS_WORD, ts_val, ts_ecr)
            except struct.error as exc:
                raise ValueError(f"TCP header field out of range: {exc}") from None
            return header + payload if payload else header
        opts = b""
        hlen = HEADER_LEN
    else:
        opts = _build_options(mss, wscale, sack_permitted, sack_blocks, ts)
        hlen = HEADER_LEN + len(opts)
    length = hlen + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"TCP segment of {length} bytes (at most 65535)")
    csum = internet_checksum(payload, pseudo_header_sum(src_ip, dst_ip, PROTO_TCP, length)
                             + src_port + dst_port + seq + ack + ((hlen << 10) | flags)
                             + window + urgent + int.from_bytes(opts, "big"))
    try:
        header = _HDR.pack(src_port, dst_port, seq, ack, hlen << 2, flags, window, csum, urgent)
    except struct.error as exc:
        raise ValueError(f"TCP header field out of range: {exc}") from None
    return b"".join((header, opts, payload))


# ---------------------------------------------------------------------------
# Sequence-number arithmetic (mod 2**32, RFC 1982 / Linux before()/after())
#
# Comparisons take the signed 32-bit difference, like Linux.  Two numbers
# exactly 2**31 apart are each "less than" the other; TCP windows never get
# near that.


def seq_add(a: int, n: int) -> int:
    """``a + n`` mod 2**32 (``n`` may be negative)."""
    return (a + n) & _MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance ``a - b`` in sequence space, in ``[-2**31, 2**31)``."""
    return ((a - b + _HALF) & _MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """``a`` comes before ``b`` (``seq_diff(a, b) < 0``)."""
    return (a - b) & _HALF != 0


def seq_le(a: int, b: int) -> bool:
    """``seq_diff(a, b) <= 0``."""
    d = (a - b) & _MASK
    return d == 0 or d >= _HALF


def seq_gt(a: int, b: int) -> bool:
    """``a`` comes after ``b`` (``seq_diff(a, b) > 0``)."""
    return 0 < (a - b) & _MASK < _HALF


def seq_ge(a: int, b: int) -> bool:
    """``seq_diff(a, b) >= 0``."""
    return (a - b) & _HALF == 0
