"""The API definitions: generated code is current, and buf's STANDARD lint passes."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.rpcs import declared_rpcs

BUF = Path(os.environ.get("CANDOR_BUF", REPO_ROOT / ".tools/node_modules/.bin/buf"))
PROTOS = REPO_ROOT / "protos"


def codegen(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    """The dev tool as a developer runs it: by path, from a directory that is not the checkout."""
    return subprocess.run([sys.executable, str(checkout / "protos/codegen.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=checkout.parent)  # fmt: skip


def clone(tmp_path: Path) -> Path:
    """A copy of what codegen reads and writes: protos/ and src/."""
    checkout = tmp_path / "clone"
    shutil.copytree(PROTOS, checkout / "protos")
    shutil.copytree(REPO_ROOT / "src", checkout / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return checkout


def test_generated_code_matches_protos():
    result = codegen(REPO_ROOT, "--check")
    assert result.returncode == 0, "run: python protos/codegen.py\n" + result.stderr


def test_staleness_is_detected_and_regeneration_fixes_it_in_any_clone(tmp_path):
    checkout = clone(tmp_path)
    path = checkout / "protos/candor/v1/inference.proto"
    path.write_text(path.read_text().replace("bool return_logits = 5;", "bool return_logits = 5;\n  bool explain = 11;"))
    stale = codegen(checkout, "--check")
    assert stale.returncode == 1 and "stale: candor/v1/inference_pb2.py" in stale.stderr
    assert codegen(checkout).returncode == 0
    assert codegen(checkout, "--check").returncode == 0
    assert "explain" in (checkout / "src/candor/v1/inference_pb2.pyi").read_text()
    # It writes only its own folders: the hand-written code beside them is untouched.
    assert (checkout / "src/candor/server/app.py").read_bytes() == (REPO_ROOT / "src/candor/server/app.py").read_bytes()


def buf_lint(protos: Path) -> subprocess.CompletedProcess:
    if not BUF.is_file():
        pytest.fail(f"buf is not installed at {BUF}; `make install` puts it there (npm @bufbuild/buf)")
    return subprocess.run([str(BUF), "lint"], cwd=protos, capture_output=True, text=True, timeout=120)


def test_buf_standard_lint_passes():
    result = buf_lint(PROTOS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_catches_a_violation(tmp_path):
    protos = tmp_path / "protos"
    shutil.copytree(PROTOS, protos)
    path = protos / "candor/v1/inference.proto"
    path.write_text(path.read_text().replace("bool return_logits = 5;", "bool returnLogits = 5;"))
    result = buf_lint(protos)
    assert result.returncode != 0 and "returnLogits" in result.stdout


def test_declared_rpcs_lists_both_services():
    rpcs = declared_rpcs()
    assert len(rpcs) == 13
    assert ("candor.v1.InferenceService", "PredictStream", True) in rpcs
    assert ("inference.GRPCInferenceService", "ModelInfer", False) in rpcs
