# The two commands: `make run` and `make test`. Both create/refresh .venv first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
REDIS_PORT ?= 6379
API_PORT ?= 8000
OPS_PORT ?= 9000
FLOWER_PORT ?= 5555
RUN_DIR := .run

# pyproject.toml pins Python 3.11. PYTHON: python3.11 on PATH, else python3 if it is 3.11.
is_311 = $(or $(1),false) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
ifndef PYTHON
PYTHON := $(shell for p in python3.11 python3; do $(call is_311,$$p) && command -v $$p && break; done)
endif
NEEDS := needs Python 3.11 (pyproject.toml requires-python >=3.11,<3.12); install python3.11 or run make PYTHON=/path/to/python3.11

.PHONY: run test venv train bench bench-backlog bench-fairness bench-webhooks bench-budget bench-models bench-auth bench-bombs \
	bench-flower bench-failover openapi-check clean \
	base-images images compose-check

venv: $(STAMP)

# A .venv made by another Python is stale whatever its stamp says: rebuild it.
ifneq ($(shell $(call is_311,$(PY)) && echo ok),ok)
.PHONY: $(STAMP)
endif
$(STAMP): pyproject.toml constraints.txt
	@$(call is_311,$(PY)) || { $(call is_311,$(PYTHON)) || { echo "make: $(NEEDS)" >&2; exit 1; }; \
		echo "creating $(VENV) with $(PYTHON)"; rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	@echo "installing the pinned dependencies into $(VENV) (the first time: a few minutes, ~1.5 GB with TensorFlow)"
	@set -o pipefail; $(PY) -m pip install --disable-pip-version-check -c constraints.txt -e '.[dev]' 2>&1 \
		| awk '/^Collecting /{n++; printf "\r  %d packages found", n; fflush()} \
			/^Installing collected/{printf "\n  installing ...\n"; fflush()} \
			/^Successfully installed/{printf "  done: %d packages installed\n", NF-2} \
			/^(ERROR|error:)/{print; err=1} END{if (n) print ""}'
	touch $@

# Redis, an inference worker, a webhook worker, the API (its ops port, /metrics and /queue, on
# 127.0.0.1:$(OPS_PORT)) and Flower under one supervisor (devstack/stack.py, the same command
# lines the tests use): a child that dies is restarted; Ctrl-C stops the services, then Redis.
# The environment (WEBHOOK_SECRET, ...) passes through.
run: $(STAMP)
	$(PY) -m devstack.stack --redis-port $(REDIS_PORT) --api-port $(API_PORT) --ops-port $(OPS_PORT) \
		--flower-port $(FLOWER_PORT) --run-dir $(RUN_DIR)

# The suite runs TEST_PROCESSES test files at a time (pytest-xdist); TEST_PROCESSES=0 runs it in one.
TEST_PROCESSES ?= 2
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q -n $(TEST_PROCESSES) --dist loadfile

# Retrain the default model (the committed artifact is what `make run` serves).
train: $(STAMP)
	$(PY) -m models.train_digits

# Throughput, latency, batching and CPU per job, side by side in one run (benchmarks/run.py);
# ARGS=--peers adds Ray Serve serving the same model (pip install -c constraints.txt -e '.[peers]').
bench: $(STAMP)
	$(PY) -m benchmarks.run $(ARGS)

# The OpenAPI document against the live API (Redis, a worker, the API), every Schemathesis
# check, thousands of cases: `make test`'s tests/api/test_openapi.py with a bigger budget.
OPENAPI_EXAMPLES ?= 1000
OPENAPI_SEED ?= 20
openapi-check: $(STAMP)
	OPENAPI_CHECK_EXAMPLES=$(OPENAPI_EXAMPLES) OPENAPI_CHECK_SEED=$(OPENAPI_SEED) \
		$(PY) -m pytest -q -s tests/api/test_openapi.py::test_schemathesis_finds_nothing

# The slowest execution of every Redis command the project sends, with 1,000,000 jobs queued.
bench-backlog: $(STAMP)
	$(PY) -m benchmarks.backlog $(ARGS)

# Fair share and priority lanes: key A's flood of the CNN model while key B submits one job a
# second; B's latency alone, with fair share off (FIFO), on, and on with B's jobs high.
bench-fairness: $(STAMP)
	$(PY) -m benchmarks.fairness $(ARGS)

# Webhook fairness: key B's delivery delay alone, then while key A's receiver hangs at 10
# deliveries a second, with the per-key bounds and breaker and without them.
bench-webhooks: $(STAMP)
	$(PY) -m benchmarks.webhook_fairness $(ARGS)

# The per-key record budget: key A's cached submissions with hanging webhooks at its full rate
# while key B submits steadily; Redis' memory and A's records every 10 s (ARGS="--minutes 2").
bench-budget: $(STAMP)
	$(PY) -m benchmarks.budget $(ARGS)

# Model thrash: key B's latency alone and while key A alternates two loadable versions; the
# worker's on-demand loads against A's switches (benchmarks/model_thrash.py).
bench-models: $(STAMP)
	$(PY) -m benchmarks.model_thrash $(ARGS)

# What the front door costs per job and where it goes: API CPU ms per digits job, Redis commands
# per job by command, and (ARGS=--profile) py-spy's breakdown of the API process under 64 clients;
# ARGS="--upload multipart" for forms, "--api-workers 2" for two uvicorn processes.
.PHONY: bench-api
bench-api: $(STAMP)
	$(PY) -m benchmarks.api_cost $(ARGS)

# What API keys and the rate limit cost per POST /jobs: AUTH_DISABLED vs keys, side by side.
bench-auth: $(STAMP)
	$(PY) -m benchmarks.auth $(ARGS)

# 32 concurrent decompression bombs (40 Mpx, then just under MAX_IMAGE_PIXELS) against a real
# API: its RSS stays under 300 MB and GET /healthz answers within 100 ms (exit 1 if not).
bench-bombs: $(STAMP)
	$(PY) -m benchmarks.bombs $(ARGS)

# 32 concurrent unauthenticated 60 MB uploads against a real API: 401 before the body, so its RSS
# and TMPDIR stay flat and GET /healthz answers within 100 ms (exit 1 if not).
.PHONY: bench-door
bench-door: $(STAMP)
	$(PY) -m benchmarks.door $(ARGS)

# Flower's memory through a soak of 50,000 jobs' task events: it levels off once Flower holds
# its --max_tasks (ARGS="--max-tasks 100000" for Flower's own default, to compare).
bench-flower: $(STAMP)
	$(PY) -m benchmarks.flower_soak $(ARGS)

# Redis Sentinel failover under load: a primary, a replica, three Sentinels on loopback; the
# cost of REDIS_MIN_REPLICAS_ACKED=1 (WAIT) per job, then 2,000 jobs at concurrency 32 with the
# primary SIGKILLed, with the option and without: recovery time, 503s, lost jobs (README: High availability).
bench-failover: $(STAMP)
	$(PY) -m benchmarks.failover $(ARGS)

# Containers (tests/containers/): podman where installed (its settings in
# tests/containers/containers.conf), else docker. base-images: stand-ins for the FROM images
# (python:3.11-slim, redis:7.4-alpine) built from Debian's packages with mmdebstrap, for
# machines that reach no registry. images: the API and CPU worker images from the real
# Dockerfiles. compose-check: docker-compose.yml up for real, used from the host, torn down.
base-images: $(STAMP)
	$(PY) -m tests.containers.base_images $(ARGS)

images: $(STAMP)
	$(PY) -m tests.containers.images $(ARGS)

compose-check: $(STAMP)
	$(PY) -m tests.containers.compose_check $(ARGS)

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache .mypy_cache .ruff_cache
