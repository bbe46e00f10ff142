# The verbs a user types. Everything a target needs is installed by the targets themselves:
# Python tools go into the project-local virtualenv .venv (pinned in requirements-dev.txt).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    := .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed
CARGO   ?= cargo

.PHONY: help venv run demo test test-faults test-storm smoke emulator-check iam-check deploy-check lint fmt-check clippy template-lint bench bench-cpu bench-release bench-cold-start bench-requests bench-throughput bench-events bench-archiver fuzz package deploy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# pip lists each package as it goes; the banner says how long the whole takes.
$(STAMP): requirements-dev.txt
	@echo "== Installing the Python tools into $(VENV) (moto, cfn-lint, SAM CLI, AWS CLI, parliament," >&2
	@echo "== duckdb, sqlglot; pinned in requirements-dev.txt): about 2 minutes the first time" >&2
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --progress-bar off --upgrade pip
	$(VENV)/bin/pip install --progress-bar off -r requirements-dev.txt
	touch $@

venv: $(STAMP) ## Create .venv: the emulator, SAM CLI, AWS CLI and the lint and lake tools

# The harness crate (dev/) runs the shipped handlers; `-p` keeps its extra features out of
# the shipped crate's own builds.
DEV := -p pns-cdr-dev

# Cargo shows its own progress; the banner says what the silence-free wait is for.
BUILD_NOTE := @echo "== Building pns-local (the first build takes about 3 minutes on two cores)" >&2

# The ports the local stack listens on; the fake recording host takes EMULATOR_PORT + 1.
WEBHOOK_PORT  ?= 3000
EMULATOR_PORT ?= 4566

run: $(STAMP) ## Run the whole system locally (WEBHOOK_PORT=3000 EMULATOR_PORT=4566; Ctrl-C stops it)
	$(BUILD_NOTE)
	$(CARGO) run $(DEV) --bin pns-local -- run --webhook-port $(WEBHOOK_PORT) --emulator-port $(EMULATOR_PORT)

demo: $(STAMP) ## Start a stack on free ports, push the samples in events/, show what landed, stop
	$(BUILD_NOTE)
	$(CARGO) run $(DEV) --bin pns-local -- demo

test: $(STAMP) fmt-check clippy template-lint emulator-check deploy-check ## Everything CI checks
	@# Benches run once each as a smoke test, first, so the test summary closes the log.
	$(CARGO) test --workspace --benches
	@# The tests run the shipped pnsctl binary, which Cargo builds for its own package only.
	$(CARGO) build --workspace --bins
	@# The emulator writes down who called what while the tests run; iam-check holds that
	@# against the roles template.yaml grants.
	rm -rf $(IAM) && mkdir -p $(IAM)
	PNS_IAM_OBSERVATIONS=$(CURDIR)/$(IAM)/calls.jsonl PNS_IAM_RESOURCES=$(CURDIR)/$(IAM)/resources.jsonl \
	  $(CARGO) test --workspace --lib --tests
	$(MAKE) --no-print-directory iam-check

IAM       := target/iam
IAM_CHECK := $(VENV)/bin/python dev/scripts/iam_check.py --observations $(IAM)/calls.jsonl \
  --resources $(IAM)/resources.jsonl --report $(IAM)/report.json

# Every AWS call the functions made in the tests is granted by their roles, and every grant is
# used or reviewed (dev/iam/reviewed.yaml); the self-test shows the check failing when it must.
iam-check: $(STAMP) ## Hold the calls the last `make test` observed against the template's IAM roles
	@[[ -s $(IAM)/calls.jsonl ]] || { echo "no observations in $(IAM): run make test" >&2; exit 1; }
	$(IAM_CHECK)
	$(IAM_CHECK) --self-test

# The deployer's policy covers every resource type of the template, and only that; make deploy's
# preflight fails as it should. Both offline, with their self-tests.
deploy-check: $(STAMP) ## Hold docs/iam/deployer-policy.json to the template; self-test the deploy preflight
	$(VENV)/bin/python dev/scripts/deployer_check.py --template template.yaml --policy docs/iam/deployer-policy.json
	$(VENV)/bin/python dev/scripts/deployer_check.py --template template.yaml --policy docs/iam/deployer-policy.json --self-test
	$(VENV)/bin/python dev/scripts/preflight.py --self-test

# dev/scripts/emulator.py patches moto's SQS model; this proves the patch keeps moto's answers.
emulator-check: $(STAMP) ## Prove dev/scripts/emulator.py's patch keeps moto's answers
	$(VENV)/bin/python dev/scripts/check_emulator_patch.py

fmt-check: ## cargo fmt --check
	$(CARGO) fmt --all -- --check

clippy: ## cargo clippy on every target, warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

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

# The fault matrix at 10x the load `make test` gives it, and a million hostile inputs.
test-faults: $(STAMP) ## Fault matrix (10x load) + 1 000 000 hostile inputs; prints each verdict
	PNS_FAULTS_SCALE=10 $(CARGO) test $(DEV) --test it -- faults:: --nocapture
	PNS_HOSTILE_CASES=1000000 $(CARGO) test -p pns-cdr --test it -- hostile:: --nocapture

# STACK=<name>: a deployed stack, found by its outputs. Without it, the local stack `make run`
# serves in another terminal (this target starts none).
smoke: ## Prove a stack end to end: canary pushes, stored, evented; STACK=<name> for a deployed one (else the ports of make run)
	@if [[ -n "$${STACK:-}" ]]; then \
	  $(CARGO) run -p pnsctl -- --stack "$$STACK" smoke; \
	else \
	  AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-http://127.0.0.1:$(EMULATOR_PORT)} \
	  PNS_WEBHOOK_URL=$${PNS_WEBHOOK_URL:-http://127.0.0.1:$(WEBHOOK_PORT)/pns/call-result} \
	  $(CARGO) run -p pnsctl -- smoke; \
	fi

# The retry storm after a 55-minute outage at the template's default throttle, at the peak
# rate docs/capacity.md says it absorbs; prints one verdict line, fails if a push is lost.
test-storm: ## The retry storm after a 55-min outage at the default throttle (docs/capacity.md)
	$(CARGO) run $(DEV) --bin pns-sim -- storm --rate 3.2 --outage-minutes 55 --minute 4s

FUZZ_TIME  ?= 60
CARGO_FUZZ := $(CURDIR)/.tools/bin/cargo-fuzz

$(CARGO_FUZZ):
	$(CARGO) install --root .tools cargo-fuzz --locked

# Not part of `make test`. The machine's toolchain is stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz
# pass its nightly-only flags (sanitizer, coverage instrumentation).
fuzz: $(CARGO_FUZZ) ## Coverage-guided fuzzing of the push parser and the URL policy (FUZZ_TIME s each)
	mkdir -p fuzz/corpus/parse_push fuzz/corpus/url_policy
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) run parse_push corpus/parse_push ../events/bodies -- -max_total_time=$(FUZZ_TIME)
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) run url_policy corpus/url_policy -- -max_total_time=$(FUZZ_TIME)

bench: bench-cpu bench-cold-start bench-requests bench-throughput bench-events bench-archiver ## All benchmarks (figures go to BENCHMARKS.md)

bench-cpu: ## Webhook CPU per push and publisher CPU per record against serde_json parsing; fails past 8x
	$(CARGO) bench --bench cpu

# The release builds every whole-process measurement uses (LTO: several minutes on 2 cores).
# Two commands: the functions are built exactly as they ship, without the harness's features.
bench-release: ## The release builds the whole-process benchmarks use
	$(CARGO) build --release --bin webhook --bin archiver --bin publisher
	$(CARGO) build --release $(DEV) --bin pns-local --bin pns-bench

bench-cold-start: $(STAMP) bench-release ## Release webhook/archiver/publisher: start to first answer, peak RSS (20 starts)
	target/release/pns-bench cold-start --runs 20

bench-requests: $(STAMP) bench-release ## AWS requests per push, counted at the emulator
	target/release/pns-bench requests

bench-throughput: $(STAMP) bench-release ## 10 000 pushes (30% duplicates, 32 concurrent) vs the emulator's raw rate
	target/release/pns-bench throughput --pushes 10000 --duplicates 0.3 --concurrency 32

bench-events: $(STAMP) bench-release ## Events/s: stream -> publisher -> bus locally, beside the emulator's raw PutEvents rate
	target/release/pns-bench events --count 2000

bench-archiver: $(STAMP) bench-release ## Archiver MB/s and peak RSS at 10/100/500 MiB vs download floors
	dev/scripts/bench-archiver.sh

PKG_VENV  := .venv-package
PKG_STAMP := $(PKG_VENV)/.installed
LAMBDAS   := webhook archiver reconciler publisher pretraffic

$(PKG_STAMP): requirements-package.txt
	@echo "== Installing cargo-lambda and Zig into $(PKG_VENV) (requirements-package.txt): about a minute" >&2
	$(PYTHON) -m venv $(PKG_VENV)
	$(PKG_VENV)/bin/pip install --progress-bar off -r requirements-package.txt
	touch $@

package: $(PKG_STAMP) ## Build the arm64 Lambda zips (target/lambda/<function>/bootstrap.zip) and print their sizes
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(PKG_VENV)/bin:$$PATH" $(CARGO) lambda build --release --arm64 --output-format zip \
	  $(addprefix --bin ,$(LAMBDAS))
	@for f in $(LAMBDAS); do \
	  printf '%-12s %8s bytes  target/lambda/%s/bootstrap.zip\n' $$f "$$(stat -c %s target/lambda/$$f/bootstrap.zip)" $$f; \
	done

# SAM_ENV: the samconfig.toml section the answers of --guided go to (see docs/deploy.md).
SAM_ENV ?= default

# The preflight stops in seconds what sam deploy would refuse half-way: no credentials, no
# region, too little Lambda concurrency for the template's reservations.
deploy: $(STAMP) ## Preflight (credentials, region, concurrency), sam build, sam deploy --guided (SAM_ENV=default)
	$(VENV)/bin/python dev/scripts/preflight.py --config-env $(SAM_ENV)
	$(MAKE) --no-print-directory $(PKG_STAMP)
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(PKG_VENV)/bin:$$PATH" $(VENV)/bin/sam build --beta-features
	$(VENV)/bin/sam deploy --guided --config-env $(SAM_ENV)

clean: ## Remove build output and the virtualenvs
	$(CARGO) clean
	rm -rf $(VENV) $(PKG_VENV)
