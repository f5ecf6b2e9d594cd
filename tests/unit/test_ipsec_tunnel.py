"""EspTunnel, the asyncio shell, against an in-process peer on the loopback (the
acceptance tests run against scapy's ESP in network namespaces: tests/interop)."""

from __future__ import annotations

import asyncio
import io
import socket

import pytest

from erebus.errors import SessionError
from erebus.ipsec.esp import EspSession, SecurityAssociation
from erebus.ipsec.profile import parse_esp_profile
from erebus.runtime.ipsec import EspTunnel
from erebus.runtime.pcap import PcapWriter
from erebus.wire.ipv4 import PROTO_ICMP, build_ipv4
from tests.unit.waiting import until

GCM = "ab" * 36
CBC, HMAC = "cd" * 32, "ef" * 32


def profile(port: int, **extra):
    data = {"ipsec": {
        "peer": f"127.0.0.1:{port}", "local_ip": "198.19.11.2",
        "remote_ts": ["198.19.20.0/24"], "dns": ["198.19.20.53"],
        "allow_static_aead": True, **extra,                 # test keys, one run
        "outbound": {"spi": 0x1001, "transform": "aes256gcm16", "key": GCM},
        "inbound": {"spi": 0x2002, "transform": "aes256-sha256", "key": CBC,
                    "integrity_key": HMAC},
    }}
    return parse_esp_profile(data, "test.toml")


class Peer(asyncio.DatagramProtocol):
    """The other end: the client's SAs mirrored."""

    def __init__(self):
        self.session = EspSession(
            SecurityAssociation(0x2002, "aes256-sha256", bytes.fromhex(CBC),
                                bytes.fromhex(HMAC)),
            SecurityAssociation(0x1001, "aes256gcm16", bytes.fromhex(GCM)),
            local_ip="198.19.20.5", remote_ts=["198.19.11.2/32"], now=0,
            keepalive_interval=None)
        self.received: asyncio.Queue = asyncio.Queue()
        self.transport = None
        self.client = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.client = addr
        self.received.put_nowait(data)

    def send(self, packet: bytes):
        self.transport.sendto(self.session.send_packet(packet, 0), self.client)


async def start_peer():
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    return peer, transport.get_extra_info("sockname")[1]


async def next_datagram(peer):
    return await asyncio.wait_for(peer.received.get(), 2)


def test_connect_send_receive_pcap_close(caplog):
    async def main():
        peer, port = await start_peer()
        pcap_buf = io.BytesIO()
        pcap = PcapWriter(pcap_buf, flush_interval=0)
        tunnel = EspTunnel(profile(port), pcap=pcap)
        got = []
        tunnel.set_receiver(got.append)
        info = await tunnel.connect(timeout=5)
        assert info.kind == "ipsec" and info.server == f"127.0.0.1:{port}"
        assert (info.virtual_ip, info.gateway, info.routes, info.mtu, info.dns, info.cipher) \
            == ("198.19.11.2", None, ["198.19.20.0/24"], 1400, ["198.19.20.53"],
                "aes256gcm16")
        assert tunnel.up
        assert await next_datagram(peer) == b"\xff"          # the NAT keepalive
        up = build_ipv4("198.19.11.2", "198.19.20.5", PROTO_ICMP, b"ping")
        tunnel.send_packet(up)
        assert peer.session.receive_datagram(await next_datagram(peer), 0) == up
        down = build_ipv4("198.19.20.5", "198.19.11.2", PROTO_ICMP, b"pong")
        peer.send(down)
        await until(lambda: got, what="the inner packet")
        assert got == [down]
        c = tunnel.session.counters
        peer.transport.sendto(b"\xff", peer.client)             # ignored, counted
        forged = b"\x00\x00\x20\x02\x00\x00\x00\x05" + bytes(64)
        peer.transport.sendto(forged, peer.client)
        await until(lambda: c.auth_failed, what="the forged packet")
        await until(lambda: c.keepalives_in, what="the keepalive")
        assert (c.packets_in, c.keepalives_in, c.auth_failed) == (1, 1, 1)
        assert c.control_retransmits == 0
        waiter = asyncio.ensure_future(tunnel.wait_closed())
        await tunnel.close()
        assert await waiter == "closed"
        assert not tunnel.up
        tunnel.send_packet(up)
        assert tunnel.dropped_down == 1
        peer.transport.close()
        # outer: keepalive out, ESP out, ESP in, keepalive in, forged in; inner: 2
        assert pcap.packets == 7

    with caplog.at_level("INFO", logger="erebus.ipsec"):
        asyncio.run(main())
    # the forgery is a (rate-limited) warning; the counters are logged at close
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["dropped an ESP packet that failed authentication (corrupted or "
                        "forged)"], warnings
    assert "counters: datagrams_in=3 datagrams_out=2 " in caplog.text
    assert caplog.text.rstrip().endswith(" auth_failed=1")


def test_hard_limit_ends_the_session():
    async def main():
        peer, port = await start_peer()
        tunnel = EspTunnel(profile(port, lifetime_packets=3))
        await tunnel.connect(timeout=5)
        waiter = asyncio.ensure_future(tunnel.wait_closed())
        for _ in range(4):
            tunnel.send_packet(build_ipv4("198.19.11.2", "198.19.20.5", PROTO_ICMP, b"x"))
        with pytest.raises(SessionError) as info:
            await asyncio.wait_for(waiter, 2)
        assert info.value.stage == "sa-expired"
        assert "outbound SA 0x00001001: hard lifetime of 3 packets reached" in str(info.value)
        assert tunnel.session.counters.expired_out == 1
        await tunnel.close()
        peer.transport.close()

    asyncio.run(main())


def test_reconnect_keeps_the_sas():
    async def main():
        peer, port = await start_peer()
        tunnel = EspTunnel(profile(port, local_port=0))
        await tunnel.connect(timeout=5)
        first = tunnel._local
        tunnel.send_packet(build_ipv4("198.19.11.2", "198.19.20.5", PROTO_ICMP, b"1"))
        await tunnel.reconnect(timeout=5)
        assert tunnel._local != first and tunnel.sessions == 2
        tunnel.send_packet(build_ipv4("198.19.11.2", "198.19.20.5", PROTO_ICMP, b"2"))
        assert tunnel.session.esp.outbound.seq == 2                 # sequence numbers go on
        await tunnel.close()
        peer.transport.close()

    asyncio.run(main())


def test_unresolvable_peer():
    async def main():
        p = profile(4500)
        p.peer_host = "no-such-host.invalid"
        with pytest.raises(SessionError) as info:
            await EspTunnel(p).connect(timeout=10)
        assert info.value.stage == "resolve"

    asyncio.run(main())


def test_nothing_listening_is_only_a_warning(caplog):
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        tunnel = EspTunnel(profile(port))
        await tunnel.connect(timeout=5)
        await until(lambda: tunnel.link_errors >= 1, what="the ICMP port unreachable")
        assert tunnel.up
        await tunnel.close()

    with caplog.at_level("WARNING", logger="erebus.ipsec"):
        asyncio.run(main())
    assert "is the ESP peer listening there?" in caplog.text


def test_soft_limit_is_logged(caplog):
    async def main():
        peer, port = await start_peer()
        tunnel = EspTunnel(profile(port, lifetime_packets=10))
        await tunnel.connect(timeout=5)
        for _ in range(9):
            tunnel.send_packet(build_ipv4("198.19.11.2", "198.19.20.5", PROTO_ICMP, b"x"))
        assert tunnel.up
        await tunnel.close()
        peer.transport.close()

    with caplog.at_level("WARNING", logger="erebus.ipsec"):
        asyncio.run(main())
    assert "outbound SA 0x00001001: 9 of 10 packets used" in caplog.text
