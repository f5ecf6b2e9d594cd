"""EspSession and SecurityAssociation in virtual time: a client session against a
mirrored peer session.  Replays, forgeries, wrong SPIs, bad padding, dummy packets,
selectors and lifetimes are dropped and counted, never raised; NAT keepalives follow
the timer; hypothesis throws random and mutated datagrams at the opener."""

from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erebus.crypto.seal import AeadSeal, CbcHmacSeal
from erebus.ipsec.esp import (Closed, EspSession, Replayed, SaExpired, SaExpiredError,
                              SaSoftLimit, SecurityAssociation, SequenceReset)
from erebus.ipsec.transforms import TRANSFORMS
from erebus.wire import esp as wire
from erebus.wire.ipv4 import PROTO_ICMP, build_ipv4
from erebus.wire.ipv6 import build_ipv6

CLIENT_IP, WEB_IP = "198.19.11.2", "198.19.20.5"
OUT_SPI, IN_SPI = 0x1001, 0x2002


def material(name: str, seed: int):
    t = TRANSFORMS[name]
    rng = random.Random(seed)
    return rng.randbytes(t.key_len), rng.randbytes(t.integrity_key_len)


def pair(out_name="aes256gcm16", in_name="aes256-sha256", *, now=0.0, window=64,
         esn=False, lifetime_packets=None, lifetime_bytes=None, keepalive=20.0):
    """(client, peer): the peer's outbound SA is the client's inbound and vice versa."""
    ok, oik = material(out_name, 1)
    ik, iik = material(in_name, 2)
    lim = dict(lifetime_packets=lifetime_packets, lifetime_bytes=lifetime_bytes, esn=esn)
    client = EspSession(SecurityAssociation(OUT_SPI, out_name, ok, oik, **lim),
                        SecurityAssociation(IN_SPI, in_name, ik, iik, replay_window=window,
                                            **lim),
                        local_ip=CLIENT_IP, remote_ts=["198.19.20.0/24"], now=now,
                        keepalive_interval=keepalive)
    peer = EspSession(SecurityAssociation(IN_SPI, in_name, ik, iik, esn=esn),
                      SecurityAssociation(OUT_SPI, out_name, ok, oik, esn=esn),
                      local_ip=WEB_IP, remote_ts=["198.19.11.2/32"], now=now,
                      keepalive_interval=None)
    return client, peer


def ip(src=WEB_IP, dst=CLIENT_IP, payload=b"hello", proto=PROTO_ICMP):
    return build_ipv4(src, dst, proto, payload)


def events(session):
    out = []
    while (e := session.next_event()) is not None:
        out.append(e)
    return out


@pytest.mark.parametrize("names", [("aes256gcm16", "aes256-sha256"),
                                   ("aes128gcm16", "aes128gcm16"),
                                   ("chacha20poly1305", "aes256-sha512")])
def test_round_trip_both_ways(names):
    client, peer = pair(*names)
    for size in (0, 1, 3, 100, 1372):
        up = ip(CLIENT_IP, WEB_IP, os.urandom(size))
        assert peer.receive_datagram(client.send_packet(up, 1.0), 1.0) == up
        down = ip(payload=os.urandom(size))
        assert client.receive_datagram(peer.send_packet(down, 1.0), 1.0) == down
    c = client.counters
    assert (c.packets_out, c.packets_in, c.dropped_in) == (5, 5, 0)
    assert c.bytes_in == sum(20 + n for n in (0, 1, 3, 100, 1372))


def test_replayed_packet_dropped_and_counted():
    client, peer = pair()
    d = peer.send_packet(ip(), 0)
    assert client.receive_datagram(d, 0) is not None
    assert client.receive_datagram(d, 0) is None
    assert client.counters.replayed == 1
    # reordering inside the window is fine; older than the window is not
    later = [peer.send_packet(ip(payload=bytes([i])), 0) for i in range(70)]
    assert client.receive_datagram(later[-1], 0) is not None
    assert client.receive_datagram(later[10], 0) is not None     # 60 behind: in the window
    assert client.receive_datagram(later[2], 0) is None          # 68 behind: too old
    assert client.counters.replayed == 2


def test_every_flipped_bit_is_dropped_and_counted():
    client, peer = pair()
    d = peer.send_packet(ip(payload=b"x" * 40), 0)
    for i in range(len(d) * 8):
        bad = bytearray(d)
        bad[i // 8] ^= 1 << (i % 8)
        assert client.receive_datagram(bytes(bad), 0) is None
    c = client.counters
    assert c.unknown_spi == 32                      # the flips in the SPI
    assert c.replayed == 1                          # seq 1 -> 0: never valid
    assert c.auth_failed == len(d) * 8 - 33         # everything else fails the ICV
    # a forged packet does not move the window: the genuine one still gets in
    assert client.receive_datagram(d, 0) is not None


def test_forged_sequence_number_does_not_poison_the_window():
    client, peer = pair()
    d = bytearray(peer.send_packet(ip(), 0))
    d[4:8] = struct.pack("!I", 1_000_000)           # a far-future seq, not authentic
    assert client.receive_datagram(bytes(d), 0) is None
    assert client.counters.auth_failed == 1
    assert client.receive_datagram(peer.send_packet(ip(), 0), 0) is not None


def test_keepalive_and_non_esp_ignored():
    client, _ = pair()
    assert client.receive_datagram(b"\xff", 0) is None
    assert client.receive_datagram(bytes(4) + b"IKE_SA_INIT..." * 3, 0) is None
    assert client.receive_datagram(b"\x01\x02", 0) is None
    c = client.counters
    assert (c.keepalives_in, c.non_esp_in, c.malformed) == (1, 1, 1)


def test_dummy_ipv6_and_bad_padding():
    client, peer = pair("aes256gcm16", "aes256gcm16")
    sa = peer.outbound
    assert client.receive_datagram(sa.seal(b"", wire.NH_NO_NEXT), 0) is None
    assert client.receive_datagram(sa.seal(b"\x60" + bytes(39), 43), 0) is None
    c = client.counters
    assert (c.dummy, c.bad_next_header) == (1, 1)
    # a peer that pads with zeros: authentic, but not RFC 4303 padding
    key, _ = material("aes256gcm16", 2)
    sealer = AeadSeal("aes-gcm", key[:32], key[32:])
    seq = sa.seq + 1
    header = wire.build_header(IN_SPI, seq)
    bad = header + sealer.seal(seq, ip() + b"\x00\x00\x00\x03\x04", header)
    assert client.receive_datagram(bad, 0) is None
    assert c.bad_padding == 1


def test_cbc_opener_survives_odd_lengths():
    """Whole-block checks come before the CBC decryptor sees anything (a partial block
    left in a long-lived decryptor would corrupt every later packet)."""
    client, peer = pair("aes256gcm16", "aes256-sha256")
    good = peer.send_packet(ip(), 0)
    for cut in range(1, 40):
        assert client.receive_datagram(good[:-cut], 0) is None
    assert client.receive_datagram(good, 0) is not None
    after = ip(payload=b"after")
    assert client.receive_datagram(peer.send_packet(after, 0), 0) == after


def test_tfc_padding_after_the_inner_packet_is_trimmed():
    client, peer = pair()
    packet = ip(payload=b"data")
    assert client.receive_datagram(peer.outbound.seal(packet + bytes(33)), 0) == packet


def test_selectors_enforced_both_ways():
    client, peer = pair()
    # outbound: only to remote_ts
    assert client.send_packet(ip(CLIENT_IP, "198.19.99.1"), 0) is None
    assert client.send_packet(b"\x60" + bytes(50), 0) is None
    assert client.counters.policy_out == 2
    # inbound: only from remote_ts, only to our virtual IP
    for src, dst in (("198.19.99.1", CLIENT_IP), (WEB_IP, "198.19.11.3")):
        assert client.receive_datagram(peer.outbound.seal(ip(src, dst)), 0) is None
    assert client.counters.policy_in == 2


def test_keepalive_timer():
    client, peer = pair(now=100.0)
    assert client.get_timer() == 120.0
    assert client.handle_timer(119.0) == []
    assert client.handle_timer(120.0) == [b"\xff"]
    assert client.get_timer() == 140.0
    client.send_packet(ip(CLIENT_IP, WEB_IP), 130.0)          # traffic postpones it
    assert client.get_timer() == 150.0
    assert client.counters.keepalives_out == 1
    assert pair(keepalive=None)[0].get_timer() is None


def test_outbound_packet_lifetime():
    client, peer = pair(lifetime_packets=10)
    sent = [client.send_packet(ip(CLIENT_IP, WEB_IP), 0) for _ in range(12)]
    assert all(sent[:10]) and sent[10] is None and sent[11] is None
    evs = events(client)
    assert isinstance(evs[0], SaSoftLimit) and evs[0].direction == "outbound"
    assert SaExpired("outbound", OUT_SPI, "hard lifetime of 10 packets reached") in evs
    assert not client.established
    assert client.counters.expired_out == 2


def test_inbound_byte_lifetime():
    client, peer = pair(lifetime_bytes=1000)
    packet = ip(payload=bytes(180))                        # 200 bytes
    for _ in range(5):
        assert client.receive_datagram(peer.send_packet(packet, 0), 0) == packet
    assert client.receive_datagram(peer.send_packet(packet, 0), 0) is None
    assert client.receive_datagram(peer.send_packet(packet, 0), 0) is None
    evs = events(client)
    assert [type(e) for e in evs] == [SaSoftLimit, SaExpired]
    assert evs[1] == SaExpired("inbound", IN_SPI, "hard lifetime of 1000 bytes reached")
    assert client.counters.expired_in == 2


def test_sequence_numbers_never_wrap():
    ok, _ = material("aes128gcm16", 3)
    sa = SecurityAssociation(OUT_SPI, "aes128gcm16", ok, seq=0xFFFFFFFE)
    assert wire.parse_header(sa.seal(b"x"))[1] == 0xFFFFFFFF
    with pytest.raises(SaExpiredError, match="exhausted"):
        sa.seal(b"x")
    esn = SecurityAssociation(OUT_SPI, "aes128gcm16", ok, seq=0xFFFFFFFE, esn=True)
    esn.seal(b"x")
    assert wire.parse_header(esn.seal(b"x"))[1] == 0      # 2**32: low bits wrap, ESN goes on


def test_esn_window_straddling_the_epoch():
    """RFC 4303 appendix A2.2: across 2**32 the receiver infers the high bits."""
    client, peer = pair("aes256gcm16", "aes256-sha256", esn=True)
    peer.outbound.seq = (1 << 32) - 40
    client.inbound[IN_SPI].replay.update((1 << 32) - 50)     # earlier traffic, not shown
    early = [peer.send_packet(ip(payload=bytes([i])), 0) for i in range(30)]   # high 0
    late = [peer.send_packet(ip(payload=bytes([i])), 0) for i in range(30)]    # high 1 from #10
    assert wire.parse_header(late[-1])[1] == 20
    for d in early[:5] + late[20:]:                        # the window jumps the epoch
        assert client.receive_datagram(d, 0) is not None
    assert client.inbound[IN_SPI].replay.top == (1 << 32) + 20
    for d in early[5:] + late[:20]:                        # delayed, from before it
        assert client.receive_datagram(d, 0) is not None
    assert client.counters.auth_failed == 0
    for d in late:
        assert client.receive_datagram(d, 0) is None       # replays, in either epoch
    assert client.counters.replayed == 30


def test_disabled_anti_replay_and_peer_restart_warning():
    client, peer = pair(window=0)
    d = peer.send_packet(ip(), 0)
    assert client.receive_datagram(d, 0) and client.receive_datagram(d, 0)
    # with a window, a peer that restarts (counts from 1 again) is told apart
    client, peer = pair()
    for _ in range(200):
        client.receive_datagram(peer.send_packet(ip(), 0), 0)
    peer.outbound.seq = 0
    for _ in range(40):
        assert client.receive_datagram(peer.send_packet(ip(), 0), 0) is None
    evs = [e for e in events(client) if isinstance(e, SequenceReset)]
    assert len(evs) == 1 and evs[0].highest == 200


def test_close_ends_the_session():
    client, peer = pair()
    assert client.close(5.0) == []
    assert events(client) == [Closed("closed")]
    assert client.send_packet(ip(CLIENT_IP, WEB_IP), 5.0) is None
    assert client.receive_datagram(peer.send_packet(ip(), 5.0), 5.0) is None
    assert client.get_timer() is None


def test_seal_open_objects_alone():
    gcm = AeadSeal("aes-gcm", bytes(16), b"salt", iv_base=2 ** 64 - 1)
    sealed = gcm.seal(1, b"payload", b"aad")
    assert sealed[:8] == bytes(8)                           # the IV wraps modulo 2**64
    assert gcm.open(sealed, b"aad") == b"payload"
    cbc = CbcHmacSeal(bytes(32), bytes(32))
    sealed = cbc.seal(0, bytes(32), b"aad", b"tail")
    assert len(sealed) == 16 + 32 + 16
    assert cbc.open(sealed, b"aad", b"tail") == bytes(32)
    assert cbc.seal(0, bytes(32), b"aad")[:16] != sealed[:16]    # a fresh IV every time
    with pytest.raises(ValueError):
        cbc.seal(0, b"not a block", b"")


# -- fuzzing -------------------------------------------------------------------------------

_CLIENT, _PEER = pair()
_GOOD = [_PEER.send_packet(ip(payload=os.urandom(n)), 0) for n in (0, 7, 64, 300)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=60).map(lambda b: struct.pack("!I", IN_SPI) + b),
    st.tuples(st.sampled_from(_GOOD), st.integers(0, 400), st.integers(0, 255),
              st.integers(0, 50)).map(
        lambda t: t[0][:t[1] % len(t[0])] + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1:]
        if t[3] % 2 else t[0][:len(t[0]) - t[3]]),
))
def test_fuzz_receive_never_raises(data):
    before = _CLIENT.counters.datagrams_in
    assert _CLIENT.receive_datagram(data, 0) is None or data in _GOOD
    c = _CLIENT.counters
    assert c.datagrams_in == before + 1
    assert c.dropped_in + c.packets_in + c.keepalives_in + c.non_esp_in == c.datagrams_in


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(sorted(TRANSFORMS)))
def test_fuzz_sa_open_raises_only_drops(data, name):
    key, ikey = material(name, 9)
    sa = SecurityAssociation(0x1234, name, key, ikey, esn=True)
    try:
        sa.open(struct.pack("!I", 0x1234) + data)
    except Replayed:
        pass
    except ValueError:          # every EspDrop is a ParseError, a ValueError
        pass


# -- IPv6 inside (next header 41) --------------------------------------------------------

CLIENT_IP6, WEB_IP6 = "2001:2:0:130::2", "2001:2:0:131::1"


def pair6(out_name="aes256gcm16", in_name="aes256-sha256", *, client_ip6=CLIENT_IP6):
    """(client, peer) carrying both families: the client's selectors are the web
    networks of both, the peer's the client's two addresses."""
    ok, oik = material(out_name, 1)
    ik, iik = material(in_name, 2)
    client = EspSession(SecurityAssociation(OUT_SPI, out_name, ok, oik),
                        SecurityAssociation(IN_SPI, in_name, ik, iik),
                        local_ip=CLIENT_IP, local_ip6=client_ip6,
                        remote_ts=["198.19.20.0/24", "2001:2:0:131::/64"], now=0.0)
    peer = EspSession(SecurityAssociation(IN_SPI, in_name, ik, iik),
                      SecurityAssociation(OUT_SPI, out_name, ok, oik),
                      local_ip=WEB_IP, local_ip6=WEB_IP6,
                      remote_ts=["198.19.11.2/32", f"{CLIENT_IP6}/128"], now=0.0)
    return client, peer


def ip6(src=WEB_IP6, dst=CLIENT_IP6, payload=b"hello", nh=58):
    return build_ipv6(src, dst, nh, payload)


def test_ipv6_round_trip_with_next_header_41():
    client, peer = pair6()
    for size in (0, 1, 100, 1352):
        up = ip6(CLIENT_IP6, WEB_IP6, os.urandom(size))
        datagram = client.send_packet(up, 1.0)
        # the trailer names IPv6: open it with the peer's inbound SA by hand
        nh, inner = peer.inbound[OUT_SPI].open(datagram)
        assert (nh, inner) == (wire.NH_IPV6, up)
        down = ip6(payload=os.urandom(size))
        assert client.receive_datagram(peer.send_packet(down, 1.0), 1.0) == down
    # IPv4 still goes with next header 4, through the same SAs
    up4 = ip(CLIENT_IP, WEB_IP)
    assert peer.inbound[OUT_SPI].open(client.send_packet(up4, 1.0)) == (wire.NH_IPV4, up4)
    down4 = ip()
    assert client.receive_datagram(peer.send_packet(down4, 1.0), 1.0) == down4
    c = client.counters
    assert (c.packets_out, c.packets_in, c.dropped_in) == (5, 5, 0)


def test_ipv6_known_answer_trailer():
    """A 41-byte IPv6 packet sealed with AES-CBC: the plaintext ends with the RFC 4303
    padding 1, 2, ... and the pad length, then next header 41 (0x29)."""
    key, ikey = material("aes256-sha256", 5)
    sa = SecurityAssociation(0x4242, "aes256-sha256", key, ikey, iv_base=0,
                             rng=lambda n: bytes(n))
    packet = ip6(payload=b"x")
    assert len(packet) == 41
    opener = SecurityAssociation(0x4242, "aes256-sha256", key, ikey)
    sealed = sa.seal(packet, wire.NH_IPV6)
    assert opener.open(sealed) == (41, packet)
    # the trailer itself: 41 + 5 padding + 2 = 48, a multiple of the AES block
    assert wire.trailer(41, 16, wire.NH_IPV6) == bytes([1, 2, 3, 4, 5, 5, 41])


def test_ipv6_selectors_enforced_both_ways():
    client, peer = pair6()
    # outbound: only to the IPv6 remote_ts
    assert client.send_packet(ip6(CLIENT_IP6, "2001:2:0:132::1"), 0) is None
    assert client.send_packet(ip6(CLIENT_IP6, "::ffff:198.19.20.5"), 0) is None
    assert client.send_packet(b"\x60" + bytes(30), 0) is None          # cut header
    assert client.counters.policy_out == 3
    # inbound: only from the IPv6 remote_ts, only to our IPv6 virtual IP
    for src, dst in (("2001:2:0:132::1", CLIENT_IP6), (WEB_IP6, "2001:2:0:130::3")):
        assert client.receive_datagram(peer.outbound.seal(ip6(src, dst), wire.NH_IPV6),
                                       0) is None
    assert client.counters.policy_in == 2


def test_ipv6_without_an_ipv6_virtual_ip_is_outside_the_policy():
    client, peer = pair6(client_ip6=None)
    assert client.local_ip6 is None
    assert client.send_packet(ip6(CLIENT_IP6, WEB_IP6), 0) is None
    assert client.counters.policy_out == 1
    assert client.receive_datagram(peer.outbound.seal(ip6(), wire.NH_IPV6), 0) is None
    assert client.counters.policy_in == 1
    down4 = ip()
    assert client.receive_datagram(peer.send_packet(down4, 0), 0) == down4


def test_ipv6_version_and_length_checked():
    client, peer = pair6()
    sa = peer.outbound
    c = client.counters
    # next header 41 over an IPv4 packet, next header 4 over an IPv6 one
    assert client.receive_datagram(sa.seal(ip(), wire.NH_IPV6), 0) is None
    assert client.receive_datagram(sa.seal(ip6(), wire.NH_IPV4), 0) is None
    assert c.malformed == 2
    # a payload length past the end, a cut header, a jumbogram (payload length 0 and a
    # hop-by-hop header)
    long = bytearray(ip6())
    long[4:6] = (200).to_bytes(2, "big")
    jumbo = build_ipv6(WEB_IP6, CLIENT_IP6, 0, b"")[:40] + bytes(16)
    for bad in (bytes(long), ip6()[:39], jumbo):
        assert client.receive_datagram(sa.seal(bad, wire.NH_IPV6), 0) is None
    assert c.malformed == 5
    # TFC padding after the IPv6 packet is cut off
    packet = ip6(payload=b"data")
    assert client.receive_datagram(sa.seal(packet + bytes(29), wire.NH_IPV6), 0) == packet
    assert c.packets_in == 1


_CLIENT6, _PEER6 = pair6()
_GOOD6 = [_PEER6.outbound.seal(ip6(payload=bytes([i]) * i), wire.NH_IPV6) for i in range(8)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=120).map(lambda b: _PEER6.outbound.seal(b, wire.NH_IPV6)),
    st.binary(max_size=80).map(lambda b: _PEER6.outbound.seal(b"\x60" + b, wire.NH_IPV6)),
    st.tuples(st.sampled_from(_GOOD6), st.integers(0, 400), st.integers(0, 255)).map(
        lambda t: t[0][:t[1] % len(t[0])] + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1:]),
))
def test_fuzz_ipv6_inner_never_raises(data):
    before = _CLIENT6.counters.datagrams_in
    out = _CLIENT6.receive_datagram(data, 0)
    c = _CLIENT6.counters
    assert c.datagrams_in == before + 1
    assert c.dropped_in + c.packets_in + c.keepalives_in + c.non_esp_in == c.datagrams_in
    if out is not None:
        assert out[0] >> 4 == 6 and out[24:40] == _CLIENT6.local_ip6
