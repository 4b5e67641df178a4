"""The ``dedupe:`` kind: which normalised keys make two records duplicates, and what a write does about it.

.. code-block:: yaml

    dedupe: lead_duplicates
    entity: lead
    match:                        # any one key matching makes a duplicate
      - [email]
      - [phone]
      - {fields: [company], fuzzy: 90}
    against:                      # a new lead is checked against accounts and contacts too
      - {entity: account, fields: {company: name}}
      - {entity: contact, fields: {phone: [phone, mobile]}}
    action: warn                  # block | warn | merge

Compiled into a :class:`DedupeRule`.  Every key has a *kind* (the name its normalised values are stored
under in ``crm_dedupe_keys``): ``email``, ``phone`` and ``company`` for a one-field key with that
normaliser -- comparable across entities, so a lead's phone meets a contact's mobile -- and
``<entity>:<normaliser>:<field>+...`` otherwise.  :attr:`DedupeRule.sources` says, for the rule's entity
and each entity it is checked against, which fields give each key.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.dsl.compile_entity import label_of
from engine.dsl.kinds import KindSpec
from engine.dsl.model import Entity, Field, Label
from engine.dsl.yamlsrc import locate
from engine.errors import SchemaViolation, SourceLocation, UnknownReference

if TYPE_CHECKING:
    from engine.dsl.compile_context import CompileContext
    from engine.dsl.loader import MergedDoc

#: the normalisers a key may name; see engine.runtime.sales.normalise
NORMALISERS = ("email", "phone", "company", "text", "exact")
#: normalisers whose keys compare across fields and entities (their kind is the normaliser's name)
SHARED_KINDS = frozenset({"email", "phone", "company"})
#: text fields with one of these names are company names unless the key says otherwise
COMPANY_FIELDS = frozenset({"company", "company_name", "account_name", "organisation", "organization"})
#: the longest kind name (``crm_dedupe_keys.kind`` holds 50 characters; fuzzy keys add a marker)
MAX_KIND = 48
_KEYLESS_TYPES = frozenset({"lines", "json", "multi_picklist"})


@dataclass(frozen=True, slots=True)
class MatchKey:
    """One key of a rule: its fields on the rule's entity (all must match) and how each is compared."""

    index: int
    fields: tuple[str, ...]
    normalisers: tuple[str, ...]
    #: similarity (50-100) from which two keys match; None: equal keys only
    fuzzy: int | None
    kind: str
    location: SourceLocation


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where records of ``entity`` get keys of ``kind``: these fields (one per key field), so normalised."""

    entity: str
    kind: str
    fields: tuple[str, ...]
    normalisers: tuple[str, ...]
    #: the key is compared fuzzily somewhere: blocking keys are stored beside it
    fuzzy: bool


@dataclass(frozen=True, slots=True)
class DedupeRule:
    """A compiled ``dedupe:`` document."""

    name: str
    entity: str
    keys: tuple[MatchKey, ...]
    #: the other entities records are checked against, in document order
    against: tuple[str, ...]
    action: str
    message: Label
    location: SourceLocation
    #: every key source the rule needs: its entity's keys and the mapped keys of the ``against`` entities
    sources: tuple[KeySource, ...]

    def searched(self, key: MatchKey) -> tuple[str, ...]:
        """The entities whose records ``key`` is looked up in (the rule's own first)."""
        return tuple(dict.fromkeys(s.entity for s in self.sources if s.kind == key.kind))


def kind_name(entity: str, fields: Sequence[str], normalisers: Sequence[str]) -> str:
    """The stored kind of a key of ``entity`` made of ``fields`` with ``normalisers`` (see the module doc)."""
    if len(fields) == 1 and normalisers[0] in SHARED_KINDS:
        return normalisers[0]
    name = entity + ":" + "+".join(f"{n}:{f}" for f, n in zip(fields, normalisers, strict=True))
    if len(name) <= MAX_KIND:
        return name
    return name[: MAX_KIND - 9] + "#" + hashlib.sha1(name.encode()).hexdigest()[:8]


def default_normaliser(field: Field) -> str:
    """How a field's values compare when the key does not say: by type, company names by field name."""
    if field.type in ("email", "phone"):
        return field.type
    if field.type in ("string", "text", "url", "auto_number"):
        return "company" if field.name in COMPANY_FIELDS else "text"
    return "exact"


class _RuleCompiler:
    """Compiles one merged ``dedupe:`` document; reports every problem, located."""

    def __init__(self, doc: MergedDoc, ctx: CompileContext) -> None:
        self.doc, self.ctx, self.data = doc, ctx, doc.data
        self.ok = True

    def _loc(self, *path: Any, key: bool = False) -> SourceLocation:
        return locate(self.data, path, key=key) or self.doc.loc

    def _unknown(self, message: str, loc: SourceLocation, name: str, choices: Mapping[str, Any]) -> None:
        self.ok = False
        close = difflib.get_close_matches(name, list(choices), n=1)
        self.ctx.report(UnknownReference(message, location=loc, hint=f"did you mean {close[0]!r}?" if close else None))

    def _problem(self, message: str, loc: SourceLocation, hint: str) -> None:
        self.ok = False
        self.ctx.report(SchemaViolation(message, location=loc, hint=hint))

    def compile(self) -> DedupeRule | None:
        name, data = self.doc.name, self.data
        entity = self.ctx.entities.get(data["entity"])
        if entity is None:
            self._unknown(f"dedupe {name!r}: unknown entity {data['entity']!r}", self._loc("entity"),
                          data["entity"], self.ctx.entities)
            return None
        keys = [k for i, raw in enumerate(data["match"]) if (k := self._key(entity, i, raw)) is not None]
        sources = [KeySource(entity.name, k.kind, k.fields, k.normalisers, k.fuzzy is not None) for k in keys]
        against: list[str] = []
        for i, raw in enumerate(data.get("against") or ()):
            got = self._scope(entity, keys, i, raw)
            if got is not None and got[0] not in against:
                against.append(got[0])
                sources.extend(got[1])
        if not self.ok:
            return None
        return DedupeRule(name, entity.name, tuple(keys), tuple(against), data.get("action", "warn"),
                          label_of(data.get("message"), ""), self.doc.loc, tuple(dict.fromkeys(sources)))

    def _key(self, entity: Entity, i: int, raw: Any) -> MatchKey | None:
        spec: Mapping[str, Any] = {"fields": raw} if isinstance(raw, list) else raw
        path: tuple[Any, ...] = ("match", i) if isinstance(raw, list) else ("match", i, "fields")
        fields: list[Field] = []
        for j, fname in enumerate(spec["fields"]):
            f = entity.fields.get(fname)
            if f is None:
                self._unknown(f"dedupe {self.doc.name!r}: entity {entity.name!r} has no field {fname!r}",
                              self._loc(*path, j), fname, entity.fields)
            elif f.type in _KEYLESS_TYPES:
                self._problem(f"dedupe {self.doc.name!r}: field {entity.name}.{fname} is {f.type}, which cannot be "
                              "part of a match key", self._loc(*path, j), "use text, email, phone, picklist, "
                              "number, date or reference fields")
            else:
                fields.append(f)
        if len(fields) != len(spec["fields"]):
            return None
        norms = self._normalisers(fields, spec.get("normalise"), ("match", i, "normalise"))
        if norms is None:
            return None
        names = tuple(f.name for f in fields)
        return MatchKey(i, names, norms, spec.get("fuzzy"), kind_name(entity.name, names, norms), self._loc("match", i))

    def _normalisers(self, fields: list[Field], given: Any, path: tuple[Any, ...]) -> tuple[str, ...] | None:
        if isinstance(given, str):
            return tuple(given for _ in fields)
        given = given or {}
        names = {f.name for f in fields}
        for fname in given:
            if fname not in names:
                self._unknown(f"dedupe {self.doc.name!r}: normalise names {fname!r}, which is not a field of this key",
                              self._loc(*path, fname, key=True), fname, {n: None for n in names})
                return None
        return tuple(given.get(f.name) or default_normaliser(f) for f in fields)

    def _scope(self, entity: Entity, keys: list[MatchKey], i: int, raw: Any
               ) -> tuple[str, list[KeySource]] | None:
        spec: Mapping[str, Any] = {"entity": raw} if isinstance(raw, str) else raw
        where = ("against", i) if isinstance(raw, str) else ("against", i, "entity")
        target = self.ctx.entities.get(spec["entity"])
        if target is None:
            self._unknown(f"dedupe {self.doc.name!r}: unknown entity {spec['entity']!r} in against",
                          self._loc(*where), spec["entity"], self.ctx.entities)
            return None
        mapping = self._mapping(entity, target, spec.get("fields") or {}, ("against", i, "fields"))
        if mapping is None:
            return None
        sources = []
        for key in keys:
            alternatives = [mapping.get(f) or ((f,) if f in target.fields else ()) for f in key.fields]
            for combo in _product(alternatives):
                sources.append(KeySource(target.name, key.kind, combo, key.normalisers, key.fuzzy is not None))
        if not sources:
            self.ok = False
            self.ctx.report(UnknownReference(
                f"dedupe {self.doc.name!r}: no match key applies to {target.name!r}: it has none of the fields "
                f"{', '.join(sorted({f for k in keys for f in k.fields}))}", location=self._loc(*where),
                hint=f"map the fields: {{entity: {target.name}, fields: {{{keys[0].fields[0] if keys else 'field'}: "
                     f"<{target.name} field>}}}}"))
            return None
        return target.name, sources

    def _mapping(self, entity: Entity, target: Entity, raw: Mapping[str, Any], path: tuple[Any, ...]
                 ) -> dict[str, tuple[str, ...]] | None:
        out: dict[str, tuple[str, ...]] = {}
        ok = True
        for mine, theirs in raw.items():
            if mine not in entity.fields:
                self._unknown(f"dedupe {self.doc.name!r}: entity {entity.name!r} has no field {mine!r}",
                              self._loc(*path, mine, key=True), mine, entity.fields)
                ok = False
                continue
            names = (theirs,) if isinstance(theirs, str) else tuple(theirs)
            for j, name in enumerate(names):
                if name not in target.fields:
                    loc = self._loc(*path, mine) if isinstance(theirs, str) else self._loc(*path, mine, j)
                    self._unknown(f"dedupe {self.doc.name!r}: entity {target.name!r} has no field {name!r}", loc,
                                  name, target.fields)
                    ok = False
            out[mine] = names
        return out if ok else None


def _product(alternatives: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for options in alternatives:
        combos = [(*c, o) for c in combos for o in options]
    return combos


def compile_dedupe(docs: Sequence[MergedDoc], ctx: CompileContext) -> dict[str, DedupeRule]:
    """Every ``dedupe:`` document, checked against the entities."""
    out: dict[str, DedupeRule] = {}
    for doc in docs:
        rule = _RuleCompiler(doc, ctx).compile()
        if rule is not None:
            out[doc.name] = rule
    return out


KIND: KindSpec | None = KindSpec(
    "dedupe", "dedupe.json", "duplicate rules: normalised match keys, scope across entities, block / warn / merge",
    list_merge=MappingProxyType({"match": "append", "against": "append"}), compile=compile_dedupe, order=40,
)
