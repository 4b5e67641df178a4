"""Frozen AST nodes of the expression language, and the types the checker gives them.

The parser builds nodes with ``type=None``; :func:`engine.dsl.expressions.checker.check`
returns a new tree whose every node carries its :class:`ExprType` (and whose
names carry a :class:`Binding` saying where their value comes from).  Both back
ends (Python source, SQL clauses) only ever read *checked* trees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal as TLiteral

#: The kinds of value an expression can produce.
KINDS = ("number", "string", "boolean", "date", "datetime", "picklist", "list", "reference", "null")


@dataclass(frozen=True, slots=True)
class Pos:
    """Where a node starts inside the expression text (1-based line/column, 0-based offset)."""

    line: int
    column: int
    offset: int
    end_offset: int


@dataclass(frozen=True, slots=True)
class ExprType:
    """The static type of a node.

    ``integral`` is set on numbers known to be whole (integer fields, ``len``,
    ``+ - * %`` of whole numbers...): the back ends skip decimal rounding for
    them.  ``options`` are the allowed keys of a picklist / multi-picklist.
    ``label`` names the field it came from, for messages.  ``currency`` is set
    on money values: where their currency comes from -- the dotted name of the
    money field (``amount``, ``account.annual_revenue``, ``old.amount``) or
    ``=CNY`` for a value already converted to a fixed currency; two money
    values from different sources may not be added or compared.
    """

    kind: str
    integral: bool = False
    options: tuple[str, ...] | None = None
    label: str | None = None
    currency: str | None = None

    def __str__(self) -> str:
        return "whole number" if self.kind == "number" and self.integral else self.kind

    @property
    def is_stringy(self) -> bool:
        """Strings and picklist values compare and combine alike."""
        return self.kind in ("string", "picklist")


NUMBER = ExprType("number")
INTEGER = ExprType("number", integral=True)
STRING = ExprType("string")
BOOLEAN = ExprType("boolean")
DATE = ExprType("date")
DATETIME = ExprType("datetime")
REFERENCE = ExprType("reference", integral=True)
LIST = ExprType("list")
NULL = ExprType("null")


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a name's value comes from, resolved by the checker.

    ``scope`` is ``record`` (the record itself), ``old`` (its previous
    version, update rules only), ``hop`` (a field of the record that the
    reference field ``via`` points to, in entity ``entity``) or ``user`` (an
    attribute ``field`` of the user that ``via`` -- ``owner_id``,
    ``created_by``, ``updated_by`` or a user field -- points to; ``entity``
    is then ``user``).
    ``field_type`` is the declared field type (``money``, ``picklist``...) or
    ``standard`` for the columns every table has (``id``, ``created_at``...).
    """

    scope: TLiteral["record", "old", "hop", "user"]
    entity: str
    field: str
    field_type: str
    via: str | None = None


class Node:
    """Base of every AST node (each subclass is a frozen dataclass)."""

    __slots__ = ()
    pos: Pos
    type: ExprType | None

    def children(self) -> Iterator[Node]:
        """The direct sub-expressions, in source order."""
        return iter(())


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """A number (int or Decimal), string, boolean or null."""

    value: int | Decimal | str | bool | None
    pos: Pos
    type: ExprType | None = None


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    """``[a, b, c]``: only valid on the right of ``in`` / ``not in``."""

    items: tuple[Node, ...]
    pos: Pos
    type: ExprType | None = None

    def children(self) -> Iterator[Node]:
        return iter(self.items)


@dataclass(frozen=True, slots=True)
class Name(Node):
    """A field (``budget``), a hop (``account.industry``) or ``old.stage``."""

    parts: tuple[str, ...]
    pos: Pos
    type: ExprType | None = None
    binding: Binding | None = None

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class Var(Node):
    """``$user``, ``$today`` or ``$now`` (``name`` without the ``$``)."""

    name: str
    pos: Pos
    type: ExprType | None = None


@dataclass(frozen=True, slots=True)
class Unary(Node):
    """``not x`` (op ``not``) or ``-x`` (op ``neg``)."""

    op: str
    operand: Node
    pos: Pos
    type: ExprType | None = None

    def children(self) -> Iterator[Node]:
        yield self.operand


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """Arithmetic (``+ - * / %``) or comparison (``== != < <= > >=``)."""

    op: str
    left: Node
    right: Node
    pos: Pos
    type: ExprType | None = None

    def children(self) -> Iterator[Node]:
        yield self.left
        yield self.right


@dataclass(frozen=True, slots=True)
class BoolOp(Node):
    """``a and b and c`` / ``a or b or c`` (chains are flattened)."""

    op: str
    operands: tuple[Node, ...]
    pos: Pos
    type: ExprType | None = None

    def children(self) -> Iterator[Node]:
        return iter(self.operands)


@dataclass(frozen=True, slots=True)
class In(Node):
    """``needle in haystack`` (``negated`` for ``not in``)."""

    needle: Node
    haystack: Node
    negated: bool
    pos: Pos
    type: ExprType | None = None

    def children(self) -> Iterator[Node]:
        yield self.needle
        yield self.haystack


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    """``x is null`` (``negated`` for ``is not null``)."""

    operand: Node
    negated: bool
    pos: Pos
    type: ExprType | None = None

    def children(self) -> Iterator[Node]:
        yield self.operand


@dataclass(frozen=True, slots=True)
class If(Node):
    """``if cond then a else b``."""

    cond: Node
    then: Node
    else_: Node
    pos: Pos
    type: ExprType | None = None

    def children(self) -> Iterator[Node]:
        yield self.cond
        yield self.then
        yield self.else_


@dataclass(frozen=True, slots=True)
class Call(Node):
    """``name(arg, ...)``: a function of the registry."""

    name: str
    args: tuple[Node, ...]
    pos: Pos
    type: ExprType | None = None

    def children(self) -> Iterator[Node]:
        return iter(self.args)


COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
ARITHMETIC = frozenset({"+", "-", "*", "/", "%"})


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children (iterative)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(current.children())))
