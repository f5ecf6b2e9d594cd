"""The control socket of ``erebus up --control`` against in-process fakes: the mode,
stale sockets, SO_PEERCRED refusal (a fake uid check), the bounded request line, bad
JSON, the idle timeout, status, connect spliced to a local echo server; ``erebus nc
--via`` through it; the status rendering and --watch."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import stat
import threading

import pytest

from erebus import status as status_client
from erebus.errors import ConfigError
from erebus.runtime.control import ControlServer, State, bind_private, peer_uid, snapshot
from erebus.runtime.expose.forward import Half


def _status():
    return {"state": "up", "bytes_in": 5}


async def _ask(path: str, raw: bytes, *, eof: bool = False) -> bytes:
    """Send raw bytes, read the whole answer (until the server closes)."""
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(raw)
    if eof:
        writer.write_eof()
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_socket_is_private_and_removed_on_close(tmp_path):
    path = str(tmp_path / "ctl")

    async def go():
        server = ControlServer(path, _status)
        old = os.umask(0)                  # even under a permissive umask
        try:
            await server.start()
        finally:
            os.umask(old)
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        await server.close()
        assert not os.path.exists(path)

    _run(go())


def test_stale_socket_replaced_other_files_refused(tmp_path):
    path = str(tmp_path / "ctl")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()                         # a socket file nobody listens on
    sock = bind_private(path)
    sock.close()
    os.unlink(path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a socket"):
        bind_private(str(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "x"
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(1)
    try:
        with pytest.raises(ConfigError, match="another process"):
            bind_private(path)
    finally:
        live.close()


def test_status_line_and_errors(tmp_path):
    path = str(tmp_path / "ctl")

    async def go():
        server = ControlServer(path, _status, request_max=64)
        await server.start()
        try:
            answer = json.loads(await _ask(path, b'{"cmd": "status"}\n'))
            assert answer == {"ok": True, "status": {"state": "up", "bytes_in": 5}}
            for raw, what in [(b"not json\n", "not a JSON line"),
                              (b"[1, 2]\n", "not a JSON object"),
                              (b'{"cmd": "reboot"}\n', "unknown command"),
                              (b'{"cmd": "connect", "host": "h", "port": 0}\n', "port"),
                              (b'{"cmd": "connect", "host": 5, "port": 22}\n', "host"),
                              (b'{"cmd": "connect", "host": "h", "port": true}\n', "port"),
                              (b"x" * 100, "longer than 64 bytes"),
                              (b'{"cmd":' + b" " * 80 + b'"status"}\n', "longer than 64"),
                              (b"\xff\xfe\n", "not a JSON line")]:
                data = await _ask(path, raw)
                assert data.count(b"\n") == 1, raw       # one line, then closed
                answer = json.loads(data)
                assert answer["ok"] is False and what in answer["error"], (raw, answer)
            data = await _ask(path, b'{"cmd"', eof=True)
            assert "before EOF" in json.loads(data)["error"]
            # no connect through a tunnel that is not up yet
            data = await _ask(path, b'{"cmd": "connect", "host": "h", "port": 22}\n')
            assert "no tunnel" in json.loads(data)["error"]
            assert server.errors == 11
        finally:
            await server.close()

    _run(go())


def test_idle_client_timed_out(tmp_path):
    path = str(tmp_path / "ctl")

    async def go():
        server = ControlServer(path, _status, idle_timeout=0.05)
        await server.start()
        try:
            data = await _ask(path, b'{"cmd": ')     # never finishes its line
            assert "no request line" in json.loads(data)["error"]
        finally:
            await server.close()

    _run(go())


def test_other_uid_refused(tmp_path, caplog):
    path = str(tmp_path / "ctl")
    asked = []

    async def go():
        server = ControlServer(path, lambda: asked.append(1) or {},
                               uid_of=lambda sock: 4242, allowed_uids=(1000, 0))
        await server.start()
        try:
            data = await _ask(path, b'{"cmd": "status"}\n')
            assert json.loads(data) == {"ok": False, "error": "permission denied"}
            assert server.refused == 1 and not asked
        finally:
            await server.close()

    _run(go())
    refusals = [r for r in caplog.records if "refused a client" in r.getMessage()]
    assert len(refusals) == 1 and "uid 4242" in refusals[0].getMessage()


def test_peer_uid_is_ours():
    a, b = socket.socketpair(socket.AF_UNIX)
    try:
        assert peer_uid(a) == os.getuid()
    finally:
        a.close()
        b.close()


class EchoDialer:
    """A Dialer stand-in: connects to a local echo server that half-closes when its
    client does; names it does not know are refused."""

    def __init__(self, port: int):
        self.port = port
        self.asked = []

    async def dial(self, host, port, protocol_factory):
        self.asked.append((host, port))
        if host != "echo.vpn.test":
            raise ConnectionRefusedError(f"connection to {host}:{port} refused")
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(protocol_factory, "127.0.0.1",
                                                    self.port)
        return transport


async def _echo_server():
    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()
        writer.write(b"BYE")
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_connect_splices_and_half_closes(tmp_path):
    path = str(tmp_path / "ctl")

    async def go():
        echo, port = await _echo_server()
        server = ControlServer(path, _status, EchoDialer(port))
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(path)
            # the first bytes of the stream may come with the request
            writer.write(b'{"cmd": "connect", "host": "echo.vpn.test", "port": 7}\nearly ')
            answer = json.loads(await reader.readline())
            assert answer["ok"] is True and answer["peer"].startswith("127.0.0.1:")
            writer.write(b"data")
            await writer.drain()
            assert await reader.readexactly(10) == b"EARLY DATA"
            assert server.open == 1
            writer.write_eof()                     # half-close: the answer still comes
            assert await asyncio.wait_for(reader.read(), 5) == b"BYE"
            writer.close()
            # refused: one error line
            data = await _ask(path, b'{"cmd": "connect", "host": "nope", "port": 7}\n')
            answer = json.loads(data)
            assert answer["ok"] is False and "refused" in answer["error"]
            assert server.failed == 1 and server.connected == 1
        finally:
            await server.close()
            echo.close()

    _run(go())


def _pipe_reader(fd: int, out: list) -> threading.Thread:
    def read():
        chunks = []
        while data := os.read(fd, 65536):
            chunks.append(data)
        out.append(b"".join(chunks))
        os.close(fd)
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_nc_via_control(tmp_path):
    from erebus import nc
    path = str(tmp_path / "ctl")
    payload = os.urandom(300_000).hex().lower().encode()     # upper() changes it all

    async def go():
        echo, port = await _echo_server()
        server = ControlServer(path, _status, EchoDialer(port))
        await server.start()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        got: list[bytes] = []
        reader = _pipe_reader(out_r, got)
        writer = threading.Thread(target=lambda: (os.write(in_w, payload), os.close(in_w)),
                                  daemon=True)
        writer.start()
        try:
            rc = await nc.via_control(path, "echo.vpn.test", 7, timeout=5,
                                      stdin_fd=in_r, stdout_fd=out_w)
        finally:
            os.close(in_r)
            os.close(out_w)
            await server.close()
            echo.close()
        await asyncio.get_running_loop().run_in_executor(None, reader.join, 5)
        return rc, got

    rc, got = _run(go())
    assert rc == 0
    assert got == [payload.upper() + b"BYE"]


def test_nc_via_control_refused(tmp_path):
    from erebus import nc
    path = str(tmp_path / "ctl")

    async def go():
        echo, port = await _echo_server()
        server = ControlServer(path, _status, EchoDialer(port))
        await server.start()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            with pytest.raises(nc.NcError, match="nope:7: connection to nope:7 refused"):
                await nc.via_control(path, "nope", 7, timeout=5, stdin_fd=in_r,
                                     stdout_fd=out_w)
        finally:
            for fd in (in_r, in_w, out_r, out_w):
                os.close(fd)
            await server.close()
            echo.close()
        with pytest.raises(nc.NcError, match="is 'erebus up --control"):
            await nc.via_control(path, "nope", 7, timeout=5)

    _run(go())


class FakeInfo:
    kind = "openvpn"
    server = "vpn.lab.test:1194"
    address = "198.18.1.1:1194"
    virtual_ip = "198.18.8.6"
    netmask = "255.255.255.0"
    virtual_ip6 = "2001:2:0:8::1000"
    prefix6 = 64
    cipher = "AES-256-GCM"
    mtu = 1500
    dns = ["198.18.2.53"]
    routes = ["198.18.2.0/24"]
    routes6 = ["2001:2:0:2::/64"]


class FakeCounters:
    dropped_replay = 3
    dropped_data_auth = 0


class FakeDriver:
    drop_kinds = {"dropped_replay": None, "dropped_data_auth": None}


class FakeTunnel:
    info = FakeInfo()
    counters = FakeCounters()
    driver = FakeDriver()
    dropped_down = 2
    rekeys = 4

    def traffic(self):
        return (1000, 2000, 10, 20)


class FakeService:
    def __init__(self, open_):
        self.open = open_
        self.bind, self.port = "127.0.0.1", 3128


def test_snapshot_and_render():
    now = [100.0]
    state = State(clock=lambda: now[0])
    now[0] = 101.0
    state.set("up")
    state.set("reconnecting")
    state.set("up")
    now[0] = 130.0
    http = FakeService(2)
    http.__class__ = type("HttpProxy", (FakeService,), {})
    st = snapshot(FakeTunnel(), [http, object()], state)
    assert json.loads(json.dumps(st)) == st          # plain JSON
    assert st["state"] == "up" and st["reconnects"] == 1 and st["uptime_s"] == 30.0
    assert (st["bytes_in"], st["bytes_out"], st["packets_in"], st["packets_out"]) == \
        (1000, 2000, 10, 20)
    assert st["drops"] == {"replay": 3, "data_auth": 0, "tunnel_down": 2}
    assert st["renegotiations"] == 4
    assert st["connections"] == {"http": 2}
    assert st["services"] == [{"kind": "http", "name": "127.0.0.1:3128", "open": 2}]
    text = status_client.render(st)
    for piece in ("up for 29s", "198.18.8.6/255.255.255.0 and 2001:2:0:8::1000/64",
                  "AES-256-GCM", "1000 B in 10 packets", "2.0 KiB in 20 packets",
                  "replay 3, tunnel_down 2", "rekeys     4, reconnects 1",
                  "http   127.0.0.1:3128: 2 open"):
        assert piece in text, (piece, text)
    assert "data_auth" not in text                    # zero drops are not listed
    # before the tunnel is up: no info yet, still an answer
    empty = type("T", (), {"info": None, "counters": None})()
    st = snapshot(empty, [], State())
    assert st["state"] == "connecting" and st["virtual_ip"] is None
    assert "connecting" in status_client.render(st)


def test_half_counts_open_connections():
    class Gauge:
        open = 0

    class T:
        def is_closing(self):
            return False

    g = Gauge()
    halves = [Half(gauge=g) for _ in range(3)]
    for h in halves:
        h.connection_made(T())
    assert g.open == 3
    halves[0].connection_lost(None)
    halves[0].connection_lost(None)               # counted once
    Half(gauge=g).connection_lost(None)           # never made: not counted
    assert g.open == 2


def test_status_client_errors(tmp_path):
    with pytest.raises(status_client.StatusError, match="is 'erebus up --control"):
        status_client.status(str(tmp_path / "none"))
    path = str(tmp_path / "ctl")

    async def go():
        server = ControlServer(path, _status, uid_of=lambda sock: -1)
        await server.start()
        try:
            loop = asyncio.get_running_loop()
            with pytest.raises(status_client.StatusError, match="permission denied"):
                await loop.run_in_executor(None, status_client.status, path)
        finally:
            await server.close()

    _run(go())


def test_watch_redraws_and_ctrl_c_exits_0(tmp_path):
    path = str(tmp_path / "ctl")
    st = snapshot(FakeTunnel(), [], State())

    async def go():
        server = ControlServer(path, lambda: st)
        await server.start()
        loop = asyncio.get_running_loop()
        out = io.StringIO()
        sleeps = []

        def sleep(s):
            sleeps.append(s)
            if len(sleeps) == 2:
                raise KeyboardInterrupt
        try:
            rc = await loop.run_in_executor(None, lambda: status_client.watch_loop(
                path, out=out, sleep=sleep))
        finally:
            await server.close()
        return rc, out.getvalue(), sleeps

    rc, text, sleeps = _run(go())
    assert rc == 0 and sleeps == [1.0, 1.0]
    assert text.count(status_client.CLEAR) == 2 and text.count("198.18.8.6") == 2
    # the socket gone: exit 1 with the reason
    out = io.StringIO()
    assert status_client.watch_loop(path, out=out, sleep=lambda s: None) == 1
    assert "erebus up --control" in out.getvalue()


def test_a_dialer_bug_is_answered_not_raised(tmp_path, caplog):
    path = str(tmp_path / "ctl")

    class Broken:
        async def dial(self, host, port, factory):
            raise RuntimeError("a bug")

    async def go():
        server = ControlServer(path, _status, Broken())
        await server.start()
        try:
            data = await _ask(path, b'{"cmd": "connect", "host": "h", "port": 1}\n')
            assert json.loads(data) == {"ok": False, "error": "a bug"}
            # and the server still answers
            assert json.loads(await _ask(path, b'{"cmd": "status"}\n'))["ok"] is True
        finally:
            await server.close()

    _run(go())
    assert any("internal error connecting" in r.getMessage() for r in caplog.records)


def test_nc_via_control_with_regular_files_and_blocking_modes_restored(tmp_path):
    """stdin from a file (read by a thread), stdout to a file (written directly); a
    pipe's blocking mode is as it was after nc."""
    from erebus import nc
    path = str(tmp_path / "ctl")
    payload = os.urandom(200_000).hex().lower().encode()
    (tmp_path / "in").write_bytes(payload)

    async def go():
        echo, port = await _echo_server()
        server = ControlServer(path, _status, EchoDialer(port))
        await server.start()
        try:
            with open(tmp_path / "in", "rb") as src, open(tmp_path / "out", "wb") as dst:
                rc = await nc.via_control(path, "echo.vpn.test", 7, timeout=5,
                                          stdin_fd=src.fileno(), stdout_fd=dst.fileno())
            assert rc == 0
            # pipes: blocking before, blocking after
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            got: list[bytes] = []
            reader = _pipe_reader(out_r, got)
            os.close(in_w)                         # EOF at once
            rc = await nc.via_control(path, "echo.vpn.test", 7, timeout=5,
                                      stdin_fd=in_r, stdout_fd=out_w)
            assert rc == 0 and os.get_blocking(in_r) and os.get_blocking(out_w)
            os.close(in_r)
            os.close(out_w)
            await asyncio.get_running_loop().run_in_executor(None, reader.join, 5)
            assert got == [b"BYE"]
        finally:
            await server.close()
            echo.close()

    _run(go())
    assert (tmp_path / "out").read_bytes() == payload.upper() + b"BYE"
