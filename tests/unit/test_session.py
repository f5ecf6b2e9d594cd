"""The client session state machine, driven in virtual time against a small in-process
server (a mock: the acceptance tests run against stock OpenVPN in tests/interop)."""

from __future__ import annotations

import datetime
import os
import random
import ssl
import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from erebus.crypto.prf import openvpn_key_block
from erebus.openvpn import keymethod
from erebus.openvpn.data import DataKey
from erebus.openvpn.reliable import ReliableReceive, ReliableSend
from erebus.openvpn.session import ClientSession, Closed, Connected, Failed, SessionSettings
from erebus.openvpn.tls import TlsSettings
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


class FakeServer:
    """Just enough of an OpenVPN 2.6 server for one client session."""

    def __init__(self, cert_file, key_file, push=PUSH):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        self.tls_in, self.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.tls_in, self.tls_out, server_side=True)
        self.sid = os.urandom(8)
        self.client_sid = None
        self.send = ReliableSend()
        self.recv = ReliableReceive()
        self.handshaken = False
        self.app = b""
        self.push = push
        self.key_source = None
        self.data_key = None
        self.control_messages = []

    def receive(self, datagram, now):
        p = w.parse_packet(datagram)
        if isinstance(p, w.DataPacket):
            return [self.data_key.decrypt(p.body)] if self.data_key else []
        if p.opcode == w.P_CONTROL_HARD_RESET_CLIENT_V2 and self.client_sid is None:
            self.client_sid = p.session_id
            self.send.push(w.P_CONTROL_HARD_RESET_SERVER_V2, b"")
        for pid in p.acks:
            self.send.ack(pid)
        if p.packet_id is not None:
            self.recv.receive(p.packet_id, p.opcode, p.payload)
        for _pid, opcode, payload in self.recv.ready():
            if opcode == w.P_CONTROL_V1:
                self.tls_in.write(payload)
                self._pump()
        return []

    def _pump(self):
        if not self.handshaken:
            try:
                self.tls.do_handshake()
                self.handshaken = True
            except ssl.SSLWantReadError:
                pass
        if self.handshaken:
            while True:
                try:
                    chunk = self.tls.read(65536)
                except ssl.SSLWantReadError:
                    break
                if not chunk:
                    break
                self.app += chunk
            self._app()
        out = self.tls_out.read()
        for i in range(0, len(out), 1000):
            self.send.push(w.P_CONTROL_V1, out[i:i + 1000])

    def _app(self):
        if self.key_source is None and len(self.app) >= 5 + 48 + 64:
            pre, r1, r2 = self.app[5:53], self.app[53:85], self.app[85:117]
            self.key_source = (pre, r1, r2)
            self.app = b""     # the rest of the key method message (strings) is ignored
            s1, s2 = os.urandom(32), os.urandom(32)
            self.tls.write(b"\0\0\0\0\x02" + s1 + s2 + keymethod.write_string("V4,dev-type tun"))
            block = openvpn_key_block(pre, r1, s1, r2, s2, self.client_sid, self.sid)
            self.data_key = DataKey(0, "AES-256-GCM", block[128:] + block[:128], peer_id=3)
            return
        while b"\0" in self.app:
            msg, _, self.app = self.app.partition(b"\0")
            self.control_messages.append(msg.decode())
            if msg == b"PUSH_REQUEST":
                self.tls.write(self.push.encode() + b"\0")

    def datagrams(self, now):
        out = []
        for pid, opcode, payload in self.send.due(now):
            acks = self.recv.take_acks(4)
            out.append(w.build_control(opcode, 0, self.sid, acks,
                                       self.client_sid if acks else None, pid, payload))
        while self.recv.has_acks:
            out.append(w.build_control(w.P_ACK_V1, 0, self.sid, self.recv.take_acks(8),
                                       self.client_sid))
        return out

    def timer(self):
        return self.send.next_deadline()


def run(client, server, *, loss=0.0, seed=1, until=lambda c: c.finished or c.established,
        limit=120.0):
    """Move datagrams between client and server in virtual time; drop `loss` of them."""
    rng = random.Random(seed)
    now = 0.0
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
    assert connected and connected[0].cipher == "AES-256-GCM"
    assert connected[0].options.virtual_ip == "198.19.1.2"
    assert server.control_messages == ["PUSH_REQUEST"]
    # data both ways, packet ids from 1, the server's header carries peer id 3
    datagram = client.send_ip(b"E" + bytes(27), 1.0)
    assert datagram[:4] == bytes((0x48, 0, 0, 3)) and datagram[4:8] == b"\0\0\0\1"
    assert server.receive(datagram, 1.0) == [b"E" + bytes(27)]
    reply = server.data_key.encrypt(b"reply packet")
    assert client.receive_datagram(reply, 1.0) == [b"reply packet"]
    assert client.receive_datagram(reply, 1.0) == []        # replayed: dropped, counted
    assert client.counters.dropped_replay == 1


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


def test_no_answer_is_reported_as_unreachable():
    client = ClientSession(settings(b"unused", hand_window=10.0), 0.0)

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
        client.send_ip(b"x")
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
    out = client.handle_timer(t0 + 10)
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
