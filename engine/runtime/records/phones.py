"""Validation and normalisation of ``phone`` field values (with the ``phonenumbers`` library).

A phone value is parsed in the workspace's ``phone_region`` (numbers written
without ``+country code`` belong to it) and stored in E.164 form
(``+8613800138000``), with an extension as ``;ext=123`` (RFC 3966).  A field
with ``keep_as_typed: true`` stores the text as typed, once it is known to be
a valid number.  Only phone fields pay for the parsing: the coercer is built
once per revision, per field.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat

from engine.runtime.records.bad_value import BadValue

#: an extension written after the number: "转 123", "分机 123", "-123", "ext. 123", "x123", "#123"
_TRAILING_EXTENSION = re.compile(r"^(?P<number>.*\d)\s*(?:-|转|分机|#|ext\.?|x)\s*(?P<ext>\d{1,7})\s*$", re.I)


def phone_normaliser(region: str | None, *, keep_as_typed: bool) -> Callable[[str], str]:
    """The check of a (trimmed, non-empty) phone text: its E.164 form, or the text itself when ``keep_as_typed``.

    Raises :class:`BadValue` saying what is wrong and the form expected.
    """
    expected = _expected(region)

    def normalise(text: str) -> str:
        e164 = _e164(text, region, expected)
        return text if keep_as_typed else e164

    return normalise


#: (text, region) -> E.164 form: a write parses its phone once for the field, and the duplicate keys and
#: later reads of the stored E.164 text find it here (a valid number's E.164 form is its own normal form)
_E164_CACHE: dict[tuple[str, str | None], str] = {}
_E164_CACHE_MAX = 4096


def _e164(text: str, region: str | None, expected: str) -> str:
    key = (text, region)
    hit = _E164_CACHE.get(key)
    if hit is not None:
        return hit
    number = _parse(text, region, expected)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    out = f"{e164};ext={number.extension}" if number.extension else e164
    if len(_E164_CACHE) >= _E164_CACHE_MAX:
        _E164_CACHE.clear()
    _E164_CACHE[key] = out
    _E164_CACHE[(out, region)] = out
    return out


def _parse(text: str, region: str | None, expected: str) -> PhoneNumber:
    if region is None and not text.startswith("+"):
        raise BadValue(f"has no country code: write it with + and the country code ({expected}), "
                       "or set phone_region in workspace.yaml for numbers without one")
    number = _try_parse(text, region)
    if number is not None and phonenumbers.is_valid_number(number):  # the usual case: one parse, one check
        return number
    split = _TRAILING_EXTENSION.match(text)
    with_ext = _try_parse(split["number"], region) if split else None
    if with_ext is not None and split is not None and phonenumbers.is_valid_number(with_ext):
        with_ext.extension = split["ext"]
        return with_ext
    if number is None:
        raise BadValue(f"is not a phone number (expected {expected})")
    where = _where(number, region)
    raise BadValue(f"is not a valid phone number {where}(expected {expected})")


def _try_parse(text: str, region: str | None) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def _where(number: PhoneNumber, region: str | None) -> str:
    home = phonenumbers.country_code_for_region(region) if region else None
    if number.country_code == home:
        return f"in {region} "
    return f"for country code +{number.country_code} " if number.country_code else ""


def _expected(region: str | None) -> str:
    """How a number should look, e.g. "e.g. 131 2345 6789 or +86 131 2345 6789"."""
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE) if region \
        else None
    if example is None:
        return "e.g. +86 138 0013 8000 or +1 415 555 2671"
    national = phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(example, PhoneNumberFormat.INTERNATIONAL)
    return f"e.g. {national} or {international}"

