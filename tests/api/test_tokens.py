"""Tokens: revocation and deactivation bite on the next request of every process; expiry; the CLI;
``Location`` never built from ``Host``; a read-only database named as such.  SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.api import create_app
from engine.runtime import users
from engine.runtime.context import Actor, FixedClock
from engine.runtime.db import make_engine
from engine.runtime.engine_tables import crm_api_tokens
from engine.runtime.runtime import Runtime
from tests.api.conftest import apply_folder_quietly

LEADS = "/api/v1/records/lead"


@pytest.fixture
def applied(db_url: str, manufacturing_folder: Path) -> Iterator[str]:
    """A database with the manufacturing workspace, an admin and a rep."""
    apply_folder_quietly(manufacturing_folder, db_url)
    rt = Runtime.open(db_url)
    try:
        with rt.unit(Actor.system()) as uow:
            users.create_user(uow, "admin", roles=["admin"])
            users.create_user(uow, "rep", roles=["sales"])
    finally:
        rt.close()
    yield db_url


def _token(rt: Runtime, user: str, **kw: Any) -> str:
    with rt.unit(Actor.system()) as uow:
        return users.create_token(uow, user, "t", **kw)


def _get(app: Any, token: str) -> Any:
    return app.test_client().get(LEADS, headers={"Authorization": f"Bearer {token}"})


def test_revocation_and_deactivation_bite_on_the_next_request_of_another_process(applied: str) -> None:
    serving, admin_tool = Runtime.open(applied), Runtime.open(applied)  # two processes' worth of runtime
    try:
        app = create_app(serving)
        token, other = _token(admin_tool, "rep"), _token(admin_tool, "admin")
        assert _get(app, token).status_code == 200 and _get(app, token).status_code == 200  # now cached
        with admin_tool.unit(Actor.system()) as uow:
            assert users.revoke_token(uow, token[:12]) == 1
        resp = _get(app, token)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_token"
        assert _get(app, other).status_code == 200
        with admin_tool.unit(Actor.system()) as uow:
            users.deactivate_user(uow, "admin")
        assert _get(app, other).status_code == 401
    finally:
        serving.close()
        admin_tool.close()


def test_expired_tokens_stop_working(applied: str) -> None:
    clock = FixedClock()
    rt = Runtime.open(applied, clock=clock)
    try:
        app = create_app(rt)
        token = _token(rt, "rep", expires_at=clock.now() + dt.timedelta(hours=1))
        assert _get(app, token).status_code == 200
        clock.advance(minutes=59)
        assert _get(app, token).status_code == 200  # cached, still valid
        clock.advance(minutes=2)
        resp = _get(app, token)
        assert resp.status_code == 401 and "expired" in resp.get_json()["error"]["message"]
        with pytest.raises(Exception, match="expired already"), rt.unit(Actor.system()) as uow:
            users.create_token(uow, "rep", "past", expires_at=clock.now() - dt.timedelta(seconds=1))
    finally:
        rt.close()


def _crm(*args: str, db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "CRM_DATABASE_URL": db_url})


def test_cli_token_expires_and_revoke(applied: str, manufacturing_folder: Path) -> None:
    cwd = manufacturing_folder
    r = _crm("token", "create", "rep", "--expires", "90d", db_url=applied, cwd=cwd)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert "valid until" in r.stdout and token.startswith("crm_")
    engine = make_engine(applied)
    try:
        with engine.connect() as conn:
            until = conn.execute(select(crm_api_tokens.c.expires_at).where(
                crm_api_tokens.c.prefix == token[:12])).scalar_one()
    finally:
        engine.dispose()
    days = (until - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    assert 89.9 < days <= 90
    bad = _crm("token", "create", "rep", "--expires", "soon", db_url=applied, cwd=cwd)
    assert bad.returncode != 0 and "not a duration" in bad.stderr and "Traceback" not in bad.stderr
    r = _crm("token", "revoke", token[:12], db_url=applied, cwd=cwd)
    assert r.returncode == 0 and "revoked 1 token" in r.stdout, r.stderr
    again = _crm("token", "revoke", token[:12], db_url=applied, cwd=cwd)
    assert again.returncode == 1 and "no active token" in again.stderr


def test_location_comes_from_the_public_url_never_the_host_header(applied: str) -> None:
    rt = Runtime.open(applied)
    try:
        token = _token(rt, "rep")
        headers = {"Authorization": f"Bearer {token}", "Host": "evil.example"}
        body = {"company": "Loc Co", "phone": "13800000000"}
        resp = create_app(rt).test_client().post(LEADS, json=body, headers=headers)
        assert resp.status_code == 201
        assert resp.headers["Location"] == f"/api/v1/records/lead/{resp.get_json()['id']}"
        public = create_app(rt, public_url="https://crm.example.com/")
        resp = public.test_client().post(LEADS, json=body, headers=headers)
        assert resp.headers["Location"] == f"https://crm.example.com/api/v1/records/lead/{resp.get_json()['id']}"
    finally:
        rt.close()


def test_a_read_only_database_says_so(tmp_path: Path, manufacturing_folder: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ro.db'}"
    apply_folder_quietly(manufacturing_folder, url)
    rw = Runtime.open(url)
    try:
        with rw.unit(Actor.system()) as uow:
            users.create_user(uow, "rep", roles=["sales"])
        token = _token(rw, "rep")
    finally:
        rw.close()
    rt = Runtime.open(f"sqlite:///file:{tmp_path / 'ro.db'}?mode=ro&uri=true")
    try:
        app = create_app(rt)
        assert _get(app, token).status_code == 200  # reading works
        resp = app.test_client().post(LEADS, json={"company": "RO", "phone": "13800000000"},
                                      headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 503
        error = resp.get_json()["error"]
        assert error["code"] == "database_read_only" and "read-only" in error["message"]
        assert "busy" not in error["message"]
    finally:
        rt.close()
