"""One instance's task rows inside a unit of work, read once and kept in step with every write.

An action reads the instance (under its lock), then its task rows once; from then on the rows the
unit adds or changes are written to ``crm_approval_tasks`` *and* to these objects, so the rules,
readiness, notices and the outcome work from memory instead of reading the table again after each
write.  A new instance starts with no rows and reads nothing.  Only a :class:`~.runner.Run` holds one,
and every write to its rows in the unit goes through it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from engine.errors import NotFound
from engine.runtime.approvals import store

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


@dataclass(slots=True)
class TaskRow:
    """A ``crm_approval_tasks`` row (the same attribute names as the table's columns)."""

    id: int
    instance_id: int
    step: str
    wf_task: str
    assignee_id: int
    status: str
    seq: int = 0
    added_by: int | None = None
    position: str | None = None
    group_mode: str | None = None
    reassigned_from: int | None = None
    due_at: dt.datetime | None = None
    remind_at: dt.datetime | None = None
    reminders: int = 0
    escalated: bool = False
    created_at: dt.datetime | None = None
    decided_at: dt.datetime | None = None
    decided_by: int | None = None


_NAMES = tuple(f.name for f in fields(TaskRow))


class TaskRows:
    """The task rows of one instance (see the module docstring)."""

    def __init__(self, uow: UnitOfWork, instance_id: int, rows: list[TaskRow]) -> None:
        self.uow = uow
        self.instance_id = instance_id
        self._rows = rows

    @classmethod
    def load(cls, uow: UnitOfWork, instance_id: int) -> TaskRows:
        """The instance's rows as stored (read under the instance's lock by the caller)."""
        rows = [TaskRow(**{n: m[n] for n in _NAMES}) for m in
                (r._mapping for r in store.tasks_of(uow.conn, instance_id))]
        return cls(uow, instance_id, rows)

    def __iter__(self) -> Iterator[TaskRow]:
        return iter(list(self._rows))

    def of(self, wf_task: str) -> list[TaskRow]:
        """The rows of one workflow task's round, in id order."""
        return [r for r in self._rows if r.wf_task == wf_task]

    def get(self, task_id: int) -> TaskRow:
        for row in self._rows:
            if row.id == task_id:
                return row
        raise NotFound(f"no approval task {task_id}", code="not_found")

    def add(self, **values: Any) -> int:
        """Insert a row (``instance_id`` is this instance's); its id."""
        values = {"instance_id": self.instance_id, "reminders": 0, "escalated": False, **values}
        now = self.uow.clock.now()
        new_id = store.add_task(self.uow, created_at=now, **values)
        self._rows.append(TaskRow(id=new_id, created_at=now, **values))
        return new_id

    def set(self, task_id: int, **values: Any) -> None:
        """Change columns of one row."""
        store.set_task(self.uow, task_id, **values)
        row = self.get(task_id)
        for name, value in values.items():
            setattr(row, name, value)

    def hand_over_signers(self, old_id: int, new_id: int) -> None:
        """Signers added (加签) to a reassigned row belong to the row that replaces it."""
        if any(r.added_by == old_id for r in self._rows):
            store.hand_over_signers(self.uow, old_id, new_id)
            for row in self._rows:
                if row.added_by == old_id:
                    row.added_by = new_id
