"""Generate ``docs/reference.md`` from the JSON Schemas (``python -m engine.dsl.docgen``).

A test fails when the committed reference differs from what this prints,
so the reference cannot drift from the schemas the loader enforces.
"""

from __future__ import annotations

from typing import Any

from engine.dsl.approvals import approval_kinds
from engine.dsl.sales import sales_kinds
from engine.dsl.schemacheck import load_schema

#: the kinds documented, in this order: the manifests, entity, role, the sales process's kinds, approval
KINDS = ("workspace", "industry", "entity", "role",
         *(k.name for k in [*sales_kinds(), *approval_kinds()] if isinstance(k.schema, str)))


def _type_text(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    if "$ref" in spec:
        ref = spec["$ref"].rsplit("/", 1)[-1]
        return {"identifier": "name", "label": "label", "expression": "expression", "scope": "scope",
                "field": "field", "option": "option"}.get(ref, ref)
    if "anyOf" in spec:
        return " or ".join(_type_text(s) for s in spec["anyOf"])
    t = spec.get("type", "any")
    if t == "array":
        return f"list of {_type_text(spec.get('items', {}))}"
    if t == "object" and "additionalProperties" in spec and isinstance(spec["additionalProperties"], dict):
        return f"map of {_type_text(spec['additionalProperties'])}"
    return str(t)


def _table(props: dict[str, Any], required: list[str]) -> list[str]:
    rows = ["| property | type | required | description |", "|---|---|---|---|"]
    for name, spec in props.items():
        desc = (spec.get("description") or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type_text(spec)} | {'yes' if name in required else ''} | {desc} |")
    return rows


def render() -> str:
    """The whole reference as Markdown."""
    out = ["# Configuration reference", "",
           "Generated from `engine/dsl/schemas/*.json` by `python -m engine.dsl.docgen`; do not edit by hand.",
           "Export the schemas for your editor with `crm schema --out DIR`.", ""]
    for kind in KINDS:
        schema = load_schema(f"{kind}.json")
        out += [f"## `{kind}:`", "", schema.get("description", ""), ""]
        out += _table(schema["properties"], schema.get("required", []))
        out.append("")
        for sub, sub_schema in schema.get("$defs", {}).items():
            # an object, or a choice (anyOf) one of whose forms is an object: {fields, fuzzy} beside [fields]
            forms = [sub_schema, *sub_schema.get("anyOf", ())]
            for form in (f for f in forms if "properties" in f):
                out += [f"### {kind} → {sub}", ""]
                out += _table(form["properties"], form.get("required", []))
                out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
