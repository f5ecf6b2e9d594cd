"""Asking for what a profile leaves out (auth-user-pass without a file), on the
terminal, like the stock client; never echoed, never logged.  And the username and
password the local proxies ask of their clients, from a file or the environment
(never from the command line, which every local user can read)."""

from __future__ import annotations

import binascii
import getpass
import hmac
import os
import sys
from dataclasses import dataclass, field

from .errors import ConfigError
from .files import read_limited


def complete(profile, *, stdin=None, prompt=getpass.getpass, ask=input) -> None:
    """Fill in the username and password the profile asks for but does not give."""
    if not profile.auth_user_pass or (profile.username is not None
                                      and profile.password is not None):
        return
    stream = stdin or sys.stdin
    if stream is None or not stream.isatty():
        missing = "username and password" if profile.username is None else "password"
        raise ConfigError(f"the profile asks for a {missing} (auth-user-pass) and there is "
                          "no terminal to ask on: give 'auth-user-pass FILE' (username on "
                          "the first line, password on the second)", path=profile.path,
                          option="auth-user-pass")
    if profile.username is None:
        profile.username = ask("Enter Auth Username: ").strip()
    if profile.password is None:
        profile.password = prompt("Enter Auth Password: ")


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
