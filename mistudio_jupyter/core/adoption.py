"""Find complete model revisions already in a Hugging Face cache, so the catalog can adopt them."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

from .anatomy.families import family_of
from .snapshot import count_params, local_tensors, read_json


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
            "params": count_params(local_tensors(self.snapshot)),
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
            config = read_json(snapshot / "config.json")
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


def _weights_complete(snapshot: Path) -> bool:
    index = read_json(snapshot / "model.safetensors.index.json")
    if index is not None:
        shards = set(index.get("weight_map", {}).values())
        return bool(shards) and all((snapshot / shard).is_file() for shard in shards)
    return any(path.is_file() for path in snapshot.glob("*.safetensors")) or any(
        path.is_file() for path in snapshot.glob("pytorch_model*.bin")
    )
