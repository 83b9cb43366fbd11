"""``mcdose evaluate DATASET_DIR --model MODEL --out REPORT_DIR``: test-split accuracy report.

Composition only: :func:`residualnet.evaluate.evaluate` computes MDE / NRMSE of VDK,
MC-on-SPECT and the CNN against ``dose/mc`` per organ and lesion, DVHs and figures, writes
``report.json`` and ``report.md``; this command prints the summary table.
"""

from __future__ import annotations

import click

from mcdose.errors import McdoseError


@click.command(name="evaluate")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--model", "model", required=True, type=click.Path(path_type=str),
              help="Model file from 'mcdose train-residual'.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Report folder (created).")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test",
              show_default=True, help="Which cases to evaluate.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--batch-slices", type=click.IntRange(min=1), default=None,
              help="Slices per forward pass (default 16 on CPU, 32 on CUDA).")
@click.option("--figures", type=click.IntRange(min=0), default=3, show_default=True,
              help="Slice and DVH figures for this many cases.")
@click.option("--no-crop", is_flag=True,
              help="Run the network on full slices instead of the body's bounding box.")
def evaluate(dataset_dir, model, out, split, device, batch_slices, figures, no_crop) -> None:
    """Compare VDK, MC-on-SPECT and the CNN with Monte Carlo on DATASET_DIR's test cases."""
    try:
        from residualnet.evaluate import evaluate as run_evaluation
        from residualnet.evaluate import format_summary_table
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "torch":
            raise McdoseError("the residual CNN needs PyTorch: pip install 'mcdose[cnn]'") from None
        raise
    report = run_evaluation(
        dataset_dir, model, out, split=split, device=device, batch_slices=batch_slices,
        figures=figures, crop_to_body=not no_crop, progress=True,
    )
    click.echo(format_summary_table(report))
    click.echo(f"report: {out}/report.md, {out}/report.json")
