# liid: `make all` runs the whole pipeline on the embedded demo; `make test` runs the tests.
# Targets are the stages' manifests, so a second `make all` skips what is unchanged.

PYTHON ?= python3
VENV := .venv
LIID := $(VENV)/bin/liid
RUN ?= runs/demo
DATA ?= data/demo
PROFILE ?= demo
STAGE_ARGS := --run $(RUN) --profile $(PROFILE)
STAMP := $(VENV)/.installed

.PHONY: all test help env clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

env: $(STAMP)  ## Create .venv and install liid with its test extras.

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@touch $@

test: $(STAMP)  ## Run the test suite (every stage end to end on a tiny demo set).
	$(VENV)/bin/python -m pytest -q

all: $(DATA)/index_train.json  ## Run every stage on the demo data set into runs/demo.

$(DATA)/index_train.json: | $(STAMP)
	$(LIID) data demo --out $(DATA)

clean:  ## Remove runs/ and the generated demo data (keeps .venv).
	rm -rf runs $(DATA)
