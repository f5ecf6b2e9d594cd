"""The ``.ovpn`` profile reader.

Lexing follows OpenVPN's ``parse_line`` (options.c): words split on white
space; ``#`` or ``;`` at the start of a word begins a comment; double quotes
group a word and allow backslash escapes, single quotes group a word
literally; a backslash outside quotes escapes the next character.  An option
may be written with a leading ``--``.  Inline material sits between
``<name>`` and ``</name>`` on lines of their own.

Every option the stock client knows is either used, accepted because it means
nothing without a TUN device (listed in :attr:`Profile.ignored`), or refused
with a reason when it would change the wire format in a way erebus does not
speak.  An option OpenVPN does not know is an error, as it is for the stock
client, unless ``ignore-unknown-option`` names it.  Every error names the
file, the line and the option.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass, field

from ..errors import ConfigError, SessionError
from .compress import Compression
from .data import AEAD_CIPHERS, CBC_CIPHERS, DIGESTS, normalize_cipher
from .statickey import parse_static_key

log = logging.getLogger("erebus.config")

INLINE_TAGS = frozenset({"ca", "cert", "key", "extra-certs", "tls-auth", "tls-crypt",
                         "tls-crypt-v2", "secret", "auth-user-pass", "dh", "pkcs12",
                         "crl-verify", "http-proxy-user-pass", "connection"})

DEFAULT_DATA_CIPHERS = ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]

# Options the stock client knows that mean nothing without a TUN device, routing
# table or privileges: accepted and listed, never acted on.
MEANINGLESS = frozenset({
    # TUN device, addresses, routes and DNS of the host: erebus touches none of them
    "persist-tun", "persist-key", "persist-local-ip", "persist-remote-ip", "dev-node",
    "tun-ipv6", "txqueuelen", "redirect-gateway", "redirect-private",
    "route-ipv6", "route-nopull", "route-delay", "route-method", "route-metric",
    "route-gateway", "route-ipv6-gateway", "route-noexec", "ifconfig-noexec",
    "ifconfig-nowarn", "ifconfig-ipv6", "topology", "dns",
    "block-outside-dns", "block-ipv6", "register-dns", "ip-win32", "tap-sleep", "win-sys",
    "dhcp-renew", "dhcp-release", "allow-pull-fqdn", "allow-recursive-routing",
    "max-routes", "stale-routes-check", "lladdr", "iproute", "mssfix", "mtu-disc",
    "mtu-test", "tun-mtu-extra", "link-mtu", "passtos", "bind-dev", "disable-dco", "mark",
    # scripts (erebus never runs any) and process management
    "script-security", "up", "down", "down-pre", "up-delay", "up-restart", "route-up",
    "route-pre-down", "ipchange", "setenv", "setenv-safe", "user", "group", "chroot",
    "daemon", "cd", "nice", "mlock", "writepid", "log", "log-append", "status",
    "status-version", "verb", "mute", "mute-replay-warnings", "suppress-timestamps",
    "machine-readable-output", "service", "show-net-up", "pause-exit",
    "management", "management-query-passwords", "management-hold", "management-client",
    "management-query-remote", "management-signal", "management-forget-disconnect",
    "management-up-down", "management-log-cache",
    # socket tuning and connection policy handled by erebus's own defaults
    "sndbuf", "rcvbuf", "fast-io", "socket-flags", "tcp-nodelay", "resolv-retry",
    "connect-retry", "connect-retry-max", "remote-random", "remote-random-hostname",
    "float", "bind", "local", "lport", "multihome", "ping-timer-rem", "ping-exit",
    "inactive", "session-timeout", "tls-timeout", "tran-window",
    "reneg-pkts", "single-session", "tls-exit",
    # credentials and negotiation knobs with no effect on what erebus sends
    "auth-nocache", "auth-retry", "auth-token-user", "static-challenge", "push-peer-info",
    "pull-filter", "ncp-disable", "opt-verify", "key-method",
    "ecdh-curve", "tls-groups", "tls-cert-profile", "x509-track", "x509-username-field",
    "tls-export-cert", "keying-material-exporter", "compat-mode",
})

# Options that change the wire format or need what erebus does not do yet: refused.
UNSUPPORTED = {
    "fragment": "internal fragmentation changes the data channel format and is not "
                "supported",
    "tls-crypt-v2": "tls-crypt-v2 is not supported yet",
    "http-proxy": "connecting through an HTTP proxy is not supported",
    "socks-proxy": "connecting through a SOCKS proxy is not supported",
    "tls-server": "erebus is a client; server options are not supported",
    "mode": "erebus is a client; server options are not supported",
    "server": "erebus is a client; server options are not supported",
    "pkcs12": "PKCS#12 bundles are not supported yet: give ca/cert/key as PEM",
    "pkcs11-id": "PKCS#11 tokens are not supported",
    "pkcs11-providers": "PKCS#11 tokens are not supported",
    "engine": "OpenSSL engines are not supported",
    "cryptoapicert": "the Windows certificate store is not available",
    "management-external-key": "external keys via the management interface are not "
                               "supported",
    "management-external-cert": "external certificates via the management interface are "
                                "not supported",
    "connection": "<connection> blocks are not supported yet",
    "inetd": "inetd mode is for servers",
    "vlan-tagging": "VLAN tagging is for tap servers",
    "tls-verify": "erebus never runs scripts; tls-verify cannot be honoured",
    "shaper": "traffic shaping is not supported",
    "askpass": "encrypted private keys are not supported yet",
}
# Checks of the server that erebus does not enforce yet: connecting without them
# would be less safe than the profile asks for, so the profile is refused.
for _check in ("crl-verify", "verify-hash", "peer-fingerprint", "remote-cert-eku",
               "remote-cert-ku", "capath", "ns-cert-type"):
    UNSUPPORTED[_check] = ("erebus cannot enforce this check of the server yet and will "
                           "not connect without it")


@dataclass(slots=True)
class Remote:
    host: str
    port: int
    proto: str          # "udp" or "tcp-client"


@dataclass(slots=True)
class Ignored:
    line: int
    option: str
    text: str


@dataclass
class Profile:
    """What a profile says, in the terms erebus uses."""

    path: str
    remotes: list[Remote] = field(default_factory=list)
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    extra_certs: bytes | None = None
    remote_cert_tls: str | None = None
    verify_x509_name: tuple[str, str] | None = None
    tls_version_min: str | None = None
    tls_version_max: str | None = None
    tls_cipher: str | None = None
    tls_ciphersuites: str | None = None
    data_ciphers: list[str] = field(default_factory=lambda: list(DEFAULT_DATA_CIPHERS))
    data_ciphers_fallback: str | None = None
    cipher: str | None = None
    auth: str = "SHA1"
    username: str | None = None
    password: str | None = None
    auth_user_pass: bool = False         # username/password auth; None parts are asked for
    ping: int | None = None
    ping_restart: int | None = None
    tun_mtu: int = 1500
    hand_window: int = 60
    connect_timeout: int = 120
    replay_window: int = 64
    compression: str | None = None
    allow_compression: str = "asym"
    explicit_exit_notify: int = 0
    reneg_sec: float | None = 3600.0
    reneg_bytes: int | None = None
    tls_wrap: str | None = None          # "tls-auth" or "tls-crypt" when the profile has one
    tls_auth_key: bytes | None = None    # 256-byte OpenVPN static key
    tls_auth_direction: int | None = None
    tls_crypt_key: bytes | None = None
    static_key: bytes | None = None      # 'secret': static-key (pre-shared key) mode
    static_direction: int | None = None
    ifconfig: tuple[str, str] | None = None
    routes: list[tuple[str, str]] = field(default_factory=list)    # (network, netmask)
    dns: list[str] = field(default_factory=list)                    # dhcp-option DNS
    tls_client: bool = False             # 'client' or 'tls-client' was given
    ignored: list[Ignored] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -- lexing --------------------------------------------------------------------------------

def split_line(line: str, path: str, lineno: int) -> list[str]:
    """Split one line into words as OpenVPN does; a comment ends the line."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""          # '"' or "'" while inside quotes
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < n:
                i += 1
                word.append(line[i])
            else:
                word.append(c)
        elif c in " \t\r\n\f\v":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        elif not in_word and c in "#;":
            break
        elif c in "\"'":
            quote, in_word = c, True
        elif c == "\\" and i + 1 < n:
            i += 1
            word.append(line[i])
            in_word = True
        else:
            word.append(c)
            in_word = True
        i += 1
    if quote:
        raise ConfigError("unterminated quote", path=path, line=lineno)
    if in_word:
        words.append("".join(word))
    return words


@dataclass(slots=True)
class Directive:
    line: int
    name: str
    args: list[str]
    inline: str | None = None     # the text between <name> and </name>


def lex(text: str, path: str) -> list[Directive]:
    """Directives in file order, inline blocks attached."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[Directive] = []
    i = 0
    while i < len(lines):
        lineno = i + 1
        raw = lines[i]
        stripped = raw.strip()
        i += 1
        if stripped.startswith("<") and stripped.endswith(">") and not stripped.startswith("</"):
            tag = stripped[1:-1].strip()
            end = f"</{tag}>"
            body: list[str] = []
            while i < len(lines) and lines[i].strip() != end:
                if lines[i].strip().startswith("<") and not lines[i].strip().startswith("-"):
                    inner = lines[i].strip()
                    if inner.startswith("</") or (inner.endswith(">") and
                                                  inner[1:-1].strip() in INLINE_TAGS):
                        raise ConfigError(f"inline block <{tag}> ends with {inner} instead "
                                          f"of {end}", path=path, line=i + 1, option=tag)
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ConfigError(f"inline block <{tag}> has no {end}", path=path,
                                  line=lineno, option=tag)
            i += 1
            out.append(Directive(lineno, tag, ["[inline]"], "\n".join(body) + "\n"))
            continue
        if stripped.startswith("</"):
            raise ConfigError(f"stray end tag {stripped}", path=path, line=lineno)
        words = split_line(raw, path, lineno)
        if not words:
            continue
        name = words[0]
        if name.startswith("--"):
            name = name[2:]
        out.append(Directive(lineno, name, words[1:]))
    return out


# -- option semantics ----------------------------------------------------------------------

class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.p = Profile(path=path)
        self.proto = "udp"
        self.port = 1194
        self.ignore_unknown: set[str] = set()
        self.key_direction: int | None = None
        self.tls_auth_direction: int | None = None
        self.static_direction: int | None = None

    def err(self, d: Directive, message: str) -> ConfigError:
        return ConfigError(message, path=self.path, line=d.line, option=d.name)

    def nargs(self, d: Directive, lo: int, hi: int | None = None) -> None:
        hi = lo if hi is None else hi
        if not lo <= len(d.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.err(d, f"takes {want} argument(s), got {len(d.args)}")

    def integer(self, d: Directive, value: str, lo: int = 0, hi: int = 2**31) -> int:
        try:
            v = int(value)
        except ValueError:
            raise self.err(d, f"{value!r} is not a number") from None
        if not lo <= v <= hi:
            raise self.err(d, f"{v} is out of range {lo}..{hi}")
        return v

    def material(self, d: Directive) -> bytes:
        """Inline text, or the file the argument names (relative to the profile)."""
        if d.inline is not None:
            return d.inline.encode()
        self.nargs(d, 1, 2)
        if d.args[0] == "[inline]":
            raise self.err(d, "says [inline] but the profile has no inline block for it")
        path = d.args[0]
        if not os.path.isabs(path):
            path = os.path.join(self.base, path)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise self.err(d, f"cannot read {path}: {exc.strerror}") from None

    def cipher_name(self, d: Directive, name: str) -> str:
        n = normalize_cipher(name)
        if n != "none" and n not in AEAD_CIPHERS and n not in CBC_CIPHERS:
            if n == "BF-CBC":
                raise self.err(d, "BF-CBC (Blowfish) is not supported: ask for an AES-GCM "
                               "or ChaCha20-Poly1305 data cipher")
            raise self.err(d, f"unsupported data cipher {name}")
        return n

    def apply(self, d: Directive) -> None:
        p, name, a = self.p, d.name, d.args
        if name in UNSUPPORTED:
            raise self.err(d, UNSUPPORTED[name])
        if name == "remote":
            self.nargs(d, 1, 3)
            port = self.integer(d, a[1], 1, 65535) if len(a) > 1 else None
            proto = self.proto_name(d, a[2]) if len(a) > 2 else None
            p.remotes.append(Remote(a[0], port or 0, proto or ""))
        elif name == "proto":
            self.nargs(d, 1)
            self.proto = self.proto_name(d, a[0])
        elif name in ("port", "rport"):
            self.nargs(d, 1)
            self.port = self.integer(d, a[0], 1, 65535)
        elif name == "dev":
            self.nargs(d, 1)
            if not a[0].startswith("tun"):
                raise self.err(d, f"'{a[0]}': only tun (layer 3) is supported, not tap")
        elif name == "dev-type":
            self.nargs(d, 1)
            if a[0] != "tun":
                raise self.err(d, f"'{a[0]}': only tun (layer 3) is supported")
        elif name in ("ca", "cert", "key", "extra-certs"):
            setattr(p, name.replace("-", "_"), self.material(d))
        elif name == "remote-cert-tls":
            self.nargs(d, 1)
            if a[0] not in ("server", "client"):
                raise self.err(d, f"must be 'server' or 'client', not {a[0]!r}")
            p.remote_cert_tls = a[0]
        elif name == "verify-x509-name":
            self.nargs(d, 1, 2)
            kind = a[1] if len(a) > 1 else "subject"
            if kind not in ("subject", "name", "name-prefix"):
                raise self.err(d, f"unknown type {kind!r}")
            p.verify_x509_name = (a[0], kind)
        elif name == "tls-version-min":
            self.nargs(d, 1, 2)
            p.tls_version_min = a[0]
        elif name == "tls-version-max":
            self.nargs(d, 1)
            p.tls_version_max = a[0]
        elif name == "tls-cipher":
            self.nargs(d, 1)
            p.tls_cipher = a[0]
        elif name == "tls-ciphersuites":
            self.nargs(d, 1)
            p.tls_ciphersuites = a[0]
        elif name in ("data-ciphers", "ncp-ciphers"):
            self.nargs(d, 1)
            names = [c for c in a[0].split(":") if c]
            usable = []
            for c in names:
                c = c.lstrip("?")   # '?' marks an optional cipher in 2.6
                n = normalize_cipher(c)
                if n == "none" or n in AEAD_CIPHERS or n in CBC_CIPHERS:
                    usable.append(n)
                else:
                    p.warnings.append(f"{self.path}:{d.line}: {name}: cipher {c} is not "
                                      "supported by erebus and is left out")
            if not usable:
                raise self.err(d, f"none of {a[0]} is supported by erebus")
            p.data_ciphers = usable
        elif name == "data-ciphers-fallback":
            self.nargs(d, 1)
            p.data_ciphers_fallback = self.cipher_name(d, a[0])
        elif name == "cipher":
            self.nargs(d, 1)
            p.cipher = self.cipher_name(d, a[0])
        elif name == "auth":
            self.nargs(d, 1)
            digest = a[0].upper().replace("-", "")
            if digest in ("NONE", "[NULL-DIGEST]"):
                p.auth = "none"
            elif digest in DIGESTS:
                p.auth = digest
            else:
                raise self.err(d, f"unsupported digest {a[0]}")
        elif name == "auth-user-pass":
            self.nargs(d, 0, 1)
            p.auth_user_pass = True
            p.username = p.password = None
            if d.inline is not None or (a and a[0] != "stdin"):
                text = self.material(d).decode("utf-8", "replace").splitlines()
                if not text or not text[0]:
                    raise self.err(d, "the credentials have no username line")
                # like 2.6: a file with the username only means "ask for the password"
                p.username = text[0]
                p.password = text[1] if len(text) > 1 else None
        elif name == "ping":
            self.nargs(d, 1)
            p.ping = self.integer(d, a[0])
        elif name == "ping-restart":
            self.nargs(d, 1)
            p.ping_restart = self.integer(d, a[0])
        elif name == "keepalive":
            self.nargs(d, 2)
            p.ping = self.integer(d, a[0])
            p.ping_restart = self.integer(d, a[1])
        elif name == "tun-mtu":
            self.nargs(d, 1)
            p.tun_mtu = self.integer(d, a[0], 576, 65535)
        elif name == "hand-window":
            self.nargs(d, 1)
            p.hand_window = self.integer(d, a[0], 1)
        elif name in ("connect-timeout", "server-poll-timeout"):
            self.nargs(d, 1)
            p.connect_timeout = self.integer(d, a[0], 1)
        elif name == "replay-window":
            self.nargs(d, 1, 2)
            p.replay_window = self.integer(d, a[0], 1, 65536)
        elif name in ("comp-lzo", "compress"):
            self.nargs(d, 0, 1)
            text = " ".join([name, *a])
            try:
                Compression.from_options(text, None)
            except SessionError as exc:
                raise self.err(d, str(exc)) from None
            p.compression = text
        elif name == "allow-compression":
            self.nargs(d, 1)
            if a[0] not in ("yes", "no", "asym"):
                raise self.err(d, f"must be yes, no or asym, not {a[0]!r}")
            # erebus never compresses what it sends (VORACLE): 'yes' acts as 'asym'
            p.allow_compression = "no" if a[0] == "no" else "asym"
        elif name == "reneg-sec":
            self.nargs(d, 1, 2)
            value = self.integer(d, a[0])
            p.reneg_sec = float(value) if value else None
        elif name == "reneg-bytes":
            self.nargs(d, 1)
            value = self.integer(d, a[0], 0, 2**62)
            p.reneg_bytes = value or None
        elif name == "explicit-exit-notify":
            self.nargs(d, 0, 1)
            p.explicit_exit_notify = self.integer(d, a[0]) if a else 1
        elif name == "secret":
            self.nargs(d, 1, 2)
            p.static_key = parse_static_key(self.material(d), source=f"{self.path}:{d.line}")
            if len(a) > 1 and a[1] != "[inline]":
                self.static_direction = self.integer(d, a[1], 0, 1)
        elif name == "ifconfig":
            self.nargs(d, 2)
            p.ifconfig = (self.ipv4(d, a[0]), self.ipv4(d, a[1]))
        elif name == "route":
            self.nargs(d, 1, 4)
            mask = a[1] if len(a) > 1 and a[1] != "default" else "255.255.255.255"
            p.routes.append((a[0], mask))
            p.ignored.append(Ignored(d.line, name, " ".join([name, *a])))
        elif name == "dhcp-option":
            self.nargs(d, 1, 2)
            if a[0].upper() == "DNS" and len(a) == 2 and ":" not in a[1]:
                p.dns.append(self.ipv4(d, a[1]))
            p.ignored.append(Ignored(d.line, name, " ".join([name, *a])))
        elif name in ("tls-auth", "tls-crypt"):
            self.nargs(d, 1, 2 if name == "tls-auth" else 1)
            key = parse_static_key(self.material(d), source=f"{self.path}:{d.line}")
            if name == "tls-auth":
                p.tls_auth_key, p.tls_crypt_key = key, None
                if len(a) > 1 and a[1] != "[inline]":
                    self.tls_auth_direction = self.integer(d, a[1], 0, 1)
            else:
                p.tls_crypt_key, p.tls_auth_key = key, None
            p.tls_wrap = name
        elif name == "key-direction":
            self.nargs(d, 1)
            self.key_direction = self.integer(d, a[0], 0, 1)
        elif name == "ignore-unknown-option":
            self.ignore_unknown.update(a)
        elif name == "setenv" and len(a) >= 2 and a[0] == "opt":
            self.ignore_unknown.add(a[1])
            p.ignored.append(Ignored(d.line, name, " ".join(a)))
        elif name in ("tls-client", "client"):
            p.tls_client = True     # what erebus does unless the profile is static-key
        elif name in ("pull", "nobind"):
            pass
        elif name in MEANINGLESS:
            p.ignored.append(Ignored(d.line, name, " ".join([name, *a])))
            log.debug("%s:%d: %s: accepted, means nothing in user space", self.path,
                      d.line, name)
        elif name in self.ignore_unknown:
            p.ignored.append(Ignored(d.line, name, " ".join([name, *a])))
        else:
            raise self.err(d, "unknown option (the stock OpenVPN client refuses it too; "
                           "'ignore-unknown-option' can name it)")

    def proto_name(self, d: Directive, value: str) -> str:
        v = value.lower()
        if v in ("udp", "udp4"):
            return "udp"
        if v in ("tcp", "tcp-client", "tcp4", "tcp4-client"):
            return "tcp-client"
        if v in ("tcp-server", "tcp4-server"):
            raise self.err(d, "erebus is a client: tcp-server is for servers")
        if v.endswith("6"):
            raise self.err(d, "IPv6 transport is not supported yet")
        raise self.err(d, f"unknown protocol {value!r}")

    def ipv4(self, d: Directive, text: str) -> str:
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise self.err(d, f"{text!r} is not an IPv4 address") from None

    def finish_static(self) -> Profile:
        """A static-key profile: no TLS, no CA; the cipher and ifconfig are needed."""
        p = self.p
        where = dict(path=self.path, option="secret")
        if p.tls_client or p.tls_auth_key or p.tls_crypt_key or p.auth_user_pass:
            raise ConfigError("a static-key profile cannot also use TLS (client, "
                              "tls-client, tls-auth, tls-crypt, auth-user-pass)", **where)
        if p.cipher is None:
            raise ConfigError("static-key mode needs an explicit 'cipher' (OpenVPN's "
                              "default BF-CBC is not supported)", **where)
        if p.ifconfig is None:
            raise ConfigError("static-key mode needs 'ifconfig LOCAL REMOTE'", **where)
        if p.compression:
            raise ConfigError("compression in static-key mode is not supported", **where)
        if any(r.proto != "udp" for r in p.remotes):
            raise ConfigError("static-key mode over TCP is not supported", **where)
        p.static_direction = (self.static_direction if self.static_direction is not None
                              else self.key_direction)
        p.warnings.append(f"{self.path}: secret: static-key mode is deprecated and removed "
                          "in OpenVPN 2.7; ask for a TLS profile")
        return p

    def finish(self) -> Profile:
        p = self.p
        if p.static_key is not None and p.remotes:
            for r in p.remotes:
                r.port = r.port or self.port
                r.proto = r.proto or self.proto
            return self.finish_static()
        if p.tls_auth_key is not None:
            # 'tls-auth FILE DIR' wins over key-direction, as in OpenVPN
            p.tls_auth_direction = (self.tls_auth_direction if self.tls_auth_direction
                                    is not None else self.key_direction)
        if not p.remotes:
            raise ConfigError("no 'remote' line: nothing to connect to", path=self.path)
        for r in p.remotes:
            r.port = r.port or self.port
            r.proto = r.proto or self.proto
        if p.ca is None:
            raise ConfigError("no CA certificate ('ca' or <ca>): the server cannot be "
                              "verified", path=self.path, option="ca")
        if (p.cert is None) != (p.key is None):
            missing = "key" if p.key is None else "cert"
            raise ConfigError(f"a client certificate needs its key and the key its "
                              f"certificate: '{missing}' is missing", path=self.path,
                              option=missing)
        if p.cert is None and not p.auth_user_pass:
            raise ConfigError("no client certificate and no auth-user-pass: the server "
                              "has no way to authenticate this client", path=self.path,
                              option="cert")
        return p


def parse_profile(text: str, path: str = "<profile>") -> Profile:
    reader = _Reader(path)
    for directive in lex(text, path):
        reader.apply(directive)
    return reader.finish()


def load_profile(path: str) -> Profile:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the profile: {exc.strerror}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", path=path, line=line) from None
    profile = parse_profile(text, path)
    for warning in profile.warnings:
        log.warning("%s", warning)
    return profile
