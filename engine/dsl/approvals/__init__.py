"""The ``approval:`` kind: approval flows as YAML steps (compiled to BPMN) or BPMN files drawn in a modeler.

:mod:`.model` is the compiled form the runtime consumes; :mod:`.flow` the kind and its compiler;
:mod:`.shorthand` writes ``steps:`` as BPMN with a diagram; :mod:`.bpmnread` (with :mod:`.xmltree`,
:mod:`.juel`, :mod:`.durations`) checks and reads a modeler's file.  Pure: no SpiffWorkflow here.
"""

from __future__ import annotations

from engine.dsl.kinds import KindSpec


def approval_kinds() -> list[KindSpec]:
    """The ``approval`` kind (compiled after entities, roles and pipelines)."""
    from engine.dsl.approvals import flow

    return [flow.KIND]
