"""One namespace, the dependency direction, and one console script."""

import itertools
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_candor

GENERIC = {"server", "client", "trainer", "calibration", "inference", "protos", "deploy", "tests"}


def test_wheel_puts_everything_under_candor(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = Path(tmp_path).glob("candor-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"candor", next(t for t in tops if t.endswith(".dist-info"))}
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("candor/calibration/ece.py", "candor/trainer/pipeline.py", "candor/cli.py", "candor/v1/inference_pb2.py",
                   "candor/kserve/v2/grpc_predict_v2_pb2.py"):  # fmt: skip
        assert module in names
    assert "candor/py.typed" in names  # type checkers read the inline hints (PEP 561)
    assert not tops & GENERIC
    if shutil.which("cc"):  # the prediction sets' kernel, compiled into the wheel (setup.py)
        assert [n for n in names if n.startswith("candor/server/core/_ranked_sets.") and n.endswith(".so")], names


@pytest.mark.slow
def test_without_a_c_compiler_the_package_still_builds_and_serves_sets_through_numpy(tmp_path):
    """The kernel is optional: a machine with no compiler gets a wheel without it, and the numpy path."""
    source = tmp_path / "source"  # the package's files alone: no kernel built in place, no build/ of another run
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "constraints.txt"):
        shutil.copy(REPO_ROOT / name, source)
    shutil.copytree(REPO_ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"))
    env = {**os.environ, "CC": "false"}  # a compiler that fails every file
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(source)],
                            capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = Path(tmp_path).glob("candor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "candor/server/core/ranked_sets.py" in names and not [n for n in names if n.endswith(".so")]
    # Imported without the kernel, the wrapper says so and makes no rule for it (PredictionSets.apply takes numpy).
    code = ("import sys; sys.modules['candor.server.core._ranked_sets'] = None\n"
            "import numpy as np\n"
            "from candor.server.core.ranked_sets import BUILT, RankedRule\n"
            "print(BUILT, RankedRule.of(np.eye(3) * -1, np.ones(3), np.zeros(3), None))")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False", "None"]


def test_every_module_lives_at_the_path_its_import_spells():
    import candor

    src = REPO_ROOT / "src"
    assert Path(candor.__file__).resolve() == src / "candor" / "__init__.py"
    for path in src.rglob("*.py"):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        assert module.startswith("candor"), path
    # Nothing at the top of the checkout is importable as candor: a plain checkout cannot shadow the install.
    assert not (REPO_ROOT / "candor").exists()
    code = "import candor; print(candor.__file__)"
    bare = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert bare.returncode == 0 and bare.stdout.strip() == str(src / "candor" / "__init__.py")


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_no_combination_of_extras_installs_both_onnx_runtimes():
    """onnxruntime and onnxruntime-gpu install the same module: only [cpu] and [gpu] name one each."""
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = meta["optional-dependencies"]
    naming = {name for name, reqs in extras.items() if requirement_names(reqs) & {"onnxruntime", "onnxruntime-gpu"}}
    assert naming == {"cpu", "gpu"}
    for combination in itertools.combinations(sorted(set(extras) - {"cpu", "gpu"}) + ["gpu"], 3):
        names = requirement_names(meta["dependencies"] + [r for e in combination for r in extras[e]])
        assert not {"onnxruntime", "onnxruntime-gpu"} <= names, combination
    # The base install is the SDK: no scipy (the SDK never imports it), protobuf 7 allowed.
    assert "scipy" not in requirement_names(meta["dependencies"])
    (protobuf,) = [r for r in meta["dependencies"] if r.startswith("protobuf")]
    assert "<8" in protobuf


def test_the_sdk_and_client_verbs_run_without_scipy_torch_or_onnxruntime(tmp_path):
    """The base install: block the server and trainer dependencies, then use the SDK and the client CLI."""
    # A None in sys.modules makes `import x` fail and find_spec say "not installed", as on a base install.
    code = (
        "import sys\n"
        "sys.modules.update(dict.fromkeys(('scipy', 'torch', 'onnxruntime', 'prometheus_client', 'sklearn')))\n"
        "import candor.client\n"
        "from candor.cli import main\n"
        "raise SystemExit(main(['predict', '--help']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: candor predict" in result.stdout


def test_sdist_carries_the_protos_and_license_and_no_tests(tmp_path):
    result = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path), str(REPO_ROOT)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    if "No module named build" in result.stderr:
        result = subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; import sys; "
                                 f"print(b.build_sdist({str(tmp_path)!r}))"], capture_output=True, text=True,
                                cwd=REPO_ROOT, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "License classifiers are deprecated" not in result.stderr and "project.license` as a TOML table" not in result.stderr
    (sdist,) = tmp_path.glob("candor-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
        info = archive.extractfile(next(m for m in archive.getmembers() if m.name.endswith("/PKG-INFO"))).read().decode()
    assert {"LICENSE", "protos/codegen.py", "protos/candor/v1/inference.proto",
            "protos/candor/kserve/v2/grpc_predict_v2.proto", "constraints.txt", "setup.py",
            "src/candor/server/core/_ranked_sets.c"} <= names  # fmt: skip
    assert not [n for n in names if n.endswith(".so")]  # the source, never a build left in the checkout
    assert not [n for n in names if n.startswith("tests/") or "/test_" in n]
    assert "License-Expression: Apache-2.0" in info and "License-File: LICENSE" in info
    assert "Classifier: Typing :: Typed" in info and "Classifier: Programming Language :: Python :: 3.11" in info


def test_extras_and_torch_pin():
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert set(meta["optional-dependencies"]) >= {"train", "server", "cpu", "gpu", "dev"}
    assert "torch==2.13.0" in meta["optional-dependencies"]["train"]
    assert meta["scripts"] == {"candor": "candor.cli:main"}
    assert "torch==2.13.0" in (REPO_ROOT / "constraints.txt").read_text().split()


def test_every_flag_of_every_verb_has_a_help_line():
    import argparse

    from candor.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"train", "calibrate", "evaluate", "export", "sweep"} <= set(sub.choices)
    for verb, verb_parser in sub.choices.items():
        for action in verb_parser._actions:
            assert action.help and action.help.strip(), f"{verb} {action.option_strings} has no help"
    assert "--epsilon" in run_candor("train", "--help").stdout


def test_trainer_verbs_without_the_train_extra_say_what_to_install():
    # Simulate an install without torch: the import machinery refuses it.
    code = (
        "import importlib.util, sys; real = importlib.util.find_spec;"
        "importlib.util.find_spec = lambda n, *a: None if n == 'torch' else real(n, *a);"
        "from candor.cli import main; raise SystemExit(main(['train']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install 'candor[train,cpu]'" in result.stderr and "Traceback" not in result.stderr


def test_building_the_cli_does_not_import_torch():
    # Not a layer rule (the hub may import the trainer's CLI), a start-up cost: `candor serve` and the
    # client verbs must not load torch just to parse their flags, even where torch is installed.
    code = "import sys, candor.cli; candor.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
