"""The ``wsbench`` command line: one sub-command per module in :mod:`wsbench.commands`.

Each command module exposes ``register(subparsers)`` (adds its parser and sets ``func``) and its
``func(args) -> int`` returns the exit code. Errors are :class:`wsbench.errors.WsbenchError`s, printed
as one clear message; a traceback is shown only with ``WSBENCH_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from wsbench import __version__
from wsbench.errors import EXIT_RUN_BROKEN, EXIT_USAGE, WsbenchError, environment_error

COMMANDS = ("serve", "run", "report", "validate", "conform", "compare", "locust")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit code 2 with a one-line hint, as argparse does
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wsbench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"wsbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"wsbench.commands.{name}")
        except ModuleNotFoundError as exc:  # a command whose module has not landed yet
            if exc.name != f"wsbench.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _print_error(message: str) -> None:
    try:
        from rich.console import Console

        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]wsbench:[/] {message}", markup=True)
    except Exception:  # rich missing or the terminal is odd: plain text still tells the user
        print(f"wsbench: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except WsbenchError as exc:
        if os.environ.get("WSBENCH_DEBUG"):
            raise
        from rich.markup import escape

        _print_error(escape(str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except OSError as exc:  # the environment refused (files, disk, limits, network): not a bug in wsbench
        if os.environ.get("WSBENCH_DEBUG"):
            raise
        from rich.markup import escape

        error = environment_error(exc)
        _print_error(escape(str(error)))
        return error.exit_code
    except Exception as exc:  # a bug in wsbench: say so plainly, keep the traceback for WSBENCH_DEBUG
        if os.environ.get("WSBENCH_DEBUG"):
            raise
        from rich.markup import escape

        _print_error(
            escape(f"internal error: {type(exc).__name__}: {exc} (run again with WSBENCH_DEBUG=1 for details)")
        )
        return EXIT_RUN_BROKEN


if __name__ == "__main__":
    sys.exit(main())
