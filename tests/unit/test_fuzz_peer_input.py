"""Random bytes into every handler of peer input, at the session and handler level (the
wire parsers have their own fuzz tests in test_wire_*.py, test_wrap.py, test_static.py,
test_esp_wire.py, test_ipsec_session.py): nothing but erebus's own error types may
escape, and what a peer can make us allocate stays bounded.

Deterministic: ``derandomize=True`` and no example database, so a run is the same
every time; ``max_examples`` keeps the whole file well under a minute.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from unittest import mock

import dns.message
import dns.rrset
import lz4.block
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from lzallright import LZOCompressor

from erebus.crypto.aead import AEAD_CIPHERS
from erebus.errors import ErebusError
from erebus.runtime.expose.dns import ResolveError, VpnResolver
from erebus.runtime.expose import http_proxy
from erebus.runtime.expose.http_proxy import HttpProxy
from erebus.ipsec.esp import EspSession, SecurityAssociation
from erebus.netstack.stack import NetStack
from erebus.openvpn.compress import MAX_DECOMPRESSED
from erebus.openvpn.data import CBC_CIPHERS, DataError, DataKey
from erebus.openvpn.reliable import ReliableReceive, ReliableSend
from erebus.openvpn.session import ClientSession, State
from erebus.wire import openvpn as w
from erebus.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4
from erebus.wire.tcp import ACK, SYN, build_tcp
from tests.unit import odd_certs as ODD
from tests.unit.test_session import PUSH, FakeServer, pki, run, settings as session_settings
from tests.unit.waiting import run_timers

__all__ = ["pki"]           # the fixture, shared with test_session.py

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=200,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
FEW = settings(FUZZ, max_examples=60)

KEY = bytes(range(256))
OPCODES = sorted(w.CONTROL_OPCODES | {w.P_DATA_V1, w.P_DATA_V2})


def only_our_errors(call, *args):
    """Call; an ErebusError is a refusal, anything else escaping is a bug."""
    try:
        return call(*args)
    except ErebusError:
        return None


def flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    for pos, mask in flips:
        b[pos % len(b)] ^= mask
    return bytes(b)


flips = st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), min_size=1, max_size=3)


def first_byte(opcode: int, key_id: int) -> bytes:
    return bytes(((opcode << 3) | key_id,))


# -- OpenVPN: the client session in each state ------------------------------------------

def control_like(sid: bytes, our_sid: bytes):
    """Control packets of the server's session: random acks, packet ids and payloads."""
    return st.builds(
        lambda op, key_id, acks, pid, payload: w.build_control(
            op, key_id, sid, acks, our_sid if acks else None,
            None if op == w.P_ACK_V1 else pid, b"" if op == w.P_ACK_V1 else payload)
        if op != w.P_ACK_V1 or acks else b"",
        st.sampled_from(sorted(w.CONTROL_OPCODES - {w.P_CONTROL_WKC_V1,
                                                    w.P_CONTROL_HARD_RESET_CLIENT_V3})),
        st.integers(0, 7), st.lists(st.integers(0, 2 ** 32 - 1), max_size=4),
        st.integers(0, 2 ** 32 - 1) | st.integers(0, 8), st.binary(max_size=300))


def opcode_prefixed():
    return st.builds(lambda op, k, rest: first_byte(op, k) + rest, st.sampled_from(OPCODES),
                     st.integers(0, 7), st.binary(max_size=200))


def feed(session, datagrams, now=1.0):
    out = []
    for d in datagrams:
        out += session.receive_datagram(d, now)
        session.datagrams_to_send(now)
        while session.next_event() is not None:
            pass
    session.handle_timer(now + 100)
    session.get_timer()
    return out


@pytest.mark.parametrize("wrap", [None, "tls-auth", "tls-crypt", "tls-crypt-v2"])
@FUZZ
@given(data=st.lists(st.binary(max_size=300) | opcode_prefixed(), max_size=8))
def test_session_before_the_handshake(pki, wrap, data):
    ca, _, _ = pki["lab-ca"]
    kw = {"tls_auth": (KEY, 1, "SHA256")} if wrap == "tls-auth" else \
        {"tls_crypt": KEY} if wrap == "tls-crypt" else \
        {"tls_crypt_v2": (KEY, bytes(297) + b"\x01\x2b")} if wrap == "tls-crypt-v2" else {}
    s = ClientSession(session_settings(ca, **kw), 0.0)
    s.datagrams_to_send(0.0)
    assert feed(s, data) == []
    if wrap:           # nothing forged gets past the HMAC: still waiting for the server
        assert s.remote_session_id is None
        c = s.counters           # and every datagram was dropped and counted
        assert c.dropped_malformed + c.dropped_replay + c.dropped_session \
            + c.dropped_before_established == len(data), c


@FEW
@given(st.data())
def test_session_during_the_tls_handshake(pki, data):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(session_settings(ca), 0.0)
    server = FakeServer(cert, key)
    for _ in range(10):             # one exchange at a time, until the TLS handshake
        for d in client.datagrams_to_send(0.0):
            server.receive(d, 0.0)
        for d in server.datagrams(0.0):
            if client.state is not State.TLS_HANDSHAKE:
                client.receive_datagram(d, 0.0)
        if client.state is State.TLS_HANDSHAKE:
            break
    assert client.state is State.TLS_HANDSHAKE
    datagrams = data.draw(st.lists(control_like(server.sid, client.session_id) |
                                   opcode_prefixed(), min_size=1, max_size=6))
    feed(client, datagrams)
    # garbage TLS records end the handshake as a "tls" failure, nothing else
    assert client.state in (State.TLS_HANDSHAKE, State.FAILED, State.KEY_EXCHANGE)


def established(pki, push=PUSH):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(session_settings(ca), 0.0)
    server = FakeServer(cert, key, push=push)
    run(client, server)
    assert client.established
    return client, server


@FUZZ
@given(st.data())
def test_session_established(pki, data):
    client, server = established(pki)
    real = server.data_key.encrypt(b"E" + bytes(39))
    header = real[:4]
    datagrams = data.draw(st.lists(
        st.binary(max_size=300) | opcode_prefixed()
        | st.binary(max_size=300).map(lambda b: header + b)            # our key id, peer id
        | flips.map(lambda f: flip(real, f))                           # a corrupted packet
        | st.just(real)                                                # a replay
        | control_like(server.sid, client.session_id), max_size=8))
    assert all(p == b"E" + bytes(39) for p in feed(client, datagrams))
    if client.established:             # the session survives it all
        assert client.receive_datagram(server.data_key.encrypt(b"E1" + bytes(38)), 2.0) \
            == [b"E1" + bytes(38)]


LZ4_BOMB = b"\x50\x01" + lz4.block.compress(bytes(1 << 20), store_size=False)
LZO_BOMB = b"\x66" + LZOCompressor().compress(bytes(1 << 20))


@pytest.mark.parametrize("option, bomb", [("compress lz4-v2", LZ4_BOMB),
                                          ("comp-lzo", LZO_BOMB)])
def test_compression_bombs_are_dropped_not_inflated(pki, option, bomb):
    """1 MiB of zeros compressed into one data packet: dropped at MAX_DECOMPRESSED."""
    client, server = established(pki, push=PUSH + "," + option)
    before = client.counters.dropped_malformed
    assert client.receive_datagram(server.data_key.encrypt(bomb), 1.0) == []
    assert client.counters.dropped_malformed == before + 1
    # a packet that compressed well, not a bomb, still comes through
    packet = b"E" + bytes(600)
    small = b"\x50\x01" + lz4.block.compress(packet, store_size=False) \
        if option.startswith("compress") else b"\x66" + LZOCompressor().compress(packet)
    assert len(small) < 100
    assert client.receive_datagram(server.data_key.encrypt(small), 1.0) == [packet]


@pytest.mark.parametrize("option", ["compress lz4-v2", "compress lz4", "comp-lzo"])
@FEW
@given(payload=st.binary(max_size=1500), prefix=st.sampled_from([b"\x50\x01", b"\x66",
                                                                  b"\x69", b"\xfa", b"\xfb"]))
def test_compressed_garbage_through_the_session(pki, option, payload, prefix):
    client, server = established(pki, push=PUSH + "," + option)
    for p in client.receive_datagram(server.data_key.encrypt(prefix + payload), 1.0):
        assert len(p) <= MAX_DECOMPRESSED


# -- the control channel's reliable layer -------------------------------------------------

@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2 ** 32 - 1) | st.integers(0, 20),
                          st.sampled_from(OPCODES), st.binary(max_size=8)), max_size=200),
       st.lists(st.integers(0, 2 ** 32 - 1), max_size=20))
def test_reliable_layer_stays_bounded(packets, acks):
    recv = ReliableReceive()
    delivered = []
    for pid, op, payload in packets:
        recv.receive(pid, op, payload)
        assert len(recv._buffer) <= recv.window
        delivered += [p for p, _, _ in recv.ready()]
        if len(recv._acks) > 64:
            recv.take_acks(w.MAX_ACKS)
    assert delivered == list(range(len(delivered)))        # in order, once each
    send = ReliableSend()
    send.push(w.P_CONTROL_V1, b"x")
    assert send.due(0.0)
    for pid in acks:
        send.ack(pid)
    assert send.idle == (0 in acks)


# -- data channel open, every cipher --------------------------------------------------------

CIPHERS = [(c, "SHA1") for c in AEAD_CIPHERS] + \
    [(c, a) for c in CBC_CIPHERS for a in ("SHA1", "SHA256", "SHA512")] + \
    [("none", "SHA256"), ("AES-256-CBC", "none")]


@pytest.mark.parametrize("cipher, auth", CIPHERS)
@FEW
@given(body=st.binary(max_size=200), fl=flips, v2=st.booleans())
def test_data_channel_open(cipher, auth, body, fl, v2):
    block = bytes(range(256))
    ours = DataKey(0, cipher, block, auth=auth, peer_id=3 if v2 else None)
    theirs = DataKey(0, cipher, block[128:] + block[:128], auth=auth,
                     peer_id=3 if v2 else None)
    real = theirs.encrypt(b"E" + bytes(39))
    for datagram in (ours.header + body, flip(real, fl), real):
        packet = only_our_errors(w.parse_packet, datagram)
        if not isinstance(packet, w.DataPacket):
            continue
        try:
            out = ours.decrypt(packet.body, packet.header)
        except DataError:
            continue
        # only the real packet opens (cipher none with auth none takes anything; the
        # P_DATA_V1 opcode byte is not authenticated: the session checks the key id)
        assert bytes(packet.body) == bytes(w.parse_packet(real).body) or \
            cipher == "none" or auth == "none", datagram.hex()
        assert isinstance(out, bytes)


def test_cbc_with_auth_none_round_trips():
    """Found by the test above: AES-CBC with ``auth none`` raised AttributeError (an
    HMAC with no digest) for every packet, both ways, instead of carrying it."""
    block = bytes(range(256))
    ours = DataKey(0, "AES-256-CBC", block, auth="none")
    theirs = DataKey(0, "AES-256-CBC", block[128:] + block[:128], auth="none")
    packet = w.parse_packet(theirs.encrypt(b"E" + bytes(39)))
    assert ours.decrypt(packet.body, packet.header) == b"E" + bytes(39)
    with pytest.raises(DataError):
        ours.decrypt(packet.body, packet.header)                  # a replay
    with pytest.raises(DataError):
        ours.decrypt(memoryview(bytes(packet.body)[:-1]), packet.header)    # cut


# -- ESP session --------------------------------------------------------------------------

GCM, CBC, HMAC = bytes.fromhex("ab" * 36), bytes.fromhex("cd" * 32), bytes.fromhex("ef" * 32)


def esp_pair():
    client = EspSession(SecurityAssociation(0x1001, "aes256gcm16", GCM),
                        SecurityAssociation(0x2002, "aes256-sha256", CBC, HMAC),
                        local_ip="198.19.11.2", remote_ts=["198.19.20.0/24"], now=0,
                        keepalive_interval=None)
    peer = EspSession(SecurityAssociation(0x2002, "aes256-sha256", CBC, HMAC),
                      SecurityAssociation(0x1001, "aes256gcm16", GCM),
                      local_ip="198.19.20.5", remote_ts=["198.19.11.2/32"], now=0,
                      keepalive_interval=None)
    return client, peer


@FUZZ
@given(st.data())
def test_esp_session_receive(data):
    client, peer = esp_pair()
    inner = build_ipv4("198.19.20.5", "198.19.11.2", PROTO_ICMP, b"pong")
    real = peer.send_packet(inner, 0)
    datagrams = data.draw(st.lists(
        st.binary(max_size=300)
        | st.binary(max_size=300).map(lambda b: real[:8] + b)        # our SPI and a seq
        | flips.map(lambda f: flip(real, f)) | st.just(real), max_size=8))
    for d in datagrams:
        got = client.receive_datagram(d, 1.0)
        assert got is None or got == inner
        while client.next_event() is not None:
            pass
    c = client.counters
    assert c.packets_in <= 1 and c.packets_in + c.dropped_in + c.keepalives_in \
        + c.non_esp_in == c.datagrams_in == len(datagrams)


# -- IKE initiator (a smoke test: test_ike_*.py fuzz the IKE messages themselves) -----------

@pytest.mark.parametrize("established", [False, True])
@FEW
@given(datagrams=st.lists(st.binary(max_size=300), max_size=5), spi_prefixed=st.booleans())
def test_ike_initiator_receive(established, datagrams, spi_prefixed):
    from tests.unit.test_ike_initiator import NON_ESP_MARKER, FakeResponder, _new, connect
    ini = _new()
    if established:
        connect(ini, FakeResponder())
        prefix = NON_ESP_MARKER + ini.spi_i + ini.spi_r     # our IKE SA's header
    else:
        (init,) = ini.datagrams_to_send(0.0)
        prefix = init[:8]
    for d in datagrams:
        if spi_prefixed:
            d = prefix + d
        only_our_errors(ini.receive_datagram, d, 0.5)
        ini.datagrams_to_send(0.5)
        while ini.next_event() is not None:
            pass
    only_our_errors(ini.handle_timer, 100.0)


# -- the network stack --------------------------------------------------------------------

ME, PEER = "198.19.1.2", "198.19.20.5"


def ip_packets(our_port: int, iss: int):
    """IPv4 packets to us: TCP segments to our listener and our connection (with the
    right ack sometimes), UDP, ICMP, other protocols, fragments, raw and flipped bytes."""
    tcp = st.builds(lambda sp, dp, seq, ack, flags, win, payload: build_tcp(
        PEER, ME, sp, dp, seq, ack, flags, win, payload), st.sampled_from([80, 443]),
        st.sampled_from([80, our_port, 7]), st.integers(0, 2 ** 32 - 1),
        st.sampled_from([iss + 1, iss]) | st.integers(0, 2 ** 32 - 1),
        st.sampled_from([SYN | ACK, ACK, SYN]) | st.integers(0, 255),
        st.integers(0, 65535), st.binary(max_size=100))
    payload = tcp.map(lambda seg: (PROTO_TCP, seg)) | st.tuples(
        st.sampled_from([PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47]), st.binary(max_size=200))
    whole = st.builds(lambda pp, mf, off, ident: build_ipv4(PEER, ME, pp[0], pp[1], mf=mf,
                                                            frag_offset=off, ident=ident,
                                                            df=False),
                      payload, st.booleans(), st.sampled_from([0, 0, 8, 64]),
                      st.integers(0, 3))
    return whole | st.binary(max_size=200) | st.tuples(whole, flips).map(lambda t: flip(*t))


@FUZZ
@given(st.data())
def test_netstack_receive(data):
    stack = NetStack(ME, rng=lambda n: bytes(n))
    stack.listen(80, backlog=4)
    conn = stack.connect(PEER, 80, 0.0)
    assert stack.output(0.0)                                    # the SYN
    now = 0.0
    packets = data.draw(st.lists(ip_packets(conn.local_port, conn.iss), max_size=12))
    for p in packets:
        now += 0.01
        stack.receive(p, now)
        assert len(stack.output(now)) <= 64
        stack.handle_timer(now)
    stack.handle_timer(now + 1000)
    stack.output(now + 1000)
    assert len(stack.conns) <= 1 + 4 + 1          # ours, the backlog, one in the making
    assert stack.counters.packets_in == len(packets)


def test_a_syn_flood_grows_no_table():
    """Found while fuzzing: every SYN to a listener made a SYN_RECEIVED connection, with
    no bound (the backlog only counted established ones): 20000 SYNs, 20000 entries."""
    stack = NetStack(ME, rng=lambda n: bytes(n))
    listener = stack.listen(80, backlog=16)
    for i in range(2000):
        stack.receive(build_ipv4(PEER, ME, PROTO_TCP, build_tcp(
            PEER, ME, 1024 + i, 80, i, 0, SYN, 1000)), 0.0)
    assert len(stack.output(0.0)) == 16                       # SYN-ACKs
    assert len(stack.conns) == 16 and stack.counters.syn_dropped == 2000 - 16
    now = run_timers(stack)                     # the half-open ones retransmit, give up
    assert not stack.conns and not listener.half_open
    stack.receive(build_ipv4(PEER, ME, PROTO_TCP, build_tcp(
        PEER, ME, 5000, 80, 7, 0, SYN, 1000)), now + 1)          # room again
    assert len(stack.conns) == 1


# -- DNS answers ------------------------------------------------------------------------

class GarbageDns:
    def __init__(self, make):
        self.make = make

    async def udp_exchange(self, payload, host, port, *, timeout, accept=None):
        query = dns.message.from_wire(payload)
        good = dns.message.make_response(query)
        good.answer.append(dns.rrset.from_text("web.lab.test.", 60, "IN", "A", "198.18.2.2"))
        return self.make(payload, good.to_wire())

    async def open_connection(self, host, port, *, timeout):
        raise ConnectionRefusedError("no TCP in this test")


@FUZZ
@given(rest=st.binary(max_size=300), fl=flips, kind=st.sampled_from(["random", "flipped"]))
def test_dns_answers(rest, fl, kind):
    def make(query, good):
        return query[:2] + rest if kind == "random" else good[:2] + flip(good[2:], fl)

    async def go():
        try:
            addresses = await VpnResolver(GarbageDns(make), ["198.18.2.53"],
                                          attempts=1).resolve_all("web.lab.test")
        except ResolveError:
            return
        assert addresses and all(a.count(".") == 3 for a in addresses)
    asyncio.run(go())


# -- the HTTP proxy's parser, random client bytes ------------------------------------------

class Writer:
    def __init__(self):
        self.out = bytearray()
        self.closed = False

    def write(self, data):
        self.out += data

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5555) if name == "peername" else default


class Refusing:
    async def dial(self, host, port, factory):
        raise ConnectionRefusedError("refused")


REQUEST_LIKE = st.builds(
    lambda method, target, headers, body: method + b" " + target + b" HTTP/1.1\r\n"
    + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body,
    st.sampled_from([b"GET", b"CONNECT", b"POST", b"\x00"]),
    st.sampled_from([b"http://web.lab.test/", b"web.lab.test:443", b"/", b"http://[::1"]),
    st.lists(st.binary(max_size=40), max_size=4), st.binary(max_size=60))


@FUZZ
@given(st.binary(max_size=400) | REQUEST_LIKE)
def test_http_proxy_random_client_bytes(data):
    async def go():
        proxy = HttpProxy(Refusing(), "127.0.0.1", 0)
        writer = Writer()
        side = http_proxy._Side()
        side.connection_made(writer)
        side.data_received(data)
        side.eof_received()
        await asyncio.wait_for(proxy._client(side), 5)
        assert writer.closed and len(writer.out) < 4096
    with mock.patch.object(logging.getLogger("erebus"), "exception",
                           side_effect=AssertionError("internal error logged")):
        asyncio.run(go())


@pytest.mark.parametrize("kind", ODD.KINDS)
def test_a_server_certificate_cryptography_cannot_read_fails_the_session(pki, kind,
                                                                         tmp_path):
    """Through receive_datagram: the session fails at stage certificate, naming the
    certificate; nothing escapes (pyOpenSSL re-raises what a verify callback raises)."""
    from erebus.openvpn.session import Failed
    from tests.profiles import pki as P
    ca_pki = P.Pki()
    key, der, cn = ODD.odd_server(kind, ca_pki.ca_key, ca_pki.ca)
    (tmp_path / "s.crt").write_text(ssl.DER_cert_to_PEM_cert(der))
    (tmp_path / "s.key").write_text(P.key_pem(key))
    client = ClientSession(session_settings(ca_pki.ca_pem.encode()), 0.0)
    events, _, now = run(client, FakeServer(str(tmp_path / "s.crt"), str(tmp_path / "s.key")))
    failed = [e for e in events if isinstance(e, Failed)]
    assert [f.stage for f in failed] == ["certificate"] and client.state is State.FAILED
    assert f"CN={cn}' (issued by 'O=erebus test-only, CN=Test-Only CA') cannot be " \
        f"checked: {ODD.CRYPTOGRAPHY_SAYS[kind]}" in failed[0].message
    assert now < 5.0
