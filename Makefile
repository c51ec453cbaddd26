# mobile-lr: the two commands of the README are `make demo` and `make test`.
# Each creates .venv when missing and installs the project into it: every extra (`.[all,dev]`)
# at the versions the project tests (constraints.txt). docs/INSTALL.md: the extras, sizes, times.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mobile-lr-installed
# The core install alone (numpy, no torch), made fresh by every `make test`.
CORE_VENV := .venv-core
WHEEL_DIR := build/wheel

.PHONY: demo test lint pytest core-test kotlin-test kotlin-deps browser-deps bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, alone, at its pin: the CPU build; resolved with the rest it may pull CUDA wheels.
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mobile-lr demo

test: $(STAMP) lint pytest core-test kotlin-test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The report's browser test needs Chromium: installed when missing, and required (not skipped).
# Two workers (pytest-xdist) on the two cores CI has; a module's tests stay on one worker, in
# order, so its bundles are built once (tests/conftest.py, docs/DECISIONS.md). The log ends with the
# 25 slowest tests: where the suite's time goes, for keeping it well under 15 minutes.
pytest: $(STAMP) browser-deps
	MOBILE_LR_REQUIRE_CHROMIUM=1 $(BIN)/python -m pytest -n 2 --dist loadgroup --durations=25 tests mobile_lr

browser-deps:
	@bash tests/ensure-chromium.sh

# The wheel of `pip install mobile-lr` in a fresh venv with numpy and pytest only: the `core`
# tests run against the installed package (the console script keeps the source tree off sys.path).
core-test: $(STAMP)
	rm -rf $(CORE_VENV) $(WHEEL_DIR)
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w $(WHEEL_DIR) .
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install -q -c constraints.txt $(WHEEL_DIR)/mobile_lr-*.whl pytest hypothesis
	cd $(WHEEL_DIR) && ../../$(CORE_VENV)/bin/python -c "import importlib.util as u, mobile_lr; \
	assert u.find_spec('torch') is None, 'torch is importable'; assert 'site-packages' in mobile_lr.__file__"
	$(CORE_VENV)/bin/pytest --core -q tests

kotlin-deps:
	@bash android-demo/core/scripts/ensure-deps.sh

kotlin-test: $(STAMP) kotlin-deps
	@bash android-demo/core/scripts/test.sh $(BIN)/python

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(CORE_VENV) build android-demo/core/build
