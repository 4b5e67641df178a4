"""The step-completion rules (pure): 或签, 会签, ratio, 依次 and signers added before/after a task."""

from __future__ import annotations

import pytest

from engine.runtime.approvals.rules import Row, needed, readiness, step_result


def rows(*statuses: str) -> list[Row]:
    return [Row(i + 1, s, seq=i) for i, s in enumerate(statuses)]


@pytest.mark.parametrize(("ratio", "n", "need"), [(0.6, 5, 3), (0.5, 4, 2), (1.0, 3, 3), (0.01, 7, 1), (0.34, 3, 2),
                                                  (None, 2, 2)])
def test_a_ratio_needs_the_ceiling_of_its_share(ratio: float | None, n: int, need: int) -> None:
    assert needed(ratio, n) == need


def test_modes() -> None:
    assert step_result("any", None, rows("ready", "approved")) == "approved"
    assert step_result("any", None, rows("ready", "rejected")) == "rejected"
    assert step_result("all", None, rows("approved", "ready")) is None
    assert step_result("all", None, rows("approved", "approved")) == "approved"
    assert step_result("ratio", 0.6, rows("approved", "approved", "rejected", "ready", "ready")) is None
    assert step_result("ratio", 0.6, rows("approved", "approved", "rejected", "rejected", "ready")) is None
    assert step_result("ratio", 0.6, rows("approved", "rejected", "rejected", "rejected", "ready")) == "rejected"
    assert step_result("sequential", None, rows("approved", "waiting")) is None
    assert step_result("any", None, [Row(1, "reassigned"), Row(2, "ready")]) is None  # a moved task takes no part


def test_sequential_readiness_is_one_at_a_time() -> None:
    assert readiness("sequential", rows("waiting", "waiting")) == {1: "ready", 2: "waiting"}
    assert readiness("sequential", rows("approved", "waiting")) == {2: "ready"}
    assert readiness("all", rows("waiting", "waiting")) == {1: "ready", 2: "ready"}


def test_signers_before_decide_first_and_after_once_the_task_approved() -> None:
    main = Row(1, "ready")
    before = Row(2, "waiting", added_by=1, position="before", group_mode="all")
    assert readiness("any", [main, before]) == {1: "waiting", 2: "ready"}
    assert step_result("any", None, [Row(1, "approved"), before]) is None
    assert step_result("any", None, [Row(1, "waiting"), Row(2, "rejected", added_by=1, position="before")]) == \
        "rejected"
    after = [Row(1, "approved"), Row(2, "waiting", added_by=1, position="after", group_mode="any"),
             Row(3, "waiting", added_by=1, position="after", group_mode="any")]
    assert readiness("any", after) == {2: "ready", 3: "ready"}
    assert step_result("any", None, [*after[:2], Row(3, "approved", added_by=1, position="after",
                                                     group_mode="any")]) == "approved"
    nested = [Row(1, "approved"), Row(2, "approved", added_by=1, position="after"),
              Row(3, "waiting", added_by=2, position="after")]
    assert readiness("any", nested) == {3: "ready"} and step_result("any", None, nested) is None
