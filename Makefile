# make run: set up (first time) and run the default HR experiment.  make test: set up (with the gguf extra: llama.cpp,
# built once), lint and run every test (CI).  make test-fast: the tests without the end-to-end CLI runs
# (-m 'not slow').  make lint: ruff's lint and format checks.
# make pipeline: the RLHF pipeline (SFT -> reward model -> DPO and online RL, compared) under outputs/pipeline/.
# Extra arguments go to the command: make run ARGS="strategy=dora quant=4bit"; make test-fast ARGS=-x.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test test-fast lint pipeline clean

# The stamp is rebuilt when pyproject.toml changes. torch==2.13.0 is installed first so pip takes the CPU wheel
# lying on this kind of machine; on a GPU machine install your CUDA torch into .venv first and it is kept.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import ftlab, torch, trl, peft, hydra" && touch $@

# llama.cpp for the GGUF export and its tests, not for `make run`: pip builds llama-cpp-python from source (about 5
# minutes on 2 cores) once and keeps the wheel in its cache, so a later install on the machine takes seconds. Without
# the multimodal library (LLAVA_BUILD=OFF), which ftlab does not use: a fifth less to compile.
$(VENV)/.gguf: $(VENV)/.installed
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $(CMAKE_ARGS)" $(BIN)/pip install -q -e ".[gguf]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import llama_cpp, sentencepiece" && touch $@

run: $(VENV)/.installed
	$(BIN)/python -m ftlab experiment=hr_bot $(ARGS)

test: lint $(VENV)/.gguf
	@bash .ci/install-browser || echo "make test: no chromium could be installed: the demo's browser test will skip"
	$(BIN)/python -m pytest $(ARGS)

# While iterating: the end-to-end CLI runs (and the browser the demo's needs) are left to make test.
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

# `$(BIN)/ruff check --fix . && $(BIN)/ruff format .` makes the changes these checks ask for.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Each stage is a run whose directory the next one names.
pipeline: $(VENV)/.installed
	set -e; D=outputs/pipeline/$$(date +%Y-%m-%d_%H-%M-%S); \
	$(BIN)/python -m ftlab experiment=hr_bot hydra.run.dir=$$D/1_sft $(ARGS); \
	$(BIN)/python -m ftlab experiment=pipeline_reward model.path=$$D/1_sft hydra.run.dir=$$D/2_reward $(ARGS); \
	$(BIN)/python -m ftlab sweep=pipeline_compare model.path=$$D/1_sft eval.reward_model=$$D/2_reward \
		hydra.sweep.dir=$$D/3_compare $(ARGS); \
	echo "pipeline: $$D (comparison: $$D/3_compare/report/report.md)"

clean:
	rm -rf $(VENV) outputs wandb .pytest_cache
