"""The Gradio page of ``dragnext ui``: layout and wiring only (the logic is in ``session.py`` and the modules it
uses, and in ``runner.py``).

This is the only module of the package that imports Gradio.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check, before import

import gradio as gr  # noqa: E402

from ..instructions import OPERATION_TYPES  # noqa: E402
from ..limits import UI_LIMITS  # noqa: E402
from .coordinates import display_size, layers_to_mask, mask_to_layer, to_display  # noqa: E402
from .runner import EditRunner  # noqa: E402
from .session import Session  # noqa: E402
from .settings import MAX_ITERATIONS, MAX_PBSI_TIMESTEPS, MAX_STEPS, Settings  # noqa: E402
from .uploads import (  # noqa: E402
    MAX_SIDE,
    MAX_UPLOAD_MB,
    UIError,
    read_image_file,
    read_instruction_upload,
    write_instruction_archive,
    write_rounds_archive,
)
from .workspace import SessionFolders, new_folder, serve_once  # noqa: E402

logger = logging.getLogger(__name__)

TABLE_HEADERS = ["#", "type", "handle", "target", "center", "region px"]
# A tab's state (image, operations) is dropped, and its folder removed, this long after the tab last changed it,
# or an hour after the tab was closed (Gradio's rule): clients without a browser never send "closed".
SESSION_TTL_SECONDS = 12 * 3600
# Requests waiting in the queue, all tabs together; more are refused at once ("queue is full") instead of piling up
# behind a long edit.
QUEUE_SIZE = 64
# Half-transparent brushes, so the picture stays visible under the strokes (any alpha > 0 counts as painted).
REGION_BRUSH = ("#ff00ff", 0.6)
EDITABLE_BRUSH = ("#ffffff", 0.6)

# System fonts only: the default theme loads fonts from Google, which an offline machine cannot reach.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)
CSS = """
#status {min-height: 2.5em}
#points img, #result img, #input-view img {image-rendering: pixelated}
"""

INTRO = f"""# dragnext — drag editing
1. **Upload an image** (at most {MAX_UPLOAD_MB} MB and {MAX_SIDE} px per side) or pick an example scene.
2. **Paint the handle region** with the brush.
3. Choose the **type**, then **click** the handle and the target (and the center for rotate and scale) on the
   picture on the right.
4. **Add operation**; repeat for more operations.
5. Optionally paint the **editable mask**: where the image may change.
6. **Run**, then download the edited image and the instruction file (unzipped,
   `dragnext edit instructions/instructions.json` runs the same edit).
"""


def _editor_value(background: Any, layers: Sequence[Any] = ()) -> dict[str, Any]:
    return {"background": background, "layers": list(layers), "composite": None}


def _message(text: str, ok: bool = True) -> str:
    return text if ok else f"**⚠ {text}**"


def _reports_errors(outputs: int, status_index: int) -> Callable:
    """Turn a UIError (or an unexpected failure) into a message in the status line, other outputs unchanged."""

    def wrap(function: Callable) -> Callable:
        @functools.wraps(function)
        def handler(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except UIError as error:
                message = str(error)
            except Exception as error:  # noqa: BLE001 - the page shows any failure; the server keeps serving
                logger.exception("UI handler %s failed", function.__name__)
                message = " ".join(f"Something went wrong ({type(error).__name__}: {error}).".split())
            gr.Warning(message)
            values: list[Any] = [gr.skip()] * outputs
            values[status_index] = _message(message, ok=False)
            return tuple(values)

        return handler

    return wrap


def build_app(runner: EditRunner, *, examples: Sequence[tuple[str, Any]] | None = None,
              workdir: str | None = None, title: str = "dragnext") -> gr.Blocks:
    """The page, editing with ``runner`` (an :class:`EditRunner` holding the model, loaded once).

    ``examples``: ``(label, H x W x 3 uint8 image)`` pairs offered as example scenes (default: the demo's
    scenes). ``workdir``: where each tab's folder is made, for the pictures it is shown, its downloads and its
    restored uploads (default: a temporary folder removed at exit); a tab's folder is removed when the tab
    closes or its state expires (:data:`SESSION_TTL_SECONDS`).
    """
    if examples is None:
        from ..demo import example_edits

        examples = [(f"Example scene {i + 1}", edit.request.image) for i, edit in enumerate(example_edits())]
    if workdir is None:
        workdir = tempfile.mkdtemp(prefix="dragnext-ui-")
        atexit.register(shutil.rmtree, workdir, True)
    defaults = Settings.from_config(runner.base_config)
    folders = SessionFolders(Path(workdir) / "sessions")

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        session_state = gr.State(Session(), time_to_live=SESSION_TTL_SECONDS,
                                 delete_callback=lambda session: folders.remove_folder(session.folder))
        gr.Markdown(INTRO)
        status = gr.Markdown("Upload an image or pick an example scene.", elem_id="status")

        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("### 1. Image")
                upload = gr.UploadButton("Upload an image", file_types=["image"], type="filepath",
                                         elem_id="upload")
                example_buttons = [gr.Button(label, size="sm", elem_id=f"example-{i}")
                                   for i, (label, _) in enumerate(examples)]
                restore_files = gr.File(label="Load an instruction file (.zip, or .json with its PNGs)",
                                        file_count="multiple", file_types=[".zip", ".json", ".png"],
                                        type="filepath", elem_id="restore", height=120)
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### 2. Paint the handle region")
                region_editor = gr.ImageEditor(
                    label="Handle region", type="numpy", image_mode="RGBA", format="png", sources=(),
                    transforms=(), layers=False, canvas_size=(512, 512), height=560,
                    brush=gr.Brush(colors=[REGION_BRUSH], color_mode="fixed", default_size=20),
                    eraser=gr.Eraser(default_size=20), elem_id="region-editor",
                )
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### 3. Type and points")
                op_type = gr.Radio(list(OPERATION_TYPES), value="translate", label="Operation type",
                                   elem_id="op-type")
                points = gr.Image(label="Click: handle, target (then center for rotate/scale)", type="numpy",
                                  interactive=False, buttons=[], elem_id="points", height=420)
                with gr.Row():
                    clear_points = gr.Button("Clear points", size="sm", elem_id="clear-points")
                    add_op = gr.Button("Add operation", variant="primary", elem_id="add-op")

        with gr.Row():
            with gr.Column(scale=3):
                table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, label="Operations",
                                     elem_id="operations")
            with gr.Column(scale=1, min_width=220):
                remove_choice = gr.Dropdown(choices=[], label="Operation to remove", elem_id="remove-choice")
                remove = gr.Button("Remove operation", size="sm", elem_id="remove-op")

        with gr.Accordion("Editable mask (optional: paint where the image may change)", open=False):
            editable_editor = gr.ImageEditor(
                label="Editable mask", type="numpy", image_mode="RGBA", format="png", sources=(), transforms=(),
                layers=False, canvas_size=(512, 512), height=560,
                brush=gr.Brush(colors=[EDITABLE_BRUSH], color_mode="fixed", default_size=24),
                elem_id="editable-editor",
            )
        with gr.Accordion("Settings", open=False):
            preset_choice = gr.Radio(list(runner.presets), value="default", label="Preset", elem_id="preset",
                                     info="default: engine v2 (regions start at their target pose); paper: the "
                                          "DragNeXt paper's settings")
            with gr.Row():
                # No `maximum=` on the fields: Gradio would refuse a larger value with its own pop-up and never
                # call the handler, so the status line would not say what is wrong; the handler checks the bounds.
                steps = gr.Number(defaults.steps, label="DDIM steps", precision=0, minimum=1, elem_id="steps",
                                  info=f"1 to {MAX_STEPS}")
                pbsi = gr.Number(defaults.pbsi_timesteps, label="PBSI timesteps", precision=0, minimum=0,
                                 elem_id="pbsi", info=f"0 to {MAX_PBSI_TIMESTEPS}")
                iterations = gr.Number(defaults.iterations, label="K (Adam steps per timestep)", precision=0,
                                       minimum=1, elem_id="iterations", info=f"1 to {MAX_ITERATIONS}")
                learning_rate = gr.Number(defaults.learning_rate, label="Learning rate", elem_id="lr")
                seed = gr.Number(defaults.seed, label="Seed", precision=0, minimum=0, elem_id="seed")
            with gr.Row():
                lora = gr.Checkbox(defaults.lora, label="Identity LoRA (Stable Diffusion only)", elem_id="lora")
                prompt = gr.Textbox("", label="Prompt (Stable Diffusion only)", elem_id="prompt")

        with gr.Row():
            run = gr.Button("Run", variant="primary", elem_id="run")
            save = gr.Button("Download instructions only", elem_id="save")
        with gr.Row():
            continue_round = gr.Button("Continue from this result", size="sm", elem_id="continue")
            undo_round = gr.Button("Undo round", size="sm", elem_id="undo-round")
            save_rounds = gr.Button("Download all rounds", size="sm", elem_id="save-rounds")
        with gr.Row():
            input_view = gr.Image(label="Input + instructions", interactive=False, elem_id="input-view",
                                  buttons=[], height=420)
            result_view = gr.Image(label="Result", interactive=False, elem_id="result", height=420,
                                   buttons=["download", "fullscreen"])
        downloads = gr.File(label="Downloads: edited image, instruction file", file_count="multiple",
                            interactive=False, elem_id="downloads")

        # ------------------------------------------------------------------------------------------------
        # Handlers. Each returns values for its outputs, in order; errors go to the status line.

        page_outputs = [session_state, region_editor, editable_editor, points, table, remove_choice, prompt,
                        input_view, result_view, downloads, status]

        def folder(session: Session, request: gr.Request) -> Path:
            """The tab's folder: everything the page serves to this tab is written there."""
            session.folder = folders.folder(request.session_hash)
            return session.folder

        def served(image: np.ndarray | None, session: Session, request: gr.Request) -> str | None:
            return None if image is None else serve_once(image, folder(session, request) / "views")

        def show_session(session: Session, kind: str, message: str, request: gr.Request) -> tuple:
            image = session.require_image()
            background = served(to_display(image, image.shape), session, request)
            mask = session.editable_mask
            editable_layers = [] if mask is None else [
                served(mask_to_layer(mask, alpha=round(255 * EDITABLE_BRUSH[1])), session, request)]
            return (session, _editor_value(background), _editor_value(background, editable_layers),
                    served(session.points_view(kind), session, request), _table(session), _choices(session),
                    session.prompt, None, None, None, _message(message))

        @_reports_errors(len(page_outputs), -1)
        def load_upload(session: Session, kind: str, path: str | None, request: gr.Request) -> tuple:
            if not path:
                raise UIError("No file was uploaded.")
            session.load_image(read_image_file(path), os.path.basename(path))
            height, width = session.shape[:2]
            return show_session(session, kind, f"Loaded {session.name} ({width}x{height}). Paint the handle region, "
                                               "then click the points.", request)

        def example_loader(index: int) -> Callable:
            @_reports_errors(len(page_outputs), -1)
            def load_example(session: Session, kind: str, request: gr.Request) -> tuple:
                label, image = examples[index]
                session.load_image(image, label)
                height, width = session.shape[:2]
                return show_session(session, kind, f"Loaded {label} ({width}x{height}, shown "
                                                   f"{display_size(height, width)[1] // width}x larger). "
                                                   "Paint the handle region, then click the points.", request)

            return load_example

        @_reports_errors(len(page_outputs), -1)
        def load_instruction_file(session: Session, kind: str, files: list[str] | None, request: gr.Request) -> tuple:
            loaded = read_instruction_upload(files or [], folder(session, request))
            session.restore(loaded, loaded.source or "")
            count = len(session.operations)
            return show_session(session, kind, f"Restored {loaded.source}: {count} operation"
                                               f"{'s' if count != 1 else ''}. Press Run to edit.", request)

        def restore_and_clear(session: Session, kind: str, files: list[str] | None, request: gr.Request) -> tuple:
            """Restore, then empty the file list, restored or refused: Gradio adds each upload to the files already
            listed, and the next upload must be read alone."""
            return (*load_instruction_file(session, kind, files, request), None)

        def painted(session: Session, value: Any):
            """The strokes of an image editor as a mask of the session's image (None: nothing painted)."""
            return layers_to_mask(value, session.shape) if session.image is not None else None

        def points_picture(session: Session, kind: str, region_value: Any, request: gr.Request) -> str:
            return served(session.points_view(kind, painted(session, region_value)), session, request)

        @_reports_errors(3, -1)
        def click(session: Session, kind: str, region_value: Any, event: gr.SelectData, request: gr.Request) -> tuple:
            message = session.click(event.index, kind)
            return session, points_picture(session, kind, region_value, request), _message(message)

        @_reports_errors(3, -1)
        def refresh_points(session: Session, kind: str, region_value: Any, request: gr.Request) -> tuple:
            if session.image is None:
                return session, None, _message(session.hint(kind))
            return session, points_picture(session, kind, region_value, request), _message(session.hint(kind))

        @_reports_errors(3, -1)
        def clear(session: Session, kind: str, region_value: Any, request: gr.Request) -> tuple:
            session.clear_points()
            return refresh_points(session, kind, region_value, request)

        @_reports_errors(6, -1)
        def add_operation(session: Session, kind: str, region_value: Any, request: gr.Request) -> tuple:
            image = session.require_image()
            operation = session.add_operation(kind, painted(session, region_value))
            count = len(session.operations)
            background = served(to_display(image, image.shape), session, request)
            return (session, _editor_value(background), served(session.points_view(kind), session, request),
                    _table(session), _choices(session),
                    _message(f"Added operation {count} ({operation.type}, {int(operation.region.sum())} px region). "
                             "Add another or press Run."))

        @_reports_errors(5, -1)
        def remove_operation(session: Session, kind: str, index: Any, request: gr.Request) -> tuple:
            removed = session.remove_operation(index)
            return (session, served(session.points_view(kind), session, request), _table(session), _choices(session),
                    _message(f"Removed a {removed.type} operation."))

        def show_preset(name: str) -> tuple:
            shown = Settings.from_config(runner.presets.get(name, runner.base_config))
            return shown.steps, shown.pbsi_timesteps, shown.iterations, shown.learning_rate, shown.lora

        @_reports_errors(4, -1)
        def run_edit(session: Session, editable_value: Any, steps_value, pbsi_value, k_value, lr_value, lora_value,
                     seed_value, prompt_value: str, preset_value: str, request: gr.Request,
                     progress=gr.Progress()) -> tuple:  # noqa: B008 - Gradio's API
            def report(phase: str, done: int, total: int) -> None:
                progress((done, total), desc=phase, unit="steps")

            settings = Settings(steps_value, pbsi_value, k_value, lr_value, lora_value, seed_value, preset_value)
            outcome = runner.run(session, painted(session, editable_value), settings, prompt_value,
                                 folder(session, request), progress=report)
            if not outcome.ok:
                raise UIError(outcome.message)
            return (served(outcome.input_view, session, request), served(outcome.result_view, session, request),
                    [str(p) for p in outcome.files], _message(outcome.message))

        @_reports_errors(2, -1)
        def save_instructions(session: Session, editable_value: Any, prompt_value: str, request: gr.Request) -> tuple:
            edit = session.request(painted(session, editable_value), prompt_value)
            archive = write_instruction_archive(edit, new_folder(folder(session, request), "save"))
            return [str(archive)], _message("Instruction file ready in Downloads.")

        @_reports_errors(len(page_outputs), -1)
        def next_round(session: Session, kind: str, request: gr.Request) -> tuple:
            return show_session(session, kind, session.continue_from_result(), request)

        @_reports_errors(len(page_outputs), -1)
        def previous_round(session: Session, kind: str, request: gr.Request) -> tuple:
            return show_session(session, kind, session.undo_round(), request)

        @_reports_errors(2, -1)
        def download_rounds(session: Session, request: gr.Request) -> tuple:
            rounds = [(r.request, r.result) for r in session.all_rounds()]
            archive = write_rounds_archive(rounds, new_folder(folder(session, request), "rounds"))
            return [str(archive)], _message(f"{len(rounds)} round(s) ready in Downloads.")

        def end_session(request: gr.Request) -> None:
            """The tab was closed or reloaded: its files go now (what it was shown is in Gradio's cache)."""
            folders.remove(request.session_hash)

        # ------------------------------------------------------------------------------------------------
        # Wiring

        # Page handlers share one queue, so a quick click and a type change of the same tab cannot overtake each
        # other (they take milliseconds); edits have their own queue of one, so the page stays usable meanwhile.
        page = {"concurrency_limit": 1, "concurrency_id": "page"}
        upload.upload(load_upload, [session_state, op_type, upload], page_outputs, **page)
        for index, button in enumerate(example_buttons):
            button.click(example_loader(index), [session_state, op_type], page_outputs, **page)
        restore_files.upload(restore_and_clear, [session_state, op_type, restore_files], [*page_outputs, restore_files],
                             **page)
        points.select(click, [session_state, op_type, region_editor], [session_state, points, status], **page)
        op_type.change(refresh_points, [session_state, op_type, region_editor], [session_state, points, status],
                       **page)
        clear_points.click(clear, [session_state, op_type, region_editor], [session_state, points, status], **page)
        add_op.click(add_operation, [session_state, op_type, region_editor],
                     [session_state, region_editor, points, table, remove_choice, status], **page)
        remove.click(remove_operation, [session_state, op_type, remove_choice],
                     [session_state, points, table, remove_choice, status], **page)
        preset_choice.change(show_preset, [preset_choice], [steps, pbsi, iterations, learning_rate, lora], **page)
        settings_inputs = [steps, pbsi, iterations, learning_rate, lora, seed, prompt, preset_choice]
        run.click(run_edit, [session_state, editable_editor, *settings_inputs],
                  [input_view, result_view, downloads, status], concurrency_limit=1, concurrency_id="edit")
        save.click(save_instructions, [session_state, editable_editor, prompt], [downloads, status], **page)
        continue_round.click(next_round, [session_state, op_type], page_outputs, **page)
        undo_round.click(previous_round, [session_state, op_type], page_outputs, **page)
        save_rounds.click(download_rounds, [session_state], [downloads, status], **page)
        app.unload(end_session)

    app.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return app


def _table(session: Session):
    return gr.Dataframe(value=session.operation_rows(), headers=TABLE_HEADERS)


def _choices(session: Session):
    choices = session.operation_choices()
    return gr.Dropdown(choices=choices, value=choices[-1][1] if choices else None)


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs: Any) -> None:
    """Serve the page (blocking): loopback unless ``host`` says otherwise, a share link only if asked."""
    # Gradio decodes the strokes a browser uploads before any handler of ours sees them. PIL's bomb guard at our
    # pixel limit bounds what a hostile client can make it decode (PIL refuses beyond twice the value).
    Image.MAX_IMAGE_PIXELS = UI_LIMITS.max_pixels
    app.launch(server_name=host, server_port=port, share=share, theme=THEME, css=CSS, ssr_mode=False,
               max_file_size=f"{MAX_UPLOAD_MB}mb", show_error=False, footer_links=[], **kwargs)
