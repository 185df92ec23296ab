# make run: set up (first time) and run the default HR experiment.  make test: set up and run the tests.
# Extra arguments go to the command: make run ARGS="strategy=dora quant=4bit"; make test ARGS="-m 'not slow'".
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test clean

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
	$(BIN)/python -m pytest $(ARGS)

clean:
	rm -rf $(VENV) outputs wandb .pytest_cache
