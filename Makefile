# Two commands for a newcomer: `make demo` (main job) and `make test` (whole suite).
# Both install what they need into .venv first, pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast system-packages protos deploy-files schema bench reliability audit sweep clean

BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf

# setup.py and the C source too: the install compiles the prediction sets' kernel, so an edit to it reinstalls.
$(STAMP): pyproject.toml constraints.txt setup.py src/candor/server/core/_ranked_sets.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Byte-compiled at install, as pip does by default: with PYTHONDONTWRITEBYTECODE set (as on this project's CI
	# machine) nothing compiled later is kept, and every process would compile torch's modules again.
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,server,cpu,dev]'
	touch $(STAMP)

# buf (the protobuf linter) ships as an npm package with its binary inside.
$(BUF):
	npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION)

# Test oracles (netcal), without their dependency trees: see tests/oracles.txt.
ORACLES := $(VENV)/.oracles
$(ORACLES): $(STAMP) tests/oracles.txt
	$(BIN)/pip install --quiet --no-deps -r tests/oracles.txt
	touch $(ORACLES)

install: $(STAMP) $(BUF)

# Regenerate src/candor/v1 and src/candor/kserve from protos/ (a test fails when they disagree).
protos: $(STAMP)
	$(BIN)/python protos/codegen.py

# Regenerate docs/manifest.schema.json, the JSON Schema of candor.json, from the manifest's
# dataclasses (a test fails when it is stale).
schema: $(STAMP)
	$(BIN)/python docs/render.py

# Regenerate the dashboard JSON and the Kubernetes ConfigMap/PrometheusRule derived
# from it and from deploy/prometheus/alerts.yml (a test fails when they are stale).
deploy-files: $(STAMP)
	$(BIN)/python deploy/render.py

# The main job: train the digits model if models/ has none (label smoothing,
# temperature scaling, ONNX export, report), serve it, predict through the
# SDK, print calibrated probabilities and the metrics that moved, stop.
demo: $(STAMP)
	$(BIN)/candor demo --model-repository models --model digits

# Raw onnxruntime, a bare gRPC echo server, a bare model server (grpc.aio + onnxruntime) and Candor
# (candor.v1 and KServe, 1 to 4,096 rows), the cost of the prediction log and drift, batching, --workers 1/2/auto,
# py-spy profiles, then the fleet store (PostgreSQL prediction log vs SQLite, feedback joined through another
# replica), then one large predict split by the SDK (1 vs 4 requests in flight), then Predict with prediction sets
# against without; writes docs/benchmarks.md
# (about 15 minutes). benchmarks/gpu_check.py is for a machine with a GPU (see docs/benchmarks.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/fleet.py
	$(BIN)/python benchmarks/split_calls.py
	$(BIN)/python benchmarks/prediction_sets.py

# Bad inputs, fault tests, a peak-load soak with memory and bounds; writes docs/reliability.md (about 8 minutes).
reliability: $(STAMP)
	$(BIN)/python benchmarks/reliability.py

# Known vulnerabilities in the pinned versions (needs pypi.org's per-release JSON API or
# OSV; neither answers from the project's CI machine, see README "Reliability").
audit: $(STAMP)
	$(BIN)/pip install --quiet pip-audit==2.10.1
	$(BIN)/pip-audit --requirement constraints.txt --no-deps --disable-pip --strict

# The suite runs on pytest-xdist workers: one per CPU, and at least 3, since about a third of its time is
# spent waiting on child servers, Prometheus scrapes and deadlines (docs/development.md has the timings).
TEST_WORKERS ?= $(shell n=$$(nproc); [ $$n -gt 3 ] && echo $$n || echo 3)

test: system-packages $(STAMP) $(ORACLES) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=20

# Debian's prometheus, docker-compose, postgresql and npm, for the tests that run them (apt-get, as root or with sudo).
system-packages:
	bash .ci/system-packages

# The quick loop while working: lint, layers, and every test not marked slow (no child-process servers).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow"

sweep: $(STAMP)
	$(BIN)/candor sweep --dataset digits --output runs/sweep-digits

clean:
	rm -rf $(VENV) .tools models runs .pytest_cache
