# The verbs a user types. Everything a target needs is installed by the targets themselves:
# Python tools go into the project-local virtualenv .venv (pinned in requirements-dev.txt).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    := .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed
CARGO   ?= cargo

.PHONY: help venv run demo test lint fmt-check clippy unit template-lint bench-archiver clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(STAMP) ## Create .venv with the pinned emulator (moto) and cfn-lint

run: $(STAMP) ## Run the whole system locally on the embedded AWS emulator (Ctrl-C stops it)
	$(CARGO) run --quiet --bin pns-local -- run

demo: $(STAMP) ## Start the stack, push the samples in events/, show what landed, stop
	$(CARGO) run --quiet --bin pns-local -- demo

test: $(STAMP) fmt-check clippy template-lint ## Everything CI checks
	$(CARGO) test --all-targets

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

template-lint: $(STAMP) ## Lint template.yaml with cfn-lint
	$(VENV)/bin/cfn-lint template.yaml

lint: fmt-check clippy template-lint ## fmt, clippy and the template lint

bench-archiver: $(STAMP) ## Peak RSS and time of one archiver copy per size (whole process, release build)
	$(CARGO) build --release --quiet --bin pns-local
	scripts/bench-archiver.sh

clean: ## Remove build output and the virtualenv
	$(CARGO) clean
	rm -rf $(VENV)
