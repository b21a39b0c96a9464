#!/usr/bin/env bash
# Translate every image below a folder tree, keeping its sub-folder structure under the output folder.
# Usage: translate_tree.sh INPUT_DIR CHECKPOINT OUTPUT_DIR [DIRECTION]
#   CHECKPOINT: a run folder (its latest checkpoint), a checkpoint folder, a .safetensors or a reference .pth
#   DIRECTION:  AtoB (default) or BtoA
# Exit status: 0 if every image was written, 1 if some failed (they are listed on stderr), other codes as i2i.
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 INPUT_DIR CHECKPOINT OUTPUT_DIR [AtoB|BtoA]" >&2
  exit 2
fi
in_dir=$1; checkpoint=$2; out_dir=$3; direction=${4:-AtoB}
i2i cyclegan translate "$in_dir" --checkpoint "$checkpoint" --direction "$direction" --out "$out_dir" \
  ${I2I_FLAGS:-}
echo "outputs in $out_dir:" >&2
find "$out_dir" -type f -name '*.png' | wc -l >&2
