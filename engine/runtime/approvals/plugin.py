"""The approvals feature plugin (registered through :data:`engine.plugins.host.DEFAULT_PLUGINS`): the write
step (record lock + trigger) and the timers job kind."""

from __future__ import annotations

from typing import Any

from engine.dsl.model import Workspace
from engine.plugins import hookimpl
from engine.runtime.approvals import steps, timers, versions


@hookimpl
def crm_write_steps(workspace: Workspace) -> list[Any]:
    """The approvals step (order 900): the record lock before a write, the trigger after it."""
    return steps.write_steps(workspace)


@hookimpl
def crm_job_kinds() -> list[Any]:
    """``approvals.timers`` (timeouts, reminders, escalations, BPMN timers) and ``approvals.migrate``."""
    return [*timers.job_kinds(), *versions.job_kinds()]


@hookimpl
def crm_plan_steps(workspace: Workspace) -> list[Any]:
    """``approvals.versions``: running instances on older flow versions, and their migration."""
    return versions.plan_steps(workspace)
