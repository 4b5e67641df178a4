"""Located, friendly expression errors: position in the expression *and* in the YAML file.

An expression usually sits in a YAML value; the loader knows where that value
starts (a :class:`SourceLocation`).  A position inside the expression (an
offset) becomes a file position like this:

* when the YAML reader recorded how the value was written (quoted, literal
  ``|``, folded ``>`` and multi-line plain scalars: ``SourceLocation.positions``,
  see :mod:`engine.dsl.scalarpos`), the offset maps to the exact character in
  the file -- through escapes, ``''``, line continuations, stripped
  indentation and folded line breaks -- and the snippet shows the file line;
* otherwise (a one-line plain value, or a location made by hand) line =
  ``location.line + (line inside the expression - 1)`` and col =
  ``location.col + quote_offset + (column - 1)`` on the first line
  (``location.col + (column - 1)`` on later ones).

Without a location, errors point into ``<expression>`` at the position inside
the expression itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from engine.errors import ExpressionError, SourceLocation

E = TypeVar("E", bound=ExpressionError)

EXPRESSION_FILE = "<expression>"
#: characters of the expression line shown around the caret
SNIPPET_WIDTH = 72


@dataclass(frozen=True, slots=True)
class ExprSource:
    """The text of an expression and where it starts in its configuration file."""

    text: str
    location: SourceLocation | None = None
    quote_offset: int = 0

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based line and column inside the expression of ``offset``."""
        offset = max(0, min(offset, len(self.text)))
        before = self.text[:offset]
        line = before.count("\n") + 1
        col = offset - (before.rfind("\n") + 1) + 1
        return line, col

    def locate(self, offset: int) -> SourceLocation:
        """The file position of ``offset`` (see the module docstring)."""
        line, col = self.line_col(offset)
        loc = self.location
        if loc is None:
            return SourceLocation(EXPRESSION_FILE, line, col)
        exact = loc.inside(self.text, offset)
        if exact is not None:
            return exact
        if line == 1:
            return SourceLocation(loc.file, loc.line, loc.col + self.quote_offset + col - 1)
        return SourceLocation(loc.file, loc.line + line - 1, loc.col + col - 1)

    def snippet(self, offset: int, end: int | None = None) -> str:
        """The line holding ``offset`` with carets under ``offset..end``: the file's line when the
        value's positions are known, else the expression's line."""
        file_snippet = self._file_snippet(offset, end)
        if file_snippet is not None:
            return file_snippet
        line_no, col = self.line_col(offset)
        line = self.text.split("\n")[line_no - 1]
        width = max(1, end - offset) if end is not None and end > offset else 1
        return caret_line(line, col, width)

    def _file_snippet(self, offset: int, end: int | None) -> str | None:
        loc = self.location
        at = loc.inside(self.text, offset) if loc is not None else None
        if loc is None or loc.positions is None or at is None:
            return None
        line = loc.positions.line_text(at.line)
        if line is None:
            return None
        width = 1
        last = loc.inside(self.text, end - 1) if end is not None and end > offset else None
        if last is not None and last.line == at.line:
            width = last.col - at.col + 1
        return caret_line(line, at.col, width)

    def error(
        self,
        cls: type[E],
        message: str,
        offset: int,
        *,
        end: int | None = None,
        code: str | None = None,
        hint: str | None = None,
    ) -> E:
        """An error of class ``cls`` located at ``offset`` (with a caret snippet)."""
        line, col = self.line_col(offset)
        details = {"expression": self.text, "offset": offset, "line": line, "column": col}
        return cls(
            message,
            code=code,
            location=self.locate(offset),
            hint=hint,
            snippet=self.snippet(offset, end),
            details=details,
        )


def caret_line(line: str, col: int, width: int = 1) -> str:
    """``line`` (cut to :data:`SNIPPET_WIDTH` around ``col``) and ``width`` carets under column ``col``."""
    width = max(1, min(width, len(line) - col + 1, SNIPPET_WIDTH // 2))
    start = max(0, col - 1 - SNIPPET_WIDTH // 2)
    shown = line[start : start + SNIPPET_WIDTH]
    prefix = "..." if start else ""
    suffix = "..." if start + SNIPPET_WIDTH < len(line) else ""
    pad = " " * (len(prefix) + col - 1 - start)
    return f"    {prefix}{shown}{suffix}\n    {pad}{'^' * width}"


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``word`` (difflib), or None."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def suggestion(word: str, candidates: Iterable[str], prefix: str = "") -> str | None:
    """A "did you mean ...?" hint, or None when nothing is close."""
    best = did_you_mean(word, candidates)
    return f"did you mean '{prefix}{best}'?" if best else None
