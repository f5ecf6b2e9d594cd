"""Real-world profile features against stock OpenVPN 2.6 servers in the lab: TCP
transport, client-started renegotiation, reconnecting after a server restart."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

import pytest

from tests.interop.util import Up, _big_file, _fetch, _free_port, erebus, outdir
from tests.lab import WEB_ADDR, stop_process, tail

pytestmark = pytest.mark.interop


def _profile_with(lab, server, *extra_lines, name=None):
    path = outdir(lab) / (name or f"{server.mode}-custom.ovpn")
    path.write_text(server.profile.read_text() + "".join(f"{l}\n" for l in extra_lines))
    os.chmod(path, 0o644)
    return path


def _wait_for_log(up, needle: str, timeout: float) -> None:
    """Until erebus up's log says ``needle`` (bounded: fails with the log's tail)."""
    deadline = time.monotonic() + timeout
    while needle not in up.log.read_text():
        assert up.proc.poll() is None, f"erebus up exited:\n{tail(up.log, 30)}"
        assert time.monotonic() < deadline, f"no {needle!r} in {timeout} s:\n{tail(up.log, 30)}"
        time.sleep(0.1)


def test_probe_and_fetch_over_tcp(lab, ovpn_server):
    server = ovpn_server("tcp")
    pcap = outdir(lab) / "tcp.pcapng"
    cp = erebus(lab, "probe", server.profile, "--json", "--ping", WEB_ADDR, "--pcap", pcap)
    report = json.loads(cp.stdout)
    assert cp.returncode == 0 and report["ping_ms"], (cp.stdout, cp.stderr, server.describe())
    assert "TCPv4_CLIENT" in server.log_tail(400) or "tcp" in server.log_tail(400).lower()
    digest = _big_file(lab, "big10.bin", 10 * 1024 * 1024)
    port = _free_port()
    up = Up(lab, server.profile, f"{port}:{WEB_ADDR}:80", log_name="up-tcp.log")
    try:
        got, err, secs = _fetch(lab, f"http://127.0.0.1:{port}/big10.bin")
        assert got == digest, f"{err}\n{tail(up.log)}"
        print(f"\n10 MiB through -L over OpenVPN-over-TCP in {secs:.1f} s")
    finally:
        up.stop()


def test_client_started_renegotiation(lab, ovpn_server):
    """reneg-sec 3 in the profile: erebus starts the soft resets itself (the gcm server
    would wait an hour), while a download runs."""
    server = ovpn_server("gcm")
    profile = _profile_with(lab, server, "reneg-sec 3", name="gcm-reneg3.ovpn")
    digest = _big_file(lab, "big20.bin", 20 * 1024 * 1024)
    port = _free_port()
    up = Up(lab, profile, f"{port}:{WEB_ADDR}:80", log_name="up-client-reneg.log")
    out = outdir(lab) / "curl-reneg.out"
    try:
        curl = lab.spawn_ns(lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                         "curl -sS --fail --limit-rate 1M --max-time 120 "
                                         f"http://127.0.0.1:{port}/big20.bin | sha256sum"],
                            output=out)
        try:
            # two renegotiations done while the download still runs (curl's pacing is
            # loose: wait for the log, not for a duration)
            deadline = time.monotonic() + 60
            while up.log.read_text().count("renegotiation done") < 2:
                assert curl.poll() is None, f"the download ended first:\n{tail(up.log, 30)}"
                assert time.monotonic() < deadline, tail(up.log, 30)
                time.sleep(0.1)
            assert curl.wait(timeout=150) == 0, f"{out.read_text()}\n{tail(up.log)}"
        finally:
            stop_process(curl)
        assert out.read_text().split()[:1] == [digest], f"{out.read_text()}\n{tail(up.log)}"
    finally:
        up.stop()
    log = up.log.read_text()
    assert log.count("renegotiating (reneg-sec 3)") >= 2, tail(up.log, 30)
    assert "renegotiation did not complete" not in log


def test_reconnect_after_a_server_restart(lab, ovpn_server):
    """The server stops (telling clients RESTART) and comes back: erebus reconnects,
    its listener stays up, and a new download through it succeeds."""
    server = ovpn_server("restart")
    port = _free_port()
    up = Up(lab, server.profile, f"{port}:{WEB_ADDR}:80", log_name="up-restart.log")
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, err
        lab.stop_server("restart")
        _wait_for_log(up, "tunnel down", 20)
        _wait_for_log(up, "reconnect failed", 30)     # with no server, a try fails
        lab.start_server("restart")
        _wait_for_log(up, "reconnected", 60)
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, f"{err}\n{tail(up.log, 30)}"
    finally:
        code = up.stop()
    log = up.log.read_text()
    assert "RESTART" in log or "restart" in log, tail(up.log, 30)
    assert code == 0, tail(up.log, 30)


def test_several_remotes_tried_in_order(lab, ovpn_server):
    server = ovpn_server("gcm")
    text = server.profile.read_text().replace(
        f"remote {server.host} {server.port}",
        f"remote {server.host} 1999\nremote {server.host} {server.port}")
    path = outdir(lab) / "two-remotes.ovpn"
    path.write_text(text)
    os.chmod(path, 0o644)
    cp = erebus(lab, "-v", "probe", path, "--json", "--timeout", "10")
    report = json.loads(cp.stdout)
    assert cp.returncode == 0 and report["server"] == f"{server.host}:{server.port}", cp.stderr
    assert "trying the next remote" in cp.stderr


def _probe_and_fetch(lab, profile, server, tag):
    """probe (with a ping) and a fetch through -L: what a user checks first."""
    cp = erebus(lab, "probe", profile, "--json", "--ping", WEB_ADDR, "--timeout", "30")
    report = json.loads(cp.stdout)
    assert cp.returncode == 0 and report["ping_ms"], (cp.stdout, cp.stderr, server.describe())
    port = _free_port()
    up = Up(lab, profile, f"{port}:{WEB_ADDR}:80", log_name=f"up-{tag}.log")
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, f"{err}\n{tail(up.log)}"
    finally:
        up.stop()
    return report, up


def test_tls_auth_with_chacha20(lab, ovpn_server):
    server = ovpn_server("tls-auth")
    report, up = _probe_and_fetch(lab, server.profile, server, "tls-auth")
    assert report["cipher"] == "CHACHA20-POLY1305"
    # probe --json and the up log's last line count the drops: none on a clean path
    c = report["counters"]
    assert c["dropped_data_auth"] == c["dropped_malformed"] == c["dropped_replay"] == 0, c
    assert "counters: datagrams_in=" in up.log.read_text(), tail(up.log)


def test_tls_crypt_with_username_password_and_auth_token(lab, ovpn_server):
    server = ovpn_server("tls-crypt")
    report, up = _probe_and_fetch(lab, server.profile, server, "tls-crypt")
    assert "alice" not in up.log.read_text() or "s3cret" not in up.log.read_text()
    assert "s3cret" not in up.log.read_text()


def test_wrong_password_is_auth_failed_in_one_line(lab, ovpn_server):
    server = ovpn_server("tls-crypt")
    profile = outdir(lab) / "wrong-password.ovpn"
    profile.write_text(server.profile.read_text().replace("\ns3cret\n", "\nwrong\n"))
    os.chmod(profile, 0o644)
    cp = erebus(lab, "probe", profile, "--timeout", "30")
    assert cp.returncode == 1
    assert cp.stdout.startswith("FAILED (auth): ") and "AUTH" not in cp.stdout[:7], cp.stdout
    assert len(cp.stdout.strip().splitlines()) == 1 and "wrong" not in cp.stdout + cp.stderr


def test_wrong_tls_auth_key_times_out_naming_tls_auth(lab, ovpn_server):
    server = ovpn_server("tls-auth")
    text = server.profile.read_text()
    start, end = text.index("<tls-auth>"), text.index("</tls-auth>")
    other_key = re.sub(r"(?m)^[0-9a-f]{32}$", "5a" * 16, text[start:end])   # another key
    text = text[:start] + other_key + text[end:]
    profile = outdir(lab) / "wrong-tls-auth.ovpn"
    profile.write_text(text)
    os.chmod(profile, 0o644)
    cp = erebus(lab, "probe", profile, "--timeout", "6")
    assert cp.returncode == 1
    assert cp.stdout.startswith("FAILED (unreachable)") and "tls-auth" in cp.stdout, cp.stdout


@pytest.mark.parametrize("mode", ["gcm", "tls-auth", "tls-crypt", "tcp", "none"])
def test_pcap_outer_packets_decoded_for_each_mode(lab, ovpn_server, mode):
    """Wireshark's OpenVPN dissector reads erebus's outer packets in every TLS mode
    (TCP transport is recorded as datagrams too), and the inner ICMP next to them."""
    server = ovpn_server(mode)
    pcap = outdir(lab) / f"{mode}.pcapng"
    cp = erebus(lab, "probe", server.profile, "--ping", WEB_ADDR, "--pcap", pcap)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    t = subprocess.run(["tshark", "-r", str(pcap), "-d", f"udp.port=={server.port},openvpn",
                        "-T", "fields", "-e", "frame.interface_id", "-e", "openvpn.opcode",
                        "-e", "icmp.type"], capture_output=True, text=True, timeout=60)
    rows = {tuple(line.split("\t")) for line in t.stdout.splitlines()}
    opcodes = {r[1] for r in rows if r[0] == "0"}
    assert {"0x07", "0x08", "0x04", "0x05", "0x09"} <= opcodes, (opcodes, t.stderr)
    assert ("1", "", "8") in rows and ("1", "", "0") in rows, rows


def test_aes_256_cbc_sha256_with_comp_lzo_no(lab, ovpn_server):
    server = ovpn_server("cbc")
    report, _ = _probe_and_fetch(lab, server.profile, server, "cbc")
    assert report["cipher"] == "AES-256-CBC"


def test_lz4_compressed_packets_from_the_server(lab, ovpn_server):
    """The server compresses what compresses (LZ4 v2): a text file arrives byte-exact,
    and the pcap shows small outer packets carrying full-size inner ones."""
    server = ovpn_server("lz4")
    text = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n"
                   for i in range(40000)).encode()
    (lab.dir / "www" / "text.txt").write_bytes(text)
    os.chmod(lab.dir / "www" / "text.txt", 0o644)
    digest = hashlib.sha256(text).hexdigest()
    report, _ = _probe_and_fetch(lab, server.profile, server, "lz4")
    port = _free_port()
    pcap = outdir(lab) / "lz4.pcapng"
    up = Up(lab, server.profile, f"{port}:{WEB_ADDR}:80", log_name="up-lz4-text.log",
            args=["--pcap", pcap])
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/text.txt")
        assert got == digest, f"{err}\n{tail(up.log)}"
    finally:
        up.stop()
    assert "compression framing: compress lz4-v2" in up.log.read_text(), tail(up.log)
    t = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.interface_id",
                        "-e", "frame.len", "-e", "ip.src"],
                       capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in t.stdout.splitlines()]
    big_inner = sum(1 for r in rows if r[0] == "1" and int(r[1]) > 1200)
    outer_in = [int(r[1]) for r in rows if r[0] == "0" and r[2].startswith(server.host)]
    assert big_inner > 100 and sum(outer_in) < len(text) / 2, (big_inner, sum(outer_in))


def test_static_key_mode(lab, ovpn_server):
    """`secret` (pre-shared key, no TLS) with AES-256-CBC + SHA256: deprecated, but a
    2.6 server still speaks it and so does erebus."""
    server = ovpn_server("static")
    report, up = _probe_and_fetch(lab, server.profile, server, "static")
    assert report["cipher"] == "AES-256-CBC"
    assert report["virtual_ip"] == "198.19.8.2"
    assert "deprecated" in up.log.read_text()
