"""erebus.netstack.reassembly alone: segments (as offsets) back into one byte stream."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from erebus.netstack.reassembly import RECENT_SEGMENTS, StreamReassembler

STREAM = random.Random(5).randbytes(100_000)


def test_in_order_data_moves_rcv_nxt_and_is_read_in_order():
    r = StreamReassembler(65536)
    assert r.receive(0, STREAM[:100], 0) == 100
    assert r.receive(100, STREAM[100:300], 0) == 200
    assert (r.rcv_nxt, r.buffered, r.has_unread) == (300, 300, True)
    assert b"".join(r.read(120)) == STREAM[:120]
    assert b"".join(r.read()) == STREAM[120:300]
    assert (r.buffered, r.has_unread) == (0, False)


def test_a_hole_filled_releases_what_was_held_and_old_bytes_are_ignored():
    r = StreamReassembler(65536)
    assert r.receive(500, STREAM[500:900], 0) == 0
    assert r.receive(200, STREAM[200:400], 0) == 0
    assert r.ooo.ranges() == [(200, 400), (500, 900)]
    assert r.receive(0, STREAM[:250], 0) == 400          # 0..250, then the run to 400
    assert r.receive(0, STREAM[:300], 0) == 0            # all old: a duplicate
    assert r.receive(350, STREAM[350:600], 0) == 500     # overlaps both sides: to 900
    assert r.rcv_nxt == 900 and not r.ooo
    assert b"".join(r.read()) == STREAM[:900]


def test_only_what_the_window_allowed_is_kept():
    r = StreamReassembler(65536)
    assert r.receive(0, STREAM[:5000], 1000) == 1000      # the advertised right edge
    assert r.receive(2000, STREAM[2000:3000], 1500) == 0  # all beyond it: dropped
    assert r.receive(1000, STREAM[1000:3000], 1500) == 500 and not r.ooo
    # with no right edge beyond RCV.NXT, what fits now
    room = r.window()
    assert r.receive(1500, STREAM[1500:1500 + room + 500], 1500) == room


def test_the_window_leaves_room_for_a_full_window_held_out_of_order():
    r = StreamReassembler(32768)
    window = r.window()
    assert 0 < window < 32768
    for off in range(1, window, 2 * 536):            # every other segment: the worst case
        r.receive(off, STREAM[off:off + 536], window)
    assert r.ooo.charge <= r.rcv_buf and r.pruned == 0


def test_sack_ranges_put_the_most_recent_segment_first():
    r = StreamReassembler(65536)
    for off in (1000, 3000, 5000, 7000, 9000):
        r.receive(off, STREAM[off:off + 100], 0)
    r.receive(3100, STREAM[3100:3200], 0)                # extends the run at 3000
    assert r.sack_ranges(3) == [(3000, 3200), (9000, 9100), (7000, 7100)]
    assert r.sack_ranges(4)[3] == (5000, 5100)
    assert StreamReassembler(100).sack_ranges(3) == []


def test_only_the_last_segments_steer_the_order_of_sack_blocks():
    r = StreamReassembler(1 << 20)
    for i in range(RECENT_SEGMENTS + 4):
        r.receive(1000 + 200 * i, STREAM[:100], 0)
    assert len(r._recent) == RECENT_SEGMENTS
    assert r.sack_ranges(1) == [(1000 + 200 * (RECENT_SEGMENTS + 3),
                                 1000 + 200 * (RECENT_SEGMENTS + 3) + 100)]


@settings(max_examples=200, deadline=None)
@given(segs=st.lists(st.tuples(st.integers(0, 19_000), st.integers(1, 1500)), max_size=60),
       rcv_buf=st.sampled_from([4096, 16384, 1 << 20]),
       reads=st.lists(st.integers(-1, 3000), max_size=60))
def test_any_segments_give_a_prefix_of_the_stream_within_rcv_buf(segs, rcv_buf, reads):
    r = StreamReassembler(rcv_buf)
    got = bytearray()
    moved = 0
    for i, (off, n) in enumerate(segs + [(0, 20_000)]):
        moved += r.receive(off, STREAM[off:off + n], 0)
        assert r.buffered + r.ooo.charge <= rcv_buf or not r.ooo
        assert all(s > r.rcv_nxt for s, _ in r.ooo.ranges())
        r.ooo.check()
        for chunk in r.read(reads[i] if i < len(reads) else -1):
            got += chunk
    got += b"".join(r.read())
    assert moved == r.rcv_nxt == len(got)
    assert bytes(got) == STREAM[:len(got)]
