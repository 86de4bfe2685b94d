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
    "verify": "lram.cli.export_commands:verify_",
    "compile": "lram.cli.compile_commands:compile_",
    "run": "lram.cli.run_commands:run",
    "bench": "lram.cli.bench_commands:bench",
    "calibrate": "lram.cli.calibrate_commands:calibrate",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as e:
            missing = getattr(e, "name", None) or str(e)

            @click.command(name=name, help=f"(unavailable: {missing} is not installed)")
            def unavailable():
                raise click.ClickException(
                    f"'lram {name}' needs {missing}, which is not installed here. "
                    "Install the matching extra, e.g. pip install 'lram-deploy[export]'."
                )

            return unavailable


@click.group(cls=LazyGroup)
@click.version_option(package_name="lram-deploy")
def cli():
    """lram: export, verify, compile, calibrate, benchmark and run Large Recurrent Action Models."""


if __name__ == "__main__":
    cli()
