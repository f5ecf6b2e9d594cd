"""What every core's counters dataclass shares (OpenVPN TLS and static-key sessions,
ESP): one ``as_dict`` for probe --json's "counters" and the counters line at close."""

from __future__ import annotations

import dataclasses


class CountersDict:
    """Mixin for a dataclass of counters: :meth:`as_dict` gives every field, in order."""

    __slots__ = ()

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def traffic_of(session) -> tuple[int, int, int, int]:
    """A core's inner traffic: (bytes in, bytes out, packets in, packets out), from its
    own ``traffic()`` (OpenVPN TLS: the sum over its data keys) or its counters'
    ``bytes_in`` ... fields (static key, ESP); zeros for a core that counts neither."""
    if session is None:
        return (0, 0, 0, 0)
    own = getattr(session, "traffic", None)
    if own is not None:
        return tuple(own())
    c = getattr(session, "counters", None)
    return tuple(getattr(c, name, 0) for name in ("bytes_in", "bytes_out", "packets_in",
                                                   "packets_out"))
