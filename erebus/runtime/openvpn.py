"""The asyncio shell around the sans-IO OpenVPN session.

It only moves bytes: packets from the transport (a UDP socket, or a TCP stream
with OpenVPN's 2-byte length prefix) go into the session, what the session wants
sent goes out, and one timer handle follows the session's next deadline.  Inbound
IP packets go to the receiver the network stack set; outbound ones come in through
:meth:`OpenVPNTunnel.send_packet`.

:meth:`OpenVPNTunnel.connect` tries the profile's remotes in order (names resolved
again every time); :meth:`OpenVPNTunnel.reconnect` starts a new session after the
old one ended (ping-restart, RESTART from the server, a lost TCP stream), with
the auth-token the server pushed, if any.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from typing import Callable

from ..errors import ConfigError, ErebusError, SessionError
from ..openvpn.config import Profile, Remote
from ..openvpn.session import ClientSession, Closed, Connected, Failed, ServerMessage, \
    SessionSettings, TlsEstablished
from ..openvpn.push import Route
from ..openvpn.static import StaticKeySession, StaticKeySettings
from ..tunnel import TunnelInfo
from .ratelimit import DropReporter
from .retry import with_backoff
from .shell import LinkShell
from .udp import BatchedUdpLink

log = logging.getLogger("erebus.tunnel")

# Session failures after which a new session may well succeed.
RECOVERABLE = frozenset({"ping-restart", "restart", "unreachable", "tls", "push-timeout",
                         "renegotiation", "connection-lost", "resolve", "timeout"})


def session_settings(profile: Profile) -> SessionSettings:
    """The session's view of a profile."""
    tls = profile.tls_settings()
    ciphers = list(profile.data_ciphers)
    # data-ciphers-fallback only: 2.6 ignores 'cipher' for negotiation (options.c)
    return SessionSettings(tls=tls, data_ciphers=ciphers,
                           fallback_cipher=profile.data_ciphers_fallback,
                           auth=profile.auth, username=profile.username,
                           password=profile.password, tun_mtu=profile.tun_mtu,
                           hand_window=float(profile.hand_window), ping=profile.ping,
                           ping_restart=profile.ping_restart,
                           replay_window=profile.replay_window,
                           reneg_sec=profile.reneg_sec, reneg_bytes=profile.reneg_bytes,
                           tls_auth=(profile.tls_auth_key, profile.tls_auth_direction,
                                     "SHA1" if profile.auth == "none" else profile.auth)
                           if profile.tls_auth_key is not None else None,
                           tls_crypt=profile.tls_crypt_key, compression=profile.compression,
                           allow_compression=profile.allow_compression)


# What a dropped packet was, per counter of the session (Counters, StaticCounters): a
# warning when someone on the path may be sending it, info when it happens anyway.
DROP_KINDS = {
    "dropped_data_auth": (logging.WARNING, "a data packet that failed authentication "
                          "(corrupted or forged)"),
    "dropped_decrypt": (logging.WARNING, "a data packet that does not decrypt"),
    "dropped_replay": (logging.WARNING, "a replayed or too old packet"),
    "dropped_malformed": (logging.WARNING, "a malformed packet (or a control packet "
                          "failing the tls-auth/tls-crypt check)"),
    "dropped_session": (logging.INFO, "a packet of another session or key id"),
    "dropped_before_established": (logging.INFO, "a data packet before the session "
                                   "was established"),
}


# -- links: how datagrams reach the server ----------------------------------------------

class _TcpLink(asyncio.Protocol):
    """OpenVPN over TCP: every packet prefixed by its 16-bit big-endian length."""

    proto = "tcp-client"
    MAX_PACKET = 65535

    def __init__(self, tunnel: "OpenVPNTunnel"):
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            (length,) = struct.unpack_from("!H", buf, pos)
            if n - pos - 2 < length:
                break
            self.tunnel._on_datagram(bytes(buf[pos + 2:pos + 2 + length]))
            pos += 2 + length
            if self.closed:
                return
        if pos:
            del buf[:pos]

    def connection_lost(self, exc) -> None:
        if not self.closed:
            self.closed = True
            self.tunnel._on_link_lost(exc)

    def send(self, datagram: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(struct.pack("!H", len(datagram)) + datagram)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


# -- the tunnel ---------------------------------------------------------------------------

class OpenVPNTunnel(LinkShell):
    """One OpenVPN client session at a time, as a :class:`erebus.tunnel.Tunnel`."""

    def __init__(self, profile: Profile, *, pcap=None, session_factory=None):
        self.profile = profile
        self.warnings: list[str] = profile.warnings
        self.pcap = pcap
        self.info: TunnelInfo | None = None
        self.session = None
        self._session_factory = session_factory or self._new_session
        # built here, once: a profile OpenSSL refuses fails before any socket exists
        self._tls_context = profile.tls_context() if session_factory is None \
            and profile.static_key is None else None
        self._receiver: Callable[[bytes], None] | None = None
        self._link = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connected: asyncio.Future | None = None
        self._done: asyncio.Future | None = None
        self._local = ("0.0.0.0", 0)
        self._remote = ("0.0.0.0", 0)
        self._server_name = ""
        self._proto = "udp"
        self.auth_token: str | None = None
        self.sessions = 0
        self.dropped_down = 0
        self.datagrams_in = self.datagrams_out = 0
        self._drops = DropReporter(log, DROP_KINDS)

    def _new_session(self, now: float, token: str | None):
        p = self.profile
        if p.static_key is not None:
            return StaticKeySession(StaticKeySettings(
                key=p.static_key, direction=p.static_direction, cipher=p.cipher,
                auth=p.auth, local_ip=p.ifconfig[0], remote_ip=p.ifconfig[1],
                tun_mtu=p.tun_mtu, ping=p.ping, ping_restart=p.ping_restart,
                replay_window=p.replay_window,
                routes=[Route(net, mask) for net, mask in p.routes], dns=list(p.dns)), now)
        return ClientSession(self._settings(token), now, tls_context=self._tls_context)

    def _settings(self, token: str | None) -> SessionSettings:
        settings = session_settings(self.profile)
        settings.auth_token = token
        settings.proto = self._proto
        return settings

    # -- Tunnel interface ------------------------------------------------------------------

    def send_packet(self, packet: bytes) -> None:
        s = self.session
        if s is None or not s.established or self._link is None:
            self.dropped_down += 1
            return
        self._inner_out(packet)
        datagram = s.send_ip(packet, self._loop.time())
        if datagram is not None:            # None: no packet id left, dropped and counted
            self._send(datagram)

    @property
    def up(self) -> bool:
        return self.session is not None and self.session.established

    async def close(self) -> None:
        s = self.session
        if s is not None and not s.finished and self._link is not None:
            now = self._loop.time()
            for datagram in s.close(now):
                self._send(datagram)
            self._step(now)
            if not s.finished:
                try:
                    await asyncio.wait_for(asyncio.shield(self._done), 3.0)
                except (asyncio.TimeoutError, ErebusError):
                    pass
        if s is not None:
            self._log_counters(log)
        self._teardown()

    # -- connecting ------------------------------------------------------------------------

    async def connect(self, timeout: float | None = None) -> TunnelInfo:
        """Try the profile's remotes in order; the first session that comes up wins."""
        errors: list[SessionError] = []
        remotes = self.profile.remotes
        for i, remote in enumerate(remotes):
            try:
                return await asyncio.wait_for(self._connect_one(remote), timeout)
            except asyncio.TimeoutError:
                self._teardown()
                stage = self._timeout_stage()
                errors.append(SessionError(stage, f"{remote.host}:{remote.port}: timed out "
                                           f"after {timeout:g} s ({self._timeout_hint(stage)})"))
            except SessionError as exc:
                self._teardown()
                errors.append(exc)
                if exc.stage not in RECOVERABLE:
                    raise        # a server answered and refused: another remote won't help
            if i + 1 < len(remotes):
                log.warning("%s; trying the next remote", errors[-1])
        raise errors[-1]

    async def reconnect(self, *, timeout: float | None = None, attempts: int | None = None,
                        stop: asyncio.Event | None = None) -> TunnelInfo:
        """New sessions with backoff (1, 2, 4 ... 60 s) until one comes up.  Only
        failures that another try can cure are retried."""
        if self.session is not None:
            self._log_counters(log, f"session {self.sessions} counters")
        self._teardown()
        info = await with_backoff(lambda: self.connect(timeout=timeout), RECOVERABLE,
                                  attempts=attempts, stop=stop)
        log.info("reconnected (session %d)", self.sessions)
        return info

    def _timeout_stage(self) -> str:
        s = self.session
        if s is None or s.remote_session_id is None:
            return "unreachable"
        return {"tls-handshake": "tls", "key-exchange": "tls",
                "push-request-sent": "push-timeout"}.get(s.state.value, "timeout")

    def _timeout_hint(self, stage: str) -> str:
        if stage == "unreachable":
            wrap = getattr(self.profile, "tls_wrap", None)
            if wrap:
                return (f"no answer from the server; with {wrap}, a wrong key or "
                        "key-direction makes the server drop every packet silently")
            return "no answer from the server"
        return stage

    async def _connect_one(self, remote: Remote) -> TunnelInfo:
        loop = self._loop = asyncio.get_running_loop()
        host, port, proto = remote.host, remote.port, remote.proto
        kind = socket.SOCK_STREAM if proto == "tcp-client" else socket.SOCK_DGRAM
        try:
            infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=kind)
        except OSError as exc:
            raise SessionError("resolve", f"cannot resolve {host}: {exc}") from None
        addr = infos[0][4]
        self._server_name = f"{host}:{port}"
        self._proto = proto
        log.info("connecting to %s (%s:%d, %s)", self._server_name, addr[0], addr[1], proto)
        if proto == "tcp-client":
            try:
                _, self._link = await loop.create_connection(lambda: _TcpLink(self), *addr)
            except OSError as exc:
                raise SessionError("unreachable", f"{self._server_name}: TCP connect "
                                   f"failed: {exc.strerror or exc}") from None
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.connect(addr)
            except OSError as exc:
                sock.close()
                raise SessionError("unreachable", f"{self._server_name}: "
                                   f"{exc.strerror or exc}") from None
            self._link = BatchedUdpLink(
                sock, loop, on_datagram=lambda data: self._on_datagram(data, batch=True),
                on_error=self._on_link_error, on_batch_end=self._end_batch)
        sock = self._link.transport.get_extra_info("socket")
        self._local = sock.getsockname()[:2]
        self._remote = addr[:2]
        self._connected = loop.create_future()
        self._done = loop.create_future()
        self.sessions += 1
        self.session = self._session_factory(loop.time(), self.auth_token)
        self._step(loop.time())
        return await asyncio.shield(self._connected)

    # -- the pump --------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, batch: bool = False) -> None:
        """One packet from the server; with ``batch`` the caller calls _end_batch()
        once after the last of a burst (timers and sends are done once for all)."""
        s = self.session
        if s is None:
            return
        self._outer_in(data)
        now = self._loop.time()
        for packet in s.receive_datagram(data, now):
            self._deliver(packet)
        if not batch:
            self._step(now)

    def _end_batch(self) -> None:
        if self.session is not None:
            self._step(self._loop.time())

    def _on_link_error(self, exc: Exception) -> None:
        s = self.session
        log.debug("socket error: %s", exc)
        if getattr(exc, "errno", None) not in (errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                               errno.ENETUNREACH):
            return                  # e.g. ENOBUFS: a lost datagram, retransmitted anyway
        if s is not None and s.remote_session_id is None and self._connected \
                and not self._connected.done():
            self._connected.set_exception(SessionError(
                "unreachable", f"{self._server_name}: {exc.strerror or exc} (nothing "
                "answers on that port)"))

    def _on_link_lost(self, exc) -> None:
        """The TCP stream to the server ended: the session is over."""
        reason = f"{self._server_name}: the TCP connection to the server was lost" + (
            f" ({exc})" if exc else " (closed by the server)")
        self._end(SessionError("connection-lost", reason))

    def _on_timer(self) -> None:
        self._timer = None
        s = self.session
        if s is None:
            return
        now = self._loop.time()
        for datagram in s.handle_timer(now):
            self._send(datagram)
        self._step(now)

    def _step(self, now: float) -> None:
        """Send what is due, act on events, re-arm the timer."""
        s = self.session
        for datagram in s.datagrams_to_send(now):
            self._send(datagram)
        self._check_drops()
        while (event := s.next_event()) is not None:
            self._on_event(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = s.get_timer()
        if deadline is not None and self._link is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_event(self, event) -> None:
        if isinstance(event, TlsEstablished):
            log.info("TLS %s (%s) with %s", event.version, event.cipher, event.peer_subject)
        elif isinstance(event, Connected):
            p = event.options
            if p.auth_token:
                self.auth_token = p.auth_token
            mtu = p.tun_mtu or self.profile.tun_mtu
            self.info = TunnelInfo(
                kind="openvpn", server=self._server_name, virtual_ip=p.virtual_ip,
                netmask=p.netmask, gateway=p.gateway, routes=[r.cidr for r in p.routes],
                mtu=mtu, dns=list(p.dns), cipher=event.cipher,
                setup_ms=round(event.setup_time * 1000, 1))
            log.info("connected to %s: virtual IP %s/%s, cipher %s", self._server_name,
                     p.virtual_ip, p.netmask, event.cipher)
            if not self._connected.done():
                self._connected.set_result(self.info)
        elif isinstance(event, Failed):
            self._end(SessionError(event.stage, f"{self._server_name}: {event.message}"))
        elif isinstance(event, Closed):
            log.info("session closed: %s", event.reason)
            if not self._done.done():
                self._done.set_result(event.reason)
        elif isinstance(event, ServerMessage):
            log.info("server says: %s", event.text)

    def _end(self, error: SessionError) -> None:
        log.info("%s", error)                  # the caller reports it
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(error)
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)
            self._done.exception()            # retrieved: nobody has to await it
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._link is not None:
            self._link.close()
            self._link = None

    async def wait_closed(self) -> str:
        """Until the session ends; raises the SessionError that ended it, if one did."""
        return await asyncio.shield(self._done)
