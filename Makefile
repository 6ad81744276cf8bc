# The two set-up commands of README.md: `make book` and `make test`.
# Both create .venv at the repository root (Python 3.11+) and install everything into it.
PROFILE ?= quick
FORCE ?= 0
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test notebooks clean-book benchmark lab

$(STAMP): pyproject.toml book/lab/overrides.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[test,book]"
	@# JupyterLab opens notebooks/*.md as notebooks (jupytext) and saves them back as text
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	cp book/lab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $@

book: $(STAMP)
	$(PY) -m mixer_lib.book --profile $(PROFILE) $(if $(filter 1,$(FORCE)),--force,)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb notebooks/*.md

benchmark: $(STAMP)
	$(PY) benchmarks/throughput.py --preset cpu-small

clean-book:
	rm -rf book/_build book/chapters book/_mathjax
