"""A duplicate rule added or changed through plan/apply stores the keys of the records already there, so
they are found as duplicates at once; an unchanged rule set costs no scan.  Both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.sales import dedupe_keys
from tests.runtime.conftest import World, build_world, write_workspace

LEAD = """
    entity: lead
    title: "{company}"
    fields:
      company: {type: string, required: true}
      email: {type: email}
      phone: {type: phone}
"""
ROLE = "role: admin\nadmin: true\n---\nrole: sales\n---\nrole: manager\n---\nrole: viewer\n"
PHONE_RULE = """
    dedupe: leads
    entity: lead
    match:
      - [phone]
    action: warn
"""
BOTH_RULES = PHONE_RULE.replace("      - [phone]\n", "      - [phone]\n      - [email]\n")


def _files(rule: str) -> dict[str, str]:
    return {"workspace.yaml": "workspace: keys\nphone_region: CN\n", "lead.yaml": LEAD, "roles.yaml": ROLE,
            "dedupe.yaml": rule}


@pytest.fixture
def w(db_url: str, tmp_path: Path) -> Iterator[World]:
    world = build_world(db_url, tmp_path / "ws", _files(PHONE_RULE))
    try:
        yield world
    finally:
        world.rt.close()


def _apply(folder: Path, url: str) -> Any:
    from engine.runtime.schema.operations import apply_workspace, compile_workspace, plan_folder

    report = plan_folder(folder, url)
    apply_workspace(compile_workspace(folder), url, yes=True, allow_destructive=False, purge=False, message="rules",
                    author="t", echo=lambda _s: None, confirm=lambda _q: True, export_dir=folder / "exports")
    return report


def _email_matches(w: World, email: str) -> list[int]:
    with w.unit("system", readonly=True) as uow:
        return [m.record_id for m in dedupe_keys.matches(uow, "lead", {"company": "x", "email": email})]


def test_a_new_rule_stores_the_keys_of_the_records_already_there(w: World, tmp_path: Path) -> None:
    with w.unit("system") as uow:
        old = uow.records.create("lead", {"company": "甲公司", "email": "Buyer@Acme.test"})["id"]
    assert _email_matches(w, "buyer@acme.test") == []  # the phone rule stores no e-mail keys
    folder = write_workspace(tmp_path / "v2", _files(BOTH_RULES))
    report = _apply(folder, w.url)
    [change] = [c for c in report.plan.changes if c.kind == "feature_data"]
    assert change.line().startswith("~ store the duplicate keys of lead again") and change.rows == 1
    w.rt.refresh()
    assert _email_matches(w, " BUYER@acme.test ") == [old]
    again = _apply(folder, w.url)  # the same rules: nothing to store, nothing counted
    assert not [c for c in again.plan.changes if c.kind == "feature_data"]
