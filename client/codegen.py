"""Generate the Python protobuf and gRPC modules from ``protos/``.

    python -m candor.client.codegen          # rewrite client/generated/
    python -m candor.client.codegen --check  # exit 1 if the committed code is stale

The output lands in ``client/generated/candor/...`` and installs as
``candor.v1`` and ``candor.kserve.v2`` (see pyproject's package-dir), so the
imports protoc writes (``from candor.v1 import ...``) resolve.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUTPUT = ROOT / "client" / "generated"
PACKAGES = ("candor/v1", "candor/kserve", "candor/kserve/v2")


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
            '"""Generated from protos/ by `python -m candor.client.codegen`; do not edit."""\n'
        )
    return sorted(p for p in out.rglob("*") if p.is_file())


def declared_rpcs(protos: Path = PROTOS) -> list[tuple[str, str, bool]]:
    """(``package.Service``, method, streams requests) for every RPC declared under ``protos``."""
    found = []
    for path in sorted(protos.rglob("*.proto")):
        text = path.read_text(encoding="utf-8")
        package = re.search(r"^package ([\w.]+);", text, re.M).group(1)
        for service, body in re.findall(r"service (\w+) \{(.*?)\n\}", text, re.S):
            found += [(f"{package}.{service}", m, bool(s)) for m, s in re.findall(r"rpc (\w+)\((stream )?\w+\)", body)]
    return found


def stale_files(committed: Path = OUTPUT, protos: Path = PROTOS) -> list[str]:
    """Files that differ between ``committed`` and a fresh generation (empty when current)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, protos)
        names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
        names |= {p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        return sorted(
            str(n)
            for n in names
            if not (committed / n).is_file()
            or not (fresh / n).is_file()
            or not filecmp.cmp(committed / n, fresh / n, shallow=False)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m candor.client.codegen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether client/generated is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale else 0
    shutil.rmtree(OUTPUT, ignore_errors=True)
    for path in generate(OUTPUT):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
