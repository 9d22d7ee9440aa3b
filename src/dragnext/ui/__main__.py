"""``python -m dragnext.ui [--host H] [--port P] [--model M]``: the same as ``dragnext ui``."""

from __future__ import annotations

import argparse
import logging
import sys

from .cli import add_ui_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dragnext.ui")
    commands = parser.add_subparsers(dest="command")
    ui = add_ui_parser(commands)
    ui.prog = "python -m dragnext.ui"
    args = ui.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
