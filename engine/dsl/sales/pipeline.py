"""The ``pipeline:`` kind: the stages a record moves through, their gates and playbooks.

A pipeline owns one picklist field of its entity (``field:``, default
``stage``): the compiled field's options are the pipeline's stages, in
order, and a stage taken away with ``{key: x, remove: true, move_to: y}``
becomes the field's ``replace: {x: y}`` -- so adding a stage ``after:`` an
earlier one in an ``extend: true`` layer is a YAML change the planner
applies safely, and removing a stage rows still hold is the planner's
blocked option removal until ``move_to:`` says where they go.

What the runtime enforces (``engine.runtime.sales.pipelines``) is decided
here once per revision: gates are type-checked against the entity, task
owners too, transitions name real stages and roles.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from engine.dsl.compile_entity import label_of
from engine.dsl.expressions import CompiledExpression, compile_expression
from engine.dsl.kinds import KindSpec
from engine.dsl.model import NUMERIC_TYPES, Entity, Field, Label, Option, Workspace, frozen_map
from engine.dsl.yamlsrc import YMap, locate
from engine.errors import ConfigError, ExpressionError, SchemaViolation, SourceLocation, UnknownReference

if TYPE_CHECKING:
    from engine.dsl.compile_context import CompileContext
    from engine.dsl.loader import MergedDoc

Outcome = Literal["won", "lost"]
#: the entity that holds the tasks stages create on entry
TASK_ENTITY = "task"
#: the field the pipeline adds to the task entity: the stage a task was created for
TASK_STAGE_FIELD = "pipeline_stage"
#: task statuses that count as finished for ``requires_tasks_done``
TASK_CLOSED = ("done", "cancelled")
#: fields of the pipeline's entity that a move maintains when the entity has them
PROBABILITY_FIELD = "probability"
CLOSED_AT_FIELD = "closed_at"


@dataclass(frozen=True, slots=True)
class StageTask:
    """A task a stage creates when a record enters it."""

    subject: Label
    location: SourceLocation
    due_in_days: int | None = None
    #: gives the user who gets the task; None: the record's owner
    owner: CompiledExpression | None = None
    priority: str | None = None


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage: what a record needs to enter it, what entering it sets, what it asks of the user."""

    key: str
    label: Label
    location: SourceLocation
    probability: float | None = None
    outcome: Outcome | None = None
    requires: tuple[str, ...] = ()
    gate: CompiledExpression | None = None
    message: Label = dc_field(default_factory=frozen_map)
    guidance: Label = dc_field(default_factory=frozen_map)
    tasks: tuple[StageTask, ...] = ()
    requires_tasks_done: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    """An allowed move: ``sources`` / ``targets`` None mean any stage; ``roles`` empty: anyone."""

    sources: frozenset[str] | None
    targets: frozenset[str] | None
    roles: tuple[str, ...] = ()

    def matches(self, source: str, target: str) -> bool:
        return (self.sources is None or source in self.sources) and (self.targets is None or target in self.targets)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A compiled ``pipeline:`` document."""

    name: str
    entity: str
    field: str
    location: SourceLocation
    label: Label
    stages: tuple[Stage, ...]
    #: "sequential", "any", or the explicit moves
    transitions: str | tuple[Transition, ...]
    #: the entity's stage field as the pipeline makes it (options from the stages, replace from move_to)
    stage_field: Field
    #: removed stage -> the stage its records move to
    moved: Mapping[str, str] = dc_field(default_factory=frozen_map)
    #: entity fields a move maintains: probability (from the stage), closed_at (outcome stages)
    probability_field: str | None = None
    closed_at_field: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.stages)

    def stage(self, key: Any) -> Stage | None:
        return next((s for s in self.stages if s.key == key), None)

    def allows(self, source: str, target: str, roles: Collection[str], *, admin: bool = False) -> bool:
        """Whether a user with ``roles`` may move a record from ``source`` to ``target``.

        ``sequential``: forward one stage, or from an open stage to any outcome stage; ``any``: every move; an explicit
        list: a move it names, by a user holding one of its ``roles`` (if it gives some).  An admin may
        make any move (the gates still apply).
        """
        if admin or self.transitions == "any":
            return True
        if self.transitions == "sequential":
            return self._sequential(source, target)
        assert not isinstance(self.transitions, str)
        return any(t.matches(source, target) and (not t.roles or set(t.roles) & set(roles))
                   for t in self.transitions)

    def _sequential(self, source: str, target: str) -> bool:
        frm, to = self.stage(source), self.stage(target)
        if frm is None or frm.outcome is not None:
            return False  # a closed deal reopens through an explicit transition (or an admin)
        if to is not None and to.outcome is not None:
            return True
        ahead = [s.key for s in self.stages[self.keys.index(source) + 1:] if s.outcome is None]
        return bool(ahead) and ahead[0] == target

    def moves_from(self, source: str, roles: Collection[str], *, admin: bool = False) -> list[str]:
        """The stages a user with ``roles`` may move a record in ``source`` to, in stage order."""
        return [k for k in self.keys if k != source and self.allows(source, k, roles, admin=admin)]


# --------------------------------------------------------------------------- compiling


def compile_pipelines(docs: Sequence[MergedDoc], ctx: CompileContext) -> dict[str, Pipeline]:
    """Every ``pipeline:`` document; problems reported, located (a pipeline with errors is left out)."""
    out: dict[str, Pipeline] = {}
    owners: dict[str, str] = {}
    for doc in docs:
        errors: list[ConfigError] = []
        built = _PipelineCompiler(doc, ctx, errors.append).compile()
        for e in errors:
            ctx.report(e)
        if built is None or errors:
            continue
        if built.entity in owners:
            ctx.report(SchemaViolation(
                f"pipeline {doc.name!r}: entity {built.entity!r} already has pipeline {owners[built.entity]!r}",
                location=locate(doc.data, ("entity",)) or doc.loc,
                hint="an entity has one pipeline; add these stages to the other one with extend: true"))
            continue
        owners[built.entity] = doc.name
        out[doc.name] = built
    return out


class _PipelineCompiler:
    """Compiles one merged pipeline document, reporting every problem it finds."""

    def __init__(self, doc: MergedDoc, ctx: CompileContext, report: Any) -> None:
        self.doc, self.ctx, self.report = doc, ctx, report
        self.data: YMap = doc.data
        self.name = doc.name

    def loc(self, *path: Any, key: bool = False) -> SourceLocation:
        return locate(self.data, path, key=key) or self.doc.loc

    def compile(self) -> Pipeline | None:
        entity = self._entity()
        if entity is None:
            return None
        field_ = self._stage_field(entity)
        if field_ is None:
            return None
        raw = list(self.data.get("stages") or ())
        live = [(i, s) for i, s in enumerate(raw) if not s.get("remove")]
        keys = self._unique_keys(raw)
        moved = self._moved(raw, {s["key"] for _i, s in live})
        stage_field = self._owned_field(entity, field_, [s for _i, s in live], moved)
        scratch = dataclasses.replace(entity, fields=frozen_map({**entity.fields, field_.name: stage_field}))
        ws = self._scratch_workspace(scratch)
        stages = tuple(self._stage(i, s, scratch, ws) for i, s in live)
        self._check_options(field_, set(keys), stage_field)
        self._check_default(field_, {s.key for s in stages})
        return Pipeline(
            name=self.name, entity=entity.name, field=field_.name, location=self.doc.loc,
            label=label_of(self.data.get("label"), self.name), stages=stages,
            transitions=self._transitions({s.key for s in stages}), stage_field=stage_field,
            moved=frozen_map(moved), probability_field=self._probability_field(entity, stages),
            closed_at_field=CLOSED_AT_FIELD if _is(entity, CLOSED_AT_FIELD, ("datetime",)) else None)

    # ------------------------------------------------------------ entity and field

    def _entity(self) -> Entity | None:
        name = self.data.get("entity")
        if name is None:
            self.report(SchemaViolation(f"pipeline {self.name!r} names no entity", location=self.doc.loc,
                                        hint="add 'entity: <name>' (e.g. entity: opportunity)"))
            return None
        entity = self.ctx.entities.get(name)
        if entity is None:
            self.report(UnknownReference(f"pipeline {self.name!r}: unknown entity {name!r}",
                                         location=self.loc("entity"), hint=_close(name, self.ctx.entities)))
        return entity

    def _stage_field(self, entity: Entity) -> Field | None:
        name = self.data.get("field", "stage")
        f = entity.fields.get(name)
        if f is None:
            self.report(UnknownReference(
                f"pipeline {self.name!r}: entity {entity.name!r} has no field {name!r}",
                location=self.loc("field") if "field" in self.data else self.loc("entity"),
                hint=_close(name, entity.fields) if "field" in self.data else
                f"add a picklist field {name!r} to {entity.name}, or name the stage field with 'field:'"))
            return None
        if f.type != "picklist":
            self.report(SchemaViolation(
                f"pipeline {self.name!r}: field {entity.name}.{name} is {f.type}, not a picklist",
                location=self.loc("field") if "field" in self.data else self.loc("entity"),
                hint="the stage field must be a picklist (its options are the stages)"))
            return None
        return f

    def _owned_field(self, entity: Entity, f: Field, live: list[YMap], moved: Mapping[str, str]) -> Field:
        """The stage field with the stages as options (labels from the stage, else the entity's option)."""
        declared = {o.key: o for o in f.options}
        options = []
        for s in live:
            key = str(s["key"])
            base = declared.get(key)
            label = dict(base.label) if base is not None else {}
            if "label" in s:
                label.update(label_of(s["label"], key))
            if not label.get("en"):
                label["en"] = key.replace("_", " ").capitalize()
            options.append(Option(key, frozen_map(label), base.color if base is not None else None))
        return dataclasses.replace(f, options=tuple(options), replace=frozen_map({**f.replace, **moved}),
                                   options_owner=f"pipeline {self.name}")

    def _scratch_workspace(self, entity: Entity) -> Workspace:
        """What the gates compile against: the entities, this one with its stage field as the pipeline makes it."""
        ext = self.ctx.extensions
        return Workspace(name="compile", entities=frozen_map({**self.ctx.entities, entity.name: entity}),
                         functions=ext.functions, field_types=ext.field_types)

    def _probability_field(self, entity: Entity, stages: Sequence[Stage]) -> str | None:
        if _is(entity, PROBABILITY_FIELD, NUMERIC_TYPES):
            return PROBABILITY_FIELD
        for i, s in enumerate(self.data.get("stages") or ()):
            if "probability" in s and not s.get("remove"):
                self.report(SchemaViolation(
                    f"pipeline {self.name!r}: stage {s['key']!r} sets a probability, but {entity.name} has no "
                    f"numeric field {PROBABILITY_FIELD!r} to hold it", location=self.loc("stages", i, "probability"),
                    hint=f"add '{PROBABILITY_FIELD}: {{type: percent}}' to {entity.name}, or remove 'probability:'"))
                break
        return None

    # ------------------------------------------------------------ stages

    def _unique_keys(self, raw: list[YMap]) -> list[str]:
        seen: dict[str, int] = {}
        for i, s in enumerate(raw):
            key = str(s["key"])
            if key in seen:
                self.report(SchemaViolation(
                    f"pipeline {self.name!r}: stage {key!r} is listed twice (first at {self.loc('stages', seen[key])})",
                    location=self.loc("stages", i), hint="give each stage its own key"))
            seen.setdefault(key, i)
        return list(seen)

    def _moved(self, raw: list[YMap], live: set[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i, s in enumerate(raw):
            if "move_to" not in s:
                continue
            target = str(s["move_to"])
            if not s.get("remove"):
                self.report(SchemaViolation(
                    f"pipeline {self.name!r}: stage {s['key']!r} has move_to: but is not removed",
                    location=self.loc("stages", i, "move_to", key=True),
                    hint="move_to: says where the records of a removed stage go; add 'remove: true' or drop move_to:"))
            elif target not in live:
                self.report(UnknownReference(
                    f"pipeline {self.name!r}: stage {s['key']!r} moves its records to {target!r}, which is not a "
                    "stage of the pipeline", location=self.loc("stages", i, "move_to"),
                    hint=_close(target, sorted(live)) if _close(target, sorted(live)) != _NO_CLOSE
                    else f"use one of: {', '.join(sorted(live))}"))
            else:
                out[str(s["key"])] = target
        return out

    def _stage(self, i: int, s: YMap, entity: Entity, ws: Workspace) -> Stage:
        key = str(s["key"])
        requires = self._requires(i, s, entity)
        outcome = s.get("outcome")
        if outcome == "lost" and not any("reason" in r for r in requires):
            suggestion = next((n for n in entity.fields if "reason" in n), "lost_reason")
            self.report(SchemaViolation(
                f"pipeline {self.name!r}: stage {key!r} closes a deal as lost but requires no reason field",
                location=self.loc("stages", i, "outcome"),
                hint=f"add 'requires: [{suggestion}]' so a lost deal says why"
                     + ("" if suggestion in entity.fields
                        else f" (and a picklist field {suggestion!r} to {entity.name})")))
        return Stage(
            key=key, label=self.stage_label(entity, key), location=self.loc("stages", i),
            probability=s.get("probability"), outcome=outcome, requires=requires,
            gate=self._expr(s.get("gate"), entity, ws, "boolean", self.loc("stages", i, "gate"), allow_old=True),
            message=label_of(s["message"], "") if "message" in s else frozen_map(),
            guidance=label_of(s["guidance"], "") if "guidance" in s else frozen_map(),
            tasks=tuple(self._task(i, j, t, entity, ws) for j, t in enumerate(s.get("tasks") or ())),
            requires_tasks_done=bool(s.get("requires_tasks_done")),
        )

    def stage_label(self, entity: Entity, key: str) -> Label:
        f = entity.fields[self.data.get("field", "stage")]
        option = next(o for o in f.options if o.key == key)
        return option.label

    def _requires(self, i: int, s: YMap, entity: Entity) -> tuple[str, ...]:
        out = []
        for j, name in enumerate(s.get("requires") or ()):
            f = entity.fields.get(name)
            if f is None or not f.stored:
                self.report(UnknownReference(
                    f"pipeline {self.name!r}: stage {s['key']!r} requires {name!r}, which is not a field of "
                    f"{entity.name}" if f is None else
                    f"pipeline {self.name!r}: stage {s['key']!r} requires lines field {name!r}",
                    location=self.loc("stages", i, "requires", j),
                    hint=_close(name, entity.fields) if f is None else "use a gate: len(...) > 0 for lines"))
                continue
            out.append(name)
        return tuple(out)

    def _task(self, i: int, j: int, t: YMap, entity: Entity, ws: Workspace) -> StageTask:
        where = self.loc("stages", i, "tasks", j)
        self._check_task_entity(i, entity, t)
        return StageTask(
            subject=label_of(t["subject"], "task"), location=where, due_in_days=t.get("due_in_days"),
            owner=self._expr(t.get("owner"), entity, ws, "reference", self.loc("stages", i, "tasks", j, "owner")),
            priority=t.get("priority"))

    def _check_task_entity(self, i: int, entity: Entity, t: YMap) -> None:
        task = self.ctx.entities.get(TASK_ENTITY)
        where = self.loc("stages", i, "tasks", key=True)
        if task is None:
            self.report(UnknownReference(f"pipeline {self.name!r}: stage tasks need an entity {TASK_ENTITY!r}",
                                         location=where, hint="define it (configs/base has one), or remove 'tasks:'"))
            return
        problems = [n for n in ("subject", "status") if n not in task.fields]
        if link_field(task, entity.name) is None:
            problems.append(f"a reference to {entity.name}")
        status = task.fields.get("status")
        if status is not None and TASK_CLOSED[0] not in status.option_keys:
            problems.append(f"a status option {TASK_CLOSED[0]!r}")
        priority = task.fields.get("priority")
        if t.get("priority") is not None and (priority is None or t["priority"] not in priority.option_keys):
            problems.append(f"a priority option {t['priority']!r}")
        if problems:
            self.report(SchemaViolation(
                f"pipeline {self.name!r}: stage tasks need the {TASK_ENTITY} entity to have "
                + ", ".join(problems), location=where, hint=f"add them to entity {TASK_ENTITY!r}"))

    def _expr(self, text: str | None, entity: Entity, ws: Workspace, expected: str, where: SourceLocation,
              *, allow_old: bool = False) -> CompiledExpression | None:
        if text is None:
            return None
        try:
            return compile_expression(text, entity, ws, expected=expected, allow_old=allow_old, location=where)
        except ExpressionError as e:
            self.report(e)
            return None

    # ------------------------------------------------------------ transitions and the entity's options

    def _transitions(self, keys: set[str]) -> str | tuple[Transition, ...]:
        raw = self.data.get("transitions", "sequential")
        if isinstance(raw, str):
            return raw
        out = []
        for i, t in enumerate(raw):
            if isinstance(t, list):
                src, dst, roles = t[0], t[1], []
                paths: tuple[Any, Any] = ((i, 0), (i, 1))
            else:
                src, dst, roles = t["from"], t["to"], list(t.get("roles") or ())
                paths = ((i, "from"), (i, "to"))
            out.append(Transition(self._ends(src, paths[0], keys), self._ends(dst, paths[1], keys),
                                  self._roles(roles, i)))
        return tuple(out)

    def _ends(self, value: Any, path: tuple[Any, ...], keys: set[str]) -> frozenset[str] | None:
        if value == "*":
            return None
        names = value if isinstance(value, list) else [value]
        for j, name in enumerate(names):
            if name not in keys:
                where = self.loc("transitions", *path, *((j,) if isinstance(value, list) else ()))
                self.report(UnknownReference(
                    f"pipeline {self.name!r}: transition names unknown stage {name!r}", location=where,
                    hint=_close(name, sorted(keys)) if _close(name, sorted(keys)) != _NO_CLOSE
                    else f"the stages are: {', '.join(sorted(keys))}"))
        return frozenset(names)

    def _roles(self, roles: list[str], i: int) -> tuple[str, ...]:
        for j, role in enumerate(roles):
            if role not in self.ctx.roles:
                self.report(UnknownReference(f"pipeline {self.name!r}: transition names unknown role {role!r}",
                                             location=self.loc("transitions", i, "roles", j),
                                             hint=_close(role, self.ctx.roles)))
        return tuple(roles)

    def _check_options(self, declared: Field, stage_keys: set[str], owned: Field) -> None:
        """Options the entity declares that are no stage: the pipeline owns the field, so say so."""
        for o in declared.options:
            if o.key not in stage_keys:
                self.report(SchemaViolation(
                    f"field {declared.name!r} option {o.key!r} is not a stage of pipeline {self.name!r}, which owns "
                    f"the options of {self.data.get('entity')}.{declared.name}",
                    location=o.location or declared.location,
                    hint=f"add it to the stages of pipeline {self.name!r} (defined at {self.doc.loc}), e.g. in an "
                     f"extend: true layer {{key: {o.key}, after: <stage>}}; to take a stage away write "
                     f"{{key: {o.key}, remove: true, move_to: <stage>}} there"))

    def _check_default(self, f: Field, live: set[str]) -> None:
        if f.default is not None and f.default not in live:
            self.report(SchemaViolation(
                f"field {f.name!r}: default {f.default!r} is not a stage of pipeline {self.name!r}",
                location=f.location, hint=f"set the field's default: to one of: {', '.join(sorted(live))}"))


_NO_CLOSE = "check the name"


def _close(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else _NO_CLOSE


def _is(entity: Entity, name: str, types: Collection[str]) -> bool:
    f = entity.fields.get(name)
    return f is not None and f.type in types


def link_field(task: Entity, target: str) -> Field | None:
    """The task entity's reference field to ``target`` (how a task is linked to its record), if any."""
    return next((f for f in task.fields.values() if f.type == "reference" and f.reference == target), None)


# --------------------------------------------------------------------------- hooks of the kind


def _pipelines(objects: Mapping[str, Any]) -> list[Pipeline]:
    return [o.compiled for o in objects.values() if isinstance(getattr(o, "compiled", None), Pipeline)]


def stage_fields(objects: Mapping[str, Any], _ctx: CompileContext) -> dict[str, list[Field]]:
    """Each pipeline's stage field, replacing the entity's (options from the stages)."""
    return {p.entity: [p.stage_field] for p in _pipelines(objects)}


def task_fields(objects: Mapping[str, Any], ctx: CompileContext) -> dict[str, list[Field]]:
    """The task entity's ``pipeline_stage`` field, once any stage creates tasks (tasks know their stage)."""
    with_tasks = [p for p in _pipelines(objects) if any(s.tasks for s in p.stages)]
    if not with_tasks or TASK_ENTITY not in ctx.entities:
        return {}
    return {TASK_ENTITY: [Field(TASK_STAGE_FIELD, "string", with_tasks[0].location, max_length=100, readonly=True,
                                label=frozen_map({"en": "Pipeline stage", "zh": "所属阶段"}))]}


KIND: KindSpec | None = KindSpec(
    "pipeline", "pipeline.json", "the stages of a record, with gates, playbooks and allowed moves",
    list_merge=MappingProxyType({"stages": ("keyed", "key")}),
    compile=compile_pipelines, order=50, entity_fields=task_fields, entity_field_changes=stage_fields,
)
