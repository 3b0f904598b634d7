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
	$(PIP) install --disable-pip-version-check -q -e ".[dev]"
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

lint: install
	$(PYTHON) -m ruff check negmine tests scripts

clean:
	rm -rf .make runs build *.egg-info .pytest_cache .ruff_cache
