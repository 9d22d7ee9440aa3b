"""``dragnext demo``: translate and rotate bundled scenes, written as one picture (out/demo.png)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import CliError, PhaseBars, add_edit_flags, check_device, load_model_as_asked, reports_errors
from .outputs import output_path


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    demo = subparsers.add_parser("demo", help="translate and rotate bundled scenes; writes out/demo.png")
    demo.add_argument("-o", "--output", default="out/demo.png")
    add_edit_flags(demo, "bundled")
    demo.set_defaults(run=command_demo)
    return demo


@reports_errors
def command_demo(args: argparse.Namespace) -> int:
    # The default, out/demo.png, must work from a fresh clone: a missing folder is created, but only by
    # run_demo, right before it writes, so that a refused command leaves nothing behind. The output and the
    # device are checked before anything imports torch (dragnext.demo does), so a refusal is instant.
    output = output_path(args.output, "-o/--output", create_folders=True)
    if args.device:
        check_device(args.device)

    from ..demo import run_demo

    backbone = load_model_as_asked(args)
    try:
        report = run_demo(backbone, output, progress=None if args.quiet else PhaseBars())
    except OSError as error:
        raise CliError(f"could not write the output: {error.strerror or error} ('{error.filename}')") from None
    print(report)
    return 0
