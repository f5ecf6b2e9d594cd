"""SOCKS5 reply codes (RFC 1928 section 6) follow the stack's typed reason for a failed
CONNECT, never words of its message."""

from __future__ import annotations

import asyncio

import pytest

from erebus.netstack.errors import NetErrorReason, TcpError
from erebus.runtime.expose.dns import ResolveError
from erebus.runtime.expose.socks import (REP_CONNECTION_REFUSED, REP_GENERAL_FAILURE,
                                         REP_HOST_UNREACHABLE, REP_NETWORK_UNREACHABLE,
                                         REP_TTL_EXPIRED, reply_code)
from erebus.runtime.stack import _error_for


@pytest.mark.parametrize("reason, code", [
    (NetErrorReason.REFUSED, REP_CONNECTION_REFUSED),
    (NetErrorReason.TTL_EXPIRED, REP_TTL_EXPIRED),
    (NetErrorReason.NET_UNREACHABLE, REP_NETWORK_UNREACHABLE),
    (NetErrorReason.UNREACHABLE, REP_HOST_UNREACHABLE),
    (NetErrorReason.TIMED_OUT, REP_HOST_UNREACHABLE),
    (NetErrorReason.RESET, REP_GENERAL_FAILURE),
])
def test_the_reason_decides_the_reply(reason, code):
    # the message says something else on purpose: only the reason counts
    assert reply_code(_error_for(TcpError(reason, "refused unreachable ttl timed out"))) == code


def test_other_failures():
    assert reply_code(ResolveError("nosuch.test: NXDOMAIN")) == REP_HOST_UNREACHABLE
    assert reply_code(asyncio.TimeoutError()) == REP_HOST_UNREACHABLE
    assert reply_code(OSError("connection refused")) == REP_GENERAL_FAILURE   # words only
