"""The WireGuard lab itself works: a STOCK wireguard-go client reaches the web host
through the stock wireguard-go server.

This proves the keys, the server's peer, TUN devices in namespaces, forwarding and
routing and the web host, so that a failure of erebus's WireGuard client against
:class:`tests.wg_lab.WgLab` can be blamed on erebus and not on the lab.  It also holds
the lab's helpers (restart, handshake and transfer counters, replacing the client's key)
to what a later test will rely on, and checks the profile the lab writes for erebus.

The second site (``wg_lab2``: a second wireguard-go peer of the same client, routed
by AllowedIPs) is proved the same way with the stock client configured with both
peers, so that erebus's several-peer tests stand on a lab known to work.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time

import pytest

from tests.ci import require
from tests.wg_lab import KeyPair, WgLab, missing_prerequisites

pytestmark = pytest.mark.interop


@pytest.fixture
def stock_client(wg_lab: WgLab):
    """The stock client, stopped after the test (and the server's peer restored)."""
    yield wg_lab.start_stock_client()
    wg_lab.stop_stock_client()


def _curl(lab: WgLab, url: str, *, timeout: float = 30) -> subprocess.CompletedProcess:
    return lab.run_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", str(timeout), url],
                      text=False, timeout=timeout + 30)


def _fetch_blob(lab: WgLab, url: str, *, site: int = 1, timeout: float = 30) -> None:
    """``url`` byte-exact: the blob of ``site`` (1: the web host, 2: site 2)."""
    size, sha256 = ((lab.blob_size, lab.blob_sha256) if site == 1
                    else (lab.site2_blob_size, lab.site2_blob_sha256))
    got = _curl(lab, url, timeout=timeout)
    assert got.returncode == 0, f"curl {url} failed: {got.stderr.decode()}\n{lab.logs_tail()}"
    assert len(got.stdout) == size
    assert hashlib.sha256(got.stdout).hexdigest() == sha256


def test_stock_client_downloads_the_blob_byte_exact(wg_lab: WgLab, stock_client) -> None:
    before_rx, before_tx = wg_lab.transfer()
    _fetch_blob(wg_lab, wg_lab.blob_url)
    assert wg_lab.latest_handshake() > 0, wg_lab.server_wg("show")
    rx, tx = wg_lab.transfer()
    assert tx - before_tx >= wg_lab.blob_size         # the blob went through the tunnel
    assert rx > before_rx
    assert wg_lab.server_endpoint().startswith(f"{wg_lab.client_link_addr}:")


def test_stock_client_over_ipv6_inside(wg_lab: WgLab, stock_client) -> None:
    _fetch_blob(wg_lab, wg_lab.blob_url6)


def test_client_namespace_has_no_way_around_the_tunnel(wg_lab: WgLab) -> None:
    wg_lab.stop_stock_client()
    got = _curl(wg_lab, wg_lab.web_url, timeout=3)
    assert got.returncode != 0                        # no route without the tunnel


def test_restart_server_keeps_the_keys(wg_lab: WgLab, stock_client) -> None:
    _fetch_blob(wg_lab, wg_lab.blob_url)
    wg_lab.restart_server()
    assert wg_lab.latest_handshake() == 0             # a new process knows no session
    got = _curl(wg_lab, wg_lab.web_url)
    assert got.returncode == 0, got.stderr.decode()
    assert b"erebus WireGuard lab" in got.stdout
    assert wg_lab.latest_handshake() > 0


def test_removed_client_key_is_locked_out_and_a_replaced_one_lets_in(
        wg_lab: WgLab, stock_client) -> None:
    wg_lab.remove_client_peer()
    assert wg_lab.client_keys.public not in wg_lab.server_wg("show", wg_lab.server_ifname,
                                                              "peers")
    got = _curl(wg_lab, wg_lab.web_url, timeout=6)
    assert got.returncode != 0
    other = KeyPair.generate()
    wg_lab.replace_client_peer(other.public, old=wg_lab.client_keys.public)
    assert wg_lab.latest_handshake(other.public) == 0
    wg_lab.replace_client_peer(wg_lab.client_keys.public, old=other.public)
    got = _curl(wg_lab, wg_lab.web_url)
    assert got.returncode == 0, got.stderr.decode()


def test_profile_for_erebus_is_private_and_checks(wg_lab: WgLab) -> None:
    from erebus.check import check_wireguard
    st = os.stat(wg_lab.profile_path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    code, report = check_wireguard(str(wg_lab.profile_path))
    assert code == 0, report["problems"]
    s = report["settings"]
    assert s["public_key"] == wg_lab.client_keys.public
    assert s["addresses"] == [f"{wg_lab.client_tunnel_addr}/32",
                              f"{wg_lab.client_tunnel_addr6}/128"]
    assert s["dns"] == [wg_lab.dns_addr]
    assert f"endpoint {wg_lab.server_link_addr}:{wg_lab.port}" in s["peers"][0]
    assert wg_lab.server_keys.public in s["peers"][0]
    assert wg_lab.client_keys.private not in repr(report)
    # the user erebus runs as in the lab can read it, and erebus check says so
    cp = wg_lab.run_client([wg_lab.python, "-m", "erebus", "check", str(wg_lab.profile_path)],
                           timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert f"public_key    {wg_lab.client_keys.public}" in cp.stdout
    assert wg_lab.client_keys.private not in cp.stdout + cp.stderr


def _closes_everything(lab: WgLab, namespaces, sockets, pids) -> None:
    """``lab.close()`` leaves none of its namespaces, control sockets, processes (but
    zombies not yet reaped) or its directory."""
    lab.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True,
                            text=True).stdout.split()
    assert not any(ns in listed for ns in namespaces)
    assert not any(s.exists() for s in sockets)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or \
            "zombie" in open(f"/proc/{pid}/status").read().lower()
    assert lab.dir is None or not lab.dir.exists()


def test_close_removes_namespaces_and_processes() -> None:
    require(missing_prerequisites(), "WireGuard lab")
    lab = WgLab().start()
    lab.start_stock_client()
    namespaces = (lab.ns_srv, lab.ns_cli, lab.ns_web)
    sockets = (lab.server.socket_path, lab.client.socket_path)
    pids = [lab.server.proc.pid, lab.client.proc.pid]
    _closes_everything(lab, namespaces, sockets, pids)


# ------------------------------------------------------------------ the second site


@pytest.fixture
def stock_client2(wg_lab2: WgLab):
    """The stock client with both peers, stopped after the test; yields the second
    (since the epoch) it was started in: every handshake it makes is at or after it."""
    began = int(time.time())
    wg_lab2.start_stock_client()
    yield began
    wg_lab2.stop_stock_client()


def test_two_peers_stock_client_downloads_both_sites_byte_exact(wg_lab2: WgLab,
                                                                stock_client2) -> None:
    before = {site: wg_lab2.transfer(site=site) for site in (1, 2)}
    for url in (wg_lab2.blob_url, wg_lab2.blob_url6):
        _fetch_blob(wg_lab2, url)
    for url in (wg_lab2.site2_blob_url, wg_lab2.site2_blob_url6):
        _fetch_blob(wg_lab2, url, site=2)
    for site, size in ((1, wg_lab2.blob_size), (2, wg_lab2.site2_blob_size)):
        assert wg_lab2.latest_handshake(site=site) >= stock_client2, \
            wg_lab2.server_wg("show")
        rx, tx = wg_lab2.transfer(site=site)
        assert tx - before[site][1] >= 2 * size       # its blob came through its tunnel
        assert rx > before[site][0]


def test_site2_knows_the_client_key_without_a_preshared_key(wg_lab2: WgLab,
                                                           stock_client2) -> None:
    client, dev = wg_lab2.client_keys.public, wg_lab2.site2_ifname
    assert wg_lab2.site2_wg("show", dev, "public-key").strip() == wg_lab2.site2_keys.public
    assert wg_lab2.site2_keys.public != wg_lab2.server_keys.public
    assert wg_lab2.site2_wg("show", dev, "peers").split() == [client]
    assert wg_lab2.site2_wg("show", dev, "preshared-keys").split() == [client, "(none)"]
    _fetch_blob(wg_lab2, wg_lab2.site2_blob_url, site=2)
    assert wg_lab2.server_endpoint(site=2).startswith(f"{wg_lab2.client_site2_link_addr}:")
    assert wg_lab2.server_endpoint(site=1).startswith(f"{wg_lab2.client_link_addr}:")


def test_client_namespace_has_no_way_to_site2_around_the_tunnel(wg_lab2: WgLab) -> None:
    wg_lab2.stop_stock_client()
    assert wg_lab2.ping(wg_lab2.ns_cli, wg_lab2.site2_link_addr) > 0   # the link is up
    for url in (wg_lab2.site2_web_url, wg_lab2.site2_web_url6):
        got = _curl(wg_lab2, url, timeout=3)
        assert got.returncode != 0, f"{url} answered without the tunnel"


def test_stop_site2_start_site2_keeps_the_keys(wg_lab2: WgLab, stock_client2) -> None:
    _fetch_blob(wg_lab2, wg_lab2.site2_blob_url, site=2)
    wg_lab2.stop_site2()
    assert not wg_lab2.site2.socket_path.exists()
    assert _curl(wg_lab2, wg_lab2.site2_web_url, timeout=3).returncode != 0
    _fetch_blob(wg_lab2, wg_lab2.blob_url)            # site 1 goes on without site 2
    wg_lab2.start_site2()
    assert wg_lab2.latest_handshake(site=2) == 0      # a new process knows no session
    dev = wg_lab2.site2_ifname
    assert wg_lab2.site2_wg("show", dev, "public-key").strip() == wg_lab2.site2_keys.public
    # the client's dead session times out (~15 s) before it handshakes again
    _fetch_blob(wg_lab2, wg_lab2.site2_blob_url, site=2, timeout=75)
    _fetch_blob(wg_lab2, wg_lab2.site2_blob_url6, site=2)
    assert wg_lab2.latest_handshake(site=2) > 0


def test_site2_down_when_the_client_starts_and_up_later(wg_lab2: WgLab) -> None:
    wg_lab2.stop_stock_client()
    wg_lab2.stop_site2()
    try:
        wg_lab2.start_stock_client()
        _fetch_blob(wg_lab2, wg_lab2.blob_url)
        assert wg_lab2.latest_handshake(site=1) > 0
        assert _curl(wg_lab2, wg_lab2.site2_web_url, timeout=3).returncode != 0
        wg_lab2.start_site2()
        _fetch_blob(wg_lab2, wg_lab2.site2_blob_url, site=2, timeout=75)
        assert wg_lab2.latest_handshake(site=2) > 0
    finally:
        wg_lab2.start_site2()
        wg_lab2.stop_stock_client()


def test_profile2_has_both_peers_and_checks(wg_lab2: WgLab) -> None:
    from erebus.check import check_wireguard
    st = os.stat(wg_lab2.profile2_path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    code, report = check_wireguard(str(wg_lab2.profile2_path))
    assert code == 0, report["problems"]
    assert report["warnings"] == []                   # the AllowedIPs do not overlap
    first, second = report["settings"]["peers"]
    assert wg_lab2.server_keys.public in first and "preshared key" in first
    assert f"endpoint {wg_lab2.server_link_addr}:{wg_lab2.port}" in first
    assert wg_lab2.site2_keys.public in second and "preshared key" not in second
    assert f"endpoint {wg_lab2.site2_link_addr}:{wg_lab2.port}" in second
    assert "198.18.123.0/24" in second and "2001:2:0:123::/64" in second
    code, report = check_wireguard(str(wg_lab2.profile_path))
    assert code == 0, report["problems"]
    assert len(report["settings"]["peers"]) == 1      # profile_path stays one peer


def test_close_removes_the_second_site() -> None:
    require(missing_prerequisites(), "WireGuard lab")
    lab = WgLab(second_site=True).start()
    lab.start_stock_client()
    namespaces = (lab.ns_srv, lab.ns_cli, lab.ns_web, lab.ns_sv2)
    sockets = (lab.server.socket_path, lab.client.socket_path, lab.site2.socket_path)
    assert all(s.exists() for s in sockets)
    pids = [proc.pid for proc in lab._procs]          # site 2's http.servers among them
    _closes_everything(lab, namespaces, sockets, pids)
