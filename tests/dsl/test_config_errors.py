"""Broken configurations: every error is located (file:line:col), coded and hinted."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.dsl.compiler import compile_folder
from engine.errors import ConfigError
from tests.dsl.config_helpers import errors_of, where


def only_error(folder: Path) -> ConfigError:
    errs = errors_of(folder)
    assert len(errs) == 1, [str(e) for e in errs]
    return errs[0]


def test_unknown_field_type_suggests_the_close_one(write_ws):
    ws = write_ws({"entities/x.yaml": """\
        entity: device
        fields:
          name: {type: string}
          price: {type: moneyy}
        """})
    err = only_error(ws)
    assert err.code == "schema_enum"
    assert where(err) == ("x.yaml", 4, 17)
    assert "fields.price.type: 'moneyy' is not one of" in err.message
    assert "did you mean 'money'?" in err.message and err.hint == "did you mean 'money'?"


def test_unknown_property_is_located_at_the_key(write_ws):
    ws = write_ws({"entities/x.yaml": """\
        entity: device
        fields:
          name: {type: string, requried: true}
        """})
    err = only_error(ws)
    assert err.code == "schema_unknown_property"
    assert where(err) == ("x.yaml", 3, 24)
    assert "unknown property 'requried'" in err.message
    assert err.hint == "did you mean 'required'?"


def test_bad_indentation(write_ws):
    ws = write_ws({"entities/x.yaml": "entity: device\nfields:\n  name: {type: string}\n   size: {type: integer}\n"})
    err = only_error(ws)
    assert err.code == "yaml_syntax"
    assert where(err)[:2] == ("x.yaml", 4)
    assert "indentation" in (err.hint or "")
    assert err.snippet and "^" in err.snippet


def test_a_tab_is_reported_where_it_is(write_ws):
    ws = write_ws({"entities/x.yaml": "entity: device\nfields:\n\tname: {type: string}\n"})
    err = only_error(ws)
    assert err.code == "yaml_syntax"
    assert where(err) == ("x.yaml", 3, 1)
    assert "tab" in err.message and "spaces" in (err.hint or "")


def test_reference_to_missing_entity(write_ws):
    ws = write_ws({"entities/x.yaml": """\
        entity: device
        fields:
          owner_account: {type: reference, to: acount}
        """})
    err = only_error(ws)
    assert err.code == "unknown_reference"
    assert where(err) == ("x.yaml", 3, 40)
    assert "unknown entity 'acount'" in err.message
    assert err.hint == "did you mean 'account'?"


def test_duplicate_field(write_ws):
    ws = write_ws({"entities/x.yaml": """\
        entity: device
        fields:
          name: {type: string}
          name: {type: text}
        """})
    err = only_error(ws)
    assert err.code == "yaml_syntax"
    assert where(err) == ("x.yaml", 4, 3)
    assert "duplicate key 'name' (first at line 3)" in err.message


def test_conflicting_redefinition_across_layers_names_both_places(write_ws):
    ws = write_ws({"entities/lead.yaml": "entity: lead\nfields:\n  x: {type: string}\n"})
    err = only_error(ws)
    assert err.code == "duplicate_definition"
    assert where(err) == ("lead.yaml", 1, 1)
    assert "configs/base/entities/lead.yaml" in err.message
    assert "extend: true" in (err.hint or "")
    assert err.details["first"].endswith("configs/base/entities/lead.yaml:4:1")  # after the file's comment lines
    assert err.details["second"].endswith("acme/entities/lead.yaml:1:1")


def test_unknown_kind_lists_the_known_ones(write_ws):
    ws = write_ws({"entities/x.yaml": "entiti: device\n"})
    err = only_error(ws)
    assert err.code == "unknown_kind"
    assert where(err) == ("x.yaml", 1, 1)
    assert "did you mean 'entity'?" in (err.hint or "") and "known kinds: entity, role" in (err.hint or "")


def test_extend_of_something_undefined(write_ws):
    ws = write_ws({"entities/x.yaml": "entity: devise\nextend: true\n"})
    err = only_error(ws)
    assert err.code == "layer_error"
    assert "no earlier layer defines it" in err.message


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("id", "standard column"), ("crm_thing", "crm_"), ("Bad", "lowercase"), ("ext", "standard column")],
)
def test_reserved_and_invalid_field_names(write_ws, name, fragment):
    ws = write_ws({"entities/x.yaml": f"entity: device\nfields:\n  {name}: {{type: string}}\n"})
    errs = errors_of(ws)
    assert any(fragment in e.message or fragment in (e.hint or "") for e in errs), [str(e) for e in errs]
    assert all(e.location is not None for e in errs)


def test_reference_column_may_not_shadow_a_standard_column(write_ws):
    ws = write_ws({"entities/x.yaml": "entity: device\nfields:\n  parent: {type: reference, to: account}\n"})
    err = only_error(ws)
    assert err.code == "invalid_name" and "'parent_id'" in err.message and where(err) == ("x.yaml", 3, 3)


def test_type_specific_rules(write_ws):
    ws = write_ws({"entities/x.yaml": """\
        entity: device
        fields:
          kind: {type: picklist}
          size: {type: string, min: 3}
          code: {type: auto_number, pattern: "D-{YYYY}"}
          price: {type: money, default: cheap}
        """})
    messages = sorted(e.message for e in errors_of(ws))
    assert any("needs 'options:'" in m for m in messages)
    assert any("'min' does not apply to a string field" in m for m in messages)
    assert any("naming series needs a counter" in m for m in messages)
    assert any("default 'cheap' is not a number" in m for m in messages)


def test_every_error_is_reported_at_once(write_ws):
    ws = write_ws({
        "entities/a.yaml": "entity: a1\nfields:\n  x: {type: strin}\n",
        "entities/b.yaml": "entity: b1\nfields:\n  y: {type: integr}\n",
    })
    errs = errors_of(ws)
    assert sorted(where(e)[0] for e in errs) == ["a.yaml", "b.yaml"]


def test_non_utf8_file(write_ws):
    ws = write_ws({})
    (ws / "entities").mkdir()
    (ws / "entities" / "x.yaml").write_bytes(b"entity: device\nlabel: caf\xe9\n")
    err = only_error(ws)
    assert err.code == "yaml_syntax" and "UTF-8" in err.message and where(err)[1] == 2


def test_role_names_unknown_entity_and_field(write_ws):
    ws = write_ws({"roles/r.yaml": """\
        role: auditor
        permissions:
          leed: {read: all}
        fields:
          lead.scoer: hidden
        """})
    msgs = [(e.message, e.hint) for e in errors_of(ws)]
    assert ("role 'auditor' gives permissions on unknown entity 'leed'", "did you mean 'lead'?") in msgs
    assert ("role 'auditor': entity 'lead' has no field 'scoer'", "did you mean 'score'?") in msgs


def test_error_text_format(write_ws):
    ws = write_ws({"entities/x.yaml": "entity: device\nfields:\n  price: {type: moneyy}\n"})
    text = str(only_error(ws))
    first = text.splitlines()[0]
    assert first.endswith("x.yaml:3:17: fields.price.type: 'moneyy' is not one of [string, text, integer, decimal, "
                          "money, percent, boolean, date, datetime, email, phone, url, picklist, multi_picklist, "
                          "reference, user, json, lines, auto_number] (did you mean 'money'?)")
    assert "  hint: did you mean 'money'?" in text


# --------------------------------------------------------------------------- expressions inside YAML


def test_expression_errors_are_located_in_the_yaml_file(write_ws):
    ws = write_ws({"entities/x.yaml": """\
        entity: lead
        extend: true
        checks:
          - check: "industry == 'manufacturng' and budget > 0"
            message: typo
          - check: budget = 5
          - {check: "budgett > 1"}
        fields:
          total2: {type: money, formula: "budget * 2 + company"}
          due: {type: date, default_expr: "$today + 1"}
          flag: {type: boolean, formula: "budget"}
        """})
    got = sorted((where(e)[1], where(e)[2], e.code, e.message) for e in errors_of(ws))
    assert got == [
        (4, 25, "expression_unknown_option",
         "'manufacturng' is not an option of industry; did you mean 'manufacturing'?"),
        (6, 19, "expression_single_equals", "`=` is not an operator here"),
        (7, 14, "expression_unknown_field", "unknown field 'budgett' on lead; did you mean 'budget'?"),
        (9, 48, "expression_type_mismatch", "`+` needs numbers, but `company` is a string"),
        (10, 36, "expression_type_mismatch", "`+` needs numbers, but `$today` is a date"),
        (11, 35, "expression_wrong_result_type", "this expression must give a boolean, but it gives a number"),
    ]
    unknown = next(e for e in errors_of(ws) if e.code == "expression_unknown_field")
    assert unknown.hint == "did you mean 'budget'?" and "^^^^^^^" in (unknown.snippet or "")
    assert where(unknown)[0] == "x.yaml"


def _bomb(levels: int, fanout: int = 10) -> str:
    rows = ["x0: &a0 [" + ", ".join(["lol"] * fanout) + "]"]
    rows += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]" for i in range(1, levels)]
    return "entity: bomb\nfields:\n  name: {type: string}\nextras:\n" + "".join(f"  {r}\n" for r in rows)


def test_alias_bomb_is_refused_before_it_expands(write_ws):
    ws = write_ws({"entities/bomb.yaml": _bomb(24)})
    err = only_error(ws)
    assert err.code == "yaml_syntax" and "expands to more than 200,000 values" in err.message
    assert where(err)[0] == "bomb.yaml" and where(err)[1] == 10  # the first anchor that grows too large
    assert "aliases" in (err.hint or "")


def test_merge_key_bomb_and_self_reference_are_refused(write_ws):
    rows = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4}"]
    rows += [f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 8) + f"], k{i}: 1}}" for i in range(1, 20)]
    ws = write_ws({"entities/merge.yaml": "entity: merge\nfields:\n  name: {type: string}\nextras:\n"
                   + "".join(f"  {r}\n" for r in rows)})
    assert "expands to more than" in only_error(ws).message
    ws2 = write_ws({"entities/loop.yaml": "entity: loop\nfields: &f\n  name: {type: string}\n  again: *f\n"})
    [err] = [e for e in errors_of(ws2) if where(e)[0] == "loop.yaml"]
    assert err.code == "yaml_syntax" and "refers to the value that contains it" in err.message


def test_modest_aliases_still_work(write_ws):
    ws = write_ws({"entities/ok.yaml": (
        "entity: device\nfields:\n  name: &text {type: string, max_length: 80}\n  model: *text\n")})
    compiled = compile_folder(ws)
    assert compiled.entities["device"].fields["model"].max_length == 80


def test_oversized_file_is_refused_with_its_size(write_ws):
    ws = write_ws({"entities/huge.yaml": "entity: huge\nfields:\n  name: {type: string}\n# "
                   + "x" * (3 * 1024 * 1024) + "\n"})
    err = only_error(ws)
    assert err.code == "yaml_syntax" and "the limit is 2,097,152" in err.message and where(err)[1:] == (1, 1)


def test_alias_bomb_through_the_cli_is_quick_and_clean(tmp_path):
    import subprocess
    import sys

    ws = tmp_path / "acme"
    (ws / "entities").mkdir(parents=True)
    (ws / "workspace.yaml").write_text("workspace: acme\n", encoding="utf-8")
    (ws / "entities" / "bomb.yaml").write_text(_bomb(24), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(ws)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 1 and "bomb.yaml:10:" in r.stderr and "Traceback" not in r.stderr, r.stderr
