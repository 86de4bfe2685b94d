"""Checks a command makes before its work starts: is the input an ONNX model at all, can the outputs be
written. A run that takes minutes must not end in a traceback because ``--report`` points below a file, and
a truncated download must not surface as a protobuf DecodeError."""
from __future__ import annotations

import click

from lram.runtime.model_files import unwritable


def check_onnx_file(path) -> None:
    """One-line ClickException unless ``path`` parses as an ONNX model with a graph (weights stored outside
    the file are not read): the runtime's reader (runtime/model_files.graph_metadata) makes the check."""
    from lram.runtime.manifest import ManifestError
    from lram.runtime.model_files import graph_metadata

    try:
        graph_metadata(path)
    except ManifestError as e:
        raise click.ClickException(str(e)) from None


def check_output_file(path, option: str) -> None:
    """One-line ClickException unless the file ``path`` can be written (its folders may still be missing)."""
    if path is not None and (why := unwritable(path)):
        raise click.ClickException(f"{option} {path}: cannot write there: {why}")


def check_output_dir(path, option: str) -> None:
    if path is not None and (why := unwritable(path, is_dir=True)):
        raise click.ClickException(f"{option} {path}: cannot write there: {why}")
