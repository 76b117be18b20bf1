"""The engine's block hasher on its own, where the end-to-end tests cannot steer it: a failing hash."""
from __future__ import annotations

import hashlib
import threading

import pytest

from mistudio_jupyter.core.downloads import engine
from mistudio_jupyter.core.errors import DownloadFailed
from mistudio_jupyter.core.hub import PlannedFile


def test_blocks_are_hashed_after_the_bytes_on_disk(tmp_path) -> None:
    data = bytes(range(256)) * 4096
    path = tmp_path / "partial"
    path.write_bytes(data[:1000])
    file = PlannedFile("model.safetensors", len(data), "0" * 40, hashlib.sha256(data).hexdigest())
    hasher, stop = engine._BlockHasher(path, file, on_disk=1000), threading.Event()

    block = hasher.take(stop)
    block[: len(data) - 1000] = data[1000:]
    hasher.hand(block, len(data) - 1000)

    assert hasher.result(stop) == file.sha256
    hasher.stop()


def test_a_file_that_shrank_fails_the_download_instead_of_hanging_it(tmp_path) -> None:
    path = tmp_path / "partial"
    path.write_bytes(b"x" * 10)  # shorter than the 100 bytes the hasher is told are on disk
    file = PlannedFile("model.safetensors", 1000, "0" * 40, "0" * 64)
    hasher, stop = engine._BlockHasher(path, file, on_disk=100), threading.Event()

    with pytest.raises(DownloadFailed, match="cannot hash"):
        for _ in range(engine.HASH_QUEUE_BLOCKS + 1):  # the receiver runs out of blocks: no wait forever
            hasher.hand(hasher.take(stop), 1)
    with pytest.raises(DownloadFailed, match="cannot hash"):
        hasher.result(stop)
    hasher.stop()
