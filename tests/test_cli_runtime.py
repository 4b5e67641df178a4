"""Runtime commands as a user types them: user add, token create, expr, handover (both databases)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.context import Actor
from engine.runtime.runtime import Runtime

CRM = [sys.executable, "-m", "engine.cli"]


def crm(*args: str, cwd: Path, db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_DATABASE_URL": db_url}
    return subprocess.run([*CRM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture
def workspace(tmp_path: Path, db_url: str) -> Path:
    for step in (["init", "acme", "--industry", "manufacturing"], ["apply", "acme", "--yes"]):
        r = crm(*step, cwd=tmp_path, db_url=db_url)
        assert r.returncode == 0, r.stderr
    return tmp_path / "acme"


def test_users_tokens_expr_and_handover(workspace: Path, db_url: str):
    cwd = workspace.parent
    for args in (["user", "add", "boss", "--role", "sales_manager", "--team", "east"],
                 ["user", "add", "ann", "--role", "sales", "--team", "east", "--manager", "boss"],
                 ["user", "add", "bob", "--role", "sales", "--team", "east", "--manager", "boss"]):
        r = crm(*args, "acme", cwd=cwd, db_url=db_url)
        assert r.returncode == 0, r.stderr
    r = crm("token", "create", "ann", "acme", cwd=cwd, db_url=db_url)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("crm_") and " " not in token

    runtime = Runtime.open(db_url)
    try:
        with runtime.unit(Actor.system()) as uow:
            users = dict(uow.conn.exec_driver_sql("SELECT username, id FROM crm_users").all())
            account = uow.records.create("account", {"name": "Acme Tools", "industry": "manufacturing",
                                                     "owner_id": users["ann"]})
            opp = uow.records.create("opportunity", {"name": "Line 3", "account": account["id"],
                                                     "amount": 250000, "owner_id": users["ann"]})
    finally:
        runtime.close()

    r = crm("expr", "opportunity", "account.industry == 'manufacturing' and amount > 100000", "acme",
            "--sql", "--record", str(opp["id"]), cwd=cwd, db_url=db_url)
    assert r.returncode == 0, r.stderr
    assert "type: boolean" in r.stdout and "value: True" in r.stdout
    assert "WHERE account_1.id = opportunity.account_id" in r.stdout

    r = crm("expr", "opportunity", "amount > 'x'", "acme", cwd=cwd, db_url=db_url)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "amount" in r.stderr

    r = crm("handover", "ann", "bob", "acme", cwd=cwd, db_url=db_url)
    assert r.returncode == 0, r.stderr
    runtime = Runtime.open(db_url)
    try:
        with runtime.unit(Actor.system(), readonly=True) as uow:
            assert uow.records.get("opportunity", opp["id"])["owner_id"] == users["bob"]
            fields = {e.field for e in uow.records.history("opportunity", opp["id"])}
            assert "owner_id" in fields
    finally:
        runtime.close()


def test_token_for_unknown_user_is_a_clear_error(workspace: Path, db_url: str):
    r = crm("token", "create", "nobody", "acme", cwd=workspace.parent, db_url=db_url)
    assert r.returncode == 1 and "nobody" in r.stderr and "Traceback" not in r.stderr


def test_bench_targets_are_judged_from_their_text() -> None:
    from engine.benchrunner import meets

    assert meets({"target": ">= 0.5x", "ratio": 0.6}) is True
    assert meets({"target": ">= 0.5x", "ratio": 0.4}) is False
    assert meets({"target": "<= 3x", "ratio": 2.5}) is True
    assert meets({"target": "< 300 ms", "value": 148.0, "unit": "ms"}) is True
    assert meets({"target": "< 1 s", "value": 1.5, "unit": "s"}) is False
    assert meets({"target": "", "value": 3}) is None
    assert meets({"target": "< 50 ms", "value": 3, "unit": "s"}) is None  # units that do not match: not judged


def test_bench_without_a_checkout_says_how_to_run_it(monkeypatch: Any, tmp_path: Any) -> None:
    from engine import benchrunner

    monkeypatch.setattr(benchrunner, "REPO", tmp_path)
    assert "source checkout" in benchrunner.run_benchmarks(quick=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_with_workers_answers_and_stops_on_sigterm(workspace: Path, db_url: str, workers: int) -> None:
    """``crm serve --workers N``: N processes on one port; SIGTERM stops them all, none left behind."""
    import http.client
    import json
    import signal
    import time

    cwd = workspace.parent
    assert crm("user", "add", "boss", "--role", "admin", "acme", cwd=cwd, db_url=db_url).returncode == 0
    token = crm("token", "create", "boss", "acme", cwd=cwd, db_url=db_url).stdout.strip().splitlines()[-1]
    port = _free_port()
    proc = subprocess.Popen([*CRM, "serve", "acme", "--port", str(port), "--workers", str(workers)], cwd=cwd,
                            env={**os.environ, "CRM_DATABASE_URL": db_url}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and status is None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/api/v1/meta", headers={"Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                status, body = resp.status, json.loads(resp.read())
                conn.close()
            except OSError:
                time.sleep(0.2)
        assert status == 200 and body["workspace"] == "acme"
        children = _children(proc.pid)
        assert len(children) == (workers if workers > 1 else 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert f"with {workers} process(es)" in out
    assert not [c for c in children if Path(f"/proc/{c}").exists()], "a worker process outlived the server"
