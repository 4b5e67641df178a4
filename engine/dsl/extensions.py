"""What the configuration language can be extended with, as one immutable value.

:class:`Extensions` holds the kinds, expression functions and field types a
compile uses, and the names of the plugins they came from.  The language
itself (this package) never discovers plugins: :mod:`engine.plugins` builds
an ``Extensions`` from the enabled plugins and passes it in.  Without one,
the compiler uses :func:`default_extensions` -- the built-ins only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from engine.dsl.expressions.functions import FunctionDef, FunctionRegistry, builtin_functions
from engine.dsl.kinds import KindRegistry, KindSpec
from engine.dsl.model import FIELD_TYPES, STRING_TYPES, frozen_map


@dataclass(frozen=True, slots=True)
class FieldTypeDef:
    """A field type a plugin adds: stored, filtered and typed in expressions as ``base`` (a built-in
    type), with ``check`` run on every value written.

    ``check(value) -> value`` receives the value after the base type's own
    coercion and returns it, possibly normalised (upper-cased, reformatted),
    or raises ``ValueError("message shown next to the field")``.
    ``max_length`` is the default length of a text-based type.
    """

    name: str
    base: str
    check: Callable[[Any], Any] | None = None
    description: str = ""
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.base not in FIELD_TYPES or self.base in ("lines", "json", "reference", "user", "auto_number"):
            raise ValueError(f"field type {self.name!r}: base {self.base!r} must be a plain built-in type")
        if self.max_length is not None and self.base not in STRING_TYPES:
            raise ValueError(f"field type {self.name!r}: max_length applies to text types only")


@dataclass(frozen=True, slots=True)
class Extensions:
    """Kinds, functions and field types for one compile, and the plugins that gave them."""

    kinds: KindRegistry
    functions: FunctionRegistry
    field_types: Mapping[str, FieldTypeDef] = field(default_factory=frozen_map)
    #: names of the enabled plugins (the built-in one excluded)
    plugins: tuple[str, ...] = ()
    #: names of every installed plugin, enabled or not (what an unknown name is compared with)
    installed: tuple[str, ...] = ()
    #: names of the attachment stores the enabled plugins offer (empty: not known, not checked)
    file_stores: tuple[str, ...] = ()


def make_extensions(kinds: Iterable[KindSpec], functions: Iterable[FunctionDef] = (),
                    field_types: Iterable[FieldTypeDef] = (), plugins: Iterable[str] = (),
                    installed: Iterable[str] = (), file_stores: Iterable[str] = ()) -> Extensions:
    """An Extensions value; ValueError when two plugins define the same kind, function or field type.

    ``functions`` make the (frozen) function registry, the built-ins among
    them; plugin field types are added to every kind's field-type enums
    (:attr:`KindSpec.field_type_enums`).
    """
    types = _unique({}, field_types, "field type")
    clash = sorted(set(types) & set(FIELD_TYPES))
    if clash:
        raise ValueError(f"field type {clash[0]!r} is built in; a plugin cannot redefine it")
    specs = _unique({}, kinds, "kind")
    registry = FunctionRegistry()
    for fn in functions:
        if fn.name in registry:
            raise ValueError(f"expression function {fn.name!r} is defined twice")
        registry.register(fn)
    registry = FunctionRegistry({f.name: f for f in registry}, frozen=True)
    if types:
        specs = {name: _with_field_types(spec, tuple(types)) for name, spec in specs.items()}
    return Extensions(KindRegistry(specs.values()), registry, frozen_map(types), tuple(plugins),
                      tuple(sorted(set(installed) | set(plugins))), tuple(file_stores))


def _unique(out: dict[str, Any], items: Iterable[Any], what: str) -> dict[str, Any]:
    for item in items:
        if item.name in out:
            raise ValueError(f"{what} {item.name!r} is defined twice")
        out[item.name] = item
    return out


def _with_field_types(spec: KindSpec, names: tuple[str, ...]) -> KindSpec:
    """``spec`` whose field-type enums also allow ``names`` (the schema is copied, never changed)."""
    if not spec.field_type_enums:
        return spec
    from dataclasses import replace

    from engine.dsl.schemacheck import load_schema

    schema = copy.deepcopy(dict(load_schema(spec.schema) if isinstance(spec.schema, str) else spec.schema))
    for pointer in spec.field_type_enums:
        node: Any = schema
        for part in (p for p in pointer.split("/") if p):
            node = node[part]
        node["enum"] = [*node["enum"], *(n for n in names if n not in node["enum"])]
    return replace(spec, schema=schema)


@cache
def default_extensions() -> Extensions:
    """The built-in kinds and functions, no plugin (built once)."""
    from engine.dsl.builtin import builtin_kinds

    return make_extensions(builtin_kinds(), builtin_functions())
