"""What --pcap writes for ESP, read back by tshark with the keys erebus logs: ESP-in-UDP
on port 4500 is decoded with no option, another port with ``-d udp.port==N,udpencap``;
the esp_sa lines decrypt both transforms and their ICVs check."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from erebus.ipsec.profile import parse_esp_profile
from erebus.ipsec.wireshark import tshark_esp_options
from erebus.runtime.pcap import PcapWriter
from erebus.wire.icmp import build_echo_reply, build_echo_request
from erebus.wire.ipv4 import PROTO_ICMP, build_ipv4

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="no tshark")

CLIENT, PEER = "198.18.101.2", "198.18.101.1"


def profile(port: int, out: str, inn: str):
    keys = {"aes256gcm16": {"key": "a1" * 36},
            "aes256-sha256": {"key": "b2" * 32, "integrity_key": "c3" * 32},
            "aes128-sha256": {"key": "d4" * 16, "integrity_key": "e5" * 32}}
    return parse_esp_profile({"ipsec": {
        "peer": f"{PEER}:{port}", "local_ip": "198.19.11.2", "remote_ts": ["198.19.20.0/24"],
        "allow_static_aead": True,                  # test keys, one run
        "outbound": {"spi": 0x1001, "transform": out, **keys[out]},
        "inbound": {"spi": 0x2002, "transform": inn, **keys[inn]}}}, "t.toml")


def capture(tmp_path, p, local_port: int):
    """A pcap of one ping through ESP: keepalive, echo request out, echo reply in."""
    client = p.new_session(0.0)
    mirror = parse_esp_profile({"ipsec": {
        "peer": f"{CLIENT}:{local_port}", "local_ip": "198.19.20.5",
        "remote_ts": ["198.19.11.2/32"],
        "allow_static_aead": True,
        "outbound": {"spi": p.inbound.spi, "transform": p.inbound.transform.name,
                     "key": p.inbound.key.hex(),
                     **({"integrity_key": p.inbound.integrity_key.hex()}
                        if p.inbound.integrity_key else {})},
        "inbound": {"spi": p.outbound.spi, "transform": p.outbound.transform.name,
                    "key": p.outbound.key.hex(),
                    **({"integrity_key": p.outbound.integrity_key.hex()}
                       if p.outbound.integrity_key else {})}}}, "m.toml")
    peer = mirror.new_session(0.0)
    path = tmp_path / "esp.pcapng"
    local, remote = (CLIENT, local_port), (PEER, p.peer_port)
    with PcapWriter(path) as pcap:
        pcap.write_outer(client.keepalive(0.0), local, remote, 1.0, inbound=False)
        request = build_ipv4("198.19.11.2", "198.19.20.5", PROTO_ICMP,
                             build_echo_request(7, 1, b"erebus"))
        out = client.send_packet(request, 0.0)
        pcap.write_inner(request, 1.1, inbound=False)
        pcap.write_outer(out, local, remote, 1.1, inbound=False)
        assert peer.receive_datagram(out, 0.0) == request
        reply = build_ipv4("198.19.20.5", "198.19.11.2", PROTO_ICMP,
                           build_echo_reply(build_echo_request(7, 1, b"erebus")))
        back = peer.send_packet(reply, 0.0)
        pcap.write_outer(back, remote, local, 1.2, inbound=True)
        assert client.receive_datagram(back, 0.0) == reply
        pcap.write_inner(reply, 1.2, inbound=True)
    return path


def tshark(path, *args):
    cp = subprocess.run(["tshark", "-r", str(path), "-n", *args], capture_output=True,
                        text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


@pytest.mark.parametrize("port", [4500, 4600])
@pytest.mark.parametrize("transforms", [("aes256gcm16", "aes256-sha256"),
                                        ("aes128-sha256", "aes256gcm16")])
def test_tshark_decrypts_with_the_logged_keys(tmp_path, port, transforms):
    p = profile(port, *transforms)
    path = capture(tmp_path, p, local_port=port)
    decode = [] if port == 4500 else ["-d", f"udp.port=={port},udpencap"]
    # keyless: ESP headers (and the keepalive) are recognised
    plain = tshark(path, *decode, "-T", "fields", "-e", "esp.spi", "-e",
                   "udpencap.nat_keepalive", "-Y", "frame.interface_id == 0")
    rows = [line.split("\t") for line in plain.splitlines()]
    assert len(rows) == 3
    assert {int(r[0], 16) for r in rows if r[0]} == {0x1001, 0x2002}, plain
    # with the keys: the ICMP inside, and good ICVs
    out = tshark(path, *tshark_esp_options(p), "-T", "fields", "-e", "esp.spi",
                 "-e", "icmp.type", "-e", "esp.icv_good", "-Y",
                 "frame.interface_id == 0 && esp")
    rows = [line.split("\t") for line in out.splitlines()]
    assert sorted(r[1] for r in rows) == ["0", "8"], out
    assert all(r[2] in ("1", "True") for r in rows), out
