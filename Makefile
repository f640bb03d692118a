# corrlib: set-up, figures, tests.
#
#   make figures   create .venv if needed, install, re-run every notebook and its figures
#   make test      create .venv if needed, install, run the unit tests and the notebook checks
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

.PHONY: all install figures test test-unit test-notebooks lint format bench clean distclean help

all: test

help:
	@sed -n '3,6p' Makefile

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

test: test-unit test-notebooks

test-unit: $(STAMP)
	$(PY) -m pytest tests

# nbval runs every notebook top to bottom and compares the outputs of cells marked
# "# NBVAL_CHECK_OUTPUT". Exit status 5 means no notebooks were collected: not an error.
test-notebooks: $(STAMP)
	@if [ ! -d notebooks ]; then echo "no notebooks/ folder"; exit 0; fi; \
	rc=0; $(PY) -m pytest --nbval-lax notebooks/ \
		--ignore-glob='notebooks/*.failed.ipynb' --ignore-glob='notebooks/.*' || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no notebooks collected"; rc=0; fi; exit $$rc

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	@set -e; found=0; for f in benchmarks/*.py; do \
		[ -e "$$f" ] || continue; found=1; echo "== $$f"; $(PY) "$$f"; \
	done; [ $$found -eq 1 ] || echo "no benchmarks in benchmarks/"

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	rm -f notebooks/*.failed.ipynb notebooks/.*.running-*.ipynb
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
