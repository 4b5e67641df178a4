"""The ``pool:`` kind: lead pools (公海 / 线索池) -- records without a holder that members claim.

A pool document names its entity, who may claim (``members``) and who hands out (``admins``), the
limits (``holding_limit``, ``daily_claim_limit``, ``reclaim_cooldown``), the fields masked while a
record sits unclaimed (``hidden_fields``), the recycle rules that take neglected records back
(``recycle`` / ``auto_return``, each an expression with a reason; ``warn_before`` notifies the
holder first; ``never_recycle`` protects won and converted records), the reasons a holder may give
when returning a record and where returned records go (``return_to``, else the first pool whose
``when`` holds).  It compiles to a :class:`Pool`; every expression is type-checked here against the
entity *with* the fields pools add (``pool``, ``claimed_at``, ``pooled_at``), so a recycle rule may
read ``claimed_at``.  Roles and fields are checked at compile time; teams and users live in the
database and are checked when the pool is used (the runtime names an unknown team clearly).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from engine.dsl.compile_entity import label_of
from engine.dsl.expressions import CompiledExpression, compile_expression
from engine.dsl.expressions.encrypted import check_sql_use
from engine.dsl.kinds import KindSpec
from engine.dsl.model import Entity, Field, Label, Workspace, frozen_map
from engine.dsl.yamlsrc import locate
from engine.errors import ConfigError, ExpressionError, SchemaViolation, SourceLocation, UnknownReference

if TYPE_CHECKING:
    from engine.dsl.compile_context import CompileContext
    from engine.dsl.loader import MergedDoc

Report = Callable[[ConfigError], None]
#: the fields a pool adds to its entity (the contract shared with assignment and conversion)
POOL_FIELDS = ("pool", "claimed_at", "pooled_at")
#: outcomes a record is never recycled from unless ``never_recycle`` says otherwise
PROTECTED_OPTIONS = ("won", "converted")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a pool's ``members`` or ``admins`` are: any listed team, role or user matches."""

    teams: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    location: SourceLocation | None = None

    @property
    def empty(self) -> bool:
        return not (self.teams or self.roles or self.users)

    def describe(self) -> str:
        """``team east_sales, role sales`` (for messages)."""
        parts = [f"team {t}" for t in self.teams] + [f"role {r}" for r in self.roles] + \
            [f"user {u}" for u in self.users]
        return ", ".join(parts) or "nobody"


@dataclass(frozen=True, slots=True)
class RecycleRule:
    """One recycle rule: a held record for which ``when`` holds goes back, with ``reason``."""

    index: int
    when: CompiledExpression
    reason: Label
    location: SourceLocation

    @property
    def text(self) -> str:
        return self.when.source


@dataclass(frozen=True, slots=True)
class ReturnReason:
    """One reason a holder may give when returning a record."""

    key: str
    label: Label = field(default_factory=frozen_map)


@dataclass(frozen=True, slots=True)
class Pool:
    """A compiled ``pool:`` document (see the module docstring)."""

    name: str
    entity: str
    location: SourceLocation
    label: Label = field(default_factory=frozen_map)
    kind: Literal["claim", "assign"] = "claim"
    when: CompiledExpression | None = None
    members: Audience = field(default_factory=Audience)
    admins: Audience = field(default_factory=Audience)
    holding_limit: int | None = None
    limit_excludes: CompiledExpression | None = None
    daily_claim_limit: int | None = None
    reclaim_cooldown: dt.timedelta | None = None
    hidden_fields: tuple[str, ...] = ()
    recycle: tuple[RecycleRule, ...] = ()
    warn_before: dt.timedelta | None = None
    never_recycle: CompiledExpression | None = None
    return_reasons: tuple[ReturnReason, ...] = ()
    return_to: str | None = None

    def reason(self, key: str) -> ReturnReason | None:
        return next((r for r in self.return_reasons if r.key == key), None)


def parse_duration(text: str) -> dt.timedelta:
    """``30m``, ``12h``, ``3d`` -> a timedelta (the schema checked the form)."""
    return dt.timedelta(**{_UNITS[text[-1]]: int(text[:-1])})


def duration_text(delta: dt.timedelta | None) -> str | None:
    """The shortest ``3d`` / ``12h`` / ``30m`` form of ``delta`` (None for None)."""
    if delta is None:
        return None
    minutes = int(delta.total_seconds() // 60)
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def pool_fields(location: SourceLocation) -> tuple[Field, ...]:
    """``pool``, ``claimed_at`` and ``pooled_at`` as a pool adds them to its entity."""
    return (
        Field("pool", "string", location, label=frozen_map({"en": "Pool", "zh": "线索池"}), index=True,
              readonly=True, max_length=100,
              help=frozen_map({"en": "The pool the record belongs to (empty: none)", "zh": "记录所在的线索池"})),
        Field("claimed_at", "datetime", location, label=frozen_map({"en": "Claimed at", "zh": "领取时间"}),
              index=True, readonly=True,
              help=frozen_map({"en": "When the current holder got it from the pool (empty while unclaimed)",
                               "zh": "当前负责人从线索池领取的时间"})),
        Field("pooled_at", "datetime", location, label=frozen_map({"en": "Pooled at", "zh": "入池时间"}),
              readonly=True, help=frozen_map({"en": "When it last entered a pool", "zh": "最近一次进入线索池的时间"})),
    )


def with_pool_fields(entity: Entity, location: SourceLocation) -> Entity:
    """``entity`` as its pool expressions see it: with the pool fields it does not declare itself."""
    extra = {f.name: f for f in pool_fields(location) if f.name not in entity.fields}
    return dataclasses.replace(entity, fields=frozen_map({**entity.fields, **extra})) if extra else entity


class _PoolCompiler:
    """Compiles one merged ``pool:`` document (problems reported, located)."""

    def __init__(self, doc: MergedDoc, ctx: CompileContext) -> None:
        self.doc = doc
        self.data = doc.data
        self.ctx = ctx
        self.report = ctx.report
        self.ok = True

    def compile(self) -> Pool | None:
        d = self.data
        if not isinstance(d.get("entity"), str):
            self._fail(SchemaViolation(f"pool {self.doc.name!r} names no entity", location=self.doc.loc,
                                       code="schema_required", hint="add entity: lead (the entity whose records "
                                                                    "the pool holds)"))
            return None
        entity = self.ctx.entities.get(d["entity"])
        if entity is None:
            self._unknown(f"pool {self.doc.name!r} is for unknown entity {d['entity']!r}", ("entity",),
                          d["entity"], self.ctx.entities)
            return None
        seen = with_pool_fields(entity, self.doc.loc)
        ws = Workspace(name="", entities=frozen_map({**self.ctx.entities, entity.name: seen}),
                       functions=self.ctx.extensions.functions)
        expr = _Exprs(seen, ws, self.data, self._fail)
        pool = Pool(
            name=self.doc.name, entity=entity.name, location=self.doc.loc,
            label=label_of(d.get("label"), self.doc.name), kind=d.get("kind", "claim"),
            when=expr.compile(("when",)), members=self._audience("members"), admins=self._audience("admins"),
            holding_limit=d.get("holding_limit"), limit_excludes=expr.compile(("limit_excludes",)),
            daily_claim_limit=d.get("daily_claim_limit"),
            reclaim_cooldown=_duration(d.get("reclaim_cooldown")), hidden_fields=self._hidden(entity),
            recycle=self._rules(expr), warn_before=_duration(d.get("warn_before")),
            never_recycle=self._never(expr, entity), return_reasons=self._reasons(),
            return_to=d.get("return_to"),
        )
        return pool if self.ok else None

    def _fail(self, error: ConfigError) -> None:
        self.ok = False
        self.report(error)

    def _unknown(self, message: str, path: tuple[Any, ...], name: str, choices: Any) -> None:
        close = difflib.get_close_matches(str(name), list(choices), n=1)
        self._fail(UnknownReference(message, location=locate(self.data, path),
                                    hint=f"did you mean {close[0]!r}?" if close else None))

    def _audience(self, key: str) -> Audience:
        raw = self.data.get(key) or {}
        names: dict[str, tuple[str, ...]] = {}
        for plural in ("teams", "roles", "users"):
            values: list[str] = []
            for k in (plural, plural[:-1]):
                v = raw.get(k)
                values.extend([v] if isinstance(v, str) else list(v or ()))
            names[plural] = tuple(dict.fromkeys(values))
        for role in names["roles"]:
            if role not in self.ctx.roles:
                self._unknown(f"pool {self.doc.name!r}: {key} name unknown role {role!r} "
                              f"(roles: {', '.join(self.ctx.roles) or 'none'})", _where(raw, key, role), role,
                              self.ctx.roles)
        return Audience(names["teams"], names["roles"], names["users"], locate(self.data, (key,)))

    def _hidden(self, entity: Entity) -> tuple[str, ...]:
        out = []
        for i, name in enumerate(self.data.get("hidden_fields") or ()):
            f = entity.fields.get(name)
            if f is None:
                self._unknown(f"pool {self.doc.name!r} hides unknown field {entity.name}.{name}",
                              ("hidden_fields", i), name, entity.fields)
            elif f.type in ("lines",) or name in POOL_FIELDS:
                self._fail(SchemaViolation(f"pool {self.doc.name!r} cannot hide {name!r} ({f.type} field)",
                                           location=locate(self.data, ("hidden_fields", i)),
                                           hint="hide the fields that identify the customer: phone, email..."))
            else:
                out.append(name)
        return tuple(out)

    def _rules(self, expr: _Exprs) -> tuple[RecycleRule, ...]:
        raw: list[tuple[tuple[Any, ...], Any]] = []
        auto = self.data.get("auto_return")
        if auto is not None:
            raw.append((("auto_return",), auto))
        raw.extend((("recycle", i), r) for i, r in enumerate(self.data.get("recycle") or ()))
        out: list[RecycleRule] = []
        for path, rule in raw:
            when_path = path if isinstance(rule, str) else (*path, "when")
            text = rule if isinstance(rule, str) else rule["when"]
            compiled = expr.compile(when_path)
            if compiled is None:
                continue
            reason = None if isinstance(rule, str) else rule.get("reason")
            default = {"en": f"Recycled: {text}", "zh": f"自动回收：{text}"}
            out.append(RecycleRule(len(out), compiled, label_of(reason, "") if reason else frozen_map(default),
                                   locate(self.data, path) or self.doc.loc))
        return tuple(out)

    def _never(self, expr: _Exprs, entity: Entity) -> CompiledExpression | None:
        if "never_recycle" in self.data:
            return expr.compile(("never_recycle",)) if self.data["never_recycle"] is not None else None
        text = default_never_recycle(entity)
        return expr.compile_text(text, self.doc.loc) if text else None

    def _reasons(self) -> tuple[ReturnReason, ...]:
        out: dict[str, ReturnReason] = {}
        for i, raw in enumerate(self.data.get("return_reasons") or ()):
            key = raw if isinstance(raw, str) else raw["key"]
            if key in out:
                self._fail(SchemaViolation(f"pool {self.doc.name!r} lists return reason {key!r} twice",
                                           location=locate(self.data, ("return_reasons", i)),
                                           hint="list each reason once"))
                continue
            out[key] = ReturnReason(key, label_of(None if isinstance(raw, str) else raw.get("label"), key))
        return tuple(out.values())


class _Exprs:
    """Compiles a pool's conditions (boolean, no ``old.``) against the entity as pools see it."""

    def __init__(self, entity: Entity, ws: Workspace, data: Any, report: Report) -> None:
        self.entity, self.ws, self.data, self.report = entity, ws, data, report

    def compile(self, path: tuple[Any, ...]) -> CompiledExpression | None:
        node: Any = self.data
        for step in path:
            if isinstance(node, Mapping):
                node = node.get(step)
            elif isinstance(node, list) and isinstance(step, int) and step < len(node):
                node = node[step]
            else:
                node = None
        if not isinstance(node, str):
            return None
        return self.compile_text(node, locate(self.data, path))

    def compile_text(self, text: str, location: SourceLocation | None) -> CompiledExpression | None:
        try:
            compiled = compile_expression(text, self.entity, self.ws, expected="boolean", location=location)
        except ExpressionError as e:
            self.report(e)
            return None
        misuse = check_sql_use(compiled, self.ws.entities, "a pool condition")
        if misuse is not None:
            self.report(misuse)
            return None
        return compiled


def default_never_recycle(entity: Entity) -> str | None:
    """``status in ['converted']`` -- the won / converted options of a ``status`` or ``stage`` picklist."""
    parts = []
    for name in ("status", "stage"):
        f = entity.fields.get(name)
        if f is not None and f.type == "picklist":
            keys = [k for k in f.option_keys if k in PROTECTED_OPTIONS]
            if keys:
                parts.append(f"{name} in [{', '.join(repr(k) for k in keys)}]")
    return " or ".join(parts) or None


def _where(raw: Any, key: str, role: str) -> tuple[Any, ...]:
    """The path of ``role`` inside ``members`` / ``admins`` (``roles: [...]`` or ``role: x``)."""
    for k in ("roles", "role"):
        v = raw.get(k)
        if v == role:
            return (key, k)
        if isinstance(v, list) and role in v:
            return (key, k, v.index(role))
    return (key,)


def _duration(text: str | None) -> dt.timedelta | None:
    return parse_duration(text) if text else None


def compile_pools(docs: Sequence[MergedDoc], ctx: CompileContext) -> dict[str, Pool]:
    """Every ``pool:`` document; then each ``return_to`` must name a pool of the same entity."""
    out: dict[str, Pool] = {}
    for doc in docs:
        pool = _PoolCompiler(doc, ctx).compile()
        if pool is not None:
            out[doc.name] = pool
    by_name = {d.name: d for d in docs}
    for pool in out.values():
        target = pool.return_to
        if target is None:
            continue
        other = out.get(target)
        data = by_name[pool.name].data
        if other is None and target not in by_name:
            close = difflib.get_close_matches(target, list(by_name), n=1)
            ctx.report(UnknownReference(f"pool {pool.name!r} returns records to unknown pool {target!r}",
                                        location=locate(data, ("return_to",)),
                                        hint=f"did you mean {close[0]!r}?" if close else "name a pool: document"))
        elif other is not None and other.entity != pool.entity:
            ctx.report(SchemaViolation(
                f"pool {pool.name!r} ({pool.entity}) returns records to {target!r}, a pool of {other.entity}",
                location=locate(data, ("return_to",)), hint=f"name a pool of {pool.entity}"))
    return out


def pool_entity_fields(objects: Mapping[str, Any], ctx: CompileContext) -> dict[str, list[Field]]:
    """``pool``, ``claimed_at`` and ``pooled_at`` on every entity that has a pool (once per entity)."""
    out: dict[str, list[Field]] = {}
    for obj in objects.values():
        pool = obj.compiled
        if isinstance(pool, Pool) and pool.entity not in out:
            out[pool.entity] = list(pool_fields(pool.location))
    return out


def pools_of(workspace: Workspace, entity: str | None = None) -> list[Pool]:
    """The workspace's compiled pools (of ``entity`` only, when given), in compile order."""
    found = [o.compiled for o in workspace.objects_of("pool").values() if isinstance(o.compiled, Pool)]
    return [p for p in found if entity is None or p.entity == entity]


KIND: KindSpec | None = KindSpec(
    "pool", "pool.json", "a lead pool (公海): claims, limits, masked fields, recycle rules",
    list_merge=MappingProxyType({"return_reasons": ("keyed", "key"), "recycle": "replace"}),
    compile=compile_pools, order=60, entity_fields=pool_entity_fields,
)
