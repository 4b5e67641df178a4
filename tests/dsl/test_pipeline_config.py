"""The ``pipeline:`` kind: it owns its stage field's options; stages layer by key; located config errors;
the transition rules (sequential, any, explicit with roles)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.dsl.compiler import compile_folder
from engine.dsl.model import Workspace
from engine.dsl.sales.pipeline import Pipeline
from tests.dsl.test_config_errors import errors_of, only_error, where

ROOT = Path(__file__).resolve().parents[2]
BASE_STAGES = ["qualification", "needs_analysis", "proposal", "negotiation", "won", "lost"]


def _pipeline(ws: Workspace, name: str = "opportunity_sales") -> Pipeline:
    compiled = ws.objects_of("pipeline")[name].compiled
    assert isinstance(compiled, Pipeline)
    return compiled


def _extend(write_ws, stages: str, *, extends: str = "base", more: str = "") -> Path:
    return write_ws({"pipelines/sales.yaml": "pipeline: opportunity_sales\nextend: true\n" + more
                     + "stages:\n" + stages}, extends=extends)


def test_the_shipped_pipelines_own_the_stage_field() -> None:
    for layer in ("base", "industries/manufacturing"):
        ws = compile_folder(ROOT / "configs" / layer)
        stage = ws.entities["opportunity"].fields["stage"]
        assert [o.key for o in stage.options] == BASE_STAGES
        assert stage.options_owner == "pipeline opportunity_sales"
        assert dict(stage.options[2].label) == {"en": "Proposal", "zh": "方案报价"}  # the entity's labels
        # tasks know the stage they were made for once a stage creates tasks (manufacturing's do)
        assert ("pipeline_stage" in ws.entities["task"].fields) is (layer != "base")
    manufacturing = _pipeline(ws)
    proposal = manufacturing.stage("proposal")
    assert proposal is not None and "budget_range" in proposal.requires and proposal.requires_tasks_done
    assert [t.subject["zh"] for t in proposal.tasks] == ["准备技术方案", "报价评审"]
    negotiation = manufacturing.stage("negotiation")
    assert negotiation is not None and negotiation.requires == ("customer_feedback",)
    assert negotiation.gate is not None and negotiation.gate.source == "amount > 0"  # kept from the base layer
    feedback = ws.entities["opportunity"].fields["customer_feedback"]
    assert {"预算不足", "竞品对比"} <= {o.label["zh"] for o in feedback.options}


def test_a_stage_added_after_proposal_in_a_workspace_layer(write_ws) -> None:
    ws = compile_folder(_extend(write_ws, "  - {key: solution_review, after: proposal, probability: 60, "
                                          "label: {zh: 方案评审}}\n", extends="industries/manufacturing"))
    stage = ws.entities["opportunity"].fields["stage"]
    assert [o.key for o in stage.options] == ["qualification", "needs_analysis", "proposal", "solution_review",
                                              "negotiation", "won", "lost"]
    assert dict(stage.options[3].label) == {"zh": "方案评审", "en": "Solution review"}
    review = _pipeline(ws).stage("solution_review")
    assert review is not None and review.probability == 60
    assert _pipeline(ws).moves_from("proposal", ["sales"]) == ["solution_review", "won", "lost"]


def test_a_removed_stage_becomes_the_fields_replace_mapping(write_ws) -> None:
    ws = compile_folder(_extend(write_ws, "  - {key: needs_analysis, remove: true, move_to: qualification}\n"))
    stage = ws.entities["opportunity"].fields["stage"]
    assert "needs_analysis" not in stage.option_keys
    assert dict(stage.replace) == {"needs_analysis": "qualification"}
    assert _pipeline(ws).moves_from("qualification", ["sales"]) == ["proposal", "won", "lost"]


def test_a_gate_may_compare_with_a_stage_added_in_the_same_layer(write_ws) -> None:
    ws = compile_folder(_extend(write_ws, "  - {key: on_hold, after: negotiation}\n"
                                          "  - {key: won, gate: \"old.stage != 'on_hold'\"}\n"))
    won = _pipeline(ws).stage("won")
    assert won is not None and won.gate is not None


# --------------------------------------------------------------------------- located errors


def test_unknown_stage_in_a_transition(write_ws) -> None:
    err = only_error(_extend(write_ws, "  - {key: won}\n",
                             more="transitions:\n  - [qualification, proposal]\n  - {from: proposal, to: wonn}\n"))
    assert err.code == "unknown_reference"
    assert where(err) == ("sales.yaml", 5, 26)
    assert "transition names unknown stage 'wonn'" in err.message and err.hint == "did you mean 'won'?"


def test_unknown_field_in_requires(write_ws) -> None:
    err = only_error(_extend(write_ws, "  - key: proposal\n    requires: [amount, budgte]\n"))
    assert err.code == "unknown_reference"
    assert where(err) == ("sales.yaml", 5, 24)
    assert "stage 'proposal' requires 'budgte', which is not a field of opportunity" in err.message


def test_a_gate_that_does_not_type_check(write_ws) -> None:
    err = only_error(_extend(write_ws, "  - key: negotiation\n    gate: \"amount > 'lots'\"\n"))
    assert err.code.startswith("expression")
    assert err.location is not None and Path(err.location.file).name == "sales.yaml" and err.location.line == 5
    gate = only_error(_extend(write_ws, "  - key: negotiation\n    gate: \"stage == 'proposel'\"\n"))
    assert "'proposel' is not an option of stage" in gate.message
    assert gate.hint is not None and "proposal" in gate.hint
    not_boolean = only_error(_extend(write_ws, "  - key: negotiation\n    gate: \"amount\"\n"))
    assert not_boolean.location is not None and not_boolean.location.line == 5


def test_a_lost_stage_must_require_a_reason(write_ws) -> None:
    err = only_error(write_ws({"pipelines/p.yaml": """\
        pipeline: other
        entity: bid
        field: status
        stages:
          - {key: draft}
          - {key: cancelled, outcome: lost}
    """, "entities/bid.yaml": """\
        entity: bid
        fields:
          status: {type: picklist, options: [draft, cancelled], default: draft}
    """}))
    assert err.code == "schema_violation"
    assert where(err) == ("p.yaml", 6, 31)
    assert "stage 'cancelled' closes a deal as lost but requires no reason field" in err.message
    assert err.hint is not None and err.hint.startswith("add 'requires: [")


def test_an_entity_option_that_is_no_stage_points_at_the_option(write_ws) -> None:
    ws = write_ws({"entities/opportunity.yaml": "entity: opportunity\nextend: true\nfields:\n  stage:\n"
                                                "    options: {add: [on_hold], after: negotiation}\n"})
    err = only_error(ws)
    assert where(err) == ("opportunity.yaml", 5, 21)
    assert "option 'on_hold' is not a stage of pipeline 'opportunity_sales'" in err.message
    assert err.hint is not None and "{key: on_hold, after: <stage>}" in err.hint


def test_move_to_mistakes(write_ws) -> None:
    errs = errors_of(_extend(write_ws, "  - {key: proposal, move_to: won}\n"
                                       "  - {key: negotiation, remove: true, move_to: proposl}\n"))
    assert [(e.code, where(e)) for e in errs] == [("schema_violation", ("sales.yaml", 4, 21)),
                                                  ("unknown_reference", ("sales.yaml", 5, 47))]
    assert "has move_to: but is not removed" in errs[0].message
    assert "moves its records to 'proposl'" in errs[1].message and errs[1].hint == "did you mean 'proposal'?"


def test_unknown_role_entity_and_field(write_ws) -> None:
    role = only_error(_extend(write_ws, "  - {key: won}\n", more="transitions:\n  - {from: '*', to: won, "
                                                              "roles: [sales_manger]}\n"))
    assert role.code == "unknown_reference" and where(role) == ("sales.yaml", 4, 34)
    assert role.hint == "did you mean 'sales_manager'?"
    entity = only_error(write_ws({"pipelines/p.yaml": "pipeline: p\nentity: oportunity\nstages: [{key: a}]\n"},
                                 name="e"))
    assert (entity.code, where(entity)) == ("unknown_reference", ("p.yaml", 2, 9))
    assert entity.hint == "did you mean 'opportunity'?"
    field = only_error(write_ws({"pipelines/p.yaml": "pipeline: p\nentity: lead\nfield: stauts\nstages: [{key: a}]\n"},
                                name="f"))
    assert (field.code, where(field)) == ("unknown_reference", ("p.yaml", 3, 8))
    assert field.hint == "did you mean 'status'?"


def test_a_second_pipeline_on_the_same_entity(write_ws) -> None:
    stages = ", ".join(f"{{key: {k}}}" for k in BASE_STAGES[:-1])
    err = only_error(write_ws({"pipelines/p.yaml": "pipeline: again\nentity: opportunity\n"
                                                   f"stages: [{stages}, {{key: lost, requires: [lost_reason]}}]\n"}))
    assert "entity 'opportunity' already has pipeline" in err.message and where(err) == ("p.yaml", 2, 9)


def test_a_schema_mistake_is_located_with_a_suggestion(write_ws) -> None:
    err = only_error(_extend(write_ws, "  - {key: won, probabilty: 100}\n"))
    assert err.code == "schema_unknown_property" and err.hint == "did you mean 'probability'?"


# --------------------------------------------------------------------------- transition rules


def _base_pipeline() -> Pipeline:
    return _pipeline(compile_folder(ROOT / "configs" / "base"))


def test_sequential_moves() -> None:
    p = _base_pipeline()
    assert p.moves_from("qualification", ["sales"]) == ["needs_analysis", "won", "lost"]
    assert p.moves_from("negotiation", ["sales"]) == ["won", "lost"]
    assert p.moves_from("won", ["sales"]) == []  # a closed deal reopens only through an admin
    assert p.moves_from("won", [], admin=True) == ["qualification", "needs_analysis", "proposal", "negotiation",
                                                   "lost"]


@given(st.sampled_from(BASE_STAGES), st.sampled_from(BASE_STAGES))
def test_sequential_is_one_step_forward_or_an_outcome(source: str, target: str) -> None:
    p = _SEQUENTIAL
    i, j = BASE_STAGES.index(source), BASE_STAGES.index(target)
    open_source = source not in ("won", "lost")
    expected = open_source and source != target and (target in ("won", "lost") or j == i + 1)
    assert p.allows(source, target, ["sales"]) is expected
    assert p.allows(source, target, [], admin=True)


_SEQUENTIAL = _base_pipeline()
