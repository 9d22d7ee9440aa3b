"""Running an edit for the page: the same :class:`~dragnext.editor.DragEditor` call as the CLI, one at a time.

No Gradio here: :meth:`EditRunner.run` takes the session and the page's settings and returns a
:class:`RunOutcome` with the pictures, the files to download and a one-line message. A failed edit becomes
a message (and a log record with the traceback), never an exception that reaches the web server.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, EditConfig, preset
from ..files import write_png_atomic
from ..instructions import InstructionError
from .session import (
    Session,
    Settings,
    UIError,
    config_from_settings,
    new_folder,
    overlay,
    to_display,
    write_instruction_archive,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]


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
                 editor: Callable[..., Any] | None = None, presets: Mapping[str, EditConfig] | None = None):
        self.backbone = backbone
        self.base_config = base_config or preset(backbone.name)
        # the presets a page may pick, "default" first; the base config is the default one
        self.presets = {"default": self.base_config, **{k: v for k, v in (presets or {}).items() if k != "default"}}
        if editor is None:
            from ..editor import DragEditor

            editor = DragEditor(backbone, self.base_config)
        self.editor = editor
        self._lock = threading.Lock()

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
                result = self.editor(request, config=config, seed=seed, progress=progress)
        except (ConfigError, InstructionError) as error:
            return RunOutcome(False, str(error))
        except Exception as error:  # noqa: BLE001 - the page reports any failure and the server keeps serving
            logger.exception("edit failed")
            text = " ".join(str(error).split()) or type(error).__name__
            return RunOutcome(False, f"The edit failed ({type(error).__name__}: {text[:300]}). "
                                     "Nothing was changed; adjust the settings or operations and run again.")
        folder = new_folder(workdir, "edit")
        edited = write_png_atomic(folder / "edited.png", result.image)
        archive = write_instruction_archive(request, folder)
        timings = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in result.timings.items())
        return RunOutcome(
            True,
            f"Done in {result.seconds:.1f} s ({timings}).",
            input_view=overlay(request.image, request.operations, request.editable_mask),  # the session may change
            result_view=to_display(result.image, result.image.shape),
            files=[edited, archive],
            result=result,
        )
