"""YAML reading that keeps the source position of every node.

Mappings load as :class:`YMap` and sequences as :class:`YList`: ordinary
``dict`` / ``list`` subclasses (so JSON Schema validation works on them
unchanged) that also remember where each key and each value stood in the
file.  :func:`locate` turns a path such as ``("fields", "budget", "type")``
back into a :class:`~engine.errors.SourceLocation`.

Scalars follow the YAML 1.2 core schema for booleans: only ``true`` /
``false`` are booleans, so keys like ``on:`` or values like ``no`` stay
strings (YAML 1.1 would silently turn them into booleans).  Dates stay
strings too; the compiler parses them against the field type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from engine.dsl.scalarpos import ScalarText
from engine.errors import SourceLocation, YamlSyntaxError


class YMap(dict):
    """A mapping that knows where its keys and values were written."""

    loc: SourceLocation
    key_locs: dict[Any, SourceLocation]
    val_locs: dict[Any, SourceLocation]

    def __init__(self, *args: Any, loc: SourceLocation | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loc = loc or SourceLocation("<memory>", 1, 1)
        self.key_locs = {}
        self.val_locs = {}

    def set_located(self, key: Any, value: Any, key_loc: SourceLocation, val_loc: SourceLocation) -> None:
        self[key] = value
        self.key_locs[key] = key_loc
        self.val_locs[key] = val_loc


class YList(list):
    """A sequence that knows where each item was written.

    ``history``: after layering, every place that wrote or changed the list, in
    layer order (empty: only ``loc``, a list no later layer touched).
    """

    loc: SourceLocation
    item_locs: list[SourceLocation]
    history: list[SourceLocation]

    def __init__(self, *args: Any, loc: SourceLocation | None = None) -> None:
        super().__init__(*args)
        self.loc = loc or SourceLocation("<memory>", 1, 1)
        self.item_locs = []
        self.history = []

    def written_at(self) -> list[SourceLocation]:
        """Every place that wrote or changed the list, first definition first."""
        return self.history or [self.loc]


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x faster, same marks


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader with YAML 1.2 booleans and no implicit timestamps."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _loc(file: str, mark: Any) -> SourceLocation:
    return SourceLocation(file, mark.line + 1, mark.column + 1)


class YamlDocument:
    """One YAML document of a file: its data and where it came from."""

    __slots__ = ("data", "file", "index", "loc")

    def __init__(self, data: Any, file: str, index: int, loc: SourceLocation) -> None:
        self.data = data
        self.file = file
        self.index = index
        self.loc = loc


class _ParsedMemo:
    """Parsed files by (path, text): parsing is a pure function of both, and the
    loader never mutates parsed documents (merging works on copies).  Bounded."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.docs: dict[tuple[str, str], list[YamlDocument]] = {}

    def get(self, key: tuple[str, str]) -> list[YamlDocument] | None:
        return self.docs.get(key)

    def put(self, key: tuple[str, str], docs: list[YamlDocument]) -> None:
        if len(self.docs) >= self.size:
            self.docs.pop(next(iter(self.docs)))
        self.docs[key] = docs

    def clear(self) -> None:
        self.docs.clear()


PARSED_MEMO = _ParsedMemo()


def load_text(text: str, file: str) -> list[YamlDocument]:
    """Parse every document of ``text``; raise :class:`YamlSyntaxError` located.

    The documents returned may be shared with other callers: treat them as read-only.
    """
    key = (file, text)
    cached = PARSED_MEMO.get(key)
    if cached is not None:
        return list(cached)
    docs = _parse_text(text, file)
    PARSED_MEMO.put(key, docs)
    return list(docs)


#: Largest configuration file read (bytes); real workspaces are far below it.
MAX_FILE_BYTES = 2 * 1024 * 1024
#: Most values one document may hold once aliases (``*name``) and merges (``<<:``) are expanded.
MAX_NODES = 200_000


def _parse_text(text: str, file: str) -> list[YamlDocument]:
    if len(text) > MAX_FILE_BYTES:
        raise _too_big(file, len(text.encode("utf-8", "surrogatepass")))
    if "\t" in text:
        _reject_tabs(text, file)
    loader = _Loader(text)
    docs: list[YamlDocument] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _check_expansion(node, file)
            data = _build(loader, node, file, text)
            docs.append(YamlDocument(data, file, index, _loc(file, node.start_mark)))
            index += 1
    except yaml.MarkedYAMLError as e:
        raise _yaml_error(e, file, text) from e
    finally:
        loader.dispose()
    return docs


def _too_big(file: str, size: int) -> YamlSyntaxError:
    return YamlSyntaxError(f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}",
                           location=SourceLocation(file, 1, 1),
                           hint="split it into several files (one document per entity, role, ...)")


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases expand past :data:`MAX_NODES` values, or refer to themselves.

    Counted on the composed node graph, each node once (memoised), before
    anything is built: a "billion laughs" document of a few hundred bytes
    is refused in microseconds instead of expanding into gigabytes.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_NODES:
                raise YamlSyntaxError(
                    f"this value expands to more than {MAX_NODES:,} values through aliases (*name) or merges (<<)",
                    location=_loc(file, node.start_mark),
                    hint="each alias copies the whole anchored value; use fewer or smaller aliases")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlSyntaxError("an alias (*name) refers to the value that contains it",
                                  location=_loc(file, node.start_mark),
                                  hint="an anchored value cannot include itself; copy the part you need")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_file(path: Path, display: str | None = None) -> tuple[str, list[YamlDocument]]:
    """Read a file as UTF-8 and parse it; returns (text, documents)."""
    name = display or str(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _too_big(name, size)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise YamlSyntaxError(
            "file is not valid UTF-8",
            location=SourceLocation(name, line, 1),
            hint="save the file as UTF-8",
        ) from e
    return text, load_text(text, name)


def _reject_tabs(text: str, file: str) -> None:
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t"):
            col = len(line) - len(stripped) + 1
            raise YamlSyntaxError(
                "a tab is used for indentation",
                location=SourceLocation(file, lineno, col),
                hint="YAML indents with spaces only; replace the tab with spaces",
                snippet=caret_snippet(line, col),
            )


def _yaml_error(e: yaml.MarkedYAMLError, file: str, text: str) -> YamlSyntaxError:
    mark = e.problem_mark or e.context_mark
    loc = _loc(file, mark) if mark is not None else SourceLocation(file, 1, 1)
    problem = e.problem or e.context or "invalid YAML"
    hint = "check the indentation: items of one mapping must start in the same column"
    if "found character '\\t'" in problem or "tab" in problem:
        hint = "YAML indents with spaces only; replace the tab with spaces"
    elif "mapping values are not allowed" in problem:
        hint = "a value containing ': ' must be quoted, or the line is indented too far"
    elif "could not find expected ':'" in problem:
        hint = "a key needs a ':' after it; or quote a string that spans lines"
    elif "found unexpected end of stream" in problem or "found unexpected" in problem:
        hint = "a quote or bracket is not closed"
    lines = text.splitlines()
    snippet = caret_snippet(lines[loc.line - 1], loc.col) if 0 < loc.line <= len(lines) else None
    return YamlSyntaxError(f"invalid YAML: {problem}", location=loc, hint=hint, snippet=snippet)


def _value_loc(file: str, node: yaml.Node, text: str) -> SourceLocation:
    """Where a value's text starts: inside the quotes of a quoted scalar, so that
    positions inside the value (e.g. of an expression) add up to the file column.

    A scalar whose text YAML rewrites (quoted, block, or spread over lines) also
    carries a :class:`~engine.dsl.scalarpos.ScalarText`, mapping each character of
    the value back to the file exactly (``SourceLocation.inside``).
    """
    start, end = node.start_mark, node.end_mark
    col = start.column + 1
    if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
        col += 1
    positions = None
    if isinstance(node, yaml.ScalarNode) and (node.style or start.line != end.line):
        positions = ScalarText(text, start.index, end.index, start.line + 1, start.column + 1, node.style)
    return SourceLocation(file, start.line + 1, col, positions)


def caret_snippet(line: str, col: int) -> str:
    """The line and a caret under column ``col`` (1-based)."""
    return f"    {line}\n    {' ' * max(col - 1, 0)}^"


def _build(loader: _Loader, node: yaml.Node, file: str, text: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out = YMap(loc=_loc(file, node.start_mark))
        for key_node, value_node in node.value:
            key = _build(loader, key_node, file, text)
            key_loc = _loc(file, key_node.start_mark)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise YamlSyntaxError("a mapping key must be a plain value", location=key_loc)
            if key in out:
                raise YamlSyntaxError(
                    f"duplicate key '{key}' (first at line {out.key_locs[key].line})",
                    location=key_loc,
                    hint="each key may appear once in a mapping; merge the two entries",
                )
            out.set_located(key, _build(loader, value_node, file, text), key_loc, _value_loc(file, value_node, text))
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = YList(loc=_loc(file, node.start_mark))
        for item in node.value:
            seq.append(_build(loader, item, file, text))
            seq.item_locs.append(_value_loc(file, item, text))
        return seq
    return loader.construct_object(node, deep=True)


# --------------------------------------------------------------------------- positions


def locate(root: Any, path: Sequence[Any], *, key: bool = False) -> SourceLocation | None:
    """Where the node at ``path`` below ``root`` was written.

    With ``key=True`` the location of the last key itself (useful for
    "unknown property" errors).  Falls back to the nearest located ancestor.
    """
    node = root
    best: SourceLocation | None = getattr(root, "loc", None)
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, YMap) and step in node:
            best = node.key_locs[step] if (last and key) else node.val_locs.get(step, best)
            node = node[step]
        elif isinstance(node, YList) and isinstance(step, int) and 0 <= step < len(node):
            best = node.item_locs[step] if step < len(node.item_locs) else best
            node = node[step]
        else:
            break
    return best


def located_copy(node: Any) -> Any:
    """A deep copy that keeps positions (much faster than ``copy.deepcopy``)."""
    if isinstance(node, YMap):
        out = YMap(loc=node.loc)
        for k, v in node.items():
            out[k] = located_copy(v)
        out.key_locs = dict(node.key_locs)
        out.val_locs = dict(node.val_locs)
        return out
    if isinstance(node, YList):
        seq = YList((located_copy(v) for v in node), loc=node.loc)
        seq.item_locs = list(node.item_locs)
        seq.history = list(node.history)
        return seq
    if isinstance(node, dict):
        return {k: located_copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [located_copy(v) for v in node]
    return node


def plain(node: Any) -> Any:
    """A deep copy as plain dicts and lists (no positions)."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node
