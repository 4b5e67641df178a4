"""The registry of document kinds.

A document's first key names its kind and its name (``entity: lead``).
Every kind -- ``entity`` and ``role`` included -- is a :class:`KindSpec`: a
JSON Schema, list-merge rules for layering, and a ``compile`` function that
turns the kind's merged documents into typed objects.  The built-in kinds
live in :mod:`engine.dsl.builtin`; plugins add theirs through the
``crm_config_kinds`` hook (:mod:`engine.plugins`).  Manifest kinds
(``workspace``, ``industry``) describe a layer folder rather than an object
of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from engine.dsl.compile_context import CompileContext
    from engine.dsl.loader import MergedDoc
    from engine.dsl.model import Field

#: How lists are merged by ``extend: true``: "replace" (default), "append",
#: ("keyed", identity_key) to merge items by identity with ``after:`` placement, or
#: ("edit", identity_key): a list replaces, a mapping ``{add, after|before, remove, update}``
#: edits the earlier list by key (:mod:`engine.dsl.listedit`).
ListMerge = str | tuple[str, str]

#: ``compile(docs, ctx) -> {name: object}``: the kind's documents (merged, schema-checked), in file
#: order, and what was compiled before it; problems go to ``ctx.report`` (located), never raised.
KindCompiler = Callable[[Sequence["MergedDoc"], "CompileContext"], Mapping[str, Any]]
#: ``entity_fields(objects, ctx) -> {entity: [Field, ...]}``: fields the kind's objects add to entities
#: (a pool's ``claimed_at``...), so the planner creates their columns like any other field.
FieldContributor = Callable[[Mapping[str, Any], "CompileContext"], Mapping[str, Sequence["Field"]]]
#: ``entity_field_changes(objects, ctx) -> {entity: [Field, ...]}``: new versions of fields the entities already
#: have, each replacing the field of the same name (a pipeline's stage field takes its options from the stages).
#: The planner then sees the changed field like any edit of the entity's YAML.
FieldChanger = Callable[[Mapping[str, Any], "CompileContext"], Mapping[str, Sequence["Field"]]]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What the engine knows about one kind of document."""

    name: str
    #: a file name in engine/dsl/schemas/, or the schema itself (plugins)
    schema: str | Mapping[str, Any]
    description: str = ""
    #: dotted path inside the document (``*`` = any key) -> list merge rule
    list_merge: Mapping[str, ListMerge] = field(default_factory=lambda: MappingProxyType({}))
    #: manifest documents (workspace.yaml, industry.yaml) describe a layer
    manifest: bool = False
    #: builds the typed objects of the kind (None: each document is kept as plain data)
    compile: KindCompiler | None = None
    #: compile order: entities first, then the kinds that refer to them (a kind sees every kind before it)
    order: int = 100
    #: where the compiled objects go on the Workspace: ``entities``, ``roles`` or ``objects`` (by kind)
    target: Literal["entities", "roles", "objects"] = "objects"
    #: fields this kind's objects add to entities (see :data:`FieldContributor`)
    entity_fields: FieldContributor | None = None
    #: fields of entities this kind's objects change (see :data:`FieldChanger`); run after every kind's
    #: ``entity_fields``, so a change may target an added field too
    entity_field_changes: FieldChanger | None = None
    #: JSON pointers in ``schema`` to a field-type enum that plugin field types extend
    field_type_enums: tuple[str, ...] = ()


class KindRegistry:
    """An immutable set of kinds; ``with_kind`` returns a new registry."""

    def __init__(self, kinds: Iterable[KindSpec]) -> None:
        self._kinds: Mapping[str, KindSpec] = MappingProxyType({k.name: k for k in kinds})

    def get(self, name: str) -> KindSpec | None:
        return self._kinds.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def names(self, *, manifests: bool = False) -> list[str]:
        """Known kind names (object kinds only unless ``manifests``)."""
        return [k for k, spec in self._kinds.items() if manifests or not spec.manifest]

    def specs(self) -> list[KindSpec]:
        return sorted(self._kinds.values(), key=lambda s: (s.order, s.name))

    def with_kind(self, spec: KindSpec) -> KindRegistry:
        return KindRegistry([*self._kinds.values(), spec])
