"""The web UI's resources under hostile or careless use: caps on operations and settings, a time limit on one
edit, per-tab folders removed when the tab's session ends, and served files that are never rewritten."""

from __future__ import annotations

import json
import math
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dragnext.config import BUNDLED
from dragnext.instructions import DragRequest, make_operation
from dragnext.ui.runner import EditRunner
from dragnext.ui.session import MAX_OPERATIONS, MAX_PROMPT_CHARS, Session
from dragnext.ui.settings import MAX_ITERATIONS, MAX_PBSI_TIMESTEPS, MAX_STEPS, Settings, config_from_settings
from dragnext.ui.uploads import UIError, write_instruction_archive
from dragnext.ui.workspace import SessionFolders, new_folder, serve_once

SIZE = 64
ZOOM = 8


def scene() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def add_translate(session: Session) -> None:
    for x, y in ((10, 10), (20, 10)):
        session.click([x * ZOOM + ZOOM // 2, y * ZOOM + ZOOM // 2], "translate")
    session.add_operation("translate", box(5, 15, 5, 15))


def ready_session() -> Session:
    session = Session()
    session.load_image(scene(), "test")
    add_translate(session)
    return session


# ---------------------------------------------------------------------------------------------- caps


def test_operations_are_capped_with_a_message_and_the_session_is_unchanged():
    session = Session()
    session.load_image(scene(), "test")
    for _ in range(MAX_OPERATIONS):
        add_translate(session)
    with pytest.raises(UIError, match=f"at most {MAX_OPERATIONS} operations"):
        add_translate(session)
    assert len(session.operations) == MAX_OPERATIONS


def test_a_restored_request_over_the_cap_is_refused():
    operation = make_operation("translate", box(5, 15, 5, 15), (10, 10), (20, 10))
    request = DragRequest(image=scene(), operations=(operation,) * (MAX_OPERATIONS + 1))
    session = Session()
    with pytest.raises(UIError, match=f"at most {MAX_OPERATIONS}"):
        session.restore(request)
    assert session.image is None


def test_a_long_prompt_is_refused():
    with pytest.raises(UIError, match=f"the limit is {MAX_PROMPT_CHARS}"):
        ready_session().request(prompt="a" * (MAX_PROMPT_CHARS + 1))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(MAX_STEPS + 1, 2, 3, 0.1, False, 0), f"Steps: must be a whole number from 1 to {MAX_STEPS}"),
        (Settings(10, MAX_PBSI_TIMESTEPS + 1, 3, 0.1, False, 0), f"PBSI timesteps: .* from 0 to {MAX_PBSI_TIMESTEPS}"),
        (Settings(10, 2, MAX_ITERATIONS + 1, 0.1, False, 0), f"K .* 1 to {MAX_ITERATIONS}, got {MAX_ITERATIONS + 1}"),
        (Settings(10, 2, 1e300, 0.1, False, 0), "K .* got 1e\\+300"),
        (Settings(10 ** 400, 2, 3, 0.1, False, 0), "Steps: the number is too large"),
        (Settings(math.inf, 2, 3, 0.1, False, 0), "Steps: .* got inf"),
        (Settings(math.nan, 2, 3, 0.1, False, 0), "Steps: .* got nan"),
        (Settings(True, 2, 3, 0.1, False, 0), "Steps: True is not a number"),
        (Settings(10, 2, 3, math.inf, False, 0), "Learning rate: must be a positive number, got inf"),
        (Settings(10, 2, 3, math.nan, False, 0), "Learning rate: must be a positive number, got nan"),
        (Settings(10, 2, 3, 0.1, False, 2**63), "Seed: must be a whole number from 0 to 9223372036854775807"),
        (Settings(10, 2, 3, 0.1, False, "9" * 500), "Seed: .* got inf|Seed: the number is too large"),
    ],
)
def test_settings_beyond_the_pages_bounds_are_refused(settings, message):
    with pytest.raises(UIError, match=message):
        config_from_settings(BUNDLED, settings)


def test_the_presets_fit_the_pages_bounds():
    from dragnext.config import PRESET_NAMES, preset

    for backbone in ("bundled", "stable-diffusion"):
        for name in PRESET_NAMES:
            config, _ = config_from_settings(BUNDLED, Settings.from_config(preset(backbone, name)))
            assert config.num_steps <= MAX_STEPS and config.iterations <= MAX_ITERATIONS


# ---------------------------------------------------------------------------------------------- time limit


class SlowEditor:
    """Reports progress every ``step`` seconds for ``steps`` steps, then returns the inverted image."""

    def __init__(self, steps: int, step: float):
        self.steps, self.step = steps, step
        self.finished = 0

    def __call__(self, request, config=None, seed=0, progress=None):
        for done in range(1, self.steps + 1):
            time.sleep(self.step)
            progress("denoise", done, self.steps)
        self.finished += 1
        return SimpleNamespace(image=255 - request.image, timings={"denoise": 0.0}, seconds=0.0)


def test_an_edit_past_its_time_limit_is_stopped_with_a_message_and_the_next_one_runs(tmp_path):
    editor = SlowEditor(steps=1000, step=0.01)  # 10 s unless stopped
    runner = EditRunner(None, BUNDLED, editor=editor, time_limit=0.2)
    seen = []
    started = time.monotonic()
    outcome = runner.run(ready_session(), None, Settings(10, 2, 3, 0.1, False, 0), "", tmp_path,
                         progress=lambda *report: seen.append(report))
    assert time.monotonic() - started < 5
    assert not outcome.ok and outcome.message.startswith("The edit was stopped after 0.2 s")
    assert seen and editor.finished == 0 and list(tmp_path.iterdir()) == []  # nothing written
    editor.steps = 3
    assert runner.run(ready_session(), None, Settings(10, 2, 3, 0.1, False, 0), "", tmp_path).ok


def test_waiting_for_the_edit_before_does_not_count_against_the_limit(tmp_path):
    import threading

    editor = SlowEditor(steps=10, step=0.02)  # 0.2 s each
    runner = EditRunner(None, BUNDLED, editor=editor, time_limit=0.35)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(
        runner.run(ready_session(), None, Settings(10, 2, 3, 0.1, False, 0), "", tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [outcome.ok for outcome in outcomes] == [True, True, True]


def test_a_time_limit_must_be_positive():
    with pytest.raises(ValueError, match="time_limit"):
        EditRunner(None, BUNDLED, editor=SlowEditor(1, 0), time_limit=0)
    assert EditRunner(None, BUNDLED, editor=SlowEditor(1, 0), time_limit=None).time_limit is None


# ---------------------------------------------------------------------------------------------- files


def test_session_folders_are_per_session_recreated_on_use_and_removed(tmp_path):
    folders = SessionFolders(tmp_path / "sessions")
    first, second = folders.folder("abc"), folders.folder("def")
    assert first != second and first.is_dir() and "abc" not in first.name
    (first / "views").mkdir()
    folders.remove("abc")
    assert not first.exists() and second.is_dir()
    assert folders.folder("abc") == first and first.is_dir()  # a tab still running gets it back
    folders.remove_folder(second)
    assert not second.exists()
    folders.remove_folder(tmp_path)  # not one of its folders: left alone
    assert tmp_path.is_dir()


def test_new_folders_never_reuse_a_name(tmp_path):
    names = {new_folder(tmp_path, "edit").name for _ in range(50)}
    assert len(names) == 50


def test_a_served_picture_is_never_rewritten(tmp_path):
    image = np.random.default_rng(3).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    first = Path(serve_once(image, tmp_path))
    stamp = first.stat().st_mtime_ns, first.stat().st_ino
    assert Path(serve_once(image.copy(), tmp_path)) == first
    assert (first.stat().st_mtime_ns, first.stat().st_ino) == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging file left


@pytest.fixture
def page(tmp_path):
    """The Gradio app (not served) and a way to call its handlers as a tab would."""
    pytest.importorskip("gradio")
    from dragnext.ui.app import SESSION_TTL_SECONDS, build_app

    runner = EditRunner(None, BUNDLED, editor=SlowEditor(steps=2, step=0))
    app = build_app(runner, examples=[("Example", scene())], workdir=str(tmp_path))
    handlers = {function.name: function.fn for function in app.fns.values()}
    state = next(block for block in app.blocks.values() if type(block).__name__ == "State")
    assert state.time_to_live == SESSION_TTL_SECONDS
    return SimpleNamespace(app=app, handlers=handlers, state=state, root=tmp_path / "sessions")


def test_the_app_asks_gradio_to_clear_its_cache_of_what_no_tab_can_still_ask_for(page):
    from dragnext.ui.app import SESSION_TTL_SECONDS
    from dragnext.ui.workspace import GRADIO_CACHE_CLEANUP

    assert page.app.delete_cache == GRADIO_CACHE_CLEANUP
    frequency, age = GRADIO_CACHE_CLEANUP
    assert age >= SESSION_TTL_SECONDS and 0 < frequency <= age


def tab(session_hash: str) -> SimpleNamespace:
    return SimpleNamespace(session_hash=session_hash)


def served_paths(value) -> list[str]:
    """Every file path in a handler's output (pictures, editor backgrounds and layers, downloads)."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in served_paths(v)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in served_paths(v)]
    return [value] if isinstance(value, str) and "/" in value else []


def test_every_file_a_handler_returns_is_a_path_in_the_tabs_folder_and_closing_the_tab_removes_it(page, tmp_path):
    operation = make_operation("translate", box(5, 15, 5, 15), (10, 10), (20, 12))
    request = DragRequest(image=scene(), operations=(operation,), editable_mask=box(0, 40, 0, 40))
    archive = write_instruction_archive(request, tmp_path / "download")
    session = Session()
    *outputs, file_list = page.handlers["restore_and_clear"](session, "translate", [str(archive)], tab("tab-1"))
    assert "Restored instructions.json" in outputs[-1] and file_list is None  # the next upload is read alone
    folder = session.folder
    assert folder is not None and folder.parent == page.root
    editable_editor = outputs[2]
    assert len(editable_editor["layers"]) == 1 and isinstance(editable_editor["layers"][0], str)
    # Arrays would go through Gradio's own cache, which rewrites a file in place for every response
    for value in outputs:
        assert not isinstance(value, np.ndarray)
        if isinstance(value, dict):
            assert not any(isinstance(v, np.ndarray) for v in value.values())
            assert not any(isinstance(v, np.ndarray) for v in value.get("layers") or [])
    edit_outputs = page.handlers["run_edit"](session, None, 10, 2, 3, 0.1, False, 0, "", "default", tab("tab-1"),
                                             lambda *a, **k: None)
    assert edit_outputs[-1].startswith("Done")
    save_outputs = page.handlers["save_instructions"](session, None, "", tab("tab-1"))
    paths = served_paths([outputs, edit_outputs, save_outputs])
    assert len(paths) >= 7
    assert all(Path(p).is_relative_to(folder) and Path(p).is_file() for p in paths)
    with zipfile.ZipFile(save_outputs[0][0]) as bundle:
        assert json.loads(bundle.read("instructions/instructions.json"))["image"] == "image.png"

    other = Session()
    page.handlers["load_example"](other, "translate", tab("tab-2"))
    page.handlers["end_session"](tab("tab-1"))  # Gradio calls it when the tab closes or reloads
    assert not folder.exists() and other.folder.is_dir()
    page.state.delete_callback(other)  # Gradio calls it when the state expires
    assert not other.folder.exists()
