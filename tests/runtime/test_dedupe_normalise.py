"""The normalisers of duplicate keys: pure functions, checked on examples and as properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.runtime.sales.normalise import (
    CJK_LEGAL_FORMS,
    block_keys,
    company_key,
    email_key,
    exact_key,
    phone_key,
    text_key,
)

# ---------------------------------------------------------------------------- examples


@pytest.mark.parametrize("written", [
    "+86 138-0013-8000", "13800138000", "0086 138 0013 8000", "+86 (138) 0013 8000", "138 0013 8000",
    "86 13800138000", "１３８００１３８０００", " +8613800138000 ",
])
def test_a_mainland_mobile_however_written_is_one_key(written: str) -> None:
    assert phone_key(written, "CN") == "+8613800138000"


def test_landlines_with_trunk_zero_and_extensions() -> None:
    assert phone_key("010-12345678", "CN") == phone_key("+86 10 1234 5678", "CN") == "+861012345678"
    assert phone_key("(010) 1234 5678 转 123", "CN") == "+861012345678;ext=123"
    assert phone_key("+86 10 1234 5678 ext. 123", "CN") == "+861012345678;ext=123"
    assert phone_key("+1 415 555 2671", "CN") == "+14155552671"  # a country code beats the region


def test_text_that_is_not_a_phone_number_gives_no_key() -> None:
    assert phone_key("call me", "CN") is None
    assert phone_key("123", "CN") is None
    assert phone_key("", "CN") is None
    assert phone_key("13800138000", None) is None  # no region: a number needs its country code
    assert phone_key(None, "CN") is None


@pytest.mark.parametrize("name", [
    "苏州精密机械有限公司", "苏州精密机械", "苏州精密机械股份有限公司", "苏州精密机械有限责任公司",
    "苏州精密机械（集团）有限公司", "苏州精密机械集团", " 苏州精密机械 有限公司 ", "苏州精密机械集团有限公司",
])
def test_chinese_legal_forms_are_dropped(name: str) -> None:
    assert company_key(name) == "苏州精密机械"


@pytest.mark.parametrize("name", [
    "ACME", "Acme Co., Ltd.", "ACME Inc.", "acme, LLC", "Acme GmbH", "ＡＣＭＥ　Ｃｏ．，Ｌｔｄ．", "Acme Limited",
    "acme corporation", "  A.C.M.E.  ",
])
def test_latin_legal_forms_case_punctuation_and_full_width_fold(name: str) -> None:
    assert company_key(name) == "acme"


def test_a_name_that_is_only_a_legal_form_keeps_it() -> None:
    assert company_key("有限公司") == "有限公司"
    assert company_key("Company Ltd") == "company"
    assert company_key("") is None and company_key("—") is None and company_key(None) is None


def test_email_and_text_keys() -> None:
    assert email_key("  Li.Wei@Example.COM ") == "li.wei@example.com"
    assert email_key("ｌｉ＠ｅｘａｍｐｌｅ．ｃｏｍ") == "li@example.com"
    assert email_key("   ") is None
    assert text_key("91-3205 ABC/12") == "913205abc12"
    assert exact_key(" east ") == "east" and exact_key(12) == "12" and exact_key(None) is None


def test_block_keys_are_the_ends_of_the_key() -> None:
    assert block_keys("苏州精密机械") == ("苏州精密", "…精密机械")
    assert block_keys("acmewidgets") == ("acmewi", "…idgets")
    assert block_keys("acme") == ("acme",)


# ---------------------------------------------------------------------------- properties

#: mobile prefixes the numbering plan assigns (a random 1xx is not always valid)
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
                   "156", "157", "158", "159", "166", "176", "177", "178", "180", "181", "182", "185", "186",
                   "187", "188", "189", "198", "199")
mobiles = st.tuples(st.sampled_from(MOBILE_PREFIXES), st.text("0123456789", min_size=8, max_size=8)).map("".join)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


def _written(number: str, style: int) -> str:
    a, b, c = number[:3], number[3:7], number[7:]
    return [number, f"+86 {a}-{b}-{c}", f"0086 {a} {b} {c}", f"+86({a}){b}{c}", f"{a} {b} {c}",
            f"86-{number}", _full_width(number), f"+86 {a} {b} {c}"][style]


@given(mobiles, st.integers(0, 7), st.integers(0, 7))
def test_every_way_of_writing_a_mobile_gives_its_e164_key(number: str, one: int, other: int) -> None:
    key = phone_key(_written(number, one), "CN")
    assert key == phone_key(_written(number, other), "CN") == f"+86{number}"


#: company names made of characters that are no part of a legal form
cjk_names = st.text(alphabet="苏州精密机械上海杭电子科技北京华东光学宁波模具", min_size=2, max_size=12)
latin_words = st.lists(st.text(alphabet="abcdefghijkmnopqrstuvwxyz", min_size=4, max_size=9)
                       .filter(lambda w: w not in {"company", "limited", "corporation", "holding", "holdings",
                                                   "group", "incorporated"}), min_size=1, max_size=3)
suffixes = st.sampled_from([*CJK_LEGAL_FORMS, " Co., Ltd.", " Inc.", " LLC", " GmbH", "（集团）有限公司", " Ltd"])


@given(cjk_names, suffixes)
def test_a_legal_form_never_changes_a_chinese_name_key(name: str, suffix: str) -> None:
    assert company_key(name + suffix) == company_key(name) == name


@given(latin_words, suffixes, st.booleans())
def test_case_punctuation_spacing_and_width_never_change_a_latin_name_key(words: list[str], suffix: str,
                                                                          wide: bool) -> None:
    plain = " ".join(words)
    fancy = ", ".join(w.upper() if i % 2 else w.title() for i, w in enumerate(words)) + suffix
    assert company_key(_full_width(fancy) if wide else fancy) == company_key(plain) == "".join(words)


@given(st.text(max_size=40))
def test_keys_are_idempotent_and_never_empty(text: str) -> None:
    for fn in (company_key, text_key, email_key):
        key = fn(text)
        assert key is None or (key and fn(key) == key)
