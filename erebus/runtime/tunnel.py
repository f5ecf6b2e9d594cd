"""The one asyncio shell: any family's sans-IO core (:class:`erebus.session.Session`)
over a UDP socket or a TCP stream, as an :class:`erebus.tunnel.Tunnel`.

It only moves bytes and time.  Outer datagrams from the link (read in batches) go into
the core; the inner packets it returns go to the receiver the network stack set;
packets from the stack come in through :meth:`ShellTunnel.send_packet`.  After every
batch of input, timer or refused send, one :meth:`ShellTunnel._step`: the core's
events first, then the datagrams it has due, then one timer handle re-armed on the
core's next deadline.  Everything is recorded in the pcap (outer and inner), counted,
and the core's drops are logged rate-limited.

What differs by family is a :class:`Driver` (erebus/runtime/openvpn.py,
erebus/runtime/ipsec.py): the endpoints to try, how to build a core, the logger,
what a refused port means, and (OpenVPN only) how a TCP stream frames packets.

:meth:`connect` tries the endpoints in order (names resolved every time, and every
address of a name in turn, IPv4 and IPv6 in the order getaddrinfo gives them, as
OpenVPN 2.6 does unless the endpoint's family restricts it: udp4, tcp6-client ...);
:meth:`reconnect` starts new sessions with backoff after one ended; the driver gets
the previous core, so it can carry what lasts across sessions (an auth-token, a
manual SA's sequence numbers).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ..counters import traffic_of
from ..errors import ErebusError, SessionError
from ..session import Closed, Connected, Failed, Notice, PathChanged, Rekeyed, Session, \
    Stage, TunnelInfo
from .ratelimit import DropReporter, counters_summary
from .retry import RetryPolicy, with_backoff
from .udp import BatchedUdpLink

__all__ = ["Driver", "Endpoint", "ShellTunnel", "host_port", "tcp_socket", "udp_socket"]

CLOSE_WAIT = 3.0      # seconds close() waits for the peer to confirm (EXIT, DELETE)
MAX_CHALLENGES = 8    # challenges answered in a row before connect() gives up
_REFUSED = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)
# a send that fails because our own address went away (the connected socket keeps the
# source address it was given at connect time): a roaming driver gets a new socket
_ADDRESS_GONE = (errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EINVAL)
REPICK_INTERVAL = 1.0   # seconds between two new sockets for a changed local address


# an endpoint's family -> getaddrinfo's
FAMILIES = {None: socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (``[2001:2::1]:1194``, RFC 3986)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to try: ``proto`` is "udp" or "tcp-client"; ``family`` "ipv4" or
    "ipv6" restricts the addresses a name may resolve to (None: both, in
    getaddrinfo's order); ``proxy``: the outer proxy it is reached through (an
    erebus.openvpn.profile.OuterProxy), if any."""

    host: str
    port: int
    proto: str = "udp"
    local_port: int = 0              # bind the UDP socket here (0: ephemeral)
    timeout: float | None = None     # how long a try may take (None: the tunnel's)
    source: object = field(default=None, compare=False)   # the family's remote record
    proxy: object = None             # an outer proxy to reach it through (None: direct)
    retry: RetryPolicy | None = None  # the wait after it failed (None: the driver's)
    family: str | None = None        # "ipv4" / "ipv6" only (udp4, tcp6 ...); None: both
    family_reason: str = ""          # why, when it is not the protocol's word

    @property
    def name(self) -> str:
        return host_port(self.host, self.port)

    @property
    def family_note(self) -> str:
        """What the family restriction is, for messages ("" without one)."""
        if self.family is None:
            return ""
        if self.family_reason:
            return self.family_reason
        digit = "4" if self.family == "ipv4" else "6"
        word = f"udp{digit}" if self.proto == "udp" else f"tcp{digit}-client"
        return f"{word}: IPv{digit} addresses only"


class Driver(Protocol):
    """What one VPN family tells the shell.  Optional: ``async prepare(previous)``, run
    before each new session outside the connect timeout (OpenVPN asks the user for a
    challenge's response there), and ``on_event(event, session, answered)`` for the
    family's own events (OpenVPN's CR_TEXT challenge: ``answered(session, error)``
    when the answer was given to the session, or nobody could give it), and ``roams =
    True``: after a send failed because our own address went away, a new UDP socket
    from whatever source the kernel picks now (WireGuard, whose peer follows)."""

    log: logging.Logger
    drop_kinds: dict                 # counter -> (level, what), see ratelimit.DropReporter
    refused_after: int | None        # ICMP refusals, before the peer answered, that end
                                     # an attempt as "unreachable" (None: never)
    refused_hint: str                # said with the first refusal ("" : debug only)
    retry: RetryPolicy               # the waits of reconnect()
    retry_attempts: int | None       # rounds over the endpoints reconnect() makes (None:
                                     # until one comes up)
    close_wait: float                # seconds close() waits for the session to finish
                                     # (the peer confirming EXIT or DELETE)
    resolve_retry: float | None      # seconds a name may fail to resolve before the
                                     # tunnel gives up (None: never)

    def endpoints(self) -> list[Endpoint]:
        ...

    def new_session(self, now: float, endpoint: Endpoint, local: tuple, remote: tuple,
                    previous: Session | None) -> Session:
        """A core for one attempt; raise SessionError if none can be made."""

    def stream_link(self, on_datagram: Callable[[bytes], None],
                    on_batch_end: Callable[[], None],
                    on_lost: Callable[[Exception | None], None]) -> asyncio.Protocol:
        """For "tcp-client" endpoints: the protocol that frames packets on the stream."""


def udp_socket(addr: tuple, local_port: int = 0) -> socket.socket:
    """A non-blocking UDP socket of ``addr``'s family connected to it (bound to
    ``local_port`` if not 0); OSError if that fails."""
    v6 = ":" in addr[0]
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        if local_port:
            sock.bind(("::" if v6 else "0.0.0.0", local_port))
        sock.connect(addr)
    except OSError:
        sock.close()
        raise
    return sock


class DirectConnector:
    """How the shell reaches a server: straight to it, a connected UDP socket read in
    batches or a TCP stream framed by the driver.  (Outer proxies are other
    connectors; tests use a fake one in virtual time.)"""

    async def resolve(self, endpoint: Endpoint) -> list[tuple]:
        """The addresses to try, in getaddrinfo's order, each once: ``(ip, port)``,
        or the 4-tuple of an IPv6 address with a scope (OSError if there is none)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(endpoint.host, endpoint.port,
                                       family=FAMILIES[endpoint.family],
                                       type=socket.SOCK_STREAM if endpoint.proto ==
                                       "tcp-client" else socket.SOCK_DGRAM)
        addrs: list[tuple] = []
        for family, _, _, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            addr = tuple(sockaddr) if family == socket.AF_INET6 and sockaddr[3] \
                else (sockaddr[0], sockaddr[1])
            if addr not in addrs:
                addrs.append(addr)
        if not addrs:
            raise socket.gaierror(socket.EAI_NODATA, "No address associated with hostname")
        return addrs

    async def open(self, endpoint: Endpoint, addr: tuple, on_datagram,
                   on_batch_end, on_error, on_lost, driver: Driver):
        """A link with ``send``, ``close``, ``redirect(port)``, ``local``, ``remote``;
        SessionError("unreachable") if it cannot be made."""
        loop = asyncio.get_running_loop()
        if endpoint.proto == "tcp-client":
            try:
                _, link = await loop.create_connection(
                    lambda: driver.stream_link(on_datagram, on_batch_end, on_lost),
                    sock=await tcp_socket(loop, addr))
            except OSError as exc:
                raise SessionError(Stage.UNREACHABLE, f"{endpoint.name}: TCP connect to "
                                   f"{host_port(*addr[:2])} failed: "
                                   f"{exc.strerror or exc}") from None
            sock = link.transport.get_extra_info("socket")
            link.local, link.remote = sock.getsockname()[:2], addr[:2]
            return link
        try:
            sock = udp_socket(addr, endpoint.local_port)
        except OSError as exc:
            raise SessionError(Stage.UNREACHABLE, f"{endpoint.name}: "
                               f"{host_port(*addr[:2])}: {exc.strerror or exc}") from None
        link = BatchedUdpLink(sock, loop, on_datagram=on_datagram, on_error=on_error,
                              on_batch_end=on_batch_end)
        link.local, link.remote = sock.getsockname()[:2], addr[:2]
        return link


async def tcp_socket(loop: asyncio.AbstractEventLoop, addr: tuple) -> socket.socket:
    """A TCP socket of ``addr``'s family connected to it (with an IPv6 address's
    scope, which create_connection(host, port) would resolve away); OSError if not."""
    sock = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET,
                         socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, addr)
    except BaseException:
        sock.close()
        raise
    return sock


class ShellTunnel:
    """Any family's core, one session at a time, as an :class:`erebus.tunnel.Tunnel`."""

    def __init__(self, driver: Driver, *, warnings: list[str], connect_timeout: float,
                 pcap=None, connector=None):
        self.driver = driver
        self.connector = connector if connector is not None else DirectConnector()
        self.log = driver.log
        self.warnings = warnings
        self.connect_timeout = connect_timeout
        self.pcap = pcap
        self.info: TunnelInfo | None = None
        self.session: Session | None = None
        self._receiver: Callable[[bytes], None] | None = None
        self._link = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._connected: asyncio.Future | None = None
        self._done: asyncio.Future | None = None
        self._local = ("0.0.0.0", 0)
        self._remote = ("0.0.0.0", 0)
        self._server_name = ""
        self._last_endpoint: Endpoint | None = None
        self._resolve_failing: dict[str, float] = {}   # name -> when it first failed
        self._address = ""                # where the last try went: [2001:2::1]:1194
        self._started = 0.0
        self.sessions = 0               # attempts that got a core
        self.dropped_down = 0           # packets the stack sent while the tunnel was down
        self.link_errors = 0            # errors on the socket in this attempt
        self._repicked = -1e9           # when the last new socket was opened (roaming)
        self.rekeys = 0                 # Rekeyed events (every kind)
        self.datagrams_in = self.datagrams_out = 0
        self._drops = DropReporter(self.log, driver.drop_kinds)
        self._traffic_before = (0, 0, 0, 0)     # traffic() of the sessions gone
        self._drops_before: dict[str, int] = {}  # drops() of the sessions gone

    # -- Tunnel interface ----------------------------------------------------------------

    @property
    def up(self) -> bool:
        s = self.session
        return self._link is not None and s is not None and s.established

    @property
    def counters(self):
        return self.session.counters if self.session is not None else None

    def traffic(self) -> tuple[int, int, int, int]:
        """(bytes in, bytes out, packets in, packets out) inside the tunnel, over every
        session so far (read by ``erebus status``; the cores count, this adds up)."""
        now = traffic_of(self.session)
        return tuple(a + b for a, b in zip(self._traffic_before, now))

    def drops(self) -> dict[str, int]:
        """The core's drop counters (the driver's drop_kinds) over every session so far."""
        c = self.counters
        return {name: self._drops_before.get(name, 0) + (getattr(c, name, 0) if c else 0)
                for name in self.driver.drop_kinds}

    def set_receiver(self, receiver: Callable[[bytes], None]) -> None:
        self._receiver = receiver

    def send_packet(self, packet: bytes) -> None:
        s = self.session
        if s is None or self._link is None or not s.established:
            self.dropped_down += 1
            return
        datagram = s.send_packet(packet, self._loop.time())
        if datagram is None:                 # dropped and counted; maybe an event
            local = getattr(s, "local_packets", None)   # answered by the core itself
            if local is not None and self._receiver is not None:
                for reply in local():        # (OpenVPN's block-ipv6 ICMPv6), after
                    if self.pcap:            # this call: the stack is not re-entered
                        self.pcap.write_inner(reply, time.time(), inbound=True)
                    self._loop.call_soon(self._receiver, reply)
            self._step()
            return
        pcap = self.pcap
        if pcap:
            pcap.write_inner(packet, time.time(), inbound=False)
        self._send(datagram)

    async def connect(self, timeout: float | None = None) -> TunnelInfo:
        """Try the driver's endpoints in order; the first session that comes up wins.
        A failure that another endpoint cannot cure (a refusal) is raised at once.
        ``timeout`` (seconds per endpoint) overrides the endpoint's and the tunnel's."""
        errors: list[SessionError] = []
        endpoints = self.driver.endpoints()
        for i, endpoint in enumerate(endpoints):
            self._last_endpoint = endpoint
            limit = timeout if timeout is not None else \
                (endpoint.timeout or self.connect_timeout)
            try:
                addrs = await asyncio.wait_for(self._resolve(endpoint), limit)
            except asyncio.TimeoutError:
                addrs = []
                errors.append(SessionError(Stage.RESOLVE, f"{endpoint.name}: resolving "
                                           f"{endpoint.host} timed out after {limit:g} s"))
            except SessionError as exc:
                addrs = []
                errors.append(exc)
                if not exc.recoverable:
                    raise
            # 2.6 (init.c next_connection_entry): the next address of the name, then
            # the next remote; each address is one try with its own timeout
            for j, addr in enumerate(addrs):
                auth_retries = 0
                while True:
                    await self._prepare()
                    try:
                        return await asyncio.wait_for(
                            self._connect_one(endpoint, addr, addrs), limit)
                    except asyncio.TimeoutError:
                        errors.append(self._timed_out(endpoint, limit))
                        self._teardown()
                    except SessionError as exc:
                        self._teardown()
                        errors.append(exc)
                        if exc.recoverable and exc.stage is Stage.AUTH:
                            # push.c receive_auth_failed: no_advance, the same server
                            # again: at once to answer a challenge, else after the wait
                            auth_retries += 1
                            if exc.immediate and auth_retries <= MAX_CHALLENGES:
                                self.log.debug("connecting again at once, to answer it")
                                continue
                            if not exc.immediate:
                                delay = self._retry_policy(self.driver).delay(auth_retries)
                                self.log.warning("%s; next try in %.0f s", exc, delay)
                                await asyncio.sleep(delay)
                                continue
                            raise SessionError(Stage.AUTH, f"{exc} (after {MAX_CHALLENGES} "
                                               "challenges or refusals in a row: giving "
                                               "up)") from None
                        if not exc.recoverable:
                            raise
                    break
                if j + 1 < len(addrs):
                    self.log.warning("%s; trying the next address of %s (%s)", errors[-1],
                                     endpoint.host, host_port(*addrs[j + 1][:2]))
            if i + 1 < len(endpoints):
                self.log.warning("%s; trying the next remote", errors[-1])
        if not errors:
            raise SessionError(Stage.CONFIG, "the profile names no remote")
        raise errors[-1]

    async def reconnect(self, *, timeout: float | None = None, attempts: int | None = None,
                        stop: asyncio.Event | None = None) -> TunnelInfo:
        """New sessions with the driver's backoff until one comes up (at most
        ``attempts`` rounds over the endpoints; default: the driver's).  Only failures
        that another try can cure are retried."""
        if self.session is not None:
            self._log_counters(f"session {self.sessions} counters")
        self._teardown()
        d = self.driver
        info = await with_backoff(lambda: self.connect(timeout=timeout),
                                  attempts=attempts if attempts is not None
                                  else d.retry_attempts, stop=stop,
                                  policy=lambda: self._retry_policy(d))
        self.log.info("reconnected (session %d)", self.sessions)
        return info

    async def _prepare(self) -> None:
        """Before a new session: what the driver must do first (OpenVPN: ask the user
        for a challenge's response or the credentials again), outside any timeout."""
        prepare = getattr(self.driver, "prepare", None)
        if prepare is not None:
            await prepare(self.session)

    def _retry_policy(self, d: Driver) -> RetryPolicy:
        """The wait after a failed round: the last endpoint's own (a <connection>
        block's connect-retry), else the driver's."""
        own = getattr(self._last_endpoint, "retry", None)
        return own if own is not None else d.retry

    async def wait_closed(self) -> str:
        """Until the session ends: its reason ("closed" ... after :meth:`close`); raises
        the SessionError that ended it otherwise."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._done)

    async def close(self) -> None:
        """Tell the peer we leave (and wait up to CLOSE_WAIT s for it to confirm),
        log the counters, release the link."""
        s = self.session
        if s is not None and not s.finished and self._link is not None:
            s.close(self._loop.time())
            self._step()
            if not s.finished and self._done is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._done),
                                           self.driver.close_wait)
                except (asyncio.TimeoutError, ErebusError):
                    pass
        if self._done is not None and not self._done.done():
            self._done.set_result("closed")
        if s is not None:
            self._log_counters()
        self._teardown()

    # -- connecting ------------------------------------------------------------------------

    def _timed_out(self, endpoint: Endpoint, timeout: float) -> SessionError:
        s = self.session
        stage, why = (Stage.UNREACHABLE, "no answer from the server") \
            if s is None else s.connect_timeout()
        return SessionError(stage, f"{self._server_name}: timed out after {timeout:g} s "
                            f"({why})")

    def _unresolved(self, endpoint: Endpoint, exc: OSError, now: float) -> SessionError:
        """A name that does not resolve: tried again later (the next round), unless it
        has failed for the driver's resolve_retry seconds (OpenVPN's resolv-retry N;
        None: for ever), which ends the tunnel as 2.6 exits."""
        said = getattr(exc, "strerror", None) or exc
        note = endpoint.family_note
        why = f"cannot resolve {endpoint.name}: {said}" + (f" ({note})" if note else "")
        limit = getattr(self.driver, "resolve_retry", None)
        if limit is None:
            return SessionError(Stage.RESOLVE, why)
        since = self._resolve_failing.setdefault(endpoint.host, now)
        if now - since >= limit:
            return SessionError(Stage.RESOLVE, f"{why} (for {now - since:.0f} s; "
                                f"resolv-retry {limit:g}: giving up)", recoverable=False)
        return SessionError(Stage.RESOLVE, why)

    async def _resolve(self, endpoint: Endpoint) -> list[tuple]:
        """The endpoint's addresses (the connector's: a proxy's, for a remote behind
        one), SessionError(resolve) if there is none."""
        loop = self._loop = asyncio.get_running_loop()
        try:
            addrs = await self.connector.resolve(endpoint)
        except OSError as exc:
            raise self._unresolved(endpoint, exc, loop.time()) from None
        self._resolve_failing.pop(endpoint.host, None)
        return addrs if isinstance(addrs, list) else [addrs]

    async def _connect_one(self, endpoint: Endpoint, addr: tuple,
                           addrs: list[tuple]) -> TunnelInfo:
        """One try of one of the endpoint's addresses."""
        loop = self._loop = asyncio.get_running_loop()
        self._started = loop.time()
        where = host_port(*addr[:2])
        # the name, and which of its addresses when it has several
        name = endpoint.name
        self._server_name = name if len(addrs) == 1 or endpoint.proxy is not None \
            else f"{name} ({where})"
        self._address = where
        self.log.info("connecting to %s (%s, %s)", name, where,
                      endpoint.proto + (f", {endpoint.family_note}"
                                        if endpoint.family_note else ""))
        self._link = link = await self.connector.open(
            endpoint, addr, self._on_datagram, self._step, self._on_link_error,
            self._on_link_lost, self.driver)
        self._local, self._remote = link.local, link.remote
        self._connected = loop.create_future()
        if self._done is None or self._done.done():
            self._done = loop.create_future()
        self.link_errors = 0
        session = self.driver.new_session(loop.time(), endpoint, self._local,
                                          self._remote, self.session)
        self._traffic_before = self.traffic()       # the session replaced: kept
        self._drops_before = self.drops()
        self.session = session
        self.sessions += 1
        self._step()
        return await asyncio.shield(self._connected)

    # -- the pump --------------------------------------------------------------------------

    def _on_datagram(self, data: bytes) -> None:
        """One datagram from the peer; the link calls _step() after the batch."""
        s = self.session
        if s is None:
            return
        self.datagrams_in += 1
        pcap = self.pcap
        if pcap:
            pcap.write_outer(data, self._remote, self._local, time.time(), inbound=True)
        packets = s.receive_datagram(data, self._loop.time())
        if packets:
            receiver = self._receiver
            for packet in packets:
                if pcap:
                    pcap.write_inner(packet, time.time(), inbound=True)
                if receiver is not None:
                    receiver(packet)

    def _send(self, datagram: bytes) -> None:
        link = self._link
        if link is None:
            return
        self.datagrams_out += 1
        if self.pcap:
            self.pcap.write_outer(datagram, self._local, self._remote, time.time(),
                                  inbound=False)
        link.send(datagram)

    def _step(self) -> None:
        """Events, then the datagrams due, then the timer: after every input."""
        s = self.session
        if s is None or self._link is None:
            return
        while (event := s.next_event()) is not None:
            self._on_event(event)
            if self._link is None:
                return                       # the session ended
        now = self._loop.time()
        for datagram in s.datagrams_to_send(now):
            self._send(datagram)
        self._drops.check(s.counters)
        deadline = s.get_timer()
        if deadline == self._deadline and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        s = self.session
        if s is None or self._link is None:
            return
        s.handle_timer(self._loop.time())
        self._step()

    def _on_event(self, event) -> None:
        log = self.log
        if isinstance(event, Notice):
            log.log(event.level, "%s", event.message)
        elif isinstance(event, Connected):
            info = self.info = event.info
            info.server = self._server_name
            info.address = self._address
            info.setup_ms = round((self._loop.time() - self._started) * 1000, 1)
            log.info("connected to %s: virtual IP %s/%s, cipher %s", info.server,
                     info.virtual_ip, info.netmask, info.cipher)
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(info)
        elif isinstance(event, Failed):
            self._end(SessionError(event.stage, f"{self._server_name}: {event.message}",
                                   recoverable=event.recoverable,
                                   immediate=event.immediate))
            return
        elif isinstance(event, Closed):
            log.info("session closed: %s", event.reason)
            if self._done is not None and not self._done.done():
                self._done.set_result(event.reason)
        elif isinstance(event, Rekeyed):
            self.rekeys += 1
            log.debug("rekeyed: %s %s", event.what, event.detail)
        elif isinstance(event, PathChanged):
            self._switch_port(event.port)
        on_event = getattr(self.driver, "on_event", None)
        if on_event is not None and self.session is not None:   # the family's own events
            on_event(event, self.session, self._after_answer)

    def _after_answer(self, session: Session, error: SessionError | None = None) -> None:
        """The driver answered an event of ``session`` (a challenge): send what is due
        now, if that session is still the current one; ``error``: nobody could answer,
        the session is over."""
        if session is not self.session or self._link is None:
            return
        if error is not None:
            self._end(error)
        else:
            self._step()

    def _switch_port(self, port: int) -> None:
        addr = (self._remote[0], port)
        try:
            self._link.redirect(port)
        except OSError as exc:
            self._end(SessionError(Stage.UNREACHABLE, f"{self._server_name}: cannot switch "
                                   f"to UDP {port}: {exc.strerror or exc}"))
            return
        self._remote = addr
        self.log.debug("now sending to %s", host_port(*addr))

    def _on_link_error(self, exc: Exception) -> None:
        self.link_errors += 1
        s = self.session
        if getattr(exc, "errno", None) in _ADDRESS_GONE and getattr(self.driver, "roams",
                                                                   False) \
                and s is not None and s.answered:
            self.log.debug("socket error: %s", exc)
            self._repick_source()
            return
        if getattr(exc, "errno", None) not in _REFUSED:
            self.log.debug("socket error: %s", exc)     # ENOBUFS ...: a lost datagram
            return
        d, s = self.driver, self.session
        why = exc.strerror or exc
        if self.link_errors == 1 and d.refused_hint:
            self.log.warning("%s: %s (%s)", self._server_name, why, d.refused_hint)
        else:
            self.log.debug("socket error: %s", exc)
        if d.refused_after is not None and self.link_errors >= d.refused_after \
                and s is not None and not s.answered and self._connected is not None \
                and not self._connected.done():
            self._end(SessionError(Stage.UNREACHABLE, f"{self._server_name}: {why} "
                                   f"(nothing answers on UDP {self._remote[1]})"))

    def _repick_source(self) -> None:
        """Our address changed under a roaming driver's session (WireGuard): a new UDP
        socket to the same peer, from whatever source address the kernel now picks (and
        a new port: the peer follows authenticated packets).  At most once every
        REPICK_INTERVAL; while no route exists, the old socket stays."""
        link, loop = self._link, self._loop
        if not isinstance(link, BatchedUdpLink) or loop.time() - self._repicked < \
                REPICK_INTERVAL:
            return
        self._repicked = loop.time()
        endpoint = self._last_endpoint
        if endpoint is not None and endpoint.local_port:
            self.log.debug("our address may have changed; keeping the socket bound to "
                           "port %d (ListenPort)", endpoint.local_port)
            return
        try:
            sock = udp_socket(self._remote)
        except OSError as exc:
            self.log.debug("no new socket to %s yet: %s", host_port(*self._remote),
                           exc.strerror or exc)
            return
        before = self._local
        link.replace_socket(sock)
        self._local = link.local
        self.log.info("our address changed: sending to %s from %s now (was %s)",
                      self._server_name, host_port(*self._local), host_port(*before))

    def _on_link_lost(self, exc: Exception | None) -> None:
        """The TCP stream to the server ended (or the link says what else did, as a
        SessionError): the session is over."""
        if isinstance(exc, SessionError):
            self._end(exc)
            return
        self._end(SessionError(Stage.CONNECTION_LOST, f"{self._server_name}: the TCP "
                               "connection to the server was lost" +
                               (f" ({exc})" if exc else " (closed by the server)")))

    def _end(self, error: SessionError) -> None:
        """The session failed: what it still has to say goes out, then the link."""
        self.log.info("%s", error)                  # the caller reports it
        s = self.session
        if self._link is not None and s is not None:
            for datagram in s.datagrams_to_send(self._loop.time()):
                self._send(datagram)                # a last DELETE, an answer
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(error)
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)
            self._done.exception()                  # retrieved: nobody has to await it
        self._teardown()

    def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = None
        if self._link is not None:
            self._link.close()
            self._link = None

    def _log_counters(self, what: str = "counters") -> None:
        """At the end of a session: what is still suppressed, then one line of counters."""
        counters = self.counters
        self._drops.flush(counters)
        self.log.info("%s: %s", what, counters_summary(counters, {
            "datagrams_in": self.datagrams_in, "datagrams_out": self.datagrams_out}))
