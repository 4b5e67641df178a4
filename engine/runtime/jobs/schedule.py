"""Schedules of recurring job kinds: ``hourly``, ``daily 02:00``, ``every 5m``, ``every 2h`` or a cron line.

Every form is turned into a cron expression and croniter gives the next
moment (in UTC).  The worker keeps exactly one pending job per schedule,
for its next moment (idempotent by ``schedule:<kind>:<moment>``): a worker
that was down runs a missed moment once, late, never a backlog.
"""

from __future__ import annotations

import datetime as dt
import re

from croniter import croniter

from engine.errors import ConfigError

_DAILY = re.compile(r"daily (\d{1,2}):(\d{2})")
_EVERY = re.compile(r"every (\d{1,3})([mh])")


def cron_of(schedule: str) -> str:
    """The cron expression of ``schedule`` (ConfigError for one that cannot be read)."""
    text = schedule.strip().lower()
    if text == "hourly":
        return "0 * * * *"
    if text == "daily":
        return "0 0 * * *"
    if m := _DAILY.fullmatch(text):
        hour, minute = int(m.group(1)), int(m.group(2))
        if hour < 24 and minute < 60:
            return f"{minute} {hour} * * *"
    elif m := _EVERY.fullmatch(text):
        n, unit = int(m.group(1)), m.group(2)
        if unit == "m" and 0 < n < 60:
            return f"*/{n} * * * *"
        if unit == "h" and 0 < n < 24:
            return f"0 */{n} * * *"
    elif croniter.is_valid(text):
        return text
    raise ConfigError(f"cannot read the schedule {schedule!r}", code="bad_schedule",
                      hint="write hourly, daily 02:00, every 5m, every 2h, or a cron line such as '*/10 * * * *'")


def next_run(schedule: str, after: dt.datetime) -> dt.datetime:
    """The first moment of ``schedule`` strictly after ``after`` (aware UTC)."""
    base = after.astimezone(dt.UTC).replace(tzinfo=None)
    out = croniter(cron_of(schedule), base).get_next(dt.datetime)
    return out.replace(tzinfo=dt.UTC)
