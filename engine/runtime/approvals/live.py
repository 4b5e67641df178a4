"""Workflows as the last committed unit left them, kept in this process so the next action on the same
instance need not deserialize its state again.

The database stays the truth: every wait state is still written (``crm_approval_instances.state``), a
killed process loses nothing, and another process simply restores from the row.  An entry is only put
here once its unit *committed* (``uow.committed``), under the instance's new ``version``; it is taken
out (never shared) by the next unit that loads the instance, and used only when the row it reads under
the lock has that same version and spec digest -- any other writer (another process, a migration)
bumps the version and the entry is ignored.  A unit that fails after taking an entry just drops it.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

SIZE = 512


@dataclass(frozen=True, slots=True)
class _Entry:
    runtime: weakref.ref[Any]
    version: int
    digest: str
    wf: Any


_items: OrderedDict[tuple[int, int], _Entry] = OrderedDict()
_lock = threading.Lock()


def take(uow: UnitOfWork, instance_id: int, version: int, digest: str) -> Any:
    """The committed workflow of ``instance_id`` at ``version`` (removed from the cache), or None."""
    with _lock:
        entry = _items.pop((id(uow.runtime), instance_id), None)
    if entry is None or entry.runtime() is not uow.runtime or entry.version != version or entry.digest != digest:
        return None
    return entry.wf


def keep(uow: UnitOfWork, instance_id: int, version: int, digest: str, wf: Any) -> None:
    """Offer ``wf`` for the next unit once this one commits with the instance at ``version``."""
    entry = _Entry(weakref.ref(uow.runtime), version, digest, wf)
    key = (id(uow.runtime), instance_id)

    def put() -> None:
        with _lock:
            _items[key] = entry
            _items.move_to_end(key)
            while len(_items) > SIZE:
                _items.popitem(last=False)

    uow.committed.append(put)


def forget(uow: UnitOfWork, instance_id: int) -> None:
    """Drop any kept workflow of the instance (its row was changed some other way)."""
    with _lock:
        _items.pop((id(uow.runtime), instance_id), None)
