"""Entry point of the ``mcdose`` command.

Subcommands live in :mod:`mcdose_cli.commands`, one module each, and are imported only when
they are invoked so that ``mcdose --help`` stays fast and a CPU-only install never touches
GPU libraries.  Errors meant for the user (:class:`mcdose.errors.McdoseError`, click usage
errors) are printed as one line on stderr with a non-zero exit status.
"""

from __future__ import annotations

import importlib
import sys

import click

from mcdose import __version__
from mcdose.errors import McdoseError

#: subcommand name -> (module in mcdose_cli.commands, click command attribute, short help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "nuclide": ("nuclide", "nuclide", "Show a nuclide's ICRP-107 emissions."),
    "phantom": ("phantom", "phantom", "Generate virtual-patient case files."),
    "spect": ("spect", "spect", "Simulate SPECT acquisition and reconstruction for cases."),
    "simulate": ("simulate", "simulate", "Monte Carlo absorbed-dose rate (cases or images)."),
    "kernel": ("kernel", "kernel", "Generate a voxel dose kernel by Monte Carlo."),
    "vdk": ("vdk", "vdk", "Voxel-dose-kernel convolution dose for cases."),
    "build-dataset": ("build_dataset", "build_dataset", "Build a training dataset on Dask."),
    "train-residual": ("train_residual", "train_residual", "Train the residual CNN."),
    "evaluate": ("evaluate", "evaluate", "Evaluate VDK, MC-on-SPECT and CNN on a test split."),
    "dose": ("dose", "dose", "Patient dosimetry from SPECT/CT."),
    "models": ("models", "models", "List the shipped residual-CNN models and their cards."),
    "demo": ("demo", "demo", "Run the whole pipeline on a small default."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        module_name, attribute, _ = SUBCOMMANDS[cmd_name]
        try:
            module = importlib.import_module(f"mcdose_cli.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("mcdose_cli.commands"):
                return _unavailable(cmd_name)
            raise
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str) -> click.Command:
    @click.command(name=name, help=f"{SUBCOMMANDS[name][2]} (not available in this build)")
    def command() -> None:
        raise McdoseError(f"'mcdose {name}' is not available in this build")

    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcdose")
def cli() -> None:
    """mcdose: patient-specific dosimetry for radionuclide therapy (Lu-177 first).

    Monte Carlo ground truth, voxel-dose-kernel convolution and a residual CNN, chained
    through HDF5 case files.  Units: activity in MBq per voxel, dose rate in Gy/s,
    density in g/cm³, spacing in mm (x, y, z).
    """


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors become one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="mcdose", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("mcdose: interrupted; nothing was written", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("mcdose: interrupted; nothing was written", err=True)
        return 130
    except click.ClickException as exc:
        message = exc.format_message().replace("\n", " ")
        click.echo(f"mcdose: error: {message}", err=True)
        return exc.exit_code if exc.exit_code else 2
    except McdoseError as exc:
        message = str(exc).strip().replace("\n", " ")
        click.echo(f"mcdose: error: {message}", err=True)
        return 2
    except FileNotFoundError as exc:
        click.echo(f"mcdose: error: file not found: {exc.filename or exc}", err=True)
        return 2
    except OSError as exc:  # read-only folder, full disk, ... outside the library's checks
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        reason = (exc.strerror or str(exc)).strip().replace("\n", " ")
        click.echo(f"mcdose: error: {where}{reason}", err=True)
        return 2
    except MemoryError:
        click.echo("mcdose: error: out of memory; use a smaller grid, kernel or batch",
                   err=True)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
