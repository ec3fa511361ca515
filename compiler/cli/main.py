"""Entry point of the ``sekuire`` command: parser assembly and the one place errors become exit codes.

Each subcommand lives in its own module with ``register(subparsers)``; only the
module of the command being run is imported (:mod:`.commands`). Handlers return
an exit code; errors derived from :class:`SekuireError` become one line on
stderr, and a closed stdout (``sekuire ... | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import SekuireError
from ..version import OPA_VERSION, REGORUS_VERSION, __version__
from .commands import COMMANDS, EXAMPLES
from .exitcodes import EXIT_ERROR, EXIT_OK

__all__ = ["build_parser", "main", "run", "version_text"]

#: 128 + SIGPIPE: what a command killed by a closed pipe reports, as ``head`` users expect.
EXIT_BROKEN_PIPE = 141


def version_text() -> str:
    """What ``sekuire --version`` prints: the package, the OPA it targets and the embedded engine."""
    engine = f"regorus {REGORUS_VERSION}"
    return f"sekuire-opa {__version__} (OPA {OPA_VERSION} compatible; embedded engine {engine})"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(version_text())
        parser.exit()


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] = ("*",)) -> argparse.ArgumentParser:
    """The ``sekuire`` parser for ``argv``: only the module of the command it names is loaded (``*``: every one)."""
    parser = argparse.ArgumentParser(
        prog="sekuire",
        description="Signed workspace policies for AI agents on OPA.",
        epilog=f"example:\n  {EXAMPLES['']}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action=_VersionAction)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = _command_of(argv)
    # A module registers every command it defines: load it for any of them (publish and opa-config share one).
    modules = {module_name for name, _, module_name in COMMANDS if wanted in (name, "*")}
    for name, help_text, module_name in COMMANDS:
        if name in sub.choices:
            continue
        if module_name in modules:
            importlib.import_module(f"{__package__}.{module_name}").register(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    _add_examples(parser, "")
    return parser


def _add_examples(parser: argparse.ArgumentParser, path: str) -> None:
    """End each command's ``--help`` with its example from :data:`EXAMPLES`."""
    example = EXAMPLES.get(path)
    if example is not None and path:
        parser.epilog = f"example:\n  {example}"
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                _add_examples(child, f"{path} {name}".strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sekuire`` with ``argv`` (default: the process's arguments) and return the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or EXIT_OK)
    except SekuireError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The console script: :func:`main`, with a closed stdout ending the command quietly."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): no traceback, and no second error when Python flushes at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    sys.exit(code)
