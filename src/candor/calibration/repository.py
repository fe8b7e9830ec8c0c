"""Writing model versions into a model repository, ``<repo>/<name>/<version>/`` (stdlib only).

A version is staged in a hidden folder next to its final place and renamed
into place when complete, so a watcher (the server) never sees half a version.
"""

from __future__ import annotations

import errno
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# ASCII digits only, and few of them: str.isdigit() also accepts '²' and '١', which int() rejects
# or reads as another number, and a version of 5,000 digits is no version.
_VERSION = re.compile(r"[0-9]{1,9}")
MAX_VERSION_DIGITS = 9
PUBLISH_ATTEMPTS = 5  # another writer taking the same number meanwhile: try the next one


def parse_version(text: str) -> int | None:
    """The version a folder name or a request's version field names (a positive whole number in ASCII
    digits, at most 9 of them), or None."""
    if not _VERSION.fullmatch(text):
        return None
    return int(text) or None


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"model name {name!r} must start with a letter or digit and hold only letters, digits, '_', '.', '-'")
    return name


def versions(repo: Path, name: str) -> list[int]:
    folder = Path(repo) / name
    if not folder.is_dir():
        return []
    return sorted(v for p in folder.iterdir() if p.is_dir() and (v := parse_version(p.name)) is not None)


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

    If ``write`` fails, the staging folder is removed and nothing is published. If another writer
    takes the number meanwhile, the version is staged again under the next one.
    """
    folder = Path(repo) / check_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    attempts = 0
    while True:
        attempts += 1
        version = (versions(repo, name) or [0])[-1] + 1
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=folder))
        try:
            write(staging, version)
            final = folder / str(version)
            staging.rename(final)  # fails when the number was taken meanwhile: never an overwrite
            return final
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempts == PUBLISH_ATTEMPTS:
                raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
