# Every target creates .venv if missing and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint format generate docs data bench-overhead bench-large-vocab clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned to the CPU wheel that the package index serves locally.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[bench,dev]"
	touch $(STAMP)

# Ray is only needed for the slow backend-equivalence test and --backend ray.
RAY_STAMP := $(VENV)/.installed-ray
$(RAY_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[bench,dev,ray]"
	touch $(RAY_STAMP)

# The main job: the demo benchmark grid (digits + vowel, 3 corruptions, 6 losses, 2 seeds)
# and its report.
demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The docs site and the integration examples; torch is named so that installing them
# keeps the pinned CPU wheel.
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[bench,dev,docs]" torch==2.13.0
	touch $(DOCS_STAMP)

INTEGRATIONS_STAMP := $(VENV)/.installed-integrations
$(INTEGRATIONS_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[bench,dev,integrations]" torch==2.13.0
	touch $(INTEGRATIONS_STAMP)

# Also the slow tests: the integration examples and the strict docs build.
test-all: $(RAY_STAMP) $(DOCS_STAMP) $(INTEGRATIONS_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "slow or not slow"

data: $(STAMP)
	bash scripts/fetch_data.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src/losslab

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate what the registry generates: the loss tables, family pages and type stubs.
generate: $(STAMP)
	$(BIN)/python scripts/gen_loss_table.py
	$(BIN)/python scripts/gen_stubs.py

# The docs site, built offline in strict mode into site/ (open site/index.html, or
# serve it with `python -m http.server -d site` for the search box).
docs: generate $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench-overhead: $(STAMP)
	$(BIN)/python benchmarks/loss_overhead.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
