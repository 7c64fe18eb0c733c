# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project's dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/attache-server run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy protocol server clients

unit: $(STAMP)
	$(BIN)/pytest

test: lint unit

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis

# Seed a three-nation demo (USA, GBR, FRA; channel liaison) into the server `make run` started.
# The server: ATTACHE_SERVER, else 127.0.0.1 on ATTACHE_PORT (what `make run` serves on), else
# port 8600; from the environment or the make command line (`make demo ATTACHE_PORT=8611`).
.PHONY: demo
demo: $(STAMP)
	ATTACHE_SERVER="$(ATTACHE_SERVER)" ATTACHE_PORT="$(ATTACHE_PORT)" $(BIN)/python scripts/seed_demo.py

# Channel delivery benchmark (issue 8): writes bench/results/channel.json and channel.md.
# `bench` is the quick profile (one run of each shape, an idle crowd of 1,000, one room on
# SQLite and PostgreSQL, many rooms (20 channels of 50) in rate steps of 5 s); `bench-full` runs
# every shape three times with a crowd of 5,000 and rate steps of 8 s.
.PHONY: bench bench-full
bench: $(STAMP)
	$(BIN)/python bench/bench_channel.py --runs 1 --shape-runs 1 --crowd 1000 --profile \
		--rooms 20 --rooms-seconds 5

bench-full: $(STAMP)
	$(BIN)/python bench/bench_channel.py --runs 3 --shape-runs 3 --crowd 5000 --profile \
		--rooms 20 --rooms-seconds 8
