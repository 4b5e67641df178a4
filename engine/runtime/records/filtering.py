"""List filters: a user's expression, compiled against what the actor may see, then to SQL.

Compiled filters are memoised per revision (keyed by the hidden-field set,
entity and text), so a repeated list request parses nothing.  The SQL is
built by the expression language's SQL back end with bound parameters only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.expressions import ast
from engine.errors import BadRequest
from engine.runtime.records import exprs
from engine.runtime.records.query import SortKey
from engine.runtime.records.write_plan import EntityPlan

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

MAX_FILTER = 4000
#: The most work one list filter may ask of the database per row: function calls and operators.
MAX_FILTER_CALLS = 16
MAX_FILTER_OPERATORS = 64


def filter_where(uow: UnitOfWork, plan: EntityPlan, text: str | None) -> ColumnElement[bool] | None:
    """The SQL clause of ``text`` (None for no filter); BadRequest for a bad or forbidden filter.

    The SQL clause is memoised per revision when it depends on nothing but
    the text (no ``$user``/``$today``/``$now``, no reads through a reference,
    whose guard depends on the actor's scope).
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str) or len(text) > MAX_FILTER:
        raise BadRequest(f"filter must be an expression of at most {MAX_FILTER} characters", code="bad_filter")
    compiled = compiled_filter(uow, plan, text)
    if exprs.uses_context(compiled) or exprs.hops(compiled):  # depends on the actor or the clock
        return _sql(uow, plan, compiled)
    key = (uow.guard.hidden_pairs(), plan.name, text)
    return uow.state.memo("filter_sql", key, lambda: _sql(uow, plan, compiled))  # type: ignore[no-any-return]


def compiled_filter(uow: UnitOfWork, plan: EntityPlan, text: str) -> Any:
    """``text`` compiled against what the actor may see (memoised per revision and hidden-field set)."""
    hidden = uow.guard.hidden_pairs()
    visible = uow.state.visible(hidden)

    def make() -> Any:
        compiled = exprs.compile_filter(text, visible.entities[plan.name], visible)
        check_cost(compiled.ast)
        return compiled

    return uow.state.memo("filter", (hidden, plan.name, text), make)


def check_cost(tree: Any) -> None:
    """BadRequest when a filter asks too much work per row (a length limit alone does not bound it:
    4,000 characters hold a hundred ``contains(lower(...))`` calls)."""
    calls = operators = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            calls += 1
        elif isinstance(node, ast.BoolOp):
            operators += len(node.operands) - 1
        elif isinstance(node, (ast.Binary, ast.Unary, ast.In, ast.IsNull, ast.If)):
            operators += 1
    if calls > MAX_FILTER_CALLS or operators > MAX_FILTER_OPERATORS:
        raise BadRequest(f"the filter is too complex: {calls} function calls and {operators} operators "
                         f"(at most {MAX_FILTER_CALLS} and {MAX_FILTER_OPERATORS})", code="filter_too_complex",
                         details={"filter": [f"at most {MAX_FILTER_CALLS} function calls and "
                                             f"{MAX_FILTER_OPERATORS} operators"]},
                         hint="use `in [...]` for alternatives of one field, or narrow the filter and page")


def _sql(uow: UnitOfWork, plan: EntityPlan, compiled: Any) -> ColumnElement[bool]:
    clause = exprs.filter_clause(compiled, uow.schema, plan.name, user_id=uow.actor.user_id, now=uow.clock.now())
    return and_(clause, *_hop_guards(uow, plan, exprs.hops(compiled)))


def _hop_guards(uow: UnitOfWork, plan: EntityPlan, hops: frozenset[tuple[str, str]]) -> list[ColumnElement[bool]]:
    """A filter may read through a reference (``account.industry``) only to records the actor can see:
    rows whose referenced record is invisible never match, so probing reveals nothing."""
    out = []
    for via, target in sorted(hops):
        if target not in uow.state.plans:
            continue
        t = uow.state.plan(target).table
        scope = uow.guard.scope_clause(t, uow.guard.access(target).read)
        visible = select(t.c.id).where(t.c.deleted_at.is_(None), *([scope] if scope is not None else []))
        ref = uow.schema.field_expr(plan.name, via)
        out.append(or_(ref.is_(None), ref.in_(visible)))
    return out


def cursor_spec(keys: Sequence[SortKey], filter_text: str | None) -> str:
    """A short fingerprint of the sort and filter a cursor belongs to."""
    sort = ",".join(("-" if k.desc else "") + k.name for k in keys)
    return hashlib.sha1(f"{sort}|{filter_text or ''}".encode()).hexdigest()[:16]
