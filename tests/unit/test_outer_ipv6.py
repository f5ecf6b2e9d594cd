"""The IPv6 outer transport, as OpenVPN 2.6 chooses it: every client spelling of
``proto`` and ``remote``'s PROTO with its address family (socket.c proto_names),
what 2.6 cannot resolve refused while reading, the shell trying each address of a
name in order (init.c next_connection_entry) in virtual time, and the pieces that
write an IPv6 address: logs and probe ([2001:2::1]:1194), the pcap, HTTP CONNECT,
SOCKS5 ATYP 4, IPsec's refusal."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from types import SimpleNamespace

import pytest

from erebus.errors import SessionError
from erebus.openvpn.config import ProfileError, parse_profile
from erebus.openvpn.profile import Remote
from erebus.runtime.ipsec import ipv4_endpoint
from erebus.runtime.openvpn import OpenVPNDriver
from erebus.runtime.pcap import PcapWriter
from erebus.runtime.tunnel import DirectConnector, Endpoint, ShellTunnel, host_port, \
    udp_socket
from erebus.session import Stage
from erebus.wire import socks5
from erebus.wire.checksum import internet_checksum
from erebus.wire.httpconnect import connect_request
from tests.profiles import pki as P
from tests.unit.test_shell import EchoPeer, NeverAnswers
from tests.unit.test_static import make, peer_of
from tests.unit.virtual_loop import FakeConnector, run

_PKI = P.Pki()
V6, V4 = "2001:2::1", "198.18.1.1"


def profile(body: str, *, head: str = "client\ndev tun\n") -> str:
    return head + body + _PKI.inline()


def remotes(body: str, **kw):
    return [(r.host, r.port, r.proto, r.family) for r in
            parse_profile(profile(body, **kw), "p.ovpn").remotes]


def problems(body: str, **kw) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(ProfileError) as e:
        parse_profile(profile(body, **kw), "p.ovpn")
    return [(x.line, x.option, str(x)) for x in e.value.problems]


# -- the profile ---------------------------------------------------------------------------

@pytest.mark.parametrize("word, proto, family", [
    ("udp", "udp", None), ("udp4", "udp", "ipv4"), ("udp6", "udp", "ipv6"),
    ("tcp", "tcp-client", None), ("tcp4", "tcp-client", "ipv4"),
    ("tcp6", "tcp-client", "ipv6"), ("tcp-client", "tcp-client", None),
    ("tcp4-client", "tcp-client", "ipv4"), ("tcp6-client", "tcp-client", "ipv6"),
])
def test_every_client_spelling_of_26_with_its_family(word, proto, family):
    host = V4 if family == "ipv4" else V6 if family == "ipv6" else "vpn.example.com"
    assert remotes(f"proto {word}\nremote {host} 1194\n") == [(host, 1194, proto, family)]
    assert remotes(f"remote {host} 443 {word}\n") == [(host, 443, proto, family)]
    r = parse_profile(profile(f"remote {host} 443 {word}\n")).remotes[0]
    assert r.proto_word == {"tcp": "tcp-client", "tcp4": "tcp4-client",
                            "tcp6": "tcp6-client"}.get(word, word)


def test_a_remote_proto_without_a_family_keeps_the_connections_family():
    # options.c connection_entry_load_re: re->af only when the word has one
    assert remotes(f"proto udp6\nremote {V6} 1194 udp\nremote h.example.com 1 tcp4\n") == [
        (V6, 1194, "udp", "ipv6"), ("h.example.com", 1, "tcp-client", "ipv4")]
    assert remotes(f"proto tcp4\n<connection>\nremote {V6} 443 udp6\n</connection>\n"
                   "<connection>\nremote h.example.com 443\n</connection>\n") == [
        (V6, 443, "udp", "ipv6"), ("h.example.com", 443, "tcp-client", "ipv4")]


@pytest.mark.parametrize("word", ["tcp-server", "tcp4-server", "tcp6-server"])
def test_server_spellings_stay_refused(word):
    (got,) = problems(f"remote {V4} 1194\nproto {word}\n")
    assert got[:2] == (4, "proto") and got[2].endswith(f"erebus is a client: {word} is "
                                                       "for servers")


def test_protocols_are_compared_exactly_as_26_does():
    (got,) = problems(f"remote {V4} 1194 UDP6\n")
    assert got[:2] == (3, "remote")
    assert "unknown protocol 'UDP6' (protocols are lower case: udp6)" in got[2]
    (got,) = problems(f"remote {V4} 1194\nproto sctp\n")
    assert "unknown protocol 'sctp'" in got[2] and "tcp6-client" in got[2]


def test_proto_tcp_is_ambiguous_without_client():
    text = "tls-client\npull\ndev tun\nproto tcp6\n"
    (got,) = problems(f"remote {V6} 1194\n", head=text)
    assert got == (4, "proto", "p.ovpn:4: proto: --proto tcp is ambiguous in this context. "
                   "Please specify --proto tcp-server or --proto tcp-client")
    (got,) = problems(f"remote {V6} 1194 tcp\n", head="tls-client\npull\ndev tun\n")
    assert got[:2] == (4, "remote") and "ambiguous" in got[2]
    assert remotes(f"remote {V6} 1194 tcp6-client\n", head="tls-client\npull\n") == [
        (V6, 1194, "tcp-client", "ipv6")]


@pytest.mark.parametrize("host, words", [
    ("[2001:2::1]", "OpenVPN takes an IPv6 address without brackets and the port as the "
                    "next word (remote 2001:2::1 PORT)"),
    ("[2001:2::1]:1194", "(remote 2001:2::1 1194)"),
    ("198.18.1.1:1194", "give the port as the next word (remote 198.18.1.1 1194)"),
    ("vpn.example.com:443", "(remote vpn.example.com 443)"),
    ("2001:2::g", "is not an IPv6 address"),
])
def test_what_26_cannot_resolve_is_refused_on_its_line(host, words):
    (got,) = problems(f"remote {host}\n")
    assert got[:2] == (3, "remote") and words in got[2], got


def test_an_ipv6_address_with_a_port_like_tail_is_an_address_as_for_26():
    # getaddrinfo reads 2001:2::1:1194 as one IPv6 address; so does 2.6
    assert remotes("remote 2001:2::1:1194\n") == [("2001:2::1:1194", 1194, "udp", None)]


@pytest.mark.parametrize("line, want", [
    (f"remote {V6} 1194 udp4", "2001:2::1 is an IPv6 address but the protocol asks for "
                               "IPv4 only"),
    (f"remote {V4} 1194 tcp6", "198.18.1.1 is an IPv4 address but the protocol asks for "
                               "IPv6 only"),
])
def test_a_literal_of_the_other_family_is_refused_not_later(line, want):
    (got,) = problems(line + "\n")       # and no "no 'remote' line" after it
    assert got[:2] == (3, "remote") and want in got[2]


def test_socks_over_udp_is_forced_to_ipv4_as_in_26():
    p = parse_profile(profile(f"proto udp6\nremote vpn.example.com 1194\n"
                              f"socks-proxy {V4} 1080\n"), "p.ovpn")
    assert p.remotes[0].family == "ipv4"
    assert "p.ovpn:3: proto: WARNING: '--proto udp6' is not compatible with " \
        "'--socks-proxy' today.  Forcing IPv4 mode." in p.warnings
    assert parse_profile(profile(f"remote vpn.example.com 1194\nsocks-proxy {V4} 1080\n")
                         ).remotes[0].family == "ipv4"          # plain udp: quietly
    (got,) = problems(f"remote {V6} 1194 udp\nsocks-proxy {V4} 1080\n")
    assert "socks-proxy over UDP carries IPv4 only" in got[2]
    # over TCP the proxy gets the name (or the IPv6 address) as it is
    p = parse_profile(profile(f"remote {V6} 443 tcp6-client\nsocks-proxy {V4} 1080\n"))
    assert p.remotes[0].family == "ipv6" and p.remotes[0].proxy.kind == "socks"


# -- names and addresses, as shown -------------------------------------------------------

def test_addresses_are_shown_the_way_users_write_them():
    assert host_port(V6, 1194) == "[2001:2::1]:1194" and host_port(V4, 1) == "198.18.1.1:1"
    assert Endpoint(V6, 1194).name == "[2001:2::1]:1194"
    assert Endpoint("vpn.example.com", 443, "tcp-client", family="ipv4").family_note == \
        "tcp4-client: IPv4 addresses only"
    assert Endpoint("vpn.example.com", 1194, family="ipv6").family_note == \
        "udp6: IPv6 addresses only"
    assert Endpoint("vpn.example.com", 1194).family_note == ""


def test_the_direct_connector_resolves_literals_with_the_family_and_opens_ipv6():
    async def main():
        c = DirectConnector()
        assert await c.resolve(Endpoint(V6, 1194, family="ipv6")) == [(V6, 1194)]
        assert await c.resolve(Endpoint(V6, 1194, "tcp-client")) == [(V6, 1194)]
        assert await c.resolve(Endpoint(V4, 1194, family="ipv4")) == [(V4, 1194)]
        with pytest.raises(socket.gaierror):
            await c.resolve(Endpoint(V4, 1194, family="ipv6"))
        with pytest.raises(socket.gaierror):
            await c.resolve(Endpoint(V6, 1194, family="ipv4"))

    asyncio.run(main())
    try:
        sock = udp_socket(("::1", 9))            # loopback only: nothing is sent
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with sock:
        assert sock.family == socket.AF_INET6 and sock.getpeername()[:2] == ("::1", 9)
    with udp_socket(("127.0.0.1", 9)) as sock:
        assert sock.family == socket.AF_INET


# -- the shell, in virtual time ------------------------------------------------------------

class Driver(OpenVPNDriver):
    """Static-key cores (up at once) for the addresses with a peer; a core that
    sends one datagram and never hears back for the others (a silent or refusing
    server, as the shell sees them)."""

    talk_to = (V4, V6)

    def new_session(self, now, endpoint, local, remote, previous):
        if remote[0] in self.talk_to:
            return make(1, now=now)
        return Unanswered()


class Unanswered(NeverAnswers):
    sent = False

    def datagrams_to_send(self, now):
        if self.sent:
            return []
        self.sent = True
        return [b"\x38hello"]


def tunnel_of(connector, *remotes_, timeout=10, talk_to=(V4, V6)) -> ShellTunnel:
    profile = SimpleNamespace(remotes=list(remotes_), warnings=[], tls_wrap=None,
                              connect_timeout=timeout, static_key=None)
    driver = Driver(profile, session_factory=object)
    driver.talk_to = talk_to
    return ShellTunnel(driver, warnings=[], connect_timeout=timeout, connector=connector)


def silent():
    return SimpleNamespace(receive=lambda datagram, now: [])


def test_every_address_of_a_name_is_tried_in_order_then_the_next_remote(caplog):
    async def main():
        connector = FakeConnector(
            {V6: silent, "198.18.5.5": "refused", V4: lambda: EchoPeer(peer_of(1))},
            addresses={"vpn46": [V6, "198.18.5.5", V4]})
        loop = asyncio.get_running_loop()
        tunnel = tunnel_of(connector, Remote("vpn46", 1194, "udp"), talk_to=(V4,))
        started = loop.time()
        info = await tunnel.connect()
        waited = loop.time() - started
        await tunnel.close()
        return connector, info, waited

    with caplog.at_level(logging.INFO, logger="erebus.tunnel"):
        connector, info, waited = run(main())
    # one resolution, three tries: the silent one costs its own timeout, the refused
    # one ends at its first ICMP error
    assert connector.resolved == ["vpn46"]
    assert connector.opened == [("vpn46", V6), ("vpn46", "198.18.5.5"), ("vpn46", V4)]
    assert 10 <= waited < 11
    assert info.server == "vpn46:1194 (198.18.1.1:1194)" and info.address == "198.18.1.1:1194"
    assert "connecting to vpn46:1194 ([2001:2::1]:1194, udp)" in caplog.text
    assert "vpn46:1194 ([2001:2::1]:1194): timed out after 10 s (no answer from the server)" \
        "; trying the next address of vpn46 (198.18.5.5:1194)" in caplog.text
    assert "trying the next address of vpn46 (198.18.1.1:1194)" in caplog.text


@pytest.mark.parametrize("family, opened", [("ipv4", V4), ("ipv6", V6)])
def test_the_family_restricts_the_addresses_tried(family, opened):
    async def main():
        connector = FakeConnector({V6: lambda: EchoPeer(peer_of(1)),
                                   V4: lambda: EchoPeer(peer_of(1))},
                                  addresses={"vpn46": [V6, V4]})
        tunnel = tunnel_of(connector, Remote("vpn46", 1194, "udp", family=family))
        info = await tunnel.connect()
        await tunnel.close()
        return connector, info

    connector, info = run(main())
    assert connector.opened == [("vpn46", opened)]
    assert info.address == host_port(opened, 1194)


def test_a_name_without_an_address_of_the_family_says_so_and_the_next_remote_is_tried(
        caplog):
    async def main():
        connector = FakeConnector({V4: lambda: EchoPeer(peer_of(1))},
                                  addresses={"vpn4": [V4]})
        tunnel = tunnel_of(connector, Remote("vpn4", 1194, "udp", family="ipv6"),
                           Remote("vpn4", 1194, "tcp-client", family="ipv6"))
        with pytest.raises(SessionError) as e:
            await tunnel.connect()
        return connector, e.value

    with caplog.at_level(logging.WARNING, logger="erebus.tunnel"):
        connector, error = run(main())
    assert error.stage == Stage.RESOLVE and error.recoverable
    assert str(error) == ("cannot resolve vpn4:1194: No address associated with hostname "
                          "(tcp6-client: IPv6 addresses only)")
    assert "cannot resolve vpn4:1194: No address associated with hostname (udp6: IPv6 " \
        "addresses only); trying the next remote" in caplog.text
    assert connector.opened == []


def test_the_ipv6_address_of_a_literal_remote_is_its_name():
    async def main():
        connector = FakeConnector({V6: lambda: EchoPeer(peer_of(1))},
                                  addresses={V6: [V6]})
        tunnel = tunnel_of(connector, Remote(V6, 1194, "udp", family="ipv6"))
        info = await tunnel.connect()
        await tunnel.close()
        return info

    info = run(main())
    assert info.server == info.address == "[2001:2::1]:1194"


# -- what writes an IPv6 address -------------------------------------------------------------

def test_the_pcap_wraps_ipv6_datagrams_in_a_valid_ipv6_udp_header(tmp_path):
    path = tmp_path / "x.pcapng"
    with PcapWriter(str(path)) as pcap:
        pcap.write_outer(b"\x38hello", ("2001:2:0:1::2", 40000), (V6, 1194), 1.0,
                         inbound=False)
    data = path.read_bytes()
    addrs = ipaddress.IPv6Address("2001:2:0:1::2").packed + ipaddress.IPv6Address(V6).packed
    start = data.index(addrs) - 8         # the IPv6 header the addresses are in
    packet = data[start:start + 40 + 8 + 6]
    _, length, next_header, hops = struct.unpack_from("!IHBB", packet)
    assert (length, next_header, hops) == (14, 17, 64)
    src, dst = packet[8:24], packet[24:40]
    assert ipaddress.IPv6Address(src) == ipaddress.IPv6Address("2001:2:0:1::2")
    assert ipaddress.IPv6Address(dst) == ipaddress.IPv6Address(V6)
    assert struct.unpack_from("!HH", packet, 40) == (40000, 1194)
    pseudo = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + 14 + 17
    assert internet_checksum(packet[40:], pseudo) == 0        # the checksum verifies
    assert packet[48:] == b"\x38hello"


def test_http_connect_brackets_an_ipv6_server():
    data, _ = connect_request(V6, 1194)
    assert data.startswith(b"CONNECT [2001:2::1]:1194 HTTP/1.0\r\n")
    assert b"\r\nHost: [2001:2::1]\r\n" in data or data.count(b"Host: [2001:2::1]") == 1
    data, _ = connect_request("vpn.example.com", 443)
    assert data.startswith(b"CONNECT vpn.example.com:443 HTTP/1.0\r\n")


def test_socks5_connect_sends_an_ipv6_server_as_atyp_4():
    data = socks5.request(socks5.CMD_CONNECT, V6, 1194, as_domain=True)
    assert data == b"\x05\x01\x00\x04" + ipaddress.IPv6Address(V6).packed + b"\x04\xaa"
    # an IPv4 literal and a name still go as names, as 2.6 sends them
    assert socks5.request(socks5.CMD_CONNECT, V4, 1, as_domain=True)[3] == socks5.ATYP_DOMAIN


def test_ipsec_stays_ipv4_outer_and_says_so():
    with pytest.raises(SessionError) as e:
        ipv4_endpoint(V6, 500, 0)
    assert e.value.stage == Stage.CONFIG and not e.value.recoverable
    assert str(e.value) == ("[2001:2::1]:500: erebus's IPsec reaches its peer over IPv4 "
                            "only: use its IPv4 address or a name with an A record")
    endpoint = ipv4_endpoint("ike.example.com", 500, 0)
    assert endpoint.family == "ipv4"
    assert endpoint.family_note == "erebus's IPsec reaches its peer over IPv4 only"
