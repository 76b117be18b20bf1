"""Find complete model revisions already in a Hugging Face cache, so the catalog can adopt them."""
from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Any, Iterator

from .anatomy.families import family_of


@dataclasses.dataclass(frozen=True)
class CachedRevision:
    repo_id: str
    revision: str
    commit: str
    snapshot: Path
    size_bytes: int
    config: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        """Catalog fields of a ready entry for this revision."""
        model_type = self.config.get("model_type")
        return {
            "commit": self.commit,
            "file_path": str(self.snapshot),
            "size_bytes": self.size_bytes,
            "bytes_done": self.size_bytes,
            "bytes_total": self.size_bytes,
            "model_type": model_type,
            "family": family_of(model_type) if model_type else None,
            "params": local_safetensors_params(self.snapshot),
        }


def cached_model_revisions(cache_dir: Path) -> Iterator[CachedRevision]:
    """Every model revision in `cache_dir` whose config and weights are all present."""
    if not cache_dir.is_dir():
        return
    from huggingface_hub import scan_cache_dir

    for repo in scan_cache_dir(cache_dir).repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            snapshot = Path(revision.snapshot_path)
            config = _read_json(snapshot / "config.json")
            if config is None or not _weights_complete(snapshot):
                continue
            refs = sorted(revision.refs)
            yield CachedRevision(
                repo_id=repo.repo_id,
                revision=refs[0] if refs else revision.commit_hash,
                commit=revision.commit_hash,
                snapshot=snapshot,
                size_bytes=revision.size_on_disk,
                config=config,
            )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _weights_complete(snapshot: Path) -> bool:
    index = _read_json(snapshot / "model.safetensors.index.json")
    if index is not None:
        shards = set(index.get("weight_map", {}).values())
        return bool(shards) and all((snapshot / shard).is_file() for shard in shards)
    return any(path.is_file() for path in snapshot.glob("*.safetensors")) or any(
        path.is_file() for path in snapshot.glob("pytorch_model*.bin")
    )


def local_safetensors_params(snapshot: Path) -> int | None:
    """Parameter count from the headers of the local safetensors files (tied weights are stored once)."""
    files = sorted(snapshot.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                total += count
    return total
