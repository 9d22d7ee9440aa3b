"""EditSession: a second edit of the same picture reuses its inversion (and LoRA) and gives the same result."""

from __future__ import annotations

import numpy as np
import pytest
from test_editor_sd import SMALL, box, random_image

from dragnext.editor import DragEditor
from dragnext.instructions import DragRequest, make_operation
from dragnext.session import EditSession


def translate(dx: int, dy: int = 0, size: int = 32):
    return make_operation("translate", box(size, size, slice(8, 16), slice(8, 16)), (12, 12), (12 + dx, 12 + dy))


@pytest.mark.slow
def test_a_second_edit_with_other_points_skips_the_inversion_and_the_lora(tiny_sd):
    backbone = tiny_sd.backbone
    image = random_image(32, 32, seed=501)
    session = EditSession(backbone, image, config=SMALL)
    first = session.edit([translate(6)])
    second = session.edit([translate(4, 5)])
    assert first.reused == () and second.reused == ("inversion", "lora")
    # exactly the inversion and the LoRA fewer passes; the optimisation and denoising are the same work
    assert first.passes.forward - second.passes.forward == SMALL.inversion_steps + SMALL.lora_steps
    assert first.passes.backward - second.passes.backward == SMALL.lora_steps
    assert first.passes.truncated_forward == second.passes.truncated_forward
    # and the same picture as a fresh edit of that request
    fresh = DragEditor(backbone, SMALL)(DragRequest(image=image, operations=(translate(4, 5),)))
    np.testing.assert_array_equal(second.image, fresh.image)


@pytest.mark.slow
def test_the_sessions_lora_comes_back_after_another_picture_was_edited(tiny_sd):
    backbone = tiny_sd.backbone
    image = random_image(32, 32, seed=502)
    session = EditSession(backbone, image, config=SMALL)
    session.edit([translate(6)])
    DragEditor(backbone, SMALL)(DragRequest(image=random_image(32, 32, seed=503), operations=(translate(3),)))
    again = session.edit([translate(5, 2)])
    fresh = DragEditor(backbone, SMALL)(DragRequest(image=image, operations=(translate(5, 2),)))
    assert again.reused == ("inversion", "lora")
    np.testing.assert_array_equal(again.image, fresh.image)


@pytest.mark.slow
def test_settings_the_inversion_depends_on_invert_again(tiny_sd):
    session = EditSession(tiny_sd.backbone, random_image(32, 32, seed=504), config=SMALL)
    session.edit([translate(6)])
    assert session.edit([translate(6)], config=SMALL.override(strength=0.7)).reused == ()
    assert session.edit([translate(6)], seed=1).reused == ()  # the LoRA depends on the seed
    # optimisation settings do not touch the inversion
    assert session.edit([translate(6)], config=SMALL.override(iterations=1)).reused == ("inversion", "lora")
    session.clear()
    assert session.edit([translate(6)]).reused == ()


def test_continue_from_starts_the_next_round_on_the_result(tiny_sd):
    session = EditSession(tiny_sd.backbone, random_image(32, 32, seed=505), prompt="a box", config=SMALL)
    result = session.edit([translate(6)])
    following = session.continue_from(result)
    np.testing.assert_array_equal(following.image, result.image)
    assert following.prompt == "a box"
    assert following.edit([translate(-3)]).reused == ()  # a new picture: a new inversion


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((32, 32, 3), np.float32)])
def test_a_picture_that_cannot_be_edited_is_refused_when_the_session_opens(tiny_sd, bad):
    from dragnext.instructions import InstructionError

    with pytest.raises(InstructionError, match="H x W x 3 uint8"):
        EditSession(tiny_sd.backbone, bad, config=SMALL)


def test_sessions_are_shared_per_picture_and_prompt_and_the_oldest_is_dropped(tiny_sd):
    from dragnext.session import EditSessions

    sessions = EditSessions(tiny_sd.backbone, SMALL, kept=2)
    a, b, c = (random_image(32, 32, seed=s) for s in (701, 702, 703))
    first = sessions.get(a)
    assert sessions.get(a.copy()) is first  # the same pixels, the same session
    assert sessions.get(a, prompt="other") is not first
    sessions.get(b)
    sessions.get(c)  # two newer pictures pushed `a` out of a cache of two
    assert sessions.get(a) is not first
