"""`GET /mistudio/api/v1/models` latency with 1,000 catalog rows, through a real Jupyter server.

Seeds a throwaway SQLite catalog, starts `jupyter server` with the extension in a child process and
times sequential requests over one keep-alive connection. Goal: p50 ≤ 50 ms for the full list.
Prints a table, then one JSON line.

    .venv/bin/python benchmarks/bench_server.py [--rows 1000] [--requests 100]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mistudio_jupyter.core.catalog import Catalog  # noqa: E402
from tests.ports import free_port  # noqa: E402

GOAL_P50_MS = 50.0
TOKEN = "bench-token"
FAMILIES = ("gpt2", "llama", "gemma2", "qwen2", "phi3", "mistral")


def seed(db_url: str, rows: int) -> None:
    catalog = Catalog(db_url)
    try:
        for i in range(rows):
            catalog.add(
                f"org{i % 37}/model-{i}",
                status="ready",
                family=FAMILIES[i % len(FAMILIES)],
                model_type=FAMILIES[i % len(FAMILIES)],
                params=1_000_000 * (i + 1),
                size_bytes=2_000_000 * (i + 1),
                bytes_done=2_000_000 * (i + 1),
                bytes_total=2_000_000 * (i + 1),
                commit=f"{i:040x}",
                file_path=f"/cache/models--org/snapshots/{i:040x}",
                architecture={"summary": {"hidden_size": 768, "num_layers": 12, "num_heads": 12}},
            )
    finally:
        catalog.close()


def start_server(scratch: Path, db_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(scratch / "config"),
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
        "JUPYTER_DATA_DIR": str(scratch / "data"),
    }
    command = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={scratch}",
        "--ServerApp.jpserver_extensions=mistudio_jupyter=True",
        f"--MiStudio.db_url={db_url}",
        f"--MiStudio.cache_dir={scratch / 'cache'}",
        "--log-level=WARN",
        "--allow-root",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=(scratch / "server.log").open("wb"))


def wait_ready(server: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/mistudio/api/v1/models?limit=1", headers={"Authorization": f"token {TOKEN}"})
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the Jupyter server did not start:\n" + log.read_text()[-3000:])


def measure(port: int, path: str, requests: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"token {TOKEN}"}
    timings, size = [], 0
    for i in range(requests + 5):  # the first five warm up
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status == 200, body[:200]
        if i >= 5:
            timings.append(elapsed)
            size = len(body)
    timings.sort()
    return {
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 2),
        "min_ms": round(timings[0], 2),
        "bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mistudio-bench-server-") as directory:
        scratch = Path(directory)
        db_url = f"sqlite:///{scratch / 'catalog.sqlite'}"
        seed(db_url, args.rows)
        port = free_port()
        server = start_server(scratch, db_url, port)
        try:
            wait_ready(server, port, scratch / "server.log")
            full = measure(port, "/mistudio/api/v1/models", args.requests)
            page = measure(port, "/mistudio/api/v1/models?limit=50&sort=-params", args.requests)
            filtered = measure(port, "/mistudio/api/v1/models?family=llama&q=model-1", args.requests)
        finally:
            server.terminate()
            server.wait(30)
    print(f"GET /models with {args.rows} catalog rows, {args.requests} sequential requests (keep-alive)")
    for label, result in (("all rows", full), ("limit=50", page), ("family+q filter", filtered)):
        print(
            f"  {label:<16} p50 {result['p50_ms']:7.2f} ms   p95 {result['p95_ms']:7.2f} ms   "
            f"min {result['min_ms']:7.2f} ms   {result['bytes'] / 1024:8.1f} KiB"
        )
    print(f"  goal: p50 <= {GOAL_P50_MS:.0f} ms for all rows -> {'met' if full['p50_ms'] <= GOAL_P50_MS else 'MISSED'}")
    print(
        json.dumps(
            {
                "benchmark": "server_list_models",
                "rows": args.rows,
                "requests": args.requests,
                "p50_ms": full["p50_ms"],
                "p95_ms": full["p95_ms"],
                "page50_p50_ms": page["p50_ms"],
                "filtered_p50_ms": filtered["p50_ms"],
                "bytes": full["bytes"],
                "goal_p50_ms": GOAL_P50_MS,
                "met": full["p50_ms"] <= GOAL_P50_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
