"""Lead pools on SQLite and PostgreSQL: claim, return, assign, move, reveal, the limits, masking in every
read, the write step, and the recycle job with its warnings and its dry run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.errors import BadRequest, Conflict, EngineError, PermissionDenied, ValidationFailed
from engine.runtime import notify
from engine.runtime.engine_tables import crm_audit, crm_notifications, crm_pool_log
from engine.runtime.jobs.worker import Worker
from engine.runtime.sales import pools
from tests.runtime.conftest import World, build_world
from tests.runtime.pool_world import FILES, held_by, pooled

PHONE = "+8613800138000"


@pytest.fixture(name="world")
def pool_world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path / "ws", FILES)
    try:
        yield w
    finally:
        w.rt.close()


def refused(fn: Any, *args: Any, error: type[EngineError] = Conflict) -> EngineError:
    with pytest.raises(error) as info:
        fn(*args)
    return info.value


def notes(world: World, user: str) -> list[notify.Notification]:
    with world.unit(user, readonly=True) as uow:
        return notify.list_for(uow.conn, world.ids[user])


def log_rows(world: World, action: str, record_id: int | None = None) -> list[Any]:
    with world.unit("system", readonly=True) as uow:
        stmt = select(crm_pool_log).where(crm_pool_log.c.action == action)
        if record_id is not None:
            stmt = stmt.where(crm_pool_log.c.record_id == record_id)
        return list(uow.conn.execute(stmt.order_by(crm_pool_log.c.id)))


# --------------------------------------------------------------------------- masking


def test_unclaimed_records_are_masked_for_everyone_until_claimed(world: World) -> None:
    a, b = pooled(world, "east_pool", 2)
    with world.unit("admin") as uow:
        act = uow.records.create("activity", {"subject": "call", "lead": b})
    with world.unit("vera", readonly=True) as uow:  # reads every lead
        got = uow.records.get("lead", a)
        assert (got["phone"], got["email"], got["owner_id"]) == ("+86 138****8000", "j***@acme.com", None)
        assert uow.records.get("lead", a, fields=["phone"])["phone"] == "+86 138****8000"  # no pool key selected
        listed = {r["id"]: r for r in uow.records.list("lead").items}
        assert listed[a]["phone"] == listed[b]["phone"] == "+86 138****8000"
        expanded = uow.records.get("activity", act["id"], expand=["lead"])
        assert expanded["lead"]["phone"] == "+86 138****8000"
        history = uow.records.history("lead", a)
        assert history[0].new["phone"] == "+86 138****8000" and history[0].new["email"] == "j***@acme.com"
    with world.unit("admin", readonly=True) as uow:  # administrators too
        assert uow.records.get("lead", a)["phone"] == "+86 138****8000"
    with world.unit("alice") as uow:
        claimed = pools.claim(uow, "east_pool", a)
        assert (claimed["phone"], claimed["email"], claimed["owner_id"]) == (PHONE, "john@acme.com", world.ids["alice"])
        assert uow.records.history("lead", a)[0].new["phone"] == PHONE  # the holder reads the history too
    with world.unit("vera", readonly=True) as uow:
        assert uow.records.get("lead", a)["phone"] == PHONE and uow.records.get("lead", b)["phone"] != PHONE


def test_filters_and_sorts_on_a_masked_field_leave_the_masked_records_out(world: World) -> None:
    a, b = pooled(world, "east_pool", 2)
    held_by(world, "alice", [a])
    with world.unit("vera", readonly=True) as uow:
        page = uow.records.list("lead", filter=f"phone == '{PHONE}'", count=True)
        assert [r["id"] for r in page.items] == [a] and page.total == 1  # b matches but is masked
        assert [r["id"] for r in uow.records.list("lead", sort="phone").items] == [a]
        assert {r["id"] for r in uow.records.list("lead", filter="company != ''").items} == {a, b}
    with world.unit("system", readonly=True) as uow:  # the system works with stored values
        assert {r["id"] for r in uow.records.list("lead", filter=f"phone == '{PHONE}'").items} == {a, b}


def test_the_pool_list_shows_unclaimed_records_to_members_and_refuses_masked_filters(world: World) -> None:
    ids = pooled(world, "east_pool", 3)
    held_by(world, "bob", ids[:1])
    with world.unit("alice", readonly=True) as uow:
        page = pools.records(uow, "east_pool", count=True)
        assert sorted(r["id"] for r in page.items) == ids[1:] and page.total == 2
        assert {r["phone"] for r in page.items} == {"+86 138****8000"}
        assert [r["id"] for r in pools.records(uow, "east_pool", filter="company == 'east_pool lead 2'").items] == \
            [ids[2]]
        with pytest.raises(BadRequest) as info:
            pools.records(uow, "east_pool", filter=f"phone == '{PHONE}'")
        assert info.value.code == "masked_field" and "phone is hidden" in info.value.message
        with pytest.raises(BadRequest) as info:
            pools.records(uow, "east_pool", sort="-email")
        assert info.value.code == "masked_field"
    with world.unit("dave", readonly=True) as uow:
        with pytest.raises(PermissionDenied) as denied:
            pools.records(uow, "east_pool")
        assert denied.value.code == "not_pool_member" and "team east" in denied.value.message
        with pytest.raises(PermissionDenied) as ghost:
            pools.records(uow, "ghost_pool")
        assert "teams that do not exist: ghosts" in ghost.value.message and "pools.yaml" in (ghost.value.hint or "")
        assert [p["name"] for p in pools.overview(uow)] == []
    with world.unit("alice", readonly=True) as uow:
        mine = {p["name"]: p for p in pools.overview(uow)}
        assert set(mine) == {"east_pool", "north_pool", "bulk_pool"}
        east = mine["east_pool"]
        assert (east["unclaimed"], east["holding_limit"], east["daily_claim_limit"], east["reclaim_cooldown"]) == \
            (2, 3, 4, "3d")
        assert east["member"] and not east["admin"] and east["hidden_fields"] == ["phone", "email"]


# --------------------------------------------------------------------------- claim and its limits


def test_claim_limits_holding_daily_cap_and_cooldown(world: World) -> None:
    ids = pooled(world, "east_pool", 7)
    with world.unit("alice") as uow:
        for rid in ids[:3]:
            pools.claim(uow, "east_pool", rid)
    with world.unit("alice") as uow:
        err = refused(pools.claim, uow, "east_pool", ids[3])
        assert err.code == "holding_limit" and err.details == {"limit": 3, "held": 3}
        assert "hold 3 records" in err.message and "holding limit is 3" in err.message
    with world.unit("alice") as uow:  # a converted record does not count
        uow.records.update("lead", ids[0], {"status": "converted"}, expected_version=None)
        pools.claim(uow, "east_pool", ids[3])
    with world.unit("alice") as uow:
        pools.return_record(uow, "east_pool", ids[1], "unreachable")
    with world.unit("alice") as uow:
        err = refused(pools.claim, uow, "east_pool", ids[4])
        assert err.code == "daily_claim_limit" and err.details["claimed_today"] == 4 and err.details["limit"] == 4
        err = refused(pools.claim, uow, "east_pool", ids[1])  # the cap is checked after the cool-down
        assert err.code == "reclaim_cooldown" and err.details["until"] == world.clock.now() + dt.timedelta(days=3)
    with world.unit("bob") as uow:
        assert pools.claim(uow, "east_pool", ids[1])["owner_id"] == world.ids["bob"]
        err = refused(pools.claim, uow, "east_pool", ids[2])
        assert err.code == "already_claimed"
    world.clock.advance(days=1)
    with world.unit("alice") as uow:  # a new day
        pools.claim(uow, "east_pool", ids[4])


def test_claims_need_membership_and_a_claim_pool(world: World) -> None:
    [a] = pooled(world, "east_pool", 1)
    [n] = pooled(world, "north_pool", 1, region="north")
    with world.unit("dave") as uow:
        assert refused(pools.claim, uow, "east_pool", a, error=PermissionDenied).code == "not_pool_member"
    with world.unit("alice") as uow:
        err = refused(pools.claim, uow, "north_pool", n, error=PermissionDenied)
        assert err.code == "assign_only" and "handed out by its admins" in err.message
        assert refused(pools.claim, uow, "east_pool", n).code == "not_in_pool"
        assert refused(pools.claim, uow, "nowhere", a, error=EngineError).code == "unknown_pool"


# --------------------------------------------------------------------------- return, assign, move, reveal


def test_return_needs_a_listed_reason_and_the_holder_or_an_admin(world: World) -> None:
    a, b, c = pooled(world, "east_pool", 3)
    held_by(world, "alice", [a, b, c])
    with world.unit("alice") as uow:
        assert refused(pools.return_record, uow, "east_pool", a, None, error=BadRequest).code == "reason_required"
        err = refused(pools.return_record, uow, "east_pool", a, "bored", error=BadRequest)
        assert err.code == "bad_reason" and "unreachable, no_need" in err.details["reason"][0]
    with world.unit("bob") as uow:
        assert refused(pools.return_record, uow, "east_pool", a, "no_need", error=PermissionDenied).code == "not_holder"
    with world.unit("alice") as uow:
        assert pools.return_record(uow, "east_pool", a, "unreachable")["pool"] == "east_pool"
        assert refused(pools.return_record, uow, "east_pool", a, "unreachable").code == "not_held"
    with world.unit("carol") as uow:  # a pool admin returns alice's record: alice is told
        pools.return_record(uow, "east_pool", b, "no_need")
    [note] = [n for n in notes(world, "alice") if n.kind == "pool_return"]
    assert note.record_id == b and "carol returned east_pool lead 1 to East pool: No need" in note.text_en
    with world.unit("system") as uow:  # a north lead given back goes to the pool whose `when` holds
        uow.records.update("lead", c, {"region": "north"}, expected_version=None)
    with world.unit("alice") as uow:
        assert pools.return_record(uow, "east_pool", c, "no_need")["pool"] == "north_pool"
    with world.unit("system", readonly=True) as uow:
        got = uow.records.get("lead", c)
        assert (got["pool"], got["owner_id"], got["claimed_at"]) == ("north_pool", None, None)
        assert [e.action for e in uow.records.history("lead", c) if e.field == "owner_id"] == ["update", "return"]
    returns = log_rows(world, "return")
    assert [(r.record_id, r.user_id, r.reason) for r in returns] == [
        (a, world.ids["alice"], "unreachable"), (b, world.ids["alice"], "no_need"), (c, world.ids["alice"], "no_need")]
    assert [r.pool for r in log_rows(world, "enter", c)] == ["east_pool", "north_pool"]


def test_assign_from_an_assign_pool(world: World) -> None:
    n1, n2, n3 = pooled(world, "north_pool", 3, region="north")
    with world.unit("alice") as uow:
        assert refused(pools.assign, uow, "north_pool", n1, "bob", error=PermissionDenied).code == "not_pool_admin"
    with world.unit("carol") as uow:
        assert pools.assign(uow, "north_pool", n1, "alice")["owner_id"] == world.ids["alice"]
        assert refused(pools.assign, uow, "north_pool", n2, "dave", error=BadRequest).code == "assignee_not_member"
        pools.assign(uow, "north_pool", n2, world.ids["alice"])
        err = refused(pools.assign, uow, "north_pool", n3, "alice")
        assert err.code == "holding_limit" and err.message.startswith("alice hold 2")
        assert refused(pools.assign, uow, "north_pool", n1, "bob").code == "already_claimed"
    assert [(n.kind, n.record_id) for n in notes(world, "alice")] == [("pool_assign", n2), ("pool_assign", n1)]
    with world.unit("alice", readonly=True) as uow:
        assert uow.records.get("lead", n1)["phone"] == PHONE
    assert [(r.record_id, r.user_id, r.actor_id) for r in log_rows(world, "assign")] == [
        (n1, world.ids["alice"], world.ids["carol"]), (n2, world.ids["alice"], world.ids["carol"])]


def test_move_and_reveal_by_a_pool_admin(world: World) -> None:
    a, b = pooled(world, "east_pool", 2)
    held_by(world, "bob", [a])
    with world.unit("alice") as uow:
        assert refused(pools.move, uow, "east_pool", a, "north_pool", error=PermissionDenied).code == "not_pool_admin"
        assert refused(pools.reveal, uow, "east_pool", b, "phone", error=PermissionDenied).code == "not_pool_admin"
    with world.unit("carol") as uow:
        assert pools.move(uow, "east_pool", a, "north_pool") == {"id": a, "pool": "north_pool"}
        assert pools.reveal(uow, "east_pool", b, "phone") == {"id": b, "field": "phone", "value": PHONE}
        assert refused(pools.reveal, uow, "east_pool", b, "company", error=BadRequest).code == "bad_request"
    [moved] = [n for n in notes(world, "bob") if n.kind == "pool_move"]
    assert moved.record_id == a and "carol moved east_pool lead 0 to North pool" in moved.text_en
    with world.unit("system", readonly=True) as uow:
        assert (uow.records.get("lead", a)["pool"], uow.records.get("lead", a)["owner_id"]) == ("north_pool", None)
        audit = uow.conn.execute(select(crm_audit.c.action, crm_audit.c.field, crm_audit.c.actor_id).where(
            crm_audit.c.record_id == b, crm_audit.c.action == "reveal")).all()
        assert [tuple(r) for r in audit] == [("reveal", "phone", world.ids["carol"])]
    [reveal] = log_rows(world, "reveal")
    assert (reveal.record_id, reveal.reason, reveal.actor_id) == (b, "phone", world.ids["carol"])
    with world.unit("vera", readonly=True) as uow:  # the history shows the reveal, not the value
        entries = uow.records.history("lead", b)
        assert [(e.action, e.field) for e in entries] == [("create", None), ("reveal", "phone")]


def test_the_write_step_keeps_unclaimed_records_ownerless(world: World) -> None:
    [a] = pooled(world, "east_pool", 1)
    with world.unit("admin") as uow:
        with pytest.raises(ValidationFailed) as info:
            uow.records.update("lead", a, {"owner_id": world.ids["bob"]}, expected_version=None)
        assert "claim it (POST /api/v1/pools/east_pool/claim)" in info.value.details["owner_id"][0]
        with pytest.raises(ValidationFailed) as info:
            uow.records.update("lead", a, {"pool": "north_pool"}, expected_version=None)
        assert info.value.details == {"pool": ["is read-only"]}
        with pytest.raises(ValidationFailed) as info:
            uow.records.create("lead", {"company": "x", "pool": "nowhere"}, bypass_readonly=True)
        assert "unknown pool 'nowhere'" in info.value.details["pool"][0]
        made = uow.records.create("lead", {"company": "y", "region": "east"})
        assert made["owner_id"] == world.ids["admin"]
        assert pools.return_record(uow, "east_pool", made["id"], "no_need")["pool"] == "east_pool"
        got = uow.records.get("lead", made["id"])
        assert got["owner_id"] is None and got["pooled_at"] == world.clock.now()
    enter = log_rows(world, "enter", made["id"])
    assert [(r.pool, r.user_id) for r in enter] == [("east_pool", world.ids["admin"])]


# --------------------------------------------------------------------------- recycling


def test_recycle_warns_two_days_ahead_then_returns_the_lead_as_previewed(world: World) -> None:
    lead, followed, converted, top = pooled(world, "east_pool", 4)
    with world.unit("system") as uow:
        uow.records.update("lead", top, {"grade": "A"}, expected_version=None)
    with world.unit("alice") as uow:
        for rid in (lead, followed, converted):
            pools.claim(uow, "east_pool", rid)
        uow.records.update("lead", converted, {"status": "converted"}, expected_version=None)
    with world.unit("bob") as uow:
        pools.claim(uow, "east_pool", top)
    worker = Worker(world.rt, "w")
    worker.run_once()  # queues the next hourly run
    world.clock.advance(days=5, hours=1)
    with world.unit("system") as uow:  # a follow-up on day 5
        uow.records.update("lead", followed, {"last_activity_at": world.clock.now()}, expected_version=None,
                           bypass_readonly=True)
    with world.unit("carol", readonly=True) as uow:
        [early] = pools.preview(uow, "east_pool")
        assert early.returns == [] and early.warnings == []
    world.clock.advance(days=1)  # day 6: a run at day 8 would return `lead`
    with world.unit("carol", readonly=True) as uow:
        [ahead] = pools.preview(uow, "east_pool")
        assert [(c.id, c.rule.index) for c in ahead.warnings] == [(lead, 1)] and ahead.returns == []
    assert worker.run_once().done >= 1  # the recycle run (and the nightly scoring refresh, when due)
    worker.run_once()
    warnings = [n for n in notes(world, "alice") if n.kind == "pool_recycle_warning"]
    assert [n.record_id for n in warnings] == [lead]
    assert "east_pool lead 0 goes back to East pool within 2d unless you follow it up" in warnings[0].text_en
    world.clock.advance(days=2)  # day 8
    with world.unit("alice", readonly=True) as uow:  # a member previews their own records
        [dry] = pools.preview(uow, "east_pool")
        assert [(c.id, c.rule.index, c.rule.reason["en"]) for c in dry.returns] == [
            (lead, 1, "No follow-up for 7 days")]
        assert dry.to_dict("en")["returns"][0]["to_pool"] == "east_pool"
    with world.unit("bob", readonly=True) as uow:
        assert pools.preview(uow, "east_pool")[0].returns == []  # bob's grade A lead has 15 days
    assert worker.run_once().done >= 1
    with world.unit("system", readonly=True) as uow:
        got = uow.records.get("lead", lead)
        assert (got["pool"], got["owner_id"], got["claimed_at"]) == ("east_pool", None, None)
        for rid, holder in ((followed, "alice"), (converted, "alice"), (top, "bob")):
            assert uow.records.get("lead", rid)["owner_id"] == world.ids[holder]
    [recycled] = [n for n in notes(world, "alice") if n.kind == "pool_recycle"]
    assert recycled.record_id == lead and "went back to East pool: No follow-up for 7 days" in recycled.text_en
    assert [(r.record_id, r.user_id, r.reason) for r in log_rows(world, "recycle")] == [
        (lead, world.ids["alice"], "No follow-up for 7 days")]
    with world.unit("alice") as uow:
        assert refused(pools.claim, uow, "east_pool", lead).code == "reclaim_cooldown"
    assert worker.run_once().done == 0  # nothing runs twice


def test_two_workers_running_the_recycle_job_at_once_return_each_record_once(world: World) -> None:
    import threading

    from engine.runtime.runtime import Runtime

    ids = pooled(world, "bulk_pool", 120)
    held_by(world, "alice", ids[:60])
    held_by(world, "bob", ids[60:])
    world.clock.advance(days=3)
    with world.unit("system") as uow:
        for key in ("a", "b"):
            uow.enqueue("pools.recycle", {}, dedupe_key=f"test:{key}")
    other = Runtime.open(world.url, clock=world.clock)
    try:
        workers = [Worker(world.rt, "w1", batch=1), Worker(other, "w2", batch=1)]
        errors: list[str] = []

        def work(w: Worker) -> None:
            while (done := w.run_once()).ran:
                errors.extend(done.errors)

        threads = [threading.Thread(target=work, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors
    finally:
        other.close()
    recycled = log_rows(world, "recycle")
    assert sorted(r.record_id for r in recycled) == sorted(ids)  # each once
    with world.unit("system", readonly=True) as uow:
        n = crm_notifications
        sent = uow.conn.execute(select(n.c.record_id, func.count()).where(n.c.kind == "pool_recycle")
                                .group_by(n.c.record_id)).all()
        assert len(sent) == 120 and {c for _r, c in sent} == {1}
        left = uow.records.list("lead", filter="pool == 'bulk_pool' and claimed_at is not null", count=True)
        assert left.total == 0
