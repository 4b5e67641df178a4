"""JSON Schema (draft 2020-12) checks with located, friendly errors."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from engine.dsl.model import MAX_NAME
from engine.dsl.yamlsrc import YamlDocument, locate
from engine.errors import SchemaViolation
from engine.wording import either, with_article

_SCHEMA_BASE = "https://crm-engine.dev/schemas/"


def schema_names() -> list[str]:
    """File names of every shipped schema."""
    folder = resources.files("engine.dsl") / "schemas"
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed JSON Schema ``name`` (e.g. ``entity.json``).

    ``_defs.json``'s ``identifier`` gets ``maxLength`` :data:`~engine.dsl.model.MAX_NAME` here, so the
    schemas and the compiler share one limit (``crm schema`` exports it too).
    """
    text = (resources.files("engine.dsl") / "schemas" / name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    if name == "_defs.json":
        schema["$defs"]["identifier"]["maxLength"] = MAX_NAME
    return schema


@cache
def _registry() -> Registry:
    pairs = [(_SCHEMA_BASE + n, Resource.from_contents(load_schema(n))) for n in schema_names()]
    return Registry().with_resources(pairs)


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    # References are inlined once: resolving them per node cost more than the checks themselves.
    schema = _inline_refs(load_schema(name), load_schema(name), ())
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _schema_key(schema: Mapping[str, Any]) -> str:
    """A stable name for a schema given as data (its content digest)."""
    return "inline:" + hashlib.sha1(json.dumps(schema, sort_keys=True, default=str).encode()).hexdigest()


_INLINE: dict[str, jsonschema.Draft202012Validator] = {}


def _inline_validator(key: str, schema: Mapping[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for a schema given as data, built once per distinct schema (bounded memo)."""
    found = _INLINE.get(key)
    if found is None:
        doc = dict(schema)
        found = jsonschema.Draft202012Validator(_inline_refs(doc, doc, ()), registry=_registry())
        if len(_INLINE) > 64:
            _INLINE.clear()
        _INLINE[key] = found
    return found


def _inline_refs(node: Any, doc: dict[str, Any], stack: tuple[str, ...]) -> Any:
    """``node`` with every ``$ref`` replaced by its target; a recursive ref is kept (resolved lazily)."""
    if isinstance(node, list):
        return [_inline_refs(v, doc, stack) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref not in stack:
        target_doc, target = _resolve(ref, doc)
        return _inline_refs(target, target_doc, (*stack, ref))
    if isinstance(ref, str) and ref.startswith("#"):
        return {**node, "$ref": _SCHEMA_BASE + doc.get("$id", "inline.json").rsplit("/", 1)[-1] + ref}
    return {k: _inline_refs(v, doc, stack) for k, v in node.items()}


def _resolve(ref: str, doc: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    file, _, pointer = ref.partition("#")
    target_doc = load_schema(file) if file else doc
    node: Any = target_doc
    for part in (p for p in pointer.split("/") if p):
        node = node[part]
    return target_doc, node


class _ValidMemo:
    """Documents already known to be valid, by (schema, file text digest, document index).

    Validity is a pure function of the text, so this is a memo, not state:
    the base layer shared by several workspaces, or unchanged files between
    two revisions, are not validated again.  Invalid documents are never
    remembered (their errors must name the file they come from).  Bounded.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.keys: dict[tuple[str, str, int], None] = {}

    def __contains__(self, key: tuple[str, str, int]) -> bool:
        return key in self.keys

    def add(self, key: tuple[str, str, int]) -> None:
        if len(self.keys) >= self.size:
            self.keys.pop(next(iter(self.keys)))
        self.keys[key] = None

    def clear(self) -> None:
        self.keys.clear()


VALID_MEMO = _ValidMemo()


def check_document(doc: YamlDocument, schema: str | Mapping[str, Any],
                   text_digest: str | None = None) -> list[SchemaViolation]:
    """Every schema violation of ``doc``, located and with a hint, best first.

    ``schema`` is a shipped schema's file name, or a schema itself (a
    plugin's kind, or a built-in one extended with plugin field types).
    ``text_digest`` (a digest of the whole file's text) lets a document
    already found valid skip validation.
    """
    name = schema if isinstance(schema, str) else _schema_key(schema)
    key = (name, text_digest, doc.index) if text_digest is not None else None
    if key is not None and key in VALID_MEMO:
        return []
    validator = _validator(schema) if isinstance(schema, str) else _inline_validator(name, schema)
    errors = sorted(validator.iter_errors(doc.data), key=lambda e: list(e.absolute_path))
    if not errors and key is not None:
        VALID_MEMO.add(key)
    return [_convert(doc, e) for e in _dedupe(errors)]


def _dedupe(errors: Iterable[ValidationError]) -> list[ValidationError]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for e in errors:
        key = (tuple(e.absolute_path), e.validator)
        if key not in seen:
            seen.add(key)
            out.append(_best(e))
    return out


def _best(error: ValidationError) -> ValidationError:
    """For oneOf/anyOf, the most relevant sub-error (jsonschema's best_match), preferring the
    alternatives of the value's own type: a mapping written with a typo is told about the typo,
    not that it should have been a list."""
    if not error.context:
        return error
    same_type = [e for e in error.context if e.validator != "type"]
    return jsonschema.exceptions.best_match(same_type or error.context) or error


def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _convert(doc: YamlDocument, e: ValidationError) -> SchemaViolation:
    path = list(e.absolute_path)
    where = _dotted(path)
    if e.validator == "additionalProperties":
        return _unknown_property(doc, e, path)
    loc = locate(doc.data, path) or doc.loc
    prefix = f"{where}: " if where else ""
    if e.validator == "enum":
        allowed = [str(v) for v in e.validator_value]
        guess = _did_you_mean(e.instance, allowed)
        hint = guess or f"use one of: {', '.join(allowed)}"
        return SchemaViolation(
            f"{prefix}{e.instance!r} is not one of [{', '.join(allowed)}]" + (f" ({guess})" if guess else ""),
            location=loc,
            hint=hint,
            code="schema_enum",
        )
    if e.validator == "required":
        return SchemaViolation(f"{prefix}{e.message}", location=loc, hint="add the missing property",
                               code="schema_required")
    if e.validator == "pattern" and isinstance(e.instance, str):
        return SchemaViolation(
            f"{prefix}{e.instance!r} is not a valid name",
            location=loc,
            hint="names use lowercase letters, digits and underscores, starting with a letter",
            code="schema_pattern",
        )
    if e.validator == "maxLength" and isinstance(e.instance, str):
        return SchemaViolation(f"{prefix}{_short(e.instance)!r} is longer than {e.validator_value} characters",
                               location=loc, hint=f"shorten it to at most {e.validator_value} characters",
                               code="schema_too_long")
    if e.validator == "type":
        return SchemaViolation(f"{prefix}{e.instance!r} should be of type {either(e.validator_value)}", location=loc,
                               hint=f"write {with_article(either(e.validator_value))} here", code="schema_type")
    return SchemaViolation(f"{prefix}{e.message}", location=loc, code="schema_violation")


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_property(doc: YamlDocument, e: ValidationError, path: list[Any]) -> SchemaViolation:
    allowed = sorted((e.schema.get("properties") or {}).keys())
    extra = [k for k in e.instance if k not in allowed] if isinstance(e.instance, dict) else []
    name = extra[0] if extra else "?"
    loc = locate(doc.data, [*path, name], key=True) or doc.loc
    where = _dotted(path)
    hint = _did_you_mean(name, allowed) or f"known properties: {', '.join(allowed)}"
    return SchemaViolation(
        f"{where + ': ' if where else ''}unknown property {name!r}",
        location=loc,
        hint=hint,
        code="schema_unknown_property",
    )


def _did_you_mean(value: Any, choices: list[str]) -> str | None:
    if not isinstance(value, str):
        return None
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None
