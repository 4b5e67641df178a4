"""Encrypted fields in SQL expressions: equality with literal text through the blind index, nothing else.

An encrypted field's column holds the sealed value (:mod:`engine.runtime.crypto`), which SQL cannot
order, compute with or read through a reference.  Its blind index can still answer ``field == 'x'``,
``field != 'x'`` and ``field in ['x', ...]`` (the digests of the literal texts under every key of the
ring), and ``field is null`` reads the column itself.  Any other use is refused with a located
ExpressionError (``expression_encrypted_field``); :mod:`engine.dsl.expressions.encrypted` refuses the
same uses in configuration at load time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, false, not_, or_
from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.expressions import ast
from engine.dsl.expressions.diagnostics import ExprSource
from engine.errors import ExpressionError
from engine.runtime import crypto
from engine.runtime.storage import Schema


def is_encrypted(schema: Schema, node: ast.Node) -> bool:
    """Whether ``node`` is a field of the record (or one hop away) stored encrypted."""
    if not isinstance(node, ast.Name) or node.binding is None or node.binding.scope not in ("record", "hop"):
        return False
    entity = schema.workspace.entities.get(node.binding.entity)
    field = entity.fields.get(node.binding.field) if entity is not None else None
    return field is not None and field.encrypted


def sealed_column(schema: Schema, entity: str, node: ast.Name, source: ExprSource) -> ColumnElement[Any]:
    """The column holding the encrypted field ``node`` of ``entity``; refused through a reference."""
    b = node.binding
    assert b is not None
    if b.scope != "record":
        raise refusal(source, node, "through a reference")
    return schema.table(entity).c[b.field]


def blind_match(schema: Schema, entity: str, node: ast.Node, values: Sequence[ast.Node], *, negated: bool,
                source: ExprSource) -> ColumnElement[Any]:
    """``field == 'x'`` (``in [...]``, ``!=``) on an encrypted field: its blind index among the digests
    of the literal values under every key of the ring."""
    assert isinstance(node, ast.Name)
    col = sealed_column(schema, entity, node, source)
    texts = []
    for v in values:
        if not isinstance(v, ast.Literal) or (v.value is not None and not isinstance(v.value, str)):
            raise refusal(source, node, "against a computed value")
        if v.value is not None:
            texts.append(v.value)
    has_null = len(texts) < len(values)
    ring = crypto.keyring()
    digests = [d for t in texts for d in ring.digests(t)]
    found = crypto.digest_expr(col).in_(digests) if digests else false()
    if negated:
        return or_(not_(found), col.is_(None)) if not has_null else and_(not_(found), col.is_not(None))
    return or_(found, col.is_(None)) if has_null else found


def refusal(source: ExprSource, node: ast.Name, how: str = "") -> ExpressionError:
    """The located error for an encrypted field used in SQL other than by equality with literal text."""
    what = f"compared {how}" if how else "used this way"
    return source.error(
        ExpressionError, f"`{node.dotted}` is an encrypted field: in a query it can only be compared for "
        f"equality with literal text (`{node.dotted} == 'x'`, `in [...]`, `is null`), not {what}",
        node.pos.offset, end=node.pos.end_offset, code="expression_encrypted_field",
        hint="filter by equality with a literal, or evaluate this rule on the record in Python (a check)")
