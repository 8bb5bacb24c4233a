"""Atomic writes: the target is either the old complete file or the new one, never partial."""

from __future__ import annotations

import json

import pytest

from robustresnet._io import atomic_write, write_json, write_text


def test_write_json_round_trips(tmp_path):
    path = write_json(tmp_path / "sub" / "a.json", {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]}


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "state.txt"
    write_text(target, "old")

    def crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.txt"]
