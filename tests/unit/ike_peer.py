"""A small IKEv2 responder for :class:`erebus.ipsec.ike.IkeInitiator` in virtual time,
built from erebus.wire.ike and erebus.ipsec.ikecrypto (the harness of
tests/unit/test_ike_rekeys.py and test_ike_fuzz.py).

:class:`SimResponder` answers what the initiator sends once the IKE SA is up, as
strongSwan does: CREATE_CHILD_SA (IKE SA rekey, CHILD_SA rekey), INFORMATIONAL
(DPD, DELETE of a CHILD_SA or of an IKE SA), on whichever IKE SA the message names
(the current one or one a rekey replaced), and can send requests of its own.
:func:`run` drives both in virtual time: the initiator's timers fire, what it sends
is answered after ``latency``, until a given time."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from erebus.ipsec import ikecrypto as c
from erebus.ipsec.ike import NON_ESP_MARKER, IkeInitiator
from erebus.wire import ike as w
from erebus.wire.ike import KE, SA, Delete, IkeMessage, Nonce, Notify, TSi, TSr

from tests.unit.test_ike_initiator import FakeResponder, connect, profile


@dataclass
class _Sa:
    spi_i: bytes
    spi_r: bytes
    keys: object
    initiator: bool                 # the simulated responder's role in this IKE SA
    next_mid: int = 0               # our next request id on it
    answered: dict = field(default_factory=dict)   # request id -> response datagram
    deleting: list = field(default_factory=list)   # our DELETE of it, once sent


@dataclass
class Log:
    """What the responder saw (times are the virtual clock's)."""

    child_rekeys: list[float] = field(default_factory=list)    # CREATE_CHILD_SA REKEY_SA
    ike_rekeys: list[float] = field(default_factory=list)      # CREATE_CHILD_SA for IKE
    child_deletes: list[float] = field(default_factory=list)
    ike_deletes: list[float] = field(default_factory=list)
    dpds: list[float] = field(default_factory=list)
    responses: list[IkeMessage] = field(default_factory=list)  # answers to our requests


class SimResponder:
    """The responder's side of an IKE SA that :func:`connect` brought up with
    ``fake`` (a :class:`FakeResponder`)."""

    def __init__(self, fake: FakeResponder):
        sa = _Sa(fake.spi_i, fake.spi_r, fake.keys, False, next_mid=fake.mid)
        self.sas = {(sa.spi_i, sa.spi_r): sa}
        self.current = sa
        self.children = {fake.esp_spi: fake.peer_spi}     # our inbound SPI -> theirs
        self.log = Log()
        self.refuse_child_rekey: int | None = None        # a notify to answer with instead
        self._next_esp_spi = 0x3000_0000
        self._ike_rekey = None            # (request id, sa, dh, ni, new spi_i) in flight
        self.now = 0.0

    def _seal(self, sa: _Sa, exchange: int, flags: int, mid: int, payloads) -> bytes:
        flags |= w.FLAG_INITIATOR if sa.initiator else 0
        return NON_ESP_MARKER + c.encrypt_sk(
            sa.keys, IkeMessage(sa.spi_i, sa.spi_r, exchange, flags, mid, payloads),
            initiator=sa.initiator)

    def request(self, exchange: int, payloads, sa: _Sa | None = None) -> bytes:
        """A request of ours on ``sa`` (default: the current IKE SA)."""
        sa = sa or self.current
        data = self._seal(sa, exchange, 0, sa.next_mid, payloads)
        sa.next_mid += 1
        return data

    def handle(self, datagram: bytes) -> list[bytes]:
        """What we send back for one datagram of the initiator."""
        data = datagram[4:] if datagram[:4] == NON_ESP_MARKER else datagram
        header = w.parse_header(data)
        sa = self.sas.get((header.spi_i, header.spi_r))
        if sa is None:
            return []
        msg = c.decrypt_message(sa.keys, data, initiator=sa.initiator)
        if msg.response:
            self.log.responses.append(msg)
            return self._on_response(sa, msg)
        if msg.message_id in sa.answered:
            return [sa.answered[msg.message_id]]
        payloads = self._answer(sa, msg)
        out = self._seal(sa, msg.exchange, w.FLAG_RESPONSE, msg.message_id, payloads)
        sa.answered[msg.message_id] = out
        return [out]

    def start_ike_rekey(self) -> bytes:
        """Our CREATE_CHILD_SA rekeying the current IKE SA (we delete the old one once
        the initiator answers)."""
        sa = self.current
        suite = sa.keys.suite
        dh = c.DiffieHellman(suite.dh)
        ni = os.urandom(32)
        spi_i = os.urandom(8)
        self._ike_rekey = (sa.next_mid, sa, dh, ni, spi_i)
        return self.request(w.CREATE_CHILD_SA, [SA([suite.proposal(1, spi_i)]), Nonce(ni),
                                                KE(suite.dh, dh.public_bytes())], sa)

    def _on_response(self, sa: _Sa, msg: IkeMessage) -> list[bytes]:
        pending = self._ike_rekey
        if pending is None or pending[1] is not sa or pending[0] != msg.message_id:
            if msg.exchange == w.INFORMATIONAL and sa is not self.current and \
                    any(d.protocol == w.PROTO_IKE for d in sa.deleting):
                self.sas.pop((sa.spi_i, sa.spi_r), None)
            return []
        self._ike_rekey = None
        _, old, dh, ni, spi_i = pending
        if msg.errors():
            return []
        prop = msg.get(SA).proposals[0]
        suite = c.IkeSuite.from_proposal(prop)
        keys = c.rekeyed_ike_sa_keys(old.keys, suite, dh.shared_secret(msg.get(KE).data),
                                     ni, msg.get(Nonce).data, spi_i, prop.spi)
        new = _Sa(spi_i, prop.spi, keys, True)
        self.sas[(new.spi_i, new.spi_r)] = new
        self.current = new
        self.log.ike_rekeys.append(self.now)
        old.deleting = [Delete(w.PROTO_IKE)]
        return [self.request(w.INFORMATIONAL, old.deleting, old)]

    def _answer(self, sa: _Sa, msg: IkeMessage) -> list:
        now = self.now
        if msg.exchange == w.INFORMATIONAL:
            deletes = msg.get_all(Delete)
            if any(d.protocol == w.PROTO_IKE for d in deletes):
                self.log.ike_deletes.append(now)
                self.sas.pop((sa.spi_i, sa.spi_r), None)
                return []
            answer = []
            for d in deletes:
                if d.protocol == w.PROTO_ESP:
                    self.log.child_deletes.append(now)
                    ours = [spi for spi, theirs in self.children.items()
                            if theirs.to_bytes(4, "big") in d.spis]
                    for spi in ours:
                        del self.children[spi]
                    answer.append(Delete(w.PROTO_ESP, [s.to_bytes(4, "big") for s in ours]))
            if not deletes:
                self.log.dpds.append(now)
            return answer
        if msg.exchange != w.CREATE_CHILD_SA:
            return [Notify(w.INVALID_SYNTAX)]
        sa_payload, nonce = msg.get(SA), msg.get(Nonce)
        prop = sa_payload.proposals[0]
        if prop.protocol == w.PROTO_IKE:
            self.log.ike_rekeys.append(now)
            suite = c.IkeSuite.from_proposal(prop)
            ke = msg.get(KE)
            dh = c.DiffieHellman(ke.group)
            nr = os.urandom(32)
            spi_r = os.urandom(8)
            keys = c.rekeyed_ike_sa_keys(sa.keys, suite, dh.shared_secret(ke.data),
                                         nonce.data, nr, prop.spi, spi_r)
            new = _Sa(prop.spi, spi_r, keys, False)
            self.sas[(new.spi_i, new.spi_r)] = new
            self.current = new
            return [SA([suite.proposal(prop.number, spi_r)]), Nonce(nr),
                    KE(ke.group, dh.public_bytes())]
        rekey = msg.notify(w.REKEY_SA)
        self.log.child_rekeys.append(now)
        if self.refuse_child_rekey is not None:
            return [Notify(self.refuse_child_rekey)]
        name, _ = c.esp_transform_name(prop)
        spi = self._next_esp_spi
        self._next_esp_spi += 1
        self.children[spi] = int.from_bytes(prop.spi, "big")
        assert rekey is not None
        return [SA([c.esp_proposal(name, spi, number=prop.number)]), Nonce(os.urandom(32)),
                msg.get(TSi), msg.get(TSr)]


def established(**kw) -> tuple[IkeInitiator, SimResponder]:
    """An initiator (profile(**kw)) with its IKE SA up at t=0, and its responder."""
    ini = IkeInitiator(profile(**kw), 0.0, local_addr=("198.18.130.2", 40000),
                       remote_addr=("198.18.130.1", 500))
    fake = FakeResponder()
    connect(ini, fake)
    return ini, SimResponder(fake)


def exchange(ini: IkeInitiator, sim: SimResponder, now: float, latency: float = 0.01,
             events: list | None = None) -> float:
    """Deliver what the initiator has to send and the answers, until it is quiet
    (bounded); returns the clock after it."""
    for _ in range(100):
        out = ini.datagrams_to_send(now)
        if not out:
            break
        now += latency
        sim.now = now
        for dg in out:
            for answer in sim.handle(dg):
                ini.receive_datagram(answer, now)
        if events is not None:
            events.extend(iter(ini.next_event, None))
    else:
        raise AssertionError("the initiator and the responder never went quiet")
    return now


def run(ini: IkeInitiator, sim: SimResponder, until: float, *, start: float = 0.0,
        latency: float = 0.01) -> list:
    """Fire the initiator's timers and deliver until ``until``; the events it emitted."""
    events: list = []
    now = exchange(ini, sim, start, latency, events)
    for _ in range(10_000):
        deadline = ini.get_timer()
        if deadline is None or deadline > until:
            break
        now = max(now, deadline)
        ini.handle_timer(now)
        now = exchange(ini, sim, now, latency, events)
        events.extend(iter(ini.next_event, None))
    else:
        raise AssertionError("timer loop did not end")
    return events
