"""The ``approval:`` kind: approval flows as YAML steps (compiled to BPMN) or BPMN files drawn in a modeler."""
