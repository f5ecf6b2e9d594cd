"""The data channel: client and server views interoperate, tampering and replays are
refused, and the bytes on the wire are what OpenVPN 2.6 (crypto.c) puts there."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import struct

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from erebus.errors import ParseError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erebus.errors import ErebusError
from erebus.openvpn.data import (KEEPALIVE, PACKET_ID_WRAP_TRIGGER, DataError, DataKey,
                                 PacketIdExhausted, is_aead, normalize_cipher, supported_cipher)
from erebus.wire.openvpn import DataPacket, P_DATA_V1, P_DATA_V2, parse_packet

KEY_BLOCK = random.Random(99).randbytes(256)

# (cipher, auth) as negotiated; AEAD ignores auth.
MODES = [("AES-128-GCM", "SHA1"), ("AES-256-GCM", "SHA1"), ("CHACHA20-POLY1305", "SHA1"),
         ("AES-256-CBC", "SHA256"), ("AES-128-CBC", "SHA224"), ("none", "SHA512"),
         ("AES-192-CBC", "none"), ("none", "none")]
AUTHENTICATED = [m for m in MODES if m[1] != "none" or is_aead(m[0])]


def server_view(kb: bytes) -> bytes:
    """The server encrypts with slots 2/3 and decrypts with 0/1: swap the halves."""
    return kb[128:256] + kb[0:128]


def pair(cipher, auth, *, key_id=0, peer_id=7):
    client = DataKey(key_id, cipher, KEY_BLOCK, auth=auth, peer_id=peer_id)
    server = DataKey(key_id, cipher, server_view(KEY_BLOCK), auth=auth, peer_id=peer_id)
    return client, server


def receive(key: DataKey, wire: bytes) -> bytes:
    pkt = parse_packet(wire)
    assert isinstance(pkt, DataPacket)
    assert pkt.key_id == key.key_id
    return key.decrypt(pkt.body, pkt.header)


def ids(m):
    return f"{m[0]}+{m[1]}"


# --- interoperation -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES, ids=ids)
@pytest.mark.parametrize("peer_id", [None, 0x00ABCD])
def test_round_trip_both_directions(mode, peer_id):
    client, server = pair(*mode, key_id=1, peer_id=peer_id)
    for payload in (b"", b"x", KEEPALIVE, os.urandom(1400), bytes(range(256)) * 3):
        wire = client.encrypt(payload)
        pkt = parse_packet(wire)
        assert pkt.opcode == (P_DATA_V1 if peer_id is None else P_DATA_V2)
        assert pkt.peer_id == peer_id
        assert receive(server, wire) == payload
        assert receive(client, server.encrypt(payload)) == payload
    assert client.packets_in == server.packets_in == 5


def test_decrypt_without_received_header_assumes_own_header():
    client, server = pair("AES-256-GCM", "SHA1", peer_id=9)
    wire = client.encrypt(b"no header passed")
    assert server.decrypt(memoryview(wire)[4:]) == b"no header passed"


@pytest.mark.parametrize("mode", AUTHENTICATED, ids=ids)
def test_wrong_direction_does_not_decrypt(mode):
    # A packet the client sent must not be accepted back by the client (reflection).
    client, _ = pair(*mode)
    with pytest.raises(DataError):
        receive(client, client.encrypt(b"reflected"))


@pytest.mark.parametrize("mode", AUTHENTICATED, ids=ids)
def test_tamper_any_byte_is_refused(mode):
    client, server = pair(*mode)
    wire = client.encrypt(b"the quick brown fox jumps over the lazy dog")
    # AEAD over P_DATA_V2 authenticates the 4 header bytes too; CBC+HMAC does not
    # (OpenVPN's HMAC starts after the header), so tamper the body there.
    first = 1 if is_aead(mode[0]) else 4
    for i in range(first, len(wire)):
        for bit in (0x01, 0x80):
            bad = bytearray(wire)
            bad[i] ^= bit
            with pytest.raises(DataError):
                receive(server, bytes(bad))
    assert receive(server, wire) == b"the quick brown fox jumps over the lazy dog"


@pytest.mark.parametrize("mode", AUTHENTICATED, ids=ids)
def test_truncated_or_extended_packets_are_refused(mode):
    client, server = pair(*mode)
    wire = client.encrypt(b"payload bytes")
    for n in range(4, len(wire)):
        with pytest.raises(DataError):
            receive(server, wire[:n])
    with pytest.raises(DataError):
        receive(server, wire + b"\x00")


@pytest.mark.parametrize("mode", MODES, ids=ids)
def test_replay_is_refused(mode):
    client, server = pair(*mode)
    wire = client.encrypt(b"once")
    assert receive(server, wire) == b"once"
    with pytest.raises(DataError):
        receive(server, wire)
    assert receive(server, client.encrypt(b"next")) == b"next"


@pytest.mark.parametrize("mode", MODES, ids=ids)
def test_reordering_within_window_accepted_and_old_refused(mode):
    client, server = pair(*mode)
    packets = [client.encrypt(b"%d" % i) for i in range(1, 71)]   # packet ids 1..70
    for i in (10, 3, 9, 1, 2):                                    # out of order
        assert receive(server, packets[i - 1]) == b"%d" % i
    assert receive(server, packets[69]) == b"70"                  # jump ahead
    assert receive(server, packets[69 - 63]) == b"7"              # 63 behind: inside
    with pytest.raises(DataError):
        receive(server, packets[69 - 64])                         # 64 behind: outside
    with pytest.raises(DataError):
        receive(server, packets[2])                               # old and seen


@pytest.mark.parametrize("mode", AUTHENTICATED, ids=ids)
def test_forged_packet_does_not_move_the_replay_window(mode):
    client, server = pair(*mode)
    early = client.encrypt(b"early")
    for _ in range(200):
        late = client.encrypt(b"late")                            # packet id 201
    forged = bytearray(late)
    forged[-1] ^= 1
    with pytest.raises(DataError):
        receive(server, bytes(forged))
    assert receive(server, early) == b"early"                     # window not moved
    assert receive(server, late) == b"late"


def test_key_id_and_peer_id_in_header():
    key = DataKey(5, "AES-256-GCM", KEY_BLOCK, peer_id=0x123456)
    assert key.encrypt(b"x")[:4] == bytes.fromhex("4d123456")
    key = DataKey(2, "AES-256-GCM", KEY_BLOCK)
    assert key.encrypt(b"x")[:1] == b"\x32"


def test_data_error_is_a_parse_error():
    assert issubclass(DataError, ParseError)


def test_cipher_names():
    assert normalize_cipher("aes-256-gcm") == "AES-256-GCM"
    assert normalize_cipher("[null-cipher]") == normalize_cipher("NONE") == "none"
    assert supported_cipher("chacha20-poly1305") and supported_cipher("AES-128-CBC")
    assert supported_cipher("BF-CBC") and supported_cipher("blowfish")
    assert normalize_cipher("bf") == normalize_cipher("1.3.6.1.4.1.3029.1.2") == "BF-CBC"
    assert normalize_cipher("des3") == "DES-EDE3-CBC"
    assert normalize_cipher("camellia256") == "CAMELLIA-256-CBC"
    assert not supported_cipher("ARIA-128-CBC") and not supported_cipher("BF-OFB")
    with pytest.raises(ValueError):
        DataKey(0, "ARIA-128-CBC", KEY_BLOCK)
    with pytest.raises(ValueError):
        DataKey(0, "AES-256-GCM", KEY_BLOCK[:255])


# --- independent constructions ------------------------------------------------------------

AEAD_IMPL = {"AES-128-GCM": (AESGCM, 16), "AES-256-GCM": (AESGCM, 32),
             "CHACHA20-POLY1305": (ChaCha20Poly1305, 32)}


@pytest.mark.parametrize("cipher", sorted(AEAD_IMPL))
def test_aead_layout_matches_independent_construction(cipher):
    ctor, klen = AEAD_IMPL[cipher]
    key_id, peer_id = 1, 0x0A0B0C
    client = DataKey(key_id, cipher, KEY_BLOCK, peer_id=peer_id)
    header = bytes([(P_DATA_V2 << 3) | key_id]) + peer_id.to_bytes(3, "big")
    assert header == bytes.fromhex("490a0b0c")

    # client -> server: cipher key from slot 0, implicit IV from slot 1 (the c2s HMAC slot)
    c2s = ctor(KEY_BLOCK[0:klen])
    c2s_iv = KEY_BLOCK[64:72]
    for pid in (1, 2, 3):
        payload = b"payload %d" % pid
        wire = client.encrypt(payload)
        pid_bytes = struct.pack("!I", pid)
        sealed = c2s.encrypt(pid_bytes + c2s_iv, payload, header + pid_bytes)
        assert wire == header + pid_bytes + sealed[-16:] + sealed[:-16]

    # server -> client: slot 2 key, slot 3 implicit IV; the client must accept it
    s2c = ctor(KEY_BLOCK[128:128 + klen])
    s2c_iv = KEY_BLOCK[192:200]
    pid_bytes = struct.pack("!I", 1)
    sealed = s2c.encrypt(pid_bytes + s2c_iv, b"from the server", header + pid_bytes)
    wire = header + pid_bytes + sealed[-16:] + sealed[:-16]
    assert receive(client, wire) == b"from the server"


def test_aead_p_data_v1_authenticates_packet_id_only():
    # ssl.c sets ad_start after the opcode byte for P_DATA_V1.
    client = DataKey(3, "AES-256-GCM", KEY_BLOCK)
    wire = client.encrypt(b"v1")
    pid = struct.pack("!I", 1)
    sealed = AESGCM(KEY_BLOCK[0:32]).encrypt(pid + KEY_BLOCK[64:72], b"v1", pid)
    assert wire == b"\x33" + pid + sealed[-16:] + sealed[:-16]


def test_aead_packet_id_zero_is_refused():
    client = DataKey(0, "AES-256-GCM", KEY_BLOCK, peer_id=1)
    header, pid = bytes.fromhex("48000001"), bytes(4)
    sealed = AESGCM(KEY_BLOCK[128:160]).encrypt(pid + KEY_BLOCK[192:200], b"zero", header + pid)
    with pytest.raises(DataError):
        receive(client, header + pid + sealed[-16:] + sealed[:-16])


def test_cbc_hmac_layout_matches_independent_construction():
    client = DataKey(0, "AES-256-CBC", KEY_BLOCK, auth="SHA256", peer_id=3)
    header = bytes.fromhex("48000003")
    # server -> client, built by hand: HMAC-SHA256(slot 3) over IV || CBC(slot 2, pid||payload)
    iv = bytes(range(16))
    padder = padding.PKCS7(128).padder()
    plain = padder.update(struct.pack("!I", 1) + b"hello over CBC") + padder.finalize()
    enc = Cipher(algorithms.AES(KEY_BLOCK[128:160]), modes.CBC(iv)).encryptor()
    body = iv + enc.update(plain) + enc.finalize()
    mac = hmac.digest(KEY_BLOCK[192:224], body, "sha256")
    assert receive(client, header + mac + body) == b"hello over CBC"

    # client -> server, taken apart by hand with slots 0/1
    wire = client.encrypt(b"hello back")
    assert wire[:4] == header
    mac, body = wire[4:36], wire[36:]
    assert hmac.compare_digest(mac, hmac.digest(KEY_BLOCK[64:96], body, hashlib.sha256))
    dec = Cipher(algorithms.AES(KEY_BLOCK[0:32]), modes.CBC(body[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = unpadder.update(dec.update(body[16:]) + dec.finalize()) + unpadder.finalize()
    assert plain == struct.pack("!I", 1) + b"hello back"


# --- cipher none, auth none ---------------------------------------------------------------
# crypto.c (2.6) openvpn_encrypt_v1, "No Encryption" branch: if the packet-id state is
# initialised -- ssl.c does so for every TLS key state unless --no-replay -- the 4-byte
# packet id is written before the payload; openvpn_decrypt_v1 reads it and runs the
# replay check.

def test_cipher_none_writes_packet_id_before_payload():
    client = DataKey(0, "none", KEY_BLOCK, auth="none", peer_id=5)
    assert client.encrypt(b"abc") == bytes.fromhex("48000005" "00000001") + b"abc"
    assert client.encrypt(b"") == bytes.fromhex("48000005" "00000002")
    v1 = DataKey(1, "none", KEY_BLOCK, auth="none")
    assert v1.encrypt(KEEPALIVE) == b"\x31\x00\x00\x00\x01" + KEEPALIVE


def test_cipher_none_reads_packet_id_and_checks_replay():
    client = DataKey(0, "none", KEY_BLOCK, auth="none", peer_id=5)
    header = bytes.fromhex("48000005")
    assert receive(client, header + bytes.fromhex("00000002") + b"two") == b"two"
    assert receive(client, header + bytes.fromhex("00000001") + b"one") == b"one"
    with pytest.raises(DataError):
        receive(client, header + bytes.fromhex("00000002") + b"two again")
    with pytest.raises(DataError):
        receive(client, header + bytes.fromhex("00000000") + b"id zero")
    for n in range(4):
        with pytest.raises(DataError):
            client.decrypt(memoryview(bytes(n)))


def test_cipher_none_with_hmac_layout():
    client = DataKey(0, "none", KEY_BLOCK, auth="SHA1", peer_id=5)
    wire = client.encrypt(b"signed")
    body = struct.pack("!I", 1) + b"signed"
    assert wire == bytes.fromhex("48000005") + hmac.digest(KEY_BLOCK[64:84], body, "sha1") + body


# --- CBC with auth none -------------------------------------------------------------------
# 2.6 allows it (crypto.c init_key_type only warns): openvpn_encrypt_v1 writes the IV and
# the ciphertext and no HMAC.  It used to raise TypeError (hmac.digest with no digest).

def test_cbc_auth_none_layout_matches_independent_construction():
    client = DataKey(0, "AES-256-CBC", KEY_BLOCK, auth="none", peer_id=3,
                     rng=lambda n: bytes(range(n)))
    wire = client.encrypt(b"no hmac")
    assert wire[:4] == bytes.fromhex("48000003") and wire[4:20] == bytes(range(16))
    dec = Cipher(algorithms.AES(KEY_BLOCK[0:32]), modes.CBC(wire[4:20])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = unpadder.update(dec.update(wire[20:]) + dec.finalize()) + unpadder.finalize()
    assert plain == struct.pack("!I", 1) + b"no hmac"
    # server -> client by hand: slot 2 key, no HMAC
    iv = bytes(16)
    padder = padding.PKCS7(128).padder()
    body = padder.update(struct.pack("!I", 1) + b"from the server") + padder.finalize()
    enc = Cipher(algorithms.AES(KEY_BLOCK[128:160]), modes.CBC(iv)).encryptor()
    assert receive(client, bytes.fromhex("48000003") + iv + enc.update(body) + enc.finalize()) \
        == b"from the server"


def test_cbc_auth_none_refuses_bad_lengths_and_padding():
    client, server = pair("AES-256-CBC", "none")
    wire = client.encrypt(b"payload")
    for n in range(4, len(wire)):
        with pytest.raises(DataError):
            receive(server, wire[:n])
    bad = bytearray(wire)
    # one block of ciphertext: the IV's last byte flips the padding byte (5) to 0xFA,
    # which never parses (flipping ciphertext instead would leave valid padding 1 in 256)
    assert len(wire) - 16 - 16 in (1, 4)
    bad[-17] ^= 0xFF
    with pytest.raises(DataError):
        receive(server, bytes(bad))


# --- packet ids at their end --------------------------------------------------------------

def test_close_to_wrapping_from_the_trigger_on():
    key = DataKey(0, "AES-256-GCM", KEY_BLOCK)
    key.next_pid = PACKET_ID_WRAP_TRIGGER - 1
    key.encrypt(b"x")
    assert not key.close_to_wrapping               # 0xFEFFFFFF sent
    key.encrypt(b"x")
    assert key.close_to_wrapping                   # 0xFF000000 sent: renegotiate


@pytest.mark.parametrize("mode", MODES, ids=ids)
def test_packet_id_is_never_reused(mode):
    client, server = pair(*mode)
    client.next_pid = 0xFFFFFFFF
    last = client.encrypt(b"last")
    assert receive(server, last) == b"last"
    with pytest.raises(PacketIdExhausted):
        client.encrypt(b"one too many")
    assert client.packets_out == 1 and client.next_pid == 0x100000000
    assert issubclass(PacketIdExhausted, ErebusError)


# --- random bytes on the open path -------------------------------------------------------

_KEYS = {m: pair(*m, peer_id=p) for m in MODES for p in (None, 5)}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_KEYS)), st.binary(max_size=200), st.booleans())
def test_random_bytes_raise_only_data_error(mode, data, with_header):
    client, _ = _KEYS[mode]
    header = data[:4] if with_header else None
    try:
        client.decrypt(memoryview(data), header)
    except DataError:
        return
    # only the unauthenticated modes may take random bytes
    assert mode[1] == "none" and not is_aead(mode[0])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_KEYS)), st.binary(max_size=64), st.integers(0, 80),
       st.integers(0, 255))
def test_bit_flipped_packets_raise_only_data_error(mode, payload, index, flip):
    client, server = pair(*mode)
    wire = bytearray(client.encrypt(payload))
    wire[index % len(wire)] ^= flip
    try:
        pkt = parse_packet(bytes(wire))
    except ParseError:
        return
    if not isinstance(pkt, DataPacket):
        return
    try:
        server.decrypt(pkt.body, pkt.header)
    except DataError:
        pass
