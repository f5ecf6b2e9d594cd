"""erebus's IKEv2 initiator (IkeTunnel) against a stock strongSwan responder
(:class:`tests.swan_lab.SwanLab`): PSK and certificates, ping and a 1 MiB download
through erebus's own network stack, clean DELETE on close, refusals in one line, a
download across CHILD_SA rekeys by the responder.

The client runs as root in the lab's client namespace with PYTHONPATH=/work/main (the
swanctl.conf reader is not wired yet: the profile is built from the lab's values).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import _wait_until as wait_until
from tests.lab import send_signal
from tests.swan_lab import SwanLab

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]

CLIENT = r"""
import asyncio, hashlib, json, sys, time, logging
from erebus.ipsec.ikeprofile import IkeProfile
from erebus.runtime.ipsec import IkeTunnel
from erebus.runtime.stack import VpnStack
from erebus.probe import ping_through
from erebus.errors import SessionError

async def main(cfg):
    logging.basicConfig(level=logging.INFO if not cfg.get("debug") else logging.DEBUG, stream=sys.stderr)
    rd = lambda p: open(p, "rb").read() if p else None
    prof = IkeProfile(path="test", name=cfg["mode"], remote_addrs=[cfg["address"]],
        proposals=cfg.get("proposals", ["aes256gcm16-prfsha256-ecp256"]),
        esp_proposals=cfg.get("esp", ["aes256gcm16"]),
        local_auth=cfg["auth"], remote_auth=cfg["auth"], local_id=cfg["local_id"], remote_id=cfg["remote_id"],
        psk=cfg["psk"].encode() if cfg.get("psk") else None,
        local_cert=rd(cfg.get("cert")), local_key=rd(cfg.get("key")),
        cacerts=[rd(cfg["cacert"])] if cfg.get("cacert") else [],
        remote_ts=[cfg["remote_ts"]], connect_timeout=20)
    t = IkeTunnel(prof)
    out = {}
    try:
        info = await t.connect()
    except SessionError as exc:
        print(json.dumps({"ok": False, "stage": exc.stage, "error": str(exc)})); return
    out.update(ok=True, info=info.as_dict())
    print("CONNECTED " + json.dumps(info.as_dict()), file=sys.stderr, flush=True)
    if cfg.get("hold"):
        await asyncio.sleep(cfg["hold"])
    out["ping_ms"] = await ping_through(t, cfg["web"])
    vpn = VpnStack(t)
    deadline = time.monotonic() + cfg.get("rekeys_within", 0)
    for n in range(cfg.get("downloads", 1) if not cfg.get("until_rekeys") else 1000):
        if n and cfg.get("until_rekeys") and (t.rekeys >= cfg["until_rekeys"]
                                              or time.monotonic() > deadline):
            break
        r, w = await vpn.open_connection(cfg["web"], 80, timeout=10)
        w.write(f"GET /{cfg.get('path','blob.bin')} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        if cfg.get("slow"):
            chunks = []
            t0 = time.monotonic()
            while True:
                chunk = await asyncio.wait_for(r.read(16384), 30)
                if not chunk:
                    break
                chunks.append(chunk)
                await asyncio.sleep(cfg["slow"])
            data = b"".join(chunks)
            out["download_s"] = time.monotonic() - t0
        else:
            data = await asyncio.wait_for(r.read(), cfg.get("dl_timeout", 60))
        body = data.split(b"\r\n\r\n", 1)[1]
        out.setdefault("sha256", []).append(hashlib.sha256(body).hexdigest())
        out.setdefault("size", []).append(len(body))
        w.close()
    out["rekeys"] = t.rekeys
    out["counters"] = t.counters.as_dict()
    if cfg.get("signal_file"):
        open(cfg["signal_file"], "w").write("up")
        await asyncio.sleep(cfg.get("wait_after", 0))
    vpn.close()
    await t.close()
    print(json.dumps(out))

asyncio.run(main(json.loads(sys.argv[1])))
"""



@pytest.fixture
def lab(swan_lab: SwanLab) -> Iterator[SwanLab]:
    yield swan_lab
    swan_lab.terminate_all()


def _run(lab: SwanLab, mode: str, **extra) -> tuple[dict, str]:
    p = lab.profile(mode)
    cfg = dict(mode=p.mode, address=p.address, auth=p.auth, local_id=p.local_id,
               remote_id=p.remote_id, psk=p.psk, cert=str(p.cert) if p.cert else None,
               key=str(p.key) if p.key else None,
               cacert=str(p.cacert) if p.cacert else None, remote_ts=p.remote_ts,
               web=lab.web_addr)
    cfg.update(extra)
    script = Path(tempfile.mkdtemp(dir=lab.dir, prefix="ike-")) / "client.py"
    script.write_text(CLIENT)
    cp = lab.run_ns(lab.ns_cli, [sys.executable, str(script), json.dumps(cfg)],
                    env={"PYTHONPATH": str(REPO)}, timeout=180)
    context = f"{cp.stdout}\n{cp.stderr[-4000:]}\n{lab.logs_tail()}"
    lines = [line for line in cp.stdout.splitlines() if line.startswith("{")]
    assert lines, context
    return json.loads(lines[-1]), context


@pytest.mark.parametrize("mode", ["psk", "cert"])
@pytest.mark.parametrize("proposal", ["aes256gcm16-prfsha256-ecp256",
                                      "aes256gcm16-prfsha256-x25519",
                                      "aes256-sha256-modp2048"])
def test_connect_ping_download(lab: SwanLab, mode: str, proposal: str):
    signal = Path(tempfile.mkdtemp(dir=lab.dir, prefix="sig-")) / "up"
    out, context = _run(lab, mode, proposals=[proposal], signal_file=str(signal))
    assert out["ok"], context
    info = out["info"]
    assert info["kind"] == "ipsec" and info["routes"] == [lab.protected_net], context
    assert info["dns"] == [lab.dns_addr] and info["cipher"] == "aes256gcm16", context
    assert info["virtual_ip"].startswith("198.19.231."), context
    assert out["ping_ms"] is not None, context
    assert out["size"] == [lab.blob_size] and out["sha256"] == [lab.blob_sha256], context
    # after our close (DELETE) the responder has no SA left
    assert not lab.ike_sas(mode), lab.list_sas()
    log = lab.responder_log.read_text(errors="replace")
    assert "received DELETE for IKE_SA" in log, context


def test_sa_listed_while_connected(lab: SwanLab):
    p = lab.profile("psk")
    cfg = dict(mode=p.mode, address=p.address, auth=p.auth, local_id=p.local_id,
               remote_id=p.remote_id, psk=p.psk, remote_ts=p.remote_ts, web=lab.web_addr,
               hold=4)
    script = Path(tempfile.mkdtemp(dir=lab.dir, prefix="ike-")) / "client.py"
    script.write_text(CLIENT)
    proc = lab.spawn_ns(lab.ns_cli, [sys.executable, str(script), json.dumps(cfg)],
                        env={"PYTHONPATH": str(REPO)}, output=script.with_suffix(".log"))
    try:
        sa = lab.wait_established("psk", timeout=15)
        assert sa["local-port"] == "4500" and sa["remote-vips"], sa
        assert proc.wait(timeout=60) == 0, script.with_suffix(".log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 5
    while lab.ike_sas("psk") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not lab.ike_sas("psk"), lab.list_sas()


def test_wrong_psk_refused(lab: SwanLab):
    out, context = _run(lab, "psk", psk="not-the-secret")
    assert not out["ok"] and out["stage"] == "auth", context
    assert "the responder refused our authentication" in out["error"], context
    assert "\n" not in out["error"]


def test_foreign_ca_refused(lab: SwanLab):
    out, context = _run(lab, "foreign-ca")
    assert not out["ok"] and out["stage"] == "certificate", context
    assert "CN=vpn.swan.test" in out["error"] and "CN=rogue-swan-ca" in out["error"], context
    assert "\n" not in out["error"]


def test_proposals_the_responder_refuses(lab: SwanLab):
    """strongSwan answers NO_PROPOSAL_CHOSEN (unauthenticated, RFC 7296 section 2.21.1):
    erebus fails with that reason in one line (stage "proposal": not the connect timeout,
    whose stage would name where it stalled)."""
    out, context = _run(lab, "psk", proposals=["aes128-sha256-ecp384"])
    assert not out["ok"] and out["stage"] == "proposal", context
    assert "NO_PROPOSAL_CHOSEN" in out["error"] and "\n" not in out["error"], context


def test_download_across_child_rekey(lab: SwanLab):
    """Slow downloads (16 KiB read every 0.3 s) one after the other until the responder,
    which rekeys the CHILD_SA every ~10 s, has rekeyed it (bounded: 60 s): every
    download byte-exact."""
    out, context = _run(lab, "rekey", slow=0.3, until_rekeys=1, rekeys_within=60)
    assert out["ok"], context
    assert out["rekeys"] >= 1, context
    n = len(out["size"])
    assert out["size"] == [lab.blob_size] * n, context
    assert out["sha256"] == [lab.blob_sha256] * n, context


@pytest.mark.parametrize("mode", ["psk", "cert"])
def test_erebus_probe_and_up_with_the_users_swanctl_conf(lab: SwanLab, mode: str):
    """The file a strongSwan user already has: `erebus probe swanctl.conf` and `erebus up
    swanctl.conf -L ...` as nobody, like for .ovpn."""
    conf = lab.profile(mode).conf
    cp = lab.run_client([lab.python, "-m", "erebus", "probe", str(conf), "--json",
                         "--ping", lab.web_addr], timeout=90)
    report = json.loads(cp.stdout)
    assert cp.returncode == 0 and report["ok"], (cp.stdout, cp.stderr, lab.logs_tail())
    assert report["kind"] == "ipsec" and report["virtual_ip"].startswith("198.19.231.")
    assert report["dns"] == [lab.dns_addr] and report["ping_ms"] is not None
    out = Path(tempfile.mkdtemp(dir=lab.dir, prefix="up-"))
    os.chmod(out, 0o777)
    log = out / "up.log"
    up = lab.spawn_client([lab.python, "-m", "erebus", "up", str(conf), "-L",
                           f"18300:{lab.web_addr}:80"], output=log)
    try:
        deadline = time.time() + 30
        while "ready (" not in (log.read_text() if log.exists() else ""):
            assert time.time() < deadline and up.poll() is None, log.read_text()
            time.sleep(0.1)
        got = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--max-time", "30",
                                      "http://127.0.0.1:18300/blob.bin"], text=False)
        assert hashlib.sha256(got.stdout).hexdigest() == lab.blob_sha256, got.stderr
    finally:
        send_signal(up, signal.SIGINT)
        up.wait(timeout=15)
    assert not lab.established(mode), "the responder still lists the SA after our exit"


# -- acceptance: the real CLI as nobody with (variants of) the lab's swanctl.conf -----------

BIG_SIZE = 10 << 20
HUGE_SIZE = 100 << 20


@pytest.fixture(scope="module")
def big_files(swan_lab: SwanLab) -> dict[str, tuple[int, str]]:
    """big.bin (10 MB) and huge.bin (100 MB) of random bytes in the web host's www dir:
    name -> (size, sha256)."""
    files = {}
    for name, size in (("big.bin", BIG_SIZE), ("huge.bin", HUGE_SIZE)):
        data = os.urandom(size)
        (swan_lab.dir / "www" / name).write_bytes(data)
        files[name] = (size, hashlib.sha256(data).hexdigest())
    return files


def _variant_conf(lab: SwanLab, mode: str, *, proposals: str | None = None,
                  esp: str | None = None, child_extra: dict | None = None,
                  conn_extra: dict | None = None) -> Path:
    """A world-readable copy of *mode*'s client folder (x509/, x509ca/, private/) whose
    swanctl.conf has other ``proposals`` / ``esp_proposals`` lines, and extra settings
    for the connection (``conn_extra``) or the child (``child_extra``)."""
    import shutil
    src = lab.profile(mode).dir
    dst = Path(tempfile.mkdtemp(dir=lab.dir, prefix=f"conf-{mode}-")) / mode
    shutil.copytree(src, dst)
    lines = []
    for line in (dst / "swanctl.conf").read_text().splitlines():
        key = line.strip().split(" = ")[0]
        indent = line[:len(line) - len(line.lstrip())]
        if key == "proposals" and proposals is not None:
            line = f"{indent}proposals = {proposals}"
        elif key == "esp_proposals":
            if esp is not None:
                line = f"{indent}esp_proposals = {esp}"
            for k, v in (child_extra or {}).items():
                lines.append(f"{indent}{k} = {v}")
        elif key == "version":
            for k, v in (conn_extra or {}).items():
                lines.append(f"{indent}{k} = {v}")
        lines.append(line)
    (dst / "swanctl.conf").write_text("\n".join(lines) + "\n")
    for p in [dst.parent, *dst.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return dst / "swanctl.conf"


def _log_dir(lab: SwanLab) -> Path:
    out = Path(tempfile.mkdtemp(dir=lab.dir, prefix="up-"))
    os.chmod(out, 0o777)
    return out


class _Up:
    """`erebus up CONF ARGS -v` as nobody in the client namespace, until "ready"."""

    def __init__(self, lab: SwanLab, conf: Path, *args: str, timeout: float = 30):
        self.lab = lab
        self.log = _log_dir(lab) / "up.log"
        self.proc = lab.spawn_client([lab.python, "-m", "erebus", "up", str(conf), "-v",
                                      *args], output=self.log)
        deadline = time.time() + timeout
        while "ready (" not in self.text():
            assert time.time() < deadline and self.proc.poll() is None, self.text()
            time.sleep(0.1)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            send_signal(self.proc, signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def _curl(lab: SwanLab, *args: str, timeout: int = 120) -> bytes:
    got = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", str(timeout), *args],
                     text=False, timeout=timeout + 30)
    assert got.returncode == 0, got.stderr
    return got.stdout


@pytest.mark.parametrize("esp", ["aes256gcm16", "aes256-sha256"])
@pytest.mark.parametrize("proposal", ["aes256gcm16-prfsha256-ecp256",
                                      "aes256gcm16-prfsha256-x25519",
                                      "aes256gcm16-prfsha256-modp2048",
                                      "aes256-sha256-modp2048"])
def test_cli_probe_proposals(lab: SwanLab, proposal: str, esp: str):
    conf = _variant_conf(lab, "psk", proposals=proposal, esp=esp)
    offset = len(lab.responder_log.read_bytes())
    cp = lab.run_client([lab.python, "-m", "erebus", "probe", str(conf), "--json",
                         "--ping", lab.web_addr], timeout=90)
    assert cp.returncode == 0, (cp.stdout, cp.stderr, lab.logs_tail())
    report = json.loads(cp.stdout)
    assert report["ok"] and report["kind"] == "ipsec", report
    assert report["virtual_ip"].startswith("198.19.231."), report
    assert report["dns"] == [lab.dns_addr] and report["ping_ms"] is not None, report
    assert report["cipher"] == esp, report
    # the responder agrees on the IKE suite
    log = lab.responder_log.read_bytes()[offset:].decode(errors="replace")
    group = {"ecp256": "ECP_256", "x25519": "CURVE_25519",
             "modp2048": "MODP_2048"}[proposal.split("-")[-1]]
    chosen = [line for line in log.splitlines() if "selected proposal: IKE:" in line]
    assert chosen and chosen[0].endswith(group), log[-3000:]


def test_cli_10mb_through_forward_and_http_proxy(lab: SwanLab, big_files):
    size, digest = big_files["big.bin"]
    up = _Up(lab, lab.profile("psk").conf, "-L", f"18301:{lab.web_addr}:80",
             "--http-proxy", "18302")
    try:
        got = _curl(lab, "http://127.0.0.1:18301/big.bin")
        assert len(got) == size and hashlib.sha256(got).hexdigest() == digest
        got = _curl(lab, "-x", "http://127.0.0.1:18302", f"http://{lab.web_addr}/big.bin")
        assert len(got) == size and hashlib.sha256(got).hexdigest() == digest
    finally:
        up.stop()
    assert not lab.established("psk"), up.text()[-3000:]
    # on exit, one line of counters, as for the other tunnels (packets_in counts ESP)
    counters = re.search(r"counters: (.*)", up.text())
    assert counters and "datagrams_in=" in counters.group(1), up.text()[-3000:]
    assert "ERROR" not in up.text(), up.text()[-3000:]


_OWN_CHILD_REKEY = re.compile(r"CHILD_SA rekeyed: in (0x[0-9a-f]+) out (0x[0-9a-f]+)")
_OWN_IKE_REKEY = "IKE SA rekeyed (by us)"


def _own_rekeys(text: str) -> tuple[int, int, int]:
    """(CHILD_SA rekeys, IKE SA rekeys, CHILD_SA rekeys after the first IKE SA rekey) that
    erebus started, from its log."""
    children = [m.start() for m in _OWN_CHILD_REKEY.finditer(text)]
    first_ike = text.find(_OWN_IKE_REKEY)
    after = sum(pos > first_ike for pos in children) if first_ike >= 0 else 0
    return len(children), text.count(_OWN_IKE_REKEY), after


def _wait_until(what: str, predicate, timeout: float, context) -> None:
    assert wait_until(predicate, timeout=timeout, interval=0.2), \
        f"{what} not within {timeout:g} s\n{context()}"


def _downloads_until(lab: SwanLab, up: "_Up", url: str, file: tuple[int, str], rate: str,
                     done, timeout: float, what: str) -> int:
    """Paced downloads of *url* (curl --limit-rate *rate*) one after the other, each
    byte-exact against *file* (size, sha256), until ``done(log text)`` holds while one
    runs or when one ends, within *timeout* seconds; returns how many ran."""
    size, digest = file
    deadline = time.monotonic() + timeout
    downloads = 0
    while True:
        out = _log_dir(lab) / "got.bin"
        proc = lab.spawn_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", "120",
                                         "--limit-rate", rate, "-o", str(out), url],
                            output=out.with_suffix(".log"))
        seen = False
        while proc.poll() is None:
            seen = seen or done(up.text())
            time.sleep(0.2)
        assert proc.returncode == 0, (out.with_suffix(".log").read_text(),
                                      up.text()[-3000:])
        got = out.read_bytes()
        assert len(got) == size and hashlib.sha256(got).hexdigest() == digest
        downloads += 1
        if seen or done(up.text()):
            return downloads
        assert time.monotonic() < deadline, \
            f"{what} not within {timeout:g} s ({downloads} downloads)\n{up.text()[-3000:]}"


def test_cli_100mb_across_responder_child_rekeys(lab: SwanLab, big_files):
    """Paced 100 MB downloads while the responder rekeys the CHILD_SA every ~10 s, until
    it has done so twice (bounded: 90 s): each download byte-exact."""
    up = _Up(lab, lab.profile("rekey").conf, "-L", f"18303:{lab.web_addr}:80")
    try:
        _downloads_until(lab, up, "http://127.0.0.1:18303/huge.bin", big_files["huge.bin"],
                         "3500K", lambda text: text.count(
                             "CHILD_SA rekeyed by the responder") >= 2, 90,
                         "two CHILD_SA rekeys by the responder")
    finally:
        up.stop()


def test_cli_killed_client_detected_by_dpd(lab: SwanLab):
    up = _Up(lab, lab.profile("psk").conf, "-L", f"18304:{lab.web_addr}:80")
    try:
        assert lab.established("psk")
        send_signal(up.proc, signal.SIGKILL)        # the python under runuser
        up.proc.wait(timeout=10)
        t0 = time.monotonic()
        while lab.established("psk"):
            assert time.monotonic() - t0 < 45, lab.list_sas()
            time.sleep(1)
    finally:
        up.stop()


def test_cli_ike_sa_rekey_by_the_responder(lab: SwanLab, big_files):
    """`swanctl --rekey --ike-id` on the responder while paced 100 MB downloads run, until
    two rekeys have completed (shown in erebus's log) while a download was still under
    way (bounded: 6 downloads, 150 s; a slow host makes more rounds, not a failure): each
    download byte-exact, the responder then lists one IKE SA, with new SPIs."""
    size, digest = big_files["huge.bin"]
    up = _Up(lab, lab.profile("psk").conf, "-L", f"18305:{lab.web_addr}:80")
    context = lambda: f"{up.text()[-3000:]}\n{lab.list_sas()}"
    try:
        before = lab.wait_established("psk")
        deadline = time.monotonic() + 150
        rekeys = during = downloads = 0
        while during < 2:
            assert downloads < 6 and time.monotonic() < deadline, \
                f"{during} rekeys during {downloads} downloads\n{context()}"
            out = _log_dir(lab) / "got.bin"
            proc = lab.spawn_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", "150",
                                             "--limit-rate", "4M", "-o", str(out),
                                             "http://127.0.0.1:18305/huge.bin"],
                                output=out.with_suffix(".log"))
            downloads += 1
            _wait_until("the download under way", lambda: out.exists() and
                        out.stat().st_size > 1 << 20, 30, context)
            while proc.poll() is None and during < 2:
                _wait_until("one IKE SA on the responder",
                            lambda: len(lab.ike_sas("psk")) == 1, 20, context)
                uid = lab.ike_sas("psk")[0]["uniqueid"]
                lab.swanctl(lab.responder, "--rekey", "--ike-id", uid, timeout=20)
                rekeys += 1
                _wait_until(f"IKE SA rekey {rekeys} in erebus's log",
                            lambda n=rekeys: up.text().count(
                                "IKE SA rekeyed by the responder") >= n, 20, context)
                if proc.poll() is None:       # the transfer outlived this rekey
                    during += 1
            assert proc.wait(timeout=180) == 0, out.with_suffix(".log").read_text()
            got = out.read_bytes()
            assert len(got) == size and hashlib.sha256(got).hexdigest() == digest
        _wait_until("one IKE SA on the responder", lambda: len(lab.ike_sas("psk")) == 1,
                    20, context)
        after = lab.wait_established("psk")
        assert after["initiator-spi"] != before["initiator-spi"], (before, after)
    finally:
        up.stop()
    assert not lab.established("psk"), up.text()[-3000:]


def test_cli_own_ike_and_child_rekeys_during_download(lab: SwanLab, big_files):
    """swanctl.conf with rekey_time = 12s (IKE SA) and a child rekey_time = 8s: paced
    downloads run (one after the other, each byte-exact) until erebus's log shows two
    CHILD_SA rekeys of its own, one IKE SA rekey of its own and a CHILD_SA rekey after it
    (the child's rekey deadline survives the IKE SA rekey), within a bounded deadline;
    then the responder lists one IKE SA with one live CHILD_SA, the last one erebus made."""
    conf = _variant_conf(lab, "psk", conn_extra={"rekey_time": "12s"},
                         child_extra={"rekey_time": "8s"})
    up = _Up(lab, conf, "-L", f"18306:{lab.web_addr}:80")
    context = lambda: f"{up.text()[-3000:]}\n{lab.list_sas()}"
    try:
        def seen(text: str) -> bool:
            children, ikes, after = _own_rekeys(text)
            return children >= 2 and ikes >= 1 and after >= 1
        # 8 s + 12 s + 8 s of rekey timers, and slack
        _downloads_until(lab, up, "http://127.0.0.1:18306/big.bin", big_files["big.bin"],
                         "2M", seen, 90, "own rekeys (2 CHILD_SA, 1 IKE SA, 1 CHILD_SA after "
                         "it)")
        # the responder agrees: one IKE SA with one CHILD_SA (once strongSwan has
        # destroyed the children it keeps DELETED for delete_rekeyed_delay, 5 s), the one
        # erebus made last (our inbound SPI is its outbound one)
        def settled() -> bool:
            newest = _OWN_CHILD_REKEY.findall(up.text())[-1]
            sas = lab.ike_sas("psk")
            if len(sas) != 1 or _OWN_CHILD_REKEY.findall(up.text())[-1] != newest:
                return False
            children = list((sas[0].get("child-sas") or {}).values())
            return len(children) == 1 and children[0].get("state") == "INSTALLED" and \
                (int(children[0]["spi-out"], 16), int(children[0]["spi-in"], 16)) == \
                tuple(int(x, 16) for x in newest)
        _wait_until("one IKE SA with one installed CHILD_SA, the last one erebus made",
                    settled, 20, context)
    finally:
        up.stop()
    assert not lab.established("psk"), up.text()[-3000:]


# -- strongSwan's defaults: no local.id with a certificate ---------------------------------

@pytest.mark.parametrize("mode, algorithm, subject", [
    ("cert-dn", "ECDSA", "CN=client.swan.test"),
    ("cert-rsa-dn", "RSA", "CN=rsa-client.swan.test")])
def test_cli_certificate_without_local_id_is_the_subject_dn(lab: SwanLab, mode: str,
                                                            algorithm: str, subject: str):
    """The user's swanctl.conf has local.auth = pubkey, local.certs and no local.id; the
    stock responder's remote.id is the certificate's subject DN. erebus (as nobody, the
    real CLI) identifies with that DN, as charon does, and carries traffic."""
    conf = lab.profile(mode).conf
    assert "id = " not in conf.read_text().split("local {")[1].split("}")[0]
    cp = lab.run_client([lab.python, "-m", "erebus", "probe", str(conf), "--json",
                         "--ping", lab.web_addr], timeout=90)
    context = f"{cp.stdout}\n{cp.stderr[-3000:]}\n{lab.logs_tail()}"
    report = json.loads(cp.stdout)
    assert cp.returncode == 0 and report["ok"] and report["ping_ms"] is not None, context
    log = lab.responder_log.read_text(errors="replace")
    assert re.search(rf"<{re.escape(mode)}\|\d+> authentication of '{re.escape(subject)}' "
                     rf"with {algorithm}[^\n]* successful", log), context
    up = _Up(lab, conf, "-L", f"18310:{lab.web_addr}:80")
    try:
        got = _curl(lab, "http://127.0.0.1:18310/blob.bin")
        assert hashlib.sha256(got).hexdigest() == lab.blob_sha256
    finally:
        up.stop()
    assert not lab.established(mode), up.text()[-3000:]
