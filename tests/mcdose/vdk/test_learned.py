"""Tests of mcdose.vdk.learned (``mcdose vdk --kernels learned``) with the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mcdose.errors import InputError
from mcdose.io.case import read_dataset, read_dataset_attrs
from mcdose.vdk import vdk_case
from tests.helpers import make_case


def _case(tmp_path, spacing=(4.0, 4.0, 4.0)):
    return make_case(tmp_path, shape=(8, 9, 10), spacing_mm=spacing, activity=True)


def test_learned_case_writes_and_skips(tmp_path):
    path = _case(tmp_path)
    r = vdk_case(path, source="activity", kernels="learned", histories=2_000, device="cpu")
    assert r is not None and r.params["kernels"] == "learned"
    dose = read_dataset(path, "dose/vdk")
    act = read_dataset(path, "activity")
    assert dose.shape == act.shape and np.all(np.isfinite(dose)) and dose.max() > 0
    attrs = read_dataset_attrs(path, "dose/vdk")
    assert attrs["kernels"] == "learned" and attrs["method"] == "vdk"
    assert vdk_case(path, source="activity", kernels="learned", histories=2_000,
                    device="cpu") is None


def test_learned_case_refuses_another_voxel_size(tmp_path):
    path = _case(tmp_path, spacing=(2.0, 2.5, 3.0))
    with pytest.raises(InputError, match="4 mm cubic"):
        vdk_case(path, source="activity", kernels="learned", histories=2_000, device="cpu")


def test_cli_kernels_learned(tmp_path):
    from mcdose_cli.main import cli

    path = _case(tmp_path)
    res = CliRunner().invoke(cli, ["vdk", str(path), "--source", "activity", "--kernels",
                                    "learned", "--histories", "2000", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "learned" in res.output
