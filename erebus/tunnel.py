"""What every tunnel offers the network stack, whatever VPN family carries it.

A tunnel moves whole IPv4 packets: :meth:`Tunnel.send_packet` puts one into
the VPN, and the receiver set with :meth:`Tunnel.set_receiver` gets each one
that comes out.  :class:`TunnelInfo` is what the server told us about our
place in the VPN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol


@dataclass(slots=True)
class TunnelInfo:
    kind: str                       # "openvpn" (later "ipsec")
    server: str                     # host:port we are connected to
    virtual_ip: str
    netmask: str
    gateway: str | None
    routes: list[str] = field(default_factory=list)   # CIDR strings
    mtu: int = 1500
    dns: list[str] = field(default_factory=list)
    cipher: str = ""
    setup_ms: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class Tunnel(Protocol):
    info: TunnelInfo
    warnings: list[str]             # the profile's ("FILE:LINE: option: ..."), for probe

    def send_packet(self, packet: bytes) -> None:
        """Send one IPv4 packet into the VPN (dropped, and counted, if the tunnel is down)."""

    def set_receiver(self, receiver: Callable[[bytes], None]) -> None:
        """Call ``receiver(packet)`` for every IPv4 packet that comes out of the VPN."""

    async def close(self) -> None:
        """Tell the server we leave and release the transport."""
