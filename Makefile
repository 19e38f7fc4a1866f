# The two commands a new user needs (see README):
#   make demo   set everything up, then run the main job
#   make test   set everything up, then run the tests
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data

.PHONY: setup demo test lint results clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,bench,dev]"
	touch $@

# Main job: train the default multilingual model with 20% of each corpus' speakers held out,
# then score those unseen speakers.
demo: setup
	$(PY) main.py train --config configs/train/default.yaml

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

# Regenerates docs/results.md (about an hour on 2 cores).
results: setup
	$(PY) tools/make_results.py --data $(DATA) --out docs/results.md

clean:
	rm -rf $(VENV) .cache runs
