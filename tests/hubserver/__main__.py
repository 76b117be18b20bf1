"""`python -m tests.hubserver ROOT --port N` (`make demo`'s Hub): build the fixtures into ROOT if missing and
serve them, with the repos the README and the quickstart notebook name."""
from __future__ import annotations

import argparse
import threading

from .fixtures import build_fixtures
from .server import HubServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.hubserver", description=__doc__)
    parser.add_argument("root", help="fixture directory (built on first use, reused after)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--bench", action="store_true", help="also serve bench/1gb (built on first use)")
    args = parser.parse_args(argv)
    repos = build_fixtures(args.root, bench=args.bench, demo=True)
    with HubServer(args.root, args.host, args.port, repos=repos) as hub:
        print(hub.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
