"""Edit settings: one frozen dataclass shared by the API, the CLI, the UI and the benchmark, and a preset per backbone.

The defaults are the paper's (DragNeXt, arXiv 2506.07611, Sec. 5 "Implementation details", for Stable
Diffusion 1.5). They do not transfer to a small pixel-space model: the ``bundled`` preset records what we
measured on the bundled model instead. Every setting can be overridden with ``dataclasses.replace`` or
``EditConfig.override(**changes)``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

STARTS = ("unedited", "moved")
FILLS = ("harmonic", "nearest", "none")  # see transport.py
DEFORMATIONS = ("field", "translate")  # see geometry.py
LOSS_TARGETS = ("warped-features", "start", "by-type")


class ConfigError(ValueError):
    """A setting that cannot work (with this model); the message is one line naming the setting."""


@dataclass(frozen=True)
class EditConfig:
    # --- DDIM inversion and sampling
    num_steps: int = 50  # DDIM steps of the full schedule (paper, as DragDiffusion)
    strength: float = 0.75  # share of the schedule inverted: round(50 * 0.75) = 38 -> start at t = 38 (paper)
    guidance_scale: float = 1.0  # no classifier-free guidance, which breaks DDIM inversion (DragDiffusion)

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
        checks = [
            (self.num_steps >= 1, "num_steps must be at least 1"),
            (0.0 < self.strength <= 1.0, "strength must be in (0, 1]"),
            (self.pbsi_timesteps >= 0, "pbsi_timesteps must be >= 0"),
            (self.pbsi_timesteps <= round(self.num_steps * self.strength), "pbsi_timesteps exceeds the inverted steps"),
            (self.iterations >= 1, "iterations must be at least 1"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.eta_span in ("all", "per_timestep"), "eta_span must be 'all' or 'per_timestep'"),
            (len(self.feature_blocks) > 0, "feature_blocks must name at least one block"),
            (self.feature_scale is None or 0 < self.feature_scale <= 1, "feature_scale must be in (0, 1] or None"),
            (self.start in STARTS, f"start must be one of {', '.join(STARTS)}"),
            (self.fill in FILLS, f"fill must be one of {', '.join(FILLS)}"),
            (self.deformation in DEFORMATIONS, f"deformation must be one of {', '.join(DEFORMATIONS)}"),
            (self.loss_target in LOSS_TARGETS, f"loss_target must be one of {', '.join(LOSS_TARGETS)}"),
            (0.0 <= self.early_stop < 1.0, "early_stop must be in [0, 1)"),
            (self.mutual_attention_start_layer >= 1, "mutual_attention_start_layer is 1-based"),
            (self.lora_rank >= 1 and self.lora_steps >= 0, "lora_rank must be >= 1 and lora_steps >= 0"),
            (self.auto_editable_radius is None or self.auto_editable_radius >= 0, "auto_editable_radius must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"EditConfig: {message}")

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
    strength=0.5,  # shapes keep their edges; 0.75 re-draws too much of a 64 px scene
    hard_mask=True,  # without it Adam nudges every pixel of a pixel-space latent
    feature_blocks=("up_blocks.0", "up_blocks.1", "up_blocks.2", "up_blocks.3"),  # last blocks alone ~ noise
    mutual_attention_start_layer=3,  # the model has 7 self-attention layers; 3 = from the middle block on
    lora=False,  # a model trained on these scenes reconstructs them without one
    auto_editable_radius=3,  # scenes come without an editable mask; 3 px covers the anti-aliased edges
)
BUNDLED = EditConfig(**_BUNDLED_MODEL, **ENGINE_V2)
STABLE_DIFFUSION = PAPER.override(**ENGINE_V2)

# Per backbone: the default (engine v2) and "paper", the paper's settings exactly, except the settings that name
# parts of the model where the paper's do not exist in it (the bundled UNet has 7 self-attention layers, not 16).
PRESET_NAMES = ("default", "paper")
PRESETS: dict[str, dict[str, EditConfig]] = {
    "stable-diffusion": {"default": STABLE_DIFFUSION, "paper": PAPER},
    "bundled": {"default": BUNDLED, "paper": PAPER.override(mutual_attention_start_layer=3)},
}


def preset(backbone_name: str, name: str = "default") -> EditConfig:
    if name not in PRESET_NAMES:
        raise ConfigError(f"--preset: unknown preset {name!r}; known: {', '.join(PRESET_NAMES)}")
    try:
        return PRESETS[backbone_name][name]
    except KeyError:
        raise ConfigError(f"no preset for backbone {backbone_name!r}; known: {', '.join(PRESETS)}") from None


def preset_name_for_model(model: str) -> str:
    """The preset a ``--model`` value will use, decided without loading anything (so settings fail fast)."""
    if model == "bundled":
        return "bundled"
    config = Path(model).expanduser() / "unet" / "config.json"
    try:
        if json.loads(config.read_text()).get("_class_name") == "UNet2DModel":
            return "bundled"
    except (OSError, ValueError):
        pass
    return "stable-diffusion"
