"""The local proxies' credentials: from a private file or the environment (the old
``--socks-auth USER:PASSWORD`` only with a warning), one set for both proxies; the
HTTP proxy asks for them with 407 / ``Proxy-Authenticate: Basic``, for requests and
CONNECT, never forwards nor logs them."""

from __future__ import annotations

import asyncio
import base64
import logging
import os

import pytest

from erebus import credentials as creds
from erebus.credentials import ProxyCredentials, proxy_credentials, read_proxy_auth_file
from erebus.errors import ConfigError
from erebus.runtime.expose import http_proxy
from erebus.runtime.expose.http_proxy import HttpProxy

USER, PASSWORD = "alice", "s3cret:with colon"
GOOD = ProxyCredentials(USER.encode(), PASSWORD.encode())


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def auth_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "proxy-auth"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


# -- where the credentials come from ---------------------------------------------------------

def test_basic_header_checked_exactly():
    assert GOOD.check_basic(basic(USER, PASSWORD))
    assert GOOD.check_basic(b"basic  " + base64.b64encode(f"{USER}:{PASSWORD}".encode()))
    for value in (basic(USER, "wrong"), basic("bob", PASSWORD), basic(USER, PASSWORD + "x"),
                  b"Bearer " + base64.b64encode(f"{USER}:{PASSWORD}".encode()), b"Basic",
                  b"Basic !!!not-base64", b"", basic(USER, PASSWORD)[:-2]):
        assert not GOOD.check_basic(value), value
    assert PASSWORD not in repr(GOOD)


def test_auth_file_like_auth_user_pass(tmp_path):
    got = read_proxy_auth_file(auth_file(tmp_path, f"{USER}\n{PASSWORD}\n"))
    assert got == GOOD
    got, origin = proxy_credentials(auth_file=auth_file(tmp_path, f"{USER}\r\n{PASSWORD}"),
                                    environ={})
    assert (got, origin) == (GOOD, "--proxy-auth-file")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_auth_file_others_can_read_is_refused(tmp_path, mode):
    path = auth_file(tmp_path, f"{USER}\n{PASSWORD}\n", mode)
    with pytest.raises(ConfigError) as info:
        read_proxy_auth_file(path)
    assert str(info.value) == (f"--proxy-auth-file: cannot read {path}: other users may "
                               f"access it (mode {mode:04o}): chmod 600 {path}")


def test_auth_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="username on the first line and the password"):
        read_proxy_auth_file(auth_file(tmp_path, "alice\n"))
    with pytest.raises(ConfigError, match="username is empty"):
        read_proxy_auth_file(auth_file(tmp_path, "\npw\n"))
    with pytest.raises(ConfigError, match="contains ':'"):
        read_proxy_auth_file(auth_file(tmp_path, "a:b\npw\n"))
    with pytest.raises(ConfigError, match="at most 255 bytes"):
        read_proxy_auth_file(auth_file(tmp_path, "alice\n" + "p" * 256 + "\n"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="a FIFO, not a regular file"):
        read_proxy_auth_file(str(fifo))


def test_environment_and_the_old_flag():
    assert proxy_credentials(environ={"EREBUS_PROXY_AUTH": f"{USER}:{PASSWORD}"}) == (
        GOOD, "EREBUS_PROXY_AUTH")
    assert proxy_credentials(environ={}) == (None, None)
    assert proxy_credentials(socks_auth=f"{USER}:{PASSWORD}", environ={}) == (
        GOOD, "--socks-auth")
    with pytest.raises(ConfigError, match="EREBUS_PROXY_AUTH: needs USER:PASSWORD"):
        proxy_credentials(environ={"EREBUS_PROXY_AUTH": "alice"})
    with pytest.raises(ConfigError, match="not both"):
        proxy_credentials(auth_file="x", socks_auth="a:b", environ={})


def test_up_warns_about_socks_auth_and_checks_the_plumbing(tmp_path, caplog):
    """``erebus up --socks-auth`` says why it is a bad idea and what to use; the
    credentials options are checked before the profile is read."""
    from erebus.up import run_up
    missing = str(tmp_path / "missing.ovpn")
    with caplog.at_level(logging.WARNING, logger="erebus"):
        with pytest.raises(ConfigError, match="cannot read the profile"):
            asyncio.run(run_up(missing, socks="0", socks_auth="alice:pw", environ={}))
    assert any("every local user can read it (ps, /proc/PID/cmdline)" in r.getMessage()
               and "--proxy-auth-file" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="--socks-auth needs --socks"):
        asyncio.run(run_up(missing, socks_auth="alice:pw", environ={}))
    path = auth_file(tmp_path, f"{USER}\n{PASSWORD}\n")
    with pytest.raises(ConfigError, match="--proxy-auth-file needs --http-proxy or --socks"):
        asyncio.run(run_up(missing, proxy_auth_file=path, environ={}))
    caplog.clear()
    with pytest.raises(ConfigError, match="cannot read the profile"):
        asyncio.run(run_up(missing, http_proxy="0", proxy_auth_file=path, environ={}))
    assert not [r for r in caplog.records if "--socks-auth" in r.getMessage()]


def test_cli_has_the_options():
    from erebus.cli import _parser
    args = _parser().parse_args(["up", "p.ovpn", "--proxy-auth-file", "f", "--socks", "1"])
    assert args.proxy_auth_file == "f" and args.socks_auth is None


# -- the HTTP proxy against a loopback origin ------------------------------------------------

class LoopbackDialer:
    """Dials the test's origin server on loopback, whatever name is asked for."""

    def __init__(self, port: int):
        self.port = port
        self.dialed = []

    async def dial(self, host, port, factory):
        self.dialed.append((host, port))
        transport, _ = await asyncio.get_running_loop().create_connection(
            factory, "127.0.0.1", self.port)
        return transport


async def origin(received: list):
    """An origin server that records each request head and answers 'hello'."""
    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head)
        if head.startswith(b"PING"):                      # through a CONNECT tunnel
            writer.write(b"PONG")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
        await writer.drain()
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(1 << 20), 5)
    finally:
        writer.close()


def with_proxy(test, credentials=GOOD):
    async def go():
        received = []
        server = await origin(received)
        dialer = LoopbackDialer(server.sockets[0].getsockname()[1])
        proxy = HttpProxy(dialer, "127.0.0.1", 0, credentials=credentials)
        await proxy.start()
        try:
            return await test(proxy, dialer, received)
        finally:
            await proxy.close()
            server.close()
    return asyncio.run(go())


def get(auth: bytes | None = None) -> bytes:
    return (b"GET http://web.lab.test/x HTTP/1.1\r\nhost: web.lab.test\r\n"
            + (b"proxy-authorization: " + auth + b"\r\n" if auth is not None else b"")
            + b"\r\n")


def connect(auth: bytes | None = None) -> bytes:
    return (b"CONNECT web.lab.test:443 HTTP/1.1\r\nhost: web.lab.test:443\r\n"
            + (b"proxy-authorization: " + auth + b"\r\n" if auth is not None else b"")
            + b"\r\n")


@pytest.mark.parametrize("request_", [get, connect])
@pytest.mark.parametrize("auth", [None, basic(USER, "wrong"), basic("bob", PASSWORD),
                                  b"Digest username=alice"])
def test_missing_or_wrong_credentials_get_407(request_, auth, caplog):
    async def test(proxy, dialer, received):
        with caplog.at_level(logging.DEBUG):
            answer = await exchange(proxy.port, request_(auth))
        assert answer.startswith(b"HTTP/1.1 407 Proxy Authentication Required\r\n"), answer
        assert b'\r\nproxy-authenticate: Basic realm="erebus", charset="UTF-8"\r\n' in answer
        assert b"\r\nconnection: close\r\n" in answer
        assert dialer.dialed == [] and received == []
        assert proxy.auth_failures == 1
    with_proxy(test)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong" not in logged and PASSWORD not in logged
    if auth is not None:
        assert auth.decode() not in logged and auth.split()[-1].decode() not in logged


def test_right_credentials_forwarded_without_the_header(caplog):
    async def test(proxy, dialer, received):
        with caplog.at_level(logging.DEBUG):
            answer = await exchange(proxy.port, get(basic(USER, PASSWORD)))
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"hello")
        assert dialer.dialed == [("web.lab.test", 80)]
        assert len(received) == 1 and b"proxy-authorization" not in received[0].lower()
        assert base64.b64encode(PASSWORD.encode()) not in received[0]
    with_proxy(test)
    token = basic(USER, PASSWORD).split()[-1].decode()
    assert all(token not in r.getMessage() and PASSWORD not in r.getMessage()
               for r in caplog.records)


def test_right_credentials_open_a_connect_tunnel():
    async def test(proxy, dialer, received):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(connect(basic(USER, PASSWORD)))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 Connection established\r\n"), head
        writer.write(b"PING\r\n\r\n")
        assert await asyncio.wait_for(reader.read(100), 5) == b"PONG"
        writer.close()
        assert dialer.dialed == [("web.lab.test", 443)]
        assert b"proxy-authorization" not in received[0].lower()
    with_proxy(test)


def test_a_malformed_authorization_header_is_not_logged(caplog):
    async def test(proxy, dialer, received):
        with caplog.at_level(logging.DEBUG):
            answer = await exchange(proxy.port, get(basic(USER, PASSWORD) + b"\x00"))
        assert answer.startswith(b"HTTP/1.1 400 "), answer
    with_proxy(test)
    token = basic(USER, PASSWORD).split()[-1].decode()
    assert caplog.records and all(token not in r.getMessage() for r in caplog.records)


def test_two_authorization_headers_are_refused():
    async def test(proxy, dialer, received):
        data = get(basic(USER, PASSWORD)).replace(
            b"\r\n\r\n", b"\r\nproxy-authorization: " + basic(USER, PASSWORD) + b"\r\n\r\n")
        answer = await exchange(proxy.port, data)
        assert answer.startswith(b"HTTP/1.1 407 "), answer
    with_proxy(test)


def test_without_credentials_no_auth_is_asked():
    async def test(proxy, dialer, received):
        answer = await exchange(proxy.port, get())
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    with_proxy(test, credentials=None)


# -- a hostile local client: bounded head, bounded time ----------------------------------------

def test_a_head_that_never_ends_is_cut_after_the_timeout(monkeypatch):
    monkeypatch.setattr(http_proxy, "REQUEST_TIMEOUT", 0.3)

    async def test(proxy, dialer, received):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET http://web.lab.test/ HTTP/1.1\r\nx-slow: ")   # never finished
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await asyncio.wait_for(reader.read(100), 5) == b""        # closed by us
        assert 0.2 < loop.time() - started < 3
        writer.close()
        assert dialer.dialed == []
    with_proxy(test, credentials=None)


def test_an_oversized_head_is_refused():
    async def test(proxy, dialer, received):
        data = (b"GET http://web.lab.test/ HTTP/1.1\r\n"
                + b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(1000)) + b"\r\n")
        assert len(data) > http_proxy.MAX_HEADERS
        answer = await exchange(proxy.port, data)
        assert answer.split(b"\r\n")[0] in (b"HTTP/1.1 431 ", b"HTTP/1.1 400 Bad Request")
        assert dialer.dialed == []
    with_proxy(test, credentials=None)


def test_socks_server_takes_the_same_credentials():
    from erebus.runtime.expose.socks import SocksServer
    server = SocksServer(None, "127.0.0.1", 0, credentials=GOOD)
    assert server.check(USER.encode(), PASSWORD.encode())
    assert not server.check(USER.encode(), b"wrong")
    assert creds.MAX_FIELD == 255


def test_socks_handshake_is_bounded_in_size_and_time(monkeypatch):
    """A local client that sends an endless or a never-finished SOCKS handshake is cut:
    after HANDSHAKE_LIMIT bytes, or after HANDSHAKE_TIMEOUT."""
    from erebus.runtime.expose import socks
    monkeypatch.setattr(socks, "HANDSHAKE_TIMEOUT", 0.3)

    async def go():
        server = socks.SocksServer(None, "127.0.0.1", 0, credentials=GOOD)
        await server.start()
        try:
            # greeting, then an auth message that claims more bytes than ever come
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x05\x01\x02")
            assert await reader.readexactly(2) == b"\x05\x02"
            writer.write(b"\x01\xff" + b"u" * 100)              # 255-byte user, 100 sent
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await asyncio.wait_for(reader.read(100), 5) == b""
            assert 0.2 < loop.time() - started < 3
            writer.close()
            # more than HANDSHAKE_LIMIT bytes in one burst: aborted before any parsing
            # (a parsed greeting would be answered 05 ff: no acceptable method)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x05\xff" + b"\x00" * (socks.HANDSHAKE_LIMIT + 10))
            try:
                assert await asyncio.wait_for(reader.read(100), 0.25) == b""
            except ConnectionResetError:
                pass
            writer.close()
        finally:
            await server.close()
    asyncio.run(go())


@pytest.mark.parametrize("bad", [
    b"GET http://alice:t0kenSECRET@web.lab.test/x HTTP/1.1 extra\r\nhost: w\r\n\r\n",
    b"GET /x HTTP/1.1\r\nhost: w\r\nproxy-authorization t0kenSECRET\r\n\r\n",
    b"GET /x?key=t0kenSECRET HTTP/1.1\r\nhost: w\r\nhost: v\r\n\r\n"])
def test_a_malformed_request_is_neither_logged_nor_echoed(bad, caplog):
    async def test(proxy, dialer, received):
        with caplog.at_level(logging.DEBUG):
            answer = await exchange(proxy.port, bad)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
        assert answer.endswith(b"\r\n\r\nBad request: malformed HTTP\n"), answer
        assert dialer.dialed == [] and proxy.errors == 1
    with_proxy(test, credentials=None)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "t0kenSECRET" not in logged and "RemoteProtocolError, status 400" in logged
