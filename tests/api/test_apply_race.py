"""Applies racing live writers on a real server, on SQLite and PostgreSQL.

* Removing an option (with ``replace:``) and narrowing a length while
  clients keep writing the old option and long values: once the apply
  commits, no write validated against the old revision may land, so no live
  row violates the active revision afterwards.
* Applies that change a column's type under PATCH load: no 5xx (on
  PostgreSQL a prepared statement must not outlive the schema it was
  planned for).
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.api import create_app
from engine.dsl.compiler import compile_folder
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply
from engine.runtime.schema.diff import format_plan
from tests.api.conftest import serving
from tests.api.test_live import http_json

LEAD = """
    entity: lead
    fields:
      company: {{type: string, required: true}}
      source:
        type: picklist
        options: [{options}]
{replace}      code: {{type: string, max_length: {code_len}}}
      note: {{type: string, max_length: {note_len}}}
"""
ROLES = """
    role: admin
    admin: true
    ---
    role: sales
    permissions:
      lead: {read: own, create: true, update: own, delete: none}
"""


def write_ws(folder: Path, *, options: str = "web, ads, other", replace: str = "", code_len: int = 40,
             note_len: int = 100) -> Any:
    files = {"workspace.yaml": "workspace: race\n", "roles.yaml": ROLES,
             "lead.yaml": LEAD.format(options=options, replace=replace, code_len=code_len, note_len=note_len)}
    for name, body in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return compile_folder(folder)


@dataclass
class Live:
    base: str
    token: str
    runtime: Runtime
    url: str
    statuses: list[int] = field(default_factory=list)


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[Live]:
    engine = make_engine(db_url)
    try:
        apply(engine, write_ws(tmp_path / "v1"), author="t", message="v1")
    finally:
        engine.dispose()
    runtime = Runtime.open(db_url)
    with runtime.unit(Actor.system()) as uow:
        users.create_user(uow, "rep", roles=["sales"])
        token = users.create_token(uow, "rep", "race")
    app = create_app(runtime, max_requests_per_user=None)
    try:
        with serving(app) as base:
            yield Live(base, token, runtime, db_url)
    finally:
        runtime.close()


def writers(live: Live, stop: threading.Event, body: Any, n: int = 6) -> list[threading.Thread]:
    """``n`` threads that create a lead and then PATCH it in a loop until ``stop``; statuses go to live.statuses."""
    lock = threading.Lock()

    def loop() -> None:
        status, made = http_json(live.base, "POST", "/api/v1/records/lead", live.token, {"company": "w", **body()})
        with lock:
            live.statuses.append(status)
        rid, version = (made["id"], made["version"]) if status == 201 else (None, None)
        while not stop.is_set():
            if rid is None or version is None:
                status, got = http_json(live.base, "POST", "/api/v1/records/lead", live.token,
                                        {"company": "w", **body()})
                if status == 201:
                    rid, version = got["id"], got["version"]
            else:
                status, got = http_json(live.base, "PATCH", f"/api/v1/records/lead/{rid}", live.token, body(),
                                        {"If-Match": str(version)})
                if status == 200:
                    version = got["version"]
                elif status == 409:
                    version = None if rid is None else http_json(
                        live.base, "GET", f"/api/v1/records/lead/{rid}", live.token)[1]["version"]
            with lock:
                live.statuses.append(status)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def test_writes_never_validate_against_a_stale_revision(live: Live, tmp_path: Path) -> None:
    applied = threading.Event()
    counter = iter(range(10**9))

    def body() -> dict[str, Any]:  # long codes only once the narrowing committed: the plan must see none before
        return {"source": "ads", "code": ("L" * 25 if applied.is_set() else "S" * 10) + str(next(counter) % 10),
                "note": "x"}

    stop = threading.Event()
    threads = writers(live, stop, body)
    time.sleep(1.0)
    v2 = write_ws(tmp_path / "v2", options="web, other", replace="        replace: {ads: other}\n", code_len=20)
    engine = make_engine(live.url)
    try:
        result = apply(engine, v2, author="t", message="drop ads, narrow code")
        applied.set()
        kinds = sorted(c.kind for c in result.plan.changes)
        assert "replace_options" in kinds and "narrow_length" in kinds, format_plan(result.plan)
        time.sleep(2.5)  # longer than any refresh interval a server could have used
        stop.set()
        for t in threads:
            t.join(timeout=30)
        with engine.connect() as conn:
            ads = conn.execute(text("SELECT count(*) FROM lead WHERE source = 'ads' AND deleted_at IS NULL")).scalar()
            longest = conn.execute(text("SELECT max(length(code)) FROM lead WHERE deleted_at IS NULL")).scalar()
        with engine.connect() as conn:
            from engine.runtime.schema.operations import plan_against_database

            again = plan_against_database(conn, v2)
    finally:
        engine.dispose()
    assert ads == 0, f"{ads} live rows still hold the removed option 'ads'"
    assert longest <= 20, f"a code of {longest} characters got past the narrowed max_length 20"
    assert again.is_empty, format_plan(again)
    assert not [s for s in live.statuses if s >= 500], sorted(set(live.statuses))
    assert live.statuses.count(400) > 0 and (live.statuses.count(200) + live.statuses.count(201)) > 0


def test_type_changes_under_patch_load_never_answer_5xx(live: Live, tmp_path: Path) -> None:
    stop = threading.Event()
    threads = writers(live, stop, lambda: {"note": "n" * 30, "code": "c"}, n=8)
    engine = make_engine(live.url)
    try:
        time.sleep(0.5)
        for i in range(8):  # every apply changes the type of note (varchar length) and of code
            ws = write_ws(tmp_path / f"v{i}", note_len=100 + 10 * (i + 1), code_len=40 + i + 1)
            apply(engine, ws, author="t", message=f"widen {i}")
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        engine.dispose()
    served = [s for s in live.statuses if s in (200, 201)]
    assert len(served) > 50, sorted(set(live.statuses))
    assert not [s for s in live.statuses if s >= 500], sorted(set(live.statuses))
