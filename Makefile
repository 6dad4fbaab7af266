# Segment Dashboard — the two commands a person needs:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ADDR   ?= 127.0.0.1:8000

.PHONY: run test lint install install-test clean secret-key

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make run: install, migrate, create a first admin, serve on http://$(ADDR) (Ctrl-C or SIGTERM stops
## everything). With no LD_API_TOKEN it asks for the built-in sandbox (LD_SANDBOX=1) and says so; every
## other entry point refuses to start without a token. `exec`: a SIGTERM that make passes on (a container
## runtime or a service manager stopping `make run`) reaches rundashboard, which stops its children.
run: install secret-key
	@if [ -z "$$LD_API_TOKEN" ] && [ -z "$$LD_SANDBOX" ]; then \
		echo "No LD_API_TOKEN set: make run starts the built-in LaunchDarkly sandbox (LD_SANDBOX=1)."; \
		echo "Nothing reaches LaunchDarkly. Set LD_API_TOKEN to use your account (README: Using a real LaunchDarkly account)."; \
	fi
	exec env SECRET_KEY="$${SECRET_KEY:-$$(cat var/secret_key)}" \
		LD_SANDBOX="$${LD_SANDBOX:-$$(test -n "$$LD_API_TOKEN" || echo 1)}" \
		$(PY) manage.py rundashboard --addr $(ADDR)

## make secret-key: var/secret_key, made once; var/ and the key are readable by their owner only.
secret-key: | $(PY)
	@mkdir -p var && chmod 700 var
	@test -s var/secret_key || (umask 077 && $(PY) -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key)
	@chmod 600 var/secret_key

## make chromium: Debian's Chromium for the browser tests (tests/browser/), installed when missing and run
## as root; otherwise those tests are skipped with the reason (a failure in CI).
.PHONY: chromium
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's chromium for the browser tests."; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
			echo "Could not install chromium: the browser tests will be skipped (a failure in CI)."; \
		else \
			echo "No /usr/bin/chromium and not root: the browser tests will be skipped (as root: apt-get install chromium)."; \
		fi; \
	fi

## make test: lint, the whole suite on SQLite (browser tests included), then the PostgreSQL pass (needs
## POSTGRES_TEST_URL; the browser tests run once, in the SQLite pass).
test: install-test chromium
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	DATABASE_URL="sqlite:///$(CURDIR)/var/test.sqlite3" $(PY) -m pytest -m "not postgres"
	@if [ -n "$$POSTGRES_TEST_URL" ]; then \
		echo "PostgreSQL pass: the whole suite on $$POSTGRES_TEST_URL"; \
		DATABASE_URL="$$POSTGRES_TEST_URL" $(PY) -m pytest -m "not browser"; \
	else \
		echo "POSTGRES_TEST_URL is not set: PostgreSQL tests are skipped (see README)."; \
		$(PY) -m pytest -m postgres; \
	fi

lint: install-test
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache

## make bench: the benchmarks (not part of make test), each against a baseline measured in the same run:
## upload path (100k/1M/3M keys), validation, polling under 200 viewers, history on SQLite and PostgreSQL
## (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test), the impact preview (3M x 3M keys),
## and what an idle import worker costs.
## Figures go in bench/RESULTS.md.
.PHONY: bench
bench: install-test
	@status=0; for script in upload_path validation polling history compare send_check idle_worker; do \
		echo "=== bench/$$script.py"; \
		timeout 1500 $(PY) bench/$$script.py || { echo "bench/$$script.py failed"; status=1; }; \
	done; exit $$status
