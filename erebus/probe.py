"""``erebus probe``: does this profile work, and if not, why not."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time

from .errors import ConfigError, ErebusError, ParseError, SessionError
from .families import family_of, open_tunnel
from .tunnel import Tunnel
from .wire import icmp, icmpv6, ipv4, ipv6

log = logging.getLogger("erebus.probe")

PING_TRIES = 3
PING_WAIT = 2.0


def _failure(stage: str, message: str) -> dict:
    return {"ok": False, "stage": stage, "error": message}


async def ping_through(tunnel: Tunnel, address: str, *, tries: int = PING_TRIES,
               wait: float = PING_WAIT) -> float | None:
    """Round-trip time in ms of an ICMP echo (ICMPv6 for an IPv6 ``address``) to
    ``address`` through the tunnel.  An IPv6 echo goes from the tunnel's virtual_ip6
    (ConfigError without one)."""
    v6 = ":" in address
    ident = int.from_bytes(os.urandom(2), "big")
    payload = b"erebus probe " + bytes(16)
    if v6:
        if not tunnel.info.virtual_ip6:
            raise ConfigError(f"--ping {address}: the tunnel has no IPv6 address")
        src, dst = ipv6.to_ip6(tunnel.info.virtual_ip6), ipv6.to_ip6(address)

        def echo(seq: int) -> bytes:
            return ipv6.build_ipv6(src, dst, ipv6.NH_ICMPV6,
                                   icmpv6.build_echo_request(src, dst, ident, seq, payload))

        def reply_seq(packet: bytes) -> int | None:
            if not packet or packet[0] >> 4 != 6:
                return None
            header, body = ipv6.parse_ipv6(packet)
            if header.protocol != ipv6.NH_ICMPV6 or header.src != dst or header.is_fragment:
                return None
            message = icmpv6.parse_icmpv6(body, header.src, header.dst)
            if isinstance(message, icmpv6.Icmpv6Echo) and \
                    message.type == icmpv6.ECHO_REPLY and message.ident == ident:
                return message.seq
            return None
    else:
        src, dst = ipv4.ip_from_str(tunnel.info.virtual_ip), ipv4.ip_from_str(address)

        def echo(seq: int) -> bytes:
            return ipv4.build_ipv4(src, dst, ipv4.PROTO_ICMP,
                                   icmp.build_echo_request(ident, seq, payload))

        def reply_seq(packet: bytes) -> int | None:
            if not packet or packet[0] >> 4 != 4:
                return None
            header, body = ipv4.parse_ipv4(packet)
            if header.protocol != ipv4.PROTO_ICMP or header.src != dst:
                return None
            message = icmp.parse_icmp(body)
            if isinstance(message, icmp.IcmpEcho) and message.type == icmp.ECHO_REPLY \
                    and message.ident == ident:
                return message.seq
            return None

    replies: dict[int, float] = {}
    got = asyncio.Event()

    def receive(packet: bytes) -> None:
        try:
            seq = reply_seq(packet)
        except ParseError as exc:
            log.debug("dropped inbound packet: %s", exc)
            return
        if seq is not None:
            replies.setdefault(seq, time.perf_counter())
            got.set()

    tunnel.set_receiver(receive)
    for seq in range(1, tries + 1):
        sent = time.perf_counter()
        tunnel.send_packet(echo(seq))
        try:
            await asyncio.wait_for(got.wait(), wait)
        except asyncio.TimeoutError:
            log.info("ping %s: no reply to seq %d", address, seq)
            continue
        if seq in replies:
            return round((replies[seq] - sent) * 1000, 2)
        got.clear()
    return None


def ping_address(text: str) -> str:
    """``--ping``'s ADDR: an IPv4 or IPv6 literal (compressed); ConfigError otherwise."""
    try:
        return str(ipaddress.ip_address(text.strip("[]") if text.startswith("[") else text))
    except ValueError:
        raise ConfigError(f"--ping needs an IPv4 or IPv6 address, not {text!r}") from None


async def probe(profile_path: str, *, ping: str | None = None, timeout: float = 30.0,
                pcap_path: str | None = None, conn: str | None = None,
                keylog_path: str | None = None) -> dict:
    """Connect, report, disconnect.  Never raises for a failure it can name."""
    ping_addr = ping
    pcap = None
    try:
        if ping_addr:
            ping_addr = ping_address(ping_addr)
        if pcap_path:
            from .runtime.pcap import PcapWriter
            pcap = PcapWriter(pcap_path, family=family_of(profile_path).kind)
        tunnel: Tunnel = open_tunnel(profile_path, pcap=pcap, conn=conn,
                                     keylog=keylog_path)
    except ConfigError as exc:
        if pcap:
            pcap.close()
        return _failure("config", str(exc))
    # the profile's warnings (also logged at WARNING when it was read), for --json
    warnings = list(tunnel.warnings)
    try:
        try:
            info = await tunnel.connect(timeout=timeout)
        except SessionError as exc:
            return {**_failure(exc.stage, str(exc)), "warnings": warnings}
        report = {"ok": True, "stage": "connected", **info.as_dict(),
                  "dns6": [d for d in info.dns if ":" in d], "ping_ms": None,
                  "warnings": warnings}
        last = getattr(getattr(tunnel, "session", None), "last_handshake", None)
        if last is not None:
            report["latest_handshake"] = _when(last)
        peer_report = getattr(tunnel, "peer_report", None)
        peers = peer_report() if peer_report is not None else []
        if len(peers) > 1:                 # WireGuard with several peers: each one
            report["peers"] = [{**p, "latest_handshake": _when(p["latest_handshake"])}
                               for p in peers]
            down = [p for p in peers if not p["up"]]
            if down:
                report.update(ok=False, stage="peer", error="; ".join(
                    f"peer {p['peer']} ({p['server']}) is down: {p['error']}"
                    for p in down))
        counters = tunnel.counters
        seen = counters.as_dict() if counters is not None else {}
        if "control_retransmits" in seen:
            report["control_retransmits"] = seen["control_retransmits"]
        if ping_addr and ":" in ping_addr and not info.virtual_ip6:
            report["ping"] = ping_addr
            report.update(ok=False, stage="ping",
                          error=f"--ping {ping_addr}: the tunnel has no IPv6 address")
        elif ping_addr:
            rtt = await ping_through(tunnel, ping_addr)
            report["ping"] = ping_addr
            report["ping_ms"] = rtt
            if rtt is None:
                why = ""
                if getattr(tunnel.counters, "policy_out", 0):
                    why = f"; {ping_addr} is outside what the tunnel reaches (remote_ts)"
                error = f"no reply from {ping_addr} through the tunnel ({PING_TRIES} " \
                        f"echo requests{why})"
                if report["ok"]:
                    report.update(ok=False, stage="ping", error=error)
                else:                            # a peer is down: said first
                    report["error"] += f"; {error}"
        if tunnel.counters is not None:
            report["counters"] = tunnel.counters.as_dict()     # after the ping: its counts
        return report
    except ErebusError as exc:
        return {**_failure(getattr(exc, "stage", "error"), str(exc)), "warnings": warnings}
    finally:
        await tunnel.close()
        if pcap:
            pcap.close()


def _when(seconds: float | None) -> str | None:
    """A latest handshake as probe prints it (local time); None: never."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) \
        if seconds is not None else None


def _peer_lines(report: dict) -> list[str]:
    """The peer and handshake lines: one peer (its key), or each of several."""
    if report.get("peers"):
        return [f"  peer        {p['peer']} at {p['server']}: " +
                (f"handshake {p['latest_handshake']}" if p["up"] else
                 f"down ({p['error']})") for p in report["peers"]]
    return [*([f"  peer        {report['peer']}"] if report.get("peer") else []),
            *([f"  handshake   {report['latest_handshake']}"]
              if report.get("latest_handshake") else [])]


def render(report: dict) -> str:
    if not report["ok"] and report["stage"] not in ("ping", "peer"):
        return f"FAILED ({report['stage']}): {report['error']}"
    lines = [f"connected to {report['server']} in {report['setup_ms']:.0f} ms",
             *([f"  address     {report['address']}"] if report.get("address")
               and report["address"] not in report["server"] else []),
             *_peer_lines(report),
             f"  virtual IP  {report['virtual_ip']}",
             f"  netmask     {report['netmask']}",
             f"  gateway     {report['gateway'] or '-'}",
             f"  routes      {', '.join(report['routes']) or '-'}",
             *([f"  IPv6        {report['virtual_ip6']}/{report['prefix6']}",
                f"  gateway6    {report.get('gateway6') or '-'}",
                f"  routes6     {', '.join(report.get('routes6') or []) or '-'}"]
               if report.get("virtual_ip6") else []),
             f"  MTU         {report['mtu']}",
             f"  cipher      {report['cipher']}",
             f"  DNS         {', '.join(report['dns']) or '-'}"]
    if "ping" in report:
        rtt = report["ping_ms"]
        lines.append(f"  ping        {report['ping']}: "
                     + (f"{rtt:.1f} ms" if rtt is not None else "no reply"))
    if not report["ok"]:
        lines.append(f"FAILED ({report['stage']}): {report['error']}")
    return "\n".join(lines)

