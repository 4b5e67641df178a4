"""Editing the options of an earlier layer's picklist: options: {remove, update, add, after|before}.

The examples edit ``lead.status``: ``opportunity.stage`` takes its options from the pipeline that owns it
(tests/dsl/test_pipeline_config.py)."""

from __future__ import annotations

from pathlib import Path

from engine.dsl.compiler import compile_folder
from tests.dsl.test_config_errors import errors_of, only_error, where

BASE_STATUSES = ["new", "working", "qualified", "unqualified", "converted"]
BASE_FILE = "configs/base/entities/lead.yaml"


def _status_keys(folder: Path) -> list[str]:
    return [o.key for o in compile_folder(folder).entities["lead"].fields["status"].options]


def _edit_status(write_ws, body: str) -> Path:
    return write_ws({"entities/lead.yaml": "entity: lead\nextend: true\nfields:\n  status:\n" + body})


def test_add_after_a_key_keeps_every_earlier_option(write_ws) -> None:
    ws = _edit_status(write_ws, "    options:\n      add: [{key: on_hold, label: {en: On hold}}]\n"
                                "      after: working\n")
    assert _status_keys(ws) == ["new", "working", "on_hold", "qualified", "unqualified", "converted"]
    status = compile_folder(ws).entities["lead"].fields["status"]
    assert status.default == "new"
    assert dict(status.options[2].label) == {"en": "On hold"}


def test_add_before_and_add_last(write_ws) -> None:
    before = _edit_status(write_ws, "    options: {add: [imported, scoping], before: new}\n")
    assert _status_keys(before) == ["imported", "scoping", *BASE_STATUSES]
    last = _edit_status(write_ws, "    options: {add: [on_hold]}\n")
    assert _status_keys(last) == [*BASE_STATUSES, "on_hold"]


def test_remove_with_replace_and_update_a_label_in_place(write_ws) -> None:
    ws = _edit_status(write_ws, """\
    options:
      remove: [working]
      update:
        qualified: {label: {en: Sales-ready}}
    replace: {working: new}
""")
    status = compile_folder(ws).entities["lead"].fields["status"]
    assert [o.key for o in status.options] == ["new", "qualified", "unqualified", "converted"]
    assert dict(status.options[1].label) == {"en": "Sales-ready", "zh": "已确认"}  # the other language is kept
    assert dict(status.replace) == {"working": "new"}


def test_update_a_plain_key_option(write_ws) -> None:
    ws = write_ws({"entities/device.yaml": "entity: device\nfields:\n  size: {type: picklist, options: [s, m, l]}\n",
                   "entities/device_more.yaml": "entity: device\nextend: true\nfields:\n"
                                                "  size: {options: {update: {m: {label: Medium, color: blue}}}}\n"})
    size = compile_folder(ws).entities["device"].fields["size"]
    assert [(o.key, dict(o.label), o.color) for o in size.options][1] == ("m", {"en": "Medium"}, "blue")


def test_whole_list_replacement_still_replaces(write_ws) -> None:
    ws = _edit_status(write_ws, "    default: open\n    options: [open, closed, converted]\n")
    assert _status_keys(ws) == ["open", "closed", "converted"]  # (pools and conversion use 'converted')


def test_industry_and_workspace_both_edit(tmp_path: Path, write_ws) -> None:
    ind = tmp_path / "ind"
    (ind / "entities").mkdir(parents=True)
    (ind / "industry.yaml").write_text("industry: ind\nextends: base\n", "utf-8")
    (ind / "entities" / "lead.yaml").write_text(
        "entity: lead\nextend: true\nfields:\n  status:\n    options: {add: [trial], after: working}\n", "utf-8")
    ws = write_ws({"entities/lead.yaml": "entity: lead\nextend: true\nfields:\n  status:\n"
                                         "    options: {add: [pilot], after: trial, remove: [unqualified]}\n"
                                         "    replace: {unqualified: new}\n"}, extends="../ind")
    assert _status_keys(ws) == ["new", "working", "trial", "pilot", "qualified", "converted"]


# --------------------------------------------------------------------------- errors


def test_forgetting_the_default_in_a_whole_list_points_at_the_workspace(write_ws) -> None:
    ws = _edit_status(write_ws, "    options:\n      - working\n      - qualified\n      - converted\n")
    err = only_error(ws)
    assert err.code == "schema_violation"
    assert where(err) == ("lead.yaml", 6, 7)
    assert Path(err.location.file).parent.parent.name == "acme"
    assert "default 'new' is not one of the options (working, qualified, converted)" in err.message
    assert f"the options are defined at {BASE_FILE}:63:7 and changed at " in err.message
    assert err.hint is not None and "keep 'new' among the options" in err.hint


def test_removing_the_default_points_at_the_remove(write_ws) -> None:
    ws = _edit_status(write_ws, "    options: {remove: [new]}\n")
    err = only_error(ws)
    assert where(err) == ("lead.yaml", 5, 14)
    assert "default 'new' is not one of the options" in err.message
    assert f"defined at {BASE_FILE}:63:7" in err.message


def test_a_default_set_later_than_the_options_is_reported_at_the_default(write_ws) -> None:
    ws = _edit_status(write_ws, "    default: nwe\n")
    err = only_error(ws)
    assert where(err) == ("lead.yaml", 5, 14)
    assert "the options are" not in err.message


def test_adding_an_existing_key(write_ws) -> None:
    ws = _edit_status(write_ws, "    options:\n      add:\n        - {key: new, label: New!}\n")
    err = only_error(ws)
    assert err.code == "duplicate_definition"
    assert where(err) == ("lead.yaml", 7, 11)
    assert err.message == f"fields.status.options: 'new' is already in the list (at {BASE_FILE}:63:9)"
    assert err.hint == "change it with 'update: {new: {label: ...}}', or add another key"


def test_after_an_unknown_key_suggests_the_close_one(write_ws) -> None:
    ws = _edit_status(write_ws, "    options: {add: [on_hold], after: workng}\n")
    err = only_error(ws)
    assert err.code == "unknown_reference"
    assert where(err) == ("lead.yaml", 5, 38)
    assert err.message == (f"fields.status.options: 'after: workng' names no key "
                           f"(the list is defined at {BASE_FILE}:63:7)")
    assert err.hint is not None and err.hint.startswith("did you mean 'working'? the keys are: new")


def test_removing_and_updating_unknown_keys(write_ws) -> None:
    ws = _edit_status(write_ws, "    options:\n      remove: [convrted]\n      update: {qualifed: {label: Ready}}\n")
    errs = errors_of(ws)
    assert [(e.code, where(e)) for e in errs] == [("unknown_reference", ("lead.yaml", 6, 16)),
                                                  ("unknown_reference", ("lead.yaml", 7, 16))]
    assert "cannot remove 'convrted', there is no such key" in errs[0].message
    assert errs[0].hint is not None and errs[0].hint.startswith("did you mean 'converted'?")
    assert "cannot update 'qualifed'" in errs[1].message
    assert errs[1].hint is not None and errs[1].hint.startswith("did you mean 'qualified'?")


def test_misused_edit_forms(write_ws) -> None:
    both = only_error(_edit_status(write_ws, "    options: {add: [x], after: new, before: working}\n"))
    assert (both.code, where(both)) == ("list_edit", ("lead.yaml", 5, 37))
    assert "both 'after:' and 'before:'" in both.message
    no_add = only_error(_edit_status(write_ws, "    options: {after: new}\n"))
    assert (no_add.code, where(no_add)) == ("list_edit", ("lead.yaml", 5, 15))
    assert no_add.hint == "add 'add: [...]', or remove 'after:'"
    twice = only_error(_edit_status(write_ws, "    options: {remove: [new], update: {new: {label: W}}}\n"))
    assert (twice.code, where(twice)) == ("list_edit", ("lead.yaml", 5, 24))


def test_edit_form_with_nothing_to_edit(write_ws) -> None:
    ws = write_ws({"entities/device.yaml": "entity: device\nfields:\n  size:\n    type: picklist\n"
                                           "    options: {add: [s, m]}\n"})
    err = only_error(ws)
    assert (err.code, where(err)) == ("list_edit", ("device.yaml", 5, 5))
    assert "no earlier layer gives this field options" in err.message
    assert err.hint == "write the options as a list here"


def test_typo_in_the_edit_form_is_a_schema_error_with_a_suggestion(write_ws) -> None:
    err = only_error(_edit_status(write_ws, "    options: {add: [x], afterr: new}\n"))
    assert err.code == "schema_unknown_property"
    assert where(err) == ("lead.yaml", 5, 25)
    assert err.hint == "did you mean 'after'?"


def test_the_documented_example_loads(write_ws) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text("utf-8")
    marker = "<!-- example: workspace entities/lead.yaml -->\n```yaml\n"
    example = doc[doc.index(marker) + len(marker):].split("```", 1)[0]
    status = compile_folder(write_ws({"entities/lead.yaml": example})).entities["lead"].fields["status"]
    assert [o.key for o in status.options] == ["new", "working", "nurturing", "qualified", "converted"]
    assert dict(status.options[3].label)["en"] == "Sales-ready"
    assert dict(status.replace) == {"unqualified": "nurturing"}


def test_the_documented_error_text(write_ws) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text("utf-8")
    ws = _edit_status(write_ws, "    options: {remove: [new]}\n")
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
