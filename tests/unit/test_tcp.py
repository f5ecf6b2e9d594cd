"""Our TCP against our TCP over a simulated link, in virtual time: every byte arrives,
in order, once, whatever the link does."""

from __future__ import annotations

import hashlib
import random

import pytest

from erebus.netstack.tcp import State
from erebus.wire.ipv4 import ip_from_str, parse_ipv4
from erebus.wire.tcp import RST, SYN, parse_tcp

from .tcp_link import A_IP, B_IP, Link


class Transfer:
    """A connects to B:80; each side sends its blob, reads everything, then shuts down."""

    def __init__(self, link: Link, a_data: bytes, b_data: bytes, *, read_limit=None,
                 a_close=True, b_close=True, dst=B_IP):
        self.link = link
        self.listener = link.b.listen(80)
        self.a = link.a.connect(dst, 80, link.now)
        self.b = None
        self.out = {"a": a_data, "b": b_data}
        self.sent = {"a": 0, "b": 0}
        self.got = {"a": bytearray(), "b": bytearray()}
        self.read_limit = read_limit      # bytes per app step at B (slow reader)
        self.close = {"a": a_close, "b": b_close}
        self.shut = {"a": False, "b": False}
        self.b_paused = False

    def app(self):
        if self.b is None and self.listener.accepted:
            self.b = self.listener.accepted.popleft()
        for name, conn, stack in (("a", self.a, self.link.a), ("b", self.b, self.link.b)):
            if conn is None or conn.closed and conn.error:
                continue
            if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
                data = self.out[name]
                if self.sent[name] < len(data):
                    self.sent[name] += conn.send(memoryview(data)[self.sent[name]:])
                if self.sent[name] == len(data) and self.close[name] and not self.shut[name]:
                    conn.shutdown()
                    self.shut[name] = True
            limit = self.read_limit if name == "b" and self.read_limit else -1
            if name == "b" and self.b_paused:
                limit = 0
            for chunk in conn.read(limit):
                self.got[name] += chunk
            stack.touch(conn)

    def done(self):
        return (self.b is not None and len(self.got["b"]) == len(self.out["a"])
                and len(self.got["a"]) == len(self.out["b"])
                and self.a.at_eof and self.b.at_eof)


def blob(n, seed=0):
    return random.Random(seed).randbytes(n)


def check(t: Transfer):
    assert hashlib.sha256(t.got["b"]).hexdigest() == hashlib.sha256(t.out["a"]).hexdigest()
    assert hashlib.sha256(t.got["a"]).hexdigest() == hashlib.sha256(t.out["b"]).hexdigest()


def test_clean_transfer_both_ways_and_orderly_close():
    link = Link()
    t = Transfer(link, blob(300_000, 1), blob(200_000, 2))
    assert link.run(t.done, t.app)
    check(t)
    link.run(lambda: t.a.closed and t.b.closed, t.app, limit=link.now + 200)
    # A closed first... or both at once: one side passes through TIME-WAIT, then both end
    assert t.a.closed and t.b.closed and t.a.error is None and t.b.error is None
    assert not link.a.conns and not link.b.conns


@pytest.mark.parametrize("seed", range(6))
def test_loss_reorder_duplication(seed):
    link = Link(loss=0.05, dup=0.03, reorder=0.1, delay=0.02, jitter=0.005, seed=seed)
    t = Transfer(link, blob(400_000, seed), blob(100_000, seed + 100))
    assert link.run(t.done, t.app, limit=600), (len(t.got["b"]), len(t.got["a"]))
    check(t)
    assert t.a.retransmits + t.b.retransmits > 0


def test_heavy_loss_still_exact():
    link = Link(loss=0.2, delay=0.01, seed=7)
    t = Transfer(link, blob(100_000, 3), b"")
    assert link.run(t.done, t.app, limit=3000)
    check(t)


def test_sack_negotiated_and_used_by_the_receiver():
    link = Link(loss=0.03, seed=3)
    t = Transfer(link, blob(300_000, 4), b"")
    link.run(lambda: t.b is not None, t.app)
    assert t.a.sack_ok and t.b.sack_ok and t.a.ts_ok and t.a._wscale_ok
    assert link.run(t.done, t.app)
    check(t)


def test_slow_reader_bounds_memory_and_zero_window_recovers():
    # B's buffer is 64 KiB and B reads 4 KiB per step: A must be held back by the window
    link = Link(b_kw={"rcv_buf": 65536})
    t = Transfer(link, blob(1_000_000, 5), b"", read_limit=4096)
    peak = 0

    def app():
        nonlocal peak
        t.app()
        if t.b is not None:
            peak = max(peak, t.b.readable + t.b._ooo.charge)

    assert link.run(t.done, app, limit=5000)
    check(t)
    assert peak <= 65536


def test_zero_window_probe_then_resume():
    link = Link(b_kw={"rcv_buf": 32768})
    t = Transfer(link, blob(200_000, 6), b"")
    t.b_paused = True          # B's application reads nothing for a while

    def stalled():
        return t.b is not None and t.a.snd_wnd == 0

    assert link.run(stalled, t.app, limit=100)
    stall_start = link.now
    sent_before = t.a.segments_out
    link.run(lambda: link.now > stall_start + 120, t.app, limit=stall_start + 121)
    # a minute later A is still connected and has been probing the closed window
    assert t.a.state in (State.ESTABLISHED, State.CLOSE_WAIT) and t.a.error is None
    assert 3 <= t.a.segments_out - sent_before < 100
    t.b_paused = False
    assert link.run(t.done, t.app, limit=link.now + 200)
    check(t)


def test_half_close_peer_keeps_sending():
    link = Link()
    t = Transfer(link, blob(1000, 8), blob(500_000, 9), b_close=True)
    link.run(lambda: t.shut["a"], t.app)
    assert link.run(lambda: t.b is not None and t.b.fin_received, t.app)
    assert t.b.state in (State.CLOSE_WAIT, State.LAST_ACK)
    assert link.run(t.done, t.app)
    check(t)


def test_simultaneous_close():
    link = Link()
    t = Transfer(link, b"x" * 10, b"y" * 10, a_close=False, b_close=False)
    assert link.run(lambda: len(t.got["a"]) == 10 and len(t.got["b"]) == 10, t.app)
    t.a.shutdown()
    t.b.shutdown()
    link.a.touch(t.a)
    link.b.touch(t.b)
    states = set()
    link.run(lambda: t.a.closed and t.b.closed,
             lambda: states.update({t.a.state, t.b.state}), limit=link.now + 200)
    assert State.CLOSING in states or State.TIME_WAIT in states
    assert t.a.closed and t.b.closed and t.a.error is None


def test_connect_to_a_closed_port_is_refused():
    link = Link()
    conn = link.a.connect(B_IP, 81, 0.0)
    link.run(lambda: conn.closed)
    assert conn.error == "connection refused"
    assert link.b.counters.rst_sent == 1


def test_reset_by_peer_mid_transfer():
    link = Link()
    t = Transfer(link, blob(500_000, 10), b"")
    link.run(lambda: len(t.got["b"]) > 100_000, t.app)
    link.b.abort(t.b, link.now)
    link.run(lambda: t.a.closed, t.app, limit=link.now + 10)
    assert t.a.error == "connection reset by peer"


def test_blind_rst_with_wrong_sequence_gets_a_challenge_ack():
    from erebus.wire.ipv4 import build_ipv4, PROTO_TCP
    from erebus.wire.tcp import build_tcp
    link = Link()
    t = Transfer(link, b"hello", b"", a_close=False, b_close=False)
    link.run(lambda: len(t.got["b"]) == 5, t.app)
    conn = t.a
    bad_seq = (conn._rcv_seq(conn.rcv_nxt) + 1000) % (1 << 32)
    forged = build_ipv4(B_IP, A_IP, PROTO_TCP, build_tcp(B_IP, A_IP, 80, conn.local_port,
                                                         bad_seq, 0, RST, 0))
    link.a.receive(forged, link.now)
    assert conn.state is State.ESTABLISHED and conn._challenge_acks == 1


def test_syn_retries_then_timeout():
    link = Link(loss=1.0)
    conn = link.a.connect(B_IP, 80, 0.0)
    link.run(lambda: conn.closed, limit=1000)
    assert conn.error == "connection timed out"
    assert 60 < link.now < 200          # 1 + 2 + 4 + ... seconds of SYN retries


def test_rto_backoff_and_recovery_after_outage():
    down = {"on": False}
    link = Link(drop=lambda p, dst: down["on"])
    t = Transfer(link, blob(300_000, 11), b"")
    link.run(lambda: len(t.got["b"]) > 50_000, t.app)
    down["on"] = True
    start = link.now
    link.run(lambda: link.now > start + 20, t.app, limit=start + 21)
    rto_during = t.a.rto
    down["on"] = False
    assert rto_during > 2
    assert link.run(t.done, t.app, limit=link.now + 300)
    check(t)


def test_mss_follows_the_mtu_and_no_packet_exceeds_it():
    sizes = []

    def spy(p, dst):
        sizes.append(len(p))
        return False

    link = Link(mtu=1280, drop=spy)
    t = Transfer(link, blob(100_000, 12), b"")
    assert link.run(t.done, t.app)
    check(t)
    assert max(sizes) <= 1280 and t.a.mss == 1240


def test_isn_differs_per_connection_and_is_not_zero_based():
    link = Link()
    link.b.listen(80)
    c1 = link.a.connect(B_IP, 80, 0.0)
    c2 = link.a.connect(B_IP, 80, 0.0)
    assert c1.iss != c2.iss


def test_segments_to_a_closed_connection_get_rst_with_the_right_numbers():
    link = Link()
    from erebus.wire.ipv4 import build_ipv4, PROTO_TCP
    from erebus.wire.tcp import ACK, build_tcp
    stray = build_ipv4(A_IP, B_IP, PROTO_TCP, build_tcp(A_IP, B_IP, 5555, 80, 1000, 777,
                                                        ACK, 100, b"data"))
    link.b.receive(stray, 0.0)
    (out,) = link.b.output(0.0)
    h, payload = parse_ipv4(out)
    seg = parse_tcp(payload, h.src, h.dst)
    assert seg.flags == RST and seg.seq == 777
    syn = build_ipv4(A_IP, B_IP, PROTO_TCP, build_tcp(A_IP, B_IP, 5555, 81, 1000, 0, SYN, 100))
    link.b.receive(syn, 0.0)
    (out,) = link.b.output(0.0)
    h, payload = parse_ipv4(out)
    seg = parse_tcp(payload, h.src, h.dst)
    assert seg.rst and seg.ack_flag and seg.ack == 1001
    assert h.dst == ip_from_str(A_IP)


def test_ping_of_the_virtual_ip_is_answered():
    from erebus.wire import icmp
    from erebus.wire.ipv4 import build_ipv4, PROTO_ICMP
    link = Link()
    req = build_ipv4(A_IP, B_IP, PROTO_ICMP, icmp.build_echo_request(7, 1, b"abc"))
    link.b.receive(req, 0.0)
    (out,) = link.b.output(0.0)
    h, payload = parse_ipv4(out)
    reply = icmp.parse_icmp(payload)
    assert reply.type == icmp.ECHO_REPLY and reply.ident == 7 and reply.data == b"abc"


def test_deferred_listener_refuses_with_rst():
    link = Link()
    listener = link.b.listen(8080, defer=True)
    conn = link.a.connect(B_IP, 8080, 0.0)
    link.run(lambda: bool(listener.pending))
    link.b.refuse(listener.pending.popleft())
    link.run(lambda: conn.closed)
    assert conn.error == "connection refused"


def test_deferred_listener_accepts():
    link = Link()
    listener = link.b.listen(8080, defer=True)
    conn = link.a.connect(B_IP, 8080, 0.0)
    link.run(lambda: bool(listener.pending))
    b = link.b.accept(listener.pending.popleft(), link.now)
    link.run(lambda: conn.state is State.ESTABLISHED and bool(listener.accepted))
    assert listener.accepted[0] is b


def test_reordering_is_learned_and_its_spurious_reduction_undone():
    link = Link(reorder=0.1, delay=0.01, seed=1)
    t = Transfer(link, blob(3_000_000, 1), b"")
    assert link.run(t.done, t.app, limit=600)
    check(t)
    assert t.a.spurious_undos > 0 and t.a.reordering > 3
    assert t.a.retransmits < 0.01 * t.a.segments_out      # no retransmission storm
