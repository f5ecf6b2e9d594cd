"""erebus's WireGuard client against a stock wireguard-go server (tests/wg_lab.py).

erebus runs as ``nobody`` in the client namespace, with the wg-quick file the lab
writes as a VPN provider would hand it out: ``probe --ping`` over IPv4 and IPv6,
``up`` with ``-L``, ``--socks`` and ``--http-proxy`` moving 100 MiB byte-exact, a key
the server does not know refused with one clear line, and the server restarted under
a running ``up``: erebus handshakes again and the next transfer is intact.
test_wg_lab.py shows the stock client working through the same lab first.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import time

import pytest

from tests.ci import require
from tests.lab import UNPRIVILEGED_USER, stop_process, tail
from tests.wg_lab import KeyPair, WgLab

pytestmark = pytest.mark.interop

BIG_NAME = "big.bin"
BIG_SIZE = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def big_sha256(wg_lab: WgLab) -> str:
    """A 100 MiB file on the web host (random content, written once per module)."""
    path = wg_lab.dir / "www" / BIG_NAME
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(BIG_SIZE // (1 << 20)):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
    os.chmod(path, 0o644)
    return digest.hexdigest()


def _erebus(lab: WgLab, *args, timeout: float = 90):
    return lab.run_client([lab.python, "-m", "erebus", *map(str, args)], timeout=timeout)


def _probe(lab: WgLab, profile, *args) -> dict:
    cp = _erebus(lab, "probe", profile, "--json", *args)
    try:
        return json.loads(cp.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"erebus probe printed no JSON:\n{cp.stdout}\n{cp.stderr}")


def _wait_log(proc, log, needle: str, *, after: int = 0, timeout: float = 60) -> None:
    """Until ``needle`` appears in ``log`` past offset ``after`` (the process alive)."""
    deadline = time.monotonic() + timeout
    while needle not in (log.read_text()[after:] if log.exists() else ""):
        assert proc.poll() is None, f"erebus exited:\n{tail(log)}"
        assert time.monotonic() < deadline, f"no {needle!r} in {timeout} s:\n{tail(log)}"
        time.sleep(0.1)


def _sha_through(lab: WgLab, url: str, *extra: str, timeout: float = 300) -> str:
    cp = lab.run_ns(lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                 f"curl -sS --fail --max-time {timeout:g} {' '.join(extra)} "
                                 f"{url} | sha256sum"], timeout=timeout + 30)
    assert cp.returncode == 0, f"curl {url} failed: {cp.stderr}"
    return cp.stdout.split()[0]


def test_probe_pings_through_the_stock_server(wg_lab: WgLab):
    before = wg_lab.latest_handshake()
    report = _probe(wg_lab, wg_lab.profile_path, "--ping", wg_lab.web_addr)
    assert report["ok"], report
    assert report["kind"] == "wireguard"
    assert report["virtual_ip"] == wg_lab.client_tunnel_addr
    assert report["virtual_ip6"] == wg_lab.client_tunnel_addr6
    assert report["ping_ms"] is not None, report
    assert wg_lab.latest_handshake() > before     # the server saw our handshake
    report6 = _probe(wg_lab, wg_lab.profile_path, "--ping", wg_lab.web_addr6)
    assert report6["ok"] and report6["ping_ms"] is not None, report6


def test_up_moves_100_mib_byte_exact_every_way(wg_lab: WgLab, big_sha256: str):
    log = wg_lab.dir / "up-100.log"
    proc = wg_lab.spawn_client([wg_lab.python, "-m", "erebus", "up", str(wg_lab.profile_path),
                                "-L", f"18080:{wg_lab.web_addr}:80", "--socks", "11080",
                                "--http-proxy", "18081"], output=log)
    try:
        _wait_log(proc, log, "ready (")
        url = f"http://{wg_lab.web_addr}/{BIG_NAME}"
        assert _sha_through(wg_lab, f"http://127.0.0.1:18080/{BIG_NAME}") == big_sha256
        assert _sha_through(wg_lab, url, "--socks5-hostname", "127.0.0.1:11080") == big_sha256
        assert _sha_through(wg_lab, url, "-x", "http://127.0.0.1:18081") == big_sha256
        # IPv6 inside the tunnel, through SOCKS5
        assert _sha_through(wg_lab, wg_lab.blob_url6, "--socks5-hostname",
                            "127.0.0.1:11080") == wg_lab.blob_sha256
        received, _sent = wg_lab.transfer()
        assert received > 0
    finally:
        stop_process(proc)


def test_a_key_the_server_does_not_know_gets_one_clear_line(wg_lab: WgLab):
    stranger = KeyPair.generate()
    profile = wg_lab.write_profile("stranger.conf", keys=stranger)
    report = _probe(wg_lab, profile, "--timeout", "12")
    assert not report["ok"], report
    server = wg_lab.server_keys.public
    assert report["error"].endswith(f"no handshake response from peer {server}: is our "
                                    "public key configured there?)"), report
    assert report["stage"] == "unreachable", report


def test_server_restarted_mid_session_erebus_handshakes_again(wg_lab: WgLab):
    log = wg_lab.dir / "up-restart.log"
    proc = wg_lab.spawn_client([wg_lab.python, "-m", "erebus", "up", str(wg_lab.profile_path),
                                "-v", "-L", f"18090:{wg_lab.web_addr}:80"], output=log)
    try:
        _wait_log(proc, log, "ready (")
        assert _sha_through(wg_lab, "http://127.0.0.1:18090/blob.bin") == wg_lab.blob_sha256
        first = wg_lab.latest_handshake()
        wg_lab.restart_server()                    # it forgets every session
        assert wg_lab.latest_handshake() == 0
        # the first fetch after the restart finds the server without our keys: erebus
        # notices nothing comes back and handshakes again; curl's own retries are not
        # needed because TCP retransmits what was lost meanwhile
        assert _sha_through(wg_lab, "http://127.0.0.1:18090/blob.bin",
                            timeout=120) == wg_lab.blob_sha256
        assert wg_lab.latest_handshake() >= first
        assert proc.poll() is None, tail(log)
        assert "a new handshake" in log.read_text(), tail(log)
    finally:
        stop_process(proc)



def test_pcap_decoded_and_decrypted_by_wireshark_with_the_keylog(wg_lab: WgLab):
    """tshark names every outer message, and with --keylog (its wg.keylog_file) it
    decrypts the handshake and finds the ICMP echo inside the outer transport data."""
    require([] if shutil.which("tshark") else ["tshark is missing"], "tshark")
    out = wg_lab.dir / "capture"                 # where nobody may write
    out.mkdir(mode=0o700)
    nobody = pwd.getpwnam(UNPRIVILEGED_USER)
    os.chown(out, nobody.pw_uid, nobody.pw_gid)
    pcap, keylog = out / "probe.pcapng", out / "probe.keys"
    report = _probe(wg_lab, wg_lab.profile_path, "--ping", wg_lab.web_addr,
                    "--pcap", pcap, "--keylog", keylog)
    assert report["ok"], report
    assert keylog.stat().st_mode & 0o777 == 0o600
    fields = ["-T", "fields", "-e", "wg.type", "-e", "wg.handshake_ok", "-e", "icmp.type"]
    outer = ["-Y", 'frame.interface_name == "wireguard-outer"']
    plain = subprocess.run(["tshark", "-r", str(pcap), *outer, *fields],
                           capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert [r[0] for r in rows[:2]] == ["1", "2"], plain.stdout + plain.stderr
    assert not any(r[2] for r in rows), plain.stdout        # encrypted without the keys
    decrypted = subprocess.run(["tshark", "-r", str(pcap), "-o", f"wg.keylog_file:{keylog}",
                                *outer, *fields], capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in decrypted.stdout.splitlines()]
    assert rows[1][:2] == ["2", "1"], decrypted.stdout      # the response: handshake_ok
    assert {"8", "0"} <= {r[2] for r in rows}, decrypted.stdout   # echo request and reply



def test_erebus_run_gives_a_command_the_vpn(wg_lab: WgLab):
    """``erebus run client.conf -- sh -c ...`` as nobody: the command's own kernel TCP,
    ICMP and glibc's resolver (UDP to the profile's DNS) over IPv4 and IPv6 inside."""
    name = next(iter(wg_lab.dns_names))
    web, web6 = wg_lab.web_addr, wg_lab.web_addr6
    script = (f"curl -sS --fail --max-time 60 http://{web}/blob.bin | sha256sum && "
              f"curl -sS --fail --max-time 60 http://[{web6}]/blob.bin | sha256sum && "
              f"ping -n -c 3 -W 5 {web} && getent ahostsv4 {name} && exit 7")
    cp = wg_lab.run_client([wg_lab.python, "-m", "erebus", "run", str(wg_lab.profile_path),
                            "--", "sh", "-c", script], timeout=180)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 7, out + wg_lab.logs_tail()
    assert out.count(wg_lab.blob_sha256) == 2, out
    assert "3 packets transmitted, 3 received" in out, out
    assert re.search(rf"^{re.escape(web)}\s+STREAM {re.escape(name)}$", out, re.M), out



def test_our_address_changes_mid_session_and_the_session_follows(wg_lab: WgLab):
    """Roaming: the client's link address is replaced under a running ``up`` (a laptop
    on another network).  erebus opens a new socket from the new address, the server
    follows our authenticated packets (its endpoint for us moves), the listener and
    the session stay, and the next fetch is intact."""
    log = wg_lab.dir / "up-roam.log"
    old_addr, new_addr = wg_lab.client_link_addr, "198.18.120.3"
    proc = wg_lab.spawn_client([wg_lab.python, "-m", "erebus", "up", str(wg_lab.profile_path),
                                "-v", "-L", f"18110:{wg_lab.web_addr}:80"], output=log)
    ip = ["ip", "-n", wg_lab.ns_cli, "addr"]
    try:
        _wait_log(proc, log, "ready (")
        url = "http://127.0.0.1:18110/blob.bin"
        assert _sha_through(wg_lab, url) == wg_lab.blob_sha256
        assert wg_lab.server_endpoint().startswith(f"{old_addr}:")
        subprocess.run([*ip, "del", f"{old_addr}/24", "dev", "to-srv"], check=True)
        subprocess.run([*ip, "add", f"{new_addr}/24", "dev", "to-srv"], check=True)
        assert _sha_through(wg_lab, url, timeout=60) == wg_lab.blob_sha256
        assert wg_lab.server_endpoint().startswith(f"{new_addr}:"), wg_lab.server_endpoint()
        text = log.read_text()
        assert f"our address changed: sending to {wg_lab.server_link_addr}:{wg_lab.port} " \
               f"from {new_addr}:" in text, tail(log)
        assert "reconnected" not in text and proc.poll() is None, tail(log)
    finally:
        stop_process(proc)
        subprocess.run([*ip, "del", f"{new_addr}/24", "dev", "to-srv"], check=False)
        subprocess.run([*ip, "add", f"{old_addr}/24", "dev", "to-srv"], check=False)


REKEY_SESSION_LIMIT = 480.0          # seconds: two rekeys take about 240-250 s


def test_six_minutes_of_traffic_across_rekeys(wg_lab: WgLab):
    """Traffic for six minutes: erebus rekeys every REKEY_AFTER_TIME (120 s) as the
    initiator, the server's latest handshake moves at least twice, and every fetch
    (one every 2 s, over one -L listener) is intact."""
    log = wg_lab.dir / "up-rekey.log"
    proc = wg_lab.spawn_client([wg_lab.python, "-m", "erebus", "up", str(wg_lab.profile_path),
                                "-vv", "-L", f"18100:{wg_lab.web_addr}:80"], output=log)
    try:
        _wait_log(proc, log, "ready (")
        handshakes = {wg_lab.latest_handshake()}
        started = time.monotonic()
        fetches = 0
        while time.monotonic() - started < 360 or len(handshakes) < 3:
            assert time.monotonic() - started < REKEY_SESSION_LIMIT, \
                f"handshakes seen: {sorted(handshakes)}\n{tail(log)}"
            assert _sha_through(wg_lab, "http://127.0.0.1:18100/blob.bin",
                                timeout=60) == wg_lab.blob_sha256
            fetches += 1
            handshakes.add(wg_lab.latest_handshake())
            time.sleep(2)                   # the pace of the traffic, not a wait for a state
        assert len(handshakes) >= 3, sorted(handshakes)      # the first and two rekeys
        assert proc.poll() is None, tail(log)
        text = log.read_text()
        assert text.count("rekeyed: keypair") >= 2, tail(log)
        assert "reconnect" not in text, tail(log)
    finally:
        stop_process(proc)
