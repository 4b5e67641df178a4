"""Input coercion: the accepted text forms, exact decimals, trimmed single-line text, unpaired surrogates."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from engine.runtime.records.coerce import BadValue, coercer_for, coercer_parts
from tests.conftest import fld

UTC = dt.UTC


def _in(field: object, value: object) -> object:
    return coercer_parts(field)[0](value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-31T14:00:00Z", dt.datetime(2026, 1, 31, 14, tzinfo=UTC)),
    ("2026-01-31 14:00", dt.datetime(2026, 1, 31, 14, tzinfo=UTC)),
    ("2026-01-31T14:00:05.123+08:00", dt.datetime(2026, 1, 31, 6, 0, 5, 123000, tzinfo=UTC)),
])
def test_datetimes_in_iso_extended_form(text: str, expected: dt.datetime) -> None:
    assert _in(fld("at", "datetime"), text) == expected


@pytest.mark.parametrize("text", ["2026-01-31", "20260131T140000", "2026-01-31T14", "2026-W05-6T10:00",
                                  "2026-01-31T25:00", "31.01.2026 14:00"])
def test_other_datetime_forms_are_refused(text: str) -> None:
    with pytest.raises(BadValue, match="date and time"):
        _in(fld("at", "datetime"), text)


def test_input_decimals_are_exact_computed_ones_rounded() -> None:
    money = fld("amount", "money")
    assert _in(money, Decimal("10.50")) == Decimal("10.50")
    with pytest.raises(BadValue, match="more decimal places"):
        _in(money, Decimal("10.505"))
    with pytest.raises(BadValue, match="more decimal places"):
        _in(money, 0.001)
    assert coercer_for(money)(Decimal("10.505")) == Decimal("10.50")  # a formula's result: rounded (half even)


def test_single_line_text_is_trimmed_multi_line_kept() -> None:
    assert _in(fld("code", "string"), "  SN-1 ") == "SN-1"
    assert _in(fld("mail", "email"), " a@b.cn ") == "a@b.cn"
    assert _in(fld("memo", "text"), "  as written \n") == "  as written \n"


@pytest.mark.parametrize("kind", ["string", "text"])
def test_unpaired_surrogates_are_refused(kind: str) -> None:
    with pytest.raises(BadValue, match="surrogate"):
        _in(fld("x", kind), "a\ud800b")


@pytest.mark.parametrize("value", ["١١", "①", "+-5", "9" * 30, Decimal("1e999999"), 1e300])
def test_integers_take_ascii_digits_within_range(value: object) -> None:
    with pytest.raises(BadValue):
        _in(fld("n", "integer"), value)
