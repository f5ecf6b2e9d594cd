"""The asyncio shell around :class:`erebus.openvpn.session.ClientSession`.

It only moves bytes: datagrams from the UDP socket go into the session, what
the session wants sent goes out, and one timer handle follows the session's
next deadline.  Inbound IP packets go to the receiver the network stack set;
outbound ones come in through :meth:`OpenVPNTunnel.send_packet`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from typing import Callable

from ..errors import ErebusError, SessionError
from ..openvpn.config import Profile
from ..openvpn.session import ClientSession, Closed, Connected, Failed, ServerMessage, \
    SessionSettings, TlsEstablished
from ..openvpn.tls import TlsSettings
from ..tunnel import TunnelInfo

log = logging.getLogger("erebus.tunnel")


def session_settings(profile: Profile) -> SessionSettings:
    """The session's view of a profile."""
    tls = TlsSettings(ca=profile.ca, cert=profile.cert, key=profile.key,
                      extra_certs=profile.extra_certs, remote_cert_tls=profile.remote_cert_tls,
                      verify_x509_name=profile.verify_x509_name,
                      tls_version_min=profile.tls_version_min,
                      tls_version_max=profile.tls_version_max,
                      tls_cipher=profile.tls_cipher, tls_ciphersuites=profile.tls_ciphersuites)
    ciphers = list(profile.data_ciphers)
    fallback = profile.data_ciphers_fallback or profile.cipher
    return SessionSettings(tls=tls, data_ciphers=ciphers, fallback_cipher=fallback,
                           auth=profile.auth, username=profile.username,
                           password=profile.password, tun_mtu=profile.tun_mtu,
                           hand_window=float(profile.hand_window), ping=profile.ping,
                           ping_restart=profile.ping_restart,
                           replay_window=profile.replay_window)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: "OpenVPNTunnel"):
        self.owner = owner

    def datagram_received(self, data: bytes, addr) -> None:
        self.owner._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.owner._on_socket_error(exc)


class OpenVPNTunnel:
    """One OpenVPN session over UDP, as a :class:`erebus.tunnel.Tunnel`."""

    def __init__(self, profile: Profile, *, pcap=None):
        self.profile = profile
        self.pcap = pcap
        self.info: TunnelInfo | None = None
        self.session: ClientSession | None = None
        self._receiver: Callable[[bytes], None] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connected: asyncio.Future | None = None
        self._done: asyncio.Future | None = None
        self._local = ("0.0.0.0", 0)
        self._remote = ("0.0.0.0", 0)
        self._server_name = ""
        self.dropped_down = 0
        self.datagrams_in = self.datagrams_out = 0

    # -- Tunnel interface ------------------------------------------------------------------

    def set_receiver(self, receiver: Callable[[bytes], None]) -> None:
        self._receiver = receiver

    def send_packet(self, packet: bytes) -> None:
        s = self.session
        if s is None or not s.established:
            self.dropped_down += 1
            return
        if self.pcap:
            self.pcap.write_inner(packet, time.time(), inbound=False)
        self._send(s.send_ip(packet, self._loop.time()))

    async def close(self) -> None:
        s = self.session
        if s is not None and not s.finished:
            now = self._loop.time()
            for datagram in s.close(now):
                self._send(datagram)
            self._step(now)
            if not s.finished:
                try:
                    await asyncio.wait_for(asyncio.shield(self._done), 3.0)
                except (asyncio.TimeoutError, ErebusError):
                    pass
        self._teardown()

    # -- connecting ------------------------------------------------------------------------

    async def connect(self, timeout: float | None = None) -> TunnelInfo:
        """Try the profile's remotes in order; the first session that comes up wins."""
        errors: list[SessionError] = []
        for i, remote in enumerate(self.profile.remotes):
            try:
                return await asyncio.wait_for(self._connect_one(remote.host, remote.port),
                                              timeout)
            except asyncio.TimeoutError:
                self._teardown()
                stage = self._timeout_stage()
                errors.append(SessionError(stage, f"{remote.host}:{remote.port}: timed out "
                                           f"after {timeout:g} s ({stage})"))
            except SessionError as exc:
                self._teardown()
                errors.append(exc)
                if exc.stage not in ("unreachable", "resolve"):
                    raise        # a server answered and refused: another remote won't help
            if i + 1 < len(self.profile.remotes):
                log.warning("%s; trying the next remote", errors[-1])
        raise errors[-1]

    def _timeout_stage(self) -> str:
        s = self.session
        if s is None or s.remote_session_id is None:
            return "unreachable"
        return {"tls-handshake": "tls", "key-exchange": "tls",
                "push-request-sent": "push-timeout"}.get(s.state.value, s.state.value)

    async def _connect_one(self, host: str, port: int) -> TunnelInfo:
        loop = self._loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, family=socket.AF_INET,
                                           type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise SessionError("resolve", f"cannot resolve {host}: {exc}") from None
        addr = infos[0][4]
        self._server_name = f"{host}:{port}"
        log.info("connecting to %s (%s:%d, udp)", self._server_name, *addr)
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), remote_addr=addr)
        sock = self._transport.get_extra_info("socket")
        self._local = sock.getsockname()[:2]
        self._remote = addr[:2]
        self._connected = loop.create_future()
        self._done = loop.create_future()
        self.session = ClientSession(session_settings(self.profile), loop.time())
        self._step(loop.time())
        return await asyncio.shield(self._connected)

    # -- the pump --------------------------------------------------------------------------

    def _send(self, datagram: bytes) -> None:
        if self._transport is None:
            return
        self.datagrams_out += 1
        if self.pcap:
            self.pcap.write_outer(datagram, self._local, self._remote, time.time(),
                                  inbound=False)
        self._transport.sendto(datagram)

    def _on_datagram(self, data: bytes, addr) -> None:
        s = self.session
        if s is None:
            return
        self.datagrams_in += 1
        if self.pcap:
            self.pcap.write_outer(data, self._remote, self._local, time.time(), inbound=True)
        now = self._loop.time()
        packets = s.receive_datagram(data, now)
        if packets:
            receiver = self._receiver
            for packet in packets:
                if self.pcap:
                    self.pcap.write_inner(packet, time.time(), inbound=True)
                if receiver is not None:
                    receiver(packet)
        self._step(now)

    def _on_socket_error(self, exc: Exception) -> None:
        s = self.session
        log.debug("socket error: %s", exc)
        if not isinstance(exc, (ConnectionRefusedError, OSError)) or getattr(
                exc, "errno", None) not in (errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                            errno.ENETUNREACH):
            return                  # e.g. ENOBUFS: a lost datagram, retransmitted anyway
        if s is not None and s.remote_session_id is None and self._connected \
                and not self._connected.done():
            self._connected.set_exception(SessionError(
                "unreachable", f"{self._server_name}: {exc.strerror or exc} (nothing "
                "answers on that port)"))

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
        while (event := s.next_event()) is not None:
            self._on_event(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = s.get_timer()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_event(self, event) -> None:
        if isinstance(event, TlsEstablished):
            log.info("TLS %s (%s) with %s", event.version, event.cipher, event.peer_subject)
        elif isinstance(event, Connected):
            p = event.options
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
            error = SessionError(event.stage, f"{self._server_name}: {event.message}")
            log.info("%s", error)          # the caller reports it
            if not self._connected.done():
                self._connected.set_exception(error)
            if not self._done.done():
                self._done.set_exception(error)
                self._done.exception()      # retrieved: nobody has to await it
        elif isinstance(event, Closed):
            log.info("session closed: %s", event.reason)
            if not self._done.done():
                self._done.set_result(event.reason)
        elif isinstance(event, ServerMessage):
            log.info("server says: %s", event.text)

    def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def wait_closed(self) -> str:
        """Until the session ends; raises the SessionError that ended it, if one did."""
        return await asyncio.shield(self._done)
