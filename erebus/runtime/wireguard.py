"""What is WireGuard's in the one asyncio shell (erebus/runtime/tunnel.py): a driver
that names the peer's endpoint and builds the sans-IO core
(:class:`erebus.wireguard.session.WireGuardSession`); the shell does the rest.

One peer per tunnel: the first ``[Peer]`` with an ``Endpoint`` (a client's profile
has one).  Further peers are listed as not used, with their lines: routing between
several peers by AllowedIPs needs one socket to several endpoints, which the shell
does not do yet (docs/compatibility.md).

WireGuard has no goodbye and no refusal: a peer that does not know our public key
stays silent, so connecting ends with "no handshake response from peer KEY: is our
public key configured there?" (our key is logged when connecting).  A peer that
restarts forgets our keys; the core notices (data sent, nothing back for 15 s) and
handshakes again within the same session, so the tunnel, its listeners and its TCP
connections stay.  A session whose handshakes time out (REKEY_ATTEMPT_TIME, 90 s)
fails, and ``erebus up`` reconnects: a new session, a new handshake.
"""

from __future__ import annotations

import base64
import logging
import os
import time

from ..wireguard.profile import WgProfile
from .keylog import KeyLog
from ..wireguard.session import WireGuardSession
from .retry import RetryPolicy
from .tunnel import CLOSE_WAIT, Endpoint, ShellTunnel

__all__ = ["WireGuardTunnel", "WireGuardDriver", "DROP_KINDS", "CONNECT_TIMEOUT",
           "peer_label"]

log = logging.getLogger("erebus.wireguard")

CONNECT_TIMEOUT = 30.0    # seconds for the first handshake (--timeout overrides)

# What a dropped datagram was, per counter of WgCounters (rate-limited, see
# erebus.runtime.ratelimit): a warning when someone on the path may be sending it.
DROP_KINDS = {
    "malformed": (logging.WARNING, "a malformed WireGuard message"),
    "unknown_index": (logging.INFO, "a WireGuard message for a session we no longer have "
                      "(an old keypair, or a peer that restarted)"),
    "replayed": (logging.WARNING, "a replayed or too old WireGuard data packet"),
    "auth_failed": (logging.WARNING, "a WireGuard data packet that failed authentication "
                    "(corrupted or forged)"),
    "bad_mac": (logging.WARNING, "a WireGuard handshake message with a wrong MAC "
                "(not for our key, or forged)"),
    "expired": (logging.INFO, "a WireGuard data packet on a keypair past its lifetime"),
    "policy_in": (logging.WARNING, "an inner packet from a source outside the peer's "
                  "AllowedIPs"),
    "policy_out": (logging.INFO, "an inner packet to a destination outside the peer's "
                   "AllowedIPs (not sent)"),
    "staged_dropped": (logging.INFO, "an inner packet dropped while waiting for a "
                       "handshake (the queue was full)"),
    "unknown_peer": (logging.WARNING, "a WireGuard handshake initiation from a key that is "
                     "not the peer's"),
    "replayed_timestamp": (logging.WARNING, "a replayed WireGuard handshake initiation"),
    "flood": (logging.INFO, "a WireGuard handshake initiation sooner than 20 ms after the "
              "last"),
}


def peer_label(public_key: bytes) -> str:
    """How messages name a peer: by its public key, as ``wg show`` does."""
    return "peer " + base64.b64encode(public_key).decode()


class WireGuardDriver:
    """A WireGuard client for :class:`ShellTunnel`."""

    log = log
    drop_kinds = DROP_KINDS
    refused_after = 3                 # ICMP errors before the peer ever answered
    refused_hint = "is a WireGuard peer listening there?"
    retry = RetryPolicy()
    retry_attempts = None
    close_wait = CLOSE_WAIT           # unused: close() finishes the core at once
    resolve_retry = None
    roams = True                      # our address changed: a new socket (the peer follows)

    def __init__(self, profile: WgProfile, rng=os.urandom, wall_clock=time.time,
                 keylog: KeyLog | None = None):
        self.profile = profile
        self.keylog = keylog
        self.rng = rng
        self.wall_clock = wall_clock
        index = next(i for i, p in enumerate(profile.peers) if p.endpoint is not None)
        self.peer = profile.peers[index]
        self.unused = [line for i, line in enumerate(profile.peer_lines) if i != index]

    def endpoints(self) -> list[Endpoint]:
        host, port = self.peer.endpoint
        return [Endpoint(host, port, "udp", self.profile.interface.listen_port or 0,
                         source=self.peer)]

    def new_session(self, now, endpoint, local, remote, previous) -> WireGuardSession:
        ours = base64.b64encode(self.profile.public_key).decode()
        self.log.info("handshaking with %s as %s", peer_label(self.peer.public_key), ours)
        return WireGuardSession(self.profile.interface, self.peer, now, rng=self.rng,
                                wall_clock=self.wall_clock,
                                peer_name=peer_label(self.peer.public_key),
                                keylog=self.keylog.write if self.keylog else None)


class WireGuardTunnel(ShellTunnel):
    """A WireGuard client (one peer) as an :class:`erebus.tunnel.Tunnel`."""

    def __init__(self, profile: WgProfile, *, pcap=None, connector=None, rng=os.urandom,
                 keylog: str | None = None):
        self.profile = profile
        self.keylog = KeyLog(keylog) if keylog else None
        if self.keylog is not None:
            log.warning("writing the WireGuard keys (the private key too) to %s, as "
                        "asked (--keylog)", self.keylog.path)
        driver = WireGuardDriver(profile, rng=rng, keylog=self.keylog)
        warnings = list(profile.warnings)
        path = profile.path
        for line in driver.unused:
            warnings.append(f"{path}:{line}: [Peer]: not used: erebus talks to one peer "
                            "per tunnel (the first with an Endpoint)")
        for text in warnings[len(profile.warnings):]:
            log.warning("%s", text)
        super().__init__(driver, warnings=warnings, connect_timeout=CONNECT_TIMEOUT,
                         pcap=pcap, connector=connector)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self.keylog is not None:
                self.keylog.close()
