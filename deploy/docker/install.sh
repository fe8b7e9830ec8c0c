#!/bin/sh
# Install Candor from a source tree into a fresh virtual environment, pinned by
# constraints.txt. The Dockerfile runs exactly this; the test suite runs it too
# (tests/deploy/test_dockerfile.py), since no Docker engine is at hand there.
#
#   install.sh server|gpu|train PREFIX [SOURCE [PIP OPTIONS...]]
#     server  onnxruntime (CPU), no torch
#     gpu     onnxruntime-gpu instead (CUDA 13, cuDNN 9 come from the base image), no torch
#     train   torch (CPU build, from $TORCH_INDEX_URL) and the server extras, for the trainer image
set -eu
variant=${1:?usage: install.sh server|gpu|train PREFIX [SOURCE]}
prefix=${2:?usage: install.sh server|gpu|train PREFIX [SOURCE]}
src=${3:-.}
shift $(($# < 3 ? $# : 3))  # what is left goes to the final pip install (the tests pass --dry-run --report)
index=""
case "$variant" in
  server) extras=server ;;
  gpu) extras=gpu ;;
  train)
    extras=train,server
    # PyPI's Linux torch wheel pulls several GB of CUDA libraries; the CPU build is enough to train here.
    torch_index=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
    if [ -n "$torch_index" ]; then index="--extra-index-url $torch_index"; fi
    ;;
  *) echo "install.sh: unknown variant '$variant' (expected server, gpu or train)" >&2; exit 2 ;;
esac
python3 -m venv "$prefix"
"$prefix/bin/pip" install --quiet --upgrade pip
# shellcheck disable=SC2086 # $index is empty or two words on purpose
"$prefix/bin/pip" install --quiet $index "$@" -c "$src/constraints.txt" "$src[$extras]"
