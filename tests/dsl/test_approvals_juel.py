"""JUEL conditions as Camunda Modeler writes them, translated to the expression language (never evaluated)."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.dsl.approvals import juel
from engine.dsl.approvals.durations import due_date, parse_any, timer_text

TABLE = [
    ("${approved}", "approved"),
    ("${!approved}", "not approved"),
    ("#{approved}", "approved"),
    ("${a && b || !c}", "a and b or not c"),
    ("${amount > 1000}", "amount > 1000"),
    ("${amount gt 1000 and level le 2}", "amount > 1000 and level <= 2"),
    ("${x eq 'a  b' or y ne \"c&&d\"}", "x == 'a  b' or y != \"c&&d\""),
    ("${a lt 1 || b ge 2}", "a < 1 or b >= 2"),
    ("${!(a == b)}", "not (a == b)"),
    ("${a != b}", "a != b"),
    ("${not approved}", "not approved"),
    ("${empty reviewer}", "reviewer is null"),
    ("  credit_rating == 'low' or payment_term_days > 90 ", "credit_rating == 'low' or payment_term_days > 90"),
    ("__import__('os')", "__import__('os')"),
]


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_juel_translation(text: str, expected: str) -> None:
    assert juel.translate(text) == expected


def test_bare_names_and_unwrapping() -> None:
    assert juel.bare_name("${reviewer}") == "reviewer" and juel.bare_name("${a.b}") is None
    assert juel.unwrap(" ${x} ") == ("x", True) and juel.unwrap("x") == ("x", False)


def test_timer_texts_and_durations() -> None:
    assert timer_text("timeDuration", '"PT10M"') == "PT10M" and timer_text("timeDuration", "PT10M") == "PT10M"
    assert timer_text("timeDuration", "P") is None and timer_text("timeDuration", "10m") is None
    assert timer_text("timeDate", "2026-01-31T09:00:00Z") == "2026-01-31T09:00:00Z"
    assert timer_text("timeDate", "tomorrow") is None
    assert timer_text("timeCycle", "R3/PT1H") == "R3/PT1H" and timer_text("timeCycle", "R3/soon") is None
    assert parse_any("48h") == dt.timedelta(hours=48) and parse_any("'P1W'") == dt.timedelta(weeks=1)
    assert parse_any("P1DT2H30M") == dt.timedelta(days=1, hours=2, minutes=30) and parse_any("PT") is None
    assert due_date("${dateTime().plusWeeks(1).toDate()}") == dt.timedelta(weeks=1)
    assert due_date("P2D") == dt.timedelta(days=2) and due_date("${now() + 1}") is None
