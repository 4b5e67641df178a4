"""The one exception tree of the engine.

Every error a user can meet says *what* went wrong, *where* (a
:class:`SourceLocation` for configuration and expression errors, a field
path for record errors) and *how to fix it* (``hint``).  Each class carries a
stable ``code``; HTTP status codes are assigned in the web layer only
(``engine/api``), never here.

Load-time errors derive from :class:`ConfigError`; run-time errors from
:class:`RecordError` / :class:`PlanError` and friends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.wording import counted


class ValuePositions(Protocol):
    """Where each character of a value was written (YAML rewrites quoted, block and folded text)."""

    def position(self, value: str, offset: int) -> tuple[int, int] | None:
        """File (line, col) of character ``offset`` of ``value``; None if ``value`` is not this one's."""

    def line_text(self, line: int) -> str | None:
        """The text of file line ``line``, if known."""


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """A position in a configuration file: 1-based line and column.

    ``positions`` (set by the YAML reader on values whose text YAML rewrites:
    quoted, block and multi-line scalars) maps a position inside the value
    to the file; it takes no part in comparisons.
    """

    file: str
    line: int
    col: int
    positions: ValuePositions | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def shifted(self, offset_lines: int, col: int) -> SourceLocation:
        """The location ``offset_lines`` lines further down, at column ``col``."""
        return SourceLocation(self.file, self.line + offset_lines, col)

    def inside(self, value: str, offset: int) -> SourceLocation | None:
        """The exact file position of character ``offset`` of ``value`` written here (None if unknown)."""
        found = self.positions.position(value, offset) if self.positions is not None else None
        return SourceLocation(self.file, *found) if found else None


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""

    code = "engine_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        location: SourceLocation | None = None,
        hint: str | None = None,
        details: Any = None,
        snippet: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.location = location
        self.hint = hint
        self.details = details
        self.snippet = snippet

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.snippet:
            text += "\n" + self.snippet
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: ``{"code", "message", "details"}``."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        details = self.details
        if self.location is not None or self.hint is not None:
            extra: dict[str, Any] = {}
            if self.location is not None:
                extra["location"] = str(self.location)
            if self.hint is not None:
                extra["hint"] = self.hint
            details = {**extra, **(details or {})} if isinstance(details, dict) or details is None else details
        out["details"] = details
        return out


# --------------------------------------------------------------------------- configuration


class ConfigError(EngineError):
    """A problem in the YAML configuration, found at load or compile time."""

    code = "config_error"


class YamlSyntaxError(ConfigError):
    code = "yaml_syntax"


class SchemaViolation(ConfigError):
    code = "schema_violation"


class UnknownKind(ConfigError):
    code = "unknown_kind"


class DuplicateDefinition(ConfigError):
    code = "duplicate_definition"


class UnknownReference(ConfigError):
    code = "unknown_reference"


class InvalidName(ConfigError):
    code = "invalid_name"


class UnknownPlugin(ConfigError):
    """``workspace.yaml`` enables a plugin that is not installed."""

    code = "unknown_plugin"


class LayerError(ConfigError):
    code = "layer_error"


class BpmnError(ConfigError):
    """An approval flow's BPMN file that cannot run: missing, not well-formed, or using what the engine
    does not run (located at ``file.bpmn:line:col`` of the element)."""

    code = "bpmn_error"


class BpmnSyntaxError(BpmnError):
    """A BPMN file that is not well-formed XML."""

    code = "bpmn_syntax"


class UnsupportedBpmn(BpmnError):
    """An element of a BPMN file the engine does not run (a script task, a data store, ...)."""

    code = "bpmn_unsupported"


class ConfigErrors(ConfigError):
    """Several configuration errors found in one pass (reported together)."""

    code = "config_errors"

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        super().__init__(
            counted(len(self.errors), "configuration error"),
            location=first.location if first else None,
        )

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "details": [e.to_dict() for e in self.errors],
        }


def raise_collected(errors: Iterable[ConfigError]) -> None:
    """Raise the errors as one :class:`ConfigErrors` (or the single error)."""
    errs = list(errors)
    if len(errs) == 1:
        raise errs[0]
    if errs:
        raise ConfigErrors(errs)


# --------------------------------------------------------------------------- expressions


class ExpressionError(ConfigError):
    """An expression that does not parse or does not type-check."""

    code = "expression_error"


class ExpressionSyntaxError(ExpressionError):
    code = "expression_syntax"


class ExpressionTypeError(ExpressionError):
    code = "expression_type"


class ExpressionLimitError(ExpressionError):
    code = "expression_too_large"


class ExpressionEvalError(EngineError):
    """An expression failed while being evaluated on a record."""

    code = "expression_eval"


# --------------------------------------------------------------------------- plan / apply


class PlanError(EngineError):
    """A schema change that cannot be planned or applied."""

    code = "plan_error"


class BlockedChange(PlanError):
    code = "blocked_change"


class ConfirmationRequired(PlanError):
    code = "confirmation_required"


class PlanChanged(PlanError):
    """The plan computed under the apply lock is not the one the user confirmed (nothing applied)."""

    code = "plan_changed"


class RevisionNotFound(PlanError):
    code = "revision_not_found"


class DatabaseNotReady(PlanError):
    code = "database_not_ready"


class DatabaseUnavailable(DatabaseNotReady):
    """The database cannot be reached: server down, wrong host or port, wrong password, no such database."""

    code = "database_unavailable"


class DatabaseReadOnly(DatabaseNotReady):
    """The database (a SQLite file or its folder, or a read-only PostgreSQL) refuses writes."""

    code = "database_read_only"


class DriverMissing(DatabaseNotReady):
    """The Python package that talks to this kind of database is not installed."""

    code = "database_driver_missing"


class PortInUse(EngineError):
    """``crm serve`` cannot listen on the address it was given."""

    code = "port_unavailable"


# --------------------------------------------------------------------------- encrypted fields


class EncryptionError(EngineError):
    """Encrypted fields: a key of ``CRM_ENCRYPTION_KEYS`` is malformed or unknown, a value does not open."""

    code = "encryption_error"


class EncryptionKeyMissing(EncryptionError):
    """The workspace has encrypted fields but ``CRM_ENCRYPTION_KEYS`` is not set."""

    code = "encryption_key_missing"


# --------------------------------------------------------------------------- records / run time


class RecordError(EngineError):
    """An error while reading or writing records."""

    code = "record_error"


class ValidationFailed(RecordError):
    """Bad input for a record; ``details`` maps field name -> list of messages."""

    code = "validation_failed"


class NotFound(RecordError):
    code = "not_found"


class PermissionDenied(RecordError):
    code = "forbidden"


class AuthenticationRequired(RecordError):
    code = "unauthenticated"


class TransferRefused(PermissionDenied):
    """An ``owner_id`` change the actor's roles do not allow (``transfer: none | own_team``); the message
    names the rule and the user the record was to go to."""

    code = "transfer_refused"


class AccountLocked(AuthenticationRequired):
    """Password logins of a user are refused for a while after repeated failures."""

    code = "account_locked"


class VersionConflict(RecordError):
    code = "version_conflict"


class UniqueViolation(RecordError):
    code = "unique_violation"


class RestoreClash(UniqueViolation):
    """A deleted record cannot be restored: a live record took one of its unique values since;
    ``details["clashes"]`` names the field(s) and the record holding the value."""

    code = "restore_clash"


class GateRefused(RecordError):
    """A stage move the pipeline refuses: required fields missing, a gate expression false, a transition
    not allowed; ``details`` name the stage, the missing fields and the failed gate's message."""

    code = "stage_gate"


class DuplicateFound(RecordError):
    """A write a ``dedupe: ... action: block`` refuses; ``details["matches"]`` lists the records it matches."""

    code = "duplicate"


class Conflict(RecordError):
    """The request conflicts with the state of the data (a pool's holding limit or daily claim cap is
    reached, the record was claimed by someone else first, a cool-down is running)."""

    code = "conflict"


class RecordLocked(RecordError):
    code = "locked"


class BadRequest(RecordError):
    code = "bad_request"


class BatchTooLarge(BadRequest):
    """A bulk request over its limit: too many rows in one body, or a filter matching more records than one
    request may change; ``details`` give the count and the limit."""

    code = "batch_too_large"


class QueryTimeout(RecordError):
    """A unit of work ran past its time limit and was stopped (nothing it did was kept)."""

    code = "query_timeout"


class Overloaded(RecordError):
    """The caller already has as many requests running as it may; retry shortly."""

    code = "too_many_requests"


# --------------------------------------------------------------------------- attachments


class FileTooLarge(BadRequest):
    """An uploaded file is larger than ``attachments.max_size`` of workspace.yaml allows."""

    code = "file_too_large"


class FileTypeRefused(BadRequest):
    """An uploaded file's type (sniffed from its bytes) is not in ``attachments.allowed_types``."""

    code = "file_type_refused"


class FileStoreError(EngineError):
    """The file store cannot be opened or used (no folder configured, not writable, unknown store)."""

    code = "file_store"


# --------------------------------------------------------------------------- approvals


class WorkflowTextRefused(BadRequest):
    """A workflow asked the approvals script engine to evaluate a text the flow did not compile, or to run
    a script or call a service: refused (approval flows never evaluate BPMN text as Python)."""

    code = "workflow_text"


class NoAssignee(ValidationFailed):
    """An approval step resolves to no active user (no manager, an empty role or team): the submit is
    refused instead of leaving a stuck instance; ``details`` names the flow, the step and its assignees."""

    code = "no_assignee"


# --------------------------------------------------------------------------- currencies


class InvalidCurrency(BadRequest):
    """A currency code that is not an ISO 4217 code (``CNY``, ``USD``, ``EUR``...)."""

    code = "invalid_currency"


class MissingExchangeRate(Conflict):
    """A sum or a conversion needs an exchange rate that is not in the table on or before its date;
    ``details`` names ``from``, ``to`` and ``date``."""

    code = "missing_exchange_rate"
