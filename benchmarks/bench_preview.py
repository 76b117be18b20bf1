"""Preview of Llama-3-70B (30 shards) from the test Hub: bytes read and seconds, against
`huggingface_hub.get_safetensors_metadata` (which reads only the safetensors headers, no config,
no memory table) measured the same way in the same run.

    .venv/bin/python benchmarks/bench_preview.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ENV  # noqa: E402

os.environ.update(ENV)

REPO = "meta-llama/Meta-Llama-3-70B"


def measure(hub: Any, action: Callable[[], Any], repeat: int) -> dict[str, float]:
    seconds, sent, requests = [], [], []
    for _ in range(repeat):
        hub.clear_log()
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
        sent.append(sum(r.bytes_sent for r in hub.log))
        requests.append(len(hub.log))
    return {
        "seconds": statistics.median(seconds),
        "bytes": statistics.median(sent),
        "requests": statistics.median(requests),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from tests.hubserver import HubServer, build_fixtures, default_root

    repos = build_fixtures(default_root())
    with HubServer(default_root(), repos=repos) as hub, tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_ENDPOINT"] = hub.url
        from huggingface_hub import HfApi

        from mistudio_jupyter.core.service import ModelManager

        manager = ModelManager(cache_dir=Path(tmp) / "cache", db_url="sqlite://", hub_endpoint=hub.url)
        preview = manager.preview(REPO)  # warm: imports and the meta-device layout cache
        ours = measure(hub, lambda: manager.preview(REPO), args.repeat)
        api = HfApi(endpoint=hub.url)
        metadata = api.get_safetensors_metadata(REPO)
        peer = measure(hub, lambda: api.get_safetensors_metadata(REPO), args.repeat)
        manager.close()
    result = {
        "benchmark": "preview_70b",
        "repo": REPO,
        "params": preview["params"],
        "shards": len(metadata.files_metadata),
        "ours": ours,
        "peer_get_safetensors_metadata": peer,
        "bytes_ratio": ours["bytes"] / peer["bytes"],
        "time_ratio": ours["seconds"] / peer["seconds"],
    }
    print(
        f"preview {REPO}: {ours['bytes'] / 1e6:.2f} MB in {ours['requests']:.0f} requests, {ours['seconds']:.2f} s "
        f"(memory table and fit included)"
    )
    print(
        f"get_safetensors_metadata: {peer['bytes'] / 1e6:.2f} MB in {peer['requests']:.0f} requests, "
        f"{peer['seconds']:.2f} s; bytes ratio {result['bytes_ratio']:.2f}, time ratio {result['time_ratio']:.2f}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
