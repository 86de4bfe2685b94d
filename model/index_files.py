"""The small JSON index files that say what a folder holds (a checkpoint's config.json, an episode folder's
dataset.json): read in one place, every problem a one-line error of the caller's type naming the file."""
from __future__ import annotations

import json
from pathlib import Path


def read_index(path: Path, fmt: str, error: type[Exception], missing: str, what: str) -> dict:
    """The JSON object in ``path`` whose ``format`` is ``fmt``; ``missing`` is the message when it is absent,
    ``what`` names the kind of file ("lram checkpoint config")."""
    if not path.exists():
        raise error(missing)
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise error(f"{path} is not an {what} (format={found!r})")
    return meta
