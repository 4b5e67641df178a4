"""What changed between two compiled workspaces, beyond the database schema.

The planner lists what an apply does to tables and rows; a label, a help
text, a check rule, a role's permissions or a plugin object can change with
no schema change at all.  :func:`config_changes` names those changes, one
line each (``lead.email: label.zh '邮箱' -> '电子邮箱'``), so a plan never says
"no changes" for a configuration that did change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from engine.dsl.model import Workspace
from engine.errors import SourceLocation

#: attributes that say where something was written or how it was compiled, not what it means
_IGNORED = frozenset({"location", "expr_location", "sources", "content_hash", "compiled", "functions",
                      "field_types", "warnings", "layers", "key_locs", "former_names", "renamed_from"})
#: at most this many lines per object; the rest is counted
_MAX_LINES = 200


def plain(value: Any) -> Any:
    """``value`` as plain data (dicts, lists, scalars) without source locations."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in _IGNORED and not isinstance(getattr(value, f.name), SourceLocation)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if str(k) not in _IGNORED}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _diff(path: str, old: Any, new: Any, out: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{path}.{key}" if path else key
            if key not in new:
                out.append(f"{sub}: removed")
            elif key not in old:
                out.append(f"{sub}: added {_short(new[key])}")
            else:
                _diff(sub, old[key], new[key], out)
        return
    out.append(f"{path}: {_short(old)} -> {_short(new)}")


def config_changes(old: Workspace, new: Workspace) -> tuple[str, ...]:
    """One line per configuration change from ``old`` to ``new`` that is not only a schema change.

    Entities and fields that appear or disappear are the planner's business
    (create table, add column, retire) and are not repeated here.
    """
    out: list[str] = []
    for attr in ("locale", "currency", "plugins"):
        _diff(f"workspace {attr}", plain(getattr(old, attr)), plain(getattr(new, attr)), out)
    for name, entity in new.entities.items():
        before = old.entities.get(name)
        if before is None:
            continue
        a, b = plain(before), plain(entity)
        fa, fb = a.pop("fields"), b.pop("fields")
        a.pop("retired", None)
        b.pop("retired", None)
        _diff(name, a, b, out)
        for fname in fb:
            if fname in fa:
                _diff(f"{name}.{fname}", fa[fname], fb[fname], out)
    kinds: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {"role": (old.roles, new.roles)}
    for kind in sorted({*old.objects, *new.objects}):
        kinds[kind] = (old.objects_of(kind), new.objects_of(kind))
    for kind, (before_objs, after_objs) in kinds.items():
        for name in [*before_objs, *(n for n in after_objs if n not in before_objs)]:
            if name not in after_objs:
                out.append(f"{kind} {name}: removed")
            elif name not in before_objs:
                out.append(f"{kind} {name}: added")
            else:
                _diff(f"{kind} {name}", plain(before_objs[name]), plain(after_objs[name]), out)
    if len(out) > _MAX_LINES:
        out[_MAX_LINES:] = [f"... and {len(out) - _MAX_LINES} more"]
    return tuple(out)
