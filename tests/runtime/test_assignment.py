"""Assignment at run time on both databases: rules in order, round robin on the database cursor, inactive
users skipped, a team with nobody active falling through, least_loaded with weights, territories, who the
rules apply to, route() and explicit reassigns, the notification and the audit row naming the rule."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.errors import BadRequest, Conflict, PermissionDenied
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_assignment_cursors, crm_audit, crm_notifications
from engine.runtime.sales import assignment
from tests.runtime.conftest import World, build_world, write_workspace

LEAD = """
    entity: lead
    title: "{company}"
    fields:
      company: {type: string, required: true}
      grade: {type: picklist, options: [A, B, C]}
      region: {type: picklist, options: [east, north, south, west]}
      status: {type: picklist, options: [open, closed], default: open}
"""
ROUTING = """
    assignment: routing
    entity: lead
    on: [create, reassign]
    created_by: [system, admin]
    rules:
      - {key: top, when: "grade == 'A'", to: {team: senior, strategy: round_robin}}
      - {key: nobody, when: "grade == 'B'", to: {team: empty_team}}
      - {key: balanced, when: "grade == 'B'", to: {team: east, strategy: least_loaded, weights: {alice: 2},
         open: "status == 'open'"}}
      - key: territory
        to:
          field_map:
            field: region
            map: {north: {user: nora}, south: {user: gone}, west: {team: senior}}
      - {key: fallback, when: "region == 'south'", to: {user: dave}}
"""
ROLES = """
    role: admin
    admin: true
    ---
    role: sales
    permissions:
      lead: {read: own, create: true, update: own, delete: none}
    ---
    role: manager
    permissions:
      lead: {read: team, create: true, update: team, delete: none}
    ---
    role: viewer
    permissions:
      lead: {read: all}
"""
SENIOR = ("s1", "s2", "s3")


@pytest.fixture(name="w")
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path / "ws", {"workspace.yaml": "workspace: acme\nlocale: en\n",
                                              "entities/lead.yaml": LEAD, "assignment/routing.yaml": ROUTING,
                                              "roles/roles.yaml": ROLES})
    with w.rt.unit(Actor.system()) as uow:
        users.create_team(uow, "senior")
        users.create_team(uow, "empty_team")
        for name in (*SENIOR, "nora", "gone", "idle"):
            team = "senior" if name in SENIOR else "empty_team" if name == "idle" else None
            w.ids[name] = users.create_user(uow, name, roles=["sales"], team=team)
        users.deactivate_user(uow, "gone")
        users.deactivate_user(uow, "idle")
    try:
        yield w
    finally:
        w.rt.close()


def create(w: World, user: str = "system", **values: Any) -> dict[str, Any]:
    with w.unit(user) as uow:
        record = dict(uow.records.create("lead", {"company": "Acme", **values}))
    with w.unit("system") as uow:
        return dict(uow.records.get("lead", record["id"]))


def name_of(w: World, uid: int | None) -> str | None:
    return next((n for n, i in w.ids.items() if i == uid), None)


def test_round_robin_takes_turns_on_the_database_cursor(w: World):
    owners = [name_of(w, create(w, grade="A")["owner_id"]) for _ in range(7)]
    assert owners == ["s1", "s2", "s3", "s1", "s2", "s3", "s1"]
    with w.rt.engine.connect() as conn:
        assert conn.execute(select(crm_assignment_cursors.c.position)
                            .where(crm_assignment_cursors.c.name == "routing:0")).scalar_one() == 6


def test_inactive_members_are_skipped(w: World):
    with w.unit("system") as uow:
        users.deactivate_user(uow, "s2")
    owners = Counter(name_of(w, create(w, grade="A")["owner_id"]) for _ in range(6))
    assert owners == {"s1": 3, "s3": 3}


def test_a_team_with_nobody_active_falls_through_and_least_loaded_weighs(w: World):
    """grade B: empty_team has only an inactive member, so the next rule (east, least loaded) decides;
    alice counts double, carol (a manager of east, also a member) and bob share the rest; closed leads
    are no load."""
    owners = Counter(name_of(w, create(w, grade="B")["owner_id"]) for _ in range(8))
    assert owners == {"alice": 4, "bob": 2, "carol": 2}
    with w.unit("system") as uow:  # close bob's leads: he is the least loaded again
        uow.records.update_many("lead", f"owner_id == {w.ids['bob']}", {"status": "closed"})
    assert name_of(w, create(w, grade="B")["owner_id"]) == "bob"


def test_territories_map_a_field_to_targets_and_fall_through(w: World):
    assert name_of(w, create(w, region="north")["owner_id"]) == "nora"
    assert name_of(w, create(w, region="west")["owner_id"]) in SENIOR  # the territory's own cursor
    assert name_of(w, create(w, region="south")["owner_id"]) == "dave"  # 'gone' is inactive: next rule
    assert create(w, region="east")["owner_id"] is None  # no target for east, no later rule: the creator's
    with w.rt.engine.connect() as conn:
        names = set(conn.execute(select(crm_assignment_cursors.c.name)).scalars())
    assert "routing:3:west" in names


def test_only_records_created_without_an_owner_by_the_listed_creators(w: World):
    assert name_of(w, create(w, "admin", grade="A")["owner_id"]) in SENIOR
    assert create(w, "alice", grade="A")["owner_id"] == w.ids["alice"]  # a rep keeps what they type in
    given = create(w, "admin", grade="A", owner_id=w.ids["bob"])
    assert given["owner_id"] == w.ids["bob"]  # an explicit owner is kept
    with w.unit("system") as uow:  # bulk creates are routed too, one turn each
        ids = uow.records.create_many("lead", [{"company": f"c{i}", "grade": "A"} for i in range(3)])
        owners = [uow.records.get("lead", i)["owner_id"] for i in ids]
    assert len(set(owners)) == 3


def test_each_assignment_notifies_and_is_audited_with_its_rule(w: World):
    rec = create(w, grade="A")
    with w.rt.engine.connect() as conn:
        [note] = conn.execute(select(crm_notifications).where(crm_notifications.c.record_id == rec["id"])).all()
        [audit] = conn.execute(select(crm_audit).where(crm_audit.c.record_id == rec["id"],
                                                       crm_audit.c.action == "assign")).all()
    assert note.user_id == rec["owner_id"] and note.kind == "assignment" and note.entity == "lead"
    assert note.text_en == "Lead Acme is assigned to you (routing top (team senior (round robin)))"
    assert "已分配给您" in note.text_zh
    assert note.data["assignment"] == "routing" and note.data["rule"] == 0 and note.data["rule_name"] == "top"
    assert audit.new_value == {**note.data}
    assert audit.actor_id is None  # the system created it


def test_route_runs_the_rules_of_a_trigger_on_a_stored_record(w: World):
    rec = create(w, "alice", region="north")  # alice keeps it: reps are not routed on create
    with w.unit("system") as uow:
        assert assignment.route(uow, "lead", rec["id"], trigger="return") is None  # no 'return' rules
        said = assignment.route(uow, "lead", rec["id"], trigger="reassign")
    assert said == "routing territory (region territory: north -> user nora) -> nora"
    assert create(w)["owner_id"] is None  # (sanity: region-less, no rule)
    with w.unit("system") as uow:
        assert uow.records.get("lead", rec["id"])["owner_id"] == w.ids["nora"]
        [entry] = [e for e in uow.records.history("lead", rec["id"]) if e.action == "assign"]
    assert entry.new["trigger"] == "reassign"


def test_explicit_reassign_needs_update_rights_and_an_active_user(w: World):
    rec = create(w, "alice", region="east")
    with w.unit("dave") as uow, pytest.raises(Exception) as denied:
        assignment.reassign_to(uow, "lead", rec["id"], "bob")
    assert denied.type.__name__ in ("NotFound", "PermissionDenied")
    with w.unit("alice") as uow, pytest.raises(BadRequest) as inactive:
        assignment.reassign_to(uow, "lead", rec["id"], "gone")
    assert inactive.value.code == "inactive_user"
    with w.unit("alice") as uow:
        decision = assignment.reassign_to(uow, "lead", rec["id"], "bob")
    assert decision.describe() == "reassigned (user bob) -> bob"
    with w.unit("bob") as uow, pytest.raises(Conflict) as none:
        assignment.reassign_by_rules(uow, "lead", rec["id"])  # east: no rule applies
    assert none.value.code == "not_assigned"
    with w.unit("carol") as uow:  # a manager of the team may update it: run the rules with a region set
        uow.records.update("lead", rec["id"], {"region": "north"}, expected_version=None)
        assert assignment.reassign_by_rules(uow, "lead", rec["id"]).endswith("-> nora")
    with w.unit("bob") as uow, pytest.raises((PermissionDenied, Exception)):
        assignment.reassign_to(uow, "lead", rec["id"], "bob")  # nora's now: bob may not


def test_a_pool_target_needs_the_pool_kind(tmp_path: Path):
    from engine.dsl.compiler import compile_folder
    from engine.errors import ConfigError

    folder = write_workspace(tmp_path / "p", {"workspace.yaml": "workspace: p\n", "entities/lead.yaml": LEAD,
                                              "assignment/r.yaml": "assignment: r\nentity: lead\nrules:\n"
                                                                   "  - {to: {pool: east_pool}}\n"})
    with pytest.raises(ConfigError) as e:
        compile_folder(folder)
    assert "pool 'east_pool'" in str(e.value) and "r.yaml:4" in str(e.value)
