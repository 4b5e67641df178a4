"""The people commands as a new user types them: the workspace directory as the last argument (no ``--db``),
run from the folder that holds it; errors printed like every other command's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.db import DEFAULT_SQLITE_NAME
from engine.runtime.people import admin
from engine.runtime.runtime import Runtime
from tests.api.conftest import apply_folder_quietly


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workspace ``acme`` applied to its default SQLite file, with a team ``east`` inside ``sales_dept``,
    managed by ``boss``."""
    from engine.dsl.scaffold import init_workspace

    folder = tmp_path_factory.mktemp("people_cli") / "acme"
    init_workspace(folder, industry="manufacturing", name="acme", locale="en", currency="CNY", phone_region="CN")
    url = f"sqlite:///{folder / DEFAULT_SQLITE_NAME}"
    apply_folder_quietly(folder, url)
    rt = Runtime.open(url)
    try:
        with rt.unit(Actor.system()) as uow:
            admin.create_user(uow, "boss", roles=["sales_manager"])
            admin.create_team(uow, "sales_dept")
            admin.create_team(uow, "east", manager="boss", parent="sales_dept")
    finally:
        rt.close()
    yield folder


@pytest.fixture
def crm(acme: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    """``crm(*args)``: the command run from the folder holding ``acme``, its database from the directory."""
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    monkeypatch.chdir(acme.parent)

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args))

    yield run


def _team(acme: Path, name: str) -> dict[str, object]:
    rt = Runtime.open(f"sqlite:///{acme / DEFAULT_SQLITE_NAME}")
    try:
        with rt.engine.connect() as conn:
            return next(t for t in admin.list_teams(conn) if t["name"] == name)
    finally:
        rt.close()


def test_none_clears_the_manager_and_parent_and_the_argument_after_it_is_the_workspace(
        crm: Callable[..., Result], acme: Path) -> None:
    result = crm("team", "set-manager", "east", "--none", "acme")
    assert result.exit_code == 0, result.output
    assert "has no manager" in result.output
    result = crm("team", "set-parent", "east", "--none", "acme")
    assert result.exit_code == 0, result.output
    assert "is at the top" in result.output
    team = _team(acme, "east")
    assert team["manager"] is None and team["parent"] is None
    result = crm("team", "set-manager", "east", "boss", "acme")
    assert result.exit_code == 0, result.output
    result = crm("team", "set-parent", "east", "sales_dept", "acme")
    assert result.exit_code == 0, result.output
    team = _team(acme, "east")
    assert team["manager"] == "boss" and team["parent"] == "sales_dept"
    result = crm("team", "set-manager", "east", "--none", "boss", "acme")
    assert result.exit_code != 0 and "give no manager name" in result.output


def test_an_unknown_token_prefix_is_reported_like_every_other_error(crm: Callable[..., Result]) -> None:
    other = crm("user", "set-role", "boss", "--role", "nope", "acme")
    assert other.exit_code == 1 and other.output.startswith("unknown role 'nope'"), other.output
    result = crm("token", "revoke", "crm_xxxxxxxx", "acme")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("no active token starts with 'crm_xxxxxxxx'\n"), result.output
    longer = crm("token", "revoke", "crm_xxxxxxxxxx", "acme")  # longer than a prefix: the whole token or nothing
    assert longer.exit_code == 1 and longer.output.startswith("no active token is 'crm_xxxxxxxxxx'\n"), longer.output
    assert "  hint: 'crm token list' shows the active tokens' prefixes" in result.output
    assert "Error:" not in result.output
    result = crm("team", "remove-member", "east", "boss", "acme")
    assert result.exit_code == 1 and result.output.startswith("'boss' is not an extra member of 'east'\n")
    assert "Error:" not in result.output


def _user_with_a_lead(acme: Path, name: str) -> None:
    rt = Runtime.open(f"sqlite:///{acme / DEFAULT_SQLITE_NAME}")
    try:
        with rt.unit(Actor.system()) as uow:
            uid = users.create_user(uow, name, roles=["sales"])
            uow.records.create("lead", {"company": f"{name} Co", "phone": "13800000000", "owner_id": uid})
    finally:
        rt.close()


def test_the_handover_hint_of_deactivate_names_the_workspace(crm: Callable[..., Result], acme: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _user_with_a_lead(acme, "emma.sales")
    result = crm("user", "deactivate", "emma.sales", "acme")
    assert result.exit_code == 0, result.output
    assert "hand them over with: crm handover emma.sales OTHER_USER acme\n" in result.output
    handed = crm("handover", "emma.sales", "boss", "acme")  # the hint, as given, works
    assert handed.exit_code == 0 and "handed over 1 lead" in handed.output, handed.output
    _user_with_a_lead(acme, "leo.sales")
    monkeypatch.chdir(acme)  # no directory given: the hint names the one the command used
    result = crm("user", "deactivate", "leo.sales")
    assert result.exit_code == 0, result.output
    assert f"crm handover leo.sales OTHER_USER {acme.resolve()}\n" in result.output
