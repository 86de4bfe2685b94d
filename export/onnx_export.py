"""Export a trained LRAM to a single-step recurrent ONNX graph (+ its manifest), atomically."""
from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from lram.model.lram import LRAM
from lram.runtime.manifest import ManifestError
from lram.runtime.model_files import check_writable, embed_manifest, write_artifact

from .manifest_builder import build_manifest
from .step_graph import FLAVOUR_DOMAINS, StepGraph

DEFAULT_OPSET = 17  # TensorRT 10.3 (JetPack 6) parses opsets 9-20


class ExportError(RuntimeError):
    """The model cannot be exported as asked, or the output cannot be written."""


def _example_inputs(graph: StepGraph, batch: int):
    task = graph.task
    if task.obs_kind == "state":
        obs = torch.zeros(batch, task.obs_shape[0])
    else:
        obs = torch.zeros(batch, *task.obs_shape, dtype=torch.uint8)
    # A non-zero state so that no branch of the graph can be specialised on "the state is zero".
    state = [torch.randn(batch, *spec.shape).abs() + 0.1 for spec in graph.state]
    first = torch.tensor([i % 2 == 0 for i in range(batch)])
    return (obs, torch.ones(batch, 1), torch.ones(batch, 1), first, *state)


def export_onnx(model: LRAM, out: str | Path, opset: int = DEFAULT_OPSET, batch: int | None = None,
                with_logits: bool = True, mode: str = "chunk", flavour: str = "standard") -> Path:
    """Write ``out`` (.onnx) and ``out``'s ``.manifest.json``. ``batch=None`` means a dynamic batch dimension."""
    return export_graph(StepGraph(model.eval(), mode=mode, flavour=flavour), out, opset, batch, with_logits)


def export_graph(graph: StepGraph, out: str | Path, opset: int = DEFAULT_OPSET, batch: int | None = None,
                 with_logits: bool = True) -> Path:
    """Export a prepared ``StepGraph`` (its blocks declare its state) as ``out`` + its manifest, atomically."""
    flavour = graph.flavour
    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"output path must end in .onnx, got {out}")
    if not 14 <= opset <= 21:
        raise ExportError(f"opset {opset} is not supported (14..21; 17 is the default, TensorRT 10.3 parses 9..20)")
    try:
        check_writable(out)
    except ManifestError as e:
        raise ExportError(str(e)) from None
    graph = graph.eval()
    manifest = build_manifest(graph, opset, with_logits=with_logits)
    if batch is not None:
        for spec in (*manifest.inputs, *manifest.outputs):
            spec.shape[0] = batch
    input_names = [t.name for t in manifest.inputs]
    output_names = [t.name for t in manifest.outputs]
    dynamic = None if batch is not None else {n: {0: "batch"} for n in input_names + output_names}

    def write(tmp: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            wrapped = _DropLogits(graph) if not with_logits else graph
            torch.onnx.export(
                wrapped, _example_inputs(graph, batch or 2), str(tmp), input_names=input_names,
                output_names=output_names, dynamic_axes=dynamic, opset_version=opset, dynamo=False,
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        embed_manifest(proto, manifest)
        proto.producer_name = "lram-deploy"
        foreign = sorted({n.domain for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
        expected = sorted(FLAVOUR_DOMAINS[flavour])
        if foreign != expected:
            raise ExportError(f"the {flavour} graph must use exactly the op domains {expected} besides ONNX, "
                              f"found {foreign}")
        if flavour == "plugin":
            from .plugin_expand import plugin_nodes

            plugin_nodes(proto)  # every node names a known plugin and version
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)

    try:
        return write_artifact(out, manifest, write)
    except ManifestError as e:
        raise ExportError(str(e)) from None


class _DropLogits(torch.nn.Module):
    def __init__(self, graph: StepGraph):
        super().__init__()
        self.graph = graph

    def forward(self, *args):
        out = self.graph(*args)
        return (out[0], *out[2:])
