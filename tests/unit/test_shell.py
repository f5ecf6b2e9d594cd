"""The one asyncio shell (erebus.runtime.tunnel.ShellTunnel) in virtual time: every
family's core over a fake link (tests/unit/virtual_loop.py), no sockets and no root.
What the shell owes every family: connect over the remotes, the timer from the core's
deadline, pcap and counters, failures with their stage, reconnect with backoff,
wait_closed, close."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import re
from types import SimpleNamespace

import pytest

from erebus.errors import SessionError
from erebus.ipsec.ike import NON_ESP_MARKER
from erebus.ipsec.profile import parse_esp_profile
from erebus.openvpn.config import Remote
from erebus.runtime.ipsec import EspTunnel, IkeTunnel
from erebus.runtime.openvpn import OpenVPNDriver, OpenVPNTunnel
from erebus.runtime.pcap import PcapWriter
from erebus.runtime.tunnel import Endpoint, ShellTunnel
from erebus.session import Stage
from erebus.tunnel import Tunnel
from erebus.wire import icmp
from erebus.wire.ipv4 import PROTO_ICMP, build_ipv4, parse_ipv4
from tests.unit.ike_peer import SimResponder
from tests.unit.test_ike_initiator import NET, VIP, FakeResponder
from tests.unit.test_ike_initiator import profile as ike_profile
from tests.unit.test_static import CLIENT_IP, KEY, SERVER_IP, make, peer_of
from tests.unit.virtual_loop import FakeConnector, run


def echo_request(src: str, dst: str, seq: int) -> bytes:
    return build_ipv4(src, dst, PROTO_ICMP, icmp.build_echo_request(7, seq, b"shell"))


def echo_replies(packets: list[bytes]) -> list[int]:
    seqs = []
    for packet in packets:
        header, payload = parse_ipv4(packet)
        message = icmp.parse_icmp(payload)
        if isinstance(message, icmp.IcmpEcho) and message.type == icmp.ECHO_REPLY:
            seqs.append(message.seq)
    return seqs


class EchoPeer:
    """A sans-IO peer core (any erebus.session.Session) that answers ICMP echoes, until
    ``silent`` is set."""

    def __init__(self, core):
        self.core = core
        self.silent = False
        self.inner: list[bytes] = []

    def receive(self, datagram, now):
        if self.silent:
            return []
        out = []
        for packet in self.core.receive_datagram(datagram, now):
            self.inner.append(packet)
            header, payload = parse_ipv4(packet)
            message = icmp.parse_icmp(payload)
            if isinstance(message, icmp.IcmpEcho) and message.type == icmp.ECHO_REQUEST:
                reply = build_ipv4(header.dst, header.src, PROTO_ICMP,
                                   icmp.build_echo_reply(message))
                sealed = self.core.send_packet(reply, now)
                if sealed is not None:
                    out.append(sealed)
        return out

    def datagrams(self, now):
        return [] if self.silent else self.core.datagrams_to_send(now)

    def timer(self):
        return None if self.silent else self.core.get_timer()

    def handle_timer(self, now):
        self.core.handle_timer(now)
        return []


def static_tunnel(connector, hosts=("vpn",), **kw) -> OpenVPNTunnel:
    profile = SimpleNamespace(remotes=[Remote(h, 1194, "udp") for h in hosts], warnings=[],
                              tls_wrap=None, connect_timeout=10)
    return OpenVPNTunnel(profile, session_factory=lambda now, token: make(1, now=now, **kw),
                         connector=connector)


async def ping(tunnel, got: list, seq: int, src=CLIENT_IP, dst=SERVER_IP) -> None:
    tunnel.send_packet(echo_request(src, dst, seq))
    for _ in range(100):
        if seq in echo_replies(got):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no echo reply {seq}")


def test_a_static_key_session_carries_packets_records_them_and_says_goodbye(caplog):
    peers = []

    def peer():
        peers.append(EchoPeer(peer_of(1)))
        return peers[-1]

    async def main():
        connector = FakeConnector({"vpn": peer})
        pcap_buf = io.BytesIO()
        tunnel = static_tunnel(connector)
        tunnel.pcap = PcapWriter(pcap_buf, flush_interval=0)
        got: list[bytes] = []
        tunnel.set_receiver(got.append)
        assert isinstance(tunnel, Tunnel)                 # the whole typed surface
        info = await tunnel.connect()
        assert (info.kind, info.server, info.virtual_ip, info.cipher) == \
            ("openvpn", "vpn:1194", CLIENT_IP, "AES-256-CBC")
        assert tunnel.up and tunnel.counters is tunnel.session.counters
        await ping(tunnel, got, 1)
        await ping(tunnel, got, 2)
        waiter = asyncio.ensure_future(tunnel.wait_closed())
        await tunnel.close()
        assert await waiter == "closed by us"
        assert not tunnel.up
        tunnel.send_packet(echo_request(CLIENT_IP, SERVER_IP, 3))
        assert tunnel.dropped_down == 1
        return tunnel

    with caplog.at_level(logging.INFO, logger="erebus.tunnel"):
        tunnel = run(main())
    assert echo_replies(peers[0].inner) == [] and len(peers[0].inner) == 2
    assert peers[0].core.counters.occ_in >= 1          # the OCC exit reached the peer
    # every outer datagram both ways is in the capture, and the 2 + 2 inner packets
    assert tunnel.datagrams_out >= 3 and tunnel.datagrams_in >= 2
    assert tunnel.pcap.packets == tunnel.datagrams_in + tunnel.datagrams_out + 4
    assert "counters: datagrams_in=" in caplog.text


def test_ping_restart_is_recoverable_and_reconnect_backs_off_in_virtual_time(caplog):
    peers = []

    def peer():
        peers.append(EchoPeer(peer_of(1)))
        return peers[-1]

    async def main():
        loop = asyncio.get_running_loop()
        connector = FakeConnector({"vpn": peer})
        tunnel = static_tunnel(connector, ping=10, ping_restart=60)
        got: list[bytes] = []
        tunnel.set_receiver(got.append)
        await tunnel.connect()
        await ping(tunnel, got, 1)
        first = tunnel.traffic()                 # (bytes in, out, packets in, out)
        assert first[2] >= 1 and first[3] >= 1 and first[0] > 0
        started = loop.time()
        peers[0].silent = True
        with pytest.raises(SessionError) as ended:
            await tunnel.wait_closed()
        assert ended.value.stage is Stage.PING_RESTART and ended.value.recoverable
        waited = loop.time() - started
        assert 59 <= waited <= 61, waited
        info = await tunnel.reconnect()
        assert tunnel.sessions == 2 and len(connector.links) == 2 and info.virtual_ip
        await ping(tunnel, got, 2)
        # erebus status's figures go on over the sessions (the new core starts at 0)
        total, own = tunnel.traffic(), tunnel.session.counters
        assert total[2] == first[2] + own.packets_in and total[0] == first[0] + own.bytes_in
        assert own.packets_in >= 1 and total[3] >= first[3] + own.packets_out
        tunnel.session.counters.dropped_replay += 2       # as if two came again
        tunnel._drops_before["dropped_replay"] = 3          # and three in session 1
        assert tunnel.drops()["dropped_replay"] == 5
        await tunnel.close()

    with caplog.at_level(logging.INFO, logger="erebus.tunnel"):
        run(main())
    assert "ping-restart" in caplog.text and "reconnected (session 2)" in caplog.text


def test_a_name_that_does_not_resolve_moves_on_to_the_next_remote(caplog):
    async def main():
        connector = FakeConnector({"vpn": lambda: EchoPeer(peer_of(1))})
        tunnel = static_tunnel(connector, hosts=("nowhere", "vpn"))
        info = await tunnel.connect()
        assert info.server == "vpn:1194" and connector.resolved == ["nowhere", "vpn"]
        await tunnel.close()

    with caplog.at_level(logging.WARNING, logger="erebus.tunnel"):
        run(main())
    assert "cannot resolve nowhere" in caplog.text and "trying the next remote" in caplog.text


def test_a_refused_port_ends_the_attempt_and_the_next_address_is_tried(caplog):
    async def main():
        loop = asyncio.get_running_loop()
        connector = FakeConnector({"dead": "refused", "swan": IkePeer})
        tunnel = IkeTunnel(ike_profile(remote_addrs=["dead", "swan"]), connector=connector)
        started = loop.time()
        info = await tunnel.connect(timeout=30)
        assert info.server == "swan:500" and connector.resolved == ["dead", "swan"]
        assert loop.time() - started < 10       # three refusals, not the 30 s timeout
        await tunnel.close()

    with caplog.at_level(logging.INFO, logger="erebus.ipsec"):
        run(main())
    assert "dead:500: Connection refused (is an IKEv2 responder listening there?)" \
        in caplog.text
    assert "(nothing answers on UDP 500); trying the next remote" in caplog.text


class IkePeer:
    """IKE_SA_INIT and IKE_AUTH by FakeResponder, then SimResponder's answers."""

    def __init__(self):
        self.fake = FakeResponder()
        self.sim = None
        self.esp = []

    def receive(self, datagram, now):
        if self.sim is None and self.fake.keys is None:
            return [self.fake.ike_sa_init(datagram)]
        if self.sim is None:
            answer = self.fake.ike_auth(datagram)
            self.sim = SimResponder(self.fake)
            return [answer]
        if datagram[:4] == NON_ESP_MARKER:
            self.sim.now = now
            return self.sim.handle(datagram)
        self.esp.append(datagram)
        return []


def test_ike_connects_moves_to_natt_and_carries_esp():
    async def main():
        peer = IkePeer()
        connector = FakeConnector({"swan": peer})
        tunnel = IkeTunnel(ike_profile(remote_addrs=["swan"]), connector=connector)
        assert isinstance(tunnel, Tunnel)
        info = await tunnel.connect(timeout=10)
        assert (info.kind, info.virtual_ip, info.routes) == ("ipsec", VIP, [NET])
        assert connector.links[0].remote[1] == 4500        # PathChanged: NAT-T
        tunnel.send_packet(build_ipv4(VIP, str(ipaddress.ip_network(NET)[5]), PROTO_ICMP,
                                      b"x"))
        assert tunnel.session.counters.packets_out == 1
        await asyncio.sleep(0.1)
        assert len(peer.esp) == 1 and peer.esp[0][:4] == \
            tunnel.session.esp.outbound.spi.to_bytes(4, "big")        # ESP, not IKE
        await tunnel.close()
        return tunnel, peer

    tunnel, peer = run(main())
    assert not tunnel.up and peer.sim.log.ike_deletes                 # DELETE on close


def test_an_exhausted_child_sa_fails_the_session_with_a_delete_of_the_ike_sa():
    async def main():
        peer = IkePeer()
        tunnel = IkeTunnel(ike_profile(remote_addrs=["swan"]),
                           connector=FakeConnector({"swan": peer}))
        await tunnel.connect(timeout=10)
        waiter = asyncio.ensure_future(tunnel.wait_closed())
        tunnel.session.esp.outbound.seq = 0xFFFFFFFF        # the last sequence number used
        tunnel.send_packet(build_ipv4(VIP, str(ipaddress.ip_network(NET)[5]), PROTO_ICMP,
                                      b"x"))
        with pytest.raises(SessionError) as ended:
            await asyncio.wait_for(waiter, 5)
        await asyncio.sleep(0.1)
        await tunnel.close()
        return ended.value, peer

    error, peer = run(main())
    assert error.stage is Stage.SA_EXPIRED and error.recoverable
    assert "sequence numbers exhausted" in str(error)
    assert peer.sim.log.ike_deletes                     # told, not left to its DPD


def test_ike_connect_timeout_names_where_it_stalled():
    async def main():
        connector = FakeConnector({"swan": SimpleNamespace(receive=lambda d, now: [])})
        tunnel = IkeTunnel(ike_profile(remote_addrs=["swan"]), connector=connector)
        with pytest.raises(SessionError) as failed:
            await tunnel.connect(timeout=5)
        return failed.value

    error = run(main())
    assert error.stage is Stage.UNREACHABLE and error.recoverable
    assert str(error) == "swan:500: timed out after 5 s (no IKE SA: ike-sa-init-sent)"


def test_an_expired_manual_sa_ends_the_session_for_good():
    gcm = "ab" * 36
    data = {"ipsec": {
        "peer": "peer:4500", "local_ip": "198.19.11.2", "remote_ts": ["198.19.20.0/24"],
        "allow_static_aead": True, "lifetime_packets": 3,
        "outbound": {"spi": 0x1001, "transform": "aes256gcm16", "key": gcm},
        "inbound": {"spi": 0x2002, "transform": "aes256gcm16", "key": "cd" * 36}}}
    profile = parse_esp_profile(data, "sa.toml")

    async def main():
        connector = FakeConnector({"peer": SimpleNamespace(receive=lambda d, now: [])})
        tunnel = EspTunnel(profile, connector=connector)
        assert isinstance(tunnel, Tunnel)
        await tunnel.connect()
        for seq in range(4):
            tunnel.send_packet(echo_request("198.19.11.2", "198.19.20.5", seq))
        with pytest.raises(SessionError) as ended:
            await tunnel.wait_closed()
        assert ended.value.stage is Stage.SA_EXPIRED and not ended.value.recoverable
        with pytest.raises(SessionError) as again:
            await tunnel.reconnect()
        assert again.value.stage is Stage.CLOSED
        return tunnel

    tunnel = run(main())
    assert tunnel.session.counters.packets_out == 3


def test_ike_rekeys_install_new_sas_in_the_core_and_are_counted():
    async def main():
        peer = IkePeer()
        connector = FakeConnector({"swan": peer})
        tunnel = IkeTunnel(ike_profile(remote_addrs=["swan"], child_rekey_time=30,
                                       rekey_time=100), connector=connector)
        await tunnel.connect(timeout=10)
        first_out = tunnel.session.esp.outbound.spi
        first_in = set(tunnel.session.esp.inbound)
        while tunnel.rekeys < 3:                 # CHILD_SA at 30, 60, 90; IKE SA at 100
            await asyncio.sleep(5)
        await asyncio.sleep(5)
        esp = tunnel.session.esp
        assert esp.outbound.spi != first_out and not first_in & set(esp.inbound)
        assert tunnel.session.child_rekeys >= 3 and tunnel.up
        dst = str(ipaddress.ip_network(NET)[5])
        tunnel.send_packet(build_ipv4(VIP, dst, PROTO_ICMP, b"after rekeys"))
        await asyncio.sleep(0.1)
        assert peer.esp[-1][:4] == esp.outbound.spi.to_bytes(4, "big")
        await tunnel.close()
        return peer

    peer = run(main())
    assert len(peer.sim.log.child_rekeys) >= 3


# -- the profile's connect-retry, connect-retry-max, connect-timeout, remote-random-hostname

def test_connect_retry_waits_as_the_stock_client_and_connect_retry_max_gives_up():
    async def main():
        connector = FakeConnector({})                  # no name resolves
        tunnel = static_tunnel(connector, hosts=("a", "b"))
        tunnel.driver.retry = OpenVPNDriver(SimpleNamespace(
            connect_retry=(3, 20), connect_retry_max=9, remotes=[], static_key=None),
            session_factory=object).retry
        tunnel.driver.retry_attempts = 9
        with pytest.raises(SessionError) as failed:
            await tunnel.reconnect()
        assert failed.value.stage is Stage.RESOLVE
        return connector

    connector = run(main())
    assert connector.resolved == ["a", "b"] * 9                  # 9 rounds, then it stops
    rounds = connector.resolve_times[::2]
    waits = [round(b - a, 3) for a, b in zip(rounds, rounds[1:])]
    assert waits == [3, 3, 3, 3, 3, 6, 12, 20]                    # 5 at n, then doubling


def test_a_connection_blocks_own_connect_retry_sets_the_wait_after_it_failed():
    async def main():
        connector = FakeConnector({})                  # no name resolves
        tunnel = static_tunnel(connector, hosts=("a", "b"))
        tunnel.profile.remotes[1].connect_retry = (7, 7)       # <connection> b's own
        tunnel.driver.retry_attempts = 3
        with pytest.raises(SessionError):
            await tunnel.reconnect()
        return connector

    connector = run(main())
    assert connector.resolved == ["a", "b"] * 3
    rounds = connector.resolve_times[::2]
    assert [round(b - a, 3) for a, b in zip(rounds, rounds[1:])] == [7, 7]


STATIC_KEY_PEM = ("-----BEGIN OpenVPN Static key V1-----\n"
                  + "\n".join(KEY.hex()[i:i + 32] for i in range(0, 512, 32))
                  + "\n-----END OpenVPN Static key V1-----\n")


@pytest.mark.parametrize("limit, rounds", [(10.0, 4), (0.0, 1)])
def test_resolv_retry_n_gives_up_on_a_name_after_n_seconds(limit, rounds):
    async def main():
        connector = FakeConnector({})                  # no name resolves
        tunnel = static_tunnel(connector, hosts=("a",))
        tunnel.driver.retry = OpenVPNDriver(SimpleNamespace(
            connect_retry=(4, 4), remotes=[], static_key=None),
            session_factory=object).retry
        tunnel.driver.resolve_retry = limit
        with pytest.raises(SessionError) as failed:
            await tunnel.reconnect()
        return connector, failed.value

    connector, error = run(main())
    assert error.stage is Stage.RESOLVE and not error.recoverable
    assert f"resolv-retry {limit:g}: giving up" in str(error)
    assert len(connector.resolved) == rounds          # 0, 4, 8, 12 s: 12 >= 10


def test_resolv_retry_infinite_keeps_trying():
    from erebus.openvpn.config import parse_profile
    text = ("dev tun\nremote a.example\nsecret [inline]\n<secret>\n" + STATIC_KEY_PEM +
            f"</secret>\nifconfig {CLIENT_IP} {SERVER_IP}\ncipher AES-256-CBC\n")
    assert OpenVPNDriver(parse_profile(text, "p.ovpn")).resolve_retry is None
    assert OpenVPNDriver(parse_profile(text + "resolv-retry infinite\n", "p.ovpn")
                         ).resolve_retry is None
    assert OpenVPNDriver(parse_profile(text + "resolv-retry 30\n", "p.ovpn")
                         ).resolve_retry == 30


def test_the_driver_takes_retry_timeouts_mtu_and_random_labels_from_the_profile():
    from erebus.openvpn.config import parse_profile
    profile = parse_profile(
        "dev tun\nconnect-retry 4 30\nconnect-retry-max 3\nremote-random-hostname\n"
        "<connection>\nremote vpn.example.test 1194\nconnect-timeout 7\ntun-mtu 1400\n"
        "</connection>\n<connection>\nremote 198.18.7.1 443\n</connection>\n"
        f"secret [inline]\n<secret>\n{STATIC_KEY_PEM}</secret>\nifconfig {CLIENT_IP} "
        f"{SERVER_IP}\ncipher AES-256-CBC\n", "retry.ovpn")
    driver = OpenVPNDriver(profile)
    assert (driver.retry.first, driver.retry.cap, driver.retry.steady) == (4, 30, 5)
    assert driver.retry_attempts == 3
    first, second = driver.endpoints(), driver.endpoints()
    assert re.fullmatch(r"[0-9a-f]{12}\.vpn\.example\.test", first[0].host)
    assert first[0].host != second[0].host                   # a new label every try
    assert first[1].host == "198.18.7.1" and first[1].port == 443      # no label on an IP
    assert first[0].timeout == 7 and first[1].timeout == 120   # 2.6's default
    assert first[0].source.tun_mtu == 1400


class NeverAnswers:
    """A core whose peer never answers (what the shell sees of a silent server)."""

    counters = None
    established = finished = answered = False

    def receive_datagram(self, data, now):
        return ()

    def send_packet(self, packet, now):
        return None

    def datagrams_to_send(self, now):
        return []

    def get_timer(self):
        return None

    def handle_timer(self, now):
        pass

    def next_event(self):
        return None

    def close(self, now):
        pass

    def connect_timeout(self):
        return Stage.UNREACHABLE, "no answer from the server"


def test_each_endpoint_gets_its_own_connect_timeout(caplog):
    class Driver(OpenVPNDriver):
        def endpoints(self):
            return [Endpoint("silent", 1194, timeout=5), Endpoint("vpn", 1194, timeout=50)]

        def new_session(self, now, endpoint, local, remote, previous):
            return NeverAnswers() if endpoint.host == "silent" else make(1, now=now)

    async def main():
        loop = asyncio.get_running_loop()
        connector = FakeConnector({"silent": lambda: SimpleNamespace(receive=lambda d, n: []),
                                   "vpn": lambda: EchoPeer(peer_of(1))})
        profile = SimpleNamespace(remotes=[], warnings=[], connect_timeout=120,
                                  static_key=None)
        tunnel = ShellTunnel(Driver(profile, session_factory=object), warnings=[],
                             connect_timeout=120, connector=connector)
        started = loop.time()
        info = await tunnel.connect()
        waited = loop.time() - started
        await tunnel.close()
        return info, waited

    with caplog.at_level(logging.WARNING, logger="erebus.tunnel"):
        info, waited = run(main())
    assert info.server == "vpn:1194" and 5 <= waited < 6
    assert "silent:1194: timed out after 5 s (no answer from the server); trying the next " \
        "remote" in caplog.text
