"""A plugin installed through the entry point adds a kind (which adds a field), write steps before and after
the write, and is still there after a restart; every write path runs its steps.  Both databases."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError, ValidationFailed
from engine.plugins import PluginHost, compile_folder
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.runtime import Runtime
from engine.runtime.schema.operations import apply_workspace
from tests.plugins.conftest import Install

PLUGIN = '''
    from engine.dsl.kinds import KindSpec
    from engine.dsl.model import Field
    from engine.plugins import hookimpl

    SEEN = []  # (stage, action, entity) in call order

    SCHEMA = {"type": "object", "required": ["tagging", "entity"], "additionalProperties": False,
              "properties": {"tagging": {"type": "string"}, "entity": {"type": "string"},
                             "field": {"type": "string"}}}


    def compile_tagging(docs, ctx):
        out = {}
        for doc in docs:
            if doc.data["entity"] not in ctx.entities:
                from engine.errors import UnknownReference
                ctx.report(UnknownReference(f"tagging {doc.name!r}: no entity {doc.data['entity']!r}",
                                            location=doc.loc))
                continue
            out[doc.name] = (doc.data["entity"], doc.data.get("field", "tag"), doc.loc)
        return out


    def tagging_fields(objects, ctx):
        out = {}
        for obj in objects.values():
            entity, field, loc = obj.compiled
            out.setdefault(entity, []).append(Field(field, "string", loc, max_length=40))
        return out


    class Stamp:
        name, order = "tagging_stamp", 150

        def __init__(self, workspace):
            self.tagged = {obj.compiled[0]: obj.compiled[1]
                           for obj in workspace.objects_of("tagging").values()}

        def applies_to(self, entity):
            return entity in self.tagged

        def before_write(self, ctx, entity, record, old):
            SEEN.append(("before", ctx.action, entity))
            if ctx.action in ("create", "update"):
                if record.get("name") == "forbidden":
                    from engine.errors import ValidationFailed
                    raise ValidationFailed("forbidden by the plugin", details={"name": ["is forbidden"]})
                record[self.tagged[entity]] = "tagged-" + ctx.action

        def after_write(self, ctx, entity, record, old):
            SEEN.append(("after", ctx.action, entity))


    @hookimpl
    def crm_config_kinds():
        return [KindSpec("tagging", SCHEMA, "marks an entity's records", compile=compile_tagging, order=50,
                         entity_fields=tagging_fields)]


    @hookimpl
    def crm_write_steps(workspace):
        return [Stamp(workspace)]
'''

FILES = {
    "workspace.yaml": "workspace: tagged\nplugins: [tagplug]\n",
    "item.yaml": """
        entity: item
        fields:
          name: {type: string}
    """,
    "tagging.yaml": """
        tagging: items
        entity: item
        field: label
    """,
    "roles.yaml": "role: admin\nadmin: true\n",
}


def _folder(root: Path, files: dict[str, str] = FILES) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return root


def test_steps_run_on_every_write_path_and_survive_a_restart(install_plugin: Install, db_url: str,
                                                            tmp_path: Path) -> None:
    install_plugin("tagplug", PLUGIN)
    ws, host = compile_folder(_folder(tmp_path / "ws"))
    assert host.names == ("tagplug",) and "label" in ws.entities["item"].fields  # the kind added the field
    apply_workspace(ws, db_url, yes=True, allow_destructive=False, purge=False, message="v1", author="t",
                    echo=lambda _s: None, confirm=lambda _q: True, export_dir=tmp_path / "exports")
    import tagplug  # type: ignore[import-not-found]

    seen: list[Any] = tagplug.SEEN
    for restart in range(2):  # the second runtime is a restarted server on the stored revision
        seen.clear()
        rt = Runtime.open(db_url)
        try:
            system = Actor.system()
            with rt.unit(system) as uow:
                if restart == 0:
                    users.create_user(uow, "admin", roles=["admin"])
                    users.create_user(uow, "heir", roles=["admin"])
                admin = users.actor_for(uow.conn, uow.workspace, "admin")
            with rt.unit(admin) as uow:
                made = uow.records.create("item", {"name": "one"})
                assert made["label"] == "tagged-create"
                updated = uow.records.update("item", made["id"], {"name": "two"}, expected_version=1)
                assert updated["label"] == "tagged-update"
                uow.records.delete("item", made["id"])
                uow.records.restore("item", made["id"])
                ids = uow.records.create_many("item", [{"name": "a"}, {"name": "b"}])
                assert uow.records.update_many("item", f"id in [{ids[0]}, {ids[1]}]", {"name": "c"}) == 2
            with rt.unit(system) as uow:
                moved = users.handover(uow, "admin", "heir")
            assert moved["item"] == 3
            with pytest.raises(ValidationFailed, match="forbidden"), rt.unit(admin) as uow:
                uow.records.create("item", {"name": "forbidden"})
            actions = [(stage, action) for stage, action, _e in seen]
            expected = [(s, a) for a in ("create", "update", "delete", "restore") for s in ("before", "after")]
            expected += [("before", "create")] * 2 + [("after", "create")] * 2  # create_many: all validated first
            expected += [("before", "update"), ("after", "update")] * 2  # update_many: record by record
            expected += [("before", "update"), ("after", "update")] * 3  # handover of the 3 live items
            expected += [("before", "create")]  # refused before anything is written: no after
            assert actions == expected
        finally:
            rt.close()


def test_a_plugin_kind_error_is_located_and_an_unknown_hook_fails(install_plugin: Install, tmp_path: Path) -> None:
    install_plugin("tagplug", PLUGIN)
    files = {**FILES, "tagging.yaml": "tagging: items\nentity: itme\n"}
    with pytest.raises(ConfigError) as info:
        compile_folder(_folder(tmp_path / "bad", files))
    assert "tagging 'items': no entity 'itme'" in str(info.value) and "tagging.yaml:1:" in str(info.value)

    class Misspelled:
        PLUGIN_NAME = "misspelled"

        from engine.plugins import hookimpl

        @staticmethod
        @hookimpl
        def crm_write_step(workspace: Any) -> list[Any]:  # the hook is crm_write_steps
            return []

    with pytest.raises(Exception, match="crm_write_step"):
        PluginHost(extra=[Misspelled()])


ROUTES = '''
    import click
    from flask import Blueprint, jsonify

    from engine.plugins import hookimpl

    bp = Blueprint("hello", __name__, url_prefix="/hello")


    @bp.get("/")
    def hello():
        return jsonify({"hello": "world"})


    @click.command("hello")
    def hello_command():
        """Say hello (from a plugin)."""
        click.echo("hello from a plugin")


    @hookimpl
    def crm_api_blueprints(runtime):
        return [bp]


    @hookimpl
    def crm_cli_commands():
        return [hello_command]
'''


def test_a_plugin_serves_routes_and_adds_a_command(install_plugin: Install, db_url: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from engine.api import create_app

    install_plugin("helloplug", ROUTES)
    files = {**{k: v for k, v in FILES.items() if k != "tagging.yaml"},
             "workspace.yaml": "workspace: hello\nplugins: [helloplug]\n"}
    ws, _host = compile_folder(_folder(tmp_path / "ws", files))
    apply_workspace(ws, db_url, yes=True, allow_destructive=False, purge=False, message="v1", author="t",
                    echo=lambda _s: None, confirm=lambda _q: True, export_dir=tmp_path / "exports")
    rt = Runtime.open(db_url)
    try:
        assert create_app(rt).test_client().get("/hello/").get_json() == {"hello": "world"}
    finally:
        rt.close()
    site = next(p for p in sys.path if p.endswith("site"))
    env = {**os.environ, "PYTHONPATH": site + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "engine.cli", "hello"], capture_output=True, text=True, env=env,
                       timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "hello from a plugin", r.stderr
