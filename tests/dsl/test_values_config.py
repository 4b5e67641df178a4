"""Configuration of values: one name-length limit for the schemas and the compiler, the workspace's
phone_region, keep_as_typed, and grammatical messages (a/an)."""

from __future__ import annotations

from pathlib import Path

from engine.dsl.compiler import compile_folder
from engine.dsl.model import MAX_NAME
from engine.dsl.scaffold import init_workspace
from engine.dsl.schemacheck import load_schema
from tests.dsl.test_config_errors import errors_of, only_error, where


def test_the_schemas_take_the_name_limit_from_the_compiler() -> None:
    identifier = load_schema("_defs.json")["$defs"]["identifier"]
    assert identifier["maxLength"] == MAX_NAME == 50
    assert "{0,62}" not in identifier["pattern"]


def test_a_name_at_the_limit_compiles_one_over_it_is_one_located_error(write_ws) -> None:
    ok = write_ws({"entities/x.yaml": f"entity: device\nfields:\n  {'a' * MAX_NAME}: {{type: string}}\n"})
    assert "a" * MAX_NAME in compile_folder(ok).entities["device"].fields
    long_name = "b" * (MAX_NAME + 1)
    bad = write_ws({"entities/x.yaml": f"entity: device\nfields:\n  {long_name}: {{type: string}}\n"},
                   name="other")
    err = only_error(bad)
    assert err.code == "schema_too_long" and where(err) == ("x.yaml", 3, 3)
    assert err.message == f"fields: {long_name!r} is longer than 50 characters"
    assert err.hint == "shorten it to at most 50 characters"


def test_an_entity_name_over_the_limit_names_the_limit(write_ws) -> None:
    err = only_error(write_ws({"entities/x.yaml": f"entity: {'c' * 60}\nfields:\n  name: {{type: string}}\n"}))
    assert err.code == "schema_too_long" and "is longer than 50 characters" in err.message


def _manifest(folder: Path, extra: str) -> Path:
    (folder / "workspace.yaml").write_text(f"workspace: acme\nextends: base\n{extra}", "utf-8")
    return folder


def test_phone_region_is_read_from_workspace_yaml(write_ws) -> None:
    assert compile_folder(write_ws({})).phone_region is None
    assert compile_folder(_manifest(write_ws({}), "phone_region: CN\n")).phone_region == "CN"


def test_an_unknown_phone_region_is_a_located_error(write_ws) -> None:
    err = only_error(_manifest(write_ws({}), "locale: en\nphone_region: UK\n"))
    assert err.code == "schema_violation" and where(err) == ("workspace.yaml", 4, 15)
    assert err.message == "phone_region 'UK' is not a region phone numbers are known for"
    assert err.hint == "use an ISO 3166-1 alpha-2 code such as CN, US, GB, DE (the United Kingdom is GB)"


def test_a_phone_region_of_the_wrong_form_is_refused_by_the_schema(write_ws) -> None:
    err = only_error(_manifest(write_ws({}), "phone_region: china\n"))
    assert err.code == "schema_pattern" and where(err) == ("workspace.yaml", 3, 15)


def test_init_writes_the_phone_region_or_explains_it(tmp_path: Path) -> None:
    with_region = init_workspace(tmp_path / "cn", industry=None, phone_region="CN")
    assert compile_folder(with_region).phone_region == "CN"
    without = init_workspace(tmp_path / "plain", industry=None)
    assert "# phone_region: CN" in (without / "workspace.yaml").read_text("utf-8")
    assert compile_folder(without).phone_region is None


def test_keep_as_typed_is_for_phone_fields_only(write_ws) -> None:
    ws = write_ws({"entities/x.yaml": """\
        entity: device
        fields:
          hotline: {type: phone, keep_as_typed: true}
          serial: {type: integer, keep_as_typed: true}
        """})
    err = only_error(ws)
    assert err.message == "field 'serial': 'keep_as_typed' does not apply to an integer field"
    assert where(err) == ("x.yaml", 4, 27)


def test_messages_use_a_and_an_as_english_does(write_ws) -> None:
    ws = write_ws({"entities/x.yaml": """\
        entity: device
        fields:
          code: {type: auto_number}
          size: {type: email, min: 3}
        """})
    messages = [e.message for e in errors_of(ws)]
    assert "field 'code': an auto_number field needs 'pattern:'" in messages
    assert "field 'size': 'min' does not apply to an email field" in messages
    typo = only_error(write_ws({"entities/x.yaml": "entity: device\nfields:\n  price: {type: money, scale: two}\n"},
                               name="typo"))
    assert typo.message == "fields.price.scale: 'two' should be of type integer"
    assert typo.hint == "write an integer here"
