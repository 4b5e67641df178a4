"""Located errors of ``approval:`` documents: every problem at once, each at its file:line:col."""

from __future__ import annotations

from engine.errors import ExpressionError, UnknownReference
from tests.dsl.approvals_helpers import errors_of, where
from tests.dsl.conftest import WriteWs

BAD = """\
    approval: a
    entity: quote
    trigger: {on: [update], when: "discount_rate > "}
    steps:
      - {name: m, assignee: {role: sales_directr}}
      - {name: n, assignee: "manager_of(ownr)", editable: [nots]}
      - {name: o, assignee: "discount_rate"}
      - {name: m, assignee: owner, mode: ratio}
    timeout: {after: 48x}
    on_approved: [{set: {approval_status: aproved}}, {stage: won}]
    on_rejected: [{set: {nofield: 1}}]
    migrate: {old: gone}
    """


def test_every_problem_of_a_document_is_reported_where_it_was_written(write_ws: WriteWs) -> None:
    errors = errors_of(write_ws({"approvals/a.yaml": BAD}))
    found = {where(e): e for e in errors}
    expected = {
        ("a.yaml", 3, 47): "ends too early",
        ("a.yaml", 5, 32): "unknown role 'sales_directr'",
        ("a.yaml", 6, 37): "unknown field 'ownr'",
        ("a.yaml", 6, 56): "has no field 'nots'",
        ("a.yaml", 7, 26): "gives a number, not a user",
        ("a.yaml", 8, 12): "step name 'm' is used twice",
        ("a.yaml", 8, 38): "mode ratio needs ratio",
        ("a.yaml", 9, 18): "'48x' is not a duration",
        ("a.yaml", 10, 39): "'aproved' is not an option of quote.approval_status",
        ("a.yaml", 10, 58): "quote has no pipeline",
        ("a.yaml", 11, 22): "unknown field quote.nofield",
        ("a.yaml", 12, 16): "no step 'gone'",
    }
    for at, text in expected.items():
        assert at in found, (at, [str(e) for e in errors])
        assert text in found[at].message, (at, found[at].message)
    assert len(errors) == len(expected)
    role = found[("a.yaml", 5, 32)]
    assert isinstance(role, UnknownReference) and role.hint == "did you mean 'sales_director'?"
    assert isinstance(found[("a.yaml", 6, 37)], ExpressionError)


def test_steps_and_bpmn_are_exclusive_and_one_is_needed(write_ws: WriteWs) -> None:
    both = errors_of(write_ws({"approvals/a.yaml": "approval: a\nentity: quote\nbpmn: x.bpmn\nprocess: p\n"
                                                   "steps: [{name: m, assignee: owner}]\n"}, name="both"))
    assert [(where(e), "both steps and bpmn" in e.message) for e in both] == [(("a.yaml", 3, 7), True)]
    neither = errors_of(write_ws({"approvals/a.yaml": "approval: a\nentity: quote\n"}, name="neither"))
    assert [(where(e), "neither steps nor bpmn" in e.message) for e in neither] == [(("a.yaml", 1, 1), True)]


def test_a_missing_bpmn_file_is_located_at_the_bpmn_value(write_ws: WriteWs) -> None:
    yaml = "approval: a\nentity: quote\nbpmn: flows/none.bpmn\nprocess: p\n"
    errors = errors_of(write_ws({"approvals/a.yaml": yaml}))
    assert [where(e) for e in errors] == [("a.yaml", 3, 7)]
    assert "no BPMN file 'flows/none.bpmn'" in errors[0].message and errors[0].code == "bpmn_missing"
    assert "relative to this YAML file" in (errors[0].hint or "")


def test_unknown_entity_stage_flow_and_status_field(write_ws: WriteWs) -> None:
    errors = errors_of(write_ws({"approvals/a.yaml": """\
        approval: a
        entity: opportunity
        steps: [{name: m, assignee: owner}]
        on_approved: [{stage: wonn}]
        status_field: stage_x
        ---
        approval: b
        entity: quote
        steps: [{name: m, assignee: owner}]
        on_approved: [{start: e}]
        ---
        approval: c
        entity: quot
        steps: [{name: m, assignee: owner}]
        ---
        approval: d
        entity: quote
        steps: [{name: m, assignee: owner}]
        on_approved: [{start: nope}]
        ---
        approval: e
        entity: contract
        steps: [{name: m, assignee: owner}]
        """}))
    found = {where(e): e.message for e in errors}
    assert "unknown stage 'wonn'" in found[("a.yaml", 4, 23)]
    assert "not a picklist field of opportunity" in found[("a.yaml", 5, 15)]
    assert "unknown entity 'quot'" in found[("a.yaml", 13, 9)]
    assert "starts unknown flow 'nope'" in found[("a.yaml", 19, 23)]
    assert "a flow of contract" in found[("a.yaml", 10, 23)]
    assert len(errors) == 5


def test_timeouts_modes_and_ratios_are_checked(write_ws: WriteWs) -> None:
    errors = errors_of(write_ws({"approvals/a.yaml": """\
        approval: a
        entity: quote
        steps:
          - {name: m, assignee: owner, ratio: 0.5}
          - {name: n, approvers: [owner], assignee: owner}
          - {name: start, assignee: owner}
        timeout: {after: 24h, remind_every: 2d}
        cc: [{role: nobody}]
        """}))
    found = {where(e): e.message for e in errors}
    assert "ratio: is only for mode: ratio" in found[("a.yaml", 4, 39)]
    assert "exactly one of assignee and approvers" in found[("a.yaml", 5, 5)]
    assert "reserved" in found[("a.yaml", 6, 12)]
    assert "remind_every is not shorter than after" in found[("a.yaml", 7, 37)]
    assert "unknown role 'nobody'" in found[("a.yaml", 8, 13)]
    assert len(errors) == 5
