"""The TCP receiver's out-of-order queue against a hostile sender: overlapping, nested,
duplicate and out-of-window segments are held once, within the receive buffer, cheaply,
with the right SACK blocks, and the stream stays byte-exact."""

from __future__ import annotations

import random
import time
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st

from erebus.netstack.ooo import OutOfOrderQueue
from erebus.netstack.tcp import State
from erebus.wire.ipv4 import PROTO_TCP, build_ipv4, parse_ipv4
from erebus.wire.tcp import ACK, parse_tcp

from .tcp_link import A_IP, B_IP, Link
from .test_tcp import Transfer, blob, check

# -- the queue alone, against a model -----------------------------------------------------


class Model:
    """What the queue must hold: a byte per offset, the first copy received."""

    def __init__(self):
        self.held: dict[int, int] = {}

    def add(self, off, data):
        new = 0
        for i, b in enumerate(data):
            if off + i not in self.held:
                self.held[off + i] = b
                new += 1
        return new

    def ranges(self):
        out = []
        for o in sorted(self.held):
            if out and out[-1][1] == o:
                out[-1][1] = o + 1
            else:
                out.append([o, o + 1])
        return [tuple(r) for r in out]


def _bytes_of(q: OutOfOrderQueue) -> dict[int, int]:
    held = {}
    for (s, e), run in zip(q.ranges(), q._runs):
        data = b"".join(run)
        assert len(data) == e - s
        for i, b in enumerate(data):
            held[s + i] = b
    return held


segments = st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 700), st.integers(0, 255)),
                    max_size=60)


@settings(max_examples=300, deadline=None)
@given(segments)
def test_queue_holds_each_byte_once_like_the_model(segs):
    q, m = OutOfOrderQueue(), Model()
    for off, n, fill in segs:
        data = bytes([fill]) * n
        assert q.add(off, data) == m.add(off, data)
        q.check()
    assert q.ranges() == m.ranges()
    assert _bytes_of(q) == m.held
    assert q.payload == len(m.held)


@settings(max_examples=200, deadline=None)
@given(segments, st.integers(0, 4000))
def test_take_returns_the_stream_from_rcv_nxt(segs, rcv_nxt):
    q, m = OutOfOrderQueue(), Model()
    for off, n, fill in segs:
        q.add(off, bytes([fill]) * n)
        m.add(off, bytes([fill]) * n)
    chunks, nxt = q.take(rcv_nxt)
    data = b"".join(chunks)
    expect = bytearray()
    o = rcv_nxt
    while o in m.held:
        expect.append(m.held[o])
        o += 1
    if rcv_nxt not in m.held:
        # a run that starts before rcv_nxt and ends at it is consumed whole, nothing else
        assert data == b"" and nxt == rcv_nxt
    else:
        assert data == bytes(expect) and nxt == o
    q.check()
    assert all(s > rcv_nxt for s, _ in q.ranges())


def test_overlapping_nested_and_duplicate_segments():
    q = OutOfOrderQueue()
    assert q.add(100, b"a" * 100) == 100          # [100, 200)
    assert q.add(100, b"b" * 100) == 0            # duplicate
    assert q.add(120, b"c" * 10) == 0             # nested
    assert q.add(150, b"d" * 100) == 50           # overlaps the right end
    assert q.add(50, b"e" * 60) == 50             # overlaps the left end
    assert q.add(400, b"f" * 10) == 10            # a second run
    assert q.add(0, b"g" * 1000) == 1000 - 200 - 10   # covers everything: fills the gaps
    q.check()
    assert q.ranges() == [(0, 1000)]
    held = b"".join(q._runs[0])
    assert held == b"g" * 50 + b"e" * 50 + b"a" * 100 + b"d" * 50 + b"g" * 150 + \
        b"f" * 10 + b"g" * 590


def test_shrink_drops_from_the_top_first():
    q = OutOfOrderQueue()
    for off in (1000, 5000, 9000):
        q.add(off, b"x" * 1000)
    q.shrink(q.charge - 1)
    assert [s for s, _ in q.ranges()] == [1000, 5000]
    q.shrink(0)
    assert not q and q.charge == 0


def test_many_tiny_segments_are_cheap_and_their_objects_are_charged():
    q = OutOfOrderQueue()
    start = time.perf_counter()
    for i in range(40_000):                    # 1-byte segments, descending: worst order
        q.add(80_000 - i, b"z")
    elapsed = time.perf_counter() - start
    q.check()
    assert q.ranges() == [(40_001, 80_001)]
    assert q.chunks <= 2 * 40_000 // 1024 + 2   # joined into ~1-4 KiB chunks
    assert elapsed < 5, elapsed
    q2 = OutOfOrderQueue()
    for i in range(10_000):                    # every other byte: 10,000 runs
        q2.add(2 * i, b"z")
    assert q2.charge > 10_000 * 200            # far more than the 10,000 bytes


# -- a hostile sender against a connection -----------------------------------------------


def _established(link_kw=None, data=b""):
    link = Link(**(link_kw or {}))
    t = Transfer(link, data, b"", a_close=False, b_close=False)
    link.run(lambda: t.b is not None and t.b.state is State.ESTABLISHED, t.app)
    return link, t


def _forge(t, off, payload):
    """A segment from A's address and port to B with A's sequence number for ``off``
    (an offset into A's stream) and a valid ACK, as a hostile host on the path would
    make it."""
    a, b = t.a, t.b
    from erebus.wire.tcp import build_tcp
    seg = build_tcp(A_IP, B_IP, a.local_port, 80, a._snd_seq(off),
                    b._snd_seq(b.snd_nxt), ACK, 0xFFFF, payload,
                    ts=(a._ts_now(0.0), a._ts_recent) if a.ts_ok else None)
    return build_ipv4(A_IP, B_IP, PROTO_TCP, seg)


def _flood(link, t, data, n, *, rng, span=None, size=(200, 1400)):
    """``n`` overlapping segments at random offsets above B's rcv_nxt, carrying the
    bytes A will really send there."""
    b = t.b
    rn = b.rcv_nxt
    span = span or (b._rcv_adv - rn)
    for _ in range(n):
        off = rn + 1 + rng.randrange(span)
        ln = rng.randint(*size)
        link.b.receive(_forge(t, off, data[off:off + ln]), link.now)


def test_forty_thousand_overlapping_segments_stay_within_rcv_buf():
    data = blob(3_000_000, 11)
    link, t = _established({"b_kw": {"rcv_buf": 1 << 20}}, data=b"")
    b = t.b
    rng = random.Random(5)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        for _ in range(40):
            _flood(link, t, data, 1000, rng=rng)
            link.b.output(link.now)            # the ACKs (with SACK blocks) it answers
        elapsed = time.perf_counter() - start
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    print(f"\n40,000 overlapping segments (each up to 1400 bytes) in {elapsed:.2f} s; "
          f"{held} bytes allocated, {b._ooo.payload} bytes of data in {len(b._ooo)} runs, "
          f"{b._ooo.chunks} chunks")
    assert b.rcv_nxt == 0 and b._rbuf_len + b._ooo.charge <= b.rcv_buf
    assert held <= b.rcv_buf + 256 * 1024, held       # what Python really allocated
    assert b._ooo.payload > b.rcv_buf // 2            # it did keep what fits
    assert elapsed < 30, elapsed


def test_after_a_flood_of_overlapping_segments_the_stream_is_byte_exact():
    """Garbage at offsets the sender never reaches (a hostile host cannot do better
    without stalling the connection: any TCP drops an ACK of data it never sent): the
    flood is held within rcv_buf, makes room for the real data, and the stream the
    reader gets is exact, both ways."""
    data = blob(300_000, 15)
    back = blob(200_000, 16)
    link, t = _established({"b_kw": {"rcv_buf": 1 << 20}}, data=b"")
    b = t.b
    rng = random.Random(6)
    garbage = rng.randbytes(2_000_000)
    rn = b.rcv_nxt
    for _ in range(40_000):
        off = rn + 400_000 + rng.randrange(800_000)
        link.b.receive(_forge(t, off, garbage[off - rn:off - rn + rng.randint(200, 1400)]),
                       link.now)
    link.b.output(link.now)
    assert b._ooo.charge <= b.rcv_buf and b._ooo.payload > 400_000
    t.out["a"], t.out["b"] = data, back
    t.close["a"] = t.close["b"] = True
    assert link.run(t.done, t.app, limit=600)
    check(t)


def test_out_of_window_segments_are_not_held():
    link, t = _established({"b_kw": {"rcv_buf": 65536}})
    b = t.b
    right = b._rcv_adv
    dropped = b.dropped
    for k in range(100):
        link.b.receive(_forge(t, right + k * 1000, b"w" * 1000), link.now)
    assert not b._ooo and b.dropped - dropped == 100
    # straddling the right edge: only the part inside is kept
    link.b.receive(_forge(t, right - 10, b"s" * 1000), link.now)
    assert b._ooo.ranges() == [(right - 10, right)]


def test_tiny_segments_with_gaps_are_pruned_to_rcv_buf():
    link, t = _established({"b_kw": {"rcv_buf": 65536}})
    b = t.b
    for k in range(20_000):                   # a byte every other offset
        link.b.receive(_forge(t, 1 + 2 * k, b"q"), link.now)
    assert b._ooo.charge <= b.rcv_buf and b.ooo_pruned > 0
    assert len(b._ooo) < 65536 // 200


def test_sack_blocks_name_the_runs_most_recent_first():
    data = blob(200_000, 12)
    link, t = _established()
    b = t.b
    base = b.rcv_nxt
    for off, n in ((1000, 500), (5000, 500), (3000, 700), (5400, 300), (9000, 10)):
        link.b.receive(_forge(t, base + off, data[base + off:base + off + n]), link.now)
    (out,) = [p for p in link.b.output(link.now)]
    seg = parse_tcp(parse_ipv4(out)[1], ip_b(), ip_a())
    got = [(b._seq_off(left), b._seq_off(right)) for left, right in seg.sack_blocks]
    rel = [(s - base, e - base) for s, e in got]
    # most recent (9000) first, then 5400's run (merged with 5000's), then 3000's
    assert rel == [(9000, 9010), (5000, 5700), (3000, 3700)]
    assert seg.ack == b._rcv_seq(b.rcv_nxt)


def test_in_order_data_evicts_out_of_order_data_it_needs_room_for():
    data = blob(60_000, 13)
    link, t = _established({"b_kw": {"rcv_buf": 65536}})
    b = t.b
    t.b_paused = True                          # B's reader reads nothing
    rng = random.Random(1)
    rn = b.rcv_nxt
    for _ in range(3000):                      # single bytes past what A will send
        off = rn + 60_500 + 2 * rng.randrange(2000)
        link.b.receive(_forge(t, off, b"g"), link.now)
    assert b._ooo.charge > 50_000 and len(b._ooo) > 200
    t.out["a"] = data
    assert link.run(lambda: b.readable == 60_000, t.app, limit=200)
    assert b._rbuf_len + b._ooo.charge <= b.rcv_buf and b.ooo_pruned > 0
    t.b_paused = False
    assert link.run(lambda: len(t.got["b"]) == 60_000, t.app, limit=600)
    assert bytes(t.got["b"]) == data


def test_no_ack_storm_with_a_desynchronised_peer():
    """A peer that sends pure ACKs outside our window gets at most one answer per
    OOW_ACK_INTERVAL (else two desynchronised stacks ping-pong ACKs for ever)."""
    from erebus.netstack.tcp import OOW_ACK_INTERVAL
    from erebus.wire.tcp import build_tcp
    link, t = _established()
    b = t.b
    link.b.output(link.now)
    answers = 0
    for k in range(100):
        now = link.now + k * 0.01                # 100 ACKs in one second
        seg = build_tcp(A_IP, B_IP, t.a.local_port, 80, t.a._snd_seq(-5000),
                        b._snd_seq(b.snd_nxt), ACK, 0xFFFF,
                        ts=(0, 0) if t.a.ts_ok else None)
        link.b.receive(build_ipv4(A_IP, B_IP, PROTO_TCP, seg), now)
        answers += len(link.b.output(now))
    assert answers <= 1 / OOW_ACK_INTERVAL + 1 and b.oow_acks_suppressed >= 97


def test_ack_of_unsent_data_drops_the_segment():
    link, t = _established()
    b = t.b
    from erebus.wire.tcp import build_tcp
    seg = build_tcp(A_IP, B_IP, t.a.local_port, 80, t.a._snd_seq(0),
                    b._snd_seq(b.snd_max + 5000), ACK, 0xFFFF, b"hello",
                    ts=(0, 0) if t.a.ts_ok else None)
    link.b.receive(build_ipv4(A_IP, B_IP, PROTO_TCP, seg), link.now)
    assert b.readable == 0 and b.dropped == 1


def test_clean_transfer_unchanged_by_the_bounds():
    link = Link(loss=0.02, reorder=0.2, seed=9, b_kw={"rcv_buf": 1 << 20})
    t = Transfer(link, blob(2_000_000, 14), b"")
    assert link.run(t.done, t.app, limit=600)
    check(t)
    assert t.b.ooo_pruned == 0              # an honest sender never loses what it sent


@pytest.mark.parametrize("rcv_buf", [1 << 16, 1 << 20, 4 << 20])
@pytest.mark.parametrize("mss", [536, 1024, 1360, 1448])
def test_a_full_window_held_out_of_order_is_never_pruned(rcv_buf, mss):
    """The first segment of a full window is lost and the sender fills the rest of
    the window it was offered: all of it is kept (pruning it would renege on SACKed
    data and cost the sender a retransmission timeout)."""
    link, t = _established({"b_kw": {"rcv_buf": rcv_buf}})
    b = t.b
    rn, right = b.rcv_nxt, b._rcv_adv
    off = rn + mss                              # the segment at rn is lost
    while off + mss <= right:
        link.b.receive(_forge(t, off, b"d" * mss), link.now)
        off += mss
    assert b.ooo_pruned == 0 and b._ooo.payload == off - rn - mss
    assert b._rbuf_len + b._ooo.charge <= b.rcv_buf


def ip_a():
    from erebus.wire.ipv4 import ip_from_str
    return ip_from_str(A_IP)


def ip_b():
    from erebus.wire.ipv4 import ip_from_str
    return ip_from_str(B_IP)
