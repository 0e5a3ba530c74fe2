# One-command set-up: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so pip takes the local CPU build instead of a CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,tune,bench]'
	# Only the CLIP BPE vocabulary file is used; its torchvision dependency is not.
	$(BIN)/pip install --quiet --no-deps open_clip_torch==3.3.0
	touch $(STAMP)

# `make demo DEMO_ARGS=--quick` for the 3-minute smoke version the test suite runs.
demo: $(STAMP)
	$(BIN)/edgeclip demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs

lint: $(STAMP)
	$(BIN)/ruff check edgeclip training targets schedules tests bench

clean:
	rm -rf $(VENV) build *.egg-info
