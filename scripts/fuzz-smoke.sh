#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a few seconds (default 10) from its seed corpus.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
# The smoke run uses no sanitizer: every crate forbids unsafe code, so AddressSanitizer has little
# to find, and it doubles the build time. Set FUZZ_SANITIZER=address for a long campaign.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-10}"
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-none}"
cargo fuzz build --release -s "$sanitizer"
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  echo "--- fuzz $target for ${secs}s"
  dict=()
  [ -f "dict/$target.dict" ] && dict=("-dict=dict/$target.dict")
  log="$(mktemp)"
  if ! cargo fuzz run --release -s "$sanitizer" "$target" "corpus/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=0 "${dict[@]}" >"$log" 2>&1; then
    # Show the finding itself (panic message, input, artifact path), not just the backtrace's end.
    grep -E -A3 "panicked|ERROR|SUMMARY|Test unit written|Base64" "$log" | head -n 40
    rm -f "$log"
    exit 1
  fi
  tail -n 1 "$log"
  rm -f "$log"
done
