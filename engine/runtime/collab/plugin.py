"""The collaboration feature plugin (registered through :data:`engine.plugins.host.DEFAULT_PLUGINS`):
attachments, comments with ``@mentions`` and the record timeline.

Its services (:mod:`.files`, :mod:`.comments`, :mod:`.timeline`) are called by the API's endpoints; the
plugin itself contributes the built-in ``local`` file store, beside which other plugins may add theirs
through the same ``crm_file_stores`` hook.
"""

from __future__ import annotations

from typing import Any

from engine.plugins import hookimpl
from engine.runtime.collab.stores import LocalStoreFactory


@hookimpl
def crm_file_stores() -> list[Any]:
    """``local``: files in a folder (docs/attachments.md)."""
    return [LocalStoreFactory()]
