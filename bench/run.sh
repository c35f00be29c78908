#!/usr/bin/env bash
# One command for Warren's benchmarks: builds the release binary, installs the
# peers (rathole 0.5.0 and oha 1.16.0 from crates.io; iperf3, wrk and nginx
# from Debian), then runs the suites, each in interleaved rounds (A B C A B C):
#   tunnel: direct, rathole (plain TCP and Noise), Warren (TCP+TLS and QUIC)
#   https:  nginx terminating TLS alone, nginx -> rathole, Warren's edge (http resource)
#   apply:  admin API change -> traffic (create, update, CLI update, delete), TCP and QUIC agents
#   crash:  time to traffic after the edge is killed -9 and restarted, per transport (bench/crash.py)
# Each suite writes every sample to bench/results/<suite>-<commit>-<time>.json
# and prints its tables; `bench/report.py --write` then renders RESULTS.md's
# tables from the newest file of each suite. A failed sample (wrk socket
# errors or non-2xx answers, a tool's non-zero exit, a timeout, a process that
# died) makes the run exit 1 naming it, and its file is written as .failed.json.
#
#   bench/run.sh                          # 5 rounds of 5 s per sample, every suite
#   REPS=7 DURATION=10 bench/run.sh
#   SUITES=https,apply bench/run.sh       # some suites
#   WARREN_BASELINE=/path/to/old/warren SUITES=https bench/run.sh
#                                         # the https suite with a second Warren binary side by side
#
# Everything runs on 127.0.0.1. See bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITES=${SUITES:-tunnel,https,apply,crash}

if ! command -v iperf3 >/dev/null || ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends iperf3 wrk nginx-light || apt-get install -y -q --no-install-recommends iperf3 wrk nginx
fi
tools="$PWD/bench/.tools"
if [ ! -x "$tools/bin/rathole" ]; then
  # Not --locked: its lockfile pins time 0.3.29, which current Rust cannot compile.
  cargo install rathole --version 0.5.0 --no-default-features --features server,client,noise --root "$tools"
fi
if [ ! -x "$tools/bin/oha" ]; then
  # --locked: its newest dependencies need a newer rustc than this machine's.
  cargo install oha --version 1.16.0 --locked --root "$tools"
fi
cargo build --release -p warren
W=target/release/warren

status=0
python_suites=$(tr , '\n' <<<"$SUITES" | grep -vx crash | paste -sd, || true)
if [ -n "$python_suites" ]; then
  python3 bench/bench.py --warren "$W" --rathole "$tools/bin/rathole" --oha "$tools/bin/oha" \
    --suites "$python_suites" "$@" || status=$?
fi
if grep -qx crash <<<"$(tr , '\n' <<<"$SUITES")"; then
  # Hook for the crash suite (kill -9 of the edge, time to traffic per
  # transport), written by bench/crash.py to bench/results/crash-*.json.
  if [ -f bench/crash.py ]; then
    python3 bench/crash.py --warren "$W" || status=$?
  else
    echo "crash suite: bench/crash.py is not there yet; skipped" >&2
    status=1
  fi
fi
exit $status
