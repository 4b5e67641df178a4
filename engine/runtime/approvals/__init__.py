"""The approvals runtime: compiled ``approval:`` flows (:mod:`engine.dsl.approvals.model`) run on
SpiffWorkflow.

Modules: :mod:`.script` (the script engine that evaluates nothing but the flow's compiled expressions),
:mod:`.spec` (parsing once per flow digest, the serializer, instance state without its spec),
:mod:`.rules` (pure step-completion rules: 或签, 会签, ratio, 依次, 加签), :mod:`.store` (the tables),
:mod:`.assignees`, :mod:`.engine` (running the workflow and syncing its ready tasks to task rows),
:mod:`.service` (start, submit and the actions), :mod:`.outcome`, :mod:`.steps` (the write steps:
trigger and record lock), :mod:`.timers` (the worker's job kind) and :mod:`.plugin`.
"""
