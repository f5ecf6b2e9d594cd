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
