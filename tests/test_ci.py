"""The CI switch: only a true value of ``CI`` makes missing PostgreSQL a failure instead of a skip."""

from __future__ import annotations

import pytest

from tests.conftest import in_ci


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("TRUE", True), ("yes", True),
                                                 ("0", False), ("false", False), ("", False), ("no", False)])
def test_ci_values(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_ci_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert in_ci() is False
