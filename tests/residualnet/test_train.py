"""residualnet.train: learning, checkpoint/resume, outputs, errors, DDP (gloo, 2 processes)."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import sys

import pytest
import torch

from mcdose.errors import InputError
from residualnet.model import build_model
from residualnet.modelfile import load_model
from residualnet.train import TrainConfig, output_paths, train


def _config(tiny_config, **kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=8, block_slices=4, workers=0, seed=0, model=tiny_config,
                augment=True, early_stopping=0)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases_on_learnable_residual(tiny_config):
    # target = VDK + a smooth function of the SPECT and density centre slices
    g = torch.Generator().manual_seed(0)
    packs = torch.rand(8, 2, tiny_config.pack_size, 16, 16, generator=g)
    centre = packs[:, :, tiny_config.pack_size // 2]
    vdk = torch.nn.functional.avg_pool2d(centre[:, :1], 3, 1, 1)
    target = vdk + 0.5 * centre[:, :1] * centre[:, 1:] - 0.1
    net = build_model(tiny_config, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(packs, vdk), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_train_outputs_and_resume_reproduces(tiny_config, tiny_dataset, tmp_path):
    straight = tmp_path / "straight"
    split = tmp_path / "split"
    straight.mkdir()
    split.mkdir()
    full = train(tiny_dataset, straight / "m.pt", _config(tiny_config, epochs=2))
    assert [row["epoch"] for row in full.history] == [1, 2]
    assert full.parameters == sum(p.numel() for p in build_model(tiny_config).parameters())
    for path in output_paths(straight / "m.pt").values():
        assert path.exists(), path
    rows = list(csv.DictReader((straight / "m.log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert (straight / "m.loss.png").read_bytes()[:4] == b"\x89PNG"

    # the same run in two halves
    half = train(tiny_dataset, split / "m.pt", _config(tiny_config, epochs=1))
    assert half.epochs_run == 1
    resumed = train(tiny_dataset, split / "m.pt", _config(tiny_config, epochs=2), resume=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    for (k, va), vb in zip(full.net.state_dict().items(), resumed.net.state_dict().values(),
                           strict=True):
        assert torch.equal(va, vb), k

    model = load_model(straight / "m.pt", expected_voxel_mm=(4, 4, 4), expected_nuclide="lu177")
    assert model.config == tiny_config
    assert model.training["best_epoch"] == full.best_epoch
    assert model.normalization == full.normalization

    # errors, each one line, nothing overwritten
    with pytest.raises(InputError, match="--resume"):
        train(tiny_dataset, straight / "m.pt", _config(tiny_config))
    with pytest.raises(InputError, match="checkpoint .* not found"):
        train(tiny_dataset, tmp_path / "none.pt", _config(tiny_config), resume=True)
    other = _config(tiny_config).model.__class__(**{**tiny_config.to_dict(), "unet_width": 6})
    with pytest.raises(InputError, match="different architecture"):
        train(tiny_dataset, straight / "m.pt", _config(tiny_config, model=other), resume=True)


def test_train_body_loss_no_validation(tiny_config, tiny_dataset, tmp_path):
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    data = tmp_path / "data"
    data.mkdir()
    for case in manifest["cases"]:
        (data / case["file"]).symlink_to(tiny_dataset / case["file"])
        case["split"] = "train" if case["split"] != "test" else "test"
    (data / "manifest.json").write_text(json.dumps(manifest))
    result = train(data, tmp_path / "m.pt",
                   _config(tiny_config, epochs=1, loss="body", max_batches=2, augment=False))
    assert result.history[0]["val_loss"] != result.history[0]["val_loss"]  # NaN: no val split
    assert result.best_epoch == 1


def test_train_input_errors(tiny_config, tiny_dataset, tmp_path):
    with pytest.raises(InputError, match="not found"):
        train(tmp_path / "nothing", tmp_path / "m.pt", _config(tiny_config))
    with pytest.raises(InputError, match="output folder"):
        train(tiny_dataset, tmp_path / "no" / "m.pt", _config(tiny_config))
    only_test = tmp_path / "only_test"
    only_test.mkdir()
    (only_test / "c.h5").symlink_to(tiny_dataset / "case_0000.h5")
    (only_test / "manifest.json").write_text(
        json.dumps({"cases": [{"file": "c.h5", "split": "test"}]})
    )
    with pytest.raises(InputError, match="no training cases"):
        train(only_test, tmp_path / "m.pt", _config(tiny_config))
    with pytest.raises(InputError, match="loss"):
        TrainConfig(loss="l1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, dataset: str, out: str, config: dict,
                result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MCDOSE_NO_PROGRESS="1")
    torch.set_num_threads(1)
    result = train(dataset, out, TrainConfig.from_dict(config), overwrite=True)
    checksum = float(sum(p.double().sum() for p in result.net.parameters()))
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"history": result.history, "checksum": checksum}, f)


@pytest.mark.skipif(sys.platform != "linux", reason="forks two gloo processes (Linux)")
def test_ddp_two_processes_gloo(tiny_config, tiny_dataset, tmp_path):
    import torch.multiprocessing as mp

    config = _config(tiny_config, epochs=1, device="cpu").to_dict()
    out = tmp_path / "ddp.pt"
    # fork: the workers inherit the imported modules (spawn would re-import torch twice);
    # never fork a process that has initialised CUDA
    method = "spawn" if torch.cuda.is_initialized() else "fork"
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tiny_dataset), str(out), config,
                                          str(tmp_path)), nprocs=2, join=True,
                       start_method=method)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    # all-reduced losses and DDP-synchronised weights are the same on both ranks
    assert r0["history"][0]["train_loss"] == r1["history"][0]["train_loss"]
    # each rank validates its share; the region sums are all-reduced before the goals
    assert r0["history"][0]["val_goals"] == 14  # as in test_validation
    assert r0["history"][0]["val_goal_ratio"] == r1["history"][0]["val_goal_ratio"]
    assert r0["checksum"] == pytest.approx(r1["checksum"], rel=1e-12)
    model = load_model(out)
    assert model.training["world_size"] == 2


def test_poisson_loss_weights_body_voxels_by_inverse_vdk():
    from residualnet.losses import training_loss as _loss

    config = TrainConfig(loss="poisson", poisson_floor=0.01)
    vdk = torch.tensor([[[[0.99, 0.09, 0.0, 0.5]]]])
    body = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]]])
    target = torch.zeros_like(vdk)
    pred = torch.tensor([[[[0.1, 0.1, 0.1, 7.0]]]])  # the outside voxel does not count
    # weights 1/(0.99+0.01) = 1, 1/(0.09+0.01) = 10, 1/0.01 = 100; mean over 3 body voxels
    expected = (1 + 10 + 100) * 0.01 / 3
    assert float(_loss(pred, target, body, vdk, config)) == pytest.approx(expected, rel=1e-6)
    # the same error costs ten times more where the dose is ten times lower
    low = torch.tensor([[[[0.0, 0.1, 0.0, 0.0]]]])
    high = torch.tensor([[[[0.1, 0.0, 0.0, 0.0]]]])
    assert float(_loss(low, target, body, vdk, config)) == pytest.approx(
        10 * float(_loss(high, target, body, vdk, config)), rel=1e-6)
    # plain MSE ignores both the body and the VDK
    mse = TrainConfig(loss="mse")
    assert float(_loss(pred, target, body, vdk, mse)) == pytest.approx((3 * 0.01 + 49) / 4)
    with pytest.raises(InputError, match="poisson_floor"):
        TrainConfig(loss="poisson", poisson_floor=0.0)


def test_train_with_poisson_loss(tiny_config, tiny_dataset, tmp_path):
    result = train(tiny_dataset, tmp_path / "m.pt",
                   _config(tiny_config, epochs=1, loss="poisson", max_batches=2))
    row = result.history[0]
    assert row["train_loss"] > 0 and row["val_loss"] > 0
    assert load_model(tmp_path / "m.pt").training["config"]["loss"] == "poisson"


def test_region_mean_error_is_the_relative_error_of_region_means():
    from residualnet.losses import region_mean_error

    # slice 0: region 1 (2 voxels, true mean 0.5, predicted 0.6), region 2 (2 voxels, true
    # mean 0.05, predicted 0.05 as a mean although voxel-wise wrong); slice 1: region 1 with
    # one voxel only (left out, min_voxels 2) and outside (label 0, never counted)
    labels = torch.tensor([[[[1.0, 1.0, 2.0, 2.0]]], [[[1.0, 0.0, 0.0, 0.0]]]])
    target = torch.tensor([[[[0.4, 0.6, 0.05, 0.05]]], [[[1.0, 9.0, 9.0, 9.0]]]])
    pred = torch.tensor([[[[0.6, 0.6, 0.1, 0.0]]], [[[5.0, 0.0, 0.0, 0.0]]]])
    floor = 0.05
    expected = (((0.6 - 0.5) / (0.5 + floor)) ** 2 + 0.0) / 2
    value = region_mean_error(pred, target, labels, floor, min_voxels=2)
    assert float(value) == pytest.approx(expected, rel=1e-5)
    # dose moved between voxels of one region costs nothing; a uniform 10 % bias costs 0.1²
    one = torch.ones_like(target[:1])
    shuffled = region_mean_error(target[:1].flip(-1), target[:1], one, 1e-9, 1)
    assert float(shuffled) < 1e-10
    biased = region_mean_error(target * 0.9, target, labels, 1e-9, 1)
    assert float(biased) == pytest.approx(0.01, rel=1e-4)
    # power 1: the mean absolute relative error, i.e. the per-slice MDE
    assert float(region_mean_error(target * 0.9, target, labels, 1e-9, 1, power=1)) == \
        pytest.approx(0.1, rel=1e-4)
    assert float(region_mean_error(pred, target, labels, floor, 2, power=1)) == pytest.approx(
        (0.1 / 0.55 + 0.0) / 2, rel=1e-5)
    # no qualifying region: exactly 0, differentiable
    pred.requires_grad_(True)
    zero = region_mean_error(pred, target, torch.zeros_like(labels), floor, 1)
    zero.backward()
    assert zero.item() == 0.0 and pred.grad is not None


def test_region_term_weights_lesions_and_has_their_own_voxel_threshold():
    from mcdose.phantoms import LESION_BASE
    from residualnet.losses import LESION_LABEL_BASE, region_mean_error
    from residualnet.losses import training_loss as _loss

    assert LESION_LABEL_BASE == LESION_BASE
    target = torch.ones(2, 1, 4, 4)
    labels = torch.zeros(2, 1, 4, 4)
    labels[:, 0, 0, :] = 1  # an organ, 4 voxels per slice, 10 % high
    labels[0, 0, 1, :2] = LESION_BASE + 3  # a lesion, 2 voxels in slice 0, 50 % low
    pred = target.clone()
    pred[:, 0, 0, :] = 1.1
    pred[0, 0, 1, :2] = 0.5
    # below the 4-voxel threshold the lesion is left out: two organ terms of 0.1²
    assert float(region_mean_error(pred, target, labels, 1e-9, 4)) == pytest.approx(0.01)
    # its own threshold lets it in: (0.01 + 0.01 + 0.25) / 3
    assert float(region_mean_error(pred, target, labels, 1e-9, 4, lesion_min_voxels=2)) == \
        pytest.approx(0.27 / 3)
    # weighted 4: (0.01 + 0.01 + 4 × 0.25) / (1 + 1 + 4); absolute: (0.1 + 0.1 + 4 × 0.5) / 6
    assert float(region_mean_error(pred, target, labels, 1e-9, 4, lesion_weight=4,
                                   lesion_min_voxels=1)) == pytest.approx(1.02 / 6)
    assert float(region_mean_error(pred, target, labels, 1e-9, 4, power=1, lesion_weight=4,
                                   lesion_min_voxels=1)) == pytest.approx(2.2 / 6)
    # weight 0 removes the lesions, whatever their threshold
    assert float(region_mean_error(pred, target, labels, 1e-9, 1, lesion_weight=0)) == \
        pytest.approx(0.01)
    # the loss passes its config on
    config = TrainConfig(loss="mde", organ_weight=1.0, organ_floor=1e-9, lesion_weight=4,
                         lesion_min_voxels=1)
    mse = torch.mean((pred - target) ** 2)
    loss = _loss(pred, target, (labels > 0).float(), target, config, labels)
    assert float(loss) == pytest.approx(float(mse) + 2.2 / 6, rel=1e-6)
    for bad in (dict(lesion_weight=-1.0), dict(lesion_min_voxels=0)):
        with pytest.raises(InputError):
            TrainConfig(loss="mde", **bad)


def test_region_nrmse_is_the_relative_voxel_error_of_each_region():
    from mcdose.phantoms import LESION_BASE
    from residualnet.losses import region_mean_error, region_nrmse
    from residualnet.losses import training_loss as _loss

    # slice 0: region 1 at dose 1 with voxel errors ±0.2 (mean exact), region 2 at dose 0.01
    # with voxel errors ±0.002; slice 1: a one-voxel lesion 50 % low
    labels = torch.zeros(2, 1, 2, 4)
    labels[0, 0, 0, :] = 1
    labels[0, 0, 1, :] = 2
    labels[1, 0, 0, 0] = LESION_BASE
    target = torch.zeros(2, 1, 2, 4)
    target[0, 0, 0, :] = 1.0
    target[0, 0, 1, :] = 0.01
    target[1, 0, 0, 0] = 0.6
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0])
    pred = target.clone()
    pred[0, 0, 0, :] += 0.2 * sign
    pred[0, 0, 1, :] += 0.002 * sign
    pred[1, 0, 0, 0] = 0.3
    # both organs: √(4 · (0.2 d)² / (4 d²)) = 0.2 whatever their dose d; their means are exact
    assert float(region_mean_error(pred, target, labels, 1e-9, 4)) < 1e-10
    assert float(region_nrmse(pred, target, labels, 0.0, 4, eps=0.0)) == pytest.approx(
        0.2, rel=1e-5)
    # the lesion, once let in and weighted 2: (0.2 + 0.2 + 2 · 0.5) / 4
    assert float(region_nrmse(pred, target, labels, 0.0, 4, lesion_weight=2,
                              lesion_min_voxels=1, eps=0.0)) == pytest.approx(1.4 / 4, rel=1e-5)
    # the floor damps the low-dose region: √(Σe² / Σ(D² + floor²))
    floor = 0.01
    low = math.sqrt(4 * 0.002**2 / (4 * (0.01**2 + floor**2)))
    high = math.sqrt(4 * 0.2**2 / (4 * (1.0 + floor**2)))
    assert float(region_nrmse(pred, target, labels, floor, 4, eps=0.0)) == pytest.approx(
        (low + high) / 2, rel=1e-5)
    # exact prediction: √eps; no region: 0 and differentiable
    assert float(region_nrmse(target, target, labels, floor, 1, eps=1e-6)) == pytest.approx(1e-3)
    pred.requires_grad_(True)
    zero = region_nrmse(pred, target, torch.zeros_like(labels), floor, 1)
    zero.backward()
    assert zero.item() == 0.0 and pred.grad is not None
    # the loss adds it with its weight and floor, the region term's threshold and lesion weight
    config = TrainConfig(loss="poisson-mde", organ_floor=floor, organ_min_voxels=1,
                         lesion_weight=2, nrmse_weight=0.5, nrmse_floor=floor)
    base = TrainConfig(loss="poisson-mde", organ_floor=floor, organ_min_voxels=1,
                       lesion_weight=2)
    body = (labels > 0).float()
    pred = pred.detach()
    with_term = float(_loss(pred, target, body, target, config, labels))
    without = float(_loss(pred, target, body, target, base, labels))
    assert with_term - without == pytest.approx(
        0.5 * float(region_nrmse(pred, target, labels, floor, 1, lesion_weight=2)), rel=1e-5)
    for bad, message in ((dict(loss="poisson-mde", nrmse_weight=-1.0), "nrmse_weight must"),
                         (dict(loss="poisson", nrmse_weight=0.1), "needs a region loss"),
                         (dict(loss="mde", nrmse_floor=0.0), "nrmse_floor must")):
        with pytest.raises(InputError, match=message):
            TrainConfig(**bad)


def test_region_relative_mse_divides_by_the_reference_and_leaves_lesions_out_of_the_loss():
    from mcdose.phantoms import LESION_BASE
    from residualnet.losses import region_relative_mse
    from residualnet.losses import training_loss as _loss

    # slice 0: region 1 (4 voxels) with voxel errors ±0.2 around a true dose 1, reference 0.5;
    # slice 1: a one-voxel lesion, true 0.6, predicted 0.3, reference 0.2
    labels = torch.zeros(2, 1, 2, 4)
    labels[0, 0, 0, :] = 1
    labels[1, 0, 0, 0] = LESION_BASE
    target = torch.zeros(2, 1, 2, 4)
    target[0, 0, 0, :] = 1.0
    target[1, 0, 0, 0] = 0.6
    reference = 0.5 * (labels == 1).float()
    reference[1, 0, 0, 0] = 0.2
    pred = target.clone()
    pred[0, 0, 0, :] += 0.2 * torch.tensor([1.0, -1.0, 1.0, -1.0])
    pred[1, 0, 0, 0] = 0.3
    floor = 0.1
    organ = 4 * 0.2**2 / (4 * (0.5**2 + floor**2))
    lesion = 0.3**2 / (0.2**2 + floor**2)
    assert float(region_relative_mse(pred, target, reference, labels, floor, 1)) == \
        pytest.approx((organ + lesion) / 2, rel=1e-5)
    assert float(region_relative_mse(pred, target, reference, labels, floor, 1,
                                     lesion_weight=0.0)) == pytest.approx(organ, rel=1e-5)
    # the truth never enters the denominator
    assert float(region_relative_mse(pred, 0.5 * target, reference, labels, floor, 4)) == \
        pytest.approx(float(((pred - 0.5 * target)[0, 0, 0] ** 2).sum())
                      / (4 * (0.5**2 + floor**2)), rel=1e-5)
    zero = region_relative_mse(pred.requires_grad_(True), target, reference,
                               torch.zeros_like(labels), floor, 1)
    zero.backward()
    assert zero.item() == 0.0 and pred.grad is not None
    # the loss passes the VDK as the reference and weighs lesions 0 in this term
    config = TrainConfig(loss="poisson-mde", organ_min_voxels=1, lesion_weight=2,
                         nrmse_weight=0.5, nrmse_floor=floor, nrmse_reference="vdk")
    base = TrainConfig(loss="poisson-mde", organ_min_voxels=1, lesion_weight=2)
    body = (labels > 0).float()
    pred = pred.detach()
    added = (float(_loss(pred, target, body, reference, config, labels))
             - float(_loss(pred, target, body, reference, base, labels)))
    assert added == pytest.approx(0.5 * organ, rel=1e-5)
    with pytest.raises(InputError, match="nrmse_reference must"):
        TrainConfig(loss="poisson-mde", nrmse_reference="spect")


def test_only_the_vdk_referenced_term_is_minimised_by_the_mean_of_an_uncertain_truth():
    """Where the inputs leave the truth uncertain, the truth-referenced NRMSE's minimiser lies
    below the truth's mean (a region weighs more the lower its dose turns out); with the VDK
    as reference the minimiser is the mean (the weights do not depend on the truth)."""
    from residualnet.losses import region_nrmse, region_relative_mse

    # 400 slices of one 8-voxel region whose true dose is 1 × a lognormal factor (σ 0.4)
    # that the inputs do not tell: the same prediction and reference (1) for all of them
    generator = torch.Generator().manual_seed(3)
    factor = torch.exp(0.4 * torch.randn(400, 1, 1, 1, generator=generator))
    target = factor * (1.0 + 0.05 * torch.randn(400, 1, 1, 8, generator=generator))
    labels = torch.ones_like(target)
    reference = torch.ones_like(target)
    levels = torch.linspace(0.6, 1.4, 801)

    def minimiser(term) -> float:
        values = [float(term(torch.full_like(target, float(a)))) for a in levels]
        return float(levels[int(torch.tensor(values).argmin())])

    mean = float(target.mean())
    truth_referenced = minimiser(lambda p: region_nrmse(p, target, labels, 0.05, 1, eps=0.0))
    vdk_referenced = minimiser(
        lambda p: region_relative_mse(p, target, reference, labels, 0.05, 1))
    assert vdk_referenced == pytest.approx(mean, abs=1e-3)
    assert truth_referenced < 0.9 * mean


def test_organ_loss_adds_the_weighted_region_term_to_the_mse():
    from residualnet.losses import region_mean_error
    from residualnet.losses import training_loss as _loss

    g = torch.Generator().manual_seed(3)
    target = torch.rand(2, 1, 6, 6, generator=g)
    pred = target * 1.2 + 0.01 * torch.rand(2, 1, 6, 6, generator=g)
    labels = torch.randint(0, 4, (2, 1, 6, 6), generator=g).float()
    body = (labels > 0).float()
    config = TrainConfig(loss="organ", organ_weight=0.5, organ_floor=0.05, organ_min_voxels=1)
    mse = torch.mean((pred - target) ** 2)
    region = region_mean_error(pred, target, labels, 0.05, 1)
    assert float(region) > 0.01
    value = _loss(pred, target, body, target, config, labels)
    assert float(value) == pytest.approx(float(mse + 0.5 * region), rel=1e-6)
    # without a label map the body mask is the one region
    no_labels = _loss(pred, target, body, target, config)
    assert float(no_labels) == pytest.approx(
        float(mse + 0.5 * region_mean_error(pred, target, body, 0.05, 1)), rel=1e-6)
    # loss="mde": the absolute relative error, its own defaults
    mde = TrainConfig(loss="mde")
    assert (mde.organ_weight, mde.organ_floor) == (1e-3, 0.01)
    assert TrainConfig.from_dict(mde.to_dict()).organ_weight == 1e-3
    absolute = region_mean_error(pred, target, labels, 0.01, 4, power=1)
    assert float(_loss(pred, target, body, target, mde, labels)) == pytest.approx(
        float(mse + 1e-3 * absolute), rel=1e-6)
    # loss="poisson-mde": the Poisson voxel term plus the absolute region term
    both = TrainConfig(loss="poisson-mde")
    assert (both.organ_weight, both.organ_floor) == (2e-2, 0.01)
    vdk = target * 0.8
    poisson = _loss(pred, target, body, vdk, TrainConfig(loss="poisson"))
    assert float(_loss(pred, target, body, vdk, both, labels)) == pytest.approx(
        float(poisson + 2e-2 * absolute), rel=1e-6)
    for bad in (dict(organ_weight=-1.0), dict(organ_floor=0.0), dict(organ_min_voxels=0)):
        with pytest.raises(InputError):
            TrainConfig(loss="organ", **bad)


def test_train_with_organ_loss(tiny_config, tiny_dataset, tmp_path):
    result = train(tiny_dataset, tmp_path / "m.pt",
                   _config(tiny_config, epochs=1, loss="organ", max_batches=2))
    row = result.history[0]
    mse_only = train(tiny_dataset, tmp_path / "n.pt",
                     _config(tiny_config, epochs=1, loss="mse", max_batches=2))
    # same seed, same batches: the organ loss is the MSE plus a positive region term
    assert row["val_loss"] > mse_only.history[0]["val_loss"] > 0
    assert load_model(tmp_path / "m.pt").training["config"]["organ_weight"] == 0.01


def test_ema_update_is_the_exponential_moving_average_with_warm_up():
    from residualnet.train import _ema_update

    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    average = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        for p in average.parameters():
            p.fill_(1.0)
        for p in net.parameters():
            p.fill_(3.0)
    net[1].num_batches_tracked.fill_(7)
    # step 0: warm-up decay (1 + 0) / (10 + 0) = 0.1 -> 0.1·1 + 0.9·3 = 2.8
    _ema_update(average, net, 0.99, 0)
    assert torch.allclose(average[0].weight, torch.full_like(average[0].weight, 2.8))
    assert int(average[1].num_batches_tracked) == 7  # integer buffers are copied
    # late step: the decay itself, 0.99·2.8 + 0.01·3 = 2.802
    _ema_update(average, net, 0.99, 10**6)
    assert torch.allclose(average[0].bias, torch.full_like(average[0].bias, 2.802))
    for p in net.parameters():  # the trained weights are untouched
        assert torch.all(p == 3.0)


def test_train_with_ema_saves_the_average_and_resumes_exactly(tiny_config, tiny_dataset,
                                                              tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    straight.mkdir()
    split.mkdir()
    config = _config(tiny_config, epochs=2, max_batches=3, ema_decay=0.9)
    full = train(tiny_dataset, straight / "m.pt", config)
    state = torch.load(straight / "m.ckpt", weights_only=True)
    assert state["ema_steps"] == 6
    # the model file holds the average, not the last weights
    saved = load_model(straight / "m.pt").net.state_dict()
    trained = state["model_state"]
    key = next(k for k in trained if k.endswith("weight") and trained[k].dim() > 1)
    assert not torch.equal(saved[key], trained[key])
    assert full.best_epoch == 2  # (this seed) so the model file is the final average
    assert torch.equal(saved[key], state["ema_state"][key])
    assert load_model(straight / "m.pt").training["config"]["ema_decay"] == 0.9

    train(tiny_dataset, split / "m.pt", _config(tiny_config, epochs=1, max_batches=3,
                                                ema_decay=0.9))
    resumed = train(tiny_dataset, split / "m.pt", config, resume=True)
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["val_loss"] == b["val_loss"]
    for (k, va), vb in zip(full.net.state_dict().items(), resumed.net.state_dict().values(),
                           strict=True):
        assert torch.equal(va, vb), k
    with pytest.raises(InputError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
