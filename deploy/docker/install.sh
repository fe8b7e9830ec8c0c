#!/bin/sh
# Install Candor from a source tree into a virtual environment, pinned by
# constraints.txt. The Dockerfile runs exactly this; the test suite runs it too
# (tests/deploy/test_dockerfile.py), since no Docker engine is at hand there.
#
#   install.sh server|gpu|train PREFIX [SOURCE [PIP OPTIONS...]]
#     server  onnxruntime (CPU), no torch
#     gpu     onnxruntime-gpu instead (CUDA 13, cuDNN 9 come from the base image), no torch
#     train   torch (CPU build, from $TORCH_INDEX_URL) and the server extras, for the trainer image
#
# CANDOR_INSTALL_PHASE splits the work so that Docker caches the slow part:
#   deps     the pinned dependencies only; needs just SOURCE/pyproject.toml and constraints.txt
#   package  Candor itself (no dependencies), into the PREFIX that `deps` made
#   all      both (the default)
set -eu
variant=${1:?usage: install.sh server|gpu|train PREFIX [SOURCE]}
prefix=${2:?usage: install.sh server|gpu|train PREFIX [SOURCE]}
src=${3:-.}
phase=${CANDOR_INSTALL_PHASE:-all}
shift $(($# < 3 ? $# : 3))  # what is left goes to pip install (the tests pass --dry-run --report)
index=""
case "$variant" in
  server) extras=server,cpu ;;
  gpu) extras=server,gpu ;;
  train)
    extras=train,server,cpu
    # PyPI's Linux torch wheel pulls several GB of CUDA libraries; the CPU build is enough to train here.
    torch_index=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
    if [ -n "$torch_index" ]; then index="--extra-index-url $torch_index"; fi
    ;;
  *) echo "install.sh: unknown variant '$variant' (expected server, gpu or train)" >&2; exit 2 ;;
esac
case "$phase" in
  deps|package|all) ;;
  *) echo "install.sh: unknown CANDOR_INSTALL_PHASE '$phase' (expected deps, package or all)" >&2; exit 2 ;;
esac
if [ "$phase" != package ]; then
  python3 -m venv "$prefix"
  "$prefix/bin/pip" install --quiet --upgrade pip
fi
if [ "$phase" = deps ]; then
  # The requirements of the base install and of the extras, read from pyproject.toml alone.
  requirements="$prefix/candor-requirements.txt"
  "$prefix/bin/python" - "$src/pyproject.toml" "$extras" > "$requirements" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for requirement in project["dependencies"] + [r for e in sys.argv[2].split(",") for r in project["optional-dependencies"][e]]:
    print(requirement)
PY
  # shellcheck disable=SC2086 # $index is empty or two words on purpose
  "$prefix/bin/pip" install --quiet $index "$@" -c "$src/constraints.txt" -r "$requirements"
  rm -f "$requirements"
elif [ "$phase" = package ]; then
  "$prefix/bin/pip" install --quiet --no-deps "$@" "$src"
else
  # shellcheck disable=SC2086
  "$prefix/bin/pip" install --quiet $index "$@" -c "$src/constraints.txt" "$src[$extras]"
fi
