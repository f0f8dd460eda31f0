#!/usr/bin/env bash
# One ingest's requests/s, p99 and CPU per request under wrk, for A/B runs of a change:
#   bench/ingest_cpu.sh CHECKOUT CONNECTIONS SECONDS [VAR=VALUE...]
# The relay side of bench/server_cpu.sh (`relay:CHECKOUT`), kept under the name earlier
# figures in docs/PERFORMANCE.md were measured with; see that script for what it runs.
set -euo pipefail
checkout=$1; shift
exec "$(dirname "${BASH_SOURCE[0]}")/server_cpu.sh" "relay:$checkout" "$@"
