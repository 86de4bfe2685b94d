"""What the precision passes need to know about an exported step graph, and how they write their result.

- ``weight_matmuls``: the MatMuls whose second input is a constant float initializer (the projections, gate
  projections, FFN and head: the bytes of the model), each marked ``recurrent`` when it lies on a block's own
  state recurrence (state_in.<b>.{C,n,m,h,c} -> ... -> state_out.<b>.{same}); today that is the sLSTM
  recurrent kernel h @ R. The conv parts are shift registers of past inputs, not a recurrence, and do not count.
- ``save_with_manifest``: write a converted graph with its manifest (``precision`` updated) embedded and in
  the sidecar, atomically, and check it with the ONNX checker.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from lram.runtime.manifest import METADATA_KEY, Manifest, ManifestError, sidecar_path

RECURRENT_PARTS = ("C", "n", "m", "h", "c")  # per-block state parts carried through the cell recurrence
STATE_IN, STATE_OUT = "state_in.", "state_out."


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


def manifest_of(model: onnx.ModelProto) -> Manifest:
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise GraphError(f"the graph carries no '{METADATA_KEY}' metadata: not an lram step graph")
    return Manifest.from_json(meta[METADATA_KEY])


def read_manifest_file(path: str | Path) -> Manifest:
    """The manifest of a graph file (embedded copy, else sidecar), via the runtime's reader."""
    from lram.runtime.model_files import read_manifest

    m = onnx.load(str(path), load_external_data=False)
    return read_manifest(path, {p.key: p.value for p in m.metadata_props})


def _initializers(model: onnx.ModelProto) -> dict:
    return {i.name: i for i in model.graph.initializer}


def recurrent_nodes(model: onnx.ModelProto) -> set:
    """Indices of nodes on some block's own recurrence: descendants of state_in.<b>.<rec part> that are also
    ancestors of state_out.<b>.<rec part>, for the same block b."""
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
    for v in model.graph.input:
        if v.name.startswith(STATE_IN):
            b, _, part = v.name[len(STATE_IN):].partition(".")
            if part in RECURRENT_PARTS:
                blocks[b][0].append(v.name)
    for v in model.graph.output:
        if v.name.startswith(STATE_OUT):
            b, _, part = v.name[len(STATE_OUT):].partition(".")
            if part in RECURRENT_PARTS:
                blocks[b][1].append(v.name)

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


def weight_matmuls(model: onnx.ModelProto) -> list[WeightMatMul]:
    inits = _initializers(model)
    rec = recurrent_nodes(model)
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


def load_fp32_standard(path: str | Path, verb: str) -> tuple[onnx.ModelProto, Manifest]:
    """The graph a precision pass starts from: the exporter's FP32 standard flavour, and its manifest."""
    model = load(path)
    manifest = manifest_of(model)
    if manifest.precision != "fp32":
        raise GraphError(f"{path} is already {manifest.precision}; {verb} the FP32 graph")
    if manifest.flavour != "standard":
        raise GraphError(f"{path} is the {manifest.flavour!r} flavour; precision passes take the standard graph "
                         "(lram export --flavour standard)")
    return model, manifest


def replace_nodes(graph: onnx.GraphProto, nodes: list) -> None:
    """Swap in a rewritten node list and drop the initializers no node reads any more."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {t for n in graph.node for t in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def graph_bytes(model: onnx.ModelProto) -> int:
    return sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer)


def save_with_manifest(model: onnx.ModelProto, out: str | Path, manifest: Manifest, extra: dict | None = None) -> Path:
    """Write ``model`` to ``out`` (.onnx) with ``manifest`` embedded and as the sidecar, atomically.

    ``extra`` lands in the manifest's ``producer`` dict (e.g. the calibration summary)."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise GraphError(f"output path must end in .onnx, got {out}")
    if extra:
        manifest = dataclasses.replace(manifest, producer={**manifest.producer, **extra})
    text = manifest.to_json()
    Manifest.from_json(text)  # round-trips
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    side_tmp = tmp + ".json"
    try:
        onnx.save(model, tmp)
        onnx.checker.check_model(tmp, full_check=True)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; the graph is not a secret
        Path(side_tmp).write_text(text)
        os.replace(tmp, out)
        os.replace(side_tmp, sidecar_path(out))
    except BaseException:
        for p in (tmp, side_tmp):
            if os.path.exists(p):
                os.unlink(p)
        raise
    return out


def with_precision(manifest: Manifest, precision: str) -> Manifest:
    if precision not in ("fp32", "fp16", "int8", "int8-nbits", "int4-nbits"):
        raise ManifestError(f"unknown precision {precision!r}")
    return dataclasses.replace(manifest, precision=precision)


def summary_json(d: dict) -> str:
    return json.dumps(d, indent=2, sort_keys=True, default=float)
