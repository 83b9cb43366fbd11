"""Tests of phantom case files and of cases built from a real CT + activity image."""

from __future__ import annotations

import numpy as np
import pytest

from mcdose.errors import CaseFileError, InputError
from mcdose.io.case import (
    Geometry,
    read_case_info,
    read_dataset,
    read_label_names,
    validate_case,
)
from mcdose.io.images import write_image
from mcdose.phantoms import (
    generate_phantom,
    phantom_from_images,
    read_phantom_params,
    write_phantom_case,
)


def test_write_phantom_case_round_trip(tmp_path):
    ph = generate_phantom(3, "tiny")
    path = write_phantom_case(ph, tmp_path / "case.h5")
    info = validate_case(path, require=("density", "activity", "labels"))
    assert info.nuclide == "Lu-177"
    assert info.geometry.allclose(ph.geometry)
    np.testing.assert_array_equal(read_dataset(path, "density"), ph.density)
    np.testing.assert_array_equal(read_dataset(path, "activity"), ph.activity_MBq)
    np.testing.assert_array_equal(read_dataset(path, "labels"), ph.labels)
    assert read_label_names(path) == ph.label_names
    params = read_phantom_params(path)
    assert params["seed"] == 3 and params["preset"] == "tiny"
    assert params["lesions"] == ph.params["lesions"]
    assert info.attrs["seed"] == 3
    assert info.provenance["seed"] == 3 and info.provenance["method"] == "phantom"
    # no overwrite without asking, and nothing left behind
    with pytest.raises(CaseFileError):
        write_phantom_case(ph, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.h5"]


def _write_images(tmp_path):
    """A 40×40×10 CT (2.5 mm) with a water cylinder in air and a 5 mm activity image."""
    ct_geo = Geometry((2.5, 2.5, 2.5), origin_mm=(-48.75, -48.75, -11.25))
    y, x = np.mgrid[:40, :40]
    inside = (x - 19.5) ** 2 + (y - 19.5) ** 2 < 15**2
    hu = np.where(inside, 0.0, -1000.0)[None].repeat(10, axis=0).astype(np.float32)
    hu[:, 18:22, 18:22] = 1000.0  # a bone rod
    ct = tmp_path / "ct.nii.gz"
    write_image(ct, hu, ct_geo)
    act_geo = Geometry((5.0, 5.0, 5.0), origin_mm=(-47.5, -47.5, -10.0))
    conc = np.zeros((5, 20, 20), dtype=np.float32)
    conc[:, 6:14, 6:14] = 2.0e5  # Bq/mL, well inside the cylinder
    pet = tmp_path / "pet.nii.gz"
    write_image(pet, conc, act_geo)
    return ct, pet, ct_geo, act_geo, conc


def test_phantom_from_images(tmp_path):
    ct, pet, ct_geo, act_geo, conc = _write_images(tmp_path)
    ph = phantom_from_images(ct, pet)
    assert ph.shape == (10, 40, 40)
    assert ph.geometry.allclose(ct_geo)
    # paper calibration: HU 0 -> 1.02351, HU 1000 -> 1.72107, air clipped at 0.0012
    assert ph.density[5, 10, 19] == pytest.approx(1.02351, rel=1e-5)
    assert ph.density[5, 19, 19] == pytest.approx(0.00069 * 1000 + 1.03107, rel=1e-5)
    assert ph.density[5, 0, 0] == pytest.approx(0.0012, rel=0.01)
    assert ph.label_names == {0: "background", 1: "body"}
    assert ph.labels[5, 19, 19] == 1 and ph.labels[5, 0, 0] == 0
    assert np.all(ph.activity_MBq[ph.labels == 0] == 0)
    # activity conserved by resampling the concentration (MBq/mL x voxel volume)
    expected = conc.sum() * 1e-6 * act_geo.voxel_volume_cm3
    assert ph.total_activity_MBq == pytest.approx(expected, rel=0.02)
    assert ph.params["source"] == "images"
    path = write_phantom_case(ph, tmp_path / "case.h5")
    assert read_case_info(path).attrs["source"] == "images"


def test_phantom_from_images_units_and_labels(tmp_path):
    ct, pet, ct_geo, act_geo, conc = _write_images(tmp_path)
    per_voxel = tmp_path / "act_mbq.nii.gz"
    write_image(per_voxel, conc * 1e-6 * act_geo.voxel_volume_cm3, act_geo)  # MBq per voxel
    a = phantom_from_images(ct, pet, activity_units="Bq/ml")
    b = phantom_from_images(ct, per_voxel, activity_units="MBq")
    np.testing.assert_allclose(b.activity_MBq, a.activity_MBq, rtol=1e-5, atol=1e-12)
    labels = np.zeros((10, 40, 40), dtype=np.int16)
    labels[:, 15:25, 15:25] = 5
    lab_path = tmp_path / "labels.nii.gz"
    write_image(lab_path, labels, ct_geo)
    c = phantom_from_images(ct, pet, labels_path=lab_path, label_names={5: "liver"})
    assert c.label_names == {0: "background", 5: "liver"}
    np.testing.assert_array_equal(c.labels, labels)
    assert np.all(c.activity_MBq[labels == 0] == 0)
    with pytest.raises(InputError, match="activity_units"):
        phantom_from_images(ct, pet, activity_units="Ci")
    with pytest.raises(InputError):
        phantom_from_images(tmp_path / "missing.nii.gz", pet)
