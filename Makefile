# The same commands CI runs. `make run` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-browser browser-deps lint fuzz-api bench-api bench-dashboard bench-edge bench-edge-instructions bench-freshness bench-render bench-ingest bench-export loadtest loadtest-ci loadtest-faults load-deps system-deps venv clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "scanroute needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

# $(call debian-package,COMMAND,PACKAGE,WHY): when COMMAND is missing, install PACKAGE with apt-get (as root on
# Debian/Ubuntu), else stop and say WHY and what to install.
debian-package = @command -v $(1) >/dev/null 2>&1 || { \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(2) with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2); \
	else \
		echo "$(3) (apt-get install $(2))"; exit 1; \
	fi; \
}

# A private PostgreSQL (Redis) needs its server binaries unless DATABASE_URL (REDIS_URL) is given: `scanroute up`
# and the test suite start only the servers whose URL is not set.
system-deps:
	@if [ -z "$$DATABASE_URL" ] || [ -z "$$REDIS_URL" ]; then \
		$(PYTHON) -m shared.embedded check 2>/dev/null || { \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
				packages=""; [ -n "$$DATABASE_URL" ] || packages=postgresql; [ -n "$$REDIS_URL" ] || packages="$$packages redis-server"; \
				echo "installing server binaries with apt-get: $$packages"; \
				apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$packages; \
			else \
				$(PYTHON) -m shared.embedded check; exit 1; \
			fi; \
		}; \
	fi

run: system-deps venv
	$(VENV)/bin/scanroute up

test: system-deps venv
	$(PY) -m pytest -n 2 --timeout 180

# The dashboard in a real browser: Playwright drives Debian's Chromium. Browsers are never downloaded
# (`playwright install` is not used); screenshots land in artifacts/screenshots/.
browser-deps: venv
	$(call debian-package,chromium,chromium,make test-browser needs Chromium at /usr/bin/chromium)
	@$(PY) -c 'import playwright' 2>/dev/null || $(PY) -m pip install --quiet -e ".[dev,browser]"

test-browser: system-deps browser-deps
	$(PY) -m pytest -m browser tests/browser --timeout 300

# schemathesis against /openapi.json: no 5xx, responses match the schema, errors are problem+json.
fuzz-api: system-deps venv
	$(PY) -m tests.fuzz_api

# Control-plane budgets: mint 1,000 codes, group PATCH with 10 vs 10,000 codes.
bench-api: system-deps venv
	flock /tmp/scanroute-bench.lock $(PY) -m loadtests.bench_api

load-deps: venv
	@$(PY) -c 'import locust, psutil, granian, pyinstrument' 2>/dev/null || $(PY) -m pip install --quiet -e ".[dev,load]"

# A printed campaign at volume, accounted scan by scan: exits non-zero on any failed (5xx, timeout), lost,
# duplicated, wrong-outcome or stale scan. Knobs: LOAD_USERS, LOAD_PROCESSES, LOAD_DURATION, LOAD_CODES, …
# (docs/loadtests.md).
loadtest: system-deps load-deps
	flock /tmp/scanroute-bench.lock $(PY) -m loadtests.run_loadtest

# The same scenario, short, so that it cannot rot (run by CI).
# No grace window: with read-your-writes (docs/freshness.md) a scan after a write's 2xx must see it.
LOAD_GRACE ?= 0
LOADTEST_CI := LOAD_USERS=8 LOAD_SPAWN_RATE=8 LOAD_DURATION=8s LOAD_CODES=500 LOAD_ADMIN_WAIT=0.5 LOAD_GRACE=$(LOAD_GRACE)
loadtest-ci: system-deps load-deps
	$(LOADTEST_CI) $(PY) -m loadtests.run_loadtest

# The accounting must catch a broken edge: each fault must fail the load test, with the scans it broke named.
loadtest-faults: system-deps load-deps
	@for case in 503:200:failed duplicate:200:duplicated drop:200:lost; do \
		fault=$${case%:*}; kind=$${case##*:}; echo "== broken edge: $$fault (must report $$kind scans)"; \
		if $(LOADTEST_CI) LOAD_FAULT=$$fault $(PY) -m loadtests.run_loadtest > /tmp/scanroute-fault.log 2>&1; then \
			cat /tmp/scanroute-fault.log; echo "the load test passed although the edge was broken"; exit 1; fi; \
		grep -E "^  $$kind " /tmp/scanroute-fault.log > /tmp/scanroute-fault.named || \
			{ cat /tmp/scanroute-fault.log; echo "no $$kind scan was named"; exit 1; }; head -2 /tmp/scanroute-fault.named; \
	done

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Read-your-writes (docs/freshness.md): write p99 with 0/1/2/4 edges idle and saturated, one edge frozen;
# edge throughput with the mechanism on vs off, both loaded at once. Edges on CPU 0, the rest on CPU 1.
bench-freshness: system-deps venv
	flock /tmp/scanroute-bench.lock taskset -c 1 $(PY) -m loadtests.bench_freshness $(BENCH_ARGS)

# Dashboard pages rendered server-side: groups list (1,000 groups), codes list (100,000 codes), analytics of a
# code with 1M scans; p95 against the API's JSON for the same data, and page weight.
bench-dashboard: system-deps venv
	flock /tmp/scanroute-bench.lock $(PY) -m loadtests.bench_dashboard $(BENCH_ARGS)

# Render costs (SVG/PNG/WebP, scannability check, cached hits); one benchmark at a time on a shared machine.
bench-render: system-deps venv
	flock /tmp/scanroute-bench.lock $(PY) -m loadtests.bench_render

# The ingest worker vs a bare COPY of the same rows, one vs two workers, lag, analytics on 1,000,000 scans.
bench-ingest: system-deps venv
	flock /tmp/scanroute-bench.lock $(PY) -m loadtests.bench_ingest

# Print at volume: 10,000-code PDF sheets and zips, a 10,000-row import, 1,000,000 scans as CSV, with the job
# worker's peak memory (docs/exports.md).
bench-export: system-deps venv
	flock /tmp/scanroute-bench.lock $(PY) -m loadtests.bench_export

# Edge throughput/latency as ratios to a bare uvicorn 302 (BENCHMARKS.md); latency at 80 % with an open-loop
# client in C, built with the machine's cc. The script runs on CPU 1 so the
# private PostgreSQL and Redis it starts share that CPU with wrk; the server under test gets CPU 0.
bench-edge: system-deps load-deps
	$(call debian-package,cc,gcc,make bench-edge needs a C compiler for loadtests/fixed_rate.c)
	flock /tmp/scanroute-bench.lock taskset -c 1 $(PY) -m loadtests.bench_edge $(BENCH_ARGS)

# User-space instructions per request (valgrind's callgrind), edge (a) against bare uvicorn: repeatable where
# wall time and CPU time are not (BENCHMARKS.md, 2026-11-30 "edge-cpu"). Kernel work is not counted.
bench-edge-instructions: system-deps load-deps
	$(call debian-package,valgrind,valgrind,make bench-edge-instructions needs valgrind)
	flock /tmp/scanroute-bench.lock taskset -c 1 $(PY) -m loadtests.instructions $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .scanroute .mypy_cache .ruff_cache .pytest_cache

.PHONY: chaos chaos-ci
# Faults under `scanroute up` with a scan load (kill -9 of each process kind, edge processes stopped,
# Redis paused and restarted, PostgreSQL stopped 30 s, the journal's disk full): prints a table, exits
# non-zero on any lost, duplicated or stale scan (RELIABILITY.md). Loopback only, bounded (~15 min).
chaos: system-deps venv
	$(PY) -m loadtests.chaos

# The same scenarios, scaled down so that they cannot rot (run by CI, ~3 min).
chaos-ci: system-deps venv
	CHAOS_SECONDS=6 CHAOS_DRAIN=60 CHAOS_KILL_SCANS=30000 CHAOS_KILL_EVERY=2 CHAOS_PG_OUTAGE=6 \
	CHAOS_REDIS_DOWN=2 $(PY) -m loadtests.chaos
