"""``erebus run PROFILE -- COMMAND``: the command, in a namespace whose only network
is the VPN; its exit status is ours.

The order: preflight (one line per host setting that forbids it), the namespace and
its TUN device (so a refusal comes before any packet), the tunnel, the namespace's
addresses, routes and DNS from the tunnel, the packet pump, any -L/-R/--socks/
--http-proxy beside it, then the command.  While it runs, a tunnel that goes down is
reconnected (the namespace and its sockets stay: TCP inside retransmits); a tunnel
that cannot come back ends the command (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from .errors import ConfigError, SessionError
from .runtime.netns import Namespace, plan, preflight
from .runtime.nshelper import in_terminal_foreground
from .runtime.stack import VpnStack
from .runtime.tunpump import TunPump
from .up import log_tunnel_up, open_profile, parse_access, start_services

log = logging.getLogger("erebus.run")

GRACE = 5.0                           # seconds between SIGTERM and SIGKILL


def command_of(argv: list[str], shell: bool, environ=None) -> list[str]:
    environ = os.environ if environ is None else environ
    argv = list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if shell:
        if argv:
            raise ConfigError("erebus run: --shell or a command, not both")
        return [environ.get("SHELL") or "/bin/sh"]
    if not argv:
        raise ConfigError("erebus run: give the command after --, e.g. erebus run "
                          "work.ovpn -- curl http://intranet/ (or --shell)")
    return argv


async def run_run(profile_path: str, argv: list[str], *, shell: bool = False,
                  everything: bool = False, local_forwards=(), remote_forwards=(),
                  http_proxy=None, socks=None, proxy_auth_file=None,
                  pcap_path: str | None = None, timeout: float | None = None,
                  conn: str | None = None, environ=None,
                  keylog_path: str | None = None) -> int:
    command = command_of(argv, shell, environ)
    access = parse_access(local_forwards=local_forwards, remote_forwards=remote_forwards,
                          http_proxy=http_proxy, socks=socks,
                          proxy_auth_file=proxy_auth_file, environ=environ)
    preflight()
    namespace = Namespace()
    loop = asyncio.get_running_loop()
    tunnel = pcap = pump = vpn = None
    services: list = []
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    foreground = in_terminal_foreground()
    running = False

    def on_signal(sig: int) -> None:
        if running:
            # the terminal gave the command its own SIGINT already
            if not (foreground and sig == signal.SIGINT):
                namespace.send_signal(sig)
        else:
            stop.set()
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        fd = await namespace.start()
        tunnel, pcap = open_profile(profile_path, pcap_path=pcap_path, conn=conn,
                                    keylog_path=keylog_path)
        connecting = asyncio.ensure_future(tunnel.connect(timeout=timeout))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connecting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not connecting.done():
            connecting.cancel()
            log.info("signal received while connecting")
            return 130
        stopped.cancel()
        info = connecting.result()
        log_tunnel_up(info)
        config = plan(info, everything=everything)
        for warning in await namespace.configure(config):
            log.warning("namespace: %s", warning)
        log.info("namespace %s: %s; routes %s; DNS %s", namespace.device,
                 ", ".join(f"{a}/{p}" for a, p in config["addresses"]),
                 ", ".join(f"{r['dst']}/{r['prefixlen']}" for r in config["routes"])
                 or "none", ", ".join(config["dns"]) or "none (names will not resolve)")
        pump = TunPump(tunnel, fd)
        if access:
            vpn = VpnStack(pump.stack_link())
            pump.attach_stack(vpn)
            services = await start_services(access, vpn, info)
        await namespace.execute(command)
        running = True
        log.info("running %s", " ".join(command))
        return await _supervise(namespace, tunnel, pump, vpn, timeout)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        for service in services:
            await service.close()
        if vpn is not None:
            vpn.close()
        if pump is not None:
            pump.close()
            log.debug("pump counters: %s", pump.counters.as_dict())
        await namespace.close(GRACE)
        if tunnel is not None:
            await tunnel.close()
        if pcap:
            pcap.close()


async def _supervise(namespace: Namespace, tunnel, pump: TunPump, vpn, timeout) -> int:
    """Until the command exits: its status.  The tunnel is reconnected meanwhile."""
    exited = asyncio.ensure_future(namespace.wait())
    try:
        while True:
            ended = asyncio.ensure_future(tunnel.wait_closed())
            await asyncio.wait({exited, ended}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                ended.cancel()
                return exited.result()
            exc = ended.exception()
            if exc is not None and exc.recoverable:
                log.warning("tunnel down: %s; reconnecting (the command keeps running)", exc)
                reconnecting = asyncio.ensure_future(tunnel.reconnect(timeout=timeout))
                await asyncio.wait({exited, reconnecting},
                                   return_when=asyncio.FIRST_COMPLETED)
                if exited.done():
                    reconnecting.cancel()
                    return exited.result()
                try:
                    info = reconnecting.result()
                except SessionError as err:
                    exc = err
                else:
                    old = set(pump.sources)
                    pump.rebind(info)
                    if vpn is not None:
                        vpn.rebind(info)
                    if pump.sources != old:
                        log.warning("the new session has other virtual addresses (%s): "
                                    "connections inside the namespace will fail",
                                    info.virtual_ip)
                    continue
            reason = str(exc) if exc is not None else "the tunnel closed"
            log.error("%s: ending the command", reason)
            namespace.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(exited), GRACE)
            except asyncio.TimeoutError:
                namespace.send_signal(signal.SIGKILL)
                await exited
            if exc is not None:
                raise exc
            return 1
    finally:
        if not exited.done():
            exited.cancel()
