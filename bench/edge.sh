#!/usr/bin/env bash
# Gateway throughput and added latency beside nginx and HAProxy, in one run
# (this machine is noisy: only ratios from one run mean anything).
# Needs: apt-get install -y nginx-light haproxy wrk; a release build (cargo build --release).
# usage: bench/edge.sh [duration_s] [conns]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}; conns=${2:-64}
bin=target/release/bazaar
[ -x "$bin" ] || cargo build --release -q
port=18090
data=$(mktemp -d)
# Two worker threads, as HAProxy and nginx get in the baseline.
TOKIO_WORKER_THREADS=2 RUST_LOG=warn "$bin" serve gateway --data-dir "$data" --port "$port" --config bench/edge.toml >"$data/gateway.log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
baseline=${EDGE_BASELINE:-../shared/bench/edge-baseline.sh}
bash "$baseline" "$dur" "$conns" "http://127.0.0.1:$port/"
