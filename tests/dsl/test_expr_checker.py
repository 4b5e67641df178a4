"""Type checker: types, bindings, picklist options, expected result types, located errors."""

from __future__ import annotations

from typing import Any

import pytest

from engine.dsl.expressions import ast, check, compile_expression, parse
from engine.dsl.model import Entity, Field, Option, Workspace, frozen_map
from engine.errors import ExpressionError, ExpressionSyntaxError, ExpressionTypeError, SourceLocation

LOC = SourceLocation("t.yaml", 1, 1)


def _f(name: str, ftype: str, **kw: Any) -> Field:
    return Field(name=name, type=ftype, location=LOC, **kw)


ACCOUNT = Entity("account", LOC, fields=frozen_map({f.name: f for f in [
    _f("name", "string"), _f("industry", "picklist", options=(Option("manufacturing"), Option("retail"))),
    _f("employees", "integer")]}))
LEAD = Entity("lead", LOC, fields=frozen_map({f.name: f for f in [
    _f("name", "string"), _f("budget", "money"), _f("score", "integer"), _f("active", "boolean"),
    _f("industry", "picklist", options=(Option("manufacturing"), Option("retail"), Option("tech"))),
    _f("tags", "multi_picklist", options=(Option("vip"), Option("hot"))), _f("last_contact", "date"),
    _f("met_at", "datetime"), _f("account", "reference", reference="account"), _f("owner", "user"),
    _f("payload", "json"), _f("stage", "picklist", options=(Option("new"), Option("won")))]}))
WS = Workspace("t", entities=frozen_map({"account": ACCOUNT, "lead": LEAD}))


def kind_of(text: str, **kw: Any) -> str:
    return compile_expression(text, LEAD, WS, **kw).type


@pytest.mark.parametrize(("text", "kind"), [
    ("budget * 2", "number"), ("score + 1", "number"), ('concat(name, "!")', "string"), ("industry", "picklist"),
    ("tags", "list"), ("last_contact", "date"), ("$now", "datetime"), ("$user", "reference"), ("account", "reference"),
    ("account.employees", "number"), ("null", "null"), ("if active then 1 else null", "number"),
    ("coalesce(industry, name)", "string"), ("id", "reference"), ("created_at", "datetime"),
    ("last_contact < $now", "boolean"), ("add_days(created_at, -30)", "datetime"),
    ("add_months(met_at, 1)", "datetime"), ("add_days($today, -30)", "date"), ("add_months(null, 1)", "date"),
])
def test_result_kinds(text: str, kind: str) -> None:
    assert kind_of(text) == kind


def test_check_returns_typed_tree_with_bindings() -> None:
    checked = check(parse("account.industry == \"retail\" and score > 1"), LEAD, WS, expected="boolean")
    assert checked.type == ast.BOOLEAN
    assert all(n.type is not None for n in ast.walk(checked))
    names = [n for n in ast.walk(checked) if isinstance(n, ast.Name)]
    assert names[0].binding == ast.Binding("hop", "account", "industry", "picklist", via="account")
    assert names[1].binding == ast.Binding("record", "lead", "score", "integer")


def test_whole_numbers_are_tracked() -> None:
    assert check(parse("score * 2 % 3"), LEAD, WS).type == ast.INTEGER
    assert check(parse("score / 2"), LEAD, WS).type == ast.NUMBER
    assert check(parse("round(budget)"), LEAD, WS).type == ast.ExprType("number", integral=True, currency="budget")


def test_usage_sets() -> None:
    c = compile_expression("account.industry == \"retail\" and days_since(last_contact) < 3 and old.score > 1",
                           LEAD, WS, allow_old=True)
    assert c.fields_used == {"account", "last_contact"}
    assert c.references_used == {("account", "account", "industry")}
    assert c.old_fields_used == {"score"}
    assert c.variables_used == {"today"}


def error(text: str, **kw: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, LEAD, WS, **kw)
    return info.value


@pytest.mark.parametrize(("text", "code", "message", "col"), [
    ('industry == "manufacturng"', "expression_unknown_option",
     "'manufacturng' is not an option of industry; did you mean 'manufacturing'?", 13),
    ('"vipp" in tags', "expression_unknown_option", "'vipp' is not an option of tags; did you mean 'vip'?", 1),
    ('industry in ["tech", "retial"]', "expression_unknown_option",
     "'retial' is not an option of industry; did you mean 'retail'?", 22),
    ("budjet > 1", "expression_unknown_field", "unknown field 'budjet' on lead; did you mean 'budget'?", 1),
    ("account.industy == 1", "expression_unknown_field",
     "unknown field 'account.industy' on account; did you mean 'industry'?", 1),
    ("lowr(name) == 1", "expression_unknown_function", "unknown function lowr(); did you mean 'lower'?", 1),
    ("$usr == 1", "expression_unknown_variable", "unknown variable $usr; did you mean '$user'?", 1),
    ('budget > "x"', "expression_type_mismatch", 'cannot compare number with string: `budget > "x"`', 1),
    ("score + name > 1", "expression_type_mismatch", "`+` needs numbers, but `name` is a string", 9),
    ("last_contact < 5", "expression_type_mismatch", "cannot compare date with whole number: `last_contact < 5`",
     1),
    ("last_contact in [$now]", "expression_type_mismatch", "cannot look for date in a list holding datetime", 18),
    ("add_days(last_contact, 1.5) > $today", "expression_bad_arguments",
     "argument 2 of add_days() must be a whole number, not number", 24),
    ("tags > 1", "expression_type_mismatch", "cannot compare list with whole number: `tags > 1`", 1),
    ("active < true", "expression_type_mismatch", "`<` cannot order boolean values", 1),
    ("budget > null", "expression_null_comparison", "`>` with null is never true", 1),
    ("budget + null > 1", "expression_null_arithmetic", "`+` with null always gives null", 10),
    ("old.score > 1", "expression_old_not_allowed", "`old.score` (the previous value) only exists in update rules",
     1),
    ("a.b.c", "expression_too_many_hops", "`a.b.c` goes through more than one reference", 1),
    ("owner.name == 1", "expression_type_mismatch", "cannot compare string with whole number: `owner.name == 1`", 1),
    ("budget.name == 1", "expression_not_a_reference",
     "'budget' is not a reference to an entity, so `.name` cannot follow it", 1),
    ("payload == 1", "expression_unusable_field", "field 'payload' of type json cannot be used in expressions", 1),
    ("round(budget, score) > 1", "expression_bad_arguments",
     "the digits of round() must be a whole number from 0 to 10", 15),
    ("days_between(last_contact) > 1", "expression_bad_arguments", "days_between() takes 2 arguments, got 1", 1),
    ("lower(score) == 1", "expression_bad_arguments", "argument 1 of lower() must be string, not whole number", 7),
    ("min(score, last_contact) > 1", "expression_bad_arguments",
     "the arguments of min() must all have the same type", 1),
    ("[1, 2]", "expression_misplaced_list", "a list can only follow `in` or `not in`", 1),
    ("score in tags", "expression_type_mismatch", "a multi-select holds texts, not whole number", 1),
    ("name in [1]", "expression_type_mismatch", "cannot look for string in a list holding whole number", 10),
    ("not score", "expression_type_mismatch", "the operand of `not` must be a condition (true/false), not whole number",
     5),
    ("if score then 1 else 2", "expression_type_mismatch",
     "the condition of `if` must be a condition (true/false), not whole number", 4),
    ("if active then 1 else name", "expression_type_mismatch",
     "both branches of `if` must have the same type (whole number and string)", 1),
])
def test_type_errors(text: str, code: str, message: str, col: int) -> None:
    err = error(text, expected="boolean", location=SourceLocation("acme/lead.yaml", 4, 10), quote_offset=1)
    assert isinstance(err, ExpressionTypeError)
    assert (err.code, err.message) == (code, message)
    assert err.location == SourceLocation("acme/lead.yaml", 4, 10 + 1 + col - 1)
    assert err.snippet and "^" in err.snippet


@pytest.mark.parametrize(("text", "expected", "message"), [
    ("name", "boolean", "this expression must give a boolean, but it gives a string"),
    ("budget > 1", "number", "this expression must give a number, but it gives a boolean"),
    ("score", "date", "this expression must give a date, but it gives a whole number"),
    ("budget / 2", "integer", "this expression must give a whole number, but it may give decimals"),
])
def test_expected_type(text: str, expected: str, message: str) -> None:
    err = error(text, expected=expected)
    assert err.code == "expression_wrong_result_type" and err.message == message


@pytest.mark.parametrize(("text", "expected", "kind"), [
    ("budget * 2", "money", "number"), ("score + 1", "integer", "whole number"),
    ('concat(name, "x")', "text", "string"), ("industry", "string", "picklist"),
    ('if active then "tech" else industry', "picklist", "string"),
    ("$user", "user", "reference"), ("score", "reference", "whole number"), ("null", "date", "null"),
    ("add_days($today, 2)", "date", "date"), ("active", "boolean", "boolean"),
])
def test_expected_type_accepted(text: str, expected: str, kind: str) -> None:
    """A result type the field accepts compiles, and keeps the type the checker gave it."""
    assert str(compile_expression(text, LEAD, WS, expected=expected).expr_type) == kind


def test_equality_with_null_literal_is_null_test() -> None:
    checked = check(parse("name == null"), LEAD, WS)
    assert isinstance(checked, ast.IsNull) and not checked.negated
    checked = check(parse("null != name"), LEAD, WS)
    assert isinstance(checked, ast.IsNull) and checked.negated


def test_keyword_in_value_position() -> None:
    err = error("active == not (active)")
    assert isinstance(err, ExpressionSyntaxError) and err.code == "expression_misplaced_keyword"


def test_field_used_as_function_and_function_as_field() -> None:
    assert error("name(1)").hint == "name is a field, not a function"
    assert error("today > last_contact").hint == "today is a function: call it, e.g. today(...)"


# --------------------------------------------------------------------------- hops through users

ACCOUNT_OWNED = Entity("account", LOC, fields=ACCOUNT.fields)  # no field named owner: `owner` is owner_id
WS_OWNED = Workspace("t", entities=frozen_map({"account": ACCOUNT_OWNED, "lead": LEAD}))


@pytest.mark.parametrize(("text", "kind", "via"), [
    ('owner.team == "east"', "boolean", "owner_id"), ("owner.name", "string", "owner_id"),
    ("created_by.username", "string", "created_by"), ("updated_by.team_id", "reference", "updated_by"),
    ("owner_id.active", "boolean", "owner_id"), ("manager_of(owner)", "reference", "owner_id"),
    ("manager_of(manager_of(owner)) == $user", "boolean", "owner_id"), ("owner == $user", "boolean", "owner_id"),
])
def test_owner_alias_and_user_hops(text: str, kind: str, via: str) -> None:
    c = compile_expression(text, ACCOUNT_OWNED, WS_OWNED)
    assert c.type == kind and c.fields_used == {via} and c.references_used == frozenset()


def test_a_user_field_is_followed_to_the_user() -> None:
    c = compile_expression('owner.team == "east" and manager_of(owner) != $user', LEAD, WS)  # lead.owner: a field
    names = [n for n in ast.walk(c.ast) if isinstance(n, ast.Name)]
    assert names[0].binding == ast.Binding("user", "user", "team", "user_attribute", via="owner")
    assert c.fields_used == {"owner"}


@pytest.mark.parametrize(("text", "entity", "message", "hint", "col"), [
    ('owner.teem == "east"', ACCOUNT_OWNED, "unknown user attribute 'teem' of owner; did you mean 'team'?",
     "did you mean 'team'?", 1),
    ("score > 1 and owner.email is null", LEAD, "unknown user attribute 'email' of owner",
     "a user has: name, username, team, team_id, active", 15),
    ("ownr.name", ACCOUNT_OWNED, "unknown reference field 'ownr' on account; did you mean 'owner'?",
     "did you mean 'owner'?", 1),
    ("manager_of(name)", LEAD, "argument 1 of manager_of() must be reference, not string",
     "use manager_of(reference) -> reference", 12),
])
def test_user_hop_errors(text: str, entity: Entity, message: str, hint: str, col: int) -> None:
    with pytest.raises(ExpressionTypeError) as info:
        compile_expression(text, entity, WS_OWNED, location=SourceLocation("acme/lead.yaml", 4, 10), quote_offset=1)
    err = info.value
    assert (err.message, err.hint) == (message, hint)
    assert err.location == SourceLocation("acme/lead.yaml", 4, 10 + col)
