"""A quote workspace with approval flows built by hand (BPMN text + ApprovalStep objects + expressions
compiled with the expression language), for the approvals runtime tests -- the ``approval:`` kind of
the configuration language is not needed to build them.

Users: admin; alice, bob (sales, managed by carol); carol (manager, east); dan and dora (sales_director);
fay (finance); leo (legal); r1..r5 (reviewer); cc (viewer, CC'd).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from engine.dsl.approvals.model import (
    FLOW_VARIABLES,
    Action,
    ApprovalFlow,
    ApprovalStep,
    Assignee,
    Timeout,
    Trigger,
)
from engine.dsl.compiler import compile_folder
from engine.dsl.expressions import CompiledExpression, compile_expression
from engine.dsl.model import ConfigObject, Entity, Field, Workspace
from engine.errors import SourceLocation
from engine.runtime import users
from engine.runtime.context import Actor, FixedClock
from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply
from tests.runtime.conftest import write_workspace

FILES = {
    "workspace.yaml": """
        workspace: quotes
        locale: en
        currency: CNY
    """,
    "entities/quote.yaml": """
        entity: quote
        title: "{name}"
        fields:
          name: {type: string, required: true}
          discount_rate: {type: decimal, scale: 4, min: 0, max: 1, default: 0}
          total: {type: money, min: 0, default: 0}
          notes: {type: string}
          terms: {type: string}
          approval_status: {type: picklist, options: [none, pending, approved, rejected, withdrawn, returned]}
    """,
    "roles/roles.yaml": """
        role: admin
        admin: true
        ---
        role: sales
        permissions:
          quote: {read: own, create: true, update: own, delete: own}
        ---
        role: manager
        permissions:
          quote: {read: team, create: true, update: team, delete: team}
        ---
        role: sales_director
        permissions:
          quote: {read: all, create: true, update: all}
        ---
        role: finance
        permissions:
          quote: {read: all}
        ---
        role: legal
        permissions:
          quote: {read: all}
        ---
        role: reviewer
        permissions:
          quote: {read: all}
        ---
        role: viewer
        permissions:
          quote: {read: all}
    """,
}

LOC = SourceLocation("flows/test.yaml", 1, 1)


def flow_entity(entity: Entity) -> Entity:
    """``entity`` with the flow variables as fields, so conditions may read ``approved`` and ``step``."""
    kinds = {"boolean": "boolean", "string": "string", "integer": "integer"}
    extra = {name: Field(name, kinds[kind], LOC) for name, kind in FLOW_VARIABLES.items()}
    return dataclasses.replace(entity, fields={**entity.fields, **extra})


def expr(ws: Workspace, text: str, *, expected: str | None = "boolean", flow_vars: bool = True) -> CompiledExpression:
    entity = ws.entities["quote"]
    return compile_expression(text, flow_entity(entity) if flow_vars else entity, ws, expected=expected)


@dataclass
class StepDef:
    """One sequential step of a test flow: ``when`` (a condition to enter it) and who decides how."""

    id: str
    assignees: Sequence[Assignee]
    when: str | None = None
    mode: str = "any"
    ratio: float | None = None
    timeout: Timeout | None = None
    editable: tuple[str, ...] = ()


@dataclass
class Chain:
    """BPMN text of a chain of steps: [gateway(when)] -> userTask -> gateway(approved == false ->
    ``rejected`` end) ... -> ``approved`` end.  ``conditions`` are the texts used."""

    process_id: str
    steps: Sequence[StepDef]
    conditions: list[str] = field(default_factory=list)

    def xml(self) -> str:
        parts: list[str] = ['<bpmn:startEvent id="start"/>']
        flows: list[tuple[str, str, str, str | None]] = []  # (id, source, target, condition)
        prev, prev_id = "start", "f_start"
        for s in self.steps:
            target = s.id
            if s.when:
                gw = f"when_{s.id}"
                parts.append(f'<bpmn:exclusiveGateway id="{gw}" default="skip_{s.id}"/>')
                flows.append((prev_id, prev, gw, None))
                flows.append((f"enter_{s.id}", gw, s.id, s.when))
                self.conditions.append(s.when)
            else:
                flows.append((prev_id, prev, target, None))
            parts.append(f'<bpmn:userTask id="{s.id}" name="{s.id}"/>')
            dec = f"dec_{s.id}"
            parts.append(f'<bpmn:exclusiveGateway id="{dec}" default="ok_{s.id}"/>')
            flows.append((f"to_dec_{s.id}", s.id, dec, None))
            flows.append((f"no_{s.id}", dec, "rejected", "approved == false"))
            if s.when:
                join = f"join_{s.id}"
                parts.append(f'<bpmn:exclusiveGateway id="{join}"/>')
                flows.append((f"ok_{s.id}", dec, join, None))
                flows.append((f"skip_{s.id}", f"when_{s.id}", join, None))
                prev, prev_id = join, f"after_{s.id}"
            else:
                prev, prev_id = dec, f"ok_{s.id}"
        self.conditions.append("approved == false")
        parts.append('<bpmn:endEvent id="approved" name="approved"/>')
        parts.append('<bpmn:endEvent id="rejected" name="rejected"/>')
        flows.append((prev_id, prev, "approved", None))
        return definitions(self.process_id, parts, flows)


def definitions(process_id: str, parts: Sequence[str], flows: Sequence[tuple[str, str, str, str | None]]) -> str:
    """A BPMN document of one process (no diagram: the runtime does not need one)."""
    seq = []
    for fid, src, dst, cond in flows:
        body = (f'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{escape(cond)}'
                f'</bpmn:conditionExpression>') if cond else ""
        seq.append(f'<bpmn:sequenceFlow id="{fid}" sourceRef="{src}" targetRef="{dst}">{body}</bpmn:sequenceFlow>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs" targetNamespace="http://bpmn.io/schema/bpmn">'
            f'<bpmn:process id="{process_id}" isExecutable="true">' + "".join(parts) + "".join(seq) +
            "</bpmn:process></bpmn:definitions>")


def make_flow(ws: Workspace, name: str, steps: Sequence[StepDef], *, trigger: Trigger | None = None,
              cc: Sequence[Assignee] = (), on_approved: Sequence[Action] = (), on_rejected: Sequence[Action] = (),
              on_withdrawn: Sequence[Action] = (), editable_while_pending: tuple[str, ...] = ("notes",),
              timeout: Timeout | None = None, lock_record: bool = True) -> ApprovalFlow:
    chain = Chain(f"p_{name}", steps)
    xml = chain.xml()
    expressions = {text: expr(ws, text) for text in chain.conditions}
    return ApprovalFlow(
        name=name, entity="quote", label={"en": name}, trigger=trigger or Trigger(on=("submit",)),
        process_id=chain.process_id, bpmn_xml=xml, source=f"flows/{name}.yaml",
        steps={s.id: ApprovalStep(s.id, s.id, {"en": s.id}, tuple(s.assignees), s.mode, s.ratio,  # type: ignore[arg-type]
                                  s.timeout, s.editable) for s in steps},
        expressions=expressions, cc=tuple(cc), on_approved=tuple(on_approved), on_rejected=tuple(on_rejected),
        on_withdrawn=tuple(on_withdrawn), editable_while_pending=editable_while_pending, timeout=timeout,
        lock_record=lock_record, digest=f"test-{name}-{abs(hash(xml)) % 10**12}")


def file_flow(ws: Workspace, name: str, path: Path, process_id: str, steps: Mapping[str, ApprovalStep], *,
              expressions: Mapping[str, str] = (), timers: Mapping[str, str] | None = None) -> ApprovalFlow:  # type: ignore[assignment]
    """A flow of a drawn BPMN file (the realworld fixtures)."""
    return ApprovalFlow(name=name, entity="quote", label={"en": name}, trigger=Trigger(on=("submit",)),
                        process_id=process_id, bpmn_xml=path.read_text("utf-8"), source=str(path), steps=dict(steps),
                        expressions={t: expr(ws, e) for t, e in dict(expressions).items()}, timers=dict(timers or {}),
                        digest=f"file-{name}")


def manager() -> Assignee:
    return Assignee("expression", "manager_of(owner)")


def role(name: str) -> Assignee:
    return Assignee("role", name)


def user(name: str) -> Assignee:
    return Assignee("user", name)


def with_flows(ws: Workspace, flows: Sequence[ApprovalFlow]) -> Workspace:
    objects = dict(ws.objects)
    objects["approval"] = {f.name: ConfigObject("approval", f.name, LOC, {}, f) for f in flows}
    return dataclasses.replace(ws, objects=objects)


def bind_expressions(ws: Workspace, flow: ApprovalFlow) -> ApprovalFlow:
    """Compile ``expression`` assignees and ``set`` actions given as text (tests write them as text)."""
    def fix(a: Assignee) -> Assignee:
        if a.kind == "expression" and a.expression is None:
            return dataclasses.replace(a, expression=expr(ws, a.value, expected=None, flow_vars=False))
        return a
    steps = {k: dataclasses.replace(s, assignees=tuple(fix(a) for a in s.assignees),
                                    timeout=dataclasses.replace(s.timeout, escalate_to=tuple(
                                        fix(a) for a in s.timeout.escalate_to)) if s.timeout else None)
             for k, s in flow.steps.items()}
    return dataclasses.replace(flow, steps=steps, cc=tuple(fix(a) for a in flow.cc))


def set_action(ws: Workspace, **values: str) -> Action:
    return Action("set", {k: expr(ws, v, expected=None, flow_vars=False) for k, v in values.items()})


USERS = [("alice", ["sales"], "east", "carol"), ("bob", ["sales"], "east", "carol"),
         ("dan", ["sales_director"], None, None), ("dora", ["sales_director"], None, None),
         ("fay", ["finance"], None, None), ("leo", ["legal"], None, None),
         *((f"r{i}", ["reviewer"], None, None) for i in range(1, 6)), ("cc", ["viewer"], None, None)]


@dataclass
class ApprovalWorld:
    rt: Runtime
    clock: FixedClock
    url: str
    ids: dict[str, int]
    ws: Workspace

    def actor(self, name: str) -> Actor:
        if name == "system":
            return Actor.system()
        with self.rt.engine.connect() as conn:
            return users.actor_for(conn, self.rt.state.workspace, name)

    def unit(self, name: str = "admin", **kw: Any) -> Any:
        return self.rt.unit(self.actor(name), **kw)

    def use(self, *flows: ApprovalFlow) -> None:
        """Run with these flows from now on (a new State, as a new revision would)."""
        from engine.runtime.runtime import State

        ws = with_flows(self.ws, [bind_expressions(self.ws, f) for f in flows])
        self.rt.state = State.build(ws, self.rt.engine.dialect.name, None)


def base_workspace(folder: Path) -> Workspace:
    return compile_folder(write_workspace(folder, FILES))


def build(db_url: str, folder: Path) -> ApprovalWorld:
    ws = base_workspace(folder)
    engine = make_engine(db_url)
    try:
        apply(engine, ws, author="test", message="setup")
    finally:
        engine.dispose()
    clock = FixedClock()
    rt = Runtime.from_workspace(make_engine(db_url), ws, clock=clock)
    ids: dict[str, int] = {}
    with rt.unit(Actor.system()) as uow:
        ids["admin"] = users.create_user(uow, "admin", roles=["admin"], password="correct horse")
        east = users.create_team(uow, "east")
        ids["carol"] = users.create_user(uow, "carol", roles=["manager"], team="east")
        users.set_team_manager(uow, east, "carol")
        for name, roles, team, mgr in USERS:
            ids[name] = users.create_user(uow, name, roles=roles, team=team, manager=mgr)
    return ApprovalWorld(rt, clock, db_url, ids, ws)


def worlds(db_url: str, folder: Path) -> Iterator[ApprovalWorld]:
    w = build(db_url, folder)
    try:
        yield w
    finally:
        w.rt.close()


def at(clock: FixedClock, **delta: float) -> dt.datetime:
    return clock.now() + dt.timedelta(**delta)
