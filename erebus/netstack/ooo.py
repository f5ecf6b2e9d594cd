"""The out-of-order queue of one TCP receiver: bytes that arrived ahead of RCV.NXT.

RFC 9293 3.10.7.4 lets a receiver keep in-window segments that arrive out of
order; how much of them it keeps is its own business.  A peer that sends many
overlapping or tiny segments must not turn that into memory: the queue stores
each byte offset once, in disjoint *runs* (maximal contiguous ranges, which are
also exactly the SACK blocks of RFC 2018), and reports a :attr:`charge` that
counts the Python objects holding the bytes as well as the bytes.  The
reassembler (:mod:`erebus.netstack.reassembly`) keeps ``charge`` within the
receive buffer with :meth:`shrink`, which drops from the top (the data furthest
from RCV.NXT, as Linux's ``tcp_prune_ofo_queue`` does; SACK reneging is allowed,
RFC 2018 section 8).

Costs: :meth:`add` is a binary search plus work proportional to the runs the
segment touches and the bytes it adds; a segment that only repeats held bytes
costs the search alone.  Small adjacent chunks are joined (at most
``COALESCE`` bytes copied per segment), so the number of chunks, and with it
the per-object overhead, stays proportional to the bytes held.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

SMALL = 1024            # a chunk below this joins its neighbour ...
COALESCE = 4096         # ... while the two fit in this
CHUNK_COST = 64         # bytes charged per stored chunk (bytes object + list slot)
RUN_COST = 192          # bytes charged per run (its list and its two offsets)


def _append(chunks: list, piece) -> int:
    """Add ``piece`` at the end of ``chunks``; 1 if that made a new chunk, else 0."""
    if chunks:
        last = chunks[-1]
        if (len(piece) < SMALL or len(last) < SMALL) and len(last) + len(piece) <= COALESCE:
            chunks[-1] = last + piece
            return 0
    chunks.append(bytes(piece))
    return 1


def _prepend(chunks: list, piece) -> int:
    first = chunks[0]
    if (len(piece) < SMALL or len(first) < SMALL) and len(first) + len(piece) <= COALESCE:
        chunks[0] = bytes(piece) + first
        return 0
    chunks.insert(0, bytes(piece))
    return 1


class OutOfOrderQueue:
    """Disjoint runs of received bytes, by stream offset."""

    __slots__ = ("_starts", "_ends", "_runs", "payload", "chunks")

    def __init__(self) -> None:
        self._starts: list[int] = []        # run starts, ascending
        self._ends: list[int] = []          # run ends (exclusive), parallel
        self._runs: list[list[bytes]] = []  # each run's bytes, in chunks
        self.payload = 0                    # bytes held
        self.chunks = 0                     # chunks held

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        """Number of runs."""
        return len(self._starts)

    @property
    def charge(self) -> int:
        """What the queue costs, to be held within the receive buffer."""
        return self.payload + CHUNK_COST * self.chunks + RUN_COST * len(self._starts)

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends))

    def first_ranges(self, n: int) -> list[tuple[int, int]]:
        return list(zip(self._starts[:n], self._ends[:n]))

    def run_at(self, off: int) -> tuple[int, int] | None:
        """The run holding byte ``off``, if any."""
        i = bisect_right(self._starts, off) - 1
        if i >= 0 and off < self._ends[i]:
            return self._starts[i], self._ends[i]
        return None

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self._runs.clear()
        self.payload = self.chunks = 0

    def add(self, off: int, data) -> int:
        """Store the bytes of ``data`` (at stream offset ``off``) that are not held yet;
        returns how many were new.  Bytes already held win over a different copy."""
        n = len(data)
        if not n:
            return 0
        end = off + n
        starts, ends, runs = self._starts, self._ends, self._runs
        i = bisect_left(ends, off)          # first run ending at or after off
        j = bisect_right(starts, end)       # runs [i, j) overlap or touch [off, end)
        if i == j:
            starts.insert(i, off)
            ends.insert(i, end)
            runs.insert(i, [bytes(data)])
            self.payload += n
            self.chunks += 1
            return n
        if i + 1 == j and starts[i] <= off and end <= ends[i]:
            return 0                        # all held already
        mv = memoryview(data)
        base = runs[i]
        added = 0
        new_chunks = 0
        if off < starts[i]:
            new_chunks += _prepend(base, mv[:starts[i] - off])
            added += starts[i] - off
            starts[i] = off
        for k in range(i + 1, j):
            gap = mv[ends[k - 1] - off:starts[k] - off]
            new_chunks += _append(base, gap)
            added += len(gap)
            following = runs[k]
            new_chunks += _append(base, following[0]) - 1
            base.extend(following[1:])
        last_end = ends[j - 1]
        if end > last_end:
            tail = mv[last_end - off:]
            new_chunks += _append(base, tail)
            added += len(tail)
            last_end = end
        ends[i] = last_end
        del starts[i + 1:j], ends[i + 1:j], runs[i + 1:j]
        self.payload += added
        self.chunks += new_chunks
        return added

    def take(self, rcv_nxt: int) -> tuple[list[bytes], int]:
        """Remove the runs that start at or before ``rcv_nxt``; return their bytes from
        ``rcv_nxt`` on, in order, and the new RCV.NXT."""
        out: list[bytes] = []
        starts, ends, runs = self._starts, self._ends, self._runs
        k = 0
        while k < len(starts) and starts[k] <= rcv_nxt:
            s, e, chunks = starts[k], ends[k], runs[k]
            self.payload -= e - s
            self.chunks -= len(chunks)
            k += 1
            if e <= rcv_nxt:
                continue
            skip = rcv_nxt - s
            for c in chunks:
                if skip >= len(c):
                    skip -= len(c)
                    continue
                out.append(c[skip:] if skip else c)
                skip = 0
            rcv_nxt = e
        if k:
            del starts[:k], ends[:k], runs[:k]
        return out, rcv_nxt

    def shrink(self, budget: int) -> int:
        """Drop data from the top until :attr:`charge` is within ``budget``; returns the
        bytes dropped."""
        dropped = 0
        starts, ends, runs = self._starts, self._ends, self._runs
        while starts and self.charge > budget:
            chunks = runs[-1]
            c = chunks.pop()
            ends[-1] -= len(c)
            self.payload -= len(c)
            self.chunks -= 1
            dropped += len(c)
            if not chunks:
                starts.pop()
                ends.pop()
                runs.pop()
        return dropped

    def check(self) -> None:
        """Assert the invariants (for tests)."""
        prev = None
        payload = chunks = 0
        for s, e, run in zip(self._starts, self._ends, self._runs):
            assert s < e and run, (s, e)
            assert prev is None or s > prev, (prev, s)      # disjoint and not touching
            assert sum(map(len, run)) == e - s, (s, e)
            payload += e - s
            chunks += len(run)
            prev = e
        assert payload == self.payload and chunks == self.chunks, (payload, chunks)
