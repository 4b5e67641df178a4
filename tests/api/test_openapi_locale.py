"""The OpenAPI document speaks the workspace's locale: entity and field titles and descriptions in zh,
English where a label has no zh text, the key where it has none at all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.api import create_app
from tests.api.conftest import apply_folder_quietly, make_users


@pytest.fixture(scope="module")
def zh_api(api_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """A test client of a zh workspace (manufacturing, plus a field labelled in English only) and a token."""
    from engine.dsl.scaffold import init_workspace
    from engine.runtime.runtime import Runtime

    folder = init_workspace(tmp_path_factory.mktemp("zh") / "acme", industry="manufacturing", name="acme",
                            locale="zh", currency="CNY", phone_region="CN")
    (folder / "entities" / "lead.yaml").write_text(
        "entity: lead\nextend: true\nfields:\n  wechat: {type: string, label: WeChat}\n"
        "  qq_number: {type: string}\n", "utf-8")
    apply_folder_quietly(folder, api_db_url)
    runtime = Runtime.open(api_db_url)
    try:
        tokens = make_users(runtime)
        yield create_app(runtime).test_client(), tokens["admin"]
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def doc(zh_api: tuple[Any, str]) -> dict[str, Any]:
    client, token = zh_api
    resp = client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    return resp.get_json()  # type: ignore[no-any-return]


def test_entity_and_field_titles_are_in_the_workspace_locale(doc: dict[str, Any]) -> None:
    lead = doc["components"]["schemas"]["lead_record"]
    assert lead["title"] == "线索"
    assert lead["properties"]["company"]["title"] == "公司名称"
    assert lead["properties"]["demand"]["description"] == "客户需求是否明确"
    create = doc["components"]["schemas"]["lead_create"]
    assert create["properties"]["company"]["title"] == "公司名称"
    assert {"name": "lead", "description": "线索"} in doc["tags"]


def test_a_label_without_zh_falls_back_to_english_then_the_key(doc: dict[str, Any]) -> None:
    props = doc["components"]["schemas"]["lead_record"]["properties"]
    assert props["wechat"]["title"] == "WeChat"
    assert props["qq_number"]["title"] == "Qq number"  # a field without a label is titled after its key
