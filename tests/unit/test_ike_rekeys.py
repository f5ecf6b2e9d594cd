"""Rekeys of our own in virtual time against tests/unit/ike_peer.SimResponder: the
CHILD_SA's rekey deadline survives IKE SA rekeys (issue 13 item 11), refusals are
retried, crossing rekeys do not stall."""

from __future__ import annotations

import pytest

from erebus.ipsec.ike import ChildRekeyed, IkeRekeyed
from erebus.wire import ike as w

from tests.unit.ike_peer import established, run


def test_child_rekey_deadline_survives_an_ike_sa_rekey():
    """rekey_time 12 s (IKE SA), child rekey_time 8 s: after the IKE SA rekey at 12 s the
    CHILD_SA (rekeyed at 8 s) is rekeyed again at 16 s, on the new IKE SA, and so on."""
    ini, sim = established(rekey_time=12.0, child_rekey_time=8.0)
    events = run(ini, sim, 41.0)
    assert [round(t) for t in sim.log.ike_rekeys] == [12, 24, 36]
    assert [round(t) for t in sim.log.child_rekeys] == [8, 16, 24, 32, 40]
    assert sum(isinstance(e, ChildRekeyed) for e in events) == 5
    assert sum(isinstance(e, IkeRekeyed) for e in events) == 3
    assert len(sim.log.ike_deletes) == 3 and len(sim.log.child_deletes) == 5
    assert ini.established and len(ini.children) == 1
    assert len(sim.sas) == 1 and len(sim.children) == 1


def test_child_rekey_deadline_survives_an_ike_sa_rekey_by_the_responder():
    """The responder rekeys the IKE SA at 5 s (we become the new SA's responder): our
    CHILD_SA is still rekeyed at 8 s and 16 s, on the new IKE SA."""
    from tests.unit.ike_peer import exchange
    ini, sim = established(child_rekey_time=8.0)
    run(ini, sim, 5.0)
    ini.receive_datagram(sim.start_ike_rekey(), 5.0)
    exchange(ini, sim, 5.0)
    (ev,) = iter(ini.next_event, None)
    assert isinstance(ev, IkeRekeyed) and not ev.initiator
    assert len(sim.sas) == 1                     # the old IKE SA is deleted
    run(ini, sim, 17.0, start=5.1)
    assert [round(t) for t in sim.log.child_rekeys] == [8, 16]
    assert len(sim.log.child_deletes) == 2 and ini.established and len(ini.children) == 1


def _crossing_child_rekey(sim, child_out_spi: int) -> bytes:
    """The responder's own CREATE_CHILD_SA rekeying the CHILD_SA (our outbound SPI is its
    inbound one)."""
    import os
    from erebus.ipsec import ikecrypto as c
    from erebus.wire.ike import SA, Nonce, Notify, TrafficSelector, TSi, TSr
    from tests.unit.test_ike_initiator import NET, VIP
    return sim.request(w.CREATE_CHILD_SA, [
        Notify(w.REKEY_SA, protocol=w.PROTO_ESP, spi=child_out_spi.to_bytes(4, "big")),
        SA([c.esp_proposal("aes256gcm16", 0x4000_0001)]), Nonce(os.urandom(32)),
        TSi([TrafficSelector.from_network(NET)]), TSr([TrafficSelector.from_network(VIP)])])


@pytest.mark.parametrize("ours", ["child", "ike"])
def test_crossing_rekeys_get_temporary_failure_and_nothing_stalls(ours):
    """Our CHILD_SA rekey (or IKE SA rekey) is in flight when the responder's rekey of
    the same CHILD_SA arrives: it gets TEMPORARY_FAILURE (RFC 7296 section 2.25); ours
    completes, and the CHILD_SA's next own rekey still comes on time."""
    from tests.unit.ike_peer import exchange
    kw = dict(child_rekey_time=8.0) if ours == "child" else dict(rekey_time=8.0,
                                                                  child_rekey_time=20.0)
    ini, sim = established(**kw)
    assert ini.get_timer() == pytest.approx(8.01)
    ini.handle_timer(8.01)
    (ours_req,) = ini.datagrams_to_send(8.01)
    out_spi = ini.children[-1].outbound_spi
    ini.receive_datagram(_crossing_child_rekey(sim, out_spi), 8.015)
    (answer,) = ini.datagrams_to_send(8.015)
    assert sim.handle(answer) == []
    assert [n.type for n in sim.log.responses[-1].notifies()] == [w.TEMPORARY_FAILURE]
    assert not any(isinstance(e, ChildRekeyed) for e in iter(ini.next_event, None))
    sim.now = 8.02
    for reply in sim.handle(ours_req):
        ini.receive_datagram(reply, 8.02)
    exchange(ini, sim, 8.02)
    assert ini.established and len(ini.children) == 1 and len(sim.children) == 1
    run(ini, sim, 30.0, start=8.1)
    if ours == "child":
        assert [round(t) for t in sim.log.child_rekeys] == [8, 16, 24]
    else:
        assert [round(t) for t in sim.log.ike_rekeys] == [8, 16, 24]
        assert [round(t) for t in sim.log.child_rekeys] == [20]
    assert ini.established and len(ini.children) == 1
