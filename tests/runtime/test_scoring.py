"""Scoring at run time on both databases: the write step, the explanation, decay on an injected clock, grade
thresholds, several scorings per entity, set-based rescoring (CLI, plan/apply, the daily job) agreeing with
the record in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from engine.dsl.sales.scoring import score, scorings_of
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_audit
from engine.runtime.sales import scoring as runtime_scoring
from engine.runtime.sales.evaluation import eval_context
from engine.runtime.sales.rescore import count_changes
from tests.runtime.conftest import World, build_world, write_workspace

LEAD = """
    entity: lead
    title: "{company}"
    fields:
      company: {type: string, required: true}
      industry: {type: picklist, options: [manufacturing, services, it]}
      demand: {type: picklist, options: [clear, vague]}
      source: {type: picklist, options: [website, referral, exhibition]}
      budget: {type: money}
      note: {type: string}
      opened_email: {type: boolean}
      last_activity_at: {type: datetime, readonly: true}
      score: {type: integer, readonly: true}
      grade: {type: picklist, options: [A, B, C, D], readonly: true}
      fit: {type: integer, readonly: true}
      fit_grade: {type: picklist, options: [good, poor], readonly: true}
"""
QUALITY = """
    scoring: quality
    entity: lead
    score_field: score
    grade_field: grade
    rules:
      - {key: mfg, when: "industry == 'manufacturing' and demand == 'clear'", points: 40,
         reason: {en: Manufacturing with a clear demand, zh: 制造业且需求明确}}
      - {key: budget, when: "budget >= 1000000", points: 25, reason: {en: Big budget, zh: 预算充足}}
      - {key: referral, when: "source == 'referral'", points: 10}
      - {key: opened, when: "opened_email", points: 20, decay: {after: 30d, points_per_day: 2},
         reason: {en: Opened our email, zh: 打开了邮件}}
      - {key: quiet, when: "days_since(last_activity_at) > 30", points: -15}
    caps: {min: 0, max: 100}
    grades: {A: 60, B: 30, C: 10, D: 0}
"""
FIT = """
    scoring: fit
    entity: lead
    score_field: fit
    grade_field: fit_grade
    rules:
      - {when: "industry == 'manufacturing'", points: 5}
      - {when: "source == 'exhibition'", points: 3, window: {within: 10d, since: created_at}}
    grades: {good: 5, poor: 0}
"""
ROLES = """
    role: admin
    admin: true
    ---
    role: sales
    permissions:
      lead: {read: own, create: true, update: own, delete: none}
    ---
    role: manager
    permissions:
      lead: {read: team, create: true, update: team, delete: none}
    ---
    role: viewer
    permissions:
      lead: {read: all}
"""


def files(quality: str = QUALITY) -> dict[str, str]:
    return {"workspace.yaml": "workspace: acme\nlocale: zh\n", "entities/lead.yaml": LEAD,
            "scoring/quality.yaml": quality, "scoring/fit.yaml": FIT, "roles/roles.yaml": ROLES}


@pytest.fixture(name="w")
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path / "ws", files())
    try:
        yield w
    finally:
        w.rt.close()


def create(w: World, user: str = "admin", **values: Any) -> dict[str, Any]:
    with w.unit(user) as uow:
        return dict(uow.records.create("lead", {"company": "Acme", **values}))


def stored(w: World, rid: int) -> dict[str, Any]:
    with w.unit("system") as uow:
        return dict(uow.records.get("lead", rid))


def test_scores_and_grades_on_create_with_the_thresholds(w: World):
    a = create(w, industry="manufacturing", demand="clear", budget=2_000_000)
    assert (a["score"], a["grade"]) == (65, "A")
    b = create(w, industry="manufacturing", demand="clear", source="referral")  # 50: B
    assert (b["score"], b["grade"]) == (50, "B")
    c = create(w, source="referral")  # exactly 10: C (the lowest total of C)
    assert (c["score"], c["grade"]) == (10, "C")
    d = create(w)
    assert (d["score"], d["grade"]) == (0, "D")
    capped = create(w, industry="manufacturing", demand="clear", budget=2_000_000, source="referral",
                    opened_email=True)  # 95, under the cap of 100
    assert capped["score"] == 95


def test_the_explanation_names_every_rule_with_its_points_and_reason(w: World):
    rec = create(w, industry="manufacturing", demand="clear", budget=2_000_000)
    with w.unit() as uow:
        body = runtime_scoring.explain(uow, "lead", rec["id"])
    quality = next(s for s in body["scorings"] if s["scoring"] == "quality")
    assert [r["key"] for r in quality["rules"]] == ["mfg", "budget", "referral", "opened", "quiet"]
    fired = {r["key"]: (r["fired"], r["points"]) for r in quality["rules"]}
    assert fired == {"mfg": (True, 40), "budget": (True, 25), "referral": (False, 0), "opened": (False, 0),
                     "quiet": (False, 0)}
    mfg = quality["rules"][0]
    assert mfg["reason"] == "制造业且需求明确"  # the workspace locale
    assert mfg["reasons"] == {"en": "Manufacturing with a clear demand", "zh": "制造业且需求明确"}
    assert quality["rules"][2]["reason"] == "source == 'referral'"  # no reason: the condition
    assert (quality["score"], quality["grade"], quality["stored"]) == (65, "A", {"score": 65, "grade": "A"})
    assert quality["grades"] == [{"grade": "A", "min": 60}, {"grade": "B", "min": 30}, {"grade": "C", "min": 10},
                                 {"grade": "D", "min": 0}]
    assert {s["scoring"] for s in body["scorings"]} == {"quality", "fit"}


def test_a_reader_who_cannot_see_the_record_gets_no_explanation(w: World):
    from engine.errors import NotFound

    rec = create(w, "alice", industry="manufacturing")
    with w.unit("alice") as uow:
        assert runtime_scoring.explain(uow, "lead", rec["id"])["id"] == rec["id"]
    with w.unit("dave") as uow, pytest.raises(NotFound):
        runtime_scoring.explain(uow, "lead", rec["id"])


def test_only_a_write_touching_what_the_rules_read_rescores(w: World):
    rec = create(w, industry="it")
    with w.unit("system") as uow:
        uow.records.update("lead", rec["id"], {"last_activity_at": w.clock.now()}, expected_version=None,
                           bypass_readonly=True)
    w.clock.advance(days=40)  # the 'quiet' rule would now take 15 points away ... from 0, capped at 0
    with w.unit() as uow:
        uow.records.update("lead", rec["id"], {"budget": 2_000_000}, expected_version=None)
    assert stored(w, rec["id"])["score"] == 10  # budget +25, quiet -15: rescored, the budget is read
    w.clock.advance(days=40)
    with w.unit() as uow:  # note is read by no rule: the stored score stays as it was
        uow.records.update("lead", rec["id"], {"budget": None}, expected_version=None)
        uow.records.update("lead", rec["id"], {"note": "called"}, expected_version=None)
    assert stored(w, rec["id"])["score"] == 0
    with w.rt.engine.begin() as conn:  # a stale stored score is left alone by a write that reads nothing
        conn.execute(text("UPDATE lead SET score = 77 WHERE id = :i"), {"i": rec["id"]})
    with w.unit() as uow:
        uow.records.update("lead", rec["id"], {"note": "again"}, expected_version=None)
    assert stored(w, rec["id"])["score"] == 77
    with w.unit() as uow:
        uow.records.update("lead", rec["id"], {"industry": "services"}, expected_version=None)
    assert stored(w, rec["id"])["score"] == 0


def test_decay_on_an_injected_clock_in_memory_and_in_sql(w: World):
    rec = create(w, opened_email=True)
    with w.unit("system") as uow:
        uow.records.update("lead", rec["id"], {"last_activity_at": w.clock.now()}, expected_version=None,
                           bypass_readonly=True)
    assert stored(w, rec["id"])["score"] == 20
    for days, points in ((30, 20), (31, 18), (35, 10), (39, 2), (40, 0), (90, 0)):
        w.clock.set(dt.datetime(2026, 1, 15, 9, 0, tzinfo=dt.UTC) + dt.timedelta(days=days))
        with w.unit() as uow:
            body = runtime_scoring.explain(uow, "lead", rec["id"])
            counts = count_changes(uow.conn, uow.schema, scorings_of(uow.workspace, "lead")[1], now=w.clock.now())
        opened = next(r for r in body["scorings"][1]["rules"] if r["key"] == "opened")
        assert (opened["fired"], opened["points"]) == (True, points), days
        expected_total = max(points - (15 if days > 30 else 0), 0)
        assert body["scorings"][1]["score"] == expected_total
        with w.unit("system") as uow:
            runtime_scoring.rescore_entity(uow, "lead")
        assert stored(w, rec["id"])["score"] == expected_total, days  # SQL agrees with Python
        assert counts.rows >= 1


def test_several_scorings_of_one_entity_write_their_own_fields(w: World):
    rec = create(w, industry="manufacturing", source="exhibition")
    assert (rec["fit"], rec["fit_grade"], rec["score"], rec["grade"]) == (8, "good", 0, "D")
    w.clock.advance(days=11)  # the exhibition counts for 10 days (a window): the refresh sees it close
    with w.unit("system") as uow:
        results = {r.scoring: r for r in runtime_scoring.rescore_entity(uow, "lead", only_time_based=True)}
    assert results["fit"].scores_changed == 1 and results["fit"].grades_changed == 0
    assert (stored(w, rec["id"])["fit"], stored(w, rec["id"])["fit_grade"]) == (5, "good")


def _rules_agree(w: World, ids: list[int]) -> None:
    """Every stored score equals the Python evaluation now."""
    with w.unit("system") as uow:
        ctx = eval_context(uow)
        for s in scorings_of(uow.workspace, "lead"):
            for rid in ids:
                record = uow.records.get("lead", rid)
                outcome = score(s, record, ctx)
                assert (record[s.score_field], record[s.grade_field]) == (outcome.total, outcome.grade)


def test_set_based_rescoring_writes_audit_rows_for_the_changed_rows_only(w: World):
    ids = [create(w, industry=i, demand="clear", budget=b)["id"]
           for i, b in (("manufacturing", 2_000_000), ("it", 5), ("services", 2_000_000))]
    with w.rt.engine.begin() as conn:
        conn.execute(text("UPDATE lead SET score = 1, grade = 'C' WHERE id IN (:a, :b)"), {"a": ids[0], "b": ids[1]})
        before = conn.execute(select(text("version")).select_from(text("lead")).order_by(text("id"))).scalars().all()
    with w.unit("system") as uow:
        [fit, quality] = runtime_scoring.rescore_entity(uow, "lead")
    assert (quality.scores_changed, quality.grades_changed, fit.scores_changed) == (2, 2, 0)
    _rules_agree(w, ids)
    with w.rt.engine.connect() as conn:
        rows = conn.execute(select(crm_audit.c.record_id, crm_audit.c.field, crm_audit.c.old_value,
                                   crm_audit.c.new_value, crm_audit.c.revision_id)
                            .where(crm_audit.c.action == "rescore").order_by(crm_audit.c.id)).all()
        after = conn.execute(select(text("version")).select_from(text("lead")).order_by(text("id"))).scalars().all()
    assert sorted((r.record_id, r.field, r.old_value, r.new_value) for r in rows) == [
        (ids[0], None, {"score": 1, "grade": "C"}, {"score": 65, "grade": "A"}),
        (ids[1], None, {"score": 1, "grade": "C"}, {"score": 0, "grade": "D"})]
    assert {r.revision_id for r in rows} == {w.rt.state.revision_id}
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 0]
    with w.unit("admin") as uow:  # the history shows the rescoring
        assert any(e.action == "rescore" and e.new == {"score": 65, "grade": "A"}
                   for e in uow.records.history("lead", ids[0]))


def test_crm_rescore_prints_what_changed(w: World, tmp_path: Path):
    from engine.cli import main

    rec = create(w, industry="manufacturing", demand="clear")
    with w.rt.engine.begin() as conn:
        conn.execute(text("UPDATE lead SET score = NULL, grade = NULL WHERE id = :i"), {"i": rec["id"]})
    folder = tmp_path / "ws"
    out = CliRunner().invoke(main, ["rescore", "lead", str(folder), "--db", w.url])
    assert out.exit_code == 0, out.output
    assert "rescored lead (scoring quality): 1 score and 1 grade changed" in out.output
    assert "rescored lead (scoring fit): 0 scores and 0 grades changed" in out.output
    assert stored(w, rec["id"])["grade"] == "B"
    bad = CliRunner().invoke(main, ["rescore", "nothing", str(folder), "--db", w.url])
    assert bad.exit_code == 1 and "unknown entity 'nothing'" in bad.output


def test_the_daily_refresh_runs_from_crm_worker_once(w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from engine.cli import main
    from engine.runtime import context

    rec = create(w, opened_email=True)
    with w.unit("system") as uow:
        uow.records.update("lead", rec["id"], {"last_activity_at": w.clock.now()}, expected_version=None,
                           bypass_readonly=True)
    moment = {"now": w.clock.now()}
    monkeypatch.setattr(context.SystemClock, "now", lambda self: moment["now"])
    folder = str(tmp_path / "ws")
    first = CliRunner().invoke(main, ["worker", folder, "--once", "--db", w.url])
    assert first.exit_code == 0, first.output  # schedules the refresh for the next 02:00
    moment["now"] = w.clock.now() + dt.timedelta(days=35)
    again = CliRunner().invoke(main, ["worker", folder, "--once", "--db", w.url])
    assert again.exit_code == 0 and "0 dead" in again.output, again.output
    with w.rt.engine.connect() as conn:
        ran = conn.execute(text("SELECT count(*) FROM crm_jobs WHERE kind = 'scoring.refresh' AND status = 'done'"))
        assert ran.scalar_one() == 1
    assert stored(w, rec["id"])["score"] == 0  # opened: 20 - 2 * 5 = 10; quiet: -15; capped at 0


# --------------------------------------------------------------------------- plan / apply


def _plan_and_apply(folder: Path, url: str) -> tuple[Any, Any]:
    from engine.runtime.schema.operations import apply_workspace, compile_workspace, plan_folder

    report = plan_folder(folder, url)
    ws = compile_workspace(folder)
    result = apply_workspace(ws, url, yes=True, allow_destructive=False, purge=False, message="rules", author="t",
                             echo=lambda _s: None, confirm=lambda _q: True, export_dir=folder / "exports")
    return report, result


def test_a_rule_change_is_planned_with_the_grades_it_changes_and_applied_in_one_update(w: World, tmp_path: Path):
    ids = [create(w, industry="manufacturing", demand="clear")["id"] for _ in range(3)]
    ids += [create(w, industry="it")["id"] for _ in range(2)]
    assert [stored(w, i)["grade"] for i in ids] == ["B", "B", "B", "D", "D"]
    folder = tmp_path / "ws"
    write_workspace(folder, {"scoring/quality.yaml": QUALITY.replace("points: 40", "points: 70")})
    report, result = _plan_and_apply(folder, w.url)
    [change] = [c for c in report.plan.changes if c.kind == "feature_data"]
    assert change.line() == "~ rescore lead (scoring quality) (safe, 3 grades and 3 scores of 5 rows would change)"
    assert change.details["grades_changed"] == 3
    assert any(c["kind"] == "feature_data" and c["details"]["step"] == "scoring"
               for c in report.to_dict()["changes"])  # crm plan --json
    assert [stored(w, i)["grade"] for i in ids] == ["A", "A", "A", "D", "D"]
    with w.rt.engine.connect() as conn:
        revs = conn.execute(select(crm_audit.c.revision_id).where(crm_audit.c.action == "rescore")).scalars().all()
    assert len(revs) == 3 and set(revs) == {result.revision_id}
    _rules_agree(w, ids)


def test_an_unchanged_rule_set_costs_no_scan(w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    create(w, industry="manufacturing", demand="clear")

    def no_scan(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the rules did not change: nothing may be counted")

    monkeypatch.setattr(runtime_scoring, "count_changes", no_scan)
    folder = tmp_path / "ws"
    write_workspace(folder, {"scoring/quality.yaml": QUALITY.replace("Big budget", "A big budget")})  # text only
    report, _result = _plan_and_apply(folder, w.url)
    assert not [c for c in report.plan.changes if c.kind == "feature_data"]


def test_rescoring_waits_for_fields_the_same_apply_adds(w: World, tmp_path: Path):
    rec = create(w, industry="manufacturing")
    folder = tmp_path / "ws"
    lead = LEAD + "      employees: {type: integer}\n"
    quality = QUALITY.replace("rules:\n", "rules:\n      - {when: \"employees >= 100\", points: 30}\n")
    write_workspace(folder, {"entities/lead.yaml": lead, "scoring/quality.yaml": quality})
    report, _ = _plan_and_apply(folder, w.url)
    [change] = [c for c in report.plan.changes if c.kind == "feature_data"]
    assert change.rows is None and "once this apply has added the fields" in (change.note or "")
    with w.unit() as uow:
        uow.records.update("lead", rec["id"], {"employees": 500}, expected_version=None)
    assert stored(w, rec["id"])["score"] == 30


def test_scores_survive_the_snapshot_round_trip():
    from engine.runtime.schema.snapshot import DbState, snapshot, state_from_snapshot

    state = DbState(fingerprints={"scoring/quality": "abc"})
    assert state_from_snapshot(snapshot(state)).fingerprints == {"scoring/quality": "abc"}
    assert "fingerprints" not in snapshot(DbState())


def test_system_writes_outside_the_pipeline_are_not_scored_until_rescored(w: World):
    """A raw insert (a bulk load behind the service) has no score; crm rescore fills it."""
    with w.rt.engine.begin() as conn:
        conn.execute(text("INSERT INTO lead (version, created_at, updated_at, company, industry, demand) "
                          "VALUES (1, :t, :t, 'Raw', 'manufacturing', 'clear')"),
                     {"t": dt.datetime(2026, 1, 1)})
    with w.unit("system") as uow:
        [_, quality] = runtime_scoring.rescore_entity(uow, "lead")
    assert quality.grades_changed == 1
    with w.rt.unit(Actor.system()) as uow:
        [row] = uow.records.list("lead", filter="company == 'Raw'").items
    assert (row["score"], row["grade"]) == (40, "B")
