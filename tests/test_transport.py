"""Moving latent content and filling what it leaves (transport.py), on pixel-space tensors with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dragnext.instructions import DragRequest, make_operation
from dragnext.models.base import image_to_tensor
from dragnext.transport import fill_hole, motions, move_content, vacated_mask

SIZE = 32


def box(rows: slice, cols: slice, size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[rows, cols] = True
    return mask


def moved(latent: torch.Tensor, request: DragRequest, fill: str, deformation: str = "field") -> torch.Tensor:
    found = motions(request.operations, request.image.shape[:2], tuple(latent.shape[-2:]), deformation)
    return move_content(latent, found, fill=fill)


def ramp_image() -> np.ndarray:
    """A linear gradient (left to right, and a little top to bottom) with a bright square on it."""
    cols = np.linspace(20, 200, SIZE)[None, :]
    rows = np.linspace(0, 40, SIZE)[:, None]
    image = np.repeat((cols + rows)[..., None], 3, axis=2)
    image[6:12, 6:12] = 255
    return np.round(image).astype(np.uint8)


def test_copy_puts_the_handle_region_at_the_target_exactly_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    request = DragRequest(image=image, operations=(make_operation("translate", box(slice(4, 12), slice(5, 11)),
                                                                  (7, 8), (13, 11)),))
    latent = image_to_tensor(image)
    warped = moved(latent, request, fill="none")
    # the region moved by (dx, dy) = (6, 3): rows 7-14, columns 11-16
    torch.testing.assert_close(warped[..., 7:15, 11:17], latent[..., 4:12, 5:11], atol=1e-5, rtol=0)
    target = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    target[7:15, 11:17] = True
    assert torch.equal(warped[..., ~target], latent[..., ~target])  # the rest, the vacated part included, kept


def test_copy_follows_a_rotation():
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    image[10:12, 16:22] = 255  # a horizontal bar right of the centre (16, 11)
    operation = make_operation("rotate", box(slice(8, 14), slice(15, 23)), (21, 11), (16, 16), center=(16, 11))
    latent = image_to_tensor(image)
    warped = moved(latent, DragRequest(image=image, operations=(operation,)), fill="none")
    # a quarter turn clockwise on screen about (16, 11): the bar now hangs below the centre, columns 16-17
    assert warped[0, 0, 12:17, 16:18].min() > 0.99
    assert warped[0, 0, 12:17, 14:16].max() < -0.99
    assert torch.equal(warped[..., 10:12, 20:22], latent[..., 10:12, 20:22])  # no fill: the old tip stays


@pytest.mark.parametrize("fill", ["harmonic", "nearest"])
def test_the_vacated_area_is_filled_from_the_background_not_from_the_moved_region(fill):
    image = ramp_image()
    region = box(slice(5, 13), slice(5, 13))
    request = DragRequest(image=image, operations=(make_operation("translate", region, (9, 9), (23, 21)),))
    latent = image_to_tensor(image)
    background = image_to_tensor(_ramp_only())
    warped = moved(latent, request, fill=fill)
    vacated = torch.from_numpy(region)
    vacated[17:25, 19:27] = False  # where the region lands
    error = (warped - background)[..., vacated].abs()
    # harmonic continues the gradient; nearest copies the closest background pixel, off by the gradient's step
    assert float(error.max()) < (0.02 if fill == "harmonic" else 0.2)
    assert float(warped[0, 0, 18:24, 20:26].min()) > 0.99  # the square arrived
    assert float(warped[..., vacated].max()) < 0.9  # and none of it was left behind


def _ramp_only() -> np.ndarray:
    cols = np.linspace(20, 200, SIZE)[None, :]
    rows = np.linspace(0, 40, SIZE)[:, None]
    return np.round(np.repeat((cols + rows)[..., None], 3, axis=2)).astype(np.uint8)


def test_harmonic_fill_is_exact_on_a_linear_ramp_and_leaves_known_pixels_alone():
    rows, cols = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
    ramp = (0.3 * cols - 0.1 * rows)[None, None]
    hole = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    hole[8:20, 10:25] = True
    broken = torch.where(hole, torch.tensor(7.0), ramp)
    filled = fill_hole(broken, hole)
    torch.testing.assert_close(filled, ramp, atol=1e-3, rtol=0)
    assert torch.equal(filled[..., ~hole], ramp[..., ~hole])
    nearest = fill_hole(broken, hole, harmonic=False)
    assert float((nearest - ramp)[..., hole].abs().max()) > 0.5  # a nearest copy cannot continue a ramp


def test_a_hole_over_the_whole_image_is_left_as_it_is():
    tensor = torch.randn(1, 3, 8, 8)
    assert torch.equal(fill_hole(tensor, torch.ones(8, 8, dtype=torch.bool)), tensor)


def test_a_deform_vacates_nothing_and_stretches_inside_its_support_only():
    image = ramp_image()
    region = np.zeros((SIZE, SIZE), dtype=bool)
    region[9:16, 9:16] = True
    operation = make_operation("deform", region, (12, 12), (17, 12))
    request = DragRequest(image=image, operations=(operation,))
    found = motions(request.operations, (SIZE, SIZE), (SIZE, SIZE), "field")
    assert not vacated_mask(found).any()
    latent = image_to_tensor(image)
    warped = move_content(latent, found)
    # the handle's content lands on the target
    torch.testing.assert_close(warped[..., 12, 17], latent[..., 12, 12], atol=1e-5, rtol=0)
    support = found[0].moved
    assert torch.equal(warped[..., ~support], latent[..., ~support])


def test_a_deformation_at_the_border_continues_the_picture_instead_of_pulling_in_black():
    # a bright image, a vertex at the bottom edge dragged up: the field pulls content from below the frame
    image = np.full((SIZE, SIZE, 3), 200, dtype=np.uint8)
    operation = make_operation("deform", box(slice(27, 32), slice(12, 20)), (16, 30), (16, 20))
    latent = image_to_tensor(image)
    warped = moved(latent, DragRequest(image=image, operations=(operation,)), fill="harmonic")
    torch.testing.assert_close(warped, latent, atol=1e-5, rtol=0)
