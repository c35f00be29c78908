#!/usr/bin/env bash
# One command for Warren's benchmarks: builds the release binary, installs the
# peers (rathole 0.5.0 from crates.io; iperf3, wrk and nginx from Debian;
# oha 1.16.0 for fixed-rate latency), then measures, in the same run:
#   tunnel suite: direct, rathole (plain TCP and Noise) and Warren (TCP+TLS and QUIC);
#   https suite:  nginx terminating TLS alone, nginx -> rathole, Warren's edge (http resource),
# and prints tables with ratios. SUITES=https bench/run.sh runs one suite.
#
#   bench/run.sh                 # 3 repetitions of 5 s per measurement
#   REPS=5 DURATION=10 bench/run.sh
#
# Everything runs on 127.0.0.1. Results are medians; see bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

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
exec python3 bench/bench.py --warren target/release/warren --rathole "$tools/bin/rathole" --oha "$tools/bin/oha" "$@"
