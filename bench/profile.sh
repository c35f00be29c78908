#!/usr/bin/env bash
# Samples the edge and the agent with `perf record -g` during one single-stream
# iperf3 run through a Warren TCP resource; prints the top symbols of each.
#   bench/profile.sh [tcp|quic]
# Needs: a release build (bench/run.sh makes one), iperf3, perf (Debian's linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
transport=${1:-tcp}
W=$PWD/target/release/warren
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port) tunnel=$(free_port) admin=$(free_port) pub=$(free_port)
dir=$(mktemp -d); cd "$dir"
iperf3 -s -p "$up" >/dev/null 2>&1 & pids=($!)
cat > edge.toml <<T
[edge]
data_dir = "data"
tunnel_listen = "127.0.0.1:$tunnel"
admin_listen = "127.0.0.1:$admin"
[[site]]
id = "b"
secret = "profile-secret-0123456789"
[[resource]]
name = "iperf"
type = "tcp"
listen = "127.0.0.1:$pub"
targets = [{ site = "b", address = "127.0.0.1:$up" }]
T
pin=$("$W" edge --config edge.toml --print-pin)
WARREN_LOG=error "$W" edge --config edge.toml & edge=$!; pids+=($edge)
sleep 0.5
WARREN_LOG=error "$W" site --endpoint "https://127.0.0.1:$tunnel" --id b --secret profile-secret-0123456789 \
  --pin "$pin" --transport "$transport" --allow "127.0.0.1:$up/tcp" & agent=$!; pids+=($agent)
sleep 1
perf record -F 999 -g -p "$edge" -o edge.perf -- sleep 6 >/dev/null 2>&1 &
perf record -F 999 -g -p "$agent" -o agent.perf -- sleep 6 >/dev/null 2>&1 &
sleep 0.3
iperf3 -c 127.0.0.1 -p "$pub" -t 5 | grep receiver
sleep 2
kill "${pids[@]}" 2>/dev/null || true
for who in edge agent; do
  echo "== $who"
  perf report -i "$who.perf" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -15 | cut -c1-100
done
