#!/usr/bin/env bash
# Use --json output with standard tools: translate inputs, keep the JSON lines, then summarise them.
# Usage: json_report.sh INPUTS CHECKPOINT OUTPUT_DIR
# Writes OUTPUT_DIR/results.jsonl (one object per input: status ok or error; then the run's summary object,
# "kind": "summary") and prints a summary:
# how many were written, how many failed (and why), and how many outputs there are of each size.
set -uo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 INPUTS CHECKPOINT OUTPUT_DIR" >&2
  exit 2
fi
inputs=$1; checkpoint=$2; out_dir=$3
mkdir -p "$out_dir"
# shellcheck disable=SC2086
i2i cyclegan translate "$inputs" --checkpoint "$checkpoint" --out "$out_dir" --json --quiet \
  ${I2I_FLAGS:-} > "$out_dir/results.jsonl"
status=$?
echo "written: $(grep -c '"status": "ok"' "$out_dir/results.jsonl")"
echo "failed:  $(grep -c '"status": "error"' "$out_dir/results.jsonl")"
# One tab-separated row per record via Python's json module (present wherever i2i is), then coreutils.
python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if r.get("kind") == "summary":      # the closing line: counts of the whole run
        continue
    if r["status"] == "ok":
        print("ok", "%dx%d" % (r["width"], r["height"]), r["output"], sep="\t")
    else:
        print("error", r["input"], r["error"], sep="\t")
' < "$out_dir/results.jsonl" > "$out_dir/results.tsv"
grep '^error' "$out_dir/results.tsv" | cut -f2- | sed 's/^/  failed: /'
echo "output sizes:"
grep '^ok' "$out_dir/results.tsv" | cut -f2 | sort | uniq -c | sort -rn
exit "$status"
