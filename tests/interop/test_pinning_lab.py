"""Certificate pinning and TLS options against stock OpenVPN 2.6 servers in the lab, erebus
running as ``nobody``: 2.6's PKI-less setup (man page, example-fingerprint.rst: a server
with a self-signed certificate and the client's fingerprint, a client with the server's
``peer-fingerprint`` and no ``ca``), a wrong fingerprint, ``verify-hash`` of the lab CA,
``capath`` in the layout ``openssl rehash`` makes (and a CRL in it), ``crl-verify DIR
dir`` with the server's serial in it, and ``tls-groups`` against a server that offers
one group only."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.interop.test_tls_lab import _crl
from tests.interop.util import Up, _big_file, _fetch, _free_port, erebus, outdir
from tests.lab import SERVER_LINK_ADDR, WEB_ADDR, stop_process, tail, wait_for_log
from tests.pki import issue, key_usage

pytestmark = pytest.mark.interop

PINNED_INDEX = 70         # pool 198.19.70.0/24, port 1194 + 70, tun70: no lab mode uses it
GROUPS_INDEX = 71


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def _block(tag: str, text: str) -> str:
    return f"<{tag}>\n{text.strip()}\n</{tag}>\n"


def _der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
        serialization.Encoding.DER)


def _fp(path: Path, algo=hashlib.sha256) -> str:
    """As ``openssl x509 -fingerprint`` prints it (what the options take)."""
    return ":".join(f"{b:02X}" for b in algo(_der(path)).digest())


def _probe(lab, profile: Path) -> dict:
    cp = erebus(lab, "probe", profile, "--json", "--timeout", 30, timeout=90)
    try:
        return json.loads(cp.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"probe printed no JSON (exit {cp.returncode}):\n{cp.stdout}\n{cp.stderr}",
                    pytrace=False)


def _server(lab, d: Path, n: int, lines: list[str], what: str):
    """A stock 2.6 server in the lab's server namespace, its config in ``d``."""
    conf = [f"server 198.19.{n}.0 255.255.255.0", "topology subnet", f"dev tun{n}",
            "dev-type tun", "proto udp", f"local {SERVER_LINK_ADDR}", f"port {1194 + n}",
            "dh none", "keepalive 10 60", "data-ciphers AES-256-GCM", "disable-dco",
            f"push \"route {WEB_ADDR.rsplit('.', 1)[0]}.0 255.255.255.0\"",
            "verb 4", f"log {d / 'server.log'}", *lines]
    (d / "server.conf").write_text("\n".join(conf) + "\n")
    proc = lab.spawn_ns(lab.ns_srv, ["openvpn", "--config", str(d / "server.conf")],
                        output=d / "server.out")
    try:
        wait_for_log(d / "server.log", "Initialization Sequence Completed", timeout=30,
                     process=proc, what=what)
    except Exception:
        stop_process(proc)
        raise
    return proc


def _client_head(port: int) -> str:
    return (f"client\ndev tun\nproto udp\nremote {SERVER_LINK_ADDR} {port}\nnobind\n"
            "data-ciphers AES-256-GCM\nverb 3\n")


@pytest.fixture(scope="module")
def pinned_server(lab):
    """2.6's PKI-less server: a self-signed certificate, no ca, the fingerprint of the
    one client it accepts (itself self-signed)."""
    d = Path(tempfile.mkdtemp(dir=lab.dir, prefix="pinned-"))
    os.chmod(d, 0o755)
    server_exts = [(x509.BasicConstraints(ca=False, path_length=None), True),
                   (key_usage(digital_signature=True, key_encipherment=True), True),
                   (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)]
    issue(d / "server.crt", d / "server.key", "pin-server", None, server_exts)
    issue(d / "alice.crt", d / "alice.key", "alice", None,
          [(x509.BasicConstraints(ca=False, path_length=None), True)])
    issue(d / "impostor.crt", d / "impostor.key", "pin-server", None, server_exts)
    proc = _server(lab, d, PINNED_INDEX, [
        f"cert {d / 'server.crt'}", f"key {d / 'server.key'}",
        _block("peer-fingerprint", f"# alice\n{_fp(d / 'alice.crt')}").rstrip()],
        "the PKI-less server")
    try:
        yield dict(dir=d, port=1194 + PINNED_INDEX)
    finally:
        stop_process(proc)


def _pki_less_profile(lab, s: dict, fingerprint: str, name: str) -> Path:
    d = s["dir"]
    return _write(outdir(lab) / name, _client_head(s["port"])
                  + f"peer-fingerprint {fingerprint}\n"
                  + _block("cert", (d / "alice.crt").read_text())
                  + _block("key", (d / "alice.key").read_text()))


def test_pki_less_peer_fingerprint_connects_and_fetches(lab, pinned_server):
    s = pinned_server
    profile = _pki_less_profile(lab, s, _fp(s["dir"] / "server.crt"), "pinned.ovpn")
    cp = erebus(lab, "check", profile, "--json")
    report = json.loads(cp.stdout)
    assert report["ok"], report
    assert not [w for w in report["warnings"] if "No server certificate verification" in w]
    assert report["settings"]["server_checks"][0].startswith(
        "Using certificate fingerprint to verify peer (no CA option set)"), report
    digest = _big_file(lab, "pin2.bin", 2 * 1024 * 1024)
    port = _free_port()
    up = Up(lab, profile, f"{port}:{WEB_ADDR}:80", log_name="up-pinned.log")
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/pin2.bin")
        assert got == digest, f"{err}\n{tail(up.log)}\n{tail(s['dir'] / 'server.log')}"
    finally:
        up.stop()
    assert "alice" in (s["dir"] / "server.log").read_text()


def test_pki_less_a_server_with_another_certificate_is_refused_by_its_fingerprint(
        lab, pinned_server):
    s = pinned_server
    # the profile pins another certificate of the same name (as if the server had been
    # replaced): the server's own is refused, named with its fingerprint
    wrong = _fp(s["dir"] / "impostor.crt")
    report = _probe(lab, _pki_less_profile(lab, s, wrong, "pinned-wrong.ovpn"))
    assert report["ok"] is False and report["stage"] == "certificate", report
    error = report["error"]
    assert "server certificate 'CN=pin-server'" in error, error
    assert "does not match peer-fingerprint" in error, error
    assert f"(got certificate fingerprint: {_fp(s['dir'] / 'server.crt').lower()})" in error


@pytest.fixture(scope="module")
def gcm(lab, ovpn_server):
    server = ovpn_server("gcm")
    text = server.profile.read_text()
    return dict(server=server, text=text,
                no_ca=re.sub(r"<ca>\n.*?</ca>\n", "", text, flags=re.S))


def test_verify_hash_of_the_lab_ca(lab, gcm):
    out = outdir(lab)
    right = _fp(lab.pki.ca_cert, hashlib.sha1)
    report = _probe(lab, _write(out / "vh-right.ovpn", gcm["text"] + f"verify-hash {right}\n"))
    assert report["ok"] is True, report
    sha256 = _fp(lab.pki.ca_cert)
    report = _probe(lab, _write(out / "vh-256.ovpn",
                                gcm["text"] + f"verify-hash {sha256} SHA256\n"))
    assert report["ok"] is True, report
    wrong = _fp(lab.pki.cert("rogue-ca"), hashlib.sha1)
    report = _probe(lab, _write(out / "vh-wrong.ovpn", gcm["text"] + f"verify-hash {wrong}\n"))
    assert report["ok"] is False and report["stage"] == "certificate", report
    assert "CA certificate 'CN=erebus-lab-ca'" in report["error"], report
    assert "does not match verify-hash SHA1" in report["error"], report
    assert _fp(lab.pki.ca_cert, hashlib.sha1).lower() in report["error"], report


def _hashed_dir(lab, *files: tuple[str, str]) -> Path:
    """A directory in the layout ``openssl rehash`` makes (symlinks HASH.0 / HASH.r0)."""
    d = Path(tempfile.mkdtemp(dir=lab.dir, prefix="capath-"))
    for name, text in files:
        _write(d / name, text)
    subprocess.run(["openssl", "rehash", str(d)], check=True, capture_output=True,
                   timeout=30)
    os.chmod(d, 0o755)
    assert [p for p in d.iterdir() if re.fullmatch(r"[0-9a-f]{8}\.r?0", p.name)]
    return d


def test_capath_with_the_lab_ca_in_hashed_layout(lab, gcm):
    d = _hashed_dir(lab, ("lab-ca.pem", lab.pki.ca_cert.read_text()))
    out = outdir(lab)
    report = _probe(lab, _write(out / "capath.ovpn", gcm["no_ca"] + f"capath {d}\n"))
    assert report["ok"] is True, report
    # the rogue CA alone: the lab server does not chain to it
    rogue = _hashed_dir(lab, ("rogue.pem", lab.pki.cert("rogue-ca").read_text()))
    report = _probe(lab, _write(out / "capath-rogue.ovpn", gcm["no_ca"] + f"capath {rogue}\n"))
    assert report["ok"] is False and report["stage"] == "certificate", report
    assert "CA certificate 'CN=erebus-lab-ca'" in report["error"], report
    assert "rejected: self-signed certificate in certificate chain" in report["error"], report


def test_capath_crl_revokes_the_server(lab, gcm):
    ca = x509.load_pem_x509_certificate(lab.pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(lab.pki.key("ca").read_bytes(), None)
    serial = x509.load_pem_x509_certificate(lab.pki.cert("server").read_bytes()).serial_number
    d = _hashed_dir(lab, ("lab-ca.pem", lab.pki.ca_cert.read_text()),
                    ("lab-ca.crl", _crl(ca.subject, ca_key, [serial])))
    report = _probe(lab, _write(outdir(lab) / "capath-crl.ovpn",
                                gcm["no_ca"] + f"capath {d}\n"))
    assert report["ok"] is False and report["stage"] == "certificate", report
    assert "CN=server" in report["error"] and "revoked by the CRL (capath)" in report["error"]


def test_crl_verify_dir_with_the_servers_serial_refuses_it(lab, gcm):
    d = Path(tempfile.mkdtemp(dir=lab.dir, prefix="crldir-"))
    os.chmod(d, 0o755)
    out = outdir(lab)
    profile = _write(out / "crldir.ovpn", gcm["text"] + f"crl-verify {d} dir\n")
    report = _probe(lab, profile)
    assert report["ok"] is True, report                      # nothing revoked yet
    serial = x509.load_pem_x509_certificate(lab.pki.cert("server").read_bytes()).serial_number
    _write(d / str(serial), "")
    report = _probe(lab, profile)
    assert report["ok"] is False and report["stage"] == "certificate", report
    assert "server certificate 'CN=server'" in report["error"], report
    assert f"(serial {serial}) is revoked: {d}/{serial} exists" in report["error"], report


@pytest.fixture(scope="module")
def groups_server(lab):
    """A lab-PKI server that offers the P-384 group only."""
    d = Path(tempfile.mkdtemp(dir=lab.dir, prefix="groups-"))
    os.chmod(d, 0o755)
    proc = _server(lab, d, GROUPS_INDEX, [
        f"ca {lab.pki.ca_cert}", f"cert {lab.pki.cert('server')}",
        f"key {lab.pki.key('server')}", "tls-groups secp384r1"], "the tls-groups server")
    try:
        yield dict(dir=d, port=1194 + GROUPS_INDEX)
    finally:
        stop_process(proc)


def test_tls_groups_the_server_lacks_fail_clearly_and_a_common_one_works(lab, groups_server):
    g = groups_server
    head = (_client_head(g["port"]) + "remote-cert-tls server\n"
            + _block("ca", lab.pki.ca_cert.read_text())
            + _block("cert", lab.pki.cert("client").read_text())
            + _block("key", lab.pki.key("client").read_text()))
    out = outdir(lab)
    report = _probe(lab, _write(out / "groups-x25519.ovpn", head + "tls-groups X25519\n"))
    assert report["ok"] is False and report["stage"] == "tls", report
    # the stock server logs "no suitable key share" and restarts the client's instance
    # before its alert is sent: the handshake stalls, and erebus says why it may
    assert "with tls-groups X25519, that is how a 2.6 server that offers none of those " \
        "groups refuses it" in report["error"], report
    report = _probe(lab, _write(out / "groups-both.ovpn",
                                head + "tls-groups X25519:secp384r1\n"))
    assert report["ok"] is True, (report, tail(g["dir"] / "server.log"))
    report = _probe(lab, _write(out / "groups-suiteb.ovpn",
                                head + "tls-groups secp384r1\ntls-cert-profile suiteb\n"))
    assert report["ok"] is True, (report, tail(g["dir"] / "server.log"))
