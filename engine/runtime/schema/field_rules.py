"""Plan rules for one field: add, rename, retire, purge, type/length/option/storage changes.

Every rule returns :class:`Change` objects; none touches the database except
through :class:`PlanContext` read queries.  ``old`` is always the field as
the database holds it now (its *old* name, storage and type), ``new`` the
field as configured.
"""

from __future__ import annotations

from sqlalchemy import String, func

from engine.dsl.model import NUMERIC_TYPES, STRING_TYPES, Field
from engine.runtime.schema.model import Change, fmt_rows
from engine.runtime.schema.probes import PlanContext
from engine.runtime.storage import clear_column_type, to_json_value
from engine.wording import agreeing

TEXTUAL = STRING_TYPES | {"picklist"}
PLAIN_NUMERIC = NUMERIC_TYPES - {"money"}


def _ref(entity: str, field: Field | str) -> str:
    return f"{entity}.{field if isinstance(field, str) else field.name}"


def _details(old: Field, **extra: object) -> dict[str, object]:
    return {"old_name": old.name, "storage": old.storage, **extra}


def text_length(f: Field) -> int | None:
    """Maximum characters a textual field holds (None: unlimited)."""
    if f.type not in TEXTUAL:
        return None
    ctype = clear_column_type(f)  # an encrypted column's type follows the encryption step, not this rule
    return ctype.length if isinstance(ctype, String) else None


# --------------------------------------------------------------------------- add / rename / retire


def add_field(entity: str, f: Field) -> Change:
    kind = "add_json_field" if f.storage == "json" else "add_column"
    what = "field" if f.storage == "json" else "column"
    note = "stored in ext, no DDL" if f.storage == "json" else None
    return Change(kind, entity, f"add {what} {_ref(entity, f)}", f.name, note=note,
                  details={"storage": f.storage})


def rename_field(ctx: PlanContext, entity: str, old: Field, new: Field) -> Change:
    rows = ctx.count_filled(entity, old)
    return Change("rename_column", entity, f"rename {_ref(entity, old)} to {new.name}", new.name,
                  rows=rows, note=agreeing(rows, "row", "keep their data"), details=_details(old))


def blocked_rename(entity: str, new: Field) -> Change:
    return Change(
        "rename_column", entity, f"rename {_ref(entity, new.renamed_from or '?')} to {new.name}", new.name,
        safety="blocked", reason=f"{entity} has no field {new.renamed_from!r} to rename ({new.location})",
        fix=f"fix renamed_from on {_ref(entity, new)}, or remove it to add a new empty field",
    )


def blocked_rename_onto_retired(ctx: PlanContext, entity: str, old: Field, retired: Field, new: Field) -> Change:
    """``new`` renames ``old`` but a retired field of the same name still holds its own column and data
    (e.g. a rename done without ``renamed_from``, then rolled back): two columns cannot share a name."""
    kept = ctx.count_filled(entity, retired)
    moving = ctx.count_filled(entity, old)
    return Change(
        "rename_column", entity, f"rename {_ref(entity, old)} to {new.name}", new.name, safety="blocked",
        rows=moving,
        reason=f"{_ref(entity, new)} already exists as a retired field ({fmt_rows(kept)} with data), so "
               f"{_ref(entity, old)} ({fmt_rows(moving)} with data) cannot take its name",
        fix=f"either drop renamed_from to bring back the retired {new.name} with its data ({old.name} is then "
            f"retired, keeping its data); or purge the retired {new.name} first (apply the current "
            f"configuration with --purge, which exports it), then apply the rename",
    )


def blocked_rename_onto_live(ctx: PlanContext, entity: str, old: Field, taken: Field) -> Change:
    """``renamed_from`` on a field the database already has, naming another field it also has: renaming
    would merge two fields' data."""
    kept, moving = ctx.count_filled(entity, taken), ctx.count_filled(entity, old)
    return Change(
        "rename_column", entity, f"rename {_ref(entity, old)} to {taken.name}", taken.name, safety="blocked",
        rows=moving,
        reason=f"{_ref(entity, taken)} already exists ({fmt_rows(kept)} with data), so {_ref(entity, old)} "
               f"({fmt_rows(moving)} with data) cannot take its name",
        fix=f"rename to a name no field uses, or drop renamed_from ({old.name} is then retired, keeping its data)",
    )


def unretire_field(ctx: PlanContext, entity: str, old: Field) -> Change:
    rows = ctx.count_filled(entity, old)
    return Change("unretire_column", entity, f"bring back retired {_ref(entity, old)}", old.name,
                  rows=rows, note=agreeing(rows, "row", "get their data back"), details=_details(old))


def retire_field(ctx: PlanContext, entity: str, old: Field) -> Change:
    rows = ctx.count_filled(entity, old)
    return Change("retire_column", entity, f"retire {_ref(entity, old)}", old.name, rows=rows,
                  note=agreeing(rows, "row", "keep their data"), details=_details(old))


def purge_field(ctx: PlanContext, entity: str, old: Field) -> Change:
    rows = ctx.count_filled(entity, old)
    desc = f"purge retired {_ref(entity, old)}"
    if ctx.export_dir is None:
        return Change("purge_column", entity, desc, old.name, safety="blocked", rows=rows,
                      reason="a purge must first export the data and no export folder was given",
                      fix="run crm apply --purge, which exports to the workspace's exports/ folder first")
    path = ctx.export_dir / f"{entity}.{old.name}.{ctx.stamp}.jsonl"
    return Change("purge_column", entity, desc, old.name, safety="destructive", rows=rows,
                  note=f"{fmt_rows(rows)} exported to {path} first, then the data is dropped",
                  details=_details(old, export_path=str(path)))


# --------------------------------------------------------------------------- same field, changed


def field_changes(ctx: PlanContext, entity: str, old: Field, new: Field) -> list[Change]:
    """Changes turning ``old`` (as stored) into ``new`` (as configured), in apply order."""
    out: list[Change] = []
    if old.storage != new.storage:
        out.append(_move_storage(ctx, entity, old, new))
    if old.reference != new.reference and new.type in ("reference", "user"):
        out.append(Change("change_type", entity, f"retarget {_ref(entity, new)}", new.name, safety="blocked",
                          reason=f"the reference target changes from {old.reference} to {new.reference}",
                          fix="add a new reference field instead and retire this one"))
    elif old.type != new.type or (new.type in PLAIN_NUMERIC and old.scale != new.scale):
        out.append(_change_type(ctx, entity, old, new))
    elif text_length(old) != text_length(new):
        out.append(_change_length(ctx, entity, old, new))
    if new.type in ("picklist", "multi_picklist") and old.type == new.type:
        out.extend(_option_changes(ctx, entity, old, new))
    return out


def _move_storage(ctx: PlanContext, entity: str, old: Field, new: Field) -> Change:
    desc = f"move {_ref(entity, new)} from {old.storage} to {new.storage}"
    if "money" in (old.type, new.type):
        return Change("move_storage", entity, desc, new.name, safety="blocked",
                      reason="money fields keep their currency in a companion column and cannot move yet",
                      fix=f"keep {_ref(entity, new)} at storage: {old.storage}")
    rows = ctx.count_filled(entity, old)
    return Change("move_storage", entity, desc, new.name, rows=rows,
                  note=agreeing(rows, "row", "keep their value"),
                  details=_details(old, to=new.storage))


def _too_long(ctx: PlanContext, entity: str, old: Field, limit: int | None) -> int:
    if limit is None:
        return 0
    return ctx.count(entity, func.length(ctx.expr(entity, old)) > limit) if ctx.has_data else 0


def _longest(ctx: PlanContext, entity: str, old: Field) -> int:
    return ctx.scalar(entity, func.max(func.length(ctx.expr(entity, old)))) or 0


def _change_length(ctx: PlanContext, entity: str, old: Field, new: Field) -> Change:
    before, after = text_length(old), text_length(new)
    widen = after is None or (before is not None and after > before)
    desc = f"{'widen' if widen else 'narrow'} {_ref(entity, new)} from {before or 'unlimited'} " \
           f"to {after or 'unlimited'} characters"
    details = _details(old, from_length=before, to_length=after)
    if widen:
        return Change("widen_length", entity, desc, new.name, details=details)
    if old.encrypted:  # the column holds sealed text: the limit is the writes' check, the database cannot count
        return Change("narrow_length", entity, desc, new.name, details=details,
                      note="encrypted values are not counted; writes check the new limit")
    longer = _too_long(ctx, entity, old, after)
    if longer:
        return Change("narrow_length", entity, desc, new.name, safety="blocked", rows=longer,
                      reason=agreeing(longer, "row", "hold longer values"),
                      fix=f"shorten those values first, or keep max_length >= {_longest(ctx, entity, old)}")
    return Change("narrow_length", entity, desc, new.name, note="all existing values fit", details=details)


def _type_problem(ctx: PlanContext, entity: str, old: Field, new: Field) -> tuple[int, str] | None:
    """(rows, reason) when existing data cannot take the new type; None when it fits."""
    if not ctx.has_data:
        return None
    expr = ctx.expr(entity, old)
    if old.type in TEXTUAL and new.type in TEXTUAL:
        n = _too_long(ctx, entity, old, text_length(new))
        if n:
            return n, agreeing(n, "row", f"hold values longer than {text_length(new)} characters")
        if new.type == "picklist":
            n = ctx.count(entity, expr.is_not(None) & expr.not_in(new.option_keys or ("",)))
            return (n, agreeing(n, "row", "hold values that are not options")) if n else None
        return None
    if old.type in PLAIN_NUMERIC and new.type in PLAIN_NUMERIC:
        places = 0 if new.type == "integer" else new.scale
        n = ctx.count(entity, expr.is_not(None) & (expr != func.round(expr, places)))
        return (n, agreeing(n, "row", f"hold values with more than {places} decimal places")) if n else None
    n = ctx.count_filled(entity, old)
    return (n, agreeing(n, "row", f"hold a value and {old.type} cannot become {new.type}")) if n else None


def _change_type(ctx: PlanContext, entity: str, old: Field, new: Field) -> Change:
    desc = f"change {_ref(entity, new)} from {old.type} to {new.type}"
    if old.type in PLAIN_NUMERIC and new.type in PLAIN_NUMERIC and old.scale != new.scale:
        desc += f" (scale {old.scale} -> {new.scale})"
    details = _details(old, from_type=old.type, to_type=new.type)
    if "money" in (old.type, new.type) and old.type != new.type:
        return Change("change_type", entity, desc, new.name, safety="blocked",
                      reason="changing to or from money is not supported",
                      fix="add a new money field, copy the values with an import, retire the old field")
    problem = _type_problem(ctx, entity, old, new)
    if problem:
        rows, reason = problem
        return Change("change_type", entity, desc, new.name, safety="blocked", rows=rows, reason=reason,
                      fix="fix or clear those values first, or add a new field and retire this one")
    return Change("change_type", entity, desc, new.name, note="all existing values fit", details=details)


def _option_rows(ctx: PlanContext, entity: str, old: Field, key: str) -> int:
    if not ctx.has_data:
        return 0
    if old.type == "multi_picklist":
        return sum(1 for v in ctx.values(entity, old) if isinstance(v, list) and key in v)
    return ctx.count(entity, ctx.expr(entity, old) == key)


def _option_changes(ctx: PlanContext, entity: str, old: Field, new: Field) -> list[Change]:
    out = []
    for key in (k for k in old.option_keys if k not in new.option_keys):
        rows = _option_rows(ctx, entity, old, key)
        desc = f"remove option {_ref(entity, new)}={key!r}"
        target = new.replace.get(key)
        details = _details(old, option=key, to=target)
        if target is not None and target not in new.option_keys:
            out.append(Change("replace_options", entity, desc, new.name, safety="blocked", rows=rows,
                              reason=f"replace maps {key!r} to {target!r}, which is not an option",
                              fix=f"use one of: {', '.join(new.option_keys)}"))
        elif target is not None:
            out.append(Change("replace_options", entity, f"{desc} -> {target!r}", new.name, rows=rows,
                              note=f"{fmt_rows(rows)} changed to {target!r}", details=details))
        elif rows:
            out.append(Change("remove_option", entity, desc, new.name, safety="blocked", rows=rows,
                              reason=agreeing(rows, "row", "use it"), fix=_removal_fix(entity, new, key)))
        else:
            out.append(Change("remove_option", entity, desc, new.name, rows=0, note="no row uses it",
                              details=details))
    return out


def _removal_fix(entity: str, new: Field, key: str) -> str:
    """How to unblock removing option ``key`` that rows use: where its rows go is said where the options live."""
    if new.options_owner:  # e.g. a pipeline, whose stages are the options
        return (f"{new.options_owner} owns the options of {_ref(entity, new)}: write "
                f"{{key: {key}, remove: true, move_to: ...}} in it to move those rows to another option")
    return f"add replace: {{{key}: ...}} to {_ref(entity, new)}"


# --------------------------------------------------------------------------- becoming required


def require_changes(ctx: PlanContext, entity: str, old: Field | None, new: Field) -> list[Change]:
    """A field that becomes required (or is added required) while rows have no value: the rows get its
    ``default`` (safe), or the change is blocked with their count.  ``old`` None: a new field."""
    if not new.required or (old is not None and old.required) or not ctx.has_data:
        return []
    if old is None:
        empty = ctx.count(entity)
    else:
        empty = ctx.count(entity, ctx.expr(entity, old).is_(None))
    if not empty:
        return []
    ref = _ref(entity, new)
    desc = f"fill {ref} where it is empty"
    if new.default is not None and new.type != "money":
        return [Change("fill_default", entity, desc, new.name, rows=empty,
                       note=agreeing(empty, "row", f"get the default {to_json_value(new, new.default)!r}"),
                       details={"storage": new.storage, "value": to_json_value(new, new.default)})]
    return [Change("fill_default", entity, desc, new.name, safety="blocked", rows=empty,
                   reason=f"{ref} becomes required but {agreeing(empty, 'row', 'have no value')} ({new.location})",
                   fix=f"give {ref} a default: (the apply fills those rows with it), fill them first "
                       "(an import or a bulk update), or keep required: false")]
