"""Expressions reading users on the write path: formulas and checks with owner.team and manager_of."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FILES, World, build_world

from engine.errors import ValidationFailed

TICKET = """
    entity: ticket
    title: "{subject}"
    fields:
      subject: {type: string, required: true}
      helper: {type: user}
      owner_team: {type: string, formula: "coalesce(owner.team, '-')"}
      escalate_to: {type: user, formula: "coalesce(manager_of(owner), owner)"}
      skip_level: {type: user, formula: "manager_of(manager_of(owner))"}
      helper_name: {type: string, formula: "helper.name"}
    checks:
      - check: "helper is null or helper.team == owner.team"
        message: {en: The helper must be in the owner's team}
"""


@pytest.fixture
def tworld(db_url: str, tmp_path: Path) -> Iterator[World]:
    files = {**FILES, "entities/ticket.yaml": TICKET}
    files["roles/roles.yaml"] = files["roles/roles.yaml"].replace(
        "          deal: {read: own, create: true, update: own, delete: own}",
        "          deal: {read: own, create: true, update: own, delete: own}\n"
        "          ticket: {read: own, create: true, update: own, delete: own}", 1)
    w = build_world(db_url, tmp_path / "ws", files)
    try:
        yield w
    finally:
        w.rt.close()


def test_formulas_read_the_owner_on_create(tworld: World) -> None:
    ids = tworld.ids
    with tworld.unit("alice") as uow:
        t = uow.records.create("ticket", {"subject": "s", "helper": ids["bob"]})
    # alice's own manager is carol; carol manages east herself, so she has no manager: null
    assert (t["owner_team"], t["escalate_to"], t["skip_level"], t["helper_name"]) == ("east", ids["carol"], None, "bob")
    with tworld.unit("dave") as uow:
        t = uow.records.create("ticket", {"subject": "s"})
    assert (t["owner_team"], t["escalate_to"], t["skip_level"]) == ("west", ids["dave"], None)
    with tworld.unit("admin") as uow:
        t = uow.records.create("ticket", {"subject": "s", "owner_id": ids["bob"]})
        assert (t["owner_team"], t["escalate_to"]) == ("east", ids["carol"])
        moved = uow.records.update("ticket", t["id"], {"owner_id": ids["dave"]}, expected_version=1)
    assert (moved["owner_team"], moved["escalate_to"]) == ("west", ids["dave"])


def test_check_reads_teams(tworld: World) -> None:
    with tworld.unit("alice") as uow, pytest.raises(ValidationFailed) as info:
        uow.records.create("ticket", {"subject": "s", "helper": tworld.ids["dave"]})
    assert info.value.details == {"_record": ["The helper must be in the owner's team"]}


def test_list_filter_through_a_user_field(tworld: World) -> None:
    ids = tworld.ids
    with tworld.unit("alice") as uow:
        uow.records.create("ticket", {"subject": "with bob", "helper": ids["bob"]})
        uow.records.create("ticket", {"subject": "alone"})
        got = uow.records.list("ticket", filter='helper.username == "bob" and manager_of(owner) == manager_of(helper)')
    assert [r["subject"] for r in got.items] == ["with bob"]
