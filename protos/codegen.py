"""Generate the Python protobuf and gRPC modules from ``protos/`` (a dev tool; needs grpcio-tools).

    python protos/codegen.py          # rewrite src/candor/v1 and src/candor/kserve from protos/
    python protos/codegen.py --check  # exit 1 if the committed code is stale

It finds the checkout from its own path, so it works from any clone and any
working directory, installed or not. The proto packages ``candor.v1`` and
``inference`` (in ``candor/kserve/v2/``) land at ``src/candor/v1`` and
``src/candor/kserve/v2``: the paths protoc's own imports (``from candor.v1
import ...``) spell, shared by the server and the SDK.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUTPUT = ROOT / "src"  # protoc writes candor/v1/... under it
PACKAGES = ("candor/v1", "candor/kserve", "candor/kserve/v2")
OWNED = ("candor/v1", "candor/kserve")  # the folders under OUTPUT this tool writes, and nothing else


def generate(out: Path, protos: Path = PROTOS) -> list[Path]:
    """Run protoc over every .proto under ``protos`` into ``out``; return the files written."""
    from importlib.resources import files

    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    well_known = str(files("grpc_tools") / "_proto")
    out.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{protos}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", f"--pyi_out={out}"]
    if protoc.main(args + sources) != 0:
        raise RuntimeError("protoc failed; see the messages above")
    for package in PACKAGES:
        (out / package / "__init__.py").write_text(
            '"""Generated from protos/ by `python protos/codegen.py`; do not edit."""\n'
        )
    return sorted(out / p for p in _generated(out))


def _generated(root: Path) -> set[Path]:
    """Files under the generated folders of ``root`` (``candor/v1``, ``candor/kserve``), relative to it."""
    return {p.relative_to(root) for top in OWNED for p in (root / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def stale_files(committed: Path = OUTPUT, protos: Path = PROTOS) -> list[str]:
    """Generated files that differ between ``committed`` and a fresh generation (empty when current)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, protos)
        names = _generated(fresh) | _generated(committed)
        return sorted(
            str(n)
            for n in names
            if not (committed / n).is_file()
            or not (fresh / n).is_file()
            or not filecmp.cmp(committed / n, fresh / n, shallow=False)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python protos/codegen.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the committed generated code is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale else 0
    for top in OWNED:
        shutil.rmtree(OUTPUT / top, ignore_errors=True)
    for path in generate(OUTPUT):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
