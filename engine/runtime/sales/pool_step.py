"""The pool write step (order 450): what happens when a record enters a pool, whoever puts it there.

On create or update, when ``pool`` becomes the name of a pool (set by an assignment rule ``to: {pool:
east_pool}``, by the pool service on a return, a recycle or a move, or by an import), or when a held
record's ``claimed_at`` is cleared (a return to the pool it was held from), the record loses its
holder: ``owner_id`` and ``claimed_at`` are cleared and ``pooled_at`` is stamped; after the row is
written an ``enter`` row goes to ``crm_pool_log`` when the pool changed.  A name that is no pool of the
entity is refused, and so is an owner given to a record that sits unclaimed in a pool by anything but
the pool service (claim it, or have a pool admin assign it), so "unclaimed in a pool" always means "no
owner".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import ValidationFailed
from engine.runtime.records.steps import WriteContext
from engine.runtime.sales import pool_rules


class PoolStep:
    """The write step of the pools of one revision (see the module docstring)."""

    name = "pools"
    order = 450

    def __init__(self, pools: Mapping[str, tuple[str, ...]]) -> None:
        #: entity -> the names of its pools
        self.pools = dict(pools)

    def applies_to(self, entity: str) -> bool:
        return entity in self.pools

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        if ctx.action not in ("create", "update"):
            return
        name = record.get("pool")
        if name is None:
            return
        if name != (old or {}).get("pool"):
            if name not in self.pools[entity]:
                raise ValidationFailed(f"there is no pool {name!r} for {entity}", details={"pool": [
                    f"unknown pool {str(name)[:60]!r}; the pools of {entity}: {', '.join(self.pools[entity])}"]})
            self._enter(ctx, record)
        elif record.get("claimed_at") is None and old is not None:
            if old.get("claimed_at") is not None:  # released: back to the pool it was held from
                self._enter(ctx, record)
            elif record.get("owner_id") is not None and record.get("owner_id") != old.get("owner_id"):
                raise ValidationFailed(
                    f"{entity} {old.get('id')} is unclaimed in pool {name!r}: it cannot be given an owner directly",
                    details={"owner_id": [f"claim it (POST /api/v1/pools/{name}/claim) or have a pool admin "
                                          f"assign it (POST /api/v1/pools/{name}/assign)"]})

    @staticmethod
    def _enter(ctx: WriteContext, record: dict[str, Any]) -> None:
        record["owner_id"] = None
        record["claimed_at"] = None
        record["pooled_at"] = ctx.uow.clock.now()

    def after_write(self, ctx: WriteContext, entity: str, record: Mapping[str, Any],
                    old: Mapping[str, Any] | None) -> None:
        if ctx.action not in ("create", "update"):
            return
        name = record.get("pool")
        if name is not None and name != (old or {}).get("pool"):
            pool_rules.log(ctx.uow, name, entity, int(record["id"]), "enter",
                           user_id=(old or {}).get("owner_id") if old is not None else None)
