"""``crm rates set|list|import`` and ``crm forecast`` on SQLite and PostgreSQL (in-process CLI runner)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from engine.cli import main
from engine.runtime.context import Actor
from engine.runtime.runtime import Runtime


def _crm(runner: CliRunner, *args: str, db_url: str) -> Result:
    return runner.invoke(main, list(args), env={"CRM_DATABASE_URL": db_url}, catch_exceptions=False)


def test_rates_commands_and_the_forecast(tmp_path: Path, db_url: str) -> None:
    runner = CliRunner()
    ws = str(tmp_path / "acme")
    for step in (["init", ws, "--industry", "manufacturing", "--currency", "CNY"], ["apply", ws, "--yes"]):
        r = _crm(runner, *step, db_url=db_url)
        assert r.exit_code == 0, r.output
    r = _crm(runner, "rates", "set", "USD", "CNY", "7.1", ws, "--date", "2026-11-01", db_url=db_url)
    assert (r.exit_code, r.output.strip()) == (0, "1 USD = 7.1 CNY from 2026-11-01"), r.output
    bad = _crm(runner, "rates", "set", "USD", "RMB", "7.1", ws, "--date", "2026-11-01", db_url=db_url)
    assert bad.exit_code == 1 and "to: 'RMB' is not an ISO 4217 currency code" in bad.output
    csv = tmp_path / "rates.csv"
    csv.write_text("from,to,rate,date\nUSD,CNY,7.3,2026-12-01\nEUR,CNY,7.9,2026-12-01\n", encoding="utf-8")
    r = _crm(runner, "rates", "import", str(csv), ws, db_url=db_url)
    assert r.exit_code == 0 and "imported 2 exchange rates from rates.csv" in r.output, r.output
    listed = _crm(runner, "rates", "list", ws, "--currency", "USD", db_url=db_url).output.splitlines()
    assert listed == ["2026-11-01  USD -> CNY  7.1  (cli)", "2026-12-01  USD -> CNY  7.3  (import:rates.csv)"]

    runtime = Runtime.open(db_url)
    try:
        with runtime.unit(Actor.system()) as uow:
            account = uow.records.create("account", {"name": "Acme Tools"})
            for amount, cur in (("1000", "CNY"), ("10", "USD")):
                uow.records.create("opportunity", {"name": f"deal {cur}", "account": account["id"],
                                                   "amount": amount, "amount_currency": cur})
    finally:
        runtime.close()
    r = _crm(runner, "forecast", "opportunity_sales", ws, "--as-of", "2026-11-20", db_url=db_url)
    assert r.exit_code == 0, r.output
    assert "in CNY at the rates of 2026-11-20" in r.output
    assert r.output.splitlines()[1].split() == ["qualification", "2", "1071.00", "107.10"]
    missing = _crm(runner, "forecast", "opportunity_sales", ws, "--as-of", "2026-10-01", db_url=db_url)
    assert missing.exit_code == 1
    assert "no exchange rate from USD to CNY on or before 2026-10-01" in missing.output
