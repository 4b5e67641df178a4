"""Attachments through the API on SQLite and PostgreSQL: upload, list, download, delete; the size limit
(413), the type sniffed from the bytes (415 for a refused one), sanitised names, the read check (404)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.collab_world import add_users, files_under, make
from tests.api.conftest import ApiEnv

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64
PDF_HEAD = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"


@pytest.fixture(scope="module")
def files_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The local store's folder for this module (CRM_FILES_DIR: PostgreSQL has no database folder)."""
    root = tmp_path_factory.mktemp("files")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_FILES_DIR", str(root))
        yield root


@pytest.fixture
def env(api_env: ApiEnv, files_root: Path) -> ApiEnv:
    add_users(api_env)
    return api_env


def pdf(size: int) -> bytes:
    return PDF_HEAD + b"0" * (size - len(PDF_HEAD) - 6) + b"\n%%EOF"


def done(resp: Any) -> Any:
    """The response read whole and closed, and the test client's spooled request body with it (werkzeug's
    test client leaves a large multipart body's temporary file open)."""
    resp.get_data()
    resp.close()
    body = resp.request.environ.get("wsgi.input")
    if body is not None:
        body.close()
    return resp


def upload(client: Any, env: ApiEnv, user: str, entity: str, rid: int, data: bytes, name: str,
           content_type: str = "application/octet-stream") -> Any:
    return done(client.post(f"/api/v1/records/{entity}/{rid}/files", headers=env.headers(user),
                            data={"file": (io.BytesIO(data), name, content_type)}, content_type="multipart/form-data"))


def fetch(client: Any, env: ApiEnv, user: str, url: str) -> Any:
    return done(client.get(url, headers=env.headers(user)))


def test_a_5_mb_pdf_is_kept_with_its_sniffed_type_size_and_sha256(client: Any, env: ApiEnv, files_root: Path):
    acc = make(client, env, "rep1", "account", {"name": "Suzhou Precision"})
    data = pdf(5 * 1000 * 1000)
    resp = upload(client, env, "rep1", "account", acc["id"], data, "offer.pdf", "text/html")
    assert resp.status_code == 201, resp.get_json()
    made = resp.get_json()
    assert made["content_type"] == "application/pdf"  # sniffed, not the client's text/html
    assert made["size"] == len(data) and made["sha256"] == hashlib.sha256(data).hexdigest()
    assert made["name"] == "offer.pdf" and made["created_by_name"] == "rep1"
    assert resp.headers["Location"].endswith(f"/records/account/{acc['id']}/files/{made['id']}")

    got = fetch(client, env, "rep1", f"/api/v1/records/account/{acc['id']}/files/{made['id']}/content")
    assert got.status_code == 200 and got.data == data
    assert got.mimetype == "application/pdf" and got.headers["X-Content-Type-Options"] == "nosniff"
    assert "attachment" in got.headers["Content-Disposition"] and "offer.pdf" in got.headers["Content-Disposition"]
    listed = client.get(f"/api/v1/records/account/{acc['id']}/files", headers=env.headers("rep1")).get_json()
    assert [f["id"] for f in listed["items"]] == [made["id"]]
    history = client.get(f"/api/v1/records/account/{acc['id']}/history", headers=env.headers("rep1")).get_json()
    assert any(e["action"] == "file_upload" and e["new"]["sha256"] == made["sha256"] for e in history["items"])
    # the manager of the owner's team reads it too
    assert fetch(client, env, "boss", f"/api/v1/records/account/{acc['id']}/files/{made['id']}/content").data == data


def test_a_50_mb_upload_is_refused_with_413_and_leaves_nothing(client: Any, env: ApiEnv, files_root: Path):
    acc = make(client, env, "rep1", "account", {"name": "Big files Ltd"})
    before = set(files_under(files_root))
    resp = upload(client, env, "rep1", "account", acc["id"], pdf(50 * 1000 * 1000), "huge.pdf")
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "file_too_large"
    assert resp.get_json()["error"]["details"]["max_size"] == 25 * 1000 * 1000
    assert set(files_under(files_root)) == before
    assert client.get(f"/api/v1/records/account/{acc['id']}/files", headers=env.headers("rep1")).get_json() == {
        "items": []}


def test_a_file_just_over_the_limit_within_the_multipart_slack_is_refused_too(client: Any, env: ApiEnv,
                                                                                files_root: Path):
    acc = make(client, env, "rep1", "account", {"name": "Edge Ltd"})
    before = set(files_under(files_root))
    resp = upload(client, env, "rep1", "account", acc["id"], pdf(25 * 1000 * 1000 + 10), "edge.pdf")
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "file_too_large"
    assert set(files_under(files_root)) == before


def test_names_are_sanitised_and_bytes_stay_in_the_store(client: Any, env: ApiEnv, files_root: Path):
    acc = make(client, env, "rep1", "account", {"name": "Traversal Inc"})
    resp = upload(client, env, "rep1", "account", acc["id"], b"root:x:0:0:root:/root:/bin/bash\n",
                  "../../etc/passwd")
    assert resp.status_code == 201, resp.get_json()
    made = resp.get_json()
    assert made["name"] == "passwd" and made["content_type"] == "text/plain"
    for path in files_under(files_root):
        assert path.resolve().is_relative_to(files_root.resolve())
    odd = upload(client, env, "rep1", "account", acc["id"], b"a,b\n1,2\n", "..\\..\\x\u0000\u202e\ty.csv").get_json()
    assert odd["name"] == "x y.csv" and odd["content_type"] == "text/csv"


def test_the_type_comes_from_the_bytes_and_refused_types_get_415(client: Any, env: ApiEnv):
    acc = make(client, env, "rep1", "account", {"name": "Types Co"})
    png = upload(client, env, "rep1", "account", acc["id"], PNG, "scan.pdf", "application/pdf").get_json()
    assert png["content_type"] == "image/png"
    exe = upload(client, env, "rep1", "account", acc["id"], b"MZ\x90\x00" + b"\x00" * 200, "report.pdf")
    assert exe.status_code == 415 and exe.get_json()["error"]["code"] == "file_type_refused"
    not_multipart = client.post(f"/api/v1/records/account/{acc['id']}/files", headers=env.headers("rep1"),
                                json={"file": "x"})
    assert not_multipart.status_code == 415
    no_part = done(client.post(f"/api/v1/records/account/{acc['id']}/files", headers=env.headers("rep1"),
                               data={"other": (io.BytesIO(b"x"), "x.txt")}, content_type="multipart/form-data"))
    assert no_part.status_code == 400


def test_a_user_who_cannot_read_the_record_gets_404_on_its_files(client: Any, env: ApiEnv):
    acc = make(client, env, "rep1", "account", {"name": "Private Ltd"})
    made = upload(client, env, "rep1", "account", acc["id"], pdf(2000), "secret.pdf").get_json()
    base = f"/api/v1/records/account/{acc['id']}/files"
    for user in ("rep3", "rep2"):  # another team; the same team but own scope
        h = env.headers(user)
        assert fetch(client, env, user, f"{base}/{made['id']}/content").status_code == 404
        assert client.get(f"{base}/{made['id']}", headers=h).status_code == 404
        assert client.get(base, headers=h).status_code == 404
        assert client.delete(f"{base}/{made['id']}", headers=h).status_code == 404
        assert upload(client, env, user, "account", acc["id"], pdf(2000), "x.pdf").status_code == 404
    # a file id of another record is not found through this one
    other = make(client, env, "rep3", "account", {"name": "Other Ltd"})
    assert fetch(client, env, "rep3", f"/api/v1/records/account/{other['id']}/files/{made['id']}/content"
                 ).status_code == 404
    # svc1 may read accounts but not update them: reading yes, attaching no
    assert fetch(client, env, "svc1", f"{base}/{made['id']}/content").status_code == 200
    assert upload(client, env, "svc1", "account", acc["id"], pdf(2000), "x.pdf").status_code == 403


def test_delete_removes_the_file_and_its_bytes(client: Any, env: ApiEnv, files_root: Path):
    acc = make(client, env, "rep1", "account", {"name": "Delete Me Ltd"})
    made = upload(client, env, "rep1", "account", acc["id"], pdf(3000), "old.pdf").get_json()
    before = set(files_under(files_root))
    url = f"/api/v1/records/account/{acc['id']}/files/{made['id']}"
    assert client.delete(url, headers=env.headers("svc1")).status_code == 403  # reads, may not update
    assert client.delete(url, headers=env.headers("rep1")).status_code == 204
    assert fetch(client, env, "rep1", f"{url}/content").status_code == 404
    assert len(before - set(files_under(files_root))) == 1
    history = client.get(f"/api/v1/records/account/{acc['id']}/history", headers=env.headers("rep1")).get_json()
    assert [e["action"] for e in history["items"]][-2:] == ["file_upload", "file_delete"]


def test_files_are_in_the_openapi_document(client: Any, env: ApiEnv):
    doc = client.get("/api/v1/openapi.json", headers=env.headers("rep1")).get_json()
    op = doc["paths"]["/records/{entity}/{record_id}/files"]["post"]
    assert "multipart/form-data" in op["requestBody"]["content"] and "413" in op["responses"]
    assert "/records/{entity}/{record_id}/files/{file_id}/content" in doc["paths"]


def test_a_record_waiting_for_approval_takes_files_but_keeps_them(client: Any, env: ApiEnv, files_root: Path):
    """The quote flow locks its quote: a file may be added while it waits, none removed (the approvers were
    shown it) -- until the request is withdrawn."""
    acc = make(client, env, "rep1", "account", {"name": "Locked Files Ltd"})
    quote = make(client, env, "rep1", "quote", {"account": acc["id"], "discount_rate": 0.3})
    assert quote["approval_status"] == "pending"
    base = f"/api/v1/records/quote/{quote['id']}/files"
    first = upload(client, env, "rep1", "quote", quote["id"], pdf(2000), "offer.pdf")
    assert first.status_code == 201, first.get_json()
    refused = done(client.delete(f"{base}/{first.get_json()['id']}", headers=env.headers("rep1")))
    assert refused.status_code == 423 and refused.get_json()["error"]["code"] == "locked", refused.get_json()
    assert "withdraw" in refused.get_json()["error"]["details"]["hint"]
    assert fetch(client, env, "rep1", f"{base}/{first.get_json()['id']}/content").status_code == 200
    approvals = client.get(f"/api/v1/records/quote/{quote['id']}/approvals", headers=env.headers("rep1")).get_json()
    withdrawn = client.post(f"/api/v1/approvals/instances/{approvals['items'][0]['id']}/withdraw", json={},
                            headers=env.headers("rep1"))
    assert withdrawn.status_code == 200, withdrawn.get_json()
    assert done(client.delete(f"{base}/{first.get_json()['id']}", headers=env.headers("rep1"))).status_code == 204
