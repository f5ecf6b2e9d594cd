"""Run ``erebus ...`` under cProfile with the TCP sender's counters recorded (bench helper).

    python bench/upload_probe.py OUTDIR erebus-args...

Writes OUTDIR/erebus.prof (cProfile) and OUTDIR/tcp.json: for every connection that sent
more than 1 MiB, its segments, retransmissions, RTOs, fast recoveries, spurious undos,
the largest cwnd and what limited each output pass that left data unsent (cwnd, the
peer's window) or found nothing to send (the send buffer full of unacked data, or the
application).  Measurement only: the patched methods call the real ones unchanged.
"""

from __future__ import annotations

import atexit
import cProfile
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erebus.netstack import tcp  # noqa: E402

OUT = Path(sys.argv[1])
RECORDS: list[dict] = []
C = tcp.TcpConnection


def _probe(conn) -> collections.Counter:
    p = conn.__dict__.get("_probe")
    if p is None:
        p = conn.__dict__["_probe"] = collections.Counter()
    return p


_output = C.output


def output(self, now):
    out = _output(self, now)
    if self.state in tcp.SYNCHRONIZED:
        p = _probe(self)
        total = self.snd_una + len(self._sbuf)
        flight = self.snd_nxt - self.snd_una
        if total > self.snd_nxt:
            p["pass_cwnd_limited" if flight >= self.cwnd - self.mss else
              "pass_rwnd_limited" if flight >= self.snd_wnd - self.mss else
              "pass_other_limited"] += 1
        elif len(self._sbuf) >= self.snd_buf_limit - 2 * self.mss:
            p["pass_sndbuf_limited"] += 1
        elif out:
            p["pass_app_limited"] += 1
        if out:
            p["passes"] += 1
            p["segments_in_passes"] += len(out)
            p["max_burst"] = max(p["max_burst"], len(out))
            p["max_cwnd"] = max(p["max_cwnd"], self.cwnd)
            p["max_snd_wnd"] = max(p["max_snd_wnd"], self.snd_wnd)
            if self.srtt is not None:
                ms = int(self.srtt * 1000)
                p["min_srtt_ms"] = min(p.get("min_srtt_ms", ms), ms)
                p["max_srtt_ms"] = max(p["max_srtt_ms"], ms)
    return out


_on_rto = C._on_rto


def on_rto(self, now):
    if self.state in tcp.SYNCHRONIZED:
        _probe(self)["rtos"] += 1
    return _on_rto(self, now)


_on_dupack = C._on_dupack


def on_dupack(self, now):
    before = self._rexmit_from
    r = _on_dupack(self, now)
    if before is None and self._rexmit_from is not None:
        _probe(self)["fast_recoveries"] += 1
    return r


def _record(self):
    p = self.__dict__.get("_probe")
    if p is not None and self.bytes_out > 1 << 20 and not p.get("recorded"):
        p["recorded"] = 1
        RECORDS.append({"bytes_out": self.bytes_out, "segments_out": self.segments_out,
                        "segments_in": self.segments_in, "retransmits": self.retransmits,
                        "spurious_undos": self.spurious_undos,
                        "reordering": self.reordering, "mss": self.mss,
                        **{k: v for k, v in p.items() if k != "recorded"}})


for name in ("_enter_closed", "_enter_time_wait"):
    orig = getattr(C, name)

    def wrapped(self, *a, _orig=orig, **kw):
        _record(self)
        return _orig(self, *a, **kw)
    setattr(C, name, wrapped)
C.output, C._on_rto, C._on_dupack = output, on_rto, on_dupack


def dump() -> None:
    (OUT / "tcp.json").write_text(json.dumps(RECORDS, indent=1) + "\n")


atexit.register(dump)

if __name__ == "__main__":
    from erebus.cli import main
    sys.argv = ["erebus", *sys.argv[2:]]
    prof = cProfile.Profile()
    prof.enable()
    try:
        main()
    except KeyboardInterrupt:
        pass
    finally:
        prof.disable()
        prof.dump_stats(str(OUT / "erebus.prof"))
