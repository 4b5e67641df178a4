"""Helpers the sales kinds' compilers share: located "unknown" errors, required keys, durations, and the
partial workspace their expressions are checked against."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.dsl.expressions import CompiledExpression, compile_expression
from engine.dsl.expressions.encrypted import check_sql_use
from engine.dsl.model import Entity, Workspace, frozen_map
from engine.dsl.yamlsrc import locate
from engine.errors import ExpressionError, SchemaViolation, SourceLocation, UnknownReference

if TYPE_CHECKING:
    from engine.dsl.compile_context import CompileContext
    from engine.dsl.loader import MergedDoc

_DAYS = re.compile(r"^([0-9]{1,5})d$")


def unknown(ctx: CompileContext, message: str, loc: SourceLocation | None, name: str, choices: Iterable[str]) -> None:
    """Report an UnknownReference to ``name`` with the closest of ``choices`` as a hint."""
    known = list(choices)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else (f"known: {', '.join(known[:20])}" if known else None)
    ctx.report(UnknownReference(message, location=loc, hint=hint))


def require_keys(ctx: CompileContext, doc: MergedDoc, keys: Sequence[str]) -> bool:
    """Report each of ``keys`` the merged document lacks (an extend layer may leave them out, the merged
    document may not); True when all are there."""
    missing = [k for k in keys if doc.data.get(k) in (None, [], {})]
    for k in missing:
        ctx.report(SchemaViolation(f"{doc.kind} {doc.name!r} needs '{k}:'", location=doc.loc,
                                   hint=f"add '{k}:' to the document (or to the layer it extends)"))
    return not missing


def entity_of(ctx: CompileContext, doc: MergedDoc, key: str = "entity") -> Entity | None:
    """The entity the document names under ``key`` (an unknown one is reported)."""
    name = doc.data.get(key)
    entity = ctx.entities.get(str(name))
    if entity is None:
        unknown(ctx, f"{doc.kind} {doc.name!r}: there is no entity {name!r}", locate(doc.data, (key,)), str(name),
                ctx.entities)
    return entity


def days(text: Any) -> int:
    """``30d`` -> 30 (the schemas allow only this form)."""
    m = _DAYS.match(str(text))
    if m is None:
        raise ValueError(f"not a number of days: {text!r}")
    return int(m.group(1))


def partial_workspace(ctx: CompileContext) -> Workspace:
    """The entities compiled so far, with the compile's functions: what expressions are checked against."""
    return Workspace(name=str(ctx.settings.get("name", "compile")), entities=frozen_map(ctx.entities),
                     functions=ctx.extensions.functions, field_types=ctx.extensions.field_types)


def expression(ctx: CompileContext, ws: Workspace, entity: Entity, text: Any, loc: SourceLocation | None, *,
               expected: str = "boolean", sql: str | None = None) -> CompiledExpression | None:
    """``text`` compiled for records of ``entity`` (a problem is reported, located, and None returned).
    ``sql`` names what runs the expression as SQL too (e.g. "a scoring rule"): an encrypted field it uses
    other than for equality with literal text is then a located error."""
    try:
        compiled = compile_expression(str(text), entity, ws, expected=expected, location=loc)
    except ExpressionError as e:
        ctx.report(e)
        return None
    misuse = check_sql_use(compiled, ws.entities, sql) if sql is not None else None
    if misuse is not None:
        ctx.report(misuse)
        return None
    return compiled


def label(value: Any, fallback: str) -> Mapping[str, str]:
    """A text as language -> text (a plain string counts as English; missing: ``fallback`` in English)."""
    if isinstance(value, str):
        return frozen_map({"en": value})
    if isinstance(value, Mapping):
        return frozen_map({str(k): str(v) for k, v in value.items()})
    return frozen_map({"en": fallback})
