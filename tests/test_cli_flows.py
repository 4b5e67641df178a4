"""``crm flow export NAME``: the BPMN of an approval flow, parsed back by SpiffWorkflow with its diagram whole."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from engine.cli import main
from tests.dsl.approvals_helpers import missing_di, spiff_spec

ROOT = Path(__file__).resolve().parents[1]


def _workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "workspace.yaml").write_text("workspace: acme\nextends: base\n", "utf-8")
    return folder


def test_export_writes_the_shorthand_bpmn_that_opens_with_its_diagram(tmp_path: Path) -> None:
    folder = _workspace(tmp_path)
    out = tmp_path / "quote_discount.bpmn"
    result = CliRunner().invoke(main, ["flow", "export", "quote_discount", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    xml = out.read_text("utf-8")
    spec = spiff_spec(xml, "quote_discount")
    assert {"manager", "director", "finance", "legal"} <= set(spec.task_specs)
    assert missing_di(xml, "quote_discount") == []


def test_export_of_a_bpmn_flow_is_the_file_and_goes_to_stdout(tmp_path: Path) -> None:
    folder = _workspace(tmp_path)
    result = CliRunner().invoke(main, ["flow", "export", "contract_risk", str(folder)])
    assert result.exit_code == 0, result.output
    shipped = (ROOT / "configs" / "base" / "approvals" / "flows" / "contract_risk.bpmn").read_text("utf-8")
    assert result.stdout == shipped


def test_an_unknown_flow_is_a_clear_error(tmp_path: Path) -> None:
    folder = _workspace(tmp_path)
    shutil.rmtree(folder / "approvals", ignore_errors=True)
    result = CliRunner().invoke(main, ["flow", "export", "quote_discont", str(folder)])
    assert result.exit_code == 1
    assert "no approval flow 'quote_discont'" in result.output and "did you mean 'quote_discount'?" in result.output
    assert "Traceback" not in result.output
