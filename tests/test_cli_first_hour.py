"""The implementer's first hour, as they meet it on the command line: operational errors that are not
bugs, exit statuses a CI pipeline can use, plans that say what they will do, renames and required fields
that cannot surprise.  Every command runs as a subprocess; database tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.context import Actor
from engine.runtime.runtime import Runtime

CRM = [sys.executable, "-m", "engine.cli"]
EXIT_ERROR, EXIT_CHANGES, EXIT_USAGE = 1, 2, 64


def crm(*args: str, cwd: Path, db_url: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("CRM_DATABASE_URL", None)
    if db_url is not None:
        full["CRM_DATABASE_URL"] = db_url
    return subprocess.run([*CRM, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout,
                          check=False)


def clean(r: subprocess.CompletedProcess[str]) -> None:
    """No traceback and no 'bug in the engine' for a problem the user can fix."""
    assert "Traceback" not in r.stderr and "bug in the engine" not in r.stderr, r.stderr


def workspace(tmp_path: Path, lead_fields: str = "") -> Path:
    assert crm("init", "acme", cwd=tmp_path).returncode == 0
    if lead_fields:
        write_lead(tmp_path, lead_fields)
    return tmp_path / "acme"


def write_lead(tmp_path: Path, fields: str) -> None:
    (tmp_path / "acme" / "entities" / "lead.yaml").write_text(
        "entity: lead\nextend: true\nfields:\n" + fields, "utf-8")


def applied(tmp_path: Path, db_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    r = crm("apply", "acme", "--yes", *extra, cwd=tmp_path, db_url=db_url)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def add_leads(db_url: str, rows: list[dict[str, Any]]) -> list[int]:
    rt = Runtime.open(db_url)
    try:
        with rt.unit(Actor.system()) as uow:
            return [uow.records.create("lead", {"contact_name": f"L{i}", "company": "Acme", "email": f"l{i}@x.cn",
                                                **row})["id"] for i, row in enumerate(rows)]
    finally:
        rt.close()


def read_leads(db_url: str) -> dict[int, dict[str, Any]]:
    rt = Runtime.open(db_url)
    try:
        with rt.unit(Actor.system(), readonly=True) as uow:
            return {r["id"]: r for r in uow.records.list("lead", limit=500).items}
    finally:
        rt.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- operational errors


def test_a_missing_driver_names_the_package_to_install(tmp_path: Path):
    workspace(tmp_path)
    r = crm("plan", "acme", cwd=tmp_path, db_url="postgresql+pg8000://u@127.0.0.1/db")
    assert r.returncode == EXIT_ERROR and "pg8000 driver" in r.stderr and "pip install 'pg8000'" in r.stderr
    clean(r)


def test_psycopg_comes_with_the_default_install():
    """PostgreSQL out of the box: the engine's own dependencies include the psycopg driver."""
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text("utf-8"))
    deps = project["project"]["dependencies"]
    assert any(d.startswith("psycopg[binary]") for d in deps), deps


def test_an_unreachable_database_is_not_a_bug(tmp_path: Path):
    workspace(tmp_path)
    url = f"postgresql+psycopg://u@127.0.0.1:{free_port()}/db"
    for command in (["plan", "acme"], ["apply", "acme", "--yes"], ["serve", "acme"], ["user", "list", "acme"]):
        r = crm(*command, cwd=tmp_path, db_url=url)
        assert r.returncode == EXIT_ERROR, (command, r.stderr)
        assert "cannot connect to PostgreSQL at 127.0.0.1" in r.stderr and "is the server running" in r.stderr
        clean(r)


def test_validate_works_without_a_reachable_database(tmp_path: Path):
    workspace(tmp_path)
    r = crm("validate", "acme", cwd=tmp_path, db_url=f"postgresql+psycopg://u@127.0.0.1:{free_port()}/db")
    assert r.returncode == 0 and r.stdout.startswith("ok: workspace 'acme'"), r.stderr
    assert "checks against the database were skipped: cannot connect" in r.stderr


def test_a_missing_database_file_is_reported_and_not_created(tmp_path: Path):
    workspace(tmp_path)
    db = tmp_path / "nowhere" / "crm.db"
    url = f"sqlite:///{db}"
    for command in (["serve", "acme"], ["user", "list", "acme"], ["revisions", "acme"], ["worker", "acme", "--once"],
                    ["expr", "lead", "1", "acme", "--record", "1"]):
        r = crm(*command, cwd=tmp_path, db_url=url)
        assert r.returncode == EXIT_ERROR and f"there is no database file at {db}" in r.stderr, (command, r.stderr)
        assert "crm apply" in r.stderr
        clean(r)
    r = crm("plan", "acme", cwd=tmp_path, db_url=url)
    assert r.returncode == EXIT_CHANGES and "does not exist yet: apply creates it" in r.stdout
    assert not db.exists() and not db.parent.exists(), "planning must never create the database"


def test_a_read_only_database_says_so(tmp_path: Path):
    workspace(tmp_path)
    db = tmp_path / "acme" / "crm.db"
    applied(tmp_path, f"sqlite:///{db}")
    write_lead(tmp_path, "  wx_id: {type: string}\n")
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    for command in (["apply", "acme", "--yes"], ["user", "add", "ann", "--role", "sales", "acme"]):
        r = crm(*command, cwd=tmp_path, db_url=read_only)
        assert r.returncode == EXIT_ERROR and "is read-only" in r.stderr and "write access" in r.stderr, r.stderr
        clean(r)


def test_a_port_in_use_is_reported_before_serving_is_announced(tmp_path: Path):
    workspace(tmp_path)
    url = f"sqlite:///{tmp_path / 'acme' / 'crm.db'}"
    applied(tmp_path, url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        for workers in ("1", "2"):
            r = crm("serve", "acme", "--port", port, "--workers", workers, cwd=tmp_path, db_url=url, timeout=60)
            assert r.returncode == EXIT_ERROR and f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
            assert "already in use" in r.stderr and "--port" in r.stderr and "serving" not in r.stdout
            clean(r)


def test_a_wrong_command_line_exits_64(tmp_path: Path):
    for args in (["nosuch"], ["plan", "--bogus"], ["user", "add"]):
        r = crm(*args, cwd=tmp_path)
        assert r.returncode == EXIT_USAGE and "Error:" in r.stderr, (args, r.returncode, r.stderr)


def test_an_unknown_role_shows_the_engines_message(tmp_path: Path):
    workspace(tmp_path)
    url = f"sqlite:///{tmp_path / 'acme' / 'crm.db'}"
    applied(tmp_path, url)
    r = crm("user", "add", "x", "--role", "salse", "acme", cwd=tmp_path, db_url=url)
    assert r.returncode == EXIT_ERROR and "unknown role 'salse' (did you mean 'sales'?)" in r.stderr, r.stderr
    assert "admin, finance, legal, sales" in r.stderr
    r = crm("handover", "ghost", "x", "acme", cwd=tmp_path, db_url=url)
    assert r.returncode == EXIT_ERROR and "'crm user list'" in r.stderr, r.stderr
    assert crm("user", "add", "ann", "--role", "sales", "--team", "east", "acme", cwd=tmp_path,
               db_url=url).returncode == 0
    r = crm("user", "list", "acme", cwd=tmp_path, db_url=url)
    assert r.returncode == 0 and "ann" in r.stdout and "east" in r.stdout and "sales" in r.stdout, r.stdout


# --------------------------------------------------------------------------- crm expr


def test_expr_needs_no_database_for_type_and_sql(tmp_path: Path):
    workspace(tmp_path)
    expression = "industry == 'manufacturing' and budget >= 1000000"
    r = crm("expr", "lead", expression, "acme", "--sql", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("type: boolean\nsql: SELECT lead.id") and "= 1" in r.stdout  # SQLite's boolean
    r = crm("expr", "lead", expression, "acme", "--sql", cwd=tmp_path, db_url="postgresql://u@127.0.0.1:1/none")
    assert r.returncode == 0 and "CAST('manufacturing' AS TEXT)" in r.stdout, r.stderr
    assert not (tmp_path / "acme" / "crm.db").exists()
    r = crm("expr", "lead", "budgt > 1", "acme", cwd=tmp_path)
    assert r.returncode == EXIT_ERROR and "did you mean 'budget'?" in r.stderr
    clean(r)


# --------------------------------------------------------------------------- crm plan for CI


def test_plan_exit_codes_and_json(tmp_path: Path, db_url: str):
    workspace(tmp_path)
    r = crm("plan", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == EXIT_CHANGES, r.stderr
    applied(tmp_path, db_url)
    r = crm("plan", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 0 and "no changes" in r.stdout
    r = crm("plan", "acme", "--json", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "none"
    write_lead(tmp_path, "  wx_id: {type: string, max_length: 64}\n")
    r = crm("plan", "acme", "--json", cwd=tmp_path, db_url=db_url)
    report = json.loads(r.stdout)
    assert r.returncode == EXIT_CHANGES and report["status"] == "changes"
    assert [(c["kind"], c["field"]) for c in report["changes"]] == [("add_column", "wx_id")]
    assert report["database"]["revision"] == 1 and report["counts"] == {"safe": 1, "destructive": 0, "blocked": 0}
    applied(tmp_path, db_url)
    add_leads(db_url, [{"wx_id": "a" * 60}])
    write_lead(tmp_path, "  wx_id: {type: string, max_length: 10}\n")
    r = crm("plan", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == EXIT_ERROR and "! narrow lead.wx_id" in r.stdout and "blocked:" in r.stdout
    assert json.loads(crm("plan", "acme", "--json", cwd=tmp_path, db_url=db_url).stdout)["status"] == "blocked"


def test_validate_catches_a_rename_of_nothing_and_a_replace_onto_nothing(tmp_path: Path, db_url: str):
    workspace(tmp_path, "  wx_id: {type: string}\n")
    applied(tmp_path, db_url)
    write_lead(tmp_path, "  wx_account: {type: string, renamed_from: wx_idd}\n")
    r = crm("validate", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == EXIT_ERROR, r.stdout
    assert "acme/entities/lead.yaml:4:3: field lead.wx_account is renamed_from 'wx_idd'" in r.stderr, r.stderr
    assert "fields the database has that the folder no longer lists: wx_id" in r.stderr
    r = crm("plan", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == EXIT_ERROR and "lead.yaml:4:3" in r.stdout, r.stdout
    write_lead(tmp_path, "  wx_id: {type: string}\n  tier:\n    type: picklist\n    options: [gold, silver]\n"
                         "    replace: {bronze: silvr}\n")
    r = crm("validate", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == EXIT_ERROR and "lead.yaml:8:23: field 'tier': replace maps 'bronze' to 'silvr'" in r.stderr
    assert "did you mean 'silver'?" in r.stderr
    clean(r)


def test_a_field_made_required_with_empty_rows_is_blocked_unless_a_default_fills_them(tmp_path: Path, db_url: str):
    workspace(tmp_path, "  wx_id: {type: string}\n")
    applied(tmp_path, db_url)
    ids = add_leads(db_url, [{"wx_id": "kept"}, {}, {}])
    write_lead(tmp_path, "  wx_id: {type: string, required: true}\n")
    r = crm("plan", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == EXIT_ERROR and "lead.wx_id becomes required but 2 rows have no value" in r.stdout
    assert "give lead.wx_id a default:" in r.stdout
    r = crm("apply", "acme", "--yes", cwd=tmp_path, db_url=db_url)
    assert r.returncode == EXIT_ERROR
    write_lead(tmp_path, "  wx_id: {type: string, required: true, default: unknown}\n"
                         "  region_code: {type: string, required: true, storage: json, default: CN-31}\n")
    r = applied(tmp_path, db_url)
    assert "2 rows get the default 'unknown'" in r.stdout and "3 rows get the default 'CN-31'" in r.stdout, r.stdout
    rows = read_leads(db_url)
    assert [rows[i]["wx_id"] for i in ids] == ["kept", "unknown", "unknown"]
    assert {rows[i]["region_code"] for i in ids} == {"CN-31"}
    assert crm("plan", "acme", cwd=tmp_path, db_url=db_url).returncode == 0


def test_another_workspaces_database_is_refused_without_force(tmp_path: Path, db_url: str):
    workspace(tmp_path)
    applied(tmp_path, db_url)
    manifest = tmp_path / "acme" / "workspace.yaml"
    manifest.write_text(manifest.read_text().replace("workspace: acme", "workspace: globex"))
    for command in (["plan", "acme"], ["apply", "acme", "--yes"], ["validate", "acme"]):
        r = crm(*command, cwd=tmp_path, db_url=db_url)
        assert r.returncode == EXIT_ERROR and "the database holds workspace 'acme'" in r.stderr, r.stderr
        assert "--force" in r.stderr
    r = crm("apply", "acme", "--yes", "--force", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 0 and "applied: revision 2" in r.stdout, r.stderr


def test_plan_and_apply_print_the_same_changes_in_the_same_order(tmp_path: Path, db_url: str):
    workspace(tmp_path, "  wx_id: {type: string, index: true}\n  tier: {type: picklist, options: [a, b]}\n")
    first_plan = crm("plan", "acme", cwd=tmp_path, db_url=db_url).stdout
    first_apply = applied(tmp_path, db_url).stdout
    # the plan may first say that the SQLite file does not exist yet; from there on they are the same
    shown = first_plan[first_plan.index("database has no revision yet"):]
    assert first_apply.startswith(shown.rstrip("\n")), (first_plan, first_apply)
    lines = [ln for ln in first_plan.splitlines() if ln.startswith("+ ")]
    assert all(ln.startswith("+ create table ") for ln in lines), "a first plan is one line per entity"
    lead_line = r"\+ create table lead \(safe, \d+ fields, \d+ indexes(; then build the search index of lead)?\)"
    assert len(lines) == 14 and any(re.fullmatch(lead_line, ln) for ln in lines), lines
    verbose = crm("plan", "acme", "-v", cwd=tmp_path, db_url=tmp_path.as_uri().replace("file:", "sqlite:") + "/n.db")
    assert "+ add index ix_lead_wx_id on lead (safe)" in verbose.stdout, verbose.stdout
    assert crm("plan", "acme", "-v", cwd=tmp_path, db_url=db_url).returncode == 0
    write_lead(tmp_path, "  wx_code: {type: string, index: true}\n  tier: {type: picklist, options: [a, b, c]}\n")
    again_plan = crm("plan", "acme", "-v", cwd=tmp_path, db_url=db_url).stdout
    again_apply = crm("apply", "acme", "--yes", "-v", cwd=tmp_path, db_url=db_url).stdout
    assert again_apply.startswith(again_plan.rstrip("\n")), (again_plan, again_apply)
    assert "+ add index ix_lead_wx_code on lead (safe)" in again_plan


def test_a_label_only_change_says_what_changed(tmp_path: Path, db_url: str):
    workspace(tmp_path, "  wx_id: {type: string, label: {en: WeChat, zh: 微信}}\n")
    applied(tmp_path, db_url)
    write_lead(tmp_path, "  wx_id: {type: string, label: {en: WeChat, zh: 微信号}}\n")
    r = crm("plan", "acme", cwd=tmp_path, db_url=db_url)
    assert r.returncode == EXIT_CHANGES and "no changes" not in r.stdout
    assert "no schema changes" in r.stdout and "~ lead.wx_id.label.zh: '微信' -> '微信号'" in r.stdout, r.stdout
    r = applied(tmp_path, db_url)
    assert "lead.wx_id.label.zh" in r.stdout and "applied: revision 2" in r.stdout


def test_the_author_falls_back_to_the_os_user(tmp_path: Path):
    import getpass

    workspace(tmp_path)
    url = f"sqlite:///{tmp_path / 'acme' / 'crm.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    r = subprocess.run([*CRM, "apply", "acme", "--yes"], cwd=tmp_path, env={**env, "CRM_DATABASE_URL": url},
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    write_lead(tmp_path, "  wx_id: {type: string}\n")
    applied(tmp_path, url, "--author", "li.impl", "-m", "wechat id")
    lines = crm("revisions", "acme", cwd=tmp_path, db_url=url).stdout.splitlines()
    assert "li.impl" in lines[0] and "wechat id" in lines[0]
    assert lines[1].split()[3] == getpass.getuser()


# --------------------------------------------------------------------------- renames and removals


def test_renames_hint_roll_back_and_keep_their_history(tmp_path: Path, db_url: str):
    workspace(tmp_path, "  wx_id: {type: string}\n")
    applied(tmp_path, db_url)
    ids = add_leads(db_url, [{"wx_id": "w0"}, {"wx_id": "w1"}])
    write_lead(tmp_path, "  wx_account: {type: string}\n")
    r = crm("plan", "acme", cwd=tmp_path, db_url=db_url)
    assert "did you mean renamed_from: wx_id?" in r.stdout, r.stdout
    write_lead(tmp_path, "  wx_account: {type: string, renamed_from: wx_id}\n")
    assert "rename lead.wx_id to wx_account" in applied(tmp_path, db_url).stdout
    rt = Runtime.open(db_url)
    try:
        with rt.unit(Actor.system()) as uow:
            uow.records.update("lead", ids[0], {"wx_account": "w0-new"}, expected_version=None)
            history = uow.records.history("lead", ids[0])
    finally:
        rt.close()
    created = next(h for h in history if h.action == "create")
    assert created.new["wx_account"] == "w0" and "wx_id" not in created.new
    assert [(h.field, h.old, h.new) for h in history if h.action == "update"] == [("wx_account", "w0", "w0-new")]
    r = crm("rollback", "1", "acme", "--yes", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 0 and "rename lead.wx_account to wx_id" in r.stdout, r.stdout
    assert [read_leads(db_url)[i]["wx_id"] for i in ids] == ["w0-new", "w1"]
    r = applied(tmp_path, db_url)  # the folder again: forward once more, data still there
    assert "rename lead.wx_id to wx_account" in r.stdout
    assert [read_leads(db_url)[i]["wx_account"] for i in ids] == ["w0-new", "w1"]


@pytest.mark.parametrize("spec", ["{remove: true}", "\n    remove: true"])
def test_removing_a_field_no_layer_defines_explains_itself(tmp_path: Path, spec: str):
    workspace(tmp_path, f"  legacy_code: {spec}\n")
    r = crm("validate", "acme", cwd=tmp_path)
    assert r.returncode == EXIT_ERROR and "acme/entities/lead.yaml:4:3" in r.stderr
    assert "no earlier layer defines 'legacy_code'" in r.stderr and "delete the 'legacy_code' entry" in r.stderr
    assert "has no type" not in r.stderr
