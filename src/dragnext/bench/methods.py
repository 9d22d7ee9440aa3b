"""The methods a benchmark compares, by name: a method function and the settings it runs with.

Settings of a method = its base (``paper`` or ``tuned``), then the user's overrides (``--fast``, ``--set``),
then the method's own defining changes (so an ablation stays what it says):

- ``dragnext``: ours with the paper's settings (``config.PAPER``). Settings that name parts of the model are
  taken from the backbone's preset where the paper's do not exist in it (e.g. mutual attention from the 10th
  self-attention layer on a UNet that has 7); :func:`paper_config` says which.
- ``dragnext-tuned``: ours with the backbone's preset (``config.preset(backbone.name)``).
- ``point``, ``warp``, ``identity``: the baselines (``baselines.py``) on the backbone's preset, so they share
  inversion strength, steps, features, mutual attention, LoRA and editable area with ``dragnext-tuned``.
- ``ablation-*``: ours on the backbone's preset with one change: ``eta1`` no intermediate states
  (``progressive=False``), ``pbsiN`` PBSI over N timesteps (K iterations each, as the preset), ``no-msa``
  no mutual self-attention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ..config import PAPER, EditConfig, preset

if TYPE_CHECKING:  # the methods (and torch) load on first use, so `dragnext --help` and input errors stay fast
    from ..baselines import Method
    from ..models.base import Backbone

MAIN = ("dragnext", "dragnext-tuned", "point", "warp", "identity")
ABLATIONS = ("ablation-eta1", "ablation-pbsi1", "ablation-pbsi3", "ablation-pbsi5", "ablation-pbsi7",
             "ablation-no-msa")
GROUPS = {"main": MAIN, "ablations": ABLATIONS, "all": MAIN + ABLATIONS}

# --fast: few steps, for smoke tests and trying things out; applied before --set.
FAST_SETTINGS: dict[str, Any] = {"num_steps": 20, "iterations": 3, "lora_steps": 8}
FAST_POINT_ITERATIONS = 10  # --fast: the point method's iteration cap


class MethodError(ValueError):
    """An unknown method name; the message lists the known ones."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    run: Method  # noqa: F821 - resolved lazily, see TYPE_CHECKING above
    base: str  # "paper" or "tuned"
    changes: Mapping[str, Any] = field(default_factory=dict)  # the method's defining settings, applied last
    description: str = ""

    def config(self, backbone: Backbone, overrides: Mapping[str, Any] | None = None) -> EditConfig:
        """The settings this method runs with on ``backbone`` (raises ``ConfigError`` if they cannot work)."""
        base = paper_config(backbone)[0] if self.base == "paper" else preset(backbone.name)
        return base.override(**dict(overrides or {})).override(**dict(self.changes))


def paper_config(backbone: Backbone) -> tuple[EditConfig, dict[str, Any]]:
    """``PAPER``, with the settings that name model parts the backbone lacks taken from its preset; and those."""
    from ..attention import self_attention_layers

    tuned = preset(backbone.name)
    modules = dict(backbone.unet.named_modules())
    changes: dict[str, Any] = {}
    if any(block not in modules for block in PAPER.feature_blocks):
        changes["feature_blocks"] = tuned.feature_blocks
    if PAPER.mutual_attention_start_layer > len(self_attention_layers(backbone.unet)):
        changes["mutual_attention_start_layer"] = tuned.mutual_attention_start_layer
    return PAPER.override(**changes), changes


def registry(fast: bool = False) -> dict[str, MethodSpec]:
    """Every method by name; ``fast`` caps the point method's iterations (``FAST_POINT_ITERATIONS``) too."""
    from ..baselines import DRAGDIFFUSION, PointSettings, dragnext, identity, point_drag, warp_drag

    point = partial(point_drag, settings=PointSettings(max_iterations=FAST_POINT_ITERATIONS) if fast else DRAGDIFFUSION)
    specs = [
        MethodSpec("dragnext", dragnext, "paper", description="ours, the paper's settings"),
        MethodSpec("dragnext-tuned", dragnext, "tuned", description="ours, the backbone's tuned preset"),
        # the baselines set these themselves; repeated here so that reports show what they ran with
        MethodSpec("point", point, "tuned", {"pbsi_timesteps": 1},
                   "DragDiffusion-style point motion supervision + tracking, at one timestep"),
        MethodSpec("warp", warp_drag, "tuned", {"pbsi_timesteps": 1},
                   "handle latent copied to the target, no optimisation"),
        MethodSpec("identity", identity, "tuned", {"pbsi_timesteps": 0, "mutual_attention": False},
                   "inversion and reconstruction, no edit (floor)"),
        MethodSpec("ablation-eta1", dragnext, "tuned", {"progressive": False}, "ours, no intermediate states"),
        *(MethodSpec(f"ablation-pbsi{n}", dragnext, "tuned", {"pbsi_timesteps": n}, f"ours, PBSI over {n} timesteps")
          for n in (1, 3, 5, 7)),
        MethodSpec("ablation-no-msa", dragnext, "tuned", {"mutual_attention": False}, "ours, no mutual attention"),
    ]
    return {spec.name: spec for spec in specs}


def resolve_methods(names: str, fast: bool = False) -> list[MethodSpec]:
    """Comma-separated names and groups (``main``, ``ablations``, ``all``) -> specs, in order, without repeats."""
    known = registry(fast)
    chosen: list[str] = []
    for name in (part.strip() for part in names.split(",")):
        if not name:
            continue
        expanded = GROUPS.get(name, (name,))
        for item in expanded:
            if item not in known:
                raise MethodError(f"--methods: unknown method {item!r}; known: {', '.join(known)}, or a group: "
                                  f"{', '.join(GROUPS)}")
            if item not in chosen:
                chosen.append(item)
    if not chosen:
        raise MethodError("--methods: name at least one method")
    return [known[name] for name in chosen]
