"""One namespace, the dependency direction, and one console script."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

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


def test_extras_and_torch_pin():
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert set(meta["optional-dependencies"]) >= {"train", "server", "gpu", "dev"}
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
    assert "pip install 'candor[train]'" in result.stderr and "Traceback" not in result.stderr


def test_building_the_cli_does_not_import_torch():
    # Not a layer rule (the hub may import the trainer's CLI), a start-up cost: `candor serve` and the
    # client verbs must not load torch just to parse their flags, even where torch is installed.
    code = "import sys, candor.cli; candor.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
