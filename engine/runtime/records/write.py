"""Stages 2 to 5 of the write pipeline for records of one entity: coercion, defaults, formulas, checks.

Fixed order (docs/records.md, :mod:`engine.runtime.records.pipeline`):
coercion and type validation per field (references the caller sends are
then checked for visibility) -> defaults -> required -> formulas ->
validation rules.  All per-field problems of one record are reported
together in one :class:`~engine.errors.ValidationFailed` whose ``details``
map field -> messages.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.errors import ExpressionEvalError, ValidationFailed
from engine.runtime import exchange_rates, users
from engine.runtime.records import exprs, persist, rows
from engine.runtime.records.coerce import BadValue, coerce_currency
from engine.runtime.records.steps import Action, WriteContext
from engine.runtime.records.write_plan import WRITABLE_STANDARD, EntityPlan
from engine.runtime.security import Access

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

Errors = dict[str, list[str]]


class Writer:
    """Runs the pipeline for records of one entity in one unit of work."""

    def __init__(self, uow: UnitOfWork, plan: EntityPlan, access: Access, action: Action, *,
                 bypass_readonly: bool = False, bulk: bool = False) -> None:
        self.uow = uow
        self.plan = plan
        self.access = access
        self.ctx = WriteContext(uow, action, bypass_readonly=bypass_readonly, bulk=bulk)
        self.bypass_readonly = bypass_readonly
        self._refs: dict[tuple[str, int], Any] = {}
        self._users: dict[Any, Any] = {}
        self._children: dict[str, Writer] = {}
        self._verdicts: dict[Any, str | None] = {}
        self._new_ctx: Any = None
        self._fast: Mapping[str, tuple[Any, bool]] = uow.state.memo(
            "writable", (plan.name, access, bypass_readonly), self._writable_parts)
        self._now = uow.clock.now()
        self._currency = uow.workspace.currency

    # ------------------------------------------------------------------ step 2: coercion

    def coerce(self, values: Mapping[str, Any], errors: Errors, *, prefix: str = "",
               child: bool = False) -> dict[str, Any]:
        """Coerced values of the known, writable keys; problems go to ``errors``."""
        if not isinstance(values, Mapping):
            raise ValidationFailed("a record must be an object of field values", details={"_record": [
                "must be an object (field -> value)"]})
        out: dict[str, Any] = {}
        fast = self._fast
        for key, value in values.items():
            spec = fast.get(key) if type(key) is str else None
            if spec is not None:  # a writable plain field: the common case, kept short (coercer_for inlined)
                if value is None or (not spec[1] and value == ""):
                    out[key] = None
                    continue
                try:
                    out[key] = spec[0](value)
                except BadValue as e:
                    errors.setdefault(prefix + key, []).append(str(e))
                continue
            if child and (key in rows.LINE_META or self._computed(key)):
                continue  # a lines row read back from get() may be sent again unchanged
            try:
                problem = self._verdicts[key]
            except KeyError:
                problem = self._verdicts[key] = self._writable(key)
            except TypeError:  # an unhashable key
                problem = "unknown field"
            if problem is None:
                try:
                    out[key] = self._coerce_one(key, value, errors, prefix)
                except BadValue as e:
                    problem = str(e)
            if problem is not None:
                errors.setdefault(prefix + str(key), []).append(problem)
        return out

    def _writable_parts(self) -> dict[str, tuple[Any, bool]]:
        """field -> coercer parts, for the plain fields this writer may write (memoised per access)."""
        return {k: p for k, p in self.plan.coercer_parts.items() if self._writable(k) is None}

    def _writable(self, key: Any) -> str | None:
        """None when ``key`` may be written, else the message why not."""
        plan, acc = self.plan, self.access
        base = (_money_base(plan, key) or key) if isinstance(key, str) else None
        if base in plan.entity.fields and base not in acc.hidden:
            if not self.bypass_readonly and (base in plan.readonly or base in acc.readonly):
                return "is read-only"
            return None
        if base is not None and base in plan.out_fields and base not in plan.entity.fields:
            return None if key in WRITABLE_STANDARD else "is read-only"
        return "unknown field" + _did_you_mean(str(key), self._visible_names())

    def _computed(self, key: str) -> bool:
        base = self.plan.entity.fields.get(_money_base(self.plan, key) or key)
        return base is not None and bool(base.formula)

    def _visible_names(self) -> list[str]:
        return [k for k in self.plan.out_fields if (_money_base(self.plan, k) or k) not in self.access.hidden] + \
            list(self.plan.lines)

    def _coerce_one(self, key: str, value: Any, errors: Errors, prefix: str) -> Any:
        if key in self.plan.lines:
            return self._coerce_lines(key, value, errors, prefix)
        parts = self.plan.coercer_parts.get(key)
        if parts is not None:
            coercer, keep_empty = parts
            return None if value is None or (value == "" and not keep_empty) else coercer(value)
        if key == "owner_id":
            return _owner(value)
        return coerce_currency(value)

    def _coerce_lines(self, key: str, value: Any, errors: Errors, prefix: str) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise BadValue("must be a list of line objects")
        child = self.child_writer(key)
        out = []
        for i, row in enumerate(value):
            p = f"{prefix}{key}[{i}]."
            if not isinstance(row, Mapping):
                errors.setdefault(p[:-1], []).append("must be an object (field -> value)")
                continue
            clean = child.coerce(row, errors, prefix=p, child=True)
            out.append(child.complete_new(clean, errors, prefix=p))
        return out

    def child_writer(self, lines_field: str) -> Writer:
        got = self._children.get(lines_field)
        if got is None:
            name = self.plan.lines[lines_field]
            got = Writer(self.uow, self.uow.state.plan(name), self.uow.guard.access(name), self.ctx.action,
                         bypass_readonly=self.bypass_readonly, bulk=self.ctx.bulk)
            self._children[lines_field] = got
        return got

    # ------------------------------------------------------------------ steps 3-4: defaults, formulas

    def complete_new(self, clean: dict[str, Any], errors: Errors, *, prefix: str = "",
                     owner: int | None = None) -> dict[str, Any]:
        """A new record: ``clean`` plus defaults, required check and formulas.

        ``owner`` is the owner a record gets when none is given (the actor), set before defaults and
        formulas run so that ``owner.team`` reads it."""
        plan = self.plan
        self._given_references(clean, None, errors, prefix)
        record = {**plan.blank, **clean}
        if owner is not None and not record.get("owner_id"):
            record["owner_id"] = owner
        for name in plan.lines:
            record.setdefault(name, [])
        self._defaults(record, clean, errors, prefix)
        if plan.required_order:
            self.require(record, plan.required_order, errors, prefix)
        self._formulas(record, None, errors, prefix)
        return record

    def complete_update(self, old: Mapping[str, Any], clean: dict[str, Any], errors: Errors) -> dict[str, Any]:
        """The updated record: ``old`` with ``clean`` applied, required check, formulas recomputed."""
        self._given_references(clean, old, errors, "")
        record = dict(old)
        record.update(clean)
        self.require(record, [k for k in self.plan.required_order if k in clean], errors, "")
        self._formulas(record, old, errors, "")
        return record

    def _given_references(self, clean: Mapping[str, Any], old: Mapping[str, Any] | None, errors: Errors,
                          prefix: str) -> None:
        """References the caller sent (and changed) must point to records the actor can see -- checked
        before any default, formula or rule reads through them, so a rule's message never tells the
        caller something about a record they cannot see (the answer is the same as for a missing one)."""
        refs = self.plan.references
        keys = [k for k in clean if (k in refs or k == "owner_id") and clean[k] is not None
                and (old is None or old.get(k) != clean[k])]
        if not keys:
            return
        problems = persist.reference_problems(self.uow, self.plan, [clean], keys)
        if problems:
            errors.update({prefix + k: v for k, v in problems.items()})
            raise_errors(errors, self.plan.name)

    def _defaults(self, record: dict[str, Any], given: Mapping[str, Any], errors: Errors, prefix: str) -> None:
        for name, literal, compiled in self.plan.defaults:
            if name in given:
                continue
            value = literal if compiled is None else self._eval(compiled, record, None, errors, prefix + name)
            try:
                record[name] = self.plan.coercers[name](value)
            except BadValue as e:
                errors.setdefault(prefix + name, []).append(f"default {e}")
        for name, key in self.plan.currency_keys.items():
            if record.get(name) is not None and not record.get(key):
                record[key] = self._currency

    @staticmethod
    def require(record: Mapping[str, Any], names: Iterable[str], errors: Errors, prefix: str = "") -> None:
        """Report ``is required`` for each of ``names`` the record leaves empty."""
        for name in names:
            value = record.get(name)
            if prefix + name in errors:
                continue  # already reported (e.g. a wrong value that was not taken)
            if value is None or value == [] or (isinstance(value, str) and not value.strip()):
                errors.setdefault(prefix + name, []).append("is required")

    def _formulas(self, record: dict[str, Any], old: Mapping[str, Any] | None, errors: Errors,
                  prefix: str) -> None:
        for name, compiled in self.plan.formulas:
            value = self._eval(compiled, record, old, errors, prefix + name)
            try:
                record[name] = self.plan.coercers[name](value)
            except BadValue as e:
                errors.setdefault(prefix + name, []).append(f"formula result {e}")
            key = self.plan.currency_keys.get(name)
            if key is not None and record.get(name) is not None:
                record[key] = exprs.result_currency(compiled, record) or record.get(key)
        for name, key in self.plan.currency_keys.items():
            if record.get(name) is not None and not record.get(key):
                record[key] = self._currency

    def _eval(self, compiled: Any, record: Mapping[str, Any], old: Mapping[str, Any] | None, errors: Errors,
              where: str) -> Any:
        try:
            return exprs.evaluate(compiled, record, self._context(old))
        except ExpressionEvalError as e:
            errors.setdefault(where, []).append(f"cannot be computed: {e.message}")
            return None

    def _context(self, old: Mapping[str, Any] | None) -> Any:
        """The evaluation context (one per writer for new records; per update otherwise)."""
        if old is None and self._new_ctx is not None:
            return self._new_ctx
        ctx = exprs.make_context(user_id=self.uow.actor.user_id, now=self._now, old=old, ref=self._ref,
                                 users=self._user, rates=exchange_rates.resolver(self.uow.conn))
        if old is None:
            self._new_ctx = ctx
        return ctx

    def _ref(self, entity: str, record_id: int) -> Mapping[str, Any] | None:
        """One-hop reference loader for expressions (reads as the engine: config decides what is read)."""
        key = (entity, record_id)
        if key not in self._refs:
            plan = self.uow.state.plan(entity)
            row = self.uow.conn.execute(select(plan.table).where(plan.table.c.id == record_id)).first()
            self._refs[key] = rows.read(plan.readers, row._mapping) if row is not None else None
        return self._refs[key]

    def _user(self, user_id: Any) -> Mapping[str, Any] | None:
        """Directory entries for ``owner.team`` / ``manager_of(owner)`` (read once per writer and user)."""
        if user_id not in self._users:
            self._users[user_id] = users.directory_entry(self.uow.conn, user_id)
        return self._users[user_id]

    # ------------------------------------------------------------------ steps 5-6: rules, extension steps

    def check(self, record: dict[str, Any], old: Mapping[str, Any] | None, errors: Errors, *,
              prefix: str = "") -> None:
        """The validation rules (the lines' too); raises ValidationFailed with every problem found."""
        raise_errors(errors, self.plan.name)
        for rule in self.plan.rules:
            if self._eval(rule.compiled, record, old, errors, prefix + "_record") is False:
                errors.setdefault(prefix + "_record", []).append(rule.message)
        for name in self.plan.lines:
            for i, child in enumerate(record.get(name) or ()):
                self.child_writer(name).check(child, None, errors, prefix=f"{prefix}{name}[{i}].")
        raise_errors(errors, self.plan.name)


def raise_errors(errors: Errors, entity: str) -> None:
    """ValidationFailed with every collected problem of a record of ``entity`` (nothing when there is none)."""
    if errors:
        summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in list(errors.items())[:5])
        raise ValidationFailed(f"invalid {entity}: {summary}", details={k: list(v) for k, v in errors.items()})


def _money_base(plan: EntityPlan, key: str) -> str | None:
    for name, ckey in plan.currency_keys.items():
        if ckey == key:
            return name
    return None


def _did_you_mean(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _owner(value: Any) -> int:
    from engine.runtime.records.coerce import _record_id

    return _record_id(value)
