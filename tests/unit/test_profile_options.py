"""Profile options of the compatibility work: mssfix as OpenVPN 2.6 computes it (the
interop test compares with the stock client's own figure) and its forms,
explicit-exit-notify's repeated OCC exit, and 'providers' in legacy profiles."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from erebus.errors import ConfigError
from erebus.openvpn.config import parse_profile
from erebus.openvpn.data import OCC_EXIT, OCC_MAGIC
from erebus.openvpn.mtu import MssFix, mss_fix
from erebus.openvpn.session import ClientSession, Closed, Connected
from erebus.runtime.openvpn import OpenVPNDriver
from erebus.runtime.stack import tcp_mss
from erebus.runtime.tunnel import CLOSE_WAIT

from tests.unit import test_session
from tests.unit.test_session import PUSH, FakeServer, run, settings

pki = test_session.pki          # the fixture

GCM = dict(cipher="AES-256-GCM", digest_size=0)


@pytest.mark.parametrize("setting, kw, want", [
    # 1492 - (peer-id 4 + packet id 4 + tag 16 + IPv4/UDP 28) - 40: the stock figure
    (MssFix(), GCM, 1400),
    (MssFix(), dict(GCM, peer_id=False), 1403),            # DATA_V1: opcode byte only
    (MssFix(), dict(GCM, tcp=True), 1386),                 # 2-byte length, TCP header
    (MssFix(), dict(GCM, ipv6=True), 1380),
    (MssFix(), dict(GCM, socks_udp=True), 1390),
    (MssFix(), dict(GCM, compression_overhead=1), 1399),   # comp-lzo no / compress stub
    # CBC: HMAC 20 + IV 16 in the header, the packet id in the padded payload
    (MssFix(), dict(cipher="AES-256-CBC", digest_size=20), 1379),
    (MssFix(), dict(cipher="AES-128-CBC", digest_size=32), 1363),
    (MssFix(), dict(cipher="BF-CBC", digest_size=20), 1387),   # 8-byte blocks and IV
    (MssFix(), dict(cipher="none", digest_size=20), 1396),
    (MssFix(), dict(cipher="AES-256-CBC", digest_size=32, tls=False), 1359),  # static
    (MssFix(1300), GCM, 1236),                             # no outer IP/UDP headers
    (MssFix(1400, "mtu"), GCM, 1308),
    (MssFix(1400, "fixed"), GCM, 1360),
    (MssFix(0), GCM, None),
])
def test_the_mss_of_each_setting(setting, kw, want):
    assert mss_fix(setting, tun_mtu=1500, **kw) == want


def test_the_default_follows_a_tun_mtu_other_than_1500():
    # options.c: with another tun-mtu the default is 'mssfix TUN-MTU fixed'
    assert MssFix().resolved(1400) == MssFix(1400, "fixed")
    assert mss_fix(MssFix(), tun_mtu=1400, **GCM) == 1360
    assert MssFix().resolved(1500) == MssFix(1492, "mtu")


def test_the_stack_takes_the_smaller_of_mtu_and_cap():
    assert tcp_mss(SimpleNamespace(mtu=1500, mss=1400)) == 1400
    assert tcp_mss(SimpleNamespace(mtu=1200, mss=1400)) == 1160     # a pushed tun-mtu
    assert tcp_mss(SimpleNamespace(mtu=1500, mss=None)) == 1460


BASE = "client\ndev tun\nremote vpn.example 1194\n<ca>\n{ca}</ca>\nauth-user-pass\n"


@pytest.fixture
def ca_text(pki):
    return pki["lab-ca"][0].decode()


def _profile(ca_text, extra: str):
    return parse_profile(BASE.format(ca=ca_text) + extra, "p.ovpn")


def test_the_option_forms_and_connection_blocks(ca_text):
    assert _profile(ca_text, "").mssfix == MssFix()
    assert _profile(ca_text, "mssfix\n").mssfix == MssFix()
    assert _profile(ca_text, "mssfix 1300\n").mssfix == MssFix(1300)
    assert _profile(ca_text, "mssfix 1400 mtu\n").mssfix == MssFix(1400, "mtu")
    assert _profile(ca_text, "mssfix 0\n").mssfix == MssFix(0)
    p = _profile(ca_text, "mssfix 1300\n<connection>\nremote a.example\nmssfix 1200 fixed\n"
                 "</connection>\n<connection>\nremote b.example\n</connection>\n")
    assert [r.mssfix for r in p.remotes] == [MssFix(1200, "fixed"), MssFix(1300)]


@pytest.mark.parametrize("line, message", [
    ("mssfix 1400 bytes", "p.ovpn:16: mssfix: Unknown parameter to --mssfix: bytes"),
    ("mssfix 50", "p.ovpn:16: mssfix: 50 is too small to carry a TCP segment"),
    ("mssfix 120 mtu", "p.ovpn:16: mssfix: 120 is too small"),
    ("mssfix many", "p.ovpn:16: mssfix:"),
])
def test_bad_values_name_the_line(ca_text, line, message):
    with pytest.raises(ConfigError) as info:
        _profile(ca_text, line + "\n")
    assert message in str(info.value)


def test_the_session_reports_its_mss(pki):
    ca, cert, key = pki["lab-ca"]
    for setting, want in ((MssFix(), 1400), (MssFix(1300), 1236), (MssFix(0), None)):
        client = ClientSession(settings(ca, mssfix=setting), 0.0)
        events, _, _ = run(client, FakeServer(cert, key))
        (connected,) = [e for e in events if isinstance(e, Connected)]
        assert connected.info.mss == want


# -- explicit-exit-notify ---------------------------------------------------------------

NO_CC_EXIT = PUSH.replace(",protocol-flags cc-exit", "")


def _exits(server, datagrams) -> int:
    return sum(server.receive(d, 0.0) == [OCC_MAGIC + bytes((OCC_EXIT,))] for d in datagrams)


def _close_and_drain(client, server, at: float):
    client.close(at)
    sent, now = list(client.datagrams_to_send(at)), at
    while not client.finished:
        now = client.get_timer()
        assert now is not None and now <= at + 10
        client.handle_timer(now)
        sent += client.datagrams_to_send(now)
    return _exits(server, sent), now - at


def test_without_the_option_one_occ_exit_and_done(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca), 0.0)
    server = FakeServer(cert, key, NO_CC_EXIT)
    run(client, server)
    assert _close_and_drain(client, server, 5.0) == (1, 0.0)
    assert isinstance(list(iter(client.next_event, None))[-1], Closed)


def test_explicit_exit_notify_3_resends_it_for_3_seconds(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, exit_notify=3), 0.0)
    server = FakeServer(cert, key, NO_CC_EXIT)
    run(client, server)
    assert _close_and_drain(client, server, 5.0) == (3, 2.0)


def test_over_tcp_the_option_does_nothing(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, exit_notify=3, proto="tcp-client"), 0.0)
    server = FakeServer(cert, key, NO_CC_EXIT)
    run(client, server)
    assert _close_and_drain(client, server, 5.0) == (1, 0.0)


def test_the_shell_waits_as_long_as_the_notifications_last(ca_text):
    p = _profile(ca_text, "<connection>\nremote a.example\nexplicit-exit-notify 5\n"
                 "</connection>\n<connection>\nremote b.example\n</connection>\n")
    assert OpenVPNDriver(p).close_wait == 6.0
    assert OpenVPNDriver(_profile(ca_text, "")).close_wait == CLOSE_WAIT


@pytest.mark.parametrize("line, error", [
    ("providers legacy default", None),
    ("providers base", None),
    ("providers fips", "p.ovpn:16: providers: erebus cannot put its crypto library in FIPS"),
    ("providers legacy /opt/x.so", "the OpenSSL provider '/opt/x.so' cannot be loaded"),
])
def test_providers_for_legacy_profiles(ca_text, line, error):
    if error is None:
        assert _profile(ca_text, line + "\n").remotes
    else:
        with pytest.raises(ConfigError, match=re.escape(error)):
            _profile(ca_text, line + "\n")
