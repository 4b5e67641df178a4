"""The ``dedupe:`` and ``conversion:`` kinds: the shipped documents compile to what they say; mistakes are
located errors with a hint (file:line:col), never exceptions from deep inside."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.dsl.compiler import compile_folder
from engine.dsl.sales.conversion import Conversion
from engine.dsl.sales.dedupe import DedupeRule
from engine.errors import ConfigError, ConfigErrors
from tests.dsl.conftest import WriteWs

ROOT = Path(__file__).resolve().parents[2]


def _errors(folder: Path) -> list[ConfigError]:
    with pytest.raises(ConfigError) as info:
        compile_folder(folder)
    err = info.value
    return err.errors if isinstance(err, ConfigErrors) else [err]


def _at(err: ConfigError) -> str:
    """``dedupe/x.yaml:4:8``: the location inside the workspace folder."""
    return str(err.location).rsplit("/acme/", 1)[-1]


def _one(folder: Path) -> ConfigError:
    errs = _errors(folder)
    assert len(errs) == 1, [str(e) for e in errs]
    return errs[0]


def test_the_shipped_rules_compile() -> None:
    ws = compile_folder(ROOT / "configs" / "industries" / "manufacturing")
    lead = ws.objects_of("dedupe")["lead_duplicates"].compiled
    assert isinstance(lead, DedupeRule) and lead.action == "warn" and lead.against == ("account", "contact")
    assert [(k.fields, k.kind, k.fuzzy) for k in lead.keys] == [
        (("email",), "email", None), (("phone",), "phone", None), (("company",), "company", 90),
        (("wechat",), "lead:text:wechat", None)]  # the manufacturing layer adds WeChat
    # a lead's company is compared with an account's name; its phone with a contact's phone and mobile
    assert ("account", "company", ("name",)) in [(s.entity, s.kind, s.fields) for s in lead.sources]
    assert {s.fields for s in lead.sources if s.entity == "contact" and s.kind == "phone"} == {("phone",),
                                                                                              ("mobile",)}
    conv = ws.objects_of("conversion")["lead_to_customer"].compiled
    assert isinstance(conv, Conversion) and conv.reuse == "account"
    assert [t.entity for t in conv.targets] == ["account", "contact", "opportunity"]
    opp = conv.target("opportunity")
    assert opp is not None and opp.optional and dict(opp.links) == {
        "account": "account", "primary_contact": "contact", "lead": "lead"}
    assert "budget_range" in dict(opp.values)
    assert dict(conv.mark_links) == {"converted_account": "account", "converted_contact": "contact",
                                     "converted_opportunity": "opportunity"}
    assert {r.entity for r in conv.relinks} == {"activity", "task"}


def test_an_unknown_field_in_a_key_is_located_with_a_hint(write_ws: WriteWs) -> None:
    folder = write_ws({"dedupe/x.yaml": """\
        dedupe: x
        entity: lead
        match:
          - [emial]
        """})
    err = _one(folder)
    assert err.code == "unknown_reference" and _at(err) == "dedupe/x.yaml:4:6"
    assert "entity 'lead' has no field 'emial'" in err.message and err.hint == "did you mean 'email'?"


def test_unknown_entities_and_mapped_fields_are_located(write_ws: WriteWs) -> None:
    folder = write_ws({"dedupe/x.yaml": """\
        dedupe: x
        entity: lead
        match: [[email], {fields: [company], fuzzy: 85}]
        against:
          - acount
          - {entity: account, fields: {company: nmae}}
        """})
    errs = {_at(e): e for e in _errors(folder)}
    assert errs["dedupe/x.yaml:5:5"].hint == "did you mean 'account'?"
    assert "entity 'account' has no field 'nmae'" in errs["dedupe/x.yaml:6:41"].message


def test_an_entity_no_key_applies_to_says_how_to_map(write_ws: WriteWs) -> None:
    folder = write_ws({"dedupe/x.yaml": """\
        dedupe: x
        entity: lead
        match: [[company]]
        against: [opportunity]
        """})
    err = _one(folder)
    assert "no match key applies to 'opportunity'" in err.message and _at(err) == "dedupe/x.yaml:4:11"
    assert "fields: {company: <opportunity field>}" in (err.hint or "")


def test_bad_normalisers_and_unkeyable_fields(write_ws: WriteWs) -> None:
    folder = write_ws({"dedupe/x.yaml": """\
        dedupe: x
        entity: lead
        match:
          - {fields: [company], normalise: fuzzy}
        """})
    err = _one(folder)
    assert err.code == "schema_violation" and _at(err).startswith("dedupe/x.yaml:4")
    folder = write_ws({"dedupe/x.yaml": """\
        dedupe: x
        entity: lead
        match:
          - {fields: [company, notes], normalise: {city: text}}
        """})
    err = _one(folder)
    assert "normalise names 'city', which is not a field of this key" in err.message


def test_a_conversion_value_of_the_wrong_type_is_located_in_its_expression(write_ws: WriteWs) -> None:
    folder = write_ws({"conversion/x.yaml": """\
        conversion: lead_to_customer
        extend: true
        create:
          opportunity:
            amount: "company"
        """})
    err = _one(folder)
    assert err.code.startswith("expression") and _at(err).startswith("conversion/x.yaml:5:")


def test_a_conversion_to_unknown_places_is_located(write_ws: WriteWs) -> None:
    folder = write_ws({"conversion/x.yaml": """\
        conversion: to_deal
        from: lead
        create:
          acount: {name: company}
        """})
    err = _one(folder)
    assert _at(err) == "conversion/x.yaml:4:3" and err.hint == "did you mean 'account'?"
    folder = write_ws({"conversion/x.yaml": """\
        conversion: to_deal
        from: lead
        create:
          contact: {nmae: contact_name}
        reuse: opportunity
        relink: [product]
        """})
    errs = {_at(e): e for e in _errors(folder)}
    assert errs["conversion/x.yaml:4:13"].hint == "did you mean 'name'?"
    assert "reuse names 'opportunity', which it does not create" in errs["conversion/x.yaml:5:8"].message
    assert "'product' cannot be relinked" in errs["conversion/x.yaml:6:10"].message


def test_an_extend_document_needs_no_entity_but_a_new_one_does(write_ws: WriteWs) -> None:
    folder = write_ws({"dedupe/x.yaml": """\
        dedupe: contact_duplicates
        extend: true
        match: [[wechat]]
        """})
    rule = compile_folder(folder).objects_of("dedupe")["contact_duplicates"].compiled
    assert [k.fields for k in rule.keys][-1] == ("wechat",)
    folder = write_ws({"dedupe/x.yaml": "dedupe: y\nmatch: [[email]]\n"})
    err = _one(folder)
    assert err.code == "schema_required" and "'entity'" in err.message
