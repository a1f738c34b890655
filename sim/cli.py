"""The ``gpusim`` command line: parse arguments, dispatch to a subcommand,
and turn every InputError into one line on stderr with exit status 2."""
from __future__ import annotations

import argparse
import importlib
import sys

from sim import __version__
from sim.commands import COMMANDS
from workloads.errors import InputError

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in gpusim's one-line form."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(EXIT_INPUT, f"error: {message} ({self.prog}): see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpusim", description="Simulate NVIDIA GPU clusters for AI capacity planning: "
                     "pretraining, post-training and test-time scaling workloads on modelled hardware.")
    parser.add_argument("--version", action="version", version=f"gpusim {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"sim.commands.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show a traceback on errors")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_INPUT
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        if args.debug:
            raise
        print(f"error: {exc.line()}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted: earlier results were left as they were", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
