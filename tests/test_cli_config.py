"""The crm CLI as a new user meets it: init, validate, schema, and broken configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CRM = [sys.executable, "-m", "engine.cli"]


def crm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRM, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_init_and_validate(tmp_path: Path):
    r = crm("init", "acme", "--industry", "manufacturing", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "extends: industries/manufacturing" in (tmp_path / "acme" / "workspace.yaml").read_text()
    r = crm("validate", "acme", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: workspace 'acme' (base <- industries/manufacturing <- workspace)")


def test_init_unknown_industry(tmp_path: Path):
    r = crm("init", "acme", "--industry", "minning", cwd=tmp_path)
    assert r.returncode == 1
    assert "unknown industry 'minning'" in r.stderr and "manufacturing" in r.stderr
    assert "Traceback" not in r.stderr


BROKEN = {
    "indentation": ("entity: device\nfields:\n  a: {type: string}\n   b: {type: string}\n", "x.yaml:4:"),
    "tab": ("entity: device\nfields:\n\ta: {type: string}\n", "x.yaml:3:1: a tab"),
    "unknown_type": ("entity: device\nfields:\n  a: {type: strng}\n", "x.yaml:3:13: fields.a.type: 'strng'"),
    "unknown_property": ("entity: device\nfields:\n  a: {type: string, lenght: 3}\n", "unknown property 'lenght'"),
    "missing_entity": ("entity: device\nfields:\n  a: {type: reference, to: nothing}\n",
                       "x.yaml:3:28: field 'a' refers to unknown entity 'nothing'"),
    "duplicate_field": ("entity: device\nfields:\n  a: {type: string}\n  a: {type: string}\n",
                        "x.yaml:4:3: duplicate key 'a'"),
    "redefinition": ("entity: lead\n", "x.yaml:1:1: entity 'lead' is already defined at "),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_configs_exit_1_with_location_and_hint(tmp_path: Path, case: str):
    text, expected = BROKEN[case]
    assert crm("init", "ws", cwd=tmp_path).returncode == 0
    (tmp_path / "ws" / "entities" / "x.yaml").write_text(text)
    r = crm("validate", "ws", cwd=tmp_path)
    assert r.returncode == 1, r.stdout
    assert expected in r.stderr, r.stderr
    assert "hint:" in r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout


def test_schema_export(tmp_path: Path):
    r = crm("schema", "--out", "schemas", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    entity = json.loads((tmp_path / "schemas" / "entity.json").read_text())
    assert entity["$schema"].endswith("2020-12/schema")
    assert "money" in entity["$defs"]["field"]["properties"]["type"]["enum"]


def test_validate_outside_a_workspace(tmp_path: Path):
    r = crm("validate", "nowhere", cwd=tmp_path)
    assert r.returncode == 1 and "is not a folder" in r.stderr and "Traceback" not in r.stderr
