"""WireGuard profiles: the wg-quick ``.conf`` files users have.

::

    [Interface]
    PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
    Address = 198.18.120.2/32, 2001:2:0:120::2/128
    DNS = 198.18.120.1, corp.example       # addresses and search domains, mixed
    MTU = 1420                              # optional (1420 when left out)
    ListenPort = 51820                      # optional: our UDP port

    [Peer]
    PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
    PresharedKey = ...                      # optional
    Endpoint = vpn.example.net:51820        # or 198.18.0.1:51820 or [2001:2::1]:51820
    AllowedIPs = 0.0.0.0/0, ::/0
    PersistentKeepalive = 25                # optional; "off" or 0: none

The syntax is wireguard-tools' (src/config.c) with wg-quick's additions
(src/wg-quick/linux.bash ``parse_options``): ``#`` starts a comment anywhere on a
line; keys and section names are case-insensitive and may hold spaces (config.c
removes all white space from a line before it looks at it); sections may repeat;
Address, DNS and AllowedIPs take comma-separated lists and several lines of one
accumulate; a single-valued key given twice keeps the later value (with a warning).
A DNS entry that is an address (digits and dots, or anything with a colon: wg-quick's
own test) is a server, anything else a search domain.

What has no meaning in user space is accepted and listed as a warning, never acted
on: PreUp, PostUp, PreDown, PostDown (shell commands: erebus runs none), Table, FwMark
and SaveConfig.  An unknown key is an error (a typo must not pass silently).

We are the client: a peer without Endpoint is accepted with a warning (it can only be
reached once it has contacted us, which a server behind no fixed address will not
do), but a profile in which no peer has an Endpoint is refused: it could never connect.

The private key is a secret: the file is refused when users other than its owner may
read or write it (as erebus refuses such a proxy credentials file: ``chmod 600``), and
no error ever shows a private or preshared key's value.  Every problem is a
:class:`erebus.errors.ConfigError` naming the file, the line and the key, and all of
them are found in one pass (:func:`read_wg_profile`).

Bounds: a profile is read with :func:`erebus.files.read_limited` (a regular file of at
most ``MAX_FILE_SIZE``), which bounds every list it builds (addresses, peers, allowed
IPs, warnings); duplicates are found through sets, so a hostile file costs linear time.
Each peer with an Endpoint becomes its own session, UDP socket and task when the tunnel
comes up, so a profile holds at most ``MAX_PEERS`` [Peer] sections; the next one is an
error naming its line, and its keys are not read.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import re
from dataclasses import dataclass

from ..errors import ConfigError, ConfigProblems
from ..files import read_limited
from .keys import KEY_LEN, WgInterfaceConfig, WgPeerConfig

MAX_PEERS = 256            # [Peer] sections of one profile (each may be a socket and a task)

__all__ = ["MAX_PEERS", "WgProfile", "WgReading", "WgProfileError", "read_wg_profile",
           "parse_wg_profile", "load_wg_profile", "public_key_of", "key_to_base64",
           "is_wg_quick_text", "INTERFACE_KEYS", "PEER_KEYS", "IGNORED_KEYS"]

log = logging.getLogger("erebus.wireguard")

# canonical spelling of every key, by section (lower case -> as the docs write it)
INTERFACE_KEYS = {k.lower(): k for k in ("PrivateKey", "Address", "DNS", "MTU", "ListenPort")}
PEER_KEYS = {k.lower(): k for k in ("PublicKey", "PresharedKey", "Endpoint", "AllowedIPs",
                                    "PersistentKeepalive")}
_HOOKS = ("PreUp", "PostUp", "PreDown", "PostDown")
IGNORED_KEYS = {k.lower(): k for k in (*_HOOKS, "Table", "FwMark", "SaveConfig")}
_IGNORED_WHY = {
    **{h.lower(): "meaningless in user space: never run (erebus runs no command a "
                  "profile names)" for h in _HOOKS},
    "table": "meaningless in user space: ignored (erebus installs no routes)",
    "fwmark": "meaningless in user space: ignored (erebus marks no socket)",
    "saveconfig": "meaningless in user space: ignored (erebus never rewrites the profile)",
}
_SECRET = {"privatekey", "presharedkey"}
_LIST = {"address", "dns", "allowedips"}
_KEY_B64_LEN = 44                                   # base64 of 32 bytes, one '='
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_DNS_ADDRESS = re.compile(r"[0-9.]+\Z|.*:")         # wg-quick: (^[0-9.]+$)|(^.*:.*$)
_SNIFF_BYTES = 64 * 1024


class WgProfileError(ConfigProblems):
    """Every problem found in a WireGuard profile; reads as the first one."""


@dataclass(frozen=True, slots=True)
class WgProfile:
    path: str
    interface: WgInterfaceConfig
    peers: tuple[WgPeerConfig, ...]
    warnings: tuple[str, ...] = ()                  # "FILE:LINE: Key: text" lines
    peer_lines: tuple[int, ...] = ()                # the [Peer] line of each peer

    @property
    def public_key(self) -> bytes:
        """Our public key (what the server's [Peer] PublicKey must be)."""
        return public_key_of(self.interface.private_key)


@dataclass(slots=True)
class WgReading:
    """What :func:`read_wg_profile` found: the profile (None when it has problems),
    every problem, every warning."""
    path: str
    profile: WgProfile | None
    problems: list[ConfigError]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def key_to_base64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def public_key_of(private_key: bytes) -> bytes:
    """The Curve25519 public key of ``private_key`` (as ``wg pubkey`` prints it)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def _key(value: str) -> bytes | None:
    """32 bytes from their base64 as wg writes it (44 characters, the last '=', no
    stray bits: encoding.c ``key_from_base64``), or None."""
    if len(value) != _KEY_B64_LEN or value[-1] != "=" or value[-2] == "=":
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != KEY_LEN or base64.b64encode(raw).decode("ascii") != value:
        return None
    return raw


def is_wg_quick_text(head: bytes) -> bool:
    """Whether the first section header in ``head`` (the start of a file) is
    ``[Interface]``: how a WireGuard ``.conf`` is told from an OpenVPN one (which has
    no ``[section]`` lines at all)."""
    for raw in head.split(b"\n"):
        line = bytes(c for c in raw.split(b"#", 1)[0] if c not in b" \t\r\v\f")
        if line.startswith(b"["):
            return line.lower() == b"[interface]"
    return False


def sniff_wg_quick(path: str) -> bool:
    """Whether the file at ``path`` reads as a wg-quick profile (the first 64 KiB of
    it; a file that cannot be read is not one: its own family reports why)."""
    import os
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return is_wg_quick_text(os.read(fd, _SNIFF_BYTES))
    except OSError:
        return False
    finally:
        os.close(fd)


class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.problems: list[ConfigError] = []
        self.warnings: list[str] = []
        self.section: str | None = None             # "interface", "peer" or None
        self.interface_seen = False
        self.private_key: bytes | None = None
        self.private_line: int | None = None
        self.addresses: list = []
        self.address_set: set = set()               # the same, for O(1) duplicates
        self.dns: list = []
        self.dns_search: list[str] = []
        self.mtu: int | None = None
        self.mtu_line = 0
        self.listen_port: int | None = None
        self.peers: list[dict] = []
        self.peers_over = False                     # a [Peer] past MAX_PEERS was seen
        self.seen: dict[tuple, int] = {}            # (section id, key) -> first line

    # -- reporting -------------------------------------------------------------------
    def fail(self, line: int, option: str | None, message: str) -> None:
        self.problems.append(ConfigError(message, path=self.path, line=line, option=option))

    def warn(self, line: int | None, option: str | None, message: str) -> None:
        where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        self.warnings.append(where + (f"{option}: " if option else "") + message)

    # -- lines -----------------------------------------------------------------------
    def feed(self, text: str) -> None:
        for number, raw in enumerate(text.split("\n"), 1):
            self.line(number, raw)

    def line(self, number: int, raw: str) -> None:
        body = raw.split("#", 1)[0]
        squeezed = "".join(body.split())
        if not squeezed:
            return
        if squeezed.startswith("["):
            self.header(number, squeezed)
            return
        name_part, sep, value = body.partition("=")
        name = "".join(name_part.split())
        if not sep or not name:
            self.fail(number, None, "not KEY = VALUE, a [Interface] or a [Peer] line")
            return
        key = name.lower()
        canon = INTERFACE_KEYS.get(key) or PEER_KEYS.get(key) or IGNORED_KEYS.get(key)
        if canon is None:
            known = ", ".join([*INTERFACE_KEYS.values(), *PEER_KEYS.values(),
                               *IGNORED_KEYS.values()])
            self.fail(number, name[:60], f"unknown key (known: {known})")
            return
        if self.section is None:
            self.fail(number, canon, "outside any section: the file starts with [Interface]")
            return
        if self.section == "unknown":          # the section's header is the problem
            return
        if self.section == "interface" and key in PEER_KEYS:
            self.fail(number, canon, "belongs in a [Peer] section, not [Interface]")
            return
        if self.section == "peer" and key not in PEER_KEYS:
            self.fail(number, canon, "belongs in the [Interface] section, not [Peer]")
            return
        if key in IGNORED_KEYS:
            self.warn(number, canon, _IGNORED_WHY[key])
            return
        if key not in _LIST:
            scope = ("peer", len(self.peers)) if self.section == "peer" else ("interface",)
            first = self.seen.setdefault((*scope, key), number)
            if first != number:
                self.warn(number, canon, f"given again (first at line {first}): this "
                          "later value is the one used")
        try:
            getattr(self, "opt_" + key)(number, canon, value)
        except ConfigError as exc:
            self.problems.append(exc)

    def header(self, number: int, squeezed: str) -> None:
        name = squeezed.lower()
        if name == "[interface]":
            self.section = "interface"
            self.interface_seen = True
        elif name == "[peer]" and len(self.peers) >= MAX_PEERS:
            self.section = "unknown"            # its keys are not taken
            if not self.peers_over:             # said once, at the first one over
                self.fail(number, "Peer", f"more than {MAX_PEERS} [Peer] sections: erebus "
                          "runs a session and a socket for each, and takes at most "
                          f"{MAX_PEERS} (split the profile)")
                self.peers_over = True
        elif name == "[peer]":
            self.section = "peer"
            self.peers.append({"line": number, "public_key": None, "psk": None,
                               "endpoint": None, "allowed": [], "keepalive": None})
        else:
            self.section = "unknown"
            self.fail(number, squeezed[:60], "unknown section (only [Interface] and [Peer])")

    # -- helpers ---------------------------------------------------------------------
    def error(self, number: int, option: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.path, line=number, option=option)

    def single(self, number: int, option: str, value: str) -> str:
        v = "".join(value.split())
        if not v:
            raise self.error(number, option, "needs a value")
        return v

    def items(self, number: int, option: str, value: str) -> list[str]:
        return [v for v in value.replace(",", " ").split() if v]

    def key_value(self, number: int, option: str, value: str, secret: bool) -> bytes:
        v = "".join(value.split())
        raw = _key(v)
        if raw is None:
            shown = "" if secret else f": {v[:60]!r}"
            raise self.error(number, option, "not a WireGuard key (the base64 of exactly "
                             "32 bytes: 44 characters ending in '=', as wg genkey prints)"
                             + shown)
        return raw

    def number(self, number: int, option: str, value: str, low: int, high: int) -> int:
        v = self.single(number, option, value)
        if not v.isascii() or not v.isdigit() or int(v) < low or int(v) > high:
            raise self.error(number, option, f"must be a number from {low} to {high}, "
                             f"not {v[:40]!r}")
        return int(v)

    # -- [Interface] -----------------------------------------------------------------
    def opt_privatekey(self, number: int, option: str, value: str) -> None:
        raw = self.key_value(number, option, value, secret=True)
        if raw == bytes(KEY_LEN):
            raise self.error(number, option, "is all zeros (wg reads that as no key)")
        self.private_key, self.private_line = raw, number

    def opt_address(self, number: int, option: str, value: str) -> None:
        entries = self.items(number, option, value)
        if not entries:
            raise self.error(number, option, "needs an address (ADDRESS[/PREFIX])")
        for item in entries:
            try:
                iface = ipaddress.ip_interface(item)
            except ValueError:
                self.fail(number, option, f"not an IPv4 or IPv6 address with an optional "
                          f"/prefix: {item[:60]!r}")
                continue
            if iface in self.address_set:
                self.warn(number, option, f"{iface} is given twice")
                continue
            self.address_set.add(iface)
            self.addresses.append(iface)

    def opt_dns(self, number: int, option: str, value: str) -> None:
        for item in self.items(number, option, value):
            if _DNS_ADDRESS.match(item):
                try:
                    self.dns.append(ipaddress.ip_address(item))
                except ValueError:
                    self.fail(number, option, f"not an IPv4 or IPv6 address: {item[:60]!r}")
                continue
            name = item[:-1] if item.endswith(".") else item
            if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
                self.fail(number, option, f"neither an address nor a search domain: "
                          f"{item[:60]!r}")
                continue
            self.dns_search.append(name)

    def opt_mtu(self, number: int, option: str, value: str) -> None:
        self.mtu = self.number(number, option, value, 576, 65535)
        self.mtu_line = number

    def opt_listenport(self, number: int, option: str, value: str) -> None:
        self.listen_port = self.number(number, option, value, 0, 65535)

    # -- [Peer] ----------------------------------------------------------------------
    def opt_publickey(self, number: int, option: str, value: str) -> None:
        self.peers[-1]["key_given"] = True
        self.peers[-1]["public_key"] = (self.key_value(number, option, value, secret=False),
                                        number)

    def opt_presharedkey(self, number: int, option: str, value: str) -> None:
        self.peers[-1]["psk"] = self.key_value(number, option, value, secret=True)

    def opt_endpoint(self, number: int, option: str, value: str) -> None:
        v = self.single(number, option, value)
        if v.startswith("["):
            host, close, rest = v[1:].partition("]")
            if not close or not rest.startswith(":") or len(rest) == 1:
                raise self.error(number, option, f"not [IPv6]:PORT: {v[:80]!r}")
            port_text = rest[1:]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise self.error(number, option, f"not an IPv6 address in brackets: "
                                 f"{host[:60]!r}") from None
        else:
            host, colon, port_text = v.rpartition(":")
            if not colon or not host or not port_text:
                raise self.error(number, option, f"not HOST:PORT: {v[:80]!r}")
            if ":" in host:               # config.c splits at the last colon too
                try:
                    ipaddress.IPv6Address(host)
                except ValueError:
                    raise self.error(number, option, "an IPv6 endpoint is written "
                                     f"[ADDRESS]:PORT: {v[:80]!r}") from None
            elif not _is_host(host):
                raise self.error(number, option, f"not a host name or address: "
                                 f"{host[:60]!r}")
        if not port_text.isascii() or not port_text.isdigit() or \
                not 1 <= int(port_text) <= 65535:
            raise self.error(number, option, f"the port must be a number from 1 to 65535, "
                             f"not {port_text[:20]!r}")
        self.peers[-1]["endpoint"] = (host, int(port_text))

    def opt_allowedips(self, number: int, option: str, value: str) -> None:
        for item in self.items(number, option, value):
            if item[0] in "+-":
                self.fail(number, option, f"{item[:60]!r}: +/- entries change a running "
                          "interface (wg set), they have no place in a profile")
                continue
            try:
                net = ipaddress.ip_network(item, strict=False)
            except ValueError:
                self.fail(number, option, f"not an IPv4 or IPv6 network "
                          f"(ADDRESS[/PREFIX]): {item[:60]!r}")
                continue
            if ipaddress.ip_interface(item).ip != net.network_address:
                self.warn(number, option, f"{item} has host bits set: it means {net}")
            self.peers[-1]["allowed"].append((net, number))

    def opt_persistentkeepalive(self, number: int, option: str, value: str) -> None:
        v = self.single(number, option, value)
        if v.lower() == "off":
            self.peers[-1]["keepalive"] = None
            return
        n = self.number(number, option, value, 0, 65535)
        self.peers[-1]["keepalive"] = n or None

    # -- the whole -------------------------------------------------------------------
    def finish(self) -> WgProfile | None:
        if not self.interface_seen:
            self.fail(None, None, "no [Interface] section")
        elif self.private_key is None and not any(
                e.option == "PrivateKey" for e in self.problems):
            self.fail(None, "PrivateKey", "missing from [Interface]")
        if self.interface_seen and not self.addresses and not any(
                e.option == "Address" for e in self.problems):
            self.fail(None, "Address", "missing from [Interface]: erebus needs the "
                      "tunnel address(es) the server gave this client")
        if self.mtu is not None and self.mtu < 1280 and any(
                a.version == 6 for a in self.addresses):
            self.fail(self.mtu_line, "MTU", f"{self.mtu} is below 1280, the least IPv6 "
                      "needs (RFC 8200), and Address has an IPv6 address")
        ours = public_key_of(self.private_key) if self.private_key else None
        peers, lines, owners = [], [], {}
        by_key: dict[bytes, int] = {}
        for p in self.peers:
            if p["public_key"] is None:
                if not p.get("key_given"):
                    self.fail(p["line"], "PublicKey", "this [Peer] has no PublicKey")
                continue
            key, key_line = p["public_key"]
            if key in by_key:
                self.fail(key_line, "PublicKey", f"the same peer as the [Peer] at line "
                          f"{by_key[key]}: a public key may appear once")
                continue
            by_key[key] = p["line"]
            if key == ours:
                self.fail(key_line, "PublicKey", "is this interface's own public key "
                          "(the PrivateKey's): a peer is the other end")
                continue
            if p["endpoint"] is None:
                self.warn(p["line"], "Endpoint", "this [Peer] has none: erebus is the "
                          "client, so it can only be reached after it has contacted us")
            allowed, given = [], set()
            for net, line in p["allowed"]:
                if net in given:
                    continue
                given.add(net)
                if net in owners:
                    self.warn(line, "AllowedIPs", f"{net} is also the [Peer] at line "
                              f"{owners[net]}'s: this later peer gets it (as in wg)")
                owners[net] = p["line"]
                allowed.append(net)
            if not allowed:
                self.warn(p["line"], "AllowedIPs", "this [Peer] has none: nothing is sent "
                          "to it and nothing it sends is accepted")
            peers.append(WgPeerConfig(key, p["psk"], p["endpoint"], tuple(allowed),
                                      p["keepalive"]))
            lines.append(p["line"])
        if self.interface_seen and not self.peers:
            self.fail(None, "Peer", "no [Peer] section: nothing to connect to")
        elif peers and all(p.endpoint is None for p in peers):
            self.fail(lines[0], "Endpoint", "no [Peer] has an Endpoint: erebus is the "
                      "client and could never connect")
        if self.problems:
            return None
        interface = WgInterfaceConfig(self.private_key, tuple(self.addresses),
                                      tuple(self.dns), tuple(self.dns_search), self.mtu,
                                      self.listen_port)
        return WgProfile(self.path, interface, tuple(peers), tuple(self.warnings),
                         tuple(lines))


def _is_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def _problem_order(e: ConfigError):
    return (e.line is None, e.line or 0)        # by line; the whole file's last, as .ovpn


def parse_wg_profile(text: str, path: str = "<profile>") -> WgReading:
    """Read a profile's text: every problem and warning in one pass; never raises."""
    reader = _Reader(path)
    reader.feed(text)
    profile = reader.finish()
    problems = sorted(reader.problems, key=_problem_order)
    return WgReading(path, profile, problems, reader.warnings)


def read_wg_profile(path: str) -> WgReading:
    """Read the profile file ``path`` offline and report everything; never raises for
    the profile's own problems."""
    try:
        raw = read_limited(path, private=True)
    except OSError as exc:
        problem = ConfigError(f"cannot read the profile: {exc.strerror or exc}", path=path)
        return WgReading(path, None, [problem], [])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problem = ConfigError("not valid UTF-8", path=path, line=line)
        return WgReading(path, None, [problem], [])
    return parse_wg_profile(text, path)


def load_wg_profile(path: str, *, log_warnings: bool = True) -> WgProfile:
    """The profile at ``path``; :class:`WgProfileError` lists every problem.  Its
    warnings are logged unless ``log_warnings`` is false (they are in
    ``profile.warnings``)."""
    reading = read_wg_profile(path)
    if reading.problems:
        raise WgProfileError(reading.problems)
    if log_warnings:
        for warning in reading.warnings:
            log.warning("%s", warning)
    return reading.profile
