"""The error of one field value that cannot be taken (shared by the coercers of every field type)."""

from __future__ import annotations


class BadValue(ValueError):
    """A value a field cannot take; ``str()`` is the message shown next to the field."""
