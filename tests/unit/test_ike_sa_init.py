"""IKE_SA_INIT refusals are unauthenticated (RFC 7296 section 2.21.1): a forged
NO_PROPOSAL_CHOSEN or INVALID_KE_PAYLOAD must neither end the attempt at once nor move
us to a group the profile does not allow (issue 13 item 10). Virtual time."""

from __future__ import annotations

from erebus.ipsec.ike import Connected, Failed, IkeInitiator, State
from erebus.wire import ike as w
from erebus.wire.ike import KE, IkeMessage, Notify

from tests.unit.test_ike_initiator import FakeResponder, profile


def _forged(request: bytes, *payloads) -> bytes:
    """What anyone who saw our IKE_SA_INIT can send back."""
    spi_i = w.parse_message(request).spi_i
    return w.build_message(IkeMessage(spi_i, bytes(8), w.IKE_SA_INIT, w.FLAG_RESPONSE, 0,
                                      list(payloads)))


def _events(ini):
    return list(iter(ini.next_event, None))


def test_forged_no_proposal_chosen_then_the_real_answer_connects():
    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder()
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(_forged(init, Notify(w.NO_PROPOSAL_CHOSEN)), 0.01)
    assert not _events(ini) and ini.state is State.IKE_SA_INIT_SENT
    assert ini.refusals_ignored == 1
    ini.receive_datagram(fr.ike_sa_init(init), 0.05)           # the real responder
    (auth,) = ini.datagrams_to_send(0.05)
    ini.receive_datagram(fr.ike_auth(auth), 0.1)
    assert isinstance(_events(ini)[-1], Connected) and ini.established


def test_no_proposal_chosen_alone_fails_with_its_reason_after_retransmitting():
    ini = IkeInitiator(profile(), 0.0)
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(_forged(init, Notify(w.NO_PROPOSAL_CHOSEN)), 0.5)
    sent = []
    while not ini.finished:
        now = ini.get_timer()
        ini.handle_timer(now)
        sent += [(now, d) for d in ini.datagrams_to_send(now)]
    assert sent == [(2.0, init)]                 # retransmitted, unchanged
    (ev,) = _events(ini)
    assert isinstance(ev, Failed) and ev.stage == "proposal"
    assert "NO_PROPOSAL_CHOSEN" in ev.message and ini.get_timer() is None


def test_a_new_refusal_does_not_extend_the_wait():
    ini = IkeInitiator(profile(), 0.0)
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(_forged(init, Notify(w.NO_PROPOSAL_CHOSEN)), 0.5)
    ini.handle_timer(2.0)
    ini.receive_datagram(_forged(init, Notify(w.NO_PROPOSAL_CHOSEN)), 5.5)
    assert ini.refusals_ignored == 2 and ini.get_timer() == 6.0


def test_forged_invalid_ke_for_a_group_outside_the_proposals_is_not_followed():
    """ecp256 and x25519 offered: a forged INVALID_KE_PAYLOAD(modp2048) leaves our KE as
    it is, and the real answer to it still connects."""
    ini = IkeInitiator(profile(), 0.0)
    fr = FakeResponder()
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(_forged(init, Notify(w.INVALID_KE_PAYLOAD,
                                              w.DH_MODP_2048.to_bytes(2, "big"))), 0.01)
    assert ini.group == w.DH_ECP_256 and ini.datagrams_to_send(0.01) == []
    ini.receive_datagram(fr.ike_sa_init(init), 0.05)
    (auth,) = ini.datagrams_to_send(0.05)
    ini.receive_datagram(fr.ike_auth(auth), 0.1)
    assert ini.established


def test_invalid_ke_ping_pong_is_not_followed_back():
    ini = IkeInitiator(profile(), 0.0)
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(_forged(init, Notify(w.INVALID_KE_PAYLOAD,
                                              w.DH_CURVE25519.to_bytes(2, "big"))), 0.01)
    (second,) = ini.datagrams_to_send(0.01)
    assert w.parse_message(second).get(KE).group == w.DH_CURVE25519
    ini.receive_datagram(_forged(second, Notify(w.INVALID_KE_PAYLOAD,
                                                w.DH_ECP_256.to_bytes(2, "big"))), 0.02)
    assert ini.group == w.DH_CURVE25519 and ini.datagrams_to_send(0.02) == []
    while not ini.finished:
        ini.handle_timer(ini.get_timer())
    (ev,) = _events(ini)
    assert ev.stage == "proposal" and "tried already" in ev.message
