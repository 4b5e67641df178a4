"""Warn when an entity's filled row could exceed PostgreSQL's row size limit.

A PostgreSQL row must fit in one 8 KB page after TOAST; every value moved
out of line still leaves an ~18-byte pointer, and a table holds at most
1,600 columns.  Measured here: about 450 filled variable-length columns is
the practical ceiling (700 text columns of 100 characters fail).  Fields
beyond that belong in the JSON column (``storage: json``).
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.dsl.model import Entity

PAGE_LIMIT = 8160
TOAST_POINTER = 18
FIXED_WIDTH = {"integer": 8, "boolean": 1, "date": 4, "datetime": 8, "reference": 8, "user": 8,
               "decimal": 12, "money": 16, "percent": 12}
STANDARD_ROW_BYTES = 8 * 7 + 4 + 24  # standard columns + tuple header
MAX_COLUMNS = 1600
SAFE_VARLEN = 400


def estimate(entity: Entity) -> tuple[int, int, int]:
    """(worst-case bytes after TOAST, variable-length column count, column count)."""
    size = STANDARD_ROW_BYTES
    varlen = columns = 0
    for field in entity.fields.values():
        if not field.stored or field.storage != "column":
            continue
        columns += 2 if field.type == "money" else 1
        if field.type in FIXED_WIDTH:
            size += FIXED_WIDTH[field.type]
        else:
            varlen += 1
            size += TOAST_POINTER
    return size, varlen, columns


def row_size_warnings(entities: Iterable[Entity]) -> list[str]:
    """One warning per entity whose filled row may not fit, with the fix."""
    out = []
    for entity in entities:
        size, varlen, columns = estimate(entity)
        if size <= PAGE_LIMIT and varlen <= SAFE_VARLEN and columns < MAX_COLUMNS:
            continue
        candidates = [f.name for f in entity.fields.values()
                      if f.stored and f.storage == "column" and not f.index and not f.unique
                      and f.type not in FIXED_WIDTH][SAFE_VARLEN // 2:]
        out.append(
            f"{entity.location}: entity {entity.name!r} has {columns} columns ({varlen} of variable length; "
            f"~{size} bytes per filled row after TOAST): a filled row may exceed PostgreSQL's 8 KB row limit. "
            f"Store rarely filtered fields as JSON (storage: json), e.g. {', '.join(candidates[:8])}"
            + (f" and {len(candidates) - 8} more" if len(candidates) > 8 else "")
        )
    return out
