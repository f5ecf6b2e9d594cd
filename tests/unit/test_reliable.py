"""The control channel's reliability layer: window, retransmission, ordering, loss."""

from __future__ import annotations

import heapq
import random

import pytest

from erebus.openvpn.reliable import (INITIAL_TIMEOUT, MAX_TIMEOUT, RECEIVE_WINDOW,
                                     SEND_WINDOW, ReliableReceive, ReliableSend)
from erebus.wire.openvpn import MAX_ACKS, P_CONTROL_V1


def ids(sent):
    return [pid for pid, _, _ in sent]


# --- sender -------------------------------------------------------------------------------

def test_defaults_match_openvpn():
    assert (SEND_WINDOW, RECEIVE_WINDOW, INITIAL_TIMEOUT) == (6, 12, 2.0)


def test_ids_start_at_zero_and_carry_opcode_and_payload():
    s = ReliableSend()
    s.push(P_CONTROL_V1, b"first")
    s.push(3, b"second")
    assert s.due(0.0) == [(0, P_CONTROL_V1, b"first"), (1, 3, b"second")]


def test_at_most_six_in_flight():
    s = ReliableSend()
    for i in range(10):
        s.push(P_CONTROL_V1, b"m%d" % i)
    assert ids(s.due(0.0)) == [0, 1, 2, 3, 4, 5]
    assert s.due(0.5) == []                  # window full, nothing timed out yet
    assert s.ack(0)
    assert ids(s.due(0.6)) == [6]            # one slot opened, one new message
    assert s.due(0.7) == []


def test_window_slides_from_the_oldest_unacked_message():
    s = ReliableSend()
    for i in range(10):
        s.push(P_CONTROL_V1, b"x")
    s.due(0.0)
    for pid in (1, 2, 3, 4, 5):              # everything but the oldest
        assert s.ack(pid)
    # id 6 would be 6 ahead of unacked id 0: not sent; 0 itself is fast-retransmitted
    assert ids(s.due(0.1)) == [0]
    assert s.ack(0)
    assert ids(s.due(0.2)) == [6, 7, 8, 9]


def test_retransmit_after_two_seconds_with_doubling_backoff_capped():
    s = ReliableSend()
    s.push(P_CONTROL_V1, b"hello")
    assert ids(s.due(0.0)) == [0]
    assert s.next_deadline() == pytest.approx(2.0)
    assert s.due(1.99) == []
    times = []
    now = 0.0
    for _ in range(8):
        now = s.next_deadline()
        sent = s.due(now)
        assert sent == [(0, P_CONTROL_V1, b"hello")]
        times.append(now)
    gaps = [round(b - a, 6) for a, b in zip([0.0] + times, times)]
    assert gaps == [2.0, 4.0, 8.0, 16.0, 16.0, 16.0, 16.0, 16.0]
    assert max(gaps) == MAX_TIMEOUT
    assert s.retransmissions == 8


def test_retransmission_keeps_packet_id_and_only_resends_what_is_due():
    s = ReliableSend()
    s.push(P_CONTROL_V1, b"a")
    s.due(0.0)
    s.push(P_CONTROL_V1, b"b")
    s.due(1.0)                               # b first sent at t=1
    assert s.due(2.0) == [(0, P_CONTROL_V1, b"a")]
    assert s.due(3.0) == [(1, P_CONTROL_V1, b"b")]


def test_ack_removes_message_for_good():
    s = ReliableSend()
    s.push(P_CONTROL_V1, b"a")
    s.due(0.0)
    assert not s.idle
    assert s.ack(0) is True
    assert s.ack(0) is False                 # second ACK of the same id
    assert s.ack(42) is False                # never sent
    assert s.idle and s.next_deadline() is None
    assert s.due(1000.0) == []
    assert s.retransmissions == 0


def test_custom_timeouts():
    s = ReliableSend(initial_timeout=0.5, max_timeout=1.0)
    s.push(P_CONTROL_V1, b"a")
    s.due(0.0)
    assert s.due(0.5) and s.next_deadline() == pytest.approx(1.5)
    assert s.due(1.5) and s.next_deadline() == pytest.approx(2.5)


# --- receiver -----------------------------------------------------------------------------

def test_in_order_delivery_despite_reordering():
    r = ReliableReceive()
    r.receive(2, P_CONTROL_V1, b"c")
    r.receive(1, P_CONTROL_V1, b"b")
    assert r.ready() == []
    assert sorted(r.take_acks(MAX_ACKS)) == [1, 2]   # ACKed though not yet deliverable
    r.receive(0, P_CONTROL_V1, b"a")
    assert r.ready() == [(0, P_CONTROL_V1, b"a"), (1, P_CONTROL_V1, b"b"),
                         (2, P_CONTROL_V1, b"c")]
    assert r.take_acks(MAX_ACKS) == [0]
    assert r.ready() == []


def test_duplicates_suppressed_but_acked_again():
    r = ReliableReceive()
    r.receive(0, P_CONTROL_V1, b"a")
    assert r.ready() == [(0, P_CONTROL_V1, b"a")]
    assert r.take_acks(MAX_ACKS) == [0]
    assert not r.has_acks
    r.receive(0, P_CONTROL_V1, b"a")                  # the peer lost our ACK
    assert r.ready() == []
    assert r.has_acks and r.take_acks(MAX_ACKS) == [0]
    r.receive(3, P_CONTROL_V1, b"d")                  # buffered, not delivered
    r.receive(3, P_CONTROL_V1, b"d")
    assert r.take_acks(MAX_ACKS) == [3]               # one ACK pending, not two
    assert r.duplicates == 2


def test_out_of_window_dropped_without_ack():
    r = ReliableReceive()
    r.receive(RECEIVE_WINDOW, P_CONTROL_V1, b"too far")
    assert not r.has_acks and r.out_of_window == 1
    r.receive(RECEIVE_WINDOW - 1, P_CONTROL_V1, b"last slot")
    assert r.take_acks(MAX_ACKS) == [RECEIVE_WINDOW - 1]
    for pid in range(RECEIVE_WINDOW - 1):
        r.receive(pid, P_CONTROL_V1, b"%d" % pid)
    delivered = r.ready()
    assert [pid for pid, _, _ in delivered] == list(range(RECEIVE_WINDOW))
    assert delivered[-1][2] == b"last slot"
    # the window moved: what was too far is now acceptable
    r.receive(RECEIVE_WINDOW, P_CONTROL_V1, b"now fine")
    assert r.ready() == [(RECEIVE_WINDOW, P_CONTROL_V1, b"now fine")]


def test_take_acks_respects_limit_and_keeps_the_rest():
    r = ReliableReceive()
    for pid in range(11, -1, -1):
        r.receive(pid, P_CONTROL_V1, b"")
    first = r.take_acks(MAX_ACKS)
    assert len(first) == MAX_ACKS
    rest = r.take_acks(MAX_ACKS)
    assert sorted(first + rest) == list(range(12))
    assert not r.has_acks and r.take_acks(MAX_ACKS) == []


# --- a lossy link -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lossy_link_carries_200_messages_in_order(seed):
    rng = random.Random(seed)
    loss = 0.20
    sender, receiver = ReliableSend(), ReliableReceive()
    messages = [b"msg-%03d-" % i + bytes(rng.randrange(256) for _ in range(rng.randrange(20)))
                for i in range(200)]
    for m in messages:
        sender.push(P_CONTROL_V1, m)

    events: list[tuple[float, int, str, object]] = []   # (time, seq, kind, data)
    seq = 0

    def transmit(now, kind, data):
        nonlocal seq
        if rng.random() < loss:
            return
        seq += 1
        heapq.heappush(events, (now + rng.uniform(0.01, 0.4), seq, kind, data))

    delivered: list[bytes] = []
    now = 0.0
    sent = 0
    for _step in range(100_000):
        for pid, opcode, payload in sender.due(now):
            sent += 1
            transmit(now, "msg", (pid, opcode, payload))
        if receiver.has_acks:
            transmit(now, "ack", receiver.take_acks(MAX_ACKS))
        if len(delivered) == len(messages) and sender.idle:
            break
        deadline = sender.next_deadline()
        candidates = [t for t in (deadline, events[0][0] if events else None) if t is not None]
        assert candidates, "link went quiet with work left"
        now = max(now, min(candidates))
        while events and events[0][0] <= now:
            _, _, kind, data = heapq.heappop(events)
            if kind == "msg":
                receiver.receive(*data)
                for pid, opcode, payload in receiver.ready():
                    assert opcode == P_CONTROL_V1
                    assert pid == len(delivered)
                    delivered.append(payload)
            else:
                for pid in data:
                    sender.ack(pid)
    assert delivered == messages
    assert sender.idle
    assert sender.retransmissions > 0 and sent > len(messages)   # the link really was lossy
    assert now < 10_000


def test_ack_history_refills_free_slots_for_a_stateless_2_6_server():
    """A 2.6 server forgets its stateless HARD_RESET_SERVER_V2 until a packet ACKs it:
    if the first packet carrying that ACK is lost, later packets must carry it again."""
    from erebus.openvpn.reliable import ReliableReceive
    r = ReliableReceive()
    r.receive(0, 8, b"")
    assert r.take_acks(4, history=True) == [0]          # first carrier (lost on the way)
    assert not r.has_acks
    assert r.take_acks(4, history=True) == [0]          # the retransmission carries it again
    assert r.take_acks(4) == []                          # standalone ACKs: pending only
    for pid in range(1, 12):
        r.receive(pid, 4, b"x")
    first = r.take_acks(4, history=True)
    assert first == [1, 2, 3, 4]
    assert r.take_acks(8, history=True)[:7] == [5, 6, 7, 8, 9, 10, 11]


def test_fast_retransmit_after_three_later_acks_as_2_6():
    """A lost message is resent as soon as ACKs of three later messages arrived (2.6's
    N_ACK_RETRANSMIT), without waiting for its timer and without doubling it."""
    s = ReliableSend()
    for payload in (b"a", b"b", b"c", b"d"):
        s.push(P_CONTROL_V1, payload)
    assert len(s.due(0.0)) == 4
    s.ack(1)
    s.ack(2)
    assert s.due(0.5) == [] and s.next_deadline() == INITIAL_TIMEOUT
    s.ack(3)                                 # the third later ACK: 0 is resent now
    assert s.next_deadline() <= 0.5
    assert s.due(0.5) == [(0, P_CONTROL_V1, b"a")] and s.retransmissions == 1
    assert s.next_deadline() == 0.5 + INITIAL_TIMEOUT     # same timeout, not doubled
    assert s.due(0.6) == []                  # once, not on every later look
