"""``mssfix``: erebus's TCP keeps the VPN's outer packets as small as the stock client's.

The server here has ``mssfix 0``, so it clamps nothing: only the client's own mssfix
bounds the segments.  For each profile setting, the stock 2.6 client (run with --verb 4
on the same profile) prints the MSS it computes ("mss_fix:N" in its Data Channel MTU
parms); erebus must announce that MSS in its SYN (seen in its pcap's inner interface),
and every outer datagram of a 1 MB download and of the SYN exchange must then fit the
bound the setting promises.  ``mssfix 0`` is the control: full 1460-byte segments make
outer packets larger than the default bound.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.interop.util import Up, _fetch, _free_port, outdir
from tests.lab import MODES, WEB_ADDR, LabError, Mode, stop_process, tail, wait_for_log

pytestmark = pytest.mark.interop

MODES.setdefault("mssfix-off", Mode(30, data_ciphers="AES-256-GCM",
                                    server_lines=("mssfix 0",)))

# the profile line, and the largest outer IPv4 packet it allows for AES-256-GCM over UDP
SETTINGS = {
    "default": (None, 1492),                 # 2.6's default: mssfix 1492 mtu
    "1300": ("mssfix 1300", 1300 + 28),      # the UDP payload <= 1300
    "1400-mtu": ("mssfix 1400 mtu", 1400),
}


def _write_profile(lab, server, line: str | None, name: str):
    text = server.profile.read_text() + (f"\n{line}\n" if line else "")
    path = outdir(lab) / name
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def _stock_mss(lab, profile, name: str) -> int:
    """What the stock client computes for this profile (its --verb 4 frame print)."""
    log = lab.dir / f"stock-{name}.log"
    client = lab.spawn_ns(lab.ns_cli, ["openvpn", "--config", str(profile), "--verb", "4",
                                       "--log", str(log)])
    try:
        wait_for_log(log, "Initialization Sequence Completed", timeout=30, process=client,
                     what="stock openvpn client")
    except LabError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        stop_process(client)
    found = re.findall(r"Data Channel MTU parms \[ mss_fix:(\d+)", log.read_text())
    assert found, tail(log)
    return int(found[-1])


def _tshark(pcap, port: int) -> list[list[str]]:
    cp = subprocess.run(["tshark", "-r", str(pcap), "-d", f"udp.port=={port},openvpn",
                         "-T", "fields", "-e", "frame.interface_id", "-e", "ip.len",
                         "-e", "tcp.flags.syn", "-e", "tcp.options.mss_val", "-e", "ip.src",
                         "-e", "tcp.len"],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    return [line.split("\t") for line in cp.stdout.splitlines()]


def _through_erebus(lab, server, profile, name: str):
    """A 1 MB download through erebus with a pcap: (tshark rows, erebus's log)."""
    pcap = outdir(lab) / f"mss-{name}.pcapng"
    port = _free_port()
    up = Up(lab, profile, f"{port}:{WEB_ADDR}:80", log_name=f"up-mss-{name}.log",
            args=("-v", "--pcap", pcap))
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, f"{err}\n{tail(up.log)}"
    finally:
        code = up.stop()
    assert code == 0, tail(up.log)
    return _tshark(pcap, server.port), up.log.read_text()


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_erebus_uses_the_stock_clients_mss_and_keeps_the_bound(lab, ovpn_server, setting):
    server = ovpn_server("mssfix-off")
    line, bound = SETTINGS[setting]
    profile = _write_profile(lab, server, line, f"mss-{setting}.ovpn")
    stock = _stock_mss(lab, profile, setting)
    rows, log = _through_erebus(lab, server, profile, setting)
    assert f"TCP MSS {stock} (" in log, (stock, log[-3000:])
    syns = [r for r in rows if r[0] == "1" and r[2] == "1" and r[4] != WEB_ADDR]
    assert syns and {int(r[3]) for r in syns} == {stock}, syns
    outer = [int(r[1]) for r in rows if r[0] == "0" and r[1]]
    assert max(outer) <= bound, (max(outer), bound)
    # the bound is reached: full segments flowed, not small ones that pass any test
    assert max(outer) > bound - 16, (max(outer), bound)
    inner_data = [int(r[5]) for r in rows if r[0] == "1" and r[5]]
    assert max(inner_data) <= stock


def test_mssfix_0_lets_segments_fill_the_tunnel(lab, ovpn_server):
    """The control: without clamping, 1460-byte segments make outer packets beyond 1492
    (so the bound checked above is something erebus does, not something that happens)."""
    server = ovpn_server("mssfix-off")
    profile = _write_profile(lab, server, "mssfix 0", "mss-0.ovpn")
    assert _stock_mss(lab, profile, "0") == 0
    rows, log = _through_erebus(lab, server, profile, "0")
    assert "TCP MSS not capped" in log
    syns = [r for r in rows if r[0] == "1" and r[2] == "1" and r[4] != WEB_ADDR]
    assert {int(r[3]) for r in syns} == {1460}, syns
    assert max(int(r[1]) for r in rows if r[0] == "0" and r[1]) > 1492
