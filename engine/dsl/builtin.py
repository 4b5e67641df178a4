"""The built-in kinds: the manifests, ``entity``, ``role``, the sales process's (:mod:`engine.dsl.sales`) and
``approval`` (:mod:`engine.dsl.approvals`).

They are ordinary :class:`~engine.dsl.kinds.KindSpec` values with compile
functions, registered through the plugin manager's default plugin exactly
like a plugin's kinds (:mod:`engine.plugins.builtin`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.dsl.approvals import approval_kinds
from engine.dsl.compile_context import CompileContext
from engine.dsl.compile_entity import EntityCompiler, label_of
from engine.dsl.kinds import KindSpec
from engine.dsl.model import Entity, EntityPermission, Role, frozen_map
from engine.dsl.sales import sales_kinds
from engine.dsl.yamlsrc import locate
from engine.errors import ConfigError, UnknownReference

if TYPE_CHECKING:
    from engine.dsl.loader import MergedDoc


def compile_entities(docs: Sequence[MergedDoc], ctx: CompileContext) -> dict[str, Entity]:
    """Every ``entity:`` document and the child entities of its ``lines`` fields."""
    live = [d for d in docs if not d.data.get("remove")]
    names = {d.name for d in live}
    out: dict[str, Entity] = {}
    for doc in live:
        compiler = EntityCompiler(doc.name, doc.data, doc.loc, names, ctx.report, core=doc.layer == "base",
                                  field_types=ctx.extensions.field_types,
                                  layer_files=[loc.file for loc in doc.contributions])
        for entity in compiler.compile():
            out[entity.name] = entity
    return out


def compile_roles(docs: Sequence[MergedDoc], ctx: CompileContext) -> dict[str, Role]:
    """Every ``role:`` document, checked against the entities compiled before."""
    return {doc.name: _role(doc, ctx.entities, ctx.report) for doc in docs}


def _role(doc: MergedDoc, entities: Mapping[str, Entity], report: Callable[[ConfigError], None]) -> Role:
    data = doc.data
    admin = bool(data.get("admin"))
    perms: dict[str, EntityPermission] = {}
    raw = data.get("permissions") or {}
    default = raw.get("*")
    for name in raw:
        if name != "*" and name not in entities:
            unknown(report, f"role {doc.name!r} gives permissions on unknown entity {name!r}",
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
            unknown(report, f"role {doc.name!r}: unknown entity {ent!r} in {dotted!r}", loc, ent, entities)
        elif fld not in entities[ent].fields:
            unknown(report, f"role {doc.name!r}: entity {ent!r} has no field {fld!r}", loc, fld, entities[ent].fields)
        else:
            rules[(ent, fld)] = rule
    return Role(doc.name, doc.loc, label_of(data.get("label"), doc.name), admin,
                frozen_map(perms), frozen_map(rules), str(data.get("transfer", "all")))


def unknown(report: Callable[[ConfigError], None], message: str, loc: Any, name: str,
            choices: Mapping[str, Any]) -> None:
    """Report an UnknownReference to ``name``, with the closest of ``choices`` as a hint."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    report(UnknownReference(message, location=loc, hint=f"did you mean {close[0]!r}?" if close else None))


def builtin_kinds() -> list[KindSpec]:
    """The manifest kinds, ``entity`` and ``role``."""
    return [
        KindSpec("workspace", "workspace.json", "one customer's setup (workspace.yaml)", manifest=True, order=0),
        KindSpec("industry", "industry.json", "an industry template (industry.yaml)", manifest=True, order=0),
        KindSpec("entity", "entity.json", "a table of records with typed fields",
                 list_merge=MappingProxyType({"checks": "append", "indexes": ("keyed", "name"),
                                             "fields.*.options": ("edit", "key"),
                                             "fields.*.fields.*.options": ("edit", "key")}),
                 compile=compile_entities, order=10, target="entities",
                 field_type_enums=("/$defs/field/properties/type",)),
        KindSpec("role", "role.json", "what a role may do with entities and fields", compile=compile_roles,
                 order=20, target="roles"),
        *sales_kinds(),
        *approval_kinds(),
    ]
