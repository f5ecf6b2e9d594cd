"""erebus.netstack.sack alone: the sender's SACK scoreboard, in offsets."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from erebus.netstack.sack import SackScoreboard


def test_blocks_are_merged_and_clipped_to_what_was_sent():
    b = SackScoreboard()
    assert not b
    b.add([(3000, 4000), (1000, 2000), (1900, 2500)], 500, 10_000)
    assert b.ranges() == [(1000, 2500), (3000, 4000)]
    b.add([(4000, 4500), (200, 800)], 500, 10_000)       # touching; below snd_una
    assert b.ranges() == [(500, 800), (1000, 2500), (3000, 4500)]
    assert b.sacked_bytes() == 300 + 1500 + 1500


def test_blocks_of_what_was_never_sent_or_empty_ones_are_ignored():
    b = SackScoreboard()
    b.add([(9000, 11_000), (5000, 5000), (6000, 5000), (100, 400)], 500, 10_000)
    assert not b and b.ranges() == []


def test_advancing_snd_una_forgets_what_is_acknowledged():
    b = SackScoreboard()
    b.add([(1000, 2000), (3000, 4000)], 0, 10_000)
    b.advance(1500)
    assert b.ranges() == [(1500, 2000), (3000, 4000)]
    b.advance(4000)
    assert not b
    b.add([(5000, 6000)], 4000, 10_000)
    b.clear()
    assert not b


def test_holes_come_in_order_at_most_one_mss_long():
    b = SackScoreboard()
    assert b.next_hole(0, 1000, 2500) == (0, 1000)       # nothing SACKed: the next segment
    assert b.next_hole(2000, 1000, 2500) == (2000, 2500)
    assert b.next_hole(2500, 1000, 2500) is None
    b.add([(1500, 2000), (3000, 3500)], 0, 5000)
    assert b.next_hole(0, 1000, 5000) == (0, 1000)
    assert b.next_hole(1000, 1000, 5000) == (1000, 1500)
    assert b.next_hole(1500, 1000, 5000) == (2000, 3000)
    assert b.next_hole(3200, 1000, 5000) is None          # nothing SACKed above: not a hole
    # what RFC 6675's IsLost counts: the SACKed bytes above a hole's end
    assert b.sacked_above(1000) == 1000 and b.sacked_above(1800) == 700
    assert b.sacked_above(3500) == 0


@settings(max_examples=300, deadline=None)
@given(acks=st.lists(st.tuples(st.integers(0, 300),
                               st.lists(st.tuples(st.integers(0, 1200), st.integers(0, 1200)),
                                        max_size=4)), max_size=20),
       snd_max=st.integers(1, 1000))
def test_the_scoreboard_is_the_set_of_sacked_bytes_above_snd_una(acks, snd_max):
    b = SackScoreboard()
    held: set[int] = set()
    una = 0
    for advance, blocks in acks:
        una = min(snd_max, una + advance)
        b.advance(una)
        held = {x for x in held if x >= una}
        b.add(blocks, una, snd_max)
        for s, e in blocks:
            if s < e and una < e <= snd_max:
                held |= set(range(max(s, una), e))
        ranges = b.ranges()
        assert all(s < e for s, e in ranges)
        assert all(e1 < s2 for (_, e1), (s2, _) in zip(ranges, ranges[1:]))   # disjoint
        assert {x for s, e in ranges for x in range(s, e)} == held
        assert b.sacked_bytes() == len(held)
        at = una + advance
        assert b.sacked_above(at) == len({x for x in held if x >= at})
        hole = b.next_hole(una, 50, snd_max)
        if not held:                               # no SACK: the segment at snd_una
            assert hole == ((una, min(una + 50, snd_max)) if una < snd_max else None)
        elif hole is not None:
            s, e = hole
            assert una <= s < e <= min(s + 50, snd_max) and not held & set(range(s, e))
            assert max(held) > s                   # a hole lies below a SACKed byte
            assert held >= set(range(una, s))      # and it is the first one
        else:
            assert held >= set(range(una, max(held)))
