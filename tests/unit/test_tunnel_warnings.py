"""Every tunnel carries its profile's warnings (probe --json's "warnings"), whatever
the kind of VPN."""

from __future__ import annotations

from pathlib import Path

import pytest

from erebus.families import open_tunnel

PROFILES = Path(__file__).resolve().parents[1] / "profiles"


@pytest.mark.parametrize("name,warned", [
    ("esp.toml", "RFC 4106 section 8.1 forbids"),    # static AEAD keys
    ("swanctl.conf", None),
    ("cloud-aws.ovpn", None),
])
def test_each_tunnel_has_its_profiles_warnings(name, warned):
    tunnel = open_tunnel(str(PROFILES / name))      # nothing is sent
    assert tunnel.warnings is tunnel.profile.warnings
    assert any(warned in w for w in tunnel.warnings) if warned else tunnel.warnings == []
