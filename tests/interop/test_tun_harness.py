"""The kernel-peer harness (``tests/tun.py``) on its own, with the kernel and no erebus TCP:
a TUN device in a namespace, answered by hand-built packets.

Needs root: skipped without it, except under CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import asyncio
import re
import subprocess

import pytest

from erebus.wire.icmp import IcmpEcho, build_echo_reply, build_echo_request, parse_icmp
from erebus.wire.ipv4 import PROTO_ICMP, PROTO_TCP, build_ipv4, parse_ipv4
from tests.ci import require
from tests.tun import KernelPeer, TunTunnel, missing_prerequisites

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    require(missing_prerequisites(), "TUN kernel peer")


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _echo_responder(peer: KernelPeer, tunnel: TunTunnel, answered: list[int]):
    """A receiver that answers the kernel's echo requests to our address."""
    def on_packet(packet: bytes) -> None:
        header, payload = parse_ipv4(packet)
        if header.protocol != PROTO_ICMP or header.dst_str != peer.our_ip:
            return
        message = parse_icmp(payload)
        if isinstance(message, IcmpEcho) and message.is_request:
            tunnel.send_packet(build_ipv4(header.dst, header.src, PROTO_ICMP,
                                          build_echo_reply(message)))
            answered.append(message.seq)
    return on_packet


def test_kernel_ping_answered_through_tun() -> None:
    async def main() -> tuple[subprocess.CompletedProcess, list[int], TunTunnel, str]:
        async with KernelPeer() as peer:
            assert peer.name in _namespaces()
            tunnel = peer.tunnel()
            answered: list[int] = []
            tunnel.set_receiver(_echo_responder(peer, tunnel, answered))
            cp = await peer.arun(["ping", "-c", "3", "-W", "1", peer.our_ip], timeout=20)
            return cp, answered, tunnel, peer.name

    cp, answered, tunnel, name = asyncio.run(main())
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "3 received" in cp.stdout, cp.stdout
    assert len(answered) == 3
    assert tunnel.stats.tx_packets == 3 and tunnel.stats.tx_errors == 0
    assert tunnel.stats.rx_non_ipv4 == 0 and not tunnel.errors
    assert tunnel.closed
    assert name not in _namespaces()


@pytest.mark.parametrize("mtu", [1500, 1280])
def test_kernel_syn_arrives_on_tun(mtu: int) -> None:
    from scapy.layers.inet import IP, TCP

    client = (
        "import socket, sys\n"
        "s = socket.socket()\n"
        "s.settimeout(10)\n"
        "try:\n"
        "    s.connect((sys.argv[1], 5000))\n"
        "except OSError as e:\n"
        "    print(e)\n"
    )

    async def main() -> tuple[bytes, str]:
        async with KernelPeer(mtu=mtu) as peer:
            tunnel = peer.tunnel()
            syn: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            def on_packet(packet: bytes) -> None:
                header, _ = parse_ipv4(packet)
                if header.protocol == PROTO_TCP and not syn.done():
                    syn.set_result(packet)

            tunnel.set_receiver(on_packet)
            proc = peer.spawn_python(client, peer.our_ip)
            packet = await asyncio.wait_for(syn, 5)
            assert proc.poll() is None       # still waiting for an answer
            return packet, peer.name

    packet, name = asyncio.run(main())
    assert name not in _namespaces()
    ip = IP(packet)
    assert ip.src == "198.18.200.1" and ip.dst == "198.18.200.2"
    tcp = ip[TCP]
    assert tcp.dport == 5000
    assert tcp.flags == "S"
    mss = dict((k, v) for k, v in tcp.options if isinstance(k, str)).get("MSS")
    assert mss is not None, tcp.options
    assert 0 < mss <= mtu - 40


def test_python_side_impairment_on_what_the_kernel_sends() -> None:
    """tunnel.impair_rx(): the kernel's echo requests lost, duplicated, delayed."""

    async def main() -> dict[str, subprocess.CompletedProcess]:
        async with KernelPeer() as peer:
            tunnel = peer.tunnel()
            answered: list[int] = []
            tunnel.set_receiver(_echo_responder(peer, tunnel, answered))

            async def ping() -> subprocess.CompletedProcess:
                return await peer.arun(["ping", "-n", "-c", "5", "-i", "0.05", "-W", "1",
                                        peer.our_ip], timeout=20)
            out = {"plain": await ping()}
            tunnel.impair_rx(loss=1.0)
            out["lost"] = await ping()
            tunnel.impair_rx(duplicate=1.0)
            out["duplicated"] = await ping()
            tunnel.impair_rx(delay=0.1, jitter=0.01, seed=3)
            out["delayed"] = await ping()
            assert tunnel.stats.rx_imp.lost == 5 and tunnel.stats.rx_imp.duplicated == 5
            return out

    out = asyncio.run(main())
    assert " 5 received" in out["plain"].stdout, out["plain"].stdout
    assert out["lost"].returncode != 0 and " 0 received" in out["lost"].stdout
    # ping may stop at its 5th reply, before the last duplicate arrives
    assert re.search(r"\+[45] duplicates", out["duplicated"].stdout), out["duplicated"].stdout
    rtt_min = float(out["delayed"].stdout.split("rtt min/avg/max/mdev = ")[1].split("/")[0])
    assert rtt_min >= 90.0, out["delayed"].stdout


def test_receive_batches_what_the_kernel_queued() -> None:
    """Packets queued before a receiver is set come out in batches of at most max_batch."""
    sender = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for i in range(int(sys.argv[2])):\n"
        "    s.sendto(i.to_bytes(4, 'big') * 8, (sys.argv[1], 9))\n"
    )

    async def main() -> tuple[TunTunnel, list[int]]:
        async with KernelPeer(txqueuelen=1000) as peer:
            tunnel = peer.tunnel(max_batch=64)
            proc = peer.spawn_python(sender, peer.our_ip, 300)
            await asyncio.to_thread(proc.wait, 10)
            assert proc.returncode == 0, proc.stderr.read()
            seen: list[int] = []
            tunnel.set_receiver(lambda p: seen.append(int.from_bytes(p[28:32], "big")))
            for _ in range(200):
                if len(seen) >= 300:
                    break
                await asyncio.sleep(0.01)
            return tunnel, seen

    tunnel, seen = asyncio.run(main())
    assert seen == list(range(300))
    assert tunnel.stats.rx_max_batch == 64
    assert tunnel.stats.rx_full_batches == 4          # 4 x 64 + 44
    assert tunnel.stats.rx_wakeups == 5


def test_python_side_impairment_on_what_we_send() -> None:
    """tunnel.impair(): loss, duplication, delay and reordering of our packets to the kernel."""

    async def main() -> dict[str, object]:
        async with KernelPeer() as peer:
            tunnel = peer.tunnel()
            loop = asyncio.get_running_loop()
            replies: list[tuple[int, float]] = []

            def on_packet(packet: bytes) -> None:
                header, payload = parse_ipv4(packet)
                if header.protocol == PROTO_ICMP:
                    message = parse_icmp(payload)
                    if isinstance(message, IcmpEcho) and not message.is_request:
                        replies.append((message.seq, loop.time()))

            tunnel.set_receiver(on_packet)

            async def pings(first: int, count: int, expect: int) -> list[int]:
                """Send ``count`` pings; wait (bounded) for ``expect`` replies, then a
                little longer for any the impairment should not have let through."""
                replies.clear()
                for seq in range(first, first + count):
                    tunnel.send_packet(build_ipv4(
                        peer.our_ip, peer.kernel_ip, PROTO_ICMP,
                        build_echo_request(0x4242, seq, b"erebus")))
                deadline = loop.time() + 10
                while len(replies) < expect and loop.time() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)        # extra (wrong) replies would show up here
                return [seq for seq, _ in replies]

            out: dict[str, object] = {}
            out["plain"] = await pings(0, 5, 5)
            tunnel.impair(loss=1.0)
            out["lost"] = await pings(10, 5, 0)
            tunnel.impair(duplicate=1.0)
            out["duplicated"] = await pings(20, 3, 6)
            tunnel.impair(delay=0.1)
            sent = loop.time()
            out["delayed"] = await pings(30, 3, 3)
            out["delay_rtt"] = min(t for _, t in replies) - sent
            tunnel.impair(reorder=0.3, seed=7)
            out["reordered"] = await pings(40, 20, 20)
            tunnel.clear_impairment()
            out["clear"] = await pings(60, 3, 3)
            out["stats"] = tunnel.stats
            return out

    out = asyncio.run(main())
    assert out["plain"] == [0, 1, 2, 3, 4]
    assert out["lost"] == []
    assert out["duplicated"] == [20, 20, 21, 21, 22, 22]
    assert out["delayed"] == [30, 31, 32]
    assert out["delay_rtt"] >= 0.1
    reordered = out["reordered"]
    assert sorted(reordered) == list(range(40, 60)) and reordered != sorted(reordered)
    assert out["clear"] == [60, 61, 62]
    stats = out["stats"]
    assert stats.tx_imp.lost == 5 and stats.tx_imp.duplicated == 3 and stats.tx_imp.reordered > 0
    assert stats.tx_errors == 0 and stats.tx_eagain == 0


def test_namespace_removed_when_the_body_raises() -> None:
    peer = KernelPeer()
    with pytest.raises(RuntimeError, match="boom"):
        with peer:
            proc = peer.spawn(["sleep", "60"])
            raise RuntimeError("boom")
    assert peer.name not in _namespaces()
    assert peer.fd is None
    assert proc.poll() is not None


def test_addresses_outside_the_benchmark_range_are_refused() -> None:
    with pytest.raises(ValueError):
        KernelPeer(kernel_ip="198.20.0.1", our_ip="198.20.0.2")
    with pytest.raises(ValueError):
        KernelPeer(our_ip="198.18.201.2")     # not on the device's /24
