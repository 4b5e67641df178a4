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

from collections.abc import Mapping

from engine.dsl.approvals import juel
from engine.dsl.approvals.bpmntasks import BPMN, CAMUNDA, BpmnFlow, TaskReading
from engine.dsl.approvals.durations import timer_text
from engine.dsl.approvals.model import Timeout
from engine.dsl.approvals.scope import FORM_TYPES, FlowScope
from engine.dsl.approvals.xmltree import Element, parse
from engine.errors import ConfigError, SchemaViolation, SourceLocation, UnsupportedBpmn

__all__ = ["BpmnFlow", "read_bpmn"]
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


class _Reader(TaskReading):
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

