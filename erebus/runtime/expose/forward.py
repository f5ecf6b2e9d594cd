"""ssh-style forwards: ``-L [BIND:]PORT:HOST:HOSTPORT`` (a local listener whose
connections go through the VPN to HOST:HOSTPORT) and ``-R VPORT:LHOST:LPORT`` (a port
of the virtual IP whose connections go to a local service).

Bytes move transport to transport with no queue of our own in between: the local
socket's ``data_received`` writes straight into the VPN connection and the other way
round, and each side's "pause writing" pauses the other side's reading.  A slow
reader anywhere therefore slows the sender instead of growing a buffer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from ...errors import ConfigError
from ...netstack.stack import SYN_BACKLOG
from .dns import ResolveError, _retrieve
from .eyeballs import CONNECTION_ATTEMPT_DELAY, RESOLUTION_DELAY, HappyEyeballs, Phase
from .hostport import BadHostPort, hostport, ip_family, split_fields, tunnel_families

log = logging.getLogger("erebus.forward")

# a connection through the VPN may take this long to open: past the SYN our TCP sends
# 31 s in (the one that reaches a WireGuard peer that restarted, after the tunnel's 15 s
# no-answer rule handshook again) and the one at 63 s; the kernel's own limit is 127 s
CONNECT_TIMEOUT = 75.0


@dataclass(frozen=True, slots=True)
class ForwardSpec:
    bind: str
    port: int
    host: str
    host_port: int

    def __str__(self) -> str:
        return f"{hostport(self.bind, self.port)} -> {hostport(self.host, self.host_port)}"


def _port(text: str, what: str, spec: str, option: str = "-L") -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{option} {spec}: {what} {text!r} is not a port number") from None
    if not 0 <= value < 65536 or (value == 0 and option == "-L"):
        raise ConfigError(f"{option} {spec}: {what} {value} is out of range 1..65535")
    return value


def _fields(spec: str, option: str) -> list[str]:
    try:
        return split_fields(spec)
    except BadHostPort as exc:
        raise ConfigError(f"{option} {spec}: {exc}") from None


_IPV6_HINT = " (an IPv6 address goes in brackets: [2001:2::2])"


def parse_local_forward(spec: str) -> ForwardSpec:
    """``[BIND:]PORT:HOST:HOSTPORT`` as ssh reads it: an IPv6 BIND or HOST in
    brackets (``-L [::1]:8080:[2001:2:0:2::2]:80``)."""
    parts = _fields(spec, "-L")
    if len(parts) == 3:
        parts.insert(0, "127.0.0.1")
    if len(parts) != 4 or not all(parts[1:]):
        hint = _IPV6_HINT if len(parts) > 4 else ""
        raise ConfigError(f"-L {spec}: expected [BIND:]PORT:HOST:HOSTPORT{hint}")
    bind = parts[0] or "127.0.0.1"
    if bind == "*":
        bind = "0.0.0.0"
    return ForwardSpec(bind, _port(parts[1], "port", spec), parts[2],
                       _port(parts[3], "host port", spec))


class _Holding(asyncio.Protocol):
    """A Happy Eyeballs attempt's protocol until it wins: reading paused, so nothing
    is delivered before the caller's protocol takes the transport over."""

    def __init__(self):
        self.transport = None
        self.data: list[bytes] = []
        self.eof = False
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.pause_reading()

    def data_received(self, data) -> None:     # not while paused; kept if it comes
        self.data.append(bytes(data))

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc) -> None:
        self.lost = True

    def hand_over(self, protocol) -> None:
        transport = self.transport
        transport.resume_reading()       # before connection_made, which may pause it
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        for data in self.data:
            protocol.data_received(data)
        if self.eof and not protocol.eof_received():
            transport.close()


def _combined(errors: list[tuple[str, BaseException]], port: int) -> BaseException:
    """One error for a connection whose every attempt failed: the last attempt's type
    and reason (what the SOCKS reply and the HTTP status follow), every address's
    failure in its message."""
    last = errors[-1][1]
    if len(errors) == 1:
        return last
    text = "; ".join(f"{hostport(a, port)}: {e or type(e).__name__}" for a, e in errors)
    exc = (type(last) if isinstance(last, OSError) else OSError)(text)
    if hasattr(last, "reason"):
        exc.reason = last.reason
    return exc


class Dialer:
    """Opens connections through the VPN: names resolved with the VPN's DNS, to the
    families the tunnel carries; a name with both A and AAAA answers connected to by
    Happy Eyeballs (:mod:`erebus.runtime.expose.eyeballs`)."""

    def __init__(self, vpn, resolver=None, *, timeout: float = CONNECT_TIMEOUT,
                 attempt_delay: float = CONNECTION_ATTEMPT_DELAY,
                 resolution_delay: float = RESOLUTION_DELAY):
        self.vpn = vpn
        self.resolver = resolver
        self.timeout = timeout
        self.attempt_delay = attempt_delay
        self.resolution_delay = resolution_delay

    async def dial(self, host: str, port: int, protocol_factory) -> asyncio.Transport:
        literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        family = ip_family(literal)
        if family is not None or self.resolver is None:
            return await self._dial_address(literal, port, protocol_factory, host)
        return await self._dial_name(host, port, protocol_factory)

    async def _dial_address(self, address: str, port: int, protocol_factory,
                            shown: str) -> asyncio.Transport:
        try:
            transport, _ = await self.vpn.create_connection(protocol_factory, address, port,
                                                            timeout=self.timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"connection to {hostport(shown, port)} timed out") from None
        return transport

    async def _dial_name(self, host: str, port: int, protocol_factory) -> asyncio.Transport:
        """RFC 8305: the AAAA and A queries at once, attempts started as the machine
        says, the first connection wins, the rest aborted; all within ``timeout``."""
        loop = asyncio.get_running_loop()
        resolver = self.resolver
        name = resolver.check_name(host)
        types = resolver.types()
        machine = HappyEyeballs(ipv6="AAAA" in types, ipv4="A" in types, now=loop.time(),
                                attempt_delay=self.attempt_delay,
                                resolution_delay=self.resolution_delay)
        if not types:
            raise ResolveError(resolver.nothing(name))
        deadline = loop.time() + self.timeout
        queries = {loop.create_task(resolver.lookup(name, t)): 6 if t == "AAAA" else 4
                   for t in types}
        for task in queries:
            task.add_done_callback(_retrieve)
        attempts: dict[asyncio.Task, tuple[str, _Holding]] = {}
        winner = None
        try:
            while winner is None:
                now = loop.time()
                if now >= deadline:
                    raise TimeoutError(f"connection to {hostport(host, port)} timed out "
                                       f"after {self.timeout:g} s")
                for address in machine.poll(now):
                    holder = _Holding()
                    task = loop.create_task(self.vpn.create_connection(
                        lambda holder=holder: holder, address, port,
                        timeout=max(0.0, deadline - now)))
                    attempts[task] = (address, holder)
                    log.debug("%s: trying %s", name, hostport(address, port))
                if machine.phase is Phase.FAILED:
                    raise self._failure(name, port, machine)
                wake = machine.timer()
                until = deadline if wake is None else min(wake, deadline)
                done, _ = await asyncio.wait([*queries, *attempts], timeout=until - now,
                                             return_when=asyncio.FIRST_COMPLETED)
                now = loop.time()
                for task in sorted(done, key=lambda t: machine.tried.index(attempts[t][0])
                                   if t in attempts else -1):
                    if task in queries:
                        family = queries.pop(task)
                        exc = task.exception()
                        if exc is None:
                            machine.answer(family, task.result(), now)
                        elif isinstance(exc, ResolveError):
                            machine.query_failed(family, exc, now)
                        else:
                            raise exc                # a bug, as it is
                        continue
                    address, holder = attempts.pop(task)
                    exc = task.exception()
                    if exc is None and holder.lost:
                        exc = ConnectionResetError(f"{hostport(address, port)}: reset "
                                                   "as it connected")
                    if exc is not None:
                        if isinstance(exc, asyncio.TimeoutError):
                            exc = TimeoutError(f"{hostport(address, port)}: timed out")
                        if not isinstance(exc, (OSError, ValueError)):
                            raise exc
                        log.debug("%s: %s failed: %s", name, hostport(address, port), exc)
                        machine.attempt_failed(address, exc, now)
                        continue
                    transport, _ = task.result()
                    if winner is None and machine.phase is Phase.CONNECTING:
                        losers = machine.attempt_succeeded(address)
                        winner = (address, transport, holder)
                        for other, (addr, _h) in attempts.items():
                            if addr in losers:
                                other.cancel()       # aborted by create_connection
                    else:
                        transport.abort()            # connected second: not needed
        finally:
            for task in [*queries, *attempts]:
                task.cancel()                        # a lookup itself goes on (shared)
            for task in attempts:
                task.add_done_callback(_abort_late)
        address, transport, holder = winner
        log.debug("%s: connected to %s", name, hostport(address, port))
        holder.hand_over(protocol_factory())
        return transport

    def _failure(self, name: str, port: int, machine: HappyEyeballs) -> BaseException:
        if machine.errors:
            return _combined(machine.errors, port)
        prefix = f"cannot resolve {name}: "
        why = dict.fromkeys(str(e).removeprefix(prefix) for _, e in machine.query_errors)
        if why:
            return ResolveError(prefix + "; ".join(why))
        return ResolveError(self.resolver.nothing(name))


def _abort_late(task: asyncio.Task) -> None:
    """An attempt cancelled as it connected: its transport is nobody's."""
    if not task.cancelled() and task.exception() is None:
        task.result()[0].abort()


class Half(asyncio.Protocol):
    """One side of a spliced connection; ``peer`` is the other side's transport.
    ``gauge``: an object whose ``open`` counts the connections alive (a service's,
    for ``erebus status``), counted once per connection, not per packet."""

    def __init__(self, on_made=None, gauge=None):
        self.on_made = on_made
        self.gauge = gauge
        self.transport: asyncio.Transport | None = None
        self.peer: asyncio.Transport | None = None
        self.pending: list[bytes] = []     # data that came before the peer existed
        self.eof_pending = False
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.gauge is not None:
            self.gauge.open += 1
        if self.on_made is not None:
            self.on_made(self)

    def attach(self, peer: asyncio.Transport) -> None:
        self.peer = peer
        for data in self.pending:
            peer.write(data)
        self.pending.clear()
        if self.eof_pending:
            self._eof_to_peer()
        if self.closed:
            peer.close()

    def data_received(self, data) -> None:
        if self.peer is None:
            self.pending.append(bytes(data))
            return
        self.peer.write(data)

    def eof_received(self) -> bool:
        if self.peer is None:
            self.eof_pending = True
        else:
            self._eof_to_peer()
        return True                       # half-close: keep our own sending side open

    def _eof_to_peer(self) -> None:
        if not self.peer.is_closing():
            if self.peer.can_write_eof():
                self.peer.write_eof()
            else:
                self.peer.close()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.gauge is not None and self.transport is not None:
            self.gauge.open -= 1
            self.gauge = None
        if self.peer is not None and not self.peer.is_closing():
            if exc is not None:
                self.peer.abort()
            else:
                self.peer.close()


class LocalForward:
    """A -L listener: every accepted local connection is dialled through the VPN."""

    def __init__(self, dialer: Dialer, spec: ForwardSpec):
        self.dialer = dialer
        self.spec = spec
        self.server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.total = 0
        self.failed = 0
        self.open = 0                   # local connections alive (dialling or spliced)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        warn_if_public(f"-L {self.spec}", self.spec.bind)
        family = ip_family(self.spec.host)
        if family is not None and not tunnel_families(self.dialer.vpn)[family == 6]:
            log.warning("-L %s: the tunnel has no IPv%d address: its connections will be "
                        "refused until it has one", self.spec, family)
        self.server = await loop.create_server(self._accept, self.spec.bind, self.spec.port)
        log.info("forwarding %s", self.spec)

    def _accept(self) -> asyncio.Protocol:
        return Half(on_made=self._on_local, gauge=self)

    def _on_local(self, local: Half) -> None:
        local.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._dial(local))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, local: Half) -> None:
        self.total += 1
        remote = Half()
        try:
            transport = await self.dialer.dial(self.spec.host, self.spec.host_port,
                                               lambda: remote)
        except (OSError, ValueError) as exc:
            self.failed += 1
            log.warning("-L %s: %s", self.spec, exc or type(exc).__name__)
            local.transport.abort()
            return
        remote.attach(local.transport)
        local.attach(transport)
        if not local.transport.is_closing():
            local.transport.resume_reading()
        log.debug("-L %s: %s connected via %s", self.spec,
                  local.transport.get_extra_info("peername"),
                  transport.get_extra_info("sockname"))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """``bind``: which of the virtual IPs listen: "" both (ssh's ``*`` or nothing),
    ``0.0.0.0`` the IPv4 one, ``::`` the IPv6 one, or one of the addresses itself."""

    vport: int
    lhost: str
    lport: int
    bind: str = ""

    @property
    def family(self) -> int | None:
        """4 or 6 when only one family's virtual IP listens, None for both."""
        return ip_family(self.bind) if self.bind else None

    def __str__(self) -> str:
        if not self.bind:
            where = f"<virtual IP>:{self.vport}"
        elif ipaddress.ip_address(self.bind).is_unspecified:
            where = f"<virtual IPv{self.family}>:{self.vport}"
        else:
            where = hostport(self.bind, self.vport)
        return f"{where} -> {hostport(self.lhost, self.lport)}"


def parse_remote_forward(spec: str) -> RemoteSpec:
    """``[BIND:]VPORT:LHOST:LPORT`` (ssh's ``-R``; the listening side is the virtual
    IP): BIND empty or ``*`` for the virtual IPs of both families, ``0.0.0.0`` or
    ``[::]`` for one family's, or a virtual IP itself; an IPv6 LHOST in brackets
    (``-R 8080:[::1]:3000``)."""
    parts = _fields(spec, "-R")
    bind = ""
    if len(parts) == 4:
        bind = parts.pop(0)
        if bind == "*":
            bind = ""
        elif bind and ip_family(bind) is None:
            raise ConfigError(f"-R {spec}: BIND {bind!r} is not an address: the listening "
                              "side is the virtual IP (*, 0.0.0.0, [::] or one of its "
                              "addresses)")
        elif bind:
            bind = str(ipaddress.ip_address(bind))
    if len(parts) != 3 or not all(parts):
        hint = _IPV6_HINT if len(parts) > 3 else ""
        raise ConfigError(f"-R {spec}: expected [BIND:]VPORT:LHOST:LPORT{hint}")
    return RemoteSpec(_port(parts[0], "port", spec, "-R"), parts[1],
                      _port(parts[2], "local port", spec, "-R"), bind)


class RemoteForward:
    """A -R rule: the virtual IP's port VPORT is served by the local LHOST:LPORT.

    The local target is dialled when the SYN arrives, before anything is answered: if
    it refuses, the remote side gets RST ("connection refused"), never a connection
    that is accepted and then hangs.  One dial per 4-tuple (a retransmitted SYN does
    not dial again), and at most ``BACKLOG`` SYNs dialling or half-open at once: the
    stack drops the SYNs beyond, as a kernel with a full SYN queue does, so a SYN
    flood opens at most ``BACKLOG`` local connections.
    """

    LOCAL_TIMEOUT = 10.0
    BACKLOG = SYN_BACKLOG

    def __init__(self, vpn, spec: RemoteSpec):
        self.vpn = vpn
        self.spec = spec
        self.listener = None
        self._tasks: set[asyncio.Task] = set()
        self.accepted = 0
        self.refused = 0
        self.open = 0                   # local connections alive

    async def start(self) -> None:
        self._check_bind()
        self.listener = self.vpn.listen_deferred(self.spec.vport, self._on_syn,
                                                 backlog=self.BACKLOG)
        log.info("exposing %s", self.spec)

    def _check_bind(self) -> None:
        """A BIND of a family the tunnel lacks, or an address that is not the virtual
        IP of its family, is the user's mistake: said once, before listening."""
        spec = self.spec
        if spec.family is None:
            return
        has4, has6 = tunnel_families(self.vpn)
        name = "IPv6" if spec.family == 6 else "IPv4"
        if not (has6 if spec.family == 6 else has4):
            raise ConfigError(f"-R {hostport(spec.bind, spec.vport)}:...: the tunnel has "
                              f"no {name} address to listen on")
        if ipaddress.ip_address(spec.bind).is_unspecified:
            return
        info = getattr(getattr(self.vpn, "tunnel", None), "info", None)
        mine = getattr(info, "virtual_ip6" if spec.family == 6 else "virtual_ip", None)
        if mine and ipaddress.ip_address(mine) != ipaddress.ip_address(spec.bind):
            raise ConfigError(f"-R {hostport(spec.bind, spec.vport)}:...: {spec.bind} is "
                              f"not the tunnel's virtual {name} address ({mine})")

    def _on_syn(self, pending) -> None:
        family = self.spec.family
        if family is not None and (6 if ":" in pending.peer[0] else 4) != family:
            # the other family's virtual IP does not listen on this port: a closed port
            self.vpn.refuse(pending)
            log.debug("-R %s: a SYN from %s to the other family's address: RST",
                      self.spec, hostport(*pending.peer))
            return
        task = asyncio.get_running_loop().create_task(self._dial(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, pending) -> None:
        loop = asyncio.get_running_loop()
        local = Half(gauge=self)
        try:
            transport, _ = await asyncio.wait_for(loop.create_connection(
                lambda: local, self.spec.lhost, self.spec.lport), self.LOCAL_TIMEOUT)
        except asyncio.CancelledError:
            if local.transport is not None:    # connected as we were cancelled (close)
                local.transport.abort()
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            if not self.vpn.refuse(pending):
                return                         # reset already (the rule was closed)
            self.refused += 1
            log.info("-R %s: %s from %s: local target failed (%s): RST", self.spec,
                     hostport(self.spec.lhost, self.spec.lport), hostport(*pending.peer),
                     exc or type(exc).__name__)
            return
        transport.pause_reading()

        def on_made(remote: Half) -> None:
            remote.attach(transport)
            local.attach(remote.transport)
            if not transport.is_closing():
                transport.resume_reading()

        if self.vpn.accept(pending, lambda: Half(on_made=on_made),
                           on_fail=transport.abort) is None:
            transport.abort()                  # the SYN was reset meanwhile (close)
            return
        self.accepted += 1
        log.debug("-R %s: %s connected", self.spec, hostport(*pending.peer))

    async def close(self) -> None:
        """Stop exposing: unanswered SYNs get RST, dials under way are cancelled (their
        local connections aborted), connections already accepted go on."""
        if self.listener is not None:
            self.vpn.stack.unlisten(self.listener)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def warn_if_public(what: str, bind: str) -> None:
    """Local listeners default to loopback; anything else is the user's explicit choice."""
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        raise ConfigError(f"{what}: bind address {bind!r} is not an IP address") from None
    if not address.is_loopback:
        log.warning("%s listens on %s: reachable from other hosts", what, bind)


def parse_listen(spec: str, option: str) -> tuple[str, int]:
    """``[HOST:]PORT`` for --http-proxy and --socks (HOST defaults to 127.0.0.1; an
    IPv6 address in brackets: ``[::1]:1080``)."""
    parts = _fields(spec, option)
    if len(parts) == 1 and ":" not in parts[0]:
        parts.insert(0, "")
    if len(parts) != 2:
        raise ConfigError(f"{option} {spec}: expected [HOST:]PORT{_IPV6_HINT}")
    return parts[0] or "127.0.0.1", _port(parts[1], "port", spec, option)
