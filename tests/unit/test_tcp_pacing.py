"""The sender's burst limit, in virtual time: no output pass emits more than
MAX_BURST_SEGMENTS segments of data, the rest follows on the next ACK or the pacing
deadline, and the bytes still arrive intact."""

from __future__ import annotations

from erebus.netstack.tcp import MAX_BURST_SEGMENTS
from erebus.wire.ipv4 import parse_ipv4
from erebus.wire.tcp import parse_tcp

from .tcp_link import Link
from .test_tcp import Transfer, blob, check


def _data_segments(packets: list[bytes]) -> int:
    n = 0
    for p in packets:
        h, payload = parse_ipv4(p)
        if parse_tcp(payload, h.src, h.dst).payload:
            n += 1
    return n


def _bursts(link: Link) -> list[int]:
    bursts: list[int] = []
    output = link.a.output

    def counted(now):
        packets = output(now)
        bursts.append(_data_segments(packets))
        return packets
    link.a.output = counted
    return bursts


def test_no_output_pass_exceeds_the_burst_limit_and_bytes_arrive():
    link = Link(delay=0.02, b_kw={"rcv_buf": 4 << 20})
    bursts = _bursts(link)
    t = Transfer(link, blob(3 << 20, 1), b"")
    assert link.run(t.done, t.app)
    check(t)
    assert max(bursts) == MAX_BURST_SEGMENTS       # the window allowed more: it was cut
    assert t.a.retransmits == 0


def test_a_cut_burst_resumes_on_the_pacing_deadline_without_an_ack():
    cut = {}
    link = Link(delay=0.02, b_kw={"rcv_buf": 4 << 20},
                drop=lambda p, dst: cut.get("on", False) and dst is link.a)
    t = Transfer(link, blob(3 << 20, 3), b"")
    output = link.a.output

    def watched(now):
        packets = output(now)
        conn = t.a
        if conn is not None and conn.srtt is not None and not cut:
            # a window with room for several bursts, whatever slow start did so far
            # (this link's receiver ACKs once per burst it receives: stretch ACKs)
            conn.cwnd = max(conn.cwnd, 8 * MAX_BURST_SEGMENTS * conn.mss)
        if cut.get("on"):
            cut["after"] += _data_segments(packets)
        elif not cut and conn._pace_deadline is not None and min(conn.cwnd, conn.snd_wnd) \
                - (conn.snd_nxt - conn.snd_una) > MAX_BURST_SEGMENTS * conn.mss:
            # a burst was cut with room for another in both windows: from now on no ACK
            # reaches A, so only the pacing deadline can send that one
            cut.update(on=True, after=0, rto_at=conn._rtx_deadline)
        return packets
    link.a.output = watched
    assert link.run(lambda: bool(cut), t.app)
    conn = t.a
    assert link.run(lambda: cut["after"] >= MAX_BURST_SEGMENTS, t.app, limit=cut["rto_at"])
    assert link.now < cut["rto_at"] and conn.retransmits == 0
    cut["on"] = False                  # the ACKs flow again
    assert link.run(t.done, t.app)
    check(t)
