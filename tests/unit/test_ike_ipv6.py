"""IPv6 inside an IKEv2 tunnel: INTERNAL_IP6_ADDRESS / INTERNAL_IP6_DNS asked for and
parsed (RFC 7296 section 3.15.1), TS_IPV6_ADDR_RANGE selectors both ways (3.13.1), and
the TunnelInfo / ESP session that come of them.  Known-answer bytes for the builders,
a fake responder in virtual time for the initiator, hypothesis for the parsers."""

from __future__ import annotations

import ipaddress
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erebus.errors import ParseError
from erebus.ipsec import ike as ike_mod
from erebus.ipsec.ike import Failed, IkeInitiator
from erebus.ipsec.ikesession import IkeSession
from erebus.session import Connected as SessionConnected
from erebus.session import Note
from erebus.wire import esp as esp_wire
from erebus.wire import ike as w
from erebus.wire.ike import CP, SA, ConfigAttribute, IDr, AUTH, TrafficSelector, TSi, TSr
from erebus.wire.ipv6 import build_ipv6

from tests.unit.test_ike_initiator import DNS, NET, VIP, FakeResponder, connect, profile
from erebus.ipsec import ikecrypto as c

VIP6 = "2001:2:0:130::1"
DNS6 = "2001:2:0:131::53"
NET6 = "2001:2:0:131::/64"


class FakeResponder6(FakeResponder):
    """FakeResponder whose IKE_AUTH answer carries the CP attributes and selectors a
    test gives (default: both families); it keeps the initiator's request."""

    def __init__(self, *, attrs=None, tsi=None, tsr=None, **kw):
        super().__init__(**kw)
        self.attrs = attrs if attrs is not None else [
            ConfigAttribute.address(w.INTERNAL_IP4_ADDRESS, VIP),
            ConfigAttribute.ip6_address(VIP6, 64),
            ConfigAttribute.address(w.INTERNAL_IP4_DNS, DNS),
            ConfigAttribute.address(w.INTERNAL_IP6_DNS, DNS6)]
        self.tsi = tsi if tsi is not None else [f"{VIP}/32", f"{VIP6}/128"]
        self.tsr = tsr if tsr is not None else [NET, NET6]
        self.request_seen = None

    def ike_auth(self, data: bytes) -> bytes:
        req = self.decrypt(data)
        self.request_seen = req
        idi = req.get(w.IDi)
        octets = c.signed_octets(self.keys, initiator=True, message=self.init_request,
                                 nonce=self.nr, identity=idi)
        c.verify_auth(req.get(AUTH), octets, psk=self.psk, prf=self.keys.prf)
        prop = req.get(SA).proposals[0]
        self.peer_spi = int.from_bytes(prop.spi, "big")
        self.esp_name, _ = c.esp_transform_name(prop)
        idr = IDr.from_value("vpn.swan.test")
        my = c.signed_octets(self.keys, initiator=False, message=self.init_response,
                             nonce=self.ni, identity=idr)
        payloads = [idr, AUTH(w.AUTH_PSK, c.psk_auth(self.keys.prf, self.psk, my))]
        if self.attrs:
            payloads.append(CP(w.CFG_REPLY, self.attrs))
        payloads += [SA([c.esp_proposal(self.esp_name, self.esp_spi, number=prop.number)]),
                     TSi([TrafficSelector.from_network(n) for n in self.tsi]),
                     TSr([n if isinstance(n, TrafficSelector)
                          else TrafficSelector.from_network(n) for n in self.tsr])]
        return self.seal(w.IKE_AUTH, w.FLAG_RESPONSE, req.message_id, payloads)


def initiator(**kw) -> IkeInitiator:
    kw.setdefault("vips6", True)
    kw.setdefault("remote_ts", [NET, NET6])
    return IkeInitiator(profile(**kw), 0.0, local_addr=("198.18.130.2", 40000),
                        remote_addr=("198.18.130.1", 500))


def fail_event(ini: IkeInitiator, fr: FakeResponder) -> Failed:
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_sa_init(init), 0.0)
    (auth,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_auth(auth), 0.01)
    events = []
    while (e := ini.next_event()) is not None:
        events.append(e)
    assert isinstance(events[-1], Failed), events
    return events[-1]


# -- wire: known answers -------------------------------------------------------------------

def test_cfg_request_for_both_families_known_bytes():
    cp = CP(w.CFG_REQUEST, [ConfigAttribute(t) for t in (
        w.INTERNAL_IP4_ADDRESS, w.INTERNAL_IP6_ADDRESS, w.INTERNAL_IP4_DNS,
        w.INTERNAL_IP6_DNS)])
    assert cp.body() == bytes.fromhex("01000000" "00010000" "00080000" "00030000" "000a0000")


def test_internal_ip6_address_known_bytes_and_parse():
    a = ConfigAttribute.ip6_address("2001:2:0:130::1", 64)
    assert a.build() == bytes.fromhex("0008" "0011" "20010002000001300000000000000001" "40")
    assert a.parse_ip6_address() == ("2001:2:0:130::1", 64)
    assert a.text() == "2001:2:0:130::1/64"
    with pytest.raises(ValueError):
        ConfigAttribute.ip6_address("2001:2::1", 129)
    with pytest.raises(ParseError, match="17"):
        ConfigAttribute(w.INTERNAL_IP6_ADDRESS, bytes(16)).parse_ip6_address()
    with pytest.raises(ParseError, match="prefix length 129"):
        ConfigAttribute(w.INTERNAL_IP6_ADDRESS, bytes(16) + b"\x81").parse_ip6_address()


def test_ipv6_traffic_selector_known_bytes():
    ts = TrafficSelector.from_network("2001:2:0:131::/64")
    assert ts.ts_type == w.TS_IPV6_ADDR_RANGE
    assert ts.build() == bytes.fromhex(
        "08" "00" "0028" "0000" "ffff" "20010002000001310000000000000000"
        "2001000200000131ffffffffffffffff")
    body = TSr([TrafficSelector.from_network("0.0.0.0/0"),
                TrafficSelector.from_network("::/0")]).body()
    assert body[:4] == bytes.fromhex("02000000")
    parsed = TSr.parse_body(memoryview(body)).selectors
    assert [n for s in parsed for n in s.networks()] == ["0.0.0.0/0", "::/0"]
    # an IPv6 selector of the IPv4 length is malformed
    bad = bytes.fromhex("01000000" "08000010" "0000ffff") + bytes(8)
    with pytest.raises(ParseError, match="type 8 of 16 bytes"):
        TSr.parse_body(memoryview(bad))


def test_config_reply_both_families_in_order_and_skips():
    cp = CP(w.CFG_REPLY, [
        ConfigAttribute.address(w.INTERNAL_IP6_DNS, DNS6),
        ConfigAttribute.address(w.INTERNAL_IP4_ADDRESS, VIP),
        ConfigAttribute(w.INTERNAL_IP6_ADDRESS, bytes(16)),                 # no prefix
        ConfigAttribute(w.INTERNAL_IP6_ADDRESS, ipaddress.IPv6Address(VIP6).packed
                        + b"\xff"),                                           # prefix 255
        ConfigAttribute.ip6_address("::", 64),                              # unspecified
        ConfigAttribute.ip6_address("ff02::1", 64),                         # multicast
        ConfigAttribute.ip6_address(VIP6, 64),
        ConfigAttribute.address(w.INTERNAL_IP4_DNS, DNS),
        ConfigAttribute(w.INTERNAL_IP4_DNS, b"\x01\x02\x03"),
        ConfigAttribute(w.INTERNAL_IP6_DNS, ipaddress.IPv4Address(DNS).packed),
        ConfigAttribute(w.INTERNAL_DNS_DOMAIN, b"lab.test"),
    ])
    r = w.parse_config_reply(cp)
    assert r.ip4 == [VIP] and r.ip6 == [(VIP6, 64)] and r.dns == [DNS6, DNS]
    assert r.skipped == [
        "INTERNAL_IP6_ADDRESS: 16 bytes (an IPv6 address and its prefix length are 17)",
        "INTERNAL_IP6_ADDRESS: prefix length 255 (at most 128)",
        "INTERNAL_IP6_ADDRESS: :: is not a usable address",
        "INTERNAL_IP6_ADDRESS: ff02::1 is not a usable address",
        "INTERNAL_IP4_DNS: 3 bytes, not 4",
        "INTERNAL_IP6_DNS: 4 bytes, not 16"]


# -- wire: hostile input -------------------------------------------------------------------

_attr = st.tuples(st.sampled_from([w.INTERNAL_IP4_ADDRESS, w.INTERNAL_IP6_ADDRESS,
                                   w.INTERNAL_IP4_DNS, w.INTERNAL_IP6_DNS, 0x7fff, 0x8008]),
                  st.binary(max_size=20))


@settings(max_examples=400, deadline=None)
@given(st.lists(_attr, max_size=8), st.binary(max_size=6), st.integers(0, 255))
def test_cp_reply_parser_takes_anything(attrs, tail, cfg_type):
    raw = bytes([cfg_type, 0, 0, 0]) + b"".join(
        t.to_bytes(2, "big") + len(v).to_bytes(2, "big") + v for t, v in attrs) + tail
    try:
        cp = CP.parse_body(memoryview(raw))
    except ParseError:
        return
    r = w.parse_config_reply(cp)          # never raises
    for addr, prefix in r.ip6:
        ip = ipaddress.IPv6Address(addr)
        assert 0 <= prefix <= 128 and not (ip.is_unspecified or ip.is_multicast)
    assert all(ipaddress.IPv4Address(a) for a in r.ip4)
    assert len(r.ip4) + len(r.ip6) + len(r.dns) + len(r.skipped) <= len(cp.attributes)


_ts = st.tuples(st.sampled_from([7, 8, 9, 0]), st.integers(0, 255), st.integers(0, 64),
                st.binary(max_size=40))


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 255), st.lists(_ts, max_size=5), st.binary(max_size=4))
def test_ts_parser_hostile_ipv6_selectors(count, selectors, tail):
    raw = bytes([count, 0, 0, 0]) + b"".join(
        bytes([t, proto]) + (length if length > 3 else len(body) + 4).to_bytes(2, "big")
        + body for t, proto, length, body in selectors) + tail
    try:
        ts = TSi.parse_body(memoryview(raw))
    except ParseError:
        return
    for s in ts.selectors:
        nets = s.networks()               # never raises; a reversed range is empty
        assert len(nets) <= 256
        if s.ts_type == w.TS_IPV6_ADDR_RANGE and s.raw is None:
            assert all(ipaddress.ip_network(n).version == 6 for n in nets)


# -- the initiator -------------------------------------------------------------------------

def test_request_asks_for_both_families_and_proposes_both_selectors():
    ini = initiator()
    fr = FakeResponder6()
    ev = connect(ini, fr)
    req = fr.request_seen
    assert [a.type for a in req.get(CP).attributes] == [
        w.INTERNAL_IP4_ADDRESS, w.INTERNAL_IP6_ADDRESS, w.INTERNAL_IP4_DNS,
        w.INTERNAL_IP6_DNS]
    assert all(a.value == b"" for a in req.get(CP).attributes)       # any address
    assert [n for s in req.get(TSi).selectors for n in s.networks()] == ["0.0.0.0/0", "::/0"]
    assert [s.ts_type for s in req.get(TSr).selectors] == [w.TS_IPV4_ADDR_RANGE,
                                                           w.TS_IPV6_ADDR_RANGE]
    assert (ev.virtual_ip, ev.virtual_ip6, ev.prefix6) == (VIP, VIP6, 64)
    assert ev.dns == [DNS, DNS6] and ev.remote_ts == [NET, NET6] and ev.warnings == []
    assert ev.local_ts == [f"{VIP}/32", f"{VIP6}/128"]


def test_ipv6_only_request():
    ini = initiator(vips=False, remote_ts=[NET6])
    fr = FakeResponder6(attrs=[ConfigAttribute.ip6_address(VIP6, 64),
                               ConfigAttribute.address(w.INTERNAL_IP6_DNS, DNS6)],
                        tsi=[f"{VIP6}/128"], tsr=[NET6])
    ev = connect(ini, fr)
    req = fr.request_seen
    assert [a.type for a in req.get(CP).attributes] == [w.INTERNAL_IP6_ADDRESS,
                                                        w.INTERNAL_IP6_DNS]
    assert [n for s in req.get(TSi).selectors for n in s.networks()] == ["::/0"]
    assert (ev.virtual_ip, ev.virtual_ip6, ev.dns) == (None, VIP6, [DNS6])


def test_ipv4_only_profile_unchanged():
    """Without vips6 the request is what it was, and an IPv6 address or DNS server the
    responder volunteers is not taken (no IPv6 selector was proposed for it)."""
    ini = initiator(vips6=False, remote_ts=[NET])
    fr = FakeResponder6(tsi=[f"{VIP}/32"], tsr=[NET])
    ev = connect(ini, fr)
    assert [a.type for a in fr.request_seen.get(CP).attributes] == [
        w.INTERNAL_IP4_ADDRESS, w.INTERNAL_IP4_DNS]
    assert [n for s in fr.request_seen.get(TSi).selectors
            for n in s.networks()] == ["0.0.0.0/0"]
    assert ev.virtual_ip == VIP and ev.virtual_ip6 is None and ev.dns == [DNS]


def test_narrowed_selectors_accepted_for_ipv6():
    ini = initiator(remote_ts=["0.0.0.0/0", "::/0"])
    fr = FakeResponder6(tsr=[NET, "2001:2:0:131::1/128", "2001:2:0:132::/63"])
    ev = connect(ini, fr)
    assert ev.remote_ts == [NET, "2001:2:0:131::1/128", "2001:2:0:132::/63"]


def test_one_family_missing_is_a_warning():
    fr = FakeResponder6(attrs=[ConfigAttribute.address(w.INTERNAL_IP4_ADDRESS, VIP),
                               ConfigAttribute.address(w.INTERNAL_IP4_DNS, DNS)],
                        tsi=[f"{VIP}/32"])
    ev = connect(initiator(), fr)
    assert ev.virtual_ip == VIP and ev.virtual_ip6 is None
    assert ev.warnings == ["the responder assigned no IPv6 virtual IP: the tunnel carries "
                           "no IPv6"]


def test_malformed_ipv6_address_skipped_with_a_warning():
    fr = FakeResponder6(attrs=[
        ConfigAttribute.address(w.INTERNAL_IP4_ADDRESS, VIP),
        ConfigAttribute(w.INTERNAL_IP6_ADDRESS, ipaddress.IPv6Address(VIP6).packed + b"\x81")])
    ev = connect(initiator(), fr)
    assert ev.virtual_ip6 is None
    assert ev.warnings[0] == ("the responder's CP reply: INTERNAL_IP6_ADDRESS: prefix length "
                              "129 (at most 128) (skipped)")


def test_ipv6_vip_without_ipv6_selectors_warns():
    fr = FakeResponder6(tsr=[NET])
    ev = connect(initiator(), fr)
    assert ev.virtual_ip6 == VIP6
    assert ev.warnings == [f"IPv6 virtual IP {VIP6} but the responder's TSr has no IPv6 "
                           f"network ({NET}): nothing is reached over IPv6"]


def test_no_virtual_ip_of_either_family_fails():
    ev = fail_event(initiator(vips=False), FakeResponder6(attrs=[]))
    assert ev.stage.value == "config"
    assert ev.message == ("the responder assigned no virtual IP (no INTERNAL_IP6_ADDRESS in "
                          "its CP reply)")
    ev = fail_event(initiator(), FakeResponder6(attrs=[
        ConfigAttribute.address(w.INTERNAL_IP6_DNS, DNS6)]))
    assert "no INTERNAL_IP4_ADDRESS or INTERNAL_IP6_ADDRESS" in ev.message


def test_too_many_selector_networks_refused():
    # a range that summarizes into 200-odd prefixes, twice
    big = TrafficSelector("2001:2::1", "2001:2:ffff:ffff:ffff:ffff:ffff:fffe")
    assert 128 < len(big.networks()) <= ike_mod.MAX_TS_NETWORKS
    ev = fail_event(initiator(), FakeResponder6(tsr=[big, big]))
    assert ev.stage.value == "proposal"
    assert ev.message == (f"the responder's traffic selectors cover {2 * len(big.networks())}"
                          f" networks (erebus takes at most {ike_mod.MAX_TS_NETWORKS})")


# -- the session: TunnelInfo and ESP -------------------------------------------------------

def test_session_fills_tunnel_info_and_carries_ipv6():
    prof = profile(vips6=True, remote_ts=[NET, NET6])
    s = IkeSession(prof, 0.0, local_addr=("198.18.130.2", 40000),
                   remote_addr=("198.18.130.1", 500))
    fr = FakeResponder6()
    (init,) = s.datagrams_to_send(0.0)
    s.receive_datagram(fr.ike_sa_init(init), 0.0)
    events = []
    while (e := s.next_event()) is not None:
        events.append(e)
    (auth,) = s.datagrams_to_send(0.0)
    s.receive_datagram(fr.ike_auth(auth), 0.01)
    while (e := s.next_event()) is not None:
        events.append(e)
    (up,) = [e for e in events if isinstance(e, SessionConnected)]
    info = up.info
    assert (info.virtual_ip, info.virtual_ip6, info.prefix6) == (VIP, VIP6, 64)
    assert info.routes == [NET] and info.routes6 == [NET6] and info.dns == [DNS, DNS6]
    assert any(isinstance(e, Note) and f"{VIP6}/64" in e.message for e in events)
    # an IPv6 packet goes out with next header 41 and one from the web net comes in
    key_len, integ = c.esp_key_lengths(fr.esp_name)
    ck = c.child_sa_keys(fr.keys, fr.ni, fr.nr, key_len, integ)
    from erebus.ipsec.esp import SecurityAssociation
    theirs_in = SecurityAssociation(fr.esp_spi, fr.esp_name, *ck.outbound(True))
    theirs_out = SecurityAssociation(fr.peer_spi, fr.esp_name, *ck.inbound(True))
    packet = build_ipv6(VIP6, "2001:2:0:131::1", 58, os.urandom(16))
    assert theirs_in.open(s.send_packet(packet, 1.0)) == (esp_wire.NH_IPV6, packet)
    reply = build_ipv6("2001:2:0:131::1", VIP6, 58, os.urandom(16))
    assert s.receive_datagram(theirs_out.seal(reply, esp_wire.NH_IPV6), 1.0) == (reply,)
    # outside the IPv6 selectors: dropped
    assert s.send_packet(build_ipv6(VIP6, "2001:2:0:999::1", 58, b"x"), 1.0) is None
