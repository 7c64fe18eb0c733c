# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format unit clean web web-check

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

test: lint unit web-check

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis $(WEB)/node_modules

# The browser client (issue 12): TypeScript in clients/web/, built by esbuild into
# server/web/static/, which is committed so that `make run` needs only Python. `make web`
# rebuilds it from source. `web-check` (part of `make test`; needs Node.js 20 and npm)
# type-checks it, checks its formatting (Prettier: `cd clients/web && npm run format` applies
# it), runs its tests (against tests/protocol/vectors/, and Python's protocol/ opening what it
# seals) and checks that the committed build is byte for byte what the source builds.
WEB       := clients/web
WEB_STAMP := $(WEB)/node_modules/.installed

$(WEB_STAMP): $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

web: $(WEB_STAMP)
	cd $(WEB) && npm run --silent build

web-check: $(WEB_STAMP) $(STAMP)
	cd $(WEB) && npm run --silent typecheck && npm run --silent lint
	cd $(WEB) && ATTACHE_PYTHON=$(abspath $(BIN))/python npm run --silent test
	@fresh=$$(mktemp -d) && trap 'rm -rf "$$fresh"' EXIT && \
		(cd $(WEB) && node build.mjs "$$fresh") && \
		diff -r -q "$$fresh" server/web/static || \
		{ echo "server/web/static/ is not what clients/web/ builds: run make web, commit both"; exit 1; }

# Seed a three-nation demo (USA, GBR, FRA; channel liaison) into the server `make run` started.
# The server: ATTACHE_SERVER, else 127.0.0.1 on ATTACHE_PORT (what `make run` serves on), else
# port 8600; from the environment or the make command line (`make demo ATTACHE_PORT=8611`).
.PHONY: demo
demo: $(STAMP)
	ATTACHE_SERVER="$(ATTACHE_SERVER)" ATTACHE_PORT="$(ATTACHE_PORT)" $(BIN)/python scripts/seed_demo.py

# Channel delivery benchmark (issue 8): writes bench/results/channel.json and channel.md.
# `bench` is the quick profile (one run of each shape, an idle crowd of 1,000, one room on
# every set-up, many rooms (20 channels of 50) in rate steps of 5 s); `bench-full` runs
# every shape three times with a crowd of 5,000 and rate steps of 8 s.
.PHONY: bench bench-full bench-ab
# One room also on PostgreSQL + Redis with one and with two server processes (the machine's
# Redis at 127.0.0.1:6379); bench-full runs every shape on every set-up.
SETUPS := sqlite,postgresql,postgresql+redis,postgresql+redis:2
bench: $(STAMP)
	$(BIN)/python bench/bench_channel.py --runs 1 --shape-runs 1 --crowd 1000 --profile \
		--rooms 20 --rooms-seconds 5 --database $(SETUPS)

bench-full: $(STAMP)
	$(BIN)/python bench/bench_channel.py --runs 3 --shape-runs 3 --crowd 5000 --profile \
		--rooms 20 --rooms-seconds 8 --database $(SETUPS) --all-shapes

# Issue 8's goals on the embedded server alone (about 12 minutes on a quiet machine): one room
# three times, the other shapes once, the idle crowd at 5,000; writes
# bench/results/channel-goals.json and .md, leaving bench's four-set-up report alone.
.PHONY: bench-goals
bench-goals: $(STAMP)
	$(BIN)/python bench/bench_channel.py --runs 3 --shape-runs 1 --crowd 5000 --profile \
		--rooms 20 --rooms-seconds 5 --database sqlite --output bench/results/channel-goals.json

# Revisions' servers, one room on SQLite, run in turn (bench/ab.py; docs/operations.md):
# make bench-ab A=REV B=REV
bench-ab: $(STAMP)
	$(BIN)/python bench/ab.py $(A) $(B) --runs 3

# The browser client's cost per received message and per MiB of document beside the SDK's
# (issue 12): writes bench/results/web.json and web.md. Needs Debian's Chromium; not in `test`.
.PHONY: bench-web
bench-web: $(STAMP) $(WEB_STAMP)
	$(BIN)/python bench/bench_web.py --messages 200 --runs 5 --mib 16
