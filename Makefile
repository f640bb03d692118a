# corrlib: set-up, figures, tests.
#
#   make figures   create .venv if needed, install, re-run every notebook and its figures
#   make test      create .venv if needed, install, lint, unit tests, every notebook (quick)
#   make test-record  nbval: re-run the committed notebooks at the paper's parameters
#   make lab       JupyterLab on a copy of the notebooks in runs/lab/ (docs/workspace.md)
#
# Only python3 (>= 3.10) and make are needed; everything else is installed into .venv.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS := notebooks,dev

# Resolve Jupyter kernelspecs (the "python3" kernel used by papermill and nbval) from the
# environment first, so that a user-level kernelspec cannot point the notebooks at another Python.
export JUPYTER_PREFER_ENV_PATH := 1
export PYTHONHASHSEED := 0

# Extra arguments for `make figures`, e.g. make figures ARGS="--only 01 --profile quick"
ARGS ?=

# The test suite writes nothing under the repository: its notebooks, figures, run workspace,
# Hypothesis database and bytecode go to a temporary folder (TEST_TMP, removed afterwards).
TEST_ENV = CORRLIB_RUNS_DIR="$$TEST_TMP/runs" CORRLIB_FIGURES_DIR="$$TEST_TMP/figures" \
	HYPOTHESIS_STORAGE_DIRECTORY="$$TEST_TMP/hypothesis" PYTHONDONTWRITEBYTECODE=1
PYTEST = $(PY) -m pytest -p no:cacheprovider

# $(call unchanged,NAME,COMMAND): run COMMAND, print its time, and fail if it changed the work
# tree (git status --porcelain before and after) or failed.
unchanged = before="$$(git status --porcelain 2>/dev/null)"; start=$$(date +%s); \
	$(2); rc=$$?; \
	after="$$(git status --porcelain 2>/dev/null)"; \
	echo "make $(1): $$(( $$(date +%s) - start )) s"; \
	if [ "$$before" != "$$after" ]; then \
		echo "make $(1) changed the work tree (git status --porcelain before / after):"; \
		printf '%s\n--- after ---\n%s\n' "$$before" "$$after"; exit 1; \
	fi; exit $$rc

.PHONY: all install figures lab test test-parts test-unit test-notebooks test-record test-nbval \
	test-nbval-first test-nbval-rest \
	lint format \
	bench clean distclean help

all: test

help:
	@sed -n '3,8p' Makefile

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package metadata changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP)

figures: $(STAMP)
	$(PY) -m corrlib.reproduce $(ARGS)

# JupyterLab on a workspace copy of the notebooks (runs/lab/notebooks/, copied once; delete it to
# start again from the committed ones): saving or autosaving never touches notebooks/, and the
# figures go to runs/lab/figures/.
lab: $(STAMP)
	@mkdir -p runs/lab/notebooks
	@for f in notebooks/[0-9][0-9]_*.ipynb; do \
		[ -e "runs/lab/$$f" ] || cp "$$f" "runs/lab/$$f"; done
	CORRLIB_RUNS_DIR="$(CURDIR)/runs" CORRLIB_RUN_NAME=lab $(VENV)/bin/jupyter lab runs/lab/notebooks/

# lint, then the unit tests and the notebook tests side by side (two cores), then a check that
# nothing in the work tree changed (git status before and after). The committed record's own
# consistency (manifest, hashes, notebook sources) is a unit test (tests/test_record.py); that
# its numbers are what the notebooks compute at the paper's parameters is test-record (nbval,
# as long as make figures), which .ci/run runs after make test.
test: $(STAMP)
	@$(call unchanged,test,$(MAKE) --no-print-directory lint && \
	$(MAKE) --no-print-directory -j2 --output-sync=target test-parts)

test-parts: test-unit test-notebooks

# Unit tests and the doctests of corrlib/ (testpaths in pyproject.toml), without the notebooks.
test-unit: $(STAMP)
	@TEST_TMP=$$(mktemp -d); trap 'rm -rf "$$TEST_TMP"' EXIT; \
	$(TEST_ENV) $(PYTEST) --ignore=tests/test_notebooks.py

# Every notebook at its quick profile under pytest and papermill (tests/test_notebooks.py).
test-notebooks: $(STAMP)
	@TEST_TMP=$$(mktemp -d); trap 'rm -rf "$$TEST_TMP"' EXIT; \
	$(TEST_ENV) $(PYTEST) tests/test_notebooks.py

# nbval of the committed notebooks: each runs top to bottom at the paper's parameters and the
# outputs of the cells marked "# NBVAL_CHECK_OUTPUT" must match. Figures go to TEST_TMP; the
# work tree must be unchanged afterwards.
test-record: $(STAMP)
	@$(call unchanged,test-record,$(MAKE) --no-print-directory -j2 --output-sync=target test-nbval)

# Two halves side by side (two cores): the notebooks of NBVAL_FIRST (about half the paper run's
# time, from pytest --durations), and every other notebook, so that a new notebook is never left out.
NBVAL_FIRST := 02_relu_exact 11_hierarchy 04_variance_correction 03_four_point
NBVAL = TEST_TMP=$$(mktemp -d); trap 'rm -rf "$$TEST_TMP"' EXIT; \
	$(TEST_ENV) $(PYTEST) --nbval-lax --ignore-glob='notebooks/*.failed.ipynb' \
	--ignore-glob='notebooks/.*'

test-nbval: test-nbval-first test-nbval-rest

test-nbval-first: $(STAMP)
	@$(NBVAL) $(NBVAL_FIRST:%=notebooks/%.ipynb)

test-nbval-rest: $(STAMP)
	@$(NBVAL) notebooks/ $(NBVAL_FIRST:%=--ignore=notebooks/%.ipynb)

lint: $(STAMP)
	$(PY) -m ruff check --no-cache .
	$(PY) -m ruff format --check --no-cache .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	@set -e; found=0; for f in benchmarks/*.py; do \
		[ -e "$$f" ] || continue; found=1; echo "== $$f"; $(PY) "$$f"; \
	done; [ $$found -eq 1 ] || echo "no benchmarks in benchmarks/"

# runs/ holds your experiments and is not touched here; remove it yourself when done.
clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	rm -f notebooks/*.failed.ipynb notebooks/.*.running-*.ipynb
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
