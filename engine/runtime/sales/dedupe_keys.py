"""Duplicate detection's storage and lookups: normalised keys in ``crm_dedupe_keys``.

Every record of an entity a ``dedupe:`` rule reads (its own entity and the entities it is checked
``against``) has one row per key in ``crm_dedupe_keys`` (entity, record_id, kind, key), kept by the
write step :class:`engine.runtime.sales.dedupe.DedupeStep`.  A fuzzy key also stores *blocking keys*
(kind ``<kind>~``: its first and last few characters), so a fuzzy comparison only scores the records
sharing one of them.  Finding the duplicates of a record is therefore a few index lookups whatever the
size of the table; :func:`matches` does it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rapidfuzz import fuzz, process
from sqlalchemy import Connection, and_, delete, insert, or_, select
from sqlalchemy.exc import DBAPIError

from engine.dsl.model import Workspace
from engine.dsl.sales.dedupe import DedupeRule, KeySource, MatchKey
from engine.runtime import crypto
from engine.runtime.engine_tables import crm_dedupe_keys as K
from engine.runtime.sales.normalise import MAX_KEY, block_keys, normalise

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

#: the most records a fuzzy key scores (rows sharing a blocking key); the most exact matches read
FUZZY_CANDIDATES = 300
EXACT_LIMIT = 200
#: separates the parts of a key of several fields
PART_SEPARATOR = "\x1f"
BLOCK_SUFFIX = "~"

#: one stored row: (kind, key, value) -- value is the whole key on a blocking-key row, else None
Pair = tuple[str, str, "str | None"]


@dataclass(frozen=True, slots=True)
class Match:
    """A record that matches by one key: ``score`` 100 for equal keys, the similarity for fuzzy ones."""

    entity: str
    record_id: int
    kind: str
    key: str
    score: float
    #: the rule and the key's fields on the checked entity (what the caller is told matched)
    rule: str | None = None
    fields: tuple[str, ...] = ()
    action: str = "warn"


@dataclass(frozen=True, slots=True)
class DedupeIndex:
    """The rules of a workspace, arranged for writes: which keys each entity stores, which rules check it."""

    rules: Mapping[str, tuple[DedupeRule, ...]] = field(default_factory=dict)
    sources: Mapping[str, tuple[KeySource, ...]] = field(default_factory=dict)
    region: str | None = None
    #: key kinds read from an encrypted field somewhere: stored and looked up as blind indexes (an HMAC of the
    #: normalised key, see :mod:`engine.runtime.crypto`), never in clear, and compared for equality only
    blinded: frozenset[str] = frozenset()
    #: (rule, shape, placeholder) -> the SQL text looking up the rule's keys (:func:`lookup_sql`), filled on use
    statements: dict[tuple[str, tuple[tuple[int, int, int], ...], str], str] = field(default_factory=dict)


def index_of(workspace: Workspace) -> DedupeIndex:
    """The :class:`DedupeIndex` of ``workspace``'s compiled ``dedupe:`` documents (pure)."""
    rules: dict[str, list[DedupeRule]] = {}
    sources: dict[str, dict[KeySource, None]] = {}
    for obj in workspace.objects_of("dedupe").values():
        rule = obj.compiled
        if not isinstance(rule, DedupeRule):
            continue
        rules.setdefault(rule.entity, []).append(rule)
        for src in rule.sources:
            sources.setdefault(src.entity, {})[src] = None
    return DedupeIndex({k: tuple(v) for k, v in rules.items()}, {k: tuple(v) for k, v in sources.items()},
                       workspace.phone_region, blinded_kinds(workspace, sources))


def blinded_kinds(workspace: Workspace, sources: Mapping[str, Iterable[KeySource]]) -> frozenset[str]:
    """The key kinds some source reads from an encrypted field (their keys are stored as blind indexes)."""
    out = set()
    for entity, srcs in sources.items():
        ent = workspace.entities.get(entity)
        if ent is None:
            continue
        for src in srcs:
            if any((f := ent.fields.get(name)) is not None and f.encrypted for name in src.fields):
                out.add(src.kind)
    return frozenset(out)


def index(uow: UnitOfWork) -> DedupeIndex:
    """The unit's revision's index (built once per revision)."""
    return uow.state.memo("dedupe_index", "rules", lambda: index_of(uow.workspace))  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- keys of a record


#: (fields, normalisers) -> key value, for one record: its keys are stored and looked up in the same write
KeyMemo = dict[tuple[Sequence[str], Sequence[str]], "str | None"]


def key_value(fields: Sequence[str], normalisers: Sequence[str], values: Mapping[str, Any],
              region: str | None, memo: KeyMemo | None = None) -> str | None:
    """The normalised key of ``values`` for a key of ``fields``; None when a field gives no key.  ``memo``
    (one per record) keeps the keys worked out already."""
    if memo is not None:
        memo_key = (fields, normalisers)
        if memo_key in memo:
            return memo[memo_key]
        memo[memo_key] = found = key_value(fields, normalisers, values, region)
        return found
    parts = []
    for name, how in zip(fields, normalisers, strict=True):
        part = normalise(how, values.get(name), region=region)
        if part is None:
            return None
        parts.append(part)
    return PART_SEPARATOR.join(parts)[:MAX_KEY]


def record_pairs(sources: Iterable[KeySource], record: Mapping[str, Any], region: str | None,
                 memo: KeyMemo | None = None, blinded: frozenset[str] = frozenset()) -> set[Pair]:
    """Every (kind, key, value) row ``record`` should have: its keys and, for fuzzy ones, their blocking keys
    (each carrying the whole key as its value).  A key of a ``blinded`` kind is its blind index under the
    current key of the ring, with no blocking keys."""
    out: set[Pair] = set()
    for src in sources:
        value = key_value(src.fields, src.normalisers, record, region, memo)
        if value is None:
            continue
        if src.kind in blinded:
            out.add((src.kind, crypto.keyring().tagged(value), None))
            continue
        out.add((src.kind, value, None))
        if src.fuzzy:
            out.update((src.kind + BLOCK_SUFFIX, b, value) for b in block_keys(value))
    return out


def stored_pairs(conn: Connection, entity: str, record_id: int) -> set[Pair]:
    """The (kind, key, value) rows ``crm_dedupe_keys`` holds for one record."""
    rows = conn.execute(select(K.c.kind, K.c.key, K.c.value).where(K.c.entity == entity,
                                                                   K.c.record_id == record_id))
    return {(r.kind, r.key, r.value) for r in rows}


def write_pairs(conn: Connection, entity: str, record_id: int, pairs: set[Pair], *,
                existing: set[Pair] | None = None) -> None:
    """Make the record's stored rows ``pairs`` (``existing``: what is stored now, None = nothing)."""
    have = existing or set()
    gone = have - pairs
    if gone:
        conn.execute(delete(K).where(K.c.entity == entity, K.c.record_id == record_id,
                                     or_(*(and_(K.c.kind == k, K.c.key == v) for k, v, _ in gone))))
    new = pairs - have if existing is not None else pairs
    if new:  # straight to the driver: plain text and int columns need no bind processing
        mark = _mark(conn)
        conn.exec_driver_sql(f"INSERT INTO {K.name} (entity, record_id, kind, key, value) "
                             f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})",
                             [(entity, record_id, k, v, full) for k, v, full in new])


def drop_pairs(conn: Connection, entity: str, record_id: int) -> None:
    """Forget every key of one record (it was deleted)."""
    conn.execute(delete(K).where(K.c.entity == entity, K.c.record_id == record_id))


# --------------------------------------------------------------------------- lookups


def matches(uow: UnitOfWork, entity: str, values: Mapping[str, Any], *, against: Sequence[str] | None = None,
            exclude_id: int | None = None) -> list[Match]:
    """The records ``values`` (field -> value of an ``entity`` record) duplicate, by the entity's rules.

    ``against`` limits the entities looked in (default: every entity the rules name, ``entity`` itself
    included); ``exclude_id`` is the record's own id.  Index lookups only: equal keys through
    ``(kind, key)``, fuzzy keys among the records sharing a blocking key -- one statement per rule.  Best
    match first per record and key; visibility is not applied here (see
    :mod:`engine.runtime.sales.duplicates`).
    """
    idx = index(uow)
    found: list[Match] = []
    for rule in idx.rules.get(entity, ()):
        found += rule_matches(uow.conn, idx, rule, values, against=against, exclude=(entity, exclude_id))
    return best_first(found)


def lookup_sql(rule: DedupeRule, shape: tuple[tuple[int, int, int], ...], mark: str) -> str:
    """The driver-level SQL of one lookup of ``rule``'s keys: a ``UNION ALL`` of one query per key that has a
    value (a single round trip), each served by the covering index ``ix_crm_dedupe_keys_lookup`` -- equal
    keys by ``(kind, key)``, a fuzzy key's candidates by its blocking keys (with their whole key, ``value``).

    ``shape``: per looked-up key, ``(key index, number of key values, number of entities)``; ``mark`` the
    driver's placeholder.  The parameters go in text order: per key its kind, its values, its entities.
    Plain text with fixed placeholders (no expanding parameters to render per call, no Core compile):
    the statement runs on every create and update of a checked record."""
    parts = []
    for i, n_values, n_entities in shape:
        key = rule.keys[i]
        limit = EXACT_LIMIT if key.fuzzy is None else FUZZY_CANDIDATES
        values = ", ".join([mark] * n_values)
        entities = ", ".join([mark] * n_entities)
        parts.append(f"SELECT * FROM (SELECT {i} AS k, entity, record_id, value FROM {K.name} "
                     f"WHERE kind = {mark} AND key IN ({values}) AND entity IN ({entities}) LIMIT {limit}) AS q{i}")
    return " UNION ALL ".join(parts)


def fetch_all(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` as plain tuples, read on the unit's own driver connection (in its transaction):
    a lookup returns up to a few hundred candidates, and building SQLAlchemy rows for them cost more than
    the query.  A driver error is raised as SQLAlchemy's, as ``conn.execute`` would."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    base_error = conn.dialect.loaded_dbapi.Error
    try:
        cur: Any = dbapi.cursor()
        try:
            cur.execute(sql, params)
            return cur.fetchall()  # type: ignore[no-any-return]
        finally:
            cur.close()
    except base_error as e:
        raise DBAPIError.instance(sql, params, e, base_error) from e


def _mark(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def rule_matches(conn: Connection, idx: DedupeIndex, rule: DedupeRule, values: Mapping[str, Any], *,
                 against: Sequence[str] | None = None, exclude: tuple[str, int | None] | None = None,
                 memo: KeyMemo | None = None) -> list[Match]:
    """The matches of ``values`` by one rule's keys (one statement, see :func:`lookup_sql`)."""
    wanted: dict[int, str] = {}
    shape: list[tuple[int, int, int]] = []
    params: list[Any] = []
    for i, key in enumerate(rule.keys):
        entities = [e for e in rule.searched(key) if against is None or e in against]
        value = key_value(key.fields, key.normalisers, values, idx.region, memo) if entities else None
        if value is None:
            continue
        wanted[i] = value
        exact = key.fuzzy is None or key.kind in idx.blinded
        if key.kind in idx.blinded:
            looked = crypto.keyring().tagged_all(value)  # under every key of the ring: found mid-rotation too
        else:
            looked = [value] if exact else list(block_keys(value))
        shape.append((i, len(looked), len(entities)))
        params += [key.kind if exact else key.kind + BLOCK_SUFFIX, *looked, *entities]
    if not wanted:
        return []
    mark = _mark(conn)
    statement_key = (rule.name, tuple(shape), mark)
    sql = idx.statements.get(statement_key)
    if sql is None:
        sql = idx.statements[statement_key] = lookup_sql(rule, tuple(shape), mark)
    rows = fetch_all(conn, sql, tuple(params))
    out: list[Match] = []
    for i, value in wanted.items():
        key = rule.keys[i]
        mine = [r for r in rows if r[0] == i and (exclude is None or (r[1], r[2]) != exclude)]
        fuzzy = key.fuzzy is not None and key.kind not in idx.blinded
        hits = _scored(key, value, mine) if fuzzy else [(r[1], r[2], value, 100.0) for r in mine]
        out += [Match(e, rid, key.kind, k, score, rule.name, key.fields, rule.action) for e, rid, k, score in hits]
    return out


def _scored(key: MatchKey, value: str, rows: Sequence[Any]) -> list[tuple[str, int, str, float]]:
    """The candidates (rows sharing a blocking key) whose whole key is at least ``key.fuzzy`` similar."""
    choices = [r[3] or "" for r in rows]
    scored = process.extract(value, choices, scorer=fuzz.ratio, score_cutoff=float(key.fuzzy or 100), limit=None)
    return [(rows[i][1], rows[i][2], other, round(float(score), 1)) for other, score, i in scored]


def best_first(found: Iterable[Match]) -> list[Match]:
    """One match per (record, rule, key kind), the best score kept; records in order of their best score."""
    best: dict[tuple[str, int, str | None, str], Match] = {}
    for m in found:
        k = (m.entity, m.record_id, m.rule, m.kind)
        if k not in best or m.score > best[k].score:
            best[k] = m
    return sorted(best.values(), key=lambda m: (-m.score, m.entity, m.record_id))


# --------------------------------------------------------------------------- rebuilding


def rebuild(uow: UnitOfWork, entity: str | None = None, *, chunk: int = 5000) -> dict[str, int]:
    """Recompute every stored key of ``entity`` (default: every entity the rules read), e.g. after data was
    loaded behind the record service; returns entity -> keys stored.  (A change of the rules rebuilds the
    keys it affects at apply: :class:`KeysPlanStep`.)"""
    idx = index(uow)
    names = [entity] if entity is not None else list(idx.sources)
    return {name: rebuild_entity(uow.conn, idx, uow.state.plan(name), chunk=chunk) for name in names}


def rebuild_entity(conn: Connection, idx: DedupeIndex, plan: Any, *, chunk: int = 5000) -> int:
    """Store again every key of the live records of ``plan``'s entity (in the caller's transaction)."""
    from engine.runtime.records import rows

    name = plan.name
    sources = idx.sources.get(name, ())
    conn.execute(delete(K).where(K.c.entity == name))
    t, count, last = plan.table, 0, 0
    while True:
        batch = conn.execute(select(t).where(t.c.deleted_at.is_(None), t.c.id > last)
                             .order_by(t.c.id).limit(chunk)).all()
        if not batch:
            break
        params = [{"entity": name, "record_id": r.id, "kind": k, "key": v, "value": full} for r in batch
                  for k, v, full in record_pairs(sources, rows.read(plan.readers, r._mapping), idx.region,
                                                 blinded=idx.blinded)]
        if params:
            conn.execute(insert(K), params)
        count += len(params)
        last = batch[-1].id
    return count


# --------------------------------------------------------------------------- rules changed: keys at apply

KEYS_STEP = "dedupe_keys"


def keys_fingerprint(sources: Sequence[KeySource], region: str | None, blinded: Iterable[str] = ()) -> str:
    """What the stored keys of one entity depend on: its key sources, the phone region and which of its kinds
    are blind indexes (a field that becomes encrypted stores its keys again, blinded)."""
    import hashlib

    mine = sorted(set(blinded) & {s.kind for s in sources})
    text = repr((sorted(repr(s) for s in sources), region, mine) if mine else (sorted(repr(s) for s in sources),
                                                                               region))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class KeysPlanStep:
    """Stores the duplicate keys of every record of an entity again at apply when the rules that read it
    changed (new keys, other fields or normalisers, another phone region) -- otherwise the records that
    were there before a new rule would never be found as duplicates.  The plan names the entity and how
    many records it reads."""

    name = KEYS_STEP

    def fingerprints(self, workspace: Workspace) -> dict[str, str]:
        idx = index_of(workspace)
        return {f"dedupe/{e}": keys_fingerprint(srcs, idx.region, idx.blinded) for e, srcs in idx.sources.items()}

    def plan(self, pctx: Any) -> list[Any]:
        from sqlalchemy import func

        from engine.runtime.schema.model import Change

        out = []
        for key, fp in self.fingerprints(pctx.new).items():
            entity = key.partition("/")[2]
            if pctx.old_fingerprints.get(key) == fp:
                continue  # the same rules: the stored keys are right, no scan
            if pctx.old is None or entity not in pctx.old.entities or pctx.conn is None:
                continue  # a table this plan creates has no rows yet
            rows = None
            if pctx.holds(entity):
                t = pctx.new_schema.tables[entity]
                rows = int(pctx.conn.execute(select(func.count()).select_from(t).where(
                    t.c.deleted_at.is_(None))).scalar_one())
            out.append(Change("feature_data", entity, f"store the duplicate keys of {entity} again", rows=rows,
                              note="its duplicate rules changed", details={"step": KEYS_STEP, "entity": entity}))
        return out

    def apply(self, actx: Any, change: Any) -> None:
        from engine.runtime.records.write_plan import build_plans

        entity = change.details["entity"]
        idx = index_of(actx.workspace)
        if entity not in idx.sources:
            return
        plans = build_plans(actx.workspace, actx.schema)
        actx.done[f"dedupe/{entity}"] = rebuild_entity(actx.conn, idx, plans[entity])
