"""tls-crypt-v2 against stock OpenVPN 2.6 servers in the lab, erebus running as ``nobody``:
keys made by ``openvpn --genkey`` at test time (never committed), a server with
``tls-crypt-v2`` (probe, ping, a download byte for byte, the opcodes on the wire), one
that enforces ``tls-crypt-v2-verify`` (a key it accepts, one it refuses), and a client key
made with another server key."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from tests.interop.util import (Up, _big_file, _fetch, _free_port, outdir,
                                 probe_json)
from tests.lab import MODES, WEB_ADDR, Mode, _LineWithScript, tail

pytestmark = pytest.mark.interop

# tls_crypt.c tls_crypt_v2_verify_metadata: metadata_type 0 is the user's own bytes,
# written to $metadata_file.  Only the key made for "alice" passes.
_VERIFY_SH = """#!/bin/sh
[ "$metadata_type" = 0 ] && [ "$(cat "$metadata_file")" = alice ]
"""

MODES.setdefault("tls-crypt-v2", Mode(26, server_lines=(
    "tls-crypt-v2 {lab_dir}/tcv2/server.key",)))
MODES.setdefault("tls-crypt-v2-verify", Mode(27, server_lines=(
    "tls-crypt-v2 {lab_dir}/tcv2/server.key", "script-security 2",
    _LineWithScript("tls-crypt-v2-verify {script}", "tcv2-verify.sh", _VERIFY_SH))))


@pytest.fixture(scope="module")
def keys(lab) -> dict[str, Path]:
    """The server key, client keys made from it (default metadata, 'alice', 'mallory'),
    and a client key made from another server key."""
    d = lab.dir / "tcv2"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o755)

    def genkey(*args):
        subprocess.run(["openvpn", *args], check=True, capture_output=True, timeout=30)

    genkey("--genkey", "tls-crypt-v2-server", str(d / "server.key"))
    genkey("--genkey", "tls-crypt-v2-server", str(d / "other-server.key"))
    genkey("--genkey", "tls-crypt-v2-client", str(d / "client.key"),
           "--tls-crypt-v2", str(d / "server.key"))
    for user in ("alice", "mallory"):
        meta = base64.b64encode(user.encode()).decode()
        genkey("--tls-crypt-v2", str(d / "server.key"), "--genkey", "tls-crypt-v2-client",
               str(d / f"{user}.key"), meta)
    genkey("--genkey", "tls-crypt-v2-client", str(d / "wrong.key"),
           "--tls-crypt-v2", str(d / "other-server.key"))
    for f in d.iterdir():
        os.chmod(f, 0o644)
    return {f.stem: f for f in d.iterdir()}


def v2_profile(lab, server, key: Path, name: str) -> Path:
    """The server's lab profile with the client key inline."""
    path = outdir(lab) / name
    path.write_text(server.profile.read_text()
                    + f"<tls-crypt-v2>\n{key.read_text().strip()}\n</tls-crypt-v2>\n")
    os.chmod(path, 0o644)
    return path


def probe(lab, profile: Path, *extra) -> tuple[int, dict]:
    cp, report = probe_json(lab, profile, *extra)
    return cp.returncode, report


def outer_opcodes(pcap: Path) -> list[tuple[str, int]]:
    """(source address, opcode) of every outer packet, in order (tshark reads the UDP
    payload; its OpenVPN dissector knows nothing of tls-crypt)."""
    fields = subprocess.run(["tshark", "-r", str(pcap), "-Y", "frame.interface_id == 0",
                             "-T", "fields", "-e", "ip.src", "-e", "udp.payload"],
                            capture_output=True, text=True, timeout=60)
    assert fields.returncode == 0, fields.stderr
    rows = [line.split("\t") for line in fields.stdout.splitlines()]
    return [(src, int(payload[:2], 16) >> 3) for src, payload in rows if payload]


def test_probe_ping_and_the_wire(lab, ovpn_server, keys):
    server = ovpn_server("tls-crypt-v2")
    pcap = outdir(lab) / "tcv2.pcapng"
    code, report = probe(lab, v2_profile(lab, server, keys["client"], "tcv2.ovpn"),
                         "--ping", WEB_ADDR, "--pcap", pcap)
    assert code == 0 and report["ok"] is True, (report, server.describe())
    assert report["ping_ms"] is not None and report["ping_ms"] > 0
    log = server.log_tail(400)
    assert "Control Channel: using tls-crypt-v2 key" in log, server.describe()
    # the client's reset is V3 (10); the server's answer (8) asks for WKc again; the
    # client's next control packet is P_CONTROL_WKC_V1 (11), then plain tls-crypt only
    ops = outer_opcodes(pcap)
    ours = [op for src, op in ops if src != server.host]
    theirs = [op for src, op in ops if src == server.host]
    assert ours[0] == 10 and theirs[0] == 8, ops
    assert ours.count(11) >= 1 and ours.index(11) == ours.count(10), ops
    assert set(ours[ours.index(11) + ours.count(11):]) <= {4, 5, 9}, ops


def test_download_byte_exact(lab, ovpn_server, keys):
    server = ovpn_server("tls-crypt-v2")
    digest = _big_file(lab, "big10.bin", 10 * 1024 * 1024)
    port = _free_port()
    up = Up(lab, v2_profile(lab, server, keys["client"], "tcv2-up.ovpn"),
            f"{port}:{WEB_ADDR}:80", log_name="up-tcv2.log")
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/big10.bin")
        assert got == digest, f"{err}\n{tail(up.log)}"
    finally:
        code = up.stop()
    assert code == 0, tail(up.log)


def test_verify_script_accepts_alice_and_refuses_mallory(lab, ovpn_server, keys):
    server = ovpn_server("tls-crypt-v2-verify")
    code, report = probe(lab, v2_profile(lab, server, keys["alice"], "alice.ovpn"))
    assert code == 0 and report["ok"] is True, (report, server.describe())
    assert "TLS CRYPT V2 VERIFY SCRIPT OK" in server.log_tail(400), server.describe()
    code, report = probe(lab, v2_profile(lab, server, keys["mallory"], "mallory.ovpn"),
                         "--timeout", 15)
    assert code == 1 and report["ok"] is False, report
    assert "TLS CRYPT V2 VERIFY SCRIPT ERROR" in server.log_tail(400), server.describe()
    # the server answered the reset (statelessly) and dropped what followed, silently
    assert report["stage"] == "tls", report
    assert "tls-crypt-v2-verify" in report["error"], report["error"]
    assert "refuses a client key" in report["error"], report["error"]


def test_a_wrong_server_key_is_explained(lab, ovpn_server, keys):
    server = ovpn_server("tls-crypt-v2")
    code, report = probe(lab, v2_profile(lab, server, keys["wrong"], "wrong.ovpn"),
                         "--timeout", 10)
    assert code == 1 and report["ok"] is False, report
    assert report["stage"] == "unreachable", report
    error = report["error"]
    assert "no answer from the server" in error and "with tls-crypt-v2" in error, error
    assert "wrong key" in error and "drop every packet silently" in error, error
    assert "Can not unwrap tls-crypt-v2 client key" in server.log_tail(400), \
        server.describe()
