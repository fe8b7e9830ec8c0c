"""The Dockerfile, checked as far as possible without a Docker engine: its structure,
and its install steps run for real (the same script, on the same copied sources)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from candor.cli import build_parser
from candor.server.launch import SERVE_READY, ServerProcess
from tests.conftest import REPO_ROOT
from tests.deploy.images import PINNED, exec_form, external_bases, last, stages

pytestmark = pytest.mark.slow  # real servers, installs or Prometheus in child processes

INSTALL = "deploy/docker/install.sh"


def copies(stage: dict) -> list[str]:
    """Sources of a stage's COPY lines that copy from the build context."""
    return [p for i, v in stage["instructions"] if i == "COPY" and not v.startswith("--from") for p in v.split()[:-1]]


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_base_images_are_pinned_releases(variant):
    bases = external_bases({"VARIANT": variant})
    assert bases and all(PINNED.match(b) for b in bases), bases
    if variant == "gpu":
        assert any(b.startswith("nvidia/cuda:") and "cudnn" in b and "runtime" in b for b in bases), bases


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_server_stage_runs_candor_serve_unprivileged_with_a_grpc_healthcheck(variant):
    found = stages({"VARIANT": variant})
    assert list(found)[-1] == "server", "the server must be the last stage: a plain `docker build .` builds it"
    server = found["server"]
    assert server["base"] == f"base-{variant}"
    assert exec_form(last(server, "ENTRYPOINT")) == ["candor", "serve"]
    command = exec_form(last(server, "CMD"))
    assert build_parser().parse_args(["serve", *command]).workers == 0  # --workers auto by default
    user = last(server, "USER")
    assert user and user not in ("0", "root") and user.isdigit()  # numeric, so runAsNonRoot can verify it
    health = last(server, "HEALTHCHECK")
    cmd = exec_form(health.split("CMD", 1)[1].strip())
    assert cmd[:2] == ["candor", "health"]
    args = build_parser().parse_args(cmd[1:])  # the flags exist in this version of the CLI
    assert args.target == "127.0.0.1:8001"
    assert "8001" in last(server, "EXPOSE") and "8002" in last(server, "EXPOSE")


def test_trainer_stage_runs_the_one_shot_script():
    trainer = stages()["trainer"]
    assert exec_form(last(trainer, "ENTRYPOINT")) == ["candor-train-once"]
    copied = [v for i, v in trainer["instructions"] if i == "COPY"]
    assert "deploy/docker/train-once.sh /usr/local/bin/candor-train-once" in copied
    assert last(trainer, "USER") == "10001"


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_builds_compile_with_a_compiler_that_no_image_ships(variant):
    """The package install compiles the prediction sets' kernel: every stage that installs Candor descends from one
    that installs gcc (and, on the GPU base's packaged Python, its headers); the images copy only /opt/candor."""
    found = stages({"VARIANT": variant})

    def lineage(name: str) -> list[str]:
        return [name, *lineage(found[name]["base"])] if name in found else []

    def installs_compiler(name: str) -> bool:
        return any(i == "RUN" and re.search(r"apt-get install .*\bgcc\b", v) for i, v in found[name]["instructions"])

    for build in ("server-build", "trainer-build"):
        compilers = [s for s in lineage(build) if installs_compiler(s)]
        assert compilers, f"{build} has no C compiler: the kernel would silently not build"
        if build == "server-build" and variant == "gpu":  # the CUDA image's python3 comes without its headers
            assert any("python3-dev" in v for s in compilers for i, v in found[s]["instructions"] if i == "RUN")
    for image in ("server", "trainer"):
        assert not any(installs_compiler(s) for s in lineage(image)), f"the {image} image would ship gcc"


def test_copied_sources_exist_and_are_not_docker_ignored():
    kept = {line[1:].rstrip("/") for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    for name, stage in stages().items():
        for src in copies(stage):
            assert (REPO_ROOT / src).exists(), f"stage {name} copies {src}, which is not in the repository"
            assert {src, src.split("/")[0], str(Path(src).parent)} & kept, f"{src} is excluded by .dockerignore"


def test_every_build_step_uses_the_install_script():
    runs = [v for s in stages().values() for i, v in s["instructions"] if i == "RUN" and ("pip" in v or "install.sh" in v)]
    assert len(runs) == 4 and all("install.sh" in r for r in runs), runs


@pytest.mark.parametrize("build", ["trainer-build", "server-build"])
def test_dependencies_are_a_layer_of_their_own_before_the_source(build):
    """A source edit must not reinstall torch: the deps RUN sees only pyproject.toml, constraints.txt and the script."""
    steps = [(i, v) for i, v in stages()[build]["instructions"] if i in ("COPY", "RUN")]
    (first_copy, deps, source, package) = steps
    assert first_copy[0] == "COPY" and sorted(first_copy[1].split()[:-1]) == ["constraints.txt", "deploy/docker/install.sh",
                                                                              "pyproject.toml"]  # fmt: skip
    assert deps[0] == "RUN" and "CANDOR_INSTALL_PHASE=deps" in deps[1]
    assert source == ("COPY", "--from=source /src /src")
    assert package[0] == "RUN" and "CANDOR_INSTALL_PHASE=package" in package[1]


@pytest.fixture(scope="module")
def build_context(tmp_path_factory) -> Path:
    """Exactly what the Dockerfile's `source` stage copies, nothing more."""
    src = tmp_path_factory.mktemp("context") / "src"
    src.mkdir()
    for path in copies(stages()["source"]):
        origin, target = REPO_ROOT / path, src / path
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin, target)
    return src


def install(variant: str, prefix: Path, src: Path, *pip_options: str, phase: str = "all",
            script: str = INSTALL) -> subprocess.CompletedProcess:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"CANDOR_INSTALL_PHASE": phase}
    return subprocess.run(["sh", str(src / script), variant, str(prefix), str(src), *pip_options], capture_output=True,
                          text=True, timeout=900, env=env)  # fmt: skip


def test_server_install_serves_and_passes_its_healthcheck(build_context, digits_repo, tmp_path):
    """The server image's environment, built as its Dockerfile does: the dependencies from pyproject.toml and
    constraints.txt alone, then Candor from its copied files; no torch, serves, is healthy."""
    prefix = tmp_path / "opt-candor"
    deps_only = tmp_path / "deps"
    deps_only.mkdir()
    for name in ("pyproject.toml", "constraints.txt", INSTALL):  # the Dockerfile's COPY ... /deps/
        shutil.copy(build_context / name, deps_only / Path(name).name)
    result = install("server", prefix, deps_only, phase="deps", script="install.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    packages = subprocess.run([prefix / "bin/pip", "list", "--format=json"], capture_output=True, text=True).stdout
    assert "onnxruntime" in packages and '"candor"' not in packages  # dependencies in, Candor not yet
    result = install("server", prefix, build_context, phase="package")
    assert result.returncode == 0, result.stdout + result.stderr
    python = prefix / "bin/python"
    check = "import importlib.util as u; print([m for m in ('torch', 'onnxruntime', 'sklearn') if u.find_spec(m)])"
    assert subprocess.run([python, "-c", check], capture_output=True, text=True).stdout.strip() == "['onnxruntime']"
    if shutil.which("cc"):  # as in the build stages: the prediction sets' kernel compiled with the package
        kernel = subprocess.run([python, "-c", "import candor.server.core._ranked_sets"], capture_output=True, text=True)
        assert kernel.returncode == 0, kernel.stderr
    candor = str(prefix / "bin/candor")
    repo = tmp_path / "models"
    shutil.copytree(digits_repo, repo)
    entrypoint = exec_form(last(stages()["server"], "ENTRYPOINT"))
    server = ServerProcess([candor, *entrypoint[1:], "--model-repository", str(repo), "--grpc-host", "127.0.0.1", "--grpc-port",
                            "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0", "--data-dir", str(tmp_path / "data")],
                           ready=SERVE_READY)  # fmt: skip
    try:
        health = exec_form(last(stages()["server"], "HEALTHCHECK").split("CMD", 1)[1].strip())
        health = [candor, *health[1:]]
        health[health.index("--target") + 1] = server.target
        answer = subprocess.run(health, capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0 and "SERVING" in answer.stdout, answer.stdout + answer.stderr
    finally:
        assert server.stop() == 0


def test_gpu_install_resolves_onnxruntime_gpu_for_the_base_images_cuda(build_context, tmp_path):
    """Resolved, not installed (the wheel is 255 MB): onnxruntime-gpu at the pinned version, no CPU onnxruntime, no torch,
    and the CUDA and cuDNN majors its metadata asks for are those of the GPU base image."""
    report = tmp_path / "report.json"
    result = install("gpu", tmp_path / "venv", build_context, "--dry-run", "--report", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    resolved = {i["metadata"]["name"].lower(): i["metadata"] for i in json.loads(report.read_text())["install"]}
    pinned = re.search(r"^onnxruntime-gpu==(\S+)$", (REPO_ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert resolved["onnxruntime-gpu"]["version"] == pinned
    assert "onnxruntime" not in resolved and "torch" not in resolved
    needs = " ".join(resolved["onnxruntime-gpu"].get("requires_dist", []))
    cuda_major = re.search(r"nvidia-cuda-runtime~=(\d+)", needs).group(1)
    cudnn_major = re.search(r"nvidia-cudnn-cu\d+~=(\d+)", needs).group(1)
    gpu_base = next(b for b in external_bases({"VARIANT": "gpu"}) if b.startswith("nvidia/cuda:"))
    assert gpu_base.split(":")[1].split(".")[0] == cuda_major
    assert "-cudnn-" in gpu_base and cudnn_major == "9"  # nvidia/cuda's CUDA 13 "-cudnn-" images carry cuDNN 9


def test_install_refuses_an_unknown_variant_or_phase(build_context, tmp_path):
    result = install("tpu", tmp_path / "venv", build_context)
    assert result.returncode == 2 and "unknown variant 'tpu'" in result.stderr
    result = install("server", tmp_path / "venv", build_context, phase="most")
    assert result.returncode == 2 and "unknown CANDOR_INSTALL_PHASE 'most'" in result.stderr


def train_once(tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "CANDOR_MODEL_REPOSITORY": str(tmp_path / "models"),
           "CANDOR_DEMO_ROWS": str(tmp_path / "demo-data/digits-test.npz")}  # fmt: skip
    return subprocess.run(["sh", str(REPO_ROOT / "deploy/docker/train-once.sh")], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


def test_train_once_trains_into_an_empty_repository_and_then_does_nothing(tmp_path):
    first = train_once(tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "models/digits/1/model.onnx").is_file()
    assert (tmp_path / "demo-data/digits-test.npz").is_file()
    again = train_once(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already has a version; not training" in again.stdout and "already written" in again.stdout
    assert sorted(p.name for p in (tmp_path / "models/digits").iterdir()) == ["1"]


def test_train_once_keeps_an_existing_model(digits_repo, tmp_path):
    shutil.copytree(digits_repo, tmp_path / "models")
    result = train_once(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "already has a version; not training" in result.stdout and "Wrote" in result.stdout
