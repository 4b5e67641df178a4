"""The first done-when of the configuration language, as a user types it, on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from engine.runtime.db import make_engine

CRM = [sys.executable, "-m", "engine.cli"]


def crm(*args: str, cwd: Path, db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_DATABASE_URL": db_url}
    return subprocess.run([*CRM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_init_validate_apply_plan_on_both_databases(tmp_path: Path, db_url: str):
    for step in (["init", "acme", "--industry", "manufacturing"], ["validate", "acme"], ["apply", "acme", "--yes"]):
        r = crm(*step, cwd=tmp_path, db_url=db_url)
        assert r.returncode == 0, f"{step}: {r.stdout}\n{r.stderr}"
    assert "applied: revision 1" in r.stdout
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"lead", "account", "opportunity", "order", "quote_lines", "equipment", "crm_revisions"} <= tables
        columns = {c["name"] for c in inspect(engine).get_columns("opportunity")}
        assert {"id", "version", "owner_id", "deleted_at", "ext", "stage", "budget_range", "amount",
                "amount_currency", "account_id"} <= columns
    finally:
        engine.dispose()
    r = crm("plan", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 0 and "which matches the folder" in r.stdout and "no changes" in r.stdout
    (tmp_path / "acme" / "entities" / "lead.yaml").write_text(
        "entity: lead\nextend: true\nfields:\n  wechat_id: {type: string, max_length: 64}\n")
    r = crm("plan", "acme", cwd=tmp_path, db_url=db_url)
    assert "+ add column lead.wechat_id (safe)" in r.stdout, r.stdout
    r = crm("apply", "acme", "--yes", "-m", "wechat", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 0 and "applied: revision 2" in r.stdout, r.stderr
    r = crm("revisions", "acme", cwd=tmp_path, db_url=db_url)
    assert r.stdout.splitlines()[0].startswith("*     2") and "wechat" in r.stdout
    r = crm("config", "pull", "pulled", "--workspace", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pulled" / "entities" / "lead.yaml").read_text().endswith("max_length: 64}\n")


def test_apply_without_yes_and_no_terminal_refuses(tmp_path: Path, db_url: str):
    assert crm("init", "acme", cwd=tmp_path, db_url=db_url).returncode == 0
    r = crm("apply", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 1 and "pass --yes" in r.stderr and "Traceback" not in r.stderr


def test_bad_database_url_is_a_clear_error(tmp_path: Path):
    assert crm("init", "acme", cwd=tmp_path, db_url="sqlite://").returncode == 0
    r = crm("apply", "acme", "--yes", cwd=tmp_path, db_url="mysql://x@localhost/db")
    assert r.returncode == 1 and "not supported" in r.stderr and "Traceback" not in r.stderr
