"""Carry a wheel larger than one device call may carry (64 MiB): split it into parts, join them there.

    python benchmarks/gpu_wheel.py split .whl/onnxruntime_gpu-*.whl .whl-parts    # here: parts under 60 MiB
    python benchmarks/gpu_wheel.py join .whl-parts /tmp/wheels                    # there: reassembled, sha256 checked

``split`` writes ``NAME.partNN`` files and ``NAME.sha256`` (the whole file's digest and the part count);
``join`` refuses (exit 2, one line) a missing part or a digest that does not match, and writes nothing then.
Each device call carries one part (``carry`` of that part's folder) and copies it to a folder that outlives
the call on that machine, back to back while the machine stays warm; the last one joins and installs with
``pip install --no-deps`` beside the image's own packages.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

PART_MIB = 60


def split(wheel: Path, out: Path, part_mib: int = PART_MIB) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = wheel.read_bytes()
    size = part_mib << 20
    parts = []
    for i, start in enumerate(range(0, len(data), size)):
        part = out / f"{wheel.name}.part{i:02d}"
        part.write_bytes(data[start : start + size])
        parts.append(part)
    (out / f"{wheel.name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()} {len(parts)}\n")
    return parts


def join(parts_dir: Path, out: Path) -> Path:
    (digest_file,) = list(parts_dir.glob("*.sha256")) or [None]
    if digest_file is None:
        raise ValueError(f"{parts_dir}: no NAME.sha256 file; run `split` first")
    digest, count = digest_file.read_text().split()
    name = digest_file.name.removesuffix(".sha256")
    parts = [parts_dir / f"{name}.part{i:02d}" for i in range(int(count))]
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise ValueError(f"{parts_dir}: missing {', '.join(missing)} of {count} parts")
    data = b"".join(p.read_bytes() for p in parts)
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"{name}: the joined parts' sha256 does not match {digest[:12]}...; carry the parts again")
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data)
    return out / name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    s = sub.add_parser("split", help="split a wheel into parts")
    s.add_argument("wheel", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--part-mib", type=int, default=PART_MIB, help=f"largest part in MiB (default: {PART_MIB})")
    j = sub.add_parser("join", help="join the parts and check the sha256")
    j.add_argument("parts", type=Path)
    j.add_argument("out", type=Path)
    a = parser.parse_args()
    try:
        if a.verb == "split":
            for part in split(a.wheel, a.out, a.part_mib):
                print(part)
        else:
            print(join(a.parts, a.out))
    except (OSError, ValueError) as e:
        print(f"gpu_wheel: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
