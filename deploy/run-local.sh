#!/usr/bin/env bash
# The local stack in the foreground: Kafka, then ingest. Ctrl-C (or SIGTERM) stops
# ingest first (it drains and flushes), then the broker this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

export KAFKA_PORT="${KAFKA_PORT:-9092}"
export RELAY_KAFKA_BOOTSTRAP="${RELAY_KAFKA_BOOTSTRAP:-127.0.0.1:$KAFKA_PORT}"
export RELAY_APP_ID="${RELAY_APP_ID:-1}"
port="${RELAY_INGEST_PORT:-8080}"

started_kafka=0
if ! deploy/kafka/kafkactl status; then deploy/kafka/kafkactl up; started_kafka=1; fi

ingest_pid=""
stop() {
  trap - INT TERM EXIT
  if [ -n "$ingest_pid" ] && kill -0 "$ingest_pid" 2>/dev/null; then
    kill -TERM "$ingest_pid"; wait "$ingest_pid" || true
  fi
  if [ "$started_kafka" = 1 ]; then deploy/kafka/kafkactl down; fi
}
trap stop INT TERM EXIT

.venv/bin/relay ingest &
ingest_pid=$!
cat <<TXT

  relay is up:
    Kafka     127.0.0.1:$KAFKA_PORT
    ingest    http://127.0.0.1:$port   (POST /play, /app-start, ...; /metrics, /healthz, /readyz)

  try:  curl -i -X POST http://127.0.0.1:$port/play -H 'Content-Type: application/json' \\
          -d '{"clientId":"7d9f3c1e-demo","clipId":123,"method":"Stream"}'

  Ctrl-C stops everything.
TXT
wait "$ingest_pid"
