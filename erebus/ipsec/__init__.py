"""IPsec, sans-IO: ESP in tunnel mode over UDP (RFC 4301, 4303, 3948) with manually
keyed SAs, and an IKEv2 initiator (RFC 7296) that negotiates them.

``esp`` holds SA processing (SecurityAssociation, EspSession), ``transforms`` the
ciphers by their strongSwan names, ``ike`` the IKEv2 initiator, ``manual`` and
``ikesession`` the two cores behind erebus.session's contract; the wire formats are
:mod:`erebus.wire.esp` and :mod:`erebus.wire.ike`.  The asyncio side is
:mod:`erebus.runtime.ipsec` (EspTunnel, IkeTunnel): nothing here imports asyncio.
"""

from .esp import EspCounters, EspSession, SecurityAssociation
from .profile import EspProfile, load_esp_profile
from .transforms import TRANSFORMS, Transform

__all__ = ["EspCounters", "EspProfile", "EspSession", "SecurityAssociation",
           "TRANSFORMS", "Transform", "load_esp_profile"]
