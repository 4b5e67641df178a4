"""Everything the record service needs about one entity, compiled once per revision.

:func:`build_plans` turns a compiled workspace and its bound schema into one
immutable :class:`EntityPlan` per entity: the coercer of every field, literal
and expression defaults, formulas in dependency order, checks, auto-number
series, unique fields, references and lines.  Requests only *run* these;
nothing is parsed at request time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from engine.dsl.model import STANDARD_COLUMNS, Check, Entity, Field, Workspace, frozen_map
from engine.errors import ConfigError
from engine.runtime.records.coerce import Coercer, coercer_for, coercer_parts
from engine.runtime.records.rows import Getter, make_readers, storage_map
from engine.runtime.storage import Schema, currency_column

#: standard columns a caller may write (the rest are kept by the engine)
WRITABLE_STANDARD = frozenset({"owner_id"})


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled check: ``compiled`` must not be false on save, else ``message`` (locale, English)."""

    check: Check
    compiled: Any
    message: str


@dataclass(frozen=True, slots=True)
class EntityPlan:
    """The compiled write and read plan of one entity (immutable, shared by all requests)."""

    entity: Entity
    table: Table
    coercers: Mapping[str, Coercer]
    #: (field, literal default or None, compiled default expression or None), in field order
    defaults: tuple[tuple[str, Any, Any], ...]
    #: (field, compiled formula), inputs before the formulas that read them
    formulas: tuple[tuple[str, Any], ...]
    rules: tuple[Rule, ...]
    #: fields of the record dict, in output order (money currency keys included)
    out_fields: tuple[str, ...]
    #: name of the field -> name of its currency key, for money fields
    currency_keys: Mapping[str, str]
    lines: Mapping[str, str]
    references: Mapping[str, str]
    auto_numbers: tuple[Field, ...]
    uniques: tuple[Field, ...]
    readonly: frozenset[str]
    required: frozenset[str]
    readers: tuple[tuple[str, Getter], ...]
    #: a new record before values: every stored field None
    blank: Mapping[str, Any]
    #: required fields in a stable order (messages come out in that order)
    required_order: tuple[str, ...]
    #: record key -> (True if in the JSON column, column or JSON key, field or None), for writing
    storage: Mapping[str, tuple[bool, str, Field | None]]
    #: record keys in a create audit snapshot (fields, currency keys, owner), lines excluded
    snapshot_keys: tuple[str, ...] = ()
    #: field -> (coercer of a present value, whether "" is kept): :func:`coerce.coercer_parts`
    coercer_parts: Mapping[str, tuple[Coercer, bool]] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.entity.name

    @property
    def is_child(self) -> bool:
        return self.entity.parent is not None

    @property
    def has_json(self) -> bool:
        return bool(self.entity.json_fields)

    def field(self, name: str) -> Field:
        return self.entity.fields[name]

    @property
    def set_based_ok(self) -> bool:
        """True when a bulk update may skip the per-record pipeline (no rules, formulas, lines)."""
        return not (self.rules or self.formulas or self.lines)


def build_plans(workspace: Workspace, schema: Schema) -> Mapping[str, EntityPlan]:
    """One plan per entity; raises ConfigError (located) if an expression does not compile."""
    return frozen_map({name: _plan(ent, workspace, schema) for name, ent in workspace.entities.items()})


def _plan(entity: Entity, workspace: Workspace, schema: Schema) -> EntityPlan:
    stored = [f for f in entity.fields.values() if f.stored]
    currency = {f.name: currency_column(f) for f in stored if f.type == "money"}
    out: list[str] = list(STANDARD_COLUMNS)
    if entity.parent is not None:
        out += ["parent_id", "position"]
    for f in stored:
        out.append(f.name)
        if f.name in currency:
            out.append(currency[f.name])
    return EntityPlan(
        entity=entity, table=schema.tables[entity.name],
        coercers=frozen_map({f.name: coercer_for(f, workspace.field_types, phone_region=workspace.phone_region)
                             for f in stored}),
        defaults=_defaults(entity, workspace), formulas=_formulas(entity, workspace),
        rules=_rules(entity, workspace), out_fields=tuple(out), currency_keys=frozen_map(currency),
        lines=frozen_map({f.name: f.lines_entity for f in entity.fields.values() if f.type == "lines"}),
        references=frozen_map({f.name: f.reference for f in stored if f.type in ("reference", "user")}),
        auto_numbers=tuple(f for f in stored if f.type == "auto_number"),
        uniques=tuple(f for f in stored if f.unique),
        readonly=frozenset(f.name for f in stored if f.readonly or f.formula or f.type == "auto_number"),
        required=frozenset(f.name for f in entity.fields.values() if f.required and not f.formula),
        readers=make_readers(entity),
        blank=frozen_map({f.name: None for f in stored}),
        required_order=tuple(sorted(f.name for f in entity.fields.values() if f.required and not f.formula)),
        storage=frozen_map(storage_map(entity)),
        coercer_parts=frozen_map({f.name: coercer_parts(f, workspace.field_types, phone_region=workspace.phone_region)
                                  for f in stored}),
        snapshot_keys=tuple(k for k in out if k in entity.fields or k.endswith("_currency") or k == "owner_id"),
    )


def _compile(key: tuple[str, str, Any], text: str, where: Any, entity: Entity, workspace: Workspace,
             **kw: Any) -> Any:
    """The expression compiled by the workspace's compile pass, else compiled here (once per revision)."""
    from engine.runtime.records import exprs  # the expression language is only needed when used

    loc = getattr(where, "expr_location", None) or getattr(where, "expression_location", None)
    return exprs.precompiled(workspace, key) or exprs.compile_rule(text, entity, workspace, location=loc, **kw)


def _defaults(entity: Entity, workspace: Workspace) -> tuple[tuple[str, Any, Any], ...]:
    out = []
    for f in entity.fields.values():
        if f.default_expr:
            out.append((f.name, None, _compile(("default", entity.name, f.name), f.default_expr, f, entity, workspace,
                                                expected=f.type)))
        elif f.default is not None:
            out.append((f.name, f.default, None))
    return tuple(out)


def _formulas(entity: Entity, workspace: Workspace) -> tuple[tuple[str, Any], ...]:
    from engine.runtime.records import exprs

    compiled = {f.name: _compile(("formula", entity.name, f.name), f.formula, f, entity, workspace, expected=f.type)
                for f in entity.fields.values() if f.formula}
    deps = {name: exprs.fields_used(c) & compiled.keys() for name, c in compiled.items()}
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise ConfigError(f"formula of {entity.name}.{name} depends on itself",
                              location=entity.fields[name].expr_location, hint="break the cycle of formulas")
        visiting.add(name)
        for dep in sorted(deps[name]):
            visit(dep)
        visiting.discard(name)
        ordered.append(name)

    for name in compiled:
        visit(name)
    return tuple((name, compiled[name]) for name in ordered)


def _rules(entity: Entity, workspace: Workspace) -> tuple[Rule, ...]:
    out = []
    for i, check in enumerate(entity.checks):
        compiled = _compile(("check", entity.name, i), check.expression, check, entity, workspace,
                            expected="boolean", allow_old=True)
        out.append(Rule(check, compiled, rule_message(check, workspace.locale)))
    return tuple(out)


def rule_message(check: Check, locale: str) -> str:
    """The check's message in the workspace locale, followed by the English one when they differ."""
    en = check.message.get("en")
    local = check.message.get(locale) or en or f"check failed: {check.expression}"
    return f"{local} ({en})" if en and local != en else local
