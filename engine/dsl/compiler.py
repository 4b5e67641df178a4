"""Compile layered YAML into an immutable :class:`~engine.dsl.model.Workspace`.

Pure: no database, no web.  Entry points:

* :func:`compile_folder` — a workspace (or template) folder on disk;
* :func:`compile_bundle` — a revision bundle stored in the database;
* :func:`compile_layers` — layers already read.

Every error found is reported at once, each with its ``file:line:col``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.dsl.compile_entity import EntityCompiler, label_of
from engine.dsl.kinds import DEFAULT_KINDS, KindRegistry
from engine.dsl.layers import Layer, discover, from_bundle, to_bundle
from engine.dsl.loader import LoadedConfig, MergedDoc, load_layers
from engine.dsl.model import (
    ConfigObject,
    Entity,
    EntityPermission,
    Role,
    Workspace,
    frozen_map,
)
from engine.dsl.rowsize import row_size_warnings
from engine.dsl.yamlsrc import locate, plain
from engine.errors import ConfigError, UnknownReference, raise_collected

#: A pass over the built model: checks (reporting errors) and returns compiled objects to keep
#: on ``Workspace.compiled`` (e.g. expressions), or None.
ExpressionPass = Callable[[Workspace, Callable[[ConfigError], None]], Mapping[tuple[Any, ...], Any] | None]


def compile_folder(folder: Path, *, kinds: KindRegistry = DEFAULT_KINDS,
                   passes: Sequence[ExpressionPass] | None = None) -> Workspace:
    """Compile the workspace in ``folder`` with all the layers it extends."""
    return compile_layers(discover(folder), kinds=kinds, passes=passes)


def compile_bundle(bundle: Mapping[str, Any], *, kinds: KindRegistry = DEFAULT_KINDS,
                   passes: Sequence[ExpressionPass] | None = None) -> Workspace:
    """Compile a revision bundle (see :func:`engine.dsl.layers.to_bundle`)."""
    return compile_layers(from_bundle(bundle), kinds=kinds, passes=passes)


def compile_layers(layers: Sequence[Layer], *, kinds: KindRegistry = DEFAULT_KINDS,
                   passes: Sequence[ExpressionPass] | None = None) -> Workspace:
    """Load, check, merge and compile ``layers`` (base first)."""
    loaded = load_layers(layers, kinds)
    errors: list[ConfigError] = []
    report = errors.append
    settings = _settings(loaded)
    entities = _entities(loaded, report)
    roles = _roles(loaded, entities, report)
    objects = _objects(loaded, kinds, entities, report)
    raise_collected(errors)
    ws = Workspace(
        name=settings["name"], locale=settings["locale"], currency=settings["currency"],
        entities=frozen_map(entities), roles=frozen_map(roles), objects=frozen_map(objects),
        plugins=tuple(settings["plugins"]), layers=tuple(layer.name for layer in layers),
        sources=frozen_map(to_bundle(layers, settings["name"])["files"]),
        content_hash=content_hash(layers),
        warnings=tuple(row_size_warnings(entities.values())),
    )
    compiled: dict[tuple[Any, ...], Any] = {}
    for run_pass in passes if passes is not None else default_passes():
        compiled.update(run_pass(ws, report) or {})
    raise_collected(errors)
    return dataclasses.replace(ws, compiled=frozen_map(compiled)) if compiled else ws


def default_passes() -> list[ExpressionPass]:
    """The passes run after the model is built: the entities' expressions."""
    from engine.dsl.entity_exprs import compile_entity_expressions

    return [compile_entity_expressions]


def content_hash(layers: Sequence[Layer]) -> str:
    """sha256 over every file's bundle key and text, in layer order."""
    h = hashlib.sha256()
    for layer in layers:
        for f in ([layer.manifest] if layer.manifest else []) + list(layer.files):
            h.update(f.key.encode() + b"\0" + f.text.encode() + b"\0")
    return h.hexdigest()


def _settings(loaded: LoadedConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "base", "locale": "en", "currency": "USD", "plugins": []}
    for doc in loaded.manifests:  # base first, so the workspace's own settings win
        data = doc.data
        out["name"] = doc.name
        for key in ("locale", "currency"):
            if key in data:
                out[key] = data[key]
        if doc.kind == "workspace":
            out["plugins"] = list(data.get("plugins") or [])
    return out


def _entities(loaded: LoadedConfig, report: Callable[[ConfigError], None]) -> dict[str, Entity]:
    docs = [d for d in loaded.docs.values() if d.kind == "entity" and not d.data.get("remove")]
    names = {d.name for d in docs}
    out: dict[str, Entity] = {}
    for doc in docs:
        compiler = EntityCompiler(doc.name, doc.data, doc.loc, names, report, core=doc.layer == "base")
        for entity in compiler.compile():
            out[entity.name] = entity
    return out


def _roles(loaded: LoadedConfig, entities: Mapping[str, Entity],
           report: Callable[[ConfigError], None]) -> dict[str, Role]:
    out = {}
    for doc in (d for d in loaded.docs.values() if d.kind == "role"):
        out[doc.name] = _role(doc, entities, report)
    return out


def _role(doc: MergedDoc, entities: Mapping[str, Entity], report: Callable[[ConfigError], None]) -> Role:
    data = doc.data
    admin = bool(data.get("admin"))
    perms: dict[str, EntityPermission] = {}
    raw = data.get("permissions") or {}
    default = raw.get("*")
    for name in raw:
        if name != "*" and name not in entities:
            _unknown(report, f"role {doc.name!r} gives permissions on unknown entity {name!r}",
                     locate(data, ("permissions", name), key=True), name, entities)
    for name in entities:
        p = raw.get(name, default)
        if admin:
            perms[name] = EntityPermission("all", True, "all", "all")
        elif p is not None:
            perms[name] = EntityPermission(p.get("read", "none"), bool(p.get("create", False)),
                                           p.get("update", "none"), p.get("delete", "none"))
    rules: dict[tuple[str, str], str] = {}
    for dotted, rule in (data.get("fields") or {}).items():
        ent, _, fld = dotted.partition(".")
        loc = locate(data, ("fields", dotted), key=True)
        if ent not in entities:
            _unknown(report, f"role {doc.name!r}: unknown entity {ent!r} in {dotted!r}", loc, ent, entities)
        elif fld not in entities[ent].fields:
            _unknown(report, f"role {doc.name!r}: entity {ent!r} has no field {fld!r}", loc, fld, entities[ent].fields)
        else:
            rules[(ent, fld)] = rule
    return Role(doc.name, doc.loc, label_of(data.get("label"), doc.name), admin,
                frozen_map(perms), frozen_map(rules))


def _unknown(report: Callable[[ConfigError], None], message: str, loc: Any, name: str,
             choices: Mapping[str, Any]) -> None:
    close = difflib.get_close_matches(name, list(choices), n=1)
    report(UnknownReference(message, location=loc, hint=f"did you mean {close[0]!r}?" if close else None))


def _objects(loaded: LoadedConfig, kinds: KindRegistry, entities: Mapping[str, Entity],
             report: Callable[[ConfigError], None]) -> dict[str, Mapping[str, ConfigObject]]:
    out: dict[str, dict[str, ConfigObject]] = {}
    for spec in kinds.specs():
        if spec.manifest or spec.name in ("entity", "role"):
            continue
        for doc in (d for d in loaded.docs.values() if d.kind == spec.name):
            compiled = spec.compile(doc, entities, report) if spec.compile else None
            out.setdefault(spec.name, {})[doc.name] = ConfigObject(
                spec.name, doc.name, doc.loc, frozen_map(plain(doc.data)), compiled)
    return {k: frozen_map(v) for k, v in out.items()}
