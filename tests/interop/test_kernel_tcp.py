"""Our TCP against the Linux kernel's TCP, both roles, clean and impaired.

The stack is attached to a TUN device in a test namespace (tests/tun.py): the kernel
owns 198.18.200.1 and 2001:2:0:200::1, our stack 198.18.200.2 and 2001:2:0:200::2;
every test runs over IPv4 and over IPv6 inside (``v4``/``v6``).  This kernel has no netem, so loss,
duplication, delay and reordering are applied on both directions in Python, between
the TUN device and our stack (``impair``/``impair_rx``).  Every transfer is checked
by SHA-256 on both ends.  Needs root (skipped without, fails under CI=true).
"""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from erebus.runtime.stack import VpnStack
from tests.ci import require
from tests.tun import KernelPeer, missing_prerequisites

pytestmark = pytest.mark.interop

KERNEL_SERVER = r"""
import hashlib, random, socket, sys
host, port, size, seed, mode = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                int(sys.argv[4]), sys.argv[5])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(4)
c, _ = s.accept()
c.settimeout(120)
mss = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
if mode == "send":
    data = random.Random(seed).randbytes(size)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    while c.recv(65536):
        pass
    print(len(data), hashlib.sha256(data).hexdigest(), mss, flush=True)
else:
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b)
        n += len(b)
    print(n, h.hexdigest(), mss, flush=True)
c.close()
"""

KERNEL_CLIENT = r"""
import hashlib, random, socket, sys, threading
host, port, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = random.Random(seed).randbytes(size)
c = socket.create_connection((host, port), timeout=120)
def send():
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b)
    n += len(b)
t.join()
print(n, h.hexdigest(), hashlib.sha256(data).hexdigest(), flush=True)
"""

FAMILIES = pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
IMPAIRED = dict(loss=0.02, duplicate=0.01, reorder=0.05, delay=0.004, jitter=0.002)


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    require(missing_prerequisites(), "TUN kernel peer")


def _kernel(peer) -> str:
    return peer.kernel_ip6 if peer.ipv6 else peer.kernel_ip


def _ours(peer) -> str:
    return peer.our_ip6 if peer.ipv6 else peer.our_ip


def _impair(tunnel, seed):
    tunnel.impair(seed=seed, **IMPAIRED)
    tunnel.impair_rx(seed=seed + 1, **IMPAIRED)


async def _download(impaired: bool, size: int, seed: int, v6: bool):
    async with KernelPeer(ipv6=v6) as peer:
        tunnel = peer.tunnel()
        if impaired:
            _impair(tunnel, seed)
        vpn = VpnStack(tunnel)
        proc = peer.spawn_python(KERNEL_SERVER, _kernel(peer), 5001, size, seed, "send")
        await peer.await_listening(5001)
        reader, writer = await vpn.open_connection(_kernel(peer), 5001, timeout=10)
        h, n = hashlib.sha256(), 0
        while chunk := await asyncio.wait_for(reader.read(1 << 16), 60):
            h.update(chunk)
            n += len(chunk)
        writer.close()
        out, err = await asyncio.to_thread(proc.communicate, timeout=60)
        conn = writer.get_extra_info("tcp")
        vpn.close()
        await tunnel.close()
        return n, h.hexdigest(), out, err, conn, tunnel


async def _upload(impaired: bool, size: int, seed: int, v6: bool):
    data = random.Random(seed).randbytes(size)
    async with KernelPeer(ipv6=v6) as peer:
        tunnel = peer.tunnel()
        if impaired:
            _impair(tunnel, seed)
        vpn = VpnStack(tunnel)
        proc = peer.spawn_python(KERNEL_SERVER, _kernel(peer), 5001, size, seed, "recv")
        await peer.await_listening(5001)
        reader, writer = await vpn.open_connection(_kernel(peer), 5001, timeout=10)
        view = memoryview(data)
        for i in range(0, len(data), 256 * 1024):
            writer.write(view[i:i + 256 * 1024])
            await asyncio.wait_for(writer.drain(), 60)
        writer.write_eof()
        out, err = await asyncio.to_thread(proc.communicate, timeout=90)
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        vpn.close()
        await tunnel.close()
        return hashlib.sha256(data).hexdigest(), out, err


async def _echo_server(impaired: bool, size: int, seed: int, v6: bool):
    """The kernel connects to our listener; we echo; the kernel checks both ways."""
    async with KernelPeer(ipv6=v6) as peer:
        tunnel = peer.tunnel()
        if impaired:
            _impair(tunnel, seed)
        vpn = VpnStack(tunnel)
        served = []
        done = asyncio.Event()

        async def echo(reader, writer):
            n = 0
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
                n += len(chunk)
            writer.close()
            served.append(n)
            done.set()

        await vpn.start_server(echo, 5002)
        proc = peer.spawn_python(KERNEL_CLIENT, _ours(peer), 5002, size, seed)
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        await asyncio.wait_for(done.wait(), 30)   # our side saw the kernel's FIN
        vpn.close()
        await tunnel.close()
        return out, err, served


@FAMILIES
@pytest.mark.parametrize("impaired", [False, True], ids=["clean", "impaired"])
def test_download_from_a_kernel_server(impaired, v6):
    size = 8_000_000 if not impaired else 3_000_000
    n, digest, out, err, conn, tunnel = asyncio.run(_download(impaired, size, 11, v6))
    assert out.split()[:2] == [str(size), digest], err
    assert n == size
    # the MSS both sides use: the MTU less the IP and TCP headers of the family
    assert conn.mss_local == tunnel.info.mtu - (60 if v6 else 40)
    if not impaired:
        assert int(out.split()[2]) <= tunnel.info.mtu - (60 if v6 else 40)
    if impaired:
        assert tunnel.stats.tx_imp.lost + tunnel.stats.rx_imp.lost > 0


@FAMILIES
@pytest.mark.parametrize("impaired", [False, True], ids=["clean", "impaired"])
def test_upload_to_a_kernel_server(impaired, v6):
    size = 8_000_000 if not impaired else 3_000_000
    digest, out, err = asyncio.run(_upload(impaired, size, 12, v6))
    assert out.split()[:2] == [str(size), digest], err


@FAMILIES
@pytest.mark.parametrize("impaired", [False, True], ids=["clean", "impaired"])
def test_kernel_client_to_our_server_echo(impaired, v6):
    size = 4_000_000 if not impaired else 1_500_000
    out, err, served = asyncio.run(_echo_server(impaired, size, 13, v6))
    n, echoed, sent = out.split()
    assert int(n) == size and echoed == sent, err
    assert served == [size]


@FAMILIES
def test_kernel_connect_to_a_closed_port_is_refused(v6):
    async def main():
        async with KernelPeer(ipv6=v6) as peer:
            tunnel = peer.tunnel()
            vpn = VpnStack(tunnel)
            code = (f"import socket\ntry:\n    socket.create_connection(({_ours(peer)!r}, 9),"
                    " timeout=5)\nexcept ConnectionRefusedError:\n    print('refused')\n")
            cp = await peer.arun(["/usr/bin/python3", "-c", code], timeout=20)
            vpn.close()
            await tunnel.close()
            return cp
    cp = asyncio.run(main())
    assert cp.stdout.strip() == "refused", cp.stderr


@FAMILIES
def test_connect_to_a_kernel_port_nobody_listens_on_is_refused(v6):
    async def main():
        async with KernelPeer(ipv6=v6) as peer:
            tunnel = peer.tunnel()
            vpn = VpnStack(tunnel)
            try:
                await vpn.open_connection(_kernel(peer), 9, timeout=10)
            finally:
                vpn.close()
                await tunnel.close()
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(main())


def test_the_kernel_pings_our_ipv6_address():
    async def main():
        async with KernelPeer(ipv6=True) as peer:
            tunnel = peer.tunnel()
            vpn = VpnStack(tunnel)
            cp = await peer.arun(["ping", "-6", "-c", "3", "-i", "0.2", "-W", "5",
                                  peer.our_ip6], timeout=30)
            vpn.close()
            await tunnel.close()
            return cp, tunnel
    cp, tunnel = asyncio.run(main())
    assert "3 packets transmitted, 3 received" in cp.stdout, cp.stdout + cp.stderr
    assert tunnel.stats.rx_non_ipv4 == 0
