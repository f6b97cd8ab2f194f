# The two commands a newcomer needs: `make demo` (the main job) and `make test` (all checks).
# The interpreter that creates .venv: PYTHON=... if given, else the first of python3,
# python3.13, python3.12, python3.11 that is Python >= 3.11 (townlet's requires-python).
PY_CANDIDATES := python3 python3.13 python3.12 python3.11
PY_OK := import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PYTHON ?= $(firstword $(foreach p,$(PY_CANDIDATES),$(shell command -v $(p) >/dev/null 2>&1 && $(p) -c '$(PY_OK)' >/dev/null 2>&1 && echo $(p))))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv demo test lint typecheck pytest bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || test -n "$(PYTHON)" || { echo "make: no Python >= 3.11 found (tried $(PY_CANDIDATES)); install one or run make PYTHON=/path/to/python3.X" >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -c '$(PY_OK)' || { echo "make: PYTHON=$(PYTHON) is $$($(PYTHON) -V 2>&1); townlet needs Python >= 3.11" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[torch,dev,plot,fast]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

DEMO_DIR ?= runs/demo

# The main job: scripted demonstrations in the town -> behaviour cloning to its plateau ->
# anneal to PPO on fresh rollouts -> random, plateau BC, final and scripted policies evaluated
# on the same held-out episodes -> promotion decision, for run seeds 0, 1, 2 in parallel
# processes (each in $(DEMO_DIR)/seed_<k>; the comparison in $(DEMO_DIR)/summary.json and
# training.png). DEMO_ARGS=--quick for the short version, DEMO_ARGS="--seed 0" for one seed.
# A finished $(DEMO_DIR) is moved aside to $(DEMO_DIR).prev so that every `make demo` is a
# fresh, comparable run.
demo: venv
	rm -rf $(DEMO_DIR).prev && if [ -d $(DEMO_DIR) ]; then mv $(DEMO_DIR) $(DEMO_DIR).prev; fi
	$(BIN)/townlet-train demo --out $(DEMO_DIR) $(DEMO_ARGS)

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
