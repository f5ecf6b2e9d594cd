"""The ``.ovpn`` option registry: every option OpenVPN 2.6 knows, and the ones it
removed, one :class:`OptionSpec` each, with what erebus does with it and why.

An option is implemented, accepted and ignored (meaningless without a TUN device;
listed in ``Profile.ignored``), refused with a reason, or removed (refused the way 2.6
refuses it).  :data:`OPTIONS` is the table the reader (:mod:`erebus.openvpn.reader`)
checks every line against and the one ``docs/compatibility.md`` shows
(``tests/unit/test_config_registry.py`` holds the two together).  Data only: no
parsing here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IMPLEMENTED", "IGNORED", "REFUSED", "REMOVED", "CLASSES", "OptionSpec",
           "OPTIONS"]

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
_SERVER = "a server option; erebus is a client: delete the line (it belongs in the server's configuration)"
_INSTANCE = ("valid only in a server's client-config-dir or pushed; the stock client "
             "refuses it in a profile too: delete the line")
_STANDALONE = ("a standalone command of the stock client, not a connection setting: run "
               "it with the stock openvpn binary and delete the line from the profile")
_WINDOWS = "configures the Windows TAP adapter or its DNS; erebus touches neither"
_SOCKET = "socket tuning handled by erebus's own defaults"
_MTU_INFO = "erebus's own stack uses the MTU the server pushes (tun-mtu)"
_VLAN = "VLAN tagging is for tap servers; erebus is a tun client: delete the line"
_PKCS11 = ("PKCS#11 tokens are not supported: export the certificate and key to files if "
           "the token allows it, or use the stock client")

_REGISTRY: list[OptionSpec] = [
    # -- where to connect
    _spec("remote", "1-3", IMPLEMENTED, "servers tried in order (HOST [PORT [PROTO]]); a "
          "name's IPv4 and IPv6 addresses are tried in getaddrinfo's order; an IPv6 "
          "address without brackets, as 2.6", "c"),
    _spec("proto", "1", IMPLEMENTED, "udp, tcp-client (tcp with 'client') over IPv4 or "
          "IPv6; udp4/udp6, tcp4/tcp6(-client) keep one family; tcp-server is refused",
          "c"),
    _spec("port", "1", IMPLEMENTED, "the default port of remotes without their own", "c"),
    _spec("rport", "1", IMPLEMENTED, "the default port of remotes without their own", "c"),
    _spec("connection", "1-2", IMPLEMENTED, "<connection> blocks: extra remotes tried in "
          "order, each with its own connection options", "i"),
    _spec("remote-random", "0", IMPLEMENTED, "remotes shuffled when the profile is read"),
    _spec("remote-random-hostname", "0", IMPLEMENTED, "a random 12-hex-digit label is "
          "prepended to remote names, new on every try"),
    _spec("connect-retry", "1-2", IMPLEMENTED, "reconnecting waits n s between rounds of "
          "the remotes, doubling after 5 rounds up to max (300), as 2.6; a <connection> "
          "block's own applies after that remote failed", "c"),
    _spec("connect-retry-max", "1", IMPLEMENTED, "reconnecting gives up after n rounds of "
          "the remotes", "c"),
    _spec("connect-timeout", "1", IMPLEMENTED, "how long one try of a remote may take", "c"),
    _spec("server-poll-timeout", "1", IMPLEMENTED, "alias of connect-timeout", "c"),
    _spec("resolv-retry", "1", IMPLEMENTED, "N: a name that fails to resolve for N s ends "
          "the tunnel, as 2.6 exits; 'infinite' (the default): tried again every round"),
    _spec("preresolve", "0-1", IGNORED, "names are resolved when a remote is tried"),
    _spec("ip-remote-hint", "0-1", IGNORED, "names are resolved when a remote is tried"),
    _spec("nobind", "0", IGNORED, "erebus never binds a fixed local port", "c"),
    _spec("bind", "0-1", IGNORED, "erebus lets the system choose the local address", "c"),
    _spec("local", "1", IGNORED, "erebus lets the system choose the local address", "c"),
    _spec("lport", "1", IGNORED, "erebus lets the system choose the local port", "c"),
    _spec("float", "0", IGNORED, "erebus talks to the address it connected to", "c"),
    _spec("proto-force", "1", REFUSED, "forcing one protocol over the remotes' own is not "
          "supported: delete the line and keep only the remotes (or <connection> blocks) "
          "of that protocol"),
    _spec("http-proxy", "1-4", IMPLEMENTED, "HTTP CONNECT through a proxy, TCP only "
          "(HOST PORT, then AUTHFILE [basic], auto or auto-nct); NTLM is refused", "c"),
    _spec("socks-proxy", "1-3", IMPLEMENTED, "through a SOCKS5 proxy (HOST [PORT "
          "[AUTHFILE]]): CONNECT for TCP, UDP ASSOCIATE for UDP", "c"),
    _spec("http-proxy-user-pass", "1+", IMPLEMENTED, "the HTTP proxy's username and "
          "password (a file or inline); overrides http-proxy's AUTHFILE", "i"),
    _spec("http-proxy-option", "1-3", IMPLEMENTED, "VERSION 1.0 or 1.1, AGENT, "
          "CUSTOM-HEADER (EXT1, EXT2) of the CONNECT request", "c"),
    _spec("http-proxy-timeout", "1", IGNORED, "deprecated: connect-timeout bounds the "
          "whole connection", "c", warning="DEPRECATED OPTION: http-proxy-timeout"),
    _spec("http-proxy-retry", "*", IGNORED, "deprecated; only used with a proxy", "c",
          warning="DEPRECATED OPTION: http-proxy-retry and socks-proxy-retry"),
    _spec("socks-proxy-retry", "*", IGNORED, "deprecated; only used with a proxy", "c",
          warning="DEPRECATED OPTION: http-proxy-retry and socks-proxy-retry"),
    _spec("http-proxy-override", "2-3", REFUSED, _MGMT + " (the option is only for "
          "it): put 'http-proxy HOST PORT' in the profile instead"),
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
    _spec("tun-ipv6", "0", IGNORED, "obsolete: IPv6 needs nothing special (pushed, it is a "
          "no-op too)", warning="Note: option tun-ipv6 is ignored "
          "because modern operating systems do not need special IPv6 tun handling anymore."),
    _spec("ifconfig", "2", IMPLEMENTED, "addresses of a static-key tunnel (ignored "
          "otherwise: the server pushes them)"),
    _spec("ifconfig-ipv6", "2", IMPLEMENTED, "ADDR/BITS REMOTE (/64 to /124): the tunnel's "
          "IPv6 address; a static-key tunnel's, or a TLS client's until the server pushes "
          "one (pushed, it is the usual way to get IPv6)"),
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
    _spec("route-ipv6", "1-3", IMPLEMENTED, "NET/BITS [GATEWAY [METRIC]]: IPv6 networks "
          "reached through the tunnel (reported; pushed ones add to them); " + _NO_ROUTES),
    _spec("route-gateway", "1", IGNORED, _NO_ROUTES),
    _spec("route-ipv6-gateway", "1", IMPLEMENTED, "the IPv6 routes' gateway (default: "
          "ifconfig-ipv6's REMOTE), reported; " + _NO_ROUTES),
    _spec("route-metric", "1", IGNORED, _NO_ROUTES),
    _spec("route-delay", "0-2", IGNORED, _NO_ROUTES),
    _spec("route-noexec", "0", IGNORED, _NO_ROUTES),
    _spec("route-nopull", "0", IGNORED, _NO_ROUTES),
    _spec("route-method", "1", IGNORED, _WINDOWS, "w"),
    _spec("max-routes", "0-1", IGNORED, "obsolete", warning="DEPRECATED OPTION: "
          "--max-routes option ignored."),
    _spec("redirect-gateway", "*", IGNORED, _NO_ROUTES),
    _spec("redirect-private", "*", IGNORED, _NO_ROUTES),
    _spec("block-ipv6", "0", IMPLEMENTED, "IPv6 packets are never sent to the server: "
          "answered with ICMPv6 no route to host, as 2.6's client does (also when pushed)"),
    _spec("client-nat", "4", IGNORED, _NO_ROUTES),
    _spec("allow-recursive-routing", "0", IGNORED, _NO_ROUTES),
    _spec("allow-pull-fqdn", "0", IGNORED, _NO_ROUTES),
    _spec("pull-filter", "2", IMPLEMENTED, "accept, ignore or reject TEXT: pushed options "
          "starting with TEXT kept, dropped, or the session restarted, the first match "
          "deciding, as 2.6 ('pull-filter ignore \"ifconfig-ipv6\"' keeps IPv6 out)"),
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
    _spec("mssfix", "0-2", IMPLEMENTED, "caps the MSS of erebus's TCP as 2.6 computes it "
          "(default: 1492 mtu)", "c"),
    _spec("mtu-disc", "1", IGNORED, _SOCKET, "c"),
    _spec("mtu-test", "0", IGNORED, "an MTU test at start-up is not done"),
    _spec("fragment", "1-2", REFUSED, "internal fragmentation changes the data channel "
          "format and erebus does not speak it: both ends must agree, so ask the server's "
          "admin for 'mssfix' instead of 'fragment', or use the stock client", "c"),
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
    _spec("shaper", "1", REFUSED, "traffic shaping is not supported: delete the "
          "line (erebus does not limit its own sending rate)"),
    _spec("keepalive", "2", IMPLEMENTED, "ping and ping-restart"),
    _spec("ping", "1", IMPLEMENTED, "keepalive pings through the tunnel"),
    _spec("ping-restart", "1", IMPLEMENTED, "a new session when the server goes quiet"),
    _spec("ping-exit", "1", IGNORED, "erebus reconnects instead (ping-restart)"),
    _spec("ping-timer-rem", "0", IGNORED, "erebus's timers run whether or not a peer "
          "answered"),
    _spec("inactive", "1-2", IGNORED, "erebus stays up until it is told to stop"),
    _spec("session-timeout", "1", IGNORED, "erebus stays up until it is told to stop"),
    _spec("explicit-exit-notify", "0-1", IMPLEMENTED, "N: over UDP the exit notice is "
          "resent once a second for N seconds (erebus sends it once without the option)",
          "c"),
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
    _spec("gremlin", "1", REFUSED, "a debugging aid of the stock client that "
          "damages traffic on purpose: delete the line"),
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
          "interface are not supported: give the key as a file ('key' or 'pkcs12')"),
    _spec("management-external-cert", "1", REFUSED, "external certificates via the "
          "management interface are not supported: give the certificate as a file ('cert' "
          "or 'pkcs12')"),
    _spec("plugin", "1+", REFUSED, "plugins cannot be loaded; what they would check or "
          "provide would be missing: use the stock client for a profile that needs its "
          "plugin"),
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
    _spec("tls-verify", "1+", REFUSED, "erebus never runs scripts, so this check of the "
          "server cannot be made: express it with verify-x509-name, remote-cert-tls or "
          "peer-fingerprint and delete the line"),
    _spec("tls-export-cert", "1", IGNORED, _NO_SCRIPTS),
    # -- TLS mode and the server's certificate
    _spec("client", "0", IMPLEMENTED, "TLS client that pulls its settings"),
    _spec("tls-client", "0", IMPLEMENTED, "TLS client"),
    _spec("pull", "0", IMPLEMENTED, "the server's pushed settings are used"),
    _spec("ca", "1", IMPLEMENTED, "the CA the server's certificate must chain to", "i"),
    _spec("capath", "1", IMPLEMENTED, "CA certificates and CRLs of a directory in OpenSSL's "
          "hashed layout (openssl rehash), read when the profile is"),
    _spec("cert", "1", IMPLEMENTED, "the client certificate (and its chain)", "i"),
    _spec("key", "1", IMPLEMENTED, "the client's private key; encrypted keys ask for their "
          "passphrase (askpass or the terminal)", "i"),
    _spec("extra-certs", "1", IMPLEMENTED, "sent with the client certificate", "i"),
    _spec("pkcs12", "1", IMPLEMENTED, "certificate, key and CA from a PKCS#12 bundle "
          "(passphrase from askpass or the terminal)", "i"),
    _spec("askpass", "0-1", IMPLEMENTED, "the passphrase of the private key or PKCS#12 "
          "bundle: from FILE, or asked on the terminal"),
    _spec("dh", "1", IGNORED, "Diffie-Hellman parameters are for servers", "i"),
    _spec("crl-verify", "1-2", IMPLEMENTED, "the server's chain is checked against the "
          "CRLs; with 'dir', a file named by a certificate's decimal serial revokes it",
          "i"),
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
    _spec("verify-hash", "1-2", IMPLEMENTED, "deprecated; the SHA1 or SHA256 fingerprint "
          "of the CA that signed the server's certificate (depth 1) must match", "i"),
    _spec("peer-fingerprint", "1", IMPLEMENTED, "the server certificate's SHA256 fingerprint "
          "must be listed; without 'ca' it replaces the CA (2.6's PKI-less mode)", "i"),
    _spec("x509-track", "1", IGNORED, "exports certificate fields to scripts"),
    _spec("x509-username-field", "1+", IGNORED, "a server option"),
    _spec("tls-version-min", "1-2", IMPLEMENTED, "lowest TLS version offered"),
    _spec("tls-version-max", "1", IMPLEMENTED, "highest TLS version offered"),
    _spec("tls-cipher", "1", IMPLEMENTED, "TLS 1.2 cipher list"),
    _spec("tls-ciphersuites", "1", IMPLEMENTED, "TLS 1.3 cipher suites"),
    _spec("tls-groups", "1", IMPLEMENTED, "the TLS key-exchange groups offered (OpenSSL "
          "names)"),
    _spec("ecdh-curve", "1", IGNORED, "erebus offers OpenSSL's default groups"),
    _spec("tls-cert-profile", "1", IMPLEMENTED, "an OpenSSL security level, as 2.6 maps it "
          "(insecure 0, legacy 1, the default, preferred 2, suiteb 3)"),
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
    _spec("tls-crypt-v2", "1-2", IMPLEMENTED, "client-specific tls-crypt key (the wrapped "
          "key is sent to the server; 2.6's early negotiation)", "ic"),
    _spec("tls-crypt-v2-verify", "1", REFUSED, _SERVER),
    _spec("key-direction", "1", IMPLEMENTED, "direction of the tls-auth or static key",
          "c"),
    _spec("secret", "1-2", IMPLEMENTED, "static-key mode (deprecated by OpenVPN)", "i"),
    _spec("tls-server", "0", REFUSED, _SERVER),
    _spec("keying-material-exporter", "2+", IGNORED, "exports key material to scripts"),
    _spec("cryptoapicert", "1", REFUSED, "the Windows certificate store is not available: "
          "export the certificate with its key to a PKCS#12 file and give it with 'pkcs12'",
          "w"),
    _spec("engine", "0-1", REFUSED, "OpenSSL engines are not supported: give the key "
          "as a file ('key' or 'pkcs12')"),
    _spec("providers", "1+", IMPLEMENTED, "'legacy', 'default' and 'base' are accepted (the "
          "crypto library erebus uses loads the algorithms it has); any other provider "
          "is refused"),
    _spec("pkcs11-providers", "1+", REFUSED, _PKCS11),
    _spec("pkcs11-protected-authentication", "*", REFUSED, _PKCS11),
    _spec("pkcs11-private-mode", "1+", REFUSED, _PKCS11),
    _spec("pkcs11-cert-private", "*", REFUSED, _PKCS11),
    _spec("pkcs11-pin-cache", "1", REFUSED, _PKCS11),
    _spec("pkcs11-id", "1", REFUSED, _PKCS11),
    _spec("pkcs11-id-management", "0", REFUSED, _PKCS11),
    _spec("show-pkcs11-ids", "0-2", REFUSED, _STANDALONE),
    _spec("use-prediction-resistance", "0", IGNORED, "the system's random source is used"),
    # -- username / password
    _spec("auth-user-pass", "0-1", IMPLEMENTED, "username and password (from the file, "
          "inline, or asked on the terminal)", "i"),
    _spec("auth-retry", "1", IMPLEMENTED, "after AUTH_FAILED: none stops, nointeract "
          "tries again with the same credentials, interact asks for them again on the "
          "terminal (and answers a dynamic challenge, CRV1)"),
    _spec("auth-nocache", "0", IMPLEMENTED, "what was asked on the terminal is forgotten "
          "once a session sent it: a reconnect without an auth-token asks again "
          "(credentials from a file stay in memory)"),
    _spec("auth-token", "1", IGNORED, "auth-tokens come from the server"),
    _spec("auth-token-user", "1", IGNORED, "auth-tokens come from the server"),
    _spec("static-challenge", "2-3", IMPLEMENTED, "TEXT ECHO [FORMAT]: the response is asked "
          "on the terminal and sent as SCRV1 (or concat, FORMAT as in OpenVPN 2.7)"),
    _spec("push-peer-info", "0", IGNORED, "erebus sends its own peer info"),
    # -- data channel
    _spec("data-ciphers", "1", IMPLEMENTED, "ciphers offered to the server (AEAD, AES/"
          "Camellia/SEED/SM4 and legacy 64-bit CBC ciphers)"),
    _spec("ncp-ciphers", "1", IMPLEMENTED, "old name of data-ciphers"),
    _spec("data-ciphers-fallback", "1", IMPLEMENTED, "cipher of a server that does not "
          "negotiate (BF-CBC and other legacy CBC ciphers included)"),
    _spec("cipher", "1", IMPLEMENTED, "static-key mode's cipher (default BF-CBC, as by 2.6); "
          "with TLS ignored for negotiation, as by 2.6 (warned when not in `data-ciphers`)"),
    _spec("auth", "1", IMPLEMENTED, "HMAC digest of CBC ciphers, tls-auth and static keys "
          "(MD5, SHA1, SHA2, SHA3, RIPEMD160 ..., any OpenSSL spelling)"),
    _spec("replay-window", "0-2", IMPLEMENTED, "size of the replay window"),
    _spec("replay-persist", "1", IGNORED, "replay state is kept in memory"),
    _spec("no-replay", "0", REFUSED, "turning replay protection off changes the data "
          "channel and weakens it; not supported: delete the line (and on the server)"),
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
    _spec("peer-id", "1", REFUSED, "the peer-id is pushed by the server: delete "
          "the line"),
    _spec("opt-verify", "0", IGNORED, "deprecated", warning="DEPRECATION: opt-verify is "
          "deprecated and will be removed in OpenVPN 2.7"),
    _spec("compat-mode", "1-2", IGNORED, "erebus speaks to 2.4 and later servers whatever "
          "this says"),
    _spec("disable-occ", "0", IGNORED, "erebus sends no options-consistency strings"),
    _spec("vlan-tagging", "0", REFUSED, _VLAN),
    _spec("vlan-accept", "1", REFUSED, _VLAN),
    _spec("vlan-pvid", "1", REFUSED, _VLAN),
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
    _spec("ifconfig-ipv6-pool", "1", REFUSED, "a server option; erebus is a client (2.6 "
          "refuses it too: --ifconfig-ipv6-pool requires --mode server): delete the line "
          "(the server pushes the client its ifconfig-ipv6)"),
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
          "which does not know it: delete the line", "u"),
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
          "know it: delete the line", "u"),
]

OPTIONS: dict[str, OptionSpec] = {s.name: s for s in _REGISTRY}
assert len(OPTIONS) == len(_REGISTRY), "an option is registered twice"
