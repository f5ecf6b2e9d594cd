"""``block-ipv6`` on a client (OpenVPN 2.6 forward.c ``ipv6_send_icmp_unreachable``):
an IPv6 packet the client would send into the tunnel is answered locally with an ICMPv6
destination unreachable, no route to destination, and never sent to the server.  Its
source is the tunnel's remote IPv6 end (ifconfig-ipv6's REMOTE), or fe80::7 without one,
as in 2.6.  Sans-IO: bytes in, bytes out."""

from __future__ import annotations

from ..errors import ParseError
from ..wire import icmpv6, ipv6

__all__ = ["BLOCK_IPV6_SOURCE", "LOCAL_PACKETS_MAX", "is_ipv6_packet", "unreachable_reply"]

BLOCK_IPV6_SOURCE = "fe80::7"
LOCAL_PACKETS_MAX = 64      # answers a session holds until the shell takes them


def is_ipv6_packet(packet: bytes | bytearray | memoryview) -> bool:
    """The version nibble says 6."""
    return bool(packet) and packet[0] >> 4 == 6


def unreachable_reply(packet: bytes | bytearray | memoryview,
                      remote6: str | None) -> bytes | None:
    """The IPv6 packet carrying the ICMPv6 no-route error for ``packet``; None when
    RFC 4443 2.4 (e) forbids one (an error answering an error, a multicast source
    ...) or ``packet`` has no readable IPv6 header."""
    try:
        header, _ = ipv6.parse_ipv6_prefix(packet)
    except ParseError:
        return None
    if not icmpv6.error_allowed(packet, icmpv6.DEST_UNREACH, icmpv6.UNREACH_NO_ROUTE):
        return None
    src = ipv6.to_ip6(remote6 or BLOCK_IPV6_SOURCE)
    message = icmpv6.build_dest_unreachable(src, header.src, packet,
                                            code=icmpv6.UNREACH_NO_ROUTE)
    return ipv6.build_ipv6(src, header.src, ipv6.NH_ICMPV6, message)
