"""An HTTP/1.1 forward proxy whose upstream connections go through the VPN.

Absolute-URI requests (``GET http://host/path``) of any method are forwarded with
keep-alive on both sides; hop-by-hop headers are dropped as RFC 9110 7.6.1 asks.  h11
parses every head and the request body; a response body framed by Content-Length or
by the close is then spliced: the origin's transport writes straight into the
client's (no stream buffer, no copy of ours), and a client that does not read pauses
the origin's reading, which closes its TCP window.  After a Content-Length body both
connections go on with a fresh h11 state (what the client pipelined meanwhile
included); a body framed by the close goes out with ``Connection: close``.  A chunked
body goes through h11, de-chunked and re-chunked: Transfer-Encoding is hop-by-hop,
and finding where a chunked body ends needs its parser anyway.  Hostile origins: a
response with both Content-Length and Transfer-Encoding is refused with 502 (RFC 9112
6.3: a smuggling attempt); bytes past the Content-Length are dropped and counted
(``excess_dropped``) and that origin connection is not reused; an origin closing short
of its Content-Length cuts the client's connection, so the client sees the body end
early.  ``CONNECT host:port`` opens a tunnel, spliced transport to transport.
Failures are answered as HTTP: 400 for a malformed request, 407 without the
credentials the proxy asks for, 502 when the VPN side refuses, cannot resolve or is
unreachable, 504 when it does not answer in time.  Parsing is h11's, not ours: a
request's line and headers are at most :data:`MAX_HEADERS` bytes and must arrive
within :data:`REQUEST_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import h11

from .forward import Half, warn_if_public
from .hostport import BadHostPort, hostport, parse_authority

log = logging.getLogger("erebus.http")

BUFFER_LIMIT = 256 * 1024       # bytes a side buffers for its coroutine before it stops reading
MAX_HEADERS = 64 * 1024          # request line + headers (h11 max_incomplete_event_size)
REQUEST_TIMEOUT = 30.0           # for a request's head to arrive (slowloris, idle keep-alive)
RESPONSE_TIMEOUT = 120.0
REALM = b'Basic realm="erebus", charset="UTF-8"'     # RFC 7617 section 2
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                        b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade"})
VIA = (b"via", b"1.1 erebus")


class ProxyError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def absolute_http_uri(target: str) -> tuple[str, int, str, str]:
    """An absolute-form request target (RFC 9112 3.2.2, RFC 3986): (host, port, the
    authority for Host, the origin-form path and query).  ProxyError(400) saying why
    for anything else: another scheme, no or a bad authority (an IPv6 host goes in
    brackets: ``http://[2001:2::1]:8080/``)."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() != "http":
        if sep and scheme.lower() == "https":
            raise ProxyError(400, "https:// URLs go through CONNECT")
        raise ProxyError(400, "a proxy request needs an absolute http:// URI "
                              "(or CONNECT)")
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if at >= 0:
            end = min(end, at)
    authority, tail = rest[:end], rest[end:]
    authority = authority.rpartition("@")[2]       # userinfo (deprecated): never sent on
    try:
        host, port = parse_authority(authority, default_port=80)
    except BadHostPort as exc:
        raise ProxyError(400, f"bad host in the URI: {exc}") from None
    path = tail.partition("#")[0]
    if not path.startswith("/"):
        path = "/" + path
    return host, port, authority, path


def _status_for(exc: BaseException) -> int:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return 504
    return 502


def end_to_end(headers, *, keep_te: bool = False) -> list[tuple[bytes, bytes]]:
    """Headers without the hop-by-hop ones (and those the Connection header names)."""
    named = set()
    for name, value in headers:
        if name == b"connection":
            named.update(v.strip().lower() for v in value.split(b","))
    out = []
    for name, value in headers:
        if name in named or (name in HOP_BY_HOP and not (
                keep_te and name == b"transfer-encoding")):
            continue
        out.append((name, value))
    return out


class _Side(asyncio.Protocol):
    """One connection of the proxy (the client's or the origin's), read by a coroutine
    while heads are parsed: what arrives is buffered (at most :data:`BUFFER_LIMIT`
    bytes: reading pauses above it) until :meth:`read` takes it.  While a response
    body is spliced, ``sink`` takes every chunk as it arrives instead (no buffer, no
    copy), ``on_end(exc)`` hears of the EOF or the loss, and ``source`` (the transport
    spliced into this one) stops reading while this side's transport cannot take more:
    back-pressure from the client to the origin's TCP window."""

    def __init__(self, on_made: Callable[["_Side"], None] | None = None):
        self.on_made = on_made
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        self.write_paused = False
        self.sink: Callable[[bytes], None] | None = None
        self.on_end: Callable[[BaseException | None], None] | None = None
        self.source: asyncio.Transport | None = None
        self._waiter: asyncio.Future | None = None
        self._paused = False            # reading paused by our buffer limit

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data) -> None:
        if self.sink is not None:
            self.sink(data)
            return
        self.buffer += data
        if len(self.buffer) >= BUFFER_LIMIT and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        if self.on_end is not None:
            self.on_end(None)
        self._wake()
        return True                     # CONNECT half-close: our sending side stays open

    def connection_lost(self, exc) -> None:
        self.lost = self.eof = True
        if self.on_end is not None:
            self.on_end(exc or ConnectionResetError("connection lost"))
        self.write_paused = False
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.source is not None:
            self.source.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.source is not None:
            self.source.resume_reading()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self) -> bytes:
        """What is buffered, now (reading resumes)."""
        data = bytes(self.buffer)
        self.buffer.clear()
        if self._paused:
            self._paused = False
            if not self.lost:
                self.transport.resume_reading()
        return data

    async def read(self) -> bytes:
        """What is buffered, once there is some; b"" at EOF."""
        while not self.buffer and not self.eof:
            await self._wait()
        return self.take()

    def write(self, data) -> None:
        if not self.lost:
            self.transport.write(data)

    async def drain(self) -> None:
        while self.write_paused and not self.lost:
            await self._wait()
        if self.lost:
            raise ConnectionResetError("connection lost")


class _Upstream:
    """One connection to an origin server through the VPN, reusable while keep-alive."""

    def __init__(self, key, side: _Side):
        self.key = key
        self.side = side
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)
        self.spliced_keep_alive = False     # a spliced body ended where it should

    def send(self, event) -> None:
        data = self.conn.send(event)
        if data:
            self.side.write(data)

    async def next_event(self, timeout: float | None = None):
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await asyncio.wait_for(self.side.read(), timeout))

    @property
    def reusable(self) -> bool:
        side = self.side
        if side.eof or side.buffer:         # closed, or sent what nobody asked for
            return False
        if self.spliced_keep_alive:
            return True
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    def start_next_cycle(self) -> None:
        if self.spliced_keep_alive:         # h11 never saw the body: a fresh one
            self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)
            self.spliced_keep_alive = False
        else:
            self.conn.start_next_cycle()

    def close(self) -> None:
        if self.side.transport is not None:
            self.side.transport.close()


def _tokens(headers, name: bytes) -> set[bytes]:
    out = set()
    for n, value in headers:
        if n == name:
            out.update(v.strip().lower() for v in value.split(b","))
    return out


def _content_length(headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)               # h11 validated it (digits, one value)
    return None


def _head(response: h11.Response, headers) -> bytes:
    """A response head for a body framed by the close (RFC 9112 6.3 item 8): h11 would
    re-frame it as chunked for an HTTP/1.1 client, which a splice cannot."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (response.status_code, response.reason)]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines.append(b"connection: close\r\n\r\n")
    return b"".join(lines)


class _Client:
    """One client connection: its side, its h11 state (replaced by a fresh one after a
    spliced response, which h11 never saw), the upstream kept alive for it."""

    def __init__(self, side: _Side):
        self.side = side
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self.upstream: _Upstream | None = None
        self.cycled = False             # conn replaced: already at the next cycle
        self.must_close = False         # a spliced response framed by the close

    async def next_event(self):
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.side.read())

    def send(self, event) -> None:
        data = self.conn.send(event)
        if data:
            self.side.write(data)


class HttpProxy:
    """``credentials``: the username and password clients must send in
    ``Proxy-Authorization: Basic`` (RFC 7617, RFC 9110 11.7.2) for every request and
    CONNECT; without them, or with others, the answer is 407 and the connection
    closes.  The header is never forwarded and never logged."""

    def __init__(self, dialer, bind: str, port: int, *, credentials=None):
        self.dialer = dialer
        self.bind, self.port = bind, port
        self.credentials = credentials
        self.server = None
        self.requests = self.tunnels = self.errors = self.auth_failures = 0
        self.spliced = 0                # response bodies spliced origin -> client
        self.excess_dropped = 0         # bytes an origin sent past its Content-Length
        self.open = 0                   # client connections alive
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        warn_if_public("--http-proxy", self.bind)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accept, self.bind, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("HTTP proxy on %s%s", hostport(self.bind, self.port),
                 " (username/password required)" if self.credentials else "")

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _accept(self) -> _Side:
        return _Side(on_made=self._on_client)

    def _on_client(self, side: _Side) -> None:
        task = asyncio.get_running_loop().create_task(self._client(side))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self, host: str, port: int) -> _Side:
        side = _Side()
        await self.dialer.dial(host, port, lambda: side)
        return side

    # -- one client connection --------------------------------------------------------

    async def _client(self, side: _Side):
        client = _Client(side)
        peer = side.transport.get_extra_info("peername")
        self.open += 1
        send = client.send
        try:
            while True:
                try:
                    event = await asyncio.wait_for(client.next_event(), REQUEST_TIMEOUT)
                except asyncio.TimeoutError:
                    log.debug("HTTP proxy: %s sent no complete request in %.0f s", peer,
                              REQUEST_TIMEOUT)
                    break
                except h11.RemoteProtocolError as exc:
                    # h11's text quotes the offending line (a URL with userinfo or a
                    # token, a credential header): neither logged nor echoed
                    self.errors += 1
                    status = exc.error_status_hint or 400
                    log.info("HTTP proxy: bad request from %s: %s, status %d (the "
                             "request is not shown: it may hold a secret)", peer,
                             type(exc).__name__, status)
                    if client.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        self._error(send, status, "Bad request: malformed HTTP")
                    break
                if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    break
                if not isinstance(event, h11.Request):
                    break
                self.requests += 1
                if self.credentials is not None and not self._authorized(event, peer):
                    self.auth_failures += 1
                    self._error(send, 407, "Proxy authentication required",
                                [(b"proxy-authenticate", REALM)])
                    break
                if event.method == b"CONNECT":
                    await self._connect(client, event)
                    return
                client.cycled = False
                try:
                    await self._forward(client, event)
                except ProxyError as exc:
                    self.errors += 1
                    log.info("HTTP proxy: %s %s: %s", event.method.decode(),
                             event.target.decode(errors="replace"), exc)
                    if client.upstream is not None:
                        client.upstream.close()
                        client.upstream = None
                    if not client.cycled and client.conn.our_state is h11.SEND_RESPONSE:
                        self._error(send, exc.status, str(exc))
                        await self._drain_request(client)
                    else:
                        break                 # a response had started: cut it short
                if client.must_close:
                    break
                if not client.cycled:
                    conn = client.conn
                    if conn.our_state is h11.MUST_CLOSE or \
                            conn.their_state is h11.MUST_CLOSE:
                        break
                    try:
                        conn.start_next_cycle()
                    except h11.LocalProtocolError:
                        break
                await side.drain()
        except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError) as exc:
            log.debug("HTTP proxy: %s: %s", peer, exc)
        finally:
            self.open -= 1
            if client.upstream is not None:
                client.upstream.close()
            side.transport.close()

    def _authorized(self, request: h11.Request, peer) -> bool:
        values = [v for name, v in request.headers if name == b"proxy-authorization"]
        if len(values) == 1 and self.credentials.check_basic(values[0]):
            return True
        if values:
            log.warning("HTTP proxy: authentication failed from %s", peer)
        else:
            log.info("HTTP proxy: %s sent no credentials (407)", peer)
        return False

    def _error(self, send, status: int, message: str, extra=()) -> None:
        body = (message + "\n").encode()
        reasons = {400: b"Bad Request", 407: b"Proxy Authentication Required",
                   502: b"Bad Gateway", 504: b"Gateway Timeout"}
        send(h11.Response(status_code=status, reason=reasons.get(status, b""),
                          headers=[(b"content-type", b"text/plain; charset=utf-8"),
                                   (b"content-length", str(len(body)).encode()),
                                   *extra, (b"connection", b"close"), VIA]))
        send(h11.Data(data=body))
        send(h11.EndOfMessage())

    async def _drain_request(self, client: _Client) -> None:
        """Read what is left of the client's request body after an early error."""
        while client.conn.their_state is h11.SEND_BODY:
            event = await client.next_event()
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break

    async def _forward(self, client: _Client, request: h11.Request) -> None:
        target = request.target.decode("ascii", "replace")
        host, port, authority, path = absolute_http_uri(target)
        key = (host, port)
        upstream = client.upstream
        if upstream is not None and (upstream.key != key or not upstream.reusable):
            upstream.close()
            upstream = client.upstream = None
        if upstream is not None:
            upstream.start_next_cycle()
        else:
            try:
                side = await self._open(host, port)
            except (OSError, ValueError) as exc:
                raise ProxyError(_status_for(exc),
                                 f"{hostport(host, port)}: {exc}") from None
            upstream = client.upstream = _Upstream(key, side)
        where = hostport(host, port)
        # RFC 9112 3.2.2: the Host of an absolute-form request is the URI's authority,
        # whatever Host the client sent
        headers = [(b"host", authority.encode())] + [
            (name, value) for name, value in end_to_end(request.headers, keep_te=True)
            if name != b"host"]
        headers.append(VIA)
        try:
            upstream.send(h11.Request(method=request.method, target=path.encode(),
                                      headers=headers))
            # the request body, streamed
            while True:
                event = await client.next_event()
                if isinstance(event, h11.Data):
                    upstream.send(h11.Data(data=event.data))
                    await upstream.side.drain()
                elif isinstance(event, h11.EndOfMessage):
                    upstream.send(h11.EndOfMessage(headers=event.headers))
                    break
                else:
                    raise ProxyError(400, "the request ended early")
            await upstream.side.drain()
            # the response head
            while True:
                try:
                    event = await upstream.next_event(RESPONSE_TIMEOUT)
                except asyncio.TimeoutError:
                    raise ProxyError(504, f"{where} sent no response in "
                                          f"{RESPONSE_TIMEOUT:.0f} s") from None
                if isinstance(event, h11.InformationalResponse):
                    continue                     # 1xx: not forwarded (no Expect support)
                if isinstance(event, h11.Response):
                    break
                raise ProxyError(502, f"{where} closed without a response")
            response = event
            length = _content_length(response.headers)
            chunked = any(name == b"transfer-encoding" for name, _ in response.headers)
            if chunked and length is not None:
                # RFC 9112 6.3 item 3: "ought to be handled as an error" (smuggling)
                raise ProxyError(502, f"{where} answered with both Content-Length and "
                                      "Transfer-Encoding: refused")
            out_headers = end_to_end(response.headers) + [VIA]
            has_body = request.method != b"HEAD" and response.status_code not in (204, 304)
            if has_body and not chunked and (length is None or length > 0):
                await self._splice_body(client, upstream, request, response, out_headers,
                                        length, where)
                return
            # chunked (h11 de-chunks, h11 re-chunks: the framing is per hop) or no body
            client.send(h11.Response(status_code=response.status_code,
                                     reason=response.reason, headers=out_headers))
            while True:
                event = await upstream.next_event(RESPONSE_TIMEOUT)
                if isinstance(event, h11.Data):
                    client.side.write(b"".join(client.conn.send_with_data_passthrough(
                        h11.Data(data=event.data))))
                    await client.side.drain()
                elif isinstance(event, h11.EndOfMessage):
                    client.send(h11.EndOfMessage())
                    break
                else:
                    raise ProxyError(502, f"{where} cut the response short")
        except h11.RemoteProtocolError as exc:
            raise ProxyError(502, f"{where} answered malformed HTTP: {exc}") from None
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            raise ProxyError(_status_for(exc), f"{where}: {exc or 'lost'}") from None
        if not upstream.reusable:
            upstream.close()
            client.upstream = None

    async def _splice_body(self, client: _Client, upstream: _Upstream,
                           request: h11.Request, response: h11.Response, headers,
                           length: int | None, where: str) -> None:
        """A body framed by Content-Length (``length``) or by the close (None): the
        head goes out through h11 (or :func:`_head`), then the origin's transport
        writes straight into the client's (:class:`_Side` sink), reading paused while
        the client's transport is full.  Bytes past the Content-Length are dropped and
        counted, and that origin connection is not reused; an origin that closes short
        of it cuts the client's connection (the client sees the body end early)."""
        close_framed = length is None
        if close_framed:
            client.side.write(_head(response, headers))
            client.must_close = True
        else:
            client.send(h11.Response(status_code=response.status_code,
                                     reason=response.reason, headers=headers))
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        up, down = upstream.side, client.side
        remaining = length
        excess = 0

        def sink(data) -> None:
            nonlocal remaining, excess
            if close_framed:
                down.write(data)
                return
            n = len(data)
            if remaining >= n:
                if n:
                    down.write(data)
                remaining -= n
            else:
                if remaining:
                    down.write(memoryview(data)[:remaining])
                excess += n - remaining
                remaining = 0
            if remaining == 0 and not done.done():
                done.set_result(None)

        def on_end(exc) -> None:
            if done.done():
                return
            if close_framed and exc is None:
                done.set_result(None)
            elif close_framed:
                done.set_exception(ProxyError(502, f"{where}: {exc}"))
            else:
                done.set_exception(ProxyError(502, f"{where} closed {remaining} bytes "
                                                   "short of its Content-Length"))

        def client_end(exc) -> None:
            if exc is not None and not done.done():
                done.set_exception(ConnectionResetError("the client went away"))

        # what h11 and our buffer hold already, in order, then the transport itself;
        # back-pressure is the protocols': the client's pause_writing pauses the
        # origin's reading (down.source), resume_writing resumes it
        first, _ = upstream.conn.trailing_data
        up.sink, up.on_end = sink, on_end
        down.source, down.on_end = up.transport, client_end
        self.spliced += 1
        try:
            sink(first)
            sink(up.take())
            if up.eof:
                on_end(ConnectionResetError("lost") if up.lost else None)
            if down.lost:
                client_end(ConnectionResetError("lost"))
            if down.write_paused:
                up.transport.pause_reading()
            while True:
                seen = (remaining, excess, up.transport.get_write_buffer_size())
                try:
                    await asyncio.wait_for(asyncio.shield(done), RESPONSE_TIMEOUT)
                    break
                except asyncio.TimeoutError:
                    if seen == (remaining, excess, up.transport.get_write_buffer_size()) \
                            and not down.write_paused and not close_framed:
                        raise ProxyError(504, f"{where} sent nothing of the body for "
                                              f"{RESPONSE_TIMEOUT:.0f} s") from None
            done.result()
        finally:
            up.sink = up.on_end = down.source = down.on_end = None
            if not done.done():
                done.cancel()
            if not up.lost and not up.transport.is_closing():
                up.transport.resume_reading()
        if excess:
            self.excess_dropped += excess
            log.info("HTTP proxy: %s sent %d bytes past its Content-Length: dropped, "
                     "connection not reused", where, excess)
        await down.drain()
        # keep-alive after a spliced body: h11 saw neither body, so both connections get
        # a fresh h11 state (the client's with what it pipelined meanwhile)
        if close_framed:
            upstream.close()
            client.upstream = None
            return
        if excess or response.http_version != b"1.1" or \
                b"close" in _tokens(response.headers, b"connection"):
            upstream.close()
            client.upstream = None
        else:
            upstream.spliced_keep_alive = True
        if request.http_version != b"1.1" or \
                b"close" in _tokens(request.headers, b"connection"):
            client.must_close = True
            return
        pipelined, _ = client.conn.trailing_data
        client.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        if pipelined:
            client.conn.receive_data(pipelined)
        client.cycled = True

    async def _connect(self, client: _Client, request: h11.Request) -> None:
        send = client.send
        target = request.target.decode("ascii", "replace")
        try:
            host, port = parse_authority(target)
        except BadHostPort as exc:
            self.errors += 1
            self._error(send, 400, f"CONNECT needs host:port ([2001:2::1]:443 for an IPv6 "
                                   f"address): {exc}")
            await client.side.drain()
            return
        try:
            up = await self._open(host, port)
        except (OSError, ValueError) as exc:
            self.errors += 1
            log.info("HTTP proxy: CONNECT %s: %s", target, exc)
            self._error(send, _status_for(exc), f"{target}: {exc}")
            await client.side.drain()
            return
        self.tunnels += 1
        send(h11.Response(status_code=200, reason=b"Connection established",
                          headers=[VIA]))
        leftover, _ = client.conn.trailing_data
        await splice(client.side, up, leftover)


class _Spliced(Half):
    """A :class:`Half` that says when its connection is gone."""

    def __init__(self, transport):
        super().__init__()
        self.transport = transport
        self.gone = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if not self.gone.done():
            self.gone.set_result(None)


async def splice(a: _Side, b: _Side, first: bytes = b"") -> None:
    """Transport to transport, both ways, until both connections are gone (half-close
    propagated): what was read already goes first, then each transport's protocol
    becomes a :class:`Half` writing into the other."""
    halves = []
    for side in (a, b):
        half = _Spliced(side.transport)
        side.transport.set_protocol(half)
        halves.append(half)
    ha, hb = halves
    ha.peer, hb.peer = b.transport, a.transport
    # what was read before the switch, in order; then what the switch came too late for
    for side, data in ((b, first + a.take()), (a, b.take())):
        if data:
            side.transport.write(data)
    for side, half in ((a, ha), (b, hb)):
        if side.lost:
            half.connection_lost(None)        # the transport will not say it again
        elif side.eof:
            half.eof_received()
        elif not side.transport.is_closing():
            side.transport.resume_reading()
    await asyncio.gather(ha.gone, hb.gone)
