"""Editing the options of an earlier layer's picklist: options: {remove, update, add, after|before}."""

from __future__ import annotations

from pathlib import Path

from engine.dsl.compiler import compile_folder
from tests.dsl.test_config_errors import errors_of, only_error, where

BASE_STAGES = ["qualification", "needs_analysis", "proposal", "negotiation", "won", "lost"]
BASE_FILE = "configs/base/entities/opportunity.yaml"


def _stage_keys(folder: Path) -> list[str]:
    return [o.key for o in compile_folder(folder).entities["opportunity"].fields["stage"].options]


def _edit_stage(write_ws, body: str) -> Path:
    return write_ws({"entities/opportunity.yaml": "entity: opportunity\nextend: true\nfields:\n  stage:\n" + body})


def test_add_after_a_key_keeps_every_earlier_option(write_ws) -> None:
    ws = _edit_stage(write_ws, "    options:\n      add: [{key: on_hold, label: {en: On hold}}]\n"
                               "      after: negotiation\n")
    assert _stage_keys(ws) == ["qualification", "needs_analysis", "proposal", "negotiation", "on_hold", "won",
                               "lost"]
    stage = compile_folder(ws).entities["opportunity"].fields["stage"]
    assert stage.default == "qualification"
    assert dict(stage.options[4].label) == {"en": "On hold"}


def test_add_before_and_add_last(write_ws) -> None:
    before = _edit_stage(write_ws, "    options: {add: [discovery, scoping], before: qualification}\n")
    assert _stage_keys(before) == ["discovery", "scoping", *BASE_STAGES]
    last = _edit_stage(write_ws, "    options: {add: [on_hold]}\n")
    assert _stage_keys(last) == [*BASE_STAGES, "on_hold"]


def test_remove_with_replace_and_update_a_label_in_place(write_ws) -> None:
    ws = _edit_stage(write_ws, """\
    options:
      remove: [needs_analysis]
      update:
        proposal: {label: {en: Quote}}
    replace: {needs_analysis: qualification}
""")
    stage = compile_folder(ws).entities["opportunity"].fields["stage"]
    assert [o.key for o in stage.options] == ["qualification", "proposal", "negotiation", "won", "lost"]
    assert dict(stage.options[1].label) == {"en": "Quote", "zh": "方案报价"}  # the other language is kept
    assert dict(stage.replace) == {"needs_analysis": "qualification"}


def test_update_a_plain_key_option(write_ws) -> None:
    ws = write_ws({"entities/device.yaml": "entity: device\nfields:\n  size: {type: picklist, options: [s, m, l]}\n",
                   "entities/device_more.yaml": "entity: device\nextend: true\nfields:\n"
                                                "  size: {options: {update: {m: {label: Medium, color: blue}}}}\n"})
    size = compile_folder(ws).entities["device"].fields["size"]
    assert [(o.key, dict(o.label), o.color) for o in size.options][1] == ("m", {"en": "Medium"}, "blue")


def test_whole_list_replacement_still_replaces(write_ws) -> None:
    ws = _edit_stage(write_ws, "    default: open\n    options: [open, closed]\n")
    assert _stage_keys(ws) == ["open", "closed"]


def test_industry_and_workspace_both_edit(tmp_path: Path, write_ws) -> None:
    ind = tmp_path / "ind"
    (ind / "entities").mkdir(parents=True)
    (ind / "industry.yaml").write_text("industry: ind\nextends: base\n", "utf-8")
    (ind / "entities" / "opportunity.yaml").write_text(
        "entity: opportunity\nextend: true\nfields:\n  stage:\n    options: {add: [trial], after: proposal}\n", "utf-8")
    ws = write_ws({"entities/opportunity.yaml": "entity: opportunity\nextend: true\nfields:\n  stage:\n"
                                                "    options: {add: [pilot], after: trial, remove: [lost]}\n"
                                                "    replace: {lost: won}\n"}, extends="../ind")
    assert _stage_keys(ws) == ["qualification", "needs_analysis", "proposal", "trial", "pilot", "negotiation",
                               "won"]


# --------------------------------------------------------------------------- errors


def test_forgetting_the_default_in_a_whole_list_points_at_the_workspace(write_ws) -> None:
    ws = _edit_stage(write_ws, "    options:\n      - needs_analysis\n      - won\n      - lost\n")
    err = only_error(ws)
    assert err.code == "schema_violation"
    assert where(err) == ("opportunity.yaml", 6, 7)
    assert Path(err.location.file).parent.parent.name == "acme"
    assert "default 'qualification' is not one of the options (needs_analysis, won, lost)" in err.message
    assert f"the options are defined at {BASE_FILE}:20:7 and changed at " in err.message
    assert err.hint is not None and "keep 'qualification' among the options" in err.hint


def test_removing_the_default_points_at_the_remove(write_ws) -> None:
    ws = _edit_stage(write_ws, "    options: {remove: [qualification]}\n")
    err = only_error(ws)
    assert where(err) == ("opportunity.yaml", 5, 14)
    assert "default 'qualification' is not one of the options" in err.message
    assert f"defined at {BASE_FILE}:20:7" in err.message


def test_a_default_set_later_than_the_options_is_reported_at_the_default(write_ws) -> None:
    ws = _edit_stage(write_ws, "    default: qualificaton\n")
    err = only_error(ws)
    assert where(err) == ("opportunity.yaml", 5, 14)
    assert "the options are" not in err.message


def test_adding_an_existing_key(write_ws) -> None:
    ws = _edit_stage(write_ws, "    options:\n      add:\n        - {key: won, label: Won!}\n")
    err = only_error(ws)
    assert err.code == "duplicate_definition"
    assert where(err) == ("opportunity.yaml", 7, 11)
    assert err.message == f"fields.stage.options: 'won' is already in the list (at {BASE_FILE}:24:9)"
    assert err.hint == "change it with 'update: {won: {label: ...}}', or add another key"


def test_after_an_unknown_key_suggests_the_close_one(write_ws) -> None:
    ws = _edit_stage(write_ws, "    options: {add: [on_hold], after: negotation}\n")
    err = only_error(ws)
    assert err.code == "unknown_reference"
    assert where(err) == ("opportunity.yaml", 5, 38)
    assert err.message == (f"fields.stage.options: 'after: negotation' names no key "
                           f"(the list is defined at {BASE_FILE}:20:7)")
    assert err.hint is not None and err.hint.startswith("did you mean 'negotiation'? the keys are: qualification")


def test_removing_and_updating_unknown_keys(write_ws) -> None:
    ws = _edit_stage(write_ws, "    options:\n      remove: [lots]\n      update: {propsal: {label: Quote}}\n")
    errs = errors_of(ws)
    assert [(e.code, where(e)) for e in errs] == [("unknown_reference", ("opportunity.yaml", 6, 16)),
                                                  ("unknown_reference", ("opportunity.yaml", 7, 16))]
    assert "cannot remove 'lots', there is no such key" in errs[0].message
    assert errs[0].hint is not None and errs[0].hint.startswith("did you mean 'lost'?")
    assert "cannot update 'propsal'" in errs[1].message
    assert errs[1].hint is not None and errs[1].hint.startswith("did you mean 'proposal'?")


def test_misused_edit_forms(write_ws) -> None:
    both = only_error(_edit_stage(write_ws, "    options: {add: [x], after: won, before: lost}\n"))
    assert (both.code, where(both)) == ("list_edit", ("opportunity.yaml", 5, 37))
    assert "both 'after:' and 'before:'" in both.message
    no_add = only_error(_edit_stage(write_ws, "    options: {after: won}\n"))
    assert (no_add.code, where(no_add)) == ("list_edit", ("opportunity.yaml", 5, 15))
    assert no_add.hint == "add 'add: [...]', or remove 'after:'"
    twice = only_error(_edit_stage(write_ws, "    options: {remove: [won], update: {won: {label: W}}}\n"))
    assert (twice.code, where(twice)) == ("list_edit", ("opportunity.yaml", 5, 24))


def test_edit_form_with_nothing_to_edit(write_ws) -> None:
    ws = write_ws({"entities/device.yaml": "entity: device\nfields:\n  size:\n    type: picklist\n"
                                           "    options: {add: [s, m]}\n"})
    err = only_error(ws)
    assert (err.code, where(err)) == ("list_edit", ("device.yaml", 5, 5))
    assert "no earlier layer gives this field options" in err.message
    assert err.hint == "write the options as a list here"


def test_typo_in_the_edit_form_is_a_schema_error_with_a_suggestion(write_ws) -> None:
    err = only_error(_edit_stage(write_ws, "    options: {add: [x], afterr: won}\n"))
    assert err.code == "schema_unknown_property"
    assert where(err) == ("opportunity.yaml", 5, 25)
    assert err.hint == "did you mean 'after'?"


def test_the_documented_example_loads(write_ws) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text("utf-8")
    marker = "<!-- example: workspace entities/opportunity.yaml -->\n```yaml\n"
    example = doc[doc.index(marker) + len(marker):].split("```", 1)[0]
    stage = compile_folder(write_ws({"entities/opportunity.yaml": example})).entities["opportunity"].fields["stage"]
    assert [o.key for o in stage.options] == ["qualification", "needs_analysis", "proposal", "negotiation",
                                              "on_hold", "won"]
    assert dict(stage.options[2].label)["en"] == "Quote"
    assert dict(stage.replace) == {"lost": "won"}


def test_the_documented_error_text(write_ws) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text("utf-8")
    ws = _edit_stage(write_ws, "    options: {remove: [qualification]}\n")
    err = only_error(ws)
    shown = str(err).replace(str(ws.parent) + "/", "")
    assert shown in doc, shown


def test_the_exported_schema_describes_the_edit_form(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    import jsonschema
    from referencing import Registry, Resource

    out = tmp_path / "schemas"
    subprocess.run([sys.executable, "-m", "engine.cli", "schema", "--out", str(out)], check=True,
                   env=os.environ.copy(), capture_output=True)
    schemas = {p.name: json.loads(p.read_text("utf-8")) for p in out.glob("*.json")}
    registry = Registry().with_resources(
        (name, Resource.from_contents(s)) for name, s in schemas.items())
    registry = registry.with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values() if "$id" in s)
    validator = jsonschema.Draft202012Validator(schemas["entity.json"], registry=registry)
    good = {"entity": "opportunity", "extend": True, "fields": {"stage": {"options": {
        "add": [{"key": "on_hold"}], "after": "negotiation", "remove": ["lost"],
        "update": {"proposal": {"label": {"en": "Quote"}}}}}}}
    assert list(validator.iter_errors(good)) == []
    bad = {"entity": "opportunity", "fields": {"stage": {"options": {"add": ["x"], "afterr": "y"}}}}
    assert list(validator.iter_errors(bad))
    assert "option_edit" in schemas["entity.json"]["$defs"]
