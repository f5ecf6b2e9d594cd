"""WireGuard's handshake (erebus.wireguard.noise) with fixed keys and ephemerals.

The known answer is computed here, step by step, from the whitepaper's section
5.4.2-5.4.4 with ``cryptography``'s X25519, ChaCha20-Poly1305 and HKDF and hashlib's
BLAKE2s, never calling noise.py.  That reference is itself first checked against a
published vector of the same Noise pattern: cacophony's Noise_IKpsk2_25519_ChaChaPoly_
BLAKE2s vector (github.com/haskell-cryptography/cacophony vectors/cacophony.txt, commit
8ee9d41; WireGuard is that pattern with the prologue "WireGuard v1 zx2c4
Jason@zx2c4.com" and a TAI64N payload).  Then: both sides derive the same transport
keys; MAC1 checked and refused; MAC2 from a cookie the responder's CookieChecker
sealed and the initiator's CookieJar opened, for 120 s; a replayed initiation (same or
older timestamp) refused; a wrong preshared key refused with HandshakeError.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, \
    X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erebus.errors import ParseError
from erebus.wire import wireguard as wire
from erebus.wireguard import crypto, noise
from erebus.wireguard.crypto import PrivateKey, tai64n
from erebus.wireguard.keys import WgInterfaceConfig, WgPeerConfig
from erebus.wireguard.noise import CookieChecker, CookieJar, Handshake, HandshakeError
from erebus.wireguard.session import INITIATION_RATE, WireGuardSession


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# -- the reference: whitepaper 5.4 with cryptography and hashlib ------------------------------

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"


def HASH(*parts: bytes) -> bytes:
    return hashlib.blake2s(b"".join(parts)).digest()


def MAC(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, digest_size=16, key=key).digest()


def KDF(n: int, key: bytes, data: bytes) -> list[bytes]:
    out = HKDF(hashes.BLAKE2s(32), 32 * n, salt=key, info=b"").derive(data)
    return [out[i:i + 32] for i in range(0, 32 * n, 32)]


def PUB(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def DH(private: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).exchange(
        X25519PublicKey.from_public_bytes(public))


def AEAD(key: bytes, counter: int, plain: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(b"\0" * 4 + struct.pack("<Q", counter), plain, ad)


def ref_first_message(prologue, s_priv_i, e_priv_i, s_pub_r, payload):
    """5.4.2, the initiator: (C, H, ephemeral, sealed static, sealed payload)."""
    C = HASH(CONSTRUCTION)
    H = HASH(C, prologue)
    H = HASH(H, s_pub_r)
    e_pub_i = PUB(e_priv_i)
    C = KDF(1, C, e_pub_i)[0]
    H = HASH(H, e_pub_i)
    C, k = KDF(2, C, DH(e_priv_i, s_pub_r))
    static = AEAD(k, 0, PUB(s_priv_i), H)
    H = HASH(H, static)
    C, k = KDF(2, C, DH(s_priv_i, s_pub_r))
    sealed = AEAD(k, 0, payload, H)
    H = HASH(H, sealed)
    return C, H, e_pub_i, static, sealed


def ref_second_message(C, H, e_priv_r, e_pub_i, s_pub_i, psk, payload):
    """5.4.3, the responder, then 5.4.4 (the initiator's (send, receive))."""
    e_pub_r = PUB(e_priv_r)
    C = KDF(1, C, e_pub_r)[0]
    H = HASH(H, e_pub_r)
    C = KDF(1, C, DH(e_priv_r, e_pub_i))[0]
    C = KDF(1, C, DH(e_priv_r, s_pub_i))[0]
    C, tau, k = KDF(3, C, psk)
    H = HASH(H, tau)
    sealed = AEAD(k, 0, payload, H)
    H = HASH(H, sealed)
    t_send_i, t_recv_i = KDF(2, C, b"")
    return H, e_pub_r, sealed, t_send_i, t_recv_i


# -- the reference against the published Noise vector ----------------------------------------

CACOPHONY = {
    "prologue": "4a6f686e2047616c74",
    "psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
    "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
    "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    "handshake_hash": "f5191b875290abcd41347ac3622d9679688a7e980229cb937ef748336cfde0e5",
    "messages": [
        ("4c756477696720766f6e204d69736573",
         "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944001e21de9f98ddd8e2"
         "ad57527207feb56253c9c94a9e496782ecfcb2a75fbcaf1b52948cc48daefe660c62119ab5000980c8"
         "4831215f2441eba616548e832985464cf17e51ee93109008399a21f7e13f"),
        ("4d757272617920526f746862617264",
         "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843cb765f2caef0751b8f"
         "007572dab0322217755c0632f365717edbf34d33e87a"),
        ("462e20412e20486179656b", "8153ca9833bc3c1b91a7e66e5f4d4f5b59bf9e64c2f20d15f0bba7"),
        ("4361726c204d656e676572", "07af0c9c86e1b4e80f36b04ff7688d51141af3debd0332f0a705ef"),
        ("4a65616e2d426170746973746520536179",
         "6ab1467c0448cc78394494abaaf23afce0e234315d6e2624dcbfa8a21c1c4d073d"),
        ("457567656e2042f6686d20766f6e2042617765726b",
         "dfc346c0d2296ae6cf1acf6f12b8456a1dba228cf8d8b774aacf1c47fc53aa80ebc7a4c292"),
    ],
}


def test_the_reference_reproduces_cacophonys_noise_ikpsk2_vector():
    v = CACOPHONY
    (p1, c1), (p2, c2), *transport = [(h(p), h(c)) for p, c in v["messages"]]
    s_pub_r = PUB(h(v["resp_static"]))
    assert s_pub_r == h(v["init_remote_static"])
    C, H, e_pub_i, static, sealed = ref_first_message(
        h(v["prologue"]), h(v["init_static"]), h(v["init_ephemeral"]), s_pub_r, p1)
    assert e_pub_i + static + sealed == c1
    H, e_pub_r, sealed, t_send_i, t_recv_i = ref_second_message(
        C, H, h(v["resp_ephemeral"]), e_pub_i, PUB(h(v["init_static"])), h(v["psk"]), p2)
    assert e_pub_r + sealed == c2
    assert H == h(v["handshake_hash"])
    # transport: initiator -> responder with k1, responder -> initiator with k2,
    # each counting from 0, no associated data
    for n, (plain, cipher) in enumerate(transport):
        key = t_send_i if n % 2 == 0 else t_recv_i
        assert AEAD(key, n // 2, plain, b"") == cipher


# -- fixed keys: noise.py against the reference ----------------------------------------------

S_I = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")  # RFC 7748 Alice
S_R = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")  # RFC 7748 Bob
E_I = bytes(range(1, 33))
E_R = bytes(range(0x21, 0x41))
PSK = bytes(range(0x40, 0x60))
INDEX_I, INDEX_R = 0x11223344, 0xA1B2C3D4
STAMP = tai64n(1_700_000_000.25)
SOURCE = ipaddress.ip_address("198.18.0.7").packed + struct.pack(">H", 51820)


def reference_handshake(psk: bytes = PSK, stamp: bytes = STAMP):
    """The two messages (MACs in, no cookie) and the initiator's (send, receive)."""
    C, H, e_pub_i, static, sealed = ref_first_message(IDENTIFIER, S_I, E_I, PUB(S_R), stamp)
    body = struct.pack("<BxxxI", 1, INDEX_I) + e_pub_i + static + sealed
    first = body + MAC(HASH(b"mac1----", PUB(S_R)), body) + bytes(16)
    _, e_pub_r, empty, send, receive = ref_second_message(C, H, E_R, e_pub_i, PUB(S_I),
                                                          psk, b"")
    body = struct.pack("<BxxxII", 2, INDEX_R, INDEX_I) + e_pub_r + empty
    second = body + MAC(HASH(b"mac1----", PUB(S_I)), body) + bytes(16)
    return first, second, send, receive


def our_initiation(psk=PSK, stamp=STAMP, cookie=None):
    hs = Handshake(PrivateKey(S_I), PUB(S_R), psk)
    message = hs.create_initiation(INDEX_I, PrivateKey(E_I), stamp)
    data = noise.add_macs(message, noise.mac1_key(PUB(S_R)), cookie)
    hs.mac1 = data[wire.MAC1_OFFSET_INITIATION:wire.MAC1_OFFSET_INITIATION + 16]
    return hs, data


def our_response(data, psk=PSK):
    def psk_of(public):
        assert public == PUB(S_I)
        return psk
    hs, static = Handshake.consume_initiation(PrivateKey(S_R), data, psk_of)
    message, keys = hs.create_response(INDEX_R, PrivateKey(E_R))
    return static, hs, noise.add_macs(message, noise.mac1_key(PUB(S_I)), None), keys


def test_initiation_and_response_bytes_and_keys_match_the_whitepaper():
    first, second, send, receive = reference_handshake()
    hs_i, data1 = our_initiation()
    assert data1 == first
    static, hs_r, data2, keys_r = our_response(data1)
    assert static == PUB(S_I) and hs_r.timestamp == STAMP
    assert data2 == second
    keys_i = hs_i.consume_response(data2)
    assert (keys_i.send, keys_i.receive) == (send, receive)
    assert (keys_r.send, keys_r.receive) == (receive, send)


def test_no_preshared_key_is_the_all_zero_one():
    first, second, send, receive = reference_handshake(psk=bytes(32))
    hs_i, data1 = our_initiation(psk=None)
    _, _, data2, keys_r = our_response(data1, psk=None)
    assert (data1, data2) == (first, second)
    assert hs_i.consume_response(data2).send == send == keys_r.receive


def test_both_sides_derive_the_same_transport_keys_and_indices():
    hs_i, data1 = our_initiation()
    _, _, data2, keys_r = our_response(data1)
    keys_i = hs_i.consume_response(data2)
    assert keys_i.send == keys_r.receive and keys_i.receive == keys_r.send
    assert keys_i.send != keys_i.receive
    assert (keys_i.local_index, keys_i.remote_index, keys_i.initiator) == \
        (INDEX_I, INDEX_R, True)
    assert (keys_r.local_index, keys_r.remote_index, keys_r.initiator) == \
        (INDEX_R, INDEX_I, False)
    # a first data packet sealed by one side opens with the other's key
    sealed = crypto.aead_encrypt(keys_i.send, 0, b"inner packet" + bytes(4), b"")
    assert crypto.aead_decrypt(keys_r.receive, 0, sealed, b"") == b"inner packet" + bytes(4)


def test_the_handshake_is_deterministic_given_its_inputs():
    assert our_initiation()[1] == our_initiation()[1]
    assert our_initiation(stamp=tai64n(1_700_000_001.0))[1] != our_initiation()[1]


# -- refusals in the handshake itself --------------------------------------------------------

def test_a_wrong_preshared_key_is_refused_with_handshake_error():
    """The psk enters in the response only (5.4.3): the responder cannot tell, the
    initiator refuses the response; its handshake survives for the right one."""
    hs_i, data1 = our_initiation(psk=PSK)
    _, _, wrong, _ = our_response(data1, psk=bytes(32))
    with pytest.raises(HandshakeError) as caught:
        hs_i.consume_response(wrong)
    assert caught.value.reason == "auth_failed"
    _, _, right, keys_r = our_response(data1, psk=PSK)
    assert hs_i.consume_response(right).send == keys_r.receive


def test_a_response_to_another_index_is_refused():
    hs_i, data1 = our_initiation()
    _, _, data2, _ = our_response(data1)
    other = bytearray(data2)
    other[8:12] = struct.pack("<I", INDEX_I + 1)
    with pytest.raises(HandshakeError) as caught:
        hs_i.consume_response(bytes(other))
    assert caught.value.reason == "unknown_index"


@pytest.mark.parametrize("where", ["ephemeral", "empty"])
def test_a_tampered_response_is_refused(where):
    hs_i, data1 = our_initiation()
    _, _, data2, _ = our_response(data1)
    bad = bytearray(data2)
    if where == "ephemeral":
        bad[12:44] = bytes(32)                   # a low-order point: the zero secret
    else:
        bad[50] ^= 1
    with pytest.raises(HandshakeError) as caught:
        hs_i.consume_response(bytes(bad))
    assert caught.value.reason == "auth_failed"


@pytest.mark.parametrize("where", ["ephemeral", "low-order", "static", "timestamp"])
def test_a_tampered_initiation_is_refused(where):
    _, data1 = our_initiation()
    bad = bytearray(data1)
    if where == "ephemeral":
        bad[8] ^= 1
    elif where == "low-order":
        bad[8:40] = bytes(32)
    elif where == "static":
        bad[60] ^= 1
    else:
        bad[100] ^= 1
    with pytest.raises(HandshakeError) as caught:
        our_response(bytes(bad))
    assert caught.value.reason == "auth_failed"


def test_an_initiation_for_another_responder_is_refused():
    _, data1 = our_initiation()
    with pytest.raises(HandshakeError):
        Handshake.consume_initiation(PrivateKey(E_R), data1, lambda public: None)


def test_an_initiation_from_an_unknown_key_is_refused_by_psk_of():
    _, data1 = our_initiation()

    def psk_of(public):
        raise HandshakeError("unknown_peer", "not our peer")
    with pytest.raises(HandshakeError) as caught:
        Handshake.consume_initiation(PrivateKey(S_R), data1, psk_of)
    assert caught.value.reason == "unknown_peer"


# -- MAC1 ------------------------------------------------------------------------------------

def test_mac1_is_checked_with_the_receivers_public_key():
    _, data1 = our_initiation()
    _, _, data2, _ = our_response(data1)
    assert noise.check_mac1(data1, noise.mac1_key(PUB(S_R)))
    assert noise.check_mac1(data2, noise.mac1_key(PUB(S_I)))
    assert not noise.check_mac1(data1, noise.mac1_key(PUB(S_I)))      # not to us
    assert not noise.check_mac1(data2, noise.mac1_key(PUB(S_R)))


def test_mac1_refuses_any_changed_byte_before_mac2():
    _, data1 = our_initiation()
    key = noise.mac1_key(PUB(S_R))
    for where in range(wire.MAC1_OFFSET_INITIATION + 16):
        bad = bytearray(data1)
        bad[where] ^= 0x01
        assert not noise.check_mac1(bytes(bad), key), where
    bad = bytearray(data1)
    bad[-1] ^= 1                                 # mac2 is not covered by mac1
    assert noise.check_mac1(bytes(bad), key)


def test_a_responder_drops_an_initiation_with_a_bad_mac1_unanswered():
    server = responder()
    _, data1 = our_initiation()
    bad = bytearray(data1)
    bad[wire.MAC1_OFFSET_INITIATION] ^= 1
    server.receive_datagram(bytes(bad), 10.0)
    assert server.datagrams_to_send(10.0) == []
    assert server.counters.bad_mac == 1 and server.counters.handshakes_answered == 0


# -- MAC2 and the cookie reply ---------------------------------------------------------------

SECRET = bytes(range(0xA0, 0xC0))
COOKIE_NONCE = bytes(range(0x10, 0x28))


def fixed_rng():
    """The checker's rng: the first call gives its secret, then the reply's nonce, then
    a second secret."""
    outputs = [SECRET, COOKIE_NONCE, bytes(32)]

    def rng(n):
        value = outputs.pop(0)
        assert len(value) == n
        return value
    return rng


def test_cookie_reply_and_mac2_match_the_whitepaper():
    """5.4.7: tau = MAC(Rm, Am); msg.cookie = XAEAD(HASH("cookie--" || Spub_m), nonce,
    tau, M) with M the mac1 of the message answered; mac2 = MAC(tau, everything up to
    mac2).  XAEAD itself is crypto.xaead_*, known-answer tested in test_wg_crypto."""
    checker = CookieChecker(PUB(S_R), fixed_rng(), 0.0)
    hs_i, data1 = our_initiation()
    assert not checker.check_mac2(data1, SOURCE, 1.0)            # zeros: no cookie yet
    reply = checker.reply(data1, INDEX_I, SOURCE, 1.0)
    tau = MAC(SECRET, SOURCE)
    mac1 = data1[116:132]
    sealed = crypto.xaead_encrypt(HASH(b"cookie--", PUB(S_R)), COOKIE_NONCE, tau, mac1)
    assert reply == struct.pack("<BxxxI", 3, INDEX_I) + COOKIE_NONCE + sealed
    jar = CookieJar(PUB(S_R))
    jar.consume(reply, hs_i.mac1, 1.0)
    assert jar.current(1.0) == tau
    _, retry = our_initiation(cookie=jar.current(2.0))
    assert retry[:132] == data1[:132]                            # mac1 is unchanged
    assert retry[132:] == MAC(tau, retry[:132])
    assert noise.check_mac1(retry, noise.mac1_key(PUB(S_R)))
    assert checker.check_mac2(retry, SOURCE, 2.0)
    assert not checker.check_mac2(retry, SOURCE[:-1] + b"\0", 2.0)   # another address


def test_a_cookie_lasts_120_seconds_in_the_jar_and_at_the_checker():
    checker = CookieChecker(PUB(S_R), fixed_rng(), 0.0)
    hs_i, data1 = our_initiation()
    reply = checker.reply(data1, INDEX_I, SOURCE, 0.0)
    jar = CookieJar(PUB(S_R))
    jar.consume(reply, hs_i.mac1, 10.0)
    assert jar.current(129.9) is not None
    _, retry = our_initiation(cookie=jar.current(119.0))
    assert checker.check_mac2(retry, SOURCE, 119.9)              # the same secret
    assert not checker.check_mac2(retry, SOURCE, 120.0)          # the secret changed
    assert jar.current(130.0) is None                            # 120 s after it came
    assert jar.current(131.0) is None


def test_a_cookie_reply_for_another_message_or_forged_is_refused():
    checker = CookieChecker(PUB(S_R), fixed_rng(), 0.0)
    hs_i, data1 = our_initiation()
    reply = checker.reply(data1, INDEX_I, SOURCE, 0.0)
    jar = CookieJar(PUB(S_R))
    with pytest.raises(HandshakeError) as caught:
        jar.consume(reply, bytes(16), 0.0)                       # not our mac1
    assert caught.value.reason == "auth_failed"
    forged = bytearray(reply)
    forged[-1] ^= 1
    with pytest.raises(HandshakeError):
        jar.consume(bytes(forged), hs_i.mac1, 0.0)
    with pytest.raises(HandshakeError):                          # from another responder
        CookieJar(PUB(S_I)).consume(reply, hs_i.mac1, 0.0)
    assert jar.current(0.0) is None


# -- replayed initiations --------------------------------------------------------------------

def responder() -> WireGuardSession:
    counter = iter(range(1, 1_000_000))

    def rng(n):
        return next(counter).to_bytes(n, "little")
    return WireGuardSession(WgInterfaceConfig(private_key=S_R),
                            WgPeerConfig(public_key=PUB(S_I), preshared_key=PSK), 0.0,
                            rng=rng, wall_clock=lambda: 1_700_000_000.0, initiate=False,
                            peer_name="initiator")


def test_a_replayed_initiation_is_refused():
    server = responder()
    _, data1 = our_initiation()
    now = 10.0
    server.receive_datagram(data1, now)
    answer = server.datagrams_to_send(now)
    assert len(answer) == 1 and wire.message_type(answer[0]) == wire.RESPONSE
    # the same bytes again, long after the flood limit: the timestamp is not newer
    now += 100 * INITIATION_RATE
    server.receive_datagram(data1, now)
    assert server.datagrams_to_send(now) == []
    assert server.counters.replayed_timestamp == 1


def test_an_initiation_with_an_older_timestamp_is_refused_a_newer_one_answered():
    server = responder()
    now = 10.0
    server.receive_datagram(our_initiation(stamp=tai64n(1_700_000_100.0))[1], now)
    assert len(server.datagrams_to_send(now)) == 1
    now += 1.0
    server.receive_datagram(our_initiation(stamp=tai64n(1_700_000_099.0))[1], now)
    assert server.datagrams_to_send(now) == []
    now += 1.0
    same_window = tai64n(1_700_000_100.001)          # whitened to the same TAI64N
    assert same_window == tai64n(1_700_000_100.0)
    server.receive_datagram(our_initiation(stamp=same_window)[1], now)
    assert server.datagrams_to_send(now) == []
    assert server.counters.replayed_timestamp == 2
    now += 1.0
    server.receive_datagram(our_initiation(stamp=tai64n(1_700_000_101.0))[1], now)
    assert len(server.datagrams_to_send(now)) == 1
    assert server.counters.handshakes_answered == 2


# -- the session's datagrams are the reference's ----------------------------------------------

def scripted(*outputs: bytes):
    """An rng giving these bytes in order (each call's size checked), then zeros."""
    queue = list(outputs)

    def rng(n):
        if not queue:
            return bytes(n)
        value = queue.pop(0)
        assert len(value) == n
        return value
    return rng


def test_a_client_session_sends_the_reference_initiation_and_transport_data():
    first, second, send, _ = reference_handshake()
    client = WireGuardSession(
        WgInterfaceConfig(private_key=S_I),
        WgPeerConfig(public_key=PUB(S_R), preshared_key=PSK,
                     endpoint=("198.18.0.1", 51820),
                     allowed_ips=(ipaddress.ip_network("0.0.0.0/0"),)),
        0.0, rng=scripted(struct.pack("<I", INDEX_I), E_I),
        wall_clock=lambda: 1_700_000_000.25)
    assert client.datagrams_to_send(0.0) == [first]
    client.receive_datagram(second, 0.1)
    assert client.established
    # the keypair is confirmed with a keepalive: counter 0, an empty AEAD
    assert client.datagrams_to_send(0.1) == [
        struct.pack("<BxxxIQ", 4, INDEX_R, 0) + AEAD(send, 0, b"", b"")]
    # data: counter 1, zero padding to a multiple of 16 (whitepaper 5.4.6)
    packet = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 21, 0, 0, 64, 17, 0,
                         bytes([198, 18, 0, 2]), bytes([198, 18, 1, 1])) + b"x"
    assert client.send_packet(packet, 0.2) == \
        struct.pack("<BxxxIQ", 4, INDEX_R, 1) + AEAD(send, 1, packet + bytes(11), b"")


def test_a_responder_session_answers_with_the_reference_response():
    first, second, send, _ = reference_handshake()
    server = WireGuardSession(
        WgInterfaceConfig(private_key=S_R),
        WgPeerConfig(public_key=PUB(S_I), preshared_key=PSK,
                     allowed_ips=(ipaddress.ip_network("198.18.0.2/32"),)),
        0.0, rng=scripted(struct.pack("<I", INDEX_R), E_R),
        wall_clock=lambda: 1_700_000_000.0, initiate=False)
    server.receive_datagram(first, 1.0)
    assert server.datagrams_to_send(1.0) == [second]
    # the initiator's keepalive (to the responder's index) confirms the keypair
    server.receive_datagram(struct.pack("<BxxxIQ", 4, INDEX_R, 0) + AEAD(send, 0, b"", b""),
                            1.1)
    assert server.established and server.counters.malformed == 0


# -- hostile handshake messages ----------------------------------------------------------------

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_a_replayed_response_is_refused():
    hs_i, data1 = our_initiation()
    _, _, data2, _ = our_response(data1)
    hs_i.consume_response(data2)
    with pytest.raises(HandshakeError) as caught:
        hs_i.consume_response(data2)             # the handshake's secrets are gone
    assert caught.value.reason == "unknown_index"


@FUZZ
@given(st.binary(min_size=140, max_size=140))
def test_arbitrary_initiations_raise_only_handshake_error(body):
    data = struct.pack("<BxxxI", 1, 7) + body
    try:
        Handshake.consume_initiation(PrivateKey(S_R), data, lambda public: PSK)
    except HandshakeError:
        pass


@FUZZ
@given(st.binary(min_size=80, max_size=80))
def test_arbitrary_responses_raise_only_handshake_error(body):
    hs_i, _ = our_initiation()
    data = struct.pack("<BxxxII", 2, 9, INDEX_I) + body
    try:
        hs_i.consume_response(data)
    except HandshakeError:
        pass


@FUZZ
@given(st.binary(max_size=100))
def test_arbitrary_cookie_replies_raise_only_parse_or_handshake_error(data):
    try:
        CookieJar(PUB(S_R)).consume(data, bytes(16), 0.0)
    except (ParseError, HandshakeError):
        pass


@pytest.mark.parametrize("length", [0, 147, 149])
def test_an_initiation_of_the_wrong_size_is_a_parse_error(length):
    with pytest.raises(ParseError):
        Handshake.consume_initiation(PrivateKey(S_R), bytes([1]) + bytes(max(0, length - 1)),
                                     lambda public: PSK)
