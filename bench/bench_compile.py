"""Compile time of every shipped configuration (target < 300 ms).

Baseline: the same YAML work the loader does -- composing every file into
position-carrying nodes with PyYAML's libyaml loader -- measured in the same
run, so the ratio shows what building located values, schema checks,
layering and compiling cost on top of it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import yaml

from engine.dsl.compiler import compile_layers
from engine.dsl.layers import discover, list_industries, shipped_configs_root
from engine.dsl.schemacheck import VALID_MEMO
from engine.dsl.yamlsrc import PARSED_MEMO


def _median_ms(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run(quick: bool = False) -> list[dict[str, Any]]:
    root = shipped_configs_root()
    folders = [root / "base"] + [folder for _, folder in list_industries(root)]
    layer_sets = [discover(f) for f in folders]
    texts = [f.text for layers in layer_sets for layer in layers for f in layer.files]
    rounds = 3 if quick else 7

    def compile_all() -> None:
        VALID_MEMO.clear()  # every round starts cold; within a round base is read and validated once
        PARSED_MEMO.clear()
        for layers in layer_sets:
            compile_layers(layers)

    def parse_only() -> None:
        for text in texts:
            list(yaml.compose_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))

    compile_all()  # warm caches (schemas, grammar) as a running server would have them
    total = _median_ms(compile_all, rounds)
    base = _median_ms(parse_only, rounds)
    return [{
        "name": f"compile all shipped configs ({len(folders)} workspaces, {len(texts)} files)",
        "value": total, "unit": "ms", "baseline": base, "ratio": total / base if base else None,
        "target": "< 300 ms", "ok": total < 300,
    }]


if __name__ == "__main__":
    from engine.benchrunner import format_table

    print(format_table(run()))
