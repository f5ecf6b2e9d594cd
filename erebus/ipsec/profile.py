"""ESP profiles: manually keyed SAs in TOML.

::

    [ipsec]
    peer = "198.18.1.1:4600"          # UDP address of the ESP peer (port: 4500 if left out)
    local_ip = "198.19.11.2"          # our inner (virtual) address ("/prefix" allowed)
    remote_ts = ["198.19.20.0/24"]    # what the tunnel reaches (IPv4 and IPv6 networks)
    # optional:
    local_ip6 = "2001:2:0:11::2/64"   # our inner IPv6 address (prefix length: 128 if
                                      # left out): IPv6 packets go through the tunnel
    dns = ["198.19.20.53"]            # DNS servers of either family, through the tunnel
    mtu = 1400                        # inner MTU
    replay_window = 64                # packets of anti-replay window (0 turns it off: never
                                      # do that on a real network)
    esn = false                       # 64-bit extended sequence numbers, both SAs
    lifetime_packets = 1000000        # hard limits per SA; the session ends there
    lifetime_bytes = 1000000000
    local_port = 0                    # our UDP port (0: any)
    keepalive = 20                    # NAT keepalive after S quiet seconds (0: none)
    connect_timeout = 10
    allow_static_aead = false         # AES-GCM / ChaCha20-Poly1305 with these manual keys

    [ipsec.outbound]                  # our packets to the peer
    spi = 0x00001001
    transform = "aes256gcm16"         # see erebus.ipsec.transforms
    key = "hex"                       # AES-GCM: key followed by the 4-byte salt

    [ipsec.inbound]                   # the peer's packets to us
    spi = 0x00002002
    transform = "aes256-sha256"
    key = "hex"
    integrity_key = "hex"             # CBC + HMAC transforms

Unknown keys are refused (a typo must not pass silently), and so are the same
keying material in both directions (our own packets reflected back would then
authenticate, and an AEAD nonce could repeat).

AEAD transforms (AES-GCM, ChaCha20-Poly1305) are refused with manual keys unless
``allow_static_aead = true``: RFC 4106 section 8.1 forbids statically keyed GCM and
RFC 7634 the same for ChaCha20-Poly1305, because an end that restarts with the same
keys counts its sequence numbers, and so its nonces, from 1 again, and a repeated
nonce gives away the keystream and the authentication key.  With the opt-in the
profile loads with a warning.  Every error is a
:class:`erebus.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..files import read_limited
from ..wire.esp import NAT_T_PORT
from .esp import KEEPALIVE_INTERVAL, EspSession, SecurityAssociation
from .transforms import TRANSFORMS, Transform

__all__ = ["EspProfile", "SaConfig", "load_esp_profile", "parse_esp_profile"]

log = logging.getLogger("erebus.ipsec")

_TOP_KEYS = {"peer", "local_ip", "local_ip6", "remote_ts", "dns", "mtu", "replay_window", "esn",
             "lifetime_packets", "lifetime_bytes", "local_port", "keepalive",
             "connect_timeout", "allow_static_aead", "outbound", "inbound"}
_SA_KEYS = {"spi", "transform", "key", "integrity_key"}
_HEX_SEPARATORS = re.compile(r"[\s:]")


@dataclass(slots=True)
class SaConfig:
    spi: int
    transform: Transform
    key: bytes = field(repr=False)
    integrity_key: bytes = field(default=b"", repr=False)


@dataclass(slots=True)
class EspProfile:
    path: str
    peer_host: str
    peer_port: int
    local_ip: str
    netmask: str
    remote_ts: list[str]
    outbound: SaConfig
    inbound: SaConfig
    dns: list[str] = field(default_factory=list)
    mtu: int = 1400
    replay_window: int = 64
    esn: bool = False
    lifetime_packets: int | None = None
    lifetime_bytes: int | None = None
    local_port: int = 0
    keepalive: float = KEEPALIVE_INTERVAL
    connect_timeout: float = 10.0
    allow_static_aead: bool = False
    local_ip6: str | None = None                        # our IPv6 address, if any
    prefix6: int | None = None                          # its prefix length
    warnings: list[str] = field(default_factory=list)   # "FILE: option: text" lines

    @property
    def peer(self) -> str:
        return f"{self.peer_host}:{self.peer_port}"

    def security_associations(self, *, rng=os.urandom
                              ) -> tuple[SecurityAssociation, SecurityAssociation]:
        """New (outbound, inbound) SAs for this profile; ``rng`` gives their IVs."""
        limits = dict(esn=self.esn, lifetime_packets=self.lifetime_packets,
                      lifetime_bytes=self.lifetime_bytes, rng=rng)
        o, i = self.outbound, self.inbound
        return (SecurityAssociation(o.spi, o.transform, o.key, o.integrity_key, **limits),
                SecurityAssociation(i.spi, i.transform, i.key, i.integrity_key,
                                    replay_window=self.replay_window, **limits))

    def new_session(self, now: float, *, rng=os.urandom) -> EspSession:
        out, inb = self.security_associations(rng=rng)
        return EspSession(out, inb, local_ip=self.local_ip, local_ip6=self.local_ip6,
                          remote_ts=self.remote_ts, now=now,
                          keepalive_interval=self.keepalive or None)


def load_esp_profile(path: str | Path, *, log_warnings: bool = True) -> EspProfile:
    """Read and check an ESP profile (TOML, ``[ipsec]`` table); its warnings are
    logged unless ``log_warnings`` is false (they are in ``profile.warnings``)."""
    path = str(path)
    try:
        data = tomllib.loads(read_limited(path).decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the profile: {exc.strerror or exc}", path=path) \
            from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not valid TOML: not UTF-8 ({exc.reason} at byte {exc.start})",
                          path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from None
    except RecursionError:          # tomllib reads nested arrays and tables recursively
        raise ConfigError("not valid TOML: arrays or tables nested too deeply",
                          path=path) from None
    profile = parse_esp_profile(data, path)
    if log_warnings:
        for warning in profile.warnings:
            log.warning("%s", warning)
    return profile


def parse_esp_profile(data: dict, path: str = "<profile>") -> EspProfile:
    """Check a profile already parsed from TOML."""

    def fail(option: str, message: str):
        raise ConfigError(message, path=path, option=option)

    ipsec = data.get("ipsec")
    if not isinstance(ipsec, dict):
        raise ConfigError("no [ipsec] table", path=path)
    unknown = sorted(set(ipsec) - _TOP_KEYS)
    if unknown:
        fail(f"ipsec.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    others = sorted(set(data) - {"ipsec"})
    if others:
        fail(others[0], "unknown table or key outside [ipsec]")

    def required(key: str):
        if key not in ipsec:
            fail(f"ipsec.{key}", "missing")
        return ipsec[key]

    def integer(key: str, default, low: int, high: int | None = None):
        value = ipsec.get(key, default)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < low \
                or (high is not None and value > high):
            fail(f"ipsec.{key}", f"must be an integer from {low}"
                 + (f" to {high}" if high is not None else " up") + f", not {value!r}")
        return value

    def number(key: str, default: float, low: float) -> float:
        value = ipsec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            fail(f"ipsec.{key}", f"must be a number >= {low:g}, not {value!r}")
        return float(value)

    def address(option: str, value) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except (ValueError, TypeError):
            fail(option, f"not an IPv4 or IPv6 address: {value!r}")

    # peer
    peer = required("peer")
    if not isinstance(peer, str) or not peer.strip():
        fail("ipsec.peer", f"must be \"HOST:PORT\", not {peer!r}")
    host, sep, port_text = peer.strip().rpartition(":")
    if not sep:
        host, port_text = peer.strip(), str(NAT_T_PORT)
    if not host or not (port_text.isascii() and port_text.isdigit()) \
            or not 0 < int(port_text) < 65536:
        fail("ipsec.peer", f"must be \"HOST:PORT\" with a port from 1 to 65535, not {peer!r}")
    peer_port = int(port_text)

    # our address and the selectors
    local = required("local_ip")
    if not isinstance(local, str):
        fail("ipsec.local_ip", f"must be an IPv4 address, not {local!r}")
    try:
        iface = ipaddress.IPv4Interface(local)
    except ValueError:
        fail("ipsec.local_ip", f"not an IPv4 address: {local!r}")
    local_ip = str(iface.ip)
    netmask = str(iface.netmask)
    ts = required("remote_ts")
    if isinstance(ts, str):
        ts = [ts]
    if not isinstance(ts, list) or not ts:
        fail("ipsec.remote_ts", "must be a non-empty list of networks like \"198.19.20.0/24\"")
    remote_ts = []
    for item in ts:
        try:
            remote_ts.append(str(ipaddress.ip_network(item)))
        except (ValueError, TypeError) as exc:
            fail("ipsec.remote_ts", f"{item!r}: {exc}")
    warnings: list[str] = []
    local_ip6 = prefix6 = None
    if "local_ip6" in ipsec:
        value = ipsec["local_ip6"]
        try:
            if not isinstance(value, str):
                raise ValueError
            iface6 = ipaddress.IPv6Interface(value)
        except ValueError:
            fail("ipsec.local_ip6", f"not an IPv6 address (\"2001:db8::2/64\"): {value!r}")
        ip6 = iface6.ip
        if ip6.is_unspecified or ip6.is_multicast or ip6.is_loopback or ip6.is_link_local:
            fail("ipsec.local_ip6", f"{ip6} cannot be our address in the tunnel")
        local_ip6, prefix6 = str(ip6), iface6.network.prefixlen
        if not any(":" in n for n in remote_ts):
            warnings.append(f"{path}: ipsec.local_ip6: no IPv6 network in remote_ts: "
                            "nothing is reached over IPv6")
    elif any(":" in n for n in remote_ts):
        fail("ipsec.remote_ts", "an IPv6 network needs our IPv6 address: set local_ip6")
    dns_list = ipsec.get("dns", [])
    if isinstance(dns_list, str):
        dns_list = [dns_list]
    if not isinstance(dns_list, list):
        fail("ipsec.dns", "must be a list of IPv4 or IPv6 addresses")
    dns = [address("ipsec.dns", d) for d in dns_list]
    if local_ip6 is None and any(":" in d for d in dns):
        fail("ipsec.dns", "an IPv6 DNS server needs our IPv6 address: set local_ip6")

    # SAs
    def sa(direction: str) -> SaConfig:
        table = required(direction)
        where = f"ipsec.{direction}"
        if not isinstance(table, dict):
            fail(where, "must be a table ([ipsec." + direction + "])")
        unknown = sorted(set(table) - _SA_KEYS)
        if unknown:
            fail(f"{where}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_SA_KEYS))})")
        for key in ("spi", "transform", "key"):
            if key not in table:
                fail(f"{where}.{key}", "missing")
        spi = table["spi"]
        if isinstance(spi, str):
            try:
                spi = int(spi, 0)
            except ValueError:
                fail(f"{where}.spi", f"not a number: {spi!r}")
        if not isinstance(spi, int) or isinstance(spi, bool) or not 256 <= spi <= 0xFFFFFFFF:
            fail(f"{where}.spi", f"must be from 0x100 to 0xffffffff (0-255 are reserved), "
                 f"not {spi!r}")
        name = table["transform"]
        transform = TRANSFORMS.get(name.lower()) if isinstance(name, str) else None
        if transform is None:
            fail(f"{where}.transform", f"unknown transform {name!r} (known: "
                 f"{', '.join(TRANSFORMS)})")
        key = _hex(table["key"], f"{where}.key", fail)
        if len(key) != transform.key_len:
            what = (f"{transform.key_len - 4}-byte key followed by the 4-byte salt"
                    if transform.aead else f"{transform.key_len}-byte key")
            fail(f"{where}.key", f"{transform.name} needs {transform.key_len} bytes ({what}),"
                 f" not {len(key)}")
        integrity = b""
        if transform.aead:
            if "integrity_key" in table:
                fail(f"{where}.integrity_key", f"{transform.name} is an AEAD: it has no "
                     "integrity key")
        else:
            if "integrity_key" not in table:
                fail(f"{where}.integrity_key", f"missing ({transform.name} needs a "
                     f"{transform.integrity_key_len}-byte HMAC key)")
            integrity = _hex(table["integrity_key"], f"{where}.integrity_key", fail)
            if len(integrity) != transform.integrity_key_len:
                fail(f"{where}.integrity_key", f"{transform.name} needs "
                     f"{transform.integrity_key_len} bytes, not {len(integrity)}")
        return SaConfig(spi, transform, key, integrity)

    outbound = sa("outbound")
    inbound = sa("inbound")
    if outbound.key == inbound.key or (outbound.integrity_key
                                       and outbound.integrity_key == inbound.integrity_key):
        fail("ipsec.inbound.key", "the same key as ipsec.outbound: use a different key in "
             "each direction")

    esn = ipsec.get("esn", False)
    if not isinstance(esn, bool):
        fail("ipsec.esn", f"must be true or false, not {esn!r}")
    allow_static_aead = ipsec.get("allow_static_aead", False)
    if not isinstance(allow_static_aead, bool):
        fail("ipsec.allow_static_aead", f"must be true or false, not {allow_static_aead!r}")
    for direction, sa_config in (("outbound", outbound), ("inbound", inbound)):
        name = sa_config.transform.name
        if not sa_config.transform.aead:
            continue
        option = f"ipsec.{direction}.transform"
        rfc = "RFC 7634" if name.startswith("chacha") else "RFC 4106 section 8.1"
        if not allow_static_aead:
            fail(option, f"{name} with manual keys is forbidden by {rfc}: an end that "
                 "restarts with the same keys repeats its nonces, which gives away the "
                 "keystream and the authentication key; use a CBC + HMAC transform (e.g. "
                 "aes256-sha256) or IKEv2 (swanctl.conf), or set allow_static_aead = true "
                 "in [ipsec] to take that risk")
        warnings.append(f"{path}: {option}: {name} with manual keys (allow_static_aead = "
                        f"true), which {rfc} forbids: every start of either end with these "
                        "keys repeats the nonces of the last one; use them for one session, "
                        "then give both ends new keys")
    return EspProfile(
        path=path, peer_host=host.strip("[]"), peer_port=peer_port, local_ip=local_ip,
        netmask=netmask, remote_ts=remote_ts, outbound=outbound, inbound=inbound, dns=dns,
        mtu=integer("mtu", 1400, 576, 9000),
        replay_window=integer("replay_window", 64, 0, 1 << 16),
        esn=esn,
        lifetime_packets=integer("lifetime_packets", None, 1),
        lifetime_bytes=integer("lifetime_bytes", None, 1),
        local_port=integer("local_port", 0, 0, 65535),
        keepalive=number("keepalive", KEEPALIVE_INTERVAL, 0),
        connect_timeout=number("connect_timeout", 10.0, 0.1),
        allow_static_aead=allow_static_aead, local_ip6=local_ip6, prefix6=prefix6,
        warnings=warnings)


def _hex(value, option: str, fail) -> bytes:
    if not isinstance(value, str):
        fail(option, f"must be a hex string, not {value!r}")
    text = _HEX_SEPARATORS.sub("", value)
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        fail(option, "not a hex string")
