"""``crm flow export NAME [DIR] [--out FILE]``: an approval flow's BPMN, to open in bpmn.io or Camunda Modeler.

For a ``steps:`` flow that is the BPMN the shorthand compiles to (with its diagram, so the modeler shows
it laid out); for a ``bpmn:`` flow, the file as the workspace holds it.  Registered on the ``crm`` group
when :mod:`engine.cli` is imported; reads the workspace folder only (no database).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import click

from engine.cli.base import friendly_errors, main, workspace_dir


@main.group()
def flow() -> None:
    """Approval flows (审批流): export a flow as BPMN."""


@flow.command("export")
@click.argument("name")
@click.argument("directory", required=False)
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None, metavar="FILE",
              help="Write the BPMN to FILE (default: standard output).")
@friendly_errors
def export(name: str, directory: str | None, out: str | None) -> None:
    """Write approval flow NAME as BPMN 2.0 XML with its diagram.  DIR: the workspace (default: here)."""
    from engine.dsl.approvals.flow import approvals_of
    from engine.errors import UnknownReference
    from engine.runtime.schema.operations import compile_workspace

    ws = compile_workspace(workspace_dir(directory))
    flows = {f.name: f for f in approvals_of(ws)}
    found = flows.get(name)
    if found is None:
        close = difflib.get_close_matches(name, list(flows), n=1)
        raise UnknownReference(f"no approval flow {name!r} in workspace {ws.name!r}",
                               hint=f"did you mean {close[0]!r}?" if close else
                               f"flows: {', '.join(flows) or 'none (add an approval: document)'}")
    if out is None:
        click.echo(found.bpmn_xml, nl=False)
        return
    Path(out).write_text(found.bpmn_xml, encoding="utf-8")
    click.echo(f"wrote {out}: process {found.process_id!r}, {len(found.steps)} step(s)", err=True)
