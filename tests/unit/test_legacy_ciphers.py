"""OpenVPN 2.6's legacy data-channel ciphers and HMAC digests (erebus.openvpn.algorithms):
the names 2.6 accepts, known-answer vectors through erebus's own sealers, the key sizes
key method 2 takes from the key block, tls-auth and static keys with the other digests,
and the session's choices as 2.6 makes them (a pushed BF-CBC, the fallback, the SWEET32
warning and the 64 MB reneg-bytes limit)."""

from __future__ import annotations

import hmac
import logging
import random
import struct

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import Blowfish
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from erebus.crypto.seal import CbcHmacSeal, Hmac, pkcs7_padding, pkcs7_unpadded_len
from erebus.errors import ConfigError
from erebus.openvpn import algorithms as alg
from erebus.openvpn.data import (CBC_CIPHERS, DIGESTS, DataError, DataKey, cipher_key_bits,
                                 is_insecure, normalize_cipher, normalize_digest)
from erebus.openvpn.session import SWEET32_RENEG_BYTES, ClientSession
from erebus.openvpn.static import StaticKeySession, StaticKeySettings, options_string
from erebus.openvpn.wrap import TlsAuth, WrapError
from erebus.wire.openvpn import parse_packet
from tests.unit import test_session as _session
from tests.unit.test_session import FakeServer, _OldServer, _profile, push, run, settings

pki = _session.pki          # the session tests' CA and server certificate (a fixture)

KEY_BLOCK = random.Random(64).randbytes(256)
STATIC_KEY = random.Random(2048).randbytes(256)


def server_view(kb: bytes) -> bytes:
    return kb[128:] + kb[:128]


# -- names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling,name", [
    # every one checked against the stock 2.6.14 client on OpenSSL 3.0 ("Cipher 'X'
    # initialized with N bit key"): aliases and OIDs of EVP_CIPHER_fetch, any case
    ("bf", "BF-CBC"), ("blowfish", "BF-CBC"), ("Bf-cBc", "BF-CBC"),
    ("1.3.6.1.4.1.3029.1.2", "BF-CBC"), ("des3", "DES-EDE3-CBC"),
    ("1.2.840.113549.3.7", "DES-EDE3-CBC"), ("cast", "CAST5-CBC"), ("cast-cbc", "CAST5-CBC"),
    ("seed", "SEED-CBC"), ("aes256", "AES-256-CBC"), ("camellia128", "CAMELLIA-128-CBC"),
    ("des", "DES-CBC"), ("rc2-128", "RC2-CBC"), ("sm4", "SM4-CBC"), ("idea", "IDEA-CBC"),
])
def test_cipher_spellings_of_openssl_3(spelling, name):
    assert normalize_cipher(spelling) == name and name in CBC_CIPHERS


@pytest.mark.parametrize("spelling,name", [
    ("md5", "MD5"), ("ssl3-md5", "MD5"), ("SHA-1", "SHA1"), ("ssl3-sha1", "SHA1"),
    ("sha2-224", "SHA224"), ("SHA-384", "SHA384"), ("sha512-224", "SHA512-224"),
    ("SHA-512/256", "SHA512-256"), ("ripemd", "RIPEMD160"), ("RIPEMD-160", "RIPEMD160"),
    ("1.3.36.3.2.1", "RIPEMD160"), ("2.16.840.1.101.3.4.2.1", "SHA256"),
    ("sha3-256", "SHA3-256"), ("BLAKE2S-256", "BLAKE2s256"), ("sm3", "SM3"),
])
def test_digest_spellings_of_openssl_3(spelling, name):
    assert normalize_digest(spelling) == name and name in DIGESTS


@pytest.mark.parametrize("name,words", [
    ("ARIA-128-CBC", "ARIA-128-CBC is not supported by erebus: cryptography has no "
                     "implementation of it"),
    ("DESX-CBC", "DESX-CBC is not supported"), ("rc2-40", "RC2-40-CBC is not supported"),
    ("BF-OFB", "CFB and OFB modes are not supported"),
    ("AES-256-CFB8", "CFB and OFB modes are not supported"),
    ("FOO-CBC", "unsupported data cipher FOO-CBC"),
])
def test_ciphers_erebus_cannot_run_are_named(name, words):
    with pytest.raises(alg.AlgorithmError, match=words):
        alg.cbc_cipher(name)


def test_a_digest_the_library_lacks_is_a_clear_refusal(monkeypatch):
    # MD4 / WHIRLPOOL live in OpenSSL's legacy provider, which Python's hashlib may lack
    monkeypatch.setattr(alg, "_hmac_works", lambda name: name != "ripemd160")
    with pytest.raises(alg.AlgorithmError, match="digest RIPEMD160 is not available in this "
                       "Python's crypto library"):
        alg.digest("rmd160")
    with pytest.raises(alg.AlgorithmError, match="SHAKE128 is an extendable-output"):
        alg.digest("shake128")


def test_key_sizes_as_2_6_reports_them():
    # crypto_openssl.c cipher_kt_key_size (EVP_CIPHER_key_length): --show-ciphers says
    # "BF-CBC (128 bit key, 64 bit block)", "DES-EDE-CBC (128 bit key ...)" ...
    bits = {"BF-CBC": 128, "CAST5-CBC": 128, "IDEA-CBC": 128, "RC2-CBC": 128, "DES-CBC": 64,
            "DES-EDE-CBC": 128, "DES-EDE3-CBC": 192, "SEED-CBC": 128, "SM4-CBC": 128,
            "CAMELLIA-192-CBC": 192, "AES-256-GCM": 256, "none": 0}
    assert {c: cipher_key_bits(c) for c in bits} == bits
    assert {c for c in CBC_CIPHERS if is_insecure(c)} == {
        "BF-CBC", "CAST5-CBC", "IDEA-CBC", "RC2-CBC", "DES-CBC", "DES-EDE-CBC",
        "DES-EDE3-CBC"}


# -- known answers through erebus's sealer ---------------------------------------------------

# Published vectors (Eric Young's Blowfish CBC set, RFC 2144, RFC 3713, RFC 4269, RFC 2268,
# FIPS 46 worked example, the SM4 standard, Lai-Massey IDEA) and, for the two DES-EDE
# variants, what OpenSSL 3.0.19's legacy provider gives (openssl enc -nopad).  With a zero
# IV the first CBC block is the block cipher's own output.
VECTORS = [
    ("BF-CBC", "0123456789ABCDEFF0E1D2C3B4A59687", "FEDCBA9876543210",
     "37363534333231204E6F77206973207468652074696D6520666F722000000000",
     "6b77b4d63006dee605b156e27403979358deb9e7154616d959f1652bd5ff92cc"),
    ("CAST5-CBC", "0123456712345678234567893456789A", "0" * 16, "0123456789ABCDEF",
     "238b4fe5847e44b2"),
    ("CAMELLIA-128-CBC", "0123456789abcdeffedcba9876543210", "0" * 32,
     "0123456789abcdeffedcba9876543210", "67673138549669730857065648eabe43"),
    ("CAMELLIA-256-CBC", "0123456789abcdeffedcba987654321000112233445566778899aabbccddeeff",
     "0" * 32, "0123456789abcdeffedcba9876543210", "9acc237dff16d76c20ef7c919e3a7509"),
    ("SEED-CBC", "0" * 32, "0" * 32, "000102030405060708090A0B0C0D0E0F",
     "5ebac6e0054e166819aff1cc6d346cdb"),
    ("DES-CBC", "133457799BBCDFF1", "0" * 16, "0123456789ABCDEF", "85e813540f0ab405"),
    ("DES-EDE-CBC", "0123456789ABCDEFFEDCBA9876543210", "0001020304050607",
     "0123456789ABCDEF1122334455667788", "fd355ebfe400aeb2c769837aaee87a23"),
    ("DES-EDE3-CBC", "0123456789ABCDEFFEDCBA987654321089ABCDEF01234567", "0001020304050607",
     "0123456789ABCDEF1122334455667788", "21a39b3c28304dcd008b8121e47b8b16"),
    ("RC2-CBC", "88bca90e90875a7f0f79c384627bafb2", "0" * 16, "0000000000000000",
     "2269552ab0f85ca6"),
    ("SM4-CBC", "0123456789ABCDEFFEDCBA9876543210", "0" * 32,
     "0123456789ABCDEFFEDCBA9876543210", "681edf34d206965e86b3e94f536e4246"),
    ("IDEA-CBC", "00010002000300040005000600070008", "0" * 16, "0000000100020003",
     "11fbed2b01986de5"),
]


@pytest.mark.parametrize("name,key,iv,plain,expect", VECTORS, ids=[v[0] for v in VECTORS])
def test_cbc_known_answers(name, key, iv, plain, expect):
    spec = alg.cbc_cipher(name)
    key, iv, plain = bytes.fromhex(key), bytes.fromhex(iv), bytes.fromhex(plain)
    assert len(key) == spec.key_len and len(iv) == spec.block_len

    def sealer():
        return CbcHmacSeal(key, None, cipher=lambda k: alg.make_cbc(spec, k))
    sealed = sealer().seal(None, plain, iv=iv)
    assert sealed == iv + bytes.fromhex(expect)
    assert bytes(sealer().open(sealed)) == plain


@pytest.mark.parametrize("name,key,expect", [
    # RFC 2202 / RFC 2286 / RFC 4231, test case 1: data "Hi There"
    ("MD5", b"\x0b" * 16, "9294727a3638bb1c13f48ef8158bfc9d"),
    ("SHA1", b"\x0b" * 20, "b617318655057264e28bc0b6fb378c8ef146be00"),
    ("RIPEMD160", b"\x0b" * 20, "24cb4bd67d20fc1a5d2ed7732dcc39377f0a5668"),
    ("SHA224", b"\x0b" * 20, "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22"),
    ("SHA384", b"\x0b" * 20, "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7ce"
                             "bc59cfaea9ea9076ede7f4af152e8b2fa9cb6"),
])
def test_hmac_known_answers(name, key, expect):
    spec = alg.digest(name)
    assert spec.size == len(expect) // 2
    assert Hmac(key, spec.hashlib_name).tag(b"Hi There").hex() == expect


def test_pkcs7_pads_to_the_cipher_block():
    assert [len(pkcs7_padding(n, 8)) for n in range(4, 13)] == [4, 3, 2, 1, 8, 7, 6, 5, 4]
    assert pkcs7_unpadded_len(b"abcd" + bytes([4]) * 4, 8) == 4
    with pytest.raises(Exception, match="padding"):
        pkcs7_unpadded_len(b"abcdefg" + bytes([9]), 8)     # 9 > an 8-byte block


# -- the data channel ------------------------------------------------------------------------

def test_bf_cbc_with_md5_is_laid_out_as_2_6_does():
    """header | HMAC-MD5(IV | ct) | IV(8) | BF-CBC(pid | payload | pad): the cipher key is
    the first 16 bytes of the cipher slot (128 bits), the HMAC key the first 16 of the
    HMAC slot (md_kt_size)."""
    ivs = iter([bytes.fromhex("0102030405060708")])
    client = DataKey(0, "bf", KEY_BLOCK, auth="md5", peer_id=5, rng=lambda n: next(ivs))
    packet = client.encrypt(b"hello")
    header, tag, iv, ct = packet[:4], packet[4:20], packet[20:28], packet[28:]
    assert header == bytes([9 << 3, 0, 0, 5])             # P_DATA_V2, key id 0, peer-id 5
    assert iv == bytes.fromhex("0102030405060708") and len(ct) == 16   # 4 + 5 + pad 7
    assert tag == hmac.new(KEY_BLOCK[64:80], iv + ct, "md5").digest()
    dec = Cipher(Blowfish(KEY_BLOCK[:16]), modes.CBC(iv)).decryptor()
    plain = dec.update(ct) + dec.finalize()
    assert plain == struct.pack("!I", 1) + b"hello" + bytes([7]) * 7
    server = DataKey(0, "BF-CBC", server_view(KEY_BLOCK), auth="MD5", peer_id=5)
    pkt = parse_packet(packet)
    assert server.decrypt(pkt.body, pkt.header) == b"hello"


@pytest.mark.parametrize("cipher", sorted(CBC_CIPHERS))
@pytest.mark.parametrize("auth", ["MD5", "RIPEMD160", "SHA224", "SHA384", "none"])
def test_every_cbc_cipher_and_digest_round_trips(cipher, auth):
    client = DataKey(1, cipher, KEY_BLOCK, auth=auth, peer_id=None)
    server = DataKey(1, cipher, server_view(KEY_BLOCK), auth=auth, peer_id=None)
    block = alg.cbc_cipher(cipher).block_len
    for size in (0, 1, block - 5, block - 4, 1400):
        payload = random.Random(size).randbytes(size)
        packet = client.encrypt(payload)
        body = parse_packet(packet).body
        overhead = 1 + (DIGESTS[auth] if auth != "none" else 0) + block
        assert (len(packet) - overhead) % block == 0
        assert server.decrypt(body) == payload
        back = parse_packet(server.encrypt(payload)).body
        assert client.decrypt(back) == payload
    if auth != "none":
        tampered = bytearray(parse_packet(client.encrypt(b"x" * 20)).body)
        tampered[-1] ^= 1
        with pytest.raises(DataError, match="HMAC mismatch"):
            server.decrypt(memoryview(bytes(tampered)))


# -- tls-auth and static keys with the other digests ----------------------------------------

@pytest.mark.parametrize("digest,size", [("SHA384", 48), ("md5", 16), ("RIPEMD-160", 20),
                                         ("sha2-224", 28)])
def test_tls_auth_with_other_digests(digest, size):
    client, server = TlsAuth(STATIC_KEY, 1, digest), TlsAuth(STATIC_KEY, 0, digest)
    plain = bytes([0x38]) + bytes(range(8)) + b"\x00" + b"\x00\x00\x00\x00"
    wire = client.wrap(plain, 1000.0)
    assert client.overhead == size + 8 and len(wire) == len(plain) + size + 8
    md = alg.digest(digest).hashlib_name       # keyed with key[1]'s HMAC slot, first bytes
    assert wire[9:9 + size] == hmac.new(STATIC_KEY[192:192 + size],
                                        wire[9 + size:17 + size] + plain, md).digest()
    assert server.unwrap(wire, 1000.0) == plain
    bad = bytearray(wire)
    bad[9] ^= 0x80
    with pytest.raises(WrapError):
        server.unwrap(bytes(bad), 1000.0)


def test_tls_auth_needs_a_digest():
    with pytest.raises(ConfigError, match=r"tls-auth enabled, but no valid --auth algorithm "
                       r"specified \('none'\)"):
        TlsAuth(STATIC_KEY, 1, "none")


@pytest.mark.parametrize("cipher,auth", [("BF-CBC", "MD5"), ("DES-EDE3-CBC", "SHA224"),
                                         (None, "RIPEMD160"), ("CAMELLIA-256-CBC", "SHA384")])
def test_static_key_mode_with_legacy_algorithms(cipher, auth, caplog):
    def session(direction):
        st = StaticKeySettings(key=STATIC_KEY, direction=direction, cipher=cipher, auth=auth,
                               local_ip="198.19.8.2", remote_ip="198.19.8.1")
        return StaticKeySession(st, 0.0, clock=lambda: 1000.0)
    with caplog.at_level(logging.WARNING, logger="erebus.openvpn"):
        a, b = session(1), session(0)
    name = normalize_cipher(cipher or "BF-CBC")      # no cipher: 2.6's BF-CBC
    assert a.cipher == name and a.auth == normalize_digest(auth)
    insecure = any("WARNING: INSECURE cipher (" + name in r.getMessage()
                   for r in caplog.records)
    assert insecure == is_insecure(name)
    datagram = a.send_packet(b"\x45" + bytes(30), 1.0)
    assert b.receive_datagram(datagram, 1.0) == [b"\x45" + bytes(30)]
    text = options_string(cipher=name, digest=normalize_digest(auth), tun_mtu=1500,
                          local_ip="198.19.8.2", remote_ip="198.19.8.1", direction=1)
    spec = alg.cbc_cipher(name)
    assert f"cipher {name}" in text and f"keysize {spec.key_len * 8}" in text
    link = 1500 + 8 + DIGESTS[normalize_digest(auth)] + 2 * spec.block_len
    assert f"link-mtu {link}" in text                # mtu.c: BF-CBC adds 8 + 8


# -- the session: as 2.6 negotiates ----------------------------------------------------------

def _exchange(client, server, now):
    datagram = client.send_packet(b"E" + bytes(27), now)
    assert server.receive(datagram, now) == [b"E" + bytes(27)]
    assert client.receive_datagram(server.data_key.encrypt(b"reply"), now) == [b"reply"]
    return datagram


@pytest.mark.parametrize("cipher,reneg_bytes,renegotiates", [
    ("BF-CBC", None, True),           # ssl.c tls_limit_reneg_bytes: 64 MB
    ("BF-CBC", 0, False),             # 'reneg-bytes 0' given: no limit, as in 2.6
    ("DES-EDE3-CBC", None, True),
    ("CAMELLIA-128-CBC", None, False),     # a 128-bit block: no SWEET32 limit
])
def test_a_pushed_legacy_cipher_and_the_sweet32_limit(pki, caplog, cipher, reneg_bytes,
                                                       renegotiates):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, data_ciphers=["AES-256-GCM", cipher], auth="MD5",
                                    reneg_bytes=reneg_bytes, reneg_sec=None), 0.0)
    server = FakeServer(cert, key, push=push(cipher=cipher), cipher=cipher, auth="MD5")
    with caplog.at_level(logging.WARNING, logger="erebus.openvpn"):
        _, _, now = run(client, server)
    assert client.established and client.cipher == cipher
    datagram = _exchange(client, server, now)
    block = alg.cbc_cipher(cipher).block_len
    # HMAC-MD5 | IV | CBC(pid 4 + 28 bytes + a whole block of PKCS#7 padding)
    assert len(datagram) == 4 + 16 + block + 32 + block
    messages = [r.getMessage() for r in caplog.records]
    sweet32 = (f"WARNING: INSECURE cipher ({cipher}) with block size less than 128 bit "
               f"({block * 8} bit).  This allows attacks like SWEET32.")
    assert any(m.startswith(sweet32) for m in messages) == is_insecure(cipher)
    limited = "WARNING: cipher with small block size in use, reducing reneg-bytes to 64MB " \
              "to mitigate SWEET32 attacks."
    assert (limited in messages) == renegotiates
    # 64 MB through the tunnel: a soft reset (key id 1) exactly when 2.6 would start one
    payload = bytes(60000)
    sent = 0
    while sent < SWEET32_RENEG_BYTES + len(payload):
        client.send_packet(payload, now)
        sent += len(payload)
        if sent < SWEET32_RENEG_BYTES - len(payload):
            continue
        client.handle_timer(now)
        if server.soft_resets or client.datagrams_to_send(now):
            break
    run(client, server, until=lambda c: bool(server.soft_resets) or c.finished,
        start=now, limit=now + 5)
    assert server.soft_resets == ([1] if renegotiates else [])
    if renegotiates:      # not before 64 MB went through the key (with the 28 + 5 before)
        assert SWEET32_RENEG_BYTES <= sent + 33 < SWEET32_RENEG_BYTES + len(payload)


def test_the_fallback_cipher_for_a_server_that_pushes_none(pki, caplog):
    # ssl_ncp.c check_pull_client_ncp: no pushed cipher, none in the server's options
    # string, data-ciphers-fallback set: the fallback, with its SWEET32 warning
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, fallback_cipher="BF-CBC", auth="SHA1"), 0.0)
    server = _OldServer(cert, key, push=push(cipher=None), options="V4,dev-type tun",
                        cipher="BF-CBC")
    with caplog.at_level(logging.WARNING, logger="erebus.openvpn"):
        _, _, now = run(client, server)
    assert client.established and client.cipher == "BF-CBC"
    _exchange(client, server, now)
    assert any("INSECURE cipher (BF-CBC)" in r.getMessage() for r in caplog.records)


def test_poor_mans_ncp_takes_the_servers_bf_cbc_from_data_ciphers(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, data_ciphers=["AES-256-GCM", "BF-CBC"]), 0.0)
    server = _OldServer(cert, key, push=push(cipher=None),
                        options="V4,dev-type tun,cipher BF-CBC,auth SHA1,keysize 128",
                        cipher="BF-CBC")
    _, _, now = run(client, server)
    assert client.established and client.cipher == "BF-CBC"
    _exchange(client, server, now)


@pytest.mark.parametrize("how,announced", [
    # options.c options_string: --cipher (BF-CBC when unset) only if data-ciphers has it,
    # its digest (none for an AEAD) and its key bits
    (dict(), ",auth SHA1,keysize 128,"),
    (dict(data_ciphers=["AES-256-GCM", "BF-CBC"], auth="MD5"),
     ",cipher BF-CBC,auth MD5,keysize 128,"),
    (dict(cipher="DES-EDE3-CBC", auth="SHA384"), ",auth SHA384,keysize 192,"),
    (dict(data_ciphers=["AES-256-GCM", "AES-128-GCM"], fallback_cipher="AES-128-GCM"),
     ",cipher AES-128-GCM,auth [null-digest],keysize 128,"),
])
def test_the_occ_options_string_names_the_cipher_as_2_6(pki, how, announced):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, **how), 0.0)
    server = FakeServer(cert, key)
    run(client, server)
    options = server.peer_info[2:].split("\x00")[0]    # after its u16 length
    assert announced in options, options
    if "cipher " not in announced:
        assert ",cipher " not in options


def test_a_legacy_cipher_line_is_ignored_for_negotiation(pki):
    # options.c options_postprocess_cipher: the warning, then AES-256-GCM as pushed
    from erebus.runtime.openvpn import session_settings
    ca, cert, key = pki["lab-ca"]
    profile = _profile(ca, "cipher BF-CBC", "auth SHA256")
    assert any("legacy.ovpn:5: cipher: DEPRECATED OPTION: --cipher set to 'BF-CBC' but "
               "missing in --data-ciphers (AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305). "
               "OpenVPN ignores --cipher for cipher negotiations." in w
               for w in profile.warnings), profile.warnings
    client = ClientSession(session_settings(profile), 0.0)
    server = FakeServer(cert, key)
    _, _, now = run(client, server)
    assert client.established and client.cipher == "AES-256-GCM"
    _exchange(client, server, now)


def test_cipher_and_data_ciphers_fallback_are_one_setting(pki):
    # options.c: both set o->ciphername; the last line wins, and a fallback line anywhere
    # makes it the fallback
    ca, _, _ = pki["lab-ca"]
    p = _profile(ca, "data-ciphers-fallback AES-256-CBC", "cipher bf")
    assert p.data_ciphers_fallback == p.cipher == "BF-CBC"
    p = _profile(ca, "cipher bf", "data-ciphers-fallback AES-256-CBC")
    assert p.data_ciphers_fallback == p.cipher == "AES-256-CBC"
    p = _profile(ca, "data-ciphers AES-256-GCM:bf:des3", "providers legacy default",
                 "reneg-bytes 0", "auth ripemd160")
    assert p.data_ciphers == ["AES-256-GCM", "BF-CBC", "DES-EDE3-CBC"]
    assert p.reneg_bytes == 0 and p.auth == "RIPEMD160"
