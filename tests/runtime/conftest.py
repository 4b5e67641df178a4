"""Shared fixtures of the record runtime tests: a small workspace, users and a Runtime on each database.

``world`` (fixture) is a :class:`World` on each back end; tests import ``World``,
``FILES`` and ``write_workspace`` from here for annotations and variants.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.dsl.compiler import compile_folder
from engine.runtime import users
from engine.runtime.context import Actor, FixedClock
from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply

FILES = {
    "workspace.yaml": """
        workspace: acme
        locale: zh
        currency: CNY
    """,
    "entities/account.yaml": """
        entity: account
        title: "{name}"
        fields:
          name: {type: string, required: true, max_length: 50}
          industry: {type: picklist, options: [manufacturing, services, it], index: true}
          credit_rating: {type: picklist, options: [high, low]}
          secret_note: {type: string}
    """,
    "entities/deal.yaml": """
        entity: deal
        title: "{name}"
        fields:
          name: {type: string, required: true, max_length: 20}
          code: {type: string, unique: true}
          account: {type: reference, to: account}
          stage: {type: picklist, options: [new, won, lost], default: new, index: true}
          amount: {type: money, min: 0}
          quantity: {type: integer, min: 1, max: 1000}
          discount: {type: decimal, scale: 4, min: 0, max: 1, default: 0}
          net: {type: money, formula: "coalesce(amount, 0) * (1 - coalesce(discount, 0))"}
          close_date: {type: date}
          due_at: {type: datetime}
          email: {type: email}
          margin: {type: decimal}
          tags: {type: multi_picklist, options: [a, b, c]}
          note: {type: string, storage: json, index: true}
          score: {type: integer, storage: json}
          budget: {type: money, storage: json}
          priority: {type: integer, readonly: true, default: 1}
          number: {type: auto_number, pattern: "D-{YYYY}-{#####}"}
          active: {type: boolean}
          follow_up: {type: date, default_expr: "add_days($today, 7)"}
          assignee: {type: user}
          lines:
            type: lines
            fields:
              product: {type: string, required: true}
              qty: {type: decimal, min: 0, default: 1}
              price: {type: money}
              total: {type: money, formula: "qty * coalesce(price, 0)"}
        checks:
          - check: "amount is null or quantity is null or amount >= quantity"
            message: {en: The amount must cover the quantity, zh: 金额不能小于数量}
    """,
    "roles/roles.yaml": """
        role: admin
        admin: true
        ---
        role: sales
        permissions:
          account: {read: own, create: true, update: own, delete: none}
          deal: {read: own, create: true, update: own, delete: own}
        fields:
          deal.margin: hidden
          deal.active: readonly
          account.secret_note: hidden
        ---
        role: manager
        permissions:
          account: {read: team, create: true, update: team, delete: team}
          deal: {read: team, create: true, update: team, delete: team}
        ---
        role: viewer
        permissions:
          account: {read: all}
          deal: {read: all}
    """,
}


def write_workspace(folder: Path, files: dict[str, str] | None = None) -> Path:
    for name, text in (files or FILES).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


@dataclass
class World:
    """A runtime with users: admin; alice, bob (sales, team east); carol (manager of east); dave (sales, west)."""

    rt: Runtime
    clock: FixedClock
    url: str
    ids: dict[str, int]

    def actor(self, name: str) -> Actor:
        if name == "system":
            return Actor.system()
        with self.rt.engine.connect() as conn:
            return users.actor_for(conn, self.rt.state.workspace, name)

    def unit(self, name: str = "admin", **kw: Any) -> Any:
        return self.rt.unit(self.actor(name), **kw)


def build_world(db_url: str, folder: Path, files: dict[str, str] | None = None) -> World:
    """Apply :data:`FILES` (or ``files``) written to ``folder``, open a runtime, add the users."""
    ws = compile_folder(write_workspace(folder, files))
    engine = make_engine(db_url)
    try:
        apply(engine, ws, author="test", message="setup")
    finally:
        engine.dispose()
    clock = FixedClock()
    rt = Runtime.open(db_url, clock=clock)
    ids: dict[str, int] = {}
    with rt.unit(Actor.system()) as uow:
        ids["admin"] = users.create_user(uow, "admin", roles=["admin"], password="correct horse")
        east = users.create_team(uow, "east")
        users.create_team(uow, "west")
        ids["carol"] = users.create_user(uow, "carol", roles=["manager"], team="east")
        users.set_team_manager(uow, east, "carol")
        ids["alice"] = users.create_user(uow, "alice", roles=["sales"], team="east", manager="carol")
        ids["bob"] = users.create_user(uow, "bob", roles=["sales"], team="east", manager="carol")
        ids["dave"] = users.create_user(uow, "dave", roles=["sales"], team="west")
        ids["vera"] = users.create_user(uow, "vera", roles=["viewer"])
    return World(rt, clock, db_url, ids)


@pytest.fixture(name="world")
def world_fixture(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path / "ws")
    try:
        yield w
    finally:
        w.rt.close()
