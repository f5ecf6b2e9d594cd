"""The control channel's TLS against stock OpenVPN 2.6 servers in the lab, with the client
running as ``nobody``: crl-verify on the chain OpenSSL builds (an intermediate revoked by
the root's CRL, which the server does not even send), a revoked server, an encrypted key
and a PKCS#12 bundle unlocked by askpass (loaded from memory, no temp files)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.interop.util import erebus, outdir
from tests.lab import SERVER_LINK_ADDR, stop_process, wait_for_log
from tests.pki import ca_extensions, issue, key_usage

pytestmark = pytest.mark.interop

CHAIN_INDEX = 12          # pool 198.19.12.0/24, port 1194 + 12, tun12: no lab mode uses it


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def _probe(lab, profile: Path) -> dict:
    cp = erebus(lab, "probe", profile, "--json", "--timeout", 30, timeout=60)
    try:
        return json.loads(cp.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"probe printed no JSON (exit {cp.returncode}):\n{cp.stdout}\n{cp.stderr}",
                    pytrace=False)


def _crl(issuer: x509.Name, key, revoked=()) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer)
               .last_update(now - datetime.timedelta(days=1))
               .next_update(now + datetime.timedelta(days=30)))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(now - datetime.timedelta(hours=1)).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _block(tag: str, text: str) -> str:
    return f"<{tag}>\n{text.strip()}\n</{tag}>\n"


def _load(path: Path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def _lab_ca(lab):
    key = serialization.load_pem_private_key(lab.pki.key("ca").read_bytes(), None)
    return _load(lab.pki.ca_cert), key


def test_a_revoked_server_is_refused_and_a_current_crl_passes(lab, ovpn_server):
    server = ovpn_server("gcm")
    ca, ca_key = _lab_ca(lab)
    serial = _load(lab.pki.cert("server")).serial_number
    out = outdir(lab)
    base = server.profile.read_text()
    fine = _write(out / "crl-fine.ovpn", base + _block("crl-verify", _crl(ca.subject, ca_key,
                                                                          [0x1234])))
    report = _probe(lab, fine)
    assert report["ok"] is True, report
    revoked = _write(out / "crl-revoked.ovpn",
                     base + _block("crl-verify", _crl(ca.subject, ca_key, [0x1234, serial])))
    report = _probe(lab, revoked)
    assert report["ok"] is False and report["stage"] == "certificate", report
    assert "CN=server" in report["error"] and f"(serial {serial:X}) is revoked" \
        in report["error"], report["error"]


@pytest.fixture
def chain_server(lab):
    """A stock server whose certificate is issued by an intermediate CA under another
    root, and whose cert file holds its own certificate only (so the intermediate is not
    sent); it trusts the lab CA for the client."""
    d = Path(tempfile.mkdtemp(dir=lab.dir, prefix="chain-"))
    os.chmod(d, 0o755)
    root = issue(d / "root.crt", d / "root.key", "erebus-lab-root", None, ca_extensions())
    mid = issue(d / "mid.crt", d / "mid.key", "erebus-lab-intermediate", root,
                ca_extensions())
    issue(d / "leaf.crt", d / "leaf.key", "chain-server", mid,
          [(x509.BasicConstraints(ca=False, path_length=None), True),
           (key_usage(digital_signature=True, key_encipherment=True), True),
           (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)])
    n = CHAIN_INDEX
    port = 1194 + n
    conf = [f"server 198.19.{n}.0 255.255.255.0", "topology subnet", f"dev tun{n}",
            "dev-type tun", "proto udp", f"local {SERVER_LINK_ADDR}", f"port {port}",
            f"ca {lab.pki.ca_cert}", f"cert {d / 'leaf.crt'}", f"key {d / 'leaf.key'}",
            "dh none", "keepalive 10 60", "data-ciphers AES-256-GCM", "disable-dco",
            "verb 4", f"log {d / 'server.log'}"]
    (d / "server.conf").write_text("\n".join(conf) + "\n")
    proc = lab.spawn_ns(lab.ns_srv, ["openvpn", "--config", str(d / "server.conf")],
                        output=d / "server.out")
    try:
        wait_for_log(d / "server.log", "Initialization Sequence Completed", timeout=30,
                     process=proc, what="the chain server")
        yield dict(dir=d, port=port, root=root, mid=mid,
                   mid_serial=_load(d / "mid.crt").serial_number)
    finally:
        stop_process(proc)


def test_an_intermediate_the_server_does_not_send_is_checked_against_the_roots_crl(
        lab, chain_server):
    c = chain_server
    d = c["dir"]
    head = ("client\ndev tun\nproto udp\n"
            f"remote {SERVER_LINK_ADDR} {c['port']}\nnobind\nremote-cert-tls server\n"
            "data-ciphers AES-256-GCM\n"
            + _block("ca", (d / "root.crt").read_text() + (d / "mid.crt").read_text())
            + _block("cert", lab.pki.cert("client").read_text())
            + _block("key", lab.pki.key("client").read_text()))
    (root_name, root_key), (mid_name, mid_key) = c["root"], c["mid"]
    out = outdir(lab)
    current = _crl(root_name, root_key, [0x77]) + _crl(mid_name, mid_key)
    report = _probe(lab, _write(out / "chain-fine.ovpn", head + _block("crl-verify", current)))
    assert report["ok"] is True, (report, (d / "server.log").read_text()[-2000:])
    revoking = _crl(root_name, root_key, [c["mid_serial"]]) + _crl(mid_name, mid_key)
    report = _probe(lab, _write(out / "chain-revoked.ovpn",
                                head + _block("crl-verify", revoking)))
    assert report["ok"] is False and report["stage"] == "certificate", report
    error = report["error"]
    # the stock client refuses the same profile for the same reason
    for name, needle in (("chain-fine.ovpn", "Initialization Sequence Completed"),
                         ("chain-revoked.ovpn", "VERIFY ERROR: depth=1, error=certificate "
                                                "revoked")):
        log = out / f"stock-{name}.log"
        stock = lab.spawn_ns(lab.ns_cli, ["openvpn", "--config", str(out / name),
                                          "--log", str(log)])
        try:
            wait_for_log(log, needle, timeout=30, process=stock, what="stock client")
        finally:
            stop_process(stock)
    assert "CA certificate 'CN=erebus-lab-intermediate' (issued by 'CN=erebus-lab-root') " \
        f"in the server's chain (serial {c['mid_serial']:X}) is revoked by the CRL" \
        in error, error


def test_encrypted_key_and_pkcs12_with_askpass(lab, ovpn_server):
    server = ovpn_server("gcm")
    out = outdir(lab)
    askpass = _write(out / "pass.txt", "lab passphrase\n")
    secret = serialization.BestAvailableEncryption(b"lab passphrase")
    key = serialization.load_pem_private_key(lab.pki.key("client").read_bytes(), None)
    base = server.profile.read_text()
    locked_key = key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8, secret).decode()
    encrypted = re.sub(r"<key>.*?</key>\n", lambda _: _block("key", locked_key), base,
                       flags=re.S) + f"askpass {askpass}\n"
    report = _probe(lab, _write(out / "encrypted-key.ovpn", encrypted))
    assert report["ok"] is True, report
    bundle = pkcs12.serialize_key_and_certificates(
        b"client", key, _load(lab.pki.cert("client")), [_load(lab.pki.ca_cert)], secret)
    p12 = re.sub(r"<(cert|key)>.*?</\1>\n", "", base, flags=re.S)
    p12 += _block("pkcs12", base64.encodebytes(bundle).decode()) + f"askpass {askpass}\n"
    report = _probe(lab, _write(out / "bundle.ovpn", p12))
    assert report["ok"] is True, report
