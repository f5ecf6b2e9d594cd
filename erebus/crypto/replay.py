"""Sliding replay window over packet ids (OpenVPN's `replay-window`, ESP's anti-replay)."""

from __future__ import annotations


class ReplayWindow:
    """Accepts each packet id once, within `size` ids below the highest seen.

    ``check`` is cheap and run before authentication; ``update`` only after the
    packet authenticated, so a forged packet cannot move the window.
    """

    __slots__ = ("size", "top", "mask", "_full")

    def __init__(self, size: int = 64):
        if size < 1:
            raise ValueError("replay window size must be >= 1")
        self.size = size
        self.top = 0     # highest id accepted; 0 means none yet (ids start at 1)
        self.mask = 0    # bit i set: id (top - i) seen
        self._full = (1 << size) - 1

    def check(self, pid: int) -> bool:
        if pid <= 0:
            return False
        if pid > self.top:
            return True
        diff = self.top - pid
        if diff >= self.size:
            return False
        return not (self.mask >> diff) & 1

    def update(self, pid: int) -> None:
        if pid > self.top:
            shift = pid - self.top
            self.mask = ((self.mask << shift) | 1) & self._full if shift < self.size else 1
            self.top = pid
        else:
            self.mask |= 1 << (self.top - pid)
