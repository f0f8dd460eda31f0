#!/usr/bin/env bash
# One ingest's requests/s, p99 and CPU per request under wrk, for A/B runs of a change:
#   bench/ingest_cpu.sh CHECKOUT CONNECTIONS SECONDS [VAR=VALUE...]
# Runs `relay ingest` from CHECKOUT (its own code, this checkout's venv) on core 0 with
# bench/tenants.toml and the given settings, wrk (bench/play.lua) on core 1, against a
# broker already up on KAFKA_PORT (default 21392; `deploy/kafka/kafkactl up`). CPU per
# request is the process's user+system time over the measured run divided by the
# requests answered: steadier than requests/s on a shared machine. Alternate the two
# sides over several rounds and compare medians.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=$(cd "$1" && pwd); connections=$2; seconds=$3; shift 3
export KAFKA_PORT=${KAFKA_PORT:-21392}
port=$((18000 + RANDOM % 900))
cd "$root"
env "$@" RELAY_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT RELAY_TOPIC_PREFIX=cpu$RANDOM RELAY_LOG_LEVEL=WARNING \
  RELAY_INGEST_PORT=$port RELAY_TENANTS_FILE="$here/bench/tenants.toml" RELAY_SHUTDOWN_GRACE_S=0 \
  taskset -c 0 "$here/.venv/bin/python" -m relay ingest 2>/dev/null &
ingest=$!
trap 'kill $ingest; wait $ingest 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "ingest did not start (is Kafka up on $KAFKA_PORT?)" >&2; exit 1; }
load() { taskset -c 1 wrk -t1 -c"$connections" -d"$1" --latency -s "$here/bench/play.lua" "http://127.0.0.1:$port/play"; }
load 3s >/dev/null  # warm-up: connections, metadata, partitions
before=$(awk '{print $14 + $15}' "/proc/$ingest/stat")
out=$(load "${seconds}s")
after=$(awk '{print $14 + $15}' "/proc/$ingest/stat")
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
[ -n "$rps" ] || { echo "wrk measured nothing: $out" >&2; exit 1; }
p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
ticks=$(getconf CLK_TCK)
python3 -c "print(f'{$rps:8.0f} req/s  p99 $p99  non-2xx ${non2xx:-0}  cpu {1e6 * ($after - $before) / $ticks / ($rps * $seconds):.1f} us/request')"
