"""The responder's requests that we cannot do as asked end only their own exchange,
with the RFC's answer (issue 13 item 5): CREATE_CHILD_SA with a KE group we do not
implement or allow, malformed requests; the IKE SA stays up and answers the next."""

from __future__ import annotations

import os

from erebus.ipsec import ikecrypto as c
from erebus.ipsec.ike import ChildRekeyed
from erebus.wire import ike as w
from erebus.wire.ike import KE, SA, Nonce, Notify, Transform, TrafficSelector, TSi, TSr

from tests.unit.test_ike_initiator import NET, VIP, FakeResponder, _new, connect


def _up(**kw):
    ini = _new(**kw)
    fr = FakeResponder()
    connect(ini, fr)
    return ini, fr


def _child_rekey(fr, groups, ke_group, ke_data=None):
    prop = c.esp_proposal("aes256gcm16", 0x2000_0002)
    prop.transforms += [Transform(w.TRANSFORM_DH, g) for g in groups]
    payloads = [Notify(w.REKEY_SA, protocol=w.PROTO_ESP, spi=fr.esp_spi.to_bytes(4, "big")),
                SA([prop]), Nonce(os.urandom(32))]
    if ke_group is not None:
        if ke_data is None:
            ke_data = c.DiffieHellman(ke_group).public_bytes() if ke_group in c.KE_LENGTHS \
                else os.urandom(384)
        payloads.append(KE(ke_group, ke_data))
    payloads += [TSi([TrafficSelector.from_network(NET)]),
                 TSr([TrafficSelector.from_network(VIP)])]
    return fr.request(w.CREATE_CHILD_SA, payloads)


def _answer(ini, fr, request, now):
    ini.receive_datagram(request, now)
    (answer,) = ini.datagrams_to_send(now)
    return fr.decrypt(answer)


def test_child_rekey_with_an_unsupported_ke_group_is_refused_with_no_proposal_chosen():
    ini, fr = _up()
    req = _child_rekey(fr, [w.DH_MODP_3072], w.DH_MODP_3072)
    got = _answer(ini, fr, req, 5.0)
    assert got.response and [n.type for n in got.notifies()] == [w.NO_PROPOSAL_CHOSEN]
    assert ini.established and ini.next_event() is None
    # the retransmitted request gets the same answer; the next one is served
    ini.receive_datagram(req, 6.0)
    assert len(ini.datagrams_to_send(6.0)) == 1
    got = _answer(ini, fr, fr.request(w.INFORMATIONAL, []), 7.0)
    assert got.response and got.payloads == []


def test_child_rekey_with_the_wrong_ke_gets_invalid_ke_payload_then_succeeds():
    ini, fr = _up()
    got = _answer(ini, fr, _child_rekey(fr, [w.DH_MODP_3072, w.DH_ECP_256], w.DH_MODP_3072),
                  5.0)
    (n,) = got.notifies()
    assert n.type == w.INVALID_KE_PAYLOAD and w.parse_u16_notify(n.data) == w.DH_ECP_256
    assert ini.next_event() is None
    got = _answer(ini, fr, _child_rekey(fr, [w.DH_MODP_3072, w.DH_ECP_256], w.DH_ECP_256),
                  6.0)
    assert got.get(KE).group == w.DH_ECP_256 and got.get(SA) is not None
    assert isinstance(ini.next_event(), ChildRekeyed)


def test_child_rekey_pfs_weaker_than_the_profile_allows_is_refused():
    """The profile's IKE groups are ecp384 only (192 bits): modp2048 (112) is not taken."""
    ini = _new(proposals=["aes256gcm16-prfsha384-ecp384"])
    fr = FakeResponder()
    connect(ini, fr)
    got = _answer(ini, fr, _child_rekey(fr, [w.DH_MODP_2048], w.DH_MODP_2048), 5.0)
    assert [n.type for n in got.notifies()] == [w.NO_PROPOSAL_CHOSEN]
    got = _answer(ini, fr, _child_rekey(fr, [w.DH_MODP_2048, w.DH_ECP_521], w.DH_MODP_2048),
                  6.0)
    (n,) = got.notifies()
    assert n.type == w.INVALID_KE_PAYLOAD and w.parse_u16_notify(n.data) == w.DH_ECP_521


def test_malformed_create_child_sa_gets_invalid_syntax_and_the_sa_stays():
    ini, fr = _up()
    got = _answer(ini, fr, fr.request(w.CREATE_CHILD_SA, [Nonce(os.urandom(32))]), 5.0)
    assert got.response and [n.type for n in got.notifies()] == [w.INVALID_SYNTAX]
    assert ini.established and ini.dropped == 1
    got = _answer(ini, fr, fr.request(w.INFORMATIONAL, []), 6.0)
    assert got.response and got.message_id == fr.mid - 1


def test_ike_sa_rekey_with_another_ke_group_gets_invalid_ke_payload():
    ini, fr = _up()
    suite = fr.keys.suite
    dh = c.DiffieHellman(w.DH_CURVE25519)
    got = _answer(ini, fr, fr.request(w.CREATE_CHILD_SA, [
        SA([suite.proposal(1, os.urandom(8))]), Nonce(os.urandom(32)),
        KE(w.DH_CURVE25519, dh.public_bytes())]), 5.0)
    (n,) = got.notifies()
    assert n.type == w.INVALID_KE_PAYLOAD and w.parse_u16_notify(n.data) == suite.dh
    assert ini.established and ini.next_event() is None


def test_request_with_an_unknown_critical_payload_gets_unsupported_critical_payload():
    """RFC 7296 section 2.5: rejected with UNSUPPORTED_CRITICAL_PAYLOAD (naming the type),
    not dropped (the responder would retransmit it until it gives the IKE SA up)."""
    from erebus.wire.ike import UnknownPayload
    ini, fr = _up()
    got = _answer(ini, fr, fr.request(w.INFORMATIONAL, [UnknownPayload(200, b"x", True)]),
                  5.0)
    (n,) = got.notifies()
    assert got.response and n.type == w.UNSUPPORTED_CRITICAL_PAYLOAD and n.data == bytes([200])
    got = _answer(ini, fr, fr.request(w.INFORMATIONAL, [UnknownPayload(201, b"x", False)]),
                  6.0)
    assert got.response and got.payloads == [] and ini.established
