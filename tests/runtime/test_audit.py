"""Audit: every change of every field, with actor, time and revision; events after commit."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import World

from engine.errors import ValidationFailed


def test_every_field_change_is_audited(world: World) -> None:
    with world.unit("alice") as uow:
        d = uow.records.create("deal", {"name": "a", "amount": 10, "note": "j1", "lines": [{"product": "p"}]})
    world.clock.advance(hours=1)
    with world.unit("bob") as uow:  # bob cannot see alice's deal; carol (manager) edits
        pass
    with world.unit("carol") as uow:
        uow.records.update("deal", d["id"], {"amount": 12, "note": "j2", "stage": "won",
                                             "lines": [{"product": "p", "qty": 2}]}, expected_version=1)
    world.clock.advance(hours=1)
    with world.unit("alice") as uow:
        uow.records.delete("deal", d["id"])
    with world.unit("admin", readonly=True) as uow:
        hist = uow.records.history("deal", d["id"])
    rev = world.rt.state.revision_id
    assert hist[0].action == "create" and hist[0].new["name"] == "a" and hist[0].new["lines"][0]["product"] == "p"
    upd = {e.field: (e.old, e.new) for e in hist if e.action == "update"}
    assert upd["amount"] == ("10.00", "12.00") and upd["note"] == ("j1", "j2") and upd["stage"] == ("new", "won")
    assert upd["net"] == ("10.00", "12.00")  # formula outputs are audited too
    assert upd["lines"][1][0]["qty"] == "2.00"
    assert {e.actor for e in hist if e.action == "update"} == {"carol"}
    assert {e.at for e in hist if e.action == "update"} == {dt.datetime(2026, 1, 15, 10, tzinfo=dt.UTC)}
    assert hist[-1].action == "delete" and hist[-1].actor == "alice"
    assert all(e.revision_id == rev for e in hist)


def test_failed_write_leaves_no_audit_and_no_event(world: World) -> None:
    events = []
    world.rt.add_listener(events.append)
    with world.unit() as uow:
        d = uow.records.create("deal", {"name": "a"})
    assert [e.kind for e in events] == ["created"]
    with pytest.raises(ValidationFailed), world.unit() as uow:
        uow.records.update("deal", d["id"], {"amount": 5}, expected_version=1)
        uow.records.update("deal", d["id"], {"quantity": "x"}, expected_version=2)
    assert [e.kind for e in events] == ["created"]
    with world.unit(readonly=True) as uow:
        assert [e.action for e in uow.records.history("deal", d["id"])] == ["create"]
        assert uow.records.get("deal", d["id"])["amount"] is None


def test_events_delivered_after_commit_with_changes(world: World) -> None:
    seen = []

    def listener(event) -> None:
        with world.unit(readonly=True) as uow:  # the change is visible to others by now
            seen.append((event.kind, uow.records.get("deal", event.record_id)["version"], dict(event.changes)))

    world.rt.add_listener(listener)
    with world.unit() as uow:
        d = uow.records.create("deal", {"name": "a"})
        uow.records.update("deal", d["id"], {"name": "b"}, expected_version=1)
    assert seen == [("created", 2, {}), ("updated", 2, {"name": ("a", "b")})]



def test_an_elevated_write_passes_the_permission_checks_and_still_names_the_actor(world: World) -> None:
    """``uow.elevated()``: a feature's internal write (a pool claim) is made with the system's permissions,
    while the stamps and the audit rows name the unit's actor; outside the block the actor's scope holds."""
    from engine.errors import NotFound

    with world.unit("alice") as uow:
        d = uow.records.create("deal", {"name": "mine"})
    with world.unit("dave") as uow, pytest.raises(NotFound):  # dave (west) cannot see alice's deal
        uow.records.update("deal", d["id"], {"name": "taken"}, expected_version=None)
    with world.unit("dave") as uow:
        with uow.elevated():
            uow.records.update("deal", d["id"], {"name": "taken"}, expected_version=None)
        with pytest.raises(NotFound):  # the block ended: dave's own scope again
            uow.records.get("deal", d["id"])
    with world.unit("admin", readonly=True) as uow:
        hist = uow.records.history("deal", d["id"])
    assert [(e.actor, e.new) for e in hist if e.field == "name"] == [("dave", "taken")]


def test_references_an_elevated_write_saw_are_not_visible_to_the_actor_afterwards(world: World) -> None:
    """The system may see alice's account inside the block; dave still may not once it ended (the unit's
    cache of visible references is the actor's own)."""
    with world.unit("alice") as uow:
        account = uow.records.create("account", {"name": "Alice's"})["id"]
        deal = uow.records.create("deal", {"name": "hers"})["id"]
    with world.unit("dave") as uow:
        with uow.elevated():
            uow.records.update("deal", deal, {"account": account}, expected_version=None)
        with pytest.raises(ValidationFailed) as refused:
            uow.records.create("deal", {"name": "mine", "account": account})
        assert "not visible to you" in str(refused.value.details["account"])

