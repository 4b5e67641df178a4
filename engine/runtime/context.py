"""Explicit run-time context: who acts (:class:`Actor`) and what time it is (:class:`Clock`).

Both are passed as arguments (never read from globals): a unit of work holds
one actor and one clock, so tests can act as any user at any moment without
patching or sleeping.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs a unit of work.

    ``user_id`` is None only for the system actor (engine-internal work such as
    migrations, workers and imports run by an operator).  ``is_admin`` is set
    by :mod:`engine.runtime.users` when one of the user's roles is an admin role;
    an admin passes every permission check.
    """

    user_id: int | None
    username: str
    roles: tuple[str, ...] = ()
    team_id: int | None = None
    is_admin: bool = False

    @classmethod
    def system(cls) -> Actor:
        """The engine itself: every permission, no user id (audit rows show no actor)."""
        return cls(user_id=None, username="system", roles=(), team_id=None, is_admin=True)

    @property
    def is_system(self) -> bool:
        return self.user_id is None and self.is_admin


class Clock(Protocol):
    """Where the engine gets the time from."""

    def now(self) -> dt.datetime:
        """The current moment as an aware UTC datetime."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock for tests: stands still until moved with :meth:`advance` or :meth:`set`."""

    def __init__(self, at: dt.datetime | None = None) -> None:
        self._at = _aware(at or dt.datetime(2026, 1, 15, 9, 0, tzinfo=dt.UTC))

    def now(self) -> dt.datetime:
        return self._at

    def set(self, at: dt.datetime) -> None:
        """Jump to ``at`` (naive datetimes are taken as UTC)."""
        self._at = _aware(at)

    def advance(self, **delta: float) -> dt.datetime:
        """Move forward by ``timedelta(**delta)``; returns the new time."""
        self._at = self._at + dt.timedelta(**delta)
        return self._at


def _aware(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
