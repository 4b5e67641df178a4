"""The plugin manager of one compile or one runtime State (see :mod:`engine.plugins`)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pluggy

from engine.dsl.compiler import compile_layers, plugin_names
from engine.dsl.extensions import Extensions, make_extensions
from engine.dsl.layers import Layer, discover, from_bundle
from engine.dsl.model import Workspace
from engine.plugins import builtin, hookspecs

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "crm_engine.plugins"
#: The engine's own features, registered after the built-in plugin in every host (Datasette's
#: DEFAULT_PLUGINS): named by module so this package does not import the runtime that implements them.
DEFAULT_PLUGINS = (
    "engine.runtime.sales.plugin",
    "engine.runtime.approvals.plugin",
    "engine.runtime.encryption.plugin",
    "engine.runtime.currency.plugin",
    "engine.runtime.collab.plugin",
    "engine.runtime.people.plugin",
    "engine.runtime.search.plugin",
)
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)


def installed_plugins() -> dict[str, EntryPoint]:
    """Plugin name -> entry point, for every package that registers under ``crm_engine.plugins``."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


class PluginHost:
    """One pluggy manager: the built-in plugin plus the named installed plugins.

    Names that are not installed are skipped here (the compile reports them,
    located in ``workspace.yaml``).  ``extra`` registers plugin objects that
    are not installed packages (tests, embedding).  A misspelled hook name
    fails at once (``check_pending``).
    """

    def __init__(self, names: Sequence[str] = (), *, extra: Iterable[Any] = ()) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.manager.register(builtin, name="builtin")
        for module in DEFAULT_PLUGINS:
            self.manager.register(importlib.import_module(module), name=module)
        found = installed_plugins()
        loaded: list[str] = []
        for name in dict.fromkeys(names):
            ep = found.get(name)
            if ep is not None:
                self.manager.register(ep.load(), name=name)
                loaded.append(name)
        for plugin in extra:
            name = getattr(plugin, "PLUGIN_NAME", None) or getattr(plugin, "__name__", None) or repr(plugin)
            self.manager.register(plugin, name=name)
            loaded.append(name)
        self.manager.check_pending()
        self.names = tuple(loaded)
        self.extensions: Extensions = make_extensions(
            self._collect("crm_config_kinds"), self._collect("crm_expression_functions"),
            self._collect("crm_field_types"), plugins=self.names, installed=tuple(found),
            file_stores=tuple(self.file_stores()))

    def _collect(self, hook: str, **kwargs: Any) -> list[Any]:
        """Every plugin's answer to ``hook``, flattened, built-in plugin first."""
        results = getattr(self.manager.hook, hook)(**kwargs)
        # pluggy calls the last registered first: reverse to the registration order
        return [item for result in reversed(results) for item in (result or ())]

    def write_steps(self, workspace: Workspace) -> list[Any]:
        """The plugins' write steps for one compiled revision."""
        return self._collect("crm_write_steps", workspace=workspace)

    def event_handlers(self, workspace: Workspace) -> list[Any]:
        """The plugins' durable event handlers for one compiled revision."""
        return self._collect("crm_event_handlers", workspace=workspace)

    def read_masks(self, workspace: Workspace) -> list[Any]:
        """The read masks for one compiled revision, by name."""
        return sorted(self._collect("crm_read_masks", workspace=workspace), key=lambda m: m.name)

    def plan_steps(self, workspace: Workspace) -> list[Any]:
        """The data-change steps of a plan for one compiled workspace, by name."""
        return sorted(self._collect("crm_plan_steps", workspace=workspace), key=lambda s: s.name)

    def job_kinds(self) -> dict[str, Any]:
        """Job kinds by name (ValueError on a name defined twice)."""
        return _by_name(self._collect("crm_job_kinds"), "job kind")

    def actions(self) -> dict[str, Any]:
        """Actions by name (ValueError on a name defined twice)."""
        return _by_name(self._collect("crm_actions"), "action")

    def api_blueprints(self, runtime: Any) -> list[Any]:
        return self._collect("crm_api_blueprints", runtime=runtime)

    def file_stores(self) -> dict[str, Any]:
        """The file store kinds by name (``local`` is the collaboration feature's; ValueError on a name
        defined twice)."""
        return _by_name(self._collect("crm_file_stores"), "file store")

    def cli_commands(self) -> list[Any]:
        return self._collect("crm_cli_commands")

    def admin_views(self, runtime: Any) -> list[Any]:
        return self._collect("crm_admin_views", runtime=runtime)

    def compile(self, layers: Sequence[Layer]) -> Workspace:
        """Compile ``layers`` with this host's extensions."""
        return compile_layers(layers, extensions=self.extensions)


def _by_name(items: Iterable[Any], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if item.name in out:
            raise ValueError(f"{what} {item.name!r} is defined by two plugins")
        out[item.name] = item
    return out


def compile_folder(folder: Path, *, extra: Iterable[Any] = ()) -> tuple[Workspace, PluginHost]:
    """Compile a workspace folder with the plugins its ``workspace.yaml`` enables; (workspace, host)."""
    layers = discover(folder)
    host = PluginHost(plugin_names(layers), extra=extra)
    return host.compile(layers), host


def compile_bundle(bundle: Mapping[str, Any], *, extra: Iterable[Any] = ()) -> tuple[Workspace, PluginHost]:
    """Compile a stored revision with the plugins it enables -- as its apply did; (workspace, host)."""
    layers = from_bundle(bundle)
    host = PluginHost(plugin_names(layers), extra=extra)
    return host.compile(layers), host
