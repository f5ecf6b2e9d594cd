"""The outer-proxy options of a ``.ovpn`` profile, as OpenVPN 2.6 reads them
(options.c ``add_option`` and ``options_postprocess_verify_ce``): ``http-proxy``,
``http-proxy-option``, ``http-proxy-user-pass`` and ``socks-proxy``, per connection
entry, into an :class:`~erebus.openvpn.profile.OuterProxy` of each remote.

A mixin of the profile reader (:mod:`erebus.openvpn.reader`): the handlers check
each line, :meth:`ProxyOptions.outer_proxy` builds a remote's proxy at the end, once
its protocol is known, and reads the credentials files.  Offline like the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wire.httpconnect import VERSIONS, connect_request
from ..wire.socks5 import MAX_FIELD
from .lexer import Directive
from .profile import OuterProxy

__all__ = ["ProxyLines", "ProxyOptions"]

MAX_CUSTOM_HTTP_HEADER = 10      # proxy.h
SOCKS_DEFAULT_PORT = 1080        # options.c


@dataclass
class ProxyLines:
    """One connection entry's proxy options, checked line by line."""

    http: tuple | None = None           # (directive, host, port, auth, authfile source)
    socks: tuple | None = None          # (directive, host, port, authfile source)
    version: str = "1.0"
    agent: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    options: list[Directive] = field(default_factory=list)     # http-proxy-option lines


class ProxyOptions:
    """The reader's handlers of the proxy options (mixed into ``_Reader``)."""

    def _authfile(self, d: Directive, name: str):
        if name == "stdin":
            raise self.err(d, "erebus does not ask for proxy credentials on the terminal: "
                           "give a file with the username and the password lines")
        return self.source(d, name)

    def opt_http_proxy(self, d: Directive, a: list[str]) -> None:
        if len(a) < 2:
            raise self.err(d, "http-proxy port number not defined")
        port = self.integer(d, a[1], 1, 65535)
        auth, src = "none", None
        if len(a) > 2:
            if a[2] in ("auto", "auto-nct"):
                auth = a[2]
            else:
                method = a[3] if len(a) > 3 else "basic"
                if method in ("ntlm", "ntlm2"):
                    raise self.err(d, f"NTLM proxy authentication ('{method}') is not "
                                   "supported by erebus: use basic, or 'auto' to answer "
                                   "the proxy's Basic challenge")
                if method not in ("basic", "none"):
                    raise self.err(d, f"unknown HTTP authentication method: '{method}'")
                auth = method
                if method == "basic":
                    src = self._authfile(d, a[2])
        self.conn().proxy.http = (d, a[0], port, auth, src)

    def opt_http_proxy_option(self, d: Directive, a: list[str]) -> None:
        lines = self.conn().proxy
        kind = a[0]
        if kind == "VERSION" and len(a) == 2:
            if a[1] not in VERSIONS:
                raise self.err(d, f"VERSION must be {' or '.join(VERSIONS)}, not {a[1]!r}")
            lines.version = a[1]
        elif kind == "AGENT" and len(a) == 2:
            lines.agent = a[1]
        elif kind in ("CUSTOM-HEADER", "EXT1", "EXT2") and len(a) > 1:
            if len(lines.headers) >= MAX_CUSTOM_HTTP_HEADER:
                raise self.err(d, f"Cannot use more than {MAX_CUSTOM_HTTP_HEADER} "
                               f"http-proxy-option CUSTOM-HEADER : '{kind}'")
            if len(a) > 2:
                name, value = a[1], a[2]
            else:                          # 2.6: the whole header in one argument
                name, sep, value = a[1].partition(":")
                if not sep:
                    raise self.err(d, f"{kind} needs a header name and its content")
            header = (name.strip(), value.strip())
            try:
                connect_request("example.net", 1, headers=(header,))
            except ValueError as exc:
                raise self.err(d, f"{kind}: {exc}") from None
            lines.headers.append(header)
        else:
            raise self.err(d, f"Bad http-proxy-option or missing or extra parameter: "
                           f"'{kind}'")
        lines.options.append(d)

    def opt_http_proxy_user_pass(self, d: Directive, a: list[str]) -> None:
        self.http_proxy_user_pass = self.source(d) if d.inline is not None \
            else self._authfile(d, a[0])

    def opt_socks_proxy(self, d: Directive, a: list[str]) -> None:
        port = self.integer(d, a[1], 1, 65535) if len(a) > 1 else SOCKS_DEFAULT_PORT
        src = self._authfile(d, a[2]) if len(a) > 2 else None
        self.conn().proxy.socks = (d, a[0], port, src)

    # -- at the end: each remote's proxy

    def _credentials(self, src, *, limit: int | None = None) -> tuple[str, str] | None:
        """(username, password) of an authfile: read once, its problems said once."""
        cache = self.__dict__.setdefault("_proxy_credentials", {})
        key = (src.directive.path, src.directive.line)
        if key in cache:
            return cache[key]
        cache[key] = None
        data = self.read(src)
        if data is None:
            return None
        lines = data.decode("utf-8", "surrogateescape").splitlines()
        if len(lines) < 2 or not lines[0]:
            self.problem(src.directive, "the proxy credentials need the username on the "
                         "first line and the password on the second (erebus does not ask "
                         "for them)")
            return None
        user, password = lines[0], lines[1]
        if limit is not None and max(len(user.encode("utf-8", "surrogateescape")),
                                     len(password.encode("utf-8", "surrogateescape"))) > limit:
            self.problem(src.directive, f"SOCKS username and/or password exceeds {limit} "
                         "characters.  Authentication not possible.")
            return None
        cache[key] = (user, password)
        return cache[key]

    def _once(self, d: Directive, message: str) -> None:
        said = self.__dict__.setdefault("_proxy_said", set())
        if (d.path, d.line, message) not in said:
            said.add((d.path, d.line, message))
            self.problem(d, message)

    def outer_proxy(self, lines: ProxyLines, proto: str) -> OuterProxy | None:
        """The proxy of a remote of this connection entry, whose protocol is
        ``proto``; None (and the problems said once) if there is none or it is wrong."""
        if lines.http is None:
            for d in lines.options:
                self._once(d, "--http-proxy not specified but other http proxy options "
                           "present")
            if self.http_proxy_user_pass is not None:
                self._once(self.http_proxy_user_pass.directive, "--http-proxy not "
                           "specified but other http proxy options present")
        if lines.http is not None:
            d, host, port, auth, src = lines.http
            if lines.socks is not None:
                self._once(d, "--http-proxy can not be used together with --socks-proxy")
                return None
            if proto != "tcp-client":
                self._once(d, "--http-proxy MUST be used in TCP Client mode (i.e. --proto "
                           "tcp-client)")
                return None
            if self.http_proxy_user_pass is not None and auth != "none":
                src = self.http_proxy_user_pass      # 2.6: it overrides the authfile
            creds = self._credentials(src) if src is not None else None
            if src is not None and creds is None:
                return None
            user, password = creds or (None, None)
            return OuterProxy("http", host, port, d.line, user, password, auth,
                              lines.version, lines.agent, tuple(lines.headers))
        if lines.socks is not None:
            d, host, port, src = lines.socks
            creds = self._credentials(src, limit=MAX_FIELD) if src is not None else None
            if src is not None and creds is None:
                return None
            user, password = creds or (None, None)
            return OuterProxy("socks", host, port, d.line, user, password,
                              "basic" if creds else "none")
        return None
