#!/usr/bin/env bash
# Translate the same inputs with several checkpoints, one output folder per checkpoint — e.g. to compare
# the epoch snapshots of a run side by side.
# Usage: sweep_checkpoints.sh INPUTS OUTPUT_DIR CHECKPOINT...
#   Example: sweep_checkpoints.sh photos/ sweep/ runs/h2z/checkpoints/epoch_*
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 INPUTS OUTPUT_DIR CHECKPOINT..." >&2
  exit 2
fi
inputs=$1; out_root=$2; shift 2
failed=0
for checkpoint in "$@"; do
  name=$(basename "$checkpoint")
  name=${name%.safetensors}
  if ! i2i cyclegan translate "$inputs" --checkpoint "$checkpoint" --out "$out_root/$name" --quiet \
      ${I2I_FLAGS:-}; then
    echo "checkpoint $checkpoint: some images failed" >&2
    failed=1
  fi
done
exit "$failed"
