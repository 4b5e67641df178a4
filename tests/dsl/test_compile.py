"""Compiling shipped and custom workspaces into the typed model."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from engine.dsl.compiler import compile_bundle, compile_folder
from engine.dsl.layers import discover, list_industries, shipped_configs_root, to_bundle
from engine.dsl.model import Workspace
from engine.dsl.yamlsrc import load_text


@pytest.fixture(scope="module")
def manufacturing() -> Workspace:
    return compile_folder(shipped_configs_root() / "industries" / "manufacturing")


def test_base_has_the_core_crm_model():
    ws = compile_folder(shipped_configs_root() / "base")
    for name in ("lead", "account", "contact", "opportunity", "activity", "task", "product", "quote",
                 "contract", "order", "ticket", "campaign"):
        assert name in ws.entities, name
    assert {"admin", "sales", "sales_manager"} <= set(ws.roles)
    assert ws.roles["admin"].admin


def test_manufacturing_extends_base(manufacturing):
    assert manufacturing.layers == ("base", "industries/manufacturing")
    opp = manufacturing.entities["opportunity"]
    assert "budget_range" in opp.fields and "stage" in opp.fields
    assert "equipment" in manufacturing.entities
    assert manufacturing.entities["opportunity"].core


def test_lines_become_child_entities(manufacturing):
    quote = manufacturing.entities["quote"]
    lines = [f for f in quote.fields.values() if f.type == "lines"]
    assert lines
    child = manufacturing.entities[lines[0].lines_entity]
    assert child.parent is not None and child.parent.entity == "quote"
    assert "product" in child.fields


def test_model_is_immutable(manufacturing):
    with pytest.raises(dataclasses.FrozenInstanceError):
        manufacturing.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        manufacturing.entities["x"] = None  # type: ignore[index]


def test_yaml_12_booleans_keep_on_and_no_as_strings():
    data = load_text("on: [create]\nanswer: no\nflag: true\nday: 2026-01-01\n", "t.yaml")[0].data
    assert data == {"on": ["create"], "answer": "no", "flag": True, "day": "2026-01-01"}


def test_extend_adds_overrides_and_retires(write_ws):
    ws = compile_folder(write_ws({"entities/lead.yaml": """\
        entity: lead
        extend: true
        label: {en: Prospect}
        fields:
          wechat_id: {type: string, max_length: 64}
          company: {max_length: 120}
          notes: {remove: true}
        checks:
          - check: "wechat_id is not null or email is not null"
            message: {en: Give a WeChat ID or an email}
        """}))
    lead = ws.entities["lead"]
    assert lead.label["en"] == "Prospect"
    assert lead.fields["wechat_id"].max_length == 64
    assert lead.fields["company"].max_length == 120 and lead.fields["company"].required
    assert "notes" not in lead.fields and "notes" in lead.retired
    assert lead.checks[-1].message["en"] == "Give a WeChat ID or an email"
    assert len(lead.checks) >= 2  # base check kept, ours appended


def test_defaults_are_typed(write_ws):
    ws = compile_folder(write_ws({"entities/x.yaml": """\
        entity: device
        fields:
          price: {type: money, default: 12.5}
          kind: {type: picklist, options: [a, b], default: b}
          since: {type: date, default: "2026-01-31"}
        """}))
    f = ws.entities["device"].fields
    assert f["price"].default == Decimal("12.5")
    assert f["kind"].default == "b"
    assert str(f["since"].default) == "2026-01-31"


def test_sql_keyword_entity_name_compiles(write_ws):
    ws = compile_folder(write_ws({"entities/x.yaml": "entity: select\nfields:\n  from: {type: string}\n"}))
    assert "select" in ws.entities and "order" in ws.entities


def test_bundle_round_trip_gives_the_same_workspace(write_ws):
    folder = write_ws({"entities/x.yaml": "entity: device\nfields:\n  name: {type: string}\n"},
                      extends="industries/manufacturing")
    layers = discover(folder)
    direct = compile_folder(folder)
    again = compile_bundle(to_bundle(layers, direct.name))
    assert again.content_hash == direct.content_hash
    assert again.entities.keys() == direct.entities.keys()
    assert again.entities["device"].fields.keys() == direct.entities["device"].fields.keys()


def test_content_hash_changes_with_any_file(write_ws):
    a = compile_folder(write_ws({"entities/x.yaml": "entity: device\n"}, name="one"))
    b = compile_folder(write_ws({"entities/x.yaml": "entity: device\nlabel: Device\n"}, name="two"))
    assert a.content_hash != b.content_hash


def test_every_shipped_industry_compiles():
    names = [n for n, _ in list_industries()]
    assert "manufacturing" in names
    for _, folder in list_industries():
        assert compile_folder(folder).entities


def test_wide_entity_warns_and_suggests_json(write_ws):
    fields = "\n".join(f"  f{i}: {{type: string}}" for i in range(500))
    ws = compile_folder(write_ws({"entities/x.yaml": f"entity: wide\nfields:\n{fields}\n"}))
    warning = next(w for w in ws.warnings if "'wide'" in w)
    assert "storage: json" in warning and "x.yaml" in warning


def test_wide_entity_with_json_storage_does_not_warn(write_ws):
    fields = "\n".join(f"  f{i}: {{type: string, storage: json}}" for i in range(1000))
    ws = compile_folder(write_ws({"entities/x.yaml": f"entity: wide\nfields:\n{fields}\n"}))
    assert not [w for w in ws.warnings if "'wide'" in w]
    assert len(ws.entities["wide"].json_fields) == 1000


def test_unknown_extends(tmp_path: Path):
    (tmp_path / "workspace.yaml").write_text("workspace: x\nextends: industries/mining\n")
    from engine.errors import LayerError

    with pytest.raises(LayerError) as info:
        compile_folder(tmp_path)
    assert info.value.location is not None and info.value.location.line == 2
    assert "industries/manufacturing" in (info.value.hint or "")


def test_generated_reference_is_current():
    from engine.dsl.docgen import render

    committed = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text("utf-8")
    assert committed == render(), "run: python -m engine.dsl.docgen > docs/reference.md"
