# The two commands a newcomer needs: `make demo` (the main job) and `make test` (all checks).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv demo test lint typecheck pytest bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[torch,dev,plot]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: venv
	$(BIN)/townlet-train demo

lint: venv
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools

typecheck: venv
	$(BIN)/mypy --strict src

pytest: venv
	$(BIN)/python -m pytest --typeguard-packages=townlet $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
