"""A hostile outer path: tests/relay.py, in the server's namespace, forwards every packet
and adds, towards erebus, random datagrams, replays of earlier ones and bit-flipped
copies, during a 10 MiB download.  The download is byte-exact, erebus counts every
hostile datagram as a drop of some kind (its counters line when the tunnel closes), and
its log stays readable: no ERROR, and at most one warning per kind per 10 s.

With plain TLS (gcm) the control channel has no authentication of its own: a forged
control packet during the handshake can break it, in erebus as in the stock client
(that is what tls-auth and tls-crypt are for), so the relay starts its mischief only
once the tunnel is up.  With tls-auth and tls-crypt it starts with the first packet,
and the HMAC drops the forged control packets of the handshake.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.interop.util import Up, _big_file, _free_port, outdir
from tests.lab import SYSTEM_PYTHON, stop_process, tail, wait_for_log
from tests.lab import WEB_ADDR

pytestmark = pytest.mark.interop

RELAY = Path(__file__).resolve().parent.parent / "relay.py"
RATE = 0.03                     # per forwarded packet, for each of inject, replay, flip
INTERVAL = 10.0                 # erebus.runtime.ratelimit's default interval
HOSTILE = ("injected", "replayed", "flipped")


def _spawn_relay(lab, ns, listen: tuple[str, int], target: tuple[str, int], log: Path, *,
                 after: int, seed: int):
    relay = lab.spawn_ns(ns, [SYSTEM_PYTHON, str(RELAY), listen[0], str(listen[1]),
                              target[0], str(target[1]), "--inject", str(RATE), "--replay",
                              str(RATE), "--flip", str(RATE), "--hostile-to", "client",
                              "--hostile-after", str(after), "--seed", str(seed),
                              "--max-seconds", "900"], output=log)
    wait_for_log(log, "relay ready", timeout=10, process=relay, what="relay")
    return relay


def _relay_stats(log: Path) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", tail(log, 3))}


def _counters(log_text: str) -> dict[str, int]:
    """The last ``counters: k=v ...`` line the tunnel logged when it closed."""
    lines = [line for line in log_text.splitlines() if "counters: " in line]
    assert lines, log_text[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1].split("counters: ")[1])}


def _check_log(log_text: str, seconds: float, texts: list[str]) -> int:
    """No ERROR and no traceback; each kind of drop at most once per INTERVAL (+ the
    first line, + the flush at close); returns the number of drop lines."""
    assert " ERROR " not in log_text and "Traceback" not in log_text, log_text[-3000:]
    drop_lines = [line for line in log_text.splitlines() if " dropped " in line]
    for text in texts:
        n = sum(1 for line in drop_lines if f"dropped {text}" in line)
        assert n <= seconds / INTERVAL + 3, (text, n, seconds)
    assert any("suppressed" in line for line in drop_lines), drop_lines
    return len(drop_lines)


@pytest.mark.parametrize("mode", ["gcm", "tls-crypt", "tls-auth"])
def test_download_through_a_hostile_path(lab, ovpn_server, mode):
    from erebus.runtime.openvpn import DROP_KINDS
    server = ovpn_server(mode)
    digest = _big_file(lab, "big10.bin", 10 * 1024 * 1024)
    relay_port = server.port + 1100
    relay_log = outdir(lab) / f"relay-hostile-{mode}.log"
    # gcm: only once the tunnel is up (its handshake has ~20 packets towards the client)
    relay = _spawn_relay(lab, lab.ns_srv, (server.host, relay_port),
                         (server.host, server.port), relay_log,
                         after=200 if mode == "gcm" else 0, seed=13)
    profile = outdir(lab) / f"{mode}-hostile.ovpn"
    profile.write_text(server.profile.read_text().replace(
        f"remote {server.host} {server.port}", f"remote {server.host} {relay_port}"))
    os.chmod(profile, 0o644)
    port = _free_port()
    try:
        up = Up(lab, profile, f"{port}:{WEB_ADDR}:80", log_name=f"up-hostile-{mode}.log")
        try:     # paced to last ~15 s: the warnings' rate limit (10 s) comes into play
            start = time.monotonic()
            cp = lab.run_ns(lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                         "curl -sS --fail --limit-rate 600K --max-time 120 "
                                         f"http://127.0.0.1:{port}/big10.bin | sha256sum"],
                            timeout=150)
            secs = time.monotonic() - start
            assert cp.stdout.split()[:1] == [digest], f"{cp.stderr}\n{tail(up.log, 40)}"
        finally:
            code = up.stop()
    finally:
        stop_process(relay)
    stats = _relay_stats(relay_log)
    text = up.log.read_text()
    assert code == 0, tail(up.log, 40)
    c = _counters(text)
    drops = {k: v for k, v in c.items() if k in DROP_KINDS and v}
    hostile = sum(stats[k] for k in HOSTILE)
    lines = _check_log(text, secs, [t for _, t in DROP_KINDS.values()])
    print(f"\n{mode}: 10 MiB in {secs:.1f} s through {stats}; erebus dropped {drops}, "
          f"{lines} drop warnings logged")
    assert all(stats[k] > 50 for k in HOSTILE), stats
    assert c.get("dropped_data_auth", 0) > 0 and c.get("dropped_replay", 0) > 0, c
    if mode != "gcm":      # the forged control packets fail the HMAC: "malformed"
        assert c.get("dropped_malformed", 0) > 0, c
    # every hostile datagram was dropped and counted (a replayed control packet of the
    # handshake, or an ACK, is taken as a duplicate without a count: a few)
    assert sum(drops.values()) >= 0.9 * hostile, (drops, stats)


# -- ESP with manual SAs (tests/esp_lab.py) -------------------------------------------------


def test_esp_download_through_a_hostile_path(esp_lab):
    from erebus.runtime.ipsec import DROP_KINDS
    from tests.esp_lab import BIG_FILE, LINK_PEER, RELAY_OFFSET
    from tests.esp_lab import WEB_ADDR as ESP_WEB
    peer = esp_lab.start_peer("gcm")
    port = peer.port + RELAY_OFFSET + 10
    relay_log = esp_lab.dir / "relay-hostile-esp.log"
    relay = _spawn_relay(esp_lab, esp_lab.ns_srv, (LINK_PEER, port), (LINK_PEER, peer.port),
                         relay_log, after=0, seed=13)
    profile = esp_lab.dir / "esp-gcm-hostile.toml"
    profile.write_text(peer.profile.read_text().replace(
        f'peer = "{LINK_PEER}:{peer.port}"', f'peer = "{LINK_PEER}:{port}"'))
    os.chmod(profile, 0o644)
    try:
        report = esp_lab.run_esp_client(profile, fetch=f"{ESP_WEB}:80/{BIG_FILE}",
                                        timeout=600)
    finally:
        stop_process(relay)
    stats = _relay_stats(relay_log)
    assert report["ok"], f"{report}\n{report['stderr'][-3000:]}\n{esp_lab.logs_tail()}"
    assert report["fetch"]["sha256"] == esp_lab.big_sha256, (report, stats)
    c = report["counters"]
    assert _counters(report["stderr"])["auth_failed"] == c["auth_failed"]
    drops = {k: v for k, v in c.items() if k in DROP_KINDS and v}
    hostile = sum(stats[k] for k in HOSTILE)
    secs = report["fetch"]["seconds"]
    lines = _check_log(report["stderr"], secs, [t for _, t in DROP_KINDS.values()])
    print(f"\nESP gcm: {report['fetch']['bytes']} bytes in {secs:.1f} s through {stats}; "
          f"erebus dropped {drops}, {lines} drop warnings logged")
    assert all(stats[k] > 50 for k in HOSTILE), stats
    assert c["auth_failed"] > 0 and c["replayed"] > 0, c
    assert sum(drops.values()) >= 0.9 * hostile, (drops, stats)
    assert c["packets_in"] > 0 and c["replayed"] + c["auth_failed"] < c["datagrams_in"]
