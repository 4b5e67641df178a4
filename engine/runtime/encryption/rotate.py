"""``crm keys rotate``: seal every encrypted value again with the current key of the ring.

Put a new key first in ``CRM_ENCRYPTION_KEYS`` (the old ones after it, so their values still open), run
``crm keys rotate``, then drop the old keys.  Each page of rows is its own transaction: an interrupted
rotation keeps what it did, and running it again goes on where it stopped (a value already sealed with
the current key is left alone).  The blind index is part of a sealed value, so it is made again with the
value; the duplicate keys of encrypted fields (``crm_dedupe_keys``, tagged with their key id) are stored
again for every entity that still has keys made with another key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, not_, select

from engine.dsl.model import Workspace
from engine.runtime import crypto
from engine.runtime.context import Actor
from engine.runtime.encryption.sealing import PAGE, raw_table, rewrite_audit, rewrite_page
from engine.runtime.engine_tables import crm_dedupe_keys as K

Echo = Callable[[str], None]


@dataclass
class RotationReport:
    """What a rotation rewrote: ``entity.field`` -> values, entity -> audit entries, entities whose duplicate
    keys were stored again."""

    current: str
    values: dict[str, int] = field(default_factory=dict)
    audit: dict[str, int] = field(default_factory=dict)
    dedupe: list[str] = field(default_factory=list)


def encrypted_fields(workspace: Workspace) -> dict[str, list[tuple[str, str]]]:
    """entity -> (field, column) of its encrypted fields."""
    out: dict[str, list[tuple[str, str]]] = {}
    for e in workspace.entities.values():
        if e.encrypted_fields:
            out[e.name] = [(f.name, f.column_name) for f in e.encrypted_fields]
    return out


def resealer(ring: crypto.KeyRing) -> Callable[[str], str | None]:
    """stored text -> the same value sealed with the current key (None: it already is)."""

    def fn(stored: str) -> str | None:
        kid = crypto.key_id_of(stored)
        if kid == ring.current:
            return None
        return ring.seal(ring.open(stored))  # a clear value left in an encrypted column is sealed too

    return fn


def rotate(runtime: Any, *, page: int = PAGE, echo: Echo = lambda _s: None) -> RotationReport:
    """Seal every value of every encrypted field (and its audit entries) with the current key, a page per
    transaction; then store again the duplicate keys made with other keys."""
    ring = crypto.keyring()
    fn = resealer(ring)
    report = RotationReport(ring.current)
    workspace = runtime.state.workspace
    for entity, fields in encrypted_fields(workspace).items():
        for name, column in fields:
            table = raw_table(entity, column)

            def column_page(conn: Any, after: int, t: Any = table, c: str = column) -> tuple[int, int | None]:
                return rewrite_page(conn, t, c, fn, after, page=page)

            report.values[f"{entity}.{name}"] = done = _pages(runtime, column_page)
            echo(f"{entity}.{name}: {done} values sealed again")
        names = [n for n, _ in fields]

        def audit_page(conn: Any, after: int, e: str = entity, n: list[str] = names) -> tuple[int, int | None]:
            return rewrite_audit(conn, e, n, fn, after=after, page=page)

        report.audit[entity] = _pages(runtime, audit_page)
        echo(f"{entity}: {report.audit[entity]} audit entries sealed again")
    report.dedupe = _rebuild_keys(runtime, ring)
    for entity in report.dedupe:
        echo(f"{entity}: duplicate keys stored again")
    return report


def _pages(runtime: Any, page_fn: Callable[[Any, int], tuple[int, int | None]]) -> int:
    done, last = 0, 0
    while True:
        with runtime.unit(Actor.system()) as uow:
            count, last_id = page_fn(uow.conn, last)
        if last_id is None:
            return done
        done, last = done + count, last_id


def _rebuild_keys(runtime: Any, ring: crypto.KeyRing) -> list[str]:
    """The duplicate keys of blinded kinds made with another key than the current one, stored again."""
    from engine.runtime.sales import dedupe_keys

    rebuilt = []
    with runtime.unit(Actor.system()) as uow:
        idx = dedupe_keys.index(uow)
        if not idx.blinded:
            return []
        for entity in idx.sources:
            stale = uow.conn.execute(select(K.c.id).where(and_(
                K.c.entity == entity, K.c.kind.in_(sorted(idx.blinded)),
                not_(K.c.key.startswith(f"{ring.current}:", autoescape=True)))).limit(1)).first()
            if stale is not None:
                dedupe_keys.rebuild(uow, entity)
                rebuilt.append(entity)
    return rebuilt
