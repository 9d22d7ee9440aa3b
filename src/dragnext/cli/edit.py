"""``dragnext edit``: edit an image as an instruction file says; write the output (and a preview) together.

With several instruction files, a folder of them or a glob, ``-o`` names a folder and the edits run as a batch
(:mod:`dragnext.batch`): the model loads once, each file gets ``OUTDIR/<stem>.png``, a file that fails is
reported and listed in ``OUTDIR/failed.csv`` and the others go on; files that edit the same picture share its
inversion (and LoRA).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..batch import GLOB_CHARACTERS, is_folder
from ..config import DEFAULT_MODEL_ID, PRESET_NAMES
from ..instructions import InstructionError, load_instructions
from ..limits import InputError, quote_path
from .common import (
    EXIT_BAD_INPUT,
    EXIT_SOME_FAILED,
    CliError,
    PhaseBars,
    add_edit_flags,
    check_device,
    checked_seed,
    config_from_args,
    load_model_as_asked,
    reports_errors,
)
from .outputs import output_path, same_file, write_pngs_together


def add_edit_parser(subparsers: Any) -> argparse.ArgumentParser:
    edit = subparsers.add_parser("edit", help="edit an image as an instruction file says")
    edit.add_argument("instructions", nargs="+",
                      help="instruction JSON (see README, 'Editing an image'); several files, folders of them or "
                           "globs edit as a batch")
    edit.add_argument("-o", "--output", required=True,
                      help="edited image, PNG; for a batch, a folder (OUTDIR/<file stem>.png each)")
    edit.add_argument("--preview", help="also write input-with-instructions | output side by side, PNG")
    edit.add_argument("--previews", action="store_true",
                      help="batch: also write OUTDIR/<stem>-preview.png for each file")
    edit.add_argument("--seed", type=int, default=0, help="seed of the edit, in [0, 2**63) (default 0)")
    edit.add_argument("--steps", type=int, help="DDIM steps of the full schedule")
    edit.add_argument("--strength", type=float, help="inversion strength, share of the schedule inverted")
    edit.add_argument("--pbsi-timesteps", type=int, help="timesteps optimised by PBSI")
    edit.add_argument("--iterations", type=int, help="Adam steps per PBSI timestep (K)")
    edit.add_argument("--lr", type=float, help="Adam learning rate on the latent")
    edit.add_argument("--no-lora", action="store_true", help="skip the identity-preserving LoRA (SD only)")
    edit.add_argument("--preset", default="default", choices=PRESET_NAMES,
                      help="default: engine v2 (each region starts at its target pose, the area it leaves filled, "
                           "then two timesteps of region optimisation hold it there; 25 DDIM steps); paper: the "
                           "DragNeXt paper's settings exactly (PBSI from the inverted latent over 5 timesteps x 10 "
                           "iterations; 50 DDIM steps); see docs/method.md")
    edit.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="any EditConfig setting, applied over the preset; repeatable")
    add_edit_flags(edit, DEFAULT_MODEL_ID)
    edit.set_defaults(run=command_edit)
    return edit


def is_batch(args: argparse.Namespace) -> bool:
    """Several instruction files, a folder, a glob, or an output folder (not one named like a PNG): a batch."""
    named = args.instructions
    return (len(named) > 1 or any(is_folder(Path(n)) or GLOB_CHARACTERS & set(n) for n in named)
            or args.output.endswith(("/", os.sep))
            or (is_folder(Path(args.output)) and not args.output.lower().endswith(".png")))


@reports_errors
def command_edit(args: argparse.Namespace) -> int:
    if is_batch(args):
        return command_edit_batch(args)
    # 1. Validate everything the user typed before any model is resolved or loaded.
    if args.previews:
        raise CliError("--previews: only for a batch (several instruction files, a folder or a glob); for one "
                       "file use --preview PATH", EXIT_BAD_INPUT)
    try:
        request = load_instructions(args.instructions[0])
    except InstructionError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    inputs = request.files
    output = output_path(args.output, "-o/--output", inputs=inputs)
    preview = output_path(args.preview, "--preview", inputs=inputs) if args.preview else None
    if preview is not None and same_file(preview, output):
        raise CliError("--preview: must differ from the output path", EXIT_BAD_INPUT)
    seed = checked_seed(args.seed)
    config = config_from_args(args)
    if args.device:
        check_device(args.device)

    from ..config import ConfigError
    from ..editor import DragEditor
    from ..visualize import draw_instructions, side_by_side

    # 2. Load the model and edit.
    backbone = load_model_as_asked(args)
    bars = PhaseBars(enabled=not args.quiet)
    try:
        result = DragEditor(backbone, config)(request, seed=seed, progress=bars)
    except ConfigError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    finally:
        bars.close()

    # 3. Write the output and the preview together, or neither.
    pictures = {output: result.image}
    if preview is not None:
        pictures[preview] = side_by_side(
            [draw_instructions(request.image, request.operations, request.editable_mask), result.image],
            ["input + instructions", "output"],
        )
    try:
        write_pngs_together(pictures)
    except OSError as error:
        raise CliError(f"could not write the output: {error.strerror or error} ('{error.filename}'); nothing "
                       "was written") from None
    if not args.quiet:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        p = result.passes
        print(f"wrote {output} ({phases}; UNet passes: {p.forward} forward, {p.truncated_forward} truncated, "
              f"{p.backward} backward)")
    return 0


def command_edit_batch(args: argparse.Namespace) -> int:
    from ..batch import FAILED, instruction_files

    # 1. Validate before any model loads: the files, the output folder, the settings.
    if args.preview:
        raise CliError("--preview: a batch writes one preview per file; use --previews", EXIT_BAD_INPUT)
    try:
        files = instruction_files(args.instructions)
    except InputError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    seed = checked_seed(args.seed)
    config = config_from_args(args)
    if args.device:
        check_device(args.device)
    out_dir = Path(args.output)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise CliError(f"-o/--output: {quote_path(str(out_dir))} is a file; a batch writes into a folder",
                           EXIT_BAD_INPUT)
        out_dir.mkdir(parents=True, exist_ok=True)  # last: a refused batch leaves no folder behind
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        raise CliError(f"-o/--output: cannot create {quote_path(str(out_dir))} ({reason})", EXIT_BAD_INPUT) from None

    from tqdm import tqdm

    from ..batch import edit_files
    from ..config import ConfigError
    from ..editor import check_config

    # 2. Load the model once, check the settings against it, edit every file.
    backbone = load_model_as_asked(args)
    try:
        check_config(backbone, config)
    except ConfigError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    bar = tqdm(total=len(files), unit="file", desc="edit", disable=args.quiet, dynamic_ncols=True)

    def report(outcome) -> None:
        bar.update(1)
        if outcome.output is None:
            tqdm.write(f"dragnext: {quote_path(str(outcome.file))}: {outcome.reason}", file=sys.stderr)
        elif not args.quiet:
            reused = ""
            if outcome.shared_with is not None:
                what = " and ".join(outcome.result.reused)
                reused = f"; reused the {what} of {outcome.shared_with}"
            p = outcome.result.passes
            tqdm.write(f"wrote {outcome.output} (UNet passes: {p.forward} forward, {p.truncated_forward} truncated, "
                       f"{p.backward} backward{reused})")

    try:
        result = edit_files(backbone, files, out_dir, config, seed=seed, previews=args.previews, on_file=report)
    finally:
        bar.close()
    failed = len(result.failed)
    if failed == len(files):
        raise CliError(f"every file failed ({failed}); see {out_dir / FAILED}")
    if failed:
        print(f"{len(files) - failed} of {len(files)} files edited into {out_dir}; {failed} failed, listed in "
              f"{out_dir / FAILED}", file=sys.stderr)
        return EXIT_SOME_FAILED
    if not args.quiet:
        print(f"{len(files)} files edited into {out_dir}")
    return 0
