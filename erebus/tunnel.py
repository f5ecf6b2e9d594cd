"""What a tunnel offers the rest of erebus, whatever VPN family carries it.

:class:`PacketLink` is what the network stack (:class:`erebus.runtime.stack.VpnStack`)
needs: whole IP packets in and out, and :class:`TunnelInfo`.  :class:`Tunnel` adds
the life cycle that ``erebus up`` and ``erebus probe`` drive.  The one
implementation is :class:`erebus.runtime.tunnel.ShellTunnel` (any family's sans-IO
core over a UDP or TCP link); the TUN test harness (tests/tun.py) is a PacketLink.
Nothing outside this protocol is used by ``up``, ``probe`` or ``VpnStack``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from .counters import CountersDict
from .session import TunnelInfo

if TYPE_CHECKING:                  # no asyncio at import time: erebus.session is sans-IO
    import asyncio

__all__ = ["PacketLink", "Tunnel", "TunnelInfo"]


@runtime_checkable
class PacketLink(Protocol):
    info: TunnelInfo | None

    def send_packet(self, packet: bytes) -> None:
        """Send one IP packet into the VPN (dropped, and counted, if the tunnel is down)."""

    def set_receiver(self, receiver: Callable[[bytes], None]) -> None:
        """Call ``receiver(packet)`` for every IP packet that comes out of the VPN."""


@runtime_checkable
class Tunnel(PacketLink, Protocol):
    warnings: list[str]             # the profile's ("FILE:LINE: option: ..."), for probe
    connect_timeout: float          # the profile's, in seconds

    @property
    def up(self) -> bool:
        """Inner packets are carried now."""

    @property
    def counters(self) -> CountersDict | None:
        """The current session's counters (None before the first one)."""

    async def connect(self, timeout: float | None = None) -> TunnelInfo:
        """Try the profile's remotes in order; raises SessionError naming what failed."""

    async def reconnect(self, *, timeout: float | None = None, attempts: int | None = None,
                        stop: "asyncio.Event | None" = None) -> TunnelInfo:
        """New sessions with backoff until one comes up (recoverable failures only)."""

    async def wait_closed(self) -> str:
        """Until the session ends: its reason, or raises the SessionError that ended it
        (``.recoverable`` says whether :meth:`reconnect` may help)."""

    async def close(self) -> None:
        """Tell the server we leave and release the transport."""
