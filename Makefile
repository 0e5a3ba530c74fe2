# One-command set-up: `make demo` and `make test` install the Debian packages their group needs
# (scripts/system-deps) and create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SYSTEM_DEPS := scripts/system-deps

.PHONY: demo test bench-setup lint clean

# Checked before the Python environment, so a missing package stops the command at once.
system-deps-%:
	$(SYSTEM_DEPS) $*

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so pip takes the local CPU build instead of a CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,tune,bench]'
	# Only the CLIP BPE vocabulary file is used; its torchvision dependency is not.
	$(BIN)/pip install --quiet --no-deps open_clip_torch==3.3.0
	touch $(STAMP)

# `make demo DEMO_ARGS=--quick` for the 2-minute smoke version the test suite runs.
demo: system-deps-demo $(STAMP)
	$(BIN)/edgeclip demo $(DEMO_ARGS)

test: system-deps-test $(STAMP)
	$(BIN)/python -m pytest -q -rs

# What the scripts in bench/ need beyond the Python environment (the OpenVINO peers too).
bench-setup: system-deps-bench $(STAMP)
	$(BIN)/pip install --quiet -e '.[peers]'

lint: $(STAMP)
	$(BIN)/ruff check edgeclip training targets schedules tests bench

clean:
	rm -rf $(VENV) build *.egg-info
