"""OpenVPNTunnel (the asyncio shell) on the loopback against a static-key peer: what
a forger on the path makes it log.  Each kind of drop is one warning per 10 s, the
rest counted in "(suppressed K similar)", and the counters are one line at close."""

from __future__ import annotations

import asyncio
import logging
import os
from types import SimpleNamespace

from erebus.openvpn.config import Remote
from erebus.runtime.openvpn import OpenVPNTunnel
from erebus.wire.ipv4 import PROTO_ICMP, build_ipv4
from tests.unit.test_static import CLIENT_IP, SERVER_IP, make, peer_of
from tests.unit.waiting import until


class Peer(asyncio.DatagramProtocol):
    def __init__(self):
        self.session = peer_of(1)
        self.transport = None
        self.client = None
        self.seen = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.client = addr
        self.seen.set()

    def send(self, datagram: bytes):
        self.transport.sendto(datagram, self.client)


def test_forged_and_replayed_packets_are_warned_about_once_per_kind(caplog):
    async def main():
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(
            Peer, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        profile = SimpleNamespace(remotes=[Remote("127.0.0.1", port, "udp")], tls_wrap=None,
                                  warnings=[])
        tunnel = OpenVPNTunnel(profile, session_factory=lambda now, token: make(1))
        got = []
        tunnel.set_receiver(got.append)
        await tunnel.connect(timeout=5)
        tunnel.send_packet(build_ipv4(CLIENT_IP, SERVER_IP, PROTO_ICMP, b"ping"))
        await asyncio.wait_for(peer.seen.wait(), 2)       # the peer knows our port now
        real = peer.session.send_packet(build_ipv4(SERVER_IP, CLIENT_IP, PROTO_ICMP, b"pong"))
        peer.send(real)
        await until(lambda: got, what="the real packet")
        c = tunnel.session.counters
        for i in range(50):
            peer.send(real[:1] + os.urandom(80))              # forged: fails the HMAC
            peer.send(real)                                   # replayed
        await until(lambda: c.dropped_data_auth == 50 and c.dropped_replay == 50,
                    what="100 drops")
        assert len(got) == 1
        await tunnel.close()
        transport.close()

    with caplog.at_level(logging.INFO, logger="erebus.tunnel"):
        asyncio.run(main())
    drops = [r for r in caplog.records if r.getMessage().startswith("dropped ")]
    lines = [r.getMessage() for r in drops]
    auth = [line for line in lines if "failed authentication" in line]
    replay = [line for line in lines if "replayed" in line]
    # the first of each kind at once, the rest told when the tunnel closes
    assert len(auth) == 2 and len(replay) == 2, lines
    assert auth[0].startswith("dropped a data packet that failed authentication")
    suppressed = [int(line.rsplit("(suppressed ", 1)[1].split()[0])
                  for line in auth + replay if "suppressed" in line]
    assert sum(suppressed) == 100 - 2, lines
    assert all(r.levelno == logging.WARNING for r in drops)
    counters = [r.getMessage() for r in caplog.records if r.getMessage().startswith(
        "counters: ")]
    assert len(counters) == 1 and "dropped_data_auth=50" in counters[0] \
        and "dropped_replay=50" in counters[0], counters
