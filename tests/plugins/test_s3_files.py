"""The bundled S3 plugin (plugins/crm-s3-files), installed as a package, against a real S3-compatible
server on this machine (moto's server mode: the S3 HTTP API, spoken by boto3 over a socket): attachments
uploaded, listed, downloaded and deleted through the REST API land in the bucket under the engine's keys;
a missing bucket, option or variable is a clear 503.  Both databases."""

from __future__ import annotations

import hashlib
import io
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.api import create_app
from engine.plugins import compile_folder, installed_plugins
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.runtime import Runtime
from engine.runtime.schema.operations import apply_workspace

BUCKET = "acme-crm"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"0" * 300_000 + b"\n%%EOF"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """An S3-compatible HTTP server for this module; its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client of the server, with the variables the workspace names set and the bucket made empty."""
    import boto3

    monkeypatch.setenv("S3_ENDPOINT", s3_server)
    monkeypatch.setenv("S3_ACCESS_KEY", "crm-test")
    monkeypatch.setenv("S3_SECRET_KEY", "crm-test-secret")
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="crm-test",
                          aws_secret_access_key="crm-test-secret")
    names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    if BUCKET in names:
        for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    else:
        client.create_bucket(Bucket=BUCKET)
    return client


def _serve(db_url: str, folder: Path, attachments: str) -> tuple[Runtime, Any, dict[str, str]]:
    folder.mkdir(parents=True)
    (folder / "workspace.yaml").write_text(textwrap.dedent(f"""\
        workspace: s3test
        extends: base
        plugins: [s3_files]
        attachments: {attachments}
        """), encoding="utf-8")
    ws, host = compile_folder(folder)
    assert host.names == ("s3_files",)
    apply_workspace(ws, db_url, yes=True, allow_destructive=False, purge=False, message="s3", author="t",
                    echo=lambda _s: None, confirm=lambda _q: True, export_dir=folder / "exports")
    runtime = Runtime.open(db_url)
    with runtime.unit(Actor.system()) as uow:
        users.create_user(uow, "admin", roles=["admin"])
        token = users.create_token(uow, "admin", "t")
    return runtime, create_app(runtime).test_client(), {"Authorization": f"Bearer {token}"}


def _upload(client: Any, auth: dict[str, str], rid: int, data: bytes, name: str) -> Any:
    return client.post(f"/api/v1/records/account/{rid}/files", headers=auth, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), name, "application/octet-stream")})


OPTIONS = ("{store: s3, options: {bucket: acme-crm, prefix: crm/, endpoint_env: S3_ENDPOINT, "
           "access_key_env: S3_ACCESS_KEY, secret_key_env: S3_SECRET_KEY}}")


def test_the_plugin_is_installed_as_a_package() -> None:
    assert "s3_files" in installed_plugins(), "pip install -e plugins/crm-s3-files (.ci/run does)"


def test_files_go_to_the_bucket_and_come_back(db_url: str, tmp_path: Path, s3: Any) -> None:
    runtime, client, auth = _serve(db_url, tmp_path / "ws", OPTIONS)
    try:
        account = client.post("/api/v1/records/account", json={"name": "Bucket Ltd"}, headers=auth).get_json()
        made = _upload(client, auth, account["id"], PDF, "../../offer.pdf")
        assert made.status_code == 201, made.get_json()
        body = made.get_json()
        assert (body["name"], body["content_type"], body["size"]) == ("offer.pdf", "application/pdf", len(PDF))
        assert body["sha256"] == hashlib.sha256(PDF).hexdigest()
        [obj] = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
        assert obj["Key"].startswith(f"crm/account/{account['id']}/") and obj["Size"] == len(PDF)
        assert s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read() == PDF  # the bytes, not a copy
        url = f"/api/v1/records/account/{account['id']}/files/{body['id']}"
        got = client.get(f"{url}/content", headers=auth)
        assert got.status_code == 200 and got.get_data() == PDF and got.headers["ETag"].strip('"') == body["sha256"]
        got.close()
        listed = client.get(f"/api/v1/records/account/{account['id']}/files", headers=auth).get_json()
        assert [f["id"] for f in listed["items"]] == [body["id"]]
        assert client.delete(url, headers=auth).status_code == 204
        assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # removed once the unit committed
        assert client.get(f"{url}/content", headers=auth).status_code == 404
    finally:
        runtime.close()


def test_a_file_over_the_limit_leaves_nothing_in_the_bucket(db_url: str, tmp_path: Path, s3: Any) -> None:
    runtime, client, auth = _serve(db_url, tmp_path / "ws", OPTIONS.replace("{store: s3,", "{max_size: 100000, "
                                                                                           "store: s3,"))
    try:
        account = client.post("/api/v1/records/account", json={"name": "Big Ltd"}, headers=auth).get_json()
        refused = _upload(client, auth, account["id"], PDF, "big.pdf")
        assert refused.status_code == 413, refused.get_json()
        assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    finally:
        runtime.close()


@pytest.mark.parametrize(("options", "words"), [
    ("{store: s3, options: {endpoint_env: S3_ENDPOINT}}", "needs attachments.options.bucket"),
    ("{store: s3, options: {bucket: no-such-bucket, endpoint_env: S3_ENDPOINT, access_key_env: S3_ACCESS_KEY, "
     "secret_key_env: S3_SECRET_KEY}}", "the bucket 'no-such-bucket' does not exist"),
    ("{store: s3, options: {bucket: acme-crm, endpoint_env: S3_NOT_SET}}", "S3_NOT_SET"),
    ("{store: s3, options: {bucket: acme-crm, buckett: x}}", "unknown keys for the s3 store: buckett"),
    ("{store: s3, options: {bucket: acme-crm, endpoint_env: S3_NO_SCHEME}}", "('minio:9000') is not a URL"),
    ("{store: s3, options: {bucket: acme-crm, region: 'cn north 1', endpoint_env: S3_ENDPOINT}}",
     "settings are refused"),
    ("{store: s3, options: {bucket: Bad_Bucket!, endpoint_env: S3_ENDPOINT, access_key_env: S3_ACCESS_KEY, "
     "secret_key_env: S3_SECRET_KEY}}", "'Bad_Bucket!' is not a valid bucket name"),
    ("{store: s3, options: {bucket: acme-crm, endpoint_env: S3_ENDPOINT}}", "found no credentials"),
])
def test_a_wrong_setting_is_a_clear_503(db_url: str, tmp_path: Path, s3: Any, options: str, words: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_NO_SCHEME", "minio:9000")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    runtime, client, auth = _serve(db_url, tmp_path / "ws", options)
    try:
        account = client.post("/api/v1/records/account", json={"name": "Wrong Ltd"}, headers=auth).get_json()
        refused = _upload(client, auth, account["id"], PDF, "offer.pdf")
        assert refused.status_code == 503, refused.get_json()
        error = refused.get_json()["error"]
        assert error["code"] == "file_store" and words in error["message"], error
        assert error["details"]["hint"]
    finally:
        runtime.close()


def test_a_removal_stands_when_the_store_cannot_delete_the_bytes(db_url: str, tmp_path: Path, s3: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The removal has committed when the bytes are deleted: a store that fails then leaves them behind
    (logged), and the answer is still 204 -- the file is gone from the record."""
    runtime, client, auth = _serve(db_url, tmp_path / "ws", OPTIONS)
    try:
        account = client.post("/api/v1/records/account", json={"name": "Gone Ltd"}, headers=auth).get_json()
        made = _upload(client, auth, account["id"], PDF, "offer.pdf").get_json()
    finally:
        runtime.close()
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{_free_port()}")  # the server is unreachable now
    again = Runtime.open(db_url)
    try:
        other = create_app(again).test_client()
        url = f"/api/v1/records/account/{account['id']}/files/{made['id']}"
        assert other.delete(url, headers=auth).status_code == 204
        assert other.get(url, headers=auth).status_code == 404
        assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 1  # the bytes stayed behind
    finally:
        again.close()


@pytest.mark.parametrize(("plugins", "store", "words"), [
    ("[s3_files]", "s4", "did you mean 's3'?"),
    ("[]", "s3", "stores: local"),
])
def test_a_store_no_enabled_plugin_offers_is_a_located_config_error(tmp_path: Path, plugins: str, store: str,
                                                                    words: str) -> None:
    from engine.errors import ConfigError

    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "workspace.yaml").write_text(f"workspace: s3test\nextends: base\nplugins: {plugins}\n"
                                           f"attachments: {{store: {store}, options: {{bucket: acme-crm}}}}\n",
                                           encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        compile_folder(folder)
    text = str(info.value)
    assert "workspace.yaml:4:" in text and f"attachments.store {store!r} is not a file store" in text, text
    assert words in text, text
