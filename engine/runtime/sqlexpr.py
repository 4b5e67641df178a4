"""SQL back end of the expression language: a checked tree -> a SQLAlchemy column expression.

The result agrees with the Python back end (:mod:`engine.dsl.expressions.pycompile`)
on every input, nulls included (a property test checks it on SQLite and
PostgreSQL).  How the null rules map to SQL:

* SQL comparisons give NULL ("unknown") when a side is NULL; the language says
  *false*.  In positions where NULL and false behave alike (``and``, ``or``,
  ``if`` conditions, a WHERE filter) the plain comparison is kept, so indexes
  still serve filters; elsewhere (under ``not``, as a value, as the final
  result unless ``for_filter=True``) it is wrapped as ``COALESCE(cond, false)``.
* ``a != b`` is ``not (a == b)``: ``a <> b OR a IS NULL OR b IS NULL``.
* decimal arithmetic is rounded to 10 places (``ROUND(x, 10)``) as in Python;
  division by zero is NULL (``NULLIF``); ``%`` keeps the dividend's sign.
* strings order by code point: ``COLLATE "C"`` on PostgreSQL, SQLite's
  default BINARY collation (UTF-8 bytes order like code points).
* one-hop names (``account.industry``) are correlated scalar subqueries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    Integer,
    Numeric,
    String,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from engine.dsl.expressions import CompiledExpression, ast, default_registry
from engine.dsl.expressions.diagnostics import ExprSource
from engine.dsl.expressions.functions import NUMBER_SCALE, FunctionRegistry
from engine.dsl.expressions.pycompile import maybe_null, mixed_day
from engine.errors import ExpressionError
from engine.runtime import encrypted_sql, money_sql, sqlfuncs
from engine.runtime.storage import Schema, json_field_expr
from engine.runtime.types import JsonType, UtcDateTime

SqlImpl = sqlfuncs.SqlImpl


@dataclass(frozen=True)
class SqlContext:
    """What a function's SQL implementation may use: the dialect and the clock/user parameters."""

    dialect: str
    today: ColumnElement[Any]
    now: ColumnElement[Any]
    user: ColumnElement[Any]
    arg_types: tuple[ast.ExprType, ...] = ()
    result: ast.ExprType | None = None

    @property
    def pg(self) -> bool:
        return self.dialect == "postgresql"


def to_sql(
    compiled_or_ast: CompiledExpression | ast.Node,
    schema: Schema,
    entity_name: str,
    *,
    user_id: int | None = None,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
    for_filter: bool = False,
    registry: FunctionRegistry | None = None,
) -> ColumnElement[Any]:
    """The SQL form of a checked expression over ``entity_name``'s table.

    ``today``/``now`` default to the current UTC clock.  With ``for_filter``
    a boolean result may be NULL where it means false (fine in WHERE, and
    index-friendly); otherwise a boolean result is always true or false.
    Raises ExpressionError for ``old.`` (no previous row in SQL) or a
    function without an SQL implementation for the dialect.
    """
    node = compiled_or_ast.ast if isinstance(compiled_or_ast, CompiledExpression) else compiled_or_ast
    if node.type is None:
        raise ExpressionError("to_sql needs a checked expression (use compile_expression)", code="expression_unchecked")
    now = now or dt.datetime.now(dt.UTC)
    if today is None:
        today = (now.astimezone(dt.UTC) if now.tzinfo else now).date()
    builder = _SqlBuilder(schema, entity_name, registry or schema.workspace.functions or default_registry(),
                          user_id, today, now)
    if isinstance(compiled_or_ast, CompiledExpression):
        c = compiled_or_ast
        builder.source = ExprSource(c.source, c.location, c.quote_offset)
    if node.type.kind == "boolean":
        clause = builder.loose(node) if for_filter else builder.strict(node)
    else:
        clause = builder.value(node)
    return type_coerce(clause, sql_type(node.type, schema.dialect))


def sql_type(t: ast.ExprType, dialect: str) -> TypeEngine[Any]:
    """The SQLAlchemy type results of type ``t`` are read with."""
    kind = t.kind
    if kind == "number":
        return BigInteger() if t.integral else Numeric(asdecimal=True)
    if kind == "boolean":
        return Boolean()
    if kind == "date":
        return Date()
    if kind == "datetime":
        return UtcDateTime()
    if kind == "list":
        return JsonType()
    if kind == "reference":
        return BigInteger()
    return String()


class _SqlBuilder:
    """Walks a checked tree; ``value`` for values, ``loose``/``strict`` for conditions."""

    def __init__(self, schema: Schema, entity: str, registry: FunctionRegistry, user_id: int | None,
                 today: dt.date, now: dt.datetime) -> None:
        self.schema = schema
        self.entity = entity
        self.registry = registry
        self.pg = schema.dialect == "postgresql"
        #: the expression's text and place in its file, for located errors
        self.source = ExprSource("")
        self.ctx = SqlContext(schema.dialect, self.typed(today, Date()), self.typed(now, UtcDateTime()),
                              null() if user_id is None else literal(user_id, BigInteger()))

    # ------------------------------------------------------------------ conditions

    def loose(self, node: ast.Node) -> ColumnElement[Any]:
        """A condition that is true exactly when ``node`` is (false *or NULL* otherwise)."""
        if isinstance(node, ast.BoolOp):
            parts = [self.loose(o) for o in node.operands]
            return and_(*parts) if node.op == "and" else or_(*parts)
        if isinstance(node, ast.Unary) and node.op == "not":
            return not_(self.strict(node.operand))
        if isinstance(node, ast.Binary) and node.op in ast.COMPARISONS:
            return self.compare(node.op, node.left, node.right)
        if isinstance(node, ast.In):
            inner = self.contains(node)
            return not_(_coalesce_false(inner)) if node.negated else inner
        if isinstance(node, ast.IsNull):
            operand = self._sealed(node.operand) if isinstance(node.operand, ast.Name) and self._encrypted(
                node.operand) else self.value(node.operand)
            return operand.is_not(None) if node.negated else operand.is_(None)
        return self.raw(node)

    def strict(self, node: ast.Node) -> ColumnElement[Any]:
        """A condition that is never NULL (NULL becomes false)."""
        clause = self.loose(node)
        if isinstance(node, ast.IsNull) or (isinstance(node, ast.Literal) and node.value is not None):
            return clause
        if isinstance(node, ast.Call) and node.name == "isblank":
            return clause
        return _coalesce_false(clause)

    def compare(self, op: str, left: ast.Node, right: ast.Node) -> ColumnElement[Any]:
        if op in ("==", "!=") and (self._encrypted(left) or self._encrypted(right)):
            name, other = (left, right) if self._encrypted(left) else (right, left)
            return self._blind_match(name, [other], negated=op == "!=")
        lv, rv = self.value(left), self.value(right)
        if mixed_day(left, right):
            lv, rv = self._as_day(left, lv), self._as_day(right, rv)
        if op == "!=":
            nulls = [v.is_(None) for n, v in ((left, lv), (right, rv)) if _nullable(n)]
            return or_(lv != rv, *nulls) if nulls else lv != rv
        if op == "==":
            return lv == rv
        if self.pg and left.type is not None and left.type.is_stringy:
            lv = lv.collate("C")
        return {"<": lv < rv, "<=": lv <= rv, ">": lv > rv, ">=": lv >= rv}[op]

    # ------------------------------------------------------------------ encrypted fields (encrypted_sql)

    def _encrypted(self, node: ast.Node) -> bool:
        return encrypted_sql.is_encrypted(self.schema, node)

    def _sealed(self, node: ast.Name) -> ColumnElement[Any]:
        return encrypted_sql.sealed_column(self.schema, self.entity, node, self.source)

    def _blind_match(self, node: ast.Node, values: Sequence[ast.Node], *, negated: bool) -> ColumnElement[Any]:
        return encrypted_sql.blind_match(self.schema, self.entity, node, values, negated=negated, source=self.source)

    def _as_day(self, node: ast.Node, clause: ColumnElement[Any]) -> ColumnElement[Any]:
        if node.type is None or node.type.kind != "datetime":
            return clause
        return type_coerce(sqlfuncs.utc_day(self.ctx, clause, "datetime"), Date())

    def contains(self, node: ast.In) -> ColumnElement[Any]:
        if self._encrypted(node.needle) and isinstance(node.haystack, ast.ListLit):
            return self._blind_match(node.needle, list(node.haystack.items), negated=False)
        needle = self.value(node.needle)
        if not isinstance(node.haystack, ast.ListLit):
            return self.list_contains(self.value(node.haystack), needle)
        items = node.haystack.items
        has_null = any(isinstance(i, ast.Literal) and i.value is None for i in items)
        values = [self.value(i) for i in items if not (isinstance(i, ast.Literal) and i.value is None)]
        found = needle.in_(values) if values else false()
        return or_(needle.is_(None), found) if has_null else found

    def list_contains(self, lst: ColumnElement[Any], needle: ColumnElement[Any]) -> ColumnElement[Any]:
        if self.pg:
            return lst.bool_op("@>")(func.jsonb_build_array(needle))
        each = func.json_each(lst).table_valued("value")
        return exists(select(literal(1)).select_from(each).where(each.c.value == needle))

    # ------------------------------------------------------------------ values

    def value(self, node: ast.Node, null_type: ast.ExprType | None = None) -> ColumnElement[Any]:
        """The SQL value of ``node``.

        Conditions built by operators are strict (true/false, never NULL); a
        boolean *value* that may be null in Python (a field, ``if``,
        ``coalesce``) stays NULL, so ``flag == false`` is false for a null flag.
        """
        if node.type is not None and node.type.kind == "boolean" and not maybe_null(node):
            return self.strict(node)  # an operator's condition: never NULL, as in Python
        if isinstance(node, ast.Literal) and node.value is None and null_type is not None and self.pg:
            return cast(null(), sql_type(null_type, "postgresql"))
        return self.raw(node)

    def raw(self, node: ast.Node) -> ColumnElement[Any]:
        method: Callable[[Any], ColumnElement[Any]] = getattr(self, "_" + type(node).__name__.lower())
        return method(node)

    def typed(self, value: Any, sqltype: TypeEngine[Any]) -> ColumnElement[Any]:
        """A bound parameter, cast on PostgreSQL so its type never has to be guessed."""
        return cast(literal(value, sqltype), sqltype) if self.pg else literal(value, sqltype)

    def _literal(self, node: ast.Literal) -> ColumnElement[Any]:
        v = node.value
        if v is None:
            return null()
        if isinstance(v, bool):
            return true() if v else false()
        if isinstance(v, int):
            return literal(v, BigInteger())
        if isinstance(v, Decimal):
            return self.typed(v, Numeric()) if self.pg else literal(float(v), Float())
        return self.typed(v, Text())

    def _var(self, node: ast.Var) -> ColumnElement[Any]:
        return {"user": self.ctx.user, "today": self.ctx.today, "now": self.ctx.now}[node.name]

    def _name(self, node: ast.Name) -> ColumnElement[Any]:
        b = node.binding
        assert b is not None and node.type is not None
        if b.scope == "old":
            raise self.source.error(
                ExpressionError, f"`{node.dotted}` (the value before the update) has no SQL form: `old.` is only "
                "available in write-time rules (checks), not in filters, list queries or reports",
                node.pos.offset, end=node.pos.end_offset, code="expression_old_in_sql",
                hint="evaluate the rule on the record being written, or compare with the current field here")
        if b.scope == "user":
            return sqlfuncs.user_attribute(self._user_ref(b), b.field)
        if self._encrypted(node):
            raise encrypted_sql.refusal(self.source, node)
        if b.scope == "record" and b.field_type == "currency":
            return money_sql.currency_expr(self.schema, self.schema.table(self.entity), self.entity, b.field)
        if b.scope == "record":
            table = self.schema.table(self.entity)
            clause = table.c[b.field] if b.field_type == "standard" else self.schema.field_expr(self.entity, b.field)
        else:
            clause = self._hop(b)
        return self._normalize(clause, b, node.type)

    def _user_ref(self, b: ast.Binding) -> ColumnElement[Any]:
        assert b.via is not None
        table = self.schema.table(self.entity)
        if b.via in self.schema.workspace.entities[self.entity].fields:
            return self.schema.field_expr(self.entity, b.via)
        return table.c[b.via]

    def _hop(self, b: ast.Binding) -> ColumnElement[Any]:
        assert b.via is not None
        target = self.schema.table(b.entity).alias()
        ref_id = self.schema.field_expr(self.entity, b.via)
        if b.field_type == "standard":
            inner: ColumnElement[Any] = target.c[b.field]
        elif b.field_type == "currency":
            inner = money_sql.currency_expr(self.schema, target, b.entity, b.field)
        else:
            field = self.schema.workspace.entities[b.entity].fields[b.field]
            inner = json_field_expr(target, field, self.schema.dialect) if field.storage == "json" else (
                target.c[field.column_name])
        return select(inner).where(target.c.id == ref_id).correlate_except(target).scalar_subquery()

    def _normalize(self, clause: ColumnElement[Any], b: ast.Binding, t: ast.ExprType) -> ColumnElement[Any]:
        if t.kind == "list":  # a JSON null (or non-array) counts as null
            kind = func.jsonb_typeof(clause) if self.pg else func.json_type(clause)
            return type_coerce(case((kind == "array", clause), else_=null()), JsonType())
        if t.kind == "datetime" and not self.pg and self._json_stored(b):
            # JSON text may lack microseconds; columns always have them: compare alike
            text = type_coerce(clause, String())
            padded = case((func.length(text) == 19, text.concat(literal(".000000", String()))), else_=text)
            return type_coerce(padded, UtcDateTime())
        return clause

    def _json_stored(self, b: ast.Binding) -> bool:
        field = self.schema.workspace.entities[b.entity].fields.get(b.field)
        return field is not None and field.storage == "json"

    def _unary(self, node: ast.Unary) -> ColumnElement[Any]:
        return -self.value(node.operand)

    def _binary(self, node: ast.Binary) -> ColumnElement[Any]:
        assert node.type is not None
        left, right = self.value(node.left), self.value(node.right)
        if node.op == "/":
            dividend = cast(left, Numeric()) if self.pg else cast(left, Float())
            return func.round(dividend / func.nullif(right, 0), NUMBER_SCALE)
        if node.op == "%":
            return self._mod(left, right, node.type.integral)
        result = {"+": left + right, "-": left - right, "*": left * right}[node.op]
        return result if node.type.integral else func.round(result, NUMBER_SCALE)

    def _mod(self, left: ColumnElement[Any], right: ColumnElement[Any], integral: bool) -> ColumnElement[Any]:
        divisor = func.nullif(right, 0)
        if integral:
            return left.op("%")(divisor)
        if self.pg:
            return func.round(func.mod(left, divisor), NUMBER_SCALE)
        quotient = cast(func.round(cast(left, Float()) / divisor, NUMBER_SCALE), Integer())
        return func.round(left - right * quotient, NUMBER_SCALE)

    def _if(self, node: ast.If) -> ColumnElement[Any]:
        assert node.type is not None
        want = node.type if node.type.kind != "null" else None
        return case((self.loose(node.cond), self.value(node.then, want)), else_=self.value(node.else_, want))

    def _call(self, node: ast.Call) -> ColumnElement[Any]:
        fn = self.registry.get(node.name)
        assert fn is not None and node.type is not None
        impl = fn.sql.get(self.schema.dialect) or fn.sql.get("*") or sqlfuncs.COMMON.get(node.name)
        if impl is None:
            raise ExpressionError(f"function {node.name}() has no SQL form on {self.schema.dialect}",
                                  code="expression_no_sql_function")
        args = [self.value(a, _null_type(node, i, fn.params)) for i, a in enumerate(node.args)]
        ctx = SqlContext(self.ctx.dialect, self.ctx.today, self.ctx.now, self.ctx.user,
                         tuple(a.type for a in node.args if a.type is not None), node.type)
        return impl(ctx, args)


def _coalesce_false(clause: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(clause, false())


def _nullable(node: ast.Node) -> bool:
    return not (isinstance(node, ast.Literal) and node.value is not None) and not (
        isinstance(node, ast.Var) and node.name in ("today", "now"))


def _null_type(node: ast.Call, index: int, params: tuple[str, ...]) -> ast.ExprType | None:
    """The type a null literal argument gets (PostgreSQL wants typed NULLs)."""
    assert node.type is not None
    if not params:
        return None
    spec = params[min(index, len(params) - 1)]
    if spec == "T":
        return node.type if node.type.kind != "null" else None
    kind = spec.split("|")[0]
    if kind == "integer":
        return ast.INTEGER
    return ast.ExprType(kind) if kind in ast.KINDS and kind != "null" else None


__all__ = ["SqlContext", "SqlImpl", "sql_type", "to_sql"]
