"""The VPN families erebus speaks, one record each: how its profile is recognised,
loaded, checked offline (``erebus check``) and turned into a tunnel (``erebus up``,
``erebus probe``).  A new family is one core behind erebus.session's contract, one
driver in erebus/runtime/, and one entry in :data:`FAMILIES`.

The kind of VPN follows from the file name and, for a ``.conf``, its content: an
ESP profile with manual SAs (TOML with an [ipsec] table), a strongSwan swanctl.conf
(IKEv2), a WireGuard wg-quick profile (a ``.conf`` whose first section header is
``[Interface]``; an OpenVPN file has no ``[section]`` lines), or else an OpenVPN
profile (.ovpn / .conf).  Imports are deferred: ``erebus check`` of an OpenVPN
profile loads nothing of IPsec or WireGuard, and nothing of asyncio.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

from .tunnel import Tunnel

__all__ = ["Family", "FAMILIES", "family_of", "open_tunnel"]


@dataclass(frozen=True, slots=True)
class Family:
    name: str                # "openvpn", "ipsec-manual", "ipsec-ike", "wireguard"
    format: str                                 # check's "format" for such a file
    kind: str                                   # TunnelInfo.kind, the pcap's interface
    recognises: Callable[[str], bool]           # by the file's name (or its start)
    load: Callable[[str, str | None], object]   # (path, conn) -> profile; ConfigError
    check: Callable[[str, str | None], tuple[int, dict]]   # offline verdict
    tunnel: Callable[..., Tunnel]               # (profile, pcap=) -> Tunnel


def _base(path: str) -> str:
    return os.path.basename(path).lower()


# -- OpenVPN -----------------------------------------------------------------------------

def _openvpn_load(path: str, conn: str | None):
    from . import credentials
    from .openvpn.reader import load_profile
    profile = load_profile(path)
    credentials.complete(profile)
    return profile


def _openvpn_check(path: str, conn: str | None):
    from .check import check_openvpn
    return check_openvpn(path)


def _openvpn_tunnel(profile, *, pcap=None) -> Tunnel:
    from .runtime.openvpn import OpenVPNTunnel
    return OpenVPNTunnel(profile, pcap=pcap)


# -- IPsec, manual SAs ---------------------------------------------------------------------

def _esp_load(path: str, conn: str | None):
    from .ipsec.profile import load_esp_profile
    return load_esp_profile(path)


def _esp_check(path: str, conn: str | None):
    from .check import check_esp
    return check_esp(path)


def _esp_tunnel(profile, *, pcap=None) -> Tunnel:
    from .runtime.ipsec import EspTunnel
    return EspTunnel(profile, pcap=pcap)


# -- IPsec, IKEv2 -------------------------------------------------------------------------

def _is_swanctl(path: str) -> bool:
    base = _base(path)
    return base == "swanctl.conf" or base.endswith(".swanctl.conf")


def _ike_load(path: str, conn: str | None):
    from .ipsec.swanctl import load_swanctl
    profile = load_swanctl(path, conn=conn)
    for warning in profile.warnings:          # logged when read, as the other families
        logging.getLogger("erebus.ipsec").warning("%s", warning)
    return profile


def _ike_check(path: str, conn: str | None):
    from .check import check_swanctl
    return check_swanctl(path, conn)


def _ike_tunnel(profile, *, pcap=None) -> Tunnel:
    from .runtime.ipsec import IkeTunnel
    return IkeTunnel(profile, pcap=pcap)


# -- WireGuard ----------------------------------------------------------------------------

def _is_wg_quick(path: str) -> bool:
    if not _base(path).endswith(".conf"):
        return False
    from .wireguard.profile import sniff_wg_quick
    return sniff_wg_quick(path)


def _wg_load(path: str, conn: str | None):
    from .wireguard.profile import load_wg_profile
    return load_wg_profile(path)               # its warnings are logged as it is read


def _wg_check(path: str, conn: str | None):
    from .check import check_wireguard
    return check_wireguard(path)


def _wg_tunnel(profile, *, pcap=None) -> Tunnel:
    try:
        from .runtime.wireguard import WireGuardTunnel
    except ModuleNotFoundError as exc:
        if exc.name not in ("erebus.runtime.wireguard", "erebus.wireguard.session"):
            raise
        from .errors import ConfigError
        raise ConfigError("WireGuard tunnels are not in this build of erebus yet (no "
                          f"{exc.name}); 'erebus check' reads the profile",
                          path=profile.path) from None
    return WireGuardTunnel(profile, pcap=pcap)


FAMILIES: tuple[Family, ...] = (
    Family("ipsec-manual", "esp-toml", "ipsec", lambda p: _base(p).endswith(".toml"),
           _esp_load, _esp_check, _esp_tunnel),
    Family("ipsec-ike", "swanctl", "ipsec", _is_swanctl, _ike_load, _ike_check,
           _ike_tunnel),
    Family("wireguard", "wg-quick", "wireguard", _is_wg_quick, _wg_load, _wg_check,
           _wg_tunnel),
    Family("openvpn", "openvpn", "openvpn", lambda p: True,     # the default: last
           _openvpn_load, _openvpn_check, _openvpn_tunnel),
)


def family_of(path: str) -> Family:
    """The family whose profile ``path`` is (the first record that recognises it)."""
    return next(f for f in FAMILIES if f.recognises(path))


def open_tunnel(path: str, *, pcap=None, conn: str | None = None) -> Tunnel:
    """The tunnel for the profile at ``path`` (nothing sent yet); config errors name
    the file, line and option.  ``tunnel.connect_timeout`` is the profile's."""
    family = family_of(path)
    return family.tunnel(family.load(path, conn), pcap=pcap)
