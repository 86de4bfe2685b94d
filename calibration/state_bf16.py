"""The opt-in bf16 matrix memory: the native graph's mLSTM memories C stored as bfloat16, arithmetic in float32.

At batch 16 the 16M step is half state traffic (7.5 MB per robot, read and written every step), and the
state sets the crossover against a Transformer's KV cache. C is 99% of the state; storing it as the top 16
bits of each float32 (bfloat16: float32's exponent range, 8 significant bits) halves that traffic. The compiled
mLSTM layer (runtime/xlstm_native.c) widens each row into float32, updates it there and rounds it back once
per step, stochastically (a dither that is a hash of the value and its position, so a step stays a pure
function of its inputs); n, m and every other state stay float32. Round-to-nearest measured worse on the shipped
policy's 10,000-step drift check (state error 0.66 against 0.21): on a memory that forgets slowly it drops
every update smaller than half a bf16 step, always in the same direction.

The pass only retypes the C state tensors (graph inputs and outputs) and the manifest: the native backend
picks the bf16 path from the array's dtype. It takes the native flavour (the one whose C never enters ONNX
Runtime); like every precision it is gated by ``lram calibrate``'s closed loop and long-run drift.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx

from .graph import GraphError, load_fp32, save_with_manifest, with_precision

PRECISION = "bf16-state"


def bf16_states(manifest) -> list:
    """The state tensors stored as bfloat16: every mLSTM block's matrix memory."""
    return [s for s in manifest.state if s.cell == "mlstm" and s.role == "memory"]


def write_state_bf16(src: str | Path, dst: str | Path) -> dict:
    """Write the FP32 native graph at ``src`` with its mLSTM memories typed bfloat16 to ``dst``."""
    # the native flavour: its compiled mLSTM layers hold C (in the other flavours C runs inside ONNX Runtime)
    model, manifest = load_fp32(src, "convert", ("native",), "lram export, the default, or --flavour native")
    chosen = bf16_states(manifest)
    if not chosen:
        raise GraphError(f"{src} has no mLSTM matrix memory to store as bf16")
    names = {n for s in chosen for n in (s.input, s.output)}
    for v in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if v.name in names:
            v.type.tensor_type.elem_type = onnx.TensorProto.BFLOAT16
    keep = {s.name for s in chosen}
    state = [dataclasses.replace(s, dtype="bfloat16") if s.name in keep else s for s in manifest.state]
    tensors = [dataclasses.replace(t, dtype="bfloat16") if t.name in names else t for t in manifest.inputs]
    outputs = [dataclasses.replace(t, dtype="bfloat16") if t.name in names else t for t in manifest.outputs]
    new = dataclasses.replace(with_precision(manifest, PRECISION), state=state, inputs=tensors, outputs=outputs)
    before = manifest.state_bytes_per_robot
    info = {"precision": PRECISION, "bf16_states": sorted(keep), "state_bytes_per_robot": [before, new.state_bytes_per_robot]}
    save_with_manifest(model, dst, new, extra={"calibration": {"source": Path(src).name, **info}})
    return info
