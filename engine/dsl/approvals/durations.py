"""Durations and timer texts of approval flows.

Two forms: the configuration language's ``30m`` / ``48h`` / ``3d`` / ``2w`` (YAML ``timeout:`` and the
``crm:timeout`` properties the shorthand writes) and ISO 8601 as BPMN timers and ``camunda:dueDate`` write
them (``PT10M``, ``P2D``, ``P1W``; a date-time ``2026-01-31T12:00:00Z``; a cycle ``R3/PT1H``), quoted
(spiff-arena writes ``"PT10M"``) or not (Camunda writes ``PT10M``).
"""

from __future__ import annotations

import datetime as dt
import re

_SHORT = re.compile(r"^([1-9][0-9]{0,5})(m|h|d|w)$")
_SHORT_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_ISO_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_CYCLE = re.compile(r"^R(\d*)/(.+)$")
#: Camunda's JUEL idiom for a due date: ``${dateTime().plusDays(2).toDate()}``
_PLUS = re.compile(r"^\$\{\s*dateTime\(\)\s*\.plus(Minutes|Hours|Days|Weeks)\((\d+)\)\s*\.toDate\(\)\s*\}$")


def parse_short(text: str) -> dt.timedelta | None:
    """``48h`` -> 48 hours; None when ``text`` is not of that form."""
    m = _SHORT.match(text.strip())
    return dt.timedelta(**{_SHORT_UNITS[m.group(2)]: int(m.group(1))}) if m else None


def parse_iso_duration(text: str) -> dt.timedelta | None:
    """``PT10M`` -> 10 minutes (years count 365 days, months 30); None when not an ISO 8601 duration."""
    m = _ISO_DURATION.match(text.strip())
    if not m:
        return None
    y, mo, w, d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return dt.timedelta(days=365 * y + 30 * mo + 7 * w + d, hours=h, minutes=mi, seconds=s)


def parse_any(text: str) -> dt.timedelta | None:
    """A duration in either form (``48h`` or ``PT48H``), quotes allowed around the ISO form."""
    return parse_short(text) or parse_iso_duration(unquote(text))


def unquote(text: str) -> str:
    """``"PT10M"`` / ``'PT10M'`` / ``PT10M`` -> ``PT10M``."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        return t[1:-1].strip()
    return t


def timer_text(kind: str, text: str) -> str | None:
    """The ISO 8601 text of a timer (``timeDuration`` / ``timeDate`` / ``timeCycle``), None if invalid."""
    t = unquote(text)
    if kind == "timeDuration":
        return t if parse_iso_duration(t) is not None else None
    if kind == "timeDate":
        try:
            dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            return None
        return t
    m = _CYCLE.match(t)
    if not m:
        return None
    parts = m.group(2).split("/")
    ok = all(parse_iso_duration(p) is not None or _is_datetime(p) for p in parts) and any(
        parse_iso_duration(p) is not None for p in parts)
    return t if ok and len(parts) <= 2 else None


def _is_datetime(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def due_date(text: str) -> dt.timedelta | None:
    """A ``camunda:dueDate`` as a delay from the task's creation: an ISO duration or Camunda's
    ``${dateTime().plusDays(N).toDate()}`` idiom (minutes, hours, days, weeks); None otherwise."""
    m = _PLUS.match(text.strip())
    if m:
        return dt.timedelta(**{m.group(1).lower(): int(m.group(2))})
    return parse_iso_duration(unquote(text))
