# The two commands a new user needs (see README):
#   make demo   set everything up, then run the main job
#   make test   set everything up, then run the tests
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data

.PHONY: setup demo test lint results clean

setup: $(VENV)/.installed

# The big install (torch, Ray, ...: several GB) shows pip's progress, one line per package.
$(VENV)/.installed: pyproject.toml
	@echo "setup: creating $(VENV)"
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "setup: installing edge-ser with the train, bench, dev, plot and ray extras" \
		"(several GB; a few minutes)"
	$(PY) -m pip install --progress-bar on -e ".[train,bench,dev,plot,ray]"
	@echo "setup: resemblyzer's pretrained GE2E weights for the multigate family (no dependencies)"
	$(PY) -m pip install --quiet --no-deps resemblyzer==0.1.4
	@echo "setup: done"
	touch $@

# Main job: stream the bundled demo conversation (EMO-DB turns by two speakers the default
# model never heard) through the bundled model, tags beside the known labels.
demo: setup
	$(PY) main.py stream edge_ser/demo/conversation.flac \
		--labels edge_ser/demo/conversation.labels.csv

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

# Regenerates docs/results.md under docs/protocol.md (about a day on 2 cores; resumable).
results: setup
	$(PY) -m tools.make_results --data $(DATA) --out docs/results.md

clean:
	rm -rf $(VENV) .venv-runtime .cache runs
