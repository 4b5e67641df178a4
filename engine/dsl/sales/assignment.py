"""The ``assignment:`` kind: who gets a record (docs/assignment.md).

An assignment names its entity, when it runs (``on: [create, return, reassign]``), on create which
creators it applies to (``created_by: [system, admin]``) and ordered ``rules``: the first whose ``when``
holds *and* whose target has someone to take the record decides.  A target is a user, a team (its
active members by ``round_robin`` or ``least_loaded``, optionally weighted), a territory
(``field_map``: a field's value chooses a target) or a pool (the record goes there unclaimed).
Users and teams live in the database, so their names are checked when a rule runs (an unknown or
empty one falls through to the next rule); entities, fields, roles and pools are checked here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from engine.dsl.expressions import CompiledExpression
from engine.dsl.kinds import KindSpec
from engine.dsl.model import Entity, Label, Workspace, frozen_map
from engine.dsl.sales import common
from engine.dsl.yamlsrc import locate
from engine.errors import SchemaViolation, SourceLocation

if TYPE_CHECKING:
    from engine.dsl.compile_context import CompileContext
    from engine.dsl.loader import MergedDoc

TRIGGERS = ("create", "return", "reassign")
#: ``created_by`` entry standing for the engine itself (imports, web forms, workers)
SYSTEM = "system"
TargetKind = Literal["user", "team", "pool", "field_map"]
_KINDS: tuple[TargetKind, ...] = ("user", "team", "pool", "field_map")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a rule sends a record."""

    kind: TargetKind
    #: the username, team or pool name; for a field_map the field
    name: str
    strategy: str = "round_robin"
    weights: Mapping[str, int] = field(default_factory=frozen_map)
    #: least_loaded: which owned records count as load (None: all live ones)
    open: CompiledExpression | None = None
    map: Mapping[str, Target] = field(default_factory=frozen_map)
    default: Target | None = None

    def describe(self) -> str:
        """``team senior_sales (round robin)``, ``pool east_pool``, ``region territory``."""
        if self.kind == "team":
            return f"team {self.name} ({self.strategy.replace('_', ' ')})"
        if self.kind == "field_map":
            return f"{self.name} territory"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class AssignmentRule:
    index: int
    key: str | None
    when: CompiledExpression | None
    to: Target
    location: SourceLocation

    def describe(self) -> str:
        return self.key or f"rule {self.index + 1}"


@dataclass(frozen=True, slots=True)
class Assignment:
    """A compiled ``assignment:`` document."""

    name: str
    entity: str
    on: frozenset[str]
    #: role names (and ``system``) whose creations are assigned; None: every creator's
    created_by: tuple[str, ...] | None
    rules: tuple[AssignmentRule, ...]
    location: SourceLocation
    label: Label = field(default_factory=frozen_map)

    def creator_allowed(self, roles: Sequence[str], *, system: bool) -> bool:
        """Whether a record created by an actor with ``roles`` (``system``: the engine) is assigned."""
        if self.created_by is None:
            return True
        return (system and SYSTEM in self.created_by) or any(r in self.created_by for r in roles)


def assignments_of(workspace: Workspace, entity: str | None = None, trigger: str | None = None) -> list[Assignment]:
    """The workspace's compiled assignments (of ``entity``, running on ``trigger``), in name order."""
    out = [o.compiled for o in workspace.objects_of("assignment").values() if isinstance(o.compiled, Assignment)]
    return sorted((a for a in out if (entity is None or a.entity == entity) and (trigger is None or trigger in a.on)),
                  key=lambda a: a.name)


def compile_assignments(docs: Sequence[MergedDoc], ctx: CompileContext) -> dict[str, Assignment]:
    """Every ``assignment:`` document, checked against its entity, the roles and the pools."""
    ws = common.partial_workspace(ctx)
    out: dict[str, Assignment] = {}
    for doc in docs:
        if not common.require_keys(ctx, doc, ("entity", "rules")):
            continue
        entity = common.entity_of(ctx, doc)
        if entity is None:
            continue
        built = _Compiler(ctx, ws, doc, entity).build()
        if built is not None:
            out[doc.name] = built
    return out


class _Compiler:
    def __init__(self, ctx: CompileContext, ws: Workspace, doc: MergedDoc, entity: Entity) -> None:
        self.ctx, self.ws, self.doc, self.entity, self.data = ctx, ws, doc, entity, doc.data
        self.ok = True

    def fail(self, message: str, path: tuple[Any, ...], hint: str) -> None:
        self.ok = False
        self.ctx.report(SchemaViolation(f"assignment {self.doc.name!r}: {message}", location=locate(self.data, path),
                                        hint=hint))

    def build(self) -> Assignment | None:
        created_by = self._created_by()
        rules = tuple(r for i, raw in enumerate(self.data.get("rules") or ()) if (r := self._rule(i, raw)))
        if not self.ok:
            return None
        return Assignment(self.doc.name, self.entity.name, frozenset(self.data.get("on") or ("create",)),
                          created_by, rules, self.doc.loc, common.label(self.data.get("label"), self.doc.name))

    def _created_by(self) -> tuple[str, ...] | None:
        names = self.data.get("created_by")
        if names is None:
            return None
        for i, name in enumerate(names):
            if name != SYSTEM and name not in self.ctx.roles:
                self.ok = False
                common.unknown(self.ctx, f"assignment {self.doc.name!r}: created_by names no role {name!r}",
                               locate(self.data, ("created_by", i)), name, [SYSTEM, *self.ctx.roles])
        return tuple(str(n) for n in names)

    def _rule(self, i: int, raw: Any) -> AssignmentRule | None:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("to"), Mapping):
            self.fail(f"rule {i + 1} needs 'to:'", ("rules", i), "write {to: {team: sales, strategy: round_robin}}")
            return None
        when = None
        if raw.get("when") is not None:
            when = common.expression(self.ctx, self.ws, self.entity, raw["when"],
                                     locate(self.data, ("rules", i, "when")))
            if when is None:
                self.ok = False
                return None
        target = self._target(raw["to"], ("rules", i, "to"), nested=False)
        if target is None:
            return None
        return AssignmentRule(i, raw.get("key"), when, target, locate(self.data, ("rules", i)) or self.doc.loc)

    def _target(self, raw: Mapping[str, Any], path: tuple[Any, ...], *, nested: bool) -> Target | None:
        kinds = [k for k in _KINDS if k in raw]
        if len(kinds) != 1:
            self.fail(f"a target names exactly one of user, team, pool, field_map (this one: "
                      f"{', '.join(kinds) or 'none'})", path, "write e.g. {team: senior_sales} or {pool: east_pool}")
            return None
        kind = kinds[0]
        extra = [k for k in ("strategy", "weights", "open") if k in raw and kind != "team"]
        if extra:
            self.fail(f"{', '.join(extra)} only go with a team", (*path, extra[0]), f"remove {extra[0]}:")
            return None
        if kind == "team":
            return self._team(raw, path)
        if kind == "pool":
            return self._pool(str(raw["pool"]), (*path, "pool"))
        if kind == "field_map":
            if nested:
                self.fail("a territory cannot contain another territory", (*path, "field_map"),
                          "map each value to a user, a team or a pool")
                return None
            return self._field_map(raw["field_map"], (*path, "field_map"))
        return Target("user", str(raw["user"]))

    def _team(self, raw: Mapping[str, Any], path: tuple[Any, ...]) -> Target | None:
        strategy = str(raw.get("strategy") or "round_robin")
        if strategy != "least_loaded" and ("weights" in raw or "open" in raw):
            key = "weights" if "weights" in raw else "open"
            self.fail(f"{key} only go with strategy: least_loaded", (*path, key), "add strategy: least_loaded")
            return None
        open_ = None
        if raw.get("open") is not None:
            open_ = common.expression(self.ctx, self.ws, self.entity, raw["open"], locate(self.data, (*path, "open")))
            if open_ is None:
                self.ok = False
                return None
        weights = frozen_map({str(k): int(v) for k, v in (raw.get("weights") or {}).items()})
        return Target("team", str(raw["team"]), strategy, weights, open_)

    def _pool(self, name: str, path: tuple[Any, ...]) -> Target | None:
        pools = self.ctx.objects.get("pool")
        if pools is not None and name not in pools:
            self.ok = False
            common.unknown(self.ctx, f"assignment {self.doc.name!r}: there is no pool {name!r}",
                           locate(self.data, path), name, pools)
            return None
        if self.ctx.extensions.kinds.get("pool") is None:
            self.fail(f"pool {name!r}: pools are not available (no pool kind is registered)", path,
                      "assign to a user or a team instead")
            return None
        return Target("pool", name)

    def _field_map(self, raw: Mapping[str, Any], path: tuple[Any, ...]) -> Target | None:
        name = str(raw.get("field"))
        f = self.entity.fields.get(name)
        if f is None:
            self.ok = False
            common.unknown(self.ctx, f"assignment {self.doc.name!r}: field_map field {name!r} is not a field of "
                           f"{self.entity.name}", locate(self.data, (*path, "field")), name, self.entity.fields)
            return None
        mapping: dict[str, Target] = {}
        for value, sub in (raw.get("map") or {}).items():
            if f.options and str(value) not in f.option_keys:
                self.ok = False
                common.unknown(self.ctx, f"assignment {self.doc.name!r}: {self.entity.name}.{name} has no option "
                               f"{value!r}", locate(self.data, (*path, "map", value), key=True), str(value),
                               f.option_keys)
                continue
            target = self._target(sub, (*path, "map", value), nested=True)
            if target is not None:
                mapping[str(value)] = target
        default = None
        if isinstance(raw.get("default"), Mapping):
            default = self._target(raw["default"], (*path, "default"), nested=True)
        return Target("field_map", name, map=frozen_map(mapping), default=default)


KIND: KindSpec | None = KindSpec(
    "assignment", "assignment.json", "who gets a record: a user, a team's next member, a territory or a pool",
    list_merge=frozen_map({"rules": ("edit", "key")}), compile=compile_assignments, order=70)
