"""Where attachment bytes live: the :class:`FileStore` interface and the built-in ``local`` store.

A store keeps blobs under keys the engine makes (``<entity>/<record id>/<random hex>``, never a user's
file name).  The built-in store writes files into a folder; a plugin adds another store (an S3-compatible
bucket, say) by returning a :class:`StoreFactory` from the ``crm_file_stores`` hook, and a workspace
chooses it with ``attachments: {store: <name>, options: {...}}`` (docs/attachments.md).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from engine.dsl.model import AttachmentSettings
from engine.errors import FileStoreError

#: the environment variable naming the local store's folder (wins over ``attachments.path``)
FILES_DIR_ENV = "CRM_FILES_DIR"
CHUNK = 1024 * 1024
_KEY = re.compile(r"^[a-z0-9_]+(/[A-Za-z0-9_-]+)*$")


class FileStore(Protocol):
    """What the engine needs of a place that keeps attachment bytes.

    ``put`` stores the whole stream under ``key`` (replacing nothing: keys are new) and returns the number
    of bytes written; ``open`` returns a readable binary stream of the bytes (FileStoreError when gone);
    ``delete`` removes them (no error when already gone).  Implementations must be safe to call from
    several threads and processes at once.
    """

    @property
    def name(self) -> str: ...

    def put(self, key: str, stream: BinaryIO) -> int: ...

    def open(self, key: str) -> BinaryIO: ...

    def delete(self, key: str) -> None: ...


class StoreFactory(Protocol):
    """A store kind a plugin registers (``crm_file_stores``): ``open(settings, runtime)`` returns the store
    for one revision's ``attachments:`` settings (``settings.options`` holds the store's own settings)."""

    @property
    def name(self) -> str: ...

    def open(self, settings: AttachmentSettings, runtime: Any) -> FileStore: ...


def check_key(key: str) -> str:
    """``key`` when it is one the engine makes (no ``..``, no absolute path), else FileStoreError."""
    if not _KEY.match(key) or len(key) > 300:
        raise FileStoreError(f"{key!r} is not a file key", hint="keys are made by the engine, never by a client")
    return key


@dataclass(frozen=True)
class LocalFileStore:
    """Files in a folder: ``<root>/<key>``, written to a temporary file first and renamed into place (a
    crash never leaves half a file under a key)."""

    root: Path
    name: str = "local"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, stream: BinaryIO) -> int:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, CHUNK)
                size = out.tell()
            os.replace(tmp, target)
        except OSError as e:
            raise FileStoreError(f"cannot write the file into {self.root}: {e.strerror or e}",
                                 hint=f"make the folder writable, or point {FILES_DIR_ENV} elsewhere") from e
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except OSError as e:
            raise FileStoreError(f"the stored file {key!r} cannot be read: {e.strerror or e}",
                                 hint=f"check the folder {self.root}") from e

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as e:
            raise FileStoreError(f"cannot delete the stored file {key!r}: {e.strerror or e}") from e


@dataclass(frozen=True)
class LocalStoreFactory:
    """The ``local`` store kind (see :func:`local_root` for its folder)."""

    name: str = "local"

    def open(self, settings: AttachmentSettings, runtime: Any) -> FileStore:
        return LocalFileStore(local_root(settings, runtime))


def local_root(settings: AttachmentSettings, runtime: Any) -> Path:
    """The local store's folder: ``$CRM_FILES_DIR``, else ``attachments.path`` (relative: to the SQLite
    database's folder), else ``<database>-files`` beside a SQLite database file; FileStoreError otherwise
    (a PostgreSQL deployment names a folder every server shares)."""
    env = os.environ.get(FILES_DIR_ENV)
    if env:
        return Path(env)
    db = _sqlite_file(runtime)
    if settings.path:
        path = Path(settings.path).expanduser()
        return path if path.is_absolute() or db is None else db.parent / path
    if db is not None:
        return db.parent / f"{db.stem}-files"
    raise FileStoreError("attachments have no folder to go to",
                         hint=f"set attachments: {{path: /srv/crm/files}} in workspace.yaml or {FILES_DIR_ENV}")


def _sqlite_file(runtime: Any) -> Path | None:
    url = runtime.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve()


def chunks(stream: BinaryIO) -> Iterator[bytes]:
    """The stream's bytes in chunks, then closes it (a download's response body)."""
    try:
        while block := stream.read(CHUNK):
            yield block
    finally:
        stream.close()
