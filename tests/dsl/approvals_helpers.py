"""Helpers for the approval-flow tests: compile a small workspace, read errors, check BPMN XML and its DI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from engine.dsl.approvals.model import ApprovalFlow
from engine.dsl.compiler import compile_folder
from tests.dsl.config_helpers import errors_of, where

BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
BPMNDI = "{http://www.omg.org/spec/BPMN/20100524/DI}"
DC = "{http://www.omg.org/spec/DD/20100524/DC}"
DI = "{http://www.omg.org/spec/DD/20100524/DI}"
#: process children that are not drawn as a shape of their own
NOT_SHAPES = {"sequenceFlow", "laneSet", "extensionElements", "documentation"}
__all__ = ["errors_of", "where"]  # re-exported for the approval tests


def flow_of(folder: Path, name: str) -> ApprovalFlow:
    flow = compile_folder(folder).objects_of("approval")[name].compiled
    assert isinstance(flow, ApprovalFlow)
    return flow


def spiff_spec(xml: str, process_id: str):  # type: ignore[no-untyped-def]
    """The SpiffWorkflow spec CamundaParser makes of ``xml`` (the runtime's parser family)."""
    from SpiffWorkflow.camunda.parser import CamundaParser

    parser = CamundaParser()
    parser.add_bpmn_str(xml.encode("utf-8"))
    return parser.get_spec(process_id)


def missing_di(xml: str, process_id: str) -> list[str]:
    """Flow nodes without a BPMNShape with dc:Bounds, flows without a BPMNEdge with 2+ waypoints."""
    root = ET.fromstring(xml)
    proc = next(p for p in root.iter(f"{BPMN}process") if p.get("id") == process_id)
    nodes = [c.get("id") for c in proc if c.tag.startswith(BPMN) and c.tag[len(BPMN):] not in NOT_SHAPES]
    flows = [c.get("id") for c in proc if c.tag == f"{BPMN}sequenceFlow"]
    shapes = {s.get("bpmnElement"): s for s in root.iter(f"{BPMNDI}BPMNShape")}
    edges = {e.get("bpmnElement"): e for e in root.iter(f"{BPMNDI}BPMNEdge")}
    out = [f"shape {n}" for n in nodes if n not in shapes or shapes[n].find(f"{DC}Bounds") is None]
    out += [f"edge {f}" for f in flows if f not in edges or len(edges[f].findall(f"{DI}waypoint")) < 2]
    return out


def run_flow(flow: ApprovalFlow, record: dict[str, Any], decisions: dict[str, bool]) -> tuple[list[str], str]:
    """Run the flow's BPMN on SpiffWorkflow with conditions looked up in ``flow.expressions`` (never Python):
    each ready user task is decided as ``decisions`` says; the steps decided and the end event reached
    (``approved`` / ``rejected``, else ``end``).  ``eval`` and ``exec`` fail for the whole run."""
    import builtins

    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine  # noqa: F401  (imported before exec is patched:
    from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # noqa: F401  importing a module runs exec)
    from SpiffWorkflow.camunda.parser import CamundaParser  # noqa: F401
    from SpiffWorkflow.util.task import TaskState  # noqa: F401

    class Lookup(BasePythonScriptEngineEnvironment):
        def evaluate(self, expression: str, context: dict[str, Any], external_context: Any = None) -> Any:
            return flow.expressions[expression.strip()].evaluate({**record, **context})

        def execute(self, script: str, context: Any, external_context: Any = None) -> Any:
            raise AssertionError("no script may run")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("workflow text was run as Python")

    saved = builtins.eval, builtins.exec
    builtins.eval, builtins.exec = refuse, refuse  # type: ignore[assignment]
    try:
        return _drive(flow, record, decisions, Lookup)
    finally:
        builtins.eval, builtins.exec = saved


def _drive(flow: ApprovalFlow, record: dict[str, Any], decisions: dict[str, bool],
           lookup: type) -> tuple[list[str], str]:
    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState

    wf = BpmnWorkflow(spiff_spec(flow.bpmn_xml, flow.process_id),
                      script_engine=PythonScriptEngine(environment=lookup()))
    decided: list[str] = []
    wf.do_engine_steps()
    while not wf.is_completed():
        ready = wf.get_tasks(state=TaskState.READY, manual=True)
        assert ready, "the run is stuck"
        for task in ready:
            name = task.task_spec.name
            decided.append(name)
            task.set_data(approved=decisions.get(name, True), step=name)
            task.run()
        wf.do_engine_steps()
    ends = [t.task_spec.name for t in wf.get_tasks(state=TaskState.COMPLETED)
            if t.task_spec.name in ("approved", "rejected")]
    return decided, ends[0] if ends else "end"
