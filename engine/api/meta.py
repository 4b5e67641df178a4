"""``GET /meta``: the entities, fields and permissions the caller works with.

Built from the compiled workspace and the caller's effective permissions:
an entity the caller can neither read nor create is left out, and so is
every field hidden from the caller.  A client (the admin UI, an ERP
connector) renders forms and lists from this document.
"""

from __future__ import annotations

from typing import Any

from engine.api import gateway
from engine.dsl.model import Entity, Field

_STANDARD_FIELDS = {
    "id": "integer", "version": "integer", "created_at": "datetime", "created_by": "user",
    "updated_at": "datetime", "updated_by": "user", "owner_id": "user",
}


def field_meta(field: Field, rule: str | None) -> dict[str, Any]:
    """What a client needs to render and validate one field."""
    out: dict[str, Any] = {
        "type": field.type,
        "label": dict(field.label),
        "required": field.required,
        "readonly": bool(field.readonly or field.formula or rule == "readonly" or field.type == "auto_number"),
    }
    if field.help:
        out["help"] = dict(field.help)
    if field.options:
        out["options"] = [{"key": o.key, "label": dict(o.label)} for o in field.options]
    if field.reference:
        out["reference"] = field.reference
    for key in ("max_length", "min", "max", "default", "formula"):
        value = getattr(field, key)
        if value is not None:
            out[key] = value
    if field.lines_entity:
        out["lines_entity"] = field.lines_entity
    return out


def entity_meta(entity: Entity, perm: dict[str, Any]) -> dict[str, Any]:
    """One entity as the caller sees it: visible fields and what the caller may do."""
    rules = perm.get("fields", {})
    fields = {name: field_meta(f, rules.get(name)) for name, f in entity.fields.items()
              if rules.get(name) != "hidden"}
    return {
        "label": dict(entity.label),
        "title": entity.title,
        "parent": entity.parent.entity if entity.parent else None,
        "default_sort": list(entity.default_sort),
        "standard_fields": dict(_STANDARD_FIELDS),
        "fields": fields,
        "permissions": {k: perm[k] for k in ("read", "create", "update", "delete")},
    }


def visible_entities(runtime: Any, actor: Any) -> dict[str, tuple[Entity, dict[str, Any]]]:
    """entity name -> (entity, the caller's permission) for entities the caller can read or create."""
    ws = gateway.workspace(runtime)
    perms = gateway.permissions(runtime, actor)
    return {name: (ent, perms[name]) for name, ent in ws.entities.items()
            if perms[name]["read"] != "none" or perms[name]["create"]}


def build_meta(runtime: Any, actor: Any) -> dict[str, Any]:
    """The ``/meta`` document for ``actor``."""
    ws = gateway.workspace(runtime)
    entities = {name: entity_meta(ent, perm) for name, (ent, perm) in visible_entities(runtime, actor).items()}
    return {
        "workspace": ws.name,
        "revision": gateway.revision_key(runtime),
        "locale": ws.locale,
        "currency": ws.currency,
        "user": actor_meta(actor),
        "entities": entities,
    }


def actor_meta(actor: Any) -> dict[str, Any]:
    """The caller: id, username, roles, team."""
    return {
        "id": getattr(actor, "user_id", getattr(actor, "id", None)),
        "username": getattr(actor, "username", None),
        "roles": list(getattr(actor, "roles", ()) or ()),
        "team_id": getattr(actor, "team_id", None),
    }
