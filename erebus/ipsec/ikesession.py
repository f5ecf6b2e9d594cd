"""IKEv2 and the ESP SAs it negotiates, as one :class:`erebus.session.Session`
(sans-IO).

:class:`IkeSession` owns an :class:`~erebus.ipsec.ike.IkeInitiator` and, once
IKE_AUTH is done, the :class:`~erebus.ipsec.esp.EspSession` of its CHILD_SA.  It
demultiplexes what arrives on the one UDP socket (after NAT-T: the non-ESP marker
means IKE, anything else is ESP), installs the SAs of a CHILD_SA rekey and drops the
old inbound SA when the initiator deletes it, so nothing outside edits the SAs.
The initiator's events become erebus.session's: Connected (with the TunnelInfo),
Failed, Closed, Rekeyed, PathChanged (IKE_SA_INIT done: to UDP 4500), Notices.
An SA that reaches a hard limit ends the session as recoverable ("sa-expired"), with
a DELETE of the IKE SA: a new IKE SA brings new keys.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque

from ..session import Closed, Connected, Failed, Note, PathChanged, Rekeyed, Stage, \
    TunnelInfo
from .esp import EspCounters, EspSession, SaExpired
from .ike import (ChildDeleted, ChildRekeyed, IkeInitiator, IkeRekeyed, NattSwitched,
                  NON_ESP_MARKER)
from .ike import Connected as ChildUp
from .ikeprofile import IkeProfile

__all__ = ["IkeSession"]


class IkeSession:
    """One IKE SA with its CHILD_SA; see the module's docstring."""

    def __init__(self, profile: IkeProfile, now: float, *, rng=os.urandom,
                 local_addr: tuple = ("0.0.0.0", 0), remote_addr: tuple = ("0.0.0.0", 500),
                 wall_clock=time.time, initiator_factory=None):
        factory = initiator_factory or IkeInitiator
        kwargs = {} if initiator_factory else {"rng": rng, "wall_clock": wall_clock}
        self.profile = profile
        self.ike = factory(profile, now, local_addr=local_addr, remote_addr=remote_addr,
                           **kwargs)
        self.local_addr = local_addr
        self.esp: EspSession | None = None
        self.counters = EspCounters()         # the ESP SA's, once there is one
        self.send_packet = self._no_sa
        self.child_rekeys = 0
        self._failed = False
        self._now = now
        self._events: deque = deque()
        self._out: list[bytes] = []

    # -- erebus.session.Session ------------------------------------------------------------

    @property
    def established(self) -> bool:
        esp = self.esp
        return esp is not None and esp.established and self.ike.established

    @property
    def finished(self) -> bool:
        return self._failed or self.ike.finished

    @property
    def answered(self) -> bool:
        return self.ike.keys is not None

    def receive_datagram(self, data, now: float):
        self._now = now
        ike = self.ike
        if not ike.natt or data[:4] == NON_ESP_MARKER:
            ike.receive_datagram(data, now)       # events follow in next_event
            return ()
        esp = self.esp
        if esp is None:
            return ()
        packet = esp.receive_datagram(data, now)
        if esp.has_events:
            self._esp_events()
        return (packet,) if packet is not None else ()

    def _no_sa(self, packet, now: float) -> None:
        return None                               # no CHILD_SA yet

    def datagrams_to_send(self, now: float) -> list[bytes]:
        self._now = now
        out = self.ike.datagrams_to_send(now)
        if self._out:
            out = self._out + out
            self._out = []
        return out

    def get_timer(self) -> float | None:
        if self.finished:
            return None
        a = self.ike.get_timer()
        b = self.esp.get_timer() if self.esp is not None else None
        if a is None or b is None:
            return a if b is None else b
        return min(a, b)

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.ike.handle_timer(now)
        if self.esp is not None:
            self._out += self.esp.handle_timer(now)

    def next_event(self):
        events = self._events
        while not events:
            event = self.ike.next_event()
            if event is None:
                if self.esp is not None and self.esp.has_events:
                    self._esp_events()
                    continue
                return None
            self._translate(event)
        return events.popleft()

    def close(self, now: float) -> None:
        self._now = now
        self.ike.close(now)                       # DELETE; Closed when confirmed

    def connect_timeout(self) -> tuple[Stage, str]:
        state = self.ike.state.value
        if self.ike.keys is None:
            return Stage.UNREACHABLE, f"no IKE SA: {state}"
        return Stage.TIMEOUT, f"no IKE SA: {state}"

    # -- the initiator's and ESP's events ---------------------------------------------------

    def _translate(self, event) -> None:
        events, p = self._events, self.profile
        if isinstance(event, NattSwitched):
            events.append(Note(f"IKE_SA_INIT done; moving to UDP {event.port}", logging.DEBUG))
            events.append(PathChanged(event.port))
        elif isinstance(event, ChildUp):
            routes = [n for n in event.remote_ts if ":" not in n]
            routes6 = [n for n in event.remote_ts if ":" in n]
            local4 = [n for n in event.local_ts if ":" not in n]
            local_ip = event.virtual_ip or (local4[0].split("/")[0] if local4
                                            else self.local_addr[0])
            vip6 = event.virtual_ip6
            self.esp = EspSession(event.outbound, event.inbound, local_ip=local_ip,
                                  local_ip6=vip6, remote_ts=event.remote_ts, now=self._now)
            self.counters = self.esp.counters
            self.send_packet = self.esp.send_packet       # the hot path: no wrapper
            for warning in event.warnings:
                events.append(Note(warning, logging.WARNING))
            ip6 = f" and {vip6}/{event.prefix6}" if vip6 else ""
            events.append(Note(
                f"IKE SA with {event.remote_id} ({event.ike_suite}): virtual IP {local_ip}"
                f"{ip6}, remote {', '.join(event.remote_ts)}, ESP {event.esp_transform}, DNS "
                f"{', '.join(event.dns) or 'none'}"))
            events.append(Connected(TunnelInfo(
                kind="ipsec", server="", virtual_ip=local_ip, netmask="255.255.255.255",
                gateway=None, routes=routes, mtu=p.mtu, dns=list(event.dns),
                cipher=event.esp_transform, setup_ms=round(event.setup_time * 1000, 1),
                virtual_ip6=vip6, prefix6=event.prefix6 if vip6 else None,
                routes6=routes6 if vip6 else [])))
        elif isinstance(event, ChildRekeyed):
            if self.esp is not None:
                self.esp.install(event.outbound, event.inbound)
            self.child_rekeys += 1
            events.append(Rekeyed("CHILD_SA", f"inbound SPI {event.inbound.spi:#010x}"))
        elif isinstance(event, ChildDeleted):
            if self.esp is not None:
                self.esp.retire_inbound(event.inbound_spi)
        elif isinstance(event, IkeRekeyed):
            by = "by us" if event.initiator else "by the responder"
            events.append(Note(f"IKE SA rekeyed ({by}): SPIs {event.spi_i.hex()}/"
                               f"{event.spi_r.hex()}"))
            events.append(Rekeyed("IKE SA"))
        elif isinstance(event, (Failed, Closed)):
            self._end_esp()
            events.append(event)
        else:
            events.append(event)

    def _esp_events(self) -> None:
        esp = self.esp
        while (event := esp.next_event()) is not None:
            if isinstance(event, SaExpired):
                self._failed = True
                self._end_esp()
                self.ike.close(self._now)         # DELETE the IKE SA: the responder
                                                  # need not wait for its DPD
                self._events.append(Failed(Stage.SA_EXPIRED, f"{event.direction} SA "
                                           f"{event.spi:#010x}: {event.reason}"))
            elif not isinstance(event, Closed):   # ESP closes with the IKE SA: no news
                self._events.append(event)        # SaSoftLimit (a Notice)

    def _end_esp(self) -> None:
        esp = self.esp
        if esp is not None and not esp.finished:
            esp.close(self._now)
