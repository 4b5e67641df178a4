"""The scoring: and assignment: kinds: what they compile to, and located errors for what is wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.dsl.compiler import compile_folder
from engine.dsl.expressions import EvalContext
from engine.dsl.sales.assignment import Assignment
from engine.dsl.sales.scoring import Scoring, score
from engine.errors import ConfigError

LEAD = """
entity: lead
fields:
  company: {type: string}
  industry: {type: picklist, options: [manufacturing, it]}
  budget: {type: money}
  last_activity_at: {type: datetime}
  note: {type: string}
  score: {type: integer}
  grade: {type: picklist, options: [A, B, C]}
  fit: {type: integer}
  fit_grade: {type: picklist, options: [A, B, C]}
  big: {type: decimal}
"""
GOOD = """
scoring: quality
entity: lead
score_field: score
grade_field: grade
rules:
  - {key: mfg, when: "industry == 'manufacturing'", points: 40, reason: {en: Manufacturing, zh: 制造业}}
  - {key: budget, when: "budget >= 100", points: 30, decay: {after: 10d, points_per_day: 5}}
grades: {A: 60, B: 30, C: 0}
caps: {max: 60}
"""


def build(tmp_path: Path, *docs: str, extra: dict[str, str] | None = None) -> object:
    (tmp_path / "entities").mkdir(parents=True, exist_ok=True)
    (tmp_path / "workspace.yaml").write_text("workspace: t\n", "utf-8")
    (tmp_path / "entities" / "lead.yaml").write_text(LEAD, "utf-8")
    (tmp_path / "roles.yaml").write_text("role: admin\nadmin: true\n", "utf-8")
    for i, doc in enumerate(docs):
        (tmp_path / f"doc{i}.yaml").write_text(textwrap.dedent(doc).lstrip(), "utf-8")
    for name, text in (extra or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip(), "utf-8")
    return compile_folder(tmp_path)


def error_text(tmp_path: Path, *docs: str) -> str:
    with pytest.raises(ConfigError) as e:
        build(tmp_path, *docs)
    return str(e.value)


def test_a_scoring_compiles_with_its_dependencies_and_decay(tmp_path: Path):
    ws = build(tmp_path, GOOD)
    s = ws.objects["scoring"]["quality"].compiled  # type: ignore[attr-defined]
    assert isinstance(s, Scoring)
    assert s.grades == (("A", 60), ("B", 30), ("C", 0))
    assert s.dependencies == {"industry", "budget", "last_activity_at"}  # decay counts from last_activity_at
    assert s.time_based and s.max_score == 60
    import datetime as dt

    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    ctx = EvalContext(now=now, today=now.date())
    fresh = score(s, {"industry": "manufacturing", "budget": 500, "last_activity_at": now}, ctx)
    assert (fresh.raw_total, fresh.total, fresh.grade) == (70, 60, "A")
    aged = score(s, {"budget": 500, "last_activity_at": now - dt.timedelta(days=13)}, ctx)
    assert [o.points for o in aged.rules] == [0, 15] and aged.grade == "C"


def test_the_fingerprint_ignores_reasons_and_follows_rules(tmp_path: Path):
    a = build(tmp_path / "a", GOOD).objects["scoring"]["quality"].compiled  # type: ignore[attr-defined]
    b = build(tmp_path / "b", GOOD.replace("zh: 制造业", "zh: 制造")).objects["scoring"]["quality"].compiled  # type: ignore[attr-defined]
    c = build(tmp_path / "c", GOOD.replace("points: 40", "points: 41")).objects["scoring"]["quality"].compiled  # type: ignore[attr-defined]
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_an_extend_layer_edits_rules_by_key(tmp_path: Path):
    ext = """
    scoring: quality
    extend: true
    rules:
      update: {mfg: {points: 50}}
      add: [{key: note, when: "note is not null", points: 1}]
      after: mfg
    """
    s = build(tmp_path, GOOD, ext).objects["scoring"]["quality"].compiled  # type: ignore[attr-defined]
    assert [(r.key, r.points) for r in s.rules] == [("mfg", 50), ("note", 1), ("budget", 30)]


@pytest.mark.parametrize(("change", "message", "where"), [
    (("score_field: score", "score_field: scor"), "score_field 'scor' is not a field of lead", "doc0.yaml:3:14"),
    (("score_field: score", "score_field: big"), "is a decimal field", "doc0.yaml:3:14"),
    (("grade_field: grade", "grade_field: note"), "must be a picklist field", "doc0.yaml:4:14"),
    (("{A: 60, B: 30, C: 0}", "{A: 60, B: 30, D: 0}"), "has no option 'D'", "doc0.yaml:8:9"),
    (("{A: 60, B: 30, C: 0}", "{A: 60, B: 60, C: 0}"), "both start at 60", "doc0.yaml:8:"),
    (("budget >= 100", "budgets >= 100"), "budgets", "doc0.yaml:7:26"),
    (("budget >= 100", "budget >= 'x'"), "cannot compare number with string", "doc0.yaml:7:26"),
    (("budget >= 100", "score >= 100"), "reads score, which scoring writes", "doc0.yaml:7:"),
    (("entity: lead", "entity: leed"), "there is no entity 'leed'", "doc0.yaml:2:9"),
    (("caps: {max: 60}", "caps: {min: 70, max: 60}"), "caps min 70 is above max 60", "doc0.yaml:9:7"),
    (("points_per_day: 5}", "points_per_day: 5, since: note}"), "since 'note' is a string field",
     "doc0.yaml:7:"),
])
def test_located_errors(tmp_path: Path, change: tuple[str, str], message: str, where: str):
    text = error_text(tmp_path, GOOD.replace(*change))
    assert message in text and where in text, text


def test_two_scorings_may_not_write_one_field(tmp_path: Path):
    other = GOOD.replace("scoring: quality", "scoring: engagement")
    text = error_text(tmp_path, GOOD, other)
    assert "writes lead.score, which scoring 'quality'" in text and "doc1.yaml:3:14" in text
    fine = other.replace("score_field: score", "score_field: fit").replace("grade_field: grade",
                                                                           "grade_field: fit_grade")
    ws = build(tmp_path / "ok", GOOD, fine)
    assert set(ws.objects["scoring"]) == {"quality", "engagement"}  # type: ignore[attr-defined]


def test_a_merged_scoring_needs_its_required_keys(tmp_path: Path):
    text = error_text(tmp_path, "scoring: bare\nentity: lead\nrules: [{when: 'true', points: 1}]\n")
    assert "scoring 'bare' needs 'score_field:'" in text and "needs 'grades:'" in text and "doc0.yaml:1:1" in text


ROUTING = """
assignment: routing
entity: lead
on: [create, reassign]
created_by: [system, admin]
rules:
  - {key: top, when: "budget > 100", to: {team: senior, strategy: round_robin}}
  - {to: {field_map: {field: industry, map: {manufacturing: {user: ann}, it: {team: it_sales}}}}}
"""


def test_an_assignment_compiles(tmp_path: Path):
    a = build(tmp_path, ROUTING).objects["assignment"]["routing"].compiled  # type: ignore[attr-defined]
    assert isinstance(a, Assignment) and a.on == {"create", "reassign"}
    assert a.creator_allowed(["admin"], system=False) and a.creator_allowed([], system=True)
    assert not a.creator_allowed(["sales"], system=False)
    assert [r.to.describe() for r in a.rules] == ["team senior (round robin)", "industry territory"]


@pytest.mark.parametrize(("change", "message", "where"), [
    (("[system, admin]", "[system, admn]"), "created_by names no role 'admn'", "doc0.yaml:4:22"),
    (("strategy: round_robin}", "strategy: round_robin, weights: {a: 1}}"), "weights only go with strategy",
     "doc0.yaml:6:"),
    (("{team: senior, strategy: round_robin}", "{team: senior, user: bob}"), "exactly one of", "doc0.yaml:6:42"),
    (("field: industry", "field: industri"), "field_map field 'industri' is not a field", "doc0.yaml:7:30"),
    (("it: {team", "retail: {team"), "has no option 'retail'", "doc0.yaml:7:74"),
    (("budget > 100", "budget > "), "the expression ends too early", "doc0.yaml:6:31"),
])
def test_assignment_located_errors(tmp_path: Path, change: tuple[str, str], message: str, where: str):
    text = error_text(tmp_path, ROUTING.replace(*change))
    assert message in text and where in text, text


def test_the_shipped_documents_compile_in_both_layers(tmp_path: Path):
    from engine.dsl.scaffold import init_workspace

    for industry in (None, "manufacturing"):
        folder = init_workspace(tmp_path / (industry or "base"), industry=industry)
        ws = compile_folder(folder)
        quality = ws.objects["scoring"]["lead_quality"].compiled
        routing = ws.objects["assignment"]["lead_routing"].compiled
        assert routing.created_by == ("system", "admin")
        keys = [r.key for r in quality.rules]
        assert ("purchase_budget" in keys) == (industry == "manufacturing")
