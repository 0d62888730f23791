#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each on nightly, growing
# the committed corpora in fuzz/corpus/<target>/ (minimised afterwards with
# `cargo fuzz cmin` if they grow large). Needs `cargo install cargo-fuzz`
# and a nightly toolchain. Prints the executions each target made.
#   fuzz/run-all.sh 600          # ten minutes each
#   fuzz/run-all.sh 60 api_json  # one target
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  cargo +nightly fuzz run --sanitizer none "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -max_len=4096 >"$log" 2>&1 || {
      tail -n 40 "$log"; echo "fuzz target $t FAILED (see above)"; exit 1; }
  runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  echo "$t: ${runs:-?} executions in ${seconds}s, no crash; corpus $(ls "corpus/$t" | wc -l) inputs"
  rm -f "$log"
done
