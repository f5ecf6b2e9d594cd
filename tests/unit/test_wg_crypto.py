"""Known answers for WireGuard's primitives (erebus.wireguard.crypto), each from a
published vector or an independent implementation:

- BLAKE2s: RFC 7693 appendix B ("abc") and appendix E (the self-test's grand hash over
  keyed and unkeyed hashes of every output length, 16-byte keys included: mac2's shape),
  the BLAKE2 reference package's testvectors/blake2s-kat.txt and blake2-kat.json
  (github.com/BLAKE2/BLAKE2, commit ed1974e).
- HMAC-BLAKE2s and KDF1-3: ``cryptography``'s HMAC and HKDF over BLAKE2s(32), which
  is OpenSSL's code, not hashlib's.
- X25519: RFC 7748 section 5.2 (incl. the 1 and 1000 iteration answers) and 6.1;
  the low-order points (libsodium's and the curve25519 page's list) refused; public
  keys as wireguard-tools' ``wg pubkey`` derives them (where it is installed).
- ChaCha20-Poly1305: RFC 8439 section 2.8.2 and appendix A.5 (whose nonce is 32 zero
  bits and a 64-bit little-endian counter: exactly WireGuard's AEAD nonce).
- HChaCha20: draft-irtf-cfrg-xchacha-03 section 2.2.1, and the draft's definition
  recomputed here in pure Python (quarter rounds) for many keys.
- XChaCha20-Poly1305: draft-irtf-cfrg-xchacha-03 appendix A.3.1.
- TAI64N: the TAI64 label of 1970 is 2^62 + 10 (cr.yp.to/libtai/tai64.html), 12 bytes
  big-endian, the nanoseconds rounded down to 2^24 ns as wireguard-go's
  tai64n/tai64n.go (whitenerMask = 0x1000000 - 1) and the kernel's noise.c do.
"""

from __future__ import annotations

import base64
import hashlib
import random
import shutil
import struct
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from erebus.wireguard import crypto
from erebus.wireguard.crypto import DhError, InvalidTag, PrivateKey


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# -- BLAKE2s --------------------------------------------------------------------------------

def test_blake2s_rfc7693_appendix_b_abc():
    want = h("50 8C 5E 8C 32 7C 14 E2 E1 A7 2B A3 4E EB 45 2F"
             "37 45 8B 20 9E D6 3A 29 4D 99 9B 4C 86 67 59 82")
    assert crypto.hash_(b"abc") == want
    assert crypto.hash_(b"a", b"", b"bc") == want       # HASH of the concatenation


def _rfc7693_seq(length: int, seed: int) -> bytes:
    """RFC 7693 appendix E's selftest_seq (a Fibonacci generator)."""
    a, b, out = (0xDEAD4BAD * seed) & 0xFFFFFFFF, 1, bytearray()
    for _ in range(length):
        t = (a + b) & 0xFFFFFFFF
        a, b = b, t
        out.append(t >> 24)
    return bytes(out)


def test_blake2s_rfc7693_appendix_e_selftest_grand_hash():
    """The RFC's self-test: hashes of 0..1024 bytes, unkeyed and keyed (key length =
    output length), for outputs of 16, 20, 28 and 32 bytes, hashed together.  Our
    HASH gives the unkeyed 32-byte ones and our MAC the keyed 16-byte ones."""
    grand = hashlib.blake2s()
    for outlen in (16, 20, 28, 32):
        for inlen in (0, 3, 64, 65, 255, 1024):
            data = _rfc7693_seq(inlen, inlen)
            key = _rfc7693_seq(outlen, outlen)
            if outlen == 32:
                plain = crypto.hash_(data)
            else:
                plain = hashlib.blake2s(data, digest_size=outlen).digest()
            if outlen == 16:
                keyed = crypto.mac(key, data)
            else:
                keyed = hashlib.blake2s(data, digest_size=outlen, key=key).digest()
            grand.update(plain)
            grand.update(keyed)
    assert grand.digest() == h("6A 41 1F 08 CE 25 AD CD FB 02 AB A6 41 45 1C EC"
                               "53 C5 98 B2 4F 4F C7 87 FB DC 88 79 7F 4C 1D FE")


# From the BLAKE2 reference package (github.com/BLAKE2/BLAKE2 testvectors/blake2-kat.json
# and blake2s-kat.txt): the input is bytes 00 01 02 ... of the given length, the key
# (keyed entries) 00 01 ... 1f.
BLAKE2S_UNKEYED = {
    0: "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9",
    1: "e34d74dbaf4ff4c6abd871cc220451d2ea2648846c7757fbaac82fe51ad64bea",
    255: "f03f5789d3336b80d002d59fdf918bdb775b00956ed5528e86aa994acb38fe2d",
}
BLAKE2S_KEYED = {
    0: "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49",
    1: "40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1",
    255: "3fb735061abc519dfe979e54c1ee5bfad0a9d858b3315bad34bde999efd724dd",
}


@pytest.mark.parametrize("length", sorted(BLAKE2S_UNKEYED))
def test_blake2s_reference_kat_unkeyed(length):
    assert crypto.hash_(bytes(range(length))).hex() == BLAKE2S_UNKEYED[length]


@pytest.mark.parametrize("length", sorted(BLAKE2S_KEYED))
def test_blake2s_reference_kat_keyed(length):
    """The keyed KAT is of BLAKE2s-256; MAC is the same keyed BLAKE2s with a 16-byte
    digest (the digest length is a parameter of the hash, so it is not a prefix:
    RFC 7693 section 2.5), which the appendix E test above covers."""
    data, key = bytes(range(length)), bytes(range(32))
    assert hashlib.blake2s(data, key=key).hexdigest() == BLAKE2S_KEYED[length]
    assert crypto.mac(key, data) == hashlib.blake2s(data, key=key, digest_size=16).digest()
    assert crypto.mac(key, data) != bytes.fromhex(BLAKE2S_KEYED[length])[:16]


def test_wireguard_construction_and_identifier_hashes():
    """Ci = HASH(CONSTRUCTION) and Hi = HASH(Ci || IDENTIFIER), whitepaper 5.4.2: the
    constants other implementations (rustyguard's CONSTRUCTION_HASH/IDENTIFIER_HASH)
    hard-code."""
    c0 = crypto.hash_(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
    assert c0 == h("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36")
    assert crypto.hash_(c0, b"WireGuard v1 zx2c4 Jason@zx2c4.com") == \
        h("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3")


# -- HMAC-BLAKE2s and the KDF chain ----------------------------------------------------------

def _openssl_hmac(key: bytes, data: bytes) -> bytes:
    mac = c_hmac.HMAC(key, hashes.BLAKE2s(32))
    mac.update(data)
    return mac.finalize()


def _openssl_hkdf(key: bytes, data: bytes, n: int) -> list[bytes]:
    """KDFn(key, input) is HKDF (RFC 5869) with salt = key, IKM = input, no info."""
    out = HKDF(hashes.BLAKE2s(32), 32 * n, salt=key, info=b"").derive(data)
    return [out[i:i + 32] for i in range(0, len(out), 32)]


@pytest.mark.parametrize("seed", range(8))
def test_hmac_blake2s_against_openssl(seed):
    rng = random.Random(seed)
    key = rng.randbytes(rng.choice((0, 16, 32, 64, 65, 100)))   # > 64: the key is hashed
    data = rng.randbytes(rng.randrange(0, 300))
    assert crypto.hmac(key, data) == _openssl_hmac(key, data)


@pytest.mark.parametrize("seed", range(8))
def test_kdf1_kdf2_kdf3_are_hkdf_over_blake2s(seed):
    rng = random.Random(100 + seed)
    key = rng.randbytes(32)
    data = rng.randbytes(rng.choice((0, 32, 48)))       # empty (the split), keys, psk
    assert [crypto.kdf1(key, data)] == _openssl_hkdf(key, data, 1)
    assert list(crypto.kdf2(key, data)) == _openssl_hkdf(key, data, 2)
    assert list(crypto.kdf3(key, data)) == _openssl_hkdf(key, data, 3)
    # each KDF's outputs are a prefix of the next one's (the same HKDF chain)
    assert crypto.kdf3(key, data)[:2] == crypto.kdf2(key, data)


def test_kdf_whitepaper_definition_with_hashlib():
    """Whitepaper 5.4: tau0 = HMAC(key, input), tau1 = HMAC(tau0, 0x1),
    tau_i = HMAC(tau0, tau_{i-1} || i), HMAC from the stdlib's hmac module."""
    import hmac as std_hmac
    key, data = bytes(range(32)), b"input key material"
    tau0 = std_hmac.new(key, data, hashlib.blake2s).digest()
    tau1 = std_hmac.new(tau0, b"\x01", hashlib.blake2s).digest()
    tau2 = std_hmac.new(tau0, tau1 + b"\x02", hashlib.blake2s).digest()
    tau3 = std_hmac.new(tau0, tau2 + b"\x03", hashlib.blake2s).digest()
    assert crypto.kdf3(key, data) == (tau1, tau2, tau3)


# -- X25519 ----------------------------------------------------------------------------------

RFC7748_5_2 = [   # (scalar, u-coordinate, output), RFC 7748 section 5.2
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",   # top bit set
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
]


@pytest.mark.parametrize("scalar,u,out", RFC7748_5_2)
def test_x25519_rfc7748_section_5_2(scalar, u, out):
    assert PrivateKey(h(scalar)).exchange(h(u)) == h(out)
    assert crypto.dh(PrivateKey(h(scalar)), h(u)) == h(out)


def test_x25519_rfc7748_section_5_2_iterated():
    k = u = bytes([9]) + bytes(31)
    for i in range(1000):
        k, u = PrivateKey(k).exchange(u), k
        if i == 0:
            assert k == h("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
    assert k == h("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")


def test_x25519_rfc7748_section_6_1_alice_and_bob():
    alice = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    alice_public = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob_public = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert PrivateKey(alice).public == crypto.public_of(alice) == alice_public
    assert PrivateKey(bob).public == bob_public
    assert PrivateKey(alice).exchange(bob_public) == shared
    assert PrivateKey(bob).exchange(alice_public) == shared
    assert alice.hex() not in repr(PrivateKey(alice))      # the secret is not shown


@pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools' wg is not installed")
@pytest.mark.parametrize("seed", range(4))
def test_public_keys_agree_with_wireguard_tools_wg_pubkey(seed):
    """The stock tool (its own Curve25519, which clamps as RFC 7748 does) derives the
    same public key from the same base64 private key."""
    private = random.Random(seed).randbytes(32)
    result = subprocess.run(["wg", "pubkey"], input=base64.b64encode(private) + b"\n",
                            capture_output=True, timeout=10, check=True)
    assert base64.b64decode(result.stdout.strip()) == crypto.public_of(private)


LOW_ORDER = [     # u-coordinates whose product with any scalar is the all-zero secret
    "0000000000000000000000000000000000000000000000000000000000000000",   # 0
    "0100000000000000000000000000000000000000000000000000000000000000",   # 1
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",   # order 8
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",   # order 8
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",   # p - 1
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",   # p (= 0)
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",   # p + 1 (= 1)
]


@pytest.mark.parametrize("point", LOW_ORDER)
def test_x25519_all_zero_shared_secret_is_refused(point):
    """Whitepaper 5.4 (DH): a point that gives the zero secret must not be accepted."""
    key = PrivateKey(h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    with pytest.raises(DhError):
        key.exchange(h(point))


@pytest.mark.parametrize("length", [0, 31, 33])
def test_x25519_private_key_of_the_wrong_length_is_refused(length):
    with pytest.raises(ValueError):
        PrivateKey(bytes(length))


# -- ChaCha20-Poly1305 -----------------------------------------------------------------------

SUNSCREEN = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
             b"for the future, sunscreen would be it.")
SUNSCREEN_KEY = bytes(range(0x80, 0xA0))
SUNSCREEN_AD = h("50515253c0c1c2c3c4c5c6c7")


def test_chacha20poly1305_rfc8439_section_2_8_2():
    """The library under AEAD: RFC 8439's own vector (its nonce 07000000 4041424344454647
    has a non-zero constant, which WireGuard's nonce never has, so it goes to the
    library directly; appendix A.5 below goes through aead_*)."""
    sealed = ChaCha20Poly1305(SUNSCREEN_KEY).encrypt(h("070000004041424344454647"),
                                                     SUNSCREEN, SUNSCREEN_AD)
    assert sealed[:-16] == h(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116")
    assert sealed[-16:] == h("1ae10b594f09e26a7e902ecbd0600691")


A5_KEY = h("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
A5_COUNTER = int.from_bytes(h("0102030405060708"), "little")   # nonce 00000000 01..08
A5_AD = h("f33388860000000000004e91")
A5_PLAIN = h(
    "496e7465726e65742d4472616674732061726520647261667420646f63756d65"
    "6e74732076616c696420666f722061206d6178696d756d206f6620736978206d"
    "6f6e74687320616e64206d617920626520757064617465642c207265706c6163"
    "65642c206f72206f62736f6c65746564206279206f7468657220646f63756d65"
    "6e747320617420616e792074696d652e20497420697320696e617070726f7072"
    "6961746520746f2075736520496e7465726e65742d4472616674732061732072"
    "65666572656e6365206d6174657269616c206f7220746f206369746520746865"
    "6d206f74686572207468616e206173202fe2809c776f726b20696e2070726f67"
    "726573732e2fe2809d")
A5_SEALED = h(
    "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2"
    "4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf"
    "332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855"
    "9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4"
    "b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e"
    "af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a"
    "0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10"
    "49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29"
    "a6ad5cb4022b02709b"
    "eead9d67890cbb22392336fea1851f38")


def test_aead_rfc8439_appendix_a5_with_the_64_bit_little_endian_counter():
    assert crypto.aead_encrypt(A5_KEY, A5_COUNTER, A5_PLAIN, A5_AD) == A5_SEALED
    assert crypto.aead_decrypt(A5_KEY, A5_COUNTER, A5_SEALED, A5_AD) == A5_PLAIN


def test_aead_nonce_is_32_zero_bits_and_the_little_endian_counter():
    key = bytes(range(32))
    for counter in (0, 1, 255, 256, 2**32, 2**64 - 1):
        nonce = bytes(4) + struct.pack("<Q", counter)
        assert crypto.aead_encrypt(key, counter, b"packet", b"") == \
            ChaCha20Poly1305(key).encrypt(nonce, b"packet", None)


def test_aead_empty_plaintext_is_a_bare_tag():
    """A keepalive (and the response's msg.empty) is AEAD of nothing: 16 bytes."""
    sealed = crypto.aead_encrypt(A5_KEY, 0, b"", b"hash")
    assert len(sealed) == crypto.TAG_LEN
    assert crypto.aead_decrypt(A5_KEY, 0, sealed, b"hash") == b""


@pytest.mark.parametrize("change", ["tag", "ciphertext", "counter", "ad", "key",
                                    "truncated", "short"])
def test_aead_refuses_what_does_not_authenticate(change):
    key, counter, sealed, ad = A5_KEY, A5_COUNTER, bytearray(A5_SEALED), A5_AD
    if change == "tag":
        sealed[-1] ^= 1
    elif change == "ciphertext":
        sealed[0] ^= 0x80
    elif change == "counter":
        counter += 1
    elif change == "ad":
        ad = ad[:-1]
    elif change == "key":
        key = bytes(32)
    elif change == "truncated":
        sealed = sealed[:-1]
    elif change == "short":
        sealed = sealed[:15]                    # shorter than a tag
    with pytest.raises(InvalidTag):
        crypto.aead_decrypt(key, counter, bytes(sealed), ad)


@pytest.mark.parametrize("length", [16, 31, 33])
def test_aead_key_of_the_wrong_length_is_refused(length):
    with pytest.raises(ValueError):
        crypto.aead_encrypt(bytes(length), 0, b"x", b"")


# -- HChaCha20 and XChaCha20-Poly1305 ---------------------------------------------------------

def test_hchacha20_draft_irtf_cfrg_xchacha_section_2_2_1():
    subkey = crypto.hchacha20(bytes(range(32)), h("000000090000004a0000000031415927"))
    assert subkey == h("82413b42 27b27bfe d30e4250 8a877d73 a0f9e4d5 8a74a853 c12ec413 26d3ecdc")


def _spec_hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """draft-irtf-cfrg-xchacha section 2.2: the ChaCha20 state (constants, key, the
    16-byte input), 20 rounds (10 column + diagonal double rounds), no final addition,
    output words 0-3 and 12-15."""
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574] + \
        list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def rotl(v, n):
        return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF

    def quarter(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        quarter(0, 4, 8, 12), quarter(1, 5, 9, 13), quarter(2, 6, 10, 14)
        quarter(3, 7, 11, 15)
        quarter(0, 5, 10, 15), quarter(1, 6, 11, 12), quarter(2, 7, 8, 13)
        quarter(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def test_hchacha20_spec_definition_agrees_with_the_published_vector():
    assert _spec_hchacha20(bytes(range(32)), h("000000090000004a0000000031415927")) == \
        h("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")


@pytest.mark.parametrize("seed", range(16))
def test_hchacha20_from_the_keystream_equals_the_spec_definition(seed):
    """Built from ChaCha20's keystream (subtracting the input state) vs the rounds:
    including inputs whose counter word (12) is all ones, where a keystream that
    carried into word 13 would differ."""
    rng = random.Random(seed)
    key = rng.randbytes(32)
    nonce = rng.randbytes(16) if seed % 4 else b"\xff\xff\xff\xff" + rng.randbytes(12)
    assert crypto.hchacha20(key, nonce) == _spec_hchacha20(key, nonce)


@pytest.mark.parametrize("key_len,nonce_len", [(31, 16), (33, 16), (32, 15), (32, 24)])
def test_hchacha20_wrong_lengths_are_refused(key_len, nonce_len):
    with pytest.raises(ValueError):
        crypto.hchacha20(bytes(key_len), bytes(nonce_len))


XNONCE = bytes(range(0x40, 0x58))
XSEALED = h(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e"
    "c0875924c1c7987947deafd8780acf49")


def test_xchacha20poly1305_draft_appendix_a_3_1():
    sealed = crypto.xaead_encrypt(SUNSCREEN_KEY, XNONCE, SUNSCREEN, SUNSCREEN_AD)
    assert sealed == XSEALED
    assert sealed[-16:] == h("c0875924c1c7987947deafd8780acf49")
    assert crypto.xaead_decrypt(SUNSCREEN_KEY, XNONCE, XSEALED, SUNSCREEN_AD) == SUNSCREEN


@pytest.mark.parametrize("change", ["tag", "nonce", "ad", "short"])
def test_xaead_refuses_what_does_not_authenticate(change):
    sealed, nonce, ad = bytearray(XSEALED), bytearray(XNONCE), SUNSCREEN_AD
    if change == "tag":
        sealed[-16] ^= 1
    elif change == "nonce":
        nonce[20] ^= 1                          # the part after HChaCha20's input
    elif change == "ad":
        ad = b""
    elif change == "short":
        sealed = sealed[:8]
    with pytest.raises(InvalidTag):
        crypto.xaead_decrypt(SUNSCREEN_KEY, bytes(nonce), bytes(sealed), ad)


@pytest.mark.parametrize("length", [12, 23, 25])
def test_xaead_nonce_of_the_wrong_length_is_refused(length):
    with pytest.raises(ValueError):
        crypto.xaead_encrypt(SUNSCREEN_KEY, bytes(length), b"cookie", b"")
    with pytest.raises(ValueError):
        crypto.xaead_decrypt(SUNSCREEN_KEY, bytes(length), XSEALED, b"")


# -- TAI64N ----------------------------------------------------------------------------------

def test_tai64n_of_the_epoch_is_two_to_the_62_plus_10():
    assert crypto.tai64n(0.0) == h("400000000000000a 00000000")
    assert crypto.TAI64_BASE == 2**62 + 10


def test_tai64n_is_12_bytes_big_endian_seconds_then_nanoseconds():
    stamp = crypto.tai64n(1_700_000_000.5)
    assert len(stamp) == 12
    seconds, nanos = struct.unpack(">QI", stamp)
    assert seconds == 2**62 + 10 + 1_700_000_000
    assert stamp[:8] == (0x400000000000000A + 1_700_000_000).to_bytes(8, "big")
    # 500 000 000 ns rounded down to a multiple of 2^24 ns: 29 * 2^24
    assert nanos == 29 * 2**24 == 0x1D000000


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.0167, 0.25, 0.5, 0.999])
def test_tai64n_nanoseconds_are_whitened_to_2_to_the_24(fraction):
    nanos = struct.unpack(">I", crypto.tai64n(1_700_000_000 + fraction)[8:])[0]
    assert nanos % 2**24 == 0
    assert nanos <= fraction * 1e9 < nanos + 2**24 + 1000     # rounded down, not up


def test_tai64n_orders_like_time_and_hides_the_fine_clock():
    """A responder takes an initiation only if its timestamp is greater (bytes
    comparison of big-endian TAI64N is time order); two within 2^24 ns look alike."""
    base = 1_700_000_000.0
    assert crypto.tai64n(base + 0.001) == crypto.tai64n(base + 0.002)
    stamps = [crypto.tai64n(base + i * 0.017) for i in range(200)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 200
    assert crypto.tai64n(base + 1) > crypto.tai64n(base + 0.99)
