"""Text -> frozen AST: the LALR grammar (``grammar.lark``), limits, friendly syntax errors.

Syntax errors are matched against a catalogue of common mistakes (lark's
``match_examples``): ``=`` for ``==``, ``&&``/``||``, ``<>``, an unclosed
quote, a trailing operator, chained comparisons... each with a stable code
and a hint.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from engine.dsl.expressions import ast
from engine.dsl.expressions.diagnostics import ExprSource
from engine.errors import ExpressionError, ExpressionLimitError, ExpressionSyntaxError, SourceLocation

MAX_LENGTH = 4000
MAX_DEPTH = 24

_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
#: Number literals: at most this many digits before the decimal point (records hold at most 18).
MAX_NUMBER_DIGITS = 18


@cache
def lark_parser() -> Lark:
    """The LALR parser, built once from ``grammar.lark``."""
    grammar = resources.files("engine.dsl.expressions").joinpath("grammar.lark").read_text("utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse(text: str, location: SourceLocation | None = None, *, quote_offset: int = 0) -> ast.Node:
    """Parse ``text`` into an unchecked AST.

    Raises ExpressionLimitError (too long / too deep) or ExpressionSyntaxError,
    both located at ``location`` shifted by the position inside ``text``.
    """
    return parse_source(ExprSource(text, location, quote_offset))


def parse_source(src: ExprSource) -> ast.Node:
    """Parse an :class:`ExprSource` (see :func:`parse`)."""
    if not isinstance(src.text, str):
        raise ExpressionSyntaxError(f"an expression must be text, not {type(src.text).__name__}",
                                    location=src.location, code="expression_not_text")
    if len(src.text) > MAX_LENGTH:
        raise src.error(ExpressionLimitError, f"expression is {len(src.text)} characters long; "
                        f"the limit is {MAX_LENGTH}", MAX_LENGTH, code="expression_too_long",
                        hint="split it, or move part of it into a formula field")
    if not src.text.strip():
        raise src.error(ExpressionSyntaxError, "the expression is empty", 0, code="expression_empty",
                        hint="write a condition such as: stage == \"won\"")
    try:
        tree = lark_parser().parse(src.text)
    except UnexpectedInput as e:
        raise _syntax_error(src, e) from None
    _check_depth(src, tree)
    try:
        return _Builder(src).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, ExpressionError):
            raise e.orig_exc from None
        raise


# --------------------------------------------------------------------------- limits


def _check_depth(src: ExprSource, tree: Tree) -> None:
    """Reject trees nested deeper than MAX_DEPTH (``and``/``or`` chains count once)."""
    stack: list[tuple[Any, int, str | None]] = [(tree, 1, None)]
    while stack:
        node, depth, parent = stack.pop()
        if not isinstance(node, Tree):
            continue
        data = str(node.data)
        if data in ("and_", "or_") and data == parent:
            depth -= 1
        if depth > MAX_DEPTH:
            offset = node.meta.start_pos if not node.meta.empty else 0
            raise src.error(ExpressionLimitError, f"expression is nested more than {MAX_DEPTH} levels deep",
                            offset, code="expression_too_deep",
                            hint="split it into simpler rules or formula fields; use `in [...]` for long "
                                 "lists of alternatives")
        stack.extend((child, depth + 1, data) for child in node.children)


# --------------------------------------------------------------------------- syntax errors

#: label -> (code, message, hint, examples)
CATALOGUE: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "single_equals": (
        "expression_single_equals", "`=` is not an operator here", "use `==` to compare: stage == \"won\"",
        ("a = 1", "a = b", "a == 1 and b = 2", "a.b = 1", "f(a) = 1", "(a = 1)", "a + 1 = 2", "$user = a"),
    ),
    "c_logic": (
        "expression_symbolic_logic", "`&&`, `||` and `!` are not operators here",
        "write `and`, `or` and `not`: a > 1 and b < 2",
        ("a && b", "a || b", "a > 1 && b", "a > 1 || b", "!a", "a and !b", "f(a) && b", "a & b", "a | b"),
    ),
    "not_equal": (
        "expression_not_equal_operator", "`<>` is not an operator here", "use `!=`: stage != \"lost\"",
        ("a <> b", "a <> 1", "f(a) <> 1", "a.b <> 1"),
    ),
    "unclosed_string": (
        "expression_unclosed_string", "unclosed string: a quote is missing",
        "close the text with the same quote it opens with: \"like this\" or 'like this'",
        ('a == "abc', "a == 'abc", 'f("abc', "f('abc", '"abc', "'abc", 'a in ["x', "a in ['x"),
    ),
    "trailing_operator": (
        "expression_incomplete", "the expression ends too early: something is missing at the end",
        "complete the expression, or remove the trailing operator",
        ("a +", "a -", "a *", "a /", "a %", "a ==", "a !=", "a <", "a <=", "a >", "a >=", "a and", "a or",
         "not", "a in", "a not in", "a is", "a is not", "-", "if a then b else",
         "a == 1 and", "a == 1 or", "a.", "f(a,"),
    ),
    "unclosed_paren": (
        "expression_unclosed_bracket", "a bracket is not closed", "add the missing `)` or `]`",
        ("(a", "(a + b", "f(a", "f(a, b", "[1, 2", "a in [1, 2", "((a)", "(a == 1"),
    ),
    "unopened_paren": (
        "expression_unmatched_bracket", "a closing bracket has no opening one", "remove it, or add the `(`",
        ("a)", "a + b)", "f(a))", "a]", "(a))"),
    ),
    "chained_comparison": (
        "expression_chained_comparison", "comparisons cannot be chained",
        "combine two comparisons with `and`: 1 < a and a < 10",
        ("a < b < c", "a == b == c", "1 < a <= 2", "a > b > c", "a != b != c", "a == b != c"),
    ),
    "if_without_else": (
        "expression_if_without_else", "`if` needs `then` and `else`", "write: if cond then a else b",
        ("if a b", "if a then b c", "if a else b", "if a > 1 then 2", "if a", "if a then b"),
    ),
    "missing_operator": (
        "expression_missing_operator", "two values follow each other without an operator",
        "add an operator between them (`and`, `==`, `+`...) or a comma in a list",
        ("a b", "1 2", "a 1", "\"a\" b", "a \"b\"", "f(a) b", "[1 2]", "f(a b)", "a.b c", "a not b"),
    ),
    "dangling_dot": (
        "expression_bad_name", "a name cannot start or end with a dot", "write field or reference.field",
        ("a..b", ".a", "a.1", "1.a"),
    ),
}


#: labels recognised from the unexpected character alone (lexer errors)
_CHAR_LABELS = frozenset({"single_equals", "c_logic", "unclosed_string"})


@cache
def _example_table() -> dict[tuple[Any, str], str]:
    """(parser state, unexpected token type) -> label, from the catalogue's examples.

    The same idea as lark's ``UnexpectedInput.match_examples``, but matching
    only on the exact state *and* token type, so a stray token never borrows
    the message of a different mistake.
    """
    table: dict[tuple[Any, str], str] = {}
    for label, (_, _, _, examples) in CATALOGUE.items():
        if label in _CHAR_LABELS or label == "if_without_else":
            continue
        for example in examples:
            try:
                lark_parser().parse(example)
            except UnexpectedToken as e:
                table.setdefault((e.state.position, e.token.type), label)
            except UnexpectedInput:
                continue
    return table


def _syntax_error(src: ExprSource, e: UnexpectedInput) -> ExpressionSyntaxError:
    offset = _error_offset(src, e)
    label = _classify(src.text, offset, e)
    if label is not None:
        code, message, hint, _ = CATALOGUE[label]
        return src.error(ExpressionSyntaxError, message, offset, code=code, hint=hint)
    return src.error(ExpressionSyntaxError, _generic_message(src, e, offset), offset,
                     code="expression_syntax", hint=_expected_hint(e))


def _classify(text: str, offset: int, e: UnexpectedInput) -> str | None:
    if isinstance(e, UnexpectedCharacters):
        return _classify_chars(text, offset)
    if isinstance(e, UnexpectedToken):
        if _IF_WORD.search(text) and not (_THEN_WORD.search(text) and _ELSE_WORD.search(text)):
            return "if_without_else"  # the parser state alone cannot tell `if a b` from `a b`
        label = _example_table().get((e.state.position, e.token.type))
        if label is not None:
            return label
        if e.token.type == "$END":
            return "unclosed_paren" if _open_brackets(text) else "trailing_operator"
    return None


_IF_WORD = re.compile(r"\bif\b")
_THEN_WORD = re.compile(r"\bthen\b")
_ELSE_WORD = re.compile(r"\belse\b")


def _open_brackets(text: str) -> bool:
    """True when more brackets open than close (strings are not parsed: a good guess)."""
    return text.count("(") + text.count("[") > text.count(")") + text.count("]")


def _classify_chars(text: str, offset: int) -> str | None:
    """Mistakes visible from the unexpected character alone."""
    char = text[offset : offset + 1]
    if char == "=":
        return "single_equals"
    if char in ("&", "|", "!"):
        return "c_logic"
    if char in ("'", '"'):
        return "unclosed_string"
    return None


def _error_offset(src: ExprSource, e: UnexpectedInput) -> int:
    if isinstance(e, UnexpectedToken) and (e.token.type == "$END" or e.token.start_pos is None):
        return len(src.text.rstrip())
    if isinstance(e, UnexpectedEOF):
        return len(src.text.rstrip())
    pos = getattr(e, "pos_in_stream", None)
    return pos if isinstance(pos, int) and pos >= 0 else len(src.text)


def _generic_message(src: ExprSource, e: UnexpectedInput, offset: int) -> str:
    if isinstance(e, UnexpectedCharacters):
        return f"unexpected character {src.text[offset:offset + 1]!r}"
    if isinstance(e, UnexpectedToken) and e.token.type != "$END":
        return f"unexpected {e.token.value!r}"
    return "the expression ends too early"


def _expected_hint(e: UnexpectedInput) -> str | None:
    expected = getattr(e, "expected", None) or getattr(e, "allowed", None)
    if not expected:
        return None
    names = sorted(_TERMINAL_NAMES.get(t, t.lower()) for t in expected if not t.startswith("__"))
    return ("expected one of: " + ", ".join(dict.fromkeys(names))) if names else None


_TERMINAL_NAMES = {
    "NAME": "a field or function name", "INT": "a number", "DECIMAL": "a number", "STRING": "a string",
    "VAR": "$user/$today/$now", "LPAR": "(", "RPAR": ")", "LSQB": "[", "RSQB": "]", "COMMA": ",",
    "PLUS": "+", "MINUS": "-", "STAR": "*", "SLASH": "/", "PERCENT": "%", "EQUAL": "==", "NOTEQUAL": "!=",
    "LESSTHAN": "<", "MORETHAN": ">", "LESSEQUAL": "<=", "MOREEQUAL": ">=", "DOT": ".", "$END": "end of text",
}


# --------------------------------------------------------------------------- tree -> AST


def decode_string(src: ExprSource, token: Token) -> str:
    """The value of a quoted string token, escapes decoded (never via eval)."""
    body = str(token)[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1 : i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "u" and _is_hex(body[i + 2 : i + 6]):
            code, i = _code_point(src, token, body, i)
            out.append(chr(code))
        else:
            raise src.error(ExpressionSyntaxError, f"unknown escape \\{nxt} in a string",
                            (token.start_pos or 0) + 1 + i, code="expression_bad_escape",
                            hint="escapes are \\\\ \\\" \\' \\n \\t \\r and \\uXXXX")
    text = "".join(out)
    if "\x00" in text:
        raise src.error(ExpressionSyntaxError, "a string may not contain the NUL character",
                        token.start_pos or 0, code="expression_bad_escape",
                        hint="text fields never hold NUL, so nothing could match it; remove it")
    return text


def _code_point(src: ExprSource, token: Token, body: str, i: int) -> tuple[int, int]:
    """The character of the ``\\uXXXX`` escape at ``body[i]`` (a surrogate pair joined); and where
    the string continues.  A surrogate without its other half is not text: refused."""
    code = int(body[i + 2 : i + 6], 16)
    if 0xD800 <= code <= 0xDBFF and body[i + 6 : i + 8] == "\\u" and _is_hex(body[i + 8 : i + 12]):
        low = int(body[i + 8 : i + 12], 16)
        if 0xDC00 <= low <= 0xDFFF:
            return 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), i + 12
    if 0xD800 <= code <= 0xDFFF:
        raise src.error(ExpressionSyntaxError, f"\\u{code:04x} is half of a UTF-16 surrogate pair",
                        (token.start_pos or 0) + 1 + i, code="expression_bad_escape",
                        hint="write the character itself, or both halves of the pair (\\ud83d\\ude00)")
    return code, i + 6


def _is_hex(text: str) -> bool:
    return len(text) == 4 and all(c in "0123456789abcdefABCDEF" for c in text)


def _pos(meta: Any) -> ast.Pos:
    return ast.Pos(meta.line, meta.column, meta.start_pos, meta.end_pos)


def _tok_pos(tok: Token) -> ast.Pos:
    return ast.Pos(tok.line or 1, tok.column or 1, tok.start_pos or 0, tok.end_pos or 0)


_BINARY = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
           "add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}


@v_args(meta=True)
class _Builder(Transformer_NonRecursive):
    """Builds :mod:`ast` nodes from the lark tree (non-recursive: deep chains are fine)."""

    def __init__(self, src: ExprSource) -> None:
        super().__init__()
        self.src = src

    def int_lit(self, meta: Any, c: list[Token]) -> ast.Node:
        self._check_size(c[0])
        return ast.Literal(int(c[0]), _pos(meta))

    def dec_lit(self, meta: Any, c: list[Token]) -> ast.Node:
        self._check_size(c[0])
        return ast.Literal(Decimal(str(c[0])), _pos(meta))

    def _check_size(self, token: Token) -> None:
        whole = str(token).split(".")[0].lstrip("0")
        if len(whole) > MAX_NUMBER_DIGITS or len(token) > 2 * MAX_NUMBER_DIGITS + 1:
            raise self.src.error(ExpressionLimitError, f"number too large: {str(token)[:24]}"
                                 f"{'...' if len(token) > 24 else ''}", token.start_pos or 0,
                                 code="expression_number_too_large",
                                 hint=f"numbers have at most {MAX_NUMBER_DIGITS} digits before the decimal point "
                                      f"and {MAX_NUMBER_DIGITS} after it")

    def str_lit(self, meta: Any, c: list[Token]) -> ast.Node:
        return ast.Literal(decode_string(self.src, c[0]), _pos(meta))

    def true_lit(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Literal(True, _pos(meta))

    def false_lit(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Literal(False, _pos(meta))

    def null_lit(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Literal(None, _pos(meta))

    def list_lit(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.ListLit(tuple(x for x in c if x is not None), _pos(meta))

    def name(self, meta: Any, c: list[Token]) -> ast.Node:
        return ast.Name(tuple(str(t) for t in c), _pos(meta))

    def var(self, meta: Any, c: list[Token]) -> ast.Node:
        return ast.Var(str(c[0])[1:], _pos(meta))

    def call(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Call(str(c[0]), tuple(x for x in c[1:] if x is not None), _pos(meta))

    def neg(self, meta: Any, c: list[ast.Node]) -> ast.Node:
        operand = c[0]
        if isinstance(operand, ast.Literal) and type(operand.value) in (int, Decimal):
            return ast.Literal(-operand.value, _pos(meta))  # type: ignore[operator]  # a negative literal
        return ast.Unary("neg", operand, _pos(meta))

    def not_(self, meta: Any, c: list[ast.Node]) -> ast.Node:
        return ast.Unary("not", c[0], _pos(meta))

    def and_(self, meta: Any, c: list[ast.Node]) -> ast.Node:
        return _bool_op("and", c, _pos(meta))

    def or_(self, meta: Any, c: list[ast.Node]) -> ast.Node:
        return _bool_op("or", c, _pos(meta))

    def in_(self, meta: Any, c: list[ast.Node]) -> ast.Node:
        return ast.In(c[0], c[1], False, _pos(meta))

    def not_in(self, meta: Any, c: list[ast.Node]) -> ast.Node:
        return ast.In(c[0], c[1], True, _pos(meta))

    def is_null(self, meta: Any, c: list[ast.Node]) -> ast.Node:
        return ast.IsNull(c[0], False, _pos(meta))

    def is_not_null(self, meta: Any, c: list[ast.Node]) -> ast.Node:
        return ast.IsNull(c[0], True, _pos(meta))

    def if_expr(self, meta: Any, c: list[ast.Node]) -> ast.Node:
        return ast.If(c[0], c[1], c[2], _pos(meta))

    def __default__(self, data: Any, children: list[Any], meta: Any) -> Any:
        op = _BINARY.get(str(data))
        if op is None:  # pragma: no cover - every rule of the grammar is handled
            raise ExpressionSyntaxError(f"internal: unhandled grammar rule {data!r}")
        return ast.Binary(op, children[0], children[1], _pos(meta))


def _bool_op(op: str, children: list[ast.Node], pos: ast.Pos) -> ast.Node:
    operands: list[ast.Node] = []
    for child in children:
        if isinstance(child, ast.BoolOp) and child.op == op:
            operands.extend(child.operands)
        else:
            operands.append(child)
    return ast.BoolOp(op, tuple(operands), pos)
