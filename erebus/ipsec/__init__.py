"""IPsec: ESP in tunnel mode over UDP with manually keyed SAs (IKEv2 later).

    profile = load_esp_profile("site.toml")       # erebus.ipsec.profile
    tunnel = EspTunnel(profile, pcap=None)         # erebus.ipsec.tunnel
    info = await tunnel.connect(timeout=10)        # kind "ipsec"

``esp`` holds the sans-IO core (SecurityAssociation, EspSession), ``transforms``
the ciphers by their strongSwan names; the wire format is :mod:`erebus.wire.esp`.
"""

from .esp import EspCounters, EspSession, SecurityAssociation
from .profile import EspProfile, load_esp_profile
from .transforms import TRANSFORMS, Transform
from .tunnel import EspTunnel

__all__ = ["EspCounters", "EspProfile", "EspSession", "EspTunnel", "SecurityAssociation",
           "TRANSFORMS", "Transform", "load_esp_profile"]
