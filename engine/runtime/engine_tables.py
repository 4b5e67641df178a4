"""The engine's own tables (``crm_*``), shared by every workspace."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
)
from sqlalchemy.schema import CreateColumn

from engine.errors import DatabaseNotReady
from engine.runtime.types import DecimalType, JsonType, UtcDateTime

#: Version of the engine tables' shape; :func:`upgrade` brings older databases to it through
#: :data:`MIGRATIONS`.  (The PostgreSQL gate function is re-created on every upgrade and apply:
#: see engine.runtime.markers.install.)
ENGINE_SCHEMA_VERSION = 6
SCHEMA_VERSION_KEY = "engine_schema"

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
    #: the team this one is part of (a director's team holds the managers' teams); version 6
    Column("parent_id", BigInteger, nullable=True),
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
    Column("expires_at", UtcDateTime, nullable=True),
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
    Column("finished_at", UtcDateTime, nullable=True),
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
    Index("ix_crm_outbox_status", "status", "id"),
)


# --------------------------------------------------------------------------- sales process (version 4)

crm_notifications = Table(
    "crm_notifications",
    engine_metadata,
    _id(),
    Column("user_id", BigInteger, ForeignKey("crm_users.id"), nullable=False),
    #: assignment, claim, return, recycle_warning, recycle, approval... (what the notification is about)
    Column("kind", String(50), nullable=False),
    Column("entity", String(100), nullable=True),
    Column("record_id", BigInteger, nullable=True),
    Column("text_en", Text, nullable=False),
    Column("text_zh", Text, nullable=True),
    Column("data", JsonType, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("read_at", UtcDateTime, nullable=True),
    #: one notification per key (a retried job does not notify twice)
    Column("dedupe_key", String(200), nullable=True),
    Index("ix_crm_notifications_user", "user_id", "read_at", "id"),
    UniqueConstraint("dedupe_key", name="uq_crm_notifications_dedupe"),
)

crm_stage_history = Table(
    "crm_stage_history",
    engine_metadata,
    _id(),
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    Column("pipeline", String(100), nullable=False),
    Column("from_stage", String(100), nullable=True),
    Column("to_stage", String(100), nullable=False),
    Column("entered_at", UtcDateTime, nullable=False),
    Column("left_at", UtcDateTime, nullable=True),
    #: seconds spent in ``to_stage`` (set when the record leaves it)
    Column("duration_seconds", BigInteger, nullable=True),
    Column("actor_id", BigInteger, nullable=True),
    Index("ix_crm_stage_history_record", "entity", "record_id", "id"),
    Index("ix_crm_stage_history_stage", "pipeline", "to_stage", "entered_at"),
)

crm_dedupe_keys = Table(
    "crm_dedupe_keys",
    engine_metadata,
    _id(),
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    #: what the key normalises: ``email``, ``phone``, ``company``, or a field name
    Column("kind", String(50), nullable=False),
    Column("key", String(300), nullable=False),
    #: on a blocking-key row of a fuzzy key (kind ``<kind>~``): the whole normalised key, so the candidates
    #: sharing a blocking key are scored from one range of the index, without reading other rows
    Column("value", String(300), nullable=True),
    #: covering: a lookup reads the matching records (and a fuzzy candidate's whole key) from the index alone
    Index("ix_crm_dedupe_keys_lookup", "kind", "key", "entity", "record_id", "value"),
    Index("ix_crm_dedupe_keys_record", "entity", "record_id"),
)

crm_assignment_cursors = Table(
    "crm_assignment_cursors",
    engine_metadata,
    #: ``<assignment>:<rule index>`` (one round-robin position per rule)
    Column("name", String(200), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=True),
)

crm_pool_log = Table(
    "crm_pool_log",
    engine_metadata,
    _id(),
    Column("pool", String(100), nullable=False),
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    #: the holder concerned (the claimant, the one returning or losing the record)
    Column("user_id", BigInteger, nullable=True),
    #: enter, claim, return, recycle, assign, move, reveal, warn
    Column("action", String(20), nullable=False),
    Column("reason", Text, nullable=True),
    Column("actor_id", BigInteger, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_crm_pool_log_user", "pool", "user_id", "action", "at"),
    Index("ix_crm_pool_log_record", "entity", "record_id", "id"),
)


# --------------------------------------------------------------------------- approvals (version 5)

crm_approval_specs = Table(
    "crm_approval_specs",
    engine_metadata,
    #: the flow version's digest (ApprovalFlow.digest): one parsed process spec per version, shared by its
    #: instances (an instance's state is stored without it)
    Column("digest", String(64), primary_key=True),
    Column("flow", String(100), nullable=False),
    Column("process", String(200), nullable=False),
    #: {"format", "spec", "subprocess_specs"}: SpiffWorkflow's serialized spec
    Column("spec", JsonType, nullable=False),
    #: the revision whose compiled flow this version is (its conditions and steps run the old instances)
    Column("revision_id", BigInteger, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

crm_approval_instances = Table(
    "crm_approval_instances",
    engine_metadata,
    _id(),
    Column("flow", String(100), nullable=False),
    Column("spec_digest", String(64), ForeignKey("crm_approval_specs.digest"), nullable=False),
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    #: pending, approved, rejected, withdrawn, returned
    Column("status", String(20), nullable=False),
    Column("submitter_id", BigInteger, nullable=True),
    #: {"format", "workflow"}: the SpiffWorkflow state without its spec, written with every decision
    Column("state", JsonType, nullable=False),
    #: bumped by every change (a decision made on a state read earlier is refused)
    Column("version", Integer, nullable=False, default=1),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    #: the earliest deadline of the workflow's BPMN timers (None: no timer waiting)
    Column("next_timer_at", UtcDateTime, nullable=True),
    Index("ix_crm_approval_instances_record", "entity", "record_id", "status"),
    Index("ix_crm_approval_instances_timer", "status", "next_timer_at"),
)

crm_approval_tasks = Table(
    "crm_approval_tasks",
    engine_metadata,
    _id(),
    Column("instance_id", BigInteger, ForeignKey("crm_approval_instances.id"), nullable=False),
    Column("step", String(200), nullable=False),
    #: ``<SpiffWorkflow task uuid>/<round>``: the workflow task this row decides; a step run again (退回)
    #: has rows of a new round
    Column("wf_task", String(64), nullable=False),
    Column("assignee_id", BigInteger, ForeignKey("crm_users.id"), nullable=False),
    #: waiting, ready, approved, rejected, reassigned, cancelled
    Column("status", String(20), nullable=False),
    #: position in a sequential (依次) step; 0 for the others
    Column("seq", Integer, nullable=False, default=0),
    #: 加签: the row that added this signer, ``before`` or ``after`` it, and the added group's mode
    Column("added_by", BigInteger, nullable=True),
    Column("position", String(10), nullable=True),
    Column("group_mode", String(10), nullable=True),
    #: 转交: the row this one replaces
    Column("reassigned_from", BigInteger, nullable=True),
    Column("due_at", UtcDateTime, nullable=True),
    Column("remind_at", UtcDateTime, nullable=True),
    Column("reminders", Integer, nullable=False, default=0),
    Column("escalated", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("decided_by", BigInteger, nullable=True),
    #: the inbox: one user's open tasks, newest first, from the index alone
    Index("ix_crm_approval_tasks_inbox", "assignee_id", "status", "id"),
    Index("ix_crm_approval_tasks_instance", "instance_id", "id"),
    Index("ix_crm_approval_tasks_due", "status", "remind_at"),
)

crm_approval_decisions = Table(
    "crm_approval_decisions",
    engine_metadata,
    _id(),
    Column("instance_id", BigInteger, ForeignKey("crm_approval_instances.id"), nullable=False),
    Column("task_id", BigInteger, nullable=True),
    Column("step", String(200), nullable=True),
    #: who acted (None: the system, e.g. a timeout) and for whom (a delegate acting for the assignee)
    Column("actor_id", BigInteger, nullable=True),
    Column("on_behalf_of", BigInteger, nullable=True),
    #: submit, approve, reject, reassign, add_signer, return, withdraw, comment, remind, escalate,
    #: auto_approve, auto_reject, timer, no_assignee (a step went to the admins), approved, rejected (the outcome)
    Column("decision", String(20), nullable=False),
    Column("comment", Text, nullable=True),
    Column("data", JsonType, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    #: a retried request (same key) has no second effect
    Column("idempotency_key", String(200), nullable=True),
    Index("ix_crm_approval_decisions_instance", "instance_id", "id"),
    UniqueConstraint("idempotency_key", name="uq_crm_approval_decisions_key"),
)

crm_delegations = Table(
    "crm_delegations",
    engine_metadata,
    _id(),
    #: while ``starts_at <= now < ends_at``, ``delegate_id`` may act on ``user_id``'s approval tasks
    Column("user_id", BigInteger, ForeignKey("crm_users.id"), nullable=False),
    Column("delegate_id", BigInteger, ForeignKey("crm_users.id"), nullable=False),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_crm_delegations_user", "user_id", "ends_at"),
    Index("ix_crm_delegations_delegate", "delegate_id", "ends_at"),
)

# --------------------------------------------------------------------------- multi-currency (version 6)

crm_exchange_rates = Table(
    "crm_exchange_rates",
    engine_metadata,
    _id(),
    #: 1 unit of ``from_currency`` is worth ``rate`` units of ``to_currency`` from ``rate_date`` on
    #: (until a later row of the same pair); lookups take the latest row on or before their date
    Column("from_currency", String(3), nullable=False),
    Column("to_currency", String(3), nullable=False),
    Column("rate_date", Date, nullable=False),
    Column("rate", DecimalType(24, 10), nullable=False),
    Column("set_by", BigInteger, nullable=True),
    Column("set_at", UtcDateTime, nullable=False),
    Column("source", String(40), nullable=True),
    UniqueConstraint("from_currency", "to_currency", "rate_date", name="uq_crm_exchange_rates_pair_date"),
)


# --------------------------------------------------------------------------- attachments and comments (version 6)

crm_files = Table(
    "crm_files",
    engine_metadata,
    _id(),
    #: the record the file is attached to
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    #: the sanitised file name (no folders, no control characters)
    Column("name", String(255), nullable=False),
    #: sniffed from the bytes, never the client's word
    Column("content_type", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    #: the file store that holds the bytes (``local``, or a plugin's) and the key it holds them under
    Column("store", String(50), nullable=False),
    Column("storage_key", String(300), nullable=False),
    Column("created_by", BigInteger, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("deleted_by", BigInteger, nullable=True),
    Column("deleted_at", UtcDateTime, nullable=True),
    Index("ix_crm_files_record", "entity", "record_id", "id"),
)

crm_comments = Table(
    "crm_comments",
    engine_metadata,
    _id(),
    #: the record commented on
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    Column("author_id", BigInteger, nullable=True),
    Column("body", Text, nullable=False),
    #: ids of the users the body mentions (``@username``) who were notified
    Column("mentions", JsonType, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("edited_at", UtcDateTime, nullable=True),
    Column("deleted_at", UtcDateTime, nullable=True),
    Index("ix_crm_comments_record", "entity", "record_id", "id"),
)


# --------------------------------------------------------------------------- people: teams, logins (version 6)

crm_team_members = Table(
    "crm_team_members",
    engine_metadata,
    _id(),
    #: a user may belong to several teams besides their main one (``crm_users.team_id``)
    Column("team_id", BigInteger, ForeignKey("crm_teams.id"), nullable=False),
    Column("user_id", BigInteger, ForeignKey("crm_users.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("team_id", "user_id", name="uq_crm_team_members"),
    Index("ix_crm_team_members_user", "user_id"),
)

crm_login_failures = Table(
    "crm_login_failures",
    engine_metadata,
    #: consecutive failed password logins of one user, and the lockout they caused
    Column("user_id", BigInteger, ForeignKey("crm_users.id"), primary_key=True, autoincrement=False),
    Column("failures", Integer, nullable=False),
    Column("last_failed_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
)


def stored_version(conn: Connection) -> int:
    """The engine-table version the database holds: 0 for a database without engine tables, 1 for one
    made before versions were recorded."""
    if not inspect(conn).has_table(crm_meta.name):
        return 0
    raw = conn.execute(select(crm_meta.c.value).where(crm_meta.c.key == SCHEMA_VERSION_KEY)).scalar()
    return int(raw) if raw is not None else 1


def _add_column(conn: Connection, table_name: str, column: str) -> None:
    """ALTER TABLE ADD COLUMN as the current definition declares it (skipped when it is there)."""
    if column in {c["name"] for c in inspect(conn).get_columns(table_name)}:
        return
    spec = CreateColumn(engine_metadata.tables[table_name].c[column]).compile(dialect=conn.dialect)
    quote = conn.dialect.identifier_preparer.quote
    conn.exec_driver_sql(f"ALTER TABLE {quote(table_name)} ADD COLUMN {spec}")


def _to_v2(conn: Connection) -> None:
    """Version 2: tokens may expire (``crm_api_tokens.expires_at``)."""
    _add_column(conn, "crm_api_tokens", "expires_at")


def _to_v3(conn: Connection) -> None:
    """Version 3: the worker records when a job finished; the outbox is read by status."""
    _add_column(conn, "crm_jobs", "finished_at")
    if "ix_crm_outbox_status" not in {ix["name"] for ix in inspect(conn).get_indexes("crm_outbox")}:
        next(ix for ix in crm_outbox.indexes if ix.name == "ix_crm_outbox_status").create(conn)


def _to_v4(conn: Connection) -> None:
    """Version 4: the sales process's tables (notifications, stage history, dedupe keys, assignment cursors,
    the pool log) -- new tables only, made by the ``create_all`` that follows every migration."""


def _to_v5(conn: Connection) -> None:
    """Version 5: the approval tables (specs, instances, tasks, decisions, delegations) -- new tables only,
    made by the ``create_all`` that follows every migration."""


def _to_v6(conn: Connection) -> None:
    """Version 6: the records-and-people tables (nested teams, attachments, comments, search, encryption,
    exchange rates) -- new tables are made by the ``create_all`` that follows; new columns of existing
    tables are added here."""
    _add_column(conn, "crm_teams", "parent_id")  # people: nested teams


#: version N -> the migration that turns a version N-1 database into version N (one per version).
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _to_v2, 3: _to_v3, 4: _to_v4, 5: _to_v5, 6: _to_v6}


def check_version(conn: Connection) -> int:
    """The stored version; DatabaseNotReady (``engine_schema``) when a newer engine made the tables."""
    stored = stored_version(conn)
    if stored > ENGINE_SCHEMA_VERSION:
        raise DatabaseNotReady(
            f"the database's engine tables are version {stored}, newer than this engine's "
            f"{ENGINE_SCHEMA_VERSION}", code="engine_schema",
            hint="upgrade the engine (pip install -U crm-engine) to the version that last wrote this database")
    return stored


def upgrade(conn: Connection) -> None:
    """Bring the engine tables to :data:`ENGINE_SCHEMA_VERSION` inside the caller's transaction.

    A new database gets every table at once; an older one runs each
    migration from its version up, in order; a newer one is refused (see
    :func:`check_version`).  The caller holds the apply lock (an apply, or a
    runtime opening an older database).
    """
    stored = check_version(conn)
    if stored == ENGINE_SCHEMA_VERSION:
        engine_metadata.create_all(conn)  # an engine table dropped by hand comes back (empty) rather than
        return                            # failing every apply with "relation does not exist"
    if stored > 0:
        for version in range(stored + 1, ENGINE_SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn)
    engine_metadata.create_all(conn)  # a new database, or tables a migration expects to be created
    done = conn.execute(crm_meta.update().where(crm_meta.c.key == SCHEMA_VERSION_KEY)
                        .values(value=str(ENGINE_SCHEMA_VERSION))).rowcount
    if not done:
        conn.execute(crm_meta.insert().values(key=SCHEMA_VERSION_KEY, value=str(ENGINE_SCHEMA_VERSION)))
