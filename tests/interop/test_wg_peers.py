"""Several WireGuard peers in one wg-quick file, against two stock wireguard-go servers
(tests/wg_lab.py with its second site): erebus routes by AllowedIPs, so site 1's web
host and site 2's are reached through their own peer, byte-exact, both servers see
our handshake; a site that is down when erebus starts leaves the other working and is
brought in, without a restart, once it answers.  test_wg_lab.py shows the stock client
with both peers first.
"""

from __future__ import annotations

import json

import pytest

from tests.lab import stop_process, tail
from tests.interop.test_wg_erebus import _sha_through, _wait_log
from tests.wg_lab import WgLab

pytestmark = pytest.mark.interop


def _probe(lab: WgLab, *args) -> dict:
    cp = lab.run_client([lab.python, "-m", "erebus", "probe", str(lab.profile2_path),
                         "--json", *args], timeout=120)
    try:
        return json.loads(cp.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"erebus probe printed no JSON:\n{cp.stdout}\n{cp.stderr}")


def test_probe_handshakes_with_both_peers(wg_lab2: WgLab):
    lab = wg_lab2
    before1, before2 = lab.latest_handshake(), lab.latest_handshake(site=2)
    report = _probe(lab, "--ping", lab.web_addr)
    assert report["ok"], report
    peers = {p["peer"]: p for p in report["peers"]}
    assert set(peers) == {lab.server_keys.public, lab.site2_keys.public}
    assert all(p["up"] and p["latest_handshake"] for p in peers.values()), report
    assert report["ping_ms"] is not None, report
    assert lab.latest_handshake() > before1 and lab.latest_handshake(site=2) > before2
    report2 = _probe(lab, "--ping", lab.site2_addr)
    assert report2["ok"] and report2["ping_ms"] is not None, report2


def test_up_reaches_each_site_through_its_own_peer(wg_lab2: WgLab):
    lab = wg_lab2
    log = lab.dir / "up-peers.log"
    proc = lab.spawn_client([lab.python, "-m", "erebus", "up", str(lab.profile2_path),
                              "-L", f"18120:{lab.web_addr}:80",
                              "-L", f"18121:{lab.site2_addr}:80",
                              "--socks", "11120"], output=log)
    try:
        _wait_log(proc, log, "ready (")
        sent1, sent2 = lab.transfer()[1], lab.transfer(site=2)[1]
        assert _sha_through(lab, "http://127.0.0.1:18120/blob.bin") == lab.blob_sha256
        assert _sha_through(lab, "http://127.0.0.1:18121/blob.bin") == \
            lab.site2_blob_sha256
        socks = ("--socks5-hostname", "127.0.0.1:11120")
        assert _sha_through(lab, lab.site2_blob_url, *socks) == lab.site2_blob_sha256
        assert _sha_through(lab, lab.site2_blob_url6, *socks) == lab.site2_blob_sha256
        assert _sha_through(lab, lab.blob_url6, *socks) == lab.blob_sha256
        # each server carried its own site's blobs (of different sizes), not the other's
        grew1 = lab.transfer()[1] - sent1
        grew2 = lab.transfer(site=2)[1] - sent2
        assert 2 * lab.blob_size < grew1 < 2 * lab.blob_size + lab.site2_blob_size
        assert 3 * lab.site2_blob_size < grew2
        assert proc.poll() is None, tail(log)
    finally:
        stop_process(proc)


def test_a_site_down_at_start_is_brought_in_once_it_answers(wg_lab2: WgLab):
    lab = wg_lab2
    lab.stop_site2()
    log = lab.dir / "up-site2-late.log"
    proc = lab.spawn_client([lab.python, "-m", "erebus", "up", str(lab.profile2_path),
                              "--timeout", "5", "-L", f"18130:{lab.web_addr}:80",
                              "-L", f"18131:{lab.site2_addr}:80"], output=log)
    try:
        _wait_log(proc, log, "ready (")
        text = log.read_text()
        assert f"peer {lab.site2_keys.public} did not come up: " in text, tail(log)
        assert "trying it again in the background (the other peers are up)" in text
        assert _sha_through(lab, "http://127.0.0.1:18130/blob.bin") == lab.blob_sha256
        lab.start_site2()
        lab.wait_handshake(site=2, timeout=60)
        assert _sha_through(lab, "http://127.0.0.1:18131/blob.bin", timeout=60) == \
            lab.site2_blob_sha256
        assert proc.poll() is None, tail(log)
        assert "reconnecting (listeners stay up)" not in log.read_text()   # never down
    finally:
        stop_process(proc)
        lab.start_site2()


def test_probe_names_the_peer_that_is_down(wg_lab2: WgLab):
    lab = wg_lab2
    lab.stop_site2()
    try:
        report = _probe(lab, "--timeout", "5", "--ping", lab.web_addr)
    finally:
        lab.start_site2()
    assert not report["ok"] and report["stage"] == "peer", report
    assert f"peer {lab.site2_keys.public} (198.18.124.1:51820) is down: " in \
        report["error"], report
    assert "no handshake response from peer" in report["error"], report
    assert report["ping_ms"] is not None, report           # site 1 still answered
