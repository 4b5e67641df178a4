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


def test_a_value_is_sealed_at_rest_opened_on_read_and_found_by_equality(w: World) -> None:
    with w.unit("admin") as uow:
        rid = uow.records.create("lead", {"company": "甲公司", "id_number": SECRET_ID, "phone": "13800138000"})["id"]
        other = uow.records.create("lead", {"company": "乙", "id_number": "X2"})["id"]
        bulk = uow.records.create_many("lead", [{"company": f"b{i}", "id_number": f"BULK{i}"} for i in range(3)])
        uow.records.update_many("lead", "company == 'b2'", {"id_number": "BULK-NEW"})
    stored = _raw(w, "id_number")
    assert SECRET_ID not in stored[0] and {crypto.key_id_of(v) for v in stored} == {"k1"}
    with w.unit("admin", readonly=True) as uow:
        got = uow.records.get("lead", rid)
        assert got["id_number"] == SECRET_ID and got["phone"] == PHONE
        assert [r["id"] for r in uow.records.list("lead", filter=f"id_number == '{SECRET_ID}'").items] == [rid]
        both = uow.records.list("lead", filter="id_number in ['X2', 'BULK1', 'BULK-NEW']").items
        assert sorted(r["id"] for r in both) == sorted([other, bulk[1], bulk[2]])
        assert len(uow.records.list("lead", filter="id_number != 'X2'").items) == 4
        assert len(uow.records.list("lead", filter="phone is null").items) == 4
    assert "ix_lead_id_number_bidx" in _plan_of(w, f"id_number == '{SECRET_ID}'")  # an index lookup
    assert _leak_free(w, SECRET_ID, "13800138000", "BULK1", "BULK-NEW")  # nor in the audit, duplicate keys...


def _plan_of(w: World, flt: str) -> str:
    """The database's query plan of the list query for ``flt`` (PostgreSQL told to avoid a table scan, which
    it would prefer on a table this small)."""
    from sqlalchemy import event

    from engine.runtime.context import Actor

    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM lead" in statement:
            seen.append((statement, params))

    event.listen(w.rt.engine, "before_cursor_execute", capture)
    try:
        with w.rt.unit(Actor.system(), readonly=True) as uow:
            uow.records.list("lead", filter=flt)
    finally:
        event.remove(w.rt.engine, "before_cursor_execute", capture)
    statement, params = seen[-1]
    sqlite = w.rt.engine.dialect.name == "sqlite"
    with w.rt.engine.connect() as conn:
        if not sqlite:
            conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, params).all()
    return "\n".join(str(r[-1]) for r in rows)


def test_hidden_field_is_never_returned_sort_is_refused_and_duplicates_found(w: World) -> None:
    from engine.errors import BadRequest, ExpressionError

    with w.unit("admin") as uow:
        rid = uow.records.create("lead", {"company": "c", "id_number": SECRET_ID, "phone": "138 0013 8000"})["id"]
    with w.unit("alice", readonly=True) as uow:
        assert "id_number" not in uow.records.get("lead", rid)
        assert all("id_number" not in (e.new or {}) and e.field != "id_number"
                   for e in uow.records.history("lead", rid))
        with pytest.raises(BadRequest, match="encrypted"):
            uow.records.list("lead", sort="phone")
    with w.unit("admin", readonly=True) as uow:
        [created] = [e for e in uow.records.history("lead", rid) if e.action == "create"]
        assert created.new["id_number"] == SECRET_ID
        with pytest.raises(ExpressionError) as err:
            uow.records.list("lead", filter="startswith(phone, '+86')")
        assert err.value.code == "expression_encrypted_field"
    with w.unit("system", readonly=True) as uow:
        hits = dedupe_keys.matches(uow, "lead", {"company": "乙", "phone": "+86 138-0013-8000"})
    assert [m.record_id for m in hits] == [rid]
    with w.rt.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT key FROM crm_dedupe_keys WHERE kind = 'phone'"))]
    assert stored and all(k.startswith("k1:") and "13800138000" not in k for k in stored)


def test_the_api_returns_the_clear_value_to_permitted_callers_only(w: World) -> None:
    from engine.api import create_app
    from engine.runtime import users
    from engine.runtime.context import Actor

    with w.rt.unit(Actor.system()) as uow:
        tokens = {name: users.create_token(uow, name, "t") for name in ("admin", "alice")}
    client = create_app(w.rt).test_client()

    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[name]}"}

    made = client.post("/api/v1/records/lead", json={"company": "丙", "id_number": SECRET_ID, "phone": "13800138000"},
                       headers=auth("admin"))
    assert made.status_code == 201, made.get_json()
    rid = made.get_json()["id"]
    assert client.get(f"/api/v1/records/lead/{rid}", headers=auth("admin")).get_json()["id_number"] == SECRET_ID
    as_rep = client.get(f"/api/v1/records/lead/{rid}", headers=auth("alice")).get_json()
    assert "id_number" not in as_rep and as_rep["phone"] == PHONE
    listed = client.get("/api/v1/records/lead", query_string={"filter": f"phone == '{PHONE}'"}, headers=auth("alice"))
    assert [r["id"] for r in listed.get_json()["items"]] == [rid]
    bad = client.get("/api/v1/records/lead", query_string={"sort": "phone"}, headers=auth("admin"))
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_sort"


def _apply(folder: Path, url: str) -> Any:
    from engine.runtime.schema.operations import apply_workspace, compile_workspace, plan_folder

    report = plan_folder(folder, url)
    apply_workspace(compile_workspace(folder), url, yes=True, allow_destructive=False, purge=False,
                    message="enc", author="t", echo=lambda _s: None, confirm=lambda _q: True,
                    export_dir=folder / "exports")
    return report


def _leak_free(w: World, *secrets: str) -> bool:
    """Whether none of ``secrets`` is anywhere in the database (the SQLite file read as bytes, or every text
    column of PostgreSQL dumped)."""
    if w.url.startswith("sqlite"):
        path = w.url.split("///", 1)[1]
        w.rt.engine.dispose()
        with sqlite3.connect(path) as conn:  # plain sqlite3, as anyone holding the file could
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        blob = Path(path).read_bytes()
        return not any(s.encode() in blob for s in secrets)
    with w.rt.engine.connect() as conn:
        tables = [r[0] for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
        dump = " ".join(str(r) for t in tables for r in conn.execute(text(f'SELECT * FROM "{t}"')))
    return not any(s in dump for s in secrets)


def test_turning_encryption_on_and_off_keeps_every_value(keys: Any, db_url: str, tmp_path: Path) -> None:
    clear = LEAD.replace("max_length: 18, encrypted: true", "max_length: 18").replace(
        "{type: phone, encrypted: true}", "{type: phone}")
    w = build_world(db_url, tmp_path / "ws", files(clear))
    try:
        with w.unit("admin") as uow:
            ids = [uow.records.create("lead", {"company": f"c{i}", "id_number": f"{SECRET_ID[:-2]}{i:02d}",
                                               "phone": f"1380013{i:04d}"})["id"] for i in range(3)]
            uow.records.update("lead", ids[0], {"id_number": SECRET_ID}, expected_version=1)
        assert not _leak_free(w, SECRET_ID)  # the check can fail: the clear value is there before
        report = _apply(write_workspace(tmp_path / "v2", files()), w.url)
        lines = [c.line() for c in report.plan.changes
                 if c.kind == "feature_data" and c.details["step"] == "encryption"]
        assert sorted(lines)[0].startswith("~ encrypt the values of lead.id_number (safe")
        assert [c.rows for c in report.plan.changes if c.field == "id_number" and c.kind == "feature_data"] == [3]
        w.rt.refresh()
        assert all(crypto.key_id_of(v) == "k1" for v in _raw(w, "id_number"))
        with w.unit("admin", readonly=True) as uow:
            assert uow.records.get("lead", ids[0])["id_number"] == SECRET_ID
            found = uow.records.list("lead", filter=f"id_number == '{SECRET_ID}'").items
            assert [r["id"] for r in found] == [ids[0]]
            history = uow.records.history("lead", ids[0])
            assert [e.new for e in history if e.field == "id_number"] == [SECRET_ID]
            dupes = dedupe_keys.matches(uow, "lead", {"company": "x", "phone": "+8613800130001"})
            assert [m.record_id for m in dupes] == [ids[1]]
        assert _leak_free(w, SECRET_ID, "13800130001")
        _apply(write_workspace(tmp_path / "v3", files(clear)), w.url)  # and back to clear text
        w.rt.refresh()
        assert SECRET_ID in _raw(w, "id_number")
        with w.unit("admin", readonly=True) as uow:
            assert uow.records.get("lead", ids[0])["id_number"] == SECRET_ID
            assert [e.new for e in uow.records.history("lead", ids[0]) if e.field == "id_number"] == [SECRET_ID]
    finally:
        w.rt.close()


def test_key_rotation_reseals_every_value_and_old_key_can_go(w: World, keys: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    from click.testing import CliRunner

    from engine.cli import main
    from engine.errors import EncryptionError

    with w.unit("admin") as uow:
        ids = [uow.records.create("lead", {"company": f"c{i}", "id_number": f"ID{i}", "phone": f"1380013{i:04d}"})[
            "id"] for i in range(5)]
        uow.records.update("lead", ids[0], {"id_number": SECRET_ID}, expected_version=1)
    runner = CliRunner()
    made = runner.invoke(main, ["keys", "generate", "--id", "k2"])
    assert made.exit_code == 0 and made.output.startswith("k2:")
    assert len(crypto.parse_keys(made.output.strip()).keys) == 1
    keys.setenv(crypto.ENV_KEYS, f"{KEY2},{KEY1}")  # the new key first; the old one still opens values
    with w.unit("admin", readonly=True) as uow:
        assert uow.records.get("lead", ids[0])["id_number"] == SECRET_ID
    w.rt.close()
    out = runner.invoke(main, ["keys", "rotate", str(tmp_path / "ws"), "--db", w.url, "--batch", "2"])
    assert out.exit_code == 0, out.output
    assert "lead.id_number: 5 values sealed again" in out.output and "lead: duplicate keys stored again" in out.output
    again = runner.invoke(main, ["keys", "rotate", str(tmp_path / "ws"), "--db", w.url])
    assert "lead.id_number: 0 values sealed again" in again.output  # resumable: nothing left to do
    keys.setenv(crypto.ENV_KEYS, KEY1)  # a server started before the rotation: it has only the old key
    w.rt.refresh(force=True)
    with w.unit("admin", readonly=True) as uow, pytest.raises(EncryptionError) as err:
        uow.records.get("lead", ids[0])
    assert err.value.code == "encryption_key_unknown"
    assert "not among the keys this process loaded from CRM_ENCRYPTION_KEYS (k1)" in err.value.message
    assert "restart the servers and workers with the CRM_ENCRYPTION_KEYS the rotation used" in (err.value.hint or "")
    keys.setenv(crypto.ENV_KEYS, f"{KEY2},{KEY1}")  # restarted with the rotation's keys: it opens again
    w.rt.refresh(force=True)
    with w.unit("admin", readonly=True) as uow:
        assert uow.records.get("lead", ids[0])["id_number"] == SECRET_ID
    keys.setenv(crypto.ENV_KEYS, KEY2)  # the old key is gone
    w.rt.refresh(force=True)
    assert {crypto.key_id_of(v) for v in _raw(w, "id_number")} == {"k2"}
    with w.unit("admin", readonly=True) as uow:
        assert uow.records.get("lead", ids[0])["id_number"] == SECRET_ID
        found = uow.records.list("lead", filter=f"id_number == '{SECRET_ID}'").items
        assert [r["id"] for r in found] == [ids[0]]
        assert [e.new for e in uow.records.history("lead", ids[0]) if e.field == "id_number"] == [SECRET_ID]
        dupes = dedupe_keys.matches(uow, "lead", {"company": "x", "phone": "13800130003"})
        assert [m.record_id for m in dupes] == [ids[3]]


def test_a_missing_or_bad_key_is_a_clear_startup_error(w: World, keys: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from engine.cli import main
    from engine.errors import EncryptionError, EncryptionKeyMissing
    from engine.runtime.runtime import Runtime

    w.rt.close()
    keys.delenv(crypto.ENV_KEYS)
    with pytest.raises(EncryptionKeyMissing) as err:
        Runtime.open(w.url)
    assert err.value.code == "encryption_key_missing" and "crm keys generate" in (err.value.hint or "")
    out = CliRunner().invoke(main, ["apply", str(tmp_path / "ws"), "--db", w.url, "--yes"])
    assert out.exit_code == 1 and "CRM_ENCRYPTION_KEYS is not set" in out.output and "Traceback" not in out.output
    keys.setenv(crypto.ENV_KEYS, "k1:c2hvcnQ=")
    with pytest.raises(EncryptionError, match="has 5 bytes, not 32"):
        Runtime.open(w.url)


def test_a_stored_event_keeps_encrypted_values_sealed_until_a_handler_gets_it(keys: Any) -> None:
    import datetime as dt

    from engine.runtime.jobs import outbox
    from engine.runtime.records.steps import DomainEvent

    event = DomainEvent("updated", "lead", 7, None, dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
                        changes={"id_number": (None, SECRET_ID), "company": ("a", "b")},
                        record={"id": 7, "company": "b", "id_number": SECRET_ID})
    stored = outbox.event_payload(event, frozenset({"id_number"}))
    assert SECRET_ID not in repr(stored) and stored["changes"]["company"] == ["a", "b"]
    handed = outbox.opened(stored, {"lead": frozenset({"id_number"})})
    assert handed["changes"]["id_number"] == [None, SECRET_ID] and handed["record"]["id_number"] == SECRET_ID
