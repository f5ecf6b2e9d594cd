"""Closing a -R rule while local dials are under way: the dials are cancelled and
their local connections closed; nothing answers a SYN the close has reset."""

from __future__ import annotations

import asyncio

from erebus.runtime.expose.forward import RemoteForward, RemoteSpec
from erebus.netstack.stack import NetStack
from erebus.wire.ipv4 import PROTO_TCP, build_ipv4
from erebus.wire.tcp import ACK, RST, SYN, build_tcp
from tests.unit.tcp_link import tcp_flags

VIP = "198.19.1.2"


class FakeVpn:
    """The part of VpnStack a RemoteForward uses, over a sans-IO NetStack."""

    def __init__(self):
        self.stack = NetStack(VIP)
        self.on_syn = None

    def listen_deferred(self, port, on_syn, *, backlog):
        self.on_syn = on_syn
        return self.stack.listen(port, defer=True, backlog=backlog)

    def accept(self, pending, protocol_factory, *, on_fail=None):
        return self.stack.accept(pending, 0.0)

    def refuse(self, pending):
        return self.stack.refuse(pending)

    def deliver(self, packet):
        self.stack.receive(packet, 0.0)
        listener = self.stack.listeners[8080]
        while listener.pending:
            self.on_syn(listener.pending.popleft())


def test_close_cancels_the_dials_and_closes_their_local_connections(monkeypatch):
    async def go():
        loop = asyncio.get_running_loop()
        lost = asyncio.Event()
        connected = asyncio.Event()

        class Local(asyncio.Protocol):
            def connection_made(self, transport):
                connected.set()

            def connection_lost(self, exc):
                lost.set()

        server = await loop.create_server(Local, "127.0.0.1", 0)
        lport = server.sockets[0].getsockname()[1]
        gate = asyncio.Event()                  # never set before the close
        real = loop.create_connection

        async def slow_connection(*args, **kw):
            result = await real(*args, **kw)    # the local target answered ...
            await gate.wait()                   # ... but the dial is not done yet
            return result

        monkeypatch.setattr(loop, "create_connection", slow_connection)
        vpn = FakeVpn()
        rule = RemoteForward(vpn, RemoteSpec(8080, "127.0.0.1", lport))
        await rule.start()
        src = "198.18.200.1"
        vpn.deliver(build_ipv4(src, VIP, PROTO_TCP, build_tcp(
            src, VIP, 40000, 8080, 1000, 0, SYN, 65535, mss=1400)))
        await asyncio.wait_for(connected.wait(), 5)
        tasks = list(rule._tasks)
        await rule.close()
        gate.set()                              # were the dial still running, it ends now
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        await asyncio.wait_for(lost.wait(), 5)  # the local connection was closed
        assert tcp_flags(vpn.stack.output(0.0)) == [RST | ACK]   # the SYN was reset, once
        assert not vpn.stack.conns and rule.accepted == 0
        server.close()
        await server.wait_closed()

    asyncio.run(go())
