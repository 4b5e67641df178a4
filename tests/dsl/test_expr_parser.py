"""Parser: precedence, positions, literals, limits, the friendly syntax-error catalogue, fuzzing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dsl.expressions import MAX_DEPTH, MAX_LENGTH, ast, parse
from engine.dsl.expressions.parser import CATALOGUE
from engine.errors import ExpressionError, ExpressionLimitError, ExpressionSyntaxError, SourceLocation


def shape(node: ast.Node) -> object:
    """A compact nested form of a tree, for precedence assertions."""
    if isinstance(node, ast.Literal):
        return node.value
    if isinstance(node, ast.Name):
        return node.dotted
    if isinstance(node, ast.Var):
        return "$" + node.name
    if isinstance(node, ast.Binary):
        return (node.op, shape(node.left), shape(node.right))
    if isinstance(node, ast.Unary):
        return (node.op, shape(node.operand))
    if isinstance(node, ast.BoolOp):
        return (node.op, *[shape(o) for o in node.operands])
    if isinstance(node, ast.In):
        return ("not in" if node.negated else "in", shape(node.needle), shape(node.haystack))
    if isinstance(node, ast.IsNull):
        return ("is not null" if node.negated else "is null", shape(node.operand))
    if isinstance(node, ast.If):
        return ("if", shape(node.cond), shape(node.then), shape(node.else_))
    if isinstance(node, ast.Call):
        return (node.name + "()", *[shape(a) for a in node.args])
    if isinstance(node, ast.ListLit):
        return [shape(i) for i in node.items]
    raise AssertionError(node)


@pytest.mark.parametrize(("text", "expected"), [
    ("a + b * c", ("+", "a", ("*", "b", "c"))),
    ("a - b - c", ("-", ("-", "a", "b"), "c")),
    ("-a * b", ("*", ("neg", "a"), "b")),
    ("-5", -5),
    ("a or b and c", ("or", "a", ("and", "b", "c"))),
    ("a or b or c", ("or", "a", "b", "c")),
    ("not a == b", ("not", ("==", "a", "b"))),
    ("not a and b", ("and", ("not", "a"), "b")),
    ("a + 1 > b * 2", (">", ("+", "a", 1), ("*", "b", 2))),
    ("x in [1, 2]", ("in", "x", [1, 2])),
    ("x not in []", ("not in", "x", [])),
    ("x is not null", ("is not null", "x")),
    ("a + b is null", ("is null", ("+", "a", "b"))),
    ("if a then 1 else 2", ("if", "a", 1, 2)),
    ("if a then 1 else if b then 2 else 3", ("if", "a", 1, ("if", "b", 2, 3))),
    ("f(a, b + 1)", ("f()", "a", ("+", "b", 1))),
    ("today()", ("today()",)),
    ("account.industry", "account.industry"),
    ("old.stage != stage", ("!=", "old.stage", "stage")),
    ("$user == owner_id", ("==", "$user", "owner_id")),
    ("(a or b) and c", ("and", ("or", "a", "b"), "c")),
    ("1.50", Decimal("1.50")),
    ("android and order", ("and", "android", "order")),
])
def test_precedence_and_shapes(text: str, expected: object) -> None:
    assert shape(parse(text)) == expected


@pytest.mark.parametrize(("text", "value"), [
    ('"a\\"b"', 'a"b'), ("'it\\'s'", "it's"), ('"tab\\tnl\\n"', "tab\tnl\n"), ('"\\u00e9"', "é"),
    ("'single \"double\" inside'", 'single "double" inside'), ("true", True), ("false", False), ("null", None),
])
def test_literals(text: str, value: object) -> None:
    node = parse(text)
    assert isinstance(node, ast.Literal) and node.value == value


def test_positions_are_recorded() -> None:
    node = parse('stage == "won" and\n  budget > 10')
    assert isinstance(node, ast.BoolOp)
    budget = node.operands[1]
    assert isinstance(budget, ast.Binary)
    assert (budget.left.pos.line, budget.left.pos.column, budget.left.pos.offset) == (2, 3, 21)


def test_nodes_are_frozen() -> None:
    node = parse("a + 1")
    with pytest.raises(AttributeError):
        node.op = "-"  # type: ignore[misc]


def test_bad_escape_is_located() -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse('name == "x\\q"')
    assert info.value.code == "expression_bad_escape"
    assert str(info.value.location) == "<expression>:1:11"


CASES = [(label, example) for label, (_, _, _, examples) in CATALOGUE.items() for example in examples]


@pytest.mark.parametrize(("label", "text"), CASES)
def test_catalogue_examples_get_their_code(label: str, text: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse(text)
    assert info.value.code == CATALOGUE[label][0]
    assert info.value.hint == CATALOGUE[label][2]


@pytest.mark.parametrize(("text", "code", "message", "col"), [
    ('stage = "won"', "expression_single_equals", "`=` is not an operator here", 7),
    ("a > 1 && b < 2", "expression_symbolic_logic", "`&&`, `||` and `!` are not operators here", 7),
    ("a > 1 || b < 2", "expression_symbolic_logic", "`&&`, `||` and `!` are not operators here", 7),
    ('name == "abc', "expression_unclosed_string", "unclosed string: a quote is missing", 9),
    ("budget +", "expression_incomplete", "the expression ends too early: something is missing at the end", 9),
    ("stage <> 1", "expression_not_equal_operator", "`<>` is not an operator here", 8),
    ("1 < a < 3", "expression_chained_comparison", "comparisons cannot be chained", 7),
    ("(a + b", "expression_unclosed_bracket", "a bracket is not closed", 7),
    ("a b", "expression_missing_operator", "two values follow each other without an operator", 3),
    ("if a then b", "expression_if_without_else", "`if` needs `then` and `else`", 12),
    ("a @ b", "expression_syntax", "unexpected character '@'", 3),
])
def test_common_mistakes(text: str, code: str, message: str, col: int) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse(text)
    err = info.value
    assert (err.code, err.message) == (code, message)
    assert err.location == SourceLocation("<expression>", 1, col)
    assert err.snippet is not None and err.snippet.splitlines()[1].index("^") == 4 + col - 1


def test_location_in_yaml_file_single_line_quoted() -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse('stage = "won"', SourceLocation("acme/lead.yaml", 12, 12), quote_offset=1)
    assert str(info.value.location) == "acme/lead.yaml:12:19"
    assert str(info.value).startswith("acme/lead.yaml:12:19: `=` is not an operator here")


def test_location_in_yaml_file_block_scalar() -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse('stage == "won"\nand budget = 5', SourceLocation("acme/lead.yaml", 7, 9))
    assert info.value.location == SourceLocation("acme/lead.yaml", 8, 9 + 11)


def test_empty_expression() -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse("   ")
    assert info.value.code == "expression_empty"


def test_too_long() -> None:
    with pytest.raises(ExpressionLimitError) as info:
        parse("a" * (MAX_LENGTH + 1))
    assert info.value.code == "expression_too_long"
    assert info.value.location == SourceLocation("<expression>", 1, MAX_LENGTH + 1)


def test_too_deep() -> None:
    with pytest.raises(ExpressionLimitError) as info:
        parse("(" * (MAX_DEPTH + 5) + "a" + " + 1)" * (MAX_DEPTH + 5))
    assert info.value.code == "expression_too_deep"
    with pytest.raises(ExpressionLimitError):
        parse("-" * 200 + "a")


def test_long_and_or_chains_are_flat_not_deep() -> None:
    node = parse(" or ".join(f"a{i}" for i in range(500)))
    assert isinstance(node, ast.BoolOp) and len(node.operands) == 500


TOKENS = st.sampled_from(["a", "b.c", "1", "2.5", '"s"', "'t'", "(", ")", "[", "]", ",", "+", "-", "*", "/", "%",
                          "==", "!=", "<", "<=", ">", ">=", "=", "and", "or", "not", "in", "is", "null", "if",
                          "then", "else", "true", "f(", "$user", ".", "&&", '"', "\\", "\n", " "])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(TOKENS, max_size=25).map(" ".join)))
def test_fuzz_only_expression_errors(text: str) -> None:
    try:
        parse(text)
    except ExpressionError as e:
        assert e.location is not None and e.code
