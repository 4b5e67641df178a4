"""Small English helpers for the messages the engine composes: counts, verb agreement, articles.

``counted(1, "row")`` is "1 row", ``counted(10000, "row")`` "10,000 rows";
``agreeing(1, "row", "keep their data")`` is "1 row keeps its data";
``with_article("integer")`` is "an integer".  Pure: every layer may use it.
"""

from __future__ import annotations

from collections.abc import Sequence

_IRREGULAR_VERBS = {"are": "is", "have": "has", "were": "was", "do": "does", "go": "goes"}
_SINGULAR_WORDS = {"their": "its", "them": "it", "they": "it"}
_PLURAL_NOUNS = {"index": "indexes", "person": "people"}


def plural_noun(noun: str) -> str:
    """The plural of ``noun`` (regular English, a few irregular ones)."""
    if noun in _PLURAL_NOUNS:
        return _PLURAL_NOUNS[noun]
    if len(noun) > 1 and noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    return noun + "s"


def counted(n: int | None, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` in agreement, with thousands separators: "1 row", "0 rows", "10,000 rows"."""
    n = n or 0
    return f"{n:,} {noun if n == 1 else plural or plural_noun(noun)}"


def agree(n: int | None, verb: str) -> str:
    """``verb`` (its plural form: "keep", "are") agreeing with a count: "keeps"/"keep", "is"/"are"."""
    if n != 1:
        return verb
    if verb in _IRREGULAR_VERBS:
        return _IRREGULAR_VERBS[verb]
    return verb + "es" if verb.endswith(("s", "sh", "ch", "x", "z", "o")) else verb + "s"


def agreeing(n: int | None, noun: str, phrase: str) -> str:
    """``counted(n, noun)`` then ``phrase`` (written for many: "keep their data") agreeing with it.

    The phrase's first word is the verb; for one, "their"/"them"/"they" become "its"/"it":
    ``agreeing(1, "row", "keep their data")`` -> "1 row keeps its data".
    """
    verb, _, rest = phrase.partition(" ")
    words = rest.split(" ") if rest else []
    if n == 1:
        words = [_SINGULAR_WORDS.get(w, w) for w in words]
    return " ".join([counted(n, noun), agree(n, verb), *words])


def article(word: str) -> str:
    """"a" or "an" before ``word``, by its sound in the common cases: an integer, an email, a url, a user."""
    w = word.lower().lstrip("'\"`")
    if not w:
        return "a"
    if w.startswith(("uni", "use", "usu", "uri", "url", "one")):
        return "a"
    if w.startswith(("hour", "honest")):
        return "an"
    return "an" if w[0] in "aeiou" else "a"


def with_article(word: str) -> str:
    """``word`` after its article: "an integer", "a picklist"."""
    return f"{article(word)} {word}"


def either(words: Sequence[str] | str) -> str:
    """One word, or several joined by "or": "string", "string or null"."""
    return words if isinstance(words, str) else " or ".join(str(w) for w in words)
