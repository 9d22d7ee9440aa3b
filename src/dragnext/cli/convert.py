"""``dragnext convert``: a point-based benchmark (DragBench, Drag100) into instruction folders (bench/convert/)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..bench.convert import DATASETS, DEFAULT_RADIUS_RULE, FAILED_NAME, convert
from ..instructions import InstructionError
from .common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_SOME_FAILED, CliError, reports_errors

CONVERT_EXIT_STATUS = f"""exit status:
  0    every sample was converted
  {EXIT_SOME_FAILED}    some samples failed, the others were converted; the failed ones are listed, one line each,
       on stderr and in OUT/<dataset>/{FAILED_NAME} (sample, reason)
  {EXIT_BAD_INPUT}    the input is unusable: no samples, a bad option, an output folder that cannot be written,
       or every sample failed
  {EXIT_FAILURE}    writing a converted sample failed (disk full, ...); the samples written before stay whole
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); the samples written before stay whole, no partial folder is left"""


def add_convert_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``convert {dragbench,drag100} ROOT -o OUT [--radius R]`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a point-based benchmark (DragBench, Drag100) into instruction folders",
        description="Convert a point-based benchmark into instruction folders OUT/<dataset>/<sample>/\n"
        "(instructions.json + PNGs + conversion.json). Each handle point becomes a translate of a disc around it.\n"
        "A sample that cannot be converted is reported and the others go on; each sample folder is written whole\n"
        "or not at all.",
        epilog=CONVERT_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", choices=DATASETS, help="source format")
    parser.add_argument("root", help="the dataset folder, e.g. ../shared/data/dragbench")
    parser.add_argument("-o", "--out", required=True, help="output folder; samples go to OUT/<dataset>/<sample>/")
    parser.add_argument(
        "--radius", type=float, default=None, help=f"disc radius in pixels (default: {DEFAULT_RADIUS_RULE})"
    )
    parser.set_defaults(run=command_convert)
    return parser


def _printable(name: str) -> str:
    """A sample name on one terminal line, even if its folder name holds a newline or control characters."""
    return name if name.isprintable() else ascii(name)


@reports_errors
def command_convert(args: argparse.Namespace) -> int:
    """Each failed sample on a line of stderr, then a one-line summary with the counts on stdout; the exit status
    is described by :data:`CONVERT_EXIT_STATUS`."""
    try:
        report = convert(args.dataset, args.root, args.out, args.radius)
    except InstructionError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    except OSError as error:
        raise CliError(f"cannot write {error.filename or args.out}: {error.strerror or error}", EXIT_FAILURE) from None
    for name, reason in report.failed:
        print(f"failed {_printable(name)}: {reason}", file=sys.stderr)
    print(report.summary())
    if not report.converted:
        return EXIT_BAD_INPUT
    return EXIT_SOME_FAILED if report.failed else 0
