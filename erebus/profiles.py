"""A profile file -> the tunnel that speaks it.  The kind of VPN follows from the file:
an ESP profile (TOML with an [ipsec] table), or an OpenVPN profile (.ovpn / .conf)."""

from __future__ import annotations

from . import credentials
from .errors import ConfigError

DEFAULT_CONNECT_TIMEOUT = 30.0


def kind_of(path: str) -> str:
    if path.endswith(".toml"):
        return "ipsec-manual"
    return "openvpn"


def open_tunnel(path: str, *, pcap=None):
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
    from .openvpn.config import load_profile
    from .runtime.openvpn import OpenVPNTunnel
    profile = load_profile(path)
    credentials.complete(profile)
    return OpenVPNTunnel(profile, pcap=pcap), float(profile.connect_timeout)
