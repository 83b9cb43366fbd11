"""``mcdose train-residual DATASET_DIR --out MODEL [--epochs E]``: train the residual CNN.

Composition only: :func:`residualnet.train.train` does the work.  Several GPUs::

    torchrun --nproc_per_node=4 -m mcdose_cli.main train-residual DATASET --out model.pt

(only rank 0 prints and writes files).
"""

from __future__ import annotations

import math
import os

import click

from mcdose.errors import McdoseError
from residualnet.losses import (
    LOSSES,
    NRMSE_FLOOR_DEFAULT,
    NRMSE_REFERENCES,
    REGION_LOSS_DEFAULTS,
)


def _import_train():
    try:
        from residualnet import train as train_module
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "torch":
            raise McdoseError(
                "the residual CNN needs PyTorch: pip install 'mcdose[cnn]' (CPU wheel: "
                "pip install torch --index-url https://download.pytorch.org/whl/cpu)"
            ) from None
        raise
    return train_module


@click.command(name="train-residual")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Model file to write (e.g. model.pt); model.ckpt, model.log.csv and "
                   "model.loss.png go next to it.")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True,
              help="Total epochs (a resumed run continues up to this number).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Slices per batch (per GPU under torchrun).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True, help="Initial Adam learning rate.")
@click.option("--loss", type=click.Choice(LOSSES), default="mse", show_default=True,
              help="MSE (paper); body: outside-body voxels weighted 0.1; poisson: body voxels "
                   "weighted 1/(VDK + floor), the MC tally's inverse variance; organ: MSE plus "
                   "the squared relative error of every labelled region's mean dose per "
                   "slice; mde: the same, absolute (the per-slice MDE); poisson-mde: the "
                   "poisson voxel term plus the mde region term.")
@click.option("--region-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the region term of "
                   + "/".join(REGION_LOSS_DEFAULTS) + " (default "
                   + " / ".join(f"{w:g}" for w, _ in REGION_LOSS_DEFAULTS.values()) + ").")
@click.option("--region-floor", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Normalised dose added to the true region mean in the region term's "
                   "denominator (default 0.05 for organ, else 0.01).")
@click.option("--lesion-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of a lesion's region term against an organ's (region losses).")
@click.option("--lesion-min-voxels", type=click.IntRange(min=1), default=None,
              help="Fewest voxels of a lesion in a slice for the region term (default: 4, "
                   "as organs).")
@click.option("--nrmse-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Region losses: weight of the mean per-slice region NRMSE term, the "
                   "relative voxel error inside every region (0: off; e.g. 0.01).")
@click.option("--nrmse-floor", type=click.FloatRange(min=0, min_open=True),
              default=NRMSE_FLOOR_DEFAULT,
              show_default=True,
              help="Normalised dose in the NRMSE term's denominator: errors of regions above "
                   "it count relative, below it about absolute.")
@click.option("--nrmse-reference", type=click.Choice(NRMSE_REFERENCES), default="truth",
              show_default=True,
              help="What the NRMSE term divides by: the true dose (the NRMSE itself) or the "
                   "VDK (its square; weights free of the truth, so no bias of the mean).")
@click.option("--ema", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0,
              show_default=True,
              help="Decay of the weights' moving average, validated and saved (0: off; "
                   "e.g. 0.999).")
@click.option("--select-by", type=click.Choice(["loss", "goals"]), default="loss",
              show_default=True,
              help="Best epoch (model file, early stopping) by the validation loss, or by the "
                   "validation cases' accuracy goals: fewest missed, then the lowest mean "
                   "ratio of CNN value to goal threshold.")
@click.option("--early-stopping", type=click.IntRange(min=0), default=20, show_default=True,
              help="Stop after this many epochs without validation improvement (0: never).")
@click.option("--resume", is_flag=True, help="Continue from MODEL's checkpoint (model.ckpt).")
@click.option("--overwrite", is_flag=True, help="Start afresh over an existing model/checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of weights, shuffling and augmentation.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default="auto",
              show_default=True, help="Mixed precision (auto: bf16/fp16 on CUDA, off on CPU).")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Data-loading processes (per GPU).")
@click.option("--no-augment", is_flag=True, help="No random rotations/flips.")
@click.option("--width", type=click.IntRange(min=2), default=16, show_default=True,
              help="U-Net initial filters.")
@click.option("--levels", type=click.IntRange(min=1, max=8), default=4, show_default=True,
              help="U-Net down/up levels.")
@click.option("--pack-size", type=click.IntRange(min=1), default=11, show_default=True,
              help="Slices per input pack (odd; the 3-D stem needs more than 8).")
@click.option("--stem-channels", type=click.IntRange(min=1), default=8, show_default=True,
              help="Channels of each Conv3d stem layer.")
@click.option("--max-batches", type=click.IntRange(min=1), default=None,
              help="Cap on training batches per epoch (smoke runs).")
@click.option("--single-constant", is_flag=True,
              help="One normalisation constant for SPECT and dose, as the paper.")
def train_residual(dataset_dir, out, epochs, batch_size, lr, loss, region_weight, region_floor,
                   lesion_weight, lesion_min_voxels, nrmse_weight, nrmse_floor, nrmse_reference,
                   ema, select_by, early_stopping, resume,
                   overwrite,
                   seed, device, amp, workers, no_augment, width, levels, pack_size,
                   stem_channels, max_batches, single_constant) -> None:
    """Train the residual CNN (DblurDoseNet-style) on DATASET_DIR's train/val split."""
    train_module = _import_train()
    from residualnet.model import ModelConfig

    rank = int(os.environ.get("RANK", "0"))
    model = ModelConfig(pack_size=pack_size, unet_width=width, unet_levels=levels,
                        stem_channels=(stem_channels,) * 3)
    config = train_module.TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, organ_weight=region_weight,
        organ_floor=region_floor, lesion_weight=lesion_weight,
        lesion_min_voxels=lesion_min_voxels, nrmse_weight=nrmse_weight,
        nrmse_floor=nrmse_floor, nrmse_reference=nrmse_reference, ema_decay=ema,
        select_by=select_by,
        early_stopping=early_stopping,
        seed=seed, device=device, amp=amp, workers=workers, augment=not no_augment,
        max_batches=max_batches, single_constant=single_constant, model=model,
    )

    def report(row: dict) -> None:
        val = row["val_loss"]
        val_text = f"{val:.4g}" if math.isfinite(val) else "—"
        if "val_goals" in row:
            val_text += (f"  goals missed {int(row['val_goals_missed'])}/"
                         f"{int(row['val_goals'])} (ratio {row['val_goal_ratio']:.3f})")
        click.echo(
            f"epoch {int(row['epoch'])}/{epochs}  train {row['train_loss']:.4g}  "
            f"val {val_text}  lr {row['lr']:.2g}  {row['seconds']:.1f} s"
            + ("  *" if row["best"] else "")
        )

    result = train_module.train(
        dataset_dir, out, config, resume=resume, overwrite=overwrite, progress=rank == 0,
        on_epoch=report if rank == 0 else None,
    )
    if rank == 0:
        stop = " (early stop)" if result.stopped_early else ""
        click.echo(
            f"model {result.model_path}: {result.parameters:,} parameters, best epoch "
            f"{result.best_epoch} of {result.epochs_run}{stop}, loss {result.best_loss:.4g}; "
            f"log {result.log_path}, curve {result.plot_path}"
        )
