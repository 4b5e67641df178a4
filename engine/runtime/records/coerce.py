"""Coercion and type validation of one field value (the pipeline's second step).

:func:`coercer_for` picks, once per revision, a function per field that turns
input (JSON-ish values from the API, Python values from services, text from
imports) into the field's Python value, or raises :class:`BadValue` with a
short message ("must be a whole number", "is too long (300 characters; at
most 200)", "'x' is not an option; choose one of: a, b").
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.dsl.currencies import iso_codes
from engine.dsl.model import Field
from engine.runtime.records.bad_value import BadValue as BadValue  # re-exported: callers catch coerce.BadValue
from engine.runtime.storage import _STRING_LENGTHS, DEFAULT_STRING_LENGTH

Coercer = Callable[[Any], Any]
MAX_TEXT = 1_000_000
MAX_JSON_ITEMS = 10_000
_INT_LIMIT = 2**63
_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def coercer_for(field: Field, field_types: Mapping[str, Any] | None = None, *,
                phone_region: str | None = None) -> Coercer:
    """The coercer of a value the engine computed for ``field`` (defaults, formulas; None stays None).

    Computed numbers are rounded to the field's scale; input goes through
    :func:`coercer_parts`, which refuses digits the field cannot keep.
    """
    base, keep_empty = coercer_parts(field, field_types, strict=False, phone_region=phone_region)
    return _none_passing(base, keep_empty=keep_empty)


def coercer_parts(field: Field, field_types: Mapping[str, Any] | None = None, *,
                  strict: bool = True, phone_region: str | None = None) -> tuple[Coercer, bool]:
    """(coercer of an input value that is neither None nor a dropped "", whether "" is kept as text).

    ``strict`` (input): a number with more decimal places than the field
    keeps is refused rather than silently rounded.  A field of a plugin type
    (``field.format``) also runs the type's check (``field_types``: the
    workspace's plugin field types).  A phone field is parsed in
    ``phone_region`` (the workspace's; None: numbers need their country
    code), see :mod:`engine.runtime.records.phones`.  Hot loops inline the
    null rule of :func:`coercer_for` around this.
    """
    base, keep_empty = _base_parts(field, strict)
    if field.type == "phone":
        base = _phone(base, field, phone_region)
    custom = (field_types or {}).get(field.format) if field.format else None
    if custom is not None and custom.check is not None:
        base = _checked(base, custom.check)
    return base, keep_empty


def _checked(base: Coercer, check: Callable[[Any], Any]) -> Coercer:
    def coerce(value: Any) -> Any:
        out = base(value)
        try:
            return check(out)
        except ValueError as e:  # a plugin type's check says what is wrong with the value
            raise BadValue(str(e)) from None

    return coerce


def _phone(base: Coercer, field: Field, region: str | None) -> Coercer:
    from engine.runtime.records.phones import phone_normaliser  # phonenumbers loads only for phone fields

    normalise = phone_normaliser(region, keep_as_typed=field.keep_as_typed)

    def coerce(value: Any) -> Any:
        text = base(value)
        return normalise(text) if text else text

    return coerce


def _base_parts(field: Field, strict: bool) -> tuple[Coercer, bool]:
    t = field.type
    if t in ("string", "email", "phone", "url", "auto_number", "text"):
        base = _string(field)
    elif t == "integer":
        base = _bounded(field, _integer)
    elif t in ("decimal", "money", "percent"):
        base = _bounded(field, _decimal(field.scale, strict=strict))
    elif t == "boolean":
        base = _boolean
    elif t == "date":
        base = _date
    elif t == "datetime":
        base = _datetime
    elif t == "picklist":
        base = _picklist(field.option_keys)
    elif t == "multi_picklist":
        base = _multi(field.option_keys)
    elif t in ("reference", "user"):
        base = _record_id
    elif t == "json":
        base = _json
    else:
        raise ValueError(f"no coercer for field type {t!r}")
    return base, t in ("string", "text", "email", "phone", "url")


def _none_passing(base: Coercer, *, keep_empty: bool) -> Coercer:
    def coerce(value: Any) -> Any:
        if value is None or (value == "" and not keep_empty):
            return None
        return base(value)

    return coerce


def max_length(field: Field) -> int:
    """The longest text a string field takes (its column's length)."""
    if field.type == "text":
        return MAX_TEXT
    return field.max_length or _STRING_LENGTHS.get(field.type, DEFAULT_STRING_LENGTH)


#: Single-line text types: surrounding whitespace is not part of the value (a unique "SN-1 " is "SN-1").
TRIMMED = frozenset({"string", "email", "phone", "url", "auto_number"})


def _string(field: Field) -> Coercer:
    limit = max_length(field)
    kind = field.type
    trim = kind in TRIMMED

    def coerce(value: Any) -> str:
        if not isinstance(value, str):
            raise BadValue("must be text")
        if trim:
            value = value.strip()
        if len(value) > limit:
            raise BadValue(f"is too long ({len(value)} characters; at most {limit})")
        if "\x00" in value:
            raise BadValue("must not contain NUL characters")
        if not value.isascii() and not valid_unicode(value):
            raise BadValue("is not valid Unicode text (an unpaired surrogate)")
        if kind == "email" and value and not _looks_like_email(value):
            raise BadValue("is not an email address")
        if kind == "url" and value and not value.startswith(("http://", "https://")):
            raise BadValue("must start with http:// or https://")
        return value

    return coerce


def valid_unicode(text: str) -> bool:
    """False when ``text`` holds an unpaired UTF-16 surrogate (it cannot be stored or sent as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _looks_like_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and "." in domain and " " not in value)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise BadValue("must be a whole number")
    if isinstance(value, int):
        out = value
    elif _whole(value):
        if not -_INT_LIMIT < value < _INT_LIMIT:  # before int(): 1e999999 would become a million digits
            raise BadValue("is too large")
        out = int(value)
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        if len(value.strip()) > 20:
            raise BadValue("is too large")
        out = int(value.strip())
    else:
        raise BadValue("must be a whole number")
    if not -_INT_LIMIT < out < _INT_LIMIT:
        raise BadValue("is too large")
    return out


def _whole(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value()


def _decimal(scale: int, *, strict: bool) -> Coercer:
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** (18 - scale)
    too_fine = f"has more decimal places than this field keeps (at most {scale})"

    def coerce(value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise BadValue("must be a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadValue("must be a finite number")
        try:
            out = value if type(value) is Decimal else Decimal(value) if type(value) is int else \
                Decimal(str(value).strip())
        except InvalidOperation as e:
            raise BadValue("must be a number") from e
        if not out.is_finite():
            raise BadValue("must be a finite number")
        if abs(out) >= limit:
            raise BadValue(f"is too large (at most {18 - scale} digits before the decimal point)")
        exact = out.quantize(quantum)
        if strict and exact != out:
            raise BadValue(too_fine)
        return exact

    return coerce


def _bounded(field: Field, base: Coercer) -> Coercer:
    lo, hi = field.min, field.max
    if lo is None and hi is None:
        return base

    lo_d = Decimal(str(lo)) if lo is not None else None
    hi_d = Decimal(str(hi)) if hi is not None else None
    too_low = f"must be at least {_num(lo)}" if lo is not None else ""
    too_high = f"must be at most {_num(hi)}" if hi is not None else ""

    def coerce(value: Any) -> Any:
        out = base(value)
        if lo_d is not None and out < lo_d:
            raise BadValue(too_low)
        if hi_d is not None and out > hi_d:
            raise BadValue(too_high)
        return out

    return coerce


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadValue("must be true or false")


#: The text forms dates and datetimes are accepted in (docs/records.md): ISO 8601 extended format only,
#: so "20260101" or "2026-W01" is refused instead of being read some way the sender did not mean.
DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
DATETIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?")


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        raise BadValue("must be a date without a time (YYYY-MM-DD)")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and DATE_TEXT.fullmatch(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise BadValue("is not a date of the calendar (YYYY-MM-DD)") from None
    raise BadValue("must be a date (YYYY-MM-DD)")


def _datetime(value: Any) -> dt.datetime:
    out = value
    if isinstance(value, str):
        text = value.strip()
        try:
            out = dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if DATETIME_TEXT.fullmatch(text) else None
        except ValueError:
            out = None
    if not isinstance(out, dt.datetime):
        raise BadValue("must be a date and time (ISO 8601, e.g. 2026-01-31T14:00:00Z)")
    if not dt.datetime(1, 1, 2) <= out.replace(tzinfo=None) <= dt.datetime(9999, 12, 30):
        raise BadValue("is out of range")
    return out.replace(tzinfo=dt.UTC) if out.tzinfo is None else out.astimezone(dt.UTC)


def _picklist(options: tuple[str, ...]) -> Coercer:
    allowed = frozenset(options)
    listing = ", ".join(options)

    def coerce(value: Any) -> str:
        if not isinstance(value, str):
            raise BadValue(f"must be one of the options: {listing}")
        if value not in allowed:
            raise BadValue(f"{_short(value)!r} is not an option; choose one of: {listing}")
        return value

    return coerce


def _short(value: str) -> str:
    return value if len(value) <= 40 else value[:37] + "..."


def _multi(options: tuple[str, ...]) -> Coercer:
    one = _picklist(options)

    def coerce(value: Any) -> list[str]:
        if not isinstance(value, (list, tuple)):
            raise BadValue("must be a list of options")
        out: list[str] = []
        for item in value:
            key = one(item)
            if key not in out:
                out.append(key)
        return out

    return coerce


def _record_id(value: Any) -> int:
    if isinstance(value, dict) and set(value) >= {"id"}:
        value = value["id"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < _INT_LIMIT:
        raise BadValue("must be a record id (a positive whole number)")
    return value


def _json(value: Any) -> Any:
    budget = [MAX_JSON_ITEMS]
    if not _json_ok(value, depth=0, budget=budget):
        raise BadValue("must be JSON data (objects, lists, text, numbers, true/false, null; not too large)")
    return _plain_numbers(value) if _has_decimal(value) else value


def _json_ok(value: Any, *, depth: int, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0 or depth > 32:
        return False
    if value is None or isinstance(value, bool) or (isinstance(value, int) and -_INT_LIMIT < value < _INT_LIMIT):
        return True
    if isinstance(value, str):
        return "\x00" not in value and (value.isascii() or valid_unicode(value))
    if isinstance(value, float | Decimal):
        return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
    if isinstance(value, list):
        return all(_json_ok(v, depth=depth + 1, budget=budget) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_ok(k, depth=depth + 1, budget=budget)
                   and _json_ok(v, depth=depth + 1, budget=budget) for k, v in value.items())
    return False


def _has_decimal(value: Any) -> bool:
    if isinstance(value, Decimal):
        return True
    if isinstance(value, list):
        return any(_has_decimal(v) for v in value)
    if isinstance(value, dict):
        return any(_has_decimal(v) for v in value.values())
    return False


def _plain_numbers(value: Any) -> Any:
    """JSON data with Decimals (the API reads JSON numbers exactly) as int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < _INT_LIMIT else float(value)
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    return value


def coerce_currency(value: Any) -> str | None:
    """A currency code of ISO 4217 (three capital letters such as CNY or USD)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha() or not value.isupper():
        raise BadValue("must be a three-letter currency code such as USD")
    if value not in iso_codes():
        raise BadValue(f"{value!r} is not an ISO 4217 currency code (e.g. CNY, USD, EUR)")
    return value
