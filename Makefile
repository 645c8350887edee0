# Everything runs from .venv in the repository root; the first target that needs it creates it.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000
# The fast lane: every test that starts no server, browser or database server (tests/conftest.py marks them).
FAST_LANE := not live and not postgres and not browser

.PHONY: install run test test-fast bench lint conformance clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	CIVICMESH_ENDPOINT_ALLOW=$${CIVICMESH_ENDPOINT_ALLOW-127.0.0.1} $(VENV)/bin/civicmesh serve --host $(HOST) --port $(PORT) --demo

test: $(STAMP)
	$(VENV)/bin/pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "$(FAST_LANE)"

bench: $(STAMP)
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

conformance: $(STAMP)
	bash scripts/conformance.sh

clean:
	rm -rf $(VENV) civicmesh-data .pytest_cache
