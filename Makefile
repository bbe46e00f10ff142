# The verbs a user types. Everything a target needs is installed by the targets themselves:
# Python tools go into the project-local virtualenv .venv (pinned in requirements-dev.txt).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    := .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed
CARGO   ?= cargo

.PHONY: help venv run demo test lint fmt-check clippy unit template-lint bench bench-webhook bench-archiver package deploy clean

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
	@# Benches run once each as a smoke test, first, so the test summary closes the log.
	$(CARGO) test --benches
	$(CARGO) test --lib --bins --tests

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

# Offline, no AWS credentials: sam validate --lint only runs cfn-lint (telemetry off), and
# checkov neither downloads its mappings nor scans packages. checkov pins boto3==1.35.49 and
# aws-sam-cli pins boto3==1.43.108, so checkov gets a venv of its own, .venv/checkov,
# installed from the `# checkov-venv:` pin in requirements-dev.txt.
template-lint: $(STAMP) ## Lint template.yaml: cfn-lint, sam validate --lint, checkov
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint --template template.yaml --region us-east-1
	@pin=$$(sed -n 's/^# checkov-venv: *//p' requirements-dev.txt); \
	  [[ -n "$$pin" ]] || { echo "requirements-dev.txt: no '# checkov-venv:' pin" >&2; exit 1; }; \
	  if [[ ! -f "$(VENV)/checkov/.installed-$$pin" ]]; then \
	    rm -rf $(VENV)/checkov && $(PYTHON) -m venv $(VENV)/checkov && \
	    $(VENV)/checkov/bin/pip install --quiet "$$pin" && touch "$(VENV)/checkov/.installed-$$pin"; \
	  fi
	BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false $(VENV)/checkov/bin/checkov \
	  -f template.yaml --framework cloudformation --quiet --compact --skip-download

lint: fmt-check clippy template-lint ## fmt, clippy and the template lint

bench: bench-webhook bench-archiver ## All benchmarks (figures go to BENCHMARKS.md)

bench-webhook: ## Criterion: webhook CPU per push against serde_json parsing of the same body
	$(CARGO) bench --bench webhook

bench-archiver: $(STAMP) ## Peak RSS and time of one archiver copy per size (whole process, release build)
	$(CARGO) build --release --quiet --bin pns-local
	scripts/bench-archiver.sh

PKG_VENV  := .venv-package
PKG_STAMP := $(PKG_VENV)/.installed
LAMBDAS   := webhook archiver reconciler

$(PKG_STAMP): requirements-package.txt
	$(PYTHON) -m venv $(PKG_VENV)
	$(PKG_VENV)/bin/pip install --quiet -r requirements-package.txt
	touch $@

package: $(PKG_STAMP) ## Build the arm64 Lambda zips (target/lambda/<function>/bootstrap.zip) and print their sizes
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(PKG_VENV)/bin:$$PATH" $(CARGO) lambda build --release --arm64 --output-format zip \
	  $(addprefix --bin ,$(LAMBDAS))
	@for f in $(LAMBDAS); do \
	  printf '%-12s %8s bytes  target/lambda/%s/bootstrap.zip\n' $$f "$$(stat -c %s target/lambda/$$f/bootstrap.zip)" $$f; \
	done

deploy: $(STAMP) $(PKG_STAMP) ## sam build (cargo-lambda from .venv-package) + sam deploy --guided
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(PKG_VENV)/bin:$$PATH" $(VENV)/bin/sam build --beta-features
	$(VENV)/bin/sam deploy --guided

clean: ## Remove build output and the virtualenvs
	$(CARGO) clean
	rm -rf $(VENV) $(PKG_VENV)
