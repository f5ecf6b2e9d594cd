"""The stack over IPv6 and IPv4 at once: TCP both roles, UDP, ICMPv6, RST and port
unreachable for closed ports, path MTU discovery (ICMPv6 packet too big and ICMPv4
fragmentation needed), in virtual time between two stacks."""

from __future__ import annotations

import errno

import pytest

from erebus.netstack.errors import NetErrorReason
from erebus.netstack.stack import NetStack
from erebus.wire import icmp, icmpv6
from erebus.wire.inet import addr_str, to_addr
from erebus.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4, parse_ipv4
from erebus.wire.ipv6 import NH_FRAGMENT, NH_ICMPV6, build_ipv6, ip6_from_str, parse_ipv6
from erebus.wire.tcp import RST
from erebus.wire.udp import build_udp, parse_udp

from .tcp_link import A_IP, A_IP6, B_IP, B_IP6, Link, tcp_flags
from .test_tcp import Transfer, blob, check

PEER6 = "2001:2:0:2::2"


def _parse(packet):
    return parse_ipv6(packet) if packet[0] >> 4 == 6 else parse_ipv4(packet)


def test_inet_addresses():
    assert to_addr("198.18.0.1") == 0xC6120001
    assert to_addr("2001:2::1") == ip6_from_str("2001:2::1")
    assert to_addr("::1") == bytes(15) + b"\x01"        # small, still IPv6
    assert addr_str(to_addr("2001:0002:0:0::0001")) == "2001:2::1"
    with pytest.raises(ValueError, match="IPv4-mapped"):
        to_addr("::ffff:198.18.0.1")
    for bad in ("web.lab.test", "2001:2::1%eth0", b"abc", 1 << 40, None):
        with pytest.raises(ValueError):
            to_addr(bad)


@pytest.mark.parametrize("seed, loss", [(1, 0.0), (2, 0.03), (3, 0.08)])
def test_tcp_over_ipv6_both_ways(seed, loss):
    link = Link(ipv6=True, loss=loss, reorder=0.05, seed=seed)
    seen = []
    link.drop = lambda p, dst: seen.append(p) and False
    t = Transfer(link, blob(400_000, seed), blob(300_000, seed + 10), dst=B_IP6)
    assert link.run(t.done, t.app, limit=3000)
    check(t)
    assert {p[0] >> 4 for p in seen} == {6}
    assert max(len(p) for p in seen) <= 1500
    assert t.a.mss == t.b.mss == 1440                     # 1500 - 40 - 20
    assert t.b.remote_ip == to_addr(A_IP6)
    assert t.a.key[0] == to_addr(B_IP6) and t.a.key[2] == to_addr(A_IP6)


def test_one_listener_serves_both_families_at_once():
    link = Link(ipv6=True)
    listener = link.b.listen(80)
    c4 = link.a.connect(B_IP, 80, 0.0)
    c6 = link.a.connect(B_IP6, 80, 0.0)
    assert link.run(lambda: len(listener.accepted) == 2)
    peers = {addr_str(c.remote_ip) for c in listener.accepted}
    assert peers == {A_IP, A_IP6}
    assert c4.mss == 1460 and c6.mss == 1440


def test_deferred_syn_names_its_ipv6_peer():
    link = Link(ipv6=True)
    listener = link.b.listen(22, defer=True)
    link.a.connect(B_IP6, 22, 0.0)
    link.run(lambda: listener.pending)
    pending = listener.pending.popleft()
    assert pending.peer[0] == A_IP6
    assert link.b.accept(pending, link.now) is not None


def test_a_family_without_an_address_is_unreachable():
    link = Link()                                          # IPv4 only
    with pytest.raises(OSError) as info:
        link.a.connect(B_IP6, 80, 0.0)
    assert info.value.errno == errno.ENETUNREACH and "no IPv6 address" in str(info.value)
    sock = link.a.udp_bind(0)
    with pytest.raises(OSError) as info:
        link.a.udp_send(sock, b"x", B_IP6, 53)
    assert info.value.errno == errno.ENETUNREACH
    only6 = NetStack(None, local_ip6=A_IP6)
    with pytest.raises(OSError, match="no IPv4 address"):
        only6.connect(B_IP, 80, 0.0)
    with pytest.raises(ValueError):
        NetStack("2001:2::1")                              # IPv6 goes in local_ip6
    # an IPv4 packet to a stack without IPv4 is not for us
    only6.receive(build_ipv4(B_IP, A_IP, PROTO_UDP, build_udp(B_IP, A_IP, 1, 2, b"x")), 0)
    assert only6.counters.not_for_us == 1 and not only6.output(0)


def test_closed_port_over_ipv6_is_refused_with_rst():
    link = Link(ipv6=True)
    conn = link.a.connect(B_IP6, 81, 0.0)
    packets = []
    link.drop = lambda p, dst: packets.append(p) and False
    link.run(lambda: conn.closed)
    assert conn.failure.reason is NetErrorReason.REFUSED
    assert any(f & RST for f in tcp_flags(packets))


def test_icmpv6_echo_discovery_and_strangers():
    s = NetStack(A_IP, local_ip6=A_IP6)
    echo = icmpv6.build_echo_request(PEER6, A_IP6, 7, 1, b"ping")
    s.receive(build_ipv6(PEER6, A_IP6, NH_ICMPV6, echo), 0.0)
    (reply,) = s.output(0.0)
    h, payload = parse_ipv6(reply)
    assert (h.src_str, h.dst_str) == (A_IP6, PEER6)
    msg = icmpv6.parse_icmpv6(payload, h.src, h.dst)
    assert msg.type == icmpv6.ECHO_REPLY and (msg.ident, msg.seq, msg.data) == (7, 1, b"ping")
    # neighbour solicitation to our solicited-node group, router advertisement to us:
    # ignored, nothing sent
    ns = icmpv6.build_icmpv6(PEER6, "ff02::1:ff00:1", icmpv6.NEIGHBOR_SOLICITATION, 0, 0,
                             ip6_from_str(A_IP6))
    s.receive(build_ipv6(PEER6, "ff02::1:ff00:1", NH_ICMPV6, ns, hop_limit=255), 0.0)
    ra = icmpv6.build_icmpv6("fe80::1", A_IP6, icmpv6.ROUTER_ADVERTISEMENT, 0, 0, bytes(8))
    s.receive(build_ipv6("fe80::1", A_IP6, NH_ICMPV6, ra, hop_limit=255), 0.0)
    s.receive(build_ipv6(PEER6, "2001:2:0:99::1", NH_ICMPV6, echo), 0.0)
    s.receive(b"\x60" + bytes(10), 0.0)
    assert not s.output(0.0)
    c = s.counters
    assert (c.discovery_ignored, c.not_for_us, c.malformed, c.echo_replies) == (2, 1, 1, 1)


def test_udp_over_ipv6_both_ways_and_port_unreachable():
    s = NetStack(A_IP, local_ip6=A_IP6)
    sock = s.udp_bind(5353)
    s.receive(build_ipv6(PEER6, A_IP6, PROTO_UDP, build_udp(PEER6, A_IP6, 4000, 5353,
                                                              b"query")), 0.0)
    assert sock.queue.popleft() == (b"query", (PEER6, 4000))
    s.udp_send(sock, b"answer", PEER6, 4000)
    (out,) = s.output(0.0)
    h, payload = parse_ipv6(out)
    d = parse_udp(payload, h.src, h.dst)
    assert (h.src_str, d.src_port, d.dst_port, bytes(d.payload)) == (A_IP6, 5353, 4000,
                                                                      b"answer")
    with pytest.raises(OSError) as info:
        s.udp_send(sock, bytes(1500 - 47), PEER6, 4000)    # fits IPv4, not IPv6
    assert info.value.errno == errno.EMSGSIZE
    s.udp_send(sock, bytes(1500 - 47), B_IP, 4000)
    s.output(0.0)
    # to a closed port: port unreachable quoting the datagram
    probe = build_ipv6(PEER6, A_IP6, PROTO_UDP, build_udp(PEER6, A_IP6, 4000, 9, b"?"))
    s.receive(probe, 0.0)
    (err,) = s.output(0.0)
    h, payload = parse_ipv6(err)
    msg = icmpv6.parse_icmpv6(payload, h.src, h.dst)
    assert (msg.type, msg.code) == (icmpv6.DEST_UNREACH, icmpv6.UNREACH_PORT)
    assert msg.original.dst_port == 9 and h.dst_str == PEER6


def test_an_ipv6_udp_datagram_in_fragments_is_reassembled():
    s = NetStack(None, local_ip6=A_IP6)
    sock = s.udp_bind(7)
    data = blob(3000, 5)
    udp = build_udp(PEER6, A_IP6, 4000, 7, data)
    pieces = [udp[:1448], udp[1448:2896], udp[2896:]]
    offset = 0
    for i, piece in enumerate(pieces):
        more = i < len(pieces) - 1
        frag = bytes([PROTO_UDP, 0]) + ((offset // 8) << 3 | more).to_bytes(2, "big") + \
            (0x1234).to_bytes(4, "big")
        s.receive(build_ipv6(PEER6, A_IP6, NH_FRAGMENT, frag + piece), 0.0)
        offset += len(piece)
    assert sock.queue.popleft() == (data, (PEER6, 4000))


def test_icmpv6_unreachable_while_connecting_names_its_reason():
    s = NetStack(A_IP, local_ip6=A_IP6)
    conn = s.connect(PEER6, 80, 0.0)
    (syn,) = s.output(0.0)
    err = icmpv6.build_dest_unreachable("2001:2:0:1::1", A_IP6, syn,
                                        code=icmpv6.UNREACH_NO_ROUTE)
    s.receive(build_ipv6("2001:2:0:1::1", A_IP6, NH_ICMPV6, err), 0.1)
    assert conn.closed and conn.failure.reason is NetErrorReason.NET_UNREACHABLE
    assert str(conn.failure) == "network unreachable (from 2001:2:0:1::1)"


@pytest.mark.parametrize("dst, mtu, mss", [(B_IP6, 1400, 1340), (B_IP, 1400, 1360)])
def test_path_mtu_lowers_the_mss_and_the_transfer_completes(dst, mtu, mss):
    link = Link(ipv6=True)
    sent_big = []

    def drop(packet, to):
        if to is link.b and len(packet) > mtu:
            sent_big.append(packet)
            return True
        return False

    link.drop = drop
    t = Transfer(link, blob(600_000, 9), b"", dst=dst)

    def app():
        while sent_big:                  # the router's "too big" for each
            packet = sent_big.pop(0)
            if packet[0] >> 4 == 6:
                msg = icmpv6.build_packet_too_big("2001:2:0:1::1", A_IP6, packet, mtu)
                err = build_ipv6("2001:2:0:1::1", A_IP6, NH_ICMPV6, msg)
            else:
                msg = icmp.build_icmp_error(icmp.DEST_UNREACH, icmp.UNREACH_FRAG_NEEDED,
                                            packet, rest=mtu)
                err = build_ipv4("198.18.1.1", A_IP, PROTO_ICMP, msg)
            link.a.receive(err, link.now)
        t.app()

    assert link.run(t.done, app, limit=600)
    check(t)
    assert t.a.mss == mss and link.a.counters.pmtu_lowered == 1
    assert t.a.cwnd > 10 * mss           # not treated as congestion


@pytest.mark.parametrize("dst", [B_IP6, B_IP])
def test_too_big_errors_that_quote_nothing_in_flight_or_say_too_little(dst):
    link = Link(ipv6=True)
    t = Transfer(link, blob(200_000, 1), b"", dst=dst)
    link.run(lambda: t.a.bytes_out > 50_000, t.app)
    six = dst == B_IP6
    seg = build_ipv6(A_IP6, B_IP6, PROTO_TCP, bytes(40)) if six else \
        build_ipv4(A_IP, B_IP, PROTO_TCP, bytes(40))
    h, _ = _parse(seg)
    quoted = bytearray(seg)
    at = h.header_len
    quoted[at:at + 4] = t.a.local_port.to_bytes(2, "big") + (80).to_bytes(2, "big")
    quoted[at + 4:at + 8] = ((t.a.iss + 1 + 10_000_000) % (1 << 32)).to_bytes(4, "big")

    def too_big(mtu):
        if six:
            msg = icmpv6.build_icmpv6("2001:2:0:1::1", A_IP6, icmpv6.PACKET_TOO_BIG, 0, mtu,
                                      bytes(quoted))
            return build_ipv6("2001:2:0:1::1", A_IP6, NH_ICMPV6, msg)
        msg = icmp.build_icmp_error(icmp.DEST_UNREACH, icmp.UNREACH_FRAG_NEEDED,
                                    bytes(quoted), rest=mtu)
        return build_ipv4("198.18.1.1", A_IP, PROTO_ICMP, msg)

    before = t.a.mss
    link.a.receive(too_big(1300), link.now)             # a sequence number not in flight
    assert t.a.mss == before and link.a.counters.icmp_ignored == 1
    # one in flight, saying less than the floor: the floor (1280 / 552) is used
    quoted[at + 4:at + 8] = ((t.a.iss + 1 + t.a.snd_una) % (1 << 32)).to_bytes(4, "big")
    link.a.receive(too_big(300), link.now)
    assert t.a.mss == (1220 if six else 512)
    link.a.receive(too_big(1500), link.now)             # never raised again
    assert t.a.mss == (1220 if six else 512)
    assert link.run(t.done, t.app, limit=600)
    check(t)


@pytest.mark.parametrize("dst", [B_IP6, B_IP])
def test_a_path_mtu_walked_down_a_byte_at_a_time_resends_a_bounded_number_of_flights(dst):
    """A hostile "too big" sender lowering the MTU one byte per message: each lowers the
    MSS, only the first PMTU_RESENDS_MAX resend the flight, and the transfer completes."""
    from erebus.netstack.tcp import PMTU_RESENDS_MAX
    link = Link(ipv6=True)
    t = Transfer(link, blob(300_000, 3), b"", dst=dst)
    link.run(lambda: t.a.bytes_out > 50_000, t.app)
    six = dst == B_IP6
    start = t.a.snd_max - t.a.snd_una
    assert start > 0
    for mtu in range(1399, 1379, -1):
        seq = (t.a.iss + 1 + t.a.snd_una) % (1 << 32)
        seg = bytearray(build_ipv6(A_IP6, B_IP6, PROTO_TCP, bytes(40)) if six else
                        build_ipv4(A_IP, B_IP, PROTO_TCP, bytes(40)))
        at = 40 if six else 20
        seg[at:at + 8] = t.a.local_port.to_bytes(2, "big") + (80).to_bytes(2, "big") + \
            seq.to_bytes(4, "big")
        if six:
            msg = icmpv6.build_packet_too_big("2001:2:0:1::1", A_IP6, bytes(seg), mtu)
            err = build_ipv6("2001:2:0:1::1", A_IP6, NH_ICMPV6, msg)
        else:
            msg = icmp.build_icmp_error(icmp.DEST_UNREACH, icmp.UNREACH_FRAG_NEEDED,
                                        bytes(seg), rest=mtu)
            err = build_ipv4("198.18.1.1", A_IP, PROTO_ICMP, msg)
        link.a.receive(err, link.now)
        link.a.output(link.now)
    assert t.a.mss == 1380 - (60 if six else 40)
    assert link.a.counters.pmtu_lowered == 20
    assert t.a.pmtu_resends == PMTU_RESENDS_MAX
    assert link.run(t.done, t.app, limit=600)
    check(t)
