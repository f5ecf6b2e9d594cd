"""``erebus up --metrics HOST:PORT``: the status (erebus/runtime/control.py's
snapshot) in the Prometheus text exposition format, version 0.0.4.  The names are
listed in docs/control.md."""

from __future__ import annotations

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (type, help)
METRICS = {
    "erebus_tunnel_up": ("gauge", "1 while the tunnel carries packets, 0 while it "
                         "connects or reconnects"),
    "erebus_uptime_seconds": ("gauge", "seconds since erebus up started"),
    "erebus_bytes_total": ("counter", "inner IP bytes through the tunnel, by direction"),
    "erebus_packets_total": ("counter", "inner IP packets through the tunnel, by direction"),
    "erebus_drops_total": ("counter", "packets dropped, by reason, over the whole run"),
    "erebus_reconnects_total": ("counter", "sessions brought up again after one ended"),
    "erebus_renegotiations_total": ("counter", "rekeys and renegotiations"),
    "erebus_connections": ("gauge", "open local connections, by service (-L, -R, http, "
                           "socks, nc)"),
}


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(status: dict) -> str:
    """The text of GET /metrics for one status snapshot."""
    samples: dict[str, list[tuple[str, float]]] = {name: [] for name in METRICS}
    samples["erebus_tunnel_up"].append(("", 1 if status.get("state") == "up" else 0))
    samples["erebus_uptime_seconds"].append(("", status.get("uptime_s", 0)))
    for d in ("in", "out"):
        samples["erebus_bytes_total"].append((f'dir="{d}"', status.get(f"bytes_{d}", 0)))
        samples["erebus_packets_total"].append((f'dir="{d}"', status.get(f"packets_{d}", 0)))
    for reason, n in sorted((status.get("drops") or {}).items()):
        samples["erebus_drops_total"].append((f'reason="{_label(reason)}"', n))
    samples["erebus_reconnects_total"].append(("", status.get("reconnects", 0)))
    samples["erebus_renegotiations_total"].append(("", status.get("renegotiations", 0)))
    for service, n in sorted((status.get("connections") or {}).items()):
        samples["erebus_connections"].append((f'service="{_label(service)}"', n))
    out = []
    for name, (kind, text) in METRICS.items():
        out.append(f"# HELP {name} {text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples[name]:
            shown = str(value) if isinstance(value, int) else f"{value:.1f}"
            out.append(f"{name}{{{labels}}} {shown}" if labels else f"{name} {shown}")
    return "\n".join(out) + "\n"


def routes(status) -> dict:
    """The HttpServe routes of --metrics; ``status``: a callable giving the snapshot."""
    return {"/metrics": lambda: (CONTENT_TYPE, render(status()).encode())}
