#!/usr/bin/env bash
# Two servers measured at the same time, for A/B runs that this shared machine's drift
# cannot blur:
#   bench/paired_cpu.sh KIND_A KIND_B CONNECTIONS SECONDS ROUNDS
# KIND: relay (this checkout), relay:CHECKOUT (another checkout's code, this venv),
# naive or naive:CHECKOUT (bench/naive_relay.py), as in bench/server_cpu.sh. Both
# servers run on core 0 at once, each under its own wrk (bench/play.lua) on core 1, on
# a broker already up on KAFKA_PORT (default 21392; `deploy/kafka/kafkactl up`; naive
# needs the topic naive.play). Each round prints each server's requests/s and CPU per
# request (utime + stime, system time apart), its non-2xx answers (a round with any
# fails: an error answered fast would look cheap) and B's ratios to A. Sequential rounds of
# one server then the other (server_cpu.sh) moved 10-20 % between rounds of the same
# code here; two servers sharing one core meet the same machine, and their ratio held
# within 2-3 % over rounds (docs/PERFORMANCE.md, thirteenth session). The ratio of CPU
# per request is the figure to read; requests/s each is about half of one alone.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 5 ] || { sed -n 2,14p "$0" >&2; exit 2; }
kind_a=$1; kind_b=$2; connections=$3; seconds=$4; rounds=$5
export KAFKA_PORT=${KAFKA_PORT:-21392}
python=$here/.venv/bin/python
tck=$(getconf CLK_TCK)

for kind in "$kind_a" "$kind_b"; do
  case $kind in
    naive|naive:*|relay|relay:*) ;;
    *) echo "KIND: relay, relay:CHECKOUT, naive or naive:CHECKOUT (not $kind)" >&2; exit 2 ;;
  esac
done

start() {  # KIND PORT: the server, in the background, pinned to core 0
  local kind=$1 port=$2 root
  case $kind in
    naive|naive:*)
      root=${kind#naive}; root=${root#:}; root=${root:-$here}
      (cd "$root" && exec taskset -c 0 "$python" bench/naive_relay.py "$port" \
        "127.0.0.1:$KAFKA_PORT") &>/dev/null & ;;
    relay|relay:*)
      root=${kind#relay}; root=${root#:}; root=${root:-$here}
      (cd "$root" && exec env RELAY_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" \
        RELAY_TOPIC_PREFIX="paired$RANDOM" RELAY_LOG_LEVEL=WARNING RELAY_INGEST_PORT="$port" \
        RELAY_TENANTS_FILE="$here/bench/tenants.toml" RELAY_SHUTDOWN_GRACE_S=0 \
        taskset -c 0 "$python" -m relay ingest) &>/dev/null & ;;
  esac
}

port_a=$((18000 + RANDOM % 400)); port_b=$((18500 + RANDOM % 400))
start "$kind_a" $port_a; server_a=$!
start "$kind_b" $port_b; server_b=$!
out=$(mktemp -d)
trap 'kill $server_a $server_b 2>/dev/null; wait $server_a $server_b 2>/dev/null || true; rm -rf "$out"' EXIT
for port in $port_a $port_b; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null ||
    { echo "the server on $port did not start (is Kafka up on $KAFKA_PORT?)" >&2; exit 1; }
done
load() {  # PORT SECONDS
  taskset -c 1 wrk -t1 -c"$connections" -d"$2" --latency -s "$here/bench/play.lua" \
    "http://127.0.0.1:$1/play"
}
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }  # utime stime

# Warm-up (connections, metadata, partitions), then the rounds, both servers at once.
load $port_a 3s >/dev/null & warm_a=$!; load $port_b 3s >/dev/null & warm_b=$!
wait $warm_a $warm_b
for round in $(seq "$rounds"); do
  before_a=$(ticks $server_a); before_b=$(ticks $server_b)
  load $port_a "${seconds}s" >"$out/a" & load_a=$!
  load $port_b "${seconds}s" >"$out/b" & load_b=$!
  wait $load_a $load_b
  after_a=$(ticks $server_a); after_b=$(ticks $server_b)
  rps_a=$(awk '/Requests\/sec/ {print $2}' "$out/a"); rps_b=$(awk '/Requests\/sec/ {print $2}' "$out/b")
  [ -n "$rps_a" ] && [ -n "$rps_b" ] || { echo "wrk measured nothing" >&2; exit 1; }
  errors_a=$(awk '/Non-2xx/ {print $NF}' "$out/a"); errors_b=$(awk '/Non-2xx/ {print $NF}' "$out/b")
  python3 - "$round" "$kind_a" "$kind_b" "$seconds" "$tck" "$rps_a" "$rps_b" \
    "$before_a" "$after_a" "$before_b" "$after_b" "${errors_a:-0}" "${errors_b:-0}" <<'PY'
import sys
round_, kind_a, kind_b, seconds, tck, rps_a, rps_b = sys.argv[1:8]
errors_a, errors_b = int(sys.argv[12]), int(sys.argv[13])
seconds, tck, rps_a, rps_b = float(seconds), float(tck), float(rps_a), float(rps_b)

def per_request(before: str, after: str, rps: float) -> tuple[float, float]:
    (user0, sys0), (user1, sys1) = (map(int, before.split()), map(int, after.split()))
    scale = 1e6 / tck / (rps * seconds)
    return (user1 - user0 + sys1 - sys0) * scale, (sys1 - sys0) * scale

cpu_a, sys_a = per_request(sys.argv[8], sys.argv[9], rps_a)
cpu_b, sys_b = per_request(sys.argv[10], sys.argv[11], rps_b)
print(
    f"round {round_}: {kind_a} {rps_a:.0f}/s {cpu_a:.1f} us (system {sys_a:.1f}, "
    f"non-2xx {errors_a}); {kind_b} {rps_b:.0f}/s {cpu_b:.1f} us (system {sys_b:.1f}, "
    f"non-2xx {errors_b}); B/A requests/s {rps_b / rps_a:.3f}, CPU per request "
    f"{cpu_b / cpu_a:.3f}"
)
if errors_a or errors_b:
    sys.exit("non-2xx answers: this round's CPU per request is not comparable")
PY
done
