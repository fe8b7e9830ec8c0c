"""A virtual environment of its own for an oracle whose dependency tree would move the project's pins.

KServe's SDK pulls fastapi, pandas, kubernetes' client and more; installed beside Candor it would move grpcio and
protobuf. So it lives in ``.venv-oracles/<name>`` (git-ignored), built once and reused while its requirements
are the same: the stamp file holds them, and a different list builds the folder again. A file lock lets several
pytest-xdist workers ask at once; one builds, the others wait.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from tests.conftest import REPO_ROOT

ROOT = REPO_ROOT / ".venv-oracles"


def oracle_python(name: str, *requirements: str, timeout: float = 600) -> Path:
    """The Python of ``.venv-oracles/<name>`` with exactly ``requirements`` installed (built when missing or stale)."""
    ROOT.mkdir(exist_ok=True)
    folder, stamp = ROOT / name, ROOT / f"{name}.installed"
    wanted = "\n".join(requirements) + "\n"
    with FileLock(ROOT / f"{name}.lock"):
        python = folder / "bin/python"
        if not stamp.exists() or stamp.read_text() != wanted or not python.exists():  # a folder removed by hand too
            stamp.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
            install = subprocess.run([*pip, *requirements], capture_output=True, text=True, timeout=timeout)
            if install.returncode != 0:
                raise RuntimeError(f"installing {' '.join(requirements)} into {folder} failed:\n{install.stderr[-2000:]}")
            stamp.write_text(wanted)
    return python
