"""What every ``dragnext`` command shares: exit statuses, the one-line error and its printer, the model flags,
settings from flags, progress bars.

Nothing here imports torch or diffusers at module level: ``dragnext --help`` and input errors stay fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
from collections.abc import Callable

from ..config import SEED_LIMIT

EXIT_FAILURE = 1  # a model that cannot be loaded, an edit or a write that fails
EXIT_BAD_INPUT = 2  # anything the user typed or named that cannot work; refused before any model loads
EXIT_SOME_FAILED = 3  # bench and convert: some samples failed, the others are done; the failures are listed
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl+C

# The torch device types an edit runs on; others (meta: no data; xla, hpu, ...: never tried) are refused.
RUNNABLE_DEVICE_TYPES = ("cpu", "cuda", "mps")


class CliError(Exception):
    """A problem to report as one line, ``dragnext: error: <message>``, and the exit status that goes with it."""

    def __init__(self, message: str, status: int = EXIT_FAILURE):
        super().__init__(message)
        self.status = status


def print_error(text: str) -> None:
    """The one way the CLI reports a problem: ``dragnext: <text>`` on a line of stderr."""
    print(f"dragnext: {text}", file=sys.stderr)


def reports_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command's ``run``: a :class:`CliError` it raises becomes its printed line and its exit status."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CliError as error:
            print_error(f"error: {error}")
            return error.status

    return run


# --------------------------------------------------------------------------------------------------------
# Flags


def add_model_flags(parser: argparse.ArgumentParser, default_model: str = "bundled") -> None:
    """``--model``, ``--device``, ``--bf16``: the model a command loads (with :func:`load_model`), and where."""
    parser.add_argument("--model", default=default_model,
                        help="'bundled', a local diffusers folder, or a hub id of Stable Diffusion 1.x/2.x "
                             f"(v-prediction included) or XL (default: {default_model})")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present, else cpu)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast of the UNet on CPU")


def add_quiet_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_edit_flags(parser: argparse.ArgumentParser, default_model: str) -> None:
    """The flags of a command that edits with one model (``edit``, ``demo``): the model flags, ``--quiet`` and
    ``--deterministic``; :func:`load_model_as_asked` follows them."""
    add_model_flags(parser, default_model)
    add_quiet_flag(parser)
    parser.add_argument("--deterministic", action="store_true",
                        help="one torch thread and deterministic algorithms: the same seed gives the same bytes "
                             "on this machine (see dragnext.determinism)")


# --------------------------------------------------------------------------------------------------------
# Settings from flags


def checked_seed(seed: int) -> int:
    if not 0 <= seed < SEED_LIMIT:
        raise CliError(f"--seed: {seed} is not in [0, 2**63)", EXIT_BAD_INPUT)
    return seed


def parse_override(text: str):
    """``--set KEY=VALUE`` -> ``(key, value)``, the value of the type of the :class:`EditConfig` setting."""
    from ..config import EditConfig

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


def config_from_args(args: argparse.Namespace):
    """The settings of an edit: the model's ``--preset``, then ``--set``, then the named flags (``--steps``, ...)."""
    from ..config import ConfigError, check_model_parts, check_num_steps, preset
    from ..models.resolve import model_scheduler_config, model_unet_outline


    changes = dict(parse_override(item) for item in args.set or [])
    for flag, key in (("steps", "num_steps"), ("strength", "strength"), ("pbsi_timesteps", "pbsi_timesteps"),
                      ("iterations", "iterations"), ("lr", "learning_rate")):
        value = getattr(args, flag)
        if value is not None:
            changes[key] = value
    if args.no_lora:
        changes["lora"] = False
    resolved = resolved_model(args)
    try:
        config = preset(resolved.preset, args.preset).override(**changes)
        # A local model's scheduler bounds the steps now; a hub model's once loaded (editor.check_config).
        scheduler = model_scheduler_config(resolved)
        if scheduler is not None:
            check_num_steps(config, scheduler)
        outline = model_unet_outline(resolved)
        if outline is not None:  # the feature blocks and attention layers, from the UNet's config
            check_model_parts(config, outline.has_block, outline.up_blocks, outline.self_attention_layers)
    except ConfigError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    return config


# --------------------------------------------------------------------------------------------------------
# The model


def resolved_model(args: argparse.Namespace):
    """What ``--model`` names (``models.resolve_model``: its kind and preset, from its folder), decided once per
    command and kept on ``args``: the settings are chosen from it and the same model is then loaded."""
    from ..models.resolve import ModelLoadError, check_model_path, resolve_model

    resolved = getattr(args, "resolved_model", None)
    if resolved is None or resolved.spec != args.model:
        try:  # a file given as --model, or a folder with a malformed config: refused before torch loads
            check_model_path(args.model)
        except ModelLoadError as error:
            raise CliError(str(error), EXIT_BAD_INPUT) from None
        resolved = args.resolved_model = resolve_model(args.model)
    return resolved


def load_model_as_asked(args: argparse.Namespace):
    """The model of :func:`add_edit_flags`: ``--device`` checked, then ``--deterministic`` applied, then loaded."""
    if args.device:
        check_device(args.device)
    if args.deterministic:
        from ..determinism import make_deterministic

        make_deterministic(threads=1)
    return load_model(resolved_model(args), args.device, args.bf16)


def load_model(name, device: str | None, bf16: bool):
    """The backbone ``--model`` (a name or a ``ResolvedModel``), ``--device`` and ``--bf16`` name, or a one-line
    :class:`CliError`."""
    from ..models import ModelLoadError, load_backbone
    from ..models.resolve import check_model_path

    if isinstance(name, str):  # a ResolvedModel comes from resolved_model(), which checked its path
        try:
            check_model_path(name)  # before torch and the libraries load: a malformed folder costs no import
        except ModelLoadError as error:
            raise CliError(str(error), EXIT_BAD_INPUT) from None
    torch_device = check_device(device) if device else None
    if not logging.getLogger().isEnabledFor(logging.INFO):
        _quiet_libraries()

    try:
        return load_backbone(name, device=torch_device, autocast_bf16=bf16)
    except ModelLoadError as error:
        raise CliError(str(error)) from None


def check_device(name: str):
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


def _quiet_libraries() -> None:
    """Loading bars and warnings of diffusers/transformers are noise to a CLI user (``-v`` shows them)."""
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        # CRITICAL, not ERROR: diffusers logs a failed hub fetch at error level before raising, and the CLI
        # already says what went wrong in its own one line
        library.utils.logging.set_verbosity(logging.CRITICAL)
        library.utils.logging.disable_progress_bar()


# --------------------------------------------------------------------------------------------------------
# Progress


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
