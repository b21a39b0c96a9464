#!/usr/bin/env bash
# Train a CycleGAN on DATAROOT/trainA + trainB, then translate DATAROOT/testA (A->B) and testB (B->A).
# Usage: train_then_translate.sh DATAROOT RUN_DIR OUTPUT_DIR
#   Extra training flags go in $TRAIN_FLAGS, e.g. TRAIN_FLAGS="--n-epochs 5 --n-epochs-decay 5 --crop-size 128"
#   Re-running continues the same run (--resume) instead of starting over.
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 DATAROOT RUN_DIR OUTPUT_DIR" >&2
  exit 2
fi
dataroot=$1; run_dir=$2; out_dir=$3
resume=""
if [ -f "$run_dir/latest" ]; then resume="--resume"; fi
# shellcheck disable=SC2086
i2i cyclegan train "$dataroot" --run-dir "$run_dir" $resume ${TRAIN_FLAGS:-}
status=0
i2i cyclegan translate "$dataroot/testA" --checkpoint "$run_dir" --direction AtoB --out "$out_dir/AtoB" \
  --overwrite ${I2I_FLAGS:-} || status=$?
i2i cyclegan translate "$dataroot/testB" --checkpoint "$run_dir" --direction BtoA --out "$out_dir/BtoA" \
  --overwrite ${I2I_FLAGS:-} || status=$?
exit "$status"
