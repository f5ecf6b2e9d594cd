"""Several WireGuard peers in one profile, routed by AllowedIPs (cryptokey routing):
each peer is our own responder core on a loopback socket (tests/unit/test_wg_runtime.py's
Responder, which echoes every inner packet back with source and destination swapped).
What goes where, longest prefix first; a packet from a peer whose source belongs to
another peer refused; a peer that is down while another is up, reconnected in the
background with the tunnel up; the tunnel ending only when no peer is up.  The stock
peers are in tests/interop/test_wg_erebus.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os

import pytest

from erebus.errors import SessionError
from erebus.families import open_tunnel
from erebus.probe import render
from erebus.session import Stage
from erebus.wireguard import session as wg_session
from erebus.wireguard.crypto import public_of

from tests.unit.test_wg_runtime import CLIENT_IP, Responder
from tests.unit.test_wg_session import ipv4, ipv6
from tests.unit.waiting import until

SITE_A = "198.18.121.7"
SITE_B = "198.18.123.7"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


class Peer:
    """A responder core of its own key on its own loopback port."""

    def __init__(self, client_public: bytes, **kwargs):
        self.key = os.urandom(32)
        self.public = public_of(self.key)
        self.client_public = client_public
        self.kwargs = kwargs
        self.transport = self.responder = None
        self.port = 0

    async def start(self) -> "Peer":
        loop = asyncio.get_running_loop()
        self.transport, self.responder = await loop.create_datagram_endpoint(
            lambda: Responder(self.key, self.client_public, **self.kwargs),
            local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self


def write_profile(tmp_path, client_key: bytes, peers: list[tuple[Peer, str]], *,
                  listen_port: int | None = None) -> str:
    lines = ["[Interface]", f"PrivateKey = {b64(client_key)}", f"Address = {CLIENT_IP}/32"]
    if listen_port:
        lines.append(f"ListenPort = {listen_port}")
    for peer, allowed in peers:
        lines += ["", "[Peer]", f"PublicKey = {b64(peer.public)}",
                  f"Endpoint = 127.0.0.1:{peer.port or 9}", f"AllowedIPs = {allowed}"]
    path = tmp_path / "client.conf"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return str(path)


def _run(coro):
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def two_peers(tmp_path, client_key: bytes, allowed_a: str, allowed_b: str, *,
                    a: dict | None = None, b: dict | None = None):
    """Responders A and B (``a`` / ``b``: Responder options), a tunnel to both, and the
    queue of the inner packets out of it; all closed on the way out."""
    pa = await Peer(public_of(client_key), **(a or {})).start()
    pb = await Peer(public_of(client_key), **(b or {})).start()
    tunnel = open_tunnel(write_profile(tmp_path, client_key, [(pa, allowed_a),
                                                              (pb, allowed_b)]))
    got = asyncio.Queue(maxsize=16)
    tunnel.set_receiver(got.put_nowait)
    try:
        yield tunnel, pa, pb, got
    finally:
        await tunnel.close()
        pa.transport.close()
        pb.transport.close()


def test_each_destination_goes_to_the_peer_whose_allowed_ips_hold_it(tmp_path):
    async def main():
        # A holds all of 198.18.0.0/15, B the more specific /24 inside it
        async with two_peers(tmp_path, os.urandom(32), "198.18.0.0/15",
                             "198.18.123.0/24") as (tunnel, a, b, got):
            info = await tunnel.connect(timeout=10)
            assert info.routes == ["198.18.0.0/15", "198.18.123.0/24"]
            assert info.server == f"127.0.0.1:{a.port}, 127.0.0.1:{b.port}"
            assert info.peer == f"{b64(a.public)}, {b64(b.public)}"
            for dst in (SITE_A, SITE_B, "198.19.0.1", "198.18.123.255"):
                tunnel.send_packet(ipv4(CLIENT_IP, dst, dst.encode()))
            back = sorted([(await asyncio.wait_for(got.get(), 5))[20:] for _ in range(4)])
            assert back == sorted(d.encode() for d in (SITE_A, SITE_B, "198.19.0.1",
                                                       "198.18.123.255"))
            assert a.responder.seen == [SITE_A, "198.19.0.1"]
            assert b.responder.seen == [SITE_B, "198.18.123.255"]
            tunnel.send_packet(ipv4(CLIENT_IP, "198.51.100.1", b"nowhere"))
            assert tunnel.drops()["policy_out"] == 1
            assert tunnel.counters.packets_out == 4 and tunnel.counters.packets_in == 4
            report = {p["peer"]: p for p in tunnel.peer_report()}
            assert report[b64(a.public)]["up"] and report[b64(b.public)]["up"]
            assert report[b64(b.public)]["latest_handshake"] is not None

    _run(main())


def test_a_source_that_belongs_to_another_peer_is_refused_and_counted(tmp_path, caplog):
    async def main():
        # A answers every packet as if it came from B's network
        async with two_peers(tmp_path, os.urandom(32), "198.18.0.0/15", "198.18.123.0/24",
                             a={"spoof": SITE_B}) as (tunnel, a, b, got):
            await tunnel.connect(timeout=10)
            tunnel.send_packet(ipv4(CLIENT_IP, SITE_A, b"to A"))
            tunnel.send_packet(ipv4(CLIENT_IP, SITE_B, b"to B"))
            back = await asyncio.wait_for(got.get(), 5)
            assert back[20:] == b"to B"                  # B's own answer
            await until(lambda: tunnel.drops()["policy_in"] == 1, 10, "the drop")
            assert got.empty()

    with caplog.at_level(logging.WARNING, logger="erebus.wireguard"):
        _run(main())
    assert "dropped an inner packet whose source address belongs to another peer's " \
           "AllowedIPs" in caplog.text


def test_a_prefix_of_two_peers_belongs_to_the_later_one(tmp_path):
    async def main():
        async with two_peers(tmp_path, os.urandom(32), "198.18.123.0/24, 198.18.121.0/24",
                             "198.18.123.0/24") as (tunnel, a, b, got):
            assert f"{tunnel.profile.path}:13: AllowedIPs: 198.18.123.0/24 is also the " \
                   "[Peer] at line 5's: this later peer gets it (as in wg)" \
                   in tunnel.warnings
            await tunnel.connect(timeout=10)
            tunnel.send_packet(ipv4(CLIENT_IP, SITE_B, b"b"))
            tunnel.send_packet(ipv4(CLIENT_IP, SITE_A, b"a"))
            for _ in range(2):
                await asyncio.wait_for(got.get(), 5)
            assert b.responder.seen == [SITE_B] and a.responder.seen == [SITE_A]

    _run(main())


def test_a_peer_down_at_start_comes_up_in_the_background(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(wg_session, "REKEY_TIMEOUT", 0.2)   # handshake retries, faster

    async def main():
        async with two_peers(tmp_path, os.urandom(32), "198.18.121.0/24", "198.18.123.0/24",
                             b={"silent": True}) as (tunnel, a, b, got):
            info = await tunnel.connect(timeout=0.5)
            assert info.server == f"127.0.0.1:{a.port}"
            assert info.routes == ["198.18.121.0/24", "198.18.123.0/24"]
            report = {p["peer"]: p for p in tunnel.peer_report()}
            down = report[b64(b.public)]
            assert not down["up"] and "no handshake response from peer " + \
                b64(b.public) in down["error"]
            text = render({"ok": False, "stage": "peer", "error": "x", **info.as_dict(),
                           "peers": tunnel.peer_report()})
            assert f"peer        {b64(b.public)} at 127.0.0.1:{b.port}: down (" in text
            tunnel.send_packet(ipv4(CLIENT_IP, SITE_B, b"while down"))
            assert tunnel.dropped_down == 1
            tunnel.send_packet(ipv4(CLIENT_IP, SITE_A, b"a"))
            assert (await asyncio.wait_for(got.get(), 5))[20:] == b"a"
            b.responder.silent = False
            await until(lambda: tunnel.peers[1].up, 10, "B up")
            assert tunnel.info.server == f"127.0.0.1:{a.port}, 127.0.0.1:{b.port}"
            tunnel.send_packet(ipv4(CLIENT_IP, SITE_B, b"b"))
            assert (await asyncio.wait_for(got.get(), 5))[20:] == b"b"
            closed = asyncio.ensure_future(tunnel.wait_closed())
            await asyncio.sleep(0)
            assert not closed.done()                    # the tunnel never went down
        assert await closed == "closed"

    with caplog.at_level(logging.WARNING, logger="erebus.wireguard"):
        _run(main())
    assert "did not come up: " in caplog.text and "trying it again in the background " \
           "(the other peers are up)" in caplog.text


def test_the_tunnel_ends_only_when_no_peer_is_up(tmp_path, monkeypatch):
    monkeypatch.setattr(wg_session, "REKEY_TIMEOUT", 0.2)

    async def main():
        async with two_peers(tmp_path, os.urandom(32), "198.18.121.0/24",
                             "198.18.123.0/24") as (tunnel, a, b, _got):
            await tunnel.connect(timeout=5)
            closed = asyncio.ensure_future(tunnel.wait_closed())
            # B's session ends while A is up: B alone is reconnected
            sessions = tunnel.peers[1].sessions
            tunnel.peers[1]._end(SessionError(Stage.TIMEOUT, "B: stalled"))
            await until(lambda: tunnel.peers[1].up and
                        tunnel.peers[1].sessions == sessions + 1, 10, "B reconnected")
            assert not closed.done() and tunnel.peers[0].sessions == 1
            # B goes silent and ends again, then A ends: nothing is up, the tunnel ends
            b.responder.silent = True
            tunnel.peers[1]._end(SessionError(Stage.TIMEOUT, "B: stalled again"))
            await until(lambda: tunnel.peers[1].sessions == sessions + 2, 10,
                        "B retrying")
            assert not tunnel.peers[1].up and not closed.done()
            tunnel.peers[0]._end(SessionError(Stage.TIMEOUT, "A: stalled"))
            with pytest.raises(SessionError, match="A: stalled"):
                await asyncio.wait_for(closed, 5)
            # erebus up reconnects the whole tunnel: both peers again
            b.responder.silent = False
            info = await tunnel.reconnect(timeout=5)
            assert tunnel.up and all(p.up for p in tunnel.peers)
            assert info.server == f"127.0.0.1:{a.port}, 127.0.0.1:{b.port}"

    _run(main())


def test_no_peer_up_raises_the_first_peers_failure(tmp_path, caplog):
    async def main():
        async with two_peers(tmp_path, os.urandom(32), "198.18.121.0/24", "198.18.123.0/24",
                             a={"silent": True}, b={"silent": True}) as (tunnel, a, b, _):
            with pytest.raises(SessionError) as caught:
                await tunnel.connect(timeout=0.5)
        return a, b, caught.value

    with caplog.at_level(logging.WARNING, logger="erebus.wireguard"):
        a, b, error = _run(main())
    assert error.stage is Stage.UNREACHABLE
    assert f"no handshake response from peer {b64(a.public)}" in str(error)
    assert f"no handshake response from peer {b64(b.public)}" in caplog.text


def test_listen_port_is_bound_by_the_first_peers_socket_only(tmp_path):
    client_key = os.urandom(32)
    a, b = Peer(public_of(client_key)), Peer(public_of(client_key))
    path = write_profile(tmp_path, client_key, [(a, "198.18.121.0/24"),
                                                (b, "198.18.123.0/24")], listen_port=51999)
    tunnel = open_tunnel(path)
    assert f"{path}: ListenPort: 51999 is bound by the first peer's socket only; each " \
           "further peer has a socket of its own, on a port the kernel picks" \
           in tunnel.warnings
    assert [p.driver.endpoints()[0].local_port for p in tunnel.peers] == [51999, 0]


def test_one_peer_is_one_shell_tunnel_without_routing(tmp_path):
    client_key = os.urandom(32)
    a = Peer(public_of(client_key))
    tunnel = open_tunnel(write_profile(tmp_path, client_key, [(a, "198.18.121.0/24")]))
    assert len(tunnel.peers) == 1
    assert tunnel.send_packet == tunnel.peers[0].send_packet


def test_the_route_cache_stays_bounded_and_right_past_its_size():
    import ipaddress

    from erebus.runtime.wireguard import ROUTE_CACHE, _Routes
    routes = _Routes([(ipaddress.ip_network("198.18.0.0/15"), "A"),
                      (ipaddress.ip_network("198.18.123.0/24"), "B"),
                      (ipaddress.ip_network("2001:2::/48"), "C")])
    # a sender of more distinct addresses than the cache holds, twice over
    for n in range(2 * ROUTE_CACHE + 7):
        dst = str(ipaddress.IPv4Address("198.18.0.0") + n)
        want = "B" if dst.startswith("198.18.123.") else "A"
        assert routes.destination(ipv4(CLIENT_IP, dst, b"")) == want, dst
        assert len(routes._cache) <= ROUTE_CACHE
    assert routes.destination(ipv4(CLIENT_IP, "198.51.100.1", b"")) is None
    assert routes.source(ipv6("2001:2::1", "2001:2::2", b"")) == "C"
    assert routes.destination(b"\x45\0\0") is None              # truncated: no address
    assert routes.destination(b"\x60" + bytes(20)) is None      # truncated IPv6
    assert routes.destination(b"\x10" + bytes(40)) is None      # not IP
