"""Edit settings: one frozen dataclass shared by the API, the CLI, the UI and the benchmark, and a preset per backbone.

The defaults are the paper's (DragNeXt, arXiv 2506.07611, Sec. 5 "Implementation details", for Stable
Diffusion 1.5). They do not transfer to a small pixel-space model: the ``bundled`` preset records what we
measured on the bundled model instead. Every setting can be overridden with ``dataclasses.replace`` or
``EditConfig.override(**changes)``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STARTS = ("unedited", "moved")
FILLS = ("harmonic", "nearest", "none")  # see transport.py
DEFORMATIONS = ("field", "translate")  # see geometry.py
LOSS_TARGETS = ("warped-features", "start", "by-type")
ETA_SPANS = ("all", "per_timestep")

# Upper bounds of the settings that decide how long an edit runs or whether its numbers stay finite: far above
# any useful value (the paper: 50 steps, 10 iterations, lr 0.02, lambda 0.1, 80 LoRA steps of rank 16), low
# enough that a typo cannot occupy a machine for days or turn the latent into infinities (lr=inf: a black image).
MAX_NUM_STEPS = 1000  # the training timesteps of SD 1.x/2.x and the bundled model; each model's own: max_num_steps
MAX_ITERATIONS = 1000  # Adam steps per optimised timestep
MAX_LEARNING_RATE = 1.0  # Adam moves each value by about lr per step; latents are of unit scale
MAX_LOSS_WEIGHT = 1000.0  # lambda_editable: 10^4 times the paper's 0.1
MAX_LORA_RANK = 1024
MAX_LORA_STEPS = 10_000
MAX_EDITABLE_RADIUS = 4096  # pixels; a radius past the image's sides already covers all of it
MAX_ATTENTION_LAYER = 1000  # self-attention layers of a UNet: SDXL has 70; the model's own count: check_config
SEED_LIMIT = 2**63  # seeds are in [0, 2**63): a non-negative signed 64-bit integer, which every consumer takes

BUNDLED_DIR = Path(__file__).resolve().parent / "models" / "bundled"  # the model shipped with the package
# The Stable Diffusion model of `dragnext edit` and StableDiffusionBackbone.from_pretrained when none is named;
# here rather than in models/ so that the CLI can show it without importing torch.
DEFAULT_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"


class ConfigError(ValueError):
    """A setting that cannot work (with this model); the message is one line naming the setting."""


# --------------------------------------------------------------------------------------------------------
# Checks of single settings (EditConfig.__post_init__)


def _quote(value: Any) -> str:
    """The value for a message, cut short: a 400-digit integer must not flood the terminal."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _check_integer(name: str, value: Any, low: int, high: int | None, *, none_allowed: bool = False) -> None:
    """``high`` None: no upper bound here (the model sets it, in ``editor.check_config``)."""
    integer = not isinstance(value, bool) and isinstance(value, numbers.Integral)
    if not (integer and low <= value and (high is None or value <= high)):
        interval = f">= {low}" if high is None else f"in [{low}, {high}]"
        alternative = " or None" if none_allowed else ""
        raise ConfigError(f"EditConfig: {name} must be an integer {interval}{alternative}, got {_quote(value)}")


def _check_real(name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
                none_allowed: bool = False) -> None:
    number = not isinstance(value, bool) and isinstance(value, numbers.Real) and _is_finite(value)
    above = number and (value > low if low_open else value >= low)
    below = number and (value < high if high_open else value <= high)
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        alternative = " or None" if none_allowed else ""
        raise ConfigError(f"EditConfig: {name} must be a finite number in {interval}{alternative}, got {_quote(value)}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"EditConfig: {name} must be one of {', '.join(choices)}, got {_quote(value)}")


@dataclass(frozen=True)
class EditConfig:
    # --- DDIM inversion and sampling
    num_steps: int = 50  # DDIM steps of the full schedule (paper, as DragDiffusion)
    strength: float = 0.75  # share of the schedule inverted: round(50 * 0.75) = 38 -> start at t = 38 (paper)
    # There is no guidance_scale: classifier-free guidance breaks DDIM inversion (DragDiffusion), so none is applied.

    # --- Latent Region Optimisation solved by PBSI
    pbsi_timesteps: int = 5  # timesteps optimised, T = 38 down to T' = 33 (paper)
    iterations: int = 10  # K Adam steps per timestep (paper)
    learning_rate: float = 2e-2  # Adam lr on the latent (paper)
    lambda_editable: float = 0.1  # weight of the editable-mask term ||(z - z_ref)(1 - M)||_1 (as DragDiffusion)
    hard_mask: bool = False  # zero the gradient outside the editable mask (ours; the paper relies on lambda alone)
    progressive: bool = True  # intermediate states; False = eta is 1 from the first iteration (ablation)
    # eta rises over *all* PBSI iterations (k / (K * timesteps)), reaching exactly 1 at the very last one: the
    # latent carried to the next timestep already holds the partial move, so restarting eta at each timestep
    # would pull the region back. "per_timestep" restarts it (the other reading of the paper).
    eta_span: str = "all"
    feature_blocks: tuple[str, ...] = ("up_blocks.1", "up_blocks.2")  # UNet blocks whose outputs form F (DragDiffusion)
    feature_scale: float | None = 0.5  # F resized to this fraction of the image size: half (paper); None = each
    # block at its native resolution, no resize (ours: the resize made a truncated pass cost a full one at 512 px)

    # --- Engine v2 (ours): start from the moved content, then optimise for coherence
    # Where the edit starts: "unedited", the inverted latent (paper), or "moved": every region's inverted latent
    # moved to its target pose (as RegionDrag and FastDrag do) and the area it vacates filled (``fill``).
    start: str = "unedited"
    fill: str = "none"  # what fills the area the regions vacate: "harmonic", "nearest" (FastDrag) or "none"
    deformation: str = "translate"  # deform drags: "translate" a part (paper) or a displacement "field" (ours)
    # The region term's targets: the unedited features warped to the moved region (paper); the features of the
    # moved, filled latent at each optimised timestep ("start": features are not rotation-equivariant, so warped
    # features misjudge rotations); or "by-type": warped features for translations, the moved latent's for the rest
    loss_target: str = "warped-features"
    # A timestep's iterations stop once the loss improved by less than this fraction over the last 3; 0 = never.
    early_stop: float = 0.0

    # --- Denoising with mutual self-attention (MasaCtrl)
    mutual_attention: bool = True  # the edited branch reads keys/values of the reference branch (paper)
    mutual_attention_start_layer: int = 10  # 1-based index of the first self-attention layer that does (paper)
    mutual_attention_start_step: int = 0  # first denoising step that does, 0 = all (DragDiffusion)

    # --- Identity-preserving LoRA (DragDiffusion's recipe, which the paper follows)
    lora: bool = True
    lora_rank: int = 16
    lora_steps: int = 80
    lora_learning_rate: float = 5e-4

    # --- Editable area when the request gives none
    # None: everything may change (paper). N: the regions swept by the moves (eta = 0, 1/4, ..., 1), grown by
    # N pixels (ours): keeps PBSI and the paste-back local when a user paints no editable mask.
    auto_editable_radius: int | None = None

    # --- Output
    paste_outside_editable: bool = True  # pixels outside the editable mask are copied from the input

    def override(self, **changes) -> EditConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown EditConfig setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        # 1. Each setting alone: its type, finite, in range. First, because what follows derives from these
        # numbers (inversion_steps rounds num_steps * strength, which fails on NaN and infinity).
        _check_integer("num_steps", self.num_steps, 1, MAX_NUM_STEPS)
        _check_real("strength", self.strength, 0.0, 1.0, low_open=True)
        _check_integer("pbsi_timesteps", self.pbsi_timesteps, 0, MAX_NUM_STEPS)
        _check_integer("iterations", self.iterations, 1, MAX_ITERATIONS)
        _check_real("learning_rate", self.learning_rate, 0.0, MAX_LEARNING_RATE, low_open=True)
        _check_real("lambda_editable", self.lambda_editable, 0.0, MAX_LOSS_WEIGHT)
        _check_choice("eta_span", self.eta_span, ETA_SPANS)
        if (not isinstance(self.feature_blocks, tuple) or not self.feature_blocks
                or not all(isinstance(block, str) and block for block in self.feature_blocks)):
            raise ConfigError(f"EditConfig: feature_blocks must be a tuple of one or more block names like "
                              f"'up_blocks.1', got {_quote(self.feature_blocks)}")
        if self.feature_scale is not None:
            _check_real("feature_scale", self.feature_scale, 0.0, 1.0, low_open=True, none_allowed=True)
        _check_choice("start", self.start, STARTS)
        _check_choice("fill", self.fill, FILLS)
        _check_choice("deformation", self.deformation, DEFORMATIONS)
        _check_choice("loss_target", self.loss_target, LOSS_TARGETS)
        _check_real("early_stop", self.early_stop, 0.0, 1.0, high_open=True)
        # at most the model's number of self-attention layers: editor.check_config; this bound is for any model
        _check_integer("mutual_attention_start_layer", self.mutual_attention_start_layer, 1, MAX_ATTENTION_LAYER)
        _check_integer("mutual_attention_start_step", self.mutual_attention_start_step, 0, MAX_NUM_STEPS)
        _check_integer("lora_rank", self.lora_rank, 1, MAX_LORA_RANK)
        _check_integer("lora_steps", self.lora_steps, 0, MAX_LORA_STEPS)
        _check_real("lora_learning_rate", self.lora_learning_rate, 0.0, MAX_LEARNING_RATE, low_open=True)
        if self.auto_editable_radius is not None:
            _check_integer("auto_editable_radius", self.auto_editable_radius, 0, MAX_EDITABLE_RADIUS,
                           none_allowed=True)
        for name in ("hard_mask", "progressive", "mutual_attention", "lora", "paste_outside_editable"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"EditConfig: {name} must be true or false, got {_quote(getattr(self, name))}")

        # 2. Settings together.
        if self.inversion_steps < 1:
            raise ConfigError(f"EditConfig: strength {self.strength} of {self.num_steps} steps inverts no step; "
                              "raise strength or num_steps")
        if self.pbsi_timesteps > self.inversion_steps:
            raise ConfigError(f"EditConfig: pbsi_timesteps ({self.pbsi_timesteps}) exceeds the inverted steps "
                              f"(round(num_steps x strength) = {self.inversion_steps})")

    def feature_size(self, image_size: tuple[int, int]) -> tuple[int, int] | None:
        """(height, width) of the feature maps F for an image of ``image_size`` (height, width); None: native."""
        if self.feature_scale is None:
            return None
        return (max(1, round(image_size[0] * self.feature_scale)), max(1, round(image_size[1] * self.feature_scale)))

    @property
    def inversion_steps(self) -> int:
        return round(self.num_steps * self.strength)


PAPER = EditConfig()

# Engine v2 (ours) on top of a backbone's settings: every region starts at its target pose with the vacated area
# filled, then region optimisation holds the edit to that moved trajectory (docs/method.md, docs/benchmarks.md).
ENGINE_V2 = {
    "start": "moved",
    "fill": "harmonic",
    "deformation": "field",
    "loss_target": "start",
    "progressive": False,  # the region is already at its target pose: no intermediate states to pass through
    # Two timesteps of 5 iterations hold the edited branch to the moved trajectory. On the bundled model this
    # neither helped nor hurt (docs/benchmarks.md); it stays for the seams a latent paste leaves on real images.
    "pbsi_timesteps": 2,
    "iterations": 5,
    "feature_scale": None,  # features at their native resolutions: no resize
    "num_steps": 25,  # on the bundled model +0.022 IoU, +1.6 dB and 1.6x faster than 50 (docs/benchmarks.md)
}

# The bundled pixel-space model, paper-style settings measured on it (docs/bundled-model.md): engine v1's preset.
_BUNDLED_MODEL = dict(
    # v2 starts from the moved content, so less noise is needed to blend it in: on 40 edits outside the suite
    # (scripts/compare_settings.py --per-type 5) 0.3 scored IoU 0.943 / 38.9 dB against 0.930 / 37.4 at 0.5
    strength=0.3,
    hard_mask=True,  # without it Adam nudges every pixel of a pixel-space latent
    feature_blocks=("up_blocks.0", "up_blocks.1", "up_blocks.2", "up_blocks.3"),  # last blocks alone ~ noise
    mutual_attention_start_layer=3,  # the model has 7 self-attention layers; 3 = from the middle block on
    lora=False,  # a model trained on these scenes reconstructs them without one
    auto_editable_radius=3,  # scenes come without an editable mask; 3 px covers the anti-aliased edges
)
BUNDLED = EditConfig(**_BUNDLED_MODEL, **ENGINE_V2)
STABLE_DIFFUSION = PAPER.override(**ENGINE_V2)

# Stable Diffusion XL (base 1.0): the paper's recipe, with the settings that name parts of the UNet moved to where
# SDXL has them. Its native side, 1024 px, is not a setting: the working size is read from the model (the UNet's
# sample_size 128 x the VAE's factor 8, models.resolve.native_resolution), as SD 1.x's 512 and SD 2.x-v's 768 are.
_SDXL_MODEL = dict(
    # SDXL's UNet has 3 levels, so 3 up blocks (SD 1.5: 4). up_blocks.0 and up_blocks.1 end at 1/2 and 1/1 of the
    # latent side (64 and 128 at 1024 px): the resolutions of SD 1.5's up_blocks.1 and up_blocks.2 (32 and 64 at
    # 512 px), the paper's and DragDiffusion's features. up_blocks.2 has no attention and no upsampler.
    feature_blocks=("up_blocks.0", "up_blocks.1"),
    # 70 self-attention layers (transformer depths 1/2/10: down 4 + 20, mid 10, up 30 + 6; SD 1.5 has 16).
    # MasaCtrl's SDXL script (TencentARC/MasaCtrl run_synthesis_sdxl.py, model_type "SDXL" = 70 layers) starts
    # mutual attention at layer 44, the first of the three it tries (44, 54, 64), as its SD setting is the 10 of
    # 16 that the paper (and our SD preset) take over: from inside the decoder's lowest-resolution block on.
    mutual_attention_start_layer=44,
)
STABLE_DIFFUSION_XL = PAPER.override(**_SDXL_MODEL, **ENGINE_V2)

# Per backbone (models.resolve.KINDS): the default (engine v2) and "paper", the paper's settings exactly, except the
# settings that name parts of the model where the paper's do not exist in it (the bundled UNet has 7 self-attention
# layers, not 16; SDXL's has 3 up blocks). SD 2.x (epsilon or v-prediction) has SD 1.x's UNet layout and uses its
# presets; the prediction type and the native side come from the model's own configs.
PRESET_NAMES = ("default", "paper")
PRESETS: dict[str, dict[str, EditConfig]] = {
    "stable-diffusion": {"default": STABLE_DIFFUSION, "paper": PAPER},
    "stable-diffusion-xl": {"default": STABLE_DIFFUSION_XL, "paper": PAPER.override(**_SDXL_MODEL)},
    "bundled": {"default": BUNDLED, "paper": PAPER.override(mutual_attention_start_layer=3)},
}

# --fast (`dragnext bench --fast`, the UI's hidden --fast of its browser test): few steps, for smoke tests and
# trying things out, applied over a preset; rougher than the preset's results.
FAST_SETTINGS: dict[str, Any] = {"num_steps": 20, "iterations": 3, "lora_steps": 8}


def preset(backbone_name: str, name: str = "default") -> EditConfig:
    if name not in PRESET_NAMES:
        raise ConfigError(f"--preset: unknown preset {name!r}; known: {', '.join(PRESET_NAMES)}")
    try:
        return PRESETS[backbone_name][name]
    except KeyError:
        raise ConfigError(f"no preset for backbone {backbone_name!r}; known: {', '.join(PRESETS)}") from None


def check_seed(seed: Any) -> int:
    """The seed of an edit as an int; a ConfigError unless it is an integer in [0, 2**63)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"seed: must be an integer in [0, 2**63), got {_quote(seed)}")
    return int(seed)


def max_num_steps(scheduler_config: Mapping[str, Any]) -> int:
    """The most DDIM steps a model's scheduler can take: each timestep must be below its training timesteps.

    diffusers refuses more steps than training timesteps, but with ``steps_offset`` (1 in SD 1.x/2.x) and
    "leading" spacing the schedule of exactly that many steps reaches timestep 1000 of 1000 and fails with an
    IndexError mid-edit; so the bound is computed from the schedule's largest timestep, as DDIMScheduler does."""
    train_steps = scheduler_config.get("num_train_timesteps", 1000)
    offset = scheduler_config.get("steps_offset", 0)
    if scheduler_config.get("timestep_spacing", "leading") != "leading":
        return train_steps
    return max((n for n in range(1, train_steps + 1) if (n - 1) * (train_steps // n) + offset < train_steps),
               default=0)


def check_num_steps(config: EditConfig, scheduler_config: Mapping[str, Any]) -> None:
    """num_steps within what the model's scheduler can take (see ``max_num_steps``)."""
    limit = max_num_steps(scheduler_config)
    if config.num_steps > limit:
        raise ConfigError(f"num_steps: {config.num_steps} is more than this model's scheduler can take ({limit}: "
                          f"{scheduler_config.get('num_train_timesteps')} training timesteps)")


def preset_name_for_model(model: str) -> str:
    """The preset a ``--model`` value will use: ``dragnext.models.resolve_model(model).preset``, which reads the
    model's folder (models/ is the one place that knows folder layouts; this stays for older callers)."""
    from .models.resolve import resolve_model

    return resolve_model(model).preset


def check_model_parts(config: EditConfig, has_block: Callable[[str], bool], up_blocks: Sequence[str],
                      self_attention_layers: int | None) -> None:
    """The feature blocks and the mutual-attention start layer against a UNet's parts: its modules once loaded
    (``editor.check_config``), or its config before (``models.resolve.unet_outline``, from the CLI)."""
    for block in config.feature_blocks:
        if not has_block(block):
            raise ConfigError(f"feature_blocks: the UNet has no block {_quote(block)}; it has {', '.join(up_blocks)}")
    layers = self_attention_layers
    if layers is not None and config.mutual_attention and config.mutual_attention_start_layer > layers:
        raise ConfigError(f"mutual_attention_start_layer: {config.mutual_attention_start_layer} is past the "
                          f"UNet's {layers} self-attention layers")


# What the baselines change on the settings they are given (``baselines.py`` applies them; ``bench/methods.py``
# shows them in reports). Here, with no torch, so that a benchmark's methods are checked before anything loads.
IDENTITY_SETTINGS = {"start": "unedited", "pbsi_timesteps": 0, "mutual_attention": False}
WARP_SETTINGS = {"start": "moved", "pbsi_timesteps": 0}
COPY_SETTINGS = {**WARP_SETTINGS, "fill": "none", "deformation": "translate"}
POINT_SETTINGS = {"start": "unedited", "pbsi_timesteps": 1}
