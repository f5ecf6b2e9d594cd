"""The stack's tables that a peer can grow, each tried past its bound: half-open
connections per listener (deferred or not), SYNs retransmitted while the application
decides, TIME-WAIT, ICMP errors we send and receive, UDP error queues, IPv4
reassembly."""

from __future__ import annotations

from erebus.netstack import stack as stack_mod
from erebus.netstack.stack import NetStack, SYN_BACKLOG, UDP_QUEUE_LIMIT
from erebus.netstack.tcp import State
from erebus.wire import icmp
from erebus.wire.ipv4 import (PROTO_TCP, PROTO_UDP, IPv4Header, Reassembler, build_ipv4,
                              ip_from_str, parse_ipv4)
from erebus.wire.tcp import ACK, RST, SYN, build_tcp, parse_tcp
from erebus.wire.udp import build_udp
from tests.unit.tcp_link import tcp_flags

from .tcp_link import B_IP, Link
from .waiting import run_timers

VIP = "198.19.1.2"


def _syn(src: str, sport: int, dport: int, seq: int = 1000) -> bytes:
    return build_ipv4(src, VIP, PROTO_TCP, build_tcp(src, VIP, sport, dport, seq, 0, SYN,
                                                     65535, mss=1400))


def _spoofed(i: int) -> str:
    return f"198.18.{200 + i // 250}.{1 + i % 250}"


def test_deferred_listener_hands_out_at_most_the_backlog_and_drops_the_rest_silently():
    s = NetStack(VIP)
    listener = s.listen(8080, defer=True)
    for i in range(2000):
        s.receive(_syn(_spoofed(i), 40000 + i % 1000, 8080), 0.0)
    assert len(listener.pending) == SYN_BACKLOG == 128
    assert s.counters.syn_dropped == 2000 - 128
    assert s.output(0.0) == []              # no RST, no SYN-ACK: the peers retry
    # the application takes them all (dialling): still counted against the backlog
    taken = [listener.pending.popleft() for _ in range(128)]
    s.receive(_syn(_spoofed(5000), 40000, 8080), 0.0)
    assert not listener.pending and s.counters.syn_dropped == 2000 - 128 + 1
    # accepted ones are half-open (SYN-RECEIVED) until the handshake completes
    for p in taken[:100]:
        s.accept(p, 0.0)
    s.receive(_syn(_spoofed(5001), 40000, 8080), 0.0)
    assert not listener.pending
    assert len(listener.syn_received) == 100 and listener.half_open == 128
    # a refusal frees a slot
    s.refuse(taken[100])
    s.receive(_syn(_spoofed(5002), 40000, 8080), 0.0)
    assert len(listener.pending) == 1


def test_a_retransmitted_syn_is_handed_out_once_even_while_the_app_dials():
    s = NetStack(VIP)
    listener = s.listen(8080, defer=True)
    s.receive(_syn("198.18.200.1", 40000, 8080), 0.0)
    pending = listener.pending.popleft()           # the application starts dialling
    for t in (1.0, 3.0, 7.0):                      # the peer retransmits its SYN
        s.receive(_syn("198.18.200.1", 40000, 8080), t)
    assert not listener.pending and s.counters.syn_retransmits == 3
    conn = s.accept(pending, 8.0)
    assert len(s.conns) == 1 and conn.state is State.SYN_RECEIVED
    # now the connection answers the retransmission itself (SYN-ACK again, no new dial)
    s.receive(_syn("198.18.200.1", 40000, 8080), 9.0)
    assert not listener.pending and len(s.conns) == 1


def test_a_syn_received_connection_that_times_out_frees_its_slot():
    s = NetStack(VIP)
    listener = s.listen(8080, defer=True, backlog=2)
    for i in range(2):
        s.receive(_syn(_spoofed(i), 40000, 8080), 0.0)
    for _ in range(2):
        s.accept(listener.pending.popleft(), 0.0)
    s.output(0.0)
    assert listener.half_open == 2
    now = run_timers(s, limit=100)
    assert not s.conns and listener.half_open == 0
    s.receive(_syn(_spoofed(9), 40000, 8080), now)
    assert len(listener.pending) == 1


def test_plain_listener_bounds_syn_received():
    s = NetStack(VIP)
    listener = s.listen(80)
    for i in range(1000):
        s.receive(_syn(_spoofed(i), 40000, 80), 0.0)
    assert len(s.conns) == SYN_BACKLOG and len(listener.syn_received) == SYN_BACKLOG
    assert s.counters.syn_dropped == 1000 - SYN_BACKLOG


def test_time_wait_table_is_bounded(monkeypatch):
    monkeypatch.setattr(stack_mod, "MAX_TIME_WAIT", 5)
    link = Link()
    link.b.listen(80)
    conns = []
    for _ in range(20):
        conn = link.a.connect(B_IP, 80, link.now)
        conns.append(conn)
        link.run(lambda: conn.state is State.ESTABLISHED)
        conn.shutdown()                     # A closes first: A goes to TIME-WAIT
        link.a.touch(conn)
        link.run(lambda: conn.state in (State.TIME_WAIT, State.CLOSED) and all(
            c.state is not State.CLOSE_WAIT for c in link.b.conns.values()),
            app=lambda: [c.shutdown() or link.b.touch(c) for c in list(link.b.conns.values())
                         if c.state is State.CLOSE_WAIT])
    in_time_wait = [c for c in link.a.conns.values() if c.state is State.TIME_WAIT]
    assert len(in_time_wait) == 5
    assert link.a.counters.time_wait_overflow == 15
    assert all(c.closed and c.error is None for c in conns if c not in in_time_wait)


def test_icmp_errors_we_send_are_rate_limited():
    s = NetStack(VIP)
    for i in range(1000):
        s.receive(build_ipv4("198.18.2.2", VIP, PROTO_UDP,
                             build_udp("198.18.2.2", VIP, 5000, 9999, b"x")), 0.0)
    assert len(s.output(0.0)) == stack_mod.ICMP_ERRORS_BURST
    assert s.counters.icmp_rate_limited == 1000 - stack_mod.ICMP_ERRORS_BURST
    s.receive(build_ipv4("198.18.2.2", VIP, PROTO_UDP,
                         build_udp("198.18.2.2", VIP, 5000, 9999, b"x")), 1.0)
    assert len(s.output(1.0)) == 1                  # the bucket refills with time


def _icmp_unreach_quoting(seg: bytes, src: str = "198.18.2.2") -> bytes:
    original = build_ipv4(VIP, src, PROTO_TCP, seg)
    return build_ipv4(src, VIP, 1, icmp.build_icmp_error(icmp.DEST_UNREACH,
                                                         icmp.UNREACH_PORT, original))


def test_a_forged_icmp_error_with_a_wrong_sequence_number_is_ignored():
    s = NetStack(VIP)
    conn = s.connect("198.18.2.2", 80, 0.0)
    (syn_packet,) = s.output(0.0)
    h, payload = parse_ipv4(syn_packet)
    seg = parse_tcp(payload, h.src, h.dst)
    forged = build_tcp(VIP, "198.18.2.2", conn.local_port, 80, seg.seq + 12345, 0, SYN, 0)
    s.receive(_icmp_unreach_quoting(forged), 0.1)
    assert conn.state is State.SYN_SENT and s.counters.icmp_ignored == 1
    s.receive(_icmp_unreach_quoting(bytes(payload)), 0.2)
    assert conn.closed and "connection refused" in conn.error


def test_udp_error_queue_is_bounded():
    s = NetStack(VIP)
    sock = s.udp_bind(5353)
    quoted = build_udp(VIP, "198.18.2.2", 5353, 53, b"q")
    for _ in range(3 * UDP_QUEUE_LIMIT):
        original = build_ipv4(VIP, "198.18.2.2", PROTO_UDP, quoted)
        s.receive(build_ipv4("198.18.2.2", VIP, 1, icmp.build_icmp_error(
            icmp.DEST_UNREACH, icmp.UNREACH_PORT, original)), 0.0)
    assert len(sock.errors) == UDP_QUEUE_LIMIT


def test_reassembly_refuses_a_datagram_in_too_many_pieces():
    r = Reassembler(max_fragments=16)
    src, dst = ip_from_str("198.18.2.2"), ip_from_str(VIP)
    for k in range(40):                           # 8-byte pieces of one datagram
        header = IPv4Header(ihl=5, tos=0, total_length=28, ident=7,
                            flags=1, frag_offset=8 * k, ttl=64, protocol=PROTO_UDP,
                            checksum=0, src=src, dst=dst)
        assert r.add(header, b"z" * 8, 0.0) is None
    assert r.stats.too_many == 1
    assert sum(len(e.starts) for e in r._entries.values()) <= 16


def test_a_syn_reset_by_unlisten_cannot_be_accepted_or_refused_afterwards():
    s = NetStack(VIP)
    listener = s.listen(8080, defer=True)
    s.receive(_syn("198.18.200.1", 40000, 8080), 0.0)
    s.receive(_syn("198.18.200.2", 40000, 8080), 0.0)
    dialling = [listener.pending.popleft(), listener.pending.popleft()]
    s.unlisten(listener)                         # the -R rule is closed: RST for both
    assert tcp_flags(s.output(0.0)) == [RST | ACK, RST | ACK]
    # the dials finish afterwards: no SYN-ACK for a reset 4-tuple, no second RST
    assert s.accept(dialling[0], 1.0) is None
    assert s.refuse(dialling[1]) is False
    assert s.output(1.0) == [] and not s.conns and s.counters.rst_sent == 2


def test_a_deferred_syn_is_answered_once():
    s = NetStack(VIP)
    listener = s.listen(8080, defer=True)
    s.receive(_syn("198.18.200.1", 40000, 8080), 0.0)
    s.receive(_syn("198.18.200.2", 40000, 8080), 0.0)
    first, second = listener.pending.popleft(), listener.pending.popleft()
    conn = s.accept(first, 0.0)
    assert conn is not None and s.accept(first, 0.0) is None and s.refuse(first) is False
    assert s.refuse(second) is True and s.refuse(second) is False
    assert s.accept(second, 0.0) is None
    assert sorted(tcp_flags(s.output(0.0))) == sorted([SYN | ACK, RST | ACK])
    assert list(s.conns.values()) == [conn]


def test_an_icmp_error_for_a_half_open_connection_frees_its_slot_at_once():
    s = NetStack(VIP)
    listener = s.listen(8080, backlog=1)
    s.receive(_syn("198.18.2.2", 40000, 8080), 0.0)
    (synack,) = s.output(0.0)
    assert listener.half_open == 1
    h, payload = parse_ipv4(synack)
    s.receive(_icmp_unreach_quoting(bytes(payload)[:8]), 0.1)  # RFC 792 quotes 8 bytes
    assert listener.half_open == 0 and not s.conns
    s.receive(_syn("198.18.2.3", 40000, 8080), 0.2)            # before any output()
    assert listener.half_open == 1 and s.counters.syn_dropped == 0
    (synack,) = s.output(0.2)
    h, payload = parse_ipv4(synack)
    s.receive(_icmp_unreach_quoting(bytes(payload)[:4], "198.18.2.3"), 0.3)  # ports only
    assert s.counters.icmp_ignored == 1 and listener.half_open == 1 and len(s.conns) == 1
