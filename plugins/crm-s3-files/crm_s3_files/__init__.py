"""A crm-engine plugin keeping attachment bytes in an S3-compatible bucket (``pip install -e plugins/crm-s3-files``).

A workspace enables it and chooses the store in ``workspace.yaml``::

    plugins: [s3_files]
    attachments:
      store: s3
      options: {bucket: acme-crm, prefix: crm/, endpoint_env: S3_ENDPOINT, region: cn-north-1}

Options (``attachments.options``): ``bucket`` (required); ``prefix`` put before every key (default none);
``endpoint_env`` the environment variable holding the endpoint URL of a server that is not AWS (MinIO,
Ceph, a cloud's S3-compatible service); ``region`` (default ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else
``us-east-1``); ``access_key_env`` / ``secret_key_env`` the environment variables holding the credentials
(default: boto3's own lookup -- ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, a profile, an
instance role).  Credentials are never written in YAML.

Keys are the engine's (``<entity>/<record id>/<random>``).  An upload streams the bytes (multipart above
8 MB); a download streams the object's body; a removal deletes the object once the engine's unit has
committed.  A missing option, variable, bucket or object is a ``FileStoreError`` (503 ``file_store``)
that says which and how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from engine.errors import FileStoreError
from engine.plugins import hookimpl

NAME = "s3"
_OPTIONS = ("bucket", "prefix", "endpoint_env", "region", "access_key_env", "secret_key_env")


def _text(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise FileStoreError(f"attachments.options.{key} must be text", hint=f"e.g. {key}: {_EXAMPLE[key]}")
    return value.strip()


_EXAMPLE = {"bucket": "acme-crm", "prefix": "crm/", "endpoint_env": "S3_ENDPOINT", "region": "cn-north-1",
            "access_key_env": "S3_ACCESS_KEY", "secret_key_env": "S3_SECRET_KEY"}


def _env(name: str, option: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise FileStoreError(f"the environment variable {name} (attachments.options.{option}) is not set",
                             hint=f"set {name} for every server and worker process")
    return value


class _Counting:
    """A read-only view of a stream that counts the bytes handed on (what ``put`` returns)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.count = stream, 0

    def read(self, n: int = -1) -> bytes:
        block = self.stream.read(n)
        self.count += len(block)
        return block


@dataclass
class S3FileStore:
    """Objects ``<prefix><key>`` in one bucket (see the module docstring)."""

    client: Any
    bucket: str
    prefix: str = ""
    name: str = NAME
    _config: Any = field(default=None, repr=False)

    def _key(self, key: str) -> str:
        from engine.runtime.collab.stores import check_key

        return self.prefix + check_key(key)

    def put(self, key: str, stream: BinaryIO) -> int:
        counting = _Counting(stream)
        try:
            self.client.upload_fileobj(counting, self.bucket, self._key(key), Config=self._config)
        except Exception as e:  # botocore's errors (no bucket, refused credentials, unreachable server)
            raise _store_error(e, self.bucket, "store the file") from e
        return counting.count

    def open(self, key: str) -> BinaryIO:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except Exception as e:
            raise _store_error(e, self.bucket, "read the file") from e
        return body  # type: ignore[no-any-return]

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            raise _store_error(e, self.bucket, "delete the file") from e


def _store_error(e: Exception, bucket: str, what: str) -> FileStoreError:
    kind = type(e).__name__
    if kind == "NoCredentialsError":
        return FileStoreError("the s3 store found no credentials",
                              hint="set attachments.options.access_key_env and secret_key_env (and those variables), "
                                   "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if kind == "ParamValidationError":
        return FileStoreError(f"{bucket!r} is not a valid bucket name",
                              hint="bucket names are 3-63 lowercase letters, digits, dots and hyphens")
    code = str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) if hasattr(e, "response") else ""
    if code in ("NoSuchBucket",):
        return FileStoreError(f"the bucket {bucket!r} does not exist", hint="create it, or correct "
                              "attachments.options.bucket in workspace.yaml")
    if code in ("NoSuchKey", "404"):
        return FileStoreError("the file's bytes are gone from the bucket", hint="restore the object from the "
                              "bucket's backup or versioning")
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return FileStoreError(f"the bucket {bucket!r} refused the credentials ({code})",
                              hint="check the access key and secret the server runs with")
    return FileStoreError(f"could not {what} in the bucket {bucket!r}: {type(e).__name__}: {e}",
                          hint="check attachments.options.endpoint_env and that the server is reachable")


@dataclass(frozen=True)
class S3StoreFactory:
    """The ``s3`` store kind (``crm_file_stores``)."""

    name: str = NAME

    def open(self, settings: Any, runtime: Any) -> S3FileStore:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        options = dict(settings.options or {})
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise FileStoreError(f"attachments.options has unknown keys for the s3 store: {', '.join(unknown)}",
                                 hint=f"known: {', '.join(_OPTIONS)}")
        bucket = _text(options, "bucket")
        if bucket is None:
            raise FileStoreError("the s3 store needs attachments.options.bucket",
                                 hint="e.g. attachments: {store: s3, options: {bucket: acme-crm}}")
        kwargs: dict[str, Any] = {}
        endpoint_env = _text(options, "endpoint_env")
        if endpoint_env:
            kwargs["endpoint_url"] = _env(endpoint_env, "endpoint_env")
        region = _text(options, "region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        kwargs["region_name"] = region or "us-east-1"
        for option, arg in (("access_key_env", "aws_access_key_id"), ("secret_key_env", "aws_secret_access_key")):
            name = _text(options, option)
            if name:
                kwargs[arg] = _env(name, option)
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                        s3={"addressing_style": "path"} if endpoint_env else None)
        endpoint = kwargs.get("endpoint_url")
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise FileStoreError(f"{endpoint_env} ({endpoint!r}) is not a URL",
                                 hint="give the scheme too, e.g. http://minio:9000")
        try:
            client = boto3.session.Session().client("s3", config=config, **kwargs)
        except Exception as e:  # botocore: a malformed endpoint or region
            raise FileStoreError(f"the s3 store's settings are refused: {type(e).__name__}: {e}",
                                 hint="check attachments.options.region (e.g. cn-north-1) and the endpoint URL"
                                 ) from e
        transfer = TransferConfig(multipart_threshold=8 * 1024 * 1024, use_threads=False)
        return S3FileStore(client, bucket, _text(options, "prefix") or "", _config=transfer)


@hookimpl
def crm_file_stores() -> list[Any]:
    return [S3StoreFactory()]
