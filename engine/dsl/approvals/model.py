"""The compiled form of an ``approval:`` document -- the contract between the configuration language
(:mod:`engine.dsl.approvals`, pure: no SpiffWorkflow) and the approvals runtime
(:mod:`engine.runtime.approvals`, which runs the flow's BPMN on SpiffWorkflow).

Whether a flow was written as YAML ``steps:`` (the shorthand, compiled here to BPMN XML with diagram
coordinates) or drawn in a modeler (``bpmn:`` + ``process:``), it reaches the runtime the same way: BPMN
XML text plus, per user task, an :class:`ApprovalStep` saying who decides and how.  Every expression
in the BPMN (gateway and flow conditions, JUEL ``${...}`` translated; timer durations) is compiled and
type-checked here and handed over keyed by the *exact text* that appears in the XML, so the runtime's
script engine looks expressions up and never evaluates BPMN text itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from engine.dsl.expressions import CompiledExpression
from engine.dsl.model import Label
from engine.errors import SourceLocation

#: variables a condition may read besides the record's fields: the last decision (``approved``),
#: the step that made it (``step``) and the decisions so far (``approvals``/``rejections`` counts)
FLOW_VARIABLES: Mapping[str, str] = MappingProxyType({
    "approved": "boolean", "step": "string", "approvals": "integer", "rejections": "integer",
})

AssigneeKind = Literal["user", "role", "team", "expression"]
StepMode = Literal["any", "all", "ratio", "sequential"]
TimeoutThen = Literal["escalate", "auto_approve", "auto_reject", "remind"]
ActionKind = Literal["set", "stage", "start"]
TriggerEvent = Literal["create", "update", "submit"]


@dataclass(frozen=True, slots=True)
class Assignee:
    """Who may decide: a user by name, everyone holding a role, the members of a team, or an
    expression over the record returning a user (``manager_of(owner)``,
    ``manager_of(manager_of(owner))``, ``owner``)."""

    kind: AssigneeKind
    value: str
    expression: CompiledExpression | None = None
    location: SourceLocation | None = None

    def describe(self) -> str:
        return self.value if self.kind == "expression" else f"{self.kind} {self.value}"


@dataclass(frozen=True, slots=True)
class Timeout:
    """No decision ``after`` the task was created: remind every ``remind_every``, then ``then``."""

    after: dt.timedelta
    remind_every: dt.timedelta | None = None
    then: TimeoutThen = "remind"
    escalate_to: tuple[Assignee, ...] = ()
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class ApprovalStep:
    """One BPMN user task seen as an approval step.

    ``id`` is the BPMN element id (shorthand: the step's ``name``).  ``assignees`` come from the
    shorthand's ``assignee``/``approvers`` or from ``camunda:assignee`` / ``candidateUsers`` /
    ``candidateGroups`` / the task's lane (a lane name is a role).  ``mode``: ``any`` (或签, the first
    approval completes the step), ``all`` (会签), ``ratio`` (会签 by share: ``ratio`` of the approvers),
    ``sequential`` (依次: the approvers one after another).  One rejection rejects the step in every mode
    (in ``ratio`` mode: once the ratio can no longer be reached).  ``due``: ``camunda:dueDate`` or the
    timeout.  ``editable``: record fields the approver may change while deciding."""

    id: str
    name: str
    label: Label
    assignees: tuple[Assignee, ...]
    mode: StepMode = "any"
    ratio: float | None = None
    timeout: Timeout | None = None
    editable: tuple[str, ...] = ()
    lane: str | None = None
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """An outcome action: ``set`` fields (values are expressions over the record), move to ``stage``
    (through the pipeline's gate), or ``start`` another flow on the same record."""

    kind: ActionKind
    values: Mapping[str, CompiledExpression] = field(default_factory=lambda: MappingProxyType({}))
    stage: str | None = None
    flow: str | None = None
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class Trigger:
    """When an instance starts: on these record events, if ``when`` holds (``submit``: the API's
    ``POST /records/<entity>/<id>/submit`` only).  A record with a pending instance of the flow does not
    start a second one."""

    on: tuple[TriggerEvent, ...]
    when: CompiledExpression | None = None
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class ApprovalFlow:
    """A compiled ``approval:`` document.

    ``bpmn_xml``: the BPMN 2.0 text the runtime parses (generated with DI for the shorthand, the file's
    text for ``bpmn:``); ``process_id`` the executable process in it; ``source`` the file it came from.
    ``expressions``: every expression text found in the BPMN (condition bodies exactly as written,
    ``${...}`` included, and timer texts) -> its compiled form (conditions boolean over the record plus
    :data:`FLOW_VARIABLES`); ``timers``: timer text -> ISO 8601 duration/date text, quoted or not in the
    file.  ``service_actions``: service task id -> registered action name.  ``migrate``: old step id ->
    new step id for instances running on an older revision.  ``digest``: a hash of everything that
    changes behaviour (a new digest is a new version of the flow)."""

    name: str
    entity: str
    label: Label
    trigger: Trigger
    process_id: str
    bpmn_xml: str
    source: str
    steps: Mapping[str, ApprovalStep]
    expressions: Mapping[str, CompiledExpression] = field(default_factory=lambda: MappingProxyType({}))
    timers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    service_actions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    lock_record: bool = True
    editable_while_pending: tuple[str, ...] = ()
    cc: tuple[Assignee, ...] = ()
    timeout: Timeout | None = None
    on_approved: tuple[Action, ...] = ()
    on_rejected: tuple[Action, ...] = ()
    on_withdrawn: tuple[Action, ...] = ()
    migrate: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    status_field: str | None = "approval_status"
    digest: str = ""
    shorthand: bool = False
    location: SourceLocation | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
