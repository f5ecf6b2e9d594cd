"""The IPv4 identification counter belongs to the stack and comes from its rng: with a
seeded rng a whole exchange is the same, packet for packet, IP headers included."""

from __future__ import annotations

import hashlib
import random

from erebus.netstack.stack import NetStack
from erebus.wire.ipv4 import PROTO_ICMP, build_ipv4, parse_ipv4

from .tcp_link import B_IP, Link
from .test_tcp import Transfer, blob


def _exchange(seed: int) -> tuple[str, list[int]]:
    link = Link(seed=seed, loss=0.05, reorder=0.2)
    digest = hashlib.sha256()
    idents: list[int] = []
    send = link._send

    def record(packets, dst):
        for p in packets:
            digest.update(p)
            if dst is link.b:
                idents.append(parse_ipv4(p)[0].ident)
        send(packets, dst)
    link._send = record
    t = Transfer(link, blob(200_000, seed), blob(50_000, seed + 1))
    assert link.run(t.done, t.app)
    return digest.hexdigest(), idents


def test_a_seeded_stack_sends_the_same_packets_headers_included():
    first, idents = _exchange(4)
    assert _exchange(4) == (first, idents)
    assert _exchange(5)[0] != first
    # one counter, one step per packet sent (A's packets, in the order A sent them)
    assert idents == [(idents[0] + i) & 0xFFFF for i in range(len(idents))]


def test_the_counter_starts_where_the_rng_says_and_wraps():
    rng = random.Random(1)
    stack = NetStack("198.19.1.2", rng=lambda n: rng.randbytes(n))
    stack._ident = 0xFFFF
    stack.connect(B_IP, 80, 0.0)
    stack.connect(B_IP, 81, 0.0)
    assert [parse_ipv4(p)[0].ident for p in stack.output(0.0)] == [0xFFFF, 0]


def test_builders_without_a_stack_still_number_their_packets():
    a, b = (build_ipv4("198.19.1.2", B_IP, PROTO_ICMP, b"ping") for _ in range(2))
    assert (parse_ipv4(b)[0].ident - parse_ipv4(a)[0].ident) & 0xFFFF == 1
    given = build_ipv4("198.19.1.2", B_IP, PROTO_ICMP, b"ping", ident=0x1234)
    assert parse_ipv4(given)[0].ident == 0x1234


def test_many_connections_come_out_in_the_same_order_every_time():
    def run() -> list[bytes]:
        rng = random.Random(2)
        stack = NetStack("198.19.1.2", rng=lambda n: rng.randbytes(n))
        for port in range(80, 120):
            stack.connect(B_IP, port, 0.0)
        return stack.output(0.0)
    assert run() == run()
