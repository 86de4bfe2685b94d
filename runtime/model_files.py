"""The files of a model artifact: the graph (or engine) and its manifest, read and written in one place.

A manifest lives inside an ONNX graph (``metadata_props``) and beside any artifact as ``NAME.manifest.json``
(an engine has only the sidecar). Every command reads it through ``read_manifest`` and writes artifacts
through ``write_artifact``, so the agreement check and the atomic write hold everywhere. Only the standard
library here: the runtime ships to robots without onnx.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from .manifest import METADATA_KEY, Manifest, ManifestError, sidecar_path

ONNX_SUFFIX = ".onnx"


def graph_metadata(path: str | Path) -> dict:
    """The ``metadata_props`` of an ONNX graph, read with onnx when it is installed, else with ONNX Runtime."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ManifestError(f"{path} is empty (0 bytes), not an ONNX model")
    try:
        import onnx
    except ImportError:
        onnx = None
    try:
        if onnx is not None:
            model = onnx.load(str(path), load_external_data=False)
            if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
                raise ValueError("no graph in it")
            return {p.key: p.value for p in model.metadata_props}
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return dict(sess.get_modelmeta().custom_metadata_map)
    except Exception as e:  # protobuf / ORT errors on a truncated or foreign file: the same problem to a user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ManifestError(f"{path} is not a readable ONNX model (truncated, or not ONNX at all: {reason})") from None


def read_manifest(model_path: str | Path, metadata: dict | None = None) -> Manifest:
    """Read the manifest of ``model_path`` (an ONNX graph or an engine).

    ``metadata`` is the graph's metadata_props as a dict when a backend has loaded it already (saves a second
    parse); for an ONNX file without it the metadata is read here. The embedded copy wins because it cannot be
    separated from its graph; when both copies exist they must agree, because a stale sidecar beside a
    re-exported graph is exactly the bug this check exists for.
    """
    model_path = Path(model_path)
    if metadata is None and model_path.suffix.lower() == ONNX_SUFFIX:
        metadata = graph_metadata(model_path)
    embedded = (metadata or {}).get(METADATA_KEY)
    side = sidecar_path(model_path)
    side_text = side.read_text() if side.is_file() else None
    if embedded is None and side_text is None:
        raise ManifestError(f"{model_path}: no manifest (no '{METADATA_KEY}' metadata in the graph and no {side.name} "
                            "beside it): export it with 'lram export'")
    if embedded is not None and side_text is not None:
        try:
            same = _comparable(json.loads(embedded)) == _comparable(json.loads(side_text))
        except json.JSONDecodeError as e:
            raise ManifestError(f"{model_path}: manifest is not valid JSON: {e}") from None
        if not same:
            raise ManifestError(f"{model_path}: the embedded manifest and {side.name} disagree; re-export or delete the stale sidecar")
    return Manifest.from_json(embedded if embedded is not None else side_text)


def sidecar_json(model_path: str | Path) -> dict:
    """The sidecar as raw JSON ({} when absent): an engine's sidecar also records how it was built."""
    side = sidecar_path(model_path)
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{side}: not valid JSON: {e}") from None


def _comparable(d: dict) -> dict:
    # an engine's sidecar adds how it was built; the contract itself must be the same
    return {k: v for k, v in d.items() if k != "tensorrt"} if isinstance(d, dict) else d


def embed_manifest(model_proto, manifest: Manifest) -> None:
    """Put ``manifest`` into an ONNX ModelProto's metadata (replacing any other metadata)."""
    del model_proto.metadata_props[:]
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, manifest.to_json()


def unwritable(path: str | Path, is_dir: bool = False) -> str | None:
    """Why ``path`` (a file, or a folder with ``is_dir``) cannot be written, or None. Missing folders count
    as creatable when the nearest existing one allows it; nothing is created here."""
    path = Path(path).absolute()
    if path.exists():
        if is_dir != path.is_dir():
            return f"{path} is {'a file' if path.is_file() else 'a directory'}"
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None


def check_writable(out: str | Path) -> Path:
    """Fail before any work when the file ``out`` cannot be written (``write_artifact`` creates its folder)."""
    out = Path(out)
    why = unwritable(out)
    if why is not None and not out.parent.is_dir():
        raise ManifestError(f"cannot create the output folder {out.parent}: {why}")
    if why is not None:
        raise ManifestError(f"cannot write {out}: {why}")
    return out


def write_artifact(out: str | Path, manifest: Manifest | dict, write: Callable[[Path], None]) -> Path:
    """Write an artifact and its sidecar manifest atomically: both appear, or neither changes.

    ``write(tmp)`` writes the artifact itself to a temporary file in the destination folder (and may check
    it there); a failure anywhere removes the temporaries and leaves any old artifact in place. The files
    get the usual permissions (mkstemp's 0600 is for secrets; a graph is meant to be shared)."""
    out = check_writable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ManifestError(f"cannot create the output folder {out.parent}: {e.strerror or e}") from None
    text = json.dumps(manifest, indent=2, sort_keys=True) if isinstance(manifest, dict) else manifest.to_json()
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as e:
        raise ManifestError(f"cannot write into {out.parent}: {e.strerror or e}") from None
    os.close(fd)
    tmp, side_tmp = Path(tmp_name), Path(tmp_name + ".json")
    try:
        write(tmp)
        side_tmp.write_text(text)
        umask = os.umask(0)
        os.umask(umask)
        for p in (tmp, side_tmp):
            os.chmod(p, 0o666 & ~umask)
        os.replace(tmp, out)
        os.replace(side_tmp, sidecar_path(out))
    except BaseException:
        for p in (tmp, side_tmp):
            if p.exists():
                p.unlink()
        raise
    return out
