# The two set-up commands of README.md: `make book` and `make test`.
# Both create .venv at the repository root (Python 3.11+) and install everything into it.
PROFILE ?= quick
FORCE ?= 0
GPUS ?= 1
ALLOW_MISSING ?= 0
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test notebooks clean-book benchmark lab preflight

$(STAMP): pyproject.toml book/lab/overrides.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[test,book]"
	@# JupyterLab opens notebooks/*.md as notebooks (jupytext) and saves them back as text
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	cp book/lab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $@

# PROFILE=paper starts with the preflight (exit status 2, nothing trained, when anything is
# missing; ALLOW_MISSING=1 builds what is ready); GPUS=N runs each fine-tuning on N GPUs.
book: $(STAMP)
	$(PY) -m mixer_lib.book --profile $(PROFILE) --gpus $(GPUS) \
	    $(if $(filter 1,$(FORCE)),--force,) $(if $(filter 1,$(ALLOW_MISSING)),--allow-missing,)

preflight: $(STAMP)
	$(PY) -m mixer_lib.preflight --profile $(if $(filter quick,$(PROFILE)),paper,$(PROFILE)) \
	    --gpus $(GPUS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# as root (many containers) JupyterLab refuses to start without --allow-root
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb notebooks/*.md

benchmark: $(STAMP)
	$(PY) benchmarks/throughput.py --preset cpu-small

clean-book:
	rm -rf book/_build book/chapters book/_mathjax
