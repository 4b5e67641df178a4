"""Fixtures of the API tests: one applied manufacturing workspace per module and back end.

``api_env``  (module, per back end) a database with the manufacturing workspace
             applied, a runtime, users (admin; a sales manager heading team
             ``east``; sales reps ``rep1`` and ``rep2`` in that team; ``rep3``
             outside it) and a token for each.
``client``   a Flask test client of ``create_app(runtime)``.
``live_server`` a waitress server of the app on 127.0.0.1 and a free port.

Applying a workspace takes a moment, so a module shares one database; tests
create their own records and never depend on others' counts.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.api import create_app
from engine.dsl.model import Workspace
from tests.conftest import fresh_database

USERS = {
    "admin": {"roles": ["admin"]},
    "boss": {"roles": ["sales_manager"]},
    "rep1": {"roles": ["sales"], "team": "east", "manager": "boss"},
    "rep2": {"roles": ["sales"], "team": "east", "manager": "boss"},
    "rep3": {"roles": ["sales"]},
}


@dataclass
class ApiEnv:
    """An applied workspace with users and their tokens."""

    url: str
    runtime: Any
    workspace: Workspace
    tokens: dict[str, str] = field(default_factory=dict)
    app: Any = None

    def headers(self, user: str, **extra: str) -> dict[str, str]:
        """Request headers authenticating as ``user``."""
        return {"Authorization": f"Bearer {self.tokens[user]}", **extra}


@pytest.fixture(scope="session")
def manufacturing_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manufacturing workspace folder (compiled from the shipped template)."""
    from engine.dsl.scaffold import init_workspace

    folder = tmp_path_factory.mktemp("ws") / "acme"
    init_workspace(folder, industry="manufacturing", name="acme", locale="en", currency="CNY",
                   phone_region="CN")
    return folder


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database per module and back end."""
    with fresh_database(request, request.param, tmp_path_factory.mktemp("db"), "crm_api") as url:
        yield url


def apply_folder_quietly(folder: Path, url: str) -> Workspace:
    """Compile and apply ``folder`` to ``url`` without asking."""
    from engine.runtime.schema.operations import apply_workspace, compile_workspace

    ws = compile_workspace(folder)
    apply_workspace(ws, url, yes=True, allow_destructive=False, purge=False, message="test", author="test",
                    echo=lambda _s: None, confirm=lambda _q: True, export_dir=folder / "exports")
    return ws


def make_users(runtime: Any) -> dict[str, str]:
    """Create :data:`USERS` and one token each; username -> token."""
    from engine.runtime import users
    from engine.runtime.context import Actor

    tokens = {}
    with runtime.unit(Actor.system()) as uow:
        users.create_user(uow, "boss", roles=["sales_manager"])
        users.create_team(uow, "east", manager="boss")
        for name, spec in USERS.items():
            if name != "boss":
                users.create_user(uow, name, roles=spec["roles"], team=spec.get("team"), manager=spec.get("manager"))
            tokens[name] = users.create_token(uow, name, "test")
    return tokens


@pytest.fixture(scope="module")
def api_env(api_db_url: str, manufacturing_folder: Path) -> Iterator[ApiEnv]:
    """The applied workspace, its runtime, users and tokens (shared by a module)."""
    from engine.runtime.runtime import Runtime

    ws = apply_folder_quietly(manufacturing_folder, api_db_url)
    runtime = Runtime.open(api_db_url)
    try:
        env = ApiEnv(url=api_db_url, runtime=runtime, workspace=ws, tokens=make_users(runtime))
        env.app = create_app(runtime)
        env.app.testing = True
        yield env
    finally:
        runtime.close()


@pytest.fixture
def client(api_env: ApiEnv) -> Any:
    """A Flask test client of the API."""
    return api_env.app.test_client()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, *, threads: int = 8) -> Iterator[str]:
    """Serve ``app`` with waitress on 127.0.0.1 and a free port in a thread; yields the base URL.

    Waitress has no stop call: ``close()`` shuts its sockets under the running loop, which may then poll
    one of them and raise.  Only that error, once closing began, is expected; any other still fails.
    """
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=free_port(), threads=threads)
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    port = int(server.effective_port)
    _wait_until_up(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stopping.set()
        server.close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def live_server(api_env: ApiEnv) -> Iterator[str]:
    """Base URL of a waitress server (8 threads) of the API on 127.0.0.1; stopped after the module."""
    with serving(api_env.app) as base:
        yield base


def _wait_until_up(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def create(client: Any, env: ApiEnv, user: str, entity: str, values: dict[str, Any]) -> dict[str, Any]:
    """POST a record as ``user``; asserts 201 and returns the record."""
    resp = client.post(f"/api/v1/records/{entity}", json=values, headers=env.headers(user))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()
