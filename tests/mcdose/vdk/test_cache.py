"""The kernel cache: location, keys, reuse, regeneration."""

from __future__ import annotations

import logging

import numpy as np

import mcdose
from mcdose.vdk import cache_dir, get_kernel, kernel_key

ARGS = ("Lu-177", 4.0, 3)
KW = {"emissions": "electrons", "histories": 200, "seed": 1}


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MCDOSE_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere" / "kernels"
    monkeypatch.delenv("MCDOSE_CACHE_DIR")
    assert cache_dir().name == "kernels" and "mcdose" in str(cache_dir())


def test_kernel_is_generated_once_then_read_from_the_cache(monkeypatch):
    first = get_kernel(*ARGS, **KW, device="cpu")
    assert first.attrs["cached"] is False
    path = cache_dir() / f"{first.attrs['cache_key']}.h5"
    assert path.exists()

    def boom(*a, **k):
        raise AssertionError("must not regenerate")

    monkeypatch.setattr("mcdose.vdk.cache.make_kernel", boom)
    second = get_kernel(*ARGS, **KW, device="cpu")
    assert second.attrs["cached"] is True
    np.testing.assert_array_equal(first.kernel, second.kernel)


def test_keys_depend_on_every_parameter_and_the_version(monkeypatch):
    base = kernel_key(*ARGS, **KW)
    assert base.startswith("Lu-177_soft_tissue_1.04_4x4x4mm_3x3x3_electrons_h2e+02_")
    assert kernel_key("lu177", (4, 4, 4), (3, 3, 3), **KW) == base  # same kernel, other spelling
    changed = [
        kernel_key("Lu-177", (4.0, 4.0, 5.0), 3, **KW),
        kernel_key("Lu-177", 4.0, 5, **KW),
        kernel_key(*ARGS, "lung", **KW),
        kernel_key(*ARGS, **{**KW, "histories": 300}),
        kernel_key(*ARGS, **{**KW, "seed": 2}),
        kernel_key(*ARGS, **{**KW, "emissions": "photons"}),
        kernel_key(*ARGS, density_g_cm3=1.0, **KW),
        kernel_key("Y-90", 4.0, 3, **KW),
    ]
    assert len({base, *changed}) == len(changed) + 1
    monkeypatch.setattr(mcdose, "__version__", "99.0")
    assert kernel_key(*ARGS, **KW) != base


def test_unreadable_cache_file_is_regenerated(caplog):
    key = kernel_key(*ARGS, **KW)
    path = cache_dir() / f"{key}.h5"
    path.parent.mkdir(parents=True)
    path.write_text("garbage")
    with caplog.at_level(logging.WARNING):
        k = get_kernel(*ARGS, **KW, device="cpu")
    assert k.attrs["cached"] is False and "regenerating" in caplog.text
    assert get_kernel(*ARGS, **KW, device="cpu").attrs["cached"] is True


def test_no_cache_stores_nothing():
    get_kernel(*ARGS, **KW, device="cpu", cache=False)
    assert not cache_dir().exists() or not any(cache_dir().iterdir())
