"""The protocol packages are sans-IO: they import without asyncio and without
erebus.runtime (the one asyncio shell); no module outside erebus/runtime opens a
socket; no core calls os.urandom or a clock (they are parameters)."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SANS_IO = ["erebus.wire", "erebus.crypto", "erebus.openvpn", "erebus.ipsec", "erebus.netstack",
           "erebus.wireguard",
           "erebus.session", "erebus.tunnel", "erebus.families"]

BLOCKER = """
import sys
for name in ("asyncio", "erebus.runtime"):
    sys.modules[name] = None              # 'import asyncio' now raises ImportError
import importlib, pkgutil
for top in {tops!r}:
    module = importlib.import_module(top)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), top + "."):
        importlib.import_module(info.name)
print("ok")
"""


def test_protocol_packages_import_without_asyncio_or_the_runtime():
    result = subprocess.run([sys.executable, "-c", BLOCKER.format(tops=SANS_IO)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def _calls(path: pathlib.Path):
    """(module name, attribute, line) of every ``name.attr(...)`` call in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr, node.lineno


def test_only_the_runtime_owns_sockets_and_loops():
    owners = {("socket", "socket"), ("socket", "create_connection"),
              ("asyncio", "get_running_loop"), ("asyncio", "get_event_loop"),
              ("asyncio", "new_event_loop"), ("asyncio", "run")}
    found = [f"{path.relative_to(ROOT)}:{line}: {mod}.{attr}()"
             for path in sorted((ROOT / "erebus").rglob("*.py"))
             if "runtime" not in path.relative_to(ROOT / "erebus").parts[:1]
             for mod, attr, line in _calls(path) if (mod, attr) in owners]
    allowed = {"erebus/cli.py", "erebus/up.py", "erebus/run.py",     # asyncio.run, entry
               "erebus/probe.py",
               "erebus/nc.py", "erebus/status.py"}      # entry points: stdio, a control socket
    assert [f for f in found if f.split(":")[0] not in allowed] == []


@pytest.mark.parametrize("package", ["erebus/wire", "erebus/crypto", "erebus/openvpn",
                                     "erebus/ipsec", "erebus/netstack", "erebus/wireguard"])
def test_no_core_calls_os_urandom_or_a_clock_but_as_a_default(package):
    """Randomness and time are parameters: os.urandom / time.time appear only as
    keyword defaults (the outermost construction site), never called inside."""
    clocks = {("os", "urandom"), ("time", "time"), ("time", "monotonic"),
              ("secrets", "token_bytes"), ("random", "random")}
    found = [f"{path.relative_to(ROOT)}:{line}: {mod}.{attr}()"
             for path in sorted((ROOT / package).rglob("*.py"))
             for mod, attr, line in _calls(path) if (mod, attr) in clocks]
    assert found == []
