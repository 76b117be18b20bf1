"""A missing prerequisite fails a CI run and skips a local one, saying what to install."""

from __future__ import annotations

import pytest

from tests.prerequisites import missing


def outcome_of_missing(what: str) -> BaseException:
    """The skip or failure `missing` raises, caught so that neither can pass for this test's own outcome."""
    try:
        missing(what)
    except (pytest.fail.Exception, pytest.skip.Exception) as outcome:
        return outcome
    raise AssertionError("missing() returned")


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_a_missing_prerequisite_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    outcome = outcome_of_missing("Chromium at /x")
    assert isinstance(outcome, pytest.fail.Exception)
    assert str(outcome) == "CI cannot run this test without Chromium at /x"


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_a_missing_prerequisite_skips_elsewhere_saying_what(monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    outcome = outcome_of_missing("Chromium at /x")
    assert isinstance(outcome, pytest.skip.Exception)
    assert str(outcome) == "needs Chromium at /x"
