# make run: set up (first time) and run the default HR experiment.  make test: set up and run the tests.
# make pipeline: the RLHF pipeline (SFT -> reward model -> DPO and online RL, compared) under outputs/pipeline/.
# Extra arguments go to the command: make run ARGS="strategy=dora quant=4bit"; make test ARGS="-m 'not slow'".
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test pipeline clean

# The stamp is rebuilt when pyproject.toml changes. torch==2.13.0 is installed first so pip takes the CPU wheel
# lying on this kind of machine; on a GPU machine install your CUDA torch into .venv first and it is kept.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import ftlab, torch, trl, peft, hydra" && touch $@

run: $(VENV)/.installed
	$(BIN)/python -m ftlab experiment=hr_bot $(ARGS)

test: $(VENV)/.installed
	@bash .ci/install-browser || echo "make test: no chromium could be installed: the demo's browser test will skip"
	$(BIN)/python -m pytest $(ARGS)

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
