"""``bpmn:`` files: what a modeler's file reads into, and every refusal located at file.bpmn:line:col."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from engine.dsl.approvals.model import ApprovalFlow
from tests.dsl.approvals_helpers import errors_of, flow_of, missing_di, run_flow, where
from tests.dsl.conftest import WriteWs

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "fixtures" / "realworld" / "bpmn"
HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d1">\n'
        '<bpmn:process id="p" isExecutable="true">\n')
TAIL = "</bpmn:process>\n</bpmn:definitions>\n"


def ws_with(write_ws: WriteWs, body: str, *, entity: str = "contract", process: str = "p",
            name: str = "acme") -> Path:
    """A workspace with approval ``a`` on ``entity`` reading flows/a.bpmn = HEAD + body + TAIL (line 4 on)."""
    return write_ws({"approvals/a.yaml": f"approval: a\nentity: {entity}\nbpmn: flows/a.bpmn\nprocess: {process}\n",
                     "approvals/flows/a.bpmn": HEAD + body + TAIL}, name=name)


def test_the_shipped_contract_risk_file_compiles_with_lanes_as_roles() -> None:
    flow = flow_of(ROOT / "configs" / "base", "contract_risk")
    assert not flow.shorthand and flow.process_id == "contract_risk" and flow.source.endswith("contract_risk.bpmn")
    step = flow.steps["legal_review"]
    assert [a.describe() for a in step.assignees] == ["role legal"] and step.lane == "legal"
    assert step.editable == ("terms",) and step.timeout == flow.timeout
    cond = flow.expressions["credit_rating == 'low' or payment_term_days > 90"]
    assert cond.evaluate({"credit_rating": "low", "payment_term_days": 30}) is True
    assert cond.evaluate({"credit_rating": "high", "payment_term_days": 30}) is False
    assert flow.expressions["${!approved}"].evaluate({"approved": False}) is True
    assert flow.trigger.when is not None and missing_di(flow.bpmn_xml, flow.process_id) == []
    risky = {"credit_rating": "low", "payment_term_days": 30}
    assert run_flow(flow, risky, {}) == (["legal_review"], "approved")
    assert run_flow(flow, risky, {"legal_review": False}) == (["legal_review"], "rejected")
    assert run_flow(flow, {"credit_rating": "high", "payment_term_days": 30}, {}) == ([], "end")


def test_a_user_task_reads_assignees_candidates_properties_and_due_date(write_ws: WriteWs) -> None:
    folder = ws_with(write_ws, """\
<bpmn:startEvent id="s" />
<bpmn:userTask id="t1" name="Legal check" camunda:assignee="${manager_of(owner)}" camunda:candidateUsers="li,wang"
    camunda:candidateGroups="legal, finance" camunda:dueDate="${dateTime().plusDays(2).toDate()}">
  <bpmn:extensionElements><camunda:properties>
    <camunda:property name="crm:mode" value="ratio" /><camunda:property name="crm:ratio" value="0.6" />
    <camunda:property name="crm:team" value="east_sales" /><camunda:property name="crm:editable" value="terms,amount" />
  </camunda:properties></bpmn:extensionElements>
</bpmn:userTask>
<bpmn:userTask id="t2" camunda:assignee="zhang">
  <bpmn:extensionElements><camunda:properties>
    <camunda:property name="crm:timeout" value="PT12H" /><camunda:property name="crm:remind_every" value="4h" />
    <camunda:property name="crm:then" value="escalate_to role:sales_director; manager_of(owner)" />
  </camunda:properties></bpmn:extensionElements>
</bpmn:userTask>
<bpmn:serviceTask id="notify" camunda:class="org.example.Notify" />
<bpmn:serviceTask id="archive">
  <bpmn:extensionElements><camunda:properties><camunda:property name="crm:action" value="archive_contract" />
  </camunda:properties></bpmn:extensionElements>
</bpmn:serviceTask>
<bpmn:endEvent id="e" />
<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t1" />
<bpmn:sequenceFlow id="f2" sourceRef="t1" targetRef="t2" />
<bpmn:sequenceFlow id="f3" sourceRef="t2" targetRef="notify" />
<bpmn:sequenceFlow id="f4" sourceRef="notify" targetRef="archive" />
<bpmn:sequenceFlow id="f5" sourceRef="archive" targetRef="e" />
""")
    flow = flow_of(folder, "a")
    t1, t2 = flow.steps["t1"], flow.steps["t2"]
    assert [a.describe() for a in t1.assignees] == ["manager_of(owner)", "user li", "user wang", "role legal",
                                                    "role finance", "team east_sales"]
    assert t1.assignees[0].expression is not None and t1.label["en"] == "Legal check"
    assert (t1.mode, t1.ratio, t1.editable) == ("ratio", 0.6, ("terms", "amount"))
    assert t1.timeout is not None and t1.timeout.after == dt.timedelta(days=2) and t1.timeout.then == "remind"
    assert t1.location is not None and where_of(t1.location) == ("a.bpmn", 5, 1)
    assert [a.describe() for a in t2.assignees] == ["user zhang"] and t2.label["en"] == "t2"
    assert t2.timeout is not None and (t2.timeout.after, t2.timeout.remind_every) == (dt.timedelta(hours=12),
                                                                                     dt.timedelta(hours=4))
    assert t2.timeout.then == "escalate"
    assert [a.describe() for a in t2.timeout.escalate_to] == ["role sales_director", "manager_of(owner)"]
    assert flow.service_actions == {"notify": "org.example.Notify", "archive": "archive_contract"}


def where_of(loc: object) -> tuple[str, int, int]:
    return Path(loc.file).name, loc.line, loc.col  # type: ignore[attr-defined]


def test_conditions_translate_juel_and_may_read_form_variables(write_ws: WriteWs) -> None:
    folder = ws_with(write_ws, """\
<bpmn:startEvent id="s" />
<bpmn:userTask id="review" camunda:assignee="li">
  <bpmn:extensionElements><camunda:formData>
    <camunda:formField id="clarified" type="boolean" /><camunda:formField id="reason" type="string" />
  </camunda:formData></bpmn:extensionElements>
</bpmn:userTask>
<bpmn:exclusiveGateway id="g" />
<bpmn:endEvent id="yes" /><bpmn:endEvent id="no" />
<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="review" />
<bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="g" />
<bpmn:sequenceFlow id="f3" sourceRef="g" targetRef="yes">
  <bpmn:conditionExpression>${clarified &amp;&amp; amount gt 1000}</bpmn:conditionExpression>
</bpmn:sequenceFlow>
<bpmn:sequenceFlow id="f4" sourceRef="g" targetRef="no">
  <bpmn:conditionExpression>  ${!clarified || reason == 'late'}  </bpmn:conditionExpression>
</bpmn:sequenceFlow>
""")
    flow = flow_of(folder, "a")
    yes, no = flow.expressions["${clarified && amount gt 1000}"], flow.expressions["${!clarified || reason == 'late'}"]
    assert yes.source == "clarified and amount > 1000"
    assert yes.evaluate({"clarified": True, "amount": 2000}) is True
    assert no.evaluate({"clarified": True, "reason": "late"}) is True
    assert flow.extra["variables"] == {"clarified": "boolean", "reason": "string"}


def test_timers_quoted_or_not_are_iso_8601(write_ws: WriteWs) -> None:
    folder = ws_with(write_ws, """\
<bpmn:startEvent id="s" />
<bpmn:userTask id="t" camunda:assignee="li" />
<bpmn:boundaryEvent id="b1" attachedToRef="t"><bpmn:timerEventDefinition>
  <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">PT10M</bpmn:timeDuration></bpmn:timerEventDefinition>
</bpmn:boundaryEvent>
<bpmn:intermediateCatchEvent id="w"><bpmn:timerEventDefinition>
  <bpmn:timeDuration>"P1DT2H"</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
<bpmn:endEvent id="e" /><bpmn:endEvent id="e2" />
<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t" />
<bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="w" />
<bpmn:sequenceFlow id="f3" sourceRef="w" targetRef="e" />
<bpmn:sequenceFlow id="f4" sourceRef="b1" targetRef="e2" />
""")
    flow = flow_of(folder, "a")
    assert flow.timers == {"PT10M": "PT10M", '"P1DT2H"': "P1DT2H"}
    # the runtime's script engine looks timer texts up like conditions: a literal of the ISO text
    assert flow.expressions['"P1DT2H"'].evaluate({}) == "P1DT2H"


REFUSED = [
    ("script task", '<bpmn:scriptTask id="x" scriptFormat="python"><bpmn:script>import os</bpmn:script>'
                    "</bpmn:scriptTask>", (4, 1), "scriptTask 'x': script tasks are not run"),
    ("python condition", '<bpmn:exclusiveGateway id="x" /><bpmn:sequenceFlow id="y" sourceRef="x" targetRef="x">'
                         "\n<bpmn:conditionExpression>__import__('os').system('ls')</bpmn:conditionExpression>"
                         "</bpmn:sequenceFlow>", (5, 1),
     "condition \"__import__('os').system('ls')\" is not in the expression language"),
    ("business rule", '<bpmn:businessRuleTask id="x" camunda:decisionRef="d" />', (4, 1),
     "businessRuleTask 'x': business rule tasks (DMN decisions) are not run"),
    ("data store", '<bpmn:dataStoreReference id="x" />', (4, 1), "dataStoreReference 'x': data stores"),
    ("complex gateway", '<bpmn:complexGateway id="x" />', (4, 1), "complexGateway 'x'"),
    ("message event", '<bpmn:intermediateCatchEvent id="x"><bpmn:messageEventDefinition id="m" />'
                      "</bpmn:intermediateCatchEvent>", (4, 37), "messageEventDefinition 'm': message events"),
    ("listener script", '<bpmn:userTask id="x" camunda:assignee="li"><bpmn:extensionElements>\n'
                        '<camunda:taskListener event="create"><camunda:script scriptFormat="js">x()</camunda:script>'
                        "</camunda:taskListener></bpmn:extensionElements></bpmn:userTask>", (5, 1),
     "taskListener: listeners are not run"),
    ("nobody", '<bpmn:userTask id="x" />', (4, 1), "userTask 'x' names nobody to decide"),
    ("bad timer", '<bpmn:intermediateCatchEvent id="x"><bpmn:timerEventDefinition>\n<bpmn:timeDuration>10 minutes'
                  "</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>", (5, 1),
     "timeDuration '10 minutes' is not an ISO 8601 duration"),
    ("unknown lane role", '<bpmn:laneSet id="ls"><bpmn:lane id="l" name="Approver"><bpmn:flowNodeRef>x'
                          '</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>\n<bpmn:userTask id="x" />', (4, 23),
     "lane 'Approver' of userTask 'x' names unknown role 'Approver'"),
    ("candidate group expression", '<bpmn:userTask id="x" camunda:candidateGroups="${groups}" />', (4, 1),
     "camunda:candidateGroups '${groups}' is an expression"),
    ("unknown variable", '<bpmn:exclusiveGateway id="x" /><bpmn:sequenceFlow id="y" sourceRef="x" targetRef="x">'
                         "\n<bpmn:conditionExpression>${approval == 'ok'}</bpmn:conditionExpression>"
                         "</bpmn:sequenceFlow>", (5, 1),
     "condition \"${approval == 'ok'}\", read as \"approval == 'ok'\": unknown field 'approval'"),
    ("call activity", '<bpmn:callActivity id="x" calledElement="other" />', (4, 1),
     "callActivity 'x': call activities"),
    ("service task with no action", '<bpmn:serviceTask id="x" />', (4, 1), "serviceTask 'x': names no engine action"),
    ("misspelt crm property", '<bpmn:userTask id="x" camunda:assignee="li"><bpmn:extensionElements>'
                              '<camunda:properties>\n<camunda:property name="crm:mdoe" value="all" />'
                              "</camunda:properties></bpmn:extensionElements></bpmn:userTask>", (5, 1),
     "userTask 'x': unknown property 'crm:mdoe'"),
]


@pytest.mark.parametrize(("case", "body", "at", "text"), REFUSED, ids=[r[0] for r in REFUSED])
def test_what_the_engine_does_not_run_is_refused_at_the_element(write_ws: WriteWs, case: str, body: str,
                                                               at: tuple[int, int], text: str) -> None:
    errors = errors_of(ws_with(write_ws, body + "\n"))
    assert [(where(e), text in e.message) for e in errors] == [(("a.bpmn", *at), True)], [str(e) for e in errors]


def test_process_id_must_exist_and_be_executable(write_ws: WriteWs) -> None:
    errors = errors_of(ws_with(write_ws, '<bpmn:startEvent id="s" />\n', process="other", name="missing"))
    assert [where(e) for e in errors] == [("a.yaml", 4, 10)]
    assert "has no process 'other' (processes: 'p')" in errors[0].message
    text = HEAD.replace('isExecutable="true"', 'isExecutable="false"') + TAIL
    folder = write_ws({"approvals/a.yaml": "approval: a\nentity: contract\nbpmn: a.bpmn\nprocess: p\n",
                       "approvals/a.bpmn": text}, name="noexec")
    errors = errors_of(folder)
    assert [(where(e), "not executable" in e.message) for e in errors] == [(("a.bpmn", 3, 1), True)]


def test_malformed_xml_is_located(write_ws: WriteWs) -> None:
    errors = errors_of(ws_with(write_ws, '<bpmn:startEvent id="s">\n'))
    assert len(errors) == 1 and where(errors[0])[0] == "a.bpmn" and "not well-formed XML" in errors[0].message


# --------------------------------------------------------------------------- the real files

MUST_RUN = {"camunda_reviewInvoice.bpmn": "ReviewInvoice", "spiff_user_task_with_timer.bpmn": "Process_zaes0vi"}
REFUSED_FILES = {"camunda_invoice.v1.bpmn": "invoice", "camunda_invoice.v2.bpmn": "invoice",
                 "spiff_lanes_with_lane_owners.bpmn": "Test_Process_io425991xx"}


def _real(write_ws: WriteWs, file: str, process: str) -> Path:
    folder = write_ws({"approvals/a.yaml": f"approval: a\nentity: contract\nbpmn: {file}\nprocess: {process}\n"},
                      name=file.split(".")[0].lower())
    shutil.copy(REAL / file, folder / "approvals" / file)
    return folder


@pytest.mark.parametrize("file", sorted(MUST_RUN))
def test_the_real_files_that_must_run_compile(write_ws: WriteWs, file: str) -> None:
    flow = flow_of(_real(write_ws, file, MUST_RUN[file]), "a")
    assert isinstance(flow, ApprovalFlow) and flow.bpmn_xml == (REAL / file).read_text("utf-8")
    decided, _ = run_flow(flow, {}, {})  # to completion, every expression from flow.expressions
    assert decided == list(flow.steps)
    if file == "camunda_reviewInvoice.bpmn":
        assert [a.describe() for a in flow.steps["assignReviewer"].assignees] == ["user demo"]
        review = flow.steps["reviewInvoice"]
        # ${reviewer}: a task-data variable the first decision sets (a username)
        assert [a.describe() for a in review.assignees] == ["reviewer"]
        assert flow.extra["variables"] == {"reviewer": "string"}
        assert review.timeout is not None and review.timeout.after == dt.timedelta(days=2)
    else:
        assert flow.timers == {'"PT10M"': "PT10M"}
        assert [a.describe() for a in flow.steps["user_task_one"].assignees] == ["owner"]


@pytest.mark.parametrize("file", sorted(REFUSED_FILES))
def test_the_other_real_files_fail_only_with_located_messages_naming_the_element(write_ws: WriteWs,
                                                                                 file: str) -> None:
    errors = errors_of(_real(write_ws, file, REFUSED_FILES[file]))
    assert errors
    lines = (REAL / file).read_text("utf-8").splitlines()
    for e in errors:
        name, line, col = where(e)
        assert name == file, str(e)
        tag = lines[line - 1][col - 1:].split()[0].lstrip("<").split(":")[-1].rstrip(">/")
        assert tag in e.message or "lane" in e.message or "condition" in e.message, (str(e), tag)
    messages = " ".join(e.message for e in errors)
    if file.startswith("camunda_invoice"):
        assert "dataStoreReference 'DataStoreReference_1'" in messages
        assert "businessRuleTask 'assignApprover'" in messages
    else:
        assert "scriptTask 'Activity_GetReviewers'" in messages


def test_python_in_a_condition_is_refused_as_such(write_ws: WriteWs) -> None:
    errors = errors_of(ws_with(write_ws, '<bpmn:exclusiveGateway id="x" />\n'
                                         '<bpmn:sequenceFlow id="y" sourceRef="x" targetRef="x">'
                                         "<bpmn:conditionExpression>${__import__('os').listdir('/')}"
                                         "</bpmn:conditionExpression></bpmn:sequenceFlow>\n"))
    assert [where(e) for e in errors] == [("a.bpmn", 5, 55)]
    assert "is not in the expression language" in errors[0].message
    assert "never Python" in (errors[0].hint or "") and errors[0].code.startswith("expression_")


def test_a_stored_revision_keeps_the_bpmn_file_and_compiles_without_the_folder(write_ws: WriteWs) -> None:
    from engine.dsl.compiler import compile_bundle, compile_folder
    from engine.dsl.layers import discover, to_bundle

    folder = write_ws({})
    bundle = to_bundle(discover(folder), "acme")
    assert "base/approvals/flows/contract_risk.bpmn" in bundle["files"]
    stored = compile_bundle(bundle).objects_of("approval")["contract_risk"].compiled
    assert stored.digest == compile_folder(folder).objects_of("approval")["contract_risk"].compiled.digest
    assert stored.source == "base/approvals/flows/contract_risk.bpmn"


def test_an_assignee_is_one_of_user_role_team(write_ws: WriteWs) -> None:
    errors = errors_of(write_ws({"approvals/a.yaml": "approval: a\nentity: quote\n"
                                                     "steps: [{name: m, assignee: {role: legal, user: li}}]\n"}))
    assert len(errors) == 1 and where(errors[0])[:2] == ("a.yaml", 3)
