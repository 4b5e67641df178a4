"""The pure parts of attachments and comments: names, sniffing, sizes, mentions, the store's folder and keys."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import make_url

from engine.dsl.compiler import attachment_settings, parse_size
from engine.dsl.model import AttachmentSettings
from engine.errors import FileStoreError
from engine.runtime.collab.comments import mentioned_names
from engine.runtime.collab.files import allowed, sanitise_name, sniff
from engine.runtime.collab.stores import FILES_DIR_ENV, LocalFileStore, check_key, local_root


@pytest.mark.parametrize(("raw", "clean"), [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
    ("/abs/path/offer.pdf", "offer.pdf"),
    ("  .hidden  ", "hidden"),
    ("re\u202eport\u0000.pdf", "report.pdf"),
    ("a\tb\nc.txt", "a b c.txt"),
    ("CON.txt", "_CON.txt"),
    ("..", "file"),
    ("", "file"),
    (None, "file"),
    ("合同 2026.pdf", "合同 2026.pdf"),
])
def test_names_are_reduced_to_a_plain_file_name(raw: str | None, clean: str) -> None:
    assert sanitise_name(raw) == clean


def test_long_names_keep_their_extension() -> None:
    name = sanitise_name("x" * 500 + ".pdf")
    assert len(name) == 200 and name.endswith(".pdf")


def test_the_type_comes_from_the_bytes_not_the_name() -> None:
    assert sniff(b"%PDF-1.7\n...", "photo.png").content_type == "application/pdf"
    assert sniff(b"\x89PNG\r\n\x1a\n" + b"\0" * 32, "offer.pdf").content_type == "image/png"
    assert sniff("客户,金额\n".encode(), "list.csv").content_type == "text/csv"
    assert sniff("纯文本".encode()[:-1], "notes").content_type == "text/plain"  # a character cut by the sniff
    assert sniff(b"MZ\x90\0" + b"\0" * 64, "a.pdf").content_type == "application/x-msdownload"
    assert sniff(b"\xff\xfe\0\0garbage\0", "a.txt").content_type == "application/octet-stream"
    assert allowed("image/png", ("image/*",)) and not allowed("text/html", ("text/plain", "image/*"))


def test_sizes_read_as_people_write_them() -> None:
    assert parse_size("25MB") == 25_000_000 and parse_size("1GiB") == 2**30 and parse_size(10) == 10
    assert parse_size("512 KB") == 512_000
    with pytest.raises(ValueError):
        parse_size("lots")
    settings = attachment_settings({"max_size": "5MB", "allowed_types": ["application/pdf"], "path": "f"})
    assert settings.max_size == 5_000_000 and settings.allowed_types == ("application/pdf",)
    assert attachment_settings({}) == AttachmentSettings()


def test_mentions_allow_dots_and_leave_out_email_addresses() -> None:
    text = "@li.rep please call. cc @wang_wei, @boss. mail bob@acme.com or @li.rep again; @-x @"
    assert mentioned_names(text) == ["li.rep", "wang_wei", "boss"]
    assert mentioned_names("（@张三）谢谢") == ["张三"]


def _runtime(url: str) -> SimpleNamespace:
    return SimpleNamespace(engine=SimpleNamespace(url=make_url(url)))


def test_the_local_folder_is_the_env_then_the_setting_then_beside_the_sqlite_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FILES_DIR_ENV, raising=False)
    sqlite = _runtime(f"sqlite:///{tmp_path / 'crm.db'}")
    assert local_root(AttachmentSettings(), sqlite) == tmp_path / "crm-files"
    assert local_root(AttachmentSettings(path="blobs"), sqlite) == tmp_path / "blobs"
    assert local_root(AttachmentSettings(path="/srv/files"), sqlite) == Path("/srv/files")
    pg = _runtime("postgresql+psycopg://u@127.0.0.1/crm")
    with pytest.raises(FileStoreError, match="no folder"):
        local_root(AttachmentSettings(), pg)
    monkeypatch.setenv(FILES_DIR_ENV, str(tmp_path / "env"))
    assert local_root(AttachmentSettings(path="blobs"), pg) == tmp_path / "env"


def test_the_local_store_keeps_bytes_only_under_engine_keys(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    assert store.put("account/1/abc", io.BytesIO(b"hello")) == 5
    with store.open("account/1/abc") as f:
        assert f.read() == b"hello"
    store.delete("account/1/abc")
    store.delete("account/1/abc")  # already gone: no error
    for bad in ("../etc/passwd", "/etc/passwd", "account/../../x", "account/1/a.b", ""):
        with pytest.raises(FileStoreError):
            check_key(bad)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_plugin_may_not_take_the_local_store_name() -> None:
    from engine.plugins import PluginHost
    from engine.runtime.collab.stores import LocalStoreFactory

    class Twin:
        PLUGIN_NAME = "twin"

        @staticmethod
        def crm_file_stores() -> list[object]:
            return [LocalStoreFactory()]

    from engine.plugins import hookimpl

    Twin.crm_file_stores = hookimpl(Twin.crm_file_stores)  # type: ignore[method-assign]
    assert "local" in PluginHost().file_stores()
    with pytest.raises(ValueError, match="local"):
        PluginHost(extra=[Twin]).file_stores()
