"""``erebus check`` never touches the network: every test profile is checked inside a
network namespace that has nothing but loopback, under an audit hook that fails on any
name lookup or socket, and gives the verdict it gives outside."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.ci import require

from erebus.check import check

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "tests" / "profiles"
NAMES = sorted(p.name for p in PROFILES.iterdir()
               if p.suffix in (".ovpn", ".toml") or p.name == "swanctl.conf")

# Runs erebus check with an audit hook that refuses every lookup and socket.
GUARD = r"""
import sys
def guard(event, args):
    if event.startswith("socket.") or event in ("getaddrinfo", "gethostbyname"):
        sys.stderr.write(f"NETWORK: {event} {args!r}\n")
        sys.stderr.flush()
        import os
        os._exit(99)
sys.addaudithook(guard)
from erebus.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def netns():
    require([] if os.geteuid() == 0 and shutil.which("ip") else
            ["needs root and iproute2 to make a network namespace"], "network namespace")
    name = f"erebus-check-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        links = subprocess.run(["ip", "netns", "exec", name, "ip", "-j", "link", "show"],
                               check=True, capture_output=True, text=True).stdout
        assert [link["ifname"] for link in json.loads(links)] == ["lo"]
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                      text=True).stdout


def _lo_packets(ns: str) -> tuple[int, int]:
    out = subprocess.run(["ip", "netns", "exec", ns, "ip", "-s", "-j", "link", "show", "lo"],
                         check=True, capture_output=True, text=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["rx"]["packets"], stats["tx"]["packets"]


@pytest.mark.parametrize("name", NAMES)
def test_check_in_an_empty_network_namespace(netns, name):
    path = PROFILES / name
    want_code, want = check(str(path))
    before = _lo_packets(netns)
    cp = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", GUARD, "check",
                         str(path), "--json"], cwd=ROOT, capture_output=True, text=True,
                        timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "NETWORK:" not in cp.stderr, cp.stderr
    assert cp.returncode == want_code, (cp.stdout, cp.stderr)
    got = json.loads(cp.stdout)
    assert got["ok"] == want["ok"]
    assert [p["text"] for p in got["problems"]] == [p["text"] for p in want["problems"]]
    assert _lo_packets(netns) == before == (0, 0)


def test_the_guard_catches_a_command_that_uses_the_network(netns):
    cp = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", GUARD, "probe",
                         str(PROFILES / "pfsense-export.ovpn"), "--timeout", "2"],
                        cwd=ROOT, capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cp.returncode == 99 and "NETWORK:" in cp.stderr, (cp.stdout, cp.stderr)
