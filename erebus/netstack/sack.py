"""The SACK scoreboard of a TCP sender (RFC 2018, RFC 6675 simplified): which bytes of
our stream above SND.UNA the peer said it holds, so that retransmissions go to the
holes and the bytes in flight (the "pipe") leave out what has arrived.

In stream offsets (the connection turns the SACK blocks' sequence numbers into
offsets at its edge).  SACK information is advisory (RFC 2018 section 8: a receiver
may renege), so the connection clears the scoreboard on a retransmission timeout.
Bounded by construction: only blocks within [SND.UNA, SND.MAX) are taken, and they are
kept merged and disjoint, so they never outgrow what we sent (the send buffer).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SackScoreboard"]


class SackScoreboard:
    """Merged, disjoint, ascending [start, end) offsets the peer SACKed."""

    __slots__ = ("_blocks",)

    def __init__(self) -> None:
        self._blocks: list[list[int]] = []

    def __bool__(self) -> bool:
        return bool(self._blocks)

    def ranges(self) -> list[tuple[int, int]]:
        return [(s, e) for s, e in self._blocks]

    def clear(self) -> None:
        self._blocks.clear()

    def add(self, ranges: Iterable[tuple[int, int]], snd_una: int, snd_max: int) -> None:
        """Take the SACK blocks of one ACK (as offsets); a block that is empty, all below
        ``snd_una`` or reaching past ``snd_max`` (what was never sent) is ignored."""
        blocks = self._blocks
        for start, end in ranges:
            if start >= end or end <= snd_una or end > snd_max:
                continue
            blocks.append([max(start, snd_una), end])
        if blocks:
            blocks.sort()
            merged = [blocks[0]]
            for s, e in blocks[1:]:
                if s <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], e)
                else:
                    merged.append([s, e])
            self._blocks = merged

    def advance(self, snd_una: int) -> None:
        """SND.UNA moved: forget what is now acknowledged cumulatively."""
        self._blocks = [[max(s, snd_una), e] for s, e in self._blocks if e > snd_una]

    def sacked_bytes(self) -> int:
        return sum(e - s for s, e in self._blocks)

    def sacked_above(self, off: int) -> int:
        """SACKed bytes above ``off`` (RFC 6675 IsLost: a hole is taken for lost once
        enough of what was sent after it has arrived)."""
        return sum(e - max(s, off) for s, e in self._blocks if e > off)

    def next_hole(self, frm: int, mss: int, snd_max: int) -> tuple[int, int] | None:
        """The first range at or after ``frm`` that was sent and not SACKed, at most
        ``mss`` long, below the highest SACKed byte (with nothing SACKed: the segment at
        ``frm``, if it was sent)."""
        if not self._blocks:
            return (frm, min(frm + mss, snd_max)) if frm < snd_max else None
        for s, e in self._blocks:
            if frm < s:
                return frm, min(s, frm + mss)
            if frm < e:
                frm = e
        return None
