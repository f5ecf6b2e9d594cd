"""Asking for what a profile leaves out (auth-user-pass without a file, a
static-challenge's response), on the terminal, like the stock client; a password is
never echoed, never logged.  The same :class:`Terminal` answers what a server asks
later (a dynamic challenge, CR_TEXT, credentials again after AUTH_FAILED).  And the
username and password the local proxies ask of their clients, from a file or the
environment (never from the command line, which every local user can read)."""

from __future__ import annotations

import binascii
import getpass
import hmac
import os
import sys
from dataclasses import dataclass, field

from .errors import ConfigError
from .files import read_limited
from .openvpn.challenge import USER_PASS_LEN, static_response


def ask_echoed(text: str) -> str:
    """input(), with the question on standard error (standard output may be a report,
    erebus probe --json)."""
    sys.stderr.write(text)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line


class Terminal:
    """Questions for the user on the terminal: standard input must be one.  ``ask``
    (echoed) and ``prompt`` (hidden) are :func:`ask_echoed` and getpass.getpass()
    unless a test gives its own."""

    def __init__(self, stdin=None, *, prompt=getpass.getpass, ask=ask_echoed):
        self._stdin = stdin
        self._prompt, self._ask = prompt, ask

    @property
    def available(self) -> bool:
        stream = self._stdin or sys.stdin
        return stream is not None and stream.isatty()

    def question(self, text: str, *, echo: bool, why: str, path: str | None = None,
                 option: str | None = None) -> str:
        """The answer to ``text``; ConfigError (``why`` and what to do) without a
        terminal or at the end of input."""
        if not self.available:
            raise ConfigError(f"{why} and there is no terminal to ask on", path=path,
                              option=option)
        try:
            answer = self._ask(text) if echo else self._prompt(text)
        except EOFError:
            raise ConfigError(f"{why}: no answer (end of input)", path=path,
                              option=option) from None
        except OSError as exc:             # EIO: the terminal hung up
            raise ConfigError(f"{why}: no answer (the terminal is gone: "
                              f"{exc.strerror or exc})", path=path, option=option) from None
        answer = answer.rstrip("\r\n")
        if len(answer.encode("utf-8", "surrogateescape")) >= USER_PASS_LEN:
            raise ConfigError(f"{why}: the answer is longer than {USER_PASS_LEN - 1} bytes",
                              path=path, option=option)
        return answer


def forget(profile) -> None:
    """Back to what the profile itself gives: the next :func:`complete` asks again for
    the rest (auth-retry interact, auth-nocache)."""
    if profile.credentials_given is not None:
        profile.username, profile.password = profile.credentials_given


@dataclass(frozen=True, slots=True)
class Question:
    """One thing to ask: ``field`` is username, password or response."""

    field: str
    text: str
    echo: bool
    why: str
    option: str


def questions(profile) -> list[Question]:
    """What :func:`complete` must ask for this profile, in the stock client's order
    (username, password, then the static challenge)."""
    if not profile.auth_user_pass:
        return []
    out = []
    if profile.username is None:
        out.append(Question("username", "Enter Auth Username: ", True,
                            "the profile asks for a username", "auth-user-pass"))
    if profile.password is None:
        out.append(Question("password", "Enter Auth Password: ", False,
                            "the profile asks for a password", "auth-user-pass"))
    challenge = getattr(profile, "static_challenge", None)
    if challenge is not None:
        text, echo, _ = challenge
        out.append(Question("response", f"CHALLENGE: {text} ", echo,
                            "the profile's static-challenge asks for a response",
                            "static-challenge"))
    return out


def apply_answers(profile, answers: dict[str, str]) -> None:
    """The answers to :func:`questions` into the profile: the static-challenge response
    packed into the password (misc.c get_user_pass_cr: SCRV1:base64(password):
    base64(response), or concatenated)."""
    if "username" in answers:
        profile.username = answers["username"].strip()
        if not profile.username:
            raise ConfigError("ERROR: Auth username is empty", path=profile.path,
                              option="auth-user-pass")
    if "password" in answers:
        profile.password = answers["password"]
    if "response" in answers:
        _, _, fmt = profile.static_challenge
        try:
            profile.password = static_response(profile.password, answers["response"], fmt)
        except ValueError as exc:
            raise ConfigError(str(exc), path=profile.path, option="static-challenge") \
                from None


def complete(profile, *, stdin=None, prompt=getpass.getpass, ask=ask_echoed,
             terminal: Terminal | None = None) -> None:
    """Fill in the username and password the profile asks for but does not give, and
    the static-challenge response ("CHALLENGE: TEXT"), asked on the terminal."""
    if not profile.auth_user_pass:
        return
    if profile.credentials_given is None:
        profile.credentials_given = (profile.username, profile.password)
    asked = questions(profile)
    if not asked:
        return
    term = terminal if terminal is not None else Terminal(stdin, prompt=prompt, ask=ask)
    if (profile.username is None or profile.password is None) and not term.available:
        missing = "username and password" if profile.username is None else "password"
        raise ConfigError(f"the profile asks for a {missing} (auth-user-pass) and there is "
                          "no terminal to ask on: give 'auth-user-pass FILE' (username on "
                          "the first line, password on the second)", path=profile.path,
                          option="auth-user-pass")
    apply_answers(profile, {q.field: term.question(q.text, echo=q.echo, why=q.why,
                                                   path=profile.path, option=q.option)
                            for q in asked})


# -- the local proxies' username and password ----------------------------------------------

PROXY_AUTH_ENV = "EREBUS_PROXY_AUTH"     # "user:password"
MAX_FIELD = 255                          # RFC 1929: ULEN and PLEN are one byte each
MAX_AUTH_FILE = 4096


@dataclass(frozen=True)
class ProxyCredentials:
    """The one username and password the HTTP proxy (``Proxy-Authorization: Basic``,
    RFC 7617) and the SOCKS5 server (RFC 1929) ask of local clients.  Compared in
    constant time; the password is never in a repr, a log line or an error."""

    user: bytes
    password: bytes = field(repr=False)

    def check(self, user: bytes, password: bytes) -> bool:
        return hmac.compare_digest(user, self.user) & hmac.compare_digest(password,
                                                                          self.password)

    def check_basic(self, value: bytes) -> bool:
        """Whether a ``Proxy-Authorization`` header value carries these credentials."""
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = binascii.a2b_base64(token.strip(), strict_mode=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded, self.user + b":" + self.password)


def _credentials(user: str, password: str, where: str) -> ProxyCredentials:
    u, p = user.encode("utf-8", "surrogateescape"), password.encode("utf-8", "surrogateescape")
    if not u:
        raise ConfigError(f"{where}: the username is empty")
    if b":" in u:
        raise ConfigError(f"{where}: the username contains ':' (HTTP Basic cannot carry it)")
    if len(u) > MAX_FIELD or len(p) > MAX_FIELD:
        raise ConfigError(f"{where}: the username and the password are at most "
                          f"{MAX_FIELD} bytes each (RFC 1929)")
    return ProxyCredentials(u, p)


def read_proxy_auth_file(path: str) -> ProxyCredentials:
    """The username (first line) and password (second line) of ``path``, like an
    OpenVPN auth-user-pass file; refused unless only its owner may read it."""
    try:
        raw = read_limited(path, MAX_AUTH_FILE, private=True)
    except OSError as exc:
        raise ConfigError(f"--proxy-auth-file: cannot read {path}: "
                          f"{exc.strerror or exc}") from None
    lines = raw.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) < 2:
        raise ConfigError(f"--proxy-auth-file: {path}: needs the username on the first "
                          "line and the password on the second")
    return _credentials(lines[0], lines[1], f"--proxy-auth-file: {path}")


def parse_user_password(text: str, where: str) -> ProxyCredentials:
    """``user:password`` (the password may hold colons)."""
    user, sep, password = text.partition(":")
    if not sep:
        raise ConfigError(f"{where}: needs USER:PASSWORD")
    return _credentials(user, password, where)


def proxy_credentials(*, auth_file: str | None = None, socks_auth: str | None = None,
                      environ=None) -> tuple[ProxyCredentials | None, str | None]:
    """(the proxies' credentials, where they came from) from ``--proxy-auth-file``,
    ``$EREBUS_PROXY_AUTH`` or the old ``--socks-auth USER:PASSWORD``; (None, None)
    when none is given."""
    environ = os.environ if environ is None else environ
    if socks_auth is not None:
        if auth_file is not None:
            raise ConfigError("give --proxy-auth-file or --socks-auth, not both")
        return parse_user_password(socks_auth, "--socks-auth"), "--socks-auth"
    if auth_file is not None:
        return read_proxy_auth_file(auth_file), "--proxy-auth-file"
    text = environ.get(PROXY_AUTH_ENV)
    if text:
        return parse_user_password(text, PROXY_AUTH_ENV), PROXY_AUTH_ENV
    return None, None


SOCKS_AUTH_WARNING = (
    "--socks-auth puts the password on the command line, where every local user can read "
    "it (ps, /proc/PID/cmdline): give --proxy-auth-file FILE (username on the first line, "
    f"password on the second, chmod 600) or {PROXY_AUTH_ENV}=user:password instead")
