"""Dated exchange rates (``crm_exchange_rates``) and the conversion rule both back ends share.

A row says: from ``rate_date`` on, 1 ``from_currency`` is worth ``rate`` ``to_currency``.  A lookup
for a day takes the pair's latest row on or before that day; without one it takes the reverse pair's
latest row and inverts it (``round(1 / rate, 10)``).  Converting multiplies and rounds to 10 places,
as the expression language's arithmetic does; the same currency needs no rate.

:func:`rate_on` (Python) and :func:`engine.runtime.money_sql.converted_sql` (SQL) implement the same
rule, so the ``convert()`` expression function and the money totals agree on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from engine.dsl.currencies import iso_codes
from engine.dsl.expressions.functions import quantize
from engine.errors import BadRequest, InvalidCurrency, MissingExchangeRate
from engine.runtime.engine_tables import crm_exchange_rates as rates_table

#: largest rate accepted (the column keeps 14 digits before the point)
MAX_RATE = Decimal("1e13")


def currency_code(value: Any, *, where: str = "currency") -> str:
    """``value`` as an ISO 4217 code (InvalidCurrency naming ``where`` otherwise); lower case is accepted."""
    code = value.strip().upper() if isinstance(value, str) else None
    if code is None or code not in iso_codes():
        raise InvalidCurrency(f"{where}: {value!r} is not an ISO 4217 currency code",
                              hint="use a three-letter code such as CNY, USD or EUR",
                              details={where: [f"{value!r} is not an ISO 4217 currency code"]})
    return code


def rate_value(value: Any, *, where: str = "rate") -> Decimal:
    """A positive rate as Decimal (BadRequest otherwise); floats go through their shortest text."""
    try:
        rate = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as e:
        raise BadRequest(f"{where}: {value!r} is not a number", code="bad_rate",
                         hint="give the rate as a decimal number, e.g. 0.14") from e
    if isinstance(value, bool) or not rate.is_finite() or rate <= 0 or rate >= MAX_RATE:
        raise BadRequest(f"{where}: {value!r} must be a positive number", code="bad_rate",
                         hint="1 unit of the first currency is worth RATE units of the second, e.g. 0.14")
    return quantize(rate)


def day_value(value: Any, *, where: str = "date") -> dt.date:
    """A calendar day from a date or ``YYYY-MM-DD`` text (BadRequest otherwise)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError as e:
        raise BadRequest(f"{where}: {value!r} is not a date", code="bad_date",
                         hint="write the date as YYYY-MM-DD, e.g. 2026-12-01") from e


@dataclass(frozen=True, slots=True)
class Rate:
    """One row of the table."""

    from_currency: str
    to_currency: str
    rate_date: dt.date
    rate: Decimal
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.from_currency, "to": self.to_currency, "date": self.rate_date.isoformat(),
                "rate": str(self.rate), "source": self.source}


def set_rate(conn: Connection, from_currency: Any, to_currency: Any, rate: Any, day: Any, *,
             now: dt.datetime, user_id: int | None = None, source: str | None = None) -> Rate:
    """Store (or replace) the rate of a pair on a day; values are validated first."""
    src, dst = currency_code(from_currency, where="from"), currency_code(to_currency, where="to")
    if src == dst:
        raise BadRequest(f"a rate from {src} to itself is always 1", code="bad_rate",
                         hint="give two different currencies")
    row = Rate(src, dst, day_value(day), rate_value(rate), source)
    key = and_(rates_table.c.from_currency == src, rates_table.c.to_currency == dst,
               rates_table.c.rate_date == row.rate_date)
    values = {"rate": row.rate, "set_by": user_id, "set_at": now, "source": source}
    if conn.execute(rates_table.update().where(key).values(**values)).rowcount == 0:
        conn.execute(rates_table.insert().values(from_currency=src, to_currency=dst, rate_date=row.rate_date,
                                                 **values))
    return row


def list_rates(conn: Connection, *, currency: str | None = None) -> list[Rate]:
    """Every stored rate (of pairs with ``currency`` on either side, if given), by pair then date."""
    t = rates_table
    stmt = select(t.c.from_currency, t.c.to_currency, t.c.rate_date, t.c.rate, t.c.source)
    if currency is not None:
        code = currency_code(currency)
        stmt = stmt.where(or_(t.c.from_currency == code, t.c.to_currency == code))
    rows = conn.execute(stmt.order_by(t.c.from_currency, t.c.to_currency, t.c.rate_date))
    return [Rate(r.from_currency, r.to_currency, r.rate_date, r.rate, r.source) for r in rows]


def _latest(conn: Connection, src: str, dst: str, day: dt.date) -> Decimal | None:
    t = rates_table
    return conn.execute(select(t.c.rate).where(t.c.from_currency == src, t.c.to_currency == dst,
                                               t.c.rate_date <= day)
                        .order_by(t.c.rate_date.desc()).limit(1)).scalar()


def rate_on(conn: Connection, src: str, dst: str, day: dt.date) -> Decimal | None:
    """The rate from ``src`` to ``dst`` on ``day`` by the module's rule; None when there is none."""
    if src == dst:
        return Decimal(1)
    direct = _latest(conn, src, dst, day)
    if direct is not None:
        return direct
    reverse = _latest(conn, dst, src, day)
    return None if reverse is None else quantize(Decimal(1) / reverse)


def require_rate(conn: Connection, src: str, dst: str, day: dt.date) -> Decimal:
    """:func:`rate_on`, or MissingExchangeRate naming the pair and the day."""
    rate = rate_on(conn, src, dst, day)
    if rate is None:
        raise MissingExchangeRate(
            f"there is no exchange rate from {src} to {dst} on or before {day.isoformat()}",
            hint=f"set one: crm rates set {src} {dst} RATE --date {day.isoformat()} (or PUT /api/v1/rates)",
            details={"from": src, "to": dst, "date": day.isoformat()})
    return rate


def convert_value(amount: Any, rate: Decimal | None) -> Decimal | None:
    """``amount`` times ``rate``, rounded to 10 places (None for a null amount or rate)."""
    if amount is None or rate is None:
        return None
    return quantize(Decimal(amount) * rate) if rate != 1 else Decimal(amount)


def resolver(conn: Connection) -> Any:
    """The ``EvalContext.rates`` callable of one unit of work: (from, to, day) -> rate or None, memoised."""
    memo: dict[tuple[str, str, dt.date], Decimal | None] = {}

    def rates(src: str, dst: str, day: dt.date) -> Decimal | None:
        key = (src, dst, day)
        if key not in memo:
            memo[key] = rate_on(conn, src, dst, day)
        return memo[key]

    return rates


# --------------------------------------------------------------------------- CSV import


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Rows of a rates CSV: a header with ``from,to,rate,date`` (any order; ``source`` optional).

    BadRequest naming the line for a missing column; the values are checked by :func:`import_rates`.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = {(h or "").strip().lower() for h in reader.fieldnames or ()}
    missing = [c for c in ("from", "to", "rate", "date") if c not in header]
    if missing:
        raise BadRequest(f"line 1: the CSV header lacks {', '.join(missing)}", code="bad_rates_file",
                         hint="the first line must name the columns: from,to,rate,date")
    out = []
    for row in reader:
        clean = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if any(clean.values()):
            out.append({**clean, "_line": reader.line_num})
    return out


def import_rates(conn: Connection, rows: Iterable[Mapping[str, Any]], *, now: dt.datetime,
                 user_id: int | None = None, source: str = "import") -> int:
    """Store every row (all or none: the caller's transaction); errors name the row's line."""
    count = 0
    for row in rows:
        try:
            set_rate(conn, row.get("from"), row.get("to"), row.get("rate"), row.get("date"), now=now,
                     user_id=user_id, source=row.get("source") or source)
        except BadRequest as e:
            line = row.get("_line")
            prefix = f"line {line}: " if line is not None else f"row {count + 1}: "
            raise type(e)(prefix + e.message, code=e.code, hint=e.hint, details=e.details) from e
        count += 1
    return count
