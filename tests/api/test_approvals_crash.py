"""A server process killed (SIGKILL) in the middle of a final approval, with other approvals pending,
loses nothing and applies nothing twice -- on SQLite and PostgreSQL, with the shipped ``quote_discount``
flow and ``crm serve`` run as a subprocess.

A test plugin's write step kills the server while the outcome write of the first approval (its
``approval_status`` turning ``approved``) is in the transaction.  After a restart the instance is still
pending with its task ready and no decision recorded; the retried request (same ``Idempotency-Key``)
approves it once; the other pending quotes complete; every decision, outcome write and notification
exists exactly once.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_approval_decisions, crm_audit, crm_notifications
from engine.runtime.runtime import Runtime
from tests.api.conftest import apply_folder_quietly, free_port
from tests.api.test_live import http_json
from tests.conftest import Install

KILLER = '''
    import os
    import signal

    from engine.plugins import hookimpl


    class Killer:
        """Kills its process (SIGKILL) when a quote's approval turns approved and APPROVALKILLER is set."""

        name = "approvalkiller"
        order = 999

        def applies_to(self, entity):
            return entity == "quote"

        def before_write(self, ctx, entity, record, old):
            pass

        def after_write(self, ctx, entity, record, old):
            if os.environ.get("APPROVALKILLER") and old is not None and record.get("approval_status") == "approved" \\
                    and old.get("approval_status") == "pending":
                os.kill(os.getpid(), signal.SIGKILL)


    @hookimpl
    def crm_write_steps(workspace):
        return [Killer()]
'''


def _env(url: str, site: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "CRM_DATABASE_URL": url, "PYTHONPATH": os.pathsep.join(
        [str(site), *sys.path]), **extra}


@contextmanager
def server(folder: Path, url: str, site: Path, **extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``crm serve`` in a subprocess (one process); yields (base URL, process)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", str(folder), "--port", str(port),
                             "--workers", "1"], env=_env(url, site, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read() if proc.stdout else "the server exited")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture(name="setup")
def setup_fixture(install_plugin: Install, db_url: str, tmp_path: Path,
                  manufacturing_folder: Path) -> Iterator[tuple[Path, str, Path, dict[str, str]]]:
    install_plugin("approvalkiller", KILLER)
    site = Path(next(p for p in sys.path if p.endswith("site")))
    folder = tmp_path / "acme"
    shutil.copytree(manufacturing_folder, folder)
    ws_file = folder / "workspace.yaml"
    ws_file.write_text(ws_file.read_text("utf-8").replace("plugins: []", "plugins: [approvalkiller]"), "utf-8")
    apply_folder_quietly(folder, db_url)
    rt = Runtime.open(db_url)
    tokens = {}
    try:
        with rt.unit(Actor.system()) as uow:
            users.create_user(uow, "boss", roles=["sales_manager"])
            users.create_team(uow, "east_sales", manager="boss")
            users.create_user(uow, "li", roles=["sales"], team="east_sales")
            for name in ("boss", "li"):
                tokens[name] = users.create_token(uow, name, "crash")
    finally:
        rt.close()
    yield folder, db_url, site, tokens


def _count(url: str, stmt: Any) -> list[Any]:
    rt = Runtime.open(url)
    try:
        with rt.unit(Actor.system(), readonly=True) as uow:
            return list(uow.conn.execute(stmt).all())
    finally:
        rt.close()


def test_a_server_killed_during_a_final_approval_loses_nothing_and_applies_nothing_twice(
        setup: tuple[Path, str, Path, dict[str, str]]) -> None:
    folder, url, site, tokens = setup
    li, boss = tokens["li"], tokens["boss"]
    with server(folder, url, site, APPROVALKILLER="1") as (base, proc):
        code, account = http_json(base, "POST", "/api/v1/records/account", li, {"name": "苏州精密机械"})
        assert code == 201, account
        quotes = []
        for rate in (0.25, 0.3, 0.22):
            code, made = http_json(base, "POST", "/api/v1/records/quote", li,
                                   {"account": account["id"], "discount_rate": rate})
            assert code == 201 and made["approval_status"] == "pending", made
            quotes.append(int(made["id"]))
        code, inbox = http_json(base, "GET", "/api/v1/approvals/tasks?assignee=me", boss)
        tasks = {t["record_id"]: t["id"] for t in inbox["items"]}
        assert sorted(tasks) == sorted(quotes)
        first = tasks[quotes[0]]
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            http_json(base, "POST", f"/api/v1/approvals/tasks/{first}/complete", boss, {"decision": "approve"},
                      headers={"Idempotency-Key": "retry-1"})
        assert proc.wait(timeout=60) == -signal.SIGKILL

    with server(folder, url, site) as (base, _proc):
        code, quote = http_json(base, "GET", f"/api/v1/records/quote/{quotes[0]}", boss)
        assert quote["approval_status"] == "pending"
        code, inbox = http_json(base, "GET", "/api/v1/approvals/tasks?assignee=me", boss)
        assert sorted(t["id"] for t in inbox["items"]) == sorted(tasks.values())  # every task resumed
        for _ in range(2):  # the client retries with its key; then once more
            code, view = http_json(base, "POST", f"/api/v1/approvals/tasks/{first}/complete", boss,
                                   {"decision": "approve"}, headers={"Idempotency-Key": "retry-1"})
            assert code == 200 and view["status"] == "approved", view
        for qid in quotes[1:]:
            code, view = http_json(base, "POST", f"/api/v1/approvals/tasks/{tasks[qid]}/complete", boss,
                                   {"decision": "approve"})
            assert code == 200 and view["status"] == "approved", view
        for qid in quotes:
            code, quote = http_json(base, "GET", f"/api/v1/records/quote/{qid}", boss)
            assert quote["approval_status"] == "approved"

    d = crm_approval_decisions
    decided = _count(url, select(d.c.instance_id, d.c.decision, func.count()).group_by(d.c.instance_id, d.c.decision))
    assert sorted(n for _i, what, n in decided if what in ("approve", "approved")) == [1] * 6
    a = crm_audit
    writes = _count(url, select(a.c.record_id, func.count()).where(
        a.c.entity == "quote", a.c.field == "approval_status").group_by(a.c.record_id))
    assert sorted(n for _r, n in writes) == [1, 1, 1]  # pending was set with the create; approved once each
    n = crm_notifications
    outcomes = _count(url, select(n.c.record_id, func.count()).where(n.c.kind == "approval_outcome")
                      .group_by(n.c.record_id))
    assert sorted(outcomes) == sorted((q, 1) for q in quotes)
