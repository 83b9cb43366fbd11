"""Tests of ``mcdose nuclide NAME [--json]``.

Reference numbers: ICRP Publication 107 (Eckerman & Endo, Ann. ICRP 38(3), 2008) via the
icrp107-database package; Lu-177 values from shared/REFERENCES.md.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from mcdose_cli.main import cli, main


def test_json_output(capsys):
    assert main(["nuclide", "Lu-177", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # stdout holds the JSON and nothing else
    assert err == ""
    assert data["name"] == "Lu-177"
    # REFERENCES.md (ICRP-107): 6.647 d; 133.3 / 147.92 / 35.10 / 183.0 keV, within 0.2 %
    assert data["half_life_s"] == pytest.approx(6.647 * 86400, rel=1e-12)
    assert data["mean_beta_keV"] == pytest.approx(133.3, rel=2e-3)
    assert data["electron_energy_per_decay_keV"] == pytest.approx(147.92, rel=2e-3)
    assert data["photon_energy_per_decay_keV"] == pytest.approx(35.10, rel=2e-3)
    assert data["total_energy_per_decay_keV"] == pytest.approx(183.0, rel=2e-3)


def test_json_accepts_other_spellings(capsys):
    assert main(["nuclide", "99mTc", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "Tc-99m"


def test_summary(capsys):
    assert main(["nuclide", "177Lu"]) == 0
    out = capsys.readouterr().out
    for text in ("Lu-177", "6.647 d", "133.33", "147.98", "35.10", "183.08", "208.37"):
        assert text in out


def test_summary_beta_plus_and_neutrons(capsys):
    assert main(["nuclide", "F-18"]) == 0
    assert "annihilation" in capsys.readouterr().out
    assert main(["nuclide", "Cf-252"]) == 0
    assert "neutrons (ignored" in capsys.readouterr().out


def test_unknown_nuclide_is_one_line_exit_2(capsys):
    assert main(["nuclide", "Xx-999"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mcdose: error: unknown nuclide 'Xx-999'; did you mean ")


def test_help_with_click_runner():
    result = CliRunner().invoke(cli, ["nuclide", "--help"])
    assert result.exit_code == 0
    assert "--json" in result.output


def test_click_runner_json():
    result = CliRunner().invoke(cli, ["nuclide", "y90", "--json"])
    assert result.exit_code == 0
    # ICRP-107: Y-90 mean β⁻ ≈ 933 keV
    assert json.loads(result.output)["mean_beta_keV"] == pytest.approx(933.0, rel=2e-3)
