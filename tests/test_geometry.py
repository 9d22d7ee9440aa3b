"""Exact tests of the region geometry: motions, eta schedule, grids, warping and masks."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dragnext.geometry import (
    deformation_displacement,
    deformation_radius,
    deformation_source,
    eta_schedule,
    feature_pixel_to_image,
    image_to_feature_pixel,
    image_to_normalized,
    inverse_grid,
    motion_matrix,
    moved_mask,
    region_motion,
    resize_mask,
    rowcol_to_xy,
    warp,
    xy_to_rowcol,
)


def _apply(m, p):
    """Map one (x, y) point through a 3x3 matrix."""
    return (m @ np.array([p[0], p[1], 1.0]))[:2]


def _smooth_field(size, seed=0):
    """[1, 1, H, W] smooth random field: coarse noise upsampled bicubically."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 1, 6, 6, generator=g, dtype=torch.float64)
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)


# ------------------------------------------------------------------------------------------ coordinates


def test_coordinate_helpers_non_square():
    image, feature = (48, 64), (6, 8)  # H, W ; h, w
    assert np.array_equal(xy_to_rowcol([3, 7]), [7, 3])
    assert np.array_equal(rowcol_to_xy([7, 3]), [3, 7])
    # pixel centres 0 and W-1 map to -1 + 1/W and 1 - 1/W
    assert np.allclose(
        image_to_normalized([[0, 0], [63, 47]], image), [[-1 + 1 / 64, -1 + 1 / 48], [1 - 1 / 64, 1 - 1 / 48]]
    )
    # feature pixel (row 0, col 0) centre is at image (3.5, 3.5); (row 1, col 2) at (19.5, 11.5)
    assert np.allclose(feature_pixel_to_image([[0, 0], [1, 2]], image, feature), [[3.5, 3.5], [19.5, 11.5]])
    assert np.allclose(image_to_feature_pixel([19.5, 11.5], image, feature), [1, 2])


# ------------------------------------------------------------------------------------------ motion_matrix


def test_motion_matrix_errors():
    with pytest.raises(ValueError):
        motion_matrix("rotate", (1, 0), (0, 1))
    with pytest.raises(ValueError):
        motion_matrix("scale", (1, 0), (2, 0))
    with pytest.raises(ValueError):
        motion_matrix("shear-ish", (1, 0), (2, 0), (0, 0))
    with pytest.raises(ValueError):
        motion_matrix("translate", (1, 0), (2, 0), eta=1.5)
    with pytest.raises(ValueError):
        motion_matrix("rotate", (0, 0), (2, 0), (0, 0))  # handle at centre: no angle


def test_translate_and_deform():
    for op in ("translate", "deform"):
        m = motion_matrix(op, (10, 20), (16, 12))
        assert m.dtype == np.float64 and m.shape == (3, 3)
        assert np.allclose(_apply(m, (10, 20)), (16, 12))
        assert np.allclose(_apply(motion_matrix(op, (10, 20), (16, 12), eta=0.5), (10, 20)), (13, 16))


def test_scale_factor():
    c, h, g = (5, 5), (15, 5), (25, 5)
    m1 = motion_matrix("scale", h, g, c, eta=1.0)
    m_half = motion_matrix("scale", h, g, c, eta=0.5)
    assert np.allclose(m1[:2, :2], 2.0 * np.eye(2))
    assert np.allclose(m_half[:2, :2], 1.5 * np.eye(2))
    assert np.allclose(_apply(m1, h), g)
    assert np.allclose(_apply(m1, c), c)


def test_rotation_sign():
    c = np.array([30.0, 40.0])
    # +x axis to +y axis (y down): +90 degrees, sin > 0
    m = motion_matrix("rotate", c + (10, 0), c + (0, 10), c)
    assert np.allclose(m[:2, :2], [[0, -1], [1, 0]])
    assert np.allclose(_apply(m, c + (10, 0)), c + (0, 10))
    assert np.allclose(_apply(m, c), c)
    # +x to -y: -90 degrees
    m = motion_matrix("rotate", c + (10, 0), c + (0, -10), c)
    assert np.allclose(m[:2, :2], [[0, 1], [-1, 0]])
    # half way: 45 degrees, radius kept
    m = motion_matrix("rotate", c + (10, 0), c + (0, 10), c, eta=0.5)
    assert np.allclose(_apply(m, c + (10, 0)), c + (10 / math.sqrt(2), 10 / math.sqrt(2)))
    # the target's radius does not matter for a rotation
    m = motion_matrix("rotate", c + (10, 0), c + (0, 3), c)
    assert np.allclose(_apply(m, c + (10, 0)), c + (0, 10))
    # 180 degrees is +pi (angle in (-pi, pi]), half way goes through +y
    m = motion_matrix("rotate", c + (10, 0), c + (-10, 0), c, eta=0.5)
    assert np.allclose(_apply(m, c + (10, 0)), c + (0, 10))
    m = motion_matrix("rotate", c + (10, 0), c + (-10, -0.0), c, eta=0.5)
    assert np.allclose(_apply(m, c + (10, 0)), c + (0, 10))


# ------------------------------------------------------------------------------------------ eta schedule


def test_eta_schedule():
    for k in (1, 3, 10):
        etas = eta_schedule(k)
        assert len(etas) == k
        assert etas[-1] == 1.0
        assert all(a < b for a, b in zip(etas, etas[1:], strict=False))
        assert etas[0] > 0
        assert eta_schedule(k, progressive=False) == [1.0] * k
    with pytest.raises(ValueError):
        eta_schedule(0)


# ------------------------------------------------------------------------------------------ masks and warps


def test_translate_square_exact():
    H, W = 32, 64
    mask = np.zeros((H, W), bool)
    mask[8:16, 10:18] = True  # rows 8..15, cols 10..17
    m = motion_matrix("translate", (12, 10), (17, 13))  # dx = 5, dy = 3
    expected = np.zeros((H, W), np.float32)
    expected[11:19, 15:23] = 1.0
    moved = moved_mask(mask, m, (H, W))
    assert moved.dtype == torch.float32
    assert torch.equal(moved, torch.from_numpy(expected))

    image = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1)) * torch.from_numpy(mask)
    out = warp(image, inverse_grid(m, (H, W), (H, W)))
    assert out.shape == image.shape
    torch.testing.assert_close(out[..., 11:19, 15:23], image[..., 8:16, 10:18], atol=1e-5, rtol=0)
    assert out[..., :11, :].abs().max() == 0 and out[..., :, :15].abs().max() == 0


def test_region_motion_shapes_and_values():
    H, W = 32, 64
    mask = np.zeros((H, W), bool)
    mask[8:16, 8:16] = True
    moved, grid = region_motion(mask, "translate", (10, 10), (26, 18), None, 0.5, (H, W), (4, 8))
    assert moved.shape == (4, 8) and grid.shape == (1, 4, 8, 2)
    # the 8-aligned block at feature (1, 1) moves (8, 4) px: one feature column, half a feature row, so
    # feature rows 1 and 2 of column 2 get coverage 0.5, which passes the >= 0.5 threshold
    expected = torch.zeros(4, 8)
    expected[1:3, 2] = 1.0
    assert torch.equal(moved, expected)
    with pytest.raises(ValueError):
        region_motion(mask[:-1], "translate", (10, 10), (26, 18), None, 1.0, (H, W), (4, 8))


def _l_shape(n):
    """Asymmetric L shape inside an n x n mask."""
    mask = np.zeros((n, n), bool)
    mask[6:20, 8:12] = True  # vertical bar
    mask[16:20, 12:22] = True  # foot, pointing +x
    return mask


def test_rotate_90_exact():
    n = 33
    c = (16.0, 16.0)  # pixel centre at the array centre
    mask = _l_shape(n)
    m = motion_matrix("rotate", (26, 16), (16, 26), c)  # h = c + (10, 0), g = c + (0, 10): +x -> +y
    # forward map (x, y) -> (cx - (y - cy), cy + (x - cx)) ; built point by point
    expected = np.zeros_like(mask)
    for y, x in zip(*np.nonzero(mask), strict=True):
        expected[int(c[1] + (x - c[0])), int(c[0] - (y - c[1]))] = True
    # with y down a positive angle is clockwise on screen: np.rot90 with k = -1
    assert np.array_equal(expected, np.rot90(mask, -1))
    moved = moved_mask(mask, m, (n, n))
    assert np.array_equal(moved.numpy().astype(bool), expected)

    image = torch.randn(1, 2, n, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = warp(image, inverse_grid(m, (n, n), (n, n), dtype=torch.float64))
    rotated = torch.from_numpy(np.rot90(image.numpy(), -1, axes=(2, 3)).copy())
    torch.testing.assert_close(out, rotated, atol=1e-9, rtol=0)


def test_scale_2x_exact():
    H, W = 32, 32
    mask = np.zeros((H, W), bool)
    mask[14:18, 14:18] = True  # side 4, continuous extent 13.5..17.5, centre 15.5
    c = (15.5, 15.5)
    m = motion_matrix("scale", (25.5, 15.5), (35.5, 15.5), c)  # |h-c| = 10, |g-c| = 20: factor 2
    expected = np.zeros((H, W), np.float32)
    expected[12:20, 12:20] = 1.0  # side 8, extent 11.5..19.5
    moved = moved_mask(mask, m, (H, W))
    assert int(moved.sum()) == 64
    assert torch.equal(moved, torch.from_numpy(expected))
    soft = moved_mask(mask, m, (H, W), threshold=None)
    assert torch.all(soft[13:19, 13:19] == 1.0) and soft.max() <= 1.0


def test_identity_at_eta_zero():
    H, W = 32, 64
    x = torch.randn(3, 4, H, W, generator=torch.Generator().manual_seed(3))
    for op, c in (("rotate", (20, 10)), ("scale", (20, 10)), ("translate", None)):
        m = motion_matrix(op, (30, 12), (25, 20), c, eta=0.0)
        assert np.array_equal(m, np.eye(3))
        grid = inverse_grid(m, (H, W), (H, W))
        ident = F.affine_grid(torch.eye(2, 3)[None], [1, 1, H, W], align_corners=False)
        torch.testing.assert_close(grid, ident, atol=1e-6, rtol=0)
        assert torch.equal(warp(x, grid), x)


def test_round_trip_translation():
    H, W = 64, 64
    field = _smooth_field((H, W))
    a = motion_matrix("translate", (20, 30), (25, 27))  # (5, -3) pixels
    fwd = warp(field, inverse_grid(a, (H, W), (H, W), dtype=torch.float64))
    back = warp(fwd, inverse_grid(np.linalg.inv(a), (H, W), (H, W), dtype=torch.float64))
    torch.testing.assert_close(back[..., 8:-8, 8:-8], field[..., 8:-8, 8:-8], atol=1e-4, rtol=0)


def test_round_trip_rotation():
    H, W = 64, 64
    field = _smooth_field((H, W), seed=4)
    c = (31.5, 31.5)
    a = motion_matrix("rotate", (41.5, 31.5), (41.5, 41.5), c)  # 45 degrees
    fwd = warp(field, inverse_grid(a, (H, W), (H, W), dtype=torch.float64))
    back = warp(fwd, inverse_grid(np.linalg.inv(a), (H, W), (H, W), dtype=torch.float64))
    yy, xx = np.mgrid[0:H, 0:W]
    inner = torch.from_numpy((xx - c[0]) ** 2 + (yy - c[1]) ** 2 < 22**2)
    err = (back - field)[0, 0][inner].abs().max()
    assert err < 0.05 * field.abs().max()


def test_feature_resolution_translation():
    H, W = 48, 64
    h, w = H // 8, W // 8
    feats = torch.randn(2, 5, h, w, generator=torch.Generator().manual_seed(5))
    m = motion_matrix("translate", (20, 20), (28, 36))  # 8 px right, 16 px down: 1 col, 2 rows
    out = warp(feats, inverse_grid(m, (H, W), (h, w)))
    torch.testing.assert_close(out[..., 2:, 1:], feats[..., :-2, :-1], atol=1e-6, rtol=0)
    # H = 48 is not a power of two, so float32 normalisation leaves ~1e-7 of the neighbour in the border
    assert out[..., :2, :].abs().max() < 1e-6 and out[..., :, :1].abs().max() < 1e-6

    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[8:24, 16:40] = True  # feature rows 1..2, cols 2..4
    cov = resize_mask(mask, (h, w))
    expected = torch.zeros(h, w)
    expected[1:3, 2:5] = 1.0
    assert torch.equal(cov, expected)
    expected_moved = torch.zeros(h, w)
    expected_moved[3:5, 3:6] = 1.0
    assert torch.equal(moved_mask(mask, m, (h, w)), expected_moved)


def test_resize_mask_coverage():
    mask = np.zeros((16, 16), bool)
    mask[0:4, 0:2] = True  # half of feature pixel (0, 0) at 4x reduction
    cov = resize_mask(mask, (4, 4))
    assert cov.shape == (4, 4) and cov.dtype == torch.float32
    assert cov[0, 0] == 0.5 and cov.sum() == 0.5
    assert torch.equal(resize_mask(mask.astype(np.float32), (16, 16)), torch.from_numpy(mask.astype(np.float32)))


# ------------------------------------------------------------------------------------------ deformation field


def _disc(size, center, radius):
    rows, cols = np.mgrid[0:size, 0:size]
    return np.hypot(cols - center[0], rows - center[1]) <= radius


def test_deformation_moves_the_handle_fully_and_the_far_side_not_at_all():
    region = _disc(64, (30, 30), 4)
    handle, target = (30.0, 30.0), (40.0, 24.0)
    radius = deformation_radius(region, handle, target)
    assert radius == pytest.approx(1.25 * math.hypot(10, 6))  # the region (radius 4) is smaller than the drag
    np.testing.assert_allclose(deformation_displacement(np.array(handle), handle, target, radius), [10.0, -6.0])
    # anchors: the support's rim and everything beyond it stay
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    rim = np.stack([30 + radius * np.cos(angles), 30 + radius * np.sin(angles)], axis=-1)
    np.testing.assert_allclose(deformation_displacement(rim, handle, target, radius), 0.0, atol=1e-12)
    beyond = 30 + (rim - 30) * 1.5
    np.testing.assert_allclose(deformation_displacement(beyond, handle, target, radius), 0.0, atol=1e-12)
    # halfway to the rim, half the displacement, in the drag's direction
    halfway = np.array([30 + radius / 2, 30.0])
    np.testing.assert_allclose(deformation_displacement(halfway, handle, target, radius), [5.0, -3.0])


def test_a_regions_far_side_stays_when_it_reaches_beyond_the_drag():
    region = np.zeros((64, 64), bool)
    region[20:24, 10:50] = True  # a long bar, dragged at its right end
    handle, target = (48.0, 22.0), (48.0, 14.0)
    radius = deformation_radius(region, handle, target)
    assert radius == pytest.approx(math.hypot(48 - 10, 22 - 20))
    far_end = np.array([10.0, 20.0])
    np.testing.assert_allclose(deformation_displacement(far_end, handle, target, radius), 0.0, atol=1e-12)


def test_deformation_source_inverts_the_field():
    handle, target, radius = (20.0, 20.0), (31.0, 27.0), 18.0
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 48, (500, 2))
    forward = points + deformation_displacement(points, handle, target, radius)
    np.testing.assert_allclose(deformation_source(forward, handle, target, radius), points, atol=1e-5)
    with pytest.raises(ValueError, match="not invertible"):
        deformation_source(points, handle, target, 5.0)


def test_the_deformations_of_the_synthetic_suite_are_invertible():
    """Jacobian determinant > 0 everywhere (finite differences) for every vertex drag the suite makes."""
    from dragnext.ground_truth import random_edit

    rows, cols = np.mgrid[0:64, 0:64].astype(np.float64)
    points = np.stack([cols, rows], axis=-1)
    step = 0.25
    for seed in range(1000, 1010):
        for long in (False, True):
            op = random_edit(seed, "deform", long=long).request.operations[0]
            radius = deformation_radius(op.region, op.handle, op.target)

            def mapped(p, op=op, radius=radius):
                return p + deformation_displacement(p, op.handle, op.target, radius)

            dx = (mapped(points + [step, 0]) - mapped(points - [step, 0])) / (2 * step)
            dy = (mapped(points + [0, step]) - mapped(points - [0, step])) / (2 * step)
            determinant = dx[..., 0] * dy[..., 1] - dx[..., 1] * dy[..., 0]
            assert determinant.min() > 0, (seed, long)


def test_region_motion_of_a_field_deform_is_its_support_and_inverse():
    region = _disc(32, (16, 16), 3)
    moved, grid = region_motion(region, "deform", (16, 16), (21, 16), None, 1.0, (32, 32), (32, 32))
    radius = 1.25 * 5
    assert moved.sum() == pytest.approx(np.pi * radius**2, rel=0.15)
    # the target pixel samples the handle; a pixel outside the support samples itself
    source_of_target = normalized_to_xy(grid[0, 16, 21], 32)
    np.testing.assert_allclose(source_of_target, [16.0, 16.0], atol=1e-4)
    np.testing.assert_allclose(normalized_to_xy(grid[0, 2, 2], 32), [2.0, 2.0], atol=1e-6)
    translated, _ = region_motion(region, "deform", (16, 16), (21, 16), None, 1.0, (32, 32), (32, 32),
                                  deformation="translate")
    assert translated.sum() < moved.sum() / 3  # the paper's reading moves the disc alone


def normalized_to_xy(point, size):
    return ((np.asarray(point, dtype=np.float64) + 1.0) * size - 1.0) / 2.0
