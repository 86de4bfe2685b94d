"""Cut an ONNX graph at the nodes a native kernel runs: ONNX Runtime segments and native nodes, in order.

A native-flavour graph is one ONNX file (one manifest, one artifact) in which each mLSTM layer core and each
sLSTM recurrence is a node of the ``lram.native`` domain that ONNX Runtime cannot run. This cuts it, at load time, into stages: stage s is an
ONNX segment (every ordinary node whose inputs are available once the native nodes before stage s have run)
followed by the native nodes that become runnable then. Values that cross a cut (a block's q, k, v, the
gates, the masks) pass through a dict of arrays; the graph's state inputs go straight to the native nodes and
their outputs straight to the graph's outputs, so the matrix memory never enters ONNX Runtime.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import helper, numpy_helper, shape_inference


@dataclass
class Segment:
    model: onnx.ModelProto  # a standalone graph ONNX Runtime can load
    inputs: list[str]
    outputs: list[str]


@dataclass
class NativeNode:
    op: str
    inputs: list[str]
    outputs: list[str]
    weights: dict  # the inputs that are the graph's initializers (the layer's weights), as arrays


@dataclass
class Stage:
    segment: Segment | None
    natives: list[NativeNode] = field(default_factory=list)


def split(model: onnx.ModelProto, domain: str) -> list[Stage]:
    """The stages of ``model``, cut at every node of ``domain`` (see the module's docstring)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")}
    level = {i.name: 0 for i in graph.input} | {name: 0 for name in inits} | {name: 0 for name in consts}
    nodes = [n for n in graph.node if n.output[0] not in consts]
    own: dict[int, int] = {}  # the earliest stage each node can run in
    for node in nodes:  # ONNX keeps nodes in topological order; a native node's outputs belong to the next stage
        lv = own[id(node)] = max((level[i] for i in node.input if i), default=0)
        for o in node.output:
            level[o] = lv + 1 if node.domain == domain else lv
    # As late as possible: an ordinary node runs in the stage of its first reader, so that what a block needs
    # from the graph's inputs (its conv window, its sLSTM state, the episode mask) is computed in that block's
    # segment instead of being computed up front and handed through every cut.
    readers: dict[str, list] = {}
    for node in nodes:
        for i in node.input:
            readers.setdefault(i, []).append(node)
    stage_of: dict[int, int] = {}
    for node in reversed(nodes):
        later = [] if node.domain == domain else [stage_of[id(r)] for o in node.output for r in readers.get(o, ())]
        stage_of[id(node)] = max(own[id(node)], min(later)) if later else own[id(node)]
    stages: dict[int, tuple[list, list]] = {}  # stage -> (ordinary nodes, native nodes)
    for node in nodes:
        ordinary, natives = stages.setdefault(stage_of[id(node)], ([], []))
        (natives if node.domain == domain else ordinary).append(node)
    types = _value_types(model)
    # what each stage must hand on: values read by a later stage, and the graph's outputs
    later_reads: dict[int, set] = {}
    for lv, (ordinary, natives) in stages.items():
        for n in [*ordinary, *natives]:
            for i in n.input:
                later_reads.setdefault(lv, set()).add(i)
    graph_outputs = [o.name for o in graph.output]
    result = []
    for lv in sorted(stages):
        ordinary, natives = stages[lv]
        segment = None
        if ordinary:
            produced = {o for n in ordinary for o in n.output}
            needed = set(graph_outputs) | {i for s, reads in later_reads.items() if s > lv for i in reads} \
                | {i for n in natives for i in n.input}
            outputs = [o for n in ordinary for o in n.output if o in needed]
            segment = _segment(model, ordinary, produced, outputs, inits, consts, types, f"stage{lv}")
        result.append(Stage(segment, [NativeNode(n.op_type, list(n.input), list(n.output), _constants(n, inits, consts))
                                      for n in natives]))
    return result


def _constants(node, inits, consts) -> dict:
    """The node's inputs that are constants of the graph (initializers or Constant nodes), as arrays."""
    out = {i: numpy_helper.to_array(inits[i]) for i in node.input if i in inits}
    for i in node.input:
        if i in consts:
            value = next((a.t for a in consts[i].attribute if a.name == "value"), None)
            if value is None:
                raise ValueError(f"{node.op_type} reads the Constant {i!r}, which is not a tensor value")
            out[i] = numpy_helper.to_array(value)
    return out


def _value_types(model: onnx.ModelProto) -> dict:
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # shape inference is a convenience here; the declared types below still apply
        inferred = model
    g = inferred.graph
    return {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}


def _segment(model, nodes, produced, outputs, inits, consts, types, name) -> Segment:
    reads = [i for n in nodes for i in n.input if i]
    used_consts = [consts[i] for i in dict.fromkeys(reads) if i in consts]
    inputs = [i for i in dict.fromkeys(reads) if i not in produced and i not in inits and i not in consts]

    def info(v):
        return helper.make_tensor_value_info(v, types.get(v) or onnx.TensorProto.FLOAT, None)

    graph = helper.make_graph(
        [*used_consts, *nodes], name, [info(i) for i in inputs], [info(o) for o in outputs],
        initializer=[inits[i] for i in dict.fromkeys(reads) if i in inits])
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx", "com.microsoft")]
    seg = helper.make_model(graph, opset_imports=opsets, ir_version=model.ir_version)
    return Segment(seg, inputs, outputs)
