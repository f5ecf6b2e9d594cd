"""A packet's flow at a glance: what ``erebus run``'s pump needs to steer and check
packets without parsing them whole (the stack parses them after, if they go there).

    flow(packet) -> Flow(version, protocol, src_port, dst_port, icmp_type) or None
    source(packet) -> the packed source address (4 or 16 bytes), or None

Bounds-checked: anything short, fragmented past the first piece, or behind IPv6
extension headers gives None (the caller then treats it as "unknown").
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Flow", "flow", "source", "dont_fragment", "PROTO_ICMP", "PROTO_TCP",
           "PROTO_UDP", "PROTO_ICMPV6"]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58


class Flow(NamedTuple):
    version: int
    protocol: int
    src_port: int          # TCP/UDP ports; ICMP: the echo identifier in both
    dst_port: int
    icmp_type: int         # -1 for TCP and UDP


def flow(packet: bytes | bytearray | memoryview) -> Flow | None:
    n = len(packet)
    if n < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or (packet[6] & 0x1F) or packet[7]:       # a later fragment
            return None
        proto, start = packet[9], ihl
    elif version == 6:
        if n < 40:
            return None
        proto, start = packet[6], 40
    else:
        return None
    if n < start + 8:
        return None
    if proto in (PROTO_TCP, PROTO_UDP):
        return Flow(version, proto, packet[start] << 8 | packet[start + 1],
                    packet[start + 2] << 8 | packet[start + 3], -1)
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        ident = packet[start + 4] << 8 | packet[start + 5]
        return Flow(version, proto, ident, ident, packet[start])
    return None


def source(packet: bytes | bytearray | memoryview) -> bytes | None:
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        return bytes(packet[12:16])
    if len(packet) >= 40 and packet[0] >> 4 == 6:
        return bytes(packet[8:24])
    return None


def dont_fragment(packet: bytes | bytearray | memoryview) -> bool:
    """IPv4 with DF set, or IPv6 (no router fragments it)."""
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        return bool(packet[6] & 0x40)
    return len(packet) >= 40 and packet[0] >> 4 == 6
