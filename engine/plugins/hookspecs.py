"""The hooks a plugin may implement (pluggy hook specifications).

A plugin is a module or object with functions of these names decorated
with :data:`engine.plugins.hookimpl`.  Every hook returns a list (possibly
empty); the engine flattens the lists of all plugins in registration order:
the built-in plugin first, then the workspace's ``plugins:`` in the order
written.  Each hook is documented in docs/plugins.md (a test fails when one
is not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from engine.dsl.expressions import FunctionDef
    from engine.dsl.extensions import FieldTypeDef
    from engine.dsl.kinds import KindSpec
    from engine.dsl.model import Workspace

PROJECT = "crm_engine"
hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def crm_config_kinds() -> list[KindSpec]:
    """Document kinds the plugin adds to the configuration language.

    Arguments: none.  Returns :class:`engine.dsl.kinds.KindSpec` values:
    a name (the document's first key), a JSON Schema (a dict), list-merge
    rules for ``extend: true``, a ``compile(docs, ctx)`` function returning
    ``{name: typed object}`` (``ctx`` holds the entities, roles and objects of
    the kinds compiled before it; problems go to ``ctx.report``, located),
    an ``order`` (entities compile at 10, roles at 20; later kinds see
    earlier ones) and optionally ``entity_fields(objects, ctx)`` naming the
    fields its objects add to entities, which the planner then creates.
    When: once per compile of a workspace or a stored revision (every
    ``crm validate``/``plan``/``apply`` and every server start).  Order:
    kinds compile by ``order``, then name; a name defined twice is an error.
    """
    return []


@hookspec
def crm_expression_functions() -> list[FunctionDef]:
    """Functions the plugin adds to the expression language (conditions, formulas, filters).

    Arguments: none.  Returns :class:`engine.dsl.expressions.FunctionDef`
    values: name, parameter kinds, result kind, a Python implementation and,
    to be usable in list filters and SQL, ``sql={"*": fn}`` building a
    SQLAlchemy clause from the argument clauses.  When: once per compile;
    the functions are type-checked like the built-ins.  Order: a name
    already taken (built-in or another plugin) is an error.
    """
    return []


@hookspec
def crm_field_types() -> list[FieldTypeDef]:
    """Field types the plugin adds (``type: chinese_id`` in an entity).

    Arguments: none.  Returns :class:`engine.dsl.extensions.FieldTypeDef`
    values: a name, the built-in ``base`` type that stores and types it (a
    column, filters, expressions), an optional default ``max_length`` and a
    ``check(value) -> value`` run on every value written (normalise it or
    raise ``ValueError`` with the message shown next to the field).  When:
    once per compile (the entity schema's type list grows) and on every
    write of such a field.  Order: a name already taken is an error.
    """
    return []


@hookspec
def crm_write_steps(workspace: Workspace) -> list[Any]:
    """Steps added to the one write pipeline of every record write.

    Arguments: ``workspace``, the compiled revision the steps will run for
    (a stage gate can look up which entities have pipelines).  Returns
    objects with ``name``, ``order``, ``applies_to(entity) -> bool`` and
    ``before_write(ctx, entity, record, old)``; optionally
    ``after_write(ctx, entity, record, old)``.  ``before_write`` runs after
    the validation rules, before the row is stored, and may change the
    record or raise a RecordError to stop the write; ``after_write`` runs
    after the row and its audit are written, in the same transaction.
    When: resolved once per revision; run on create, update, delete,
    restore, ``create_many``, ``update_many`` and handover.  Order: by
    ``(order, name)``; suggested orders: 100 stage gates, 200 dedupe, 300
    scoring, 400 assignment, 900 approval lock.
    """
    return []


@hookspec
def crm_event_handlers(workspace: Workspace) -> list[Any]:
    """Durable handlers of domain events (created, updated, deleted, restored, handover).

    Arguments: ``workspace``, the compiled revision.  Returns objects with
    ``name``, ``events`` (event kinds, e.g. ``("lead.created",)`` or
    ``("*.updated",)``) and ``handle(ctx, event)``.  When: the write stores
    one outbox row per matching handler in its own transaction; ``crm
    worker`` delivers it after the commit, with retries, so a crash loses
    nothing and a handler runs once per event.  Order: handlers of one
    event run independently, by name.
    """
    return []


@hookspec
def crm_read_masks(workspace: Workspace) -> list[Any]:
    """Masks applied to records as they are read (a pool hides phone and email while a lead is unclaimed).

    Arguments: ``workspace``, the compiled revision.  Returns objects with
    ``name``, ``applies_to(entity) -> bool`` and ``mask(uow, entity,
    records)``, which changes the record dicts in place (replacing a value
    with its masked form) before they leave the read path; optionally
    ``fields(entity)`` with ``masked_rows(uow, entity, fields)`` (an SQL
    condition: lists filtered or sorted on those fields leave such rows out)
    and ``mask_history(uow, entity, record_id, entries)``.  When: resolved
    once per revision; run on every get, list, reference expansion, write
    result and history of a record of an entity it applies to, after the row
    scope and the hidden-field rules, for every actor but the system
    (:mod:`engine.runtime.records.masking`).  Order: by name.
    """
    return []


@hookspec
def crm_plan_steps(workspace: Workspace) -> list[Any]:
    """Data changes a configuration change needs, shown in ``crm plan`` and run by ``crm apply``.

    Arguments: ``workspace``, the compiled revision being planned.  Returns
    objects with ``name``, ``plan(pctx) -> list[Change]`` (changes of kind
    ``feature_data`` whose ``details["step"]`` is the step's name; ``pctx``
    holds the connection, the old and the new workspace's objects) and
    ``apply(actx, change)``, run in the apply's transaction after the
    schema changes (rescoring every lead when scoring rules changed is one
    set-based UPDATE).  When: on every plan and apply.  Order: by name,
    after every schema change.
    """
    return []


@hookspec
def crm_job_kinds() -> list[Any]:
    """Kinds of background job the plugin can run (``crm worker``).

    Arguments: none.  Returns objects with ``name``, ``run(ctx, payload)``,
    optionally ``schedule`` (``"hourly"``, ``"daily 02:00"``, ``"every 5m"``)
    for a job the worker starts by itself, and ``max_attempts``.  When: a
    worker runs a due job of that kind; a job raising is retried with
    backoff, then marked dead with its error.  Order: a name defined twice
    is an error.
    """
    return []


@hookspec
def crm_actions() -> list[Any]:
    """Named actions automations and approval outcomes can run (``set``, ``notify``...).

    Arguments: none.  Returns objects with ``name`` and ``run(ctx, record,
    params)``.  When: an automation or approval step runs the action inside
    the unit of work of its trigger or job.  Order: a name defined twice is
    an error.
    """
    return []


@hookspec
def crm_api_blueprints(runtime: Any) -> list[Any]:
    """Flask blueprints served next to ``/api/v1`` (each should set its own ``url_prefix``).

    Arguments: ``runtime``, the running engine.  Returns Flask blueprints.
    When: once, when the app is created (``crm serve``, ``crm demo``).  A
    blueprint must go through the record service for every record read and
    write.  Order: registered after the core API, in plugin order.
    """
    return []


@hookspec
def crm_cli_commands() -> list[Any]:
    """Commands added to ``crm`` (click commands or groups).

    Arguments: none.  Returns click commands.  When: every installed
    plugin's commands are added when the ``crm`` command starts.  Order: a
    name already taken by a built-in command is refused with a warning.
    """
    return []


@hookspec
def crm_file_stores() -> list[Any]:
    """Places attachment bytes can be kept, besides the built-in ``local`` folder (an S3-compatible bucket).

    Arguments: none.  Returns objects with ``name`` and ``open(settings, runtime)`` returning a file store
    (:class:`engine.runtime.collab.stores.FileStore`: ``name``, ``put(key, stream) -> size``,
    ``open(key) -> stream``, ``delete(key)``); ``settings`` is the workspace's ``attachments:``
    (``settings.options`` holds the store's own settings).  When: the first attachment read or written
    under a revision whose ``attachments.store`` names the store; the store is kept for the revision.
    Order: a name defined twice is an error (``local`` is the engine's own).
    """
    return []


@hookspec
def crm_admin_views(runtime: Any) -> list[Any]:
    """Views the admin UI shows (``/admin``).

    Arguments: ``runtime``, the running engine.  Returns admin views.
    When: once, when the admin UI is mounted.  Views read and write through
    the runtime services only.  Order: added in plugin order.
    """
    return []
