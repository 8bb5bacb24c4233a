"""Atomic writes: the target is either the old complete file or the new one, never partial."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from robustresnet._io import atomic_write, remove_stale_temp_files, write_json, write_text
from robustresnet.errors import WriteError


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


def test_written_files_get_the_umask_permissions_not_owner_only(tmp_path):
    """Temp files of `tempfile.mkstemp` are 0600: renamed, run files were private (issue 16)."""
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "report.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def _has_dev_full() -> bool:
    """/dev/full, the device every write to fails with ENOSPC (checked to be that device)."""
    return Path("/dev/full").exists() and stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.skipif(not _has_dev_full(), reason="needs the /dev/full device")
def test_a_full_disk_is_a_write_error_naming_the_file_and_the_disk(tmp_path):
    def to_full_disk(tmp):
        with open("/dev/full", "wb") as full:
            full.write(b"x" * 100_000)
            full.flush()

    with pytest.raises(WriteError, match=r"cannot write .*state.txt: the disk is full") as err:
        atomic_write(tmp_path / "state.txt", to_full_disk)
    assert err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_is_a_write_error(tmp_path):
    (tmp_path / "out").write_text("a file, not a folder")
    with pytest.raises(WriteError, match=r"cannot write .*out/report.json"):
        write_json(tmp_path / "out" / "report.json", {})


def test_stale_temp_files_of_the_writer_are_removed_and_nothing_else(tmp_path):
    stale = [tmp_path / ".config.yaml.ab12cd34.tmp", tmp_path / "state" / ".step-1.pt.k_9x2abc.tmp"]
    kept = [tmp_path / "notes.tmp", tmp_path / ".hidden.tmp", tmp_path / ".a.b.toolong123.tmp"]
    for path in stale + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
