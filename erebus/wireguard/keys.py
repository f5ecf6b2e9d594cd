"""What the WireGuard core is given: our interface and the peers, as a profile
describes them (erebus.wireguard.profile reads them from a wg-quick file).

Frozen: once read, a configuration does not change under a running session.  The
secrets (our private key, a preshared key) are left out of ``repr`` so that neither
a log line nor a traceback can show them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["KEY_LEN", "DEFAULT_MTU", "WgInterfaceConfig", "WgPeerConfig"]

KEY_LEN = 32            # Curve25519 keys and the preshared key: 32 bytes each
DEFAULT_MTU = 1420      # wg-quick's MTU when the profile gives none: 1500 - 80

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class WgInterfaceConfig:
    """``[Interface]``: who we are inside the tunnel."""
    private_key: bytes = field(repr=False)            # 32 bytes, Curve25519
    addresses: tuple[IPInterface, ...] = ()           # Address lines, with prefix
    dns: tuple[IPAddress, ...] = ()                   # DNS entries that are addresses
    dns_search: tuple[str, ...] = ()                  # DNS entries that are names
    mtu: int | None = None                            # None: DEFAULT_MTU
    listen_port: int | None = None                    # our UDP port; None: any


@dataclass(frozen=True, slots=True)
class WgPeerConfig:
    """One ``[Peer]``: a server we may reach, and what lies behind it."""
    public_key: bytes                                 # 32 bytes, Curve25519
    preshared_key: bytes | None = field(default=None, repr=False)   # 32 bytes
    endpoint: tuple[str, int] | None = None           # (name or address, UDP port)
    allowed_ips: tuple[IPNetwork, ...] = ()           # what goes to (and may come from) it
    persistent_keepalive: int | None = None           # seconds; None: off
