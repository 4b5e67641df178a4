"""Docs for what users touch: every error code is documented in docs/errors.md."""

from __future__ import annotations

import re
from pathlib import Path

import engine.api.errors as api_errors
import engine.errors as errors
from engine.dsl.expressions.parser import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
CODE_LITERAL = re.compile(r"""["'](expression_[a-z_]+|schema_[a-z_]+|bad_[a-z_]+)["']""")
#: strings of that shape that are attribute names, not error codes
NOT_CODES = {"expression_location"}


def documented() -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", (ROOT / "docs" / "errors.md").read_text("utf-8")))


def test_every_error_class_code_is_documented():
    classes = [c for m in (errors, api_errors) for c in vars(m).values()
               if isinstance(c, type) and issubclass(c, errors.EngineError)]
    missing = sorted({c.code for c in classes} - documented())
    assert not missing, f"add to docs/errors.md: {missing}"


def test_every_specific_code_is_documented():
    codes = {v[0] for v in CATALOGUE.values()}
    for path in (ROOT / "engine").rglob("*.py"):
        codes.update(CODE_LITERAL.findall(path.read_text("utf-8")))
    missing = sorted(codes - NOT_CODES - documented())
    assert not missing, f"add to docs/errors.md: {missing}"
