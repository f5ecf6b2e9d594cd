"""A profile file -> the tunnel that speaks it.  The kind of VPN follows from the file:
an ESP profile with manual SAs (TOML with an [ipsec] table), a strongSwan swanctl.conf
(IKEv2), or an OpenVPN profile (.ovpn / .conf)."""

from __future__ import annotations

import os

from . import credentials
from .errors import ConfigError

DEFAULT_CONNECT_TIMEOUT = 30.0


def kind_of(path: str) -> str:
    base = os.path.basename(path).lower()
    if base.endswith(".toml"):
        return "ipsec-manual"
    if base == "swanctl.conf" or base.endswith(".swanctl.conf"):
        return "ipsec-ike"
    return "openvpn"


def open_tunnel(path: str, *, pcap=None, conn: str | None = None):
    """(tunnel, connect timeout in seconds) for the profile at ``path``; config errors
    name the file, line and option."""
    kind = kind_of(path)
    if kind == "ipsec-manual":
        try:
            from .ipsec.profile import load_esp_profile
            from .ipsec.tunnel import EspTunnel
        except ImportError as exc:                       # pragma: no cover
            raise ConfigError(f"ESP profiles need the ipsec package: {exc}",
                              path=path) from None
        profile = load_esp_profile(path)
        return EspTunnel(profile, pcap=pcap), float(getattr(profile, "connect_timeout",
                                                            DEFAULT_CONNECT_TIMEOUT))
    if kind == "ipsec-ike":
        from .ipsec.iketunnel import IkeTunnel
        from .ipsec.swanctl import load_swanctl
        profile = load_swanctl(path, conn=conn)
        return IkeTunnel(profile, pcap=pcap), float(profile.connect_timeout)
    from .openvpn.config import load_profile
    from .runtime.openvpn import OpenVPNTunnel
    profile = load_profile(path)
    credentials.complete(profile)
    return OpenVPNTunnel(profile, pcap=pcap), float(profile.connect_timeout)
