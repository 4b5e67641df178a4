"""The pool mask: while a record sits unclaimed in a pool, the pool's ``hidden_fields`` are masked for
everyone (administrators too: a pool admin reads one with ``POST /pools/<pool>/reveal``, audited).

Masked forms: a phone keeps its country code, first three and last four digits (``+86 138****8000``),
an email its first letter and domain (``j***@acme.com``), other text its first character (``苏***``);
numbers, dates and the rest become null.  Once a member claims the record, the holder sees the values.
Filters and sorts that read a hidden field leave the masked records out
(:func:`engine.runtime.records.masking.exclusion`); ``GET /pools/<pool>/records``, whose records are
all masked, refuses such a filter instead.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import phonenumbers
from sqlalchemy import and_, select
from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.model import STRING_TYPES, Field

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

_DIGITS = re.compile(r"\D")


def mask_digits(digits: str) -> str:
    """``13800138000`` -> ``138****8000``; short numbers keep their last two digits."""
    if len(digits) >= 7:
        return digits[:3] + "****" + digits[-4:]
    return "*" * max(2, len(digits) - 2) + digits[-2:]


def mask_phone(value: str) -> str:
    """A phone number with its middle digits hidden (``+86 138****8000``)."""
    text = value.strip()
    if text.startswith("+"):
        try:
            number = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and number.national_number:
            return f"+{number.country_code} {mask_digits(str(number.national_number))}"
    return mask_digits(_DIGITS.sub("", text))


def mask_email(value: str) -> str:
    """``john@acme.com`` -> ``j***@acme.com``."""
    local, at, domain = value.strip().partition("@")
    return f"{local[:1]}***@{domain}" if at else mask_text(value)


def mask_text(value: str) -> str:
    return f"{value.strip()[:1]}***" if value.strip() else "***"


def mask_value(field: Field | None, value: Any) -> Any:
    """The masked form of ``value`` of ``field`` (see the module docstring)."""
    if value is None or field is None:
        return None
    if not isinstance(value, str):
        return None
    if field.type == "phone":
        return mask_phone(value)
    if field.type == "email":
        return mask_email(value)
    return mask_text(value) if field.type in STRING_TYPES else None


class PoolMask:
    """The read mask of the pools of one revision."""

    name = "pools"

    def __init__(self, hidden: Mapping[str, Mapping[str, tuple[str, ...]]]) -> None:
        #: entity -> pool -> hidden fields (pools that hide something)
        self.hidden = {e: dict(p) for e, p in hidden.items() if any(p.values())}
        self._fields = {e: frozenset(f for fs in p.values() for f in fs) for e, p in self.hidden.items()}

    def applies_to(self, entity: str) -> bool:
        return entity in self.hidden

    def fields(self, entity: str) -> frozenset[str]:
        return self._fields.get(entity, frozenset())

    def masked_rows(self, uow: UnitOfWork, entity: str, fields: frozenset[str]) -> ColumnElement[bool]:
        """Rows where one of ``fields`` is masked: unclaimed in a pool that hides it (never NULL)."""
        t = uow.state.plan(entity).table
        pools = sorted(p for p, fs in self.hidden[entity].items() if fields & set(fs))
        return and_(t.c.pool.is_not(None), t.c.pool.in_(pools), t.c.claimed_at.is_(None))

    def mask(self, uow: UnitOfWork, entity: str, records: Sequence[dict[str, Any]]) -> None:
        maskable = self._fields[entity]
        if not any(maskable.intersection(r) for r in records):
            return
        where = self._where(uow, entity, records)
        fields = uow.state.plan(entity).entity.fields
        for r in records:
            pool = where.get(r.get("id"))
            for name in self.hidden[entity].get(pool, ()) if pool is not None else ():
                if name in r:
                    r[name] = mask_value(fields.get(name), r[name])

    def _where(self, uow: UnitOfWork, entity: str, records: Sequence[Mapping[str, Any]]) -> dict[Any, str]:
        """record id -> the pool it sits unclaimed in (read from the records when they say, else looked up)."""
        out: dict[Any, str] = {}
        missing = []
        for r in records:
            if "pool" in r and "claimed_at" in r:
                if r["pool"] is not None and r["claimed_at"] is None:
                    out[r.get("id")] = r["pool"]
            elif r.get("id") is not None:
                missing.append(r["id"])
        if missing:
            out.update(self.unclaimed_in(uow, entity, missing))
        return out

    def unclaimed_in(self, uow: UnitOfWork, entity: str, ids: Sequence[int]) -> dict[int, str]:
        """id -> pool, for those of ``ids`` that sit unclaimed in a pool that hides something."""
        t = uow.state.plan(entity).table
        stmt = select(t.c.id, t.c.pool).where(t.c.id.in_(sorted(set(ids))), t.c.pool.in_(sorted(self.hidden[entity])),
                                               t.c.claimed_at.is_(None))
        return {int(r.id): r.pool for r in uow.conn.execute(stmt)}

    def mask_history(self, uow: UnitOfWork, entity: str, record_id: int, entries: list[Any]) -> list[Any]:
        """The trail of a record that sits unclaimed in a pool, with the pool's hidden fields masked."""
        pool = self.unclaimed_in(uow, entity, [record_id]).get(record_id)
        if pool is None:
            return entries
        hidden = set(self.hidden[entity][pool])
        fields = uow.state.plan(entity).entity.fields
        out = []
        for e in entries:
            if e.field in hidden:
                f = fields.get(e.field)
                e = _replaced(e, old=mask_value(f, e.old), new=mask_value(f, e.new))
            elif e.field is None and (isinstance(e.new, dict) or isinstance(e.old, dict)):
                e = _replaced(e, old=_masked_snapshot(e.old, hidden, fields),
                              new=_masked_snapshot(e.new, hidden, fields))
            out.append(e)
        return out


def _masked_snapshot(value: Any, hidden: set[str], fields: Mapping[str, Field]) -> Any:
    if not isinstance(value, dict):
        return value
    return {k: mask_value(fields.get(k), v) if k in hidden else v for k, v in value.items()}


def _replaced(entry: Any, **values: Any) -> Any:
    return dataclasses.replace(entry, **values)
