# The two commands of the README: `make demo` and `make test`. Both create .venv/ and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LRAM := $(VENV)/bin/lram
STAMP := $(VENV)/.installed
REF := model/reference/pick-place-v3
OUT := artifacts

.PHONY: demo test bench bench-baseline bench-presets reference clean

$(STAMP): pyproject.toml constraints.txt setup.py runtime/xlstm_native.c
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

# Latency regression gate of CI (< 1 minute, ratios only, so any shared machine may run it): the shipped policy's
# FP16 graph against its FP32 graph, measured in the same rounds, and each against its memory floor; tolerance
# and number of runs come from the noise measured when the baseline was written (bench-baseline).
CI_FP32 := $(OUT)/ci/pick-place-v3-standard.onnx
CI_FP16 := $(OUT)/ci/pick-place-v3-standard-fp16.onnx
CI_BASELINE := benchmarks/pick-place-v3.ratios.json

$(CI_FP16): $(STAMP) $(REF)/model.safetensors $(REF)/config.json
	$(LRAM) export $(REF) -o $(CI_FP32) --flavour standard  # the precision passes take the standard flavour
	$(LRAM) calibrate $(CI_FP32) --precision fp16 -o $(CI_FP16) --no-check

bench: $(CI_FP16)
	$(LRAM) bench $(CI_FP16) --against $(CI_FP32) --ratios-only --check $(CI_BASELINE)

bench-baseline: $(CI_FP16)
	$(LRAM) bench $(CI_FP16) --against $(CI_FP32) --batch 1,4 --seconds 2 --runs 5 --ratios-only \
		--write-baseline $(CI_BASELINE)

# The preset bench's ratio gate (random-weight presets, eager and Transformer baselines; about 2 minutes).
bench-presets: $(STAMP)
	$(LRAM) bench --quick --check benchmarks/baseline.json

# Rebuild the shipped reference policy from scratch (expert data, behaviour cloning, evaluation).
reference: $(STAMP)
	bash scripts/reference.sh

clean:
	rm -rf $(OUT) .pytest_cache .benchmarks
