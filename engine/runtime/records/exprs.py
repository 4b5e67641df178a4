"""The one place where the record runtime meets the expression language.

Everything the record service needs from expressions goes through these
functions: compiling a check / formula / default once per revision,
evaluating it on a record in memory, and compiling a user's list filter to a
SQL clause.  Keeping this adapter small makes changes to the language's API a
one-file change here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.expressions import EvalContext, compile_expression
from engine.dsl.model import Entity, Workspace
from engine.errors import BadRequest, ExpressionError, SourceLocation
from engine.runtime.sqlexpr import to_sql
from engine.runtime.storage import Schema

#: a loader for one-hop references: (entity name, id) -> record dict or None
RefLoader = Callable[[str, int], Mapping[str, Any] | None]
#: a loader of users' directory entries (``owner.team``, ``manager_of``): id -> entry or None
UserLoader = Callable[[Any], Mapping[str, Any] | None]


def compile_rule(text: str, entity: Entity, workspace: Workspace, *, expected: str | None = None,
                 allow_old: bool = False, location: SourceLocation | None = None) -> Any:
    """Compile a configuration expression (check, formula, default); raises ExpressionError, located."""
    return compile_expression(text, entity, workspace, expected=expected, allow_old=allow_old, location=location)


def precompiled(workspace: Workspace, key: tuple[str, str, Any]) -> Any:
    """The expression the workspace's compile pass built for ``key`` (("check", entity, i),
    ("formula", entity, field), ("default", entity, field)), or None."""
    return workspace.compiled.get(key)


def hops(compiled: Any) -> frozenset[tuple[str, str]]:
    """(reference field, target entity) of every one-hop name the expression reads."""
    return frozenset((via, target) for via, target, _field in compiled.references_used)


def uses_context(compiled: Any) -> bool:
    """Whether the expression reads ``$user``, ``$today`` or ``$now`` (its SQL differs per call)."""
    return bool(compiled.variables_used)


def fields_used(compiled: Any) -> frozenset[str]:
    """Names the expression reads (``account.industry`` counts as ``account``)."""
    return frozenset(str(name).split(".", 1)[0] for name in compiled.fields_used)


def make_context(*, user_id: int | None, now: dt.datetime, old: Mapping[str, Any] | None,
                 ref: RefLoader | None, users: UserLoader | None = None, rates: Any = None) -> Any:
    """The evaluation context of one write (``$user``, ``$today``, ``$now``, ``old``, references, users,
    exchange rates for ``convert()``)."""
    return EvalContext(user_id=user_id, today=now.date(), now=now, old=old, ref=ref, users=users, rates=rates)


def result_currency(compiled: Any, record: Mapping[str, Any]) -> str | None:
    """The currency of a money formula's result on ``record``: the code ``convert()`` gave it, or the
    currency of the record's money field it was computed from; None when unknown (one hop, ``old.``)."""
    source = compiled.expr_type.currency
    if source is None:
        return None
    if source.startswith("="):
        return str(source[1:])
    if "." in source:
        return None
    value = record.get(f"{source}_currency")
    return str(value) if value else None


def evaluate(compiled: Any, record: Mapping[str, Any], ctx: Any) -> Any:
    """The value of ``compiled`` on ``record`` (ExpressionEvalError on failure)."""
    return compiled.evaluate(record, ctx)


def compile_filter(text: str, entity: Entity, workspace: Workspace) -> Any:
    """Compile a user's list filter against the fields the user may see.

    ``workspace`` / ``entity`` must already have hidden fields removed, so an
    unknown and a hidden field fail alike (and no hint names a hidden one).
    Raises BadRequest with the language's message, code and hint.
    """
    if not isinstance(text, str):
        raise BadRequest("filter must be text", code="bad_filter")
    try:
        return compile_expression(text, entity, workspace, expected="boolean")
    except ExpressionError as e:
        raise BadRequest(f"bad filter: {e.message}", code="bad_filter", hint=e.hint,
                         details={"filter": [e.message], **({"snippet": e.snippet} if e.snippet else {})}) from e


def filter_clause(compiled: Any, schema: Schema, entity_name: str, *, user_id: int | None,
                  now: dt.datetime) -> ColumnElement[bool]:
    """The SQL form of a compiled filter (bound parameters only; never pasted text), in WHERE form.

    ``for_filter`` leaves plain comparisons (no ``coalesce(cond, false)``): in
    a WHERE clause NULL and false both reject the row, and ``industry = 'x'``
    can use an index where the coalesced form cannot.
    """
    return to_sql(compiled, schema, entity_name, user_id=user_id, today=now.date(), now=now, for_filter=True)
