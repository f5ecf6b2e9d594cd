"""The client session state machine, driven in virtual time against a small in-process
server (a mock: the acceptance tests run against stock OpenVPN in tests/interop)."""

from __future__ import annotations

import datetime
import os
import random
import ssl
import struct
from types import SimpleNamespace

import pytest
from OpenSSL import SSL
from cryptography import x509
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from erebus.crypto.prf import openvpn_key_block
from erebus.openvpn import keymethod
from erebus.openvpn.data import PACKET_ID_WRAP_TRIGGER, DataKey
from erebus.openvpn.reliable import ReliableReceive, ReliableSend
from erebus.openvpn.session import ClientSession, Closed, Connected, Failed, SessionSettings
from erebus.openvpn.tls import TlsContext, TlsSettings
from erebus.wire import openvpn as w

PUSH = ("PUSH_REPLY,route 198.18.2.0 255.255.255.0,route-gateway 198.19.1.1,topology subnet,"
        "ping 10,ping-restart 60,dhcp-option DNS 198.18.2.2,ifconfig 198.19.1.2 255.255.255.0,"
        "peer-id 3,cipher AES-256-GCM,protocol-flags cc-exit")


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, key, issuer_key, *, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                          False), critical=True)
    if server:
        b = (b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
             .add_extension(x509.KeyUsage(True, False, True, False, False, False, False,
                                          False, False), critical=True))
    return b.sign(issuer_key, hashes.SHA256())


def _pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    out = {}
    for ca_name in ("lab-ca", "rogue-ca"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert(ca_name, ca_name, ca_key, ca_key, ca=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"server-of-{ca_name}", ca_name, key, ca_key, server=True)
        (d / f"{ca_name}.crt").write_bytes(_pem(cert))
        (d / f"{ca_name}.key").write_bytes(_pem(key))
        out[ca_name] = (_pem(ca), str(d / f"{ca_name}.crt"), str(d / f"{ca_name}.key"))
    return out


class _ServerKey:
    """One key id on the server side: its reliable channel and TLS session."""

    def __init__(self, ctx, key_id):
        self.key_id = key_id
        self.tls_in, self.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = self._tls(ctx)
        self.send = ReliableSend()
        self.recv = ReliableReceive()
        self.handshaken = False
        self.app = b""
        self.key_source = None

    def _tls(self, ctx):
        return ctx.wrap_bio(self.tls_in, self.tls_out, server_side=True)


class _OpenSSLObject:
    """pyOpenSSL's memory-BIO server connection behind ssl.SSLObject's few calls (the
    stdlib cannot export keying material)."""

    def __init__(self, ctx, tls_in, tls_out):
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_accept_state()
        self.tls_in, self.tls_out = tls_in, tls_out

    def _move(self):
        data = self.tls_in.read()
        if data:
            self.conn.bio_write(data)

    def _flush(self):
        try:
            while chunk := self.conn.bio_read(65536):
                self.tls_out.write(chunk)
        except SSL.WantReadError:
            pass

    def do_handshake(self):
        self._move()
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            raise ssl.SSLWantReadError from None
        finally:
            self._flush()

    def read(self, n):
        self._move()
        try:
            return self.conn.recv(n)
        except SSL.WantReadError:
            raise ssl.SSLWantReadError from None
        finally:
            self._flush()

    def write(self, data):
        self.conn.sendall(data)
        self._flush()

    def export(self, label: bytes, length: int) -> bytes:
        return self.conn.export_keying_material(label, length, None)


class _EkmServerKey(_ServerKey):
    def _tls(self, ctx):
        return _OpenSSLObject(ctx, self.tls_in, self.tls_out)


class FakeServer:
    """Just enough of an OpenVPN 2.6 server for one client session: the hard reset,
    TLS and key method 2 per key id (so a soft reset renegotiates), PUSH_REPLY, and a
    data channel with ``cipher``/``auth``.  With ``ekm`` the data keys come from TLS
    keying material export (key-derivation tls-ekm), through pyOpenSSL."""

    def __init__(self, cert_file, key_file, push=PUSH, *, cipher="AES-256-GCM", auth="SHA1",
                 ekm=False):
        self.ekm = ekm
        if ekm:
            self.ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
            self.ctx.use_certificate_chain_file(str(cert_file))
            self.ctx.use_privatekey_file(str(key_file))
            self._key = _EkmServerKey
        else:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert_file, key_file)
            self._key = _ServerKey
        self.sid = os.urandom(8)
        self.client_sid = None
        self.keys = {0: self._key(self.ctx, 0)}
        self.push = push
        self.cipher, self.auth = cipher, auth
        self.data_keys = {}
        self.control_messages = []
        self.soft_resets = []             # key ids the client renegotiated
        self.credentials = []             # (username, password) of each key method
        self.now = 0.0

    @property
    def data_key(self):
        return self.data_keys[max(self.data_keys)] if self.data_keys else None

    def receive(self, datagram, now):
        self.now = now
        p = w.parse_packet(datagram)
        if isinstance(p, w.DataPacket):
            key = self.data_keys.get(p.key_id)
            return [key.decrypt(p.body)] if key else []
        if p.opcode == w.P_CONTROL_HARD_RESET_CLIENT_V2 and self.client_sid is None:
            self.client_sid = p.session_id
            self.keys[0].send.push(w.P_CONTROL_HARD_RESET_SERVER_V2, b"")
        if p.opcode == w.P_CONTROL_SOFT_RESET_V1 and p.key_id not in self.keys:
            self.keys[p.key_id] = self._key(self.ctx, p.key_id)
            self.keys[p.key_id].send.push(w.P_CONTROL_SOFT_RESET_V1, b"")
            self.soft_resets.append(p.key_id)
        k = self.keys.get(p.key_id)
        if k is None:
            return []
        for pid in p.acks:
            k.send.ack(pid)
        if p.packet_id is not None:
            k.recv.receive(p.packet_id, p.opcode, p.payload)
        for _pid, opcode, payload in k.recv.ready():
            if opcode == w.P_CONTROL_V1:
                k.tls_in.write(payload)
                self._pump(k)
        return []

    def _pump(self, k):
        if not k.handshaken:
            try:
                k.tls.do_handshake()
                k.handshaken = True
            except ssl.SSLWantReadError:
                pass
        if k.handshaken:
            while True:
                try:
                    chunk = k.tls.read(65536)
                except ssl.SSLWantReadError:
                    break
                if not chunk:
                    break
                k.app += chunk
            self._app(k)
        out = k.tls_out.read()
        for i in range(0, len(out), 1000):
            k.send.push(w.P_CONTROL_V1, out[i:i + 1000])

    def _app(self, k):
        if k.key_source is None and len(k.app) >= 5 + 48 + 64:
            pre, r1, r2 = k.app[5:53], k.app[53:85], k.app[85:117]
            k.key_source = (pre, r1, r2)
            self.peer_info = k.app[117:].decode("latin-1")      # options, peer info
            strings, pos = [], 117
            for _ in range(3):                      # options string, username, password
                text, pos = keymethod.read_string(memoryview(k.app), pos)
                strings.append(text)
            self.credentials.append(tuple(strings[1:]))
            k.app = b""     # the rest of the key method message (strings) is ignored
            s1, s2 = os.urandom(32), os.urandom(32)
            k.tls.write(b"\0\0\0\0\x02" + s1 + s2 + keymethod.write_string("V4,dev-type tun"))
            block = k.tls.export(b"EXPORTER-OpenVPN-datakeys", 256) if self.ekm else \
                openvpn_key_block(pre, r1, s1, r2, s2, self.client_sid, self.sid)
            self.data_keys[k.key_id] = DataKey(k.key_id, self.cipher,
                                               block[128:] + block[:128],
                                               auth=self.auth, peer_id=3)
            return
        while b"\0" in k.app:
            msg, _, k.app = k.app.partition(b"\0")
            self.control_messages.append(msg.decode())
            if callable(self.push):                 # a test's own server: (message, now)
                for reply in self.push(msg.decode(), self.now):
                    k.tls.write(reply.encode() + b"\0")
            elif msg == b"PUSH_REQUEST":
                for reply in (self.push if isinstance(self.push, list) else [self.push]):
                    k.tls.write(reply.encode() + b"\0")

    def datagrams(self, now):
        out = []
        for k in self.keys.values():
            for pid, opcode, payload in k.send.due(now):
                acks = k.recv.take_acks(4)
                out.append(w.build_control(opcode, k.key_id, self.sid, acks,
                                           self.client_sid if acks else None, pid, payload))
            while k.recv.has_acks:
                out.append(w.build_control(w.P_ACK_V1, k.key_id, self.sid,
                                           k.recv.take_acks(8), self.client_sid))
        return out

    def timer(self):
        deadlines = [t for k in self.keys.values()
                     if (t := k.send.next_deadline()) is not None]
        return min(deadlines) if deadlines else None


def run(client, server, *, loss=0.0, seed=1, until=lambda c: c.finished or c.established,
        limit=120.0, start=0.0):
    """Move datagrams between client and server in virtual time; drop `loss` of them."""
    rng = random.Random(seed)
    now = start
    events = []
    stats = {"sent": 0, "dropped": 0}
    while now < limit:
        for _ in range(50):
            moved = False
            for d in client.datagrams_to_send(now):
                stats["sent"] += 1
                if rng.random() < loss:
                    stats["dropped"] += 1
                    continue
                server.receive(d, now)
                moved = True
            for d in server.datagrams(now):
                stats["sent"] += 1
                if rng.random() < loss:
                    stats["dropped"] += 1
                    continue
                client.receive_datagram(d, now)
                moved = True
            while (e := client.next_event()) is not None:
                events.append(e)
            if not moved:
                break
        if until(client):
            return events, stats, now
        deadlines = [t for t in (client.get_timer(), server.timer()) if t is not None]
        if not deadlines:
            break
        now = max(now, min(deadlines))
        client.handle_timer(now)
    return events, stats, now


def settings(ca, **kw):
    return SessionSettings(tls=TlsSettings(ca=ca, remote_cert_tls="server"), **kw)


def test_session_establishes_and_carries_data(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key)
    events, _, _ = run(client, server)
    connected = [e for e in events if isinstance(e, Connected)]
    assert connected and connected[0].info.cipher == "AES-256-GCM"
    assert connected[0].options.virtual_ip == "198.19.1.2"
    assert server.control_messages == ["PUSH_REQUEST"]
    # data both ways, packet ids from 1, the server's header carries peer id 3
    datagram = client.send_packet(b"E" + bytes(27), 1.0)
    assert datagram[:4] == bytes((0x48, 0, 0, 3)) and datagram[4:8] == b"\0\0\0\1"
    assert server.receive(datagram, 1.0) == [b"E" + bytes(27)]
    reply = server.data_key.encrypt(b"reply packet")
    assert client.receive_datagram(reply, 1.0) == [b"reply packet"]
    assert client.receive_datagram(reply, 1.0) == []        # replayed: dropped, counted
    assert client.counters.dropped_replay == 1


def test_data_fast_path_and_the_long_way_agree(pki):
    """The current key's own header takes the fast path (bytes); a memoryview, another
    peer id or a tampered packet go the long way or are dropped, counted the same."""
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key)
    run(client, server)
    c = client.counters
    one, two = (server.data_key.encrypt(b"packet %d" % i) for i in (1, 2))
    assert one[:4] == client.data_key.header
    assert client.receive_datagram(one, 1.0) == [b"packet 1"]                # fast
    assert client.receive_datagram(memoryview(two), 1.0) == [b"packet 2"]    # long way
    assert client.receive_datagram(two, 1.0) == [] and c.dropped_replay == 1
    assert client.receive_datagram(memoryview(one), 1.0) == [] and c.dropped_replay == 2
    three = server.data_key.encrypt(b"packet 3")
    tampered = three[:-1] + bytes((three[-1] ^ 1,))
    assert client.receive_datagram(tampered, 1.0) == [] and c.dropped_data_auth == 1
    other_peer = three[:3] + bytes((three[3] ^ 1,)) + three[4:]      # authenticated AAD
    assert client.receive_datagram(other_peer, 1.0) == [] and c.dropped_data_auth == 2
    assert client.receive_datagram(three, 1.0) == [b"packet 3"]


def test_handshake_completes_with_20_percent_loss(pki):
    ca, cert, key = pki["lab-ca"]
    dropped = retransmits = 0
    for seed in range(20):
        client = ClientSession(settings(ca), 0.0)
        server = FakeServer(cert, key)
        events, stats, now = run(client, server, loss=0.2, seed=seed)
        assert client.established, (seed, events, stats)
        dropped += stats["dropped"]
        retransmits += client.counters.control_retransmits
    assert dropped >= 20 and retransmits > 0, (dropped, retransmits)


def test_foreign_ca_is_refused_naming_the_certificate(pki):
    ca, _, _ = pki["lab-ca"]
    _, cert, key = pki["rogue-ca"]
    client = ClientSession(settings(ca), 0.0)
    events, _, _ = run(client, FakeServer(cert, key))
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed and failed[0].stage == "certificate"
    assert "server-of-rogue-ca" in failed[0].message
    assert "rogue-ca" in failed[0].message


def test_no_answer_is_reported_as_unreachable(pki):
    client = ClientSession(settings(pki["lab-ca"][0], hand_window=10.0), 0.0)

    class BlackHole:
        def receive(self, d, now):
            return []

        def datagrams(self, now):
            return []

        def timer(self):
            return None

    events, stats, now = run(client, BlackHole())
    assert [e.stage for e in events if isinstance(e, Failed)] == ["unreachable"]
    assert stats["sent"] >= 3          # the hard reset was resent while waiting
    assert now == pytest.approx(10.0)


def test_auth_failed_is_reported_with_the_reason(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key, push="AUTH_FAILED,bad password for alice")
    events, _, _ = run(client, server)
    failed = [e for e in events if isinstance(e, Failed)]
    assert [(f.stage, f.message) for f in failed] == [
        ("auth", "authentication failed: bad password for alice")]


def test_no_data_before_established_and_exit_notification(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    with pytest.raises(Exception, match="established"):
        client.send_packet(b"x")
    server = FakeServer(cert, key)
    run(client, server)
    client.close(5.0)
    events, _, _ = run(client, server, until=lambda c: c.finished)
    assert server.control_messages[-1] == "EXIT"
    assert any(isinstance(e, Closed) for e in events)


def test_keepalive_and_ping_restart_follow_the_pushed_timers(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key)
    _, _, t0 = run(client, server)
    client.datagrams_to_send(t0)
    assert client.get_timer() == pytest.approx(t0 + 10)      # ping 10
    client.handle_timer(t0 + 10)
    out = client.datagrams_to_send(t0 + 10)
    assert len(out) == 1 and server.receive(out[0], t0 + 10) == [
        bytes.fromhex("2a187bf3641eb4cb07ed2d0a981fc748")]
    client.handle_timer(t0 + 60)                              # ping-restart 60, silence
    e = client.next_event()
    assert isinstance(e, Failed) and e.stage == "ping-restart"


def test_garbage_datagrams_are_dropped_and_counted(pki):
    ca, _, _ = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    for junk in (b"", b"\xff" * 3, struct.pack("!B", 0x38) + b"short"):
        assert client.receive_datagram(junk, 0.0) == []
    assert client.counters.dropped_malformed == 3
    assert not client.finished


# -- what a hostile server pushes (issue 13) ------------------------------------------------

GCM_ONLY = ["AES-256-GCM", "AES-128-GCM"]


def push(*options, cipher="AES-256-GCM"):
    """A 2.6-like PUSH_REPLY (peer-id 3, as FakeServer's data keys expect)."""
    items = ["PUSH_REPLY", "route-gateway 198.19.1.1", "topology subnet", "ping 10",
             "ping-restart 60", "ifconfig 198.19.1.2 255.255.255.0", "peer-id 3"]
    if cipher:
        items.append(f"cipher {cipher}")
    return ",".join(items + list(options))


def only_failure(events):
    failed = [e for e in events if isinstance(e, Failed)]
    assert len(failed) == 1 and not any(isinstance(e, Connected) for e in events), events
    assert "\n" not in failed[0].message
    return failed[0]


@pytest.mark.parametrize("cipher,options,shown", [
    ("none", ["auth none"], "cipher none (no encryption)"),
    ("AES-256-CBC", [], "cipher AES-256-CBC"),
    ("aes-128-cbc", ["auth none"], "cipher AES-128-CBC"),
    ("CHACHA20-POLY1305", [], "cipher CHACHA20-POLY1305"),
    ("BF-CBC", [], "cipher BF-CBC"),
])
def test_pushed_cipher_outside_data_ciphers_is_refused(pki, cipher, options, shown):
    # ssl_ncp.c check_session_cipher: "negotiated cipher not allowed - X not in LIST"
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, data_ciphers=GCM_ONLY), 0.0)
    server = FakeServer(cert, key, push=push(*options, cipher=cipher))
    events, _, now = run(client, server)
    failed = only_failure(events)
    assert failed.stage == "push"
    assert f"the server pushed {shown}, which is not in data-ciphers " \
           "AES-256-GCM:AES-128-GCM: refused" in failed.message
    assert client.data_key is None and client.cipher is None
    assert now < 1.0                         # refused at once, not a push timeout
    with pytest.raises(Exception, match="established"):
        client.send_packet(b"x")


def test_refusal_names_the_fallback_too(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, data_ciphers=GCM_ONLY, fallback_cipher="AES-128-CBC"),
                           0.0)
    events, _, _ = run(client, FakeServer(cert, key, push=push(cipher="none")))
    message = only_failure(events).message
    assert "not in data-ciphers AES-256-GCM:AES-128-GCM, data-ciphers-fallback AES-128-CBC" \
        in message


@pytest.mark.parametrize("how", [dict(data_ciphers=["AES-256-GCM", "none"]),
                                 dict(data_ciphers=GCM_ONLY, fallback_cipher="none")])
def test_cipher_none_only_when_the_profile_asks_for_it(pki, caplog, how):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, auth="none", **how), 0.0)
    server = FakeServer(cert, key, push=push("auth none", cipher="none"), cipher="none",
                        auth="none")
    with caplog.at_level("WARNING", logger="erebus.openvpn"):
        events, _, now = run(client, server)
    assert client.established and client.cipher == "none"
    datagram = client.send_packet(b"E" + bytes(27), now)
    assert datagram[8:] == b"E" + bytes(27)                  # clear text, as asked
    assert server.receive(datagram, now) == [b"E" + bytes(27)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("cipher none: NO encryption" in m for m in warnings), warnings
    assert any("auth none: no authentication" in m for m in warnings), warnings


def test_cbc_with_auth_none_carries_data(pki, caplog):
    # 2.6 allows CBC with auth none (crypto.c init_key_type warns); it used to crash
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, data_ciphers=["AES-256-GCM", "AES-256-CBC"],
                                    auth="none"), 0.0)
    server = FakeServer(cert, key, push=push(cipher="AES-256-CBC"), cipher="AES-256-CBC",
                        auth="none")
    with caplog.at_level("WARNING", logger="erebus.openvpn"):
        events, _, now = run(client, server)
    assert client.established and client.cipher == "AES-256-CBC"
    datagram = client.send_packet(b"E" + bytes(27), now)
    assert len(datagram) == 4 + 16 + 48      # header | IV | CBC(pid | 28 bytes | 16 padding)
    assert server.receive(datagram, now) == [b"E" + bytes(27)]
    assert client.receive_datagram(server.data_key.encrypt(b"reply"), now) == [b"reply"]
    assert any("auth none: no authentication" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("profile_auth", ["SHA256", "SHA224"])
def test_pushed_auth_is_not_taken_as_by_the_stock_client(pki, caplog, profile_auth):
    # options.c: 'auth' is OPT_P_GENERAL, outside the pull mask: "option 'auth' cannot be
    # used in this context ([PUSH-OPTIONS])"; the profile's digest stays in use.
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, data_ciphers=["AES-256-GCM", "AES-256-CBC"],
                                    auth=profile_auth), 0.0)
    server = FakeServer(cert, key, push=push("auth SHA224" if profile_auth == "SHA256"
                                             else "auth MD4", cipher="AES-256-CBC"),
                        cipher="AES-256-CBC", auth=profile_auth)
    with caplog.at_level("WARNING", logger="erebus.openvpn"):
        run(client, server)
    assert client.established
    datagram = client.send_packet(b"E" + bytes(27), 1.0)
    assert server.receive(datagram, 1.0) == [b"E" + bytes(27)]
    assert client.receive_datagram(server.data_key.encrypt(b"reply"), 1.0) == [b"reply"]
    assert any("option 'auth' cannot be used in this context ([PUSH-OPTIONS])"
               in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("option,words", [
    ("tun-mtu 575", "tun-mtu: 575 is out of range (576..65535)"),
    ("tun-mtu 65536", "tun-mtu: 65536 is out of range"),
    ("ping -1", "ping: -1 is out of range"),
    ("ping-restart -60", "ping-restart: -60 is out of range"),
    ("ping 1_0", "ping: not a number: '1_0'"),
    ("peer-id 16777216", "peer-id: 16777216 is out of range (0..16777215)"),
    ("peer-id x", "peer-id: not a number"),
    ("topology star", "topology: must be net30, p2p, or subnet"),
    ("ifconfig 0.0.0.0 255.255.255.0", "ifconfig: 0.0.0.0 cannot be this client's address"),
    ("ifconfig 198.19.1.2 255.0.255.0", "ifconfig (topology subnet): bad netmask"),
    ("route 198.18.9.0 255.255.255.0 198.18.0.1 1 extra", "route: takes 1 to 4 arguments"),
    ("protocol-flags cc-exit dyn-tls-crypt", "pushed dyn-tls-crypt, which erebus did not"),
])
def test_out_of_range_pushed_options_refuse_the_reply(pki, option, words):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    events, _, now = run(client, FakeServer(cert, key, push=push(option)))
    failed = only_failure(events)
    assert failed.stage == "push" and words in failed.message, failed.message
    assert now < 1.0


def test_the_client_offers_tls_key_export_and_nothing_it_does_not_implement(pki):
    ca, cert, key = pki["lab-ca"]
    server = FakeServer(cert, key)
    run(ClientSession(settings(ca), 0.0), server)
    info = dict(line.split("=", 1) for line in server.peer_info.splitlines() if "=" in line)
    # DATA_V2 | REQUEST_PUSH | TLS_KEY_EXPORT | AUTH_PENDING_KW | CC_EXIT_NOTIFY: no
    # DYN_TLS_CRYPT (512), no DATA_EPOCH
    assert int(info["IV_PROTO"]) == 2 | 4 | 8 | 16 | 128


@pytest.mark.parametrize("option", ["key-derivation tls-ekm", "protocol-flags cc-exit tls-ekm"])
def test_pushed_tls_ekm_takes_the_data_keys_from_the_tls_exporter(pki, option):
    """2.6 servers push tls-ekm to a client with IV_PROTO_TLS_KEY_EXPORT: both ends then
    key the data channel with RFC 5705's EXPORTER-OpenVPN-datakeys, not the PRF; a soft
    reset's new key id too."""
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key, push=push(option), ekm=True)
    events, _, now = run(client, server)
    assert client.established and client.key_derivation == "tls-ekm", events
    datagram = client.send_packet(b"E" + bytes(27), now)
    assert server.receive(datagram, now) == [b"E" + bytes(27)]
    assert client.receive_datagram(server.data_key.encrypt(b"reply"), now) == [b"reply"]
    client._client_renegotiation(now, "test")
    _, _, now = run(client, server, start=now, until=lambda c: c.renegotiations == 1)
    assert client.data_key.key_id == 1
    assert server.receive(client.send_packet(b"E" + bytes(30), now), now) == [b"E" + bytes(30)]


def test_traffic_adds_up_every_data_key_across_renegotiations(pki):
    """erebus status's bytes and packets: the session's, whatever key carried them
    (the current one, the lame one in its transition window, the ones gone)."""
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key)
    _, _, now = run(client, server)
    assert client.traffic() == (0, 0, 0, 0)
    assert server.receive(client.send_packet(b"E" + bytes(27), now), now)
    assert client.receive_datagram(server.data_key.encrypt(b"reply"), now) == [b"reply"]
    assert client.traffic() == (5, 28, 1, 1)
    for n in (1, 2):
        client._client_renegotiation(now, "test")
        _, _, now = run(client, server, start=now, until=lambda c: c.renegotiations == n)
        assert server.receive(client.send_packet(b"x" * 10, now), now)
        assert client.traffic() == (5, 28 + 10 * n, 1, 1 + n)
        client._expire_lame(now + client.settings.tran_window + 1)    # the old key gone
        assert client._lame is None
        assert client.traffic() == (5, 28 + 10 * n, 1, 1 + n)
    # two renegotiations inside one transition window: the lame key replaced is kept
    for n in (3, 4):
        client._client_renegotiation(now, "test")
        _, _, now = run(client, server, start=now, until=lambda c: c.renegotiations == n)
        assert client._lame is not None
        assert server.receive(client.send_packet(b"x" * 10, now), now)
    assert client.traffic() == (5, 68, 1, 5)


def test_without_tls_ekm_the_prf_keys_the_data_channel(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    events, _, now = run(client, FakeServer(cert, key))
    assert client.established and client.key_derivation == "tls1-prf"


def test_packet_id_close_to_wrapping_renegotiates(pki):
    # ssl.c: packet_id_close_to_wrapping (id >= 0xFF000000) triggers a soft reset
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key)
    _, _, t0 = run(client, server)
    client.data_key.next_pid = PACKET_ID_WRAP_TRIGGER - 1
    server.data_key.replay.top = PACKET_ID_WRAP_TRIGGER - 2   # as if it had seen them all
    before = client.send_packet(b"E" + bytes(27), t0)
    assert struct.unpack("!I", before[4:8])[0] == PACKET_ID_WRAP_TRIGGER - 1
    assert server.receive(before, t0) and client.renegotiations == 0
    assert client.get_timer() > t0                            # nothing due yet
    trigger = client.send_packet(b"E" + bytes(27), t0)             # id 0xFF000000
    assert server.receive(trigger, t0) == [b"E" + bytes(27)]
    # the soft reset is the timer's: due at once, sent by handle_timer (not by send_packet)
    assert client.datagrams_to_send(t0) == [] and client.get_timer() <= t0
    _, _, t1 = run(client, server, until=lambda c: c.renegotiations == 1 or c.finished,
                   start=t0)
    assert server.soft_resets == [1] and client.renegotiations == 1, client.next_event()
    after = client.send_packet(b"after", t1)
    assert after[0] & 7 == 1 and after[4:8] == b"\0\0\0\1"  # key id 1, packet id 1
    assert server.receive(after, t1) == [b"after"]


def test_packet_id_limit_reached_on_a_timer_and_never_reused(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key, push=push())              # no cc-exit: OCC exit on close
    _, _, t0 = run(client, server)
    client.data_key.next_pid = 0xFFFFFFFF + 1                 # every id used (no `now`
    assert client.send_packet(b"x") is None                       # given: no renegotiation)
    assert client.counters.dropped_packet_id_exhausted == 1
    assert client.get_timer() <= t0                           # a renegotiation is due now
    client.handle_timer(t0)
    sent = [w.parse_packet(d) for d in client.datagrams_to_send(t0)]
    assert [(p.opcode, p.key_id) for p in sent] == [(w.P_CONTROL_SOFT_RESET_V1, 1)]
    client.close(t0)                                          # the OCC exit: no id left
    assert not [d for d in client.datagrams_to_send(t0)
                if isinstance(w.parse_packet(d), w.DataPacket)]
    assert client.counters.dropped_packet_id_exhausted == 2


_CA = _pem(_cert("push-ca", "push-ca", _k := ec.generate_private_key(ec.SECP256R1()), _k,
                 ca=True))
_CONTEXT = TlsContext(TlsSettings(ca=_CA))       # never handshakes: PUSH_REPLY only

PUSH_VOCAB = ["cipher AES-256-GCM", "cipher none", "cipher AES-256-CBC", "cipher BF-CBC",
              "auth none", "auth SHA224", "ifconfig 198.19.1.2 255.255.255.0",
              "ifconfig 198.19.1.2 198.19.1.1", "topology subnet", "topology p2p",
              "peer-id 3", "peer-id 16777216", "tun-mtu 575", "tun-mtu 1500", "ping -1",
              "ping 10", "ping-restart 0", "protocol-flags cc-exit tls-ekm", "compress lz4",
              "comp-lzo no", "compress stub-v2", "key-derivation tls-ekm", "route x",
              "route 198.18.0.0 255.255.0.0", "auth-token-user AA==", "push-continuation 2"]


@settings_(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(st.sampled_from(PUSH_VOCAB), max_size=10).map(
    lambda items: ",".join(["PUSH_REPLY"] + items)), st.text(max_size=80).map(
    lambda t: "PUSH_REPLY," + t)))
def test_random_push_replies_establish_or_fail_with_a_session_error(reply):
    from erebus.errors import SessionError
    from erebus.openvpn.session import State
    client = ClientSession(settings(_CA, data_ciphers=GCM_ONLY), 0.0, tls_context=_CONTEXT)
    client.state = State.PUSH_REQUEST_SENT          # as after key method 2
    client._primary.key_block = bytes(range(256))
    client._primary.tls = SimpleNamespace(          # key-derivation tls-ekm reads it
        export_keying_material=lambda label, length, context: bytes(range(length)))
    client._push_deadline = client._push_request_at = 60.0
    try:
        client._control_message(reply, 1.0)
    except SessionError as exc:
        assert exc.stage in ("push", "cipher", "compression") and "\n" not in str(exc)
        return
    if client.established:
        assert client.cipher in GCM_ONLY
        assert client.send_packet(b"E" + bytes(27), 1.0)


@pytest.fixture(scope="module")
def established(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key)
    run(client, server)
    assert client.established
    return client, server


@settings_(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=120),
    st.builds(lambda body: bytes.fromhex("48000003") + body, st.binary(max_size=120)),
    st.builds(lambda op, body: bytes([op]) + body, st.integers(0, 255), st.binary(max_size=60)),
))
def test_random_datagrams_are_dropped_never_raised(established, datagram):
    client, server = established
    before = client.counters.dropped_malformed + client.counters.dropped_data_auth + \
        client.counters.dropped_session + client.counters.dropped_replay
    assert client.receive_datagram(datagram, 1.0) == []
    after = client.counters.dropped_malformed + client.counters.dropped_data_auth + \
        client.counters.dropped_session + client.counters.dropped_replay
    assert client.established and after == before + 1          # dropped and counted
    # the session still carries data
    assert client.receive_datagram(server.data_key.encrypt(b"alive"), 1.0) == [b"alive"]


# -- the profile's legacy 'cipher' line is no data cipher (2.6 ignores it) --------------------

def _profile(ca, *lines):
    from erebus.openvpn.config import parse_profile
    text = "\n".join(["client", "dev tun", "remote 198.18.0.1 1194", "remote-cert-tls server",
                      *lines, "<ca>", ca.decode().strip(), "</ca>",
                      "<auth-user-pass>", "alice", "s3cret", "</auth-user-pass>"]) + "\n"
    return parse_profile(text, "legacy.ovpn")


def test_legacy_cipher_line_does_not_allow_a_pushed_cipher(pki):
    # options.c: "DEPRECATED OPTION: --cipher set to 'none' but missing in --data-ciphers
    # (AES-256-GCM). OpenVPN ignores --cipher for cipher negotiations."; ssl_ncp.c
    # check_session_cipher then refuses the pushed 'cipher none'.
    from erebus.runtime.openvpn import session_settings
    ca, cert, key = pki["lab-ca"]
    profile = _profile(ca, "data-ciphers AES-256-GCM", "cipher none", "auth none")
    assert any("legacy.ovpn:6: cipher: DEPRECATED OPTION: --cipher set to 'none' but missing "
               "in --data-ciphers (AES-256-GCM). OpenVPN ignores --cipher for cipher "
               "negotiations." in w for w in profile.warnings), profile.warnings
    client = ClientSession(session_settings(profile), 0.0)
    server = FakeServer(cert, key, push=push("auth none", cipher="none"), cipher="none",
                        auth="none")
    events, _, now = run(client, server)
    failed = only_failure(events)
    assert failed.stage == "push" and "the server pushed cipher none (no encryption), which " \
        "is not in data-ciphers AES-256-GCM: refused" in failed.message, failed.message
    assert client.data_key is None and now < 1.0


def test_legacy_cipher_inside_data_ciphers_or_with_a_fallback_is_not_warned(pki):
    ca, _, _ = pki["lab-ca"]
    for lines in (["data-ciphers none", "cipher none"],
                  ["cipher AES-256-GCM"],
                  ["data-ciphers AES-256-GCM", "data-ciphers-fallback AES-256-CBC",
                   "cipher none"]):
        profile = _profile(ca, *lines)
        assert not any("DEPRECATED OPTION: --cipher" in w for w in profile.warnings), lines


class _OldServer(FakeServer):
    """A server that pushes no cipher and names its own in its options string."""

    def __init__(self, *a, options="V4,dev-type tun", **kw):
        super().__init__(*a, **kw)
        self.options = options

    def _app(self, k):
        real_write = k.tls.write

        def write(data):
            return real_write(data.replace(keymethod.write_string("V4,dev-type tun"),
                                           keymethod.write_string(self.options)))
        k.tls.write = write
        try:
            super()._app(k)
        finally:
            del k.tls.write


@pytest.mark.parametrize("options,how,cipher,stage", [
    # poor man's NCP: the server's options-string cipher, if data-ciphers has it
    ("V4,dev-type tun,cipher AES-128-GCM,auth SHA1", {}, "AES-128-GCM", None),
    # ... even with a fallback; a server cipher outside data-ciphers fails (2.6 too)
    ("V4,dev-type tun,cipher AES-128-GCM", dict(fallback_cipher="AES-256-GCM"),
     "AES-128-GCM", None),
    ("V4,dev-type tun,cipher AES-256-CBC", dict(fallback_cipher="AES-256-CBC"), None,
     "cipher"),
    # no cipher named: data-ciphers-fallback, else nothing is agreed
    ("V4,dev-type tun", dict(fallback_cipher="AES-256-CBC"), "AES-256-CBC", None),
    ("V4,dev-type tun", dict(data_ciphers=["AES-256-GCM"]), None, "cipher"),
])
def test_no_pushed_cipher_as_2_6_decides(pki, options, how, cipher, stage):
    ca, cert, key = pki["lab-ca"]
    kw = dict(data_ciphers=GCM_ONLY)
    kw.update(how)
    client = ClientSession(settings(ca, **kw), 0.0)
    server = _OldServer(cert, key, push=push(cipher=None), options=options,
                        cipher=cipher or "AES-256-GCM")
    events, _, now = run(client, server)
    if stage is None:
        assert client.established and client.cipher == cipher
        datagram = client.send_packet(b"E" + bytes(27), now)
        assert server.receive(datagram, now) == [b"E" + bytes(27)]
    else:
        failed = only_failure(events)
        assert failed.stage == stage and "pushed no data cipher" in failed.message
        assert "OpenVPN 2.6: failed to negotiate cipher" in failed.message
