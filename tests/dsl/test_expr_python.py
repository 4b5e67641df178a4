"""Python back end: null rules, functions, context, safety, registry, layering."""

from __future__ import annotations

import ast as pyast
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.dsl.expressions import EvalContext, FunctionDef, compile_expression, default_registry
from engine.dsl.expressions.pycompile import verify_generated
from engine.dsl.model import Entity, Field, Option, Workspace, frozen_map
from engine.errors import ExpressionEvalError, SourceLocation

LOC = SourceLocation("t.yaml", 1, 1)


def _f(name: str, ftype: str, **kw: Any) -> Field:
    return Field(name=name, type=ftype, location=LOC, **kw)


ACCOUNT = Entity("account", LOC, fields=frozen_map({"industry": _f("industry", "picklist", options=(
    Option("tech"), Option("retail")))}))
LEAD = Entity("lead", LOC, fields=frozen_map({f.name: f for f in [
    _f("name", "string"), _f("budget", "money"), _f("score", "integer"), _f("active", "boolean"),
    _f("tags", "multi_picklist", options=(Option("vip"), Option("hot"))), _f("last_contact", "date"),
    _f("met_at", "datetime"), _f("account", "reference", reference="account"),
    _f("stage", "picklist", options=(Option("new"), Option("won"))), _f("owner", "user")]}))
WS = Workspace("t", entities=frozen_map({"account": ACCOUNT, "lead": LEAD}))
NOW = dt.datetime(2024, 3, 31, 22, 0, tzinfo=dt.UTC)
CTX = EvalContext(user_id=7, now=NOW, old={"stage": "new"}, ref=lambda e, i: {"industry": "tech"} if i == 1 else None)


def ev(text: str, record: dict[str, Any] | None = None, **kw: Any) -> Any:
    return compile_expression(text, LEAD, WS, allow_old=True, **kw).evaluate(record or {}, CTX)


@pytest.mark.parametrize(("text", "record", "value"), [
    ("budget > 10", {}, False), ("budget < 10", {}, False), ("not (budget < 10)", {}, True),
    ("name == \"x\"", {}, False), ("name != \"x\"", {}, True), ("name == null", {}, True),
    ("name != null", {"name": ""}, True), ("name is null", {"name": ""}, False),
    ("score == score", {}, False), ("score + 1", {}, None), ("-score", {}, None),
    ("active and true", {}, False), ("active or true", {}, True), ("not active", {}, True), ("active", {}, False),
    ("score / 0", {"score": 3}, None), ("score % 0", {"score": 3}, None), ("-7 % 3", {}, -1), ("7 % -3", {}, 1),
    ("score / 4", {"score": 10}, Decimal("2.5")), ("1 / 3", {}, Decimal("0.3333333333")),
    ("budget * 3", {"budget": Decimal("0.10")}, Decimal("0.3")), ("0.1 + 0.2 == 0.3", {}, True),
    ("budget + 1", {"budget": 1.5}, Decimal("2.5")),
    ("stage in [\"won\", null]", {}, True), ("stage not in [\"won\"]", {}, True), ("stage in []", {}, False),
    ("\"vip\" in tags", {}, False), ("\"vip\" in tags", {"tags": ["vip"]}, True),
    ("\"vip\" not in tags", {}, True),
    ("if active then 1 else 2", {}, 2), ("coalesce(name, \"-\")", {}, "-"),
    ("concat(name, \"/\", null)", {"name": "a"}, "a/"), ("len(name)", {}, None), ("len(tags)", {"tags": []}, 0),
    ('lower("ÉA")', {}, "Éa"), ('upper("straße")', {}, "STRAßE"), ('trim(" \\t x \\n")', {}, "x"),
    ('contains(name, "B")', {"name": "abc"}, False), ('startswith(name, "")', {"name": "abc"}, True),
    ('endswith(name, "bc")', {"name": "abc"}, True), ('contains(name, "a")', {}, False),
    ("round(2.5)", {}, 3), ("round(-2.5)", {}, -3), ("round(2.675, 2)", {}, Decimal("2.68")),
    ("abs(-3)", {}, 3), ("min(score, 2, null)", {}, 2), ("max(null, null)", {}, None),
    ("days_between(last_contact, $today)", {"last_contact": dt.date(2024, 3, 1)}, 30),
    ("days_since(met_at)", {"met_at": dt.datetime(2024, 3, 30, 23, 59, tzinfo=dt.UTC)}, 1),
    ("add_days(last_contact, 1)", {"last_contact": dt.date(2024, 2, 28)}, dt.date(2024, 2, 29)),
    ("add_months(last_contact, 1)", {"last_contact": dt.date(2024, 1, 31)}, dt.date(2024, 2, 29)),
    ("add_months(last_contact, -13)", {"last_contact": dt.date(2024, 3, 31)}, dt.date(2023, 2, 28)),
    ("add_days(met_at, -30)", {"met_at": dt.datetime(2024, 3, 1, 23, 30, tzinfo=dt.UTC)},
     dt.datetime(2024, 1, 31, 23, 30, tzinfo=dt.UTC)),
    ("add_months(met_at, 1)", {"met_at": dt.datetime(2024, 1, 31, 8, 0, 0, 5, tzinfo=dt.UTC)},
     dt.datetime(2024, 2, 29, 8, 0, 0, 5, tzinfo=dt.UTC)),
    ("add_months(met_at, 1)", {"met_at": dt.datetime(2023, 1, 31, 1, tzinfo=dt.timezone(dt.timedelta(hours=3)))},
     dt.datetime(2023, 2, 28, 22, tzinfo=dt.UTC)),  # moved in UTC: Jan 30 22:00 UTC + 1 month
    ("met_at >= add_days($today, -30)", {"met_at": dt.datetime(2024, 3, 1, 0, 0, tzinfo=dt.UTC)}, True),
    ("met_at >= add_days($today, -30)", {"met_at": dt.datetime(2024, 2, 29, 23, 59, tzinfo=dt.UTC)}, False),
    ("met_at == $today", {"met_at": dt.datetime(2024, 3, 31, 23, 59, tzinfo=dt.UTC)}, True),
    ("met_at <= $today", {"met_at": dt.datetime(2024, 3, 31, 23, 59, tzinfo=dt.UTC)}, True),
    ("met_at > $today", {"met_at": dt.datetime(2024, 4, 1, 0, 0, tzinfo=dt.UTC)}, True),
    ("last_contact != met_at", {"last_contact": dt.date(2024, 3, 31)}, True),
    ("year(met_at) * 100 + month(met_at)", {"met_at": NOW}, 202403),
    ("isblank(name)", {"name": " \t"}, True), ("isblank(tags)", {"tags": []}, True), ("isblank(score)", {}, True),
    ("$user == 7", {}, True), ("$today", {}, NOW.date()), ("now() == $now", {}, True),
    ("old.stage != stage", {"stage": "won"}, True), ("account.industry == \"tech\"", {"account": 1}, True),
    ("account.industry is null", {"account": 2}, True), ('name < "b"', {"name": "B"}, True),
    ('name < "é"', {"name": "z"}, True),
])
def test_semantics(text: str, record: dict[str, Any], value: Any) -> None:
    result = ev(text, record)
    assert result == value
    if isinstance(value, bool):
        assert result is value


def test_top_level_boolean_never_null() -> None:
    assert ev("active") is False
    assert ev("if active then active else null", {"active": True}) is True


def test_hop_without_resolver_is_an_eval_error() -> None:
    compiled = compile_expression("account.industry == \"tech\"", LEAD, WS)
    with pytest.raises(ExpressionEvalError) as info:
        compiled.evaluate({"account": 1}, EvalContext(now=NOW))
    assert info.value.code == "expression_no_resolver"
    assert compiled.evaluate({"account": None}, EvalContext(now=NOW)) is False


def test_type_errors_at_run_time_become_eval_errors() -> None:
    compiled = compile_expression("name < \"b\"", LEAD, WS)
    with pytest.raises(ExpressionEvalError) as info:
        compiled.evaluate({"name": 5})
    assert info.value.code == "expression_eval"


def test_default_context_uses_the_clock() -> None:
    assert compile_expression("$today", LEAD, WS).evaluate({}) == dt.datetime.now(dt.UTC).date()


def test_user_text_is_never_pasted_into_code() -> None:
    nasty = "\"'); __import__('os').system('echo pwned'); ('\""
    compiled = compile_expression(f"name == {nasty}", LEAD, WS)
    constants = [n.value for n in pyast.walk(pyast.parse(compiled.python_source)) if isinstance(n, pyast.Constant)]
    assert nasty[1:-1] in constants  # the text is one string constant, nothing more
    assert compiled.evaluate({"name": "x"}) is False
    assert compiled.evaluate({"name": nasty[1:-1]}) is True


@pytest.mark.parametrize("source", ["lambda r, ctx: __import__('os')", "lambda r, ctx: r.__class__",
                                    "lambda r, ctx: [x for x in r]", "lambda r, ctx: ctx.ref"])
def test_verifier_refuses_foreign_code(source: str) -> None:
    with pytest.raises(ExpressionEvalError):
        verify_generated(source, {})


def test_deepest_allowed_expression_compiles() -> None:
    from engine.dsl.expressions import MAX_DEPTH

    text = "(" * (MAX_DEPTH - 1) + "score" + " + 1)" * (MAX_DEPTH - 1)
    assert compile_expression(text, LEAD, WS).evaluate({"score": 1}) == MAX_DEPTH


def test_registry_is_frozen_and_copyable() -> None:
    registry = default_registry()
    with pytest.raises(TypeError):
        registry.register(FunctionDef("double", ("number",), "number", lambda x: x))
    mine = registry.copy()
    mine.register(FunctionDef("double", ("number",), "T", lambda x: None if x is None else 2 * x,
                              typer=lambda types, nodes: types[0]))
    assert compile_expression("double(score)", LEAD, WS, registry=mine).evaluate({"score": 4}) == 8
    assert "double" not in default_registry()
    with pytest.raises(ValueError):
        mine.register(FunctionDef("double", ("number",), "number", lambda x: x))


def test_every_builtin_has_a_signature_and_doc() -> None:
    names = {f.name for f in default_registry()}
    assert names == {"lower", "upper", "trim", "len", "contains", "icontains", "startswith", "endswith", "coalesce",
                     "round", "abs", "min", "max", "today", "now", "days_between", "days_since", "add_days",
                     "add_months", "year", "month", "isblank", "concat", "manager_of"}
    assert all(f.doc and "->" in f.signature for f in default_registry())


def test_dsl_never_imports_sqlalchemy_or_runtime() -> None:
    root = Path(__file__).resolve().parents[2] / "engine" / "dsl" / "expressions"
    for path in root.glob("*.py"):
        for node in pyast.walk(pyast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, pyast.Import) else (
                [node.module or ""] if isinstance(node, pyast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("sqlalchemy", "engine.runtime", "engine.api")), (path, name)


def test_docs_list_every_function() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "expressions.md").read_text()
    for fn in default_registry():
        assert f"`{fn.name}(" in doc, fn.name


DIRECTORY = {1: {"name": "Ann", "team": "east", "manager": None}, 2: {"name": "Bob", "team": None, "manager": 1},
             3: {"name": "Cy", "team": "east", "manager": 2}}
USERS_CTX = EvalContext(user_id=1, now=NOW, users=DIRECTORY.get)


@pytest.mark.parametrize(("text", "owner", "value"), [
    ('owner.team == "east"', 1, True), ('owner.team == "east"', 2, False), ('owner.team != "east"', 2, True),
    ("owner.name", 3, "Cy"), ("owner.name", None, None), ("owner.name", 99, None),
    ("manager_of(owner)", 3, 2), ("manager_of(manager_of(owner))", 3, 1),
    ("manager_of(manager_of(manager_of(owner)))", 3, None), ("manager_of(owner) == $user", 2, True),
    ("manager_of(owner)", None, None), ("manager_of($user)", None, None),
])
def test_user_hops_and_manager_of(text: str, owner: int | None, value: Any) -> None:
    assert compile_expression(text, LEAD, WS).evaluate({"owner": owner}, USERS_CTX) == value


def test_user_hops_need_a_resolver() -> None:
    with pytest.raises(ExpressionEvalError) as info:
        compile_expression("manager_of(owner) == 1", LEAD, WS).evaluate({"owner": 2}, CTX)
    assert info.value.code == "expression_no_resolver" and "EvalContext(users=...)" in (info.value.hint or "")
