"""The end-to-end demonstration behind ``mcdose demo``: composition only, no physics.

virtual patients → simulated SPECT → Monte Carlo ground truth → VDK → a small residual CNN
trained briefly (to show training) → evaluation table of the shipped model (MDE / NRMSE per
organ for VDK and CNN; the demo's own model where the shipped one does not fit the grid) →
``mcdose dose --method cnn`` with the shipped model on a held-out patient, with its report.
Every step is resumable: rerunning the demo in the same folder skips what is already done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: A faster SPECT protocol than the paper's (128 views, OSEM 16×4, 4.7952 mm) so that the
#: demo finishes in minutes on 2 CPU cores; ``--paper-spect`` uses the paper's.
DEMO_SPECT_PROTOCOL = {"views": 60, "iterations": 6, "subsets": 6, "pixel_mm": 6.0}


#: A light residual CNN for CPU training in minutes: 7-slice packs (28 mm at the small
#: preset's 4 mm, like the paper's 11 × 3 mm), 5×5 in-plane stem kernels, a 3-level U-Net
#: of width 8 (76,729 parameters instead of the paper's 1.1 M).
DEMO_MODEL = {
    "pack_size": 7,
    "stem_kernels": ((3, 5, 5), (3, 5, 5), (1, 5, 5)),
    "unet_width": 8,
    "unet_levels": 3,
}


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (defaults: the README gives the measured time).

    ``shipped``: evaluate and run the patient step with the shipped model
    (:mod:`residualnet.shipped`; False: the model the demo trains).  ``workers``: dataset
    factory processes (cases built in parallel; 2 for the 2-core target).
    """

    cases: int = 4
    preset: str = "small"
    histories: int = 2_000_000
    epochs: int = 3
    seed: int = 0
    device: str = "auto"
    spect_protocol: dict | None = field(default_factory=lambda: dict(DEMO_SPECT_PROTOCOL))
    model: dict = field(default_factory=lambda: dict(DEMO_MODEL))
    batch_size: int = 16
    spect_backend: str = "auto"
    kernel_histories: int | None = None
    shipped: bool = True
    workers: int = 2


@dataclass
class DemoResult:
    """Where the demo put its outputs."""

    out_dir: Path
    dataset_dir: Path
    model_path: Path
    evaluation_dir: Path
    report_html: Path
    patient_dose: Path
    summary_table: str
    seconds: dict[str, float]
    evaluated_model: str = ""
    patient_model: str = ""


def _step(echo: Callable[[str], None], number: int, total: int, text: str) -> float:
    echo(f"\n[{number}/{total}] {text}")
    return time.perf_counter()


def export_patient(case_path: Path, out_dir: Path) -> dict[str, Path]:
    """Write a case's CT (HU), SPECT (Bq/ml) and labels as NIfTI files, as a scanner would.

    The CT comes from the case's density through the inverse of the paper's calibration.
    """
    from mcdose.io.case import read_case_info, read_dataset, read_label_names
    from mcdose.io.images import write_image
    from mcdose.materials import density_to_hu

    out_dir.mkdir(parents=True, exist_ok=True)
    info = read_case_info(case_path)
    geometry = info.geometry
    paths = {
        "ct": out_dir / "ct.nii.gz",
        "spect": out_dir / "spect_Bq_per_ml.nii.gz",
        "labels": out_dir / "labels.nii.gz",
        "label_names": out_dir / "labels.json",
    }
    write_image(paths["ct"], density_to_hu(read_dataset(case_path, "density")), geometry)
    spect_mbq = read_dataset(case_path, "spect").astype(np.float64)
    bq_per_ml = spect_mbq * 1e6 / geometry.voxel_volume_cm3
    write_image(paths["spect"], bq_per_ml.astype(np.float32), geometry)
    write_image(paths["labels"], read_dataset(case_path, "labels").astype(np.int16), geometry)
    names = {str(k): v for k, v in read_label_names(case_path).items()}
    paths["label_names"].write_text(json.dumps(names, indent=1), encoding="utf-8")
    return paths


def run_demo(
    out_dir: str | Path,
    config: DemoConfig | None = None,
    *,
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> DemoResult:
    """Run the whole pipeline into ``out_dir`` (resumable).  See the module docstring."""
    from mcdose.dataset import build_dataset, read_manifest
    from mcdose.dosimetry import run_dosimetry
    from mcdose.errors import McdoseError
    from residualnet.evaluate import evaluate, format_summary_table
    from residualnet.model import ModelConfig
    from residualnet.train import TrainConfig, output_paths, train

    config = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset_dir = out / "dataset"
    model_path = out / "model.pt"
    evaluation_dir = out / "evaluation"
    patient_dir = out / "patient"
    report_dir = out / "report"
    seconds: dict[str, float] = {}
    total = 5

    t = _step(echo, 1, total, f"Virtual patients, SPECT, Monte Carlo and VDK for "
                              f"{config.cases} cases ({config.preset} preset, "
                              f"{config.histories:,} decays each)")  # fmt: skip
    summary = build_dataset(
        dataset_dir, cases=config.cases, preset=config.preset, seed=config.seed,
        histories=config.histories, device=config.device, workers=config.workers,
        progress=progress,
        spect_protocol=config.spect_protocol, spect_backend=config.spect_backend,
        vdk_options=(
            {"histories": config.kernel_histories} if config.kernel_histories else None
        ),
    )  # fmt: skip
    summary.print()
    if summary.failed:
        raise McdoseError(f"{len(summary.failed)} case(s) failed; rerun the demo to retry them")
    seconds["dataset"] = time.perf_counter() - t

    t = _step(echo, 2, total, f"Training a small residual CNN ({config.epochs} epochs)")
    train_config = TrainConfig(
        epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
        device=config.device, workers=0, early_stopping=0,
        model=ModelConfig(**config.model),
    )  # fmt: skip
    resume = output_paths(model_path)["checkpoint"].exists()
    result = train(dataset_dir, model_path, train_config, resume=resume, progress=progress)
    echo(f"model: {result.parameters:,} parameters, best validation loss "
         f"{result.best_loss:.3g} at epoch {result.best_epoch}")  # fmt: skip
    seconds["training"] = time.perf_counter() - t

    shipped = _shipped_model() if config.shipped else None
    evaluated = model_path
    if shipped is not None:
        voxel = read_manifest(dataset_dir)["parameters"]["spacing_mm"]
        if all(abs(a - b) <= 0.01 * b for a, b in zip(voxel, shipped.voxel_mm, strict=True)):
            evaluated = shipped.path
    name = "the shipped model " + shipped.name if evaluated != model_path else "the demo's model"
    t = _step(echo, 3, total, f"Evaluating VDK and CNN ({name}) against the Monte Carlo truth "
                              f"(test split)")  # fmt: skip
    report = evaluate(dataset_dir, evaluated, evaluation_dir, split="test",
                      device=config.device, progress=progress)  # fmt: skip
    table = format_summary_table(report)
    echo(table)
    seconds["evaluation"] = time.perf_counter() - t

    patient_model = None if shipped is not None else model_path
    which = f"shipped model {shipped.name}" if shipped is not None else "the demo's model"
    t = _step(echo, 4, total, f"Patient dosimetry (mcdose dose --method cnn, {which}) on a "
                              f"held-out case")  # fmt: skip
    manifest = read_manifest(dataset_dir)
    test_files = [c["file"] for c in manifest["cases"] if c.get("split") == "test"]
    if not test_files:
        raise McdoseError(f"{dataset_dir}: no held-out (test) case; use more --cases")
    case_path = dataset_dir / test_files[0]
    files = export_patient(case_path, patient_dir)
    dose_path = out / "patient_dose.nii.gz"
    dosimetry = run_dosimetry(
        ct=files["ct"], spect=files["spect"], out=dose_path, method="cnn", model=patient_model,
        labels=files["labels"], label_names=files["label_names"], report_dir=report_dir,
        device=config.device, overwrite=True, progress=progress,
    )  # fmt: skip
    seconds["dosimetry"] = time.perf_counter() - t
    echo(f"dose rate of {case_path.name}: {dosimetry.unit}, {len(dosimetry.organs)} organs")
    resampling = dosimetry.provenance.get("engine", {}).get("resampling")
    if resampling:
        echo(resampling["note"])

    _step(echo, 5, total, "Done")
    report_html = report_dir / "report.html"
    echo(f"evaluation (MDE/NRMSE tables, DVHs, slices): {evaluation_dir / 'report.md'}")
    echo(f"patient dose image: {dose_path}")
    echo(f"patient report: {report_html}")
    return DemoResult(
        out_dir=out, dataset_dir=dataset_dir, model_path=model_path,
        evaluation_dir=evaluation_dir, report_html=report_html, patient_dose=dose_path,
        summary_table=table, seconds=seconds, evaluated_model=str(evaluated),
        patient_model=str(dosimetry.provenance.get("engine", {}).get("model", "")),
    )  # fmt: skip


def _shipped_model():
    """The shipped default model, or None (with the reason logged) where this install has
    none."""
    from mcdose.errors import InputError
    from residualnet.shipped import shipped_model

    try:
        return shipped_model()
    except InputError as exc:
        import logging

        logging.getLogger("mcdose").warning("%s; the demo uses its own model", exc)
        return None
