"""Attachments: files on any record (``crm_files``), their bytes in a :class:`~.stores.FileStore`.

Upload needs update access to the record, list and download read access (NotFound otherwise, as for the
record), delete the uploader or update access.  The type is sniffed from the bytes (``filetype``; text
when the bytes are UTF-8 without NULs) and checked against ``attachments.allowed_types``; the name is
reduced to a plain file name; the size, the SHA-256 and an audit row on the record are kept.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import filetype
from sqlalchemy import select, update

from engine.errors import FileStoreError, FileTooLarge, FileTypeRefused, PermissionDenied
from engine.runtime.collab import access
from engine.runtime.collab.stores import FileStore
from engine.runtime.engine_tables import crm_files, crm_users
from engine.runtime.records import journal

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

SNIFF_BYTES = 8192
MAX_NAME = 200
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
#: text types told apart by the name's extension once the bytes are known to be text
_TEXT_BY_SUFFIX = {".csv": "text/csv"}


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What the first bytes of a file say it is."""

    content_type: str
    extension: str | None


def sanitise_name(raw: str | None) -> str:
    """A plain file name: the last path part only, no control or format characters, no leading dots,
    no reserved device names, at most :data:`MAX_NAME` characters (the extension kept); ``file`` if empty."""
    text = unicodedata.normalize("NFC", str(raw or ""))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(" " if ch.isspace() else ch for ch in text if unicodedata.category(ch)[0] != "C"
                   or ch.isspace())
    text = " ".join(text.split()).strip(" .")
    if text.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        text = f"_{text}"
    if len(text) > MAX_NAME:
        stem, dot, ext = text.rpartition(".")
        text = (stem[: MAX_NAME - len(ext) - 1] + dot + ext) if dot and len(ext) <= 16 else text[:MAX_NAME]
    return text or "file"


def sniff(head: bytes, name: str) -> Sniffed:
    """The content type of a file from its first bytes (the client's claim is never used)."""
    kind = filetype.guess(head) if head else None
    if kind is not None:
        return Sniffed(kind.mime, kind.extension)
    if b"\0" not in head and _utf8_prefix(head):
        suffix = name[name.rfind("."):].lower() if "." in name else ""
        return Sniffed(_TEXT_BY_SUFFIX.get(suffix, "text/plain"), suffix.lstrip(".") or "txt")
    return Sniffed("application/octet-stream", None)


def _utf8_prefix(head: bytes) -> bool:
    """Whether ``head`` is UTF-8 text (a character cut at the end of the sniffed bytes allowed)."""
    for cut in range(4):
        try:
            head[: len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def allowed(content_type: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(content_type, p) for p in patterns)


def file_store(uow: UnitOfWork) -> FileStore:
    """The revision's file store (``attachments.store``), opened once per revision."""
    settings = uow.workspace.attachments

    def make() -> FileStore:
        factories = uow.state.host.file_stores()
        factory = factories.get(settings.store)
        if factory is None:
            raise FileStoreError(f"there is no file store {settings.store!r} (known: {', '.join(factories)})",
                                 hint="install the plugin that provides it and enable it in workspace.yaml")
        return factory.open(settings, uow.runtime)

    return uow.state.memo("file_store", settings.store, make)  # type: ignore[no-any-return]


def upload(uow: UnitOfWork, entity: str, record_id: int, name: str | None, stream: BinaryIO) -> dict[str, Any]:
    """Attach the bytes of ``stream`` to the record; the file's row as :func:`listing` shows it."""
    record = access.readable(uow, entity, record_id)
    access.require_update(uow, entity, record, "attach files to")
    _guarded(uow, entity, record_id, "file_upload")
    settings = uow.workspace.attachments
    clean = sanitise_name(name)
    head = stream.read(SNIFF_BYTES)
    kind = sniff(head, clean)
    if not allowed(kind.content_type, settings.allowed_types):
        raise FileTypeRefused(f"files of type {kind.content_type} are not accepted here",
                              details={"content_type": kind.content_type, "allowed": list(settings.allowed_types)},
                              hint="add the type to attachments.allowed_types in workspace.yaml")
    stream.seek(0)
    hashing = _Hashing(stream, settings.max_size)
    store = file_store(uow)
    key = f"{entity}/{record_id}/{secrets.token_hex(16)}"
    size = store.put(key, hashing)  # type: ignore[arg-type]
    try:
        if hashing.too_large:
            raise FileTooLarge(f"the file is larger than the {_size_text(settings.max_size)} attachments may be",
                               details={"max_size": settings.max_size},
                               hint="attachments.max_size in workspace.yaml sets the limit")
        now = uow.clock.now()
        values = {"entity": entity, "record_id": record_id, "name": clean, "content_type": kind.content_type,
                  "size": size, "sha256": hashing.digest.hexdigest(), "store": store.name, "storage_key": key,
                  "created_by": uow.actor.user_id, "created_at": now}
        file_id = int(uow.conn.execute(crm_files.insert().values(values)).inserted_primary_key[0])  # type: ignore[index]
        journal.write(uow, now, [journal.event(entity, record_id, "file_upload", _audit(file_id, values))])
    except BaseException:
        store.delete(key)
        raise
    return get(uow, entity, record_id, file_id)


class _Hashing:
    """A read-through stream that hashes what it hands on and stops past ``limit`` bytes."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit, self.seen, self.too_large = stream, limit, 0, False
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self.too_large:
            return b""
        block = self.stream.read(n)
        self.seen += len(block)
        if self.seen > self.limit:
            self.too_large = True
            return b""
        self.digest.update(block)
        return block


def _guarded(uow: UnitOfWork, entity: str, record_id: int, action: str) -> None:
    """The write steps' optional ``before_attach`` (a record waiting for approval keeps its files)."""
    for step in uow.write_steps(entity):
        check = getattr(step, "before_attach", None)
        if check is not None:
            check(uow, entity, record_id, action)


def _audit(file_id: int, values: Mapping[str, Any]) -> dict[str, Any]:
    return {"file_id": file_id, "file_name": values["name"], "content_type": values["content_type"],
            "size": values["size"], "sha256": values["sha256"]}


def _size_text(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def _out(row: Any) -> dict[str, Any]:
    return {"id": row.id, "entity": row.entity, "record_id": row.record_id, "name": row.name,
            "content_type": row.content_type, "size": row.size, "sha256": row.sha256,
            "created_by": row.created_by, "created_by_name": row.username, "created_at": row.created_at}


def _select() -> Any:
    f, u = crm_files, crm_users
    return select(f, u.c.username).outerjoin(u, u.c.id == f.c.created_by).where(f.c.deleted_at.is_(None))


def listing(uow: UnitOfWork, entity: str, record_id: int) -> list[dict[str, Any]]:
    """The record's live files, newest first (NotFound when the caller cannot read the record)."""
    access.readable(uow, entity, record_id)
    f = crm_files
    rows = uow.conn.execute(_select().where(f.c.entity == entity, f.c.record_id == record_id)
                            .order_by(f.c.id.desc()))
    return [_out(r) for r in rows]


def _row(uow: UnitOfWork, entity: str, record_id: int, file_id: int) -> Any:
    return access.attached_row(uow, _select(), crm_files, entity, record_id, file_id, "file")


def get(uow: UnitOfWork, entity: str, record_id: int, file_id: int) -> dict[str, Any]:
    """One file's row (NotFound when the caller cannot read the record, or no such file is on it)."""
    access.readable(uow, entity, record_id)
    return _out(_row(uow, entity, record_id, file_id))


def open_file(uow: UnitOfWork, entity: str, record_id: int, file_id: int) -> tuple[dict[str, Any], BinaryIO]:
    """The file's row and a stream of its bytes, checked like reading the record."""
    access.readable(uow, entity, record_id)
    row = _row(uow, entity, record_id, file_id)
    return _out(row), file_store(uow).open(row.storage_key)


def delete(uow: UnitOfWork, entity: str, record_id: int, file_id: int) -> Callable[[], None]:
    """Remove a file (the uploader, or whoever may update the record); returns what deletes its bytes from
    the store, to call once the unit has committed (a rolled-back removal keeps them)."""
    record = access.readable(uow, entity, record_id)
    row = _row(uow, entity, record_id, file_id)
    if row.created_by is None or row.created_by != uow.actor.user_id:
        try:
            access.require_update(uow, entity, record, "delete files of")
        except PermissionDenied as e:
            raise PermissionDenied("only the uploader or someone who may update the record may delete a file",
                                   code="forbidden") from e
    _guarded(uow, entity, record_id, "file_delete")
    now = uow.clock.now()
    uow.conn.execute(update(crm_files).where(crm_files.c.id == file_id)
                     .values(deleted_at=now, deleted_by=uow.actor.user_id))
    journal.write(uow, now, [journal.event(entity, record_id, "file_delete", _audit(file_id, row._mapping))])
    store, key = file_store(uow), str(row.storage_key)
    return lambda: store.delete(key)
