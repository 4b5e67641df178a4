"""Exchange rates and the forecast over the REST API of the manufacturing workspace (CNY), on SQLite and
PostgreSQL: admins set dated rates, anyone signed in reads them; the pipeline forecast adds CNY and USD
deals in CNY at the rates of the chosen day; a missing rate is 409 naming the pair and the day."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import ApiEnv, create


def _put(client: Any, env: ApiEnv, user: str, body: Any) -> Any:
    return client.put("/api/v1/rates", json=body, headers=env.headers(user))


def _forecast(client: Any, env: ApiEnv, user: str, **query: str) -> Any:
    return client.get("/api/v1/pipelines/opportunity_sales/forecast", query_string=query, headers=env.headers(user))


def test_rates_are_set_by_admins_and_read_by_anyone_signed_in(api_env: ApiEnv, client: Any) -> None:
    rate = {"from": "USD", "to": "CNY", "rate": "7.0", "date": "2026-11-01"}
    assert client.put("/api/v1/rates", json=rate).status_code == 401
    refused = _put(client, api_env, "rep1", rate)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    ok = _put(client, api_env, "admin", {"rates": [rate, {**rate, "rate": "7.2", "date": "2026-12-01"}]})
    assert ok.status_code == 200, ok.get_json()
    assert [r["rate"] for r in ok.get_json()["items"]] == ["7.0000000000", "7.2000000000"]
    listed = client.get("/api/v1/rates?currency=USD", headers=api_env.headers("rep1")).get_json()
    assert listed["currency"] == "CNY"
    assert [(r["date"], r["rate"], r["source"]) for r in listed["items"]] == [
        ("2026-11-01", "7.0000000000", "api"), ("2026-12-01", "7.2000000000", "api")]


def test_bad_rates_are_refused_whole(api_env: ApiEnv, client: Any) -> None:
    good = {"from": "EUR", "to": "CNY", "rate": "7.8", "date": "2026-11-01"}
    bad = _put(client, api_env, "admin", {"rates": [good, {**good, "to": "CNX"}]})
    assert bad.status_code == 400
    err = bad.get_json()["error"]
    assert err["code"] == "invalid_currency" and "'CNX' is not an ISO 4217 currency code" in err["message"]
    assert _put(client, api_env, "admin", {**good, "rate": 0}).get_json()["error"]["code"] == "bad_rate"
    eur = client.get("/api/v1/rates?currency=EUR", headers=api_env.headers("admin")).get_json()
    assert eur["items"] == []  # the good first rate was not kept either


def test_the_forecast_adds_cny_and_usd_in_cny_at_the_dated_rate(api_env: ApiEnv, client: Any) -> None:
    _put(client, api_env, "admin", {"from": "USD", "to": "CNY", "rate": "7.0", "date": "2026-11-01"})
    _put(client, api_env, "admin", {"from": "USD", "to": "CNY", "rate": "7.2", "date": "2026-12-01"})
    account = create(client, api_env, "rep2", "account", {"name": "苏州精密机械"})
    for amount, currency in (("1000", "CNY"), ("100", "USD")):
        create(client, api_env, "rep2", "opportunity", {"name": f"Line {currency}", "account": account["id"],
                                                        "amount": amount, "amount_currency": currency})
    november = _forecast(client, api_env, "rep2", as_of="2026-11-15")
    assert november.status_code == 200, november.get_json()
    body = november.get_json()
    first = body["stages"][0]
    assert (body["currency"], body["as_of"], first["stage"], first["count"], first["amount"]) == (
        "CNY", "2026-11-15", "qualification", 2, "1700.00")
    december = _forecast(client, api_env, "rep2", as_of="2026-12-05", currency="USD").get_json()
    assert december["currency"] == "USD" and december["stages"][0]["amount"] == "238.89"  # 1000 / 7.2 + 100
    listed = client.get("/api/v1/records/opportunity", query_string={
        "filter": "convert(amount, 'CNY') < 800", "fields": "name"}, headers=api_env.headers("rep2"))
    assert listed.status_code == 200, listed.get_json()
    assert [r["name"] for r in listed.get_json()["items"]] == ["Line USD"]  # 100 USD is 700 or 720 CNY today
    rep3 = _forecast(client, api_env, "rep3", as_of="2026-11-15").get_json()
    assert rep3["stages"][0]["count"] == 0  # another rep's deals are not in their forecast


def test_a_missing_rate_is_409_naming_the_pair_and_the_day(api_env: ApiEnv, client: Any) -> None:
    account = create(client, api_env, "rep1", "account", {"name": "Acme GmbH"})
    create(client, api_env, "rep1", "opportunity", {"name": "Euro deal", "account": account["id"],
                                                    "amount": "50", "amount_currency": "JPY"})
    resp = _forecast(client, api_env, "rep1", as_of="2026-12-05")
    assert resp.status_code == 409
    err = resp.get_json()["error"]
    assert err["code"] == "missing_exchange_rate"
    assert {k: err["details"][k] for k in ("from", "to", "date")} == {"from": "JPY", "to": "CNY", "date": "2026-12-05"}
    assert "crm rates set JPY CNY" in err["details"]["hint"]
    bad_day = _forecast(client, api_env, "rep1", as_of="05/12/2026").get_json()["error"]
    assert bad_day["code"] == "bad_date"


def test_the_openapi_document_lists_the_rates_and_forecast_paths(api_env: ApiEnv, client: Any) -> None:
    doc = client.get("/api/v1/openapi.json", headers=api_env.headers("rep1")).get_json()
    assert set(doc["paths"]["/rates"]) == {"get", "put"}
    assert "403" in doc["paths"]["/rates"]["put"]["responses"]
    assert "409" in doc["paths"]["/pipelines/{name}/forecast"]["get"]["responses"]
