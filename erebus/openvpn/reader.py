"""The ``.ovpn`` profile reader: directives (:mod:`erebus.openvpn.lexer`) checked
against the option registry (:mod:`erebus.openvpn.options`) and applied, then the
material read (:mod:`erebus.openvpn.material`), into a
:class:`~erebus.openvpn.profile.Profile`.

``<connection>`` blocks hold the per-connection options the stock client allows
there and become extra remotes, tried in order.  An option OpenVPN does not know is
an error, as it is for the stock client, unless ``ignore-unknown-option`` names it,
``setenv opt`` precedes it or ``setenv FORWARD_COMPATIBLE 1`` was given.

The reader keeps going after an error: :func:`read_profile` returns every problem
it found, each as ``FILE:LINE: option: reason``; :func:`parse_profile` and
:func:`load_profile` raise a :class:`~erebus.openvpn.profile.ProfileError` holding
them all.  Reading is offline: no name is resolved and no packet is sent.
"""

from __future__ import annotations

import copy
import getpass
import ipaddress
import logging
import os
import random
import re
import sys
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ConfigError, SessionError
from ..files import MAX_FILE_SIZE, read_limited
from .castore import CaPathError, read_capath
from . import push
from .compress import Compression
from .algorithms import AlgorithmError, cbc_cipher
from .algorithms import digest as digest_spec
from .data import AEAD_CIPHERS, CBC_CIPHERS, normalize_cipher, normalize_digest
from .fingerprint import DIGEST_SIZES, FingerprintError, parse_fingerprints
from .lexer import Directive, lex
from .material import (PemError, Pkcs12Error, check_certificates, check_crls,
                       check_private_key, key_matches_certificate, open_pkcs12,
                       pkcs12_from_base64, pkcs12_pems, private_key_block,
                       tls_crypt_v2_client_key, unlock_key)
from .mtu import MssFix
from .options import IGNORED, OPTIONS, REFUSED, REMOVED, OptionSpec
from .profile import KU_REQUIRED, Ignored, Profile, ProfileError, Remote
from .proxyoptions import ProxyLines, ProxyOptions
from .statickey import parse_static_key

__all__ = ["Reading", "read_profile", "parse_profile", "load_profile", "unlock",
           "openssl_cipher_name"]

log = logging.getLogger("erebus.config")

MAX_PULL_FILTERS = 256       # pull-filter lines (each pushed option is matched to all)
MAX_CONFIG_DEPTH = 10         # read_config_file: nested 'config' includes
MAX_INCLUDED = 4 * MAX_FILE_SIZE    # bytes of all 'config' includes together (erebus' own)

REMOTE_CERT_TLS_EKU = {"server": "TLS Web Server Authentication",
                       "client": "TLS Web Client Authentication"}

# socket.c proto_names: a client's spellings -> (protocol, address family).  "tcp" is
# tcp-client only with 'client' (options.c); None: both families, in getaddrinfo order.
CLIENT_PROTOS: dict[str, tuple[str, str | None]] = {
    "udp": ("udp", None), "udp4": ("udp", "ipv4"), "udp6": ("udp", "ipv6"),
    "tcp": ("tcp", None), "tcp4": ("tcp", "ipv4"), "tcp6": ("tcp", "ipv6"),
    "tcp-client": ("tcp-client", None), "tcp4-client": ("tcp-client", "ipv4"),
    "tcp6-client": ("tcp-client", "ipv6")}
SERVER_PROTOS = ("tcp-server", "tcp4-server", "tcp6-server")
_PROTO_WORDS = ", ".join(CLIENT_PROTOS)


@dataclass(slots=True)
class _Source:
    """Where one piece of material comes from: an inline block or a file."""

    directive: Directive
    inline: str | None
    filename: str | None
    base: str           # the folder a relative file name is in
    shown: str = ""     # the file name as problems show it


@dataclass(slots=True)
class _RemoteLine:
    """One 'remote HOST [PORT [PROTO]]' line."""

    host: str
    port: int | None
    proto: str | None           # as CLIENT_PROTOS maps it; None: the connection's
    family: str | None          # set only by a PROTO with a family (options.c re->af)
    directive: Directive


@dataclass
class _Conn:
    """The per-connection options (the stock client's connection_entry)."""

    proto: str = "udp"          # "udp", "tcp-client", or "tcp" (needs 'client')
    family: str | None = None   # "ipv4" / "ipv6" (udp4, tcp6-client ...); None: both
    proto_line: Directive | None = None     # the 'proto' line, for its problems
    port: int = 1194
    connect_timeout: int = 120
    connect_retry: tuple[int, int] = (1, 300)
    explicit_exit_notify: int = 0
    tun_mtu: int = 1500
    mssfix: MssFix = field(default_factory=MssFix)
    tls_auth: _Source | None = None       # a <connection> block's own (globals: _Reader)
    tls_crypt: _Source | None = None
    tls_crypt_v2: _Source | None = None
    key_direction: int | None = None
    remote: _RemoteLine | None = None       # its 'remote' line
    proxy: ProxyLines = field(default_factory=ProxyLines)   # http-proxy / socks-proxy


class _Reader(ProxyOptions):
    def __init__(self, path: str, *, rng: random.Random | None = None):
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.shown_base = os.path.dirname(path)
        self.rng = rng
        self.p = Profile(path=path)
        self.ce = _Conn()
        self.remotes: list[_RemoteLine] = []
        self.connections: list[tuple[int, _Conn]] = []
        self.ignore_unknown: set[str] = set()
        self.forward_compatible = False
        self.problems: list[ConfigError] = []
        self.material: dict[str, _Source] = {}
        self.tls_auth: _Source | None = None       # the profile's own (outside blocks)
        self.tls_crypt: _Source | None = None
        self.tls_crypt_v2: _Source | None = None
        self.key_direction: int | None = None      # tls-auth/secret DIR or key-direction
        self.askpass: _Source | None = None
        self.askpass_prompt = False
        self.in_connection: _Conn | None = None
        self.depth = 0
        self.included = 0                 # bytes of 'config' files read, at most MAX_INCLUDED
        self.seen_dev = False
        self.cipher_directive: Directive | None = None   # the last 'cipher' line
        self.fallback_seen = False                       # a data-ciphers-fallback line
        self.auth_directive: Directive | None = None     # the last 'auth' line
        self.crl_dir: Directive | None = None     # crl-verify DIR dir
        self.capath: Directive | None = None
        self.verify_hash: Directive | None = None  # the first peer-fingerprint / verify-hash
        self.verify_hash_algos: set[str] = set()
        self.client_directive: Directive | None = None   # the first client / tls-client
        self.client_option = False        # 'client' itself (makes 'proto tcp' a client)
        self.http_proxy_user_pass: _Source | None = None

    # -- reporting

    def err(self, d: Directive, message: str) -> ConfigError:
        return ConfigError(message, path=d.path, line=d.line, option=d.name)

    def problem(self, d: Directive | None, message: str, *, option: str | None = None,
                path: str | None = None, line: int | None = None) -> None:
        if d is not None:
            self.problems.append(ConfigError(message, path=path or d.path,
                                             line=line if line is not None else d.line,
                                             option=option or d.name))
        else:
            self.problems.append(ConfigError(message, path=path or self.path, line=line,
                                             option=option))

    def warn(self, d: Directive | None, message: str) -> None:
        where = f"{d.path}:{d.line}: {d.name}: " if d is not None else f"{self.path}: "
        self.p.warnings.append(where + message)

    def ignore(self, d: Directive) -> None:
        self.p.ignored.append(Ignored(d.line, d.name, d.text))
        log.debug("%s:%d: %s: accepted, means nothing in user space", d.path, d.line,
                  d.name)

    # -- small parsers

    def integer(self, d: Directive, value: str, lo: int = 0, hi: int = 2**31) -> int:
        try:
            v = int(value)
        except ValueError:
            raise self.err(d, f"{value!r} is not a number") from None
        if not lo <= v <= hi:
            raise self.err(d, f"{v} is out of range {lo}..{hi}")
        return v

    def direction(self, d: Directive, value: str) -> int | None:
        if value == "0":
            return 0
        if value == "1":
            return 1
        if value == "bidirectional":
            return None
        raise self.err(d, f"key direction must be 0, 1 or bidirectional, not {value!r}")

    def cipher_name(self, d: Directive, name: str) -> str:
        """OpenVPN's name of data cipher ``name`` (``bf`` is BF-CBC); refused, with the
        reason, if erebus cannot run it (crypto.c init_key_type: "Cipher %s not
        supported")."""
        n = normalize_cipher(name)
        if n != "none" and n not in AEAD_CIPHERS and n not in CBC_CIPHERS:
            try:
                cbc_cipher(name)
            except AlgorithmError as exc:
                raise self.err(d, str(exc)) from None
            raise self.err(d, f"unsupported data cipher {name}")   # not reached
        return n

    def proto_name(self, d: Directive, value: str) -> tuple[str, str | None]:
        """(protocol, family) of a client's PROTO word; 2.6 compares them exactly
        (socket.c ascii2proto: 'UDP' is no protocol)."""
        if value in CLIENT_PROTOS:
            return CLIENT_PROTOS[value]
        if value in SERVER_PROTOS:
            raise self.err(d, f"erebus is a client: {value} is for servers")
        hint = f" (protocols are lower case: {value.lower()})" \
            if value.lower() in CLIENT_PROTOS else ""
        raise self.err(d, f"unknown protocol {value!r}{hint}; a client takes one of "
                       f"{_PROTO_WORDS} (the stock client refuses it too)")

    def remote_host(self, d: Directive, host: str) -> str:
        """A remote's HOST as 2.6 resolves it: a name, an IPv4 or IPv6 address
        (without brackets).  What getaddrinfo cannot take is refused here."""
        m = re.fullmatch(r"\[([^\]]*)\](?::(\d+))?", host)
        if m is not None:
            port = f" {m.group(2)}" if m.group(2) else " PORT"
            raise self.err(d, f"{host!r}: OpenVPN takes an IPv6 address without brackets "
                           f"and the port as the next word (remote {m.group(1)}{port}); the "
                           "stock client cannot resolve it either")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                name, _, port = host.rpartition(":")
                if port.isdigit() and name and ":" not in name:
                    raise self.err(d, f"{host!r}: give the port as the next word (remote "
                                   f"{name} {port}); the stock client cannot resolve it "
                                   "either") from None
                raise self.err(d, f"{host!r} is not an IPv6 address (nor a host name)") \
                    from None
        elif "[" in host or "]" in host or "/" in host:
            raise self.err(d, f"{host!r} is not a host name or an IP address")
        return host

    def ipv4(self, d: Directive, text: str) -> str:
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise self.err(d, f"{text!r} is not an IPv4 address") from None

    def source(self, d: Directive, name: str | None = None) -> _Source:
        """``d``'s inline block, or the file ``name`` (else its first argument)."""
        if d.inline is not None:
            return _Source(d, d.inline, None, self.base)
        name = d.args[0] if name is None else name
        shown = name if os.path.isabs(name) else os.path.normpath(
            os.path.join(self.shown_base, name))
        return _Source(d, None, name, self.base, shown)

    def read(self, src: _Source) -> bytes | None:
        """The bytes of some material; None (and a problem) when it cannot be read."""
        d = src.directive
        if src.inline is not None:
            return src.inline.encode("utf-8", "surrogateescape")
        name = src.filename
        path = name if os.path.isabs(name) else os.path.join(src.base, name)
        try:
            return read_limited(path)
        except OSError as exc:
            if name == "[inline]":
                self.problem(d, f"says [inline] but no <{d.name}> block follows it (the "
                             "stock client then looks for a file named '[inline]')")
            else:
                self.problem(d, f"cannot read {path}: {exc.strerror}")
        except ValueError as exc:
            self.problem(d, f"cannot read {path!r}: {exc}")
        return None

    def material_problem(self, src: _Source, data: bytes, offset: int, message: str) -> None:
        """A problem inside some material, named by the line it is on."""
        d = src.directive
        line_in = data[:offset].count(b"\n")
        if src.inline is not None:
            self.problem(d, message, line=d.line + 1 + line_in)
        else:
            self.problem(d, message, path=src.shown, line=line_in + 1)

    # -- applying options

    def apply_all(self, directives: list[Directive]) -> None:
        for d in directives:
            try:
                self.apply(d)
            except ConfigError as exc:
                self.problems.append(exc)

    def apply(self, d: Directive, *, soft_unknown: bool = False) -> None:
        name = d.name
        if name == "setenv" and d.args and d.args[0] == "opt" and self.in_connection is None:
            if len(d.args) < 2:
                raise self.err(d, "'setenv opt' needs an option after it")
            inner = Directive(d.line, d.args[1], d.args[2:], d.inline, d.path,
                              " ".join(d.args[1:]))
            self.apply(inner, soft_unknown=True)
            return
        spec = OPTIONS.get(name)
        problem = None          # why the stock client would call it unrecognized
        if spec is None:
            problem = ("unknown option (the stock OpenVPN client refuses it too; "
                       "'ignore-unknown-option' can name it)")
        elif spec.unknown_to_26:
            problem = spec.reason
        else:
            n = len(d.args) if d.inline is None else 1
            if n < spec.min_args or (spec.max_args is not None and n > spec.max_args):
                problem = self.count_message(spec, len(d.args))
        if problem is not None:
            if soft_unknown or name in self.ignore_unknown or self.forward_compatible:
                how = ("'setenv opt'" if soft_unknown else "ignore-unknown-option"
                       if name in self.ignore_unknown else "setenv FORWARD_COMPATIBLE 1")
                self.warn(d, f"{problem}: skipped ({how})")
                self.ignore(d)
                return
            raise self.err(d, problem)
        if d.inline is not None and not spec.inline:
            raise self.err(d, f"cannot be given inline (as <{name}>)")
        if self.in_connection is not None and not spec.connection:
            raise self.err(d, "cannot be used in a <connection> block (the stock client "
                           "refuses it there too)")
        if spec.connection and self.in_connection is None and self.connections \
                and name != "remote":
            self.warn(d, "ignored by the <connection> blocks above it (as by the stock "
                      "client)")
        if spec.warning:
            self.warn(d, spec.warning)
        if spec.kind in (REFUSED, REMOVED):
            raise self.err(d, spec.reason)
        if spec.kind == IGNORED:
            if name == "setenv" and d.args[:2] == ["FORWARD_COMPATIBLE", "1"]:
                self.forward_compatible = True
            self.ignore(d)
            return
        handler = getattr(self, "opt_" + name.replace("-", "_"))
        handler(d, d.args)

    @staticmethod
    def count_message(spec: OptionSpec, got: int) -> str:
        lo, hi = spec.min_args, spec.max_args
        if hi is None:
            want = f"at least {lo}"
        elif lo == hi:
            want = str(lo)
        else:
            want = f"{lo} to {hi}"
        return f"takes {want} argument{'s' if want != '1' else ''}, got {got}"

    # -- option handlers: one per IMPLEMENTED option ---------------------------------------

    def conn(self) -> _Conn:
        return self.in_connection if self.in_connection is not None else self.ce

    def opt_remote(self, d: Directive, a: list[str]) -> None:
        host = self.remote_host(d, a[0])
        port = self.integer(d, a[1], 1, 65535) if len(a) > 1 else None
        proto, family = self.proto_name(d, a[2]) if len(a) > 2 else (None, None)
        entry = _RemoteLine(host, port, proto, family, d)
        if self.in_connection is not None:
            self.in_connection.remote = entry
        else:
            self.remotes.append(entry)

    def opt_proto(self, d: Directive, a: list[str]) -> None:
        c = self.conn()
        c.proto, c.family = self.proto_name(d, a[0])
        c.proto_line = d

    def opt_port(self, d: Directive, a: list[str]) -> None:
        self.conn().port = self.integer(d, a[0], 1, 65535)

    opt_rport = opt_port

    def opt_connection(self, d: Directive, a: list[str]) -> None:
        if d.inline is None:
            raise self.err(d, "give the connection's options in a <connection> block")
        sub = copy.deepcopy(self.ce)
        sub.set_here = set()
        sub.remote = None
        before = len(self.problems)
        directives = lex(d.inline, d.path, first_line=d.line + 1, problems=self.problems,
                         warnings=self.p.warnings)
        self.in_connection = sub
        try:
            for inner in directives:
                try:
                    self.apply(inner)
                except ConfigError as exc:
                    self.problems.append(exc)
        finally:
            self.in_connection = None
        if sub.remote is None and len(self.problems) == before:
            raise self.err(d, "each <connection> block must contain a 'remote' line")
        if sub.remote is not None:
            self.connections.append((d.line, sub))

    def opt_remote_random(self, d: Directive, a: list[str]) -> None:
        self.p.remote_random = True

    def opt_remote_random_hostname(self, d: Directive, a: list[str]) -> None:
        self.p.remote_random_hostname = True

    def opt_connect_retry(self, d: Directive, a: list[str]) -> None:
        first = min(self.integer(d, a[0]), 0xFFFF)
        most = self.integer(d, a[1]) if len(a) > 1 else 300
        self.conn().connect_retry = (first, max(first, most))

    def opt_resolv_retry(self, d: Directive, a: list[str]) -> None:
        self.p.resolv_retry = None if a[0] == "infinite" else self.integer(d, a[0])

    def opt_connect_retry_max(self, d: Directive, a: list[str]) -> None:
        self.p.connect_retry_max = self.integer(d, a[0]) or None

    def opt_connect_timeout(self, d: Directive, a: list[str]) -> None:
        self.conn().connect_timeout = self.integer(d, a[0], 1)

    opt_server_poll_timeout = opt_connect_timeout

    def opt_dev(self, d: Directive, a: list[str]) -> None:
        self.seen_dev = True
        if not a[0].startswith("tun"):
            raise self.err(d, f"'{a[0]}': only tun (layer 3) is supported, not tap")

    def opt_dev_type(self, d: Directive, a: list[str]) -> None:
        if a[0] != "tun":
            raise self.err(d, f"'{a[0]}': only tun (layer 3) is supported")

    def opt_ca(self, d: Directive, a: list[str]) -> None:
        self.material[d.name] = self.source(d)

    opt_cert = opt_key = opt_extra_certs = opt_pkcs12 = opt_ca

    def opt_crl_verify(self, d: Directive, a: list[str]) -> None:
        if d.inline is None and len(a) == 2:
            if a[1] != "dir":
                raise self.err(d, f"the second argument can only be 'dir', not {a[1]!r}")
            self.crl_dir = d
            self.material.pop(d.name, None)
            return
        self.crl_dir = None                  # the last crl-verify line is the one used
        self.material[d.name] = self.source(d)

    def directory(self, d: Directive) -> str:
        """A directory a line names, relative to the profile's (as its files are)."""
        name = d.args[0]
        return name if os.path.isabs(name) else os.path.join(self.base, name)

    def opt_capath(self, d: Directive, a: list[str]) -> None:
        self.capath = d
        # ssl_openssl.c tls_ctx_load_ca, in its words
        self.warn(d, f"WARNING: experimental option --capath {a[0]}")

    def opt_peer_fingerprint(self, d: Directive, a: list[str]) -> None:
        self.hash_option(d, 0, "SHA256")

    def opt_verify_hash(self, d: Directive, a: list[str]) -> None:
        # options.c: the deprecation, in 2.6's words; SHA1 unless said (inline: SHA256)
        self.warn(d, "DEPRECATED OPTION: The option --verify-hash is deprecated. You should "
                  "switch to the either use the level 1 certificate as --ca option, use "
                  "--tls-verify or use --peer-fingerprint")
        algo = "SHA256" if d.inline is not None else "SHA1"
        if d.inline is None and len(a) > 1:
            if a[1] not in DIGEST_SIZES:
                raise self.err(d, f"invalid or unsupported hashing algorithm: {a[1]} (only "
                               "SHA1 and SHA256 are supported)")
            algo = a[1]
        self.hash_option(d, 1, algo)

    def hash_option(self, d: Directive, depth: int, algo: str) -> None:
        """peer-fingerprint (depth 0) and verify-hash (depth 1) share one list in 2.6
        (options.c): the two may not be mixed, and the last line's algorithm is the one
        every hash of the list is compared with."""
        p = self.p
        if self.verify_hash is not None and p.verify_hash_depth != depth:
            raise self.err(d, f"ERROR: Setting {d.name} not allowed. --verify-hash and "
                           "--peer-fingerprint are mutually exclusive")
        text = d.inline if d.inline is not None else d.args[0]
        try:
            hashes = parse_fingerprints(text, DIGEST_SIZES[algo])
        except FingerprintError as exc:
            raise self.err(d, str(exc)) from None
        if self.verify_hash is None:
            self.verify_hash = d
        p.verify_hash_depth = depth
        p.verify_hash_algo = algo
        p.verify_hash += hashes
        self.verify_hash_algos.add(algo)

    def opt_askpass(self, d: Directive, a: list[str]) -> None:
        if a and a[0] != "stdin":
            self.askpass, self.askpass_prompt = self.source(d), False
        else:
            self.askpass, self.askpass_prompt = None, True

    def opt_secret(self, d: Directive, a: list[str]) -> None:
        self.material["secret"] = self.source(d)
        if d.inline is None and len(a) > 1:
            self.key_direction = self.direction(d, a[1])

    def opt_tls_auth(self, d: Directive, a: list[str]) -> None:
        direction = self.direction(d, a[1]) if d.inline is None and len(a) > 1 else None
        if self.in_connection is not None:
            c = self.in_connection
            c.tls_auth = self.source(d)
            c.key_direction = direction
        else:
            self.tls_auth = self.source(d)
            if direction is not None or (d.inline is None and len(a) > 1):
                self.key_direction = direction

    def opt_tls_crypt(self, d: Directive, a: list[str]) -> None:
        if self.in_connection is not None:
            self.in_connection.tls_crypt = self.source(d)
        else:
            self.tls_crypt = self.source(d)

    def opt_tls_crypt_v2(self, d: Directive, a: list[str]) -> None:
        # options.c: a second word may only be force-cookie / allow-noncookie (the
        # server's policy for clients without early negotiation; nothing for a client)
        if d.inline is None and len(a) > 1 and a[1] not in ("force-cookie",
                                                            "allow-noncookie"):
            raise self.err(d, f"unsupported tls-crypt-v2 argument {a[1]!r} (the stock "
                           "client refuses it too)")
        if self.in_connection is not None:
            self.in_connection.tls_crypt_v2 = self.source(d)
        else:
            self.tls_crypt_v2 = self.source(d)

    def opt_key_direction(self, d: Directive, a: list[str]) -> None:
        if self.in_connection is not None:
            self.in_connection.key_direction = self.direction(d, a[0])
        else:
            self.key_direction = self.direction(d, a[0])

    def opt_remote_cert_tls(self, d: Directive, a: list[str]) -> None:
        if a[0] not in REMOTE_CERT_TLS_EKU:
            raise self.err(d, f"must be 'server' or 'client', not {a[0]!r}")
        self.p.remote_cert_tls = a[0]
        self.p.remote_cert_ku = KU_REQUIRED
        self.p.remote_cert_eku = REMOTE_CERT_TLS_EKU[a[0]]

    def opt_remote_cert_ku(self, d: Directive, a: list[str]) -> None:
        values = []
        for v in a:
            try:
                values.append(int(v, 16))
            except ValueError:
                raise self.err(d, f"{v!r} is not a hexadecimal key usage value") from None
        self.p.remote_cert_ku = tuple(values) if values else KU_REQUIRED
        self.p.remote_cert_tls = None

    def opt_remote_cert_eku(self, d: Directive, a: list[str]) -> None:
        self.p.remote_cert_eku = a[0]
        self.p.remote_cert_tls = None

    def opt_ns_cert_type(self, d: Directive, a: list[str]) -> None:
        if a[0] not in ("server", "client"):
            raise self.err(d, f"must be 'server' or 'client', not {a[0]!r}")
        self.p.ns_cert_type = a[0]
        self.warn(d, "deprecated: use 'remote-cert-tls server' (erebus checks the TLS "
                  "server purpose of the certificate, as OpenVPN 2.6 does)")

    def opt_verify_x509_name(self, d: Directive, a: list[str]) -> None:
        if not a[0]:
            raise self.err(d, "the name is empty")
        kind = a[1] if len(a) > 1 else "subject"
        if kind not in ("subject", "name", "name-prefix"):
            raise self.err(d, f"unknown type {kind!r}")
        self.p.verify_x509_name = (a[0], kind)

    def opt_tls_version_min(self, d: Directive, a: list[str]) -> None:
        if len(a) > 1 and a[1] != "or-highest":
            raise self.err(d, f"the second argument can only be 'or-highest', not {a[1]!r}")
        self.p.tls_version_min = a[0]

    def opt_tls_version_max(self, d: Directive, a: list[str]) -> None:
        self.p.tls_version_max = a[0]

    def opt_tls_cipher(self, d: Directive, a: list[str]) -> None:
        self.p.tls_cipher = ":".join(openssl_cipher_name(c) for c in a[0].split(":"))

    def opt_tls_ciphersuites(self, d: Directive, a: list[str]) -> None:
        self.p.tls_ciphersuites = a[0]

    def opt_tls_groups(self, d: Directive, a: list[str]) -> None:
        from .tls import check_tls_groups       # OpenSSL decides which names it knows
        try:
            check_tls_groups(a[0])
        except ConfigError as exc:
            raise self.err(d, str(exc).removeprefix(f"{d.name}: ")) from None
        self.p.tls_groups = a[0]

    def opt_tls_cert_profile(self, d: Directive, a: list[str]) -> None:
        from .tls import CERT_PROFILE_LEVELS
        if a[0] not in CERT_PROFILE_LEVELS:
            raise self.err(d, f"ERROR: Invalid cert profile: {a[0]} (legacy, preferred, "
                           "suiteb or insecure)")
        self.p.tls_cert_profile = a[0]

    def opt_data_ciphers(self, d: Directive, a: list[str]) -> None:
        usable = []
        for c in (c for c in a[0].split(":") if c):
            c = c.lstrip("?")   # '?' marks an optional cipher in 2.6
            n = normalize_cipher(c)
            if n == "none" or n in AEAD_CIPHERS or n in CBC_CIPHERS:
                if n not in usable:
                    usable.append(n)
            else:
                try:
                    cbc_cipher(c)
                    why = ""
                except AlgorithmError as exc:
                    why = f" ({exc})"
                self.warn(d, f"cipher {c} is not supported by erebus and is left out{why}")
        if not usable:
            raise self.err(d, f"none of {a[0]} is supported by erebus")
        self.p.data_ciphers = usable

    opt_ncp_ciphers = opt_data_ciphers

    # options.c: 'cipher' and 'data-ciphers-fallback' set the same cipher (the last line
    # wins); a data-ciphers-fallback line anywhere makes it the fallback.
    def opt_data_ciphers_fallback(self, d: Directive, a: list[str]) -> None:
        self.p.data_ciphers_fallback = self.p.cipher = self.cipher_name(d, a[0])
        self.fallback_seen = True

    def opt_cipher(self, d: Directive, a: list[str]) -> None:
        self.p.cipher = self.cipher_name(d, a[0])
        if self.fallback_seen:
            self.p.data_ciphers_fallback = self.p.cipher
        self.cipher_directive = d

    def opt_auth(self, d: Directive, a: list[str]) -> None:
        self.auth_directive = d
        if normalize_digest(a[0]) is None:      # 'none' or '[null-digest]'
            self.p.auth = "none"
            return
        try:
            self.p.auth = digest_spec(a[0]).name     # any OpenSSL spelling: sha-256, OIDs
        except AlgorithmError as exc:
            raise self.err(d, str(exc)) from None

    def opt_auth_user_pass(self, d: Directive, a: list[str]) -> None:
        self.p.auth_user_pass = True
        if d.inline is not None or (a and a[0] != "stdin"):
            self.material["auth-user-pass"] = self.source(d)
        else:
            self.material.pop("auth-user-pass", None)

    def opt_auth_retry(self, d: Directive, a: list[str]) -> None:
        if a[0] not in ("none", "nointeract", "interact"):
            raise self.err(d, "--auth-retry method must be 'interact', 'nointeract', or "
                           "'none'")       # options.c auth_retry_set's words
        self.p.auth_retry = a[0]

    def opt_auth_nocache(self, d: Directive, a: list[str]) -> None:
        self.p.auth_nocache = True

    def opt_static_challenge(self, d: Directive, a: list[str]) -> None:
        fmt = a[2] if len(a) > 2 else "scrv1"
        if fmt not in ("scrv1", "concat"):
            raise self.err(d, f"FORMAT must be 'scrv1' or 'concat', not '{a[2]}'")
        if len(a) > 2:
            self.warn(d, "the FORMAT argument is OpenVPN 2.7's: a 2.6 client refuses it")
        try:
            echo = int(a[1]) != 0           # options.c: atoi(ECHO)
        except ValueError:
            echo = False
        self.p.static_challenge = (a[0], echo, fmt)

    def opt_ping(self, d: Directive, a: list[str]) -> None:
        self.p.ping = self.integer(d, a[0])

    def opt_ping_restart(self, d: Directive, a: list[str]) -> None:
        self.p.ping_restart = self.integer(d, a[0])

    def opt_keepalive(self, d: Directive, a: list[str]) -> None:
        self.p.ping = self.integer(d, a[0])
        self.p.ping_restart = self.integer(d, a[1])

    def opt_tun_mtu(self, d: Directive, a: list[str]) -> None:
        self.conn().tun_mtu = self.integer(d, a[0], 576, 65535)

    def opt_providers(self, d: Directive, a: list[str]) -> None:
        # 2.6 loads each named OpenSSL provider; profiles for legacy ciphers carry
        # 'providers legacy default', which 'cryptography' has no need of
        for name in a:
            if name == "fips":
                raise self.err(d, "erebus cannot put its crypto library in FIPS mode: "
                               "delete the line, or use the stock client on a FIPS system")
            if name not in ("legacy", "default", "base"):
                raise self.err(d, f"the OpenSSL provider {name!r} cannot be loaded by "
                               "erebus (it knows legacy, default and base): delete it")

    def opt_mssfix(self, d: Directive, a: list[str]) -> None:
        # options.c: a value without 'mtu' leaves out the outer IP/UDP headers
        if not a:
            self.conn().mssfix = MssFix()
            return
        value = self.integer(d, a[0], 0, 65535)
        mode = a[1] if len(a) > 1 else ""
        if mode not in ("", "mtu", "fixed"):
            raise self.err(d, f"Unknown parameter to --mssfix: {mode} (give 'mtu' or "
                           "'fixed')")
        if value and value < 100 + (40 if mode == "mtu" else 0):
            raise self.err(d, f"{value} is too small to carry a TCP segment")
        self.conn().mssfix = MssFix(value, mode)

    def opt_hand_window(self, d: Directive, a: list[str]) -> None:
        self.p.hand_window = self.integer(d, a[0], 1)

    def opt_replay_window(self, d: Directive, a: list[str]) -> None:
        if a:
            self.p.replay_window = self.integer(d, a[0], 1, 65536)

    def opt_comp_lzo(self, d: Directive, a: list[str]) -> None:
        text = " ".join([d.name, *a])
        try:
            Compression.from_options(text, None)
        except SessionError as exc:
            raise self.err(d, str(exc)) from None
        self.p.compression = text

    opt_compress = opt_comp_lzo

    def opt_allow_compression(self, d: Directive, a: list[str]) -> None:
        if a[0] not in ("yes", "no", "asym"):
            raise self.err(d, f"must be yes, no or asym, not {a[0]!r}")
        # erebus never compresses what it sends (VORACLE): 'yes' acts as 'asym'
        self.p.allow_compression = "no" if a[0] == "no" else "asym"

    def opt_reneg_sec(self, d: Directive, a: list[str]) -> None:
        value = self.integer(d, a[0])
        self.p.reneg_sec = float(value) if value else None

    def opt_reneg_bytes(self, d: Directive, a: list[str]) -> None:
        # 0 is kept (not None): given, it stops the SWEET32 limit (ssl.c)
        self.p.reneg_bytes = self.integer(d, a[0], 0, 2**62)

    def opt_explicit_exit_notify(self, d: Directive, a: list[str]) -> None:
        self.conn().explicit_exit_notify = self.integer(d, a[0]) if a else 1

    def opt_ifconfig(self, d: Directive, a: list[str]) -> None:
        self.p.ifconfig = (self.ipv4(d, a[0]), self.ipv4(d, a[1]))

    def opt_route(self, d: Directive, a: list[str]) -> None:
        mask = a[1] if len(a) > 1 and a[1] != "default" else "255.255.255.255"
        self.p.routes.append((a[0], mask))
        self.ignore(d)

    def opt_dhcp_option(self, d: Directive, a: list[str]) -> None:
        kind = a[0].upper()
        if kind == "DNS6" or (kind == "DNS" and len(a) == 2 and ":" in a[1]):
            if len(a) != 2 or push.ipv6_literal(a[1]) is None:
                raise self.err(d, f"dhcp-option parameter {kind} "
                               f"{(a[1] if len(a) > 1 else '')!r} must be an IPv6 address")
            self.p.dns.append(push.ipv6_literal(a[1]))
        elif kind == "DNS" and len(a) == 2:
            self.p.dns.append(self.ipv4(d, a[1]))
        self.ignore(d)

    def opt_ifconfig_ipv6(self, d: Directive, a: list[str]) -> None:
        try:
            self.p.ifconfig_ipv6 = push.parse_ifconfig_ipv6(a)
        except ValueError as exc:
            raise self.err(d, str(exc).removeprefix(f"{d.name}: ")) from None

    def opt_route_ipv6(self, d: Directive, a: list[str]) -> None:
        try:
            self.p.routes_ipv6.append(push.parse_route_ipv6(a))
        except ValueError as exc:
            raise self.err(d, str(exc)) from None

    def opt_route_ipv6_gateway(self, d: Directive, a: list[str]) -> None:
        gw = push.ipv6_literal(a[0])
        if gw is None:
            raise self.err(d, f"route-ipv6-gateway parm {a[0]!r} must be a valid address")
        self.p.route_ipv6_gateway = gw

    def opt_block_ipv6(self, d: Directive, a: list[str]) -> None:
        self.p.block_ipv6 = True

    def opt_pull_filter(self, d: Directive, a: list[str]) -> None:
        if a[0] not in push.PULL_FILTER_TYPES:   # options.c, in its words
            raise self.err(d, f"Unknown --pull-filter type: {a[0]} (accept, ignore or "
                           "reject)")
        if len(self.p.pull_filters) >= MAX_PULL_FILTERS:
            raise self.err(d, f"more than {MAX_PULL_FILTERS} pull-filter lines")
        self.p.pull_filters.append((a[0], a[1]))

    def opt_ignore_unknown_option(self, d: Directive, a: list[str]) -> None:
        self.ignore_unknown.update(a)

    def opt_client(self, d: Directive, a: list[str]) -> None:
        self.client_option = True
        self.opt_tls_client(d, a)

    def opt_tls_client(self, d: Directive, a: list[str]) -> None:
        self.p.tls_client = True     # what erebus does unless the profile is static-key
        if self.client_directive is None:
            self.client_directive = d

    def opt_pull(self, d: Directive, a: list[str]) -> None:
        pass

    def opt_cd(self, d: Directive, a: list[str]) -> None:
        folder = a[0] if os.path.isabs(a[0]) else os.path.join(self.base, a[0])
        if not os.path.isdir(folder):
            raise self.err(d, f"cd to {folder!r} failed: no such folder")
        self.base = folder
        self.shown_base = a[0] if os.path.isabs(a[0]) else os.path.normpath(
            os.path.join(self.shown_base, a[0]))

    def opt_config(self, d: Directive, a: list[str]) -> None:
        path = a[0] if os.path.isabs(a[0]) else os.path.join(self.base, a[0])
        if self.included > MAX_INCLUDED:
            return                        # refused once already (see below): not read again
        if self.depth + 1 >= MAX_CONFIG_DEPTH:
            raise self.err(d, f"more than {MAX_CONFIG_DEPTH} nested 'config' files (does a "
                           "file include itself?)")
        try:
            raw = read_limited(path)
        except OSError as exc:
            raise self.err(d, f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise self.err(d, f"cannot read {path!r}: {exc}") from None
        self.included += len(raw)
        if self.included > MAX_INCLUDED:
            raise self.err(d, f"the 'config' files of this profile add up to more than "
                           f"{MAX_INCLUDED >> 20} MiB (is one included again and again?)")
        text = _decode(raw, path, self.problems)
        if text is None:
            return
        self.depth += 1
        try:
            self.apply_all(lex(text, path, problems=self.problems, warnings=self.p.warnings))
        finally:
            self.depth -= 1

    # -- after the last option -------------------------------------------------------------

    def finish(self) -> Profile:
        p = self.p
        # an option whose line failed is not also reported missing
        self.failed = {e.option for e in self.problems if e.option}
        self.finish_remotes()
        self.finish_tls_wrap()
        secret = self.material.get("secret")
        if secret is not None:
            data = self.read(secret)
            if data is not None:
                try:
                    p.static_key = parse_static_key(
                        data, source=f"{secret.directive.path}:{secret.directive.line}")
                except ConfigError as exc:
                    self.problems.append(self.reattach(exc, secret.directive))
            return self.finish_static()
        self.finish_credentials()
        self.finish_pki()
        self.warn_no_server_verification()
        self.warn_cipher_ignored()
        self.check_tls_auth_digest()
        if not self.seen_dev:
            p.warnings.append(f"{self.path}: dev: no 'dev tun' line (the stock client "
                              "refuses a profile without one; erebus needs no device)")
        return p

    # Options that make 2.6 verify the server beyond the CA chain (init.c,
    # do_option_warnings); given but refused or broken, they are reported as problems
    # instead.  verify-hash is not one: it checks depth 1 (the CA), and 2.6 counts only
    # a depth-0 hash (peer-fingerprint).
    SERVER_VERIFICATION = ("tls-verify", "verify-x509-name", "ns-cert-type", "remote-cert-tls",
                           "remote-cert-eku", "peer-fingerprint")

    def warn_no_server_verification(self) -> None:
        """init.c ``do_option_warnings``: a TLS client with none of tls-verify,
        verify-x509-name, ns-cert-type server, remote-cert-eku (remote-cert-tls sets it),
        a depth-0 verify-hash (peer-fingerprint) is warned, in its words: any certificate
        of the same CA -- another client's -- can then act as the server.
        remote-cert-ku alone does not count, nor verify-hash (depth 1), as in 2.6.  The
        line is that of client/tls-client, else of the CA."""
        p = self.p
        if p.remote_cert_eku or p.verify_x509_name or p.ns_cert_type == "server" \
                or (p.verify_hash and p.verify_hash_depth == 0) \
                or self.failed & set(self.SERVER_VERIFICATION):
            return
        d = self.client_directive or next(
            (self.material[n].directive for n in ("ca", "pkcs12") if n in self.material), None)
        self.warn(d, "WARNING: No server certificate verification method has been enabled.  "
                  "See http://openvpn.net/howto.html#mitm for more info.")

    def warn_cipher_ignored(self) -> None:
        """options.c ``options_postprocess_cipher`` (a pulling client): 'cipher' outside
        data-ciphers and no data-ciphers-fallback is not used for anything, in 2.6's
        words.  Without a data-ciphers-fallback line the profile's 'cipher' is never a
        data cipher that erebus accepts either."""
        p = self.p
        if p.cipher is None or p.data_ciphers_fallback is not None \
                or p.cipher in p.data_ciphers:
            return
        self.warn(self.cipher_directive,
                  f"DEPRECATED OPTION: --cipher set to '{p.cipher}' but missing in "
                  f"--data-ciphers ({':'.join(p.data_ciphers)}). OpenVPN ignores --cipher "
                  "for cipher negotiations.")

    def check_tls_auth_digest(self) -> None:
        """init.c ``do_init_tls_wrap_key``: tls-auth needs an HMAC, so 'auth none' with
        tls-auth is refused, in 2.6's words."""
        p = self.p
        if p.tls_wrap == "tls-auth" and p.auth == "none":
            self.problem(self.auth_directive, "ERROR: tls-auth enabled, but no valid --auth "
                         f"algorithm specified ('{self.auth_directive.args[0]}')")

    def reattach(self, exc: ConfigError, d: Directive) -> ConfigError:
        if exc.line is not None and exc.path is not None:
            return exc
        message = str(exc)
        prefix = f"{d.path}:{d.line}: "
        if message.startswith(prefix):
            message = message[len(prefix):]
        return ConfigError(message, path=d.path, line=d.line, option=d.name)

    def finish_remotes(self) -> None:
        p, ce = self.p, self.ce
        remotes: list[Remote] = []
        if self.connections:
            if self.remotes:
                p.warnings.append(f"{self.path}: remote: the 'remote' lines outside "
                                  "<connection> blocks are ignored, as by the stock client")
            entries = [(c.remote, c, block_line) for block_line, c in self.connections]
        else:
            entries = [(r, ce, None) for r in self.remotes]
        for r, c, block_line in entries:
            remote = self.remote_of(r, c, block_line)
            if remote is not None:
                remotes.append(remote)
        refused = len(remotes) < len(entries)       # and said why
        if p.remote_random and len(remotes) > 1:
            (self.rng or random.SystemRandom()).shuffle(remotes)
        p.remotes = remotes
        p.connect_timeout = ce.connect_timeout
        p.connect_retry = ce.connect_retry
        p.tun_mtu = ce.tun_mtu
        p.mssfix = ce.mssfix
        p.explicit_exit_notify = ce.explicit_exit_notify
        for r in remotes:
            if r.proto != "udp" and r.explicit_exit_notify:
                r.explicit_exit_notify = 0      # the stock client ignores it over TCP
        if not remotes and not refused and not self.failed & {"remote", "connection"}:
            self.problem(None, "no 'remote' line: nothing to connect to", option="remote")

    def remote_of(self, r: _RemoteLine, c: _Conn, block_line: int | None) -> Remote | None:
        """One remote with its connection entry's options (options.c
        connection_entry_load_re: its PROTO replaces the entry's protocol, and its
        family only when the word has one: 'remote H P udp' under 'proto udp6' is
        IPv6); None, and a problem, when 2.6 could not use it either."""
        proto = r.proto or c.proto
        family = r.family or c.family
        if proto == "tcp":
            if not self.client_option:
                d = r.directive if r.proto else (c.proto_line or r.directive)
                self._once(d, "--proto tcp is ambiguous in this context. Please specify "
                           "--proto tcp-server or --proto tcp-client")
                return None
            proto = "tcp-client"            # options_postprocess_mutate_ce, with 'client'
        try:
            literal = ipaddress.ip_address(r.host)
        except ValueError:
            literal = None
        proxy = self.outer_proxy(c.proxy, proto)
        if proxy is not None and proxy.kind == "socks" and proto == "udp" \
                and family != "ipv4":
            # options.c: "our socks code is not fully IPv6 enabled yet (TCP works, UDP
            # not) so fall back to IPv4-only (trac #1221)"
            d = r.directive if r.family else (c.proto_line or r.directive)
            if family == "ipv6":
                warning = f"{d.path}:{d.line}: {d.name}: WARNING: '--proto udp6' is not " \
                    "compatible with '--socks-proxy' today.  Forcing IPv4 mode."
                if warning not in self.p.warnings:
                    self.p.warnings.append(warning)
            family = "ipv4"
        if literal is not None and family is not None \
                and literal.version != (4 if family == "ipv4" else 6):
            want = "IPv4" if family == "ipv4" else "IPv6"
            why = " (socks-proxy over UDP carries IPv4 only, as in 2.6)" \
                if proxy is not None and proxy.kind == "socks" and proto == "udp" else ""
            self.problem(r.directive, f"{r.host} is an IPv{literal.version} address but "
                         f"the protocol asks for {want} only{why}; the stock client "
                         "cannot resolve it either", option="remote")
            return None
        return Remote(r.host, r.port or c.port, proto, r.directive.line, block_line,
                      c.connect_timeout, c.connect_retry, c.explicit_exit_notify,
                      c.tun_mtu, proxy, mssfix=c.mssfix, family=family)

    def wrap_choice(self, tls_auth: _Source | None, tls_crypt: _Source | None,
                    tls_crypt_v2: _Source | None, direction: int | None):
        """One context's (the profile's, a <connection> block's) control-channel
        wrapping: (kind, source, key direction), None for none, False when refused as
        by options.c: tls-auth with tls-crypt, or tls-crypt-v2 with either (a client)."""
        if tls_auth is not None and tls_crypt is not None:
            self.problem(tls_crypt.directive, "tls-auth and tls-crypt cannot be used "
                         "together (the stock client refuses it too)")
            return False
        if tls_crypt_v2 is not None and (tls_auth or tls_crypt) is not None:
            self.problem(tls_crypt_v2.directive, "tls-crypt-v2, tls-auth and tls-crypt are "
                         "mutually exclusive in client mode (the stock client refuses it "
                         "too)")
            return False
        if tls_auth is not None:
            return "tls-auth", tls_auth, direction
        if tls_crypt is not None:
            return "tls-crypt", tls_crypt, None
        if tls_crypt_v2 is not None:
            return "tls-crypt-v2", tls_crypt_v2, None
        return None

    def finish_tls_wrap(self) -> None:
        """tls-auth / tls-crypt / tls-crypt-v2: a <connection> block's own, else the
        profile's (options.c: a block with none of the three takes all of the profile's)."""
        p = self.p
        profile_wide = self.wrap_choice(self.tls_auth, self.tls_crypt, self.tls_crypt_v2,
                                        self.key_direction)
        if profile_wide is False:
            return
        choices = []
        for _, c in self.connections:
            if c.tls_auth is None and c.tls_crypt is None and c.tls_crypt_v2 is None:
                choices.append(profile_wide)
                continue
            choice = self.wrap_choice(c.tls_auth, c.tls_crypt, c.tls_crypt_v2,
                                      c.key_direction)
            if choice is False:
                return
            choices.append(choice)
        if not self.connections:
            choices.append(profile_wide)
        distinct = {None if ch is None else (ch[0], ch[1].directive.path,
                                             ch[1].directive.line, ch[2]) for ch in choices}
        if len(distinct) > 1:
            self.problem(None, "the <connection> blocks use different tls-auth/tls-crypt"
                         "(-v2) keys; erebus supports one for the whole profile for now",
                         option="connection")
            return
        if choices[0] is None:
            return
        kind, src, direction = choices[0]
        data = self.read(src)
        if data is None:
            return
        if kind == "tls-crypt-v2":
            try:
                p.tls_crypt_v2_key, p.tls_crypt_v2_wkc = tls_crypt_v2_client_key(data)
            except PemError as exc:
                self.material_problem(src, data, exc.offset, str(exc))
                return
            p.tls_wrap = kind
            return
        try:
            key = parse_static_key(data, source=f"{src.directive.path}:{src.directive.line}")
        except ConfigError as exc:
            self.problems.append(self.reattach(exc, src.directive))
            return
        p.tls_wrap = kind
        if kind == "tls-auth":
            p.tls_auth_key, p.tls_auth_direction = key, direction
        else:
            p.tls_crypt_key = key

    def finish_static(self) -> Profile:
        """A static-key profile: no TLS, no CA; ifconfig is needed, the cipher defaults
        to BF-CBC as in 2.6."""
        p = self.p
        d = self.material["secret"].directive

        def fail(message: str) -> None:
            self.problem(d, message, option="secret")

        if p.tls_client or p.tls_wrap or p.auth_user_pass:
            fail("a static-key profile cannot also use TLS (client, tls-client, tls-auth, "
                 "tls-crypt, auth-user-pass)")
        if p.cipher is None:
            p.cipher = "BF-CBC"     # options.c options_postprocess_cipher, without pull
        if p.ifconfig is None:
            fail("static-key mode needs 'ifconfig LOCAL REMOTE'")
        if p.compression:
            fail("compression in static-key mode is not supported")
        if any(r.proto != "udp" for r in p.remotes):
            fail("static-key mode over TCP is not supported")
        p.static_direction = self.key_direction
        p.warnings.append(f"{d.path}:{d.line}: secret: static-key mode is deprecated and "
                          "removed in OpenVPN 2.7; ask for a TLS profile")
        return p

    def finish_credentials(self) -> None:
        p = self.p
        if p.static_challenge is not None and not p.auth_user_pass:
            p.warnings.append(f"{self.path}: static-challenge: the profile has no "
                              "auth-user-pass: no challenge is asked (as by the stock client)")
        src = self.material.get("auth-user-pass")
        p.username = p.password = None
        if src is not None:
            data = self.read(src)
            if data is not None:
                lines = data.decode("utf-8", "replace").splitlines()
                if not lines or not lines[0]:
                    self.problem(src.directive, "the credentials have no username line")
                else:
                    # like 2.6: a file with the username only means "ask for the password"
                    p.username = lines[0]
                    p.password = lines[1] if len(lines) > 1 else None
        if self.askpass is not None:
            data = self.read(self.askpass)
            if data is not None:
                lines = data.decode("utf-8", "replace").splitlines()
                p.key_passphrase = lines[0] if lines else ""

    def finish_pki(self) -> None:
        p = self.p
        m = self.material
        if "pkcs12" in m:
            for other in ("cert", "key"):
                if other in m:
                    self.problem(m[other].directive, "cannot be used together with "
                                 "'pkcs12' (the stock client refuses it too)")
        ca = self.certificates("ca")
        if ca is not None:
            p.ca = ca
        cert = self.certificates("cert")
        if cert is not None:
            p.cert = cert
        extra = self.certificates("extra-certs")
        if extra is not None:
            p.extra_certs = extra
        self.private_key()
        if "pkcs12" in m:
            self.load_pkcs12(m["pkcs12"])
        crl = m.get("crl-verify")
        if crl is not None:
            self.load_crl(crl)
        if self.crl_dir is not None:
            self.check_crl_dir(self.crl_dir)
        if self.capath is not None:
            self.load_capath(self.capath, has_ca="ca" in m)
        self.check_hash_algorithms()
        pinned = bool(p.verify_hash) and p.verify_hash_depth == 0
        if "ca" not in m and "pkcs12" not in m and self.capath is None and not pinned \
                and not self.failed & {"ca", "pkcs12", "capath", "peer-fingerprint"}:
            # options.c check_ca_required, in its words, then ours
            self.problem(None, "You must define CA file (--ca) or CA path (--capath) "
                         "and/or peer fingerprint verification (--peer-fingerprint) (no "
                         "CA certificate: the server cannot be verified)", option="ca")
        has_cert = p.cert is not None or p.pkcs12 is not None or "cert" in m
        has_key = p.key is not None or p.pkcs12 is not None or "key" in m
        if has_cert != has_key and not self.failed & {"cert", "key", "pkcs12"}:
            missing = "key" if not has_key else "cert"
            self.problem(None, "a client certificate needs its key and the key its "
                         f"certificate: '{missing}' is missing", option=missing)
        if not has_cert and not p.auth_user_pass and "pkcs12" not in m \
                and not self.failed & {"cert", "key", "pkcs12", "auth-user-pass"}:
            # options.c's words, then ours
            self.problem(None, "No client-side authentication method is specified.  You "
                         "must use either --cert/--key, --pkcs12, or --auth-user-pass "
                         "(the server has no way to authenticate this client)",
                         option="cert")
        self.match_key()

    def certificates(self, name: str) -> bytes | None:
        src = self.material.get(name)
        if src is None:
            return None
        data = self.read(src)
        if data is None:
            return None
        try:
            check_certificates(data)
        except PemError as exc:
            self.material_problem(src, data, exc.offset, str(exc))
            return None
        return data

    def private_key(self) -> None:
        p = self.p
        src = self.material.get("key")
        if src is None:
            return
        data = self.read(src)
        if data is None:
            return
        try:
            block = private_key_block(data)
            if not block.locked:
                check_private_key(block)
        except PemError as exc:
            self.material_problem(src, data, exc.offset, str(exc))
            return
        if not block.locked:
            p.key = data
            return
        p.key = block.text + b"\n"
        p.key_encrypted = True
        if p.key_passphrase is not None:
            try:
                p.key = unlock_key(block.text, p.key_passphrase)
                p.key_encrypted = False
            except ValueError:
                self.problem(self.askpass.directive if self.askpass else src.directive,
                             "the passphrase does not unlock the private key")

    def load_pkcs12(self, src: _Source) -> None:
        p = self.p
        data = self.read(src)
        if data is None:
            return
        tries: list[bytes | None] = [None, b""]
        if p.key_passphrase is not None:
            tries.append(p.key_passphrase.encode())
        try:
            if src.inline is not None:
                data = pkcs12_from_base64(data)
            opened = open_pkcs12(data, tries)
        except Pkcs12Error as exc:
            self.problem(src.directive, str(exc))
            return
        if opened is not None:
            problem = _from_pkcs12(p, *opened, has_ca="ca" in self.material)
            if problem:
                self.problem(src.directive, problem)
            return
        if p.key_passphrase is not None:
            self.problem(src.directive, "the passphrase does not unlock the PKCS#12 bundle "
                         "(or it is damaged)")
            return
        p.pkcs12 = data              # locked: unlocked once the passphrase is known
        p.key_encrypted = True

    def check_crl_dir(self, d: Directive) -> None:
        """options.c: the directory must be readable and searchable ("--crl-verify
        directory"); its files are looked up at each handshake."""
        path = self.directory(d)
        if not os.path.isdir(path):
            why = "not a directory" if os.path.exists(path) else "No such file or directory"
            self.problem(d, f"--crl-verify directory fails with '{path}': {why}")
        elif not os.access(path, os.R_OK | os.X_OK):
            self.problem(d, f"--crl-verify directory fails with '{path}': Permission denied")
        else:
            self.p.crl_dir = path

    def load_capath(self, d: Directive, *, has_ca: bool) -> None:
        """capath's certificates and CRLs, read as OpenSSL's hashed lookup finds them
        (:mod:`erebus.openvpn.castore`)."""
        path = self.directory(d)
        try:
            found = read_capath(path)
        except CaPathError as exc:
            self.problem(d, str(exc))
            return
        for text in found.warnings:
            self.warn(d, text)
        if not found.certificates and not has_ca:
            self.problem(d, f"no CA certificate in {path} under OpenSSL's hashed names "
                         "(HASH.0: make them with 'openssl rehash DIR')")
            return
        p = self.p
        p.capath, p.capath_certs, p.capath_crls = path, found.certificates, found.crls

    def check_hash_algorithms(self) -> None:
        """2.6 compares every verify-hash of the profile with the last line's
        algorithm (options.c): hashes of the other length can never match."""
        if len(self.verify_hash_algos) > 1:
            self.warn(self.verify_hash, f"the last verify-hash line's algorithm "
                      f"({self.p.verify_hash_algo}) applies to every verify-hash line, as "
                      "in 2.6: the hashes of the other algorithm can never match")

    def load_crl(self, src: _Source) -> None:
        data = self.read(src)
        if data is None:
            return
        try:
            check_crls(data)
        except PemError as exc:
            self.material_problem(src, data, exc.offset, str(exc))
            return
        self.p.crl = data

    def match_key(self) -> None:
        """The stock client refuses a key that is not the certificate's."""
        p = self.p
        if p.cert is None or p.key is None or p.key_encrypted:
            return
        if not key_matches_certificate(p.key, p.cert):
            src = self.material.get("key") or self.material.get("pkcs12")
            self.problem(src.directive if src else None, "the private key does not match "
                         "the certificate", option="key")


def _from_pkcs12(p: Profile, key, cert, extra, *, has_ca: bool) -> str | None:
    """Certificate, key and (unless the profile has its own 'ca') CA from a PKCS#12
    bundle; what is wrong with it, if anything."""
    if key is None or cert is None:
        return "the PKCS#12 bundle has no certificate and key"
    p.cert, p.key, cas = pkcs12_pems(key, cert, extra)
    p.pkcs12, p.key_encrypted = None, False
    if has_ca:
        return None
    if not cas:
        return ("the PKCS#12 bundle has no CA certificate and the profile no 'ca': the "
                "server cannot be verified")
    p.ca = cas          # like the stock client: the bundle's CA certificates are the anchors
    return None


def openssl_cipher_name(name: str) -> str:
    """OpenSSL's name of a TLS 1.2 cipher given by its IANA-style name, as the stock
    client translates them (TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256 becomes
    ECDHE-ECDSA-AES128-GCM-SHA256); OpenSSL names and keywords pass unchanged."""
    m = re.fullmatch(r"TLS-(.+)-WITH-(AES|CAMELLIA|ARIA)-(\d+)-(GCM|CBC|CCM8?)(?:-(SHA\d*))?",
                     name, re.I)
    chacha = re.fullmatch(r"TLS-(.+)-WITH-CHACHA20-POLY1305(?:-SHA256)?", name, re.I)
    if chacha:
        kx = chacha.group(1).upper()
        return ("" if kx == "RSA" else kx + "-") + "CHACHA20-POLY1305"
    if not m:
        return name
    kx, algo, bits, mode, digest = (g.upper() if g else g for g in m.groups())
    if mode == "CBC":
        body = f"{algo}{bits}-{digest or 'SHA'}"
    else:
        body = f"{algo}{bits}-{mode}" + (f"-{digest}" if digest and mode == "GCM" else "")
    return ("" if kx == "RSA" else kx + "-") + body


def _decode(raw: bytes, path: str, problems: list[ConfigError]) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        problems.append(ConfigError("not valid UTF-8", path=path, line=line))
        return None


# -- entry points --------------------------------------------------------------------------

@dataclass
class Reading:
    """What :func:`read_profile` found: the profile (None when it has problems), every
    problem, and the warnings."""

    path: str
    profile: Profile | None
    problems: list[ConfigError]
    warnings: list[str]
    draft: Profile | None = None      # what was understood, even with problems

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_text(text: str, path: str, rng: random.Random | None,
               problems: list[ConfigError] | None = None) -> Reading:
    reader = _Reader(path, rng=rng)
    if problems:
        reader.problems.extend(problems)
    directives = lex(text, path, problems=reader.problems, warnings=reader.p.warnings)
    reader.apply_all(directives)
    profile = reader.finish()
    problems = sorted(reader.problems, key=_problem_order(path))
    return Reading(path, None if problems else profile, problems, reader.p.warnings,
                   profile)


def _problem_order(path: str):
    def key(exc: ConfigError):
        return (exc.path != path, exc.path or "", exc.line is None, exc.line or 0)
    return key


def parse_profile(text: str, path: str = "<profile>", *,
                  rng: random.Random | None = None) -> Profile:
    """The profile ``text`` describes; :class:`ProfileError` lists every problem."""
    reading = _read_text(text, path, rng)
    if reading.problems:
        raise ProfileError(reading.problems)
    return reading.profile


def read_profile(path: str, *, rng: random.Random | None = None) -> Reading:
    """Read a profile file offline and report everything: never raises for the profile's
    own problems, never asks for anything, never touches the network."""
    try:
        raw = read_limited(path)
    except OSError as exc:
        problem = ConfigError(f"cannot read the profile: {exc.strerror}", path=path)
        return Reading(path, None, [problem], [])
    problems: list[ConfigError] = []
    text = _decode(raw, path, problems)
    if text is None:
        return Reading(path, None, problems, [])
    return _read_text(text, path, rng)


def load_profile(path: str, *, rng: random.Random | None = None, stdin=None,
                 prompt: Callable[[str], str] = getpass.getpass) -> Profile:
    """The profile at ``path``, ready to connect with: an encrypted private key or
    PKCS#12 bundle is unlocked (askpass, or a prompt on the terminal)."""
    reading = read_profile(path, rng=rng)
    if reading.problems:
        raise ProfileError(reading.problems)
    profile = reading.profile
    for warning in reading.warnings:
        log.warning("%s", warning)
    unlock(profile, stdin=stdin, prompt=prompt)
    return profile


def unlock(profile: Profile, *, stdin=None, prompt: Callable[[str], str] = getpass.getpass
           ) -> None:
    """Ask for the passphrase of an encrypted private key or PKCS#12 bundle, on the
    terminal like the stock client, and unlock it; never echoed, never logged."""
    if not profile.key_encrypted:
        return
    stream = stdin or sys.stdin
    if stream is None or not stream.isatty():
        raise ConfigError("the private key is protected by a passphrase and there is no "
                          "terminal to ask on: give 'askpass FILE' (the passphrase on its "
                          "first line)", path=profile.path, option="askpass")
    passphrase = prompt("Enter Private Key Password: ")
    if profile.pkcs12 is not None:
        try:
            opened = open_pkcs12(profile.pkcs12, [passphrase.encode()])
        except Pkcs12Error as exc:
            raise ConfigError(str(exc), path=profile.path, option="pkcs12") from None
        if opened is None:
            raise ConfigError("the passphrase does not unlock the PKCS#12 bundle",
                              path=profile.path, option="pkcs12")
        problem = _from_pkcs12(profile, *opened, has_ca=profile.ca is not None)
        if problem:
            raise ConfigError(problem, path=profile.path, option="pkcs12")
        return
    try:
        profile.key = unlock_key(profile.key, passphrase)
    except ValueError:
        raise ConfigError("the passphrase does not unlock the private key",
                          path=profile.path, option="key") from None
    profile.key_encrypted = False
    if profile.cert is not None and not key_matches_certificate(profile.key, profile.cert):
        raise ConfigError("the private key does not match the certificate",
                          path=profile.path, option="key")
