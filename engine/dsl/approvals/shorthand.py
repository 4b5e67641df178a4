"""The YAML ``steps:`` shorthand written out as BPMN 2.0 XML, with a diagram (BPMNDI).

One runtime path: a shorthand flow runs exactly like a file drawn in a modeler, so the XML follows the
conventions a modeler user follows (docs/approvals.md, "BPMN conventions"):

* every step is a ``userTask`` whose id is the step's name: ``camunda:assignee`` (a username or
  ``${expression}``), ``camunda:candidateUsers`` / ``camunda:candidateGroups`` (roles), and the
  ``crm:`` properties (``crm:mode``, ``crm:ratio``, ``crm:timeout``, ``crm:remind_every``, ``crm:then``,
  ``crm:editable``, ``crm:team``, ``crm:assignees`` for further assignee expressions);
* after a step an exclusive gateway sends ``approved == false`` to the end event ``rejected`` and its
  default flow on; a step with ``when:`` has an exclusive gateway before it, the condition to the step
  and the default flow around it;
* a parallel group is a parallel split and join; each branch goes to the join whatever its decision (a
  rejection in one branch ends the instance: the runtime cancels it), and after the join the same
  ``approved == false`` gateway as after a step;
* the last flow reaches the end event ``approved``.

Conditions are written in the expression language, never JUEL or Python; the texts used are returned
with the XML so the compiler type-checks each one.  Layout: left to right on one row; parallel branches
stacked; flows around a skipped step go above the row, rejections below it to ``rejected``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from engine.dsl.approvals.model import ApprovalStep, Assignee, Timeout

#: the condition the gateway after a decision tests to go to ``rejected``
REJECTED = "approved == false"
NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "di": "http://www.omg.org/spec/DD/20100524/DI",
    "camunda": "http://camunda.org/schema/1.0/bpmn",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
_SIZE = {"task": (100, 80), "gateway": (50, 50), "event": (36, 36)}
_ROW_Y = 200  # centre line of the main row
_GAP = 60
_BRANCH_GAP = 120


@dataclass(frozen=True, slots=True)
class SeqItem:
    """One step of ``steps:`` (``when``: the condition text, if any)."""

    step: ApprovalStep
    when: str | None = None


@dataclass(frozen=True, slots=True)
class ParItem:
    """A parallel group: its branch steps, all waited for."""

    name: str
    steps: tuple[ApprovalStep, ...]
    when: str | None = None


@dataclass
class _Node:
    id: str
    tag: str
    shape: str
    name: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    props: list[tuple[str, str]] = field(default_factory=list)
    x: float = 0
    y: float = 0
    incoming: list[str] = field(default_factory=list)
    outgoing: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return _SIZE[self.shape]


@dataclass
class _Flow:
    id: str
    source: str
    target: str
    condition: str | None = None
    route: str = "straight"  # straight | above | below


@dataclass(frozen=True, slots=True)
class GeneratedBpmn:
    """The XML and the condition texts in it (each to be compiled by the caller)."""

    xml: str
    conditions: tuple[str, ...]


def duration_text(delta: dt.timedelta) -> str:
    """``48h`` / ``3d`` / ``30m`` for a timedelta (the shorthand's own form, read back by the BPMN reader)."""
    minutes = int(delta.total_seconds() // 60)
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes and minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def assignee_text(a: Assignee) -> str:
    """``role:finance`` / ``team:east`` / ``user:li`` / the expression text (``crm:then`` escalation)."""
    return a.value if a.kind == "expression" else f"{a.kind}:{a.value}"


class _Builder:
    def __init__(self, process_id: str) -> None:
        self.process_id = process_id
        self.nodes: dict[str, _Node] = {}
        self.flows: list[_Flow] = []
        self.conditions: list[str] = []
        self.defaults: dict[str, str] = {}

    def node(self, id_: str, tag: str, shape: str, name: str = "", **attrs: str) -> _Node:
        n = _Node(id_, tag, shape, name, dict(attrs))
        self.nodes[id_] = n
        return n

    def flow(self, source: _Node, target: _Node, condition: str | None = None, *, default: bool = False,
             route: str = "straight") -> _Flow:
        f = _Flow(f"flow_{len(self.flows) + 1}", source.id, target.id, condition, route)
        self.flows.append(f)
        source.outgoing.append(f.id)
        target.incoming.append(f.id)
        if condition is not None and condition not in self.conditions:
            self.conditions.append(condition)
        if default:
            self.defaults[source.id] = f.id
        return f


def generate(process_id: str, name: str, items: Sequence[SeqItem | ParItem]) -> GeneratedBpmn:
    """BPMN XML for ``items`` (in order) as process ``process_id`` named ``name``."""
    b = _Builder(process_id)
    x = 100.0
    start = b.node("start", "startEvent", "event", "Submitted")
    _place(start, x, _ROW_Y)
    x += 36 + _GAP
    rejected = b.node("rejected", "endEvent", "event", "Rejected")
    prev = start
    pending_default = False  # prev is a decision gateway: its flow on is the default one
    for item in items:
        skip: _Node | None = None
        if item.when is not None:
            ident = item.step.id if isinstance(item, SeqItem) else item.name
            skip = b.node(f"when_{ident}", "exclusiveGateway", "gateway", f"{item.when}?")
            _place(skip, x, _ROW_Y)
            b.flow(prev, skip, default=pending_default)
            x += 50 + _GAP
            prev, pending_default = skip, False
        if isinstance(item, SeqItem):
            task = _task(b, item.step)
            _place(task, x, _ROW_Y)
            b.flow(prev, task, item.when, default=pending_default)
            x += 100 + _GAP
            last: _Node = task
            ident = item.step.id
        else:
            ident = item.name
            split = b.node(f"split_{ident}", "parallelGateway", "gateway")
            _place(split, x, _ROW_Y)
            b.flow(prev, split, item.when, default=pending_default)
            x += 50 + _GAP
            join = b.node(f"join_{ident}", "parallelGateway", "gateway")
            count = len(item.steps)
            for i, step in enumerate(item.steps):
                task = _task(b, step)
                _place(task, x, _ROW_Y + (i - (count - 1) / 2) * _BRANCH_GAP)
                b.flow(split, task)
                b.flow(task, join)
            x += 100 + _GAP
            _place(join, x, _ROW_Y)
            x += 50 + _GAP
            last = join
        decided = b.node(f"decided_{ident}", "exclusiveGateway", "gateway", "Approved?")
        _place(decided, x, _ROW_Y)
        b.flow(last, decided)
        b.flow(decided, rejected, REJECTED, route="below")
        x += 50 + _GAP
        prev, pending_default = decided, True
        if skip is not None:
            merge = b.node(f"merge_{ident}", "exclusiveGateway", "gateway")
            _place(merge, x, _ROW_Y)
            b.flow(decided, merge, default=True)
            b.flow(skip, merge, default=True, route="above")
            x += 50 + _GAP
            prev, pending_default = merge, False
    approved = b.node("approved", "endEvent", "event", "Approved")
    _place(approved, x, _ROW_Y)
    b.flow(prev, approved, default=pending_default)
    _place(rejected, x, _ROW_Y + 2 * _BRANCH_GAP)
    return GeneratedBpmn(_xml(b, name), tuple(b.conditions))


def _place(n: _Node, x: float, centre_y: float) -> None:
    h = n.size[1]
    n.x, n.y = x, centre_y - h / 2


def _task(b: _Builder, step: ApprovalStep) -> _Node:
    attrs: dict[str, str] = {}
    props: list[tuple[str, str]] = []
    exprs = [a for a in step.assignees if a.kind == "expression"]
    users = [a.value for a in step.assignees if a.kind == "user"]
    roles = [a.value for a in step.assignees if a.kind == "role"]
    teams = [a.value for a in step.assignees if a.kind == "team"]
    if exprs:
        attrs["camunda:assignee"] = "${" + exprs[0].value + "}"
    elif len(users) == 1:
        attrs["camunda:assignee"] = users.pop()
    if users:
        attrs["camunda:candidateUsers"] = ",".join(users)
    if roles:
        attrs["camunda:candidateGroups"] = ",".join(roles)
    if len(exprs) > 1:
        props.append(("crm:assignees", "; ".join(a.value for a in exprs[1:])))
    if teams:
        props.append(("crm:team", ",".join(teams)))
    props.append(("crm:mode", step.mode))
    if step.ratio is not None:
        props.append(("crm:ratio", repr(step.ratio)))
    if step.timeout is not None:
        props.extend(timeout_props(step.timeout))
    if step.editable:
        props.append(("crm:editable", ",".join(step.editable)))
    label = step.label.get("en") or step.label.get("zh") or step.name
    n = b.node(step.id, "userTask", "task", str(label), **attrs)
    n.props = props
    return n


def timeout_props(t: Timeout) -> list[tuple[str, str]]:
    """``crm:timeout``, ``crm:remind_every`` and ``crm:then`` for a timeout."""
    out = [("crm:timeout", duration_text(t.after))]
    if t.remind_every is not None:
        out.append(("crm:remind_every", duration_text(t.remind_every)))
    if t.then == "escalate":
        out.append(("crm:then", "escalate_to " + "; ".join(assignee_text(a) for a in t.escalate_to)))
    else:
        out.append(("crm:then", t.then))
    return out


# --------------------------------------------------------------------------- XML


def _xml(b: _Builder, name: str) -> str:
    ns = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items())
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<bpmn:definitions {ns} id="definitions_{b.process_id}" '
             'targetNamespace="http://bpmn.io/schema/bpmn" exporter="crm-engine" exporterVersion="1">',
             f'  <bpmn:process id={quoteattr(b.process_id)} name={quoteattr(name)} isExecutable="true">']
    for n in b.nodes.values():
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in n.attrs.items())
        if n.id in b.defaults:
            attrs += f' default="{b.defaults[n.id]}"'
        named = f" name={quoteattr(n.name)}" if n.name else ""
        lines.append(f"    <bpmn:{n.tag} id={quoteattr(n.id)}{named}{attrs}>")
        if n.props:
            lines.append("      <bpmn:extensionElements>")
            lines.append("        <camunda:properties>")
            lines.extend(f"          <camunda:property name={quoteattr(k)} value={quoteattr(v)} />" for k, v in n.props)
            lines.append("        </camunda:properties>")
            lines.append("      </bpmn:extensionElements>")
        lines.extend(f"      <bpmn:incoming>{f}</bpmn:incoming>" for f in n.incoming)
        lines.extend(f"      <bpmn:outgoing>{f}</bpmn:outgoing>" for f in n.outgoing)
        lines.append(f"    </bpmn:{n.tag}>")
    for f in b.flows:
        head = f'    <bpmn:sequenceFlow id="{f.id}" sourceRef={quoteattr(f.source)} targetRef={quoteattr(f.target)}'
        if f.condition is None:
            lines.append(head + " />")
        else:
            lines.append(head + ">")
            lines.append(f'      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{escape(f.condition)}'
                         "</bpmn:conditionExpression>")
            lines.append("    </bpmn:sequenceFlow>")
    lines.append("  </bpmn:process>")
    lines.extend(_diagram(b))
    lines.append("</bpmn:definitions>")
    return "\n".join(lines) + "\n"


def _diagram(b: _Builder) -> list[str]:
    out = [f'  <bpmndi:BPMNDiagram id="diagram_{b.process_id}">',
           f'    <bpmndi:BPMNPlane id="plane_{b.process_id}" bpmnElement={quoteattr(b.process_id)}>']
    for n in b.nodes.values():
        w, h = n.size
        marker = ' isMarkerVisible="true"' if n.tag == "exclusiveGateway" else ""
        out.append(f'      <bpmndi:BPMNShape id="{n.id}_di" bpmnElement={quoteattr(n.id)}{marker}>')
        out.append(f'        <dc:Bounds x="{n.x:g}" y="{n.y:g}" width="{w}" height="{h}" />')
        out.append("      </bpmndi:BPMNShape>")
    for f in b.flows:
        out.append(f'      <bpmndi:BPMNEdge id="{f.id}_di" bpmnElement="{f.id}">')
        out.extend(f'        <di:waypoint x="{px:g}" y="{py:g}" />' for px, py in _waypoints(b, f))
        out.append("      </bpmndi:BPMNEdge>")
    out.append("    </bpmndi:BPMNPlane>")
    out.append("  </bpmndi:BPMNDiagram>")
    return out


def _waypoints(b: _Builder, f: _Flow) -> list[tuple[float, float]]:
    s, t = b.nodes[f.source], b.nodes[f.target]
    (sw, sh), (tw, th) = s.size, t.size
    scx, scy, tcx, tcy = s.x + sw / 2, s.y + sh / 2, t.x + tw / 2, t.y + th / 2
    if f.route == "above":
        top = _ROW_Y - _BRANCH_GAP - 40 if _has_branches(b) else _ROW_Y - 100
        return [(scx, s.y), (scx, top), (tcx, top), (tcx, t.y)]
    if f.route == "below":
        return [(scx, s.y + sh), (scx, tcy), (t.x, tcy)]
    if abs(scy - tcy) < 0.5:
        return [(s.x + sw, scy), (t.x, tcy)]
    if s.shape == "gateway":  # a split: leave from the top or bottom corner, then right
        return [(scx, s.y if tcy < scy else s.y + sh), (scx, tcy), (t.x, tcy)]
    return [(s.x + sw, scy), (tcx, scy), (tcx, t.y + th if tcy > scy else t.y)]


def _has_branches(b: _Builder) -> bool:
    return any(n.tag == "parallelGateway" for n in b.nodes.values())
