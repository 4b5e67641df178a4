"""The ``approval:`` kind: approval flows (审批流) compiled to :class:`~engine.dsl.approvals.model.ApprovalFlow`.

A document names its entity, its ``trigger`` and either ``steps:`` (the shorthand, written out as BPMN
by :mod:`engine.dsl.approvals.shorthand`) or ``bpmn:`` + ``process:`` (a file drawn in a modeler,
relative to the YAML file, read by :mod:`engine.dsl.approvals.bpmnread`).  Everything the runtime
needs is decided here once per revision: every condition is type-checked against the entity plus the
flow variables, roles are checked, fields named by ``editable``/``set:`` exist, ``stage:`` actions name
stages of the entity's pipeline, ``start:`` names another flow, ``migrate:`` targets are steps of this
version.  A step's ``timeout`` is its own, else the flow's.  ``digest`` hashes the BPMN text and the
document (labels aside): a new digest is a new version of the flow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import hashlib
import json
import posixpath
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.dsl.approvals.bpmnread import BpmnFlow, read_bpmn
from engine.dsl.approvals.durations import parse_short
from engine.dsl.approvals.model import Action, ApprovalFlow, ApprovalStep, Assignee, Timeout, Trigger
from engine.dsl.approvals.scope import FlowScope
from engine.dsl.approvals.shorthand import ParItem, SeqItem, generate
from engine.dsl.compile_entity import label_of
from engine.dsl.expressions import CompiledExpression
from engine.dsl.kinds import KindSpec
from engine.dsl.model import Entity, frozen_map
from engine.dsl.yamlsrc import locate, plain
from engine.errors import BpmnError, ConfigError, SchemaViolation, SourceLocation, UnknownReference

if TYPE_CHECKING:
    from engine.dsl.compile_context import CompileContext
    from engine.dsl.loader import MergedDoc

#: bump when the BPMN the shorthand writes changes in a way that changes how it runs (a new digest for every flow)
SHORTHAND_VERSION = "shorthand-1"
#: the status field a flow keeps when the entity has it and the document does not say otherwise
STATUS_FIELD = "approval_status"
_VALUE_TYPES = ("money", "integer", "decimal", "percent", "boolean", "date", "datetime", "string", "text")


class _FlowCompiler:
    """Compiles one merged ``approval:`` document (problems reported, located)."""

    def __init__(self, doc: MergedDoc, ctx: CompileContext) -> None:
        self.doc = doc
        self.data = doc.data
        self.ctx = ctx
        self.ok = True

    def fail(self, error: ConfigError) -> None:
        self.ok = False
        self.ctx.report(error)

    def at(self, *path: Any) -> SourceLocation:
        return locate(self.data, path) or self.doc.loc

    def compile(self) -> ApprovalFlow | None:
        d = self.data
        name = self.doc.name
        entity = self._entity()
        if entity is None:
            return None
        self.entity = entity
        self.scope = FlowScope(entity, self.ctx.entities, self.ctx.roles, self.ctx.extensions.functions,
                               self._scope_report, self.doc.loc)
        has_steps, has_bpmn = "steps" in d, "bpmn" in d
        if has_steps == has_bpmn:
            self.fail(SchemaViolation(
                f"approval {name!r} gives {'both steps and bpmn' if has_steps else 'neither steps nor bpmn'}",
                location=self.at("bpmn") if has_bpmn else self.doc.loc,
                hint="give steps: (the YAML shorthand) or bpmn: FILE with process: ID (a modeler's file)"))
            return None
        timeout = self._timeout(d["timeout"], ("timeout",)) if d.get("timeout") else None
        trigger = self._trigger()
        if has_steps:
            built = self._shorthand(timeout)
        else:
            built = self._bpmn(timeout)
        read_ok = built is not None
        if built is None:  # reported; the rest is still checked, so one run shows every problem
            self.ok = False
            built = ("", self.doc.name, self.doc.loc.file, BpmnFlow(self.doc.name))
        xml, process_id, source, read = built
        flow = ApprovalFlow(
            name=name, entity=entity.name, label=label_of(d.get("label"), name), trigger=trigger,
            process_id=process_id, bpmn_xml=xml, source=source, steps=frozen_map(read.steps),
            expressions=frozen_map(read.expressions), timers=frozen_map(read.timers),
            service_actions=frozen_map(read.service_actions), lock_record=bool(d.get("lock_record", True)),
            editable_while_pending=self.scope.check_fields(
                d.get("editable_while_pending") or (), lambda i: self.at("editable_while_pending", i),
                f"approval {name!r} editable_while_pending"),
            cc=tuple(a for i, raw in enumerate(d.get("cc") or ()) if (a := self._assignee(raw, ("cc", i)))),
            timeout=timeout,
            on_approved=self._actions("on_approved"), on_rejected=self._actions("on_rejected"),
            on_withdrawn=self._actions("on_withdrawn"), migrate=self._migrate(read.steps if read_ok else None),
            status_field=self._status_field(), shorthand=has_steps, location=self.doc.loc,
            extra=frozen_map({"variables": frozen_map(read.variables)}),
        )
        if not self.ok:
            return None
        return _with_digest(flow, self.data)

    def _scope_report(self, error: ConfigError) -> None:
        self.fail(error)

    def _entity(self) -> Entity | None:
        raw = self.data.get("entity")
        if not isinstance(raw, str):
            self.fail(SchemaViolation(f"approval {self.doc.name!r} names no entity", location=self.doc.loc,
                                      code="schema_required", hint="add entity: quote (the records it approves)"))
            return None
        entity = self.ctx.entities.get(raw)
        if entity is None:
            close = difflib.get_close_matches(raw, list(self.ctx.entities), n=1)
            self.fail(UnknownReference(f"approval {self.doc.name!r} is for unknown entity {raw!r}",
                                       location=self.at("entity"),
                                       hint=f"did you mean {close[0]!r}?" if close else None))
        return entity

    def _expr_loc(self, *path: Any) -> tuple[SourceLocation, int]:
        """Where an expression value starts and whether it is quoted (1) in the YAML."""
        loc = self.at(*path)
        node: Any = self.data
        for p in path:
            node = node[p]
        return loc, _quote_offset(loc, node)

    # ----------------------------------------------------------------- trigger, assignees, timeouts

    def _trigger(self) -> Trigger:
        raw = self.data.get("trigger") or {}
        when = None
        if isinstance(raw.get("when"), str):
            loc, q = self._expr_loc("trigger", "when")
            when = self.scope.condition(raw["when"], loc, quote_offset=q)
        on = tuple(raw.get("on") or ("submit",))
        return Trigger(on, when, self.at("trigger"))  # type: ignore[arg-type]

    def _assignee(self, raw: Any, path: tuple[Any, ...]) -> Assignee | None:
        if isinstance(raw, str):
            loc, q = self._expr_loc(*path)
            compiled = self.scope.assignee(raw, loc, quote_offset=q)
            return Assignee("expression", raw, compiled, loc) if compiled is not None else None
        kind, value = next(iter(raw.items()))
        loc = self.at(*path, kind)
        if kind == "role" and not self.scope.check_role(value, loc, f"approval {self.doc.name!r}"):
            return None
        return Assignee(kind, str(value), location=loc)

    def _duration(self, text: str, path: tuple[Any, ...]) -> dt.timedelta | None:
        found = parse_short(text)
        if found is None:
            self.fail(SchemaViolation(f"{text!r} is not a duration", location=self.at(*path),
                                      code="schema_duration",
                                      hint="write minutes, hours, days or weeks: 30m, 48h, 3d, 2w"))
        return found

    def _timeout(self, raw: Mapping[str, Any], path: tuple[Any, ...]) -> Timeout | None:
        after = self._duration(raw["after"], (*path, "after"))
        remind = self._duration(raw["remind_every"], (*path, "remind_every")) if raw.get("remind_every") else None
        then = raw.get("then", "remind")
        escalate: tuple[Assignee, ...] = ()
        if isinstance(then, Mapping):
            targets = then["escalate_to"]
            items = list(enumerate(targets)) if isinstance(targets, list) else [(None, targets)]
            found = [self._assignee(t, (*path, "then", "escalate_to") + (() if i is None else (i,)))
                     for i, t in items]
            escalate = tuple(a for a in found if a is not None)
            then = "escalate"
        if after is None:
            return None
        if remind is not None and remind >= after and then == "remind":
            self.fail(SchemaViolation("remind_every is not shorter than after: no reminder would be sent before "
                                      "the timeout", location=self.at(*path, "remind_every"),
                                      hint="e.g. after: 48h, remind_every: 24h"))
        return Timeout(after, remind, then, escalate, self.at(*path))

    # ----------------------------------------------------------------- the shorthand

    def _shorthand(self, timeout: Timeout | None) -> tuple[str, str, str, BpmnFlow] | None:
        items: list[SeqItem | ParItem] = []
        seen: dict[str, tuple[Any, ...]] = {}
        for i, raw in enumerate(self.data["steps"]):
            when = self._when(raw, ("steps", i))
            if "parallel" in raw:
                group = str(raw.get("name") or f"group{i + 1}")
                branch = [self._step(b, ("steps", i, "parallel", j), timeout, raw.get("mode"), seen)
                          for j, b in enumerate(raw["parallel"])]
                items.append(ParItem(group, tuple(s for s in branch if s is not None), when))
                self._unique(group, ("steps", i, "name") if "name" in raw else ("steps", i), seen)
            else:
                step = self._step(raw, ("steps", i), timeout, None, seen)
                if step is not None:
                    items.append(SeqItem(step, when))
        out = BpmnFlow(self.doc.name)
        gen = generate(self.doc.name, str(label_of(self.data.get("label"), self.doc.name).get("en", self.doc.name)),
                       items)
        for item in items:
            for step in (item.step,) if isinstance(item, SeqItem) else item.steps:
                out.steps[step.id] = step
        for text in gen.conditions:
            compiled = self.scope.condition(text, self.doc.loc)
            if compiled is not None:
                out.expressions[text] = compiled
        return gen.xml, self.doc.name, self.doc.loc.file, out

    def _when(self, raw: Mapping[str, Any], path: tuple[Any, ...]) -> str | None:
        text = raw.get("when")
        if not isinstance(text, str):
            return None
        loc, q = self._expr_loc(*path, "when")
        return text if self.scope.condition(text, loc, quote_offset=q) is not None else None

    def _unique(self, ident: str, path: tuple[Any, ...], seen: dict[str, tuple[Any, ...]]) -> None:
        if ident in seen or ident in ("start", "approved", "rejected"):
            self.fail(SchemaViolation(f"approval {self.doc.name!r}: step name {ident!r} is used twice"
                                      if ident in seen else f"step name {ident!r} is reserved (an event of the BPMN)",
                                      location=self.at(*path), hint="give each step its own name"))
        seen[ident] = path

    def _step(self, raw: Mapping[str, Any], path: tuple[Any, ...], timeout: Timeout | None,
              group_mode: str | None, seen: dict[str, tuple[Any, ...]]) -> ApprovalStep | None:
        name = raw["name"]
        self._unique(name, (*path, "name"), seen)
        if ("assignee" in raw) == ("approvers" in raw):
            self.fail(SchemaViolation(f"step {name!r} needs exactly one of assignee and approvers",
                                      location=self.at(*path),
                                      hint="assignee: X for one, approvers: [X, Y] for several"))
            return None
        raws = [(("assignee",), raw["assignee"])] if "assignee" in raw else \
            [(("approvers", i), a) for i, a in enumerate(raw["approvers"])]
        found = [self._assignee(a, (*path, *p)) for p, a in raws]
        assignees = tuple(a for a in found if a is not None)
        mode = raw.get("mode") or group_mode or "any"
        ratio = raw.get("ratio")
        if mode == "ratio" and ratio is None:
            self.fail(SchemaViolation(f"step {name!r}: mode ratio needs ratio: (e.g. 0.6)",
                                      location=self.at(*path, "mode")))
        if ratio is not None and mode != "ratio":
            self.fail(SchemaViolation(f"step {name!r}: ratio: is only for mode: ratio",
                                      location=self.at(*path, "ratio"),
                                      hint="add mode: ratio"))
        own = self._timeout(raw["timeout"], (*path, "timeout")) if raw.get("timeout") else None
        editable = self.scope.check_fields(raw.get("editable") or (), lambda i: self.at(*path, "editable", i),
                                           f"step {name!r} editable")
        if "when" in raw and "parallel" in path:
            self.fail(SchemaViolation(f"step {name!r}: a branch of a parallel group has no when: of its own",
                                      location=self.at(*path, "when"), hint="put when: on the group"))
        return ApprovalStep(name, name, label_of(raw.get("label"), name), assignees, mode,  # type: ignore[arg-type]
                            ratio, own or timeout,
                            editable, None, self.at(*path))

    # ----------------------------------------------------------------- a BPMN file

    def _bpmn(self, timeout: Timeout | None) -> tuple[str, str, str, BpmnFlow] | None:
        rel = self.data["bpmn"]
        loc = self.at("bpmn")
        if "process" not in self.data:
            self.fail(SchemaViolation(f"approval {self.doc.name!r}: bpmn: needs process: (the process id in the file)",
                                      location=loc))
            return None
        found = self._side_file(rel, loc)
        if found is None:
            return None
        text, display = found
        read = read_bpmn(text, display, str(self.data["process"]), self.scope, process_at=self.at("process"),
                         flow_timeout=timeout)
        if read is None:
            self.ok = False
            return None
        return text, read.process_id, display, read

    def _side_file(self, rel: str, loc: SourceLocation) -> tuple[str, str] | None:
        """The text and display path of ``rel`` beside the YAML file that wrote ``bpmn:``."""
        yaml_key = next((k for k, f in self.ctx.files.items() if f.display == loc.file), None)
        key = posixpath.normpath(posixpath.join(posixpath.dirname(yaml_key), rel)) if yaml_key else None
        f = self.ctx.files.get(key) if key else None
        if f is None or rel.startswith("/"):
            near = [k.rsplit("/", 1)[-1] for k in self.ctx.files if k.endswith(".bpmn")]
            self.fail(BpmnError(f"approval {self.doc.name!r}: no BPMN file {rel!r} beside {loc.file}",
                                location=loc, code="bpmn_missing",
                                hint="the path is relative to this YAML file" +
                                     (f" (BPMN files found: {', '.join(near)})" if near else "")))
            return None
        return f.text, f.display

    # ----------------------------------------------------------------- outcome actions, migrate, status

    def _actions(self, key: str) -> tuple[Action, ...]:
        out = []
        for i, raw in enumerate(self.data.get(key) or ()):
            path = (key, i)
            if "set" in raw:
                values = {}
                for fname, value in raw["set"].items():
                    compiled = self._set_value(fname, value, (*path, "set", fname))
                    if compiled is not None:
                        values[fname] = compiled
                out.append(Action("set", MappingProxyType(values), location=self.at(*path)))
            elif "stage" in raw:
                self._check_stage(raw["stage"], (*path, "stage"))
                out.append(Action("stage", stage=raw["stage"], location=self.at(*path)))
            else:
                out.append(Action("start", flow=raw["start"], location=self.at(*path, "start")))
        return tuple(out)

    def _set_value(self, fname: str, value: Any, path: tuple[Any, ...]) -> CompiledExpression | None:
        """A ``set:`` value: a picklist option key, a literal, or an expression over the record."""
        f = self.entity.fields.get(fname)
        if f is None:
            self.scope.unknown(f"approval {self.doc.name!r} sets unknown field {self.entity.name}.{fname}",
                               locate(self.data, path, key=True), fname, self.entity.fields)
            self.ok = False
            return None
        loc = self.at(*path)
        expected = f.type if f.type in _VALUE_TYPES else None
        if f.type == "picklist" and isinstance(value, str):
            if value in f.option_keys:
                return self.scope.value(repr(value), None)
            if value.isidentifier() and value not in self.entity.fields:
                self.fail(SchemaViolation(f"approval {self.doc.name!r}: {value!r} is not an option of "
                                          f"{self.entity.name}.{fname}", location=loc,
                                          hint=f"options: {', '.join(f.option_keys)}"))
                return None
        if isinstance(value, str):
            return self.scope.value(value, loc, expected, quote_offset=_quote_offset(loc, value))
        text = "null" if value is None else ("true" if value is True else "false" if value is False else repr(value))
        return self.scope.value(text, loc, expected)

    def _check_stage(self, key: str, path: tuple[Any, ...]) -> None:
        """A ``stage:`` action's key: a stage of the entity's pipeline, else an option of its ``stage`` picklist."""
        pipelines = [o.compiled for o in self.ctx.objects.get("pipeline", {}).values()
                     if getattr(o.compiled, "entity", None) == self.entity.name]
        keys = [s.key for p in pipelines for s in p.stages]
        stage_field = self.entity.fields.get("stage")
        if not pipelines and stage_field is not None and stage_field.type == "picklist":
            keys = list(stage_field.option_keys)
        elif not pipelines:
            self.fail(SchemaViolation(f"approval {self.doc.name!r} moves a stage, but {self.entity.name} has no "
                                      "pipeline", location=self.at(*path),
                                      hint="add a pipeline: for the entity, or use set:"))
            return
        if key not in keys:
            self.scope.unknown(f"approval {self.doc.name!r} moves to unknown stage {key!r} "
                               f"(stages: {', '.join(keys)})", self.at(*path), key, keys)
            self.ok = False

    def _migrate(self, steps: Mapping[str, ApprovalStep] | None) -> Mapping[str, str]:
        """``migrate:``; each target a step of this version (not checked when the steps could not be read)."""
        raw = self.data.get("migrate") or {}
        for old, new in raw.items():
            if steps is not None and new not in steps:
                self.scope.unknown(f"approval {self.doc.name!r}: migrate {old!r} -> {new!r}, but this version has no "
                                   f"step {new!r} (steps: {', '.join(steps)})", self.at("migrate", old), new, steps)
                self.ok = False
        return frozen_map({str(k): str(v) for k, v in raw.items()})

    def _status_field(self) -> str | None:
        if "status_field" not in self.data:
            return STATUS_FIELD if STATUS_FIELD in self.entity.fields else None
        name = self.data["status_field"]
        if name is None:
            return None
        f = self.entity.fields.get(name)
        if f is None or f.type != "picklist":
            self.scope.unknown(f"approval {self.doc.name!r}: status_field {name!r} is not a picklist field of "
                               f"{self.entity.name}", self.at("status_field"), name,
                               [n for n, x in self.entity.fields.items() if x.type == "picklist"])
            self.ok = False
            return None
        return str(name)


def _quote_offset(loc: SourceLocation, value: Any) -> int:
    """1 when the YAML scalar at ``loc`` is quoted (its positions are then shifted by the quote)."""
    return 1 if loc.positions is not None and isinstance(value, str) else 0


def _with_digest(flow: ApprovalFlow, data: Any) -> ApprovalFlow:
    """``flow`` with its digest: of the document without its texts (labels, descriptions) and, for a BPMN
    file, of the file; the shorthand's BPMN follows from the document and :data:`SHORTHAND_VERSION`."""
    h = hashlib.sha256(SHORTHAND_VERSION.encode() if flow.shorthand else flow.bpmn_xml.encode())
    h.update(json.dumps(_behaviour(plain(data)), sort_keys=True, default=str, ensure_ascii=False).encode())
    return dataclasses.replace(flow, digest=h.hexdigest()[:16])


def _behaviour(node: Any) -> Any:
    """``node`` without the keys that change no behaviour (``label``, ``description``, ``extend``)."""
    if isinstance(node, dict):
        return {k: _behaviour(v) for k, v in node.items() if k not in ("label", "description", "extend")}
    if isinstance(node, list):
        return [_behaviour(v) for v in node]
    return node


def compile_approvals(docs: Sequence[MergedDoc], ctx: CompileContext) -> dict[str, ApprovalFlow]:
    """Every ``approval:`` document; then each ``start:`` action must name a flow of the same entity."""
    out: dict[str, ApprovalFlow] = {}
    for doc in docs:
        flow = _FlowCompiler(doc, ctx).compile()
        if flow is not None:
            out[doc.name] = flow
    names = {d.name for d in docs}
    for flow in out.values():
        for action in (*flow.on_approved, *flow.on_rejected, *flow.on_withdrawn):
            if action.kind != "start" or action.flow is None:
                continue
            other = out.get(action.flow)
            if action.flow not in names:
                close = difflib.get_close_matches(action.flow, list(names), n=1)
                ctx.report(UnknownReference(f"approval {flow.name!r} starts unknown flow {action.flow!r}",
                                            location=action.location,
                                            hint=f"did you mean {close[0]!r}?" if close
                                            else "name an approval: document"))
            elif other is not None and other.entity != flow.entity:
                ctx.report(SchemaViolation(f"approval {flow.name!r} ({flow.entity}) starts {action.flow!r}, a flow "
                                           f"of {other.entity}", location=action.location))
    return out


def approvals_of(workspace: Any, entity: str | None = None) -> list[ApprovalFlow]:
    """The workspace's compiled approval flows (of ``entity`` only, when given), in compile order."""
    found = [o.compiled for o in workspace.objects_of("approval").values() if isinstance(o.compiled, ApprovalFlow)]
    return [f for f in found if entity is None or f.entity == entity]


KIND = KindSpec(
    "approval", "approval.json", "an approval flow (审批流): steps or a BPMN file, timeouts, CC, outcome actions",
    list_merge=MappingProxyType({"steps": "replace"}), compile=compile_approvals, order=80,
)
