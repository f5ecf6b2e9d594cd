"""IkeInitiator driven by a tiny fake IKEv2 responder built from erebus.wire.ike and
erebus.ipsec.ikecrypto: bytes and fake times only."""

from __future__ import annotations

import os

import pytest

from erebus.ipsec import ikecrypto as c
from erebus.ipsec.ike import (
    NON_ESP_MARKER, RETRANSMIT_TRIES, ChildDeleted, ChildRekeyed, Closed, Connected, Failed,
    IkeInitiator, NattSwitched, State)
from erebus.ipsec.ikeprofile import IkeProfile
from erebus.wire import ike as w
from erebus.wire.ike import (
    AUTH, CP, KE, SA, ConfigAttribute, Delete, IDi, IDr, IkeMessage, Nonce, Notify,
    TrafficSelector, TSi, TSr)

PSK = b"unit-test-psk"
VIP = "198.19.231.7"
DNS = "198.19.230.2"
NET = "198.19.230.0/24"


def profile(**kw) -> IkeProfile:
    base = dict(path="unit", name="unit", remote_addrs=["198.18.130.1"],
                proposals=["aes256gcm16-prfsha256-ecp256", "aes256gcm16-prfsha256-x25519"],
                esp_proposals=["aes256gcm16", "aes256-sha256"], local_id="client.swan.test",
                remote_id="vpn.swan.test", psk=PSK, remote_ts=[NET])
    base.update(kw)
    return IkeProfile(**base)


class FakeResponder:
    """Just enough of a responder: IKE_SA_INIT, IKE_AUTH (PSK), and requests of its own."""

    def __init__(self, *, want_group=None, cookie=None, psk=PSK, init_notifies=()):
        self.init_notifies = list(init_notifies)    # extra notifies in our IKE_SA_INIT answer
        self.want_group = want_group
        self.cookie = cookie
        self.psk = psk
        self.spi_r = os.urandom(8)
        self.keys = None
        self.mid = 0                  # our next request id
        self.esp_spi = 0x1000_0001

    def unframe(self, data: bytes) -> bytes:
        return data[4:] if data[:4] == NON_ESP_MARKER else data

    def ike_sa_init(self, data: bytes) -> bytes:
        data = self.unframe(data)
        req = w.parse_message(data)
        spi_i = req.spi_i
        if self.cookie is not None:
            n = req.notify(w.COOKIE)
            if n is None or n.data != self.cookie:
                return w.build_message(IkeMessage(spi_i, bytes(8), w.IKE_SA_INIT,
                                                  w.FLAG_RESPONSE, 0,
                                                  [Notify(w.COOKIE, self.cookie)]))
        ke = req.get(KE)
        if self.want_group is not None and ke.group != self.want_group:
            return w.build_message(IkeMessage(spi_i, bytes(8), w.IKE_SA_INIT, w.FLAG_RESPONSE,
                                              0, [Notify(w.INVALID_KE_PAYLOAD,
                                                         self.want_group.to_bytes(2, "big"))]))
        prop = next(p for p in req.get(SA).proposals
                    if c.IkeSuite.from_proposal(p).dh == ke.group)
        suite = c.IkeSuite.from_proposal(prop)
        dh = c.DiffieHellman(ke.group)
        self.ni = req.get(Nonce).data
        self.nr = os.urandom(32)
        self.spi_i = spi_i
        resp = IkeMessage(spi_i, self.spi_r, w.IKE_SA_INIT, w.FLAG_RESPONSE, 0,
                          [SA([suite.proposal(prop.number)]), KE(ke.group, dh.public_bytes()),
                           Nonce(self.nr), *self.init_notifies])
        self.init_request = data
        self.init_response = w.build_message(resp)
        self.keys = c.ike_sa_keys(suite, dh.shared_secret(ke.data), self.ni, self.nr, spi_i,
                                  self.spi_r)
        return self.init_response

    def decrypt(self, data: bytes) -> IkeMessage:
        return c.decrypt_message(self.keys, self.unframe(data), initiator=False)

    def seal(self, exchange, flags, mid, payloads) -> bytes:
        return NON_ESP_MARKER + c.encrypt_sk(
            self.keys, IkeMessage(self.spi_i, self.spi_r, exchange, flags, mid, payloads),
            initiator=False)

    def ike_auth(self, data: bytes) -> bytes:
        req = self.decrypt(data)
        idi = req.get(IDi)
        octets = c.signed_octets(self.keys, initiator=True, message=self.init_request,
                                 nonce=self.nr, identity=idi)
        c.verify_auth(req.get(AUTH), octets, psk=PSK, prf=self.keys.prf)
        prop = req.get(SA).proposals[0]
        self.peer_spi = int.from_bytes(prop.spi, "big")
        self.esp_name, _ = c.esp_transform_name(prop)
        idr = IDr.from_value("vpn.swan.test")
        my = c.signed_octets(self.keys, initiator=False, message=self.init_response,
                             nonce=self.ni, identity=idr)
        chosen = c.esp_proposal(self.esp_name, self.esp_spi, number=prop.number)
        return self.seal(w.IKE_AUTH, w.FLAG_RESPONSE, req.message_id, [
            idr, AUTH(w.AUTH_PSK, c.psk_auth(self.keys.prf, self.psk, my)),
            CP(w.CFG_REPLY, [ConfigAttribute.address(w.INTERNAL_IP4_ADDRESS, VIP),
                             ConfigAttribute.address(w.INTERNAL_IP4_DNS, DNS)]),
            SA([chosen]), TSi([TrafficSelector.from_network(VIP)]),
            TSr([TrafficSelector.from_network(NET)])])

    def request(self, exchange, payloads) -> bytes:
        data = self.seal(exchange, 0, self.mid, payloads)
        self.mid += 1
        return data


def connect(ini: IkeInitiator, fr: FakeResponder, now: float = 0.0) -> Connected:
    (init,) = ini.datagrams_to_send(now)
    ini.receive_datagram(fr.ike_sa_init(init), now)
    assert ini.remote_port == 4500
    (auth,) = ini.datagrams_to_send(now)
    assert auth[:4] == NON_ESP_MARKER
    ini.receive_datagram(fr.ike_auth(auth), now + 0.01)
    events = []
    while (e := ini.next_event()) is not None:
        events.append(e)
    assert isinstance(events[0], NattSwitched)
    assert isinstance(events[-1], Connected), events
    return events[-1]


def test_happy_path_psk():
    ini = IkeInitiator(profile(), 0.0, local_addr=("198.18.130.2", 40000),
                       remote_addr=("198.18.130.1", 500))
    fr = FakeResponder()
    ev = connect(ini, fr)
    assert ini.state is State.ESTABLISHED
    assert ev.virtual_ip == VIP and ev.dns == [DNS] and ev.remote_ts == [NET]
    assert ev.esp_transform == "aes256gcm16" and ev.remote_id == "vpn.swan.test"
    assert ev.outbound.spi == fr.esp_spi and ev.inbound.spi == fr.peer_spi
    # the SAs interoperate with the responder's view of the keys
    key_len, integ = c.esp_key_lengths("aes256gcm16")
    ck = c.child_sa_keys(fr.keys, fr.ni, fr.nr, key_len, integ)
    from erebus.ipsec.esp import SecurityAssociation
    theirs_in = SecurityAssociation(fr.esp_spi, "aes256gcm16", *ck.outbound(True))
    assert theirs_in.open(ev.outbound.seal(b"hello"))[1] == b"hello"


def test_invalid_ke_retry():
    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder(want_group=w.DH_CURVE25519)
    (first,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_sa_init(first), 0.0)
    assert ini.group == w.DH_CURVE25519 and ini.state is State.IKE_SA_INIT_SENT
    (second,) = ini.datagrams_to_send(0.0)
    assert w.parse_message(second).get(KE).group == w.DH_CURVE25519
    ini.receive_datagram(fr.ike_sa_init(second), 0.0)
    (auth,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_auth(auth), 0.0)
    assert ini.state is State.ESTABLISHED


def test_invalid_ke_for_a_group_not_offered_fails_after_the_wait():
    """Unauthenticated (RFC 7296 section 2.21.1): we keep our group, retransmit, and fail
    with the reason only when no other answer came (sent + 3 timeouts: 6 s)."""
    ini = IkeInitiator(profile(proposals=["aes256gcm16-prfsha256-ecp256"]), 0.0)
    fr = FakeResponder(want_group=w.DH_MODP_2048)
    (first,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_sa_init(first), 0.01)
    assert ini.next_event() is None and ini.group == w.DH_ECP_256
    assert ini.get_timer() == 2.0
    ini.handle_timer(2.0)
    assert ini.datagrams_to_send(2.0) == [first]
    assert ini.get_timer() == 6.0 and ini.next_event() is None
    ini.handle_timer(6.0)
    ev = ini.next_event()
    assert isinstance(ev, Failed) and ev.stage == "proposal" and "14" in ev.message


def test_cookie_is_sent_first():
    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder(cookie=b"C" * 20)
    (first,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_sa_init(first), 0.0)
    (second,) = ini.datagrams_to_send(0.0)
    msg = w.parse_message(second)
    assert isinstance(msg.payloads[0], Notify) and msg.payloads[0].type == w.COOKIE
    ini.receive_datagram(fr.ike_sa_init(second), 0.0)
    (auth,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_auth(auth), 0.0)
    assert ini.state is State.ESTABLISHED


def test_retransmission_backoff_then_unreachable():
    ini = IkeInitiator(profile(), 0.0)
    (first,) = ini.datagrams_to_send(0.0)
    times = []
    now = 0.0
    for _ in range(RETRANSMIT_TRIES):
        now = ini.get_timer()
        times.append(now)
        ini.handle_timer(now)
        assert ini.datagrams_to_send(now) == [first]
    assert times == [2.0, 6.0, 14.0, 30.0, 62.0]
    ini.handle_timer(ini.get_timer())
    ev = ini.next_event()
    assert isinstance(ev, Failed) and ev.stage == "unreachable"
    assert ini.get_timer() is None


def test_dpd_is_answered_and_retransmitted_request_gets_same_answer():
    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder()
    connect(ini, fr)
    dpd = fr.request(w.INFORMATIONAL, [])
    ini.receive_datagram(dpd, 5.0)
    (answer,) = ini.datagrams_to_send(5.0)
    msg = fr.decrypt(answer)
    assert msg.response and msg.exchange == w.INFORMATIONAL and msg.payloads == []
    ini.receive_datagram(dpd, 6.0)
    assert ini.datagrams_to_send(6.0) == [answer]
    assert ini.state is State.ESTABLISHED


def test_child_rekey_by_responder_then_delete_of_the_old():
    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder()
    ev = connect(ini, fr)
    old_in = ev.inbound.spi
    new_spi = 0x2000_0002
    ni2 = os.urandom(32)
    req = fr.request(w.CREATE_CHILD_SA, [
        Notify(w.REKEY_SA, protocol=w.PROTO_ESP, spi=fr.esp_spi.to_bytes(4, "big")),
        SA([c.esp_proposal("aes256gcm16", new_spi)]), Nonce(ni2),
        TSi([TrafficSelector.from_network(NET)]), TSr([TrafficSelector.from_network(VIP)])])
    ini.receive_datagram(req, 10.0)
    (answer,) = ini.datagrams_to_send(10.0)
    resp = fr.decrypt(answer)
    prop = resp.get(SA).proposals[0]
    nr2 = resp.get(Nonce).data
    rk = ini.next_event()
    assert isinstance(rk, ChildRekeyed) and rk.old_inbound_spi == old_in
    assert rk.outbound.spi == new_spi and rk.inbound.spi == int.from_bytes(prop.spi, "big")
    # keys: the responder of the IKE SA was the initiator of this exchange
    key_len, integ = c.esp_key_lengths("aes256gcm16")
    ck = c.child_sa_keys(fr.keys, ni2, nr2, key_len, integ)
    from erebus.ipsec.esp import SecurityAssociation
    theirs_out = SecurityAssociation(rk.inbound.spi, "aes256gcm16", *ck.outbound(True))
    assert rk.inbound.open(theirs_out.seal(b"new"))[1] == b"new"
    # the responder deletes the old CHILD_SA (its inbound SPI: our old outbound)
    ini.receive_datagram(fr.request(w.INFORMATIONAL, [
        Delete(w.PROTO_ESP, [fr.esp_spi.to_bytes(4, "big")])]), 12.0)
    (answer,) = ini.datagrams_to_send(12.0)
    (d,) = fr.decrypt(answer).get_all(Delete)
    assert d.spis == [old_in.to_bytes(4, "big")]
    assert ini.next_event() == ChildDeleted(old_in)
    assert ini.state is State.ESTABLISHED


def test_wrong_psk_of_the_responder():
    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder(psk=b"another secret")
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_sa_init(init), 0.0)
    (auth,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_auth(auth), 0.0)
    events = [e for e in iter(ini.next_event, None)]
    assert events[-1] == Failed("auth", "the responder's AUTH does not verify: wrong PSK?")
    (delete,) = ini.datagrams_to_send(0.0)          # we tell the responder we leave
    assert fr.decrypt(delete).get(Delete).protocol == w.PROTO_IKE


def test_authentication_failed_notify():
    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder()
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_sa_init(init), 0.0)
    (auth,) = ini.datagrams_to_send(0.0)
    req = fr.decrypt(auth)
    ini.receive_datagram(fr.seal(w.IKE_AUTH, w.FLAG_RESPONSE, req.message_id,
                                 [Notify(w.AUTHENTICATION_FAILED)]), 0.0)
    ev = [e for e in iter(ini.next_event, None)][-1]
    assert ev.stage == "auth" and ev.message.startswith("the responder refused our "
                                                        "authentication")


def test_delete_of_the_ike_sa_and_clean_close():
    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder()
    connect(ini, fr)
    ini.close(1.0)
    (d,) = ini.datagrams_to_send(1.0)
    msg = fr.decrypt(d)
    assert msg.get(Delete).protocol == w.PROTO_IKE and ini.state is State.DELETING
    ini.receive_datagram(fr.seal(w.INFORMATIONAL, w.FLAG_RESPONSE, msg.message_id, []), 1.1)
    assert ini.next_event() == Closed("closed") and ini.finished

    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder()
    connect(ini, fr)
    ini.receive_datagram(fr.request(w.INFORMATIONAL, [Delete(w.PROTO_IKE)]), 2.0)
    assert len(ini.datagrams_to_send(2.0)) == 1
    ev = ini.next_event()
    assert isinstance(ev, Failed) and ev.stage == "restart"


def test_own_dpd_and_timeout():
    ini = IkeInitiator(profile(dpd_delay=10.0), 0.0)
    fr = FakeResponder()
    connect(ini, fr)
    assert ini.get_timer() == pytest.approx(10.01)
    ini.handle_timer(10.01)
    (dpd,) = ini.datagrams_to_send(10.01)
    assert fr.decrypt(dpd).payloads == []
    while not ini.finished:
        ini.handle_timer(ini.get_timer())
    ev = ini.next_event()
    assert isinstance(ev, Failed) and ev.stage == "timeout"


# -- rekeying ----------------------------------------------------------------------------

def _drain(ini):
    events = []
    while (e := ini.next_event()) is not None:
        events.append(e)
    return events


def _new(**kw):
    return IkeInitiator(profile(**kw), 0.0, local_addr=("198.18.130.2", 40000),
                        remote_addr=("198.18.130.1", 500))


def test_ike_sa_rekey_by_the_responder_roles_flip_and_old_sa_deleted():
    from erebus.ipsec.ike import IkeRekeyed
    ini = _new()
    fr = FakeResponder()
    connect(ini, fr)
    suite = fr.keys.suite
    dh = c.DiffieHellman(suite.dh)
    new_spi = os.urandom(8)
    ni = os.urandom(32)
    req = fr.request(w.CREATE_CHILD_SA, [SA([suite.proposal(1, new_spi)]), Nonce(ni),
                                         KE(suite.dh, dh.public_bytes())])
    ini.receive_datagram(req, 1.0)
    (resp,) = ini.datagrams_to_send(1.0)
    msg = fr.decrypt(resp)
    assert msg.flags & w.FLAG_RESPONSE and msg.exchange == w.CREATE_CHILD_SA
    prop = msg.get(SA).proposals[0]
    assert prop.protocol == w.PROTO_IKE and len(prop.spi) == 8
    nr = msg.get(Nonce).data
    shared = dh.shared_secret(msg.get(KE).data)
    (ev,) = _drain(ini)
    assert isinstance(ev, IkeRekeyed) and not ev.initiator
    assert ini.spi_i == new_spi and ini.spi_r == prop.spi and not ini.role_initiator
    # the DELETE of the old IKE SA, on the old SA: answered, and we stay up
    ini.receive_datagram(fr.request(w.INFORMATIONAL, [Delete(w.PROTO_IKE)]), 1.5)
    (resp,) = ini.datagrams_to_send(1.5)
    assert fr.decrypt(resp).flags & w.FLAG_RESPONSE
    assert ini.established and not _drain(ini)
    # the new SA: we are its responder; message ids restart at 0
    new_keys = c.rekeyed_ike_sa_keys(fr.keys, suite, shared, ni, nr, new_spi, prop.spi)
    dpd = NON_ESP_MARKER + c.encrypt_sk(new_keys, IkeMessage(
        new_spi, prop.spi, w.INFORMATIONAL, w.FLAG_INITIATOR, 0, []), initiator=True)
    ini.receive_datagram(dpd, 2.0)
    (resp,) = ini.datagrams_to_send(2.0)
    got = c.decrypt_message(new_keys, resp[4:], initiator=True)
    assert got.flags & w.FLAG_RESPONSE and got.message_id == 0 and not (got.flags & w.FLAG_INITIATOR)


def test_ike_sa_rekey_by_us_then_delete_of_the_old():
    from erebus.ipsec.ike import IkeRekeyed
    ini = _new(rekey_time=100.0)
    fr = FakeResponder()
    connect(ini, fr)
    assert ini.get_timer() == pytest.approx(100.01)
    ini.handle_timer(100.1)
    (req,) = ini.datagrams_to_send(100.1)
    msg = fr.decrypt(req)
    assert msg.exchange == w.CREATE_CHILD_SA and not (msg.flags & w.FLAG_RESPONSE)
    prop = msg.get(SA).proposals[0]
    suite = c.IkeSuite.from_proposal(prop)
    ke = msg.get(KE)
    dh = c.DiffieHellman(ke.group)
    nr = os.urandom(32)
    our_spi = os.urandom(8)
    ini.receive_datagram(fr.seal(w.CREATE_CHILD_SA, w.FLAG_RESPONSE, msg.message_id, [
        SA([suite.proposal(prop.number, our_spi)]), Nonce(nr),
        KE(ke.group, dh.public_bytes())]), 100.2)
    (ev,) = _drain(ini)
    assert isinstance(ev, IkeRekeyed) and ev.initiator
    assert ini.spi_i == prop.spi and ini.spi_r == our_spi
    new_keys = c.rekeyed_ike_sa_keys(fr.keys, suite, dh.shared_secret(ke.data),
                                     msg.get(Nonce).data, nr, prop.spi, our_spi)
    (dele,) = ini.datagrams_to_send(100.2)
    d = fr.decrypt(dele)                       # on the old SA
    assert d.get(Delete).protocol == w.PROTO_IKE
    ini.receive_datagram(fr.seal(w.INFORMATIONAL, w.FLAG_RESPONSE, d.message_id, []), 100.3)
    assert ini._old is None and ini.established
    # the next request of ours is on the new SA, message id 0
    ini.close(101.0)
    (dele,) = ini.datagrams_to_send(101.0)
    got = c.decrypt_message(new_keys, dele[4:], initiator=False)
    assert got.message_id == 0 and got.get(Delete).protocol == w.PROTO_IKE


def test_child_sa_rekey_by_us_then_delete_of_the_old():
    ini = _new(child_rekey_time=50.0)
    fr = FakeResponder()
    ev = connect(ini, fr)
    ini.handle_timer(50.1)
    (req,) = ini.datagrams_to_send(50.1)
    msg = fr.decrypt(req)
    assert msg.exchange == w.CREATE_CHILD_SA
    rekey = msg.notify(w.REKEY_SA)
    assert int.from_bytes(rekey.spi, "big") == ev.inbound.spi
    assert msg.get(TSi) is not None and msg.get(TSr) is not None
    prop = msg.get(SA).proposals[0]
    nr = os.urandom(32)
    ini.receive_datagram(fr.seal(w.CREATE_CHILD_SA, w.FLAG_RESPONSE, msg.message_id, [
        SA([c.esp_proposal(c.esp_transform_name(prop)[0], 0x2000_0002, number=prop.number)]),
        Nonce(nr), msg.get(TSi), msg.get(TSr)]), 50.2)
    (rk,) = _drain(ini)
    assert isinstance(rk, ChildRekeyed) and rk.old_inbound_spi == ev.inbound.spi
    assert rk.outbound.spi == 0x2000_0002 and rk.inbound.spi == int.from_bytes(prop.spi, "big")
    key_len, integ = c.esp_key_lengths("aes256gcm16")
    ck = c.child_sa_keys(fr.keys, msg.get(Nonce).data, nr, key_len, integ)
    from erebus.ipsec.esp import SecurityAssociation
    theirs_in = SecurityAssociation(0x2000_0002, "aes256gcm16", *ck.outbound(True))
    assert theirs_in.open(rk.outbound.seal(b"hello"))[1] == b"hello"
    (dele,) = ini.datagrams_to_send(50.2)
    d = fr.decrypt(dele)
    assert d.get(Delete).protocol == w.PROTO_ESP
    assert d.get(Delete).spis == [ev.inbound.spi.to_bytes(4, "big")]
    ini.receive_datagram(fr.seal(w.INFORMATIONAL, w.FLAG_RESPONSE, d.message_id, [
        Delete(w.PROTO_ESP, [fr.esp_spi.to_bytes(4, "big")])]), 50.3)
    (gone,) = _drain(ini)
    assert isinstance(gone, ChildDeleted) and gone.inbound_spi == ev.inbound.spi
    assert len(ini.children) == 1 and ini.established
    assert ini.get_timer() == pytest.approx(100.2)


# -- IDi: the identity we send (charon's defaults) ---------------------------------------

def _client_cert(subject):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _sent_idi(**kw) -> IDi:
    ini = _new(**kw)
    fr = FakeResponder()
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_sa_init(init), 0.0)
    (auth,) = ini.datagrams_to_send(0.0)
    return fr.decrypt(auth).get(IDi)


def test_certificate_without_local_id_sends_the_subject_dn():
    """swanctl.conf with local.auth = pubkey, a certificate and no local.id: charon sends
    the certificate's subject as ID_DER_ASN1_DN (type 9), the DER as in the
    certificate -- not our IP address."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client.swan.test")])
    cert, key = _client_cert(subject)
    idi = _sent_idi(local_auth="pubkey", local_id=None, local_cert=cert, local_key=key,
                    psk=None)
    der = bytes.fromhex("301b3119301706035504030c10") + b"client.swan.test"
    assert (idi.id_type, idi.data) == (9, der)
    assert idi.body() == bytes([9, 0, 0, 0]) + der        # also what AUTH signs


def test_certificate_subject_dn_is_sent_as_the_certificate_holds_it():
    """A multi-RDN subject with a PrintableString country: the bytes of the certificate's
    subject, unchanged (not re-encoded)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lab"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "carol")])
    cert, key = _client_cert(subject)
    idi = _sent_idi(local_auth="pubkey", local_id=None, local_cert=cert, local_key=key)
    assert idi.id_type == w.ID_DER_ASN1_DN
    assert idi.data == bytes.fromhex("302b310b3009060355040613024348310c300a060355040a0c034c"
                                     "6162310e300c06035504030c056361726f6c")


def test_local_id_still_wins_and_psk_without_id_sends_our_address():
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    cert, key = _client_cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
    idi = _sent_idi(local_auth="pubkey", local_id="client.swan.test", local_cert=cert,
                    local_key=key)
    assert (idi.id_type, idi.data) == (w.ID_FQDN, b"client.swan.test")
    idi = _sent_idi(local_id=None)
    assert (idi.id_type, idi.data) == (w.ID_IPV4_ADDR, bytes([198, 18, 130, 2]))


def test_local_id_written_as_a_dn_is_sent_as_a_dn():
    """local.id = "C=CH, O=strongSwan, CN=moon" is ID_DER_ASN1_DN, encoded as strongSwan's
    atodn does (PrintableString values), not an FQDN with '=' in it."""
    idi = _sent_idi(local_id="C=CH, O=strongSwan, CN=moon")
    assert idi.id_type == 9
    assert idi.data == bytes.fromhex(
        "3031310b3009060355040613024348311330110603550"
        "40a130a7374726f6e675377616e310d300b0603550403130"
        "46d6f6f6e")
