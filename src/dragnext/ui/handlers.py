"""The page's event handlers: what each button, click and upload does, as methods of :class:`PageHandlers`.

A handler takes the values of its event's inputs (the tab's :class:`Session` first) and returns values for its
outputs, in the order named by :func:`handler` (``app.py`` wires them by these names). Errors become a message
in the status line and change nothing. The logic itself is in ``session.py`` and the modules beside it; this
module and ``app.py`` are the only ones that import Gradio.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check, before import

import gradio as gr  # noqa: E402

from .coordinates import display_size, layers_to_mask, mask_to_layer, to_display  # noqa: E402
from .runner import EditRunner  # noqa: E402
from .selecting import SELECT, UNSELECT  # noqa: E402
from .session import Session  # noqa: E402
from .settings import Settings  # noqa: E402
from .uploads import (  # noqa: E402
    UIError,
    read_image_file,
    read_instruction_upload,
    write_instruction_archive,
    write_rounds_archive,
)
from .workspace import SessionFolders, new_folder, serve_once  # noqa: E402

logger = logging.getLogger(__name__)

TABLE_HEADERS = ["#", "type", "handle", "target", "center", "region px"]
# Half-transparent brushes, so the picture stays visible under the strokes (any alpha > 0 counts as painted).
REGION_BRUSH = ("#ff00ff", 0.6)
EDITABLE_BRUSH = ("#ffffff", 0.6)
REGION_COLOR = (255, 0, 255)  # REGION_BRUSH as RGB, for a selected region put on the layer
# The region tools (the radio beside the brush): painting in the editor, or clicking on the picture below it.
BRUSH, CLICK_SELECT, CLICK_UNSELECT = "Brush", "Click to select", "Click to unselect"
REGION_TOOLS = {BRUSH: None, CLICK_SELECT: SELECT, CLICK_UNSELECT: UNSELECT}

# The outputs of the handlers that show a whole session (a new image, a restored file, a round).
PAGE_OUTPUTS = ("session", "region_editor", "editable_editor", "points", "select_view", "table", "remove_choice",
                "prompt", "input_view", "result_view", "downloads", "status")


def message(text: str, ok: bool = True) -> str:
    return text if ok else f"**⚠ {text}**"


def handler(*outputs: str) -> Callable:
    """Name a handler's outputs (components of ``app.py``, in order, one of them ``status``) and turn a UIError (or
    an unexpected failure) into a message in the status line, the other outputs unchanged."""
    status_index = outputs.index("status")

    def wrap(function: Callable) -> Callable:
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except UIError as error:
                text = str(error)
            except Exception as error:  # noqa: BLE001 - the page shows any failure; the server keeps serving
                logger.exception("UI handler %s failed", function.__name__)
                from ..limits import one_line  # imported here: only this error path needs it

                text = one_line(f"Something went wrong ({type(error).__name__}: {error}).")
            gr.Warning(text)
            values: list[Any] = [gr.skip()] * len(outputs)
            values[status_index] = message(text, ok=False)
            return tuple(values)

        run.outputs = outputs
        return run

    return wrap


def editor_value(background: Any, layers: Sequence[Any] = ()) -> dict[str, Any]:
    return {"background": background, "layers": list(layers), "composite": None}


def table(session: Session):
    return gr.Dataframe(value=session.operation_rows(), headers=TABLE_HEADERS)


def choices(session: Session):
    options = session.operation_choices()
    return gr.Dropdown(choices=options, value=options[-1][1] if options else None)


def painted(session: Session, value: Any) -> np.ndarray | None:
    """The strokes of an image editor as a mask of the session's image (None: nothing painted)."""
    return layers_to_mask(value, session.shape) if session.image is not None else None


class PageHandlers:
    """The handlers of one page: they share the runner (the model), the tabs' folders and the example scenes."""

    def __init__(self, runner: EditRunner, folders: SessionFolders, examples: Sequence[tuple[str, Any]]):
        self.runner = runner
        self.folders = folders
        self.examples = list(examples)

    # --- files served to a tab

    def folder(self, session: Session, request: gr.Request) -> Path:
        """The tab's folder: everything the page serves to this tab is written there."""
        session.folder = self.folders.folder(request.session_hash)
        return session.folder

    def served(self, image: np.ndarray | None, session: Session, request: gr.Request) -> str | None:
        return None if image is None else serve_once(image, self.folder(session, request) / "views")

    def region_layers(self, session: Session, region: np.ndarray | None, request: gr.Request) -> list[str]:
        """``region`` as the region editor's layer (none when empty)."""
        if region is None:
            return []
        layer = mask_to_layer(region, REGION_COLOR, alpha=round(255 * REGION_BRUSH[1]))
        return [self.served(layer, session, request)]

    def background(self, session: Session, request: gr.Request) -> str | None:
        image = session.require_image()
        return self.served(to_display(image, image.shape), session, request)

    def show_session(self, session: Session, kind: str, text: str, request: gr.Request) -> tuple:
        background = self.background(session, request)
        mask = session.editable_mask
        editable_layers = [] if mask is None else [
            self.served(mask_to_layer(mask, alpha=round(255 * EDITABLE_BRUSH[1])), session, request)]
        return (session, editor_value(background), editor_value(background, editable_layers),
                self.served(session.points_view(kind), session, request),
                self.served(session.selection_view(None), session, request), table(session), choices(session),
                session.prompt, None, None, None, message(text))

    # --- loading an image, an instruction file or a round

    @handler(*PAGE_OUTPUTS)
    def load_upload(self, session: Session, kind: str, path: str | None, request: gr.Request) -> tuple:
        if not path:
            raise UIError("No file was uploaded.")
        session.load_image(read_image_file(path), os.path.basename(path))
        height, width = session.shape[:2]
        return self.show_session(session, kind, f"Loaded {session.name} ({width}x{height}). Paint the handle "
                                                "region, then click the points.", request)

    def example_loader(self, index: int) -> Callable:
        """The handler of the button of example ``index``."""

        @handler(*PAGE_OUTPUTS)
        def load_example(session: Session, kind: str, request: gr.Request) -> tuple:
            label, image = self.examples[index]
            session.load_image(image, label)
            height, width = session.shape[:2]
            return self.show_session(session, kind, f"Loaded {label} ({width}x{height}, shown "
                                                    f"{display_size(height, width)[1] // width}x larger). "
                                                    "Paint the handle region, then click the points.", request)

        return load_example

    @handler(*PAGE_OUTPUTS)
    def load_instruction_file(self, session: Session, kind: str, files: list[str] | None,
                              request: gr.Request) -> tuple:
        loaded = read_instruction_upload(files or [], self.folder(session, request))
        session.restore(loaded, loaded.source or "")
        count = len(session.operations)
        return self.show_session(session, kind, f"Restored {loaded.source}: {count} operation"
                                                f"{'s' if count != 1 else ''}. Press Run to edit.", request)

    def restore_and_clear(self, session: Session, kind: str, files: list[str] | None, request: gr.Request) -> tuple:
        """:meth:`load_instruction_file`, then empty the file list (one more output), restored or refused: Gradio
        adds each upload to the files already listed, and the next upload must be read alone."""
        return (*self.load_instruction_file(session, kind, files, request), None)

    @handler(*PAGE_OUTPUTS)
    def next_round(self, session: Session, kind: str, request: gr.Request) -> tuple:
        return self.show_session(session, kind, session.continue_from_result(), request)

    @handler(*PAGE_OUTPUTS)
    def previous_round(self, session: Session, kind: str, request: gr.Request) -> tuple:
        return self.show_session(session, kind, session.undo_round(), request)

    # --- the region: brush strokes or clicks

    @handler("session", "region_editor", "select_view", "points", "status")
    def select(self, session: Session, tool: str, tolerance: Any, kind: str, region_value: Any,
               event: gr.SelectData, request: gr.Request) -> tuple:
        mode = REGION_TOOLS.get(tool)
        if mode is None:
            raise UIError(f"Choose {CLICK_SELECT} or {CLICK_UNSELECT} to select the region by clicks.")
        region, text = session.select(event.index, mode, painted(session, region_value), tolerance)
        return self.show_region(session, kind, region, text, request)

    @handler("session", "region_editor", "select_view", "points", "status")
    def reselect(self, session: Session, tolerance: Any, kind: str, region_value: Any, request: gr.Request) -> tuple:
        again = session.reselect(painted(session, region_value), tolerance)
        if again is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self.show_region(session, kind, *again, request)

    @handler("session", "region_editor", "select_view", "points", "status")
    def clear_region(self, session: Session, kind: str, request: gr.Request) -> tuple:
        session.clear_region()
        return self.show_region(session, kind, None, "The region is cleared: paint it or click to select it.",
                                request)

    def show_region(self, session: Session, kind: str, region: np.ndarray | None, text: str,
                    request: gr.Request) -> tuple:
        layers = self.region_layers(session, region, request)
        return (session, editor_value(self.background(session, request), layers),
                self.served(session.selection_view(region), session, request),
                self.served(session.points_view(kind, region), session, request), message(text))

    @handler("session", "select_view", "tolerance", "status")
    def show_tool(self, session: Session, tool: str, kind: str, region_value: Any, request: gr.Request) -> tuple:
        """The region tool changed: the picture to click (showing the region as painted now) and the tolerance
        appear for the click tools and go for the brush."""
        clicking = REGION_TOOLS.get(tool) is not None
        view = None
        if session.image is not None:
            view = self.served(session.selection_view(painted(session, region_value)), session, request)
        if session.image is None:
            text = session.hint(kind)
        elif not clicking:
            text = "Paint the handle region with the brush (eraser and undo in the tool bar)."
        elif tool == CLICK_SELECT:
            text = "Click on the picture above the editor: the area of like colour under the click joins the region."
        else:
            text = "Click on the picture above the editor: the area of like colour under the click leaves the region."
        return (session, gr.Image(value=view, visible=clicking), gr.Slider(visible=clicking), message(text))

    # --- points and operations

    def points_picture(self, session: Session, kind: str, region_value: Any, request: gr.Request) -> str | None:
        return self.served(session.points_view(kind, painted(session, region_value)), session, request)

    @handler("session", "points", "status")
    def click(self, session: Session, kind: str, region_value: Any, event: gr.SelectData,
              request: gr.Request) -> tuple:
        text = session.click(event.index, kind)
        return session, self.points_picture(session, kind, region_value, request), message(text)

    @handler("session", "points", "status")
    def refresh_points(self, session: Session, kind: str, region_value: Any, request: gr.Request) -> tuple:
        if session.image is None:
            return session, None, message(session.hint(kind))
        return session, self.points_picture(session, kind, region_value, request), message(session.hint(kind))

    @handler("session", "points", "status")
    def clear_points(self, session: Session, kind: str, region_value: Any, request: gr.Request) -> tuple:
        session.clear_points()
        return self.refresh_points(session, kind, region_value, request)

    @handler("session", "region_editor", "select_view", "points", "table", "remove_choice", "status")
    def add_operation(self, session: Session, kind: str, region_value: Any, request: gr.Request) -> tuple:
        operation = session.add_operation(kind, painted(session, region_value))
        count = len(session.operations)
        return (session, editor_value(self.background(session, request)),
                self.served(session.selection_view(None), session, request),
                self.served(session.points_view(kind), session, request), table(session), choices(session),
                message(f"Added operation {count} ({operation.type}, {int(operation.region.sum())} px region). "
                        "Add another or press Run."))

    @handler("session", "points", "table", "remove_choice", "status")
    def remove_operation(self, session: Session, kind: str, index: Any, request: gr.Request) -> tuple:
        removed = session.remove_operation(index)
        return (session, self.served(session.points_view(kind), session, request), table(session), choices(session),
                message(f"Removed a {removed.type} operation."))

    # --- settings, the edit and downloads

    def show_preset(self, name: str) -> tuple:
        shown = Settings.from_config(self.runner.presets.get(name, self.runner.base_config))
        return shown.num_steps, shown.pbsi_timesteps, shown.iterations, shown.learning_rate, shown.lora

    @handler("input_view", "result_view", "downloads", "status")
    def run_edit(self, session: Session, editable_value: Any, steps_value, pbsi_value, k_value, lr_value, lora_value,
                 seed_value, prompt_value: str, preset_value: str, request: gr.Request,
                 progress=gr.Progress()) -> tuple:  # noqa: B008 - Gradio's API
        def report(phase: str, done: int, total: int) -> None:
            progress((done, total), desc=phase, unit="steps")

        settings = Settings(steps_value, pbsi_value, k_value, lr_value, lora_value, seed_value, preset_value)
        outcome = self.runner.run(session, painted(session, editable_value), settings, prompt_value,
                                  self.folder(session, request), progress=report)
        if not outcome.ok:
            raise UIError(outcome.message)
        return (self.served(outcome.input_view, session, request), self.served(outcome.result_view, session, request),
                [str(p) for p in outcome.files], message(outcome.message))

    @handler("downloads", "status")
    def save_instructions(self, session: Session, editable_value: Any, prompt_value: str,
                          request: gr.Request) -> tuple:
        edit = session.request(painted(session, editable_value), prompt_value)
        archive = write_instruction_archive(edit, new_folder(self.folder(session, request), "save"))
        return [str(archive)], message("Instruction file ready in Downloads.")

    @handler("downloads", "status")
    def download_rounds(self, session: Session, request: gr.Request) -> tuple:
        rounds = [(r.request, r.result) for r in session.all_rounds()]
        archive = write_rounds_archive(rounds, new_folder(self.folder(session, request), "rounds"))
        return [str(archive)], message(f"{len(rounds)} round(s) ready in Downloads.")

    def end_session(self, request: gr.Request) -> None:
        """The tab was closed or reloaded: its files go now (what it was shown is in Gradio's cache)."""
        self.folders.remove(request.session_hash)
