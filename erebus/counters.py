"""What every core's counters dataclass shares (OpenVPN TLS and static-key sessions,
ESP): one ``as_dict`` for probe --json's "counters" and the counters line at close."""

from __future__ import annotations

import dataclasses


class CountersDict:
    """Mixin for a dataclass of counters: :meth:`as_dict` gives every field, in order."""

    __slots__ = ()

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
