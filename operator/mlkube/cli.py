"""The ``mlkube`` command: one entry point whose subcommands live with their programs.

Each program module exposes ``register(subparsers)``, which adds its subcommand and
sets ``func`` on the parser. Modules are imported only when their subcommand runs
(``COMMANDS`` maps names to modules), so ``mlkube serve`` never pays for kopf and
``mlkube operator`` never imports scikit-learn.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mlkube import __version__
from mlkube.api.errors import CommandError

# subcommand -> module with ``register(subparsers)``; a command is listed only once it is real.
COMMANDS: dict[str, str] = {
    "train": "mlkube.runtime.train.command",
    "operator": "mlkube.controller.main",
    "drift-check": "mlkube.runtime.drift.command",
    "serve": "mlkube.runtime.serve.command",
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlkube",
        description="Train, serve and monitor scikit-learn models, in a cluster or on local paths.",
    )
    parser.add_argument("--version", action="version", version=f"mlkube {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name in COMMANDS.items():
        if wanted is None or wanted == name:
            importlib.import_module(module_name).register(subparsers)
        else:
            subparsers.add_parser(name, help=f"see `mlkube {name} --help`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    try:
        result: int | None = args.func(args)
    except CommandError as error:
        print(f"mlkube {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return 0 if result is None else result
