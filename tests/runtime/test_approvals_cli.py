"""``crm approvals list`` and ``crm approvals show``: pending instances with who they wait for, and one
instance's tasks and history (SQLite and PostgreSQL, a YAML flow applied as a revision)."""

from __future__ import annotations

from click.testing import CliRunner

from engine.cli import main
from tests.runtime.test_approvals_versions import Live, live_fixture  # noqa: F401  (the fixture)


def test_list_and_show(live: Live) -> None:
    first = live.quote()
    second = live.quote()
    live.act("carol", first)
    runner = CliRunner()
    listed = runner.invoke(main, ["approvals", "list", str(live.folder), "--db", live.url])
    assert listed.exit_code == 0, listed.output
    assert "1 approval (pending)" in listed.output and f"#{second:<6} discount @" in listed.output
    assert "waiting for: carol" in listed.output
    every = runner.invoke(main, ["approvals", "list", str(live.folder), "--db", live.url, "--status", "all"])
    assert "2 approvals (all)" in every.output and "approved" in every.output
    shown = runner.invoke(main, ["approvals", "show", str(first), str(live.folder), "--db", live.url])
    assert shown.exit_code == 0, shown.output
    assert f"approval #{first}: discount on quote" in shown.output
    assert "-- approved (submitted by alice)" in shown.output
    lines = shown.output.splitlines()
    assert any("manager" in x and "carol" in x and "approved" in x for x in lines)
    assert [x.split()[2] for x in lines[lines.index("history:") + 1:]] == ["submit", "approve", "approved"]
    missing = runner.invoke(main, ["approvals", "show", "999", str(live.folder), "--db", live.url])
    assert missing.exit_code == 1 and "no approval instance 999" in missing.output
