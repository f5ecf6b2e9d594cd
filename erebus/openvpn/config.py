"""The ``.ovpn`` profile reader.

Lexing follows OpenVPN 2.6's ``read_config_file`` and ``parse_line`` (options.c):
a profile is read line by line (a line ends at ``\\n``; ``\\r`` is white space, so
CRLF, LF and mixed endings read alike; a UTF-8 BOM on the first line is skipped);
words split on white space; ``#`` or ``;`` where a word would start begins a
comment; double quotes group a word and allow the escapes ``\\\\``, ``\\"`` and
``\\ ``; single quotes group a word literally; a backslash outside single quotes
escapes the next character, and any other escape is an error, as it is for the
stock client.  A line of 256 bytes or more is an error (the stock client reads
lines into a 256-byte buffer and refuses longer ones); at most 16 words of a line
count.  An option may be written with a leading ``--``.  A line holding only
``<name>`` starts inline material that ends at the first line starting (after white
space) with ``</name>``.  ``<connection>`` blocks hold the per-connection options
the stock client allows there and become extra remotes, tried in order.

Every option OpenVPN 2.6 knows, and the ones it removed, are in :data:`OPTIONS`,
one :class:`OptionSpec` each: implemented, accepted and ignored (meaningless
without a TUN device; listed in :attr:`Profile.ignored`), refused with a reason,
or removed (refused the way 2.6 refuses it).  An option OpenVPN does not know is
an error, as it is for the stock client, unless ``ignore-unknown-option`` names
it, ``setenv opt`` precedes it or ``setenv FORWARD_COMPATIBLE 1`` was given.

The reader keeps going after an error: :func:`read_profile` returns every problem
it found, each as ``FILE:LINE: option: reason``; :func:`parse_profile` and
:func:`load_profile` raise a :class:`ProfileError` holding them all.  Reading is
offline: no name is resolved and no packet is sent.
"""

from __future__ import annotations

import base64
import binascii
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

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as _pkcs12

from ..errors import ConfigError, SessionError
from ..files import MAX_FILE_SIZE, read_limited
from .compress import Compression
from .data import AEAD_CIPHERS, CBC_CIPHERS, DIGESTS, normalize_cipher, normalize_digest
from .statickey import parse_static_key

log = logging.getLogger("erebus.config")

DEFAULT_DATA_CIPHERS = ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]

OPTION_LINE_SIZE = 256        # options.h: a line must be shorter than this (bytes)
MAX_PARMS = 16                # options.h: words of a line that count
MAX_CONFIG_DEPTH = 10         # read_config_file: nested 'config' includes
MAX_INCLUDED = 4 * MAX_FILE_SIZE    # bytes of all 'config' includes together (erebus' own)

# -- the option registry ------------------------------------------------------------------

IMPLEMENTED = "implemented"
IGNORED = "ignored"
REFUSED = "refused"
REMOVED = "removed"
CLASSES = (IMPLEMENTED, IGNORED, REFUSED, REMOVED)


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """What erebus does with one option, and the shape OpenVPN 2.6 gives it."""

    name: str
    min_args: int
    max_args: int | None          # None: any number
    kind: str                     # IMPLEMENTED, IGNORED, REFUSED or REMOVED
    reason: str                   # what erebus does, or why it ignores / refuses it
    inline: bool = False          # may be given as <name>...</name>
    connection: bool = False      # allowed inside a <connection> block
    unknown_to_26: bool = False   # REMOVED before 2.6: 2.6 calls it unknown
    windows: bool = False         # only the Windows build of the stock client knows it
    warning: str = ""             # what the stock client warns when it meets it


def _spec(name: str, args: str, kind: str, reason: str, flags: str = "",
          warning: str = "") -> OptionSpec:
    """``args``: "0", "1", "0-2", "1+" (at least one), "*" (any)."""
    if args == "*":
        lo, hi = 0, None
    elif args.endswith("+"):
        lo, hi = int(args[:-1]), None
    elif "-" in args:
        a, b = args.split("-")
        lo, hi = int(a), int(b)
    else:
        lo = hi = int(args)
    return OptionSpec(name, lo, hi, kind, reason, inline="i" in flags,
                      connection="c" in flags, unknown_to_26="u" in flags,
                      windows="w" in flags, warning=warning)


_NO_TUN = "erebus has no TUN device: nothing to configure"
_NO_ROUTES = "erebus never touches the host's routing table"
_NO_SCRIPTS = "erebus never runs scripts"
_PROCESS = "process management of the stock daemon; erebus is an ordinary process"
_LOGGING = "erebus logs to standard error (-v / -vv)"
_MGMT = "erebus has no management interface"
_SERVER = "a server option; erebus is a client"
_INSTANCE = ("valid only in a server's client-config-dir or pushed; the stock client "
             "refuses it in a profile")
_STANDALONE = "a standalone command of the stock client, not a connection setting"
_WINDOWS = "configures the Windows TAP adapter or its DNS; erebus touches neither"
_SOCKET = "socket tuning handled by erebus's own defaults"
_MTU_INFO = "erebus's own stack uses the MTU the server pushes (tun-mtu)"
_PROXY_LATER = "connecting through a proxy is not supported yet"

_REGISTRY: list[OptionSpec] = [
    # -- where to connect
    _spec("remote", "1-3", IMPLEMENTED, "servers tried in order (HOST [PORT [PROTO]])", "c"),
    _spec("proto", "1", IMPLEMENTED, "udp or tcp-client (IPv4); IPv6 transport is refused",
          "c"),
    _spec("port", "1", IMPLEMENTED, "the default port of remotes without their own", "c"),
    _spec("rport", "1", IMPLEMENTED, "the default port of remotes without their own", "c"),
    _spec("connection", "1-2", IMPLEMENTED, "<connection> blocks: extra remotes tried in "
          "order, each with its own connection options", "i"),
    _spec("remote-random", "0", IMPLEMENTED, "remotes shuffled when the profile is read"),
    _spec("remote-random-hostname", "0", IMPLEMENTED, "stored (Profile."
          "remote_random_hostname): the runtime prepends a random label to names"),
    _spec("connect-retry", "1-2", IMPLEMENTED, "stored: wait between tries, and its "
          "maximum (Profile.connect_retry)", "c"),
    _spec("connect-retry-max", "1", IMPLEMENTED, "stored (Profile.connect_retry_max)", "c"),
    _spec("connect-timeout", "1", IMPLEMENTED, "how long one try of a remote may take", "c"),
    _spec("server-poll-timeout", "1", IMPLEMENTED, "alias of connect-timeout", "c"),
    _spec("resolv-retry", "1", IGNORED, "names are resolved again on every try"),
    _spec("preresolve", "0-1", IGNORED, "names are resolved when a remote is tried"),
    _spec("ip-remote-hint", "0-1", IGNORED, "names are resolved when a remote is tried"),
    _spec("nobind", "0", IGNORED, "erebus never binds a fixed local port", "c"),
    _spec("bind", "0-1", IGNORED, "erebus lets the system choose the local address", "c"),
    _spec("local", "1", IGNORED, "erebus lets the system choose the local address", "c"),
    _spec("lport", "1", IGNORED, "erebus lets the system choose the local port", "c"),
    _spec("float", "0", IGNORED, "erebus talks to the address it connected to", "c"),
    _spec("proto-force", "1", REFUSED, "forcing one protocol over the remotes' own is not "
          "supported"),
    _spec("http-proxy", "1-4", REFUSED, _PROXY_LATER + " (HTTP proxy)", "c"),
    _spec("socks-proxy", "1-3", REFUSED, _PROXY_LATER + " (SOCKS proxy)", "c"),
    _spec("http-proxy-user-pass", "1+", IGNORED, "only used with http-proxy, which is "
          "refused", "i"),
    _spec("http-proxy-option", "1-3", IGNORED, "only used with http-proxy, which is "
          "refused", "c"),
    _spec("http-proxy-timeout", "1", IGNORED, "only used with http-proxy, which is refused",
          "c"),
    _spec("http-proxy-retry", "*", IGNORED, "deprecated; only used with a proxy", "c",
          warning="DEPRECATED OPTION: http-proxy-retry and socks-proxy-retry"),
    _spec("socks-proxy-retry", "*", IGNORED, "deprecated; only used with a proxy", "c",
          warning="DEPRECATED OPTION: http-proxy-retry and socks-proxy-retry"),
    _spec("http-proxy-override", "2-3", REFUSED, _PROXY_LATER + " (" + _MGMT + ")"),
    # -- device and addresses
    _spec("dev", "1", IMPLEMENTED, "tun only (erebus is layer 3); tap is refused"),
    _spec("dev-type", "1", IMPLEMENTED, "tun only; tap is refused"),
    _spec("dev-node", "1", IGNORED, _NO_TUN),
    _spec("disable-dco", "*", IGNORED, "erebus never uses the kernel's data channel "
          "offload"),
    _spec("windows-driver", "1", IGNORED, _WINDOWS, "w"),
    _spec("lladdr", "1", IGNORED, _NO_TUN),
    _spec("topology", "1", IGNORED, "erebus reads the address the server pushes whatever "
          "the topology"),
    _spec("tun-ipv6", "0", IGNORED, "obsolete", warning="Note: option tun-ipv6 is ignored "
          "because modern operating systems do not need special IPv6 tun handling anymore."),
    _spec("ifconfig", "2", IMPLEMENTED, "addresses of a static-key tunnel (ignored "
          "otherwise: the server pushes them)"),
    _spec("ifconfig-ipv6", "2", IGNORED, "erebus's stack is IPv4 only"),
    _spec("ifconfig-noexec", "0", IGNORED, _NO_TUN),
    _spec("ifconfig-nowarn", "0", IGNORED, _NO_TUN),
    _spec("iproute", "1", IGNORED, _NO_ROUTES),
    _spec("txqueuelen", "1", IGNORED, _NO_TUN),
    _spec("mktun", "0", REFUSED, _STANDALONE),
    _spec("rmtun", "0", REFUSED, _STANDALONE),
    _spec("persist-tun", "0", IGNORED, _NO_TUN),
    _spec("persist-key", "0", IGNORED, "keys are read once, when the profile is read"),
    _spec("persist-local-ip", "0", IGNORED, "erebus lets the system choose the local "
          "address"),
    _spec("persist-remote-ip", "0", IGNORED, "names are resolved again on every try"),
    # -- routes and DNS of the host
    _spec("route", "1-4", IMPLEMENTED, "routes into a static-key tunnel; " + _NO_ROUTES),
    _spec("route-ipv6", "1-3", IGNORED, _NO_ROUTES),
    _spec("route-gateway", "1", IGNORED, _NO_ROUTES),
    _spec("route-ipv6-gateway", "1", IGNORED, _NO_ROUTES),
    _spec("route-metric", "1", IGNORED, _NO_ROUTES),
    _spec("route-delay", "0-2", IGNORED, _NO_ROUTES),
    _spec("route-noexec", "0", IGNORED, _NO_ROUTES),
    _spec("route-nopull", "0", IGNORED, _NO_ROUTES),
    _spec("route-method", "1", IGNORED, _WINDOWS, "w"),
    _spec("max-routes", "0-1", IGNORED, "obsolete", warning="DEPRECATED OPTION: "
          "--max-routes option ignored."),
    _spec("redirect-gateway", "*", IGNORED, _NO_ROUTES),
    _spec("redirect-private", "*", IGNORED, _NO_ROUTES),
    _spec("block-ipv6", "0", IGNORED, _NO_ROUTES),
    _spec("client-nat", "4", IGNORED, _NO_ROUTES),
    _spec("allow-recursive-routing", "0", IGNORED, _NO_ROUTES),
    _spec("allow-pull-fqdn", "0", IGNORED, _NO_ROUTES),
    _spec("pull-filter", "2", IGNORED, "erebus uses only the pushed options it needs"),
    _spec("dhcp-option", "1+", IMPLEMENTED, "DNS servers kept for names resolved through "
          "the tunnel; the host's DNS is never changed"),
    _spec("dns", "1+", IGNORED, "the host's DNS is never changed"),
    _spec("block-outside-dns", "0", IGNORED, _WINDOWS, "w"),
    _spec("register-dns", "0", IGNORED, _WINDOWS, "w"),
    _spec("ip-win32", "1-3", IGNORED, _WINDOWS, "w"),
    _spec("tap-sleep", "1", IGNORED, _WINDOWS, "w"),
    _spec("dhcp-renew", "0", IGNORED, _WINDOWS, "w"),
    _spec("dhcp-pre-release", "0", IGNORED, _WINDOWS, "w"),
    _spec("dhcp-release", "0", IGNORED, _WINDOWS, "w", warning="Obsolete option "
          "--dhcp-release detected. This is now on by default"),
    _spec("dhcp-internal", "1", REFUSED, _STANDALONE, "w"),
    _spec("rdns-internal", "0", REFUSED, _STANDALONE, "w"),
    _spec("win-sys", "1", IGNORED, _WINDOWS, "w"),
    _spec("allow-nonadmin", "0-1", REFUSED, _STANDALONE, "w"),
    _spec("show-adapters", "0", REFUSED, _STANDALONE, "w"),
    _spec("show-net", "0", REFUSED, _STANDALONE, "w"),
    _spec("show-valid-subnets", "0", REFUSED, _STANDALONE, "w"),
    _spec("show-net-up", "0", IGNORED, _WINDOWS, "w"),
    _spec("pause-exit", "0", IGNORED, _WINDOWS, "w"),
    _spec("service", "1-2", IGNORED, _WINDOWS, "w"),
    # -- MTU and framing
    _spec("tun-mtu", "1-2", IMPLEMENTED, "the inner MTU until the server pushes one", "c"),
    _spec("tun-mtu-max", "1-2", IGNORED, _MTU_INFO, "c"),
    _spec("tun-mtu-extra", "1", IGNORED, "only meaningful for tap devices", "c"),
    _spec("link-mtu", "1", IGNORED, _MTU_INFO, "c"),
    _spec("udp-mtu", "1", IGNORED, _MTU_INFO, "c"),
    _spec("max-packet-size", "1", IGNORED, _MTU_INFO, "c"),
    _spec("mssfix", "0-2", IGNORED, "erebus's TCP chooses its own segment size", "c"),
    _spec("mtu-disc", "1", IGNORED, _SOCKET, "c"),
    _spec("mtu-test", "0", IGNORED, "an MTU test at start-up is not done"),
    _spec("fragment", "1-2", REFUSED, "internal fragmentation changes the data channel "
          "format and is not supported", "c"),
    _spec("mtu-dynamic", "*", REMOVED, "replaced by --fragment; OpenVPN 2.6 refuses it",
          "c"),
    # -- socket and timers
    _spec("sndbuf", "1", IGNORED, _SOCKET),
    _spec("rcvbuf", "1", IGNORED, _SOCKET),
    _spec("socket-flags", "*", IGNORED, _SOCKET),
    _spec("tcp-nodelay", "0", IGNORED, "erebus always sets TCP_NODELAY on a TCP link"),
    _spec("fast-io", "0", IGNORED, _SOCKET),
    _spec("mark", "1", IGNORED, _SOCKET),
    _spec("bind-dev", "1+", IGNORED, _SOCKET),
    _spec("multihome", "0", IGNORED, _SOCKET),
    _spec("passtos", "0-1", IGNORED, _SOCKET),
    _spec("shaper", "1", REFUSED, "traffic shaping is not supported"),
    _spec("keepalive", "2", IMPLEMENTED, "ping and ping-restart"),
    _spec("ping", "1", IMPLEMENTED, "keepalive pings through the tunnel"),
    _spec("ping-restart", "1", IMPLEMENTED, "a new session when the server goes quiet"),
    _spec("ping-exit", "1", IGNORED, "erebus reconnects instead (ping-restart)"),
    _spec("ping-timer-rem", "0", IGNORED, "erebus's timers run whether or not a peer "
          "answered"),
    _spec("inactive", "1-2", IGNORED, "erebus stays up until it is told to stop"),
    _spec("session-timeout", "1", IGNORED, "erebus stays up until it is told to stop"),
    _spec("explicit-exit-notify", "0-1", IMPLEMENTED, "tells the server when erebus "
          "leaves", "c"),
    # -- process, logging and management
    _spec("daemon", "0-1", IGNORED, _PROCESS),
    _spec("cd", "1", IMPLEMENTED, "file names in the profile are relative to this folder "
          "(itself relative to the profile's)"),
    _spec("chroot", "1", IGNORED, _PROCESS),
    _spec("setcon", "1", IGNORED, _PROCESS),
    _spec("user", "1", IGNORED, _PROCESS),
    _spec("group", "1", IGNORED, _PROCESS),
    _spec("nice", "1", IGNORED, _PROCESS),
    _spec("mlock", "0", IGNORED, _PROCESS),
    _spec("writepid", "1", IGNORED, _PROCESS),
    _spec("remap-usr1", "1", IGNORED, _PROCESS),
    _spec("memstats", "1", IGNORED, _PROCESS),
    _spec("gremlin", "1", REFUSED, "a debugging aid of the stock client"),
    _spec("log", "1", IGNORED, _LOGGING),
    _spec("log-append", "1", IGNORED, _LOGGING),
    _spec("syslog", "0-1", IGNORED, _LOGGING),
    _spec("verb", "1", IGNORED, _LOGGING),
    _spec("mute", "1", IGNORED, _LOGGING),
    _spec("mute-replay-warnings", "0", IGNORED, _LOGGING),
    _spec("errors-to-stderr", "0", IGNORED, _LOGGING),
    _spec("suppress-timestamps", "0", IGNORED, _LOGGING),
    _spec("machine-readable-output", "0", IGNORED, _LOGGING),
    _spec("status", "1-2", IGNORED, _LOGGING),
    _spec("status-version", "1", IGNORED, _LOGGING),
    _spec("echo", "*", IGNORED, "messages for a GUI"),
    _spec("parameter", "*", IGNORED, "messages for a GUI"),
    _spec("msg-channel", "1+", IGNORED, _WINDOWS, "w"),
    _spec("management", "2-3", IGNORED, _MGMT),
    _spec("management-client-user", "1", IGNORED, _MGMT),
    _spec("management-client-group", "1", IGNORED, _MGMT),
    _spec("management-query-passwords", "0", IGNORED, "erebus asks on the terminal"),
    _spec("management-query-remote", "0", IGNORED, _MGMT),
    _spec("management-query-proxy", "0", IGNORED, _MGMT),
    _spec("management-hold", "0", IGNORED, _MGMT),
    _spec("management-signal", "0", IGNORED, _MGMT),
    _spec("management-forget-disconnect", "0", IGNORED, _MGMT),
    _spec("management-up-down", "0", IGNORED, _MGMT),
    _spec("management-client", "0", IGNORED, _MGMT),
    _spec("management-client-auth", "0", IGNORED, _MGMT),
    _spec("management-log-cache", "1", IGNORED, _MGMT),
    _spec("management-external-key", "*", REFUSED, "external keys via the management "
          "interface are not supported"),
    _spec("management-external-cert", "1", REFUSED, "external certificates via the "
          "management interface are not supported"),
    _spec("plugin", "1+", REFUSED, "plugins cannot be loaded; what they would check or "
          "provide would be missing"),
    # -- scripts
    _spec("script-security", "1", IGNORED, _NO_SCRIPTS),
    _spec("up", "1+", IGNORED, _NO_SCRIPTS),
    _spec("down", "1+", IGNORED, _NO_SCRIPTS),
    _spec("down-pre", "0", IGNORED, _NO_SCRIPTS),
    _spec("up-delay", "0", IGNORED, _NO_SCRIPTS),
    _spec("up-restart", "0", IGNORED, _NO_SCRIPTS),
    _spec("route-up", "1+", IGNORED, _NO_SCRIPTS),
    _spec("route-pre-down", "1+", IGNORED, _NO_SCRIPTS),
    _spec("ipchange", "1+", IGNORED, _NO_SCRIPTS),
    _spec("setenv", "1-2", IGNORED, "environment for scripts, which erebus never runs "
          "('setenv opt' and 'setenv FORWARD_COMPATIBLE 1' are honoured)"),
    _spec("setenv-safe", "1-2", IGNORED, _NO_SCRIPTS),
    _spec("tls-verify", "1+", REFUSED, "erebus never runs scripts; a check of the server "
          "by tls-verify cannot be honoured"),
    _spec("tls-export-cert", "1", IGNORED, _NO_SCRIPTS),
    # -- TLS mode and the server's certificate
    _spec("client", "0", IMPLEMENTED, "TLS client that pulls its settings"),
    _spec("tls-client", "0", IMPLEMENTED, "TLS client"),
    _spec("pull", "0", IMPLEMENTED, "the server's pushed settings are used"),
    _spec("ca", "1", IMPLEMENTED, "the CA the server's certificate must chain to", "i"),
    _spec("capath", "1", REFUSED, "a directory of CAs is not supported: give 'ca'"),
    _spec("cert", "1", IMPLEMENTED, "the client certificate (and its chain)", "i"),
    _spec("key", "1", IMPLEMENTED, "the client's private key; encrypted keys ask for their "
          "passphrase (askpass or the terminal)", "i"),
    _spec("extra-certs", "1", IMPLEMENTED, "sent with the client certificate", "i"),
    _spec("pkcs12", "1", IMPLEMENTED, "certificate, key and CA from a PKCS#12 bundle "
          "(passphrase from askpass or the terminal)", "i"),
    _spec("askpass", "0-1", IMPLEMENTED, "the passphrase of the private key or PKCS#12 "
          "bundle: from FILE, or asked on the terminal"),
    _spec("dh", "1", IGNORED, "Diffie-Hellman parameters are for servers", "i"),
    _spec("crl-verify", "1-2", IMPLEMENTED, "the server's certificate is checked against the "
          "CRLs (a CRL directory is refused)", "i"),
    _spec("verify-x509-name", "1-2", IMPLEMENTED, "the server certificate's subject or "
          "name must match"),
    _spec("remote-cert-tls", "1", IMPLEMENTED, "the server certificate must have key usage "
          "and the TLS server extended key usage"),
    _spec("remote-cert-ku", "*", IMPLEMENTED, "the server certificate's key usage must "
          "match one of the values"),
    _spec("remote-cert-eku", "1", IMPLEMENTED, "the server certificate must have this "
          "extended key usage"),
    _spec("ns-cert-type", "1", IMPLEMENTED, "deprecated; checked like OpenVPN 2.6 does "
          "with OpenSSL (the certificate's TLS server purpose)"),
    _spec("verify-hash", "1-2", REFUSED, "erebus cannot enforce this check of the server "
          "yet and will not connect without it", "i"),
    _spec("peer-fingerprint", "1", REFUSED, "erebus cannot enforce this check of the server "
          "yet and will not connect without it", "i"),
    _spec("x509-track", "1", IGNORED, "exports certificate fields to scripts"),
    _spec("x509-username-field", "1+", IGNORED, "a server option"),
    _spec("tls-version-min", "1-2", IMPLEMENTED, "lowest TLS version offered"),
    _spec("tls-version-max", "1", IMPLEMENTED, "highest TLS version offered"),
    _spec("tls-cipher", "1", IMPLEMENTED, "TLS 1.2 cipher list"),
    _spec("tls-ciphersuites", "1", IMPLEMENTED, "TLS 1.3 cipher suites"),
    _spec("tls-groups", "1", IGNORED, "erebus offers OpenSSL's default groups"),
    _spec("ecdh-curve", "1", IGNORED, "erebus offers OpenSSL's default groups"),
    _spec("tls-cert-profile", "1", IGNORED, "OpenSSL's default security level applies"),
    _spec("tls-timeout", "1", IGNORED, "erebus retransmits on its own schedule"),
    _spec("hand-window", "1", IMPLEMENTED, "how long a TLS handshake may take"),
    _spec("tran-window", "1", IGNORED, "the old key is kept for erebus's own transition "
          "window"),
    _spec("reneg-sec", "1-2", IMPLEMENTED, "erebus renegotiates after this many seconds"),
    _spec("reneg-bytes", "1", IMPLEMENTED, "erebus renegotiates after this many bytes"),
    _spec("reneg-pkts", "1", IGNORED, "renegotiation by time and bytes only"),
    _spec("single-session", "0", IGNORED, "a server option"),
    _spec("tls-exit", "0", IGNORED, "erebus reports a TLS failure and stops or retries"),
    _spec("tls-auth", "1-2", IMPLEMENTED, "HMAC on every control packet", "ic"),
    _spec("tls-crypt", "1", IMPLEMENTED, "control channel encrypted and authenticated",
          "ic"),
    _spec("tls-crypt-v2", "1-2", REFUSED, "tls-crypt-v2 is not supported yet", "ic"),
    _spec("tls-crypt-v2-verify", "1", REFUSED, _SERVER),
    _spec("key-direction", "1", IMPLEMENTED, "direction of the tls-auth or static key",
          "c"),
    _spec("secret", "1-2", IMPLEMENTED, "static-key mode (deprecated by OpenVPN)", "i"),
    _spec("tls-server", "0", REFUSED, _SERVER),
    _spec("keying-material-exporter", "2+", IGNORED, "exports key material to scripts"),
    _spec("cryptoapicert", "1", REFUSED, "the Windows certificate store is not available",
          "w"),
    _spec("engine", "0-1", REFUSED, "OpenSSL engines are not supported"),
    _spec("providers", "1+", REFUSED, "OpenSSL providers are not supported"),
    _spec("pkcs11-providers", "1+", REFUSED, "PKCS#11 tokens are not supported"),
    _spec("pkcs11-protected-authentication", "*", REFUSED, "PKCS#11 tokens are not "
          "supported"),
    _spec("pkcs11-private-mode", "1+", REFUSED, "PKCS#11 tokens are not supported"),
    _spec("pkcs11-cert-private", "*", REFUSED, "PKCS#11 tokens are not supported"),
    _spec("pkcs11-pin-cache", "1", REFUSED, "PKCS#11 tokens are not supported"),
    _spec("pkcs11-id", "1", REFUSED, "PKCS#11 tokens are not supported"),
    _spec("pkcs11-id-management", "0", REFUSED, "PKCS#11 tokens are not supported"),
    _spec("show-pkcs11-ids", "0-2", REFUSED, _STANDALONE),
    _spec("use-prediction-resistance", "0", IGNORED, "the system's random source is used"),
    # -- username / password
    _spec("auth-user-pass", "0-1", IMPLEMENTED, "username and password (from the file, "
          "inline, or asked on the terminal)", "i"),
    _spec("auth-retry", "1", IGNORED, "erebus reports a refused password and stops"),
    _spec("auth-nocache", "0", IGNORED, "erebus keeps credentials in memory only"),
    _spec("auth-token", "1", IGNORED, "auth-tokens come from the server"),
    _spec("auth-token-user", "1", IGNORED, "auth-tokens come from the server"),
    _spec("static-challenge", "2", REFUSED, "challenge/response authentication is not "
          "supported yet"),
    _spec("push-peer-info", "0", IGNORED, "erebus sends its own peer info"),
    # -- data channel
    _spec("data-ciphers", "1", IMPLEMENTED, "ciphers offered to the server"),
    _spec("ncp-ciphers", "1", IMPLEMENTED, "old name of data-ciphers"),
    _spec("data-ciphers-fallback", "1", IMPLEMENTED, "cipher of a server that does not "
          "negotiate"),
    _spec("cipher", "1", IMPLEMENTED, "static-key mode's cipher; with TLS ignored for "
          "negotiation, as by 2.6 (warned when not in `data-ciphers`)"),
    _spec("auth", "1", IMPLEMENTED, "HMAC digest of CBC ciphers and tls-auth"),
    _spec("replay-window", "0-2", IMPLEMENTED, "size of the replay window"),
    _spec("replay-persist", "1", IGNORED, "replay state is kept in memory"),
    _spec("no-replay", "0", REFUSED, "turning replay protection off changes the data "
          "channel and weakens it; not supported"),
    _spec("compress", "0-1", IMPLEMENTED, "compression framing; erebus decompresses and "
          "never compresses"),
    _spec("comp-lzo", "0-1", IMPLEMENTED, "compression framing; erebus decompresses and "
          "never compresses"),
    _spec("comp-noadapt", "0", IGNORED, "erebus never compresses what it sends"),
    _spec("allow-compression", "1", IMPLEMENTED, "'no' refuses compression pushed by the "
          "server; 'yes' acts as 'asym' (erebus never compresses)"),
    _spec("key-derivation", "1+", REFUSED, _INSTANCE),
    _spec("protocol-flags", "1+", REFUSED, _INSTANCE),
    _spec("force-tls-key-material-export", "*", IGNORED, "erebus uses what the server "
          "offers"),
    _spec("prng", "1-2", IGNORED, "the SSL library's PRNG is used", warning="NOTICE: "
          "--prng option ignored (SSL library PRNG is used)"),
    _spec("peer-id", "1", REFUSED, "the peer-id is pushed by the server"),
    _spec("opt-verify", "0", IGNORED, "deprecated", warning="DEPRECATION: opt-verify is "
          "deprecated and will be removed in OpenVPN 2.7"),
    _spec("compat-mode", "1-2", IGNORED, "erebus speaks to 2.4 and later servers whatever "
          "this says"),
    _spec("disable-occ", "0", IGNORED, "erebus sends no options-consistency strings"),
    _spec("vlan-tagging", "0", REFUSED, "VLAN tagging is for tap servers"),
    _spec("vlan-accept", "1", REFUSED, "VLAN tagging is for tap servers"),
    _spec("vlan-pvid", "1", REFUSED, "VLAN tagging is for tap servers"),
    # -- reading the profile
    _spec("config", "1", IMPLEMENTED, "reads another profile file in place (at most 10 "
          "levels)"),
    _spec("ignore-unknown-option", "1+", IMPLEMENTED, "the named options, if unknown, are "
          "skipped with a warning"),
    # -- standalone commands of the stock binary
    _spec("help", "*", REFUSED, _STANDALONE),
    _spec("version", "0", REFUSED, _STANDALONE),
    _spec("genkey", "0-3", REFUSED, _STANDALONE),
    _spec("test-crypto", "0", REFUSED, _STANDALONE),
    _spec("show-ciphers", "0", REFUSED, _STANDALONE),
    _spec("show-digests", "0", REFUSED, _STANDALONE),
    _spec("show-engines", "0", REFUSED, _STANDALONE),
    _spec("show-tls", "0", REFUSED, _STANDALONE),
    _spec("show-curves", "0", REFUSED, _STANDALONE),
    _spec("show-groups", "0", REFUSED, _STANDALONE),
    _spec("show-gateway", "0-1", REFUSED, _STANDALONE),
    # -- server side
    _spec("mode", "1", REFUSED, _SERVER),
    _spec("server", "2-3", REFUSED, _SERVER),
    _spec("server-ipv6", "1", REFUSED, _SERVER),
    _spec("server-bridge", "0-4", REFUSED, _SERVER),
    _spec("push", "1", REFUSED, _SERVER),
    _spec("ifconfig-pool", "2-3", REFUSED, _SERVER),
    _spec("ifconfig-pool-persist", "1-2", REFUSED, _SERVER),
    _spec("ifconfig-ipv6-pool", "1", REFUSED, _SERVER),
    _spec("ifconfig-push-constraint", "2", REFUSED, _SERVER),
    _spec("hash-size", "2", REFUSED, _SERVER),
    _spec("connect-freq", "2", REFUSED, _SERVER),
    _spec("connect-freq-initial", "2", REFUSED, _SERVER),
    _spec("max-clients", "1", REFUSED, _SERVER),
    _spec("max-routes-per-client", "1", REFUSED, _SERVER),
    _spec("verify-client-cert", "0-1", REFUSED, _SERVER),
    _spec("username-as-common-name", "0", REFUSED, _SERVER),
    _spec("auth-user-pass-optional", "0", REFUSED, _SERVER),
    _spec("auth-user-pass-verify", "1+", REFUSED, _SERVER),
    _spec("auth-gen-token", "*", REFUSED, _SERVER),
    _spec("auth-gen-token-secret", "1", REFUSED, _SERVER, "i"),
    _spec("client-connect", "1+", REFUSED, _SERVER),
    _spec("client-crresponse", "1+", REFUSED, _SERVER),
    _spec("client-disconnect", "1+", REFUSED, _SERVER),
    _spec("learn-address", "1+", REFUSED, _SERVER),
    _spec("tmp-dir", "1", IGNORED, _NO_SCRIPTS),
    _spec("client-config-dir", "1", REFUSED, _SERVER),
    _spec("ccd-exclusive", "0", REFUSED, _SERVER),
    _spec("bcast-buffers", "1", REFUSED, _SERVER),
    _spec("tcp-queue-limit", "1", REFUSED, _SERVER),
    _spec("port-share", "2-3", REFUSED, _SERVER),
    _spec("client-to-client", "0", REFUSED, _SERVER),
    _spec("duplicate-cn", "0", REFUSED, _SERVER),
    _spec("stale-routes-check", "1-2", REFUSED, _SERVER),
    _spec("inetd", "0-2", REMOVED, "removed in OpenVPN 2.6 (inetd mode was for servers), "
          "which does not know it", "u"),
    _spec("iroute", "1-2", REFUSED, _INSTANCE),
    _spec("iroute-ipv6", "1", REFUSED, _INSTANCE),
    _spec("ifconfig-push", "2-3", REFUSED, _INSTANCE),
    _spec("ifconfig-ipv6-push", "1-2", REFUSED, _INSTANCE),
    _spec("push-reset", "0", REFUSED, _INSTANCE),
    _spec("push-remove", "1", REFUSED, _INSTANCE),
    _spec("push-continuation", "1", REFUSED, _INSTANCE),
    _spec("disable", "0", REFUSED, _INSTANCE),
    # -- removed from OpenVPN: 2.6 refuses them
    _spec("compat-names", "*", REMOVED, "removed in OpenVPN 2.5; 2.6 refuses it: update the "
          "profile"),
    _spec("no-name-remapping", "0", REMOVED, "removed in OpenVPN 2.5; 2.6 refuses it: "
          "update the profile"),
    _spec("client-cert-not-required", "0", REMOVED, "removed in OpenVPN 2.5 (a server "
          "option; use 'verify-client-cert none' on the server)"),
    _spec("key-method", "1", REMOVED, "removed in OpenVPN 2.5 (key method 2 is the only "
          "one); 2.6 does not know it: delete the line", "u"),
    _spec("no-iv", "0", REMOVED, "removed in OpenVPN 2.5; 2.6 does not know it: delete "
          "the line", "u"),
    _spec("tls-remote", "1", REMOVED, "removed in OpenVPN 2.4; 2.6 does not know it: use "
          "'verify-x509-name NAME name'", "u"),
    _spec("ncp-disable", "0", REMOVED, "removed in OpenVPN 2.6, which does not know it: "
          "delete the line", "u"),
    _spec("ifconfig-pool-linear", "0", REMOVED, "removed in OpenVPN 2.5 (a server option; "
          "use 'topology p2p')", "u"),
    _spec("management-client-pf", "0", REMOVED, "removed in OpenVPN 2.6, which does not "
          "know it", "u"),
]

OPTIONS: dict[str, OptionSpec] = {s.name: s for s in _REGISTRY}
assert len(OPTIONS) == len(_REGISTRY), "an option is registered twice"

# Material an option may take inline or from a file; 'ca' and friends are read when the
# whole profile has been read, so the last definition wins, as for the stock client.
_MATERIAL = ("ca", "cert", "key", "extra-certs", "pkcs12", "crl-verify", "secret",
             "tls-auth", "tls-crypt", "auth-user-pass", "askpass")

REMOTE_CERT_TLS_EKU = {"server": "TLS Web Server Authentication",
                       "client": "TLS Web Client Authentication"}
KU_REQUIRED = "required"       # remote-cert-ku without values: the extension must be there


# -- what a profile says ------------------------------------------------------------------

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
    key_encrypted: bool = False          # the private key (or PKCS#12) needs a passphrase
    key_passphrase: str | None = None    # from askpass FILE (never printed)
    pkcs12: bytes | None = None          # a PKCS#12 bundle still locked by its passphrase
    ping: int | None = None
    ping_restart: int | None = None
    tun_mtu: int = 1500
    hand_window: int = 60
    connect_timeout: int = 120
    connect_retry: tuple[int, int] = (1, 300)
    connect_retry_max: int | None = None
    remote_random: bool = False
    remote_random_hostname: bool = False
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

    def tls_settings(self):
        """Everything the TLS layer checks, from this profile."""
        from .tls import TlsSettings
        return TlsSettings(ca=self.ca, cert=self.cert, key=self.key,
                           extra_certs=self.extra_certs, remote_cert_tls=self.remote_cert_tls,
                           verify_x509_name=self.verify_x509_name,
                           tls_version_min=self.tls_version_min,
                           tls_version_max=self.tls_version_max,
                           tls_cipher=self.tls_cipher,
                           tls_ciphersuites=self.tls_ciphersuites,
                           remote_cert_ku=self.remote_cert_ku,
                           remote_cert_eku=self.remote_cert_eku,
                           ns_cert_type=self.ns_cert_type, crl=self.crl)

    def tls_context(self):
        """The one TLS context of a tunnel (every session and renegotiation uses it):
        the CA, CRLs, client certificate and key loaded into OpenSSL before anything is
        sent.  A ConfigError names this profile's file and the option OpenSSL refused."""
        from .tls import TlsContext
        try:
            return TlsContext(self.tls_settings())
        except ConfigError as exc:
            if exc.path is not None or not self.path:
                raise
            message = str(exc)
            if exc.option and message.startswith(f"{exc.option}: "):
                message = message[len(exc.option) + 2:]
            raise ConfigError(message, path=self.path, option=exc.option) from None


class ProfileError(ConfigError):
    """Every problem found in a profile; reads as the first one."""

    def __init__(self, problems: list[ConfigError]):
        self.problems = list(problems)
        first = self.problems[0]
        self.path, self.line, self.option = first.path, first.line, first.option
        text = str(first)
        if len(self.problems) > 1:
            more = len(self.problems) - 1
            text += f" (and {more} more problem{'s' if more > 1 else ''}: 'erebus check' " \
                    "lists them all)"
        Exception.__init__(self, text)


# -- lexing --------------------------------------------------------------------------------

_INITIAL, _UNQUOTED, _DQUOTED, _SQUOTED = range(4)
_SPACE = frozenset(" \t\n\v\f\r")


def split_line(line: str, path: str, lineno: int, *,
               warnings: list[str] | None = None) -> list[str]:
    """The words of one line, as OpenVPN's ``parse_line`` splits them.

    Raises :class:`ConfigError` where the stock client refuses the line (an escape other
    than ``\\\\``, ``\\"`` or ``\\ ``, an unterminated quote, a word too long)."""
    end = line.find("\0")
    if end >= 0:
        line = line[:end]              # a C string ends at its first NUL
    words: list[str] = []
    word: list[str] = []
    state = _INITIAL
    escaped = False
    for ch in line + "\0":
        at_end = ch == "\0"
        if not escaped and ch == "\\" and state != _SQUOTED:
            escaped = True
            continue
        out = ""
        space = at_end or ch in _SPACE
        if state == _INITIAL:
            if not space:
                if ch in "#;":
                    break
                if not escaped and ch == '"':
                    state = _DQUOTED
                elif not escaped and ch == "'":
                    state = _SQUOTED
                else:
                    out, state = ch, _UNQUOTED
        elif state == _UNQUOTED:
            if not escaped and space:
                words.append("".join(word))
                word, state = [], _INITIAL
            elif not at_end:
                out = ch
        elif state == _DQUOTED:
            if not escaped and ch == '"':
                words.append("".join(word))
                word, state = [], _INITIAL
            elif not at_end:
                out = ch
        else:
            if ch == "'":
                words.append("".join(word))
                word, state = [], _INITIAL
            elif not at_end:
                out = ch
        if escaped and out and not (out in '\\"' or out in _SPACE):
            raise ConfigError(f"bad backslash: '\\{out}' (only \\\\, \\\" and '\\ ' are "
                              "escapes; write a Windows path with double backslashes or "
                              "in single quotes)", path=path, line=lineno)
        escaped = False
        if out:
            if len(word) >= OPTION_LINE_SIZE:
                raise ConfigError(f"a word is longer than {OPTION_LINE_SIZE} characters",
                                  path=path, line=lineno)
            word.append(out)
        if len(words) >= MAX_PARMS:
            if warnings is not None and line[line.find(words[-1]):].strip():
                warnings.append(f"{path}:{lineno}: only the first {MAX_PARMS} words of "
                                "a line count (as for the stock client)")
            break
    if state == _DQUOTED:
        raise ConfigError("unterminated quote (\")", path=path, line=lineno)
    if state == _SQUOTED:
        raise ConfigError("unterminated quote (')", path=path, line=lineno)
    if state != _INITIAL:
        raise ConfigError("the line ends in a backslash", path=path, line=lineno)
    return words


@dataclass(slots=True)
class Directive:
    line: int
    name: str
    args: list[str]
    inline: str | None = None     # the text between <name> and </name>
    path: str = "<profile>"       # the file it was read from
    text: str = ""                # the words as written, for listing


def _is_tag_line(stripped: str) -> str | None:
    """The tag name of a line holding ``<tag>`` or ``</tag>`` (None otherwise)."""
    if len(stripped) > 2 and stripped[0] == "<" and stripped[-1] == ">":
        inner = stripped[1:-1].lstrip("/")
        if re.fullmatch(r"[a-z0-9-]+", inner):
            return inner
    return None


def lex(text: str, path: str, *, first_line: int = 1, problems: list[ConfigError] | None
        = None, warnings: list[str] | None = None) -> list[Directive]:
    """Directives in file order, inline blocks attached.

    With ``problems`` given, a line that does not lex is recorded there and skipped;
    without, the first one raises."""
    def fail(exc: ConfigError) -> None:
        if problems is None:
            raise exc
        problems.append(exc)

    if first_line == 1 and text.startswith("\ufeff"):
        text = text[1:]
    raw = re.findall(r"[^\n]*\n|[^\n]+$", text)     # lines keep their "\n", as fgets's do
    out: list[Directive] = []
    i = 0
    while i < len(raw):
        lineno = first_line + i
        line = raw[i]
        i += 1
        if len(line.encode("utf-8", "surrogatepass")) >= OPTION_LINE_SIZE:
            fail(ConfigError(f"the line is {len(line.rstrip())} characters long; OpenVPN "
                             f"reads at most {OPTION_LINE_SIZE - 1} (put long values in a "
                             "file)", path=path, line=lineno))
            continue
        try:
            words = split_line(line, path, lineno, warnings=warnings)
        except ConfigError as exc:
            guess = line.split()[0].removeprefix("--") if line.split() else None
            if guess and re.fullmatch(r"[a-z0-9-]+", guess) and exc.option is None:
                exc = ConfigError(str(exc).removeprefix(f"{path}:{lineno}: "), path=path,
                                  line=lineno, option=guess)
            fail(exc)
            continue
        if not words:
            continue
        name = words[0]
        if len(name) >= 3 and name.startswith("--"):
            name = name[2:]
        if len(words) == 1 and len(name) >= 2 and name[0] == "<" and name[-1] == ">":
            tag = name[1:-1]
            if tag.startswith("/"):
                fail(ConfigError(f"stray end tag {name} (no <{tag[1:]}> block is open)",
                                 path=path, line=lineno, option=tag[1:] or None))
                continue
            close = f"</{tag}>"
            body: list[str] = []
            closed = False
            suspicious = None
            while i < len(raw):
                content = raw[i]
                i += 1
                stripped = content.lstrip(" \t\n\v\f\r")
                if stripped.startswith(close):
                    closed = True
                    break
                inner = _is_tag_line(stripped.strip())
                if (suspicious is None and tag != "connection" and inner is not None
                        and inner in OPTIONS and OPTIONS[inner].inline):
                    suspicious = (first_line + i - 1, stripped.strip())
                body.append(content)
            if suspicious is not None:
                at, seen = suspicious
                fail(ConfigError(f"the inline block <{tag}> opened at line {lineno} meets "
                                 f"{seen} before its {close}: an end tag is missing",
                                 path=path, line=at, option=tag))
                if not closed:
                    i = at - first_line           # read on from the unexpected tag
                continue
            if not closed:
                fail(ConfigError(f"inline block <{tag}> has no {close}", path=path,
                                 line=lineno, option=tag))
                continue
            out.append(Directive(lineno, tag, [], "".join(body), path, f"<{tag}>"))
            continue
        if name.startswith("</") and name.endswith(">"):
            fail(ConfigError(f"stray end tag {name} (no {name.replace('/', '', 1)} block "
                             "is open)", path=path, line=lineno, option=name[2:-1] or None))
            continue
        out.append(Directive(lineno, name, words[1:], None, path,
                             " ".join([name, *words[1:]])))
    return out


# -- PEM and key material ------------------------------------------------------------------

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")
_CERT_LABELS = (b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE")
_KEY_LABELS = (b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"DSA PRIVATE KEY",
               b"ENCRYPTED PRIVATE KEY")


@dataclass(slots=True)
class PemBlock:
    label: bytes
    text: bytes         # BEGIN line to END line, inclusive
    der: bytes
    offset: int         # where the BEGIN line starts
    encrypted: bool     # a legacy 'Proc-Type: 4,ENCRYPTED' header


class PemError(ValueError):
    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


def pem_blocks(data: bytes) -> list[PemBlock]:
    """Every PEM block of ``data``; text around them (an ``openssl x509 -text`` dump) is
    fine.  Raises :class:`PemError` for a truncated, empty or undecodable block."""
    blocks = []
    pos = 0
    while True:
        m = _PEM_BEGIN.search(data, pos)
        if m is None:
            return blocks
        label = m.group(1)
        end_line = b"-----END " + label + b"-----"
        end = data.find(end_line, m.end())
        if end < 0:
            raise PemError(f"the {label.decode()} block has no END line (truncated?)",
                           m.start())
        other = _PEM_BEGIN.search(data, m.end(), end)
        if other is not None:
            raise PemError(f"the {label.decode()} block has no END line before the next "
                           "BEGIN (truncated?)", m.start())
        body = data[m.end():end]
        encrypted = False
        lines = []
        for line in body.splitlines():
            line = line.strip()
            if b":" in line:                 # RFC 1421 headers of legacy encrypted keys
                encrypted = encrypted or line.replace(b" ", b"").upper().startswith(
                    b"PROC-TYPE:4,ENCRYPTED")
                continue
            lines.append(line)
        b64 = b"".join(lines)
        if not b64:
            raise PemError(f"the {label.decode()} block is empty", m.start())
        try:
            der = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise PemError(f"the {label.decode()} block is not valid base64 (damaged or "
                           "truncated)", m.start()) from None
        stop = end + len(end_line)
        blocks.append(PemBlock(label, data[m.start():stop], der, m.start(), encrypted))
        pos = stop


# -- reading -------------------------------------------------------------------------------

@dataclass(slots=True)
class _Source:
    """Where one piece of material comes from: an inline block or a file."""

    directive: Directive
    inline: str | None
    filename: str | None
    base: str           # the folder a relative file name is in
    shown: str = ""     # the file name as problems show it


@dataclass
class _Conn:
    """The per-connection options (the stock client's connection_entry)."""

    proto: str = "udp"
    port: int = 1194
    connect_timeout: int = 120
    connect_retry: tuple[int, int] = (1, 300)
    explicit_exit_notify: int = 0
    tun_mtu: int = 1500
    tls_auth: _Source | None = None       # a <connection> block's own (globals: _Reader)
    tls_crypt: _Source | None = None
    key_direction: int | None = None
    remote: tuple[str, int | None, str | None, int] | None = None   # host, port, proto, line


class _Reader:
    def __init__(self, path: str, *, rng: random.Random | None = None):
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.shown_base = os.path.dirname(path)
        self.rng = rng
        self.p = Profile(path=path)
        self.ce = _Conn()
        self.remotes: list[tuple[str, int | None, str | None, int]] = []
        self.connections: list[tuple[int, _Conn]] = []
        self.ignore_unknown: set[str] = set()
        self.forward_compatible = False
        self.problems: list[ConfigError] = []
        self.material: dict[str, _Source] = {}
        self.tls_auth: _Source | None = None       # the profile's own (outside blocks)
        self.tls_crypt: _Source | None = None
        self.key_direction: int | None = None      # tls-auth/secret DIR or key-direction
        self.askpass: _Source | None = None
        self.askpass_prompt = False
        self.in_connection: _Conn | None = None
        self.depth = 0
        self.included = 0                 # bytes of 'config' files read, at most MAX_INCLUDED
        self.seen_dev = False
        self.cipher_directive: Directive | None = None   # the last 'cipher' line
        self.crl_dir = False
        self.client_directive: Directive | None = None   # the first client / tls-client

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
        n = normalize_cipher(name)
        if n != "none" and n not in AEAD_CIPHERS and n not in CBC_CIPHERS:
            if n == "BF-CBC":
                raise self.err(d, "BF-CBC (Blowfish) is not supported: ask for an AES-GCM "
                               "or ChaCha20-Poly1305 data cipher")
            raise self.err(d, f"unsupported data cipher {name}")
        return n

    def proto_name(self, d: Directive, value: str) -> str:
        v = value.lower()
        if v in ("udp", "udp4"):
            return "udp"
        if v in ("tcp", "tcp-client", "tcp4", "tcp4-client"):
            return "tcp-client"
        if v in ("tcp-server", "tcp4-server", "tcp6-server"):
            raise self.err(d, "erebus is a client: tcp-server is for servers")
        if v in ("udp6", "tcp6", "tcp6-client"):
            raise self.err(d, "IPv6 transport is not supported yet")
        raise self.err(d, f"unknown protocol {value!r}")

    def ipv4(self, d: Directive, text: str) -> str:
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise self.err(d, f"{text!r} is not an IPv4 address") from None

    def source(self, d: Directive) -> _Source:
        if d.inline is not None:
            return _Source(d, d.inline, None, self.base)
        name = d.args[0]
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
        port = self.integer(d, a[1], 1, 65535) if len(a) > 1 else None
        proto = self.proto_name(d, a[2]) if len(a) > 2 else None
        entry = (a[0], port, proto, d.line)
        if self.in_connection is not None:
            self.in_connection.remote = entry
        else:
            self.remotes.append(entry)

    def opt_proto(self, d: Directive, a: list[str]) -> None:
        self.conn().proto = self.proto_name(d, a[0])

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
        if len(a) == 2:
            if a[1] != "dir":
                raise self.err(d, f"the second argument can only be 'dir', not {a[1]!r}")
            raise self.err(d, "a directory of CRLs ('dir') is not supported: give the CRL "
                           "file or inline <crl-verify>")
        self.material[d.name] = self.source(d)

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

    def opt_data_ciphers(self, d: Directive, a: list[str]) -> None:
        usable = []
        for c in (c for c in a[0].split(":") if c):
            c = c.lstrip("?")   # '?' marks an optional cipher in 2.6
            n = normalize_cipher(c)
            if n == "none" or n in AEAD_CIPHERS or n in CBC_CIPHERS:
                usable.append(n)
            else:
                self.warn(d, f"cipher {c} is not supported by erebus and is left out")
        if not usable:
            raise self.err(d, f"none of {a[0]} is supported by erebus")
        self.p.data_ciphers = usable

    opt_ncp_ciphers = opt_data_ciphers

    def opt_data_ciphers_fallback(self, d: Directive, a: list[str]) -> None:
        self.p.data_ciphers_fallback = self.cipher_name(d, a[0])

    def opt_cipher(self, d: Directive, a: list[str]) -> None:
        self.p.cipher = self.cipher_name(d, a[0])
        self.cipher_directive = d

    def opt_auth(self, d: Directive, a: list[str]) -> None:
        digest = normalize_digest(a[0])         # None: 'none' or '[null-digest]'
        if digest is None:
            self.p.auth = "none"
        elif digest in DIGESTS:
            self.p.auth = digest
        else:
            raise self.err(d, f"unsupported digest {a[0]}")

    def opt_auth_user_pass(self, d: Directive, a: list[str]) -> None:
        self.p.auth_user_pass = True
        if d.inline is not None or (a and a[0] != "stdin"):
            self.material["auth-user-pass"] = self.source(d)
        else:
            self.material.pop("auth-user-pass", None)

    def opt_ping(self, d: Directive, a: list[str]) -> None:
        self.p.ping = self.integer(d, a[0])

    def opt_ping_restart(self, d: Directive, a: list[str]) -> None:
        self.p.ping_restart = self.integer(d, a[0])

    def opt_keepalive(self, d: Directive, a: list[str]) -> None:
        self.p.ping = self.integer(d, a[0])
        self.p.ping_restart = self.integer(d, a[1])

    def opt_tun_mtu(self, d: Directive, a: list[str]) -> None:
        self.conn().tun_mtu = self.integer(d, a[0], 576, 65535)

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
        value = self.integer(d, a[0], 0, 2**62)
        self.p.reneg_bytes = value or None

    def opt_explicit_exit_notify(self, d: Directive, a: list[str]) -> None:
        self.conn().explicit_exit_notify = self.integer(d, a[0]) if a else 1

    def opt_ifconfig(self, d: Directive, a: list[str]) -> None:
        self.p.ifconfig = (self.ipv4(d, a[0]), self.ipv4(d, a[1]))

    def opt_route(self, d: Directive, a: list[str]) -> None:
        mask = a[1] if len(a) > 1 and a[1] != "default" else "255.255.255.255"
        self.p.routes.append((a[0], mask))
        self.ignore(d)

    def opt_dhcp_option(self, d: Directive, a: list[str]) -> None:
        if a[0].upper() == "DNS" and len(a) == 2 and ":" not in a[1]:
            self.p.dns.append(self.ipv4(d, a[1]))
        self.ignore(d)

    def opt_ignore_unknown_option(self, d: Directive, a: list[str]) -> None:
        self.ignore_unknown.update(a)

    def opt_client(self, d: Directive, a: list[str]) -> None:
        self.p.tls_client = True     # what erebus does unless the profile is static-key
        if self.client_directive is None:
            self.client_directive = d

    opt_tls_client = opt_client

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
        if not self.seen_dev:
            p.warnings.append(f"{self.path}: dev: no 'dev tun' line (the stock client "
                              "refuses a profile without one; erebus needs no device)")
        return p

    # Options that make 2.6 verify the server beyond the CA chain (init.c,
    # do_option_warnings); given but refused, they are reported as problems instead.
    # verify-hash is not one: it checks depth 1 (the CA), and 2.6 counts only a
    # depth-0 hash (peer-fingerprint).
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
            for block_line, c in self.connections:
                host, port, proto, line = c.remote
                remotes.append(Remote(host, port or c.port, proto or c.proto, line,
                                      block_line, c.connect_timeout, c.connect_retry,
                                      c.explicit_exit_notify, c.tun_mtu))
        else:
            for host, port, proto, line in self.remotes:
                remotes.append(Remote(host, port or ce.port, proto or ce.proto, line, None,
                                      ce.connect_timeout, ce.connect_retry,
                                      ce.explicit_exit_notify, ce.tun_mtu))
        if p.remote_random and len(remotes) > 1:
            (self.rng or random.SystemRandom()).shuffle(remotes)
        p.remotes = remotes
        p.connect_timeout = ce.connect_timeout
        p.connect_retry = ce.connect_retry
        p.tun_mtu = ce.tun_mtu
        p.explicit_exit_notify = ce.explicit_exit_notify
        for r in remotes:
            if r.proto != "udp" and r.explicit_exit_notify:
                r.explicit_exit_notify = 0      # the stock client ignores it over TCP
        if not remotes and not self.failed & {"remote", "connection"}:
            self.problem(None, "no 'remote' line: nothing to connect to", option="remote")

    def finish_tls_wrap(self) -> None:
        """tls-auth / tls-crypt: a <connection> block's own, else the profile's."""
        p = self.p
        if self.tls_auth is not None and self.tls_crypt is not None:
            self.problem(self.tls_crypt.directive, "tls-auth and tls-crypt cannot be used "
                         "together (the stock client refuses it too)")
            return
        if self.tls_auth is not None:
            profile_wide = ("tls-auth", self.tls_auth, self.key_direction)
        elif self.tls_crypt is not None:
            profile_wide = ("tls-crypt", self.tls_crypt, None)
        else:
            profile_wide = None
        choices = []
        for _, c in self.connections:
            if c.tls_auth is not None:
                choices.append(("tls-auth", c.tls_auth, c.key_direction))
            elif c.tls_crypt is not None:
                choices.append(("tls-crypt", c.tls_crypt, None))
            else:
                choices.append(profile_wide)
        if not self.connections:
            choices.append(profile_wide)
        distinct = {None if ch is None else (ch[0], ch[1].directive.path,
                                             ch[1].directive.line, ch[2]) for ch in choices}
        if len(distinct) > 1:
            self.problem(None, "the <connection> blocks use different tls-auth/tls-crypt "
                         "keys; erebus supports one for the whole profile for now",
                         option="connection")
            return
        if choices[0] is None:
            return
        kind, src, direction = choices[0]
        data = self.read(src)
        if data is None:
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
        """A static-key profile: no TLS, no CA; the cipher and ifconfig are needed."""
        p = self.p
        d = self.material["secret"].directive

        def fail(message: str) -> None:
            self.problem(d, message, option="secret")

        if p.tls_client or p.tls_wrap or p.auth_user_pass:
            fail("a static-key profile cannot also use TLS (client, tls-client, tls-auth, "
                 "tls-crypt, auth-user-pass)")
        if p.cipher is None:
            fail("static-key mode needs an explicit 'cipher' (OpenVPN's default BF-CBC is "
                 "not supported)")
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
        if "ca" not in m and "pkcs12" not in m and not self.failed & {"ca", "pkcs12"}:
            self.problem(None, "no CA certificate ('ca' or <ca>): the server cannot be "
                         "verified", option="ca")
        has_cert = p.cert is not None or p.pkcs12 is not None or "cert" in m
        has_key = p.key is not None or p.pkcs12 is not None or "key" in m
        if has_cert != has_key and not self.failed & {"cert", "key", "pkcs12"}:
            missing = "key" if not has_key else "cert"
            self.problem(None, "a client certificate needs its key and the key its "
                         f"certificate: '{missing}' is missing", option=missing)
        if not has_cert and not p.auth_user_pass and "pkcs12" not in m \
                and not self.failed & {"cert", "key", "pkcs12", "auth-user-pass"}:
            self.problem(None, "no client certificate and no auth-user-pass: the server "
                         "has no way to authenticate this client", option="cert")
        self.match_key()

    def certificates(self, name: str) -> bytes | None:
        src = self.material.get(name)
        if src is None:
            return None
        data = self.read(src)
        if data is None:
            return None
        try:
            blocks = pem_blocks(data)
        except PemError as exc:
            self.material_problem(src, data, exc.offset, str(exc))
            return None
        certs = [b for b in blocks if b.label in _CERT_LABELS]
        if not certs:
            self.material_problem(src, data, 0, "no PEM certificate (-----BEGIN "
                                  "CERTIFICATE-----) found")
            return None
        for b in certs:
            try:
                x509.load_der_x509_certificate(b.der)
            except ValueError as exc:
                self.material_problem(src, data, b.offset, f"a certificate that does not "
                                      f"parse ({_short(exc)})")
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
            blocks = pem_blocks(data)
        except PemError as exc:
            self.material_problem(src, data, exc.offset, str(exc))
            return
        keys = [b for b in blocks if b.label in _KEY_LABELS]
        if not keys:
            self.material_problem(src, data, 0, "no PEM private key (-----BEGIN ... PRIVATE "
                                  "KEY-----) found")
            return
        block = keys[0]
        if block.label == b"ENCRYPTED PRIVATE KEY" or block.encrypted:
            p.key = block.text + b"\n"
            p.key_encrypted = True
            if p.key_passphrase is not None:
                try:
                    p.key = unlock_key(block.text, p.key_passphrase)
                    p.key_encrypted = False
                except ValueError:
                    self.problem(self.askpass.directive if self.askpass else src.directive,
                                 "the passphrase does not unlock the private key")
            return
        try:
            serialization.load_pem_private_key(block.text, password=None)
        except (ValueError, TypeError) as exc:
            self.material_problem(src, data, block.offset, f"a private key that does not "
                                  f"parse ({_short(exc)})")
            return
        except Exception as exc:      # noqa: BLE001 - e.g. an unsupported algorithm
            self.material_problem(src, data, block.offset, f"a private key erebus cannot "
                                  f"use ({_short(exc)})")
            return
        p.key = data

    def load_pkcs12(self, src: _Source) -> None:
        p = self.p
        data = self.read(src)
        if data is None:
            return
        if src.inline is not None:
            try:
                data = base64.b64decode(b"".join(data.split()), validate=True)
            except (binascii.Error, ValueError):
                self.problem(src.directive, "inline PKCS#12 must be base64 (openssl base64 "
                             "-in FILE.p12)")
                return
        if not data.startswith(b"\x30"):
            self.problem(src.directive, "not a PKCS#12 bundle")
            return
        tries: list[bytes | None] = [None, b""]
        if p.key_passphrase is not None:
            tries.append(p.key_passphrase.encode())
        for password in tries:
            try:
                key, cert, extra = _pkcs12.load_key_and_certificates(data, password)
            except ValueError:
                continue
            except Exception as exc:      # noqa: BLE001 - unsupported algorithms and such
                self.problem(src.directive, f"cannot read the PKCS#12 bundle "
                             f"({_short(exc)})")
                return
            problem = _from_pkcs12(p, key, cert, extra, has_ca="ca" in self.material)
            if problem:
                self.problem(src.directive, problem)
            return
        if p.key_passphrase is not None:
            self.problem(src.directive, "the passphrase does not unlock the PKCS#12 bundle "
                         "(or it is damaged)")
            return
        p.pkcs12 = data              # locked: unlocked once the passphrase is known
        p.key_encrypted = True

    def load_crl(self, src: _Source) -> None:
        data = self.read(src)
        if data is None:
            return
        try:
            blocks = pem_blocks(data)
        except PemError as exc:
            self.material_problem(src, data, exc.offset, str(exc))
            return
        crls = [b for b in blocks if b.label == b"X509 CRL"]
        if not crls:
            self.material_problem(src, data, 0, "no PEM CRL (-----BEGIN X509 CRL-----) "
                                  "found")
            return
        from .tls import check_crl_der
        for b in crls:
            try:
                check_crl_der(b.der)       # OpenSSL's parser: what the stock client reads
            except ValueError as exc:
                self.material_problem(src, data, b.offset, f"a CRL that does not parse "
                                      f"({_short(exc)})")
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
    p.cert = cert.public_bytes(serialization.Encoding.PEM)
    p.key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    p.pkcs12, p.key_encrypted = None, False
    if has_ca:
        return None
    if not extra:
        return ("the PKCS#12 bundle has no CA certificate and the profile no 'ca': the "
                "server cannot be verified")
    # like the stock client: the bundle's CA certificates are the trust anchors
    p.ca = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in extra)
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


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:120]


def unlock_key(pem: bytes, passphrase: str) -> bytes:
    """An encrypted PEM private key as an unencrypted PKCS#8 PEM.  ValueError when the
    passphrase is wrong."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase.encode())
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def key_matches_certificate(key_pem: bytes, cert_pem: bytes) -> bool:
    try:
        blocks = pem_blocks(cert_pem)
        leaf = x509.load_der_x509_certificate(
            next(b for b in blocks if b.label in _CERT_LABELS).der)
        key_block = next(b for b in pem_blocks(key_pem) if b.label in _KEY_LABELS)
        key = serialization.load_pem_private_key(key_block.text, password=None)
    except Exception:          # noqa: BLE001 - unparseable material is reported elsewhere
        return True
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            == leaf.public_key().public_bytes(serialization.Encoding.DER, spki))


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
            key, cert, extra = _pkcs12.load_key_and_certificates(profile.pkcs12,
                                                                  passphrase.encode())
        except ValueError:
            raise ConfigError("the passphrase does not unlock the PKCS#12 bundle",
                              path=profile.path, option="pkcs12") from None
        problem = _from_pkcs12(profile, key, cert, extra, has_ca=profile.ca is not None)
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
