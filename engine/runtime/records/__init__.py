"""Records: the one write path and read path (see :mod:`engine.runtime.records.service`)."""

from __future__ import annotations

from engine.runtime.records.service import Page, RecordService
from engine.runtime.records.steps import DomainEvent, StepRegistry, WriteContext, WriteStep

__all__ = ["DomainEvent", "Page", "RecordService", "StepRegistry", "WriteContext", "WriteStep"]
