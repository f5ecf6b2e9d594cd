"""PUSH_REPLY parsing (push.c / options.c as a 2.6 server sends them)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erebus.errors import ParseError
from erebus.openvpn.push import (MAX_PUSHED_OPTIONS, PEER_ID_MAX, TIMER_MAX, TUN_MTU_MAX,
                                 TUN_MTU_MIN, PushedOptions, Route, apply_push_option,
                                 parse_push_reply)

REPLY = ("PUSH_REPLY,route 198.18.2.0 255.255.255.0,route-gateway 198.19.1.1,topology subnet,"
         "ping 10,ping-restart 60,dhcp-option DNS 198.18.2.2,"
         "ifconfig 198.19.1.2 255.255.255.0,peer-id 0,cipher AES-256-GCM,"
         "protocol-flags cc-exit tls-ekm dyn-tls-crypt,tun-mtu 1500")


def parse(*messages: str) -> PushedOptions:
    opts = PushedOptions()
    for m in messages:
        parse_push_reply(m, opts)
    return opts


def test_realistic_openvpn_26_reply():
    opts = PushedOptions()
    assert parse_push_reply(REPLY, opts) is True
    assert opts.routes == [Route("198.18.2.0", "255.255.255.0", None)]
    assert [r.cidr for r in opts.routes] == ["198.18.2.0/24"]
    assert opts.route_gateway == "198.19.1.1" and opts.gateway == "198.19.1.1"
    assert opts.topology == "subnet"
    assert (opts.ping, opts.ping_restart) == (10, 60)
    assert opts.dns == ["198.18.2.2"]
    assert opts.ifconfig == ("198.19.1.2", "255.255.255.0")
    assert opts.virtual_ip == "198.19.1.2" and opts.netmask == "255.255.255.0"
    assert opts.peer_id == 0
    assert opts.cipher == "AES-256-GCM"
    assert opts.protocol_flags == {"cc-exit", "tls-ekm", "dyn-tls-crypt"}
    assert opts.tun_mtu == 1500
    assert opts.ignored == []
    assert len(opts.raw) == 11


def test_push_continuation_merges_replies():
    opts = PushedOptions()
    first = ("PUSH_REPLY,route 198.18.10.0 255.255.255.0,dhcp-option DNS 198.18.0.53,"
             "topology subnet,push-continuation 2")
    second = ("PUSH_REPLY,route 198.18.11.0 255.255.255.0,dhcp-option DNS 198.18.0.54,"
              "ifconfig 198.18.1.5 255.255.255.0,peer-id 3,push-continuation 1")
    assert parse_push_reply(first, opts) is False
    assert opts.ifconfig is None                     # not there yet
    assert parse_push_reply(second, opts) is True
    assert [r.cidr for r in opts.routes] == ["198.18.10.0/24", "198.18.11.0/24"]
    assert opts.dns == ["198.18.0.53", "198.18.0.54"]
    assert opts.virtual_ip == "198.18.1.5" and opts.peer_id == 3
    assert opts.topology == "subnet"                 # survives from the first part
    assert not any("push-continuation" in r for r in opts.raw)


def test_net30_topology_uses_peer_address():
    opts = parse("PUSH_REPLY,ifconfig 198.18.0.6 198.18.0.5")
    assert opts.topology == "net30"
    assert opts.netmask == "255.255.255.255" and opts.gateway == "198.18.0.5"


def test_route_variants():
    opts = parse("PUSH_REPLY,route 198.18.5.5,route 198.18.6.0 255.255.254.0 198.18.0.1,"
                 "route 198.18.7.0 255.255.255.0 vpn_gateway,"
                 "route 198.18.8.0 default default,route-gateway dhcp")
    assert opts.routes == [Route("198.18.5.5", "255.255.255.255"),
                           Route("198.18.6.0", "255.255.254.0", "198.18.0.1"),
                           Route("198.18.7.0", "255.255.255.0"),
                           Route("198.18.8.0", "255.255.255.255")]
    assert [r.cidr for r in opts.routes] == ["198.18.5.5/32", "198.18.6.0/23",
                                             "198.18.7.0/24", "198.18.8.0/32"]
    assert opts.route_gateway is None


def test_other_options():
    opts = parse('PUSH_REPLY,dhcp-option DOMAIN corp.example,dhcp-option NTP 198.18.0.9,'
                 'auth-token "SESS_ID_abc=",key-derivation tls-ekm,cipher aes-128-gcm,'
                 'auth SHA256,comp-lzo no,explicit-exit-notify 3,redirect-gateway def1')
    assert opts.domain == "corp.example"
    assert opts.auth_token == "SESS_ID_abc="
    assert opts.key_derivation == "tls-ekm"
    assert opts.cipher == "AES-128-GCM"
    # 2.6 does not take 'auth' from a push ("cannot be used in this context")
    assert opts.not_pullable == ["auth SHA256"]
    assert opts.compression == "comp-lzo no"
    assert opts.ignored == ["dhcp-option NTP 198.18.0.9", "explicit-exit-notify 3",
                            "redirect-gateway def1"]


def test_domain_search_kept_bounded_for_the_pac_file():
    from erebus.openvpn.push import DOMAIN_SEARCH_MAX
    from erebus.openvpn.session import tunnel_info
    extra = ",".join(f"dhcp-option DOMAIN-SEARCH d{i}.example" for i in range(12))
    opts = parse("PUSH_REPLY,ifconfig 198.18.8.6 255.255.255.0,topology subnet,"
                 "dhcp-option DOMAIN corp.example,dhcp-option DOMAIN-SEARCH corp.example,"
                 "dhcp-option DOMAIN-SEARCH lab.example," + extra)
    assert opts.domain_search[:2] == ["corp.example", "lab.example"]
    assert len(opts.domain_search) == DOMAIN_SEARCH_MAX
    assert opts.dropped and "DOMAIN-SEARCH" in opts.dropped[0]
    info = tunnel_info(opts, "AES-256-GCM", 0.0, 1500)
    assert info.domains[:3] == ["corp.example", "lab.example", "d0.example"]
    with pytest.raises(ParseError, match="DOMAIN-SEARCH"):
        parse("PUSH_REPLY,dhcp-option DOMAIN-SEARCH " + "x" * 254)


def test_empty_items_and_whitespace_tolerated():
    opts = parse("PUSH_REPLY,,ping 5, ,  ping-restart 30 ,")
    assert (opts.ping, opts.ping_restart) == (5, 30)


@pytest.mark.parametrize("message", [
    "PUSH_REQUEST",
    "AUTH_FAILED,bad password",
    "",
    "push_reply,ping 10",
])
def test_not_a_push_reply(message):
    with pytest.raises(ParseError):
        parse(message)


@pytest.mark.parametrize("option", [
    "ifconfig 198.18.0.300 255.255.255.0",
    "ifconfig 198.18.0.2 netmask",
    "route 198.18.0.0 255.0.255.0",          # non-contiguous netmask
    "route 198.18.0.0 0.0.0.255",            # a host mask, not a netmask
    "route nowhere",
    "route 198.18.0.0 255.255.255.0 gw",
    "route-gateway 198.18.1",
    "peer-id abc",
    "peer-id 16777216",
    "peer-id -1",
    "ping ten",
    "ping-restart 6O",
    "tun-mtu 1500.5",
    'route "198.18.0.0',                     # unbalanced quote
    # issue 13: numbers out of range, and what int() alone would take
    "tun-mtu 575", "tun-mtu 65536", "tun-mtu -1500", "tun-mtu 1_500", "tun-mtu \u0661\u0665",
    "ping -1", "ping-restart -60", "ping 2147483648", "ping +5", "ping-restart 0x10",
    "peer-id 99999999999999",
    # arity, names and addresses
    "ifconfig 198.18.0.2", "ifconfig 198.18.0.2 255.255.255.0 extra",
    "ifconfig 0.0.0.0 255.255.255.0", "ifconfig 224.0.0.1 255.255.255.0",
    "ifconfig 255.255.255.255 255.255.255.0", "ifconfig 127.0.0.1 255.255.255.0",
    "topology", "topology star", "topology subnet net30",
    "route", "route 198.18.0.0 255.255.255.0 198.18.0.1 1 9", "route 198.18.0.0 255.255.255.0 "
    "198.18.0.1 -1", "route remote_host 255.0.255.0 net_gateway",
    "route-gateway", "route-gateway 198.18.0.1 198.18.0.2",
    "dhcp-option", "dhcp-option DNS", "dhcp-option DNS 198.18.0.1 198.18.0.2",
    "dhcp-option DOMAIN", "dhcp-option DOMAIN " + "x" * 254,
    "cipher", "cipher AES-256-GCM AES-128-GCM", "cipher AES/256", "cipher " + "A" * 65,
    "ping", "ping-restart 1 2", "peer-id", "protocol-flags", "key-derivation",
    "auth-token", "auth-token " + "t" * 4097, "auth-token-user !!", "auth-token-user AGE=",
])
def test_malformed_values_raise_parse_error(option):
    with pytest.raises(ParseError):
        parse("PUSH_REPLY,ping 10," + option)


def test_ipv6_dns_servers_are_kept_in_order_with_the_ipv4_ones():
    # 2.6 options.c: "dhcp-option DNS" with a colon in the value is an IPv6 server (DNS6)
    opts = parse("PUSH_REPLY,dhcp-option DNS 2001:db8::53,dhcp-option DNS6 2001:db8::54,"
                 "dhcp-option DNS 198.18.0.53")
    assert opts.dns == ["2001:db8::53", "2001:db8::54", "198.18.0.53"]
    assert opts.dns6 == ["2001:db8::53", "2001:db8::54"]
    assert opts.ignored == [] and opts.dropped == []


def test_peer_id_range_edges():
    assert parse("PUSH_REPLY,peer-id 16777215").peer_id == 0xFFFFFF


def test_number_range_edges_are_accepted():
    opts = parse(f"PUSH_REPLY,tun-mtu {TUN_MTU_MIN},ping 0,ping-restart {TIMER_MAX},"
                 f"peer-id 0")
    assert (opts.tun_mtu, opts.ping, opts.ping_restart, opts.peer_id) == (576, 0, TIMER_MAX, 0)
    assert parse(f"PUSH_REPLY,tun-mtu {TUN_MTU_MAX} 1500").tun_mtu == 65535  # + OCC MTU
    assert PEER_ID_MAX == 0xFFFFFF


def test_a_refusal_names_the_option_on_one_short_line():
    with pytest.raises(ParseError) as info:
        parse("PUSH_REPLY,tun-mtu 100000")
    assert str(info.value) == "PUSH_REPLY: tun-mtu: 100000 is out of range (576..65535)"
    with pytest.raises(ParseError) as info:
        parse("PUSH_REPLY,cipher " + "\x1b[2J" * 5000)
    assert len(str(info.value)) < 120 and "\n" not in str(info.value)


def test_subnet_ifconfig_needs_a_netmask_whatever_the_order():
    with pytest.raises(ParseError, match="topology subnet"):
        parse("PUSH_REPLY,ifconfig 198.18.1.5 198.18.1.6,topology subnet")
    # net30: the second address is the peer, any address will do
    assert parse("PUSH_REPLY,ifconfig 198.18.1.6 198.18.1.5").netmask == "255.255.255.255"
    # the check waits for the last continuation message
    opts = PushedOptions()
    assert parse_push_reply("PUSH_REPLY,ifconfig 198.18.1.5 255.255.0.0,push-continuation 2",
                            opts) is False
    assert parse_push_reply("PUSH_REPLY,topology subnet,push-continuation 1", opts) is True
    assert opts.netmask == "255.255.0.0"


def test_special_addresses_are_routes_around_the_tunnel():
    opts = parse("PUSH_REPLY,route remote_host 255.255.255.255 net_gateway,"
                 "route 198.18.3.0 255.255.255.0 net_gateway,route-gateway vpn_gateway,"
                 "route 198.18.4.0 255.255.255.0 vpn_gateway 10")
    assert opts.routes == [Route("198.18.4.0", "255.255.255.0")]
    assert opts.route_gateway is None
    assert opts.ignored == ["route remote_host 255.255.255.255 net_gateway",
                            "route 198.18.3.0 255.255.255.0 net_gateway"]


def test_unknown_flags_and_methods_are_skipped_as_by_2_6():
    # options.c: "Unknown protocol-flags flag" / "Unknown key-derivation method" (non-fatal)
    opts = parse("PUSH_REPLY,protocol-flags cc-exit future-flag,key-derivation hkdf-9")
    assert opts.protocol_flags == {"cc-exit"} and opts.key_derivation is None
    assert opts.ignored == ["protocol-flags future-flag", "key-derivation hkdf-9"]


def test_auth_is_not_pullable():
    opts = parse("PUSH_REPLY,auth SHA224,auth none")
    assert opts.not_pullable == ["auth SHA224", "auth none"]


def test_pushed_options_are_bounded_over_continuations():
    opts = PushedOptions()
    part = "PUSH_REPLY," + ",".join(["route 198.18.9.0 255.255.255.0"] * 1000)
    with pytest.raises(ParseError, match=f"more than {MAX_PUSHED_OPTIONS} options"):
        for _ in range(MAX_PUSHED_OPTIONS // 1000 + 1):
            assert parse_push_reply(part + ",push-continuation 2", opts) is False
    assert len(opts.raw) == len(opts.routes) == MAX_PUSHED_OPTIONS


VOCAB = ["route", "route-gateway", "ifconfig", "dhcp-option", "DNS", "DOMAIN", "peer-id",
         "ping", "ping-restart", "tun-mtu", "cipher", "auth", "topology", "protocol-flags",
         "push-continuation", "key-derivation", "auth-token", "auth-token-user", "compress",
         "comp-lzo", "198.18.0.1", "255.255.255.0", "255.0.255.0", "0.0.0.0", "default",
         "vpn_gateway", "net_gateway", "remote_host", "dhcp", "subnet", "net30", "tls-ekm",
         "cc-exit", "none", "AES-256-GCM", "-1", "0", "2", "576", "65536", "99999999", "1_0",
         "\u0661", "'", '"', "\\", "x", "YQ==", "AA=="]


def _check_usable(opts: PushedOptions) -> None:
    """Whatever was accepted is within what the rest of erebus relies on."""
    import ipaddress
    for route in opts.routes:
        assert route.cidr
    if opts.peer_id is not None:
        assert 0 <= opts.peer_id <= 0xFFFFFF
    if opts.tun_mtu is not None:
        assert 576 <= opts.tun_mtu <= 65535
    for n in (opts.ping, opts.ping_restart):
        assert n is None or 0 <= n <= TIMER_MAX
    assert opts.topology in ("net30", "p2p", "subnet")
    if opts.ifconfig:
        ipaddress.IPv4Address(opts.ifconfig[0])
        ipaddress.IPv4Network(f"0.0.0.0/{opts.netmask}")
    assert opts.protocol_flags <= {"cc-exit", "tls-ekm", "dyn-tls-crypt"}
    if opts.auth_token_user is not None:
        assert "\x00" not in opts.auth_token_user
    assert len(opts.raw) <= MAX_PUSHED_OPTIONS


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.text(max_size=120),
    st.builds(lambda t: "PUSH_REPLY" + t, st.text(max_size=120)),
    st.lists(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=5).map(" ".join),
             max_size=8).map(lambda items: "PUSH_REPLY," + ",".join(items)),
))
def test_arbitrary_text_raises_only_parse_error(text):
    opts = PushedOptions()
    try:
        last = parse_push_reply(text, opts)
    except ParseError:
        return
    assert isinstance(last, bool)
    if last:
        _check_usable(opts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.sampled_from(VOCAB), st.text(max_size=12)),
                         min_size=1, max_size=6), max_size=12))
def test_random_option_lists_raise_only_parse_error(options):
    opts = PushedOptions()
    for words in options:
        try:
            apply_push_option(opts, " ".join(words))
        except ParseError:
            continue
    try:
        from erebus.openvpn.push import check_pushed
        check_pushed(opts)
    except ParseError:
        return
    _check_usable(opts)


def test_apply_push_option_directly():
    opts = PushedOptions()
    apply_push_option(opts, "ping 15")
    assert opts.ping == 15 and opts.raw == ["ping 15"]
