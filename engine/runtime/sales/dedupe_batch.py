"""``block`` rules within one bulk create: a row that duplicates an earlier row of the same request.

The dedupe step checks each record against the keys stored in ``crm_dedupe_keys`` before it is written,
but a bulk create validates every row before any of them is stored, so two rows of one request with the
same key would both pass.  :func:`refusals` compares the rows among themselves with the same keys,
normalisers and similarity as the stored lookup (:func:`~engine.runtime.sales.dedupe_keys.rule_matches`):
equal keys by kind and value -- so a contact's mobile meets another's phone -- and a fuzzy key scored
only against the earlier rows sharing one of its blocking keys.  Pure: no database, no caller to hide
anything from (every row is the caller's own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

from engine.dsl.sales.dedupe import DedupeRule, MatchKey
from engine.errors import DuplicateFound
from engine.runtime.sales.dedupe_keys import DedupeIndex, key_value
from engine.runtime.sales.duplicates import matched_fields
from engine.runtime.sales.normalise import block_keys

#: the earlier rows named in a refusal's message (all are in its details)
NAMED = 3


@dataclass(frozen=True, slots=True)
class RowMatch:
    """An earlier row of the request that a row matches by one key of a rule."""

    row: int
    rule: str
    key: MatchKey
    score: float


class _Seen:
    """The keys of the rows let through so far: equal keys by (kind, key), fuzzy ones by blocking key."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, str], int] = {}
        self.blocks: dict[tuple[str, str], list[tuple[int, str]]] = {}

    def matches(self, rule: DedupeRule, key: MatchKey, value: str, fuzzy: bool) -> list[RowMatch]:
        if not fuzzy:
            row = self.exact.get((key.kind, value))
            return [] if row is None else [RowMatch(row, rule.name, key, 100.0)]
        cutoff = float(key.fuzzy or 100)
        candidates = {c for b in block_keys(value) for c in self.blocks.get((key.kind, b), ())}
        scored = ((row, float(fuzz.ratio(value, other))) for row, other in candidates)
        return [RowMatch(row, rule.name, key, round(score, 1)) for row, score in scored if score >= cutoff]

    def add(self, row: int, key: MatchKey, value: str, fuzzy: bool) -> None:
        if not fuzzy:
            self.exact.setdefault((key.kind, value), row)
            return
        for b in block_keys(value):
            self.blocks.setdefault((key.kind, b), []).append((row, value))


def refusals(idx: DedupeIndex, entity: str, rows: Sequence[tuple[int, Mapping[str, Any]]]
             ) -> dict[int, DuplicateFound]:
    """Row index -> the refusal of each row (``(index in the request, record)``, in request order) that a
    ``block`` rule of ``entity`` finds duplicating an earlier row.  A refused row is not written, so the
    rows after it are compared with the rows let through only."""
    keys = [(rule, key) for rule in idx.rules.get(entity, ()) if rule.action == "block"
            for key in rule.keys if entity in rule.searched(key)]
    if not keys or len(rows) < 2:
        return {}
    seen = _Seen()
    out: dict[int, DuplicateFound] = {}
    for index, record in rows:
        values = [(rule, key, value, key.fuzzy is not None and key.kind not in idx.blinded)
                  for rule, key in keys
                  if (value := key_value(key.fields, key.normalisers, record, idx.region)) is not None]
        found = [m for rule, key, value, fuzzy in values for m in seen.matches(rule, key, value, fuzzy)]
        if found:
            out[index] = refusal(entity, found)
            continue
        for _rule, key, value, fuzzy in values:
            seen.add(index, key, value, fuzzy)
    return out


def refusal(entity: str, found: Sequence[RowMatch]) -> DuplicateFound:
    """The 409 of a row that duplicates earlier rows of its request: which rows, by which keys, what to do."""
    by_row: dict[int, list[RowMatch]] = {}
    for m in found:
        by_row.setdefault(m.row, []).append(m)
    order = sorted(by_row, key=lambda r: (-max(m.score for m in by_row[r]), r))
    items = [{"row": r, "score": max(m.score for m in by_row[r]),
              "matched_by": [{"rule": m.rule, "kind": m.key.kind, "fields": list(m.key.fields), "score": m.score}
                             for m in by_row[r]]} for r in order]
    named = [f"row {i['row']} of this request by {matched_fields(i)}" for i in items[:NAMED]]
    if len(items) > NAMED:
        named.append(f"{len(items) - NAMED} more rows")
    rules = sorted({m.rule for m in found})
    return DuplicateFound(
        f"this {entity} duplicates {'; '.join(named)}",
        hint="send each record once, or change the values that match; "
             f"rule {', '.join(repr(r) for r in rules)} refuses duplicates",
        details={"entity": entity, "rules": rules, "matches": items, "hidden": 0})
