"""ESP in UDP with manual SAs against an independent implementation: scapy's ESP
(tests/esp_peer.py) behind a TUN device in the ESP lab (tests/esp_lab.py).

erebus runs as ``nobody`` in the client namespace: EspTunnel + VpnStack in a small
script (``tests.esp_lab.CLIENT_SCRIPT``), and ``erebus probe/up`` at the end; a lab
profile that fails to load fails those tests (never a skip).

The scapy peer costs about 1 ms per packet it encrypts: the throughput figures
printed here measure it, not erebus.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.esp_lab import BIG_FILE, BIG_SIZE, WEB_ADDR, EspLab
from tests.lab import stop_process, tail

pytestmark = pytest.mark.interop



def check(report: dict, lab: EspLab) -> dict:
    assert report["ok"], f"{report}\n{report.get('stderr', '')[-3000:]}\n{lab.logs_tail()}"
    return report


def show(what: str, report: dict) -> None:
    fetch = report.get("fetch") or {}
    print(f"\n{what}: ping {report.get('ping_ms')} ms, {fetch.get('bytes')} bytes in "
          f"{fetch.get('seconds')} s ({fetch.get('mib_per_s')} MiB/s)", file=sys.stderr)


# -- ping and 10 MB for AES-GCM-256 and AES-CBC + HMAC-SHA-256 ------------------------------

@pytest.mark.parametrize("mode", ["gcm", "cbc"])
def test_ping_and_10mb_fetch(esp_lab, mode):
    peer = esp_lab.start_peer(mode)
    report = check(esp_lab.run_esp_client(peer.profile, ping=WEB_ADDR,
                                          fetch=f"{WEB_ADDR}:80/{BIG_FILE}"), esp_lab)
    show(mode, report)
    info = report["info"]
    assert info["kind"] == "ipsec" and info["virtual_ip"] == peer.client_ip
    assert info["cipher"] == {"gcm": "aes256gcm16", "cbc": "aes256-sha256"}[mode]
    assert report["ping_ms"] is not None, esp_lab.logs_tail()
    fetch = report["fetch"]
    assert fetch["status"].endswith("200 OK")
    assert fetch["bytes"] == BIG_SIZE
    assert fetch["sha256"] == esp_lab.big_sha256
    c = report["counters"]
    assert c["auth_failed"] == c["replayed"] == c["malformed"] == c["unknown_spi"] == 0
    stats = esp_lab.peer_control(peer, "stats")
    assert stats["auth_failed"] == 0 and stats["esp_in"] >= c["packets_out"] - 5


@pytest.mark.parametrize("mode", ["mixed", "chacha", "esn"])
def test_other_transforms(esp_lab, mode):
    """AES-128-GCM out / AES-128-CBC+SHA256 in; ChaCha20-Poly1305; ESN with
    AES-GCM out and AES-CBC + HMAC-SHA-512 in."""
    peer = esp_lab.start_peer(mode)
    report = check(esp_lab.run_esp_client(peer.profile, ping=WEB_ADDR,
                                          fetch=f"{WEB_ADDR}:80/blob.bin"), esp_lab)
    assert report["ping_ms"] is not None, esp_lab.logs_tail()
    assert report["fetch"]["sha256"] == esp_lab.blob_sha256


@pytest.mark.parametrize("mode", ["fast-gcm", "fast-cbc"])
def test_figures_with_a_fast_peer(esp_lab, mode):
    """The same 10 MB with the peer on erebus's own ESP (not independent: the scapy
    peer's ~1 ms per packet caps the tests above near 1 MiB/s; this shows erebus's)."""
    peer = esp_lab.start_peer(mode, engine="erebus")
    report = check(esp_lab.run_esp_client(peer.profile, fetch=f"{WEB_ADDR}:80/{BIG_FILE}"),
                   esp_lab)
    show(f"{mode} (peer on erebus ESP)", report)
    assert report["fetch"]["sha256"] == esp_lab.big_sha256


# -- an impaired outer path ------------------------------------------------------------------

def test_10mb_through_loss_and_reordering(esp_lab):
    """2 % loss and 2 % reordering each way (tests/relay.py in front of the peer)."""
    peer = esp_lab.start_peer("gcm")
    profile = esp_lab.start_relay(peer, loss=0.02, reorder=0.02, delay=0.001, seed=7)
    try:
        report = check(esp_lab.run_esp_client(profile, fetch=f"{WEB_ADDR}:80/{BIG_FILE}",
                                              timeout=600), esp_lab)
    finally:
        stop_process(peer.relay)
    show("gcm, 2 % loss + reordering", report)
    relay_stats = tail(esp_lab.dir / "relay-gcm.log")
    assert report["fetch"]["sha256"] == esp_lab.big_sha256, relay_stats
    c = report["counters"]
    assert c["auth_failed"] == 0 and c["replayed"] == 0, c
    assert "lost=" in relay_stats and "lost=0 " not in relay_stats, relay_stats


# -- replays and forgeries ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["gcm", "cbc"])
def test_replayed_and_flipped_packets_dropped_and_counted(esp_lab, mode):
    peer = esp_lab.start_peer(mode)
    report = check(esp_lab.run_esp_client(peer.profile, ping=WEB_ADDR, control=peer.control),
                   esp_lab)
    assert report["replay"]["ok"] and report["flip"]["ok"], report
    drops = report["drops"]
    assert drops["replay_seen"] and drops["replayed"] == 1, report
    assert drops["flip_seen"] and drops["auth_failed"] == 1, report
    assert drops["delivered"] == 0, report            # neither reached the stack
    assert report["ping_after_ms"] is not None         # and the tunnel still works
    c = report["counters"]
    assert c["replayed"] == 1 and c["auth_failed"] == 1


# -- pcap, decrypted by tshark ---------------------------------------------------------------

@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("mode", ["gcm", "cbc"])
def test_pcap_decrypted_by_tshark(esp_lab, mode):
    from erebus.ipsec.profile import load_esp_profile
    from erebus.ipsec.wireshark import tshark_esp_options

    peer = esp_lab.start_peer(mode)
    pcap = esp_lab.outdir() / f"esp-{mode}.pcapng"
    report = check(esp_lab.run_esp_client(peer.profile, ping=WEB_ADDR, pcap=pcap,
                                          verbose=True), esp_lab)
    assert "Wireshark esp_sa:" in report["stderr"]       # the keys, logged at debug
    profile = load_esp_profile(peer.profile)
    base = ["tshark", "-r", str(pcap), "-n"]
    # without keys: ESP-in-UDP on a port other than 4500 needs -d udp.port==N,udpencap
    cp = subprocess.run([*base, "-d", f"udp.port=={peer.port},udpencap", "-T", "fields",
                         "-e", "esp.spi", "-Y", "esp"], capture_output=True, text=True,
                        timeout=60)
    spis = {int(spi, 16) for spi in cp.stdout.split()}
    assert spis == {profile.outbound.spi, profile.inbound.spi}, cp.stdout + cp.stderr
    # with the keys: the ICMP inside decrypts and the ICVs check
    cp = subprocess.run([*base, *tshark_esp_options(profile), "-T", "fields",
                         "-e", "frame.interface_name", "-e", "esp.spi", "-e", "icmp.type",
                         "-e", "esp.icv_good", "-Y", "esp"],
                        capture_output=True, text=True, timeout=60)
    lines = [line.split("\t") for line in cp.stdout.splitlines()]
    assert lines, cp.stderr
    icmp = sorted(line[2] for line in lines if line[2])
    assert icmp == ["0", "8"], cp.stdout + cp.stderr         # echo request and reply
    assert all(line[3] in ("1", "True") for line in lines), cp.stdout


# -- erebus probe / up with an ESP profile ----------------------------------------------

def _erebus(lab, *args, timeout=90):
    return lab.run_client([lab.python, "-m", "erebus", *map(str, args)], timeout=timeout)


def _probe_reads_esp_profiles(lab, profile) -> dict:
    cp = _erebus(lab, "probe", profile, "--json", "--ping", WEB_ADDR)
    try:
        report = json.loads(cp.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"erebus probe printed no JSON:\n{cp.stdout}\n{cp.stderr}")
    if report.get("stage") == "config":
        pytest.fail(f"erebus probe could not load the lab's ESP profile {profile}: "
                    f"{report.get('error')}")
    return report


def test_probe_esp_profile(esp_lab):
    peer = esp_lab.start_peer("gcm")
    report = _probe_reads_esp_profiles(esp_lab, peer.profile)
    assert report["ok"], report
    assert report["kind"] == "ipsec" and report["cipher"] == "aes256gcm16"
    assert report["ping_ms"] is not None


def test_up_esp_profile_local_forward_and_http_proxy(esp_lab):
    peer = esp_lab.start_peer("gcm")
    _probe_reads_esp_profiles(esp_lab, peer.profile)
    log = esp_lab.outdir() / "up.log"
    proc = esp_lab.spawn_client([esp_lab.python, "-m", "erebus", "up", str(peer.profile),
                                 "-L", f"18080:{WEB_ADDR}:80", "--http-proxy", "18081"],
                                output=log)
    try:
        deadline = time.time() + 60
        while "ready (" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.time() < deadline, tail(log)
            time.sleep(0.1)
        for url, extra in ((f"http://127.0.0.1:18080/{BIG_FILE}", []),
                           (f"http://{WEB_ADDR}/{BIG_FILE}", ["-x", "http://127.0.0.1:18081"])):
            cp = esp_lab.run_ns(esp_lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                                 f"curl -sS --fail --max-time 300 "
                                                 f"{' '.join(extra)} {url} | sha256sum"],
                                timeout=330)
            assert cp.stdout.split()[:1] == [esp_lab.big_sha256], cp.stderr + tail(log)
    finally:
        stop_process(proc)


def test_probe_refuses_static_gcm_without_the_opt_in(esp_lab):
    """The lab's GCM profile without ``allow_static_aead = true``: refused before any
    packet, naming the file, the key and RFC 4106."""
    from tests.esp_lab import MODES, profile_text
    text = profile_text(MODES["gcm"], "198.18.101.1:4600")
    assert "allow_static_aead = true" in text
    profile = esp_lab.dir / "esp-gcm-no-opt-in.toml"
    profile.write_text("\n".join(line for line in text.splitlines()
                                 if not line.startswith("allow_static_aead")) + "\n")
    profile.chmod(0o644)
    cp = _erebus(esp_lab, "probe", profile, "--json")
    report = json.loads(cp.stdout)
    assert cp.returncode == 2 and report["stage"] == "config", report
    assert f"{profile}: ipsec.outbound.transform: aes256gcm16 with manual keys is " \
           "forbidden by RFC 4106 section 8.1" in report["error"]
