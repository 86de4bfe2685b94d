"""What the precision passes need to know about an exported step graph, and how they write their result.

- ``weight_matmuls``: the MatMuls whose second input is a constant float initializer (the projections, gate
  projections, FFN and head: the bytes of the model), each marked ``recurrent`` when it lies on a block's own
  state recurrence (from a block's recurrent state inputs to the same block's recurrent state outputs, as the
  manifest declares them); today that is the sLSTM recurrent kernel h @ R. Conv windows are shift registers
  of past inputs, not a recurrence, and do not count.
- ``save_with_manifest``: write a converted graph with its manifest (``precision`` updated) embedded and in
  the sidecar, atomically (runtime.model_files.write_artifact), and check it with the ONNX checker.
"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from lram.runtime.manifest import Manifest, ManifestError
from lram.runtime.model_files import embed_manifest, read_manifest, write_artifact


class GraphError(ValueError):
    """The graph is not an lram step graph this pass can convert."""


@dataclass(frozen=True)
class WeightMatMul:
    node: str  # node name
    index: int  # position in graph.node
    activation: str  # input 0
    weight: str  # input 1 (a constant initializer)
    output: str
    shape: tuple  # weight shape
    recurrent: bool  # on a block's state recurrence: keep in fp32
    elements: int


def load(path: str | Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is the same problem to the user
        raise GraphError(f"{path}: not a readable ONNX graph ({e})") from None


def _initializers(model: onnx.ModelProto) -> dict:
    return {i.name: i for i in model.graph.initializer}


def recurrent_nodes(model: onnx.ModelProto, manifest: Manifest) -> set:
    """Indices of nodes on some block's own recurrence: descendants of the block's recurrent state inputs that
    are also ancestors of the same block's recurrent state outputs."""
    nodes = model.graph.node
    # tensor -> consumer node ids ; node id -> output tensors ; tensor -> producer node id
    consumers = defaultdict(list)
    producer = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            if t:
                consumers[t].append(i)
        for t in n.output:
            producer[t] = i
    blocks = defaultdict(lambda: ([], []))
    for spec in manifest.state:
        if spec.recurrent:
            blocks[spec.block][0].append(spec.input)
            blocks[spec.block][1].append(spec.output)

    def descendants(tensors):
        seen, stack = set(), list(tensors)
        seen_t = set(tensors)
        while stack:
            t = stack.pop()
            for i in consumers.get(t, ()):
                if i not in seen:
                    seen.add(i)
                    for o in nodes[i].output:
                        if o not in seen_t:
                            seen_t.add(o)
                            stack.append(o)
        return seen

    def ancestors(tensors):
        seen, stack = set(), list(tensors)
        while stack:
            t = stack.pop()
            i = producer.get(t)
            if i is None or i in seen:
                continue
            seen.add(i)
            stack.extend(x for x in nodes[i].input if x)
        return seen

    out = set()
    for ins, outs in blocks.values():
        out |= descendants(ins) & ancestors(outs)
    return out


def weight_matmuls(model: onnx.ModelProto, manifest: Manifest) -> list[WeightMatMul]:
    inits = _initializers(model)
    rec = recurrent_nodes(model, manifest)
    found = []
    for i, n in enumerate(model.graph.node):
        if n.op_type != "MatMul" or len(n.input) != 2 or n.input[1] not in inits:
            continue
        w = inits[n.input[1]]
        if w.data_type != onnx.TensorProto.FLOAT:
            continue
        shape = tuple(int(d) for d in w.dims)
        found.append(WeightMatMul(n.name, i, n.input[0], n.input[1], n.output[0], shape, i in rec,
                                  int(np.prod(shape))))
    if not found:
        raise GraphError("no MatMul with a constant float weight found: not an exported lram step graph, or already converted")
    return found


def load_fp32(path: str | Path, verb: str, flavours=("standard",), hint: str = "lram export --flavour standard"
              ) -> tuple[onnx.ModelProto, Manifest]:
    """The graph a precision pass starts from (the exporter's FP32 graph of one of ``flavours``) and its manifest,
    or GraphError naming what to export instead (``hint``)."""
    model = load(path)
    manifest = read_manifest(path)
    if manifest.precision != "fp32":
        raise GraphError(f"{path} is already {manifest.precision}; {verb} the FP32 graph")
    if manifest.flavour not in flavours:
        raise GraphError(f"{path} is the {manifest.flavour!r} flavour; this pass takes the {' or '.join(flavours)} "
                         f"flavour ({hint})")
    return model, manifest


def replace_nodes(graph: onnx.GraphProto, nodes: list) -> None:
    """Swap in a rewritten node list and drop the initializers no node reads any more."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {t for n in graph.node for t in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def save_with_manifest(model: onnx.ModelProto, out: str | Path, manifest: Manifest, extra: dict | None = None) -> Path:
    """Write ``model`` to ``out`` (.onnx) with ``manifest`` embedded and as the sidecar, atomically.

    ``extra`` lands in the manifest's ``producer`` dict (e.g. the calibration summary)."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise GraphError(f"output path must end in .onnx, got {out}")
    if extra:
        manifest = dataclasses.replace(manifest, producer={**manifest.producer, **extra})
    Manifest.from_json(manifest.to_json())  # round-trips
    embed_manifest(model, manifest)

    def write(tmp: Path) -> None:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)

    return write_artifact(out, manifest, write)


def with_precision(manifest: Manifest, precision: str) -> Manifest:
    if precision not in ("fp32", "fp16", "int8", "int8-nbits", "int4-nbits", "bf16-state"):
        raise ManifestError(f"unknown precision {precision!r}")
    return dataclasses.replace(manifest, precision=precision)


def summary_json(d: dict) -> str:
    return json.dumps(d, indent=2, sort_keys=True, default=float)
