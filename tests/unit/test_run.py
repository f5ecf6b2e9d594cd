"""erebus run's parts that need no namespace: the rtnetlink messages (checked against
the kernel's struct layouts), the plan of addresses and routes, the pump's steering
and refusals (a SOCK_SEQPACKET pair stands in for the TUN fd: one read, one packet),
the command line, the preflight lines."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6MLReport2, ICMPv6ND_RS,
                                ICMPv6PacketTooBig, IPv6, IPv6ExtHdrHopByHop, RouterAlert)

from erebus.cli import _parser, _split_command
from erebus.errors import ConfigError
from erebus.run import command_of
from erebus.runtime import netns
from erebus.runtime.netns import NamespaceError, _explain, plan, preflight
from erebus.runtime.tunpump import TunPump
from erebus.session import TunnelInfo
from erebus.wire import flow, rtnetlink

VIP, VIP6, WEB = "198.19.5.2", "2001:2:0:105::1000", "198.18.2.2"


def info(**kw) -> TunnelInfo:
    base = dict(kind="openvpn", server="s", virtual_ip=VIP, netmask="255.255.255.0",
                gateway="198.19.5.1", routes=["198.18.2.0/24"], mtu=1400, dns=[WEB])
    base.update(kw)
    return TunnelInfo(**base)


# -- rtnetlink ---------------------------------------------------------------------------

def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    out = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        out[kind] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def test_route_message_layout():
    msg = rtnetlink.route_add(7, "198.18.2.0", 24, mtu=1390, advmss=1350, seq=9)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq, pid) == (len(msg), rtnetlink.RTM_NEWROUTE, 9, 0)
    assert flags == (rtnetlink.NLM_F_REQUEST | rtnetlink.NLM_F_ACK | rtnetlink.NLM_F_CREATE
                     | rtnetlink.NLM_F_EXCL)
    family, dst_len, _, _, table, proto, scope, rtype, _ = struct.unpack_from("=BBBBBBBBI",
                                                                            msg, 16)
    assert (family, dst_len, table, scope, rtype) == (socket.AF_INET, 24, 254, 253, 1)
    attrs = _attrs(msg, 28)
    assert attrs[rtnetlink.RTA_DST] == socket.inet_aton("198.18.2.0")
    assert struct.unpack("=i", attrs[rtnetlink.RTA_OIF]) == (7,)
    metrics = _attrs(attrs[rtnetlink.RTA_METRICS], 0)
    assert struct.unpack("=I", metrics[rtnetlink.RTAX_MTU]) == (1390,)
    assert struct.unpack("=I", metrics[rtnetlink.RTAX_ADVMSS]) == (1350,)
    default = rtnetlink.route_add(7, "::", 0)
    assert rtnetlink.RTA_DST not in _attrs(default, 28) and default[16] == socket.AF_INET6


def test_addr_and_link_messages():
    msg = rtnetlink.addr_add(3, VIP6, 64)
    family, plen, flags, scope, index = struct.unpack_from("=BBBBI", msg, 16)
    assert (family, plen, flags, index) == (socket.AF_INET6, 64, rtnetlink.IFA_F_NODAD, 3)
    assert _attrs(msg, 24)[rtnetlink.IFA_LOCAL] == socket.inet_pton(socket.AF_INET6, VIP6)
    link = rtnetlink.link_up(2, mtu=1400)
    assert struct.unpack_from("=i", link, 20) == (2,)
    assert struct.unpack_from("=II", link, 24) == (rtnetlink.IFF_UP, rtnetlink.IFF_UP)
    assert struct.unpack("=I", _attrs(link, 32)[rtnetlink.IFLA_MTU]) == (1400,)
    with pytest.raises(ValueError):
        rtnetlink.addr_add(3, VIP, 33)
    with pytest.raises(ValueError):
        rtnetlink.route_add(3, VIP, 24, source=VIP6)


def test_acks_parsed_and_bounds_checked():
    ack = struct.pack("=IHHII", 36, rtnetlink.NLMSG_ERROR, 0, 5, 0) + struct.pack("=i", 0) \
        + struct.pack("=IHHII", 16, 24, 5, 5, 0)
    refused = struct.pack("=IHHII", 36, rtnetlink.NLMSG_ERROR, 0, 6, 0) \
        + struct.pack("=i", -17) + bytes(16)
    assert rtnetlink.parse_acks(ack + refused) == [(5, 0), (6, 17)]
    for bad in (ack[:30], struct.pack("=IHHII", 8, 2, 0, 1, 0),
                struct.pack("=IHHII", 16, 2, 0, 1, 0), ack + b"\0\0"):
        with pytest.raises(rtnetlink.NetlinkError):
            rtnetlink.parse_acks(bad)


# -- the plan ----------------------------------------------------------------------------

def _routes(config) -> list[str]:
    return [f"{r['dst']}/{r['prefixlen']}" for r in config["routes"]]


def test_plan_pushed_routes_dns_and_mss():
    c = plan(info(dns=[WEB, "198.18.9.9"], gateway="198.19.5.1"))
    assert c["addresses"] == [(VIP, 24)]
    assert _routes(c) == ["198.18.2.0/24", "198.18.9.9/32"]   # the DNS outside the routes
    assert c["dns"] == [WEB, "198.18.9.9"] and c["mtu"] == 1400
    c = plan(info(mss=1350))
    # an MSS cap: the address as a host, its network a route with the MTU metric
    assert c["addresses"] == [(VIP, 32)]
    assert _routes(c) == ["198.19.5.0/24", "198.18.2.0/24"]
    assert {r["mtu"] for r in c["routes"]} == {1390}


def test_plan_everything_and_ipv6():
    c = plan(info(virtual_ip6=VIP6, prefix6=64, routes6=["2001:2:0:2::/64"],
                  dns=[WEB, "2001:2:0:2::2"]), everything=True)
    assert c["addresses"] == [(VIP, 24), (VIP6, 64)]
    assert _routes(c) == ["0.0.0.0/0", "::/0"]       # everything covers the rest
    assert plan(info(redirect_gateway=True))["routes"][0] == {"dst": "0.0.0.0",
                                                               "prefixlen": 0}
    # no IPv6 in the tunnel: no IPv6 route, no IPv6 DNS server
    c = plan(info(routes6=["2001:2:0:2::/64"], dns=["2001:2:0:2::2", WEB]))
    assert _routes(c) == ["198.18.2.0/24"] and c["dns"] == [WEB]
    assert plan(info(domains=["lab.test"]))["search"] == ["lab.test"]


# -- the pump ----------------------------------------------------------------------------

class FakeTunnel:
    def __init__(self, i: TunnelInfo):
        self.info = i
        self.sent: list[bytes] = []
        self.receiver = None

    def send_packet(self, packet: bytes) -> None:
        self.sent.append(packet)

    def set_receiver(self, receiver) -> None:
        self.receiver = receiver


class FakeStack:
    listeners = {8080: object()}


class FakeVpn:
    stack = FakeStack()


@pytest.fixture
def pump_pair():
    ns_end, pump_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pump_end.setblocking(False)
    ns_end.settimeout(2)
    yield ns_end, pump_end
    ns_end.close()
    pump_end.close()


async def _drain(loop) -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_pump_carries_refuses_and_steers(pump_pair):
    ns_end, pump_end = pump_pair

    async def scenario():
        tunnel = FakeTunnel(info(virtual_ip6=VIP6, prefix6=64, mtu=1400))
        pump = TunPump(tunnel, pump_end.fileno())
        ok = bytes(IP(src=VIP, dst=WEB) / TCP(sport=40000, dport=80))
        big = bytes(IP(src=VIP, dst=WEB, flags="DF") / UDP(sport=40000, dport=53)
                    / (b"x" * 1400))
        spoofed = bytes(IP(src="198.18.9.1", dst=WEB) / UDP(sport=1, dport=2))
        rs = bytes(IPv6(src=VIP6, dst="ff02::2") / ICMPv6ND_RS())
        mld = bytes(IPv6(src="::", dst="ff02::16")
                    / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLReport2())
        big6 = bytes(IPv6(src=VIP6, dst="2001:2:0:2::2") / UDP(sport=1, dport=2)
                     / (b"y" * 1400))
        for p in (ok, big, spoofed, rs, mld, big6):
            ns_end.send(p)
        await _drain(asyncio.get_running_loop())
        pump._readable()
        assert tunnel.sent == [ok]
        c = pump.counters
        assert (c.too_big, c.wrong_source, c.ignored_icmpv6) == (2, 1, 2)
        answer = IP(ns_end.recv(65536))
        assert answer[ICMP].type == 3 and answer[ICMP].code == 4 and answer.dst == VIP
        assert answer[ICMP].nexthopmtu == 1400
        answer6 = IPv6(ns_end.recv(65536))
        assert answer6[ICMPv6PacketTooBig].mtu == 1400 and answer6.dst == VIP6

        # tunnel -> namespace, with erebus' stack beside it
        to_stack = []
        link = pump.stack_link()
        link.set_receiver(to_stack.append)
        pump.attach_stack(FakeVpn())
        assert link.info is tunnel.info
        mine = bytes(IP(src=WEB, dst=VIP) / TCP(sport=80, dport=50000))      # ephemeral
        r_port = bytes(IP(src=WEB, dst=VIP) / TCP(sport=999, dport=8080))    # -R listener
        kernel = bytes(IP(src=WEB, dst=VIP) / TCP(sport=80, dport=40000))
        echo = bytes(IP(src=WEB, dst=VIP) / ICMP(type=8, id=7))
        reply6 = bytes(IPv6(src="2001:2:0:2::2", dst=VIP6) / ICMPv6EchoReply(id=7))
        frag = bytes(IP(src=WEB, dst=VIP, frag=100, proto=17) / (b"z" * 16))
        for p in (mine, r_port, kernel, echo, reply6, frag):
            tunnel.receiver(p)
        assert to_stack == [mine, r_port, reply6, frag]
        got = [ns_end.recv(65536) for _ in range(4)]
        assert got == [kernel, echo, reply6, frag]
        assert pump.counters.to_stack == 4
        pump.close()

    asyncio.run(scenario())


def test_flow_is_bounds_checked():
    assert flow.flow(b"") is None and flow.flow(b"\x45" + bytes(18)) is None
    tcp = bytes(IP(src=VIP, dst=WEB) / TCP(sport=1, dport=2))
    assert flow.flow(tcp) == flow.Flow(4, 6, 1, 2, -1)
    assert flow.flow(tcp[:27]) is None
    assert flow.flow(b"\x60" + bytes(30)) is None and flow.flow(b"\x10" + bytes(40)) is None
    assert flow.source(b"\x45") is None and flow.source(tcp) == socket.inet_aton(VIP)


# -- command line and preflight ----------------------------------------------------------

def test_command_line():
    argv, command = _split_command(["-v", "run", "p.ovpn", "--all", "--", "curl", "-x", "y"])
    args = _parser().parse_args(argv)
    assert (args.command, args.everything, command) == ("run", True, ["curl", "-x", "y"])
    assert _split_command(["up", "p.ovpn"]) == (["up", "p.ovpn"], None)
    assert command_of(["sh"], False) == ["sh"]
    assert command_of([], True, {"SHELL": "/bin/bash"}) == ["/bin/bash"]
    with pytest.raises(ConfigError, match="give the command after --"):
        command_of([], False)
    with pytest.raises(ConfigError, match="not both"):
        command_of(["sh"], True)


@pytest.mark.parametrize("setting, value, needle", [
    ("kernel.unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone = 0"),
    ("user.max_user_namespaces", "0", "user.max_user_namespaces = 0"),
])
def test_preflight_lines(monkeypatch, setting, value, needle):
    monkeypatch.setattr(netns, "_sysctl", lambda name: value if name == setting else None)
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    with pytest.raises(NamespaceError) as err:
        preflight()
    line = str(err.value)
    assert needle in line and "--socks" in line and "\n" not in line


def test_preflight_tun_and_helper_failures(monkeypatch):
    monkeypatch.setattr(netns, "_sysctl", lambda name: None)
    monkeypatch.setattr(os.path, "exists", lambda p: False)
    with pytest.raises(NamespaceError, match="no /dev/net/tun"):
        preflight()
    monkeypatch.setattr(netns, "_sysctl", lambda name: "1" if "apparmor" in name else None)
    line = _explain("uid_map", "writing '65534 65534 1' to /proc/self/uid_map: Operation "
                    "not permitted")
    assert "kernel.apparmor_restrict_unprivileged_userns = 1" in line and "--socks" in line
    assert "seccomp" in _explain("unshare", "unshare(...): Operation not permitted (errno EPERM)")
