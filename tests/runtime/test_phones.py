"""Phone fields: parsed in the workspace's phone region, stored in E.164 (or as typed), refused when not a number."""

from __future__ import annotations

import dataclasses

import pytest

from engine.runtime.records.coerce import BadValue, coercer_parts
from tests.conftest import fld


def _phone(value: str, region: str | None = "CN", *, keep_as_typed: bool = False) -> object:
    field = dataclasses.replace(fld("phone", "phone"), keep_as_typed=keep_as_typed)
    return coercer_parts(field, phone_region=region)[0](value)


@pytest.mark.parametrize(("typed", "stored"), [
    ("13800138000", "+8613800138000"),
    ("+86 138 0013 8000", "+8613800138000"),
    ("0086 138-0013-8000", "+8613800138000"),
    (" 138 0013 8000 ", "+8613800138000"),
    ("010-12345678", "+861012345678"),
    ("(0755) 8888 6666", "+8675588886666"),
    ("010-12345678 ext. 123", "+861012345678;ext=123"),
    ("010-12345678转123", "+861012345678;ext=123"),
    ("010-12345678-123", "+861012345678;ext=123"),
    ("+1 415 555 2671", "+14155552671"),
])
def test_numbers_are_stored_in_e164(typed: str, stored: str) -> None:
    assert _phone(typed) == stored


def test_a_region_reads_national_numbers_of_that_region() -> None:
    assert _phone("(415) 555-2671", "US") == "+14155552671"
    assert _phone("+86 138 0013 8000", "US") == "+8613800138000"


@pytest.mark.parametrize(("typed", "message"), [
    ("call me maybe", "is not a phone number (expected e.g. 131 2345 6789 or +86 131 2345 6789)"),
    ("1", "is not a phone number (expected e.g. 131 2345 6789 or +86 131 2345 6789)"),
    ("15400000000", "is not a valid phone number in CN (expected e.g. 131 2345 6789 or +86 131 2345 6789)"),
    ("+1 555", "is not a valid phone number for country code +1 (expected e.g. 131 2345 6789 or "
               "+86 131 2345 6789)"),
])
def test_what_is_not_a_number_is_refused_saying_the_form_expected(typed: str, message: str) -> None:
    with pytest.raises(BadValue) as caught:
        _phone(typed)
    assert str(caught.value) == message


def test_without_a_region_a_number_needs_its_country_code() -> None:
    assert _phone("+86 138 0013 8000", None) == "+8613800138000"
    with pytest.raises(BadValue, match=r"has no country code: write it with \+ and the country code .*"
                                       r"or set phone_region in workspace.yaml"):
        _phone("13800138000", None)


def test_keep_as_typed_stores_the_text_but_still_validates() -> None:
    assert _phone(" 138 0013 8000 ", keep_as_typed=True) == "138 0013 8000"
    with pytest.raises(BadValue, match="is not a phone number"):
        _phone("call me maybe", keep_as_typed=True)


def test_empty_text_and_wrong_types() -> None:
    assert _phone("") == ""
    with pytest.raises(BadValue, match="must be text"):
        coercer_parts(fld("phone", "phone"), phone_region="CN")[0](13800138000)
