"""The bundled example plugin (plugins/crm-chinese-id), installed as a package: a workspace enables it, and
validate, plan, apply, serve and a restarted server all use its field type and function.  Both databases."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.api import create_app
from engine.errors import ConfigError
from engine.plugins import compile_folder, installed_plugins
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.runtime import Runtime
from engine.runtime.schema.operations import apply_workspace

VALID = "11010519491231002X"  # the check digit of 11010519491231002 is X
FILES = {
    "workspace.yaml": "workspace: idtest\nextends: base\nphone_region: CN\nplugins: [chinese_id]\n",
    "entities/contact.yaml": """
        entity: contact
        extend: true
        fields:
          id_card: {type: chinese_id, unique: true}
          mobile: {type: phone, keep_as_typed: true}  # masked as typed, not in its E.164 form
          masked_mobile: {type: string, formula: "mask_phone(mobile)"}
    """,
}


def _workspace(folder: Path, files: dict[str, str] = FILES) -> Path:
    for name, body in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return folder


def test_the_plugin_is_installed_as_a_package() -> None:
    assert "chinese_id" in installed_plugins(), "pip install -e plugins/crm-chinese-id (.ci/run does)"


def test_validate_plan_apply_serve_and_restart(db_url: str, tmp_path: Path) -> None:
    folder = _workspace(tmp_path / "idtest")
    ws, host = compile_folder(folder)
    assert host.names == ("chinese_id",)
    field = ws.entities["contact"].fields["id_card"]
    assert (field.type, field.format, field.max_length) == ("string", "chinese_id", 18)
    apply_workspace(ws, db_url, yes=True, allow_destructive=False, purge=False, message="id", author="t",
                    echo=lambda _s: None, confirm=lambda _q: True, export_dir=tmp_path / "exports")
    for _restart in range(2):  # the second runtime is a restarted server: it compiles the stored revision
        runtime = Runtime.open(db_url)
        try:
            with runtime.unit(Actor.system()) as uow:
                if not uow.conn.execute(users.crm_users.select()).first():
                    users.create_user(uow, "admin", roles=["admin"])
                token = users.create_token(uow, "admin", "t")
            client = create_app(runtime).test_client()
            auth = {"Authorization": f"Bearer {token}"}
            account = client.post("/api/v1/records/account", json={"name": f"Acme {_restart}"}, headers=auth)
            body = {"name": "张伟", "account": account.get_json()["id"], "mobile": "13812345678"}
            bad = client.post("/api/v1/records/contact", json={**body, "id_card": "110105194912310021"},
                              headers=auth)
            assert bad.status_code == 400
            assert bad.get_json()["error"]["details"]["id_card"] == ["has a wrong check digit"]
            if _restart == 0:
                made = client.post("/api/v1/records/contact", json={**body, "id_card": VALID.lower()},
                                   headers=auth)
                assert made.status_code == 201, made.get_json()
                assert made.get_json()["id_card"] == VALID and made.get_json()["masked_mobile"] == "138****5678"
            found = client.get("/api/v1/records/contact", headers=auth,
                               query_string={"filter": "mask_phone(mobile) == '138****5678'"})
            assert found.status_code == 200 and [r["id_card"] for r in found.get_json()["items"]] == [VALID]
        finally:
            runtime.close()


def test_without_the_plugin_enabled_the_type_is_unknown(tmp_path: Path) -> None:
    files = {**FILES, "workspace.yaml": "workspace: idtest\nextends: base\n"}
    with pytest.raises(ConfigError) as info:
        compile_folder(_workspace(tmp_path / "off", files))
    assert "chinese_id" in str(info.value)


def test_an_unknown_plugin_name_is_a_located_error(tmp_path: Path) -> None:
    files = {**FILES, "workspace.yaml": "workspace: idtest\nextends: base\nplugins: [chinese_id, chinese_idd]\n"}
    folder = _workspace(tmp_path / "typo", files)
    env = {**os.environ, "CRM_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    r = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(folder)], capture_output=True, text=True,
                       timeout=120, check=False, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "workspace.yaml:3:" in r.stderr and "plugin 'chinese_idd' is not installed" in r.stderr, r.stderr
    assert "did you mean 'chinese_id'?" in r.stderr


def test_an_unknown_plugin_is_compared_with_every_installed_one(tmp_path: Path) -> None:
    """Only the misspelt name enabled: the error still lists the installed plugins and guesses the right one."""
    files = {"workspace.yaml": "workspace: idtest\nextends: base\nplugins: [chinese_idd]\n"}
    with pytest.raises(ConfigError) as info:
        compile_folder(_workspace(tmp_path / "typo", files))
    text = str(info.value)
    assert "plugin 'chinese_idd' is not installed (installed plugins: " in text and "chinese_id" in text, text
    assert "installed plugins: none" not in text and "did you mean 'chinese_id'?" in text, text
