"""``bench --cost-only``: the cost of our recipes against DragDiffusion's, on a UNet with random weights.

Compute does not depend on the weights, so a ``UNet2DConditionModel`` built in code from Stable Diffusion 1.5's
config with random initialisation, at 512 x 512 (latent 64 x 64), costs what SD-1.5 costs, and nothing is
downloaded. Rather than run the recipes in full, each *kind* of UNet pass is timed ``repeats`` times (after one
warm-up) and multiplied by how many of that kind each recipe spends per edit:

- ``forward``: a plain forward, batch 1 (DDIM inversion; DragDiffusion's reference forward at the drag step);
- ``forward_pair``: a forward of the batch [reference, edited] with mutual self-attention (denoising);
- ``features`` / ``features_native``: a forward stopped after the last feature block, the maps resized to the
  paper's half image side / left at their native resolutions (a region-optimisation target);
- ``features_backward`` / ``features_backward_native``: that, with the gradient to the latent (one iteration);
- ``forward_backward``: one DragDiffusion drag iteration: a full forward (its code runs the whole UNet, for the
  features and for the DDIM step of its mask term; tracking reuses it), its feature map (``up_blocks.2``'s output
  resized to half the image side, ``DRAGDIFFUSION_FEATURE_BLOCK``), and the gradient of both to the latent;
- ``lora_step``: one step of the identity LoRA (forward, backward to the rank-r LoRA, AdamW).

Recipes per edit (:func:`recipe_counts`): ``v2`` (the Stable Diffusion default preset, engine v2), ``v2-cached-lora``
(its LoRA loaded from the cache: no LoRA steps), ``v2-no-lora``, ``paper`` (``config.PAPER``) and
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
from ..config import PAPER, STABLE_DIFFUSION, EditConfig
from ..models.base import Backbone, default_device, default_dtype, seeded_construction
from .memory import peak_rss_mb, reset_peak_rss

VAE_FACTOR = 8  # SD's VAE downsamples by 8
TEXT_TOKENS = 77  # CLIP's sequence length
DRAGDIFFUSION_LORA_STEPS = 80  # DragDiffusion's published LoRA recipe
# DragDiffusion's unet_feature_idx = [3] counts the mid block as 0, so it is the third up block's output; it is
# resized to half the image side (sup_res = 0.5 * full size).
DRAGDIFFUSION_FEATURE_BLOCK = "up_blocks.2"
DRAGDIFFUSION_FEATURE_SCALE = 0.5

_SD_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
_SD_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
# Stable Diffusion 1.5's unet/config.json, the fields that shape its compute (the rest are diffusers' defaults).
SD15_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280], "down_block_types": _SD_DOWN, "up_block_types": _SD_UP,
    "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32, "act_fn": "silu",
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "mid_block_scale_factor": 1,
    "norm_eps": 1e-5, "center_input_sample": False,
}
# The same layout, tiny: for tests of this code path (PAPER's feature blocks and attention layer exist in it).
TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [16, 16, 32, 32], "down_block_types": _SD_DOWN, "up_block_types": _SD_UP,
    "cross_attention_dim": 32, "attention_head_dim": 2, "norm_num_groups": 8,
}
UNET_CONFIGS = {"sd15": SD15_UNET_CONFIG, "tiny": TINY_UNET_CONFIG}
KINDS = ("forward", "forward_pair", "features", "features_backward", "features_native", "features_backward_native",
         "forward_backward", "lora_step")
DRAG_KINDS = ("features", "features_backward", "features_native", "features_backward_native", "forward_backward")
REFERENCE = "dragdiffusion"  # the recipe every other one is compared with


def unet_config(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """(label, config dict) for ``sd15``, ``tiny`` or a JSON file of ``UNet2DConditionModel`` config."""
    if name_or_path in UNET_CONFIGS:
        return name_or_path, dict(UNET_CONFIGS[name_or_path])
    path = Path(name_or_path)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"--cost-unet: '{name_or_path}' is not sd15, tiny or a readable JSON config "
                         f"({error})") from None
    return path.name, {key: value for key, value in loaded.items() if not key.startswith("_")}


class UNetOnly(Backbone):
    """A bare conditional UNet seen as a backbone, for timing its passes (no VAE, no text encoder)."""

    name = "cost"
    size_multiple = VAE_FACTOR

    def __init__(self, unet, device: torch.device, dtype: torch.dtype):
        self.unet, self.device, self.dtype = unet, device, dtype
        self.scheduler_config = {}

    def encode_image(self, image):
        raise NotImplementedError("the cost measurement runs the UNet only")

    def decode_latent(self, latent):
        raise NotImplementedError("the cost measurement runs the UNet only")

    def encode_prompt(self, prompt):
        raise NotImplementedError("the cost measurement runs the UNet only")

    def _unet_call(self, latent, timestep, conditioning):
        context = conditioning.expand(latent.shape[0], -1, -1)
        return self.unet(latent, timestep, encoder_hidden_states=context).sample


def build_unet_backbone(config: Mapping[str, Any], device=None, dtype=None) -> UNetOnly:
    """A randomly initialised ``UNet2DConditionModel`` from ``config``, on ``device`` (initialised there)."""
    from diffusers import UNet2DConditionModel

    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    with seeded_construction(0, device), device:
        unet = UNet2DConditionModel(**config)
    return UNetOnly(unet.to(dtype).eval().requires_grad_(False), device, dtype)


@dataclass
class PassCost:
    seconds: float  # wall seconds per pass (mean of the timed repeats)
    peak_mb: float | None  # peak during the kind, weights included (see the module docstring); None if unknown


def default_recipes() -> dict[str, EditConfig]:
    """Our recipes by name: engine v2 (with its LoRA fitted, loaded from the cache, or off) and the paper's."""
    return {"v2": STABLE_DIFFUSION, "v2-cached-lora": STABLE_DIFFUSION.override(lora_steps=0),
            "v2-no-lora": STABLE_DIFFUSION.override(lora=False), "paper": PAPER}


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
        # (editor._at_its_own_target; so for an edit whose moves stay inside the editable mask, as here)
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


def time_passes(backbone: UNetOnly, latent_size: int, config: EditConfig = PAPER, repeats: int = 2,
                kinds=KINDS, progress: Callable[[str, int, int], None] | None = None) -> dict[str, PassCost]:
    """Seconds (and peak memory) of one pass of each kind, with a rank-``lora_rank`` LoRA in the UNet.

    ``progress(kind, index, total)`` is called before each kind is timed."""
    from peft import LoraConfig

    from ..models.stable_diffusion import LORA_TARGETS

    device, unet = backbone.device, backbone.unet
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, unet.config.in_channels, latent_size, latent_size, generator=generator).to(device)
    context = torch.randn(1, TEXT_TOKENS, unet.config.cross_attention_dim, generator=generator)
    context = context.to(device, backbone.dtype)
    t = torch.tensor(500, device=device)
    feature_side = max(1, round(latent_size * VAE_FACTOR * (config.feature_scale or PAPER.feature_scale)))
    feature_size = (feature_side, feature_side)

    unet.add_adapter(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank, init_lora_weights="gaussian",
                                target_modules=LORA_TARGETS))
    lora = [p for name, p in unet.named_parameters() if "lora_" in name]
    for p in lora:
        p.data = p.data.float()
    optimizer = torch.optim.AdamW(lora, lr=config.lora_learning_rate)

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

    dragdiffusion_block = dict(unet.named_modules())[DRAGDIFFUSION_FEATURE_BLOCK]
    dragdiffusion_side = max(1, round(latent_size * VAE_FACTOR * DRAGDIFFUSION_FEATURE_SCALE))

    def forward_backward():
        z = latent.clone().requires_grad_(True)
        kept = []
        hook = dragdiffusion_block.register_forward_hook(lambda _module, _inputs, output: kept.append(output))
        try:
            prediction = backbone.predict(z, t, context)
        finally:
            hook.remove()
        output = kept[0][0] if isinstance(kept[0], tuple) else kept[0]
        feature_map = F.interpolate(output.float(), size=(dragdiffusion_side, dragdiffusion_side), mode="bilinear")
        (feature_map.abs().mean() + prediction.abs().mean()).backward()

    def lora_step():
        for p in lora:
            p.requires_grad_(True)
        unet.train()
        try:
            loss = F.mse_loss(backbone.predict(latent, t, context), latent)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        finally:
            unet.eval()
            for p in lora:
                p.requires_grad_(False)
                p.grad = None

    steps = {"forward": forward, "forward_pair": forward_pair, "features": features,
             "features_backward": features_backward, "features_native": lambda: features(None),
             "features_backward_native": lambda: features_backward(None), "forward_backward": forward_backward,
             "lora_step": lora_step}
    for p in lora:
        p.requires_grad_(False)
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
    counts = recipe_counts(recipes)
    missing = sorted({kind for c in counts.values() for kind, n in c.items() if n} - set(kinds))
    if missing:
        raise ValueError(f"the timings lack pass kinds the recipes use now: {', '.join(missing)}")
    report = CostReport(unet=document["unet"], image_size=document["image_size"], device=document["device"],
                        dtype=document["dtype"], repeats=document["repeats"], kinds=kinds,
                        memory=document["memory"], counts=counts)
    return _totals(report)


def memory_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated per kind of pass, weights included"
    return "process peak RSS per kind of pass (reset between kinds), weights and Python included"


def cost_comparison(unet: str = "sd15", image_size: int = 512, repeats: int = 2, device=None,
                    recipes: Mapping[str, EditConfig] | None = None,
                    progress: Callable[[str, int, int], None] | None = None) -> CostReport:
    """Build the random UNet, time every kind of pass the recipes use, and total each (module docstring)."""
    if image_size % VAE_FACTOR:
        raise ValueError(f"--cost-size must be a multiple of {VAE_FACTOR}, got {image_size}")
    if repeats < 1:
        raise ValueError(f"--cost-repeats must be at least 1, got {repeats}")
    recipes = dict(recipes or default_recipes())
    label, unet_dict = unet_config(unet)
    backbone = build_unet_backbone(unet_dict, device)
    counts = recipe_counts(recipes)
    used = [kind for kind in KINDS if any(c.get(kind) for c in counts.values())]
    kinds = time_passes(backbone, image_size // VAE_FACTOR, next(iter(recipes.values())), repeats, used, progress)
    report = CostReport(unet=label, image_size=image_size, device=str(backbone.device),
                        dtype=str(backbone.dtype).removeprefix("torch."), repeats=repeats, kinds=kinds,
                        memory=memory_kind(backbone.device), counts=counts)
    return _totals(report)


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def cost_markdown(report: CostReport) -> str:
    recipes = list(report.counts)
    lines = [
        "# Cost: our recipes vs DragDiffusion's", "",
        f"UNet `{report.unet}` (random weights; compute does not depend on them), {report.image_size} x "
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
