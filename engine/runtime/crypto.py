"""Field encryption at rest: the key ring from the environment, sealing values, blind indexes.

A field declared ``encrypted: true`` is stored as one text value::

    <blind index: 32 hex digits>.<key id>.<base64url of nonce + AES-GCM ciphertext and tag>

* AES-256-GCM from the ``cryptography`` package, a random 96-bit nonce per value;
* the key id names the key that sealed the value, so several keys can be in the ring at once (a value
  sealed with an older key still opens; ``crm keys rotate`` re-seals everything with the current one);
* the *blind index* (HMAC-SHA256 of the value, first 16 bytes, keyed by a key derived from the same
  ring key) comes first, so ``field == 'x'`` is ``substr(column, 1, 32) IN (<digest of 'x' under each
  key of the ring>)`` -- an index lookup without the value ever being stored in clear.

The keys come from ``CRM_ENCRYPTION_KEYS``: ``id:base64key`` entries (32-byte keys) separated by commas
or spaces, the *first* being the current one (it seals new values); the others only open old values.
``crm keys generate`` prints a new entry.  The ring is a pure function of the environment text, parsed
once per distinct text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String, Text, func, literal_column, type_coerce
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from engine.dsl.model import Workspace
from engine.errors import EncryptionError, EncryptionKeyMissing

ENV_KEYS = "CRM_ENCRYPTION_KEYS"
#: characters of the blind index at the start of every sealed value
DIGEST_CHARS = 32
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,20}$")
SEALED = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_-]{1,20})\.([A-Za-z0-9_-]+)$")
NONCE_BYTES = 12
GENERATE_HINT = ("generate a key with `crm keys generate` and set it, e.g. "
                 f"export {ENV_KEYS}=\"$(crm keys generate --id k1)\"")


@dataclass(frozen=True, slots=True)
class RingKey:
    """One key of the ring: its id, the AES-GCM key and the blind-index HMAC key derived from it."""

    id: str
    aead: AESGCM
    index_key: bytes


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys of ``CRM_ENCRYPTION_KEYS``, the current (first) one sealing new values."""

    keys: Mapping[str, RingKey]
    current: str

    @property
    def current_key(self) -> RingKey:
        return self.keys[self.current]

    def digest(self, value: str, key_id: str | None = None) -> str:
        """The blind index of ``value`` under key ``key_id`` (default: the current key)."""
        key = self.keys[key_id or self.current].index_key
        return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:DIGEST_CHARS]

    def digests(self, value: str) -> list[str]:
        """The blind index of ``value`` under every key of the ring (what an equality lookup matches)."""
        return [self.digest(value, k) for k in self.keys]

    def tagged(self, value: str, key_id: str | None = None) -> str:
        """``<key id>:<blind index>``: a blind index stored apart from its value (duplicate keys), so the key
        it was made with is known (``crm keys rotate`` finds the ones to make again)."""
        kid = key_id or self.current
        return f"{kid}:{self.digest(value, kid)}"

    def tagged_all(self, value: str) -> list[str]:
        """:meth:`tagged` under every key of the ring."""
        return [self.tagged(value, k) for k in self.keys]

    def seal(self, value: str) -> str:
        """``value`` encrypted with the current key, its blind index first (see the module docstring)."""
        key = self.current_key
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, value.encode("utf-8"), key.id.encode())
        payload = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        return f"{self.digest(value)}.{key.id}.{payload}"

    def open(self, stored: str) -> str:
        """The clear text of a sealed value (a value that is not sealed is returned as it is: a row written
        before its field was encrypted, until the apply that encrypts it has run)."""
        m = SEALED.match(stored)
        if m is None:
            return stored
        key = self.keys.get(m.group(2))
        if key is None:
            raise EncryptionError(
                f"a value was encrypted with key {m.group(2)!r}, which is not among the keys this process loaded "
                f"from {ENV_KEYS} ({', '.join(self.keys)})",
                code="encryption_key_unknown",
                hint=f"if `crm keys rotate` sealed it with a new current key, restart the servers and workers with "
                     f"the {ENV_KEYS} the rotation used (the new key first); if it is an old key, add it back to "
                     f"{ENV_KEYS} (after the current one), then run `crm keys rotate`")
        raw = base64.urlsafe_b64decode(m.group(3) + "=" * (-len(m.group(3)) % 4))
        try:
            return key.aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], key.id.encode()).decode("utf-8")
        except Exception as e:  # cryptography's InvalidTag: a wrong key under that id, or altered data
            raise EncryptionError(f"a value sealed with key {key.id!r} does not open with the key of that id",
                                  code="encryption_key_unknown",
                                  hint=f"check that {ENV_KEYS} has the same key material for {key.id!r}") from e


def key_id_of(stored: str) -> str | None:
    """The id of the key that sealed ``stored`` (None: not a sealed value)."""
    m = SEALED.match(stored)
    return m.group(2) if m else None


def generate_key(key_id: str) -> str:
    """A new ``id:base64key`` entry for ``CRM_ENCRYPTION_KEYS`` (32 random bytes)."""
    if not KEY_ID.match(key_id):
        raise EncryptionError(f"key id {key_id!r} is not valid", code="encryption_key_invalid",
                              hint="use 1-20 letters, digits, '-' or '_'")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"crm-engine " + purpose).derive(master)


@lru_cache(maxsize=8)
def parse_keys(text: str) -> KeyRing:
    """The ring of a ``CRM_ENCRYPTION_KEYS`` text; EncryptionError saying what is wrong."""
    keys: dict[str, RingKey] = {}
    for entry in re.split(r"[,\s]+", text.strip()):
        if not entry:
            continue
        kid, sep, b64 = entry.partition(":")
        if not sep or not KEY_ID.match(kid):
            raise EncryptionError(f"{ENV_KEYS}: entry {entry[:24]!r}... is not 'id:base64key'",
                                  code="encryption_key_invalid", hint=GENERATE_HINT)
        try:
            master = base64.b64decode(b64, validate=True)
        except binascii.Error as e:
            raise EncryptionError(f"{ENV_KEYS}: the key {kid!r} is not valid base64", code="encryption_key_invalid",
                                  hint=GENERATE_HINT) from e
        if len(master) != 32:
            raise EncryptionError(f"{ENV_KEYS}: the key {kid!r} has {len(master)} bytes, not 32",
                                  code="encryption_key_invalid", hint=GENERATE_HINT)
        if kid in keys:
            raise EncryptionError(f"{ENV_KEYS}: key id {kid!r} appears twice", code="encryption_key_invalid",
                                  hint="give each key its own id")
        keys[kid] = RingKey(kid, AESGCM(_derive(master, b"field encryption")), _derive(master, b"blind index"))
    if not keys:
        raise EncryptionKeyMissing(f"{ENV_KEYS} is empty", hint=GENERATE_HINT)
    return KeyRing(keys, next(iter(keys)))


def keyring(environ: Mapping[str, str] | None = None) -> KeyRing:
    """The ring of the environment (``os.environ`` by default); EncryptionKeyMissing when it has none."""
    text = (environ if environ is not None else os.environ).get(ENV_KEYS, "")
    if not text.strip():
        raise EncryptionKeyMissing(f"this workspace has encrypted fields, but {ENV_KEYS} is not set",
                                   hint=GENERATE_HINT)
    return parse_keys(text)


def require_keys(workspace: Workspace) -> None:
    """EncryptionKeyMissing (how to make a key in the hint) when ``workspace`` has encrypted fields and the
    environment has no usable key ring -- checked when a runtime starts and before an apply."""
    if workspace.has_encrypted_fields:
        keyring()


def encrypted_fields(workspace: Workspace) -> dict[str, frozenset[str]]:
    """entity -> its encrypted fields (entities without any left out)."""
    out = {}
    for e in workspace.entities.values():
        names = frozenset(f.name for f in e.encrypted_fields)
        if names:
            out[e.name] = names
    return out


def seal_values(values: Mapping[str, Any], names: frozenset[str] | None) -> dict[str, Any]:
    """``values`` with those of ``names`` sealed (a list of values, e.g. an event's [old, new]: each one)."""
    if not names or names.isdisjoint(values):
        return dict(values)
    ring = keyring()

    def seal(v: Any) -> Any:
        if isinstance(v, list):
            return [seal(x) for x in v]
        return ring.seal(str(v)) if v is not None else None

    return {k: seal(v) if k in names else v for k, v in values.items()}


def open_values(values: Mapping[str, Any], names: frozenset[str] | None) -> dict[str, Any]:
    """The inverse of :func:`seal_values`."""
    if not names or names.isdisjoint(values):
        return dict(values)
    ring = keyring()

    def open_(v: Any) -> Any:
        if isinstance(v, list):
            return [open_(x) for x in v]
        return ring.open(v) if isinstance(v, str) else v

    return {k: open_(v) if k in names else v for k, v in values.items()}


class EncryptedText(TypeDecorator[str]):
    """The column type of an encrypted field: seals on the way in, opens on the way out.

    Every write through SQLAlchemy Core (the record service's inserts and updates, the raw bulk inserts,
    which take Core's own bind processors) therefore stores the sealed form; nothing can write the clear
    value to this column by mistake.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return keyring().seal(str(value))

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return keyring().open(value)


def digest_expr(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """The blind index of an encrypted column in SQL (the text the index is built on, literal bounds so
    SQLite matches the expression index)."""
    return type_coerce(func.substr(column, literal_column("1"), literal_column(str(DIGEST_CHARS))), String())
