# `make demo` (JupyterLab + the extension against a local demo Hub) and `make test`;
# `make team-demo` brings up the team store behind JupyterHub on this machine (scripts/team_demo.py).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8888
HUB_PORT ?= 8765
TEAM_PORT ?= 8000
DEMO_DIR ?= .demo

.PHONY: install demo team-demo test test-python test-js lint check-lint bench browser-deps postgres-deps hub-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Without an NVIDIA GPU, pin the CPU build of torch first so pip never resolves a CUDA wheel.
install: $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(BIN)/pip install -q "torch>=2.4"; \
	else \
		$(BIN)/pip install -q "torch==2.13.0"; \
	fi
	$(BIN)/pip install -q -e ".[test,postgres]"

browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# The tests start their own PostgreSQL server (as the `postgres` user when run as root): Debian's package.
postgres-deps:
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

# JupyterHub's proxy, for the team store's tests (JupyterHub itself comes with the test extra).
hub-deps:
	@command -v configurable-http-proxy >/dev/null 2>&1 || npm install -g --no-audit --no-fund configurable-http-proxy

DEMO_ENV = HF_ENDPOINT=http://127.0.0.1:$(HUB_PORT) HF_HUB_DISABLE_XET=1 \
	MISTUDIO_CACHE_DIR=$(CURDIR)/$(DEMO_DIR)/cache MISTUDIO_DB_URL=sqlite:///$(CURDIR)/$(DEMO_DIR)/catalog.sqlite

demo: install
	$(DEMO_ENV) $(BIN)/python -m tests.hubserver $(DEMO_DIR)/hub --port $(HUB_PORT) & hub=$$!; \
	trap "kill $$hub" EXIT; \
	$(DEMO_ENV) $(BIN)/jupyter lab --port $(PORT) --ServerApp.root_dir=notebooks \
		$$([ "$$(id -u)" = 0 ] && echo --allow-root)

# JupyterHub (alice and bob, passwords printed), PostgreSQL, the store service and the demo Hub, until Ctrl-C.
team-demo: install postgres-deps hub-deps
	$(BIN)/python -m scripts.team_demo --port $(TEAM_PORT) --root $(DEMO_DIR)/team --hub-root $(DEMO_DIR)/hub

test: install browser-deps postgres-deps hub-deps
	$(MAKE) check-lint test-js test-python

test-python:
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(MAKE) check-lint

check-lint:
	$(BIN)/ruff check mistudio_jupyter tests benchmarks scripts
	$(BIN)/ruff format --check mistudio_jupyter tests benchmarks scripts
	@[ -d node_modules ] || npm ci --no-audit --no-fund
	npm run lint

# The views' fixtures must be valid answers by the server's OpenAPI document (tests/js_contract.py).
test-js:
	@[ -d node_modules ] || npm ci --no-audit --no-fund
	npm test
	$(BIN)/python -m tests.js_contract

bench: install postgres-deps hub-deps
	$(BIN)/pip install -q -e ".[test,bench,postgres]"
	@command -v aria2c >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq aria2 >/dev/null)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR) node_modules
