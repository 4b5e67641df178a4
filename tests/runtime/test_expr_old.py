"""`old.` in checks: the value before an update (null on create); refused in list filters, with its place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FILES, World, build_world

from engine.errors import BadRequest, ValidationFailed

STAYS_WON = '''
          - check: 'old.stage != "won" or stage == "won"'
            message: {en: A won deal stays won}
'''


@pytest.fixture
def oworld(db_url: str, tmp_path: Path) -> Iterator[World]:
    files = {**FILES, "entities/deal.yaml": FILES["entities/deal.yaml"].rstrip() + STAYS_WON}
    w = build_world(db_url, tmp_path / "ws", files)
    try:
        yield w
    finally:
        w.rt.close()


def test_a_check_compares_with_the_value_before_the_update(oworld: World) -> None:
    with oworld.unit() as uow:
        won = uow.records.create("deal", {"name": "w", "stage": "won"})  # on create old.stage is null
        fresh = uow.records.create("deal", {"name": "n"})
        uow.records.update("deal", fresh["id"], {"stage": "lost"}, expected_version=1)
        uow.records.update("deal", won["id"], {"name": "renamed"}, expected_version=1)
        with pytest.raises(ValidationFailed) as info:
            uow.records.update("deal", won["id"], {"stage": "lost"}, expected_version=2)
    assert info.value.details == {"_record": ["A won deal stays won"]}


def test_old_in_a_list_filter_is_refused_with_its_place(oworld: World) -> None:
    with oworld.unit() as uow, pytest.raises(BadRequest) as info:
        uow.records.list("deal", filter='name == "x" or old.stage == "won"')
    err = info.value
    assert err.code == "bad_filter" and "`old.stage` (the previous value) only exists in update rules" in err.message
    assert "only available in write-time rules" in (err.hint or "")
    assert err.details is not None and "^^^" in err.details["snippet"]
