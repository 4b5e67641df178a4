"""Bulk writes with per-row outcomes: a bad row is reported, the others kept, the unit of work goes on."""

from __future__ import annotations

import pytest
from conftest import World

from engine.errors import UniqueViolation


def test_create_each_reports_the_clashing_row_and_keeps_the_others(world: World) -> None:
    with world.unit() as uow:
        uow.records.create("deal", {"name": "first", "code": "C1"})
    with world.unit() as uow:
        out = uow.records.create_each("deal", [
            {"name": "a", "code": "C2"}, {"name": "b", "code": "C1"}, {"name": None}, {"name": "c", "code": "C3"},
            {"name": "d", "code": "C3"}])
        assert out.ids[0] and out.ids[3] and out.ids[1] is None and out.ids[2] is None and out.ids[4] is None
        assert set(out.errors) == {1, 2, 4}
        assert out.errors[1].code == "unique_violation" and "code" in out.errors[1].details
        assert out.errors[2].code == "validation_failed" and out.errors[2].details == {"name": ["is required"]}
        assert out.errors[4].code == "unique_violation"  # clashes with a row of the same call
        later = uow.records.create("deal", {"name": "after", "code": "C4"})  # the unit of work goes on
        events = [(e.kind, e.record_id) for e in uow.events]
    assert events == [("created", out.ids[0]), ("created", out.ids[3]), ("created", later["id"])]
    with world.unit(readonly=True) as uow:
        names = sorted(r["name"] for r in uow.records.list("deal").items)
        assert names == ["a", "after", "c", "first"]
        assert len(uow.records.history("deal", out.ids[0])) >= 1


def test_create_each_fast_path_when_the_batch_is_accepted(world: World) -> None:
    with world.unit() as uow:
        out = uow.records.create_each("deal", [{"name": f"n{i}"} for i in range(5)])
    assert out.errors == {} and len(out.written) == 5 and out.written == sorted(out.written)


def test_create_many_stays_all_or_nothing(world: World) -> None:
    with world.unit() as uow:
        uow.records.create("deal", {"name": "first", "code": "C1"})
    with pytest.raises(UniqueViolation), world.unit() as uow:
        uow.records.create_many("deal", [{"name": "b", "code": "C2"}, {"name": "c", "code": "C1"}])


def test_update_each_keeps_the_rows_that_pass(world: World) -> None:
    with world.unit() as uow:
        ids = [uow.records.create("deal", {"name": f"u{i}", "amount": a})["id"] for i, a in enumerate((10, 1, 20))]
        uow.records.create("deal", {"name": "taken", "code": "X"})
    with world.unit() as uow:
        # the rule `amount >= quantity` fails for the deal of amount 1 only
        out = uow.records.update_each("deal", 'startswith(name, "u")', {"quantity": 5})
        assert out.ids == (ids[0], None, ids[2]) and out.errors[1].record_id == ids[1]
        assert out.errors[1].details == {"_record": ["金额不能小于数量 (The amount must cover the quantity)"]}
        clash = uow.records.update_each("deal", f"id == {ids[0]} or id == {ids[2]}", {"code": "X"})
        assert clash.ids == (None, None) and {e.code for e in clash.errors.values()} == {"unique_violation"}
        uow.records.update("deal", ids[0], {"name": "still works"}, expected_version=None)
    with world.unit(readonly=True) as uow:
        got = {r["id"]: r for r in uow.records.list("deal").items}
    assert got[ids[0]]["quantity"] == 5 and got[ids[0]]["name"] == "still works"
    assert got[ids[1]]["quantity"] is None and got[ids[2]]["quantity"] == 5 and got[ids[2]]["code"] is None
