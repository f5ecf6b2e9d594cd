"""OpenVPN's checks of the server certificate, as 2.6 makes them with OpenSSL:
remote-cert-tls, remote-cert-ku, remote-cert-eku, ns-cert-type and crl-verify; the CRL
refusal proven through a real TLS handshake over memory BIOs."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from erebus.errors import SessionError
from erebus.openvpn.tls import TlsClient, TlsSettings, check_server_certificate, \
    key_usage_bits
from tests.profiles import pki as P

PKI = P.Pki()
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


def settings(**kw) -> TlsSettings:
    return TlsSettings(ca=PKI.ca_pem.encode(), **kw)


def server_cert(**kw):
    return P.make_cert(PKI.ca_key, PKI.ca, "server", **kw)[1]


def test_remote_cert_tls_server_and_client():
    check_server_certificate(PKI.server, settings(remote_cert_tls="server"))
    with pytest.raises(SessionError, match="TLS Web Server Authentication"):
        check_server_certificate(PKI.client, settings(remote_cert_tls="server"))
    with pytest.raises(SessionError, match="no key usage extension"):
        check_server_certificate(server_cert(ku=False), settings(remote_cert_tls="server"))
    # 'remote-cert-tls client' asks the peer for the client usage (as the stock client)
    check_server_certificate(PKI.client, settings(remote_cert_tls="client"))
    with pytest.raises(SessionError, match="Client Authentication"):
        check_server_certificate(PKI.server, settings(remote_cert_tls="client"))


def test_remote_cert_ku_values_like_openvpn():
    cert = server_cert(ku=P.key_usage(digital_signature=True, key_encipherment=True))
    assert key_usage_bits(cert.extensions.get_extension_for_class(x509.KeyUsage).value) \
        == 0xa0
    check_server_certificate(cert, settings(remote_cert_ku=(0xa0,)))
    check_server_certificate(cert, settings(remote_cert_ku=(0x88, 0x80)))  # a subset is fine
    with pytest.raises(SessionError, match="key usage a0, expected one of 88"):
        check_server_certificate(cert, settings(remote_cert_ku=(0x88,)))
    check_server_certificate(cert, settings(remote_cert_ku="required"))


def test_remote_cert_eku_by_name_or_oid():
    check_server_certificate(PKI.server, settings(remote_cert_eku="1.3.6.1.5.5.7.3.1"))
    check_server_certificate(PKI.server,
                             settings(remote_cert_eku="TLS Web Server Authentication"))
    with pytest.raises(SessionError, match="'Code Signing'.*remote-cert-eku"):
        check_server_certificate(PKI.server, settings(remote_cert_eku="Code Signing"))
    cert = server_cert(eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    check_server_certificate(cert, settings(remote_cert_eku="Code Signing"))


def test_ns_cert_type_server_uses_the_ssl_server_purpose():
    check_server_certificate(PKI.server, settings(ns_cert_type="server"))
    check_server_certificate(server_cert(eku=False), settings(ns_cert_type="server"))
    with pytest.raises(SessionError, match="not a TLS server certificate"):
        check_server_certificate(PKI.client, settings(ns_cert_type="server"))
    with pytest.raises(SessionError, match="ns-cert-type"):
        check_server_certificate(server_cert(ku=P.key_usage(crl_sign=True)),
                                 settings(ns_cert_type="server"))
    ns_server = x509.UnrecognizedExtension(ObjectIdentifier("2.16.840.1.113730.1.1"),
                                           bytes([0x03, 0x02, 0x06, 0x40]))
    legacy = server_cert(eku=False, ku=False, extra_extensions=[(ns_server, False)])
    check_server_certificate(legacy, settings(ns_cert_type="server"))


def crl(revoked=(), ca=PKI, **kw) -> bytes:
    return P.crl_pem(P.make_crl(ca.ca_key, ca.ca, revoked, **kw)).encode()


def test_crl_verify_refuses_a_revoked_server_and_names_it():
    cert = server_cert(serial=0x5EED)
    check_server_certificate(cert, settings(crl=crl([1, 2])), now=NOW)
    with pytest.raises(SessionError) as e:
        check_server_certificate(cert, settings(crl=crl([0x5EED])), now=NOW)
    assert "CN=server" in str(e.value) and "5EED" in str(e.value)
    assert "revoked" in str(e.value) and e.value.stage == "certificate"


def test_crl_verify_needs_a_current_crl_signed_by_the_issuer():
    cert = server_cert()
    other = P.Pki("Other Test-Only CA")
    with pytest.raises(SessionError, match="no CRL from its issuer"):
        check_server_certificate(cert, settings(crl=crl(ca=other)), now=NOW)
    forged = P.crl_pem(P.make_crl(other.ca_key, PKI.ca, [])).encode()  # PKI's name, other key
    with pytest.raises(SessionError, match="not signed by that issuer"):
        check_server_certificate(cert, settings(crl=forged), now=NOW)
    old = crl(last=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
              next_=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc))
    with pytest.raises(SessionError, match="expired on 2025-01-01"):
        check_server_certificate(cert, settings(crl=old), now=NOW)


def _handshake(client: TlsClient, server_ctx: ssl.SSLContext) -> None:
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(20):
        done = client.handshake()
        s_in.write(client.take_output())
        try:
            server.do_handshake()
        except ssl.SSLWantReadError:
            pass
        client.feed(s_out.read())
        if done:
            return
    raise AssertionError("no handshake")


def _server_context(tmp_path, key, cert) -> ssl.SSLContext:
    (tmp_path / "s.crt").write_text(P.cert_pem(cert))
    (tmp_path / "s.key").write_text(P.key_pem(key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    return ctx


def test_a_revoked_server_is_refused_after_a_real_handshake(tmp_path):
    key, cert = P.make_cert(PKI.ca_key, PKI.ca, "vpn-server", serial=0xBAD)
    ctx = _server_context(tmp_path, key, cert)
    ok = TlsClient(settings(remote_cert_tls="server", crl=crl([0x1])))
    _handshake(ok, ctx)
    assert ok.established
    revoked = TlsClient(settings(remote_cert_tls="server", crl=crl([0xBAD])))
    with pytest.raises(SessionError) as e:
        _handshake(revoked, ctx)
    assert "CN=vpn-server" in str(e.value) and "revoked" in str(e.value)
