"""folder_lock: one holder per folder, named to the next comer; released however the holder ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustresnet._lock import LOCK_FILE, folder_lock
from robustresnet.errors import CheckpointError, FolderInUseError

SRC = str(Path(__file__).resolve().parents[1] / "src")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")


def test_a_held_folder_is_refused_with_the_holders_pid_and_host(tmp_path):
    folder = tmp_path / "run"
    with folder_lock(folder):
        with pytest.raises(FolderInUseError) as refused, folder_lock(folder):
            pytest.fail("a second holder got the lock")
        message = str(refused.value)
        assert message.startswith(f"{folder} is in use by process {os.getpid()} ")
        assert f"on host {socket.gethostname()} (started " in message
        assert message.endswith("; wait for it or stop it")
    with folder_lock(folder):  # released: free again
        pass


def test_the_lock_file_goes_and_so_do_folders_it_created_if_left_empty(tmp_path):
    with folder_lock(tmp_path / "a" / "b"):
        assert (tmp_path / "a" / "b" / LOCK_FILE).is_file()
    assert not (tmp_path / "a").exists()  # nothing written: nothing left behind
    with folder_lock(tmp_path / "c") as folder:
        (folder / "report.json").write_text("{}")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["report.json"]


def test_a_file_where_the_folder_should_be_is_named(tmp_path):
    run = tmp_path / "run"
    run.write_text("not a folder")
    expected = f"{run} is a file, not a run directory"
    with pytest.raises(CheckpointError, match=expected), folder_lock(run):
        pass


def test_a_killed_holder_releases_the_folder(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from robustresnet._lock import folder_lock\n"
            "with folder_lock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(120)\n",
            str(folder),
        ],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(FolderInUseError, match=f"process {holder.pid} "), folder_lock(folder):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        start = time.monotonic()
        with folder_lock(folder):  # the kernel dropped the dead holder's lock
            assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()
