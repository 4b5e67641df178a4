"""``crm bench``: run the benchmarks in ``bench/`` and print one table.

Each module ``bench/bench_*.py`` exposes ``run(quick: bool = False) -> list[dict]``
whose rows carry ``name``, ``value``, ``unit``, ``baseline``, ``ratio`` and
``target`` (a text such as ``">= 0.5x"`` or ``"< 300 ms"``).  Baselines are
measured in the same run, so the ratios hold on a noisy machine.
"""

from __future__ import annotations

import importlib
import re
import sys
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def bench_modules(only: str | None = None) -> list[str]:
    """Names of the benchmark modules found in ``bench/``."""
    folder = REPO / "bench"
    names = sorted(p.stem for p in folder.glob("bench_*.py"))
    return [n for n in names if only is None or only in n]


_TARGET = re.compile(r"^(>=|<=|<|>)\s*([0-9.]+)\s*(x|ms|s|µs)?$")


def meets(row: dict[str, Any]) -> bool | None:
    """Whether ``row`` meets its target: ``>= 0.5x`` / ``<= 3x`` judge the ratio, ``< 300 ms`` / ``< 1 s``
    the value (in the row's unit); None when the row has no target it can be judged by."""
    m = _TARGET.match(str(row.get("target") or "").strip())
    if m is None:
        return None
    op, number, unit = m.group(1), float(m.group(2)), m.group(3)
    measured = row.get("ratio") if unit in (None, "x") else row.get("value")
    if not isinstance(measured, (int, float)) or (unit not in (None, "x") and unit != row.get("unit")):
        return None
    return {">=": measured >= number, "<=": measured <= number, "<": measured < number,
            ">": measured > number}[op]


NO_BENCHMARKS = ("crm bench runs the benchmarks of a source checkout (its bench/ folder), and this engine "
                 "is installed without them: clone the repository, pip install -e '.[test]' in it, and run "
                 "crm bench there")


def run_benchmarks(*, quick: bool = False, only: str | None = None) -> str:
    """Run every benchmark module and format the rows as a table (each row judged against its target)."""
    if not (REPO / "bench").is_dir():
        return NO_BENCHMARKS
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    rows: list[dict[str, Any]] = []
    for name in bench_modules(only):
        try:
            module = importlib.import_module(f"bench.{name}")
            rows.extend({"module": name, **r} for r in module.run(quick=quick))
        except Exception as e:  # one broken benchmark must not hide the others
            rows.append({"module": name, "name": "FAILED", "value": f"{type(e).__name__}: {e}"})
            traceback.print_exc(file=sys.stderr)
    for row in rows:
        if "ok" not in row:
            row["ok"] = meets(row)
    return format_table(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    cols = ["module", "name", "value", "unit", "baseline", "ratio", "target", "ok"]
    table = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) if table else len(c) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out.extend("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in table)
    return "\n".join(out)
