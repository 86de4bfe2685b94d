# The two commands of the README: `make demo` and `make test`. Both create .venv/ and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LRAM := $(VENV)/bin/lram
STAMP := $(VENV)/.installed
REF := model/reference/pick-place-v3
OUT := artifacts

.PHONY: demo test bench reference clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt pins torch to the CPU wheel; any other spec may pull a multi-GB CUDA build
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Export the shipped reference policy, prove parity with PyTorch, run it closed loop at 50 Hz on ONNX Runtime.
demo: $(STAMP)
	$(LRAM) info $(REF)
	$(LRAM) export $(REF) -o $(OUT)/pick-place-v3.onnx
	$(LRAM) verify $(OUT)/pick-place-v3.onnx --against $(REF) --steps 10000 --json $(OUT)/verify.json
	$(LRAM) run $(OUT)/pick-place-v3.onnx --env metaworld:pick-place-v3 --hz 50 --episodes 10 --seed 10000 \
		--report $(OUT)/run_report.json --plots $(OUT)/plots

test: $(STAMP)
	$(PY) -m pytest -q

# Latency regression gate (ratios against benchmarks/baseline.json), the short mode CI could run.
bench: $(STAMP)
	$(LRAM) bench --quick --check benchmarks/baseline.json

# Rebuild the shipped reference policy from scratch (expert data, behaviour cloning, evaluation).
reference: $(STAMP)
	bash scripts/reference.sh

clean:
	rm -rf $(OUT) .pytest_cache .benchmarks
