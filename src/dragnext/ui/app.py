"""The Gradio page of ``dragnext ui``: layout and wiring only. What each event does is a method of
:class:`~dragnext.ui.handlers.PageHandlers`; the logic is in ``session.py`` and the modules it uses, and in
``runner.py``.

This module and ``handlers.py`` are the only ones of the package that import Gradio.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check, before import

import gradio as gr  # noqa: E402

from ..instructions import OPERATION_TYPES  # noqa: E402
from ..limits import UI_LIMITS  # noqa: E402
from ..selection import DEFAULT_TOLERANCE  # noqa: E402
from .handlers import (  # noqa: E402
    BRUSH,
    EDITABLE_BRUSH,
    REGION_BRUSH,
    REGION_TOOLS,
    TABLE_HEADERS,
    PageHandlers,
)
from .runner import EditRunner  # noqa: E402
from .selecting import MAX_TOLERANCE  # noqa: E402
from .session import Session  # noqa: E402
from .settings import MAX_ITERATIONS, MAX_PBSI_TIMESTEPS, MAX_STEPS, Settings  # noqa: E402
from .uploads import MAX_SIDE, MAX_UPLOAD_MB  # noqa: E402
from .workspace import GRADIO_CACHE_CLEANUP, SessionFolders  # noqa: E402

# A tab's state (image, operations) is dropped, and its folder removed, this long after the tab last changed it,
# or an hour after the tab was closed (Gradio's rule): clients without a browser never send "closed".
SESSION_TTL_SECONDS = 12 * 3600
# Requests waiting in the queue, all tabs together; more are refused at once ("queue is full") instead of piling up
# behind a long edit.
QUEUE_SIZE = 64

# System fonts only: the default theme loads fonts from Google, which an offline machine cannot reach.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)
CSS = """
#status {min-height: 2.5em}
#points img, #select-view img, #result img, #input-view img {image-rendering: pixelated}
"""

INTRO = f"""# dragnext — drag editing
1. **Upload an image** (at most {MAX_UPLOAD_MB} MB and {MAX_SIDE} px per side) or pick an example scene.
2. **Paint the handle region** with the brush, or click on it with *Click to select*.
3. Choose the **type**, then **click** the handle and the target (and the center for rotate and scale) on the
   picture on the right.
4. **Add operation**; repeat for more operations.
5. Optionally paint the **editable mask**: where the image may change.
6. **Run**, then download the edited image and the instruction file (unzipped,
   `dragnext edit instructions/instructions.json` runs the same edit).
"""


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
    handlers = PageHandlers(runner, folders, examples)

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=GRADIO_CACHE_CLEANUP) as app:
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
                with gr.Row():
                    region_tool = gr.Radio(list(REGION_TOOLS), value=BRUSH, label="Region tool", elem_id="region-tool",
                                           info="the brush paints in the editor; a click selects the area of like "
                                                "colour under it on the picture that appears")
                    tolerance = gr.Slider(0, MAX_TOLERANCE, value=DEFAULT_TOLERANCE, step=1, label="Tolerance",
                                          info="colour difference (Delta E) a click's area may span", visible=False,
                                          elem_id="tolerance")
                select_view = gr.Image(label="Click on the part to move (the region is tinted cyan)", type="numpy",
                                       interactive=False, buttons=[], elem_id="select-view", height=420, visible=False)
                region_editor = gr.ImageEditor(
                    label="Handle region", type="numpy", image_mode="RGBA", format="png", sources=(),
                    transforms=(), layers=False, canvas_size=(512, 512), height=560,
                    brush=gr.Brush(colors=[REGION_BRUSH], color_mode="fixed", default_size=20),
                    eraser=gr.Eraser(default_size=20), elem_id="region-editor",
                )
                clear_region = gr.Button("Clear region", size="sm", elem_id="clear-region")
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
                steps = gr.Number(defaults.num_steps, label="DDIM steps", precision=0, minimum=1, elem_id="steps",
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
        # Wiring: each handler's outputs are the components it names (handlers.py), in its order.

        components = {"session": session_state, "region_editor": region_editor, "editable_editor": editable_editor,
                      "points": points, "select_view": select_view, "table": table, "remove_choice": remove_choice,
                      "prompt": prompt, "input_view": input_view, "result_view": result_view, "downloads": downloads,
                      "tolerance": tolerance, "status": status}

        def outputs(function: Callable) -> list[Any]:
            return [components[name] for name in function.outputs]

        # Page handlers share one queue, so a quick click and a type change of the same tab cannot overtake each
        # other (they take milliseconds); edits have their own queue of one, so the page stays usable meanwhile.
        page = {"concurrency_limit": 1, "concurrency_id": "page"}
        h = handlers
        upload.upload(h.load_upload, [session_state, op_type, upload], outputs(h.load_upload), **page)
        for index, button in enumerate(example_buttons):
            load_example = h.example_loader(index)
            button.click(load_example, [session_state, op_type], outputs(load_example), **page)
        restore_files.upload(h.restore_and_clear, [session_state, op_type, restore_files],
                             [*outputs(h.load_instruction_file), restore_files], **page)

        region_tool.change(h.show_tool, [session_state, region_tool, op_type, region_editor],
                           outputs(h.show_tool), **page)
        select_view.select(h.select, [session_state, region_tool, tolerance, op_type, region_editor],
                           outputs(h.select), **page)
        tolerance.release(h.reselect, [session_state, tolerance, op_type, region_editor], outputs(h.reselect), **page)
        clear_region.click(h.clear_region, [session_state, op_type], outputs(h.clear_region), **page)

        region_inputs = [session_state, op_type, region_editor]
        points.select(h.click, region_inputs, outputs(h.click), **page)
        op_type.change(h.refresh_points, region_inputs, outputs(h.refresh_points), **page)
        clear_points.click(h.clear_points, region_inputs, outputs(h.clear_points), **page)
        add_op.click(h.add_operation, region_inputs, outputs(h.add_operation), **page)
        remove.click(h.remove_operation, [session_state, op_type, remove_choice], outputs(h.remove_operation), **page)
        preset_choice.change(h.show_preset, [preset_choice], [steps, pbsi, iterations, learning_rate, lora], **page)
        settings_inputs = [steps, pbsi, iterations, learning_rate, lora, seed, prompt, preset_choice]
        run.click(h.run_edit, [session_state, editable_editor, *settings_inputs], outputs(h.run_edit),
                  concurrency_limit=1, concurrency_id="edit")
        save.click(h.save_instructions, [session_state, editable_editor, prompt], outputs(h.save_instructions), **page)
        continue_round.click(h.next_round, [session_state, op_type], outputs(h.next_round), **page)
        undo_round.click(h.previous_round, [session_state, op_type], outputs(h.previous_round), **page)
        save_rounds.click(h.download_rounds, [session_state], outputs(h.download_rounds), **page)
        app.unload(h.end_session)

    app.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return app


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs: Any) -> None:
    """Serve the page (blocking): loopback unless ``host`` says otherwise, a share link only if asked."""
    # Gradio decodes the strokes a browser uploads before any handler of ours sees them. PIL's bomb guard at our
    # pixel limit bounds what a hostile client can make it decode (PIL refuses beyond twice the value).
    Image.MAX_IMAGE_PIXELS = UI_LIMITS.max_pixels
    app.launch(server_name=host, server_port=port, share=share, theme=THEME, css=CSS, ssr_mode=False,
               max_file_size=f"{MAX_UPLOAD_MB}mb", show_error=False, footer_links=[], **kwargs)
