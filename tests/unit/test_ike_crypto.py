"""IKEv2 key material and protection (erebus.ipsec.ikecrypto) against independent answers:
RFC 5903 and RFC 7748 Diffie-Hellman vectors, the RFC 3526 prime from its defining formula,
a NIST CAVS IKEv2 KDF vector (as libreswan's harness prints it), real strongSwan messages
with Wireshark's published keys, the RFC formulas recomputed here with hmac/hashlib and
the cryptography primitives, scapy's IKEv2 layer, and fuzzing (ParseError only)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.ikev2 import IKEv2, IKEv2_Encrypted, IKEv2_Encrypted_Fragment, IKEv2_IDi
from scapy.contrib.ikev2 import IKEv2_Notify
from scapy.packet import raw

from erebus.crypto.seal import AuthenticationError
from erebus.errors import ParseError
from erebus.ipsec import ikecrypto as c
from erebus.wire import ike as w

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPI_I = bytes.fromhex("0123456789abcdef")
SPI_R = bytes.fromhex("fedcba9876543210")


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --- Diffie-Hellman -------------------------------------------------------------------------

# RFC 5903 section 8: (group, i, g^i x, g^i y, KEi payload, r, g^r x, g^r y, g^ir x)
RFC5903 = [
    (19,
     "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433",
     "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180",
     "5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3",
     "00000048 00130000 DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF"
     "945D0C37 72581180 5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58"
     "389E0577 B8990BB3",
     "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53",
     "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63",
     "56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB",
     "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE"),
    (20,
     "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655"
     "E35B5380 41E649EE 3FAEF896 783AB194",
     "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6"
     "DE3AC808 ACB4BDB4 C88732AE E95F41AA",
     "9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E"
     "EB9FCFF3 C2C947DA E69B4C63 4573A81C",
     "00000068 00140000 667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3"
     "1634FE72 B4C55EE6 DE3AC808 ACB4BDB4 C88732AE E95F41AA 9482ED1F C0EEB9CA"
     "FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E EB9FCFF3 C2C947DA"
     "E69B4C63 4573A81C",
     "41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942"
     "E0308312 916B8ED2 960E4BD5 5A7448FC",
     "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D"
     "0D1AC43A 0336DEF9 6FDA41D0 774A3571",
     "DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF"
     "F83FA401 42209DFF 5EAAD96D B9E6386C",
     "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4"
     "D6031355 69B9E9D0 9CF5D4A2 70F59746"),
    (21,
     "0037ADE9 319A89F4 DABDB3EF 411AACCC A5123C61 ACAB57B5 393DCE47 608172A0"
     "95AA85A3 0FE1C295 2C6771D9 37BA9777 F5957B26 39BAB072 462F68C2 7A57382D 4A52",
     "0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B D98BAB43 57C9ECBE"
     "E1E3BF42 E00B8E38 0AEAE57C 2D107564 94188594 2AF5A7F4 601723C4 195D176C ED3E",
     "017CAE20 B6641D2E EB695786 D8C94614 6239D099 E18E1D5A 514C739D 7CB4A10A"
     "D8A78801 5AC405D7 799DC75E 7B7D5B6C F2261A6A 7F150743 8BF01BEB 6CA3926F 9582",
     "0000008C 00150000 0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B"
     "D98BAB43 57C9ECBE E1E3BF42 E00B8E38 0AEAE57C 2D107564 94188594 2AF5A7F4"
     "601723C4 195D176C ED3E017C AE20B664 1D2EEB69 5786D8C9 46146239 D099E18E"
     "1D5A514C 739D7CB4 A10AD8A7 88015AC4 05D7799D C75E7B7D 5B6CF226 1A6A7F15"
     "07438BF0 1BEB6CA3 926F9582",
     "0145BA99 A847AF43 793FDD0E 872E7CDF A16BE30F DC780F97 BCCC3F07 8380201E"
     "9C677D60 0B343757 A3BDBF2A 3163E4C2 F869CCA7 458AA4A4 EFFC311F 5CB15168 5EB9",
     "00D0B397 5AC4B799 F5BEA16D 5E13E9AF 971D5E9B 984C9F39 728B5E57 39735A21"
     "9B97C356 436ADC6E 95BB0352 F6BE64A6 C2912D4E F2D0433C ED2B6171 640012D9 460F",
     "015C6822 6383956E 3BD066E7 97B623C2 7CE0EAC2 F551A10C 2C724D98 52077B87"
     "220B6536 C5C408A1 D2AEBB8E 86D678AE 49CB5709 1F473229 6579AB44 FCD17F0F C56A",
     "01144C7D 79AE6956 BC8EDB8E 7C787C45 21CB086F A64407F9 7894E5E6 B2D79B04"
     "D1427E73 CA4BAA24 0A347868 59810C06 B3C715A3 A8CC3151 F2BEE417 996D19F3 DDEA"),
]


@pytest.mark.parametrize("vector", RFC5903, ids=lambda v: f"group{v[0]}")
def test_rfc5903_ecp_vectors(vector):
    group, i, gix, giy, kei, r, grx, gry, girx = vector
    ini = c.DiffieHellman(group, private=h(i))
    res = c.DiffieHellman(group, private=h(r))
    assert ini.public_bytes() == h(gix) + h(giy)          # x | y, no 0x04 (RFC 5903 7)
    assert res.public_bytes() == h(grx) + h(gry)
    assert w.build_payloads([w.KE(group, ini.public_bytes())])[1] == h(kei)
    assert ini.shared_secret(h(grx) + h(gry)) == h(girx)  # x coordinate only
    assert res.shared_secret(h(gix) + h(giy)) == h(girx)
    assert c.KE_LENGTHS[group] == len(h(gix)) * 2


def test_rfc7748_x25519_vectors():
    alice = c.DiffieHellman(w.DH_CURVE25519, private=h(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    bob = c.DiffieHellman(w.DH_CURVE25519, private=h(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
    assert alice.public_bytes() == h(
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert bob.public_bytes() == h(
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert alice.shared_secret(bob.public_bytes()) == shared
    assert bob.shared_secret(alice.public_bytes()) == shared


def _pi_bits(bits: int) -> int:
    """floor(pi * 2**bits) by Machin's formula, in integers."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x: int) -> int:
        power = total = one // x
        k, x2 = 1, x * x
        while power:
            power //= x2
            term = power // (2 * k + 1)
            total += -term if k % 2 else term
            k += 1
        return total
    return (4 * (4 * arctan_inv(5) - arctan_inv(239))) >> guard


def _probably_prime(n: int) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7, 11, 13):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_modp2048_prime_is_rfc3526s():
    # RFC 3526 section 3: p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }
    p = 2**2048 - 2**1984 - 1 + 2**64 * (_pi_bits(1918) + 124476)
    assert c.MODP_2048_PRIME == p
    assert _probably_prime(p) and _probably_prime((p - 1) // 2)   # a safe prime


def test_modp2048_exchange_and_padding():
    p = c.MODP_2048_PRIME
    a = c.DiffieHellman(w.DH_MODP_2048, private=3)           # tiny: g^x has leading zeros
    assert a.public_bytes() == (8).to_bytes(256, "big")
    b = c.DiffieHellman(w.DH_MODP_2048, private=0xC0FFEE << 1000)
    shared = a.shared_secret(b.public_bytes())
    assert shared == b.shared_secret(a.public_bytes()) == \
        pow(2, 3 * (0xC0FFEE << 1000), p).to_bytes(256, "big")
    assert len(c.DiffieHellman(w.DH_MODP_2048).public_bytes()) == 256


@pytest.mark.parametrize("group, bad", [
    (w.DH_MODP_2048, bytes(256)),
    (w.DH_MODP_2048, (1).to_bytes(256, "big")),
    (w.DH_MODP_2048, (c.MODP_2048_PRIME - 1).to_bytes(256, "big")),
    (w.DH_MODP_2048, c.MODP_2048_PRIME.to_bytes(256, "big")),
    (w.DH_MODP_2048, b"\xff" * 256),
    (w.DH_MODP_2048, (5).to_bytes(255, "big")),
    (w.DH_ECP_256, bytes(64)),
    (w.DH_ECP_256, h(RFC5903[0][6]) + h(RFC5903[0][7])[:-1] + b"\x00"),  # off the curve
    (w.DH_ECP_256, (2**256 - 2**224 + 2**192 + 2**96 - 1).to_bytes(32, "big") + bytes(32)),
    (w.DH_ECP_256, h(RFC5903[0][6]) + h(RFC5903[0][7]) + b"\x00"),
    (w.DH_ECP_384, bytes(96)),
    (w.DH_CURVE25519, bytes(32)),                                # low order: result 0
    (w.DH_CURVE25519, (1).to_bytes(32, "little")),
    (w.DH_CURVE25519, bytes(31)),
])
def test_bad_peer_public_values_are_refused(group, bad):
    with pytest.raises(c.InvalidKeyExchange):
        c.DiffieHellman(group).shared_secret(bad)


def test_unsupported_group():
    with pytest.raises(ValueError):
        c.DiffieHellman(w.DH_MODP_3072)


@FUZZ
@given(st.sampled_from([w.DH_ECP_256, w.DH_ECP_384, w.DH_CURVE25519]),
       st.binary(min_size=0, max_size=100) | st.binary(min_size=32, max_size=32)
       | st.binary(min_size=64, max_size=64))
def test_fuzzed_public_values_only_raise_invalid_key_exchange(group, data):
    dh = DH_CACHE[group]
    try:
        secret = dh.shared_secret(data)
    except c.InvalidKeyExchange:
        return
    assert len(secret) == {w.DH_ECP_256: 32, w.DH_ECP_384: 48, w.DH_CURVE25519: 32}[group]


DH_CACHE = {g: c.DiffieHellman(g) for g in (w.DH_ECP_256, w.DH_ECP_384, w.DH_CURVE25519)}


# --- PRF, prf+, key derivation ----------------------------------------------------------------

def ref_prf_plus(digest: str, key: bytes, seed: bytes, length: int) -> bytes:
    """RFC 7296 section 2.13, straight from the text."""
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(key, t + seed + bytes([i]), digest).digest()
        out += t
        i += 1
    return out[:length]


@pytest.mark.parametrize("prf_id, digest", [(w.PRF_HMAC_SHA1, "sha1"),
                                            (w.PRF_HMAC_SHA2_256, "sha256"),
                                            (w.PRF_HMAC_SHA2_384, "sha384"),
                                            (w.PRF_HMAC_SHA2_512, "sha512")])
def test_prf_plus_against_the_formula(prf_id, digest):
    key, seed = b"k" * 40, b"seed bytes"
    for length in (0, 1, 31, 32, 33, 200, 255 * c.PRFS[prf_id].size):
        assert c.prf_plus(prf_id, key, seed, length) == ref_prf_plus(digest, key, seed, length)
    with pytest.raises(ValueError):
        c.prf_plus(prf_id, key, seed, 255 * c.PRFS[prf_id].size + 1)


def test_nist_cavs_ikev2_kdf_vector_sha1():
    # A NIST CAVS IKEv2 KDF (SP 800-135) vector with HMAC-SHA-1, as printed by libreswan's
    # CAVS harness (programs/cavp): SKEYSEED, DKM = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr),
    # DKM(Child SA) = prf+(SK_d, Ni|Nr), DKM(Child SA D-H) = prf+(SK_d, g^ir new|Ni|Nr),
    # SKEYSEED(Rekey) = prf(SK_d, g^ir new|Ni|Nr), with SK_d the first 20 bytes of DKM.
    gir = h("4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52")
    gir_new = h("863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330")
    ni, nr = h("32b50d5f4a3763f3"), h("9206a04b26564cb1")
    spi_i, spi_r = h("34c9e7c188868785"), h("3ff77d760d2b2199")
    seed = c.skeyseed(w.PRF_HMAC_SHA1, ni, nr, gir)
    assert seed == h("a9a7b222b59f8f48645f28a1db5b5f5d7479cba7")
    dkm = c.prf_plus(w.PRF_HMAC_SHA1, seed, ni + nr + spi_i + spi_r, 132)
    assert dkm == h(
        "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002a2a63080e514a062"
        "768b76606f9fa5e992204fc5a670bde3f10d6b027113936a5c55b648a194ae587b0088d52204b702"
        "c979fa280870d2ed41efa9c549fd11198af1670b143d384bd275c5f594cf266b05ebadca855e4249"
        "520a441a81157435a7a56cc4")
    sk_d = dkm[:20]
    assert c.child_keymat(w.PRF_HMAC_SHA1, sk_d, ni, nr, 132) == h(
        "8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c5811a8e7b5d1cdabd95"
        "60b2d5e092d1f24e2d4b85eccdf0ad0dc9abd94b51ee71814ca6dbc8bb51b6309f5b9545c7eb35cf"
        "5580b1e521a8fe20754a2d883ba0c2cf285f524aea6545b33106bc03e614296d319d41d4b50b3f51"
        "0b1c0a22f3e664994d234cb4")
    assert c.child_keymat(w.PRF_HMAC_SHA1, sk_d, ni, nr, 132, shared=gir_new) == h(
        "bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d37301628190e38c66232ea"
        "b4b3ab14c400a5197dd3730ed4820a8a10394d51e1c0400052f63ebd36b0e7ef53aaed31eba4a508"
        "0d7d4b5666023a8bbb5ffb7857240f9a05884d1b7d2f933708450b7b3288f1fc863ab49fa901227c"
        "ffc06e27899c7054d56fd74c")
    assert c.rekey_skeyseed(w.PRF_HMAC_SHA1, sk_d, gir_new, ni, nr) == h(
        "63e81194946ebd05df7df5ebf5d8750056bf1f1d")


@pytest.mark.parametrize("name, lengths", [
    ("aes128-sha256-ecp256", (32, 32, 32, 16, 16, 32, 32)),
    ("aes256-sha512-prfsha384-modp2048", (48, 64, 64, 32, 32, 48, 48)),
    ("aes256gcm16-prfsha384-curve25519", (48, 0, 0, 36, 36, 48, 48)),
    ("aes128ccm12-prfsha256-ecp256", (32, 0, 0, 19, 19, 32, 32)),
    ("chacha20poly1305-prfsha512-curve25519", (64, 0, 0, 36, 36, 64, 64)),
])
def test_ike_sa_keys_against_the_formula(name, lengths):
    suite = c.IkeSuite.parse(name)
    digest = c.PRFS[suite.prf].digest
    ni, nr, gir = os.urandom(32), os.urandom(32), os.urandom(64)
    keys = c.ike_sa_keys(suite, gir, ni, nr, SPI_I, SPI_R)
    seed = hmac.new(ni + nr, gir, digest).digest()          # SKEYSEED = prf(Ni | Nr, g^ir)
    stream = ref_prf_plus(digest, seed, ni + nr + SPI_I + SPI_R, sum(lengths))
    want, pos = [], 0
    for n in lengths:
        want.append(stream[pos:pos + n])
        pos += n
    got = [keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi, keys.sk_pr]
    assert got == want
    assert "sk_" not in repr(keys) and suite.name in repr(keys)


def test_rekeyed_ike_sa_uses_the_old_prf_for_skeyseed_and_the_new_one_after():
    old = c.ike_sa_keys(c.IkeSuite.parse("aes128-sha256-ecp256"), os.urandom(32),
                        os.urandom(32), os.urandom(32), SPI_I, SPI_R)
    new_suite = c.IkeSuite.parse("aes256gcm16-prfsha512-curve25519")
    gir, ni, nr = os.urandom(32), os.urandom(32), os.urandom(32)
    new_i, new_r = os.urandom(8), os.urandom(8)
    keys = c.rekeyed_ike_sa_keys(old, new_suite, gir, ni, nr, new_i, new_r)
    seed = hmac.new(old.sk_d, gir + ni + nr, "sha256").digest()   # old PRF (SHA-256)
    stream = ref_prf_plus("sha512", seed, ni + nr + new_i + new_r, 64 + 36 + 36 + 64 + 64)
    assert keys.sk_d == stream[:64] and keys.sk_ai == b"" and keys.sk_ar == b""
    assert keys.sk_ei == stream[64:100] and keys.sk_er == stream[100:136]
    assert keys.sk_pi == stream[136:200] and keys.sk_pr == stream[200:264]


def test_child_sa_keys_split_and_directions():
    from erebus.ipsec.transforms import TRANSFORMS
    ike = c.ike_sa_keys(c.IkeSuite.parse("aes128-sha256-ecp256"), os.urandom(32),
                        os.urandom(32), os.urandom(32), SPI_I, SPI_R)
    ni, nr, gir = os.urandom(32), os.urandom(32), os.urandom(32)
    for name, t in TRANSFORMS.items():
        assert c.esp_key_lengths(name) == (t.key_len, t.integrity_key_len), name
        for shared in (None, gir):
            k = c.child_sa_keys(ike, ni, nr, t.key_len, t.integrity_key_len, shared=shared)
            n = t.key_len + t.integrity_key_len
            stream = ref_prf_plus("sha256", ike.sk_d, (shared or b"") + ni + nr, 2 * n)
            # encryption then integrity, initiator-to-responder first (section 2.17)
            assert k.encr_i + k.integ_i + k.encr_r + k.integ_r == stream
            assert k.outbound(True) == (stream[:t.key_len], stream[t.key_len:n])
            assert k.inbound(True) == (stream[n:n + t.key_len], stream[n + t.key_len:])
            assert k.outbound(False) == k.inbound(True) and k.inbound(False) == k.outbound(True)
            t.new(*k.outbound(True))                  # the ESP transform takes them as they are
    assert "ChildSaKeys" in repr(k)


# --- suites and proposals ------------------------------------------------------------------

def test_suite_names_and_proposals():
    s = c.IkeSuite.parse("aes256-sha256-modp2048")
    assert (s.encr, s.key_bits, s.integ, s.prf, s.dh) == (
        w.ENCR_AES_CBC, 256, w.INTEG_HMAC_SHA2_256_128, w.PRF_HMAC_SHA2_256, w.DH_MODP_2048)
    assert s.name == "aes256-sha256-prfsha256-modp2048" and str(s) == s.name
    assert (s.iv_len, s.icv_len, s.block_len, s.aead) == (16, 16, 16, False)
    g = c.IkeSuite.parse("AES128GCM16-X25519")
    assert g.name == "aes128gcm16-prfsha256-curve25519" and g.aead
    assert (g.encr_key_len, g.integ_key_len, g.iv_len, g.icv_len) == (20, 0, 8, 16)
    cc = c.IkeSuite.parse("chacha20poly1305-prfsha384-ecp384")
    assert cc.transforms()[0] == w.Transform(w.TRANSFORM_ENCR, w.ENCR_CHACHA20_POLY1305, None)
    props = c.ike_proposals([s, g, cc])
    assert [p.number for p in props] == [1, 2, 3]
    for suite, prop in zip((s, g, cc), props):
        assert c.IkeSuite.from_proposal(prop) == suite
    assert c.IkeSuite.parse("aes128-sha1-ecp256").prf == w.PRF_HMAC_SHA1
    for bad in ("", "aes128", "des-sha1-modp1024", "aes128-ecp256-sha256",
                "aes128gcm16-sha256-ecp256",
                "aes128-sha256-ecp256-ecp384", "aes100-sha256-ecp256"):
        with pytest.raises(ValueError):
            c.IkeSuite.parse(bad)
    with pytest.raises(ValueError):
        c.IkeSuite(w.ENCR_AES_CBC, 128, w.INTEG_NONE, w.PRF_HMAC_SHA2_256, w.DH_ECP_256)


@pytest.mark.parametrize("transforms", [
    [],
    [w.Transform(1, w.ENCR_AES_CBC, 128), w.Transform(2, 5)],                    # no DH
    [w.Transform(1, w.ENCR_AES_CBC, 128), w.Transform(1, w.ENCR_AES_CBC, 256),
     w.Transform(2, 5), w.Transform(3, 12), w.Transform(4, 19)],                 # two ENCR
    [w.Transform(1, w.ENCR_AES_CBC), w.Transform(2, 5), w.Transform(3, 12),
     w.Transform(4, 19)],                                                        # no key length
    [w.Transform(1, w.ENCR_3DES), w.Transform(2, 5), w.Transform(3, 12), w.Transform(4, 19)],
    [w.Transform(1, w.ENCR_AES_GCM_16, 128), w.Transform(2, 5), w.Transform(3, 12),
     w.Transform(4, 19)],                                                        # AEAD + INTEG
])
def test_bad_chosen_ike_proposals(transforms):
    with pytest.raises(ParseError):
        c.IkeSuite.from_proposal(w.Proposal(1, w.PROTO_IKE, b"", transforms))
    with pytest.raises(ParseError):
        c.IkeSuite.from_proposal(w.Proposal(1, w.PROTO_ESP, b"", transforms))


def test_esp_proposals_round_trip():
    for name in c.ESP_TRANSFORM_IDS:
        for esn in (False, True):
            prop = c.esp_proposal(name, 0xC0010203, esn=esn, dh=w.DH_ECP_256)
            assert prop.spi == b"\xc0\x01\x02\x03" and prop.protocol == w.PROTO_ESP
            assert prop.first(w.TRANSFORM_DH).id == w.DH_ECP_256
            assert c.esp_transform_name(prop) == (name, esn)
    both = c.esp_proposal("aes256-sha256", 0x1001, esn=None)
    assert [t.id for t in both.of_type(w.TRANSFORM_ESN)] == [w.ESN_YES, w.ESN_NO]
    with pytest.raises(ParseError):                # an offer, not a choice: two ESN transforms
        c.esp_transform_name(both)
    with pytest.raises(ParseError):
        c.esp_transform_name(w.Proposal(1, w.PROTO_ESP, b"\x00\x00\x10\x01",
                                        [w.Transform(1, w.ENCR_3DES)]))
    with pytest.raises(ParseError):
        c.esp_transform_name(w.Proposal(1, w.PROTO_ESP, b"\x00\x00\x10\x01", []))
    with pytest.raises(ValueError):
        c.esp_proposal("aes128gcm16", b"\x01\x02")


# --- SK protection --------------------------------------------------------------------------

SUITES = ["aes128-sha256-ecp256", "aes256-sha384-ecp256", "aes256-sha512-ecp256",
          "aes192-sha1-ecp256", "aes128gcm16-ecp256", "aes256gcm16-prfsha384-ecp256",
          "aes128ccm8-ecp256", "aes256ccm16-ecp256", "chacha20poly1305-ecp256"]


def make_keys(name: str) -> c.IkeSaKeys:
    suite = c.IkeSuite.parse(name)
    return c.ike_sa_keys(suite, b"g^ir" * 8, b"N" * 32, b"n" * 32, SPI_I, SPI_R)


def auth_request(mid: int = 1, extra: int = 0) -> w.IkeMessage:
    return w.IkeMessage(SPI_I, SPI_R, w.IKE_AUTH, w.FLAG_INITIATOR, mid, [
        w.IDi.from_value("client@example.org"),
        w.AUTH(w.AUTH_PSK, b"\x5a" * 32),
        w.CP(w.CFG_REQUEST, [w.ConfigAttribute(w.INTERNAL_IP4_ADDRESS),
                             w.ConfigAttribute(w.INTERNAL_IP4_DNS)]),
        w.SA([c.esp_proposal("aes128gcm16", 0xC0010203)]),
        w.TSi([w.TrafficSelector.from_network("0.0.0.0/0")]),
        w.TSr([w.TrafficSelector.from_network("0.0.0.0/0")]),
        w.Notify(w.INITIAL_CONTACT),
        w.VendorID(b"v" * extra),
    ])


def test_cbc_hmac_bytes_are_the_rfcs():
    keys = make_keys("aes256-sha256-ecp256")
    msg = auth_request()
    iv = bytes(range(16))
    first, inner = w.build_payloads(msg.payloads)
    pad = (-(len(inner) + 1)) % 16
    plain = inner + bytes(pad) + bytes([pad])
    sk_len = 4 + 16 + len(plain) + 16
    header = struct.pack("!8s8sBBBBII", SPI_I, SPI_R, 46, 0x20, 35, 0x08, 1, 28 + sk_len)
    sk_header = struct.pack("!BBH", first, 0, sk_len)
    enc = Cipher(algorithms.AES(keys.sk_ei), modes.CBC(iv)).encryptor()
    ct = enc.update(plain) + enc.finalize()
    icv = hmac.new(keys.sk_ai, header + sk_header + iv + ct, "sha256").digest()[:16]
    expected = header + sk_header + iv + ct + icv
    assert c.encrypt_sk(keys, msg, initiator=True, iv=iv) == expected
    assert c.decrypt_message(keys, expected, initiator=False) == msg


@pytest.mark.parametrize("name, aead", [("aes256gcm16-ecp256", AESGCM),
                                        ("chacha20poly1305-ecp256", ChaCha20Poly1305)])
def test_aead_bytes_are_rfc5282s(name, aead):
    keys = make_keys(name)
    msg = auth_request()
    msg.flags = w.FLAG_RESPONSE            # the responder's direction: SK_er
    iv = bytes(range(8))
    first, inner = w.build_payloads(msg.payloads)
    sk_len = 4 + 8 + len(inner) + 1 + 16
    header = struct.pack("!8s8sBBBBII", SPI_I, SPI_R, 46, 0x20, 35, 0x20, 1, 28 + sk_len)
    sk_header = struct.pack("!BBH", first, 0, sk_len)
    key, salt = keys.sk_er[:32], keys.sk_er[32:]
    sealed = aead(key).encrypt(salt + iv, inner + b"\x00", header + sk_header)
    expected = header + sk_header + iv + sealed
    assert c.encrypt_sk(keys, msg, initiator=False, iv=iv) == expected
    assert c.decrypt_message(keys, expected, initiator=True) == msg


# Wireshark's test/config/ikev2_decryption_table for ikev2-decrypt-aes128ccm12.pcap:
# SPIi, SPIr, SK_ei, SK_er (16-byte key and 3-byte salt), "AES-CCM-128 with 12 octet ICV".
WS_CCM = ("ea684d21597afd36", "d9fe2ab22dac23ac", "be83fe15f6a9976941870830fe26c014b863b3",
          "79e0f4476861a76e64329e787b1c4ff38d732f")


def test_strongswan_aes_ccm_messages_decrypt_with_wiresharks_keys():
    from tests.unit.test_ike_wire import SS_INFO_REQUEST, SS_INFO_RESPONSE
    suite = c.IkeSuite(w.ENCR_AES_CCM_12, 128, w.INTEG_NONE, w.PRF_HMAC_SHA2_256, w.DH_ECP_256)
    keys = c.IkeSaKeys(suite, b"", b"", b"", h(WS_CCM[2]), h(WS_CCM[3]), b"", b"")
    req = c.decrypt_message(keys, SS_INFO_REQUEST, initiator=False)   # we: the responder
    assert (req.exchange, req.message_id) == (w.INFORMATIONAL, 2)
    assert req.spi_i == h(WS_CCM[0]) and req.spi_r == h(WS_CCM[1])
    assert req.payloads == [w.Delete(w.PROTO_IKE)]                     # delete the IKE SA
    resp = c.decrypt_message(keys, SS_INFO_RESPONSE, initiator=True)
    assert resp.payloads == [] and resp.response
    # and the same bytes come out of our encryption with the IV strongSwan used
    iv = w.parse_message(SS_INFO_REQUEST).payloads[0].split(8, 12)[0]
    assert c.encrypt_sk(keys, req, initiator=True, iv=iv) == SS_INFO_REQUEST
    bad = bytearray(SS_INFO_REQUEST)
    bad[19] ^= 0x01                                                    # a header flag
    with pytest.raises(ParseError):
        c.decrypt_sk(keys, bytes(bad), initiator=False)


def test_nat_detection_hashes_of_the_strongswan_exchange():
    from tests.unit.test_ike_wire import SS_INIT_REQUEST, SS_INIT_RESPONSE
    # 192.168.1.2:500 (initiator) -> 192.168.1.14:500 (responder), no NAT in between
    req, resp = w.parse_message(SS_INIT_REQUEST), w.parse_message(SS_INIT_RESPONSE)
    spi_i, spi_r = req.spi_i, resp.spi_r
    assert req.notify(w.NAT_DETECTION_SOURCE_IP).data == \
        c.nat_detection_hash(spi_i, bytes(8), "192.168.1.2", 500)
    assert req.notify(w.NAT_DETECTION_DESTINATION_IP).data == \
        c.nat_detection_hash(spi_i, bytes(8), "192.168.1.14", 500)
    assert resp.notify(w.NAT_DETECTION_SOURCE_IP).data == \
        c.nat_detection_hash(spi_i, spi_r, "192.168.1.14", 500)
    assert resp.notify(w.NAT_DETECTION_DESTINATION_IP).data == \
        c.nat_detection_hash(spi_i, spi_r, bytes([192, 168, 1, 2]), 500)
    assert c.nat_detection_hash(spi_i, spi_r, "10.0.0.1", 4500) == hashlib.sha1(
        spi_i + spi_r + bytes([10, 0, 0, 1]) + b"\x11\x94").digest()


@pytest.mark.parametrize("name", SUITES)
def test_round_trips_both_directions(name):
    keys = make_keys(name)
    for extra in (0, 1, 15, 16, 17, 300):
        req = auth_request(extra=extra)
        data = c.encrypt_sk(keys, req, initiator=True)
        assert c.decrypt_message(keys, data, initiator=False) == req
        resp = w.IkeMessage(SPI_I, SPI_R, w.IKE_AUTH, w.FLAG_RESPONSE, 1, req.payloads[:2])
        data = c.encrypt_sk(keys, resp, initiator=False)
        assert c.decrypt_message(keys, data, initiator=True) == resp
        with pytest.raises(ParseError):                    # not a message from the peer
            c.decrypt_sk(keys, data, initiator=False)
    empty = w.IkeMessage(SPI_I, SPI_R, w.INFORMATIONAL, w.FLAG_INITIATOR, 7, [])
    assert c.decrypt_message(keys, c.encrypt_sk(keys, empty, initiator=True),
                             initiator=False) == empty
    with pytest.raises(ValueError):                        # the I flag contradicts the role
        c.encrypt_sk(keys, empty, initiator=False)


@pytest.mark.parametrize("name", ["aes128-sha256-ecp256", "aes256gcm16-ecp256"])
def test_our_sk_messages_read_in_scapy(name):
    keys = make_keys(name)
    msg = auth_request()
    data = c.encrypt_sk(keys, msg, initiator=True)
    pkt = IKEv2(data)
    assert raw(pkt) == data and pkt.length == len(data) and pkt.next_payload == 46
    enc = pkt[IKEv2_Encrypted]
    assert enc.next_payload == w.PT_IDI and enc.length == len(data) - 28
    suite = keys.suite
    assert len(enc.load) >= suite.iv_len + suite.icv_len + 1
    # scapy builds the inner chain; we encrypt and decrypt it
    inner = raw(IKEv2_IDi(IDtype=3, ID=b"carol@example.org") / IKEv2_Notify(type=16384))
    payloads = w.parse_payloads(w.PT_IDI, inner)
    m = w.IkeMessage(SPI_I, SPI_R, w.IKE_AUTH, w.FLAG_INITIATOR, 1, payloads)
    got = c.decrypt_message(keys, c.encrypt_sk(keys, m, initiator=True), initiator=False)
    assert w.build_payloads(got.payloads)[1] == inner


@pytest.mark.parametrize("name", SUITES)
def test_every_modified_byte_is_caught(name):
    keys = make_keys(name)
    data = c.encrypt_sk(keys, auth_request(), initiator=True)
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x40
        with pytest.raises(ParseError):
            c.decrypt_sk(keys, bytes(bad), initiator=False)
    with pytest.raises(ParseError):
        c.decrypt_sk(keys, data[:-1], initiator=False)
    with pytest.raises(c.IntegrityError) as err:
        c.decrypt_sk(keys, data[:-1] + bytes([data[-1] ^ 1]), initiator=False)
    assert isinstance(err.value, AuthenticationError)      # counted like ESP's ICV failures


@pytest.mark.parametrize("name", SUITES)
def test_fragments(name):
    keys = make_keys(name)
    msg = auth_request(extra=700)
    frags = c.encrypt_sk_fragments(keys, msg, initiator=True, max_size=256)
    assert len(frags) > 3 and all(len(f) <= 256 for f in frags)
    parsed = [w.parse_message(f).payloads[-1] for f in frags]
    n = len(frags)
    assert [(p.number, p.total) for p in parsed] == [(i, n) for i in range(1, n + 1)]
    assert parsed[0].first_payload == w.PT_IDI and all(p.first_payload == 0 for p in parsed[1:])
    pkt = IKEv2(frags[1])[IKEv2_Encrypted_Fragment]
    assert (pkt.frag_number, pkt.frag_total) == (2, len(frags))
    pieces = [c.decrypt_sk(keys, f, initiator=False) for f in frags]
    collector = c.FragmentCollector()
    order = pieces[1:] + pieces[:1] + pieces[2:3]          # out of order, one duplicate
    results = [collector.add(p) for p in order]
    assert results[n - 1] == msg and results[:n - 1] == [None] * (n - 1)
    with pytest.raises(ParseError):
        pieces[0].message()
    # the fragment number is authenticated (fragment 2 passed off as fragment 3)
    bad = bytearray(frags[1])
    assert bad[32:34] == b"\x00\x02"
    bad[33] = 3
    with pytest.raises(c.IntegrityError):
        c.decrypt_sk(keys, bytes(bad), initiator=False)


def test_fragment_collector_totals_and_plain_sk():
    keys = make_keys("aes128gcm16-ecp256")
    big = c.encrypt_sk_fragments(keys, auth_request(mid=3, extra=400), initiator=True,
                                 max_size=200)
    small = c.encrypt_sk_fragments(keys, auth_request(mid=3, extra=400), initiator=True,
                                   max_size=400)
    col = c.FragmentCollector()
    assert col.add(c.decrypt_sk(keys, small[0], initiator=False)) is None
    # a larger total restarts the collection (RFC 7383 2.6.1); a smaller one is dropped
    for f in big[:-1]:
        assert col.add(c.decrypt_sk(keys, f, initiator=False)) is None
    with pytest.raises(ParseError):
        col.add(c.decrypt_sk(keys, small[1], initiator=False))
    assert col.add(c.decrypt_sk(keys, big[-1], initiator=False)).message_id == 3
    one = c.encrypt_sk(keys, auth_request(mid=4), initiator=True)
    assert col.add(c.decrypt_sk(keys, one, initiator=False)) == auth_request(mid=4)
    with pytest.raises(ValueError):
        c.encrypt_sk_fragments(keys, auth_request(), initiator=True, max_size=60)


@FUZZ
@given(st.sampled_from(SUITES), st.binary(max_size=120), st.integers(0, 255))
def test_fuzzed_sk_payloads_only_raise_parse_error(name, body, first):
    keys = KEYS[name]
    data = w.build_message(w.IkeMessage(SPI_I, SPI_R, w.IKE_AUTH, w.FLAG_RESPONSE, 1,
                                        [w.SK(first, body)]))
    try:
        c.decrypt_sk(keys, data, initiator=True)
    except ParseError:
        return
    raise AssertionError("a forged SK payload was accepted")


@FUZZ
@given(st.sampled_from(SUITES), st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_parse_error(name, data):
    try:
        c.decrypt_sk(KEYS[name], data, initiator=True)
    except ParseError:
        pass


KEYS = {name: make_keys(name) for name in SUITES}


# --- AUTH -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _octets():
    keys = make_keys("aes128-sha256-ecp256")
    init_request = bytes.fromhex("00" * 28) + b"IKE_SA_INIT request as sent"
    return keys, init_request


def test_signed_octets_and_psk_against_the_formula():
    keys, message = _octets()
    nonce_r = b"R" * 32
    idi = w.IDi.from_value("client@example.org")
    octets = c.signed_octets(keys, initiator=True, message=message, nonce=nonce_r, identity=idi)
    maced_id = hmac.new(keys.sk_pi, b"\x03\x00\x00\x00client@example.org", "sha256").digest()
    assert octets == message + nonce_r + maced_id
    assert c.signed_octets(keys, initiator=True, message=message, nonce=nonce_r,
                           identity=idi.body()) == octets
    resp = c.signed_octets(keys, initiator=False, message=b"resp", nonce=b"I" * 32,
                           identity=w.IDr.from_value("vpn.example.org"))
    assert resp == b"resp" + b"I" * 32 + hmac.new(
        keys.sk_pr, b"\x02\x00\x00\x00vpn.example.org", "sha256").digest()
    secret = b"correct horse battery staple"
    pad_key = hmac.new(secret, b"Key Pad for IKEv2", "sha256").digest()
    expected = hmac.new(pad_key, octets, "sha256").digest()
    assert c.psk_auth(keys.prf, secret, octets) == expected
    assert c.verify_auth(w.AUTH(w.AUTH_PSK, expected), octets, psk=secret, prf=keys.prf) is None
    for bad in (w.AUTH(w.AUTH_PSK, expected[:-1] + b"\x00"), w.AUTH(w.AUTH_PSK, b"")):
        with pytest.raises(c.AuthFailed):
            c.verify_auth(bad, octets, psk=secret, prf=keys.prf)
    with pytest.raises(c.AuthFailed):
        c.verify_auth(w.AUTH(w.AUTH_PSK, expected), octets)          # no PSK configured
    with pytest.raises(c.AuthFailed):
        c.verify_auth(w.AUTH(w.AUTH_PSK, expected), octets + b"x", psk=secret, prf=keys.prf)


def _sig_alg_der(private_key, **kwargs) -> bytes:
    """The signatureAlgorithm AlgorithmIdentifier of a certificate cryptography signs."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.datetime(2025, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private_key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(private_key, **kwargs))
    der = cert.public_bytes(Encoding.DER)

    def tlv(data, pos):
        n, pos2 = data[pos + 1], pos + 2
        if n & 0x80:
            k = n & 0x7F
            n, pos2 = int.from_bytes(data[pos2:pos2 + k], "big"), pos2 + k
        return pos2, pos2 + n

    start, _ = tlv(der, 0)                  # Certificate SEQUENCE
    _, tbs_end = tlv(der, start)            # tbsCertificate
    _, alg_end = tlv(der, tbs_end)          # signatureAlgorithm
    return der[tbs_end:alg_end]


def test_algorithm_identifiers_match_x509s(rsa_key):
    p256 = ec.generate_private_key(ec.SECP256R1())
    assert _sig_alg_der(rsa_key, algorithm=hashes.SHA256()) == c.ALGID_SHA256_WITH_RSA
    assert _sig_alg_der(rsa_key, algorithm=hashes.SHA384()) == c.ALGID_SHA384_WITH_RSA
    assert _sig_alg_der(rsa_key, algorithm=hashes.SHA512()) == c.ALGID_SHA512_WITH_RSA
    for digest, algid in ((hashes.SHA256, c.ALGID_RSASSA_PSS_SHA256),
                          (hashes.SHA384, c.ALGID_RSASSA_PSS_SHA384),
                          (hashes.SHA512, c.ALGID_RSASSA_PSS_SHA512)):
        pss = padding.PSS(mgf=padding.MGF1(digest()), salt_length=digest.digest_size)
        assert _sig_alg_der(rsa_key, algorithm=digest(), rsa_padding=pss) == algid
    assert _sig_alg_der(p256, algorithm=hashes.SHA256()) == c.ALGID_ECDSA_WITH_SHA256
    assert _sig_alg_der(p256, algorithm=hashes.SHA384()) == c.ALGID_ECDSA_WITH_SHA384
    assert _sig_alg_der(p256, algorithm=hashes.SHA512()) == c.ALGID_ECDSA_WITH_SHA512
    assert _sig_alg_der(ed25519.Ed25519PrivateKey.generate(), algorithm=None) == c.ALGID_ED25519
    # Chromium's rsa-pss-sha256-salt10 test vector has the same shape (salt 10, not 32)
    assert c.ALGID_RSASSA_PSS_SHA256[:-1] + b"\x0a" == bytes.fromhex(
        "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886"
        "f70d010108300d06096086480165030402010500a20302010a")


def test_signatures_from_cryptography_verify(rsa_key):
    _, octets = _octets()
    pub = rsa_key.public_key()
    sig = rsa_key.sign(octets, padding.PKCS1v15(), hashes.SHA256())
    auth = w.AUTH(w.AUTH_DIGITAL_SIGNATURE, bytes([15]) + c.ALGID_SHA256_WITH_RSA + sig)
    assert c.verify_auth(auth, octets, public_key=pub) == w.HASH_SHA2_256
    sig = rsa_key.sign(octets, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    auth = w.AUTH(w.AUTH_DIGITAL_SIGNATURE,
                  w.join_digital_signature(c.ALGID_RSASSA_PSS_SHA256, sig))
    assert c.verify_auth(auth, octets, public_key=pub) == w.HASH_SHA2_256
    # the same PSS parameters with the DEFAULT trailerField written out (RFC 7427 A.4.3 style)
    explicit = bytes.fromhex(
        "304606092a864886f70d01010a3039a00f300d06096086480165030402010500a11c301a06092a864886"
        "f70d010108300d06096086480165030402010500a203020120a303020101")
    auth = w.AUTH(w.AUTH_DIGITAL_SIGNATURE, w.join_digital_signature(explicit, sig))
    assert c.verify_auth(auth, octets, public_key=pub) == w.HASH_SHA2_256
    sig = rsa_key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
    assert c.verify_auth(w.AUTH(w.AUTH_RSA_SIG, sig), octets, public_key=pub) == w.HASH_SHA1
    p256 = ec.generate_private_key(ec.SECP256R1())
    der = p256.sign(octets, ec.ECDSA(hashes.SHA256()))
    auth = w.AUTH(w.AUTH_DIGITAL_SIGNATURE,
                  w.join_digital_signature(c.ALGID_ECDSA_WITH_SHA256, der))
    assert c.verify_auth(auth, octets, public_key=p256.public_key()) == w.HASH_SHA2_256
    r, s = decode_dss_signature(der)                 # RFC 4754: r | s, 32 bytes each
    auth = w.AUTH(w.AUTH_ECDSA_256, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    assert c.verify_auth(auth, octets, public_key=p256.public_key()) == w.HASH_SHA2_256


@pytest.mark.parametrize("kind", ["rsa-pkcs1-256", "rsa-pkcs1-512", "rsa-pss-256", "rsa-pss-384",
                                  "rsa-method1", "ecdsa-256", "ecdsa-384-m14", "ecdsa-m9",
                                  "ecdsa-m10", "ecdsa-m11", "ed25519"])
def test_sign_then_verify(kind, rsa_key):
    _, octets = _octets()
    key, kwargs, want = {
        "rsa-pkcs1-256": (rsa_key, {}, w.HASH_SHA2_256),
        "rsa-pkcs1-512": (rsa_key, {"hash_alg": w.HASH_SHA2_512}, w.HASH_SHA2_512),
        "rsa-pss-256": (rsa_key, {"pss": True}, w.HASH_SHA2_256),
        "rsa-pss-384": (rsa_key, {"pss": True, "hash_alg": w.HASH_SHA2_384}, w.HASH_SHA2_384),
        "rsa-method1": (rsa_key, {"method": w.AUTH_RSA_SIG}, w.HASH_SHA1),
        "ecdsa-256": (ec.generate_private_key(ec.SECP256R1()), {}, w.HASH_SHA2_256),
        "ecdsa-384-m14": (ec.generate_private_key(ec.SECP384R1()),
                          {"hash_alg": w.HASH_SHA2_384}, w.HASH_SHA2_384),
        "ecdsa-m9": (ec.generate_private_key(ec.SECP256R1()), {"method": w.AUTH_ECDSA_256},
                     w.HASH_SHA2_256),
        "ecdsa-m10": (ec.generate_private_key(ec.SECP384R1()), {"method": w.AUTH_ECDSA_384},
                      w.HASH_SHA2_384),
        "ecdsa-m11": (ec.generate_private_key(ec.SECP521R1()), {"method": w.AUTH_ECDSA_521},
                      w.HASH_SHA2_512),
        "ed25519": (ed25519.Ed25519PrivateKey.generate(), {}, w.HASH_IDENTITY),
    }[kind]
    auth = c.sign_auth(key, octets, **kwargs)
    pub = key.public_key()
    assert c.verify_auth(auth, octets, public_key=pub) == want
    # the signature is what cryptography itself accepts
    if auth.method == w.AUTH_DIGITAL_SIGNATURE:
        algid, sig = w.split_digital_signature(auth.data)
        if isinstance(key, rsa.RSAPrivateKey) and not kwargs.get("pss"):
            pub.verify(sig, octets, padding.PKCS1v15(),
                       {w.HASH_SHA2_256: hashes.SHA256(),
                        w.HASH_SHA2_512: hashes.SHA512()}[want])
    with pytest.raises(c.AuthFailed):
        c.verify_auth(auth, octets + b"!", public_key=pub)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(c.AuthFailed):
        c.verify_auth(auth, octets, public_key=other)
    with pytest.raises(c.AuthFailed):
        c.verify_auth(auth, octets)
    if auth.method == w.AUTH_DIGITAL_SIGNATURE:
        with pytest.raises(c.AuthFailed):           # truncated signature
            c.verify_auth(w.AUTH(auth.method, auth.data[:-3]), octets, public_key=pub)


@pytest.mark.parametrize("data", [
    b"",
    b"\x05\x30\x03\x06\x01\x00",                              # unknown OID
    b"\x0d" + bytes.fromhex("300b06092a864886f70d01010a") + b"sig",   # PSS without params
    b"\x10" + bytes.fromhex("300e06092a864886f70d01010b0500ff") + b"sig",   # trailing
    b"\x03\x31\x01\x00sig",                                   # not a SEQUENCE
    b"\x04\x30\x82\xff\xffsig",                               # length beyond
])
def test_malformed_signature_data_fails_authentication(data, rsa_key):
    with pytest.raises(c.AuthFailed):
        c.verify_auth(w.AUTH(w.AUTH_DIGITAL_SIGNATURE, data), b"octets",
                      public_key=rsa_key.public_key())


def test_unsupported_auth_methods(rsa_key):
    with pytest.raises(c.AuthFailed):
        c.verify_auth(w.AUTH(w.AUTH_DSS_SIG, b"x"), b"o", public_key=rsa_key.public_key())
    with pytest.raises(ValueError):
        c.sign_auth(rsa_key, b"o", method=w.AUTH_ECDSA_256)
    with pytest.raises(ValueError):
        c.sign_auth(rsa_key, b"o", method=w.AUTH_PSK)


@FUZZ
@given(st.integers(0, 255), st.binary(max_size=120))
def test_fuzzed_auth_payloads_only_fail_authentication(method, data):
    with pytest.raises(c.AuthFailed):
        c.verify_auth(w.AUTH(method, data), b"octets", public_key=FUZZ_EC_KEY,
                      psk=b"secret", prf=w.PRF_HMAC_SHA2_256)


FUZZ_EC_KEY = ec.generate_private_key(ec.SECP256R1()).public_key()


# --- a whole key agreement between two ends -------------------------------------------------

@pytest.mark.parametrize("name", ["aes256gcm16-prfsha256-curve25519",
                                  "aes128-sha256-prfsha256-modp2048"])
def test_two_ends_agree(name):
    suite = c.IkeSuite.parse(name)
    ini, res = c.DiffieHellman(suite.dh), c.DiffieHellman(suite.dh)
    ni, nr = os.urandom(32), os.urandom(32)
    spi_i, spi_r = os.urandom(8), os.urandom(8)
    ki = c.ike_sa_keys(suite, ini.shared_secret(res.public_bytes()), ni, nr, spi_i, spi_r)
    kr = c.ike_sa_keys(suite, res.shared_secret(ini.public_bytes()), ni, nr, spi_i, spi_r)
    msg = w.IkeMessage(spi_i, spi_r, w.IKE_AUTH, w.FLAG_INITIATOR, 1, [w.Notify(w.INITIAL_CONTACT)])
    assert c.decrypt_message(kr, c.encrypt_sk(ki, msg, initiator=True), initiator=False) == msg
    ci = c.child_sa_keys(ki, ni, nr, *c.esp_key_lengths("aes128gcm16"))
    cr = c.child_sa_keys(kr, ni, nr, *c.esp_key_lengths("aes128gcm16"))
    assert ci.outbound(True) == cr.inbound(False)
