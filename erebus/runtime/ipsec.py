"""What is IPsec's in the one asyncio shell (erebus/runtime/tunnel.py): manually keyed
ESP (:class:`EspTunnel`) and IKEv2 (:class:`IkeTunnel`), each a driver that names the
endpoints and builds the sans-IO core (:class:`erebus.ipsec.manual.ManualEspSession`,
:class:`erebus.ipsec.ikesession.IkeSession`); the shell does the rest.

Manual SAs have no handshake: connecting resolves the peer, opens the socket, sends
a NAT keepalive and reports.  A reconnect only opens a new socket: the same core,
the same SAs (sequence numbers, replay windows, lifetimes).  With ``-vv`` the SAs
are logged in the form of Wireshark's ``esp_sa`` table
(:func:`erebus.ipsec.wireshark.wireshark_esp_sa`).
"""

from __future__ import annotations

import logging
import os
import time

from ..errors import SessionError
from ..ipsec.ikeprofile import IkeProfile
from ..ipsec.ikesession import IkeSession
from ..ipsec.manual import ManualEspSession
from ..ipsec.profile import EspProfile
from ..session import Stage
from .retry import RetryPolicy
from .tunnel import CLOSE_WAIT, Endpoint, ShellTunnel, host_port

__all__ = ["EspTunnel", "IkeTunnel", "DROP_KINDS"]

log = logging.getLogger("erebus.ipsec")

_IPV4_ONLY = "erebus's IPsec reaches its peer over IPv4 only"


def ipv4_endpoint(host: str, port: int, local_port: int) -> Endpoint:
    """An IPsec peer: over IPv4 only for now (the cores' NAT detection, traffic
    selectors and the ESP-in-UDP path take IPv4 addresses); an IPv6 address is a
    configuration error naming that, a name is resolved to IPv4 only."""
    if ":" in host:
        raise SessionError(Stage.CONFIG, f"{host_port(host, port)}: {_IPV4_ONLY}: use "
                           "its IPv4 address or a name with an A record")
    return Endpoint(host, port, "udp", local_port, family="ipv4", family_reason=_IPV4_ONLY)

# What a dropped datagram was, per counter of EspCounters (rate-limited, see
# erebus.runtime.ratelimit): a warning when someone on the path may be sending it.
DROP_KINDS = {
    "malformed": (logging.WARNING, "a malformed ESP datagram"),
    "unknown_spi": (logging.WARNING, "an ESP packet for an unknown SPI"),
    "replayed": (logging.WARNING, "a replayed or too old ESP packet"),
    "auth_failed": (logging.WARNING, "an ESP packet that failed authentication "
                    "(corrupted or forged)"),
    "bad_padding": (logging.WARNING, "an ESP packet with bad padding"),
    "bad_next_header": (logging.WARNING, "an ESP packet that carries neither IPv4 nor IPv6"),
    "policy_in": (logging.WARNING, "an inner packet outside the traffic selectors"),
    "expired_in": (logging.INFO, "an ESP packet after its SA reached its hard limit"),
}


class EspDriver:
    """Manual ESP for :class:`ShellTunnel`."""

    log = log
    drop_kinds = DROP_KINDS
    refused_after = None             # no handshake to fail: packets are just lost
    refused_hint = "is the ESP peer listening there?"
    retry = RetryPolicy()
    retry_attempts = None
    close_wait = CLOSE_WAIT
    resolve_retry = None

    def __init__(self, profile: EspProfile, session_factory=None, rng=os.urandom):
        self.profile = profile
        self.rng = rng
        self._session_factory = session_factory

    def endpoints(self) -> list[Endpoint]:
        p = self.profile
        return [ipv4_endpoint(p.peer_host, p.peer_port, p.local_port)]

    def new_session(self, now, endpoint, local, remote, previous) -> ManualEspSession:
        if previous is not None:
            if previous.finished:
                raise SessionError(Stage.CLOSED, f"{self.profile.peer}: the ESP session is "
                                   "over", recoverable=False)
            previous.rebind(now, local, remote)
            return previous
        esp = self._session_factory(now) if self._session_factory is not None else None
        return ManualEspSession(self.profile, now, rng=self.rng, local=local, remote=remote,
                                esp=esp)


class EspTunnel(ShellTunnel):
    """Manually keyed ESP-in-UDP to one peer, as an :class:`erebus.tunnel.Tunnel`."""

    def __init__(self, profile: EspProfile, *, pcap=None, session_factory=None,
                 connector=None):
        self.profile = profile
        super().__init__(EspDriver(profile, session_factory), warnings=profile.warnings,
                         connect_timeout=float(profile.connect_timeout), pcap=pcap,
                         connector=connector)


class IkeDriver:
    """IKEv2 (and its ESP SAs) for :class:`ShellTunnel`."""

    log = log
    drop_kinds = DROP_KINDS           # ESP drops, as with manual SAs
    refused_after = 3                 # ICMP errors before the responder ever answered
    refused_hint = "is an IKEv2 responder listening there?"
    retry = RetryPolicy()
    retry_attempts = None
    close_wait = CLOSE_WAIT
    resolve_retry = None

    def __init__(self, profile: IkeProfile, initiator_factory=None, rng=os.urandom):
        self.profile = profile
        self.rng = rng
        self._initiator_factory = initiator_factory

    def endpoints(self) -> list[Endpoint]:
        p = self.profile
        return [ipv4_endpoint(host, p.remote_port, p.local_port) for host in p.remote_addrs]

    def new_session(self, now, endpoint, local, remote, previous) -> IkeSession:
        return IkeSession(self.profile, now, rng=self.rng, wall_clock=time.time,
                          local_addr=local, remote_addr=remote,
                          initiator_factory=self._initiator_factory)


class IkeTunnel(ShellTunnel):
    """An IKEv2 client (one IKE SA, one CHILD_SA) as an :class:`erebus.tunnel.Tunnel`."""

    def __init__(self, profile: IkeProfile, *, pcap=None, initiator_factory=None,
                 connector=None):
        self.profile = profile
        super().__init__(IkeDriver(profile, initiator_factory), warnings=profile.warnings,
                         connect_timeout=float(profile.connect_timeout), pcap=pcap,
                         connector=connector)
