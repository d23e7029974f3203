# speechlab: `make train` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup train test lint format clean dashboards

# The venv is rebuilt only when pyproject.toml changes, so a second `make` is quick.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

train: setup
	$(BIN)/python train.py $(ARGS)

# The MLflow UI's server: the full mlflow package at exactly the version of the mlflow-skinny that
# writes the runs (an older UI refuses a store written by a newer one). TensorBoard comes with `setup`.
dashboards: setup
	$(BIN)/python -m pip install --quiet "mlflow==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("mlflow-skinny"))')"

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks train.py evaluate.py
	$(BIN)/ruff format --check src tests benchmarks train.py evaluate.py
	$(BIN)/lint-imports  # the import contracts in pyproject.toml: layers, no circles

format: setup
	$(BIN)/ruff check --fix src tests benchmarks train.py evaluate.py
	$(BIN)/ruff format src tests benchmarks train.py evaluate.py

clean:
	rm -rf $(VENV) logs .pytest_cache
