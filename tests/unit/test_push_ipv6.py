"""IPv6 inside the tunnel, as an OpenVPN 2.6 server pushes it (ifconfig-ipv6, route-ipv6,
route-ipv6-gateway, dhcp-option DNS6, block-ipv6, tun-ipv6) and as a profile gives it;
pull-filter; the TunnelInfo the session reports; block-ipv6's ICMPv6 answer."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erebus.errors import ConfigError, ParseError
from erebus.openvpn import block6
from erebus.openvpn.push import (DNS_SERVERS_MAX, PushedOptions, PushRejected, Route6,
                                 apply_push_option, parse_push_reply, parse_route_ipv6)
from erebus.openvpn.config import parse_profile
from erebus.openvpn.session import tunnel_info
from erebus.runtime.openvpn import session_settings
from tests.unit import test_session
from erebus.wire import icmpv6, ipv6

# what a stock 2.6.14 server with 'server-ipv6 2001:2:0:180::/64' and 'topology subnet'
# pushes (seen in the lab, verb 4)
REPLY6 = ("PUSH_REPLY,route 198.18.2.0 255.255.255.0,route-ipv6 2001:2:0:2::/64,"
          "dhcp-option DNS6 2001:2:0:2::2,tun-ipv6,route-gateway 198.19.80.1,topology subnet,"
          "ping 10,ping-restart 60,ifconfig-ipv6 2001:2:0:180::1000/64 2001:2:0:180::1,"
          "ifconfig 198.19.80.2 255.255.255.0,peer-id 3,cipher AES-256-GCM")


def parse(*messages: str, filters=()) -> PushedOptions:
    opts = PushedOptions()
    for m in messages:
        parse_push_reply(m, opts, filters)
    return opts


def test_a_2_6_server_ipv6_reply():
    opts = parse(REPLY6)
    assert opts.ifconfig_ipv6 == ("2001:2:0:180::1000", 64, "2001:2:0:180::1")
    assert (opts.virtual_ip6, opts.prefix6, opts.gateway6) == \
        ("2001:2:0:180::1000", 64, "2001:2:0:180::1")
    assert opts.routes_ipv6 == [Route6("2001:2:0:2::/64")]
    assert opts.dns == ["2001:2:0:2::2"]
    assert opts.dropped == [] and opts.ignored == []        # tun-ipv6: a no-op
    info = tunnel_info(opts, "AES-256-GCM", 0.1, 1500)
    assert (info.virtual_ip6, info.prefix6, info.gateway6) == \
        ("2001:2:0:180::1000", 64, "2001:2:0:180::1")
    assert info.routes6 == ["2001:2:0:2::/64"] and info.dns == ["2001:2:0:2::2"]
    assert info.virtual_ip == "198.19.80.2" and info.routes == ["198.18.2.0/24"]


def test_an_ipv4_only_reply_has_no_ipv6_side():
    info = tunnel_info(parse("PUSH_REPLY,ifconfig 198.19.1.2 255.255.255.0,topology subnet"),
                       "AES-256-GCM", 0.0, 1500)
    assert info.virtual_ip6 is None and info.prefix6 is None and info.gateway6 is None
    assert info.routes6 == []


def test_route_ipv6_spellings():
    opts = parse("PUSH_REPLY,route-ipv6 2001:2:0:2::77/64,route-ipv6 2001:2:0:3::/48 "
                 "2001:2:0:180::1,route-ipv6 ::/0 2001:2:0:180::1 5,route-ipv6 2001:2:0:9::1,"
                 "route-ipv6-gateway 2001:2:0:180::fe")
    # host bits cleared (route.c), /64 without bits (get_ipv6_addr), gateway and metric
    assert opts.routes_ipv6 == [Route6("2001:2:0:2::/64"),
                                Route6("2001:2::/48", "2001:2:0:180::1"),
                                Route6("::/0", "2001:2:0:180::1", 5),
                                Route6("2001:2:0:9::/64")]
    assert opts.route_ipv6_gateway == "2001:2:0:180::fe" == opts.gateway6


def test_dns_with_a_colon_is_an_ipv6_server():
    opts = parse("PUSH_REPLY,dhcp-option DNS 198.18.2.2,dhcp-option DNS 2001:2:0:2:0::2,"
                 "dhcp-option dns6 2001:2:0:2::3")
    assert opts.dns == ["198.18.2.2", "2001:2:0:2::2", "2001:2:0:2::3"]


@pytest.mark.parametrize("option, words", [
    ("ifconfig-ipv6 2001:2:0:180::1000/64", "takes 2 arguments, got 1"),
    ("ifconfig-ipv6 2001:2:0:180::1000/64 nowhere",
     "ifconfig-ipv6 parms '2001:2:0:180::1000/64' and 'nowhere' must be valid addresses"),
    ("ifconfig-ipv6 2001:2:0:180::zz/64 2001:2:0:180::1", "must be valid addresses"),
    ("ifconfig-ipv6 host.example/64 2001:2:0:180::1", "must be valid addresses"),
    ("ifconfig-ipv6 2001:2:0:180::1000/48 2001:2:0:180::1",
     "ifconfig-ipv6: /netbits must be between 64 and 124, not '/48'"),
    ("ifconfig-ipv6 2001:2:0:180::1000/125 2001:2:0:180::1", "not '/125'"),
    ("ifconfig-ipv6 2001:2:0:180::1000/129 2001:2:0:180::1", "invalid '/bits' spec (129)"),
    ("ifconfig-ipv6 2001:2:0:180::1000/6x 2001:2:0:180::1", "invalid '/bits' spec (6x)"),
    ("ifconfig-ipv6 ::/64 2001:2:0:180::1", "cannot be this client's address"),
    ("ifconfig-ipv6 ff02::1/64 2001:2:0:180::1", "cannot be this client's address"),
    ("ifconfig-ipv6 fe80::1%eth0/64 fe80::2", "must be valid addresses"),
    ("route-ipv6 2001:2:0:2::/64 gateway",
     "route-ipv6 parameter gateway 'gateway' must be a valid address"),
    ("route-ipv6 198.18.2.0/24", "route-ipv6 parameter network/IP '198.18.2.0/24' must be"),
    ("route-ipv6 2001:2:0:2::/64 2001:2:0:180::1 -1", "metric"),
    ("route-ipv6 2001:2:0:2::/64 2001:2:0:180::1 5 6", "takes 1 to 3 arguments"),
    ("route-ipv6-gateway 198.19.80.1", "route-ipv6-gateway parm '198.19.80.1' must be"),
    ("dhcp-option DNS6 198.18.2.2", "dhcp-option parameter DNS6 '198.18.2.2' must be an IP"),
    ("dhcp-option DNS 2001:db8::1x", "dhcp-option parameter DNS '2001:db8::1x'"),
    ("dhcp-option DNS6", "dhcp-option parameter DNS6 ''"),
    ("block-ipv6 yes", "takes no arguments"),
])
def test_a_malformed_ipv6_option_is_dropped_with_2_6s_words(option, words):
    # options.c in pull mode: msg(D_PUSH_ERRORS|M_OPTERR, ...); goto err -- the option is
    # skipped ("Options error: ...") and the rest of the reply applies
    opts = parse("PUSH_REPLY,ifconfig 198.19.80.2 255.255.255.0,topology subnet," + option)
    assert len(opts.dropped) == 1 and opts.dropped[0].startswith("Options error: ")
    assert words in opts.dropped[0]
    assert "\n" not in opts.dropped[0] and len(opts.dropped[0]) < 200
    assert opts.virtual_ip == "198.19.80.2" and opts.ifconfig_ipv6 is None
    assert opts.routes_ipv6 == [] and opts.dns == [] and not opts.block_ipv6


def test_a_dropped_value_is_cut_short():
    opts = parse("PUSH_REPLY,route-ipv6 " + "a" * 2000)
    assert len(opts.dropped) == 1 and len(opts.dropped[0]) < 200


def test_dns_servers_are_bounded():
    items = ",".join(f"dhcp-option DNS6 2001:2:0:2::{i:x}" for i in range(DNS_SERVERS_MAX + 5))
    opts = parse("PUSH_REPLY," + items)
    assert len(opts.dns) == DNS_SERVERS_MAX and len(opts.dropped) == 5


def test_tun_ipv6_and_block_ipv6_pushed():
    opts = parse("PUSH_REPLY,tun-ipv6,block-ipv6")
    assert opts.block_ipv6 and opts.dropped == [] and opts.ignored == []


# -- pull-filter (options.c apply_pull_filter) ----------------------------------------

def test_pull_filter_ignore_keeps_ipv6_out():
    opts = parse(REPLY6, filters=(("ignore", "ifconfig-ipv6"), ("ignore", "route-ipv6")))
    assert opts.ifconfig_ipv6 is None and opts.routes_ipv6 == []
    assert opts.filtered == ["route-ipv6 2001:2:0:2::/64",
                             "ifconfig-ipv6 2001:2:0:180::1000/64 2001:2:0:180::1"]
    assert opts.virtual_ip == "198.19.80.2" and opts.dns == ["2001:2:0:2::2"]


def test_pull_filter_first_match_decides():
    filters = (("accept", "route 198.18.2."), ("ignore", "route "), ("reject", "dhcp-option"))
    opts = parse("PUSH_REPLY,route 198.18.2.0 255.255.255.0,route 198.18.3.0 255.255.255.0",
                 filters=filters)
    assert [r.cidr for r in opts.routes] == ["198.18.2.0/24"]
    with pytest.raises(PushRejected, match="rejected by filter: 'dhcp-option DNS6"):
        parse("PUSH_REPLY,dhcp-option DNS6 2001:2:0:2::2", filters=filters)


def test_pull_filter_matches_a_prefix_after_leading_spaces():
    opts = parse("PUSH_REPLY, block-ipv6", filters=(("ignore", "block"),))
    assert not opts.block_ipv6


# -- the profile ----------------------------------------------------------------------

BASE = "client\ndev tun\nremote vpn.example 1194\n<ca>\n{ca}</ca>\nauth-user-pass\n"
pki = test_session.pki          # the fixture


@pytest.fixture
def ca_text(pki):
    return pki["lab-ca"][0].decode()


def _profile(ca_text, extra: str):
    return parse_profile(BASE.format(ca=ca_text) + extra, "t.ovpn")


def test_profile_ipv6_options(ca_text):
    p = _profile(ca_text, "ifconfig-ipv6 2001:2:0:180::5 2001:2:0:180::1\n"
                 "route-ipv6 2001:2:0:2::/64\nroute-ipv6-gateway 2001:2:0:180::fe\n"
                 "block-ipv6\ntun-ipv6\ndhcp-option DNS6 2001:2:0:2::2\n"
                 "dhcp-option DNS 2001:2:0:2::3\npull-filter ignore \"route-ipv6\"\n"
                 "pull-filter reject redirect-gateway\n")
    assert p.ifconfig_ipv6 == ("2001:2:0:180::5", 64, "2001:2:0:180::1")
    assert p.routes_ipv6 == [Route6("2001:2:0:2::/64")]
    assert p.route_ipv6_gateway == "2001:2:0:180::fe"
    assert p.block_ipv6 is True
    assert p.dns == ["2001:2:0:2::2", "2001:2:0:2::3"]
    assert p.pull_filters == [("ignore", "route-ipv6"), ("reject", "redirect-gateway")]
    assert any("tun-ipv6 is ignored" in w for w in p.warnings)
    s = session_settings(p)
    assert s.ifconfig_ipv6 == p.ifconfig_ipv6 and s.block_ipv6
    assert s.pull_filters == (("ignore", "route-ipv6"), ("reject", "redirect-gateway"))


@pytest.mark.parametrize("line, words", [
    ("ifconfig-ipv6 2001:2:0:180::5/48 2001:2:0:180::1", "between 64 and 124, not '/48'"),
    ("ifconfig-ipv6 2001:2:0:180::5 gateway", "must be valid addresses"),
    ("route-ipv6 2001:2:0:2::/64 nowhere", "route-ipv6 parameter gateway 'nowhere'"),
    ("route-ipv6-gateway 198.18.1.1", "route-ipv6-gateway parm '198.18.1.1'"),
    ("dhcp-option DNS6 198.18.2.2", "must be an IPv6 address"),
    ("pull-filter drop route", "Unknown --pull-filter type: drop"),
    ("ifconfig-ipv6-pool 2001:2:0:180::/64", "requires --mode server"),
])
def test_profile_refusals_name_file_line_and_option(ca_text, line, words):
    with pytest.raises(ConfigError) as exc:
        _profile(ca_text, line + "\n")
    err = exc.value
    assert err.path == "t.ovpn" and err.option == line.split()[0]
    assert err.line == BASE.format(ca=ca_text).count("\n") + 1
    assert words in str(err)


def test_route_ipv6_parser_refuses_with_value_error():
    with pytest.raises(ValueError):
        parse_route_ipv6(["nowhere"])


# -- fuzz -----------------------------------------------------------------------------

VOCAB6 = ["ifconfig-ipv6", "route-ipv6", "route-ipv6-gateway", "block-ipv6", "tun-ipv6",
          "dhcp-option", "DNS", "DNS6", "2001:2:0:180::1000/64", "2001:2:0:180::1",
          "::/0", "::", "ff02::1", "fe80::1", "2001:2::/129", "/64", "64", "-1", "x", "::1/64",
          "198.18.2.2", "2001:2:0:2::/64", "1" * 30, "%", "[", "]"]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.sampled_from(VOCAB6), st.text(max_size=16)),
                         min_size=1, max_size=5), max_size=10))
def test_ipv6_options_raise_only_parse_error_and_stay_usable(options):
    opts = PushedOptions()
    for words in options:
        try:
            apply_push_option(opts, " ".join(words))
        except ParseError:
            continue
    if opts.ifconfig_ipv6:
        addr, bits, remote = opts.ifconfig_ipv6
        ipaddress.IPv6Address(addr), ipaddress.IPv6Address(remote)
        assert 64 <= bits <= 124
    for r in opts.routes_ipv6:
        ipaddress.IPv6Network(r.cidr)
        assert r.gateway is None or ipaddress.IPv6Address(r.gateway)
    for d in opts.dns:
        ipaddress.ip_address(d)
    assert all(len(line) < 300 and "\n" not in line for line in opts.dropped)


# -- block-ipv6's answer ----------------------------------------------------------------

def test_block_ipv6_answers_no_route_from_the_remote_end():
    src, dst = "2001:2:0:180::1000", "2001:2:0:2::2"
    request = ipv6.build_ipv6(src, dst, ipv6.NH_ICMPV6,
                              icmpv6.build_echo_request(src, dst, 7, 1, b"hello"))
    reply = block6.unreachable_reply(request, "2001:2:0:180::1")
    header, payload = ipv6.parse_ipv6(reply)
    assert header.src_str == "2001:2:0:180::1" and header.dst_str == src
    message = icmpv6.parse_icmpv6(payload, header.src, header.dst)
    assert isinstance(message, icmpv6.Icmpv6Error)
    assert (message.type, message.code) == (icmpv6.DEST_UNREACH, icmpv6.UNREACH_NO_ROUTE)
    # without ifconfig-ipv6, fe80::7 (forward.c)
    header, _ = ipv6.parse_ipv6(block6.unreachable_reply(request, None))
    assert header.src_str == "fe80::7"
    # never an error for an error, nor for garbage
    assert block6.unreachable_reply(reply, None) is None
    assert block6.unreachable_reply(b"\x60" + bytes(10), None) is None
    assert not block6.is_ipv6_packet(b"\x45" + bytes(19)) and block6.is_ipv6_packet(request)


# -- the session ----------------------------------------------------------------------

def _echo6(src="2001:2:0:180::1000", dst="2001:2:0:2::2") -> bytes:
    return ipv6.build_ipv6(src, dst, ipv6.NH_ICMPV6,
                           icmpv6.build_echo_request(src, dst, 9, 1, b"erebus"))


def test_a_session_reports_and_carries_ipv6(pki):
    from erebus.openvpn.session import ClientSession, Connected
    from tests.unit.test_session import FakeServer, run
    from tests.unit.test_session import settings as session_settings_of
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(session_settings_of(ca), 0.0)
    server = FakeServer(cert, key, push=REPLY6)
    events, _, _ = run(client, server)
    info = next(e for e in events if isinstance(e, Connected)).info
    assert (info.virtual_ip6, info.prefix6, info.routes6, info.dns) == \
        ("2001:2:0:180::1000", 64, ["2001:2:0:2::/64"], ["2001:2:0:2::2"])
    # version nibble 6 both ways through the data channel, byte for byte
    packet = _echo6()
    assert server.receive(client.send_packet(packet, 1.0), 1.0) == [packet]
    back = _echo6("2001:2:0:2::2", "2001:2:0:180::1000")
    assert client.receive_datagram(server.data_key.encrypt(back), 1.0) == [back]


def test_block_ipv6_in_the_profile_keeps_ipv6_from_the_server(pki):
    from erebus.openvpn.session import ClientSession
    from tests.unit.test_session import FakeServer, run
    from tests.unit.test_session import settings as session_settings_of
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(session_settings_of(ca, block_ipv6=True), 0.0)
    server = FakeServer(cert, key, push=REPLY6)
    run(client, server)
    assert client.send_packet(_echo6(), 1.0) is None
    assert client.counters.dropped_block_ipv6 == 1
    (reply,) = client.local_packets()
    header, payload = ipv6.parse_ipv6(reply)
    assert header.src_str == "2001:2:0:180::1" and header.dst_str == "2001:2:0:180::1000"
    assert client.local_packets() == []
    ipv4 = bytes.fromhex("4500001c000000004001") + bytes(10)
    assert client.send_packet(ipv4, 1.0) is not None          # IPv4 still goes


def test_a_pull_filter_reject_restarts_the_session(pki):
    from erebus.openvpn.session import ClientSession
    from erebus.session import Failed
    from tests.unit.test_session import FakeServer, run
    from tests.unit.test_session import settings as session_settings_of
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(session_settings_of(
        ca, pull_filters=(("reject", "ifconfig-ipv6"),)), 0.0)
    events, _, _ = run(client, FakeServer(cert, key, push=REPLY6))
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed and failed[0].stage == "restart" and failed[0].recoverable
    assert "Pushed option rejected by filter: 'ifconfig-ipv6" in failed[0].message


@pytest.mark.parametrize("option", [None, "comp-lzo no", "comp-lzo yes", "compress",
                                    "compress lz4", "compress stub-v2", "compress lz4-v2"])
def test_compression_framing_carries_ipv6_packets(option):
    from erebus.openvpn.compress import Compression
    comp = Compression.from_options(option, None, allow_compression="asym")
    for packet in (_echo6(), _echo6() + bytes(1200), b"\x60"):
        assert comp.unframe(comp.frame(packet)) == packet
