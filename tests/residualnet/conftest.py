"""Fixtures of the residualnet tests: a tiny architecture and a tiny synthetic dataset."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from residualnet.model import ModelConfig  # noqa: E402
from residualnet.synthetic import make_synthetic_dataset  # noqa: E402

#: a few thousand parameters: pack of 5, two 3×3×3 stem layers, a 2-level U-Net of width 4
TINY = ModelConfig(
    pack_size=5,
    stem_channels=(4, 4),
    stem_kernels=((3, 3, 3), (3, 3, 3)),
    unet_levels=2,
    unet_width=4,
)
#: (z, y, x) of the synthetic test cases
SHAPE = (12, 24, 24)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: one thread is faster than two, and the 2 test cores are shared.

    Module-scoped so that other packages' tests run with the default again."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return TINY


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """4 synthetic cases: 2 train, 1 val, 1 test (12×24×24 voxels of 4 mm)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("dataset"), 4, shape=SHAPE, seed=0)
