"""Plugin tests use ``install_plugin`` from tests/conftest.py."""

from __future__ import annotations

from tests.conftest import Install, install_plugin

__all__ = ["Install", "install_plugin"]
