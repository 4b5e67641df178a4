"""Encrypted fields (``encrypted: true``): sealed at rest, opened for callers who may read them, found by
equality through the blind index, kept through plan/apply and key rotation.  Both databases."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.runtime import crypto
from engine.runtime.sales import dedupe_keys
from tests.runtime.conftest import World, build_world, write_workspace

KEY1 = "k1:" + "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="
KEY2 = "k2:" + "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY="
LEAD = """
    entity: lead
    title: "{company}"
    fields:
      company: {type: string, required: true}
      id_number: {type: string, max_length: 18, encrypted: true}
      phone: {type: phone, encrypted: true}
      notes: {type: text}
"""
ROLE = ("role: admin\nadmin: true\n---\nrole: sales\npermissions:\n  lead: {read: all, create: true, update: own}\n"
        "fields:\n  lead.id_number: hidden\n---\nrole: manager\n---\nrole: viewer\n")
RULE = """
    dedupe: leads
    entity: lead
    match:
      - [phone]
    action: warn
"""
SECRET_ID = "110101199003077777"
PHONE = "+8613800138000"


def files(lead: str = LEAD) -> dict[str, str]:
    return {"workspace.yaml": "workspace: enc\nphone_region: CN\n", "lead.yaml": lead, "roles.yaml": ROLE,
            "dedupe.yaml": RULE}


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv(crypto.ENV_KEYS, KEY1)
    return monkeypatch


@pytest.fixture
def w(keys: Any, db_url: str, tmp_path: Path) -> Iterator[World]:
    world = build_world(db_url, tmp_path / "ws", files())
    try:
        yield world
    finally:
        world.rt.close()


def _raw(w: World, column: str) -> list[str]:
    with w.rt.engine.connect() as conn:
        return [r[0] for r in conn.execute(text(f"SELECT {column} FROM lead ORDER BY id"))]


def test_a_value_is_sealed_in_the_table_and_opened_on_read(w: World) -> None:
    with w.unit("admin") as uow:
        rid = uow.records.create("lead", {"company": "甲公司", "id_number": SECRET_ID, "phone": "13800138000"})["id"]
    [stored] = _raw(w, "id_number")
    assert SECRET_ID not in stored and crypto.key_id_of(stored) == "k1"
    with w.unit("admin", readonly=True) as uow:
        got = uow.records.get("lead", rid)
    assert got["id_number"] == SECRET_ID and got["phone"] == PHONE


def test_equality_filter_finds_by_exact_value(w: World) -> None:
    with w.unit("admin") as uow:
        a = uow.records.create("lead", {"company": "a", "id_number": SECRET_ID})["id"]
        uow.records.create("lead", {"company": "b", "id_number": "X2"})
    with w.unit("admin", readonly=True) as uow:
        found = uow.records.list("lead", filter=f"id_number == '{SECRET_ID}'")
        assert [r["id"] for r in found.items] == [a]
        assert len(uow.records.list("lead", filter="id_number != 'X2'").items) == 1
        assert len(uow.records.list("lead", filter="phone is null").items) == 2


def test_duplicates_are_found_by_exact_phone_without_a_clear_key(w: World) -> None:
    with w.unit("admin") as uow:
        first = uow.records.create("lead", {"company": "甲", "phone": "138 0013 8000"})["id"]
    with w.unit("system", readonly=True) as uow:
        hits = dedupe_keys.matches(uow, "lead", {"company": "乙", "phone": PHONE})
    assert [m.record_id for m in hits] == [first]
    with w.rt.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT key FROM crm_dedupe_keys"))]
    assert stored and not any("13800138000" in k for k in stored)


def test_hidden_encrypted_field_is_not_returned_and_sort_is_refused(w: World) -> None:
    from engine.errors import BadRequest, ExpressionError

    with w.unit("admin") as uow:
        rid = uow.records.create("lead", {"company": "c", "id_number": SECRET_ID})["id"]
    with w.unit("alice", readonly=True) as uow:
        assert "id_number" not in uow.records.get("lead", rid)
        assert all("id_number" not in (e.new or {}) for e in uow.records.history("lead", rid))
        with pytest.raises(BadRequest, match="encrypted"):
            uow.records.list("lead", sort="phone")
    with w.unit("admin", readonly=True) as uow:
        [created] = [e for e in uow.records.history("lead", rid) if e.action == "create"]
        assert created.new["id_number"] == SECRET_ID
        with pytest.raises(ExpressionError) as err:
            uow.records.list("lead", filter="startswith(phone, '+86')")
        assert err.value.code == "expression_encrypted_field"
    with w.rt.engine.connect() as conn:
        audit = " ".join(str(r[0]) + str(r[1]) for r in conn.execute(text("SELECT old_value, new_value FROM crm_audit")))
    assert SECRET_ID not in audit
