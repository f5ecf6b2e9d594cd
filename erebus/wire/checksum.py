"""The Internet checksum (RFC 1071), without a per-byte Python loop.

The checksum is the ones' complement of the ones' complement sum of the data
taken as big-endian 16-bit words (an odd trailing byte is padded with a zero
byte).  Because ``2**16 == 1 (mod 0xFFFF)``, the ones' complement sum of the
words of a byte string equals the string read as one big-endian integer
modulo ``0xFFFF`` -- with the ones' complement quirk that a non-zero sum that
is a multiple of ``0xFFFF`` is ``0xFFFF`` ("negative zero"), never ``0``.  So
:func:`internet_checksum` is one ``int.from_bytes`` and one ``%`` on a big
integer, both in C, about three times faster than summing an ``array('H')``.

Partial sums are plain non-negative Python integers that need no folding:
any sum of 16-bit words (or of 32-bit IPv4 addresses read as integers, which
are two words each) can be passed as ``initial``.  :func:`pseudo_header_sum`
builds the partial sum of the TCP/UDP pseudo-header that way.

The IPv6 pseudo-header (RFC 8200 section 8.1: source, destination, a 32-bit
upper-layer length, three zero bytes, the next header) sums to the same
expression: a 128-bit address is congruent to the sum of its eight words, the
32-bit length to its two.  So :func:`pseudo_header_sum` serves IPv6 too when
given the addresses as integers, and :func:`pseudo_header_sum6` takes them as
the 16 packed bytes :class:`erebus.wire.ipv6.IPv6Header` holds.

To *verify* a checksum, run :func:`internet_checksum` over the data including
the stored checksum field: a correct packet gives ``0``.
"""

from __future__ import annotations

__all__ = ["internet_checksum", "ones_sum", "fold", "pseudo_header_sum", "pseudo_header_sum6"]


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Unfolded sum of the big-endian 16-bit words of ``data`` plus ``initial``.

    The result is only meaningful modulo ``0xFFFF``; feed it to :func:`fold`
    or back into ``initial``.  ``data`` of odd length is padded with a zero byte,
    so only the last piece of a checksummed message may have an odd length.
    """
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    return n + initial


def fold(total: int) -> int:
    """The 16-bit ones' complement sum of an unfolded (non-negative) sum."""
    s = total % 0xFFFF
    if s == 0 and total:
        return 0xFFFF
    return s


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The RFC 1071 checksum of ``data`` (16-bit int, to be stored big-endian).

    ``initial`` is an unfolded partial sum of words that precede ``data``
    (e.g. :func:`pseudo_header_sum`).  Over data that includes a correct
    checksum field the result is ``0``.  Note that UDP transmits a computed
    ``0`` as ``0xFFFF``; that is the UDP builder's business.
    """
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    n += initial
    s = n % 0xFFFF
    if s == 0 and n:
        return 0  # the sum is 0xFFFF ("negative zero"); its complement is 0
    return 0xFFFF - s


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Unfolded partial sum of the IPv4 TCP/UDP pseudo-header.

    ``src``/``dst`` are IPv4 addresses as 32-bit integers (as in
    :class:`erebus.wire.ipv4.IPv4Header`), ``length`` the TCP/UDP length
    (header plus payload).  Pass the result as ``initial`` to
    :func:`internet_checksum` over the TCP/UDP header and payload.
    """
    # A 32-bit integer is congruent (mod 0xFFFF) to the sum of its two words.
    return src + dst + proto + length


def pseudo_header_sum6(src: bytes | bytearray | memoryview, dst: bytes | bytearray | memoryview,
                       next_header: int, length: int) -> int:
    """Unfolded partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1).

    ``src``/``dst`` are 16 packed bytes, ``next_header`` the upper-layer protocol
    (6, 17, 58), ``length`` the upper-layer packet length (header plus payload).
    """
    return int.from_bytes(src, "big") + int.from_bytes(dst, "big") + next_header + length
