"""The dedupe and conversion parts of the sales scenario, through a real waitress server, on SQLite and
PostgreSQL: a second lead with the same phone written differently is flagged; a lead for 苏州精密机械有限公司
converts onto the existing account 苏州精密机械, with a contact and an opportunity made in one transaction."""

from __future__ import annotations

import random

from tests.api.conftest import ApiEnv
from tests.api.test_live import http_json


def test_phone_duplicate_and_conversion_onto_the_existing_account(live_server: str, api_env: ApiEnv) -> None:
    rep = api_env.tokens["rep1"]
    n = f"{random.randrange(10**8):08d}"
    status, first = http_json(live_server, "POST", "/api/v1/records/lead", rep,
                              {"company": f"展会客户{n}", "phone": f"+86 138-{n[:4]}-{n[4:]}", "source": "exhibition"})
    assert status == 201, first
    status, second = http_json(live_server, "POST", "/api/v1/records/lead", rep,
                               {"company": f"展会客户乙{n}", "phone": f"138{n}"})
    assert status == 201 and [(d["entity"], d["id"]) for d in second["_duplicates"]] == [("lead", first["id"])]
    assert second["_duplicates"][0]["matched_by"][0]["kind"] == "phone"

    status, account = http_json(live_server, "POST", "/api/v1/records/account", rep, {"name": f"苏州精密机械{n}"})
    assert status == 201, account
    status, lead = http_json(live_server, "POST", "/api/v1/records/lead", rep, {
        "company": f"苏州精密机械{n}有限公司", "contact_name": "周工", "email": f"zhou{n}@szjm.cn", "budget": 300000})
    assert status == 201 and ("account", account["id"]) in [(d["entity"], d["id"]) for d in lead["_duplicates"]]

    # a failing opportunity leaves no contact behind (and the account stays as it was)
    status, failed = http_json(live_server, "POST", f"/api/v1/records/lead/{lead['id']}/convert", rep,
                               {"values": {"opportunity": {"amount": -1}}})
    assert status == 400 and "opportunity.amount" in failed["error"]["details"]
    status, contacts = http_json(live_server, "GET", f"/api/v1/records/contact?filter=account%20%3D%3D%20"
                                 f"{account['id']}", rep)
    assert status == 200 and contacts["items"] == []

    status, done = http_json(live_server, "POST", f"/api/v1/records/lead/{lead['id']}/convert", rep, {})
    assert status == 201, done
    records = done["records"]
    assert done["reused"] == ["account"] and records["account"]["id"] == account["id"]
    assert records["contact"]["account"] == account["id"] and records["opportunity"]["account"] == account["id"]
    assert records["opportunity"]["primary_contact"] == records["contact"]["id"]
    assert done["source"]["record"]["status"] == "converted"
    status, again = http_json(live_server, "POST", f"/api/v1/records/lead/{lead['id']}/convert", rep, {})
    assert status == 409 and again["error"]["code"] == "already_converted"
