"""Static-key mode: the bytes on the wire are what OpenVPN 2.6 (crypto.c
``openvpn_encrypt_v1`` with ``CO_PACKET_ID_LONG_FORM``) puts there, built here
independently with ``cryptography``; key directions, tampering, replays, keepalives,
OCC, ping-restart and a fuzzed ``receive_datagram``."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import struct

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings, strategies as st

from erebus.crypto.replay import PacketIdWindow
from erebus.errors import ConfigError, SessionError
from erebus.openvpn.data import KEEPALIVE, OCC_MAGIC
from erebus.openvpn.push import Route
from erebus.openvpn.session import Closed, Connected, Failed, State
from erebus.openvpn.static import (OCC_EXIT, OCC_MTU_REPLY, OCC_MTU_REQUEST, OCC_REPLY,
                                   OCC_REQUEST, PEER_SEEN, StaticKeySession, StaticKeySettings,
                                   options_string, static_link_mtu)

KEY = random.Random(2048).randbytes(256)
T0 = 1_700_000_000           # the wall clock of the sessions under test
CLIENT_IP, SERVER_IP = "198.19.8.2", "198.19.8.1"
IV = bytes(range(16))
KEY_LEN = {"AES-128-CBC": 16, "AES-192-CBC": 24, "AES-256-CBC": 32}
HASH = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}

# What the stock 2.6.14 client and server logged for the lab's "static" mode
# (AES-256-CBC, SHA256, server "secret key 0", client "key-direction 1").
STOCK_CLIENT_OPTIONS = ("V4,dev-type tun,link-mtu 1572,tun-mtu 1500,proto UDPv4,ifconfig "
                        "198.19.8.1 198.19.8.2,keydir 1,cipher AES-256-CBC,auth SHA256,"
                        "keysize 256,secret")
STOCK_SERVER_OPTIONS = ("V4,dev-type tun,link-mtu 1572,tun-mtu 1500,proto UDPv4,ifconfig "
                        "198.19.8.2 198.19.8.1,keydir 0,cipher AES-256-CBC,auth SHA256,"
                        "keysize 256,secret")


def make(direction=1, cipher="AES-256-CBC", auth="SHA256", *, now=0.0, clock=T0, rng=None,
         local=CLIENT_IP, remote=SERVER_IP, **kw) -> StaticKeySession:
    s = StaticKeySettings(key=KEY, direction=direction, cipher=cipher, auth=auth,
                          local_ip=local, remote_ip=remote, **kw)
    return StaticKeySession(s, now, rng=rng or (lambda n: IV[:n]), clock=lambda: clock)


def peer_of(session_direction, cipher="AES-256-CBC", auth="SHA256", **kw):
    """The other end: the complementary key direction, addresses swapped."""
    d = None if session_direction is None else 1 - session_direction
    return make(d, cipher, auth, local=SERVER_IP, remote=CLIENT_IP, clock=T0 + 5, **kw)


# -- an independent construction --------------------------------------------------------

def half(direction_of_sender: int | None) -> tuple[bytes, bytes]:
    """(cipher slot, hmac slot) the sender with this key direction encrypts with:
    crypto.c key_direction_state_init: None and 0 send with key[0], 1 with key[1]."""
    base = 128 if direction_of_sender == 1 else 0
    return KEY[base:base + 64], KEY[base + 64:base + 128]


def reference_packet(sender_direction, cipher, auth, pid, ptime, payload, iv=IV) -> bytes:
    ckey, hkey = half(sender_direction)
    plain = struct.pack("!II", pid, ptime) + payload
    if cipher == "none":
        body = plain
    else:
        p = padding.PKCS7(128).padder()
        padded = p.update(plain) + p.finalize()
        e = Cipher(algorithms.AES(ckey[:KEY_LEN[cipher]]), modes.CBC(iv)).encryptor()
        body = iv + e.update(padded) + e.finalize()
    if auth == "none":
        return body
    h = HASH[auth]
    return hmac.new(hkey[:h().digest_size], body, h).digest() + body


def reference_open(receiver_direction, cipher, auth, wire) -> tuple[int, int, bytes]:
    """Authenticate and decrypt as the peer of a receiver with this direction would
    have sent: (packet id, time, payload)."""
    sender = None if receiver_direction is None else 1 - receiver_direction
    ckey, hkey = half(sender)
    if auth != "none":
        h = HASH[auth]
        n = h().digest_size
        assert hmac.compare_digest(hmac.new(hkey[:n], wire[n:], h).digest(), wire[:n])
        wire = wire[n:]
    if cipher != "none":
        d = Cipher(algorithms.AES(ckey[:KEY_LEN[cipher]]), modes.CBC(wire[:16])).decryptor()
        padded = d.update(wire[16:]) + d.finalize()
        u = padding.PKCS7(128).unpadder()
        wire = u.update(padded) + u.finalize()
    pid, ptime = struct.unpack_from("!II", wire)
    return pid, ptime, wire[8:]


MODES = [("AES-256-CBC", "SHA256"), ("AES-128-CBC", "SHA1"), ("AES-192-CBC", "SHA512"),
         ("none", "SHA256"), ("none", "none"), ("AES-256-CBC", "none")]


def mode_id(m):
    return f"{m[0]}+{m[1]}"


def drain_setup(s: StaticKeySession, now=0.0) -> list[bytes]:
    """The Connected event and the first OCC_REQUEST out of the way."""
    assert isinstance(s.next_event(), Connected)
    return s.datagrams_to_send(now)


# -- the packet format ------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES, ids=mode_id)
@pytest.mark.parametrize("direction", [0, 1, None])
def test_outgoing_bytes_match_reference(mode, direction):
    cipher, auth = mode
    s = make(direction, cipher, auth)
    first = drain_setup(s)
    # packet id 1 was the OCC_REQUEST; the time is the wall clock at the first packet
    assert first == [reference_packet(direction, cipher, auth, 1, T0,
                                      OCC_MAGIC + bytes((OCC_REQUEST,)))]
    for pid, payload in enumerate([b"\x45" + bytes(59), b"", bytes(range(256)) * 5], 2):
        assert s.send_packet(payload, 1.0) == reference_packet(direction, cipher, auth, pid, T0,
                                                           payload)


@pytest.mark.parametrize("mode", MODES, ids=mode_id)
@pytest.mark.parametrize("direction", [0, 1, None])
def test_incoming_reference_packets(mode, direction):
    cipher, auth = mode
    s = make(direction, cipher, auth)
    drain_setup(s)
    peer = None if direction is None else 1 - direction
    for pid in (1, 2, 5, 3):
        payload = bytes([0x45, pid]) * 30
        wire = reference_packet(peer, cipher, auth, pid, T0 + 9, payload, iv=bytes([pid]) * 16)
        assert s.receive_datagram(wire, 1.0) == [payload]
    assert s.counters.packets_in == 4


def test_layout_cbc_sha256_fields():
    """HMAC(32) | IV(16) | AES-256-CBC(packet id | time | payload), no opcode byte."""
    s = make(1)
    drain_setup(s)
    wire = s.send_packet(b"hello", 0.0)
    assert len(wire) == 32 + 16 + 16          # 8 + 5 bytes pad to one block
    assert wire[32:48] == IV
    assert reference_open(0, "AES-256-CBC", "SHA256", wire) == (2, T0, b"hello")


def test_layout_cipher_none():
    s = make(0, "none", "SHA1")
    drain_setup(s)
    wire = s.send_packet(b"abc", 0.0)
    assert wire[20:] == struct.pack("!II", 2, T0) + b"abc"
    s = make(0, "none", "none")
    drain_setup(s)
    assert s.send_packet(b"abc", 0.0) == struct.pack("!II", 2, T0) + b"abc"


def test_time_field_is_fixed_at_first_packet():
    clock = [T0]
    s = StaticKeySession(StaticKeySettings(key=KEY, direction=1, cipher="AES-256-CBC",
                                           auth="SHA256", local_ip=CLIENT_IP,
                                           remote_ip=SERVER_IP), 0.0, clock=lambda: clock[0])
    drain_setup(s)
    clock[0] += 100
    assert reference_open(0, "AES-256-CBC", "SHA256", s.send_packet(b"x", 0.0))[:2] == (2, T0)


def test_packet_id_wraps_with_a_new_time():
    clock = [T0]
    s = StaticKeySession(StaticKeySettings(key=KEY, direction=1, cipher="none", auth="none",
                                           local_ip=CLIENT_IP, remote_ip=SERVER_IP), 0.0,
                         clock=lambda: clock[0])
    drain_setup(s)
    s._send_id = 0xFFFFFFFF
    # same second: 2.6 drops the packet ("packet ID roll over") rather than replay an id
    assert s.send_packet(b"x", 0.0) is None
    assert s.counters.dropped_packet_id_exhausted == 1
    clock[0] += 1
    assert s.send_packet(b"x", 0.0)[:8] == struct.pack("!II", 1, T0 + 1)


# -- both ends ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES, ids=mode_id)
@pytest.mark.parametrize("direction", [0, 1, None])
def test_two_sessions_both_directions(mode, direction):
    a = make(direction, *mode)
    b = peer_of(direction, *mode)
    for d in drain_setup(a):
        assert b.receive_datagram(d, 0.0) == []        # OCC_REQUEST
    for d in drain_setup(b):                           # its request and our reply
        assert a.receive_datagram(d, 0.0) == []
    for d in a.datagrams_to_send(0.0):
        assert b.receive_datagram(d, 0.0) == []
    assert a.peer_options == b.local_options and b.peer_options == a.local_options
    for n in range(20):
        pkt = bytes([0x45, n]) * (n + 10)
        assert b.receive_datagram(a.send_packet(pkt, 1.0), 1.0) == [pkt]
        assert a.receive_datagram(b.send_packet(pkt[::-1], 1.0), 1.0) == [pkt[::-1]]
    assert a.remote_session_id == PEER_SEEN and b.remote_session_id == PEER_SEEN


# (0 -> None would pass: both use key[0] that way; only the way back fails)
@pytest.mark.parametrize("directions", [(1, 1), (0, 0), (None, 0), (1, None)])
def test_wrong_key_direction_fails_authentication(directions):
    a = make(directions[0])
    b = make(directions[1], local=SERVER_IP, remote=CLIENT_IP)
    drain_setup(a)
    drain_setup(b)
    assert b.receive_datagram(a.send_packet(b"\x45" * 40, 0.0), 0.0) == []
    assert b.counters.dropped_data_auth == 1
    assert b.remote_session_id is None


def test_cipher_mismatch_is_a_decrypt_drop():
    """Same key slots, other cipher: the HMAC holds, the CBC padding (almost) never."""
    a = make(1, "AES-128-CBC", "SHA256")
    b = make(0, "AES-256-CBC", "SHA256", local=SERVER_IP, remote=CLIENT_IP)
    drain_setup(a)
    drain_setup(b)
    for _ in range(20):
        b.receive_datagram(a.send_packet(b"\x45" * 40, 0.0), 0.0)
    assert b.counters.dropped_data_auth == 0
    assert b.counters.dropped_decrypt >= 15


# -- tampering and replays ---------------------------------------------------------------

@pytest.mark.parametrize("mode", [m for m in MODES if m[1] != "none"], ids=mode_id)
def test_any_flipped_bit_is_refused(mode):
    a, b = make(1, *mode), peer_of(1, *mode)
    drain_setup(a)
    drain_setup(b)
    wire = a.send_packet(b"\x45" + bytes(40), 0.0)
    for i in range(len(wire)):
        for bit in (0x01, 0x80):
            forged = bytearray(wire)
            forged[i] ^= bit
            assert b.receive_datagram(bytes(forged), 0.0) == []
    assert b.counters.dropped_data_auth == 2 * len(wire)
    assert b.receive_datagram(wire[:-1], 0.0) == []
    assert b.receive_datagram(wire + b"\x00", 0.0) == []
    assert b.receive_datagram(wire, 0.0) == [b"\x45" + bytes(40)]     # the original is fine
    assert b.remote_session_id == PEER_SEEN


def test_replays_and_reordering():
    s = make(1)
    drain_setup(s)

    def pkt(pid, t=T0 + 5):
        return reference_packet(0, "AES-256-CBC", "SHA256", pid, t, bytes([pid % 256]) * 20)

    assert s.receive_datagram(pkt(1), 0.0)
    assert s.receive_datagram(pkt(1), 0.0) == []          # replay
    assert s.receive_datagram(pkt(10), 0.0)
    assert s.receive_datagram(pkt(5), 0.0)                # late, inside the window
    assert s.receive_datagram(pkt(5), 0.0) == []
    assert s.receive_datagram(pkt(100), 0.0)
    assert s.receive_datagram(pkt(36), 0.0) == []         # 64 behind: outside the window
    assert s.receive_datagram(pkt(37), 0.0)
    assert s.receive_datagram(pkt(200, T0 + 4), 0.0) == []    # older time: refused
    assert s.counters.dropped_replay == 4
    assert s.receive_datagram(pkt(1, T0 + 60), 0.0)       # peer restarted: new time, id 1
    assert s.receive_datagram(pkt(100), 0.0) == []        # the old epoch is over
    assert s.counters.dropped_replay == 5


def test_time_window_expires_late_packets():
    s = make(1)
    drain_setup(s)

    def pkt(pid):
        return reference_packet(0, "AES-256-CBC", "SHA256", pid, T0, b"\x45" * 20)

    assert s.receive_datagram(pkt(1), 0.0)
    assert s.receive_datagram(pkt(3), 1.0)
    # id 3 arrived 19 s ago (more than replay_time 15 s): it and every id below it
    # expire; 4, never seen and above it, may still come
    assert s.receive_datagram(pkt(5), 20.0)
    assert s.receive_datagram(pkt(2), 20.0) == []
    assert s.receive_datagram(pkt(4), 20.0)
    assert s.receive_datagram(pkt(4), 20.0) == []
    assert s.receive_datagram(pkt(6), 20.0)
    assert s.counters.dropped_replay == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 300), max_size=80), st.integers(1, 64))
def test_packet_id_window_model(ids, size):
    """Without the time window: each id once, never more than `size` - 1 below the top."""
    w = PacketIdWindow(size, 0)
    seen: set[int] = set()
    top = 0
    for pid in ids:
        expected = pid not in seen and (pid > top or top - pid < size)
        assert w.test(pid, 7) == expected, (pid, top, seen)
        if expected:
            w.add(pid, 7, 0.0)
            seen.add(pid)
            top = max(top, pid)


# -- keepalive, OCC, timers --------------------------------------------------------------

def test_connected_at_once_with_p2p_options(caplog):
    with caplog.at_level(logging.WARNING, logger="erebus.openvpn"):
        s = make(1, ping=10, ping_restart=60, routes=[Route("198.18.2.0", "255.255.255.0")],
                 tun_mtu=1400)
    assert any("deprecated" in r.getMessage() for r in caplog.records)
    assert s.established and not s.finished and s.state is State.ESTABLISHED
    ev = s.next_event()
    assert isinstance(ev, Connected) and ev.info.cipher == "AES-256-CBC" and ev.info.setup_ms == 0
    p = ev.options
    assert (p.virtual_ip, p.netmask, p.gateway, p.topology) == (CLIENT_IP, "255.255.255.255",
                                                                SERVER_IP, "p2p")
    assert [r.cidr for r in p.routes] == ["198.18.2.0/24"] and p.tun_mtu == 1400
    assert s.next_event() is None
    assert s.remote_session_id is None


def test_options_strings_match_stock_openvpn():
    client = make(1)
    assert client.local_options == STOCK_CLIENT_OPTIONS
    assert client.expected_remote_options == STOCK_SERVER_OPTIONS
    server = make(0, local=SERVER_IP, remote=CLIENT_IP)
    assert server.local_options == STOCK_SERVER_OPTIONS
    assert static_link_mtu("AES-256-CBC", "SHA256", 1500) == 1572
    assert static_link_mtu("AES-128-CBC", "SHA1", 1500) == 1560
    assert static_link_mtu("none", "SHA256", 1500) == 1540
    assert "keydir" not in options_string(cipher="none", digest=None, tun_mtu=1500,
                                          local_ip=CLIENT_IP, remote_ip=SERVER_IP,
                                          direction=None)


def timer_payloads(s, t: float) -> list[bytes]:
    """What handle_timer(t) makes due, decrypted, OCC requests left out."""
    s.handle_timer(t)
    payloads = [reference_open(0, "AES-256-CBC", "SHA256", d)[2]
                for d in s.datagrams_to_send(t)]
    return [p for p in payloads if p[:16] != OCC_MAGIC]


def test_keepalives_both_ways():
    s = make(1, ping=10, ping_restart=60)
    drain_setup(s, 0.0)
    assert s.get_timer() == 10.0                        # OCC retry at 10 too
    assert timer_payloads(s, 10.0) == [KEEPALIVE]
    assert s.counters.keepalives_out == 1
    assert timer_payloads(s, 12.0) == []                # nothing due
    ping = reference_packet(0, "AES-256-CBC", "SHA256", 1, T0, KEEPALIVE)
    assert s.receive_datagram(ping, 15.0) == []
    assert s.counters.keepalives_in == 1 and s.remote_session_id == PEER_SEEN
    s.send_packet(b"\x45" * 20, 18.0)                       # data counts as activity
    s.handle_timer(20.0)                                # (the OCC retry stays queued)
    assert s.counters.keepalives_out == 1
    assert timer_payloads(s, 28.0) == [KEEPALIVE]


def test_occ_request_retries_until_a_reply():
    s = make(1)
    sent = drain_setup(s, 0.0)
    assert [reference_open(0, "AES-256-CBC", "SHA256", d)[2] for d in sent] == \
        [OCC_MAGIC + bytes((OCC_REQUEST,))]
    assert s.get_timer() == 10.0
    s.handle_timer(10.0)
    assert len(s.datagrams_to_send(10.0)) == 1          # the second request
    reply = OCC_MAGIC + bytes((OCC_REPLY,)) + STOCK_SERVER_OPTIONS.encode() + b"\x00"
    assert s.receive_datagram(reference_packet(0, "AES-256-CBC", "SHA256", 1, T0, reply),
                              11.0) == []
    assert s.peer_options == STOCK_SERVER_OPTIONS
    assert s.get_timer() is None                        # no ping set, no more OCC
    assert s.next_event() is None                       # the options match: nothing to say


def test_occ_gives_up_after_twelve_requests():
    s = make(1)
    drain_setup(s, 0.0)
    n = 1
    while (t := s.get_timer()) is not None:
        s.handle_timer(t)
        n += len(s.datagrams_to_send(t))
    assert n == 12


def test_occ_answers_and_odd_messages():
    s = make(1)
    drain_setup(s)
    counter = iter(range(1, 100))

    def occ(body: bytes) -> list[bytes]:
        wire = reference_packet(0, "AES-256-CBC", "SHA256", next(counter), T0,
                                OCC_MAGIC + body)
        assert s.receive_datagram(wire, 1.0) == []
        return [reference_open(0, "AES-256-CBC", "SHA256", d)[2]
                for d in s.datagrams_to_send(1.0)]

    assert occ(bytes((OCC_REQUEST,))) == [OCC_MAGIC + bytes((OCC_REPLY,))
                                          + STOCK_CLIENT_OPTIONS.encode() + b"\x00"]
    mtu = occ(bytes((OCC_MTU_REQUEST,)))
    assert len(mtu) == 1 and mtu[0][16] == OCC_MTU_REPLY
    recv, send = struct.unpack("!HH", mtu[0][17:])
    assert recv > 0 and send > 0
    for body in (bytes((2, 5, 220)), bytes((3,)) + bytes(100), bytes((5, 1, 2, 3, 4)),
                 bytes((99,)), b""):
        assert occ(body) == []
    assert s.counters.occ_ignored == 4 and s.counters.dropped_malformed == 1
    # a peer whose options differ: a warning and a ServerMessage, the session goes on
    other = STOCK_SERVER_OPTIONS.replace("link-mtu 1572", "link-mtu 1560")
    occ(bytes((OCC_REPLY,)) + other.encode() + b"\x00")
    ev = s.next_event()
    assert ev is not None and "link-mtu 1560" in ev.text and s.established


def test_occ_exit_from_the_peer_fails_with_restart():
    s = make(1)
    drain_setup(s)
    wire = reference_packet(0, "AES-256-CBC", "SHA256", 1, T0, OCC_MAGIC + bytes((OCC_EXIT,)))
    assert s.receive_datagram(wire, 1.0) == []
    ev = s.next_event()
    assert isinstance(ev, Failed) and ev.stage == "restart"
    assert s.finished and s.get_timer() is None and s.datagrams_to_send(2.0) == []
    assert s.receive_datagram(wire, 2.0) == []


def test_close_sends_occ_exit():
    s = make(1, ping=10)
    drain_setup(s)
    s.close(1.0)
    out = s.datagrams_to_send(1.0)
    assert [reference_open(0, "AES-256-CBC", "SHA256", d)[2] for d in out] == \
        [OCC_MAGIC + bytes((OCC_EXIT,))]
    ev = s.next_event()
    assert isinstance(ev, Closed) and s.finished and s.state is State.CLOSED
    s.close(2.0)
    s.handle_timer(30.0)
    assert s.datagrams_to_send(30.0) == [] and s.get_timer() is None
    with pytest.raises(SessionError):
        s.send_packet(b"\x45" * 20, 2.0)


def test_ping_restart_without_authentic_packets():
    s = make(1, ping=10, ping_restart=60)
    drain_setup(s, 0.0)
    forged = bytearray(reference_packet(0, "AES-256-CBC", "SHA256", 1, T0, KEEPALIVE))
    forged[-1] ^= 1
    t = 0.0
    while not s.finished:
        t = s.get_timer()
        s.handle_timer(t)
        s.datagrams_to_send(t)
        s.receive_datagram(bytes(forged), t)     # forged packets keep nothing alive
    ev = [e for e in iter(s.next_event, None)]
    assert isinstance(ev[-1], Failed) and ev[-1].stage == "ping-restart"
    assert "no authentic packet" in ev[-1].message and t == 60.0


def test_authentic_packets_keep_the_session_alive():
    s = make(1, ping=10, ping_restart=60)
    drain_setup(s, 0.0)
    for i, t in enumerate((50.0, 100.0, 150.0), 1):
        s.receive_datagram(reference_packet(0, "AES-256-CBC", "SHA256", i, T0, KEEPALIVE), t)
        s.handle_timer(t + 55)
        assert not s.finished
    s.handle_timer(210.0)
    assert s.state is State.FAILED
    ev = [e for e in iter(s.next_event, None)][-1]
    assert ev.stage == "ping-restart" and "no packet from the peer for 60 s" in ev.message


# -- refusals ----------------------------------------------------------------------------

@pytest.mark.parametrize("cipher,auth,fragment", [
    ("ARIA-256-CBC", "SHA256", "ARIA-256-CBC is not supported by erebus"),
    ("AES-256-GCM", "SHA256", "AEAD"),
    ("CHACHA20-POLY1305", "SHA256", "AEAD"),
    ("AES-256-CFB", "SHA256", "not supported"),
    ("AES-256-CBC", "SHAKE128", "auth SHAKE128"),
    ("AES-256-CBC", "MDC2", "auth MDC2: unsupported digest"),
])
def test_refused_ciphers(cipher, auth, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make(1, cipher, auth)


def test_refused_settings():
    with pytest.raises(ConfigError, match="256 bytes"):
        StaticKeySession(StaticKeySettings(key=KEY[:128], cipher="AES-256-CBC",
                                           local_ip=CLIENT_IP, remote_ip=SERVER_IP), 0.0)
    with pytest.raises(ConfigError, match="ifconfig"):
        StaticKeySession(StaticKeySettings(key=KEY, cipher="AES-256-CBC"), 0.0)
    with pytest.raises(ConfigError, match="direction"):
        make(2)
    shown = repr(StaticKeySettings(key=KEY, cipher="AES-256-CBC"))
    assert repr(KEY) not in shown and KEY.hex()[:16] not in shown   # no key material


# -- fuzz --------------------------------------------------------------------------------

FUZZ_MODES = [("AES-256-CBC", "SHA256"), ("AES-128-CBC", "none"), ("none", "none"),
              ("none", "SHA1")]


def _accounted(s: StaticKeySession) -> int:
    c = s.counters
    return (c.dropped_malformed + c.dropped_data_auth + c.dropped_decrypt + c.dropped_replay
            + c.packets_in)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FUZZ_MODES), st.lists(st.binary(max_size=200), max_size=10))
def test_fuzz_receive_never_raises(mode, datagrams):
    s = make(1, *mode)
    drain_setup(s)
    for i, d in enumerate(datagrams, 1):
        out = s.receive_datagram(d, float(i))
        assert isinstance(out, list) and all(isinstance(p, bytes) for p in out)
        assert _accounted(s) == i               # every datagram dropped-and-counted or taken
    if mode[1] != "none":
        assert s.counters.packets_in == 0       # nothing random authenticates


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FUZZ_MODES), st.binary(min_size=0, max_size=64),
       st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
       st.integers(-40, 40))
def test_fuzz_mutated_packets(mode, payload, flips, cut):
    a, b = make(1, *mode), peer_of(1, *mode)
    drain_setup(a)
    drain_setup(b)
    original = a.send_packet(payload, 0.0)
    wire = bytearray(original)
    for pos, value in flips:
        wire[pos % len(wire)] ^= value
    if cut < 0:
        wire = wire[:cut]
    else:
        wire += bytes(cut)
    out = b.receive_datagram(bytes(wire), 1.0)
    assert _accounted(b) == 1
    if bytes(wire) == original:
        assert out == ([payload] if payload else [])      # an empty payload is not a packet
    elif mode[1] != "none":
        assert out == [] and b.counters.dropped_data_auth + b.counters.dropped_malformed == 1
