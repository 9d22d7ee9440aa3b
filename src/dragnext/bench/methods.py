"""The methods a benchmark compares, by name: a method function and the settings it runs with.

Settings of a method = its base preset (``default``: engine v2, or ``paper``, :func:`config.preset`), then the
user's overrides (``--fast``, ``--set``), then the method's own defining changes (so an ablation stays what it
says):

- ``dragnext``: ours, the backbone's default preset (engine v2).
- ``paper``: ours with the paper's settings (the backbone's ``paper`` preset).
- ``point``, ``warp``, ``copy``, ``identity``: the baselines (``baselines.py``) on the default preset, so they
  share inversion strength, steps, features, mutual attention, LoRA, fill and editable area with ``dragnext``.
- ``ablation-*``: ours with one v2 component changed: ``no-warm-start`` optimisation starts from the inverted
  latent (the targets still come from the moved start), ``no-fill`` the vacated area keeps its content,
  ``no-field`` a deform translates its region, ``full-res-loss`` features resized to the image size,
  ``early-stop`` iterations stop once the loss stalls, ``pbsi4`` four optimised timesteps, ``steps50`` the
  paper's 50-step DDIM schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import COPY_SETTINGS, IDENTITY_SETTINGS, POINT_SETTINGS, WARP_SETTINGS, EditConfig, preset

if TYPE_CHECKING:  # the methods (and torch) load on first use, so `dragnext --help` and input errors stay fast
    from ..baselines import Method
    from ..models.base import Backbone

MAIN = ("dragnext", "paper", "point", "warp", "copy", "identity")
ABLATIONS = ("ablation-no-warm-start", "ablation-no-fill", "ablation-no-field", "ablation-full-res-loss",
             "ablation-early-stop", "ablation-pbsi4", "ablation-steps50")
GROUPS = {"main": MAIN, "ablations": ABLATIONS, "all": MAIN + ABLATIONS}

FAST_POINT_ITERATIONS = 10  # --fast (with config.FAST_SETTINGS, applied before --set): the point method's cap


class MethodError(ValueError):
    """An unknown method name; the message lists the known ones."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    run: Method  # noqa: F821 - resolved lazily, see TYPE_CHECKING above
    base: str  # the preset: "default" or "paper"
    changes: Mapping[str, Any] = field(default_factory=dict)  # the method's defining settings, applied last
    description: str = ""

    def config(self, backbone: Backbone | str, overrides: Mapping[str, Any] | None = None) -> EditConfig:
        """The settings this method runs with on ``backbone`` (or a backbone of that preset name, before it is
        loaded); raises ``ConfigError`` if they cannot work."""
        name = backbone if isinstance(backbone, str) else backbone.name
        return preset(name, self.base).override(**dict(overrides or {})).override(**dict(self.changes))


class _Baseline:
    """A method of ``baselines.py`` named, and imported with torch on its first call: the list of methods, their
    settings and the checks of a benchmark's arguments need no torch. Picklable, for Ray's workers."""

    def __init__(self, function: str, fast_point: bool = False):
        self.function, self.fast_point = function, fast_point

    def __call__(self, *args, **kwargs):
        from .. import baselines

        if self.function == "point_drag":
            kwargs.setdefault("settings", baselines.PointSettings(max_iterations=FAST_POINT_ITERATIONS)
                              if self.fast_point else baselines.DRAGDIFFUSION)
        return getattr(baselines, self.function)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"baselines.{self.function}" + (" (fast)" if self.fast_point else "")


def registry(fast: bool = False) -> dict[str, MethodSpec]:
    """Every method by name; ``fast`` caps the point method's iterations (``FAST_POINT_ITERATIONS``) too."""
    dragnext, warp_drag, copy_drag, identity = (_Baseline(name) for name in ("dragnext", "warp_drag", "copy_drag",
                                                                          "identity"))
    point = _Baseline("point_drag", fast_point=fast)
    specs = [
        MethodSpec("dragnext", dragnext, "default", description="ours, engine v2 (the backbone's default preset)"),
        MethodSpec("paper", dragnext, "paper", description="ours, the paper's settings"),
        # the baselines apply these themselves; given here so that reports show what they ran with
        MethodSpec("point", point, "default", POINT_SETTINGS,
                   "DragDiffusion-style point motion supervision + tracking, at one timestep"),
        MethodSpec("warp", warp_drag, "default", WARP_SETTINGS,
                   "regions moved to their target pose, vacated area filled, no optimisation"),
        MethodSpec("copy", copy_drag, "default", COPY_SETTINGS,
                   "handle latent copied to the target, old content left (engine v1's warp)"),
        MethodSpec("identity", identity, "default", IDENTITY_SETTINGS, "inversion and reconstruction, no edit (floor)"),
        MethodSpec("ablation-no-warm-start", dragnext, "default", {"start": "unedited"},
                   "ours, optimisation from the inverted latent"),
        MethodSpec("ablation-no-fill", dragnext, "default", {"fill": "none"}, "ours, vacated area not filled"),
        MethodSpec("ablation-no-field", dragnext, "default", {"deformation": "translate"},
                   "ours, deform translates its region"),
        MethodSpec("ablation-full-res-loss", dragnext, "default", {"feature_scale": 1.0},
                   "ours, features resized to the image size"),
        MethodSpec("ablation-early-stop", dragnext, "default", {"early_stop": 0.01},
                   "ours, iterations stop when the loss stalls"),
        MethodSpec("ablation-pbsi4", dragnext, "default", {"pbsi_timesteps": 4}, "ours, four optimised timesteps"),
        MethodSpec("ablation-steps50", dragnext, "default", {"num_steps": 50}, "ours, a 50-step DDIM schedule"),
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
