"""``mcdose demo``: the whole pipeline on a small default (see mcdose_cli.demo)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder for everything the demo writes (resumable).")
@click.option("--cases", type=click.IntRange(min=4), default=4, show_default=True,
              help="Virtual patients (train/val/test split by case).")
@click.option("--preset", type=click.Choice(["small", "tiny", "paper"]), default="small",
              show_default=True, help="Phantom grid.")
@click.option("--histories", type=click.IntRange(min=10), default=2_000_000, show_default=True,
              help="Monte Carlo decays per case.")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Epochs of the small CNN the demo trains (to show training).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--paper-spect", is_flag=True,
              help="Use the paper's SPECT protocol (128 views, OSEM 16x4; slower).")
@click.option("--own-model", is_flag=True,
              help="Evaluate and run the patient step with the demo's model, not the shipped "
              "one.")
def demo(out_dir, cases, preset, histories, epochs, seed, device, paper_spect, own_model):
    """Run the whole pipeline on a small default and write a report.

    \b
    virtual patients -> SPECT -> Monte Carlo ground truth -> VDK -> a small residual CNN
    trained briefly -> evaluation table of the shipped CNN (MDE/NRMSE per organ) ->
    mcdose dose --method cnn (shipped model) on a held-out patient.

    Under 10 minutes on 2 CPU cores with the defaults (README; faster on a GPU); rerunning
    resumes.
    """
    from mcdose_cli.demo import DemoConfig, run_demo

    protocol = None if paper_spect else DemoConfig().spect_protocol
    config = DemoConfig(cases=cases, preset=preset, histories=histories, epochs=epochs,
                        seed=seed, device=device, spect_protocol=protocol,
                        shipped=not own_model)  # fmt: skip
    result = run_demo(out_dir, config, echo=click.echo, progress=True)
    total = sum(result.seconds.values())
    click.echo(f"demo finished in {total / 60:.1f} min; open {result.report_html}")
