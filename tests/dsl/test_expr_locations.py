"""Expression errors point at the exact character in the YAML file, whatever the scalar style.

YAML rewrites a value on the way in (block indentation stripped, folded lines
joined, escapes and ``''`` replaced, line continuations removed); the reported
file:line:col must still be where the offending text is written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dsl.compiler import compile_folder
from engine.dsl.expressions import compile_expression
from engine.dsl.yamlsrc import load_text
from engine.errors import ConfigError, ConfigErrors, ExpressionError
from tests.conftest import ent, fld, wsp

ENTITY = ent("device", fld("amount", "integer"), fld("label"))
WORKSPACE = wsp(ENTITY)

#: (scalar as written after "check:" on line 2, where the misspelled 'amont' starts: line, col)
STYLES = {
    "literal_strip": ("|-\n  amount > 0 and\n    amont < 10\n", 4, 5),
    "literal_clip": ("|\n  amount > 0 and\n\n  amont < 10\n", 5, 3),
    "literal_keep": ("|+\n  amount > 0 and amont < 10\n\n", 3, 18),
    "literal_indent_indicator": ("|4-\n      amount > 0 and\n        amont < 10\n", 4, 9),
    "folded_strip": (">-\n  amount > 0 and\n  amont < 10\n", 4, 3),
    "folded_clip": (">\n  amount > 0\n  and\n  amont < 10\n", 5, 3),
    "folded_blank_line": (">-\n  label == 'a'\n\n  or amont < 10\n", 5, 6),
    "double_quoted_escapes": ('"label == \\"x\\" and amont < 1"\n', 2, 28),
    "double_quoted_unicode_escape": ('"label == \\"\\u00e9\\" or amont < 1"\n', 2, 32),
    "double_quoted_folded": ('"amount > 0 and\n   amont < 1"\n', 3, 4),
    "double_quoted_continuation": ('"amount > 0 and am\\\n   ont < 1 or amont > 2"\n', 2, 24),
    "single_quoted_doubled_quote": ("'label == ''it\\''s'' or amont < 1'\n", 2, 32),
    "single_quoted_folded": ("'label == ''x''\n\n   or amont < 1'\n", 4, 7),
    "plain_multiline": ("amount > 0 and\n  label == 'x' and\n  amont < 10\n", 4, 3),
    "plain_one_line": ("amount > 0 and amont < 10\n", 2, 23),
    "plain_after_unicode": ("label == 'é😀' or amont < 1\n", 2, 25),
}


def _expression_error(yaml_text: str) -> ExpressionError:
    doc = load_text(yaml_text, "x.yaml")[0].data
    with pytest.raises(ExpressionError) as info:
        compile_expression(doc["check"], ENTITY, WORKSPACE, expected="boolean", location=doc.val_locs["check"])
    return info.value


@pytest.mark.parametrize("style", sorted(STYLES))
def test_unknown_name_is_located_at_its_character(style: str) -> None:
    scalar, line, col = STYLES[style]
    text = "# device rules\ncheck: " + scalar
    err = _expression_error(text)
    assert err.location is not None
    assert (err.location.file, err.location.line, err.location.col) == ("x.yaml", line, col), str(err)
    file_line = text.split("\n")[line - 1]
    assert file_line[col - 1 :].startswith("am"), file_line
    assert "unknown field 'amont'" in err.message


def test_snippet_shows_the_file_line_with_a_caret_under_the_name() -> None:
    err = _expression_error("check: |-\n  amount > 0 and\n    amont < 10\n")
    assert err.snippet == "        amont < 10\n        ^^^^^"


def test_syntax_error_at_the_end_of_a_folded_expression() -> None:
    doc = load_text("check: >-\n  amount > 0 and\n  amount <\n", "x.yaml")[0].data
    with pytest.raises(ExpressionError) as info:
        compile_expression(doc["check"], ENTITY, WORKSPACE, expected="boolean", location=doc.val_locs["check"])
    loc = info.value.location
    assert loc is not None and (loc.line, loc.col) == (3, 11), str(info.value)  # just after the "<"


def test_a_hand_made_location_keeps_the_approximate_mapping() -> None:
    from engine.errors import SourceLocation

    with pytest.raises(ExpressionError) as info:
        compile_expression("amount > 0 and\n  amont < 1", ENTITY, WORKSPACE, expected="boolean",
                           location=SourceLocation("y.yaml", 10, 5))
    assert str(info.value.location) == "y.yaml:11:7"


def test_issue_example_check_in_a_literal_block_of_a_workspace(write_ws) -> None:
    ws = write_ws({"entities/device.yaml": """\
        entity: device
        fields:
          amount: {type: integer}
        checks:
          - message: Amount must be positive
            check: |-
              amount > 0 and
                amont < 10
          - check: >-
              amount > 0 and
              amont < 10
        """})
    with pytest.raises(ConfigError) as info:
        compile_folder(ws)
    errs = info.value.errors if isinstance(info.value, ConfigErrors) else [info.value]
    got = [(Path(e.location.file).name, e.location.line, e.location.col) for e in errs if e.location]
    assert got == [("device.yaml", 8, 9), ("device.yaml", 11, 7)], [str(e) for e in errs]


def test_crm_validate_reports_the_exact_position(tmp_path: Path) -> None:
    ws = tmp_path / "acme"
    (ws / "entities").mkdir(parents=True)
    (ws / "workspace.yaml").write_text("workspace: acme\nextends: base\n", "utf-8")
    (ws / "entities" / "device.yaml").write_text(textwrap.dedent("""\
        entity: device
        fields:
          amount: {type: integer}
          label: {type: string}
        checks:
          - check: |-
              amount > 0 and
                amont < 10
          - check: "label != \\"x\\" and amont > 1"
        """), "utf-8")
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(ws)], capture_output=True,
                          text=True, cwd=tmp_path, env=os.environ.copy(), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert "acme/entities/device.yaml:8:9: unknown field 'amont'" in out, out
    assert "acme/entities/device.yaml:9:32: unknown field 'amont'" in out, out


# --------------------------------------------------------------------------- property

#: boolean clauses that type-check, so the only error is the unknown name
CLAUSES = ["amount > 1", "label == 'a'", 'label != "x y"', "amount + 1 >= 2.5", "label == 'it'",
           "amount is null", "(amount + 1) < 3", 'label in ["p", "r s"]', "not amount < 0"]
BAD = "zzq"  # no 'z' / 'q' anywhere else in the generated file


@st.composite
def expressions(draw: st.DrawFn) -> list[str]:
    """Clauses joined by and/or (each ending with its connector), one of them ``zzq == 1``."""
    clauses = draw(st.lists(st.sampled_from(CLAUSES), min_size=0, max_size=5))
    clauses.insert(draw(st.integers(0, len(clauses))), f"{BAD} == 1")
    connectors = draw(st.lists(st.sampled_from(["and", "or"]), min_size=len(clauses), max_size=len(clauses)))
    return [f"{c} {op}" for c, op in zip(clauses[:-1], connectors, strict=False)] + [clauses[-1]]


def _fold_spaces(expr: str, breaks: list[bool], indent: str, blank: bool = False) -> str:
    """Replace chosen single spaces by a line break and ``indent`` (YAML folds them back to a space)."""
    out = []
    words = expr.split(" ")
    for i, word in enumerate(words):
        out.append(word)
        if i < len(words) - 1:
            out.append("\n" + indent if breaks[i % len(breaks)] else " ")
    return "".join(out)


def _write(style: str, lines: list[str], breaks: list[bool], indent: int) -> str | None:
    pad = " " * indent
    expr = " ".join(lines)
    if style == "plain":
        if expr[0] in "'\"[{(-" or ": " in expr or " #" in expr:
            return None
        return _fold_spaces(expr, breaks, pad)
    if style == "double":
        esc = expr.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + _fold_spaces(esc, breaks, pad) + '"'
    if style == "single":
        return "'" + _fold_spaces(expr.replace("'", "''"), breaks, pad) + "'"
    if style == "folded":
        return ">-\n" + pad + _fold_spaces(expr, breaks, pad)
    # literal: one clause a line (line breaks are spaces to the language), later lines indented further
    return "|-\n" + "\n".join(pad + ("  " * breaks[i % len(breaks)] if i else "") + line
                               for i, line in enumerate(lines))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions(), style=st.sampled_from(["plain", "double", "single", "folded", "literal"]),
       breaks=st.lists(st.booleans(), min_size=1, max_size=6), indent=st.integers(2, 6),
       nested=st.booleans())
def test_reported_location_points_at_the_bad_name(expr: list[str], style: str, breaks: list[bool], indent: int,
                                                  nested: bool) -> None:
    scalar = _write(style, expr, breaks, indent + (4 if nested else 0))
    if scalar is None:
        return
    text = ("checks:\n  - message: m\n    check: " if nested else "check: ") + scalar + "\n"
    data = load_text(text, "p.yaml")[0].data
    holder = data["checks"][0] if nested else data
    assert holder["check"] == ("\n".join if style == "literal" else " ".join)(
        [line if style != "literal" or not i else ("  " * breaks[i % len(breaks)]) + line
         for i, line in enumerate(expr)]), text
    with pytest.raises(ExpressionError) as info:
        compile_expression(holder["check"], ENTITY, WORKSPACE, location=holder.val_locs["check"])
    loc = info.value.location
    assert loc is not None
    file_line = text.split("\n")[loc.line - 1]
    assert file_line[loc.col - 1 : loc.col - 1 + len(BAD)] == BAD, (text, str(info.value))
