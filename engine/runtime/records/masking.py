"""Read masks (``crm_read_masks``): values replaced by a masked form on their way out of the read path.

A mask is an object with ``name``, ``applies_to(entity)`` and ``mask(uow, entity, records)`` (it
changes the record dicts in place), and optionally:

* ``fields(entity) -> frozenset[str]``: the fields it may mask; with
* ``masked_rows(uow, entity, fields) -> SQL condition``: the rows where one of ``fields`` is masked.
  A list whose filter or sort reads such a field leaves those rows out, so probing a masked value
  with ``filter=phone == '...'`` (or sorting on it) tells nothing;
* ``mask_history(uow, entity, record_id, entries) -> entries``: the record's audit trail with the
  masked values replaced.

Masks are resolved once per revision (``State.read_masks``, by name); an entity without masks pays
one tuple lookup per read.  They apply to every user -- administrators included -- on get, list,
expanded references, the record a write returns and history, after the row scope and the role's
hidden fields.  They do not apply to the system actor (workers, imports, and feature code inside
``uow.elevated()``), which works with the stored values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_
from sqlalchemy.sql.elements import ColumnElement

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


def masks_of(uow: UnitOfWork, entity: str) -> tuple[Any, ...]:
    """The revision's masks for ``entity`` (memoised per revision)."""
    masks = uow.state.read_masks
    if not masks:
        return ()
    return uow.state.memo("read_masks", entity,  # type: ignore[no-any-return]
                          lambda: tuple(m for m in masks if m.applies_to(entity)))


def active(uow: UnitOfWork, entity: str) -> tuple[Any, ...]:
    """The masks that apply to this unit's reads of ``entity`` (none for the system actor)."""
    if not uow.state.read_masks or uow.guard.actor.is_system:
        return ()
    return masks_of(uow, entity)


def apply(uow: UnitOfWork, entity: str, records: Sequence[dict[str, Any]]) -> None:
    """Mask ``records`` of ``entity`` in place, as the unit's actor may see them."""
    if not records:
        return
    for mask in active(uow, entity):
        mask.mask(uow, entity, records)


def exclusion(uow: UnitOfWork, entity: str, names: Iterable[str]) -> ColumnElement[bool] | None:
    """The SQL condition a list adds when its filter or sort reads ``names``: not a row where one of them
    is masked (None when nothing read is maskable)."""
    masks = active(uow, entity)
    if not masks:
        return None
    wanted = frozenset(names)
    rows = []
    for mask in masks:
        fields = getattr(mask, "fields", None)
        hit = wanted & fields(entity) if fields is not None else frozenset()
        if hit:
            rows.append(mask.masked_rows(uow, entity, hit))
    if not rows:
        return None
    return ~or_(*rows)


def history(uow: UnitOfWork, entity: str, record_id: int, entries: list[Any]) -> list[Any]:
    """``entries`` of the record's audit trail with masked values replaced."""
    for mask in active(uow, entity):
        hook = getattr(mask, "mask_history", None)
        if hook is not None:
            entries = hook(uow, entity, record_id, entries)
    return entries
