"""The English helpers of composed messages: counts, verb agreement, a/an."""

from __future__ import annotations

import pytest

from engine.wording import agree, agreeing, article, counted, either, with_article


@pytest.mark.parametrize(("n", "text"), [(0, "0 rows"), (1, "1 row"), (2, "2 rows"), (10_000, "10,000 rows"),
                                         (None, "0 rows")])
def test_counted(n: int | None, text: str) -> None:
    assert counted(n, "row") == text


def test_counted_plurals() -> None:
    assert counted(2, "index") == "2 indexes" and counted(3, "entry") == "3 entries"
    assert counted(2, "box") == "2 boxes" and counted(2, "criterion", "criteria") == "2 criteria"


@pytest.mark.parametrize(("n", "phrase", "text"), [
    (1, "keep their data", "1 row keeps its data"),
    (2, "keep their data", "2 rows keep their data"),
    (1, "are invalid", "1 row is invalid"),
    (3, "are invalid", "3 rows are invalid"),
    (1, "use it", "1 row uses it"),
    (1, "have a value", "1 row has a value"),
    (0, "hold values", "0 rows hold values"),
])
def test_agreeing(n: int, phrase: str, text: str) -> None:
    assert agreeing(n, "row", phrase) == text


def test_agree_irregular_and_sibilant_verbs() -> None:
    assert agree(1, "pass") == "passes" and agree(2, "pass") == "pass" and agree(1, "were") == "was"


@pytest.mark.parametrize(("word", "text"), [("integer", "an integer"), ("email", "an email"), ("url", "a url"),
                                            ("user", "a user"), ("string", "a string"), ("object", "an object"),
                                            ("auto_number", "an auto_number"), ("unique", "a unique"),
                                            ("hour", "an hour"), ("array", "an array")])
def test_articles(word: str, text: str) -> None:
    assert with_article(word) == text
    assert article(word) == text.split(" ")[0]


def test_either() -> None:
    assert either("string") == "string" and either(["string", "null"]) == "string or null"
