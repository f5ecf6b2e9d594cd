"""Packet ids and replay windows: ESP's anti-replay window and OpenVPN's packet ids.

:class:`ReplayWindow` is the sliding window over one sequence of ids (ESP, OpenVPN's
TLS-mode data channel).  :class:`PacketIdWindow` is OpenVPN's long form ``(id, time)``
(packet_id.c, as static-key mode and tls-auth/tls-crypt use it): one
:class:`ReplayWindow` per sender time, and the time window.  :func:`next_packet_id`
is its send rule.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

__all__ = ["ReplayWindow", "PacketIdWindow", "next_packet_id", "MAX_BACKTRACK",
           "PACKET_ID_MAX"]

MAX_BACKTRACK = 65536                # packet_id.h MAX_SEQ_BACKTRACK
PACKET_ID_MAX = 0xFFFFFFFF


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

    def reset(self) -> None:
        """Forget every id (a new sequence starts)."""
        self.top = self.mask = 0


class PacketIdWindow:
    """OpenVPN's receive side for long-form packet ids ``(id, time)`` (packet_id.c
    ``packet_id_test`` / ``packet_id_add`` / ``packet_id_reap``, backtrack mode):

    - id 0 is never valid;
    - a time newer than the sender's current one starts a new sequence (a fresh
      window); an older one is refused;
    - within one time, a :class:`ReplayWindow` of ``window`` ids (``replay-window n``);
    - ``time_backtrack`` seconds (``replay-window n t``; 0 turns it off): an id below
      one that arrived more than that long before ``now`` is too late.  packet_id.c
      marks such ids in ``packet_id_reap``, at most every 5 s; here the rule holds at
      every packet.

    ``check`` runs before, ``update`` only after a packet authenticated, so a forgery
    cannot move the window.
    """

    __slots__ = ("window", "time_backtrack", "time", "_win", "_expired", "_arrivals")

    def __init__(self, window: int = 64, time_backtrack: float = 15.0):
        if not 1 <= window <= MAX_BACKTRACK:
            raise ValueError(f"replay window must be 1..{MAX_BACKTRACK}")
        self.window = window
        self.time_backtrack = time_backtrack
        self.time: int | None = None     # the sender's time we follow (None: nothing yet)
        self._win = ReplayWindow(window)
        self._expired = 0                # every id up to this one is too late
        # (id, local arrival) of ids that may still expire others: the ids and the
        # times increase, so at most `window` of them are inside the window
        self._arrivals: deque[tuple[int, float]] = deque()

    @property
    def id(self) -> int:
        """The highest id seen with the current time."""
        return self._win.top

    def _too_late(self, pid: int, now: float) -> bool:
        floor = self._expired
        arrivals = self._arrivals
        if arrivals and arrivals[0][1] + self.time_backtrack < now:
            for seen, at in arrivals:
                if at + self.time_backtrack >= now:
                    break
                floor = seen
        return pid <= floor

    def check(self, pid: int, ptime: int, now: float | None = None) -> str | None:
        """None if ``(pid, ptime)`` may be accepted at ``now``, else why not (without
        ``now`` the time window is not applied)."""
        if pid <= 0:
            return "packet id 0"
        if self.time is None or ptime > self.time:
            return None
        if ptime < self.time:
            return f"packet time {ptime} older than {self.time}"
        if not self._win.check(pid):
            return f"packet id {pid} replayed or outside the window (top {self._win.top})"
        if self.time_backtrack and now is not None and self._too_late(pid, now):
            return f"packet id {pid} arrived too late"
        return None

    def test(self, pid: int, ptime: int, now: float | None = None) -> bool:
        return self.check(pid, ptime, now) is None

    def update(self, pid: int, ptime: int, now: float) -> None:
        """Record an accepted (authenticated) packet id."""
        arrivals = self._arrivals
        if self.time is None or ptime > self.time:
            self.time = ptime
            self._win.reset()
            self._expired = 0
            arrivals.clear()
        win = self._win
        win.update(pid)
        if not self.time_backtrack:
            return
        while arrivals and arrivals[0][1] + self.time_backtrack < now:
            self._expired = arrivals.popleft()[0]
        bottom = win.top - self.window
        while arrivals and arrivals[0][0] <= bottom:
            arrivals.popleft()
        if pid > (arrivals[-1][0] if arrivals else self._expired):
            arrivals.append((pid, now))

    add = update


def next_packet_id(last_id: int, send_time: int | None,
                   clock: Callable[[], float]) -> tuple[int, int] | None:
    """packet_id.c ``packet_id_send_update`` for the long form: the ``(id, time)`` to
    send after ``last_id`` under ``send_time`` (None: nothing sent yet, the time is
    the clock's now).  Ids count from 1 under a fixed time; after the last id they
    start again from 1 under a new time if the clock moved on since, else None
    (OpenVPN drops the packet: "packet ID roll over")."""
    if send_time is None:
        send_time = _seconds(clock())
    if last_id >= PACKET_ID_MAX:
        t = _seconds(clock())
        if t <= send_time:
            return None
        send_time, last_id = t, 0
    return last_id + 1, send_time


def _seconds(t: float) -> int:
    return min(max(int(t), 0), PACKET_ID_MAX)
