#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer, on the stable toolchain without a sanitizer)
# of the two places untrusted bytes enter dcd: image decoding and request decoding
# (tests/fuzz/fuzz_targets). Each target runs for a bounded time from its committed seed corpus
# (tests/fuzz/corpus/<target>); what it learns goes to tests/fuzz/target/corpus (not committed).
# A crash leaves its input under tests/fuzz/artifacts/<target>/ and fails the script.
# Usage: scripts/fuzz.sh [SECONDS per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}

if ! cargo fuzz --version 2>/dev/null | grep -q "0.13.2"; then
  echo "== installing cargo-fuzz 0.13.2"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
echo "== building the fuzz targets"
cargo fuzz build --fuzz-dir tests/fuzz --sanitizer none -O
for target in decode_image decode_request; do
  work=tests/fuzz/target/corpus/$target
  log=tests/fuzz/target/$target.log
  mkdir -p "$work"
  echo "== fuzzing $target for ${seconds}s"
  status=0
  cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none -O "$target" \
    "$work" "tests/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
  if [ "$status" != 0 ]; then
    tail -40 "$log"
    echo "fuzzing $target failed (exit $status); its input is under tests/fuzz/artifacts/$target/"
    exit 1
  fi
done
