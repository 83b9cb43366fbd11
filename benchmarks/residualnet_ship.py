"""Ship a trained residual CNN with mcdose: the model file and its model card (JSON + Markdown).

Takes a model trained by ``benchmarks/residualnet_campaign.py`` and the campaign's result
files (its own test split and the external test set), and writes into
``src/residualnet/models/`` (the package data that :mod:`residualnet.shipped` reads)::

    <name>.pt     the model file, re-saved weights-only (loadable with weights_only=True)
    <name>.json   the card as data
    <name>.md     the card for people: training data, recipe, compute, the external set in
                  the layout of Li et al. (2022) Tables I and II with bootstrap intervals,
                  intended use and limits, and what ``mcdose dose`` does outside them

The evaluation is re-scored from the result files' per-case metrics with the current
:mod:`residualnet.evaluate` (so a card always shows the goals as scored now).

Example::

    python benchmarks/residualnet_ship.py --model /tmp/cnn/model-<tag>.pt \\
        --results benchmarks/results/<stem>.json \\
        --external benchmarks/results/<stem>-external8.json --name lu177-4mm-medium-v1
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: summary rows of the card's tables, in order
CARD_ROWS = ("healthy_liver", "liver", "tumour", "tumour_lt20mm", "tumour_20mm",
             "tumour_per_case", "spleen", "kidney_left", "kidney_right", "body")

INTENDED_USE = [
    "Absorbed-dose rate (or, fed a time-integrated activity, absorbed dose) of Lu-177 from a "
    "quantitative SPECT/CT, as a research tool: the VDK dose corrected by the CNN towards "
    "Monte Carlo on the true activity.",
    "Inputs like the training data: a SPECT simulated and reconstructed with the factory's "
    "protocol (PyTomography: 60 views, the 208 keV photopeak, a medium-energy collimator "
    "(Siemens MELP), OSEM 6 iterations x 6 subsets with attenuation and PSF modelling and no "
    "scatter, 6 mm projection pixels) at 3-19 million counts, quantitative (MBq), a CT "
    "converted with the paper's bilinear HU calibration, run on a 4 mm grid.",
    "Uptake like the virtual patients': liver, spleen, kidneys (cortex and medulla), "
    "blood pool, bowel and a low background, with 0-5 lesions of 5-50 mm in the liver "
    "and elsewhere.",
]
LIMITS = [
    "Trained and evaluated on virtual patients (mcdose's torso phantom generator) only; "
    "not validated on patient data, not a medical device.",
    "Lu-177 only; 4 mm voxels (any other grid is resampled to 4 mm and back, which blurs "
    "a finer grid's dose to 4 mm resolution).",
    "Lesions below 20 mm lose most of their mean dose to partial volume for every method "
    "(see the < 20 mm row); the CNN recovers part of it only.",
    "A SPECT protocol, collimator, reconstruction or count level far from the training "
    "data's changes the blur the network learnt to undo; its correction may then be wrong "
    "in either direction (VDK is the safer choice then).",
    "Uptake patterns outside the training data (e.g. bone metastases in the skeleton, "
    "salivary glands, a different organ set) were never seen.",
]
OUTSIDE = [
    "Another nuclide (--nuclide): refused in one line; give --model MODEL trained for it.",
    "Another voxel size (--grid spect or ct): the SPECT activity (concentration, "
    "anti-aliased, total in the body kept) and the density are resampled to the model's 4 mm "
    "grid, VDK and CNN run there, and the dose rate is interpolated linearly back to the "
    "grid asked for; the report's provenance (engine.resampling) and the command's output "
    "say so.",
    "Any SPECT protocol, count level or uptake pattern: accepted without a check (the model "
    "cannot tell); the limits above apply.",
    "--model PATH: a user's own model is used instead, on the dose grid, and refused in one "
    "line if trained for another voxel size or nuclide.",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="trained model file")
    p.add_argument("--results", required=True, type=Path,
                   help="the campaign's result JSON (own test split)")
    p.add_argument("--external", required=True, type=Path,
                   help="the campaign's external-set result JSON")
    p.add_argument("--dataset", type=Path, default=None,
                   help="the training dataset folder (its manifest gives the cases and seeds; "
                   "default: the one the results name)")
    p.add_argument("--external-dataset", type=Path, default=None,
                   help="the external set's folder (default: the one the results name)")
    p.add_argument("--name", default=None, help="model name (default residualnet.shipped's)")
    p.add_argument("--out", type=Path, default=ROOT / "src" / "residualnet" / "models")
    p.add_argument("--commit", default=None, help="git commit of the code that trained it")
    p.add_argument("--note", action="append", default=[],
                   help="a line for the card's notes (repeatable)")
    return p


def _git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def rescore(result: dict[str, Any]) -> dict[str, Any]:
    """Summary and goals of a campaign result, recomputed from its per-case metrics."""
    from residualnet.evaluate import accuracy_goals, counted_goals, goal_uncertainty, summarize

    cases = result["cases"]
    methods = result["evaluation"]["methods"]
    summary = summarize(cases, methods)
    goals = accuracy_goals(summary)
    goal_uncertainty(cases, goals)
    counted = counted_goals({"goals": goals})
    return {"methods": methods, "summary": summary, "goals": goals,
            "goals_met": f"{sum(g['passed'] for g in counted)} of {len(counted)}",
            "cases": len(cases)}


def _pct(stats: dict[str, float] | None) -> str:
    if not stats:
        return "—"
    return f"{100 * stats['mean']:.1f} ({100 * stats['min']:.1f}–{100 * stats['max']:.1f})"


def table_markdown(scored: dict[str, Any], metric: str) -> list[str]:
    """One of Tables I (``mde``) / II (``nrmse``): per region, each method's mean (range)."""
    from residualnet.evaluate import METHODS, PAPER_TABLES, region_title

    methods = scored["methods"]
    lines = ["| region | " + " | ".join(METHODS[m] for m in methods) + " | paper VDK / MC-S / "
             "CNN |", "|" + "---|" * (len(methods) + 2)]
    for cls in CARD_ROWS:
        row = scored["summary"].get(cls)
        if not row:
            continue
        count = next(iter(row.values())).get(metric, {}).get("n")
        paper = PAPER_TABLES.get(metric, {}).get(cls)
        cells = [_pct(row.get(m, {}).get(metric)) for m in methods]
        lines.append(f"| {region_title(cls, count)} | " + " | ".join(cells) + " | "
                     + (" / ".join(f"{v:.1f}" for v in paper) if paper else "—") + " |")
    return lines


def goals_markdown(scored: dict[str, Any]) -> list[str]:
    from residualnet.evaluate import region_title

    lines = ["| goal | region | CNN (%) | threshold (%) | ratio (95 % CI) | draws met | met |",
             "|---|---|---|---|---|---|---|"]
    for g in scored["goals"]:
        ci = g.get("ratio_ci95")
        ratio = f"{g['ratio']:.2f}" + (f" ({ci[0]:.2f}–{ci[1]:.2f})" if ci else "")
        met = "reported, not counted" if g.get("extra") else ("yes" if g["passed"] else "**no**")
        share = f"{100 * g['met_fraction']:.0f} %" if "met_fraction" in g else "—"
        lines.append(f"| {g['goal']} | {region_title(g['region'])} | {100 * g['cnn']:.1f} | "
                     f"{100 * g['reference']:.1f} | {ratio} | {share} | {met} |")
    return lines


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _manifest_cases(folder: Path | None) -> list[dict[str, Any]]:
    """The complete cases of a dataset manifest (``[]`` without one)."""
    if folder is None or not (Path(folder) / "manifest.json").exists():
        return []
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    return [c for c in manifest["cases"] if c.get("complete", True)]


def _spect_attributes(folder: Path | None, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The SPECT protocol and backend recorded in the first case file (``{}`` without)."""
    if folder is None or not cases:
        return {}
    import h5py

    try:
        with h5py.File(Path(folder) / cases[0]["file"], "r") as f:
            attrs = f["spect"].attrs
            return {"backend": str(attrs.get("backend", "")),
                    "method": str(attrs.get("method", "")),
                    "protocol": json.loads(attrs.get("protocol", "{}"))}
    except (OSError, KeyError, ValueError):
        return {}


def _seed_text(cases: list[dict[str, Any]]) -> str:
    seeds = sorted(int(c["seed"]) for c in cases if "seed" in c)
    if not seeds:
        return "?"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def make_card(model_path: Path, results: dict[str, Any], external: dict[str, Any], *,
              name: str, file_name: str, sha256: str, commit: str,
              notes: list[str], dataset_cases: list[dict[str, Any]] | None = None,
              external_cases: list[dict[str, Any]] | None = None,
              spect: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card as a dict (see the module docstring).

    ``dataset_cases`` / ``external_cases``: the manifests' complete cases (their seeds);
    default: the cases the results count.
    """
    from residualnet.modelfile import load_model

    model = load_model(model_path)
    training = results["training"]
    params = results["dataset"]["parameters"]
    ext_params = external["external_test"]["parameters"]
    seconds = dict(results["seconds"])
    ext_seconds = dict(external["external_test"]["seconds"])
    compute = {
        "dataset_s": seconds.get("dataset", 0.0),
        "mc_on_spect_test_s": seconds.get("mc_spect_test", 0.0),
        "training_s": seconds.get("training", 0.0),
        "evaluation_s": seconds.get("evaluation", 0.0),
        "external_dataset_s": ext_seconds.get("dataset", 0.0),
        "external_evaluation_s": ext_seconds.get("evaluation", 0.0),
        "note": "wall seconds of the work itself (case stages summed over the factory's "
                "workers; training epochs), on the machine below",
        "machine": {k: results["machine"].get(k) for k in
                    ("cpu", "cpus_usable", "memory_GiB", "gpus", "load_average")
                    if k in results["machine"]},
    }
    compute["total_s"] = sum(v for k, v in compute.items() if k.endswith("_s"))
    first_seed = int(params["seed"])
    n_cases = sum(results["dataset"]["cases_per_split"].values())
    n_external = len(external["cases"])
    train_seeds = (_seed_text(dataset_cases) if dataset_cases
                   else f"{first_seed}–{first_seed + n_cases - 1}")
    ext_seeds = (_seed_text(external_cases) if external_cases
                 else f"{int(ext_params['seed'])}–{int(ext_params['seed']) + n_external - 1}")
    return {
        "name": name,
        "file": file_name,
        "sha256": sha256,
        "bytes": (model_path.stat().st_size),
        "format": "residualnet-model, format_version 1 (torch.load(weights_only=True))",
        "nuclide": model.nuclide,
        "voxel_mm": list(model.voxel_mm),
        "architecture": model.config.to_dict(),
        "parameters": model.parameters,
        "normalization": model.normalization.to_dict(),
        "commit": commit,
        "software": {k: model.provenance.get(k) for k in
                     ("software_version", "torch", "numpy", "python") if k in model.provenance},
        "training_data": {
            "generator": "mcdose build-dataset (virtual patients → SPECT → MC truth → VDK)",
            "preset": params["preset"],
            "grid_zyx": params.get("shape_zyx"),
            "voxel_mm": params.get("spacing_mm"),
            "cases": n_cases,
            "cases_per_split": results["dataset"]["cases_per_split"],
            "phantom_seeds": train_seeds,
            "campaign_seed": first_seed,
            "decays_per_case": params["histories"],
            "mc_batches": params.get("batches"),
            "spect_protocol": params.get("spect_protocol"),
            "spect_backend": params.get("spect_backend"),
            "count_levels": params.get("count_levels"),
            "spect_as_simulated": spect or {},
            "seed_rules": params.get("seed_rules"),
        },
        "recipe": {
            "command": results["command"],
            "config": training["config"],
            "epochs_run": training["epochs_run"],
            "best_epoch": training["best_epoch"],
            "best_validation_loss": training["best_validation_loss"],
            "best_validation_goals": training.get("best_validation_goals"),
        },
        "compute": compute,
        "evaluation": {
            "set": (f"external: {n_external} new virtual patients, phantom seeds "
                    f"{ext_seeds} (never seen in training or in the choice of epoch), "
                    f"{ext_params['histories']:.3g} MC decays per case for the truth and for "
                    f"MC-on-SPECT"),
            **rescore(external),
            "bootstrap": external["evaluation"].get("bootstrap"),
            "truth_noise_floor": external["evaluation"].get("truth_noise_floor"),
        },
        "internal_test": {k: v for k, v in rescore(results).items() if k != "summary"},
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
        "outside_limits": OUTSIDE,
        "notes": notes,
    }


def card_markdown(card: dict[str, Any]) -> str:
    ev = card["evaluation"]
    data = card["training_data"]
    recipe = card["recipe"]
    compute = card["compute"]
    protocol = data.get("spect_protocol") or {}
    simulated = data.get("spect_as_simulated") or {}
    full = simulated.get("protocol") or {}
    levels = ", ".join(f"{v:.3g}" for v in data.get("count_levels") or [])
    split = ", ".join(f"{v} {k}" for k, v in sorted(data["cases_per_split"].items()))
    arch = card["architecture"]
    machine = compute.get("machine", {})
    lines = [
        f"# Model card: `{card['name']}`",
        "",
        f"Residual CNN (DblurDoseNet-style, Li et al., Med. Phys. 49 (2022) 1216) for "
        f"**{card['nuclide']}** on **{'×'.join(f'{v:g}' for v in card['voxel_mm'])} mm** "
        f"voxels. File `{card['file']}` ({card['bytes'] / 1e6:.1f} MB, sha256 "
        f"`{card['sha256'][:16]}…`), {card['format']}; {card['parameters']:,} parameters "
        f"(pack {arch['pack_size']} slices, stem kernels {arch['stem_kernels']}, U-Net "
        f"{arch['unet_levels']} levels × {arch['unet_width']} filters). Used by "
        f"`mcdose dose --method cnn` when no `--model` is given.",
        "",
        f"**External set: {ev['goals_met']} goals met** (scoring below); own test split: "
        f"{card['internal_test']['goals_met']}.",
        "",
        "## Training data",
        "",
        f"- {data['cases']} virtual patients of the `{data['preset']}` preset "
        f"(grid {data.get('grid_zyx')} z, y, x at {data.get('voxel_mm')} mm), split by case "
        f"{split}; phantom seeds {data['phantom_seeds']} (campaign seed "
        f"{data['campaign_seed']}; per-stage seeds: {data.get('seed_rules')})",
        f"- truth: Monte Carlo on the true activity, {data['decays_per_case']:.3g} decays "
        f"per case ({data.get('mc_batches')} batches)",
        f"- SPECT: {simulated.get('backend') or data.get('spect_backend')} backend, "
        f"{protocol.get('views')} views, OSEM {protocol.get('iterations')} iterations × "
        f"{protocol.get('subsets')} subsets, {protocol.get('pixel_mm')} mm projection pixels"
        + (f", {full.get('collimator')} collimator, {full.get('energy_keV')} keV, attenuation "
           f"{'on' if full.get('attenuation') else 'off'}, PSF "
           f"{'on' if full.get('psf') else 'off'}, scatter {full.get('scatter')}"
           if full else "")
        + f"; count levels {levels} (one per case, drawn from its seed)",
        f"- code: commit `{card['commit']}`, mcdose "
        f"{card['software'].get('software_version', '?')}, torch "
        f"{card['software'].get('torch', '?')}",
        "",
        "## Recipe",
        "",
        f"- `{recipe['command']}`",
        f"- {recipe['epochs_run']} epochs, kept epoch {recipe['best_epoch']} (chosen by the "
        f"validation cases' goals), validation loss {recipe['best_validation_loss']:.4g}",
        "",
        "## Compute",
        "",
        f"- dataset {_minutes(compute['dataset_s'])}, MC-on-SPECT for the test split "
        f"{_minutes(compute['mc_on_spect_test_s'])}, training {_minutes(compute['training_s'])}"
        f", evaluation {_minutes(compute['evaluation_s'])}; external set "
        f"{_minutes(compute['external_dataset_s'])} to build, "
        f"{_minutes(compute['external_evaluation_s'])} to evaluate; total "
        f"{_minutes(compute['total_s'])} ({compute['note']})",
        f"- machine: {machine.get('cpu')}, {machine.get('cpus_usable')} usable cores, "
        f"no GPU" + ("" if not machine.get("gpus") else f", GPUs {machine.get('gpus')}"),
        "",
        "## Evaluation on the external set",
        "",
        f"{ev['set']}. Reference: Monte Carlo on the true activity. Values: mean (min–max) "
        f"over cases, over lesions for the lesion rows (count in brackets), in %.",
        "",
        "### Mean-dose error (MDE, %) — layout of Table I",
        "",
        *table_markdown(ev, "mde"),
        "",
        "### NRMSE (%) — layout of Table II",
        "",
        *table_markdown(ev, "nrmse"),
        "",
        "### Goals",
        "",
        "Scoring: for healthy liver, liver, all lesions, spleen and each kidney the CNN's MDE "
        "and NRMSE below VDK's and its NRMSE below MC-on-SPECT's; VDK's lesion MDE halved per "
        "case (all lesions of a case as one region) and for lesions ≥ 20 mm; below 20 mm the "
        "CNN's MDE below VDK's and MC-on-SPECT's; the halving over all lesions is reported, "
        "not counted. Ratio: CNN / threshold (< 1 met), with the 95 % interval and the share "
        f"of {ev.get('bootstrap', {}).get('resamples', 2000)} bootstrap draws of the cases "
        "(with their lesions) in which the goal is met.",
        "",
        *goals_markdown(ev),
        "",
        "## Intended use",
        "",
        *[f"- {x}" for x in card["intended_use"]],
        "",
        "## Limits",
        "",
        *[f"- {x}" for x in card["limits"]],
        "",
        "## What `mcdose dose` does outside them",
        "",
        *[f"- {x}" for x in card["outside_limits"]],
        "",
    ]
    if card.get("notes"):
        lines += ["## Notes", "", *[f"- {x}" for x in card["notes"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from mcdose.io.atomic import atomic_path
    from mcdose.io.jsonio import write_json
    from residualnet.shipped import DEFAULT_MODEL, file_sha256

    name = args.name or DEFAULT_MODEL
    args.out.mkdir(parents=True, exist_ok=True)
    record = torch.load(args.model, map_location="cpu", weights_only=True)
    target = args.out / f"{name}.pt"
    with atomic_path(target) as tmp:
        torch.save(record, tmp)
    torch.load(target, map_location="cpu", weights_only=True)  # loads weights-only
    results = json.loads(args.results.read_text())
    external = json.loads(args.external.read_text())
    dataset = args.dataset or Path(results["evaluation"]["dataset"])
    external_dataset = args.external_dataset or Path(external["evaluation"]["dataset"])
    card = make_card(target, results, external, name=name, file_name=target.name,
                     sha256=file_sha256(target), commit=args.commit or _git_head(),
                     notes=args.note, dataset_cases=_manifest_cases(dataset),
                     external_cases=_manifest_cases(external_dataset),
                     spect=_spect_attributes(dataset, _manifest_cases(dataset)))
    write_json(args.out / f"{name}.json", card, indent=1, allow_nan=True)
    with atomic_path(args.out / f"{name}.md") as tmp:
        tmp.write_text(card_markdown(card), encoding="utf-8")
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB), card {name}.json/.md: "
          f"external set {card['evaluation']['goals_met']} goals met")
    return 0 if math.isfinite(card["compute"]["total_s"]) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
