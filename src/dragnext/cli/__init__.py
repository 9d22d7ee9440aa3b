"""The ``dragnext`` command: ``edit``, ``demo``, ``region``, ``bench``, ``convert``, ``ui``, ``train-bundled``.

The CLI decides what a user sees: one-line errors (exit status 2 for bad input, 1 for a model that cannot
be loaded or an edit that fails), tqdm bars per phase, and outputs written atomically.

- ``common.py``: what the commands share: exit statuses, ``CliError`` and its printer, the model flags,
  settings from flags, progress bars.
- ``outputs.py``: output paths checked before any work; pictures written together or not at all.
- one module per command, each with ``add_<command>_parser(subparsers)`` and the function it runs:
  ``edit.py``, ``demo.py``, ``region.py``, ``bench.py``, ``convert.py``, ``ui.py``, ``train.py``.

The command modules import ``common`` (and ``outputs``), never this package; no library module imports the CLI.
"""

from __future__ import annotations

import argparse
import logging

from .bench import add_bench_parser
from .common import EXIT_INTERRUPTED, print_error
from .convert import add_convert_parser
from .demo import add_demo_parser
from .edit import add_edit_parser
from .region import add_region_parser
from .train import add_train_parser
from .ui import add_ui_parser

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dragnext", description="Region-based drag editing with diffusion models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_parser in (add_edit_parser, add_demo_parser, add_region_parser, add_bench_parser, add_convert_parser,
                       add_ui_parser, add_train_parser):
        add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
