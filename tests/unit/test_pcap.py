"""The pcapng writer: block layout checked here, decoding checked with tshark."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess

import pytest

from erebus.runtime.pcap import LINKTYPE_RAW, PcapWriter
from erebus.wire.checksum import internet_checksum, pseudo_header_sum
from erebus.wire.icmp import build_echo_request
from erebus.wire.ipv4 import PROTO_ICMP, PROTO_UDP, build_ipv4, ip_from_str, parse_ipv4
from erebus.wire.openvpn import P_CONTROL_HARD_RESET_CLIENT_V2, build_control

CLIENT = ("198.18.1.2", 40000)
SERVER = ("198.18.1.1", 1194)
SESSION_ID = bytes.fromhex("0123456789abcdef")
HARD_RESET = bytes([0x38]) + SESSION_ID + b"\x00" + b"\x00\x00\x00\x00"
TS = 1_700_000_000.123456


def _ping() -> bytes:
    return build_ipv4("198.19.0.2", "198.18.2.2", PROTO_ICMP,
                      build_echo_request(0x77, 1, b"erebus ping"), ident=1)


def _blocks(data: bytes) -> list[tuple[int, bytes]]:
    """(block type, body) of every pcapng block, checking lengths and alignment."""
    out = []
    pos = 0
    while pos < len(data):
        block_type, length = struct.unpack_from("<II", data, pos)
        assert length % 4 == 0 and length >= 12
        assert struct.unpack_from("<I", data, pos + length - 4)[0] == length
        out.append((block_type, data[pos + 8:pos + length - 4]))
        pos += length
    assert pos == len(data)
    return out


def _options(body: bytes) -> dict[int, bytes]:
    opts = {}
    pos = 0
    while pos < len(body):
        code, length = struct.unpack_from("<HH", body, pos)
        if code == 0:
            break
        opts[code] = body[pos + 4:pos + 4 + length]
        pos += 4 + length + (-length % 4)
    return opts


def test_hard_reset_bytes_match_builder():
    assert HARD_RESET == build_control(P_CONTROL_HARD_RESET_CLIENT_V2, 0, SESSION_ID, packet_id=0)


def test_block_layout():
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        w.write_outer(HARD_RESET, CLIENT, SERVER, TS)
        w.write_inner(_ping(), TS + 0.5, inbound=True)
        for n in range(5):  # every padding length
            w.write_outer(b"\x40" * n, SERVER, CLIENT, TS + 1, inbound=False)
    assert not buf.closed  # a caller's file object is left open
    assert w.packets == 7 and w.closed
    blocks = _blocks(buf.getvalue())
    assert [t for t, _ in blocks] == [0x0A0D0D0A, 1, 1] + [6] * 7

    shb = blocks[0][1]
    assert struct.unpack_from("<IHHq", shb) == (0x1A2B3C4D, 1, 0, -1)
    assert _options(shb[16:])[4] == b"erebus"

    for idb, name in zip((blocks[1][1], blocks[2][1]), (b"openvpn-outer", b"tunnel-inner")):
        assert struct.unpack_from("<HHI", idb) == (LINKTYPE_RAW, 0, 0xFFFF)
        opts = _options(idb[8:])
        assert opts[2] == name
        assert opts[9] == b"\x06"

    iface, high, low, caplen, origlen = struct.unpack_from("<IIIII", blocks[3][1])
    assert iface == 0
    assert ((high << 32) | low) == 1_700_000_000_123_456
    assert caplen == origlen == 20 + 8 + len(HARD_RESET)
    packet = blocks[3][1][20:20 + caplen]
    header, udp = parse_ipv4(packet)  # verifies the IPv4 header checksum
    assert (header.src, header.dst, header.protocol) == (
        ip_from_str(CLIENT[0]), ip_from_str(SERVER[0]), PROTO_UDP)
    assert struct.unpack_from("!HHH", udp) == (40000, 1194, 8 + len(HARD_RESET))
    assert internet_checksum(udp, pseudo_header_sum(header.src, header.dst, PROTO_UDP,
                                                    len(udp))) == 0
    assert bytes(udp[8:]) == HARD_RESET
    assert _options(blocks[3][1][20 + caplen + (-caplen % 4):]) == {}

    iface, _, _, caplen, _ = struct.unpack_from("<IIIII", blocks[4][1])
    assert iface == 1
    assert blocks[4][1][20:20 + caplen] == _ping()
    assert _options(blocks[4][1][20 + caplen + (-caplen % 4):]) == {2: struct.pack("<I", 1)}
    for n, (_, body) in enumerate(blocks[5:]):
        caplen = struct.unpack_from("<I", body, 12)[0]
        assert caplen == 28 + n
        assert body[20 + 28:20 + caplen] == b"\x40" * n
        assert _options(body[20 + caplen + (-caplen % 4):]) == {2: struct.pack("<I", 2)}


def test_udp_zero_checksum_sent_as_ffff():
    # Find a payload whose UDP checksum computes to 0: it must be written as 0xFFFF.
    src, dst = ip_from_str(CLIENT[0]), ip_from_str(SERVER[0])
    base = pseudo_header_sum(src, dst, PROTO_UDP, 10) + CLIENT[1] + SERVER[1] + 10
    word = (0xFFFF - base % 0xFFFF) % 0xFFFF or 0xFFFF
    payload = struct.pack("!H", word)
    assert internet_checksum(payload, base) == 0
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        w.write_outer(payload, CLIENT, SERVER, TS)
    body = _blocks(buf.getvalue())[3][1]
    assert body[20 + 26:20 + 28] == b"\xff\xff"


def test_rejects():
    buf = io.BytesIO()
    w = PcapWriter(buf)
    with pytest.raises(ValueError, match="tcp"):
        w.write_outer(b"x", CLIENT, SERVER, TS, proto="tcp")
    with pytest.raises(ValueError):
        w.write_outer(bytes(65508), CLIENT, SERVER, TS)
    w.write_outer(bytes(65507), CLIENT, SERVER, TS)
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write_inner(_ping(), TS)


def test_flush_policy(tmp_path):
    path = tmp_path / "f.pcapng"
    w = PcapWriter(path, flush_interval=3600)
    header_size = path.stat().st_size
    assert header_size > 0  # section and interfaces are on disk at once
    w.write_inner(_ping(), TS)
    assert path.stat().st_size == header_size  # buffered
    w.flush()
    assert path.stat().st_size > header_size
    w.close()
    with PcapWriter(path, flush_interval=0) as w:
        w.write_inner(_ping())  # default timestamp: now
        size = path.stat().st_size
        assert size > header_size
    assert path.stat().st_size == size


def test_default_timestamp_is_wall_clock():
    import time

    buf = io.BytesIO()
    before = time.time()
    with PcapWriter(buf) as w:
        w.write_inner(_ping())
    after = time.time()
    body = _blocks(buf.getvalue())[3][1]
    high, low = struct.unpack_from("<II", body, 4)
    assert before - 1e-6 <= ((high << 32) | low) / 1e6 <= after + 1e-6


# ---------------------------------------------------------------------------
# tshark


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required under CI")
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pcap") / "erebus.pcapng"
    with PcapWriter(str(path)) as w:
        w.write_outer(HARD_RESET, CLIENT, SERVER, TS, inbound=False)
        w.write_inner(_ping(), TS + 0.001, inbound=False)
    return path


def _run(args: list[str]) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_tshark_decodes(capture):
    tshark = _need("tshark")
    out = _run([
        tshark, "-r", str(capture), "-n",
        "-d", "udp.port==1194,openvpn",
        "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
        "-T", "fields", "-E", "separator=|",
        "-e", "frame.interface_id", "-e", "frame.interface_name", "-e", "frame.protocols",
        "-e", "ip.src", "-e", "ip.dst", "-e", "ip.checksum.status",
        "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.checksum.status",
        "-e", "openvpn.type", "-e", "openvpn.opcode", "-e", "openvpn.keyid",
        "-e", "openvpn.sessionid",
        "-e", "icmp.type", "-e", "icmp.code", "-e", "icmp.checksum.status", "-e", "icmp.ident",
    ])
    rows = [line.split("|") for line in out.splitlines() if line]
    assert len(rows) == 2, out
    outer, inner = rows
    (iface, name, protocols, src, dst, ip_ok, sport, dport, udp_ok, ovpn_type, opcode, keyid,
     session, icmp_type, *_) = outer
    assert (iface, name) == ("0", "openvpn-outer")
    assert protocols == "raw:ip:udp:openvpn"
    assert (src, dst, sport, dport) == ("198.18.1.2", "198.18.1.1", "40000", "1194")
    assert ip_ok == "1" and udp_ok == "1"  # 1 = checksum good
    assert int(ovpn_type, 0) == 0x38
    assert int(opcode, 0) == P_CONTROL_HARD_RESET_CLIENT_V2
    assert int(keyid, 0) == 0
    assert int(session, 0) == int.from_bytes(SESSION_ID, "big")
    assert icmp_type == ""
    (iface, name, protocols, src, dst, ip_ok, *_rest) = inner
    icmp_type, icmp_code, icmp_ok, icmp_ident = inner[-4:]
    assert (iface, name) == ("1", "tunnel-inner")
    assert protocols.startswith("raw:ip:icmp")
    assert (src, dst, ip_ok) == ("198.19.0.2", "198.18.2.2", "1")
    assert (icmp_type, icmp_code, icmp_ok) == ("8", "0", "1")
    assert int(icmp_ident, 0) == 0x77


def test_tshark_verbose_names_opcode(capture):
    tshark = _need("tshark")
    out = _run([tshark, "-r", str(capture), "-n", "-d", "udp.port==1194,openvpn", "-V"])
    assert "P_CONTROL_HARD_RESET_CLIENT_V2" in out
    assert "Echo (ping) request" in out
    assert "Direction: Outbound" in out


def test_capinfos_accepts(capture):
    capinfos = _need("capinfos")
    out = _run([capinfos, "-M", str(capture)])
    assert "pcapng" in out
    assert "Number of packets:   2" in out or "Number of packets: 2" in " ".join(out.split())
    assert "openvpn-outer" in out and "tunnel-inner" in out


def test_tshark_decodes_ipv6_inner_packets(tmp_path):
    # issue 16: the inner interface is raw IP, so an IPv6 packet in the tunnel decodes
    # as one (ICMPv6 echo, its checksum over the IPv6 pseudo-header good)
    from erebus.wire import icmpv6, ipv6
    tshark = _need("tshark")
    src, dst = "2001:2:0:180::1000", "2001:2:0:2::2"
    request = ipv6.build_ipv6(src, dst, ipv6.NH_ICMPV6,
                              icmpv6.build_echo_request(src, dst, 0x1234, 1, b"erebus"))
    path = tmp_path / "six.pcapng"
    with PcapWriter(str(path)) as w:
        w.write_inner(request, TS, inbound=False)
        w.write_inner(_ping(), TS + 0.001, inbound=True)
    out = _run([tshark, "-r", str(path), "-n",
                "-T", "fields", "-E", "separator=|", "-e", "frame.interface_name",
                "-e", "frame.protocols", "-e", "ipv6.src", "-e", "ipv6.dst",
                "-e", "icmpv6.type", "-e", "icmpv6.checksum.status", "-e", "icmpv6.echo.identifier"])
    rows = [line.split("|") for line in out.splitlines() if line]
    assert rows[0] == ["tunnel-inner", "raw:ipv6:icmpv6:data", src, dst, "128", "1",
                       "0x1234"], out
    assert rows[1][1] == "raw:ip:icmp:data"
