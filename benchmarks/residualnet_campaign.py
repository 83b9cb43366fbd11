"""Accuracy campaign of the residual CNN: dataset → MC-on-SPECT → training → evaluation → results.

Builds a dataset of virtual patients (``mcdose.dataset.build_dataset``), runs the Monte Carlo on
the SPECT (``dose/mc_spect``, the paper's comparison) for the test cases only, trains the
residual CNN (``residualnet.train``), evaluates VDK, MC-on-SPECT and the CNN against the Monte
Carlo truth on the test split (``residualnet.evaluate``) and writes the table with the machine
described to ``benchmarks/results/<date>-<machine>-residualnet-<preset>-<loss>.{json,md,png}``.

With ``--external-cases N`` the trained model is also evaluated on an external test set: N new
virtual patients from ``--external-seed`` (phantom seeds disjoint from the campaign's), every
one held out and given MC on the SPECT, in ``<work>/external``; its results go to
``…-<run>-externalN.{json,md,png}``.  Seven test cases leave wide confidence intervals; the
external set narrows them without retraining.

Every step is resumable: rerun the same command after an interruption and finished work is
skipped (case stages, MC-on-SPECT, training epochs from the checkpoint).

Examples
--------
The CPU campaign recorded in ``benchmarks/results`` (about 75 min on 2 cores, plus 45 min for
each further ``--loss``; all runs share the dataset)::

    python benchmarks/residualnet_campaign.py --work /tmp/cnn-campaign --cases 48 \\
        --histories 2e7 --model light --epochs 40 --max-batches 120 --loss mse

A GPU campaign at the paper's grid and model::

    python benchmarks/residualnet_campaign.py --work /scratch/cnn --preset paper --cases 100 \\
        --histories 1e9 --model paper --spect paper --epochs 200 --early-stopping 20 \\
        --device cuda --loss poisson-mde --lesion-weight 2 --lesion-min-voxels 1 \\
        --nrmse-weight 0.02 --nrmse-reference vdk --select-by goals \\
        --external-cases 48 --external-seed 5000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mcdose.io.atomic import atomic_path
from mcdose.io.jsonio import write_json

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

#: virtual patients of the recorded CPU campaign; result files of other sizes say theirs
DEFAULT_CASES = 48

#: Model presets: ``paper`` is ``ModelConfig()`` (1.1 M parameters, 11-slice packs);
#: ``light`` is the demo's CPU model (76.7 k parameters, 7-slice packs, 5×5 stem kernels);
#: ``medium`` is the paper's U-Net (4 levels, 16 filters) behind the light stem (1.09 M
#: parameters, ~1.1× the light model's CPU time per batch, ~0.6× the paper model's).
LIGHT_STEM: dict[str, Any] = {"pack_size": 7, "stem_kernels": ((3, 5, 5), (3, 5, 5), (1, 5, 5))}
MODELS: dict[str, dict[str, Any]] = {
    "paper": {},
    "light": {**LIGHT_STEM, "unet_width": 8, "unet_levels": 3},
    "medium": {**LIGHT_STEM, "unet_width": 16, "unet_levels": 4},
}


def build_parser() -> argparse.ArgumentParser:
    from residualnet.losses import LOSSES, NRMSE_FLOOR_DEFAULT, NRMSE_REFERENCES

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--work", required=True, type=Path, help="campaign folder (resumable)")
    p.add_argument("--cases", type=int, default=DEFAULT_CASES,
                   help="virtual patients (70/15/15 split)")
    p.add_argument("--preset", default="small", choices=("paper", "small", "tiny"))
    p.add_argument("--histories", type=float, default=2e7, help="MC decays per MC run")
    p.add_argument("--seed", type=int, default=1000, help="campaign seed")
    p.add_argument("--workers", type=int, default=1,
                   help="dataset-factory worker processes (cases built in parallel)")
    p.add_argument(
        "--spect",
        default="demo",
        choices=("demo", "paper"),
        help="SPECT protocol: demo (60 views, OSEM 6x6, 6 mm) or the paper's",
    )
    p.add_argument("--spect-backend", default="auto", choices=("auto", "pytomography", "gaussian"))
    p.add_argument(
        "--kernel-histories", type=float, default=None,
        help="histories per part of VDK kernels generated for the grid",
    )  # fmt: skip
    p.add_argument("--model", default="light", choices=tuple(MODELS))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--loss", default="mse", choices=LOSSES)
    p.add_argument(
        "--region-weight", type=float, default=None,
        help="weight of the region term of the region losses (default: the loss's own)",
    )
    p.add_argument(
        "--lesion-weight", type=float, default=1.0,
        help="weight of a lesion's region term against an organ's",
    )
    p.add_argument(
        "--lesion-min-voxels", type=int, default=None,
        help="fewest voxels of a lesion in a slice for the region term (default: as organs)",
    )
    p.add_argument(
        "--nrmse-weight", type=float, default=0.0,
        help="weight of the per-slice region NRMSE term of the region losses (0: off)",
    )
    p.add_argument(
        "--nrmse-floor", type=float, default=NRMSE_FLOOR_DEFAULT,
        help="normalised dose in the NRMSE term's denominator",
    )
    p.add_argument(
        "--nrmse-reference", choices=NRMSE_REFERENCES, default="truth",
        help="what the NRMSE term divides by: the true dose, or the VDK (then squared)",
    )
    p.add_argument(
        "--ema", type=float, default=0.0, help="decay of the weights' moving average (0: off)"
    )
    p.add_argument(
        "--select-by", default="loss", choices=("loss", "goals"),
        help="best epoch by the validation loss or by the validation cases' accuracy goals",
    )
    p.add_argument(
        "--max-batches", type=int, default=None, help="cap on training batches per epoch"
    )
    p.add_argument("--early-stopping", type=int, default=0)
    p.add_argument(
        "--external-cases", type=int, default=0,
        help="also evaluate on this many new virtual patients, all held out (0: off)",
    )
    p.add_argument(
        "--external-seed", type=int, default=5000,
        help="campaign seed of the external test set (its phantom seeds must not overlap)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    p.add_argument("--machine", default=None, help="machine name in the file names")
    return p


def _spect_protocol(name: str) -> dict[str, Any] | None:
    if name == "paper":
        return None
    from mcdose_cli.demo import DEMO_SPECT_PROTOCOL

    return dict(DEMO_SPECT_PROTOCOL)


def build(args: argparse.Namespace, dataset: Path, *, external: bool = False) -> None:
    """Dataset stages phantom → SPECT → MC → VDK.

    ``external``: the external test set instead — ``--external-cases`` cases from
    ``--external-seed``, every case in the test split, with MC on the SPECT.
    """
    from mcdose.dataset import build_dataset

    cases, seed = (args.external_cases, args.external_seed) if external else (args.cases,
                                                                               args.seed)
    summary = build_dataset(
        dataset, cases=cases, preset=args.preset, seed=seed,
        histories=int(args.histories), workers=args.workers, progress=True,
        device=args.device,
        spect_protocol=_spect_protocol(args.spect), spect_backend=args.spect_backend,
        vdk_options=(
            {"histories": int(args.kernel_histories)} if args.kernel_histories else None
        ),
        **({"mc_spect": True, "split_fractions": (0.0, 0.0, 1.0)} if external else {}),
    )  # fmt: skip
    summary.print()
    if summary.failed:
        raise SystemExit(f"{len(summary.failed)} case(s) failed; rerun to retry them")


def mc_on_spect(args: argparse.Namespace, dataset: Path, work: Path) -> None:
    """``dose/mc_spect`` for the test cases only (the comparison needs no more)."""
    from mcdose.dataset.campaign import derive_seed
    from mcdose.transport import simulate_case
    from residualnet.data import read_manifest

    for entry in read_manifest(dataset):
        if entry.split != "test":
            continue
        index = int(entry.name.split("_")[-1])
        print(f"MC on the SPECT: {entry.name}", flush=True)
        t = time.perf_counter()
        ran = simulate_case(entry.path, source="spect", histories=int(args.histories),
                            seed=derive_seed(args.seed, index, "mc_spect"), device=args.device,
                            batches=10, progress=True)  # fmt: skip
        if ran is not None:
            _add_time(work, "mc_spect_test", time.perf_counter() - t)


def fit(args: argparse.Namespace, dataset: Path, model_path: Path):
    """Train (or resume) the residual CNN."""
    from residualnet.model import ModelConfig
    from residualnet.train import TrainConfig, output_paths, train

    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=args.device,
        loss=args.loss, organ_weight=args.region_weight, ema_decay=args.ema,
        lesion_weight=args.lesion_weight, lesion_min_voxels=args.lesion_min_voxels,
        nrmse_weight=args.nrmse_weight, nrmse_floor=args.nrmse_floor,
        nrmse_reference=args.nrmse_reference, select_by=args.select_by, workers=0,
        early_stopping=args.early_stopping,
        max_batches=args.max_batches, model=ModelConfig(**MODELS[args.model]),
    )  # fmt: skip
    resume = output_paths(model_path)["checkpoint"].exists()
    return train(dataset, model_path, config, resume=resume, progress=True), config


def result_stem(date: str, machine_name: str, preset: str, tag: str, cases: int) -> str:
    """Stem of a run's result files: ``<date>-<machine>-residualnet-<preset>-<tag>``, with
    ``-<cases>cases`` appended when the campaign has other than :data:`DEFAULT_CASES` cases
    (runs of one recipe on datasets of different sizes must not overwrite each other)."""
    stem = f"{date}-{machine_name}-residualnet-{preset}-{tag}"
    return stem if cases == DEFAULT_CASES else f"{stem}-{cases}cases"


def run_tag(model: str, loss: str, region_weight: float | None = None, ema: float = 0.0,
            lesion_weight: float = 1.0, lesion_min_voxels: int | None = None,
            select_by: str = "loss", nrmse_weight: float = 0.0,
            nrmse_floor: float | None = None, nrmse_reference: str = "truth") -> str:
    """File-name tag of a training run: the loss, prefixed by the model unless ``light``,
    followed by the region weight, the lesion weight and voxel threshold, the NRMSE term's
    weight (and its floor when given and not the default, ``-nrvdk`` with the VDK as its
    reference), the weight-average decay and
    the epoch selection by goals (``-sg``) when they are set.

    (The light model's files keep the names of the first campaign: ``model-mse.pt``.)
    """
    from residualnet.losses import NRMSE_FLOOR_DEFAULT

    tag = loss if model == "light" else f"{model}-{loss}"
    if region_weight is not None:
        tag += f"-w{region_weight:g}"
    if lesion_weight != 1.0:
        tag += f"-lw{lesion_weight:g}"
    if lesion_min_voxels is not None:
        tag += f"-lv{lesion_min_voxels}"
    if nrmse_weight:
        tag += f"-nrmse{nrmse_weight:g}"
        if nrmse_floor is not None and nrmse_floor != NRMSE_FLOOR_DEFAULT:
            tag += f"-nf{nrmse_floor:g}"
        if nrmse_reference != "truth":
            tag += f"-nr{nrmse_reference}"
    if ema:
        tag += f"-ema{ema:g}"
    if select_by == "goals":
        tag += "-sg"
    return tag


def best_epoch_text(result: Any, select_by: str) -> str:
    """How the kept epoch was chosen, for the results' Markdown header."""
    score = result.best_score
    if select_by == "goals" and score is not None:
        return (f"best epoch {result.best_epoch} by the validation goals ({score.missed} of "
                f"{score.total} missed, mean ratio to threshold {score.ratio:.3f}; validation "
                f"loss {result.best_loss:.4g})")
    return f"best validation loss {result.best_loss:.4g} at epoch {result.best_epoch}"


def _timings(work: Path) -> dict[str, float]:
    path = work / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _add_time(work: Path, step: str, seconds: float) -> None:
    """Accumulate the wall time of work actually done in ``work/timings.json`` (resumes add)."""
    timings = _timings(work)
    timings[step] = timings.get(step, 0.0) + seconds
    write_json(work / "timings.json", timings, indent=1)


def _check_external(args: argparse.Namespace) -> None:
    """The external set's phantom seeds must not meet the training campaign's."""
    if args.external_cases < 0:
        raise SystemExit(f"--external-cases must be >= 0, got {args.external_cases}")
    if args.external_cases and (args.external_seed < args.seed + args.cases
                                and args.seed < args.external_seed + args.external_cases):
        raise SystemExit(
            f"--external-seed {args.external_seed}: phantom seeds {args.external_seed}…"
            f"{args.external_seed + args.external_cases - 1} overlap the campaign's "
            f"{args.seed}…{args.seed + args.cases - 1}"
        )


def _cases_per_split(manifest: dict[str, Any]) -> dict[str, int]:
    return dict(Counter(case["split"] for case in manifest["cases"]))


def _stage_seconds(manifest: dict[str, Any]) -> float:
    """Summed time of the case stages recorded in a dataset manifest (s)."""
    return sum(
        float(stage.get("seconds") or 0.0)
        for case in manifest["cases"]
        for stage in case.get("stages", {}).values()
    )


def write_results(out: Path, stem: str, record: dict[str, Any], header: list[str],
                  report: dict[str, Any], eval_dir: Path) -> None:
    """``out/stem.json`` (record + the evaluation), ``.md`` (header + report) and ``.png``."""
    record = {
        **record,
        "evaluation": {k: v for k, v in report.items() if k != "cases"},
        "cases": report.get("cases"),
    }
    write_json(out / f"{stem}.json", record, indent=1)
    body = (eval_dir / "report.md").read_text().split("\n", 1)[1]
    figures = sorted(eval_dir.glob("slices_*.png"))
    if figures:
        shutil.copyfile(figures[0], out / f"{stem}.png")
        body = body.split("## Figures")[0] + f"## Figure\n\n![{stem}.png]({stem}.png)\n"
    with atomic_path(out / f"{stem}.md") as tmp:
        tmp.write_text("\n".join(header) + body)
    print(f"results: {out / stem}.json, .md")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_external(args)
    from benchmarks.suite import machine
    from residualnet.evaluate import evaluate
    from residualnet.modelfile import load_model

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    dataset = work / "dataset"
    tag = run_tag(args.model, args.loss, args.region_weight, args.ema, args.lesion_weight,
                  args.lesion_min_voxels, args.select_by, args.nrmse_weight,
                  args.nrmse_floor, args.nrmse_reference)
    model_path, eval_dir = work / f"model-{tag}.pt", work / f"evaluation-{tag}"
    build(args, dataset)
    mc_on_spect(args, dataset, work)
    if args.external_cases:
        build(args, work / "external", external=True)
    result, train_config = fit(args, dataset, model_path)
    t = time.perf_counter()
    report = evaluate(dataset, model_path, eval_dir, device=args.device, progress=True)
    evaluation_s = time.perf_counter() - t

    info = machine.describe()
    name = args.machine or machine.slug(info)
    stem = result_stem(machine.today(), name, args.preset, tag, args.cases)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((dataset / "manifest.json").read_text())
    splits = _cases_per_split(manifest)
    split_text = ", ".join(f"{v} {k}" for k, v in sorted(splits.items()))
    history = result.history
    # time of the work itself, summed over resumed invocations: the case stages from the
    # manifest, MC-on-SPECT from timings.json, training from the epoch log
    seconds = {
        "dataset": _stage_seconds(manifest),
        "mc_spect_test": _timings(work).get("mc_spect_test", 0.0),
        "training": sum(float(row["seconds"]) for row in history),
        "evaluation": evaluation_s,
    }
    record = {
        "benchmark": "residualnet-accuracy",
        "command": "python benchmarks/residualnet_campaign.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": info,
        "dataset": {"parameters": manifest["parameters"], "cases_per_split": splits},
        "training": {
            "config": train_config.to_dict(),
            "parameters": result.parameters,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "best_validation_loss": result.best_loss,
            # the kept epoch's goals on the validation cases (select_by="goals" or not)
            "best_validation_goals": load_model(model_path).training.get("best_val_goals"),
            "history": history,
        },
        "seconds": seconds,
    }
    gpu = ", ".join(g["name"] for g in info["gpus"]) or "no GPU"
    machine_line = (f"- machine: {info['cpu']}, {info['cpus_usable']} usable cores, "
                    f"{info['memory_GiB']:.1f} GiB, {gpu}; training device `{report['device']}`")
    model_line = (f"- model: `{args.model}` ({result.parameters:,} parameters), loss "
                  f"`{args.loss}`, {result.epochs_run} epochs, "
                  f"{best_epoch_text(result, args.select_by)}")
    header = [
        f"# Residual CNN accuracy campaign — {machine.today()}, {name}",
        "",
        machine_line,
        f"- dataset: {args.cases} `{args.preset}` virtual patients "
        f"({split_text}), "
        f"{args.histories:.3g} MC decays per case (truth and MC-on-SPECT), "
        f"SPECT protocol `{args.spect}`",
        model_line,
        "- wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()),
        f"- command: `{record['command']}`",
        "",
    ]
    write_results(args.out, stem, record, header, report, eval_dir)

    if args.external_cases:
        external = work / "external"
        ext_dir = work / f"evaluation-{tag}-external{args.external_cases}"
        t = time.perf_counter()
        ext_report = evaluate(external, model_path, ext_dir, device=args.device, progress=True)
        ext_manifest = json.loads((external / "manifest.json").read_text())
        ext_seconds = {"dataset": _stage_seconds(ext_manifest),
                       "evaluation": time.perf_counter() - t}
        ext_record = {
            **record,
            "external_test": {"parameters": ext_manifest["parameters"],
                              "cases": args.external_cases, "seconds": ext_seconds},
        }
        ext_header = [
            f"# Residual CNN on an external test set — {machine.today()}, {name}",
            "",
            machine_line,
            f"- external test set: {args.external_cases} new `{args.preset}` virtual patients "
            f"(campaign seed {args.external_seed}: phantoms never seen in training or in the "
            f"choice of epoch), {args.histories:.3g} MC decays per case (truth and "
            f"MC-on-SPECT), SPECT protocol `{args.spect}`",
            f"- trained on: {args.cases} virtual patients (seed {args.seed}; "
            f"{split_text})",
            model_line,
            "- wall time: " + ", ".join(f"{k} {v / 60:.1f} min"
                                        for k, v in ext_seconds.items()),
            f"- command: `{record['command']}`",
            "",
        ]
        write_results(args.out, f"{stem}-external{args.external_cases}", ext_record,
                      ext_header, ext_report, ext_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
