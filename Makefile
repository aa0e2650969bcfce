# fmlkit — `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# where pipelines/demo.yaml writes (the pipeline names its paths itself)
DEMO   := demo

.PHONY: install test browser demo lint format bench mxnet-env clean

install: $(STAMP)

# Reinstall only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
# The report's browser test (tests/data/filter/test_report_browser.py) needs Chromium: as
# root, Debian's package is installed when absent (the test skips, saying why, without it).
test: install browser
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && \
		    apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } || \
		  echo "make test: could not install chromium; the browser test will skip" >&2; }

# The whole pipeline, pipelines/demo.yaml: synth, prepare, filter, split (+ 5 folds), pairs,
# convert (+ RecordIO), train configs/demo.yaml, export, evaluate. A second run skips every
# unchanged stage. A demo/ of real files (from an older make demo) is replaced once.
demo: install
	@if [ -e $(DEMO)/data ] && [ ! -L $(DEMO)/data ]; then \
		echo "removing $(DEMO)/ written by an older make demo"; rm -rf $(DEMO); fi
	$(BIN)/fmlkit run pipelines/demo.yaml
	@echo "Demo: evaluation $(DEMO)/eval/metrics.md (+ roc.png, scores.png), filter report"
	@echo "      $(DEMO)/filter_report/index.html, model $(DEMO)/run (metrics.csv), ONNX"
	@echo "      $(DEMO)/model.onnx; every version in $(DEMO)/artifacts/demo (fmlkit artifacts demo)"

lint: install
	$(BIN)/ruff check fmlkit tests bench examples
	$(BIN)/ruff format --check fmlkit tests bench examples
	$(BIN)/mypy

format: install
	$(BIN)/ruff format fmlkit tests bench examples
	$(BIN)/ruff check --fix fmlkit tests bench

# MXNet 1.9.1 (needs numpy < 1.24) in its own venv, for the RecordIO compatibility tests
# (tests/data/formats/test_recordio_mxnet.py, skipped without it) and the convert benchmark only.
MXNET_VENV := bench/.mxnet-venv
mxnet-env: $(MXNET_VENV)/.installed
$(MXNET_VENV)/.installed:
	$(PYTHON) -m venv $(MXNET_VENV)
	$(MXNET_VENV)/bin/python -m pip install --quiet "numpy<1.24" "mxnet==1.9.1"
	touch $@

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(MXNET_VENV) $(DEMO) pipelines/demo.lock wild pipelines/wild.lock ./clean pipelines/clean.lock build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench/out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
