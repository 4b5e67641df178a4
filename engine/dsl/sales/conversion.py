"""The ``conversion:`` kind: one record (a qualified lead) becomes new records in one step.

.. code-block:: yaml

    conversion: lead_to_customer
    from: lead
    create:                       # each value is an expression over the lead
      account:     {name: company, industry: industry}
      contact:     {name: contact_name, phone: phone, email: email}
      opportunity: {name: "concat(company, ' - new')", amount: budget}

Compiled into a :class:`Conversion`: every value expression type-checked against the source entity
and the target field's type; the links between the created records (contact.account -> the account,
opportunity.primary_contact -> the contact, opportunity.lead -> the lead) inferred from the reference
fields or given in ``links:``; the creation order following those links; how the source is marked
(``status: converted``, ``converted_at``, ``converted_<entity>``) and which other records linked to the
source (activities, tasks) get the new links too.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.dsl.expressions import compile_expression
from engine.dsl.kinds import KindSpec
from engine.dsl.model import Entity, Field, Workspace, frozen_map
from engine.dsl.yamlsrc import locate
from engine.errors import ConfigError, ExpressionError, SchemaViolation, SourceLocation, UnknownReference

if TYPE_CHECKING:
    from engine.dsl.compile_context import CompileContext
    from engine.dsl.loader import MergedDoc

#: a value of a mapping: a compiled expression over the source record, or a literal (number, boolean, null)
Value = Any
_UNWRITABLE = frozenset({"lines", "auto_number"})


@dataclass(frozen=True, slots=True)
class Target:
    """One record a conversion creates: its values, its links and whether the caller may leave it out."""

    entity: str
    #: (field, compiled expression or literal), in document order
    values: tuple[tuple[str, Value], ...]
    #: (reference field, created entity or the source entity)
    links: tuple[tuple[str, str], ...]
    optional: bool


@dataclass(frozen=True, slots=True)
class Relink:
    """Records of ``entity`` linked to the source through ``via`` get these links to the created records."""

    entity: str
    via: str
    #: (reference field, created entity)
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Conversion:
    """A compiled ``conversion:`` document."""

    name: str
    source: str
    #: in creation order (a record before those that refer to it)
    targets: tuple[Target, ...]
    #: the created entity an existing record may stand in for (found by the duplicate rules), or None
    reuse: str | None
    #: (field of the source, compiled expression or literal) set once converted
    mark: tuple[tuple[str, Value], ...]
    #: (reference field of the source, created entity) set once converted
    mark_links: tuple[tuple[str, str], ...]
    relinks: tuple[Relink, ...]
    location: SourceLocation

    def target(self, entity: str) -> Target | None:
        return next((t for t in self.targets if t.entity == entity), None)


def _references(entity: Entity, target: str) -> list[Field]:
    return [f for f in entity.fields.values() if f.type == "reference" and f.reference == target]


def pick_reference(entity: Entity, target: str) -> str | None:
    """The one reference field of ``entity`` to ``target``: the only one, else the one named after it, else
    the one starting with ``primary_``; None when there is none or no way to choose."""
    refs = _references(entity, target)
    if len(refs) == 1:
        return refs[0].name
    named = [f.name for f in refs if f.name == target] or [f.name for f in refs if f.name.startswith("primary_")]
    return named[0] if len(named) == 1 else None


class _ConversionCompiler:
    """Compiles one merged ``conversion:`` document; reports every problem, located."""

    def __init__(self, doc: MergedDoc, ctx: CompileContext) -> None:
        self.doc, self.ctx, self.data = doc, ctx, doc.data
        self.ok = True
        self.ws = Workspace(name="conversion", entities=frozen_map(ctx.entities), functions=ctx.extensions.functions)

    def _loc(self, *path: Any, key: bool = False) -> SourceLocation:
        return locate(self.data, path, key=key) or self.doc.loc

    def _report(self, error: ConfigError) -> None:
        self.ok = False
        self.ctx.report(error)

    def _unknown(self, message: str, loc: SourceLocation, name: str, choices: Mapping[str, Any]) -> None:
        close = difflib.get_close_matches(name, list(choices), n=1)
        self._report(UnknownReference(message, location=loc, hint=f"did you mean {close[0]!r}?" if close else None))

    def compile(self) -> Conversion | None:
        data, name = self.data, self.doc.name
        source = self.ctx.entities.get(data["from"])
        if source is None:
            self._unknown(f"conversion {name!r}: unknown entity {data['from']!r}", self._loc("from"), data["from"],
                          self.ctx.entities)
            return None
        created = self._created(source)
        if created is None:
            return None
        links = {e: self._links(source, created, e) for e in created}
        order = self._order(links)
        reuse = self._reuse(created)
        optional = self._optional(created, links)
        values = {e: self._values(source, created[e], ("create", e)) for e in created}
        mark, mark_links = self._mark(source, created)
        relinks = self._relinks(source, created)
        if not self.ok or order is None:
            return None
        targets = tuple(Target(e, values[e], tuple(links[e].items()), e in optional) for e in order)
        return Conversion(name, source.name, targets, reuse, mark, mark_links, relinks, self.doc.loc)

    def _created(self, source: Entity) -> dict[str, Entity] | None:
        out: dict[str, Entity] = {}
        for ename in self.data["create"]:
            ent = self.ctx.entities.get(ename)
            loc = self._loc("create", ename, key=True)
            if ent is None:
                self._unknown(f"conversion {self.doc.name!r}: unknown entity {ename!r} in create", loc, ename,
                              self.ctx.entities)
            elif ent.name == source.name or ent.parent is not None:
                what = "the entity converted" if ent.name == source.name else "a lines entity"
                self._report(SchemaViolation(f"conversion {self.doc.name!r} cannot create {ename!r}: it is {what}",
                                             location=loc, hint="create other entities (account, contact, ...)"))
            else:
                out[ename] = ent
        return out if self.ok else None

    def _values(self, source: Entity, target: Entity, path: tuple[Any, ...]) -> tuple[tuple[str, Value], ...]:
        out = []
        for fname, raw in (locate_map(self.data, path)).items():
            f = target.fields.get(fname)
            loc = self._loc(*path, fname, key=True)
            if f is None:
                self._unknown(f"conversion {self.doc.name!r}: entity {target.name!r} has no field {fname!r}", loc,
                              fname, target.fields)
                continue
            if f.type in _UNWRITABLE or f.formula:
                self._report(SchemaViolation(f"conversion {self.doc.name!r}: {target.name}.{fname} is computed by "
                                             "the engine and cannot be set", location=loc, hint="remove it"))
                continue
            out.append((fname, self._value(raw, source, f, self._loc(*path, fname))))
        return tuple(out)

    def _value(self, raw: Any, source: Entity, field: Field, loc: SourceLocation) -> Value:
        if not isinstance(raw, str):
            return raw
        expected = "reference" if field.type == "user" else field.type
        try:
            return compile_expression(raw, source, self.ws, expected=expected, location=loc)
        except ExpressionError as e:
            self._report(e)
            return None

    def _links(self, source: Entity, created: dict[str, Entity], ename: str) -> dict[str, str]:
        ent = created[ename]
        given = dict((self.data.get("links") or {}).get(ename) or {})
        mapped = {f for f, _ in locate_map(self.data, ("create", ename)).items()}
        out: dict[str, str] = {}
        for fname, target in given.items():
            f = ent.fields.get(fname)
            loc = self._loc("links", ename, fname, key=True)
            if f is None or f.type != "reference":
                self._unknown(f"conversion {self.doc.name!r}: {ename!r} has no reference field {fname!r}", loc,
                              fname, {x.name: x for x in ent.fields.values() if x.type == "reference"})
            elif (target not in created and target != source.name) or f.reference != target:
                self._report(SchemaViolation(
                    f"conversion {self.doc.name!r}: {ename}.{fname} refers to {f.reference!r}, not to a record this "
                    f"conversion makes ({target!r})", location=self._loc("links", ename, fname),
                    hint=f"link it to {', '.join(sorted({*created, source.name} - {ename}))}"))
            else:
                out[fname] = target
        for target in (*created, source.name):
            if target == ename or target in out.values():
                continue
            fname = pick_reference(ent, target)
            if fname is not None and fname not in mapped and fname not in out:
                out[fname] = target
        return out

    def _order(self, links: Mapping[str, Mapping[str, str]]) -> list[str] | None:
        order: list[str] = []
        pending = dict(links)
        while pending:
            ready = [e for e, ls in pending.items() if all(t not in pending or t == e for t in ls.values())]
            if not ready:
                self._report(SchemaViolation(f"conversion {self.doc.name!r}: the created records refer to each other "
                                             f"in a circle ({', '.join(pending)})", location=self._loc("create"),
                                             hint="drop one of the links (links: {entity: {field: ...}})"))
                return None
            order += ready
            for e in ready:
                pending.pop(e)
        return order

    def _reuse(self, created: Mapping[str, Entity]) -> str | None:
        reuse = self.data.get("reuse")
        if reuse is None:
            return "account" if "account" in created else None
        if reuse not in created:
            self._unknown(f"conversion {self.doc.name!r}: reuse names {reuse!r}, which it does not create",
                          self._loc("reuse"), reuse, created)
        return str(reuse)

    def _optional(self, created: Mapping[str, Entity], links: Mapping[str, Mapping[str, str]]) -> set[str]:
        given = self.data.get("optional")
        if given is None:
            needed = {t for ls in links.values() for t in ls.values()}
            return {e for e in created if e not in needed}
        for i, ename in enumerate(given):
            if ename not in created:
                self._unknown(f"conversion {self.doc.name!r}: optional names {ename!r}, which it does not create",
                              self._loc("optional", i), ename, created)
        return set(given)

    def _mark(self, source: Entity, created: Mapping[str, Entity]
              ) -> tuple[tuple[tuple[str, Value], ...], tuple[tuple[str, str], ...]]:
        raw = dict(default_mark(source))
        raw.update(locate_map(self.data, ("mark",)))
        links = tuple((f"converted_{e}", e) for e in created
                      if (f := source.fields.get(f"converted_{e}")) is not None and f.reference == e)
        values = []
        for fname, value in raw.items():
            f = source.fields.get(fname)
            if f is None:
                self._unknown(f"conversion {self.doc.name!r}: entity {source.name!r} has no field {fname!r}",
                              self._loc("mark", fname, key=True), fname, source.fields)
                continue
            values.append((fname, self._value(value, source, f, self._loc("mark", fname))))
        return tuple(values), links

    def _relinks(self, source: Entity, created: Mapping[str, Entity]) -> tuple[Relink, ...]:
        given = self.data.get("relink")
        names = list(given) if given is not None else [e for e in self.ctx.entities if e not in created]
        out = []
        for i, ename in enumerate(names):
            ent = self.ctx.entities.get(ename)
            if ent is None:
                self._unknown(f"conversion {self.doc.name!r}: unknown entity {ename!r} in relink",
                              self._loc("relink", i), ename, self.ctx.entities)
                continue
            via = pick_reference(ent, source.name)
            fields = tuple((f, e) for e in created if (f := pick_reference(ent, e)) is not None)
            if via is not None and fields and ent.parent is None and ename != source.name:
                out.append(Relink(ename, via, fields))
            elif given is not None:
                self._report(SchemaViolation(
                    f"conversion {self.doc.name!r}: {ename!r} cannot be relinked: it needs a reference to "
                    f"{source.name!r} and to one of {', '.join(created)}", location=self._loc("relink", i),
                    hint="remove it from relink"))
        return tuple(out)


def default_mark(source: Entity) -> dict[str, str]:
    """What marks a converted record when the document does not say: ``status`` 'converted' (if it is an
    option) and ``converted_at`` $now (if the source has the field)."""
    out: dict[str, str] = {}
    status = source.fields.get("status")
    if status is not None and "converted" in status.option_keys:
        out["status"] = "'converted'"
    at = source.fields.get("converted_at")
    if at is not None and at.type == "datetime":
        out["converted_at"] = "$now"
    return out


def locate_map(data: Any, path: Sequence[Any]) -> Mapping[str, Any]:
    """The mapping at ``path`` in ``data`` (empty when absent)."""
    node = data
    for step in path:
        node = node.get(step) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def compile_conversions(docs: Sequence[MergedDoc], ctx: CompileContext) -> dict[str, Conversion]:
    """Every ``conversion:`` document, checked against the entities."""
    out: dict[str, Conversion] = {}
    for doc in docs:
        conv = _ConversionCompiler(doc, ctx).compile()
        if conv is not None:
            out[doc.name] = conv
    return out


KIND: KindSpec | None = KindSpec(
    "conversion", "conversion.json",
    "a lead becomes an account, a contact and an opportunity in one step (values as expressions)",
    compile=compile_conversions, order=90,
)
