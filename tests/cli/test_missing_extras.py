"""A robot installs lram-deploy[runtime] only: commands that need torch, onnx or a simulator must say which
extra to install, not print a traceback."""
import click
import pytest
from click.testing import CliRunner

from lram.cli.main import _guard_imports


def _command_missing(module: str) -> click.Command:
    @click.command()
    def needs():
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)

    return needs


@pytest.mark.parametrize("module,extra", [("torch", "export"), ("onnx.checker", "export"), ("gymnasium", "sim"),
                                          ("tensorrt", "tensorrt")])
def test_missing_dependency_names_the_extra(module, extra):
    res = CliRunner().invoke(_guard_imports(_command_missing(module), "demo"), [])
    assert res.exit_code == 1
    assert f"needs {module}" in res.output and f"lram-deploy[{extra}]" in res.output
    assert "Traceback" not in res.output


def test_our_own_import_errors_are_not_disguised():
    res = CliRunner().invoke(_guard_imports(_command_missing("lram.nonexistent"), "demo"), [])
    assert isinstance(res.exception, ModuleNotFoundError)
