"""Compiling ``entity:`` documents into :class:`~engine.dsl.model.Entity`."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.dsl.listedit import LIST_EDIT
from engine.dsl.model import (
    ENCRYPTABLE_TYPES,
    MAX_NAME,
    NUMERIC_TYPES,
    RESERVED_NAMES,
    STANDARD_COLUMNS,
    STRING_TYPES,
    Check,
    Entity,
    Field,
    IndexSpec,
    Option,
    ParentLink,
    frozen_map,
)
from engine.dsl.search import SEARCHABLE_TYPES, with_default_search
from engine.dsl.yamlsrc import YList, YMap, locate
from engine.errors import ConfigError, InvalidName, LayerError, SchemaViolation, SourceLocation, UnknownReference
from engine.wording import with_article

IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
PATTERN_COUNTER = re.compile(r"\{#+\}")

Report = Callable[[ConfigError], None]


def label_of(value: Any, fallback: str) -> Mapping[str, str]:
    """A label as a language -> text mapping (a plain string counts as English)."""
    if isinstance(value, str):
        return frozen_map({"en": value})
    if isinstance(value, dict):
        return frozen_map({str(k): str(v) for k, v in value.items()})
    return frozen_map({"en": fallback.replace("_", " ").capitalize()})


def check_name(name: str, what: str, loc: SourceLocation, report: Report, *, field: bool = False) -> bool:
    """Identifiers only, not too long, no ``crm_`` prefix, not a standard column."""
    problem = None
    if not IDENT.match(name):
        problem = "must use lowercase letters, digits and underscores, starting with a letter"
    elif len(name) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    elif name.startswith("crm_"):
        problem = "may not start with 'crm_' (reserved for the engine's tables)"
    elif field and name in RESERVED_NAMES:
        problem = f"is a standard column every record has ({', '.join(STANDARD_COLUMNS)})"
    if problem:
        report(InvalidName(f"{what} name {name!r} {problem}", location=loc, hint=f"rename the {what}"))
    return problem is None


class EntityCompiler:
    """Compiles one merged entity document; reports every error it finds."""

    def __init__(self, name: str, data: YMap, loc: SourceLocation, entity_names: set[str], report: Report,
                 *, core: bool, field_types: Mapping[str, Any] | None = None,
                 layer_files: Sequence[str] = ()) -> None:
        self.name = name
        #: the files of the document's layers, base first (which layer changed something last)
        self.layer_files = list(layer_files)
        self.data = data
        self.loc = loc
        self.entity_names = entity_names
        self.report = report
        self.core = core
        #: plugin field types by name (:class:`engine.dsl.extensions.FieldTypeDef`)
        self.field_types = field_types or {}
        self.children: list[Entity] = []

    def compile(self) -> list[Entity]:
        """The entity and the child entities of its ``lines`` fields."""
        check_name(self.name, "entity", self.loc, self.report)
        fields, retired = self._fields(self.data.get("fields") or YMap(), ("fields",), self.name)
        fields = with_default_search(fields, self.data.get("title"))
        entity = Entity(
            name=self.name,
            location=self.loc,
            label=label_of(self.data.get("label"), self.name),
            title=self.data.get("title"),
            fields=frozen_map(fields),
            retired=frozen_map(retired),
            checks=self._checks(),
            indexes=self._indexes(fields),
            default_sort=tuple(self.data.get("default_sort") or ("-created_at",)),
            core=self.core,
        )
        self._check_title(entity)
        self._check_sort(entity)
        return [entity, *self.children]

    # ---------------------------------------------------------------- fields

    def _fields(self, fdata: YMap, path: tuple[Any, ...], owner: str) -> tuple[dict[str, Field], dict[str, Field]]:
        fields: dict[str, Field] = {}
        retired: dict[str, Field] = {}
        for fname, spec in fdata.items():
            fpath = (*path, fname)
            if not check_name(fname, "field", fdata.key_locs[fname], self.report, field=True):
                continue
            built = self._field(fname, spec, fpath, owner)
            if built is None:
                continue
            (retired if spec.get("remove") else fields)[fname] = built
        self._check_renames(fields, fdata)
        self._check_columns(fields, fdata, owner)
        return fields, retired

    def _check_columns(self, fields: dict[str, Field], fdata: YMap, owner: str) -> None:
        """Two fields may not store into the same column (``parent`` -> ``parent_id``, ``x`` -> ``x_currency``)."""
        taken: dict[str, str] = {}
        for f in fields.values():
            cols = [f.column_name] + ([f"{f.name}_currency"] if f.type == "money" else [])
            for col in cols:
                if col in RESERVED_NAMES and col != f.name:  # a reserved field *name* is reported by check_name
                    clash = "is a standard column of every record"
                elif col in taken:
                    clash = f"is also used by field {taken[col]!r}"
                else:
                    taken[col] = f.name
                    continue
                self.report(InvalidName(f"field {owner}.{f.name} is stored in column {col!r}, which {clash}",
                                        location=f.location, hint=f"rename field {f.name!r}"))

    def _loc(self, path: tuple[Any, ...], *, key: bool = False) -> SourceLocation:
        return locate(self.data, path, key=key) or self.loc

    def _field(self, name: str, spec: YMap, path: tuple[Any, ...], owner: str) -> Field | None:
        ftype = spec.get("type")
        loc = self._loc(path, key=True)
        if ftype is None and spec.get("remove"):
            self.report(SchemaViolation(
                f"field {owner}.{name} says 'remove: true', but no earlier layer defines {name!r}, so there is "
                "nothing to remove", location=loc,
                hint=f"delete the {name!r} entry: a field that is no longer in the configuration is retired by the "
                     "planner (its data is kept); 'remove: true' only takes away a field that a base or industry "
                     "layer defines"))
            return None
        if ftype is None:
            self.report(SchemaViolation(f"field {owner}.{name} has no type", location=loc,
                                        hint="add 'type:' (string, integer, money, picklist, reference, ...)"))
            return None
        custom = self.field_types.get(ftype)
        if custom is not None:  # a plugin's type: stored and checked as its base type, plus its own check
            ftype = custom.base
            if custom.max_length is not None and "max_length" not in spec:
                spec = YMap({**spec, "max_length": custom.max_length}, loc=spec.loc)
        ok = self._type_rules(name, ftype, spec, path)
        options = self._options(spec, path)
        ok = self._check_replace(name, spec, path, options) and ok
        kwargs: dict[str, Any] = dict(
            name=name, type=ftype, format=custom.name if custom is not None else None, location=loc,
            label=label_of(spec.get("label"), name),
            required=bool(spec.get("required")), unique=bool(spec.get("unique")),
            index=bool(spec.get("index")), search=bool(spec.get("search")),
            readonly=bool(spec.get("readonly") or spec.get("formula")),
            default_expr=spec.get("default_expr"), formula=spec.get("formula"),
            expr_location=self._expr_loc(spec, path),
            min=spec.get("min"), max=spec.get("max"), max_length=spec.get("max_length"),
            scale=spec.get("scale", 4 if ftype == "percent" else 2),
            help=label_of(spec.get("help"), "") if spec.get("help") else frozen_map(),
            renamed_from=spec.get("renamed_from"), options=options,
            replace=frozen_map(spec.get("replace") or {}), on_delete=spec.get("on_delete", "restrict"),
            storage=spec.get("storage", "column"), pattern=spec.get("pattern"),
            keep_as_typed=bool(spec.get("keep_as_typed")), encrypted=bool(spec.get("encrypted")),
        )
        if ftype == "reference":
            kwargs["reference"] = spec.get("to")
        elif ftype == "user":
            kwargs["reference"] = "crm_users"
        elif ftype == "lines":
            kwargs["lines_entity"] = self._lines_child(name, spec, path, owner)
        if "default" in spec:
            kwargs["default"] = self._default(name, ftype, spec, path, options)
        return Field(**kwargs) if ok else None

    def _expr_loc(self, spec: YMap, path: tuple[Any, ...]) -> SourceLocation | None:
        for key in ("formula", "default_expr"):
            if key in spec:
                return self._loc((*path, key))
        return None

    def _type_rules(self, name: str, ftype: str, spec: YMap, path: tuple[Any, ...]) -> bool:
        problems: list[tuple[str, str, str]] = []  # (property, message, hint)
        needs = {"reference": "to", "picklist": "options", "multi_picklist": "options",
                 "lines": "fields", "auto_number": "pattern"}
        if ftype in needs and needs[ftype] not in spec:
            problems.append(("type", f"{with_article(ftype)} field needs '{needs[ftype]}:'", f"add '{needs[ftype]}:'"))
        only = {"to": ("reference",), "on_delete": ("reference", "user"), "options": ("picklist", "multi_picklist"),
                "replace": ("picklist", "multi_picklist"), "pattern": ("auto_number",), "fields": ("lines",),
                "max_length": tuple(STRING_TYPES), "min": tuple(NUMERIC_TYPES), "max": tuple(NUMERIC_TYPES),
                "scale": ("decimal", "money", "percent"), "keep_as_typed": ("phone",),
                "search": tuple(SEARCHABLE_TYPES)}
        for prop, types in only.items():
            if prop in spec and ftype not in types:
                problems.append((prop, f"'{prop}' does not apply to {with_article(ftype)} field",
                                 f"remove it, or use a field type among: {', '.join(sorted(types))}"))
        if spec.get("encrypted"):
            problems += _encryption_problems(ftype, spec)
            if path[:1] != ("fields",) or len(path) > 2:
                problems.append(("encrypted", "a field of lines cannot be encrypted",
                                 "keep encrypted values on the parent record"))
            if spec.get("search"):
                problems.append(("search", "an encrypted field cannot be searched (its stored value is sealed)",
                                 "remove 'search: true': exact lookups of an encrypted field use its blind index"))
        if ftype == "lines" and spec.get("storage") == "json":
            problems.append(("storage", "a lines field cannot be stored as JSON", "remove 'storage: json'"))
        if "min" in spec and "max" in spec and spec["min"] > spec["max"]:
            problems.append(("min", "min is greater than max", "swap them"))
        if ftype == "reference" and "to" in spec and spec["to"] not in self.entity_names:
            close = difflib.get_close_matches(spec["to"], sorted(self.entity_names), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "define that entity, or fix the name"
            self.report(UnknownReference(f"field {name!r} refers to unknown entity {spec['to']!r}",
                                         location=self._loc((*path, "to")), hint=hint))
            return False
        if ftype == "auto_number" and "pattern" in spec and not PATTERN_COUNTER.search(spec["pattern"]):
            problems.append(("pattern", "a naming series needs a counter such as {#####}",
                             "e.g. 'Q-{YYYY}-{#####}'"))
        if spec.get("formula") and spec.get("default_expr"):
            problems.append(("formula", "a field has either a formula or a default_expr, not both", "keep one"))
        for prop, msg, hint in problems:
            loc = self._loc((*path, prop), key=True) if prop in spec else self._loc(path, key=True)
            self.report(SchemaViolation(f"field {name!r}: {msg}", location=loc, hint=hint))
        return not problems

    def _check_replace(self, name: str, spec: YMap, path: tuple[Any, ...], options: tuple[Option, ...]) -> bool:
        """``replace: {old: new}`` must map to an option the field still has."""
        keys = [o.key for o in options]
        ok = True
        for old, target in (spec.get("replace") or {}).items():
            if str(target) in keys:
                continue
            close = difflib.get_close_matches(str(target), keys, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(keys)}"
            self.report(SchemaViolation(
                f"field {name!r}: replace maps {old!r} to {target!r}, which is not one of its options",
                location=self._loc((*path, "replace", old)), hint=hint))
            ok = False
        return ok

    def _options(self, spec: YMap, path: tuple[Any, ...]) -> tuple[Option, ...]:
        raw = spec.get("options") or ()
        if isinstance(raw, dict):  # the edit form survived layering: nothing earlier to edit
            self.report(LayerError(
                f"field {path[-1]!r}: 'options: {{add/remove/update}}' edits the options of an earlier layer, "
                "but no earlier layer gives this field options", code=LIST_EDIT,
                location=self._loc((*path, "options"), key=True), hint="write the options as a list here"))
            return ()
        out = []
        locs = list(getattr(raw, "item_locs", ()))
        for i, item in enumerate(raw):
            loc = locs[i] if i < len(locs) else None
            if isinstance(item, dict):
                out.append(Option(str(item["key"]), label_of(item.get("label"), str(item["key"])), item.get("color"),
                                  location=loc))
            else:
                out.append(Option(str(item), label_of(None, str(item)), location=loc))
        return tuple(out)

    def _default(self, name: str, ftype: str, spec: YMap, path: tuple[Any, ...], options: tuple[Option, ...]) -> Any:
        value = spec["default"]
        try:
            return coerce_literal(ftype, value, tuple(o.key for o in options))
        except ValueError as e:
            loc, context = self._default_blame(spec, path)
            hint = f"give {with_article(ftype)} value, or use default_expr for a computed default"
            if context:
                hint = f"keep {value!r} among the options (options: {{add: [...]}}), or set 'default:' to one of them"
            self.report(SchemaViolation(f"field {name!r}: default {value!r} {e}{context}", location=loc, hint=hint))
            return None

    def _default_blame(self, spec: YMap, path: tuple[Any, ...]) -> tuple[SourceLocation, str]:
        """Where a default that is not an option went wrong: at the layer that changed the options
        last when it came after the default's, naming every place that wrote them."""
        at_default = self._loc((*path, "default"))
        options = spec.get("options")
        if not isinstance(options, YList) or len(options.written_at()) < 2:
            return at_default, ""
        places = options.written_at()
        context = f"; the options are defined at {places[0]} and changed at {', '.join(map(str, places[1:]))}"
        if self._layer_index(places[-1].file) > self._layer_index(at_default.file):
            return places[-1], context
        return at_default, context

    def _layer_index(self, file: str) -> int:
        return self.layer_files.index(file) if file in self.layer_files else -1

    def _lines_child(self, name: str, spec: YMap, path: tuple[Any, ...], owner: str) -> str:
        child_name = f"{owner}_{name}"
        if child_name in self.entity_names:
            self.report(InvalidName(f"lines field {owner}.{name} needs the entity name {child_name!r}, which is taken",
                                    location=self._loc(path, key=True), hint="rename the field or the entity"))
        fields, retired = self._fields(spec.get("fields") or YMap(), (*path, "fields"), child_name)
        self.children.append(Entity(
            name=child_name, location=self._loc(path, key=True), label=label_of(spec.get("label"), name),
            fields=frozen_map(fields), retired=frozen_map(retired), parent=ParentLink(owner, name),
            default_sort=("position",), core=self.core,
        ))
        return child_name

    def _check_renames(self, fields: dict[str, Field], fdata: YMap) -> None:
        for f in fields.values():
            if f.renamed_from and f.renamed_from in fields:
                self.report(SchemaViolation(
                    f"field {f.name!r} is renamed_from {f.renamed_from!r}, which still exists",
                    location=f.location, hint=f"remove field {f.renamed_from!r} (the rename keeps its data)"))

    # ---------------------------------------------------------------- entity-level

    def _checks(self) -> tuple[Check, ...]:
        out = []
        for i, raw in enumerate(self.data.get("checks") or ()):
            loc = self._loc(("checks", i))
            out.append(Check(raw["check"], label_of(raw.get("message"), "Check failed: " + raw["check"]),
                             loc, self._loc(("checks", i, "check"))))
        return tuple(out)

    def _indexes(self, fields: dict[str, Field]) -> tuple[IndexSpec, ...]:
        out = []
        for i, raw in enumerate(self.data.get("indexes") or ()):
            for j, part in enumerate(raw["fields"]):
                fname = part.lstrip("-")
                if fname not in fields and fname not in STANDARD_COLUMNS:
                    self.report(UnknownReference(f"index {raw['name']!r} names unknown field {fname!r}",
                                                 location=self._loc(("indexes", i, "fields", j)),
                                                 hint=_close(fname, fields)))
                elif fname in fields and fields[fname].encrypted:
                    self.report(SchemaViolation(
                        f"index {raw['name']!r} names field {fname!r}, which is encrypted: an index over "
                        "encrypted values serves no query", location=self._loc(("indexes", i, "fields", j)),
                        hint="leave it out: an encrypted field always has its own index for equality lookups"))
            out.append(IndexSpec(raw["name"], tuple(raw["fields"]), bool(raw.get("unique"))))
        return tuple(out)

    def _check_title(self, entity: Entity) -> None:
        for ref in re.findall(r"\{([^}]*)\}", entity.title or ""):
            if ref not in entity.fields and ref not in STANDARD_COLUMNS:
                self.report(UnknownReference(f"title names unknown field {ref!r}", location=self._loc(("title",)),
                                             hint=_close(ref, entity.fields)))

    def _check_sort(self, entity: Entity) -> None:
        for i, part in enumerate(self.data.get("default_sort") or ()):
            name = part.lstrip("-")
            if name in entity.fields and entity.fields[name].encrypted:
                self.report(SchemaViolation(
                    f"default_sort names field {name!r}, which is encrypted: encrypted values cannot be sorted",
                    location=self._loc(("default_sort", i)), hint="sort by another field"))
            if name not in entity.fields and name not in STANDARD_COLUMNS:
                self.report(UnknownReference(f"default_sort names unknown field {name!r}",
                                             location=self._loc(("default_sort", i)), hint=_close(name, entity.fields)))


def _encryption_problems(ftype: str, spec: YMap) -> list[tuple[str, str, str]]:
    """Why ``encrypted: true`` cannot apply to a field of ``ftype`` declared as ``spec`` (property, message, hint)."""
    if ftype not in ENCRYPTABLE_TYPES:
        return [("encrypted", f"{with_article(ftype)} field cannot be encrypted",
                 f"encrypt a text-like field only: {', '.join(sorted(ENCRYPTABLE_TYPES))}")]
    out = []
    for prop, why in (("unique", "an encrypted value cannot be checked for uniqueness by the database"),
                      ("formula", "a formula field is computed, not stored as typed"),
                      ("storage", "an encrypted field is stored in its own column")):
        if spec.get(prop) and not (prop == "storage" and spec.get(prop) == "column"):
            out.append((prop, f"'{prop}' does not go with 'encrypted: true': {why}",
                        f"remove '{prop}', or remove 'encrypted'"))
    return out


def _close(name: str, choices: Mapping[str, Any] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else "check the field name"


def coerce_literal(ftype: str, value: Any, options: tuple[str, ...] = ()) -> Any:
    """A YAML literal as the Python value of a field type; ValueError says why not."""
    if value is None:
        return None
    if ftype in STRING_TYPES:
        if not isinstance(value, str):
            raise ValueError("is not a text")
        return value
    if ftype == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("is not a whole number")
        return value
    if ftype in ("decimal", "money", "percent"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("is not a number")
        try:
            return Decimal(str(value))
        except InvalidOperation as e:
            raise ValueError("is not a number") from e
    if ftype == "boolean":
        if not isinstance(value, bool):
            raise ValueError("is not true or false")
        return value
    if ftype == "date":
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError as e:
            raise ValueError("is not a date (YYYY-MM-DD)") from e
    if ftype == "picklist":
        if value not in options:
            raise ValueError(f"is not one of the options ({', '.join(options)})")
        return value
    if ftype == "multi_picklist":
        if not isinstance(value, list) or any(v not in options for v in value):
            raise ValueError(f"is not a list of options ({', '.join(options)})")
        return list(value)
    if ftype == "json":
        return value
    raise ValueError(f"cannot be a default of {with_article(ftype)} field")
