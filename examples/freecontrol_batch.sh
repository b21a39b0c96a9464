#!/usr/bin/env bash
# Run FreeControl over a JSONL job file and keep the JSON results.
# Usage: freecontrol_batch.sh JOBS.jsonl OUTPUT_DIR [MODEL]
#   JOBS.jsonl  one job per line, e.g.
#               {"prompt": "a photo of a lion", "condition": "sketch.png", "inversion_prompt": "a sketch of a dog",
#                "subject": "dog;lion", "seed": 7}
#               (relative condition paths are read from the job file's folder)
#   MODEL       a diffusers SD 1.x/2.x/SDXL folder or hub id; default: $I2I_FREECONTROL_MODEL, else the bundled
#               demo model.
# Environment: FREECONTROL_FLAGS  extra flags, e.g. "--steps 50 --inversion-steps 200"
#              NPROC              processes for `accelerate launch` (one per GPU); the jobs are sharded by rank
# Writes OUTPUT_DIR/NAME.png and NAME_unguided.png per job and OUTPUT_DIR/results.jsonl (one line per image,
# "status": "ok"; one per failed job, "status": "error"; then the run's summary line).
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: $0 JOBS.jsonl OUTPUT_DIR [MODEL]" >&2
  exit 2
fi
jobs=$1; out_dir=$2; model=${3:-${I2I_FREECONTROL_MODEL:-}}
mkdir -p "$out_dir"
args=(freecontrol --jobs "$jobs" --out "$out_dir" --save-unguided --json --quiet)
if [ -n "$model" ]; then
  args+=(--model "$model")
fi
# shellcheck disable=SC2086
if [ "${NPROC:-1}" -gt 1 ]; then
  accelerate launch --num_processes "$NPROC" -m i2i "${args[@]}" ${FREECONTROL_FLAGS:-} > "$out_dir/results.jsonl"
else
  i2i "${args[@]}" ${FREECONTROL_FLAGS:-} > "$out_dir/results.jsonl"
fi
echo "images: $(grep -c '"status": "ok"' "$out_dir/results.jsonl") written in $out_dir"
