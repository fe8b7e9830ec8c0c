#!/bin/sh
# The compose stack's one-shot trainer: train the demo model unless the model
# repository already holds a version of it, then write its held-out rows for the
# traffic simulator. Running it again changes nothing.
set -eu
name=${CANDOR_DEMO_MODEL:-digits}
repo=${CANDOR_MODEL_REPOSITORY:-/models}
rows=${CANDOR_DEMO_ROWS:-/demo-data/$name-test.npz}
if ls "$repo/$name"/*/candor.json >/dev/null 2>&1; then
  echo "train-once: $repo/$name already has a version; not training"
else
  candor train --dataset digits --epsilon 0.1 --model-repository "$repo" --model "$name"  # progress: a line every 5 s in the container log
fi
if [ -f "$rows" ]; then
  echo "train-once: $rows already written"
else
  candor split --model-repository "$repo" --model "$name" --output "$rows"
fi
