# Set-up is part of every target: a fresh clone needs only `make test` or `make demo`.
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PYTHON ?= python3
# No test or demo may reach a model hub or W&B's servers.
OFFLINE := HF_HUB_OFFLINE=1 WANDB_MODE=offline

.PHONY: install test lint demo bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(INSTALLED)

test: $(INSTALLED)
	$(OFFLINE) $(PY) -m pytest -q --durations=25

lint: $(INSTALLED)
	$(PY) -m ruff check bob tests benchmarks main.py

demo: $(INSTALLED)
	$(OFFLINE) $(PY) -m bob.toyworld.demo

bench: $(INSTALLED)
	$(OFFLINE) $(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
