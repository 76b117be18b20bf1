"""The parts of the download engine below the HTTP level (range sets, the journal, the hash that
follows the written prefix of a file written out of order), and the hand-over of receive blocks to
the hash when a connection breaks."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mistudio_jupyter.core.downloads import engine
from mistudio_jupyter.core.downloads.cache import RepoCache
from mistudio_jupyter.core.downloads.engine import (
    LOCAL_STREAM_NICENESS,
    Engine,
    _give_way_to_the_hash,
    is_nearby_address,
)
from mistudio_jupyter.core.downloads.journal import Journal, journal_path, read_written
from mistudio_jupyter.core.downloads.partial import BLOCK_BYTES, BlockPool, HashThreads, MemoryBudget, PartialFile
from mistudio_jupyter.core.downloads.ranges import RangeSet
from mistudio_jupyter.core.errors import DownloadFailed
from mistudio_jupyter.core.hub import HubClient, PlannedFile, resolve_url
from mistudio_jupyter.core.settings import Settings
from tests.hubserver import HubServer, RepoSpec
from tests.hubserver.wan import WanProfile

CONTENT = os.urandom(5 * BLOCK_BYTES + 12345)


def test_range_sets_merge_and_report_gaps() -> None:
    written = RangeSet([(10, 20), (30, 40)])
    written.add(20, 30)
    written.add(50, 60)
    assert list(written) == [(10, 40), (50, 60)] and written.covered() == 40 and written.prefix() == 0
    assert written.gaps(70) == [(0, 10), (40, 50), (60, 70)]
    written.add(0, 10)
    assert written.prefix() == 40


def test_the_journal_survives_a_torn_line_and_an_old_partial_is_its_prefix(tmp_path: Path) -> None:
    partial = tmp_path / "blob.incomplete"
    partial.write_bytes(b"x" * 300)
    assert list(read_written(partial, 1000)) == [(0, 300)]  # written front to back by an older engine

    journal = Journal(partial, RangeSet([(0, 100)]))
    journal.record(500, 600)
    journal.close()
    with open(journal_path(partial), "a") as torn:
        torn.write("700 8")  # the process died inside this write
    assert list(read_written(partial, 1000)) == [(0, 100), (500, 600)]


@pytest.fixture
def hashing():
    threads = HashThreads(1, BlockPool(64), MemoryBudget(0))
    yield threads
    threads.close()


def partial_file(tmp_path: Path, hashing: HashThreads, on_hashed) -> PartialFile:
    file = PlannedFile(
        path="model.safetensors", size=len(CONTENT), blob_id=None, sha256=hashlib.sha256(CONTENT).hexdigest()
    )
    return PartialFile(0, RepoCache(tmp_path, "org/model"), file, hashing, on_hashed)


@pytest.mark.parametrize("memory", [0, 64 * BLOCK_BYTES])
def test_the_hash_follows_blocks_written_out_of_order_after_the_bytes_on_disk(tmp_path: Path, memory: int) -> None:
    """Blocks ahead of the frontier are hashed from held copies, or read back from the file when the
    memory budget is spent; either way the digest is the file's."""
    hashing = HashThreads(1, BlockPool(64), MemoryBudget(memory))
    done = threading.Event()
    target = partial_file(tmp_path, hashing, lambda _: done.set())
    target.path.parent.mkdir(parents=True)
    target.path.write_bytes(CONTENT[:1000])  # an older engine's partial: its first 1000 bytes
    target.open()
    offsets = [1000 + index * BLOCK_BYTES for index in range(6) if 1000 + index * BLOCK_BYTES < len(CONTENT)]
    for offset in reversed(offsets):
        piece = CONTENT[offset : offset + BLOCK_BYTES]
        block = memoryview(bytearray(BLOCK_BYTES))
        block[: len(piece)] = piece
        target.write(offset, block, len(piece))

    assert done.wait(10)
    hashing.close()
    assert target.digest == target.expected_digest
    assert target.path.read_bytes() == CONTENT


def test_a_file_that_shrank_fails_the_download_instead_of_hanging_it(tmp_path: Path, hashing: HashThreads) -> None:
    done = threading.Event()
    target = partial_file(tmp_path, hashing, lambda _: done.set())
    target.path.parent.mkdir(parents=True)
    target.path.write_bytes(CONTENT[:100])
    Journal(target.path, RangeSet([(0, 3 * BLOCK_BYTES)])).close()  # says more than the file holds

    target.open()

    assert done.wait(10), "the hash never reported back"
    assert isinstance(target.error, DownloadFailed) and target.digest is None


def test_a_connection_cut_mid_block_never_reuses_the_block_the_hash_holds(
    settings: Settings, hub: HubServer, fixture_repos: dict[str, RepoSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cut hands the bytes received so far to the hash; the retry must receive into another block.
    With the hash thread slowed, a stream that went on with the handed block would overwrite bytes
    before they are hashed: the file would fail verification and be fetched again."""
    hash_in_order = PartialFile.hash

    def slow_hash(self: PartialFile, generation: int, offset: int, *rest: Any) -> None:
        if offset < BLOCK_BYTES:
            time.sleep(0.2)
        hash_in_order(self, generation, offset, *rest)

    monkeypatch.setattr(PartialFile, "hash", slow_hash)
    hub.faults.set(path="/cdn/", cut_after_bytes=300_000, cut_times=3)  # three cuts inside the first block
    weights = fixture_repos["tiny/big"].files["model.safetensors"]

    plan = HubClient(settings).file_plan("tiny/big")
    snapshot = Engine(settings.cache_dir, endpoint=hub.url, token=None, backoff_s=0.0).fetch(plan)

    assert hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest() == weights.sha256
    assert sum(record.bytes_sent for record in hub.cdn_gets("model.safetensors")) == weights.size


@pytest.mark.parametrize(("hub_answer_s", "asks_alone"), [(None, True), (3.0, False)])
def test_a_hub_known_to_be_far_spares_the_first_stream_asking_alone(
    settings: Settings, hub: HubServer, monkeypatch: pytest.MonkeyPatch, hub_answer_s: float | None, asks_alone: bool
) -> None:
    """The first stream asks alone for a moment, so that a local path gets one stream; a slow answer the
    caller had from the Hub tells a far path at once, and the other streams start beside it."""
    monkeypatch.setattr(engine, "LOCAL_ANSWER_S", 0.5)  # the first stream may ask alone for a second
    monkeypatch.setattr(engine, "FAR_ANSWER_S", 2.0)
    plan = HubClient(settings).file_plan("tiny/llama-sharded")
    hub.faults.wan = WanProfile(rtt_ms=700, connect_rtts=0)  # no answer is fast enough for a local path
    hub.clear_log()

    Engine(settings.cache_dir, endpoint=hub.url, token=None, hub_answer_s=hub_answer_s).fetch(plan)

    asked = sorted(record.at for record in hub.log if "/resolve/" in record.path)
    before_the_first_answer = [at for at in asked if at < asked[0] + 0.5]
    assert (len(before_the_first_answer) == 1) is asks_alone


@pytest.mark.parametrize(
    ("revision", "path"),
    [
        ("main", "config.json"),
        ("refs/pr/1", "tokenizer/vocab.json"),
        ("a" * 40, "sub dir/ä #1?.safetensors"),
    ],
)
def test_the_resolve_url_is_the_one_huggingface_hub_makes(revision: str, path: str) -> None:
    from huggingface_hub import hf_hub_url

    expected = hf_hub_url("org/model", path, revision=revision, endpoint="https://hub.example")
    assert resolve_url("https://hub.example", "org/model", revision, path) == expected


@pytest.mark.parametrize(
    ("host", "nearby"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("192.168.0.7", True),
        ("fd00::1", True),
        ("169.254.1.1", True),
        ("18.154.10.1", False),  # a CDN edge: as fast as a mirror when it is near, but each connection capped
        ("2600:9000::1", False),
        ("cdn-lfs.hf.co", False),
    ],
)
def test_only_a_loopback_private_or_link_local_host_can_make_a_path_local(host: str, nearby: bool) -> None:
    assert is_nearby_address(host) is nearby


def test_a_local_stream_gives_way_to_the_hash_once_and_alone() -> None:
    """The stream thread becomes nicer than the threads beside it (the hash's among them), once."""
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def stream() -> None:
        thread = threading.get_native_id()
        seen.append(os.getpriority(os.PRIO_PROCESS, thread))
        _give_way_to_the_hash()
        _give_way_to_the_hash()  # a second response on the same stream
        seen.append(os.getpriority(os.PRIO_PROCESS, thread))

    worker = threading.Thread(target=stream)
    worker.start()
    worker.join()
    assert seen == [own, min(19, own + LOCAL_STREAM_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
