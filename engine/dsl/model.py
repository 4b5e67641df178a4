"""The compiled, immutable, typed workspace.

Built by pure functions in :mod:`engine.dsl.compiler` from the layered YAML
documents; consumed (never mutated) by the runtime.  Everything here is a
frozen dataclass; mappings are read-only views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from engine.errors import SourceLocation

Label = Mapping[str, str]
"""A text in several languages: ``{"en": "Lead", "zh": "线索"}``."""

Scope = Literal["none", "own", "team", "all"]
Storage = Literal["column", "json"]

#: Standard columns every entity table has, in this order.
STANDARD_COLUMNS: tuple[str, ...] = (
    "id",
    "version",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "owner_id",
    "deleted_at",
)
#: Longest name of an entity, field, role, option key or any other identifier of the configuration.
#: The one limit: the compiler checks it and the JSON Schemas get it at load time (``identifier``'s
#: ``maxLength``, see :func:`engine.dsl.schemacheck.load_schema`), so editors see the same limit.
#: PostgreSQL keeps 63 bytes of a name; 50 leaves room for the suffixes of index and column names.
MAX_NAME = 50
#: Name of the JSON column that holds ``storage: json`` fields.
JSON_COLUMN = "ext"
#: Columns the engine reserves on every entity table (names fields may not take).
RESERVED_NAMES: frozenset[str] = frozenset((*STANDARD_COLUMNS, JSON_COLUMN, "parent_id", "position"))

#: Field types, and the kind of value each holds (what the expression checker sees).
FIELD_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "string": "string",
        "text": "string",
        "email": "string",
        "phone": "string",
        "url": "string",
        "integer": "number",
        "decimal": "number",
        "money": "number",
        "percent": "number",
        "boolean": "boolean",
        "date": "date",
        "datetime": "datetime",
        "picklist": "picklist",
        "multi_picklist": "list",
        "reference": "reference",
        "user": "reference",
        "json": "json",
        "lines": "lines",
        "auto_number": "string",
    }
)
NUMERIC_TYPES = frozenset({"integer", "decimal", "money", "percent"})
STRING_TYPES = frozenset({"string", "text", "email", "phone", "url", "auto_number"})
#: field types that may be ``encrypted: true``
ENCRYPTABLE_TYPES = frozenset({"string", "text", "email", "phone", "url"})


def text_in(label: Label, locale: str, fallback: str) -> str:
    """``label`` in ``locale`` (``zh-CN`` falls back to ``zh``), else in English, else ``fallback`` (a key)."""
    language = locale.split("-")[0]
    return label.get(locale) or label.get(language) or label.get("en") or fallback


def frozen_map(items: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    """A read-only, insertion-ordered mapping."""
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a picklist."""

    key: str
    label: Label = field(default_factory=frozen_map)
    color: str | None = None
    #: where the option was written (None when not from YAML); not part of comparisons
    location: SourceLocation | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Check:
    """A validation rule: ``expression`` must hold on save, else ``message``."""

    expression: str
    message: Label
    location: SourceLocation
    #: where the expression text starts (for located expression errors)
    expression_location: SourceLocation


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an entity."""

    name: str
    type: str
    location: SourceLocation
    label: Label = field(default_factory=frozen_map)
    required: bool = False
    unique: bool = False
    index: bool = False
    #: read by global search (``search: true``, or a default searchable field: :mod:`engine.dsl.search`)
    search: bool = False
    readonly: bool = False
    default: Any = None
    #: a default computed by an expression (text), e.g. ``"$today"``
    default_expr: str | None = None
    formula: str | None = None
    #: where the formula / default expression text starts
    expr_location: SourceLocation | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    #: decimal places kept for decimal / money / percent
    scale: int = 2
    help: Label = field(default_factory=frozen_map)
    renamed_from: str | None = None
    options: tuple[Option, ...] = ()
    #: picklist option removal: old option -> replacement (used by the plan)
    replace: Mapping[str, str] = field(default_factory=frozen_map)
    #: the document whose items are this picklist's options (``pipeline opportunity_sales``: its stages), set
    #: by the kind that owns them; the plan's advice for a removed option then points there
    options_owner: str | None = None
    #: target entity of a ``reference``; ``"crm_users"`` for ``user``
    reference: str | None = None
    on_delete: Literal["restrict", "set_null", "cascade"] = "restrict"
    storage: Storage = "column"
    #: naming series of an ``auto_number``, e.g. ``Q-{YYYY}-{#####}``
    pattern: str | None = None
    #: child entity of a ``lines`` field
    lines_entity: str | None = None
    #: the plugin field type this field was declared with (``type`` is then its base type)
    format: str | None = None
    #: a phone field stores the number as typed (still validated) instead of its E.164 form
    keep_as_typed: bool = False
    #: stored encrypted at rest (a sealed text with its blind index; see engine.runtime.crypto)
    encrypted: bool = False
    #: names the field had before renames, oldest first (kept by the planner's schema snapshot; a
    #: compiled workspace leaves it empty)
    former_names: tuple[str, ...] = ()

    @property
    def value_kind(self) -> str:
        """number, string, boolean, date, datetime, picklist, list, reference, json or lines."""
        return FIELD_TYPES[self.type]

    @property
    def column_name(self) -> str:
        """The SQL column (or JSON key) that stores the field."""
        return f"{self.name}_id" if self.type in ("reference", "user") else self.name

    @property
    def stored(self) -> bool:
        """False for ``lines`` (kept in a child table)."""
        return self.type != "lines"

    @property
    def option_keys(self) -> tuple[str, ...]:
        return tuple(o.key for o in self.options)


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """An index on an entity table; ``columns`` may start with ``-`` for DESC."""

    name: str
    fields: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True, slots=True)
class ParentLink:
    """Set on the child entity of a ``lines`` field."""

    entity: str
    field: str


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity: a table of records."""

    name: str
    location: SourceLocation
    label: Label = field(default_factory=frozen_map)
    title: str | None = None
    fields: Mapping[str, Field] = field(default_factory=frozen_map)
    #: fields removed from the configuration whose data is kept (hidden) in the database
    retired: Mapping[str, Field] = field(default_factory=frozen_map)
    checks: tuple[Check, ...] = ()
    indexes: tuple[IndexSpec, ...] = ()
    #: default list order, e.g. ``("-created_at",)``
    default_sort: tuple[str, ...] = ("-created_at",)
    parent: ParentLink | None = None
    #: shipped by the engine core (True) or declared by a workspace layer
    core: bool = False

    @property
    def table_name(self) -> str:
        return self.name

    def field(self, name: str) -> Field | None:
        return self.fields.get(name)

    @property
    def json_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields.values() if f.stored and f.storage == "json")

    @property
    def encrypted_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields.values() if f.encrypted)


@dataclass(frozen=True, slots=True)
class EntityPermission:
    """What a role may do with one entity."""

    read: Scope = "none"
    create: bool = False
    update: Scope = "none"
    delete: Scope = "none"


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    location: SourceLocation
    label: Label = field(default_factory=frozen_map)
    #: an admin may do anything, including configuration changes
    admin: bool = False
    permissions: Mapping[str, EntityPermission] = field(default_factory=frozen_map)
    #: (entity, field) -> "hidden" | "readonly"
    field_rules: Mapping[tuple[str, str], str] = field(default_factory=frozen_map)
    #: to whom the role's users may give records (``owner_id``): "none" | "own_team" | "all"
    transfer: str = "all"


@dataclass(frozen=True, slots=True)
class ConfigObject:
    """A document of a kind compiled by a later feature (pipeline, pool, ...).

    ``data`` is the merged, schema-checked document as plain data;
    ``compiled`` is what the kind's compiler built from it (or None).
    """

    kind: str
    name: str
    location: SourceLocation
    data: Mapping[str, Any]
    compiled: Any = None


#: What attachments accept by default (docs/attachments.md): documents, images, text and zip archives.
DEFAULT_ATTACHMENT_TYPES: tuple[str, ...] = (
    "application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "text/csv",
    "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
    "application/zip",
)


@dataclass(frozen=True, slots=True)
class AttachmentSettings:
    """``attachments:`` of workspace.yaml: the size limit, the accepted types and the file store."""

    max_size: int = 25 * 1000 * 1000
    allowed_types: tuple[str, ...] = DEFAULT_ATTACHMENT_TYPES
    #: the file store's name: ``local`` or one a plugin registers (``crm_file_stores``)
    store: str = "local"
    #: the local store's folder (None: beside the SQLite database; ``CRM_FILES_DIR`` overrides it)
    path: str | None = None
    #: settings a plugin's store reads (bucket, endpoint...)
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Workspace:
    """Everything one customer's configuration declares, compiled."""

    name: str
    locale: str = "en"
    currency: str = "USD"
    #: ISO 3166 region of phone numbers written without a country code (e.g. "CN"); None: they need one
    phone_region: str | None = None
    entities: Mapping[str, Entity] = field(default_factory=frozen_map)
    roles: Mapping[str, Role] = field(default_factory=frozen_map)
    #: kind -> name -> object, for kinds other than entity and role
    objects: Mapping[str, Mapping[str, ConfigObject]] = field(default_factory=frozen_map)
    plugins: tuple[str, ...] = ()
    #: layer names, base first
    layers: tuple[str, ...] = ()
    #: display path -> file text, every file that went into the workspace
    sources: Mapping[str, str] = field(default_factory=frozen_map)
    #: sha256 over the sources: identifies the configuration
    content_hash: str = ""
    warnings: tuple[str, ...] = ()
    #: compiled expressions, keyed ("check", entity, index) / ("formula", entity, field) /
    #: ("default", entity, field): built once per revision by the compile passes
    compiled: Mapping[tuple[Any, ...], Any] = field(default_factory=frozen_map)
    #: the expression functions this workspace was compiled with (built-ins and enabled plugins');
    #: None: the built-ins (a Workspace made by hand)
    functions: Any = None
    #: plugin field types by name (:class:`engine.dsl.extensions.FieldTypeDef`), for ``Field.format``
    field_types: Mapping[str, Any] = field(default_factory=frozen_map)
    #: ``attachments:`` of workspace.yaml
    attachments: AttachmentSettings = field(default_factory=AttachmentSettings)

    def entity(self, name: str) -> Entity:
        """The entity called ``name``; KeyError if there is none."""
        return self.entities[name]

    def objects_of(self, kind: str) -> Mapping[str, ConfigObject]:
        return self.objects.get(kind, frozen_map())

    @property
    def has_encrypted_fields(self) -> bool:
        """Whether any entity has a field stored encrypted (the runtime then needs the key ring)."""
        return any(f.encrypted for e in self.entities.values() for f in e.fields.values())
