"""IPv4 packets (RFC 791): sans-IO parse and build, and fragment reassembly.

Header layout (20 bytes, then ``(ihl - 5) * 4`` bytes of options)::

    version(4 bits) | ihl(4 bits) | tos(1) | total_length(2)
    | ident(2) | flags(3 bits: reserved, DF, MF) | fragment_offset(13 bits, 8-byte units)
    | ttl(1) | protocol(1) | header_checksum(2) | src(4) | dst(4) | [options]

Addresses are 32-bit unsigned integers (``198.18.0.1`` is ``0xC6120001``).
That is what one precompiled ``struct`` call yields, integers hash and compare
faster than ``bytes`` when connections are looked up per packet, and the
TCP/UDP pseudo-header sum is plain integer addition (see
:mod:`erebus.wire.checksum`).  :func:`ip_to_str` / :func:`ip_from_str` convert
for humans; the builders also accept dotted strings and 4-byte ``bytes``.

:func:`parse_ipv4` validates version, IHL, total length and the header
checksum, skips options, and trims link padding past ``total_length``.
Malformed input raises :class:`erebus.errors.ParseError` and nothing else.

:class:`Reassembler` puts fragmented datagrams back together (sans-IO: the
caller passes the clock).  Overlapping fragments discard the whole datagram
(as RFC 5722 demands for IPv6 and Linux does for IPv4); exact duplicates are
ignored.
"""

from __future__ import annotations

import bisect
import itertools
import socket
import struct
from dataclasses import dataclass, field

from ..errors import ParseError

__all__ = [
    "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP", "HEADER_LEN", "MAX_PACKET",
    "FLAG_DF", "FLAG_MF", "FLAG_RESERVED",
    "IPv4Header", "parse_ipv4", "parse_ipv4_prefix", "build_ipv4", "build_ipv4_header",
    "ip_to_str", "ip_from_str", "to_ip", "next_ident",
    "Reassembler", "ReassemblyStats",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

HEADER_LEN = 20  # without options
MAX_PACKET = 0xFFFF  # total_length is 16 bits

# The 16-bit flags/fragment-offset word.
FLAG_RESERVED = 0x8000
FLAG_DF = 0x4000
FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF

_HEADER = struct.Struct("!BBHHHBBHII")
_ADDR = struct.Struct("!I")


def ip_to_str(addr: int) -> str:
    """``0xC6120001`` -> ``"198.18.0.1"``."""
    return socket.inet_ntoa(_ADDR.pack(addr))


def ip_from_str(text: str) -> int:
    """``"198.18.0.1"`` -> ``0xC6120001``; ValueError if not a dotted quad."""
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, TypeError) as exc:
        raise ValueError(f"not an IPv4 address: {text!r}") from exc
    return _ADDR.unpack(packed)[0]


def to_ip(addr: int | str | bytes) -> int:
    """An address given as int, dotted string or 4 packed bytes, as an int."""
    if type(addr) is int:
        if not 0 <= addr <= 0xFFFFFFFF:
            raise ValueError(f"IPv4 address {addr} out of range")
        return addr
    if isinstance(addr, str):
        return ip_from_str(addr)
    if isinstance(addr, (bytes, bytearray, memoryview)) and len(addr) == 4:
        return _ADDR.unpack(addr)[0]
    raise ValueError(f"not an IPv4 address: {addr!r}")


_ident_counter = itertools.count()


def next_ident() -> int:
    """Next value of the process-wide IPv4 identification counter (from 0): the default
    of the builders, for a caller without a counter of its own, whose packets carry DF
    (atomic datagrams: RFC 6864 section 4.1 gives the field no meaning then).  The
    network stack has its own, seeded from its rng."""
    return next(_ident_counter) & 0xFFFF


@dataclass(slots=True)
class IPv4Header:
    """A parsed IPv4 header. ``frag_offset`` is in bytes (the field times 8),
    ``flags`` the raw 3 bits (``FLAG_*`` shifted down: DF is 2, MF is 1)."""

    ihl: int
    tos: int
    total_length: int
    ident: int
    flags: int
    frag_offset: int
    ttl: int
    protocol: int
    checksum: int
    src: int
    dst: int
    options: bytes = field(default=b"", repr=False)

    @property
    def version(self) -> int:
        return 4

    @property
    def header_len(self) -> int:
        return self.ihl * 4

    @property
    def payload_len(self) -> int:
        return self.total_length - self.ihl * 4

    @property
    def df(self) -> bool:
        return bool(self.flags & 2)

    @property
    def mf(self) -> bool:
        return bool(self.flags & 1)

    @property
    def is_fragment(self) -> bool:
        """True unless this packet is a whole datagram (MF clear, offset 0)."""
        return bool(self.flags & 1) or self.frag_offset != 0

    @property
    def src_str(self) -> str:
        return ip_to_str(self.src)

    @property
    def dst_str(self) -> str:
        return ip_to_str(self.dst)


def _parse(mv: memoryview, verify_checksum: bool, whole: bool) -> tuple[IPv4Header, memoryview]:
    n = len(mv)
    if n < HEADER_LEN:
        raise ParseError(f"IPv4: {n} bytes, shorter than a header")
    (vihl, tos, total_length, ident, ff, ttl, proto, csum, src, dst) = _HEADER.unpack_from(mv)
    if vihl >> 4 != 4:
        raise ParseError(f"IPv4: version {vihl >> 4}")
    ihl = vihl & 0x0F
    hlen = ihl * 4
    if ihl < 5:
        raise ParseError(f"IPv4: IHL {ihl} below 5")
    if hlen > n:
        raise ParseError(f"IPv4: {hlen}-byte header in {n} bytes")
    if total_length < hlen:
        raise ParseError(f"IPv4: total length {total_length} shorter than the {hlen}-byte header")
    if whole:
        if total_length > n:
            raise ParseError(f"IPv4: total length {total_length} beyond the {n} bytes received")
        end = total_length
    else:
        end = min(total_length, n)
    if verify_checksum:
        # RFC 1071 over the header, from the fields just unpacked (no slice, no second
        # pass): a 16-bit word counts as itself, a 32-bit address as its two words, so
        # the header is correct iff this sum is a non-zero multiple of 0xFFFF (it is
        # never 0: the version nibble is 4)
        total = ((vihl << 8) | tos) + total_length + ident + ff + ((ttl << 8) | proto) \
            + csum + src + dst
        if ihl > 5:
            total += int.from_bytes(mv[HEADER_LEN:hlen], "big")
        if total % 0xFFFF:
            raise ParseError(f"IPv4: bad header checksum 0x{csum:04x}")
    header = IPv4Header(ihl, tos, total_length, ident, ff >> 13, (ff & _OFFSET_MASK) << 3,
                        ttl, proto, csum, src, dst,
                        bytes(mv[HEADER_LEN:hlen]) if ihl > 5 else b"")
    return header, mv[hlen:end]


def parse_ipv4(data: bytes | bytearray | memoryview, *,
               verify_checksum: bool = True) -> tuple[IPv4Header, memoryview]:
    """Parse one IPv4 packet: ``(header, payload)``.

    The payload is a view into ``data`` of ``total_length - header_len``
    bytes; bytes past ``total_length`` (link padding) are dropped.  Raises
    ParseError for a version other than 4, an IHL below 5, a total length
    shorter than the header or longer than ``data``, or (unless
    ``verify_checksum`` is false) a wrong header checksum.
    """
    return _parse(memoryview(data), verify_checksum, True)


def parse_ipv4_prefix(data: bytes | bytearray | memoryview, *,
                      verify_checksum: bool = False) -> tuple[IPv4Header, memoryview]:
    """Parse the start of an IPv4 packet that may be cut short, such as the
    original datagram quoted in an ICMP error: the header must be complete,
    the payload is whatever follows it, up to ``total_length``."""
    return _parse(memoryview(data), verify_checksum, False)


def build_ipv4_header(src: int | str | bytes, dst: int | str | bytes, protocol: int,
                      payload_len: int, *, ttl: int = 64, ident: int | None = None,
                      df: bool = True, tos: int = 0, mf: bool = False,
                      frag_offset: int = 0) -> bytes:
    """A 20-byte IPv4 header (no options) with a correct checksum.

    ``frag_offset`` is in bytes and must be a multiple of 8.  ``ident``: the
    identification field; by default the next value of :func:`next_ident`.
    """
    if type(src) is not int:
        src = to_ip(src)
    if type(dst) is not int:
        dst = to_ip(dst)
    total = HEADER_LEN + payload_len
    if total > MAX_PACKET:
        raise ValueError(f"IPv4 packet of {total} bytes (at most {MAX_PACKET})")
    if frag_offset & 7 or not 0 <= frag_offset <= _OFFSET_MASK << 3:
        raise ValueError(f"fragment offset {frag_offset} is not a multiple of 8 below 65536")
    if ident is None:
        ident = next(_ident_counter) & 0xFFFF
    ff = (FLAG_DF if df else 0) | (FLAG_MF if mf else 0) | (frag_offset >> 3)
    w0 = 0x4500 | tos
    w4 = (ttl << 8) | protocol
    # The checksum straight from the words; a 32-bit address counts as its two words.
    s = (w0 + total + ident + ff + w4 + src + dst) % 0xFFFF  # never all-zero: 0x45 is there
    csum = 0xFFFF - (s or 0xFFFF)
    return _HEADER.pack(0x45, tos, total, ident, ff, ttl, protocol, csum, src, dst)


def build_ipv4(src: int | str | bytes, dst: int | str | bytes, protocol: int,
               payload: bytes | bytearray | memoryview, *, ttl: int = 64,
               ident: int | None = None, df: bool = True, tos: int = 0,
               mf: bool = False, frag_offset: int = 0) -> bytes:
    """A whole IPv4 packet: :func:`build_ipv4_header` followed by ``payload``."""
    return build_ipv4_header(src, dst, protocol, len(payload), ttl=ttl, ident=ident, df=df,
                             tos=tos, mf=mf, frag_offset=frag_offset) + bytes(payload)


# ---------------------------------------------------------------------------
# Fragment reassembly


@dataclass(slots=True)
class ReassemblyStats:
    """Counters of a :class:`Reassembler` (fragments unless named otherwise)."""

    fragments: int = 0  # fragments handed to add()
    completed: int = 0  # datagrams reassembled
    duplicates: int = 0  # exact duplicates, ignored
    overlaps: int = 0  # datagrams discarded for overlapping or conflicting fragments
    invalid: int = 0  # fragments dropped as malformed (see Reassembler.add)
    too_big: int = 0  # datagrams discarded for growing past max_size
    too_many: int = 0  # datagrams discarded for more than max_fragments fragments
    evicted: int = 0  # datagrams discarded to make room (max_entries)
    timed_out: int = 0  # datagrams discarded by the timeout
    discarded: int = 0  # fragments that arrived for an already discarded datagram


class _Entry:
    __slots__ = ("deadline", "starts", "frags", "received", "total", "dead", "first")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.starts: list[int] = []
        self.frags: list[tuple[int, bytes]] = []  # (end, data), parallel to starts
        self.received = 0
        self.total: int | None = None
        self.dead = False
        self.first: object = None  # what the caller keeps of the first fragment (IPv6)

    def kill(self) -> None:
        self.dead = True
        self.starts = []
        self.frags = []
        self.first = None


class Reassembler:
    """IPv4 fragment reassembly, keyed by ``(src, dst, protocol, ident)``.

    ``add(header, payload, now)`` returns the whole datagram's payload when
    the last missing fragment arrives, else None.  A packet that is not a
    fragment is returned as ``bytes`` at once.  ``now`` is any monotonic
    clock in seconds.

    Limits: a datagram may not grow past ``max_size`` bytes including a
    20-byte header (``65535`` blocks the "ping of death"); nor be cut in more
    than ``max_fragments`` pieces (each piece costs objects worth far more than
    its 8 bytes: 256 covers 64 KiB over any MTU of 296 or more); at most
    ``max_entries`` datagrams are in reassembly at once (a new one evicts the
    oldest); a datagram not complete ``timeout`` seconds after its first
    fragment is dropped by :meth:`expire` (which :meth:`add` also runs).  So
    what a sender can make it hold is about ``max_entries * max_size`` bytes
    (4 MiB by default, Linux's ipfrag_high_thresh) plus the objects of at most
    ``max_entries * max_fragments`` pieces.

    A fragment with MF set whose length is zero or not a multiple of 8 is
    dropped as invalid.  Overlapping fragments, duplicates with different
    contents, a second different end (MF clear) or data past the end discard
    the whole datagram; later fragments of it are dropped until the timeout.
    Exact duplicates are ignored.  See :attr:`stats`.
    """

    def __init__(self, *, max_size: int = MAX_PACKET, max_entries: int = 64,
                 timeout: float = 30.0, max_fragments: int = 256):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_size = max_size
        self.max_fragments = max_fragments
        self.max_entries = max_entries
        self.timeout = timeout
        self.stats = ReassemblyStats()
        self._entries: dict[tuple[int, int, int, int], _Entry] = {}

    def __len__(self) -> int:
        """Datagrams in reassembly (including discarded ones not yet timed out)."""
        return len(self._entries)

    def expire(self, now: float) -> int:
        """Drop datagrams whose time is up; returns how many."""
        entries = self._entries
        dropped = 0
        # Entries are created in clock order, so deadlines are in insertion order.
        while entries:
            key = next(iter(entries))
            entry = entries[key]
            if entry.deadline > now:
                break
            del entries[key]
            if not entry.dead:
                dropped += 1
        self.stats.timed_out += dropped
        return dropped

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has something to do (for a timer), or None."""
        for entry in self._entries.values():
            return entry.deadline
        return None

    def add(self, header: IPv4Header, payload: bytes | bytearray | memoryview,
            now: float) -> bytes | None:
        """Add one fragment; the reassembled payload once complete, else None."""
        start = header.frag_offset
        more = header.flags & 1
        if not more and start == 0:
            return bytes(payload)
        done = self._add((header.src, header.dst, header.protocol, header.ident), start, more,
                         payload, now, HEADER_LEN)
        return None if done is None else done[0]

    def _add(self, key: tuple, start: int, more: int, payload: bytes | bytearray | memoryview,
             now: float, overhead: int, first: object = None) -> tuple[bytes, object] | None:
        """The bookkeeping of one fragment (``start`` in bytes, ``more`` its MF flag) of the
        datagram ``key``, shared with :class:`erebus.wire.ipv6.Reassembler`: ``overhead`` is
        what the datagram counts towards ``max_size`` besides its fragments' data, ``first``
        what the caller keeps of the first fragment (offset 0).  Once complete:
        ``(payload, first)``."""
        stats = self.stats
        stats.fragments += 1
        length = len(payload)
        end = start + length
        if more and (length == 0 or length & 7):
            stats.invalid += 1
            return None
        if self._entries:
            self.expire(now)
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            if len(entries) >= self.max_entries:
                oldest = next(iter(entries))
                if not entries.pop(oldest).dead:
                    stats.evicted += 1
            entry = entries[key] = _Entry(now + self.timeout)
        elif entry.dead:
            stats.discarded += 1
            return None

        if end + overhead > self.max_size:
            stats.too_big += 1
            entry.kill()
            return None
        total = entry.total
        starts = entry.starts
        frags = entry.frags
        if not more:
            if total is not None and total != end:
                return self._overlap(entry)
            if frags and frags[-1][0] > end:
                return self._overlap(entry)  # data already received past this end
        elif total is not None and end > total:
            return self._overlap(entry)

        i = bisect.bisect_right(starts, start)
        if i:
            prev_end, prev_data = frags[i - 1]
            if starts[i - 1] == start and prev_end == end:
                if prev_data != payload:
                    return self._overlap(entry)
                stats.duplicates += 1
                return None
            if prev_end > start:
                return self._overlap(entry)
        if i < len(starts) and starts[i] < end:
            return self._overlap(entry)

        if len(starts) >= self.max_fragments:
            stats.too_many += 1
            entry.kill()
            return None
        starts.insert(i, start)
        frags.insert(i, (end, bytes(payload)))
        if start == 0:
            entry.first = first
        entry.received += length
        if not more:
            entry.total = total = end
        if total is not None and entry.received == total:
            del entries[key]
            stats.completed += 1
            return b"".join([data for _, data in frags]), entry.first
        return None

    def _overlap(self, entry: _Entry) -> None:
        self.stats.overlaps += 1
        entry.kill()
        return None
