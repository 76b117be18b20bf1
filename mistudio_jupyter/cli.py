"""One command parser for `mistudio …` in a shell and `%mistudio …` in IPython.

Each command is a function `(manager, args) -> result`; the shell prints the result as text or
JSON, the magic displays it. Errors leave as one line on stderr (or a JSON error object) and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .core.errors import InvalidArgument, MiStudioError, NotFound
from .core.options import DTYPES, OPTION_NAMES, QUANTIZATIONS, SORTABLE, STATUSES
from .core.units import MISSING, format_bytes

if TYPE_CHECKING:
    from .core.catalog import ModelRecord
    from .core.records import RecordView
    from .core.settings import Settings
    from .core.sqlite_catalog import CatalogRow, SQLiteCatalog

EXIT_ERROR = 1
EXIT_USAGE = 2

Command = Callable[[Any, argparse.Namespace], Any]
COMMANDS: dict[str, Command] = {}


class UsageError(Exception):
    """Bad command-line words; raised instead of argparse's exit so the magic survives it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            raise UsageError(message.strip())
        raise _HelpShown()


class _HelpShown(Exception):
    pass


def parse_count(text: str) -> int:
    """'125M', '2.6B', '70b', '1e9' or '124439808' → an integer count."""
    multipliers = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
    value = text.strip().lower().replace("_", "").replace(",", "")
    try:
        if value and value[-1] in multipliers:
            return int(float(value[:-1]) * multipliers[value[-1]])
        return int(float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (e.g. 125M, 2.6B)") from None


def command(name: str, help: str) -> Callable[[Command], Command]:
    def register(function: Command) -> Command:
        function.help = help  # type: ignore[attr-defined]
        COMMANDS[name] = function
        return function

    return register


def build_parser(prog: str = "mistudio") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Hugging Face model management for interpretability research.")
    parser.add_argument("--version", action="version", version=f"mistudio-jupyter {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, function in COMMANDS.items():
        sub = commands.add_parser(name, help=function.help, description=function.help)  # type: ignore[attr-defined]
        ARGUMENTS.get(name, lambda _: None)(sub)
        sub.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", help="e.g. llama, gemma, gpt2, pythia, phi, qwen, mistral")
    parser.add_argument("--quantization", choices=QUANTIZATIONS)
    parser.add_argument("--status", choices=STATUSES)
    parser.add_argument("--min-params", type=parse_count, metavar="N", help="e.g. 1B")
    parser.add_argument("--max-params", type=parse_count, metavar="N", help="e.g. 10B")
    parser.add_argument("-q", "--query", dest="q", help="text in the name or repo id")
    parser.add_argument("--sort", default="-created_at", help=f"one of {', '.join(SORTABLE)}; '-' first for descending")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--offset", type=int, default=0)


ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {"list": _list_arguments}


@command("list", "List the models in the catalog.")
def list_models(manager: Any, args: argparse.Namespace) -> list[ModelRecord]:
    return manager.list(**_list_filters(args))


def _list_filters(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("family", "quantization", "status", "min_params", "max_params", "q", "sort", "limit", "offset")
    return {key: getattr(args, key) for key in keys}


def _entry_arguments(parser: argparse.ArgumentParser, target: str = "Hub repo id") -> None:
    parser.add_argument(
        "repo_id", metavar="REPO" if target == "Hub repo id" else "REPO_OR_ID", help=f"{target}, e.g. google/gemma-2-2b"
    )
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    _load_option_arguments(parser, "how it will be loaded")


def _load_option_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--as",
        dest="option",
        choices=OPTION_NAMES,
        metavar="OPTION",
        help=f"{' | '.join(OPTION_NAMES)}, as `estimate` names them ({default})",
    )
    parser.add_argument("--quantization", choices=QUANTIZATIONS, help="the older form of --as, with --dtype")
    parser.add_argument("--dtype", choices=DTYPES, help="the older form of --as, with --quantization")


def _download_arguments(parser: argparse.ArgumentParser) -> None:
    _entry_arguments(parser, "Hub repo id or catalog id")
    parser.add_argument("--token-env", metavar="VAR", help="read the Hub token from this environment variable")
    parser.add_argument("--detach", action="store_true", help="start the download and return at once")


def _id_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="ID", help="catalog id (or repo id: its newest entry)")


def _cancel_arguments(parser: argparse.ArgumentParser) -> None:
    _id_argument(parser)
    parser.add_argument("--discard", action="store_true", help="also delete the partial files")


def _resume_arguments(parser: argparse.ArgumentParser) -> None:
    _id_argument(parser)
    parser.add_argument("--token-env", metavar="VAR", help="read the Hub token from this environment variable")
    parser.add_argument("--detach", action="store_true", help="resume in the background and return at once")


def _delete_arguments(parser: argparse.ArgumentParser) -> None:
    _id_argument(parser)
    parser.add_argument("--force", action="store_true", help="delete it even while a running process has it loaded")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    _entry_arguments(parser)
    parser.add_argument("--token-env", metavar="VAR", help="read the Hub token from this environment variable")


ARGUMENTS.update(
    download=_download_arguments,
    add=_add_arguments,
    cancel=_cancel_arguments,
    resume=_resume_arguments,
    show=_id_argument,
    delete=_delete_arguments,
)


@command("download", "Download a model into the Hugging Face cache (resumable; joins a running download).")
def download_model(manager: Any, args: argparse.Namespace) -> ModelRecord:
    return _follow(manager.download(args.repo_id, **_entry_options(args)), args)


@command("add", "Add a Hub model to the catalog without downloading it.")
def add_model(manager: Any, args: argparse.Namespace) -> ModelRecord:
    return manager.add(args.repo_id, **_entry_options(args))


def _entry_options(args: argparse.Namespace) -> dict[str, Any]:
    """What `add` and `download` take from their shared arguments."""
    return {
        "revision": args.revision,
        "option": args.option,
        "quantization": args.quantization,
        "dtype": args.dtype,
        "token": _token_from_env(args.token_env),
    }


@command("cancel", "Cancel a download (within a second, from any process).")
def cancel_download(manager: Any, args: argparse.Namespace) -> ModelRecord:
    return manager.cancel(_model_id(manager, args.model), discard=args.discard)


@command("resume", "Resume a cancelled, failed or interrupted download from the bytes on disk.")
def resume_download(manager: Any, args: argparse.Namespace) -> ModelRecord:
    handle = manager.resume(_model_id(manager, args.model), token=_token_from_env(args.token_env))
    return _follow(handle, args)


@command("show", "Show one catalog entry.")
def show_model(manager: Any, args: argparse.Namespace) -> ModelRecord:
    return manager.get(_model_id(manager, args.model))


@command("delete", "Delete a model and the cached files no other entry uses (refused while a process has it loaded).")
def delete_model(manager: Any, args: argparse.Namespace) -> dict[str, Any]:
    return manager.delete(_model_id(manager, args.model), force=args.force)


def _audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=100, help="at most this many entries (default 100)")
    parser.add_argument("--offset", type=int, default=0)


ARGUMENTS.update(audit=_audit_arguments)


@command("audit", "List who downloaded, resumed, cancelled, deleted or pruned what, and when (newest first).")
def list_audit(manager: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    return manager.audit(limit=args.limit, offset=args.offset)


@command("store", "Run the team store, the JupyterHub service that downloads and deletes for every user.")
def run_store(manager: Any, args: argparse.Namespace) -> None:
    try:
        from .store import serve
    except ImportError as error:
        needs = f"mistudio store needs JupyterHub ({error}); pip install 'mistudio-jupyter[team]'"
        raise InvalidArgument(needs) from None
    serve(manager)


def _model_id(manager: Any, repo_or_id: str) -> str:
    record = manager.resolve(repo_or_id)
    if record is None:
        raise NotFound(f"no catalog entry {repo_or_id!r}; see `mistudio list`")
    return record.id


def _token_from_env(variable: str | None) -> str | None:
    if variable is None:
        return None
    token = os.environ.get(variable)
    if not token:
        raise InvalidArgument(f"--token-env: the environment variable {variable} is not set")
    return token


def _follow(handle: Any, args: argparse.Namespace) -> ModelRecord:
    """Wait for a download (a progress bar on a terminal) unless --detach; Ctrl-C cancels it."""
    if args.detach:
        return handle.record
    bar = None if args.json or not sys.stderr.isatty() else _ProgressBar()
    if bar is not None:
        handle.on_progress(bar.update)
    try:
        return handle.wait()
    except KeyboardInterrupt:
        handle.cancel()
        raise
    finally:
        if bar is not None:
            bar.close()


class _ProgressBar:
    """A tqdm bar fed by download progress records."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(unit="B", unit_scale=True, unit_divisor=1000, file=sys.stderr, dynamic_ncols=True)
        self._noted = False

    def update(self, record: ModelRecord) -> None:
        if record.note and not self._noted:
            self._bar.write(f"mistudio: note: {record.note}", file=sys.stderr)
            self._noted = True
        if record.bytes_total and self._bar.total != record.bytes_total:
            self._bar.total = record.bytes_total
        self._bar.set_description(record.current_file or record.status, refresh=False)
        self._bar.n = record.bytes_done
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _anatomy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo_id", metavar="REPO_OR_ID", help="Hub repo id or catalog id, e.g. google/gemma-2-2b")
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    parser.add_argument("--token-env", metavar="VAR", help="read the Hub token from this environment variable")


def _hooks_arguments(parser: argparse.ArgumentParser) -> None:
    _anatomy_arguments(parser)
    parser.add_argument("--modules", action="store_true", help="also list a raw hook for every module")


ARGUMENTS.update(arch=_anatomy_arguments, hooks=_hooks_arguments)


@command("arch", "Show a model's layer tree and parameter counts (no weights are downloaded).")
def show_architecture(manager: Any, args: argparse.Namespace) -> dict[str, Any]:
    return manager.architecture(args.repo_id, revision=args.revision, token=_token_from_env(args.token_env))


@command("hooks", "List a model's hook points by their TransformerLens/SAELens names.")
def list_hooks(manager: Any, args: argparse.Namespace) -> list[Any]:
    return manager.hook_points(
        args.repo_id, revision=args.revision, token=_token_from_env(args.token_env), include_modules=args.modules
    )


def _architecture_text(architecture: dict[str, Any]) -> str:
    summary = architecture["summary"]
    lines = [
        f"{key}: {human_count(value) if key == 'params' else value}"
        for key, value in summary.items()
        if not isinstance(value, dict)
    ]
    lines.append("")
    lines.extend(_tree_lines(architecture["tree"], 0))
    lines.extend(f"warning: {warning}" for warning in architecture.get("warnings", []))
    return "\n".join(lines)


def _tree_lines(node: dict[str, Any], depth: int) -> list[str]:
    repeated = f" ×{node['repeated']}" if node.get("repeated", 1) > 1 else ""
    label = f"{'  ' * depth}{node.get('name') or node.get('path') or 'model'}{repeated}  {node['class_name']}"
    lines = [f"{label}  {human_count(node['total_params'])}"]
    for child in node.get("children", []):
        lines.extend(_tree_lines(child, depth + 1))
    return lines


def _hooks_text(hooks: list[Any]) -> str:
    rows = [("NAME", "MODULE", "KIND", "SHAPE")]
    for hook in hooks:
        data = hook.to_dict()
        computed = " (computed)" if data["computed"] else ""
        rows.append(
            (data["name"], data["module"], data["kind"] + computed, "[" + ", ".join(map(str, data["shape"])) + "]")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _preview_arguments(parser: argparse.ArgumentParser) -> None:
    _anatomy_arguments(parser)
    parser.add_argument("--context", type=int, default=0, metavar="N", help="tokens of KV cache to include")
    parser.add_argument("--batch", type=int, default=1, metavar="B", help="sequences of KV cache to include")


def _load_arguments(parser: argparse.ArgumentParser) -> None:
    _id_argument(parser)
    _load_option_arguments(parser, "default: the entry's own")
    parser.add_argument("--device-map", default="auto", help="as in transformers (default: auto)")


ARGUMENTS.update(preview=_preview_arguments, estimate=_preview_arguments, load=_load_arguments)


@command("preview", "Preview a Hub repo before downloading: architecture, parameters, files, memory per option.")
def preview_repo(manager: Any, args: argparse.Namespace) -> dict[str, Any]:
    return manager.preview(
        args.repo_id,
        revision=args.revision,
        token=_token_from_env(args.token_env),
        context=args.context,
        batch=args.batch,
    )


@command("estimate", "Memory needed at fp32/fp16/bf16/8-bit/4-bit, and whether it fits this machine.")
def estimate_memory(manager: Any, args: argparse.Namespace) -> dict[str, Any]:
    return manager.estimate(
        args.repo_id,
        revision=args.revision,
        token=_token_from_env(args.token_env),
        context=args.context,
        batch=args.batch,
    )


@command("load", "Load a downloaded model (checks it loads; records its measured memory and load time).")
def load_model(manager: Any, args: argparse.Namespace) -> Any:
    model, _ = manager.load(
        _model_id(manager, args.model),
        option=args.option,
        quantization=args.quantization,
        dtype=args.dtype,
        device_map=args.device_map,
    )
    return model


def _memory_lines(memory: dict[str, Any], fit: dict[str, Any]) -> list[str]:
    rows = [("OPTION", "WEIGHTS", "QUANT STATE", "OVERHEAD", "KV CACHE", "PEAK LOAD", "TOTAL", "FITS")]
    for option, estimate in memory.items():
        rows.append(
            (
                option,
                *(
                    format_bytes(estimate[key])
                    for key in (
                        "weights_bytes",
                        "quant_state_bytes",
                        "overhead_bytes",
                        "kv_cache_bytes",
                        "peak_load_bytes",
                        "total_bytes",
                    )
                ),
                {"gpu": "GPU", "cpu": "RAM", "none": "no"}.get(fit.get(option, {}).get("verdict"), "?"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _preview_text(preview: dict[str, Any]) -> str:
    keys = (
        "repo_id",
        "commit",
        "family",
        "model_type",
        "hidden_size",
        "num_layers",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "intermediate_size",
        "vocab_size",
        "context_length",
        "tied_embeddings",
        "gated",
        "license",
    )
    lines = [f"{key}: {preview.get(key)}" for key in keys]
    lines += [
        f"params: {preview['params']:,} ({human_count(preview['params'])})",
        f"download: {format_bytes(preview['download_bytes'])} in {len(preview['files'])} files",
        "",
    ]
    lines += _memory_lines(preview["memory"], preview["fit"])
    lines += [f"warning: {warning}" for warning in preview["warnings"]]
    return "\n".join(lines)


def _estimate_text(estimate: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"{estimate['repo_id']}: {human_count(estimate['params'])} parameters",
            "",
            *_memory_lines(estimate["memory"], estimate["fit"]),
        ]
    )


def _load_text(model: Any) -> str:
    footprint = model.get_memory_footprint()
    return f"loaded {type(model).__name__} on {getattr(model, 'device', '?')}: {format_bytes(footprint)} of weights"


def _audit_text(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "No downloads, cancels or deletes recorded yet."
    rows = [("WHEN", "USER", "ACTION", "REPO", "REVISION", "ID")]
    for entry in entries:
        rows.append(
            (
                entry["at"][:19].replace("T", " "),
                entry["user"],
                entry["action"],
                entry["repo_id"] or MISSING,
                entry["revision"] or MISSING,
                (entry["model_id"] or MISSING)[:8],
            )
        )
    return _table(rows)


TEXT_FORMATTERS: dict[str, Callable[[Any], str]] = {
    "audit": _audit_text,
    "arch": _architecture_text,
    "hooks": _hooks_text,
    "preview": _preview_text,
    "estimate": _estimate_text,
    "load": _load_text,
}


def to_jsonable(result: Any) -> Any:
    from .core.records import RecordView

    if isinstance(result, RecordView):
        return result.to_dict()
    if isinstance(result, (list, tuple)):
        return [to_jsonable(item) for item in result]
    if isinstance(result, dict):
        return {key: to_jsonable(value) for key, value in result.items()}
    if hasattr(result, "to_dict"):
        return result.to_dict()
    return result


def format_text(result: Any, command_name: str | None = None) -> str:
    """A terminal rendering of a command's result."""
    from .core.records import RecordView

    if command_name in TEXT_FORMATTERS:
        return TEXT_FORMATTERS[command_name](result)
    if isinstance(result, list) and all(isinstance(item, RecordView) for item in result):
        return _records_table(result)
    if isinstance(result, RecordView):
        return "\n".join(f"{key}: {value}" for key, value in result.to_dict().items() if key != "summary")
    if isinstance(result, str):
        return result
    return json.dumps(to_jsonable(result), indent=2, default=str)


def _records_table(records: list[RecordView]) -> str:
    if not records:
        return "No models in the catalog. Try: mistudio download REPO"
    rows = [("ID", "REPO", "REVISION", "STATUS", "QUANT", "PARAMS", "SIZE")]
    for record in records:
        rows.append(
            (
                record.id[:8],
                record.repo_id,
                record.revision,
                _status_text(record),
                record.quantization,
                human_count(record.params),
                format_bytes(record.size_bytes or record.bytes_total),
            )
        )
    return _table(rows)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _status_text(record: RecordView) -> str:
    if record.status == "downloading" and record.bytes_total:
        return f"downloading {100 * record.bytes_done / record.bytes_total:.0f}%"
    return record.status


def human_count(value: int | None) -> str:
    if value is None:
        return MISSING
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return str(value)


def execute(
    argv: Sequence[str], manager_factory: Callable[[], Any], *, quick: bool = False
) -> tuple[argparse.Namespace, Any]:
    """Parse `argv` and run its command; raises UsageError or MiStudioError.

    With `quick`, `list` and `cancel` read a current SQLite catalog directly when they can, rather
    than build a manager (which imports SQLAlchemy): what a shell command starting in a new process wants.
    """
    args = build_parser().parse_args(list(argv))
    if args.command is None:
        raise UsageError("a command is required; see `mistudio --help`")
    if quick and args.command in QUICK_COMMANDS:
        try:
            return args, _run_quick(args)
        except _NeedsManager:
            pass
    return args, COMMANDS[args.command](manager_factory(), args)


class _NeedsManager(Exception):
    """The quick form of a command cannot answer: the manager must."""


def _run_quick(args: argparse.Namespace) -> Any:
    from .core.settings import Settings
    from .core.sqlite_catalog import SQLiteCatalog

    settings = Settings.from_env()
    catalog = None if settings.store_url else SQLiteCatalog.open(settings.db_url)
    if catalog is None:
        raise _NeedsManager
    try:
        return QUICK_COMMANDS[args.command](catalog, settings, args)
    finally:
        catalog.close()


def _quick_list(catalog: SQLiteCatalog, settings: Settings, args: argparse.Namespace) -> list[CatalogRow]:
    """`list` when the cache has not changed since the last adoption (else the manager adopts first)."""
    from .core import jobs
    from .core.adoption import cache_fingerprint

    jobs.refresh_all(catalog, settings.heartbeat_timeout_s)
    if cache_fingerprint(settings.cache_dir) != catalog.cache_fingerprint(settings.cache_dir):
        raise _NeedsManager
    return catalog.list(**_list_filters(args))


def _quick_cancel(catalog: SQLiteCatalog, settings: Settings, args: argparse.Namespace) -> CatalogRow:
    """`cancel` without --discard (removing partial files is the manager's)."""
    from .core import jobs
    from .core.records import valid_id

    if args.discard:
        raise _NeedsManager
    return jobs.stop(catalog, valid_id(_model_id(catalog, args.model)), settings.heartbeat_timeout_s)


QUICK_COMMANDS: dict[str, Callable[[SQLiteCatalog, Settings, argparse.Namespace], Any]] = {
    "list": _quick_list,
    "cancel": _quick_cancel,
}


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """The `mistudio` console script."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_json = "--json" in argv
    try:
        args, result = execute(argv, _default_manager, quick=True)
    except _HelpShown:
        return 0
    except UsageError as error:
        return _fail(stderr, wants_json, "invalid_argument", str(error), EXIT_USAGE)
    except MiStudioError as error:
        return _fail(stderr, wants_json, error.code, error.message, EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail(stderr, wants_json, "interrupted", "interrupted", 130)
    if args.json:
        print(json.dumps(to_jsonable(result), indent=2, default=str), file=stdout)
    elif result is not None:
        print(format_text(result, args.command), file=stdout)
    return 0


def _fail(stderr: TextIO, wants_json: bool, code: str, message: str, status: int) -> int:
    if wants_json:
        print(json.dumps({"error": {"code": code, "message": message}}), file=stderr)
    else:
        print(f"mistudio: error: {message}", file=stderr)
    return status


def _default_manager() -> Any:
    from .core.service import ModelManager

    return ModelManager()


__all__ = ["main", "build_parser", "execute", "COMMANDS", "UsageError"]
