# One entry point for a fresh machine: `make quickstart` (the main job) and `make test` (the test suite).
# Both create .venv and install what they need: torch first (the CPU build, pinned so pip never pulls a CUDA one),
# then sora_hf with its dev extra.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PYTEST_WORKERS ?= 2

.PHONY: setup test quickstart lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) OMP_NUM_THREADS=1 \
		$(PY) -m pytest -q -n $(PYTEST_WORKERS) --durations=15

quickstart: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/sora-hf quickstart --output-dir runs/quickstart

lint: setup
	$(VENV)/bin/ruff check sora_hf tests benchmarks
	$(VENV)/bin/ruff format --check sora_hf tests benchmarks

clean:
	rm -rf $(VENV) runs
