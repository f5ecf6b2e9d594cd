"""What a ``.ovpn`` profile says, in the terms erebus uses: :class:`Profile` and its
:class:`Remote` servers, built by the reader (:mod:`erebus.openvpn.reader`), and
:class:`ProfileError`, every problem the reader found at once.  The TLS layer's view
of a profile is in :mod:`erebus.openvpn.tlssettings`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigProblems
from .mtu import MssFix

__all__ = ["DEFAULT_DATA_CIPHERS", "KU_REQUIRED", "OuterProxy", "Remote", "Ignored",
           "Profile", "ProfileError"]

DEFAULT_DATA_CIPHERS = ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]
KU_REQUIRED = "required"       # remote-cert-ku without values: the extension must be there


@dataclass(frozen=True, slots=True)
class OuterProxy:
    """The proxy a remote is reached through: ``http-proxy`` (CONNECT, TCP only) or
    ``socks-proxy`` (SOCKS5: CONNECT for TCP, UDP ASSOCIATE for UDP).  The password
    is never in a repr, a log line or ``erebus check``'s report."""

    kind: str                       # "http" or "socks"
    host: str
    port: int
    line: int | None = None         # the line of the http-proxy / socks-proxy option
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth: str = "none"              # http: "none", "basic", "auto" (after a 407), "auto-nct"
    http_version: str = "1.0"       # http-proxy-option VERSION (2.6's default)
    agent: str | None = None        # http-proxy-option AGENT
    headers: tuple[tuple[str, str], ...] = ()      # http-proxy-option CUSTOM-HEADER

    @property
    def name(self) -> str:
        what = "HTTP proxy" if self.kind == "http" else "SOCKS proxy"
        return f"{what} {self.host}:{self.port}"


@dataclass(slots=True)
class Remote:
    host: str
    port: int
    proto: str          # "udp" or "tcp-client"
    line: int | None = None                 # the line of the 'remote' option
    connection: int | None = None           # the line of its <connection> block, if any
    connect_timeout: int | None = None
    connect_retry: tuple[int, int] | None = None
    explicit_exit_notify: int | None = None
    tun_mtu: int | None = None
    proxy: OuterProxy | None = None         # http-proxy / socks-proxy
    mssfix: MssFix | None = None            # its mssfix (None: the profile's)
    family: str | None = None               # "ipv4" (udp4, tcp4...), "ipv6" (udp6,
                                            # tcp6...); None: the addresses of both
                                            # families, in getaddrinfo's order (2.6)

    @property
    def proto_word(self) -> str:
        """The protocol as 2.6 spells it: udp, udp6, tcp4-client ..."""
        digit = {"ipv4": "4", "ipv6": "6"}.get(self.family, "")
        if self.proto == "udp":
            return "udp" + digit
        return f"tcp{digit}-client"


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
    remote_cert_ku: tuple[int, ...] | str | None = None   # values, or KU_REQUIRED
    remote_cert_eku: str | None = None
    ns_cert_type: str | None = None
    crl: bytes | None = None
    crl_dir: str | None = None           # crl-verify DIR dir (a path, checked per handshake)
    capath: str | None = None            # capath DIR (its files read by castore)
    capath_certs: list[bytes] = field(default_factory=list)    # DER, from capath
    capath_crls: list[bytes] = field(default_factory=list)     # DER, from capath
    verify_hash: list[bytes] = field(default_factory=list)     # peer-fingerprint / verify-hash
    verify_hash_depth: int = 0           # 0: peer-fingerprint; 1: verify-hash (the CA)
    verify_hash_algo: str = "SHA256"
    tls_groups: str | None = None
    tls_cert_profile: str | None = None
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
    credentials_given: tuple[str | None, str | None] | None = None   # from the profile,
                                         # before anything was asked (credentials.py)
    static_challenge: tuple[str, bool, str] | None = None   # TEXT, ECHO, scrv1 | concat
    auth_retry: str = "none"             # none | nointeract | interact
    auth_nocache: bool = False           # forget what was asked once a session sent it
    key_encrypted: bool = False          # the private key (or PKCS#12) needs a passphrase
    key_passphrase: str | None = None    # from askpass FILE (never printed)
    pkcs12: bytes | None = None          # a PKCS#12 bundle still locked by its passphrase
    ping: int | None = None
    ping_restart: int | None = None
    tun_mtu: int = 1500
    mssfix: MssFix = field(default_factory=MssFix)
    hand_window: int = 60
    connect_timeout: int = 120
    connect_retry: tuple[int, int] = (1, 300)
    connect_retry_max: int | None = None
    resolv_retry: int | None = None          # seconds; None: infinite (2.6's default)
    remote_random: bool = False
    remote_random_hostname: bool = False
    replay_window: int = 64
    compression: str | None = None
    allow_compression: str = "asym"
    explicit_exit_notify: int = 0
    reneg_sec: float | None = 3600.0
    reneg_bytes: int | None = None
    tls_wrap: str | None = None          # "tls-auth", "tls-crypt" or "tls-crypt-v2", if any
    tls_auth_key: bytes | None = None    # 256-byte OpenVPN static key
    tls_auth_direction: int | None = None
    tls_crypt_key: bytes | None = None
    tls_crypt_v2_key: bytes | None = None    # Kc, used as a tls-crypt key
    tls_crypt_v2_wkc: bytes | None = None    # WKc, the server's wrapping of Kc (opaque)
    static_key: bytes | None = None      # 'secret': static-key (pre-shared key) mode
    static_direction: int | None = None
    ifconfig: tuple[str, str] | None = None
    routes: list[tuple[str, str]] = field(default_factory=list)    # (network, netmask)
    dns: list[str] = field(default_factory=list)                    # dhcp-option DNS
    # IPv6 inside the tunnel: ifconfig-ipv6 (address, prefix length, the peer's end)
    # -- a static-key tunnel's, or a TLS client's until the server pushes one
    ifconfig_ipv6: tuple[str, int, str] | None = None
    routes_ipv6: list = field(default_factory=list)   # push.Route6 of route-ipv6 lines
    route_ipv6_gateway: str | None = None
    block_ipv6: bool = False
    pull_filters: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    tls_client: bool = False             # 'client' or 'tls-client' was given
    ignored: list[Ignored] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def tls_settings(self):
        """Everything the TLS layer checks, from this profile
        (:func:`erebus.openvpn.tlssettings.tls_settings`)."""
        from .tlssettings import tls_settings
        return tls_settings(self)

    def tls_context(self):
        """The one TLS context of a tunnel, built from this profile
        (:func:`erebus.openvpn.tlssettings.tls_context`)."""
        from .tlssettings import tls_context
        return tls_context(self)


class ProfileError(ConfigProblems):
    """Every problem found in a profile; reads as the first one."""
