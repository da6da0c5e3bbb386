#!/usr/bin/env bash
# Time from `bazaar up` to every process healthy (cold: empty data dir, so
# migrations, the demo catalog, the signing key and the admin account are made;
# warm: the same data dir again), and the resident memory of the whole idle
# platform (the supervisor and every service process), from /proc.
# usage: bench/startup.sh [replicas-args...]   e.g. bench/startup.sh --replicas catalog=2
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/bazaar
[ -x "$bin" ] || cargo build --release -q
work=$(mktemp -d)
port=18380
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

run() {
  local label=$1; shift
  local started=$(date +%s%N)
  NO_COLOR=1 "$bin" up --data-dir "$work/data" --port "$port" "$@" >"$work/out" 2>&1 &
  echo $! >"$work/pid"
  for _ in $(seq 600); do
    grep -q 'healthy in' "$work/out" && break
    kill -0 "$(cat "$work/pid")" 2>/dev/null || { cat "$work/out"; exit 1; }
    sleep 0.05
  done
  local ended=$(date +%s%N)
  local reported=$(grep -o 'healthy in [0-9.]* *m\?s' "$work/out" | head -1)
  printf '%-5s start: %5d ms wall to the healthy line (bazaar up reports: %s)\n' "$label" $(( (ended - started) / 1000000 )) "$reported"
}

rss() {
  sleep 5 # idle: let start-up allocations settle
  local up=$(cat "$work/pid")
  local pids="$up $(pgrep -P "$up" | tr '\n' ' ')"
  local total=0 n=0
  for p in $pids; do
    kb=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + kb)); n=$((n + 1))
  done
  printf 'idle resident memory: %d MiB across %d processes (supervisor + services)\n' $((total / 1024)) "$n"
}

stop() {
  kill -TERM "$(cat "$work/pid")"
  wait "$(cat "$work/pid")" 2>/dev/null || true
}

run cold "$@"
rss
stop
run warm "$@"
stop
