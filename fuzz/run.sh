#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, then exits non-zero,
# naming the targets, if any of them crashed (a panic, a failed assertion,
# a sanitizer report, a timeout or running out of memory), or could not
# build or start. The input that crashed is kept in fuzz/artifacts/TARGET/.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   (no TARGET: all of them)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); on a stable
# toolchain the nightly-only flags it passes are allowed with
# RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets" >&2; exit 1; }

# One build for every target (cargo fuzz run then finds them built).
cargo fuzz build

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=()
for t in "${targets[@]}"; do
  echo "== $t ($secs s)"
  status=0
  cargo fuzz run "$t" -- -max_total_time="$secs" -max_len=65536 >"$log" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    grep -E "^(#[0-9]+ +DONE|Done [0-9]+ runs)" "$log" || true
  else
    echo "!! $t failed (exit $status):"
    grep -m 5 -E "panicked at|^ERROR: |^SUMMARY: |^error" "$log" || true
    echo "   ... the end of its output:"
    tail -n 25 "$log"
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs} s each, no crash"
