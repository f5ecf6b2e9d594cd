"""erebus against stock OpenVPN 2.6 servers in the lab, run as the unprivileged user
``nobody`` in the client namespace: probe, ping, pcap, loss, a foreign CA, -L forwards."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.util import Up, _big_file, _fetch, _free_port, erebus, outdir, probe_json
from tests.lab import WEB_ADDR, send_signal, tail

pytestmark = pytest.mark.interop

RELAY = Path(__file__).resolve().parent.parent / "relay.py"


def test_a_stock_server_keys_the_data_channel_by_tls_key_export(lab, ovpn_server):
    """erebus offers IV_PROTO_TLS_KEY_EXPORT; a 2.6 server then pushes tls-ekm and both
    ends take the data keys from RFC 5705's exporter: a ping through proves they match."""
    server = ovpn_server("gcm")
    cp = erebus(lab, "-v", "probe", server.profile, "--json", "--ping", WEB_ADDR)
    report = json.loads(cp.stdout)
    assert report["ok"] is True and report["ping_ms"] is not None, cp.stderr
    assert "data keys by tls-ekm" in cp.stderr, cp.stderr


@pytest.mark.parametrize("mode,cipher", [("none", "none"), ("gcm", "AES-256-GCM")])
def test_probe_ping_and_pcap(lab, ovpn_server, mode, cipher):
    server = ovpn_server(mode)
    out = outdir(lab)
    pcap = out / f"probe-{mode}.pcapng"
    cp, report = probe_json(lab, server.profile, "--ping", WEB_ADDR, "--pcap", pcap)
    assert cp.returncode == 0, f"{cp.stdout}\n{cp.stderr}\n{server.describe()}"
    assert report["ok"] is True
    pool_prefix = server.pool.rsplit(".", 2)[0]               # "198.19.N"
    assert report["virtual_ip"].startswith(pool_prefix + ".")
    assert report["netmask"] == "255.255.255.0"
    assert report["gateway"] == server.vpn_address
    assert "198.18.2.0/24" in report["routes"]
    assert report["dns"] == [WEB_ADDR]
    assert report["cipher"] == cipher
    assert report["mtu"] == 1500
    assert report["setup_ms"] > 0
    assert report["ping_ms"] is not None and report["ping_ms"] > 0
    # the server freed the client at once (exit notification), not after ping-restart
    deadline = time.time() + 10
    while time.time() < deadline and "exit message received" not in server.log_tail(400):
        time.sleep(0.2)
    assert "exit message received" in server.log_tail(400), server.describe()
    # tshark decodes the outer OpenVPN packets and the inner ICMP echo
    fields = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"udp.port=={server.port},openvpn", "-T", "fields",
         "-e", "frame.interface_id", "-e", "openvpn.opcode", "-e", "icmp.type",
         "-e", "ip.src"], capture_output=True, text=True, timeout=60)
    assert fields.returncode == 0, fields.stderr
    rows = [line.split("\t") for line in fields.stdout.splitlines()]
    outer_opcodes = {r[1] for r in rows if r[0] == "0" and r[1]}
    assert {"0x07", "0x08", "0x04", "0x09"} <= outer_opcodes, outer_opcodes
    replies = [r for r in rows if r[0] == "1" and r[2] == "0" and r[3] == WEB_ADDR]
    assert replies, rows


def test_rogue_server_certificate_is_refused_and_named(lab, ovpn_server):
    server = ovpn_server("rogue")
    cp, report = probe_json(lab, server.profile, "--timeout", 30)
    assert cp.returncode == 1
    assert report["ok"] is False and report["stage"] == "certificate"
    assert "rogue" in report["error"] and "CA" in report["error"], report["error"]
    assert cp.stderr.strip().count("\n") == 0, cp.stderr      # one line


def test_human_report_and_one_line_failure(lab, ovpn_server):
    server = ovpn_server("gcm")
    cp = erebus(lab, "probe", server.profile)
    assert cp.returncode == 0 and "virtual IP  198.19.1." in cp.stdout, cp.stdout + cp.stderr
    bad = Path(outdir(lab)) / "nowhere.ovpn"
    bad.write_text(server.profile.read_text().replace(f" {server.port}\n", " 1999\n"))
    os.chmod(bad, 0o644)
    cp = erebus(lab, "probe", bad, "--timeout", 8)
    assert cp.returncode == 1
    assert cp.stdout.startswith("FAILED (unreachable)"), cp.stdout
    assert len(cp.stdout.strip().splitlines()) == 1


def test_handshake_with_20_percent_packet_loss(lab, ovpn_server):
    server = ovpn_server("gcm")
    lab.set_loss(20)
    try:
        runs = [probe_json(lab, server.profile, "--timeout", 120, timeout=150)
                for _ in range(3)]
    finally:
        lab.clear_loss()
    for cp, report in runs:
        assert cp.returncode == 0 and report["ok"], (report, server.describe())
    assert sum(r["control_retransmits"] for _, r in runs) > 0


def test_local_forward_100_mb_byte_exact(lab, ovpn_server):
    server = ovpn_server("gcm")
    digest = _big_file(lab, "big100.bin", 100 * 1024 * 1024)
    port = _free_port()
    up = Up(lab, server.profile, f"{port}:{WEB_ADDR}:80")
    try:
        got, err, secs = _fetch(lab, f"http://127.0.0.1:{port}/big100.bin")
        assert got == digest, f"{err}\n{tail(up.log)}"
        print(f"\n100 MiB through -L in {secs:.1f} s: {100 / secs:.1f} MiB/s")
        # a second connection on the same tunnel works too (the first was closed cleanly)
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, err
    finally:
        code = up.stop()
    assert code == 0, tail(up.log)
    assert "closing connections and leaving the VPN" in up.log.read_text()


def test_local_forward_over_an_impaired_path(lab, ovpn_server):
    """10 MB while the outer path has 20 ms +-5 ms delay, 2 % loss, reordering and
    duplication (a relay in the server namespace impairs both directions)."""
    server = ovpn_server("gcm")
    digest = _big_file(lab, "big10.bin", 10 * 1024 * 1024)
    relay_port = server.port + 1000
    relay = lab.spawn_ns(lab.ns_srv, [sys.executable, str(RELAY), server.host, str(relay_port),
                                      server.host, str(server.port), "--delay", "0.02",
                                      "--jitter", "0.005", "--loss", "0.02", "--duplicate",
                                      "0.01", "--reorder", "0.05", "--seed", "7",
                                      "--max-seconds", "600"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert relay.stdout.readline().strip() == "relay ready"
    profile = outdir(lab) / "via-relay.ovpn"
    profile.write_text(server.profile.read_text().replace(
        f"remote {server.host} {server.port}", f"remote {server.host} {relay_port}"))
    os.chmod(profile, 0o644)
    port = _free_port()
    up = Up(lab, profile, f"{port}:{WEB_ADDR}:80", log_name="up-impaired.log")
    try:
        got, err, secs = _fetch(lab, f"http://127.0.0.1:{port}/big10.bin")
        assert got == digest, f"{err}\n{tail(up.log)}"
        print(f"\n10 MiB through -L over the impaired path in {secs:.1f} s")
    finally:
        up.stop()
        send_signal(relay, signal.SIGTERM)
        stats = relay.communicate(timeout=10)[0]
    lost = int(re.search(r"lost=(\d+)", stats).group(1))
    assert lost > 0, stats


def test_local_forward_to_a_closed_port_resets_the_local_connection(lab, ovpn_server):
    server = ovpn_server("gcm")
    port = _free_port()
    up = Up(lab, server.profile, f"{port}:{WEB_ADDR}:81", log_name="up-closed.log")
    try:
        cp = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--max-time", "20",
                                     f"http://127.0.0.1:{port}/"], timeout=40)
        assert cp.returncode in (52, 56), cp          # empty reply / connection reset
        assert "connection refused" in up.log.read_text()
    finally:
        up.stop()


def test_download_across_server_renegotiations(lab, ovpn_server):
    """The server renegotiates every 4 s: a 100 MiB download paced to last ~13 s
    survives several soft resets (new key id, the old key kept for the transition
    window), byte-exact."""
    server = ovpn_server("reneg")
    digest = _big_file(lab, "big100.bin", 100 * 1024 * 1024)
    port = _free_port()
    up = Up(lab, server.profile, f"{port}:{WEB_ADDR}:80", log_name="up-reneg.log")
    try:
        cp = lab.run_ns(lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                     f"curl -sS --fail --limit-rate 8M --max-time 120 "
                                     f"http://127.0.0.1:{port}/big100.bin | sha256sum"],
                        timeout=150)
        assert cp.stdout.split()[:1] == [digest], f"{cp.stderr}\n{tail(up.log)}"
    finally:
        up.stop()
    log = up.log.read_text()
    assert log.count("renegotiation done") >= 2, tail(up.log, 30)
    assert "renegotiation did not complete" not in log
