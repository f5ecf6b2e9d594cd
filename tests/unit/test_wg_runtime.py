"""The WireGuard family in the one shell: the profile found by its content, the tunnel
built by the family record, connected over loopback to our own responder core (the
server's role), inner packets both ways, the peers it does not use listed with their
lines, and a silent peer's one clear line.  The stock server is in
tests/interop/test_wg_erebus.py."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket

import pytest

from erebus.errors import SessionError
from erebus.families import family_of, open_tunnel
from erebus.runtime.wireguard import WireGuardTunnel, peer_label
from erebus.session import Stage
from erebus.wireguard.crypto import public_of
from erebus.wireguard.keys import WgInterfaceConfig, WgPeerConfig
from erebus.wireguard.session import WireGuardSession

from tests.unit.test_wg_session import ipv4

CLIENT_IP = "198.18.122.2"
WEB_IP = "198.18.121.2"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


class Responder(asyncio.DatagramProtocol):
    """Our own responder core on a loopback socket: answers handshakes, echoes every
    inner packet back with source and destination swapped."""

    def __init__(self, server_key: bytes, client_public: bytes, *, silent: bool = False,
                 spoof: str | None = None):
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.silent = silent
        self.session = WireGuardSession(
            WgInterfaceConfig(private_key=server_key),
            WgPeerConfig(public_key=client_public,
                         allowed_ips=(ipaddress.ip_network(CLIENT_IP + "/32"),)),
            loop.time(), initiate=False)
        self.spoof = ipaddress.ip_address(spoof).packed if spoof else None   # echo source
        self.seen: list[str] = []          # the destination of every inner packet
        self.transport = None
        self.peer = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if self.silent:
            return
        self.peer = addr
        now = self.loop.time()
        for packet in self.session.receive_datagram(data, now):
            self.seen.append(str(ipaddress.IPv4Address(packet[16:20])))
            echo = packet[:12] + (self.spoof or packet[16:20]) + packet[12:16] + \
                packet[20:]
            datagram = self.session.send_packet(echo, now)
            if datagram:
                self.transport.sendto(datagram, addr)
        while self.session.next_event() is not None:
            pass
        for datagram in self.session.datagrams_to_send(now):
            self.transport.sendto(datagram, addr)


def write_profile(tmp_path, client_key: bytes, server_public: bytes, port: int,
                  extra_peer: bool = False) -> str:
    lines = ["[Interface]", f"PrivateKey = {b64(client_key)}",
             f"Address = {CLIENT_IP}/32", "",
             "[Peer]", f"PublicKey = {b64(server_public)}",
             f"Endpoint = 127.0.0.1:{port}", "AllowedIPs = 198.18.121.0/24"]
    if extra_peer:                         # no Endpoint: it would have to call us
        lines += ["", "[Peer]", f"PublicKey = {b64(public_of(os.urandom(32)))}",
                  "AllowedIPs = 198.18.123.0/24"]
    path = tmp_path / "client.conf"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return str(path)


async def _serve(server_key, client_public, **kwargs):
    loop = asyncio.get_running_loop()
    transport, responder = await loop.create_datagram_endpoint(
        lambda: Responder(server_key, client_public, **kwargs),
        local_addr=("127.0.0.1", 0), family=socket.AF_INET)
    return transport, responder, transport.get_extra_info("sockname")[1]


def test_connects_and_carries_packets_both_ways_over_loopback(tmp_path):
    client_key, server_key = os.urandom(32), os.urandom(32)

    async def main():
        transport, responder, port = await _serve(server_key, public_of(client_key))
        path = write_profile(tmp_path, client_key, public_of(server_key), port)
        assert family_of(path).name == "wireguard"
        tunnel = open_tunnel(path)
        assert isinstance(tunnel, WireGuardTunnel)
        got = asyncio.Queue(maxsize=16)
        tunnel.set_receiver(got.put_nowait)
        try:
            info = await tunnel.connect(timeout=10)
            assert info.kind == "wireguard" and info.virtual_ip == CLIENT_IP
            assert info.routes == ["198.18.121.0/24"]
            payloads = [os.urandom(n) for n in (0, 1, 700, 1300)]
            for p in payloads:
                tunnel.send_packet(ipv4(CLIENT_IP, WEB_IP, p))
            back = [await asyncio.wait_for(got.get(), 5) for _ in payloads]
            assert [b[20:] for b in back] == payloads
            assert all(b[12:16] == ipaddress.IPv4Address(WEB_IP).packed for b in back)
            assert tunnel.counters.packets_in == len(payloads)
        finally:
            await tunnel.close()
            transport.close()

    asyncio.run(main())


def test_a_peer_without_endpoint_is_listed_as_not_used_with_its_line(tmp_path):
    path = write_profile(tmp_path, os.urandom(32), public_of(os.urandom(32)), 9,
                         extra_peer=True)
    tunnel = open_tunnel(path)
    assert f"{path}:10: [Peer]: not used: it has no Endpoint, and erebus only connects " \
           "out" in tunnel.warnings
    assert [[e.port for e in p.driver.endpoints()] for p in tunnel.peers] == [[9]]


def test_a_silent_peer_times_out_naming_its_key(tmp_path):
    client_key, server_key = os.urandom(32), os.urandom(32)

    async def main():
        transport, _responder, port = await _serve(server_key, public_of(client_key),
                                                   silent=True)
        tunnel = open_tunnel(write_profile(tmp_path, client_key, public_of(server_key),
                                           port))
        try:
            with pytest.raises(SessionError) as caught:
                await tunnel.connect(timeout=0.5)
        finally:
            await tunnel.close()
            transport.close()
        return caught.value

    error = asyncio.run(main())
    assert error.stage is Stage.UNREACHABLE
    label = peer_label(public_of(server_key))
    assert str(error).endswith(f"(no handshake response from {label}: is our public key "
                               "configured there?)"), str(error)


def test_keylog_holds_what_wiresharks_dissector_reads(tmp_path):
    client_key, server_key = os.urandom(32), os.urandom(32)
    keylog = tmp_path / "wg.keys"

    async def main():
        transport, _responder, port = await _serve(server_key, public_of(client_key))
        path = write_profile(tmp_path, client_key, public_of(server_key), port)
        tunnel = open_tunnel(path, keylog=str(keylog))
        try:
            await tunnel.connect(timeout=10)
        finally:
            await tunnel.close()
            transport.close()

    asyncio.run(main())
    assert keylog.stat().st_mode & 0o777 == 0o600
    lines = keylog.read_text().splitlines()
    entries = [line.split(" = ") for line in lines]
    kinds = [k for k, _ in entries]
    assert kinds == ["LOCAL_STATIC_PRIVATE_KEY", "REMOTE_STATIC_PUBLIC_KEY",
                     "LOCAL_EPHEMERAL_PRIVATE_KEY"]       # no PresharedKey in this profile
    assert entries[0][1] == b64(client_key) and entries[1][1] == b64(public_of(server_key))
    assert len(base64.b64decode(entries[2][1])) == 32


def test_keylog_is_refused_for_other_families_and_through_a_symlink(tmp_path):
    from erebus.errors import ConfigError
    ovpn = tmp_path / "client.ovpn"
    ovpn.write_text("client\nremote 198.18.0.1 1194\n")
    with pytest.raises(ConfigError, match="--keylog: only WireGuard tunnels write a key log"):
        open_tunnel(str(ovpn), keylog=str(tmp_path / "k"))
    path = write_profile(tmp_path, os.urandom(32), public_of(os.urandom(32)), 9)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="--keylog: .*link: is a symbolic link; the key log "
                                          "holds the private key"):
        open_tunnel(path, keylog=str(link))
    assert not (tmp_path / "elsewhere").exists()
