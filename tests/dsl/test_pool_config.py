"""The ``pool:`` kind: what a pool document compiles to, the fields it adds, and its located errors."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.dsl.compiler import compile_folder
from engine.dsl.sales.pool import Pool, duration_text, parse_duration, pools_of
from tests.dsl.config_helpers import errors_of, where
from tests.dsl.conftest import WriteWs

POOL = """\
    pool: handout
    entity: lead
    label: {en: Hand-out pool, zh: 分配池}
    kind: assign
    when: "region == 'north'"
    members: {team: north_sales, users: [li.sales]}
    admins: {role: sales_manager}
    holding_limit: 5
    limit_excludes: "status == 'converted'"
    daily_claim_limit: 3
    reclaim_cooldown: 12h
    hidden_fields: [phone, email]
    auto_return: "days_since(claimed_at) > 30"
    recycle:
      - {when: "grade == 'C' and days_since(max(last_activity_at, claimed_at)) > 5", reason: {zh: C级5天未跟进}}
    warn_before: 2d
    return_reasons: [unreachable, {key: no_need, label: {en: No need, zh: 无需求}}]
    return_to: general_pool
    """


def test_a_pool_compiles_with_its_rules_limits_and_audiences(write_ws: WriteWs) -> None:
    ws = compile_folder(write_ws({"pools/handout.yaml": POOL}))
    pool = ws.objects_of("pool")["handout"].compiled
    assert isinstance(pool, Pool)
    assert (pool.kind, pool.holding_limit, pool.daily_claim_limit) == ("assign", 5, 3)
    assert pool.reclaim_cooldown == dt.timedelta(hours=12) and pool.warn_before == dt.timedelta(days=2)
    assert pool.members.teams == ("north_sales",) and pool.members.users == ("li.sales",)
    assert pool.admins.roles == ("sales_manager",)
    assert [r.text for r in pool.recycle] == ["days_since(claimed_at) > 30",
                                              "grade == 'C' and days_since(max(last_activity_at, claimed_at)) > 5"]
    assert pool.recycle[1].reason["zh"] == "C级5天未跟进" and "Recycled" in pool.recycle[0].reason["en"]
    assert [r.key for r in pool.return_reasons] == ["unreachable", "no_need"]
    assert pool.never_recycle is not None and pool.never_recycle.source == "status in ['converted']"
    assert pool.when is not None and pool.when.evaluate({"region": "north"}) is True
    assert pool.return_to == "general_pool" and pool.hidden_fields == ("phone", "email")
    # the pool fields exist on the entity, so the planner creates their columns
    lead = ws.entities["lead"]
    assert lead.fields["pool"].index and lead.fields["pool"].readonly and lead.fields["claimed_at"].type == "datetime"
    assert {p.name for p in pools_of(ws, "lead")} == {"east_pool", "general_pool", "handout"}


def test_never_recycle_null_recycles_everything(write_ws: WriteWs) -> None:
    ws = compile_folder(write_ws({"pools/p.yaml": "pool: p\nentity: lead\nnever_recycle: null\n"
                                                  "recycle: [{when: 'days_since(claimed_at) > 1'}]\n"}))
    assert ws.objects_of("pool")["p"].compiled.never_recycle is None


def test_durations() -> None:
    assert parse_duration("3d") == dt.timedelta(days=3) and parse_duration("30m") == dt.timedelta(minutes=30)
    assert duration_text(dt.timedelta(days=3)) == "3d" and duration_text(dt.timedelta(hours=36)) == "36h"


@pytest.mark.parametrize(("text", "code", "line", "col", "message"), [
    ("pool: p\nentity: leed\n", "unknown_reference", 2, 9, "unknown entity 'leed'"),
    ("pool: p\nentity: lead\nadmins: {roles: [sales_manger]}\n", "unknown_reference", 3, 18, "unknown role"),
    ("pool: p\nentity: lead\nhidden_fields: [phone, mobile]\n", "unknown_reference", 3, 24, "lead.mobile"),
    ("pool: p\nentity: lead\nrecycle:\n  - {when: \"days_since(last_activty_at) > 7\"}\n", "expression_unknown_field",
     4, 24, "last_activty_at"),
    ("pool: p\nentity: lead\nwhen: \"region == 'middle'\"\n", "expression_unknown_option", 3, 18, "middle"),
    ("pool: p\nentity: lead\nreturn_to: nowhere\n", "unknown_reference", 3, 12, "unknown pool 'nowhere'"),
    ("pool: p\nentity: lead\nreturn_reasons: [a, a]\n", "schema_violation", 3, 21, "twice"),
    ("pool: p\nentity: lead\nreclaim_cooldown: 3 days\n", "schema_pattern", 3, 19, "3 days"),
    ("pool: p\nentity: lead\nkind: grab\n", "schema_enum", 3, 7, "grab"),
    ("pool: p\nentity: lead\nlimit_excludes: \"status\"\n", "expression_wrong_result_type", 3, 18, ""),
])
def test_located_errors(write_ws: WriteWs, text: str, code: str, line: int, col: int, message: str) -> None:
    [err] = errors_of(write_ws({"pools/p.yaml": text}))
    assert err.code == code, str(err)
    assert where(err) == ("p.yaml", line, col), str(err)
    assert message in str(err)


def test_a_pool_without_an_entity_is_located(write_ws: WriteWs) -> None:
    [err] = errors_of(write_ws({"pools/p.yaml": "pool: p\nkind: claim\n"}))
    assert err.code == "schema_required" and where(err)[:2] == ("p.yaml", 1) and "names no entity" in str(err)


def test_return_to_a_pool_of_another_entity(write_ws: WriteWs) -> None:
    text = "pool: p\nentity: lead\nreturn_to: q\n---\npool: q\nentity: account\n"
    [err] = errors_of(write_ws({"pools/p.yaml": text}))
    assert "a pool of account" in str(err) and where(err) == ("p.yaml", 3, 12)


def test_an_extend_layer_replaces_rules_and_adds_reasons(write_ws: WriteWs) -> None:
    ws = compile_folder(write_ws({"pools/east.yaml": """\
        pool: east_pool
        extend: true
        members: {teams: [east_sales], roles: []}
        recycle: [{when: "days_since(claimed_at) > 3", reason: {en: Three days}}]
        return_reasons: [{key: moved_away, label: {en: Moved away}}]
        """}))
    pool = ws.objects_of("pool")["east_pool"].compiled
    assert pool.members.teams == ("east_sales",) and pool.members.roles == ()
    assert [r.text for r in pool.recycle] == ["days_since(claimed_at) > 3"]
    assert pool.return_reasons[-1].key == "moved_away" and pool.reason("unreachable") is not None
