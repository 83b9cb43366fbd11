"""``kill -9`` in the middle of ``mcdose simulate``: inputs and earlier outputs stay intact,
nothing half-written takes an output's name, and a rerun completes.

The command runs in a subprocess (``python -m mcdose_cli.main``) with far more decays than
it can finish; once its progress bar shows the Monte Carlo running it gets SIGKILL.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mcdose.io.case import Geometry, read_case_info, read_dataset, read_dataset_attrs
from mcdose.io.images import read_image, write_image
from tests.helpers import make_case

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: seconds to wait for the Monte Carlo to start (imports, tables and JIT on a busy machine)
START_TIMEOUT_S = 300


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "cli"),
                                         env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "120"
    env["FORCE_COLOR"] = "1"  # rich draws its progress bar into the log file as it runs
    env["TTY_COMPATIBLE"] = "1"
    env.pop("MCDOSE_NO_PROGRESS", None)
    return env


def _start(args: list[str], log: Path) -> subprocess.Popen:
    fh = open(log, "wb")  # noqa: SIM115 - closed by the caller via the process
    return subprocess.Popen([sys.executable, "-m", "mcdose_cli.main", *args], stdout=fh,
                            stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)


def _kill_when_running(proc: subprocess.Popen, log: Path, marker: bytes = b"MC ") -> None:
    """SIGKILL ``proc`` once ``marker`` (the progress bar) shows in its output."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the command ended before it was killed: {log.read_text()[-2000:]}")
        if marker in log.read_bytes():
            time.sleep(0.5)  # well inside the run
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the Monte Carlo did not start in time")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def test_kill_simulate_on_a_case_then_rerun(tmp_path):
    case = make_case(tmp_path, shape=(4, 6, 6), doses=("dose/vdk",))
    before = _digest(case)
    proc = _start(["simulate", str(case), "--histories", "1e9", "--device", "cpu"],
                  tmp_path / "run1.log")
    _kill_when_running(proc, tmp_path / "run1.log")

    assert _digest(case) == before  # the case file, and the dose/vdk in it, untouched
    info = read_case_info(case)
    assert "dose/mc" not in info.datasets and "dose/vdk" in info.datasets
    stray = [p.name for p in tmp_path.iterdir() if p.name.endswith(".h5") and p != case]
    assert all(name.startswith(".") and ".tmp" in name for name in stray), stray

    rerun = subprocess.run([sys.executable, "-m", "mcdose_cli.main", "simulate", str(case),
                            "--histories", "300", "--device", "cpu"],
                           env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    dose = read_dataset(case, "dose/mc")
    assert dose.shape == (4, 6, 6) and float(dose.sum()) > 0
    assert read_dataset_attrs(case, "dose/mc")["histories"] == 300


def test_kill_simulate_on_images_keeps_inputs_and_the_old_output(tmp_path):
    g = Geometry((4.0, 4.0, 4.0))
    density = write_image(tmp_path / "rho.nii.gz", np.ones((4, 6, 6), np.float32), g)
    act = np.zeros((4, 6, 6), np.float32)
    act[2, 3, 3] = 10.0
    activity = write_image(tmp_path / "act.nii.gz", act, g)
    old = write_image(tmp_path / "dose.nii.gz", np.full((4, 6, 6), 7.0, np.float32), g)
    digests = {p: _digest(p) for p in (density, activity, old)}

    proc = _start(["simulate", "--density", str(density), "--activity", str(activity),
                   "--out", str(old), "--overwrite", "--histories", "1e9", "--device", "cpu"],
                  tmp_path / "run.log")
    _kill_when_running(proc, tmp_path / "run.log")

    for path, digest in digests.items():
        assert _digest(path) == digest, path
    arr, _ = read_image(old)
    assert np.all(arr == 7.0)  # the earlier output is whole and unchanged
    assert not (tmp_path / "dose_uncertainty.nii.gz").exists()
