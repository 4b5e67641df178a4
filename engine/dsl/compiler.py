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

from engine.dsl.compile_context import CompileContext
from engine.dsl.currencies import iso_codes
from engine.dsl.extensions import Extensions, default_extensions
from engine.dsl.kinds import KindSpec
from engine.dsl.layers import Layer, discover, from_bundle, to_bundle
from engine.dsl.loader import LoadedConfig, load_layers
from engine.dsl.model import AttachmentSettings, ConfigObject, Field, Workspace, frozen_map
from engine.dsl.rowsize import row_size_warnings
from engine.dsl.yamlsrc import load_text, locate, plain
from engine.errors import ConfigError, InvalidName, SchemaViolation, UnknownPlugin, raise_collected

#: A pass over the built model: checks (reporting errors) and returns compiled objects to keep
#: on ``Workspace.compiled`` (e.g. expressions), or None.
ExpressionPass = Callable[[Workspace, Callable[[ConfigError], None]], Mapping[tuple[Any, ...], Any] | None]


def compile_folder(folder: Path, *, extensions: Extensions | None = None,
                   passes: Sequence[ExpressionPass] | None = None) -> Workspace:
    """Compile the workspace in ``folder`` with all the layers it extends."""
    return compile_layers(discover(folder), extensions=extensions, passes=passes)


def compile_bundle(bundle: Mapping[str, Any], *, extensions: Extensions | None = None,
                   passes: Sequence[ExpressionPass] | None = None) -> Workspace:
    """Compile a revision bundle (see :func:`engine.dsl.layers.to_bundle`)."""
    return compile_layers(from_bundle(bundle), extensions=extensions, passes=passes)


def compile_layers(layers: Sequence[Layer], *, extensions: Extensions | None = None,
                   passes: Sequence[ExpressionPass] | None = None) -> Workspace:
    """Load, check, merge and compile ``layers`` (base first) with ``extensions`` (default: built-ins).

    Every kind compiles through its own :attr:`KindSpec.compile`, in kind
    order; each sees what the kinds before it compiled (:class:`CompileContext`).
    """
    ext = extensions or default_extensions()
    loaded = load_layers(layers, ext.kinds)
    errors: list[ConfigError] = []
    report = errors.append
    settings = _settings(loaded)
    _check_plugins(loaded, ext, report)
    _check_phone_region(loaded, report)
    _check_currency(loaded, report)
    _check_file_store(loaded, ext, report)
    ctx = CompileContext(ext, report, settings)
    ctx.files.update({f.key: f for layer in layers for f in layer.files})
    _compile_kinds(loaded, ext, ctx)
    raise_collected(errors)
    ws = Workspace(
        name=settings["name"], locale=settings["locale"], currency=settings["currency"],
        phone_region=settings["phone_region"],
        entities=frozen_map(ctx.entities), roles=frozen_map(ctx.roles),
        objects=frozen_map({k: frozen_map(v) for k, v in ctx.objects.items()
                            if (spec := ext.kinds.get(k)) is not None and spec.target == "objects"}),
        plugins=tuple(settings["plugins"]), layers=tuple(layer.name for layer in layers),
        sources=frozen_map(to_bundle(layers, settings["name"])["files"]),
        content_hash=content_hash(layers),
        warnings=tuple(row_size_warnings(ctx.entities.values())),
        functions=ext.functions, field_types=ext.field_types, attachments=settings["attachments"],
    )
    compiled: dict[tuple[Any, ...], Any] = {}
    for run_pass in passes if passes is not None else default_passes():
        compiled.update(run_pass(ws, report) or {})
    raise_collected(errors)
    return dataclasses.replace(ws, compiled=frozen_map(compiled)) if compiled else ws


def plugin_names(layers: Sequence[Layer]) -> tuple[str, ...]:
    """The plugins the workspace manifest of ``layers`` enables (``plugins:``), before anything is compiled.

    Malformed manifests yield no names here; :func:`compile_layers` reports them.
    """
    names: list[str] = []
    for layer in layers:
        if layer.manifest is None:
            continue
        try:
            docs = load_text(layer.manifest.text, layer.manifest.display)
        except ConfigError:
            continue
        for doc in docs:
            data = doc.data
            if isinstance(data, dict) and "workspace" in data and isinstance(data.get("plugins"), list):
                names.extend(str(n) for n in data["plugins"] if isinstance(n, str))
    return tuple(dict.fromkeys(names))


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
    out: dict[str, Any] = {"name": "base", "locale": "en", "currency": "USD", "phone_region": None, "plugins": []}
    for doc in loaded.manifests:  # base first, so the workspace's own settings win
        data = doc.data
        out["name"] = doc.name
        for key in ("locale", "currency", "phone_region"):
            if key in data:
                out[key] = data[key]
        if doc.kind == "workspace":
            out["plugins"] = list(data.get("plugins") or [])
            out["attachments"] = attachment_settings(data.get("attachments") or {})
    out.setdefault("attachments", AttachmentSettings())
    return out


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(value: int | str) -> int:
    """Bytes of a size written as a whole number or as ``25MB``, ``512 KB``, ``1GiB`` (the schema checked its
    form); ValueError for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().upper()
    number = text.rstrip("KMGIB ")
    unit = text[len(number):].strip()
    if unit not in _SIZE_UNITS or not number:
        raise ValueError(f"{value!r} is not a size")
    return int(float(number) * _SIZE_UNITS[unit])


def attachment_settings(data: Mapping[str, Any]) -> AttachmentSettings:
    """``attachments:`` of workspace.yaml (schema-checked) as settings; defaults for what it leaves out."""
    base = AttachmentSettings()
    return AttachmentSettings(
        max_size=parse_size(data["max_size"]) if "max_size" in data else base.max_size,
        allowed_types=tuple(str(t) for t in data["allowed_types"]) if "allowed_types" in data else base.allowed_types,
        store=str(data.get("store", base.store)), path=str(data["path"]) if data.get("path") else None,
        options=frozen_map(plain(data.get("options") or {})))


def _check_plugins(loaded: LoadedConfig, ext: Extensions, report: Callable[[ConfigError], None]) -> None:
    """Every plugin ``workspace.yaml`` enables must be one this compile was given (installed)."""
    for doc in loaded.manifests:
        if doc.kind != "workspace":
            continue
        for i, name in enumerate(doc.data.get("plugins") or []):
            if name not in ext.plugins:
                candidates = list(ext.installed or ext.plugins)
                close = difflib.get_close_matches(str(name), candidates, n=1)
                known = ", ".join(candidates) or "none"
                report(UnknownPlugin(
                    f"plugin {name!r} is not installed (installed plugins: {known})",
                    location=locate(doc.data, ("plugins", i)),
                    hint=(f"did you mean {close[0]!r}? " if close else "")
                    + "install its package (it registers under the 'crm_engine.plugins' entry point), "
                      "or remove it from plugins:"))


def _check_phone_region(loaded: LoadedConfig, report: Callable[[ConfigError], None]) -> None:
    """``phone_region`` must be a region the phone number library knows (the schema only checks its form)."""
    for doc in loaded.manifests:
        code = doc.data.get("phone_region")
        if not isinstance(code, str):
            continue
        import phonenumbers  # only a manifest that sets a phone region pays for loading it

        if code not in phonenumbers.SUPPORTED_REGIONS:
            report(SchemaViolation(
                f"phone_region {code!r} is not a region phone numbers are known for",
                location=locate(doc.data, ("phone_region",)),
                hint="use an ISO 3166-1 alpha-2 code such as CN, US, GB, DE"
                     + (" (the United Kingdom is GB)" if code == "UK" else "")))


def _check_currency(loaded: LoadedConfig, report: Callable[[ConfigError], None]) -> None:
    """``currency`` must be an ISO 4217 code (the schema only checks its form)."""
    for doc in loaded.manifests:
        code = doc.data.get("currency")
        if isinstance(code, str) and code not in iso_codes():
            report(SchemaViolation(f"currency {code!r} is not an ISO 4217 currency code",
                                   location=locate(doc.data, ("currency",)),
                                   hint="use a three-letter code such as CNY, USD or EUR"
                                        + (" (the Chinese yuan is CNY)" if code == "RMB" else "")))


def _check_file_store(loaded: LoadedConfig, ext: Extensions, report: Callable[[ConfigError], None]) -> None:
    """``attachments.store`` must be a store of the enabled plugins (``local`` is the engine's own); not
    checked when the compile was given no plugins' stores."""
    if not ext.file_stores:
        return
    for doc in loaded.manifests:
        attachments = doc.data.get("attachments")
        store = attachments.get("store") if isinstance(attachments, dict) else None
        if isinstance(store, str) and store not in ext.file_stores:
            close = difflib.get_close_matches(store, list(ext.file_stores), n=1, cutoff=0.5)
            report(SchemaViolation(
                f"attachments.store {store!r} is not a file store of the enabled plugins "
                f"(stores: {', '.join(ext.file_stores)})", location=locate(doc.data, ("attachments", "store")),
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + "enable the plugin that provides it in plugins: (the s3 store: plugins: [s3_files])"))


def _compile_kinds(loaded: LoadedConfig, ext: Extensions, ctx: CompileContext) -> None:
    """Each kind's documents through its compiler, in kind order; then the fields kinds add to entities."""
    for spec in ext.kinds.specs():
        if spec.manifest:
            continue
        docs = [d for d in loaded.docs.values() if d.kind == spec.name]
        compiled = dict(spec.compile(docs, ctx)) if spec.compile else {}
        if spec.target == "objects":
            compiled = {d.name: ConfigObject(spec.name, d.name, d.loc, frozen_map(plain(d.data)),
                                             compiled.get(d.name))
                        for d in docs if spec.compile is None or d.name in compiled}  # failed ones: reported
        ctx.objects[spec.name] = compiled
        if spec.target == "entities":
            ctx.entities.update(compiled)
        elif spec.target == "roles":
            ctx.roles.update(compiled)
    for spec in ext.kinds.specs():
        if spec.entity_fields is not None and not spec.manifest:
            _add_fields(spec, spec.entity_fields(ctx.objects.get(spec.name, {}), ctx), ctx)
    changed_by: dict[tuple[str, str], str] = {}
    for spec in ext.kinds.specs():
        if spec.entity_field_changes is not None and not spec.manifest:
            _change_fields(spec, spec.entity_field_changes(ctx.objects.get(spec.name, {}), ctx), ctx, changed_by)


def _add_fields(spec: KindSpec, added: Mapping[str, Sequence[Field]], ctx: CompileContext) -> None:
    for entity_name, fields in added.items():
        entity = ctx.entities.get(entity_name)
        if entity is None:
            continue  # the kind's compiler reported the unknown entity
        merged = dict(entity.fields)
        for f in fields:
            if f.name in merged:
                ctx.report(InvalidName(f"{spec.name} adds field {entity_name}.{f.name}, which the entity already has",
                                       location=f.location, hint=f"rename the field in entity {entity_name!r}"))
                continue
            merged[f.name] = f
        ctx.entities[entity_name] = dataclasses.replace(entity, fields=frozen_map(merged))


def _change_fields(spec: KindSpec, changes: Mapping[str, Sequence[Field]], ctx: CompileContext,
                   changed_by: dict[tuple[str, str], str]) -> None:
    """Replace entity fields with the kind's versions of them; one kind per field."""
    for entity_name, fields in changes.items():
        entity = ctx.entities.get(entity_name)
        if entity is None:
            continue  # the kind's compiler reported the unknown entity
        merged = dict(entity.fields)
        for f in fields:
            if f.name not in merged:
                ctx.report(InvalidName(f"{spec.name} changes field {entity_name}.{f.name}, which the entity does not "
                                       "have", location=f.location, hint=f"add the field to entity {entity_name!r}"))
                continue
            earlier = changed_by.setdefault((entity_name, f.name), spec.name)
            if earlier != spec.name:
                ctx.report(InvalidName(f"{spec.name} and {earlier} both change field {entity_name}.{f.name}",
                                       location=f.location, hint="let one document own the field"))
                continue
            merged[f.name] = f
        ctx.entities[entity_name] = dataclasses.replace(entity, fields=frozen_map(merged))
