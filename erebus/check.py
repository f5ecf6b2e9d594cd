"""``erebus check``: can erebus use this profile, and with what settings?

Offline by construction: the profile and the files it names are read, the key
material is parsed and loaded into a TLS context the way a connection would load
it, and nothing else happens: no name is resolved, no socket is opened, nothing is
asked for on the terminal (what would be asked is reported instead).
"""

from __future__ import annotations

import json

from .errors import ConfigError
from .openvpn.options import OPTIONS
from .openvpn.profile import KU_REQUIRED, Profile
from .openvpn.reader import Reading, read_profile

EXIT_OK = 0
EXIT_PROBLEMS = 1


class _FileOrder:
    """An rng that leaves remote-random's shuffle to connection time."""

    def shuffle(self, items) -> None:
        pass


def _problem(exc: ConfigError) -> dict:
    message = str(exc)
    prefix = ""
    if exc.path is not None:
        prefix = f"{exc.path}:{exc.line}: " if exc.line is not None else f"{exc.path}: "
    if exc.option is not None:
        prefix += f"{exc.option}: "
    reason = message[len(prefix):] if message.startswith(prefix) else message
    return {"file": exc.path, "line": exc.line, "option": exc.option, "reason": reason,
            "text": message}


def _tls_mode(p: Profile) -> dict:
    if p.static_key is not None:
        return {"mode": "static key", "option": "secret", "key_direction": p.static_direction}
    if p.tls_wrap == "tls-auth":
        return {"mode": "tls-auth", "digest": "SHA1" if p.auth == "none" else p.auth,
                "key_direction": p.tls_auth_direction}
    if p.tls_wrap in ("tls-crypt", "tls-crypt-v2"):
        return {"mode": p.tls_wrap}
    return {"mode": "none"}


def _auth(p: Profile) -> dict:
    certificate = p.cert is not None or p.pkcs12 is not None
    password = p.auth_user_pass
    if p.static_key is not None:
        mode = "static key"
    elif certificate and password:
        mode = "certificate and username/password"
    elif certificate:
        mode = "certificate"
    else:
        mode = "username/password"
    prompts = []
    if p.key_encrypted and p.key_passphrase is None:
        prompts.append("private key passphrase" if p.pkcs12 is None
                       else "PKCS#12 passphrase")
    if password and p.username is None:
        prompts.append("username")
    if password and p.password is None:
        prompts.append("password")
    if password and getattr(p, "static_challenge", None) is not None:
        prompts.append("static-challenge response")
    subject = None
    if p.cert is not None:
        from cryptography import x509

        from .openvpn.tls import openvpn_subject
        try:
            subject = openvpn_subject(x509.load_pem_x509_certificates(p.cert)[0].subject)
        except ValueError:
            subject = None
    return {"mode": mode, "client_certificate": subject,
            "key_encrypted": p.key_encrypted, "prompts": prompts,
            "credentials_from_profile": password and p.username is not None}


def _server_checks(p: Profile) -> list[str]:
    pinned = bool(p.verify_hash) and p.verify_hash_depth == 0
    out = []
    if p.static_key is None:
        if p.ca is None and p.capath is None and pinned:
            # options.c, in 2.6's words (M_INFO), then ours
            out.append("Using certificate fingerprint to verify peer (no CA option set): "
                       "the chain is not verified, the fingerprint decides")
        else:
            out.append("chain to the profile's CA" + (f" (and capath {p.capath})"
                                                      if p.capath else ""))
    if p.verify_hash:
        n = len(p.verify_hash)
        what = "peer-fingerprint" if pinned else \
            f"verify-hash {p.verify_hash_algo} (the CA that signed the server's certificate)"
        out.append(f"{what}: {n} fingerprint{'s' if n > 1 else ''}")
    if p.remote_cert_tls:
        out.append(f"remote-cert-tls {p.remote_cert_tls}")
    else:
        if p.remote_cert_ku is not None:
            out.append("remote-cert-ku " + ("(present)" if p.remote_cert_ku == KU_REQUIRED
                                            else " ".join(f"{v:02x}" for v in
                                                          p.remote_cert_ku)))
        if p.remote_cert_eku is not None:
            out.append(f"remote-cert-eku {p.remote_cert_eku!r}")
    if p.ns_cert_type:
        out.append(f"ns-cert-type {p.ns_cert_type}")
    if p.verify_x509_name:
        out.append(f"verify-x509-name {p.verify_x509_name[0]!r} {p.verify_x509_name[1]}")
    if p.crl is not None:
        out.append("crl-verify")
    if p.crl_dir is not None:
        out.append(f"crl-verify {p.crl_dir} dir")
    return out


def settings(p: Profile) -> dict:
    """What erebus will do with the profile; never a secret."""
    return {
        "remotes": [{"host": r.host, "port": r.port, "proto": r.proto, "line": r.line,
                     "family": r.family, "connection_block": r.connection,
                     "proxy": _proxy(r.proxy)}
                    for r in p.remotes],
        "remote_random": p.remote_random,
        "remote_random_hostname": p.remote_random_hostname,
        "connect_timeout": p.connect_timeout,
        "connect_retry": list(p.connect_retry),
        "connect_retry_max": p.connect_retry_max,
        "tls": _tls_mode(p),
        "data_ciphers": list(p.data_ciphers),
        "data_ciphers_fallback": p.data_ciphers_fallback,
        "cipher": p.cipher,
        "auth_digest": p.auth,
        "auth": _auth(p),
        "server_checks": _server_checks(p),
        "tls_version_min": p.tls_version_min,
        "tls_groups": p.tls_groups,
        "tls_cert_profile": p.tls_cert_profile or "legacy",
        "compression": p.compression,
        "allow_compression": p.allow_compression,
        "ipv6": _ipv6(p),
        "dns": list(p.dns),
        "pull_filters": [list(f) for f in getattr(p, "pull_filters", ())],
        "ignored": [{"line": i.line, "option": i.option, "reason": _reason(i.option)}
                    for i in p.ignored],
    }


def _ipv6(p: Profile) -> dict:
    """What the profile itself configures for IPv6 inside the tunnel (a TLS client's
    server usually pushes it: its ifconfig-ipv6 wins, its route-ipv6 lines add up)."""
    ifc = getattr(p, "ifconfig_ipv6", None)
    return {"ifconfig_ipv6": f"{ifc[0]}/{ifc[1]} {ifc[2]}" if ifc else None,
            "routes_ipv6": [r.cidr + (f" via {r.gateway}" if r.gateway else "")
                            for r in getattr(p, "routes_ipv6", ())],
            "route_ipv6_gateway": getattr(p, "route_ipv6_gateway", None),
            "dns6": [d for d in p.dns if ":" in d],
            "block_ipv6": getattr(p, "block_ipv6", False),
            "pushed": p.static_key is None}


def _proxy(proxy) -> dict | None:
    """The outer proxy of a remote, without its credentials."""
    if proxy is None:
        return None
    return {"kind": proxy.kind, "host": proxy.host, "port": proxy.port, "line": proxy.line,
            "auth": proxy.auth, "credentials": proxy.username is not None}


def _reason(option: str) -> str:
    spec = OPTIONS.get(option)
    return spec.reason if spec is not None else "unknown option, skipped as the profile asks"


def _load_like_a_connection(p: Profile) -> list[ConfigError]:
    """Load the material into a TLS context as connecting would (offline)."""
    pinned = bool(p.verify_hash) and p.verify_hash_depth == 0
    if p.static_key is not None or p.key_encrypted or (
            p.ca is None and p.capath is None and not pinned):
        return []
    try:
        p.tls_context()
    except ConfigError as exc:
        return [exc]
    return []


def check(path: str, conn: str | None = None) -> tuple[int, dict]:
    """The exit code and the report for ``path``, by its family (erebus.families)."""
    from .families import family_of
    return family_of(path).check(path, conn)


def check_openvpn(path: str) -> tuple[int, dict]:
    """An OpenVPN profile: every problem in one pass, the settings, the warnings."""
    reading: Reading = read_profile(path, rng=_FileOrder())
    problems = list(reading.problems)
    if reading.profile is not None:
        problems += _load_like_a_connection(reading.profile)
    report = {"profile": path, "ok": not problems, "format": "openvpn",
              "problems": [_problem(e) for e in problems], "warnings": reading.warnings}
    if not problems:
        report["settings"] = settings(reading.profile)
    return (EXIT_OK if not problems else EXIT_PROBLEMS), report


def check_esp(path: str) -> tuple[int, dict]:
    """An ESP profile with manual SAs (TOML)."""
    from .ipsec.profile import load_esp_profile

    def settings_of(p) -> dict:
        ip6 = {"local_ip6": f"{p.local_ip6}/{p.prefix6}"} if p.local_ip6 else {}
        return {"kind": "ipsec (manual SAs)", "peer": p.peer, "local_ip": p.local_ip, **ip6,
                "remote_ts": list(p.remote_ts), "outbound": p.outbound.transform.name,
                "inbound": p.inbound.transform.name, "dns": list(p.dns), "mtu": p.mtu}
    return _check_ipsec(path, "esp-toml", lambda: load_esp_profile(path, log_warnings=False),
                        settings_of)


def check_swanctl(path: str, conn: str | None = None) -> tuple[int, dict]:
    """A strongSwan swanctl.conf (IKEv2), the connection ``conn`` of it."""
    from .ipsec.swanctl import load_swanctl

    def settings_of(p) -> dict:
        return {"kind": "ipsec (IKEv2)", "connection": p.name,
                "remotes": [f"{a}:{p.remote_port}" for a in p.remote_addrs],
                "proposals": p.proposals, "esp_proposals": p.esp_proposals,
                "auth": f"{p.local_auth} (local), {p.remote_auth} (remote)",
                "local_id": p.local_id, "remote_id": p.remote_id,
                "virtual_ip": " and ".join((["IPv4"] if p.vips else []) +
                                           (["IPv6"] if p.vips6 else [])) or "none asked for",
                "remote_ts": p.remote_ts,
                "families": " and ".join(sorted({"IPv6" if ":" in n else "IPv4"
                                                 for n in p.remote_ts})) + " inside; IKE and "
                            "ESP over IPv4"}
    return _check_ipsec(path, "swanctl", lambda: load_swanctl(path, conn=conn), settings_of)


def check_wireguard(path: str) -> tuple[int, dict]:
    """A WireGuard wg-quick profile: every problem in one pass, our public key (derived
    from the private key, which is never shown), the peers, the warnings."""
    from .wireguard.keys import DEFAULT_MTU
    from .wireguard.profile import key_to_base64, read_wg_profile
    reading = read_wg_profile(path)
    report = {"profile": path, "ok": reading.ok, "format": "wg-quick",
              "problems": [_problem(e) for e in reading.problems],
              "warnings": list(reading.warnings)}
    p = reading.profile
    if p is None:
        return EXIT_PROBLEMS, report
    i = p.interface

    def peer(n: int, peer) -> str:
        text = f"{key_to_base64(peer.public_key)} (line {p.peer_lines[n]}): "
        text += (f"endpoint {_endpoint(peer.endpoint)}" if peer.endpoint
                 else "no endpoint")
        text += "; allowed IPs " + (", ".join(map(str, peer.allowed_ips)) or "none")
        if peer.preshared_key is not None:
            text += "; preshared key"
        if peer.persistent_keepalive:
            text += f"; keepalive every {peer.persistent_keepalive} s"
        return text
    report["settings"] = {
        "kind": "wireguard",
        "public_key": key_to_base64(p.public_key),
        "addresses": [str(a) for a in i.addresses],
        "dns": [str(d) for d in i.dns],
        "dns_search": list(i.dns_search),
        "mtu": i.mtu if i.mtu is not None else f"{DEFAULT_MTU} (default)",
        "listen_port": i.listen_port if i.listen_port is not None else "any",
        "peers": [peer(n, x) for n, x in enumerate(p.peers)],
    }
    return EXIT_OK, report


def _endpoint(endpoint: tuple[str, int]) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_ipsec(path: str, kind: str, load, settings_of) -> tuple[int, dict]:
    """An IPsec profile: the same offline verdict for both formats."""
    report = {"profile": path, "format": kind, "warnings": []}
    try:
        p = load()
        report["settings"] = settings_of(p)
        report["warnings"] = list(p.warnings)
    except ConfigError as exc:
        report.update(ok=False, problems=[_problem(exc)])
        return EXIT_PROBLEMS, report
    report.update(ok=True, problems=[])
    return EXIT_OK, report


def render(report: dict) -> str:
    if not report["ok"]:
        return "\n".join(p["text"] for p in report["problems"])
    if report["format"] != "openvpn":
        lines = [f"{report['profile']}: usable by erebus"]
        for key, value in report["settings"].items():
            if key == "peers":                    # WireGuard: one line each
                lines.append("  peers:")
                lines += [f"    {n}. {text}" for n, text in enumerate(value, 1)]
                continue
            if isinstance(value, list):
                value = ", ".join(map(str, value)) or "-"
            lines.append(f"  {key:<13} {value}")
        lines += [f"  warning: {w}" for w in report["warnings"]]
        return "\n".join(lines)
    s = report["settings"]
    lines = [f"{report['profile']}: usable by erebus"]
    order = "shuffled on every start: remote-random" if s["remote_random"] else \
        "tried in this order"
    lines.append(f"  remotes ({order}):")
    for i, r in enumerate(s["remotes"], 1):
        where = f"line {r['line']}"
        if r["connection_block"]:
            where += f", <connection> at line {r['connection_block']}"
        family = {"ipv4": ", IPv4 only", "ipv6": ", IPv6 only"}.get(r.get("family"), "")
        lines.append(f"    {i}. {r['host']} {r['port']}/{r['proto']}  ({where}{family})")
        proxy = r.get("proxy")
        if proxy:
            what = "HTTP proxy" if proxy["kind"] == "http" else "SOCKS5 proxy"
            auth = {"none": "no authentication", "basic": "username and password",
                    "auto": "credentials only if it asks", "auto-nct": "no cleartext "
                    "credentials"}[proxy["auth"]]
            lines.append(f"       through the {what} {proxy['host']}:{proxy['port']} "
                         f"({auth}; line {proxy['line']})")
    if s["remote_random_hostname"]:
        lines.append("  remote-random-hostname: a random label is prepended to names")
    tls = s["tls"]
    mode = tls["mode"]
    if "key_direction" in tls:
        mode += f" (key direction {tls['key_direction'] if tls['key_direction'] is not None else 'bidirectional'})"
    lines.append(f"  TLS mode     {mode}")
    lines.append(f"  data ciphers {', '.join(s['data_ciphers'])}"
                 + (f"; fallback {s['data_ciphers_fallback']}"
                    if s["data_ciphers_fallback"] else ""))
    auth = s["auth"]
    line = f"  auth         {auth['mode']}"
    if auth["client_certificate"]:
        line += f" ({auth['client_certificate']})"
    lines.append(line)
    lines.append("  will ask for " + (", ".join(auth["prompts"]) or "nothing"))
    lines.append("  server checks " + ", ".join(s["server_checks"]))
    comp = s["compression"] or "none"
    lines.append(f"  compression  {comp} (allow-compression {s['allow_compression']}; "
                 "erebus never compresses what it sends)")
    lines += _render_ipv6(s)
    if s["ignored"]:
        lines.append("  ignored (meaningless in user space):")
        for i in s["ignored"]:
            lines.append(f"    line {i['line']}: {i['option']}: {i['reason']}")
    for w in report["warnings"]:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def _render_ipv6(s: dict) -> list[str]:
    v6 = s.get("ipv6") or {}
    pulled = v6.get("pushed")
    lines = []
    if v6.get("ifconfig_ipv6"):
        lines.append(f"  IPv6 inside  {v6['ifconfig_ipv6']}"
                     + (" (unless the server pushes its own ifconfig-ipv6)" if pulled else ""))
    elif pulled:
        lines.append("  IPv6 inside  as the server pushes it (ifconfig-ipv6, route-ipv6, "
                     "dhcp-option DNS6)")
    else:
        lines.append("  IPv6 inside  none (no ifconfig-ipv6 in this static-key profile)")
    if v6.get("routes_ipv6"):
        lines.append(f"  IPv6 routes  {', '.join(v6['routes_ipv6'])}"
                     + (f" (gateway {v6['route_ipv6_gateway']})"
                        if v6.get("route_ipv6_gateway") else ""))
    if s.get("dns"):
        lines.append(f"  DNS          {', '.join(s['dns'])}")
    if v6.get("block_ipv6"):
        lines.append("  block-ipv6   IPv6 packets are answered with ICMPv6 no route to host, "
                     "never sent to the server")
    if s.get("pull_filters"):
        lines.append("  pull-filter  " + ", ".join(f"{kind} {text!r}"
                                                 for kind, text in s["pull_filters"]))
    return lines


def main(path: str, as_json: bool, conn: str | None = None) -> int:
    code, report = check(path, conn)
    print(json.dumps(report, indent=2) if as_json else render(report))
    return code
