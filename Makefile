# `make demo` and `make test` each do all set-up (virtual environment, install) on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow install clean

# The demo needs the core dependencies only; the tests need the extras too (dev).
$(BIN)/.installed-core: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $@

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(BIN)/.installed-core $@

install: $(BIN)/.installed

# Train the CPU demo, then score its newest run on the held-out puzzles next to the baselines.
demo: $(BIN)/.installed-core
	PYTHONUNBUFFERED=1 $(BIN)/hrm train
	$(BIN)/hrm eval "$$(ls -td runs/*/ | head -n 1)" --report "$$(ls -td runs/*/ | head -n 1)report"

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs data
