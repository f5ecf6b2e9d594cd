"""The asyncio shell around :class:`erebus.ipsec.ike.IkeInitiator` and
:class:`erebus.ipsec.esp.EspSession`: an IKEv2 client tunnel.

One non-blocking UDP socket per IKE SA (read in batches by
:class:`erebus.runtime.udp.BatchedUdpLink`): IKE_SA_INIT goes to the responder's
``remote_port`` (500); then the socket is connected again, from the same local
port, to ``natt_port`` (4500), where IKE travels behind the non-ESP marker and ESP
is UDP-encapsulated (RFC 3948).  Datagrams from 4500: four zero bytes, IKE; 0xFF,
a NAT keepalive; anything else, ESP for the EspSession.

:meth:`IkeTunnel.connect` resolves ``remote_addrs`` and tries them in order;
:meth:`IkeTunnel.reconnect` starts a new IKE SA (new socket) with backoff after the
old one ended; :meth:`IkeTunnel.close` deletes the IKE SA (and waits briefly for
the responder's answer).  The surface is the one of
:class:`erebus.runtime.openvpn.OpenVPNTunnel` and :class:`erebus.ipsec.tunnel.EspTunnel`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Callable

from ..errors import ErebusError, SessionError
from ..runtime.ratelimit import DropReporter
from ..runtime.retry import with_backoff
from ..runtime.shell import LinkShell
from ..runtime.udp import BatchedUdpLink
from ..tunnel import TunnelInfo
from .esp import EspSession, SaExpired, SaSoftLimit
from .ike import (ChildDeleted, ChildRekeyed, Closed, Connected, Failed, IkeInitiator,
                  IkeRekeyed, NattSwitched, NON_ESP_MARKER)
from .ikeprofile import IkeProfile
from .tunnel import DROP_KINDS

__all__ = ["IkeTunnel", "RECOVERABLE"]

log = logging.getLogger("erebus.ipsec")

# IKE failures after which a new IKE SA may well succeed (as erebus.runtime.openvpn's).
RECOVERABLE = frozenset({"unreachable", "timeout", "restart", "resolve", "sa-expired",
                         "connection-lost"})


class IkeTunnel(LinkShell):
    """An IKEv2 client (one IKE SA, one CHILD_SA) as an :class:`erebus.tunnel.Tunnel`."""

    def __init__(self, profile: IkeProfile, *, pcap=None, initiator_factory=None):
        self.profile = profile
        self.warnings: list[str] = profile.warnings
        self.pcap = pcap
        self.info: TunnelInfo | None = None
        self.ike: IkeInitiator | None = None
        self.session: EspSession | None = None
        self._initiator_factory = initiator_factory or IkeInitiator
        self._receiver: Callable[[bytes], None] | None = None
        self._link: BatchedUdpLink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connected: asyncio.Future | None = None
        self._done: asyncio.Future | None = None
        self._local = ("0.0.0.0", 0)
        self._remote = ("0.0.0.0", 0)
        self._server_name = ""
        self.sessions = 0
        self.dropped_down = 0
        self.link_errors = 0
        self.rekeys = 0
        self.ike_rekeys = 0
        self._warned = False             # the profile's warnings are logged once
        self._drops = DropReporter(log, DROP_KINDS)    # ESP drops, as the manual-SA tunnel

    @property
    def counters(self):
        return self.session.counters if self.session is not None else None

    @property
    def up(self) -> bool:
        return self._link is not None and self.session is not None \
            and self.session.established and self.ike is not None and self.ike.established

    # -- Tunnel interface ------------------------------------------------------------------

    def send_packet(self, packet: bytes) -> None:
        s = self.session
        link = self._link
        if s is None or link is None:
            self.dropped_down += 1
            return
        datagram = s.send_ip(packet, self._loop.time())
        if datagram is None:
            if s.has_events:
                self._esp_events()
            return
        self._inner_out(packet)
        self._send(datagram)

    async def close(self) -> None:
        ike = self.ike
        if ike is not None and not ike.finished and self._link is not None:
            ike.close(self._loop.time())
            self._step()
            if not ike.finished and self._done is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._done), 3.0)
                except (asyncio.TimeoutError, ErebusError):
                    pass
        if self._done is not None and not self._done.done():
            self._done.set_result("closed")
        if self.session is not None:
            self._log_counters(log)
        self._teardown()

    async def wait_closed(self) -> str:
        """Until the IKE SA ends: "closed" after :meth:`close`; raises the SessionError
        that ended it otherwise."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._done)

    # -- connecting ------------------------------------------------------------------------

    async def connect(self, timeout: float | None = None) -> TunnelInfo:
        """Try ``remote_addrs`` in order; the first IKE SA that comes up wins."""
        p = self.profile
        if not self._warned:
            self._warned = True
            for warning in p.warnings:
                log.warning("%s", warning)
        if timeout is None:
            timeout = p.connect_timeout
        errors: list[SessionError] = []
        for i, host in enumerate(p.remote_addrs):
            try:
                return await asyncio.wait_for(self._connect_one(host), timeout)
            except asyncio.TimeoutError:
                self._teardown()
                stage = "unreachable" if self.ike is None or self.ike.keys is None \
                    else "timeout"
                where = self.ike.state.value if self.ike else "not started"
                errors.append(SessionError(stage, f"{host}:{p.remote_port}: no IKE SA after "
                                           f"{timeout:g} s ({where})"))
            except SessionError as exc:
                self._teardown()
                errors.append(exc)
                if exc.stage not in RECOVERABLE:
                    raise
            if i + 1 < len(p.remote_addrs):
                log.warning("%s; trying the next address", errors[-1])
        if not errors:
            raise SessionError("config", f"{p.path}: no remote_addrs")
        raise errors[-1]

    async def reconnect(self, *, timeout: float | None = None, attempts: int | None = None,
                        stop: asyncio.Event | None = None) -> TunnelInfo:
        """New IKE SAs with backoff (1, 2, 4 ... 60 s) until one comes up.  Only
        failures that another try can cure are retried."""
        self._teardown()
        info = await with_backoff(lambda: self.connect(timeout=timeout), RECOVERABLE,
                                  attempts=attempts, stop=stop)
        log.info("reconnected (IKE SA %d)", self.sessions)
        return info

    async def _connect_one(self, host: str) -> TunnelInfo:
        p = self.profile
        loop = self._loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, p.remote_port, family=socket.AF_INET,
                                           type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise SessionError("resolve", f"cannot resolve {host}: {exc}") from None
        addr = infos[0][4][:2]
        self._server_name = f"{host}"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            if p.local_port:
                sock.bind(("0.0.0.0", p.local_port))
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            raise SessionError("unreachable", f"{host}: {exc.strerror or exc}") from None
        self._link = BatchedUdpLink(sock, loop, on_datagram=self._on_datagram,
                                    on_error=self._on_link_error,
                                    on_batch_end=self._step)
        self._local = sock.getsockname()[:2]
        self._remote = addr
        self._connected = loop.create_future()
        if self._done is None or self._done.done():
            self._done = loop.create_future()
        self.session = None
        self.sessions += 1
        self.link_errors = 0
        log.info("IKEv2 to %s (%s:%d) from %s:%d", host, addr[0], addr[1], *self._local)
        self.ike = self._initiator_factory(p, loop.time(), local_addr=self._local,
                                           remote_addr=addr)
        self._step()
        return await asyncio.shield(self._connected)

    # -- the pump --------------------------------------------------------------------------

    def _on_datagram(self, data: bytes) -> None:
        ike = self.ike
        if ike is None:
            return
        self._outer_in(data)
        now = self._loop.time()
        if not ike.natt or data[:4] == NON_ESP_MARKER:
            ike.receive_datagram(data, now)     # _step() follows at the end of the batch
            return
        s = self.session
        if s is None:
            return
        packet = s.receive_datagram(data, now)
        if packet is not None:
            self._deliver(packet)
        if s.has_events:
            self._esp_events()

    def _on_link_error(self, exc: Exception) -> None:
        self.link_errors += 1
        code = getattr(exc, "errno", None)
        if code in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
            if self.link_errors == 1:
                log.warning("%s: %s (is an IKEv2 responder listening there?)",
                            self._server_name, exc.strerror or exc)
            if self._connected is not None and not self._connected.done() and \
                    self.ike is not None and self.ike.keys is None and self.link_errors >= 3:
                self._end(SessionError("unreachable", f"{self._server_name}: "
                                       f"{exc.strerror or exc} (nothing answers on UDP "
                                       f"{self._remote[1]})"))
        else:
            log.debug("socket error: %s", exc)

    def _on_timer(self) -> None:
        self._timer = None
        ike = self.ike
        if ike is None or self._link is None:
            return
        now = self._loop.time()
        ike.handle_timer(now)
        s = self.session
        if s is not None:
            for datagram in s.handle_timer(now):
                self._send(datagram)
        self._step()

    def _step(self) -> None:
        """Act on events, send what is due (to the port the initiator says), re-arm."""
        ike = self.ike
        if ike is None or self._link is None:
            return
        now = self._loop.time()
        while (event := ike.next_event()) is not None:
            self._on_event(event)
            if self._link is None:
                return
        if ike.remote_port != self._remote[1]:
            self._switch_port(ike.remote_port)
        for datagram in ike.datagrams_to_send(now):
            self._send(datagram)
        self._check_drops()
        self._arm_timer()

    def _switch_port(self, port: int) -> None:
        addr = (self._remote[0], port)
        try:
            self._link.sock.connect(addr)
        except OSError as exc:
            self._end(SessionError("unreachable", f"{self._server_name}: cannot switch to "
                                   f"UDP {port}: {exc.strerror or exc}"))
            return
        self._remote = addr
        log.debug("NAT-T: IKE and ESP now go to %s:%d", *addr)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadlines = [d for d in (self.ike.get_timer() if self.ike else None,
                                 self.session.get_timer() if self.session else None)
                     if d is not None]
        if deadlines and self._link is not None:
            self._timer = self._loop.call_at(min(deadlines), self._on_timer)

    def _on_event(self, event) -> None:
        p = self.profile
        if isinstance(event, NattSwitched):
            log.debug("IKE_SA_INIT done; moving to UDP %d", event.port)
        elif isinstance(event, Connected):
            now = self._loop.time()
            local_ip = event.virtual_ip or (event.local_ts[0].split("/")[0]
                                            if event.local_ts else self._local[0])
            self.session = EspSession(event.outbound, event.inbound, local_ip=local_ip,
                                      remote_ts=event.remote_ts, now=now)
            self.info = TunnelInfo(
                kind="ipsec", server=f"{self._server_name}:{p.remote_port}",
                virtual_ip=local_ip, netmask="255.255.255.255", gateway=None,
                routes=list(event.remote_ts), mtu=p.mtu, dns=list(event.dns),
                cipher=event.esp_transform, setup_ms=round(event.setup_time * 1000, 1))
            log.info("IKE SA with %s (%s): virtual IP %s, remote %s, ESP %s, DNS %s",
                     event.remote_id, event.ike_suite, local_ip, ", ".join(event.remote_ts),
                     event.esp_transform, ", ".join(event.dns) or "none")
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(self.info)
        elif isinstance(event, ChildRekeyed):
            s = self.session
            if s is not None:
                s.inbound[event.inbound.spi] = event.inbound
                s.outbound = event.outbound
            self.rekeys += 1
        elif isinstance(event, IkeRekeyed):
            self.ike_rekeys += 1
            log.info("IKE SA rekeyed (%s): SPIs %s/%s", "by us" if event.initiator
                     else "by the responder", event.spi_i.hex(), event.spi_r.hex())
        elif isinstance(event, ChildDeleted):
            s = self.session
            if s is not None:
                s.inbound.pop(event.inbound_spi, None)
        elif isinstance(event, Failed):
            self._end(SessionError(event.stage, f"{self._server_name}: {event.message}"))
        elif isinstance(event, Closed):
            log.info("IKE SA closed: %s", event.reason)
            if self._done is not None and not self._done.done():
                self._done.set_result(event.reason)

    def _esp_events(self) -> None:
        s = self.session
        while (event := s.next_event()) is not None:
            if isinstance(event, SaExpired):
                self._end(SessionError("sa-expired", f"{self._server_name}: "
                                       f"{event.direction} SA {event.spi:#010x}: "
                                       f"{event.reason}"))
            elif isinstance(event, SaSoftLimit):
                log.warning("%s SA %#010x: %s", event.direction, event.spi, event.reason)

    def _end(self, error: SessionError) -> None:
        log.info("%s", error)
        if self._link is not None and self.ike is not None:
            for datagram in self.ike.datagrams_to_send(self._loop.time()):
                self._send(datagram)         # a last DELETE, an answer to the responder
        if self.session is not None and not self.session.finished:
            self.session.close(self._loop.time())
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(error)
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)
            self._done.exception()
        self._teardown()

    def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._link is not None:
            self._link.close()
            self._link = None
