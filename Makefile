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
DEMO_DATA := $(DEMO)/tfrecords
DEMO_CKPT := $(DEMO)/checkpoints
SEED ?= 0
# The demo's schedule (ser/defaults.py, where train.py's defaults are too).
DEMO_SCHEDULE := $(shell $(PYTHON_SYSTEM) -c 'from ser import defaults as d; \
	print(d.DEMO_SAMPLE_RATE, d.DEMO_STEPS, d.DEMO_LEARNING_RATE, d.DEMO_SEQUENCE_LENGTH, \
	d.CLUSTER_DEMO_STEPS)')
DEMO_SAMPLE_RATE ?= $(word 1,$(DEMO_SCHEDULE))
DEMO_STEPS ?= $(word 2,$(DEMO_SCHEDULE))
DEMO_LEARNING_RATE ?= $(word 3,$(DEMO_SCHEDULE))
DEMO_SEQUENCE_LENGTH ?= $(word 4,$(DEMO_SCHEDULE))
CLUSTER_DEMO_STEPS ?= $(word 5,$(DEMO_SCHEDULE))
DEMO_CLUSTER_CKPT := $(DEMO)/cluster_checkpoints

.PHONY: setup system-packages muse demo demo-data test test-fast bench clean-demo ablation \
	training-options precision-check cluster-demo

setup: system-packages $(STAMP)

# Debian packages, only when one of the tools is absent. Chromium runs the live
# page's tests headless; where it cannot be installed, those tests are skipped.
system-packages:
	@if ! command -v espeak >/dev/null || ! command -v ffmpeg >/dev/null \
	    || ! [ -e /usr/include/espeak/speak_lib.h ]; then \
	  echo "Installing Debian packages: $(APT_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@if ! command -v chromium >/dev/null; then \
	  echo "Installing Debian's chromium, for the live page's browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; } \
	  || echo "chromium could not be installed: the live page's browser tests will be skipped"; \
	fi

# The venv is rebuilt only when requirements.txt changes. aeneas must be built
# without build isolation, against the numpy it will run with, after numpy and
# setuptools are in place; the diagnostics prove cdtw, cmfcc and cew load.
$(STAMP): requirements.txt
	@[ -x $(PY) ] || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools==80.9.0 wheel
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-build-isolation --no-cache-dir aeneas==1.7.3.0
	$(PY) -m aeneas.diagnostics >/dev/null || { $(PY) -m aeneas.diagnostics; exit 1; }
	@touch $(STAMP)

# The recipe, steps 1-7 of the method on a corpus in MuSe-CaR's layout:
#   $(call DATA_STEPS,muse_dir,work_dir,sync map flags,partition flags,data flags)
#   $(call MODEL_STEPS,work_dir,train flags)
# Each step skips what a previous run already finished, so a rerun resumes.
define DATA_STEPS
	$(PY) synchronisation_map_generator.py --muse_dir $(1) --work_dir $(2) $(3)
	$(PY) label_generator.py --muse_dir $(1) --work_dir $(2)
	$(PY) partition_generator.py --muse_dir $(1) --work_dir $(2) --seed $(SEED) $(4)
	$(PY) label_distribution_analysis.py --work_dir $(2)
	$(PY) data_generator.py --muse_dir $(1) --work_dir $(2) --seed $(SEED) $(5)
endef
define MODEL_STEPS
	$(PY) train.py --dataset_dir $(1)/tfrecords --train_dir $(1)/checkpoints --seed $(SEED) $(2)
	$(PY) eval.py --dataset_dir $(1)/tfrecords --checkpoint $(1)/checkpoints --portion test \
	    --json $(1)/eval_test.json --predictions_dir $(1)/predictions/test $(3)
	@echo "$(1): sync_maps/ labels/ partition.csv plots/ embeddings/ tfrecords/ checkpoints/ \
	eval_test.json predictions/test/"
endef

# The licensed corpus with the paper's settings (16 kHz, train.py's defaults, the GPU when
# there is one): make muse MUSE_DIR=/data/MuSe-CaR WORK_DIR=/data/work. MUSE_*_FLAGS add
# to a step's flags, e.g. MUSE_TRAIN_FLAGS="--max_steps 20000".
MUSE_DIR ?= MuSe-CaR
WORK_DIR ?= .
MUSE_SYNC_FLAGS ?=
MUSE_DATA_FLAGS ?=
MUSE_TRAIN_FLAGS ?=
MUSE_EVAL_FLAGS ?=
muse: setup
	$(call DATA_STEPS,$(MUSE_DIR),$(WORK_DIR),$(MUSE_SYNC_FLAGS),,$(MUSE_DATA_FLAGS))
	$(call MODEL_STEPS,$(WORK_DIR),$(MUSE_TRAIN_FLAGS),$(MUSE_EVAL_FLAGS))

# The same recipe on the generated corpus, on the CPU, with the demo's schedule.
demo: demo-data
	$(call MODEL_STEPS,$(DEMO),--device -1 --max_steps $(DEMO_STEPS) \
	    --learning_rate $(DEMO_LEARNING_RATE) --sequence_length $(DEMO_SEQUENCE_LENGTH),--device -1)

# Steps 1-5 on the generated corpus: from nothing to TFRecords.
demo-data: setup
	$(PY) make_demo_corpus.py --output_dir $(DEMO_MUSE) --truth_dir $(DEMO_TRUTH) --seed $(SEED)
	$(call DATA_STEPS,$(DEMO_MUSE),$(DEMO),--truth_dir $(DEMO_TRUTH),--balance_trials 20,\
	    --sample_rate $(DEMO_SAMPLE_RATE))

# pytest exits 5 when it collects no tests: not a failure of the code, but no
# green run either, so it is said plainly instead of passing silently. Most
# tests wait on subprocesses that load TensorFlow, so TEST_WORKERS processes
# share the test files (each file in one, its module fixtures built once).
TEST_WORKERS ?= 2
PYTEST = status=0; $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(1) tests \
	|| status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: 0 passed, 0 failed"; exit 0; fi; \
	exit $$status

test: setup
	@$(call PYTEST,)

# The edit loop: everything but the tests marked slow (training, subprocess runs, benchmarks).
test-fast: setup
	@$(call PYTEST,-m "not slow")

# Every stage timed on a generated corpus; writes bench/results/latest.json (see
# BENCHMARKS.md). Options pass through, e.g. make bench BENCH_FLAGS="--stages train --xla".
bench: setup
	$(PY) bench/run_all.py $(BENCH_FLAGS)

clean-demo:
	rm -rf $(DEMO)

# Does the semantic branch help? Trains and evaluates both, audio-only and
# text-only models with the demo's schedule over seeds 0,1,2 (whatever SEED
# is), then writes ablation/results.json and RESULTS.md. A rerun skips the
# finished runs.
ablation: demo-data
	$(PY) ablation.py --dataset_dir $(DEMO_DATA) --portion test --output_dir ablation \
	    --report RESULTS.md --device -1 --seeds 0,1,2 --max_steps $(DEMO_STEPS) --learning_rate $(DEMO_LEARNING_RATE) \
	    --sequence_length $(DEMO_SEQUENCE_LENGTH)

# The training options compared in RESULTS.md (Notes): the model hearing both
# inputs over seeds 0,1,2, each `windows:steps:padding` of OPTIONS_RUNS into
# ablation/windows/<windows>_<steps>_<padding>/ (results.json, report.md), the
# padding computed (--noskip_padding) or skipped. Besides the demo's schedule,
# tight and packed windows run for the steps that learn from as many real
# frames as the demo's per-segment schedule (the demo's train segments are
# 43 %, 69 % and 99 % of the frames in a window). A rerun skips finished runs.
OPTIONS_RUNS ?= per_segment:$(DEMO_STEPS):computed per_segment:$(DEMO_STEPS):skipped \
	tight:$(DEMO_STEPS):computed packed:$(DEMO_STEPS):computed tight:375:computed \
	packed:263:computed
OPTIONS_FLAGS = --dataset_dir $(DEMO_DATA) --portion test --device -1 --modalities both \
	--seeds 0,1,2 \
	--learning_rate $(DEMO_LEARNING_RATE) --sequence_length $(DEMO_SEQUENCE_LENGTH)
training-options: demo-data
	for run in $(OPTIONS_RUNS); do \
	  IFS=: read -r windows steps padding <<< "$$run"; \
	  directory=ablation/windows/$${windows}_$${steps}_$$padding; \
	  $(PY) ablation.py $(OPTIONS_FLAGS) --windows $$windows --max_steps $$steps \
	      --$$([ $$padding = skipped ] || echo no)skip_padding \
	      --output_dir $$directory --report $$directory/report.md || exit 1; \
	done

# bf16 against fp32 (RESULTS.md, Precision): the model hearing both inputs over seeds 0,1,2
# with the demo's schedule, in each precision, into ablation/precision/<precision>_600/.
PRECISIONS_CHECKED ?= bf16 fp32
precision-check: demo-data
	for precision in $(PRECISIONS_CHECKED); do \
	  directory=ablation/precision/$${precision}_$(DEMO_STEPS); \
	  $(PY) ablation.py $(OPTIONS_FLAGS) --precision $$precision --max_steps $(DEMO_STEPS) \
	      --output_dir $$directory --report $$directory/report.md || exit 1; \
	done

# train.py on TensorFlow's distributed runtime: 1 ps + 2 workers as processes
# on 127.0.0.1, then eval.py on the chief's checkpoint.
cluster-demo: demo-data
	$(PY) -m tools.local_cluster --num_ps 1 --num_workers 2 --log_dir $(DEMO)/cluster_logs -- \
	    --dataset_dir $(DEMO_DATA) --train_dir $(DEMO_CLUSTER_CKPT) --device -1 --seed $(SEED) \
	    --max_steps $(CLUSTER_DEMO_STEPS) --learning_rate $(DEMO_LEARNING_RATE) \
	    --sequence_length $(DEMO_SEQUENCE_LENGTH)
	$(PY) eval.py --dataset_dir $(DEMO_DATA) --checkpoint $(DEMO_CLUSTER_CKPT) --portion test \
	    --device -1 --json $(DEMO)/cluster_eval_test.json \
	    --predictions_dir $(DEMO)/cluster_predictions/test
