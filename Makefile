# relay: the two commands a newcomer needs are `make run` and `make test`.
# Everything else (venv, packages, Kafka jars) is set up on the way.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
KAFKACTL := deploy/kafka/kafkactl
PYTEST_ARGS ?=

.PHONY: help venv kafka-jars kafka-up kafka-down run test test-fast lint fmt bench clean

help:
	@echo "make run         the local stack (Kafka + ingest) in the foreground; Ctrl-C stops it"
	@echo "make test        the whole test suite (starts its own Kafka on 127.0.0.1:19092)"
	@echo "make test-fast   unit tests only, no broker"
	@echo "make bench       benchmarks against ceilings (SCENARIO=ingest,... ROUNDS= SECONDS=)"
	@echo "make lint        ruff and mypy"
	@echo "make fmt         format the code"
	@echo "make kafka-up    start the local broker (KAFKA_PORT, default 9092); kafka-down stops it"

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(INSTALLED)

kafka-jars:
	@$(KAFKACTL) jars

kafka-up:
	@$(KAFKACTL) up

kafka-down:
	@$(KAFKACTL) down

run: venv kafka-jars
	@deploy/run-local.sh

test: venv kafka-jars
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/pytest -m "not kafka" $(PYTEST_ARGS)

# SCENARIO=ingest,forward runs some; ROUNDS and SECONDS shorten or lengthen them.
bench: venv kafka-jars
	@command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null || \
	  { echo "bench needs wrk: apt-get install wrk"; exit 1; }
	@test -x .cache/bin/vegeta || GOBIN=$(CURDIR)/.cache/bin go install github.com/tsenart/vegeta/v12@v12.13.0 || \
	  { echo "bench needs vegeta (open-loop load): install Go, then make bench again"; exit 1; }
	$(BIN)/relay bench $(if $(SCENARIO),--scenario $(SCENARIO)) \
	  $(if $(ROUNDS),--rounds $(ROUNDS)) $(if $(SECONDS),--seconds $(SECONDS))

lint: venv
	$(BIN)/ruff check relay tests bench
	$(BIN)/ruff format --check relay tests bench
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format relay tests bench
	$(BIN)/ruff check --fix relay tests bench

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
