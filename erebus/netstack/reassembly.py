"""The receive side of one TCP connection: segments back into the peer's byte stream.

In stream offsets (no sequence numbers: the connection converts at its edge), a
:class:`StreamReassembler` holds RCV.NXT, the in-order bytes the application has not
read yet, the bytes that arrived ahead of RCV.NXT (:class:`~erebus.netstack.ooo.
OutOfOrderQueue`) and the offsets of the out-of-order segments received last, whose
runs the next SACK blocks name first (RFC 2018 section 4).

All of it is bounded by ``rcv_buf``: :meth:`window` is the room left, less what
holding a full window out of order may cost on top of the bytes, so an honest sender
never has data pruned; what a dishonest one sends beyond is dropped from the top of
the out-of-order queue (:meth:`OutOfOrderQueue.shrink`).
"""

from __future__ import annotations

from collections import deque

from .ooo import CHUNK_COST, COALESCE, RUN_COST, SMALL, OutOfOrderQueue

__all__ = ["StreamReassembler", "RECENT_SEGMENTS"]

RECENT_SEGMENTS = 8       # out-of-order segments remembered for the order of SACK blocks


class StreamReassembler:
    """RCV.NXT, the unread in-order bytes and the out-of-order queue of one connection."""

    __slots__ = ("rcv_nxt", "rcv_buf", "buffered", "ooo", "pruned", "_rbuf", "_recent")

    def __init__(self, rcv_buf: int):
        self.rcv_nxt = 0                 # next offset expected from the peer
        self.rcv_buf = rcv_buf           # bound of buffered + ooo.charge
        # in-order data not yet read; small chunks are joined (see _append), so the
        # objects holding it cost a few percent of rcv_buf at most
        self._rbuf: deque[bytes] = deque()
        self.buffered = 0                # bytes in _rbuf
        self.ooo = OutOfOrderQueue()     # data ahead of rcv_nxt
        self._recent: list[int] = []     # offsets of recently received OOO segments
        self.pruned = 0                  # OOO bytes dropped to stay within rcv_buf

    @property
    def has_unread(self) -> bool:
        return bool(self._rbuf)

    def window(self) -> int:
        """The room to offer the peer."""
        # the room, less what storing it out of order may cost on top of the bytes (a
        # chunk of at least SMALL bytes is charged CHUNK_COST, a run RUN_COST): a full
        # window of segments held out of order then stays within rcv_buf, so nothing
        # the window allowed is ever pruned (reneged) for an honest sender
        room = self.rcv_buf - self.buffered - self.ooo.charge
        return max(0, room * SMALL // (SMALL + CHUNK_COST) - RUN_COST)

    def receive(self, off: int, payload, right_edge: int) -> int:
        """Take the bytes of a segment at offset ``off``: what the window allowed (up to
        ``right_edge``, the right edge we advertised, or what fits now if we advertised
        none beyond RCV.NXT).  Returns how far RCV.NXT moved."""
        rn = self.rcv_nxt
        end = off + len(payload)
        if end <= rn:
            return 0                             # all old: a duplicate
        if off < rn:
            payload = payload[rn - off:]
            off = rn
        limit = right_edge if right_edge > rn else rn + self.window()
        if end > limit:                          # beyond the window: keep what fits
            payload = payload[:max(0, limit - off)]
            end = off + len(payload)
            if not payload:
                return 0
        ooo = self.ooo
        if off == rn:
            self._append(payload)
            self.rcv_nxt = end
            if ooo.payload:                   # (an attribute: cheaper than __bool__)
                chunks, nxt = ooo.take(end)
                for chunk in chunks:
                    self._append(chunk)
                if nxt > end:
                    self.rcv_nxt = nxt
                self._recent = [o for o in self._recent if o >= self.rcv_nxt]
        else:
            ooo.add(off, payload)
            recent = self._recent
            if off in recent:
                recent.remove(off)
            recent.insert(0, off)
            del recent[RECENT_SEGMENTS:]
        if ooo.payload:
            # in-order data always fits (the window promised no more than rcv_buf);
            # out-of-order data makes room for it, and never holds more than the rest
            self.pruned += ooo.shrink(max(0, self.rcv_buf - self.buffered))
        return self.rcv_nxt - rn

    def _append(self, chunk) -> None:
        rbuf = self._rbuf
        n = len(chunk)
        if rbuf:
            last = rbuf[-1]
            if (n < SMALL or len(last) < SMALL) and len(last) + n <= COALESCE:
                rbuf[-1] = last + chunk
                self.buffered += n
                return
        rbuf.append(bytes(chunk))
        self.buffered += n

    def read(self, limit: int = -1) -> list[bytes]:
        """Take in-order data (in chunks, small ones joined) up to ``limit`` bytes."""
        rbuf = self._rbuf
        if limit < 0:
            out = list(rbuf)
            rbuf.clear()
            self.buffered = 0
            return out
        out: list[bytes] = []
        taken = 0
        while rbuf and taken < limit:
            chunk = rbuf[0]
            if taken + len(chunk) <= limit:
                rbuf.popleft()
                out.append(chunk)
                taken += len(chunk)
            else:
                cut = limit - taken
                out.append(chunk[:cut])
                rbuf[0] = chunk[cut:]
                taken = limit
        self.buffered -= taken
        return out

    def sack_ranges(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` runs of the out-of-order queue, as SACK blocks (offsets) in
        the order RFC 2018 section 4 asks: the run holding the most recently received
        segment first, then the other recent ones, then the lowest."""
        ooo = self.ooo
        if not ooo.payload:
            return []
        order: list[tuple[int, int]] = []
        for off in self._recent:
            r = ooo.run_at(off)
            if r is not None and r not in order:
                order.append(r)
                if len(order) == limit:
                    return order
        for r in ooo.first_ranges(2 * limit):
            if r not in order:
                order.append(r)
                if len(order) == limit:
                    break
        return order
