"""residualnet.validation: per-region sums give the evaluation's MDE/NRMSE; the goal score."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from mcdose.errors import InputError
from mcdose.metrics import mde, nrmse
from residualnet.evaluate import scored_regions
from residualnet.modelfile import load_model
from residualnet.synthetic import LABEL_NAMES, synthetic_arrays
from residualnet.train import TrainConfig, train
from residualnet.validation import GoalScore, RegionSums


def _sums_over_slices(cases, order, batch=3, scale=(1.0, 1.0)):
    """RegionSums fed the cases' slices in ``order`` (case, z), ``batch`` slices at a time,
    each case's doses multiplied by its normalisation constant ``scale[case]``."""
    sums = RegionSums([LABEL_NAMES] * len(cases), [0.064] * len(cases))
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]

        def stack(key, chunk=chunk):
            return torch.from_numpy(np.stack(
                [cases[c][key][z] * (scale[c] if key != "labels" else 1) for c, z in chunk]
            ).astype(np.float32))[:, None]

        sums.add(torch.tensor([c for c, _ in chunk]), stack("labels"), stack("cnn"),
                 stack("dose/vdk"), stack("dose/mc"))
    return sums


@pytest.fixture(scope="module")
def two_cases():
    cases = []
    for seed in (0, 1):
        a = synthetic_arrays((6, 20, 20), seed=seed)
        rng = np.random.default_rng(seed)
        a["cnn"] = a["dose/mc_spect"] * rng.uniform(0.8, 1.2, a["dose/mc"].shape)
        a["cnn"][a["labels"] == 3] *= -1.0  # negative in the spleen: clipped to 0
        a["cnn"][a["labels"] == 0] = 1.0  # outside the body: set to 0
        cases.append(a)
    return cases


def test_region_sums_give_the_evaluation_metrics_in_any_order_and_scale(two_cases):
    order = [(c, z) for c in range(2) for z in range(6)]
    rng = np.random.default_rng(7)
    shuffled = [order[i] for i in rng.permutation(len(order))]
    # the normalisation multiplies a case's doses by one constant: the metrics ignore it
    sums = _sums_over_slices(two_cases, shuffled, scale=(3.5e3, 0.02))
    result = sums.cases(["a", "b"])
    for case, a in zip(result, two_cases, strict=True):
        cnn = np.where(a["labels"] != 0, np.clip(a["cnn"], 0.0, None), 0.0)
        expected = scored_regions(LABEL_NAMES, a["labels"])
        assert set(case["regions"]) == set(expected)
        for name, mask in expected.items():
            got = case["regions"][name]
            assert got["voxels"] == int(mask.sum())
            assert got["volume_ml"] == pytest.approx(0.064 * mask.sum())
            # the scaled doses are float32 (relative rounding 6e-8), the sums float64
            for method, dose in (("vdk", a["dose/vdk"]), ("cnn", cnn)):
                expected_mde = mde(dose, a["dose/mc"], mask)
                assert got[method]["mde"] == pytest.approx(expected_mde, rel=1e-5,
                                                           abs=1e-7), (name, method)
                assert got[method]["nrmse"] == pytest.approx(nrmse(dose, a["dose/mc"], mask),
                                                             rel=1e-6), (name, method)
    assert result[0]["regions"]["spleen"]["cnn"]["mde"] == pytest.approx(1.0)  # all clipped
    sums.reset()
    assert float(sums.sums.abs().sum()) == 0.0


def test_score_counts_the_goals_and_averages_the_ratios(two_cases):
    order = [(c, z) for c in range(2) for z in range(6)]
    perfect = [dict(a, cnn=a["dose/mc"]) for a in two_cases]
    score = _sums_over_slices(perfect, order).score()
    # 6 goal classes × (MDE, NRMSE), the per-case lesion halving and the small lesions'
    # MDE below VDK's (the synthetic lesions are all < 20 mm, so no ≥ 20 mm halving); no
    # MC-on-SPECT during training; the all-lesion halving is not counted
    assert (score.missed, score.total, score.ratio) == (0, 14, 0.0)
    as_vdk = [dict(a, cnn=a["dose/vdk"]) for a in two_cases]
    score = _sums_over_slices(as_vdk, order).score()
    # equal to VDK misses every goal: ratio 1, and 2 for the halving
    assert (score.missed, score.total) == (14, 14)
    assert score.ratio == pytest.approx(15 / 14)
    assert {g["region"] for g in score.goals} == {
        "healthy_liver", "liver", "tumour", "spleen", "kidney_left", "kidney_right",
        "tumour_per_case", "tumour_lt20mm"}


def test_goal_score_order():
    a, b, c = GoalScore(1, 13, 0.5), GoalScore(0, 13, 0.9), GoalScore(0, 13, 0.8)
    assert b.better_than(a) and c.better_than(b) and not a.better_than(c)
    assert a.better_than(None) and not c.better_than(c)


def test_add_rejects_labels_outside_the_names():
    sums = RegionSums([{0: "background", 1: "body"}], [1.0])
    one = torch.ones(1, 1, 2, 2)
    with pytest.raises(ValueError, match="label value"):
        sums.add(torch.tensor([0]), one * 2, one, one, one)


def test_train_selects_the_epoch_best_against_the_goals(tiny_config, tiny_dataset, tmp_path):
    config = TrainConfig(epochs=3, batch_size=8, block_slices=4, workers=0, seed=0,
                         model=tiny_config, early_stopping=0, max_batches=2,
                         select_by="goals")
    result = train(tiny_dataset, tmp_path / "m.pt", config)
    keys = [(row["val_goals_missed"], row["val_goal_ratio"]) for row in result.history]
    assert all(row["val_goals"] == 14 for row in result.history)  # as in the test above
    assert result.best_epoch == 1 + keys.index(min(keys))
    assert result.best_score.key() == min(keys)
    rows = list(csv.DictReader((tmp_path / "m.log.csv").open()))
    assert [float(r["val_goal_ratio"]) for r in rows] == pytest.approx([k[1] for k in keys])
    training = load_model(tmp_path / "m.pt").training
    assert training["config"]["select_by"] == "goals"
    assert training["best_epoch"] == result.best_epoch
    assert len(training["best_val_goals"]) == 14
    state = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert state["best_score"][:2] == [result.best_score.missed, 14]
    assert math.isclose(state["best_score"][2], result.best_score.ratio)


def test_select_by_goals_needs_labelled_validation_cases(tiny_config, tiny_dataset, tmp_path):
    with pytest.raises(InputError, match="select_by"):
        TrainConfig(select_by="dice")
    data = tmp_path / "data"
    data.mkdir()
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    for case in manifest["cases"]:
        (data / case["file"]).symlink_to(tiny_dataset / case["file"])
        case["split"] = "train" if case["split"] == "val" else case["split"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    config = TrainConfig(epochs=1, batch_size=8, workers=0, model=tiny_config,
                         select_by="goals")
    with pytest.raises(InputError, match="validation cases with labels"):
        train(data, tmp_path / "m.pt", config)
    assert not (tmp_path / "m.pt").exists()
