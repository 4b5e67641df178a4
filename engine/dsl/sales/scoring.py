"""The ``scoring:`` kind: explainable scores and grades of records (docs/scoring.md).

A scoring names its entity, an integer ``score_field``, a picklist ``grade_field``, ordered ``rules``
(each a ``when`` condition, ``points``, a ``reason`` in several languages, optionally a ``decay`` or a
time ``window``), ``caps`` on the total and ``grades`` (the lowest total of each grade).  Several
scorings may score one entity (fit and engagement) when each has its own fields.

Compiling checks every expression against the entity and records what each rule reads
(:attr:`Scoring.dependencies`), so a write rescores only when it touches one of those fields.  A decay
and a window are themselves compiled to expressions of the language -- the record in memory (Python)
and the set-based rescoring (SQL, :mod:`engine.runtime.sales.rescore`) then agree by construction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.dsl.expressions import CompiledExpression, EvalContext
from engine.dsl.kinds import KindSpec
from engine.dsl.model import Entity, Label, Workspace, frozen_map, text_in
from engine.dsl.sales import common
from engine.dsl.yamlsrc import locate
from engine.errors import DuplicateDefinition, ExpressionEvalError, SchemaViolation, SourceLocation

if TYPE_CHECKING:
    from engine.dsl.compile_context import CompileContext
    from engine.dsl.loader import MergedDoc

#: the datetime columns every entity has, usable as a decay's or window's ``since``
STANDARD_SINCE = ("created_at", "updated_at")
#: the field a decay or window counts from when it names none (when the entity has it)
DEFAULT_SINCE = "last_activity_at"


@dataclass(frozen=True, slots=True)
class ScoringRule:
    """One rule: ``points`` when ``when`` holds (and, with a window, while the window is open)."""

    index: int
    key: str | None
    when: CompiledExpression
    points: int
    reason: Label
    location: SourceLocation
    #: the points after decay, an integer expression (None: always ``points``)
    decayed: CompiledExpression | None = None
    decay: Mapping[str, Any] | None = None
    #: the time window as a condition (None: no window)
    window: CompiledExpression | None = None
    window_days: int | None = None

    @property
    def expressions(self) -> tuple[CompiledExpression, ...]:
        return tuple(e for e in (self.when, self.decayed, self.window) if e is not None)

    @property
    def reads(self) -> frozenset[str]:
        """The fields of the record the rule reads (a reference hop counts as its reference field)."""
        return frozenset(f for e in self.expressions for f in e.fields_used)

    def reason_in(self, locale: str) -> str:
        return text_in(self.reason, locale, self.when.source)

    def describe(self) -> str:
        return self.key or f"rule {self.index + 1}"


@dataclass(frozen=True, slots=True)
class Scoring:
    """A compiled ``scoring:`` document."""

    name: str
    entity: str
    score_field: str
    grade_field: str
    rules: tuple[ScoringRule, ...]
    #: (grade, lowest total), highest threshold first
    grades: tuple[tuple[str, int], ...]
    location: SourceLocation
    min_score: int | None = None
    max_score: int | None = None
    label: Label = field(default_factory=frozen_map)

    @property
    def dependencies(self) -> frozenset[str]:
        """Every field the rules read: a write touching none of them keeps the stored score."""
        return frozenset(f for r in self.rules for f in r.reads)

    @property
    def time_based(self) -> bool:
        """Whether a score can change with no write to the record: a rule reads the clock (decay, window,
        ``days_since``, ``$today``) or another record (``account.industry``) -- the daily refresh rescores
        those."""
        return any(e.variables_used or e.references_used for r in self.rules for e in r.expressions)

    def fingerprint(self) -> str:
        """A hash of everything that decides the scores (not the reasons' texts or the label): a plan
        rescores every row only when it changes."""
        rules = [[r.when.source, r.points, r.decayed.source if r.decayed else None,
                  r.window.source if r.window else None] for r in self.rules]
        parts = [self.entity, self.score_field, self.grade_field, rules, list(self.grades), self.min_score,
                 self.max_score]
        return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()

    def clamp(self, total: int) -> int:
        """``total`` within the caps."""
        if self.max_score is not None and total > self.max_score:
            total = self.max_score
        if self.min_score is not None and total < self.min_score:
            total = self.min_score
        return total

    def grade_for(self, total: int) -> str | None:
        """The grade ``total`` reaches (None below every threshold)."""
        return next((g for g, low in self.grades if total >= low), None)


# --------------------------------------------------------------------------- evaluation (a record in memory)


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What one rule gave a record: whether it fired, its points (after decay; 0 when it did not fire)."""

    rule: ScoringRule
    fired: bool
    points: int
    #: the condition held but the window was closed
    outside_window: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ScoreOutcome:
    """A record's score under one scoring, rule by rule."""

    scoring: Scoring
    rules: tuple[RuleOutcome, ...]
    raw_total: int
    total: int
    grade: str | None


def score(scoring: Scoring, record: Mapping[str, Any], ctx: EvalContext) -> ScoreOutcome:
    """Evaluate every rule of ``scoring`` on ``record`` (the SQL rescoring computes the same numbers).

    A rule whose expression cannot be evaluated counts as not fired (its error is kept for the
    explanation); a null condition is false.
    """
    outcomes = [_rule(rule, record, ctx) for rule in scoring.rules]
    raw = sum(o.points for o in outcomes)
    total = scoring.clamp(raw)
    return ScoreOutcome(scoring, tuple(outcomes), raw, total, scoring.grade_for(total))


def _rule(rule: ScoringRule, record: Mapping[str, Any], ctx: EvalContext) -> RuleOutcome:
    try:
        if rule.when.evaluate(record, ctx) is not True:
            return RuleOutcome(rule, False, 0)
        if rule.window is not None and rule.window.evaluate(record, ctx) is not True:
            return RuleOutcome(rule, False, 0, outside_window=True)
        points = rule.points if rule.decayed is None else int(rule.decayed.evaluate(record, ctx))
    except ExpressionEvalError as e:
        return RuleOutcome(rule, False, 0, error=e.message)
    return RuleOutcome(rule, True, points)


def scorings_of(workspace: Workspace, entity: str | None = None) -> list[Scoring]:
    """The workspace's compiled scorings (of ``entity`` only, when given), in name order."""
    out = [o.compiled for o in workspace.objects_of("scoring").values() if isinstance(o.compiled, Scoring)]
    return sorted((s for s in out if entity is None or s.entity == entity), key=lambda s: s.name)


# --------------------------------------------------------------------------- compiling


def compile_scorings(docs: Sequence[MergedDoc], ctx: CompileContext) -> dict[str, Scoring]:
    """Every ``scoring:`` document, checked against its entity; problems reported, located."""
    ws = common.partial_workspace(ctx)
    outputs = _outputs(docs)
    out: dict[str, Scoring] = {}
    taken: dict[tuple[str, str], MergedDoc] = {}
    for doc in docs:
        if not common.require_keys(ctx, doc, ("entity", "score_field", "grade_field", "rules", "grades")):
            continue
        entity = common.entity_of(ctx, doc)
        if entity is None:
            continue
        compiled = _Compiler(ctx, ws, doc, entity, outputs.get(entity.name, frozenset())).build()
        if compiled is None:
            continue
        if _fields_free(ctx, doc, compiled, taken):
            out[doc.name] = compiled
    return out


def _outputs(docs: Sequence[MergedDoc]) -> dict[str, frozenset[str]]:
    """entity -> the score and grade fields scorings write (rules may not read them)."""
    out: dict[str, set[str]] = {}
    for doc in docs:
        fields = {doc.data.get("score_field"), doc.data.get("grade_field")} - {None}
        out.setdefault(str(doc.data.get("entity")), set()).update(str(f) for f in fields)
    return {k: frozenset(v) for k, v in out.items()}


def _fields_free(ctx: CompileContext, doc: MergedDoc, s: Scoring, taken: dict[tuple[str, str], MergedDoc]) -> bool:
    ok = True
    for prop in ("score_field", "grade_field"):
        name = getattr(s, prop)
        other = taken.get((s.entity, name))
        if other is not None:
            ctx.report(DuplicateDefinition(
                f"scoring {doc.name!r} writes {s.entity}.{name}, which scoring {other.name!r} ({other.loc}) "
                "writes too", location=locate(doc.data, (prop,)),
                hint="give each scoring of an entity its own score and grade fields"))
            ok = False
        else:
            taken[(s.entity, name)] = doc
    return ok


class _Compiler:
    """One scoring document against its entity."""

    def __init__(self, ctx: CompileContext, ws: Workspace, doc: MergedDoc, entity: Entity,
                 outputs: frozenset[str]) -> None:
        self.ctx, self.ws, self.doc, self.entity, self.outputs = ctx, ws, doc, entity, outputs
        self.data = doc.data
        self.ok = True

    def fail(self, message: str, path: tuple[Any, ...], hint: str, *, key: bool = False) -> None:
        self.ok = False
        self.ctx.report(SchemaViolation(message, location=locate(self.data, path, key=key), hint=hint))

    def build(self) -> Scoring | None:
        score_field = self._field("score_field", ("integer",), "an integer field")
        grade_field = self._field("grade_field", ("picklist",), "a picklist field")
        grades = self._grades(grade_field)
        caps = self.data.get("caps") or {}
        if isinstance(caps.get("min"), int) and isinstance(caps.get("max"), int) and caps["min"] > caps["max"]:
            self.fail(f"scoring {self.doc.name!r}: caps min {caps['min']} is above max {caps['max']}",
                      ("caps",), "make min at most max")
        rules = tuple(r for i, raw in enumerate(self.data.get("rules") or ()) if (r := self._rule(i, raw)))
        if not self.ok or score_field is None or grade_field is None:
            return None
        return Scoring(self.doc.name, self.entity.name, score_field, grade_field, rules, grades, self.doc.loc,
                       caps.get("min"), caps.get("max"), common.label(self.data.get("label"), self.doc.name))

    def _field(self, prop: str, types: tuple[str, ...], what: str) -> str | None:
        name = str(self.data.get(prop))
        f = self.entity.fields.get(name)
        where = f"scoring {self.doc.name!r}: {prop} {name!r}"
        if f is None:
            self.ok = False
            common.unknown(self.ctx, f"{where} is not a field of {self.entity.name}", locate(self.data, (prop,)),
                           name, self.entity.fields)
            return None
        if f.type not in types or f.storage != "column":
            self.fail(f"{where} is a {f.type} field{' stored in JSON' if f.storage == 'json' else ''}; it must be "
                      f"{what} stored in a column", (prop,),
                      f"declare {self.entity.name}.{name} as {{type: {types[0]}, readonly: true}}")
            return None
        return name

    def _grades(self, grade_field: str | None) -> tuple[tuple[str, int], ...]:
        raw = self.data.get("grades") or {}
        items = [(str(g), v) for g, v in raw.items()]
        if any(not isinstance(v, int) or isinstance(v, bool) for _, v in items):
            self.fail(f"scoring {self.doc.name!r}: every grade needs a whole-number lowest total", ("grades",),
                      "write grades as {A: 60, B: 30, C: 10, D: 0}")
            return ()
        seen: dict[int, str] = {}
        for g, v in items:
            if v in seen:
                self.fail(f"scoring {self.doc.name!r}: grades {seen[v]!r} and {g!r} both start at {v}",
                          ("grades", g), "give each grade its own lowest total")
            seen[v] = g
        field = self.entity.fields.get(grade_field) if grade_field else None
        if field is not None:
            missing = [g for g, _ in items if g not in field.option_keys]
            if missing:
                self.fail(f"scoring {self.doc.name!r}: grade field {self.entity.name}.{field.name} has no option "
                          f"{', '.join(map(repr, missing))} (its options: {', '.join(field.option_keys)})",
                          ("grades",), f"add {', '.join(missing)} to the options of {self.entity.name}.{field.name}, "
                          "or use grades it has")
        return tuple(sorted(((g, int(v)) for g, v in items), key=lambda gv: -gv[1]))

    def _rule(self, i: int, raw: Any) -> ScoringRule | None:
        if not isinstance(raw, Mapping) or "when" not in raw or not isinstance(raw.get("points"), int) \
                or isinstance(raw.get("points"), bool):
            self.fail(f"scoring {self.doc.name!r}: rule {i + 1} needs 'when:' (an expression) and 'points:' "
                      "(a whole number)", ("rules", i), "write {when: \"industry == 'manufacturing'\", points: 20}")
            return None
        when = common.expression(self.ctx, self.ws, self.entity, raw["when"], locate(self.data, ("rules", i, "when")),
                                 sql="a scoring rule (rescoring)")
        if when is None:
            self.ok = False
            return None
        self._no_outputs(when, ("rules", i, "when"))
        points = int(raw["points"])
        rule = ScoringRule(i, raw.get("key"), when, points, common.label(raw.get("reason"), when.source),
                           locate(self.data, ("rules", i)) or self.doc.loc)
        decay, window = raw.get("decay"), raw.get("window")
        if isinstance(decay, Mapping):
            rule = self._with_decay(rule, decay, i)
        if isinstance(window, Mapping):
            rule = self._with_window(rule, window, i)
        return rule

    def _no_outputs(self, compiled: CompiledExpression, path: tuple[Any, ...]) -> None:
        read = sorted(compiled.fields_used & self.outputs)
        if read:
            self.fail(f"scoring {self.doc.name!r}: a rule reads {', '.join(read)}, which scoring writes",
                      path, "score from the record's own fields; a score cannot depend on a score")

    def _since(self, spec: Mapping[str, Any], path: tuple[Any, ...]) -> str | None:
        name = spec.get("since")
        if name is None:
            f = self.entity.fields.get(DEFAULT_SINCE)
            return DEFAULT_SINCE if f is not None and f.type in ("date", "datetime") else "created_at"
        name = str(name)
        f = self.entity.fields.get(name)
        if name in STANDARD_SINCE or (f is not None and f.type in ("date", "datetime")):
            return name
        if f is None:
            self.ok = False
            common.unknown(self.ctx, f"scoring {self.doc.name!r}: since {name!r} is not a field of {self.entity.name}",
                           locate(self.data, (*path, "since")), name, [*self.entity.fields, *STANDARD_SINCE])
        else:
            self.fail(f"scoring {self.doc.name!r}: since {name!r} is a {f.type} field, not a date or datetime",
                      (*path, "since"), "count days from a date or datetime field (or created_at)")
        return None

    def _days(self, value: Any, path: tuple[Any, ...]) -> int | None:
        try:
            return common.days(value)
        except ValueError:
            self.fail(f"scoring {self.doc.name!r}: {value!r} is not a number of days", path, "write e.g. 30d")
            return None

    def _derived(self, text: str, path: tuple[Any, ...], expected: str) -> CompiledExpression | None:
        compiled = common.expression(self.ctx, self.ws, self.entity, text, locate(self.data, path), expected=expected,
                                     sql="a scoring rule (rescoring)")
        if compiled is None:
            self.ok = False
        return compiled

    def _with_decay(self, rule: ScoringRule, decay: Mapping[str, Any], i: int) -> ScoringRule:
        path = ("rules", i, "decay")
        since = self._since(decay, path)
        after, per_day = self._days(decay.get("after"), (*path, "after")), decay.get("points_per_day")
        if since is None or after is None or not isinstance(per_day, int) or per_day < 1:
            return rule
        lost = f"{per_day} * max(coalesce(days_since({since}), 0) - {after}, 0)"
        p = rule.points
        text = f"max({p} - {lost}, 0)" if p >= 0 else f"min({p} + {lost}, 0)"
        decayed = self._derived(text, path, "integer")
        spec = MappingProxyType({"after_days": after, "points_per_day": per_day, "since": since})
        return replace(rule, decayed=decayed, decay=spec) if decayed is not None else rule

    def _with_window(self, rule: ScoringRule, window: Mapping[str, Any], i: int) -> ScoringRule:
        path = ("rules", i, "window")
        since = self._since(window, path)
        within = self._days(window.get("within"), (*path, "within"))
        if since is None or within is None:
            return rule
        cond = self._derived(f"{since} is not null and days_since({since}) <= {within}", path, "boolean")
        return replace(rule, window=cond, window_days=within) if cond is not None else rule


KIND: KindSpec | None = KindSpec(
    "scoring", "scoring.json", "explainable scores and grades of an entity's records",
    list_merge=MappingProxyType({"rules": ("edit", "key")}), compile=compile_scorings, order=40)
