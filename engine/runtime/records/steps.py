"""Extension steps of the write pipeline, and the domain events a write produces.

Later features (stage gates, dedupe, scoring, assignment, approval lock)
register a :class:`WriteStep` on the runtime instead of being special cases
of the record service.  Steps run after validation rules and before the row
is persisted, ordered by ``(order, name)``; a step may change the record
(scoring sets ``score``), raise a :class:`~engine.errors.RecordError`
(``ValidationFailed``, ``RecordLocked``...) to stop the write, or append
domain events through ``ctx.uow.emit``.  Optional methods: ``after_write(ctx, entity, record, old)``
once the row and its audit are written, and ``check_batch(ctx, entity, rows) -> {index: RecordError}``
for a bulk create, once every row of the batch passed ``before_write`` and before any is stored: ``rows``
are ``(index in the request, record)`` pairs in request order; the rows it refuses are not written (the
dedupe step refuses a row that duplicates an earlier one under a ``block`` rule).

Suggested order numbers: 100 stage gates, 200 dedupe, 300 scoring,
400 assignment, 900 approval lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

Action = Literal["create", "update", "delete", "restore"]


@dataclass(frozen=True, slots=True)
class WriteContext:
    """What a step may know about the write in progress."""

    uow: UnitOfWork
    action: Action
    #: set when the caller bypassed read-only checks (engine-internal writes)
    bypass_readonly: bool = False
    #: True inside create_many / update_many
    bulk: bool = False
    #: the field names the caller sent for this record (create / update through the pipeline); None when
    #: unknown (delete, restore).  Assignment on create runs only when ``owner_id`` is not among them.
    sent: frozenset[str] | None = None


@runtime_checkable
class WriteStep(Protocol):
    """One extension step; ``name`` identifies it, ``order`` places it (lower runs first)."""

    name: str
    order: int

    def applies_to(self, entity: str) -> bool:
        """Whether the step runs for records of ``entity`` (checked once per write)."""
        ...

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        """Inspect or change ``record`` (the full new state; ``old`` is None on create)."""
        ...


class StepRegistry:
    """The ordered write steps of one runtime (not a module global: one registry per runtime)."""

    def __init__(self) -> None:
        self._steps: tuple[WriteStep, ...] = ()

    def register(self, step: WriteStep) -> None:
        """Add ``step``; a second step with the same name is refused (ValueError)."""
        if not isinstance(step, WriteStep):
            raise TypeError(f"{step!r} does not implement WriteStep (name, order, applies_to, before_write)")
        if any(s.name == step.name for s in self._steps):
            raise ValueError(f"a write step named {step.name!r} is already registered")
        self._steps = tuple(sorted((*self._steps, step), key=lambda s: (s.order, s.name)))

    def unregister(self, name: str) -> None:
        self._steps = tuple(s for s in self._steps if s.name != name)

    def for_entity(self, entity: str, extra: tuple[Any, ...] = ()) -> tuple[WriteStep, ...]:
        """The steps that apply to ``entity`` (these and ``extra``, e.g. a revision's plugin steps), in run
        order ``(order, name)``."""
        steps = sorted((*self._steps, *extra), key=lambda s: (s.order, s.name)) if extra else self._steps
        return tuple(s for s in steps if s.applies_to(entity))

    @property
    def steps(self) -> tuple[WriteStep, ...]:
        """The registered steps, in run order (a new tuple whenever one is added or removed)."""
        return self._steps

    def __iter__(self) -> Any:
        return iter(self._steps)


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Something that happened to a record, delivered to listeners after commit.

    ``kind``: created, updated, deleted, restored, handover.  ``changes``
    maps field -> (old, new) for updates.  ``record`` is the record as it was
    written (None for bulk events where it was not read back).
    """

    kind: str
    entity: str
    record_id: int
    actor_id: int | None
    at: dt.datetime
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    record: Mapping[str, Any] | None = None
