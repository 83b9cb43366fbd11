"""CUDA paths: bf16 inference against the float32 CPU result, one AMP training epoch.

Marked ``gpu``: skipped without a CUDA GPU (and without a CUDA build of torch).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcdose.io.case import read_dataset
from residualnet.infer import predict_case
from residualnet.model import build_model
from residualnet.normalization import Normalization
from residualnet.train import TrainConfig, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU"),
]


def test_cuda_bf16_inference_matches_cpu(tiny_config, tiny_dataset):
    path = sorted(tiny_dataset.glob("*.h5"))[3]
    a = {n: read_dataset(path, n) for n in ("spect", "density", "dose/vdk", "labels")}
    net = build_model(tiny_config, seed=5)
    with torch.no_grad():
        torch.nn.init.normal_(net.unet.outc.weight, std=0.5)
    net.eval()
    norm = Normalization(600.0, 1.1e5)
    args = (net, a["spect"], a["density"], a["dose/vdk"])
    cpu = predict_case(*args, labels=a["labels"], normalization=norm, device="cpu")
    gpu = predict_case(*args, labels=a["labels"], normalization=norm, device="cuda", amp="bf16")
    gpu32 = predict_case(*args, labels=a["labels"], normalization=norm, device="cuda",
                         amp="off")
    assert gpu.min() >= 0 and np.all(gpu[a["labels"] == 0] == 0)
    np.testing.assert_allclose(gpu32, cpu, rtol=1e-3, atol=1e-4 * cpu.max())
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=2e-2 * cpu.max())  # bf16 residual


def test_cuda_amp_training_epoch(tiny_config, tiny_dataset, tmp_path):
    config = TrainConfig(epochs=1, batch_size=8, workers=0, device="cuda", amp="auto",
                         model=tiny_config)
    result = train(tiny_dataset, tmp_path / "m.pt", config)
    assert np.isfinite(result.history[0]["train_loss"])
    assert (tmp_path / "m.pt").exists()
