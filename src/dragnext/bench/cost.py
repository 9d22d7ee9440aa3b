"""``bench --cost-only``: the cost of our recipes against DragDiffusion's, on a UNet with random weights.

Compute does not depend on the weights, so a ``UNet2DConditionModel`` built in code from Stable Diffusion 1.5's
config with random initialisation, at 512 x 512 (latent 64 x 64), costs what SD-1.5 costs, and nothing is
downloaded (``--backbone sdxl``: SDXL base's UNet at 1024 x 1024, latent 128 x 128, with SDXL's presets). The
UNet comes from ``models.factory`` and runs through the backbones' own UNet call, feature hooks and LoRA step.
Rather than run the recipes in full, each *kind* of UNet pass is timed ``repeats`` times (after one warm-up) and
multiplied by how many of that kind each recipe spends per edit:

- ``forward``: a plain forward, batch 1 (DDIM inversion; DragDiffusion's reference forward at the drag step);
- ``forward_pair``: a forward of the batch [reference, edited] with mutual self-attention (denoising);
- ``features`` / ``features_native``: a forward stopped after the last feature block, the maps resized to the
  paper's half image side / left at their native resolutions (a region-optimisation target);
- ``features_backward`` / ``features_backward_native``: that, with the gradient to the latent (one iteration);
- ``forward_backward``: one DragDiffusion drag iteration: a full forward (its code runs the whole UNet, for the
  features and for the DDIM step of its mask term; tracking reuses it), its feature map (on SD ``up_blocks.2``'s
  output resized to half the image side, ``CostBackbone.dragdiffusion_block``), and the gradient of both to the
  latent;
- ``lora_step``: one step of the identity LoRA (``LatentUNetBackbone.lora_step``: forward, backward to the
  rank-r LoRA, AdamW).

Recipes per edit (:func:`recipe_counts`): ``v2`` (the backbone's default preset, engine v2), ``v2-cached-lora``
(its LoRA loaded from the cache: no LoRA steps), ``v2-no-lora``, ``paper`` (its paper preset) and
``dragdiffusion`` (80 LoRA steps, 38 + 1 ``forward``, 80 ``forward_backward``, its maximum: it stops early once
every handle has arrived, so this is its worst case; 38 ``forward_pair``). The drag phase is the region
optimisation (``features*`` kinds) or DragDiffusion's drag iterations.

Not timed, the same in all: VAE encoding/decoding, the text encoder, scheduler arithmetic, Python overhead (and
v2's latent move and fill, tensor arithmetic on a 64 x 64 latent).
Peak memory per kind, weights included: ``torch.cuda.max_memory_allocated`` on CUDA; on a CPU the process's peak
RSS, reset before each kind where Linux allows it (``memory.reset_peak_rss``), else not reported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..attention import MutualAttentionSwitch, installed_processors, mutual_attention_processors
from ..baselines import DRAGDIFFUSION, PointSettings
from ..config import PAPER, EditConfig, preset
from ..models.factory import ARCHITECTURES, UNetOnlyBackbone, build_unet_backbone
from .memory import peak_rss_mb, reset_peak_rss

__all__ = ["BACKBONES", "CostReport", "KINDS", "build_unet_backbone", "cost_comparison", "recipe_counts", "repriced"]

VAE_FACTOR = 8  # SD's and SDXL's VAEs downsample by 8
DRAGDIFFUSION_LORA_STEPS = 80  # DragDiffusion's published LoRA recipe
DRAGDIFFUSION_FEATURE_SCALE = 0.5


@dataclass(frozen=True)
class CostBackbone:
    """What ``--backbone`` sets: the presets priced, the default UNet and image side, DragDiffusion's feature block."""

    preset: str  # config.PRESETS key
    unet: str  # models.factory architecture
    image_size: int  # the model's native side
    # DragDiffusion's unet_feature_idx = [3] counts the mid block as 0, so on SD it is the third up block's output
    # (latent resolution), resized to half the image side (sup_res = 0.5 * full size). On SDXL, whose UNet has 3
    # up blocks, the block at the same resolution (latent side) with attention is up_blocks.1.
    dragdiffusion_block: str


BACKBONES = {
    "sd": CostBackbone("stable-diffusion", "sd15", 512, "up_blocks.2"),
    "sdxl": CostBackbone("stable-diffusion-xl", "sdxl", 1024, "up_blocks.1"),
}
KINDS = ("forward", "forward_pair", "features", "features_backward", "features_native", "features_backward_native",
         "forward_backward", "lora_step")
DRAG_KINDS = ("features", "features_backward", "features_native", "features_backward_native", "forward_backward")
REFERENCE = "dragdiffusion"  # the recipe every other one is compared with


def unet_config(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """(label, config dict) for an architecture of ``models.factory`` (sd15, sdxl, tiny, tiny-sdxl, ...) or a JSON
    file of ``UNet2DConditionModel`` config."""
    if name_or_path in ARCHITECTURES:
        return name_or_path, dict(ARCHITECTURES[name_or_path].unet)
    path = Path(name_or_path)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"--cost-unet: '{name_or_path}' is not one of {', '.join(ARCHITECTURES)} or a readable "
                         f"JSON config ({error})") from None
    return path.name, {key: value for key, value in loaded.items() if not key.startswith("_")}


@dataclass
class PassCost:
    seconds: float  # wall seconds per pass (mean of the timed repeats)
    peak_mb: float | None  # peak during the kind, weights included (see the module docstring); None if unknown


def default_recipes(backbone: str = "sd") -> dict[str, EditConfig]:
    """Our recipes by name on ``backbone`` (:data:`BACKBONES`): engine v2 (with its LoRA fitted, loaded from the
    cache, or off) and the paper's."""
    name = BACKBONES[backbone].preset
    v2 = preset(name, "default")
    return {"v2": v2, "v2-cached-lora": v2.override(lora_steps=0), "v2-no-lora": v2.override(lora=False),
            "paper": preset(name, "paper")}


def recipe_counts(recipes: Mapping[str, EditConfig] | None = None, point: PointSettings = DRAGDIFFUSION,
                  dragdiffusion_lora_steps: int = DRAGDIFFUSION_LORA_STEPS) -> dict[str, dict[str, int]]:
    """Passes of each kind per edit, per recipe, ``REFERENCE`` (DragDiffusion) last."""
    counts = {}
    for name, config in (recipes or default_recipes()).items():
        steps = config.inversion_steps
        native = "_native" if config.feature_scale is None else ""
        # a region-optimisation timestep reads its targets: the unedited features, the moved start's, or both
        targets = 2 if config.loss_target == "by-type" else 1
        # a moved start is its own target at the first optimised timestep: zero loss, nothing spent
        # (objective.at_its_own_target; so for an edit whose moves stay inside the editable mask, as here)
        optimised = config.pbsi_timesteps - (
            1 if config.pbsi_timesteps and config.start == "moved" and config.loss_target == "start" else 0)
        ours = {
            "lora_step": config.lora_steps if config.lora else 0, "forward": steps,
            f"features{native}": optimised * targets,
            f"features_backward{native}": optimised * config.iterations,
            "forward_pair": steps if config.mutual_attention else 0,
        }
        if not config.mutual_attention:
            ours["forward"] += steps
        counts[name] = ours
    counts[REFERENCE] = {"lora_step": dragdiffusion_lora_steps, "forward": PAPER.inversion_steps + 1,
                         "forward_backward": point.max_iterations, "forward_pair": PAPER.inversion_steps}
    return counts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(step, repeats: int, device: torch.device) -> PassCost:
    step()  # warm-up (allocations, kernel selection)
    _sync(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    rss_reset = not cuda and reset_peak_rss()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / repeats
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else peak_rss_mb() if rss_reset else None
    return PassCost(seconds, peak)


def time_passes(backbone: UNetOnlyBackbone, latent_size: int, config: EditConfig = PAPER, repeats: int = 2,
                kinds=KINDS, progress: Callable[[str, int, int], None] | None = None,
                dragdiffusion_block: str = BACKBONES["sd"].dragdiffusion_block) -> dict[str, PassCost]:
    """Seconds (and peak memory) of one pass of each kind, with a rank-``lora_rank`` LoRA in the UNet.

    ``progress(kind, index, total)`` is called before each kind is timed."""
    device, unet = backbone.device, backbone.unet
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, unet.config.in_channels, latent_size, latent_size, generator=generator).to(device)
    context = backbone.random_conditioning(generator)
    t = torch.tensor(500, device=device)
    feature_side = max(1, round(latent_size * VAE_FACTOR * (config.feature_scale or PAPER.feature_scale)))
    feature_size = (feature_side, feature_side)

    # the LoRA of an edit: the backbones' adapter, start and training step
    backbone.add_lora(config.lora_rank)
    optimizer = torch.optim.AdamW(backbone.fresh_lora(config.lora_rank, generator), lr=config.lora_learning_rate)
    noise_scheduler = backbone.noise_scheduler()
    backbone.use_lora()  # on for inference, its weights frozen: the other kinds run with it, as an edit does

    def forward():
        with torch.no_grad():
            backbone.predict(latent, t, context)

    def forward_pair():
        switch = MutualAttentionSwitch(active=True)
        processors = mutual_attention_processors(unet, config.mutual_attention_start_layer, switch)
        with torch.no_grad(), installed_processors(unet, processors):
            backbone.predict(torch.cat([latent, latent]), t, context)

    def features(size=feature_size):
        with torch.no_grad():
            backbone.features(latent, t, context, config.feature_blocks, size)

    def features_backward(size=feature_size):
        z = latent.clone().requires_grad_(True)
        maps = backbone.features(z, t, context, config.feature_blocks, size)
        sum(m.abs().mean() for m in (maps if isinstance(maps, list) else [maps])).backward()

    dragdiffusion_module = dict(unet.named_modules())[dragdiffusion_block]
    dragdiffusion_side = max(1, round(latent_size * VAE_FACTOR * DRAGDIFFUSION_FEATURE_SCALE))

    def forward_backward():
        z = latent.clone().requires_grad_(True)
        kept = []
        hook = dragdiffusion_module.register_forward_hook(lambda _module, _inputs, output: kept.append(output))
        try:
            prediction = backbone.predict(z, t, context)
        finally:
            hook.remove()
        output = kept[0][0] if isinstance(kept[0], tuple) else kept[0]
        feature_map = F.interpolate(output.float(), size=(dragdiffusion_side, dragdiffusion_side), mode="bilinear")
        (feature_map.abs().mean() + prediction.abs().mean()).backward()

    def lora_step():
        with backbone.lora_training():
            backbone.lora_step(latent, context, noise_scheduler, optimizer, generator)

    steps = {"forward": forward, "forward_pair": forward_pair, "features": features,
             "features_backward": features_backward, "features_native": lambda: features(None),
             "features_backward_native": lambda: features_backward(None), "forward_backward": forward_backward,
             "lora_step": lora_step}
    costs = {}
    for index, kind in enumerate(kinds):
        if progress is not None:
            progress(kind, index, len(kinds))
        costs[kind] = _measure(steps[kind], repeats, device)
    return costs


@dataclass
class CostReport:
    unet: str
    image_size: int
    device: str
    dtype: str
    repeats: int
    kinds: dict[str, PassCost]
    memory: str  # what peak_mb measures
    counts: dict[str, dict[str, int]]  # per recipe, REFERENCE last
    seconds: dict[str, float] = field(default_factory=dict)  # per recipe: sum of count x seconds per pass
    drag_seconds: dict[str, float] = field(default_factory=dict)  # the same over DRAG_KINDS
    forward_passes: dict[str, int] = field(default_factory=dict)  # UNet forwards per edit (a pair counts 2)
    backward_passes: dict[str, int] = field(default_factory=dict)
    peak_mb: dict[str, float | None] = field(default_factory=dict)  # the largest peak of the kinds a recipe uses
    backbone: str = "sd"  # BACKBONES key: whose presets were priced

    def ratio(self, recipe: str, what: str = "time") -> float | None:
        """``recipe``'s time (or ``drag`` time, ``peak`` memory) over DragDiffusion's; below 1: cheaper."""
        table = {"time": self.seconds, "drag": self.drag_seconds, "peak": self.peak_mb}[what]
        if table[recipe] is None or not table[REFERENCE]:
            return None
        return table[recipe] / table[REFERENCE]

    @property
    def time_ratio(self) -> float:
        """The default recipe's seconds per edit over DragDiffusion's (below 1: we are cheaper)."""
        return self.ratio(next(iter(self.counts)))


def _totals(report: CostReport) -> CostReport:
    for recipe, counts in report.counts.items():
        report.seconds[recipe] = sum(n * report.kinds[kind].seconds for kind, n in counts.items() if n)
        report.drag_seconds[recipe] = sum(n * report.kinds[kind].seconds for kind, n in counts.items()
                                          if n and kind in DRAG_KINDS)
        report.forward_passes[recipe] = sum(n * (2 if kind == "forward_pair" else 1) for kind, n in counts.items())
        report.backward_passes[recipe] = sum(n for kind, n in counts.items()
                                             if kind in ("features_backward", "features_backward_native",
                                                         "forward_backward", "lora_step"))
        peaks = [report.kinds[kind].peak_mb for kind, n in counts.items() if n]
        report.peak_mb[recipe] = None if None in peaks or not peaks else max(peaks)
    return report


def repriced(document: Mapping[str, Any], recipes: Mapping[str, EditConfig] | None = None) -> CostReport:
    """A ``cost.json``'s timed passes priced with today's pass counts of ``recipes``: for a change of recipe
    (fewer passes of a kind already timed) where the machine that timed them is gone."""
    kinds = {kind: PassCost(**cost) for kind, cost in document["kinds"].items()}
    backbone = document.get("backbone", "sd")
    counts = recipe_counts(recipes or default_recipes(backbone))
    missing = sorted({kind for c in counts.values() for kind, n in c.items() if n} - set(kinds))
    if missing:
        raise ValueError(f"the timings lack pass kinds the recipes use now: {', '.join(missing)}")
    report = CostReport(unet=document["unet"], image_size=document["image_size"], device=document["device"],
                        dtype=document["dtype"], repeats=document["repeats"], kinds=kinds,
                        memory=document["memory"], counts=counts, backbone=backbone)
    return _totals(report)


def memory_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated per kind of pass, weights included"
    return "process peak RSS per kind of pass (reset between kinds), weights and Python included"


def cost_comparison(unet: str | None = None, image_size: int | None = None, repeats: int = 2, device=None,
                    recipes: Mapping[str, EditConfig] | None = None,
                    progress: Callable[[str, int, int], None] | None = None, backbone: str = "sd") -> CostReport:
    """Build the random UNet, time every kind of pass the recipes use, and total each (module docstring).

    ``backbone`` (:data:`BACKBONES`) chooses the presets priced and, unless given, the UNet and the image side."""
    if backbone not in BACKBONES:
        raise ValueError(f"--backbone: {backbone!r} is not one of {', '.join(BACKBONES)}")
    spec = BACKBONES[backbone]
    unet = unet or spec.unet
    image_size = image_size or spec.image_size
    if image_size % VAE_FACTOR:
        raise ValueError(f"--cost-size must be a multiple of {VAE_FACTOR}, got {image_size}")
    if repeats < 1:
        raise ValueError(f"--cost-repeats must be at least 1, got {repeats}")
    recipes = dict(recipes or default_recipes(backbone))
    label, unet_dict = unet_config(unet)
    if (unet_dict.get("addition_embed_type") == "text_time") != (backbone == "sdxl"):
        raise ValueError(f"--cost-unet {unet}: not a UNet of --backbone {backbone} (SDXL's has added conditioning)")
    timed = build_unet_backbone(unet_dict, device)
    counts = recipe_counts(recipes)
    used = [kind for kind in KINDS if any(c.get(kind) for c in counts.values())]
    kinds = time_passes(timed, image_size // VAE_FACTOR, next(iter(recipes.values())), repeats, used, progress,
                        dragdiffusion_block=spec.dragdiffusion_block)
    report = CostReport(unet=label, image_size=image_size, device=str(timed.device),
                        dtype=str(timed.dtype).removeprefix("torch."), repeats=repeats, kinds=kinds,
                        memory=memory_kind(timed.device), counts=counts, backbone=backbone)
    return _totals(report)


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def cost_markdown(report: CostReport) -> str:
    recipes = list(report.counts)
    lines = [
        "# Cost: our recipes vs DragDiffusion's", "",
        f"UNet `{report.unet}` ({BACKBONES[report.backbone].preset} presets; random weights: compute does not "
        f"depend on them), {report.image_size} x "
        f"{report.image_size} px, {report.device}, {report.dtype}. Each kind of pass timed {report.repeats} times "
        "after one warm-up, times the passes each recipe spends per edit. Not timed (same in all): VAE, text "
        "encoder, scheduler arithmetic. DragDiffusion's 80 drag iterations are its maximum (it stops once the "
        f"handles arrive). Peak memory: {report.memory}.", "",
        "| pass kind | s/pass | peak MB | " + " | ".join(recipes) + " |",
        "|---|---:|---:|" + "---:|" * len(recipes),
    ]
    for kind, cost in report.kinds.items():
        counts = " | ".join(str(report.counts[r].get(kind, 0)) for r in recipes)
        lines.append(f"| {kind} | {cost.seconds:.4f} | {_number(cost.peak_mb, 0)} | {counts} |")
    lines += ["", "| recipe | s/edit | drag phase s | UNet forwards | backwards | peak MB | time ratio | "
                  "drag ratio | peak ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for recipe in recipes:
        lines.append(f"| {recipe} | {report.seconds[recipe]:.2f} | {report.drag_seconds[recipe]:.2f} | "
                     f"{report.forward_passes[recipe]} | {report.backward_passes[recipe]} | "
                     f"{_number(report.peak_mb[recipe], 0)} | {_number(report.ratio(recipe), 3)} | "
                     f"{_number(report.ratio(recipe, 'drag'), 3)} | {_number(report.ratio(recipe, 'peak'), 3)} |")
    lines += ["", "Ratios are each recipe over DragDiffusion's (below 1: cheaper)."]
    return "\n".join(lines) + "\n"


def cost_json(report: CostReport) -> str:
    document = asdict(report)
    document["time_ratio"] = report.time_ratio
    document["ratios"] = {recipe: {what: report.ratio(recipe, what) for what in ("time", "drag", "peak")}
                          for recipe in report.counts}
    return json.dumps(document, indent=2) + "\n"
