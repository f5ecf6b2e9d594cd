"""The compression lab modes work with the STOCK openvpn client.

"cbc": AES-256-CBC + HMAC-SHA256 with "comp-lzo no" framing on both ends.
"lz4": a server that pushes "compress lz4-v2" and really compresses what it sends
(allow-compression yes); the client accepts it with "allow-compression asym".

The client's SIGUSR2 statistics ("pre-decompress bytes", "post-decompress bytes")
show whether the server's packets arrived compressed.
"""

from __future__ import annotations

import hashlib
import re
import signal
import time

import pytest

from tests.lab import LabError, stop_process, tail, wait_for_log

pytestmark = pytest.mark.interop

TEXT_NAME = "compressible.txt"


def _text() -> bytes:
    return b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i
                    for i in range(20000))


_STAT = re.compile(r"(pre-decompress bytes|post-decompress bytes|pre-compress bytes),(\d+)")


def _stats(log) -> list[dict[str, int]]:
    """Every complete statistics dump in the log, oldest first."""
    dumps = []
    for block in log.read_text(errors="replace").split("OpenVPN STATISTICS")[1:]:
        found = {k: int(v) for k, v in _STAT.findall(block)}
        if len(found) == 3:
            dumps.append(found)
    return dumps


class StockClient:
    """The stock openvpn client in the lab's client namespace (root, real tun)."""

    def __init__(self, lab, server, profile=None, tag=""):
        self.lab, self.server = lab, server
        self.log = lab.dir / f"stock-client-{server.mode}{tag}.log"
        self.proc = lab.spawn_ns(lab.ns_cli, ["openvpn", "--config",
                                              str(profile or server.profile),
                                              "--log", str(self.log)])

    def context(self) -> str:
        return f"--- stock client ({self.log}) ---\n{tail(self.log)}\n{self.server.describe()}"

    def wait_ready(self) -> None:
        try:
            wait_for_log(self.log, "Initialization Sequence Completed", timeout=30,
                         process=self.proc, what="stock openvpn client")
        except LabError as exc:
            pytest.fail(f"{exc}\n{self.server.describe()}", pytrace=False)

    def fetch(self, url: str) -> bytes:
        got = self.lab.run_ns(self.lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", "30", url],
                              text=False, timeout=60)
        assert got.returncode == 0, f"curl {url} failed: {got.stderr.decode()}\n{self.context()}"
        return got.stdout

    def statistics(self) -> dict[str, int]:
        """SIGUSR2 makes the client log its counters (compression ones included)."""
        seen = len(_stats(self.log))
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            dumps = _stats(self.log)
            if len(dumps) > seen:
                return dumps[-1]
            time.sleep(0.1)
        pytest.fail(f"no statistics in the client log\n{self.context()}", pytrace=False)

    def stop(self) -> None:
        stop_process(self.proc)


def test_stock_client_cbc_with_comp_lzo_no(lab, ovpn_server):
    server = ovpn_server("cbc")
    client = StockClient(lab, server)
    try:
        client.wait_ready()
        log = client.log.read_text(errors="replace")
        assert "comp-lzo no" in re.search(r"PUSH_REPLY[^\n]*", log).group(0), client.context()
        assert "cipher 'AES-256-CBC', auth 'SHA256'" in log, client.context()
        assert "compression: 'stub'" in log, client.context()

        blob = client.fetch(lab.blob_url)
        assert len(blob) == lab.blob_size, client.context()
        assert hashlib.sha256(blob).hexdigest() == lab.blob_sha256, client.context()

        stats = client.statistics()
        assert stats["pre-decompress bytes"] == stats["post-decompress bytes"] == 0, stats
    finally:
        client.stop()
    server_log = server.log.read_text(errors="replace")
    assert "Outgoing Data Channel: Cipher 'AES-256-CBC'" in server_log
    assert "Using 256 bit message hash 'SHA256' for HMAC authentication" in server_log


def test_stock_client_lz4_server_compresses(lab, ovpn_server):
    server = ovpn_server("lz4")
    text = _text()
    path = lab.dir / "www" / TEXT_NAME
    path.write_bytes(text)
    path.chmod(0o644)
    client = StockClient(lab, server)
    try:
        client.wait_ready()
        log = client.log.read_text(errors="replace")
        assert "compress lz4-v2" in re.search(r"PUSH_REPLY[^\n]*", log).group(0), client.context()
        assert "compression: 'lz4v2'" in log, client.context()

        blob = client.fetch(lab.blob_url)
        assert hashlib.sha256(blob).hexdigest() == lab.blob_sha256, client.context()
        before = client.statistics()

        got = client.fetch(f"{lab.web_url}{TEXT_NAME}")
        assert got == text, client.context()
        stats = client.statistics()
    finally:
        client.stop()
    pre = stats["pre-decompress bytes"] - before["pre-decompress bytes"]
    post = stats["post-decompress bytes"] - before["post-decompress bytes"]
    # The text went through the LZ4 decompressor and shrank on the wire (~6x); the
    # client never compresses (allow-compression asym).
    assert post >= len(text), stats
    assert pre * 3 < post, stats
    assert stats["pre-compress bytes"] == 0, stats
    print(f"lz4: {len(text)} text bytes arrived as {pre} compressed bytes ({post} decompressed)")


def test_stock_client_refuses_pushed_lz4_without_allow_compression(lab, ovpn_server):
    """What the "lz4" mode's client line is for: 2.6 clients default to stub-only."""
    server = ovpn_server("lz4")
    profile = lab.dir / "client-lz4-no-allow.ovpn"
    profile.write_text(server.profile.read_text().replace("allow-compression asym\n", ""))
    client = StockClient(lab, server, profile=profile, tag="-no-allow")
    try:
        wait_for_log(client.log, "server pushed compression settings that are not allowed",
                     timeout=30, process=client.proc, what="stock openvpn client")
    finally:
        client.stop()
