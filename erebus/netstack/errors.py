"""Typed errors of the network stack: why a connection or a datagram through the VPN
failed, as an enum the asyncio shell maps to the OSError a socket would raise
(:func:`erebus.runtime.stack._error_for`), and a message for the user."""

from __future__ import annotations

import enum
import errno

from ..errors import ErebusError

__all__ = ["NetErrorReason", "NetError", "TcpError", "no_route"]


class NetErrorReason(enum.Enum):
    REFUSED = "refused"           # a RST answering our SYN, or ICMP port unreachable
    RESET = "reset"               # a RST on an open connection
    TIMED_OUT = "timed out"       # retransmissions (or keepalive probes) unanswered
    UNREACHABLE = "unreachable"   # ICMP host unreachable, and any other unreachable code
    NET_UNREACHABLE = "network unreachable"   # ICMP network unreachable
    TTL_EXPIRED = "ttl expired"   # ICMP time exceeded in transit
    CLOSED = "closed"             # the connection is not open for sending (any more)


class NetError(ErebusError):
    """A connection or a datagram through the VPN that failed: ``reason`` says how, the
    message says it to the user."""

    def __init__(self, reason: NetErrorReason, message: str):
        self.reason = reason
        super().__init__(message)


class TcpError(NetError):
    """A TCP connection that ended abnormally, or cannot do what was asked of it."""


def no_route(destination: str) -> OSError:
    """What sending to or dialling an address of a family the tunnel has no address
    of raises: the OSError a socket would (ENETUNREACH), carrying the reason the local
    services map to their answers (SOCKS "network unreachable", the HTTP proxy's 502)."""
    family = "IPv6" if ":" in destination else "IPv4"
    exc = OSError(errno.ENETUNREACH, f"{destination}: the tunnel has no {family} address "
                  f"(the server pushed none), so {family} destinations are unreachable")
    exc.reason = NetErrorReason.NET_UNREACHABLE
    return exc
