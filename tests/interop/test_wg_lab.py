"""The WireGuard lab itself works: a STOCK wireguard-go client reaches the web host
through the stock wireguard-go server.

This proves the keys, the server's peer, TUN devices in namespaces, forwarding and
routing and the web host, so that a failure of erebus's WireGuard client against
:class:`tests.wg_lab.WgLab` can be blamed on erebus and not on the lab.  It also holds
the lab's helpers (restart, handshake and transfer counters, replacing the client's key)
to what a later test will rely on, and checks the profile the lab writes for erebus.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess

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


def _fetch_blob(lab: WgLab, url: str) -> None:
    got = _curl(lab, url)
    assert got.returncode == 0, f"curl {url} failed: {got.stderr.decode()}\n{lab.logs_tail()}"
    assert len(got.stdout) == lab.blob_size
    assert hashlib.sha256(got.stdout).hexdigest() == lab.blob_sha256


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


def test_close_removes_namespaces_and_processes() -> None:
    require(missing_prerequisites(), "WireGuard lab")
    lab = WgLab().start()
    lab.start_stock_client()
    namespaces = (lab.ns_srv, lab.ns_cli, lab.ns_web)
    sockets = (lab.server.socket_path, lab.client.socket_path)
    pids = [lab.server.proc.pid, lab.client.proc.pid]
    lab.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in namespaces)
    assert not any(s.exists() for s in sockets)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or \
            "zombie" in open(f"/proc/{pid}/status").read().lower()
    assert lab.dir is None or not lab.dir.exists()
