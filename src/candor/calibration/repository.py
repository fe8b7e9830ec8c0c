"""Writing model versions into a model repository, ``<repo>/<name>/<version>/`` (stdlib only).

A version is staged in a hidden folder next to its final place and renamed
into place when complete, so a watcher (the server) never sees half a version.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"model name {name!r} must start with a letter or digit and hold only letters, digits, '_', '.', '-'")
    return name


def versions(repo: Path, name: str) -> list[int]:
    folder = Path(repo) / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def version_dir(repo: Path, name: str, version: int | None = None) -> Path:
    """The folder of ``version`` (the newest when None); ValueError if absent."""
    found = versions(repo, check_name(name))
    if not found:
        raise ValueError(f"no versions of model {name!r} in {repo}")
    chosen = found[-1] if version is None else version
    if chosen not in found:
        raise ValueError(f"model {name!r} has no version {chosen} in {repo} (has {found})")
    return Path(repo) / name / str(chosen)


def publish(repo: Path, name: str, write: Callable[[Path, int], None]) -> Path:
    """Stage a new version with ``write(folder, version)``, then rename it into place.

    If ``write`` fails, the staging folder is removed and nothing is published.
    """
    folder = Path(repo) / check_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    version = (versions(repo, name) or [0])[-1] + 1
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=folder))
    try:
        write(staging, version)
        final = folder / str(version)
        # rename fails if another writer took this number meanwhile: no overwrite.
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
