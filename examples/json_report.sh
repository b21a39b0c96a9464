#!/usr/bin/env bash
# Use --json output with standard tools: translate inputs, keep the JSON lines, then summarise them.
# Usage: json_report.sh INPUTS CHECKPOINT OUTPUT_DIR
# Writes OUTPUT_DIR/results.jsonl (one object per written image) and prints a summary.
set -uo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 INPUTS CHECKPOINT OUTPUT_DIR" >&2
  exit 2
fi
inputs=$1; checkpoint=$2; out_dir=$3
mkdir -p "$out_dir"
i2i cyclegan translate "$inputs" --checkpoint "$checkpoint" --out "$out_dir" --json --quiet \
  ${I2I_FLAGS:-} > "$out_dir/results.jsonl"
status=$?
count=$(wc -l < "$out_dir/results.jsonl")
echo "images written: $count (i2i exit status $status)"
# Pull fields out with Python's json module (always there where i2i is), then sort with coreutils.
python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(f"{r[\"width\"]}x{r[\"height\"]}\t{r[\"seconds\"]:.3f}s\t{r[\"output\"]}")
' < "$out_dir/results.jsonl" | sort -k2 -r | head -n 5
exit "$status"
