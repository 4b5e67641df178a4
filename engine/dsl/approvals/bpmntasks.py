"""The tasks of a BPMN file read into approval steps (user and manual tasks) and engine actions (service tasks).

Mixed into the reader of :mod:`engine.dsl.approvals.bpmnread`, which owns the structure checks; the
conventions are in that module's docstring and docs/approvals.md ("Conventions").
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import get_args

from engine.dsl.approvals import juel
from engine.dsl.approvals.durations import due_date, parse_any
from engine.dsl.approvals.model import ApprovalStep, Assignee, StepMode, Timeout, TimeoutThen
from engine.dsl.approvals.scope import FlowScope
from engine.dsl.approvals.xmltree import Element
from engine.dsl.expressions import CompiledExpression
from engine.dsl.model import frozen_map
from engine.errors import ConfigError, SchemaViolation

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
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


class TaskReading:
    """Reading tasks; the reader provides ``scope``, ``flow_timeout``, ``errors``, ``ok``, ``fail`` and ``refuse``."""

    scope: FlowScope
    flow_timeout: Timeout | None
    errors: int
    ok: bool
    fail: Callable[[ConfigError], None]
    refuse: Callable[..., None]

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
