"""Real parts the tests need, and what to do when one is missing.

On a user's machine a missing part (PostgreSQL, Chromium) skips its tests with a reason; in CI
(`CI=true`) the same absence fails them, so nothing is silently left untested.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, reason: str) -> None:
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)


def postgres_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or None


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "chromium", "chromium-browser", "google-chrome"):
        if candidate:
            found = shutil.which(candidate)
            if found:
                return found
    return None
