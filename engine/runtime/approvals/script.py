"""The only script engine approval workflows run with: it evaluates the flow's compiled expressions and
nothing else.

SpiffWorkflow's default engine hands every condition, timer and script to Python's ``eval``/``exec``.
Here :class:`FlowEnvironment.evaluate` looks the exact text up in ``flow.expressions`` (conditions, already
compiled and type-checked by the configuration language) or ``flow.timers`` (timer texts, answered with
their ISO 8601 form); any other text is refused with :class:`~engine.errors.WorkflowTextRefused`, and
``execute``/``call_service`` always refuse.  SpiffWorkflow drops a custom engine when a workflow is
deserialized, so :func:`engine.runtime.approvals.spec.restore` attaches a new one every time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.script_engine.python_environment import (  # type: ignore[import-untyped]
    BasePythonScriptEngineEnvironment,
)

from engine.dsl.approvals.model import FLOW_VARIABLES, ApprovalFlow
from engine.errors import WorkflowTextRefused

#: reads the record's current values (the engine reads the stored row when a gateway is evaluated)
RecordReader = Callable[[], Mapping[str, Any]]


def variables_of(flow: ApprovalFlow) -> Mapping[str, str]:
    """The variables the flow's expressions may read besides the record: :data:`FLOW_VARIABLES` and the
    task-data variables of a BPMN file's forms (``flow.extra["variables"]``)."""
    extra = flow.extra.get("variables") or {}
    return {**FLOW_VARIABLES, **extra}


def flow_values(flow: ApprovalFlow, record: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """What an expression of the flow reads: the task data's variables (unset: 0 for the counts, else
    null) under the record's fields (a field of the entity wins over a variable of the same name)."""
    values: dict[str, Any] = {}
    for name, kind in variables_of(flow).items():
        values[name] = data.get(name, 0 if kind == "integer" and name in FLOW_VARIABLES else None)
    values.update(record)
    return values


class FlowEnvironment(BasePythonScriptEngineEnvironment):  # type: ignore[misc]
    """Evaluation of one flow's texts over its record (see the module docstring).

    ``record`` returns the record's values; ``ctx`` is the expression context (user directory, clock,
    references); the flow variables (:data:`FLOW_VARIABLES`) come from the task data.
    """

    def __init__(self, flow: ApprovalFlow, record: RecordReader, ctx: Any) -> None:
        super().__init__({})
        self.flow = flow
        self.record = record
        self.ctx = ctx

    def evaluate(self, expression: str, context: Mapping[str, Any], external_context: Any = None) -> Any:
        text = expression if isinstance(expression, str) else str(expression)
        compiled = self.flow.expressions.get(text)
        if compiled is not None:
            return compiled.evaluate(flow_values(self.flow, self.record(), context), self.ctx)
        timer = self.flow.timers.get(text) or self.flow.timers.get(text.strip())
        if timer is not None:
            return timer.strip().strip("\"'")
        raise WorkflowTextRefused(
            f"flow {self.flow.name!r} has no compiled expression for the text {text!r}",
            code="workflow_text", details={"flow": self.flow.name, "text": text},
            hint="every condition and timer of a flow is compiled when the configuration is applied; "
                 "re-apply the configuration that defines this flow")

    def execute(self, script: str, context: Any, external_context: Any = None) -> Any:
        raise WorkflowTextRefused(f"flow {self.flow.name!r} tried to run a script; scripts are not allowed",
                                  code="workflow_script", details={"flow": self.flow.name})

    def call_service(self, context: Any, **kwargs: Any) -> Any:
        raise WorkflowTextRefused(f"flow {self.flow.name!r} tried to call a service from the script engine",
                                  code="workflow_script", details={"flow": self.flow.name})


class FlowScriptEngine(PythonScriptEngine):  # type: ignore[misc]
    """A PythonScriptEngine whose every path goes to :class:`FlowEnvironment` (no ``ast``/``eval``)."""

    def __init__(self, environment: FlowEnvironment) -> None:
        super().__init__(environment=environment)

    def validate(self, expression: str) -> None:
        """Texts are checked by the configuration language at compile time, not parsed as Python."""

    def evaluate(self, task: Any, expression: str, external_context: Any = None) -> Any:
        # the base class wraps every exception in WorkflowTaskException: keep ours as they are
        return self.environment.evaluate(expression, task.data, external_context)

    def execute(self, task: Any, script: str, external_context: Any = None) -> Any:
        return self.environment.execute(script, task.data, external_context)

    def call_service(self, task: Any, **kwargs: Any) -> Any:
        return self.environment.call_service(task.data, **kwargs)
