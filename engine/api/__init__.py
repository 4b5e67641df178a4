"""REST API (Flask blueprint under ``/api/v1``) and its OpenAPI document, generated from metadata."""

from __future__ import annotations

from engine.api.app import MAX_BODY_BYTES, create_app

__all__ = ["MAX_BODY_BYTES", "create_app"]
