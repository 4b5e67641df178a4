"""Bulk entity rows through raw inserts (:mod:`engine.runtime.rawsql`): one tuple per record, the JSON
column built per row, values that are the same for every row of a batch (the stamp) processed once."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.dsl.model import JSON_COLUMN
from engine.runtime.rawsql import Processor, RawInsert, raw_insert

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from engine.runtime.records.write_plan import EntityPlan
    from engine.runtime.runtime import State


def entity_insert(state: State, conn: Connection, plan: EntityPlan) -> RawInsert:
    """The raw INSERT of every column of the entity's table (ids included: reserved up front)."""
    return raw_insert(state, conn, plan.table, [c.name for c in plan.table.c])


def entity_rows(ins: RawInsert, plan: EntityPlan, records: Sequence[Mapping[str, Any]],
                const: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Processed tuples of ``records``; columns named in ``const`` take that value (same for all rows)."""
    by_column = {name: key for key, (in_json, name, _f) in plan.storage.items() if not in_json}
    keys = [by_column.get(c, c) for c in ins.columns]
    fixed, procs, json_at = _row_spec(ins, const)
    ext_of = _ext_builder(plan, ins.processors[json_at] if json_at >= 0 else None)
    out = []
    for r in records:
        row = list(map(r.get, keys))
        for i, proc in procs:
            row[i] = proc(row[i])
        for i, value in fixed:
            row[i] = value
        if json_at >= 0:
            row[json_at] = ext_of(r)
        out.append(tuple(row))
    return out


def _row_spec(ins: RawInsert, const: Mapping[str, Any]) -> tuple[list[tuple[int, Any]],
                                                                   list[tuple[int, Callable[[Any], Any]]], int]:
    """(position, processed constant), (position, processor) of the other columns, the JSON column's position."""
    fixed: list[tuple[int, Any]] = []
    procs: list[tuple[int, Callable[[Any], Any]]] = []
    json_at = -1
    for i, (col, proc) in enumerate(zip(ins.columns, ins.processors, strict=True)):
        if col == JSON_COLUMN:
            json_at = i
        elif col in const:
            fixed.append((i, proc(const[col]) if proc is not None else const[col]))
        elif proc is not None:
            procs.append((i, proc))
    return fixed, procs, json_at


def _ext_builder(plan: EntityPlan, proc: Processor) -> Callable[[Mapping[str, Any]], Any]:
    """record -> the bound value of its JSON column (the JSON-stored fields present in the record)."""
    from engine.runtime.storage import to_json_value

    fields = [(key, name, f) for key, (in_json, name, f) in plan.storage.items() if in_json]
    if not fields:
        empty = proc(None) if proc is not None else None
        return lambda _r: empty

    def ext_of(r: Mapping[str, Any]) -> Any:
        ext = {name: (to_json_value(f, r[key]) if f is not None else r[key]) for key, name, f in fields if key in r}
        return proc(ext or None) if proc is not None else (ext or None)

    return ext_of
