"""tls-auth / tls-crypt control-channel wrapping and the static key file parser.

The layouts are pinned by recomputing them independently here (hmac + cryptography,
from the OpenVPN sources' description); tests/interop/test_wrap_raw.py proves them
against the real server.
"""

from __future__ import annotations

import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from erebus.crypto.replay import PacketIdWindow as PacketIdReplay
from erebus.errors import ConfigError, ParseError
from erebus.openvpn.statickey import (STATIC_KEY_FOOT, STATIC_KEY_HEAD, KeyHalf,
                                      format_static_key, key_slices, parse_static_key)
from erebus.openvpn.wrap import TlsAuth, TlsCrypt, WrapError
from erebus.wire import openvpn as w

KEY = bytes(range(256))
OTHER_KEY = bytes((i * 7 + 3) & 0xFF for i in range(256))
SID_C = bytes.fromhex("0102030405060708")
SID_S = bytes.fromhex("a1a2a3a4a5a6a7a8")
NOW = 1_700_000_000.25


def reset_packet(sid: bytes = SID_C) -> bytes:
    return w.build_control(w.P_CONTROL_HARD_RESET_CLIENT_V2, 0, sid, packet_id=0)


def control_packet(payload: bytes = b"\x16\x03\x01hello", pid: int = 1) -> bytes:
    return w.build_control(w.P_CONTROL_V1, 0, SID_C, [0, 1], SID_S, pid, payload)


def ack_packet() -> bytes:
    return w.build_control(w.P_ACK_V1, 2, SID_C, [3], SID_S)


PACKETS = [reset_packet(), control_packet(), control_packet(b"x" * 1200, 7), ack_packet()]


def auth_pair(digest: str = "SHA1") -> tuple[TlsAuth, TlsAuth]:
    return TlsAuth(KEY, 1, digest), TlsAuth(KEY, 0, digest)


def crypt_pair() -> tuple[TlsCrypt, TlsCrypt]:
    return TlsCrypt(KEY, client=True), TlsCrypt(KEY, client=False)


PAIRS = {
    "tls-auth-sha1": lambda: auth_pair("SHA1"),
    "tls-auth-sha256": lambda: auth_pair("SHA256"),
    "tls-auth-sha512": lambda: auth_pair("SHA512"),
    "tls-crypt": crypt_pair,
}


# --------------------------------------------------------------------- static key file

def key_file(key: bytes = KEY, *, comments: str = "#\n# 2048 bit OpenVPN static key\n#\n",
             per_line: int = 16) -> str:
    hexed = key.hex()
    step = 2 * per_line
    body = "\n".join(hexed[i:i + step] for i in range(0, len(hexed), step))
    return f"{comments}{STATIC_KEY_HEAD}\n{body}\n{STATIC_KEY_FOOT}\n"


def test_parse_good_file():
    text = key_file()
    assert len(text.splitlines()) == 3 + 1 + 16 + 1
    assert parse_static_key(text) == KEY
    assert parse_static_key(text.encode()) == KEY


def test_format_round_trip_matches_genkey_layout():
    text = format_static_key(OTHER_KEY)
    lines = text.splitlines()
    assert lines[3] == STATIC_KEY_HEAD and lines[-1] == STATIC_KEY_FOOT
    assert all(len(line) == 32 for line in lines[4:-1]) and len(lines[4:-1]) == 16
    assert parse_static_key(text) == OTHER_KEY


def test_parse_tolerates_comments_whitespace_and_crlf():
    text = key_file(comments="# a comment\n\n; another one\n#\n", per_line=8)
    text = text.replace("\n", "\r\n").replace(STATIC_KEY_FOOT, f"  {STATIC_KEY_FOOT}  ")
    text += "\ntrailing text after the footer is ignored, as OpenVPN does\n"
    assert parse_static_key(text, source="x.key") == KEY
    spaced = key_file().replace("0001", "00 01\t")
    assert parse_static_key(spaced) == KEY


def test_parse_uppercase_hex():
    upper = key_file().upper().replace("OPENVPN STATIC KEY V1", "OpenVPN Static key V1")
    assert parse_static_key(upper) == KEY


@pytest.mark.parametrize("text, words", [
    (key_file().replace("0001", "00g1"), ["ta.key:5:", "non-hex", "'g'"]),
    (key_file().replace(STATIC_KEY_FOOT, ""), ["END OpenVPN Static key V1"]),
    (key_file().replace(STATIC_KEY_HEAD, ""), ["BEGIN OpenVPN Static key V1", "not an"]),
    ("", ["not an"]),
    (key_file(KEY[:128]), ["128 bytes", "1024 bits", "expected 256"]),
    (key_file(KEY[:255]), ["255 bytes"]),
    (key_file(KEY + b"\x00"), ["257 bytes"]),
    (key_file().replace("0001", "001"), ["odd number"]),
    (key_file().replace("0001", "00\x0101"), ["non-hex", "0x01"]),
], ids=["bad-hex", "no-footer", "no-header", "empty", "short-1024-bit", "short-255",
        "long-257", "odd-digits", "control-char"])
def test_parse_errors(text, words):
    with pytest.raises(ConfigError) as info:
        parse_static_key(text, source="ta.key")
    message = str(info.value)
    assert message.startswith("ta.key")
    for word in words:
        assert word in message


def test_parse_rejects_non_utf8_bytes():
    with pytest.raises(ConfigError, match="not text"):
        parse_static_key(b"\xff\xfe" + key_file().encode(), source="bin.key")


def test_key_slices_directions():
    k0 = KeyHalf(KEY[0:64], KEY[64:128])
    k1 = KeyHalf(KEY[128:192], KEY[192:256])
    assert key_slices(KEY, None) == (k0, k0)
    assert key_slices(KEY, 0) == (k0, k1)
    assert key_slices(KEY, 1) == (k1, k0)
    assert "KeyHalf(<secret>)" == repr(k0)
    with pytest.raises(ValueError):
        key_slices(KEY, 2)
    with pytest.raises(ValueError):
        key_slices(KEY[:128], None)


# --------------------------------------------------------------------- layouts (known answer)

@pytest.mark.parametrize("digest, size, md", [("SHA1", 20, "sha1"), ("sha256", 32, "sha256"),
                                              ("SHA-512", 64, "sha512")])
def test_tls_auth_layout(digest, size, md):
    client = TlsAuth(KEY, 1, digest)
    assert client.overhead == size + 8 and client.hmac_size == size
    plain = control_packet()
    wire = client.wrap(plain, NOW)
    assert len(wire) == len(plain) + client.overhead
    assert wire[:9] == plain[:9]                                  # op | session id
    pid = struct.pack("!II", 1, int(NOW))                         # long form: id 1, time
    assert wire[9 + size:9 + size + 8] == pid
    assert wire[9 + size + 8:] == plain[9:]                       # body in clear
    # HMAC over pid | time | op | sid | body (swap_hmac), keyed with key[1]'s HMAC slot
    expect = hmac.new(KEY[192:192 + size], pid + plain, md).digest()
    assert wire[9:9 + size] == expect


def test_tls_auth_bidirectional_uses_key0_both_ways():
    a, b = TlsAuth(KEY, None), TlsAuth(KEY, None)
    plain = reset_packet()
    wire = a.wrap(plain, NOW)
    expect = hmac.new(KEY[64:84], wire[29:37] + plain, "sha1").digest()
    assert wire[9:29] == expect
    assert b.unwrap(wire, NOW) == plain
    assert a.unwrap(b.wrap(plain, NOW), NOW) == plain


def test_tls_crypt_layout():
    client = TlsCrypt(KEY, client=True)
    assert client.overhead == 40
    plain = control_packet()
    wire = client.wrap(plain, NOW)
    assert len(wire) == len(plain) + 40
    header = plain[:9] + struct.pack("!II", 1, int(NOW))
    assert wire[:17] == header
    body = plain[9:]
    # client -> server: key[1] (cipher slot 128.., HMAC slot 192..)
    tag = hmac.new(KEY[192:224], header + body, "sha256").digest()
    assert wire[17:49] == tag
    enc = Cipher(algorithms.AES(KEY[128:160]), modes.CTR(tag[:16])).encryptor()
    assert wire[49:] == enc.update(body) + enc.finalize()


def test_tls_crypt_server_sends_with_key0():
    server = TlsCrypt(KEY, client=False)
    plain = reset_packet(SID_S)
    wire = server.wrap(plain, NOW)
    tag = hmac.new(KEY[64:96], wire[:17] + plain[9:], "sha256").digest()
    assert wire[17:49] == tag
    dec = Cipher(algorithms.AES(KEY[0:32]), modes.CTR(tag[:16])).decryptor()
    assert dec.update(wire[49:]) + dec.finalize() == plain[9:]


@pytest.mark.parametrize("make", [lambda: TlsAuth(KEY, 1), lambda: TlsCrypt(KEY)],
                         ids=["tls-auth", "tls-crypt"])
def test_packet_ids_count_up_with_a_fixed_time(make):
    wr = make()
    off = 9 + (20 if wr.name == "tls-auth" else 0)
    ids = []
    for i in range(5):
        wire = wr.wrap(reset_packet(), NOW + 3 * i)         # a retransmission: a new id
        ids.append(struct.unpack_from("!II", wire, off))
    assert ids == [(n, int(NOW)) for n in range(1, 6)]
    pinned = TlsAuth(KEY, 1, send_time=1234)
    assert struct.unpack_from("!II", pinned.wrap(reset_packet(), 5.0), 29) == (1, 1234)


def test_packet_id_rollover():
    wr = TlsAuth(KEY, 1)
    wr.wrap(reset_packet(), 100.0)
    wr._send_id = 0xFFFFFFFF
    with pytest.raises(RuntimeError):
        wr.wrap(reset_packet(), 100.9)                      # same second: no rollover
    wire = wr.wrap(reset_packet(), 101.0)
    assert struct.unpack_from("!II", wire, 29) == (1, 101)


# --------------------------------------------------------------------- round trips

@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_round_trip_both_directions(pair):
    client, server = pair()
    for i, plain in enumerate(PACKETS):
        wire = client.wrap(plain, NOW + i)
        assert len(wire) == len(plain) + client.overhead
        back = server.unwrap(wire, NOW + i)
        assert back == plain
        assert w.parse_packet(back) == w.parse_packet(plain)
        reply = server.wrap(plain, NOW + i)
        assert client.unwrap(reply, NOW + i) == plain


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_memoryview_input(pair):
    client, server = pair()
    plain = control_packet()
    wire = client.wrap(memoryview(plain), NOW)
    assert server.unwrap(memoryview(bytearray(wire)), NOW) == plain


def test_wrong_side_or_key_rejected():
    plain = reset_packet()
    cases = [
        (TlsAuth(KEY, 1), TlsAuth(KEY, 1)),            # both "clients"
        (TlsAuth(KEY, 0), TlsAuth(KEY, 0)),
        (TlsAuth(KEY, 1), TlsAuth(KEY, None)),
        (TlsAuth(KEY, 1), TlsAuth(OTHER_KEY, 0)),
        (TlsAuth(KEY, 1, "SHA256"), TlsAuth(KEY, 0, "SHA1")),
        (TlsAuth(KEY, 1, "SHA1"), TlsAuth(KEY, 0, "SHA256")),
        (TlsCrypt(KEY), TlsCrypt(KEY)),
        (TlsCrypt(KEY, client=False), TlsCrypt(KEY, client=False)),
        (TlsCrypt(KEY), TlsCrypt(OTHER_KEY, client=False)),
        (TlsAuth(KEY, 1, "SHA256"), TlsCrypt(KEY, client=False)),
    ]
    for sender, receiver in cases:
        with pytest.raises(WrapError) as info:
            receiver.unwrap(sender.wrap(plain, NOW), NOW)
        assert info.value.kind in ("auth", "malformed")


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_every_single_byte_tamper_rejected(pair):
    client, server = pair()
    plain = control_packet(b"\x16\x03\x03" + bytes(range(40)))
    wire = client.wrap(plain, NOW)
    for i in range(len(wire)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(wire)
            bad[i] ^= flip
            with pytest.raises(WrapError) as info:
                server.unwrap(bytes(bad), NOW)
            assert info.value.kind in ("auth", "malformed"), (i, flip)
    # failed attempts spend nothing: the genuine packet still goes through, once
    assert server.unwrap(wire, NOW) == plain
    with pytest.raises(WrapError, match="replayed"):
        server.unwrap(wire, NOW)


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_truncation_and_extension_rejected(pair):
    client, server = pair()
    wire = client.wrap(control_packet(), NOW)
    for n in range(len(wire)):
        with pytest.raises(WrapError):
            server.unwrap(wire[:n], NOW)
    with pytest.raises(WrapError):
        server.unwrap(wire + b"\x00", NOW)


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_data_and_wkc_opcodes_are_not_unwrapped(pair):
    client, server = pair()
    wire = bytearray(client.wrap(control_packet(), NOW))
    for opcode in (w.P_DATA_V1, w.P_DATA_V2, w.P_CONTROL_HARD_RESET_CLIENT_V3,
                   w.P_CONTROL_WKC_V1, 0, 31):
        wire[0] = opcode << 3
        with pytest.raises(WrapError) as info:
            server.unwrap(bytes(wire), NOW)
        assert info.value.kind == "malformed"
    with pytest.raises(WrapError, match="empty"):
        server.unwrap(b"", NOW)


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_wrap_rejects_non_control_input(pair):
    client, _ = pair()
    for bad in (b"", reset_packet()[:9], w.data_v2_header(0, 5) + b"payload",
                w.data_v1_header(0) + b"x" * 20):
        with pytest.raises(ValueError):
            client.wrap(bad, NOW)


def test_unknown_digest_is_a_config_error():
    with pytest.raises(ConfigError, match="auth"):
        TlsAuth(KEY, 1, "none")
    with pytest.raises(ConfigError):
        TlsAuth(KEY, 1, "MD4")


# --------------------------------------------------------------------- replay protection

@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_replay_rejected(pair):
    client, server = pair()
    wires = [client.wrap(control_packet(pid=i), NOW) for i in range(1, 6)]
    assert server.unwrap(wires[0], NOW) == control_packet(pid=1)
    with pytest.raises(WrapError) as info:
        server.unwrap(wires[0], NOW)
    assert info.value.kind == "replay" and isinstance(info.value, ParseError)
    # reordering inside the window is fine, each id once
    assert server.unwrap(wires[3], NOW)
    assert server.unwrap(wires[1], NOW)
    for i in (1, 3):
        with pytest.raises(WrapError, match="replay"):
            server.unwrap(wires[i], NOW)
    assert server.unwrap(wires[2], NOW) and server.unwrap(wires[4], NOW)


def test_replay_outside_window_and_older_time():
    client, server = auth_pair()
    old = client.wrap(reset_packet(), NOW)
    for _ in range(70):
        last = client.wrap(reset_packet(), NOW)
    assert server.unwrap(last, NOW)                           # id 71
    with pytest.raises(WrapError, match="window"):
        server.unwrap(old, NOW)                               # id 1, 70 behind
    # a sender that restarted with an older time is refused
    stale = TlsAuth(KEY, 1, send_time=int(NOW) - 10)
    with pytest.raises(WrapError, match="older"):
        server.unwrap(stale.wrap(reset_packet(), NOW), NOW)
    # a newer time starts a new window: ids may start again at 1
    fresh = TlsAuth(KEY, 1, send_time=int(NOW) + 10)
    assert server.unwrap(fresh.wrap(reset_packet(), NOW), NOW)
    with pytest.raises(WrapError, match="older"):
        server.unwrap(client.wrap(reset_packet(), NOW), NOW)


def test_packet_id_replay_rules():
    r = PacketIdReplay(window=8, time_backtrack=15)
    assert r.check(0, 100, 0.0) == "packet id 0"

    def accept(pid, t, now=0.0):
        why = r.check(pid, t, now)
        if why is None:
            r.update(pid, t, now)
        return why is None

    assert accept(5, 100)
    assert not accept(5, 100)
    assert accept(3, 100) and accept(12, 100)
    assert not accept(4, 100)                    # 12 - 4 = 8: outside a window of 8
    assert accept(2, 101) and accept(1, 101)     # new time, new window
    assert not accept(12, 100)
    # time backtrack: id 20 arrives at t=0, id 18 (never seen) 16 s later is too late
    r = PacketIdReplay(window=64, time_backtrack=15)
    assert accept(20, 100, now=0.0)
    assert not accept(18, 100, now=16.0)
    assert accept(19, 100, now=10.0)             # within 15 s: fine
    assert accept(21, 100, now=100.0)            # newer ids are always fine
    r = PacketIdReplay(window=64, time_backtrack=0)
    assert accept(20, 100, now=0.0) and accept(18, 100, now=1000.0)


# --------------------------------------------------------------------- fuzz

_WRAPPERS = {
    "tls-auth": lambda: TlsAuth(KEY, 0),
    "tls-auth-sha512": lambda: TlsAuth(KEY, 0, "SHA512"),
    "tls-crypt": lambda: TlsCrypt(KEY, client=False),
}


@pytest.mark.parametrize("make", _WRAPPERS.values(), ids=_WRAPPERS.keys())
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_fuzz_unwrap_arbitrary_bytes(make, data):
    try:
        make().unwrap(data, NOW)
    except WrapError:
        pass
    else:                                        # pragma: no cover
        pytest.fail("forged packet accepted")


@pytest.mark.parametrize("make", _WRAPPERS.values(), ids=_WRAPPERS.keys())
@settings(max_examples=300, deadline=None)
@given(opcode=st.sampled_from(sorted(w.CONTROL_OPCODES)), key_id=st.integers(0, 7),
       rest=st.binary(min_size=0, max_size=200))
def test_fuzz_unwrap_control_like(make, opcode, key_id, rest):
    with pytest.raises(WrapError):
        make().unwrap(bytes(((opcode << 3) | key_id,)) + rest, NOW)


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=1300), pid=st.integers(0, 2**32 - 1),
       acks=st.lists(st.integers(0, 2**32 - 1), max_size=8), key_id=st.integers(0, 7),
       pair=st.sampled_from(sorted(PAIRS)))
def test_fuzz_round_trip(payload, pid, acks, key_id, pair):
    client, server = PAIRS[pair]()
    plain = w.build_control(w.P_CONTROL_V1, key_id, SID_C, acks, SID_S if acks else None,
                            pid, payload)
    assert server.unwrap(client.wrap(plain, NOW), NOW) == plain
