"""The stack's errors carry a reason (NetErrorReason); the asyncio shell maps the reason,
never the words, to the OSError a socket would raise."""

from __future__ import annotations

import pytest

from erebus.errors import ErebusError
from erebus.netstack.errors import NetError, NetErrorReason, TcpError
from erebus.netstack.stack import NetStack
from erebus.runtime.stack import _error_for
from erebus.wire import icmp
from erebus.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4, parse_ipv4
from erebus.wire.udp import build_udp

from .tcp_link import B_IP, Link
from .test_tcp import Transfer, blob

VIP = "198.19.1.2"
PEER = "198.18.2.2"


def failure_of(conn) -> TcpError:
    assert conn.closed and isinstance(conn.failure, TcpError)
    assert isinstance(conn.failure, ErebusError) and conn.error == str(conn.failure)
    return conn.failure


def test_refused_reset_and_timed_out_are_reasons():
    link = Link()
    refused = link.a.connect(B_IP, 81, 0.0)
    link.run(lambda: refused.closed)
    assert failure_of(refused).reason is NetErrorReason.REFUSED

    t = Transfer(link, blob(300_000, 3), b"")
    link.run(lambda: len(t.got["b"]) > 50_000, t.app)
    link.b.abort(t.b, link.now)
    link.run(lambda: t.a.closed, t.app, limit=link.now + 10)
    assert failure_of(t.a).reason is NetErrorReason.RESET

    lost = Link(loss=1.0)
    conn = lost.a.connect(B_IP, 80, 0.0)
    lost.run(lambda: conn.closed, limit=1000)
    assert failure_of(conn).reason is NetErrorReason.TIMED_OUT


def _syn_and_icmp(code: int, kind: int = icmp.DEST_UNREACH):
    s = NetStack(VIP)
    conn = s.connect(PEER, 80, 0.0)
    (syn,) = s.output(0.0)
    _, payload = parse_ipv4(syn)
    quoted = build_ipv4(VIP, PEER, PROTO_TCP, bytes(payload))
    s.receive(build_ipv4(PEER, VIP, PROTO_ICMP, icmp.build_icmp_error(kind, code, quoted)),
              0.1)
    return conn


@pytest.mark.parametrize("kind, code, reason, text", [
    (icmp.DEST_UNREACH, icmp.UNREACH_PORT, NetErrorReason.REFUSED, "connection refused"),
    (icmp.DEST_UNREACH, icmp.UNREACH_HOST, NetErrorReason.UNREACHABLE, "host unreachable"),
    (icmp.DEST_UNREACH, icmp.UNREACH_NET, NetErrorReason.NET_UNREACHABLE,
     "network unreachable"),
    (icmp.TIME_EXCEEDED, icmp.EXCEEDED_TTL, NetErrorReason.TTL_EXPIRED,
     "TTL expired in transit"),
    (icmp.DEST_UNREACH, 5, NetErrorReason.UNREACHABLE, "ICMP type 3 code 5"),
])
def test_an_icmp_error_while_connecting_ends_the_connection_with_its_reason(kind, code,
                                                                           reason, text):
    failure = failure_of(_syn_and_icmp(code, kind))
    assert failure.reason is reason and str(failure) == f"{text} (from {PEER})"


def test_fragmentation_needed_while_connecting_is_path_mtu_not_failure():
    # type 3 code 4 (fragmentation needed) is about size, not a refusal (RFC 1191;
    # Linux's tcp_v4_err): the connection keeps trying; a next-hop MTU of 0 (a router
    # older than RFC 1191) names no size and changes nothing
    conn = _syn_and_icmp(icmp.UNREACH_FRAG_NEEDED)
    assert not conn.closed and conn.mss_local == 1460


def test_udp_errors_are_typed_too():
    s = NetStack(VIP)
    sock = s.udp_bind(5353)
    quoted = build_ipv4(VIP, PEER, PROTO_UDP, build_udp(VIP, PEER, 5353, 53, b"q"))
    s.receive(build_ipv4(PEER, VIP, PROTO_ICMP, icmp.build_icmp_error(
        icmp.DEST_UNREACH, icmp.UNREACH_PORT, quoted)), 0.0)
    (error, peer), = sock.errors
    assert isinstance(error, NetError) and not isinstance(error, TcpError)
    assert (error.reason, str(error), peer) == (NetErrorReason.REFUSED,
                                               f"connection refused (from {PEER})",
                                               (PEER, 53))


def test_sending_on_a_closed_or_shut_connection_says_why():
    link = Link()
    conn = link.a.connect(B_IP, 81, 0.0)
    link.run(lambda: conn.closed)
    with pytest.raises(TcpError, match="^connection refused$") as info:
        conn.send(b"x")
    assert info.value.reason is NetErrorReason.REFUSED
    t = Transfer(link, b"", b"", a_close=False, b_close=False)
    link.run(lambda: t.b is not None, t.app)
    t.a.shutdown()
    with pytest.raises(TcpError, match="cannot send after shutdown") as info:
        t.a.send(b"x")
    assert info.value.reason is NetErrorReason.CLOSED


@pytest.mark.parametrize("reason, cls", [
    (NetErrorReason.REFUSED, ConnectionRefusedError),
    (NetErrorReason.RESET, ConnectionResetError),
    (NetErrorReason.TIMED_OUT, TimeoutError),
    (NetErrorReason.UNREACHABLE, OSError),
    (NetErrorReason.CLOSED, OSError),
])
def test_the_shell_maps_the_reason_not_the_words(reason, cls):
    # the words say nothing (or the opposite): only the reason counts
    error = _error_for(TcpError(reason, "refused reset timed out"))
    assert type(error) is cls and str(error) == "refused reset timed out"
    assert type(_error_for(None)) is OSError and str(_error_for(None)) == "connection failed"
