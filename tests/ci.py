"""Tests that need root or a lab skip with a reason when run without them, but under
CI (CI=true) they must run: there, a missing prerequisite is a failure."""

from __future__ import annotations

import os

import pytest


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require(problems: list[str], what: str) -> None:
    """Skip (fail under CI) when ``problems`` is not empty."""
    if problems:
        reason = f"{what} unavailable: " + "; ".join(problems)
        if running_in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
