"""The strongSwan ``swanctl.conf`` reader: one IKEv2 client connection as an
:class:`erebus.ipsec.ikeprofile.IkeProfile`.

The syntax (sections, settings, includes) is read by :mod:`erebus.ipsec.swanctl_syntax`;
this module maps the tree it gives to the profile.

Credentials are found the way ``swanctl --load-all`` finds them, in folders beside
the swanctl.conf given: certificates in ``x509/`` (``local.certs``), CA
certificates in ``x509ca/`` (``remote.cacerts``; without it every certificate of
``x509ca/`` and ``authorities.*.cacert`` is trusted, as charon would), private
keys in ``private/``, ``rsa/``, ``ecdsa/`` and ``pkcs8/`` (the one whose public key
is the certificate's).  PEM or DER.  Pre-shared keys come from ``secrets.ike*``
(``0x`` hex, ``0s`` base64, as swanctl decodes them).

Every key swanctl knows in ``connections``, ``local*``, ``remote*`` and
``children`` is in one of the tables below: used, ignored (with the reason), or
refused (everywhere or for some values).  An unknown key is an error, so that a
typo never changes behaviour silently.  Every error is a
:class:`erebus.errors.ConfigError` naming file, line and option (the dotted path of
the key, e.g. ``connections.home.version``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import ConfigError
from ..files import FileRefused, read_limited
from .ikecrypto import ESP_TRANSFORM_IDS, IkeSuite
from .identity import identity
from .ikeprofile import IkeProfile
from .swanctl_syntax import Section, Setting, parse

__all__ = ["load_swanctl", "list_connections", "parse_duration",
           "CONNECTION_KEYS", "AUTH_KEYS", "CHILD_KEYS", "SUPPORTED", "IGNORED", "REFUSED"]

_DEFAULTS = {f.name: f for f in dataclasses.fields(IkeProfile)}


def _default(name: str):
    f = _DEFAULTS[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


# --------------------------------------------------------------------------- the keys

# What each swanctl key does here: SUPPORTED (read into the profile), IGNORED (with
# the reason) or REFUSED (for any value, or -- for a checker -- the values it refuses).
SUPPORTED, IGNORED, REFUSED = "supported", "ignored", "refused"

_ONLY_CLIENT = "meaningful for a responder, not for erebus's client"
_NO_KERNEL = "erebus installs no kernel state (policies, marks, interfaces)"
_LIFETIME = "hard limits are the responder's business; erebus rekeys by rekey_time"


def _refuse_yes(what: str):
    def check(v: str, setting: Setting, opt: str) -> None:
        if _bool(setting, opt):
            raise ConfigError(what, path=setting.path, line=setting.line, option=opt)
    return check


def _refuse_set(what: str):
    def check(v: str, setting: Setting, opt: str) -> None:
        if v.strip():
            raise ConfigError(what, path=setting.path, line=setting.line, option=opt)
    return check


def _refuse_unless(allowed: tuple[str, ...], what: str):
    def check(v: str, setting: Setting, opt: str) -> None:
        if v.strip().lower() not in allowed:
            raise ConfigError(what, path=setting.path, line=setting.line, option=opt)
    return check


CONNECTION_KEYS: dict[str, tuple] = {
    "version": (SUPPORTED, "2 or 0 (IKEv2); 1 (IKEv1) is refused"),
    "remote_addrs": (SUPPORTED, "host names or IPv4 addresses, tried in order"),
    "remote_port": (SUPPORTED, "IKE port of the responder (500: then NAT-T to 4500)"),
    "local_port": (SUPPORTED, "our UDP port (500, swanctl's default, needs root: any port, "
                              "with a warning)"),
    "vips": (SUPPORTED, "0.0.0.0 and/or :: (any address: the same): ask for a virtual "
                        "IPv4 and/or IPv6 address"),
    "proposals": (SUPPORTED, "IKE proposals ('default': erebus's list)"),
    "encap": (SUPPORTED, "erebus always UDP-encapsulates ESP (user space: it must; 'no' "
                         "warns)"),
    "dpd_delay": (SUPPORTED, "liveness checks after this quiet time"),
    "rekey_time": (SUPPORTED, "IKE SA rekeying (charon's default: 4h; 0: never)"),
    "reauth_time": (SUPPORTED, "erebus does not reauthenticate: it rekeys the IKE SA at "
                               "this interval instead (with a warning)"),
    "fragmentation": (SUPPORTED, "no: IKE fragmentation is not announced; yes, accept, "
                                 "force: it is (erebus reassembles and fragments)"),
    "children": (SUPPORTED, "the CHILD_SA (the first, or the one asked for)"),
    "local_addrs": (IGNORED, "the system chooses our address"),
    "mobike": (IGNORED, "erebus does not move an SA between addresses"),
    "dpd_timeout": (IGNORED, "IKEv1 only"),
    "childless": (IGNORED, "erebus creates its CHILD_SA with IKE_AUTH"),
    "send_certreq": (IGNORED, "erebus always asks for the responder's certificate"),
    "send_cert": (IGNORED, "erebus sends its certificate when it authenticates with one"),
    "keyingtries": (IGNORED, "erebus's retry policy applies"),
    "unique": (IGNORED, _ONLY_CLIENT),
    "over_time": (IGNORED, _LIFETIME),
    "rand_time": (IGNORED, "rekeying is not randomized"),
    "pools": (IGNORED, _ONLY_CLIENT),
    "pull": (IGNORED, "IKEv1 only"),
    "dscp": (IGNORED, "IKE packets are sent with the default DSCP"),
    "if_id_in": (IGNORED, _NO_KERNEL),
    "if_id_out": (IGNORED, _NO_KERNEL),
    "close_action": (IGNORED, "erebus reports a closed SA and stops or reconnects"),
    "ocsp": (IGNORED, "erebus does not query OCSP responders"),
    "mediated_by": (IGNORED, "mediation is refused with 'mediation'"),
    "aggressive": (REFUSED, _refuse_yes("aggressive mode is IKEv1, which is not supported")),
    "mediation": (REFUSED, _refuse_yes("IKEv2 mediation is not supported")),
    "mediation_peer": (REFUSED, _refuse_set("IKEv2 mediation is not supported")),
    "ppk_id": (REFUSED, _refuse_set("postquantum preshared keys (PPK) are not supported")),
    "ppk_required": (REFUSED, _refuse_yes("postquantum preshared keys (PPK) are not "
                                          "supported")),
}

# local<suffix> and remote<suffix> sections ("L": local only, "R": remote only).
AUTH_KEYS: dict[str, tuple] = {
    "auth": (SUPPORTED, "psk, pubkey (rsa, ecdsa: pubkey); eap*, xauth* refused"),
    "id": (SUPPORTED, "IKE identity ('%any': none)"),
    "certs": (SUPPORTED, "local: our certificate (x509/); remote: refused (pinning)"),
    "cacerts": (SUPPORTED, "remote: trust anchors (x509ca/)"),
    "round": (IGNORED, "only one authentication round is supported"),
    "eap_id": (IGNORED, "EAP is refused with 'auth'"),
    "aaa_id": (IGNORED, "EAP is refused with 'auth'"),
    "xauth_id": (IGNORED, "XAuth is refused with 'auth'"),
    "revocation": (REFUSED, _refuse_unless(("relaxed",), "revocation checking (strict, "
                                           "ifuri) is not supported yet")),
    "pubkeys": (REFUSED, _refuse_set("raw public keys are not supported: give certificates")),
    "groups": (REFUSED, _refuse_set("group membership checks are not supported")),
    "cert_policy": (REFUSED, _refuse_set("certificate policy checks are not supported")),
    "ca_id": (REFUSED, _refuse_set("CA identities are not supported: give cacerts")),
}

CHILD_KEYS: dict[str, tuple] = {
    "remote_ts": (SUPPORTED, "IPv4 and IPv6 CIDRs ('dynamic', the default: 0.0.0.0/0, and "
                             "::/0 with vips = ::, with a warning)"),
    "local_ts": (SUPPORTED, "IPv4 and IPv6 CIDRs ('dynamic': our virtual IPs, else our "
                            "address)"),
    "esp_proposals": (SUPPORTED, "ESP transforms ('default': erebus's list)"),
    "rekey_time": (SUPPORTED, "CHILD_SA rekeying (charon's default: 1h, or life_time/1.1; "
                              "0: never)"),
    "life_time": (SUPPORTED, "only for the default of rekey_time (life_time/1.1); the "
                             "hard limit is the responder's business"),
    "start_action": (IGNORED, "erebus starts the connection when it is run"),
    "close_action": (IGNORED, "erebus reports a closed SA and stops or reconnects"),
    "dpd_action": (IGNORED, "erebus reports a dead peer and stops or reconnects"),
    "updown": (IGNORED, "erebus never runs scripts"),
    "hostaccess": (IGNORED, _NO_KERNEL),
    "policies": (IGNORED, _NO_KERNEL),
    "policies_fwd_out": (IGNORED, _NO_KERNEL),
    "priority": (IGNORED, _NO_KERNEL),
    "interface": (IGNORED, _NO_KERNEL),
    "mark_in": (IGNORED, _NO_KERNEL), "mark_in_sa": (IGNORED, _NO_KERNEL),
    "mark_out": (IGNORED, _NO_KERNEL), "set_mark_in": (IGNORED, _NO_KERNEL),
    "set_mark_out": (IGNORED, _NO_KERNEL), "if_id_in": (IGNORED, _NO_KERNEL),
    "if_id_out": (IGNORED, _NO_KERNEL), "label": (IGNORED, _NO_KERNEL),
    "label_mode": (IGNORED, _NO_KERNEL), "reqid": (IGNORED, _NO_KERNEL),
    "per_cpu_sas": (IGNORED, _NO_KERNEL), "hw_offload": (IGNORED, _NO_KERNEL),
    "copy_df": (IGNORED, _NO_KERNEL), "copy_ecn": (IGNORED, _NO_KERNEL),
    "copy_dscp": (IGNORED, _NO_KERNEL),
    "inactivity": (IGNORED, "erebus stays up until it is told to stop"),
    "rand_time": (IGNORED, "rekeying is not randomized"),
    "rekey_bytes": (IGNORED, "rekeying by time only"), "life_bytes": (IGNORED, _LIFETIME),
    "rand_bytes": (IGNORED, "rekeying by time only"),
    "rekey_packets": (IGNORED, "rekeying by time only"),
    "life_packets": (IGNORED, _LIFETIME), "rand_packets": (IGNORED, "rekeying by time only"),
    "replay_window": (IGNORED, "erebus uses its own anti-replay window"),
    "tfc_padding": (IGNORED, "no traffic flow confidentiality padding is added"),
    "mode": (REFUSED, _refuse_unless(("tunnel",), "only tunnel mode is supported")),
    "ah_proposals": (REFUSED, _refuse_set("AH is not supported (use esp_proposals)")),
    "ipcomp": (REFUSED, _refuse_yes("IPComp is not supported")),
    "sha256_96": (REFUSED, _refuse_yes("truncated (96-bit) HMAC-SHA-256 is not supported")),
}

_TOP_SECTIONS = {"connections", "secrets", "pools", "authorities"}
_SECRET_TYPES = ("ike", "eap", "xauth", "ntlm", "ppk", "private", "rsa", "ecdsa", "pkcs8",
                 "pkcs12", "token")
_KEY_FOLDERS = ("private", "rsa", "ecdsa", "pkcs8")


# --------------------------------------------------------------------------- value helpers

def _err(message: str, setting: Setting | Section, option: str) -> ConfigError:
    return ConfigError(message, path=setting.path, line=setting.line, option=option)


def _list(setting: Setting) -> list[str]:
    return [v.strip() for v in (setting.value or "").split(",") if v.strip()]


def _bool(setting: Setting, opt: str) -> bool:
    v = (setting.value or "").strip().lower()
    if v in ("yes", "true", "enabled", "1"):
        return True
    if v in ("no", "false", "disabled", "0"):
        return False
    raise _err(f"{setting.value!r} is not a boolean (yes or no)", setting, opt)


_DURATION = re.compile(r"(\d+)\s*([smhd]?)")


def parse_duration(text: str) -> int:
    """strongSwan's durations: ``30s``, ``5m``, ``1h``, ``2d``; a bare number is seconds.
    ValueError otherwise."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h, 1d)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _duration(setting: Setting, opt: str) -> float | None:
    try:
        seconds = parse_duration(setting.value or "")
    except ValueError as exc:
        raise _err(str(exc), setting, opt) from None
    return float(seconds) if seconds else None       # 0: disabled


def _rekey(setting: Setting, opt: str) -> float:
    """A rekey interval: 0.0 is "never" (unset stays None: charon's default applies)."""
    return _duration(setting, opt) or 0.0


def _warn(prof: IkeProfile, message: str, anchor, opt: str) -> None:
    prof.warnings.append(str(_err(message, anchor, opt)))


def _port(setting: Setting, opt: str) -> int:
    v = (setting.value or "").strip()
    if not (v.isascii() and v.isdigit()) or not 0 <= int(v) <= 65535:
        raise _err(f"{setting.value!r} is not a port number", setting, opt)
    return int(v)


def _ts(items: list[str], setting: Setting, opt: str, *, local: bool,
        v6: bool = False) -> list[str]:
    out = []
    for item in items:
        if item.lower() in ("dynamic", "%dynamic"):
            if not local:
                out += ["0.0.0.0/0", "::/0"] if v6 else ["0.0.0.0/0"]
            continue
        if "[" in item:
            raise _err(f"{item!r}: protocol/port selectors are not supported", setting, opt)
        if "-" in item:
            raise _err(f"{item!r}: address ranges are not supported (give a CIDR)",
                       setting, opt)
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise _err(f"{item!r} is not a subnet (a.b.c.d/n or an IPv6 prefix like "
                       "2001:db8::/64)", setting, opt) from None
        out.append(str(net))
    return out


def _secret_value(setting: Setting, opt: str) -> bytes:
    v = setting.value or ""
    try:
        if v[:2].lower() == "0x":
            data = bytes.fromhex(v[2:])
        elif v[:2].lower() == "0s":
            import base64
            data = base64.b64decode(v[2:], validate=True)
        else:
            data = v.encode("utf-8")
    except ValueError:
        raise _err("the secret is not valid hex (0x...) or base64 (0s...)", setting,
                   opt) from None
    if not data:
        raise _err("empty secret", setting, opt)
    return data


# --------------------------------------------------------------------------- credentials

def _read_cert(file: str, setting: Setting, opt: str) -> x509.Certificate:
    try:
        data = read_limited(file)
    except OSError as exc:
        raise _err(f"cannot read certificate {file}: {exc.strerror or exc}", setting,
                   opt) from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise _err(f"{file} is not an X.509 certificate (PEM or DER): {exc}", setting,
                   opt) from None


def _cert_path(name: str, folder: str) -> str:
    return name if os.path.isabs(name) else os.path.join(folder, name)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _find_key(base: str, cert: x509.Certificate, cert_file: str, setting: Setting,
              opt: str) -> bytes:
    """The private key of *cert* among private/, rsa/, ecdsa/, pkcs8/ (PKCS#8 PEM)."""
    want = _spki(cert.public_key())
    encrypted = []
    for folder in _KEY_FOLDERS:
        d = os.path.join(base, folder)
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            file = os.path.join(d, name)
            if not os.path.isfile(file):
                continue
            try:
                data = read_limited(file)
            except FileRefused as exc:
                raise _err(f"cannot read {file}: {exc.strerror}", setting, opt) from None
            except OSError:
                continue
            try:
                if b"-----BEGIN" in data:
                    key = serialization.load_pem_private_key(data, password=None)
                else:
                    key = serialization.load_der_private_key(data, password=None)
            except TypeError:          # encrypted (a password is required)
                encrypted.append(file)
                continue
            except Exception:          # noqa: BLE001 -- not a key file: swanctl skips it too
                continue
            if _spki(key.public_key()) == want:
                return key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
    folders = ", ".join(f"{f}/" for f in _KEY_FOLDERS)
    if encrypted:
        raise _err(f"no unencrypted private key for {cert_file} in {folders} beside the "
                   f"swanctl.conf; encrypted keys are not supported: {', '.join(encrypted)} "
                   "(decrypt it, e.g. 'openssl pkey -in KEY -out KEY')", setting, opt)
    raise _err(f"no private key for {cert_file} in {folders} beside the swanctl.conf "
               f"({base})", setting, opt)


# --------------------------------------------------------------------------- the mapping

def _check_keys(section: Section, table: dict, prefix: str, allowed_sections=()) -> None:
    for key, s in section.settings.items():
        opt = f"{prefix}.{key}"
        if key not in table:
            raise _err("unknown key (a typo? erebus refuses keys it does not know)", s, opt)
        what, how = table[key]
        if what == REFUSED:
            how(s.value or "", s, opt)
    for name, sub in section.sections.items():
        if not any(name == a or (a.endswith("*") and name.startswith(a[:-1]))
                   for a in allowed_sections):
            raise _err("unknown section (a typo? erebus refuses sections it does not know)",
                       sub, f"{prefix}.{name}")


def _connections(root: Section) -> Section | None:
    for name, sec in root.sections.items():
        if name not in _TOP_SECTIONS:
            raise _err("unknown section (swanctl.conf has connections, secrets, pools and "
                       "authorities)", sec, name)
    for key, s in root.settings.items():
        raise _err("unknown top-level key", s, key)
    return root.sections.get("connections")


def list_connections(path: str) -> list[str]:
    """The names of ``connections.*`` in *path*, in file order."""
    conns = _connections(parse(path))
    if conns is None:
        return []
    for key, s in conns.settings.items():
        raise _err("a key directly in 'connections' (connections are sections)", s,
                   f"connections.{key}")
    return list(conns.sections)


def load_swanctl(path: str, *, conn: str | None = None,
                 child: str | None = None) -> IkeProfile:
    """The IKEv2 client connection ``connections.<conn>`` of the swanctl.conf *path*
    (*conn* may be left out when the file has one connection), with its CHILD_SA
    ``children.<child>`` (default: the first)."""
    path = os.fspath(path)
    root = parse(path)
    base = os.path.dirname(os.path.abspath(path))
    conns = _connections(root)
    if conns is None or not conns.sections:
        raise ConfigError("no connections { ... } in this file", path=path, option="connections")
    for key, s in conns.settings.items():
        raise _err("a key directly in 'connections' (connections are sections)", s,
                   f"connections.{key}")
    names = list(conns.sections)
    if conn is None:
        if len(names) > 1:
            raise ConfigError(f"{len(names)} connections: choose one with --conn "
                              f"({', '.join(names)})", path=conns.path, line=conns.line,
                              option="connections")
        conn = names[0]
    if conn not in conns.sections:
        raise ConfigError(f"no connection {conn!r} (there are: {', '.join(names)})",
                          path=conns.path, line=conns.line, option="connections")
    c = conns.sections[conn]
    P = f"connections.{conn}"
    _check_keys(c, CONNECTION_KEYS, P, ("local*", "remote*", "children"))
    s = c.settings

    def get(key):
        return s.get(key)

    prof = IkeProfile(path=path, name=conn, remote_addrs=[])

    # version
    if (v := get("version")) is not None:
        ver = (v.value or "").strip()
        if ver == "1":
            raise _err("IKEv1 is not supported (erebus speaks IKEv2: version = 2)", v,
                       f"{P}.version")
        if ver not in ("0", "2"):
            raise _err(f"{v.value!r}: version is 0 (any), 1 or 2", v, f"{P}.version")

    # remote_addrs
    v = get("remote_addrs")
    if v is None or not _list(v):
        raise _err("remote_addrs is missing: erebus must know where to connect", v or c,
                   f"{P}.remote_addrs")
    for a in _list(v):
        if a.startswith("%") or "/" in a or re.fullmatch(r"[\d.]+-[\d.]+", a):
            raise _err(f"{a!r}: a client needs a host name or address to connect to "
                       "(no %any, subnets or ranges)", v, f"{P}.remote_addrs")
        try:
            if ipaddress.ip_address(a).version != 4:
                raise _err(f"{a!r}: IPv6 peers are not supported (erebus's IPsec reaches "
                           "its responder over IPv4; IPv6 inside the tunnel is: vips = ::)",
                           v, f"{P}.remote_addrs")
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", a):
                raise _err(f"{a!r} is not a host name or IPv4 address", v,
                           f"{P}.remote_addrs") from None
        prof.remote_addrs.append(a)

    if (v := get("remote_port")) is not None:
        port = _port(v, f"{P}.remote_port")
        if port == 0:
            raise _err("remote_port 0", v, f"{P}.remote_port")
        prof.remote_port = port
        if port != 500:
            prof.natt_port = port      # charon only floats to 4500 from port 500
    if (v := get("local_port")) is not None:
        port = _port(v, f"{P}.local_port")
        prof.local_port = 0 if port == 500 else port
        if port == 500:
            _warn(prof, "erebus sends IKE from an ephemeral port, not 500 (binding a port "
                  "below 1024 needs root); the responder sees it as from behind a NAT",
                  v, f"{P}.local_port")

    # vips: one entry per family at most (0.0.0.0 and/or ::); a given address is asked
    # as any address of its family
    v = get("vips")
    prof.vips = prof.vips6 = False
    if v is not None:
        for a in _list(v):
            try:
                ip = ipaddress.ip_address(a)
            except ValueError:
                raise _err(f"{a!r} is not an address (0.0.0.0 asks for any IPv4 address, :: "
                           "for any IPv6 one)", v, f"{P}.vips") from None
            if (prof.vips6 if ip.version == 6 else prof.vips):
                raise _err(f"{a!r}: a second IPv{ip.version} virtual IP (erebus takes one "
                           "per family)", v, f"{P}.vips")
            if ip.version == 6:
                prof.vips6 = True
            else:
                prof.vips = True

    # proposals
    if (v := get("proposals")) is not None:
        prof.proposals = _proposals(v, f"{P}.proposals", ike=True)
    if (v := get("encap")) is not None and not _bool(v, f"{P}.encap"):
        _warn(prof, "erebus UDP-encapsulates ESP anyway (raw ESP needs a root socket): "
              "it tells the responder a NAT is on the path", v, f"{P}.encap")
    prof.encap = True
    if (v := get("fragmentation")) is not None:
        mode = (v.value or "").strip().lower()
        if mode not in ("yes", "no", "accept", "force"):
            raise _err(f"{v.value!r}: fragmentation is yes, accept, force or no", v,
                       f"{P}.fragmentation")
        prof.fragmentation = mode != "no"
    if (v := get("dpd_delay")) is not None:
        prof.dpd_delay = _duration(v, f"{P}.dpd_delay")
    if (v := get("rekey_time")) is not None:
        prof.rekey_time = _rekey(v, f"{P}.rekey_time")
    if (v := get("reauth_time")) is not None and _duration(v, f"{P}.reauth_time"):
        if prof.rekey_time is None:
            # charon: with reauth_time and no rekey_time it reauthenticates, never rekeys
            prof.rekey_time = _duration(v, f"{P}.reauth_time")
            _warn(prof, "erebus does not reauthenticate: it rekeys the IKE SA at this "
                  "interval instead (fresh keys, credentials not checked again)", v,
                  f"{P}.reauth_time")
        else:
            _warn(prof, "erebus does not reauthenticate (it rekeys by rekey_time)", v,
                  f"{P}.reauth_time")

    # authentication rounds
    local = _round(c, "local", P)
    remote = _round(c, "remote", P)
    _auth(prof, local, remote, P, base, root, c)

    # children
    _child(prof, c, child, P)

    # secrets
    if prof.local_auth == "psk" or prof.remote_auth == "psk":
        prof.psk = _psk(root, prof, c, P)
    return prof


def _proposals(v: Setting, opt: str, *, ike: bool) -> list[str]:
    out: list[str] = []
    for p in _list(v):
        if p.lower() == "default":
            out += _default("proposals" if ike else "esp_proposals")
            continue
        if ike:
            try:
                IkeSuite.parse(p)
            except ValueError as exc:
                raise _err(f"IKE proposal not supported: {exc} (one algorithm of each "
                           "kind per proposal)", v, opt) from None
            out.append(p.lower())
        else:
            name = p.lower()
            if name.endswith("-noesn"):
                name = name[:-len("-noesn")]
            if name not in ESP_TRANSFORM_IDS:
                extra = ""
                head, _, tail = name.rpartition("-")
                if head in ESP_TRANSFORM_IDS and re.fullmatch(
                        r"(modp\d+|ecp\d+|curve25519|x25519|esn)", tail):
                    extra = (" (PFS: a DH group in esp_proposals is not supported yet)"
                             if tail != "esn" else " (extended sequence numbers are not "
                             "supported)")
                raise _err(f"ESP proposal {p!r} not supported{extra}; erebus speaks "
                           f"{', '.join(ESP_TRANSFORM_IDS)}", v, opt)
            out.append(name)
    if not out:
        raise _err("no proposals", v, opt)
    return list(dict.fromkeys(out))


def _round(c: Section, kind: str, P: str) -> Section | None:
    rounds = [sec for name, sec in c.sections.items() if name.startswith(kind)]
    if len(rounds) > 1:
        raise _err(f"several {kind} authentication rounds ({', '.join(r.name for r in rounds)})"
                   ": only one round is supported", rounds[1], f"{P}.{rounds[1].name}")
    if rounds:
        r = rounds[0]
        allowed = ("cert*",) if kind == "local" else ("cacert*",)
        _check_keys(r, AUTH_KEYS, f"{P}.{r.name}", allowed)
        for name, sub in r.sections.items():
            raise _err("certificates on tokens (PKCS#11 handles) are not supported: give "
                       "files", sub, f"{P}.{r.name}.{name}")
        return r
    return None


def _auth_method(r: Section | None, P: str) -> str:
    if r is None or (v := r.settings.get("auth")) is None:
        return "pubkey"            # strongSwan's default for both ends
    opt = f"{P}.{r.name}.auth"
    a = (v.value or "").strip().lower()
    if a.startswith("ike:"):
        a = a[4:]
    if a == "psk":
        return "psk"
    if a in ("pubkey", "rsa", "ecdsa"):
        return "pubkey"
    if a.startswith("eap"):
        raise _err("EAP is not supported yet", v, opt)
    if a.startswith("xauth"):
        raise _err("XAuth is not supported (it is IKEv1)", v, opt)
    if re.match(r"(pubkey|rsa|ecdsa|ed25519|ed448)\b", a):
        raise _err(f"{v.value!r}: signature scheme constraints are not supported: write "
                   "pubkey", v, opt)
    raise _err(f"{v.value!r}: authentication method not supported (psk or pubkey)", v, opt)


def _ident(r: Section | None, P: str) -> str | None:
    if r is None or (v := r.settings.get("id")) is None:
        return None
    ident = (v.value or "").strip()
    if ident in ("", "%any", "%any6"):
        return None
    try:
        identity(ident)
    except ValueError:
        raise _err(f"{ident!r}: after 'type:#' comes hex", v, f"{P}.{r.name}.id") from None
    return ident


def _auth(prof: IkeProfile, local, remote, P: str, base: str, root: Section,
          c: Section) -> None:
    prof.local_auth = _auth_method(local, P)
    prof.remote_auth = _auth_method(remote, P)
    prof.local_id = _ident(local, P)
    prof.remote_id = _ident(remote, P)
    x509_dir = os.path.join(base, "x509")
    if remote is not None and (v := remote.settings.get("certs")) is not None and _list(v):
        raise _err("pinning the responder's certificate is not supported yet: give its CA "
                   "in cacerts", v, f"{P}.{remote.name}.certs")
    if local is not None and (v := local.settings.get("cacerts")) is not None and _list(v):
        raise _err("cacerts belongs in the remote section (the CAs the responder's "
                   "certificate must chain to)", v, f"{P}.{local.name}.cacerts")

    # our certificate and key
    if prof.local_auth == "pubkey":
        v = local.settings.get("certs") if local is not None else None
        opt = f"{P}.{local.name if local is not None else 'local'}.certs"
        if v is not None and _list(v):
            files = _list(v)
            if len(files) > 1:
                raise _err("several certificates: give the one to authenticate with", v, opt)
            file = _cert_path(files[0], x509_dir)
            cert = _read_cert(file, v, opt)
        else:
            anchor = v or local or c
            cert, file = _only_cert(x509_dir, anchor, opt)
        prof.local_cert = _pem(cert)
        prof.local_key = _find_key(base, cert, file, v or local or c, opt)
    elif local is not None and (v := local.settings.get("certs")) is not None and _list(v):
        raise _err("certs with auth = psk: say auth = pubkey to authenticate with the "
                   "certificate", v, f"{P}.{local.name}.certs")

    # an identity the responder's certificate must name (charon accepts any with %any,
    # the default, and says nothing; with a PSK it says nothing either, and so do we)
    if prof.remote_auth == "pubkey" and prof.remote_id is None:
        anchor = (remote.settings.get("id") or remote) if remote is not None else c
        name = remote.name if remote is not None else "remote"
        prof.warnings.append(str(_err(
            "no remote.id: any certificate the trusted CAs issued, for any name, is accepted "
            "as the responder's (set remote.id to the responder's identity, e.g. its DNS "
            "name)", anchor, f"{P}.{name}.id")))

    # trust anchors
    if prof.remote_auth == "pubkey":
        v = remote.settings.get("cacerts") if remote is not None else None
        opt = f"{P}.{remote.name if remote is not None else 'remote'}.cacerts"
        x509ca = os.path.join(base, "x509ca")
        if v is not None and _list(v):
            prof.cacerts = [_pem(_read_cert(_cert_path(n, x509ca), v, opt)) for n in _list(v)]
        else:              # charon trusts every CA swanctl loaded
            prof.cacerts = _all_cas(x509ca, root, base)
            if not prof.cacerts:
                anchor = v or remote or c
                raise _err("the responder authenticates with a certificate but there is no "
                           f"CA to check it: give remote.cacerts or put it in {x509ca}/",
                           anchor, opt)


def _only_cert(x509_dir: str, anchor, opt: str):
    try:
        names = sorted(n for n in os.listdir(x509_dir)
                       if os.path.isfile(os.path.join(x509_dir, n)))
    except OSError:
        names = []
    if len(names) != 1:
        raise _err(f"auth = pubkey needs our certificate: give local.certs ({len(names)} "
                   f"files in {x509_dir}/)", anchor, opt)
    file = os.path.join(x509_dir, names[0])
    return _read_cert(file, anchor, opt), file


def _all_cas(x509ca: str, root: Section, base: str) -> list[bytes]:
    out = []
    try:
        names = sorted(os.listdir(x509ca))
    except OSError:
        names = []
    for n in names:
        file = os.path.join(x509ca, n)
        if os.path.isfile(file):
            out.append(_pem(_read_cert(file, Section("x509ca", file, None), "x509ca")))
    auths = root.sections.get("authorities")
    if auths is not None:
        for name, sec in auths.sections.items():
            if (v := sec.settings.get("cacert")) is not None and v.value:
                out.append(_pem(_read_cert(_cert_path(v.value, x509ca), v,
                                           f"authorities.{name}.cacert")))
    return list(dict.fromkeys(out))


def _child(prof: IkeProfile, c: Section, child: str | None, P: str) -> None:
    children = c.sections.get("children")
    if children is None or not children.sections:
        raise _err("no children { ... }: erebus needs a CHILD_SA (remote_ts)", children or c,
                   f"{P}.children")
    for key, s in children.settings.items():
        raise _err("a key directly in 'children' (children are sections)", s,
                   f"{P}.children.{key}")
    names = list(children.sections)
    if child is None:
        child = names[0]
    if child not in children.sections:
        raise _err(f"no child {child!r} (there are: {', '.join(names)})", children,
                   f"{P}.children")
    ch = children.sections[child]
    C = f"{P}.children.{child}"
    _check_keys(ch, CHILD_KEYS, C)
    prof.child = child
    s = ch.settings
    v = s.get("remote_ts")
    items = _list(v) if v is not None else ["dynamic"]          # charon's default
    if any(i.lower() in ("dynamic", "%dynamic") for i in items):
        every = "0.0.0.0/0 and ::/0" if prof.vips6 else "0.0.0.0/0"
        _warn(prof, "remote_ts 'dynamic': charon would propose only the responder's own "
              f"address; erebus proposes {every} and takes what the responder narrows it "
              f"to (give the networks, e.g. remote_ts = {every.replace(' and', ',')})",
              v or ch, f"{C}.remote_ts")
    prof.remote_ts = (_ts(items, v, f"{C}.remote_ts", local=False, v6=prof.vips6)
                      if v is not None else []) or \
        (["0.0.0.0/0", "::/0"] if prof.vips6 else ["0.0.0.0/0"])
    if (v := s.get("local_ts")) is not None:
        prof.local_ts = _ts(_list(v), v, f"{C}.local_ts", local=True)
    if (v := s.get("esp_proposals")) is not None:
        prof.esp_proposals = _proposals(v, f"{C}.esp_proposals", ike=False)
    if (v := s.get("rekey_time")) is not None:
        prof.child_rekey_time = _rekey(v, f"{C}.rekey_time")
    elif (v := s.get("life_time")) is not None and (life := _duration(v, f"{C}.life_time")):
        prof.child_rekey_time = life / 1.1       # charon: rekey_time = life_time / 1.1


def _psk(root: Section, prof: IkeProfile, c: Section, P: str) -> bytes:
    secrets = root.sections.get("secrets")
    candidates = []
    if secrets is not None:
        for key, s in secrets.settings.items():
            raise _err("unknown key in secrets (secrets are sections: ike-NAME { ... })", s,
                       f"secrets.{key}")
        for name, sec in secrets.sections.items():
            if not name.startswith(_SECRET_TYPES):
                raise _err("unknown secret type (ike, eap, xauth, ntlm, ppk, private, rsa, "
                           "ecdsa, pkcs8, pkcs12, token)", sec, f"secrets.{name}")
            if not name.startswith("ike"):
                continue
            for key, s in sec.settings.items():
                if key != "secret" and not key.startswith("id"):
                    raise _err("unknown key (an ike secret has secret and id*)", s,
                               f"secrets.{name}.{key}")
            ids = [(st.value or "").strip() for k, st in sec.settings.items()
                   if k.startswith("id")]
            candidates.append((name, sec, [i for i in ids if i]))
    if not candidates:
        anchor, opt = c, P
        for kind in ("local", "remote"):
            r = next((sec for n, sec in c.sections.items() if n.startswith(kind)), None)
            if r is not None and "auth" in r.settings:
                anchor, opt = r.settings["auth"], f"{P}.{r.name}.auth"
                break
        raise _err("auth = psk but the file has no secrets { ike-NAME { secret = ... } }",
                   anchor, opt)
    if len(candidates) == 1:
        chosen = candidates[0]
    else:
        scored = []
        for cand in candidates:
            ids = cand[2]
            if not ids or "%any" in ids:
                score = 1
            else:
                score = 0
                for want in (prof.local_id, prof.remote_id):
                    if want is None:
                        continue
                    if want not in ids:
                        score = -1
                        break
                    score += 2
            if score >= 0:
                scored.append((score, cand))
        if not scored:
            raise ConfigError(f"none of the ike secrets ({', '.join(x[0] for x in candidates)}) "
                              f"is for local id {prof.local_id!r} and remote id "
                              f"{prof.remote_id!r}", path=prof.path,
                              line=candidates[0][1].line, option="secrets")
        best = max(x[0] for x in scored)
        top = [cand for sc, cand in scored if sc == best]
        values = {_secret_value(t[1].settings["secret"], f"secrets.{t[0]}.secret")
                  for t in top if "secret" in t[1].settings}
        if len(values) > 1:
            raise ConfigError(f"several ike secrets match equally well "
                              f"({', '.join(t[0] for t in top)}): give them id-local / "
                              "id-remote", path=top[1][1].path, line=top[1][1].line,
                              option=f"secrets.{top[1][0]}")
        chosen = top[0]
    name, sec, _ = chosen
    if "secret" not in sec.settings:
        raise _err("no secret = ... in this ike secret", sec, f"secrets.{name}")
    return _secret_value(sec.settings["secret"], f"secrets.{name}.secret")
