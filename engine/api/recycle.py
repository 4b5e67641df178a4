"""The recycle bin over the API (docs/recycle-bin.md).

``GET /records/<entity>?deleted=only`` (in :mod:`engine.api.views`) lists the deleted records the caller
may delete and restore; ``POST /records/<entity>/<id>/restore`` brings one back through the record service
(permission checked, a ``restore`` audit row, its history kept), or answers 409 ``restore_clash`` naming the
unique field and the live record that took its value since.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.scoring import record_id
from engine.api.views import json_response, runtime, with_notes

bp = Blueprint("recycle", __name__)


@bp.post("/records/<entity>/<rid>/restore")
def restore_record(entity: str, rid: str) -> Response:
    """Undo a soft delete (``If-Match`` optional); 200 with the record as the caller sees it."""
    record_id_ = record_id(rid)
    version = params.if_match_version(request, required=False)
    with gateway.records(runtime(), g.principal) as svc:
        gateway.entity(svc.uow, entity)
        record = with_notes(svc.uow, entity, svc.restore(entity, record_id_, expected_version=version))
    return json_response(record, etag=record["version"])


_DELETED = apidoc.query_param("deleted", {"type": "string", "enum": ["exclude", "only"], "default": "exclude"},
                              "only: the recycle bin -- deleted records the caller may delete and restore")


@apidoc.amend
def _amend(_ws: Any, doc: dict[str, Any]) -> None:
    """The ``deleted`` list parameter and the restore path of each entity in the caller's document."""
    paths = doc["paths"]
    for path in [p for p in paths if p.startswith("/records/") and p.endswith("/{id}/history")]:
        base = path.removesuffix("/{id}/history")
        name = base.rsplit("/", 1)[1]
        listing = paths.get(base, {}).get("get")
        if listing is not None and all(p.get("name") != "deleted" for p in listing.get("parameters", ())):
            listing.setdefault("parameters", []).append(_DELETED)
        paths[f"{base}/{{id}}/restore"] = {"post": apidoc.op(
            f"restore_{name}", name, f"Restore a deleted {name} (needs delete permission on it)",
            {"200": apidoc.json_body({"$ref": f"#/components/schemas/{name}_record"}, "The restored record"),
             **apidoc.errors("400", "401", "403", "404", "409", "422", "423", "429", "503")},
            params=[apidoc.path_param("id", {"type": "integer", "minimum": 1})])}
