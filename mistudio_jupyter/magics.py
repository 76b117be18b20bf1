"""`%load_ext mistudio_jupyter` → the `%mistudio` line magic, the same commands as the `mistudio` CLI.

The magic parses with the CLI's parser and runs the CLI's commands; only the presentation differs:
lists become DataFrames, downloads and architectures become live widgets, errors one printed line.

    %mistudio                          the models panel
    %mistudio open ID|REPO             the model page of a catalog entry: in JupyterLab a tab opens;
                                       elsewhere the page shows in the output (the architecture viewer)
    %mistudio list --family gpt2       a DataFrame
    %mistudio preview gpt2             facts, then the memory estimates as a DataFrame
    %mistudio download gpt2            a live progress widget; returns at once
    %mistudio cancel|resume|delete ID
    viewer = %mistudio arch gpt2       the architecture viewer and hook picker (`viewer.selected`)
    %mistudio hooks gpt2               the hook points as a DataFrame
    model = %mistudio load ID          the loaded model
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable
from typing import Any

from . import cli
from .core.errors import MiStudioError
from .core.units import format_bytes
from .shared import shared_manager

DETACHED = ("download", "resume")  # the magic shows these as a live widget instead of waiting
OPEN_MIME = "application/vnd.mistudio.open+json"  # JupyterLab's miStudio extension opens the model page

Presenter = Callable[[argparse.Namespace, Any], Any]
PRESENTERS: dict[str, Presenter] = {}


def presenter(name: str) -> Callable[[Presenter], Presenter]:
    """Register how the magic shows the result of CLI command `name` (what it returns is displayed)."""

    def register(function: Presenter) -> Presenter:
        PRESENTERS[name] = function
        return function

    return register


def run_line(line: str) -> Any:
    """Run one `%mistudio` line and return what the cell should display (None after an error)."""
    try:
        argv = shlex.split(line, comments=True)  # IPython passes the magic its line, comment included
    except ValueError as error:
        print(f"mistudio: error: {error}")
        return None
    try:
        if not argv:
            from .widgets import ModelsPanel

            return ModelsPanel(shared_manager())
        if argv[0] == "open":
            return _open(argv[1:])
        if argv[0] in DETACHED and "--detach" not in argv:
            argv.append("--detach")
        args, result = cli.execute(argv, shared_manager)
        if getattr(args, "json", False):
            return cli.to_jsonable(result)
        present = PRESENTERS.get(args.command, _print_text)
        return present(args, result)
    except cli._HelpShown:
        return None
    except (cli.UsageError, MiStudioError) as error:
        print(f"mistudio: error: {getattr(error, 'message', error)}")
        return None


def _open_parser() -> argparse.ArgumentParser:
    parser = cli._Parser(
        prog="%mistudio open",
        description="Open the model page of a catalog entry: a JupyterLab tab, or this output elsewhere.",
    )
    parser.add_argument("model", help="catalog id or repo id of a model in the catalog")
    return parser


def _open(argv: list[str]) -> ModelPage:
    args = _open_parser().parse_args(argv)
    manager = shared_manager()
    record = manager.resolve(args.model)
    if record is None:
        raise cli.UsageError(f"{args.model!r} is not in the catalog; add it with `%mistudio add {args.model}`")
    from .widgets import ArchitectureViewer

    return ModelPage(record.to_dict(), ArchitectureViewer(record.id, manager=manager))


class ModelPage:
    """What `%mistudio open` displays. Its output carries two forms of the page: JupyterLab's miStudio
    extension renders the first, opening the model page in a main-area tab (with a button to open it
    again); other front ends render the second, the architecture viewer widget (the same views)."""

    def __init__(self, record: dict[str, Any], viewer: Any) -> None:
        self.record = record
        self.viewer = viewer

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.viewer._repr_mimebundle_(**kwargs)
        data = dict(bundle[0] if isinstance(bundle, tuple) else bundle)
        data[OPEN_MIME] = {
            "id": self.record["id"],
            "name": self.record["name"],
            "repo_id": self.record["repo_id"],
            "requested_at": time.time(),
        }
        data["text/plain"] = f"The model page of {self.record['name']} (id {self.record['id']})"
        return data

    def close(self) -> None:
        """Close the viewer widget behind the output."""
        self.viewer.close()


def _print_text(args: argparse.Namespace, result: Any) -> None:
    if result is not None:
        print(cli.format_text(result, args.command))


@presenter("list")
def _present_list(_args: argparse.Namespace, records: Any) -> Any:
    from .core.service import records_dataframe

    return records_dataframe(records)


@presenter("download")
@presenter("resume")
def _present_download(_args: argparse.Namespace, record: Any) -> Any:
    from .widgets import DownloadProgress

    return DownloadProgress(record.id, manager=shared_manager())


@presenter("cancel")
def _present_cancel(args: argparse.Namespace, record: Any) -> None:
    kept = "partial files removed" if args.discard else f"{format_bytes(record.bytes_done)} kept for resume"
    print(f"{record.name}: {record.status} ({kept})")


@presenter("delete")
def _present_delete(_args: argparse.Namespace, result: dict[str, Any]) -> None:
    print(f"Deleted {result['id']}; freed {format_bytes(result['freed_bytes'])}")


@presenter("preview")
def _present_preview(_args: argparse.Namespace, preview: dict[str, Any]) -> Any:
    import pandas

    facts = {
        "family": preview.get("family"),
        "params": cli.human_count(preview.get("params")),
        "layers": preview.get("num_layers"),
        "hidden": preview.get("hidden_size"),
        "download": format_bytes(preview.get("download_bytes")),
        "gated": "yes" if preview.get("gated") else "no",
        "license": preview.get("license"),
    }
    print(f"{preview['repo_id']} @ {preview['revision']}: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    for warning in preview.get("warnings") or []:
        print(f"warning: {warning}")
    fit = preview.get("fit") or {}
    rows = {
        option: {
            "total": format_bytes(memory.get("total_bytes")),
            "weights": format_bytes(memory.get("weights_bytes")),
            "peak while loading": format_bytes(memory.get("peak_load_bytes")),
            "fits on": (fit.get(option) or {}).get("verdict"),
        }
        for option, memory in (preview.get("memory") or {}).items()
    }
    return pandas.DataFrame.from_dict(rows, orient="index")


@presenter("arch")
def _present_arch(args: argparse.Namespace, architecture: dict[str, Any]) -> Any:
    from .widgets import ArchitectureViewer

    token = cli._token_from_env(args.token_env)
    return ArchitectureViewer(
        args.repo_id, revision=args.revision, token=token, manager=shared_manager(), architecture=architecture
    )


@presenter("hooks")
def _present_hooks(_args: argparse.Namespace, hooks: list[Any]) -> Any:
    import pandas

    columns = ["name", "module", "kind", "layer", "shape", "category", "description"]
    return pandas.DataFrame([hook.to_dict() for hook in hooks], columns=columns)


@presenter("load")
def _present_load(_args: argparse.Namespace, model: Any) -> Any:
    return model


def load_ipython_extension(ipython: Any) -> None:
    """Register `%mistudio`."""
    ipython.register_magic_function(run_line, magic_kind="line", magic_name="mistudio")
