"""The API definitions: generated code is current, and buf's STANDARD lint passes."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from candor.client.codegen import PROTOS, stale_files
from tests.conftest import REPO_ROOT

BUF = Path(os.environ.get("CANDOR_BUF", REPO_ROOT / ".tools/node_modules/.bin/buf"))


def test_generated_code_matches_protos():
    assert stale_files() == [], "run: python -m candor.client.codegen"


def test_staleness_is_detected(tmp_path):
    protos = tmp_path / "protos"
    shutil.copytree(PROTOS, protos)
    path = protos / "candor/v1/inference.proto"
    path.write_text(path.read_text().replace("bool return_logits = 5;", "bool return_logits = 5;\n  bool explain = 11;"))
    assert "candor/v1/inference_pb2.py" in stale_files(protos=protos)


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
    from candor.client.codegen import declared_rpcs

    rpcs = declared_rpcs()
    assert len(rpcs) == 13
    assert ("candor.v1.InferenceService", "PredictStream", True) in rpcs
    assert ("inference.GRPCInferenceService", "ModelInfer", False) in rpcs
