"""The registry of document kinds.

A document's first key names its kind and its name (``entity: lead``).
Adding a kind is a local change: a JSON Schema in ``schemas/<kind>.json``
and one :class:`KindSpec` in :data:`DEFAULT_KINDS` (or, from a plugin,
:meth:`KindRegistry.with_kind`).  Manifest kinds (``workspace``,
``industry``) describe a layer folder rather than an object of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: How lists are merged by ``extend: true``: "replace" (default), "append",
#: or ("keyed", identity_key) to merge items by identity with ``after:`` placement.
ListMerge = str | tuple[str, str]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What the engine knows about one kind of document."""

    name: str
    #: file name in engine/dsl/schemas/
    schema: str
    description: str = ""
    #: dotted path inside the document (``*`` = any key) -> list merge rule
    list_merge: Mapping[str, ListMerge] = field(default_factory=lambda: MappingProxyType({}))
    #: manifest documents (workspace.yaml, industry.yaml) describe a layer
    manifest: bool = False
    #: builds the compiled object of a later feature's kind (None: data kept as is)
    compile: Callable[..., Any] | None = None
    #: compile order: entities first, then kinds that refer to them
    order: int = 100


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


DEFAULT_KINDS = KindRegistry(
    [
        KindSpec("workspace", "workspace.json", "one customer's setup (workspace.yaml)", manifest=True, order=0),
        KindSpec("industry", "industry.json", "an industry template (industry.yaml)", manifest=True, order=0),
        KindSpec(
            "entity",
            "entity.json",
            "a table of records with typed fields",
            list_merge=MappingProxyType({"checks": "append", "indexes": ("keyed", "name")}),
            order=10,
        ),
        KindSpec("role", "role.json", "what a role may do with entities and fields", order=20),
    ]
)
