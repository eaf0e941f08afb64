# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Set up, initialise the embedded deployment if the data dir is new (`demo` runs `init` then),
# ingest the bundled sample orders, print a masked summary, then serve the HTTPS API on
# https://127.0.0.1:8443 until Ctrl-C.
run: $(STAMP)
	$(BIN)/sagevault demo
	$(BIN)/sagevault serve --init --host 127.0.0.1 --port 8443

# The whole suite, on SQLite and on PostgreSQL (127.0.0.1:5432; required when CI=true).
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/ingest.py --orders 20000
	$(BIN)/python bench/shred.py
	$(BIN)/python bench/audit.py --events 20000
	$(BIN)/python bench/authz.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) var .pytest_cache
