"""Reading the errors a workspace folder fails to compile with, and where each one points."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.dsl.compiler import compile_folder
from engine.errors import ConfigError, ConfigErrors


def errors_of(folder: Path) -> list[ConfigError]:
    """Every error compiling ``folder`` raises (it must raise)."""
    with pytest.raises(ConfigError) as info:
        compile_folder(folder)
    err = info.value
    return err.errors if isinstance(err, ConfigErrors) else [err]


def where(err: ConfigError) -> tuple[str, int, int]:
    """(file name, line, column) of an error's location."""
    assert err.location is not None, err
    return Path(err.location.file).name, err.location.line, err.location.col
