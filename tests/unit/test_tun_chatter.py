"""The TUN harness (tests/tun.py) drops the kernel's neighbour discovery and MLD, and
only those: packets built by scapy, the oracle."""

from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6MLReport2, ICMPv6ND_NS,
                                ICMPv6ND_RS, IPv6, IPv6ExtHdrHopByHop, RouterAlert)
from scapy.layers.inet import TCP

from tests.tun import _link_chatter

K, US = "2001:2:0:200::1", "2001:2:0:200::2"


def test_nd_and_mld_are_chatter():
    assert _link_chatter(bytes(IPv6(src=K, dst="ff02::2") / ICMPv6ND_RS()))
    assert _link_chatter(bytes(IPv6(src=K, dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt=US)))
    mld = IPv6(src=K, dst="ff02::16") / IPv6ExtHdrHopByHop(options=[RouterAlert()]) \
        / ICMPv6MLReport2()
    assert _link_chatter(bytes(mld))


def test_traffic_and_malformed_packets_are_not_chatter():
    assert not _link_chatter(bytes(IPv6(src=K, dst=US) / ICMPv6EchoRequest()))
    assert not _link_chatter(bytes(IPv6(src=K, dst=US) / TCP(dport=80)))
    rs = bytes(IPv6(src=K, dst="ff02::2") / ICMPv6ND_RS())
    assert not _link_chatter(rs[:39])            # cut inside the fixed header
    assert not _link_chatter(rs[:40])            # no ICMPv6 byte at all
