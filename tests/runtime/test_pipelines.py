"""The stage gate on the write path, on both databases: refusals, probability, closing, stage history with
durations (injected clock), lost reasons, transition roles, playbook tasks, and follow-up stamps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from engine.errors import GateRefused
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.sales import pipelines
from tests.conftest import fresh_database
from tests.runtime.conftest import World, build_world

FILES = {
    "workspace.yaml": """
        workspace: acme
        locale: zh
        currency: CNY
    """,
    "entities/deal.yaml": """
        entity: deal
        title: "{name}"
        fields:
          name: {type: string, required: true, max_length: 50}
          amount: {type: money, min: 0}
          stage:
            type: picklist
            default: new
            options:
              - {key: new, label: {en: New, zh: 新商机}}
              - {key: qualified, label: {en: Qualified, zh: 已确认}}
          probability: {type: percent}
          weighted: {type: money, formula: "coalesce(amount, 0) * coalesce(probability, 0) / 100"}
          closed_at: {type: datetime, readonly: true}
          lost_reason: {type: picklist, options: [price, timing]}
          last_activity_at: {type: datetime, readonly: true}
          next_step_date: {type: date}
    """,
    "entities/task.yaml": """
        entity: task
        fields:
          subject: {type: string, required: true, max_length: 200}
          status: {type: picklist, default: open, options: [open, done, cancelled]}
          priority: {type: picklist, default: normal, options: [normal, high]}
          due_date: {type: date}
          deal: {type: reference, to: deal}
    """,
    "entities/activity.yaml": """
        entity: activity
        fields:
          subject: {type: string, required: true}
          occurred_at: {type: datetime}
          next_step_date: {type: date}
          deal: {type: reference, to: deal}
    """,
    "pipelines/deal_flow.yaml": """
        pipeline: deal_flow
        entity: deal
        transitions:
          - [new, qualified]
          - {from: qualified, to: [proposal, won]}
          - {from: proposal, to: won}
          - {from: "*", to: lost}
          - {from: [won, lost], to: new, roles: [manager]}
        stages:
          - {key: new, probability: 10}
          - key: qualified
            probability: 40
            requires_tasks_done: true
            tasks:
              - {subject: {en: Call the buyer, zh: 致电采购}, due_in_days: 2, priority: high}
              - {subject: Send the brochure, owner: "coalesce(manager_of(owner), owner)"}
          - key: proposal
            label: {zh: 方案}
            probability: 60
            requires: [amount]
            gate: "amount >= 100"
            message: {en: A proposal needs an amount of at least 100, zh: 方案金额至少为100}
          - {key: won, probability: 100, outcome: won}
          - {key: lost, probability: 0, outcome: lost, requires: [lost_reason]}
    """,
    "roles/roles.yaml": """
        role: admin
        admin: true
        ---
        role: sales
        permissions:
          deal: {read: own, create: true, update: own, delete: none}
          task: {read: own, create: true, update: own, delete: none}
          activity: {read: own, create: true, update: own, delete: none}
        ---
        role: manager
        permissions:
          deal: {read: team, create: true, update: team, delete: team}
          task: {read: team, create: true, update: team, delete: team}
          activity: {read: team, create: true, update: team, delete: team}
        ---
        role: viewer
        permissions:
          deal: {read: all}
          activity: {read: own, create: true, update: own}
    """,
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One applied workspace per back end for the module; tests make their own deals."""
    with fresh_database(request, request.param, tmp_path_factory.mktemp("db"), "crm_pipe") as url:
        w = build_world(url, tmp_path_factory.mktemp("ws"), FILES)
        try:
            yield w
        finally:
            w.rt.close()


def _deal(w: World, who: str = "alice", **values: Any) -> dict[str, Any]:
    with w.unit(who) as uow:
        return uow.records.create("deal", {"name": "Line 4", **values})  # type: ignore[no-any-return]


def _move(w: World, deal_id: int, stage: str, who: str = "alice", **values: Any) -> dict[str, Any]:
    with w.unit(who) as uow:
        return pipelines.transition(uow, "deal", deal_id, stage, values=values)


def _refusal(w: World, deal_id: int, stage: str, who: str = "alice", **values: Any) -> GateRefused:
    with pytest.raises(GateRefused) as info:
        _move(w, deal_id, stage, who, **values)
    assert info.value.code == "stage_gate"
    return info.value


def _finish_tasks(w: World, deal_id: int) -> None:
    with w.unit("admin") as uow:
        uow.records.update_many("task", f"deal == {deal_id}", {"status": "done"})


def test_probability_and_formulas_follow_the_stage(world: World) -> None:
    d = _deal(world, amount=500)
    assert d["probability"] == Decimal("10.0000") and d["weighted"] == Decimal("50.00")
    moved = _move(world, d["id"], "qualified")
    assert moved["probability"] == Decimal("40.0000") and moved["weighted"] == Decimal("200.00")
    assert moved["closed_at"] is None


def test_a_refused_move_names_the_missing_field_and_the_failed_gate(world: World) -> None:
    d = _deal(world)
    _move(world, d["id"], "qualified")
    _finish_tasks(world, d["id"])
    err = _refusal(world, d["id"], "proposal")
    assert err.details["missing"] == ["amount"] and err.details["to"] == "proposal"
    assert err.details["fields"] == {"amount": ["is required to enter stage 'proposal'"]}
    assert "cannot enter stage '方案' (proposal)" in err.message
    small = _refusal(world, d["id"], "proposal", amount=50)
    assert "missing" not in small.details
    assert small.details["gate"] == {"expression": "amount >= 100",
                                     "message": "方案金额至少为100 (A proposal needs an amount of at least 100)"}
    assert "方案金额至少为100" in small.message
    with world.unit("alice") as uow:  # nothing was written by the refused moves
        assert uow.records.get("deal", d["id"])["stage"] == "qualified"
    assert _move(world, d["id"], "proposal", amount=150)["stage"] == "proposal"


def test_every_write_path_passes_the_gate(world: World) -> None:
    d = _deal(world)
    with world.unit("alice") as uow, pytest.raises(GateRefused):  # PATCH-like update
        uow.records.update("deal", d["id"], {"stage": "won"}, expected_version=None)
    with world.unit("alice") as uow, pytest.raises(GateRefused) as bulk:
        uow.records.update_many("deal", f"id == {d['id']}", {"stage": "won"})
    assert bulk.value.details["transition"] == "not_allowed"
    with world.unit("system") as uow, pytest.raises(GateRefused) as imported:  # an import, as the system
        uow.records.create_many("deal", [{"name": "ok"}, {"name": "x", "stage": "proposal"}])
    assert imported.value.details["missing"] == ["amount"]
    with world.unit("system") as uow:
        outcome = uow.records.create_each("deal", [{"name": "ok"}, {"name": "x", "stage": "lost"}])
    assert outcome.ids[0] is not None and outcome.ids[1] is None and list(outcome.errors) == [1]
    assert outcome.errors[1].details == {"lost_reason": ["is required to enter stage 'lost'"],
                                         "hint": "fill in lost_reason, then move the record again"}


def test_a_lost_deal_needs_a_reason_and_closing_stamps_closed_at(world: World) -> None:
    d = _deal(world, amount=10)
    err = _refusal(world, d["id"], "lost")
    assert err.details["missing"] == ["lost_reason"]
    assert "lost_reason" in (err.hint or "")
    lost = _move(world, d["id"], "lost", lost_reason="price")
    assert lost["closed_at"] == world.clock.now() and lost["probability"] == Decimal("0.0000")
    assert lost["weighted"] == Decimal("0.00")


def test_transitions_follow_the_list_and_its_roles(world: World) -> None:
    d = _deal(world)
    skip = _refusal(world, d["id"], "proposal")
    assert skip.details["transition"] == "not_allowed"
    assert skip.details["allowed"] == ["qualified", "lost"]
    assert "from 'new' you may move to: qualified, lost" in (skip.hint or "")
    _move(world, d["id"], "lost", lost_reason="timing")
    rep = _refusal(world, d["id"], "new")  # reopening is for managers
    assert rep.details["allowed"] == [] and "for your roles (sales)" in rep.message
    reopened = _move(world, d["id"], "new", who="carol")
    assert reopened["stage"] == "new" and reopened["closed_at"] is None
    admin = _deal(world, who="admin")
    assert _move(world, admin["id"], "won", who="admin")["stage"] == "won"  # an admin may make any move


def test_stage_history_records_each_stay_with_its_duration(world: World) -> None:
    start = world.clock.now()
    d = _deal(world, amount=300)
    world.clock.advance(hours=2)
    _move(world, d["id"], "qualified")
    world.clock.advance(days=1, minutes=30)
    _finish_tasks(world, d["id"])
    _move(world, d["id"], "proposal")
    world.clock.advance(seconds=45)
    with world.unit("alice", readonly=True) as uow:
        history = pipelines.stage_history(uow, "deal", d["id"])
    items = history["items"]
    assert [(i["from"], i["to"]) for i in items] == [(None, "new"), ("new", "qualified"), ("qualified", "proposal")]
    assert [i["duration_seconds"] for i in items] == [7200, 86400 + 1800, None]
    assert items[0]["entered_at"] == start and items[0]["left_at"] == start + dt.timedelta(hours=2)
    assert items[2]["seconds_so_far"] == 45 and items[1]["label"] == "已确认"
    assert {i["actor"] for i in items} == {"alice"}
    with world.unit("dave", readonly=True) as uow, pytest.raises(Exception) as hidden:
        pipelines.stage_history(uow, "deal", d["id"])  # dave may not read alice's deal
    assert getattr(hidden.value, "code", None) == "not_found"
    world.clock.set(start)


def test_entering_a_stage_creates_its_tasks_and_leaving_needs_them_done(world: World) -> None:
    d = _deal(world, amount=300)
    _move(world, d["id"], "qualified")
    with world.unit("admin", readonly=True) as uow:
        tasks = uow.records.list("task", filter=f"deal == {d['id']}", sort="id").items
    assert [t["subject"] for t in tasks] == ["致电采购", "Send the brochure"]
    assert [t["pipeline_stage"] for t in tasks] == ["qualified", "qualified"]
    assert tasks[0]["due_date"] == world.clock.now().date() + dt.timedelta(days=2)
    assert tasks[0]["priority"] == "high" and tasks[1]["due_date"] is None
    assert tasks[0]["owner_id"] == world.ids["alice"] and tasks[1]["owner_id"] == world.ids["carol"]
    err = _refusal(world, d["id"], "proposal")
    assert [t["subject"] for t in err.details["open_tasks"]] == ["致电采购", "Send the brochure"]
    assert "2 tasks of stage 'qualified' are not done" in err.message
    with world.unit("alice") as uow:
        uow.records.update("task", tasks[0]["id"], {"status": "done"}, expected_version=None)
    with world.unit("carol") as uow:
        uow.records.update("task", tasks[1]["id"], {"status": "cancelled"}, expected_version=None)
    assert _move(world, d["id"], "proposal")["stage"] == "proposal"


def test_an_activity_stamps_the_deal_it_is_linked_to(world: World) -> None:
    d = _deal(world)
    now = world.clock.now()
    with world.unit("vera") as uow:  # may read every deal and log activities, but update none
        uow.records.create("activity", {"subject": "call", "deal": d["id"], "occurred_at": now - dt.timedelta(hours=1),
                                        "next_step_date": "2026-02-01"})
    with world.unit("alice", readonly=True) as uow:
        stamped = uow.records.get("deal", d["id"])
        entries = [e for e in uow.records.history("deal", d["id"]) if e.field == "last_activity_at"]
    assert stamped["last_activity_at"] == now - dt.timedelta(hours=1)
    assert stamped["next_step_date"] == dt.date(2026, 2, 1)
    assert entries and entries[0].actor == "vera"  # the audit names who logged it
    with world.unit("vera") as uow:  # an older activity does not move the stamp back
        uow.records.create("activity", {"subject": "old", "deal": d["id"], "occurred_at": now - dt.timedelta(days=9)})
    with world.unit("alice", readonly=True) as uow:
        assert uow.records.get("deal", d["id"])["last_activity_at"] == now - dt.timedelta(hours=1)
    with world.unit("vera") as uow:  # a planned meeting stamps no later than now
        uow.records.create("activity", {"subject": "plan", "deal": d["id"], "occurred_at": now + dt.timedelta(days=3)})
    with world.unit("alice", readonly=True) as uow:
        assert uow.records.get("deal", d["id"])["last_activity_at"] == now


def test_handover_moves_deals_through_the_pipeline_without_moving_stages(world: World) -> None:
    with world.unit("admin") as uow:
        uid = users.create_user(uow, "erin", roles=["sales"], team="east")
    erin = world.actor("erin")
    with world.rt.unit(erin) as uow:
        d = uow.records.create("deal", {"name": "Erin's"})
    with world.rt.unit(Actor.system()) as uow:
        moved = users.handover(uow, uid, "alice")
    assert moved["deal"] == 1
    with world.unit("alice", readonly=True) as uow:
        assert uow.records.get("deal", d["id"])["stage"] == "new"
        assert len(pipelines.stage_history(uow, "deal", d["id"])["items"]) == 1
