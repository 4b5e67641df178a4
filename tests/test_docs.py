"""Docs for what users touch: every error code the engine can produce has an anchored row in docs/errors.md,
and every error body links to it."""

from __future__ import annotations

import re
from pathlib import Path

import engine.api.errors as api_errors
import engine.errors as errors
from engine.dsl.expressions.parser import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
CODE_LITERAL = re.compile(r"""["'](expression_[a-z_]+|schema_[a-z_]+|bad_[a-z_]+)["']""")
#: every other way the code names an error code: code="...", code = "...", error_response(503, "...")
CODE_ASSIGNED = re.compile(r"""\bcode\s*=\s*["']([a-z][a-z_]*)["']""")
CODE_RESPONSE = re.compile(r"""error_response\(\s*\d+\s*,\s*["']([a-z][a-z_]*)["']""")
#: strings of that shape that are attribute names, not error codes
NOT_CODES = {"expression_location"}
HTTP_CODES = {"not_found", "method_not_allowed", "payload_too_large"}


def anchored() -> set[str]:
    """Codes with a row anchor (``<a id="code"></a>``) in docs/errors.md."""
    return set(re.findall(r'<a id="([a-z_]+)"></a>`\1`', (ROOT / "docs" / "errors.md").read_text("utf-8")))


def produced() -> set[str]:
    """Every code the engine can produce: error classes, code literals, the syntax catalogue, HTTP errors."""
    codes = {c.code for m in (errors, api_errors) for c in vars(m).values()
             if isinstance(c, type) and issubclass(c, errors.EngineError)}
    codes |= {v[0] for v in CATALOGUE.values()} | HTTP_CODES
    for path in (ROOT / "engine").rglob("*.py"):
        text = path.read_text("utf-8")
        for pattern in (CODE_LITERAL, CODE_ASSIGNED, CODE_RESPONSE):
            codes.update(pattern.findall(text))
    return codes - NOT_CODES


def test_every_code_the_engine_produces_has_an_anchored_row():
    missing = sorted(produced() - anchored())
    assert not missing, f"add a row with <a id=...> to docs/errors.md: {missing}"


def test_codes_of_http_errors_are_documented_and_bodies_link_to_them():
    """Statuses Werkzeug raises (unknown URL, wrong method, body too large) answer with documented codes,
    and every error body carries the link to its row."""
    from flask import Flask, request

    from engine.api.errors import register_error_handlers

    app = Flask("t")
    app.config["MAX_CONTENT_LENGTH"] = 10
    register_error_handlers(app)
    app.add_url_rule("/x", "x", lambda: request.get_data(), methods=["POST"])
    client = app.test_client()
    bodies = [client.get("/nowhere").get_json(), client.get("/x").get_json(),
              client.post("/x", data=b"x" * 100).get_json()]
    assert {b["error"]["code"] for b in bodies} == HTTP_CODES
    for body in bodies:
        assert body["error"]["docs"] == f"docs/errors.md#{body['error']['code']}"


def test_every_hook_has_a_documented_entry():
    """Datasette's habit: a hook without its entry in docs/plugins.md fails the build."""
    import inspect

    from engine.plugins import hookspecs

    hooks = sorted(n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and n.startswith("crm_"))
    assert len(hooks) >= 10
    text = (ROOT / "docs" / "plugins.md").read_text("utf-8")
    missing = [h for h in hooks if f"### `{h}`" not in text]
    assert not missing, f"document these hooks in docs/plugins.md: {missing}"
    for name in hooks:
        assert (getattr(hookspecs, name).__doc__ or "").count("When") >= 1, f"{name}: say when it is called"


def test_the_phone_examples_of_configuration_md_compile(tmp_path: Path) -> None:
    """configuration.md's examples run (tests/test_doc_examples.py), and the workspace they leave has the
    phone settings the text describes."""
    from engine.dsl.compiler import compile_folder
    from tests.test_doc_examples import run_document

    run_document(ROOT / "docs" / "configuration.md", tmp_path)
    ws = compile_folder(tmp_path / "acme")
    assert ws.phone_region == "CN" and ws.locale == "zh"
    assert ws.entities["contact"].fields["mobile"].keep_as_typed
