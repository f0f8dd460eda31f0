#!/usr/bin/env bash
# One server's requests/s, p50/p99 and CPU per request under wrk at a given number of
# connections, for A/B runs of the front door against its baselines:
#   bench/server_cpu.sh KIND CONNECTIONS SECONDS [VAR=VALUE...]
# KIND: relay (this checkout), relay:CHECKOUT (another checkout's code, this venv),
# naive (bench/naive_relay.py) or ceiling (bench/ceiling_server.py). The server runs on
# core 0 (VAR=VALUE settings go to relay ingest), wrk (bench/play.lua) on core 1,
# against a broker already up on KAFKA_PORT (default 21392; `deploy/kafka/kafkactl up`;
# naive needs the topic naive.play). Prints the server's CPU per request, the share of
# its core it used (util: below 1, it waited), and the broker's CPU per request when
# KAFKA_STATE_DIR holds its pid. Alternate the sides over rounds; compare medians.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kind=$1; connections=$2; seconds=$3; shift 3
export KAFKA_PORT=${KAFKA_PORT:-21392}
port=$((18000 + RANDOM % 900))
python=$here/.venv/bin/python
case $kind in
  naive) (cd "$here" && exec taskset -c 0 "$python" bench/naive_relay.py $port 127.0.0.1:$KAFKA_PORT) 2>/dev/null & ;;
  ceiling) (cd "$here" && exec taskset -c 0 "$python" bench/ceiling_server.py $port) 2>/dev/null & ;;
  relay|relay:*)
    root=${kind#relay}; root=${root#:}; root=${root:-$here}
    (cd "$root" && exec env "$@" RELAY_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT RELAY_TOPIC_PREFIX=cpu$RANDOM \
      RELAY_LOG_LEVEL=WARNING RELAY_INGEST_PORT=$port RELAY_TENANTS_FILE="$here/bench/tenants.toml" \
      RELAY_SHUTDOWN_GRACE_S=0 taskset -c 0 "$python" -m relay ingest) 2>/dev/null & ;;
  *) echo "KIND: relay, relay:CHECKOUT, naive or ceiling (not $kind)" >&2; exit 2 ;;
esac
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "$kind did not start (is Kafka up on $KAFKA_PORT?)" >&2; exit 1; }
load() { taskset -c 1 wrk -t1 -c"$connections" -d"$1" --latency -s "$here/bench/play.lua" "http://127.0.0.1:$port/play"; }
load 3s >/dev/null  # warm-up: connections, metadata, partitions
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
broker=$(cat "${KAFKA_STATE_DIR:-/nonexistent}/kafka.pid" 2>/dev/null || echo "")
before=$(ticks $server); broker_before=${broker:+$(ticks "$broker")}; started=$(date +%s.%N)
out=$(load "${seconds}s")
after=$(ticks $server); broker_after=${broker:+$(ticks "$broker")}; ended=$(date +%s.%N)
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
[ -n "$rps" ] || { echo "wrk measured nothing: $out" >&2; exit 1; }
p50=$(awk '$1 == "50%" {print $2}' <<<"$out"); p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
python3 - "$kind" "$rps" "$seconds" "$(getconf CLK_TCK)" "$before" "$after" "$started" "$ended" \
  "${broker_before:-}" "${broker_after:-}" "$p50" "$p99" "${non2xx:-0}" <<'PY'
import sys
kind, rps, seconds, tck, before, after, started, ended, bb, ba, p50, p99, non2xx = sys.argv[1:]
rps, seconds, tck = float(rps), float(seconds), float(tck)
used = (float(after) - float(before)) / tck
line = f"{kind} {rps:8.0f} req/s p50 {p50} p99 {p99} non-2xx {non2xx}"
line += f" cpu {1e6 * used / (rps * seconds):.1f} us/request util {used / (float(ended) - float(started)):.2f}"
if bb:
    line += f" broker {1e6 * (float(ba) - float(bb)) / tck / (rps * seconds):.1f} us/request"
print(line)
PY
