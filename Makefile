# The two commands a newcomer needs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python
BOOTSTRAP_VERSION := 5.3.9
PG_BIN ?= /usr/lib/postgresql/15/bin
# The interpreter that creates the virtualenv: pyenv's pinned one (.python-version) if
# pyenv is there, else a python3.13 or python3.12 on the PATH.
BASE_PYTHON ?= $(shell pyenv which python 2>/dev/null || command -v python3.13 || command -v python3.12 || command -v python3)

# Tests need a secret key because debug is off in them, as in production.
TEST_ENV := DJANGO_SECRET_KEY=insecure-key-for-tests-only DJANGO_DEBUG=0

.PHONY: help run serve test lint test-deps bench vendor clean nginx

help:
	@echo "make run    start the site on http://127.0.0.1:$(PORT)/ (SQLite, demo content)"
	@echo "make test   lint, then the whole test suite on SQLite and PostgreSQL, browser tests included"
	@echo "make serve  the production stack locally: nginx, gunicorn and workers, debug off (needs DJANGO_SECRET_KEY)"
	@echo "make bench  speed and memory, measured side by side; writes bench/results.json"

# What the site needs, for `make run` and `make serve`; the tests add their tool-chain.
$(VENV)/.installed: pyproject.toml
	@$(BASE_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12))' || \
		{ echo "Python 3.12 or newer is needed; found $(BASE_PYTHON). See .python-version."; exit 1; }
	test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet ".[dev]"
	touch $@

# The development server and one background worker beside it (it checks the documents
# families send and sends the emails); Ctrl+C stops both.
run: $(VENV)/.installed
	DJANGO_DEBUG=1 $(PY) manage.py migrate --noinput
	DJANGO_DEBUG=1 $(PY) manage.py loaddata fixtures/guides.json
	DJANGO_DEBUG=1 SITE_URL=http://127.0.0.1:$(PORT) $(PY) manage.py load_demo
	@echo
	@echo "CancerFax Guides is running at http://127.0.0.1:$(PORT)/  (Ctrl+C stops it)"
	@echo "Coordinators' admin: http://127.0.0.1:$(PORT)/admin/ (demo account above)"
	@echo
	@trap 'kill 0' EXIT; export DJANGO_DEBUG=1 SITE_URL=http://127.0.0.1:$(PORT); \
		$(PY) manage.py worker --verbosity 0 & \
		$(PY) manage.py runserver 127.0.0.1:$(PORT)

# The production stack, locally: debug off, static files collected and served by whitenoise,
# nginx in front of gunicorn (it takes slow uploads whole before a worker sees them), and
# WORKERS background workers. Ctrl+C, or any of them ending, stops them all.
RUN_DIR = $(or $(DATA_DIR),var)/run
WORKERS ?= 2
serve: $(VENV)/.installed nginx
	@test -n "$$DJANGO_SECRET_KEY" || { echo "Set DJANGO_SECRET_KEY first (see docs/deployment.md)."; exit 1; }
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	@mkdir -p $(RUN_DIR) && chmod 700 $(RUN_DIR) && rm -f $(RUN_DIR)/gunicorn.sock
	@sed -e 's|@RUN@|$(abspath $(RUN_DIR))|g' -e 's|@LISTEN@|$(or $(HOST),127.0.0.1):$(PORT)|' \
		-e 's|@MAX_BODY@|$(NGINX_MAX_BODY)m|' -e 's|@USER@|$(NGINX_USER)|' \
		nginx.conf > $(RUN_DIR)/nginx.conf
	@echo "CancerFax Guides (production stack) on http://$(or $(HOST),127.0.0.1):$(PORT)/"
	@trap 'kill 0' EXIT; export SITE_URL=$${SITE_URL:-http://$(or $(HOST),127.0.0.1):$(PORT)}; \
		for n in $$(seq $(WORKERS)); do $(PY) manage.py worker & done; \
		GUNICORN_BIND=unix:$(abspath $(RUN_DIR))/gunicorn.sock $(VENV)/bin/gunicorn \
			cancerfax.wsgi:application -c gunicorn.conf.py & \
		$(NGINX) -p $(abspath $(RUN_DIR)) -c nginx.conf -e stderr & \
		wait -n

# As root, nginx's own processes would otherwise become nobody, who may not enter the
# private data folder where its buffers and gunicorn's socket are.
NGINX_USER := $(if $(filter 0,$(shell id -u)),user root;,)
NGINX = $(or $(shell command -v nginx 2>/dev/null),/usr/sbin/nginx)
NGINX_MAX_BODY = $(shell echo $$(( 2 * $(or $(DOCUMENTS_MAX_TOTAL_MB),100) + $(or $(DOCUMENT_ARCHIVE_MAX_MB),1024) + 10 )))

nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq nginx; }

# The suite on SQLite, then on PostgreSQL (with the two-server test), then once what needs
# no database of the suite's (files in the sandbox, real files) or brings its own (the load
# and fault tests start a PostgreSQL server of their own, to stop it).
ONCE := faults or corpus or sandbox or once
ONCE_NOT := not ($(ONCE))
test: lint test-deps
	$(TEST_ENV) $(PY) -m pytest -m "$(ONCE_NOT)"
	$(TEST_ENV) $(PY) tests/servers.py with-postgres $(PY) -m pytest -m "$(ONCE_NOT)"
	$(TEST_ENV) $(PY) -m pytest -m "$(ONCE)"

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run

# Debian's Chromium for the browser tests (never a browser downloaded by Playwright), the
# PostgreSQL 15 server binaries and Redis for the two-server test. The tests start and stop
# each server themselves. Installing needs root, as on CI.
# Real files nobody here made, for tests/test_real_files.py: the test corpora that pypdf,
# pikepdf, Pillow and pillow-heif ship in their source distributions (pydicom's come with it).
CORPORA := pypdf==7.1.1 pikepdf==10.18.0 pillow==13.0.0 pillow-heif==1.8.1
.cache/corpora/.downloaded: $(VENV)/.installed
	$(PY) -m pip download --quiet --no-deps --no-binary :all: --dest .cache/corpora $(CORPORA)
	touch $@

test-deps: $(VENV)/.installed-dev nginx .cache/corpora/.downloaded
	@command -v chromium >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium; }
	@test -x $(PG_BIN)/initdb || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq postgresql-15; }
	@command -v redis-server >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq redis-server; }
	@command -v wrk >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq wrk; }

# Benchmarks: wrk from Debian as the load generator, and a PostgreSQL server of their own.
bench: $(VENV)/.installed-dev nginx
	@command -v unzip >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq unzip; }
	@command -v wrk >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq wrk; }
	@test -x $(PG_BIN)/initdb || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq postgresql-15; }
	@$(PY) bench/run.py; pages=$$?; $(PY) bench/documents.py; documents=$$?; \
		$(PY) bench/archives.py && exit $$(( pages || documents ))

# Refreshes the vendored Bootstrap stylesheet from its npm package.
vendor:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent bootstrap@$(BOOTSTRAP_VERSION) >/dev/null && \
		tar xzf bootstrap-$(BOOTSTRAP_VERSION).tgz && \
		mkdir -p $(CURDIR)/static/vendor/bootstrap && \
		sed '/sourceMappingURL/d' package/dist/css/bootstrap.min.css \
			> $(CURDIR)/static/vendor/bootstrap/bootstrap.min.css && \
		cp package/LICENSE $(CURDIR)/static/vendor/bootstrap/LICENSE && rm -rf $$tmp
	@echo "Bootstrap $(BOOTSTRAP_VERSION) vendored into static/vendor/bootstrap/"

clean:
	rm -rf $(VENV) staticfiles test-artifacts .pytest_cache .ruff_cache
