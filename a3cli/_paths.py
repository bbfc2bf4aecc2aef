"""Where a3 keeps things outside a run directory, and how it finds packaged assets without importing them."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from a3cli.errors import MissingDependencyError


def user_cache_dir() -> Path:
    """Root for converted models and the LLM cache: $A3_CACHE_DIR, else $XDG_CACHE_HOME/a3, else ~/.cache/a3."""
    if env := os.environ.get("A3_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "a3"


def package_folder(package: str, purpose: str) -> Path:
    """Folder of an installed package, found without importing it (some asset packages have heavy or broken imports)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(package.replace("_", "-"), purpose)
    return Path(list(spec.submodule_search_locations)[0])


# data/ sits at the repository root (the product's layout). A source checkout or an editable install reads it there; a
# wheel installs it as data-files under <prefix>/share/a3/data (see pyproject.toml).
_DATA_DIRS = (Path(__file__).resolve().parents[1] / "data", Path(sys.prefix) / "share" / "a3" / "data")


def builtin_data(name: str) -> Path:
    """Path of one of a3's built-in data files (general prompts, red-team prompts, the safety-prompt library): the
    first location that has it, else the installed location, so a missing file fails where it is read, naming it."""
    for folder in _DATA_DIRS:
        if (folder / name).is_file():
            return folder / name
    return _DATA_DIRS[-1] / name
