"""Asking for what a profile leaves out (auth-user-pass without a file), on the
terminal, like the stock client; never echoed, never logged."""

from __future__ import annotations

import getpass
import sys

from .errors import ConfigError


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
