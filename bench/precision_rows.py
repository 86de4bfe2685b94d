"""The preset bench's precision rows: every reduced-precision graph the calibration passes write, per flavour it
applies to, timed in the same interleaved rounds as the FP32 rows (``bench.latency``'s group "paths").

Rows (``ROWS``; name -> (flavour, precision)), each written from that flavour's FP32 graph by the pass that
``lram calibrate`` runs, so the bench times exactly what a user would deploy:
- ``standard_fp16`` (calibration/fp16.py: FP16 weight MatMuls behind casts; standard flavour only);
- ``standard_int8`` (calibration/int8.py: static Q/DQ, standard flavour only). It needs activation ranges: the
  bench calibrates on ``synthetic_calibration`` (the FP32 graph stepped from an episode start on random
  observations, as the bench's own walk does), which is cheap and enough for latency (MinMax ranges do not
  change which kernels run), not for accuracy (``lram calibrate`` records closed-loop data and gates it);
- ``{standard,ort,native}_int8-nbits`` / ``{standard,ort,native}_int4-nbits`` (calibration/nbits.py: MatMulNBits, block 32,
  accuracy_level 4; no data needed);
- ``native_bf16-state`` (calibration/state_bf16.py: the mLSTM memories stored as bfloat16; its floor counts its
  own, smaller state).

Ratios per batch (keys ``<preset>.b<B>.<ratio>@<row>``): ``precision_over_fp32@row`` = the row's step / the FP32
step of the same flavour (paired per round), ``precision_over_floor@row`` = the row's step / its own memory floor
(its own weight bytes + 2 x B x its own state bytes, over the bandwidth of the same round).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

ROWS = {
    "standard_fp16": ("standard", "fp16"),
    "standard_int8": ("standard", "int8"),
    "standard_int8-nbits": ("standard", "int8-nbits"),
    "standard_int4-nbits": ("standard", "int4-nbits"),
    "ort_int8-nbits": ("ort", "int8-nbits"),
    "ort_int4-nbits": ("ort", "int4-nbits"),
    "native_int8-nbits": ("native", "int8-nbits"),
    "native_int4-nbits": ("native", "int4-nbits"),
    "native_bf16-state": ("native", "bf16-state"),
}
PRECISIONS = ("fp16", "int8", "int8-nbits", "int4-nbits", "bf16-state")
# the FP32 row of each flavour in the paths group (bench.latency's candidate names)
FP32_ROW = {"standard": "ort_chunk", "ort": "ort_fused", "native": "ort_native"}
CALIBRATION_STEPS = 48  # synthetic calibration samples for the static INT8 row (latency only)


def rows_for(precisions) -> list[str]:
    """Row names of the chosen precisions, in ``ROWS`` order."""
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise ValueError(f"unknown precision(s) {', '.join(unknown)}: choose from {', '.join(PRECISIONS)} (FP32 "
                         "always runs)")
    return [r for r, (_, p) in ROWS.items() if p in precisions]


def synthetic_calibration(fp32_standard: Path, steps: int = CALIBRATION_STEPS, seed: int = 0):
    """A CalibrationSet of the graph's own feeds while it steps one episode from its start on random
    observations (``bench.latency.OrtStepper``): ranges for timing, not for accuracy."""
    from lram.calibration.record import CalibrationSet

    from .latency import OrtStepper

    st = OrtStepper(fp32_standard, 1, seed=seed)
    kept = []
    try:
        for k in range(steps):
            st.feeds["first"][:] = k == 0
            st.feeds["obs"] = st.obs_pool[k % len(st.obs_pool)]
            kept.append({n: np.array(v, copy=True) for n, v in st.feeds.items()})
            st.step()
    finally:
        st.close()
    inputs = {n: np.concatenate([k[n] for k in kept], axis=0) for n in kept[0]}
    return CalibrationSet(inputs, np.arange(steps), np.zeros(steps, np.int64), np.zeros(steps, np.int64),
                          {"env": "synthetic (bench)", "samples": steps})


def write_rows(rows, fp32: dict, workdir: Path, log: Callable = lambda *_: None) -> dict:
    """{row: path} of each row's graph, written from ``fp32`` ({flavour: FP32 graph path}) into ``workdir``."""
    from lram.calibration.fp16 import write_fp16
    from lram.calibration.int8 import write_int8
    from lram.calibration.nbits import write_nbits
    from lram.calibration.state_bf16 import write_state_bf16

    out = {}
    for row in rows:
        flavour, precision = ROWS[row]
        src = Path(fp32[flavour])
        dst = Path(workdir) / f"{src.stem}_{precision}.onnx"
        log(f"  writing the {precision} graph of the {flavour} flavour")
        if precision == "fp16":
            write_fp16(src, dst)
        elif precision == "int8":
            logging.disable(logging.WARNING)  # the quantiser's root-logger advice to pre-process, twice per graph
            try:
                write_int8(src, dst, synthetic_calibration(src), mode="static")
            finally:
                logging.disable(logging.NOTSET)
        elif precision == "bf16-state":
            write_state_bf16(src, dst)
        else:
            write_nbits(src, dst, precision)
        out[row] = dst
    return out


def ratios(paths: dict, floors: dict, rows) -> dict:
    """Precision ratios from the paths group's samples ({candidate: seconds [rounds, calls]}); ``floors``:
    {row: that row's memory floor per round (seconds, from the bandwidth of the same round)}."""
    out = {}
    for row in rows:
        flavour, _ = ROWS[row]
        x = np.median(paths[row], axis=1)
        out[f"precision_over_fp32@{row}"] = float(np.median(x / np.median(paths[FP32_ROW[flavour]], axis=1)))
        out[f"precision_over_floor@{row}"] = float(np.median(x / floors[row]))
    return out
