"""The one ``lram`` command. Each subcommand lives in its own module and is imported only when called,
so ``lram run`` on a robot never imports torch."""
from __future__ import annotations

import importlib

import click

# name -> "module:function"; modules are imported lazily.
COMMANDS = {
    "info": "lram.cli.model_commands:info",
    "train": "lram.cli.model_commands:train",
    "evaluate": "lram.cli.model_commands:evaluate",
    "collect": "lram.cli.model_commands:collect",
    "export": "lram.cli.export_commands:export",
    "verify": "lram.cli.verify_commands:verify_",
    "compile": "lram.cli.compile_commands:compile_",
    "run": "lram.cli.run_commands:run",
    "serve": "lram.cli.serve_commands:serve",
    "bench": "lram.cli.bench_commands:bench",
    "calibrate": "lram.cli.calibrate_commands:calibrate",
}


# Third-party modules a command may need, and the extra that brings each: a robot installs only [runtime].
EXTRA_OF = {"torch": "export", "xlstm": "export", "onnx": "export", "onnxscript": "export",
            "safetensors": "export", "yaml": "export", "gymnasium": "sim", "metaworld": "sim", "mujoco": "sim",
            "onnxruntime": "runtime", "matplotlib": "runtime", "tensorrt": "tensorrt", "cuda": "tensorrt",
            "cyclonedds": "ros2", "rosbags": "ros2"}


def _missing_dependency(command: str, module: str) -> click.ClickException:
    extra = EXTRA_OF.get(module.split(".")[0], "dev")
    return click.ClickException(f"'lram {command}' needs {module}, which is not installed here. "
                                f"Install the matching extra, e.g. pip install 'lram-deploy[{extra}]'.")


def _guard_imports(command: click.Command, name: str) -> click.Command:
    """Commands import their heavy dependencies when they run: turn a missing one into a clear message."""
    invoke = command.invoke

    def guarded(ctx):
        try:
            return invoke(ctx)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in EXTRA_OF:
                raise _missing_dependency(name, e.name) from None
            raise

    command.invoke = guarded
    return command


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return _guard_imports(getattr(importlib.import_module(module), attr), name)
        except ImportError as e:
            missing = getattr(e, "name", None) or str(e)

            @click.command(name=name, help=f"(unavailable: {missing} is not installed)",
                           context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                             "help_option_names": []})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args):
                raise _missing_dependency(name, missing)

            return unavailable


@click.group(cls=LazyGroup)
@click.version_option(package_name="lram-deploy")
def cli():
    """lram: export, verify, compile, calibrate, benchmark and run Large Recurrent Action Models."""


if __name__ == "__main__":
    cli()
