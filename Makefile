# relay: the two commands a newcomer needs are `make run` and `make test`.
# Everything else (venv, packages, Kafka jars) is set up on the way.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NATIVE := $(VENV)/.native-installed
KAFKACTL := deploy/kafka/kafkactl
HELM := .cache/bin/helm
# Debian packages, installed only when missing; a new machine needs its lists first.
APT_INSTALL := sh -c 'apt-get update -q && apt-get install -y -q "$$@"' apt-install
PYTEST_ARGS ?=

.PHONY: help venv kafka-jars kafka-up kafka-down kafka-cluster-up kafka-cluster-down prometheus haproxy helm chromium run test test-fast \
	lint lock fmt bench dashboards screenshot clean

help:
	@echo "make run         the local stack (Kafka + ingest) in the foreground; Ctrl-C stops it"
	@echo "make test        the whole test suite (starts its own Kafka on 127.0.0.1:19092)"
	@echo "make test-fast   unit tests only, no broker"
	@echo "make bench       benchmarks against ceilings (SCENARIO=ingest,... ROUNDS= SECONDS=)"
	@echo "make lint        ruff, mypy, promtool; the image, compose file and chart (deploy/lint.sh)"
	@echo "make lock        regenerate requirements.lock (runtime packages with hashes)"
	@echo "make dashboards  regenerate the dashboard, alert rules and docs/METRICS.md from code"
	@echo "make screenshot  docs/prometheus-lag.png: Prometheus' lag graph on the live stack"
	@echo "make fmt         format the code"
	@echo "make kafka-up    start the local broker (KAFKA_PORT, default 9092); kafka-down stops it"
	@echo "make kafka-cluster-up   three KRaft nodes (KAFKA_PORT, +10, +20); kafka-cluster-down"

# Runtime packages come from the lock file (with hashes), as in the image; then the
# package itself and the dev tools.
$(INSTALLED): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# POST /batch's compiled check (native/, Rust): rebuilt when its sources change.
$(NATIVE): $(INSTALLED) native/Cargo.toml native/Cargo.lock native/pyproject.toml \
		native/relay_native.pyi native/src/lib.rs
	@command -v cargo >/dev/null || $(APT_INSTALL) cargo >/dev/null || \
	  { echo "native/ is Rust: install cargo (rustup, or apt-get install cargo), then make again"; exit 1; }
	MATURIN_PEP517_ARGS=--locked $(BIN)/pip install --quiet ./native  # crates as Cargo.lock pins them
	@touch $@

venv: $(INSTALLED) $(NATIVE)

kafka-jars:
	@$(KAFKACTL) jars

# Debian's prometheus package: promtool for `make lint`, the server for the live
# monitoring test and `make run`.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	  $(APT_INSTALL) prometheus >/dev/null || \
	  { echo "needs Debian's prometheus package: apt-get install prometheus"; exit 1; }

haproxy:
	@command -v haproxy >/dev/null || $(APT_INSTALL) haproxy >/dev/null || \
	  { echo "needs Debian's haproxy package: apt-get install haproxy"; exit 1; }

# helm renders the chart in the deploy tests and in deploy/lint.sh: built from the Go
# module proxy (a few minutes the first time).
helm: $(HELM)

$(HELM):
	@command -v go >/dev/null || { echo "helm is built with Go: install Go"; exit 1; }
	GOBIN=$(CURDIR)/.cache/bin go install helm.sh/helm/v3/cmd/helm@v3.22.0

chromium:
	@command -v chromium >/dev/null || $(APT_INSTALL) chromium >/dev/null || \
	  { echo "needs Debian's chromium package: apt-get install chromium"; exit 1; }

kafka-up:
	@$(KAFKACTL) up

kafka-down:
	@$(KAFKACTL) down

# Three KRaft nodes on KAFKA_PORT, +10, +20 (9092, 9102, 9112).
kafka-cluster-up:
	@KAFKA_NODES=3 $(KAFKACTL) up

kafka-cluster-down:
	@KAFKA_NODES=3 $(KAFKACTL) down

run: venv kafka-jars
	@deploy/run-local.sh

test: venv kafka-jars prometheus haproxy helm chromium
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/pytest -m "not kafka" $(PYTEST_ARGS)

# The bench extra (matplotlib, for the spike chart) only where benchmarks run.
$(VENV)/.bench-installed: $(INSTALLED) $(NATIVE)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@

# SCENARIO=ingest,forward runs some; ROUNDS and SECONDS shorten or lengthen them.
bench: venv kafka-jars $(VENV)/.bench-installed
	@command -v wrk >/dev/null || $(APT_INSTALL) wrk >/dev/null || \
	  { echo "bench needs wrk: apt-get install wrk"; exit 1; }
	@test -x .cache/bin/vegeta || GOBIN=$(CURDIR)/.cache/bin go install github.com/tsenart/vegeta/v12@v12.13.0 || \
	  { echo "bench needs vegeta (open-loop load): install Go, then make bench again"; exit 1; }
	$(BIN)/relay bench $(if $(SCENARIO),--scenario $(SCENARIO)) \
	  $(if $(ROUNDS),--rounds $(ROUNDS)) $(if $(SECONDS),--seconds $(SECONDS))

lint: venv prometheus helm
	$(BIN)/ruff check relay tests bench
	$(BIN)/ruff format --check relay tests bench
	$(BIN)/mypy
	cd native && cargo fmt --check && cargo clippy --quiet --release -- -D warnings
	cd deploy/prometheus && promtool check rules alerts.yml && \
	  promtool test rules alerts_test.yml && promtool check config prometheus.yml
	deploy/lint.sh

# requirements.lock and deploy/build.lock from pyproject.toml (--upgrade: newest versions).
lock: venv
	deploy/lock.sh

# The files built from code: deploy/grafana/relay-dashboard.json,
# deploy/prometheus/alerts.yml, docs/METRICS.md (tests fail when they are stale).
dashboards: venv
	$(BIN)/python -m relay.monitoring

# Runs the live monitoring test, which photographs the lag graph after an outage.
screenshot: venv kafka-jars prometheus chromium
	RELAY_SCREENSHOT=$(CURDIR)/docs/prometheus-lag.png \
	  $(BIN)/pytest tests/monitoring/test_live_prometheus.py

fmt: venv
	$(BIN)/ruff format relay tests bench
	$(BIN)/ruff check --fix relay tests bench
	cd native && cargo fmt

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache native/target
