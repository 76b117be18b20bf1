"""`GET /mistudio/api/v1/models` latency with 10,000 catalog rows on PostgreSQL, through a real Jupyter server.

Starts a throwaway PostgreSQL server (as the tests do: `initdb` in a temporary folder, as the `postgres`
user when run as root), seeds one catalog on it and one SQLite catalog with the same rows, and times
sequential requests to a `jupyter server` over each. Goal: p50 ≤ 50 ms for the full list on
PostgreSQL; the SQLite server with the same rows is the peer. Prints a table, then one JSON line.

    .venv/bin/python benchmarks/bench_server_postgres.py [--rows 10000] [--requests 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from benchmarks.bench_server import FAMILIES, measure, start_server, wait_ready  # noqa: E402
from mistudio_jupyter.core.catalog import Catalog, ModelRecord  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.postgres import PostgresCluster, missing_reason  # noqa: E402

GOAL_P50_MS = 50.0
SEED_BATCH = 1000


def seed(db_url: str, rows: int) -> None:
    """`rows` ready entries, inserted in batches (adding them one by one would take minutes)."""
    catalog = Catalog(db_url)
    try:
        for start in range(0, rows, SEED_BATCH):
            batch = [entry(i) for i in range(start, min(start + SEED_BATCH, rows))]
            with catalog.engine.begin() as connection:
                connection.execute(insert(ModelRecord), batch)
    finally:
        catalog.close()


def entry(i: int) -> dict[str, object]:
    family = FAMILIES[i % len(FAMILIES)]
    return {
        "repo_id": f"org{i % 37}/model-{i}",
        "name": f"org{i % 37}/model-{i}",
        "status": "ready",
        "family": family,
        "model_type": family,
        "params": 1_000_000 * (i + 1),
        "size_bytes": 2_000_000 * (i + 1),
        "bytes_done": 2_000_000 * (i + 1),
        "bytes_total": 2_000_000 * (i + 1),
        "commit": f"{i:040x}",
        "file_path": f"/cache/models--org/snapshots/{i:040x}",
        "architecture": {"summary": {"hidden_size": 768, "num_layers": 12, "num_heads": 12}},
    }


def serve_and_measure(scratch: Path, db_url: str, requests: int) -> dict[str, dict[str, float]]:
    """The full list and a page of fifty, from a server over `db_url`."""
    scratch.mkdir()
    port = free_port()
    server = start_server(scratch, db_url, port)
    try:
        wait_ready(server, port, scratch / "server.log")
        return {
            "full": measure(port, "/mistudio/api/v1/models", requests),
            "page": measure(port, "/mistudio/api/v1/models?limit=50&sort=-params", requests),
        }
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    reason = missing_reason()
    if reason:
        sys.exit(f"this benchmark needs {reason}")
    with tempfile.TemporaryDirectory(prefix="mistudio-bench-pg-") as directory, PostgresCluster() as cluster:
        scratch = Path(directory)
        with cluster.database() as postgres_url:
            seed(postgres_url, args.rows)
            postgres = serve_and_measure(scratch / "postgres", postgres_url, args.requests)
        sqlite_url = f"sqlite:///{scratch / 'catalog.sqlite'}"
        seed(sqlite_url, args.rows)
        sqlite = serve_and_measure(scratch / "sqlite", sqlite_url, args.requests)
    print(f"GET /models with {args.rows:,} catalog rows, {args.requests} sequential requests (keep-alive)")
    for label, result in (
        ("PostgreSQL, all rows", postgres["full"]),
        ("PostgreSQL, limit=50", postgres["page"]),
        ("SQLite, all rows", sqlite["full"]),
        ("SQLite, limit=50", sqlite["page"]),
    ):
        print(
            f"  {label:<22} p50 {result['p50_ms']:7.2f} ms   p95 {result['p95_ms']:7.2f} ms   "
            f"min {result['min_ms']:7.2f} ms   {result['bytes'] / 1024:8.1f} KiB"
        )
    p50 = postgres["full"]["p50_ms"]
    verdict = "met" if p50 <= GOAL_P50_MS else "MISSED"
    print(f"  goal: p50 <= {GOAL_P50_MS:.0f} ms for all rows on PostgreSQL -> {verdict}")
    print(
        json.dumps(
            {
                "benchmark": "server_list_models_postgres",
                "rows": args.rows,
                "requests": args.requests,
                "p50_ms": p50,
                "p95_ms": postgres["full"]["p95_ms"],
                "page50_p50_ms": postgres["page"]["p50_ms"],
                "sqlite_p50_ms": sqlite["full"]["p50_ms"],
                "sqlite_page50_p50_ms": sqlite["page"]["p50_ms"],
                "bytes": postgres["full"]["bytes"],
                "goal_p50_ms": GOAL_P50_MS,
                "met": p50 <= GOAL_P50_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
