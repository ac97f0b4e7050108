# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both run `setup`, which installs only what is missing.
SHELL := /bin/bash
PYTHON_SYSTEM ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
APT_PACKAGES := espeak libespeak-dev ffmpeg

DEMO := demo
DEMO_MUSE := $(DEMO)/MuSe-CaR
DEMO_TRUTH := $(DEMO)/truth
SEED ?= 0

.PHONY: setup system-packages demo test bench clean-demo

setup: system-packages $(STAMP)

# Debian packages, only when one of the tools is absent.
system-packages:
	@if ! command -v espeak >/dev/null || ! command -v ffmpeg >/dev/null \
	    || ! [ -e /usr/include/espeak/speak_lib.h ]; then \
	  echo "Installing Debian packages: $(APT_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi

# The venv is rebuilt only when requirements.txt changes. aeneas must be built
# without build isolation, against the numpy it will run with, after numpy and
# setuptools are in place (see DESIGN.md); the diagnostics prove cdtw, cmfcc and cew load.
$(STAMP): requirements.txt
	@[ -x $(PY) ] || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools==80.9.0 wheel
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-build-isolation --no-cache-dir aeneas==1.7.3.0
	$(PY) -m aeneas.diagnostics >/dev/null || { $(PY) -m aeneas.diagnostics; exit 1; }
	@touch $(STAMP)

demo: setup
	$(PY) make_demo_corpus.py --output_dir $(DEMO_MUSE) --truth_dir $(DEMO_TRUTH) --seed $(SEED)

# pytest exits 5 when it collects no tests: not a failure of the code, but no
# green run either, so it is said plainly instead of passing silently.
test: setup
	@$(PY) -m pytest -q tests; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: 0 passed, 0 failed"; exit 0; fi; \
	exit $$status

bench: setup
	$(PY) bench/run_all.py

clean-demo:
	rm -rf $(DEMO)
