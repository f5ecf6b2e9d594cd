"""The control channel's TLS through real handshakes in memory (a pyOpenSSL server over
memory BIOs, no sockets, no files): keys never touch the disk, crl-verify checks the chain
OpenSSL built (not what the server chose to send), CRLs OpenSSL reads and cryptography
does not, versions and ciphersuites, the client certificate chain, RFC 5705 export, and
TLS failures surfacing as SessionError."""

from __future__ import annotations

import datetime
import io
import os
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto

from erebus.errors import ConfigError, SessionError
from erebus.openvpn import tls as T
from erebus.openvpn.config import load_profile, parse_profile
from erebus.openvpn.tls import TlsClient, TlsContext, TlsSettings
from tests.profiles import pki as P
from tests.unit import odd_certs as ODD

PKI = P.Pki()


# -- an in-memory TLS server -------------------------------------------------------------

def server_context(key, chain, *, max_version=None, client_ca=None, ciphersuites=None
                   ) -> SSL.Context:
    """A server sending ``chain`` (its certificate first, then what else it sends)."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate(chain[0])
    ctx.use_privatekey(key)
    for cert in chain[1:]:
        ctx.add_extra_chain_cert(cert)
    if max_version:
        ctx.set_max_proto_version(max_version)
    if ciphersuites:
        ctx.set_tls13_ciphersuites(ciphersuites)
    if client_ca is not None:
        ctx.get_cert_store().add_cert(crypto.X509.from_cryptography(client_ca))
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: a[-1])
    return ctx


def handshake(client: TlsClient, sctx: SSL.Context) -> SSL.Connection:
    """Both sides until the client is established; bounded, raises what the client
    raises."""
    server = SSL.Connection(sctx, None)
    server.set_accept_state()
    for _ in range(20):
        done = client.handshake()
        out = client.take_output()
        if out:
            server.bio_write(out)
        try:
            server.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error:
            pass          # the server refused: its alert goes to the client
        try:
            client.feed(server.bio_read(65536))
        except SSL.WantReadError:
            pass
        if done:
            return server
    raise AssertionError("no handshake in 20 rounds")


def settings(**kw) -> TlsSettings:
    kw.setdefault("ca", PKI.ca_pem.encode())
    return TlsSettings(remote_cert_tls="server", **kw)


def crl_pem(issuer_key, issuer, revoked=()) -> bytes:
    return P.crl_pem(P.make_crl(issuer_key, issuer, revoked)).encode()


# -- a root -> intermediate -> server chain ------------------------------------------------

def make_intermediate(root_key, root, cn="Test-Only Intermediate CA"):
    key = P.new_key()
    cert = (x509.CertificateBuilder().subject_name(P.name(cn)).issuer_name(root.subject)
            .public_key(key.public_key()).serial_number(0x1A7E)
            .not_valid_before(P.NOT_BEFORE).not_valid_after(P.NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(P.key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .sign(root_key, hashes.SHA256()))
    return key, cert


@pytest.fixture(scope="module")
def chain():
    root_key, root = P.make_ca("Test-Only Root CA")
    mid_key, mid = make_intermediate(root_key, root)
    leaf_key, leaf = P.make_cert(mid_key, mid, "vpn.example.test", serial=0x5EED)
    return dict(root_key=root_key, root=root, mid_key=mid_key, mid=mid, leaf_key=leaf_key,
                leaf=leaf, ca=(P.cert_pem(root) + P.cert_pem(mid)).encode())


def test_an_intermediate_revoked_by_the_root_is_refused_when_the_server_omits_it(chain):
    """The server sends only its leaf; the client's ca holds root + intermediate, so
    OpenSSL builds leaf -> intermediate -> root and CRL_CHECK_ALL checks the intermediate
    against the root's CRL, which revokes it."""
    crls = crl_pem(chain["root_key"], chain["root"], [0x1A7E]) + \
        crl_pem(chain["mid_key"], chain["mid"])
    sctx = server_context(chain["leaf_key"], [chain["leaf"]])          # the leaf only
    client = TlsClient(settings(ca=chain["ca"], crl=crls))
    with pytest.raises(SessionError) as e:
        handshake(client, sctx)
    assert e.value.stage == "certificate"
    text = str(e.value)
    assert "CN=Test-Only Intermediate CA" in text and "(serial 1A7E)" in text
    assert "revoked by the CRL (crl-verify)" in text and "vpn.example.test" not in text
    # the same CRLs without the revocation: connects, leaf-only or leaf + intermediate
    good = crl_pem(chain["root_key"], chain["root"], [0x1]) + \
        crl_pem(chain["mid_key"], chain["mid"])
    for sent in ([chain["leaf"]], [chain["leaf"], chain["mid"]]):
        ok = TlsClient(settings(ca=chain["ca"], crl=good))
        handshake(ok, server_context(chain["leaf_key"], sent))
        assert ok.established and ok.peer_certificate == chain["leaf"]


def test_a_revoked_intermediate_sent_by_the_server_is_refused_too(chain):
    crls = crl_pem(chain["root_key"], chain["root"], [0x1A7E]) + \
        crl_pem(chain["mid_key"], chain["mid"])
    ca_root_only = P.cert_pem(chain["root"]).encode()
    sctx = server_context(chain["leaf_key"], [chain["leaf"], chain["mid"]])
    with pytest.raises(SessionError, match=r"Intermediate CA.*serial 1A7E.*revoked"):
        handshake(TlsClient(settings(ca=ca_root_only, crl=crls)), sctx)


def test_every_certificate_of_the_chain_needs_its_issuers_crl(chain):
    """Only the root's CRL: the leaf (issued by the intermediate) cannot be checked, and
    the stock client (CRL_CHECK_ALL) refuses it; a leaf revoked by the intermediate's
    CRL is named with its serial."""
    only_root = crl_pem(chain["root_key"], chain["root"])
    sctx = server_context(chain["leaf_key"], [chain["leaf"]])
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(settings(ca=chain["ca"], crl=only_root)), sctx)
    assert "CN=vpn.example.test" in str(e.value) and "no CRL from its issuer" in str(e.value)
    leaf_revoked = only_root + crl_pem(chain["mid_key"], chain["mid"], [0x5EED])
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(settings(ca=chain["ca"], crl=leaf_revoked)), sctx)
    assert e.value.stage == "certificate"
    assert "server certificate 'O=erebus test-only, CN=vpn.example.test'" in str(e.value)
    assert "(serial 5EED) is revoked" in str(e.value)


def test_the_offline_check_builds_the_same_chain(chain):
    """check_server_certificate (erebus check, and the tests of each refusal) verifies
    with OpenSSL like a handshake: the omitted intermediate is found in the ca file."""
    crls = crl_pem(chain["root_key"], chain["root"], [0x1A7E]) + \
        crl_pem(chain["mid_key"], chain["mid"])
    with pytest.raises(SessionError, match="Intermediate CA.*1A7E.*revoked"):
        T.check_server_certificate(chain["leaf"], settings(ca=chain["ca"], crl=crls))


# -- CRLs OpenSSL reads and cryptography refuses -----------------------------------------

def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    size = bytes([n]) if n < 0x80 else (bytes([0x81, n]) if n < 0x100
                                         else bytes([0x82, n >> 8, n & 0xFF]))
    return bytes([tag]) + size + body


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def odd_crl(issuer_key, issuer, revoked, oddity: str) -> bytes:
    """A CRL signed by ``issuer_key``, DER made by hand with one thing strict DER (and so
    cryptography) refuses and OpenSSL takes, as some CA software writes them:
    'explicit-false': extensions with an encoded DEFAULT 'critical FALSE';
    'version-3': a version field of 2 (v3), which CRLs do not have."""
    time = _tlv(0x17, b"240101000000Z")
    sigalg = _seq(_tlv(0x06, bytes.fromhex("2a8648ce3d040302")))          # ecdsa-with-SHA256
    crit = _tlv(0x01, b"\x00") if oddity == "explicit-false" else b""
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    extensions = _tlv(0xA0, _seq(
        _seq(_tlv(0x06, bytes.fromhex("551d23")), crit, _tlv(0x04, aki.public_bytes())),
        _seq(_tlv(0x06, bytes.fromhex("551d14")), crit, _tlv(0x04, _int(7)))))  # CRL number
    tbs = _seq(_int(2 if oddity == "version-3" else 1), sigalg, issuer.subject.public_bytes(),
               time, _tlv(0x18, b"20990101000000Z"),
               _seq(*[_seq(_int(s), time) for s in revoked]), extensions)
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    der = _seq(tbs, sigalg, _tlv(0x03, b"\x00" + signature))
    with pytest.raises((ValueError, x509.InvalidVersion)):   # why the old code refused it
        x509.load_der_x509_crl(der)
    import base64
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return b"-----BEGIN X509 CRL-----\n" + lines + b"\n-----END X509 CRL-----\n"


@pytest.mark.parametrize("oddity", ["explicit-false", "version-3"])
def test_a_crl_cryptography_refuses_but_openssl_reads_works(oddity, tmp_path):
    key, cert = P.make_cert(PKI.ca_key, PKI.ca, "vpn-server", serial=0xBAD)
    sctx = server_context(key, [cert])
    revoking = odd_crl(PKI.ca_key, PKI.ca, [0x77, 0xBAD], oddity)
    # the profile reader takes it (it used to say "a CRL that does not parse")
    text = (f"client\ndev tun\nremote 198.18.1.1 1194\nremote-cert-tls server\n"
            f"{PKI.inline()}<crl-verify>\n{revoking.decode()}</crl-verify>\n")
    profile = parse_profile(text, "odd.ovpn")
    assert profile.crl == revoking
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(profile.tls_settings()), sctx)
    assert e.value.stage == "certificate" and "CN=vpn-server" in str(e.value)
    assert "(serial BAD) is revoked by the CRL" in str(e.value)
    fine = odd_crl(PKI.ca_key, PKI.ca, [0x77], oddity)
    client = TlsClient(settings(crl=fine))
    handshake(client, sctx)
    assert client.established


def test_a_crl_openssl_cannot_read_is_a_profile_problem():
    broken = (b"-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n")
    text = (f"client\ndev tun\nremote 198.18.1.1 1194\n{PKI.inline()}"
            f"<crl-verify>\n{broken.decode()}</crl-verify>\n")
    with pytest.raises(ConfigError) as e:
        parse_profile(text, "bad.ovpn")
    assert "crl-verify" in str(e.value) and "a CRL that does not parse" in str(e.value)


# -- keys stay in memory -------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_AUDIT = {"on": False, "seen": []}


def _audit(event: str, args) -> None:
    if not _AUDIT["on"]:
        return
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and set(mode) & set("wax+")) or \
                (mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS):
            _AUDIT["seen"].append((event, path, mode, flags))
    elif event.startswith("tempfile.") or event in ("os.mkdir", "os.rename", "os.link",
                                                    "shutil.copyfile"):
        _AUDIT["seen"].append((event, args))


sys.addaudithook(_audit)      # hooks cannot be removed; this one only records when on


def test_audit_hook_sees_a_write():
    """The check below can fail: a temp file written the way the old TLS code wrote the
    key is seen."""
    import tempfile
    _AUDIT.update(on=True, seen=[])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fd = os.open(os.path.join(tmp, "key.pem"), os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
    finally:
        _AUDIT["on"] = False
    assert any(e[0] == "tempfile.mkdtemp" for e in _AUDIT["seen"])
    assert any(e[0] == "open" and str(e[1]).endswith("key.pem") for e in _AUDIT["seen"])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_key_material_is_written_during_handshakes_and_renegotiation(tmp_path):
    """An encrypted client key, unlocked at the prompt, a full handshake with a server
    that demands the client certificate, then a second TLS session (a renegotiation,
    which OpenVPN makes with a new TLS session per key id) from the same context:
    nothing is opened for writing, no temp file or folder is made."""
    path = tmp_path / "locked.ovpn"
    path.write_text(f"client\ndev tun\nremote 198.18.1.1 1194\nremote-cert-tls server\n"
                    f"<ca>\n{PKI.ca_pem}</ca>\n<cert>\n{PKI.client_pem}</cert>\n"
                    f"<key>\n{P.key_pem(PKI.client_key, 'open sesame')}</key>\n")
    sctx = server_context(PKI.server_key, [PKI.server], client_ca=PKI.ca)
    _AUDIT.update(on=True, seen=[])
    try:
        profile = load_profile(str(path), stdin=_Tty(), prompt=lambda _: "open sesame")
        tls = profile.tls_settings()
        context = TlsContext(tls)                               # the tunnel's, built once
        first = TlsClient(tls, context)
        server = handshake(first, sctx)
        again = TlsClient(tls, context)                         # the next key id
        server_again = handshake(again, sctx)
        for client, srv in ((first, server), (again, server_again)):
            client.write(b"key method 2")
            srv.bio_write(client.take_output())
            assert srv.recv(100) == b"key method 2"
            assert srv.get_peer_certificate(as_cryptography=True) == PKI.client
    finally:
        _AUDIT["on"] = False
    assert _AUDIT["seen"] == []


def test_the_session_builds_one_context_for_all_its_key_ids():
    from erebus.openvpn.session import ClientSession, SessionSettings
    session = ClientSession(SessionSettings(tls=settings()), 0.0)
    a, b = session._new_tls(), session._new_tls()
    assert a is not b and a.context is b.context


# -- versions, ciphers, the client chain, errors -------------------------------------------

def test_versions_and_ciphersuites_are_applied():
    sctx = server_context(PKI.server_key, [PKI.server])
    c = TlsClient(settings(tls_ciphersuites="TLS_CHACHA20_POLY1305_SHA256"))
    handshake(c, sctx)
    assert (c.version, c.cipher) == ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256")
    c = TlsClient(settings(tls_version_max="1.2", tls_cipher="ECDHE-ECDSA-AES128-GCM-SHA256"))
    handshake(c, sctx)
    assert (c.version, c.cipher) == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
    with pytest.raises(ConfigError, match="tls-ciphersuites"):
        TlsContext(settings(tls_ciphersuites="TLS_NO_SUCH_SUITE"))
    with pytest.raises(ConfigError, match="tls-cipher: no usable cipher"):
        TlsContext(settings(tls_cipher="NO-SUCH-CIPHER"))


def test_iana_tls_cipher_names_from_a_profile_reach_openssl():
    text = (f"client\ndev tun\nremote 198.18.1.1 1194\nremote-cert-tls server\n"
            f"tls-version-max 1.2\ntls-cipher TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384\n"
            f"{PKI.inline()}")
    c = TlsClient(parse_profile(text, "iana.ovpn").tls_settings())
    handshake(c, server_context(PKI.server_key, [PKI.server]))
    assert c.cipher == "ECDHE-ECDSA-AES256-GCM-SHA384"


def test_the_client_sends_its_extra_certs(chain):
    """A client certificate issued by an intermediate the server does not have: the
    server verifies it only because extra-certs sent the intermediate."""
    ckey, ccert = P.make_cert(chain["mid_key"], chain["mid"], "client", server=False)
    sctx = server_context(PKI.server_key, [PKI.server], client_ca=chain["root"])
    s = settings(cert=P.cert_pem(ccert).encode(), key=P.key_pem(ckey).encode(),
                 extra_certs=P.cert_pem(chain["mid"]).encode())
    server = handshake(TlsClient(s), sctx)
    assert server.get_verified_chain(as_cryptography=True) == [ccert, chain["mid"],
                                                               chain["root"]]


def test_a_key_that_is_not_the_certificates_is_a_config_error():
    s = settings(cert=PKI.client_pem.encode(), key=P.key_pem(P.new_key()).encode())
    with pytest.raises(ConfigError) as e:
        TlsContext(s)
    assert e.value.option == "cert" and "cannot load the client certificate and key" \
        in str(e.value)
    locked = settings(cert=PKI.client_pem.encode(),
                      key=P.key_pem(PKI.client_key, "pw").encode())
    with pytest.raises(ConfigError, match="locked by its passphrase"):
        TlsContext(locked)


def test_tls_failures_are_session_errors_with_stage_tls():
    # the server speaks TLS 1.2 at most, the profile asks for 1.3
    sctx = server_context(PKI.server_key, [PKI.server], max_version=SSL.TLS1_2_VERSION)
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(settings(tls_version_min="1.3")), sctx)
    assert e.value.stage == "tls" and str(e.value).startswith("TLS handshake failed: ")
    # garbage where the server's records should be
    c = TlsClient(settings())
    c.handshake()
    c.feed(b"\x16\x03\x03\x00\x05garbage-garbage")
    with pytest.raises(SessionError) as e:
        c.handshake()
    assert e.value.stage == "tls"
    # the server closes the established session
    c = TlsClient(settings())
    server = handshake(c, server_context(PKI.server_key, [PKI.server]))
    server.shutdown()
    c.feed(server.bio_read(65536))
    with pytest.raises(SessionError, match="the server closed the TLS session"):
        c.read_records()


def test_foreign_ca_names_the_certificate_and_its_issuer():
    other = P.Pki("Other Test-Only CA")
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(settings()), server_context(other.server_key, [other.server]))
    assert e.value.stage == "certificate"
    assert "server certificate 'O=erebus test-only, CN=server' (issued by 'O=erebus " \
        "test-only, CN=Other Test-Only CA') rejected" in str(e.value)
    assert "does not chain to the profile's CA" in str(e.value)


def test_remote_cert_tls_refuses_in_the_handshake():
    key, cert = P.make_cert(PKI.ca_key, PKI.ca, "not-a-server", ku=False)
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(settings()), server_context(key, [cert]))
    assert e.value.stage == "certificate" and "no key usage extension" in str(e.value)
    assert "remote-cert-tls server" in str(e.value)


# -- RFC 5705 keying material ----------------------------------------------------------

def test_export_keying_material_matches_the_server():
    for version in ("1.2", "1.3"):
        c = TlsClient(settings(tls_version_max=version))
        with pytest.raises(SessionError, match="before the TLS handshake"):
            c.export_keying_material("EXPERIMENTAL-erebus", 16)
        server = handshake(c, server_context(PKI.server_key, [PKI.server]))
        ekm = c.export_keying_material("EXPORTER-OpenVPN-datakeys", 256)
        assert len(ekm) == 256
        assert ekm == server.export_keying_material(b"EXPORTER-OpenVPN-datakeys", 256)
        assert ekm != c.export_keying_material("EXPORTER-OpenVPN-p2p-peerid", 256)


# -- certificates OpenSSL reads and cryptography does not --------------------------------

@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # pyOpenSSL objects, server side
@pytest.mark.parametrize("kind", ODD.KINDS)
def test_a_certificate_cryptography_cannot_read_is_a_refusal_never_an_exception(kind):
    """pyOpenSSL re-raises what a verify callback raises from do_handshake: the callback
    turns it into a refusal naming the certificate instead."""
    key, der, cn = ODD.odd_server(kind, PKI.ca_key, PKI.ca)
    cert = crypto.load_certificate(crypto.FILETYPE_ASN1, der)     # OpenSSL reads it
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(settings()), server_context(
            crypto.PKey.from_cryptography_key(key), [cert]))
    assert e.value.stage == "certificate"
    assert f"server certificate 'O=erebus test-only, CN={cn}' (issued by 'O=erebus " \
        f"test-only, CN=Test-Only CA') cannot be checked: {ODD.CRYPTOGRAPHY_SAYS[kind]}" \
        == str(e.value)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_version_2_certificate_from_another_ca_is_refused_as_not_chaining():
    other = P.Pki("Other Test-Only CA")
    key, der, _ = ODD.odd_server("version-2", other.ca_key, other.ca)
    cert = crypto.load_certificate(crypto.FILETYPE_ASN1, der)
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(settings()), server_context(
            crypto.PKey.from_cryptography_key(key), [cert]))
    assert e.value.stage == "certificate" and "server certificate 'O=erebus test-only, " \
        "CN=v2-server' (issued by 'O=erebus test-only, CN=Other Test-Only CA') rejected" \
        in str(e.value) and "does not chain to the profile's CA" in str(e.value)


# -- the context: built before anything is sent, owned by the tunnel ----------------------

def test_a_tls_cipher_openssl_refuses_fails_probe_before_sending(tmp_path):
    """The context is built with the tunnel: probe reports the config problem at once
    (with the file and option), instead of when the server's hard reset arrives."""
    import asyncio
    import socket
    from erebus.probe import probe
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)      # never answers
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    path = tmp_path / "cipher.ovpn"
    path.write_text(f"client\ndev tun\nremote 127.0.0.1 {sink.getsockname()[1]}\n"
                    f"remote-cert-tls server\ntls-cipher NO-SUCH-CIPHER\n{PKI.inline()}")
    try:
        report = asyncio.run(probe(str(path), timeout=2.0))
        with pytest.raises(BlockingIOError):
            sink.recv(2048)                                        # nothing was sent
    finally:
        sink.close()
    assert report == {"ok": False, "stage": "config", "error": f"{path}: tls-cipher: no "
                      "usable cipher in 'NO-SUCH-CIPHER'"}, report


def test_a_session_without_a_usable_client_key_fails_when_made():
    from erebus.openvpn.session import ClientSession, SessionSettings
    s = settings(cert=PKI.client_pem.encode(), key=P.key_pem(P.new_key()).encode())
    with pytest.raises(ConfigError, match="cert: cannot load the client certificate"):
        ClientSession(SessionSettings(tls=s), 0.0)


def test_every_session_of_a_tunnel_uses_its_one_context_and_nothing_keeps_it():
    """No global cache: the context (with the decrypted key in it) goes with the tunnel."""
    import gc
    import weakref
    from erebus.openvpn.config import parse_profile
    from erebus.runtime.openvpn import OpenVPNTunnel
    profile = parse_profile(f"client\ndev tun\nremote 198.18.1.1 1194\nremote-cert-tls "
                            f"server\n{PKI.inline()}", "ctx.ovpn")
    from erebus.runtime.tunnel import Endpoint
    tunnel = OpenVPNTunnel(profile)
    driver, where = tunnel.driver, Endpoint("198.18.1.1", 1194)
    first = driver.new_session(0.0, where, None, None, None)
    first.auth_token = "token"
    second = driver.new_session(1.0, where, None, None, first)
    assert second.auth_token == "token"
    a, b = first._new_tls(), second._new_tls()                  # key ids of two sessions
    assert a.context is b.context is driver._tls_context
    handshake(a, server_context(PKI.server_key, [PKI.server], client_ca=PKI.ca))
    context = weakref.ref(a.context)
    del tunnel, driver, first, second, a, b
    gc.collect()
    assert context() is None


# -- the time certificates are valid at ---------------------------------------------------

_UTC = datetime.timezone.utc


def _dated(key, issuer_key, issuer_name, subject, begin: int, end: int, *, ca=False):
    return (x509.CertificateBuilder().subject_name(P.name(subject)).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(begin, 1, 1, tzinfo=_UTC))
            .not_valid_after(datetime.datetime(end, 1, 1, tzinfo=_UTC))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


@pytest.fixture(scope="module")
def expired():
    """A server certificate valid only in 2020, from a CA valid 2018-2099."""
    ca_key, key = P.new_key(), P.new_key()
    ca = _dated(ca_key, ca_key, P.name("Test-Only Old CA"), "Test-Only Old CA", 2018, 2099,
                ca=True)
    leaf = _dated(key, ca_key, ca.subject, "old.example.test", 2020, 2021)
    return TlsSettings(ca=P.cert_pem(ca).encode()), server_context(key, [leaf])


def test_the_server_certificate_is_valid_or_expired_at_the_time_given(expired):
    tls, sctx = expired
    inside = TlsClient(tls, now=datetime.datetime(2020, 6, 1, tzinfo=_UTC))
    handshake(inside, sctx)
    assert inside.established and inside.peer_certificate.subject.rfc4514_string() == \
        "CN=old.example.test,O=erebus test-only"
    for now, why in ((None, "certificate has expired"),          # the wall clock: today
                     (datetime.datetime(2021, 6, 1), "certificate has expired"),   # naive: UTC
                     (datetime.datetime(2019, 6, 1, tzinfo=_UTC), "not yet valid")):
        with pytest.raises(SessionError) as e:
            handshake(TlsClient(tls, now=now), sctx)
        assert e.value.stage == "certificate"
        assert str(e.value).startswith("server certificate 'O=erebus test-only, "
                                       "CN=old.example.test'") and why in str(e.value)


def test_sessions_of_one_context_each_verify_at_their_own_time(expired):
    tls, sctx = expired
    context = TlsContext(tls)
    then = TlsClient(tls, context, now=datetime.datetime(2020, 6, 1, tzinfo=_UTC))
    today = TlsClient(tls, context)
    handshake(then, sctx)
    with pytest.raises(SessionError, match="certificate has expired"):
        handshake(today, sctx)
    handshake(TlsClient(tls, context, now=datetime.datetime(2020, 7, 1, tzinfo=_UTC)), sctx)


def test_the_session_verifies_by_the_clock_it_is_given(expired):
    from erebus.openvpn.session import ClientSession, SessionSettings
    tls, sctx = expired
    in_2020 = datetime.datetime(2020, 6, 1, tzinfo=_UTC).timestamp()
    session = ClientSession(SessionSettings(tls=tls), 0.0, clock=lambda: in_2020)
    handshake(session._new_tls(), sctx)
    with pytest.raises(SessionError, match="certificate has expired"):
        handshake(ClientSession(SessionSettings(tls=tls), 0.0)._new_tls(), sctx)


def test_name_hash_is_openssls_subject_hash_and_set_groups_sets_a_list():
    """The capath file names (HASH.N) and tls-groups (SSL_CTX_set1_groups_list)."""
    cert = crypto.X509.from_cryptography(PKI.ca)
    assert T.name_hash(PKI.ca.subject.public_bytes()) == cert.subject_name_hash() & 0xFFFFFFFF
    with pytest.raises(ValueError):
        T.name_hash(b"\x30\x03junk")
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    assert T._set_groups(ctx, "X25519:secp256r1:ffdhe2048")
    assert not T._set_groups(ctx, "X25519:no-such-group")


def test_pyopenssl_internals_stay_in_one_section():
    """pyproject.toml pins pyOpenSSL for tls.py's use of its internals: they stay in the
    one section an upgrade has to check (every function of it runs in this file)."""
    import re
    from pathlib import Path
    source = Path(T.__file__).read_text().splitlines()
    start = source.index(next(line for line in source
                              if line.startswith("# -- pyOpenSSL internals")))
    end = next(i for i in range(start + 1, len(source)) if source[i].startswith("# -- "))
    internal = re.compile(r"\b_lib\b|\b_ffi\b|\._store\b|\._x509\b|OpenSSL\._util")
    outside = [(i + 1, line) for i, line in enumerate(source)
               if internal.search(line) and not start <= i < end
               and not line.startswith("from OpenSSL._util import")]
    assert outside == []
    assert sum(1 for line in source if "OpenSSL._util" in line and "import" in line) == 1
