"""``search: true`` on fields: the defaults when no field says it, and a located error on a type search
cannot read."""

from __future__ import annotations

from engine.dsl.compiler import compile_folder
from engine.dsl.search import search_fields
from tests.dsl.test_config_errors import only_error, where

DEFAULTS = """\
entity: supplier
title: "{company} ({city})"
fields:
  company: {type: string}
  city: {type: string}
  name: {type: string}
  notes: {type: text}
  phone: {type: phone}
  email: {type: email}
  rating: {type: integer}
"""


def _names(folder, entity: str) -> list[str]:
    return [f.name for f in search_fields(compile_folder(folder).entities[entity])]


def test_without_search_true_the_title_fields_name_phone_and_email_are_searched(write_ws) -> None:
    assert _names(write_ws({"entities/s.yaml": DEFAULTS}), "supplier") == ["company", "city", "name", "phone",
                                                                          "email"]


def test_one_search_true_replaces_the_defaults(write_ws) -> None:
    marked = DEFAULTS.replace("notes: {type: text}", "notes: {type: text, search: true}")
    assert _names(write_ws({"entities/s.yaml": marked}), "supplier") == ["notes"]


def test_search_on_a_number_is_a_located_error(write_ws) -> None:
    bad = DEFAULTS.replace("rating: {type: integer}", "rating: {type: integer, search: true}")
    err = only_error(write_ws({"entities/s.yaml": bad}))
    assert err.code == "schema_violation" and where(err) == ("s.yaml", 10, 27)
    assert err.message == "field 'rating': 'search' does not apply to an integer field"
    assert "use a field type among: auto_number, email, phone, string, text, url" in (err.hint or "")


def test_an_encrypted_field_is_never_searched(write_ws) -> None:
    sealed = DEFAULTS.replace("phone: {type: phone}", "phone: {type: phone, encrypted: true}")
    assert "phone" not in _names(write_ws({"entities/s.yaml": sealed}), "supplier")
    both = DEFAULTS.replace("phone: {type: phone}", "phone: {type: phone, encrypted: true, search: true}")
    err = only_error(write_ws({"entities/s.yaml": both}, name="other"))
    assert "cannot be searched" in err.message and where(err)[:2] == ("s.yaml", 8)
