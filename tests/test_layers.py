"""The layers of DESIGN.md hold: import-linter's contracts pass on the tree and fail when one is broken."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run the contracts of ``root``'s pyproject.toml over ``root/src`` (not the installed package)."""
    env = {"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"], capture_output=True,
                          text=True, timeout=300, cwd=root, env=env)  # fmt: skip


def test_the_contracts_hold_on_the_tree():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("server/core/batcher.py", "import prometheus_client", "the server core is transport-neutral"),
        ("server/core/plane.py", "from candor.v1 import inference_pb2", "the server core is transport-neutral"),
        ("server/rpc/calls.py", "import torch", "the server never imports torch"),
        ("client/_results.py", "import onnxruntime", "the SDK and client CLI run on the base install"),
        ("calibration/ece.py", "from candor.server.core import errors", "calibration is shared math"),
        ("trainer/posthoc.py", "from candor.cli import UsageError", "nothing imports the CLI hub"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    shutil.copytree(REPO_ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "src/candor" / module
    text = path.read_text()
    path.write_text(text.replace("from __future__ import annotations\n", f"from __future__ import annotations\n\n{line}\n", 1))
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert re.search(re.escape(contract) + r".*\bBROKEN", result.stdout.replace("\n", " ")), result.stdout


def test_no_server_core_module_names_grpc_prometheus_or_generated_code():
    pattern = re.compile(r"^\s*(from|import)\s+(grpc|grpc_health|prometheus_client|candor\.v1|candor\.kserve|google)\b", re.M)
    core = sorted((REPO_ROOT / "src/candor/server/core").glob("*.py"))
    assert len(core) >= 10
    assert [p.name for p in core if pattern.search(p.read_text())] == []
