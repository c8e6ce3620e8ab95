# `make run` and `make test` work on a fresh machine: they create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test bench faults lint format contracts clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/whistle up

# The auditor page's tests drive Debian's Chromium (tests/browser), the monitoring tests Debian's
# Prometheus, promtool and amtool (tests/e2e/test_monitoring.py,
# tests/unit/test_prometheus_rules.py); CI runs as root.
test: $(STAMP)
	command -v chromium >/dev/null && command -v promtool >/dev/null && command -v amtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium prometheus prometheus-alertmanager)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# What a frozen or killed broker, database or service, or Ctrl-C, loses or doubles under load
# (docs/reliability.md); 15–20 minutes. e.g. FAULT_ARGS="--only ctrl-c --tips 200"
faults: $(STAMP)
	$(BIN)/python -m bench faults $(FAULT_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

contracts: $(STAMP)
	$(BIN)/python -m contracts.generate
	$(BIN)/python -m services.launcher.kafka_users
	$(BIN)/python -m services.launcher.dashboards
	$(BIN)/python -m services.launcher.configmaps

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
