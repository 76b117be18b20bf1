"""Memory of the Jupyter server process while it runs 2 GB of downloads (`bench/1gb` twice, through the
REST API, with an event socket subscribed to every model): RSS growth over its idle baseline. The
download worker's peak RSS is printed beside it for scale: a separate process of ours, not a peer.
Goal: server growth ≤ 50 MB.

    .venv/bin/python benchmarks/bench_server_memory.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ENV, rss_bytes  # noqa: E402

os.environ.update(ENV)
GOAL_BYTES = 50 * 10**6
REPO = "bench/1gb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="downloads of the 1 GiB repo, one after the other")
    args = parser.parse_args()
    from tests.hubserver import HubServer, build_fixtures, default_root
    from tests.reliability.live import JupyterServer, worker_pids

    repos = build_fixtures(default_root(), bench=True)
    with HubServer(default_root(), repos=repos) as hub, tempfile.TemporaryDirectory(prefix="mistudio-bench-") as tmp:
        server = JupyterServer(Path(tmp) / "jupyter", hub.url).start()
        events = server.ws()
        samples: list[int] = []
        worker_peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal worker_peak
            while not stop.is_set():
                samples.append(rss_bytes(server.process.pid))  # type: ignore[union-attr]
                for pid in worker_pids(server.db_url):
                    try:
                        worker_peak = max(worker_peak, rss_bytes(pid))
                    except OSError:
                        pass
                time.sleep(0.05)

        try:
            events.subscribe("models")
            for _ in range(3):
                server.request("GET", "/models")
            time.sleep(1.0)
            baseline = rss_bytes(server.process.pid)  # type: ignore[union-attr]
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            transferred, started = 0, time.perf_counter()
            for _ in range(args.rounds):
                model_id = server.create(REPO)["id"]
                assert server.request("POST", f"/models/{model_id}/download", {})[0] == 202
                record = server.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 600)
                assert record["status"] == "ready", record
                transferred += record["size_bytes"]
                for _ in range(3):
                    server.request("GET", "/models")
                assert server.request("DELETE", f"/models/{model_id}")[0] == 200
            elapsed = time.perf_counter() - started
            stop.set()
            sampler.join(5)
            after = rss_bytes(server.process.pid)  # type: ignore[union-attr]
        finally:
            stop.set()
            events.close()
            server.close()
    growth = max(samples + [after]) - baseline
    result = {
        "benchmark": "server_memory",
        "downloaded_bytes": transferred,
        "seconds": round(elapsed, 2),
        "server_baseline_bytes": baseline,
        "server_peak_growth_bytes": growth,
        "server_growth_after_bytes": after - baseline,
        "worker_peak_rss_bytes": worker_peak,
        "events_received": len(events.messages),
        "goal_bytes": GOAL_BYTES,
        "met": growth <= GOAL_BYTES,
    }
    print(
        f"{transferred / 1e9:.2f} GB downloaded through the server in {elapsed:.1f} s; server RSS "
        f"{baseline / 1e6:.0f} MB idle, peak growth {growth / 1e6:.1f} MB, after {(after - baseline) / 1e6:.1f} MB "
        f"(goal <= 50 MB: {'met' if result['met'] else 'MISSED'}); worker peak RSS {worker_peak / 1e6:.0f} MB"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
