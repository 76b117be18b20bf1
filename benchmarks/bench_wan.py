"""WAN benchmark: three repos through a simulated wide-area network, our download vs the usual tools.

    python benchmarks/bench_wan.py [--workloads one-file,shards,small-files]

The test Hub serves them behind `WanProfile(per_conn_bps=8e6, link_bps=96e6, rtt_ms=30)` (and a new
connection pays two more round trips, its TCP and TLS handshakes). Workloads: one 1 GiB file; 8 shards
of 64 MiB; 40 small files of 20-800 KB; each with a config.json. Tools, one after another on the same
Hub, each in its own process, into a fresh directory after `os.sync()`. Besides the whole time, each
tool's start-up (from its start to its first request for LFS bytes, by the test Hub's clock: asking the
Hub, starting processes) and the share of the link it reached after that. The short workloads run
several times (`ROUNDS`), each round with the tools in another order; each tool's median run is shown.
Each tool's clock starts once its process has imported its Python libraries (huggingface_hub's client;
`requests` for the URL lookups of hf_transfer and aria2c), as in a notebook or server that has used
them before; everything after that is timed:

- ours: `ModelManager(...).download(repo).wait()` with a fresh cache and catalog; the worker process
  it starts is timed, its interpreter startup and imports included (`MISTUDIO_MAX_CONNECTIONS` is
  passed on when set);
- `huggingface_hub.snapshot_download(max_workers=8)`;
- hf_transfer 0.1.9 as `hf download` ran it with `HF_HUB_ENABLE_HF_TRANSFER=1` (huggingface_hub 1.0
  dropped it): 8 threads, each a HEAD for a file's URL, then `hf_transfer.download(max_files=100,
  chunk_size=10 MiB, parallel_failures=3, max_retries=5)`; that call holds the GIL until the file is
  done, so the threads take turns, as they did in `hf download`;
- `aria2c -x16 -s16 -k1M -j8` over an input file of the files' resolved URLs (the HEADs that resolve
  them, 8 at a time, are timed).

hf_transfer and aria2c are handed the file list; ours and snapshot_download ask the Hub for it. Every
output is checked against the fixture's sha256 (untimed). First, the ceiling of the test Hub itself:
one `curl` fetching the 1 GiB file in 16 parallel ranges. Prints, per workload and tool, seconds,
MB/s, share of the link (bytes / (link_bps × seconds)), connections opened and ours ÷ tool (throughput),
then one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

os.environ.update(
    {
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "MISTUDIO_DOWNLOAD_SUMMARY": "0",
    }
)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mistudio_jupyter.core.hub import resolve_url  # noqa: E402
from tests.hubserver import HubServer, RepoSpec, WanProfile, build_fixtures, default_root  # noqa: E402

LINK_BPS = 96e6
PROFILE = WanProfile(per_conn_bps=8e6, link_bps=LINK_BPS, rtt_ms=30)
WORKLOADS = {"one-file": "bench/wan-one-file", "shards": "bench/wan-shards", "small-files": "bench/wan-small-files"}
PEERS = ("snapshot_download", "hf_transfer", "aria2c")
# Runs per tool: a short workload varies more from run to run than the one large file.
ROUNDS = {"one-file": 1, "shards": 3, "small-files": 7}
RESOLVERS = 8  # files resolved (and, for hf_transfer, fetched) at a time: snapshot_download's max_workers
CEILING_RANGES = 16
TOOL_TIMEOUT_S = 300


# --- the tools, each run as `bench_wan.py --tool NAME ...` in its own process -------------------------


def ours(endpoint: str, repo: str, dest: Path, files: list[str]) -> tuple[float, float, Path]:
    import huggingface_hub.hf_api  # noqa: F401 - what download() asks the Hub with, imported before the clock

    from mistudio_jupyter.core.service import ModelManager
    from mistudio_jupyter.core.settings import Settings

    manager = ModelManager(
        Settings.from_env(
            cache_dir=dest / "cache",
            db_url=f"sqlite:///{dest / 'catalog.sqlite'}",
            hub_endpoint=endpoint,
            runtime_dir=dest / "runtime",
        )
    )
    started = time.monotonic()
    record = manager.download(repo).wait()
    seconds = time.monotonic() - started
    manager.close()
    return started, seconds, Path(record.file_path or "")


def snapshot_download(endpoint: str, repo: str, dest: Path, files: list[str]) -> tuple[float, float, Path]:
    from huggingface_hub import snapshot_download

    started = time.monotonic()
    snapshot = snapshot_download(repo, cache_dir=dest / "cache", endpoint=endpoint, max_workers=8)
    return started, time.monotonic() - started, Path(snapshot)


def hf_transfer(endpoint: str, repo: str, dest: Path, files: list[str]) -> tuple[float, float, Path]:
    import hf_transfer as transfer

    resolve = _resolver()
    out = dest / "files"

    def fetch(path: str) -> None:
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        transfer.download(
            resolve(resolve_url(endpoint, repo, "main", path)),
            str(target),
            max_files=100,
            chunk_size=10 * 1024 * 1024,
            parallel_failures=3,
            max_retries=5,
        )

    started = time.monotonic()
    with ThreadPoolExecutor(RESOLVERS) as pool:
        list(pool.map(fetch, files))
    return started, time.monotonic() - started, out


def aria2c(endpoint: str, repo: str, dest: Path, files: list[str]) -> tuple[float, float, Path]:
    resolve = _resolver()
    out, listing = dest / "files", dest / "aria2c-input.txt"
    started = time.monotonic()
    with ThreadPoolExecutor(RESOLVERS) as pool:
        urls = list(pool.map(lambda path: resolve(resolve_url(endpoint, repo, "main", path)), files))
    listing.write_text("".join(f"{url}\n  out={path}\n" for url, path in zip(urls, files)))
    subprocess.run(
        [
            "aria2c",
            "-x16",
            "-s16",
            "-k1M",
            "-j8",
            f"--input-file={listing}",
            f"--dir={out}",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--download-result=hide",
        ],
        check=True,
    )
    return started, time.monotonic() - started, out


TOOLS: dict[str, Callable[[str, str, Path, list[str]], tuple[float, float, Path]]] = {
    "ours": ours,
    "snapshot_download": snapshot_download,
    "hf_transfer": hf_transfer,
    "aria2c": aria2c,
}


def _resolver() -> Callable[[str], str]:
    """A HEAD that tells where a file is served from (the CDN's URL for LFS files), one kept-alive
    connection per thread, as a client's session keeps them."""
    import requests

    local = threading.local()

    def resolve(url: str) -> str:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.head(url, allow_redirects=False, timeout=30)
        response.raise_for_status()
        return urljoin(url, response.headers["Location"]) if response.is_redirect else url

    return resolve


def run_tool(args: argparse.Namespace) -> None:
    started, seconds, output = TOOLS[args.tool](args.endpoint, args.repo, Path(args.dest), json.loads(args.files))
    print(json.dumps({"started": started, "seconds": seconds, "output": str(output)}))


# --- the driver ------------------------------------------------------------------------------------


def expected_sha256(spec: RepoSpec) -> dict[str, str]:
    return {path: file.sha256 or hashlib.sha256(file.read_bytes()).hexdigest() for path, file in spec.files.items()}


def mismatches(output: Path, expected: dict[str, str]) -> list[str]:
    """The files under `output` that are missing or differ from the fixture."""

    def differs(path: str) -> bool:
        target = output / path
        if not target.is_file():
            return True
        digest = hashlib.sha256()
        with target.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest() != expected[path]

    return [path for path in expected if differs(path)]


def measure(hub: HubServer, tool: str, spec: RepoSpec, work: Path) -> dict[str, Any]:
    """One tool on one repo over a fresh WAN link: seconds, throughput, connections, byte identity."""
    dest = work / tool
    dest.mkdir()
    size = sum(file.size for file in spec.files.values())
    hub.faults.wan = PROFILE
    hub.clear_log()
    os.sync()  # no tool pays for the writeback of an earlier one
    command = [
        sys.executable,
        __file__,
        "--tool",
        tool,
        "--endpoint",
        hub.url,
        "--repo",
        spec.repo_id,
        "--dest",
        str(dest),
        "--files",
        json.dumps(sorted(spec.files)),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
        failure = (done.stderr or done.stdout).strip().splitlines()[-1:] if done.returncode else None
    except subprocess.TimeoutExpired:
        failure = [f"timed out after {TOOL_TIMEOUT_S} s"]
    link = hub.faults.wan_link
    connections = link.connections if link else 0
    hub.faults.wan = None
    if failure is not None:
        shutil.rmtree(dest)
        return {"failed": failure, "connections": connections}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = mismatches(Path(result["output"]), expected_sha256(spec))
    shutil.rmtree(dest)
    seconds = result["seconds"]
    # Start-up: from the tool's start to its first request for LFS bytes (asking the Hub, starting processes).
    startup = min(r.at for r in hub.log if r.method == "GET" and r.path.startswith("/cdn/")) - result["started"]
    return {
        "seconds": seconds,
        "mbps": size / seconds / 1e6,
        "link_share": size / (LINK_BPS * seconds),
        "startup_s": startup,
        "link_share_after_startup": size / (LINK_BPS * (seconds - startup)),
        "connections": connections,
        "identical": not wrong,
        "mismatched": wrong[:5],
    }


def ceiling(hub: HubServer, spec: RepoSpec) -> dict[str, float]:
    """The test Hub's own ceiling through the same WAN: one curl, the largest file in 16 ranges at once."""
    file = max(spec.files.values(), key=lambda f: f.size)
    hub.faults.wan = PROFILE
    location = _resolver()(resolve_url(hub.url, spec.repo_id, "main", file.path))
    part = -(-file.size // CEILING_RANGES)
    ranges = [
        ["-r", f"{start}-{min(file.size, start + part) - 1}", "-o", "/dev/null", location]
        for start in range(0, file.size, part)
    ]
    command = [
        "curl",
        "-sS",
        "--fail",
        "-Z",
        "--parallel-immediate",
        "--parallel-max",
        str(CEILING_RANGES),
        *ranges[0],
    ] + [arg for more in ranges[1:] for arg in ["--next", *more]]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    hub.faults.wan = None
    return {"seconds": seconds, "mbps": file.size / seconds / 1e6, "link_share": file.size / (LINK_BPS * seconds)}


def workload(hub: HubServer, name: str, spec: RepoSpec, work: Path) -> dict[str, Any]:
    """Every tool on one repo, `ROUNDS[name]` times, each round in another order; per tool its median
    run (a failed run counts as the slowest), a table row each."""
    size = sum(file.size for file in spec.files.values())
    rounds = ROUNDS[name]
    label = f"{name} ({len(spec.files)} files, {size / 1e6:.1f} MB)" + (f", median of {rounds}" if rounds > 1 else "")
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    order = list(TOOLS)
    for round_index in range(rounds):
        for tool in order[round_index % len(order) :] + order[: round_index % len(order)]:
            runs[tool].append(measure(hub, tool, spec, work))
    tools: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        tools[tool] = median_run(runs[tool])
        print(table_row(label, tool, tools[tool], tools["ours"].get("mbps")), flush=True)
    ours_mbps = tools["ours"].get("mbps")
    ratios = {peer: ours_mbps / tools[peer]["mbps"] for peer in PEERS if ours_mbps and tools[peer].get("mbps")}
    return {"repo": spec.repo_id, "files": len(spec.files), "bytes": size, "tools": tools, "ours_vs": ratios}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median seconds, with every run's seconds beside it."""
    ranked = sorted(runs, key=lambda run: run.get("seconds", float("inf")))
    return {**ranked[(len(ranked) - 1) // 2], "runs_s": [run.get("seconds") for run in runs]}


def table_row(label: str, tool: str, result: dict[str, Any], ours_mbps: float | None) -> str:
    if "failed" in result:
        failure = " ".join(result["failed"])[:200]
        return f"| {label} | {tool} | FAILED: {failure} | | | | | {result['connections']} | | |"
    ratio = f"{ours_mbps / result['mbps']:.2f}×" if tool != "ours" and ours_mbps else "–"
    identical = "yes" if result["identical"] else f"NO: {', '.join(result['mismatched'])}"
    return (
        f"| {label} | {tool} | {result['seconds']:.2f} | {result['mbps']:.1f} | {result['link_share']:.0%} | "
        f"{result['startup_s']:.2f} | {result['link_share_after_startup']:.0%} | {result['connections']} | "
        f"{identical} | {ratio} |"
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: " + ", ".join(WORKLOADS))
    parser.add_argument("--tool", choices=TOOLS, help=argparse.SUPPRESS)
    for hidden in ("--endpoint", "--repo", "--dest", "--files"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tool:
        run_tool(args)
        return None
    repos = build_fixtures(default_root(), wan=True)
    max_connections = os.environ.get("MISTUDIO_MAX_CONNECTIONS")
    print(
        f"WAN: {PROFILE} (a new connection: {PROFILE.connect_rtts} more round trips); "
        f"MISTUDIO_MAX_CONNECTIONS={max_connections or 'unset'}"
    )
    with HubServer(default_root(), repos=repos) as hub, tempfile.TemporaryDirectory(prefix="bench-wan-") as tmp:
        top = ceiling(hub, repos[WORKLOADS["one-file"]])
        print(
            f"test Hub ceiling (curl, {CEILING_RANGES} ranges of the 1 GiB file at once): {top['mbps']:.1f} MB/s, "
            f"{top['link_share']:.0%} of the link\n"
        )
        print(
            "| workload | tool | seconds | MB/s | share of link | start-up s | share of link after it | connections "
            "| byte-identical | ours ÷ tool (MB/s) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
        results = {name: workload(hub, name, repos[WORKLOADS[name]], Path(tmp)) for name in args.workloads.split(",")}
    result = {
        "wan": dataclasses.asdict(PROFILE),
        "max_connections": max_connections,
        "ceiling": top,
        "workloads": results,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
