"""Every example in docs/ and README.md that is marked as one runs, so the docs cannot drift from the engine.

A fenced block is an example when the line before its opening fence is an HTML comment:

``<!-- example -->``
    A shell block: each ``$ command`` line runs (bash, in a sandbox folder shared by the examples of
    one document, ``crm`` being this checkout's CLI) and must exit 0, or N when the line ends with a
    comment saying ``exit N`` (``$ crm plan acme   # exit 2: changes to apply``).  The lines after a command are
    its expected output: each must appear in order in what the command printed (stdout, then
    stderr); ``...`` inside a line matches anything, a line of just ``...`` skips any output.
    A ``yaml`` block is parsed by the engine's YAML loader, and checked against the JSON Schema of
    its kind when it is a whole document (``entity:``, ``role:``, ``workspace:`` ...).
``<!-- example: file PATH -->``
    A ``yaml`` block written to PATH in the sandbox (later shell examples of the document use it).

Blocks without a marker are illustrations (a server's output, a traceback, a fragment) and are
not run; a test below makes sure no document forgets its examples altogether.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.dsl.schemacheck import check_document, schema_names
from engine.dsl.yamlsrc import load_text

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*example(?::\s*(?P<how>[a-z]+)(?:\s+(?P<arg>\S+))?)?\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[a-z]*)\s*$")


@dataclass(frozen=True)
class Example:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    how: str  # "run" (shell or yaml check) or "file"
    arg: str | None
    body: str

    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def examples(doc: Path) -> list[Example]:
    """The marked blocks of ``doc``, in order."""
    lines = doc.read_text("utf-8").splitlines()
    out: list[Example] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        if marker:
            out.append(Example(doc, i + 1, fence["lang"], marker["how"] or "run", marker["arg"],
                               "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return out


def _sandbox(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``crm`` is this checkout's CLI, run with the interpreter running the tests."""
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    crm = bin_dir / "crm"
    crm.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m engine.cli "$@"\n')
    crm.chmod(crm.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k != "CRM_DATABASE_URL"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _commands(body: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each ``$ `` line of a shell block."""
    out: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out and line.strip():
            out[-1][1].append(line)
    return out


def _matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.strip().split("..."))
    return re.fullmatch(pattern, actual.strip()) is not None


def check_output(expected: list[str], printed: str) -> str | None:
    """None when every expected line appears in order in ``printed``; else what is missing."""
    actual = printed.splitlines()
    at = 0
    for want in expected:
        if want.strip() == "...":
            continue
        found = next((k for k in range(at, len(actual)) if _matches(want, actual[k])), None)
        if found is None:
            return f"expected line not printed (in order): {want!r}"
        at = found + 1
    return None


EXIT_COMMENT = re.compile(r"#[^#]*\bexit (\d+)\b[^#]*$")


def run_shell(example: Example, cwd: Path, env: dict[str, str]) -> None:
    for command, expected in _commands(example.body):
        proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        printed = proc.stdout + proc.stderr
        status = EXIT_COMMENT.search(command)
        want = int(status.group(1)) if status else 0
        assert proc.returncode == want, \
            f"{example.where()}: `{command}` exited {proc.returncode}, not {want}:\n{printed}"
        problem = check_output(expected, printed)
        assert problem is None, f"{example.where()}: `{command}`: {problem}\nit printed:\n{printed}"


def check_yaml(example: Example) -> None:
    docs = load_text(example.body, example.where())
    kinds = set(schema_names())
    for doc in docs:
        data = doc.data
        if not isinstance(data, dict):
            continue
        kind = next((k for k in data if f"{k}.json" in kinds), None)
        if kind is not None and data.get(kind) is not None:
            check_document(doc, f"{kind}.json")


def run_document(doc: Path, tmp_path: Path) -> int:
    env = _sandbox(tmp_path)
    ran = 0
    for example in examples(doc):
        if example.how == "file":
            assert example.arg, f"{example.where()}: 'example: file' needs a path"
            target = tmp_path / example.arg
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(example.body, "utf-8")
            check_yaml(example)
        elif example.lang == "yaml":
            check_yaml(example)
        elif example.lang in ("", "console", "bash", "sh", "shell"):
            run_shell(example, tmp_path, env)
        else:
            raise AssertionError(f"{example.where()}: no way to run a {example.lang!r} example")
        ran += 1
    return ran


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_marked_example_runs(doc: Path, tmp_path: Path):
    run_document(doc, tmp_path)


def test_the_docs_users_start_from_have_examples():
    """README, configuration, CLI, plan/apply and expressions carry runnable examples."""
    for name in ("README.md", "configuration.md", "cli.md", "plan-apply.md", "expressions.md"):
        doc = ROOT / name if name == "README.md" else ROOT / "docs" / name
        assert examples(doc), f"{name} has no marked example"


def test_the_output_matcher_fails_on_a_wrong_example():
    """The harness itself: a wrong expected line, or lines out of order, are caught."""
    printed = "type: boolean\nsql: SELECT lead.id FROM lead\n"
    assert check_output(["type: boolean", "sql: SELECT ... FROM lead"], printed) is None
    assert check_output(["...", "sql: SELECT lead.id FROM lead"], printed) is None
    assert check_output(["type: integer"], printed) is not None
    assert check_output(["sql: SELECT lead.id FROM lead", "type: boolean"], printed) is not None
