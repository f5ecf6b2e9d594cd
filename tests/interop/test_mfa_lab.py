"""Challenge/response and pending authentication against stock OpenVPN 2.6 servers in
the lab, erebus running as ``nobody`` with its answers typed on a pseudo-terminal:

- a static challenge: the server's ``auth-user-pass-verify ... via-file`` script
  decodes ``SCRV1:base64(password):base64(response)``;
- a dynamic challenge: the script refuses the password with ``CRV1:R,E:...`` in
  ``$auth_failed_reason_file`` (sent as ``AUTH_FAILED,CRV1:...``) and accepts
  ``CRV1::state::response`` in the next session (``auth-retry interact``);
- deferred auth: the script writes ``$auth_pending_file`` (timeout, method, EXTRA) and
  returns 2, so the server sends ``AUTH_PENDING,timeout N`` and ``INFO_PRE,EXTRA``;
  ``client-crresponse`` checks a CR_TEXT answer, or the test approves a WEB_AUTH login
  by writing ``$auth_control_file`` itself.

Every server script runs as the server's user (root here), never as nobody."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.interop.util import _fetch, _free_port, outdir
from tests.lab import MODES, WEB_ADDR, Mode, _LineWithScript, send_signal, stop_process, tail

pytestmark = pytest.mark.interop

CODE = "424242"

# $1: username and password, one a line.  alice / s3cret with the response 424242.
_STATIC_SH = f"""#!/bin/sh
{{ read -r user && read -r pass; }} < "$1" || exit 1
want="SCRV1:$(printf s3cret | base64):$(printf {CODE} | base64)"
[ "$user" = alice ] && [ "$pass" = "$want" ] && exit 0
printf 'wrong OTP for %s' "$user" > "$auth_failed_reason_file"
exit 1
"""

# The first session: the right password gets a CRV1 challenge; the next one must send
# CRV1::st8te42::424242.
_DYNAMIC_SH = f"""#!/bin/sh
{{ read -r user && read -r pass; }} < "$1" || exit 1
[ "$user" = alice ] || exit 1
if [ "$pass" = s3cret ]; then
    printf 'CRV1:R,E:st8te42:%s:Enter the code from your token' "$(printf alice | base64)" \\
        > "$auth_failed_reason_file"
    exit 1
fi
[ "$pass" = "CRV1::st8te42::{CODE}" ] && exit 0
printf 'wrong code' > "$auth_failed_reason_file"
exit 1
"""

# Deferred: AUTH_PENDING (120 s) with the EXTRA of the mode; the control files' names
# are left in the lab dir for the crresponse script (or the test) to finish.
_PENDING_SH = """#!/bin/sh
{{ read -r user && read -r pass; }} < "$1" || exit 1
[ "$user" = alice ] && [ "$pass" = s3cret ] || exit 1
printf '%s\\n' "$auth_control_file" > {lab_dir}/{name}.acf
printf '%s\\n' "$auth_failed_reason_file" > {lab_dir}/{name}.afr
printf '120\\n{method}\\n{extra}\\n' > "$auth_pending_file"
exit 2
"""

# client-crresponse: $1 holds the base64 of the CR_TEXT answer.
_CRRESPONSE_SH = f"""#!/bin/sh
acf=$(cat {{lab_dir}}/mfa-crtext.acf)
if [ "$(base64 -d < "$1")" = {CODE} ]; then
    echo 1 > "$acf"
else
    printf 'wrong code' > "$(cat {{lab_dir}}/mfa-crtext.afr)"
    echo 0 > "$acf"
fi
"""

WEB_URL = "https://sso.lab.test/login?session=7"


def _verify(name: str, body: str) -> tuple[str, ...]:
    return ("script-security 2",
            _LineWithScript("auth-user-pass-verify {script} via-file", f"{name}.sh", body))


class _Formatted(_LineWithScript):
    """A script line whose body also needs the lab dir (formatted at server start)."""

    def format(self, *args, **kwargs) -> str:
        self.script_body = self.script_body.replace("{lab_dir}", kwargs["lab_dir"])
        return super().format(*args, **kwargs)


def _pending(name: str, method: str, extra: str) -> tuple[str, ...]:
    body = _PENDING_SH.replace("{{", "{").replace("}}", "}").replace(
        "{name}", name).replace("{method}", method).replace("{extra}", extra)
    return ("script-security 2",
            _Formatted("auth-user-pass-verify {script} via-file", f"{name}.sh", body))


MODES.setdefault("mfa-static", Mode(51, server_lines=_verify("mfa-static", _STATIC_SH)))
MODES.setdefault("mfa-dynamic", Mode(52, server_lines=_verify("mfa-dynamic", _DYNAMIC_SH)))
MODES.setdefault("mfa-crtext", Mode(53, server_lines=(
    *_pending("mfa-crtext", "crtext", "CR_TEXT:R,E:Enter the code"),
    _Formatted("client-crresponse {script}", "mfa-crresponse.sh", _CRRESPONSE_SH))))
MODES.setdefault("mfa-web", Mode(54, server_lines=_pending(
    "mfa-web", "webauth", f"WEB_AUTH::{WEB_URL}")))

CREDENTIALS = "<auth-user-pass>\nalice\ns3cret\n</auth-user-pass>\n"


def profile(lab, server, name: str, extra: str) -> Path:
    path = outdir(lab) / name
    path.write_text(server.profile.read_text() + extra)
    os.chmod(path, 0o644)
    return path


class Typed:
    """erebus (``args``) as nobody in the client namespace with a pseudo-terminal as
    standard input; its output (prompts included) in a log file."""

    def __init__(self, lab, args, log_name):
        self.lab = lab
        self.log = outdir(lab) / log_name
        master, slave = os.openpty()
        self.master = master
        self.proc = lab.spawn_client([lab.python, "-m", "erebus", *map(str, args)],
                                     output=self.log, stdin=slave)
        os.close(slave)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, needle: str, *, timeout: float = 60, count: int = 1) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.text().count(needle) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"erebus never printed {needle!r}:\n{tail(self.log)}\n"
                    f"{self.lab.logs_tail()}", pytrace=False)

    def answer(self, prompt: str, text: str, *, count: int = 1) -> None:
        self.wait_for(prompt, count=count)
        os.write(self.master, text.encode() + b"\n")

    def close_input(self) -> None:
        os.close(self.master)
        self.master = None

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            pytest.fail(f"erebus did not end:\n{tail(self.log)}", pytrace=False)

    def stop(self) -> int:
        send_signal(self.proc, signal.SIGINT)
        code = self.wait(20)
        if self.master is not None:
            self.close_input()
        return code


def fetch_through(lab, typed: Typed, port: int) -> None:
    typed.wait_for("ready (")
    got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
    assert got == lab.blob_sha256, f"{err}\n{tail(typed.log)}\n{lab.logs_tail()}"


def test_static_challenge_response_is_sent_as_scrv1(lab, ovpn_server):
    server = ovpn_server("mfa-static")
    path = profile(lab, server, "static.ovpn", CREDENTIALS + 'static-challenge "Enter OTP" 1\n')
    port = _free_port()
    up = Typed(lab, ["up", path, "-L", f"{port}:{WEB_ADDR}:80"], "static-up.log")
    try:
        up.answer("CHALLENGE: Enter OTP ", CODE)
        fetch_through(lab, up, port)
    finally:
        code = up.stop()
    assert code == 0, tail(up.log)


def test_a_wrong_static_response_is_refused_with_the_servers_reason(lab, ovpn_server):
    server = ovpn_server("mfa-static")
    path = profile(lab, server, "static-bad.ovpn",
                   CREDENTIALS + 'static-challenge "Enter OTP" 0\n')
    probe = Typed(lab, ["probe", path, "--timeout", 30], "static-bad.log")
    probe.answer("CHALLENGE: Enter OTP ", "000000")
    code = probe.wait()
    probe.close_input()
    assert code == 1, tail(probe.log)
    assert "authentication failed: wrong OTP for alice" in probe.text(), tail(probe.log)


def test_static_challenge_without_a_terminal_is_one_clear_line(lab, ovpn_server):
    server = ovpn_server("mfa-static")
    path = profile(lab, server, "static-notty.ovpn",
                   CREDENTIALS + 'static-challenge "Enter OTP" 1\n')
    cp = lab.run_client([lab.python, "-m", "erebus", "probe", str(path)], timeout=60)
    out = cp.stdout + cp.stderr             # probe's report, then erebus's last word
    assert cp.returncode == 2, out
    assert ("static-challenge: the profile's static-challenge asks for a response and "
            "there is no terminal to ask on") in out, out


def test_dynamic_challenge_is_answered_in_a_new_session(lab, ovpn_server):
    server = ovpn_server("mfa-dynamic")
    path = profile(lab, server, "dynamic.ovpn", CREDENTIALS + "auth-retry interact\n")
    port = _free_port()
    up = Typed(lab, ["up", path, "-L", f"{port}:{WEB_ADDR}:80"], "dynamic-up.log")
    try:
        up.answer("CHALLENGE: Enter the code from your token ", CODE)
        fetch_through(lab, up, port)
    finally:
        code = up.stop()
    assert code == 0, tail(up.log)
    assert "the server asks a dynamic challenge: Enter the code from your token" \
        in up.text(), tail(up.log)


def test_a_wrong_dynamic_response_shows_the_servers_reason(lab, ovpn_server):
    server = ovpn_server("mfa-dynamic")
    path = profile(lab, server, "dynamic-bad.ovpn", CREDENTIALS + "auth-retry interact\n")
    probe = Typed(lab, ["probe", "-v", path, "--timeout", 30], "dynamic-bad.log")
    prompt = "CHALLENGE: Enter the code from your token "
    probe.answer(prompt, "111111")
    probe.wait_for("authentication failed: wrong code")
    probe.wait_for(prompt, count=2)          # interact: the password again, a new challenge
    probe.close_input()                      # nobody answers: one clear line, exit 1
    code = probe.wait()
    assert code == 1 and "asks for a response: no answer (the terminal is gone" \
        in probe.text(), tail(probe.log)


def test_dynamic_challenge_without_auth_retry_interact_says_what_to_add(lab, ovpn_server):
    server = ovpn_server("mfa-dynamic")
    path = profile(lab, server, "dynamic-none.ovpn", CREDENTIALS)
    cp = lab.run_client([lab.python, "-m", "erebus", "probe", str(path)], timeout=60)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1, out
    assert "only with 'auth-retry interact'" in out, out


def test_pending_auth_with_cr_text_answered_by_cr_response(lab, ovpn_server):
    server = ovpn_server("mfa-crtext")
    path = profile(lab, server, "crtext.ovpn", CREDENTIALS)
    port = _free_port()
    up = Typed(lab, ["up", path, "-L", f"{port}:{WEB_ADDR}:80"], "crtext-up.log")
    try:
        up.wait_for("AUTH_PENDING received, extending handshake timeout from 60s to 120s")
        up.answer("CHALLENGE: Enter the code ", CODE)
        fetch_through(lab, up, port)
    finally:
        code = up.stop()
    assert code == 0, tail(up.log)


def test_pending_auth_with_a_wrong_cr_text_answer_is_refused(lab, ovpn_server):
    server = ovpn_server("mfa-crtext")
    path = profile(lab, server, "crtext-bad.ovpn", CREDENTIALS)
    probe = Typed(lab, ["probe", path, "--timeout", 60], "crtext-bad.log")
    probe.answer("CHALLENGE: Enter the code ", "999")
    code = probe.wait(90)
    probe.close_input()
    assert code == 1 and "authentication failed: wrong code" in probe.text(), \
        f"{tail(probe.log)}\n{server.describe()}"


def test_pending_web_auth_shows_the_url_and_completes_when_approved(lab, ovpn_server):
    server = ovpn_server("mfa-web")
    path = profile(lab, server, "web.ovpn", CREDENTIALS)
    port = _free_port()
    log = outdir(lab) / "web-up.log"
    proc = lab.spawn_client([lab.python, "-m", "erebus", "up", str(path), "-L",
                             f"{port}:{WEB_ADDR}:80"], output=log)     # no terminal
    try:
        line = f"the server asks you to authenticate in a web browser: open {WEB_URL}"
        deadline = time.time() + 60
        while line not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.time() < deadline, tail(log)
            time.sleep(0.05)
        # the login "succeeds" out of band: approve the deferred auth
        acf = (lab.dir / "mfa-web.acf").read_text().strip()
        Path(acf).write_text("1\n")
        while "ready (" not in log.read_text():
            assert proc.poll() is None and time.time() < deadline + 60, tail(log)
            time.sleep(0.05)
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, f"{err}\n{tail(log)}"
    finally:
        send_signal(proc, signal.SIGINT)
        code = proc.wait(timeout=20)
    assert code == 0, tail(log)
