"""Appropriate Byte Counting (RFC 3465), in virtual time: the window grows by the bytes
ACKs cover, not by their number, so a receiver that ACKs once per burst (as this link's
does, and as a receiver behind GRO does) does not slow the growth down."""

from __future__ import annotations

from erebus.netstack.tcp import ABC_LIMIT

from .tcp_link import Link
from .test_tcp import Transfer, blob, check


def _watch_acks(link: Link, t: Transfer, *, congestion_avoidance: bool) -> list:
    """(cwnd before, bytes acked, cwnd after) of every new ACK outside recovery."""
    seen = []
    conn = t.a
    on_new_ack = conn._on_new_ack

    def watched(ack_off, acked, now):
        before, in_recovery = conn.cwnd, conn._rexmit_from is not None
        on_new_ack(ack_off, acked, now)
        if not in_recovery and acked > 0:
            seen.append((before, acked, conn.cwnd))
    conn._on_new_ack = watched
    if congestion_avoidance:
        conn.ssthresh = conn.cwnd          # from the first ACK on: congestion avoidance
    return seen


def test_stretch_acks_grow_congestion_avoidance_by_one_mss_per_window_acked():
    link = Link(delay=0.02, b_kw={"rcv_buf": 4 << 20})
    t = Transfer(link, blob(4 << 20, 5), b"")
    seen = _watch_acks(link, t, congestion_avoidance=True)
    assert link.run(t.done, t.app)
    check(t)
    conn = t.a
    assert conn.retransmits == 0
    stretch = sum(acked for _, acked, _ in seen) / len(seen) / conn.mss
    assert stretch > 4                     # the premise: ACKs cover many segments each
    windows_acked = sum(acked / before for before, acked, _ in seen)
    grown = (seen[-1][2] - seen[0][0]) / conn.mss
    assert abs(grown - windows_acked) <= 1.0


def test_slow_start_grows_by_what_an_ack_covers_at_most_the_abc_limit():
    link = Link(delay=0.02, b_kw={"rcv_buf": 4 << 20})
    t = Transfer(link, blob(2 << 20, 6), b"")
    seen = _watch_acks(link, t, congestion_avoidance=False)
    assert link.run(t.done, t.app)
    check(t)
    mss = t.a.mss
    assert all(after - before == min(acked, ABC_LIMIT * mss) for before, acked, after in seen)
    assert any(after - before > mss for before, _, after in seen)   # more than 1 per ACK
