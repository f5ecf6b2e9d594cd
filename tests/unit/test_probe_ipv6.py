"""probe over IPv6: --ping takes either family; an ICMPv6 echo from the tunnel's
virtual_ip6, answered by a fake far end; the report (text and JSON) shows the IPv6 side."""

from __future__ import annotations

import asyncio

import pytest

from erebus.errors import ConfigError
from erebus.probe import ping_address, ping_through, render
from erebus.session import TunnelInfo
from erebus.wire import icmp, icmpv6, ipv4, ipv6

INFO6 = TunnelInfo(kind="openvpn", server="vpn:1194", virtual_ip="198.19.80.2",
                   netmask="255.255.255.0", gateway="198.19.80.1", routes=["198.18.2.0/24"],
                   dns=["198.18.2.2", "2001:2:0:2::2"], virtual_ip6="2001:2:0:180::1000",
                   prefix6=64, gateway6="2001:2:0:180::1", routes6=["2001:2:0:2::/64"])


class EchoTunnel:
    """A tunnel whose far end answers echo requests of both families (or drops them)."""

    def __init__(self, info: TunnelInfo, answer: bool = True):
        self.info, self.answer, self.sent = info, answer, []
        self._receiver = None

    def set_receiver(self, receiver) -> None:
        self._receiver = receiver

    def send_packet(self, packet: bytes) -> None:
        self.sent.append(packet)
        if not self.answer:
            return
        loop = asyncio.get_running_loop()
        if packet[0] >> 4 == 6:
            h, body = ipv6.parse_ipv6(packet)
            reply = icmpv6.build_echo_reply(h.dst, h.src, body)
            out = ipv6.build_ipv6(h.dst, h.src, ipv6.NH_ICMPV6, reply)
            # noise first: a reply from someone else, garbage, an IPv4 packet
            other = ipv6.build_ipv6("2001:2:0:2::9", h.src, ipv6.NH_ICMPV6,
                                    icmpv6.build_echo_reply("2001:2:0:2::9", h.src, icmpv6.
                                                            parse_icmpv6(body, h.src, h.dst)))
            for p in (other, b"\x60" + bytes(5), b"\x45\x00", out):
                loop.call_soon(self._receiver, p)
        else:
            h, body = ipv4.parse_ipv4(packet)
            echo = icmp.parse_icmp(body)
            reply = icmp.build_echo_reply(echo.ident, echo.seq, echo.data) \
                if hasattr(icmp, "build_echo_reply") else None
            if reply is not None:
                loop.call_soon(self._receiver, ipv4.build_ipv4(h.dst, h.src, ipv4.PROTO_ICMP,
                                                               reply))


def test_ping_address_takes_both_families():
    assert ping_address("198.18.2.2") == "198.18.2.2"
    assert ping_address("2001:2:0:2:0:0:0:2") == "2001:2:0:2::2"
    assert ping_address("[2001:2:0:2::2]") == "2001:2:0:2::2"
    with pytest.raises(ConfigError, match="needs an IPv4 or IPv6 address, not 'web.lab"):
        ping_address("web.lab.test")


def test_an_icmpv6_echo_from_the_virtual_ip6_gets_its_reply():
    tunnel = EchoTunnel(INFO6)
    rtt = asyncio.run(ping_through(tunnel, "2001:2:0:2::2", wait=1.0))
    assert rtt is not None and rtt >= 0
    h, body = ipv6.parse_ipv6(tunnel.sent[0])
    assert h.src_str == "2001:2:0:180::1000" and h.dst_str == "2001:2:0:2::2"
    echo = icmpv6.parse_icmpv6(body, h.src, h.dst)         # checksum verified
    assert isinstance(echo, icmpv6.Icmpv6Echo) and echo.is_request and echo.seq == 1


def test_no_reply_is_none_after_the_tries():
    tunnel = EchoTunnel(INFO6, answer=False)
    assert asyncio.run(ping_through(tunnel, "2001:2:0:2::2", tries=2, wait=0.01)) is None
    assert len(tunnel.sent) == 2


def test_no_ipv6_address_is_one_clear_line():
    info = TunnelInfo(kind="openvpn", server="vpn:1194", virtual_ip="198.19.1.2",
                      netmask="255.255.255.0", gateway=None)
    with pytest.raises(ConfigError) as exc:
        asyncio.run(ping_through(EchoTunnel(info), "2001:2:0:2::2"))
    assert str(exc.value) == "--ping 2001:2:0:2::2: the tunnel has no IPv6 address"


def test_the_report_shows_the_ipv6_side():
    report = {"ok": True, "stage": "connected", **INFO6.as_dict(), "ping": "2001:2:0:2::2",
              "ping_ms": 1.5}
    text = render(report)
    assert "IPv6        2001:2:0:180::1000/64" in text
    assert "gateway6    2001:2:0:180::1" in text
    assert "routes6     2001:2:0:2::/64" in text
    assert "DNS         198.18.2.2, 2001:2:0:2::2" in text
    assert "ping        2001:2:0:2::2: 1.5 ms" in text
    ipv4_only = {"ok": True, "stage": "connected", **TunnelInfo(
        kind="openvpn", server="s", virtual_ip="198.19.1.2", netmask="255.255.255.0",
        gateway=None).as_dict()}
    assert "IPv6" not in render(ipv4_only)
