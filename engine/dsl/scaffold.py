"""``crm init``: create a customer workspace folder."""

from __future__ import annotations

import re
from pathlib import Path

from engine.dsl.layers import list_industries
from engine.errors import ConfigError, InvalidName

_WORKSPACE_YAML = """\
# The workspace of one customer. Keep this folder in git.
# Layers: base <- {extends} <- this folder <- admin edits.
workspace: {name}
extends: {extends}
locale: {locale}
currency: {currency}
{phone_region}plugins: []
"""

_EXAMPLE = """\
# Add your own entities and fields here, or extend shipped ones, e.g.:
#
# entity: lead
# extend: true
# fields:
#   wechat_id: {type: string, max_length: 64, label: {en: WeChat ID, zh: 微信号}}
"""


_NO_PHONE_REGION = """\
# phone_region: CN   # numbers written without +country code are from this region (ISO 3166 code);
#                    # unset: phone fields need the country code, e.g. +86 138 0013 8000
"""


def init_workspace(folder: Path, *, industry: str | None, name: str | None = None,
                   locale: str = "en", currency: str = "USD", phone_region: str | None = None) -> Path:
    """Create ``folder`` with ``workspace.yaml`` extending the industry template (or base).

    ``phone_region`` (e.g. ``CN``) is written as the workspace's ``phone_region``; without it a
    commented example line explains the setting.
    """
    folder = folder.resolve()
    if (folder / "workspace.yaml").exists():
        raise ConfigError(f"{folder / 'workspace.yaml'} already exists",
                          hint="choose an empty folder, or edit the existing workspace")
    extends = "base"
    if industry:
        known = dict(list_industries())
        if industry not in known:
            raise ConfigError(f"unknown industry {industry!r}",
                              hint=f"known industries: {', '.join(known) or '(none)'}; see 'crm industries'")
        extends = f"industries/{industry}"
    ws_name = name or re.sub(r"[^a-z0-9_]+", "_", folder.name.lower()).strip("_") or "workspace"
    if not re.match(r"^[a-z][a-z0-9_]*$", ws_name):
        raise InvalidName(f"workspace name {ws_name!r} is not an identifier",
                          hint="pass --name with lowercase letters, digits and underscores")
    if not re.match(r"^[A-Z]{3}$", currency):
        raise ConfigError(f"currency {currency!r} is not an ISO 4217 code", hint="e.g. USD, EUR, CNY")
    if phone_region is not None and not re.match(r"^[A-Z]{2}$", phone_region):
        raise ConfigError(f"phone region {phone_region!r} is not an ISO 3166 region code", hint="e.g. CN, US, GB")
    region_line = f"phone_region: {phone_region}\n" if phone_region else _NO_PHONE_REGION
    (folder / "entities").mkdir(parents=True, exist_ok=True)
    (folder / "workspace.yaml").write_text(
        _WORKSPACE_YAML.format(name=ws_name, extends=extends, locale=locale, currency=currency,
                               phone_region=region_line), "utf-8")
    (folder / "entities" / "README.yaml").write_text(_EXAMPLE, "utf-8")
    (folder / ".gitignore").write_text("crm.db\ncrm.db-*\nexports/\n", "utf-8")
    return folder
