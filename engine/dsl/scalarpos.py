"""Where each character of a YAML scalar's value was written.

A value such as an expression is reported at a position *inside* it (an
offset into the string YAML produced).  For a one-line plain scalar that is
simply the value's column plus the offset, but YAML rewrites the other
styles on the way in: literal blocks (``|``, ``|-``, ``|+``, ``|2``) drop
the indentation of every line, folded blocks (``>``, ``>-``) also join lines
with a space, quoted scalars replace escapes (``\\"``, ``''``, ``\\u00e9``) and
line continuations, and multi-line plain scalars fold like quoted ones.

:class:`ScalarText` re-reads the scalar's source text with YAML's own rules
(as libyaml / PyYAML scan it) and pairs every produced character with the
index it came from.  It is computed on demand -- only when an error is
reported -- and checked against the value the YAML parser produced: if the
two ever disagree (a construct this reader does not know), it answers
``None`` and the caller keeps its approximate position.
"""

from __future__ import annotations

from collections.abc import Iterator

BREAKS = "\r\n\x85\u2028\u2029"
BLANKS = " \t"
ESCAPES = {
    "0": "\0", "a": "\x07", "b": "\x08", "t": "\t", "\t": "\t", "n": "\n", "v": "\x0b", "f": "\x0c",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "'": "'", "\\": "\\", "N": "\x85", "_": "\xa0",
    "L": "\u2028", "P": "\u2029",
}
HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}

#: (character of the value, index in the source text it comes from)
Chars = list[tuple[str, int]]


class ScalarText:
    """One scalar node's source: the file text, where the node starts and ends, its style.

    Immutable; every question re-reads the (short) scalar text.
    """

    __slots__ = ("col", "end", "line", "source", "start", "style")

    def __init__(self, source: str, start: int, end: int, line: int, col: int, style: str | None) -> None:
        self.source = source
        self.start = start
        self.end = end
        self.line = line  # 1-based line and column of ``start``
        self.col = col
        self.style = style

    def position(self, value: str, offset: int) -> tuple[int, int] | None:
        """File (line, col), 1-based, of character ``offset`` of ``value`` (``len(value)``: just after it).

        None when ``value`` is not what this scalar reads as (so no exact answer).
        """
        chars = self.chars(value)
        if chars is None:
            return None
        if not chars:
            return self.line, self.col
        if offset < len(chars):
            return self.line_col(chars[offset][1])
        last = next((i for ch, i in reversed(chars) if ch not in BREAKS), chars[-1][1])
        line, col = self.line_col(last)
        return line, col + 1

    def chars(self, value: str) -> Chars | None:
        """The value's characters with their source indexes, or None if they do not spell ``value``."""
        for chars in self._readings():
            if "".join(ch for ch, _ in chars) == value:
                return chars
        return None

    def line_text(self, line: int) -> str | None:
        """The text of file line ``line`` (1-based) at or after the scalar's first line."""
        if line < self.line:
            return None
        i = self.start - (self.col - 1)
        for _ in range(line - self.line):
            j = _next_break(self.source, i)
            if j >= len(self.source):
                return None
            i = j + (2 if self.source.startswith("\r\n", j) else 1)
        return self.source[i:_next_break(self.source, i)]

    def line_col(self, index: int) -> tuple[int, int]:
        """File (line, col) of source ``index`` (counting line breaks as YAML does)."""
        line, col, i = self.line, self.col, self.start
        src = self.source
        while i < index:
            if src[i] in BREAKS:
                i += 2 if src.startswith("\r\n", i) else 1
                line, col = line + 1, 1
            else:
                i, col = i + 1, col + 1
        return line, col

    def _readings(self) -> Iterator[Chars]:
        src, end = self.source, self.end
        i = _skip_properties(src, self.start, end)
        if i >= end:
            return
        ch = src[i]
        if self.style == '"' and ch == '"':
            yield _double(src, i + 1, end)
        elif self.style == "'" and ch == "'":
            yield _single(src, i + 1, end)
        elif self.style in ("|", ">") and ch == self.style:
            yield from _block(src, i, end, folded=ch == ">")
        elif self.style in (None, ""):
            yield _plain(src, i, end)


def _next_break(src: str, i: int) -> int:
    while i < len(src) and src[i] not in BREAKS:
        i += 1
    return i


def _skip_properties(src: str, i: int, end: int) -> int:
    """Past an anchor (``&a``) and a tag (``!!str``) written before the scalar."""
    while i < end and src[i] in "&!":
        while i < end and src[i] not in BLANKS + BREAKS:
            i += 1
        while i < end and src[i] in BLANKS + BREAKS:
            i += 1
    return i


def _line_break(src: str, i: int) -> tuple[str, int]:
    """The normalised line break at ``i`` and the index after it ("" if none)."""
    if src.startswith("\r\n", i):
        return "\n", i + 2
    if i < len(src) and src[i] in "\r\n\x85":
        return "\n", i + 1
    if i < len(src) and src[i] in "\u2028\u2029":
        return src[i], i + 1
    return "", i


def _flow_spaces(src: str, i: int, end: int, out: Chars) -> int:
    """Blanks and line breaks inside a plain or quoted scalar, folded as YAML folds them."""
    j = i
    while j < end and src[j] in BLANKS:
        j += 1
    if j >= end or src[j] not in BREAKS:
        out.extend((src[k], k) for k in range(i, j))
        return j
    first_at = j
    first, j = _line_break(src, j)
    breaks, j = _flow_breaks(src, j, end)
    if first != "\n":
        out.append((first, first_at))
    elif not breaks:
        out.append((" ", first_at))
    out.extend(breaks)
    return j


def _flow_breaks(src: str, i: int, end: int) -> tuple[Chars, int]:
    """Empty lines (each one line break) and the indentation after them."""
    breaks: Chars = []
    while True:
        while i < end and src[i] in BLANKS:
            i += 1
        if i < end and src[i] in BREAKS:
            at = i
            ch, i = _line_break(src, i)
            breaks.append((ch, at))
        else:
            return breaks, i


def _plain(src: str, i: int, end: int) -> Chars:
    out: Chars = []
    while i < end:
        if src[i] in BLANKS + BREAKS:
            i = _flow_spaces(src, i, end, out)
        else:
            out.append((src[i], i))
            i += 1
    return out


def _single(src: str, i: int, end: int) -> Chars:
    out: Chars = []
    while i < end:
        ch = src[i]
        if ch == "'" and src.startswith("''", i):
            out.append(("'", i))
            i += 2
        elif ch == "'":
            break
        elif ch in BLANKS + BREAKS:
            i = _flow_spaces(src, i, end, out)
        else:
            out.append((ch, i))
            i += 1
    return out


def _double(src: str, i: int, end: int) -> Chars:
    out: Chars = []
    while i < end:
        ch = src[i]
        if ch == '"':
            break
        if ch == "\\" and i + 1 < end:
            i = _escape(src, i, end, out)
        elif ch in BLANKS + BREAKS:
            i = _flow_spaces(src, i, end, out)
        else:
            out.append((ch, i))
            i += 1
    return out


def _escape(src: str, i: int, end: int, out: Chars) -> int:
    """One backslash escape at ``i`` (a character, a code point, or a line continuation)."""
    nxt = src[i + 1]
    if nxt in ESCAPES:
        out.append((ESCAPES[nxt], i))
        return i + 2
    if nxt in HEX_ESCAPES:
        digits = src[i + 2 : i + 2 + HEX_ESCAPES[nxt]]
        try:
            out.append((chr(int(digits, 16)), i))
        except ValueError:
            out.append(("\\", i))  # not what YAML accepts; the reading will not match the value
            return i + 1
        return i + 2 + len(digits)
    if nxt in BREAKS:
        _, j = _line_break(src, i + 1)
        breaks, j = _flow_breaks(src, j, end)
        out.extend(breaks)
        return j
    out.append(("\\", i))
    return i + 1


# --------------------------------------------------------------------------- block scalars


def _block(src: str, i: int, end: int, *, folded: bool) -> Iterator[Chars]:
    """Readings of a ``|`` / ``>`` block for each content indentation it could have.

    Without an indentation indicator the indentation is that of the first
    non-empty line (tried first); with one it is relative to the parent node's
    indentation, which the scalar alone does not tell: each candidate is tried
    and the caller keeps the one that spells the value.
    """
    i += 1
    chomp: bool | None = None
    increment: int | None = None
    while i < end and src[i] in "+-0123456789":
        if src[i] in "+-":
            chomp = src[i] == "+"
        else:
            increment = int(src[i])
        i += 1
    i = _next_break(src, i)
    _, i = _line_break(src, i)
    if increment is None:
        guess = _first_indent(src, i, end)
        candidates = [guess, *(n for n in range(1, guess + 1) if n != guess)]
    else:
        candidates = [increment + p for p in range(0, _max_indent(src, i, end) + 1)]
    for indent in candidates:
        yield _block_content(src, i, end, max(indent, 1), folded=folded, chomp=chomp)


def _first_indent(src: str, i: int, end: int) -> int:
    best = 0
    col = 0
    while i < end and src[i] in " " + BREAKS:
        if src[i] == " ":
            col += 1
            best = max(best, col)
            i += 1
        else:
            _, i = _line_break(src, i)
            col = 0
    return best


def _max_indent(src: str, i: int, end: int) -> int:
    best, col, lead = 0, 0, True
    while i < end:
        if src[i] in BREAKS:
            _, i = _line_break(src, i)
            col, lead = 0, True
            continue
        if src[i] == " " and lead:
            col += 1
            best = max(best, col)
        else:
            lead = False
        i += 1
    return best


def _block_content(src: str, i: int, end: int, indent: int, *, folded: bool, chomp: bool | None) -> Chars:
    out: Chars = []
    breaks, i, col = _block_breaks(src, i, end, indent)
    line_break, break_at = "", i
    while col == indent and i < end:
        out.extend(breaks)
        leading_non_space = src[i] not in BLANKS
        while i < end and src[i] not in BREAKS:
            out.append((src[i], i))
            i += 1
        break_at = i
        line_break, i = _line_break(src, i)
        breaks, i, col = _block_breaks(src, i, end, indent)
        if not (col == indent and i < end):
            break
        if folded and line_break == "\n" and leading_non_space and src[i] not in BLANKS:
            if not breaks:
                out.append((" ", break_at))
        else:
            out.append((line_break, break_at))
    if chomp is not False and line_break:
        out.append((line_break, break_at))
    if chomp is True:
        out.extend(breaks)
    return out


def _block_breaks(src: str, i: int, end: int, indent: int) -> tuple[Chars, int, int]:
    """Skip up to ``indent`` spaces, then every empty line; returns (breaks, index, column)."""
    breaks: Chars = []
    col = 0
    while col < indent and i < end and src[i] == " ":
        i, col = i + 1, col + 1
    while i < end and src[i] in BREAKS:
        at = i
        ch, i = _line_break(src, i)
        breaks.append((ch, at))
        col = 0
        while col < indent and i < end and src[i] == " ":
            i, col = i + 1, col + 1
    return breaks, i, col
