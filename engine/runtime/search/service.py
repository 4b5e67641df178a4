"""Global search: the records whose searchable fields contain a piece of text, as the actor may see them.

The query is one piece of text (inner spaces collapsed), matched case-insensitively (ASCII letters, as
the expression language's ``lower()``; Chinese has no case) as a substring of each searchable field.
A search ranks a bounded *window*: the newest :data:`CANDIDATES` records holding the text, found through
the index, and says ``truncated`` when more records hold it (the hits are then the best of the newest):

* SQLite: the window from the entity's FTS5 trigram index (:mod:`engine.runtime.search.fts`) -- the
  text's trigrams for three characters or more, the trigrams starting with it (the index's vocabulary)
  for one or two; a short text starting more than :data:`MAX_EXPANSION` trigrams, or an index built
  before the vocabulary came, reads the records newest first until :data:`SCAN_CANDIDATES` match;
* PostgreSQL: ``lower(field) LIKE '%text%'`` on the fields' pg_trgm GIN indexes for three characters or
  more (a shorter text has no trigram: read newest first as above).  The indexes give every record holding
  the text, so a text the planner expects in at least :data:`COMMON` of the records (``有限公司``,
  ``qq.com``) is read newest first instead, which stops at the window.  When the substrings find fewer
  records than asked for and the text has a letter, a second pass adds *similar* ones
  (``word_similarity``, typo tolerance).

Ranked: a field equal to the text first, then one starting with it, then one containing it, then
similar ones; newest records first within a rank.  Permission-scoped like a list: live records in the
actor's row scope, fields hidden from the actor neither searched nor returned, and a field masked by a
read mask (a pool's hidden phone while the lead is unclaimed) not searched for that record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    not_,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import Select
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from engine.dsl.expressions.functions import py_lower
from engine.dsl.model import Field
from engine.dsl.search import search_fields, title_fields
from engine.errors import BadRequest
from engine.runtime.records import listing, masking, output, query, rows
from engine.runtime.records.pipeline import open_entity
from engine.runtime.records.write_plan import EntityPlan
from engine.runtime.search import fts
from engine.runtime.security import Access
from engine.runtime.storage import bigram_index, bigrams, json_field_expr, search_text

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

MAX_QUERY = 200
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: PostgreSQL's similar-records pass: the least ``word_similarity`` of the text to a field
SIMILARITY = 0.4
#: the window: at most this many records holding the text are ranked, the newest (more: ``truncated``)
CANDIDATES = 4000
#: SQLite: a text of one or two characters is looked up as at most this many trigrams starting with it
MAX_EXPANSION = 64
#: PostgreSQL: a text the planner expects in at least this share of the records is read newest first
COMMON = 0.05
#: a text the index cannot serve ranks the newest this many matches, found by reading newest first
SCAN_CANDIDATES = 500
RANKS = ("exact", "prefix", "contains", "similar")
_NONE = 9
_SPACES = re.compile(r"\s+")
_TITLE_REF = re.compile(r"\{([^}]*)\}")


@dataclass(frozen=True, slots=True)
class Hit:
    """One found record: ``rank`` is an index into :data:`RANKS`; ``record`` its title and searchable
    fields as the actor may see them (masked where a mask applies)."""

    entity: str
    id: int
    rank: int
    title: str
    matched: tuple[str, ...]
    record: dict[str, Any] = field(default_factory=dict)
    score: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "id": self.id, "title": self.title, "rank": RANKS[self.rank],
                "matched": list(self.matched), "record": self.record}


def needle(q: Any) -> str:
    """The query text, trimmed with inner spaces collapsed; BadRequest when empty or too long."""
    if not isinstance(q, str) or not q.strip():
        raise BadRequest("say what to search for: q=<text>", code="bad_request", hint="e.g. q=acme")
    text_ = _SPACES.sub(" ", q.strip())
    if "\x00" in text_:
        raise BadRequest("q holds a NUL character", code="bad_request", hint="send the text without it")
    if len(text_) > MAX_QUERY:
        raise BadRequest(f"q is too long: at most {MAX_QUERY} characters", code="bad_request")
    return text_


def searchable(uow: UnitOfWork, entity: str) -> tuple[Field, ...]:
    """The fields of ``entity`` the actor's search reads (searchable and not hidden from the actor)."""
    access = uow.guard.access(entity)
    return tuple(f for f in search_fields(uow.state.plan(entity).entity) if f.name not in access.hidden)


@dataclass(frozen=True, slots=True)
class Found:
    """What one search found: the ``hits``, best first, and whether more records hold the text than it
    ranked (``truncated``: the hits are the best of the newest :data:`CANDIDATES`; a longer text or a
    filter narrows it)."""

    hits: tuple[Hit, ...]
    truncated: bool = False


def search(uow: UnitOfWork, q: str, *, entities: Sequence[str] | None = None,
           limit: int = DEFAULT_LIMIT) -> list[Hit]:
    """The best ``limit`` hits across ``entities`` (default: every entity with searchable fields the actor
    may read), best rank first (:func:`search_page` also says whether the window was truncated)."""
    return list(search_page(uow, q, entities=entities, limit=limit).hits)


def search_page(uow: UnitOfWork, q: str, *, entities: Sequence[str] | None = None,
                limit: int = DEFAULT_LIMIT) -> Found:
    """As :func:`search`, with ``truncated`` true when an entity holds the text in more records than its
    window ranked."""
    text_ = needle(q)
    names = list(entities) if entities else [n for n, p in uow.state.plans.items() if not p.is_child
                                             and search_fields(p.entity) and uow.guard.access(n).read != "none"]
    hits: list[Hit] = []
    truncated = False
    for name in names:
        plan, access = open_entity(uow, name, "read")
        found, more = _hits(uow, plan, access, text_, limit)
        hits += found
        truncated = truncated or more
    order = {n: i for i, n in enumerate(names)}
    hits.sort(key=lambda h: (h.rank, -h.score, order[h.entity], -h.id))
    return Found(tuple(hits[:limit]), truncated)


def search_records(uow: UnitOfWork, entity: str, q: str, *, limit: int = DEFAULT_LIMIT,
                   filter_text: str | None = None, fields: Sequence[str] | None = None,
                   expand: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], bool]:
    """``GET /records/<entity>?q=``: the records of ``entity`` matching ``q`` (and ``filter``), best first,
    shaped as a list's items, and whether the window was truncated (:class:`Found`)."""
    text_ = needle(q)
    plan, access = open_entity(uow, entity, "read")
    keys = output.select_keys(plan, access, fields)
    if fields is None:
        keys = tuple(k for k in keys if k not in plan.lines)
    found, truncated = _rows(uow, plan, access, text_, limit, listing.list_where(uow, plan, filter_text))
    items = []
    for row, _rank, _score in found:
        record = rows.read(plan.readers, row._mapping)
        items.append({k: record.get(k) for k in keys if k not in plan.lines})
    if plan.lines:
        output.attach_lines(uow, plan, items, keys)
    masking.apply(uow, plan.name, items)
    output.expand(uow, plan, access, items, expand)
    return items, truncated


# --------------------------------------------------------------------------- one entity


def _hits(uow: UnitOfWork, plan: EntityPlan, access: Access, text_: str, limit: int) -> tuple[list[Hit], bool]:
    fields = searchable(uow, plan.name)
    keys = ["id", *dict.fromkeys([*title_fields(plan.entity.title), *(f.name for f in fields)])]
    keys = [k for k in keys if k in output.visible_keys(plan, access) or k == "id"]
    found, truncated = _rows(uow, plan, access, text_, limit, [])
    out: list[Hit] = []
    records = []
    for row, _rank, _score in found:
        full = rows.read(plan.readers, row._mapping)
        records.append({k: full.get(k) for k in keys})
    plain = [dict(r) for r in records]
    masking.apply(uow, plan.name, records)
    low = py_lower(text_) or ""
    for (row, rank, score), before, after in zip(found, plain, records, strict=True):
        matched = tuple(f.name for f in fields if after.get(f.name) == before.get(f.name)
                        and low in (py_lower(str(before.get(f.name) or "")) or ""))
        out.append(Hit(plan.name, int(row.id), rank, _title(plan, after, fields), matched, after, score))
    return out, truncated


def _title(plan: EntityPlan, record: dict[str, Any], fields: Sequence[Field]) -> str:
    if plan.entity.title:
        return _TITLE_REF.sub(lambda m: "" if record.get(m.group(1)) is None else str(record[m.group(1)]),
                              plan.entity.title)
    first = next((record.get(f.name) for f in fields if record.get(f.name) is not None), None)
    return str(first) if first is not None else f"{plan.name} {record['id']}"


def _rows(uow: UnitOfWork, plan: EntityPlan, access: Access, text_: str, limit: int,
          where: Sequence[Any]) -> tuple[list[tuple[Any, int, float]], bool]:
    """(row, rank, score) of the best ``limit`` matching live rows in the actor's scope, and whether the
    window was truncated."""
    fields = searchable(uow, plan.name)
    if not search_fields(plan.entity):
        raise BadRequest(f"{plan.name} has no searchable fields", code="bad_request",
                         hint="mark fields with 'search: true' in the entity's YAML (docs/search.md)")
    if not fields:
        return [], False
    pg = uow.conn.dialect.name == "postgresql"
    params = _params(text_, fields)
    kind = _kind(uow, plan, fields, text_, params)
    if kind is None:  # no trigram of the index starts with the (short) text: no record holds it
        return [], False
    if pg:  # for this transaction: plans (and the estimates of _common) made for each text (see _PG_SETTINGS)
        table_rows = uow.conn.execute(_PG_SETTINGS, {"v": str(SIMILARITY), "t": plan.table.name}).one()[2]
        if kind == "bigram" and _common(uow, plan, access, fields, where, params, table_rows, scoped=False):
            kind = "scan"  # two characters most records hold: the bigram index would list most of the table
        elif kind == "index" and _common(uow, plan, access, fields, where, params, table_rows):
            kind = "common"
    found, truncated = _ranked(uow, plan, access, fields, where, kind, limit, params)
    if not pg and kind == "index" and truncated and len(found) < limit and (access.read != "all" or where):
        # SQLite's window comes from its index before the row scope and the filter: it left the caller short,
        # so read the records the caller may see (that the filter selects) newest first instead
        found, truncated = _ranked(uow, plan, access, fields, where, "scan", limit, params)
    # similar records when every record holding the text is in (not truncated), and not for phone digits
    if pg and len(found) < limit and kind in ("index", "common") and not truncated and any(c.isalpha() for c in text_):
        similar = _statement(uow, plan, access, fields, where, "similar", limit)[0]
        rows_ = uow.conn.execute(similar, {**params, "s_seen": [r.id for r, _, _ in found]}).all()
        found += [(r, RANKS.index("similar"), float(r._score)) for r in rows_[:limit - len(found)]]
    return found, truncated


def _ranked(uow: UnitOfWork, plan: EntityPlan, access: Access, fields: Sequence[Field], where: Sequence[Any],
            kind: str, limit: int, params: dict[str, Any]) -> tuple[list[tuple[Any, int, float]], bool]:
    """The best ``limit`` (row, rank, score) of the window found the ``kind`` way, and whether more records
    hold the text than the window holds."""
    ranked, window = _statement(uow, plan, access, fields, where, kind, limit)
    result = uow.conn.execute(ranked, params).all()
    seen = int(result[0]._window) if result else int(uow.conn.execute(window, params).scalar_one())
    truncated = seen > (SCAN_CANDIDATES if kind == "scan" else CANDIDATES)  # the window reads one more
    return [(r, int(r._rank), 1.0) for r in result], truncated


#: PostgreSQL, for the rest of the transaction: the similarity pass's threshold, and plans made for the
#: text at hand -- the trigram indexes for a text few records hold, the table for one most records hold.  A
#: generic plan (psycopg prepares a statement run five times; the server may then plan it once for any
#: value) guesses how many records hold any text.
_PG_SETTINGS = text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                    "set_config('pg_trgm.word_similarity_threshold', :v, true), "
                    "(SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t))")  # and the table's size


def _common(uow: UnitOfWork, plan: EntityPlan, access: Access, fields: Sequence[Field], where: Sequence[Any],
            params: dict[str, Any], table_rows: float | None, *, scoped: bool = True) -> bool:
    """PostgreSQL: whether the planner expects at least :data:`COMMON` of the entity's records to hold the
    text (in the actor's scope unless not ``scoped``, with the filter) of ``table_rows`` (the statistics'
    size of the table; unknown: no).  Such a window is read newest first
    through the primary key -- a few thousand rows -- rather than every match through the trigram indexes
    (for a text most records hold, hundreds of thousands).  Below that the estimate is too coarse to trust
    (it rests on a sample of the table): a text estimated at 2 % may be held by 0.7 %, read newest first it
    would read a third of the table."""
    explain = _statement(uow, plan, access, fields, where, "probe" if scoped else "probe_all", 0)[0]
    explained = uow.conn.execute(explain, params).scalar_one()
    plan_ = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    return bool(table_rows and table_rows > 0 and float(plan_["Plan Rows"]) >= COMMON * float(table_rows))


class _Explain(Executable, ClauseElement):
    """``EXPLAIN (FORMAT JSON) <select>`` on PostgreSQL, run like the select (its parameters, IN lists)."""

    inherit_cache = False  # a cached EXPLAIN would be given the select's result columns

    def __init__(self, select_: Select[Any]) -> None:
        self.select = select_


@compiles(_Explain, "postgresql")
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.select, **kw)



def _kind(uow: UnitOfWork, plan: EntityPlan, fields: Sequence[Field], text_: str,
          params: dict[str, Any]) -> str | None:
    """How the window is found: "index" (on SQLite ``params["s_match"]`` says what to match), "bigram"
    (PostgreSQL, two characters: the bigram index), "scan" (newest first), or None when the index shows that
    no record holds the text."""
    pg = uow.conn.dialect.name == "postgresql"
    if pg and len(text_) == 2 and uow.state.memo("search_bigrams", plan.name, lambda: _has_bigrams(uow, plan)):
        return "bigram"
    layout = 0 if pg else uow.state.memo("search_fts", plan.name, lambda: fts.layout(uow.conn, plan.entity))
    if len(text_) >= 3:
        return "index" if pg or layout else "scan"
    if layout < fts.LAYOUT:
        return "scan"
    terms = fts.expansion(uow.conn, plan.entity, text_, MAX_EXPANSION)
    if terms is None:
        return "scan"
    if not terms:
        return None
    params["s_match"] = _columns(fields) + "(" + " OR ".join(_phrase(t) for t in terms) + ")"
    return "index"


def _has_bigrams(uow: UnitOfWork, plan: EntityPlan) -> bool:
    """Whether the entity's bigram index is built (a database from before it gets it at its next apply)."""
    name = bigram_index(plan.table, plan.entity).name
    return bool(uow.conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar())


def _phrase(piece: str) -> str:
    return '"' + piece.replace('"', '""') + '"'


def _columns(fields: Sequence[Field]) -> str:
    return "{" + " ".join(f.name for f in fields) + "} : "


def _params(text_: str, fields: Sequence[Field]) -> dict[str, Any]:
    low = py_lower(text_) or ""
    escaped = low.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"s_low": low, "s_exact": escaped, "s_prefix": f"{escaped}%", "s_contains": f"%{escaped}%",
            "s_match": _columns(fields) + _phrase(low)}


def _statement(uow: UnitOfWork, plan: EntityPlan, access: Access, fields: Sequence[Field], where: Sequence[Any],
               kind: str, limit: int) -> tuple[Any, Any]:
    """The search statement and the count of its window (texts as bound parameters: :func:`_params`),
    memoised per revision when they depend on nothing but the actor's scope (building them cost more than
    running them on the index)."""
    guard = uow.guard
    scope = (access.read, uow.actor.user_id, guard.team_ids() if access.read == "team" else None)
    key = (plan.name, access, scope, tuple(f.name for f in fields), kind, limit, bool(masking.active(uow, plan.name)))

    def build() -> tuple[Any, Any]:
        m = _Matcher(uow, plan, uow.conn.dialect.name == "postgresql")
        if kind == "similar":
            return m.similar(access, fields, where, limit), None
        if kind in ("probe", "probe_all"):
            return _Explain(m.probe(access, fields, where, scoped=kind == "probe")), None
        return m.ranked(access, fields, where, limit, kind)

    return build() if where else uow.state.memo("search", key, build)


class _Matcher:
    """The SQL pieces of one search of one entity on one database."""

    def __init__(self, uow: UnitOfWork, plan: EntityPlan, pg: bool) -> None:
        self.uow, self.plan, self.pg = uow, plan, pg
        self.low = bindparam("s_low", type_=String())

    def ranked(self, access: Access, fields: Sequence[Field], where: Sequence[Any], limit: int,
               kind: str) -> tuple[Select[Any], Select[Any]]:
        """The best ``limit`` rows of the window found the ``kind`` way (:func:`_kind`, or "common") with
        ``_rank`` and ``_window`` (the window's size), and the count of the window alone (for when no row
        comes back)."""
        t = self.plan.table
        rank = self.least([self.rank(f) for f in fields]).label("_rank")
        if self.pg or kind == "scan":
            window, best = self.read_window(access, fields, where, rank, kind)
        else:
            window, best = self.index_window(access, where, rank)
        best_ = best.limit(limit).subquery("s_best")
        size = select(func.count()).select_from(window)
        stmt = select(t, best_.c._rank, size.scalar_subquery().label("_window"))
        stmt = stmt.join_from(best_, t, t.c.id == best_.c.id).order_by(best_.c._rank, best_.c.id.desc())
        return stmt, size

    def read_window(self, access: Access, fields: Sequence[Field], where: Sequence[Any], rank: Any,
                    kind: str) -> tuple[CTE, Select[Any]]:
        """The window as the newest matching rows the actor may read, ranked as they are read (PostgreSQL
        through its trigram indexes, its bigram index for two characters, or a scan), and its rows best
        first."""
        t = self.plan.table
        bound = SCAN_CANDIDATES if kind == "scan" else CANDIDATES
        found = self.probe(access, fields, where).add_columns(rank)
        if kind == "bigram":  # the records whose fields hold the two characters, then the LIKEs above on those alone
            piece = array([cast(bindparam("s_low", type_=String()), Text)])
            found = found.where(bigrams(t, self.plan.entity).op("@>")(piece))
        # through the trigram indexes: all matches, then the newest.  Ordered by ``id + 0``, not by ``id``:
        # read newest first through the primary key, a rare text would read the whole table.  A common text
        # (:func:`_common`) and a scan are read newest first (the planner may still choose the indexes)
        newest = t.c.id.desc() if kind in ("scan", "common") else (t.c.id + 0).desc()
        window = found.order_by(newest).limit(bound + 1).cte("s_window")  # one more: is there more?
        kept = select(window.c.id, window.c._rank).order_by(window.c.id.desc()).limit(bound).subquery("s_kept")
        return window, select(kept.c.id, kept.c._rank).order_by(kept.c._rank, kept.c.id.desc())

    def probe(self, access: Access, fields: Sequence[Field], where: Sequence[Any], *,
              scoped: bool = True) -> Select[Any]:
        """The ids of the live records the actor may read (any live record unless ``scoped``) with a field
        holding the text (not masked)."""
        t = self.plan.table
        hit = or_(*(and_(self.contains(f), *self.shown(f)) for f in fields))
        found = query.base_select(self.uow, self.plan, access, [t.c.id]) if scoped else \
            select(t.c.id).where(t.c.deleted_at.is_(None))
        return found.where(hit, *where)

    def index_window(self, access: Access, where: Sequence[Any], rank: Any) -> tuple[CTE, Select[Any]]:
        """SQLite's window from its FTS index, each of its records looked up by id and ranked if the actor
        may read it, and those best first."""
        t = self.plan.table
        window = self.indexed()
        rank_of = query.base_select(self.uow, self.plan, access, [rank]).where(t.c.id == window.c.id, *where)
        # one lookup per window row by its id, whatever else is indexed (a row scope's owner_id): the scalar
        # subquery fixes the join order; MATERIALIZED, so that it runs once per row.  No row (out of scope,
        # deleted) ranks NULL; a row where no field the actor may search holds the text ranks _NONE
        each = select(window.c.id, rank_of.scalar_subquery().label("_rank")).order_by(window.c.id.desc())
        ranked = each.limit(CANDIDATES).cte("s_ranked").prefix_with("MATERIALIZED")
        best = select(ranked.c.id, ranked.c._rank).where(ranked.c._rank < _NONE)
        return window, best.order_by(ranked.c._rank, ranked.c.id.desc())

    def indexed(self) -> CTE:
        """SQLite's window: the ids of the newest ``CANDIDATES + 1`` records its FTS index finds (one more than
        it ranks: is there more?)."""
        name = fts.fts_name(self.plan.entity)
        index = table(name, column("rowid"))
        match = literal_column('"' + name + '"').op("MATCH")(bindparam("s_match", type_=String()))
        ids = select(index.c.rowid.label("id")).where(match).order_by(index.c.rowid.desc())
        return ids.limit(CANDIDATES + 1).cte("s_window")

    def similar(self, access: Access, fields: Sequence[Field], where: Sequence[Any], limit: int) -> Select[Any]:
        """PostgreSQL's typo-tolerant pass: rows with a field similar to the text (pg_trgm ``%>``, indexed)."""
        t = self.plan.table
        hit = or_(*(and_(self.value(f).op("%>")(self.low), *self.shown(f)) for f in fields))
        score = self.greatest([case((and_(*self.shown(f)), func.word_similarity(self.low, self.value(f))),
                                    else_=0.0) if self.shown(f) else func.word_similarity(self.low, self.value(f))
                               for f in fields])
        stmt = query.base_select(self.uow, self.plan, access, [t, score.label("_score")]).where(hit, *where)
        stmt = stmt.where(t.c.id.not_in(bindparam("s_seen", expanding=True)))
        return stmt.order_by(text("_score DESC"), t.c.id.desc()).limit(limit)

    def value(self, f: Field) -> ColumnElement[Any]:
        if self.pg:
            return search_text(self.plan.table, f, "postgresql")
        if f.storage == "json":
            return json_field_expr(self.plan.table, f, "sqlite")
        return self.plan.table.c[f.column_name]

    def _like(self, f: Field, pattern: str) -> ColumnElement[bool]:
        return self.value(f).like(bindparam(pattern, type_=String()), escape="\\")

    def contains(self, f: Field) -> ColumnElement[bool]:
        return self._like(f, "s_contains")

    def shown(self, f: Field) -> list[ColumnElement[bool]]:
        """The condition under which ``f`` is not masked for the actor (empty: never masked)."""
        cond = masking.exclusion(self.uow, self.plan.name, [f.name])
        return [cond] if cond is not None else []

    def rank(self, f: Field) -> ColumnElement[Any]:
        exact = self.value(f) == self.low if self.pg else self._like(f, "s_exact")
        whens: list[Any] = [(not_(c), _NONE) for c in self.shown(f)]
        # most fields of a candidate do not hold the text: one LIKE tells, before exact and prefix are tried
        whens += [(not_(self.contains(f)), _NONE), (exact, 0), (self._like(f, "s_prefix"), 1)]
        return case(*whens, else_=2)

    def least(self, parts: list[ColumnElement[Any]]) -> ColumnElement[Any]:
        if len(parts) == 1:
            return parts[0]
        return func.least(*parts) if self.pg else func.min(*parts)

    def greatest(self, parts: list[ColumnElement[Any]]) -> ColumnElement[Any]:
        return parts[0] if len(parts) == 1 else func.greatest(*parts)
