"""Fast JSON for the API: Decimal, datetime and date without a detour.

Flask's default provider renders dates as HTTP dates and goes through a
Python-level ``default`` for every unknown value.  Ours keeps one C-backed
:class:`json.JSONEncoder` (compact separators, UTF-8 text, no key sorting)
and converts the three types the records hold:

* ``Decimal`` -> a JSON number (money and decimals are 18 digits with a
  scale of 2 to 6 in the engine, which a double carries exactly as text);
* ``datetime`` -> ISO 8601 with its offset (UTC for everything the engine
  stores), ``date`` -> ``YYYY-MM-DD``.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.json.provider import JSONProvider
from werkzeug.sansio.response import Response

#: exact type -> converter for the values records hold (one dict lookup instead of an isinstance chain)
_CONVERT: dict[type, Any] = {Decimal: float, dt.datetime: dt.datetime.isoformat, dt.date: dt.date.isoformat}


def _default(value: Any) -> Any:
    """Turn the non-JSON values records hold into JSON values."""
    conv = _CONVERT.get(type(value))
    if conv is not None:
        return conv(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default)


def dumps_fast(obj: Any) -> str:
    """Compact JSON text of ``obj`` (Decimal/datetime/date understood)."""
    return _ENCODER.encode(obj)


def encode_body(obj: Any) -> bytes:
    """``obj`` as a UTF-8 response body; text that is not valid Unicode (an unpaired surrogate
    echoed from input) is written as a ``\\udXXX`` escape rather than failing the response."""
    return _ENCODER.encode(obj).encode("utf-8", "backslashreplace")


class FastJSONProvider(JSONProvider):
    """The app's JSON provider: compact, UTF-8, Decimal/datetime aware."""

    mimetype = "application/json"

    def __init__(self, app: Flask) -> None:
        super().__init__(app)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialize ``obj``; keyword arguments fall back to :func:`json.dumps`."""
        if kwargs:
            kwargs.setdefault("default", _default)
            return json.dumps(obj, **kwargs)
        return _ENCODER.encode(obj)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON text (bytes must be UTF-8)."""
        return json.loads(s, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """A JSON response of ``args``/``kwargs`` (as :func:`flask.jsonify`)."""
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(_ENCODER.encode(obj), mimetype=self.mimetype)
