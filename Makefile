# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp

.PHONY: run test lint bench mutation clean

# `make run` needs the package alone; the tests, linters and benchmarks also need the test extras.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

# Set up, initialise the embedded deployment if the data dir is new (`demo` runs `init` then),
# ingest the bundled sample orders, print a masked summary, then serve the HTTPS API on
# https://127.0.0.1:8443 until Ctrl-C (the web console at https://127.0.0.1:8443/console).
run: $(STAMP)
	$(BIN)/sagevault demo
	$(BIN)/sagevault serve --init --host 127.0.0.1 --port 8443

# The whole suite, on SQLite and on PostgreSQL (127.0.0.1:5432; required when CI=true). The console's
# browser tests drive Debian's chromium (installed here if missing; Playwright never downloads a browser).
test: $(TEST_STAMP)
	command -v chromium || (apt-get update -q && apt-get install -y -q chromium)
	$(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Mutation testing of the security checks ([tool.mutmut] in pyproject.toml; docs/mutation.md).
mutation: $(TEST_STAMP)
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

bench: $(TEST_STAMP)
	$(BIN)/python bench/ingest.py --orders 20000
	$(BIN)/python bench/shred.py
	$(BIN)/python bench/audit.py --events 20000
	$(BIN)/python bench/detect.py --events 50000
	$(BIN)/python bench/incidents.py --incidents 2000
	$(BIN)/python bench/deletion.py
	$(BIN)/python bench/authz.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) var .pytest_cache mutants
