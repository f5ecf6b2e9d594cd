"""Rate-limited drop warnings: one line per kind per interval, the rest counted."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from erebus.ipsec.esp import EspCounters
from erebus.runtime.ipsec import DROP_KINDS as ESP_DROP_KINDS
from erebus.openvpn.session import Counters
from erebus.openvpn.static import StaticCounters
from erebus.runtime.openvpn import DROP_KINDS as OVPN_DROP_KINDS
from erebus.runtime.ratelimit import DropReporter, RateLimitedLog, counters_summary

LOG = logging.getLogger("erebus.test.ratelimit")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOG.name]


def test_one_line_per_kind_per_interval_and_the_rest_counted(caplog):
    caplog.set_level(logging.DEBUG, LOG.name)
    clock = Clock()
    limit = RateLimitedLog(LOG, interval=10.0, clock=clock)
    for i in range(1000):                       # 1000 drops over 20 s
        clock.now = 100.0 + i * 0.02
        limit.log(logging.WARNING, "auth", "dropped a forged packet")
    limit.log(logging.WARNING, "replay", "dropped a replay", count=5)
    got = lines(caplog)
    assert got[0] == "dropped a forged packet"
    assert got[1] == "dropped a forged packet (suppressed 499 similar)"
    assert got[2] == "dropped a replay (suppressed 4 similar)"
    assert len(got) == 3
    limit.flush()
    assert lines(caplog)[3:] == ["dropped a forged packet (suppressed 499 similar)"]
    limit.flush()                               # told once
    assert len(lines(caplog)) == 4


def test_nothing_is_counted_when_the_level_is_off(caplog):
    caplog.set_level(logging.ERROR, LOG.name)
    limit = RateLimitedLog(LOG, clock=Clock())
    assert not limit.log(logging.WARNING, "auth", "x")
    limit.flush()
    assert lines(caplog) == []


def test_the_table_of_kinds_is_bounded():
    limit = RateLimitedLog(LOG, clock=Clock())
    for i in range(RateLimitedLog.MAX_KINDS * 3):
        limit.log(logging.CRITICAL + 1, f"kind{i}", "x")
    assert len(limit._kinds) <= RateLimitedLog.MAX_KINDS


@dataclass
class FakeCounters:
    dropped_replay: int = 0
    dropped_data_auth: int = 0


def test_drop_reporter_logs_increases_and_restarts_with_a_new_session(caplog):
    caplog.set_level(logging.INFO, LOG.name)
    clock = Clock()
    kinds = {"dropped_replay": (logging.WARNING, "a replay"),
             "dropped_data_auth": (logging.WARNING, "a forged packet")}
    reporter = DropReporter(LOG, kinds, interval=5.0, clock=clock)
    c = FakeCounters()
    reporter.check(c)
    assert lines(caplog) == []
    c.dropped_replay = 3
    reporter.check(c)
    clock.now += 1
    c.dropped_replay = 10
    reporter.check(c)
    assert lines(caplog) == ["dropped a replay (suppressed 2 similar)"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    fresh = FakeCounters(dropped_data_auth=1)       # a reconnect: new counters from 0
    clock.now += 10
    reporter.check(fresh)
    assert lines(caplog)[1:] == ["dropped a forged packet"]
    reporter.flush(fresh)
    assert lines(caplog)[2:] == ["dropped a replay (suppressed 7 similar)"]


def test_every_drop_kind_names_a_real_counter():
    assert set(ESP_DROP_KINDS) <= set(EspCounters.DROPS)
    assert set(OVPN_DROP_KINDS) - {"dropped_decrypt"} <= {
        f for f in Counters.__dataclass_fields__}
    assert set(OVPN_DROP_KINDS) <= set(StaticCounters.__dataclass_fields__)


def test_counters_summary_shows_what_is_not_zero():
    c = Counters(dropped_replay=2, keepalives_in=1)
    assert counters_summary(c) == "dropped_replay=2 keepalives_in=1"
    assert counters_summary(Counters()).startswith("dropped_malformed=0 ")
    assert "auth_failed=4" in counters_summary(EspCounters(auth_failed=4))
    assert counters_summary(None) == "none"


def test_a_kind_pushed_out_of_the_table_tells_what_it_suppressed(caplog):
    caplog.set_level(logging.DEBUG, LOG.name)
    limit = RateLimitedLog(LOG, clock=Clock())
    for _ in range(4):                          # one line, three suppressed
        limit.log(logging.WARNING, "kind0", "dropped kind0")
    for i in range(1, RateLimitedLog.MAX_KINDS + 1):   # the last one pushes kind0 out
        limit.log(logging.WARNING, f"kind{i}", f"dropped kind{i}")
    got = lines(caplog)
    assert "dropped kind0 (suppressed 3 similar)" in got
    assert got.index("dropped kind0 (suppressed 3 similar)") == \
        got.index(f"dropped kind{RateLimitedLog.MAX_KINDS}") - 1
    assert len(limit._kinds) == RateLimitedLog.MAX_KINDS
    limit.flush()
    assert lines(caplog) == got                 # nothing left to tell, nothing told twice
