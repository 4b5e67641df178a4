"""What the database holds, as the planner sees it, and its JSON snapshot.

A :class:`DbState` lists the entity tables a revision left behind: each live
entity with its fields *and* its retired fields (columns kept, hidden), plus
retired entities (tables kept).  It is richer than a compiled
:class:`~engine.dsl.model.Workspace`: a field the planner retired because it
vanished from the configuration is in the state even when the compiler did not
list it in ``Entity.retired``.

Every revision stores the state it produced as a versioned JSON *schema
snapshot* in its bundle (``bundle["schema"]``).  Planning the next change
starts from that snapshot, never from recompiling old YAML, so an old revision
stays plannable when the compiler or the configuration language changes.
Only schema-relevant properties are kept (types, storage, lengths, option
keys, references, index flags, declared indexes, and the former names of renamed
fields, an optional key that older snapshots simply lack).  ``fingerprints`` (optional too)
hold one hash per configuration object a plan step watches (``scoring/lead_quality``), so the
next plan knows without scanning a table whether, say, scoring rules changed.

Snapshot versions: ``snapshot_format`` 1 is current; :func:`state_from_snapshot`
upgrades older formats through :data:`SNAPSHOT_MIGRATIONS` (one function per
version) before reading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.dsl.model import Entity, Field, IndexSpec, Option, ParentLink, Workspace, frozen_map
from engine.errors import PlanError, SourceLocation

SNAPSHOT_FORMAT = 1
SNAPSHOT_LOCATION = SourceLocation("<schema snapshot>", 1, 1)

#: format N -> function upgrading a format-N snapshot to format N+1.
SNAPSHOT_MIGRATIONS: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = frozen_map()


@dataclass(frozen=True, slots=True)
class DbState:
    """Entity tables in the database: live entities (with retired fields) and retired entities."""

    entities: Mapping[str, Entity] = field(default_factory=frozen_map)
    retired_entities: Mapping[str, Entity] = field(default_factory=frozen_map)
    #: plan-step key (``scoring/lead_quality``) -> hash of what decides that step's data (see
    #: :mod:`engine.runtime.schema.features`)
    fingerprints: Mapping[str, str] = field(default_factory=frozen_map)

    def as_workspace(self, name: str = "state") -> Workspace:
        """A minimal Workspace of the live entities, enough for ``storage.build_schema``."""
        return Workspace(name=name, entities=self.entities)


def state_of(workspace: Workspace) -> DbState:
    """The state a database has right after ``workspace`` was applied to an empty one."""
    return DbState(entities=frozen_map(workspace.entities))


# --------------------------------------------------------------------------- to JSON

_FIELD_KEYS = ("type", "storage", "max_length", "scale", "reference", "on_delete", "index", "unique",
               "lines_entity")


def field_to_dict(f: Field) -> dict[str, Any]:
    """The schema-relevant properties of a field, JSON-ready."""
    out: dict[str, Any] = {k: getattr(f, k) for k in _FIELD_KEYS}
    out["column"] = f.column_name
    if f.encrypted:  # only when set: snapshots of workspaces without encrypted fields stay as they were
        out["encrypted"] = True
    if f.options:
        out["options"] = list(f.option_keys)
    if f.former_names:
        out["former"] = list(f.former_names)
    if f.search:  # only when set: snapshots of fields search does not read stay as they were
        out["search"] = True
    return out


def entity_to_dict(e: Entity) -> dict[str, Any]:
    return {
        "fields": {n: field_to_dict(f) for n, f in e.fields.items()},
        "retired": {n: field_to_dict(f) for n, f in e.retired.items()},
        "indexes": [{"name": i.name, "fields": list(i.fields), "unique": i.unique} for i in e.indexes],
        "default_sort": list(e.default_sort),
        "parent": {"entity": e.parent.entity, "field": e.parent.field} if e.parent else None,
    }


def snapshot(state: DbState) -> dict[str, Any]:
    """The versioned JSON snapshot of ``state`` (stored in a revision's bundle)."""
    out: dict[str, Any] = {
        "snapshot_format": SNAPSHOT_FORMAT,
        "entities": {n: entity_to_dict(e) for n, e in state.entities.items()},
        "retired_entities": {n: entity_to_dict(e) for n, e in state.retired_entities.items()},
    }
    if state.fingerprints:
        out["fingerprints"] = dict(sorted(state.fingerprints.items()))
    return out


# --------------------------------------------------------------------------- from JSON


def field_from_dict(name: str, d: Mapping[str, Any]) -> Field:
    """A Field rebuilt from :func:`field_to_dict` output (labels etc. are not kept)."""
    kwargs = {k: d[k] for k in (*_FIELD_KEYS, "encrypted") if k in d}
    opts = tuple(Option(key=k) for k in d.get("options", ()))
    return Field(name=name, location=SNAPSHOT_LOCATION, options=opts, former_names=tuple(d.get("former", ())),
                 search=bool(d.get("search")), **kwargs)


def renames_of(state: DbState) -> dict[str, dict[str, str]]:
    """entity -> {former field name: current name} for every renamed live field (history reads use it)."""
    out: dict[str, dict[str, str]] = {}
    for ename, entity in state.entities.items():
        for f in entity.fields.values():
            for former in f.former_names:
                out.setdefault(ename, {})[former] = f.name
    return out


def entity_from_dict(name: str, d: Mapping[str, Any]) -> Entity:
    parent = d.get("parent")
    return Entity(
        name=name,
        location=SNAPSHOT_LOCATION,
        fields=frozen_map({n: field_from_dict(n, f) for n, f in d.get("fields", {}).items()}),
        retired=frozen_map({n: field_from_dict(n, f) for n, f in d.get("retired", {}).items()}),
        indexes=tuple(IndexSpec(i["name"], tuple(i["fields"]), bool(i.get("unique"))) for i in d.get("indexes", ())),
        default_sort=tuple(d.get("default_sort", ("-created_at",))),
        parent=ParentLink(parent["entity"], parent["field"]) if parent else None,
    )


def upgrade_snapshot(snap: Mapping[str, Any]) -> dict[str, Any]:
    """``snap`` migrated to :data:`SNAPSHOT_FORMAT`; PlanError if it is from a newer engine."""
    data = dict(snap)
    version = data.get("snapshot_format")
    if not isinstance(version, int) or version > SNAPSHOT_FORMAT:
        raise PlanError(
            f"schema snapshot format {version!r} is not understood by this engine (knows 1..{SNAPSHOT_FORMAT})",
            code="snapshot_format",
            hint="upgrade the engine to the version that applied the active revision",
        )
    while data["snapshot_format"] < SNAPSHOT_FORMAT:
        data = SNAPSHOT_MIGRATIONS[data["snapshot_format"]](data)
    return data


def state_from_snapshot(snap: Mapping[str, Any]) -> DbState:
    """The DbState a snapshot describes (upgraded first if it is an older format)."""
    data = upgrade_snapshot(snap)
    return DbState(
        entities=frozen_map({n: entity_from_dict(n, e) for n, e in data.get("entities", {}).items()}),
        retired_entities=frozen_map(
            {n: entity_from_dict(n, e) for n, e in data.get("retired_entities", {}).items()}
        ),
        fingerprints=frozen_map({str(k): str(v) for k, v in (data.get("fingerprints") or {}).items()}),
    )
