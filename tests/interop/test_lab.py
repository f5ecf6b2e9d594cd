"""The lab itself works: the STOCK openvpn client connects and reaches the web host.

This proves the PKI, the server configuration, forwarding/routing and the web host,
so that an erebus interop failure can be blamed on erebus and not on the lab. The
stock client runs as root with a real tun device: fine here, since it is not erebus.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.lab import LabError, stop_process, tail, wait_for_log


@pytest.mark.interop
def test_stock_client_through_lab(lab, ovpn_server):
    server = ovpn_server("gcm")
    client_log = lab.dir / "stock-client-gcm.log"
    client = lab.spawn_ns(lab.ns_cli, ["openvpn", "--config", str(server.profile),
                                       "--log", str(client_log)])

    def context() -> str:
        return f"--- stock client ({client_log}) ---\n{tail(client_log)}\n{server.describe()}"

    try:
        try:
            wait_for_log(client_log, "Initialization Sequence Completed", timeout=30,
                         process=client, what="stock openvpn client")
        except LabError as exc:
            pytest.fail(f"{exc}\n{server.describe()}", pytrace=False)

        replies = lab.ping(lab.ns_cli, server.vpn_address, count=3)
        assert replies > 0, f"no ping reply from {server.vpn_address}\n{context()}"

        got = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", "30", lab.blob_url],
                         text=False, timeout=60)
        assert got.returncode == 0, f"curl failed: {got.stderr.decode()}\n{context()}"
        assert len(got.stdout) == lab.blob_size, context()
        assert hashlib.sha256(got.stdout).hexdigest() == lab.blob_sha256, context()
    finally:
        stop_process(client)
