"""Row scopes own/team/all on every path (get, list, count, update, delete, expansion, filters), hidden and
readonly fields, admin and system actors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import World

from engine.errors import BadRequest, NotFound, PermissionDenied, ValidationFailed


def _records(world: World) -> dict[str, dict]:
    out = {}
    for who in ("alice", "bob", "dave"):
        with world.unit(who) as uow:
            acc = uow.records.create("account", {"name": f"{who} corp", "industry": "it"})
            out[who] = uow.records.create("deal", {"name": f"{who} deal", "account": acc["id"], "amount": 10})
            out[who + "_acc"] = acc
    with world.unit("admin") as uow:
        uow.records.update("deal", out["alice"]["id"], {"margin": "0.3"}, expected_version=1)
        uow.records.update("account", out["alice_acc"]["id"], {"secret_note": "psst"}, expected_version=1)
    return out


def _names(world: World, who: str, **kw: object) -> tuple[list[str], int | None]:
    with world.unit(who, readonly=True) as uow:
        page = uow.records.list("deal", count=True, **kw)
    return sorted(r["name"] for r in page.items), page.total


def test_scopes_on_list_and_count(world: World) -> None:
    _records(world)
    assert _names(world, "alice") == (["alice deal"], 1)
    assert _names(world, "carol") == (["alice deal", "bob deal"], 2)  # manager of east sees the team
    assert _names(world, "vera") == (["alice deal", "bob deal", "dave deal"], 3)
    assert _names(world, "admin")[1] == 3
    assert _names(world, "alice", filter="name == 'bob deal'") == ([], 0)


def test_own_scope_blocks_get_update_delete_of_others(world: World) -> None:
    recs = _records(world)
    bob_deal = recs["bob"]["id"]
    with world.unit("alice") as uow:
        with pytest.raises(NotFound):
            uow.records.get("deal", bob_deal)
        with pytest.raises(NotFound):
            uow.records.update("deal", bob_deal, {"name": "mine"}, expected_version=1)
        with pytest.raises(NotFound):
            uow.records.delete("deal", bob_deal)
        with pytest.raises(NotFound):
            uow.records.history("deal", bob_deal)
        assert uow.records.update_many("deal", None, {"stage": "lost"}) == 1
    with world.unit("vera") as uow, pytest.raises(PermissionDenied):
        uow.records.update("deal", bob_deal, {"name": "x"}, expected_version=1)
    with world.unit("vera") as uow, pytest.raises(PermissionDenied):
        uow.records.create("deal", {"name": "x"})
    with world.unit("carol") as uow:
        assert uow.records.update("deal", bob_deal, {"name": "team edit"}, expected_version=1)["version"] == 2
        with pytest.raises(NotFound):
            uow.records.get("deal", recs["dave"]["id"])


def test_reference_to_invisible_record_is_refused_and_expansion_does_not_leak(world: World) -> None:
    recs = _records(world)
    with world.unit("alice") as uow, pytest.raises(ValidationFailed) as ei:
        uow.records.create("deal", {"name": "steal", "account": recs["bob_acc"]["id"]})
    assert "does not exist or is not visible" in ei.value.details["account"][0]
    with world.unit("admin") as uow:  # the admin links alice's deal to bob's account
        uow.records.update("deal", recs["alice"]["id"], {"account": recs["bob_acc"]["id"]}, expected_version=2)
    with world.unit("alice", readonly=True) as uow:
        got = uow.records.get("deal", recs["alice"]["id"], expand=["account"])
        assert got["account"] == {"id": recs["bob_acc"]["id"]}
        assert uow.records.list("deal", filter="account.name == 'bob corp'", count=True).total == 0
        assert uow.records.list("deal", filter="account.name != 'x'", count=True).total == 0
    with world.unit("carol", readonly=True) as uow:
        got = uow.records.get("deal", recs["alice"]["id"], expand=["account"])
        assert got["account"]["name"] == "bob corp" and "secret_note" in got["account"]
        assert uow.records.list("deal", filter="account.name == 'bob corp'", count=True).total == 2


def test_hidden_field_never_returned_filtered_or_sorted(world: World) -> None:
    recs = _records(world)
    deal_id = recs["alice"]["id"]
    with world.unit("alice", readonly=True) as uow:
        assert "margin" not in uow.records.get("deal", deal_id)
        assert all("margin" not in r for r in uow.records.list("deal").items)
        with pytest.raises(BadRequest) as ei:
            uow.records.list("deal", filter="margin > 0")
        assert "margin" not in (ei.value.hint or "")
        with pytest.raises(BadRequest):
            uow.records.list("deal", sort="-margin")
        with pytest.raises(BadRequest):
            uow.records.list("deal", fields=["margin"])
        with pytest.raises(BadRequest):
            uow.records.list("deal", filter="account.secret_note == 'psst'")
        acc = uow.records.get("deal", deal_id, expand=["account"])["account"]
        assert "secret_note" not in acc and acc["name"] == "alice corp"
        assert all(e.field != "margin" for e in uow.records.history("deal", deal_id))
    with world.unit("alice") as uow, pytest.raises(ValidationFailed) as ei:
        uow.records.update("deal", deal_id, {"margin": 1}, expected_version=2)
    assert ei.value.details == {"margin": ["unknown field"]}


def test_readonly_field_refused_unless_bypassed(world: World) -> None:
    recs = _records(world)
    with world.unit("alice") as uow, pytest.raises(ValidationFailed) as ei:
        uow.records.update("deal", recs["alice"]["id"], {"active": True}, expected_version=2)
    assert ei.value.details == {"active": ["is read-only"]}
    with world.unit("alice") as uow:
        got = uow.records.update("deal", recs["alice"]["id"], {"active": True, "priority": 5}, expected_version=2,
                                 bypass_readonly=True)
        assert got["active"] is True and got["priority"] == 5
    with world.unit("admin") as uow:
        assert uow.records.update("deal", recs["alice"]["id"], {"active": False}, expected_version=3)["version"] == 4
        with pytest.raises(ValidationFailed):
            uow.records.update("deal", recs["alice"]["id"], {"priority": 9}, expected_version=4)


def test_system_actor_and_unknown_entity(world: World) -> None:
    _records(world)
    with world.unit("system", readonly=True) as uow:
        assert uow.records.list("deal", count=True).total == 3
        with pytest.raises(NotFound):
            uow.records.list("nosuch")
    with world.unit("system", readonly=True) as uow, pytest.raises(Exception, match="read-only"):
        uow.records.create("deal", {"name": "x"})


def _leaky_world(db_url: str, tmp_path: Path) -> World:
    from conftest import FILES, build_world

    files = dict(FILES)
    files["entities/deal.yaml"] = FILES["entities/deal.yaml"].replace(
        "        checks:\n",
        "        checks:\n"
        "          - check: \"account is null or account.credit_rating != 'low'\"\n"
        "            message: {en: Do not add deals to low-credit accounts}\n")
    return build_world(db_url, tmp_path / "leaky", files)


def _reference_error(world: World, who: str, values: dict, update_id: int | None = None) -> dict:
    with pytest.raises(ValidationFailed) as info, world.unit(who) as uow:
        if update_id is None:
            uow.records.create("deal", {"name": "probe", **values})
        else:
            uow.records.update("deal", update_id, values, expected_version=None)
    return {"code": info.value.code, "details": info.value.details}


def test_check_rules_never_read_through_a_reference_the_caller_cannot_see(db_url: str, tmp_path: Path) -> None:
    """A rule reading account.credit_rating answers for an invisible account exactly as for a missing one."""
    world = _leaky_world(db_url, tmp_path)
    try:
        with world.unit("alice") as uow:
            low = uow.records.create("account", {"name": "alice low", "credit_rating": "low"})
            high = uow.records.create("account", {"name": "alice high", "credit_rating": "high"})
        # the rule itself works for the accounts alice can see
        with world.unit("alice") as uow, pytest.raises(ValidationFailed, match="low-credit"):
            uow.records.create("deal", {"name": "mine", "account": low["id"]})
        with world.unit("dave") as uow:
            own = uow.records.create("deal", {"name": "dave deal"})
        missing = 10**9
        for update_id in (None, own["id"]):
            seen = {rid: _reference_error(world, "dave", {"account": rid}, update_id)
                    for rid in (low["id"], high["id"], missing)}
            for rid, error in seen.items():
                assert error == {"code": "validation_failed", "details": {"account": [
                    f"refers to account record {rid}, which does not exist or is not visible to you"]}}, error
    finally:
        world.rt.close()
