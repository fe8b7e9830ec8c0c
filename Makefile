# Two commands for a newcomer: `make demo` (main job) and `make test` (whole suite).
# Both install what they need into .venv first, pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint sweep clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

# Train on the embedded digits data with label smoothing, fit the temperature,
# export models/digits/<version>/ and print the calibration report.
demo: $(STAMP)
	$(BIN)/candor train --dataset digits --smoothing uniform --epsilon 0.1 --model-repository models --name digits

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

sweep: $(STAMP)
	$(BIN)/candor sweep --dataset digits --output runs/sweep-digits

clean:
	rm -rf $(VENV) models runs .pytest_cache
