"""What some tests need from the machine: a browser, a built extension, root for a mount. When it is
missing, CI (`CI=true`) fails the test; anywhere else the test is skipped, saying what to install."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this is a CI run: `CI=true`, as GitHub Actions, GitLab and most CI services set it."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def missing(what: str) -> NoReturn:
    """Fail under CI, skip elsewhere; `what` says what is missing and how to get it."""
    if in_ci():
        pytest.fail(f"CI cannot run this test without {what}", pytrace=False)
    pytest.skip(f"needs {what}")
