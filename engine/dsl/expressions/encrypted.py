"""Where an expression uses an encrypted field in a way SQL cannot serve.

An encrypted field is stored sealed (see ``docs/encrypted-fields.md``): in SQL it can only be compared for
equality with literal text through its blind index -- ``phone == '+86...'``, ``!=``, ``in [...]``,
``is null``.  Expressions that run as SQL (pool membership and recycling, scoring rules, list filters) are
checked at compile time with :func:`misuses`, so a misuse is a located configuration error rather than a
failure on the first query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields as dc_fields

from engine.dsl.expressions import CompiledExpression, ast
from engine.dsl.expressions.diagnostics import ExprSource
from engine.dsl.model import Entity
from engine.errors import ExpressionError

CODE = "expression_encrypted_field"


def _encrypted(node: ast.Node, entities: Mapping[str, Entity]) -> bool:
    if not isinstance(node, ast.Name) or node.binding is None or node.binding.scope not in ("record", "hop"):
        return False
    entity = entities.get(node.binding.entity)
    field = entity.fields.get(node.binding.field) if entity is not None else None
    return field is not None and field.encrypted


def _text_literal(node: ast.Node) -> bool:
    return isinstance(node, ast.Literal) and (node.value is None or isinstance(node.value, str))


def _served(node: ast.Node, entities: Mapping[str, Entity]) -> bool:
    """Whether ``node`` is one of the forms the blind index serves (on a field of the record itself)."""
    def own(n: ast.Node) -> bool:
        return _encrypted(n, entities) and isinstance(n, ast.Name) and n.binding is not None \
            and n.binding.scope == "record"

    if isinstance(node, ast.Binary) and node.op in ("==", "!="):
        return (own(node.left) and _text_literal(node.right)) or (own(node.right) and _text_literal(node.left))
    if isinstance(node, ast.In) and isinstance(node.haystack, ast.ListLit):
        return own(node.needle) and all(_text_literal(i) for i in node.haystack.items)
    if isinstance(node, ast.IsNull):
        return own(node.operand)
    return False


def misuses(node: ast.Node, entities: Mapping[str, Entity]) -> list[ast.Name]:
    """The encrypted-field names of ``node`` used other than as the blind index serves them."""
    if _served(node, entities):
        return []
    if _encrypted(node, entities):
        assert isinstance(node, ast.Name)
        return [node]
    out: list[ast.Name] = []
    for f in dc_fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        children = value if isinstance(value, tuple) else (value,)
        for child in children:
            if isinstance(child, ast.Node):
                out += misuses(child, entities)
    return out


def check_sql_use(compiled: CompiledExpression, entities: Mapping[str, Entity], what: str) -> ExpressionError | None:
    """A located error for the first misuse of an encrypted field in ``compiled`` (run as SQL: ``what``)."""
    bad = misuses(compiled.ast, entities)
    if not bad:
        return None
    name = bad[0]
    source = ExprSource(compiled.source, compiled.location, compiled.quote_offset)
    return source.error(
        ExpressionError, f"`{name.dotted}` is an encrypted field: {what} runs as SQL, where an encrypted field "
        f"can only be compared for equality with literal text (`{name.dotted} == 'x'`, `in [...]`, `is null`)",
        name.pos.offset, end=name.pos.end_offset, code=CODE,
        hint="compare it with a literal, use another field, or remove 'encrypted: true' from the field")
