"""Shared pytest fixtures: the network-namespace lab (see ``tests/lab.py``).

``lab`` is session-scoped: one set of namespaces, one PKI and one web host per run.
``ovpn_server(mode)`` starts (once per session) the stock OpenVPN server of a mode.
``swan_lab``, ``esp_lab`` and ``wg_lab`` are the strongSwan, ESP and WireGuard labs, one per test module;
``wg_lab2`` is the WireGuard lab with its second site (two peers for one client).
When the lab cannot run here (not root, ``openvpn`` or ``ip`` missing, ...) the
tests that use it are skipped, except under CI (``CI=true``), where that is a failure.
When a test that used the lab fails, the tails of the server logs are added to its
report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.ci import require
from tests.lab import Lab, OvpnServer, missing_prerequisites

_active_lab: Lab | None = None


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The running lab; skipped (failed under CI) if the machine cannot host it."""
    global _active_lab
    require(missing_prerequisites(), "network-namespace lab")
    with Lab() as the_lab:
        _active_lab = the_lab
        try:
            yield the_lab
        finally:
            _active_lab = None


@pytest.fixture(scope="session")
def ovpn_server(lab: Lab) -> Callable[[str], OvpnServer]:
    """Factory: ``ovpn_server("gcm")`` -> the running server for that mode (cached)."""
    return lab.start_server


@pytest.fixture(scope="module")
def swan_lab():
    """A strongSwan lab (tests/swan_lab.py) per module; skipped (failed under CI) if the
    machine cannot host it."""
    from tests.swan_lab import SwanLab
    from tests.swan_lab import missing_prerequisites as swan_missing
    require(swan_missing(), "strongSwan lab")
    with SwanLab() as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def wg_lab():
    """A WireGuard lab (tests/wg_lab.py: a stock wireguard-go server) per module; skipped
    (failed under CI) if the machine cannot host it."""
    from tests.wg_lab import WgLab
    from tests.wg_lab import missing_prerequisites as wg_missing
    require(wg_missing(), "WireGuard lab")
    with WgLab() as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def wg_lab2():
    """A WireGuard lab with its second site (``WgLab(second_site=True)``: a second
    wireguard-go peer for the same client, ``profile2_path``) per module; skipped
    (failed under CI) if the machine cannot host it."""
    from tests.wg_lab import WgLab
    from tests.wg_lab import missing_prerequisites as wg_missing
    require(wg_missing(), "WireGuard lab")
    with WgLab(second_site=True) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def esp_lab():
    """An ESP lab (tests/esp_lab.py) per module; skipped (failed under CI) if the machine
    cannot host it."""
    from tests.esp_lab import EspLab
    from tests.esp_lab import missing_prerequisites as esp_missing
    require(esp_missing(), "ESP lab")
    with EspLab() as the_lab:
        yield the_lab


def server_logs(lines: int = 40) -> str:
    """Tails of the lab's server (and web host) logs, for assertion messages."""
    return _active_lab.logs_tail(lines) if _active_lab is not None else "(no lab running)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and _active_lab is not None and "lab" in getattr(item, "fixturenames", ()):
        report.sections.append(("lab server logs", server_logs()))
    return report
