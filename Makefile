# The same commands CI runs. `make run` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint system-deps venv clean bench-edge

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "scanroute needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

# Private PostgreSQL and Redis need their server binaries unless DATABASE_URL and REDIS_URL are given.
system-deps:
	@if [ -z "$$DATABASE_URL" ] || [ -z "$$REDIS_URL" ]; then \
		$(PYTHON) -m shared.embedded check 2>/dev/null || { \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
				echo "installing PostgreSQL and Redis server binaries with apt-get"; \
				apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server; \
			else \
				$(PYTHON) -m shared.embedded check; exit 1; \
			fi; \
		}; \
	fi

run: system-deps venv
	$(VENV)/bin/scanroute up

test: system-deps venv
	$(PY) -m pytest -n 2 --timeout 180

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Edge throughput/latency as ratios to a bare uvicorn 302 (BENCHMARKS.md). The script runs on CPU 1 so the
# private PostgreSQL and Redis it starts share that CPU with wrk; the server under test gets CPU 0.
bench-edge: system-deps venv
	flock /tmp/scanroute-bench.lock taskset -c 1 $(PY) -m loadtests.bench_edge $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .scanroute .mypy_cache .ruff_cache .pytest_cache
