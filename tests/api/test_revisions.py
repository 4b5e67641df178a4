"""The API picks up a newly applied revision without a restart."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.api.conftest import ApiEnv, apply_folder_quietly

EXTRA_FIELD = """entity: lead
extend: true
fields:
  factory_area: {type: integer, min: 0, label: {en: Factory area (m2)}}
"""


def test_new_revision_is_served_without_restart(client: Any, api_env: ApiEnv, manufacturing_folder: Path,
                                                tmp_path: Path) -> None:
    before = client.get("/api/v1/openapi.json", headers=api_env.headers("admin")).get_json()
    assert "factory_area" not in before["components"]["schemas"]["lead_record"]["properties"]
    folder = tmp_path / "acme"
    shutil.copytree(manufacturing_folder, folder)
    (folder / "entities" / "lead_extra.yaml").write_text(EXTRA_FIELD, "utf-8")
    apply_folder_quietly(folder, api_env.url)
    api_env.runtime.refresh(force=True)
    after = client.get("/api/v1/openapi.json", headers=api_env.headers("admin")).get_json()
    assert "factory_area" in after["components"]["schemas"]["lead_record"]["properties"]
    assert after["info"]["version"] != before["info"]["version"]
    meta = client.get("/api/v1/meta", headers=api_env.headers("rep1")).get_json()
    assert meta["entities"]["lead"]["fields"]["factory_area"]["type"] == "integer"
    made = client.post("/api/v1/records/lead",
                       json={"company": "Area Co", "phone": "13800000000", "factory_area": 5000},
                       headers=api_env.headers("rep1"))
    assert made.status_code == 201 and made.get_json()["factory_area"] == 5000
