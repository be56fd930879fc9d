# Every target installs what it needs into .venv (git-ignored) first; CI runs exactly these.
# Installs are reproducible: uv installs exactly the versions and files pinned in uv.lock
# (`uv sync --locked` refuses a lock that no longer matches pyproject.toml). uv itself comes
# from the package index, pinned, into .venv-uv; tools/uv.py hands it pip's index settings.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
UV_BIN := .venv-uv/bin/uv
UV := $(PYTHON) tools/uv.py $(UV_BIN)

# uv: use the interpreter found above, never download one, and sync into .venv. Bytecode is
# compiled at install: where PYTHONDONTWRITEBYTECODE is set (CI images, some cron hosts) every
# `connector` start would otherwise compile pandas and pyarrow from source (about 3 s).
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

, := ,
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-stamp

.PHONY: install lock test suite test-airflow lint docs docs-check demo bench clean dist deploy-check image base-image test-image

install: $(STAMP)

# uv in a virtualenv of its own, installed by the interpreter's pip from outside (a virtualenv
# without pip takes 0.1 s to make, one with pip 2.6 s); where that pip is too old for --python
# (pip < 22.3) or missing, the virtualenv gets a pip of its own.
$(UV_BIN):
	$(PYTHON) -m venv --without-pip .venv-uv
	$(PYTHON) -m pip --python .venv-uv/bin/python install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)' \
		|| { rm -rf .venv-uv && $(PYTHON) -m venv .venv-uv \
		&& .venv-uv/bin/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'; }

$(STAMP): pyproject.toml uv.lock $(UV_BIN)
	$(UV) sync --locked --quiet
	touch $(STAMP)

# After editing dependencies in pyproject.toml: `make lock`, then commit pyproject.toml and
# uv.lock together. `make lock ARGS=--upgrade` moves every pin to the newest allowed release.
lock: $(UV_BIN)
	$(UV) lock $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check connector tests benchmarks sample_configs tools
	$(VENV)/bin/ruff format --check connector tests benchmarks sample_configs tools
	$(VENV)/bin/mypy

# docs/: the tables that come from the code (config keys, schema, exit codes, error types, every
# command's --help, the library API) are written by cog from tools/docgen.py. `make docs`
# rewrites them; `make test` fails while one is stale.
COG := $(VENV)/bin/cog -U -I tools
DOCS := $(wildcard docs/*.md)

docs: $(STAMP)
	$(COG) -r $(DOCS)

docs-check: $(STAMP)
	$(COG) --check --diff --check-fail-msg "run 'make docs' and commit the result" $(DOCS)

# The linters and the suite run side by side (the suite's workers wait on servers and child
# processes part of the time, and mypy uses one core): `make test` fails if any of them fails.
# Three workers on two cores: a worker waiting on a child process or a socket leaves its core
# to the others.
test: $(STAMP)
	@$(MAKE) --no-print-directory -j 3 lint docs-check suite

suite: $(STAMP)
	$(PY) -m pytest -n $(SUITE_WORKERS) --dist worksteal

SUITE_WORKERS ?= $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)) + 1)")

# Airflow in its own virtualenv (its dependency tree is large and not the connector's), from the
# same lock (the `airflow` dependency group); runs the tests marked `airflow` (the sample DAGs,
# for real with dag.test() against the simulator). Skipped by `make test`.
$(AIRFLOW_STAMP): pyproject.toml uv.lock $(UV_BIN)
	UV_PROJECT_ENVIRONMENT=$(AIRFLOW_VENV) $(UV) sync --locked --quiet --group airflow
	touch $(AIRFLOW_STAMP)

test-airflow: $(AIRFLOW_STAMP)
	CONNECTOR_TESTS_REQUIRE_AIRFLOW=1 $(AIRFLOW_VENV)/bin/python -m pytest -m airflow

demo: $(STAMP)
	$(PY) -m connector.simulator.demo

# Every benchmark runs even when one misses its target; make bench fails at the end, naming them.
BENCHES := extract registry memory report status
bench: $(STAMP)
	@missed=""; for name in $(BENCHES); do \
		echo "== benchmarks/bench_$$name.py"; \
		$(PY) benchmarks/bench_$$name.py || missed="$$missed $$name"; \
	done; \
	if [ -n "$$missed" ]; then echo "make bench: targets missed by:$$missed"; exit 1; fi

# The wheel and the sdist (version from connector/_version.py) into $(DIST): what the Airflow
# samples install and what a private index serves. uv builds the sdist, then the wheel from it,
# so a file missing from the sdist fails here. File dates come from the last commit, so the
# same commit gives the same wheel (setuptools stamps the sdist with the build time).
DIST ?= dist
dist: $(UV_BIN)
	rm -f $(DIST)/model_versions_connector-*
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
		$(UV) build --quiet --no-create-gitignore --out-dir $(DIST)

# Checks the deployment files (tests/test_deploy.py): hadolint on deploy/Dockerfile, the
# manifests against the Kubernetes schemas bundled in kubernetes-validate (strict: an unknown
# field fails), their agreement with the code, and `make dist`'s archives installed in a fresh
# virtualenv. `make test` runs the same tests.
deploy-check: $(STAMP)
	$(PY) -m pytest tests/test_deploy.py

# The container image (deploy/Dockerfile), built with podman, or CONTAINER=docker.
# CONTAINER_OPTS: runc where it is installed, because crun (podman's default on Debian) refuses
# hosts that mount cgroup v1 controllers beside cgroup v2 ("cgroups in hybrid mode not
# supported"). LIMITS: podman's default open-files limit exceeds what some hosts allow (EPERM).
# CA_BUNDLE: a CA bundle for a package index behind a TLS-intercepting proxy (build secret).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' connector/_version.py)
IMAGE ?= localhost/model-versions-connector:$(VERSION)
BASE_IMAGE ?= docker.io/library/debian:bookworm-slim
CONTAINER ?= podman
CONTAINER_OPTS ?= $(if $(and $(filter podman,$(CONTAINER)),$(shell command -v runc)),--runtime runc)
LIMITS ?= --ulimit nofile=4096:4096 --ulimit nproc=4096:4096
CA_BUNDLE ?= $(SSL_CERT_FILE)
image:
	$(CONTAINER) $(CONTAINER_OPTS) build $(LIMITS) -f deploy/Dockerfile \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg UV_VERSION=$(UV_VERSION) \
		$(if $(CA_BUNDLE),--secret id=ca-bundle$(,)src=$(CA_BUNDLE)) -t $(IMAGE) .

# Where no image registry can be reached: a Debian 12 base made from Debian's packages with
# debootstrap (as root), then `make test-image BASE_IMAGE=$(LOCAL_BASE)`.
LOCAL_BASE ?= localhost/debian-minbase:bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
base-image:
	root=$$(mktemp -d) && trap 'rm -rf "$$root"' EXIT \
		&& debootstrap --variant=minbase bookworm "$$root" $(DEBIAN_MIRROR) \
		&& tar -C "$$root" -c . | $(CONTAINER) $(CONTAINER_OPTS) import - $(LOCAL_BASE)

# Builds the image, then runs it as deploy/cronjob.yaml does (tests/test_image.py).
test-image: image $(STAMP)
	CONNECTOR_IMAGE=$(IMAGE) CONNECTOR_CONTAINER="$(CONTAINER) $(CONTAINER_OPTS)" \
		CONNECTOR_CONTAINER_LIMITS="$(LIMITS)" $(PY) -m pytest tests/test_image.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .venv-uv demo-data bench-data .pytest_cache .mypy_cache .ruff_cache
