# mobile-lr: the two commands of the README are `make demo` and `make test`.
# Each creates .venv when missing and installs the project into it.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mobile-lr-installed

.PHONY: demo test lint pytest kotlin-test kotlin-deps bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build; an unpinned spec may pull CUDA wheels.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mobile-lr demo

test: $(STAMP) lint pytest kotlin-test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/python -m pytest tests mobile_lr

kotlin-deps:
	@bash android-demo/core/scripts/ensure-deps.sh

kotlin-test: $(STAMP) kotlin-deps
	@bash android-demo/core/scripts/test.sh $(BIN)/python

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) android-demo/core/build
