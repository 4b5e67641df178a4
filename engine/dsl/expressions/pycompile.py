"""Python back end: Python source generated from a *checked* tree, compiled once.

Why this is safe although it ends in ``compile``/``eval``: the source is
built only from the checked tree, never from the user's text.  Every literal
is emitted with ``repr`` (decimals and literal sets become constants of the
namespace), every field name was validated against the entity and is emitted
as ``r.get(<repr of the name>)``, every function is a namespace entry
``_f_<registry name>`` and operators come from fixed tables.  As a second
line of defence the generated source is re-parsed with :mod:`ast` and refused
if it contains anything outside a small whitelist (no imports, no attribute
access other than ``r.get`` and ``ctx.<context field>``, no names outside the
namespace).  The code runs with empty ``__builtins__``.

Null rules (identical in :mod:`engine.runtime.sqlexpr`): see docs/expressions.md.
"""

from __future__ import annotations

import ast as pyast
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.dsl.expressions import ast
from engine.dsl.expressions.functions import (
    DECIMAL_CONTEXT,
    FunctionRegistry,
    quantize,
    to_decimal,
    user_entry,
    utc_date,
)
from engine.errors import ExpressionEvalError

_EMPTY: Mapping[str, Any] = {}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class EvalContext:
    """What an expression may read besides the record.

    ``now`` defaults to the current UTC time and ``today`` to its date; pass
    them explicitly to make evaluation reproducible.  ``old`` is the previous
    version of the record (update rules); ``ref(entity, id)`` returns the
    referenced record (a mapping) or None, for one-hop names like
    ``account.industry``.  ``users(id)`` returns the directory entry of a
    user (a mapping with the keys of ``checker.USER_ATTRIBUTES`` and
    ``manager``, the user's manager by the rule of ``manager_of``) or None,
    for ``owner.team`` and ``manager_of(owner)``.  ``rates(from, to, day)``
    returns the exchange rate of a currency pair on a day or None, for
    ``convert()``.
    """

    user_id: int | None = None
    now: dt.datetime = field(default_factory=_utcnow)
    today: dt.date | None = None
    old: Mapping[str, Any] | None = None
    ref: Callable[[str, Any], Mapping[str, Any] | None] | None = None
    users: Callable[[Any], Mapping[str, Any] | None] | None = None
    rates: Callable[[str, str, dt.date], Decimal | None] | None = None

    def __post_init__(self) -> None:
        now = self.now if self.now.tzinfo else self.now.replace(tzinfo=dt.UTC)
        object.__setattr__(self, "now", now)
        if self.today is None:
            object.__setattr__(self, "today", now.astimezone(dt.UTC).date())


# --------------------------------------------------------------------------- run-time helpers


def _hop(ctx: EvalContext, entity: str, ref_id: Any, name: str) -> Any:
    if ref_id is None:
        return None
    if ctx.ref is None:
        raise ExpressionEvalError(f"the expression reads {entity} records but no reference resolver was given",
                                  code="expression_no_resolver", hint="pass EvalContext(ref=...)")
    target = ctx.ref(entity, ref_id)
    return None if target is None else target.get(name)


def _user(ctx: EvalContext, user_id: Any, name: str) -> Any:
    entry = user_entry(ctx, user_id)
    return None if entry is None else entry.get(name)


def _old(ctx: EvalContext, name: str) -> Any:
    return (ctx.old or _EMPTY).get(name)


def _add(a: Any, b: Any) -> Any:
    return None if a is None or b is None else quantize(DECIMAL_CONTEXT.add(to_decimal(a), to_decimal(b)))


def _sub(a: Any, b: Any) -> Any:
    return None if a is None or b is None else quantize(DECIMAL_CONTEXT.subtract(to_decimal(a), to_decimal(b)))


def _mul(a: Any, b: Any) -> Any:
    return None if a is None or b is None else quantize(DECIMAL_CONTEXT.multiply(to_decimal(a), to_decimal(b)))


def _div(a: Any, b: Any) -> Any:
    if a is None or b is None or b == 0:
        return None
    return quantize(DECIMAL_CONTEXT.divide(to_decimal(a), to_decimal(b)))


def _imod(a: Any, b: Any) -> Any:
    """Remainder with the sign of the dividend (as SQL), whole numbers."""
    if a is None or b is None or b == 0:
        return None
    rest = abs(a) % abs(b)
    return -rest if a < 0 else rest


def _mod(a: Any, b: Any) -> Any:
    if a is None or b is None or b == 0:
        return None
    a, b = to_decimal(a), to_decimal(b)
    rest = DECIMAL_CONTEXT.remainder(abs(a), abs(b))
    return quantize(-rest if a < 0 else rest)


def _day(value: Any) -> Any:
    """The UTC calendar day of a datetime (a date compared with a datetime compares with this)."""
    return None if value is None else utc_date(value)


def _in_values(value: Any, values: Any) -> bool:
    return value is not None and values is not None and value in values


_HELPERS: Mapping[str, Any] = {
    "_hop": _hop, "_user": _user, "_old": _old, "_add": _add, "_sub": _sub, "_mul": _mul, "_div": _div, "_imod": _imod,
    "_mod": _mod, "_in_values": _in_values, "_day": _day,
}
_VARS = {"user": "ctx.user_id", "today": "ctx.today", "now": "ctx.now"}
_NON_NULL_CALLS = frozenset({"contains", "startswith", "endswith", "isblank", "concat", "today", "now"})
_WHOLE_OPS = {"+": "+", "-": "-", "*": "*"}
_DECIMAL_OPS = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}


def maybe_null(node: ast.Node) -> bool:
    """Whether a checked node can evaluate to null (booleans from operators never do)."""
    if isinstance(node, ast.Literal):
        return node.value is None
    if isinstance(node, ast.Var):
        return node.name == "user"
    if isinstance(node, ast.In | ast.IsNull | ast.BoolOp):
        return False
    if isinstance(node, ast.Binary):
        return node.op not in ast.COMPARISONS
    if isinstance(node, ast.Unary):
        return node.op != "not"
    if isinstance(node, ast.Call):
        return node.name not in _NON_NULL_CALLS
    return True


def mixed_day(left: ast.Node, right: ast.Node) -> bool:
    """Whether a comparison puts a date against a datetime: both back ends then compare the
    datetime's UTC calendar day with the date."""
    kinds = {left.type.kind if left.type else None, right.type.kind if right.type else None}
    return kinds == {"date", "datetime"}


class _Gen:
    """Emits one Python expression per node (see the module docstring for the rules)."""

    def __init__(self, registry: FunctionRegistry) -> None:
        self.registry = registry
        self.namespace: dict[str, Any] = {"__builtins__": {}, **_HELPERS}
        self.count = 0

    def tmp(self) -> str:
        self.count += 1
        return f"_t{self.count}"

    def const(self, value: Any) -> str:
        self.count += 1
        name = f"_c{self.count}"
        self.namespace[name] = value
        return name

    def cond(self, node: ast.Node) -> str:
        """``node`` as a condition: a nullable boolean counts as false."""
        code = self.expr(node)
        return f"({code} is True)" if maybe_null(node) else code

    def expr(self, node: ast.Node) -> str:
        method: Callable[[Any], str] = getattr(self, "_" + type(node).__name__.lower())
        return method(node)

    def _literal(self, node: ast.Literal) -> str:
        value = node.value
        if isinstance(value, Decimal):
            return self.const(value)
        if value is None or type(value) in (bool, int, str):
            return repr(value)
        raise TypeError(f"unexpected literal {type(value).__name__}")  # pragma: no cover

    def _name(self, node: ast.Name) -> str:
        b = node.binding
        assert b is not None, "pycompile needs a checked tree"
        if b.scope == "record":
            return f"r.get({b.field!r})"
        if b.scope == "old":
            return f"_old(ctx, {b.field!r})"
        if b.scope == "user":
            return f"_user(ctx, r.get({b.via!r}), {b.field!r})"
        return f"_hop(ctx, {b.entity!r}, r.get({b.via!r}), {b.field!r})"

    def _var(self, node: ast.Var) -> str:
        return _VARS[node.name]

    def _unary(self, node: ast.Unary) -> str:
        if node.op == "not":
            return f"(not {self.cond(node.operand)})"
        t = self.tmp()
        return f"(None if ({t} := {self.expr(node.operand)}) is None else -{t})"

    def _boolop(self, node: ast.BoolOp) -> str:
        return "(" + f" {node.op} ".join(self.cond(o) for o in node.operands) + ")"

    def _binary(self, node: ast.Binary) -> str:
        if node.op in ast.COMPARISONS:
            return self._compare(node.op, node.left, node.right)
        assert node.type is not None
        left, right = self.expr(node.left), self.expr(node.right)
        if node.op == "%" and node.type.integral:
            return f"_imod({left}, {right})"
        if node.op in _WHOLE_OPS and node.type.integral:
            return self._guarded([node.left, node.right], [left, right], "{0} " + node.op + " {1}")
        return f"{_DECIMAL_OPS[node.op]}({left}, {right})"

    def _guarded(self, nodes: list[ast.Node], codes: list[str], template: str, *, null: str = "None") -> str:
        """``template`` over values known not to be null; ``null`` when one is."""
        names, tests = [], []
        for node, code in zip(nodes, codes, strict=True):
            if maybe_null(node):
                t = self.tmp()
                tests.append(f"({t} := {code}) is None")
                names.append(t)
            else:
                names.append(code)
        body = template.format(*names)
        if not tests:
            return f"({body})"
        if null == "False":
            return "(not (" + " or ".join(tests) + f") and {body})"
        return f"({null} if " + " or ".join(tests) + f" else {body})"

    def _compare(self, op: str, left: ast.Node, right: ast.Node) -> str:
        if op == "!=":
            return f"(not {self._compare('==', left, right)})"
        lcode, rcode = self.expr(left), self.expr(right)
        if mixed_day(left, right):
            lcode, rcode = self._as_day(left, lcode), self._as_day(right, rcode)
        if op == "==" and (not maybe_null(left) or not maybe_null(right)):
            return f"({lcode} == {rcode})"  # None == x is False, as the null rule says
        return self._guarded([left, right], [lcode, rcode], "{0} " + op + " {1}", null="False")

    @staticmethod
    def _as_day(node: ast.Node, code: str) -> str:
        return f"_day({code})" if node.type is not None and node.type.kind == "datetime" else code

    def _in(self, node: ast.In) -> str:
        code = self._in_list(node) if isinstance(node.haystack, ast.ListLit) else (
            f"_in_values({self.expr(node.needle)}, {self.expr(node.haystack)})")
        return f"(not {code})" if node.negated else code

    def _in_list(self, node: ast.In) -> str:
        assert isinstance(node.haystack, ast.ListLit)
        items = node.haystack.items
        has_null = any(isinstance(i, ast.Literal) and i.value is None for i in items)
        values = [i for i in items if not (isinstance(i, ast.Literal) and i.value is None)]
        if all(isinstance(i, ast.Literal) for i in values):
            pool = self.const(frozenset(i.value for i in values))  # type: ignore[attr-defined]
        else:
            pool = "(" + "".join(self.expr(i) + ", " for i in values) + ")"
        t = self.tmp()
        if has_null:
            return f"(({t} := {self.expr(node.needle)}) is None or {t} in {pool})"
        return f"(({t} := {self.expr(node.needle)}) is not None and {t} in {pool})"

    def _isnull(self, node: ast.IsNull) -> str:
        if isinstance(node.operand, ast.Literal):  # `5 is None` would be a SyntaxWarning: fold it
            return repr((node.operand.value is None) != node.negated)
        return f"({self.expr(node.operand)} is {'not ' if node.negated else ''}None)"

    def _if(self, node: ast.If) -> str:
        return f"({self.expr(node.then)} if {self.cond(node.cond)} else {self.expr(node.else_)})"

    def _call(self, node: ast.Call) -> str:
        fn = self.registry.get(node.name)
        assert fn is not None and node.name.isidentifier()
        fname = f"_f_{node.name}"
        self.namespace[fname] = fn.python
        args = [self.expr(a) for a in node.args]
        if fn.needs_ctx:
            args.insert(0, "ctx")
        return f"{fname}({', '.join(args)})"


def generate(checked: ast.Node, registry: FunctionRegistry) -> tuple[str, dict[str, Any]]:
    """The Python source (a lambda over ``r`` and ``ctx``) and its namespace."""
    gen = _Gen(registry)
    body = gen.cond(checked) if checked.type is not None and checked.type.kind == "boolean" else gen.expr(checked)
    return f"lambda r, ctx: {body}", gen.namespace


def compile_python(checked: ast.Node, registry: FunctionRegistry) -> tuple[Callable[[Any, Any], Any], str]:
    """A callable ``fn(record, ctx)`` for a checked tree, and its generated source."""
    source, namespace = generate(checked, registry)
    verify_generated(source, namespace)
    code = compile(source, "<expression>", "eval")
    # eval of *generated* code only: built from the checked tree and verified above
    return eval(code, namespace), source


_ALLOWED_NODES = (
    pyast.Expression, pyast.Lambda, pyast.arguments, pyast.arg, pyast.Load, pyast.Store, pyast.Name,
    pyast.Constant, pyast.Call, pyast.BoolOp, pyast.And, pyast.Or, pyast.UnaryOp, pyast.Not, pyast.USub,
    pyast.BinOp, pyast.Add, pyast.Sub, pyast.Mult, pyast.Compare, pyast.Eq, pyast.Lt, pyast.LtE, pyast.Gt,
    pyast.GtE, pyast.Is, pyast.IsNot, pyast.In, pyast.IfExp, pyast.NamedExpr, pyast.Tuple, pyast.Attribute,
)
_ALLOWED_ATTRIBUTES = {("r", "get"), ("ctx", "user_id"), ("ctx", "today"), ("ctx", "now")}


def verify_generated(source: str, namespace: Mapping[str, Any]) -> None:
    """Refuse generated source that strays outside the whitelist (defence in depth)."""
    tree = pyast.parse(source, mode="eval")
    for node in pyast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionEvalError(f"internal: generated code contains {type(node).__name__}")
        if isinstance(node, pyast.Attribute):
            base = node.value.id if isinstance(node.value, pyast.Name) else None
            if (base, node.attr) not in _ALLOWED_ATTRIBUTES:
                raise ExpressionEvalError(f"internal: generated code reads attribute {node.attr!r}")
        if isinstance(node, pyast.Name) and not (
            node.id in namespace or node.id in ("r", "ctx") or node.id.startswith("_t")
        ):
            raise ExpressionEvalError(f"internal: generated code names {node.id!r}")
