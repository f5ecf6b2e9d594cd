"""Rate-limited log lines for what a peer (or anyone on the path) can make happen at
will: dropped packets.  One line per kind per ``interval`` seconds; what falls in
between is counted and told with the next line of that kind, "(suppressed K similar)",
or by :meth:`RateLimitedLog.flush` when the tunnel closes.  OpenVPN's ``--mute`` has
the same purpose; the drops themselves are always counted in the session's counters.

The clock is a parameter, so the tests are exact.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

__all__ = ["RateLimitedLog", "DropReporter", "counters_summary"]


class RateLimitedLog:
    """At most one line per kind every ``interval`` seconds."""

    MAX_KINDS = 64            # kinds are names from code, never from the peer: a fixed few

    def __init__(self, logger: logging.Logger, *, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval = interval
        self.clock = clock
        # kind -> [time of the last line, suppressed since, level, message of the last]
        self._kinds: dict[str, list] = {}

    def log(self, level: int, kind: str, message: str, count: int = 1) -> bool:
        """``count`` occurrences of ``kind`` now; True if a line was written."""
        if count <= 0 or not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        entry = self._kinds.get(kind)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += count
            entry[2], entry[3] = level, message
            return False
        suppressed = entry[1] if entry is not None else 0
        if entry is None and len(self._kinds) >= self.MAX_KINDS:
            evicted = self._kinds.pop(next(iter(self._kinds)))
            if evicted[1]:                     # told now, or never: it leaves the table
                self._emit(evicted[2], evicted[3], evicted[1])
        self._kinds[kind] = [now, 0, level, message]
        self._emit(level, message, suppressed + count - 1)
        return True

    def flush(self) -> None:
        """Tell what is still suppressed (once, when the tunnel closes)."""
        for entry in self._kinds.values():
            if entry[1]:
                self._emit(entry[2], entry[3], entry[1])
                entry[1] = 0

    def _emit(self, level: int, message: str, suppressed: int) -> None:
        if suppressed:
            message = f"{message} (suppressed {suppressed} similar)"
        self.logger.log(level, "%s", message)


class DropReporter:
    """Watches a session's drop counters and logs their increases, rate-limited.

    ``kinds`` maps a counter's name to ``(level, text)``, the text saying what one
    dropped packet was.  :meth:`check` is cheap (one read per counter) and is called
    once per batch of datagrams, not per packet.
    """

    def __init__(self, logger: logging.Logger, kinds: dict[str, tuple[int, str]], *,
                 prefix: str = "", interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.kinds = kinds
        self.prefix = prefix
        self.limit = RateLimitedLog(logger, interval=interval, clock=clock)
        self._seen: dict[str, int] = {}
        self._counters = None

    def check(self, counters) -> None:
        if counters is None:
            return
        if counters is not self._counters:        # a new session: its counters start at 0
            self._counters = counters
            self._seen = {name: 0 for name in self.kinds}
        seen = self._seen
        for name, (level, text) in self.kinds.items():
            value = getattr(counters, name, 0)
            if value != seen[name]:
                count = value - seen[name]
                seen[name] = value
                self.limit.log(level, name, f"{self.prefix}dropped {text}", count)

    def flush(self, counters=None) -> None:
        self.check(counters)
        self.limit.flush()


def counters_summary(counters, extra: dict[str, int] | None = None) -> str:
    """``name=value`` for every counter that is not zero (all of them if all are);
    ``extra`` first (the shell's own counts), unless the session counts the same."""
    values = dict(extra or {})
    if counters is not None:
        if hasattr(counters, "as_dict"):
            values.update(counters.as_dict())
        else:
            values.update((f.name, getattr(counters, f.name))
                          for f in dataclasses.fields(counters))
    if not values:
        return "none"
    items = [(k, v) for k, v in values.items() if isinstance(v, int)]
    shown = [(k, v) for k, v in items if v] or items
    return " ".join(f"{k}={v}" for k, v in shown)
