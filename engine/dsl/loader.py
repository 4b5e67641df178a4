"""From layer files to merged documents.

Each YAML document's first key names its kind and its name.  Documents are
checked against their kind's JSON Schema, then merged in layer order: a
later document of the same kind and name must say ``extend: true`` (then it
adds to / overrides the earlier one), otherwise it is a located
:class:`~engine.errors.DuplicateDefinition` naming both places.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.dsl.kinds import KindRegistry, ListMerge
from engine.dsl.layers import SIDE_SUFFIXES, Layer, LayerFile
from engine.dsl.listedit import edit_list, is_list_edit
from engine.dsl.schemacheck import check_document
from engine.dsl.yamlsrc import YamlDocument, YList, YMap, load_text, located_copy
from engine.errors import (
    ConfigError,
    DuplicateDefinition,
    LayerError,
    SchemaViolation,
    SourceLocation,
    UnknownKind,
    raise_collected,
)


@dataclass
class SourceDoc:
    """One document as written in one file."""

    kind: str
    name: str
    data: YMap
    layer: str
    loc: SourceLocation

    @property
    def extend(self) -> bool:
        return bool(self.data.get("extend"))


@dataclass
class MergedDoc:
    """A document after layering: the merged data and every place that wrote it."""

    kind: str
    name: str
    data: YMap
    loc: SourceLocation
    layer: str
    contributions: list[SourceLocation] = field(default_factory=list)


@dataclass
class LoadedConfig:
    manifests: list[SourceDoc]
    docs: dict[tuple[str, str], MergedDoc]
    layers: list[Layer]


def load_layers(layers: Sequence[Layer], kinds: KindRegistry) -> LoadedConfig:
    """Parse, schema-check and merge every document of ``layers`` with the ``kinds`` the compile uses.

    Raises :class:`~engine.errors.ConfigErrors` with every problem found.
    """
    errors: list[ConfigError] = []
    manifests: list[SourceDoc] = []
    docs: list[SourceDoc] = []
    for layer in layers:
        if layer.manifest is not None:
            manifests.extend(_read_file(layer.manifest, layer.name, kinds, errors, manifest=True))
        for f in layer.files:
            if f.key.endswith(SIDE_SUFFIXES):
                continue
            docs.extend(_read_file(f, layer.name, kinds, errors, manifest=False))
    raise_collected(errors)
    merged = merge_documents(docs, kinds, errors)
    raise_collected(errors)
    return LoadedConfig(manifests, merged, list(layers))


def _read_file(
    f: LayerFile, layer: str, kinds: KindRegistry, errors: list[ConfigError], *, manifest: bool
) -> list[SourceDoc]:
    try:
        ydocs = load_text(f.text, f.display)
    except ConfigError as e:
        errors.append(e)
        return []
    digest = hashlib.sha1(f.text.encode("utf-8")).hexdigest()
    out = []
    for ydoc in ydocs:
        doc = _classify(ydoc, layer, kinds, errors, manifest=manifest, digest=digest)
        if doc is not None:
            out.append(doc)
    return out


def _classify(
    ydoc: YamlDocument, layer: str, kinds: KindRegistry, errors: list[ConfigError], *, manifest: bool,
    digest: str | None = None,
) -> SourceDoc | None:
    data = ydoc.data
    if data is None:
        return None
    if not isinstance(data, YMap) or not data:
        errors.append(SchemaViolation("a document must be a mapping whose first key names its kind",
                                      location=ydoc.loc, hint="start with e.g. 'entity: lead'"))
        return None
    kind = next(iter(data))
    spec = kinds.get(kind) if isinstance(kind, str) else None
    if spec is None or spec.manifest != manifest:
        errors.append(_unknown_kind(kind, data, kinds, manifest=manifest))
        return None
    problems = check_document(ydoc, spec.schema, digest)
    if problems:
        errors.extend(problems)
        return None
    return SourceDoc(kind, str(data[kind]), data, layer, data.key_locs[kind])


def _unknown_kind(kind: Any, data: YMap, kinds: KindRegistry, *, manifest: bool) -> UnknownKind:
    known = [k for k in kinds.names(manifests=True) if kinds.get(k).manifest == manifest]  # type: ignore[union-attr]
    close = difflib.get_close_matches(str(kind), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    where = "a manifest" if manifest else "a document"
    return UnknownKind(
        f"unknown kind {kind!r}: the first key of {where} names its kind",
        location=data.key_locs.get(kind, data.loc),
        hint=hint + f"known kinds: {', '.join(known)}",
    )


# --------------------------------------------------------------------------- merging


def merge_documents(
    docs: Sequence[SourceDoc], kinds: KindRegistry, errors: list[ConfigError]
) -> dict[tuple[str, str], MergedDoc]:
    """Layer the documents in order (see module docstring)."""
    merged: dict[tuple[str, str], MergedDoc] = {}
    for doc in docs:
        key = (doc.kind, doc.name)
        earlier = merged.get(key)
        if doc.extend and earlier is None:
            errors.append(LayerError(
                f"{doc.kind} {doc.name!r} has 'extend: true' but no earlier layer defines it",
                location=doc.loc,
                hint=f"remove 'extend: true' to define a new {doc.kind}, or check the name",
            ))
        elif not doc.extend and earlier is not None:
            errors.append(DuplicateDefinition(
                f"{doc.kind} {doc.name!r} is already defined at {earlier.loc}",
                location=doc.loc,
                hint="add 'extend: true' to change the earlier definition, or give this one another name",
                details={"first": str(earlier.loc), "second": str(doc.loc)},
            ))
        elif earlier is None:
            data = located_copy(doc.data)
            data.pop("extend", None)
            merged[key] = MergedDoc(doc.kind, doc.name, data, doc.loc, doc.layer, [doc.loc])
        else:
            spec = kinds.get(doc.kind)
            rules = spec.list_merge if spec else {}
            _merge_into(earlier.data, doc.data, rules, (), errors)
            earlier.contributions.append(doc.loc)
    return merged


def _merge_into(target: YMap, patch: YMap, rules: Any, path: tuple[str, ...], errors: list[ConfigError]) -> None:
    for key, value in patch.items():
        if key == "extend" and not path:
            continue
        here = (*path, str(key))
        old = target.get(key)
        if isinstance(old, YMap) and isinstance(value, YMap):
            _merge_into(old, value, rules, here, errors)
            continue
        if isinstance(old, YList) and (isinstance(value, YList) or is_list_edit(value)):
            rule = _rule_for(rules, here)
            if _is_edit(rule) and is_list_edit(value):
                edit_list(old, value, rule[1], ".".join(here), errors.append)
                continue
            if isinstance(value, YList) and rule not in ("replace",) and not _is_edit(rule):
                _merge_list(old, value, rule, errors)
                continue
        target.set_located(key, located_copy(value), patch.key_locs[key], patch.val_locs[key])
        if isinstance(old, YList) and isinstance(value, YList):  # replaced whole: remember both places
            target[key].history = [*old.written_at(), patch.val_locs[key]]


def _is_edit(rule: ListMerge) -> bool:
    return isinstance(rule, tuple) and rule[0] == "edit"


def _rule_for(rules: Any, path: tuple[str, ...]) -> ListMerge:
    dotted = ".".join(path)
    for pattern, rule in rules.items():
        parts = pattern.split(".")
        if len(parts) == len(path) and all(p in ("*", q) for p, q in zip(parts, path, strict=True)):
            return rule
    return rules.get(dotted, "replace")


def _merge_list(target: YList, patch: YList, rule: ListMerge, errors: list[ConfigError]) -> None:
    if rule == "append":
        target.extend(located_copy(patch))
        target.item_locs.extend(patch.item_locs)
        return
    if isinstance(rule, str):
        raise ValueError(f"unknown list merge rule {rule!r}")  # a KindSpec bug, not a user error
    key = rule[1]  # ("keyed", identity)
    for item, loc in zip(patch, patch.item_locs, strict=False):
        ident = item.get(key) if isinstance(item, dict) else None
        pos = next((i for i, t in enumerate(target) if isinstance(t, dict) and t.get(key) == ident), None)
        if pos is not None and isinstance(item, YMap):
            _merge_into(target[pos], item, {}, (), errors)
            continue
        index = len(target)
        after = item.get("after") if isinstance(item, dict) else None
        if after is not None:
            found = next((i for i, t in enumerate(target) if isinstance(t, dict) and t.get(key) == after), None)
            if found is None:
                errors.append(LayerError(f"'after: {after}' names no earlier item",
                                         location=loc, hint=f"use the {key} of an existing item"))
                continue
            index = found + 1
        target.insert(index, located_copy(item))
        target.item_locs.insert(index, loc)
