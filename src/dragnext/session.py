"""Editing one picture again and again: its inversion and LoRA computed once, each new edit reusing them.

An edit spends most of its passes before any drag is applied: the identity LoRA (Stable Diffusion) and the DDIM
inversion depend on the picture, the prompt, the seed and a few settings, not on the operations. An
:class:`EditSession` keeps them, so trying other points, regions or optimisation settings on the same picture
costs the denoising alone::

    session = EditSession(backbone, image, prompt="a cat")
    first = session.edit([make_operation("translate", region, (20, 30), (40, 30))])
    second = session.edit([make_operation("translate", region, (20, 30), (44, 26))])
    second.reused        # ('inversion', 'lora') on Stable Diffusion, ('inversion',) on the bundled model
    nxt = session.continue_from(second)  # the next round starts from the result

Which settings an inversion depends on: :func:`inversion_key`. Not thread-safe: one session per worker.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from .config import EditConfig
from .editor import DragEditor, EditResult, Inverted, PassCounts, ProgressCallback, uses_lora
from .instructions import DragRequest, Operation, check_image
from .models.base import Backbone


def inversion_key(backbone: Backbone, config: EditConfig, seed: int) -> tuple:
    """The settings an image's inversion depends on (with the image and the prompt, fixed in a session)."""
    lora = uses_lora(backbone, config)
    return (config.num_steps, config.inversion_steps,
            (config.lora_rank, config.lora_steps, config.lora_learning_rate, seed) if lora else None)


class _SessionEditor(DragEditor):
    def __init__(self, backbone: Backbone, config: EditConfig | None):
        super().__init__(backbone, config)
        self.inversions: dict[tuple, Inverted] = {}

    def _invert(self, work: DragRequest, prompt: str, config: EditConfig, seed: int, report: ProgressCallback,
                passes: PassCounts, timings: dict[str, float]) -> Inverted:
        key = inversion_key(self.backbone, config, seed)
        kept = self.inversions.get(key)
        if kept is None:
            kept = self.inversions[key] = super()._invert(work, prompt, config, seed, report, passes, timings)
            return kept
        # the backbone may have edited another picture since: put this one's LoRA back (from its cache, no pass)
        self._fit_lora(work.image, prompt, config, seed, report, passes, timings)
        reused = ("inversion", "lora") if uses_lora(self.backbone, config) else ("inversion",)
        return Inverted(kept.latent0, kept.conditioning, kept.trajectory, reused)


class EditSession:
    """One picture (and prompt) edited any number of times with one backbone; see the module docstring."""

    def __init__(self, backbone: Backbone, image: np.ndarray, *, prompt: str = "",
                 config: EditConfig | None = None):
        self.image = np.ascontiguousarray(check_image(image))
        self.prompt = prompt
        self._editor = _SessionEditor(backbone, config)

    @property
    def backbone(self) -> Backbone:
        return self._editor.backbone

    def request(self, operations: Iterable[Operation], editable_mask: np.ndarray | None = None) -> DragRequest:
        return DragRequest(image=self.image, operations=tuple(operations), editable_mask=editable_mask,
                           prompt=self.prompt)

    def edit(self, operations: Iterable[Operation], *, editable_mask: np.ndarray | None = None,
             config: EditConfig | None = None, seed: int = 0,
             progress: ProgressCallback | None = None) -> EditResult:
        """Edit the session's picture; ``result.reused`` names what an earlier edit had already computed."""
        return self._editor(self.request(operations, editable_mask), config, seed=seed, progress=progress)

    def continue_from(self, result: EditResult) -> EditSession:
        """A new session on ``result``'s picture, same backbone, prompt and settings: the next round."""
        return EditSession(self.backbone, result.image, prompt=self.prompt, config=self._editor.config)

    def clear(self) -> None:
        """Forget the kept inversions (their memory: a few latents per setting)."""
        self._editor.inversions.clear()


class EditSessions:
    """The sessions of the pictures edited lately, at most ``kept`` (each holds a few latents): the same picture
    with the same prompt gets the same session, so its inversion and LoRA are reused."""

    def __init__(self, backbone: Backbone, config: EditConfig | None = None, *, kept: int = 4):
        self.backbone, self.config, self.kept = backbone, config, kept
        self._sessions: OrderedDict[str, EditSession] = OrderedDict()

    def get(self, image: np.ndarray, prompt: str = "") -> EditSession:
        image = check_image(image)
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes())
        digest.update(repr((image.shape, prompt)).encode())
        key = digest.hexdigest()
        session = self._sessions.pop(key, None) or EditSession(self.backbone, image, prompt=prompt,
                                                              config=self.config)
        self._sessions[key] = session
        while len(self._sessions) > self.kept:
            self._sessions.popitem(last=False)
        return session
