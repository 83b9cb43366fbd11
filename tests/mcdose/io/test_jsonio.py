"""Tests of mcdose.io.jsonio: JSON of NumPy values and paths, atomic JSON files, JSON attrs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mcdose.io.jsonio import json_default, json_dict, write_json


def test_json_default_makes_numpy_paths_and_sets_plain():
    record = {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3, dtype=np.uint8),
              "p": Path("/data/case.h5"), "s": {"b", "a"}, "ok": True}
    assert json.loads(json.dumps(record, default=json_default)) == {
        "n": 3, "x": 0.5, "a": [0, 1, 2], "p": "/data/case.h5", "s": ["a", "b"], "ok": True}
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        json.dumps({"o": object()}, default=json_default)


def test_write_json_is_atomic_and_strict_on_request(tmp_path):
    path = write_json(tmp_path / "r.json", {"b": np.float64(1.5), "a": [1, 2]})
    assert path == tmp_path / "r.json"
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text) == {"b": 1.5, "a": [1, 2]}
    assert list(json.loads(text)) == ["b", "a"]  # insertion order unless sort_keys
    write_json(path, {"b": 1, "a": 2}, sort_keys=True, indent=None)
    assert path.read_text() == '{"a": 2, "b": 1}\n'
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_json(path, {"x": float("nan")}, allow_nan=False)
    assert path.read_bytes() == before  # a failed write leaves the old file
    assert os.listdir(tmp_path) == ["r.json"]  # and no temporary file


def test_json_dict():
    assert json_dict('{"created_utc": "2026-01-01T00:00:00+00:00"}') == {
        "created_utc": "2026-01-01T00:00:00+00:00"}
    assert json_dict(b'{"a": 1}') == {"a": 1}
    original = {"a": 1}
    copy = json_dict(original)
    assert copy == original and copy is not original
    for raw in (None, "", "not json", "[1, 2]", "3", np.float32(1.0)):
        assert json_dict(raw) == {}
