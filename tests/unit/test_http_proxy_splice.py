"""The HTTP proxy's absolute-URI path (erebus/runtime/expose/http_proxy.py): h11 parses
the heads, a body framed by Content-Length or by the close is spliced origin transport
to client transport; keep-alive goes on after it; hostile origins get a clear outcome.
Everything on loopback: a scripted origin server, the proxy, a client that reads with
h11."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket

import h11

from erebus.runtime.expose import http_proxy
from erebus.runtime.expose.http_proxy import HttpProxy

TIMEOUT = 10


class LoopbackDialer:
    """Dials the test's origin on loopback, whatever name is asked for."""

    def __init__(self, port: int):
        self.port = port
        self.dialed = 0

    async def dial(self, host, port, factory):
        self.dialed += 1
        transport, _ = await asyncio.get_running_loop().create_connection(
            factory, "127.0.0.1", self.port)
        return transport


class Origin:
    """Answers every request head with ``answers[i]`` (bytes, or a callable of the
    writer), for the i-th request overall; ``close_after`` closes the connection."""

    def __init__(self, answers, close_after=()):
        self.answers = answers
        self.close_after = set(close_after)
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                i = len(self.requests)
                self.requests.append(head)
                writer.write(self.answers[i])
                await writer.drain()
                if i in self.close_after:
                    return
        finally:
            writer.close()


def run(origin: Origin, test):
    async def go():
        server = await asyncio.start_server(origin.handle, "127.0.0.1", 0)
        dialer = LoopbackDialer(server.sockets[0].getsockname()[1])
        proxy = HttpProxy(dialer, "127.0.0.1", 0)
        await proxy.start()
        try:
            return await asyncio.wait_for(test(proxy, dialer), TIMEOUT)
        finally:
            await proxy.close()
            server.close()
    return asyncio.run(go())


def get(path: str = "/x", extra: bytes = b"") -> bytes:
    return (f"GET http://web.lab.test{path} HTTP/1.1\r\nhost: web.lab.test\r\n".encode()
            + extra + b"\r\n")


class Client:
    """A client connection to the proxy whose responses h11 reads."""

    async def open(self, port: int) -> "Client":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.conn = h11.Connection(h11.CLIENT)
        return self

    def send(self, request: bytes) -> None:
        self.writer.write(request)

    async def response(self, method=b"GET", target=b"/x"):
        """(status, headers, body, complete): complete is False when the connection
        ended inside the body."""
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        self.conn.send(h11.Request(method=method, target=target,
                                   headers=[(b"host", b"web.lab.test")]))
        self.conn.send(h11.EndOfMessage())
        head, body = None, bytearray()
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:          # the connection ended in the body
                return head.status_code, dict(head.headers), bytes(body), False
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return head.status_code, dict(head.headers), bytes(body), True
            else:
                return (head.status_code if head else None,
                        dict(head.headers) if head else {}, bytes(body), False)

    async def closed(self) -> bool:
        """The proxy closed the connection (EOF, nothing more)."""
        return await self.reader.read(1) == b""

    def close(self) -> None:
        self.writer.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n" % (len(body), extra) + body


BIG = random.Random(18).randbytes(8 * 1024 * 1024 + 7)


def test_a_large_body_is_spliced_byte_exact_and_keep_alive_goes_on():
    origin = Origin([ok(BIG), ok(b"second")])

    async def test(proxy, dialer):
        c = await Client().open(proxy.port)
        c.send(get())
        status, headers, body, complete = await c.response()
        assert status == 200 and complete
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(BIG).hexdigest()
        assert headers[b"content-length"] == str(len(BIG)).encode()
        assert headers[b"via"] == b"1.1 erebus"
        c.send(get("/y"))                                # the same client connection
        status, _, body, complete = await c.response(target=b"/y")
        assert (status, body, complete) == (200, b"second", True)
        c.close()
        return proxy.spliced, dialer.dialed

    spliced, dialed = run(origin, test)
    assert spliced == 2
    assert dialed == 1 and origin.connections == 1       # the origin connection reused
    assert origin.requests[1].startswith(b"GET /y HTTP/1.1\r\n")


def test_pipelined_requests_are_answered_in_order():
    origin = Origin([ok(b"a" * 100000), ok(b"b" * 3)])

    async def test(proxy, dialer):
        c = await Client().open(proxy.port)
        c.send(get("/a") + get("/b"))                    # both before any answer
        first = await c.response(target=b"/a")
        second = await c.response(target=b"/b")
        c.close()
        return first, second

    first, second = run(origin, test)
    assert first[0] == 200 and first[2] == b"a" * 100000 and first[3]
    assert second[0] == 200 and second[2] == b"bbb" and second[3]


def test_a_body_framed_by_the_close_is_spliced_and_the_client_connection_closes():
    body = random.Random(1).randbytes(300000)
    origin = Origin([b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n"
                     + body], close_after={0})

    async def test(proxy, dialer):
        c = await Client().open(proxy.port)
        c.send(get())
        status, headers, got, complete = await c.response()
        closed = await c.closed()
        c.close()
        return status, headers, got, complete, closed

    status, headers, got, complete, closed = run(origin, test)
    assert status == 200 and complete and closed
    assert headers[b"connection"] == b"close"
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()


def test_a_chunked_body_is_reframed_by_h11_and_keep_alive_goes_on():
    origin = Origin([b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", ok(b"again")])

    async def test(proxy, dialer):
        c = await Client().open(proxy.port)
        c.send(get())
        first = await c.response()
        c.send(get())
        second = await c.response()
        c.close()
        return first, second, proxy.spliced

    first, second, spliced = run(origin, test)
    assert first[0] == 200 and first[2] == b"hello world" and first[3]
    assert first[1][b"transfer-encoding"] == b"chunked"
    assert second[2] == b"again" and spliced == 1          # only the second


def test_both_content_length_and_transfer_encoding_is_refused_with_502():
    origin = Origin([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked"
                     b"\r\n\r\n5\r\nEVIL!\r\n0\r\n\r\n"])

    async def test(proxy, dialer):
        c = await Client().open(proxy.port)
        c.send(get())
        answer = await c.response()
        closed = await c.closed()
        c.close()
        return answer, closed, proxy.errors

    (status, _, body, complete), closed, errors = run(origin, test)
    assert status == 502 and complete and closed and errors == 1
    assert b"both Content-Length and Transfer-Encoding" in body and b"EVIL" not in body


def test_bytes_past_content_length_are_dropped_and_that_origin_connection_not_reused():
    origin = Origin([ok(b"exact") + b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfake",
                     ok(b"honest")])

    async def test(proxy, dialer):
        c = await Client().open(proxy.port)
        c.send(get())
        first = await c.response()
        c.send(get())
        second = await c.response()
        c.close()
        return first, second, proxy.excess_dropped, dialer.dialed

    first, second, dropped, dialed = run(origin, test)
    assert first[2] == b"exact" and first[3]
    assert second[2] == b"honest" and second[3]           # not the smuggled "fake"
    assert dropped == len(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfake")
    assert dialed == 2 and origin.connections == 2


def test_an_origin_closing_short_of_content_length_cuts_the_client_connection():
    origin = Origin([b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + b"z" * 1000],
                    close_after={0})

    async def test(proxy, dialer):
        c = await Client().open(proxy.port)
        c.send(get())
        answer = await c.response()
        c.close()
        return answer, proxy.errors

    (status, _, body, complete), errors = run(origin, test)
    assert status == 200 and not complete                  # the client sees it cut short
    assert body == b"z" * 1000 and errors == 1


def test_a_client_that_does_not_read_pauses_the_origin_and_still_gets_every_byte():
    origin = Origin([ok(BIG)])

    async def test(proxy, dialer):
        paused = asyncio.Event()
        dial = dialer.dial

        async def recording_dial(host, port, factory):
            transport = await dial(host, port, factory)
            pause = transport.pause_reading

            def pause_reading():
                if transport.get_protocol().sink is not None:    # in the body, spliced
                    paused.set()
                pause()
            transport.pause_reading = pause_reading
            return transport
        dialer.dial = recording_dial
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)   # fills soon
        sock.connect(("127.0.0.1", proxy.port))
        sock.setblocking(False)
        c = Client()
        c.reader, c.writer = await asyncio.open_connection(sock=sock)
        c.conn = h11.Connection(h11.CLIENT)
        c.send(get())
        await paused.wait()              # nothing read yet: the proxy stopped the origin
        answer = await c.response()
        c.close()
        return answer

    status, _, body, complete = run(origin, test)
    assert status == 200 and complete
    assert hashlib.sha256(body).digest() == hashlib.sha256(BIG).digest()


def test_what_a_side_buffers_for_its_coroutine_is_bounded():
    class Transport:
        reading = True

        def pause_reading(self):
            self.reading = False

        def resume_reading(self):
            self.reading = True

    side = http_proxy._Side()
    transport = Transport()
    side.connection_made(transport)
    chunk = b"p" * 65536
    sent = 0
    while transport.reading and sent < 64 * 1024 * 1024:     # a peer that never stops
        side.data_received(chunk)
        sent += len(chunk)
    assert not transport.reading
    assert len(side.buffer) < http_proxy.BUFFER_LIMIT + len(chunk)
    assert side.take() == b"p" * sent and transport.reading     # taken: reading resumes
