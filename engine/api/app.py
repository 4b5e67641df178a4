"""The Flask application factory of the REST API.

``create_app(runtime)`` builds an app serving ``/api/v1`` for one
:class:`engine.runtime.runtime.Runtime`.  The admin UI mounts on the same
app at ``/admin`` through the ``mount`` hooks (``crm demo`` serves both on
one port).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from engine.api import features  # noqa: F401  (nests the feature endpoints in the /api/v1 blueprint)
from engine.api.errors import register_error_handlers
from engine.api.gateway import TokenCache, UserSlots
from engine.api.jsonenc import FastJSONProvider
from engine.api.views import RUNTIME_KEY, SLOTS_KEY, TOKEN_CACHE_KEY, bp

#: Largest request body accepted (bytes); larger bodies get 413.
MAX_BODY_BYTES = 1024 * 1024
#: Requests one user may have running at once in one server process (more get 429).
MAX_REQUESTS_PER_USER = 4

Mount = Callable[[Flask, Any], None]
"""A function that adds views to the app, e.g. the admin UI at ``/admin``."""


def create_app(runtime: Any, *, mounts: Iterable[Mount] = (), max_body_bytes: int = MAX_BODY_BYTES,
               public_url: str | None = None, max_requests_per_user: int | None = MAX_REQUESTS_PER_USER,
               cache_tokens: bool = True, docs_url: str | None = None) -> Flask:
    """A Flask app serving the REST API of ``runtime`` under ``/api/v1``.

    ``mounts`` are called with ``(app, runtime)`` after the API is registered;
    the admin UI passes its own here to live at ``/admin`` on the same port.
    ``public_url`` (e.g. ``https://crm.example.com``) is where clients reach
    the server: ``Location`` headers are built on it, and are relative
    without it (never taken from the request's ``Host``).
    ``max_requests_per_user``: requests one user may run at once (None: no limit).
    ``cache_tokens``: remember authenticated tokens until the authentication
    epoch changes (False: look each one up on every request).
    ``docs_url``: where docs/errors.md is published (error bodies link to ``<docs_url>#<code>``).
    """
    app = Flask("engine.api")
    app.json = FastJSONProvider(app)
    app.config.update(MAX_CONTENT_LENGTH=max_body_bytes, MAX_FORM_MEMORY_SIZE=max_body_bytes,
                      JSON_SORT_KEYS=False, CRM_PUBLIC_URL=public_url,
                      CRM_DOCS_URL=docs_url)
    app.url_map.strict_slashes = False
    app.extensions[RUNTIME_KEY] = runtime
    app.extensions[TOKEN_CACHE_KEY] = TokenCache() if cache_tokens else None
    app.extensions[SLOTS_KEY] = UserSlots(max_requests_per_user)
    register_error_handlers(app)
    app.register_blueprint(bp)
    for plugin_bp in runtime.state.host.api_blueprints(runtime):  # the plugins of the revision served at start
        app.register_blueprint(plugin_bp)
    app.add_url_rule("/", "index", _index)
    for mount in mounts:
        mount(app, runtime)
    return app


def _index() -> dict[str, Any]:
    return {"api": "/api/v1", "openapi": "/api/v1/openapi.json", "meta": "/api/v1/meta", "admin": "/admin"}
