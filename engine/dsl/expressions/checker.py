"""Type checking: an unchecked AST + an entity -> a checked AST (every node typed, names bound).

Types: number (integer/decimal/money/percent; whole numbers are tracked),
string (string/text/email/phone/url/auto_number), boolean, date, datetime,
picklist (compared only with its options), list (multi_picklist, list
literals), reference (reference/user fields, ``$user``, ``id``) and null.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from engine.dsl.expressions import ast
from engine.dsl.expressions.diagnostics import ExprSource, suggestion
from engine.dsl.expressions.functions import (
    FunctionRegistry,
    currency_text,
    default_registry,
    unify,
)
from engine.dsl.model import FIELD_TYPES, Entity, Field, Workspace
from engine.errors import ExpressionError, ExpressionSyntaxError, ExpressionTypeError

#: Columns every entity table has, readable in expressions (name -> kind).
STANDARD_FIELDS: Mapping[str, str] = {
    "id": "reference",
    "owner_id": "reference",
    "created_by": "reference",
    "updated_by": "reference",
    "created_at": "datetime",
    "updated_at": "datetime",
}
#: ``owner`` reads the standard ``owner_id`` column (``owner.team``, ``manager_of(owner)``).
OWNER_ALIAS = "owner"
#: Standard columns (or the ``owner`` alias) that hold a user id, so ``.attribute`` may follow them.
USER_COLUMNS: Mapping[str, str] = {"owner": "owner_id", "owner_id": "owner_id", "created_by": "created_by",
                                   "updated_by": "updated_by"}
#: What an expression may read of a user (the directory every signed-in user sees; no email, roles or secrets).
USER_ATTRIBUTES: Mapping[str, ast.ExprType] = {
    "name": ast.ExprType("string", label="name"), "username": ast.ExprType("string", label="username"),
    "team": ast.ExprType("string", label="team"), "team_id": ast.ExprType("reference", integral=True),
    "active": ast.ExprType("boolean", label="active"),
}
VARIABLES: Mapping[str, ast.ExprType] = {"user": ast.REFERENCE, "today": ast.DATE, "now": ast.DATETIME}
_UNUSABLE = frozenset({"json", "lines"})
KEYWORDS = frozenset({"and", "or", "not", "in", "is", "if", "then", "else", "true", "false", "null"})
ORDERED_KINDS = frozenset({"number", "string", "picklist", "date", "datetime"})


def expected_type(expected: str) -> ast.ExprType:
    """An expected result given as a kind (``number``) or a field type (``money``, ``integer``)."""
    if expected in FIELD_TYPES:
        return ast.ExprType(FIELD_TYPES[expected], integral=expected == "integer")
    if expected in ast.KINDS:
        return ast.ExprType(expected)
    raise ValueError(f"unknown expected type {expected!r}")


def field_type(field: Field) -> ast.ExprType:
    """The expression type of a field's value."""
    kind = FIELD_TYPES[field.type]
    integral = field.type in ("integer", "reference", "user")
    options = field.option_keys if field.type in ("picklist", "multi_picklist") else None
    return ast.ExprType(kind, integral=integral, options=options, label=field.name)


def check(
    node: ast.Node,
    entity: Entity,
    workspace: Workspace,
    expected: str | None = None,
    allow_old: bool = False,
    *,
    registry: FunctionRegistry | None = None,
    source: ExprSource | None = None,
) -> ast.Node:
    """Type-check ``node`` against ``entity``; return the checked tree.

    ``expected`` is the type the caller needs (``boolean`` for a check or a
    condition, the field type for a formula); ``allow_old`` permits
    ``old.<field>`` (update rules).  Raises ExpressionTypeError, located via
    ``source`` when given.
    """
    checker = _Checker(entity, workspace, allow_old, registry or default_registry(), source)
    checked = checker.visit(node)
    if expected is not None:
        checker.expect(checked, expected_type(expected))
    return checked


class _Checker:
    def __init__(self, entity: Entity, workspace: Workspace, allow_old: bool,
                 registry: FunctionRegistry, source: ExprSource | None) -> None:
        self.entity = entity
        self.workspace = workspace
        self.allow_old = allow_old
        self.registry = registry
        self.source = source or ExprSource("")
        self._visitors: dict[type, Callable[[Any], ast.Node]] = {
            ast.Literal: self._literal, ast.ListLit: self._list, ast.Name: self._name, ast.Var: self._var,
            ast.Unary: self._unary, ast.Binary: self._binary, ast.BoolOp: self._boolop, ast.In: self._in,
            ast.IsNull: self._isnull, ast.If: self._if, ast.Call: self._call,
        }

    # ------------------------------------------------------------------ helpers

    def fail(self, node: ast.Node, message: str, code: str, hint: str | None = None) -> ExpressionError:
        if hint and hint.startswith("did you mean"):
            message = f"{message}; {hint}"
        return self.source.error(ExpressionTypeError, message, node.pos.offset, end=node.pos.end_offset,
                                 code=code, hint=hint)

    def text(self, node: ast.Node) -> str:
        return self.source.text[node.pos.offset : node.pos.end_offset] or type(node).__name__

    def visit(self, node: ast.Node) -> ast.Node:
        return self._visitors[type(node)](node)

    def expect(self, node: ast.Node, want: ast.ExprType) -> None:
        got = node.type
        assert got is not None
        if got.kind == "null" or _fits(got, want):
            if want.integral and want.kind == "number" and not got.integral:
                raise self.fail(node, "this expression must give a whole number, but it may give decimals",
                                "expression_wrong_result_type", "wrap it in round(...)")
            return
        raise self.fail(node, f"this expression must give {_article(str(want))}, but it gives "
                        f"{_article(str(got))}", "expression_wrong_result_type", _result_hint(want))

    def boolean(self, node: ast.Node, role: str) -> ast.Node:
        checked = self.visit(node)
        if checked.type is not None and checked.type.kind != "boolean":
            raise self.fail(checked, f"{role} must be a condition (true/false), not {checked.type}",
                            "expression_type_mismatch", "compare it, e.g. amount > 0 or name is not null")
        return checked

    # ------------------------------------------------------------------ leaves

    def _literal(self, node: ast.Literal) -> ast.Node:
        value = node.value
        if value is None:
            t = ast.NULL
        elif isinstance(value, bool):
            t = ast.BOOLEAN
        elif isinstance(value, int):
            t = ast.INTEGER
        elif isinstance(value, str):
            t = ast.STRING
        else:
            t = ast.NUMBER
        return dataclasses.replace(node, type=t)

    def _list(self, node: ast.ListLit) -> ast.Node:
        raise self.fail(node, "a list can only follow `in` or `not in`", "expression_misplaced_list",
                        'write e.g. stage in ["new", "qualified"]')

    def _var(self, node: ast.Var) -> ast.Node:
        t = VARIABLES.get(node.name)
        if t is None:
            raise self.fail(node, f"unknown variable ${node.name}", "expression_unknown_variable",
                            suggestion(node.name, VARIABLES, prefix="$") or "variables are $user, $today, $now")
        return dataclasses.replace(node, type=t)

    def not_keyword(self, node: ast.Node, word: str) -> None:
        """A keyword where a value belongs (``a == not b``) lexes as a name: say so."""
        if word in KEYWORDS:
            raise self.source.error(ExpressionSyntaxError, f"`{word}` cannot stand here", node.pos.offset,
                                    code="expression_misplaced_keyword",
                                    hint=f"put the `{word} ...` part in parentheses, e.g. a == (not b)")

    def _name(self, node: ast.Name) -> ast.Node:
        parts = node.parts
        for part in parts:
            self.not_keyword(node, part)
        if len(parts) > 2:
            raise self.fail(node, f"`{node.dotted}` goes through more than one reference",
                            "expression_too_many_hops", "expressions follow one reference only: "
                            "add a formula field on the referenced entity and read that")
        if len(parts) == 2 and parts[0] == "old":
            return self._old(node)
        if len(parts) == 2:
            return self._hop(node)
        if parts[0] == OWNER_ALIAS and OWNER_ALIAS not in self.entity.fields:
            t = ast.ExprType("reference", integral=True, label=OWNER_ALIAS)
            return dataclasses.replace(node, type=t, binding=ast.Binding("record", self.entity.name, "owner_id",
                                                                         "standard"))
        field, t = self._field(node, self.entity, parts[0], "")
        return dataclasses.replace(node, type=_money(t, field, node.dotted),
                                   binding=ast.Binding("record", self.entity.name, parts[0], field))

    def _field(self, node: ast.Name, entity: Entity, name: str, prefix: str) -> tuple[str, ast.ExprType]:
        if name in STANDARD_FIELDS and name not in entity.fields:
            kind = STANDARD_FIELDS[name]
            return "standard", ast.ExprType(kind, integral=kind == "reference", label=name)
        field = entity.fields.get(name)
        if field is None:
            hint = suggestion(name, [*entity.fields, *STANDARD_FIELDS, *([] if prefix else [OWNER_ALIAS])])
            if not prefix and name in self.registry:
                hint = f"{name} is a function: call it, e.g. {name}(...)"
            raise self.fail(node, f"unknown field '{prefix}{name}' on {entity.name}", "expression_unknown_field",
                            hint)
        if field.type in _UNUSABLE:
            raise self.fail(node, f"field '{prefix}{name}' of type {field.type} cannot be used in expressions",
                            "expression_unusable_field")
        return field.type, field_type(field)

    def _old(self, node: ast.Name) -> ast.Node:
        if not self.allow_old:
            raise self.fail(node, f"`{node.dotted}` (the previous value) only exists in update rules",
                            "expression_old_not_allowed", "`old.` is only available in write-time rules (checks); "
                            "here, in a filter, formula or default, use the field without `old.`")
        name = node.parts[1]
        ftype, t = self._field(node, self.entity, name, "old.")
        return dataclasses.replace(node, type=_money(t, ftype, node.dotted),
                                   binding=ast.Binding("old", self.entity.name, name, ftype))

    def _hop(self, node: ast.Name) -> ast.Node:
        ref_name, name = node.parts
        ref = self.entity.fields.get(ref_name)
        if ref is None and ref_name in USER_COLUMNS:
            return self._user_hop(node, USER_COLUMNS[ref_name])
        if ref is not None and ref.type == "user":
            return self._user_hop(node, ref_name)
        if ref is None:
            raise self.fail(node, f"unknown reference field '{ref_name}' on {self.entity.name}",
                            "expression_unknown_field", suggestion(ref_name, self._reference_fields()))
        if ref.type != "reference" or ref.reference is None or ref.reference not in self.workspace.entities:
            raise self.fail(node, f"'{ref_name}' is not a reference to an entity, so `.{name}` cannot follow it",
                            "expression_not_a_reference", "only reference fields can be followed with a dot")
        target = self.workspace.entities[ref.reference]
        ftype, t = self._field(node, target, name, f"{ref_name}.")
        binding = ast.Binding("hop", target.name, name, ftype, via=ref_name)
        return dataclasses.replace(node, type=_money(t, ftype, node.dotted), binding=binding)

    def _user_hop(self, node: ast.Name, via: str) -> ast.Node:
        ref_name, name = node.parts
        t = USER_ATTRIBUTES.get(name)
        if t is None:
            hint = suggestion(name, USER_ATTRIBUTES) or f"a user has: {', '.join(USER_ATTRIBUTES)}"
            raise self.fail(node, f"unknown user attribute '{name}' of {ref_name}", "expression_unknown_field", hint)
        return dataclasses.replace(node, type=t, binding=ast.Binding("user", "user", name, "user_attribute", via=via))

    def _reference_fields(self) -> list[str]:
        return [f.name for f in self.entity.fields.values() if f.type in ("reference", "user")] + [OWNER_ALIAS]

    # ------------------------------------------------------------------ operators

    def _unary(self, node: ast.Unary) -> ast.Node:
        if node.op == "not":
            operand = self.boolean(node.operand, "the operand of `not`")
            return dataclasses.replace(node, operand=operand, type=ast.BOOLEAN)
        operand = self.visit(node.operand)
        assert operand.type is not None
        if operand.type.kind != "number":
            raise self.fail(operand, f"cannot negate {_article(str(operand.type))}", "expression_type_mismatch")
        return dataclasses.replace(node, operand=operand, type=ast.ExprType("number", operand.type.integral,
                                                                            currency=operand.type.currency))

    def _boolop(self, node: ast.BoolOp) -> ast.Node:
        operands = tuple(self.boolean(o, f"each side of `{node.op}`") for o in node.operands)
        return dataclasses.replace(node, operands=operands, type=ast.BOOLEAN)

    def _binary(self, node: ast.Binary) -> ast.Node:
        left, right = self.visit(node.left), self.visit(node.right)
        if node.op in ast.COMPARISONS:
            return self._compare(node, left, right)
        return self._arith(node, left, right)

    def _arith(self, node: ast.Binary, left: ast.Node, right: ast.Node) -> ast.Node:
        lt, rt = left.type, right.type
        assert lt is not None and rt is not None
        for side, t in ((left, lt), (right, rt)):
            if t.kind == "null":
                raise self.fail(side, f"`{node.op}` with null always gives null", "expression_null_arithmetic",
                                "use coalesce(x, 0) to treat a missing value as 0")
            if t.kind != "number":
                raise self.fail(side, f"`{node.op}` needs numbers, but `{self.text(side)}` is {_article(str(t))}",
                                "expression_type_mismatch", _arith_hint(node.op, t))
        integral = lt.integral and rt.integral and node.op != "/"
        currency = self.money_result(node, lt, rt)
        return dataclasses.replace(node, left=left, right=right, type=ast.ExprType("number", integral,
                                                                                   currency=currency))

    def money_result(self, node: ast.Binary, lt: ast.ExprType, rt: ast.ExprType) -> str | None:
        """The currency of an arithmetic result; two money values in different currencies may not meet."""
        if lt.currency is None or rt.currency is None:
            return lt.currency or rt.currency
        if lt.currency != rt.currency:
            raise self.mixed(node, lt.currency, rt.currency)
        return None if node.op == "/" else lt.currency  # amount / amount is a plain ratio

    def mixed(self, node: ast.Node, a: str, b: str) -> ExpressionError:
        """The error for money of two currencies meeting without convert()."""
        code = self.workspace.currency
        return self.fail(node, f"`{self.text(node)}` mixes money in different currencies ({currency_text(a)} "
                         f"and {currency_text(b)}), which gives a wrong number", "expression_mixed_currency",
                         f"convert both to one currency first, e.g. convert({_plain(a)}, '{code}') "
                         f"{getattr(node, 'op', '+')} convert({_plain(b)}, '{code}')")

    def _compare(self, node: ast.Binary, left: ast.Node, right: ast.Node) -> ast.Node:
        lt, rt = left.type, right.type
        assert lt is not None and rt is not None
        if lt.kind == "null" or rt.kind == "null":
            return self._compare_null(node, left, right)
        if not (comparable(lt, rt) or {lt.kind, rt.kind} == {"date", "datetime"}):
            raise self.fail(node, f"cannot compare {lt} with {rt}: `{self.text(node)}`", "expression_type_mismatch",
                            _compare_hint(lt, rt))
        if lt.currency is not None and rt.currency is not None and lt.currency != rt.currency:
            raise self.mixed(node, lt.currency, rt.currency)
        if node.op not in ("==", "!=") and lt.kind not in ORDERED_KINDS:
            raise self.fail(node, f"`{node.op}` cannot order {lt} values", "expression_type_mismatch",
                            "only numbers, texts, dates and datetimes are ordered; use == or !=")
        self.check_option(left, right)
        self.check_option(right, left)
        return dataclasses.replace(node, left=left, right=right, type=ast.BOOLEAN)

    def _compare_null(self, node: ast.Binary, left: ast.Node, right: ast.Node) -> ast.Node:
        if node.op not in ("==", "!="):
            raise self.fail(node, f"`{node.op}` with null is never true", "expression_null_comparison",
                            "use `is null` or `is not null`")
        other = right if left.type is not None and left.type.kind == "null" else left
        return ast.IsNull(other, node.op == "!=", node.pos, ast.BOOLEAN)

    def check_option(self, value: ast.Node, literal: ast.Node) -> None:
        """A string literal compared with a picklist must be one of its options."""
        t = value.type
        if t is None or t.options is None or not isinstance(literal, ast.Literal):
            return
        if isinstance(literal.value, str) and literal.value not in t.options:
            hint = suggestion(literal.value, t.options) or f"options are: {', '.join(t.options)}"
            raise self.fail(literal, f"'{literal.value}' is not an option of {t.label}", "expression_unknown_option",
                            hint)

    def _in(self, node: ast.In) -> ast.Node:
        needle = self.visit(node.needle)
        assert needle.type is not None
        if needle.type.kind == "list":
            raise self.fail(needle, "the left side of `in` must be a single value, not a list",
                            "expression_type_mismatch", 'write e.g. "vip" in tags')
        if isinstance(node.haystack, ast.ListLit):
            haystack = self._in_list(needle, node.haystack)
        else:
            haystack = self._in_field(needle, node.haystack)
        return dataclasses.replace(node, needle=needle, haystack=haystack, type=ast.BOOLEAN)

    def _in_list(self, needle: ast.Node, lst: ast.ListLit) -> ast.Node:
        items = tuple(self.visit(item) for item in lst.items)
        assert needle.type is not None
        for item in items:
            assert item.type is not None
            if item.type.kind != "null" and (needle.type.kind == "null" or not comparable(needle.type, item.type)):
                raise self.fail(item, f"cannot look for {needle.type} in a list holding {item.type}",
                                "expression_type_mismatch", "every item must have the type of the left side")
            self.check_option(needle, item)
        return dataclasses.replace(lst, items=items, type=ast.LIST)

    def _in_field(self, needle: ast.Node, node: ast.Node) -> ast.Node:
        haystack = self.visit(node)
        assert haystack.type is not None and needle.type is not None
        if haystack.type.kind != "list":
            raise self.fail(haystack, f"`in` needs a list on its right, not {haystack.type}",
                            "expression_type_mismatch", 'write a list: stage in ["new", "won"]')
        if not (needle.type.is_stringy or needle.type.kind == "null"):
            raise self.fail(needle, f"a multi-select holds texts, not {needle.type}", "expression_type_mismatch")
        self.check_option(haystack, needle)
        return haystack

    def _isnull(self, node: ast.IsNull) -> ast.Node:
        operand = self.visit(node.operand)
        return dataclasses.replace(node, operand=operand, type=ast.BOOLEAN)

    def _if(self, node: ast.If) -> ast.Node:
        cond = self.boolean(node.cond, "the condition of `if`")
        then, else_ = self.visit(node.then), self.visit(node.else_)
        assert then.type is not None and else_.type is not None
        if then.type.kind != "null" and else_.type.kind != "null" and not same_kind(then.type, else_.type):
            raise self.fail(node, f"both branches of `if` must have the same type ({then.type} and {else_.type})",
                            "expression_type_mismatch", "convert one branch, or use null for 'no value'")
        if then.type.currency and else_.type.currency and then.type.currency != else_.type.currency:
            raise self.mixed(node, then.type.currency, else_.type.currency)
        t = unify([then.type, else_.type])
        return dataclasses.replace(node, cond=cond, then=then, else_=else_, type=t)

    def _call(self, node: ast.Call) -> ast.Node:
        self.not_keyword(node, node.name)
        fn = self.registry.get(node.name)
        if fn is None:
            hint = suggestion(node.name, self.registry.names())
            if node.name in self.entity.fields:
                hint = f"{node.name} is a field, not a function"
            raise self.fail(node, f"unknown function {node.name}()", "expression_unknown_function", hint)
        args = tuple(self.visit(a) for a in node.args)
        types = [a.type for a in args]
        try:
            t = fn.result_type(types, args)  # type: ignore[arg-type]
        except ExpressionTypeError as e:
            index = e.details.get("arg") if isinstance(e.details, dict) else None
            at = args[index] if index is not None and index < len(args) else node
            raise self.fail(at, e.message, e.code, e.hint or f"use {fn.signature}") from None
        if fn.currency_arg and args:
            args = (args[0], self.currency_of(args[0]), *args[1:])
        return dataclasses.replace(node, args=args, type=t)

    def currency_of(self, node: ast.Node) -> ast.Node:
        """A node giving the currency code of the money value ``node`` (its ``<field>_currency``)."""
        source = node.type.currency if node.type is not None else None
        if source is None:
            raise self.fail(node, f"`{self.text(node)}` is not a money value, so it has no currency to convert "
                            "from", "expression_not_money", "convert a money field, e.g. convert(amount, 'CNY')")
        if source.startswith("="):
            return ast.Literal(source[1:], node.pos, ast.STRING)
        found = next(n for n in ast.walk(node) if isinstance(n, ast.Name) and n.dotted == source)
        assert isinstance(found, ast.Name) and found.binding is not None
        b = found.binding
        binding = dataclasses.replace(b, field=f"{b.field}_currency", field_type="currency")
        return ast.Name((*found.parts[:-1], f"{found.parts[-1]}_currency"), found.pos, ast.STRING, binding)


def _money(t: ast.ExprType, field_type: str, dotted: str) -> ast.ExprType:
    """A money field's type carries where its currency comes from."""
    return dataclasses.replace(t, currency=dotted) if field_type == "money" else t


def _plain(source: str) -> str:
    return source[1:] if source.startswith("=") else source


def comparable(a: ast.ExprType, b: ast.ExprType) -> bool:
    """Whether ``==`` between values of these types makes sense."""
    if a.is_stringy and b.is_stringy:
        return True
    pair = {a.kind, b.kind}
    return a.kind == b.kind or pair == {"reference", "number"}


def same_kind(a: ast.ExprType, b: ast.ExprType) -> bool:
    return a.kind == b.kind or (a.is_stringy and b.is_stringy)


def _fits(got: ast.ExprType, want: ast.ExprType) -> bool:
    if want.kind in ("string", "picklist"):
        return got.is_stringy
    if want.kind == "reference":
        return got.kind == "reference" or (got.kind == "number" and got.integral)
    return got.kind == want.kind


def _article(word: str) -> str:
    if word in ("null",):
        return word
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _result_hint(want: ast.ExprType) -> str:
    if want.kind == "boolean":
        return "a condition compares something, e.g. amount > 1000"
    if want.kind in ("string", "picklist"):
        return "texts are joined with concat(...)"
    return f"make the expression give {_article(str(want))}"


def _arith_hint(op: str, t: ast.ExprType) -> str | None:
    if t.is_stringy and op == "+":
        return "join texts with concat(a, b)"
    if t.kind in ("date", "datetime"):
        return "use add_days(d, n), add_months(d, n) or days_between(a, b)"
    return None


def _compare_hint(a: ast.ExprType, b: ast.ExprType) -> str | None:
    kinds = {a.kind, b.kind}
    if "number" in kinds and ("string" in kinds or "picklist" in kinds):
        return "write numbers without quotes: amount > 100"
    return None
