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

DEMO_DIR ?= runs/demo

# Until the `townlet-train demo` subcommand lands, the main job is the most complete pipeline:
# scripted demonstrations in the town -> behaviour cloning -> PPO fine-tuning from the BC
# checkpoint -> telemetry validation. Everything lands in $(DEMO_DIR).
demo: venv
	$(BIN)/townlet-train capture --agents 8 --ticks 300 --seed 0 --out $(DEMO_DIR)/capture
	$(BIN)/townlet-train bc --manifest $(DEMO_DIR)/capture/rollout_sample_manifest.json \
		--epochs 5 --seed 0 --out $(DEMO_DIR)/bc
	$(BIN)/townlet-train ppo --capture-dir $(DEMO_DIR)/capture --init $(DEMO_DIR)/bc/checkpoint.pt \
		--epochs 3 --seed 0 --log $(DEMO_DIR)/ppo/telemetry.jsonl --out $(DEMO_DIR)/ppo
	$(BIN)/townlet-train telemetry validate $(DEMO_DIR)/ppo/telemetry.jsonl --format human

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
