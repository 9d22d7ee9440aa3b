"""The ``dragnext`` command: ``edit``, ``demo``, ``bench``, ``convert``, ``ui``, ``train-bundled``.

The CLI decides what a user sees: one-line errors (exit status 2 for bad input, 1 for a model that cannot
be loaded or an edit that fails), tqdm bars per phase, and outputs written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from .config import PRESET_NAMES, SEED_LIMIT
from .files import write_staged
from .instructions import InstructionError, load_instructions

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl+C

# The torch device types an edit runs on; others (meta: no data; xla, hpu, ...: never tried) are refused.
RUNNABLE_DEVICE_TYPES = ("cpu", "cuda", "mps")


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


def _output_path(value: str, flag: str, *, inputs: Iterable[Path] = (), create_folders: bool = False) -> Path:
    """Check an output path before any work: a .png file name, in a folder we can write, not one of ``inputs``.

    ``create_folders``: a missing folder is fine if it can be created; the caller creates it right before writing,
    so that a command refused for any reason leaves no folder behind."""
    path = Path(value).expanduser()
    if path.suffix.lower() != ".png":
        raise CliError(f"{flag}: '{value}' must end in .png", EXIT_BAD_INPUT)
    if path.is_dir():
        raise CliError(f"{flag}: '{value}' is a folder; give a file name like out.png", EXIT_BAD_INPUT)
    if path.exists() and not path.is_file():
        raise CliError(f"{flag}: '{value}' exists and is not a regular file", EXIT_BAD_INPUT)
    folder = path.parent
    if create_folders:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise CliError(f"{flag}: folder '{folder}' {problem}", EXIT_BAD_INPUT)
    _check_writable(folder, path.name, flag)
    for source in inputs:
        if _same_file(path, source):
            raise CliError(f"{flag}: '{value}' is an input of this edit ('{source}'); writing it would overwrite it",
                           EXIT_BAD_INPUT)
    return path


def _check_writable(folder: Path, name: str, flag: str) -> None:
    """Create and remove a staged file there: the permission bits alone cannot tell (root may write anywhere by
    them, yet not in /proc; a read-only mount says yes too)."""
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
        write_staged(folder, name, lambda stream: None).unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise CliError(f"{flag}: cannot write in folder '{folder}' ({reason})", EXIT_BAD_INPUT) from None


def _same_file(a: Path, b: Path) -> bool:
    """The same file, by resolved path or, for hard links, by device and inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _checked_seed(seed: int) -> int:
    if not 0 <= seed < SEED_LIMIT:
        raise CliError(f"--seed: {seed} is not in [0, 2**63)", EXIT_BAD_INPUT)
    return seed


def _write_pngs_together(pictures: Mapping[Path, object]) -> None:
    """Write every picture (H x W x 3 uint8) or none: each is staged beside its destination, then all are moved
    into place; if a move fails, the destinations already moved get back what they held before."""
    from PIL import Image

    staged: dict[Path, Path] = {}
    try:
        for destination, image in pictures.items():
            picture = Image.fromarray(image)
            staged[destination] = write_staged(destination.parent, destination.name,
                                               lambda stream, picture=picture: picture.save(stream, format="PNG"))
        _move_together(staged)
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def _move_together(staged: Mapping[Path, Path]) -> None:
    moved: list[tuple[Path, Path | None]] = []  # (destination, what it held before, kept under a hidden name)
    try:
        for destination, temporary in staged.items():
            previous = _keep_previous(destination)
            try:
                os.replace(temporary, destination)
            except BaseException:
                if previous is not None:
                    previous.unlink(missing_ok=True)
                raise
            moved.append((destination, previous))
    except BaseException:
        for destination, previous in reversed(moved):
            if previous is None:
                destination.unlink(missing_ok=True)
            else:
                os.replace(previous, destination)
        raise
    for _, previous in moved:
        if previous is not None:
            previous.unlink(missing_ok=True)


def _keep_previous(destination: Path) -> Path | None:
    """A second name for the file at ``destination`` (a hard link, else a copy), so a rollback can restore it."""
    if not destination.is_file():
        return None
    keep = destination.parent / f".{destination.name}.{secrets.token_hex(8)}.previous"
    try:
        os.link(destination, keep)
    except OSError:  # a file system without hard links
        shutil.copy2(destination, keep)
    return keep


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
    from .config import ConfigError, check_num_steps, model_scheduler_config, preset, preset_name_for_model

    changes = dict(parse_override(item) for item in args.set or [])
    for flag, key in (("steps", "num_steps"), ("strength", "strength"), ("pbsi_timesteps", "pbsi_timesteps"),
                      ("iterations", "iterations"), ("lr", "learning_rate")):
        value = getattr(args, flag)
        if value is not None:
            changes[key] = value
    if args.no_lora:
        changes["lora"] = False
    try:
        config = preset(preset_name_for_model(args.model), args.preset).override(**changes)
        # A local model's scheduler bounds the steps now; a hub model's once loaded (editor.check_config).
        scheduler = model_scheduler_config(args.model)
        if scheduler is not None:
            check_num_steps(config, scheduler)
    except ConfigError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    return config


def load_model(name: str, device: str | None, bf16: bool):
    torch_device = _device(device) if device else None
    if not logging.getLogger().isEnabledFor(logging.INFO):
        _quiet_libraries()

    from .models import ModelLoadError, load_backbone

    try:
        return load_backbone(name, device=torch_device, autocast_bf16=bf16)
    except ModelLoadError as error:
        raise CliError(str(error)) from None


def _device(name: str):
    """The torch device ``--device`` names, if an edit can run on it here; else a one-line CliError.

    The name is checked before torch is imported, so a typo or ``meta`` (a device without data) is refused at once.
    """
    kind, _, index = name.partition(":")
    if kind not in RUNNABLE_DEVICE_TYPES or (index and not index.isdigit()):
        raise CliError(f"--device {name}: not a device an edit can run on; use cpu, cuda or cuda:N (or mps)",
                       EXIT_BAD_INPUT)
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):  # e.g. an index too large for torch
        raise CliError(f"--device {name}: not a device torch knows", EXIT_BAD_INPUT) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CliError(f"--device {name}: no CUDA device is available here; use --device cpu", EXIT_BAD_INPUT)
        if device.index is not None and device.index >= count:
            raise CliError(f"--device {name}: there are {count} CUDA device(s), numbered from 0", EXIT_BAD_INPUT)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CliError(f"--device {name}: MPS is not available here; use --device cpu", EXIT_BAD_INPUT)
    return device


def _make_deterministic_if_asked(args) -> None:
    if args.deterministic:
        from .determinism import make_deterministic

        make_deterministic(threads=1)


def command_edit(args) -> int:
    # 1. Validate everything the user typed before any model is resolved or loaded.
    try:
        request = load_instructions(args.instructions)
    except InstructionError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    inputs = request.files
    output = _output_path(args.output, "-o/--output", inputs=inputs)
    preview = _output_path(args.preview, "--preview", inputs=inputs) if args.preview else None
    if preview is not None and _same_file(preview, output):
        raise CliError("--preview: must differ from the output path", EXIT_BAD_INPUT)
    seed = _checked_seed(args.seed)
    config = _config_from_args(args)
    if args.device:
        _device(args.device)

    from .config import ConfigError
    from .editor import DragEditor
    from .visualize import draw_instructions, side_by_side

    # 2. Load the model and edit.
    _make_deterministic_if_asked(args)
    backbone = load_model(args.model, args.device, args.bf16)
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
        _write_pngs_together(pictures)
    except OSError as error:
        raise CliError(f"could not write the output: {error.strerror or error} ('{error.filename}'); nothing "
                       "was written") from None
    if not args.quiet:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        p = result.passes
        print(f"wrote {output} ({phases}; UNet passes: {p.forward} forward, {p.truncated_forward} truncated, "
              f"{p.backward} backward)")
    return 0


def command_demo(args) -> int:
    from .demo import run_demo

    # The default, out/demo.png, must work from a fresh clone: a missing folder is created, but only by
    # run_demo, right before it writes, so that a refused command leaves nothing behind.
    output = _output_path(args.output, "-o/--output", create_folders=True)
    if args.device:
        _device(args.device)
    _make_deterministic_if_asked(args)
    backbone = load_model(args.model, args.device, args.bf16)
    try:
        report = run_demo(backbone, output, progress=None if args.quiet else PhaseBars())
    except OSError as error:
        raise CliError(f"could not write the output: {error.strerror or error} ('{error.filename}')") from None
    print(report)
    return 0


def _click(text: str) -> tuple[float, float]:
    """argparse type of ``--click X,Y``."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (pixels), got '{text}'") from None


def command_region(args) -> int:
    from .limits import read_image
    from .selection import select_region

    try:
        image = read_image(Path(args.image), "image", "RGB")
        output = _output_path(args.output, "-o/--output", inputs=[Path(args.image)])
        mask = select_region(image, args.click, args.unclick or (), tolerance=args.tolerance)
    except InstructionError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    try:
        _write_pngs_together({output: (mask * 255).astype("uint8")})
    except OSError as error:
        raise CliError(f"could not write the mask: {error.strerror or error}") from None
    print(f"wrote {output}: {int(mask.sum())} pixels, {mask.mean():.1%} of the image")
    return 0


def command_train_bundled(args) -> int:
    from .models.training import TrainConfig, train_bundled

    def progress(step: int, seconds: float, loss: float) -> None:
        if step % 250 == 0:
            print(f"step {step}  {seconds:.0f} s  loss {loss:.4f}", flush=True)

    train_bundled(Path(args.out_dir), TrainConfig(minutes=args.minutes, seed=_checked_seed(args.seed)), progress)
    return 0


def _add_model_flags(parser: argparse.ArgumentParser, default_model: str) -> None:
    parser.add_argument("--model", default=default_model,
                        help="'bundled', a local diffusers folder, or a hub id of Stable Diffusion 1.x/2.x "
                             f"(default: {default_model})")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present, else cpu)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast of the UNet on CPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--deterministic", action="store_true",
                        help="one torch thread and deterministic algorithms: the same seed gives the same bytes "
                             "on this machine (see dragnext.determinism)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dragnext", description="Region-based drag editing with diffusion models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    commands = parser.add_subparsers(dest="command", required=True)

    edit = commands.add_parser("edit", help="edit an image as an instruction file says")
    edit.add_argument("instructions", help="instruction JSON (see README, 'Editing an image')")
    edit.add_argument("-o", "--output", required=True, help="edited image, PNG")
    edit.add_argument("--preview", help="also write input-with-instructions | output side by side, PNG")
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
    _add_model_flags(edit, "stable-diffusion-v1-5/stable-diffusion-v1-5")
    edit.set_defaults(run=command_edit)

    demo = commands.add_parser("demo", help="translate and rotate bundled scenes; writes out/demo.png")
    demo.add_argument("-o", "--output", default="out/demo.png")
    _add_model_flags(demo, "bundled")
    demo.set_defaults(run=command_demo)

    from .selection import DEFAULT_TOLERANCE

    region = commands.add_parser(
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
        return EXIT_INTERRUPTED


def _quiet_libraries() -> None:
    """Loading bars and warnings of diffusers/transformers are noise to a CLI user (``-v`` shows them)."""
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
