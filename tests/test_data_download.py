"""--download against an HTTP server on 127.0.0.1 serving archives the tests build."""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from _data_fakes import cifar10_archive, cifar10_files

from robustresnet.data import load_dataset
from robustresnet.data.download import download_cifar
from robustresnet.errors import DataError


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL) of a loopback-only HTTP server."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_verifies_and_extracts(server, tmp_path):
    served, base = server
    archive = cifar10_archive(served / "cifar-10-python.tar.gz")
    root = tmp_path / "root"
    url = f"{base}/cifar-10-python.tar.gz"
    train = load_dataset("cifar10", root, download=True, url=url, md5=_md5(archive), quiet=True)
    assert len(train) == 20 and (root / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert _md5(root / "cifar-10-python.tar.gz") == _md5(archive)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp or staging left
    archive.unlink()  # present now: a second call reads the folder without fetching
    assert len(load_dataset("cifar10", root, download=True, url=url, split="test")) == 6


def test_bad_md5_leaves_nothing(server, tmp_path):
    served, base = server
    cifar10_archive(served / "cifar-10-python.tar.gz")
    root = tmp_path / "root"
    with pytest.raises(DataError, match="MD5 .* does not match the expected 0{32}"):
        download_cifar("cifar10", root, url=f"{base}/cifar-10-python.tar.gz", md5="0" * 32)
    assert list(root.rglob("*")) == []


def test_missing_url_is_a_data_error(server, tmp_path):
    _, base = server
    with pytest.raises(DataError, match="download failed"):
        download_cifar("cifar10", tmp_path, url=f"{base}/absent.tar.gz", md5="0" * 32)


def _hostile_archive(path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in cifar10_files().items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (tarfile.TarInfo("cifar-10-batches-py/../../escaped.txt"), "path leaves the target"),
        (tarfile.TarInfo("/tmp/rrn-absolute-escape.txt"), "path leaves the target"),
        (_symlink("cifar-10-batches-py/link", "../../escaped.txt"), "link"),
        (_hardlink("cifar-10-batches-py/hard", "/etc/passwd"), "link"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink"],
)
def test_escaping_members_are_refused(server, tmp_path, member, message):
    served, base = server
    name = member.name
    _hostile_archive(served / "cifar-10-python.tar.gz", member, b"escaped")
    root = tmp_path / "a" / "root"
    md5 = _md5(served / "cifar-10-python.tar.gz")
    url = f"{base}/cifar-10-python.tar.gz"
    with pytest.raises(DataError, match=f"refused member '{name}'.*{message}"):
        download_cifar("cifar10", root, url=url, md5=md5)
    assert list(root.rglob("*")) == []  # nothing extracted, hostile archive not kept
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "a" / "escaped.txt").exists()
