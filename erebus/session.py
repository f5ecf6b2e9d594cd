"""The one contract between a VPN family's protocol core and the rest of erebus.

Every family (OpenVPN with TLS or a static key, IPsec with manual SAs, IKEv2 and
its ESP SAs) is driven through the same sans-IO surface, in the spirit of aioquic's
``QuicConnection``: bytes and ``now`` in; bytes, events and the next deadline out.
No core owns a socket, a loop, a clock or ``os.urandom``: time is ``now`` and the
randomness is the ``rng`` its constructor takes, so any core runs in virtual time
with a seeded rng.  :mod:`erebus.runtime.tunnel` is the one asyncio shell that
drives any of them.

    core.receive_datagram(data, now) -> inner IP packets (a sequence, often empty)
    core.send_packet(packet, now)    -> the datagram carrying it, or None (dropped,
                                        and counted: outside the policy, no key ...)
    core.datagrams_to_send(now)      -> everything else due: handshake, ACKs,
                                        keepalives, DELETEs, retransmissions
    core.get_timer()                 -> when handle_timer wants to run, or None
    core.handle_timer(now)           -> (datagrams and events follow as usual)
    core.next_event()                -> Connected, Failed, Closed, Rekeyed,
                                        PathChanged, Notice, or None
    core.close(now)                  -> leave: tell the peer (see datagrams_to_send);
                                        Closed follows when done
    core.established / finished / answered, core.counters (a CountersDict)
    core.connect_timeout()           -> (Stage, why) when no Connected came in time

The shell's order, for every family: after input (a batch of datagrams, a timer,
an outbound packet that made events), first the events, then the datagrams due,
then the timer re-armed from ``get_timer()``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence, runtime_checkable

__all__ = ["Stage", "TunnelInfo", "Event", "Connected", "Failed", "Closed", "Rekeyed",
           "PathChanged", "Notice", "Session"]


class Stage(enum.StrEnum):
    """What failed, as ``SessionError.stage`` and ``Failed.stage``; it knows whether a
    new session may well succeed (:attr:`recoverable`).  A StrEnum: it compares
    equal to its value and prints as it, so reports and logs read ``auth``."""

    RESOLVE = "resolve"               # the server's name did not resolve
    UNREACHABLE = "unreachable"       # no answer, or nothing listens there
    TIMEOUT = "timeout"               # the peer answered, then stalled
    CONNECTION_LOST = "connection-lost"   # the TCP stream to the server ended
    TLS = "tls"                       # TLS handshake failed or stalled
    CERTIFICATE = "certificate"       # the peer's certificate was refused
    AUTH = "auth"                     # credentials or AUTH refused
    PUSH = "push"                     # a pushed option refused
    PUSH_TIMEOUT = "push-timeout"
    CIPHER = "cipher"
    COMPRESSION = "compression"
    PROPOSAL = "proposal"             # no common IKE/ESP proposal
    PROTOCOL = "protocol"             # the peer broke the protocol
    PING_RESTART = "ping-restart"
    RESTART = "restart"               # the server asked us to reconnect
    RENEGOTIATION = "renegotiation"
    HALTED = "halted"                 # the server told us to stop
    SA_EXPIRED = "sa-expired"         # an SA reached a hard limit
    STATE = "state"                   # a call the session cannot take now
    CLOSED = "closed"                 # the session is over and cannot be resumed
    CONFIG = "config"
    STOPPED = "stopped"               # a signal while reconnecting

    @property
    def recoverable(self) -> bool:
        """A new session may well succeed after this (the default; an event or error
        may say otherwise, e.g. an expired manual SA is not renewable)."""
        return self in _RECOVERABLE


_RECOVERABLE = frozenset({Stage.RESOLVE, Stage.UNREACHABLE, Stage.TIMEOUT,
                          Stage.CONNECTION_LOST, Stage.TLS, Stage.PUSH_TIMEOUT,
                          Stage.PING_RESTART, Stage.RESTART, Stage.RENEGOTIATION,
                          Stage.SA_EXPIRED})


@dataclass(slots=True)
class TunnelInfo:
    """What the server told us about our place in the VPN (``erebus probe`` prints it)."""

    kind: str                       # the family: "openvpn", "ipsec" or "wireguard"
    server: str                     # host:port we are connected to (set by the shell)
    virtual_ip: str
    netmask: str
    gateway: str | None
    routes: list[str] = field(default_factory=list)   # CIDR strings
    mtu: int = 1500
    dns: list[str] = field(default_factory=list)
    cipher: str = ""
    setup_ms: float = 0.0
    mss: int | None = None          # the TCP MSS cap (OpenVPN's mssfix); None: mtu - 40
    address: str = ""               # the address it went to: 198.18.1.1:1194,
                                    # [2001:2::1]:1194 (a proxy's, behind one)
    # IPv6 inside the tunnel (None/empty: the tunnel carries IPv4 only); ``dns``
    # holds the servers of both families, in the order the peer gave them
    virtual_ip6: str | None = None  # our IPv6 address in the VPN: 2001:2:0:2::1000
    prefix6: int | None = None      # its prefix length (64); on-link through the tunnel
    gateway6: str | None = None     # the peer's IPv6 end, when it names one
    routes6: list[str] = field(default_factory=list)  # IPv6 CIDR strings
    # the peer asks for every destination through the tunnel (OpenVPN's pushed
    # redirect-gateway); only `erebus run` acts on it, in its own namespace
    redirect_gateway: bool = False
    # the VPN's DNS domains (OpenVPN's dhcp-option DOMAIN, then DOMAIN-SEARCH): what
    # --pac sends through the proxy by name, and erebus run's resolv.conf search line
    domains: list[str] = field(default_factory=list)
    # who the peer is, when the family names it by more than its address (WireGuard:
    # its public key, as ``wg show`` prints it)
    peer: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


# -- events ------------------------------------------------------------------------------

class Event:
    """Base of everything ``next_event()`` returns."""

    __slots__ = ()


@dataclass(slots=True)
class Connected(Event):
    """The tunnel carries packets now; ``info`` describes it.  A family may subclass
    it to carry more (OpenVPN's pushed options)."""

    info: TunnelInfo


@dataclass(slots=True)
class Failed(Event):
    """The session is over: ``stage`` names what failed.  ``recoverable`` None: the
    stage's default."""

    stage: Stage
    message: str
    recoverable: bool | None = None
    immediate: bool = False          # the next session may start at once (no backoff):
                                     # it answers what this one was asked (a challenge)

    def __post_init__(self) -> None:
        self.stage = Stage(self.stage)
        if self.recoverable is None:
            self.recoverable = self.stage.recoverable


@dataclass(slots=True)
class Closed(Event):
    """The session ended in order (we left, or the peer said goodbye)."""

    reason: str
    recoverable: bool = False


@dataclass(slots=True)
class Rekeyed(Event):
    """New keys are in use (``what``: "data channel", "CHILD_SA", "IKE SA")."""

    what: str
    detail: str = ""


@dataclass(slots=True)
class PathChanged(Event):
    """Send to this port of the same peer from now on (IKEv2 NAT-T: 500 -> 4500)."""

    port: int


class Notice(Event):
    """Something the shell only logs: ``level`` (a logging level) and ``message``.
    Families subclass it (TLS established, a server's INFO, an SA's soft limit)."""

    __slots__ = ()
    level = logging.INFO

    @property
    def message(self) -> str:       # pragma: no cover - every subclass has one
        raise NotImplementedError


@dataclass(slots=True)
class Note(Notice):
    """A plain notice: a line for the log."""

    text: str
    level: int = logging.INFO

    @property
    def message(self) -> str:
        return self.text


# -- the contract -------------------------------------------------------------------------

@runtime_checkable
class Session(Protocol):
    """What every family's core offers (see the module's docstring)."""

    counters: object

    @property
    def established(self) -> bool:
        """Inner packets can be sent."""

    @property
    def finished(self) -> bool:
        """Failed or Closed was emitted: nothing more comes out."""

    @property
    def answered(self) -> bool:
        """The peer sent something authentic (a refused port is then not "unreachable")."""

    def receive_datagram(self, data: bytes | memoryview, now: float) -> Sequence[bytes]:
        ...

    def send_packet(self, packet: bytes | memoryview, now: float) -> bytes | None:
        ...

    def datagrams_to_send(self, now: float) -> list[bytes]:
        ...

    def get_timer(self) -> float | None:
        ...

    def handle_timer(self, now: float) -> None:
        ...

    def next_event(self) -> Event | None:
        ...

    def close(self, now: float) -> None:
        ...

    def connect_timeout(self) -> tuple[Stage, str]:
        """Why no Connected came in time: the stage to report and a few words."""
