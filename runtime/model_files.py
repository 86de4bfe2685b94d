"""Finding a model's manifest: inside the ONNX metadata, or in the sidecar file beside the graph/engine."""
from __future__ import annotations

import json
from pathlib import Path

from .manifest import METADATA_KEY, Manifest, ManifestError, sidecar_path


def read_manifest(model_path: str | Path, metadata: dict | None = None) -> Manifest:
    """Read the manifest of ``model_path``.

    ``metadata`` is the graph's metadata_props as a dict (a backend has it already loaded; reading it again
    with the onnx package would cost a second parse and an import the robot does not need). The embedded copy
    wins because it cannot be separated from its graph; when both copies exist they must agree, because a
    stale sidecar beside a re-exported graph is exactly the bug this check exists for.
    """
    embedded = (metadata or {}).get(METADATA_KEY)
    side = sidecar_path(model_path)
    side_text = side.read_text() if side.is_file() else None
    if embedded is None and side_text is None:
        raise ManifestError(f"{model_path}: no manifest (no '{METADATA_KEY}' metadata in the graph and no {side.name} beside it)")
    if embedded is not None and side_text is not None:
        try:
            same = json.loads(embedded) == json.loads(side_text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{model_path}: manifest is not valid JSON: {e}") from None
        if not same:
            raise ManifestError(f"{model_path}: the embedded manifest and {side.name} disagree; re-export or delete the stale sidecar")
    return Manifest.from_json(embedded if embedded is not None else side_text)
