"""The responder's AUTH signature is held to what SIGNATURE_HASH_ALGORITHMS negotiated
(RFC 7427; issue 13 item 2): with SHA-2 agreed, an RSA-SHA1 signature (AUTH method 1,
or method 14 with sha1WithRSAEncryption) is refused in one line at stage "auth"."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from erebus.ipsec import ikecrypto as c
from erebus.ipsec.ike import Connected, Failed, IkeInitiator
from erebus.wire import ike as w
from erebus.wire.ike import (AUTH, CERT, CP, IDi, IDr, SA, ConfigAttribute, Delete, Notify,
                             TrafficSelector, TSi, TSr)

from tests.unit.test_ike_initiator import DNS, NET, PSK, VIP, FakeResponder, profile

SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")


def _pki():
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vpn")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("vpn.swan.test")]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return ca.public_bytes(serialization.Encoding.PEM), cert, key


CA_PEM, CERT_RSA, KEY_RSA = _pki()


class CertResponder(FakeResponder):
    """Authenticates with an RSA certificate; ``sign(key, octets)`` makes its AUTH."""

    def __init__(self, sign, **kw):
        super().__init__(**kw)
        self.sign = sign

    def ike_auth(self, data: bytes) -> bytes:
        req = self.decrypt(data)
        octets = c.signed_octets(self.keys, initiator=True, message=self.init_request,
                                 nonce=self.nr, identity=req.get(IDi))
        c.verify_auth(req.get(AUTH), octets, psk=PSK, prf=self.keys.prf)
        prop = req.get(SA).proposals[0]
        self.peer_spi = int.from_bytes(prop.spi, "big")
        name, _ = c.esp_transform_name(prop)
        idr = IDr.from_value("vpn.swan.test")
        mine = c.signed_octets(self.keys, initiator=False, message=self.init_response,
                               nonce=self.ni, identity=idr)
        return self.seal(w.IKE_AUTH, w.FLAG_RESPONSE, req.message_id, [
            idr, CERT(w.CERT_X509_SIGNATURE, CERT_RSA.public_bytes(serialization.Encoding.DER)),
            self.sign(KEY_RSA, mine),
            CP(w.CFG_REPLY, [ConfigAttribute.address(w.INTERNAL_IP4_ADDRESS, VIP),
                             ConfigAttribute.address(w.INTERNAL_IP4_DNS, DNS)]),
            SA([c.esp_proposal(name, self.esp_spi, number=prop.number)]),
            TSi([TrafficSelector.from_network(VIP)]), TSr([TrafficSelector.from_network(NET)])])


def rsa_sha1_method1(key, octets):
    return AUTH(w.AUTH_RSA_SIG, key.sign(octets, padding.PKCS1v15(), hashes.SHA1()))


def rsa_sha1_method14(key, octets):
    return AUTH(w.AUTH_DIGITAL_SIGNATURE, w.join_digital_signature(
        SHA1_WITH_RSA, key.sign(octets, padding.PKCS1v15(), hashes.SHA1())))


def rsa_sha256_method14(key, octets):
    return c.sign_auth(key, octets)


SHA2_NEGOTIATED = [Notify(w.SIGNATURE_HASH_ALGORITHMS, w.build_hash_algorithms(
    (w.HASH_SHA1, w.HASH_SHA2_256, w.HASH_SHA2_384)))]


def _connect(sign, init_notifies):
    ini = IkeInitiator(profile(remote_auth="pubkey", cacerts=[CA_PEM]), 0.0,
                       local_addr=("198.18.130.2", 40000), remote_addr=("198.18.130.1", 500))
    fr = CertResponder(sign, init_notifies=init_notifies)
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_sa_init(init), 0.0)
    (auth,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_auth(auth), 0.01)
    return ini, fr, list(iter(ini.next_event, None))[-1]


@pytest.mark.parametrize("sign, what", [(rsa_sha1_method1, "AUTH method 1"),
                                        (rsa_sha1_method14, "AUTH method 14")])
def test_rsa_sha1_refused_when_sha2_was_negotiated(sign, what):
    ini, fr, ev = _connect(sign, SHA2_NEGOTIATED)
    assert isinstance(ev, Failed) and ev.stage == "auth", ev
    assert "\n" not in ev.message and what in ev.message
    assert "sha1" in ev.message.lower() and "sha256, sha384" in ev.message, ev.message
    (delete,) = ini.datagrams_to_send(0.01)           # we tell the responder we leave
    assert fr.decrypt(delete).get(Delete).protocol == w.PROTO_IKE


def test_sha256_signature_accepted_when_sha2_was_negotiated():
    ini, fr, ev = _connect(rsa_sha256_method14, SHA2_NEGOTIATED)
    assert isinstance(ev, Connected) and ini.established


def test_rsa_sha1_of_a_responder_without_rfc7427_is_still_accepted():
    """No SIGNATURE_HASH_ALGORITHMS from the responder: nothing was negotiated, and AUTH
    method 1 is what RFC 7296 gives it."""
    ini, fr, ev = _connect(rsa_sha1_method1, [])
    assert isinstance(ev, Connected) and ini.established


def test_a_malformed_hash_algorithms_notify_counts_its_whole_entries_as_strongswan_does():
    """An odd-length SIGNATURE_HASH_ALGORITHMS (a stray last byte): its whole 16-bit
    entries are what the responder sent (strongSwan's ike_init.c reads them so); the
    response is not dropped, and the SA comes up held to what was negotiated."""
    odd = [Notify(w.SIGNATURE_HASH_ALGORITHMS, w.build_hash_algorithms(
        (w.HASH_SHA2_256,)) + b"\x00")]
    ini, fr, ev = _connect(rsa_sha256_method14, odd)
    assert isinstance(ev, Connected) and ini.established
    assert ini.signature_hashes == {w.HASH_SHA2_256}
    ini, fr, ev = _connect(rsa_sha1_method14, odd)
    assert isinstance(ev, Failed) and ev.stage == "auth" and "sha256" in ev.message, ev


SHA1_ONLY = [Notify(w.SIGNATURE_HASH_ALGORITHMS, w.build_hash_algorithms((w.HASH_SHA1,)))]


def test_a_notify_with_no_hash_in_common_still_holds_method_14_to_it():
    """The responder sent SIGNATURE_HASH_ALGORITHMS, but only SHA-1 (nothing in common
    with ours): negotiated is the empty set, not "not negotiated", so a method 14
    signature with SHA-1 is refused."""
    ini, fr, ev = _connect(rsa_sha1_method14, SHA1_ONLY)
    assert ini.signature_hashes == set()
    assert isinstance(ev, Failed) and ev.stage == "auth", ev
    assert "AUTH method 14" in ev.message and "no hash in common" in ev.message, ev.message


def test_method_1_is_refused_only_once_a_sha2_hash_was_negotiated():
    ini, fr, ev = _connect(rsa_sha1_method1, SHA1_ONLY)        # no SHA-2 negotiated
    assert isinstance(ev, Connected) and ini.established


def _ecdsa_p256_method9(octets: bytes):
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    key = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(key.sign(octets, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.public_key(), AUTH(w.AUTH_ECDSA_256, signature)


def test_fixed_hash_ecdsa_methods_are_not_held_to_the_notify():
    """AUTH method 9 is ECDSA with SHA-256 by its definition (RFC 4754): a valid one is
    accepted even if the responder advertised only SHA-384 and SHA-512."""
    octets = b"signed octets" * 4
    public, auth = _ecdsa_p256_method9(octets)
    for allowed in (None, set(), {w.HASH_SHA2_384, w.HASH_SHA2_512}):
        assert c.verify_auth(auth, octets, public_key=public,
                             allowed_hashes=allowed) == w.HASH_SHA2_256
    with pytest.raises(c.AuthFailed):
        c.verify_auth(auth, octets + b"x", public_key=public,
                      allowed_hashes={w.HASH_SHA2_384})
