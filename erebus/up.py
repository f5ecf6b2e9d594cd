"""``erebus up``: bring the tunnel up and serve the local-access options until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field

from .credentials import SOCKS_AUTH_WARNING, proxy_credentials
from .errors import ConfigError, SessionError
from .runtime.expose.dns import VpnResolver
from .runtime.expose.forward import (Dialer, LocalForward, RemoteForward, parse_listen,
                             parse_local_forward, parse_remote_forward)
from .runtime.expose.http_proxy import HttpProxy
from .runtime.expose.socks import SocksServer
from .families import family_of, open_tunnel
from .metrics import routes as metrics_routes
from .proxyenv import READY_LINE, env_lines, pac_routes
from .runtime.control import ControlServer, State, snapshot
from .runtime.httpserve import HttpServe
from .runtime.stack import VpnStack
from .session import Stage
from .tunnel import Tunnel

log = logging.getLogger("erebus")


@dataclass
class Access:
    """The local-access options of ``up`` and ``run``, checked before any packet goes."""

    locals_: list = field(default_factory=list)
    remotes: list = field(default_factory=list)
    http_listen: tuple | None = None
    socks_listen: tuple | None = None
    http_auth: object = None
    socks_auth: object = None

    def __bool__(self) -> bool:
        return bool(self.locals_ or self.remotes or self.http_listen or self.socks_listen)


def parse_access(*, local_forwards=(), remote_forwards=(), http_proxy=None, socks=None,
                 socks_auth=None, proxy_auth_file=None, environ=None) -> Access:
    """ConfigError for anything wrong with -L, -R, --http-proxy, --socks and their
    credentials."""
    locals_ = [parse_local_forward(s) for s in local_forwards]
    remotes = [parse_remote_forward(s) for s in remote_forwards]
    http_listen = parse_listen(http_proxy, "--http-proxy") if http_proxy else None
    socks_listen = parse_listen(socks, "--socks") if socks else None
    proxy_auth, origin = proxy_credentials(auth_file=proxy_auth_file,
                                           socks_auth=socks_auth, environ=environ)
    if origin == "--socks-auth":
        log.warning("%s", SOCKS_AUTH_WARNING)
        if not socks_listen:
            raise ConfigError("--socks-auth needs --socks")
    elif origin == "--proxy-auth-file" and not (socks_listen or http_listen):
        raise ConfigError("--proxy-auth-file needs --http-proxy or --socks")
    ports = [r.vport for r in remotes]
    if len(set(ports)) != len(ports):
        raise ConfigError("-R: the same virtual port is given twice")
    return Access(locals_, remotes, http_listen, socks_listen,
                  proxy_auth if origin != "--socks-auth" else None, proxy_auth)


def make_dialer(vpn: VpnStack, info) -> Dialer:
    """Connections into the VPN, names resolved by its DNS servers."""
    return Dialer(vpn, VpnResolver(vpn, info.dns))


def proxy_addresses(services: list) -> tuple:
    """(bind, port) of the HTTP proxy and of the SOCKS5 proxy among ``services`` (None
    for one not served)."""
    http = next(((s.bind, s.port) for s in services if isinstance(s, HttpProxy)), None)
    socks = next(((s.bind, s.port) for s in services if isinstance(s, SocksServer)), None)
    return http, socks


async def start_services(access: Access, vpn: VpnStack, info,
                         dialer: Dialer | None = None) -> list:
    """Start every local-access service over ``vpn``; the started ones (to close)."""
    dialer = dialer or make_dialer(vpn, info)
    services: list = [LocalForward(dialer, spec) for spec in access.locals_]
    services += [RemoteForward(vpn, spec) for spec in access.remotes]
    if access.http_listen:
        services.append(HttpProxy(dialer, *access.http_listen, credentials=access.http_auth))
    if access.socks_listen:
        services.append(SocksServer(dialer, *access.socks_listen,
                                    credentials=access.socks_auth))
    started = []
    try:
        for service in services:
            await service.start()
            started.append(service)
    except BaseException:
        for service in started:
            await service.close()
        raise
    return started


def log_tunnel_up(info) -> None:
    log.info("tunnel up: virtual IP %s/%s%s via %s, MTU %d, cipher %s, DNS %s",
             info.virtual_ip, info.netmask,
             f" and {info.virtual_ip6}/{info.prefix6}" if info.virtual_ip6 else "",
             info.server, info.mtu, info.cipher, ", ".join(info.dns) or "none pushed")


def open_profile(profile_path: str, *, pcap_path: str | None, conn: str | None,
                 keylog_path: str | None = None):
    """The profile's tunnel (not connected yet) and its pcap writer, if asked for."""
    pcap = None
    if pcap_path:
        from .runtime.pcap import PcapWriter
        pcap = PcapWriter(pcap_path, family=family_of(profile_path).kind)
    try:
        tunnel: Tunnel = open_tunnel(profile_path, pcap=pcap, conn=conn,
                                     keylog=keylog_path)
    except BaseException:
        if pcap:
            pcap.close()
        raise
    return tunnel, pcap


async def run_up(profile_path: str, *, local_forwards: list[str] = (),
                 remote_forwards: list[str] = (), http_proxy: str | None = None,
                 socks: str | None = None, socks_auth: str | None = None,
                 proxy_auth_file: str | None = None,
                 pcap_path: str | None = None, timeout: float | None = None,
                 conn: str | None = None, environ=None, control: str | None = None,
                 print_env: bool = False, pac: str | None = None,
                 metrics: str | None = None, keylog_path: str | None = None) -> int:
    access = parse_access(local_forwards=local_forwards, remote_forwards=remote_forwards,
                          http_proxy=http_proxy, socks=socks, socks_auth=socks_auth,
                          proxy_auth_file=proxy_auth_file, environ=environ)
    proxied = access.http_listen or access.socks_listen
    if pac and not proxied:
        raise ConfigError("--pac needs --http-proxy or --socks")
    if print_env and not proxied:
        raise ConfigError("--print-env needs --http-proxy or --socks")
    pac_listen = parse_listen(pac, "--pac") if pac else None
    metrics_listen = parse_listen(metrics, "--metrics") if metrics else None
    tunnel, pcap = open_profile(profile_path, pcap_path=pcap_path, conn=conn,
                                keylog_path=keylog_path)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    services = []
    vpn = None
    state = State()
    extras = []                          # control socket, --metrics, --pac
    try:
        def status() -> dict:
            return snapshot(tunnel, services + extras, state, vpn)
        ctl = ControlServer(control, status) if control else None
        extras += [ctl] if ctl else []
        if metrics_listen:
            extras.append(HttpServe("--metrics", *metrics_listen, metrics_routes(status)))
        for extra in extras:
            await extra.start()
        info = await tunnel.connect(timeout=timeout)
        state.set("up")
        log_tunnel_up(info)
        vpn = VpnStack(tunnel)
        dialer = make_dialer(vpn, info)
        services = await start_services(access, vpn, info, dialer)
        if ctl is not None:
            ctl.dialer = dialer
        http_at, socks_at = proxy_addresses(services)
        if pac_listen:
            extras.append(HttpServe("--pac", *pac_listen,
                                    pac_routes(lambda: tunnel.info, http_at, socks_at)))
            await extras[-1].start()
        if not services:
            log.info("no -L, -R, --http-proxy or --socks given: the tunnel only answers "
                     "pings of %s", info.virtual_ip)
        log.info("ready (%d service%s)", len(services), "" if len(services) == 1 else "s")
        if print_env:
            print("\n".join(env_lines(http_at, socks_at, auth=access.socks_auth is not None)
                            + [READY_LINE]), flush=True)
        stopped = asyncio.ensure_future(stop.wait())
        while True:
            ended = asyncio.ensure_future(tunnel.wait_closed())
            done, _ = await asyncio.wait({stopped, ended},
                                         return_when=asyncio.FIRST_COMPLETED)
            if stopped in done:
                ended.cancel()
                log.info("signal received: closing connections and leaving the VPN")
                return 0
            exc = ended.exception()
            if exc is None:
                return 1
            if not exc.recoverable:
                raise exc
            log.warning("tunnel down: %s; reconnecting (listeners stay up)", exc)
            state.set("reconnecting")
            try:
                info = await tunnel.reconnect(timeout=timeout,
                                              stop=stop)
            except SessionError as err:
                if err.stage is Stage.STOPPED:
                    log.info("signal received while reconnecting")
                    return 0
                raise
            state.set("up")
            vpn.rebind(info)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for service in services + extras:
            await service.close()
        if vpn is not None:
            vpn.close()
        await tunnel.close()
        if pcap:
            pcap.close()
