"""Reading a ``bpmn:`` file drawn in a modeler (Camunda Modeler, bpmn.io) into approval steps.

Every problem is reported as a :class:`~engine.errors.ConfigError` located at ``file.bpmn:line:col`` of
the element it is about (positions from :mod:`engine.dsl.approvals.xmltree`); nothing in the file is
ever evaluated.  What is supported, element by element (anything else is named with its id and refused):

* events: ``startEvent`` (no event definition), ``endEvent`` (plain or terminate),
  ``intermediateThrowEvent`` (plain: a milestone), ``intermediateCatchEvent`` and ``boundaryEvent`` with a
  timer (``timeDuration`` / ``timeDate`` / ``timeCycle``, ISO 8601, quoted or not);
* tasks: ``userTask`` and ``manualTask`` (approval steps), ``serviceTask`` (an engine action, named by a
  ``crm:action`` property, ``camunda:class``, ``camunda:delegateExpression`` or ``camunda:topic``);
* gateways: exclusive, parallel, inclusive; ``sequenceFlow`` with a ``conditionExpression`` in the
  expression language (JUEL ``${...}`` translated, :mod:`engine.dsl.approvals.juel`);
* lanes (a lane's name is a role), pools (``collaboration``/``participant``), text annotations, groups.

Refused: script tasks and every script (``camunda:script``, listeners, ``spiffworkflow:preScript``),
business rule tasks (DMN), send/receive tasks, call activities and sub-processes, complex and
event-based gateways, data objects and data stores, loops and multi-instance markers (use ``crm:mode``
instead), message/signal/error/escalation/compensation/conditional/link events and message flows.

A user task's assignees: ``camunda:assignee`` (a username, or ``${expression}`` giving a user),
``camunda:candidateUsers``, ``camunda:candidateGroups`` (roles), a ``crm:team`` property, else its lane's
role; a user task naming nobody is an error, a manual task naming nobody is the record owner's.  The
``crm:`` properties (``crm:mode``, ``crm:ratio``, ``crm:timeout``, ``crm:remind_every``, ``crm:then``,
``crm:editable``) mean what the shorthand's keys mean; ``camunda:dueDate`` (an ISO duration or
``${dateTime().plusDays(N).toDate()}``) is a reminding timeout when ``crm:timeout`` is not given.
Variables a condition may read besides the record and the flow variables: the fields of the file's
``camunda:formData`` forms (task data a decision sets); a bare ``${name}`` assignee that is no field
names a task-data variable holding a username.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

from engine.dsl.approvals import juel
from engine.dsl.approvals.durations import due_date, parse_any, timer_text
from engine.dsl.approvals.model import ApprovalStep, Assignee, StepMode, Timeout, TimeoutThen
from engine.dsl.approvals.scope import FORM_TYPES, FlowScope
from engine.dsl.approvals.xmltree import Element, parse
from engine.dsl.expressions import CompiledExpression
from engine.dsl.model import frozen_map
from engine.errors import ConfigError, SchemaViolation, SourceLocation, UnsupportedBpmn

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
DI_NAMESPACES = ("http://www.omg.org/spec/BPMN/20100524/DI", "http://www.omg.org/spec/DD/20100524/DC",
                 "http://www.omg.org/spec/DD/20100524/DI")


#: flow elements of a process that run, and the child elements each may hold
_NODES = {"startEvent", "endEvent", "intermediateThrowEvent", "intermediateCatchEvent", "boundaryEvent",
          "userTask", "manualTask", "serviceTask", "exclusiveGateway", "parallelGateway", "inclusiveGateway"}
_HARMLESS = {"sequenceFlow", "laneSet", "textAnnotation", "association", "group", "documentation",
             "extensionElements", "incoming", "outgoing", "conditionExpression", "timerEventDefinition",
             "timeDuration", "timeDate", "timeCycle", "lane", "flowNodeRef", "childLaneSet", "text",
             "terminateEventDefinition", "category", "categoryValue"}
#: top-level definitions that do nothing unless referenced (references are refused where they occur)
_DEFINITIONS = {"process", "collaboration", "participant", "message", "signal", "error", "escalation",
                "itemDefinition", "dataStore", "dataState", "category", "categoryValue", "extensionElements",
                "documentation", "BPMNDiagram", "import", "interface", "operation", "resource"}
_WHY = {
    "scriptTask": "script tasks are not run: use a service task mapped to an engine action",
    "businessRuleTask": "business rule tasks (DMN decisions) are not run: use an exclusive gateway with "
                        "conditions in the expression language",
    "sendTask": "send tasks are not run: use a service task mapped to an engine action",
    "receiveTask": "receive tasks are not run: use a user task or a timer",
    "callActivity": "call activities are not run: draw the called process's steps in this process",
    "subProcess": "sub-processes are not run: draw their steps in the process itself",
    "adHocSubProcess": "ad-hoc sub-processes are not run",
    "transaction": "transactions are not run",
    "complexGateway": "complex gateways are not run: use an exclusive, parallel or inclusive gateway",
    "eventBasedGateway": "event-based gateways are not run: use a boundary timer on the task",
    "dataStoreReference": "data stores are not supported: the flow reads and writes its record",
    "dataObjectReference": "data objects are not supported: the flow reads and writes its record",
    "dataObject": "data objects are not supported: the flow reads and writes its record",
    "dataInputAssociation": "data input associations are not supported",
    "dataOutputAssociation": "data output associations are not supported",
    "ioSpecification": "input/output specifications are not supported",
    "property": "task properties (data associations) are not supported",
    "multiInstanceLoopCharacteristics": "multi-instance markers are not run: set crm:mode (all, any, ratio, "
                                        "sequential) and name several assignees",
    "standardLoopCharacteristics": "loop markers are not run: draw the loop with a gateway",
    "messageEventDefinition": "message events are not supported",
    "signalEventDefinition": "signal events are not supported",
    "errorEventDefinition": "error events are not supported",
    "escalationEventDefinition": "escalation events are not supported: use crm:then on the task",
    "compensateEventDefinition": "compensation events are not supported",
    "conditionalEventDefinition": "conditional events are not supported: use a gateway",
    "linkEventDefinition": "link events are not supported: draw the sequence flow",
    "cancelEventDefinition": "cancel events are not supported",
    "messageFlow": "message flows are not supported",
    "task": "a task with no type is not run: make it a user task (a decision) or a service task (an action)",
}
#: the ``crm:`` properties a task may carry (docs/approvals.md, "Conventions")
CRM_PROPERTIES = ("crm:mode", "crm:ratio", "crm:timeout", "crm:remind_every", "crm:then", "crm:editable",
                  "crm:team", "crm:assignees", "crm:action")
_MODES = get_args(StepMode)
_THEN = tuple(t for t in get_args(TimeoutThen) if t != "escalate")


@dataclass
class BpmnFlow:
    """What a BPMN file gives the compiled flow (see :class:`~engine.dsl.approvals.model.ApprovalFlow`)."""

    process_id: str
    steps: dict[str, ApprovalStep] = field(default_factory=dict)
    expressions: dict[str, CompiledExpression] = field(default_factory=dict)
    timers: dict[str, str] = field(default_factory=dict)
    service_actions: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)


def read_bpmn(text: str, file: str, process_id: str, scope: FlowScope, *,
              process_at: SourceLocation | None, flow_timeout: Timeout | None) -> BpmnFlow | None:
    """Check ``text`` (the BPMN file ``file``) and read process ``process_id``; None when it cannot run."""
    try:
        root = parse(text, file)
    except ConfigError as e:
        scope.report(e)
        return None
    reader = _Reader(root, scope, flow_timeout)
    return reader.read(process_id, process_at)


class _Reader:
    def __init__(self, root: Element, scope: FlowScope, flow_timeout: Timeout | None) -> None:
        self.root = root
        self.scope = scope
        self.flow_timeout = flow_timeout
        self.ok = True
        self.errors = 0
        self._report = scope.report
        scope.report = self._counted

    def _counted(self, error: ConfigError) -> None:
        self.ok = False
        self.errors += 1
        self._report(error)

    def fail(self, error: ConfigError) -> None:
        self._counted(error)

    def refuse(self, el: Element, why: str | None = None) -> None:
        self.fail(UnsupportedBpmn(f"{el.describe()}: {why or _WHY.get(el.tag) or 'this element is not supported'}",
                                  location=el.location,
                                  hint="see docs/approvals.md, 'BPMN conventions', for what the engine runs"))

    def read(self, process_id: str, process_at: SourceLocation | None) -> BpmnFlow | None:
        if self.root.ns != BPMN or self.root.tag != "definitions":
            self.fail(UnsupportedBpmn(f"the file's root element is {self.root.tag!r}, not a BPMN 2.0 "
                                      "'definitions'", location=self.root.location,
                                      hint="save the diagram as BPMN 2.0 XML"))
            return None
        processes = {p.get("id") or "": p for p in self.root.find_all(BPMN, "process")}
        proc = processes.get(process_id)
        if proc is None:
            ids = ", ".join(repr(i) for i in processes) or "none"
            self.fail(SchemaViolation(f"the BPMN file {self.root.location.file} has no process {process_id!r} "
                                      f"(processes: {ids})", location=process_at or self.root.location,
                                      hint="name the id of the process (the 'id' of its bpmn:process element)"))
            return None
        if (proc.get("isExecutable") or "").lower() != "true":
            self.fail(SchemaViolation(f"process {process_id!r} is not executable", location=proc.location,
                                      hint='tick "Executable" in the modeler (isExecutable="true")'))
        self._check_top()
        out = BpmnFlow(process_id)
        self.scope.add_variables(self._form_variables(proc))
        out.variables.update({k: v for k, v in self.scope.variables.items()})
        lanes = self._lanes(proc)
        nodes = {c.get("id"): c for c in proc.children if c.ns == BPMN and c.tag != "sequenceFlow" and c.get("id")}
        self._check_tree(proc)
        for child in proc.children:
            if child.ns != BPMN:
                continue
            if child.tag in ("userTask", "manualTask"):
                step = self._step(child, lanes, out)
                if step is not None:
                    out.steps[step.id] = step
            elif child.tag == "serviceTask":
                self._service(child, out)
            elif child.tag == "sequenceFlow":
                self._flow(child, nodes, out)
            elif child.tag in ("boundaryEvent", "intermediateCatchEvent"):
                self._timer_event(child, out)
        for v in ("approved", "step", "approvals", "rejections"):
            out.variables.pop(v, None)
        return out if self.ok else None

    # ----------------------------------------------------------------- structure

    def _check_top(self) -> None:
        for child in self.root.children:
            if child.ns in DI_NAMESPACES:
                continue
            if child.ns == BPMN and child.tag == "collaboration":
                for c in child.children:
                    if c.ns == BPMN and c.tag not in ("participant", "documentation", "extensionElements",
                                                      "textAnnotation", "association", "group"):
                        self.refuse(c)
            elif child.ns == BPMN and child.tag not in _DEFINITIONS:
                self.refuse(child)

    def _check_tree(self, proc: Element) -> None:
        """Every element below ``proc``; nothing below a refused element is reported again."""
        todo = list(reversed(proc.children))
        while todo:
            el = todo.pop()
            if self._check_element(el):
                todo.extend(reversed(el.children))

    def _check_element(self, el: Element) -> bool:
        """Report ``el`` if it is refused (then False: its children are not looked at)."""
        before = self.errors
        self._check_one(el)
        return self.errors == before

    def _check_one(self, el: Element) -> None:
        if el.ns == BPMN:
            if el.tag in _WHY or (el.tag not in _NODES and el.tag not in _HARMLESS):
                self.refuse(el)
            elif el.tag == "startEvent" and any(c.tag.endswith("EventDefinition") for c in el.children):
                self.refuse(el, "a start event with a trigger is not run: the flow starts from its record's trigger")
            elif el.tag == "intermediateThrowEvent" and any(c.tag.endswith("EventDefinition") for c in el.children):
                self.refuse(el, "throw events with a definition are not supported")
            elif el.tag in ("boundaryEvent", "intermediateCatchEvent") and \
                    not el.find_all(BPMN, "timerEventDefinition") and not any(c.tag in _WHY for c in el.children):
                self.refuse(el, "only timer events are supported here")
            return
        if el.tag in ("script", "preScript", "postScript"):
            self.refuse(el, "scripts are not run: conditions use the expression language, actions are service tasks")
        elif el.ns == CAMUNDA and el.tag in ("taskListener", "executionListener"):
            self.refuse(el, "listeners are not run: use a service task mapped to an engine action")
        elif el.ns == CAMUNDA and el.tag in ("inputOutput", "connector"):
            self.refuse(el, "input/output mappings and connectors are not run")

    def _lanes(self, proc: Element) -> dict[str, tuple[str | None, Element]]:
        out: dict[str, tuple[str | None, Element]] = {}
        for lane in proc.iter():
            if lane.ns == BPMN and lane.tag == "lane":
                name = lane.get("name")
                for ref in lane.find_all(BPMN, "flowNodeRef"):
                    out[ref.text] = ((name.strip() or None) if name else None, lane)
        return out

    def _form_variables(self, proc: Element) -> dict[str, str]:
        out: dict[str, str] = {}
        for el in proc.iter():
            if el.ns == CAMUNDA and el.tag == "formField" and el.get("id"):
                out[el.get("id") or ""] = FORM_TYPES.get(el.get("type") or "string", "string")
        return out

    # ----------------------------------------------------------------- tasks

    def _props(self, el: Element) -> dict[str, str]:
        out: dict[str, str] = {}
        for ext in el.find_all(BPMN, "extensionElements"):
            for props in ext.children:
                if props.tag == "properties":
                    for p in props.children:
                        name = p.get("name") or ""
                        if p.tag != "property" or not name:
                            continue
                        if name.startswith("crm:") and name not in CRM_PROPERTIES:
                            close = difflib.get_close_matches(name, CRM_PROPERTIES, n=1)
                            self.fail(SchemaViolation(f"{el.describe()}: unknown property {name!r}",
                                                      location=p.location,
                                                      hint=f"did you mean {close[0]!r}?" if close else
                                                      f"the crm: properties are {', '.join(CRM_PROPERTIES)}"))
                            continue
                        out[name] = p.get("value") or p.text
        return out

    def _step(self, el: Element, lanes: Mapping[str, tuple[str | None, Element]], out: BpmnFlow) -> ApprovalStep | None:
        sid = el.get("id") or ""
        props = self._props(el)
        where = el.location
        before = self.errors
        assignees = self._assignees(el, props, out)
        lane_name, lane_el = lanes.get(sid, (None, None))
        if not assignees and self.errors == before and lane_name is not None and lane_el is not None:
            if self.scope.check_role(lane_name, lane_el.location, f"lane {lane_name!r} of {el.describe()}"):
                assignees.append(Assignee("role", lane_name, location=lane_el.location))
            else:
                self.ok = False
                return None
        if not assignees and self.errors > before:
            return None
        if not assignees:
            if el.tag == "manualTask":
                owner = self.scope.assignee("owner", where)
                assignees.append(Assignee("expression", "owner", owner, where))
            else:
                self.fail(SchemaViolation(f"{el.describe()} names nobody to decide", location=where,
                                          hint="set camunda:assignee, candidate users or groups, or put the task "
                                               "in a lane named after a role"))
                return None
        mode = props.get("crm:mode", "any")
        if mode not in _MODES:
            self.fail(SchemaViolation(f"{el.describe()}: crm:mode {mode!r} is not one of {', '.join(_MODES)}",
                                      location=where))
            mode = "any"
        ratio = self._ratio(el, props, mode)
        editable = self.scope.check_fields(
            [f.strip() for f in props.get("crm:editable", "").split(",") if f.strip()], lambda i: where,
            f"{el.describe()} crm:editable")
        name = (el.get("name") or "").strip()
        return ApprovalStep(sid, sid, frozen_map({"en": name or sid}), tuple(assignees), mode,  # type: ignore[arg-type]
                            ratio, self._timeout(el, props), editable, lane_name, where)

    def _assignees(self, el: Element, props: Mapping[str, str], out: BpmnFlow) -> list[Assignee]:
        where = el.location
        found: list[Assignee] = []
        raw = el.get("assignee", CAMUNDA)
        if raw and raw.strip():
            found.extend(self._assignee_text(raw.strip(), el, out))
        for extra in (props.get("crm:assignees") or "").split(";"):
            if extra.strip():
                compiled = self.scope.assignee(extra.strip(), where, where=where)
                if compiled is not None:
                    found.append(Assignee("expression", extra.strip(), compiled, where))
        for attr, kind in (("candidateUsers", "user"), ("candidateGroups", "role")):
            text = el.get(attr, CAMUNDA)
            if not text:
                continue
            if "${" in text or "#{" in text:
                self.refuse(el, f"camunda:{attr} {text!r} is an expression: name the "
                                f"{'users' if kind == 'user' else 'roles'} (comma-separated)")
                continue
            for name in (n.strip() for n in text.split(",")):
                if name and (kind == "user" or self.scope.check_role(name, where, f"{el.describe()} camunda:{attr}")):
                    found.append(Assignee(kind, name, location=where))  # type: ignore[arg-type]
                elif name:
                    self.ok = False
        for team in (t.strip() for t in (props.get("crm:team") or "").split(",")):
            if team:
                found.append(Assignee("team", team, location=where))
        return found

    def _assignee_text(self, raw: str, el: Element, out: BpmnFlow) -> list[Assignee]:
        where = el.location
        if not juel.unwrap(raw)[1]:
            return [Assignee("user", raw, location=where)]
        var = juel.bare_name(raw)
        extra: dict[str, str] = {}
        if var is not None and var not in self.scope.entity.fields and var not in self.scope.variables \
                and var not in ("owner", "created_by", "updated_by"):
            extra[var] = "string"
            out.variables[var] = "string"
        text = juel.translate(raw)
        compiled = self.scope.assignee(text, where, where=where, variables=extra)
        if compiled is None:
            self.ok = False
            return []
        return [Assignee("expression", text, compiled, where)]

    def _ratio(self, el: Element, props: Mapping[str, str], mode: str) -> float | None:
        text = props.get("crm:ratio")
        if text is None:
            if mode == "ratio":
                self.fail(SchemaViolation(f"{el.describe()}: crm:mode ratio needs a crm:ratio (e.g. 0.6)",
                                          location=el.location))
            return None
        try:
            ratio = float(text)
        except ValueError:
            ratio = -1.0
        if not 0 < ratio <= 1:
            self.fail(SchemaViolation(f"{el.describe()}: crm:ratio {text!r} is not a share between 0 and 1",
                                      location=el.location, hint="e.g. 0.6: 3 of 5 approvers"))
            return None
        return ratio

    def _timeout(self, el: Element, props: Mapping[str, str]) -> Timeout | None:
        where = el.location
        if "crm:timeout" in props:
            return self._crm_timeout(el, props)
        due = el.get("dueDate", CAMUNDA)
        if due:
            delta = due_date(due)
            if delta is None:
                self.refuse(el, f"camunda:dueDate {due!r} is not understood: write an ISO 8601 duration such as "
                                "P2D, or set crm:timeout")
                return None
            return Timeout(delta, None, "remind", (), where)
        return self.flow_timeout

    def _crm_timeout(self, el: Element, props: Mapping[str, str]) -> Timeout | None:
        where = el.location
        after = parse_any(props["crm:timeout"])
        remind_text = props.get("crm:remind_every")
        remind = parse_any(remind_text) if remind_text else None
        if after is None or (remind_text and remind is None):
            bad = props["crm:timeout"] if after is None else remind_text
            self.fail(SchemaViolation(f"{el.describe()}: duration {bad!r} is not understood", location=where,
                                      hint="write 30m, 48h, 3d, 2w or ISO 8601 (PT48H)"))
            return None
        then_text = (props.get("crm:then") or "remind").strip()
        escalate: tuple[Assignee, ...] = ()
        if then_text.startswith("escalate_to"):
            escalate = tuple(self._target(t.strip(), el) for t in then_text[len("escalate_to"):].split(";")
                             if t.strip())
            then = "escalate"
            if not escalate:
                self.fail(SchemaViolation(f"{el.describe()}: crm:then escalate_to names nobody", location=where,
                                          hint="e.g. escalate_to role:sales_director"))
        elif then_text in _THEN:
            then = then_text
        else:
            self.fail(SchemaViolation(f"{el.describe()}: crm:then {then_text!r} is not one of "
                                      f"{', '.join(_THEN)}, escalate_to ...", location=where))
            return None
        return Timeout(after, remind, then, escalate, where)  # type: ignore[arg-type]

    def _target(self, text: str, el: Element) -> Assignee:
        kind, sep, value = text.partition(":")
        if sep and kind in ("role", "team", "user"):
            if kind == "role" and not self.scope.check_role(value, el.location, f"{el.describe()} crm:then"):
                self.ok = False
            return Assignee(kind, value, location=el.location)  # type: ignore[arg-type]
        compiled = self.scope.assignee(text, el.location, where=el.location)
        if compiled is None:
            self.ok = False
        return Assignee("expression", text, compiled, el.location)

    def _service(self, el: Element, out: BpmnFlow) -> None:
        props = self._props(el)
        name = props.get("crm:action") or el.get("class", CAMUNDA) or el.get("delegateExpression", CAMUNDA) \
            or el.get("topic", CAMUNDA)
        if el.get("expression", CAMUNDA):
            self.refuse(el, "camunda:expression is not run: name the engine action with a crm:action property")
        elif not name:
            self.refuse(el, "names no engine action: add a crm:action property (or camunda:class)")
        else:
            out.service_actions[el.get("id") or ""] = name.strip()

    # ----------------------------------------------------------------- flows and timers

    def _flow(self, el: Element, nodes: Mapping[str | None, Element], out: BpmnFlow) -> None:
        for attr in ("sourceRef", "targetRef"):
            ref = el.get(attr)
            if ref not in nodes:
                self.fail(SchemaViolation(f"{el.describe()}: {attr} {ref!r} is not an element of the process",
                                          location=el.location))
        for cond in el.find_all(BPMN, "conditionExpression"):
            text = cond.text
            language = (cond.get("language") or "").lower()
            if language not in ("", "juel", "crm", "expression"):
                self.refuse(cond, f"conditions in {cond.get('language')!r} are not run: write them in the "
                                  "expression language")
                continue
            if not text:
                continue
            translated = juel.translate(text)
            compiled = self.scope.condition(translated, cond.location, where=cond.location, shown=text)
            if compiled is None:
                self.ok = False
            else:
                out.expressions[text] = compiled

    def _timer_event(self, el: Element, out: BpmnFlow) -> None:
        for tdef in el.find_all(BPMN, "timerEventDefinition"):
            for t in tdef.children:
                if t.ns != BPMN or t.tag not in ("timeDuration", "timeDate", "timeCycle"):
                    continue
                text = t.text
                iso = timer_text(t.tag, text) if "${" not in text and "#{" not in text else None
                if iso is None:
                    self.fail(SchemaViolation(f"{el.describe()}: {t.tag} {text!r} is not an ISO 8601 "
                                              f"{'duration' if t.tag == 'timeDuration' else 'date-time or cycle'}",
                                              location=t.location, hint="e.g. PT10M, P2D, 2026-01-31T09:00:00Z, "
                                                                        "R3/PT1H (quoted or not)"))
                    continue
                out.timers[text] = iso
                out.expressions[text] = self.scope.literal(iso)

