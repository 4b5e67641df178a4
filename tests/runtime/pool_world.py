"""A small workspace with pools, for the pool tests of tests/runtime (imported, not a conftest).

Users (from :func:`tests.runtime.conftest.build_world`): admin; carol (manager of team east, admin of
the pools); alice and bob (sales, team east: members); dave (sales, team west: not a member); vera
(viewer: reads every lead, masked while unclaimed).
"""

from __future__ import annotations

from typing import Any

from engine.runtime.context import Actor
from tests.runtime.conftest import World

FILES = {
    "workspace.yaml": "workspace: acme\nlocale: en\nphone_region: CN\n",
    "entities/lead.yaml": """
        entity: lead
        title: "{company}"
        fields:
          company: {type: string, required: true}
          phone: {type: phone}
          email: {type: email}
          region: {type: picklist, options: [east, north]}
          status: {type: picklist, options: [new, working, qualified, converted], default: new}
          grade: {type: picklist, options: [A, B, C]}
          last_activity_at: {type: datetime, readonly: true}
        ---
        entity: activity
        fields:
          subject: {type: string}
          lead: {type: reference, to: lead}
    """,
    "roles/roles.yaml": """
        role: admin
        admin: true
        ---
        role: sales
        permissions:
          lead: {read: own, create: true, update: own, delete: none}
          activity: {read: own, create: true, update: own, delete: none}
        ---
        role: manager
        permissions:
          lead: {read: team, create: true, update: team, delete: none}
          activity: {read: team, create: true, update: team, delete: none}
        ---
        role: viewer
        permissions:
          lead: {read: all}
          activity: {read: all}
    """,
    "pools/pools.yaml": """
        pool: east_pool
        entity: lead
        label: {en: East pool, zh: 华东公海}
        when: "region == 'east'"
        members: {teams: [east]}
        admins: {roles: [manager]}
        holding_limit: 3
        limit_excludes: "status == 'converted'"
        daily_claim_limit: 4
        reclaim_cooldown: 3d
        hidden_fields: [phone, email]
        recycle:
          - when: "grade == 'A' and days_since(max(last_activity_at, claimed_at)) > 15"
            reason: {en: "Grade A, 15 days"}
          - when: "grade != 'A' and days_since(max(last_activity_at, claimed_at)) > 7"
            reason: {en: No follow-up for 7 days, zh: 7天未跟进}
        warn_before: 2d
        return_reasons: [unreachable, no_need]
        ---
        pool: north_pool
        entity: lead
        kind: assign
        when: "region == 'north'"
        members: {teams: [east]}
        admins: {roles: [manager]}
        holding_limit: 2
        hidden_fields: [phone]
        ---
        pool: bulk_pool
        entity: lead
        members: {teams: [east]}
        never_recycle: null
        recycle: [{when: "days_since(claimed_at) > 1", reason: {en: Held over a day}}]
        ---
        pool: ghost_pool
        entity: lead
        members: {teams: [ghosts]}
    """,
}


def pooled(world: World, pool: str, n: int, **values: Any) -> list[int]:
    """``n`` new leads put in ``pool`` by the system (the write step clears their owner)."""
    with world.unit("system") as uow:
        ids: list[int] = uow.records.create_many("lead", [
            {"company": f"{pool} lead {i}", "phone": "13800138000", "email": "john@acme.com", "region": "east",
             "pool": pool, **values} for i in range(n)], bypass_readonly=True)
    return ids


def held_by(world: World, user: str, ids: list[int], at: Any = None) -> None:
    """Mark ``ids`` claimed by ``user`` (at ``at``, default now) without the claim service's limits."""
    with world.unit("system") as uow:
        for rid in ids:
            uow.records.update("lead", rid, {"owner_id": world.ids[user], "claimed_at": at or world.clock.now()},
                               expected_version=None, bypass_readonly=True)


def system(world: World) -> Any:
    return world.rt.unit(Actor.system())
