"""mcdose.io.outputs: outputs are never inputs; folders are checked before work."""

import os

import pytest

from mcdose.errors import OutputError
from mcdose.io.outputs import check_output, check_output_folder, same_file
from tests.helpers import assert_one_line


def test_output_equal_to_an_input_is_refused_even_with_overwrite(tmp_path):
    spect = tmp_path / "spect.nii.gz"
    spect.write_bytes(b"x")
    hard = tmp_path / "hard.nii.gz"
    os.link(spect, hard)
    for target in (spect, hard, tmp_path / "sub" / ".." / "spect.nii.gz"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OutputError) as err:
            check_output(target, inputs=[spect], overwrite=True)
        assert_one_line(err, "is the input", "even with --overwrite")
    assert same_file(spect, hard)


def test_output_inside_an_input_folder_is_refused(tmp_path):
    (tmp_path / "ct").mkdir()
    with pytest.raises(OutputError):
        check_output(tmp_path / "ct" / "dose.nii.gz", inputs=[tmp_path / "ct"])


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "d.nii.gz"
    out.write_bytes(b"x")
    with pytest.raises(OutputError) as err:
        check_output(out)
    assert_one_line(err, "pass --overwrite")
    assert check_output(out, overwrite=True) == out


def test_folders(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as err:
        check_output_folder(tmp_path / "file")
    assert_one_line(err, "is not a folder")
    with pytest.raises(OutputError):
        check_output_folder(tmp_path / "missing")
    assert check_output_folder(tmp_path / "new" / "deeper", create=True).is_dir()
    assert [p.name for p in (tmp_path / "new" / "deeper").iterdir()] == []  # probe removed
