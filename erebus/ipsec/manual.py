"""Manually keyed ESP in UDP as an :class:`erebus.session.Session` (sans-IO).

There is no handshake: :class:`Connected` comes at once, with a NAT keepalive to
send.  The SAs (sequence numbers, replay windows, lifetimes) live as long as this
object: a reconnect (a new socket, a new local port) goes on with the same object
(:meth:`ManualEspSession.rebind`), so the peer never sees a sequence number twice.
The session fails when an SA reaches a hard limit: manual SAs cannot be renewed,
so that failure is not recoverable.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections import deque

from ..session import Closed, Connected, Failed, Note, Stage, TunnelInfo
from .esp import SaExpired, SaSoftLimit
from .profile import EspProfile
from .wireshark import tshark_esp_options, wireshark_esp_sa

__all__ = ["ManualEspSession"]


class ManualEspSession:
    """One EspProfile's SAs; see the module's docstring."""

    def __init__(self, profile: EspProfile, now: float, *, rng=os.urandom,
                 local: tuple = ("0.0.0.0", 0), remote: tuple = ("0.0.0.0", 0), esp=None):
        """``rng`` gives the SAs' IVs (unless ``esp``, an EspSession, is given)."""
        self.profile = profile
        self.esp = esp if esp is not None else profile.new_session(now, rng=rng)
        self.counters = self.esp.counters
        self.send_packet = self.esp.send_packet      # the hot path: no wrapper
        self._events: deque = deque()
        self._out: list[bytes] = []
        self.rebind(now, local, remote)

    def rebind(self, now: float, local: tuple, remote: tuple) -> None:
        """A new socket: a keepalive from it, and Connected again."""
        p = self.profile
        for line in wireshark_esp_sa(p, local[0], remote[0]):
            self._events.append(Note(f"Wireshark esp_sa: {line}", logging.DEBUG))
        self._events.append(Note("tshark: tshark -r FILE " + " ".join(
            shlex.quote(arg) for arg in tshark_esp_options(p, local[0], remote[0])),
            logging.DEBUG))
        self._out.append(self.esp.keepalive(now))
        self._events.append(Note(
            f"ESP to {p.peer} ({remote[0]}:{remote[1]}) from {local[0]}:{local[1]}: virtual "
            f"IP {p.local_ip}{f' and {p.local_ip6}' if p.local_ip6 else ''}, remote "
            f"{', '.join(p.remote_ts)}, out SPI {p.outbound.spi:#010x}"
            f" {p.outbound.transform.name}, in SPI {p.inbound.spi:#010x} "
            f"{p.inbound.transform.name}"))
        self._events.append(Connected(TunnelInfo(
            kind="ipsec", server=p.peer, virtual_ip=p.local_ip, netmask=p.netmask,
            gateway=None, routes=[n for n in p.remote_ts if ":" not in n], mtu=p.mtu,
            dns=list(p.dns), cipher=p.outbound.transform.name, virtual_ip6=p.local_ip6,
            prefix6=p.prefix6, routes6=[n for n in p.remote_ts if ":" in n])))

    # -- erebus.session.Session ------------------------------------------------------------

    @property
    def established(self) -> bool:
        return self.esp.established

    @property
    def finished(self) -> bool:
        return self.esp.finished

    @property
    def answered(self) -> bool:
        return self.counters.packets_in > 0

    def receive_datagram(self, data, now: float):
        esp = self.esp
        packet = esp.receive_datagram(data, now)
        if esp.has_events:
            self._esp_events(now)
        return (packet,) if packet is not None else ()

    def datagrams_to_send(self, now: float) -> list[bytes]:
        esp = self.esp
        if esp.has_events:                # e.g. an SA that expired while sending
            self._esp_events(now)
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return self.esp.get_timer()

    def handle_timer(self, now: float) -> None:
        self._out += self.esp.handle_timer(now)

    def next_event(self):
        if self.esp.has_events:
            self._esp_events(0.0)
        return self._events.popleft() if self._events else None

    def close(self, now: float) -> None:
        self.esp.close(now)              # nobody to tell: Closed follows

    def connect_timeout(self) -> tuple[Stage, str]:
        return Stage.UNREACHABLE, "no answer from the peer"   # Connected comes at once

    # -- ESP's events --------------------------------------------------------------------

    def _esp_events(self, now: float) -> None:
        esp = self.esp
        while (event := esp.next_event()) is not None:
            if isinstance(event, SaExpired):
                esp.close(now)
                self._events.append(Failed(
                    Stage.SA_EXPIRED, f"{event.direction} SA {event.spi:#010x}: "
                    f"{event.reason}; manual SAs cannot be renewed (new keys on both ends)",
                    recoverable=False))
            elif isinstance(event, SaSoftLimit):
                self._events.append(Note(f"{event.message} (the session ends at the limit)",
                                         logging.WARNING))
            elif isinstance(event, Closed):
                if not any(isinstance(e, Failed) for e in self._events):
                    self._events.append(event)
            else:
                self._events.append(event)       # SequenceReset (a Notice)
