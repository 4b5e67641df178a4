"""The compiled flow an instance of an older flow version runs with: its revision's, not the active one's.

An instance keeps the version it started on (its spec digest); the conditions, steps and assignees of
that version are the ones of the revision that first stored the version (``crm_approval_specs
.revision_id``).  That revision is compiled from its bundle once per process (a small LRU): instances of
old versions finish exactly as they would have, whatever the active revision changed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING

from engine.dsl.approvals.model import ApprovalFlow

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

CACHE_SIZE = 16


class _Revisions:
    """revision id -> its compiled approval flows (per process; compiled workspaces are immutable)."""

    def __init__(self) -> None:
        self.items: OrderedDict[int, Mapping[str, ApprovalFlow]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, uow: UnitOfWork, revision_id: int) -> Mapping[str, ApprovalFlow]:
        with self.lock:
            found = self.items.get(revision_id)
            if found is not None:
                self.items.move_to_end(revision_id)
                return found
        flows = _compile(uow, revision_id)
        with self.lock:
            self.items[revision_id] = flows
            while len(self.items) > CACHE_SIZE:
                self.items.popitem(last=False)
        return flows


def _compile(uow: UnitOfWork, revision_id: int) -> Mapping[str, ApprovalFlow]:
    from engine.plugins import compile_bundle
    from engine.runtime.schema.revisions import get_revision

    workspace, _host = compile_bundle(get_revision(uow.conn, revision_id).bundle)
    return {n: o.compiled for n, o in workspace.objects_of("approval").items() if isinstance(o.compiled, ApprovalFlow)}


_REVISIONS = _Revisions()


def flow_of_revision(uow: UnitOfWork, revision_id: int | None, name: str) -> ApprovalFlow | None:
    """Flow ``name`` as revision ``revision_id`` compiled it (None: unknown, or the active revision's)."""
    if revision_id is None or revision_id == uow.state.revision_id:
        return None
    return _REVISIONS.get(uow, int(revision_id)).get(name)
