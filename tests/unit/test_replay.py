"""The sliding replay window (OpenVPN's --replay-window, ESP anti-replay)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from erebus.crypto.replay import ReplayWindow


def accept(win: ReplayWindow, pid: int) -> bool:
    """What a receiver does: check, then (after authentication) update."""
    if not win.check(pid):
        return False
    win.update(pid)
    return True


def test_each_id_accepted_once():
    win = ReplayWindow(64)
    for pid in range(1, 300):
        assert accept(win, pid)
        assert not accept(win, pid)


def test_zero_is_never_valid():
    win = ReplayWindow()
    assert not win.check(0) and not win.check(-1)
    assert accept(win, 1)
    assert not win.check(0)


def test_out_of_order_inside_window_accepted():
    win = ReplayWindow(64)
    assert accept(win, 100)
    for pid in (99, 50, 37, 98, 60):           # 37 = 100 - 63, the oldest in the window
        assert accept(win, pid)
    for pid in (99, 50, 37, 98, 60, 100):
        assert not accept(win, pid)


def test_older_than_window_rejected():
    win = ReplayWindow(64)
    assert accept(win, 100)
    assert not win.check(36)                   # 100 - 64: just outside
    assert not win.check(1)
    assert win.check(37)


def test_big_jump_forgets_everything_old():
    win = ReplayWindow(64)
    for pid in range(1, 10):
        accept(win, pid)
    assert accept(win, 10_000)
    assert not win.check(9) and not win.check(10_000 - 64)
    assert accept(win, 10_000 - 63)
    assert accept(win, 9_999)


def test_check_alone_does_not_move_the_window():
    # check() runs before authentication: a forged packet must not change anything.
    win = ReplayWindow(64)
    accept(win, 5)
    assert win.check(1_000_000)
    assert accept(win, 4) and accept(win, 6)


def test_shift_exactly_window_size():
    win = ReplayWindow(8)
    accept(win, 1)
    accept(win, 9)                             # shift of 8 == size: old state gone
    assert not win.check(1)
    assert accept(win, 2) and not accept(win, 9)


@pytest.mark.parametrize("size", [0, -1])
def test_bad_size(size):
    with pytest.raises(ValueError):
        ReplayWindow(size)


def reference_accept(seen: set[int], top: int, size: int, pid: int) -> bool:
    """Accept pid iff positive, never seen, and not `size` or more below the highest."""
    return pid > 0 and pid not in seen and (pid > top or top - pid < size)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 70),
       pids=st.lists(st.one_of(st.integers(0, 200), st.integers(0, 2**32 - 1)), max_size=120))
def test_matches_set_based_reference(size, pids):
    win = ReplayWindow(size)
    seen: set[int] = set()
    top = 0
    for pid in pids:
        expected = reference_accept(seen, top, size, pid)
        assert win.check(pid) == expected, (pid, top)
        if expected:
            win.update(pid)
            seen.add(pid)
            top = max(top, pid)


class ReplayMachine(RuleBasedStateMachine):
    """Interleaves checks, accepted packets and forged (checked, never updated) ones."""

    @initialize(size=st.sampled_from([1, 2, 8, 63, 64, 65]))
    def setup(self, size):
        self.size = size
        self.win = ReplayWindow(size)
        self.seen: set[int] = set()
        self.top = 0

    def _near(self, offset: int) -> int:
        return max(0, self.top + offset)

    @rule(offset=st.integers(-80, 80))
    def receive_authentic(self, offset):
        pid = self._near(offset)
        expected = reference_accept(self.seen, self.top, self.size, pid)
        assert accept(self.win, pid) == expected
        if expected:
            self.seen.add(pid)
            self.top = max(self.top, pid)

    @rule(offset=st.integers(-80, 10_000))
    def receive_forged(self, offset):
        pid = self._near(offset)
        assert self.win.check(pid) == reference_accept(self.seen, self.top, self.size, pid)

    @invariant()
    def top_is_highest_accepted(self):
        if hasattr(self, "win"):
            assert self.win.top == self.top


ReplayMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60,
                                           deadline=None)
TestReplayMachine = ReplayMachine.TestCase
