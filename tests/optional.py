"""Checks that need a program outside Python (Chromium, exiftool): skipped on a laptop without it, but under
``CI=true`` a missing program fails the run, since ``.ci/run`` installs everything the README's checks need."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip the test (or, at import, the module); fail instead under CI=true."""
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true this fails instead of skipping (.ci/run installs it)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
