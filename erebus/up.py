"""``erebus up``: bring the tunnel up and serve the local-access options until a signal."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal

from .errors import ConfigError
from .expose.forward import LocalForward, parse_local_forward
from .openvpn.config import load_profile
from .runtime.openvpn import OpenVPNTunnel
from .runtime.stack import VpnStack

log = logging.getLogger("erebus")


async def run_up(profile_path: str, *, local_forwards: list[str], pcap_path: str | None = None,
                 timeout: float | None = None) -> int:
    specs = [parse_local_forward(s) for s in local_forwards]
    for spec in specs:
        try:
            ipaddress.IPv4Address(spec.host)
        except ValueError:
            raise ConfigError(f"-L {spec}: {spec.host!r} is not an IPv4 address (host names "
                              "need DNS through the tunnel, which is not implemented yet)") \
                from None
    profile = load_profile(profile_path)
    pcap = None
    if pcap_path:
        from .runtime.pcap import PcapWriter
        pcap = PcapWriter(pcap_path)
    tunnel = OpenVPNTunnel(profile, pcap=pcap)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    forwards: list[LocalForward] = []
    vpn = None
    try:
        info = await tunnel.connect(timeout=timeout or profile.connect_timeout)
        log.info("tunnel up: virtual IP %s/%s via %s, MTU %d, cipher %s, DNS %s",
                 info.virtual_ip, info.netmask, info.server, info.mtu, info.cipher,
                 ", ".join(info.dns) or "none")
        vpn = VpnStack(tunnel)
        for spec in specs:
            fwd = LocalForward(vpn, spec)
            await fwd.start()
            forwards.append(fwd)
        stopped = asyncio.ensure_future(stop.wait())
        ended = asyncio.ensure_future(tunnel.wait_closed())
        done, _ = await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
        if ended in done:
            stopped.cancel()
            exc = ended.exception()
            if exc is not None:
                raise exc
            return 1
        ended.cancel()
        log.info("signal received: closing connections and leaving the VPN")
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for fwd in forwards:
            await fwd.close()
        if vpn is not None:
            vpn.close()
        await tunnel.close()
        if pcap:
            pcap.close()



