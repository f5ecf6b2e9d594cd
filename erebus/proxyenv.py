"""What other programs need to use ``erebus up``'s proxies: the environment lines of
``--print-env`` and the PAC file of ``--pac`` (pure functions of what is listening
and what the tunnel carries; the serving is erebus/runtime/httpserve.py's)."""

from __future__ import annotations

import ipaddress
import json

from .runtime.tunnel import host_port

PAC_TYPE = "application/x-ns-proxy-autoconfig"
NO_PROXY = "localhost,127.0.0.1,::1"
READY_LINE = "# erebus: ready"     # the last line of --print-env (sed '/^# erebus: ready/q')


def _where(bind: str, port: int) -> str:
    """Where a client connects: a wildcard bind is reached on loopback."""
    if bind in ("0.0.0.0", ""):
        bind = "127.0.0.1"
    elif bind == "::":
        bind = "::1"
    return host_port(bind, port)


AUTH_NOTE = ("# erebus: the proxies ask for a username and password, which are not in "
             "these URLs: give them to each program its own way")


def env_lines(http: tuple[str, int] | None, socks: tuple[str, int] | None, *,
              auth: bool = False) -> list[str]:
    """``export`` lines for a POSIX shell: the proxy variables curl, git, pip, wget ...
    read, for the proxies that are on (never any credentials: with ``auth``, a
    comment line says that clients need them given their own way)."""
    lines = [AUTH_NOTE] if auth and (http or socks) else []
    if http is not None:
        url = f"http://{_where(*http)}"
        lines.append("export " + " ".join(f"{name}={url}" for name in (
            "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")))
    if socks is not None:
        url = f"socks5h://{_where(*socks)}"
        lines.append(f"export ALL_PROXY={url} all_proxy={url}")
    if lines:
        lines.append(f"export NO_PROXY={NO_PROXY} no_proxy={NO_PROXY}")
    return lines


def pac_networks(info) -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv6Network]]:
    """The networks reached through the tunnel: the pushed routes and the VPN subnet
    (the virtual IP's, by its netmask or prefix), each once, in order."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []

    def add(net, into) -> None:
        if net not in into:
            into.append(net)

    if getattr(info, "virtual_ip", None) and getattr(info, "netmask", None):
        try:
            add(ipaddress.IPv4Network(f"{info.virtual_ip}/{info.netmask}", strict=False), v4)
        except ValueError:
            pass
    for cidr in getattr(info, "routes", []) or []:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        add(net, v4 if net.version == 4 else v6)
    if getattr(info, "virtual_ip6", None) and getattr(info, "prefix6", None):
        try:
            add(ipaddress.IPv6Network(f"{info.virtual_ip6}/{info.prefix6}", strict=False), v6)
        except ValueError:
            pass
    for cidr in getattr(info, "routes6", []) or []:
        try:
            add(ipaddress.IPv6Network(cidr, strict=False), v6)
        except ValueError:
            continue
    return v4, v6


def pac_proxy(http: tuple[str, int] | None, socks: tuple[str, int] | None) -> str:
    """The PAC answer for the tunnel's destinations: the HTTP proxy if on, else SOCKS."""
    if http is not None:
        return f"PROXY {_where(*http)}"
    return f"SOCKS5 {_where(*socks)}; SOCKS {_where(*socks)}"


def pac_text(info, http: tuple[str, int] | None, socks: tuple[str, int] | None) -> str:
    """A PAC file (FindProxyForURL): the tunnel's networks and DNS domains through the
    proxy, the rest DIRECT.  IPv4 by isInNet on the host (a literal, or the name
    resolved by the browser); IPv6 literals by isInNetEx where the browser has it
    (Chrome, Edge; others send them DIRECT)."""
    proxy = json.dumps(pac_proxy(http, socks))
    v4, v6 = pac_networks(info)
    domains = [d.strip(".").lower() for d in getattr(info, "domains", []) or [] if d.strip(".")]
    out = ["// erebus up --pac: the VPN's networks through the proxy, the rest DIRECT",
           "function FindProxyForURL(url, host) {",
           f"  var vpn = {proxy};"]
    for d in domains:
        out.append(f"  if (dnsDomainIs(host, {json.dumps('.' + d)}) || host == {json.dumps(d)})"
                   " return vpn;")
    out.append('  if (host.indexOf(":") >= 0) {')
    out.append('    var h = host.replace(/^\\[|\\]$/g, "");')
    if v6:
        cond = " ||\n        ".join(f"isInNetEx(h, {json.dumps(str(n))})" for n in v6)
        out.append('    if (typeof isInNetEx == "function" && (')
        out.append(f"        {cond})) return vpn;")
    out.append('    return "DIRECT";')
    out.append("  }")
    if v4:
        out.append("  var ip = isPlainIPv4(host) ? host : dnsResolve(host);")
        out.append("  if (!ip) return \"DIRECT\";")
        for n in v4:
            out.append(f"  if (isInNet(ip, {json.dumps(str(n.network_address))}, "
                       f"{json.dumps(str(n.netmask))})) return vpn;")
    out.append('  return "DIRECT";')
    out.append("}")
    out.append("function isPlainIPv4(h) { return /^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(h); }")
    return "\n".join(out) + "\n"


def pac_routes(info, http, socks) -> dict:
    """The HttpServe routes of --pac (``/proxy.pac`` and ``/``); ``info``: a callable
    giving the tunnel's current TunnelInfo (routes may change on reconnect)."""
    def body():
        return PAC_TYPE, pac_text(info(), http, socks).encode()
    return {"/proxy.pac": body, "/": body}
