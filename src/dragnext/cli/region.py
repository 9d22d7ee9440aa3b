"""``dragnext region``: a handle region from clicks (the area of like colour under each), as a mask PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..instructions import InstructionError
from ..selection import DEFAULT_TOLERANCE
from .common import EXIT_BAD_INPUT, CliError, reports_errors
from .outputs import output_path, write_pngs_together


def _click(text: str) -> tuple[float, float]:
    """argparse type of ``--click X,Y``."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (pixels), got '{text}'") from None


def add_region_parser(subparsers: Any) -> argparse.ArgumentParser:
    region = subparsers.add_parser(
        "region", help="a handle region from clicks: the area of like colour under each click, as a mask PNG",
        description="Select a handle region without painting it: each --click takes the connected area of similar "
                    "colour under it (no model weights needed), --unclick takes an area away. The mask can be named "
                    "as an operation's region in an instruction file, or painted over in the UI.")
    region.add_argument("image", help="the picture, PNG/JPEG/...")
    region.add_argument("--click", type=_click, action="append", required=True, metavar="X,Y",
                        help="a pixel inside the region; repeatable")
    region.add_argument("--unclick", type=_click, action="append", metavar="X,Y",
                        help="a pixel of an area to leave out; repeatable")
    region.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"how different a colour may be and still be taken (CIELAB Delta E, default "
                             f"{DEFAULT_TOLERANCE:g}); raise it when the region comes out too small")
    region.add_argument("-o", "--output", required=True, help="mask, PNG (white = region)")
    region.set_defaults(run=command_region)
    return region


@reports_errors
def command_region(args: argparse.Namespace) -> int:
    from ..limits import read_image
    from ..selection import select_region

    try:
        image = read_image(Path(args.image), "image", "RGB")
        output = output_path(args.output, "-o/--output", inputs=[Path(args.image)])
        mask = select_region(image, args.click, args.unclick or (), tolerance=args.tolerance)
    except InstructionError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    try:
        write_pngs_together({output: (mask * 255).astype("uint8")})
    except OSError as error:
        raise CliError(f"could not write the mask: {error.strerror or error}") from None
    print(f"wrote {output}: {int(mask.sum())} pixels, {mask.mean():.1%} of the image")
    return 0
