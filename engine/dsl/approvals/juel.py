"""JUEL (the ``${...}`` expressions Camunda Modeler writes) translated to the expression language.

Only the part of JUEL a gateway condition or an assignee needs is translated, token by token, string
literals left alone: the ``${...}`` / ``#{...}`` wrapper is taken off; ``&&`` -> ``and``, ``||`` ->
``or``, ``!x`` -> ``not x``; the word operators ``eq ne gt lt ge le and or not`` -> ``== != > < >= <=
and or not``; ``empty x`` -> ``x is null``.  Everything else (names, numbers, ``==``, ``!=``,
parentheses, function calls) is already our syntax.  The result is then compiled and type-checked
like any condition: JUEL method calls (``invoice.getAmount()``) or Python (``__import__('os')``) do
not translate into anything the grammar accepts, so they fail with the expression error located at
the element -- nothing here is ever evaluated.
"""

from __future__ import annotations

import re

#: one token: a quoted string, a two-character operator, a word, or any other single character
_TOKEN = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|&&|\|\||==|!=|<=|>=|[A-Za-z_][A-Za-z_0-9]*|\s+|.""")
_WORDS = {"eq": "==", "ne": "!=", "gt": ">", "lt": "<", "ge": ">=", "le": "<="}
_WRAPPED = re.compile(r"^[$#]\{(.*)\}$", re.DOTALL)


def unwrap(text: str) -> tuple[str, bool]:
    """``${body}`` -> (``body``, True); anything else -> (the text stripped, False)."""
    text = text.strip()
    m = _WRAPPED.match(text)
    return (m.group(1).strip(), True) if m else (text, False)


def translate(text: str) -> str:
    """The expression-language form of a JUEL condition (or of plain expression-language text).

    >>> translate("${amount > 1000 && !approved}")
    'amount > 1000 and not approved'
    """
    body, _ = unwrap(text)
    out: list[str] = []
    tokens = _TOKEN.findall(body)
    for i, tok in enumerate(tokens):
        if tok == "&&":
            out.append(" and ")
        elif tok == "||":
            out.append(" or ")
        elif tok == "!":
            out.append("not ")
        elif tok in _WORDS:
            out.append(_WORDS[tok])
        elif tok == "empty" and _next_is_operand(tokens, i):
            out.append("\0empty")
        else:
            out.append(tok)
    return _finish_empty(_squeeze("".join(out)))


def _squeeze(text: str) -> str:
    """Runs of blanks outside string literals -> one space; the ends stripped."""
    return "".join(" " if tok.isspace() else tok for tok in _TOKEN.findall(text)).strip()


def _next_is_operand(tokens: list[str], i: int) -> bool:
    rest = [t for t in tokens[i + 1:] if not t.isspace()]
    return bool(rest) and re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", rest[0]) is not None


def _finish_empty(text: str) -> str:
    """``\\0empty name`` -> ``name is null`` (JUEL's ``empty`` on a single name)."""
    return re.sub(r"\0empty\s+([A-Za-z_][A-Za-z_0-9.]*)", r"\1 is null", text)


def bare_name(text: str) -> str | None:
    """The variable of ``${name}`` / ``name`` (a single identifier), else None."""
    body, _ = unwrap(text)
    return body if re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", body) else None
