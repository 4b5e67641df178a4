"""Global search on SQLite and PostgreSQL: substrings (Chinese included), ranking, row scope, hidden fields,
pool masking, the index following every write path, and the plan that builds it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.dsl.compiler import compile_folder
from engine.errors import BadRequest
from engine.runtime.db import make_engine
from engine.runtime.schema.apply import apply
from engine.runtime.schema.diff import plan
from engine.runtime.search import service
from tests.runtime.conftest import World, build_world, write_workspace
from tests.runtime.pool_world import FILES, held_by, pooled

#: the pool world, with the sales role not allowed to see a lead's email
HIDDEN_EMAIL = {**FILES, "roles/roles.yaml": FILES["roles/roles.yaml"].replace(
    "  activity: {read: own, create: true, update: own, delete: none}\n        ---\n        role: manager",
    "  activity: {read: own, create: true, update: own, delete: none}\n"
    "        fields:\n          lead.email: hidden\n        ---\n        role: manager", 1)}


@pytest.fixture(name="world")
def search_world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path / "ws", HIDDEN_EMAIL)
    try:
        yield w
    finally:
        w.rt.close()


def add(world: World, user: str, *companies: str, **values: Any) -> list[int]:
    with world.unit(user) as uow:
        return [uow.records.create("lead", {"company": c, **values})["id"] for c in companies]


def found(world: World, user: str, q: str, **kw: Any) -> list[tuple[str, str]]:
    with world.unit(user, readonly=True) as uow:
        return [(h.title, service.RANKS[h.rank]) for h in service.search(uow, q, **kw)]


def titles(world: World, user: str, q: str) -> set[str]:
    """The titles found as substrings (PostgreSQL's similar-records pass left out)."""
    return {t for t, rank in found(world, user, q) if rank != "similar"}


def test_chinese_substrings_and_case_insensitive_prefixes_ranked(world: World) -> None:
    add(world, "admin", "苏州精密机械有限公司", "上海贸易公司", "Big Acme", "Acme Tools", "acme", "Zenith")
    assert titles(world, "admin", "精密") == {"苏州精密机械有限公司"}  # two characters: no trigram, still found
    assert titles(world, "admin", "精密机械") == {"苏州精密机械有限公司"}
    assert titles(world, "admin", "公司") == {"苏州精密机械有限公司", "上海贸易公司"}
    assert found(world, "admin", "ACM") == [("acme", "prefix"), ("Acme Tools", "prefix"), ("Big Acme", "contains")]
    assert found(world, "admin", "Acme")[0] == ("acme", "exact")
    assert titles(world, "admin", "100%") == set()  # LIKE wildcards in the text are literal
    assert titles(world, "admin", "big_acme") == set()


def test_a_rep_finds_only_what_her_row_scope_reads(world: World) -> None:
    add(world, "alice", "Acme East")
    add(world, "bob", "Acme Bob")
    add(world, "dave", "Acme West")
    assert titles(world, "alice", "acme") == {"Acme East"}
    assert titles(world, "dave", "acme") == {"Acme West"}
    assert titles(world, "carol", "acme") == {"Acme East", "Acme Bob"}  # manager of east: her team
    assert titles(world, "admin", "acme") == {"Acme East", "Acme Bob", "Acme West"}


def test_hidden_fields_are_neither_searched_nor_returned(world: World) -> None:
    add(world, "admin", "Hidden Mail Co", email="secret@hidden-domain.cn", owner_id=world.ids["alice"])
    with world.unit("alice", readonly=True) as uow:
        assert [h for h in service.search(uow, "hidden-domain") if h.rank < 3] == []
        [hit] = service.search(uow, "hidden mail")
        assert "email" not in hit.record and hit.record["company"] == "Hidden Mail Co"
    with world.unit("carol", readonly=True) as uow:  # the manager role does not hide it
        [hit] = service.search(uow, "hidden-domain")
        assert hit.matched == ("email",) and hit.record["email"] == "secret@hidden-domain.cn"


def test_a_masked_phone_is_not_searchable_until_held(world: World) -> None:
    [lead] = pooled(world, "east_pool", 1, phone="13912345678", company="Pooled Precision")
    for who in ("vera", "admin", "carol"):  # masked for everyone while unclaimed, administrators too
        assert found(world, who, "12345678") == [], who
    with world.unit("vera", readonly=True) as uow:  # other fields still find it, with the phone masked
        [hit] = service.search(uow, "pooled precision")
        assert hit.record["phone"] == "+86 139****5678" and hit.matched == ("company",)
    held_by(world, "alice", [lead])
    with world.unit("alice", readonly=True) as uow:
        [hit] = service.search(uow, "12345678")
        assert hit.id == lead and hit.matched == ("phone",) and hit.record["phone"] == "+8613912345678"


def test_the_index_follows_update_delete_and_bulk_writes(world: World) -> None:
    [lead] = add(world, "admin", "Old Name Ltd")
    with world.unit("admin") as uow:
        uow.records.update("lead", lead, {"company": "New Name Ltd"}, expected_version=None)
        ids = uow.records.create_many("lead", [{"company": f"Bulk Co {i}"} for i in range(3)])
    assert titles(world, "admin", "old name") == set()
    assert titles(world, "admin", "new name") == {"New Name Ltd"}
    assert titles(world, "admin", "bulk co") == {"Bulk Co 0", "Bulk Co 1", "Bulk Co 2"}
    with world.unit("admin") as uow:
        uow.records.delete("lead", ids[0], expected_version=None)
    assert titles(world, "admin", "bulk co") == {"Bulk Co 1", "Bulk Co 2"}
    with world.unit("system") as uow:  # a restore (clearing deleted_at) brings it back at no cost
        uow.conn.execute(text("UPDATE lead SET deleted_at = NULL WHERE id = :i"), {"i": ids[0]})
    assert "Bulk Co 0" in titles(world, "admin", "bulk co")
    if world.url.startswith("sqlite"):  # a hard delete behind the service leaves no index row
        with world.unit("system") as uow:
            uow.conn.execute(text("DELETE FROM lead WHERE id = :i"), {"i": ids[1]})
            left = uow.conn.execute(text("SELECT count(*) FROM crm_search_lead WHERE rowid = :i"), {"i": ids[1]})
            assert left.scalar_one() == 0


def test_list_within_an_entity_and_bad_queries(world: World) -> None:
    add(world, "admin", "Acme One", "Acme Two", "Other", region="east")
    add(world, "admin", "Acme North", region="north")
    with world.unit("admin", readonly=True) as uow:
        items, truncated = service.search_records(uow, "lead", "acme", filter_text="region == 'east'",
                                                  fields=["company"])
        assert truncated is False
        assert sorted(i["company"] for i in items) == ["Acme One", "Acme Two"]
        assert [h.entity for h in service.search(uow, "acme", entities=["lead"], limit=2)] == ["lead", "lead"]
        for bad in ("", "   ", "x" * 201, "a\x00b"):
            with pytest.raises(BadRequest):
                service.search(uow, bad)
        with pytest.raises(BadRequest, match="no searchable fields"):
            service.search(uow, "call", entities=["activity"])


def test_typo_tolerance_where_the_database_allows(world: World) -> None:
    add(world, "admin", "Acme Machinery")
    similar = found(world, "admin", "machinary")
    if world.url.startswith("postgresql"):
        assert similar == [("Acme Machinery", "similar")]
    else:  # SQLite: trigram substrings only (docs/search.md)
        assert similar == []


def _company_only(more: str = "") -> dict[str, str]:
    """The world's files with the lead's company the only searchable field (``more``: its other settings)."""
    spec = "company: {type: string, required: true, search: true" + (f", {more}" if more else "") + "}"
    return {**HIDDEN_EMAIL, "entities/lead.yaml": FILES["entities/lead.yaml"].replace(
        "company: {type: string, required: true}", spec)}


def _applied_with_a_lead(engine: Any, ws: Any, company: str, phone: str | None = None) -> None:
    """Apply ``ws``, then write one lead straight into the table (past the record service, as a hand-written
    INSERT would: the search index must still hold it)."""
    apply(engine, ws, author="t", message="v1")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO lead (version, created_at, updated_at, company, phone) "
                          "VALUES (1, '2026-01-01', '2026-01-01', :c, :p)"), {"c": company, "p": phone})


def _ws(tmp_path: Path, name: str, files: dict[str, str]) -> Any:
    return compile_folder(write_workspace(tmp_path / name, files))


def test_the_index_is_planned_and_follows_table_rebuilds(db_url: str, tmp_path: Path) -> None:
    v1 = _ws(tmp_path, "v1", HIDDEN_EMAIL)
    sqlite = db_url.startswith("sqlite")
    lines = [c.line() for c in plan(None, v1, None, dialect="sqlite" if sqlite else "postgresql").changes]
    if sqlite:
        assert "~ build the search index of lead (safe, searchable: company, phone, email)" in lines
    else:
        assert "+ add index ix_lead_company_trgm on lead (safe)" in lines
    # v2: only company is searchable, and narrowing it rebuilds the SQLite table (its triggers must survive)
    v2_files = _company_only("max_length: 100")
    engine = make_engine(db_url)
    try:
        _applied_with_a_lead(engine, v1, "Rebuilt Precision", "+8613800000000")
        again = apply(engine, v1, author="t", message="again")
        assert again.plan.is_empty
        v2 = _ws(tmp_path, "v2", v2_files)
        done = apply(engine, v2, author="t", message="v2").plan.changes
        changes = {c.kind: c.description for c in done}
        assert "narrow_length" in changes
        if sqlite:
            assert changes["feature_data"] == "build the search index of lead"
        else:  # phone and email no longer searchable: their trigram indexes go, the bigram index is rebuilt
            assert {c.description for c in done if c.kind == "drop_index"} == {
                "drop index ix_lead_phone_trgm on lead", "drop index ix_lead_email_trgm on lead",
                "drop index ix_lead_search_bigrams on lead"}
            assert "add index ix_lead_search_bigrams on lead" in {c.description for c in done}
    finally:
        engine.dispose()
    w = build_world(db_url, tmp_path / "v3", v2_files)
    try:
        add(w, "admin", "After Rebuild Precision")
        assert titles(w, "admin", "precision") == {"Rebuilt Precision", "After Rebuild Precision"}
        assert titles(w, "admin", "13800000") == set()  # phone is no longer searchable
    finally:
        w.rt.close()


def test_an_index_the_database_lacks_is_planned_again(db_url: str, tmp_path: Path) -> None:
    """A database made by an engine before an index existed (PostgreSQL's bigram index), or one whose index
    was dropped by hand: the plan adds it, then a change of the searchable fields applies."""
    v1 = _ws(tmp_path, "v1", HIDDEN_EMAIL)
    lacking = "ix_lead_created" if db_url.startswith("sqlite") else "ix_lead_search_bigrams"
    engine = make_engine(db_url)
    try:
        apply(engine, v1, author="t", message="v1")
        with engine.begin() as conn:
            conn.execute(text(f"DROP INDEX {lacking}"))
        again = apply(engine, v1, author="t", message="again")
        assert [c.description for c in again.plan.changes] == [f"add index {lacking} on lead"]
        assert apply(engine, v1, author="t", message="third").plan.is_empty
        with engine.begin() as conn:
            conn.execute(text(f"DROP INDEX {lacking}"))
        v2 = _ws(tmp_path, "v2", _company_only())
        done = apply(engine, v2, author="t", message="v2").plan  # the lacking index is not dropped first
        assert f"drop index {lacking} on lead" not in [c.description for c in done.changes]
        assert f"add index {lacking} on lead" in [c.description for c in done.changes]
        assert apply(engine, v2, author="t", message="v2 again").plan.is_empty
    finally:
        engine.dispose()


def test_a_search_index_dropped_by_hand_is_rebuilt_by_the_next_apply(tmp_path: Path) -> None:
    """SQLite: the FTS table or one of its triggers dropped by hand is planned as a rebuild."""
    url = f"sqlite:///{tmp_path / 'fts.db'}"
    v1 = _ws(tmp_path, "v1", HIDDEN_EMAIL)
    engine = make_engine(url)
    try:
        _applied_with_a_lead(engine, v1, "Dropped Precision")
        for sql in ("DROP TRIGGER crm_search_lead_ai", "DROP TABLE crm_search_lead"):
            with engine.begin() as conn:
                conn.execute(text(sql))
            again = apply(engine, v1, author="t", message=sql)
            assert [c.description for c in again.plan.changes] == ["build the search index of lead"], sql
            assert apply(engine, v1, author="t", message="then").plan.is_empty
    finally:
        engine.dispose()
    w = build_world(url, tmp_path / "v3", HIDDEN_EMAIL)
    try:
        add(w, "admin", "After Precision")
        assert titles(w, "admin", "precision") == {"Dropped Precision", "After Precision"}
    finally:
        w.rt.close()


def _explained(world: World, run: Any, marker: str) -> str:
    """EXPLAIN of the last statement ``run`` sends that contains ``marker``."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if marker in statement:
            seen.append((statement, params))

    event.listen(world.rt.engine, "before_cursor_execute", capture)
    try:
        with world.unit("admin", readonly=True) as uow:
            run(uow)
    finally:
        event.remove(world.rt.engine, "before_cursor_execute", capture)
    statement, params = seen[-1]
    sqlite = world.url.startswith("sqlite")
    with world.rt.engine.connect() as conn:
        if not sqlite:  # a few rows: the planner would scan them, or read them newest first by id
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_indexscan = off")
        rows = conn.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, params).all()
    return "\n".join(str(r[-1]) for r in rows)


def test_searches_and_icontains_filters_use_the_trigram_indexes(world: World) -> None:
    add(world, "admin", "Acme Precision", "Other Co")
    plan_text = _explained(world, lambda uow: service.search(uow, "precision"), "_rank")
    if world.url.startswith("sqlite"):
        assert "crm_search_lead VIRTUAL TABLE INDEX" in plan_text, plan_text
    else:
        assert "ix_lead_company_trgm" in plan_text, plan_text
        listed = _explained(world, lambda uow: uow.records.list("lead", filter='icontains(company, "PRECISION")'),
                            "FROM lead")
        assert "ix_lead_company_trgm" in listed, listed
    with world.unit("admin", readonly=True) as uow:
        page = uow.records.list("lead", filter='icontains(company, "PRECISION") and not icontains(company, "x%")')
        assert [r["company"] for r in page.items] == ["Acme Precision"]
