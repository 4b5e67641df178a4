"""HTTP statuses for engine errors, and the one JSON error body.

The only place in the engine where status codes live: domain errors carry a
stable ``code`` and ``details``; this module maps their *classes* to HTTP
statuses and renders ``{"error": {"code", "message", "details"}}``.
Werkzeug's own HTTP errors (404 for an unknown URL, 405, 413 ...) get the
same body, and anything unexpected becomes a 500 with no internals leaked.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from engine import errors as E
from engine.api.jsonenc import encode_body

log = logging.getLogger("engine.api")

#: Error class -> HTTP status; the first matching class (in this order) wins.
STATUS_BY_ERROR: tuple[tuple[type[E.EngineError], int], ...] = (
    (E.AuthenticationRequired, 401),
    (E.PermissionDenied, 403),
    (E.NotFound, 404),
    (E.VersionConflict, 409),
    (E.UniqueViolation, 409),
    (E.DuplicateFound, 409),
    (E.Conflict, 409),
    (E.GateRefused, 422),
    (E.BatchTooLarge, 413),
    (E.FileTooLarge, 413),
    (E.FileTypeRefused, 415),
    (E.RecordLocked, 423),
    (E.ValidationFailed, 400),
    (E.BadRequest, 400),
    (E.ExpressionEvalError, 400),
    (E.ConfigError, 400),  # an expression in ``filter``/``sort`` that does not parse or type-check
    (E.DatabaseNotReady, 503),
    (E.QueryTimeout, 503),
    (E.FileStoreError, 503),
    (E.Overloaded, 429),
)
#: Statuses whose answer tells the client when to try again.
RETRY_AFTER = {429: "1", 503: "1"}


class PreconditionRequired(E.BadRequest):
    """A write that needs ``If-Match: <version>`` came without it."""

    code = "precondition_required"


class UnsupportedMediaType(E.BadRequest):
    """The body is not ``application/json``."""

    code = "unsupported_media_type"


class PayloadError(E.BadRequest):
    """The request body is not a JSON object we can read."""

    code = "invalid_body"


def status_for(error: E.EngineError) -> int:
    """The HTTP status of an engine error (500 for an unmapped class)."""
    if isinstance(error, PreconditionRequired):
        return 428
    if isinstance(error, UnsupportedMediaType):
        return 415
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


#: Where docs/errors.md is published; each error body links to its code's row there.
DEFAULT_DOCS_URL = "docs/errors.md"


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> Response:
    """The JSON error body every failing request gets, with ``docs``: the link to the code's row."""
    docs = f"{current_app.config.get('CRM_DOCS_URL') or DEFAULT_DOCS_URL}#{code}"
    body = encode_body({"error": {"code": code, "message": message, "details": details, "docs": docs}})
    resp = current_app.response_class(body, status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _engine_error(error: E.EngineError) -> Response:
    status = status_for(error)
    if status >= 500 and status not in RETRY_AFTER:
        log.error("engine error answered with %s: %s", status, error, exc_info=error)
    data = error.to_dict()
    headers: dict[str, str] = {}
    if status in RETRY_AFTER:
        headers["Retry-After"] = RETRY_AFTER[status]
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="crm"' + (
            ', error="invalid_token"' if error.code == "invalid_token" else "")
    return error_response(status, data["code"], data["message"], data["details"], headers)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = (error.name or "error").lower().replace(" ", "_")
    message = error.description or error.name or "error"
    if status == 413:
        limit = request.max_content_length  # the app's limit, or a route's own (the bulk create's is larger)
        message = f"the request body is larger than the limit of {limit} bytes"
        code = "payload_too_large"
    resp = error_response(status, code, message)
    if status == 405 and getattr(error, "valid_methods", None):
        resp.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    return resp


def _db_busy(error: OperationalError) -> Response:
    text = str(getattr(error, "orig", None) or error).lower()
    if "readonly" in text or "read-only" in text:
        log.error("database is read-only: %s", error)
        return error_response(503, "database_read_only",
                              "the database is read-only: this server cannot write to it",
                              {"hint": "give the server's user write access to the database file and its folder "
                                       "(SQLite also writes -wal and -shm files next to it)"})
    log.warning("database unavailable: %s", error)
    return error_response(503, "database_unavailable", "the database is busy or unavailable; retry shortly",
                          headers={"Retry-After": "1"})


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error in the API", exc_info=error)
    return error_response(500, "internal_error", "internal error: this is a bug in the engine")


def register_error_handlers(app: Flask) -> None:
    """Install the JSON error handlers on ``app``."""
    app.register_error_handler(E.EngineError, _engine_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _db_busy)
    app.register_error_handler(Exception, _unexpected)
