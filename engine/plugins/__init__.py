"""Plugins: the one extension surface of the engine (pluggy).

* :data:`hookimpl` marks a plugin's hook implementations; the hooks are
  specified in :mod:`engine.plugins.hookspecs` (docs/plugins.md).
* :class:`PluginHost` is one plugin manager -- never a module global: each
  compile of a workspace, and each runtime State, gets its own.  The
  built-in features register through it as the default plugin
  (:mod:`engine.plugins.builtin`), exactly like installed plugins.
* Installed plugins are found through the entry-point group
  ``crm_engine.plugins``; a workspace enables them by name in
  ``workspace.yaml`` (``plugins: [chinese_id]``).  A name that is not
  installed is a located configuration error.
* :func:`compile_folder` / :func:`compile_bundle` compile with the plugins
  the workspace enables -- the same way for ``crm apply`` and for a server
  restarted on the stored revision.
"""

from __future__ import annotations

from engine.plugins.host import (
    ENTRY_POINT_GROUP,
    PluginHost,
    compile_bundle,
    compile_folder,
    hookimpl,
    installed_plugins,
)

__all__ = ["ENTRY_POINT_GROUP", "PluginHost", "compile_bundle", "compile_folder", "hookimpl",
           "installed_plugins"]
