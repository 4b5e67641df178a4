"""Purging the recycle bin for good (both databases): records deleted before the cut-off are exported with
their lines, then deleted with a ``purge`` audit row; a record other rows still refer to is kept and named;
a dry run writes nothing; ``crm purge-deleted`` does the same from the command line."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from engine.errors import Conflict, NotFound, PermissionDenied
from engine.runtime.engine_tables import crm_audit
from tests.runtime.conftest import World

STAMP = "20260501T000000Z"


def _setup(world: World) -> dict[str, int]:
    """At t0: account A with deal d1 (two lines) referring to it, both deleted; account B, deleted, that a live
    deal d3 still refers to.  Fifty days later: deal d2 deleted."""
    with world.unit() as uow:
        rec = uow.records
        a = rec.create("account", {"name": "Alpha"})
        b = rec.create("account", {"name": "Beta"})
        d1 = rec.create("deal", {"name": "One", "code": "C-1", "account": a["id"],
                                 "lines": [{"product": "pump", "qty": 2}, {"product": "valve"}]})
        d2 = rec.create("deal", {"name": "Two"})
        d3 = rec.create("deal", {"name": "Three", "account": b["id"]})
        for entity, rid in (("deal", d1["id"]), ("account", a["id"]), ("account", b["id"])):
            rec.delete(entity, rid)
    world.clock.advance(days=50)
    with world.unit() as uow:
        uow.records.delete("deal", d2["id"])
    world.clock.advance(days=45)  # now: t0 + 95 days
    return {"a": a["id"], "b": b["id"], "d1": d1["id"], "d2": d2["id"], "d3": d3["id"]}


def _live_ids(world: World, entity: str) -> set[int]:
    with world.unit("system", readonly=True) as uow:
        t = uow.state.plan(entity).table
        return {int(i) for i in uow.conn.execute(select(t.c.id)).scalars()}


def test_purge_exports_then_deletes_what_nothing_refers_to(world: World, tmp_path: Path):
    ids = _setup(world)
    tmp_path = tmp_path / "exports"
    before = world.clock.now() - dt.timedelta(days=90)
    with world.unit() as uow:
        dry = uow.records.purge_deleted(before=before, entity=None, export_dir=tmp_path, stamp=STAMP, dry_run=True)
    assert {o.entity: (o.purged, o.kept) for o in dry} == {"account": (1, 1), "deal": (1, 0)}
    assert not tmp_path.exists() and ids["d1"] in _live_ids(world, "deal")

    with world.unit() as uow:
        done = {o.entity: o for o in uow.records.purge_deleted(before=before, entity=None, export_dir=tmp_path,
                                                                 stamp=STAMP)}
    assert (done["deal"].purged, done["account"].purged) == (1, 1)  # d1, then A once d1 was gone
    assert (done["account"].kept, done["account"].kept_by) == (1, ("deal.account",))  # B: live d3 refers to it
    assert "1 record kept, still referred to by deal.account" in done["account"].describe()
    assert _live_ids(world, "deal") == {ids["d2"], ids["d3"]}  # d2 was deleted 45 days ago: not yet
    assert _live_ids(world, "account") == {ids["b"]}
    with world.unit("system", readonly=True) as uow:
        lines = uow.state.plan(uow.state.plan("deal").lines["lines"]).table
        assert uow.conn.execute(select(lines.c.id).where(lines.c.parent_id == ids["d1"])).first() is None
        purges = uow.conn.execute(select(crm_audit.c.entity, crm_audit.c.record_id).where(
            crm_audit.c.action == "purge")).all()
        assert sorted(purges) == [("account", ids["a"]), ("deal", ids["d1"])]
        with pytest.raises(NotFound):
            uow.records.history("deal", ids["d1"])

    [deal] = [json.loads(line) for line in (tmp_path / f"deal.deleted.{STAMP}.jsonl").read_text("utf-8").splitlines()]
    assert (deal["id"], deal["code"], deal["account"]) == (ids["d1"], "C-1", ids["a"])
    assert deal["deleted_at"].startswith("2026-01-15")
    assert [(line["product"], line["qty"]) for line in deal["lines"]] == [("pump", "2.00"), ("valve", "1.00")]
    [account] = [json.loads(line) for line in (tmp_path / f"account.deleted.{STAMP}.jsonl").read_text().splitlines()]
    assert account["name"] == "Alpha"

    # an export is never overwritten; a non-admin may not purge
    world.clock.advance(days=60)
    with pytest.raises(Conflict) as info, world.unit() as uow:
        uow.records.purge_deleted(before=world.clock.now(), entity="deal", export_dir=tmp_path, stamp=STAMP)
    assert info.value.code == "export_exists"
    assert ids["d2"] in _live_ids(world, "deal")
    with pytest.raises(PermissionDenied), world.unit("carol") as uow:
        uow.records.purge_deleted(before=world.clock.now(), entity=None, export_dir=tmp_path, stamp="x")


def test_crm_purge_deleted_on_the_command_line(world: World, tmp_path: Path):
    from engine.cli import main

    ids = _setup(world)  # the command runs on the real clock: every record deleted in 2026-01 is old enough
    runner = CliRunner()
    folder = tmp_path / "ws"
    dry = runner.invoke(main, ["purge-deleted", str(folder), "--older-than", "90d", "--entity", "deal",
                               "--dry-run", "--db", world.url])
    assert dry.exit_code == 0, dry.output
    assert "would purge: deal: 2 records purged" in dry.output and "dry run: nothing was written" in dry.output
    result = runner.invoke(main, ["purge-deleted", str(folder), "--older-than", "90d", "--db", world.url])
    assert result.exit_code == 0, result.output
    assert "deal: 2 records purged (exported to" in result.output
    assert "account: 1 record purged" in result.output and "still referred to by deal.account" in result.output
    exports = sorted(p.name.split(".")[0] for p in (folder / "exports").iterdir())
    assert exports == ["account", "deal"]
    assert _live_ids(world, "deal") == {ids["d3"]}
    again = runner.invoke(main, ["purge-deleted", str(folder), "--older-than", "90d", "--entity", "deal",
                                 "--db", world.url])
    assert again.exit_code == 0 and "no deal record was deleted before" in again.output
    bad = runner.invoke(main, ["purge-deleted", str(folder), "--older-than", "soon", "--db", world.url])
    assert bad.exit_code != 0 and "not a duration" in bad.output
    zero = runner.invoke(main, ["purge-deleted", str(folder), "--older-than", "0d", "--db", world.url])
    assert zero.exit_code != 0 and "must be more than zero" in zero.output and "not a duration" not in zero.output
    unknown = runner.invoke(main, ["purge-deleted", str(folder), "--older-than", "1d", "--entity", "deel",
                                   "--db", world.url])
    assert unknown.exit_code == 1 and "deal" in unknown.output and "Traceback" not in unknown.output
