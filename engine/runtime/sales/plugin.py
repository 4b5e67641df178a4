"""The sales-process feature plugin: registered in every plugin host after the built-in plugin
(:data:`engine.plugins.host.DEFAULT_PLUGINS`), through the same hooks as an installed plugin."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from engine.dsl.model import Workspace
from engine.plugins import hookimpl
from engine.runtime.sales import assignment, conversion, dedupe, followups, pipelines, pools, scoring

#: the feature modules, each offering some of write_steps / event_handlers / job_kinds / plan_steps / read_masks
FEATURES: tuple[ModuleType, ...] = (pipelines, followups, dedupe, scoring, assignment, pools, conversion)


def _gather(hook: str, *args: Any) -> list[Any]:
    out: list[Any] = []
    for feature in FEATURES:
        fn: Callable[..., list[Any]] | None = getattr(feature, hook, None)
        if fn is not None:
            out.extend(fn(*args))
    return out


@hookimpl
def crm_write_steps(workspace: Workspace) -> list[Any]:
    """Stage gates (100), dedupe (200), scoring (300), assignment (400), pools, follow-ups."""
    return _gather("write_steps", workspace)


@hookimpl
def crm_event_handlers(workspace: Workspace) -> list[Any]:
    return _gather("event_handlers", workspace)


@hookimpl
def crm_job_kinds() -> list[Any]:
    """Pool recycling, rescoring refreshes, notifications."""
    return _gather("job_kinds")


@hookimpl
def crm_plan_steps(workspace: Workspace) -> list[Any]:
    """Rescoring when scoring rules change."""
    return _gather("plan_steps", workspace)


@hookimpl
def crm_read_masks(workspace: Workspace) -> list[Any]:
    """Pool fields hidden while a record is unclaimed."""
    return _gather("read_masks", workspace)
