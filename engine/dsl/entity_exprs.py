"""Compile-time pass: type-check and compile every expression an entity declares.

Checks must be boolean and may read ``old.<field>`` (the value before an
update; null when a record is created); a formula or a default expression must produce its
field's type.  The compiled expressions are kept on the workspace
(``Workspace.compiled``) so the runtime never parses an expression while
serving a request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.dsl.expressions import CompiledExpression, compile_expression
from engine.dsl.model import Entity, Field, Workspace
from engine.errors import ConfigError, ExpressionError, SourceLocation

Report = Callable[[ConfigError], None]
Key = tuple[Any, ...]


def compile_entity_expressions(ws: Workspace, report: Report) -> dict[Key, CompiledExpression]:
    """Every check, formula and default expression of every entity, compiled; errors reported."""
    out: dict[Key, CompiledExpression] = {}
    for entity in ws.entities.values():
        for i, check in enumerate(entity.checks):
            _add(out, ("check", entity.name, i), report, check.expression, entity, ws, "boolean",
                 check.expression_location, allow_old=True)
        for field in entity.fields.values():
            for kind, text in (("formula", field.formula), ("default", field.default_expr)):
                if text:
                    _add(out, (kind, entity.name, field.name), report, text, entity, ws,
                         _expected(field), field.expr_location)
                    _no_encrypted_reads(out.get((kind, entity.name, field.name)), entity, field, kind, report)
    return out


def _no_encrypted_reads(compiled: CompiledExpression | None, entity: Entity, field: Field, kind: str,
                        report: Report) -> None:
    """A formula or default reading an encrypted field would store what it derives in clear: refused."""
    if compiled is None:
        return
    read = sorted(n for n in compiled.fields_used if (f := entity.fields.get(n)) is not None and f.encrypted)
    if read:
        report(ExpressionError(
            f"the {kind} of field {entity.name}.{field.name} reads {', '.join(read)}, which is encrypted: its result "
            "would be stored in clear", code="expression_encrypted_field", location=field.expr_location,
            hint="compute it from other fields, or drop 'encrypted: true'"))


def _expected(field: Field) -> str:
    return field.type


def _add(out: dict[Key, CompiledExpression], key: Key, report: Report, text: str, entity: Entity,
         ws: Workspace, expected: str, location: SourceLocation | None, *, allow_old: bool = False) -> None:
    try:
        out[key] = compile_expression(text, entity, ws, expected=expected, location=location, allow_old=allow_old)
    except ExpressionError as e:
        report(e)
