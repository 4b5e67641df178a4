"""How the sales features evaluate their rules on one record: the unit's clock and actor, one-hop
references and users read on the unit's connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.dsl.expressions import EvalContext
from engine.runtime import exchange_rates, users
from engine.runtime.records import exprs, rows

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


def eval_context(uow: UnitOfWork) -> EvalContext:
    """The context rules are evaluated in: the unit's clock and actor, one-hop references and users read
    on the unit's connection (as the engine: the configuration decides what a rule reads)."""
    refs: dict[tuple[str, int], Any] = {}

    def ref(entity: str, record_id: int) -> Mapping[str, Any] | None:
        if (entity, record_id) not in refs:
            plan = uow.state.plan(entity)
            row = uow.conn.execute(select(plan.table).where(plan.table.c.id == record_id)).first()
            refs[(entity, record_id)] = rows.read(plan.readers, row._mapping) if row is not None else None
        return refs[(entity, record_id)]  # type: ignore[no-any-return]

    return exprs.make_context(user_id=uow.actor.user_id, now=uow.clock.now(), old=None, ref=ref,
                              users=lambda uid: users.directory_entry(uow.conn, uid),
                              rates=exchange_rates.resolver(uow.conn))
