"""Process specs and instance state: parsing once per flow digest, serializing without the spec.

* :func:`parsed` parses a flow's BPMN with :class:`FlowParser` (CamundaParser that refuses script tasks,
  a second line of defence after the configuration language's check) once per ``(digest, process)`` in
  this process: a bounded LRU, so a request never parses after the first one of its flow version.
* :func:`spec_json` is the process spec (and its subprocess specs) as JSON, stored once per digest in
  ``crm_approval_specs``; :func:`dump` turns a workflow into its state *without* the spec (about half
  the size and time), with :data:`STATE_FORMAT`; :func:`restore` rebuilds the workflow from the state and
  the spec and attaches the flow's script engine (SpiffWorkflow drops a custom one on deserialize).
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from SpiffWorkflow.bpmn.parser.BpmnParser import full_tag  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.defaults import ScriptTask  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # type: ignore[import-untyped]
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser  # type: ignore[import-untyped]
from SpiffWorkflow.camunda.parser.task_spec import ScriptTaskParser  # type: ignore[import-untyped]
from SpiffWorkflow.camunda.serializer import DEFAULT_CONFIG  # type: ignore[import-untyped]

from engine.dsl.approvals.model import ApprovalFlow
from engine.errors import WorkflowTextRefused
from engine.runtime.approvals.script import FlowScriptEngine

#: version of the stored instance state (``crm_approval_instances.state["format"]``); one migration
#: function per version in :data:`STATE_MIGRATIONS`
STATE_FORMAT = 1
SPEC_CACHE_SIZE = 256


class RefusedScriptTaskParser(ScriptTaskParser):  # type: ignore[misc]
    """Refuses every ``scriptTask`` (the configuration language refuses them first, with a location)."""

    def create_task(self) -> Any:
        raise ValidationException("script tasks are not allowed in approval flows", node=self.node,
                                  file_name=self.filename)


class FlowParser(CamundaParser):  # type: ignore[misc]
    """CamundaParser with script tasks refused."""

    OVERRIDE_PARSER_CLASSES = {**CamundaParser.OVERRIDE_PARSER_CLASSES,
                               full_tag("scriptTask"): (RefusedScriptTaskParser, ScriptTask)}


@dataclass(frozen=True, slots=True)
class ParsedFlow:
    """A flow version's process spec and the specs of its subprocesses (shared, never mutated)."""

    digest: str
    process_id: str
    spec: Any
    subprocess_specs: Mapping[str, Any]
    #: the JSON text of ``spec`` / ``subprocess_specs`` (what ``crm_approval_specs`` stores); text, because
    #: SpiffWorkflow's ``from_dict`` changes the dicts it is given: each use parses a fresh copy
    spec_text: str
    subprocess_text: str

    def spec_dict(self) -> dict[str, Any]:
        return json.loads(self.spec_text)  # type: ignore[no-any-return]

    def subprocess_dicts(self) -> dict[str, Any]:
        return json.loads(self.subprocess_text)  # type: ignore[no-any-return]


def flow_digest(flow: ApprovalFlow) -> str:
    """The flow's version key: its compiled digest, or a hash of its BPMN text when it has none."""
    if flow.digest:
        return flow.digest
    import hashlib

    return hashlib.sha256(f"{flow.process_id}\n{flow.bpmn_xml}".encode()).hexdigest()


def parsed(flow: ApprovalFlow) -> ParsedFlow:
    """The parsed spec of ``flow`` (parsed on the first call for its digest in this process)."""
    return _parse(flow_digest(flow), flow.process_id, flow.bpmn_xml, flow.source or flow.name)


@functools.lru_cache(maxsize=SPEC_CACHE_SIZE)
def _parse(digest: str, process_id: str, xml: str, source: str) -> ParsedFlow:
    parser = FlowParser()
    try:
        parser.add_bpmn_str(xml.encode("utf-8"), filename=source)
        spec = parser.get_spec(process_id)
        subs = parser.get_subprocess_specs(process_id)
    except ValidationException as e:
        raise WorkflowTextRefused(f"the BPMN of flow version {digest[:12]} does not load: {e}",
                                  code="workflow_bpmn") from e
    return _parsed_from(digest, process_id, spec, subs)


def _parsed_from(digest: str, process_id: str, spec: Any, subs: Mapping[str, Any]) -> ParsedFlow:
    s = serializer()
    return ParsedFlow(digest, process_id, spec, dict(subs), json.dumps(s.to_dict(spec), default=str),
                      json.dumps({k: s.to_dict(v) for k, v in subs.items()}, default=str))


def from_spec_json(digest: str, data: Mapping[str, Any]) -> ParsedFlow:
    """A parsed flow rebuilt from its stored JSON (an instance of an older flow version)."""
    cached = _stored.get(digest)
    if cached is None:
        s = serializer()
        spec = s.from_dict(json.loads(json.dumps(data["spec"])))
        subs = {k: s.from_dict(json.loads(json.dumps(v))) for k, v in data["subprocess_specs"].items()}
        cached = _parsed_from(digest, spec.name, spec, subs)
        _stored.put(digest, cached)
    return cached


class _Lru:
    """A small thread-safe LRU of parsed specs of older flow versions, by digest (per process)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[str, ParsedFlow] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> ParsedFlow | None:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key: str, value: ParsedFlow) -> None:
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)


#: a per-process cache (like the functools caches above): specs are immutable once parsed
_stored = _Lru(SPEC_CACHE_SIZE)

#: dates through ``default=str`` (as ``json.dumps(default=str)`` wrote them); dict keys of any type as text
_AS_JSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS



def _plain(value: Any) -> Any:
    """``value`` through JSON text: a plain-JSON copy (orjson; the json module for what orjson refuses,
    such as an integer beyond 64 bits in a form's data)."""
    try:
        return orjson.loads(orjson.dumps(value, default=str, option=_AS_JSON))
    except (TypeError, orjson.JSONEncodeError):
        return json.loads(json.dumps(value, default=str))


@functools.lru_cache(maxsize=1)
def serializer() -> BpmnWorkflowSerializer:
    """The serializer for CamundaParser specs (the bpmn default cannot write Camunda user tasks)."""
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(DEFAULT_CONFIG))


def spec_json(p: ParsedFlow) -> dict[str, Any]:
    """The JSON form of a parsed flow, as ``crm_approval_specs.spec`` stores it."""
    return {"format": STATE_FORMAT, "spec": p.spec_dict(), "subprocess_specs": p.subprocess_dicts()}


def new_workflow(p: ParsedFlow, engine: FlowScriptEngine) -> BpmnWorkflow:
    """A new workflow of the parsed flow, running with ``engine``."""
    return BpmnWorkflow(p.spec, dict(p.subprocess_specs), script_engine=engine)


def dump(wf: BpmnWorkflow) -> dict[str, Any]:
    """The workflow's state without its spec (the spec is stored once per digest)."""
    # The serializer converts the spec too (about half its work), only for it to be dropped here: the
    # workflow's own (per-run, unshared) spec attributes are set aside while it converts the rest.
    spec, subs = wf.spec, wf.subprocess_specs
    wf.spec, wf.subprocess_specs = None, {}
    try:
        dct = serializer().to_dict(wf)
    finally:
        wf.spec, wf.subprocess_specs = spec, subs
    dct.pop("spec", None)
    dct.pop("subprocess_specs", None)
    # round-trip through JSON text so the stored value is plain JSON (UUIDs, dates as text, as str() gives them)
    return {"format": STATE_FORMAT, "workflow": _plain(dct)}


def restore(state: Mapping[str, Any], p: ParsedFlow, engine: FlowScriptEngine) -> BpmnWorkflow:
    """The workflow stored as ``state`` (see :func:`dump`), with ``engine`` attached."""
    state = migrate_state(state)
    s = serializer()
    dct = _plain(state["workflow"])  # a copy: from_dict changes what it reads
    # The parsed spec objects themselves, not their JSON: the serializer's registry hands back any value
    # that is not a dict/list unchanged, so the workflow is built on the shared spec (as
    # :func:`new_workflow` does) instead of deserializing the whole spec again on every load.
    dct["spec"] = p.spec
    dct["subprocess_specs"] = dict(p.subprocess_specs)
    wf = s.from_dict(dct)
    wf.script_engine = engine  # dropped by deserialization: re-attach every time
    return wf


#: format N -> function turning a format N-1 state into format N
STATE_MIGRATIONS: dict[int, Any] = {}


def migrate_state(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state`` brought to :data:`STATE_FORMAT` (one migration per format)."""
    version = int(state.get("format", 1))
    if version > STATE_FORMAT:
        raise WorkflowTextRefused(f"approval state format {version} is newer than this engine's {STATE_FORMAT}",
                                  code="workflow_state", hint="upgrade the engine")
    for v in range(version + 1, STATE_FORMAT + 1):
        state = STATE_MIGRATIONS[v](state)
    return state
