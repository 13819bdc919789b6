# Two commands a new user needs: `make run` and `make test`. Both set themselves up.
SHELL := /bin/bash
# Python 3.13: what the app runs on in Azure (Flex Consumption), and the first version whose
# Functions runtime (azure-functions-runtime) is a package the app pins. pyenv provides it here.
# The first candidate that really is 3.13 (a pyenv shim may exist without the version selected).
PYTHON ?= $(shell for p in python3.13 $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo "$$p"; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
# The stamp changes whenever the pinned requirements, pyproject.toml (the project's own install:
# its packages and the `dicomweb` command) or the Python version change, so a second run is
# quick and a venv of another Python is rebuilt.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha1sum | cut -c1-12)-py313
PORT ?= 7071
DATA_DIR ?= .data
# Azurite and the Cosmos DB server (npm, pinned by tools/emulators/package-lock.json) for the
# azure backend's tests and `make run-azure`; reinstalled only when the lock file changes.
EMULATORS := tools/emulators/node_modules/.installed-$(shell sha1sum tools/emulators/package-lock.json | cut -c1-12)
# checkov (policy checks of infra/*.bicep) in its own venv: its pins clash with ours.
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed-$(shell sha1sum requirements-infra.txt | cut -c1-12)

# Debian's chromium and its WebDriver, for the viewer's browser test (tests/e2e/test_viewer.py),
# and the fonts chromium recommends, so that pages show their text.
BROWSER_PACKAGES := chromium chromium-driver fonts-liberation
# DICOM_VIEWER=true: make run serves the OHIF Viewer at /viewer too (functions_host/viewer.py).
DICOM_VIEWER ?= false

.PHONY: run run-azure viewer test lint typecheck venv emulators viewer-files browser clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.13 is needed (python3.13 on PATH, or make PYTHON=/path/to/python3.13); see the README" >&2; exit 1; }
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@# The project itself, editable and without dependencies (pinned above): .venv/bin/dicomweb.
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

$(INFRA_STAMP): requirements-infra.txt
	@test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	@$(INFRA_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-infra.txt
	@rm -f $(INFRA_VENV)/.installed-* && touch $@

emulators: $(EMULATORS)

$(EMULATORS): tools/emulators/package.json tools/emulators/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for Azurite and the Cosmos DB server" >&2; exit 1; }
	@npm ci --prefix tools/emulators --no-audit --no-fund --loglevel=error
	@rm -f tools/emulators/node_modules/.installed-* && touch $@

# The OHIF Viewer (npm @ohif/app, pinned with its integrity in functions_host/ohif.py), fetched
# and prepared for /viewer under tools/ohif/.cache on first use; quick once it is there.
viewer-files: $(STAMP)
	@$(PY) -m functions_host.ohif

# chromium and chromedriver where they are missing: installed with apt-get as root (CI), else
# named, and the browser test skips.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	else \
		echo "The viewer's browser test needs $(BROWSER_PACKAGES) (sudo apt-get install $(BROWSER_PACKAGES)); it is skipped" >&2; \
	fi

# How make run reaches the functions (functions_host/direct.py): "direct" calls the runtime's
# own function objects in process, routed as Azure routes; "runtime" goes through
# azure-functions-runtime and its HTTP server as in Azure, at about half the request rate.
# The tests always use "runtime".
ENGINE ?= direct

run: $(STAMP)
	PORT=$(PORT) DATA_DIR=$(DATA_DIR) DICOM_HOST_ENGINE=$(ENGINE) DICOM_VIEWER=$(DICOM_VIEWER) \
		$(PY) -m functions_host

# make run with the viewer: http://127.0.0.1:7071/viewer/
viewer: DICOM_VIEWER := true
viewer: run

# The same app on the azure backend, against Azurite and the Cosmos DB server on loopback
# (in memory: stopping it stops them and forgets what was stored).
run-azure: $(STAMP) $(EMULATORS)
	PORT=$(PORT) DATA_DIR=$(DATA_DIR) DICOM_HOST_ENGINE=$(ENGINE) $(PY) tools/emulators/launcher.py run -- \
		$(PY) -m functions_host

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) $(EMULATORS) $(INFRA_STAMP) viewer-files browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(INFRA_VENV) .pytest_cache .mypy_cache .ruff_cache
