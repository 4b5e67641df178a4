"""Password rules and the lockout after repeated failed logins (``crm_login_failures``).

Rules (:func:`problems`): 8 to 200 characters; at least two kinds of
character among letters, digits and others (``correct horse`` passes,
``aaaaaaaa`` and ``12345678`` do not); not the username, nor one of the most
common passwords.

Lockout: :data:`MAX_FAILURES` wrong passwords in a row lock the user's
password login for :data:`LOCK_FOR`; while locked even the right password is
refused (``account_locked``, with the time it ends).  A successful login, a
new password set by an administrator, or a reactivation clears the count.
Failures are recorded in their own short transaction, so the refused login's
own rollback does not erase them.  API tokens are not affected: a token is
revoked on its own (``crm token revoke``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, delete, select, update

from engine.runtime.engine_tables import crm_login_failures

MIN_LENGTH, MAX_LENGTH = 8, 200
MAX_FAILURES = 5
LOCK_FOR = dt.timedelta(minutes=15)
COMMON = frozenset({
    "password", "password1", "password123", "passw0rd", "12345678", "123456789", "1234567890", "qwertyuiop",
    "qwerty123", "iloveyou", "11111111", "00000000", "abc12345", "abcd1234", "admin123", "letmein1",
    "welcome1", "1q2w3e4r", "a1b2c3d4", "88888888", "66666666", "woaini1314", "changeme",
})


def problems(password: Any, username: str | None = None) -> list[str]:
    """What is wrong with ``password`` (empty when it passes the rules)."""
    if not isinstance(password, str):
        return ["must be text"]
    out: list[str] = []
    if len(password) < MIN_LENGTH:
        out.append(f"must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        out.append(f"must have at most {MAX_LENGTH} characters")
    kinds = (any(c.isalpha() for c in password), any(c.isdigit() for c in password),
             any(not c.isalnum() for c in password))
    if len(password) >= MIN_LENGTH and sum(kinds) < 2:
        out.append("must mix at least two kinds of character: letters, digits, others (a space counts)")
    if password.lower() in COMMON:
        out.append("is one of the most common passwords")
    if username and password.lower() == username.lower():
        out.append("must not be the username")
    return out


def locked_until(conn: Connection, user_id: int, now: dt.datetime) -> dt.datetime | None:
    """When the user's lockout ends, or None when password login is open."""
    until = conn.execute(select(crm_login_failures.c.locked_until)
                         .where(crm_login_failures.c.user_id == user_id)).scalar()
    return until if until is not None and until > now else None


def record_failure(conn: Connection, user_id: int, now: dt.datetime) -> dt.datetime | None:
    """Count one failed login (inside ``conn``'s transaction); the new lockout's end, if this one set it."""
    f = crm_login_failures
    row = conn.execute(select(f.c.failures, f.c.locked_until).where(f.c.user_id == user_id)).first()
    if row is None:
        conn.execute(f.insert().values(user_id=user_id, failures=1, last_failed_at=now))
        count = 1
    else:
        expired = row.locked_until is not None and row.locked_until <= now
        count = 1 if expired else int(row.failures) + 1
        conn.execute(update(f).where(f.c.user_id == user_id).values(failures=count, last_failed_at=now,
                                                                    locked_until=None))
    if count >= MAX_FAILURES:
        until = now + LOCK_FOR
        conn.execute(update(f).where(f.c.user_id == user_id).values(locked_until=until))
        return until
    return None


def clear(conn: Connection, user_id: int) -> None:
    """Forget the user's failed logins (and end a lockout)."""
    conn.execute(delete(crm_login_failures).where(crm_login_failures.c.user_id == user_id))
