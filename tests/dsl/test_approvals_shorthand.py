"""The ``approval:`` shorthand: what ``steps:`` compiles to, the BPMN it writes (parsed by SpiffWorkflow's
CamundaParser, with a complete diagram), and a run of that BPMN that routes by our compiled conditions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from engine.dsl.approvals.shorthand import REJECTED
from tests.dsl.approvals_helpers import flow_of, missing_di, run_flow, spiff_spec
from tests.dsl.conftest import WriteWs

FULL = """\
    approval: big_quote
    label: {en: Big quote, zh: 大额报价}
    entity: quote
    trigger: {on: [create, update], when: "discount_rate > 0.2"}
    lock_record: false
    editable_while_pending: [notes, terms]
    steps:
      - {name: manager, assignee: "manager_of(owner)", editable: [notes]}
      - name: board
        approvers: [{user: li.sales}, {role: sales_director}, {team: east_sales}, "manager_of(manager_of(owner))"]
        mode: ratio
        ratio: 0.6
        timeout: {after: 3d, then: auto_approve}
      - {name: climb, approvers: ["manager_of(owner)", "manager_of(manager_of(owner))"], mode: sequential}
      - name: checks
        when: "total >= 1000000"
        mode: all
        parallel:
          - {name: finance, assignee: {role: finance}}
          - {name: legal, assignee: {role: legal}, mode: any}
    cc: [{role: sales_manager}, "owner"]
    timeout: {after: 48h, remind_every: 24h, then: {escalate_to: [{role: sales_director}, "manager_of(owner)"]}}
    on_approved: [{set: {approval_status: approved, notes: "concat('approved: ', coalesce(notes, ''))"}}]
    on_rejected: [{set: {approval_status: rejected, discount_rate: 0}}, {start: small_quote}]
    on_withdrawn: [{set: {approval_status: withdrawn}}]
    migrate: {old_manager: manager}
    ---
    approval: small_quote
    entity: quote
    steps: [{name: manager, assignee: "owner"}]
    """


def test_steps_compile_with_assignees_modes_timeouts_and_actions(write_ws: WriteWs) -> None:
    flow = flow_of(write_ws({"approvals/q.yaml": FULL}), "big_quote")
    assert flow.shorthand and flow.process_id == "big_quote" and flow.entity == "quote"
    assert flow.label["zh"] == "大额报价" and flow.lock_record is False
    assert flow.trigger.on == ("create", "update") and flow.trigger.when is not None
    assert flow.trigger.when.evaluate({"discount_rate": Decimal("0.25")}) is True
    assert list(flow.steps) == ["manager", "board", "climb", "finance", "legal"]
    board = flow.steps["board"]
    assert [a.describe() for a in board.assignees] == ["user li.sales", "role sales_director", "team east_sales",
                                                       "manager_of(manager_of(owner))"]
    assert board.mode == "ratio" and board.ratio == 0.6
    assert board.timeout is not None and board.timeout.after == dt.timedelta(days=3)
    assert board.timeout.then == "auto_approve"
    # a step without its own timeout gets the flow's
    manager = flow.steps["manager"]
    assert manager.timeout == flow.timeout and manager.editable == ("notes",)
    assert flow.timeout is not None and flow.timeout.then == "escalate"
    assert flow.timeout.remind_every == dt.timedelta(hours=24)
    assert [a.describe() for a in flow.timeout.escalate_to] == ["role sales_director", "manager_of(owner)"]
    assert flow.steps["climb"].mode == "sequential"
    # a group's mode is its branches' default; a branch may say its own
    assert (flow.steps["finance"].mode, flow.steps["legal"].mode) == ("all", "any")
    assert [a.describe() for a in flow.cc] == ["role sales_manager", "owner"]
    assert flow.editable_while_pending == ("notes", "terms") and flow.status_field == "approval_status"
    assert flow.migrate == {"old_manager": "manager"}
    assert [a.kind for a in flow.on_rejected] == ["set", "start"] and flow.on_rejected[1].flow == "small_quote"
    values = flow.on_rejected[0].values
    assert values["approval_status"].evaluate({}) == "rejected" and values["discount_rate"].evaluate({}) == 0
    assert flow.on_approved[0].values["notes"].evaluate({"notes": "ok"}) == "approved: ok"
    assert flow.on_withdrawn[0].values["approval_status"].evaluate({}) == "withdrawn"
    # every condition in the generated XML is compiled, keyed by its text
    assert set(flow.expressions) == {REJECTED, "total >= 1000000"}
    assert all(f"{text.replace('>', '&gt;')}</bpmn:conditionExpression>" in flow.bpmn_xml for text in flow.expressions)
    assert flow.digest and len(flow.digest) == 16


def test_the_generated_bpmn_parses_and_carries_the_conventions(write_ws: WriteWs) -> None:
    flow = flow_of(write_ws({"approvals/q.yaml": FULL}), "big_quote")
    spec = spiff_spec(flow.bpmn_xml, flow.process_id)
    for name in flow.steps:
        assert name in spec.task_specs, name
    assert {"approved", "rejected", "start"} <= set(spec.task_specs)
    assert spec.task_specs["board"].extensions["crm:mode"] == "ratio"
    assert spec.task_specs["board"].extensions["crm:ratio"] == "0.6"
    assert spec.task_specs["board"].extensions["crm:timeout"] == "3d"
    assert spec.task_specs["manager"].extensions["crm:then"] == "escalate_to role:sales_director; manager_of(owner)"
    assert spec.task_specs["manager"].extensions["crm:editable"] == "notes"
    assert spec.task_specs["climb"].extensions["crm:assignees"] == "manager_of(manager_of(owner))"
    assert 'camunda:assignee="${manager_of(owner)}"' in flow.bpmn_xml
    assert 'camunda:candidateGroups="sales_director"' in flow.bpmn_xml
    assert 'camunda:assignee="li.sales"' in flow.bpmn_xml or 'camunda:candidateUsers="li.sales"' in flow.bpmn_xml
    assert 'isExecutable="true"' in flow.bpmn_xml and "xmlns:camunda=" in flow.bpmn_xml
    assert missing_di(flow.bpmn_xml, flow.process_id) == []


def test_the_shipped_quote_discount_compiles_to_bpmn_with_a_full_diagram() -> None:
    flow = flow_of(Path(__file__).resolve().parents[2] / "configs" / "base", "quote_discount")
    assert list(flow.steps) == ["manager", "director", "finance", "legal"]
    assert flow.steps["manager"].assignees[0].kind == "expression"
    assert flow.steps["director"].assignees[0].describe() == "role sales_director"
    assert [a.describe() for a in flow.cc] == ["role sales_manager"]
    assert flow.timeout is not None and flow.timeout.after == dt.timedelta(hours=48)
    assert [a.describe() for a in flow.timeout.escalate_to] == ["role sales_director"]
    assert flow.editable_while_pending == ("notes",)
    assert missing_di(flow.bpmn_xml, flow.process_id) == []
    spiff_spec(flow.bpmn_xml, flow.process_id)


# --------------------------------------------------------------------------- a run on SpiffWorkflow


def test_a_run_takes_the_steps_whose_conditions_hold() -> None:
    flow = flow_of(Path(__file__).resolve().parents[2] / "configs" / "base", "quote_discount")
    small = {"discount_rate": Decimal("0.25"), "total": Decimal(1000)}
    assert run_flow(flow, small, {}) == (["manager"], "approved")
    large = {"discount_rate": Decimal("0.4"), "total": Decimal(2_000_000)}
    decided, end = run_flow(flow, large, {})
    assert decided[:2] == ["manager", "director"] and sorted(decided[2:]) == ["finance", "legal"]
    assert end == "approved"
    assert run_flow(flow, large, {"manager": False}) == (["manager"], "rejected")
    assert run_flow(flow, large, {"director": False}) == (["manager", "director"], "rejected")


SMALL = """\
    approval: q
    entity: quote
    label: {en: Q}
    steps: [{name: manager, assignee: "manager_of(owner)"}]
    """


def test_a_changed_flow_has_a_new_digest_a_relabelled_one_does_not(write_ws: WriteWs) -> None:
    first = flow_of(write_ws({"approvals/q.yaml": SMALL}, name="one"), "q").digest
    relabelled = flow_of(write_ws({"approvals/q.yaml": SMALL.replace("{en: Q}", "{en: Quote}")}, name="two"), "q")
    two_steps = SMALL.replace("]\n", ", {name: director, assignee: {role: sales_director}}]\n")
    changed = flow_of(write_ws({"approvals/q.yaml": two_steps}, name="three"), "q")
    assert relabelled.digest == first
    assert list(changed.steps) == ["manager", "director"] and changed.digest != first


def test_a_later_layer_extends_a_flow(write_ws: WriteWs) -> None:
    folder = write_ws({"approvals/q.yaml": """\
        approval: quote_discount
        extend: true
        timeout: {after: 1d, then: auto_reject}
        steps: [{name: manager, assignee: "manager_of(owner)"}, {name: vp, assignee: {user: zhao.vp}}]
        migrate: {director: vp}
        """})
    flow = flow_of(folder, "quote_discount")
    assert list(flow.steps) == ["manager", "vp"] and flow.migrate == {"director": "vp"}
    assert flow.timeout is not None and flow.timeout.then == "auto_reject"
    assert flow.steps["vp"].timeout == flow.timeout
    # what the base layer said and the workspace did not stays
    assert flow.editable_while_pending == ("notes",) and flow.trigger.when is not None


def test_a_stage_action_names_a_stage_of_the_pipeline(write_ws: WriteWs) -> None:
    flow = flow_of(write_ws({"approvals/o.yaml": """\
        approval: big_deal
        entity: opportunity
        trigger: {on: [update], when: "amount > 1000000"}
        steps: [{name: director, assignee: {role: sales_director}}]
        on_approved: [{stage: negotiation}]
        on_rejected: [{stage: lost}]
        """}), "big_deal")
    assert [(a.kind, a.stage) for a in (*flow.on_approved, *flow.on_rejected)] == [("stage", "negotiation"),
                                                                                  ("stage", "lost")]
    assert flow.status_field is None  # opportunity has no approval_status
