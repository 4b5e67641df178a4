"""Reading request input: the JSON body, If-Match, and the list parameters.

Everything a client sends is checked here for *shape* (a JSON object, an
integer version, a sort key that is a field name) before it reaches the
record service, which checks *meaning* (the field exists, the caller may
see it, the expression type-checks).  Every failure is a 4xx with a message
that names the parameter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import Request

from engine.api.errors import PayloadError, PreconditionRequired, UnsupportedMediaType
from engine.errors import BadRequest, ValidationFailed

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_FILTER_LENGTH = 4000
_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
_SORT_KEY = re.compile(rf"^-?{_NAME}(\.{_NAME})?$")
_FIELD_NAME = re.compile(rf"^{_NAME}(\.{_NAME})?$")
_VERSION = re.compile(r'^\s*(?:W/)?"?(\d{1,12})"?\s*$')
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class ListParams:
    """The list parameters of ``GET /records/<entity>``, shape-checked."""

    filter: str | None
    sort: tuple[str, ...] | None
    limit: int
    cursor: str | None
    count: bool
    fields: tuple[str, ...] | None
    expand: tuple[str, ...]


#: Longest integer a body may hold (digits); a record's numbers have at most 18 or 19.
MAX_INT_DIGITS = 40
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _BodyProblem(ValueError):
    """Raised by the JSON hooks with the message the client gets."""


def _reject_constant(name: str) -> Any:
    raise _BodyProblem(f"{name} is not allowed in JSON; send a finite number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _BodyProblem(f"a number in the body is too large ({len(text.lstrip('-'))} digits; "
                           f"at most {MAX_INT_DIGITS})")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _BodyProblem(f"the key {dup!r} appears twice in one object; send each key once")
    return out


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    return False


def parse_json_text(text: str) -> Any:
    """JSON text as Python values, strictly: numbers exact (``Decimal`` for fractions), no NaN or
    Infinity, no integer over :data:`MAX_INT_DIGITS` digits, no key twice in an object, no unpaired
    UTF-16 surrogate.  PayloadError says what is wrong."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int, parse_float=Decimal,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise PayloadError(f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}",
                           details={"line": e.lineno, "column": e.colno}) from e
    except _BodyProblem as e:
        raise PayloadError(str(e)) from e
    except (ValueError, RecursionError) as e:
        raise PayloadError("malformed JSON: it could not be read (nested too deep or a value out of range)") from e
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(data):
        raise PayloadError("the body holds an unpaired UTF-16 surrogate escape (such as \\ud800), "
                           "which is not text; send valid Unicode")
    return data


def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx error saying what is wrong with it."""
    data = json_body(request)
    if not isinstance(data, dict):
        raise PayloadError(f"the body must be a JSON object of field values, not {type(data).__name__}")
    return data


def json_body(request: Request) -> Any:
    """The request body as any JSON value (object, array...), or a 4xx error saying what is wrong with it."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json (got {mimetype or 'no content type'!r})",
                                   details={"content_type": request.content_type})
    raw = request.get_data(cache=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError(f"the body is not valid UTF-8 (byte {e.start})", details={"position": e.start}) from e
    return parse_json_text(text)


def if_match_version(request: Request, *, required: bool) -> int | None:
    """The version in ``If-Match`` (``3``, ``"3"`` or ``W/"3"``); 428 if required and missing."""
    header = request.headers.get("If-Match")
    if header is None or not header.strip():
        if required:
            raise PreconditionRequired(
                "this update needs an If-Match header with the record's current version, e.g. 'If-Match: 3'",
                hint="GET the record first: its 'version' (also sent as ETag) goes into If-Match")
        return None
    match = _VERSION.match(header)
    if match is None:
        raise BadRequest(f"If-Match must be the record's version number, got {header!r}",
                         details={"If-Match": ["must be an integer version, e.g. 3"]})
    return int(match.group(1))


def _int_param(args: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ValidationFailed(f"{name} must be an integer",
                               details={name: [f"must be an integer, got {raw!r}"]}) from e
    if not lo <= value <= hi:
        raise ValidationFailed(f"{name} must be between {lo} and {hi}", details={name: [f"must be {lo}..{hi}"]})
    return value


def int_arg(args: Any, name: str, default: int, lo: int, hi: int) -> int:
    """A whole-number query parameter within ``lo..hi`` (400 naming it otherwise)."""
    return _int_param(args, name, default, lo, hi)


def bool_arg(args: Any, name: str) -> bool:
    """A yes/no query parameter (``true``/``1``/``yes``...; 400 for anything else)."""
    return _bool_param(args, name)


def _bool_param(args: Any, name: str) -> bool:
    raw = (args.get(name) or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValidationFailed(f"{name} must be true or false", details={name: [f"must be true or false, got {raw!r}"]})


def _name_list(args: Any, name: str, pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    raw = args.get(name)
    if raw is None:
        return None
    items = tuple(p.strip() for p in raw.split(",") if p.strip())
    bad = [p for p in items if not pattern.match(p)]
    if bad:
        raise ValidationFailed(f"{name} takes field names separated by commas; not a field name: {bad[0]!r}",
                               details={name: [f"not a field name: {b!r}" for b in bad]})
    return items


def list_params(args: Any) -> ListParams:
    """Shape-check the query string of a list request."""
    flt = args.get("filter")
    if flt is not None and len(flt) > MAX_FILTER_LENGTH:
        raise ValidationFailed("filter is too long", details={"filter": [f"at most {MAX_FILTER_LENGTH} characters"]})
    return ListParams(
        filter=flt if flt and flt.strip() else None,
        sort=_name_list(args, "sort", _SORT_KEY),
        limit=_int_param(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        cursor=args.get("cursor") or None,
        count=_bool_param(args, "count"),
        fields=_name_list(args, "fields", _FIELD_NAME),
        expand=_name_list(args, "expand", _FIELD_NAME) or (),
    )


def record_params(args: Any) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """``fields`` and ``expand`` of a single-record GET."""
    return _name_list(args, "fields", _FIELD_NAME), _name_list(args, "expand", _FIELD_NAME) or ()


def deleted_arg(args: Any) -> bool:
    """``deleted=only`` (the recycle bin) -> True; absent or ``deleted=exclude`` -> False; 400 otherwise."""
    raw = (args.get("deleted") or "exclude").strip().lower()
    if raw not in ("only", "exclude"):
        raise ValidationFailed("deleted must be 'only' or 'exclude'",
                               details={"deleted": [f"must be only (deleted records) or exclude, got {raw[:40]!r}"]})
    return raw == "only"
