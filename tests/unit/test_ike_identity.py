"""erebus.ipsec.identity: local.id / remote.id text typed and encoded as charon does."""

from __future__ import annotations

import pytest

from erebus.ipsec.identity import dn_to_der, identity, same_identity
from erebus.wire import ike as w
from erebus.wire.ike import IDi, IDr


@pytest.mark.parametrize("text, id_type, data", [
    ("198.18.130.2", w.ID_IPV4_ADDR, bytes([198, 18, 130, 2])),
    ("client.swan.test", w.ID_FQDN, b"client.swan.test"),
    ("@client", w.ID_FQDN, b"client"),
    ("carol@swan.test", w.ID_RFC822_ADDR, b"carol@swan.test"),
    ("@#0a0b", w.ID_KEY_ID, b"\x0a\x0b"),
    ("fqdn:a=b", w.ID_FQDN, b"a=b"),                   # a prefix: taken as-is
    ("keyid:#cafe", w.ID_KEY_ID, b"\xca\xfe"),
    ("email:x", w.ID_RFC822_ADDR, b"x"),
    ("asn1dn:#3000", w.ID_DER_ASN1_DN, b"\x30\x00"),
    ("foo=bar", w.ID_KEY_ID, b"foo=bar"),               # '=' but no DN: charon's KEY_ID
    ("2001:2::1", w.ID_IPV6_ADDR, bytes.fromhex("20010002" + "00" * 11 + "01")),
])
def test_identity_types(text, id_type, data):
    got = identity(text)
    assert isinstance(got, IDi) and (got.id_type, got.data) == (id_type, data)


def test_dn_encodings_as_strongswan_atodn():
    cn = bytes.fromhex("310d300b060355040313046d6f6f6e")           # CN=moon, Printable
    assert dn_to_der("CN=moon") == bytes.fromhex("300f") + cn
    assert dn_to_der("/CN=moon") == dn_to_der(" cn = moon ") == dn_to_der("CN=moon")
    # not printable: UTF8String; email: IA5String
    assert dn_to_der("CN=m\u00fcnd") == bytes.fromhex("3010310e300c06035504030c056dc3bc6e64")
    assert dn_to_der("E=a@b") == bytes.fromhex(
        "30143112301006092a864886f70d010901160361" "4062")
    assert dn_to_der("XX=1") is None and dn_to_der("moon") is None


def test_same_identity_compares_dns_as_charon_does():
    """String types do not matter, case does not matter, order does."""
    printable = IDr(w.ID_DER_ASN1_DN, dn_to_der("C=CH, CN=Moon"))
    utf8 = IDr(w.ID_DER_ASN1_DN, bytes.fromhex("301a310b3009060355040613024348"
                                               "310b300906035504030c026d6f"))
    assert not same_identity(printable, utf8)                  # Moon vs mo
    utf8 = IDr(w.ID_DER_ASN1_DN, bytes.fromhex("301c310b3009060355040613024348"
                                               "310d300b06035504030c046d6f6f6e"))
    assert same_identity(printable, utf8)
    assert not same_identity(IDr(w.ID_DER_ASN1_DN, dn_to_der("CN=moon, C=CH")), utf8)
    assert not same_identity(printable, IDr(w.ID_DER_ASN1_DN, b"\x30\x05garbage"))
    assert not same_identity(IDr(w.ID_FQDN, b"moon"), IDr(w.ID_KEY_ID, b"moon"))
    assert same_identity(IDr(w.ID_FQDN, b"moon"), IDr(w.ID_FQDN, b"moon"))
