"""Which fields global search reads (pure: no database).

A field declares ``search: true`` (text-like types only: :data:`SEARCHABLE_TYPES`).  When no field of an
entity says so, the entity's default searchable fields are its title fields, a field called ``name`` and
its phone and email fields (:func:`with_default_search`, applied at compile time so the compiled
workspace -- and the schema snapshot the planner keeps -- says exactly which fields are searchable).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from engine.dsl.model import Entity, Field

#: field types whose values search can read
SEARCHABLE_TYPES = frozenset({"string", "text", "email", "phone", "url", "auto_number"})
_TITLE_REF = re.compile(r"\{([^}]*)\}")


def title_fields(title: str | None) -> tuple[str, ...]:
    """The field names a title template such as ``"{company} ({city})"`` reads, in order."""
    return tuple(dict.fromkeys(_TITLE_REF.findall(title or "")))


def _default_candidate(field: Field, titled: tuple[str, ...]) -> bool:
    if field.type not in SEARCHABLE_TYPES or not field.stored or field.encrypted:
        return False
    return field.name in titled or field.name == "name" or field.type in ("phone", "email")


def with_default_search(fields: Mapping[str, Field], title: str | None) -> dict[str, Field]:
    """``fields`` with the default searchable fields marked, when none is marked already."""
    if any(f.search for f in fields.values()):
        return dict(fields)
    titled = title_fields(title)
    return {n: dataclasses.replace(f, search=True) if _default_candidate(f, titled) else f
            for n, f in fields.items()}


def search_fields(entity: Entity) -> tuple[Field, ...]:
    """The searchable fields of ``entity``, in declaration order (never an encrypted one: its stored value is
    sealed text, which no substring index can serve -- its exact lookups go through the blind index)."""
    return tuple(f for f in entity.fields.values()
                 if f.search and f.stored and f.type in SEARCHABLE_TYPES and not f.encrypted)
