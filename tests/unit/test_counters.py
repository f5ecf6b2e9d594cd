"""probe --json's "counters": every counters dataclass gives all its fields, in order,
through the one shared as_dict."""

from __future__ import annotations

import dataclasses
import json

import pytest

from erebus.ipsec.esp import EspCounters
from erebus.openvpn.session import Counters
from erebus.openvpn.static import StaticCounters


@pytest.mark.parametrize("kind", [Counters, StaticCounters, EspCounters])
def test_as_dict_is_every_field_in_order(kind):
    counters = kind()
    names = [f.name for f in dataclasses.fields(kind)]
    for i, name in enumerate(names):
        setattr(counters, name, i + 1)
    got = counters.as_dict()
    assert list(got) == names and list(got.values()) == list(range(1, len(names) + 1))
    assert json.loads(json.dumps(got)) == got
    assert not hasattr(counters, "__dict__")          # still slotted
