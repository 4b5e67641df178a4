"""Finding the layers of a workspace: base <- industry template <- workspace.

A customer workspace is a folder with ``workspace.yaml`` (``extends:
industries/manufacturing``); an industry template is a folder with
``industry.yaml`` (``extends: base``); ``base`` is the engine's core model.
``extends`` names a shipped layer (``base``, ``industries/<name>``) or a
path relative to the folder that declares it.

Every file is kept with a *bundle key* (``base/entities/lead.yaml``,
``industries/manufacturing/...``, ``workspace/...``) so that a revision
stored in the database can be compiled again without the folders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.dsl.yamlsrc import load_text
from engine.errors import LayerError, SourceLocation

MANIFESTS = ("workspace.yaml", "industry.yaml")
YAML_SUFFIXES = (".yaml", ".yml")
#: files a document may name beside the YAML (an approval's ``bpmn:``): kept in the layer and the bundle so a
#: stored revision compiles without the folder, but not read as YAML documents
SIDE_SUFFIXES = (".bpmn",)
BUNDLE_FORMAT = 1
MAX_DEPTH = 10


@dataclass(frozen=True, slots=True)
class LayerFile:
    key: str
    display: str
    text: str


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer: its name, manifest file (if any) and YAML files in load order."""

    name: str
    files: tuple[LayerFile, ...]
    manifest: LayerFile | None = None


def shipped_configs_root() -> Path:
    """The ``configs/`` folder shipped with the engine."""
    env = os.environ.get("CRM_CONFIGS_PATH")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "configs"


def display_path(path: Path) -> str:
    """A path as shown in messages: relative to the current folder when below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def list_industries(root: Path | None = None) -> list[tuple[str, Path]]:
    """(name, folder) of every shipped industry template."""
    base = (root or shipped_configs_root()) / "industries"
    if not base.is_dir():
        return []
    return sorted((p.name, p) for p in base.iterdir() if (p / "industry.yaml").is_file())


def discover(folder: Path, root: Path | None = None) -> list[Layer]:
    """The layers of the workspace (or template) in ``folder``, base first."""
    root = root or shipped_configs_root()
    chain: list[Layer] = []
    current: Path | None = folder.resolve()
    seen: set[Path] = set()
    while current is not None:
        if current in seen or len(chain) > MAX_DEPTH:
            raise LayerError(f"layers extend each other in a cycle at {display_path(current)}",
                             hint="check the 'extends:' of workspace.yaml / industry.yaml")
        seen.add(current)
        layer, parent_ref, ref_loc = _read_layer(current, root, is_top=not chain)
        chain.append(layer)
        current = _resolve_extends(parent_ref, current, root, ref_loc) if parent_ref else None
    return list(reversed(chain))


def _layer_name(folder: Path, root: Path, is_top: bool) -> str:
    try:
        rel = folder.relative_to(root.resolve())
        return rel.as_posix()
    except ValueError:
        return "workspace" if is_top else f"layer-{folder.name}"


def _read_layer(folder: Path, root: Path, *, is_top: bool) -> tuple[Layer, str | None, SourceLocation | None]:
    if not folder.is_dir():
        raise LayerError(f"{display_path(folder)} is not a folder",
                         hint="give the folder of a workspace (with workspace.yaml); create one with 'crm init'")
    name = _layer_name(folder, root, is_top)
    manifest_path = next((folder / m for m in MANIFESTS if (folder / m).is_file()), None)
    manifest = None
    parent_ref = None
    ref_loc = None
    if manifest_path is not None:
        manifest = _layer_file(manifest_path, f"{name}/{manifest_path.name}")
        parent_ref, ref_loc = _manifest_extends(manifest)
    elif name != "base" and is_top:
        raise LayerError(f"{display_path(folder)} has no workspace.yaml",
                         location=SourceLocation(display_path(folder / "workspace.yaml"), 1, 1),
                         hint="create the workspace with 'crm init DIR --industry NAME', or add workspace.yaml")
    files = tuple(
        _layer_file(p, f"{name}/{p.relative_to(folder).as_posix()}")
        for p in _yaml_files(folder)
        if p != manifest_path
    )
    return Layer(name, files, manifest), parent_ref, ref_loc


def _yaml_files(folder: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("__pycache__",))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(YAML_SUFFIXES + SIDE_SUFFIXES))
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def _layer_file(path: Path, key: str) -> LayerFile:
    display = display_path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        from engine.errors import YamlSyntaxError

        raise YamlSyntaxError("file is not valid UTF-8", location=SourceLocation(display, line, 1),
                              hint="save the file as UTF-8") from e
    return LayerFile(key, display, text)


def _manifest_extends(manifest: LayerFile) -> tuple[str | None, SourceLocation | None]:
    docs = load_text(manifest.text, manifest.display)
    if not docs or not isinstance(docs[0].data, dict):
        return None, None
    data = docs[0].data
    ref = data.get("extends")
    loc = data.val_locs.get("extends") if hasattr(data, "val_locs") else None
    return (ref if isinstance(ref, str) else None), loc


def _resolve_extends(ref: str, folder: Path, root: Path, loc: SourceLocation | None) -> Path:
    candidates = [root / ref, folder / ref] if not ref.startswith((".", "/")) else [folder / ref]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    known = ["base", *(f"industries/{n}" for n, _ in list_industries(root))]
    raise LayerError(
        f"extends: {ref!r} names no layer",
        location=loc,
        hint=f"use one of: {', '.join(known)} (or a path to a layer folder)",
    )


# --------------------------------------------------------------------------- bundles


def to_bundle(layers: Sequence[Layer], workspace_name: str) -> dict[str, Any]:
    """A JSON-ready bundle of every file of every layer (stored with a revision).

    ``layers`` lists the layer names, base first; ``files`` maps each bundle
    key (``<layer>/<path>``) to its text.  Which file belongs to which layer,
    and which is the layer's manifest, follows from the key.
    """
    return {
        "format": BUNDLE_FORMAT,
        "workspace": workspace_name,
        "layers": [layer.name for layer in layers],
        "files": {f.key: f.text for layer in layers for f in _all_files(layer)},
    }


def _all_files(layer: Layer) -> list[LayerFile]:
    return ([layer.manifest] if layer.manifest else []) + list(layer.files)


def from_bundle(bundle: Mapping[str, Any]) -> list[Layer]:
    """Layers rebuilt from a stored bundle (see :func:`to_bundle`)."""
    bundle = migrate_bundle(bundle)
    files: Mapping[str, str] = bundle["files"]
    out = []
    for name in bundle["layers"]:
        prefix = name + "/"
        keys = sorted(k for k in files if k.startswith(prefix))
        manifest_keys = [k for k in keys if k[len(prefix):] in MANIFESTS]
        manifest = LayerFile(manifest_keys[0], manifest_keys[0], files[manifest_keys[0]]) if manifest_keys else None
        body = tuple(LayerFile(k, k, files[k]) for k in keys if k not in manifest_keys)
        out.append(Layer(name, body, manifest))
    return out


def migrate_bundle(bundle: Mapping[str, Any]) -> Mapping[str, Any]:
    """Bring a stored bundle up to :data:`BUNDLE_FORMAT` (one step per old format)."""
    fmt = bundle.get("format")
    if fmt == BUNDLE_FORMAT:
        return bundle
    raise LayerError(f"revision bundle format {fmt!r} is not known to this engine version",
                     hint="upgrade the engine to read this revision")
