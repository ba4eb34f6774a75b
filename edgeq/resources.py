"""Files shipped inside the package (target profiles, runner and sample-app sources), found with
``importlib.resources`` so they resolve the same in a source checkout, an editable install and a wheel."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from edgeq.errors import UsageError


def package_path(*parts: str) -> Path:
    """A real filesystem path to a packaged folder or file (edgeq is never installed zipped: CMake and the
    device copies need real files)."""
    node = files("edgeq").joinpath(*parts)
    path = Path(str(node))
    if not path.exists():
        raise UsageError(f"packaged resource edgeq/{'/'.join(parts)} is missing",
                         "reinstall edgeq (pip install --force-reinstall edgeq); a partial install lacks its data")
    return path


def profiles_dir() -> Path:
    return package_path("profiles")


def sample_app_dir(name: str) -> Path:
    return package_path("sample_apps", name)
