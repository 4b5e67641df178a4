"""Optimistic locking and auto numbers under concurrent writers (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

from conftest import World

from engine.errors import VersionConflict

THREADS = 16


def _run_threads(target, n: int = THREADS) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as e:  # collected and asserted by the test
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_same_expected_version_exactly_one_wins(world: World) -> None:
    with world.unit() as uow:
        deal = uow.records.create("deal", {"name": "hot", "quantity": 1})
    actor = world.actor("admin")

    def attempt(i: int) -> object:
        with world.rt.unit(actor) as uow:
            return uow.records.update("deal", deal["id"], {"quantity": i + 2}, expected_version=1)

    results = _run_threads(attempt)
    wins = [r for r in results if isinstance(r, dict)]
    conflicts = [r for r in results if isinstance(r, VersionConflict)]
    assert len(wins) == 1 and len(conflicts) == THREADS - 1, results
    with world.unit(readonly=True) as uow:
        final = uow.records.get("deal", deal["id"])
        history = uow.records.history("deal", deal["id"])
    assert final["version"] == 2 and final["quantity"] == wins[0]["quantity"]
    assert [e.new for e in history if e.field == "quantity"] == [wins[0]["quantity"]]


def test_no_lost_update_when_every_writer_rereads(world: World) -> None:
    with world.unit() as uow:
        deal = uow.records.create("deal", {"name": "counter", "quantity": 1})
    actor = world.actor("admin")

    def increment(_i: int) -> object:
        for _ in range(50):
            try:
                with world.rt.unit(actor) as uow:
                    cur = uow.records.get("deal", deal["id"])
                    return uow.records.update("deal", deal["id"], {"quantity": cur["quantity"] + 1},
                                              expected_version=cur["version"])
            except VersionConflict:
                continue
        raise AssertionError("gave up")

    results = _run_threads(increment, 8)
    assert all(isinstance(r, dict) for r in results), results
    with world.unit(readonly=True) as uow:
        assert uow.records.get("deal", deal["id"])["quantity"] == 9


def test_auto_numbers_unique_under_concurrency(world: World) -> None:
    actor = world.actor("admin")

    def create(i: int) -> object:
        with world.rt.unit(actor) as uow:
            return [uow.records.create("deal", {"name": f"n{i}-{j}"})["number"] for j in range(3)]

    results = _run_threads(create)
    numbers = [n for r in results for n in r]  # type: ignore[union-attr]
    assert len(numbers) == len(set(numbers)) == THREADS * 3
    assert sorted(numbers) == [f"D-2026-{i:05d}" for i in range(1, THREADS * 3 + 1)]
