"""Writes the test profiles of this folder and their TEST-ONLY key material.

    .venv/bin/python -m tests.profiles.generate

Each profile imitates what a provider or generator produces (openvpn-install scripts,
Access Server, pfSense/OPNsense exports, routers, cloud consoles), or is broken the way
real profiles get broken.  Its first lines say what ``erebus check`` must find::

    # erebus-test: expect ok
    # erebus-test: expect LINE OPTION           a problem on that line of the profile
    # erebus-test: expect FILE:LINE OPTION      a problem inside a file it names
    # erebus-test: expect - OPTION              a problem of the whole profile
    # erebus-test: exit N                       another exit status than 0 / 1

Only addresses of 198.18.0.0/15 and documentation names (*.example.com) appear; every
key is a throwaway made by tests/profiles/pki.py and protects nothing.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from tests.profiles import pki as P

HERE = Path(__file__).parent
PASSPHRASE = "test-only"

X = object()        # marks the expected-problem lines in a template


def write_pki(folder: Path) -> dict[str, str]:
    """The material, written under folder/, and its texts for inlining."""
    folder.mkdir(exist_ok=True)
    ca = P.Pki("Test-Only CA")
    _, ns_server = P.make_cert(ca.ca_key, ca.ca, "legacy-server", eku=False, ku=False,
                               extra_extensions=[(x509.UnrecognizedExtension(
                                   ObjectIdentifier("2.16.840.1.113730.1.1"),
                                   bytes([0x03, 0x02, 0x06, 0x40])), False)])
    other_key = P.new_key()
    dump = ("Certificate:\n    Data:\n        Version: 3 (0x2)\n        Subject: O=erebus "
            "test-only, CN=Test-Only CA\n        (a text dump like easy-rsa writes; "
            "TEST-ONLY)\n")
    texts = {
        "ca": P.cert_pem(ca.ca),
        "ca_dump": dump + P.cert_pem(ca.ca),
        "cert": P.cert_pem(ca.client),
        "key": P.key_pem(ca.client_key),
        "key_encrypted": P.key_pem(ca.client_key, PASSPHRASE),
        "key_legacy_encrypted": P.key_pem(ca.client_key, PASSPHRASE, legacy=True),
        "other_key": P.key_pem(other_key),
        "ta": P.static_key(),
        "tcv2": P.tls_crypt_v2_client_key(),
        "crl": P.crl_pem(P.make_crl(ca.ca_key, ca.ca, revoked=[0x1234])),
    }
    files = {
        "ca.crt": texts["ca_dump"], "client.crt": texts["cert"], "client.key": texts["key"],
        "client-encrypted.key": texts["key_encrypted"], "ta.key": texts["ta"],
        "crl.pem": texts["crl"], "passphrase.txt": PASSPHRASE + "\n",
        "user.txt": "alice\ntest-only-password\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "client.p12").write_bytes(P.p12(ca.client_key, ca.client, [ca.ca]))
    locked = P.p12(ca.client_key, ca.client, [ca.ca], PASSPHRASE)
    (folder / "client-locked.p12").write_bytes(locked)
    import base64
    texts["p12_locked_b64"] = base64.encodebytes(locked).decode()
    texts["p12_b64"] = base64.encodebytes((folder / "client.p12").read_bytes()).decode()
    (folder / "README").write_text(
        "TEST-ONLY key material for erebus's profile tests, made by "
        "tests/profiles/generate.py.\nIt protects nothing; never use it for anything "
        f"else. Passphrase of the encrypted ones: {PASSPHRASE}\n")
    return texts


def block(tag: str, text: str) -> list:
    return [f"<{tag}>", *text.rstrip("\n").split("\n"), f"</{tag}>"]


def fingerprint(pem: str) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as openssl x509 -fingerprint
    prints it (what peer-fingerprint takes)."""
    from cryptography.hazmat.primitives import hashes
    digest = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def profiles(t: dict[str, str]) -> dict[str, list]:
    pki = [*block("ca", t["ca"]), *block("cert", t["cert"]), *block("key", t["key"])]
    pin = fingerprint(t["ca"])       # stands for a self-signed server's certificate
    return {
        # openvpn-install (angristan): tls-crypt, Windows-only DNS option skipped twice
        "openvpn-install-angristan.ovpn": [
            "client", "proto udp", "explicit-exit-notify", "remote 198.18.10.1 1194",
            "dev tun", "resolv-retry infinite", "nobind", "persist-key", "persist-tun",
            "remote-cert-tls server", "verify-x509-name server_Xb7kQ2 name", "auth SHA256",
            "auth-nocache", "cipher AES-128-GCM", "tls-client", "tls-version-min 1.2",
            "tls-cipher TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
            "ignore-unknown-option block-outside-dns",
            "setenv opt block-outside-dns # Prevent Windows 10 DNS leak", "verb 3",
            *pki, *block("tls-crypt", t["ta"])],
        # openvpn-install (Nyr): CRLF line endings, tls-crypt, the CA with a text dump
        "openvpn-install-nyr.ovpn": [
            "client", "dev tun", "proto udp", "remote 198.18.10.2 1194",
            "resolv-retry infinite", "nobind", "persist-key", "persist-tun",
            "remote-cert-tls server", "auth SHA512", "ignore-unknown-option "
            "block-outside-dns block-ipv6", "verb 3", *block("ca", t["ca_dump"]),
            *block("cert", t["cert"]), *block("key", t["key"]),
            *block("tls-crypt", t["ta"])],
        # OpenVPN Access Server: setenv lines, two remotes (udp then tcp), user/password
        "access-server.ovpn": [
            "# Automatically generated OpenVPN client config file",
            "# OVPN_ACCESS_SERVER_PROFILE=alice@vpn.example.com",
            "setenv FORWARD_COMPATIBLE 1", "client", "server-poll-timeout 4", "nobind",
            "remote vpn.example.com 1194 udp", "remote vpn.example.com 443 tcp",
            "dev tun", "dev-type tun", "remote-cert-tls server", "tls-version-min 1.2",
            "reneg-sec 604800", "tun-mtu 1420", "auth-user-pass", "verb 3",
            "push-peer-info", "setenv PUSH_PEER_INFO", "setenv opt block-outside-dns",
            "frobnicate-from-the-future on", *block("ca", t["ca"]),
            "key-direction 1", *block("tls-auth", t["ta"])],
        # pfSense client export (separate files): PKCS#12 bundle and tls-auth key file
        "pfsense-export.ovpn": [
            "dev tun", "persist-tun", "persist-key",
            "data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305",
            "data-ciphers-fallback AES-256-CBC", "auth SHA256", "tls-client", "client",
            "resolv-retry infinite", "remote 198.18.10.3 1194 udp4", "nobind",
            "verify-x509-name \"server\" name", "auth-user-pass pki/user.txt",
            "remote-cert-tls server", "explicit-exit-notify", "pkcs12 pki/client.p12",
            "tls-auth pki/ta.key 1"],
        # OPNsense export, inline, with a locked PKCS#12 (the passphrase will be asked)
        "opnsense-inline-p12.ovpn": [
            "dev tun", "persist-tun", "persist-key", "cipher AES-256-GCM", "auth SHA512",
            "client", "resolv-retry infinite", "remote 198.18.10.4 1194 udp",
            "lport 0", "verify-x509-name \"server\" name", "remote-cert-tls server",
            *block("pkcs12", t["p12_locked_b64"]), "key-direction 1",
            *block("tls-auth", t["ta"])],
        # ASUS router export: username/password, comp-lzo, legacy CBC
        "router-asus.ovpn": [
            "remote 198.18.10.5 1194", "float", "nobind", "proto udp", "dev tun",
            "sndbuf 0", "rcvbuf 0", "keepalive 15 60", "auth-user-pass", "client",
            "auth SHA1", "cipher AES-128-CBC", "comp-lzo adaptive", "resolv-retry infinite",
            "persist-key", "persist-tun", "remote-cert-tls server", *block("ca", t["ca"])],
        # an old DD-WRT style profile: ns-cert-type, files, a CRL, TCP
        "router-ddwrt-files.ovpn": [
            "client", "dev tun", "proto tcp-client", "remote vpn.example.com 443",
            "ca pki/ca.crt", "cert pki/client.crt", "key pki/client.key",
            "ns-cert-type server", "crl-verify pki/crl.pem", "cipher AES-256-CBC",
            "auth SHA256", "verb 3"],
        # AWS Client VPN style: remote-random-hostname, reneg-sec 0
        "cloud-aws.ovpn": [
            "client", "dev tun", "proto udp",
            "remote cvpn-endpoint-0123456789abcdef.prod.vpn.example.com 443",
            "remote-random-hostname", "resolv-retry infinite", "nobind",
            "remote-cert-tls server", "cipher AES-256-GCM", "verb 3", *pki,
            "reneg-sec 0"],
        # Azure VPN gateway style: TCP, tls-auth, key-direction, quoted single-quote name
        "cloud-azure.ovpn": [
            "client", "remote azuregateway-0123.vpn.example.com 443",
            "verify-x509-name 'server' name", "remote-cert-tls server", "dev tun",
            "proto tcp", "resolv-retry infinite", "nobind", "auth SHA256",
            "cipher AES-256-GCM", "persist-key", "persist-tun", "tls-timeout 30",
            "tls-version-min 1.2", "key-direction 1", "log openvpn.log", "verb 3",
            *block("ca", t["ca"]), *block("tls-auth", t["ta"]), *block("cert", t["cert"]),
            *block("key", t["key"])],
        # <connection> blocks (OpenVPN Connect / Tunnelblick style), remote-random
        "connection-blocks.ovpn": [
            "client", "dev tun", "nobind", "remote-random", "connect-retry 2 30",
            "<connection>", "remote 198.18.10.6 1194 udp", "connect-timeout 10",
            "</connection>", "<connection>", "remote 198.18.10.7 443", "proto tcp",
            "explicit-exit-notify 2", "</connection>", "remote-cert-tls server", *pki],
        # an encrypted key with askpass FILE; a missing final newline
        "encrypted-key-askpass.ovpn": [
            "client", "dev tun", "remote 198.18.10.8 1194", "remote-cert-tls server",
            "askpass pki/passphrase.txt", *block("ca", t["ca"]),
            *block("cert", t["cert"]), *block("key", t["key_legacy_encrypted"])],
        # an encrypted key and no askpass: check says the passphrase will be asked
        "encrypted-key-prompt.ovpn": [
            "client", "dev tun", "remote 198.18.10.9 1194", "remote-cert-tls server",
            "ca pki/ca.crt", "cert pki/client.crt", "key pki/client-encrypted.key"],
        # inline crl-verify, UTF-8 BOM, mixed line endings
        "crl-inline-bom.ovpn": [
            "client", "dev tun", "remote 198.18.10.10 1194", "remote-cert-tls server",
            *pki, *block("crl-verify", t["crl"])],
        # -- broken ones
        # a provider's tls-crypt-v2 profile: the client-specific key inline, PKI in files
        "tls-crypt-v2-inline.ovpn": [
            "client", "dev tun", "proto udp", "remote 198.18.10.20 1194", "nobind",
            "remote-cert-tls server", "ca pki/ca.crt", "cert pki/client.crt",
            "key pki/client.key", *block("tls-crypt-v2", t["tcv2"])],
        # the same, with the wrapped client key cut short (its length no longer matches)
        "broken-tls-crypt-v2.ovpn": [
            "client", "dev tun", "remote 198.18.11.20 1194", "remote-cert-tls server",
            "ca pki/ca.crt", "cert pki/client.crt", "key pki/client.key", "<tls-crypt-v2>",
            ("-----BEGIN OpenVPN tls-crypt-v2 client key-----", X, "tls-crypt-v2"),
            *t["tcv2"].split("\n")[1:-3], t["tcv2"].split("\n")[-3][:-4],
            "-----END OpenVPN tls-crypt-v2 client key-----", "</tls-crypt-v2>"],
        "broken-truncated-key.ovpn": [
            "client", "dev tun", "remote 198.18.11.1 1194", *block("ca", t["ca"]),
            *block("cert", t["cert"]),
            ("<key>", X, "key"), *t["key"].split("\n")[:3]],
        "broken-stray-end-tag.ovpn": [
            "client", "dev tun", "remote 198.18.11.2 1194", *pki,
            ("</ca>", X, "ca")],
        "broken-empty-and-cut-pem.ovpn": [
            "client", "dev tun", "remote 198.18.11.3 1194", "<ca>",
            ("-----BEGIN CERTIFICATE-----", X, "ca"), "-----END CERTIFICATE-----", "</ca>",
            "<cert>", ("-----BEGIN CERTIFICATE-----", X, "cert"),
            *t["cert"].split("\n")[1:4], "</cert>", *block("key", t["key"])],
        "broken-many-problems.ovpn": [
            "client", ("dev tap", X, "dev"), "remote 198.18.11.4 1194",
            ("fragment 1300", X, "fragment"), ("frobnicate yes", X, "frobnicate"),
            ("proto udp tcp", X, "proto"), ("cipher ARIA-256-CBC", X, "cipher"),
            ("http-proxy proxy.example.com 8080", X, "http-proxy"), *pki],
        # A 2.6 profile for an old BF-CBC server (cipher-negotiation.rst): BF-CBC offered
        # in data-ciphers and as the fallback, HMAC-MD5, the legacy provider OpenSSL 3
        # needs for Blowfish, a Camellia key spelt as OpenSSL aliases it
        "legacy-bf-cbc-server.ovpn": [
            "client", "dev tun", "proto udp", "remote 198.18.11.20 1194", "nobind",
            "remote-cert-tls server", "providers legacy default",
            "data-ciphers AES-256-GCM:AES-128-GCM:bf:camellia256",
            "data-ciphers-fallback BF-CBC", "auth md5", "reneg-bytes 0", *pki],
        # What 2.6 refuses or erebus cannot run: a cipher cryptography lacks, a CFB-mode
        # fallback, an extendable-output "digest", a hardware-key provider
        "broken-legacy-algorithms.ovpn": [
            "client", "dev tun", "remote 198.18.11.21 1194", "remote-cert-tls server",
            ("cipher ARIA-128-CBC", X, "cipher"), ("data-ciphers-fallback BF-OFB", X,
                                                   "data-ciphers-fallback"),
            ("auth SHAKE128", X, "auth"), ("providers legacy pkcs11", X, "providers"),
            *pki],
        # tls-auth needs an HMAC: 2.6 refuses 'auth none' with it (init.c)
        "broken-tls-auth-auth-none.ovpn": [
            "client", "dev tun", "remote 198.18.11.22 1194", "remote-cert-tls server",
            "data-ciphers AES-256-CBC", ("auth none", X, "auth"), *pki, "key-direction 1",
            *block("tls-auth", t["ta"])],
        "broken-openvpn-2.3-era.ovpn": [
            "client", "dev tun", "remote 198.18.11.5 1194", "ns-cert-type server",
            ("key-method 2", X, "key-method"), ("tls-remote server", X, "tls-remote"),
            ("ncp-disable", X, "ncp-disable"), ("no-iv", X, "no-iv"), "comp-lzo", *pki],
        "broken-windows-path.ovpn": [
            "client", "dev tun", "remote 198.18.11.6 1194",
            ("ca \"C:\\Program Files\\OpenVPN\\config\\ca.crt\"", X, "ca"),
            "cert pki/client.crt", "key pki/client.key"],
        "broken-key-mismatch.ovpn": [
            "client", "dev tun", "remote 198.18.11.7 1194", *block("ca", t["ca"]),
            *block("cert", t["cert"]), ("<key>", X, "key"), *t["other_key"].rstrip().split(
                "\n"), "</key>"],
        "broken-missing-files.ovpn": [
            "client", "dev tun", "remote 198.18.11.8 1194", ("ca pki/nowhere.crt", X, "ca"),
            "cert pki/client.crt", "key pki/client.key",
            ("tls-auth [inline] 1", X, "tls-auth")],
        "broken-connection-block.ovpn": [
            "client", "dev tun", *block("ca", t["ca"]), *block("cert", t["cert"]),
            *block("key", t["key"]), ("<connection>", X, "connection"),
            "proto tcp", "</connection>", "<connection>", "remote 198.18.11.9 1194",
            ("verb 3", X, "verb"), "</connection>"],
        "broken-wrong-passphrase.ovpn": [
            "client", "dev tun", "remote 198.18.11.10 1194",
            ("askpass pki/user.txt", X, "askpass"), "ca pki/ca.crt", "cert pki/client.crt",
            "key pki/client-encrypted.key"],
        # 2.6's PKI-less setup (man page, example-fingerprint.rst): no ca, the server's
        # fingerprint pinned (a line, and an inline block with a spare and comments)
        "pki-less-peer-fingerprint.ovpn": [
            "client", "dev tun", "remote 198.18.10.11 1194", "tun-mtu 1400",
            *block("cert", t["cert"]), *block("key", t["key"]),
            "# This is the fingerprint of the server that we trust",
            f"peer-fingerprint {pin}",
            *block("peer-fingerprint", f"# the next server\n{pin.lower()}\n; spare\n"
                   f"{':'.join(['5A'] * 32)}"),
            "tls-groups X25519:secp256r1", "tls-cert-profile preferred"],
        # pinning and TLS options the way people get them wrong
        "broken-pinning.ovpn": [
            "client", "dev tun", "remote 198.18.11.15 1194", *pki,
            (f"peer-fingerprint SHA256:{pin}", X, "peer-fingerprint"),
            (f"verify-hash {pin}", X, "verify-hash"),
            ("tls-groups X25519:P-999", X, "tls-groups"),
            ("tls-cert-profile strict", X, "tls-cert-profile"),
            ("crl-verify pki/nowhere dir", X, "crl-verify"),
            ("capath pki/nowhere", X, "capath")],
        "broken-no-remote-no-ca.ovpn": [
            "client", "dev tun", "auth-user-pass", "verb 3"],
        # the stock client's "No client-side authentication method is specified", and
        # a problem on a line: both in one pass
        "broken-no-client-auth.ovpn": [
            "client", "dev tun", "remote 198.18.11.11 1194", *block("ca", t["ca"]),
            ("mssfix 1400 bytes", X, "mssfix")],
        # mssfix in every form 2.6 knows, also per <connection>; explicit-exit-notify
        "mssfix-forms.ovpn": [
            "client", "dev tun", *block("ca", t["ca"]), *block("cert", t["cert"]),
            *block("key", t["key"]), "mssfix 1400 mtu", "explicit-exit-notify 2",
            "<connection>", "remote 198.18.11.12 1194", "mssfix 1300", "</connection>",
            "<connection>", "remote 198.18.11.13 1194", "mssfix 0",
            "explicit-exit-notify", "</connection>",
            "<connection>", "remote 198.18.11.14 1194", "mssfix", "</connection>"],
        # an MFA provider's profile: password asked, then a one-time code (SCRV1), a
        # dynamic challenge answered (auth-retry interact), nothing cached
        "mfa-otp.ovpn": [
            "client", "dev tun", "proto udp", "remote 198.18.10.30 1194", "nobind",
            "remote-cert-tls server", "auth-user-pass", "auth-nocache",
            "static-challenge \"Enter Authenticator Code\" 1", "auth-retry interact",
            "reneg-sec 0", "ca pki/ca.crt", "cert pki/client.crt", "key pki/client.key"],
        "broken-mfa.ovpn": [
            "client", "dev tun", "remote 198.18.11.30 1194", "remote-cert-tls server",
            "auth-user-pass", ("auth-retry always", X, "auth-retry"),
            ("static-challenge \"PIN\" 1 base32", X, "static-challenge"),
            "ca pki/ca.crt", "cert pki/client.crt", "key pki/client.key"],
        # IPv6 transport: an address, a name of both families, the family forced
        "ipv6-remotes.ovpn": [
            "client", "dev tun", "proto udp", "remote 2001:2::1 1194 udp6",
            "remote vpn.example.com 1194", "remote vpn.example.com 443 tcp6",
            "remote 198.18.10.30 443 tcp4-client", "remote-cert-tls server",
            *block("ca", t["ca"]), *block("cert", t["cert"]), *block("key", t["key"])],
        # what 2.6 cannot resolve: brackets, an IPv4 address that inherits udp6 from
        # 'proto' (remote's 'udp' has no family), an upper-case protocol, a server's
        "broken-ipv6-remotes.ovpn": [
            "client", "dev tun", "proto udp6", ("remote [2001:2::1]:1194", X, "remote"),
            ("remote 198.18.11.30 1194 udp", X, "remote"),
            ("remote 2001:2::1 1194 UDP6", X, "remote"), "remote 2001:2::1 1194",
            ("proto tcp6-server", X, "proto"), *block("ca", t["ca"]),
            *block("cert", t["cert"]), *block("key", t["key"])],
        # IPv6 inside: what a provider's profile adds (issue 16), and what 2.6 refuses
        "ipv6-inside.ovpn": [
            "client", "dev tun", "proto udp", "remote 198.18.10.30 1194",
            "remote-cert-tls server", "tun-ipv6", "route-ipv6 2001:2:0:2::/64",
            "route-ipv6-gateway 2001:2:0:180::1", "dhcp-option DNS6 2001:2:0:2::2",
            "pull-filter ignore \"route-ipv6 2001:2:0:9\"", "pull-filter accept route",
            *block("ca", t["ca"]), *block("cert", t["cert"]), *block("key", t["key"])],
        "broken-ipv6-inside.ovpn": [
            "client", "dev tun", "remote 198.18.11.30 1194", "remote-cert-tls server",
            ("ifconfig-ipv6 2001:2:0:180::5/48 2001:2:0:180::1", X, "ifconfig-ipv6"),
            ("route-ipv6 2001:2:0:2::/64 vpn_gateway", X, "route-ipv6"),
            ("ifconfig-ipv6-pool 2001:2:0:180::/64", X, "ifconfig-ipv6-pool"),
            ("pull-filter drop route-ipv6", X, "pull-filter"),
            *block("ca", t["ca"]), *block("cert", t["cert"]), *block("key", t["key"])],
    }


WHOLE = {"broken-no-remote-no-ca.ovpn": ["remote", "ca"],
         "broken-no-client-auth.ovpn": ["cert"],
         }


def committed_texts() -> dict[str, str]:
    """The texts of the committed pki/ files that profiles() needs, for writing some
    profiles again without making a new PKI."""
    ca = (HERE / "pki" / "ca.crt").read_text()
    return {"ca": ca[ca.index("-----BEGIN"):], "ca_dump": ca,
            "cert": (HERE / "pki" / "client.crt").read_text(),
            "key": (HERE / "pki" / "client.key").read_text()}


def main(only: list[str] | None = None) -> None:
    """Everything, with a new PKI; or only the profiles named, from the committed one
    (``python -m tests.profiles.generate NAME.ovpn ...``)."""
    if only:
        texts = committed_texts()
        # placeholders for the material of the profiles not written
        made = profiles(collections.defaultdict(lambda: "-\n" * 8, texts))
        for name in only:
            write_profile(name, made[name])
        return
    texts = write_pki(HERE / "pki")
    for name, lines in profiles(texts).items():
        write_profile(name, lines)
    (HERE / "esp.toml").write_text("# TEST-ONLY: an ESP profile erebus cannot read yet\n"
                                   "[esp]\nremote = \"198.18.12.1\"\n")
    (HERE / "swanctl.conf").write_text("# TEST-ONLY: a swanctl.conf erebus cannot read yet\n"
                                       "connections {\n}\n")


def write_profile(name: str, lines: list) -> None:
    """One profile, with the header saying what ``erebus check`` must find."""
    marked = [(i, item[2]) for i, item in enumerate(lines) if isinstance(item, tuple)]
    whole = WHOLE.get(name, [])
    count = len(marked) + len(whole) or 1
    header = 1 + count                     # the title line and the expect lines
    expects = [f"# erebus-test: expect {header + i + 1} {option or '-'}"
               for i, option in marked]
    expects += [f"# erebus-test: expect - {option}" for option in whole]
    expects = expects or ["# erebus-test: expect ok"]
    body = [item[0] if isinstance(item, tuple) else item for item in lines]
    text = "\n".join([f"# {name}: TEST-ONLY profile (tests/profiles/generate.py)",
                      *expects, *body]) + "\n"
    if name == "openvpn-install-nyr.ovpn":
        text = text.replace("\n", "\r\n")
    if name == "crl-inline-bom.ovpn":
        text = "\ufeff" + text.replace("remote-cert-tls server\n",
                                       "remote-cert-tls server\r\n")
    if name == "encrypted-key-askpass.ovpn":
        text = text.rstrip("\n")
    (HERE / name).write_text(text, newline="")


if __name__ == "__main__":
    main(sys.argv[1:])
