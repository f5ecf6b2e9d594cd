"""tls-crypt-v2 on the client (its key file: test_tls_crypt_v2_key.py): the
P_CONTROL_HARD_RESET_CLIENT_V3 layout (recomputed here independently, from
doc/tls-crypt-v2.txt and tls_crypt.c), 2.6's
early negotiation (ssl.c: packet ids from 0x0f000000, the server's EARLY_NEG_FLAGS TLV,
then P_CONTROL_WKC_V1 as message packet id 1), malformed TLVs and the messages a user
reads when a server drops us silently.  tests/interop/test_tls_crypt_v2_lab.py proves it
against the stock 2.6 server."""

from __future__ import annotations

import base64
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings as hsettings, strategies as st

from erebus.errors import ParseError
from erebus.openvpn.session import ClientSession, Connected, Failed, State
from erebus.openvpn.wrap import TlsCrypt, TlsCryptV2
from erebus.wire import openvpn as w
from tests.unit.test_config import CA as CA_PEM
from tests.unit.test_session import FakeServer, pki, run, settings

__all__ = ["pki"]

KC = bytes((i * 5 + 1) & 0xFF for i in range(256))
NOW = 1_700_000_000.5


def make_wkc(size: int = 299) -> bytes:
    """An opaque wrapped key of ``size`` bytes ending in its own length (what
    ``--genkey tls-crypt-v2-client`` writes: 290 bytes plus the metadata)."""
    return bytes((i * 13 + 7) & 0xFF for i in range(size - 2)) + struct.pack("!H", size)


WKC = make_wkc()


def pem(raw: bytes) -> str:
    b64 = base64.b64encode(raw).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN OpenVPN tls-crypt-v2 client key-----\n" + "\n".join(lines)
            + "\n-----END OpenVPN tls-crypt-v2 client key-----\n")


# -- the wire ------------------------------------------------------------------------

def test_early_negotiation_tlvs():
    assert w.parse_early_negotiation(b"") == 0
    assert w.parse_early_negotiation(w.build_early_negotiation(1)) == 1
    # unknown types are skipped, flags anywhere
    assert w.parse_early_negotiation(bytes.fromhex("0007 0003 aabbcc 0001 0002 0001")) == 1
    assert w.build_early_negotiation(1) == bytes.fromhex("0001 0002 0001")


@pytest.mark.parametrize("payload", [
    "00", "000100", "0001 0002 00",           # shorter than a TLV header / its value
    "0001 0003 000100", "0001 0000",          # a flags TLV must be 2 bytes
    "0009 0005 0000", "0001 0002 0001 00",    # overruns; a stray trailing byte
])
def test_malformed_tlvs_are_parse_errors(payload):
    with pytest.raises(ParseError):
        w.parse_early_negotiation(bytes.fromhex(payload))


@hsettings(derandomize=True, database=None, max_examples=300)
@given(st.binary(max_size=64))
def test_tlv_parser_raises_only_parse_errors(data):
    try:
        w.parse_early_negotiation(data)
    except ParseError:
        pass


def independent_wrap(plain: bytes, packet_id: int, time_: int) -> bytes:
    """tls-crypt in the client direction, as tls_crypt.c does it (key[1] of Kc: cipher
    slot at 128, HMAC slot at 192)."""
    header = plain[:9] + struct.pack("!II", packet_id, time_)
    tag = hmac.new(KC[192:224], header + plain[9:], "sha256").digest()
    enc = Cipher(algorithms.AES(KC[128:160]), modes.CTR(tag[:16])).encryptor()
    return header + tag + enc.update(plain[9:]) + enc.finalize()


def test_hard_reset_client_v3_byte_for_byte():
    sid = bytes.fromhex("0102030405060708")
    wrapper = TlsCryptV2(KC, WKC)
    plain = w.build_control(w.P_CONTROL_HARD_RESET_CLIENT_V3, 0, sid, packet_id=0, wkc=WKC)
    wire = wrapper.wrap(plain, NOW)
    # op 10 << 3 | key 0; our session id; replay id 0x0f000001 (early negotiation), the
    # time; tag; AES-CTR(ack count 0 | message packet id 0); then WKc in the clear
    expect = independent_wrap(bytes([0x50]) + sid + b"\x00" + b"\0\0\0\0", 0x0F000001,
                              int(NOW)) + WKC
    assert wire == expect
    assert wire[9:17] == bytes.fromhex("0f000001") + struct.pack("!I", int(NOW))
    assert len(wire) == 9 + 8 + 32 + 5 + len(WKC)
    # the server side: WKc comes off the end by its length, Kc unwraps the rest
    head, wkc = w.split_wkc(wire)
    assert wkc == WKC
    server = TlsCrypt(KC, client=False)
    server._check_incoming = lambda data, minimum: memoryview(data)   # V3 is the caller's
    assert server.unwrap(head, NOW) == plain[:-len(WKC)]
    # the next packet: 0x0f000002, no WKc on anything but the two opcodes
    ack = w.build_control(w.P_ACK_V1, 0, sid, [0], bytes(8))
    assert wrapper.wrap(ack, NOW) == independent_wrap(ack, 0x0F000002, int(NOW))


def test_without_early_negotiation_ids_start_at_1():
    wrapper = TlsCryptV2(KC, WKC, early_negotiation=False)
    plain = w.build_control(w.P_CONTROL_HARD_RESET_CLIENT_V3, 0, bytes(8), packet_id=0,
                            wkc=WKC)
    assert wrapper.wrap(plain, NOW)[9:13] == b"\0\0\0\1"


def test_wrap_refuses_another_wkc():
    wrapper = TlsCryptV2(KC, WKC)
    plain = w.build_control(w.P_CONTROL_WKC_V1, 0, bytes(8), packet_id=1,
                            wkc=make_wkc(300))
    with pytest.raises(ValueError):
        wrapper.wrap(plain, NOW)


# -- the session against an in-process server ---------------------------------------------

class _ServerWrap(TlsCrypt):
    """The server's tls-crypt, which also unwraps the two WKc opcodes (WKc already
    taken off)."""

    def _check_incoming(self, data, minimum):
        return memoryview(data)


class V2Server(FakeServer):
    """FakeServer behind tls-crypt-v2, as a 2.6 server does it: WKc off the end of
    V3 and WKC_V1 (then treated as HARD_RESET_CLIENT_V2 / P_CONTROL_V1), Kc's
    tls-crypt in the server direction, the reset answered with ``flags`` (None: no TLV,
    the server of a client without early negotiation).  ``refuse_after_reset``: drop
    everything after the reset (a tls-crypt-v2-verify script that says no)."""

    def __init__(self, *a, flags=w.EARLY_NEG_FLAG_RESEND_WKC, kc=KC,
                 refuse_after_reset=False, **kw):
        super().__init__(*a, **kw)
        self.wrap = _ServerWrap(kc, client=False)
        self.flags = flags
        self.refuse_after_reset = refuse_after_reset
        self.seen = []     # (opcode, message packet id, wkc or None, replay id, payload size)
        self.answered = False

    def receive(self, datagram, now):
        opcode = datagram[0] >> 3
        wkc = None
        if opcode in w.WKC_OPCODES:
            datagram, wkc = w.split_wkc(datagram)
        replay_id = struct.unpack_from("!I", datagram, 9)[0]
        try:
            plain = self.wrap.unwrap(datagram, now)
        except ParseError:
            return []
        if wkc is not None:      # as 2.6 reads them: the V2 reset, a P_CONTROL_V1
            plain = bytes([((w.P_CONTROL_HARD_RESET_CLIENT_V2 if opcode
                             == w.P_CONTROL_HARD_RESET_CLIENT_V3 else w.P_CONTROL_V1) << 3)
                           | (plain[0] & 7)]) + plain[1:]
        p = w.parse_packet(plain)
        self.seen.append((opcode, p.packet_id, wkc, replay_id, len(p.payload)))
        if self.refuse_after_reset and self.answered:
            return []
        if opcode == w.P_CONTROL_HARD_RESET_CLIENT_V3:
            self.answered = True
        return super().receive(plain, now)

    def datagrams(self, now):
        out = []
        for d in super().datagrams(now):
            if d[0] >> 3 == w.P_CONTROL_HARD_RESET_SERVER_V2 and self.flags is not None:
                d += w.build_early_negotiation(self.flags)     # the reset's payload
            out.append(self.wrap.wrap(d, now))
        return out


def v2_settings(ca, **kw):
    return settings(ca, tls_crypt_v2=(KC, WKC), **kw)


def test_session_with_resend_wkc(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(v2_settings(ca), 0.0)
    server = V2Server(cert, key)
    events, _, _ = run(client, server)
    assert any(isinstance(e, Connected) for e in events), events
    first, second = server.seen[0][:4], server.seen[1][:4]
    assert first[:3] == (w.P_CONTROL_HARD_RESET_CLIENT_V3, 0, WKC)
    assert first[3] & w.EARLY_NEG_MASK == w.EARLY_NEG_START
    # message packet id 1 (the ClientHello) is P_CONTROL_WKC_V1 with WKc; nothing else
    assert second[:3] == (w.P_CONTROL_WKC_V1, 1, WKC)
    assert all(e[2] is None and e[0] not in w.WKC_OPCODES for e in server.seen[2:])
    assert server.control_messages == ["PUSH_REQUEST"]


def test_session_without_resend_wkc_sends_plain_control(pki):
    ca, cert, key = pki["lab-ca"]
    for flags in (None, 0):
        client = ClientSession(v2_settings(ca), 0.0)
        server = V2Server(cert, key, flags=flags)
        run(client, server)
        assert client.established
        assert [op for op, *_ in server.seen].count(w.P_CONTROL_HARD_RESET_CLIENT_V3) == 1
        assert all(op != w.P_CONTROL_WKC_V1 for op, *_ in server.seen)


def test_retransmissions_of_reset_and_wkc_v1_carry_wkc(pki):
    ca, cert, key = pki["lab-ca"]
    for seed in range(8):
        client = ClientSession(v2_settings(ca), 0.0)
        server = V2Server(cert, key)
        run(client, server, loss=0.3, seed=seed)
        assert client.established, seed
        for opcode, pid, wkc, _, _ in server.seen:
            assert (wkc is not None) == (pid in (0, 1) and opcode in w.WKC_OPCODES)
            if pid == 0 and opcode != w.P_ACK_V1:
                assert opcode == w.P_CONTROL_HARD_RESET_CLIENT_V3
            if pid == 1:
                assert opcode == w.P_CONTROL_WKC_V1


def test_first_fragment_with_wkc_stays_within_the_control_packet(pki):
    ca, cert, key = pki["lab-ca"]
    big = make_wkc(1024)
    client = ClientSession(settings(ca, tls_crypt_v2=(KC, big)), 0.0)
    server = V2Server(cert, key)
    run(client, server)
    assert client.established
    # 1060 bytes of TLS per control packet (1100 less tls-crypt's 40): 1024 bytes of WKc
    # leave 36 for the start of the ClientHello; the rest follows in P_CONTROL_V1
    sizes = {(op, pid): size for op, pid, _, _, size in server.seen}
    assert sizes[(w.P_CONTROL_WKC_V1, 1)] == 36
    assert sizes[(w.P_CONTROL_V1, 2)] > 36


def server_reset(server, client, payload: bytes) -> bytes:
    plain = w.build_control(w.P_CONTROL_HARD_RESET_SERVER_V2, 0, server.sid, [0],
                            client.session_id, 0, payload)
    return server.wrap.wrap(plain, 0.0)


@pytest.mark.parametrize("payload", ["00", "0001 0003 000100", "0001 0002 00",
                                     "0005 0009 00"])
def test_malformed_tlv_is_dropped_and_counted(pki, payload):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(v2_settings(ca), 0.0)
    server = V2Server(cert, key)
    client.datagrams_to_send(0.0)
    assert client.receive_datagram(server_reset(server, client,
                                                bytes.fromhex(payload)), 0.0) == []
    assert client.counters.dropped_malformed == 1
    assert client.state is State.HARD_RESET_SENT and client.remote_session_id is None
    assert client.next_event() is None
    # the real answer still works
    good = server_reset(server, client, w.build_early_negotiation(1))
    client.receive_datagram(good, 0.0)
    assert client.state is State.TLS_HANDSHAKE
    (hello, *_) = client.datagrams_to_send(0.0)
    assert hello[0] >> 3 == w.P_CONTROL_WKC_V1 and hello.endswith(WKC)


def test_resend_flag_ignored_without_tls_crypt_v2(pki):
    """A server asking for WKc from a tls-crypt client gets ordinary P_CONTROL_V1."""
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    client.datagrams_to_send(0.0)
    reset = w.build_control(w.P_CONTROL_HARD_RESET_SERVER_V2, 0, bytes(range(8)), [0],
                            client.session_id, 0, w.build_early_negotiation(1))
    client.receive_datagram(reset, 0.0)
    assert client.state is State.TLS_HANDSHAKE
    assert all(d[0] >> 3 == w.P_CONTROL_V1 for d in client.datagrams_to_send(0.0))


def test_wrong_key_no_answer_names_tls_crypt_v2(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(v2_settings(ca, hand_window=10.0), 0.0)
    server = V2Server(cert, key, kc=bytes(256))     # cannot unwrap: drops silently
    events, _, _ = run(client, server)
    (failed,) = [e for e in events if isinstance(e, Failed)]
    assert failed.stage == "unreachable"
    assert "tls-crypt-v2" in failed.message and "wrong key" in failed.message
    stage, why = client.connect_timeout()
    assert stage == "unreachable" and "with tls-crypt-v2" in why and "wrong key" in why


def test_refused_client_key_after_the_reset_is_explained(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(v2_settings(ca, hand_window=10.0), 0.0)
    server = V2Server(cert, key, refuse_after_reset=True)
    _, _, now = run(client, server, until=lambda c: c.finished, limit=5.0)
    stage, why = client.connect_timeout()
    assert stage == "tls" and "tls-crypt-v2-verify" in why, why
    events, _, _ = run(client, server, start=now)
    (failed,) = [e for e in events if isinstance(e, Failed)]
    assert failed.stage == "tls" and "tls-crypt-v2-verify" in failed.message
    assert "refuses a client key" in failed.message


@hsettings(derandomize=True, database=None, max_examples=200, deadline=None)
@given(payload=st.binary(max_size=40) | st.lists(
    st.tuples(st.integers(0, 3), st.binary(max_size=6)), max_size=4).map(
        lambda tlvs: b"".join(struct.pack("!HH", t, len(v)) + v for t, v in tlvs)))
def test_random_reset_payloads_are_taken_or_dropped(payload):
    client = ClientSession(settings(CA_PEM.encode(), tls_crypt_v2=(KC, WKC)), 0.0)
    wrap = _ServerWrap(KC, client=False)
    client.datagrams_to_send(0.0)
    plain = w.build_control(w.P_CONTROL_HARD_RESET_SERVER_V2, 0, bytes(8), [0],
                            client.session_id, 0, payload)
    client.receive_datagram(wrap.wrap(plain, 0.0), 0.0)
    try:
        flags = w.parse_early_negotiation(payload)
    except ParseError:
        assert client.counters.dropped_malformed == 1
        assert client.state is State.HARD_RESET_SENT
        return
    assert client.state is State.TLS_HANDSHAKE
    (first, *_) = client.datagrams_to_send(0.0)
    resend = bool(flags & w.EARLY_NEG_FLAG_RESEND_WKC)
    assert (first[0] >> 3 == w.P_CONTROL_WKC_V1) == resend
    assert first.endswith(WKC) == resend
