"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Float, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import JSON, TypeDecorator


class JsonType(TypeDecorator):
    """JSONB on PostgreSQL, JSON (text) on SQLite."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


class UtcDateTime(TypeDecorator):
    """A point in time, always returned as an aware UTC datetime.

    Stored as ``timestamptz`` on PostgreSQL and as naive UTC text on SQLite.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):  # a value read through json_extract on SQLite
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class DecimalType(TypeDecorator):
    """An exact decimal on PostgreSQL (NUMERIC), a REAL on SQLite; always read as Decimal.

    SQLite has no decimal type; values are rounded to ``scale`` places on the
    way in and out so that both databases hand back the same Decimal.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int = 18, scale: int = 2) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Float())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        value = Decimal(str(value)) if not isinstance(value, Decimal) else value
        quantized = value.quantize(Decimal(1).scaleb(-self.scale))
        return float(quantized) if dialect.name == "sqlite" else quantized

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-self.scale))
