#!/usr/bin/env bash
# The whole local stack in the foreground: Kafka, the sandbox upstream, ingest and
# forward, and Prometheus (scraping both, with the alert rules) when it is installed.
# Ctrl-C (or SIGTERM) stops them in order: Prometheus, ingest (it drains and
# flushes), forward (it drains and commits), the sandbox, and last the broker (only
# if this script started it).
set -euo pipefail
cd "$(dirname "$0")/.."

export KAFKA_PORT="${KAFKA_PORT:-9092}"
export RELAY_KAFKA_BOOTSTRAP="${RELAY_KAFKA_BOOTSTRAP:-127.0.0.1:$KAFKA_PORT}"
export RELAY_APP_ID="${RELAY_APP_ID:-1}"
ingest_port="${RELAY_INGEST_PORT:-8080}"
forward_port="${RELAY_FORWARD_PORT:-9101}"
sandbox_port="${RELAY_SANDBOX_PORT:-8090}"
prometheus_port="${PROMETHEUS_PORT:-9090}"
export RELAY_UPSTREAM_URL="${RELAY_UPSTREAM_URL:-http://127.0.0.1:$sandbox_port}"

# A demo tenant with a fresh inbound key, for this run only.
demo_dir=.cache/demo
mkdir -p "$demo_dir"
if [ -z "${RELAY_TENANTS_FILE:-}" ]; then
  export RELAY_TENANTS_FILE="$demo_dir/tenants.toml"
  cat > "$RELAY_TENANTS_FILE" <<TOML
[tenants.demo]
upstream_token = "demo-token"
upstream_secret = "demo-secret"
app_id = 1
inbound_rps = 1000
upstream_budget_rps = 200
TOML
fi
demo_key=$(.venv/bin/relay tenants add-key --tenant demo --id "run-$(date +%s)" 2>/dev/null)

started_kafka=0
if ! deploy/kafka/kafkactl status; then deploy/kafka/kafkactl up; started_kafka=1; fi

pids=()
prom_pid=""
stop() {
  trap - INT TERM EXIT
  if [ -n "$prom_pid" ] && kill -0 "$prom_pid" 2>/dev/null; then
    kill -TERM "$prom_pid"; wait "$prom_pid" || true
  fi
  # reverse order of start: ingest, forward, sandbox
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    pid=${pids[$i]}
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  done
  if [ "$started_kafka" = 1 ]; then deploy/kafka/kafkactl down; fi
}
trap stop INT TERM EXIT

wait_http() {  # url, name
  for _ in $(seq 1 300); do
    if curl -fs -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  echo "run-local: $2 did not come up at $1" >&2; exit 1
}

.venv/bin/relay sandbox & pids+=($!)
wait_http "http://127.0.0.1:$sandbox_port/healthz" sandbox
.venv/bin/relay forward & pids+=($!)
wait_http "http://127.0.0.1:$forward_port/healthz" forward
.venv/bin/relay ingest & pids+=($!)
wait_http "http://127.0.0.1:$ingest_port/healthz" ingest

# Prometheus is a convenience: if it cannot start, the relay stays up and says why.
prometheus_line="Prometheus not running: install Debian's prometheus package (make test does)"
if command -v prometheus >/dev/null; then
  prom_dir=.cache/prometheus
  mkdir -p "$prom_dir"
  sed -e "s/127.0.0.1:8080/127.0.0.1:$ingest_port/" -e "s/127.0.0.1:9101/127.0.0.1:$forward_port/" \
    -e "s#alerts.yml#$PWD/deploy/prometheus/alerts.yml#" deploy/prometheus/prometheus.yml \
    > "$prom_dir/prometheus.yml"
  prometheus --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/data" \
    --web.listen-address="127.0.0.1:$prometheus_port" > "$prom_dir/prometheus.log" 2>&1 &
  prom_pid=$!
  prometheus_line="Prometheus did not start (see $prom_dir/prometheus.log); the relay runs without it"
  # (it is stopped first at exit, and its own exit does not stop the relay)
  for _ in $(seq 1 100); do
    if curl -fs -o /dev/null "http://127.0.0.1:$prometheus_port/-/ready"; then
      prometheus_line="prometheus http://127.0.0.1:$prometheus_port   (alerts: /alerts; the lag: /graph?g0.expr=relay_forward_oldest_undelivered_seconds)"
      break
    fi
    kill -0 "$prom_pid" 2>/dev/null || break
    sleep 0.1
  done
fi

cat <<TXT

  relay is up:
    Kafka     127.0.0.1:$KAFKA_PORT
    sandbox   http://127.0.0.1:$sandbox_port   (the stand-in upstream; /_sandbox/ledger, /_sandbox/faults)
    forward   http://127.0.0.1:$forward_port   (/metrics, /healthz, /readyz)
    ingest    http://127.0.0.1:$ingest_port   (POST /play, /app-start, ...; /metrics, /healthz, /readyz)
    $prometheus_line

  demo tenant "demo", inbound key (shown once):  $demo_key

  try:  curl -i -X POST http://127.0.0.1:$ingest_port/play -H 'Content-Type: application/json' \\
          -H "X-Relay-Key: $demo_key" -d '{"clientId":"7d9f3c1e-demo","clipId":123,"method":"Stream"}'
        curl -s http://127.0.0.1:$sandbox_port/_sandbox/ledger

  Ctrl-C stops everything.
TXT
wait -n "${pids[@]}"
echo "run-local: a process exited; stopping the rest" >&2
