"""The drag-editing pipeline: invert -> start -> region optimisation -> denoise with mutual self-attention -> decode.

``DragEditor(backbone)(request)`` edits one image. Two presets per backbone run it (``config.preset``):

``paper`` (DragNeXt, Zhou et al., arXiv 2506.07611):

1. encode the image and (optionally, Stable Diffusion) fit an identity-preserving LoRA;
2. DDIM-invert the latent for ``round(num_steps * strength)`` steps, keeping the whole trajectory;
3. for the first ``pbsi_timesteps`` denoising timesteps, Latent Region Optimisation solved by Progressive
   Backward Self-Intervention: every operation's region is moved a fraction eta of the way, and the UNet
   features of the optimised latent inside the moved region are pulled (L1) towards the *detached* features
   of the unedited latent warped by the same move, plus lambda * |z - z_ref| outside the editable mask.
   Adam updates the latent; there is no point tracking. Then one DDIM step takes the latent on;
4. denoise the rest of the way with mutual self-attention (the edited branch reads the reference branch's
   keys and values);
5. decode, resize back to the input size, and paste back the pixels outside the editable mask.

``default`` (engine v2, ours) changes step 3: the inverted latent first gets every region at its target pose
(``transport.py``: moved with the drag's map, a ``deform`` with a displacement field, the area the regions vacate
filled from the unedited surroundings), and region optimisation starts there, to keep the result on that moved
trajectory rather than to carry the content: its targets are the features of the moved, filled latent at each
optimised timestep (:class:`RegionObjective`), so a rotation is not judged by warped features that do not rotate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import geometry, transport
from .attention import (
    MutualAttentionSwitch,
    installed_processors,
    mutual_attention_processors,
    self_attention_layers,
)
from .config import EditConfig, check_model_parts, check_num_steps, check_seed, preset
from .instructions import DragRequest, Operation, make_operation, validate_request
from .models.base import Backbone
from .objective import RegionObjective, as_list, at_its_own_target, outside_penalty, stalled
from .support import with_supports

logger = logging.getLogger(__name__)

# progress(phase, done, total), phases in order: "lora", "inversion", "pbsi" (the optimised timesteps, each with
# its DDIM step), "denoise" (the remaining timesteps)
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class PassCounts:
    """UNet passes spent, per image in the batch: a batch of two is two passes."""

    forward: int = 0  # full forwards (inversion, DDIM steps, LoRA)
    truncated_forward: int = 0  # forwards stopped after the last feature block (PBSI)
    backward: int = 0  # backward passes (PBSI, LoRA)


@dataclass
class EditResult:
    image: np.ndarray  # H x W x 3 uint8, the input's size
    config: EditConfig
    timings: dict[str, float]  # wall seconds per phase
    passes: PassCounts
    loss_history: list[list[float]] = field(default_factory=list)  # per PBSI timestep, per iteration
    working_size: tuple[int, int] = (0, 0)  # (height, width) the model ran at
    editable_mask: np.ndarray | None = None  # the mask actually used (given, or derived from the regions)
    reused: tuple[str, ...] = ()  # work an EditSession did not repeat: "inversion", "lora"

    @property
    def seconds(self) -> float:
        return sum(self.timings.values())


@dataclass(frozen=True)
class Inverted:
    """An image's latent, its prompt's conditioning and its DDIM trajectory (clean latent first)."""

    latent0: torch.Tensor
    conditioning: Any
    trajectory: list[torch.Tensor]
    reused: tuple[str, ...] = ()


@dataclass(frozen=True)
class TimestepContext:
    """What the method hook (:meth:`DragEditor.edit_latent`) is given at one optimised timestep."""

    t: torch.Tensor  # the scheduler's timestep
    index: int  # which of the first ``config.pbsi_timesteps`` timesteps (0 first)
    reference_latent: torch.Tensor  # the unedited latent at ``t`` (the inversion's trajectory)
    conditioning: Any  # the prompt's, as ``backbone.predict`` takes it
    work: DragRequest  # the request at the working size
    latent_mask: torch.Tensor  # [1, 1, h, w] float: 1 where the latent may change (the editable mask)
    config: EditConfig
    passes: PassCounts  # add the UNet passes spent here


def uses_lora(backbone: Backbone, config: EditConfig) -> bool:
    return config.lora and backbone.supports_lora and config.lora_steps > 0


class DragEditor:
    """Edits images with one backbone; settings default to the backbone's preset."""

    def __init__(self, backbone: Backbone, config: EditConfig | None = None):
        self.backbone = backbone
        self.config = config or preset(backbone.name)

    def __call__(self, request: DragRequest, config: EditConfig | None = None, *, seed: int = 0,
                 progress: ProgressCallback | None = None) -> EditResult:
        # 1. check inputs
        config = config or self.config
        validate_request(request)
        check_config(self.backbone, config)
        seed = check_seed(seed)
        report = progress or (lambda phase, done, total: None)
        timings: dict[str, float] = {}
        passes = PassCounts()
        backbone = self.backbone

        with _timed(timings, "encode"):
            work = _to_working_size(request, backbone.working_size(*request.image.shape[:2]))
            if config.deformation == "field":  # a deform's reach, read from the picture the model sees
                work = with_supports(work)
                request = _supports_from(work, request)
            editable = _editable_mask(work, config)

        # 2-3. encoding, the identity-preserving LoRA, DDIM inversion (an EditSession reuses them)
        inverted = self._invert(work, request.prompt, config, seed, report, passes, timings)
        latent0, trajectory = inverted.latent0, inverted.trajectory

        # 4. the start: the inverted latent (paper), or every region already at its target pose, the area it
        # vacated filled (v2)
        with _timed(timings, "start"):
            noisiest = trajectory[-1]
            edited = self.moved_latent(noisiest, work, config) if config.start == "moved" else noisiest.clone()

        # 5. PBSI on the first timesteps, then denoising with mutual self-attention
        latent_mask = geometry.resize_mask(editable, tuple(latent0.shape[-2:])).to(backbone.device) > 0
        latent_mask = latent_mask.to(latent0.dtype)[None, None]
        edited, losses = self._drag_and_denoise(edited, inverted, work, latent_mask, config, passes, timings, report)

        # 6. decode, back to the input size, paste the pixels that must not change
        with _timed(timings, "decode"):
            output_image = backbone.decode_latent(edited)
            height, width = request.image.shape[:2]
            if output_image.shape[:2] != (height, width):
                output_image = np.asarray(Image.fromarray(output_image).resize((width, height), Image.LANCZOS))
            full_mask = _editable_mask(request, config)
            if config.paste_outside_editable:
                output_image = np.where(full_mask[..., None], output_image, request.image)
        return EditResult(
            image=np.ascontiguousarray(output_image, dtype=np.uint8), config=config, timings=timings,
            passes=passes, loss_history=losses, working_size=work.image.shape[:2], editable_mask=full_mask,
            reused=inverted.reused,
        )

    def _drag_and_denoise(self, edited: torch.Tensor, inverted: Inverted, work: DragRequest, latent_mask,
                          config: EditConfig, passes: PassCounts, timings: dict[str, float],
                          report: ProgressCallback) -> tuple[torch.Tensor, list[list[float]]]:
        """Step 5 of an edit: the method hook at the first ``pbsi_timesteps`` timesteps, each followed by its DDIM
        step, then the rest of the denoising; with mutual attention, the unedited latent is denoised beside the
        edited one in one batch, and the edited branch reads its keys and values."""
        from diffusers import DDIMScheduler

        backbone, trajectory, conditioning = self.backbone, inverted.trajectory, inverted.conditioning
        scheduler = DDIMScheduler.from_config(backbone.scheduler_config)
        scheduler.set_timesteps(config.num_steps, device=backbone.device)
        steps = config.inversion_steps
        timesteps = scheduler.timesteps[config.num_steps - steps :]
        reference = trajectory[-1]
        losses: list[list[float]] = []
        switch = MutualAttentionSwitch(active=False)
        processors = (
            mutual_attention_processors(backbone.unet, config.mutual_attention_start_layer, switch)
            if config.mutual_attention else {}
        )
        pbsi_seconds = 0.0
        with _timed(timings, "denoise"), installed_processors(backbone.unet, processors):
            for j, t in enumerate(timesteps):
                if j < config.pbsi_timesteps:
                    start = time.perf_counter()
                    step = TimestepContext(t, j, trajectory[steps - j], conditioning, work, latent_mask, config,
                                           passes)
                    edited, history = self.edit_latent(edited, step)
                    losses.append(history)
                    pbsi_seconds += time.perf_counter() - start
                    report("pbsi", j + 1, config.pbsi_timesteps)
                with torch.no_grad():
                    switch.active = config.mutual_attention and j >= config.mutual_attention_start_step
                    if config.mutual_attention:
                        output = backbone.predict(torch.cat([reference, edited]), t, conditioning)
                        both = scheduler.step(output, t, torch.cat([reference, edited])).prev_sample
                        reference, edited = both[:1], both[1:]
                        passes.forward += 2
                    else:
                        output = backbone.predict(edited, t, conditioning)
                        edited = scheduler.step(output, t, edited).prev_sample
                        passes.forward += 1
                if j >= config.pbsi_timesteps:  # phases follow one another: PBSI steps first, then the rest
                    report("denoise", j + 1 - config.pbsi_timesteps, len(timesteps) - config.pbsi_timesteps)
        timings["denoise"] -= pbsi_seconds
        timings["pbsi"] = pbsi_seconds
        return edited, losses

    def _invert(self, work: DragRequest, prompt: str, config: EditConfig, seed: int, report: ProgressCallback,
                passes: PassCounts, timings: dict[str, float]) -> Inverted:
        """Steps 2-3 of an edit: the image's latent, the prompt's conditioning, the LoRA and the inversion."""
        backbone = self.backbone
        with _timed(timings, "encode"):  # deterministic: the VAE's mean, not a sample
            latent0 = backbone.encode_image(work.image)
            conditioning = backbone.encode_prompt(prompt)
        self._fit_lora(work.image, prompt, config, seed, report, passes, timings)
        steps = config.inversion_steps

        def inverted_one_step(done: int) -> None:
            passes.forward += 1
            report("inversion", done, steps)

        with _timed(timings, "inversion"):
            trajectory = ddim_invert(backbone, latent0, conditioning, config, inverted_one_step)
        return Inverted(latent0, conditioning, trajectory)

    def _fit_lora(self, image: np.ndarray, prompt: str, config: EditConfig, seed: int, report: ProgressCallback,
                  passes: PassCounts, timings: dict[str, float]) -> None:
        """Fit (or load from its caches) the identity-preserving LoRA, or switch LoRA off."""
        with _timed(timings, "lora"):
            if uses_lora(self.backbone, config):
                spent = self.backbone.finetune_lora(image, prompt, config, report, seed=seed)
                passes.forward += spent
                passes.backward += spent
            else:
                self.backbone.disable_lora()

    def moved_latent(self, latent, work: DragRequest, config: EditConfig) -> torch.Tensor:
        """``latent`` with every operation's content at its target pose and the vacated area filled
        (``config.fill``, ``deformation``): the start of engine v2, and the targets of its objective."""
        found = transport.motions(work.operations, work.image.shape[:2], tuple(latent.shape[-2:]), config.deformation)
        return transport.move_content(latent, found, fill=config.fill)

    def edit_latent(self, latent: torch.Tensor, step: TimestepContext) -> tuple[torch.Tensor, list[float]]:
        """How the latent is edited at one of the first ``pbsi_timesteps`` timesteps (``step.index``).

        The hook other methods override (``baselines.py``): given the edited latent at ``step.t`` and the
        context (the unedited latent, the working-size request, the latent-resolution editable mask), return the
        new latent and a loss history, adding the UNet passes spent to ``step.passes``. Ours: :meth:`_optimise`.
        """
        return self._optimise(latent, step)

    def _optimise(self, latent: torch.Tensor, step: TimestepContext) -> tuple[torch.Tensor, list[float]]:
        """Latent Region Optimisation at one timestep: up to K Adam steps of the LRO loss on the latent."""
        backbone, config, passes = self.backbone, step.config, step.passes
        t, conditioning, reference_latent, latent_mask = step.t, step.conditioning, step.reference_latent, \
            step.latent_mask
        if at_its_own_target(latent, reference_latent, latent_mask, config, step.index):
            return latent, [0.0]
        image_size = step.work.image.shape[:2]
        feature_size = config.feature_size(image_size)
        blocks = config.feature_blocks
        with torch.no_grad():
            reference = start = None
            if config.loss_target != "start":
                reference = as_list(backbone.features(reference_latent, t, conditioning, blocks, feature_size))
                passes.truncated_forward += 1
            if config.loss_target != "warped-features":
                # at the first timestep a moved start *is* the moved unedited latent: no second move and fill
                first_of_moved_start = step.index == 0 and config.start == "moved"
                moved = latent if first_of_moved_start else self.moved_latent(reference_latent, step.work, config)
                start = as_list(backbone.features(moved, t, conditioning, blocks, feature_size))
                passes.truncated_forward += 1
        objective = RegionObjective(config, step.work.operations, image_size, reference, start)
        total = config.pbsi_timesteps * config.iterations if config.eta_span == "all" else config.iterations
        schedule = geometry.eta_schedule(total, progressive=config.progressive)
        offset = step.index * config.iterations if config.eta_span == "all" else 0

        z = latent.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=config.learning_rate)
        history: list[float] = []
        for k in range(config.iterations):
            features = as_list(backbone.features(z, t, conditioning, blocks, feature_size))
            loss = objective(features, schedule[offset + k])
            loss = loss + outside_penalty(z, reference_latent, latent_mask, config.lambda_editable)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.hard_mask:
                z.grad.mul_(latent_mask)
            optimizer.step()
            passes.truncated_forward += 1
            passes.backward += 1
            history.append(float(loss.detach()))
            if stalled(history, config.early_stop):
                break
        return z.detach(), history


def ddim_invert(backbone: Backbone, latent: torch.Tensor, conditioning, config: EditConfig,
                on_step: Callable[[int], None] | None = None) -> list[torch.Tensor]:
    """DDIM inversion of ``latent`` over ``config.inversion_steps`` steps: the trajectory, clean latent first.

    ``on_step(done)`` is called after each UNet forward."""
    from diffusers import DDIMInverseScheduler

    inverse = DDIMInverseScheduler.from_config(backbone.scheduler_config)
    inverse.set_timesteps(config.num_steps, device=backbone.device)
    trajectory = [latent]
    with torch.no_grad():
        for i, t in enumerate(inverse.timesteps[: config.inversion_steps]):
            output = backbone.predict(trajectory[-1], t, conditioning)
            trajectory.append(inverse.step(output, t, trajectory[-1]).prev_sample)
            if on_step is not None:
                on_step(i + 1)
    return trajectory


def reconstruct(backbone: Backbone, image: np.ndarray, strength: float | None = None) -> np.ndarray:
    """Invert ``image`` and denoise it with no edit, at ``strength`` (default: the backbone's preset).

    This measures what inversion alone loses. The request needs an operation; with no PBSI timestep it does
    nothing. No mutual attention, no auto mask and no paste-back, so the output is the model's own.
    """
    base = preset(backbone.name)
    config = base.override(strength=base.strength if strength is None else strength, start="unedited", pbsi_timesteps=0,
                           mutual_attention=False, auto_editable_radius=None, paste_outside_editable=False)
    region = np.zeros(image.shape[:2], dtype=bool)
    region[:4, :4] = True
    placeholder = make_operation("translate", region, (1, 1), (2, 2))
    return DragEditor(backbone, config)(DragRequest(image=image, operations=(placeholder,))).image


def check_config(backbone: Backbone, config: EditConfig) -> None:
    """Settings that depend on the model, checked before any work is done."""
    check_num_steps(config, backbone.scheduler_config)
    modules = dict(backbone.unet.named_modules())
    ups = [n for n in modules if n.count(".") == 1 and n.startswith("up_blocks.")]
    check_model_parts(config, modules.__contains__, ups, len(self_attention_layers(backbone.unet)))


@contextlib.contextmanager
def _timed(timings: dict[str, float], phase: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


def _editable_mask(request: DragRequest, config: EditConfig) -> np.ndarray:
    """The mask of pixels that may change: the request's; else the swept regions grown by a radius; else all."""
    if request.editable_mask is not None:
        return request.editable_mask.astype(bool)
    if config.auto_editable_radius is None:
        return np.ones(request.image.shape[:2], dtype=bool)
    swept = torch.zeros(request.image.shape[:2], dtype=torch.bool)
    for op in request.operations:
        swept |= torch.from_numpy(op.region)
        for eta in (0.25, 0.5, 0.75, 1.0):
            size = request.image.shape[:2]
            swept |= geometry.region_motion(op.region, op.type, op.handle, op.target, op.center, eta, size, size,
                                            config.deformation, op.support)[0] > 0
    radius = config.auto_editable_radius
    grown = F.max_pool2d(swept[None, None].float(), 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0
    return grown.numpy()


def _supports_from(work: DragRequest, request: DragRequest) -> DragRequest:
    """``request`` with the deform supports found on ``work`` (its working-size copy), in its own pixels."""
    scale = (request.image.shape[0] * request.image.shape[1] / (work.image.shape[0] * work.image.shape[1])) ** 0.5
    operations = tuple(op if done.support is None else dataclasses.replace(op, support=done.support * scale)
                       for op, done in zip(request.operations, work.operations, strict=True))
    return dataclasses.replace(request, operations=operations)


def _to_working_size(request: DragRequest, size: tuple[int, int]) -> DragRequest:
    """The request resized to ``size`` (height, width), the backbone's working size for it
    (:meth:`~dragnext.models.base.Backbone.working_size`); points follow the pixel centres."""
    height, width = request.image.shape[:2]
    new_h, new_w = size
    if (new_h, new_w) == (height, width):
        return request
    sx, sy = new_w / width, new_h / height

    def point(p):
        return None if p is None else ((p[0] + 0.5) * sx - 0.5, (p[1] + 0.5) * sy - 0.5)

    def mask(m):
        return None if m is None else np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(
            (new_w, new_h), Image.NEAREST)) > 127

    image = np.asarray(Image.fromarray(request.image).resize((new_w, new_h), Image.LANCZOS))
    operations = tuple(
        Operation(type=op.type, region=mask(op.region), handle=point(op.handle), target=point(op.target),
                  center=point(op.center), polygon=op.polygon,
                  support=None if op.support is None else op.support * (sx * sy) ** 0.5)
        for op in request.operations
    )
    return DragRequest(image=image, operations=operations, editable_mask=mask(request.editable_mask),
                       prompt=request.prompt, source=request.source)
