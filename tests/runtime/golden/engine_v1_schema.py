"""The engine tables as engine schema version 1 made them (frozen copy; never edit).

The golden upgrade test builds a database with exactly these tables, fills
it with the rows ``engine_v1.json`` holds (dumped from a database the
version-1 engine made), and lets the current engine upgrade it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from engine.runtime.types import JsonType, UtcDateTime

engine_metadata = MetaData()


def _id() -> Column:
    return Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)


crm_meta = Table(
    "crm_meta",
    engine_metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

crm_revisions = Table(
    "crm_revisions",
    engine_metadata,
    _id(),
    Column("parent_id", BigInteger, nullable=True),
    Column("author", String(200), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("content_hash", String(64), nullable=False),
    # {"format": 1, "workspace": name, "layers": [...], "files": {path: text}}
    Column("bundle", JsonType, nullable=False),
    # the plan that was applied, as a list of change dicts
    Column("changes", JsonType, nullable=False),
    Column("active", Boolean, nullable=False, default=False),
)

crm_teams = Table(
    "crm_teams",
    engine_metadata,
    _id(),
    Column("name", String(100), nullable=False, unique=True),
    Column("manager_id", BigInteger, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

crm_users = Table(
    "crm_users",
    engine_metadata,
    _id(),
    Column("username", String(100), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False, default=""),
    Column("email", String(254), nullable=True),
    Column("password_hash", String(300), nullable=True),
    Column("roles", JsonType, nullable=False),
    Column("team_id", BigInteger, ForeignKey("crm_teams.id"), nullable=True),
    Column("manager_id", BigInteger, ForeignKey("crm_users.id"), nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime, nullable=False),
)

crm_api_tokens = Table(
    "crm_api_tokens",
    engine_metadata,
    _id(),
    Column("user_id", BigInteger, ForeignKey("crm_users.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(12), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)

crm_audit = Table(
    "crm_audit",
    engine_metadata,
    _id(),
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    Column("action", String(20), nullable=False),
    Column("field", String(100), nullable=True),
    Column("old_value", JsonType, nullable=True),
    Column("new_value", JsonType, nullable=True),
    Column("actor_id", BigInteger, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("revision_id", BigInteger, nullable=True),
    Index("ix_crm_audit_record", "entity", "record_id", "id"),
)

crm_sequences = Table(
    "crm_sequences",
    engine_metadata,
    Column("name", String(200), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

crm_jobs = Table(
    "crm_jobs",
    engine_metadata,
    _id(),
    Column("kind", String(100), nullable=False),
    Column("payload", JsonType, nullable=False),
    Column("run_at", UtcDateTime, nullable=False),
    Column("status", String(20), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("locked_by", String(100), nullable=True),
    Column("locked_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("dedupe_key", String(200), nullable=True),
    Index("ix_crm_jobs_due", "status", "run_at"),
    UniqueConstraint("dedupe_key", name="uq_crm_jobs_dedupe"),
)

crm_outbox = Table(
    "crm_outbox",
    engine_metadata,
    _id(),
    Column("channel", String(50), nullable=False),
    Column("payload", JsonType, nullable=False),
    Column("status", String(20), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
)
