"""The ``dragnext`` command: ``edit``, ``demo``, ``bench``, ``convert``, ``ui``, ``train-bundled``.

The CLI decides what a user sees: one-line errors (exit status 2 for bad input, 1 for a model that cannot
be loaded or an edit that fails), tqdm bars per phase, and outputs written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from .config import PRESET_NAMES
from .files import write_png_atomic
from .instructions import InstructionError, load_instructions

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


class CliError(Exception):
    def __init__(self, message: str, status: int = EXIT_FAILURE):
        super().__init__(message)
        self.status = status


class PhaseBars:
    """A tqdm bar per phase of an edit, fed by the editor's progress callback."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars: dict[str, object] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(phase)
        if bar is None or done <= bar.n:  # a new edit starts the phase again
            if bar is not None:
                bar.close()
            bar = self.bars[phase] = tqdm(total=total, desc=f"{phase:>9}", unit="step", leave=True, file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _output_path(value: str, flag: str) -> Path:
    path = Path(value).expanduser()
    if path.is_dir():
        raise CliError(f"{flag}: '{value}' is a folder; give a file name like out.png", EXIT_BAD_INPUT)
    if not path.parent.is_dir():
        raise CliError(f"{flag}: folder '{path.parent}' does not exist", EXIT_BAD_INPUT)
    if path.suffix.lower() != ".png":
        raise CliError(f"{flag}: '{value}' must end in .png", EXIT_BAD_INPUT)
    return path


def parse_override(text: str):
    from .config import EditConfig

    key, sep, raw = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(EditConfig)}
    if not sep or key not in fields:
        known = ", ".join(fields)
        raise CliError(f"--set: expected KEY=VALUE with KEY one of: {known}; got '{text}'", EXIT_BAD_INPUT)
    default = getattr(EditConfig(), key)
    if "None" in str(fields[key].type) and raw.lower() == "none":  # optional settings (feature_scale, ...)
        return key, None
    if default is None:  # optional integer settings (auto_editable_radius)
        default = 0
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            value = raw.lower() in ("true", "1", "yes")
        elif isinstance(default, tuple):
            value = tuple(part.strip() for part in raw.split(",") if part.strip())
        else:
            value = type(default)(raw)
    except ValueError:
        raise CliError(f"--set {key}: '{raw}' is not a valid {type(default).__name__}", EXIT_BAD_INPUT) from None
    return key, value


def _config_from_args(args):
    from .config import ConfigError, preset, preset_name_for_model

    changes = dict(parse_override(item) for item in args.set or [])
    for flag, key in (("steps", "num_steps"), ("strength", "strength"), ("pbsi_timesteps", "pbsi_timesteps"),
                      ("iterations", "iterations"), ("lr", "learning_rate")):
        value = getattr(args, flag)
        if value is not None:
            changes[key] = value
    if args.no_lora:
        changes["lora"] = False
    try:
        return preset(preset_name_for_model(args.model), args.preset).override(**changes)
    except ConfigError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None


def load_model(name: str, device: str | None, bf16: bool):
    import torch

    if not logging.getLogger().isEnabledFor(logging.INFO):
        _quiet_libraries()

    from .models import ModelLoadError, load_backbone

    try:
        torch_device = torch.device(device) if device else None
    except RuntimeError:
        raise CliError(f"--device: '{device}' is not a device (try cpu or cuda)", EXIT_BAD_INPUT) from None
    if torch_device is not None and torch_device.type == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: no CUDA device is available here; use --device cpu", EXIT_BAD_INPUT)
    try:
        return load_backbone(name, device=torch_device, autocast_bf16=bf16)
    except ModelLoadError as error:
        raise CliError(str(error)) from None


def command_edit(args) -> int:
    # Validate everything the user typed before any model is resolved or loaded.
    try:
        request = load_instructions(args.instructions)
    except InstructionError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    output = _output_path(args.output, "-o/--output")
    preview = _output_path(args.preview, "--preview") if args.preview else None
    if preview is not None and preview.resolve() == output.resolve():
        raise CliError("--preview: must differ from the output path", EXIT_BAD_INPUT)
    config = _config_from_args(args)

    from .config import ConfigError
    from .editor import DragEditor
    from .visualize import draw_instructions, side_by_side

    backbone = load_model(args.model, args.device, args.bf16)
    bars = PhaseBars(enabled=not args.quiet)
    try:
        result = DragEditor(backbone, config)(request, seed=args.seed, progress=bars)
    except ConfigError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    finally:
        bars.close()
    write_png_atomic(output, result.image)
    if preview is not None:
        picture = side_by_side(
            [draw_instructions(request.image, request.operations, request.editable_mask), result.image],
            ["input + instructions", "output"],
        )
        write_png_atomic(preview, picture)
    if not args.quiet:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        p = result.passes
        print(f"wrote {output} ({phases}; UNet passes: {p.forward} forward, {p.truncated_forward} truncated, "
              f"{p.backward} backward)")
    return 0


def command_demo(args) -> int:
    from .demo import run_demo

    Path(args.output).expanduser().parent.mkdir(parents=True, exist_ok=True)
    output = _output_path(args.output, "-o/--output")
    backbone = load_model(args.model, args.device, args.bf16)
    report = run_demo(backbone, output, progress=None if args.quiet else PhaseBars())
    print(report)
    return 0


def command_train_bundled(args) -> int:
    from .models.training import TrainConfig, train_bundled

    def progress(step: int, seconds: float, loss: float) -> None:
        if step % 250 == 0:
            print(f"step {step}  {seconds:.0f} s  loss {loss:.4f}", flush=True)

    train_bundled(Path(args.out_dir), TrainConfig(minutes=args.minutes, seed=args.seed), progress)
    return 0


def _add_model_flags(parser: argparse.ArgumentParser, default_model: str) -> None:
    parser.add_argument("--model", default=default_model,
                        help="'bundled', a local diffusers folder, or a hub id of Stable Diffusion 1.x/2.x "
                             f"(default: {default_model})")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present, else cpu)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast of the UNet on CPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dragnext", description="Region-based drag editing with diffusion models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    commands = parser.add_subparsers(dest="command", required=True)

    edit = commands.add_parser("edit", help="edit an image as an instruction file says")
    edit.add_argument("instructions", help="instruction JSON (see README, 'Editing an image')")
    edit.add_argument("-o", "--output", required=True, help="edited image, PNG")
    edit.add_argument("--preview", help="also write input-with-instructions | output side by side, PNG")
    edit.add_argument("--seed", type=int, default=0)
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
    _add_model_flags(edit, "stable-diffusion-v1-5/stable-diffusion-v1-5")
    edit.set_defaults(run=command_edit)

    demo = commands.add_parser("demo", help="translate and rotate bundled scenes; writes out/demo.png")
    demo.add_argument("-o", "--output", default="out/demo.png")
    _add_model_flags(demo, "bundled")
    demo.set_defaults(run=command_demo)

    from .bench.cli import add_bench_parser
    from .bench.convert import add_convert_parser
    from .ui.cli import add_ui_parser

    add_bench_parser(commands)
    add_convert_parser(commands)
    add_ui_parser(commands)

    train = commands.add_parser("train-bundled", help="train the bundled pixel-space model")
    train.add_argument("out_dir")
    train.add_argument("--minutes", type=float, default=110.0)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=command_train_bundled)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except CliError as error:
        print(f"dragnext: error: {error}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        print("dragnext: interrupted", file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    """Loading bars and warnings of diffusers/transformers are noise to a CLI user (``-v`` shows them)."""
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
