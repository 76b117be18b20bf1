"""`%load_ext mistudio_jupyter` → the `%mistudio` line magic, the same commands as the `mistudio` CLI.

The magic parses with the CLI's parser and runs the CLI's commands; only the presentation differs:
lists become DataFrames, downloads and architectures become live widgets, errors one printed line.
"""
from __future__ import annotations

import shlex
from typing import Any, Callable

from . import cli
from .core.errors import MiStudioError

_manager: Any = None


def shared_manager() -> Any:
    """The kernel's one ModelManager, created on first use from the environment."""
    global _manager
    if _manager is None:
        from .core.service import ModelManager

        _manager = ModelManager()
    return _manager


Presenter = Callable[[Any, Any], Any]
PRESENTERS: dict[str, Presenter] = {}


def presenter(name: str) -> Callable[[Presenter], Presenter]:
    def register(function: Presenter) -> Presenter:
        PRESENTERS[name] = function
        return function

    return register


@presenter("list")
def _present_list(args: Any, records: Any) -> Any:
    from .core.service import records_dataframe

    return records_dataframe(records)


def run_line(line: str) -> Any:
    """Run one `%mistudio` line and return what the cell should display (None after an error)."""
    try:
        argv = shlex.split(line)
    except ValueError as error:
        print(f"mistudio: error: {error}")
        return None
    if not argv:
        return PRESENTERS["panel"](None, shared_manager()) if "panel" in PRESENTERS else None
    try:
        args, result = cli.execute(argv, shared_manager)
    except cli._HelpShown:
        return None
    except (cli.UsageError, MiStudioError) as error:
        print(f"mistudio: error: {getattr(error, 'message', error)}")
        return None
    if getattr(args, "json", False):
        return cli.to_jsonable(result)
    present = PRESENTERS.get(args.command)
    return present(args, result) if present else _as_text(result)


def _as_text(result: Any) -> Any:
    if result is None:
        return None
    print(cli.format_text(result))
    return None


def load_ipython_extension(ipython: Any) -> None:
    """Register `%mistudio`."""
    ipython.register_magic_function(run_line, magic_kind="line", magic_name="mistudio")
