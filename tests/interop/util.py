"""Helpers shared by the interop tests: run erebus in the lab as nobody."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.lab import send_signal, stop_process, tail


def erebus(lab, *args, timeout=90):
    return lab.run_client([lab.python, "-m", "erebus", *map(str, args)], timeout=timeout)


def probe_json(lab, profile, *extra, timeout=90):
    """``erebus probe PROFILE --json EXTRA...`` as nobody: (the process, its report)."""
    cp = erebus(lab, "probe", profile, "--json", *extra, timeout=timeout)
    try:
        report = json.loads(cp.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"probe printed no JSON (exit {cp.returncode}):\n{cp.stdout}\n{cp.stderr}"
                    f"\n{lab.logs_tail()}", pytrace=False)
    return cp, report


def outdir(lab) -> Path:
    """A folder in the lab that nobody can write (pcaps, logs of erebus)."""
    d = Path(tempfile.mkdtemp(dir=lab.dir, prefix="out-"))
    os.chmod(d, 0o777)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Up:
    """``erebus up PROFILE -L ...`` (or any ``args``) running as nobody in the client
    namespace, waited for until it logs that it is ready."""

    def __init__(self, lab, profile, *forwards, log_name="up.log", args=()):
        self.lab = lab
        self.log = outdir(lab) / log_name
        self.proc = lab.spawn_client([lab.python, "-m", "erebus", "up", str(profile),
                                      *[a for f in forwards for a in ("-L", f)],
                                      *map(str, args)], output=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            text = self.log.read_text() if self.log.exists() else ""
            if "ready (" in text:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        stop_process(self.proc)
        pytest.fail(f"erebus up did not come up:\n{tail(self.log)}\n{lab.logs_tail()}",
                    pytrace=False)

    def stop(self) -> int:
        send_signal(self.proc, signal.SIGINT)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            return -1


def _fetch(lab, url, timeout=300):
    """curl in the client namespace; (sha256, bytes, seconds)."""
    start = time.monotonic()
    cp = lab.run_ns(lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                 f"curl -sS --fail --max-time {timeout} {url} | sha256sum"],
                    timeout=timeout + 30)
    elapsed = time.monotonic() - start
    return cp.stdout.split()[0] if cp.stdout else "", cp.stderr, elapsed


def _big_file(lab, name: str, size: int) -> str:
    """A random file of `size` bytes served by the web host; its sha256."""
    path = lab.dir / "www" / name
    if not path.exists():
        h = hashlib.sha256()
        with open(path, "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 1 << 20))
                f.write(chunk)
                h.update(chunk)
                left -= len(chunk)
        os.chmod(path, 0o644)
        (lab.dir / "www" / (name + ".sha256")).write_text(h.hexdigest())
    return (lab.dir / "www" / (name + ".sha256")).read_text()


