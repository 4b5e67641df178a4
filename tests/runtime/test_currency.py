"""Multi-currency on SQLite and PostgreSQL: dated rates, convert() in Python and SQL (parity), money
totals and the pipeline forecast in the workspace currency at a chosen day, missing rates named."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.dsl.expressions import EvalContext, compile_expression
from engine.errors import BadRequest, InvalidCurrency, MissingExchangeRate, ValidationFailed
from engine.plugins.host import compile_folder as host_compile
from engine.runtime import exchange_rates as rates
from engine.runtime.currency import totals
from engine.runtime.sqlexpr import to_sql
from tests.runtime import conftest as runtime_conftest
from tests.runtime.conftest import FILES, World, build_world

PIPELINE = """
    pipeline: deals
    entity: deal
    field: stage
    transitions: any
    stages:
      - {key: new, probability: 10}
      - {key: won, probability: 100, outcome: won}
      - {key: lost, probability: 0, outcome: lost, requires: [lost_reason]}
"""
DEAL = FILES["entities/deal.yaml"].replace("          assignee: {type: user}\n", (
    "          assignee: {type: user}\n          probability: {type: percent}\n"
    "          lost_reason: {type: picklist, options: [price]}\n"
    "          net_usd: {type: money, formula: \"convert(amount, 'USD')\"}\n"))
NOW = dt.datetime(2026, 12, 10, 9, 0, tzinfo=dt.UTC)


ACCOUNT = FILES["entities/account.yaml"].replace("          secret_note: {type: string}\n", (
    "          secret_note: {type: string}\n          revenue: {type: money}\n"))


@pytest.fixture(name="world")
def world_fixture(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # compiled with the plugin host (as crm apply does), so the feature's convert() is known
    monkeypatch.setattr(runtime_conftest, "compile_folder", lambda folder: host_compile(folder)[0])
    w = build_world(db_url, tmp_path / "ws", {**FILES, "entities/deal.yaml": DEAL, "entities/account.yaml": ACCOUNT,
                                                      "pipelines/deals.yaml": PIPELINE})
    w.clock.set(NOW)
    try:
        yield w
    finally:
        w.rt.close()


def _set(w: World, src: str, dst: str, rate: str, day: str) -> None:
    with w.unit("system") as uow:
        rates.set_rate(uow.conn, src, dst, rate, day, now=NOW)


def _deal(w: World, name: str, stage: str, amount: str | None, currency: str | None, **extra: Any) -> int:
    values: dict[str, Any] = {"name": name, "stage": stage, "amount": amount, **extra}
    if currency is not None:
        values["amount_currency"] = currency
    with w.unit("alice") as uow:
        return int(uow.records.create("deal", values)["id"])


def test_lookup_takes_the_latest_rate_on_or_before_the_day_and_inverts_the_reverse_pair(world: World) -> None:
    _set(world, "USD", "CNY", "7.0", "2026-11-01")
    _set(world, "USD", "CNY", "7.2", "2026-12-01")
    with world.unit("system", readonly=True) as uow:
        assert rates.rate_on(uow.conn, "USD", "CNY", dt.date(2026, 10, 31)) is None
        assert rates.rate_on(uow.conn, "USD", "CNY", dt.date(2026, 11, 30)) == Decimal("7.0")
        assert rates.rate_on(uow.conn, "USD", "CNY", dt.date(2026, 12, 1)) == Decimal("7.2")
        assert rates.rate_on(uow.conn, "CNY", "USD", dt.date(2026, 12, 1)) == Decimal("0.1388888889")
        assert [r.to_dict()["rate"] for r in rates.list_rates(uow.conn, currency="cny")] == [
            "7.0000000000", "7.2000000000"]


def test_setting_a_rate_twice_on_a_day_replaces_it(world: World) -> None:
    _set(world, "USD", "CNY", "7.0", "2026-11-01")
    _set(world, "usd", "cny", "7.1", "2026-11-01")
    with world.unit("system", readonly=True) as uow:
        assert [(r.rate_date, r.rate) for r in rates.list_rates(uow.conn)] == [(dt.date(2026, 11, 1),
                                                                                Decimal("7.1"))]


def test_invalid_codes_and_rates_are_clear_errors(world: World) -> None:
    with world.unit("system") as uow:
        with pytest.raises(InvalidCurrency, match="'XYZ' is not an ISO 4217 currency code") as e:
            rates.set_rate(uow.conn, "XYZ", "CNY", "1", "2026-12-01", now=NOW)
        assert e.value.code == "invalid_currency" and "from" in e.value.details
        with pytest.raises(BadRequest, match="must be a positive number"):
            rates.set_rate(uow.conn, "USD", "CNY", "-2", "2026-12-01", now=NOW)
        with pytest.raises(BadRequest, match="is not a date"):
            rates.set_rate(uow.conn, "USD", "CNY", "7", "12/01/2026", now=NOW)
    with pytest.raises(ValidationFailed) as bad:
        _deal(world, "x", "new", "5", "ABC")
    assert "not an ISO 4217 currency code" in str(bad.value.details)


def test_csv_import_is_all_or_nothing_and_names_the_line(world: World) -> None:
    good = "from,to,rate,date\nUSD,CNY,7.1,2026-11-01\nEUR,CNY,7.8,2026-11-01\n"
    with world.unit("system") as uow:
        assert rates.import_rates(uow.conn, rates.parse_csv(good), now=NOW) == 2
    bad = "date,from,to,rate\n2026-12-01,USD,CNY,7.3\n2026-12-01,EUR,QQQ,7.9\n"
    with pytest.raises(InvalidCurrency, match=r"^line 3: to: 'QQQ'"), world.unit("system") as uow:
        rates.import_rates(uow.conn, rates.parse_csv(bad), now=NOW)
    with world.unit("system", readonly=True) as uow:
        assert len(rates.list_rates(uow.conn)) == 2  # the good first row of the bad file was rolled back


EXPRESSIONS = [
    "convert(amount, 'CNY')",
    "convert(amount, 'USD')",
    "convert(amount, 'EUR')",  # no rate: null in both back ends
    "convert(budget, 'CNY', close_date)",
    "convert(amount * 2, 'CNY', due_at)",
    "convert(amount, 'CNY') + convert(budget, 'CNY')",
    "convert(convert(amount, 'USD'), 'CNY')",
    "convert(amount, 'CNY') > 1000",
    "convert(budget, 'JPY', close_date)",
    "convert(account.revenue, 'CNY', close_date)",
    "if convert(amount, 'USD', close_date) is null then 0 else convert(amount, 'USD', close_date)",
]


def test_convert_agrees_in_python_and_sql(world: World) -> None:
    _set(world, "USD", "CNY", "7.0", "2026-11-01")
    _set(world, "USD", "CNY", "7.25", "2026-12-01")
    _set(world, "JPY", "USD", "0.0067", "2026-01-01")
    _set(world, "JPY", "USD", "0.0071", "2026-06-30")
    _set(world, "CNY", "JPY", "21.5", "2026-03-01")
    rows: list[tuple[str, str | None, str, dict[str, Any]]] = [
            ("a", "100.10", "USD", {"budget": "5", "budget_currency": "JPY", "close_date": "2026-11-15"}),
            ("b", "1000", "CNY", {"budget": "30", "budget_currency": "USD", "close_date": "2026-12-02"}),
            ("c", "12345.67", "JPY", {"due_at": "2026-11-30T23:59:00Z", "close_date": "2025-01-01",
                                       "budget": "1", "budget_currency": "USD"}),
            ("d", None, "USD", {"due_at": "2026-12-01T00:00:00Z"}), ("e", "0.01", "USD", {}),
            ("f", "77", "EUR", {"budget": "2", "budget_currency": "CNY"})]
    with world.unit("alice") as uow:
        accounts = [uow.records.create("account", {"name": f"acc {c}", "revenue": "1000",
                                                   "revenue_currency": c})["id"] for c in ("USD", "JPY", "CNY")]
    rows[0][3]["account"] = accounts[0]
    rng = random.Random(12)
    for i in range(30):  # and random ones: currencies with and without rates, nulls, days before any rate
        day = dt.date(2025, 12, 1) + dt.timedelta(days=rng.randint(0, 400))
        extra = {"close_date": rng.choice([None, day.isoformat()]),
                 "budget": rng.choice([None, str(Decimal(rng.randint(0, 10**7)).scaleb(-2))]),
                 "budget_currency": rng.choice(["CNY", "USD", "JPY", "EUR"]),
                 "account": rng.choice([None, *accounts])}
        rows.append((f"r{i}", rng.choice([None, str(Decimal(rng.randint(0, 10**7)).scaleb(-2))]),
                     rng.choice(["CNY", "USD", "JPY", "EUR"]), extra))
    for name, amount, cur, extra in rows:
        _deal(world, name, "new", amount, cur, **{k: v for k, v in extra.items() if v is not None})
    ws, schema = world.rt.state.workspace, world.rt.state.schema
    table = schema.table("deal")
    for text in EXPRESSIONS:
        compiled = compile_expression(text, ws.entities["deal"], ws)
        clause = to_sql(compiled, schema, "deal", today=NOW.date(), now=NOW)
        with world.unit("system", readonly=True) as uow:
            sql = dict(uow.conn.execute(select(table.c.name, clause).order_by(table.c.id)).all())
            ctx = EvalContext(now=NOW, rates=rates.resolver(uow.conn),
                              ref=lambda entity, rid: uow.records.get(entity, rid))
            py = {r["name"]: compiled.evaluate(r, ctx) for r in uow.records.list("deal", limit=50).items}
        for name in py:
            assert _same(py[name], sql[name]), (text, name, py[name], sql[name])
        assert any(v is not None for v in py.values()), text


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or isinstance(a, bool):
        return a == b if not isinstance(a, bool) else bool(a) == bool(b)
    return abs(Decimal(str(a)) - Decimal(str(b))) < Decimal("1e-6")


def test_convert_values_at_the_dated_rate(world: World) -> None:
    _set(world, "USD", "CNY", "7.0", "2026-11-01")
    _set(world, "USD", "CNY", "7.25", "2026-12-01")
    _deal(world, "a", "new", "100", "USD", close_date="2026-11-15")
    ws = world.rt.state.workspace
    with world.unit("system", readonly=True) as uow:
        record = uow.records.list("deal").items[0]
        ctx = EvalContext(now=NOW, rates=rates.resolver(uow.conn))
        today = compile_expression("convert(amount, 'CNY')", ws.entities["deal"], ws).evaluate(record, ctx)
        dated = compile_expression("convert(amount, 'CNY', close_date)", ws.entities["deal"], ws)
        assert (today, dated.evaluate(record, ctx)) == (Decimal("725.00"), Decimal("700.00"))


def test_forecast_sums_cny_and_usd_in_the_workspace_currency_at_the_chosen_day(world: World) -> None:
    _set(world, "USD", "CNY", "7.0", "2026-11-01")
    _set(world, "USD", "CNY", "7.2", "2026-12-01")
    _deal(world, "a", "new", "1000", "CNY")
    _deal(world, "b", "new", "100", "USD")
    _deal(world, "c", "won", "200", "USD")
    _deal(world, "d", "lost", None, None, lost_reason="price")
    with world.unit("alice", readonly=True) as uow:
        november = totals.forecast(uow, "deals", as_of="2026-11-15")
        december = totals.forecast(uow, "deals")  # today by the clock: 2026-12-10
    assert november["currency"] == "CNY" and november["as_of"] == "2026-11-15"
    assert [(s["stage"], s["count"], s["amount"], s["weighted"]) for s in november["stages"]] == [
        ("new", 2, "1700.00", "170.00"), ("won", 1, "1400.00", "1400.00"), ("lost", 0, "0.00", "0.00")]
    assert (november["total"], november["weighted"]) == ("3100.00", "1570.00")
    assert (december["as_of"], december["total"]) == ("2026-12-10", "3160.00")


def test_totals_respect_the_row_scope_and_convert_to_another_currency(world: World) -> None:
    _set(world, "USD", "CNY", "7.0", "2026-11-01")
    _deal(world, "a", "new", "700", "CNY")
    with world.unit("dave") as uow:
        uow.records.create("deal", {"name": "dave's", "amount": "1000", "amount_currency": "USD"})
    with world.unit("alice", readonly=True) as uow:
        cur, day, found = totals.money_totals(uow, "deal", "amount", currency="USD")
    assert (cur, day, [(t.count, t.amount) for t in found]) == ("USD", NOW.date(), [(1, Decimal("100.00"))])
    with world.unit("admin", readonly=True) as uow:
        _, _, everyone = totals.money_totals(uow, "deal", "amount")
    assert [(t.count, t.amount) for t in everyone] == [(2, Decimal("7700.00"))]


def test_a_missing_rate_names_the_pair_and_the_day(world: World) -> None:
    _set(world, "USD", "CNY", "7.0", "2026-12-01")
    _deal(world, "a", "new", "10", "USD")
    _deal(world, "b", "new", "10", "EUR")
    with world.unit("alice", readonly=True) as uow, pytest.raises(MissingExchangeRate) as e:
        totals.forecast(uow, "deals", as_of="2026-12-05")
    assert e.value.details == {"from": "EUR", "to": "CNY", "date": "2026-12-05"}
    assert "no exchange rate from EUR to CNY on or before 2026-12-05" in e.value.message
    with world.unit("alice", readonly=True) as uow, pytest.raises(MissingExchangeRate) as early:
        totals.money_totals(uow, "deal", "amount", as_of="2026-11-30", filter_text="name == 'a'")
    assert early.value.details == {"from": "USD", "to": "CNY", "date": "2026-11-30"}



def test_a_money_formula_keeps_the_currency_it_was_computed_in(world: World) -> None:
    _set(world, "USD", "CNY", "7.0", "2026-11-01")
    usd = _deal(world, "u", "new", "100", "USD")
    cny = _deal(world, "c", "new", "700", "CNY")
    with world.unit("alice", readonly=True) as uow:
        u, c = uow.records.get("deal", usd), uow.records.get("deal", cny)
    assert (u["net"], u["net_currency"], u["net_usd"], u["net_usd_currency"]) == (
        Decimal("100.00"), "USD", Decimal("100.00"), "USD")
    assert (c["net"], c["net_currency"], c["net_usd"], c["net_usd_currency"]) == (
        Decimal("700.00"), "CNY", Decimal("100.00"), "USD")
