"""What erebus takes from a stock OpenVPN 2.6 server's push, and what it refuses.

"cbc-auth-none": AES-256-CBC with ``auth none`` on both ends (2.6 allows it, with a
warning): erebus used to raise TypeError on its first data packet; now it pings through.
"push-tun-mtu-500": a server whose admin pushes ``tun-mtu 500``: erebus refuses the
PUSH_REPLY at once, in one line naming the option (stage "push"), not after a timeout.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.interop.util import erebus
from tests.lab import MODES, WEB_ADDR, Mode

pytestmark = pytest.mark.interop

# indices far from the lab's own modes (0..11): each one is a port, a pool and a tun
MODES.setdefault("cbc-auth-none", Mode(20, data_ciphers="AES-256-CBC",
                                       server_lines=("auth none",),
                                       client_lines=("auth none",)))
MODES.setdefault("push-tun-mtu-500", Mode(21, server_lines=('push "tun-mtu 500"',)))


def probe(lab, profile, *extra):
    cp = erebus(lab, "probe", profile, "--json", *extra, timeout=90)
    try:
        return cp, json.loads(cp.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"probe printed no JSON (exit {cp.returncode}):\n{cp.stdout}\n{cp.stderr}"
                    f"\n{lab.logs_tail()}", pytrace=False)


def test_cbc_with_auth_none_carries_pings(lab, ovpn_server):
    server = ovpn_server("cbc-auth-none")
    cp, report = probe(lab, server.profile, "--ping", WEB_ADDR)
    assert cp.returncode == 0 and report["ok"], f"{cp.stdout}\n{cp.stderr}\n{server.describe()}"
    assert report["cipher"] == "AES-256-CBC" and report["ping_ms"] is not None
    assert "auth none: no authentication" in cp.stderr            # warned, as 2.6 does


def test_a_pushed_tun_mtu_below_576_is_refused_at_once(lab, ovpn_server):
    server = ovpn_server("push-tun-mtu-500")
    started = time.monotonic()
    cp, report = probe(lab, server.profile)
    assert cp.returncode == 1 and not report["ok"], f"{cp.stdout}\n{server.describe()}"
    assert report["stage"] == "push", report
    assert "the server's PUSH_REPLY is refused: tun-mtu: 500 is out of range (576..65535)" \
        in report["error"] and "\n" not in report["error"], report
    assert time.monotonic() - started < 30                         # not a push timeout
