"""What a kind's compiler sees: the objects compiled before it, the extensions, and where to report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.dsl.extensions import Extensions
    from engine.dsl.layers import LayerFile
    from engine.dsl.model import Entity, Role


@dataclass
class CompileContext:
    """Filled kind by kind in compile order: a pipeline's compiler finds its entity in ``entities``,
    an approval's finds its roles in ``roles``, a later kind finds earlier kinds' objects in ``objects``."""

    extensions: Extensions
    report: Callable[[ConfigError], None]
    #: the workspace's locale and currency (from the manifests)
    settings: dict[str, Any] = field(default_factory=dict)
    entities: dict[str, Entity] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    #: kind -> name -> compiled object, for the kinds compiled so far (entity and role included)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: every file of every layer by bundle key (side files such as an approval's ``.bpmn`` included)
    files: dict[str, LayerFile] = field(default_factory=dict)
