# fmlkit — `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo

.PHONY: install test demo lint format bench mxnet-env clean

install: $(STAMP)

# Reinstall only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: install
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

# The pipeline on the embedded synthetic dataset, as far as the stages exist today: data
# preparation, then a small face model trained on 120 identities and checked on 30 held-out ones.
demo: install
	$(BIN)/fmlkit synth $(DEMO)/data --identities 150 --images-per-identity 12 --size 64 --seed 0 \
		--truth $(DEMO)/data.truth.csv --overwrite
	$(BIN)/fmlkit prepare $(DEMO)/data -o $(DEMO)/dataset_info.csv
	$(BIN)/fmlkit filter $(DEMO)/dataset_info.csv -o $(DEMO)/filtered.csv \
		--removed $(DEMO)/removed.csv --dedup --scope global \
		--report $(DEMO)/filter_report --root $(DEMO)/data
	$(BIN)/fmlkit split $(DEMO)/filtered.csv -o $(DEMO)/folds.csv --k 5 --seed 28
	$(BIN)/fmlkit split $(DEMO)/filtered.csv -o $(DEMO)/split.csv \
		--mode classes --test-fraction 0.2 --seed 0
	$(BIN)/fmlkit pairs $(DEMO)/split.csv -o $(DEMO)/test_pairs.csv --split test \
		--positives 300 --negatives 300 --seed 0
	$(BIN)/fmlkit convert $(DEMO)/split.csv $(DEMO)/parquet --root $(DEMO)/data --overwrite
	$(BIN)/fmlkit convert $(DEMO)/parquet $(DEMO)/rec/train.rec --overwrite
	rm -rf $(DEMO)/run
	$(BIN)/fmlkit train --config configs/demo.yaml data.parquet=$(DEMO)/parquet \
		val.pairs=$(DEMO)/test_pairs.csv val.root=$(DEMO)/data output_dir=$(DEMO)/run
	$(BIN)/fmlkit export --checkpoint $(DEMO)/run/checkpoints/last.pt --onnx $(DEMO)/model.onnx
	@echo "Demo: $(DEMO)/data, truth $(DEMO)/data.truth.csv, scan $(DEMO)/dataset_info.csv,"
	@echo "      filtered $(DEMO)/filtered.csv, report $(DEMO)/filter_report/index.html,"
	@echo "      5 folds $(DEMO)/folds.csv, held-out identities $(DEMO)/split.csv,"
	@echo "      verification pairs $(DEMO)/test_pairs.csv, Parquet $(DEMO)/parquet,"
	@echo "      InsightFace RecordIO $(DEMO)/rec/train.rec, model $(DEMO)/run (metrics.csv:"
	@echo "      held-out verification accuracy), ONNX $(DEMO)/model.onnx"

lint: install
	$(BIN)/ruff check fmlkit tests bench
	$(BIN)/ruff format --check fmlkit tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format fmlkit tests bench
	$(BIN)/ruff check --fix fmlkit tests bench

# MXNet 1.9.1 (needs numpy < 1.24) in its own venv, for the RecordIO compatibility tests
# (tests/data/test_recordio_mxnet.py, skipped without it) and the convert benchmark only.
MXNET_VENV := bench/.mxnet-venv
mxnet-env: $(MXNET_VENV)/.installed
$(MXNET_VENV)/.installed:
	$(PYTHON) -m venv $(MXNET_VENV)
	$(MXNET_VENV)/bin/python -m pip install --quiet "numpy<1.24" "mxnet==1.9.1"
	touch $@

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(MXNET_VENV) $(DEMO) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench/out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
