#!/usr/bin/env bash
# Profile one `relay ingest` under wrk load (docs/PERFORMANCE.md quotes its output):
#   bench/profile_ingest.sh OUT_PREFIX [CONNECTIONS] [SECONDS]
# Starts a broker of its own (KAFKA_PORT, default 21392), the ingest process pinned to
# core 0 with bench/tenants.toml, wrk (bench/play.lua) pinned to core 1, and
# py-spy record on the ingest process (--native off, 250 Hz, --nonblocking: stopping
# the process to sample it lands samples next to system calls) while wrk runs; writes
# OUT_PREFIX.collapsed (py-spy's raw stacks) and OUT_PREFIX.txt (bench/profile_top.py).
# Run it from the checkout to profile (its relay package is imported). POST /batch:
#   TENANTS= SCRIPT=batch URLPATH=batch bench/profile_ingest.sh OUT 16 15
# (TENANTS empty: no tenants file, so no key; SCRIPT: bench/SCRIPT.lua; URLPATH: path).
set -euo pipefail
out=$1; connections=${2:-512}; seconds=${3:-15}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
export KAFKA_PORT=${KAFKA_PORT:-21392}
export KAFKA_STATE_DIR=$root/.cache/kafka/profile-$KAFKA_PORT
"$root/deploy/kafka/kafkactl" up >/dev/null
trap '"$root/deploy/kafka/kafkactl" down >/dev/null' EXIT
port=18999
RELAY_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT RELAY_TOPIC_PREFIX=profile$RANDOM RELAY_LOG_LEVEL=WARNING \
  RELAY_INGEST_PORT=$port RELAY_TENANTS_FILE=${TENANTS-$root/bench/tenants.toml} RELAY_SHUTDOWN_GRACE_S=0 \
  taskset -c 0 "$python" -m relay ingest &
ingest=$!
trap 'kill $ingest; wait $ingest; "$root/deploy/kafka/kafkactl" down >/dev/null' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
taskset -c 1 wrk -t1 -c"$connections" -d3s -s "$root/bench/play.lua" "http://127.0.0.1:$port/play" >/dev/null
taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/${SCRIPT:-play}.lua" \
  "http://127.0.0.1:$port/${URLPATH:-play}" > "$out.wrk" &
load=$!
sleep 2
"$(dirname "$python")/py-spy" record --pid $ingest --duration $((seconds - 4)) --rate 250 --nonblocking \
  --format raw --output "$out.collapsed" >/dev/null 2>&1
wait $load
"$python" "$root/bench/profile_top.py" "$out.collapsed" > "$out.txt"
grep -E "Requests/sec|99%" "$out.wrk" >> "$out.txt"
