"""What is OpenVPN's in the one asyncio shell (erebus/runtime/tunnel.py): the
profile's remotes, a core per attempt (a TLS :class:`ClientSession`, or a
:class:`StaticKeySession` for 'secret'), the TCP framing (a 2-byte length before
every packet), and the names of the drops the session counts.

A new session after one ended (ping-restart, RESTART from the server, a lost TCP
stream) gets the auth-token the server pushed to the previous one, if any.  The
TLS context is built once, with the tunnel: a profile OpenSSL refuses fails before
any socket exists.

What a server asks of the user goes through one ``ask`` coroutine (the terminal, by
default, in a thread so the loop keeps running): before a new session
(:meth:`OpenVPNDriver.prepare`: a dynamic challenge's response, the credentials again
after AUTH_FAILED with auth-retry interact or after auth-nocache forgot them) and
during one (a CR_TEXT challenge, answered with CR_RESPONSE).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import socket
import struct
import time
from typing import Awaitable, Callable

from .. import credentials
from ..errors import ConfigError, SessionError
from ..openvpn.mtu import MssFix
from ..openvpn.profile import Profile
from ..openvpn.push import Route
from ..openvpn.session import ClientSession, CrTextRequested, SessionSettings
from ..openvpn.static import StaticKeySession, StaticKeySettings
from .retry import RetryPolicy
from .tunnel import CLOSE_WAIT, Endpoint, ShellTunnel

log = logging.getLogger("erebus.tunnel")


def session_settings(profile: Profile) -> SessionSettings:
    """The session's view of a profile."""
    tls = profile.tls_settings()
    ciphers = list(profile.data_ciphers)
    # data-ciphers-fallback only: 2.6 ignores 'cipher' for negotiation (options.c)
    return SessionSettings(tls=tls, data_ciphers=ciphers,
                           fallback_cipher=profile.data_ciphers_fallback,
                           cipher=profile.cipher, auth=profile.auth, username=profile.username,
                           password=profile.password, tun_mtu=profile.tun_mtu,
                           hand_window=float(profile.hand_window), ping=profile.ping,
                           ping_restart=profile.ping_restart,
                           replay_window=profile.replay_window,
                           reneg_sec=profile.reneg_sec, reneg_bytes=profile.reneg_bytes,
                           tls_auth=(profile.tls_auth_key, profile.tls_auth_direction,
                                     profile.auth)   # the reader refused auth none
                           if profile.tls_auth_key is not None else None,
                           tls_crypt=profile.tls_crypt_key,
                           tls_crypt_v2=(profile.tls_crypt_v2_key, profile.tls_crypt_v2_wkc)
                           if profile.tls_crypt_v2_key is not None else None,
                           compression=profile.compression,
                           allow_compression=profile.allow_compression,
                           mssfix=getattr(profile, "mssfix", None) or MssFix(),
                           exit_notify=getattr(profile, "explicit_exit_notify", 0) or 0,
                           auth_retry=getattr(profile, "auth_retry", "none"),
                           pull_filters=tuple(getattr(profile, "pull_filters", ())),
                           ifconfig_ipv6=getattr(profile, "ifconfig_ipv6", None),
                           routes_ipv6=tuple(getattr(profile, "routes_ipv6", ())),
                           route_ipv6_gateway=getattr(profile, "route_ipv6_gateway", None),
                           block_ipv6=getattr(profile, "block_ipv6", False))


# ask(text, echo, why) -> the user's answer; ConfigError when nobody can answer
Ask = Callable[[str, bool, str], Awaitable[str]]


def terminal_ask(terminal: "credentials.Terminal") -> Ask:
    """An Ask on ``terminal``, in a thread: the loop (and the local listeners) keep
    running while the user types."""
    async def ask(text: str, echo: bool, why: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(
            terminal.question, text, echo=echo, why=why))
    ask.available = terminal.available
    return ask


# What a dropped packet was, per counter of the session (Counters, StaticCounters): a
# warning when someone on the path may be sending it, info when it happens anyway.
DROP_KINDS = {
    "dropped_data_auth": (logging.WARNING, "a data packet that failed authentication "
                          "(corrupted or forged)"),
    "dropped_decrypt": (logging.WARNING, "a data packet that does not decrypt"),
    "dropped_replay": (logging.WARNING, "a replayed or too old packet"),
    "dropped_malformed": (logging.WARNING, "a malformed packet (or a control packet "
                          "failing the tls-auth/tls-crypt(-v2) check)"),
    "dropped_session": (logging.INFO, "a packet of another session or key id"),
    "dropped_before_established": (logging.INFO, "a data packet before the session "
                                   "was established"),
}


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- the TCP framing -----------------------------------------------------------------------

COALESCE_LIMIT = 64 * 1024     # framed bytes held for one write before it goes out anyway


class TcpFraming(asyncio.Protocol):
    """OpenVPN over TCP: every packet prefixed by its 16-bit big-endian length.

    Writes are coalesced: the frames sent in one event-loop pass are collected in one
    buffer (at most :data:`COALESCE_LIMIT` bytes: a bigger burst is written as it
    fills) and written once, by a callback the first send of the pass schedules with
    ``call_soon``, so a burst of packets is one ``send()`` system call, not one each."""

    def __init__(self, on_datagram: Callable[[bytes], None], on_batch_end: Callable[[], None],
                 on_lost: Callable[[Exception | None], None]):
        self._on_datagram = on_datagram
        self._on_batch_end = on_batch_end
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out = bytearray()          # frames of this pass, not yet written
        self._flush_handle: asyncio.Handle | None = None
        self.closed = False
        self.local = self.remote = ("0.0.0.0", 0)

    def redirect(self, port: int) -> None:
        raise OSError("a TCP stream cannot change its port")

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
            self._on_datagram(bytes(buf[pos + 2:pos + 2 + length]))
            pos += 2 + length
            if self.closed:
                return
        if pos:
            del buf[:pos]
            self._on_batch_end()

    def connection_lost(self, exc) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self.closed:
            self.closed = True
            self._on_lost(exc)

    def send(self, datagram: bytes) -> None:
        if self.transport is None or self.closed:
            return
        out = self._out
        out += struct.pack("!H", len(datagram))
        out += datagram
        if len(out) >= COALESCE_LIMIT:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what this pass framed (the callback send scheduled; also at close)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(self._out)     # copied by the transport only if it must wait
            self._out = bytearray()

    def close(self) -> None:
        if self.transport is not None:
            self.flush()                 # what the session said last goes out first
        self.closed = True
        if self.transport is not None:
            self.transport.close()


# -- the driver ----------------------------------------------------------------------------

class OpenVPNDriver:
    """OpenVPN for :class:`erebus.runtime.tunnel.ShellTunnel`."""

    log = log
    drop_kinds = DROP_KINDS
    refused_after = 1              # a refused port before the server answered: next remote
    refused_hint = ""

    def __init__(self, profile: Profile, *, session_factory=None, rng=os.urandom,
                 ask: Ask | None = None):
        self.profile = profile
        self.rng = rng
        self._session_factory = session_factory
        self.ask = ask if ask is not None else terminal_ask(credentials.Terminal())
        self._forgotten = False         # auth-nocache: what was asked is gone
        self._answering: asyncio.Task | None = None     # a CR_TEXT answer being asked
        # connect-retry n [max], connect-retry-max: as the stock client (init.c)
        first, most = getattr(profile, "connect_retry", None) or (1, 300)
        self.retry = RetryPolicy(float(first), float(most), 5)
        self.retry_attempts = getattr(profile, "connect_retry_max", None)
        # explicit-exit-notify N: the OCC exit is resent for N seconds before we go
        notify = max((getattr(r, "explicit_exit_notify", None) or 0
                      for r in getattr(profile, "remotes", ())), default=0)
        self.close_wait = max(CLOSE_WAIT, notify + 1.0)
        retry = getattr(profile, "resolv_retry", None)      # resolv-retry N (None: infinite)
        self.resolve_retry = float(retry) if retry is not None else None
        # built here, once: a profile OpenSSL refuses fails before any socket exists
        self._tls_context = profile.tls_context() if session_factory is None \
            and profile.static_key is None else None

    def _retry_of(self, remote) -> RetryPolicy | None:
        """A <connection> block's own connect-retry (2.6 pauses with the current
        connection entry's), None when it is the profile's."""
        own = getattr(remote, "connect_retry", None)
        if not own or own == getattr(self.profile, "connect_retry", None):
            return None
        return RetryPolicy(float(own[0]), float(own[1]), 5)

    def endpoints(self) -> list[Endpoint]:
        """The remotes in order, each with its <connection>'s connect-timeout and its
        protocol's address family (udp6, tcp4-client ...: None for both); with
        remote-random-hostname a name gets a random 12-hex-digit label in front, new
        on every try (2.6's "%08x%04x.host"), so no cache in between answers it."""
        random_label = getattr(self.profile, "remote_random_hostname", False)
        out = []
        for r in self.profile.remotes:
            host = r.host
            if random_label and not _is_address(host):
                host = f"{self.rng(6).hex()}.{host}"
            out.append(Endpoint(host, r.port, r.proto,
                                timeout=float(r.connect_timeout) if getattr(
                                    r, "connect_timeout", None) else None, source=r,
                                proxy=getattr(r, "proxy", None),
                                retry=self._retry_of(r), family=getattr(r, "family", None)))
        return out

    def stream_link(self, on_datagram, on_batch_end, on_lost) -> TcpFraming:
        return TcpFraming(on_datagram, on_batch_end, on_lost)

    @property
    def sso_methods(self) -> tuple[str, ...]:
        """IV_SSO (management-notes.txt): a URL to open is shown to the user (webauth,
        openurl); crtext only when someone can answer it."""
        methods = ("webauth", "openurl")
        if getattr(self.ask, "available", True):
            methods += ("crtext",)
        return methods

    async def prepare(self, previous) -> None:
        """Before a new session: answer the previous one's dynamic challenge (CRV1),
        or ask for the credentials again (AUTH_FAILED under auth-retry interact; or
        auth-nocache forgot them and no auth-token stands in).  Nobody to answer is
        an authentication failure (SessionError "auth", final)."""
        try:
            await self._prepare(previous)
        except ConfigError as exc:
            raise SessionError("auth", str(exc), recoverable=False) from None

    async def _prepare(self, previous) -> None:
        p = self.profile
        if not getattr(p, "auth_user_pass", False) or previous is None:
            return
        challenge = getattr(previous, "auth_challenge", None)
        if challenge is not None:
            # misc.c get_user_pass_cr: "CHALLENGE: text", the username from the challenge
            response = await self.ask(f"CHALLENGE: {challenge.text} ", challenge.echo,
                                      "the server's dynamic challenge asks for a response")
            p.username, p.password = challenge.username, challenge.password(response)
            return
        refused = getattr(previous, "auth_refused", False)
        if refused or (self._forgotten and getattr(previous, "auth_token", None) is None):
            credentials.forget(p)
            await self._complete()
            self._forgotten = False

    async def _complete(self) -> None:
        """credentials.complete, asked through ``ask``."""
        p = self.profile
        answers = {}
        for q in credentials.questions(p):
            answers[q.field] = await self.ask(q.text, q.echo, q.why)
        credentials.apply_answers(p, answers)

    def on_event(self, event, session, answered) -> None:
        """A CR_TEXT challenge: ask the user (without blocking the loop), then answer
        with CR_RESPONSE; ``answered(session, error)`` lets the shell send it."""
        if not isinstance(event, CrTextRequested):
            return

        async def answer() -> None:
            request = event.request
            try:
                response = await self.ask(f"CHALLENGE: {request.text} ", request.echo,
                                          "the server's challenge (CR_TEXT) asks for a "
                                          "response")
            except ConfigError as exc:
                answered(session, SessionError("auth", str(exc), recoverable=False))
                return
            if not session.finished:
                session.send_cr_response(response,
                                         asyncio.get_running_loop().time())
                answered(session, None)
        if self._answering is not None and not self._answering.done():
            # one question at a time: the terminal is being read (a thread cannot be
            # cancelled), so a server repeating CR_TEXT gets the answer being typed
            log.debug("CR_TEXT again while the user answers the last one: ignored")
            return
        self._answering = asyncio.ensure_future(answer())

    def new_session(self, now: float, endpoint: Endpoint, local, remote, previous):
        token = getattr(previous, "auth_token", None)
        if self._session_factory is not None:
            return self._session_factory(now, token)
        p = self.profile
        if p.static_key is not None:
            return StaticKeySession(StaticKeySettings(
                key=p.static_key, direction=p.static_direction, cipher=p.cipher,
                auth=p.auth, local_ip=p.ifconfig[0], remote_ip=p.ifconfig[1],
                tun_mtu=p.tun_mtu, ping=p.ping, ping_restart=p.ping_restart,
                replay_window=p.replay_window,
                routes=[Route(net, mask) for net, mask in p.routes], dns=list(p.dns),
                ifconfig_ipv6=p.ifconfig_ipv6, routes_ipv6=list(p.routes_ipv6),
                route_ipv6_gateway=p.route_ipv6_gateway, block_ipv6=p.block_ipv6), now,
                rng=self.rng)
        settings = session_settings(p)
        settings.auth_token = token
        settings.sso = self.sso_methods
        if getattr(p, "auth_nocache", False) and p.auth_user_pass and token is None:
            # ssl.c purge_user_pass: sent once; the next session asks again (unless the
            # server pushes an auth-token to stand in for it)
            credentials.forget(p)
            self._forgotten = p.credentials_given != (settings.username, settings.password)
        settings.proto = endpoint.proto
        source = endpoint.source
        remote_mtu = getattr(source, "tun_mtu", None)
        if remote_mtu:                       # the <connection> block's own tun-mtu
            settings.tun_mtu = remote_mtu
        mssfix = getattr(source, "mssfix", None)
        if mssfix is not None:
            settings.mssfix = mssfix
        settings.exit_notify = getattr(source, "explicit_exit_notify", None) or 0
        proxy = endpoint.proxy
        settings.socks_udp = proxy is not None and proxy.kind == "socks" \
            and endpoint.proto == "udp"
        settings.ipv6_outer = ":" in str(remote[0]) if remote else False
        return ClientSession(settings, now, rng=self.rng, clock=time.time,
                             tls_context=self._tls_context)


class OpenVPNTunnel(ShellTunnel):
    """An OpenVPN client, one session at a time, as an :class:`erebus.tunnel.Tunnel`."""

    def __init__(self, profile: Profile, *, pcap=None, session_factory=None, connector=None,
                 ask: Ask | None = None):
        self.profile = profile
        if connector is None and any(r.proxy is not None for r in profile.remotes):
            from .outer import OuterConnector
            connector = OuterConnector()      # http-proxy / socks-proxy
        super().__init__(OpenVPNDriver(profile, session_factory=session_factory, ask=ask),
                         warnings=profile.warnings,
                         connect_timeout=float(getattr(profile, "connect_timeout", 30.0)),
                         pcap=pcap, connector=connector)
