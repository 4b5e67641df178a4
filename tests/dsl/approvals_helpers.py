"""Helpers for the approval-flow tests: compile a small workspace, read errors, check BPMN XML and its DI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.dsl.approvals.model import ApprovalFlow
from engine.dsl.compiler import compile_folder
from engine.errors import ConfigError, ConfigErrors

BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
BPMNDI = "{http://www.omg.org/spec/BPMN/20100524/DI}"
DC = "{http://www.omg.org/spec/DD/20100524/DC}"
DI = "{http://www.omg.org/spec/DD/20100524/DI}"
#: process children that are not drawn as a shape of their own
NOT_SHAPES = {"sequenceFlow", "laneSet", "extensionElements", "documentation"}


def flow_of(folder: Path, name: str) -> ApprovalFlow:
    flow = compile_folder(folder).objects_of("approval")[name].compiled
    assert isinstance(flow, ApprovalFlow)
    return flow


def errors_of(folder: Path) -> list[ConfigError]:
    with pytest.raises(ConfigError) as info:
        compile_folder(folder)
    err = info.value
    return err.errors if isinstance(err, ConfigErrors) else [err]


def where(err: ConfigError) -> tuple[str, int, int]:
    assert err.location is not None, err
    return Path(err.location.file).name, err.location.line, err.location.col


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
