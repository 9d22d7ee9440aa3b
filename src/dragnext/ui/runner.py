"""Running an edit for the page: the same :class:`~dragnext.editor.DragEditor` call as the CLI, one at a time.

No Gradio here: :meth:`EditRunner.run` takes the session and the page's settings and returns a
:class:`RunOutcome` with the pictures, the files to download and a one-line message. A failed edit becomes
a message (and a log record with the traceback), never an exception that reaches the web server.

Edits share one model, so they queue; an edit that runs longer than ``time_limit`` seconds is stopped, so one
request cannot hold the queue for ever. The editor reports progress after every inversion step, PBSI
timestep and denoising step; the runner's progress callback raises :class:`EditTimedOut` at the first report
past the limit, and the editor unwinds (its hooks and attention processors are removed in ``finally``
blocks). The limit is checked at those reports, so an edit overruns it by at most one step (one PBSI
timestep is ``K`` optimiser steps, bounded by the page's settings).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, EditConfig, preset
from ..files import write_png_atomic
from ..instructions import InstructionError
from ..limits import one_line
from .coordinates import to_display
from .drawing import overlay
from .session import Session
from .settings import Settings, config_from_settings
from .uploads import UIError, write_instruction_archive
from .workspace import new_folder

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]

# The longest one edit may run (seconds) before it is stopped. A Stable Diffusion edit at 512 px with the paper's
# settings takes about a minute on a GPU and a quarter of an hour on a CPU; `dragnext ui --time-limit` changes it.
DEFAULT_TIME_LIMIT = 1800.0
# Pictures whose inversion (and LoRA) the runner keeps for the next run: a few latents each.
KEPT_SESSIONS = 2


class EditTimedOut(Exception):
    """Raised from the progress callback when an edit runs past its time limit."""


@dataclass
class RunOutcome:
    ok: bool
    message: str  # one line for the page
    input_view: np.ndarray | None = None  # the input with the regions and arrows drawn, display size
    result_view: np.ndarray | None = None  # the edited image, display size
    files: list[Path] = field(default_factory=list)  # edited.png, instructions.zip
    result: Any = None  # the EditResult


class EditRunner:
    """Edits with one backbone, loaded once. A lock makes edits run one at a time even if a caller
    forgets the page's queue: a backbone holds state (LoRA weights, attention processors) during an edit."""

    def __init__(self, backbone: Any, base_config: EditConfig | None = None,
                 editor: Callable[..., Any] | None = None, presets: Mapping[str, EditConfig] | None = None,
                 time_limit: float | None = DEFAULT_TIME_LIMIT):
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")
        self.backbone = backbone
        self.time_limit = time_limit  # seconds one edit may run (None: no limit), not counting its wait in the queue
        self.base_config = base_config or preset(backbone.name)
        # the presets a page may pick, "default" first; the base config is the default one
        self.presets = {"default": self.base_config, **{k: v for k, v in (presets or {}).items() if k != "default"}}
        self.editor = editor or self._edit_in_session
        self._sessions = None  # EditSessions, made at the first edit (importing it loads torch)
        self._lock = threading.Lock()

    def _edit_in_session(self, request, config: EditConfig, seed: int, progress: ProgressCallback | None):
        """Edit through the picture's :class:`~dragnext.session.EditSession`, so running the same picture again
        with other points or settings reuses its inversion and LoRA."""
        if self._sessions is None:
            from ..session import EditSessions

            self._sessions = EditSessions(self.backbone, self.base_config, kept=KEPT_SESSIONS)
        session = self._sessions.get(request.image, request.prompt)
        return session.edit(request.operations, editable_mask=request.editable_mask, config=config, seed=seed,
                            progress=progress)

    def run(self, session: Session, editable_mask: np.ndarray | None, settings: Settings, prompt: str | None,
            workdir: str | os.PathLike[str], progress: ProgressCallback | None = None) -> RunOutcome:
        try:
            request = session.request(editable_mask, prompt)
            if settings.preset not in self.presets:
                raise UIError(f"Preset: {settings.preset!r} is not one of {', '.join(self.presets)}.")
            config, seed = config_from_settings(self.presets[settings.preset], settings)
        except UIError as error:
            return RunOutcome(False, str(error))
        try:
            with self._lock:
                result = self.editor(request, config=config, seed=seed, progress=self._within_limit(progress))
        except EditTimedOut:
            logger.warning("edit stopped after its time limit of %g s", self.time_limit)
            return RunOutcome(False, f"The edit was stopped after {self.time_limit:g} s, the limit for one edit on "
                                     "this server. Nothing was changed; use fewer steps, PBSI timesteps or K, or a "
                                     "smaller image.")
        except (ConfigError, InstructionError) as error:
            return RunOutcome(False, str(error))
        except Exception as error:  # noqa: BLE001 - the page reports any failure and the server keeps serving
            logger.exception("edit failed")
            return RunOutcome(False, f"The edit failed ({type(error).__name__}: {one_line(error, 300)}). "
                                     "Nothing was changed; adjust the settings or operations and run again.")
        session.record_edit(request, result.image)
        folder = new_folder(workdir, "edit")
        edited = write_png_atomic(folder / "edited.png", result.image)
        archive = write_instruction_archive(request, folder)
        timings = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in result.timings.items())
        reused = getattr(result, "reused", ())
        reused = f" Reused this picture's {' and '.join(reused)} from the run before." if reused else ""
        return RunOutcome(
            True,
            f"Done in {result.seconds:.1f} s ({timings}).{reused}",
            input_view=overlay(request.image, request.operations, request.editable_mask),  # the session may change
            result_view=to_display(result.image, result.image.shape),
            files=[edited, archive],
            result=result,
        )

    def _within_limit(self, progress: ProgressCallback | None) -> ProgressCallback:
        """``progress``, raising :class:`EditTimedOut` once the edit has run for longer than the time limit.

        Called after the lock is taken, so the time an edit waits for the one before it does not count.
        """
        deadline = None if self.time_limit is None else time.monotonic() + self.time_limit

        def report(phase: str, done: int, total: int) -> None:
            if progress is not None:
                progress(phase, done, total)
            if deadline is not None and time.monotonic() > deadline:
                raise EditTimedOut(phase)

        return report
