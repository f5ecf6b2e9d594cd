"""Challenge/response and pending authentication (static-challenge, CRV1, auth-retry,
auth-nocache, AUTH_PENDING with INFO_PRE WEB_AUTH / OPEN_URL / CR_TEXT): the parsers,
the session core against a fake 2.6 server in virtual time, the driver's questions
and the shell's immediate reconnect."""

from __future__ import annotations

import asyncio
import base64
import io
from types import SimpleNamespace

import pytest

from erebus import credentials
from erebus.errors import ConfigError, ParseError
from erebus.openvpn.challenge import (DynamicChallenge, cr_response, parse_auth_pending,
                                      parse_crv1, parse_info_pre, printable,
                                      static_response)
from erebus.openvpn.config import Remote
from erebus.openvpn.reader import parse_profile, read_profile
from erebus.openvpn.session import (AuthPending, ClientSession, Connected, CrTextRequested,
                                    Failed, ServerMessage, WebAuthRequested)
from erebus.runtime.openvpn import OpenVPNDriver
from erebus.runtime.tunnel import Endpoint, ShellTunnel
from erebus.session import Stage
from tests.unit.test_config import profile
from tests.unit import test_session
from tests.unit.test_session import FakeServer, push, run, settings
from tests.unit.virtual_loop import FakeConnector
from tests.unit.virtual_loop import run as vrun

B64_ALICE = base64.b64encode(b"alice").decode()
pki = test_session.pki          # the fixture: a CA, a server certificate and key


class Tty(io.StringIO):
    def isatty(self):
        return True


# -- parsers -------------------------------------------------------------------------------

def test_scrv1_is_the_management_notes_example_and_concat_joins():
    # doc/management-notes.txt: password "bar", response "8675309"
    assert static_response("bar", "8675309") == "SCRV1:YmFy:ODY3NTMwOQ=="
    assert static_response("bar", "8675309", "concat") == "bar8675309"
    with pytest.raises(ValueError, match="too long"):
        static_response("x" * 3100, "y")


def test_crv1_parses_the_management_notes_example():
    c = parse_crv1("CRV1:R,E:Om01u7Fh4LrGBS7uh0SWmzwabUiGiW6l:Y3Ix:Please enter token PIN")
    assert c == DynamicChallenge(True, True, "Om01u7Fh4LrGBS7uh0SWmzwabUiGiW6l", "cr1",
                                 "Please enter token PIN")
    assert c.password("8675309") == "CRV1::Om01u7Fh4LrGBS7uh0SWmzwabUiGiW6l::8675309"
    # the text may hold colons; no E flag: not echoed
    c = parse_crv1(f"CRV1:R:abc:{B64_ALICE}:PIN: 4 digits")
    assert (c.echo, c.response_required, c.text) == (False, True, "PIN: 4 digits")


@pytest.mark.parametrize("reason,words", [
    ("CRV1:R,E:abc", "malformed"),
    ("CRV1:R,E::" + B64_ALICE + ":text", "state id is empty"),
    ("CRV1:R,E:" + "s" * 2000 + ":" + B64_ALICE + ":text", "longer than 1024"),
    ("CRV1:R,E:a\x1bb:" + B64_ALICE + ":text", "control characters"),
    ("CRV1:R,E:abc:not*base64:text", "not valid base64"),
    ("CRV1:R,E:abc:" + base64.b64encode(b"\xff\xfe").decode() + ":text", "not UTF-8"),
    ("CRV1:R,E:abc:" + base64.b64encode(b"al\nice").decode() + ":text", "control"),
    ("CRV1:R,E:abc:" + "QUFB" * 400 + ":text", "longer than 512"),
    ("CRV1:" + "R," * 100 + ":abc:" + B64_ALICE + ":t", "flags too long"),
])
def test_a_hostile_crv1_is_refused_with_a_clear_reason(reason, words):
    with pytest.raises(ParseError, match=words):
        parse_crv1(reason)


def test_text_from_the_server_reaches_the_terminal_without_escape_sequences():
    c = parse_crv1(f"CRV1:E:abc:{B64_ALICE}:\x1b]0;pwned\x07\x1b[2JPIN\r\n\x9b")
    assert "\x1b" not in c.text and "\x07" not in c.text and "\x9b" not in c.text
    assert c.text.endswith("PIN???")
    assert printable("a" * 2000).endswith("...") and len(printable("a" * 2000)) == 1027


def test_auth_pending_keywords_and_info_pre_kinds():
    assert parse_auth_pending("AUTH_PENDING") is None
    assert parse_auth_pending("AUTH_PENDING,timeout 120") == 120
    assert parse_auth_pending("AUTH_PENDING,foo bar,timeout 30") == 30
    assert parse_auth_pending("AUTH_PENDING,timeout -3") is None
    web = parse_info_pre("WEB_AUTH:external:https://sso.example/x?y=1")
    assert (web.url, web.flags, web.method) == ("https://sso.example/x?y=1", ("external",),
                                                "webauth")
    assert parse_info_pre("OPEN_URL:https://a.example/").method == "openurl"
    cr = parse_info_pre("CR_TEXT:R,E:Enter the code: ")
    assert (cr.echo, cr.response_required, cr.text) == (True, True, "Enter the code: ")
    assert parse_info_pre("SOMETHING_ELSE") is None
    for bad, words in (("WEB_AUTH:https", "flags:url"), ("OPEN_URL:", "empty URL"),
                       ("OPEN_URL:https://" + "a" * 2000, "longer than 1024"),
                       ("CR_TEXT:R", "flags:text")):
        with pytest.raises(ParseError, match=words):
            parse_info_pre(bad)
    assert parse_info_pre("OPEN_URL:https://a/\x1b[31m").url == "https://a/?[31m"
    assert cr_response("123456") == b"CR_RESPONSE,MTIzNDU2\x00"


# -- the profile ----------------------------------------------------------------------------

def test_the_profile_takes_static_challenge_auth_retry_and_auth_nocache():
    p = parse_profile(profile('auth-user-pass\nstatic-challenge "Enter OTP" 1\n'
                              "auth-retry interact\nauth-nocache\n"), "p.ovpn")
    assert p.static_challenge == ("Enter OTP", True, "scrv1")
    assert (p.auth_retry, p.auth_nocache) == ("interact", True)
    p = parse_profile(profile('auth-user-pass\nstatic-challenge "PIN" 0 concat\n'), "p.ovpn")
    assert p.static_challenge == ("PIN", False, "concat")
    assert any("2.7" in w for w in p.warnings)
    assert parse_profile(profile(""), "p.ovpn").auth_retry == "none"


def test_bad_auth_retry_and_static_challenge_format_are_reported_together():
    problems = read_profile_text(profile("auth-retry sometimes\n"
                                            "static-challenge PIN 1 base64\n"))
    messages = [str(p) for p in problems]
    assert any("auth-retry: --auth-retry method must be 'interact', 'nointeract', or 'none'"
               in m for m in messages), messages
    assert any("static-challenge: FORMAT must be 'scrv1' or 'concat'" in m
               for m in messages), messages


def read_profile_text(text):
    import tempfile
    import os
    with tempfile.NamedTemporaryFile("w", suffix=".ovpn", delete=False) as f:
        f.write(text)
    try:
        return read_profile(f.name).problems
    finally:
        os.unlink(f.name)


def test_static_challenge_asks_after_the_password_and_packs_scrv1(tmp_path):
    p = parse_profile(profile('auth-user-pass\nstatic-challenge "Enter OTP" 1\n'), "p.ovpn")
    asked = []

    def ask(text):
        asked.append(("echo", text))
        return "alice" if "Username" in text else "123456\n"

    def prompt(text):
        asked.append(("hidden", text))
        return "s3cret"
    credentials.complete(p, stdin=Tty(), ask=ask, prompt=prompt)
    assert asked == [("echo", "Enter Auth Username: "), ("hidden", "Enter Auth Password: "),
                     ("echo", "CHALLENGE: Enter OTP ")]
    assert (p.username, p.password) == ("alice", "SCRV1:czNjcmV0:MTIzNDU2")


def test_static_challenge_with_a_credentials_file_still_asks_the_response(tmp_path):
    (tmp_path / "up.txt").write_text("alice\ns3cret\n")
    path = tmp_path / "p.ovpn"
    path.write_text(profile('auth-user-pass up.txt\nstatic-challenge "PIN" 0\n'))
    from erebus.openvpn.reader import load_profile
    p = load_profile(str(path))
    hidden = []
    credentials.complete(p, stdin=Tty(), prompt=lambda t: hidden.append(t) or "42",
                         ask=lambda t: pytest.fail("echoed"))
    assert hidden == ["CHALLENGE: PIN "] and p.password == "SCRV1:czNjcmV0:NDI="
    p = load_profile(str(path))
    with pytest.raises(ConfigError, match="static-challenge asks for a response and there "
                       "is no terminal to ask on"):
        credentials.complete(p, stdin=io.StringIO())


def test_end_of_input_is_a_clear_error():
    p = parse_profile(profile("auth-user-pass\n"), "p.ovpn")

    def eof(text):
        raise EOFError
    with pytest.raises(ConfigError, match="asks for a username: no answer"):
        credentials.complete(p, stdin=Tty(), ask=eof)


# -- the session core -----------------------------------------------------------------------

def core(ca, **kw):
    return ClientSession(settings(ca, username="alice", password="s3cret", **kw), 0.0)


def failure(events):
    failed = [e for e in events if isinstance(e, Failed)]
    assert len(failed) == 1, events
    assert "\n" not in failed[0].message and "\x1b" not in failed[0].message
    return failed[0]


CRV1 = f"AUTH_FAILED,CRV1:R,E:st4te:{B64_ALICE}:Enter the code from your token"


def test_crv1_under_auth_retry_interact_asks_for_an_immediate_new_session(pki):
    ca, cert, key = pki["lab-ca"]
    client = core(ca, auth_retry="interact")
    events, _, _ = run(client, FakeServer(cert, key, push=CRV1))
    f = failure(events)
    assert (f.stage, f.recoverable, f.immediate) == ("auth", True, True)
    assert "dynamic challenge: Enter the code from your token" in f.message
    assert client.auth_challenge.state_id == "st4te"
    assert client.auth_challenge.username == "alice"


@pytest.mark.parametrize("retry", ["none", "nointeract"])
def test_crv1_without_auth_retry_interact_ends_with_the_stock_clients_requirement(pki, retry):
    ca, cert, key = pki["lab-ca"]
    client = core(ca, auth_retry=retry)
    f = failure(run(client, FakeServer(cert, key, push=CRV1))[0])
    assert not f.recoverable and client.auth_challenge is None
    assert "only with 'auth-retry interact'" in f.message


def test_a_malformed_crv1_is_a_clear_auth_failure(pki):
    ca, cert, key = pki["lab-ca"]
    client = core(ca, auth_retry="interact")
    f = failure(run(client, FakeServer(cert, key,
                                       push="AUTH_FAILED,CRV1:R:st:%%%:text"))[0])
    assert f.stage == "auth" and not f.recoverable
    assert "dynamic challenge is refused: the dynamic challenge's username is not valid " \
        "base64" in f.message


@pytest.mark.parametrize("retry,recoverable,immediate,refused", [
    ("none", False, False, False), ("nointeract", True, False, False),
    ("interact", True, True, True)])
def test_auth_retry_decides_what_auth_failed_means(pki, retry, recoverable, immediate,
                                                   refused):
    ca, cert, key = pki["lab-ca"]
    client = core(ca, auth_retry=retry)
    f = failure(run(client, FakeServer(cert, key,
                                       push="AUTH_FAILED,bad \x1b[2Jpassword"))[0])
    assert (f.recoverable, f.immediate, client.auth_refused) == (recoverable, immediate,
                                                                 refused)
    assert f.message.startswith("authentication failed: bad ?[2Jpassword")


def test_a_refused_auth_token_is_forgotten_and_the_next_session_uses_the_password(pki):
    ca, cert, key = pki["lab-ca"]
    client = core(ca, auth_token="tok3n")
    server = FakeServer(cert, key, push="AUTH_FAILED")
    f = failure(run(client, server)[0])
    assert server.credentials == [("alice", "tok3n")]
    assert f.recoverable and client.auth_token is None and "auth-token" in f.message


def pending_server(cert, key, first, *, reply_at=90.0, answer=None):
    """A server that answers the first PUSH_REQUEST with ``first`` (AUTH_PENDING ...)
    and the PUSH_REPLY only from ``reply_at`` on (or once CR_RESPONSE ``answer`` came)."""
    state = {"pending": False, "answered": False}

    def on_message(msg, now):
        if answer is not None and msg.startswith("CR_RESPONSE,"):
            state["answered"] = msg == f"CR_RESPONSE,{answer}"
            return [] if state["answered"] else ["AUTH_FAILED,wrong code"]
        if msg != "PUSH_REQUEST":
            return []
        if not state["pending"]:
            state["pending"] = True
            return first
        done = state["answered"] if answer is not None else now >= reply_at
        return [push()] if done else []
    server = FakeServer(cert, key, push=on_message)
    server.state = state
    return server


def test_auth_pending_extends_the_wait_and_web_auth_shows_the_url(pki):
    ca, cert, key = pki["lab-ca"]
    client = core(ca, sso=("webauth", "openurl"))
    server = pending_server(cert, key, ["AUTH_PENDING,timeout 120",
                                        "INFO_PRE,WEB_AUTH::https://sso.lab.test/\x1b[5mx"])
    events, _, now = run(client, server, limit=200)
    assert client.established and 90 <= now < 95           # beyond hand-window 60 s
    pending = [e for e in events if isinstance(e, AuthPending)]
    assert [p.message for p in pending] == [
        "AUTH_PENDING received, extending handshake timeout from 60s to 120s"]
    web = [e.message for e in events if isinstance(e, WebAuthRequested)]
    assert web == ["the server asks you to authenticate in a web browser: open "
                   "https://sso.lab.test/?[5mx"]
    assert "IV_SSO=webauth,openurl\n" in server.peer_info
    assert server.control_messages.count("PUSH_REQUEST") > 20   # kept asking meanwhile


def test_auth_pending_ends_at_its_timeout_capped_by_hand_window_or_half_reneg_sec(pki):
    ca, cert, key = pki["lab-ca"]
    client = core(ca)
    events, _, now = run(client, pending_server(cert, key, ["AUTH_PENDING,timeout 30"],
                                                reply_at=1e9), limit=500)
    f = failure(events)
    assert f.stage == "push-timeout" and 30 <= now < 31
    client = core(ca, reneg_sec=200.0)      # max(200 / 2, 60) = 100 s at most
    events, _, now = run(client, pending_server(cert, key, ["AUTH_PENDING,timeout 99999"],
                                                reply_at=1e9), limit=5000)
    assert failure(events).stage == "push-timeout" and 100 <= now < 101
    assert [e.timeout for e in events if isinstance(e, AuthPending)] == [100.0]


def test_a_pending_auth_ends_when_the_server_falls_silent_for_hand_window(pki):
    ca, cert, key = pki["lab-ca"]
    client = core(ca)
    server = pending_server(cert, key, ["AUTH_PENDING,timeout 300"], reply_at=1e9)
    events, _, now = run(client, server, until=lambda c: server.state["pending"])
    assert [e.timeout for e in events if isinstance(e, AuthPending)] == [300.0]
    # from now on nothing reaches the client: its hand-window (60 s) ends the wait
    quiet_from = now
    while not client.finished:
        now = client.get_timer()
        client.handle_timer(now)
        client.datagrams_to_send(now)
    f = client.next_event()
    assert isinstance(f, Failed) and f.stage == "push-timeout"
    assert "no packet from the server for 60 s" in f.message
    assert now - quiet_from <= 60.5


def test_cr_text_is_answered_with_cr_response_then_the_push_reply_comes(pki):
    ca, cert, key = pki["lab-ca"]
    client = core(ca, sso=("webauth", "openurl", "crtext"))
    server = pending_server(cert, key, ["AUTH_PENDING,timeout 120",
                                        "INFO_PRE,CR_TEXT:R,E:Enter the code"],
                            answer=base64.b64encode(b"424242").decode())
    events, _, now = run(client, server, until=lambda c: server.state["pending"])
    asked = [e for e in events if isinstance(e, CrTextRequested)]
    assert [(a.request.text, a.request.echo) for a in asked] == [("Enter the code", True)]
    client.send_cr_response("424242", now)
    events, _, _ = run(client, server, start=now)
    assert client.established
    assert "CR_RESPONSE,NDI0MjQy" in server.control_messages
    assert "IV_SSO=webauth,openurl,crtext\n" in server.peer_info


def test_a_server_info_message_is_shown_sanitised(pki):
    ca, cert, key = pki["lab-ca"]
    client = core(ca)
    events, _, _ = run(client, FakeServer(cert, key, push=["INFO,hello\x1b[31m", push()]))
    messages = [e.message for e in events if isinstance(e, ServerMessage)]
    assert messages == ["server says: INFO,hello?[31m"]
    assert any(isinstance(e, Connected) for e in events)


# -- the driver and the shell ---------------------------------------------------------------

class Asked:
    """An ask coroutine answering from a list, recording the questions."""

    available = True

    def __init__(self, *answers):
        self.answers = list(answers)
        self.questions = []

    async def __call__(self, text, echo, why):
        self.questions.append((text, echo))
        if not self.answers:
            raise ConfigError(f"{why} and there is no terminal to ask on")
        return self.answers.pop(0)


def driver_profile(**kw):
    p = parse_profile(profile("auth-user-pass\n" + "".join(f"{k.replace('_', '-')} {v}\n"
                                                          for k, v in kw.items())), "p.ovpn")
    p.credentials_given = (None, None)
    p.username, p.password = "alice", "s3cret"
    return p


def test_the_driver_answers_a_dynamic_challenge_with_the_servers_username():
    p = driver_profile(auth_retry="interact")
    ask = Asked("777")
    driver = OpenVPNDriver(p, session_factory=object, ask=ask)
    previous = SimpleNamespace(auth_challenge=parse_crv1(
        f"CRV1:R:st4te:{base64.b64encode(b'bob').decode()}:Code?"), auth_token=None)
    vrun(driver.prepare(previous))
    assert ask.questions == [("CHALLENGE: Code? ", False)]
    assert (p.username, p.password) == ("bob", "CRV1::st4te::777")


def test_auth_retry_interact_asks_everything_again():
    p = driver_profile(auth_retry="interact")
    ask = Asked("carol", "n3w")
    driver = OpenVPNDriver(p, session_factory=object, ask=ask)
    vrun(driver.prepare(SimpleNamespace(auth_challenge=None, auth_refused=True,
                                        auth_token=None)))
    assert [q for q, _ in ask.questions] == ["Enter Auth Username: ", "Enter Auth Password: "]
    assert (p.username, p.password) == ("carol", "n3w")


def test_auth_nocache_forgets_what_was_asked_unless_an_auth_token_stands_in():
    p = driver_profile(auth_nocache="")
    ask = Asked("dave", "pw2", "erin", "pw3")
    driver = OpenVPNDriver(p, ask=ask)
    endpoint = Endpoint("vpn", 1194)
    first = driver.new_session(0.0, endpoint, None, ("198.18.1.1", 1194), None)
    assert (first.settings.username, first.settings.password) == ("alice", "s3cret")
    assert (p.username, p.password) == (None, None)         # forgotten once sent
    first.auth_token = "tok"                                 # pushed: no question
    vrun(driver.prepare(first))
    assert ask.questions == []
    second = driver.new_session(1.0, endpoint, None, ("198.18.1.1", 1194), first)
    assert second.settings.auth_token == "tok"
    second.auth_token = None                                 # refused: ask again
    vrun(driver.prepare(second))
    assert (p.username, p.password) == ("dave", "pw2")


class _Core:
    """A core that, once the link delivers anything, fails (challenge) or connects."""

    def __init__(self, outcome, now):
        self.outcome = outcome
        self.counters = SimpleNamespace()
        self.events = []
        self.finished = self.established = False
        self.answered = True
        self.auth_challenge = None
        self.auth_token = None
        if self.outcome == "challenge":
            self.auth_challenge = parse_crv1(f"CRV1:R:s1:{B64_ALICE}:Code?")
            self.events.append(Failed("auth", "the server asks a dynamic challenge",
                                      recoverable=True, immediate=True))
            self.finished = True
        else:
            from erebus.session import Connected as C, TunnelInfo
            self.established = True
            self.events.append(C(TunnelInfo("openvpn", "", "198.19.1.2", "255.255.255.0",
                                            None)))

    def receive_datagram(self, data, now):
        return []

    def datagrams_to_send(self, now):
        return []

    def get_timer(self):
        return None

    def handle_timer(self, now):
        pass

    def next_event(self):
        return self.events.pop(0) if self.events else None

    def close(self, now):
        self.finished = True

    def connect_timeout(self):
        return Stage.TIMEOUT, "stalled"


def test_the_shell_reconnects_at_once_to_the_same_remote_to_answer_a_challenge():
    p = driver_profile(auth_retry="interact")
    p.remotes = [Remote("vpn", 1194, "udp"), Remote("other", 1194, "udp")]
    ask = Asked("555")
    made = []

    class Driver(OpenVPNDriver):
        def new_session(self, now, endpoint, local, remote, previous):
            made.append((endpoint.host, now, p.password))
            return _Core("challenge" if len(made) == 1 else "connect", now)

    async def main():
        loop = asyncio.get_running_loop()
        connector = FakeConnector({"vpn": lambda: SimpleNamespace(receive=lambda d, n: []),
                                   "other": lambda: SimpleNamespace(receive=lambda d, n: [])})
        tunnel = ShellTunnel(Driver(p, session_factory=object, ask=ask), warnings=[],
                             connect_timeout=30, connector=connector)
        start = loop.time()
        info = await tunnel.connect()
        return info, loop.time() - start

    info, took = vrun(main())
    assert [(h, pw) for h, _, pw in made] == [("vpn", "s3cret"), ("vpn", "CRV1::s1::555")]
    assert took < 1.0 and info.virtual_ip == "198.19.1.2"


def test_the_shell_gives_up_after_a_run_of_challenges():
    p = driver_profile(auth_retry="interact")
    p.remotes = [Remote("vpn", 1194, "udp")]

    class Driver(OpenVPNDriver):
        def new_session(self, now, endpoint, local, remote, previous):
            return _Core("challenge", now)

    async def main():
        connector = FakeConnector({"vpn": lambda: SimpleNamespace(receive=lambda d, n: [])})
        tunnel = ShellTunnel(Driver(p, session_factory=object, ask=Asked(*["1"] * 20)),
                             warnings=[], connect_timeout=30, connector=connector)
        await tunnel.connect()

    from erebus.errors import SessionError
    with pytest.raises(SessionError, match="challenges or refusals in a row: giving up"):
        vrun(main())


def test_erebus_check_says_the_static_challenge_will_be_asked():
    from pathlib import Path

    from erebus.check import check_openvpn
    path = Path(__file__).resolve().parents[1] / "profiles" / "mfa-otp.ovpn"
    code, report = check_openvpn(str(path))
    assert code == 0
    assert report["settings"]["auth"]["prompts"] == ["username", "password",
                                                  "static-challenge response"]


def test_auth_retry_interact_without_credentials_to_ask_waits_and_tries_again(pki):
    ca, cert, key = pki["lab-ca"]
    client = ClientSession(settings(ca, auth_retry="interact"), 0.0)   # certificate only
    f = failure(run(client, FakeServer(cert, key, push="AUTH_FAILED,client-connect"))[0])
    assert (f.recoverable, f.immediate, client.auth_refused) == (True, False, False)
    assert "(auth-retry interact: trying again with the same credentials)" in f.message


def test_a_cr_text_challenge_is_asked_once_at_a_time_and_answered_through_the_shell():
    from erebus.openvpn.challenge import CrText
    p = driver_profile()
    gate = asyncio.Event()
    questions = []

    async def ask(text, echo, why):
        questions.append(text)
        await gate.wait()
        return "99"

    driver = OpenVPNDriver(p, session_factory=object, ask=ask)
    sent, answered = [], []
    session = SimpleNamespace(finished=False,
                              send_cr_response=lambda r, now: sent.append(r))

    async def main():
        event = CrTextRequested(CrText(False, True, "Code?"))
        driver.on_event(event, session, lambda s, e: answered.append((s, e)))
        driver.on_event(event, session, lambda s, e: answered.append((s, e)))  # repeated
        await asyncio.sleep(1)
        gate.set()
        await asyncio.sleep(1)

    vrun(main())
    assert questions == ["CHALLENGE: Code? "] and sent == ["99"]
    assert answered == [(session, None)]
