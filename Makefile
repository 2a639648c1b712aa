# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact, hashed pins of every dependency (scripts/lock writes them from pyproject.toml).
LOCK := requirements/dev.txt
SRC := $(wildcard taxi tests bench)

.PHONY: run createsuperuser test check format bench schema contract clean lock upgrade

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "taxi needs Python 3.11+"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	$(BIN)/python scripts/check-lock
	touch $(STAMP)

# Re-pin after changing pyproject.toml's dependencies (keeps the other pins).
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	bash scripts/lock

# Move every pin to the newest release the ranges allow.
upgrade:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	UPGRADE=1 bash scripts/lock

# `make run PORT=9000 HOST=0.0.0.0` (or the same in the environment).
HOST ?= 127.0.0.1
PORT ?= 8000

run: $(STAMP)
	$(BIN)/taxi migrate
	$(BIN)/taxi serve --host $(HOST) --port $(PORT)

# `make createsuperuser` asks for a name and a password (twice); any `taxi` command runs
# as `.venv/bin/taxi COMMAND` (see `.venv/bin/taxi --help`).
createsuperuser: $(STAMP)
	$(BIN)/taxi migrate
	$(BIN)/taxi createsuperuser

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/vulture --min-confidence 80 $(SRC) scripts/readme_files.py

format: $(STAMP)
	$(BIN)/ruff check --fix $(SRC)
	$(BIN)/ruff format $(SRC)

schema: $(STAMP)
	$(BIN)/taxi print-schema > schema.graphql

contract:
	cp ../shared/api/schema.graphql ../shared/api/dispatch.graphql ../shared/api/rides.graphql ../shared/api/PROTOCOL.md api/

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) taxi.db media .pytest_cache .mypy_cache .ruff_cache
