# Every target creates .venv if missing and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint format docs data bench-overhead clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned to the CPU wheel that the package index serves locally.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[bench,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/noisy_digits.py

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: $(STAMP)
	$(BIN)/python scripts/gen_loss_table.py

bench-overhead: $(STAMP)
	$(BIN)/python benchmarks/loss_overhead.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
