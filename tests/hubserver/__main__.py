"""`python -m tests.hubserver ROOT --port N` (`make demo`'s Hub): build the fixtures into ROOT if missing and
serve them, with the repos the README and the quickstart notebook name.

`--wan per_conn_bps=8e6,link_bps=96e6,rtt_ms=30` serves them behind a simulated wide-area network;
its knobs are `WanProfile`'s (tests/hubserver/wan.py).
"""

from __future__ import annotations

import argparse
import threading

from .fixtures import build_fixtures
from .server import HubServer
from .wan import WanProfile


def wan_profile(text: str) -> WanProfile:
    try:
        return WanProfile.parse(text)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.hubserver", description=__doc__.splitlines()[0])
    parser.add_argument("root", help="fixture directory (built on first use, reused after)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--bench",
        action="store_true",
        help="also serve the benchmark repos: bench/1gb and bench/wan-* (built on first use)",
    )
    parser.add_argument(
        "--wan",
        type=wan_profile,
        metavar="KNOB=VALUE,...",
        help="serve behind a WAN: per_conn_bps, link_bps, rtt_ms, connect_rtts, slow_every, "
        "max_in_flight, retry_after_s, url_ttl_s (e.g. per_conn_bps=8e6,link_bps=96e6,rtt_ms=30)",
    )
    args = parser.parse_args(argv)
    repos = build_fixtures(args.root, bench=args.bench, wan=args.bench, demo=True)
    with HubServer(args.root, args.host, args.port, repos=repos) as hub:
        hub.faults.wan = args.wan
        print(hub.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
