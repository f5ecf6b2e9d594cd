"""``erebus nc PROFILE HOST PORT``: stdin and stdout spliced to one TCP connection
through the VPN (for ssh's ProxyCommand, git's core.sshCommand, rsync -e).

Either a tunnel of its own for the one connection, or (``--via SOCKET``) the tunnel
of a running ``erebus up --control SOCKET``: one JSON "connect" line, the answer
line, then the socket is the stream (erebus/runtime/control.py).

stdout carries the data, so logs go to stderr only, and nothing below a warning by
default.  EOF on stdin half-closes the connection (shutdown of our sending side) and
the peer's bytes keep coming until it closes; then ``nc`` exits 0.  A refused or
unreachable connection is one line on stderr and exit 1.  Bytes move transport to
transport: a slow stdout pauses the connection's reading (the TCP window closes), a
full connection pauses stdin's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import stat
import sys

from .errors import ErebusError
from .status import unreachable

log = logging.getLogger("erebus.nc")

ANSWER_MAX = 4096          # the control socket's answer line


class NcError(ErebusError):
    """The connection could not be made (refused, unreachable, no such name ...)."""


class _Remote(asyncio.Protocol):
    """The connection's side: its bytes to stdout; its end ends nc."""

    def __init__(self, splice: "Splice"):
        self.splice = splice

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data) -> None:
        self.splice.to_stdout(data)

    def eof_received(self) -> bool:
        self.splice.finish(None)
        return True                      # we close when stdout is flushed

    def pause_writing(self) -> None:
        self.splice.pause_stdin()

    def resume_writing(self) -> None:
        self.splice.resume_stdin()

    def connection_lost(self, exc) -> None:
        self.splice.finish(exc)


class _Stdin(asyncio.Protocol):
    def __init__(self, splice: "Splice"):
        self.splice = splice

    def data_received(self, data) -> None:
        self.splice.to_remote(data)

    def eof_received(self) -> bool:
        self.splice.stdin_eof()
        return False

    def connection_lost(self, exc) -> None:
        if exc is not None:
            self.splice.stdin_eof()


class _Stdout(asyncio.Protocol):
    def __init__(self, splice: "Splice"):
        self.splice = splice
        self.closed = splice.loop.create_future()    # after close(): all written

    def pause_writing(self) -> None:
        self.splice.pause_remote()

    def resume_writing(self) -> None:
        self.splice.resume_remote()

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if exc is not None:              # the reader went away (ssh ended): we are done
            self.splice.finish(exc, stdout_gone=True)


class Splice:
    """stdin -> remote, remote -> stdout, with the pauses between; ``done`` resolves
    to None when the peer closed (cleanly) or the exception that ended it."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.remote: asyncio.Transport | None = None
        self.stdin: asyncio.ReadTransport | None = None
        self.stdout = None               # a write transport, or a _FileWriter
        self.done: asyncio.Future = loop.create_future()
        self.stdin_ended = False
        self.writable = asyncio.Event()   # the remote takes more (for a file on stdin)
        self.writable.set()
        self.stdout_protocol: _Stdout | None = None
        self.reader: asyncio.Task | None = None     # a regular file's, on stdin

    def to_stdout(self, data) -> None:
        self.stdout.write(data)

    def to_remote(self, data) -> None:
        if self.remote is not None and not self.remote.is_closing():
            self.remote.write(data)

    def stdin_eof(self) -> None:
        if self.stdin_ended:
            return
        self.stdin_ended = True
        r = self.remote
        if r is not None and not r.is_closing() and r.can_write_eof():
            r.write_eof()

    def pause_stdin(self) -> None:
        self.writable.clear()
        if self.stdin is not None:
            self.stdin.pause_reading()

    def resume_stdin(self) -> None:
        self.writable.set()
        if self.stdin is not None:
            self.stdin.resume_reading()

    def pause_remote(self) -> None:
        if self.remote is not None and not self.remote.is_closing():
            self.remote.pause_reading()

    def resume_remote(self) -> None:
        if self.remote is not None and not self.remote.is_closing():
            self.remote.resume_reading()

    def finish(self, exc, *, stdout_gone: bool = False) -> None:
        if not self.done.done():
            self.done.set_result(None if stdout_gone else exc)


class _FileWriter:
    """stdout as a regular file (``erebus nc ... > out``): written at once, blocking
    (a file never applies back-pressure)."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, data) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


async def _attach_stdout(splice: Splice, stdout_fd: int) -> None:
    """stdout as a pipe transport (pipes, sockets, ttys); a regular file is written
    directly."""
    if stat.S_ISREG(os.fstat(stdout_fd).st_mode):
        splice.stdout = _FileWriter(stdout_fd)
    else:
        out = os.fdopen(os.dup(stdout_fd), "wb", buffering=0)
        splice.stdout, splice.stdout_protocol = await splice.loop.connect_write_pipe(
            lambda: _Stdout(splice), out)


async def _attach_stdin(splice: Splice, stdin_fd: int) -> None:
    """stdin as a pipe transport; a regular file is read by a thread."""
    loop = splice.loop
    if stat.S_ISREG(os.fstat(stdin_fd).st_mode):
        splice.reader = loop.create_task(_read_file(splice, stdin_fd))
    else:
        src = os.fdopen(os.dup(stdin_fd), "rb", buffering=0)
        splice.stdin, _ = await loop.connect_read_pipe(lambda: _Stdin(splice), src)


async def _read_file(splice: Splice, fd: int) -> None:
    loop = splice.loop
    while True:
        data = await loop.run_in_executor(None, os.read, fd, 65536)
        if not data:
            splice.stdin_eof()
            return
        splice.to_remote(data)
        await splice.writable.wait()       # the remote's pause_writing holds us


async def _flush(splice: Splice) -> None:
    """Close stdout once all is written (a write pipe flushes, then says it is lost)."""
    if splice.stdout_protocol is not None:
        splice.stdout.close()
        await splice.stdout_protocol.closed


async def splice_stdio(connect, *, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """``connect(protocol_factory)`` opens the remote side (raising NcError); then the
    splice runs until the peer closes.  0 on a clean end, 1 on a reset."""
    # the pipe transports make stdin/stdout non-blocking, which a terminal shares with
    # the shell: their modes are put back as they were when nc ends
    modes = {fd: os.get_blocking(fd) for fd in (stdin_fd, stdout_fd)}
    try:
        return await _splice_stdio(connect, stdin_fd, stdout_fd)
    finally:
        for fd, blocking in modes.items():
            try:
                os.set_blocking(fd, blocking)
            except OSError:
                pass


async def _splice_stdio(connect, stdin_fd: int, stdout_fd: int) -> int:
    loop = asyncio.get_running_loop()
    splice = Splice(loop)
    await _attach_stdout(splice, stdout_fd)          # before the peer's first bytes
    try:
        splice.remote = await connect(lambda: _Remote(splice))
    except BaseException:
        await _flush(splice)
        raise
    await _attach_stdin(splice, stdin_fd)
    # ssh sends its ProxyCommand SIGHUP as it exits: leave cleanly (the server is told)
    signals = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, splice.finish, None)
    try:
        exc = await splice.done
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    await _flush(splice)
    if splice.remote is not None:
        splice.remote.close()
    if splice.stdin is not None:
        splice.stdin.close()
    if splice.reader is not None:
        splice.reader.cancel()
    if exc is not None:
        print(f"erebus nc: connection lost: {exc}", file=sys.stderr)
        return 1
    return 0


# -- the two ways to the VPN ------------------------------------------------------------

def _refusal(host: str, port: int, exc: BaseException) -> NcError:
    from .runtime.expose.hostport import hostport
    why = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError) and "refused" not in why:
        why = f"connection refused ({why})"
    return NcError(f"{hostport(host, port)}: {why}")


async def via_tunnel(profile: str, host: str, port: int, *, timeout: float,
                     conn: str | None = None, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """A tunnel of our own for the one connection."""
    from .families import open_tunnel
    from .runtime.expose.dns import VpnResolver
    from .runtime.expose.forward import Dialer
    from .runtime.stack import VpnStack
    tunnel = open_tunnel(profile, conn=conn)
    vpn = None
    try:
        info = await tunnel.connect(timeout=timeout)
        log.info("tunnel up: %s via %s", info.virtual_ip, info.server)
        vpn = VpnStack(tunnel)
        dialer = Dialer(vpn, VpnResolver(vpn, info.dns), timeout=timeout)

        async def connect(factory):
            try:
                return await dialer.dial(host, port, factory)
            except (OSError, ValueError, asyncio.TimeoutError) as exc:
                raise _refusal(host, port, exc) from None

        return await splice_stdio(connect, stdin_fd=stdin_fd, stdout_fd=stdout_fd)
    finally:
        if vpn is not None:
            vpn.close()
        await tunnel.close()


class _ViaControl(asyncio.Protocol):
    """The control socket's side: the answer line first, then a _Remote."""

    def __init__(self):
        self.buf = bytearray()
        self.answer: asyncio.Future = asyncio.get_running_loop().create_future()
        self.inner: asyncio.Protocol | None = None
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
            return
        self.buf += data
        end = self.buf.find(b"\n")
        if end < 0:
            if len(self.buf) > ANSWER_MAX:
                self._answered(NcError("the control socket's answer is too long"))
            return
        line, rest = bytes(self.buf[:end]), bytes(self.buf[end + 1:])
        self.buf = bytearray(rest)
        try:
            answer = json.loads(line)
        except ValueError:
            self._answered(NcError("the control socket did not answer JSON"))
            return
        self._answered(answer)

    def _answered(self, value) -> None:
        if not self.answer.done():
            if isinstance(value, BaseException):
                self.answer.set_exception(value)
            else:
                self.answer.set_result(value)
        if isinstance(value, BaseException):
            self.transport.abort()

    def eof_received(self) -> bool:
        if self.inner is not None:
            return self.inner.eof_received()
        self._answered(NcError("the control socket closed without an answer"))
        return False

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)
        else:
            self._answered(NcError(f"the control socket closed ({exc})" if exc else
                                   "the control socket closed without an answer"))


async def via_control(path: str, host: str, port: int, *, timeout: float,
                      stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Through a running ``erebus up --control PATH``."""
    loop = asyncio.get_running_loop()

    async def connect(factory):
        try:
            transport, proto = await loop.create_unix_connection(_ViaControl, path)
        except OSError as exc:
            raise NcError(unreachable(path, exc)) from None
        transport.write(json.dumps({"cmd": "connect", "host": host,
                                    "port": port}).encode() + b"\n")
        try:
            answer = await asyncio.wait_for(proto.answer, timeout + 5)
        except asyncio.TimeoutError:
            transport.abort()
            raise NcError(f"{path}: no answer in {timeout + 5:g} s") from None
        if not isinstance(answer, dict) or not answer.get("ok"):
            transport.abort()
            why = answer.get("error") if isinstance(answer, dict) else None
            from .runtime.expose.hostport import hostport
            raise NcError(f"{hostport(host, port)}: {why or 'refused by erebus up'}")
        inner = factory()
        inner.connection_made(transport)
        proto.inner = inner
        if proto.buf:
            inner.data_received(bytes(proto.buf))   # bytes that came with the answer
            proto.buf.clear()
        return transport

    return await splice_stdio(connect, stdin_fd=stdin_fd, stdout_fd=stdout_fd)


def main(args, run) -> int:
    """``erebus nc``, from cli.py's parsed ``args``; ``run``: how to run a coroutine."""
    if args.via and args.profile:
        from .errors import ConfigError
        raise ConfigError("nc: give either a PROFILE or --via SOCKET, not both")
    if not args.via and not args.profile:
        from .errors import ConfigError
        raise ConfigError("nc: a PROFILE (or --via SOCKET) is needed")
    if not 0 < args.port < 65536:
        from .errors import ConfigError
        raise ConfigError(f"nc: port {args.port} is out of range 1..65535")
    try:
        if args.via:
            return run(via_control(args.via, args.host, args.port, timeout=args.timeout))
        return run(via_tunnel(args.profile, args.host, args.port, timeout=args.timeout,
                              conn=args.conn))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except socket.gaierror as exc:
        raise NcError(f"{args.host}: {exc}") from None
