"""Duplicates as a caller may see them: the matching records they can read, with their titles, and only a
count of the others ("2 matches you cannot see") -- never a record, a title or a key of a record outside
the caller's row scope, and never a field hidden from them.

Used for the 409 of a ``block`` rule, the ``_duplicates`` beside a record a ``warn`` rule let through, and
``GET /records/<entity>/<id>/duplicates``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from engine.errors import DuplicateFound
from engine.runtime.records import rows
from engine.runtime.sales.dedupe_keys import Match, matches
from engine.wording import counted

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

#: the most matching records described (the rest are counted)
MAX_LISTED = 20
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Report:
    """The matches the caller may see (``items``, best first) and how many others there are."""

    items: list[dict[str, Any]]
    hidden: int

    def as_note(self) -> dict[str, Any]:
        """What the API adds beside a written record: ``_duplicates`` and ``_duplicates_hidden``."""
        return {"_duplicates": self.items, "_duplicates_hidden": self.hidden}

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "hidden": self.hidden}


def title_of(uow: UnitOfWork, entity: str, record: Mapping[str, Any], hidden: frozenset[str]) -> str:
    """The record's title from its entity's ``title`` template (``{company}``); hidden fields show as …"""
    template = uow.workspace.entities[entity].title
    if not template:
        return f"{entity} {record.get('id')}"

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in hidden:
            return "…"
        value = record.get(name)
        return "" if value is None else str(value)

    return _PLACEHOLDER.sub(fill, template).strip() or f"{entity} {record.get('id')}"


def describe(uow: UnitOfWork, found: Sequence[Match]) -> Report:
    """The caller's view of ``found`` (one item per record, with every key it matched by), best first.

    Only the best-scored records the caller may read are read in full (for their titles); the others
    are counted -- a name shared by hundreds of records costs two counts, not hundreds of rows."""
    grouped: dict[tuple[str, int], list[Match]] = {}
    for m in found:
        grouped.setdefault((m.entity, m.record_id), []).append(m)
    order = sorted(grouped, key=lambda k: -max(m.score for m in grouped[k]))
    by_entity: dict[str, list[int]] = {}
    for entity, rid in order:
        by_entity.setdefault(entity, []).append(rid)
    seen: dict[tuple[str, int], str] = {}
    hidden = visible = 0
    for entity, ids in by_entity.items():
        titles, readable, others = _visible(uow, entity, ids, MAX_LISTED)
        seen.update({(entity, rid): t for rid, t in titles.items()})
        hidden += others
        visible += readable
    items: list[dict[str, Any]] = []
    for (entity, rid) in order:
        if (entity, rid) not in seen:
            continue
        ms = grouped[(entity, rid)]
        items.append({"entity": entity, "id": rid, "title": seen[(entity, rid)],
                      "score": max(m.score for m in ms), "action": ms[0].action,
                      "matched_by": [{"rule": m.rule, "kind": m.kind, "fields": list(m.fields), "score": m.score}
                                     for m in ms]})
    items.sort(key=lambda i: -i["score"])
    hidden += max(0, visible - MAX_LISTED)
    return Report(items[:MAX_LISTED], hidden)


#: ids whose rows are read at once when titling the best matches
_TITLE_CHUNK = 2 * MAX_LISTED


def _visible(uow: UnitOfWork, entity: str, ids: list[int], want: int) -> tuple[dict[int, str], int, int]:
    """Titles of the first ``want`` live records among ``ids`` (best first) the caller may read, how many of
    ``ids`` the caller may read in all, and how many live others there are."""
    plan = uow.state.plan(entity)
    t = plan.table
    live = t.c.deleted_at.is_(None)
    access = uow.guard.access(entity)
    titles: dict[int, str] = {}
    if access.read == "none":
        others = int(uow.conn.execute(select(func.count()).select_from(t).where(t.c.id.in_(ids), live)).scalar_one())
        return titles, 0, others
    scope = uow.guard.scope_clause(t, access.read)
    readable_ids: set[int] = set()
    read_all = True
    for start in range(0, len(ids), _TITLE_CHUNK):
        chunk = ids[start:start + _TITLE_CHUNK]
        stmt = select(t).where(t.c.id.in_(chunk), live)
        found = {row.id: row for row in uow.conn.execute(stmt.where(scope) if scope is not None else stmt)}
        readable_ids.update(found)
        for rid in chunk:
            row = found.get(rid)
            if row is not None and len(titles) < want:
                titles[rid] = title_of(uow, entity, rows.read(plan.readers, row._mapping), access.hidden)
        if len(titles) >= want and start + _TITLE_CHUNK < len(ids):
            read_all = False
            break
    if read_all:  # every id was looked at: count the live ones the caller may not read
        rest = [i for i in ids if i not in readable_ids]
        others = len(uow.conn.execute(select(t.c.id).where(t.c.id.in_(rest), live)).all()) if rest else 0
        return titles, len(readable_ids), others
    where = [t.c.id.in_(ids), live]
    total = int(uow.conn.execute(select(func.count()).select_from(t).where(*where)).scalar_one())
    readable = total if scope is None else int(uow.conn.execute(
        select(func.count()).select_from(t).where(*where, scope)).scalar_one())
    return titles, readable, total - readable


def refusal(uow: UnitOfWork, entity: str, found: Sequence[Match]) -> DuplicateFound:
    """The 409 of a ``block`` rule: what the record duplicates (as far as the caller may know) and what to do."""
    report = describe(uow, found)
    listed = [f"{i['entity']} {i['id']} ({i['title']}) by {matched_fields(i)}" for i in report.items[:3]]
    more = len(report.items) - len(listed)
    parts = listed + ([f"{counted(more, 'other record')}"] if more > 0 else []) + (
        [f"{counted(report.hidden, 'match')} you cannot see"] if report.hidden else [])
    rules = sorted({m.rule for m in found if m.rule})
    return DuplicateFound(
        f"this {entity} duplicates existing records: {'; '.join(parts)}",
        hint="work on the existing record instead, or change the values that match; "
             f"rule {', '.join(repr(r) for r in rules)} refuses duplicates",
        details={"entity": entity, "rules": rules, "matches": report.items, "hidden": report.hidden})


def matched_fields(item: Mapping[str, Any]) -> str:
    """The fields a described match (an item of :func:`describe` or of a batch refusal) matched by, as text."""
    return ", ".join(sorted({f for m in item["matched_by"] for f in m["fields"]}))


def duplicates_of(uow: UnitOfWork, entity: str, record_id: int) -> Report:
    """The duplicates of a stored record, as the caller sees them (NotFound unless they may read it).

    The record's keys are computed from its stored values, so a field hidden from the caller still
    counts (the caller learns only which of *their* records match)."""
    uow.records.get(entity, record_id, fields=["id"])  # the caller may read it (NotFound otherwise)
    plan = uow.state.plan(entity)
    row = uow.conn.execute(select(plan.table).where(plan.table.c.id == record_id)).one()
    return describe(uow, matches(uow, entity, rows.read(plan.readers, row._mapping), exclude_id=record_id))
