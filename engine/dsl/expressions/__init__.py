"""The expression language: one small, safe, typed language for conditions and formulas.

Public API::

    parse(text, location=None, *, quote_offset=0) -> Node
    check(node, entity, workspace, expected=None, allow_old=False, *, registry=None) -> Node
    compile_expression(text, entity, workspace, *, expected=None, allow_old=False,
                       location=None, quote_offset=0, registry=None) -> CompiledExpression
    EvalContext(user_id=None, now=<utc now>, today=<now's date>, old=None, ref=None, users=None)
    default_registry() -> FunctionRegistry     (frozen; .copy() to add functions)

The SQL back end is :func:`engine.runtime.sqlexpr.to_sql` (this package never
imports SQLAlchemy).  Reference: docs/expressions.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.dsl.expressions import ast
from engine.dsl.expressions.ast import ExprType, Node
from engine.dsl.expressions.checker import check as _check
from engine.dsl.expressions.diagnostics import ExprSource
from engine.dsl.expressions.functions import FunctionDef, FunctionRegistry, default_registry
from engine.dsl.expressions.parser import MAX_DEPTH, MAX_LENGTH, parse, parse_source
from engine.dsl.expressions.pycompile import EvalContext, compile_python
from engine.dsl.model import Entity, Workspace
from engine.errors import ExpressionEvalError, SourceLocation

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "CompiledExpression",
    "EvalContext",
    "ExprType",
    "FunctionDef",
    "FunctionRegistry",
    "Node",
    "check",
    "compile_expression",
    "default_registry",
    "parse",
]

_EVAL_ERRORS = (TypeError, ValueError, ArithmeticError, AttributeError, KeyError, OverflowError)


def check(
    node: Node,
    entity: Entity,
    workspace: Workspace,
    expected: str | None = None,
    allow_old: bool = False,
    *,
    registry: FunctionRegistry | None = None,
) -> Node:
    """Type-check a parsed tree against ``entity``; returns the checked (typed) tree.

    Errors are located inside the expression only; :func:`compile_expression`
    also locates them in the YAML file.
    """
    return _check(node, entity, workspace, expected, allow_old, registry=registry or workspace.functions)


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """A parsed, checked expression with its compiled Python form.

    ``fields_used``: names of the entity's fields the expression reads (a
    hop's reference field included), to recompute formulas when inputs
    change.  ``references_used``: ``(reference field, target entity, target
    field)`` per hop through a reference (a hop through a user, ``owner.team``,
    counts its user column in ``fields_used`` only).  ``old_fields_used``: fields read through ``old.``.
    ``variables_used``: ``user``/``today``/``now`` (also from ``today()`` /
    ``now()`` / ``days_since``).
    """

    source: str
    entity: str
    ast: Node
    expr_type: ExprType
    fields_used: frozenset[str]
    references_used: frozenset[tuple[str, str, str]]
    old_fields_used: frozenset[str]
    variables_used: frozenset[str]
    python_source: str
    location: SourceLocation | None = None
    quote_offset: int = 0
    _fn: Callable[[Any, Any], Any] = field(default=lambda r, c: None, repr=False, compare=False)

    @property
    def type(self) -> str:
        """The kind of value produced: number, string, boolean, date, ..."""
        return self.expr_type.kind

    def evaluate(self, record: Mapping[str, Any], ctx: EvalContext | None = None) -> Any:
        """The value of the expression on ``record`` (ExpressionEvalError if evaluation fails).

        Records map field names to values as the storage layer returns them
        (decimals as Decimal, datetimes aware, a reference as the target id).
        """
        try:
            return self._fn(record, ctx if ctx is not None else EvalContext())
        except ExpressionEvalError:
            raise
        except _EVAL_ERRORS as e:
            raise ExpressionEvalError(f"cannot evaluate `{self.source}`: {e}", location=self.location,
                                      details={"expression": self.source}) from e


def compile_expression(
    text: str,
    entity: Entity,
    workspace: Workspace,
    *,
    expected: str | None = None,
    allow_old: bool = False,
    location: SourceLocation | None = None,
    quote_offset: int = 0,
    registry: FunctionRegistry | None = None,
) -> CompiledExpression:
    """Parse, check and compile ``text`` for records of ``entity``.

    ``expected``: the result the caller needs — ``"boolean"`` for checks and
    conditions, a kind (``number``...) or a field type (``money``,
    ``integer``: a whole number is then required) for formulas.
    ``location``: where the expression starts in its YAML file; ``quote_offset``
    is 1 when the YAML value is quoted.  Raises ExpressionSyntaxError,
    ExpressionTypeError or ExpressionLimitError, located in the file.
    """
    registry = registry or workspace.functions or default_registry()
    src = ExprSource(text, location, quote_offset)
    checked = _check(parse_source(src), entity, workspace, expected, allow_old, registry=registry, source=src)
    fn, py_source = compile_python(checked, registry)
    assert checked.type is not None
    return CompiledExpression(
        source=text, entity=entity.name, ast=checked, expr_type=checked.type, python_source=py_source,
        location=location, quote_offset=quote_offset, _fn=fn, **_usage(checked),
    )


def _usage(checked: Node) -> dict[str, frozenset[Any]]:
    fields: set[str] = set()
    refs: set[tuple[str, str, str]] = set()
    old: set[str] = set()
    variables: set[str] = set()
    for node in ast.walk(checked):
        if isinstance(node, ast.Name) and node.binding is not None and node.binding.field_type != "currency":
            b = node.binding  # (a money value's currency is read with the value, counted there)
            if b.scope == "record":
                fields.add(b.field)
            elif b.scope == "old":
                old.add(b.field)
            elif b.scope == "user":
                assert b.via is not None
                fields.add(b.via)
            else:
                assert b.via is not None
                fields.add(b.via)
                refs.add((b.via, b.entity, b.field))
        elif isinstance(node, ast.Var):
            variables.add(node.name)
        elif isinstance(node, ast.Call) and node.name in _CLOCK_FUNCTIONS:
            variables.add(_CLOCK_FUNCTIONS[node.name])
    return {"fields_used": frozenset(fields), "references_used": frozenset(refs),
            "old_fields_used": frozenset(old), "variables_used": frozenset(variables)}


#: functions that read the clock (``convert`` takes the rate of $today unless given a day)
_CLOCK_FUNCTIONS = {"today": "today", "now": "now", "days_since": "today", "convert": "today"}


