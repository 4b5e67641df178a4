"""Search ranks a bounded window and says when it was truncated; texts of one or two characters are found
wherever they stand (on SQLite through the index's vocabulary), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply
from engine.runtime.search import fts, service
from tests.conftest import fresh_database
from tests.runtime.conftest import World, build_world
from tests.runtime.pool_world import pooled
from tests.runtime.test_search import HIDDEN_EMAIL, _ws, add, found, titles


@pytest.fixture(name="world")
def window_world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path / "ws", HIDDEN_EMAIL)
    try:
        yield w
    finally:
        w.rt.close()


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[World]:
    """The same world on SQLite only (its full-text index and vocabulary)."""
    w = build_world(f"sqlite:///{tmp_path / 'search.db'}", tmp_path / "ws", HIDDEN_EMAIL)
    try:
        yield w
    finally:
        w.rt.close()


@pytest.fixture
def pg_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The same world on PostgreSQL only (its planner's estimates)."""
    with fresh_database(request, "postgresql", tmp_path, "crm_search") as url:
        w = build_world(url, tmp_path / "ws", HIDDEN_EMAIL)
        try:
            yield w
        finally:
            w.rt.close()


def page(world: World, user: str, q: str, **kw: Any) -> service.Found:
    with world.unit(user, readonly=True) as uow:
        return service.search_page(uow, q, **kw)


def test_more_matches_than_the_window_rank_the_newest_and_say_truncated(world: World,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "CANDIDATES", 3)
    add(world, "admin", "Window", *(f"Window Co {i}" for i in range(4)))  # the exact match is the oldest
    got = page(world, "admin", "window")
    assert got.truncated is True
    assert [h.title for h in got.hits] == ["Window Co 3", "Window Co 2", "Window Co 1"]
    assert page(world, "admin", "window co 3").truncated is False
    with world.unit("admin", readonly=True) as uow:  # a list's q= says the same
        items, truncated = service.search_records(uow, "lead", "window", fields=["company"])
        assert truncated is True and len(items) == 3


def test_a_window_of_matches_out_of_scope_finds_the_callers_own(world: World,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite takes its window from the index before the row scope: when that leaves the caller short, her
    own records are read newest first; PostgreSQL's window holds only what she may read."""
    monkeypatch.setattr(service, "CANDIDATES", 2)
    mine = add(world, "dave", "Crowded dave 1", "Crowded dave 2")  # older than everyone else's
    add(world, "bob", *(f"Crowded {i}" for i in range(4)))
    got = page(world, "dave", "crowded")  # dave (another team) reads none of bob's
    assert sorted(h.id for h in got.hits) == sorted(mine) and got.truncated is False
    with world.unit("dave", readonly=True) as uow:  # a list's q= with a filter likewise
        items, truncated = service.search_records(uow, "lead", "crowded", filter_text="company != 'Crowded dave 1'",
                                                  fields=["company"])
        assert [i["id"] for i in items] == [mine[1]] and truncated is False
    got = page(world, "carol", "crowded")  # carol (bob's manager) reads bob's four
    if world.url.startswith("sqlite"):  # the window left her fewer than asked for: hers read newest first
        assert len(got.hits) == 4 and got.truncated is False
    else:  # her window: the newest two of them
        assert len(got.hits) == 2 and got.truncated is True
    assert page(world, "dave", "nothing like it").truncated is False


def test_one_and_two_characters_are_found_wherever_they_stand(world: World) -> None:
    add(world, "admin", "华泰精密", "王华泰", "华泰", "上海华泰公司", "Acme", "Zed", "Other")
    assert found(world, "admin", "华泰") == [("华泰", "exact"), ("华泰精密", "prefix"), ("上海华泰公司", "contains"),
                                             ("王华泰", "contains")]
    assert titles(world, "admin", "泰") == {"华泰精密", "王华泰", "华泰", "上海华泰公司"}
    assert titles(world, "admin", "AC") == {"Acme"}
    assert titles(world, "admin", "ed") == {"Zed"}  # at the very end of the field
    assert titles(world, "admin", "z") == {"Zed"}
    assert titles(world, "admin", "司公") == set()
    assert page(world, "admin", "华泰").truncated is False


def test_short_texts_respect_hidden_fields_and_masks(world: World) -> None:
    add(world, "admin", "Plain Co", email="x@zq.cn", owner_id=world.ids["alice"])
    assert titles(world, "alice", "zq") == set()  # the sales role does not see email
    assert titles(world, "carol", "zq") == {"Plain Co"}
    pooled(world, "east_pool", 1, phone="13912345678", company="Pooled Precision")
    assert found(world, "vera", "78") == []  # the pool masks the phone


def _statements(world: World, user: str, q: str) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        seen.append((statement, params))

    event.listen(world.rt.engine, "before_cursor_execute", capture)
    try:
        titles(world, user, q)
    finally:
        event.remove(world.rt.engine, "before_cursor_execute", capture)
    return seen


def test_sqlite_looks_short_texts_up_in_the_vocabulary_and_scans_when_it_must(
        sqlite_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world = sqlite_world
    add(world, "admin", "华泰精密", "王华泰", "Other")
    matched = [p for s, p in _statements(world, "admin", "华泰") if "MATCH" in s]
    texts = [v for p in matched for v in p if isinstance(v, str)]
    assert any('"华泰精"' in v and '"华泰\x1f"' in v for v in texts), texts
    monkeypatch.setattr(service, "MAX_EXPANSION", 1)  # too many trigrams start with it: read newest first
    assert all("MATCH" not in s for s, _ in _statements(world, "admin", "华泰") if "_rank" in s)
    assert titles(world, "admin", "华泰") == {"华泰精密", "王华泰"}


def test_an_index_built_before_the_vocabulary_still_answers(sqlite_world: World) -> None:
    world = sqlite_world
    add(world, "admin", "华泰精密", "Acme Precision")
    lead = world.rt.state.plan("lead").entity
    with world.rt.engine.begin() as conn:
        conn.execute(text(f'DROP TABLE "{fts.vocab_name(lead)}"'))
        assert fts.layout(conn, lead) == 1
    rt = Runtime.open(world.url)
    try:
        with rt.unit(world.actor("admin"), readonly=True) as uow:
            assert {h.title for h in service.search(uow, "华泰")} == {"华泰精密"}  # read newest first
            assert {h.title for h in service.search(uow, "precision")} == {"Acme Precision"}
    finally:
        rt.close()


def test_a_new_index_layout_is_planned_as_a_rebuild(db_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _ws(tmp_path, "v1", HIDDEN_EMAIL)
    engine = make_engine(db_url)
    try:
        apply(engine, ws, author="t", message="v1")
        monkeypatch.setattr(fts, "LAYOUT", fts.LAYOUT + 1)
        changes = [c.description for c in apply(engine, ws, author="t", message="layout").plan.changes]
    finally:
        engine.dispose()
    assert changes == (["build the search index of lead"] if db_url.startswith("sqlite") else [])


def _answers(world: World) -> list[Any]:
    out: list[Any] = []
    for user in ("admin", "bob", "dave"):
        for q in ("common", "common 1", "rare", "COMMON 19", "mon"):
            got = page(world, user, q)
            out.append((user, q, got.truncated, [(h.id, h.rank) for h in got.hits]))
        with world.unit(user, readonly=True) as uow:
            items, truncated = service.search_records(uow, "lead", "common", filter_text="company != 'Common 7'",
                                                      fields=["company"])
            out.append((user, "filtered", truncated, [i["id"] for i in items]))
    return out


def test_postgresql_reads_a_text_most_records_hold_newest_first_with_the_same_answer(
        pg_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "CANDIDATES", 6)
    add(pg_world, "admin", "Common", *(f"Common {i}" for i in range(300)), "Rare one",
        *(f"Other {i}" for i in range(100)))
    add(pg_world, "bob", *(f"Common bob {i}" for i in range(40)), "Rare two")
    with pg_world.rt.engine.begin() as conn:
        conn.execute(text("ANALYZE lead"))
    with pg_world.unit("admin", readonly=True) as uow:
        plan, access = service.open_entity(uow, "lead", "read")
        fields = service.searchable(uow, "lead")
        rows = uow.conn.execute(service._PG_SETTINGS, {"v": "0.4", "t": "lead"}).one()[2]
        assert rows == 443  # the table's size as its statistics say, read with the search's settings
        for _again in range(4):  # past psycopg's prepare threshold (5): still estimated for each text
            assert service._common(uow, plan, access, fields, [], service._params("common", fields), rows) is True
            assert service._common(uow, plan, access, fields, [], service._params("rare", fields), rows) is False
    chosen = _answers(pg_world)
    assert chosen[0][2] is True and len(chosen[0][3]) == 6  # "common": truncated, the best of the newest six
    monkeypatch.setattr(service, "COMMON", 2.0)  # never newest first: every match through the trigram indexes
    assert _answers(pg_world) == chosen
    monkeypatch.setattr(service, "COMMON", 0.0)  # always newest first
    assert _answers(pg_world) == chosen


def test_postgresql_finds_two_characters_through_its_bigram_index(pg_world: World) -> None:
    add(pg_world, "admin", "华泰精密", "王华泰", "华泰", "Acme", "Zed", *(f"Other {i}" for i in range(30)))
    add(pg_world, "bob", "上海华泰公司", "Bob acme")
    with pg_world.rt.engine.begin() as conn:
        conn.execute(text("ANALYZE lead"))
    with pg_world.unit("admin", readonly=True) as uow:
        plan, _access = service.open_entity(uow, "lead", "read")
        fields = service.searchable(uow, "lead")
        assert service._kind(uow, plan, fields, "华泰", service._params("华泰", fields)) == "bigram"
    with_index = [(u, q, found(pg_world, u, q)) for u in ("admin", "bob", "dave") for q in ("华泰", "AC", "泰精")]
    assert with_index[0][2] == [("华泰", "exact"), ("华泰精密", "prefix"), ("上海华泰公司", "contains"),
                                ("王华泰", "contains")]
    assert {t for t, _ in with_index[4][2]} == {"Bob acme"}  # bob: his own leads only
    with pg_world.rt.engine.begin() as conn:  # a database from before the index: read newest first
        conn.execute(text("DROP INDEX ix_lead_search_bigrams"))
    again = Runtime.open(pg_world.url, clock=pg_world.clock)
    try:
        old = World(again, pg_world.clock, pg_world.url, pg_world.ids)
        with old.unit("admin", readonly=True) as uow:
            plan, _access = service.open_entity(uow, "lead", "read")
            assert service._kind(uow, plan, fields, "华泰", service._params("华泰", fields)) == "scan"
        assert [(u, q, found(old, u, q)) for u in ("admin", "bob", "dave")
                for q in ("华泰", "AC", "泰精")] == with_index
    finally:
        again.close()


@pytest.mark.parametrize("common", [2.0, 0.0], ids=["through-the-indexes", "newest-first"])
def test_every_path_finds_exactly_the_records_holding_the_text(world: World, monkeypatch: pytest.MonkeyPatch,
                                                               common: float) -> None:
    """Property: for any text of one to four characters -- each taking its own path (one character: read
    newest first; two: SQLite's vocabulary, PostgreSQL's bigram index; three and more: the trigram
    indexes; on PostgreSQL each of those read newest first when the text is common) -- the hits are exactly
    the records whose company holds it, case-insensitively for A-Z."""
    monkeypatch.setattr(service, "COMMON", common)
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from engine.dsl.expressions.functions import py_lower

    rng = random.Random(7)
    companies = ["".join(rng.choice("aAb精密x ") for _ in range(rng.randint(1, 9))).strip() or "a"
                 for _ in range(60)]
    ids = add(world, "admin", *companies)
    with world.rt.engine.begin() as conn:
        conn.execute(text("ANALYZE lead" if not world.url.startswith("sqlite") else "ANALYZE"))

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.text(alphabet="aAb精密x", min_size=1, max_size=4))
    def check(q: str) -> None:
        low = py_lower(q) or ""
        expected = {i for i, c in zip(ids, companies, strict=True) if low in (py_lower(c) or "")}
        got = page(world, "admin", q, limit=service.MAX_LIMIT)
        found_ids = {h.id for h in got.hits if h.rank != service.RANKS.index("similar")}
        assert found_ids == expected, (q, sorted(found_ids ^ expected))

    check()
