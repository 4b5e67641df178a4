"""Normalised match keys for duplicate detection: pure functions, one per kind of value.

* :func:`email_key` -- trimmed, Unicode-folded (NFKC) and lower-cased: ``" Li@Example.COM "`` ->
  ``li@example.com``.
* :func:`phone_key` -- the number in E.164 form through the ``phonenumbers`` library (the same parser
  that checks ``phone`` fields, :mod:`engine.runtime.records.phones`), numbers without a country code
  read in the workspace's ``phone_region``: ``+86 138-0013-8000``, ``0086 138 0013 8000`` and
  ``13800138000`` all give ``+8613800138000``; an extension stays part of the key
  (``+861012345678;ext=123``); text that is not a valid number gives no key.
* :func:`company_key` -- a company name without its legal form, punctuation and spacing, full-width
  characters folded to half-width and case folded: ``苏州精密机械有限公司``, ``苏州精密机械（集团）`` and
  ``苏州精密机械`` give the same key, as do ``ACME Co., Ltd.`` and ``acme``.
* :func:`text_key` -- any other text: folded like a company name, legal forms kept.
* :func:`exact_key` -- the value as text (picklists, numbers, references).

A key is None when the value gives nothing to compare (empty, only punctuation, an invalid phone).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from engine.runtime.records.bad_value import BadValue
from engine.runtime.records.phones import phone_normaliser

#: the normalisers a match key may name (``normalise:`` in a dedupe document)
NORMALISERS = ("email", "phone", "company", "text", "exact")

#: legal forms written after a Chinese company name, longest first (stripped repeatedly: 集团有限公司)
CJK_LEGAL_FORMS: tuple[str, ...] = tuple(sorted((
    "股份有限公司", "有限责任公司", "集团有限公司", "集团股份有限公司", "有限公司", "股份公司", "集团公司",
    "控股公司", "总公司", "责任公司", "公司", "集团", "控股",
), key=len, reverse=True))

#: legal forms written as words after a company name (compared after case folding, punctuation removed)
WORD_LEGAL_FORMS: frozenset[str] = frozenset({
    "co", "company", "corp", "corporation", "inc", "incorporated", "ltd", "limited", "llc", "llp", "lp",
    "plc", "gmbh", "ag", "kg", "ohg", "ug", "se", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "oy", "ab",
    "as", "aps", "pte", "pty", "kk", "group", "holding", "holdings",
})

#: the longest key kept (the key column holds 300 characters; longer values are cut, not refused)
MAX_KEY = 300


def fold(text: str) -> str:
    """NFKC (full-width letters, digits and punctuation to their plain forms) and case folding."""
    return unicodedata.normalize("NFKC", text).casefold()


def _words(text: str) -> list[str]:
    """The runs of letters and digits of ``text`` (everything else separates them)."""
    out: list[str] = []
    word: list[str] = []
    for ch in text:
        if ch.isalnum():
            word.append(ch)
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out


def email_key(value: Any) -> str | None:
    """An e-mail address trimmed, folded and lower-cased (None when empty)."""
    if not isinstance(value, str):
        return None
    key = fold(value).strip()
    return key[:MAX_KEY] or None


@lru_cache(maxsize=64)
def _phone_parser(region: str | None) -> Callable[[str], str]:
    return phone_normaliser(region, keep_as_typed=False)


def phone_key(value: Any, region: str | None) -> str | None:
    """The E.164 form of a phone number (``;ext=N`` kept), read in ``region`` when it has no country code.

    None for an empty text or one that is not a valid number."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return _phone_parser(region)(unicodedata.normalize("NFKC", value).strip())[:MAX_KEY]
    except BadValue:
        return None


def _strip_legal_forms(words: list[str]) -> list[str]:
    """``words`` without the legal forms at their end, as long as something is left."""
    changed = True
    while changed and words:
        changed = False
        last = words[-1]
        if last in WORD_LEGAL_FORMS and len(words) > 1:
            words = words[:-1]
            changed = True
            continue
        for form in CJK_LEGAL_FORMS:
            if last.endswith(form) and last != form:
                words = [*words[:-1], last[: -len(form)]]
                changed = True
                break
            if last == form:  # the whole word is a legal form: dropped when a name is left, else kept
                if len(words) > 1:
                    words = words[:-1]
                    changed = True
                break
    return words


def company_key(value: Any) -> str | None:
    """A company name folded, its punctuation and spacing removed and its legal forms dropped.

    A name that is nothing but a legal form (``有限公司``, ``Company``) keeps it.
    """
    if not isinstance(value, str):
        return None
    words = _words(fold(value))
    return "".join(_strip_legal_forms(words))[:MAX_KEY] or None


def text_key(value: Any) -> str | None:
    """Any text folded, punctuation and spacing removed."""
    if not isinstance(value, str):
        return None
    return "".join(_words(fold(value)))[:MAX_KEY] or None


def exact_key(value: Any) -> str | None:
    """The value as text (None for null or an empty text)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = value.strip() if isinstance(value, str) else str(value)
    return text[:MAX_KEY] or None


def normalise(normaliser: str, value: Any, *, region: str | None) -> str | None:
    """The key ``normaliser`` (one of :data:`NORMALISERS`) makes of ``value``."""
    if normaliser == "phone":
        return phone_key(value, region)
    fn = _BY_NAME.get(normaliser)
    if fn is None:
        raise ValueError(f"unknown normaliser {normaliser!r} (known: {', '.join(NORMALISERS)})")
    return fn(value)


_BY_NAME: dict[str, Callable[[Any], str | None]] = {
    "email": email_key, "company": company_key, "text": text_key, "exact": exact_key,
}


def block_keys(key: str) -> tuple[str, ...]:
    """The blocking keys of a normalised key for fuzzy matching: its first and last few characters.

    Two keys that are close in edit distance nearly always share their beginning or their end, so a fuzzy
    comparison only looks at the records that share one of these (an index lookup) instead of every row.
    Chinese characters carry more than letters, so fewer of them are taken.
    """
    width = 4 if key[:1] > "\u2e80" else 6
    if len(key) <= width:
        return (key,)
    return tuple(dict.fromkeys((key[:width], "…" + key[-width:])))
