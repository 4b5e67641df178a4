"""``encrypted: true`` on a field: which fields may be encrypted, and the located errors where an encrypted
field is used in a way its storage cannot serve (sorting, indexes, SQL conditions, formulas)."""

from __future__ import annotations

import pytest

from engine.dsl.compiler import compile_folder
from tests.dsl.approvals_helpers import errors_of, where
from tests.dsl.conftest import WriteWs

LEAD = """\
entity: lead
extend: true
fields:
  id_number: {type: string, max_length: 18, encrypted: true}
  mobile: {type: phone, encrypted: true}
"""


def test_text_like_fields_compile_encrypted(write_ws: WriteWs) -> None:
    ws = compile_folder(write_ws({"entities/lead.yaml": LEAD}))
    lead = ws.entity("lead")
    assert lead.fields["id_number"].encrypted and lead.fields["mobile"].encrypted
    assert not lead.fields["company"].encrypted and ws.has_encrypted_fields


@pytest.mark.parametrize(("spec", "message", "col"), [
    ("{type: integer, encrypted: true}", "an integer field cannot be encrypted", 27),
    ("{type: string, unique: true, encrypted: true}", "'unique' does not go with 'encrypted: true'", 26),
    ("{type: string, storage: json, encrypted: true}", "'storage' does not go with 'encrypted: true'", 26),
])
def test_fields_that_cannot_be_encrypted_are_located_errors(write_ws: WriteWs, spec: str, message: str,
                                                            col: int) -> None:
    text = f"entity: lead\nextend: true\nfields:\n  secret: {spec}\n"
    [err] = errors_of(write_ws({"entities/lead.yaml": text}))
    assert message in err.message and where(err) == ("lead.yaml", 4, col)


def test_sorting_or_indexing_an_encrypted_field_is_refused(write_ws: WriteWs) -> None:
    text = LEAD + "default_sort:\n  - -mobile\nindexes:\n  - {name: by_id, fields: [id_number]}\n"
    errs = errors_of(write_ws({"entities/lead.yaml": text}))
    assert sorted(where(e) for e in errs) == [("lead.yaml", 7, 5), ("lead.yaml", 9, 28)]
    assert {e.code for e in errs} == {"schema_violation"}


def test_a_scoring_rule_or_pool_condition_may_compare_an_encrypted_field_for_equality_only(
        write_ws: WriteWs) -> None:
    ok = """\
        scoring: s
        entity: lead
        score_field: s2
        grade_field: g2
        grades: {A: 5, B: 0}
        rules:
          - {when: "mobile == '+8613800138000' or id_number is null", points: 5}
    """
    lead = LEAD + "  s2: {type: integer, readonly: true}\n  g2: {type: picklist, options: [A, B], readonly: true}\n"
    compile_folder(write_ws({"entities/lead.yaml": lead, "scoring.yaml": ok}))
    bad = ok.replace("mobile == '+8613800138000'", "startswith(mobile, '+86')")
    [err] = errors_of(write_ws({"entities/lead.yaml": lead, "scoring.yaml": bad}))
    assert err.code == "expression_encrypted_field" and "a scoring rule" in err.message
    assert where(err) == ("scoring.yaml", 7, 24)
    pool = "pool: p\nentity: lead\nkind: claim\nwhen: \"len(id_number) > 3\"\nmembers: {team: x}\n"
    [err] = errors_of(write_ws({"entities/lead.yaml": LEAD, "pool.yaml": pool}, name="other"))
    assert err.code == "expression_encrypted_field" and where(err) == ("pool.yaml", 4, 12)


def test_a_formula_reading_an_encrypted_field_is_refused(write_ws: WriteWs) -> None:
    text = LEAD + "  tail: {type: string, formula: \"concat(company, mobile)\"}\n"
    [err] = errors_of(write_ws({"entities/lead.yaml": text}))
    assert err.code == "expression_encrypted_field" and "stored in clear" in err.message
    assert where(err)[:2] == ("lead.yaml", 6)


def test_a_field_of_lines_cannot_be_encrypted(write_ws: WriteWs) -> None:
    text = LEAD + "  items:\n    type: lines\n    fields:\n      serial: {type: string, encrypted: true}\n"
    [err] = errors_of(write_ws({"entities/lead.yaml": text}))
    assert "a field of lines cannot be encrypted" in err.message and where(err)[:2] == ("lead.yaml", 9)
